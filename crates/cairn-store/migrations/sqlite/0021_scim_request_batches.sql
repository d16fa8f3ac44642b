-- The provisioning inspector's log, one row per tenant and recorded batch instead of one
-- row per SCIM request: a row of 17 columns and its index cost about a tenth of a cached
-- GET /Users/{id} (BENCHMARKS.md, "the cost of recording SCIM requests"). `entries`
-- holds the batch's entries in the binary encoding described in
-- crates/cairn-store/src/reqlog.rs; the columns beside it serve retention (by age and
-- by count per tenant) and paging without decoding.
--
-- The existing entries are dropped, not converted: the log is a bounded debugging
-- window (10,000 entries per tenant, 7 days by default) and fills again with the next
-- requests. Entry ids continue after the largest dropped one, so a link to an old entry
-- never shows a different request.
CREATE TABLE scim_request_batches (
    -- The batch's largest entry id.
    last_id       INTEGER PRIMARY KEY,
    tenant_id     TEXT NOT NULL,
    first_id      INTEGER NOT NULL,
    oldest_at     TEXT NOT NULL,
    newest_at     TEXT NOT NULL,
    entries_count INTEGER NOT NULL,
    entries       BLOB NOT NULL
);
CREATE INDEX scim_request_batches_tenant_id_idx ON scim_request_batches (tenant_id, last_id);

-- The next entry id (one row, id 1, created by the first batch).
CREATE TABLE scim_request_ids (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    next_id INTEGER NOT NULL
);
INSERT INTO scim_request_ids (id, next_id)
    SELECT 1, MAX(id) + 1 FROM scim_requests HAVING COUNT(*) > 0;

DROP TABLE scim_requests;
