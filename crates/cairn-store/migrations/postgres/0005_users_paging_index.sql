-- Paging (`GET /Users?startIndex=…`, ordered by insertion) and `totalResults` over a
-- tenant's live accounts, served from one index in order instead of a sort of every live
-- row of the tenant per page (same migration number as the SQLite one).
CREATE INDEX users_tenant_id_live_seq_idx ON users (tenant_id, seq) WHERE deleted_at IS NULL;
