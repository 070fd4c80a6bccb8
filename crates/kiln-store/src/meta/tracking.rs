//! Tracking: experiments, and runs with parameters, step-wise metrics, tags
//! and inputs. The shapes follow MLflow's entities, so its REST API maps onto
//! them directly; kiln's own runs (`kiln train`) are runs like any other.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::any::AnyRow;
use sqlx::{Any, AssertSqlSafe, Transaction};

use super::search::{Bind, compile_run_search};
use super::{MetaStore, get, now_ms};
use crate::{Result, StoreError};

/// The experiment runs land in when none is named.
pub const DEFAULT_EXPERIMENT: &str = "0";

/// A named group of runs.
#[derive(Debug, Clone, Serialize)]
pub struct Experiment {
    pub id: String,
    pub name: String,
    pub artifact_location: String,
    pub lifecycle_stage: String,
    pub creation_time: i64,
    pub last_update_time: i64,
    pub tags: Vec<KV>,
}

/// A key and its value: a parameter or a tag.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KV {
    pub key: String,
    pub value: String,
}

impl KV {
    pub fn new(key: impl Into<String>, value: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            value: value.into(),
        }
    }
}

/// One point of a metric. `value` may be NaN or infinite.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Metric {
    pub key: String,
    pub value: f64,
    pub timestamp: i64,
    pub step: i64,
}

/// A dataset a run read, with its role.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RunInput {
    pub name: String,
    pub digest: String,
    /// `kiln` for a kiln dataset version (then `source` is `NAME@ID`), else
    /// what the client said (`local`, `http`, `code`, …).
    pub source_type: String,
    pub source: String,
    pub schema: Option<String>,
    pub profile: Option<String>,
    /// train, validation, test, … (MLflow's `mlflow.data.context` tag).
    pub role: Option<String>,
    pub tags: Vec<KV>,
}

/// A run with everything logged to it (metrics: the latest point of each).
#[derive(Debug, Clone, Serialize)]
pub struct Run {
    pub id: String,
    pub experiment_id: String,
    pub name: String,
    /// What made it: `train` (kiln), or `external` (a client of the API).
    pub kind: String,
    /// RUNNING, SCHEDULED, FINISHED, FAILED or KILLED.
    pub status: String,
    pub user_id: String,
    pub start_time: i64,
    pub end_time: Option<i64>,
    pub artifact_uri: String,
    pub lifecycle_stage: String,
    pub source_commit: Option<String>,
    pub source_dirty: Option<bool>,
    pub command: Option<String>,
    pub environment: Option<serde_json::Value>,
    #[serde(serialize_with = "as_map")]
    pub params: Vec<KV>,
    #[serde(serialize_with = "as_map")]
    pub tags: Vec<KV>,
    /// The latest value of each metric (JSON: a map; NaN as null).
    #[serde(serialize_with = "latest_as_map")]
    pub metrics: Vec<Metric>,
    pub inputs: Vec<RunInput>,
}

fn as_map<S: serde::Serializer>(items: &[KV], s: S) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(items.len()))?;
    for kv in items {
        m.serialize_entry(&kv.key, &kv.value)?;
    }
    m.end()
}

fn latest_as_map<S: serde::Serializer>(
    items: &[Metric],
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut m = s.serialize_map(Some(items.len()))?;
    for x in items {
        m.serialize_entry(&x.key, &x.value.is_finite().then_some(x.value))?;
    }
    m.end()
}

impl Run {
    pub fn duration_ms(&self) -> Option<i64> {
        self.end_time.map(|e| e - self.start_time)
    }

    pub fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|p| p.key == key)
            .map(|p| p.value.as_str())
    }

    pub fn metric(&self, key: &str) -> Option<f64> {
        self.metrics.iter().find(|m| m.key == key).map(|m| m.value)
    }
}

/// What [`MetaStore::create_run`] needs; the rest it fills in.
#[derive(Debug, Clone, Default)]
pub struct NewTrackedRun {
    pub experiment_id: String,
    pub name: Option<String>,
    pub kind: String,
    pub start_time: Option<i64>,
    pub tags: Vec<KV>,
    pub user_id: Option<String>,
    pub source_commit: Option<String>,
    pub source_dirty: Option<bool>,
    pub command: Option<String>,
    pub environment: Option<serde_json::Value>,
}

/// A change to a run's status, end or name.
#[derive(Debug, Clone, Default)]
pub struct RunUpdate {
    pub status: Option<String>,
    pub end_time: Option<i64>,
    pub name: Option<String>,
}

/// Which lifecycle stages a search sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ViewType {
    #[default]
    ActiveOnly,
    DeletedOnly,
    All,
}

impl ViewType {
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "" | "ACTIVE_ONLY" | "1" => Some(Self::ActiveOnly),
            "DELETED_ONLY" | "2" => Some(Self::DeletedOnly),
            "ALL" | "3" => Some(Self::All),
            _ => None,
        }
    }

    fn sql(self, column: &str) -> String {
        match self {
            Self::ActiveOnly => format!("{column} = 'active'"),
            Self::DeletedOnly => format!("{column} = 'deleted'"),
            Self::All => "1 = 1".into(),
        }
    }
}

/// One page of a listing and the token for the next, if there is more.
#[derive(Debug, Clone, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: Option<String>,
}

/// Page tokens are the offset of the next page, opaque to clients.
pub(crate) fn page_offset(token: Option<&str>) -> Result<i64> {
    match token.filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(t) => t
            .parse::<i64>()
            .ok()
            .filter(|o| *o >= 0)
            .ok_or_else(|| StoreError::Invalid {
                field: "page_token".into(),
                message: format!("`{t}` is not a page token this server issued"),
            }),
    }
}

