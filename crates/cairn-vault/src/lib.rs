//! The backup vault's storage: one restic repository per backup account, on the local
//! filesystem (the default, `local`) or in an S3-compatible object store (`s3`), both laid
//! out the way restic's rest-server lays a repository out
//! (`<tenant>/<account>/{config,data/xx/…,keys,locks,snapshots,index}`).
//!
//! Integrity rules live here, below any protocol and the same for every backend: an
//! object's name is the SHA-256 of its content (verified while it is received, before it
//! is published), nothing is ever overwritten, and an upload becomes visible only once it
//! is complete and durable.

mod local;
mod s3;
mod trash;
pub mod verify;

pub use s3::MAX_REMOTE_OBJECT;
pub use trash::{is_protected, TrashEntry, TrashPurged, Undeleted};

use bytes::Bytes;
use futures_util::TryStreamExt;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;

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
    /// Larger than the backend accepts (see [`MAX_REMOTE_OBJECT`]).
    #[error("object too large for this storage backend")]
    TooLarge,
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// The object store could not be reached or refused the request; retrying may help.
    #[error("object store unavailable: {0}")]
    Unavailable(String),
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

/// A body as it is streamed to a client.
pub type ByteStream = Pin<Box<dyn futures_core::Stream<Item = std::io::Result<Bytes>> + Send>>;

/// An object opened for a GET: the bytes of the range asked for (or the whole object),
/// streamed, never held in memory whole (packs can be 128 MiB).
pub struct Reader {
    /// Yields exactly `len` bytes.
    pub body: ByteStream,
    /// Inclusive first and last byte, when a range was asked for.
    pub range: Option<(u64, u64)>,
    pub len: u64,
    /// The whole object's size.
    pub total: u64,
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("range", &self.range)
            .field("len", &self.len)
            .field("total", &self.total)
            .finish_non_exhaustive()
    }
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

/// What [`Vault::sweep_stale_uploads`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Swept {
    /// Temporary files removed.
    pub files: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// How long a bucket's answer to [`Vault::probe`] is reused.
pub const PROBE_REUSE: std::time::Duration = std::time::Duration::from_secs(2);

/// All repositories: a directory (`<data-dir>/vault`) or a bucket and prefix.
#[derive(Debug, Clone)]
pub struct Vault {
    backend: Backend,
}

#[derive(Debug, Clone)]
enum Backend {
    Local(local::LocalVault),
    S3(s3::S3Vault),
}

