-- OpenID Connect sign-in (issue 17): each tenant's OpenID provider (issuer, client, its
-- own SSO switch and scope), and the authorization requests in progress (state, nonce
-- and PKCE verifier kept here, server-side, each used once).

CREATE TABLE sso_oidc_configs (
    tenant_id          TEXT PRIMARY KEY REFERENCES tenants (id),
    enabled            INTEGER NOT NULL,
    issuer             TEXT NOT NULL,
    client_id          TEXT NOT NULL,
    -- Never rendered back (write-only on the settings page and in the CLI).
    client_secret      TEXT NOT NULL,
    scope_admins       INTEGER NOT NULL,
    scope_all_accounts INTEGER NOT NULL,
    -- JSON array of userNames.
    scope_accounts     TEXT NOT NULL,
    updated_at         TEXT NOT NULL
) STRICT;

-- Single use: a callback is accepted only for a row found here by its state, which it
-- removes.
CREATE TABLE sso_oidc_requests (
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    state         TEXT NOT NULL,
    nonce         TEXT NOT NULL,
    pkce_verifier TEXT NOT NULL,
    expires_at    TEXT NOT NULL,
    PRIMARY KEY (tenant_id, state)
) STRICT;
CREATE INDEX sso_oidc_requests_expires_at_idx ON sso_oidc_requests (expires_at);
