//! The metadata store: one schema on SQLite or PostgreSQL through sqlx's `Any`
//! driver. Queries use `$N` placeholders, which both databases accept.

use std::time::Duration;

use kiln_core::ContentHash;
use serde::Serialize;
use sqlx::any::{AnyPoolOptions, AnyRow};
use sqlx::{Any, AnyPool, Row, Transaction};

use crate::{Result, StoreError, StoreUrl};

mod artifacts;
mod gc;
mod monitoring;
mod pipelines;
mod predictions;
mod registry;
mod runs;
mod search;
mod tracking;
pub use artifacts::{ArtifactEntry, LoggedModel, NewLoggedModel, check_artifact_path};
pub use monitoring::{
    Alert, AlertChange, AlertEvent, MonitorWindow, PipelineTrigger, ServingSample,
};
pub use pipelines::{Edge, NewPipelineRun, PipelineRun, StepRun};
pub use predictions::{Feedback, PredictionSegment};
pub use registry::{ModelVersion, NewModelVersion, RegisteredModel, check_alias};
pub use runs::{NewRun, RunRecord};
pub use tracking::{
    DEFAULT_EXPERIMENT, Experiment, KV, Metric, NewTrackedRun, Page, Run, RunInput, RunUpdate,
    ViewType,
};

/// A handle on the metadata of one project.
#[derive(Clone)]
pub struct MetaStore {
    pool: AnyPool,
    project_id: String,
    project: String,
    /// SQLite has one writer at a time: writers in this process queue here
    /// rather than spin on `SQLITE_BUSY`. `None` on PostgreSQL.
    writer: Option<std::sync::Arc<tokio::sync::Mutex<()>>>,
}

/// A dataset: a name in a project, with catalog fields.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetRecord {
    pub id: String,
    pub name: String,
    pub description: Option<String>,
    pub owner: Option<String>,
    pub tags: Vec<String>,
    pub created_at: String,
}

/// A dataset with its version count and latest version, for listings.
#[derive(Clone, Debug, Serialize)]
pub struct DatasetSummary {
    #[serde(flatten)]
    pub dataset: DatasetRecord,
    pub versions: i64,
    pub latest: Option<VersionRecord>,
}

/// One immutable version of a dataset.
#[derive(Clone, Debug, Serialize)]
pub struct VersionRecord {
    pub dataset: String,
    /// BLAKE3 of the content: of the file, or of the manifest of a folder.
    pub id: ContentHash,
    /// 1 for the first version of a dataset, then 2, 3, …
    pub seq: i64,
    pub parent_id: Option<ContentHash>,
    /// `table` or `files`.
    pub kind: String,
    pub format: String,
    pub source: String,
    pub message: Option<String>,
    pub author: String,
    pub created_at: String,
    pub byte_size: i64,
    pub file_count: i64,
    pub row_count: Option<i64>,
    pub schema: serde_json::Value,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<serde_json::Value>,
    pub original_object: ContentHash,
    pub columnar_object: Option<ContentHash>,
    pub tags: Vec<String>,
}

/// What `create_version` needs; the rest (seq, parent, author, time) it fills in.
#[derive(Clone, Debug)]
pub struct NewVersion {
    pub id: ContentHash,
    pub kind: String,
    pub format: String,
    pub source: String,
    pub message: Option<String>,
    pub byte_size: i64,
    pub file_count: i64,
    pub row_count: Option<i64>,
    pub schema: serde_json::Value,
    pub profile: Option<serde_json::Value>,
    pub original_object: ContentHash,
    pub columnar_object: Option<ContentHash>,
}

/// How a user names a version: `latest`, a tag, or an id prefix.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VersionSpec {
    Latest,
    /// A tag, or else a prefix of the id (tags win).
    Named(String),
}

impl VersionSpec {
    pub fn parse(s: &str) -> Self {
        if s.is_empty() || s == "latest" {
            Self::Latest
        } else {
            Self::Named(s.to_string())
        }
    }
}

impl std::fmt::Display for VersionSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Latest => f.write_str("latest"),
            Self::Named(s) => f.write_str(s),
        }
    }
}

