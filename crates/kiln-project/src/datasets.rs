//! Dataset operations: add, resolve, check, diff, restore.

use std::path::Path;

use kiln_core::{ContentHash, Progress};
use kiln_data::check::CheckReport;
use kiln_data::diff::{RowDiff, SchemaChange, StatShift};
use kiln_data::profile::Profile;
use kiln_data::read::ReadOptions;
use kiln_data::schema::TableSchema;
use kiln_store::{VersionRecord, VersionSpec};
use serde::Serialize;

use crate::{Project, ProjectError, Result};

/// How `add` treats a new version.
#[derive(Clone, Debug, Default)]
pub struct AddOptions {
    pub message: Option<String>,
    pub read: ReadOptions,
    /// Skip the profile and the columnar copy (hashing and storing only).
    pub no_profile: bool,
    /// Refuse the version, writing nothing, if a declared check fails.
    pub enforce_checks: bool,
}

/// What `add` did.
#[derive(Debug, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum AddOutcome {
    /// A new version was recorded (with its check report, if checks are declared).
    Created {
        version: Box<VersionRecord>,
        checks: Option<CheckReport>,
    },
    /// The content is already a version of this dataset.
    Unchanged { version: Box<VersionRecord> },
    /// `--check` was given and a check failed: nothing was written.
    Refused { checks: CheckReport },
}

/// The error for a file that changed while kiln was reading it.
pub(crate) fn changed(path: &Path) -> ProjectError {
    ProjectError::Io {
        action: "read (it changed while being added)",
        path: path.to_path_buf(),
        source: std::io::Error::other("file modified during read"),
    }
}

/// Splits `NAME@VERSION` (the version defaults to latest).
pub fn parse_ref(s: &str) -> Result<(String, VersionSpec)> {
    let (name, spec) = s.split_once('@').unwrap_or((s, ""));
    if name.is_empty() {
        return Err(ProjectError::InvalidReference(s.to_string()));
    }
    validate_name(name)?;
    Ok((name.to_string(), VersionSpec::parse(spec)))
}

pub fn validate_name(name: &str) -> Result<()> {
    let ok = name.len() <= 128
        && name
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphanumeric())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ProjectError::InvalidName(name.to_string()))
    }
}

impl Project {
    /// Adds the file or folder at `path` as a version of dataset `name`.
    pub async fn add(
        &self,
        name: &str,
        path: &Path,
        opts: &AddOptions,
        progress: &dyn Progress,
    ) -> Result<AddOutcome> {
        validate_name(name)?;
        let meta = std::fs::metadata(path).map_err(ProjectError::io("read", path))?;
        let _lock = self.objects.lock()?;
        if meta.is_dir() {
            return self.add_folder(name, path, opts, progress).await;
        }
        let stamp = |m: &std::fs::Metadata| (m.len(), m.modified().ok());
        let before = stamp(&meta);
        let mut cache = crate::state::HashCache::load(self.root.as_deref());
        // A file seen before with the same `stat` is not read again.
        if let Some(cached) = cache.get(path, &meta)
            && let Some(existing) = self.existing_version(name, &cached).await?
        {
            return Ok(AddOutcome::Unchanged {
                version: Box::new(existing),
            });
        }
        let source = path.display().to_string();
        if opts.no_profile {
            // Store while hashing (one read); identical content then costs a
            // copy that is dropped, and the cache makes the next re-add a stat.
            let (hash, size, _) = self.objects.put_file(path, progress).await?;
            cache.put(path, &meta, hash);
            cache.save();
            if let Some(existing) = self.existing_version(name, &hash).await? {
                return Ok(AddOutcome::Unchanged {
                    version: Box::new(existing),
                });
            }
            let (schema, detected) = kiln_data::ingest::sniff_schema(path, &opts.read)?;
            let stored = hash;
            return self
                .record(
                    name,
                    "table",
                    hash,
                    stored,
                    None,
                    size,
                    1,
                    None,
                    schema,
                    None,
                    detected.format.name(),
                    source,
                    opts,
                    None,
                )
                .await;
        }

        // Hash first: identical content is found before any parsing.
        let (hash, size) = kiln_store::hash_file(path, progress)?;
        cache.put(path, &meta, hash);
        cache.save();
        if let Some(existing) = self.existing_version(name, &hash).await? {
            return Ok(AddOutcome::Unchanged {
                version: Box::new(existing),
            });
        }
        let tmp = self.columnar_tmp()?;
        // Parsing is CPU work: keep it off the async runtime's threads. The
        // original is copied into the staging area meanwhile (mostly kernel
        // time), and published only if the version is accepted.
        let (ingested, staged) = tokio::task::block_in_place(|| {
            std::thread::scope(|s| {
                let copy = s.spawn(|| self.objects.stage_file(path, &hash));
                let ingested = kiln_data::ingest::ingest(path, &opts.read, &tmp, progress);
                (ingested, copy.join().expect("copy thread panicked"))
            })
        });
        let (ingested, staged) = (ingested?, staged?);
        // The staged copy must be of the content hashed at the start.
        let after = std::fs::metadata(path).map_err(ProjectError::io("read", path))?;
        if stamp(&after) != before {
            return Err(changed(path));
        }
        let report = self.declared_checks(name, &ingested.schema, &tmp)?;
        if let Some(r) = report.as_ref().filter(|r| !r.passed && opts.enforce_checks) {
            return Ok(AddOutcome::Refused { checks: r.clone() });
        }
        self.objects.commit(staged, progress).await?;
        let stored = hash;
        let (columnar, _, _) = self.objects.put_file(&tmp, &kiln_core::NoProgress).await?;
        self.record(
            name,
            "table",
            hash,
            stored,
            Some(columnar),
            size,
            1,
            Some(ingested.rows),
            ingested.schema,
            Some(&ingested.profile),
            ingested.detected.format.name(),
            source,
            opts,
            report,
        )
        .await
    }

