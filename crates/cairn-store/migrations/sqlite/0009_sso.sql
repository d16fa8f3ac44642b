-- Single sign-on (issue 17): each tenant's SAML identity provider and SSO scope, the
-- outstanding AuthnRequest ids, the replay store of assertion ids, the identity
-- provider's subject pinned per dashboard user or account, and backup accounts' sessions.

CREATE TABLE sso_saml_configs (
    tenant_id          TEXT PRIMARY KEY REFERENCES tenants (id),
    enabled            INTEGER NOT NULL,
    idp_entity_id      TEXT NOT NULL,
    sso_url            TEXT NOT NULL,
    -- JSON array of base64 DER certificates; never empty (checked before saving).
    certificates       TEXT NOT NULL,
    metadata_xml       TEXT,
    metadata_url       TEXT,
    scope_admins       INTEGER NOT NULL,
    scope_all_accounts INTEGER NOT NULL,
    -- JSON array of userNames.
    scope_accounts     TEXT NOT NULL,
    updated_at         TEXT NOT NULL
) STRICT;

-- Single use: a response is accepted only for a row found here, which it removes.
CREATE TABLE sso_requests (
    tenant_id  TEXT NOT NULL REFERENCES tenants (id),
    request_id TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    PRIMARY KEY (tenant_id, request_id)
) STRICT;
CREATE INDEX sso_requests_expires_at_idx ON sso_requests (expires_at);

-- Assertion ids seen, kept until their NotOnOrAfter plus the allowed skew.
CREATE TABLE sso_assertions (
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    assertion_id TEXT NOT NULL,
    keep_until   TEXT NOT NULL,
    PRIMARY KEY (tenant_id, assertion_id)
) STRICT;
CREATE INDEX sso_assertions_keep_until_idx ON sso_assertions (keep_until);

CREATE TABLE sso_subjects (
    tenant_id      TEXT NOT NULL REFERENCES tenants (id),
    principal_kind TEXT NOT NULL,
    principal_id   TEXT NOT NULL,
    issuer         TEXT NOT NULL,
    subject        TEXT NOT NULL,
    pinned_at      TEXT NOT NULL,
    PRIMARY KEY (tenant_id, principal_kind, principal_id)
) STRICT;

-- Like dashboard_sessions, found by the SHA-256 of the cookie; a purged account's
-- sessions go with it.
CREATE TABLE account_sessions (
    id_hash      BLOB PRIMARY KEY,
    tenant_id    TEXT NOT NULL,
    user_id      TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
) STRICT;
CREATE INDEX account_sessions_tenant_id_user_id_idx ON account_sessions (tenant_id, user_id);
CREATE INDEX account_sessions_expires_at_idx ON account_sessions (expires_at);
