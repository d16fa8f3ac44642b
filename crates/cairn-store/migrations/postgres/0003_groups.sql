-- SCIM Groups and their members, and group-based account sizes.
-- Same numbering and shape as migrations/sqlite/0003_groups.sql.

CREATE TABLE groups (
    seq               BIGSERIAL PRIMARY KEY,
    id                TEXT NOT NULL,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    display_name      TEXT NOT NULL,
    display_name_fold TEXT NOT NULL,
    external_id       TEXT,
    doc               JSONB NOT NULL,
    size_gb           BIGINT,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    version           BIGINT NOT NULL
);
CREATE UNIQUE INDEX groups_tenant_id_id_key ON groups (tenant_id, id);
CREATE UNIQUE INDEX groups_tenant_id_display_name_fold_key ON groups (tenant_id, display_name_fold);
CREATE INDEX groups_tenant_id_external_id_idx ON groups (tenant_id, external_id);

CREATE TABLE group_members (
    tenant_id TEXT NOT NULL,
    group_id  TEXT NOT NULL,
    user_id   TEXT NOT NULL,
    CONSTRAINT group_members_tenant_id_group_id_user_id_key PRIMARY KEY (tenant_id, group_id, user_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX group_members_tenant_id_user_id_idx ON group_members (tenant_id, user_id, group_id);

ALTER TABLE users ADD COLUMN base_quota_gb BIGINT NOT NULL DEFAULT 0;
UPDATE users SET base_quota_gb = quota_gb;
