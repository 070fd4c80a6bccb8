//! Content-addressed objects: `<root>/<aa>/<bbbb…>`, named by BLAKE3.

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use kiln_core::{ContentHash, EnvVars, Progress};
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{
    ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig, WriteMultipart,
};
use tokio::io::AsyncReadExt;

use crate::{ObjectsUrl, Result, StoreError};

/// Bytes hashed or copied between two progress updates.
const CHUNK: usize = 16 << 20;

/// The object store: a local folder or an S3 bucket, read through `object_store`.
#[derive(Clone)]
pub struct Objects {
    url: ObjectsUrl,
    store: Arc<dyn ObjectStore>,
    backend: Backend,
}

#[derive(Clone)]
enum Backend {
    /// Writes go to `root/tmp` and are renamed into place, which is atomic and
    /// lets hashing and copying run side by side (see `put_file`).
    Folder {
        root: PathBuf,
    },
    S3 {
        prefix: String,
    },
}

/// A file copied into the staging area but not yet an object; dropped
/// without [`Objects::commit`], the copy is removed.
pub struct Staged {
    kind: StagedKind,
    hash: ContentHash,
}

enum StagedKind {
    /// The object already exists.
    Present,
    /// A copy in the folder store's `tmp/`.
    Local { tmp: PathBuf },
    /// S3: nothing is copied until commit.
    Remote { path: PathBuf },
}

