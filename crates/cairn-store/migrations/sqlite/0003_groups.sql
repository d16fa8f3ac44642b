-- SCIM Groups and their members, and group-based account sizes.
-- Membership is a relation indexed both ways, so adding or removing k members touches k
-- rows whatever the size of the group (identity providers push whole departments).

CREATE TABLE groups (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    display_name      TEXT NOT NULL,
    display_name_fold TEXT NOT NULL,
    external_id       TEXT,
    doc               TEXT NOT NULL,
    -- The group's own Account Size (NULL: none); see README "Group-based account size".
    size_gb           INTEGER,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    version           INTEGER NOT NULL
) STRICT;
CREATE UNIQUE INDEX groups_tenant_id_id_key ON groups (tenant_id, id);
CREATE UNIQUE INDEX groups_tenant_id_display_name_fold_key ON groups (tenant_id, display_name_fold);
CREATE INDEX groups_tenant_id_external_id_idx ON groups (tenant_id, external_id);

CREATE TABLE group_members (
    tenant_id TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT, WITHOUT ROWID;
CREATE INDEX group_members_tenant_id_user_id_idx ON group_members (tenant_id, user_id, group_id);

-- quota_gb becomes the effective quota: the largest of base_quota_gb (the tenant's
-- Account Size when the account was created) and the sizes of the account's groups.
ALTER TABLE users ADD COLUMN base_quota_gb INTEGER NOT NULL DEFAULT 0;
UPDATE users SET base_quota_gb = quota_gb;
