//! Pipeline runs and step runs; schedule ticks claimed once.

use serde::Serialize;
use sqlx::any::AnyRow;

use super::{MetaStore, get, now_ms};
use crate::{Result, StoreError};

/// One run of a pipeline.
#[derive(Debug, Clone, Serialize)]
pub struct PipelineRun {
    pub id: String,
    pub pipeline: String,
    /// running, succeeded, failed or cancelled.
    pub status: String,
    /// `manual`, `schedule:TICK`, `trigger:ID` or `reproduce:RUN`.
    pub cause: String,
    pub params: serde_json::Value,
    /// The pipeline as declared when it ran.
    pub definition: serde_json::Value,
    pub source_commit: Option<String>,
    pub source_dirty: Option<bool>,
    pub author: String,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

/// One run of one step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StepRun {
    pub run_id: String,
    pub step: String,
    pub kind: String,
    pub position: i64,
    /// waiting, queued, running, succeeded, cached, failed, skipped or cancelled.
    pub status: String,
    pub attempts: i64,
    /// Tries workers may start before the step fails.
    pub max_attempts: Option<i64>,
    pub cache_key: Option<String>,
    /// The step as resolved and what it read.
    pub inputs: serde_json::Value,
    pub outputs: Option<serde_json::Value>,
    /// The pipeline run whose result a cached step reused.
    pub cached_from: Option<String>,
    pub log_object: Option<String>,
    pub error: Option<String>,
    pub worker: Option<String>,
    pub lease_until: Option<i64>,
    pub decision: Option<String>,
    pub decided_by: Option<String>,
    pub queued_at: Option<i64>,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

impl StepRun {
    /// Whether it has reached an end (it will not change again).
    pub fn is_final(&self) -> bool {
        matches!(
            self.status.as_str(),
            "succeeded" | "cached" | "failed" | "skipped" | "cancelled"
        )
    }
}

/// What [`MetaStore::create_pipeline_run`] needs.
#[derive(Debug, Clone, Default)]
pub struct NewPipelineRun {
    pub pipeline: String,
    pub cause: String,
    pub params: serde_json::Value,
    pub definition: serde_json::Value,
    pub source_commit: Option<String>,
    pub source_dirty: Option<bool>,
    /// (step, kind) in run order.
    pub steps: Vec<(String, String)>,
}

/// A lineage edge a step's result adds: (src kind, src id, relation, dst kind, dst id).
pub type Edge = (String, String, String, String, String);

const RUN_COLUMNS: &str = "id, pipeline, status, cause, params, definition, source_commit, \
     source_dirty, author, created_at, finished_at, error";
const STEP_COLUMNS: &str = "run_id, step, kind, position, status, attempts, max_attempts, cache_key, inputs, \
     outputs, cached_from, log_object, error, worker, lease_until, decision, decided_by, \
     queued_at, started_at, finished_at";

fn json(row: &AnyRow, col: &'static str) -> Result<serde_json::Value> {
    let text: String = get(row, col)?;
    serde_json::from_str(&text).map_err(|e| StoreError::Corrupt {
        context: "a pipeline run",
        detail: e.to_string(),
    })
}

fn run_from_row(r: &AnyRow) -> Result<PipelineRun> {
    Ok(PipelineRun {
        id: get(r, "id")?,
        pipeline: get(r, "pipeline")?,
        status: get(r, "status")?,
        cause: get(r, "cause")?,
        params: json(r, "params")?,
        definition: json(r, "definition")?,
        source_commit: get(r, "source_commit")?,
        source_dirty: get::<Option<i64>>(r, "source_dirty")?.map(|d| d != 0),
        author: get(r, "author")?,
        created_at: get(r, "created_at")?,
        finished_at: get(r, "finished_at")?,
        error: get(r, "error")?,
    })
}

fn step_from_row(r: &AnyRow) -> Result<StepRun> {
    let outputs: Option<String> = get(r, "outputs")?;
    Ok(StepRun {
        run_id: get(r, "run_id")?,
        step: get(r, "step")?,
        kind: get(r, "kind")?,
        position: get(r, "position")?,
        status: get(r, "status")?,
        attempts: get(r, "attempts")?,
        max_attempts: get(r, "max_attempts")?,
        cache_key: get(r, "cache_key")?,
        inputs: json(r, "inputs")?,
        outputs: match outputs {
            Some(t) => Some(serde_json::from_str(&t).map_err(|e| StoreError::Corrupt {
                context: "a step run's outputs",
                detail: e.to_string(),
            })?),
            None => None,
        },
        cached_from: get(r, "cached_from")?,
        log_object: get(r, "log_object")?,
        error: get(r, "error")?,
        worker: get(r, "worker")?,
        lease_until: get(r, "lease_until")?,
        decision: get(r, "decision")?,
        decided_by: get(r, "decided_by")?,
        queued_at: get(r, "queued_at")?,
        started_at: get(r, "started_at")?,
        finished_at: get(r, "finished_at")?,
    })
}

impl MetaStore {
    /// Records a new pipeline run with every step waiting, in one
    /// transaction.
    pub async fn create_pipeline_run(&self, new: &NewPipelineRun) -> Result<PipelineRun> {
        let run = PipelineRun {
            // Hashed, so short prefixes of runs started together differ.
            id: blake3::hash(uuid::Uuid::now_v7().as_bytes()).to_hex()[..32].to_string(),
            pipeline: new.pipeline.clone(),
            status: "running".into(),
            cause: new.cause.clone(),
            params: new.params.clone(),
            definition: new.definition.clone(),
            source_commit: new.source_commit.clone(),
            source_dirty: new.source_dirty,
            author: kiln_core::current_actor(),
            created_at: now_ms(),
            finished_at: None,
            error: None,
        };
        let (_w, mut tx) = self.write().await?;
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO pipeline_runs (project_id, {RUN_COLUMNS}, heartbeat_at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, NULL, NULL, $11)"
        )))
        .bind(&self.project_id)
        .bind(&run.id)
        .bind(&run.pipeline)
        .bind(&run.status)
        .bind(&run.cause)
        .bind(run.params.to_string())
        .bind(run.definition.to_string())
        .bind(&run.source_commit)
        .bind(run.source_dirty.map(i64::from))
        .bind(&run.author)
        .bind(run.created_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("recording a pipeline run"))?;
        for (position, (step, kind)) in new.steps.iter().enumerate() {
            sqlx::query(
                "INSERT INTO step_runs (project_id, run_id, step, kind, position, status, attempts, \
                 inputs) VALUES ($1, $2, $3, $4, $5, 'waiting', 0, '{}')",
            )
            .bind(&self.project_id)
            .bind(&run.id)
            .bind(step)
            .bind(kind)
            .bind(position as i64)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("recording a step run"))?;
        }
        self.audit_in(
            &mut tx,
            "pipeline.run",
            "pipeline_run",
            &run.id,
            serde_json::json!({ "pipeline": run.pipeline, "cause": run.cause, "params": run.params }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a pipeline run"))?;
        Ok(run)
    }

    /// Writes a step run's state, with the lineage edges its result adds.
    pub async fn put_step(&self, s: &StepRun, edges: &[Edge]) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        let done = sqlx::query(
            "UPDATE step_runs SET status = $4, attempts = $5, cache_key = $6, inputs = $7, \
             outputs = $8, cached_from = $9, log_object = $10, error = $11, worker = $12, \
             lease_until = $13, queued_at = $14, started_at = $15, finished_at = $16, \
             max_attempts = $17 WHERE project_id = $1 AND run_id = $2 AND step = $3",
        )
        .bind(&self.project_id)
        .bind(&s.run_id)
        .bind(&s.step)
        .bind(&s.status)
        .bind(s.attempts)
        .bind(&s.cache_key)
        .bind(s.inputs.to_string())
        .bind(s.outputs.as_ref().map(|o| o.to_string()))
        .bind(&s.cached_from)
        .bind(&s.log_object)
        .bind(&s.error)
        .bind(&s.worker)
        .bind(s.lease_until)
        .bind(s.queued_at)
        .bind(s.started_at)
        .bind(s.finished_at)
        .bind(s.max_attempts)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("updating a step run"))?
        .rows_affected();
        if done == 0 {
            return Err(StoreError::NotFound {
                kind: "step run",
                id: format!("{}/{}", s.run_id, s.step),
            });
        }
        if !edges.is_empty() {
            let now = kiln_core::now_rfc3339();
            for (sk, si, rel, dk, di) in edges {
                self.edge_in(&mut tx, sk, si, rel, dk, di, &now).await?;
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing a step run"))?;
        Ok(())
    }

    /// Ends a step that has not ended (cancelled, or its run stopped),
    /// keeping what it recorded; false if it had ended already (a worker
    /// finished it first).
    pub async fn end_unfinished_step(
        &self,
        run_id: &str,
        step: &str,
        status: &str,
        error: &str,
    ) -> Result<bool> {
        let (_w, mut tx) = self.write().await?;
        let done = sqlx::query(
            "UPDATE step_runs SET status = $4, error = $5, finished_at = $6, lease_until = NULL \
             WHERE project_id = $1 AND run_id = $2 AND step = $3 \
             AND status NOT IN ('succeeded', 'cached', 'failed', 'skipped', 'cancelled')",
        )
        .bind(&self.project_id)
        .bind(run_id)
        .bind(step)
        .bind(status)
        .bind(error)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("ending a step run"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(StoreError::query("committing a step run"))?;
        Ok(done == 1)
    }

    /// Each step's (name, status, tries): what a run waiting on workers
    /// polls, without the steps' inputs and outputs.
    pub async fn step_states(&self, run_id: &str) -> Result<Vec<(String, String, i64)>> {
        let rows = sqlx::query(
            "SELECT step, status, attempts FROM step_runs WHERE project_id = $1 AND run_id = $2",
        )
        .bind(&self.project_id)
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading step states"))?;
        rows.iter()
            .map(|r| Ok((get(r, "step")?, get(r, "status")?, get(r, "attempts")?)))
            .collect()
    }

    /// Renews a running pipeline run's heartbeat.
    pub async fn beat_pipeline_run(&self, id: &str) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "UPDATE pipeline_runs SET heartbeat_at = $3 WHERE project_id = $1 AND id = $2 \
             AND status = 'running'",
        )
        .bind(&self.project_id)
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("renewing a pipeline run"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a pipeline run"))?;
        Ok(())
    }

    /// Ends the running pipeline runs whose heartbeat is older than
    /// `stale_ms` (the process running them was killed): their unfinished
    /// steps are cancelled, so workers do not take them, and the run fails.
    /// Returns the runs ended.
    pub async fn sweep_abandoned_runs(&self, stale_ms: i64) -> Result<Vec<String>> {
        let now = now_ms();
        let rows = sqlx::query(
            "SELECT id FROM pipeline_runs WHERE project_id = $1 AND status = 'running' \
             AND heartbeat_at IS NOT NULL AND heartbeat_at < $2",
        )
        .bind(&self.project_id)
        .bind(now - stale_ms)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("looking for abandoned runs"))?;
        let mut ended = Vec::new();
        for r in rows {
            let id: String = get(&r, "id")?;
            let (_w, mut tx) = self.write().await?;
            let why = "its `kiln run` stopped (no heartbeat): the process was killed";
            let done = sqlx::query(
                "UPDATE pipeline_runs SET status = 'failed', error = $3, finished_at = $4 \
                 WHERE project_id = $1 AND id = $2 AND status = 'running' AND heartbeat_at < $5",
            )
            .bind(&self.project_id)
            .bind(&id)
            .bind(why)
            .bind(now)
            .bind(now - stale_ms)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("ending an abandoned run"))?
            .rows_affected();
            if done == 1 {
                sqlx::query(
                    "UPDATE step_runs SET status = 'cancelled', error = $3, finished_at = $4, \
                     lease_until = NULL WHERE project_id = $1 AND run_id = $2 \
                     AND status NOT IN ('succeeded', 'cached', 'failed', 'skipped', 'cancelled')",
                )
                .bind(&self.project_id)
                .bind(&id)
                .bind(why)
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("ending an abandoned run's steps"))?;
                ended.push(id);
            }
            tx.commit()
                .await
                .map_err(StoreError::query("committing an abandoned run"))?;
        }
        Ok(ended)
    }

    /// Ends a pipeline run.
    pub async fn finish_pipeline_run(
        &self,
        id: &str,
        status: &str,
        error: Option<&str>,
    ) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "UPDATE pipeline_runs SET status = $3, error = $4, finished_at = $5 \
             WHERE project_id = $1 AND id = $2",
        )
        .bind(&self.project_id)
        .bind(id)
        .bind(status)
        .bind(error)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("finishing a pipeline run"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a pipeline run"))?;
        Ok(())
    }

    /// A pipeline run by id or unique prefix.
    pub async fn pipeline_run(&self, prefix: &str) -> Result<PipelineRun> {
        let not_found = || StoreError::NotFound {
            kind: "pipeline run",
            id: prefix.to_string(),
        };
        if prefix.is_empty() || !prefix.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(not_found());
        }
        let prefix = prefix.to_ascii_lowercase();
        let prefix = prefix.as_str();
        let upper = format!("{prefix}g");
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE project_id = $1 AND id >= $2 AND id < $3 \
             LIMIT 2"
        )))
        .bind(&self.project_id)
        .bind(prefix)
        .bind(&upper)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading a pipeline run"))?;
        match rows.as_slice() {
            [one] => run_from_row(one),
            [] => Err(not_found()),
            _ => Err(StoreError::AmbiguousRun {
                spec: prefix.to_string(),
                candidates: rows
                    .iter()
                    .filter_map(|r| get::<String>(r, "id").ok())
                    .collect::<Vec<_>>()
                    .join(", "),
            }),
        }
    }

    /// Pipeline runs, newest first.
    pub async fn pipeline_runs(
        &self,
        pipeline: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PipelineRun>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {RUN_COLUMNS} FROM pipeline_runs WHERE project_id = $1 AND ($2 = '' OR pipeline = $2) \
             ORDER BY created_at DESC, id DESC LIMIT $3"
        )))
        .bind(&self.project_id)
        .bind(pipeline.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing pipeline runs"))?;
        rows.iter().map(run_from_row).collect()
    }

    /// A run's steps in run order.
    pub async fn step_runs(&self, run_id: &str) -> Result<Vec<StepRun>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STEP_COLUMNS} FROM step_runs WHERE project_id = $1 AND run_id = $2 ORDER BY position"
        )))
        .bind(&self.project_id)
        .bind(run_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing step runs"))?;
        rows.iter().map(step_from_row).collect()
    }

    /// One step run.
    pub async fn step_run(&self, run_id: &str, step: &str) -> Result<StepRun> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STEP_COLUMNS} FROM step_runs WHERE project_id = $1 AND run_id = $2 AND step = $3"
        )))
        .bind(&self.project_id)
        .bind(run_id)
        .bind(step)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading a step run"))?;
        match row {
            Some(r) => step_from_row(&r),
            None => Err(StoreError::NotFound {
                kind: "step run",
                id: format!("{run_id}/{step}"),
            }),
        }
    }

    /// Claims the oldest queued step for `worker` until `lease_until`, and
    /// counts the try (so a try cut short by a dead worker is counted).
    ///
    /// Portable compare-and-set: candidates are read, then each is updated
    /// only while it is still queued. Two workers racing for one step
    /// serialise on its row (PostgreSQL's row lock, SQLite's write lock);
    /// the loser's update changes nothing and it tries the next candidate.
    pub async fn claim_step(&self, worker: &str, lease_until: i64) -> Result<Option<StepRun>> {
        let candidates = sqlx::query(
            "SELECT run_id, step FROM step_runs WHERE project_id = $1 AND status = 'queued' \
             ORDER BY queued_at, position LIMIT 8",
        )
        .bind(&self.project_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("looking for queued steps"))?;
        for c in candidates {
            let run_id: String = get(&c, "run_id")?;
            let step: String = get(&c, "step")?;
            let (_w, mut tx) = self.write().await?;
            let done = sqlx::query(
                "UPDATE step_runs SET status = 'running', worker = $4, lease_until = $5, \
                 started_at = $6, attempts = attempts + 1 WHERE project_id = $1 AND run_id = $2 AND step = $3 \
                 AND status = 'queued'",
            )
            .bind(&self.project_id)
            .bind(&run_id)
            .bind(&step)
            .bind(worker)
            .bind(lease_until)
            .bind(now_ms())
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("claiming a step"))?
            .rows_affected();
            tx.commit()
                .await
                .map_err(StoreError::query("committing a claim"))?;
            if done == 1 {
                return self.step_run(&run_id, &step).await.map(Some);
            }
        }
        Ok(None)
    }

    /// Extends a worker's lease on a step; false if the step is no longer
    /// its (requeued after the lease ran out, or cancelled).
    pub async fn renew_lease(
        &self,
        run_id: &str,
        step: &str,
        worker: &str,
        lease_until: i64,
    ) -> Result<bool> {
        let (_w, mut tx) = self.write().await?;
        let done = sqlx::query(
            "UPDATE step_runs SET lease_until = $5 WHERE project_id = $1 AND run_id = $2 \
             AND step = $3 AND worker = $4 AND status = 'running'",
        )
        .bind(&self.project_id)
        .bind(run_id)
        .bind(step)
        .bind(worker)
        .bind(lease_until)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("renewing a lease"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(StoreError::query("committing a lease"))?;
        Ok(done == 1)
    }

    /// Records the end of a step a worker ran, only if it still holds it:
    /// a result from a worker whose lease ran out is dropped, so each step
    /// run ends once.
    pub async fn finish_claimed_step(
        &self,
        s: &StepRun,
        worker: &str,
        edges: &[Edge],
    ) -> Result<bool> {
        let (_w, mut tx) = self.write().await?;
        let done = sqlx::query(
            "UPDATE step_runs SET status = $5, attempts = $6, outputs = $7, log_object = $8, \
             error = $9, lease_until = NULL, finished_at = $10 WHERE project_id = $1 \
             AND run_id = $2 AND step = $3 AND worker = $4 AND status = 'running'",
        )
        .bind(&self.project_id)
        .bind(&s.run_id)
        .bind(&s.step)
        .bind(worker)
        .bind(&s.status)
        .bind(s.attempts)
        .bind(s.outputs.as_ref().map(|o| o.to_string()))
        .bind(&s.log_object)
        .bind(&s.error)
        .bind(s.finished_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("finishing a step"))?
        .rows_affected();
        if done == 1 {
            let now = kiln_core::now_rfc3339();
            for (sk, si, rel, dk, di) in edges {
                self.edge_in(&mut tx, sk, si, rel, dk, di, &now).await?;
            }
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing a step"))?;
        Ok(done == 1)
    }

    /// Puts back in the queue every running step whose lease ran out (its
    /// worker died or lost the store), or fails it once it has had its
    /// `max_attempts` tries; returns how many.
    pub async fn requeue_expired(&self) -> Result<u64> {
        let (_w, mut tx) = self.write().await?;
        let done = sqlx::query(
            "UPDATE step_runs SET worker = NULL, lease_until = NULL, \
             status = CASE WHEN max_attempts IS NOT NULL AND attempts >= max_attempts \
                 THEN 'failed' ELSE 'queued' END, \
             finished_at = CASE WHEN max_attempts IS NOT NULL AND attempts >= max_attempts \
                 THEN $2 ELSE NULL END, \
             error = CASE WHEN max_attempts IS NOT NULL AND attempts >= max_attempts \
                 THEN 'its worker stopped renewing its lease, try after try (the step may kill its worker)' \
                 ELSE 'requeued: its worker stopped renewing its lease' END \
             WHERE project_id = $1 \
             AND status = 'running' AND lease_until IS NOT NULL AND lease_until < $2",
        )
        .bind(&self.project_id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("requeueing steps"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(StoreError::query("committing requeued steps"))?;
        Ok(done)
    }

    /// The latest step run that succeeded with this cache key.
    pub async fn cached_step(&self, cache_key: &str) -> Result<Option<StepRun>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {STEP_COLUMNS} FROM step_runs WHERE project_id = $1 AND cache_key = $2 \
             AND status IN ('succeeded', 'cached') ORDER BY finished_at DESC LIMIT 1"
        )))
        .bind(&self.project_id)
        .bind(cache_key)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("looking up a cached step"))?;
        row.as_ref().map(step_from_row).transpose()
    }

    /// Approves or rejects an approval step that waits; false if it is not
    /// waiting (decided before, finished, or not an approval step).
    pub async fn decide_step(
        &self,
        run_id: &str,
        step: &str,
        decision: &str,
        message: Option<&str>,
    ) -> Result<bool> {
        let by = kiln_core::current_actor();
        let (_w, mut tx) = self.write().await?;
        let done = sqlx::query(
            "UPDATE step_runs SET decision = $4, decided_by = $5 WHERE project_id = $1 \
             AND run_id = $2 AND step = $3 AND kind = 'approve' AND status = 'running' \
             AND decision IS NULL",
        )
        .bind(&self.project_id)
        .bind(run_id)
        .bind(step)
        .bind(decision)
        .bind(&by)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("recording an approval"))?
        .rows_affected();
        if done == 1 {
            self.audit_in(
                &mut tx,
                &format!("pipeline.{decision}"),
                "step_run",
                &format!("{run_id}/{step}"),
                serde_json::json!({ "message": message }),
            )
            .await?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing an approval"))?;
        Ok(done == 1)
    }

    /// An approval step's decision, if made: (decision, by).
    pub async fn step_decision(
        &self,
        run_id: &str,
        step: &str,
    ) -> Result<Option<(String, String)>> {
        let row = sqlx::query(
            "SELECT decision, decided_by FROM step_runs WHERE project_id = $1 AND run_id = $2 \
             AND step = $3",
        )
        .bind(&self.project_id)
        .bind(run_id)
        .bind(step)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading an approval"))?;
        let Some(row) = row else { return Ok(None) };
        let d: Option<String> = get(&row, "decision")?;
        let by: Option<String> = get(&row, "decided_by")?;
        Ok(d.map(|d| (d, by.unwrap_or_default())))
    }

    /// Claims a schedule's tick: true for exactly one caller across every
    /// process sharing the store (the insert of its key succeeds once).
    pub async fn claim_tick(&self, pipeline: &str, tick_at: i64) -> Result<bool> {
        let (_w, mut tx) = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO pipeline_ticks (project_id, pipeline, tick_at, run_id) \
             VALUES ($1, $2, $3, NULL) ON CONFLICT DO NOTHING",
        )
        .bind(&self.project_id)
        .bind(pipeline)
        .bind(tick_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("claiming a schedule tick"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(StoreError::query("committing a schedule tick"))?;
        Ok(done == 1)
    }

    /// Records a pipeline trigger under an id its cause determines (a
    /// dataset version for a pipeline): true only for the first of several
    /// servers that see the same cause.
    pub async fn add_pipeline_trigger_once(
        &self,
        id: &str,
        pipeline: &str,
        cause: &str,
        reason: &str,
    ) -> Result<bool> {
        let (_w, mut tx) = self.write().await?;
        let done = sqlx::query(
            "INSERT INTO pipeline_triggers (project_id, id, pipeline, cause, reason, status, \
             created_at, taken_at) VALUES ($1, $2, $3, $4, $5, 'pending', $6, NULL) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&self.project_id)
        .bind(id)
        .bind(pipeline)
        .bind(cause)
        .bind(reason)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("storing a pipeline trigger"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(StoreError::query("committing a pipeline trigger"))?;
        Ok(done == 1)
    }

    /// Takes a pending pipeline trigger: true for exactly one caller.
    pub async fn take_pipeline_trigger(&self, id: &str) -> Result<bool> {
        let (_w, mut tx) = self.write().await?;
        let done = sqlx::query(
            "UPDATE pipeline_triggers SET status = 'taken', taken_at = $3 \
             WHERE project_id = $1 AND id = $2 AND status = 'pending'",
        )
        .bind(&self.project_id)
        .bind(id)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("taking a pipeline trigger"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(StoreError::query("committing a pipeline trigger"))?;
        Ok(done == 1)
    }
}