impl Drop for Staged {
    fn drop(&mut self) {
        if let StagedKind::Local { tmp } = &self.kind {
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// An exclusive hold on a local object folder; dropped, it releases.
pub struct ObjectLock {
    _file: Option<File>,
}

impl Objects {
    /// Opens an object store; for S3, the endpoint comes from
    /// `KILN_S3_ENDPOINT` or `AWS_ENDPOINT_URL` and credentials from `AWS_*`.
    pub fn open(url: &ObjectsUrl) -> Result<Self> {
        let endpoint = std::env::var(EnvVars::KILN_S3_ENDPOINT)
            .or_else(|_| std::env::var("AWS_ENDPOINT_URL"))
            .ok();
        Self::open_with_endpoint(url, endpoint.as_deref())
    }

    /// As [`Objects::open`], with the S3 endpoint given.
    pub fn open_with_endpoint(url: &ObjectsUrl, endpoint: Option<&str>) -> Result<Self> {
        match url {
            ObjectsUrl::Folder(root) => {
                for dir in [root.clone(), root.join("tmp")] {
                    std::fs::create_dir_all(&dir)
                        .map_err(StoreError::io("create the object folder", &dir))?;
                }
                let root = std::fs::canonicalize(root)
                    .map_err(StoreError::io("open the object folder", root))?;
                let store = LocalFileSystem::new_with_prefix(&root).map_err(|source| {
                    StoreError::Object {
                        context: "opening",
                        key: root.display().to_string(),
                        source,
                    }
                })?;
                Ok(Self {
                    url: url.clone(),
                    store: Arc::new(store),
                    backend: Backend::Folder { root },
                })
            }
            ObjectsUrl::S3 { bucket, prefix } => {
                let mut builder = AmazonS3Builder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(RetryConfig {
                        max_retries: 3,
                        retry_timeout: Duration::from_secs(30),
                        ..RetryConfig::default()
                    })
                    .with_client_options(
                        ClientOptions::new()
                            .with_connect_timeout(Duration::from_secs(5))
                            .with_timeout(Duration::from_secs(300)),
                    );
                if let Some(e) = endpoint {
                    builder = builder
                        .with_allow_http(e.starts_with("http://"))
                        .with_endpoint(e);
                }
                if std::env::var("AWS_REGION").is_err()
                    && std::env::var("AWS_DEFAULT_REGION").is_err()
                {
                    builder = builder.with_region("us-east-1");
                }
                let store = builder.build().map_err(|source| StoreError::Object {
                    context: "configuring S3 for",
                    key: url.to_string(),
                    source,
                })?;
                Ok(Self {
                    url: url.clone(),
                    store: Arc::new(store),
                    backend: Backend::S3 {
                        prefix: prefix.clone(),
                    },
                })
            }
        }
    }

    pub fn url(&self) -> &ObjectsUrl {
        &self.url
    }

    fn key(&self, h: &ContentHash) -> ObjectPath {
        let hex = h.to_hex();
        match &self.backend {
            Backend::Folder { .. } => ObjectPath::from(format!("{}/{}", &hex[..2], &hex[2..])),
            Backend::S3 { prefix } if prefix.is_empty() => {
                ObjectPath::from(format!("{}/{}", &hex[..2], &hex[2..]))
            }
            Backend::S3 { prefix } => {
                ObjectPath::from(format!("{prefix}/{}/{}", &hex[..2], &hex[2..]))
            }
        }
    }

    /// Where to stage large temporary files: the folder store's `tmp/`
    /// (cleaned after a killed writer), else the system's temp directory.
    pub fn scratch_dir(&self) -> PathBuf {
        match &self.backend {
            Backend::Folder { root } => root.join("tmp"),
            Backend::S3 { .. } => std::env::temp_dir(),
        }
    }

    /// The file holding an object, when the store is a local folder.
    pub fn local_path(&self, h: &ContentHash) -> Option<PathBuf> {
        match &self.backend {
            Backend::Folder { root } => {
                let hex = h.to_hex();
                Some(root.join(&hex[..2]).join(&hex[2..]))
            }
            Backend::S3 { .. } => None,
        }
    }

    /// Takes the folder's write lock, waiting for other writers, and removes
    /// what killed writers left in `tmp/`. A no-op on S3, where uploads only
    /// become visible when complete.
    pub fn lock(&self) -> Result<ObjectLock> {
        let Backend::Folder { root } = &self.backend else {
            return Ok(ObjectLock { _file: None });
        };
        let path = root.join("LOCK");
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .map_err(StoreError::io("open", &path))?;
        if file.try_lock().is_err() {
            tracing::warn!(
                "waiting for another kiln process to finish writing to {}",
                root.display()
            );
            file.lock().map_err(StoreError::io("lock", &path))?;
        }
        clean_tmp(&root.join("tmp"))?;
        Ok(ObjectLock { _file: Some(file) })
    }

    /// Removes leftovers of killed writers if no writer is active; for
    /// commands that only read.
    pub fn tidy(&self) {
        let Backend::Folder { root } = &self.backend else {
            return;
        };
        let path = root.join("LOCK");
        if let Ok(file) = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            && file.try_lock().is_ok()
        {
            let _ = clean_tmp(&root.join("tmp"));
        }
    }

    /// Every object in the store: its hash, size and last write time.
    pub async fn list(&self) -> Result<Vec<(ContentHash, u64, chrono::DateTime<chrono::Utc>)>> {
        let prefix = match &self.backend {
            Backend::S3 { prefix } if !prefix.is_empty() => Some(ObjectPath::from(prefix.as_str())),
            _ => None,
        };
        let mut out = Vec::new();
        let mut stream = self.store.list(prefix.as_ref());
        while let Some(item) = stream.next().await {
            let meta = item.map_err(|source| StoreError::Object {
                context: "listing",
                key: self.url.to_string(),
                source,
            })?;
            // `<aa>/<62 hex>`: anything else (tmp/, LOCK) is not an object.
            let parts: Vec<&str> = meta.location.as_ref().rsplitn(3, '/').collect();
            if parts.len() < 2 || parts[1].len() != 2 || parts[0].len() != 62 {
                continue;
            }
            if let Ok(h) = ContentHash::parse(&format!("{}{}", parts[1], parts[0])) {
                out.push((h, meta.size, meta.last_modified));
            }
        }
        Ok(out)
    }

    /// Removes an object (a missing one is not an error).
    pub async fn delete(&self, h: &ContentHash) -> Result<()> {
        let key = self.key(h);
        match self.store.delete(&key).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Object {
                context: "deleting",
                key: key.to_string(),
                source,
            }),
        }
    }

    pub async fn exists(&self, h: &ContentHash) -> Result<bool> {
        let key = self.key(h);
        match self.store.head(&key).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(source) => Err(StoreError::Object {
                context: "looking up",
                key: key.to_string(),
                source,
            }),
        }
    }

