//! MLflow's artifact proxy (`/api/2.0/mlflow-artifacts/artifacts/…`): each
//! uploaded file becomes a content-addressed object, and its path a row
//! pointing at it.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::MResult;
use crate::AppState;
use crate::body::Params;
use crate::error::{ApiError, MlflowError};

pub async fn list(State(s): State<AppState>, p: Params) -> MResult {
    let dir = p.opt_str("path")?.unwrap_or_default();
    let dir = dir.trim_matches('/');
    if !dir.is_empty() {
        kiln_store::check_artifact_path(dir)?;
    }
    let files: Vec<Value> = s
        .meta()
        .list_artifacts(dir)
        .await?
        .into_iter()
        .map(|e| {
            let name = e.path.rsplit('/').next().unwrap_or(&e.path).to_string();
            let mut f = json!({ "path": name, "is_dir": e.is_dir });
            if let Some(size) = e.size {
                f["file_size"] = size.into();
            }
            f
        })
        .collect();
    // A file or a missing path lists as nothing (the client relies on it).
    if files.is_empty() {
        return Ok(Json(json!({})));
    }
    Ok(Json(json!({ "files": files })))
}

pub async fn download(
    State(s): State<AppState>,
    Path(path): Path<String>,
) -> Result<Response, MlflowError> {
    kiln_store::check_artifact_path(&path)?;
    let (object, _) = s
        .meta()
        .artifact(&path)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("Artifact '{path}' does not exist")))?;
    let bytes = s.project.objects.get_bytes(&object).await?;
    let mut response = bytes.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    Ok(response)
}

pub async fn upload(
    State(s): State<AppState>,
    Path(path): Path<String>,
    body: Bytes,
) -> Result<Response, MlflowError> {
    kiln_store::check_artifact_path(&path)?;
    let size = body.len() as i64;
    let object = s.put_object(body.to_vec()).await?;
    s.meta().put_artifact(&path, &object, size).await?;
    Ok(Json(json!({})).into_response())
}

pub async fn delete(State(s): State<AppState>, Path(path): Path<String>) -> MResult {
    kiln_store::check_artifact_path(&path)?;
    s.meta().delete_artifacts(&path).await?;
    Ok(Json(json!({})))
}
