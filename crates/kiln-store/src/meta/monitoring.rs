//! Monitoring records: windows of logged traffic with their metrics, alerts
//! and their events, retraining triggers, and the model server's sampled
//! counters.

use serde::Serialize;

use super::{MetaStore, get, json, now_ms};
use crate::{Result, StoreError};

/// One window of a monitor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MonitorWindow {
    pub monitor: String,
    pub seq: i64,
    pub deployment: String,
    /// Milliseconds since the epoch.
    pub start_time: i64,
    pub end_time: i64,
    /// Where the next window starts (JSON).
    pub end_key: serde_json::Value,
    pub rows: i64,
    pub labels: i64,
    /// Label metrics no longer change.
    pub r#final: bool,
    /// Metric name → value.
    pub metrics: serde_json::Value,
    /// Per-column drift and histograms.
    #[serde(skip)]
    pub detail: serde_json::Value,
}

/// An alert: a rule that a monitor's windows breached.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    pub id: String,
    pub monitor: String,
    pub rule: String,
    pub severity: String,
    /// `firing` or `resolved`.
    pub state: String,
    pub started_at: i64,
    pub resolved_at: Option<i64>,
    pub window_seq: i64,
    /// Metric, value, condition, message.
    pub detail: serde_json::Value,
    pub updated_at: i64,
}

/// Something that happened to an alert.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AlertEvent {
    pub alert_id: String,
    pub at: i64,
    /// `firing`, `resolved`, `webhook`, `retrain`.
    pub kind: String,
    pub outcome: String,
    pub detail: serde_json::Value,
}

/// A request to run a pipeline (retraining), for the pipeline runner.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PipelineTrigger {
    pub id: String,
    pub pipeline: String,
    pub cause: String,
    pub reason: String,
    /// `pending` until a runner takes it.
    pub status: String,
    pub created_at: i64,
    pub taken_at: Option<i64>,
}

/// A model server's counters at one moment (cumulative since it started).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServingSample {
    pub deployment: String,
    pub instance: String,
    pub at: i64,
    pub requests: i64,
    pub errors: i64,
    pub cpu_ms: i64,
    pub rss_bytes: i64,
}

/// What [`MetaStore::transition_alert`] did.
#[derive(Debug, Clone, PartialEq)]
pub enum AlertChange {
    /// A new alert fired.
    Fired(Alert),
    /// The firing alert was updated (still firing: nothing to announce).
    Updated(Alert),
    /// The firing alert resolved.
    Resolved(Alert),
    /// Nothing was firing and nothing fires.
    Quiet,
}

impl MetaStore {
    /// A monitor's windows from `from_seq` on, in order.
    pub async fn monitor_windows(
        &self,
        monitor: &str,
        from_seq: i64,
    ) -> Result<Vec<MonitorWindow>> {
        let rows = sqlx::query(
            "SELECT monitor, seq, deployment, start_time, end_time, end_key, rows, labels, final, \
             metrics, detail FROM monitor_windows WHERE project_id = $1 AND monitor = $2 \
             AND seq >= $3 ORDER BY seq",
        )
        .bind(&self.project_id)
        .bind(monitor)
        .bind(from_seq)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing monitor windows"))?;
        rows.iter()
            .map(|r| {
                Ok(MonitorWindow {
                    monitor: get(r, "monitor")?,
                    seq: get(r, "seq")?,
                    deployment: get(r, "deployment")?,
                    start_time: get(r, "start_time")?,
                    end_time: get(r, "end_time")?,
                    end_key: json(&get::<String>(r, "end_key")?)?,
                    rows: get(r, "rows")?,
                    labels: get(r, "labels")?,
                    r#final: get::<i64>(r, "final")? != 0,
                    metrics: json(&get::<String>(r, "metrics")?)?,
                    detail: json(&get::<String>(r, "detail")?)?,
                })
            })
            .collect()
    }