impl Vault {
    /// Repositories under a local directory.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Vault {
            backend: Backend::Local(local::LocalVault::new(root.into())),
        }
    }

    /// Repositories in an S3-compatible bucket: `s3://BUCKET[/PREFIX]`. Credentials,
    /// region and endpoint come from the standard `AWS_*` environment variables
    /// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT` for a
    /// non-AWS store, `AWS_ALLOW_HTTP=true` for a plain-HTTP one).
    pub fn s3(url: &str) -> Result<Self, String> {
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| format!("not an s3:// URL: {url}"))?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        if bucket.is_empty() {
            return Err(format!("no bucket in {url}"));
        }
        // Large uploads are published by a copy that must not replace an existing
        // object (see `s3::S3Upload`).
        let store = object_store::aws::AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_copy_if_not_exists(object_store::aws::S3CopyIfNotExists::Multipart)
            .build()
            .map_err(|e| format!("configuring the S3 vault: {e}"))?;
        Ok(Self::object_store(Arc::new(store), prefix, url))
    }

    /// Repositories in any object store under `prefix` (tests use an in-memory store).
    pub fn object_store(
        store: Arc<dyn object_store::ObjectStore>,
        prefix: &str,
        url: &str,
    ) -> Self {
        Vault {
            backend: Backend::S3(s3::S3Vault {
                store,
                prefix: object_store::path::Path::from(prefix),
                url: url.to_owned(),
                probed: Arc::default(),
            }),
        }
    }

    /// Where the repositories live, for logs: a directory or `s3://…`.
    pub fn location(&self) -> String {
        match &self.backend {
            Backend::Local(l) => l.root.display().to_string(),
            Backend::S3(s) => s.url.clone(),
        }
    }

    /// The repository of one account. Both parts must be ids validated by the caller
    /// (UUIDs): they become path components.
    pub fn repo(&self, tenant: &str, account: &str) -> Repo {
        debug_assert!(is_path_safe(tenant) && is_path_safe(account));
        Repo {
            backend: match &self.backend {
                Backend::Local(l) => RepoBackend::Local(l.repo(tenant, account)),
                Backend::S3(s) => RepoBackend::S3(s.repo(tenant, account)),
            },
        }
    }

    /// The bytes an account's repository's objects occupy (unfinished uploads excluded);
    /// 0 for a missing repository.
    pub async fn repo_size(&self, tenant: &str, account: &str) -> Result<u64> {
        match &self.backend {
            Backend::Local(l) => l.repo_size(tenant, account).await,
            Backend::S3(s) => s.repo_size(tenant, account).await,
        }
    }

    /// Removes what uploads interrupted by a crash left behind and nothing removes
    /// otherwise: on the local backend, temporary files not modified for longer than
    /// `max_age` that no upload of this process is writing. On S3 nothing is done here
    /// (a bucket lifecycle rule aborts incomplete multipart uploads).
    pub async fn sweep_stale_uploads(&self, max_age: std::time::Duration) -> Result<Swept> {
        match &self.backend {
            Backend::Local(l) => l.sweep_stale_uploads(max_age).await,
            Backend::S3(_) => Ok(Swept::default()),
        }
    }

    /// Whether the store answers, for readiness probes: the local directory (or, before
    /// the first repository, its parent) exists; the bucket answers one list request
    /// (its first page), within `timeout` (the object store client would otherwise retry
    /// with backoff for minutes); a bucket's answer is reused for [`PROBE_REUSE`].
    pub async fn probe(&self, timeout: std::time::Duration) -> Result<()> {
        match &self.backend {
            Backend::Local(l) => {
                let there = match tokio::fs::metadata(&l.root).await {
                    Ok(m) => m.is_dir(),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                        match l.root.parent().filter(|p| !p.as_os_str().is_empty()) {
                            Some(p) => tokio::fs::metadata(p).await?.is_dir(),
                            None => true,
                        }
                    }
                    Err(e) => return Err(e.into()),
                };
                if there {
                    Ok(())
                } else {
                    Err(VaultError::Unavailable(format!(
                        "{} is not a directory",
                        l.root.display()
                    )))
                }
            }
            Backend::S3(s) => {
                use futures_util::StreamExt;
                // One probe at a time, and its answer reused for a moment: the probe
                // endpoints need no credential, and each list request is billed.
                let mut last = s.probed.lock().await;
                if let Some((at, r)) = last.as_ref() {
                    if at.elapsed() < PROBE_REUSE {
                        return r.clone().map_err(VaultError::Unavailable);
                    }
                }
                let r = match tokio::time::timeout(timeout, s.store.list(Some(&s.prefix)).next())
                    .await
                {
                    Ok(None | Some(Ok(_))) => Ok(()),
                    Ok(Some(Err(e))) => Err(e.to_string()),
                    Err(_) => Err(format!("no answer within {} s", timeout.as_secs_f64())),
                };
                *last = Some((std::time::Instant::now(), r.clone()));
                r.map_err(VaultError::Unavailable)
            }
        }
    }

    /// Deletes an account's repository and everything in it (the retention purge).
    /// Returns the bytes the objects occupied; a missing repository is 0.
    pub async fn remove_repo(&self, tenant: &str, account: &str) -> Result<u64> {
        match &self.backend {
            Backend::Local(l) => l.remove_repo(tenant, account).await,
            Backend::S3(s) => s.remove_repo(tenant, account).await,
        }
    }
}

