//! Repository health: re-hashes a repository's stored objects and names those whose
//! content no longer matches their name (bit rot, a file truncated by a disk fault, an
//! object overwritten in the bucket). restic names every object but `config` by the
//! SHA-256 of its content (<https://restic.readthedocs.io/en/stable/100_references.html#repository-format>),
//! so no other record is needed to check one. Reads are paced by a [`RateLimit`] so that
//! a check of a large repository does not starve the backups it protects.

use crate::{Kind, Object, ObjectName, Repo, Result, VaultError};
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

/// The kinds checked: everything restic names by its hash and keeps. Locks are left
/// out: they come and go while clients run, and nothing is lost with one.
pub const CHECKED: [Kind; 4] = [Kind::Keys, Kind::Snapshots, Kind::Index, Kind::Data];

/// A pace for reads: at most `bytes_per_sec` on average since the check began (the first
/// second's worth may come at once). Counts how often it made the reader wait.
#[derive(Debug)]
pub struct RateLimit {
    bytes_per_sec: Option<u64>,
    started: Instant,
    taken: u64,
    waits: u64,
}

impl RateLimit {
    /// `None`: no limit.
    pub fn new(bytes_per_sec: Option<u64>) -> RateLimit {
        RateLimit {
            bytes_per_sec: bytes_per_sec.filter(|&b| b > 0),
            started: Instant::now(),
            taken: 0,
            waits: 0,
        }
    }

    /// Accounts for `n` bytes about to be read, sleeping first if they would run ahead
    /// of the pace.
    pub async fn take(&mut self, n: u64) {
        let Some(rate) = self.bytes_per_sec else {
            return;
        };
        self.taken = self.taken.saturating_add(n);
        // The first second's worth is free (a burst, not a debt); beyond it, the bytes
        // taken so far may not come sooner than the rate allows.
        let debt = self.taken.saturating_sub(rate);
        let due = self.started + Duration::from_secs_f64(debt as f64 / rate as f64);
        let now = Instant::now();
        if due > now {
            self.waits += 1;
            tokio::time::sleep(due - now).await;
        }
    }

    /// How many times a read was held back.
    pub fn waits(&self) -> u64 {
        self.waits
    }
}

/// What a check found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Verified {
    /// Objects read and hashed.
    pub objects: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Objects whose content does not hash to their name, as `kind/name`.
    pub bad: Vec<String>,
    /// Objects listed but whose content the storage failed to return (a read error on a
    /// bad sector, a failing bucket), as `kind/name`, with the error.
    pub unreadable: Vec<(String, String)>,
}

/// Re-hashes every object of [`CHECKED`] kinds in `repo`. An object deleted while the
/// check runs (a concurrent `restic prune`) is skipped; one the storage fails to return is
/// counted in [`Verified::unreadable`] and the check goes on with the next. A failure to
/// list ends the check with that error (`NotFound` when the repository does not exist).
pub async fn verify(repo: &Repo, limit: &mut RateLimit) -> Result<Verified> {
    let mut out = Verified::default();
    for kind in CHECKED {
        for (name, _) in repo.list(kind).await? {
            let Ok(parsed) = ObjectName::parse(&name) else {
                // Not a name restic gives; nothing to compare with.
                out.bad.push(format!("{}/{name}", kind.as_str()));
                continue;
            };
            match hash_object(repo, &Object::Item(kind, parsed), limit).await {
                Ok((digest, len)) => {
                    out.objects += 1;
                    out.bytes += len;
                    if digest != name {
                        out.bad.push(format!("{}/{name}", kind.as_str()));
                    }
                }
                Err(VaultError::NotFound) => {}
                Err(e) => out
                    .unreadable
                    .push((format!("{}/{name}", kind.as_str()), e.to_string())),
            }
        }
    }
    Ok(out)
}

