-- Dashboard sessions, sign-in throttling, and indexes for the dashboard's lists.

-- Looked up by the SHA-256 of the session id before the tenant is known, hence keyed by
-- the hash alone; tenant_id is kept (and indexed first) so a tenant's sessions can be
-- listed and ended.
CREATE TABLE dashboard_sessions (
    id_hash      BLOB PRIMARY KEY,
    tenant_id    TEXT NOT NULL REFERENCES tenants (id),
    user_id      TEXT NOT NULL REFERENCES dashboard_users (id),
    csrf_token   TEXT NOT NULL,
    created_at   TEXT NOT NULL,
    last_seen_at TEXT NOT NULL,
    expires_at   TEXT NOT NULL
) STRICT;
CREATE INDEX dashboard_sessions_tenant_id_user_id_idx ON dashboard_sessions (tenant_id, user_id);
CREATE INDEX dashboard_sessions_expires_at_idx ON dashboard_sessions (expires_at);

-- Failed sign-ins, keyed by a SHA-256 of "account:<email>" or "address:<ip>" (sign-in
-- happens before any tenant is known, and the table should hold no emails or addresses).
CREATE TABLE login_failures (
    key_hash BLOB NOT NULL,
    at       TEXT NOT NULL
) STRICT;
CREATE INDEX login_failures_key_hash_at_idx ON login_failures (key_hash, at);
CREATE INDEX login_failures_at_idx ON login_failures (at);

-- The accounts list: every account (soft-deleted ones too) in userName order, keyset
-- paged on (user_name_fold, id). The unique index on user_name_fold is partial (live
-- accounts only) and cannot serve it.
CREATE INDEX users_tenant_id_user_name_fold_id_idx ON users (tenant_id, user_name_fold, id);
-- The activity chart counts a tenant's events by time.
CREATE INDEX audit_events_tenant_id_at_idx ON audit_events (tenant_id, at);
CREATE INDEX audit_events_tenant_id_action_idx ON audit_events (tenant_id, action, id);
