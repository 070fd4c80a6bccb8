//! What `kiln gc` needs from the metadata: runs deleted for good, and every
//! object a live record points to.

use std::collections::HashSet;

use sqlx::AssertSqlSafe;

use super::{MetaStore, get, hash};
use crate::{Result, StoreError};
use kiln_core::ContentHash;

impl MetaStore {
    /// Runs marked deleted, with their artifact roots.
    pub async fn deleted_runs(&self) -> Result<Vec<(String, Option<String>)>> {
        sqlx::query(
            "SELECT id, artifact_uri FROM runs WHERE project_id = $1 AND lifecycle_stage = 'deleted' ORDER BY id",
        )
        .bind(&self.project_id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("listing deleted runs"))?
        .iter()
        .map(|r| Ok((get(r, "id")?, get(r, "artifact_uri")?)))
        .collect()
    }

    /// Removes a deleted run for good: its values, its artifacts' records
    /// (under `artifact_prefix`) and its row, in one transaction. Lineage
    /// and audit entries stay: they are history.
    pub async fn purge_run(&self, id: &str, artifact_prefix: Option<&str>) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        let stage: Option<String> =
            sqlx::query("SELECT lifecycle_stage FROM runs WHERE project_id = $1 AND id = $2")
                .bind(&self.project_id)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await
                .map_err(StoreError::query("reading a run"))?
                .map(|r| get(&r, "lifecycle_stage"))
                .transpose()?;
        if stage.as_deref() != Some("deleted") {
            // Restored (or gone) since it was listed: keep it.
            return Ok(());
        }
        for table in [
            "run_params",
            "run_tags",
            "run_metrics",
            "latest_metrics",
            "run_inputs",
        ] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE run_id = $1"
            )))
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("purging a run"))?;
        }
        if let Some(prefix) = artifact_prefix.filter(|p| !p.is_empty()) {
            sqlx::query(
                "DELETE FROM artifacts WHERE project_id = $1 AND substr(path, 1, length($2)) = $2",
            )
            .bind(&self.project_id)
            .bind(format!("{prefix}/"))
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("purging a run's artifacts"))?;
        }
        sqlx::query("DELETE FROM runs WHERE project_id = $1 AND id = $2")
            .bind(&self.project_id)
            .bind(id)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("purging a run"))?;
        self.audit_in(&mut tx, "run.purge", "run", id, serde_json::json!({}))
            .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a purge"))
    }

    /// Every object a record of this store points to (over all projects:
    /// projects may share an object store), and the manifests of folder
    /// versions, whose entries the caller must read.
    ///
    /// Runs marked deleted hold nothing live (gc purges them first), nor do
    /// artifacts under their roots, `deleted_prefixes`.
    pub async fn live_objects(
        &self,
        deleted_prefixes: &[String],
    ) -> Result<(HashSet<ContentHash>, Vec<ContentHash>)> {
        let mut live = HashSet::new();
        let mut manifests = Vec::new();
        let text = |sql: &'static str| sqlx::query(sql).fetch_all(&self.pool);
        for r in text("SELECT kind, original_object, columnar_object FROM dataset_versions")
            .await
            .map_err(StoreError::query("listing dataset objects"))?
        {
            let original = hash(&get::<String>(&r, "original_object")?)?;
            if get::<String>(&r, "kind")? == "files" {
                manifests.push(original);
            }
            live.insert(original);
            if let Some(c) = get::<Option<String>>(&r, "columnar_object")? {
                live.insert(hash(&c)?);
            }
        }
        for (sql, col) in [
            (
                "SELECT model_object AS o, '' AS p FROM runs \
                 WHERE model_object IS NOT NULL AND lifecycle_stage <> 'deleted'",
                "o",
            ),
            ("SELECT object AS o, path AS p FROM artifacts", "o"),
            (
                "SELECT object AS o, '' AS p FROM model_versions WHERE object IS NOT NULL",
                "o",
            ),
            ("SELECT object AS o, '' AS p FROM prediction_segments", "o"),
            (
                "SELECT log_object AS o, '' AS p FROM step_runs WHERE log_object IS NOT NULL",
                "o",
            ),
        ] {
            for r in text(sql)
                .await
                .map_err(StoreError::query("listing live objects"))?
            {
                let path: String = get(&r, "p")?;
                let under_deleted = deleted_prefixes.iter().any(|d| {
                    path.strip_prefix(d.as_str())
                        .is_some_and(|rest| rest.starts_with('/'))
                });
                if !under_deleted {
                    live.insert(hash(&get::<String>(&r, col)?)?);
                }
            }
        }
        for r in text("SELECT artifacts_json FROM runs WHERE lifecycle_stage <> 'deleted'")
            .await
            .map_err(StoreError::query("listing run objects"))?
        {
            let v: serde_json::Value =
                serde_json::from_str(&get::<String>(&r, "artifacts_json")?).unwrap_or_default();
            if let Some(o) = v.as_object() {
                for h in o.values().filter_map(|h| h.as_str()) {
                    if let Ok(h) = ContentHash::parse(h) {
                        live.insert(h);
                    }
                }
            }
        }
        // The files `run:` steps stored as outputs, restored when a step is
        // reused from the cache.
        for r in text("SELECT outputs FROM step_runs WHERE outputs IS NOT NULL")
            .await
            .map_err(StoreError::query("listing step outputs"))?
        {
            let v: serde_json::Value =
                serde_json::from_str(&get::<String>(&r, "outputs")?).unwrap_or_default();
            if let Some(files) = v.get("files").and_then(|f| f.as_object()) {
                for h in files.values().filter_map(|h| h.as_str()) {
                    if let Ok(h) = ContentHash::parse(h) {
                        live.insert(h);
                    }
                }
            }
        }
        Ok((live, manifests))
    }
}
