//! Deletion protection: a protected delete moves an object into its repository's trash
//! (`<repo>/trash/<kind>/<name>.<deleted>.<until>.<nonce>`) instead of destroying it.
//! Trashed objects are out of every listing and unreadable through the protocol (their
//! live key is gone), still count in the repository's size, and come back by
//! [`Repo::undelete`] or go for good by [`Vault::purge_trash`] once `until` has passed.
//!
//! The trash lives in the object store itself, next to the objects, and its entries carry
//! their own deletion and expiry times in their names: moving an object and recording
//! the deletion are then one operation (a rename, or one copy under the delete's claim on
//! S3) that every instance sharing the store sees, with no database row that could
//! disagree with the bytes. Times are the caller's clock (Unix seconds), so the server's
//! injected clock decides, not the file system's or the object store's.

use crate::{Kind, Object, ObjectName, Repo, RepoBackend, Result, Vault, VaultError};

/// The directory (or key prefix) of a repository's trash.
pub(crate) const TRASH_DIR: &str = "trash";

/// One trashed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashEntry {
    pub kind: Kind,
    pub name: ObjectName,
    /// When it was deleted (Unix seconds, the server's clock).
    pub deleted_at: i64,
    /// When the purge may remove it (Unix seconds).
    pub until: i64,
    pub size: u64,
    /// The entry's file name under `trash/<kind>/`.
    pub(crate) file: String,
}

impl TrashEntry {
    /// The file name of a new entry. The nonce keeps two deletions of one name (an
    /// object re-uploaded and deleted again in the same second) apart, so no entry ever
    /// replaces another.
    pub(crate) fn file_name(name: &ObjectName, deleted_at: i64, until: i64) -> String {
        format!("{name}.{deleted_at}.{until}.{:016x}", rand::random::<u64>())
    }

    /// Parses an entry's file name; `None` for anything else (a claim, a temporary key).
    pub(crate) fn parse(kind: Kind, file: &str, size: u64) -> Option<TrashEntry> {
        let mut parts = file.split('.');
        let name = ObjectName::parse(parts.next()?).ok()?;
        let deleted_at = parts.next()?.parse().ok()?;
        let until = parts.next()?.parse().ok()?;
        let nonce = parts.next()?;
        if nonce.len() != 16 || !nonce.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        if parts.next().is_some() {
            return None;
        }
        Some(TrashEntry {
            kind,
            name,
            deleted_at,
            until,
            size,
            file: file.to_owned(),
        })
    }

    pub(crate) fn object(&self) -> Object {
        Object::Item(self.kind, self.name.clone())
    }
}

/// What an undelete did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Undeleted {
    /// Objects put back under their names.
    pub restored: u64,
    pub restored_bytes: u64,
    /// Trash entries dropped because their object was already back (re-uploaded by the
    /// client, or restored from an earlier entry of the same name): names are content
    /// hashes, so the live object has the same bytes. These bytes leave the repository.
    pub dropped: u64,
    pub dropped_bytes: u64,
}

/// What the purge of one repository's trash removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrashPurged {
    pub tenant: String,
    pub account: String,
    pub objects: u64,
    pub bytes: u64,
}

/// The outcome of putting one trash entry back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Restore {
    /// Put back; its bytes.
    Restored(u64),
    /// The live object exists; the entry was removed; its bytes.
    Dropped(u64),
}

/// The kinds whose objects a protected delete keeps. Locks are not kept: they hold no
/// backup data, and restic deletes its own on every run.
pub fn is_protected(obj: &Object) -> bool {
    !matches!(obj, Object::Item(Kind::Locks, _) | Object::Config)
}

impl Repo {
    /// Moves an object into the trash instead of deleting it, to be kept until `until`
    /// (Unix seconds); returns its size. `NotFound` when it is not there (or a racing
    /// delete took it). Locks and `config` are refused with `BadName`: the caller deletes
    /// those with [`Repo::delete`].
    pub async fn delete_protected(&self, obj: &Object, now: i64, until: i64) -> Result<u64> {
        let Object::Item(kind, name) = obj else {
            return Err(VaultError::BadName);
        };
        if !is_protected(obj) {
            return Err(VaultError::BadName);
        }
        let file = TrashEntry::file_name(name, now, until);
        match &self.backend {
            RepoBackend::Local(l) => l.move_to_trash(obj, *kind, &file).await,
            RepoBackend::S3(s) => s.move_to_trash(obj, *kind, &file).await,
        }
    }

