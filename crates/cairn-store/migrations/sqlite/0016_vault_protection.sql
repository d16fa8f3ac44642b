-- Deletion protection of backup repositories, per tenant: while a row exists, a backup
-- key's DELETE of anything but a lock moves the object into the repository's trash,
-- kept for `days` days (the trash itself lives with the objects, see cairn-vault's
-- trash.rs). No row: protection is off.

CREATE TABLE vault_protection (
    tenant_id  TEXT NOT NULL PRIMARY KEY REFERENCES tenants (id) ON DELETE CASCADE,
    days       INTEGER NOT NULL CHECK (days > 0),
    updated_at TEXT NOT NULL
) STRICT, WITHOUT ROWID;
