//! `kiln serve`: real-time predictions from loaded models, over MLflow's
//! `/invocations`, the Open Inference Protocol v2 and kiln's own
//! `/api/v1/deployments/{name}/predict`, with `/metrics` for Prometheus.
//!
//! Requests are decoded and checked against the model's signature by
//! `kiln_serve`; each gets a request id (`x-request-id`, and in the body
//! where the protocol has room). Deployments route between versions
//! ([`deploy`]), mirror to a shadow, follow moved aliases, and log
//! predictions without waiting ([`log`]).

pub mod deploy;
pub mod log;
pub mod metrics;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use kiln_ml::Predictions;
use kiln_project::Project;
use kiln_serve::{Frame, InputError, RecordBatch};
use serde_json::{Value, json};

use crate::auth::{Authorizer, Guard, LocalOwner, Permission};
use deploy::{Deployment, Loaded};
use log::{Logger, Record, Role};
use metrics::Metrics;

/// Settings of the model server.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// A request that takes longer is answered 503.
    pub timeout: Duration,
    /// The largest request body, in bytes.
    pub max_body: usize,
    /// How often deployments check whether their aliases moved.
    pub reload_every: Duration,
    /// How long the prediction log buffers rows before writing a segment.
    pub log_flush_every: Duration,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            timeout: Duration::from_secs(30),
            max_body: 32 << 20,
            reload_every: Duration::from_secs(2),
            log_flush_every: Duration::from_secs(60),
        }
    }
}

/// What the serving routes share.
#[derive(Clone)]
pub struct ServeState {
    deployments: Arc<BTreeMap<String, Arc<Deployment>>>,
    project: Arc<Project>,
    pub metrics: Arc<Metrics>,
    logger: Option<Logger>,
    authorizer: Arc<dyn Authorizer>,
    project_name: Arc<str>,
    options: ServeOptions,
}

impl ServeState {
    /// Serves `deployments` (loaded with [`deploy::load_deployment`] and
    /// `metrics`).
    pub fn new(
        project: Arc<Project>,
        metrics: Arc<Metrics>,
        deployments: Vec<Deployment>,
        options: ServeOptions,
    ) -> Self {
        Self {
            project_name: project.meta.project().into(),
            deployments: Arc::new(
                deployments
                    .into_iter()
                    .map(|d| (d.name().to_string(), Arc::new(d)))
                    .collect(),
            ),
            project,
            metrics,
            logger: None,
            authorizer: Arc::new(LocalOwner),
            options,
        }
    }

    fn deployment(&self, name: &str) -> Result<&Arc<Deployment>, Failure> {
        self.deployments.get(name).ok_or_else(|| {
            Failure::not_found(format!(
                "No deployment `{name}`; this server serves: {}",
                self.names()
            ))
        })
    }

    /// The name, if it is a deployment; else empty (metric labels never
    /// take arbitrary names from requests).
    fn known<'a>(&self, name: &'a str) -> &'a str {
        if self.deployments.contains_key(name) {
            name
        } else {
            ""
        }
    }

    fn names(&self) -> String {
        self.deployments
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The deployment `/invocations` answers for: the only one, or the
    /// one named by `?deployment=` when there are several.
    fn default_deployment(&self, query: Option<&str>) -> Result<&Arc<Deployment>, Failure> {
        let named = query.and_then(|q| {
            url::form_urlencoded::parse(q.as_bytes())
                .find(|(k, _)| k == "deployment")
                .map(|(_, v)| v.into_owned())
        });
        match named {
            Some(n) => self.deployment(&n),
            None if self.deployments.len() == 1 => {
                Ok(self.deployments.values().next().expect("one"))
            }
            None => Err(Failure::invalid(
                None,
                None,
                format!(
                    "this server serves several deployments ({}); name one with `?deployment=NAME`",
                    self.names()
                ),
            )),
        }
    }
}

/// Why a request failed, for each protocol's error body.
#[derive(Debug)]
struct Failure {
    status: StatusCode,
    code: &'static str,
    message: String,
    column: Option<String>,
    row: Option<usize>,
}

impl Failure {
    fn invalid(column: Option<String>, row: Option<usize>, message: impl Into<String>) -> Self {
        Failure {
            status: StatusCode::BAD_REQUEST,
            code: "INVALID_INPUT",
            message: message.into(),
            column,
            row,
        }
    }

    fn not_found(message: impl Into<String>) -> Self {
        Failure {
            status: StatusCode::NOT_FOUND,
            code: "NOT_FOUND",
            message: message.into(),
            column: None,
            row: None,
        }
    }

    fn internal(message: impl Into<String>) -> Self {
        Failure {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "INTERNAL_ERROR",
            message: message.into(),
            column: None,
            row: None,
        }
    }

    /// kiln's shape: `{"error": {"code", "message", "column", "row"}}`.
    fn kiln(self, id: &str) -> Response {
        let mut e = json!({ "code": self.code, "message": self.message });
        if let Some(c) = self.column {
            e["column"] = json!(c);
        }
        if let Some(r) = self.row {
            e["row"] = json!(r);
        }
        (self.status, Json(json!({ "error": e, "request_id": id }))).into_response()
    }

    /// MLflow's scoring server shape: `{"error_code", "message"}`.
    fn mlflow(self) -> Response {
        let code = match self.status {
            StatusCode::BAD_REQUEST => "BAD_REQUEST",
            StatusCode::NOT_FOUND => "RESOURCE_DOES_NOT_EXIST",
            _ => "INTERNAL_ERROR",
        };
        (
            self.status,
            Json(json!({ "error_code": code, "message": self.message })),
        )
            .into_response()
    }

