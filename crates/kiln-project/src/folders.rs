//! Folders of files as dataset versions.
//!
//! A folder version is a manifest: every file's path, size and BLAKE3. Its id
//! is the BLAKE3 of that listing alone, so it names the content, not where
//! the content is stored. Files over 1 MiB are objects of their own. Smaller
//! files are packed: the small files a version adds (those not already in its
//! parent version) go into one pack object, and the manifest records each
//! file's pack and offset. A folder of 10,000 small files is then one object
//! write, not 10,000, and a version that changes one file packs one file.

use std::collections::HashMap;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use futures::StreamExt;
use kiln_core::{ContentHash, Progress};
use kiln_data::schema::TableSchema;
use kiln_store::{StoreError, VersionRecord, VersionSpec};
use serde::{Deserialize, Serialize};

use crate::datasets::{AddOptions, AddOutcome, changed};
use crate::{Project, ProjectError, Result};

/// Files up to this size are packed.
pub const PACK_MAX_FILE: u64 = 1 << 20;
/// Small files' bytes kept in memory between hashing and packing, at most;
/// past it they are read again.
const KEEP_BUDGET: u64 = 256 << 20;

/// One file of a folder version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct ManifestEntry {
    pub path: String,
    pub size: u64,
    pub hash: ContentHash,
    /// The pack holding the file, for small files; large files are the object `hash`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack: Option<ContentHash>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// The stored description of a folder version.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct Manifest {
    pub files: Vec<ManifestEntry>,
}

impl Manifest {
    /// The version id: BLAKE3 over each file's path, size and hash, in path
    /// order; where files are stored does not enter it.
    pub fn content_id(&self) -> ContentHash {
        let mut h = blake3::Hasher::new();
        h.update(b"kiln folder v1\0");
        for f in &self.files {
            h.update(f.path.as_bytes());
            h.update(b"\0");
            h.update(&f.size.to_le_bytes());
            h.update(f.hash.as_bytes());
        }
        ContentHash::from_blake3(h.finalize())
    }
}

