-- Same numbering and shape as migrations/sqlite/0022_welcome.sql.
-- Getting people started (issue 22): one-time sign-in links for backup
-- accounts. Only the SHA-256 of a link's secret is kept; used_at makes each single use.
CREATE TABLE account_links (
    token_hash BYTEA PRIMARY KEY,
    tenant_id  TEXT NOT NULL,
    user_id    TEXT NOT NULL,
    created_at TEXT NOT NULL,
    expires_at TEXT NOT NULL,
    used_at    TEXT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX account_links_tenant_id_user_id_idx ON account_links (tenant_id, user_id);
CREATE INDEX account_links_expires_at_idx ON account_links (expires_at);

-- Mail to backup accounts (items 3–5): a durable outbox, sent by a background task with
-- retries, so that no request waits on the relay and nothing is lost on a restart. A row
-- names whom and what; its sign-in link is made when the mail is sent, so no link
-- secret is ever stored. state: pending, sent, failed (refused, or given up after the
-- retries) or dropped (nothing to send any more).
-- One welcome and one reminder per account at most (the unique index), whoever queues it.
-- Instances claim due rows with FOR UPDATE SKIP LOCKED and a claimed_until lease.
CREATE TABLE mail_outbox (
    id              TEXT PRIMARY KEY,
    tenant_id       TEXT NOT NULL,
    user_id         TEXT NOT NULL,
    kind            TEXT NOT NULL,
    state           TEXT NOT NULL,
    created_at      TEXT NOT NULL,
    next_attempt_at TEXT NOT NULL,
    attempts        INTEGER NOT NULL,
    claimed_until   TEXT,
    sent_at         TEXT,
    last_error      TEXT,
    FOREIGN KEY (tenant_id, user_id) REFERENCES users (tenant_id, id) ON DELETE CASCADE
);
CREATE INDEX mail_outbox_due_idx ON mail_outbox (state, next_attempt_at);
CREATE INDEX mail_outbox_tenant_id_user_id_idx ON mail_outbox (tenant_id, user_id);
CREATE UNIQUE INDEX mail_outbox_once_key ON mail_outbox (tenant_id, user_id, kind)
    WHERE kind IN ('welcome', 'reminder');

-- "Welcome new accounts" per tenant, since when (accounts created before are not
-- welcomed), and "remind after N days without a backup (once)" (NULL: no reminder).
CREATE TABLE welcome_settings (
    tenant_id   TEXT PRIMARY KEY REFERENCES tenants (id),
    enabled     BOOLEAN NOT NULL,
    enabled_at  TEXT,
    remind_days INTEGER,
    updated_at  TEXT NOT NULL
);