    /// Stores a file, streaming, and returns its hash, size and whether it
    /// was new. The file is read at most twice and never held in memory.
    pub async fn put_file(
        &self,
        path: &Path,
        progress: &dyn Progress,
    ) -> Result<(ContentHash, u64, bool)> {
        match &self.backend {
            Backend::Folder { .. } => self.put_local(path, progress),
            Backend::S3 { .. } => {
                let (hash, size) = hash_file(path, progress)?;
                if self.exists(&hash).await? {
                    return Ok((hash, size, false));
                }
                self.upload(path, &hash, size, progress).await?;
                Ok((hash, size, true))
            }
        }
    }

    /// Stores a file whose hash is already known (files of a folder): skips
    /// it if the object exists, verifies the hash otherwise. Returns whether
    /// it was new.
    pub async fn put_file_hashed(&self, path: &Path, expected: &ContentHash) -> Result<bool> {
        if let Backend::Folder { .. } = &self.backend {
            if self.local_path(expected).expect("folder").exists() {
                return Ok(false);
            }
            let this = self.clone();
            let (path, expected) = (path.to_path_buf(), *expected);
            return tokio::task::spawn_blocking(move || {
                let (hash, _, new) = this.put_local(&path, &kiln_core::NoProgress)?;
                if hash != expected {
                    return Err(changed(&path));
                }
                Ok(new)
            })
            .await
            .expect("object write panicked");
        }
        if self.exists(expected).await? {
            return Ok(false);
        }
        let size = std::fs::metadata(path)
            .map_err(StoreError::io("read", path))?
            .len();
        self.upload(path, expected, size, &kiln_core::NoProgress)
            .await?;
        Ok(true)
    }

