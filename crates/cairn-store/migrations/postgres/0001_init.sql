-- Tenants, SCIM tokens, backup accounts, dashboard users and the audit log.
-- Same numbering and shape as migrations/sqlite/0001_init.sql. Timestamps are stored as
-- canonical UTC text (fixed width, millisecond precision) in both dialects, so that text
-- order is time order and filters compare identically.

CREATE TABLE tenants (
    id              TEXT PRIMARY KEY,
    name            TEXT NOT NULL,
    scim_enabled    BOOLEAN NOT NULL DEFAULT false,
    account_size_gb BIGINT NOT NULL,
    created_at      TEXT NOT NULL
);

CREATE TABLE scim_tokens (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL REFERENCES tenants (id),
    hash            BYTEA NOT NULL,
    hint            TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    last_used_at    TEXT,
    last_user_agent TEXT,
    revoked_at      TEXT
);
CREATE INDEX scim_tokens_tenant_id_idx ON scim_tokens (tenant_id, revoked_at);

CREATE TABLE users (
    seq               BIGSERIAL PRIMARY KEY,
    id                TEXT NOT NULL,
    tenant_id         TEXT NOT NULL REFERENCES tenants (id),
    user_name         TEXT NOT NULL,
    user_name_fold    TEXT NOT NULL,
    external_id       TEXT,
    display_name      TEXT,
    display_name_fold TEXT,
    email             TEXT,
    email_fold        TEXT,
    active            BOOLEAN NOT NULL,
    doc               JSONB NOT NULL,
    quota_gb          BIGINT NOT NULL,
    used_bytes        BIGINT NOT NULL DEFAULT 0,
    scim_managed      BOOLEAN NOT NULL,
    created_at        TEXT NOT NULL,
    updated_at        TEXT NOT NULL,
    version           BIGINT NOT NULL,
    deleted_at        TEXT,
    purge_at          TEXT
);
CREATE UNIQUE INDEX users_tenant_id_id_key ON users (tenant_id, id);
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
);
CREATE UNIQUE INDEX dashboard_users_email_fold_key ON dashboard_users (email_fold);
CREATE INDEX dashboard_users_tenant_id_idx ON dashboard_users (tenant_id);

CREATE TABLE audit_events (
    id          BIGSERIAL PRIMARY KEY,
    tenant_id   TEXT NOT NULL,
    at          TEXT NOT NULL,
    actor_kind  TEXT NOT NULL,
    actor_id    TEXT,
    action      TEXT NOT NULL,
    target_type TEXT NOT NULL,
    target_id   TEXT,
    target_name TEXT,
    changes     JSONB NOT NULL,
    user_agent  TEXT,
    request_id  TEXT
);
CREATE INDEX audit_events_tenant_id_idx ON audit_events (tenant_id, id);
CREATE INDEX audit_events_tenant_id_target_id_idx ON audit_events (tenant_id, target_id, id);
