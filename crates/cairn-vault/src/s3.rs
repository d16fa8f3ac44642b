//! The S3-compatible backend (through the `object_store` crate), for deployments where
//! several stateless instances serve one vault. The key layout under the configured prefix
//! is rest-server's (`<tenant>/<account>/{config,data/xx/…,keys,…}`) plus one marker
//! object per created repository.
//!
//! Nothing is ever replaced: every write is a conditional create (`If-None-Match: *`), so
//! two instances racing to store one object yield one object and one refusal. An upload is
//! hashed and checked while it is received and published only after the check (a small
//! one with a single `PUT`, a large one streamed as a multipart upload to a temporary key
//! and copied into place), so a half or wrong upload never becomes visible. S3's `PUT` is atomic and
//! durable once acknowledged.

use crate::{ByteRange, ByteStream, Kind, Object, ObjectName, Reader, Result, VaultError};
use bytes::Bytes;
use futures_util::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{
    GetOptions, GetRange, ObjectStore, PutMode, PutOptions, PutPayload, WriteMultipart,
};
use std::sync::Arc;

/// The largest object the S3 backend accepts; restic's packs are at most 128 MiB (16 MiB
/// by default). Uploads stream (see [`S3Upload`]), so this bounds storage, not memory.
pub const MAX_REMOTE_OBJECT: u64 = 160 << 20;

/// The object marking a created repository (S3 has no directories).
const MARKER: &str = "cairn-repository";

/// Appended to an object's key to name the claim of the one delete allowed to remove
/// it (see `S3Repo::delete`). Not an object name, so listings never show claims.
const CLAIM_SUFFIX: &str = ".deleting";

/// How old a delete's claim must be before another delete may take it over: longer
/// than any one delete takes, with room for clock skew between the object store and
/// the instance.
const CLAIM_TTL_SECS: i64 = 300;

fn store_err(e: object_store::Error) -> VaultError {
    match e {
        object_store::Error::NotFound { .. } => VaultError::NotFound,
        object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. } => {
            VaultError::Exists
        }
        e => VaultError::Unavailable(e.to_string()),
    }
}

#[derive(Debug, Clone)]
pub(crate) struct S3Vault {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: Path,
    /// How the vault was configured, for logs (`s3://bucket/prefix`).
    pub(crate) url: String,
    /// The last readiness probe: when, and what it found (`Vault::probe`).
    pub(crate) probed: ProbeCache,
}

pub(crate) type ProbeCache =
    Arc<tokio::sync::Mutex<Option<(std::time::Instant, std::result::Result<(), String>)>>>;

impl S3Vault {
    pub(crate) fn repo(&self, tenant: &str, account: &str) -> S3Repo {
        S3Repo {
            store: self.store.clone(),
            root: self.prefix.child(tenant).child(account),
        }
    }

    /// Every key of a repository with its size.
    async fn keys(&self, tenant: &str, account: &str) -> Result<Vec<(Path, u64)>> {
        let root = self.repo(tenant, account).root;
        self.store
            .list(Some(&root))
            .map_ok(|m| (m.location, m.size))
            .try_collect()
            .await
            .map_err(store_err)
    }

    pub(crate) async fn repo_size(&self, tenant: &str, account: &str) -> Result<u64> {
        Ok(self
            .keys(tenant, account)
            .await?
            .iter()
            .filter(|k| {
                let key = k.0.as_ref();
                !key.ends_with(CLAIM_SUFFIX) && !key.ends_with(TMP_SUFFIX)
            })
            .map(|k| k.1)
            .sum())
    }

    pub(crate) async fn remove_repo(&self, tenant: &str, account: &str) -> Result<u64> {
        let keys = self.keys(tenant, account).await?;
        let bytes = keys.iter().map(|k| k.1).sum();
        // The marker goes last: a purge cut short leaves a repository that is still
        // known, and the next purge run finishes it.
        let marker = self.repo(tenant, account).root.child(MARKER);
        for (key, _) in keys.iter().filter(|k| k.0 != marker) {
            match self.store.delete(key).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(e) => return Err(store_err(e)),
            }
        }
        match self.store.delete(&marker).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(e)),
        }
        Ok(bytes)
    }
}

#[derive(Debug, Clone)]
pub(crate) struct S3Repo {
    store: Arc<dyn ObjectStore>,
    root: Path,
}

