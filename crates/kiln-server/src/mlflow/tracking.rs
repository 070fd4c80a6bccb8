//! MLflow tracking: experiments, runs, metrics, inputs, outputs and logged
//! models.

use axum::Json;
use axum::extract::{Path, State};
use kiln_store::{KV, Metric, NewLoggedModel, NewTrackedRun, RunInput, RunUpdate, ViewType};
use serde_json::{Map, Value, json};

use super::{MResult, artifact_root, listing, page_size, wire};
use crate::AppState;
use crate::body::{Params, float, int, obj_str};
use crate::error::ApiError;
use crate::filter::{self, Field};

// MLflow's limits (mlflow/utils/validation.py).
const MAX_KEY_LENGTH: usize = 250;
const MAX_PARAM_VALUE_LENGTH: usize = 6000;
const MAX_TAG_VALUE_LENGTH: usize = 8000;
const MAX_BATCH_METRICS: usize = 1000;
const MAX_BATCH_PARAMS: usize = 100;
const MAX_BATCH_TAGS: usize = 100;
const MAX_BATCH_TOTAL: usize = 1000;

fn check_key(field: &str, key: &str) -> Result<(), ApiError> {
    let ok = !key.is_empty()
        && key.len() <= MAX_KEY_LENGTH
        && key
            .chars()
            .all(|c| c.is_alphanumeric() || "_-. /:".contains(c))
        && !key.starts_with('/')
        && !key.split('/').any(|p| p == "..");
    if ok {
        Ok(())
    } else {
        Err(ApiError::invalid(
            field,
            format!(
                "Invalid value \"{key}\" for parameter '{field}' supplied: names may only contain \
                 alphanumerics, underscores (_), dashes (-), periods (.), spaces ( ), colons (:) and \
                 slashes (/), at most {MAX_KEY_LENGTH} characters, and must not escape their run \
                 with `..` or a leading slash."
            ),
        ))
    }
}

fn check_value(field: &str, key: &str, value: &str, max: usize) -> Result<(), ApiError> {
    if value.chars().count() > max {
        return Err(ApiError::invalid(
            field,
            format!(
                "'{field}' for key '{key}' had length {}, which exceeded length limit of {max}",
                value.chars().count()
            ),
        ));
    }
    Ok(())
}

fn kv_list(p: &Params, field: &str, max_value: usize) -> Result<Vec<KV>, ApiError> {
    p.objects(field)?
        .iter()
        .map(|o| {
            let key = obj_str(o, field, "key")?;
            let value = match o.get("value") {
                None | Some(Value::Null) => String::new(),
                Some(_) => obj_str(o, field, "value")?,
            };
            check_key(field, &key)?;
            check_value(field, &key, &value, max_value)?;
            Ok(KV::new(key, value))
        })
        .collect()
}

fn metric_from(o: &Map<String, Value>, field: &str, now: i64) -> Result<Metric, ApiError> {
    let key = obj_str(o, field, "key")?;
    check_key(field, &key)?;
    let value = o.get("value").ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("Missing value for required parameter '{field}.value'."),
        )
    })?;
    let value = float(value).ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("Got invalid value {value} for metric '{key}' (timestamp=..). Please specify value as a valid double (64-bit floating point)"),
        )
    })?;
    let timestamp = match o.get("timestamp").filter(|v| !v.is_null()) {
        None => now,
        Some(v) => int(v).ok_or_else(|| {
            ApiError::invalid(field, format!("invalid timestamp {v} for metric '{key}'"))
        })?,
    };
    let step = match o.get("step").filter(|v| !v.is_null()) {
        None => 0,
        Some(v) => int(v).ok_or_else(|| {
            ApiError::invalid(field, format!("invalid step {v} for metric '{key}'"))
        })?,
    };
    Ok(Metric {
        key,
        value,
        timestamp,
        step,
    })
}

/// `path` below `root`, without the `root/` prefix.
fn relative(path: &str, root: &str) -> String {
    path.strip_prefix(root)
        .and_then(|r| r.strip_prefix('/'))
        .unwrap_or(path)
        .to_string()
}

fn run_id(p: &Params) -> Result<String, ApiError> {
    p.str_any(&["run_id", "run_uuid"])
}

