//! The model registry: registered models, their numbered versions, tags,
//! stages and aliases. Every alias move is written to the audit log
//! (`model.alias.set` / `model.alias.delete`) in the same transaction, so
//! whatever follows aliases (serving, webhooks) can read them in order.

use std::collections::HashMap;

use serde::Serialize;
use sqlx::AssertSqlSafe;
use sqlx::any::AnyRow;

use super::tracking::{KV, Page, page, page_offset};
use super::{MetaStore, get, now_ms};
use crate::{Result, StoreError};
use kiln_core::ContentHash;

/// A named model and its versions.
#[derive(Debug, Clone, Serialize)]
pub struct RegisteredModel {
    pub name: String,
    pub description: String,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub tags: Vec<KV>,
    /// Alias → version.
    pub aliases: Vec<(String, i64)>,
    /// The newest version in each stage.
    pub latest_versions: Vec<ModelVersion>,
}

/// One immutable version of a registered model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelVersion {
    pub name: String,
    pub version: i64,
    pub creation_time: i64,
    pub last_updated_time: i64,
    pub description: String,
    pub user_id: String,
    /// None, Staging, Production or Archived (MLflow's deprecated stages).
    pub current_stage: String,
    /// Where its files are: `models:/m-…`, `mlflow-artifacts:/…`, or
    /// `kiln-object:HASH` for a single-file model.
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub model_id: Option<String>,
    pub status: String,
    /// The model file, for kiln, ONNX, LightGBM and XGBoost models.
    pub object: Option<String>,
    /// kiln, onnx, lightgbm, xgboost or mlflow.
    pub format: String,
    pub signature: Option<serde_json::Value>,
    pub metrics: serde_json::Value,
    pub tags: Vec<KV>,
    pub aliases: Vec<String>,
}

/// What [`MetaStore::create_model_version`] needs.
#[derive(Debug, Clone, Default)]
pub struct NewModelVersion {
    pub name: String,
    pub source: String,
    pub run_id: Option<String>,
    pub run_link: Option<String>,
    pub model_id: Option<String>,
    pub description: Option<String>,
    pub tags: Vec<KV>,
    pub object: Option<ContentHash>,
    pub format: String,
    pub signature: Option<serde_json::Value>,
    pub metrics: Option<serde_json::Value>,
}

pub const STAGES: [&str; 4] = ["None", "Staging", "Production", "Archived"];

const VERSION_COLUMNS: &str = "name, version, creation_time, last_updated_time, description, user_id, \
    current_stage, source, run_id, run_link, model_id, status, object, format, signature_json, metrics_json";

fn version_from_row(r: &AnyRow) -> Result<ModelVersion> {
    Ok(ModelVersion {
        name: get(r, "name")?,
        version: get(r, "version")?,
        creation_time: get(r, "creation_time")?,
        last_updated_time: get(r, "last_updated_time")?,
        description: get(r, "description")?,
        user_id: get(r, "user_id")?,
        current_stage: get(r, "current_stage")?,
        source: get(r, "source")?,
        run_id: get(r, "run_id")?,
        run_link: get(r, "run_link")?,
        model_id: get(r, "model_id")?,
        status: get(r, "status")?,
        object: get(r, "object")?,
        format: get(r, "format")?,
        signature: get::<Option<String>>(r, "signature_json")?
            .and_then(|s| serde_json::from_str(&s).ok()),
        metrics: serde_json::from_str(&get::<String>(r, "metrics_json")?)
            .unwrap_or(serde_json::Value::Null),
        tags: Vec::new(),
        aliases: Vec::new(),
    })
}

/// Checks a model name: MLflow allows almost anything but `/` trips paths.
fn check_model_name(name: &str) -> Result<()> {
    if name.trim().is_empty() {
        return Err(StoreError::Invalid {
            field: "name".into(),
            message: "a registered model needs a non-empty name".into(),
        });
    }
    Ok(())
}

