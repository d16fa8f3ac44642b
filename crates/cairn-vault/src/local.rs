//! The local filesystem backend, laid out the way restic's rest-server lays it out
//! (`<root>/<tenant>/<account>/{config,data/xx/…,keys,locks,snapshots,index}`).
//!
//! An upload becomes visible only after its bytes and its directory entry are durable
//! (temporary file, fsync, hard link, fsync of the directory); the hard link fails when
//! the target exists, so nothing is ever replaced.

use crate::{to_hex, ByteRange, ByteStream, Kind, Object, ObjectName, Reader, Result, VaultError};
use bytes::Bytes;
use futures_util::StreamExt;
use std::collections::HashSet;
use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn not_found_or(e: std::io::Error) -> VaultError {
    if e.kind() == ErrorKind::NotFound {
        VaultError::NotFound
    } else {
        VaultError::Io(e)
    }
}

fn join_err(e: tokio::task::JoinError) -> VaultError {
    VaultError::Io(std::io::Error::other(e))
}

/// Reads are streamed in chunks of this size, so a GET whose client reads slowly (or not
/// at all) holds at most about one chunk however large the object; a read of up to one
/// chunk is served from one buffer filled in the same blocking call that opens the file.
const READ_CHUNK: usize = 256 << 10;

/// An upload's write buffer: large enough that a pack is written in few blocking calls,
/// small enough that hundreds of concurrent uploads stay within a few tens of MiB.
const WRITE_BUFFER: usize = 256 << 10;

#[derive(Debug, Clone)]
pub(crate) struct LocalVault {
    pub(crate) root: PathBuf,
    /// The temporary files of this process's uploads in flight, shared by every clone:
    /// the sweep of stale temporary files never removes one of them, however old.
    pub(crate) live: Live,
}

/// Temporary files of uploads in flight (see [`LocalVault::live`]).
pub(crate) type Live = Arc<Mutex<HashSet<PathBuf>>>;

fn lock(live: &Live) -> std::sync::MutexGuard<'_, HashSet<PathBuf>> {
    // The set is only inserted into and removed from: a panic elsewhere cannot leave it
    // half changed, so a poisoned lock is still good.
    live.lock().unwrap_or_else(PoisonError::into_inner)
}

impl LocalVault {
    pub(crate) fn new(root: PathBuf) -> Self {
        LocalVault {
            root,
            live: Live::default(),
        }
    }

    pub(crate) fn repo(&self, tenant: &str, account: &str) -> LocalRepo {
        LocalRepo {
            dir: self.root.join(tenant).join(account),
            live: self.live.clone(),
        }
    }

    /// Removes the temporary files (`<repo>/tmp/upload-*`) that no upload of this process
    /// is writing and that have not been modified for longer than `max_age`: those left
    /// by a crash or a kill in the middle of an upload, which nothing else removes.
    pub(crate) async fn sweep_stale_uploads(&self, max_age: Duration) -> Result<crate::Swept> {
        let root = self.root.clone();
        let live = self.live.clone();
        tokio::task::spawn_blocking(move || -> Result<crate::Swept> {
            let mut swept = crate::Swept::default();
            for tenant in read_dirs(&root)? {
                for account in read_dirs(&tenant)? {
                    sweep_tmp_dir(&account.join("tmp"), max_age, &live, &mut swept);
                }
            }
            Ok(swept)
        })
        .await
        .map_err(join_err)?
    }

    pub(crate) async fn repo_size(&self, tenant: &str, account: &str) -> Result<u64> {
        let dir = self.repo(tenant, account).dir;
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let total = dir_size(&dir)?;
            let tmp = dir_size(&dir.join("tmp"))?;
            Ok(total - tmp.min(total))
        })
        .await
        .map_err(join_err)?
    }

    pub(crate) async fn remove_repo(&self, tenant: &str, account: &str) -> Result<u64> {
        let dir = self.repo(tenant, account).dir;
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let bytes = dir_size(&dir)?;
            match std::fs::remove_dir_all(&dir) {
                Ok(()) => {}
                Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(e.into()),
            }
            if let Some(parent) = dir.parent() {
                sync_dir_blocking(parent)?;
            }
            Ok(bytes)
        })
        .await
        .map_err(join_err)?
    }
}

/// The subdirectories of `dir`; none when it is missing.
fn read_dirs(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            out.push(entry.path());
        }
    }
    Ok(out)
}