/// The stored outcome of running a dataset's checks on one version.
#[derive(Clone, Debug, Serialize)]
pub struct CheckRecord {
    pub id: String,
    pub version_id: ContentHash,
    pub suite_hash: String,
    pub passed: bool,
    pub checks_total: i64,
    pub checks_failed: i64,
    pub results: serde_json::Value,
    pub created_at: String,
}

/// One row of the audit log.
#[derive(Clone, Debug, Serialize)]
pub struct AuditEntry {
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target_kind: String,
    pub target_id: String,
    pub detail: serde_json::Value,
}

/// A lineage edge `src --relation--> dst`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct LineageEdge {
    pub src_kind: String,
    pub src_id: String,
    pub relation: String,
    pub dst_kind: String,
    pub dst_id: String,
}

const VERSION_COLUMNS: &str = "v.id, v.seq, v.parent_id, v.kind, v.format, v.source, v.message, \
    v.author, v.created_at, v.byte_size, v.file_count, v.row_count, v.schema_json, v.profile_json, \
    v.original_object, v.columnar_object, d.name AS dataset_name";

impl MetaStore {
    /// Connects, applies pending migrations and makes sure `project` exists.
    pub async fn open(url: &StoreUrl, project: &str) -> Result<Self> {
        sqlx::any::install_default_drivers();
        let (conn, postgres) = match url {
            StoreUrl::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(StoreError::io("create", dir))?;
                }
                (format!("sqlite://{}?mode=rwc", path.display()), false)
            }
            StoreUrl::Postgres(u) => (u.clone(), true),
        };
        let pool = AnyPoolOptions::new()
            // No ping before each use: a broken connection fails its query
            // and is replaced; a ping is a round trip on every request.
            .test_before_acquire(false)
            .max_connections(if postgres { 8 } else { 4 })
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _meta| {
                Box::pin(async move {
                    if !postgres {
                        sqlx::raw_sql(
                            "PRAGMA foreign_keys = ON; PRAGMA busy_timeout = 15000; PRAGMA synchronous = NORMAL; \
                             PRAGMA case_sensitive_like = ON;",
                        )
                        .execute(conn)
                        .await?;
                    }
                    Ok(())
                })
            })
            .connect(&conn)
            .await
            .map_err(|source| StoreError::Connect { url: url.redacted(), source })?;
        if !postgres {
            sqlx::raw_sql("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
                .map_err(StoreError::query("enabling WAL mode"))?;
        }
        crate::migrate::run(&pool, postgres).await?;

        let now = kiln_core::now_rfc3339();
        let new_id = uuid::Uuid::now_v7().to_string();
        sqlx::query(
            "INSERT INTO projects (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
        )
        .bind(&new_id)
        .bind(project)
        .bind(&now)
        .execute(&pool)
        .await
        .map_err(StoreError::query("creating the project"))?;
        let project_id: String = sqlx::query("SELECT id FROM projects WHERE name = $1")
            .bind(project)
            .fetch_one(&pool)
            .await
            .map_err(StoreError::query("reading the project"))?
            .try_get("id")
            .map_err(StoreError::query("reading the project"))?;
        let store = Self {
            pool,
            project_id,
            project: project.to_string(),
            writer: (!postgres).then(|| std::sync::Arc::new(tokio::sync::Mutex::new(()))),
        };
        store.ensure_default_experiment().await?;
        Ok(store)
    }

    pub fn project(&self) -> &str {
        &self.project
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }

    /// Records `version` of dataset `name` (creating the dataset if new).
    /// Returns the version and whether it is new: identical content added again
    /// makes no new version.
    pub async fn create_version(
        &self,
        name: &str,
        new: NewVersion,
    ) -> Result<(VersionRecord, bool)> {
        // Two writers may race for the next `seq`; the loser retries.
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_create_version(name, &new).await {
                Err(StoreError::Query { source, .. }) if attempt < 5 && is_retryable(&source) => {
                    tokio::time::sleep(Duration::from_millis(20 * attempt)).await;
                }
                other => return other,
            }
        }
    }

    async fn try_create_version(
        &self,
        name: &str,
        new: &NewVersion,
    ) -> Result<(VersionRecord, bool)> {
        let mut tx = self.begin().await?;
        let now = kiln_core::now_rfc3339();
        let dataset_id = self.ensure_dataset(&mut tx, name, &now).await?;
        let id_hex = new.id.to_hex();
        if let Some(existing) = self.version_in(&mut tx, &dataset_id, &id_hex).await? {
            tx.rollback()
                .await
                .map_err(StoreError::query("rolling back"))?;
            return Ok((existing, false));
        }
        let latest = sqlx::query(
            "SELECT id, seq FROM dataset_versions WHERE dataset_id = $1 ORDER BY seq DESC LIMIT 1",
        )
        .bind(&dataset_id)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query("reading the latest version"))?;
        let (parent, seq) = match latest {
            Some(r) => (Some(get::<String>(&r, "id")?), get::<i64>(&r, "seq")? + 1),
            None => (None, 1),
        };
        let author = kiln_core::current_actor();
        sqlx::query(
            "INSERT INTO dataset_versions (dataset_id, id, seq, parent_id, kind, format, source, message, author, \
             created_at, byte_size, file_count, row_count, schema_json, profile_json, original_object, columnar_object) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)",
        )
        .bind(&dataset_id)
        .bind(&id_hex)
        .bind(seq)
        .bind(parent.clone())
        .bind(&new.kind)
        .bind(&new.format)
        .bind(&new.source)
        .bind(new.message.clone())
        .bind(&author)
        .bind(&now)
        .bind(new.byte_size)
        .bind(new.file_count)
        .bind(new.row_count)
        .bind(new.schema.to_string())
        .bind(new.profile.as_ref().map(|p| p.to_string()))
        .bind(new.original_object.to_hex())
        .bind(new.columnar_object.map(|h| h.to_hex()))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("inserting the version"))?;
        let version_ref = format!("{name}@{id_hex}");
        if let Some(parent) = &parent {
            self.edge_in(
                &mut tx,
                "dataset_version",
                &version_ref,
                "derived_from",
                "dataset_version",
                &format!("{name}@{parent}"),
                &now,
            )
            .await?;
        }
        self.audit_in(
            &mut tx,
            "dataset_version.create",
            "dataset_version",
            &version_ref,
            serde_json::json!({ "seq": seq, "source": new.source, "rows": new.row_count, "bytes": new.byte_size }),
        )
        .await?;
        let record = self
            .version_in(&mut tx, &dataset_id, &id_hex)
            .await?
            .ok_or(StoreError::Corrupt {
                context: "dataset_versions",
                detail: "inserted row vanished".into(),
            })?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing the version"))?;
        Ok((record, true))
    }

    /// Queues behind this process's other SQLite writers, for a write that
    /// is a single statement (no transaction needed).
    async fn write_lock(&self) -> WriteGuard {
        match &self.writer {
            Some(m) => Some(m.clone().lock_owned().await),
            None => None,
        }
    }

    /// Starts a write transaction, first queueing behind this process's other
    /// SQLite writers. Hold the guard until the transaction ends.
    async fn write(&self) -> Result<(WriteGuard, Transaction<'static, Any>)> {
        let Some(m) = &self.writer else {
            return Ok((None, self.begin().await?));
        };
        let guard = m.clone().lock_owned().await;
        // IMMEDIATE takes SQLite's write lock up front (waiting out other
        // processes' writers with the busy timeout): a deferred transaction
        // that reads first could find its snapshot stale when it writes.
        let tx = self
            .pool
            .begin_with("BEGIN IMMEDIATE")
            .await
            .map_err(StoreError::query("starting a write transaction"))?;
        Ok((Some(guard), tx))
    }

    async fn begin(&self) -> Result<Transaction<'static, Any>> {
        self.pool
            .begin()
            .await
            .map_err(StoreError::query("starting a transaction"))
    }

    async fn ensure_dataset(
        &self,
        tx: &mut Transaction<'static, Any>,
        name: &str,
        now: &str,
    ) -> Result<String> {
        let inserted = sqlx::query(
            "INSERT INTO datasets (id, project_id, name, created_at) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id, name) DO NOTHING",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&self.project_id)
        .bind(name)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("creating the dataset"))?
        .rows_affected();
        let id: String = get(
            &sqlx::query("SELECT id FROM datasets WHERE project_id = $1 AND name = $2")
                .bind(&self.project_id)
                .bind(name)
                .fetch_one(&mut **tx)
                .await
                .map_err(StoreError::query("reading the dataset"))?,
            "id",
        )?;
        if inserted > 0 {
            self.audit_in(tx, "dataset.create", "dataset", name, serde_json::json!({}))
                .await?;
        }
        Ok(id)
    }

    async fn version_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        dataset_id: &str,
        id: &str,
    ) -> Result<Option<VersionRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id \
             WHERE v.dataset_id = $1 AND v.id = $2"
        )))
        .bind(dataset_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::query("reading a version"))?;
        match row {
            Some(r) => {
                let mut v = version_from_row(&r)?;
                v.tags = tags_by_version(tx, dataset_id)
                    .await?
                    .remove(&v.id.to_hex())
                    .unwrap_or_default();
                Ok(Some(v))
            }
            None => Ok(None),
        }
    }

    #[allow(clippy::too_many_arguments)]
    async fn edge_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        src_kind: &str,
        src_id: &str,
        relation: &str,
        dst_kind: &str,
        dst_id: &str,
        now: &str,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO lineage_edges (project_id, src_kind, src_id, relation, dst_kind, dst_id, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        )
        .bind(&self.project_id)
        .bind(src_kind)
        .bind(src_id)
        .bind(relation)
        .bind(dst_kind)
        .bind(dst_id)
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("recording lineage"))?;
        Ok(())
    }

    async fn audit_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        action: &str,
        target_kind: &str,
        target_id: &str,
        detail: serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO audit_log (id, project_id, at, actor, action, target_kind, target_id, detail) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&self.project_id)
        .bind(kiln_core::now_rfc3339())
        .bind(kiln_core::current_actor())
        .bind(action)
        .bind(target_kind)
        .bind(target_id)
        .bind(detail.to_string())
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("writing the audit log"))?;
        Ok(())
    }

    /// The dataset called `name`, or [`StoreError::UnknownDataset`].
    pub async fn dataset(&self, name: &str) -> Result<DatasetRecord> {
        let row = sqlx::query(
            "SELECT id, name, description, owner, tags, created_at FROM datasets WHERE project_id = $1 AND name = $2",
        )
        .bind(&self.project_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading the dataset"))?;
        match row {
            Some(r) => dataset_from_row(&r),
            None => Err(StoreError::UnknownDataset {
                project: self.project.clone(),
                name: name.to_string(),
            }),
        }
    }

    /// Every dataset of the project, by name, with its latest version.
    pub async fn list_datasets(&self) -> Result<Vec<DatasetSummary>> {
        let rows = sqlx::query(
            "SELECT d.id, d.name, d.description, d.owner, d.tags, d.created_at, \
             (SELECT COUNT(*) FROM dataset_versions v WHERE v.dataset_id = d.id) AS n \
             FROM datasets d WHERE d.project_id = $1 ORDER BY d.name",
        )
        .bind(&self.project_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing datasets"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let dataset = dataset_from_row(&r)?;
            let versions: i64 = get(&r, "n")?;
            let latest = match self.resolve(&dataset.name, &VersionSpec::Latest).await {
                Ok(v) => Some(v),
                Err(StoreError::UnknownVersion { .. }) => None,
                Err(e) => return Err(e),
            };
            out.push(DatasetSummary {
                dataset,
                versions,
                latest: latest.map(without_profile),
            });
        }
        Ok(out)
    }

    /// Every version of a dataset, oldest first (without profiles, which can be large).
    pub async fn versions(&self, name: &str) -> Result<Vec<VersionRecord>> {
        let dataset = self.dataset(name).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM dataset_versions v JOIN datasets d ON d.id = v.dataset_id \
             WHERE v.dataset_id = $1 ORDER BY v.seq"
        )))
        .bind(&dataset.id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing versions"))?;
        let mut conn = self
            .pool
            .acquire()
            .await
            .map_err(StoreError::query("reading version tags"))?;
        let mut tags = tags_by_version(&mut conn, &dataset.id).await?;
        rows.iter()
            .map(|r| {
                let mut v = without_profile(version_from_row(r)?);
                v.tags = tags.remove(&v.id.to_hex()).unwrap_or_default();
                Ok(v)
            })
            .collect()
    }

    /// The version of dataset `name` that `spec` names.
    pub async fn resolve(&self, name: &str, spec: &VersionSpec) -> Result<VersionRecord> {
        let dataset = self.dataset(name).await?;
        let unknown = || StoreError::UnknownVersion {
            dataset: name.to_string(),
            spec: spec.to_string(),
        };
        let id: String = match spec {
            VersionSpec::Latest => {
                let row = sqlx::query("SELECT id FROM dataset_versions WHERE dataset_id = $1 ORDER BY seq DESC LIMIT 1")
                    .bind(&dataset.id)
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(StoreError::query("reading the latest version"))?;
                get(&row.ok_or_else(unknown)?, "id")?
            }
            VersionSpec::Named(s) => {
                let tagged = sqlx::query(
                    "SELECT version_id FROM version_tags WHERE dataset_id = $1 AND tag = $2",
                )
                .bind(&dataset.id)
                .bind(s)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query("reading version tags"))?;
                if let Some(r) = tagged {
                    get(&r, "version_id")?
                } else {
                    let prefix = s.to_ascii_lowercase();
                    if prefix.len() < 4 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(unknown());
                    }
                    let rows = sqlx::query("SELECT id FROM dataset_versions WHERE dataset_id = $1 AND id LIKE $2 ORDER BY seq")
                        .bind(&dataset.id)
                        .bind(format!("{prefix}%"))
                        .fetch_all(&self.pool)
                        .await
                        .map_err(StoreError::query("finding a version by prefix"))?;
                    match rows.len() {
                        0 => return Err(unknown()),
                        1 => get(&rows[0], "id")?,
                        _ => {
                            let ids: Result<Vec<String>> =
                                rows.iter().map(|r| get::<String>(r, "id")).collect();
                            let candidates = ids?
                                .iter()
                                .map(|i| format!("`{}`", &i[..12]))
                                .collect::<Vec<_>>()
                                .join(", ");
                            return Err(StoreError::AmbiguousVersion {
                                dataset: name.to_string(),
                                spec: s.clone(),
                                candidates,
                            });
                        }
                    }
                }
            }
        };
        let mut tx = self.begin().await?;
        let v = self
            .version_in(&mut tx, &dataset.id, &id)
            .await?
            .ok_or_else(unknown)?;
        tx.commit()
            .await
            .map_err(StoreError::query("reading a version"))?;
        Ok(v)
    }

    /// Points `tag` at a version (moving it if it pointed elsewhere).
    pub async fn tag_version(&self, name: &str, version: &ContentHash, tag: &str) -> Result<()> {
        let dataset = self.dataset(name).await?;
        let mut tx = self.begin().await?;
        sqlx::query("DELETE FROM version_tags WHERE dataset_id = $1 AND tag = $2")
            .bind(&dataset.id)
            .bind(tag)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("moving a tag"))?;
        sqlx::query("INSERT INTO version_tags (dataset_id, tag, version_id, created_at) VALUES ($1, $2, $3, $4)")
            .bind(&dataset.id)
            .bind(tag)
            .bind(version.to_hex())
            .bind(kiln_core::now_rfc3339())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("tagging a version"))?;
        self.audit_in(
            &mut tx,
            "dataset_version.tag",
            "dataset_version",
            &format!("{name}@{version}"),
            serde_json::json!({ "tag": tag }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a tag"))
    }

    /// Sets catalog fields; `None` leaves a field as it is, an empty tag list clears nothing.
    pub async fn describe(
        &self,
        name: &str,
        description: Option<&str>,
        owner: Option<&str>,
        tags: &[String],
    ) -> Result<DatasetRecord> {
        let mut dataset = self.dataset(name).await?;
        if let Some(d) = description {
            dataset.description = Some(d.to_string());
        }
        if let Some(o) = owner {
            dataset.owner = Some(o.to_string());
        }
        for t in tags {
            if !dataset.tags.contains(t) {
                dataset.tags.push(t.clone());
            }
        }
        let mut tx = self.begin().await?;
        sqlx::query("UPDATE datasets SET description = $1, owner = $2, tags = $3 WHERE id = $4")
            .bind(dataset.description.clone())
            .bind(dataset.owner.clone())
            .bind(serde_json::to_string(&dataset.tags).expect("strings serialize"))
            .bind(&dataset.id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("updating the catalog fields"))?;
        self.audit_in(
            &mut tx,
            "dataset.describe",
            "dataset",
            name,
            serde_json::json!({ "description": description, "owner": owner, "tags": tags }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing catalog fields"))?;
        Ok(dataset)
    }

    /// Stores the outcome of a check run on a version.
    pub async fn record_check(
        &self,
        name: &str,
        version: &ContentHash,
        suite_hash: &str,
        total: i64,
        failed: i64,
        results: &serde_json::Value,
    ) -> Result<CheckRecord> {
        let dataset = self.dataset(name).await?;
        let record = CheckRecord {
            id: uuid::Uuid::now_v7().to_string(),
            version_id: *version,
            suite_hash: suite_hash.to_string(),
            passed: failed == 0,
            checks_total: total,
            checks_failed: failed,
            results: results.clone(),
            created_at: kiln_core::now_rfc3339(),
        };
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO check_results (id, dataset_id, version_id, suite_hash, passed, checks_total, checks_failed, results_json, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&record.id)
        .bind(&dataset.id)
        .bind(version.to_hex())
        .bind(suite_hash)
        .bind(i64::from(record.passed))
        .bind(total)
        .bind(failed)
        .bind(results.to_string())
        .bind(&record.created_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("storing check results"))?;
        self.audit_in(
            &mut tx,
            "check_result.create",
            "dataset_version",
            &format!("{name}@{version}"),
            serde_json::json!({ "passed": record.passed, "total": total, "failed": failed }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing check results"))?;
        Ok(record)
    }

    /// The most recent check result of a version, if it was ever checked.
    pub async fn latest_check(
        &self,
        name: &str,
        version: &ContentHash,
    ) -> Result<Option<CheckRecord>> {
        let dataset = self.dataset(name).await?;
        let row = sqlx::query(
            "SELECT id, version_id, suite_hash, passed, checks_total, checks_failed, results_json, created_at \
             FROM check_results WHERE dataset_id = $1 AND version_id = $2 ORDER BY created_at DESC, id DESC LIMIT 1",
        )
        .bind(&dataset.id)
        .bind(version.to_hex())
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading check results"))?;
        row.map(|r| {
            Ok(CheckRecord {
                id: get(&r, "id")?,
                version_id: hash(&get::<String>(&r, "version_id")?)?,
                suite_hash: get(&r, "suite_hash")?,
                passed: get::<i64>(&r, "passed")? != 0,
                checks_total: get(&r, "checks_total")?,
                checks_failed: get(&r, "checks_failed")?,
                results: json(&get::<String>(&r, "results_json")?)?,
                created_at: get(&r, "created_at")?,
            })
        })
        .transpose()
    }

    /// The newest `limit` audit entries of the project, newest first.
    pub async fn audit_log(&self, limit: i64) -> Result<Vec<AuditEntry>> {
        self.audit_log_matching("", limit, 0).await
    }

    /// The newest entries whose action starts with `action_prefix`.
    pub async fn audit_log_matching(
        &self,
        action_prefix: &str,
        limit: i64,
        offset: i64,
    ) -> Result<Vec<AuditEntry>> {
        // substr, not LIKE: `_` in an action is not a wildcard.
        let rows = sqlx::query(
            "SELECT at, actor, action, target_kind, target_id, detail FROM audit_log WHERE project_id = $1 \
             AND substr(action, 1, length($3)) = $3 ORDER BY at DESC, id DESC LIMIT $2 OFFSET $4",
        )
        .bind(&self.project_id)
        .bind(limit)
        .bind(action_prefix)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading the audit log"))?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    at: get(r, "at")?,
                    actor: get(r, "actor")?,
                    action: get(r, "action")?,
                    target_kind: get(r, "target_kind")?,
                    target_id: get(r, "target_id")?,
                    detail: json(&get::<String>(r, "detail")?)?,
                })
            })
            .collect()
    }

    /// Lineage edges that start or end at `(kind, id)`.
    pub async fn lineage(&self, kind: &str, id: &str) -> Result<Vec<LineageEdge>> {
        let rows = sqlx::query(
            "SELECT src_kind, src_id, relation, dst_kind, dst_id FROM lineage_edges WHERE project_id = $1 AND \
             ((src_kind = $2 AND src_id = $3) OR (dst_kind = $2 AND dst_id = $3)) ORDER BY created_at",
        )
        .bind(&self.project_id)
        .bind(kind)
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading lineage"))?;
        rows.iter()
            .map(|r| {
                Ok(LineageEdge {
                    src_kind: get(r, "src_kind")?,
                    src_id: get(r, "src_id")?,
                    relation: get(r, "relation")?,
                    dst_kind: get(r, "dst_kind")?,
                    dst_id: get(r, "dst_id")?,
                })
            })
            .collect()
    }
}

