//! kiln's own REST API, `/api/v1/…`: listings with filters and pagination
//! (`limit`, `page_token` in, `next_page_token` out), errors as
//! `{"error": {"code", "message"}}`. Described by `openapi.json`.

use std::collections::HashMap;

use axum::Json;
use axum::Router;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::routing::{get, put};
use kiln_store::ViewType;
use serde_json::{Value, json};

use crate::auth::Permission::{Read, Write};
use crate::error::{ApiError, V1Error};
use crate::mlflow::wire;
use crate::{AppState, guarded};

type VResult = Result<Json<Value>, V1Error>;
type Q = Query<HashMap<String, String>>;

/// The OpenAPI document describing `/api/v1`.
pub const OPENAPI: &str = include_str!("openapi.json");

pub fn routes(s: &AppState) -> Router<AppState> {
    Router::new()
        .route("/health", guarded(s, Read, get(|| async { "OK" })))
        .route(
            "/api/openapi.json",
            guarded(
                s,
                Read,
                get(|| async { ([(header::CONTENT_TYPE, "application/json")], OPENAPI) }),
            ),
        )
        .route("/api/v1/status", guarded(s, Read, get(status)))
        .route("/api/v1/experiments", guarded(s, Read, get(experiments)))
        .route("/api/v1/runs", guarded(s, Read, get(runs)))
        .route(
            "/api/v1/runs/{id}",
            guarded(s, Read, get(run)).merge(guarded(s, Write, axum::routing::delete(delete_run))),
        )
        .route(
            "/api/v1/runs/{id}/metrics/{key}",
            guarded(s, Read, get(metric_history)),
        )
        .route("/api/v1/models", guarded(s, Read, get(models)))
        .route("/api/v1/models/{name}", guarded(s, Read, get(model)))
        .route(
            "/api/v1/models/{name}/versions/{version}",
            guarded(s, Read, get(model_version)),
        )
        .route(
            "/api/v1/models/{name}/aliases/{alias}",
            guarded(s, Write, put(set_alias).delete(delete_alias)),
        )
        .route("/api/v1/datasets", guarded(s, Read, get(datasets)))
        .route("/api/v1/lineage", guarded(s, Read, get(lineage)))
        .route("/api/v1/audit", guarded(s, Read, get(audit)))
        .route("/api/v1/monitors", guarded(s, Read, get(monitors)))
        .route(
            "/api/v1/monitors/{name}/windows",
            guarded(s, Read, get(monitor_windows)),
        )
        .route("/api/v1/alerts", guarded(s, Read, get(alerts)))
        .route("/api/v1/triggers", guarded(s, Read, get(triggers)))
}

fn limit(q: &HashMap<String, String>, default: i64, max: i64) -> Result<i64, ApiError> {
    match q.get("limit") {
        None => Ok(default),
        Some(l) => match l.parse::<i64>() {
            Ok(n) if (1..=max).contains(&n) => Ok(n),
            _ => Err(ApiError::invalid(
                "limit",
                format!("must be a whole number from 1 to {max}, got `{l}`"),
            )),
        },
    }
}

fn page<T: serde::Serialize>(items: &[T], next: Option<String>) -> Json<Value> {
    Json(json!({ "items": items, "next_page_token": next }))
}

async fn status(State(s): State<AppState>) -> VResult {
    Ok(Json(json!({
        "project": s.project_name.as_ref(),
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": s.started.elapsed().as_secs_f64(),
    })))
}

async fn experiments(State(s): State<AppState>, Query(q): Q) -> VResult {
    let view = ViewType::parse(q.get("view").map(String::as_str).unwrap_or(""))
        .ok_or_else(|| ApiError::invalid("view", "use ACTIVE_ONLY, DELETED_ONLY or ALL"))?;
    let like = q.get("name").map(|n| format!("%{n}%"));
    let p = s
        .meta()
        .search_experiments(
            view,
            like.as_deref(),
            limit(&q, 100, 1000)?,
            q.get("page_token").map(String::as_str),
        )
        .await?;
    Ok(page(&p.items, p.next_page_token))
}