/// Checks an alias: letters, digits, `_` and `-`, and not `latest` or a
/// version-like `v1` (those already mean something in `models:/` URIs).
pub fn check_alias(alias: &str) -> Result<()> {
    let bad = |why: &str| {
        Err(StoreError::Invalid {
            field: "alias".into(),
            message: format!("alias `{alias}` {why}"),
        })
    };
    if alias.is_empty() || alias.len() > 255 {
        return bad("must have 1 to 255 characters");
    }
    if !alias
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
    {
        return bad("may only hold letters, digits, `_` and `-`");
    }
    let lower = alias.to_ascii_lowercase();
    if lower == "latest"
        || (lower.starts_with('v')
            && lower.len() > 1
            && lower[1..].bytes().all(|b| b.is_ascii_digit()))
    {
        return bad("is reserved (`latest` and `vN` already name versions)");
    }
    Ok(())
}

impl MetaStore {
    pub async fn create_registered_model(
        &self,
        name: &str,
        description: Option<&str>,
        tags: &[KV],
    ) -> Result<RegisteredModel> {
        check_model_name(name)?;
        let (_w, mut tx) = self.write().await?;
        let now = now_ms();
        let inserted = sqlx::query(
            "INSERT INTO registered_models (project_id, name, description, creation_time, last_updated_time) \
             VALUES ($1, $2, $3, $4, $4) ON CONFLICT DO NOTHING",
        )
        .bind(&self.project_id)
        .bind(name)
        .bind(description.unwrap_or(""))
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("creating a registered model"))?
        .rows_affected();
        if inserted == 0 {
            return Err(StoreError::AlreadyExists {
                kind: "Registered model",
                id: name.into(),
            });
        }
        for t in tags {
            self.set_model_tag_in(&mut tx, name, None, t).await?;
        }
        self.audit_in(
            &mut tx,
            "model.create",
            "model",
            name,
            serde_json::json!({}),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a registered model"))?;
        self.registered_model(name).await
    }

    async fn set_model_tag_in(
        &self,
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        name: &str,
        version: Option<i64>,
        tag: &KV,
    ) -> Result<()> {
        let q = match version {
            None => sqlx::query(
                "INSERT INTO registered_model_tags (project_id, name, key, value) VALUES ($1, $2, $3, $4) \
                 ON CONFLICT (project_id, name, key) DO UPDATE SET value = excluded.value",
            )
            .bind(&self.project_id)
            .bind(name)
            .bind(&tag.key)
            .bind(&tag.value),
            Some(v) => sqlx::query(
                "INSERT INTO model_version_tags (project_id, name, version, key, value) VALUES ($1, $2, $5, $3, $4) \
                 ON CONFLICT (project_id, name, version, key) DO UPDATE SET value = excluded.value",
            )
            .bind(&self.project_id)
            .bind(name)
            .bind(&tag.key)
            .bind(&tag.value)
            .bind(v),
        };
        q.execute(&mut **tx)
            .await
            .map_err(StoreError::query("setting a model tag"))?;
        Ok(())
    }

    /// Sets a tag on a registered model, or on one of its versions.
    pub async fn set_model_tag(&self, name: &str, version: Option<i64>, tag: &KV) -> Result<()> {
        match version {
            None => drop(self.registered_model(name).await?),
            Some(v) => drop(self.model_version(name, v).await?),
        }
        let (_w, mut tx) = self.write().await?;
        self.set_model_tag_in(&mut tx, name, version, tag).await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a model tag"))
    }

    pub async fn delete_model_tag(
        &self,
        name: &str,
        version: Option<i64>,
        key: &str,
    ) -> Result<()> {
        let (_w, mut tx) = self.write().await?;
        let q = match version {
            None => sqlx::query(
                "DELETE FROM registered_model_tags WHERE project_id = $1 AND name = $2 AND key = $3",
            )
            .bind(&self.project_id)
            .bind(name)
            .bind(key),
            Some(v) => sqlx::query(
                "DELETE FROM model_version_tags WHERE project_id = $1 AND name = $2 AND key = $3 AND version = $4",
            )
            .bind(&self.project_id)
            .bind(name)
            .bind(key)
            .bind(v),
        };
        q.execute(&mut *tx)
            .await
            .map_err(StoreError::query("deleting a model tag"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a model tag"))
    }

    /// A registered model with its tags, aliases and latest version per stage.
    pub async fn registered_model(&self, name: &str) -> Result<RegisteredModel> {
        let row = sqlx::query(
            "SELECT name, description, creation_time, last_updated_time FROM registered_models \
             WHERE project_id = $1 AND name = $2",
        )
        .bind(&self.project_id)
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading a registered model"))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "registered model",
            id: name.into(),
        })?;
        self.model_from_row(&row).await
    }

