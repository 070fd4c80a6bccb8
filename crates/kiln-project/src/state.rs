//! Machine-local state: a cache of file hashes keyed by what `stat` says, as
//! git's index and DVC's state database keep, so that adding a file or folder
//! that has not changed costs a `stat`, not a read.
//!
//! It lives in `.kiln/state/hashes.json` of the project on this machine and
//! is never shared: paths and inode numbers mean nothing elsewhere. An entry
//! is used only if size, modification time, change time and inode all match.
//! Only writers (which hold the object lock) save it, atomically.

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use kiln_core::ContentHash;
use serde::{Deserialize, Serialize};

/// Entries kept at most; the oldest go first.
const MAX_ENTRIES: usize = 200_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Stamp {
    size: u64,
    mtime_ns: i128,
    ctime_ns: i128,
    ino: u64,
}

impl Stamp {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            size: m.size(),
            mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
            ctime_ns: i128::from(m.ctime()) * 1_000_000_000 + i128::from(m.ctime_nsec()),
            ino: m.ino(),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
struct Stored {
    entries: HashMap<PathBuf, (Stamp, ContentHash, u64)>,
    clock: u64,
}

/// The hash cache of one project on this machine (empty and unsaved when
/// there is no project folder).
pub struct HashCache {
    file: Option<PathBuf>,
    stored: Stored,
    dirty: bool,
}

impl HashCache {
    /// Loads the cache of the project at `root`; a missing or unreadable
    /// cache is an empty one (it is only ever a shortcut).
    pub fn load(root: Option<&Path>) -> Self {
        let file = root.map(|r| {
            r.join(crate::project::STATE_DIR)
                .join("state")
                .join("hashes.json")
        });
        let stored = file
            .as_ref()
            .and_then(|f| std::fs::read(f).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        Self {
            file,
            stored,
            dirty: false,
        }
    }

    /// The hash of `path` if its `stat` matches what was seen when it was hashed.
    pub fn get(&self, path: &Path, meta: &std::fs::Metadata) -> Option<ContentHash> {
        let key = std::path::absolute(path).ok()?;
        match self.stored.entries.get(&key) {
            Some((stamp, hash, _)) if *stamp == Stamp::of(meta) => Some(*hash),
            _ => None,
        }
    }

    /// Remembers the hash of `path` as of `meta` (taken before it was hashed).
    pub fn put(&mut self, path: &Path, meta: &std::fs::Metadata, hash: ContentHash) {
        if self.file.is_none() {
            return;
        }
        let Ok(key) = std::path::absolute(path) else {
            return;
        };
        self.stored.clock += 1;
        self.stored
            .entries
            .insert(key, (Stamp::of(meta), hash, self.stored.clock));
        self.dirty = true;
    }

    /// Writes the cache if it changed: temp file, then rename. Failures are
    /// ignored, since the cache is only a shortcut.
    pub fn save(&mut self) {
        let Some(file) = &self.file else { return };
        if !self.dirty {
            return;
        }
        if self.stored.entries.len() > MAX_ENTRIES {
            let mut ages: Vec<u64> = self.stored.entries.values().map(|e| e.2).collect();
            ages.sort_unstable();
            let cutoff = ages[ages.len() - MAX_ENTRIES];
            self.stored.entries.retain(|_, e| e.2 >= cutoff);
        }
        let Some(dir) = file.parent() else { return };
        if std::fs::create_dir_all(dir).is_err() {
            return;
        }
        // A temporary file of its own, so two savers (pipeline steps hashing
        // in parallel) never write into one; the last rename wins whole.
        let Ok(mut tmp) = tempfile::NamedTempFile::new_in(dir) else {
            return;
        };
        if serde_json::to_vec(&self.stored)
            .is_ok_and(|b| std::io::Write::write_all(&mut tmp, &b).is_ok())
        {
            let _ = tmp.persist(file);
        }
        self.dirty = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cached_hash_is_used_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join(".kiln")).unwrap();
        let f = dir.path().join("a.txt");
        std::fs::write(&f, "one").unwrap();
        let meta = std::fs::metadata(&f).unwrap();
        let mut cache = HashCache::load(Some(dir.path()));
        cache.put(&f, &meta, ContentHash::of(b"one"));
        cache.save();
        let cache = HashCache::load(Some(dir.path()));
        assert_eq!(
            cache.get(&f, &std::fs::metadata(&f).unwrap()),
            Some(ContentHash::of(b"one"))
        );
        std::fs::write(&f, "two").unwrap();
        assert_eq!(cache.get(&f, &std::fs::metadata(&f).unwrap()), None);
    }
}
