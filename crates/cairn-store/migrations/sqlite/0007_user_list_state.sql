-- Per tenant: how many live accounts it has, and a generation that every change to its
-- accounts advances. Kept by triggers, so writes of every process (server and CLI) keep
-- it exact. A listing without a filter takes `totalResults` from `live` instead of
-- counting the tenant, and a later page seeks to where a page read at the same
-- generation said it starts instead of walking its OFFSET (`sqlite::list_live_users`).
CREATE TABLE user_list_state (
    tenant_id  TEXT PRIMARY KEY REFERENCES tenants (id),
    live       INTEGER NOT NULL,
    generation INTEGER NOT NULL
) STRICT;

INSERT INTO user_list_state (tenant_id, live, generation)
SELECT t.id,
       (SELECT COUNT(*) FROM users u WHERE u.tenant_id = t.id AND u.deleted_at IS NULL),
       0
FROM tenants t;

CREATE TRIGGER users_list_state_insert AFTER INSERT ON users BEGIN
    INSERT OR IGNORE INTO user_list_state (tenant_id, live, generation)
        VALUES (NEW.tenant_id, 0, 0);
    UPDATE user_list_state
        SET live = live + (NEW.deleted_at IS NULL), generation = generation + 1
        WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER users_list_state_update AFTER UPDATE ON users BEGIN
    UPDATE user_list_state
        SET live = live + (NEW.deleted_at IS NULL) - (OLD.deleted_at IS NULL),
            generation = generation + 1
        WHERE tenant_id = NEW.tenant_id;
END;

CREATE TRIGGER users_list_state_delete AFTER DELETE ON users BEGIN
    UPDATE user_list_state
        SET live = live - (OLD.deleted_at IS NULL), generation = generation + 1
        WHERE tenant_id = OLD.tenant_id;
END;