impl S3Repo {
    fn key(&self, obj: &Object) -> Path {
        match obj {
            Object::Config => self.root.child("config"),
            Object::Item(Kind::Data, name) => self
                .root
                .child("data")
                .child(&name.as_str()[..2])
                .child(name.as_str()),
            Object::Item(kind, name) => self.root.child(kind.as_str()).child(name.as_str()),
        }
    }

    pub(crate) async fn exists(&self) -> Result<bool> {
        match self.store.head(&self.root.child(MARKER)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(store_err(e)),
        }
    }

    pub(crate) async fn create(&self) -> Result<()> {
        let opts = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&self.root.child(MARKER), PutPayload::new(), opts)
            .await
        {
            // Idempotent, like rest-server's `?create=true`.
            Ok(_) => Ok(()),
            Err(e) => match store_err(e) {
                VaultError::Exists => Ok(()),
                e => Err(e),
            },
        }
    }

    pub(crate) async fn size(&self, obj: &Object) -> Result<u64> {
        let meta = self.store.head(&self.key(obj)).await.map_err(store_err)?;
        Ok(meta.size)
    }

    pub(crate) async fn open(&self, obj: &Object, range: Option<ByteRange>) -> Result<Reader> {
        let key = self.key(obj);
        // The range is resolved against the size first, so an unsatisfiable one is a 416
        // decided here rather than whatever the object store makes of it.
        let total = self.store.head(&key).await.map_err(store_err)?.size;
        let (range, get_range, len) = match range {
            None => (None, None, total),
            Some(r) => {
                let (first, last) = r.resolve(total)?;
                (
                    Some((first, last)),
                    Some(GetRange::Bounded(first..last + 1)),
                    last - first + 1,
                )
            }
        };
        let opts = GetOptions {
            range: get_range,
            ..GetOptions::default()
        };
        let got = self.store.get_opts(&key, opts).await.map_err(store_err)?;
        let body: ByteStream = got
            .into_stream()
            .map_err(|e| std::io::Error::other(e.to_string()))
            .boxed();
        Ok(Reader {
            body,
            range,
            len,
            total,
        })
    }

    pub(crate) async fn begin_upload(&self, obj: &Object, len: u64) -> Result<S3Upload> {
        if len > MAX_REMOTE_OBJECT {
            return Err(VaultError::TooLarge);
        }
        if !self.exists().await? {
            return Err(VaultError::NotFound);
        }
        let key = self.key(obj);
        match self.store.head(&key).await {
            Ok(_) => return Err(VaultError::Exists),
            Err(object_store::Error::NotFound { .. }) => {}
            Err(e) => return Err(store_err(e)),
        }
        Ok(S3Upload {
            store: self.store.clone(),
            key,
            chunks: Vec::new(),
            buffered: 0,
            multipart: None,
        })
    }

    /// Deletes an object and returns its size, or `NotFound` when this call did not
    /// remove it. S3's `DELETE` succeeds whether or not the key existed, so racing
    /// deletes (from one instance or several) cannot tell who removed the object, and
    /// each would give its size back to the quota. The deleter that creates the claim
    /// object `<key>.deleting` (a conditional `PUT`, `If-None-Match: *`, the same
    /// primitive uploads rely on) is the only one that looks the object up and removes
    /// it; the others get `NotFound`. A claim left behind by a crashed instance is taken
    /// over after [`CLAIM_TTL_SECS`] with `If-Match` on its ETag, so only one deleter
    /// can take it over.
    pub(crate) async fn delete(&self, obj: &Object) -> Result<u64> {
        let key = self.key(obj);
        self.claimed(&key, ClaimedAction::Delete)
            .await
            .map(|(size, _)| size)
    }

    /// Runs `action` on `key` holding the claim `<key>.deleting` (see [`S3Repo::delete`]):
    /// deletes, moves into the trash and restores from it all remove a key, and of racing
    /// ones only the claim's holder may. Returns the key's size, and for a restore
    /// whether the object was already back.
    async fn claimed(&self, key: &Path, action: ClaimedAction) -> Result<(u64, bool)> {
        let claim = Path::from(format!("{key}{CLAIM_SUFFIX}"));
        // Unique content, so a takeover's `If-Match` tells one claim from the next.
        let nonce = format!("{:032x}", rand::random::<u128>());
        let create = PutOptions {
            mode: PutMode::Create,
            ..PutOptions::default()
        };
        match self
            .store
            .put_opts(&claim, nonce.clone().into(), create)
            .await
            .map_err(store_err)
        {
            Ok(_) => {}
            Err(VaultError::Exists) => {
                let held = match self.store.head(&claim).await.map_err(store_err) {
                    Ok(m) => m,
                    // The other delete just finished: the object is gone.
                    Err(VaultError::NotFound) => return Err(VaultError::NotFound),
                    Err(e) => return Err(e),
                };
                let now = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
                if now.saturating_sub(held.last_modified.timestamp()) < CLAIM_TTL_SECS {
                    // Another delete is removing the object right now.
                    return Err(VaultError::NotFound);
                }
                let take_over = PutOptions {
                    mode: PutMode::Update(object_store::UpdateVersion {
                        e_tag: held.e_tag,
                        version: held.version,
                    }),
                    ..PutOptions::default()
                };
                match self
                    .store
                    .put_opts(&claim, nonce.into(), take_over)
                    .await
                    .map_err(store_err)
                {
                    Ok(_) => {}
                    Err(VaultError::Exists | VaultError::NotFound) => {
                        return Err(VaultError::NotFound)
                    }
                    Err(e) => return Err(e),
                }
            }
            Err(e) => return Err(e),
        }
        let removed = async {
            let size = self.store.head(key).await.map_err(store_err)?.size;
            let mut was_back = false;
            match &action {
                ClaimedAction::Delete => {}
                // A copy, then the delete below: a crash in between leaves the object in
                // both places (counted twice by a recount until the purge), never in
                // neither.
                ClaimedAction::CopyTo(to) => {
                    match self
                        .store
                        .copy_if_not_exists(key, to)
                        .await
                        .map_err(store_err)
                    {
                        Ok(()) => {}
                        Err(VaultError::Exists) => was_back = true,
                        Err(e) => return Err(e),
                    }
                }
            }
            self.store.delete(key).await.map_err(store_err)?;
            Ok((size, was_back))
        }
        .await;
        // A claim that cannot be removed now goes stale and is taken over later; the
        // object's fate is already decided.
        let _ = self.store.delete(&claim).await;
        removed
    }

    pub(crate) async fn list(&self, kind: Kind) -> Result<Vec<(String, u64)>> {
        if !self.exists().await? {
            return Err(VaultError::NotFound);
        }
        let dir = self.root.child(kind.as_str());
        let metas: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(store_err)?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let name = m.location.filename()?;
                ObjectName::parse(name).ok()?;
                Some((name.to_owned(), m.size))
            })
            .collect())
    }
}

