//! Artifacts (files under the `mlflow-artifacts:/` root, each a
//! content-addressed object) and MLflow 3's logged models.

use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::tracking::{KV, Metric, Page, ViewType, page, page_offset, placeholders};
use super::{MetaStore, get, now_ms};
use crate::{Result, StoreError};
use kiln_core::ContentHash;

/// One entry of a folder listing: a file or a sub-folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArtifactEntry {
    /// The full path under the artifact root.
    pub path: String,
    pub is_dir: bool,
    /// Bytes, for files.
    pub size: Option<i64>,
}

/// An MLflow 3 logged model: files under `artifact_location` and metadata.
#[derive(Debug, Clone, Serialize)]
pub struct LoggedModel {
    pub id: String,
    pub experiment_id: String,
    pub name: String,
    pub artifact_location: String,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub source_run_id: Option<String>,
    /// LOGGED_MODEL_PENDING, LOGGED_MODEL_READY or LOGGED_MODEL_UPLOAD_FAILED (MLflow's names).
    pub status: String,
    pub status_message: Option<String>,
    pub model_type: Option<String>,
    pub params: Vec<KV>,
    pub tags: Vec<KV>,
    pub metrics: Vec<Metric>,
}

/// What [`MetaStore::create_logged_model`] needs.
#[derive(Debug, Clone, Default)]
pub struct NewLoggedModel {
    pub experiment_id: String,
    pub name: String,
    pub source_run_id: Option<String>,
    pub model_type: Option<String>,
    pub params: Vec<KV>,
    pub tags: Vec<KV>,
}

/// Checks an artifact path: relative, `/`-separated, no `..`.
pub fn check_artifact_path(path: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(StoreError::Invalid {
            field: "path".into(),
            message: format!("artifact path `{path}` {why}"),
        })
    };
    if path.is_empty() {
        return bad("is empty");
    }
    if path.starts_with('/') || path.contains('\\') || path.contains('\0') {
        return bad("must be relative and use `/` between folders");
    }
    if path.split('/').any(|p| p == ".." || p == ".") {
        return bad("must not contain `.` or `..` segments");
    }
    Ok(())
}

fn kvs(text: &str) -> Vec<KV> {
    serde_json::from_str::<std::collections::BTreeMap<String, String>>(text)
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| KV::new(k, v))
        .collect()
}

fn kv_json(items: &[KV]) -> String {
    let map: std::collections::BTreeMap<&str, &str> = items
        .iter()
        .map(|t| (t.key.as_str(), t.value.as_str()))
        .collect();
    serde_json::to_string(&map).expect("maps serialise")
}

const LOGGED_MODEL_COLUMNS: &str = "id, experiment_id, name, artifact_location, creation_time, \
    last_updated_time, source_run_id, status, status_message, model_type, params_json, tags_json";

fn logged_model_from_row(r: &AnyRow) -> Result<LoggedModel> {
    Ok(LoggedModel {
        id: get(r, "id")?,
        experiment_id: get(r, "experiment_id")?,
        name: get(r, "name")?,
        artifact_location: get(r, "artifact_location")?,
        creation_time: get(r, "creation_time")?,
        last_updated_time: get(r, "last_updated_time")?,
        source_run_id: get(r, "source_run_id")?,
        status: get(r, "status")?,
        status_message: get(r, "status_message")?,
        model_type: get(r, "model_type")?,
        params: kvs(&get::<String>(r, "params_json")?),
        tags: kvs(&get::<String>(r, "tags_json")?),
        metrics: Vec::new(),
    })
}

impl MetaStore {
    /// Points `path` at an object (replacing what it pointed at before).
    pub async fn put_artifact(&self, path: &str, object: &ContentHash, size: i64) -> Result<()> {
        check_artifact_path(path)?;
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "INSERT INTO artifacts (project_id, path, object, size, created_at) VALUES ($1, $2, $3, $4, $5) \
             ON CONFLICT (project_id, path) DO UPDATE SET object = excluded.object, size = excluded.size, \
             created_at = excluded.created_at",
        )
        .bind(&self.project_id)
        .bind(path)
        .bind(object.to_hex())
        .bind(size)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("recording an artifact"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing an artifact"))
    }

    /// The object and size of the file at `path`, if there is one.
    pub async fn artifact(&self, path: &str) -> Result<Option<(ContentHash, i64)>> {
        let row =
            sqlx::query("SELECT object, size FROM artifacts WHERE project_id = $1 AND path = $2")
                .bind(&self.project_id)
                .bind(path)
                .fetch_optional(&self.pool)
                .await
                .map_err(StoreError::query("reading an artifact"))?;
        match row {
            None => Ok(None),
            Some(r) => Ok(Some((
                super::hash(&get::<String>(&r, "object")?)?,
                get(&r, "size")?,
            ))),
        }
    }

