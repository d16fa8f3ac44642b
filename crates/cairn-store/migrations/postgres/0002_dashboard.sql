-- Dashboard sessions, sign-in throttling, and indexes for the dashboard's lists.
-- Same numbering and shape as migrations/sqlite/0002_dashboard.sql.

CREATE TABLE dashboard_sessions (
    id_hash      BYTEA PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    user_id      TEXT NOT NULL REFERENCES dashboard_users (id),
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL
);
CREATE INDEX dashboard_sessions_tenant_id_user_id_idx ON dashboard_sessions (tenant_id, user_id);
CREATE INDEX dashboard_sessions_expires_at_idx ON dashboard_sessions (expires_at);

CREATE TABLE login_failures (
    key_hash BYTEA NOT NULL,
    at       TEXT NOT NULL
);
CREATE INDEX login_failures_key_hash_at_idx ON login_failures (key_hash, at);
CREATE INDEX login_failures_at_idx ON login_failures (at);

CREATE INDEX users_tenant_id_user_name_fold_id_idx ON users (tenant_id, user_name_fold, id);
-- Prefix search (LIKE 'abc%') can use a btree only with pattern operator classes unless
-- the database collation is C.
CREATE INDEX users_tenant_id_user_name_fold_pattern_idx ON users (tenant_id, user_name_fold text_pattern_ops);
CREATE INDEX users_tenant_id_email_fold_pattern_idx ON users (tenant_id, email_fold text_pattern_ops);
CREATE INDEX users_tenant_id_display_name_fold_pattern_idx ON users (tenant_id, display_name_fold text_pattern_ops);
CREATE INDEX audit_events_tenant_id_at_idx ON audit_events (tenant_id, at);
CREATE INDEX audit_events_tenant_id_action_idx ON audit_events (tenant_id, action, id);