    /// Copies a file into a folder store. Small files are read once (hash,
    /// then write only if new); large ones are hashed and copied side by
    /// side, the copy landing in `tmp/` under a random name and renamed once
    /// the hash is known.
    fn put_local(&self, path: &Path, progress: &dyn Progress) -> Result<(ContentHash, u64, bool)> {
        let Backend::Folder { root } = &self.backend else {
            unreachable!("folder only")
        };
        let before = file_stamp(path)?;
        let tmp = root.join("tmp").join(uuid::Uuid::now_v7().to_string());
        let staged = if before.0 < CHUNK as u64 {
            progress.start("storing", Some(before.0));
            let bytes = std::fs::read(path).map_err(StoreError::io("read", path))?;
            let hash = ContentHash::of(&bytes);
            progress.advance(bytes.len() as u64);
            progress.finish();
            if self.local_path(&hash).expect("folder").exists() {
                return Ok((hash, bytes.len() as u64, false));
            }
            std::fs::write(&tmp, &bytes)
                .map(|()| (hash, bytes.len() as u64))
                .map_err(|e| StoreError::Io {
                    action: "write",
                    path: tmp.clone(),
                    source: e,
                })
        } else {
            std::thread::scope(|s| {
                let copier = s.spawn(|| std::fs::copy(path, &tmp));
                let hashed = hash_file(path, progress);
                let copied = copier.join().expect("copy thread panicked");
                copied.map_err(|e| StoreError::Io {
                    action: "copy into the object store",
                    path: path.into(),
                    source: e,
                })?;
                hashed
            })
        };
        let staged = staged.and_then(|(hash, size)| {
            if file_stamp(path)? != before {
                Err(changed(path))
            } else {
                Ok((hash, size))
            }
        });
        match staged {
            Ok((hash, size)) => Ok((hash, size, self.publish_tmp(&tmp, &hash)?)),
            Err(e) => {
                let _ = std::fs::remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Copies a file whose hash is known into the store's staging area
    /// without publishing it, so that the copy can run beside other work and
    /// be dropped if that work decides against it. Blocking; see [`Staged`].
    pub fn stage_file(&self, path: &Path, hash: &ContentHash) -> Result<Staged> {
        match &self.backend {
            Backend::Folder { root } => {
                if self.local_path(hash).expect("folder").exists() {
                    return Ok(Staged {
                        kind: StagedKind::Present,
                        hash: *hash,
                    });
                }
                let before = file_stamp(path)?;
                let tmp = root.join("tmp").join(uuid::Uuid::now_v7().to_string());
                let staged = Staged {
                    kind: StagedKind::Local { tmp: tmp.clone() },
                    hash: *hash,
                };
                std::fs::copy(path, &tmp).map_err(|e| StoreError::Io {
                    action: "copy into the object store",
                    path: path.into(),
                    source: e,
                })?;
                if file_stamp(path)? != before {
                    return Err(changed(path));
                }
                Ok(staged)
            }
            Backend::S3 { .. } => Ok(Staged {
                kind: StagedKind::Remote { path: path.into() },
                hash: *hash,
            }),
        }
    }

    /// Publishes a staged file: renames it into place, or uploads it to S3
    /// (verifying its hash on the way). Returns whether the object was new.
    pub async fn commit(&self, mut staged: Staged, progress: &dyn Progress) -> Result<bool> {
        match std::mem::replace(&mut staged.kind, StagedKind::Present) {
            StagedKind::Present => Ok(false),
            StagedKind::Local { tmp } => self.publish_tmp(&tmp, &staged.hash),
            StagedKind::Remote { path } => {
                if self.exists(&staged.hash).await? {
                    return Ok(false);
                }
                let size = std::fs::metadata(&path)
                    .map_err(StoreError::io("read", &path))?
                    .len();
                self.upload(&path, &staged.hash, size, progress).await?;
                Ok(true)
            }
        }
    }

    /// Renames a finished temp file to its object path; false if it existed.
    fn publish_tmp(&self, tmp: &Path, hash: &ContentHash) -> Result<bool> {
        let dest = self.local_path(hash).expect("folder backend");
        if dest.exists() {
            std::fs::remove_file(tmp).map_err(StoreError::io("remove", tmp))?;
            return Ok(false);
        }
        let dir = dest.parent().expect("object paths have a parent");
        std::fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
        std::fs::rename(tmp, &dest)
            .map_err(StoreError::io("rename into the object store", &dest))?;
        Ok(true)
    }

    async fn upload(
        &self,
        path: &Path,
        hash: &ContentHash,
        size: u64,
        progress: &dyn Progress,
    ) -> Result<()> {
        let key = self.key(hash);
        let object_err = |context: &'static str| {
            let key = key.to_string();
            move |source| StoreError::Object {
                context,
                key,
                source,
            }
        };
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(StoreError::io("open", path))?;
        progress.start("uploading", Some(size));
        if size < CHUNK as u64 {
            let bytes = tokio::fs::read(path)
                .await
                .map_err(StoreError::io("read", path))?;
            if ContentHash::of(&bytes) != *hash {
                return Err(changed(path));
            }
            self.store
                .put(&key, PutPayload::from(bytes))
                .await
                .map_err(object_err("uploading"))?;
            progress.advance(size);
            progress.finish();
            return Ok(());
        }
        let upload = self
            .store
            .put_multipart(&key)
            .await
            .map_err(object_err("starting an upload of"))?;
        let mut writer = WriteMultipart::new_with_chunk_size(upload, CHUNK);
        let mut hasher = blake3::Hasher::new();
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = match file.read(&mut buf).await {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) => {
                    let _ = writer.abort().await;
                    return Err(StoreError::Io {
                        action: "read",
                        path: path.into(),
                        source: e,
                    });
                }
            };
            hasher.update(&buf[..n]);
            if let Err(e) = writer.wait_for_capacity(4).await {
                return Err(object_err("uploading")(e));
            }
            writer.write(&buf[..n]);
            progress.advance(n as u64);
        }
        // The upload only becomes visible on completion, so a changed file
        // aborts here and nothing under the wrong name is ever seen.
        if ContentHash::from_blake3(hasher.finalize()) != *hash {
            let _ = writer.abort().await;
            return Err(changed(path));
        }
        writer
            .finish()
            .await
            .map_err(object_err("completing the upload of"))?;
        progress.finish();
        Ok(())
    }