pub(crate) fn page<T>(mut items: Vec<T>, offset: i64, limit: i64) -> Page<T> {
    let more = items.len() as i64 > limit;
    items.truncate(limit as usize);
    Page {
        next_page_token: more.then(|| (offset + limit).to_string()),
        items,
    }
}

pub(crate) const RUN_STATUSES: [&str; 5] = ["RUNNING", "SCHEDULED", "FINISHED", "FAILED", "KILLED"];

const RUN_COLUMNS: &str = "r.id, r.kind, r.status, r.experiment_id, r.name, r.author, r.start_time, \
    r.end_time, r.started_at, r.duration_ms, r.artifact_uri, r.lifecycle_stage, r.source_commit, \
    r.source_dirty, r.command, r.environment_json";

fn run_from_row(row: &AnyRow) -> Result<Run> {
    let id: String = get(row, "id")?;
    let experiment_id: String = get(row, "experiment_id")?;
    // Runs recorded before tracking existed have only RFC 3339 times.
    let start_time = match get::<Option<i64>>(row, "start_time")? {
        Some(t) => t,
        None => chrono::DateTime::parse_from_rfc3339(&get::<String>(row, "started_at")?)
            .map(|t| t.timestamp_millis())
            .unwrap_or(0),
    };
    let end_time = match get::<Option<i64>>(row, "end_time")? {
        Some(t) => Some(t),
        None => get::<Option<i64>>(row, "duration_ms")?.map(|d| start_time + d),
    };
    let artifact_uri = get::<Option<String>>(row, "artifact_uri")?
        .unwrap_or_else(|| format!("mlflow-artifacts:/{experiment_id}/{id}/artifacts"));
    Ok(Run {
        kind: get(row, "kind")?,
        status: get::<String>(row, "status")?.to_ascii_uppercase(),
        name: get(row, "name")?,
        user_id: get(row, "author")?,
        start_time,
        end_time,
        artifact_uri,
        lifecycle_stage: get(row, "lifecycle_stage")?,
        source_commit: get(row, "source_commit")?,
        source_dirty: get::<Option<i64>>(row, "source_dirty")?.map(|d| d != 0),
        command: get(row, "command")?,
        environment: get::<Option<String>>(row, "environment_json")?
            .and_then(|e| serde_json::from_str(&e).ok()),
        params: Vec::new(),
        tags: Vec::new(),
        metrics: Vec::new(),
        inputs: Vec::new(),
        id,
        experiment_id,
    })
}

fn experiment_from_row(row: &AnyRow) -> Result<Experiment> {
    Ok(Experiment {
        id: get(row, "id")?,
        name: get(row, "name")?,
        artifact_location: get(row, "artifact_location")?,
        lifecycle_stage: get(row, "lifecycle_stage")?,
        creation_time: get(row, "creation_time")?,
        last_update_time: get(row, "last_update_time")?,
        tags: Vec::new(),
    })
}