fn view(p: &Params, field: &str) -> Result<ViewType, ApiError> {
    let v = p.opt_str(field)?.unwrap_or_default();
    ViewType::parse(&v).ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("`{v}` is not ACTIVE_ONLY, DELETED_ONLY or ALL"),
        )
    })
}

// ---- Experiments -----------------------------------------------------------

pub async fn create_experiment(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("name")?;
    let tags = kv_list(&p, "tags", MAX_TAG_VALUE_LENGTH)?;
    let location = p.opt_str("artifact_location")?;
    let e = s
        .meta()
        .create_experiment(&name, location.as_deref(), &tags)
        .await
        .map_err(|e| match e {
            kiln_store::StoreError::AlreadyExists { .. } => {
                ApiError::AlreadyExists(format!("Experiment '{name}' already exists."))
            }
            other => other.into(),
        })?;
    Ok(Json(json!({ "experiment_id": e.id })))
}

pub async fn get_experiment(State(s): State<AppState>, p: Params) -> MResult {
    let e = s.meta().experiment(&p.str("experiment_id")?).await?;
    Ok(Json(json!({ "experiment": wire::experiment(&e) })))
}

pub async fn get_experiment_by_name(State(s): State<AppState>, p: Params) -> MResult {
    let name = p.str("experiment_name")?;
    let e = s
        .meta()
        .experiment_by_name(&name)
        .await
        .map_err(|e| match e {
            kiln_store::StoreError::NotFound { .. } => {
                ApiError::NotFound(format!("Could not find experiment with name '{name}'"))
            }
            other => other.into(),
        })?;
    Ok(Json(json!({ "experiment": wire::experiment(&e) })))
}

pub async fn search_experiments(State(s): State<AppState>, p: Params) -> MResult {
    let clauses = filter::parse(&p.opt_str("filter")?.unwrap_or_default())?;
    let max = page_size(&p, 1000, 50_000)?;
    let offset = offset(&p)?;
    let all = s
        .meta()
        .search_experiments(view(&p, "view_type")?, None, i64::MAX / 4, None)
        .await?
        .items;
    let mut hits: Vec<_> = all
        .iter()
        .filter(|e| {
            filter::matches(&clauses, |f| match f {
                Field::Attr(a) if a == "name" => Some(e.name.clone()),
                Field::Attr(a) if a == "experiment_id" => Some(e.id.clone()),
                Field::Attr(_) => None,
                Field::Tag(k) => e.tags.iter().find(|t| &t.key == k).map(|t| t.value.clone()),
            })
        })
        .collect();
    let orders = p.strings("order_by")?;
    if orders.is_empty() {
        // MLflow lists the newest first.
        hits.sort_by(|a, b| b.creation_time.cmp(&a.creation_time).then(b.id.cmp(&a.id)));
    } else {
        for o in orders.iter().rev() {
            let desc = o.to_ascii_lowercase().ends_with(" desc");
            let key = o
                .split_whitespace()
                .next()
                .unwrap_or("")
                .trim_start_matches("attribute.");
            hits.sort_by(|a, b| {
                let ord = match key {
                    "name" => a.name.cmp(&b.name),
                    "creation_time" => a.creation_time.cmp(&b.creation_time),
                    "last_update_time" => a.last_update_time.cmp(&b.last_update_time),
                    _ => a.id.cmp(&b.id),
                };
                if desc { ord.reverse() } else { ord }
            });
        }
    }
    let (items, next) = paginate(hits, offset, max);
    Ok(listing(
        "experiments",
        items
            .iter()
            .map(|e| wire::experiment(e))
            .collect::<Vec<_>>(),
        next,
    ))
}

pub(crate) fn offset(p: &Params) -> Result<usize, ApiError> {
    match p.opt_str("page_token")?.filter(|t| !t.is_empty()) {
        None => Ok(0),
        Some(t) => t.parse().map_err(|_| {
            ApiError::invalid(
                "page_token",
                format!("`{t}` is not a page token this server issued"),
            )
        }),
    }
}

pub(crate) fn paginate<T>(items: Vec<T>, offset: usize, max: i64) -> (Vec<T>, Option<String>) {
    let max = max as usize;
    let total = items.len();
    let page: Vec<T> = items.into_iter().skip(offset).take(max).collect();
    let next = (offset + max < total).then(|| (offset + max).to_string());
    (page, next)
}