fn is_path_safe(s: &str) -> bool {
    !s.is_empty()
        && s != "."
        && s != ".."
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

pub(crate) fn to_hex(bytes: &[u8]) -> String {
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
    backend: RepoBackend,
}

#[derive(Debug, Clone)]
enum RepoBackend {
    Local(local::LocalRepo),
    S3(s3::S3Repo),
}

impl Repo {
    /// The repository's directory, for the local backend.
    pub fn local_dir(&self) -> Option<&std::path::Path> {
        match &self.backend {
            RepoBackend::Local(l) => Some(&l.dir),
            RepoBackend::S3(_) => None,
        }
    }

    /// Whether the repository has been created (`POST /?create=true`).
    pub async fn exists(&self) -> Result<bool> {
        match &self.backend {
            RepoBackend::Local(l) => l.exists().await,
            RepoBackend::S3(s) => s.exists().await,
        }
    }

    /// Creates the repository (idempotent, like rest-server).
    pub async fn create(&self) -> Result<()> {
        match &self.backend {
            RepoBackend::Local(l) => l.create().await,
            RepoBackend::S3(s) => s.create().await,
        }
    }

    /// The size of an object.
    pub async fn size(&self, obj: &Object) -> Result<u64> {
        match &self.backend {
            RepoBackend::Local(l) => l.size(obj).await,
            RepoBackend::S3(s) => s.size(obj).await,
        }
    }

    /// Opens an object, or the part of it a `Range` asks for, for streaming.
    pub async fn open(&self, obj: &Object, range: Option<ByteRange>) -> Result<Reader> {
        match &self.backend {
            RepoBackend::Local(l) => l.open(obj, range).await,
            RepoBackend::S3(s) => s.open(obj, range).await,
        }
    }

    /// Reads an object (or a range of it) into memory.
    pub async fn read(&self, obj: &Object, range: Option<ByteRange>) -> Result<Slice> {
        let r = self.open(obj, range).await?;
        let mut bytes = Vec::with_capacity(usize::try_from(r.len).unwrap_or(0));
        let mut body = r.body;
        while let Some(chunk) = body.try_next().await? {
            bytes.extend_from_slice(&chunk);
        }
        if bytes.len() as u64 != r.len {
            return Err(VaultError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "object shrank while read",
            )));
        }
        Ok(Slice {
            bytes,
            range: r.range,
            total: r.total,
        })
    }

    /// Starts an upload of `len` declared bytes. Fails with `Exists` when the object is
    /// already stored, `NotFound` when the repository does not exist, and `TooLarge` when
    /// the backend cannot take that many bytes.
    pub async fn begin_upload(&self, obj: Object, len: u64) -> Result<Upload> {
        let inner = match &self.backend {
            RepoBackend::Local(l) => UploadInner::Local(l.begin_upload(obj.clone()).await?),
            RepoBackend::S3(s) => UploadInner::S3(s.begin_upload(&obj, len).await?),
        };
        Ok(Upload {
            obj,
            inner,
            hasher: Sha256::new(),
            written: 0,
        })
    }

    /// Deletes an object; returns the bytes it occupied.
    pub async fn delete(&self, obj: &Object) -> Result<u64> {
        match &self.backend {
            RepoBackend::Local(l) => l.delete(obj).await,
            RepoBackend::S3(s) => s.delete(obj).await,
        }
    }

    /// The names and sizes of every object of a kind, sorted by name. `NotFound` when
    /// the repository does not exist.
    pub async fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        let mut out = match &self.backend {
            RepoBackend::Local(l) => l.list(kind).await?,
            RepoBackend::S3(s) => s.list(kind).await?,
        };
        out.sort();
        Ok(out)
    }
}

/// An upload in progress. Dropping it without `finish` leaves nothing visible.
pub struct Upload {
    obj: Object,
    inner: UploadInner,
    hasher: Sha256,
    written: u64,
}