/// One repository's part of [`LocalVault::sweep_stale_uploads`]. A file that cannot be
/// read or removed (or a repository removed meanwhile) is left for the next sweep.
fn sweep_tmp_dir(dir: &Path, max_age: Duration, live: &Live, swept: &mut crate::Swept) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let now = SystemTime::now();
    for entry in entries.flatten() {
        if !entry.file_name().to_string_lossy().starts_with("upload-") {
            continue;
        }
        let Ok(meta) = entry.metadata() else {
            continue;
        };
        // A clock set back makes a file look new: it is then kept, never removed early.
        let age = now.duration_since(meta.modified().unwrap_or(now));
        if !meta.is_file() || age.unwrap_or_default() <= max_age {
            continue;
        }
        let path = entry.path();
        // Checked and removed under the lock, so an upload cannot start on this name
        // in between (names are random 128-bit values, but the check costs nothing).
        let live = lock(live);
        if live.contains(&path) {
            continue;
        }
        if std::fs::remove_file(&path).is_ok() {
            swept.files += 1;
            swept.bytes += meta.len();
        }
    }
}

fn dir_size(dir: &Path) -> std::io::Result<u64> {
    let mut total = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if meta.is_dir() {
            total += dir_size(&entry.path())?;
        } else {
            total += meta.len();
        }
    }
    Ok(total)
}

fn sync_dir_blocking(dir: &Path) -> std::io::Result<()> {
    std::fs::File::open(dir)?.sync_all()
}

async fn sync_dir(dir: PathBuf) -> Result<()> {
    tokio::task::spawn_blocking(move || sync_dir_blocking(&dir))
        .await
        .map_err(join_err)??;
    Ok(())
}

#[derive(Debug, Clone)]
pub(crate) struct LocalRepo {
    pub(crate) dir: PathBuf,
    live: Live,
}

impl LocalRepo {
    fn path(&self, obj: &Object) -> PathBuf {
        match obj {
            Object::Config => self.dir.join("config"),
            // rest-server's layout: data files sharded by their first two hex digits.
            Object::Item(Kind::Data, name) => self
                .dir
                .join("data")
                .join(&name.as_str()[..2])
                .join(name.as_str()),
            Object::Item(kind, name) => self.dir.join(kind.as_str()).join(name.as_str()),
        }
    }

    pub(crate) async fn exists(&self) -> Result<bool> {
        Ok(tokio::fs::metadata(self.dir.join("keys"))
            .await
            .is_ok_and(|m| m.is_dir()))
    }

    pub(crate) async fn create(&self) -> Result<()> {
        for kind in Kind::ALL {
            tokio::fs::create_dir_all(self.dir.join(kind.as_str())).await?;
        }
        let data = self.dir.join("data");
        for i in 0..=255u8 {
            tokio::fs::create_dir_all(data.join(to_hex(&[i]))).await?;
        }
        tokio::fs::create_dir_all(self.dir.join("tmp")).await?;
        sync_dir(data).await?;
        sync_dir(self.dir.clone()).await?;
        if let Some(parent) = self.dir.parent() {
            sync_dir(parent.to_owned()).await?;
        }
        Ok(())
    }

    pub(crate) async fn size(&self, obj: &Object) -> Result<u64> {
        let meta = tokio::fs::metadata(self.path(obj))
            .await
            .map_err(not_found_or)?;
        if !meta.is_file() {
            return Err(VaultError::NotFound);
        }
        Ok(meta.len())
    }

    pub(crate) async fn open(&self, obj: &Object, range: Option<ByteRange>) -> Result<Reader> {
        let path = self.path(obj);
        // One blocking-pool hop for open, size and (for most requests) the bytes:
        // `tokio::fs` would make a hop per call and per chunk, and restic's restore is
        // thousands of ranged GETs of a few hundred KiB to a few MiB.
        tokio::task::spawn_blocking(move || -> Result<Reader> {
            use std::io::{Read, Seek};
            let mut f = std::fs::File::open(&path).map_err(not_found_or)?;
            let total = f.metadata()?.len();
            let (range, first, len) = match range {
                None => (None, 0, total),
                Some(range) => {
                    let (first, last) = range.resolve(total)?;
                    (Some((first, last)), first, last - first + 1)
                }
            };
            if first > 0 {
                f.seek(SeekFrom::Start(first))?;
            }
            let body: ByteStream = if len <= READ_CHUNK as u64 {
                let mut buf = vec![0; len as usize];
                f.read_exact(&mut buf)?;
                futures_util::stream::once(async move { Ok(Bytes::from(buf)) }).boxed()
            } else {
                // The first chunk comes with the open (restic's ranged reads are mostly
                // a few hundred KiB), the rest streams one blocking read per chunk.
                let mut first = vec![0; READ_CHUNK];
                f.read_exact(&mut first)?;
                let rest = tokio::fs::File::from_std(f).take(len - READ_CHUNK as u64);
                futures_util::stream::once(async move { Ok(Bytes::from(first)) })
                    .chain(tokio_util::io::ReaderStream::with_capacity(
                        rest, READ_CHUNK,
                    ))
                    .boxed()
            };
            Ok(Reader {
                body,
                range,
                len,
                total,
            })
        })
        .await
        .map_err(join_err)?
    }