pub async fn delete_experiment(State(s): State<AppState>, p: Params) -> MResult {
    s.meta()
        .set_experiment_stage(&p.str("experiment_id")?, "deleted")
        .await?;
    Ok(Json(json!({})))
}

pub async fn restore_experiment(State(s): State<AppState>, p: Params) -> MResult {
    s.meta()
        .set_experiment_stage(&p.str("experiment_id")?, "active")
        .await?;
    Ok(Json(json!({})))
}

pub async fn update_experiment(State(s): State<AppState>, p: Params) -> MResult {
    let id = p.str("experiment_id")?;
    if let Some(name) = p.opt_str("new_name")?.filter(|n| !n.is_empty()) {
        s.meta().rename_experiment(&id, &name).await?;
    }
    Ok(Json(json!({})))
}

pub async fn set_experiment_tag(State(s): State<AppState>, p: Params) -> MResult {
    let key = p.str("key")?;
    check_key("key", &key)?;
    let value = p.opt_str("value")?.unwrap_or_default();
    check_value("value", &key, &value, MAX_TAG_VALUE_LENGTH)?;
    s.meta()
        .set_experiment_tag(&p.str("experiment_id")?, &KV::new(key, value))
        .await?;
    Ok(Json(json!({})))
}

// ---- Runs ------------------------------------------------------------------

pub async fn create_run(State(s): State<AppState>, p: Params) -> MResult {
    let experiment_id = p
        .opt_str("experiment_id")?
        .filter(|e| !e.is_empty())
        .unwrap_or_else(|| kiln_store::DEFAULT_EXPERIMENT.to_string());
    let run = s
        .meta()
        .create_run(NewTrackedRun {
            experiment_id,
            name: p.opt_str("run_name")?,
            kind: "external".into(),
            start_time: p.opt_i64("start_time")?,
            tags: kv_list(&p, "tags", MAX_TAG_VALUE_LENGTH)?,
            user_id: p.opt_str("user_id")?.filter(|u| !u.is_empty()),
            ..NewTrackedRun::default()
        })
        .await?;
    Ok(Json(json!({ "run": wire::run(&run, &[]) })))
}

pub async fn update_run(State(s): State<AppState>, p: Params) -> MResult {
    let id = run_id(&p)?;
    let run = s
        .meta()
        .update_run(
            &id,
            RunUpdate {
                status: p.opt_str("status")?,
                end_time: p.opt_i64("end_time")?,
                name: p.opt_str("run_name")?,
            },
        )
        .await?;
    if run.status != "RUNNING"
        && std::env::var_os(kiln_core::EnvVars::KILN_OPENLINEAGE_URL).is_some()
    {
        // The event names the run's inputs: read the whole run.
        if let Ok(full) = s.meta().tracked_run(&id).await {
            s.lineage_event(&full).await;
        }
    }
    Ok(Json(json!({ "run_info": wire::run_info(&run) })))
}

pub async fn delete_run(State(s): State<AppState>, p: Params) -> MResult {
    s.meta().set_run_stage(&run_id(&p)?, "deleted").await?;
    Ok(Json(json!({})))
}

pub async fn restore_run(State(s): State<AppState>, p: Params) -> MResult {
    s.meta().set_run_stage(&run_id(&p)?, "active").await?;
    Ok(Json(json!({})))
}

pub async fn get_run(State(s): State<AppState>, p: Params) -> MResult {
    let id = run_id(&p)?;
    let run = s.meta().tracked_run(&id).await.map_err(|e| match e {
        kiln_store::StoreError::NotFound { .. } => {
            ApiError::NotFound(format!("Run with id={id} not found"))
        }
        other => other.into(),
    })?;
    let outputs = run_outputs(&s, &id).await?;
    Ok(Json(json!({ "run": wire::run(&run, &outputs) })))
}

async fn run_outputs(s: &AppState, id: &str) -> Result<Vec<(String, i64)>, ApiError> {
    Ok(s.meta()
        .lineage("run", id)
        .await?
        .into_iter()
        .filter(|e| e.src_kind == "logged_model" && e.relation == "output_of")
        .map(|e| (e.src_id, 0))
        .collect())
}

