-- Paging (`GET /Users?startIndex=…`, ordered by insertion) and `totalResults` over a
-- tenant's live accounts: without this index SQLite sorted every live row of the tenant
-- in a temporary B-tree for each page, so a page near the end of 10,000 users cost about
-- 40 times the first. With it, pages walk the index in order and COUNT(*) reads only it.
CREATE INDEX users_tenant_id_live_seq_idx ON users (tenant_id, seq) WHERE deleted_at IS NULL;
