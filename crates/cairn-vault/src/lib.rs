//! The backup vault's storage: one restic repository per backup account, laid out on the
//! local filesystem the way restic's rest-server lays it out
//! (`<root>/<tenant>/<account>/{config,data/xx/…,keys,locks,snapshots,index}`).
//!
//! Integrity rules live here, below any protocol: an object's name is the SHA-256 of its
//! content (verified while it is written), nothing is ever overwritten, and an upload
//! becomes visible only after its bytes and its directory entry are durable (temporary
//! file, fsync, link, fsync of the directory).

use sha2::{Digest, Sha256};
use std::fmt;
use std::io::{ErrorKind, SeekFrom};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncReadExt, AsyncSeekExt, AsyncWriteExt};

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error("not found")]
    NotFound,
    /// The object (or `config`) exists; restic objects are immutable.
    #[error("object exists")]
    Exists,
    #[error("content does not match the object name")]
    HashMismatch,
    #[error("invalid object name")]
    BadName,
    #[error("range not satisfiable")]
    BadRange,
    #[error("body length differs from Content-Length")]
    Truncated,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
}

fn not_found_or(e: std::io::Error) -> VaultError {
    if e.kind() == ErrorKind::NotFound {
        VaultError::NotFound
    } else {
        VaultError::Io(e)
    }
}

pub type Result<T, E = VaultError> = std::result::Result<T, E>;

/// The object types of restic's REST protocol (besides `config`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Data,
    Keys,
    Locks,
    Snapshots,
    Index,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Data,
        Kind::Keys,
        Kind::Locks,
        Kind::Snapshots,
        Kind::Index,
    ];

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Data => "data",
            Kind::Keys => "keys",
            Kind::Locks => "locks",
            Kind::Snapshots => "snapshots",
            Kind::Index => "index",
        }
    }
}

/// A validated object name: 64 lowercase hex digits (restic names every object but
/// `config` by the SHA-256 of its content), so a name can never escape its directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectName(String);

impl ObjectName {
    pub fn parse(s: &str) -> Result<Self> {
        if s.len() == 64 && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
            Ok(ObjectName(s.to_owned()))
        } else {
            Err(VaultError::BadName)
        }
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a request addresses inside a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Object {
    Config,
    Item(Kind, ObjectName),
}

/// A byte range as HTTP sends it (RFC 9110 §14.1.2), single range only: restic never
/// asks for more than one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteRange {
    /// `bytes=a-b` (inclusive) or `bytes=a-`.
    From { start: u64, end: Option<u64> },
    /// `bytes=-n`: the last n bytes.
    Suffix(u64),
}

impl ByteRange {
    /// Parses a `Range` header value; `None` when it is not a single byte range (the
    /// header is then ignored, as RFC 9110 allows).
    pub fn parse(value: &str) -> Option<ByteRange> {
        let spec = value.trim().strip_prefix("bytes=")?.trim();
        if spec.contains(',') {
            return None;
        }
        let (a, b) = spec.split_once('-')?;
        let (a, b) = (a.trim(), b.trim());
        if a.is_empty() {
            return b.parse().ok().map(ByteRange::Suffix);
        }
        let start = a.parse().ok()?;
        let end = if b.is_empty() {
            None
        } else {
            let end: u64 = b.parse().ok()?;
            if end < start {
                return None;
            }
            Some(end)
        };
        Some(ByteRange::From { start, end })
    }

    /// The inclusive `(first, last)` bytes of an object of `len` bytes, or `BadRange`.
    pub fn resolve(self, len: u64) -> Result<(u64, u64)> {
        match self {
            ByteRange::From { start, end } => {
                if start >= len {
                    return Err(VaultError::BadRange);
                }
                Ok((start, end.map_or(len - 1, |e| e.min(len - 1))))
            }
            ByteRange::Suffix(n) => {
                if n == 0 || len == 0 {
                    return Err(VaultError::BadRange);
                }
                Ok((len.saturating_sub(n), len - 1))
            }
        }
    }
}

/// The root of all repositories (`<data-dir>/vault`).
#[derive(Debug, Clone)]
pub struct Vault {
    root: PathBuf,
}

impl Vault {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Vault { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The repository of one account. Both parts must be ids validated by the caller
    /// (UUIDs): they become path components.
    pub fn repo(&self, tenant: &str, account: &str) -> Repo {
        debug_assert!(is_path_safe(tenant) && is_path_safe(account));
        Repo {
            dir: self.root.join(tenant).join(account),
        }
    }

    /// The bytes an account's repository's objects occupy (temporary upload files
    /// excluded); 0 for a missing repository.
    pub async fn repo_size(&self, tenant: &str, account: &str) -> Result<u64> {
        let dir = self.repo(tenant, account).dir;
        tokio::task::spawn_blocking(move || -> Result<u64> {
            let total = dir_size(&dir)?;
            let tmp = dir_size(&dir.join("tmp"))?;
            Ok(total - tmp.min(total))
        })
        .await
        .map_err(|e| VaultError::Io(std::io::Error::other(e)))?
    }