    /// A temporary file for a columnar copy, in the store's staging area
    /// (swept after a killed writer).
    pub(crate) fn columnar_tmp(&self) -> Result<tempfile::TempPath> {
        let scratch = self.objects.scratch_dir();
        Ok(tempfile::Builder::new()
            .prefix("kiln-columnar-")
            .suffix(".parquet")
            .tempfile_in(&scratch)
            .map_err(ProjectError::io("create a temporary file in", &scratch))?
            .into_temp_path())
    }

    /// Runs the checks kiln.yaml declares for `name` on a columnar copy;
    /// `None` when none are declared.
    pub(crate) fn declared_checks(
        &self,
        name: &str,
        schema: &TableSchema,
        columnar: &Path,
    ) -> Result<Option<CheckReport>> {
        let suite = self.dataset_config(name).checks;
        if suite.is_empty() {
            return Ok(None);
        }
        let report = tokio::task::block_in_place(|| {
            kiln_data::check::run(&suite, schema, columnar, chrono::Utc::now())
        })?;
        Ok(Some(report))
    }

    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn record(
        &self,
        name: &str,
        kind: &'static str,
        id: ContentHash,
        stored: ContentHash,
        columnar: Option<ContentHash>,
        size: u64,
        files: i64,
        rows: Option<u64>,
        schema: TableSchema,
        profile: Option<&Profile>,
        format: &str,
        source: String,
        opts: &AddOptions,
        report: Option<CheckReport>,
    ) -> Result<AddOutcome> {
        let new = kiln_store::NewVersion {
            id,
            kind: kind.into(),
            format: format.into(),
            source,
            message: opts.message.clone(),
            byte_size: size as i64,
            file_count: files,
            row_count: rows.map(|r| r as i64),
            schema: serde_json::to_value(&schema).expect("schema serializes"),
            profile: profile.map(|p| serde_json::to_value(p).expect("profile serializes")),
            original_object: stored,
            columnar_object: columnar,
        };
        let (version, created) = self.meta.create_version(name, new).await?;
        if !created {
            return Ok(AddOutcome::Unchanged {
                version: Box::new(version),
            });
        }
        if let Some(r) = &report {
            self.store_report(name, &version.id, r).await?;
        }
        Ok(AddOutcome::Created {
            version: Box::new(version),
            checks: report,
        })
    }

    async fn store_report(&self, name: &str, version: &ContentHash, r: &CheckReport) -> Result<()> {
        let suite =
            serde_json::to_string(&self.dataset_config(name).checks).expect("suite serializes");
        let suite_hash = ContentHash::of(suite.as_bytes()).short();
        self.meta
            .record_check(
                name,
                version,
                &suite_hash,
                r.results.len() as i64,
                r.failed() as i64,
                &serde_json::to_value(r).expect("report serializes"),
            )
            .await?;
        Ok(())
    }