/// Placeholders `$first, $first+1, …` for `n` values.
pub(crate) fn placeholders(first: usize, n: usize) -> String {
    (first..first + n)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A run name for runs that were not given one, as MLflow makes them.
fn random_run_name(id: &str) -> String {
    const ADJ: [&str; 16] = [
        "amber", "brisk", "calm", "deft", "eager", "fleet", "glad", "hardy", "keen", "lucid",
        "merry", "noble", "placid", "quick", "sly", "tidy",
    ];
    const NOUN: [&str; 16] = [
        "otter", "heron", "lynx", "finch", "bison", "crane", "gecko", "hare", "ibis", "koala",
        "lemur", "moose", "newt", "owl", "panda", "wren",
    ];
    let b = u32::from_str_radix(&id[..6], 16).unwrap_or(0);
    format!(
        "{}-{}-{}",
        ADJ[(b & 15) as usize],
        NOUN[((b >> 4) & 15) as usize],
        (b >> 8) % 1000
    )
}

/// Tags MLflow's clients set that kiln also keeps as run fields.
const RUN_NAME_TAG: &str = "mlflow.runName";
const GIT_COMMIT_TAG: &str = "mlflow.source.git.commit";

impl MetaStore {
    pub(crate) async fn ensure_default_experiment(&self) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "INSERT INTO experiments (project_id, id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES ($1, $2, 'Default', $3, 'active', $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&self.project_id)
        .bind(DEFAULT_EXPERIMENT)
        .bind(format!("mlflow-artifacts:/{DEFAULT_EXPERIMENT}"))
        .bind(now)
        .execute(&self.pool)
        .await
        .map_err(StoreError::query("creating the default experiment"))?;
        Ok(())
    }

    /// Creates an experiment; its id is the next free number.
    pub async fn create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KV],
    ) -> Result<Experiment> {
        if name.trim().is_empty() {
            return Err(StoreError::Invalid {
                field: "name".into(),
                message: "an experiment needs a non-empty name".into(),
            });
        }
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self
                .try_create_experiment(name, artifact_location, tags)
                .await
            {
                Err(StoreError::Query { source, .. })
                    if attempt < 5 && super::is_retryable(&source) =>
                {
                    if self.experiment_by_name(name).await.is_ok() {
                        return Err(StoreError::AlreadyExists {
                            kind: "Experiment",
                            id: name.into(),
                        });
                    }
                }
                other => return other,
            }
        }
    }

    async fn try_create_experiment(
        &self,
        name: &str,
        artifact_location: Option<&str>,
        tags: &[KV],
    ) -> Result<Experiment> {
        let (_w, mut tx) = self.write().await?;
        let existing = sqlx::query("SELECT id, name FROM experiments WHERE project_id = $1")
            .bind(&self.project_id)
            .fetch_all(&mut *tx)
            .await
            .map_err(StoreError::query("reading experiments"))?;
        let mut next = 1;
        for r in &existing {
            if get::<String>(r, "name")? == name {
                return Err(StoreError::AlreadyExists {
                    kind: "Experiment",
                    id: name.into(),
                });
            }
            if let Ok(n) = get::<String>(r, "id")?.parse::<i64>() {
                next = next.max(n + 1);
            }
        }
        let id = next.to_string();
        let location = artifact_location
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .unwrap_or_else(|| format!("mlflow-artifacts:/{id}"));
        let now = now_ms();
        sqlx::query(
            "INSERT INTO experiments (project_id, id, name, artifact_location, lifecycle_stage, creation_time, last_update_time) \
             VALUES ($1, $2, $3, $4, 'active', $5, $5)",
        )
        .bind(&self.project_id)
        .bind(&id)
        .bind(name)
        .bind(&location)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("inserting the experiment"))?;
        for t in tags {
            self.set_experiment_tag_in(&mut tx, &id, t).await?;
        }
        self.audit_in(
            &mut tx,
            "experiment.create",
            "experiment",
            &id,
            serde_json::json!({ "name": name }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing the experiment"))?;
        self.experiment(&id).await
    }

    async fn set_experiment_tag_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
        tag: &KV,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO experiment_tags (project_id, experiment_id, key, value) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id, experiment_id, key) DO UPDATE SET value = excluded.value",
        )
        .bind(&self.project_id)
        .bind(id)
        .bind(&tag.key)
        .bind(&tag.value)
        .execute(&mut **tx)
        .await
        .map_err(StoreError::query("setting an experiment tag"))?;
        Ok(())
    }

    pub async fn set_experiment_tag(&self, id: &str, tag: &KV) -> Result<()> {
        self.experiment(id).await?;
        let (_w, mut tx) = self.write().await?;
        self.set_experiment_tag_in(&mut tx, id, tag).await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing an experiment tag"))
    }

    async fn experiment_tags(&self, ids: &[String]) -> Result<HashMap<String, Vec<KV>>> {
        let mut out: HashMap<String, Vec<KV>> = HashMap::new();
        for chunk in ids.chunks(500) {
            let sql = format!(
                "SELECT experiment_id, key, value FROM experiment_tags WHERE project_id = $1 \
                 AND experiment_id IN ({}) ORDER BY key",
                placeholders(2, chunk.len())
            );
            let mut q = sqlx::query(AssertSqlSafe(sql)).bind(&self.project_id);
            for id in chunk {
                q = q.bind(id);
            }
            for r in q
                .fetch_all(&self.pool)
                .await
                .map_err(StoreError::query("reading experiment tags"))?
            {
                out.entry(get(&r, "experiment_id")?)
                    .or_default()
                    .push(KV::new(
                        get::<String>(&r, "key")?,
                        get::<String>(&r, "value")?,
                    ));
            }
        }
        Ok(out)
    }

    async fn experiment_where(&self, column: &str, value: &str) -> Result<Experiment> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, name, artifact_location, lifecycle_stage, creation_time, last_update_time \
             FROM experiments WHERE project_id = $1 AND {column} = $2"
        )))
        .bind(&self.project_id)
        .bind(value)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading an experiment"))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "experiment",
            id: value.into(),
        })?;
        let mut e = experiment_from_row(&row)?;
        e.tags = self
            .experiment_tags(std::slice::from_ref(&e.id))
            .await?
            .remove(&e.id)
            .unwrap_or_default();
        Ok(e)
    }

    /// An experiment without its tags: one query.
    async fn experiment_row(&self, id: &str) -> Result<Experiment> {
        let row = sqlx::query(
            "SELECT id, name, artifact_location, lifecycle_stage, creation_time, last_update_time \
             FROM experiments WHERE project_id = $1 AND id = $2",
        )
        .bind(&self.project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading an experiment"))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "experiment",
            id: id.into(),
        })?;
        experiment_from_row(&row)
    }

    pub async fn experiment(&self, id: &str) -> Result<Experiment> {
        self.experiment_where("id", id).await
    }

    pub async fn experiment_by_name(&self, name: &str) -> Result<Experiment> {
        self.experiment_where("name", name).await
    }

    /// An experiment named by id or by name (ids win).
    pub async fn find_experiment(&self, id_or_name: &str) -> Result<Experiment> {
        match self.experiment(id_or_name).await {
            Err(StoreError::NotFound { .. }) => self.experiment_by_name(id_or_name).await,
            other => other,
        }
    }

    /// Experiments, oldest first; `name_like` filters names with SQL LIKE.
    pub async fn search_experiments(
        &self,
        view: ViewType,
        name_like: Option<&str>,
        max_results: i64,
        page_token: Option<&str>,
    ) -> Result<Page<Experiment>> {
        let offset = page_offset(page_token)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT id, name, artifact_location, lifecycle_stage, creation_time, last_update_time \
             FROM experiments WHERE project_id = $1 AND {} AND ($2 = '' OR name LIKE $2) \
             ORDER BY creation_time, id LIMIT $3 OFFSET $4",
            view.sql("lifecycle_stage")
        )))
        .bind(&self.project_id)
        .bind(name_like.unwrap_or(""))
        .bind(max_results + 1)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("searching experiments"))?;
        let mut items = rows
            .iter()
            .map(experiment_from_row)
            .collect::<Result<Vec<_>>>()?;
        let ids: Vec<String> = items.iter().map(|e| e.id.clone()).collect();
        let mut tags = self.experiment_tags(&ids).await?;
        for e in &mut items {
            e.tags = tags.remove(&e.id).unwrap_or_default();
        }
        Ok(page(items, offset, max_results))
    }

    /// Marks an experiment (and so its runs, to searches) deleted or active.
    pub async fn set_experiment_stage(&self, id: &str, stage: &str) -> Result<()> {
        if id == DEFAULT_EXPERIMENT && stage == "deleted" {
            return Err(StoreError::Invalid {
                field: "experiment_id".into(),
                message: "the default experiment cannot be deleted".into(),
            });
        }
        self.experiment(id).await?;
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "UPDATE experiments SET lifecycle_stage = $3, last_update_time = $4 WHERE project_id = $1 AND id = $2",
        )
        .bind(&self.project_id)
        .bind(id)
        .bind(stage)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("updating the experiment"))?;
        let action = if stage == "deleted" {
            "experiment.delete"
        } else {
            "experiment.restore"
        };
        self.audit_in(&mut tx, action, "experiment", id, serde_json::json!({}))
            .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing the experiment"))
    }

    pub async fn rename_experiment(&self, id: &str, name: &str) -> Result<()> {
        self.experiment(id).await?;
        if self.experiment_by_name(name).await.is_ok() {
            return Err(StoreError::AlreadyExists {
                kind: "Experiment",
                id: name.into(),
            });
        }
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "UPDATE experiments SET name = $3, last_update_time = $4 WHERE project_id = $1 AND id = $2",
        )
        .bind(&self.project_id)
        .bind(id)
        .bind(name)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("renaming the experiment"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing the experiment"))
    }

    /// Starts a run in an experiment.
    pub async fn create_run(&self, new: NewTrackedRun) -> Result<Run> {
        let experiment = self.experiment_row(&new.experiment_id).await?;
        if experiment.lifecycle_stage != "active" {
            return Err(StoreError::Invalid {
                field: "experiment_id".into(),
                message: format!(
                    "experiment `{}` is deleted; restore it to start runs in it",
                    experiment.id
                ),
            });
        }
        let id = blake3::hash(uuid::Uuid::now_v7().as_bytes()).to_hex()[..32].to_string();
        let start = new.start_time.unwrap_or_else(now_ms);
        let tag_name = new
            .tags
            .iter()
            .find(|t| t.key == RUN_NAME_TAG)
            .map(|t| t.value.clone());
        let name = new
            .name
            .filter(|n| !n.is_empty())
            .or(tag_name)
            .unwrap_or_else(|| random_run_name(&id));
        let commit = new.source_commit.clone().or_else(|| {
            new.tags
                .iter()
                .find(|t| t.key == GIT_COMMIT_TAG)
                .map(|t| t.value.clone())
        });
        let user = new.user_id.unwrap_or_else(kiln_core::current_actor);
        let artifact_uri = format!(
            "{}/{id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let started_at = chrono::DateTime::from_timestamp_millis(start)
            .unwrap_or_default()
            .to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
        let command_copy = new.command.clone();
        let environment_copy = new.environment.clone();
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "INSERT INTO runs (project_id, id, kind, status, params_json, metrics_json, artifacts_json, author, \
             started_at, experiment_id, name, lifecycle_stage, start_time, artifact_uri, source_commit, source_dirty, \
             command, environment_json) \
             VALUES ($1, $2, $3, 'RUNNING', '{}', '{}', '{}', $4, $5, $6, $7, 'active', $8, $9, $10, $11, $12, $13)",
        )
        .bind(&self.project_id)
        .bind(&id)
        .bind(if new.kind.is_empty() {
            "external"
        } else {
            new.kind.as_str()
        })
        .bind(&user)
        .bind(&started_at)
        .bind(&experiment.id)
        .bind(&name)
        .bind(start)
        .bind(&artifact_uri)
        .bind(commit.clone())
        .bind(new.source_dirty.map(i64::from))
        .bind(new.command.clone())
        .bind(new.environment.as_ref().map(|e| e.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("inserting the run"))?;
        // The tags, each key once (the last value wins), in one statement.
        let mut tags: Vec<KV> = Vec::with_capacity(new.tags.len() + 1);
        for t in new.tags.into_iter().filter(|t| t.key != RUN_NAME_TAG) {
            tags.retain(|x| x.key != t.key);
            tags.push(t);
        }
        tags.push(KV::new(RUN_NAME_TAG, name.clone()));
        tags.sort_by(|a, b| a.key.cmp(&b.key));
        let mut q = sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO run_tags (run_id, key, value) VALUES {}",
            (0..tags.len())
                .map(|i| format!("($1, ${}, ${})", 2 + 2 * i, 3 + 2 * i))
                .collect::<Vec<_>>()
                .join(", ")
        )))
        .bind(&id);
        for t in &tags {
            q = q.bind(&t.key).bind(&t.value);
        }
        q.execute(&mut *tx)
            .await
            .map_err(StoreError::query("setting the run's tags"))?;
        self.audit_in(
            &mut tx,
            "run.create",
            "run",
            &id,
            serde_json::json!({ "experiment_id": experiment.id, "name": name }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing the run"))?;
        // What was written, without reading it back.
        Ok(Run {
            id,
            experiment_id: experiment.id,
            name,
            kind: if new.kind.is_empty() {
                "external".into()
            } else {
                new.kind
            },
            status: "RUNNING".into(),
            user_id: user,
            start_time: start,
            end_time: None,
            artifact_uri,
            lifecycle_stage: "active".into(),
            source_commit: commit,
            source_dirty: new.source_dirty,
            command: command_copy,
            environment: environment_copy,
            params: Vec::new(),
            tags,
            metrics: Vec::new(),
            inputs: Vec::new(),
        })
    }

    /// A run's status (RUNNING, SCHEDULED, …) or lifecycle, checking it exists.
    async fn run_state_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        id: &str,
    ) -> Result<(String, String)> {
        let row = sqlx::query(
            "SELECT status, lifecycle_stage FROM runs WHERE project_id = $1 AND id = $2",
        )
        .bind(&self.project_id)
        .bind(id)
        .fetch_optional(&mut **tx)
        .await
        .map_err(StoreError::query("reading a run"))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "run",
            id: id.into(),
        })?;
        Ok((get(&row, "status")?, get(&row, "lifecycle_stage")?))
    }

    async fn active_run_in(&self, tx: &mut Transaction<'static, Any>, id: &str) -> Result<()> {
        let (_, stage) = self.run_state_in(tx, id).await?;
        if stage != "active" {
            return Err(StoreError::Invalid {
                field: "run_id".into(),
                message: format!(
                    "The run {id} must be in the 'active' state. Current state is {stage}."
                ),
            });
        }
        Ok(())
    }

    /// Changes a run's status, end or name; returns its info (without
    /// params, metrics, tags or inputs: `tracked_run` reads those).
    pub async fn update_run(&self, id: &str, update: RunUpdate) -> Result<Run> {
        if let Some(s) = &update.status
            && !RUN_STATUSES.contains(&s.as_str())
        {
            return Err(StoreError::Invalid {
                field: "status".into(),
                message: format!("`{s}` is not one of {}", RUN_STATUSES.join(", ")),
            });
        }
        let (_w, mut tx) = self.write().await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "UPDATE runs SET status = COALESCE($3, status), end_time = COALESCE($4, end_time), \
             name = COALESCE($5, name), \
             duration_ms = CASE WHEN $4 IS NULL THEN duration_ms ELSE $4 - start_time END, \
             finished_at = CASE WHEN $4 IS NULL THEN finished_at ELSE $6 END \
             WHERE project_id = $1 AND id = $2 AND lifecycle_stage = 'active' RETURNING {}",
            RUN_COLUMNS.replace("r.", "")
        )))
        .bind(&self.project_id)
        .bind(id)
        .bind(update.status.clone())
        .bind(update.end_time)
        .bind(update.name.clone().filter(|n| !n.is_empty()))
        .bind(kiln_core::now_rfc3339())
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query("updating the run"))?;
        let Some(row) = row else {
            // Say why: no such run, or not active.
            self.active_run_in(&mut tx, id).await?;
            return Err(StoreError::NotFound {
                kind: "run",
                id: id.into(),
            });
        };
        let run = run_from_row(&row)?;
        if let Some(n) = update.name.filter(|n| !n.is_empty()) {
            self.upsert_tags_in(&mut tx, id, &[KV::new(RUN_NAME_TAG, n)])
                .await?;
        }
        if let Some(s) = &update.status
            && s != "RUNNING"
        {
            self.audit_in(
                &mut tx,
                "run.end",
                "run",
                id,
                serde_json::json!({ "status": s }),
            )
            .await?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing the run"))?;
        Ok(run)
    }

    /// Marks a run deleted (`kiln gc` removes it for good) or active again.
    pub async fn set_run_stage(&self, id: &str, stage: &str) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        self.run_state_in(&mut tx, id).await?;
        sqlx::query(
            "UPDATE runs SET lifecycle_stage = $3, deleted_time = $4 WHERE project_id = $1 AND id = $2",
        )
        .bind(&self.project_id)
        .bind(id)
        .bind(stage)
        .bind((stage == "deleted").then(now_ms))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("updating the run"))?;
        let action = if stage == "deleted" {
            "run.delete"
        } else {
            "run.restore"
        };
        self.audit_in(&mut tx, action, "run", id, serde_json::json!({}))
            .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing the run"))
    }

    pub(crate) async fn upsert_tags_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        run_id: &str,
        tags: &[KV],
    ) -> Result<()> {
        for t in tags {
            sqlx::query(
                "INSERT INTO run_tags (run_id, key, value) VALUES ($1, $2, $3) \
                 ON CONFLICT (run_id, key) DO UPDATE SET value = excluded.value",
            )
            .bind(run_id)
            .bind(&t.key)
            .bind(&t.value)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query("setting a run tag"))?;
            if t.key == RUN_NAME_TAG {
                sqlx::query("UPDATE runs SET name = $3 WHERE project_id = $1 AND id = $2")
                    .bind(&self.project_id)
                    .bind(run_id)
                    .bind(&t.value)
                    .execute(&mut **tx)
                    .await
                    .map_err(StoreError::query("renaming the run"))?;
            }
            if t.key == GIT_COMMIT_TAG {
                sqlx::query("UPDATE runs SET source_commit = $3 WHERE project_id = $1 AND id = $2")
                    .bind(&self.project_id)
                    .bind(run_id)
                    .bind(&t.value)
                    .execute(&mut **tx)
                    .await
                    .map_err(StoreError::query("recording the run's commit"))?;
            }
        }
        Ok(())
    }

    /// Logs metrics, parameters and tags to a run in one transaction: all
    /// of them or, on an error, none. A parameter cannot change its value.
    /// A point logged again adds nothing (but links it to `model_id`).
    pub async fn log_batch(
        &self,
        run_id: &str,
        metrics: &[Metric],
        params: &[KV],
        tags: &[KV],
        model_id: Option<&str>,
    ) -> Result<()> {
        let mut seen: HashMap<&str, &str> = HashMap::new();
        for p in params {
            if let Some(prev) = seen.insert(&p.key, &p.value)
                && prev != p.value
            {
                return Err(StoreError::Invalid {
                    field: "params".into(),
                    message: format!(
                        "Duplicate parameter keys have been submitted: key `{}` has values `{prev}` and `{}`",
                        p.key, p.value
                    ),
                });
            }
        }
        let unique = unique_points(metrics);
        if params.is_empty() && tags.is_empty() && unique.len() <= MAX_POINTS_PER_STATEMENT {
            // Points only: one statement, which checks the run is active and
            // (by trigger) keeps latest_metrics; no transaction around it.
            let _w = self.write_lock().await;
            let written = if unique.is_empty() {
                0
            } else {
                insert_points(
                    self.writer.is_none(),
                    &self.project_id,
                    run_id,
                    &unique,
                    model_id,
                )
                .execute(&self.pool)
                .await
                .map_err(StoreError::query("logging metrics"))?
                .rows_affected()
            };
            if written == 0 {
                // Nothing written: say why (no such run, or not active).
                let mut tx = self.begin().await?;
                self.active_run_in(&mut tx, run_id).await?;
                tx.rollback()
                    .await
                    .map_err(StoreError::query("rolling back"))?;
            }
            return Ok(());
        }
        let (_w, mut tx) = self.write().await?;
        self.active_run_in(&mut tx, run_id).await?;
        self.log_params_in(&mut tx, run_id, params).await?;
        self.upsert_tags_in(&mut tx, run_id, tags).await?;
        self.log_metrics_in(&mut tx, run_id, metrics, model_id)
            .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing logged values"))
    }

    pub(crate) async fn log_params_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        run_id: &str,
        params: &[KV],
    ) -> Result<()> {
        for p in params {
            let inserted = sqlx::query(
                "INSERT INTO run_params (run_id, key, value) VALUES ($1, $2, $3) ON CONFLICT (run_id, key) DO NOTHING",
            )
            .bind(run_id)
            .bind(&p.key)
            .bind(&p.value)
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query("logging a parameter"))?
            .rows_affected();
            if inserted == 0 {
                let old: String = get(
                    &sqlx::query("SELECT value FROM run_params WHERE run_id = $1 AND key = $2")
                        .bind(run_id)
                        .bind(&p.key)
                        .fetch_one(&mut **tx)
                        .await
                        .map_err(StoreError::query("reading a parameter"))?,
                    "value",
                )?;
                if old != p.value {
                    return Err(StoreError::Invalid {
                        field: "params".into(),
                        message: format!(
                            "Changing param values is not allowed. Param with key='{}' was already logged \
                             with value='{old}' for run ID='{run_id}'. Attempted logging new value '{}'.",
                            p.key, p.value
                        ),
                    });
                }
            }
        }
        Ok(())
    }

    pub(crate) async fn log_metrics_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        run_id: &str,
        metrics: &[Metric],
        model_id: Option<&str>,
    ) -> Result<()> {
        let unique = unique_points(metrics);
        for chunk in unique.chunks(MAX_POINTS_PER_STATEMENT) {
            insert_points(
                self.writer.is_none(),
                &self.project_id,
                run_id,
                chunk,
                model_id,
            )
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query("logging metrics"))?;
        }
        Ok(())
    }

    pub async fn delete_run_tag(&self, run_id: &str, key: &str) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        self.active_run_in(&mut tx, run_id).await?;
        let n = sqlx::query("DELETE FROM run_tags WHERE run_id = $1 AND key = $2")
            .bind(run_id)
            .bind(key)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("deleting a run tag"))?
            .rows_affected();
        if n == 0 {
            return Err(StoreError::NotFound {
                kind: "run tag",
                id: key.into(),
            });
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing a run tag"))
    }

    /// Records logged models a run produced (MLflow's run outputs).
    pub async fn record_run_outputs(&self, run_id: &str, model_ids: &[String]) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        self.active_run_in(&mut tx, run_id).await?;
        let now = kiln_core::now_rfc3339();
        for m in model_ids {
            self.edge_in(&mut tx, "logged_model", m, "output_of", "run", run_id, &now)
                .await?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing run outputs"))
    }

    /// Every point of one metric of a run, by step then time.
    pub async fn metric_history(
        &self,
        run_id: &str,
        key: &str,
        max_results: i64,
        page_token: Option<&str>,
    ) -> Result<Page<Metric>> {
        let offset = page_offset(page_token)?;
        self.tracked_run_exists(run_id).await?;
        let rows = sqlx::query(
            "SELECT key, step, timestamp, value, is_nan FROM run_metrics WHERE run_id = $1 AND key = $2 \
             ORDER BY step, timestamp, is_nan, value LIMIT $3 OFFSET $4",
        )
        .bind(run_id)
        .bind(key)
        .bind(max_results + 1)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading a metric's history"))?;
        let items = rows
            .iter()
            .map(metric_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page(items, offset, max_results))
    }

    async fn tracked_run_exists(&self, id: &str) -> Result<()> {
        sqlx::query("SELECT id FROM runs WHERE project_id = $1 AND id = $2")
            .bind(&self.project_id)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(StoreError::query("reading a run"))?
            .map(|_| ())
            .ok_or_else(|| StoreError::NotFound {
                kind: "run",
                id: id.into(),
            })
    }

    /// Records datasets a run read. A dataset logged again is kept once.
    pub async fn log_inputs(&self, run_id: &str, inputs: &[RunInput]) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        self.active_run_in(&mut tx, run_id).await?;
        self.log_inputs_in(&mut tx, run_id, inputs).await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing run inputs"))
    }

    pub(crate) async fn log_inputs_in(
        &self,
        tx: &mut Transaction<'static, Any>,
        run_id: &str,
        inputs: &[RunInput],
    ) -> Result<()> {
        let base: i64 = get(
            &sqlx::query("SELECT COUNT(*) AS n FROM run_inputs WHERE run_id = $1")
                .bind(run_id)
                .fetch_one(&mut **tx)
                .await
                .map_err(StoreError::query("reading run inputs"))?,
            "n",
        )?;
        for (i, input) in inputs.iter().enumerate() {
            sqlx::query(
                "INSERT INTO run_inputs (run_id, position, name, digest, source_type, source, schema_json, \
                 profile_json, role, tags_json) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) \
                 ON CONFLICT (run_id, name, digest) DO UPDATE SET role = COALESCE(excluded.role, run_inputs.role), \
                 tags_json = excluded.tags_json",
            )
            .bind(run_id)
            .bind(base + i as i64)
            .bind(&input.name)
            .bind(&input.digest)
            .bind(&input.source_type)
            .bind(&input.source)
            .bind(input.schema.clone())
            .bind(input.profile.clone())
            .bind(input.role.clone())
            .bind(
                serde_json::to_string(
                    &input
                        .tags
                        .iter()
                        .map(|t| (t.key.as_str(), t.value.as_str()))
                        .collect::<Vec<_>>(),
                )
                .expect("tags serialise"),
            )
            .execute(&mut **tx)
            .await
            .map_err(StoreError::query("logging a run input"))?;
            // A kiln dataset version is a node of its own; a dataset a client
            // described (MLflow's `log_input`) is named by its name and digest.
            let (kind, id) = if input.source_type == "kiln" {
                ("dataset_version", input.source.clone())
            } else {
                (
                    "external_dataset",
                    format!("{}@{}", input.name, input.digest),
                )
            };
            self.edge_in(
                tx,
                "run",
                run_id,
                "used",
                kind,
                &id,
                &kiln_core::now_rfc3339(),
            )
            .await?;
        }
        Ok(())
    }

    /// A run with its parameters, tags, latest metrics and inputs.
    pub async fn tracked_run(&self, id: &str) -> Result<Run> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM runs r WHERE r.project_id = $1 AND r.id = $2"
        )))
        .bind(&self.project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading a run"))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "run",
            id: id.into(),
        })?;
        let mut runs = vec![run_from_row(&row)?];
        self.hydrate(&mut runs).await?;
        Ok(runs.pop().expect("one run"))
    }

    /// Fills in the parameters, tags, latest metrics and inputs of runs.
    async fn hydrate(&self, runs: &mut [Run]) -> Result<()> {
        let mut index: HashMap<String, usize> = HashMap::new();
        for (i, r) in runs.iter().enumerate() {
            index.insert(r.id.clone(), i);
        }
        let ids: Vec<String> = runs.iter().map(|r| r.id.clone()).collect();
        for chunk in ids.chunks(500) {
            // Positional on SQLite: its named ($N) parameters are found by a
            // list walk, quadratic over a 500-id list.
            let list = if self.writer.is_some() {
                vec!["?"; chunk.len()].join(", ")
            } else {
                placeholders(1, chunk.len())
            };
            let fetch = |sql: String| {
                let mut q = sqlx::query(AssertSqlSafe(sql));
                for id in chunk {
                    q = q.bind(id);
                }
                q.fetch_all(&self.pool)
            };
            for r in fetch(format!(
                "SELECT run_id, key, value FROM run_params WHERE run_id IN ({list}) ORDER BY run_id, key"
            ))
            .await
            .map_err(StoreError::query("reading run parameters"))?
            {
                let i = index[&get::<String>(&r, "run_id")?];
                runs[i].params.push(KV::new(
                    get::<String>(&r, "key")?,
                    get::<String>(&r, "value")?,
                ));
            }
            for r in fetch(format!(
                "SELECT run_id, key, value FROM run_tags WHERE run_id IN ({list}) ORDER BY run_id, key"
            ))
            .await
            .map_err(StoreError::query("reading run tags"))?
            {
                let i = index[&get::<String>(&r, "run_id")?];
                runs[i].tags.push(KV::new(
                    get::<String>(&r, "key")?,
                    get::<String>(&r, "value")?,
                ));
            }
            for r in fetch(format!(
                "SELECT run_id, key, step, timestamp, value, is_nan FROM latest_metrics \
                 WHERE run_id IN ({list}) ORDER BY run_id, key"
            ))
            .await
            .map_err(StoreError::query("reading run metrics"))?
            {
                let i = index[&get::<String>(&r, "run_id")?];
                runs[i].metrics.push(metric_from_row(&r)?);
            }
            for r in fetch(format!(
                "SELECT run_id, name, digest, source_type, source, schema_json, profile_json, role, tags_json \
                 FROM run_inputs WHERE run_id IN ({list}) ORDER BY position"
            ))
            .await
            .map_err(StoreError::query("reading run inputs"))?
            {
                let i = index[&get::<String>(&r, "run_id")?];
                let tags: Vec<(String, String)> =
                    serde_json::from_str(&get::<String>(&r, "tags_json")?).unwrap_or_default();
                runs[i].inputs.push(RunInput {
                    name: get(&r, "name")?,
                    digest: get(&r, "digest")?,
                    source_type: get(&r, "source_type")?,
                    source: get(&r, "source")?,
                    schema: get(&r, "schema_json")?,
                    profile: get(&r, "profile_json")?,
                    role: get(&r, "role")?,
                    tags: tags.into_iter().map(|(k, v)| KV::new(k, v)).collect(),
                });
            }
        }
        Ok(())
    }

    /// Runs of some experiments (all, when `experiment_ids` is empty) that
    /// match an MLflow filter, in an MLflow `order_by` order.
    pub async fn search_runs(
        &self,
        experiment_ids: &[String],
        filter: &str,
        order_by: &[String],
        view: ViewType,
        max_results: i64,
        page_token: Option<&str>,
    ) -> Result<Page<Run>> {
        let offset = page_offset(page_token)?;
        let first = 2 + experiment_ids.len();
        let compiled =
            compile_run_search(filter, order_by, first).map_err(|e| StoreError::Invalid {
                field: "filter".into(),
                message: e.0,
            })?;
        let mut conditions = vec![
            "r.project_id = $1".to_string(),
            view.sql("r.lifecycle_stage"),
        ];
        if !experiment_ids.is_empty() {
            conditions.push(format!(
                "r.experiment_id IN ({})",
                placeholders(2, experiment_ids.len())
            ));
        }
        conditions.extend(compiled.conditions);
        let n = first + compiled.binds.len();
        let sql = format!(
            "SELECT {RUN_COLUMNS} FROM runs r {} WHERE {} ORDER BY {} LIMIT ${n} OFFSET ${}",
            compiled.joins.join(" "),
            conditions.join(" AND "),
            compiled.order_by.join(", "),
            n + 1
        );
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(&self.project_id);
        for e in experiment_ids {
            q = q.bind(e);
        }
        for b in compiled.binds {
            q = match b {
                Bind::Text(s) => q.bind(s),
                Bind::Float(f) => q.bind(f),
                Bind::Int(i) => q.bind(i),
            };
        }
        let rows = q
            .bind(max_results + 1)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("searching runs"))?;
        let mut items = rows.iter().map(run_from_row).collect::<Result<Vec<_>>>()?;
        let more = items.len() as i64 > max_results;
        items.truncate(max_results as usize);
        self.hydrate(&mut items).await?;
        Ok(Page {
            next_page_token: more.then(|| (offset + max_results).to_string()),
            items,
        })
    }

    /// The run with this id, or the only one whose id starts with it (at
    /// least 6 characters).
    pub async fn find_run(&self, spec: &str) -> Result<Run> {
        let record = self.run(spec).await?;
        self.tracked_run(&record.id).await
    }
}

