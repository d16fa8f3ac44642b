-- Same numbering and shape as migrations/sqlite/0014_people.sql.
-- Dashboard user administration and the second factor (issue 22).

-- Disabled users cannot sign in; last sign-in for the Users list; the TOTP secret (in
-- clear: verifying a code needs it, see SECURITY.md), when its enrolment was confirmed
-- (NULL: pending), and the last time step whose code was accepted (no replay).
ALTER TABLE dashboard_users ADD COLUMN disabled_at TEXT;
ALTER TABLE dashboard_users ADD COLUMN last_sign_in_at TEXT;
ALTER TABLE dashboard_users ADD COLUMN totp_secret BYTEA;
ALTER TABLE dashboard_users ADD COLUMN totp_enabled_at TEXT;
ALTER TABLE dashboard_users ADD COLUMN totp_last_step BIGINT;
-- The "last active administrator" check counts these.
CREATE INDEX dashboard_users_tenant_id_role_idx ON dashboard_users (tenant_id, role);

-- One-time links (invitations, password resets, the pending second sign-in step): only
-- the SHA-256 of the link's secret is kept; used_at makes each single use.
CREATE TABLE dashboard_links (
    token_hash BYTEA PRIMARY KEY,
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    user_id    TEXT NOT NULL REFERENCES dashboard_users (id) ON DELETE CASCADE,
    purpose    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT
);
CREATE INDEX dashboard_links_tenant_id_user_id_idx ON dashboard_links (tenant_id, user_id);
CREATE INDEX dashboard_links_expires_at_idx ON dashboard_links (expires_at);

-- Recovery codes: SHA-256 of each, usable once.
CREATE TABLE dashboard_recovery_codes (
    tenant_id TEXT NOT NULL REFERENCES tenants (id),
    user_id   TEXT NOT NULL REFERENCES dashboard_users (id) ON DELETE CASCADE,
    code_hash BYTEA NOT NULL,
    used_at   TEXT,
    PRIMARY KEY (user_id, code_hash)
);
CREATE INDEX dashboard_recovery_codes_tenant_id_user_id_idx
    ON dashboard_recovery_codes (tenant_id, user_id);

-- "Require two-factor authentication for password sign-in", per tenant.
CREATE TABLE dashboard_policies (
    tenant_id             TEXT PRIMARY KEY REFERENCES tenants (id),
    require_second_factor BOOLEAN NOT NULL,
    updated_at            TEXT NOT NULL
);