/// Tags of every version of a dataset, by version id. Takes the caller's
/// connection so that it can run inside a transaction.
async fn tags_by_version(
    conn: &mut sqlx::AnyConnection,
    dataset_id: &str,
) -> Result<std::collections::HashMap<String, Vec<String>>> {
    let rows =
        sqlx::query("SELECT version_id, tag FROM version_tags WHERE dataset_id = $1 ORDER BY tag")
            .bind(dataset_id)
            .fetch_all(conn)
            .await
            .map_err(StoreError::query("reading version tags"))?;
    let mut out: std::collections::HashMap<String, Vec<String>> = std::collections::HashMap::new();
    for r in &rows {
        out.entry(get(r, "version_id")?)
            .or_default()
            .push(get(r, "tag")?);
    }
    Ok(out)
}

fn without_profile(mut v: VersionRecord) -> VersionRecord {
    v.profile = None;
    v
}

/// A conflict another writer caused: a taken sequence number, or SQLite
/// reporting the database busy.
fn is_retryable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            d.is_unique_violation() || d.message().contains("database is locked")
        }
        _ => false,
    }
}

type WriteGuard = Option<tokio::sync::OwnedMutexGuard<()>>;

/// Milliseconds since the epoch, MLflow's unit of time.
pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

fn get<T>(row: &AnyRow, col: &'static str) -> Result<T>
where
    T: for<'r> sqlx::Decode<'r, Any> + sqlx::Type<Any>,
{
    row.try_get(col).map_err(StoreError::query(col))
}

fn hash(s: &str) -> Result<ContentHash> {
    ContentHash::parse(s).map_err(|e| StoreError::Corrupt {
        context: "a content hash",
        detail: e.to_string(),
    })
}

fn json(s: &str) -> Result<serde_json::Value> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt {
        context: "a JSON column",
        detail: e.to_string(),
    })
}