    /// Every file under the folder `dir` (`""` for the root), recursively.
    pub async fn artifacts_under(&self, dir: &str) -> Result<Vec<(String, ContentHash, i64)>> {
        let dir = dir.trim_matches('/');
        let rows = if dir.is_empty() {
            sqlx::query(
                "SELECT path, object, size FROM artifacts WHERE project_id = $1 ORDER BY path",
            )
            .bind(&self.project_id)
            .fetch_all(&self.pool)
            .await
        } else {
            // A prefix by substr, not LIKE (which would need `%` and `_`
            // escaped) nor a range (which a language collation reorders).
            sqlx::query(
                "SELECT path, object, size FROM artifacts WHERE project_id = $1 \
                 AND substr(path, 1, length($2)) = $2 ORDER BY path",
            )
            .bind(&self.project_id)
            .bind(format!("{dir}/"))
            .fetch_all(&self.pool)
            .await
        }
        .map_err(StoreError::query("listing artifacts"))?;
        rows.iter()
            .map(|r| {
                Ok((
                    get(r, "path")?,
                    super::hash(&get::<String>(r, "object")?)?,
                    get(r, "size")?,
                ))
            })
            .collect()
    }

    /// The files and folders directly in `dir`.
    pub async fn list_artifacts(&self, dir: &str) -> Result<Vec<ArtifactEntry>> {
        let dir = dir.trim_matches('/');
        let mut out: Vec<ArtifactEntry> = Vec::new();
        let mut files = self.artifacts_under(dir).await?;
        // Byte order, whatever the database's collation: a folder's files
        // are then next to each other.
        files.sort_by(|a, b| a.0.cmp(&b.0));
        for (path, _, size) in files {
            let rest = if dir.is_empty() {
                path.as_str()
            } else {
                match path.strip_prefix(dir).and_then(|r| r.strip_prefix('/')) {
                    Some(r) => r,
                    None => continue,
                }
            };
            match rest.split_once('/') {
                None => out.push(ArtifactEntry {
                    path,
                    is_dir: false,
                    size: Some(size),
                }),
                Some((sub, _)) => {
                    let sub = if dir.is_empty() {
                        sub.to_string()
                    } else {
                        format!("{dir}/{sub}")
                    };
                    if out.last().is_none_or(|e| e.path != sub) {
                        out.push(ArtifactEntry {
                            path: sub,
                            is_dir: true,
                            size: None,
                        });
                    }
                }
            }
        }
        Ok(out)
    }