/// The size of one part of a multipart upload, and the most an upload buffers before it
/// starts one: S3's smallest part but the last is 5 MiB
/// (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/qfacts.html>).
pub const UPLOAD_PART_BYTES: usize = 5 << 20;

/// Appended (after a random nonce) to an object's key to name the temporary object a
/// large upload is completed into before it is verified and published. Not an object
/// name, so listings never show it; repository sizes skip it.
const TMP_SUFFIX: &str = ".uploading";

/// An upload in progress. Up to one part it is buffered and published with one
/// conditional `PUT`; beyond that it streams as a multipart upload to a temporary key
/// (at most one part being filled and two in flight), which `publish` copies to the
/// object's key with a conditional create and then deletes. A multipart upload is
/// invisible until completed, and it is completed only after the hash was verified, so
/// nothing half or wrong is ever visible under the object's name.
pub(crate) struct S3Upload {
    store: Arc<dyn ObjectStore>,
    key: Path,
    chunks: Vec<Bytes>,
    buffered: usize,
    multipart: Option<(Path, WriteMultipart)>,
}

impl S3Upload {
    pub(crate) async fn write(&mut self, chunk: Bytes) -> Result<()> {
        if let Some((_, w)) = &mut self.multipart {
            // Waits while two parts are in flight: receiving the next part overlaps
            // sending the last one, and memory stays within three parts.
            w.wait_for_capacity(2).await.map_err(store_err)?;
            w.put(chunk);
            return Ok(());
        }
        self.buffered += chunk.len();
        self.chunks.push(chunk);
        if self.buffered > UPLOAD_PART_BYTES {
            let nonce = format!("{:032x}", rand::random::<u128>());
            let tmp = Path::from(format!("{}.{nonce}{TMP_SUFFIX}", self.key));
            let upload = self.store.put_multipart(&tmp).await.map_err(store_err)?;
            let mut w = WriteMultipart::new_with_chunk_size(upload, UPLOAD_PART_BYTES);
            for c in std::mem::take(&mut self.chunks) {
                w.put(c);
            }
            self.buffered = 0;
            self.multipart = Some((tmp, w));
        }
        Ok(())
    }