enum UploadInner {
    Local(local::LocalUpload),
    S3(s3::S3Upload),
}

impl Upload {
    pub async fn write(&mut self, chunk: impl Into<Bytes>) -> Result<()> {
        let chunk = chunk.into();
        self.hasher.update(&chunk);
        self.written += chunk.len() as u64;
        match &mut self.inner {
            UploadInner::Local(l) => l.write(chunk).await,
            UploadInner::S3(s) => {
                if self.written > MAX_REMOTE_OBJECT {
                    return Err(VaultError::TooLarge);
                }
                s.write(chunk).await
            }
        }
    }

    pub fn written(&self) -> u64 {
        self.written
    }

    /// Verifies the content against the name (all objects but `config`), then makes the
    /// bytes durable and publishes the object without ever replacing an existing one.
    /// Returns the object's size.
    pub async fn finish(mut self, expected_len: Option<u64>) -> Result<u64> {
        let mut verdict = Ok(());
        if expected_len.is_some_and(|n| n != self.written) {
            verdict = Err(VaultError::Truncated);
        } else if let Object::Item(_, name) = &self.obj {
            let digest = std::mem::take(&mut self.hasher).finalize();
            if to_hex(&digest) != name.as_str() {
                verdict = Err(VaultError::HashMismatch);
            }
        }
        if let Err(e) = verdict {
            if let UploadInner::S3(s) = &mut self.inner {
                s.abort().await;
            }
            return Err(e);
        }
        match &mut self.inner {
            UploadInner::Local(l) => l.publish().await?,
            UploadInner::S3(s) => s.publish().await?,
        }
        Ok(self.written)
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

    /// The same contract on every backend: the local directory, and the object-store
    /// code path on an in-memory store (the S3 wire protocol itself is tested against a
    /// real S3-compatible server in the integration suite).
    #[tokio::test]
    async fn upload_read_list_delete_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let vault = Vault::new(tmp.path().join("vault"));
        contract(&vault).await;
        let repo = vault.repo("t", "a");
        repo.create().await.unwrap();
        let tmp_left = std::fs::read_dir(repo.local_dir().unwrap().join("tmp"))
            .unwrap()
            .count();
        assert_eq!(tmp_left, 0, "no temporary upload file is left behind");
    }

    /// The sweep removes a temporary file nobody writes (left by a crash) once it is
    /// older than the threshold, and never the file of an upload in flight, even with a
    /// threshold of zero; that upload still publishes.
    #[tokio::test]
    async fn the_sweep_removes_orphaned_upload_files_but_never_one_in_flight() {
        let tmp = tempfile::tempdir().unwrap();
        let vault = Vault::new(tmp.path().join("vault"));
        let repo = vault.repo("t", "a");
        repo.create().await.unwrap();
        let tmp_dir = repo.local_dir().unwrap().join("tmp");
        let orphan = tmp_dir.join(format!("upload-{:032x}", 7));
        std::fs::write(&orphan, b"left by a crash").unwrap();
        let other = tmp_dir.join("not-an-upload");
        std::fs::write(&other, b"x").unwrap();
        let data = b"in flight".to_vec();
        let mut up = repo
            .begin_upload(Object::Item(Kind::Data, sha(&data)), data.len() as u64)
            .await
            .unwrap();
        up.write(data.clone()).await.unwrap();
        let hour = std::time::Duration::from_secs(3600);
        let swept = vault.sweep_stale_uploads(hour).await.unwrap();
        assert_eq!(swept, Swept::default(), "nothing is an hour old yet");
        // Past the threshold (modification times may be coarse: wait for a tick).
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        let swept = vault
            .sweep_stale_uploads(std::time::Duration::ZERO)
            .await
            .unwrap();
        assert_eq!(
            swept,
            Swept {
                files: 1,
                bytes: 15
            }
        );
        assert!(!orphan.exists());
        assert!(other.exists(), "only upload-* files are swept");
        let left: Vec<_> = std::fs::read_dir(&tmp_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("upload-"))
            .collect();
        assert_eq!(left.len(), 1, "the upload in flight keeps its file");
        up.finish(Some(data.len() as u64)).await.unwrap();
        assert_eq!(repo.list(Kind::Data).await.unwrap().len(), 1);
    }

