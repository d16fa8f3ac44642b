-- Paging (`GET /Users?startIndex=…`, ordered by insertion) and `totalResults` over a
-- tenant's users, served from one index in order instead of a sort of every live row of
-- the tenant per page (same migration number as the SQLite one). Not partial, unlike
-- SQLite's: with `WHERE deleted_at IS NULL` the planner, on statistics not yet refreshed
-- after a bulk provisioning, preferred it to users_tenant_id_id_key for lookups by id
-- (it matches the query's own `deleted_at IS NULL`) and scanned the whole tenant per
-- GET /Users/{id}.
CREATE INDEX users_tenant_id_seq_idx ON users (tenant_id, seq);