impl Project {
    pub(crate) async fn add_folder(
        &self,
        name: &str,
        dir: &Path,
        opts: &AddOptions,
        progress: &dyn Progress,
    ) -> Result<AddOutcome> {
        let files = tokio::task::block_in_place(|| list_files(dir))?;
        progress.start_items("hashing files", Some(files.len() as u64));
        let kept = AtomicU64::new(0);
        // Files whose `stat` is unchanged since they were last hashed are not read.
        let mut cache = crate::state::HashCache::load(self.root.as_deref());
        let fresh = std::sync::Mutex::new(Vec::new());
        let hashed: Vec<Result<(ManifestEntry, Option<Vec<u8>>)>> =
            tokio::task::block_in_place(|| {
                use rayon::prelude::*;
                files
                    .par_iter()
                    .map(|rel| {
                        let path = dir.join(rel);
                        let meta =
                            std::fs::metadata(&path).map_err(ProjectError::io("read", &path))?;
                        let size = meta.len();
                        let entry = |size, hash| ManifestEntry {
                            path: rel.clone(),
                            size,
                            hash,
                            pack: None,
                            offset: None,
                        };
                        if let Some(hash) = cache.get(&path, &meta) {
                            progress.advance(1);
                            return Ok((entry(size, hash), None));
                        }
                        let (hash, size, bytes) = if size <= PACK_MAX_FILE {
                            let bytes =
                                std::fs::read(&path).map_err(ProjectError::io("read", &path))?;
                            let hash = ContentHash::of(&bytes);
                            let n = bytes.len() as u64;
                            let keep = kept.fetch_add(n, Ordering::Relaxed) + n <= KEEP_BUDGET;
                            (hash, n, keep.then_some(bytes))
                        } else {
                            let (hash, size) =
                                kiln_store::hash_file(&path, &kiln_core::NoProgress)?;
                            (hash, size, None)
                        };
                        fresh.lock().expect("not poisoned").push((path, meta, hash));
                        progress.advance(1);
                        Ok((entry(size, hash), bytes))
                    })
                    .collect()
            });
        progress.finish();
        let (mut entries, mut contents): (Vec<ManifestEntry>, Vec<Option<Vec<u8>>>) = hashed
            .into_iter()
            .collect::<Result<Vec<_>>>()?
            .into_iter()
            .unzip();
        for (path, meta, hash) in fresh.into_inner().expect("not poisoned") {
            cache.put(&path, &meta, hash);
        }
        cache.save();
        let id = Manifest {
            files: entries.clone(),
        }
        .content_id();
        if let Some(existing) = self.existing_version(name, &id).await? {
            return Ok(AddOutcome::Unchanged {
                version: Box::new(existing),
            });
        }

        // A folder of table files (partitions) is also read as one table:
        // profiled, checked and given a columnar copy, before anything is stored.
        let tables = partition_files(
            &entries,
            opts.read.format.map(kiln_data::format::Format::name),
        );
        let mut table = None;
        if let Some((format, parts)) = tables {
            let columnar = self.columnar_tmp()?;
            let paths: Vec<std::path::PathBuf> = parts.iter().map(|p| dir.join(p)).collect();
            let ingested = tokio::task::block_in_place(|| {
                kiln_data::ingest::ingest_many(&paths, &opts.read, &columnar, progress)
            })?;
            let report = self.declared_checks(name, &ingested.schema, &columnar)?;
            if let Some(r) = report.as_ref().filter(|r| !r.passed && opts.enforce_checks) {
                return Ok(AddOutcome::Refused { checks: r.clone() });
            }
            table = Some((format, columnar, ingested, report));
        }

        // Where the parent version keeps each content, so unchanged small files are not packed again.
        let mut known: HashMap<ContentHash, (Option<ContentHash>, Option<u64>)> = HashMap::new();
        match self.meta.resolve(name, &VersionSpec::Latest).await {
            Ok(parent) if parent.kind != "table" => {
                for f in self.manifest(&parent).await?.files {
                    known.insert(f.hash, (f.pack, f.offset));
                }
            }
            Ok(_) | Err(StoreError::UnknownDataset { .. } | StoreError::UnknownVersion { .. }) => {}
            Err(e) => return Err(e.into()),
        }

        // Pack the new small files into one object.
        let scratch = self.objects.scratch_dir();
        let mut pack_file = tempfile::Builder::new()
            .prefix("kiln-pack-")
            .tempfile_in(&scratch)
            .map_err(ProjectError::io("create a temporary file in", &scratch))?;
        let mut in_pack: HashMap<ContentHash, u64> = HashMap::new();
        let mut packed = Vec::new();
        let mut pack_len = 0u64;
        for (i, e) in entries.iter_mut().enumerate() {
            if e.size > PACK_MAX_FILE {
                continue;
            }
            if let Some((pack, offset)) = known.get(&e.hash) {
                (e.pack, e.offset) = (*pack, *offset);
                continue;
            }
            if let Some(&offset) = in_pack.get(&e.hash) {
                e.offset = Some(offset);
                packed.push(i);
                continue;
            }
            let bytes = match contents[i].take() {
                Some(b) => b,
                None => {
                    let path = dir.join(&e.path);
                    let b = std::fs::read(&path).map_err(ProjectError::io("read", &path))?;
                    if ContentHash::of(&b) != e.hash {
                        return Err(changed(&path));
                    }
                    b
                }
            };
            pack_file
                .write_all(&bytes)
                .map_err(ProjectError::io("write", pack_file.path()))?;
            in_pack.insert(e.hash, pack_len);
            e.offset = Some(pack_len);
            packed.push(i);
            pack_len += bytes.len() as u64;
        }
        drop(contents);
        if !packed.is_empty() {
            pack_file
                .flush()
                .map_err(ProjectError::io("write", pack_file.path()))?;
            let (pack, _, _) = self
                .objects
                .put_file(pack_file.path(), &kiln_core::NoProgress)
                .await?;
            for i in packed {
                entries[i].pack = Some(pack);
            }
        }
        drop(pack_file);

        // Large files are objects of their own.
        // Owned (path, hash) pairs: a closure over borrowed entries would
        // make this future not `Send` for every lifetime (a pipeline runs
        // it on a spawned task).
        let large: Vec<(PathBuf, kiln_core::ContentHash)> = entries
            .iter()
            .filter(|e| e.size > PACK_MAX_FILE)
            .map(|e| (dir.join(&e.path), e.hash))
            .collect();
        if !large.is_empty() {
            progress.start_items("storing large files", Some(large.len() as u64));
            let mut stream = futures::stream::iter(large.into_iter().map(|(path, expected)| {
                let objects = self.objects.clone();
                async move { objects.put_file_hashed(&path, &expected).await }
            }))
            .buffer_unordered(8);
            while let Some(r) = stream.next().await {
                r?;
                progress.advance(1);
            }
            progress.finish();
        }

        let size: u64 = entries.iter().map(|f| f.size).sum();
        let n = entries.len() as i64;
        let manifest =
            serde_json::to_vec(&Manifest { files: entries }).expect("manifest serializes");
        let stored = self.objects.put_bytes(manifest).await?;
        let source = dir.display().to_string();
        match table {
            None => {
                self.record(
                    name,
                    "files",
                    id,
                    stored,
                    None,
                    size,
                    n,
                    None,
                    TableSchema::default(),
                    None,
                    "files",
                    source,
                    opts,
                    None,
                )
                .await
            }
            Some((format, columnar, ingested, report)) => {
                let (columnar, _, _) = self
                    .objects
                    .put_file(&columnar, &kiln_core::NoProgress)
                    .await?;
                self.record(
                    name,
                    "partitions",
                    id,
                    stored,
                    Some(columnar),
                    size,
                    n,
                    Some(ingested.rows),
                    ingested.schema,
                    Some(&ingested.profile),
                    format,
                    source,
                    opts,
                    report,
                )
                .await
            }
        }
    }