pub async fn search_runs(
    State(s): State<AppState>,
    p: Params,
) -> Result<Json<wire::RunsPage>, crate::error::MlflowError> {
    let experiment_ids = p.strings("experiment_ids")?;
    let max = page_size(&p, 1000, 50_000)?;
    let page = s
        .meta()
        .search_runs(
            &experiment_ids,
            &p.opt_str("filter")?.unwrap_or_default(),
            &p.strings("order_by")?,
            view(&p, "run_view_type")?,
            max,
            p.opt_str("page_token")?.as_deref(),
        )
        .await?;
    Ok(Json(wire::RunsPage(page)))
}

pub async fn log_metric(State(s): State<AppState>, p: Params) -> MResult {
    let id = run_id(&p)?;
    let m = metric_from(&p.0, "metric", kiln_store::now_ms())?;
    let model_id = p.opt_str("model_id")?.filter(|m| !m.is_empty());
    s.meta()
        .log_batch(&id, &[m], &[], &[], model_id.as_deref())
        .await?;
    Ok(Json(json!({})))
}

pub async fn log_param(State(s): State<AppState>, p: Params) -> MResult {
    let id = run_id(&p)?;
    let key = p.str("key")?;
    check_key("key", &key)?;
    let value = p.opt_str("value")?.unwrap_or_default();
    check_value("value", &key, &value, MAX_PARAM_VALUE_LENGTH)?;
    s.meta()
        .log_batch(&id, &[], &[KV::new(key, value)], &[], None)
        .await?;
    Ok(Json(json!({})))
}

pub async fn set_tag(State(s): State<AppState>, p: Params) -> MResult {
    let id = run_id(&p)?;
    let key = p.str("key")?;
    check_key("key", &key)?;
    let value = p.opt_str("value")?.unwrap_or_default();
    check_value("value", &key, &value, MAX_TAG_VALUE_LENGTH)?;
    s.meta()
        .log_batch(&id, &[], &[], &[KV::new(key, value)], None)
        .await?;
    Ok(Json(json!({})))
}

pub async fn delete_tag(State(s): State<AppState>, p: Params) -> MResult {
    s.meta()
        .delete_run_tag(&run_id(&p)?, &p.str("key")?)
        .await?;
    Ok(Json(json!({})))
}

pub async fn log_batch(State(s): State<AppState>, p: Params) -> MResult {
    let id = run_id(&p)?;
    let raw = p.objects("metrics")?;
    let params = kv_list(&p, "params", MAX_PARAM_VALUE_LENGTH)?;
    let tags = kv_list(&p, "tags", MAX_TAG_VALUE_LENGTH)?;
    for (field, n, max) in [
        ("metrics", raw.len(), MAX_BATCH_METRICS),
        ("params", params.len(), MAX_BATCH_PARAMS),
        ("tags", tags.len(), MAX_BATCH_TAGS),
    ] {
        if n > max {
            return Err(ApiError::invalid(
                field,
                format!("A batch logging request can contain at most {max} {field}. Got {n} {field}. Please split up {field} across multiple requests and try again."),
            )
            .into());
        }
    }
    let total = raw.len() + params.len() + tags.len();
    if total > MAX_BATCH_TOTAL {
        return Err(ApiError::invalid(
            "metrics",
            format!("A batch logging request can contain at most {MAX_BATCH_TOTAL} metrics, params, and tags in total. Got {total} in total."),
        )
        .into());
    }
    let now = kiln_store::now_ms();
    // Points may name the logged model they belong to; group by it.
    let mut groups: Vec<(Option<String>, Vec<Metric>)> = Vec::new();
    for o in &raw {
        let model = o
            .get("model_id")
            .and_then(Value::as_str)
            .filter(|m| !m.is_empty())
            .map(str::to_string);
        let m = metric_from(o, "metrics", now)?;
        match groups.iter_mut().find(|(g, _)| *g == model) {
            Some((_, v)) => v.push(m),
            None => groups.push((model, vec![m])),
        }
    }
    if groups.is_empty() {
        groups.push((None, Vec::new()));
    }
    for (i, (model, metrics)) in groups.iter().enumerate() {
        let (params, tags): (&[KV], &[KV]) = if i == 0 { (&params, &tags) } else { (&[], &[]) };
        s.meta()
            .log_batch(&id, metrics, params, tags, model.as_deref())
            .await?;
    }
    Ok(Json(json!({})))
}

