-- The last repository health check of each backup account (`cairn vault verify`, the
-- account page's "Verify now"): when it ran, what it read, and the objects whose content
-- no longer matched their name. `bad` is a JSON array of {"object", "reason"}, at most
-- 100 entries; `bad_count` counts them all.

CREATE TABLE vault_verifications (
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    verified_at TEXT NOT NULL,
    objects     INTEGER NOT NULL,
    bytes       INTEGER NOT NULL,
    bad_count   INTEGER NOT NULL,
    bad         TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