async fn runs(State(s): State<AppState>, Query(q): Q) -> VResult {
    let view = ViewType::parse(q.get("view").map(String::as_str).unwrap_or(""))
        .ok_or_else(|| ApiError::invalid("view", "use ACTIVE_ONLY, DELETED_ONLY or ALL"))?;
    let experiments = match q.get("experiment") {
        Some(e) => vec![s.meta().find_experiment(e).await?.id],
        None => Vec::new(),
    };
    let order: Vec<String> = q
        .get("order_by")
        .map(|o| o.split(',').map(|s| s.trim().to_string()).collect())
        .unwrap_or_default();
    let p = s
        .meta()
        .search_runs(
            &experiments,
            q.get("filter").map(String::as_str).unwrap_or(""),
            &order,
            view,
            limit(&q, 100, 10_000)?,
            q.get("page_token").map(String::as_str),
        )
        .await?;
    Ok(page(&p.items, p.next_page_token))
}

async fn run(State(s): State<AppState>, Path(id): Path<String>) -> VResult {
    Ok(Json(
        serde_json::to_value(s.meta().find_run(&id).await?).expect("runs serialise"),
    ))
}

async fn delete_run(State(s): State<AppState>, Path(id): Path<String>) -> VResult {
    let run = s.meta().find_run(&id).await?;
    s.meta().set_run_stage(&run.id, "deleted").await?;
    Ok(Json(json!({ "id": run.id, "lifecycle_stage": "deleted" })))
}

async fn metric_history(
    State(s): State<AppState>,
    Path((id, key)): Path<(String, String)>,
    Query(q): Q,
) -> VResult {
    let run = s.meta().find_run(&id).await?;
    let p = s
        .meta()
        .metric_history(
            &run.id,
            &key,
            limit(&q, 10_000, 100_000)?,
            q.get("page_token").map(String::as_str),
        )
        .await?;
    let points: Vec<Value> = p.items.iter().map(wire::metric).collect();
    Ok(page(&points, p.next_page_token))
}

async fn models(State(s): State<AppState>, Query(q): Q) -> VResult {
    let like = q.get("name").map(|n| format!("%{n}%"));
    let p = s
        .meta()
        .search_registered_models(
            like.as_deref(),
            limit(&q, 100, 1000)?,
            q.get("page_token").map(String::as_str),
        )
        .await?;
    Ok(page(&p.items, p.next_page_token))
}

async fn model(State(s): State<AppState>, Path(name): Path<String>) -> VResult {
    let m = s.meta().registered_model(&name).await?;
    let versions = s
        .meta()
        .search_model_versions(Some(&name), None, &[], 1000, None)
        .await?;
    let mut out = serde_json::to_value(m).expect("models serialise");
    out["versions"] = serde_json::to_value(versions.items).expect("versions serialise");
    Ok(Json(out))
}

async fn model_version(
    State(s): State<AppState>,
    Path((name, version)): Path<(String, String)>,
) -> VResult {
    let v = match version.parse::<i64>() {
        Ok(n) => s.meta().model_version(&name, n).await?,
        Err(_) => s.meta().model_version_by_alias(&name, &version).await?,
    };
    // The explanation summary `kiln train` stored, as on the model card.
    let explanation = s
        .project
        .version_explanation(&v.name, v.version)
        .await
        .ok()
        .flatten();
    let mut out = serde_json::to_value(v).expect("versions serialise");
    out["explanation"] = serde_json::to_value(explanation).expect("explanations serialise");
    Ok(Json(out))
}

async fn set_alias(
    State(s): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> VResult {
    let body: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::invalid(
            "body",
            format!("expected JSON like {{\"version\": 3}}: {e}"),
        )
    })?;
    let version = body
        .get("version")
        .and_then(crate::body::int)
        .ok_or_else(|| {
            ApiError::invalid(
                "version",
                "is required: the version number the alias points at",
            )
        })?;
    let before = s.meta().set_alias(&name, &alias, version).await?;
    Ok(Json(
        json!({ "name": name, "alias": alias, "version": version, "previous_version": before }),
    ))
}

async fn delete_alias(
    State(s): State<AppState>,
    Path((name, alias)): Path<(String, String)>,
) -> VResult {
    let version = s.meta().delete_alias(&name, &alias).await?;
    Ok(Json(
        json!({ "name": name, "alias": alias, "previous_version": version }),
    ))
}

async fn datasets(State(s): State<AppState>, Query(q): Q) -> VResult {
    let all = s.meta().list_datasets().await?;
    let lim = limit(&q, 100, 1000)? as usize;
    let offset: usize = match q.get("page_token") {
        None => 0,
        Some(t) => t.parse().map_err(|_| {
            ApiError::invalid(
                "page_token",
                format!("`{t}` is not a page token this server issued"),
            )
        })?,
    };
    let filtered: Vec<_> = all
        .into_iter()
        .filter(|d| {
            q.get("name")
                .is_none_or(|n| d.dataset.name.contains(n.as_str()))
        })
        .collect();
    let next = (offset + lim < filtered.len()).then(|| (offset + lim).to_string());
    let items: Vec<_> = filtered.into_iter().skip(offset).take(lim).collect();
    Ok(page(&items, next))
}

