//! `kiln server`: kiln's REST API under `/api/v1` (described by the OpenAPI
//! document at `/api/openapi.json`), and MLflow's tracking, artifact and
//! registry API under `/api/2.0`, so MLflow's clients work unchanged with
//! `MLFLOW_TRACKING_URI` pointed here.
//!
//! Handlers are thin: read the request, call the store, shape the answer.
//! Every route is wrapped by [`guarded`], which names the permission it needs
//! and asks the [`auth::Authorizer`] before the handler runs.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::Uri;
use axum::response::{IntoResponse, Response};
use axum::routing::MethodRouter;
use kiln_core::ContentHash;
use kiln_project::Project;
use kiln_store::{MetaStore, Run};

pub mod auth;
mod body;
pub mod error;
mod filter;
pub mod mlflow;
pub mod serve;
mod v1;

use auth::{Authorizer, Guard, LocalOwner, Permission};
use error::{ApiError, MlflowError, V1Error};

/// What every handler shares.
#[derive(Clone)]
pub struct AppState {
    pub project: Arc<Project>,
    authorizer: Arc<dyn Authorizer>,
    project_name: Arc<str>,
    started: Instant,
    /// How often the pipeline scheduler looks for due ticks, new dataset
    /// versions and pending triggers.
    pub scheduler_every: std::time::Duration,
    /// Pipelines it runs hand their steps to `kiln worker`s.
    pub remote_steps: bool,
}

impl AppState {
    pub fn new(project: Project) -> Self {
        Self::with_authorizer(project, Arc::new(LocalOwner))
    }

    pub fn with_authorizer(project: Project, authorizer: Arc<dyn Authorizer>) -> Self {
        let project_name: Arc<str> = project.meta.project().into();
        Self {
            project: Arc::new(project),
            authorizer,
            project_name,
            started: Instant::now(),
            scheduler_every: kiln_pipeline::schedule::DEFAULT_EVERY,
            remote_steps: false,
        }
    }

    pub fn meta(&self) -> &MetaStore {
        &self.project.meta
    }

    /// Stores bytes as an object. The folder store's write lock is a file
    /// lock, so it is taken off the async threads.
    pub async fn put_object(&self, bytes: Vec<u8>) -> Result<ContentHash, ApiError> {
        let objects = self.project.objects.clone();
        let lock = tokio::task::spawn_blocking(move || objects.lock())
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))??;
        let hash = self.project.objects.put_bytes(bytes).await?;
        drop(lock);
        Ok(hash)
    }

    /// The input signature in an MLflow model's `MLmodel` file, if it has one.
    pub async fn mlmodel_signature(&self, artifact_location: &str) -> Option<serde_json::Value> {
        let root = mlflow::artifact_root(artifact_location)?;
        let (object, _) = self
            .meta()
            .artifact(&format!("{root}/MLmodel"))
            .await
            .ok()??;
        let bytes = self.project.objects.get_bytes(&object).await.ok()?;
        let doc: serde_json::Value = serde_saphyr::from_slice(&bytes).ok()?;
        let parse = |k: &str| {
            doc.get("signature")?
                .get(k)?
                .as_str()
                .and_then(|s| serde_json::from_str::<serde_json::Value>(s).ok())
        };
        Some(serde_json::json!({ "inputs": parse("inputs")?, "outputs": parse("outputs") }))
    }

    /// Emits the OpenLineage event of a run that ended.
    pub async fn lineage_event(&self, run: &Run) {
        let outputs: Vec<String> = self
            .meta()
            .lineage("run", &run.id)
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|e| e.dst_kind == "run" && e.dst_id == run.id)
            .map(|e| format!("{}:{}", e.src_kind, e.src_id))
            .collect();
        let event = kiln_project::openlineage::run_event(&self.project_name, run, &outputs);
        kiln_project::openlineage::emit(&event).await;
    }
}

