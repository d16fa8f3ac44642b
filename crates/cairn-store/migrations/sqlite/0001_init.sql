-- Tenants, SCIM tokens, backup accounts, dashboard users and the audit log.
-- Every table carries tenant_id; every unique key and index leads with it.

CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    scim_enabled    INTEGER NOT NULL DEFAULT 0,
    account_size_gb INTEGER NOT NULL,
    created_at      TEXT NOT NULL
) STRICT;

CREATE TABLE scim_tokens (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    hash            BLOB NOT NULL,
    hint            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    last_used_at    TEXT,
    last_user_agent TEXT,
    revoked_at      TEXT
) STRICT;
CREATE INDEX scim_tokens_tenant_id_idx ON scim_tokens (tenant_id, revoked_at);

CREATE TABLE users (
    seq               INTEGER PRIMARY KEY,
    id                TEXT NOT NULL,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    user_name         TEXT NOT NULL,
    user_name_fold    TEXT NOT NULL,
    external_id       TEXT,
    display_name      TEXT,
    display_name_fold TEXT,
    email             TEXT,
    email_fold        TEXT,
    active            INTEGER NOT NULL,
    doc               TEXT NOT NULL,
    quota_gb          INTEGER NOT NULL,
    used_bytes        INTEGER NOT NULL DEFAULT 0,
    scim_managed      INTEGER NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    version           INTEGER NOT NULL,
    deleted_at        TEXT,
    purge_at          TEXT
) STRICT;
CREATE UNIQUE INDEX users_tenant_id_id_key ON users (tenant_id, id);
-- userName is unique among live accounts only: a soft-deleted account keeps its name for
-- the dashboard but does not block a new account (see README, "Soft delete").
CREATE UNIQUE INDEX users_tenant_id_user_name_fold_key ON users (tenant_id, user_name_fold)
    WHERE deleted_at IS NULL;
CREATE INDEX users_tenant_id_external_id_idx ON users (tenant_id, external_id);
CREATE INDEX users_tenant_id_email_fold_idx ON users (tenant_id, email_fold);
CREATE INDEX users_tenant_id_display_name_fold_idx ON users (tenant_id, display_name_fold);
CREATE INDEX users_tenant_id_deleted_user_name_idx ON users (tenant_id, user_name_fold, deleted_at)
    WHERE deleted_at IS NOT NULL;
CREATE INDEX users_purge_at_idx ON users (purge_at) WHERE deleted_at IS NOT NULL;

CREATE TABLE dashboard_users (
    id            TEXT PRIMARY KEY,
    tenant_id     TEXT NOT NULL REFERENCES tenants (id),
    email         TEXT NOT NULL,
    email_fold    TEXT NOT NULL,
    role          TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at    TEXT NOT NULL
) STRICT;
-- The sign-in page asks for an email only, so an email names one dashboard user overall.
CREATE UNIQUE INDEX dashboard_users_email_fold_key ON dashboard_users (email_fold);
CREATE INDEX dashboard_users_tenant_id_idx ON dashboard_users (tenant_id);

CREATE TABLE audit_events (
    id          INTEGER PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT,
    target_name TEXT,
    changes     TEXT NOT NULL,
    user_agent  TEXT,
    request_id  TEXT
) STRICT;
CREATE INDEX audit_events_tenant_id_idx ON audit_events (tenant_id, id);
CREATE INDEX audit_events_tenant_id_target_id_idx ON audit_events (tenant_id, target_id, id);