async fn lineage(State(s): State<AppState>, Query(q): Q) -> VResult {
    let reference = q.get("ref").ok_or_else(|| {
        ApiError::invalid(
            "ref",
            "is required: MODEL@VERSION, a run id or DATASET@VERSION",
        )
    })?;
    let depth = match q.get("depth") {
        None => 8,
        Some(d) => d
            .parse::<usize>()
            .ok()
            .filter(|d| (1..=32).contains(d))
            .ok_or_else(|| ApiError::invalid("depth", "must be 1 to 32"))?,
    };
    let root = kiln_project::lineage::resolve(s.meta(), reference).await?;
    let tree = kiln_project::lineage::walk(s.meta(), root, depth).await?;
    Ok(Json(serde_json::to_value(tree).expect("trees serialise")))
}

async fn audit(State(s): State<AppState>, Query(q): Q) -> VResult {
    let lim = limit(&q, 100, 10_000)?;
    let offset: i64 = match q.get("page_token") {
        None => 0,
        Some(t) => t.parse().map_err(|_| {
            ApiError::invalid(
                "page_token",
                format!("`{t}` is not a page token this server issued"),
            )
        })?,
    };
    let mut items = s
        .meta()
        .audit_log_matching(
            q.get("action").map(String::as_str).unwrap_or(""),
            lim + 1,
            offset,
        )
        .await?;
    let next = (items.len() as i64 > lim).then(|| (offset + lim).to_string());
    items.truncate(lim as usize);
    Ok(page(&items, next))
}

/// The monitors kiln.yaml declares, each with its latest window.
async fn monitors(State(s): State<AppState>) -> VResult {
    let mut items = Vec::new();
    for (name, cfg) in &s.project.config.monitors {
        let windows = s.meta().monitor_windows(name, 0).await?;
        // Webhook URLs often carry a token: readers see only where they go.
        let mut shown = cfg.clone();
        for w in &mut shown.webhooks {
            *w = match url::Url::parse(w) {
                Ok(u) => format!("{}://{}/…", u.scheme(), u.host_str().unwrap_or("?")),
                Err(_) => "…".into(),
            };
        }
        items.push(json!({
            "name": name,
            "deployment": cfg.deployment,
            "config": shown,
            "windows": windows.len(),
            "latest": windows.last(),
        }));
    }
    Ok(page(&items, None))
}

/// A monitor's windows, oldest first (`from` = first window number).
async fn monitor_windows(
    State(s): State<AppState>,
    Path(name): Path<String>,
    Query(q): Q,
) -> VResult {
    if !s.project.config.monitors.contains_key(&name) {
        return Err(
            ApiError::NotFound(format!("No monitor `{name}` is declared in kiln.yaml")).into(),
        );
    }
    let from: i64 = match q.get("from") {
        None => 0,
        Some(f) => f
            .parse()
            .map_err(|_| ApiError::invalid("from", format!("`{f}` is not a window number")))?,
    };
    let items = s.meta().monitor_windows(&name, from).await?;
    Ok(page(&items, None))
}

/// Alerts, newest first (`state=firing|resolved`), each with its events.
async fn alerts(State(s): State<AppState>, Query(q): Q) -> VResult {
    let state = match q.get("state").map(String::as_str) {
        None | Some("") => None,
        Some(st @ ("firing" | "resolved")) => Some(st),
        Some(other) => {
            return Err(ApiError::invalid(
                "state",
                format!("use firing or resolved, not `{other}`"),
            )
            .into());
        }
    };
    let list = s.meta().alerts(state, limit(&q, 100, 10_000)?).await?;
    let mut items = Vec::with_capacity(list.len());
    for a in list {
        let events = s.meta().alert_events(&a.id).await?;
        let mut v = serde_json::to_value(&a).map_err(|e| ApiError::Internal(e.to_string()))?;
        v["events"] =
            serde_json::to_value(events).map_err(|e| ApiError::Internal(e.to_string()))?;
        items.push(v);
    }
    Ok(page(&items, None))
}

/// Retraining triggers, newest first (`status=pending`…).
async fn triggers(State(s): State<AppState>, Query(q): Q) -> VResult {
    let items = s
        .meta()
        .pipeline_triggers(q.get("status").map(String::as_str), limit(&q, 100, 10_000)?)
        .await?;
    Ok(page(&items, None))
}