    /// Stores windows (new ones, or new label metrics of earlier ones), in
    /// one transaction.
    pub async fn put_monitor_windows(&self, windows: &[MonitorWindow]) -> Result<()> {
        if windows.is_empty() {
            return Ok(());
        }
        let (_w, mut tx) = self.write().await?;
        let now = now_ms();
        for w in windows {
            sqlx::query(
                "INSERT INTO monitor_windows (project_id, monitor, seq, deployment, start_time, \
                 end_time, end_key, rows, labels, final, metrics, detail, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13) \
                 ON CONFLICT (project_id, monitor, seq) DO UPDATE SET labels = excluded.labels, \
                 final = excluded.final, metrics = excluded.metrics, detail = excluded.detail, \
                 updated_at = excluded.updated_at",
            )
            .bind(&self.project_id)
            .bind(&w.monitor)
            .bind(w.seq)
            .bind(&w.deployment)
            .bind(w.start_time)
            .bind(w.end_time)
            .bind(w.end_key.to_string())
            .bind(w.rows)
            .bind(w.labels)
            .bind(i64::from(w.r#final))
            .bind(w.metrics.to_string())
            .bind(w.detail.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("storing a monitor window"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing monitor windows"))
    }

    /// Fires, updates or resolves the alert of `monitor`'s `rule` in one
    /// transaction: at most one alert per rule is firing, so a rule breached
    /// window after window is one alert, not many. `breached` says whether
    /// the latest evaluated window breaches the rule.
    pub async fn transition_alert(
        &self,
        monitor: &str,
        rule: &str,
        severity: &str,
        breached: bool,
        window_seq: i64,
        detail: &serde_json::Value,
    ) -> Result<AlertChange> {
        let (_w, mut tx) = self.write().await?;
        let open = sqlx::query(
            "SELECT id, started_at FROM alerts WHERE project_id = $1 AND monitor = $2 AND rule = $3 \
             AND state = 'firing'",
        )
        .bind(&self.project_id)
        .bind(monitor)
        .bind(rule)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query("finding a firing alert"))?;
        let now = now_ms();
        let change = match (open, breached) {
            (None, false) => AlertChange::Quiet,
            (None, true) => {
                let id = uuid::Uuid::now_v7().simple().to_string();
                sqlx::query(
                    "INSERT INTO alerts (project_id, id, monitor, rule, severity, state, started_at, \
                     resolved_at, window_seq, detail, updated_at) \
                     VALUES ($1, $2, $3, $4, $5, 'firing', $6, NULL, $7, $8, $6)",
                )
                .bind(&self.project_id)
                .bind(&id)
                .bind(monitor)
                .bind(rule)
                .bind(severity)
                .bind(now)
                .bind(window_seq)
                .bind(detail.to_string())
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("storing an alert"))?;
                insert_event(&mut tx, &self.project_id, &id, now, "firing", "", detail).await?;
                AlertChange::Fired(Alert {
                    id,
                    monitor: monitor.into(),
                    rule: rule.into(),
                    severity: severity.into(),
                    state: "firing".into(),
                    started_at: now,
                    resolved_at: None,
                    window_seq,
                    detail: detail.clone(),
                    updated_at: now,
                })
            }
            (Some(row), breached) => {
                let id: String = get(&row, "id")?;
                let started_at: i64 = get(&row, "started_at")?;
                let state = if breached { "firing" } else { "resolved" };
                sqlx::query(
                    "UPDATE alerts SET state = $3, resolved_at = $4, window_seq = $5, detail = $6, \
                     updated_at = $7 WHERE project_id = $1 AND id = $2",
                )
                .bind(&self.project_id)
                .bind(&id)
                .bind(state)
                .bind((!breached).then_some(now))
                .bind(window_seq)
                .bind(detail.to_string())
                .bind(now)
                .execute(&mut *tx)
                .await
                .map_err(StoreError::query("updating an alert"))?;
                if !breached {
                    insert_event(&mut tx, &self.project_id, &id, now, "resolved", "", detail)
                        .await?;
                }
                let alert = Alert {
                    id,
                    monitor: monitor.into(),
                    rule: rule.into(),
                    severity: severity.into(),
                    state: state.into(),
                    started_at,
                    resolved_at: (!breached).then_some(now),
                    window_seq,
                    detail: detail.clone(),
                    updated_at: now,
                };
                if breached {
                    AlertChange::Updated(alert)
                } else {
                    AlertChange::Resolved(alert)
                }
            }
        };
        tx.commit()
            .await
            .map_err(StoreError::query("committing an alert"))?;
        Ok(change)
    }

    /// Alerts, newest first; `state` filters (`firing`, `resolved`).
    pub async fn alerts(&self, state: Option<&str>, limit: i64) -> Result<Vec<Alert>> {
        let rows = sqlx::query(
            "SELECT id, monitor, rule, severity, state, started_at, resolved_at, window_seq, detail, \
             updated_at FROM alerts WHERE project_id = $1 AND ($2 = '' OR state = $2) \
             ORDER BY started_at DESC, id DESC LIMIT $3",
        )
        .bind(&self.project_id)
        .bind(state.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing alerts"))?;
        rows.iter()
            .map(|r| {
                Ok(Alert {
                    id: get(r, "id")?,
                    monitor: get(r, "monitor")?,
                    rule: get(r, "rule")?,
                    severity: get(r, "severity")?,
                    state: get(r, "state")?,
                    started_at: get(r, "started_at")?,
                    resolved_at: get(r, "resolved_at")?,
                    window_seq: get(r, "window_seq")?,
                    detail: json(&get::<String>(r, "detail")?)?,
                    updated_at: get(r, "updated_at")?,
                })
            })
            .collect()
    }

    /// Records something that happened to an alert (a webhook delivery, a
    /// trigger).
    pub async fn add_alert_event(
        &self,
        alert_id: &str,
        kind: &str,
        outcome: &str,
        detail: &serde_json::Value,
    ) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        insert_event(
            &mut tx,
            &self.project_id,
            alert_id,
            now_ms(),
            kind,
            outcome,
            detail,
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing an alert event"))
    }

    /// An alert's events, oldest first.
    pub async fn alert_events(&self, alert_id: &str) -> Result<Vec<AlertEvent>> {
        let rows = sqlx::query(
            "SELECT alert_id, at, kind, outcome, detail FROM alert_events \
             WHERE project_id = $1 AND alert_id = $2 ORDER BY at, kind",
        )
        .bind(&self.project_id)
        .bind(alert_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing alert events"))?;
        rows.iter()
            .map(|r| {
                Ok(AlertEvent {
                    alert_id: get(r, "alert_id")?,
                    at: get(r, "at")?,
                    kind: get(r, "kind")?,
                    outcome: get(r, "outcome")?,
                    detail: json(&get::<String>(r, "detail")?)?,
                })
            })
            .collect()
    }

    /// Records a request to run `pipeline`; the pipeline runner takes
    /// pending ones.
    pub async fn add_pipeline_trigger(
        &self,
        pipeline: &str,
        cause: &str,
        reason: &str,
    ) -> Result<PipelineTrigger> {
        let (_w, mut tx) = self.write().await?;
        let t = PipelineTrigger {
            id: uuid::Uuid::now_v7().simple().to_string(),
            pipeline: pipeline.into(),
            cause: cause.into(),
            reason: reason.into(),
            status: "pending".into(),
            created_at: now_ms(),
            taken_at: None,
        };
        sqlx::query(
            "INSERT INTO pipeline_triggers (project_id, id, pipeline, cause, reason, status, \
             created_at, taken_at) VALUES ($1, $2, $3, $4, $5, $6, $7, NULL)",
        )
        .bind(&self.project_id)
        .bind(&t.id)
        .bind(&t.pipeline)
        .bind(&t.cause)
        .bind(&t.reason)
        .bind(&t.status)
        .bind(t.created_at)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("storing a pipeline trigger"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a pipeline trigger"))?;
        Ok(t)
    }

    /// Pipeline triggers, newest first; `status` filters.
    pub async fn pipeline_triggers(
        &self,
        status: Option<&str>,
        limit: i64,
    ) -> Result<Vec<PipelineTrigger>> {
        let rows = sqlx::query(
            "SELECT id, pipeline, cause, reason, status, created_at, taken_at FROM pipeline_triggers \
             WHERE project_id = $1 AND ($2 = '' OR status = $2) ORDER BY created_at DESC, id DESC \
             LIMIT $3",
        )
        .bind(&self.project_id)
        .bind(status.unwrap_or(""))
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing pipeline triggers"))?;
        rows.iter()
            .map(|r| {
                Ok(PipelineTrigger {
                    id: get(r, "id")?,
                    pipeline: get(r, "pipeline")?,
                    cause: get(r, "cause")?,
                    reason: get(r, "reason")?,
                    status: get(r, "status")?,
                    created_at: get(r, "created_at")?,
                    taken_at: get(r, "taken_at")?,
                })
            })
            .collect()
    }

    /// Records a model server's counters.
    pub async fn add_serving_sample(&self, s: &ServingSample) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "INSERT INTO serving_samples (project_id, deployment, instance, at, requests, errors, \
             cpu_ms, rss_bytes) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
             ON CONFLICT (project_id, deployment, instance, at) DO NOTHING",
        )
        .bind(&self.project_id)
        .bind(&s.deployment)
        .bind(&s.instance)
        .bind(s.at)
        .bind(s.requests)
        .bind(s.errors)
        .bind(s.cpu_ms)
        .bind(s.rss_bytes)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("storing a serving sample"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a serving sample"))
    }

    /// A deployment's samples between two times (ms, inclusive), oldest first.
    pub async fn serving_samples(
        &self,
        deployment: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<ServingSample>> {
        let rows = sqlx::query(
            "SELECT deployment, instance, at, requests, errors, cpu_ms, rss_bytes FROM serving_samples \
             WHERE project_id = $1 AND deployment = $2 AND at >= $3 AND at <= $4 ORDER BY at, instance",
        )
        .bind(&self.project_id)
        .bind(deployment)
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing serving samples"))?;
        rows.iter()
            .map(|r| {
                Ok(ServingSample {
                    deployment: get(r, "deployment")?,
                    instance: get(r, "instance")?,
                    at: get(r, "at")?,
                    requests: get(r, "requests")?,
                    errors: get(r, "errors")?,
                    cpu_ms: get(r, "cpu_ms")?,
                    rss_bytes: get(r, "rss_bytes")?,
                })
            })
            .collect()
    }
}

async fn insert_event(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    project: &str,
    alert_id: &str,
    at: i64,
    kind: &str,
    outcome: &str,
    detail: &serde_json::Value,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO alert_events (project_id, alert_id, at, kind, outcome, detail) \
         VALUES ($1, $2, $3, $4, $5, $6)",
    )
    .bind(project)
    .bind(alert_id)
    .bind(at)
    .bind(kind)
    .bind(outcome)
    .bind(detail.to_string())
    .execute(&mut **tx)
    .await
    .map_err(StoreError::query("storing an alert event"))?;
    Ok(())
}