    /// The Open Inference Protocol's shape: `{"error": "message"}`.
    fn v2(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

impl From<InputError> for Failure {
    fn from(e: InputError) -> Self {
        Failure::invalid(e.column, e.row, e.message)
    }
}

fn malformed(e: serde_json::Error) -> Failure {
    Failure::invalid(
        None,
        None,
        format!("the body is not valid JSON ({e}); send a JSON object"),
    )
}

fn guarded(
    s: &ServeState,
    route: axum::routing::MethodRouter<ServeState>,
    needs: Permission,
) -> axum::routing::MethodRouter<ServeState> {
    Guard {
        authorizer: s.authorizer.clone(),
        project: s.project_name.clone(),
        needs,
    }
    .wrap(route)
}

/// Every serving route.
pub fn router(state: ServeState) -> Router {
    let s = &state;
    let read = Permission::Read;
    Router::new()
        .route("/healthz", get(|| async { "OK" }))
        .route("/readyz", get(|| async { "OK" }))
        .route("/ping", get(|| async { "OK" }))
        .route("/health", get(|| async { "OK" }))
        .route("/version", get(|| async { env!("CARGO_PKG_VERSION") }))
        .route("/metrics", get(metrics_text))
        .route("/invocations", guarded(s, post(invocations), read))
        .route("/v2", get(v2_server))
        .route(
            "/v2/health/live",
            get(|| async { Json(json!({ "live": true })) }),
        )
        .route(
            "/v2/health/ready",
            get(|| async { Json(json!({ "ready": true })) }),
        )
        .route("/v2/models/{name}", guarded(s, get(v2_metadata), read))
        .route("/v2/models/{name}/ready", guarded(s, get(v2_ready), read))
        .route("/v2/models/{name}/infer", guarded(s, post(v2_infer), read))
        .route(
            "/v2/models/{name}/versions/{version}",
            guarded(s, get(v2_metadata_version), read),
        )
        .route(
            "/v2/models/{name}/versions/{version}/ready",
            guarded(s, get(v2_ready_version), read),
        )
        .route(
            "/v2/models/{name}/versions/{version}/infer",
            guarded(s, post(v2_infer_version), read),
        )
        .route(
            "/api/v1/deployments",
            guarded(s, get(list_deployments), read),
        )
        .route(
            "/api/v1/deployments/{name}",
            guarded(s, get(show_deployment), read),
        )
        .route(
            "/api/v1/deployments/{name}/predict",
            guarded(s, post(predict), read),
        )
        .route(
            "/api/v1/deployments/{name}/feedback",
            guarded(s, post(feedback), Permission::Write),
        )
        .route(
            "/api/v1/deployments/{name}/shadow",
            guarded(s, get(shadow_report), read),
        )
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                Failure {
                    status: StatusCode::METHOD_NOT_ALLOWED,
                    code: "METHOD_NOT_ALLOWED",
                    message: format!("{method} is not allowed on {}", uri.path()),
                    column: None,
                    row: None,
                }
                .kiln("")
            },
        )
        .fallback(|uri: axum::http::Uri| async move {
            Failure::not_found(format!("No endpoint {}", uri.path())).kiln("")
        })
        .layer(axum::middleware::from_fn_with_state(
            state.options.timeout,
            time_limit,
        ))
        .layer(axum::extract::DefaultBodyLimit::max(state.options.max_body))
        .with_state(state)
}

/// Answers 503 when a request takes longer than the limit.
async fn time_limit(State(limit): State<Duration>, req: Request, next: Next) -> Response {
    match tokio::time::timeout(limit, next.run(req)).await {
        Ok(r) => r,
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "error": {
                "code": "TIMEOUT",
                "message": format!("the request took longer than {} s; send fewer rows or raise --timeout", limit.as_secs_f64()),
            }})),
        )
            .into_response(),
    }
}

/// Serves until Ctrl-C or SIGTERM: finishes requests in flight, then
/// writes what the prediction log holds.
pub async fn serve(
    state: ServeState,
    addr: std::net::SocketAddr,
    ready: impl FnOnce(std::net::SocketAddr),
) -> std::io::Result<()> {
    serve_until(state, addr, ready, crate::shutdown()).await
}

/// Serves until `stop` completes, then shuts down as [`serve`] does.
pub async fn serve_until(
    mut state: ServeState,
    addr: std::net::SocketAddr,
    ready: impl FnOnce(std::net::SocketAddr),
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::bind(addr).await?;
    let (logger, log_task) = log::start(
        state.project.clone(),
        state.metrics.clone(),
        state.options.log_flush_every,
    );
    state.logger = Some(logger);
    let reloader = tokio::spawn(reload_loop(state.clone()));
    let instance = uuid::Uuid::now_v7().simple().to_string();
    let sampler = tokio::spawn(sample_loop(state.clone(), instance.clone()));
    ready(listener.local_addr()?);
    let sampled = state.clone();
    let result = axum::serve(listener, router(state))
        .with_graceful_shutdown(stop)
        .await;
    reloader.abort();
    let _ = reloader.await;
    sampler.abort();
    let _ = sampler.await;
    // A last sample, so monitors see the counters at the end; then the
    // state goes, with the last logger clone, so the log's writer can end.
    let _ = tokio::time::timeout(Duration::from_secs(2), sample(&sampled, &instance)).await;
    drop(sampled);
    // The router (and every logger clone) is gone: the writer drains and ends.
    let _ = log_task.await;
    result
}

/// How often the server records its counters for monitors.
const SAMPLE_EVERY: Duration = Duration::from_secs(5);

/// Records each deployment's counters (requests, errors) and the process's
/// CPU time and memory every [`SAMPLE_EVERY`]: what monitors compute error
/// rates and resource use from.
async fn sample_loop(s: ServeState, instance: String) {
    let mut tick = tokio::time::interval(SAMPLE_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        sample(&s, &instance).await;
    }
}