    /// Reads the manifest of a folder version.
    pub async fn manifest(&self, v: &VersionRecord) -> Result<Manifest> {
        let bytes = self.objects.get_bytes(&v.original_object).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            StoreError::Corrupt {
                context: "a folder manifest",
                detail: e.to_string(),
            }
            .into()
        })
    }

    /// Restores a folder version into `out`, all or nothing: files are
    /// written to a sibling temporary folder that is renamed at the end.
    pub(crate) async fn restore_folder(
        &self,
        v: &VersionRecord,
        out: &Path,
        progress: &dyn Progress,
    ) -> Result<u64> {
        let manifest = self.manifest(v).await?;
        let parent = out
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let staging = tempfile::Builder::new()
            .prefix(".kiln-get-")
            .tempdir_in(parent)
            .map_err(ProjectError::io("create a temporary folder in", parent))?;
        progress.start_items("restoring files", Some(manifest.files.len() as u64));
        let mut packs: HashMap<ContentHash, (std::path::PathBuf, Option<tempfile::TempPath>)> =
            HashMap::new();
        let mut total = 0;
        for f in &manifest.files {
            let dest = staging.path().join(&f.path);
            if let Some(d) = dest.parent() {
                std::fs::create_dir_all(d).map_err(ProjectError::io("create", d))?;
            }
            match (f.pack, f.offset) {
                (Some(pack), Some(offset)) => {
                    if let std::collections::hash_map::Entry::Vacant(slot) = packs.entry(pack) {
                        slot.insert(self.objects.fetch_local(&pack).await?);
                    }
                    let path = &packs[&pack].0;
                    let file = std::fs::File::open(path).map_err(ProjectError::io("open", path))?;
                    let mut bytes = vec![0; f.size as usize];
                    file.read_exact_at(&mut bytes, offset)
                        .map_err(ProjectError::io("read", path))?;
                    let actual = ContentHash::of(&bytes);
                    if actual != f.hash {
                        return Err(StoreError::CorruptObject {
                            expected: f.hash.to_hex(),
                            actual: actual.to_hex(),
                        }
                        .into());
                    }
                    std::fs::write(&dest, &bytes).map_err(ProjectError::io("write", &dest))?;
                    total += f.size;
                }
                _ => {
                    total += self
                        .objects
                        .get_to_file(&f.hash, &dest, &kiln_core::NoProgress)
                        .await?
                }
            }
            progress.advance(1);
        }
        progress.finish();
        let staging = staging.keep();
        std::fs::rename(&staging, out).map_err(ProjectError::io("write", out))?;
        Ok(total)
    }
}

