//! MLflow's REST API: what the official `mlflow` client calls for
//! tracking, artifacts, logged models and the registry. Shapes follow
//! MLflow's `service.proto` and `model_registry.proto` in proto3 JSON.

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{delete, get, patch, post, put};
use serde_json::Value;

use crate::auth::Permission::{Read, Write};
use crate::body::Params;
use crate::error::{ApiError, MlflowError};
use crate::{AppState, guarded};

mod artifacts;
mod registry;
mod tracking;
pub mod wire;

pub type MResult = Result<Json<Value>, MlflowError>;

/// The path under the artifact root of an `mlflow-artifacts:/…` URI.
pub fn artifact_root(uri: &str) -> Option<&str> {
    uri.strip_prefix("mlflow-artifacts:")
        .map(|p| p.trim_start_matches('/').trim_end_matches('/'))
}

/// A page of a listing: `{KEY: [...], "next_page_token": …}`, the token
/// only when there is a next page (as MLflow answers).
pub fn listing(key: &str, items: Vec<Value>, next: Option<String>) -> Json<Value> {
    let mut out = serde_json::json!({ key: items });
    if let Some(n) = next {
        out["next_page_token"] = n.into();
    }
    Json(out)
}

/// `max_results`, with a default and a ceiling.
pub fn page_size(p: &Params, default: i64, max: i64) -> Result<i64, ApiError> {
    match p.opt_i64("max_results")? {
        None | Some(0) => Ok(default),
        Some(n) if n < 0 || n > max => Err(ApiError::invalid(
            "max_results",
            format!(
                "Invalid value {n} for parameter 'max_results' supplied. It must be between 1 and {max}."
            ),
        )),
        Some(n) => Ok(n),
    }
}