    pub(crate) async fn begin_upload(&self, obj: Object) -> Result<LocalUpload> {
        if !self.exists().await? {
            return Err(VaultError::NotFound);
        }
        let target = self.path(&obj);
        if tokio::fs::try_exists(&target).await? {
            return Err(VaultError::Exists);
        }
        let tmp_dir = self.dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let tmp = tmp_dir.join(format!("upload-{:032x}", rand::random::<u128>()));
        // Registered before the file exists, so the sweep never sees it unregistered.
        lock(&self.live).insert(tmp.clone());
        let mut upload = LocalUpload {
            target,
            tmp,
            live: self.live.clone(),
            file: None,
        };
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&upload.tmp)
            .await?;
        upload.file = Some(tokio::io::BufWriter::with_capacity(WRITE_BUFFER, file));
        Ok(upload)
    }

    pub(crate) async fn delete(&self, obj: &Object) -> Result<u64> {
        let path = self.path(obj);
        let size = self.size(obj).await?;
        tokio::fs::remove_file(&path).await.map_err(not_found_or)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent.to_owned()).await?;
        }
        Ok(size)
    }

    pub(crate) async fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        if !self.exists().await? {
            return Err(VaultError::NotFound);
        }
        let dir = self.dir.join(kind.as_str());
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, u64)>> {
            let mut out = Vec::new();
            if kind == Kind::Data {
                for shard in std::fs::read_dir(&dir)? {
                    let shard = shard?;
                    if shard.file_type()?.is_dir() {
                        list_files(&shard.path(), &mut out)?;
                    }
                }
            } else {
                list_files(&dir, &mut out)?;
            }
            Ok(out)
        })
        .await
        .map_err(join_err)?
    }
}

fn list_files(dir: &Path, out: &mut Vec<(String, u64)>) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    for entry in entries {
        let entry = entry?;
        let meta = entry.metadata()?;
        if !meta.is_file() {
            continue;
        }
        if let Some(name) = entry.file_name().to_str() {
            if ObjectName::parse(name).is_ok() {
                out.push((name.to_owned(), meta.len()));
            }
        }
    }
    Ok(())
}

/// An upload into a temporary file. Dropping it removes the temporary file, so a half
/// upload never becomes visible.
pub(crate) struct LocalUpload {
    target: PathBuf,
    tmp: PathBuf,
    live: Live,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
}

impl LocalUpload {
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<()> {
        match self.file.as_mut() {
            Some(f) => f.write_all(&chunk).await?,
            None => return Err(VaultError::Io(std::io::Error::other("upload finished"))),
        }
        Ok(())
    }

    /// Makes the (already verified) bytes durable and publishes the object without ever
    /// replacing an existing one.
    pub(crate) async fn publish(&mut self) -> Result<()> {
        let Some(mut f) = self.file.take() else {
            return Err(VaultError::Io(std::io::Error::other("upload finished")));
        };
        f.flush().await?;
        let f = f.into_inner();
        f.sync_all().await?;
        drop(f);
        if let Some(parent) = self.target.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        // A hard link fails when the target exists, unlike rename: two racing uploads of
        // the same object cannot replace each other.
        match tokio::fs::hard_link(&self.tmp, &self.target).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => return Err(VaultError::Exists),
            Err(e) => return Err(e.into()),
        }
        if let Some(parent) = self.target.parent() {
            sync_dir(parent.to_owned()).await?;
        }
        Ok(())
    }
}

