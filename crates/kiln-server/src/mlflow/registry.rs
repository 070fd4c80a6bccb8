//! MLflow's model registry: registered models, versions, stages, aliases.

use axum::Json;
use axum::extract::State;
use kiln_store::{KV, ModelVersion, NewModelVersion, StoreError};
use serde_json::{Value, json};

use super::tracking::{offset, paginate};
use super::{MResult, listing, page_size, wire};
use crate::AppState;
use crate::body::Params;
use crate::error::ApiError;
use crate::filter::{self, Field};

fn version(p: &Params) -> Result<i64, ApiError> {
    let v = p.str("version")?;
    v.trim().parse().map_err(|_| {
        ApiError::invalid(
            "version",
            format!("Model version must be an integer, got '{v}'"),
        )
    })
}

fn model_not_found(name: &str) -> impl FnOnce(StoreError) -> ApiError + '_ {
    move |e| match e {
        StoreError::NotFound {
            kind: "registered model",
            ..
        } => ApiError::NotFound(format!("Registered Model with name={name} not found")),
        other => other.into(),
    }
}

fn tags(p: &Params) -> Result<Vec<KV>, ApiError> {
    p.objects("tags")?
        .iter()
        .map(|o| {
            Ok(KV::new(
                crate::body::obj_str(o, "tags", "key")?,
                o.get("value").and_then(Value::as_str).unwrap_or(""),
            ))
        })
        .collect()
}

pub async fn create_registered_model(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("name")?;
    let m = s
        .meta()
        .create_registered_model(&name, p.opt_str("description")?.as_deref(), &tags(&p)?)
        .await
        .map_err(|e| match e {
            StoreError::AlreadyExists { .. } => {
                ApiError::AlreadyExists(format!("Registered Model (name={name}) already exists."))
            }
            other => other.into(),
        })?;
    Ok(Json(
        json!({ "registered_model": wire::registered_model(&m) }),
    ))
}

pub async fn get_registered_model(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("name")?;
    let m = s
        .meta()
        .registered_model(&name)
        .await
        .map_err(model_not_found(&name))?;
    Ok(Json(
        json!({ "registered_model": wire::registered_model(&m) }),
    ))
}

pub async fn update_registered_model(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("name")?;
    if let Some(d) = p.opt_str("description")? {
        s.meta()
            .update_registered_model(&name, &d)
            .await
            .map_err(model_not_found(&name))?;
    }
    let m = s.meta().registered_model(&name).await?;
    Ok(Json(
        json!({ "registered_model": wire::registered_model(&m) }),
    ))
}

pub async fn delete_registered_model(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("name")?;
    s.meta()
        .delete_registered_model(&name)
        .await
        .map_err(model_not_found(&name))?;
    Ok(Json(json!({})))
}

pub async fn search_registered_models(State(s): State<AppState>, p: Params) -> MResult {
    let clauses = filter::parse(&p.opt_str("filter")?.unwrap_or_default())?;
    let max = page_size(&p, 100, 1000)?;
    let offset = offset(&p)?;
    let all = s
        .meta()
        .search_registered_models(None, i64::MAX / 4, None)
        .await?
        .items;
    let hits: Vec<_> = all
        .into_iter()
        .filter(|m| {
            filter::matches(&clauses, |f| match f {
                Field::Attr(a) if a == "name" => Some(m.name.clone()),
                Field::Attr(_) => None,
                Field::Tag(k) => m.tags.iter().find(|t| &t.key == k).map(|t| t.value.clone()),
            })
        })
        .collect();
    let (items, next) = paginate(hits, offset, max);
    Ok(listing(
        "registered_models",
        items.iter().map(wire::registered_model).collect::<Vec<_>>(),
        next,
    ))
}

pub async fn get_latest_versions(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("name")?;
    s.meta()
        .registered_model(&name)
        .await
        .map_err(model_not_found(&name))?;
    let versions = s
        .meta()
        .latest_versions(&name, &p.strings("stages")?)
        .await?;
    Ok(Json(
        json!({ "model_versions": versions.iter().map(wire::model_version).collect::<Vec<_>>() }),
    ))
}

pub async fn set_registered_model_tag(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("name")?;
    let tag = KV::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    s.meta()
        .set_model_tag(&name, None, &tag)
        .await
        .map_err(model_not_found(&name))?;
    Ok(Json(json!({})))
}

pub async fn delete_registered_model_tag(State(s): State<AppState>, p: Params) -> MResult {
    s.meta()
        .delete_model_tag(&p.str("name")?, None, &p.str("key")?)
        .await?;
    Ok(Json(json!({})))
}

pub async fn create_model_version(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("name")?;
    let source = p.str("source")?;
    let model_id = p
        .opt_str("model_id")?
        .filter(|m| !m.is_empty())
        .or_else(|| {
            source
                .strip_prefix("models:/")
                .filter(|m| m.starts_with("m-"))
                .map(str::to_string)
        });
    let mut run_id = p.opt_str("run_id")?.filter(|r| !r.is_empty());
    let mut signature = None;
    if let Some(m) = &model_id {
        let logged = s.meta().logged_model(m).await?;
        if run_id.is_none() {
            run_id = logged.source_run_id.clone();
        }
        signature = s.mlmodel_signature(&logged.artifact_location).await;
    }
    let metrics = match &run_id {
        Some(r) => match s.meta().tracked_run(r).await {
            Ok(run) => Some(
                run.metrics
                    .iter()
                    .filter(|m| m.value.is_finite())
                    .map(|m| (m.key.clone(), json!(m.value)))
                    .collect::<serde_json::Map<_, _>>()
                    .into(),
            ),
            Err(_) => None,
        },
        None => None,
    };
    let v = s
        .meta()
        .create_model_version(
            NewModelVersion {
                name: name.clone(),
                source,
                run_id,
                run_link: p.opt_str("run_link")?,
                model_id,
                description: p.opt_str("description")?,
                tags: tags(&p)?,
                object: None,
                format: "mlflow".into(),
                signature,
                metrics,
            },
            false,
        )
        .await
        .map_err(model_not_found(&name))?;
    Ok(Json(json!({ "model_version": wire::model_version(&v) })))
}