fn metric_from_row(r: &AnyRow) -> Result<Metric> {
    let is_nan: i64 = get(r, "is_nan")?;
    Ok(Metric {
        key: get(r, "key")?,
        value: if is_nan != 0 {
            f64::NAN
        } else {
            get::<Option<f64>>(r, "value")?.unwrap_or(f64::NAN)
        },
        timestamp: get(r, "timestamp")?,
        step: get(r, "step")?,
    })
}

/// Points per INSERT: a log-batch of 1,000 points is two statements.
const MAX_POINTS_PER_STATEMENT: usize = 500;

/// The points, each once: a point sent twice in one statement would trip
/// PostgreSQL's ON CONFLICT.
fn unique_points(metrics: &[Metric]) -> Vec<&Metric> {
    let mut seen = std::collections::HashSet::with_capacity(metrics.len());
    metrics
        .iter()
        .filter(|m| {
            let value = if m.value.is_nan() { 0.0 } else { m.value };
            seen.insert((
                m.key.as_str(),
                m.step,
                m.timestamp,
                value.to_bits(),
                m.value.is_nan(),
            ))
        })
        .collect()
}

/// One statement inserting points into an active run (none if the run is
/// missing or deleted); a point already stored is only linked to
/// `model_id`. A trigger keeps latest_metrics.
///
/// On SQLite the placeholders are plain `?`: SQLite looks a named (`$N`)
/// parameter up by walking a list, so binding thousands of them is
/// quadratic (two thirds of a 1,000-point log-batch's time, measured).
fn insert_points<'q>(
    postgres: bool,
    project_id: &'q str,
    run_id: &'q str,
    points: &[&'q Metric],
    model_id: Option<&'q str>,
) -> sqlx::query::Query<'q, Any, sqlx::any::AnyArguments> {
    let mut sql = String::from(
        "INSERT INTO run_metrics (run_id, key, step, timestamp, value, is_nan, model_id) SELECT * FROM (VALUES ",
    );
    for i in 0..points.len() {
        if i > 0 {
            sql.push_str(", ");
        }
        if postgres {
            let b = 4 + i * 5;
            sql.push_str(&format!(
                "($1, ${b}, ${}, ${}, ${}, ${}, $2)",
                b + 1,
                b + 2,
                b + 3,
                b + 4
            ));
        } else {
            sql.push_str("(?, ?, ?, ?, ?, ?, ?)");
        }
    }
    let (project, run) = if postgres { ("$3", "$1") } else { ("?", "?") };
    sql.push_str(&format!(
        ") AS v WHERE EXISTS (SELECT 1 FROM runs WHERE project_id = {project} AND id = {run} \
         AND lifecycle_stage = 'active') ON CONFLICT (run_id, key, step, timestamp, value, is_nan) \
         DO UPDATE SET model_id = COALESCE(excluded.model_id, run_metrics.model_id)"
    ));
    let mut q = sqlx::query(AssertSqlSafe(sql));
    if postgres {
        q = q.bind(run_id).bind(model_id).bind(project_id);
    }
    for m in points {
        if !postgres {
            q = q.bind(run_id);
        }
        q = q
            .bind(m.key.as_str())
            .bind(m.step)
            .bind(m.timestamp)
            // A plain f64 always: sqlx 0.9's Any driver binds a NULL f64 as
            // f32, which PostgreSQL then refuses for that cached statement.
            .bind(if m.value.is_nan() { 0.0 } else { m.value })
            .bind(i64::from(m.value.is_nan()));
        if !postgres {
            q = q.bind(model_id);
        }
    }
    if !postgres {
        q = q.bind(project_id).bind(run_id);
    }
    q
}
