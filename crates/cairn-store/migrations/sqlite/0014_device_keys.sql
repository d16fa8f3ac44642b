-- Device keys: an account holds several backup keys, each with a name (unique per account
-- without regard to letter case) and the time it was last used. The basic-auth user names
-- the key. The single key an account held before keeps working: it becomes the key named
-- "default", its basic-auth user (the account's id) unchanged. SQLite cannot change a
-- primary key in place, so the table is rebuilt.

CREATE TABLE backup_keys_new (
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    key_user     TEXT NOT NULL,
    name         TEXT NOT NULL,
    name_fold    TEXT NOT NULL,
    secret_hash  BLOB NOT NULL,
    created_at   TEXT NOT NULL,
    last_used_at TEXT,
    PRIMARY KEY (tenant_id, user_id, key_user),
    CONSTRAINT backup_keys_tenant_id_user_id_name_fold_key UNIQUE (tenant_id, user_id, name_fold),
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;

INSERT INTO backup_keys_new (tenant_id, user_id, key_user, name, name_fold, secret_hash, created_at)
    SELECT tenant_id, user_id, key_user, 'default', 'default', secret_hash, created_at
    FROM backup_keys;

DROP TABLE backup_keys;
ALTER TABLE backup_keys_new RENAME TO backup_keys;