async fn sample(s: &ServeState, instance: &str) {
    let cpu_ms = (metrics::process_cpu_seconds().unwrap_or(0.0) * 1000.0) as i64;
    let rss = metrics::process_resident_bytes().unwrap_or(0) as i64;
    let at = kiln_store::now_ms();
    for d in s.deployments.values() {
        let errors = s.metrics.deployment_errors(d.name()) as i64;
        let sample = kiln_store::ServingSample {
            deployment: d.name().to_string(),
            instance: instance.to_string(),
            at,
            requests: d.metrics.answered.get() as i64 + errors,
            errors,
            cpu_ms,
            rss_bytes: rss,
        };
        if let Err(e) = s.project.meta.add_serving_sample(&sample).await {
            tracing::warn!("recording serving counters: {e}");
        }
    }
}

/// Follows moved aliases: checks every deployment each `reload_every`.
async fn reload_loop(s: ServeState) {
    let mut tick = tokio::time::interval(s.options.reload_every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for d in s.deployments.values() {
            match deploy::reload(&s.project, &s.metrics, d).await {
                Ok(moved) => {
                    for (r, from, to) in moved {
                        tracing::info!(
                            deployment = d.name(),
                            "{r} moved: v{from} → v{to}, swapped in"
                        );
                        eprintln!(
                            "kiln serve: {}: {r} moved from v{from} to v{to}; now serving v{to}",
                            d.name()
                        );
                    }
                }
                Err(e) => eprintln!(
                    "kiln serve: {}: {e:#}; still serving the loaded version",
                    d.name()
                ),
            }
        }
    }
}

fn request_id() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

fn with_request_id(mut r: Response, id: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(id) {
        r.headers_mut().insert("x-request-id", v);
    }
    r
}

/// A request's answer: the version that gave it and its predictions.
struct Scored {
    loaded: Arc<Loaded>,
    predictions: Predictions,
    unseen: Vec<kiln_ml::preprocess::TransformNote>,
    latency_ms: f64,
    /// The rows' explanations, when asked for, and the time they took.
    explanation: Option<(Value, f64)>,
}

/// Rows above which scoring moves off the async threads.
const BLOCKING_ROWS: usize = 512;

/// Routes, types, scores; then logs and mirrors to the shadow without
/// waiting for either.
#[allow(clippy::too_many_arguments)]
async fn score(
    s: &ServeState,
    d: &Arc<Deployment>,
    mut frame: Frame,
    key: Option<String>,
    version: Option<&str>,
    explain: Option<&kiln_serve::ExplainRequest>,
    id: &str,
    started: Instant,
) -> Result<Scored, Failure> {
    let live = d.live();
    // A sticky key from the body's column, when the deployment names one.
    let key = key.or_else(|| {
        let col = d.spec.sticky.as_deref()?;
        let v = frame.column(col)?.first()?;
        Some(match v {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        })
    });
    let loaded = d
        .route(&live, key.as_deref(), version)
        .ok_or_else(|| version_not_live(d, &live, version.unwrap_or_default()))?;
    // The routing column is not an input unless the model reads it.
    if let Some(col) = &d.spec.sticky
        && !loaded.predictor.inputs().iter().any(|c| &c.name == col)
    {
        frame.columns.retain(|(n, _)| n != col);
    }
    let vm = &loaded.metrics;
    let in_flight = InFlight::enter(&d.metrics.in_flight);
    let result = if frame.rows > BLOCKING_ROWS {
        // The frame goes to the blocking thread and comes back for the shadow.
        let l = loaded.clone();
        let (f, r) = tokio::task::spawn_blocking(move || {
            let r = predict_frame(&l, &frame);
            (frame, r)
        })
        .await
        .map_err(|e| Failure::internal(format!("scoring failed: {e}")))?;
        frame = f;
        r
    } else {
        predict_frame(&loaded, &frame)
    };
    drop(in_flight);
    let (batch, predictions, unseen) = match result {
        Ok(r) => r,
        Err(f) => {
            if f.status.is_client_error() {
                vm.client_errors.inc();
            } else {
                vm.server_errors.inc();
            }
            return Err(f);
        }
    };
    let latency = started.elapsed();
    let rows = batch.num_rows();
    // Explanations follow the prediction (their time is reported apart).
    let mut explanation = None;
    let mut logged_explanations = None;
    if let Some(request) = explain {
        let t = Instant::now();
        let cheap = kiln_serve::explain::cheap(&loaded.predictor, &loaded.explain_cache);
        let explained = if rows > BLOCKING_ROWS || !cheap {
            let (l, b, r) = (loaded.clone(), batch.clone(), request.clone());
            tokio::task::spawn_blocking(move || {
                kiln_serve::explain::explain(
                    &l.predictor,
                    &b,
                    l.background.as_deref(),
                    &r,
                    &l.explain_cache,
                )
            })
            .await
            .map_err(|e| Failure::internal(format!("explaining failed: {e}")))?
        } else {
            kiln_serve::explain::explain(
                &loaded.predictor,
                &batch,
                loaded.background.as_deref(),
                request,
                &loaded.explain_cache,
            )
        };
        match explained {
            Ok((value, log)) => {
                explanation = Some((value, t.elapsed().as_secs_f64() * 1000.0));
                logged_explanations = Some(log);
            }
            Err(why) => {
                vm.client_errors.inc();
                return Err(Failure::invalid(None, None, format!("explain: {why}")));
            }
        }
    }
    vm.ok.inc();
    d.metrics.answered.inc();
    vm.rows.inc_by(rows as u64);
    vm.latency.observe(latency.as_secs_f64());
    let latency_ms = latency.as_secs_f64() * 1000.0;
    let time_us = chrono::Utc::now().timestamp_micros();
    let sampled = d.spec.sample >= 1.0 || (d.spec.sample > 0.0 && sample_hit(id, d.spec.sample));
    if let Some(shadow) = live.shadow.clone() {
        let (s2, d2, primary, answer) = (s.clone(), d.clone(), loaded.clone(), predictions.clone());
        let id2 = id.to_string();
        let mirror = move || {
            run_shadow(
                &s2, &d2, &shadow, &primary, frame, &answer, latency_ms, &id2, time_us, sampled,
            )
        };
        // Off the request's path; large batches off the async threads too.
        if rows > BLOCKING_ROWS {
            tokio::task::spawn_blocking(mirror);
        } else {
            tokio::spawn(async move { mirror() });
        }
    }
    if sampled && let Some(logger) = &s.logger {
        logger.log(Record {
            deployment: d.name_arc(),
            request_id: id.to_string(),
            time_us,
            loaded: loaded.clone(),
            role: Role::Answer,
            latency_ms,
            inputs: batch,
            predictions: predictions.clone(),
            explanations: logged_explanations,
        });
    }
    Ok(Scored {
        loaded,
        predictions,
        unseen,
        latency_ms,
        explanation,
    })
}

