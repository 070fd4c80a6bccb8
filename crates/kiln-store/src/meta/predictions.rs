//! The prediction log's index (segments, each a Parquet object) and the
//! ground-truth labels fed back by request id.

use serde::Serialize;

use super::{MetaStore, get, now_ms};
use crate::{Result, StoreError};

/// One segment of the prediction log: rows of one deployment, model
/// version and role within one hour, stored as a Parquet object.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionSegment {
    pub deployment: String,
    /// `YYYY-MM-DDTHH` (UTC).
    pub hour: String,
    pub model: String,
    pub version: String,
    /// `answer` or `shadow`.
    pub role: String,
    pub object: String,
    pub rows: i64,
    pub first_time: i64,
    pub last_time: i64,
}

/// A label for one row of an earlier request.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Feedback {
    pub request_id: String,
    pub row: i64,
    pub label: serde_json::Value,
    pub received_at: i64,
}

impl MetaStore {
    /// Records a segment written to the object store.
    pub async fn add_prediction_segment(&self, s: &PredictionSegment) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "INSERT INTO prediction_segments (project_id, deployment, hour, model, version, role, \
             object, rows, first_time, last_time, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) \
             ON CONFLICT (project_id, deployment, hour, object) DO NOTHING",
        )
        .bind(&self.project_id)
        .bind(&s.deployment)
        .bind(&s.hour)
        .bind(&s.model)
        .bind(&s.version)
        .bind(&s.role)
        .bind(&s.object)
        .bind(s.rows)
        .bind(s.first_time)
        .bind(s.last_time)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("recording a prediction segment"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a prediction segment"))?;
        Ok(())
    }

    /// A deployment's segments, oldest first; `since` is a time in ms.
    pub async fn prediction_segments(
        &self,
        deployment: &str,
        since: Option<i64>,
    ) -> Result<Vec<PredictionSegment>> {
        let rows = sqlx::query(
            "SELECT deployment, hour, model, version, role, object, rows, first_time, last_time \
             FROM prediction_segments WHERE project_id = $1 AND deployment = $2 AND last_time >= $3 \
             ORDER BY first_time, object",
        )
        .bind(&self.project_id)
        .bind(deployment)
        .bind(since.unwrap_or(i64::MIN))
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing prediction segments"))?;
        rows.iter().map(segment).collect()
    }

    /// A deployment's segments of answered rows in the order they were
    /// recorded (the log's order: `(created_at, object)`), from `from` on.
    /// Each comes with its `created_at`.
    pub async fn prediction_log(
        &self,
        deployment: &str,
        from: (i64, &str),
    ) -> Result<Vec<(PredictionSegment, i64)>> {
        let rows = sqlx::query(
            "SELECT deployment, hour, model, version, role, object, rows, first_time, last_time, \
             created_at FROM prediction_segments WHERE project_id = $1 AND deployment = $2 \
             AND role = 'answer' AND (created_at > $3 OR (created_at = $3 AND object >= $4)) \
             ORDER BY created_at, object",
        )
        .bind(&self.project_id)
        .bind(deployment)
        .bind(from.0)
        .bind(from.1)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading the prediction log"))?;
        rows.iter()
            .map(|r| Ok((segment(r)?, get(r, "created_at")?)))
            .collect()
    }

    /// Stores labels for rows of earlier requests; a label sent again
    /// replaces the earlier one. Returns how many were stored.
    pub async fn add_feedback(
        &self,
        deployment: &str,
        labels: &[(String, i64, serde_json::Value)],
    ) -> Result<usize> {
        let (_w, mut tx) = self.write().await?;
        let now = now_ms();
        for (request_id, row, label) in labels {
            sqlx::query(
                "INSERT INTO prediction_feedback (project_id, deployment, request_id, row_index, \
                 label, received_at) VALUES ($1, $2, $3, $4, $5, $6) \
                 ON CONFLICT (project_id, deployment, request_id, row_index) \
                 DO UPDATE SET label = excluded.label, received_at = excluded.received_at",
            )
            .bind(&self.project_id)
            .bind(deployment)
            .bind(request_id)
            .bind(*row)
            .bind(label.to_string())
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("storing feedback"))?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing feedback"))?;
        Ok(labels.len())
    }

    /// Labels received for a deployment, oldest first.
    pub async fn feedback(&self, deployment: &str, limit: i64) -> Result<Vec<Feedback>> {
        let rows = sqlx::query(
            "SELECT request_id, row_index, label, received_at FROM prediction_feedback \
             WHERE project_id = $1 AND deployment = $2 ORDER BY received_at, request_id, row_index \
             LIMIT $3",
        )
        .bind(&self.project_id)
        .bind(deployment)
        .bind(limit)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading feedback"))?;
        rows.iter()
            .map(|r| {
                Ok(Feedback {
                    request_id: get(r, "request_id")?,
                    row: get(r, "row_index")?,
                    label: super::json(&get::<String>(r, "label")?)?,
                    received_at: get(r, "received_at")?,
                })
            })
            .collect()
    }
}

fn segment(r: &sqlx::any::AnyRow) -> Result<PredictionSegment> {
    Ok(PredictionSegment {
        deployment: get(r, "deployment")?,
        hour: get(r, "hour")?,
        model: get(r, "model")?,
        version: get(r, "version")?,
        role: get(r, "role")?,
        object: get(r, "object")?,
        rows: get(r, "rows")?,
        first_time: get(r, "first_time")?,
        last_time: get(r, "last_time")?,
    })
}