/// Every MLflow route, each with the permission it needs.
pub fn routes(s: &AppState) -> Router<AppState> {
    use registry as reg;
    use tracking as t;
    let m = "/api/2.0/mlflow";
    let a = "/api/2.0/mlflow-artifacts/artifacts";
    Router::new()
        .route(
            &format!("{m}/experiments/create"),
            guarded(s, Write, post(t::create_experiment)),
        )
        .route(
            &format!("{m}/experiments/get"),
            guarded(s, Read, get(t::get_experiment)),
        )
        .route(
            &format!("{m}/experiments/get-by-name"),
            guarded(s, Read, get(t::get_experiment_by_name)),
        )
        .route(
            &format!("{m}/experiments/search"),
            guarded(
                s,
                Read,
                get(t::search_experiments).post(t::search_experiments),
            ),
        )
        .route(
            &format!("{m}/experiments/delete"),
            guarded(s, Write, post(t::delete_experiment)),
        )
        .route(
            &format!("{m}/experiments/restore"),
            guarded(s, Write, post(t::restore_experiment)),
        )
        .route(
            &format!("{m}/experiments/update"),
            guarded(s, Write, post(t::update_experiment)),
        )
        .route(
            &format!("{m}/experiments/set-experiment-tag"),
            guarded(s, Write, post(t::set_experiment_tag)),
        )
        .route(
            &format!("{m}/runs/create"),
            guarded(s, Write, post(t::create_run)),
        )
        .route(
            &format!("{m}/runs/update"),
            guarded(s, Write, post(t::update_run)),
        )
        .route(
            &format!("{m}/runs/delete"),
            guarded(s, Write, post(t::delete_run)),
        )
        .route(
            &format!("{m}/runs/restore"),
            guarded(s, Write, post(t::restore_run)),
        )
        .route(&format!("{m}/runs/get"), guarded(s, Read, get(t::get_run)))
        .route(
            &format!("{m}/runs/search"),
            guarded(s, Read, post(t::search_runs)),
        )
        .route(
            &format!("{m}/runs/log-metric"),
            guarded(s, Write, post(t::log_metric)),
        )
        .route(
            &format!("{m}/runs/log-parameter"),
            guarded(s, Write, post(t::log_param)),
        )
        .route(
            &format!("{m}/runs/set-tag"),
            guarded(s, Write, post(t::set_tag)),
        )
        .route(
            &format!("{m}/runs/delete-tag"),
            guarded(s, Write, post(t::delete_tag)),
        )
        .route(
            &format!("{m}/runs/log-batch"),
            guarded(s, Write, post(t::log_batch)),
        )
        .route(
            &format!("{m}/runs/log-inputs"),
            guarded(s, Write, post(t::log_inputs)),
        )
        .route(
            &format!("{m}/runs/outputs"),
            guarded(s, Write, post(t::log_outputs)),
        )
        .route(
            &format!("{m}/metrics/get-history"),
            guarded(s, Read, get(t::metric_history)),
        )
        .route(
            &format!("{m}/artifacts/list"),
            guarded(s, Read, get(t::list_run_artifacts)),
        )
        .route(
            &format!("{m}/logged-models"),
            guarded(s, Write, post(t::create_logged_model)),
        )
        .route(
            &format!("{m}/logged-models/search"),
            guarded(s, Read, post(t::search_logged_models)),
        )
        .route(
            &format!("{m}/logged-models/{{model_id}}"),
            guarded(s, Read, get(t::get_logged_model)).merge(guarded(
                s,
                Write,
                patch(t::finalize_logged_model).delete(t::delete_logged_model),
            )),
        )
        .route(
            &format!("{m}/logged-models/{{model_id}}/tags"),
            guarded(s, Write, patch(t::set_logged_model_tags)),
        )
        .route(
            &format!("{m}/logged-models/{{model_id}}/tags/{{key}}"),
            guarded(s, Write, delete(t::delete_logged_model_tag)),
        )
        .route(
            &format!("{m}/logged-models/{{model_id}}/params"),
            guarded(s, Write, post(t::log_logged_model_params)),
        )
        .route(
            &format!("{m}/logged-models/{{model_id}}/artifacts/directories"),
            guarded(s, Read, get(t::list_logged_model_artifacts)),
        )
        .route(
            &format!("{m}/registered-models/create"),
            guarded(s, Write, post(reg::create_registered_model)),
        )
        .route(
            &format!("{m}/registered-models/get"),
            guarded(s, Read, get(reg::get_registered_model)),
        )
        .route(
            &format!("{m}/registered-models/update"),
            guarded(s, Write, patch(reg::update_registered_model)),
        )
        .route(
            &format!("{m}/registered-models/delete"),
            guarded(s, Write, delete(reg::delete_registered_model)),
        )
        .route(
            &format!("{m}/registered-models/search"),
            guarded(s, Read, get(reg::search_registered_models)),
        )
        .route(
            &format!("{m}/registered-models/get-latest-versions"),
            guarded(
                s,
                Read,
                get(reg::get_latest_versions).post(reg::get_latest_versions),
            ),
        )
        .route(
            &format!("{m}/registered-models/set-tag"),
            guarded(s, Write, post(reg::set_registered_model_tag)),
        )
        .route(
            &format!("{m}/registered-models/delete-tag"),
            guarded(s, Write, delete(reg::delete_registered_model_tag)),
        )
        .route(
            &format!("{m}/registered-models/alias"),
            guarded(s, Read, get(reg::get_by_alias)).merge(guarded(
                s,
                Write,
                post(reg::set_alias).delete(reg::delete_alias),
            )),
        )
        .route(
            &format!("{m}/model-versions/create"),
            guarded(s, Write, post(reg::create_model_version)),
        )
        .route(
            &format!("{m}/model-versions/get"),
            guarded(s, Read, get(reg::get_model_version)),
        )
        .route(
            &format!("{m}/model-versions/update"),
            guarded(s, Write, patch(reg::update_model_version)),
        )
        .route(
            &format!("{m}/model-versions/delete"),
            guarded(s, Write, delete(reg::delete_model_version)),
        )
        .route(
            &format!("{m}/model-versions/search"),
            guarded(s, Read, get(reg::search_model_versions)),
        )
        .route(
            &format!("{m}/model-versions/transition-stage"),
            guarded(s, Write, post(reg::transition_stage)),
        )
        .route(
            &format!("{m}/model-versions/get-download-uri"),
            guarded(s, Read, get(reg::get_download_uri)),
        )
        .route(
            &format!("{m}/model-versions/set-tag"),
            guarded(s, Write, post(reg::set_model_version_tag)),
        )
        .route(
            &format!("{m}/model-versions/delete-tag"),
            guarded(s, Write, delete(reg::delete_model_version_tag)),
        )
        .route(a, guarded(s, Read, get(artifacts::list)))
        .route(
            &format!("{a}/{{*path}}"),
            guarded(s, Read, get(artifacts::download)).merge(guarded(
                s,
                Write,
                put(artifacts::upload)
                    .layer(DefaultBodyLimit::disable())
                    .delete(artifacts::delete),
            )),
        )
        .route(
            "/api/3.0/mlflow/server-info",
            guarded(s, Read, get(server_info)),
        )
}

async fn server_info() -> Json<Value> {
    Json(serde_json::json!({
        "store_type": "SqlStore",
        "workspaces_enabled": false,
        "trace_archival_enabled": false,
        "multipart_uploads_enabled": false,
        "multipart_downloads_enabled": false,
    }))
}
