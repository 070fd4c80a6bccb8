//! Runs: one record per execution of a kiln job, with its inputs,
//! parameters, metrics and the objects it produced.

use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::tracking::{DEFAULT_EXPERIMENT, KV, Metric, RunInput};
use super::{MetaStore, get, now_ms};
use crate::{Result, StoreError};
use kiln_core::ContentHash;

/// What [`MetaStore::record_run`] needs.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// What ran, e.g. `train`.
    pub kind: String,
    /// `finished` or `failed`.
    pub status: String,
    pub dataset: Option<String>,
    pub dataset_version: Option<ContentHash>,
    pub params: serde_json::Value,
    pub metrics: serde_json::Value,
    pub model_object: Option<ContentHash>,
    /// Other objects by role, e.g. `{"leaderboard": "<hash>"}`.
    pub artifacts: serde_json::Value,
    pub started_at: String,
    pub duration_ms: i64,
    /// The experiment it belongs to (default: [`DEFAULT_EXPERIMENT`]).
    pub experiment_id: Option<String>,
    /// Flat parameters and final metrics, searchable like any run's.
    pub flat_params: Vec<KV>,
    pub flat_metrics: Vec<(String, f64)>,
    /// The role the dataset version played (`train`).
    pub dataset_role: Option<String>,
    pub source_commit: Option<String>,
    pub source_dirty: Option<bool>,
    pub command: Option<String>,
    pub environment: Option<serde_json::Value>,
}

/// A recorded run.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub dataset: Option<String>,
    pub dataset_version: Option<String>,
    pub params: serde_json::Value,
    pub metrics: serde_json::Value,
    pub model_object: Option<String>,
    pub artifacts: serde_json::Value,
    pub author: String,
    pub started_at: String,
    pub finished_at: Option<String>,
    pub duration_ms: Option<i64>,
}

fn record(row: &AnyRow) -> Result<RunRecord> {
    let json = |col: &'static str| -> Result<serde_json::Value> {
        let text: String = get(row, col)?;
        serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
            context: "a run",
            detail: e.to_string(),
        })
    };
    Ok(RunRecord {
        id: get(row, "id")?,
        kind: get(row, "kind")?,
        status: get(row, "status")?,
        dataset: get(row, "dataset")?,
        dataset_version: get(row, "dataset_version")?,
        params: json("params_json")?,
        metrics: json("metrics_json")?,
        model_object: get(row, "model_object")?,
        artifacts: json("artifacts_json")?,
        author: get(row, "author")?,
        started_at: get(row, "started_at")?,
        finished_at: get(row, "finished_at")?,
        duration_ms: get(row, "duration_ms")?,
    })
}

const COLUMNS: &str = "id, kind, status, dataset, dataset_version, params_json, metrics_json, \
    model_object, artifacts_json, author, started_at, finished_at, duration_ms";