    /// Deletes an account's repository and everything in it (the retention purge).
    /// Returns the bytes the objects occupied; a missing repository is 0.
    pub async fn remove_repo(&self, tenant: &str, account: &str) -> Result<u64> {
        let repo = self.repo(tenant, account);
        let dir = repo.dir.clone();
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
        .map_err(|e| VaultError::Io(std::io::Error::other(e)))?
    }
}

fn is_path_safe(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
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
        .map_err(|e| VaultError::Io(std::io::Error::other(e)))??;
    Ok(())
}

fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 0xf)] as char);
    }
    s
}

/// One account's repository.
#[derive(Debug, Clone)]
pub struct Repo {
    dir: PathBuf,
}

/// An object opened for a GET, positioned at the range's start.
#[derive(Debug)]
pub struct Reader {
    /// Yields exactly `len` bytes (unless the file shrank, which objects never do).
    pub file: tokio::io::Take<tokio::fs::File>,
    /// Inclusive first and last byte, when a range was asked for.
    pub range: Option<(u64, u64)>,
    pub len: u64,
    /// The whole object's size.
    pub total: u64,
}

/// Part of an object read into memory.
#[derive(Debug)]
pub struct Slice {
    pub bytes: Vec<u8>,
    /// Inclusive first and last byte, when a range was asked for.
    pub range: Option<(u64, u64)>,
    /// The whole object's size.
    pub total: u64,
}

impl Repo {
    pub fn dir(&self) -> &Path {
        &self.dir
    }

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

    /// Whether the repository has been created (`POST /?create=true`).
    pub async fn exists(&self) -> bool {
        tokio::fs::metadata(self.dir.join("keys"))
            .await
            .is_ok_and(|m| m.is_dir())
    }