    /// Gives up the upload: a multipart upload in progress is aborted, so S3 drops its
    /// parts.
    pub(crate) async fn abort(&mut self) {
        self.chunks.clear();
        if let Some((_, w)) = self.multipart.take() {
            let _ = w.abort().await;
        }
    }

    pub(crate) async fn publish(&mut self) -> Result<()> {
        let Some((tmp, w)) = self.multipart.take() else {
            let payload: PutPayload = std::mem::take(&mut self.chunks).into_iter().collect();
            let opts = PutOptions {
                mode: PutMode::Create,
                ..PutOptions::default()
            };
            self.store
                .put_opts(&self.key, payload, opts)
                .await
                .map_err(store_err)?;
            return Ok(());
        };
        w.finish().await.map_err(store_err)?;
        // A conditional create: with `S3CopyIfNotExists::Multipart` a server-side
        // `UploadPartCopy` completed with `If-None-Match: *`
        // (<https://docs.aws.amazon.com/AmazonS3/latest/userguide/conditional-writes.html>).
        let copied = self
            .store
            .copy_if_not_exists(&tmp, &self.key)
            .await
            .map_err(store_err);
        // A temporary object left by a failed delete (or a crash) is not an object name
        // and is not counted; it goes with the repository.
        let _ = self.store.delete(&tmp).await;
        copied
    }
}

impl Drop for S3Upload {
    /// An upload dropped mid-body (the client went away) aborts its multipart upload.
    fn drop(&mut self) {
        if let Some((_, w)) = self.multipart.take() {
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(async move {
                    let _ = w.abort().await;
                });
            }
        }
    }
}

/// What [`S3Repo::claimed`] does with a key once it holds the claim.
enum ClaimedAction {
    Delete,
    /// Copy to this key unless it exists (conditional create), then delete.
    CopyTo(Path),
}

// Deletion protection (see `crate::trash`): the trash is `<repo>/trash/<kind>/`; moving
// an object in or out is a conditional copy and a delete under the object's claim.
impl S3Repo {
    fn trash_key(&self, kind: Kind, file: &str) -> Path {
        self.root
            .child(crate::trash::TRASH_DIR)
            .child(kind.as_str())
            .child(file)
    }

    pub(crate) async fn move_to_trash(&self, obj: &Object, kind: Kind, file: &str) -> Result<u64> {
        let to = self.trash_key(kind, file);
        let (size, _) = self
            .claimed(&self.key(obj), ClaimedAction::CopyTo(to))
            .await?;
        Ok(size)
    }

    pub(crate) async fn list_trash(&self) -> Result<Vec<crate::TrashEntry>> {
        let dir = self.root.child(crate::trash::TRASH_DIR);
        let metas: Vec<_> = self
            .store
            .list(Some(&dir))
            .try_collect()
            .await
            .map_err(store_err)?;
        Ok(metas
            .into_iter()
            .filter_map(|m| {
                let mut parts = m.location.as_ref().rsplit('/');
                let file = parts.next()?;
                let kind = Kind::parse(parts.next()?)?;
                crate::TrashEntry::parse(kind, file, m.size)
            })
            .collect())
    }

    pub(crate) async fn restore(&self, entry: &crate::TrashEntry) -> Result<crate::trash::Restore> {
        let from = self.trash_key(entry.kind, &entry.file);
        let to = self.key(&entry.object());
        let (size, was_back) = self.claimed(&from, ClaimedAction::CopyTo(to)).await?;
        Ok(if was_back {
            crate::trash::Restore::Dropped(size)
        } else {
            crate::trash::Restore::Restored(size)
        })
    }

    pub(crate) async fn remove_trash(&self, entry: &crate::TrashEntry) -> Result<u64> {
        let key = self.trash_key(entry.kind, &entry.file);
        let (size, _) = self.claimed(&key, ClaimedAction::Delete).await?;
        Ok(size)
    }
}

impl S3Vault {
    /// `(tenant, account)` of every repository: two delimited listings, then each
    /// account's trash is listed by the purge (an empty one costs one request).
    pub(crate) async fn repos_with_trash(&self) -> Result<Vec<(String, String)>> {
        let mut out = Vec::new();
        let tenants = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(store_err)?;
        for tenant in tenants.common_prefixes {
            let Some(t) = tenant.filename().map(str::to_owned) else {
                continue;
            };
            let accounts = self
                .store
                .list_with_delimiter(Some(&tenant))
                .await
                .map_err(store_err)?;
            for account in accounts.common_prefixes {
                if let Some(a) = account.filename() {
                    out.push((t.clone(), a.to_owned()));
                }
            }
        }
        Ok(out)
    }
}
