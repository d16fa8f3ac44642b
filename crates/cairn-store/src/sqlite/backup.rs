//! Copies of a SQLite database: `cairn db backup` (online, while `serve` writes),
//! `cairn db restore`, and the copy `serve` keeps before it migrates.
//!
//! Every copy is made with `VACUUM INTO` (<https://sqlite.org/lang_vacuum.html#vacuuminto>):
//! it reads the source in one read transaction, so the copy is the database as of one
//! commit, and in WAL mode that read blocks no writer. The copy is written under a
//! temporary name, synced, checked, then given its name: a crash never leaves a partial
//! file under the final name.

use super::conn::{self, map_err, SCHEMA_VERSION};
use cairn_core::{Error, Result};
use rusqlite::{Connection, ErrorCode, OpenFlags};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Copies `serve` keeps of the database as it was before a migration (older ones are
/// removed when a new one is made).
pub const KEEP_BEFORE_MIGRATION: usize = 3;

/// What a backup or restore wrote.
#[derive(Debug, Clone)]
pub struct Copied {
    pub path: PathBuf,
    pub bytes: u64,
    pub schema_version: i64,
}

/// What `restore` did.
#[derive(Debug, Clone)]
pub struct Restored {
    pub copied: Copied,
    /// Where the database that was replaced is kept (a hard link to it), if there was one.
    pub previous: Option<PathBuf>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> Error {
    Error::Unavailable(format!("{what} {}: {e}", path.display()))
}

fn utf8(path: &Path) -> Result<&str> {
    path.to_str().ok_or_else(|| Error::Invalid {
        field: "path",
        reason: format!("{} is not UTF-8", path.display()),
    })
}

/// `20261206T141503Z`: sorts in time order, and fits a file name.
fn stamp() -> String {
    let f = time::macros::format_description!("[year][month][day]T[hour][minute][second]Z");
    time::OffsetDateTime::now_utc()
        .format(&f)
        .unwrap_or_else(|_| "0".into())
}

fn sync_dir(dir: &Path) -> Result<()> {
    // A new name is durable once the directory that holds it is synced.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io("syncing directory", dir, e))
}

fn dir_of(path: &Path) -> &Path {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    }
}

fn file_name(db: &Path) -> Result<String> {
    db.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .ok_or_else(|| Error::Invalid {
            field: "database",
            reason: format!("{} names no file", db.display()),
        })
}

/// Opens an existing database file without creating it and without changing its journal
/// mode.
fn open_existing(path: &Path, read_only: bool) -> Result<Connection> {
    if !path.is_file() {
        return Err(Error::Invalid {
            field: "database",
            reason: format!("{} does not exist", path.display()),
        });
    }
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
    } | OpenFlags::SQLITE_OPEN_NO_MUTEX;
    let c = Connection::open_with_flags(path, flags).map_err(map_err)?;
    c.busy_timeout(Duration::from_secs(5)).map_err(map_err)?;
    Ok(c)
}