/// The files of a folder that make one table, with their common format:
/// every file not hidden (`.x`) or a marker (`_SUCCESS`) must be CSV, TSV,
/// Parquet or JSON lines, all the same. With `--format` every such file counts.
fn partition_files(
    entries: &[ManifestEntry],
    forced: Option<&'static str>,
) -> Option<(&'static str, Vec<String>)> {
    let kind = |path: &str| -> Option<&'static str> {
        let name = path.rsplit('/').next().unwrap_or(path).to_ascii_lowercase();
        let name = name.strip_suffix(".gz").unwrap_or(&name);
        [
            (".csv", "csv"),
            (".tsv", "tsv"),
            (".parquet", "parquet"),
            (".pq", "parquet"),
            (".jsonl", "jsonl"),
            (".ndjson", "jsonl"),
        ]
        .iter()
        .find(|(ext, _)| name.ends_with(ext))
        .map(|(_, k)| *k)
    };
    let visible: Vec<&ManifestEntry> = entries
        .iter()
        .filter(|e| {
            !e.path
                .split('/')
                .any(|part| part.starts_with('.') || part.starts_with('_'))
        })
        .collect();
    let first = visible.first()?;
    let format = match forced {
        Some(f) => f,
        None => kind(&first.path)?,
    };
    if forced.is_none() && visible.iter().any(|e| kind(&e.path) != Some(format)) {
        return None;
    }
    Some((format, visible.iter().map(|e| e.path.clone()).collect()))
}

/// Every regular file under `dir`, as sorted `/`-separated relative paths.
fn list_files(dir: &Path) -> Result<Vec<String>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).map_err(ProjectError::io("list", &d))? {
            let entry = entry.map_err(ProjectError::io("list", &d))?;
            let ft = entry
                .file_type()
                .map_err(ProjectError::io("read", entry.path()))?;
            if ft.is_dir() {
                stack.push(entry.path());
            } else if ft.is_file() {
                let rel = entry
                    .path()
                    .strip_prefix(dir)
                    .expect("under dir")
                    .to_path_buf();
                let rel = rel.to_str().ok_or_else(|| ProjectError::Io {
                    action: "add (its name is not UTF-8)",
                    path: entry.path(),
                    source: std::io::Error::other("non-UTF-8 file name"),
                })?;
                out.push(rel.replace(std::path::MAIN_SEPARATOR, "/"));
            }
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(path: &str, content: &[u8], pack: Option<ContentHash>) -> ManifestEntry {
        ManifestEntry {
            path: path.into(),
            size: content.len() as u64,
            hash: ContentHash::of(content),
            pack,
            offset: pack.map(|_| 0),
        }
    }

    #[test]
    fn the_version_id_ignores_where_files_are_stored() {
        let a = Manifest {
            files: vec![entry("a", b"1", None), entry("b", b"2", None)],
        };
        let packed = Manifest {
            files: vec![
                entry("a", b"1", Some(ContentHash::of(b"p"))),
                entry("b", b"2", None),
            ],
        };
        assert_eq!(a.content_id(), packed.content_id());
        let renamed = Manifest {
            files: vec![entry("a2", b"1", None), entry("b", b"2", None)],
        };
        assert_ne!(a.content_id(), renamed.content_id());
    }
}
