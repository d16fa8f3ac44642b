-- Same numbering and shape as migrations/sqlite/0011_sso_group_roles.sql.
-- Dashboard roles from the identity provider's groups (issue 17, item 5): an
-- administrator maps a SCIM-provisioned group to a dashboard role, and a member of a
-- mapped group who signs in through single sign-on gets a dashboard user of their own.

-- A group's mapping goes with the group (a SCIM DELETE of the group removes it).
CREATE TABLE sso_group_roles (
    tenant_id  TEXT NOT NULL,
    group_id   TEXT NOT NULL,
    role       TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, group_id),
    FOREIGN KEY (tenant_id, group_id) REFERENCES groups (tenant_id, id) ON DELETE CASCADE
);

-- Dashboard users created by single sign-on for a member of a mapped group (no password).
-- Their role is read from the account's current groups on every request. No foreign key
-- to users: a purged account must leave the link (and so no role) behind, not turn the
-- dashboard user into an ordinary one with a stored role.
CREATE TABLE sso_dashboard_users (
    dashboard_user_id TEXT PRIMARY KEY REFERENCES dashboard_users (id) ON DELETE CASCADE,
    tenant_id         TEXT NOT NULL,
    account_id        TEXT NOT NULL
);
CREATE INDEX sso_dashboard_users_tenant_id_account_id_idx
    ON sso_dashboard_users (tenant_id, account_id);