    async fn model_from_row(&self, row: &AnyRow) -> Result<RegisteredModel> {
        let name: String = get(row, "name")?;
        let tags = sqlx::query(
            "SELECT key, value FROM registered_model_tags WHERE project_id = $1 AND name = $2 ORDER BY key",
        )
        .bind(&self.project_id)
        .bind(&name)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading model tags"))?
        .iter()
        .map(|r| Ok(KV::new(get::<String>(r, "key")?, get::<String>(r, "value")?)))
        .collect::<Result<Vec<_>>>()?;
        let aliases = self.aliases(&name).await?;
        let latest = self.latest_versions(&name, &[]).await?;
        Ok(RegisteredModel {
            description: get(row, "description")?,
            creation_time: get(row, "creation_time")?,
            last_updated_time: get(row, "last_updated_time")?,
            tags,
            aliases,
            latest_versions: latest,
            name,
        })
    }

    async fn aliases(&self, name: &str) -> Result<Vec<(String, i64)>> {
        sqlx::query(
            "SELECT alias, version FROM model_aliases WHERE project_id = $1 AND name = $2 ORDER BY alias",
        )
        .bind(&self.project_id)
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading model aliases"))?
        .iter()
        .map(|r| Ok((get(r, "alias")?, get(r, "version")?)))
        .collect()
    }