    /// Creates the repository's directories (idempotent, like rest-server).
    pub async fn create(&self) -> Result<()> {
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

    /// The size of an object.
    pub async fn size(&self, obj: &Object) -> Result<u64> {
        let meta = tokio::fs::metadata(self.path(obj))
            .await
            .map_err(not_found_or)?;
        if !meta.is_file() {
            return Err(VaultError::NotFound);
        }
        Ok(meta.len())
    }

    /// Opens an object, or the part of it a `Range` asks for, for streaming: the object
    /// is never held in memory whole (packs can be 128 MiB).
    pub async fn open(&self, obj: &Object, range: Option<ByteRange>) -> Result<Reader> {
        let mut f = tokio::fs::File::open(self.path(obj))
            .await
            .map_err(not_found_or)?;
        let total = f.metadata().await?.len();
        let Some(range) = range else {
            return Ok(Reader {
                file: f.take(total),
                range: None,
                len: total,
                total,
            });
        };
        let (first, last) = range.resolve(total)?;
        let len = last - first + 1;
        f.seek(SeekFrom::Start(first)).await?;
        Ok(Reader {
            file: f.take(len),
            range: Some((first, last)),
            len,
            total,
        })
    }

    /// Reads an object (or a range of it) into memory.
    pub async fn read(&self, obj: &Object, range: Option<ByteRange>) -> Result<Slice> {
        let mut r = self.open(obj, range).await?;
        let mut bytes = Vec::with_capacity(r.len as usize);
        r.file.read_to_end(&mut bytes).await?;
        if bytes.len() as u64 != r.len {
            return Err(VaultError::Io(std::io::Error::new(
                ErrorKind::UnexpectedEof,
                "object shrank while read",
            )));
        }
        Ok(Slice {
            bytes,
            range: r.range,
            total: r.total,
        })
    }

    /// Starts an upload. Fails with `Exists` when the object is already stored, and
    /// `NotFound` when the repository does not exist.
    pub async fn begin_upload(&self, obj: Object) -> Result<Upload> {
        if !self.exists().await {
            return Err(VaultError::NotFound);
        }
        let target = self.path(&obj);
        if tokio::fs::try_exists(&target).await? {
            return Err(VaultError::Exists);
        }
        let tmp_dir = self.dir.join("tmp");
        tokio::fs::create_dir_all(&tmp_dir).await?;
        let tmp = tmp_dir.join(format!("upload-{:032x}", rand::random::<u128>()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tmp)
            .await?;
        Ok(Upload {
            obj,
            target,
            tmp,
            file: Some(tokio::io::BufWriter::with_capacity(1 << 20, file)),
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Deletes an object; returns the bytes it occupied.
    pub async fn delete(&self, obj: &Object) -> Result<u64> {
        let path = self.path(obj);
        let size = self.size(obj).await?;
        tokio::fs::remove_file(&path).await.map_err(not_found_or)?;
        if let Some(parent) = path.parent() {
            sync_dir(parent.to_owned()).await?;
        }
        Ok(size)
    }

    /// The names and sizes of every object of a kind, sorted by name. `NotFound` when
    /// the repository does not exist.
    pub async fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        if !self.exists().await {
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
            out.sort();
            Ok(out)
        })
        .await
        .map_err(|e| VaultError::Io(std::io::Error::other(e)))?
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

/// An upload in progress. Dropping it without `finish` removes the temporary file, so a
/// half upload never becomes visible.
pub struct Upload {
    obj: Object,
    target: PathBuf,
    tmp: PathBuf,
    file: Option<tokio::io::BufWriter<tokio::fs::File>>,
    hasher: Sha256,
    written: u64,
}

impl Upload {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.hasher.update(chunk);
        self.written += chunk.len() as u64;
        match self.file.as_mut() {
            Some(f) => f.write_all(chunk).await?,
            None => return Err(VaultError::Io(std::io::Error::other("upload finished"))),
        }
        Ok(())
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies the content against the name (all objects but `config`), makes the bytes
    /// durable and publishes the object without ever replacing an existing one. Returns
    /// the object's size.
    pub async fn finish(mut self, expected_len: Option<u64>) -> Result<u64> {
        if expected_len.is_some_and(|n| n != self.written) {
            return Err(VaultError::Truncated);
        }
        if let Object::Item(_, name) = &self.obj {
            let digest = std::mem::take(&mut self.hasher).finalize();
            if to_hex(&digest) != name.as_str() {
                return Err(VaultError::HashMismatch);
            }
        }
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
        Ok(self.written)
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        // Runs after `finish` too: the published object is the link, the temporary name
        // goes away either way.
        let _ = std::fs::remove_file(&self.tmp);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sha(data: &[u8]) -> ObjectName {
        ObjectName::parse(&to_hex(&Sha256::digest(data))).unwrap()
    }

    #[test]
    fn ranges() {
        assert_eq!(
            ByteRange::parse("bytes=0-9").unwrap().resolve(100).unwrap(),
            (0, 9)
        );
        assert_eq!(
            ByteRange::parse("bytes=90-").unwrap().resolve(100).unwrap(),
            (90, 99)
        );
        assert_eq!(
            ByteRange::parse("bytes=-5").unwrap().resolve(100).unwrap(),
            (95, 99)
        );
        assert_eq!(
            ByteRange::parse("bytes=50-500")
                .unwrap()
                .resolve(100)
                .unwrap(),
            (50, 99)
        );
        assert!(ByteRange::parse("bytes=100-")
            .unwrap()
            .resolve(100)
            .is_err());
        assert!(ByteRange::parse("bytes=5-1").is_none());
        assert!(ByteRange::parse("bytes=0-1,3-4").is_none());
        assert!(ByteRange::parse("items=0-1").is_none());
    }

    #[test]
    fn names_are_hashes() {
        assert!(ObjectName::parse("../config").is_err());
        assert!(ObjectName::parse(&"A".repeat(64)).is_err());
        assert!(ObjectName::parse(&"a".repeat(64)).is_ok());
    }

    #[tokio::test]
    async fn upload_read_list_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let vault = Vault::new(tmp.path().join("vault"));
        let repo = vault.repo("t", "a");
        assert!(!repo.exists().await);
        repo.create().await.unwrap();
        let data = b"hello restic".to_vec();
        let name = sha(&data);
        let obj = Object::Item(Kind::Data, name.clone());

        let mut up = repo.begin_upload(obj.clone()).await.unwrap();
        up.write(&data).await.unwrap();
        assert_eq!(up.finish(Some(data.len() as u64)).await.unwrap(), 12);
        assert!(matches!(
            repo.begin_upload(obj.clone()).await,
            Err(VaultError::Exists)
        ));

        let s = repo.read(&obj, ByteRange::parse("bytes=6-")).await.unwrap();
        assert_eq!(s.bytes, b"restic");
        assert_eq!(s.range, Some((6, 11)));
        assert_eq!(
            repo.list(Kind::Data).await.unwrap(),
            vec![(name.to_string(), 12)]
        );

        // A wrong name is refused and leaves nothing behind.
        let wrong = Object::Item(Kind::Index, sha(b"other"));
        let mut up = repo.begin_upload(wrong.clone()).await.unwrap();
        up.write(&data).await.unwrap();
        assert!(matches!(
            up.finish(None).await,
            Err(VaultError::HashMismatch)
        ));
        assert!(matches!(repo.size(&wrong).await, Err(VaultError::NotFound)));
        assert!(repo.list(Kind::Index).await.unwrap().is_empty());
        let tmp_left = std::fs::read_dir(repo.dir().join("tmp")).unwrap().count();
        assert_eq!(tmp_left, 0);

        // config is written once, not hash-named.
        let mut up = repo.begin_upload(Object::Config).await.unwrap();
        up.write(b"cfg").await.unwrap();
        up.finish(None).await.unwrap();
        assert!(matches!(
            repo.begin_upload(Object::Config).await,
            Err(VaultError::Exists)
        ));

        assert_eq!(repo.delete(&obj).await.unwrap(), 12);
        assert!(matches!(repo.delete(&obj).await, Err(VaultError::NotFound)));
        assert_eq!(vault.remove_repo("t", "a").await.unwrap(), 3);
        assert!(!repo.exists().await);
    }
}