pub async fn log_inputs(State(s): State<AppState>, p: Params) -> MResult {
    let id = run_id(&p)?;
    let mut inputs = Vec::new();
    for d in p.objects("datasets")? {
        let tags: Vec<KV> = match d.get("tags") {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|t| {
                    Some(KV::new(
                        t.get("key")?.as_str()?,
                        t.get("value").and_then(Value::as_str).unwrap_or(""),
                    ))
                })
                .collect(),
            _ => Vec::new(),
        };
        let Some(Value::Object(ds)) = d.get("dataset") else {
            return Err(ApiError::invalid(
                "datasets.dataset",
                "Missing value for required parameter 'datasets.dataset'.",
            )
            .into());
        };
        let text = |k: &str| ds.get(k).and_then(Value::as_str).map(str::to_string);
        let role = tags
            .iter()
            .find(|t| t.key == "mlflow.data.context")
            .map(|t| t.value.clone());
        inputs.push(RunInput {
            name: obj_str(ds, "dataset", "name")?,
            digest: obj_str(ds, "dataset", "digest")?,
            source_type: text("source_type").unwrap_or_default(),
            source: text("source").unwrap_or_default(),
            schema: text("schema"),
            profile: text("profile"),
            role,
            tags,
        });
    }
    s.meta().log_inputs(&id, &inputs).await?;
    Ok(Json(json!({})))
}

pub async fn log_outputs(State(s): State<AppState>, p: Params) -> MResult {
    let id = run_id(&p)?;
    let mut models = Vec::new();
    for m in p.objects("models")? {
        models.push(obj_str(&m, "models", "model_id")?);
    }
    s.meta().record_run_outputs(&id, &models).await?;
    Ok(Json(json!({})))
}

pub async fn metric_history(State(s): State<AppState>, p: Params) -> MResult {
    let id = run_id(&p)?;
    let key = p.str("metric_key")?;
    let max = page_size(&p, 25_000, 25_000)?;
    let page = s
        .meta()
        .metric_history(&id, &key, max, p.opt_str("page_token")?.as_deref())
        .await?;
    Ok(listing(
        "metrics",
        page.items.iter().map(wire::metric).collect::<Vec<_>>(),
        page.next_page_token,
    ))
}

/// `GET /mlflow/artifacts/list`: a run's artifacts, paths relative to its root.
pub async fn list_run_artifacts(State(s): State<AppState>, p: Params) -> MResult {
    let run = s.meta().tracked_run(&run_id(&p)?).await?;
    let sub = p.opt_str("path")?.unwrap_or_default();
    list_below(&s, &run.artifact_uri, &sub, "run_id").await
}

/// The files and folders under `sub` of an artifact root, as MLflow's
/// `ListArtifacts` answers: paths relative to the root.
async fn list_below(s: &AppState, uri: &str, sub: &str, field: &str) -> MResult {
    let root = artifact_root(uri).ok_or_else(|| {
        ApiError::invalid(
            field,
            format!("artifacts at `{uri}` are not stored by this server"),
        )
    })?;
    let dir = if sub.is_empty() {
        root.to_string()
    } else {
        format!("{root}/{}", sub.trim_matches('/'))
    };
    let files: Vec<Value> = s
        .meta()
        .list_artifacts(&dir)
        .await?
        .into_iter()
        .map(|e| {
            let mut f = json!({ "path": relative(&e.path, root), "is_dir": e.is_dir });
            if let Some(size) = e.size {
                f["file_size"] = size.into();
            }
            f
        })
        .collect();
    Ok(Json(json!({ "root_uri": uri, "files": files })))
}

// ---- Logged models ---------------------------------------------------------