    /// Registered models whose name matches `name_like` (SQL LIKE), by name.
    pub async fn search_registered_models(
        &self,
        name_like: Option<&str>,
        max_results: i64,
        page_token: Option<&str>,
    ) -> Result<Page<RegisteredModel>> {
        let offset = page_offset(page_token)?;
        let rows = sqlx::query(
            "SELECT name, description, creation_time, last_updated_time FROM registered_models \
             WHERE project_id = $1 AND ($2 = '' OR name LIKE $2) ORDER BY name LIMIT $3 OFFSET $4",
        )
        .bind(&self.project_id)
        .bind(name_like.unwrap_or(""))
        .bind(max_results + 1)
        .bind(offset)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("searching registered models"))?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            items.push(self.model_from_row(r).await?);
        }
        Ok(page(items, offset, max_results))
    }

    pub async fn update_registered_model(&self, name: &str, description: &str) -> Result<()> {
        self.registered_model(name).await?;
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "UPDATE registered_models SET description = $3, last_updated_time = $4 WHERE project_id = $1 AND name = $2",
        )
        .bind(&self.project_id)
        .bind(name)
        .bind(description)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("updating a registered model"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a registered model"))
    }

    /// Deletes a registered model with its versions, tags and aliases.
    pub async fn delete_registered_model(&self, name: &str) -> Result<()> {
        self.registered_model(name).await?;
        let (_w, mut tx) = self.write().await?;
        for table in [
            "model_aliases",
            "model_version_tags",
            "model_versions",
            "registered_model_tags",
            "registered_models",
        ] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE project_id = $1 AND name = $2"
            )))
            .bind(&self.project_id)
            .bind(name)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("deleting a registered model"))?;
        }
        self.audit_in(
            &mut tx,
            "model.delete",
            "model",
            name,
            serde_json::json!({}),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a model deletion"))
    }

    /// Adds the next version of a registered model (creating the model
    /// when `create_model` is set).
    pub async fn create_model_version(
        &self,
        new: NewModelVersion,
        create_model: bool,
    ) -> Result<ModelVersion> {
        check_model_name(&new.name)?;
        if create_model {
            match self.create_registered_model(&new.name, None, &[]).await {
                Ok(_) | Err(StoreError::AlreadyExists { .. }) => {}
                Err(e) => return Err(e),
            }
        } else {
            self.registered_model(&new.name).await?;
        }
        let (_w, mut tx) = self.write().await?;
        let next: i64 = get::<Option<i64>>(
            &sqlx::query(
                "SELECT MAX(version) AS v FROM model_versions WHERE project_id = $1 AND name = $2",
            )
            .bind(&self.project_id)
            .bind(&new.name)
            .fetch_one(&mut *tx)
            .await
            .map_err(StoreError::query("numbering a model version"))?,
            "v",
        )?
        .unwrap_or(0)
            + 1;
        let now = now_ms();
        sqlx::query(AssertSqlSafe(format!(
            "INSERT INTO model_versions (project_id, {VERSION_COLUMNS}) VALUES \
             ($1, $2, $3, $4, $4, $5, $6, 'None', $7, $8, $9, $10, 'READY', $11, $12, $13, $14)"
        )))
        .bind(&self.project_id)
        .bind(&new.name)
        .bind(next)
        .bind(now)
        .bind(new.description.clone().unwrap_or_default())
        .bind(kiln_core::current_actor())
        .bind(&new.source)
        .bind(new.run_id.clone())
        .bind(new.run_link.clone())
        .bind(new.model_id.clone())
        .bind(new.object.map(|h| h.to_hex()))
        .bind(&new.format)
        .bind(new.signature.as_ref().map(|s| s.to_string()))
        .bind(
            new.metrics
                .clone()
                .unwrap_or_else(|| serde_json::json!({}))
                .to_string(),
        )
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("inserting a model version"))?;
        sqlx::query(
            "UPDATE registered_models SET last_updated_time = $3 WHERE project_id = $1 AND name = $2",
        )
        .bind(&self.project_id)
        .bind(&new.name)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("updating a registered model"))?;
        for t in &new.tags {
            self.set_model_tag_in(&mut tx, &new.name, Some(next), t)
                .await?;
        }
        let version_ref = format!("{}/{next}", new.name);
        let stamp = kiln_core::now_rfc3339();
        if let Some(run) = &new.run_id {
            self.edge_in(
                &mut tx,
                "model_version",
                &version_ref,
                "registered_from",
                "run",
                run,
                &stamp,
            )
            .await?;
        }
        if let Some(m) = &new.model_id {
            self.edge_in(
                &mut tx,
                "model_version",
                &version_ref,
                "registered_from",
                "logged_model",
                m,
                &stamp,
            )
            .await?;
        }
        if let Some(h) = new.object {
            self.edge_in(
                &mut tx,
                "model_version",
                &version_ref,
                "stores",
                "model_artifact",
                &h.to_hex(),
                &stamp,
            )
            .await?;
        }
        self.audit_in(
            &mut tx,
            "model_version.create",
            "model_version",
            &version_ref,
            serde_json::json!({ "source": new.source, "run_id": new.run_id, "format": new.format }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a model version"))?;
        self.model_version(&new.name, next).await
    }

    pub async fn model_version(&self, name: &str, version: i64) -> Result<ModelVersion> {
        let row = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE project_id = $1 AND name = $2 AND version = $3"
        )))
        .bind(&self.project_id)
        .bind(name)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading a model version"))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "model version",
            id: format!("{name}/{version}"),
        })?;
        let mut v = version_from_row(&row)?;
        self.version_details(std::slice::from_mut(&mut v)).await?;
        Ok(v)
    }

    async fn version_details(&self, versions: &mut [ModelVersion]) -> Result<()> {
        let mut by_name: HashMap<String, Vec<usize>> = HashMap::new();
        for (i, v) in versions.iter().enumerate() {
            by_name.entry(v.name.clone()).or_default().push(i);
        }
        for (name, idx) in by_name {
            let tags = sqlx::query(
                "SELECT version, key, value FROM model_version_tags WHERE project_id = $1 AND name = $2 ORDER BY key",
            )
            .bind(&self.project_id)
            .bind(&name)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("reading model version tags"))?;
            let aliases = self.aliases(&name).await?;
            for &i in &idx {
                let v = &mut versions[i];
                for r in &tags {
                    if get::<i64>(r, "version")? == v.version {
                        v.tags.push(KV::new(
                            get::<String>(r, "key")?,
                            get::<String>(r, "value")?,
                        ));
                    }
                }
                v.aliases = aliases
                    .iter()
                    .filter(|(_, n)| *n == v.version)
                    .map(|(a, _)| a.clone())
                    .collect();
            }
        }
        Ok(())
    }

    /// The version an alias points at.
    pub async fn model_version_by_alias(&self, name: &str, alias: &str) -> Result<ModelVersion> {
        let row = sqlx::query(
            "SELECT version FROM model_aliases WHERE project_id = $1 AND name = $2 AND alias = $3",
        )
        .bind(&self.project_id)
        .bind(name)
        .bind(alias)
        .fetch_optional(&self.pool)
        .await
        .map_err(StoreError::query("reading a model alias"))?
        .ok_or_else(|| StoreError::NotFound {
            kind: "model version",
            id: format!("{name}@{alias}"),
        })?;
        self.model_version(name, get(&row, "version")?).await
    }

    /// Versions matching: a name (exact or LIKE), a run id; newest first.
    pub async fn search_model_versions(
        &self,
        name: Option<&str>,
        name_like: Option<&str>,
        run_ids: &[String],
        max_results: i64,
        page_token: Option<&str>,
    ) -> Result<Page<ModelVersion>> {
        let offset = page_offset(page_token)?;
        let mut sql = format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE project_id = $1 \
             AND ($2 = '' OR name = $2) AND ($3 = '' OR name LIKE $3)"
        );
        if !run_ids.is_empty() {
            sql.push_str(&format!(
                " AND run_id IN ({})",
                super::tracking::placeholders(4, run_ids.len())
            ));
        }
        let n = 4 + run_ids.len();
        sql.push_str(&format!(
            " ORDER BY name, version DESC LIMIT ${n} OFFSET ${}",
            n + 1
        ));
        let mut q = sqlx::query(AssertSqlSafe(sql))
            .bind(&self.project_id)
            .bind(name.unwrap_or(""))
            .bind(name_like.unwrap_or(""));
        for r in run_ids {
            q = q.bind(r);
        }
        let rows = q
            .bind(max_results + 1)
            .bind(offset)
            .fetch_all(&self.pool)
            .await
            .map_err(StoreError::query("searching model versions"))?;
        let mut items = rows
            .iter()
            .map(version_from_row)
            .collect::<Result<Vec<_>>>()?;
        self.version_details(&mut items).await?;
        Ok(page(items, offset, max_results))
    }

    /// The newest version in each of `stages` (every stage when empty).
    pub async fn latest_versions(
        &self,
        name: &str,
        stages: &[String],
    ) -> Result<Vec<ModelVersion>> {
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS} FROM model_versions WHERE project_id = $1 AND name = $2 ORDER BY version DESC"
        )))
        .bind(&self.project_id)
        .bind(name)
        .fetch_all(&self.pool)
        .await
        .map_err(StoreError::query("reading model versions"))?;
        let mut seen = std::collections::HashSet::new();
        let mut out = Vec::new();
        for r in &rows {
            let v = version_from_row(r)?;
            let wanted = stages.is_empty()
                || stages
                    .iter()
                    .any(|s| s.eq_ignore_ascii_case(&v.current_stage));
            if wanted && seen.insert(v.current_stage.clone()) {
                out.push(v);
            }
        }
        out.sort_by_key(|v| v.version);
        self.version_details(&mut out).await?;
        Ok(out)
    }

    pub async fn update_model_version(
        &self,
        name: &str,
        version: i64,
        description: &str,
    ) -> Result<ModelVersion> {
        self.model_version(name, version).await?;
        let (_w, mut tx) = self.write().await?;
        sqlx::query(
            "UPDATE model_versions SET description = $4, last_updated_time = $5 \
             WHERE project_id = $1 AND name = $2 AND version = $3",
        )
        .bind(&self.project_id)
        .bind(name)
        .bind(version)
        .bind(description)
        .bind(now_ms())
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("updating a model version"))?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a model version"))?;
        self.model_version(name, version).await
    }

    /// Deletes a version and the aliases pointing at it.
    pub async fn delete_model_version(&self, name: &str, version: i64) -> Result<()> {
        self.model_version(name, version).await?;
        let (_w, mut tx) = self.write().await?;
        for table in ["model_aliases", "model_version_tags", "model_versions"] {
            sqlx::query(AssertSqlSafe(format!(
                "DELETE FROM {table} WHERE project_id = $1 AND name = $2 AND version = $3"
            )))
            .bind(&self.project_id)
            .bind(name)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("deleting a model version"))?;
        }
        self.audit_in(
            &mut tx,
            "model_version.delete",
            "model_version",
            &format!("{name}/{version}"),
            serde_json::json!({}),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a model version deletion"))
    }

    /// Moves a version to a stage; with `archive_existing`, the versions
    /// already in that stage move to Archived.
    pub async fn transition_stage(
        &self,
        name: &str,
        version: i64,
        stage: &str,
        archive_existing: bool,
    ) -> Result<ModelVersion> {
        let Some(stage) = STAGES.iter().find(|s| s.eq_ignore_ascii_case(stage)) else {
            return Err(StoreError::Invalid {
                field: "stage".into(),
                message: format!("`{stage}` is not one of {}", STAGES.join(", ")),
            });
        };
        self.model_version(name, version).await?;
        let now = now_ms();
        let (_w, mut tx) = self.write().await?;
        if archive_existing && (*stage == "Staging" || *stage == "Production") {
            sqlx::query(
                "UPDATE model_versions SET current_stage = 'Archived', last_updated_time = $4 \
                 WHERE project_id = $1 AND name = $2 AND current_stage = $3 AND version <> $5",
            )
            .bind(&self.project_id)
            .bind(name)
            .bind(*stage)
            .bind(now)
            .bind(version)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("archiving model versions"))?;
        }
        sqlx::query(
            "UPDATE model_versions SET current_stage = $4, last_updated_time = $5 \
             WHERE project_id = $1 AND name = $2 AND version = $3",
        )
        .bind(&self.project_id)
        .bind(name)
        .bind(version)
        .bind(*stage)
        .bind(now)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("moving a model version"))?;
        self.audit_in(
            &mut tx,
            "model_version.stage",
            "model_version",
            &format!("{name}/{version}"),
            serde_json::json!({ "stage": stage, "archive_existing": archive_existing }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a stage change"))?;
        self.model_version(name, version).await
    }

    /// Points an alias at a version (moving it if it pointed elsewhere);
    /// returns the version it pointed at before.
    pub async fn set_alias(&self, name: &str, alias: &str, version: i64) -> Result<Option<i64>> {
        check_alias(alias)?;
        self.model_version(name, version).await?;
        let (_w, mut tx) = self.write().await?;
        let before: Option<i64> = match sqlx::query(
            "SELECT version FROM model_aliases WHERE project_id = $1 AND name = $2 AND alias = $3",
        )
        .bind(&self.project_id)
        .bind(name)
        .bind(alias)
        .fetch_optional(&mut *tx)
        .await
        .map_err(StoreError::query("reading a model alias"))?
        {
            Some(r) => Some(get(&r, "version")?),
            None => None,
        };
        sqlx::query(
            "INSERT INTO model_aliases (project_id, name, alias, version) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (project_id, name, alias) DO UPDATE SET version = excluded.version",
        )
        .bind(&self.project_id)
        .bind(name)
        .bind(alias)
        .bind(version)
        .execute(&mut *tx)
        .await
        .map_err(StoreError::query("setting a model alias"))?;
        self.audit_in(
            &mut tx,
            "model.alias.set",
            "model",
            name,
            serde_json::json!({ "alias": alias, "from": before, "to": version }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a model alias"))?;
        Ok(before)
    }

    /// Removes an alias; returns the version it pointed at.
    pub async fn delete_alias(&self, name: &str, alias: &str) -> Result<i64> {
        let version = self.model_version_by_alias(name, alias).await?.version;
        let (_w, mut tx) = self.write().await?;
        sqlx::query("DELETE FROM model_aliases WHERE project_id = $1 AND name = $2 AND alias = $3")
            .bind(&self.project_id)
            .bind(name)
            .bind(alias)
            .execute(&mut *tx)
            .await
            .map_err(StoreError::query("deleting a model alias"))?;
        self.audit_in(
            &mut tx,
            "model.alias.delete",
            "model",
            name,
            serde_json::json!({ "alias": alias, "from": version }),
        )
        .await?;
        tx.commit()
            .await
            .map_err(StoreError::query("committing a model alias"))?;
        Ok(version)
    }
}

#[cfg(test)]
mod tests {
    use super::check_alias;

    #[test]
    fn aliases_that_would_read_as_versions_are_refused() {
        for bad in ["", "latest", "v3", "V12", "a b", "x/y"] {
            assert!(check_alias(bad).is_err(), "{bad:?} accepted");
        }
        for good in ["champion", "challenger", "prod-eu_1", "v2beta", "vx"] {
            check_alias(good).unwrap();
        }
    }
}