    /// Every entry in the repository's trash (none for a missing repository), oldest
    /// deletion first.
    pub async fn trash(&self) -> Result<Vec<TrashEntry>> {
        let mut out = match &self.backend {
            RepoBackend::Local(l) => l.list_trash().await?,
            RepoBackend::S3(s) => s.list_trash().await?,
        };
        out.sort_by(|a, b| (a.deleted_at, &a.file).cmp(&(b.deleted_at, &b.file)));
        Ok(out)
    }

    /// Puts back every object deleted at or after `since` (Unix seconds), so the client
    /// sees the repository as it was. An entry whose object exists again is dropped (the
    /// same content, by its name).
    pub async fn undelete(&self, since: i64) -> Result<Undeleted> {
        let mut done = Undeleted::default();
        for entry in self.trash().await? {
            if entry.deleted_at < since {
                continue;
            }
            let outcome = match &self.backend {
                RepoBackend::Local(l) => l.restore(&entry).await,
                RepoBackend::S3(s) => s.restore(&entry).await,
            };
            match outcome {
                Ok(Restore::Restored(bytes)) => {
                    done.restored += 1;
                    done.restored_bytes += bytes;
                }
                Ok(Restore::Dropped(bytes)) => {
                    done.dropped += 1;
                    done.dropped_bytes += bytes;
                }
                // Restored or purged by someone else meanwhile.
                Err(VaultError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(done)
    }

    /// Removes the entries whose time is up (`until <= now`); returns how many and
    /// their bytes.
    pub async fn purge_trash(&self, now: i64) -> Result<(u64, u64)> {
        let (mut objects, mut bytes) = (0, 0);
        for entry in self.trash().await? {
            if entry.until > now {
                continue;
            }
            let removed = match &self.backend {
                RepoBackend::Local(l) => l.remove_trash(&entry).await,
                RepoBackend::S3(s) => s.remove_trash(&entry).await,
            };
            match removed {
                Ok(size) => {
                    objects += 1;
                    bytes += size;
                }
                Err(VaultError::NotFound) => {}
                Err(e) => return Err(e),
            }
        }
        Ok((objects, bytes))
    }
}

impl Vault {
    /// Runs [`Repo::purge_trash`] on every repository that has a trash. A repository
    /// that fails is skipped (and retried by the next run); its error is returned beside
    /// what the others removed.
    pub async fn purge_trash(&self, now: i64) -> Result<(Vec<TrashPurged>, Vec<String>)> {
        let repos = match &self.backend {
            crate::Backend::Local(l) => l.repos_with_trash().await?,
            crate::Backend::S3(s) => s.repos_with_trash().await?,
        };
        let (mut purged, mut failed) = (Vec::new(), Vec::new());
        for (tenant, account) in repos {
            if !crate::is_path_safe(&tenant) || !crate::is_path_safe(&account) {
                continue;
            }
            match self.repo(&tenant, &account).purge_trash(now).await {
                Ok((0, _)) => {}
                Ok((objects, bytes)) => purged.push(TrashPurged {
                    tenant,
                    account,
                    objects,
                    bytes,
                }),
                Err(e) => failed.push(format!("{tenant}/{account}: {e}")),
            }
        }
        Ok((purged, failed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entry_names_round_trip_and_nothing_else_parses() {
        let name = ObjectName::parse(&"ab".repeat(32)).unwrap();
        let file = TrashEntry::file_name(&name, 1_700_000_000, 1_702_592_000);
        let e = TrashEntry::parse(Kind::Index, &file, 9).unwrap();
        assert_eq!(
            (e.name, e.deleted_at, e.until, e.size),
            (name.clone(), 1_700_000_000, 1_702_592_000, 9)
        );
        for bad in [
            format!("{name}"),
            format!("{name}.1.2"),
            format!("{name}.1.2.0123456789abcdef.deleting"),
            format!("{name}.x.2.0123456789abcdef"),
            format!("{name}.1.2.0123"),
            "../../config.1.2.0123456789abcdef".to_owned(),
        ] {
            assert!(TrashEntry::parse(Kind::Data, &bad, 1).is_none(), "{bad}");
        }
        assert!(!is_protected(&Object::Item(Kind::Locks, name.clone())));
        assert!(is_protected(&Object::Item(Kind::Snapshots, name)));
    }
}