pub async fn create_logged_model(State(s): State<AppState>, p: Params) -> MResult {
    let m = s
        .meta()
        .create_logged_model(NewLoggedModel {
            experiment_id: p.str("experiment_id")?,
            name: p.opt_str("name")?.unwrap_or_default(),
            source_run_id: p.opt_str("source_run_id")?.filter(|r| !r.is_empty()),
            model_type: p.opt_str("model_type")?,
            params: kv_list(&p, "params", MAX_PARAM_VALUE_LENGTH)?,
            tags: kv_list(&p, "tags", MAX_TAG_VALUE_LENGTH)?,
        })
        .await?;
    Ok(Json(json!({ "model": wire::logged_model(&m) })))
}

pub async fn get_logged_model(State(s): State<AppState>, Path(id): Path<String>) -> MResult {
    let m = s.meta().logged_model(&id).await?;
    Ok(Json(json!({ "model": wire::logged_model(&m) })))
}

pub async fn finalize_logged_model(
    State(s): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> MResult {
    let status = p.str("status")?;
    let status = match status.as_str() {
        "LOGGED_MODEL_READY" | "READY" | "2" => "LOGGED_MODEL_READY",
        "LOGGED_MODEL_UPLOAD_FAILED" | "UPLOAD_FAILED" | "FAILED" | "3" => {
            "LOGGED_MODEL_UPLOAD_FAILED"
        }
        "LOGGED_MODEL_PENDING" | "PENDING" | "1" => "LOGGED_MODEL_PENDING",
        other => {
            return Err(ApiError::invalid(
                "status",
                format!("`{other}` is not a logged model status"),
            )
            .into());
        }
    };
    let m = s
        .meta()
        .finalize_logged_model(&id, status, p.opt_str("status_message")?.as_deref())
        .await?;
    Ok(Json(json!({ "model": wire::logged_model(&m) })))
}

pub async fn delete_logged_model(State(s): State<AppState>, Path(id): Path<String>) -> MResult {
    s.meta().delete_logged_model(&id).await?;
    Ok(Json(json!({})))
}

pub async fn set_logged_model_tags(
    State(s): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> MResult {
    let tags = kv_list(&p, "tags", MAX_TAG_VALUE_LENGTH)?;
    s.meta().set_logged_model_tags(&id, &tags).await?;
    Ok(Json(json!({})))
}

pub async fn delete_logged_model_tag(
    State(s): State<AppState>,
    Path((id, key)): Path<(String, String)>,
) -> MResult {
    s.meta().delete_logged_model_tag(&id, &key).await?;
    Ok(Json(json!({})))
}

pub async fn log_logged_model_params(
    State(s): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> MResult {
    let params = kv_list(&p, "params", MAX_PARAM_VALUE_LENGTH)?;
    s.meta().log_logged_model_params(&id, &params).await?;
    Ok(Json(json!({})))
}

pub async fn search_logged_models(State(s): State<AppState>, p: Params) -> MResult {
    let clauses = filter::parse(&p.opt_str("filter")?.unwrap_or_default())?;
    let max = page_size(&p, 100, 10_000)?;
    let offset = offset(&p)?;
    let all = s
        .meta()
        .search_logged_models(
            &p.strings("experiment_ids")?,
            ViewType::ActiveOnly,
            i64::MAX / 4,
            None,
        )
        .await?
        .items;
    let hits: Vec<_> = all
        .into_iter()
        .filter(|m| {
            filter::matches(&clauses, |f| match f {
                Field::Attr(a) if a == "name" => Some(m.name.clone()),
                Field::Attr(a) if a == "source_run_id" => m.source_run_id.clone(),
                Field::Attr(a) if a == "model_id" => Some(m.id.clone()),
                Field::Attr(a) if a == "status" => Some(m.status.clone()),
                Field::Attr(_) => None,
                Field::Tag(k) => m.tags.iter().find(|t| &t.key == k).map(|t| t.value.clone()),
            })
        })
        .collect();
    let (items, next) = paginate(hits, offset, max);
    Ok(listing(
        "models",
        items.iter().map(wire::logged_model).collect::<Vec<_>>(),
        next,
    ))
}

pub async fn list_logged_model_artifacts(
    State(s): State<AppState>,
    Path(id): Path<String>,
    p: Params,
) -> MResult {
    let m = s.meta().logged_model(&id).await?;
    let sub = p.opt_str("artifact_directory_path")?.unwrap_or_default();
    list_below(&s, &m.artifact_location, &sub, "model_id").await
}
