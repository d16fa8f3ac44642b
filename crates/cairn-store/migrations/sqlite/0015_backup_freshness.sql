-- Backup freshness (issue 21, item 3), kept as uploads happen: each account's last
-- snapshot and last upload, its upload bytes per hour (the purge drops hours older than
-- a day), and each tenant's "stale" threshold in days.
ALTER TABLE users ADD COLUMN last_snapshot_at TEXT;
ALTER TABLE users ADD COLUMN last_upload_at TEXT;
ALTER TABLE tenants ADD COLUMN stale_days INTEGER NOT NULL DEFAULT 7;

-- The accounts list sorted by last backup (never first) and the stale filter and count.
CREATE INDEX users_tenant_id_last_snapshot_idx
    ON users (tenant_id, COALESCE(last_snapshot_at, ''), id);

CREATE TABLE vault_upload_hours (
    tenant_id TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    -- Hours since the Unix epoch (UTC).
    hour      INTEGER NOT NULL,
    bytes     INTEGER NOT NULL,
    PRIMARY KEY (tenant_id, user_id, hour),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX vault_upload_hours_hour_idx ON vault_upload_hours (hour);