    #[tokio::test]
    async fn upload_read_list_delete_in_an_object_store() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let vault = Vault::object_store(store.clone(), "pre/fix", "memory://");
        contract(&vault).await;
        // Nothing of the purged repository is left, marker included.
        let left: Vec<_> = object_store::ObjectStore::list(&*store, None)
            .try_collect()
            .await
            .unwrap();
        assert!(left.is_empty(), "{left:?}");
        // Uploads beyond the backend's largest object are refused up front.
        let repo = vault.repo("t", "b");
        repo.create().await.unwrap();
        assert!(matches!(
            repo.begin_upload(Object::Config, MAX_REMOTE_OBJECT + 1)
                .await,
            Err(VaultError::TooLarge)
        ));
    }

    /// An upload larger than one part streams as a multipart upload: a good one is
    /// published whole, a wrong or short one leaves nothing (no object, no temporary
    /// key), and an existing object is never replaced.
    #[tokio::test]
    async fn large_uploads_to_an_object_store_stream_and_publish_only_when_verified() {
        let store = Arc::new(object_store::memory::InMemory::new());
        let vault = Vault::object_store(store.clone(), "pre", "memory://");
        let repo = vault.repo("t", "a");
        repo.create().await.unwrap();
        let data: Vec<u8> = (0..(3 * s3::UPLOAD_PART_BYTES as u32) + 777)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let len = data.len() as u64;
        let obj = Object::Item(Kind::Data, sha(&data));
        let keys = || async {
            let all: Vec<_> = object_store::ObjectStore::list(&*store, None)
                .map_ok(|m| m.location.to_string())
                .try_collect()
                .await
                .unwrap();
            all
        };
        // Wrong content under the name, then a short body: refused, nothing left.
        let mut up = repo.begin_upload(obj.clone(), len).await.unwrap();
        for chunk in data.chunks(1 << 20) {
            let mut c = chunk.to_vec();
            c[0] ^= 1;
            up.write(c).await.unwrap();
        }
        assert!(matches!(
            up.finish(Some(len)).await,
            Err(VaultError::HashMismatch)
        ));
        let mut up = repo.begin_upload(obj.clone(), len).await.unwrap();
        up.write(data[..data.len() - 1].to_vec()).await.unwrap();
        assert!(matches!(
            up.finish(Some(len)).await,
            Err(VaultError::Truncated)
        ));
        assert_eq!(keys().await, vec!["pre/t/a/cairn-repository".to_owned()]);
        // Two uploads of one object: the first published, the second refused and
        // leaving no temporary key; the stored bytes are the first's.
        let mut first = repo.begin_upload(obj.clone(), len).await.unwrap();
        let mut second = repo.begin_upload(obj.clone(), len).await.unwrap();
        for chunk in data.chunks(1 << 20) {
            first.write(chunk.to_vec()).await.unwrap();
            second.write(chunk.to_vec()).await.unwrap();
        }
        assert_eq!(first.finish(Some(len)).await.unwrap(), len);
        assert!(matches!(
            second.finish(Some(len)).await,
            Err(VaultError::Exists)
        ));
        assert!(repo.read(&obj, None).await.unwrap().bytes == data);
        assert_eq!(keys().await.len(), 2, "{:?}", keys().await);
        assert_eq!(vault.repo_size("t", "a").await.unwrap(), len);
    }

    /// Objects above the size read in one piece are streamed; both paths return the same
    /// bytes, whole and ranged.
    #[tokio::test]
    async fn large_objects_stream_the_same_bytes() {
        let tmp = tempfile::tempdir().unwrap();
        let vault = Vault::new(tmp.path().join("vault"));
        let repo = vault.repo("t", "a");
        repo.create().await.unwrap();
        let data: Vec<u8> = (0..(9u32 << 20) + 12345)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
            .collect();
        let obj = Object::Item(Kind::Data, sha(&data));
        let mut up = repo
            .begin_upload(obj.clone(), data.len() as u64)
            .await
            .unwrap();
        for chunk in data.chunks(1 << 20) {
            up.write(chunk.to_vec()).await.unwrap();
        }
        up.finish(Some(data.len() as u64)).await.unwrap();
        assert!(repo.read(&obj, None).await.unwrap().bytes == data);
        let s = repo
            .read(&obj, ByteRange::parse("bytes=1000-9437283"))
            .await
            .unwrap();
        assert!(s.bytes == data[1000..=9_437_283]);
        let s = repo.read(&obj, ByteRange::parse("bytes=-5")).await.unwrap();
        assert!(s.bytes == data[data.len() - 5..]);
        // Either side of one read chunk (256 KiB): one buffer, and a buffer plus a stream.
        for last in [262_142, 262_143, 262_144, 262_145] {
            let range = ByteRange::parse(&format!("bytes=1-{last}"));
            let s = repo.read(&obj, range).await.unwrap();
            assert!(s.bytes == data[1..=last], "{last}");
        }
    }

    #[tokio::test]
    async fn protected_deletes_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        protection_contract(&Vault::new(tmp.path().join("vault"))).await;
    }

    #[tokio::test]
    async fn protected_deletes_in_an_object_store() {
        let store = Arc::new(object_store::memory::InMemory::new());
        protection_contract(&Vault::object_store(store, "pre", "memory://")).await;
    }

    async fn put(repo: &Repo, kind: Kind, data: &[u8]) -> Object {
        let obj = Object::Item(kind, sha(data));
        let mut up = repo
            .begin_upload(obj.clone(), data.len() as u64)
            .await
            .unwrap();
        up.write(data.to_vec()).await.unwrap();
        up.finish(Some(data.len() as u64)).await.unwrap();
        obj
    }

    /// Deletion protection, the same on every backend: a protected delete hides the
    /// object from reads and listings but keeps its bytes (in the repository's size);
    /// an undelete since a time puts back exactly what was deleted since then, drops an
    /// entry whose object was uploaded again, and the purge removes only what is due.
    async fn protection_contract(vault: &Vault) {
        let repo = vault.repo("t", "a");
        repo.create().await.unwrap();
        let pack = put(&repo, Kind::Data, b"pack bytes").await;
        let snap = put(&repo, Kind::Snapshots, b"snapshot").await;
        let index = put(&repo, Kind::Index, b"index!").await;
        let lock = put(&repo, Kind::Locks, b"lock").await;
        let size = 10 + 8 + 6 + 4;
        assert_eq!(vault.repo_size("t", "a").await.unwrap(), size);

        // Locks are never kept.
        assert!(matches!(
            repo.delete_protected(&lock, 100, 200).await,
            Err(VaultError::BadName)
        ));
        assert_eq!(repo.delete(&lock).await.unwrap(), 4);

        assert_eq!(repo.delete_protected(&pack, 100, 1000).await.unwrap(), 10);
        assert_eq!(repo.delete_protected(&snap, 200, 1100).await.unwrap(), 8);
        assert_eq!(repo.delete_protected(&index, 300, 1200).await.unwrap(), 6);
        // A second delete of the same object finds nothing.
        assert!(matches!(
            repo.delete_protected(&index, 300, 1200).await,
            Err(VaultError::NotFound)
        ));
        for (obj, kind) in [(&pack, Kind::Data), (&snap, Kind::Snapshots)] {
            assert!(matches!(repo.size(obj).await, Err(VaultError::NotFound)));
            assert!(matches!(
                repo.open(obj, None).await,
                Err(VaultError::NotFound)
            ));
            assert!(repo.list(kind).await.unwrap().is_empty());
        }
        assert_eq!(
            vault.repo_size("t", "a").await.unwrap(),
            24,
            "kept bytes count"
        );
        let trash = repo.trash().await.unwrap();
        let times: Vec<_> = trash
            .iter()
            .map(|e| (e.kind, e.deleted_at, e.size))
            .collect();
        assert_eq!(
            times,
            [
                (Kind::Data, 100, 10),
                (Kind::Snapshots, 200, 8),
                (Kind::Index, 300, 6)
            ]
        );

        // The client uploads the index again (same name, same bytes): allowed.
        put(&repo, Kind::Index, b"index!").await;
        // Undo since 200: the snapshot comes back, the index entry is dropped (its
        // object is back already), the pack deleted before stays in the trash.
        let done = repo.undelete(200).await.unwrap();
        assert_eq!(
            done,
            Undeleted {
                restored: 1,
                restored_bytes: 8,
                dropped: 1,
                dropped_bytes: 6
            }
        );
        assert_eq!(repo.read(&snap, None).await.unwrap().bytes, b"snapshot");
        assert_eq!(repo.list(Kind::Snapshots).await.unwrap().len(), 1);
        assert_eq!(repo.trash().await.unwrap().len(), 1);
        assert_eq!(repo.undelete(200).await.unwrap(), Undeleted::default());

        // The purge: nothing before the pack's time is up, then the pack.
        assert_eq!(vault.purge_trash(999).await.unwrap(), (vec![], vec![]));
        let (purged, failed) = vault.purge_trash(1000).await.unwrap();
        assert!(failed.is_empty(), "{failed:?}");
        assert_eq!(
            purged,
            vec![TrashPurged {
                tenant: "t".into(),
                account: "a".into(),
                objects: 1,
                bytes: 10
            }]
        );
        assert!(repo.trash().await.unwrap().is_empty());
        assert!(matches!(repo.size(&pack).await, Err(VaultError::NotFound)));
        assert_eq!(vault.repo_size("t", "a").await.unwrap(), 8 + 6);
        // Deleted, undone, deleted again: the same name twice in the trash is fine.
        repo.delete_protected(&snap, 400, 500).await.unwrap();
        put(&repo, Kind::Snapshots, b"snapshot").await;
        repo.delete_protected(&snap, 400, 500).await.unwrap();
        assert_eq!(repo.trash().await.unwrap().len(), 2);
        let done = repo.undelete(0).await.unwrap();
        assert_eq!((done.restored, done.dropped), (1, 1));
        assert_eq!(repo.list(Kind::Snapshots).await.unwrap().len(), 1);
        // The repository's removal takes its trash with it.
        repo.delete_protected(&snap, 600, 700).await.unwrap();
        vault.remove_repo("t", "a").await.unwrap();
        assert!(repo.trash().await.unwrap().is_empty());
        assert_eq!(vault.purge_trash(10_000).await.unwrap(), (vec![], vec![]));
    }

    async fn contract(vault: &Vault) {
        let repo = vault.repo("t", "a");
        assert!(!repo.exists().await.unwrap());
        let data = b"hello restic".to_vec();
        let name = sha(&data);
        let obj = Object::Item(Kind::Data, name.clone());
        // No repository yet: nothing can be stored or listed.
        assert!(matches!(
            repo.begin_upload(obj.clone(), 12).await,
            Err(VaultError::NotFound)
        ));
        assert!(matches!(
            repo.list(Kind::Data).await,
            Err(VaultError::NotFound)
        ));
        repo.create().await.unwrap();
        repo.create().await.unwrap();
        assert!(repo.exists().await.unwrap());
        assert!(repo.list(Kind::Data).await.unwrap().is_empty());

        let mut up = repo.begin_upload(obj.clone(), 12).await.unwrap();
        up.write(data[..5].to_vec()).await.unwrap();
        up.write(data[5..].to_vec()).await.unwrap();
        assert_eq!(up.finish(Some(data.len() as u64)).await.unwrap(), 12);
        assert!(matches!(
            repo.begin_upload(obj.clone(), 12).await,
            Err(VaultError::Exists)
        ));
        assert_eq!(repo.size(&obj).await.unwrap(), 12);

        let s = repo.read(&obj, ByteRange::parse("bytes=6-")).await.unwrap();
        assert_eq!(s.bytes, b"restic");
        assert_eq!((s.range, s.total), (Some((6, 11)), 12));
        let s = repo.read(&obj, ByteRange::parse("bytes=-3")).await.unwrap();
        assert_eq!(s.bytes, b"tic");
        let s = repo
            .read(&obj, ByteRange::parse("bytes=0-4"))
            .await
            .unwrap();
        assert_eq!(s.bytes, b"hello");
        assert!(matches!(
            repo.read(&obj, ByteRange::parse("bytes=12-")).await,
            Err(VaultError::BadRange)
        ));
        assert_eq!(repo.read(&obj, None).await.unwrap().bytes, data);
        assert_eq!(
            repo.list(Kind::Data).await.unwrap(),
            vec![(name.to_string(), 12)]
        );

        // Two uploads of one object racing: both began before either finished; exactly
        // one publishes, the other is refused, and the stored bytes are intact.
        let mut a = repo
            .begin_upload(Object::Item(Kind::Keys, sha(b"k")), 1)
            .await
            .unwrap();
        let mut b = repo
            .begin_upload(Object::Item(Kind::Keys, sha(b"k")), 1)
            .await
            .unwrap();
        a.write(b"k".to_vec()).await.unwrap();
        b.write(b"k".to_vec()).await.unwrap();
        assert_eq!(a.finish(Some(1)).await.unwrap(), 1);
        assert!(matches!(b.finish(Some(1)).await, Err(VaultError::Exists)));

        // A wrong name is refused and leaves nothing behind, as does a short body.
        let wrong = Object::Item(Kind::Index, sha(b"other"));
        let mut up = repo.begin_upload(wrong.clone(), 12).await.unwrap();
        up.write(data.clone()).await.unwrap();
        assert!(matches!(
            up.finish(None).await,
            Err(VaultError::HashMismatch)
        ));
        let mut up = repo.begin_upload(wrong.clone(), 12).await.unwrap();
        up.write(b"other".to_vec()).await.unwrap();
        assert!(matches!(
            up.finish(Some(12)).await,
            Err(VaultError::Truncated)
        ));
        let up = repo.begin_upload(wrong.clone(), 5).await.unwrap();
        drop(up);
        assert!(matches!(repo.size(&wrong).await, Err(VaultError::NotFound)));
        assert!(repo.list(Kind::Index).await.unwrap().is_empty());

        // config is written once, not hash-named.
        let mut up = repo.begin_upload(Object::Config, 3).await.unwrap();
        up.write(b"cfg".to_vec()).await.unwrap();
        up.finish(None).await.unwrap();
        assert!(matches!(
            repo.begin_upload(Object::Config, 3).await,
            Err(VaultError::Exists)
        ));
        assert_eq!(
            repo.read(&Object::Config, None).await.unwrap().bytes,
            b"cfg"
        );

        assert_eq!(vault.repo_size("t", "a").await.unwrap(), 12 + 1 + 3);
        assert_eq!(repo.delete(&obj).await.unwrap(), 12);
        assert!(matches!(repo.delete(&obj).await, Err(VaultError::NotFound)));
        // Another account's repository is a different place.
        assert!(!vault.repo("t", "other").exists().await.unwrap());
        assert_eq!(vault.remove_repo("t", "a").await.unwrap(), 1 + 3);
        assert!(!repo.exists().await.unwrap());
        assert_eq!(vault.remove_repo("t", "a").await.unwrap(), 0);
    }
}