async fn get_version(s: &AppState, p: &Params) -> Result<ModelVersion, ApiError> {
    let name = p.str("name")?;
    let v = version(p)?;
    s.meta().model_version(&name, v).await.map_err(|e| match e {
        StoreError::NotFound { .. } => ApiError::NotFound(format!(
            "Model Version (name={name}, version={v}) not found"
        )),
        other => other.into(),
    })
}

pub async fn get_model_version(State(s): State<AppState>, p: Params) -> MResult {
    let v = get_version(&s, &p).await?;
    Ok(Json(json!({ "model_version": wire::model_version(&v) })))
}

pub async fn update_model_version(State(s): State<AppState>, p: Params) -> MResult {
    let v = get_version(&s, &p).await?;
    let v = match p.opt_str("description")? {
        Some(d) => {
            s.meta()
                .update_model_version(&v.name, v.version, &d)
                .await?
        }
        None => v,
    };
    Ok(Json(json!({ "model_version": wire::model_version(&v) })))
}

pub async fn delete_model_version(State(s): State<AppState>, p: Params) -> MResult {
    let v = get_version(&s, &p).await?;
    s.meta().delete_model_version(&v.name, v.version).await?;
    Ok(Json(json!({})))
}

pub async fn search_model_versions(State(s): State<AppState>, p: Params) -> MResult {
    let clauses = filter::parse(&p.opt_str("filter")?.unwrap_or_default())?;
    let max = page_size(&p, 10_000, 200_000)?;
    let offset = offset(&p)?;
    // An exact name narrows the query; the rest is checked here.
    let exact = clauses.iter().find_map(|c| match (&c.field, &c.op) {
        (Field::Attr(a), filter::Op::Eq) if a == "name" => Some(c.values[0].clone()),
        _ => None,
    });
    let all = s
        .meta()
        .search_model_versions(exact.as_deref(), None, &[], i64::MAX / 4, None)
        .await?
        .items;
    let hits: Vec<_> = all
        .into_iter()
        .filter(|v| {
            filter::matches(&clauses, |f| match f {
                Field::Attr(a) if a == "name" => Some(v.name.clone()),
                Field::Attr(a) if a == "run_id" => v.run_id.clone(),
                Field::Attr(a) if a == "source_path" || a == "source" => Some(v.source.clone()),
                Field::Attr(a) if a == "version_number" => Some(v.version.to_string()),
                Field::Attr(_) => None,
                Field::Tag(k) => v.tags.iter().find(|t| &t.key == k).map(|t| t.value.clone()),
            })
        })
        .collect();
    let (items, next) = paginate(hits, offset, max);
    Ok(listing(
        "model_versions",
        items.iter().map(wire::model_version).collect::<Vec<_>>(),
        next,
    ))
}

pub async fn transition_stage(State(s): State<AppState>, p: Params) -> MResult {
    let v = get_version(&s, &p).await?;
    let v = s
        .meta()
        .transition_stage(
            &v.name,
            v.version,
            &p.str("stage")?,
            p.opt_bool("archive_existing_versions")?.unwrap_or(false),
        )
        .await?;
    Ok(Json(json!({ "model_version": wire::model_version(&v) })))
}

pub async fn get_download_uri(State(s): State<AppState>, p: Params) -> MResult {
    let v = get_version(&s, &p).await?;
    let uri = match &v.model_id {
        Some(m) => s.meta().logged_model(m).await?.artifact_location,
        None => v.source.clone(),
    };
    Ok(Json(json!({ "artifact_uri": uri })))
}

pub async fn set_model_version_tag(State(s): State<AppState>, p: Params) -> MResult {
    let v = get_version(&s, &p).await?;
    let tag = KV::new(p.str("key")?, p.opt_str("value")?.unwrap_or_default());
    s.meta()
        .set_model_tag(&v.name, Some(v.version), &tag)
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_model_version_tag(State(s): State<AppState>, p: Params) -> MResult {
    let v = get_version(&s, &p).await?;
    s.meta()
        .delete_model_tag(&v.name, Some(v.version), &p.str("key")?)
        .await?;
    Ok(Json(json!({})))
}

pub async fn set_alias(State(s): State<AppState>, p: Params) -> MResult {
    let v = get_version(&s, &p).await?;
    s.meta()
        .set_alias(&v.name, &p.str("alias")?, v.version)
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_alias(State(s): State<AppState>, p: Params) -> MResult {
    s.meta()
        .delete_alias(&p.str("name")?, &p.str("alias")?)
        .await?;
    Ok(Json(json!({})))
}

pub async fn get_by_alias(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("name")?;
    let alias = p.str("alias")?;
    let v = s
        .meta()
        .model_version_by_alias(&name, &alias)
        .await
        .map_err(|e| match e {
            StoreError::NotFound { .. } => ApiError::NotFound(format!(
                "Registered model alias {alias} not found for model {name}."
            )),
            other => other.into(),
        })?;
    Ok(Json(json!({ "model_version": wire::model_version(&v) })))
}