    /// Stores bytes held in memory (manifests, small files).
    pub async fn put_bytes(&self, bytes: Vec<u8>) -> Result<ContentHash> {
        let hash = ContentHash::of(&bytes);
        match &self.backend {
            Backend::Folder { root } => {
                let path = self.local_path(&hash).expect("folder");
                if path.exists() {
                    // Refresh its time, so `kiln gc` (which spares young
                    // objects) cannot take it before this writer records it.
                    touch(&path);
                    return Ok(hash);
                }
                let tmp = root.join("tmp").join(uuid::Uuid::now_v7().to_string());
                let mut f = File::create(&tmp).map_err(StoreError::io("create", &tmp))?;
                f.write_all(&bytes).map_err(|e| {
                    let _ = std::fs::remove_file(&tmp);
                    StoreError::Io {
                        action: "write",
                        path: tmp.clone(),
                        source: e,
                    }
                })?;
                drop(f);
                self.publish_tmp(&tmp, &hash)?;
            }
            Backend::S3 { .. } => {
                if !self.exists(&hash).await? {
                    let key = self.key(&hash);
                    self.store
                        .put(&key, PutPayload::from(bytes))
                        .await
                        .map_err(|source| StoreError::Object {
                            context: "uploading",
                            key: key.to_string(),
                            source,
                        })?;
                }
            }
        }
        Ok(hash)
    }

    /// Reads a whole object into memory, verifying its hash.
    pub async fn get_bytes(&self, hash: &ContentHash) -> Result<Vec<u8>> {
        let key = self.key(hash);
        let bytes = match self.store.get(&key).await {
            Ok(r) => r.bytes().await,
            Err(e) => Err(e),
        }
        .map_err(|source| missing_or(source, hash, &key))?;
        let actual = ContentHash::of(&bytes);
        if actual != *hash {
            return Err(StoreError::CorruptObject {
                expected: hash.to_hex(),
                actual: actual.to_hex(),
            });
        }
        Ok(bytes.to_vec())
    }

    /// Streams an object to `dest`, verifying its hash; `dest` appears
    /// only when complete and correct.
    pub async fn get_to_file(
        &self,
        hash: &ContentHash,
        dest: &Path,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let key = self.key(hash);
        let result = self
            .store
            .get(&key)
            .await
            .map_err(|source| missing_or(source, hash, &key))?;
        let dir = dest
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::Builder::new()
            .prefix(".kiln-get-")
            .tempfile_in(dir)
            .map_err(StoreError::io("create a temporary file in", dir))?;
        progress.start("restoring", Some(result.meta.size));
        let mut hasher = blake3::Hasher::new();
        let mut stream = result.into_stream();
        let mut written = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|source| StoreError::Object {
                context: "downloading",
                key: key.to_string(),
                source,
            })?;
            hasher.update(&chunk);
            tmp.write_all(&chunk)
                .map_err(StoreError::io("write", dest))?;
            written += chunk.len() as u64;
            progress.advance(chunk.len() as u64);
        }
        let actual = ContentHash::from_blake3(hasher.finalize());
        if actual != *hash {
            return Err(StoreError::CorruptObject {
                expected: hash.to_hex(),
                actual: actual.to_hex(),
            });
        }
        tmp.as_file()
            .sync_all()
            .map_err(StoreError::io("flush", dest))?;
        tmp.persist(dest).map_err(|e| StoreError::Io {
            action: "write",
            path: dest.into(),
            source: e.error,
        })?;
        progress.finish();
        Ok(written)
    }

    /// A local file with the object's content: the object itself for a
    /// folder store, else a downloaded temporary copy (kept alive by the guard).
    pub async fn fetch_local(
        &self,
        hash: &ContentHash,
    ) -> Result<(PathBuf, Option<tempfile::TempPath>)> {
        if let Some(p) = self.local_path(hash) {
            if p.exists() {
                return Ok((p, None));
            }
            return Err(StoreError::MissingObject(hash.to_hex()));
        }
        let tmp = tempfile::NamedTempFile::new().map_err(StoreError::io(
            "create a temporary file in",
            std::env::temp_dir(),
        ))?;
        let path = tmp.into_temp_path();
        self.get_to_file(hash, &path, &kiln_core::NoProgress)
            .await?;
        Ok((path.to_path_buf(), Some(path)))
    }
}