impl MetaStore {
    /// Records a finished run, its lineage (trained on a dataset version;
    /// produced a model object) and its audit entry, in one transaction.
    pub async fn record_run(&self, new: NewRun) -> Result<RunRecord> {
        // Random-looking ids, so short prefixes of runs made in the same
        // second still differ.
        let id = blake3::hash(uuid::Uuid::now_v7().as_bytes()).to_hex()[..32].to_string();
        let now = kiln_core::now_rfc3339();
        let end = now_ms();
        let start = end - new.duration_ms;
        let experiment = self
            .experiment(new.experiment_id.as_deref().unwrap_or(DEFAULT_EXPERIMENT))
            .await?;
        let artifact_uri = format!(
            "{}/{id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let name = format!("{}-{}", new.kind, &id[..8]);
        let (_w, mut tx) = self.write().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO runs (project_id, {COLUMNS}, experiment_id, name, start_time, end_time, artifact_uri, \
             source_commit, source_dirty, command, environment_json) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, \
             $15, $16, $17, $18, $19, $20, $21, $22, $23)"
        )))
        .bind(&self.project_id)
        .bind(&id)
        .bind(&new.kind)
        .bind(new.status.to_ascii_uppercase())
        .bind(new.dataset.clone())
        .bind(new.dataset_version.map(|h| h.to_hex()))
        .bind(new.params.to_string())
        .bind(new.metrics.to_string())
        .bind(new.model_object.map(|h| h.to_hex()))
        .bind(new.artifacts.to_string())
        .bind(kiln_core::current_actor())
        .bind(&new.started_at)
        .bind(&now)
        .bind(new.duration_ms)
        .bind(&experiment.id)
        .bind(&name)
        .bind(start)
        .bind(end)
        .bind(&artifact_uri)
        .bind(new.source_commit.clone())
        .bind(new.source_dirty.map(i64::from))
        .bind(new.command.clone())
        .bind(new.environment.as_ref().map(|e| e.to_string()))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("inserting the run"))?;
        self.log_params_in(&mut tx, &id, &new.flat_params).await?;
        let points: Vec<Metric> = new
            .flat_metrics
            .iter()
            .map(|(k, v)| Metric {
                key: k.clone(),
                value: *v,
                timestamp: end,
                step: 0,
            })
            .collect();
        self.log_metrics_in(&mut tx, &id, &points, None).await?;
        let mut tags = vec![
            KV::new("mlflow.runName", name.clone()),
            KV::new("mlflow.user", kiln_core::current_actor()),
            KV::new("mlflow.source.type", "LOCAL"),
            KV::new("mlflow.source.name", "kiln"),
            KV::new("kiln.kind", new.kind.clone()),
        ];
        if let Some(c) = &new.source_commit {
            tags.push(KV::new("mlflow.source.git.commit", c.clone()));
        }
        self.upsert_tags_in(&mut tx, &id, &tags).await?;
        if let (Some(name), Some(v)) = (&new.dataset, new.dataset_version) {
            let role = new.dataset_role.clone().unwrap_or_else(|| "train".into());
            self.log_inputs_in(
                &mut tx,
                &id,
                &[RunInput {
                    name: name.clone(),
                    digest: v.to_hex()[..16].to_string(),
                    source_type: "kiln".into(),
                    source: format!("{name}@{}", v.to_hex()),
                    schema: None,
                    profile: None,
                    role: Some(role.clone()),
                    tags: vec![KV::new("mlflow.data.context", role)],
                }],
            )
            .await?;
        }
        if let (Some(name), Some(v)) = (&new.dataset, new.dataset_version) {
            self.edge_in(
                &mut tx,
                "run",
                &id,
                "used",
                "dataset_version",
                &format!("{name}@{}", v.to_hex()),
                &now,
            )
            .await?;
        }
        if let Some(m) = new.model_object {
            self.edge_in(
                &mut tx,
                "model_artifact",
                &m.to_hex(),
                "produced_by",
                "run",
                &id,
                &now,
            )
            .await?;
        }
        self.audit_in(
            &mut tx,
            &format!("run.{}", new.kind),
            "run",
            &id,
            serde_json::json!({ "status": new.status, "dataset": new.dataset, "metrics": new.metrics }),
        )
        .await?;
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM runs WHERE project_id = $1 AND id = $2"
        )))
        .bind(&self.project_id)
        .bind(&id)
        .fetch_one(&mut *tx)
        .await
        .map_err(StoreError::query("reading the run back"))?;
        let run = record(&row)?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing the run"))?;
        Ok(run)
    }

    /// The run with this id, or the only one whose id starts with it
    /// (at least 6 characters).
    pub async fn run(&self, spec: &str) -> Result<RunRecord> {
        let prefix = spec.to_ascii_lowercase();
        if prefix.len() < 6 || !prefix.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(StoreError::UnknownRun(spec.into()));
        }
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM runs WHERE project_id = $1 AND id LIKE $2 ORDER BY started_at LIMIT 6"
        )))
        .bind(&self.project_id)
        .bind(format!("{prefix}%"))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("finding a run"))?;
        match rows.len() {
            0 => Err(StoreError::UnknownRun(spec.into())),
            1 => record(&rows[0]),
            _ => {
                let ids: Result<Vec<String>> =
                    rows.iter().map(|r| get::<String>(r, "id")).collect();
                Err(StoreError::AmbiguousRun {
                    spec: spec.into(),
                    candidates: ids?
                        .iter()
                        .map(|i| format!("`{}`", &i[..12]))
                        .collect::<Vec<_>>()
                        .join(", "),
                })
            }
        }
    }

    /// Runs, newest first.
    pub async fn runs(&self, limit: i64) -> Result<Vec<RunRecord>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {COLUMNS} FROM runs WHERE project_id = $1 ORDER BY started_at DESC, id LIMIT $2"
        )))
        .bind(&self.project_id)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing runs"))?;
        rows.iter().map(record).collect()
    }
}
