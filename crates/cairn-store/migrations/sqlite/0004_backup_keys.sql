-- Backup vault: each account's backup key (HTTP basic-auth credentials of its restic
-- repository), stored as the SHA-256 of the secret. One key per account; a new key
-- replaces the old one. Purging the account removes its key.

CREATE TABLE backup_keys (
    tenant_id   TEXT NOT NULL,
    user_id     TEXT NOT NULL,
    key_user    TEXT NOT NULL,
    secret_hash BLOB NOT NULL,
    created_at  TEXT NOT NULL,
    PRIMARY KEY (tenant_id, user_id),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