fn dataset_from_row(r: &AnyRow) -> Result<DatasetRecord> {
    Ok(DatasetRecord {
        id: get(r, "id")?,
        name: get(r, "name")?,
        description: get(r, "description")?,
        owner: get(r, "owner")?,
        tags: serde_json::from_str(&get::<String>(r, "tags")?).map_err(|e| {
            StoreError::Corrupt {
                context: "datasets.tags",
                detail: e.to_string(),
            }
        })?,
        created_at: get(r, "created_at")?,
    })
}

fn version_from_row(r: &AnyRow) -> Result<VersionRecord> {
    Ok(VersionRecord {
        dataset: get(r, "dataset_name")?,
        id: hash(&get::<String>(r, "id")?)?,
        seq: get(r, "seq")?,
        parent_id: get::<Option<String>>(r, "parent_id")?
            .as_deref()
            .map(hash)
            .transpose()?,
        kind: get(r, "kind")?,
        format: get(r, "format")?,
        source: get(r, "source")?,
        message: get(r, "message")?,
        author: get(r, "author")?,
        created_at: get(r, "created_at")?,
        byte_size: get(r, "byte_size")?,
        file_count: get(r, "file_count")?,
        row_count: get(r, "row_count")?,
        schema: json(&get::<String>(r, "schema_json")?)?,
        profile: get::<Option<String>>(r, "profile_json")?
            .as_deref()
            .map(json)
            .transpose()?,
        original_object: hash(&get::<String>(r, "original_object")?)?,
        columnar_object: get::<Option<String>>(r, "columnar_object")?
            .as_deref()
            .map(hash)
            .transpose()?,
        tags: Vec::new(),
    })
}
