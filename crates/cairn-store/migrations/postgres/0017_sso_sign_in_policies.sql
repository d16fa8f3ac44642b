-- Same numbering and shape as migrations/sqlite/0014_sso_sign_in_policies.sql.
-- Password sign-in off per tenant once single sign-on works (issue 17 item 6), and the
-- tenant's one break-glass administrator who keeps password sign-in (named by the
-- operator with `cairn user break-glass`). No row: password sign-in on, no break-glass.
CREATE TABLE sso_sign_in_policies (
    tenant_id         TEXT PRIMARY KEY REFERENCES tenants (id),
    password_sign_in  BOOLEAN NOT NULL,
    -- A deleted dashboard user is no break-glass administrator any more.
    break_glass_user  TEXT REFERENCES dashboard_users (id) ON DELETE SET NULL,
    updated_at        TEXT NOT NULL
);