/// Wraps a route's handlers in the authorization layer, naming the
/// permission they need on this server's project.
pub fn guarded(
    s: &AppState,
    needs: Permission,
    route: MethodRouter<AppState>,
) -> MethodRouter<AppState> {
    Guard {
        authorizer: s.authorizer.clone(),
        project: s.project_name.clone(),
        needs,
    }
    .wrap(route)
}

/// The whole HTTP surface.
pub fn router(state: AppState) -> Router {
    Router::new()
        .merge(mlflow::routes(&state))
        .merge(v1::routes(&state))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(64 << 20))
        .with_state(state)
}

/// Whether a path is MLflow's API, whose errors take MLflow's shape.
pub(crate) fn speaks_mlflow(path: &str) -> bool {
    path.starts_with("/api/2.0/") || path.starts_with("/api/3.0/")
}

/// A known path asked with a method it does not take.
async fn method_not_allowed(method: axum::http::Method, uri: Uri) -> Response {
    let e = ApiError::MethodNotAllowed(format!("{} does not take {method}", uri.path()));
    if speaks_mlflow(uri.path()) {
        MlflowError(e).into_response()
    } else {
        V1Error(e).into_response()
    }
}

async fn not_found(uri: Uri) -> Response {
    let e = ApiError::NotFound(format!("No endpoint {}", uri.path()));
    if speaks_mlflow(uri.path()) {
        let mut r = MlflowError(e).into_response();
        // MLflow's code for an unknown endpoint.
        *r.body_mut() = axum::body::Body::from(
            serde_json::json!({ "error_code": "ENDPOINT_NOT_FOUND", "message": format!("No endpoint {}", uri.path()) })
                .to_string(),
        );
        r
    } else {
        V1Error(e).into_response()
    }
}

/// Serves until Ctrl-C or SIGTERM; `ready` is called with the bound address.
pub async fn serve(
    state: AppState,
    addr: SocketAddr,
    ready: impl FnOnce(SocketAddr),
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let monitors = tokio::spawn(monitor_loop(state.project.clone()));
    let pipelines = tokio::spawn(kiln_pipeline::schedule::scheduler_loop(
        state.project.clone(),
        state.scheduler_every,
        state.remote_steps,
    ));
    ready(listener.local_addr()?);
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(shutdown())
        .await;
    monitors.abort();
    let _ = monitors.await;
    pipelines.abort();
    let _ = pipelines.await;
    result
}

/// Runs each monitor kiln.yaml declares on its own schedule (`every:`,
/// default one minute), one at a time, for as long as the server runs.
async fn monitor_loop(project: Arc<Project>) {
    let monitors = project.config.monitors.clone();
    if monitors.is_empty() {
        return;
    }
    let every = |m: &kiln_project::MonitorConfig| {
        m.every
            .as_deref()
            .and_then(|e| kiln_core::parse_duration(e).ok())
            .filter(|d| !d.is_zero())
            .unwrap_or(std::time::Duration::from_secs(60))
    };
    let mut due: Vec<(tokio::time::Instant, &String)> = monitors
        .keys()
        .map(|n| (tokio::time::Instant::now(), n))
        .collect();
    loop {
        due.sort();
        let (at, name) = due[0];
        tokio::time::sleep_until(at).await;
        let cfg = &monitors[name];
        match project.run_monitor(name, cfg).await {
            Ok(run) => {
                for a in &run.fired {
                    eprintln!(
                        "kiln server: monitor {name}: ALERT {} fired: {}",
                        a.rule,
                        a.detail["message"].as_str().unwrap_or_default()
                    );
                }
                for a in &run.resolved {
                    eprintln!("kiln server: monitor {name}: {} resolved", a.rule);
                }
            }
            Err(e) => eprintln!("kiln server: monitor {name}: {e}"),
        }
        due[0].0 = tokio::time::Instant::now() + every(cfg);
    }
}

/// Resolves on Ctrl-C or SIGTERM.
pub async fn shutdown() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing a SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