fn missing_or(source: object_store::Error, hash: &ContentHash, key: &ObjectPath) -> StoreError {
    match source {
        object_store::Error::NotFound { .. } => StoreError::MissingObject(hash.to_hex()),
        source => StoreError::Object {
            context: "reading",
            key: key.to_string(),
            source,
        },
    }
}

fn changed(path: &Path) -> StoreError {
    StoreError::Io {
        action: "read (it changed while being added)",
        path: path.into(),
        source: std::io::Error::other("file modified during read"),
    }
}

fn file_stamp(path: &Path) -> Result<(u64, Option<std::time::SystemTime>)> {
    let m = std::fs::metadata(path).map_err(StoreError::io("read", path))?;
    Ok((m.len(), m.modified().ok()))
}

/// Sets a file's modification time to now (best effort).
fn touch(path: &Path) {
    if let Ok(f) = File::options().append(true).open(path) {
        let _ = f.set_modified(std::time::SystemTime::now());
    }
}

fn clean_tmp(dir: &Path) -> Result<()> {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => {
            return Err(StoreError::Io {
                action: "list",
                path: dir.into(),
                source: e,
            });
        }
    };
    for entry in entries.flatten() {
        tracing::debug!(path = %entry.path().display(), "removing a leftover temporary object");
        let _ = std::fs::remove_file(entry.path());
    }
    Ok(())
}

/// Hashes a file with BLAKE3 on all cores, reading 16 MiB at a time on one
/// thread while the previous chunk is hashed on the others. Memory stays
/// flat (two chunks), unlike a memory map, whose pages count against the
/// process.
pub fn hash_file(path: &Path, progress: &dyn Progress) -> Result<(ContentHash, u64)> {
    use std::io::Read;
    let mut file = File::open(path).map_err(StoreError::io("open", path))?;
    let len = file.metadata().map_err(StoreError::io("read", path))?.len();
    progress.start("hashing", Some(len));
    let mut hasher = blake3::Hasher::new();
    if len < CHUNK as u64 {
        // Small files (most files of a folder): one read, no chunk buffers.
        let mut bytes = Vec::with_capacity(len as usize);
        file.read_to_end(&mut bytes)
            .map_err(StoreError::io("read", path))?;
        hasher.update(&bytes);
        progress.advance(bytes.len() as u64);
        progress.finish();
        return Ok((
            ContentHash::from_blake3(hasher.finalize()),
            bytes.len() as u64,
        ));
    }
    let fill = |f: &mut File, buf: &mut Vec<u8>| -> std::io::Result<usize> {
        buf.resize(CHUNK, 0);
        let mut n = 0;
        while n < CHUNK {
            match f.read(&mut buf[n..])? {
                0 => break,
                k => n += k,
            }
        }
        buf.truncate(n);
        Ok(n)
    };
    let mut current = Vec::with_capacity(CHUNK);
    let mut next = Vec::with_capacity(CHUNK);
    let mut total = 0u64;
    fill(&mut file, &mut current).map_err(StoreError::io("read", path))?;
    while !current.is_empty() {
        let (read, ()) = rayon::join(
            || fill(&mut file, &mut next),
            || {
                hasher.update_rayon(&current);
            },
        );
        read.map_err(StoreError::io("read", path))?;
        total += current.len() as u64;
        progress.advance(current.len() as u64);
        std::mem::swap(&mut current, &mut next);
    }
    progress.finish();
    Ok((ContentHash::from_blake3(hasher.finalize()), total))
}