/// The hex SHA-256 of an object's content and its length, read at the limiter's pace.
async fn hash_object(repo: &Repo, obj: &Object, limit: &mut RateLimit) -> Result<(String, u64)> {
    let r = repo.open(obj, None).await?;
    let mut body = r.body;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    while let Some(chunk) = body.try_next().await? {
        limit.take(chunk.len() as u64).await;
        hasher.update(&chunk);
        len += chunk.len() as u64;
    }
    let digest = hasher.finalize();
    let mut hex = String::with_capacity(64);
    for b in digest {
        hex.push_str(&format!("{b:02x}"));
    }
    Ok((hex, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Vault;
    use std::sync::Arc;

    fn name_of(data: &[u8]) -> ObjectName {
        let d = Sha256::digest(data);
        ObjectName::parse(&d.iter().map(|b| format!("{b:02x}")).collect::<String>()).unwrap()
    }

    async fn put(repo: &Repo, kind: Kind, data: &[u8]) -> ObjectName {
        let name = name_of(data);
        let mut up = repo
            .begin_upload(Object::Item(kind, name.clone()), data.len() as u64)
            .await
            .unwrap();
        up.write(data.to_vec()).await.unwrap();
        up.finish(Some(data.len() as u64)).await.unwrap();
        name
    }

    async fn fill(repo: &Repo) -> ObjectName {
        repo.create().await.unwrap();
        put(repo, Kind::Keys, b"key").await;
        put(repo, Kind::Snapshots, b"snapshot").await;
        put(repo, Kind::Index, b"index").await;
        put(repo, Kind::Data, &vec![7u8; 200 * 1024]).await
    }

    #[tokio::test]
    async fn a_flipped_byte_on_disk_is_found() {
        let tmp = tempfile::tempdir().unwrap();
        let vault = Vault::new(tmp.path());
        let repo = vault.repo("t", "a");
        let data = fill(&repo).await;
        let clean = verify(&repo, &mut RateLimit::new(None)).await.unwrap();
        assert_eq!(clean.objects, 4);
        assert_eq!(clean.bytes, 3 + 8 + 5 + 200 * 1024);
        assert!(clean.bad.is_empty(), "{clean:?}");

        let dir = repo.local_dir().unwrap().to_owned();
        let path = std::fs::read_dir(dir.join("data"))
            .unwrap()
            .flat_map(|d| {
                let d = d.unwrap().path();
                if d.is_dir() {
                    std::fs::read_dir(d)
                        .unwrap()
                        .map(|e| e.unwrap().path())
                        .collect()
                } else {
                    vec![d]
                }
            })
            .find(|p| p.file_name().unwrap().to_str() == Some(data.as_str()))
            .expect("the data object's file");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[1000] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let found = verify(&repo, &mut RateLimit::new(None)).await.unwrap();
        assert_eq!(found.bad, vec![format!("data/{data}")]);
        assert_eq!(found.objects, 4);

        // A truncated file too.
        std::fs::write(&path, &bytes[..10]).unwrap();
        let found = verify(&repo, &mut RateLimit::new(None)).await.unwrap();
        assert_eq!(found.bad, vec![format!("data/{data}")]);
    }

    #[tokio::test]
    async fn an_overwritten_object_in_an_object_store_is_found() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let vault = Vault::object_store(store.clone(), "pre", "memory://");
        let repo = vault.repo("t", "a");
        let data = fill(&repo).await;
        assert!(verify(&repo, &mut RateLimit::new(None))
            .await
            .unwrap()
            .bad
            .is_empty());
        // Replace the object's content behind the vault's back.
        let keys: Vec<_> = object_store::ObjectStore::list(&*store, None)
            .try_collect::<Vec<_>>()
            .await
            .unwrap();
        let key = keys
            .iter()
            .find(|m| m.location.as_ref().ends_with(data.as_str()))
            .expect("the data object")
            .location
            .clone();
        object_store::ObjectStore::put(&*store, &key, b"rotten".to_vec().into())
            .await
            .unwrap();
        let found = verify(&repo, &mut RateLimit::new(None)).await.unwrap();
        assert_eq!(found.bad, vec![format!("data/{data}")]);
    }

    /// The limiter holds reads back once they run ahead of the pace (its waits are
    /// counted; no durations are asserted), and never without a limit.
    #[tokio::test]
    async fn reads_are_paced_by_the_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = Vault::new(tmp.path()).repo("t", "a");
        fill(&repo).await;
        let mut free = RateLimit::new(None);
        verify(&repo, &mut free).await.unwrap();
        assert_eq!(free.waits(), 0);
        // 200 KiB at 128 KiB/s: the first second's worth is free, the rest waits.
        let mut paced = RateLimit::new(Some(128 * 1024));
        let v = verify(&repo, &mut paced).await.unwrap();
        assert!(v.bad.is_empty());
        assert!(paced.waits() > 0, "{paced:?}");
        // A limit above what is read never waits.
        let mut high = RateLimit::new(Some(1 << 30));
        verify(&repo, &mut high).await.unwrap();
        assert_eq!(high.waits(), 0, "{high:?}");
    }
}
