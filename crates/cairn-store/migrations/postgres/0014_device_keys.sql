-- Device keys: an account holds several backup keys, each with a name (unique per account
-- without regard to letter case) and the time it was last used. The basic-auth user names
-- the key. The single key an account held before keeps working: it becomes the key named
-- "default", its basic-auth user (the account's id) unchanged.

ALTER TABLE backup_keys
    ADD COLUMN name TEXT NOT NULL DEFAULT 'default',
    ADD COLUMN name_fold TEXT NOT NULL DEFAULT 'default',
    ADD COLUMN last_used_at TEXT;
ALTER TABLE backup_keys ALTER COLUMN name DROP DEFAULT, ALTER COLUMN name_fold DROP DEFAULT;
ALTER TABLE backup_keys
    DROP CONSTRAINT backup_keys_tenant_id_user_id_key,
    ADD CONSTRAINT backup_keys_tenant_id_user_id_key_user_key
        PRIMARY KEY (tenant_id, user_id, key_user),
    ADD CONSTRAINT backup_keys_tenant_id_user_id_name_fold_key
        UNIQUE (tenant_id, user_id, name_fold);