    /// Forgets the file at `path`, or every file under it; returns how many.
    /// The objects stay until `kiln gc` finds nothing points at them.
    pub async fn delete_artifacts(&self, path: &str) -> Result<u64> {
        let path = path.trim_matches('/');
        let (_w, mut tx) = self.write().await?;
        let n = sqlx::query(
            "DELETE FROM artifacts WHERE project_id = $1 AND (path = $2 OR substr(path, 1, length($3)) = $3)",
        )
        .bind(&self.project_id)
        .bind(path)
        .bind(format!("{path}/"))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("deleting artifacts"))?
        .rows_affected();
        tx.commit()
            .await
            .map_err(StoreError::query("committing artifact deletion"))?;
        Ok(n)
    }

    pub async fn create_logged_model(&self, new: NewLoggedModel) -> Result<LoggedModel> {
        let experiment = self.experiment(&new.experiment_id).await?;
        let id = format!(
            "m-{}",
            &blake3::hash(uuid::Uuid::now_v7().as_bytes()).to_hex()[..32]
        );
        let location = format!(
            "{}/models/{id}/artifacts",
            experiment.artifact_location.trim_end_matches('/')
        );
        let now = now_ms();
        let (_w, mut tx) = self.write().await?;
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO logged_models (project_id, {LOGGED_MODEL_COLUMNS}) \
             VALUES ($1, $2, $3, $4, $5, $6, $6, $7, 'LOGGED_MODEL_PENDING', NULL, $8, $9, $10)"
        )))
        .bind(&self.project_id)
        .bind(&id)
        .bind(&experiment.id)
        .bind(if new.name.is_empty() {
            "model"
        } else {
            &new.name
        })
        .bind(&location)
        .bind(now)
        .bind(new.source_run_id.clone())
        .bind(new.model_type.clone())
        .bind(kv_json(&new.params))
        .bind(kv_json(&new.tags))
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("inserting a logged model"))?;
        if let Some(run) = &new.source_run_id {
            self.edge_in(
                &mut tx,
                "logged_model",
                &id,
                "produced_by",
                "run",
                run,
                &kiln_core::now_rfc3339(),
            )
            .await?;
        }
        tx.commit()
            .await
            .map_err(StoreError::query("committing a logged model"))?;
        self.logged_model(&id).await
    }

    pub async fn logged_model(&self, id: &str) -> Result<LoggedModel> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {LOGGED_MODEL_COLUMNS} FROM logged_models WHERE project_id = $1 AND id = $2 \
             AND lifecycle_stage = 'active'"
        )))
        .bind(&self.project_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading a logged model"))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "logged model",
            id: id.into(),
        })?;
        let mut m = logged_model_from_row(&row)?;
        m.metrics = self.logged_model_metrics(&m.id).await?;
        Ok(m)
    }

    async fn logged_model_metrics(&self, id: &str) -> Result<Vec<Metric>> {
        let rows = sqlx::query(
            "SELECT key, step, timestamp, value, is_nan FROM run_metrics WHERE model_id = $1 ORDER BY key, step",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading a logged model's metrics"))?;
        rows.iter()
            .map(|r| {
                let nan: i64 = get(r, "is_nan")?;
                Ok(Metric {
                    key: get(r, "key")?,
                    value: if nan != 0 {
                        f64::NAN
                    } else {
                        get::<Option<f64>>(r, "value")?.unwrap_or(f64::NAN)
                    },
                    timestamp: get(r, "timestamp")?,
                    step: get(r, "step")?,
                })
            })
            .collect()
    }

    /// Sets a logged model's status (READY once its files are uploaded).
    pub async fn finalize_logged_model(
        &self,
        id: &str,
        status: &str,
        message: Option<&str>,
    ) -> Result<LoggedModel> {
        self.logged_model(id).await?;
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "UPDATE logged_models SET status = $3, status_message = $4, last_updated_time = $5 \
             WHERE project_id = $1 AND id = $2",
        )
        .bind(&self.project_id)
        .bind(id)
        .bind(status)
        .bind(message)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("finalizing a logged model"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a logged model"))?;
        self.logged_model(id).await
    }

    pub async fn set_logged_model_tags(&self, id: &str, tags: &[KV]) -> Result<()> {
        self.merge_logged_model_kv(id, "tags_json", tags, &[]).await
    }

    pub async fn delete_logged_model_tag(&self, id: &str, key: &str) -> Result<()> {
        self.merge_logged_model_kv(id, "tags_json", &[], &[key])
            .await
    }

    pub async fn log_logged_model_params(&self, id: &str, params: &[KV]) -> Result<()> {
        self.merge_logged_model_kv(id, "params_json", params, &[])
            .await
    }

    async fn merge_logged_model_kv(
        &self,
        id: &str,
        column: &'static str,
        set: &[KV],
        remove: &[&str],
    ) -> Result<()> {
        let m = self.logged_model(id).await?;
        let mut all = if column == "tags_json" {
            m.tags
        } else {
            m.params
        };
        all.retain(|x| !remove.contains(&x.key.as_str()));
        for t in set {
            all.retain(|x| x.key != t.key);
            all.push(t.clone());
        }
        let (_w, mut tx) = self.write().await?;
        sqlx::query(AssertSqlSafe(format!(
            "UPDATE logged_models SET {column} = $3, last_updated_time = $4 WHERE project_id = $1 AND id = $2"
        )))
        .bind(&self.project_id)
        .bind(id)
        .bind(kv_json(&all))
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("updating a logged model"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a logged model"))
    }

    pub async fn delete_logged_model(&self, id: &str) -> Result<()> {
        self.logged_model(id).await?;
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "UPDATE logged_models SET lifecycle_stage = 'deleted' WHERE project_id = $1 AND id = $2",
        )
        .bind(&self.project_id)
        .bind(id)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("deleting a logged model"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a logged model"))
    }

    /// Logged models of some experiments (all when empty), newest first.
    pub async fn search_logged_models(
        &self,
        experiment_ids: &[String],
        view: ViewType,
        max_results: i64,
        page_token: Option<&str>,
    ) -> Result<Page<LoggedModel>> {
        let offset = page_offset(page_token)?;
        let mut sql = format!(
            "SELECT {LOGGED_MODEL_COLUMNS} FROM logged_models WHERE project_id = $1 AND {}",
            match view {
                ViewType::ActiveOnly => "lifecycle_stage = 'active'",
                ViewType::DeletedOnly => "lifecycle_stage = 'deleted'",
                ViewType::All => "1 = 1",
            }
        );
        if !experiment_ids.is_empty() {
            sql.push_str(&format!(
                " AND experiment_id IN ({})",
                placeholders(2, experiment_ids.len())
            ));
        }
        let n = 2 + experiment_ids.len();
        sql.push_str(&format!(
            " ORDER BY creation_time DESC, id LIMIT ${n} OFFSET ${}",
            n + 1
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql)).bind(&self.project_id);
        for e in experiment_ids {
            q = q.bind(e);
        }
        let rows = q
            .bind(max_results + 1)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("searching logged models"))?;
        let items = rows
            .iter()
            .map(logged_model_from_row)
            .collect::<Result<Vec<_>>>()?;
        Ok(page(items, offset, max_results))
    }
}

#[cfg(test)]
mod tests {
    use super::check_artifact_path;

    #[test]
    fn artifact_paths_that_escape_the_root_are_rejected() {
        for bad in ["", "/etc/passwd", "a/../../b", "a/./b", "a\\b"] {
            assert!(check_artifact_path(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["model.pkl", "1/abc/artifacts/model/MLmodel", "a b/c.txt"] {
            check_artifact_path(good).unwrap();
        }
    }
}