/// Writes a consistent copy of `src`'s database to `dst` (which must not exist): as
/// `<dst>.partial`, synced, checked by `check`, then linked to its name.
fn copy_to(src: &Connection, dst: &Path, check: impl Fn(&Path) -> Result<i64>) -> Result<Copied> {
    let partial = dst.with_file_name(format!("{}.partial", file_name(dst)?));
    // Left by a crash during an earlier copy to the same name.
    let _ = std::fs::remove_file(&partial);
    let result = (|| -> Result<Copied> {
        src.execute("VACUUM INTO ?1", [utf8(&partial)?])
            .map_err(map_err)?;
        std::fs::File::open(&partial)
            .and_then(|f| f.sync_all())
            .map_err(|e| io("syncing", &partial, e))?;
        let schema_version = check(&partial)?;
        // A link, not a rename: a rename would replace a file created at `dst` meanwhile.
        std::fs::hard_link(&partial, dst).map_err(|e| io("creating", dst, e))?;
        let _ = std::fs::remove_file(&partial);
        sync_dir(dir_of(dst))?;
        let bytes = std::fs::metadata(dst).map(|m| m.len()).unwrap_or(0);
        Ok(Copied {
            path: dst.to_owned(),
            bytes,
            schema_version,
        })
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    result
}

/// Checks that `path` is a sound Cairn database: `PRAGMA integrity_check` passes, and it
/// has a schema version and Cairn's first tables. Returns the schema version.
pub fn check(path: &Path) -> Result<i64> {
    let c = open_existing(path, true)?;
    let not_cairn = |why: String| Error::Invalid {
        field: "database",
        reason: format!("{} is not a Cairn database: {why}", path.display()),
    };
    let problems: Vec<String> = c
        .prepare("PRAGMA integrity_check")
        .and_then(|mut st| {
            st.query_map([], |r| r.get(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(|e| {
            if let rusqlite::Error::SqliteFailure(f, _) = &e {
                if f.code == ErrorCode::NotADatabase {
                    return not_cairn("not a SQLite file".into());
                }
            }
            map_err(e)
        })?;
    if problems != ["ok"] {
        return Err(Error::Invalid {
            field: "database",
            reason: format!(
                "{} fails PRAGMA integrity_check: {}",
                path.display(),
                problems
                    .iter()
                    .take(5)
                    .cloned()
                    .collect::<Vec<_>>()
                    .join("; ")
            ),
        });
    }
    let version = conn::schema_version(&c).map_err(map_err)?;
    if version < 1 {
        return Err(not_cairn("it has no schema version".into()));
    }
    for table in ["tenants", "users", "scim_tokens", "audit_events"] {
        let found: i64 = c
            .query_row(
                "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name = ?1",
                [table],
                |r| r.get(0),
            )
            .map_err(map_err)?;
        if found == 0 {
            return Err(not_cairn(format!("it has no table {table}")));
        }
    }
    Ok(version)
}

/// The schema version of the database at `db` (0 for none yet), read without creating
/// or migrating it.
pub fn schema_version_of(db: &Path) -> Result<i64> {
    if !db.exists() {
        return Ok(0);
    }
    conn::schema_version(&open_existing(db, true)?).map_err(map_err)
}

/// `cairn db backup`: a consistent copy of the database at `db` (which `serve` may be
/// writing) to the new file `to`, checked. The database's schema may be newer than this
/// build's: copying it reads nothing but pages.
pub fn backup(db: &Path, to: &Path) -> Result<Copied> {
    if to.exists() {
        return Err(Error::Invalid {
            field: "--to",
            reason: format!("{} exists; name a new file", to.display()),
        });
    }
    let src = open_existing(db, false)?;
    copy_to(&src, to, check)
}

/// Before migrating a database that holds data (schema `current`, older than this
/// build's), keeps a copy next to it, named after the first migration to come:
/// `cairn.db.before-0021-20261206T141503Z`. The [`KEEP_BEFORE_MIGRATION`] newest such
/// copies are kept.
pub(crate) fn before_migration(w: &Connection, db: &Path, current: i64) -> Result<PathBuf> {
    let dst = dir_of(db).join(format!(
        "{}.before-{:04}-{}",
        file_name(db)?,
        current + 1,
        stamp()
    ));
    copy_to(w, &dst, check).map_err(|e| {
        Error::Unavailable(format!(
            "backing up the database before migrating it to schema version \
             {SCHEMA_VERSION} failed ({e}); free some space, or start with \
             --no-backup-before-migrate to migrate without a backup"
        ))
    })?;
    prune_before_migration(db, KEEP_BEFORE_MIGRATION);
    Ok(dst)
}

/// The copies `before_migration` made of `db`, oldest first.
pub fn before_migration_copies(db: &Path) -> Vec<PathBuf> {
    let Ok(name) = file_name(db) else {
        return Vec::new();
    };
    let prefix = format!("{name}.before-");
    let Ok(entries) = std::fs::read_dir(dir_of(db)) else {
        return Vec::new();
    };
    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    let mut found: Vec<(String, PathBuf)> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().into_owned();
            let rest = n.strip_prefix(&prefix)?;
            // NNNN-YYYYMMDDTHHMMSSZ, nothing else (not `.partial`, not a restore's copy).
            let (version, at) = rest.split_once('-')?;
            let ok = version.len() == 4
                && digits(version)
                && at.is_ascii()
                && at.len() == 16
                && digits(&at[..8])
                && &at[8..9] == "T"
                && digits(&at[9..15])
                && at.ends_with('Z');
            ok.then(|| (format!("{at}{version}"), e.path()))
        })
        .collect();
    found.sort();
    found.into_iter().map(|(_, p)| p).collect()
}

fn prune_before_migration(db: &Path, keep: usize) {
    let copies = before_migration_copies(db);
    let extra = copies.len().saturating_sub(keep);
    for old in &copies[..extra] {
        if let Err(e) = std::fs::remove_file(old) {
            tracing::warn!(file = %old.display(), error = %e,
                "removing an old pre-migration copy of the database failed");
        }
    }
}

/// `cairn db restore`: replaces the database at `db` with the backup `from`, after
/// checking the backup (a sound Cairn database whose schema this build knows). Refused
/// while any process has `db` open. The database replaced is kept as
/// `<db>.before-restore-<time>`.
pub fn restore(from: &Path, db: &Path) -> Result<Restored> {
    // The backup itself, before anything is copied: a damaged file is named as such.
    let version = check(from)?;
    if version > SCHEMA_VERSION {
        return Err(crate::newer_schema(version));
    }
    let dir = dir_of(db);
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    let name = file_name(db)?;
    let wal = dir.join(format!("{name}-wal"));
    // Hold the database (if there is one) for the whole swap: an exclusive lock is granted
    // only while no other connection has it open. `serve` keeps its connections open in
    // WAL mode, and each holds a shared lock on the file for as long as it is open
    // (https://sqlite.org/lockingv3.html, https://sqlite.org/wal.html), so a running
    // server makes the lock fail at once.
    let held = if db.exists() {
        let c = open_existing(db, false)?;
        c.busy_timeout(Duration::ZERO).map_err(map_err)?;
        c.pragma_update(None, "locking_mode", "EXCLUSIVE")
            .map_err(map_err)?;
        match c.execute_batch("BEGIN EXCLUSIVE; COMMIT;") {
            Ok(()) => {}
            Err(rusqlite::Error::SqliteFailure(f, _))
                if matches!(f.code, ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked) =>
            {
                return Err(Error::Unavailable(format!(
                    "{} is in use by another process (a running `cairn serve`?); stop it \
                     before restoring",
                    db.display()
                )));
            }
            Err(e) => return Err(map_err(e)),
        }
        // Out of WAL mode: this checkpoints the WAL into the old file and removes it, so
        // no WAL of the old database is left to be replayed onto the new one.
        let mode: String = c
            .pragma_update_and_check(None, "journal_mode", "DELETE", |r| r.get(0))
            .map_err(map_err)?;
        if !mode.eq_ignore_ascii_case("delete") || wal.exists() {
            return Err(Error::Unavailable(format!(
                "could not take {} out of WAL mode (journal mode {mode}); nothing was \
                 replaced",
                db.display()
            )));
        }
        Some(c)
    } else {
        if wal.exists() {
            return Err(Error::Invalid {
                field: "database",
                reason: format!(
                    "{} is left without its database; remove it (it would be replayed onto \
                     the restored database)",
                    wal.display()
                ),
            });
        }
        None
    };
    let src = open_existing(from, true)?;
    let staged = dir.join(format!("{name}.restore-{}", std::process::id()));
    let _ = std::fs::remove_file(&staged);
    let copied = copy_to(&src, &staged, |p| {
        let v = check(p)?;
        if v != version {
            return Err(Error::Internal(format!(
                "the copy has schema version {v}, the backup {version}"
            )));
        }
        Ok(v)
    })?;
    drop(src);
    let previous = match &held {
        Some(_) => {
            let keep = dir.join(format!("{name}.before-restore-{}", stamp()));
            if let Err(e) = std::fs::hard_link(db, &keep) {
                let _ = std::fs::remove_file(&staged);
                return Err(io("keeping the replaced database as", &keep, e));
            }
            Some(keep)
        }
        None => None,
    };
    if let Err(e) = std::fs::rename(&staged, db) {
        let _ = std::fs::remove_file(&staged);
        return Err(io("replacing", db, e));
    }
    sync_dir(dir)?;
    drop(held);
    Ok(Restored {
        copied: Copied {
            path: db.to_owned(),
            ..copied
        },
        previous,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Only names of the exact pre-migration form are pruned, oldest first whatever
    /// migration number they carry.
    #[test]
    fn pruning_keeps_the_newest_pre_migration_copies_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cairn.db");
        let names = [
            "cairn.db.before-0019-20250101T000000Z",
            "cairn.db.before-0007-20260101T000000Z",
            "cairn.db.before-0021-20240101T000000Z",
            "cairn.db.before-0020-20270101T000000Z",
            "cairn.db.before-0021-20250101T000000Z.partial",
            "cairn.db.before-restore-20200101T000000Z",
            "other.db.before-0001-20200101T000000Z",
            "cairn.db",
        ];
        for n in names {
            std::fs::write(dir.path().join(n), b"x").unwrap();
        }
        prune_before_migration(&db, 2);
        let mut left: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(
            left,
            [
                "cairn.db",
                "cairn.db.before-0007-20260101T000000Z",
                "cairn.db.before-0020-20270101T000000Z",
                "cairn.db.before-0021-20250101T000000Z.partial",
                "cairn.db.before-restore-20200101T000000Z",
                "other.db.before-0001-20200101T000000Z",
            ]
        );
    }

    /// A file that is not a Cairn database is refused before anything is replaced, and
    /// so is a backup of a newer schema.
    #[test]
    fn restore_refuses_what_is_not_a_known_cairn_database() {
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("cairn.db");
        drop(crate::SqliteStore::open(&db).unwrap());

        let text = dir.path().join("notes.txt");
        std::fs::write(
            &text,
            "not a database, but as long as a header ".repeat(100),
        )
        .unwrap();
        let e = restore(&text, &db).unwrap_err().to_string();
        assert!(e.contains("not a Cairn database"), "{e}");

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .unwrap()
            .execute_batch("CREATE TABLE t (x); PRAGMA user_version = 3;")
            .unwrap();
        let e = restore(&other, &db).unwrap_err().to_string();
        assert!(
            e.contains("not a Cairn database") && e.contains("tenants"),
            "{e}"
        );

        let newer = dir.path().join("newer.db");
        backup(&db, &newer).unwrap();
        Connection::open(&newer)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        let e = restore(&newer, &db).unwrap_err().to_string();
        assert!(
            e.contains(&format!("version {}", SCHEMA_VERSION + 1))
                && e.contains(&format!("version {SCHEMA_VERSION}")),
            "{e}"
        );
        // Nothing was replaced: no copy of a replaced database, the database as it was.
        let names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert!(!names.iter().any(|n| n.contains("restore")), "{names:?}");
        assert_eq!(check(&db).unwrap(), SCHEMA_VERSION);
    }
}