    pub(crate) async fn existing_version(
        &self,
        name: &str,
        id: &ContentHash,
    ) -> Result<Option<VersionRecord>> {
        match self
            .meta
            .resolve(name, &VersionSpec::Named(id.to_hex()))
            .await
        {
            Ok(v) => Ok(Some(v)),
            Err(
                kiln_store::StoreError::UnknownDataset { .. }
                | kiln_store::StoreError::UnknownVersion { .. },
            ) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// Restores a version byte for byte to `out` (a file, or a folder for a folder version).
    pub async fn get(&self, v: &VersionRecord, out: &Path, progress: &dyn Progress) -> Result<u64> {
        if out.exists() {
            return Err(ProjectError::TargetExists(out.to_path_buf()));
        }
        if v.kind == "table" {
            return Ok(self
                .objects
                .get_to_file(&v.original_object, out, progress)
                .await?);
        }
        self.restore_folder(v, out, progress).await
    }

    /// Runs the declared checks on a version and stores the result.
    pub async fn check(&self, v: &VersionRecord) -> Result<CheckReport> {
        let suite = self.dataset_config(&v.dataset).checks;
        let columnar = v.columnar_object.ok_or_else(|| {
            ProjectError::WrongKind(format!(
                "Version `{}` of `{}` has no columnar copy to check (added with --no-profile, or a folder of files)",
                v.id.short(),
                v.dataset
            ))
        })?;
        let schema: TableSchema = serde_json::from_value(v.schema.clone()).map_err(|e| {
            kiln_store::StoreError::Corrupt {
                context: "a version schema",
                detail: e.to_string(),
            }
        })?;
        let (path, _guard) = self.objects.fetch_local(&columnar).await?;
        let report = tokio::task::block_in_place(|| {
            kiln_data::check::run(&suite, &schema, &path, chrono::Utc::now())
        })?;
        self.store_report(&v.dataset, &v.id, &report).await?;
        Ok(report)
    }

    /// Compares two versions; rows are compared when `key` is given or declared.
    pub async fn diff(
        &self,
        a: &VersionRecord,
        b: &VersionRecord,
        key: Option<Vec<String>>,
    ) -> Result<VersionDiff> {
        let schema = |v: &VersionRecord| -> Result<TableSchema> {
            serde_json::from_value(v.schema.clone()).map_err(|e| {
                kiln_store::StoreError::Corrupt {
                    context: "a version schema",
                    detail: e.to_string(),
                }
                .into()
            })
        };
        let profile = |v: &VersionRecord| -> Option<Profile> {
            v.profile
                .clone()
                .and_then(|p| serde_json::from_value(p).ok())
        };
        let schema_changes = kiln_data::diff::schema_changes(&schema(a)?, &schema(b)?);
        let stat_shifts = match (profile(a), profile(b)) {
            (Some(pa), Some(pb)) => kiln_data::diff::stat_shifts(&pa, &pb),
            _ => Vec::new(),
        };
        let key = key.or_else(|| self.dataset_config(&b.dataset).key.map(|k| k.columns()));
        let rows = match (key, a.columnar_object, b.columnar_object) {
            (Some(key), Some(ca), Some(cb)) => {
                let (pa, _ga) = self.objects.fetch_local(&ca).await?;
                let (pb, _gb) = self.objects.fetch_local(&cb).await?;
                Some(tokio::task::block_in_place(|| {
                    kiln_data::diff::row_diff(&pa, &pb, &key)
                })?)
            }
            _ => None,
        };
        Ok(VersionDiff {
            a: a.id,
            b: b.id,
            rows_a: a.row_count,
            rows_b: b.row_count,
            schema_changes,
            stat_shifts,
            rows,
        })
    }
}

/// Everything `kiln data diff` reports.
#[derive(Debug, Serialize)]
pub struct VersionDiff {
    pub a: ContentHash,
    pub b: ContentHash,
    pub rows_a: Option<i64>,
    pub rows_b: Option<i64>,
    pub schema_changes: Vec<SchemaChange>,
    pub stat_shifts: Vec<StatShift>,
    pub rows: Option<RowDiff>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_split_name_and_version() {
        assert_eq!(
            parse_ref("bikes").unwrap(),
            ("bikes".into(), VersionSpec::Latest)
        );
        assert_eq!(
            parse_ref("bikes@v1").unwrap(),
            ("bikes".into(), VersionSpec::Named("v1".into()))
        );
        assert!(parse_ref("@abc").is_err());
        assert!(parse_ref("bad name").is_err());
    }
}
