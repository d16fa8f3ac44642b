//! Opening SQLite connections with Cairn's settings, migrations, and error mapping.

use cairn_core::ids::fold_case;
use cairn_core::Error;
use rusqlite::functions::FunctionFlags;
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::Path;
use std::time::Duration;

const MIGRATIONS: &[&str] = &[
    include_str!("../../migrations/sqlite/0001_init.sql"),
    include_str!("../../migrations/sqlite/0002_dashboard.sql"),
    include_str!("../../migrations/sqlite/0003_groups.sql"),
    include_str!("../../migrations/sqlite/0004_backup_keys.sql"),
    include_str!("../../migrations/sqlite/0005_users_paging_index.sql"),
    include_str!("../../migrations/sqlite/0006_drop_redundant_user_name_index.sql"),
    include_str!("../../migrations/sqlite/0007_user_list_state.sql"),
    include_str!("../../migrations/sqlite/0008_purge_marker_and_tenant_limits.sql"),
    include_str!("../../migrations/sqlite/0009_sso.sql"),
    include_str!("../../migrations/sqlite/0010_group_member_display.sql"),
    include_str!("../../migrations/sqlite/0011_scim_requests.sql"),
    include_str!("../../migrations/sqlite/0012_sso_group_roles.sql"),
    include_str!("../../migrations/sqlite/0013_sso_oidc.sql"),
    include_str!("../../migrations/sqlite/0014_device_keys.sql"),
    include_str!("../../migrations/sqlite/0015_backup_freshness.sql"),
    include_str!("../../migrations/sqlite/0016_vault_protection.sql"),
    include_str!("../../migrations/sqlite/0017_sso_sign_in_policies.sql"),
    include_str!("../../migrations/sqlite/0018_people.sql"),
    include_str!("../../migrations/sqlite/0019_vault_verifications.sql"),
    include_str!("../../migrations/sqlite/0020_scim_requests_lean_indexes.sql"),
    include_str!("../../migrations/sqlite/0021_scim_request_batches.sql"),
    include_str!("../../migrations/sqlite/0022_welcome.sql"),
];

/// The schema version `migrate` brings a database to.
pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The database's schema version (0 for a new, empty file).
pub(crate) fn schema_version(conn: &Connection) -> rusqlite::Result<i64> {
    conn.pragma_query_value(None, "user_version", |r| r.get(0))
}

pub(crate) fn open(path: &Path, writer: bool) -> rusqlite::Result<Connection> {
    let flags = if writer {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let conn = Connection::open_with_flags(path, flags)?;
    conn.busy_timeout(Duration::from_secs(5))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    // FULL: a commit is on disk before the request that caused it is answered.
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "foreign_keys", "ON")?;
    conn.pragma_update(None, "trusted_schema", "OFF")?;
    if writer {
        // 8 MiB of page cache (SQLite's default is 2 MiB): the writer touches index pages
        // all over a tenant's key space. Not larger: SQLite truncates the cache at each
        // commit. Readers keep the default, which was faster for them (BENCHMARKS.md,
        // 2026-12-04 evening, "Tried and dropped").
        conn.pragma_update(None, "cache_size", -8_192)?; // negative: in KiB

        // Checkpoints run on their own thread (`writer::checkpoint`); the writer runs one
        // itself only when the WAL reaches ~64 MiB, where it finds most frames copied
        // already and lets the next write start the WAL over.
        conn.pragma_update(None, "wal_autocheckpoint", 16_384)?;
    } else {
        // Readers' sorts stay in memory. The writer runs each write in its own savepoint,
        // whose sub-journal holds the original of every page the write changes: with
        // `temp_store = MEMORY` SQLite keeps it in 1 KiB chunks, one malloc each (a large
        // share of the writer's cost, in `subjournalPageIfRequired`). With the
        // default temp store it is kept in memory in one chunk of SQLITE_STMTJRNL_SPILL bytes
        // (1 MiB, `.cargo/config.toml`) and spills to a temp file only beyond that.
        conn.pragma_update(None, "temp_store", "MEMORY")?;
    }
    conn.set_prepared_statement_cache_capacity(64);
    // The same case folding as `cairn_core::ids::fold_case`, so SQL and Rust agree on
    // what "case-insensitive" means beyond ASCII.
    conn.create_scalar_function(
        "scim_fold",
        1,
        FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC,
        |ctx| {
            let v: Option<String> = ctx.get(0).ok();
            Ok(v.map(|s| fold_case(&s)))
        },
    )?;
    Ok(conn)
}