/// Counts a request in flight until dropped, so a request cut short (by
/// the timeout, or a client gone) is counted out too.
struct InFlight<'a>(&'a prometheus_client::metrics::gauge::Gauge);

impl<'a> InFlight<'a> {
    fn enter(g: &'a prometheus_client::metrics::gauge::Gauge) -> Self {
        g.inc();
        InFlight(g)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

type Predicted = (
    RecordBatch,
    Predictions,
    Vec<kiln_ml::preprocess::TransformNote>,
);

fn predict_frame(loaded: &Loaded, frame: &Frame) -> Result<Predicted, Failure> {
    let batch = frame.to_batch(loaded.predictor.inputs())?;
    let (p, notes) = loaded
        .predictor
        .predict(&batch)
        .map_err(|e| Failure::invalid(None, None, e.to_string()))?;
    Ok((batch, p, notes))
}

/// Whether a request falls in the logged sample (by its id, so the same
/// request is in or out for every model that scores it).
fn sample_hit(id: &str, rate: f64) -> bool {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    id.hash(&mut h);
    (h.finish() % 1_000_000) as f64 / 1_000_000.0 < rate
}

/// Scores the shadow on the same rows, compares, records.
#[allow(clippy::too_many_arguments)]
fn run_shadow(
    s: &ServeState,
    d: &Deployment,
    shadow: &Arc<Loaded>,
    primary: &Loaded,
    frame: Frame,
    answer: &Predictions,
    primary_ms: f64,
    id: &str,
    time_us: i64,
    sampled: bool,
) {
    let t = Instant::now();
    let result = predict_frame(shadow, &frame);
    let shadow_ms = t.elapsed().as_secs_f64() * 1000.0;
    let (rows, agreeing) = (&d.metrics.shadow_rows, &d.metrics.shadow_agreeing);
    let mut stats = d.shadow.lock().expect("shadow stats");
    stats.primary_ms.push(primary_ms);
    match result {
        Ok((batch, p, _)) => {
            shadow.metrics.ok.inc();
            shadow.metrics.latency.observe(shadow_ms / 1000.0);
            stats.shadow_ms.push(shadow_ms);
            let (agree, diff) = compare(primary, answer, shadow, &p);
            stats.compared_rows += p.len() as u64;
            stats.agreeing_rows += agree;
            stats.abs_diff_sum += diff;
            rows.inc_by(p.len() as u64);
            agreeing.inc_by(agree);
            drop(stats);
            if sampled && let Some(logger) = &s.logger {
                logger.log(Record {
                    deployment: d.name_arc(),
                    request_id: id.to_string(),
                    time_us,
                    loaded: shadow.clone(),
                    role: Role::Shadow,
                    latency_ms: shadow_ms,
                    inputs: batch,
                    predictions: p,
                    explanations: None,
                });
            }
        }
        Err(_) => {
            stats.errors += 1;
            shadow.metrics.client_errors.inc();
        }
    }
}

/// Rows where two models agree (the same class label; values within 1e-6
/// relative for regression), and the summed absolute difference of their
/// values (probability of the answered class, or the value).
fn compare(a: &Loaded, pa: &Predictions, b: &Loaded, pb: &Predictions) -> (u64, f64) {
    match (pa, pb) {
        (Predictions::Regression(x), Predictions::Regression(y)) => {
            let agree = x
                .iter()
                .zip(y)
                .filter(|(x, y)| (*x - *y).abs() <= 1e-6 * x.abs().max(1.0))
                .count() as u64;
            (agree, x.iter().zip(y).map(|(x, y)| (x - y).abs()).sum())
        }
        _ => {
            let la = labels(a, pa);
            let lb = labels(b, pb);
            let agree = la.iter().zip(&lb).filter(|(x, y)| x == y).count() as u64;
            let diff = match (pa, pb) {
                (Predictions::Binary(x), Predictions::Binary(y)) => {
                    x.iter().zip(y).map(|(x, y)| (x - y).abs()).sum()
                }
                _ => 0.0,
            };
            (agree, diff)
        }
    }
}

fn labels(l: &Loaded, p: &Predictions) -> Vec<String> {
    prediction_values(l, p)
        .into_iter()
        .map(|v| match v {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect()
}

/// What MLflow's scoring server answers for the model's flavour: a
/// LightGBM or XGBoost booster's `predict` (the probability of class 1,
/// each class's probability, or the value), as `mlflow.lightgbm` and
/// `mlflow.xgboost` serve native boosters; a class label or value for
/// kiln and ONNX models, as scikit-learn classifiers answer.
fn mlflow_predictions(l: &Loaded, p: &Predictions) -> Vec<Value> {
    let booster = matches!(l.predictor.format(), "lightgbm" | "xgboost");
    match p {
        Predictions::Binary(v) if booster => v.iter().map(|&x| json!(x)).collect(),
        Predictions::Multiclass { probs, n_classes } if booster => {
            probs.chunks(*n_classes).map(|row| json!(row)).collect()
        }
        _ => prediction_values(l, p),
    }
}

/// The predicted value of each row: a number, or a class label.
fn prediction_values(l: &Loaded, p: &Predictions) -> Vec<Value> {
    match p {
        Predictions::Regression(v) => v.iter().map(|&x| json!(x)).collect(),
        _ => {
            let classes = l.predictor.classes();
            p.classes()
                .unwrap_or_default()
                .into_iter()
                .map(|c| json!(classes.get(c as usize).map_or("", String::as_str)))
                .collect()
        }
    }
}

/// Class probabilities, one vector per row (empty for regression).
fn probabilities(p: &Predictions) -> Vec<Vec<f64>> {
    match p {
        Predictions::Regression(_) => Vec::new(),
        Predictions::Binary(v) => v.iter().map(|&x| vec![1.0 - x, x]).collect(),
        Predictions::Multiclass { probs, n_classes } => {
            probs.chunks(*n_classes).map(<[f64]>::to_vec).collect()
        }
    }
}

/// The routing key a client sends: `x-kiln-key`.
fn header_key(headers: &HeaderMap) -> Option<String> {
    headers
        .get("x-kiln-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

async fn metrics_text(State(s): State<ServeState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        s.metrics.render(),
    )
        .into_response()
}

/// MLflow's scoring protocol: `dataframe_split`, `dataframe_records`,
/// `instances`, `inputs` (JSON) or CSV; answers `{"predictions": [...]}`.
async fn invocations(
    State(s): State<ServeState>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let id = request_id();
    let result = async {
        let d = s.default_deployment(uri.query())?;
        let content_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("application/json")
            .to_ascii_lowercase();
        let frame = if content_type.starts_with("text/csv") {
            Frame::from_csv(&body)?
        } else if content_type.starts_with("application/json") || content_type.is_empty() {
            let v: Value = serde_json::from_slice(&body).map_err(malformed)?;
            mlflow_frame(&v)?
        } else {
            return Err(Failure {
                status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
                code: "UNSUPPORTED_MEDIA_TYPE",
                message: format!(
                    "content type `{content_type}` is not accepted: send application/json or text/csv"
                ),
                column: None,
                row: None,
            });
        };
        let scored = score(&s, d, frame, header_key(&headers), None, None, &id, started).await?;
        Ok::<_, Failure>(json!({ "predictions": mlflow_predictions(&scored.loaded, &scored.predictions) }))
    }
    .await;
    match result {
        Ok(v) => with_request_id(Json(v).into_response(), &id),
        Err(e) => {
            let name = s
                .default_deployment(uri.query())
                .map(|d| d.name().to_string());
            s.metrics
                .error(name.as_deref().unwrap_or(""), e.status.as_u16());
            with_request_id(e.mlflow(), &id)
        }
    }
}

/// The frame in an MLflow scoring request.
fn mlflow_frame(v: &Value) -> Result<Frame, Failure> {
    let o = v.as_object().ok_or_else(|| {
        Failure::invalid(
            None,
            None,
            "expected a JSON object with dataframe_split, dataframe_records, instances or inputs",
        )
    })?;
    let keys: Vec<&str> = [
        "dataframe_split",
        "dataframe_records",
        "instances",
        "inputs",
    ]
    .into_iter()
    .filter(|k| o.contains_key(*k))
    .collect();
    if keys.len() != 1 {
        return Err(Failure::invalid(
            None,
            None,
            format!(
                "give exactly one of dataframe_split, dataframe_records, instances or inputs (found {})",
                if keys.is_empty() {
                    "none".to_string()
                } else {
                    keys.join(", ")
                }
            ),
        ));
    }
    Ok(match keys[0] {
        "dataframe_split" => Frame::from_split(&o["dataframe_split"])?,
        "dataframe_records" => match &o["dataframe_records"] {
            Value::Array(items) => Frame::from_records(items)?,
            _ => {
                return Err(Failure::invalid(
                    None,
                    None,
                    "dataframe_records must be a list of records ({\"column\": value, …})",
                ));
            }
        },
        k => Frame::from_inputs(&o[k])?,
    })
}

fn v2_datatype(t: kiln_core::ColumnType) -> &'static str {
    use kiln_core::ColumnType as C;
    match t {
        C::Integer => "INT64",
        C::Float => "FP64",
        C::Boolean => "BOOL",
        _ => "BYTES",
    }
}

fn v2_meta(d: &Deployment) -> Value {
    let live = d.live();
    let main = &live.arms[0].0;
    let inputs: Vec<Value> = main
        .predictor
        .inputs()
        .iter()
        .map(|c| json!({ "name": c.name, "datatype": v2_datatype(c.column_type), "shape": [-1] }))
        .collect();
    let regression = main.predictor.task() == kiln_ml::Task::Regression;
    let mut outputs = vec![json!({
        "name": "prediction",
        "datatype": if regression { "FP64" } else { "BYTES" },
        "shape": [-1],
    })];
    if !regression {
        outputs.push(json!({
            "name": "probabilities",
            "datatype": "FP64",
            "shape": [-1, main.predictor.classes().len()],
        }));
    }
    json!({
        "name": d.name(),
        "versions": live.arms.iter().map(|(a, _)| a.version.clone()).collect::<Vec<_>>(),
        // Triton names platforms runtime_format (onnxruntime_onnx).
        "platform": match main.predictor.format() {
            "kiln" => "kiln".to_string(),
            other => format!("kiln_{other}"),
        },
        "inputs": inputs,
        "outputs": outputs,
    })
}

/// A 404 for a version no arm of `d` serves now.
fn version_not_live(d: &Deployment, live: &deploy::Live, v: &str) -> Failure {
    Failure::not_found(format!(
        "Deployment `{}` serves version {}, not {v}",
        d.name(),
        live.arms
            .iter()
            .map(|(a, _)| a.version.clone())
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

/// The deployment a v2 path names, checked against the version in the
/// path when there is one.
fn v2_deployment<'a>(
    s: &'a ServeState,
    name: &str,
    version: Option<&str>,
) -> Result<&'a Arc<Deployment>, Failure> {
    let d = s.deployment(name)?;
    if let Some(v) = version {
        let live = d.live();
        if !live.arms.iter().any(|(a, _)| a.version == v) {
            return Err(version_not_live(d, &live, v));
        }
    }
    Ok(d)
}

/// `GET /v2`: the server's metadata.
async fn v2_server() -> Json<Value> {
    Json(json!({ "name": "kiln", "version": env!("CARGO_PKG_VERSION"), "extensions": [] }))
}

async fn v2_metadata(State(s): State<ServeState>, Path(name): Path<String>) -> Response {
    v2_metadata_of(&s, &name, None)
}

async fn v2_metadata_version(
    State(s): State<ServeState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    v2_metadata_of(&s, &name, Some(&version))
}

fn v2_metadata_of(s: &ServeState, name: &str, version: Option<&str>) -> Response {
    match v2_deployment(s, name, version) {
        Ok(d) => Json(v2_meta(d)).into_response(),
        Err(e) => e.v2(),
    }
}

async fn v2_ready(State(s): State<ServeState>, Path(name): Path<String>) -> Response {
    v2_ready_of(&s, &name, None)
}

async fn v2_ready_version(
    State(s): State<ServeState>,
    Path((name, version)): Path<(String, String)>,
) -> Response {
    v2_ready_of(&s, &name, Some(&version))
}

fn v2_ready_of(s: &ServeState, name: &str, version: Option<&str>) -> Response {
    match v2_deployment(s, name, version) {
        Ok(d) => Json(json!({ "name": d.name(), "ready": true })).into_response(),
        Err(e) => e.v2(),
    }
}

async fn v2_infer(
    State(s): State<ServeState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    v2_infer_inner(&s, &name, None, &headers, &body).await
}

async fn v2_infer_version(
    State(s): State<ServeState>,
    Path((name, version)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    v2_infer_inner(&s, &name, Some(&version), &headers, &body).await
}

async fn v2_infer_inner(
    s: &ServeState,
    name: &str,
    version: Option<&str>,
    headers: &HeaderMap,
    body: &[u8],
) -> Response {
    let started = Instant::now();
    let mut id = request_id();
    let result = async {
        let d = v2_deployment(s, name, version)?;
        // The binary tensor extension: a JSON header of the length the
        // header names, then the tensors' raw bytes.
        let header_len = headers
            .get("inference-header-content-length")
            .map(|h| {
                h.to_str()
                    .ok()
                    .and_then(|t| t.parse::<usize>().ok())
                    .filter(|n| *n <= body.len())
                    .ok_or_else(|| {
                        Failure::invalid(
                            None,
                            None,
                            "Inference-Header-Content-Length must be a length within the body",
                        )
                    })
            })
            .transpose()?;
        let (json_part, binary) = match header_len {
            Some(n) => body.split_at(n),
            None => (body, &[][..]),
        };
        let mut v: Value = serde_json::from_slice(json_part).map_err(malformed)?;
        if header_len.is_some() {
            inline_binary_tensors(&mut v, binary)?;
        }
        if let Some(given) = v.get("id").and_then(Value::as_str) {
            id = given.to_string();
        }
        let inputs = v.get("inputs").ok_or_else(|| {
            Failure::invalid(
                None,
                None,
                "an inference request needs `inputs`: one tensor per column",
            )
        })?;
        let frame = Frame::from_v2(inputs)?;
        let scored = score(
            s,
            d,
            frame,
            header_key(headers),
            version,
            None,
            &id,
            started,
        )
        .await?;
        let p = &scored.predictions;
        let n = p.len();
        let values = prediction_values(&scored.loaded, p);
        let mut outputs = vec![json!({
            "name": "prediction",
            "shape": [n],
            "datatype": if matches!(p, Predictions::Regression(_)) { "FP64" } else { "BYTES" },
            "data": values,
        })];
        let probs = probabilities(p);
        if !probs.is_empty() {
            let k = scored.loaded.predictor.classes().len();
            outputs.push(json!({
                "name": "probabilities",
                "shape": [n, k],
                "datatype": "FP64",
                "data": probs.concat(),
            }));
        }
        Ok::<_, Failure>(json!({
            "model_name": d.name(),
            "model_version": scored.loaded.version,
            "id": id,
            "outputs": outputs,
        }))
    }
    .await;
    match result {
        Ok(v) => with_request_id(Json(v).into_response(), &id),
        Err(e) => {
            s.metrics.error(s.known(name), e.status.as_u16());
            with_request_id(e.v2(), &id)
        }
    }
}

/// Replaces each input's `binary_data_size` bytes (the v2 binary tensor
/// extension) by the `data` they encode, in order.
fn inline_binary_tensors(v: &mut Value, mut bin: &[u8]) -> Result<(), Failure> {
    let Some(inputs) = v.get_mut("inputs").and_then(Value::as_array_mut) else {
        return Ok(());
    };
    for input in inputs {
        let Some(size) = input
            .pointer("/parameters/binary_data_size")
            .and_then(Value::as_u64)
        else {
            continue;
        };
        let name = input["name"].as_str().unwrap_or("?").to_string();
        let bad = |m: String| {
            Failure::invalid(Some(name.clone()), None, format!("tensor \"{name}\": {m}"))
        };
        let size = size as usize;
        if size > bin.len() {
            return Err(bad(format!(
                "binary_data_size {size} runs past the body's {} remaining bytes",
                bin.len()
            )));
        }
        let (mine, rest) = bin.split_at(size);
        bin = rest;
        let datatype = input["datatype"].as_str().unwrap_or("").to_string();
        let data = decode_tensor(&datatype, mine).map_err(bad)?;
        input["data"] = Value::Array(data);
    }
    Ok(())
}

fn decode_tensor(datatype: &str, b: &[u8]) -> Result<Vec<Value>, String> {
    fn fixed<const N: usize>(b: &[u8], f: impl Fn([u8; N]) -> Value) -> Result<Vec<Value>, String> {
        if !b.len().is_multiple_of(N) {
            return Err(format!(
                "{} bytes is not a whole number of {N}-byte values",
                b.len()
            ));
        }
        Ok(b.chunks_exact(N)
            .map(|c| f(c.try_into().expect("chunk of N")))
            .collect())
    }
    match datatype {
        "BOOL" => fixed::<1>(b, |x| json!(x[0] != 0)),
        "INT8" => fixed::<1>(b, |x| json!(i8::from_le_bytes(x))),
        "UINT8" => fixed::<1>(b, |x| json!(x[0])),
        "INT16" => fixed::<2>(b, |x| json!(i16::from_le_bytes(x))),
        "UINT16" => fixed::<2>(b, |x| json!(u16::from_le_bytes(x))),
        "INT32" => fixed::<4>(b, |x| json!(i32::from_le_bytes(x))),
        "UINT32" => fixed::<4>(b, |x| json!(u32::from_le_bytes(x))),
        "INT64" => fixed::<8>(b, |x| json!(i64::from_le_bytes(x))),
        "UINT64" => fixed::<8>(b, |x| json!(u64::from_le_bytes(x))),
        "FP32" => fixed::<4>(b, |x| json!(f32::from_le_bytes(x) as f64)),
        "FP64" => fixed::<8>(b, |x| json!(f64::from_le_bytes(x))),
        "BYTES" => {
            // Each element: a 4-byte little-endian length, then the bytes.
            let mut out = Vec::new();
            let mut rest = b;
            while !rest.is_empty() {
                if rest.len() < 4 {
                    return Err("a BYTES element's length is cut short".into());
                }
                let n = u32::from_le_bytes(rest[..4].try_into().expect("4 bytes")) as usize;
                rest = &rest[4..];
                if n > rest.len() {
                    return Err(format!("a BYTES element of {n} bytes runs past the data"));
                }
                out.push(json!(String::from_utf8_lossy(&rest[..n])));
                rest = &rest[n..];
            }
            Ok(out)
        }
        other => Err(format!(
            "binary data of datatype `{other}` is not supported"
        )),
    }
}

fn deployment_json(d: &Deployment) -> Value {
    let live = d.live();
    let arm = |a: &Loaded, share: f64| {
        json!({
            "reference": a.reference,
            "model": a.model_name,
            "version": a.version,
            "format": a.predictor.format(),
            "task": a.predictor.task(),
            "percent": share,
            "load_seconds": a.load_seconds,
            "bytes": a.bytes,
        })
    };
    let arms: Vec<Value> = live.percents().map(|(a, pct)| arm(a, pct)).collect();
    let main = &live.arms[0].0;
    json!({
        "name": d.name(),
        "models": arms,
        "shadow": live.shadow.as_ref().map(|s| arm(s, 0.0)),
        "sticky": d.spec.sticky,
        "sample": d.spec.sample,
        "inputs": main.predictor.inputs(),
        "classes": main.predictor.classes(),
    })
}

async fn list_deployments(State(s): State<ServeState>) -> Json<Value> {
    Json(json!({
        "items": s.deployments.values().map(|d| deployment_json(d)).collect::<Vec<_>>(),
    }))
}

async fn show_deployment(State(s): State<ServeState>, Path(name): Path<String>) -> Response {
    match s.deployment(&name) {
        Ok(d) => Json(deployment_json(d)).into_response(),
        Err(e) => e.kiln(""),
    }
}

/// kiln's own protocol: `{"records": [...]}` (or any MLflow format) in;
/// predictions, class probabilities, the model version and a request id out.
async fn predict(
    State(s): State<ServeState>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = Instant::now();
    let id = request_id();
    let result = async {
        let d = s.deployment(&name)?;
        let v: Value = serde_json::from_slice(&body).map_err(malformed)?;
        let explain = kiln_serve::ExplainRequest::parse(v.get("explain"))
            .map_err(|why| Failure::invalid(Some("explain".into()), None, why))?;
        let key = v
            .get("key")
            .map(|k| match k {
                Value::String(s) => s.clone(),
                other => other.to_string(),
            })
            .or_else(|| header_key(&headers));
        let frame = match v.get("records") {
            Some(Value::Array(items)) => Frame::from_records(items)?,
            Some(_) => {
                return Err(Failure::invalid(
                    None,
                    None,
                    "`records` must be a list of records ({\"column\": value, …})",
                ));
            }
            None => mlflow_frame(&v)?,
        };
        let scored = score(&s, d, frame, key, None, explain.as_ref(), &id, started).await?;
        let mut out = json!({
            "request_id": id,
            "deployment": d.name(),
            "model": { "name": scored.loaded.model_name, "version": scored.loaded.version },
            "predictions": prediction_values(&scored.loaded, &scored.predictions),
            "latency_ms": scored.latency_ms,
        });
        let probs = probabilities(&scored.predictions);
        if !probs.is_empty() {
            let classes = scored.loaded.predictor.classes();
            out["probabilities"] = probs
                .iter()
                .map(|row| {
                    classes
                        .iter()
                        .zip(row)
                        .map(|(c, p)| (c.clone(), json!(p)))
                        .collect::<serde_json::Map<_, _>>()
                        .into()
                })
                .collect::<Vec<Value>>()
                .into();
        }
        if !scored.unseen.is_empty() {
            out["unseen_categories"] = json!(scored.unseen);
        }
        if let Some((explanation, ms)) = scored.explanation {
            out["explanations"] = explanation;
            out["explain_ms"] = json!(ms);
        }
        Ok::<_, Failure>(out)
    }
    .await;
    match result {
        Ok(v) => with_request_id((StatusCode::OK, Json(v)).into_response(), &id),
        Err(e) => {
            s.metrics.error(s.known(&name), e.status.as_u16());
            with_request_id(e.kiln(&id), &id)
        }
    }
}

/// Ground truth for earlier predictions, by request id:
/// `{"request_id": ID, "label": L}` (row 0), `{"request_id", "labels": [..]}`
/// (one per row), or `{"feedback": [{"request_id", "row", "label"}, …]}`.
async fn feedback(State(s): State<ServeState>, Path(name): Path<String>, body: Bytes) -> Response {
    let result = async {
        s.deployment(&name)?;
        let v: Value = serde_json::from_slice(&body).map_err(malformed)?;
        let items: Vec<Value> = match v.get("feedback") {
            Some(Value::Array(items)) => items.clone(),
            Some(_) => return Err(Failure::invalid(None, None, "`feedback` must be a list")),
            None => vec![v.clone()],
        };
        let mut labels = Vec::new();
        for (i, item) in items.iter().enumerate() {
            let at = |what: &str| format!("feedback item {i}: {what}");
            let id = item
                .get("request_id")
                .and_then(Value::as_str)
                .ok_or_else(|| {
                    Failure::invalid(
                        Some("request_id".into()),
                        None,
                        at("needs `request_id`, the id a prediction answered with (x-request-id)"),
                    )
                })?;
            match (item.get("label"), item.get("labels")) {
                (Some(l), None) => {
                    let row = item
                        .get("row")
                        .map_or(Some(0), Value::as_i64)
                        .ok_or_else(|| {
                            Failure::invalid(
                                Some("row".into()),
                                None,
                                at("`row` must be a whole number"),
                            )
                        })?;
                    check_label(l)
                        .map_err(|m| Failure::invalid(Some("label".into()), None, at(&m)))?;
                    labels.push((id.to_string(), row, l.clone()));
                }
                (None, Some(Value::Array(ls))) => {
                    for (row, l) in ls.iter().enumerate() {
                        check_label(l).map_err(|m| {
                            Failure::invalid(Some("labels".into()), Some(row), at(&m))
                        })?;
                        labels.push((id.to_string(), row as i64, l.clone()));
                    }
                }
                _ => {
                    return Err(Failure::invalid(
                        Some("label".into()),
                        None,
                        at("give `label` (for row 0 or `row`) or `labels` (one per row), not both"),
                    ));
                }
            }
        }
        if labels.is_empty() {
            return Err(Failure::invalid(None, None, "no labels given"));
        }
        let n = s
            .project
            .meta
            .add_feedback(&name, &labels)
            .await
            .map_err(|e| Failure::internal(e.to_string()))?;
        Ok::<_, Failure>(json!({ "accepted": n }))
    }
    .await;
    match result {
        Ok(v) => Json(v).into_response(),
        Err(e) => e.kiln(""),
    }
}

fn check_label(l: &Value) -> Result<(), String> {
    match l {
        Value::String(_) | Value::Number(_) | Value::Bool(_) => Ok(()),
        _ => Err(format!(
            "a label is a number, a class name or a boolean, not {l}"
        )),
    }
}

/// Champion against shadow: rows compared, agreement, latency percentiles.
async fn shadow_report(State(s): State<ServeState>, Path(name): Path<String>) -> Response {
    let d = match s.deployment(&name) {
        Ok(d) => d,
        Err(e) => return e.kiln(""),
    };
    let live = d.live();
    let Some(shadow) = &live.shadow else {
        return Failure::not_found(format!("Deployment `{name}` has no shadow")).kiln("");
    };
    let st = d.shadow.lock().expect("shadow stats");
    let pct = |r: &deploy::Ring| json!({ "p50": r.quantile(0.5), "p90": r.quantile(0.9), "p99": r.quantile(0.99) });
    Json(json!({
        "deployment": name,
        "answer": { "model": live.arms[0].0.model_name, "version": live.arms[0].0.version },
        "shadow": { "model": shadow.model_name, "version": shadow.version },
        "compared_rows": st.compared_rows,
        "agreeing_rows": st.agreeing_rows,
        "agreement": if st.compared_rows > 0 { Some(st.agreeing_rows as f64 / st.compared_rows as f64) } else { None },
        "mean_abs_difference": if st.compared_rows > 0 { Some(st.abs_diff_sum / st.compared_rows as f64) } else { None },
        "shadow_errors": st.errors,
        "latency_ms": { "answer": pct(&st.primary_ms), "shadow": pct(&st.shadow_ms) },
    }))
    .into_response()
}