impl Drop for LocalUpload {
    fn drop(&mut self) {
        // Runs after `publish` too: the published object is the link, the temporary name
        // goes away either way.
        let _ = std::fs::remove_file(&self.tmp);
        lock(&self.live).remove(&self.tmp);
    }
}

// Deletion protection (see `crate::trash`): the trash is `<repo>/trash/<kind>/`, and an
// object moves there by `rename`, which is atomic and never leaves it in both places.
impl LocalRepo {
    fn trash_path(&self, kind: Kind, file: &str) -> PathBuf {
        self.dir
            .join(crate::trash::TRASH_DIR)
            .join(kind.as_str())
            .join(file)
    }

    pub(crate) async fn move_to_trash(&self, obj: &Object, kind: Kind, file: &str) -> Result<u64> {
        let path = self.path(obj);
        let size = self.size(obj).await?;
        let target = self.trash_path(kind, file);
        let Some(trash_dir) = target.parent().map(Path::to_owned) else {
            return Err(VaultError::BadName);
        };
        tokio::fs::create_dir_all(&trash_dir).await?;
        // Of racing deletes, the first rename moves the object; the others find nothing.
        tokio::fs::rename(&path, &target)
            .await
            .map_err(not_found_or)?;
        sync_dir(trash_dir).await?;
        if let Some(parent) = path.parent() {
            sync_dir(parent.to_owned()).await?;
        }
        Ok(size)
    }

    pub(crate) async fn list_trash(&self) -> Result<Vec<crate::TrashEntry>> {
        let root = self.dir.join(crate::trash::TRASH_DIR);
        tokio::task::spawn_blocking(move || -> Result<Vec<crate::TrashEntry>> {
            let mut out = Vec::new();
            for kind in Kind::ALL {
                let entries = match std::fs::read_dir(root.join(kind.as_str())) {
                    Ok(e) => e,
                    Err(e) if e.kind() == ErrorKind::NotFound => continue,
                    Err(e) => return Err(e.into()),
                };
                for entry in entries {
                    let entry = entry?;
                    let meta = entry.metadata()?;
                    let Some(file) = entry.file_name().to_str().map(str::to_owned) else {
                        continue;
                    };
                    if meta.is_file() {
                        out.extend(crate::TrashEntry::parse(kind, &file, meta.len()));
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(join_err)?
    }

    /// Puts an entry back by a hard link (which, like an upload's publish, never replaces
    /// an object that exists again), then removes the entry.
    pub(crate) async fn restore(&self, entry: &crate::TrashEntry) -> Result<crate::trash::Restore> {
        let from = self.trash_path(entry.kind, &entry.file);
        let to = self.path(&entry.object());
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent).await?;
        }
        let outcome = match tokio::fs::hard_link(&from, &to).await {
            Ok(()) => crate::trash::Restore::Restored(entry.size),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                crate::trash::Restore::Dropped(entry.size)
            }
            Err(e) => return Err(not_found_or(e)),
        };
        if let Some(parent) = to.parent() {
            sync_dir(parent.to_owned()).await?;
        }
        tokio::fs::remove_file(&from).await.map_err(not_found_or)?;
        if let Some(parent) = from.parent() {
            sync_dir(parent.to_owned()).await?;
        }
        Ok(outcome)
    }

    pub(crate) async fn remove_trash(&self, entry: &crate::TrashEntry) -> Result<u64> {
        let path = self.trash_path(entry.kind, &entry.file);
        tokio::fs::remove_file(&path).await.map_err(not_found_or)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent.to_owned()).await?;
        }
        Ok(entry.size)
    }
}

impl LocalVault {
    /// `(tenant, account)` of every repository with a trash directory.
    pub(crate) async fn repos_with_trash(&self) -> Result<Vec<(String, String)>> {
        let root = self.root.clone();
        tokio::task::spawn_blocking(move || -> Result<Vec<(String, String)>> {
            let mut out = Vec::new();
            for tenant in read_dirs(&root)? {
                for account in read_dirs(&tenant)? {
                    if !account.join(crate::trash::TRASH_DIR).is_dir() {
                        continue;
                    }
                    let name = |p: &Path| p.file_name()?.to_str().map(str::to_owned);
                    if let (Some(t), Some(a)) = (name(&tenant), name(&account)) {
                        out.push((t, a));
                    }
                }
            }
            Ok(out)
        })
        .await
        .map_err(join_err)?
    }
}