/// Runs one statement without parameters (transaction control: `BEGIN`, `SAVEPOINT`,
/// `COMMIT`…) through the connection's statement cache. `execute_batch` parses its SQL
/// again on every call, and these run once or twice per read and per write.
pub(crate) fn exec_cached(conn: &Connection, sql: &str) -> rusqlite::Result<()> {
    conn.prepare_cached(sql)?.execute([]).map(drop)
}

/// Applies pending migrations under an exclusive write lock, so processes that start at
/// the same moment migrate once.
/// A database a newer Cairn has migrated is refused (see [`crate::newer_schema`]).
pub(crate) fn migrate(conn: &mut Connection) -> cairn_core::Result<()> {
    let tx = conn
        .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
        .map_err(map_err)?;
    let current = schema_version(&tx).map_err(map_err)?;
    if current > SCHEMA_VERSION {
        return Err(crate::newer_schema(current));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate() {
        let version = i as i64 + 1;
        if version > current {
            tx.execute_batch(sql).map_err(map_err)?;
            tx.pragma_update(None, "user_version", version)
                .map_err(map_err)?;
        }
    }
    tx.commit().map_err(map_err)
}

/// Maps SQLite failures to domain outcomes. Unique violations are recognised by the
/// columns SQLite names (it does not report index names).
pub(crate) fn map_err(e: rusqlite::Error) -> Error {
    if let rusqlite::Error::SqliteFailure(f, msg) = &e {
        let msg = msg.as_deref().unwrap_or("");
        match f.code {
            ErrorCode::ConstraintViolation => {
                if msg.contains("users.tenant_id, users.user_name_fold") {
                    return Error::Conflict {
                        attribute: "userName",
                    };
                }
                if msg.contains("groups.tenant_id, groups.display_name_fold") {
                    return Error::Conflict {
                        attribute: "displayName",
                    };
                }
                if msg.contains("groups.tenant_id, groups.id") {
                    return Error::Conflict { attribute: "id" };
                }
                if msg.contains("backup_keys.tenant_id, backup_keys.user_id, backup_keys.name_fold")
                {
                    return Error::Conflict { attribute: "name" };
                }
                if msg.contains("dashboard_users.email_fold") {
                    return Error::Conflict { attribute: "email" };
                }
                if msg.contains("tenants.id") || msg.contains("users.tenant_id, users.id") {
                    return Error::Conflict { attribute: "id" };
                }
                return Error::Internal(format!("constraint: {msg}"));
            }
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::DiskFull
            | ErrorCode::ReadOnly
            | ErrorCode::CannotOpen
            | ErrorCode::SystemIoFailure
            | ErrorCode::OutOfMemory => return Error::Unavailable(e.to_string()),
            _ => {}
        }
    }
    Error::Internal(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bundled SQLite carries the flags of `.cargo/config.toml`: a build that lost
    /// them (another `LIBSQLITE3_FLAGS`, a system SQLite) would run correctly but slower,
    /// which nothing else would notice.
    #[test]
    fn sqlite_is_built_with_the_flags_cairn_sets() {
        let c = Connection::open_in_memory().unwrap();
        let mut st = c.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for want in ["DEFAULT_MEMSTATUS=0", "STMTJRNL_SPILL=1048576"] {
            assert!(
                options.iter().any(|o| o == want),
                "{want} not in {options:?}"
            );
        }
        assert!(
            !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
    }

    /// The SQLite Cairn runs is at least 3.50.2, the release that fixed CVE-2025-6965
    /// (aggregate terms exceeding the available columns could corrupt memory;
    /// https://www.sqlite.org/cves.html). It also holds the 3.49.1 fixes for
    /// CVE-2025-29087 and CVE-2025-29088. Downgrading rusqlite (whose libsqlite3-sys
    /// bundles SQLite) below 0.37, or linking an older system SQLite, fails here.
    #[test]
    fn sqlite_has_the_2025_security_fixes() {
        println!("bundled SQLite {}", rusqlite::version());
        assert!(
            rusqlite::version_number() >= 3_050_002,
            "SQLite {} predates 3.50.2 (CVE-2025-6965)",
            rusqlite::version()
        );
    }

    /// A database that already holds accounts when migration 0007 arrives gets each
    /// tenant's live count right, and the triggers keep it right afterwards.
    #[test]
    fn the_live_count_starts_from_existing_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(&dir.path().join("m.db"), true).unwrap();
        for sql in &MIGRATIONS[..6] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", 6).unwrap();
        c.execute_batch(
            "INSERT INTO tenants (id, name, account_size_gb, created_at) VALUES ('t1', 'a', 1, 'x'), ('t2', 'b', 1, 'x');
             INSERT INTO users (id, tenant_id, user_name, user_name_fold, active, doc, quota_gb,
                 scim_managed, created_at, updated_at, version, deleted_at) VALUES
               ('u1', 't1', 'a', 'a', 1, '{}', 1, 1, 'x', 'x', 1, NULL),
               ('u2', 't1', 'b', 'b', 1, '{}', 1, 1, 'x', 'x', 1, NULL),
               ('u3', 't1', 'c', 'c', 1, '{}', 1, 1, 'x', 'x', 1, 'gone'),
               ('u4', 't2', 'a', 'a', 1, '{}', 1, 1, 'x', 'x', 1, 'gone');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let live = |c: &Connection, t: &str| -> i64 {
            c.query_row(
                "SELECT live FROM user_list_state WHERE tenant_id = ?",
                [t],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!((live(&c, "t1"), live(&c, "t2")), (2, 0));
        c.execute_batch(
            "UPDATE users SET deleted_at = NULL WHERE id = 'u4';
             UPDATE users SET deleted_at = 'gone' WHERE id = 'u1';
             DELETE FROM users WHERE id = 'u3';
             INSERT INTO users (id, tenant_id, user_name, user_name_fold, active, doc, quota_gb,
                 scim_managed, created_at, updated_at, version) VALUES
               ('u5', 't2', 'e', 'e', 1, '{}', 1, 1, 'x', 'x', 1);",
        )
        .unwrap();
        assert_eq!((live(&c, "t1"), live(&c, "t2")), (1, 2));
    }

    /// Issue 21: an account's single backup key from before device keys becomes its key
    /// named "default", same basic-auth user and hash, and names are unique per account.
    #[test]
    fn an_existing_backup_key_becomes_the_default_device_key() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = open(&dir.path().join("m.db"), true).unwrap();
        let mine = MIGRATIONS
            .iter()
            .position(|m| m.starts_with("-- Device keys"))
            .unwrap();
        for sql in &MIGRATIONS[..mine] {
            c.execute_batch(sql).unwrap();
        }
        c.pragma_update(None, "user_version", mine as i64).unwrap();
        c.execute_batch(
            "INSERT INTO tenants (id, name, account_size_gb, created_at) VALUES ('t1', 'a', 1, 'x');
             INSERT INTO users (id, tenant_id, user_name, user_name_fold, active, doc, quota_gb,
                 scim_managed, created_at, updated_at, version) VALUES
               ('u1', 't1', 'a', 'a', 1, '{}', 1, 1, 'x', 'x', 1),
               ('u2', 't1', 'b', 'b', 1, '{}', 1, 1, 'x', 'x', 1);
             INSERT INTO backup_keys (tenant_id, user_id, key_user, secret_hash, created_at)
               VALUES ('t1', 'u1', 'u1', X'0102', '2026-01-01T00:00:00.000Z');",
        )
        .unwrap();
        migrate(&mut c).unwrap();
        let row: (String, String, String, Vec<u8>, Option<String>) = c
            .query_row(
                "SELECT user_id, key_user, name, secret_hash, last_used_at FROM backup_keys",
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
            )
            .unwrap();
        assert_eq!(
            row,
            ("u1".into(), "u1".into(), "default".into(), vec![1, 2], None)
        );
        let add = |c: &Connection, user: &str, key_user: &str, name: &str| {
            c.execute(
                "INSERT INTO backup_keys (tenant_id, user_id, key_user, name, name_fold,
                     secret_hash, created_at) VALUES ('t1', ?1, ?2, ?3, lower(?3), X'00', 'x')",
                [user, key_user, name],
            )
            .map_err(map_err)
        };
        add(&c, "u1", "k2", "laptop").unwrap();
        add(&c, "u2", "k3", "Default").unwrap();
        assert_eq!(
            add(&c, "u1", "k4", "DEFAULT").unwrap_err(),
            Error::Conflict { attribute: "name" }
        );
    }
}
