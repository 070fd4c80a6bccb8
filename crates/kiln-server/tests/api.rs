//! kiln server over real HTTP, as MLflow's client and kiln's REST clients see
//! it: the authorization layer on every route, the OpenAPI document, MLflow's
//! wire format (errors, values, search, registry, artifact proxy), `/api/v1`,
//! PostgreSQL as the metadata store, and many writers at once.
//!
//! Each test starts its own server on a loopback port over a fresh project.
//! The PostgreSQL tests need the server `scripts/test` starts.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};

use axum::http::request::Parts;
use kiln_project::{Locations, Project};
use kiln_server::AppState;
use kiln_server::auth::Permission::{self, Read, Write};
use kiln_server::auth::{Authorizer, Principal};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The project every test server serves.
const PROJECT: &str = "t";
const MLFLOW: &str = "/api/2.0/mlflow";
const ARTIFACTS: &str = "/api/2.0/mlflow-artifacts/artifacts";
/// A well-formed run id that no run has.
const NO_RUN: &str = "0123456789abcdef0123456789abcdef";

// ---- Harness ----------------------------------------------------------------

struct Server {
    base: String,
    addr: String,
    http: reqwest::Client,
    state: AppState,
    _dir: tempfile::TempDir,
}

/// An answer, read whole.
struct Reply {
    status: u16,
    content_type: String,
    bytes: Vec<u8>,
}

impl Reply {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    #[track_caller]
    fn json(&self) -> Value {
        serde_json::from_slice(&self.bytes).unwrap_or_else(|e| {
            panic!(
                "HTTP {} answered a body that is not JSON ({e}): {}",
                self.status,
                self.text()
            )
        })
    }

    /// The JSON body of a 200.
    #[track_caller]
    fn ok(&self) -> Value {
        assert_eq!(self.status, 200, "expected 200: {}", self.text());
        self.json()
    }
}

impl Server {
    async fn start() -> Self {
        Self::open(None, None).await
    }

    async fn with_authorizer(authorizer: Arc<dyn Authorizer>) -> Self {
        Self::open(None, Some(authorizer)).await
    }

    async fn on_postgres(url: String) -> Self {
        Self::open(Some(url), None).await
    }

    async fn open(store: Option<String>, authorizer: Option<Arc<dyn Authorizer>>) -> Self {
        let dir = tempfile::tempdir().expect("a temp dir");
        let locations = match store {
            None => Locations::default(),
            Some(url) => Locations {
                store: Some(url),
                objects: Some(format!("file://{}", dir.path().join("objects").display())),
                project: None,
            },
        };
        let root = dir.path().join("project");
        Project::init(&root, Some(PROJECT), &locations)
            .await
            .expect("kiln init");
        let project = Project::open(&root, &locations)
            .await
            .expect("open the project");
        let state = match authorizer {
            Some(a) => AppState::with_authorizer(project, a),
            None => AppState::new(project),
        };
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind a loopback port");
        let addr = listener.local_addr().expect("a local address").to_string();
        let app = kiln_server::router(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await.expect("serve") });
        Self {
            base: format!("http://{addr}"),
            addr,
            http: reqwest::Client::new(),
            state,
            _dir: dir,
        }
    }

    async fn send(&self, method: Method, path: &str, body: Option<&Value>) -> Reply {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(b) = body {
            request = request.json(b);
        }
        reply(request).await
    }

    async fn send_bytes(&self, method: Method, path: &str, bytes: Vec<u8>) -> Reply {
        reply(
            self.http
                .request(method, format!("{}{path}", self.base))
                .body(bytes),
        )
        .await
    }

    async fn get(&self, path: &str, query: &[(&str, &str)]) -> Reply {
        self.send(Method::GET, &with_query(path, query), None).await
    }

    /// An MLflow GET endpoint: every field in the query string.
    async fn mget(&self, endpoint: &str, query: &[(&str, &str)]) -> Reply {
        self.get(&format!("{MLFLOW}/{endpoint}"), query).await
    }

    /// An MLflow POST endpoint: a JSON body.
    async fn mpost(&self, endpoint: &str, body: Value) -> Reply {
        self.msend(Method::POST, endpoint, body).await
    }

    async fn msend(&self, method: Method, endpoint: &str, body: Value) -> Reply {
        self.send(method, &format!("{MLFLOW}/{endpoint}"), Some(&body))
            .await
    }

    async fn create_experiment(&self, name: &str) -> String {
        let e = self
            .mpost("experiments/create", json!({ "name": name }))
            .await
            .ok();
        e["experiment_id"].as_str().expect("an id").to_string()
    }

    async fn create_run(&self, experiment_id: &str, name: &str, start_time: i64) -> String {
        let r = self
            .mpost(
                "runs/create",
                json!({ "experiment_id": experiment_id, "run_name": name, "start_time": start_time }),
            )
            .await
            .ok();
        r["run"]["info"]["run_id"]
            .as_str()
            .expect("a run id")
            .to_string()
    }

    async fn log_metric(
        &self,
        run: &str,
        key: &str,
        value: Value,
        timestamp: i64,
        step: i64,
    ) -> Reply {
        self.mpost(
            "runs/log-metric",
            json!({ "run_id": run, "run_uuid": run, "key": key, "value": value, "timestamp": timestamp, "step": step }),
        )
        .await
    }

    async fn log_batch(&self, run: &str, body: Value) -> Reply {
        let mut body = body;
        body["run_id"] = run.into();
        self.mpost("runs/log-batch", body).await
    }

    /// Every point of a metric, following page tokens as the client does.
    async fn history(&self, run: &str, key: &str) -> Vec<Value> {
        let mut out = Vec::new();
        let mut token: Option<String> = None;
        loop {
            let mut q = vec![
                ("run_uuid", run),
                ("run_id", run),
                ("metric_key", key),
                ("max_results", "25000"),
            ];
            if let Some(t) = &token {
                q.push(("page_token", t.as_str()));
            }
            let page = self.mget("metrics/get-history", &q).await.ok();
            out.extend(page["metrics"].as_array().cloned().unwrap_or_default());
            match page["next_page_token"].as_str() {
                Some(t) => token = Some(t.to_string()),
                None => return out,
            }
        }
    }

    async fn search_runs(&self, body: Value) -> Value {
        self.mpost("runs/search", body).await.ok()
    }

    /// `POST registered-models/alias`.
    async fn set_alias(&self, model: &str, alias: &str, version: &str) -> Reply {
        self.mpost(
            "registered-models/alias",
            json!({ "name": model, "alias": alias, "version": version }),
        )
        .await
    }

    async fn create_version(&self, model: &str, run: Option<&str>) -> Value {
        let mut body =
            json!({ "name": model, "source": format!("mlflow-artifacts:/{model}/files") });
        if let Some(r) = run {
            body["run_id"] = r.into();
        }
        self.mpost("model-versions/create", body).await.ok()["model_version"].clone()
    }
}

async fn reply(request: reqwest::RequestBuilder) -> Reply {
    let r = request.send().await.expect("the server answers");
    let status = r.status().as_u16();
    let content_type = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string();
    let bytes = r.bytes().await.expect("a body").to_vec();
    Reply {
        status,
        content_type,
        bytes,
    }
}

fn with_query(path: &str, query: &[(&str, &str)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in query {
        q.append_pair(k, v);
    }
    format!("{path}?{}", q.finish())
}

/// Sends bytes as they are (reqwest would resolve `..` segments) and returns
/// the status and the body.
async fn raw_http(addr: &str, request: &str) -> (u16, String) {
    let mut stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request.as_bytes()).await.expect("send");
    let mut answer = Vec::new();
    stream.read_to_end(&mut answer).await.expect("read");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {answer}"));
    let body = answer
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

/// What is wrong with an MLflow error answer, if anything.
fn mlflow_error(r: &Reply, status: u16, code: &str, needle: &str) -> Result<(), String> {
    if r.status != status {
        return Err(format!("HTTP {} (want {status}): {}", r.status, r.text()));
    }
    let body: Value = serde_json::from_slice(&r.bytes)
        .map_err(|_| format!("a body that is not JSON: {}", r.text()))?;
    if body["error_code"] != code {
        return Err(format!("error_code is not {code}: {body}"));
    }
    let message = body["message"].as_str().unwrap_or_default();
    if !message.contains(needle) {
        return Err(format!("the message does not mention {needle:?}: {body}"));
    }
    Ok(())
}

/// What is wrong with a kiln (`/api/v1`) error answer, if anything.
fn kiln_error(r: &Reply, status: u16, code: &str, field: Option<&str>) -> Result<(), String> {
    if r.status != status {
        return Err(format!("HTTP {} (want {status}): {}", r.status, r.text()));
    }
    let body: Value = serde_json::from_slice(&r.bytes)
        .map_err(|_| format!("a body that is not JSON: {}", r.text()))?;
    if body["error"]["code"] != code || !body["error"]["message"].is_string() {
        return Err(format!("not a `{code}` error: {body}"));
    }
    if let Some(f) = field
        && body["error"]["field"] != f
    {
        return Err(format!("the error does not name the field `{f}`: {body}"));
    }
    Ok(())
}

fn strings(v: &Value, pointer: &str) -> Vec<String> {
    v.as_array()
        .map(|items| {
            items
                .iter()
                .map(|i| {
                    i.pointer(pointer)
                        .and_then(Value::as_str)
                        .unwrap_or_else(|| panic!("no string at {pointer} in {i}"))
                        .to_string()
                })
                .collect()
        })
        .unwrap_or_default()
}

fn run_ids(search: &Value) -> Vec<String> {
    strings(&search["runs"], "/info/run_id")
}

// ---- Routes and authorization -------------------------------------------------

/// Every MLflow route kiln serves (the 44 `tests/mlflow/ENDPOINTS.md` lists
/// and the rest of the tracking and registry API), with the permission it
/// needs. Searches are POSTs that only read.
const MLFLOW_ROUTES: &[(&str, &str, Permission)] = &[
    ("POST", "/api/2.0/mlflow/experiments/create", Write),
    ("GET", "/api/2.0/mlflow/experiments/get", Read),
    ("GET", "/api/2.0/mlflow/experiments/get-by-name", Read),
    ("GET", "/api/2.0/mlflow/experiments/search", Read),
    ("POST", "/api/2.0/mlflow/experiments/search", Read),
    ("POST", "/api/2.0/mlflow/experiments/delete", Write),
    ("POST", "/api/2.0/mlflow/experiments/restore", Write),
    ("POST", "/api/2.0/mlflow/experiments/update", Write),
    (
        "POST",
        "/api/2.0/mlflow/experiments/set-experiment-tag",
        Write,
    ),
    ("POST", "/api/2.0/mlflow/runs/create", Write),
    ("POST", "/api/2.0/mlflow/runs/update", Write),
    ("POST", "/api/2.0/mlflow/runs/delete", Write),
    ("POST", "/api/2.0/mlflow/runs/restore", Write),
    ("GET", "/api/2.0/mlflow/runs/get", Read),
    ("POST", "/api/2.0/mlflow/runs/search", Read),
    ("POST", "/api/2.0/mlflow/runs/log-metric", Write),
    ("POST", "/api/2.0/mlflow/runs/log-parameter", Write),
    ("POST", "/api/2.0/mlflow/runs/set-tag", Write),
    ("POST", "/api/2.0/mlflow/runs/delete-tag", Write),
    ("POST", "/api/2.0/mlflow/runs/log-batch", Write),
    ("POST", "/api/2.0/mlflow/runs/log-inputs", Write),
    ("POST", "/api/2.0/mlflow/runs/outputs", Write),
    ("GET", "/api/2.0/mlflow/metrics/get-history", Read),
    ("GET", "/api/2.0/mlflow/artifacts/list", Read),
    ("POST", "/api/2.0/mlflow/logged-models", Write),
    ("POST", "/api/2.0/mlflow/logged-models/search", Read),
    ("GET", "/api/2.0/mlflow/logged-models/m-0000", Read),
    ("PATCH", "/api/2.0/mlflow/logged-models/m-0000", Write),
    ("DELETE", "/api/2.0/mlflow/logged-models/m-0000", Write),
    ("PATCH", "/api/2.0/mlflow/logged-models/m-0000/tags", Write),
    (
        "DELETE",
        "/api/2.0/mlflow/logged-models/m-0000/tags/k",
        Write,
    ),
    ("POST", "/api/2.0/mlflow/logged-models/m-0000/params", Write),
    (
        "GET",
        "/api/2.0/mlflow/logged-models/m-0000/artifacts/directories",
        Read,
    ),
    ("POST", "/api/2.0/mlflow/registered-models/create", Write),
    ("GET", "/api/2.0/mlflow/registered-models/get", Read),
    ("PATCH", "/api/2.0/mlflow/registered-models/update", Write),
    ("DELETE", "/api/2.0/mlflow/registered-models/delete", Write),
    ("GET", "/api/2.0/mlflow/registered-models/search", Read),
    (
        "GET",
        "/api/2.0/mlflow/registered-models/get-latest-versions",
        Read,
    ),
    (
        "POST",
        "/api/2.0/mlflow/registered-models/get-latest-versions",
        Read,
    ),
    ("POST", "/api/2.0/mlflow/registered-models/set-tag", Write),
    (
        "DELETE",
        "/api/2.0/mlflow/registered-models/delete-tag",
        Write,
    ),
    ("GET", "/api/2.0/mlflow/registered-models/alias", Read),
    ("POST", "/api/2.0/mlflow/registered-models/alias", Write),
    ("DELETE", "/api/2.0/mlflow/registered-models/alias", Write),
    ("POST", "/api/2.0/mlflow/model-versions/create", Write),
    ("GET", "/api/2.0/mlflow/model-versions/get", Read),
    ("PATCH", "/api/2.0/mlflow/model-versions/update", Write),
    ("DELETE", "/api/2.0/mlflow/model-versions/delete", Write),
    ("GET", "/api/2.0/mlflow/model-versions/search", Read),
    (
        "POST",
        "/api/2.0/mlflow/model-versions/transition-stage",
        Write,
    ),
    (
        "GET",
        "/api/2.0/mlflow/model-versions/get-download-uri",
        Read,
    ),
    ("POST", "/api/2.0/mlflow/model-versions/set-tag", Write),
    ("DELETE", "/api/2.0/mlflow/model-versions/delete-tag", Write),
    ("GET", "/api/2.0/mlflow-artifacts/artifacts", Read),
    (
        "GET",
        "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/x.txt",
        Read,
    ),
    (
        "PUT",
        "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/x.txt",
        Write,
    ),
    (
        "DELETE",
        "/api/2.0/mlflow-artifacts/artifacts/1/r/artifacts/x.txt",
        Write,
    ),
    ("GET", "/api/3.0/mlflow/server-info", Read),
];

/// kiln's OpenAPI document, read from the source tree.
fn openapi() -> Value {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/openapi.json");
    let text = std::fs::read_to_string(path).expect("read openapi.json");
    serde_json::from_str(&text).expect("openapi.json is JSON")
}

/// A documented path with its parameters filled with placeholders.
fn fill(template: &str) -> String {
    let mut path = template.to_string();
    for (param, value) in [
        ("{id}", NO_RUN),
        ("{key}", "loss"),
        ("{name}", "no-such-model"),
        ("{version}", "1"),
        ("{alias}", "champion"),
    ] {
        path = path.replace(param, value);
    }
    assert!(
        !path.contains('{'),
        "{template}: a path parameter this test has no placeholder for"
    );
    path
}

/// Every operation of the OpenAPI document: method, filled path, the
/// permission it documents (`x-kiln-permission`).
fn documented_operations() -> Vec<(Method, String, String)> {
    let doc = openapi();
    let mut out = Vec::new();
    for (template, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            let needs = op["x-kiln-permission"]
                .as_str()
                .unwrap_or_else(|| panic!("{method} {template}: no x-kiln-permission"))
                .to_string();
            out.push((
                method.to_ascii_uppercase().parse().expect("a method"),
                fill(template),
                needs,
            ));
        }
    }
    out
}

/// Every route: MLflow's, and `/api/v1` (with `/health` and the document)
/// as the OpenAPI document lists them.
fn every_route() -> Vec<(Method, String, Permission)> {
    let mut out: Vec<(Method, String, Permission)> = MLFLOW_ROUTES
        .iter()
        .map(|(m, p, n)| (m.parse().expect("a method"), p.to_string(), *n))
        .collect();
    for (method, path, needs) in documented_operations() {
        let needs = match needs.as_str() {
            "read" => Read,
            "write" => Write,
            "admin" => Permission::Admin,
            other => panic!("{method} {path}: unknown permission {other:?}"),
        };
        out.push((method, path, needs));
    }
    assert!(
        out.len() > MLFLOW_ROUTES.len() + 10,
        "the document lists /api/v1"
    );
    out
}

/// The permission a route must need: reading (GET, and POSTs that search)
/// or changing something.
fn needed_by_rule(method: &Method, path: &str) -> Permission {
    let reads = *method == Method::GET
        || (*method == Method::POST
            && (path.ends_with("/search") || path.ends_with("/get-latest-versions")));
    if reads { Read } else { Write }
}

async fn call_route(s: &Server, method: &Method, path: &str) -> Reply {
    let body = (*method != Method::GET).then(|| json!({}));
    s.send(method.clone(), path, body.as_ref()).await
}

struct DenyAll;

impl Authorizer for DenyAll {
    fn authorize(&self, _: &Parts, _: &str, _: Permission) -> Result<Principal, String> {
        Err("no one may, in this test".into())
    }
}

/// Allows everything and records what each request asked for.
#[derive(Default)]
struct Recorder {
    seen: Mutex<Vec<(String, String, String, Permission)>>,
}

impl Authorizer for Recorder {
    fn authorize(
        &self,
        request: &Parts,
        project: &str,
        needs: Permission,
    ) -> Result<Principal, String> {
        self.seen.lock().expect("the recorder").push((
            request.method.to_string(),
            request.uri.path().to_string(),
            project.to_string(),
            needs,
        ));
        Ok(Principal {
            name: "recorder".into(),
        })
    }
}

/// What is wrong with a refusal, if anything: 403, the caller's error shape,
/// naming the permission, the project and the authorizer's reason.
fn refusal(r: &Reply, path: &str, needs: Permission) -> Result<(), String> {
    if r.status != 403 {
        return Err(format!("HTTP {}: {}", r.status, r.text()));
    }
    let body: Value = serde_json::from_slice(&r.bytes)
        .map_err(|_| format!("a body that is not JSON: {}", r.text()))?;
    let message = if path.starts_with("/api/2.0/") {
        if body["error_code"] != "PERMISSION_DENIED" {
            return Err(format!("not MLflow's PERMISSION_DENIED: {body}"));
        }
        body["message"].as_str()
    } else if path.starts_with("/api/3.0/") {
        // Its shape is pinned by `mlflow_3_0_refusals_are_in_mlflow_shape`.
        body["message"]
            .as_str()
            .or_else(|| body["error"]["message"].as_str())
    } else {
        if body["error"]["code"] != "permission_denied" {
            return Err(format!("not kiln's permission_denied: {body}"));
        }
        body["error"]["message"].as_str()
    }
    .unwrap_or_default();
    for needle in [
        format!("`{}`", needs.as_str()),
        format!("`{PROJECT}`"),
        "no one may".to_string(),
    ] {
        if !message.contains(&needle) {
            return Err(format!("the message does not name {needle}: {message}"));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_all_authorizer_refuses_every_route_naming_the_permission_and_project() {
    let s = Server::with_authorizer(Arc::new(DenyAll)).await;
    let audit_before = s.state.meta().audit_log(10_000).await.unwrap().len();
    let mut failures = Vec::new();
    for (method, path, needs) in every_route() {
        let r = call_route(&s, &method, &path).await;
        if let Err(e) = refusal(&r, &path, needs) {
            failures.push(format!("{method} {path}: {e}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{} routes were not refused properly:\n{}",
        failures.len(),
        failures.join("\n")
    );
    // No handler ran behind a refusal.
    let meta = s.state.meta();
    assert_eq!(meta.audit_log(10_000).await.unwrap().len(), audit_before);
    let experiments = meta
        .search_experiments(kiln_store::ViewType::All, None, 100, None)
        .await
        .unwrap();
    assert_eq!(experiments.items.len(), 1, "only the default experiment");
    assert!(
        meta.artifact("1/r/artifacts/x.txt")
            .await
            .unwrap()
            .is_none()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_3_0_refusals_are_in_mlflow_shape() {
    // The fallback answers unknown /api/3.0 endpoints in MLflow's shape; a
    // refusal there must be in the same shape for MLflow's client to read it.
    let s = Server::with_authorizer(Arc::new(DenyAll)).await;
    let r = s.get("/api/3.0/mlflow/server-info", &[]).await;
    mlflow_error(&r, 403, "PERMISSION_DENIED", "`read`").unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_route_asks_the_authorizer_once_for_read_or_write() {
    let recorder = Arc::new(Recorder::default());
    let s = Server::with_authorizer(recorder.clone()).await;
    let mut failures = Vec::new();
    for (method, path, needs) in every_route() {
        if needs != needed_by_rule(&method, &path) {
            failures.push(format!(
                "{method} {path}: listed as needing `{}`, but reads need read and changes write",
                needs.as_str()
            ));
        }
        recorder.seen.lock().unwrap().clear();
        let r = call_route(&s, &method, &path).await;
        let seen = recorder.seen.lock().unwrap().clone();
        let want = vec![(method.to_string(), path.clone(), PROJECT.to_string(), needs)];
        if seen != want {
            failures.push(format!("{method} {path}: asked {seen:?}, want {want:?}"));
        }
        // Placeholders and empty bodies are client mistakes, never a 5xx.
        if r.status >= 500 {
            failures.push(format!("{method} {path}: HTTP {}: {}", r.status, r.text()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} routes:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

// ---- The OpenAPI document ------------------------------------------------------

fn refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(o) => {
            for (k, x) in o {
                match (k.as_str(), x) {
                    ("$ref", Value::String(r)) => out.push(r.clone()),
                    _ => refs(x, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|x| refs(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_valid_and_every_operation_in_it_is_served() {
    let doc = openapi();
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with("3.")),
        "{}",
        doc["openapi"]
    );
    assert!(doc["info"]["title"].is_string() && doc["info"]["version"].is_string());
    let mut all = Vec::new();
    refs(&doc, &mut all);
    for r in &all {
        let pointer = r.strip_prefix('#').expect("a local $ref");
        assert!(doc.pointer(pointer).is_some(), "{r} resolves to nothing");
    }
    for (template, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            assert!(
                ["get", "put", "post", "delete", "patch"].contains(&method.as_str()),
                "{template}: {method}"
            );
            assert!(
                op["responses"]
                    .as_object()
                    .is_some_and(|r| r.keys().any(|k| k.starts_with('2'))),
                "{method} {template}: no success response"
            );
            // Every `{param}` is declared as a required path parameter.
            for param in template
                .split('/')
                .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            {
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["name"] == param && p["in"] == "path" && p["required"] == true)
                });
                assert!(declared, "{method} {template}: `{param}` is not declared");
            }
        }
    }

    let s = Server::start().await;
    let served = s.get("/api/openapi.json", &[]).await;
    assert!(
        served.content_type.starts_with("application/json"),
        "{}",
        served.content_type
    );
    assert_eq!(served.ok(), doc, "the server serves the document in src/");

    let mut failures = Vec::new();
    for (method, path, _) in documented_operations() {
        let body = match method {
            Method::PUT => Some(json!({ "version": 1 })),
            Method::GET => None,
            _ => Some(json!({})),
        };
        let r = s.send(method.clone(), &path, body.as_ref()).await;
        let body: Value = serde_json::from_slice(&r.bytes).unwrap_or(Value::Null);
        let fine = match r.status {
            200 => true,
            // A placeholder id that names nothing, or a missing parameter.
            404 => {
                body["error"]["code"] == "not_found"
                    && !body["error"]["message"]
                        .as_str()
                        .unwrap_or("")
                        .starts_with("No endpoint")
            }
            400 => body["error"]["code"] == "invalid_argument",
            _ => false,
        };
        if !fine {
            failures.push(format!("{method} {path}: HTTP {}: {}", r.status, r.text()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_method_answers_405_in_the_callers_error_shape() {
    let s = Server::start().await;
    for (method, path) in [
        (Method::GET, "/api/2.0/mlflow/runs/create"),
        (Method::POST, "/api/v1/runs"),
        (Method::PATCH, "/api/v1/runs/abcdef"),
    ] {
        let r = s.send(method.clone(), path, None).await;
        assert_eq!(r.status, 405, "{method} {path}");
        let body: Value = serde_json::from_slice(&r.bytes).unwrap_or(Value::Null);
        let shaped = if path.starts_with("/api/2.0/") {
            body["error_code"].is_string() && body["message"].is_string()
        } else {
            body["error"]["code"].is_string() && body["error"]["message"].is_string()
        };
        assert!(
            shaped,
            "{method} {path}: a 405 without an error body: {:?}",
            r.text()
        );
    }
}

// ---- MLflow: errors -------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mlflow_errors_carry_mlflow_codes_statuses_and_fields() {
    let s = Server::start().await;
    let e = s.create_experiment("errors").await;
    let run = s.create_run(&e, "r", 1_000).await;
    let gone = s.create_run(&e, "gone", 2_000).await;
    s.mpost("runs/delete", json!({ "run_id": gone })).await.ok();
    s.mpost(
        "runs/log-parameter",
        json!({ "run_id": run, "run_uuid": run, "key": "p", "value": "1" }),
    )
    .await
    .ok();

    let mut failures: Vec<String> = Vec::new();
    let mut check = |case: &str, r: Reply, status: u16, code: &str, needle: &str| {
        if let Err(e) = mlflow_error(&r, status, code, needle) {
            failures.push(format!("{case}: {e}"));
        }
        if r.status != 200 && !r.content_type.starts_with("application/json") {
            failures.push(format!("{case}: content-type {}", r.content_type));
        }
    };
    let missing = "RESOURCE_DOES_NOT_EXIST";
    let invalid = "INVALID_PARAMETER_VALUE";

    check(
        "unknown run",
        s.mget("runs/get", &[("run_uuid", NO_RUN), ("run_id", NO_RUN)])
            .await,
        404,
        missing,
        NO_RUN,
    );
    check(
        "metric to an unknown run",
        s.log_metric(NO_RUN, "m", json!(1.0), 1, 0).await,
        404,
        missing,
        "",
    );
    check(
        "history of an unknown run",
        s.mget(
            "metrics/get-history",
            &[("run_id", NO_RUN), ("metric_key", "m")],
        )
        .await,
        404,
        missing,
        "",
    );
    check(
        "unknown experiment",
        s.mget("experiments/get", &[("experiment_id", "999")]).await,
        404,
        missing,
        "",
    );
    check(
        "run in an unknown experiment",
        s.mpost("runs/create", json!({ "experiment_id": "999" }))
            .await,
        404,
        missing,
        "",
    );
    check(
        "unknown experiment name",
        s.mget("experiments/get-by-name", &[("experiment_name", "nope")])
            .await,
        404,
        missing,
        "nope",
    );
    check(
        "unknown registered model",
        s.mget("registered-models/get", &[("name", "nope")]).await,
        404,
        missing,
        "nope",
    );
    check(
        "experiment without a name",
        s.mpost("experiments/create", json!({})).await,
        400,
        invalid,
        "'name'",
    );
    check(
        "metric without a key",
        s.mpost(
            "runs/log-metric",
            json!({ "run_id": run, "value": 1.0, "timestamp": 1, "step": 0 }),
        )
        .await,
        400,
        invalid,
        "key",
    );
    check(
        "metric without a value",
        s.mpost(
            "runs/log-metric",
            json!({ "run_id": run, "key": "m", "timestamp": 1, "step": 0 }),
        )
        .await,
        400,
        invalid,
        "value",
    );
    check(
        "metric value abc",
        s.log_metric(&run, "m", json!("abc"), 1, 0).await,
        400,
        invalid,
        "abc",
    );
    check(
        "metric timestamp abc",
        s.mpost(
            "runs/log-metric",
            json!({ "run_id": run, "key": "m", "value": 1.0, "timestamp": "abc", "step": 0 }),
        )
        .await,
        400,
        invalid,
        "abc",
    );
    check(
        "unknown endpoint",
        s.mpost("runs/frobnicate", json!({})).await,
        404,
        "ENDPOINT_NOT_FOUND",
        "/api/2.0/mlflow/runs/frobnicate",
    );
    check(
        "unknown GET endpoint",
        s.mget("experiments/frobnicate", &[]).await,
        404,
        "ENDPOINT_NOT_FOUND",
        "frobnicate",
    );
    check(
        "param changed",
        s.mpost(
            "runs/log-parameter",
            json!({ "run_id": run, "run_uuid": run, "key": "p", "value": "2" }),
        )
        .await,
        400,
        invalid,
        "Changing param values is not allowed",
    );
    check(
        "param changed by log-batch",
        s.log_batch(&run, json!({ "params": [{ "key": "p", "value": "3" }] }))
            .await,
        400,
        invalid,
        "Changing param values is not allowed",
    );
    let metrics: Vec<Value> = (0..1001)
        .map(|i| json!({ "key": "big", "value": i, "timestamp": 1, "step": i }))
        .collect();
    check(
        "1001 metrics in a batch",
        s.log_batch(&run, json!({ "metrics": metrics })).await,
        400,
        invalid,
        "1000",
    );
    let params: Vec<Value> = (0..101)
        .map(|i| json!({ "key": format!("k{i}"), "value": "v" }))
        .collect();
    check(
        "101 params in a batch",
        s.log_batch(&run, json!({ "params": params })).await,
        400,
        invalid,
        "100",
    );
    check(
        "metric key with ..",
        s.log_metric(&run, "../escape", json!(1.0), 1, 0).await,
        400,
        invalid,
        "..",
    );
    check(
        "param key with ..",
        s.mpost(
            "runs/log-parameter",
            json!({ "run_id": run, "key": "a/../b", "value": "1" }),
        )
        .await,
        400,
        invalid,
        "..",
    );
    check(
        "tag key ..",
        s.mpost(
            "runs/set-tag",
            json!({ "run_id": run, "key": "..", "value": "1" }),
        )
        .await,
        400,
        invalid,
        "..",
    );
    check(
        "batch metric key with ..",
        s.log_batch(
            &run,
            json!({ "metrics": [{ "key": "x/../../y", "value": 1, "timestamp": 1, "step": 0 }] }),
        )
        .await,
        400,
        invalid,
        "..",
    );
    check(
        "malformed JSON",
        reply(
            s.http
                .post(format!("{}{MLFLOW}/runs/log-metric", s.base))
                .header("content-type", "application/json")
                .body("{\"run_id\": "),
        )
        .await,
        400,
        invalid,
        "JSON",
    );
    check(
        "a JSON array for a body",
        reply(
            s.http
                .post(format!("{}{MLFLOW}/experiments/create", s.base))
                .header("content-type", "application/json")
                .body("[1]"),
        )
        .await,
        400,
        invalid,
        "",
    );
    check(
        "duplicate experiment",
        s.mpost("experiments/create", json!({ "name": "errors" }))
            .await,
        400,
        "RESOURCE_ALREADY_EXISTS",
        "errors",
    );
    check(
        "metric to a deleted run",
        s.log_metric(&gone, "m", json!(1.0), 1, 0).await,
        400,
        invalid,
        "active",
    );
    check(
        "a page token the server never issued",
        s.mpost(
            "runs/search",
            json!({ "experiment_ids": [e], "page_token": "garbage" }),
        )
        .await,
        400,
        invalid,
        "",
    );
    check(
        "max_results over the ceiling",
        s.mpost(
            "runs/search",
            json!({ "experiment_ids": [e], "max_results": 50_001 }),
        )
        .await,
        400,
        invalid,
        "max_results",
    );
    check(
        "a version that is not a number",
        s.mget(
            "model-versions/get",
            &[("name", "nope"), ("version", "abc")],
        )
        .await,
        400,
        invalid,
        "abc",
    );
    check(
        "a run status MLflow does not have",
        s.mpost(
            "runs/update",
            json!({ "run_id": run, "status": "WHATEVER" }),
        )
        .await,
        400,
        invalid,
        "WHATEVER",
    );
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    // The same value again is allowed; nothing of a refused batch was kept.
    s.mpost(
        "runs/log-parameter",
        json!({ "run_id": run, "run_uuid": run, "key": "p", "value": "1" }),
    )
    .await
    .ok();
    assert!(s.history(&run, "big").await.is_empty());
    let got = s.mget("runs/get", &[("run_id", run.as_str())]).await.ok();
    assert_eq!(
        got["run"]["data"]["params"],
        json!([{ "key": "p", "value": "1" }])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_keeps_none_of_its_values() {
    let s = Server::start().await;
    let run = s.create_run("0", "r", 1).await;
    s.log_batch(&run, json!({ "params": [{ "key": "p", "value": "1" }] }))
        .await
        .ok();
    // A changed parameter fails the batch after its metrics and tags were read.
    let r = s
        .log_batch(
            &run,
            json!({
                "metrics": [{ "key": "m", "value": 1.0, "timestamp": 1, "step": 0 }],
                "params": [{ "key": "p", "value": "2" }],
                "tags": [{ "key": "t", "value": "x" }],
            }),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "p").unwrap();
    // A bad metric after good ones fails it too.
    let r = s
        .log_batch(
            &run,
            json!({ "metrics": [
                { "key": "m", "value": 2.0, "timestamp": 1, "step": 1 },
                { "key": "m", "value": "abc", "timestamp": 1, "step": 2 },
            ] }),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "abc").unwrap();
    assert!(s.history(&run, "m").await.is_empty());
    let got = s.mget("runs/get", &[("run_id", run.as_str())]).await.ok();
    assert!(
        !strings(&got["run"]["data"]["tags"], "/key").contains(&"t".to_string()),
        "{got}"
    );
}

// ---- MLflow: values ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn values_mlflow_accepts_are_accepted_and_round_trip() {
    let s = Server::start().await;
    let run = s.create_run("0", "values", 1).await;

    // Doubles as protobuf's JSON writes them, and numbers as strings.
    let sent = [
        json!(1.5),
        json!("NaN"),
        json!("Infinity"),
        json!("-Infinity"),
        json!(0),
        json!(-2.25),
        json!("3.5"),
        json!(1e300),
    ];
    for (step, v) in sent.iter().enumerate() {
        s.log_metric(&run, "m", v.clone(), 100 + step as i64, step as i64)
            .await
            .ok();
    }
    let history = s.history(&run, "m").await;
    let values: Vec<Value> = history.iter().map(|p| p["value"].clone()).collect();
    let want = [
        json!(1.5),
        json!("NaN"),
        json!("Infinity"),
        json!("-Infinity"),
        json!(0.0),
        json!(-2.25),
        json!(3.5),
        json!(1e300),
    ];
    assert_eq!(values.len(), want.len(), "{history:?}");
    for (got, want) in values.iter().zip(&want) {
        match (got.as_f64(), want.as_f64()) {
            (Some(g), Some(w)) => assert_eq!(g, w, "{history:?}"),
            _ => assert_eq!(got, want, "{history:?}"),
        }
    }
    for (i, p) in history.iter().enumerate() {
        assert_eq!(p["key"], "m");
        assert_eq!(p["step"], i as i64);
        assert_eq!(p["timestamp"], 100 + i as i64, "the client's time is kept");
    }
    // log-batch takes the same spellings.
    s.log_batch(
        &run,
        json!({ "metrics": [
            { "key": "b", "value": "NaN", "timestamp": 1, "step": 0 },
            { "key": "b", "value": "-Infinity", "timestamp": 1, "step": 1 },
            { "key": "b", "value": 7, "timestamp": "2", "step": "2" },
        ] }),
    )
    .await
    .ok();
    let b: Vec<Value> = s
        .history(&run, "b")
        .await
        .iter()
        .map(|p| p["value"].clone())
        .collect();
    assert_eq!(b, vec![json!("NaN"), json!("-Infinity"), json!(7.0)]);

    // Parameter values up to 6000 characters, tags up to 8000 (characters,
    // not bytes).
    let ok_param = "p".repeat(6000);
    let ok_tag = "é".repeat(8000);
    s.mpost(
        "runs/log-parameter",
        json!({ "run_id": run, "key": "long", "value": ok_param }),
    )
    .await
    .ok();
    let r = s
        .mpost(
            "runs/log-parameter",
            json!({ "run_id": run, "key": "longer", "value": "p".repeat(6001) }),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "6000").unwrap();
    let r = s
        .log_batch(
            &run,
            json!({ "params": [{ "key": "longer", "value": "p".repeat(6001) }] }),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "6000").unwrap();
    s.mpost(
        "runs/set-tag",
        json!({ "run_id": run, "key": "long", "value": ok_tag }),
    )
    .await
    .ok();
    let r = s
        .mpost(
            "runs/set-tag",
            json!({ "run_id": run, "key": "longer", "value": "é".repeat(8001) }),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "8000").unwrap();
    let got = s.mget("runs/get", &[("run_id", run.as_str())]).await.ok();
    let data = &got["run"]["data"];
    let param = data["params"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["key"] == "long")
        .expect("the long parameter");
    assert_eq!(param["value"], ok_param);
    let tag = data["tags"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["key"] == "long")
        .expect("the long tag");
    assert_eq!(tag["value"], ok_tag);
    assert!(
        !strings(&data["params"], "/key").contains(&"longer".to_string()),
        "{data}"
    );
    // The latest point of `m` is the highest step's.
    let latest = data["metrics"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["key"] == "m")
        .expect("m");
    assert_eq!(latest["step"], 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_metric_points_are_kept_once() {
    let s = Server::start().await;
    let run = s.create_run("0", "dup", 1).await;
    for _ in 0..2 {
        s.log_metric(&run, "loss", json!(0.5), 10, 0).await.ok();
        s.log_metric(&run, "loss", json!("NaN"), 11, 1).await.ok();
        s.log_metric(&run, "loss", json!("Infinity"), 12, 2)
            .await
            .ok();
    }
    // A different value, time or step is another point.
    s.log_metric(&run, "loss", json!(0.25), 10, 0).await.ok();
    s.log_metric(&run, "loss", json!(0.5), 13, 0).await.ok();
    // MLflow's client re-sends the step-0 points with a model id after
    // log_model; that adds nothing either, but links the point to the model.
    let model = s
        .mpost(
            "logged-models",
            json!({ "experiment_id": "0", "name": "model", "source_run_id": run }),
        )
        .await
        .ok();
    let model_id = model["model"]["info"]["model_id"].as_str().unwrap();
    s.log_batch(
        &run,
        json!({ "metrics": [
            { "key": "loss", "value": 0.5, "timestamp": 10, "step": 0, "run_id": run, "model_id": model_id },
            { "key": "loss", "value": 0.5, "timestamp": 10, "step": 0, "run_id": run, "model_id": model_id },
        ] }),
    )
    .await
    .ok();
    let mut points: Vec<(i64, i64, String)> = s
        .history(&run, "loss")
        .await
        .iter()
        .map(|p| {
            (
                p["step"].as_i64().unwrap(),
                p["timestamp"].as_i64().unwrap(),
                p["value"].to_string(),
            )
        })
        .collect();
    // History orders by step and time; points that share both may come in any order.
    points.sort();
    assert_eq!(
        points,
        vec![
            (0, 10, "0.25".to_string()),
            (0, 10, "0.5".to_string()),
            (0, 13, "0.5".to_string()),
            (1, 11, "\"NaN\"".to_string()),
            (2, 12, "\"Infinity\"".to_string()),
        ]
    );
    let model = s
        .get(&format!("{MLFLOW}/logged-models/{model_id}"), &[])
        .await
        .ok();
    let linked = model["model"]["data"]["metrics"].as_array().unwrap();
    assert_eq!(linked.len(), 1, "{model}");
    assert_eq!(linked[0]["value"], 0.5);
    assert_eq!(linked[0]["model_id"], model_id);
    assert_eq!(linked[0]["run_id"], run.as_str());
}

// ---- MLflow: search -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_search_filters_orders_and_pages_like_mlflow() {
    let s = Server::start().await;
    let e = s.create_experiment("search").await;
    let mut runs = Vec::new();
    for i in 0..50i64 {
        let run = s.create_run(&e, &format!("run-{i}"), 1_000_000 + i).await;
        s.log_batch(
            &run,
            json!({
                "metrics": [{ "key": "m", "value": i, "timestamp": 1, "step": 0 }],
                "params": [{ "key": "p", "value": (i % 3).to_string() }],
            }),
        )
        .await
        .ok();
        runs.push(run);
    }
    // The newest run has no metric `m`.
    let bare = s.create_run(&e, "bare", 2_000_000).await;

    let found = s
        .search_runs(json!({
            "experiment_ids": [e],
            "filter": "metrics.m > 40",
            "order_by": ["metrics.m DESC"],
            "max_results": 1000,
            "run_view_type": "ACTIVE_ONLY",
        }))
        .await;
    let want: Vec<String> = (41..50).rev().map(|i| runs[i].clone()).collect();
    assert_eq!(run_ids(&found), want);
    assert!(found.get("next_page_token").is_none(), "{found}");

    // `and` in any case, parameters as strings, default order newest first.
    let found = s
        .search_runs(json!({
            "experiment_ids": [e],
            "filter": "params.p = '1' and metrics.m >= 40",
        }))
        .await;
    let want: Vec<String> = [49, 46, 43, 40].iter().map(|&i| runs[i].clone()).collect();
    assert_eq!(run_ids(&found), want);

    // Runs without the ordering metric come last in both directions.
    for (order, first) in [("metrics.m ASC", 0), ("metrics.m DESC", 49)] {
        let all = s
            .search_runs(json!({ "experiment_ids": [e], "order_by": [order] }))
            .await;
        let ids = run_ids(&all);
        assert_eq!(ids.len(), 51);
        assert_eq!(ids[0], runs[first], "{order}");
        assert_eq!(ids[50], bare, "{order}");
    }

    // Pages of 7 walk all 51 runs once, in the default order.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut body = json!({ "experiment_ids": [e], "max_results": 7 });
        if let Some(t) = &token {
            body["page_token"] = t.clone().into();
        }
        let page = s.search_runs(body).await;
        let ids = run_ids(&page);
        assert!(ids.len() <= 7);
        seen.extend(ids);
        pages += 1;
        match page["next_page_token"].as_str() {
            Some(t) => token = Some(t.to_string()),
            None => break,
        }
        assert!(pages < 20, "paging does not end");
    }
    assert_eq!(pages, 8);
    let mut want = vec![bare.clone()];
    want.extend(runs.iter().rev().cloned());
    assert_eq!(seen, want);

    for bad in [
        "metrics.m >>> 1",
        "metrics.m > 1 OR metrics.m < 0",
        "params.p =",
    ] {
        let r = s
            .mpost(
                "runs/search",
                json!({ "experiment_ids": [e], "filter": bad }),
            )
            .await;
        mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "")
            .unwrap_or_else(|x| panic!("{bad}: {x}"));
    }
}

// ---- MLflow: registry -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registry_aliases_move_audited_and_stages_archive() {
    let s = Server::start().await;
    registry_flow(&s, "reg").await;
}

async fn champion(s: &Server, model: &str) -> Reply {
    s.mget(
        "registered-models/alias",
        &[("name", model), ("alias", "champion")],
    )
    .await
}

/// A model with two versions: an alias set, moved (audited with from and
/// to), read and deleted; stages moved with archiving.
async fn registry_flow(s: &Server, name: &str) {
    s.mpost("registered-models/create", json!({ "name": name }))
        .await
        .ok();
    let r = s
        .mpost("registered-models/create", json!({ "name": name }))
        .await;
    mlflow_error(&r, 400, "RESOURCE_ALREADY_EXISTS", name).unwrap();
    let v1 = s.create_version(name, None).await;
    let v2 = s.create_version(name, None).await;
    assert_eq!(
        (v1["version"].as_str(), v2["version"].as_str()),
        (Some("1"), Some("2"))
    );
    assert_eq!(v1["status"], "READY");
    assert_eq!(v1["current_stage"], "None");

    s.set_alias(name, "champion", "1").await.ok();
    let v = champion(s, name).await.ok();
    assert_eq!(v["model_version"]["version"], "1");
    assert_eq!(v["model_version"]["aliases"], json!(["champion"]));
    s.set_alias(name, "champion", "2").await.ok();
    let v = champion(s, name).await.ok();
    assert_eq!(v["model_version"]["version"], "2");
    let m = s
        .mget("registered-models/get", &[("name", name)])
        .await
        .ok();
    assert_eq!(
        m["registered_model"]["aliases"],
        json!([{ "alias": "champion", "version": "2" }])
    );
    let v1_now = s
        .mget("model-versions/get", &[("name", name), ("version", "1")])
        .await
        .ok();
    assert_eq!(v1_now["model_version"]["aliases"], json!([]));
    // Tags on the model and on a version.
    s.mpost(
        "registered-models/set-tag",
        json!({ "name": name, "key": "task", "value": "classification" }),
    )
    .await
    .ok();
    s.mpost(
        "model-versions/set-tag",
        json!({ "name": name, "version": "1", "key": "validated", "value": "true" }),
    )
    .await
    .ok();
    let m = s
        .mget("registered-models/get", &[("name", name)])
        .await
        .ok();
    assert_eq!(
        m["registered_model"]["tags"],
        json!([{ "key": "task", "value": "classification" }])
    );
    let v = s
        .mget("model-versions/get", &[("name", name), ("version", "1")])
        .await
        .ok();
    assert_eq!(
        v["model_version"]["tags"],
        json!([{ "key": "validated", "value": "true" }])
    );
    let r = s.set_alias(name, "champion", "9").await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST", "").unwrap();

    let audit = s
        .get("/api/v1/audit", &[("action", "model.alias")])
        .await
        .ok();
    let moves: Vec<(Value, Value, Value)> = audit["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["target_id"] == name)
        .map(|e| {
            assert_eq!(e["action"], "model.alias.set");
            assert_eq!(e["detail"]["alias"], "champion");
            (
                e["detail"]["from"].clone(),
                e["detail"]["to"].clone(),
                e["target_kind"].clone(),
            )
        })
        .collect();
    assert_eq!(
        moves,
        vec![
            (json!(1), json!(2), json!("model")),
            (Value::Null, json!(1), json!("model")),
        ],
        "newest first: {audit}"
    );

    s.msend(
        Method::DELETE,
        "registered-models/alias",
        json!({ "name": name, "alias": "champion" }),
    )
    .await
    .ok();
    let r = champion(s, name).await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST", "champion").unwrap();
    let audit = s
        .get("/api/v1/audit", &[("action", "model.alias.delete")])
        .await
        .ok();
    assert_eq!(audit["items"][0]["detail"]["from"], 2, "{audit}");

    // Stages: v1 to Production, then v2 with archiving: v1 is Archived.
    let stage = |version: &str, stage: &str, archive: bool| json!({ "name": name, "version": version, "stage": stage, "archive_existing_versions": archive });
    let t = s
        .mpost(
            "model-versions/transition-stage",
            stage("1", "Production", false),
        )
        .await
        .ok();
    assert_eq!(t["model_version"]["current_stage"], "Production");
    let t = s
        .mpost(
            "model-versions/transition-stage",
            stage("2", "Production", true),
        )
        .await
        .ok();
    assert_eq!(t["model_version"]["current_stage"], "Production");
    let latest = |stages: Value| {
        let name = name.to_string();
        async move {
            let r = s
                .mpost(
                    "registered-models/get-latest-versions",
                    json!({ "name": name, "stages": stages }),
                )
                .await
                .ok();
            r["model_versions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .iter()
                .map(|v| {
                    format!(
                        "{}:{}",
                        v["version"].as_str().unwrap(),
                        v["current_stage"].as_str().unwrap()
                    )
                })
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(latest(json!(["Production"])).await, ["2:Production"]);
    assert_eq!(latest(json!(["Archived"])).await, ["1:Archived"]);
    assert_eq!(latest(json!(["production"])).await, ["2:Production"]);
    assert!(latest(json!(["Staging"])).await.is_empty());
    assert_eq!(latest(json!([])).await, ["1:Archived", "2:Production"]);
    // The client's GET spelling: repeated query parameters.
    let r = s
        .mget(
            "registered-models/get-latest-versions",
            &[
                ("name", name),
                ("stages", "Production"),
                ("stages", "Archived"),
            ],
        )
        .await
        .ok();
    assert_eq!(r["model_versions"].as_array().map(Vec::len), Some(2), "{r}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_filter_finds_alias_moves_behind_newer_entries() {
    let s = Server::start().await;
    s.mpost("registered-models/create", json!({ "name": "old" }))
        .await
        .ok();
    s.create_version("old", None).await;
    s.set_alias("old", "champion", "1").await.ok();
    // More than a default page of newer, unrelated entries.
    for i in 0..101 {
        s.create_run("0", &format!("r{i}"), i).await;
    }
    let audit = s
        .get("/api/v1/audit", &[("action", "model.alias")])
        .await
        .ok();
    assert_eq!(
        strings(&audit["items"], "/action"),
        ["model.alias.set"],
        "the filter applies to the whole log, not to its newest 100 entries"
    );
}

// ---- MLflow: artifact proxy --------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_artifact_proxy_stores_lists_and_serves_files() {
    let s = Server::start().await;
    artifact_flow(&s).await;
}

async fn artifact_flow(s: &Server) {
    let dir = "1/0123abcd/artifacts/plots";
    let csv = b"x,y\n1,2\n".to_vec();
    let bin: Vec<u8> = (0..=255u8).rev().collect();
    for (path, bytes) in [
        (format!("{dir}/a.csv"), csv.clone()),
        (format!("{dir}/sub/b.bin"), bin.clone()),
        (format!("{dir}/sub/deeper/c.txt"), b"c".to_vec()),
        (format!("{dir}/c%20d.txt"), b"spaced".to_vec()),
    ] {
        let r = s
            .send_bytes(Method::PUT, &format!("{ARTIFACTS}/{path}"), bytes)
            .await;
        assert_eq!(r.status, 200, "PUT {path}: {}", r.text());
    }

    let listing = s.get(ARTIFACTS, &[("path", dir)]).await.ok();
    let mut files = listing["files"].as_array().cloned().expect("files");
    files.sort_by_key(|f| f["path"].as_str().unwrap_or("").to_string());
    assert_eq!(
        Value::Array(files),
        json!([
            { "path": "a.csv", "is_dir": false, "file_size": 8 },
            { "path": "c d.txt", "is_dir": false, "file_size": 6 },
            { "path": "sub", "is_dir": true },
        ]),
        "bare names, folders without a size"
    );
    let sub = s
        .get(ARTIFACTS, &[("path", &format!("{dir}/sub/"))])
        .await
        .ok();
    assert_eq!(
        sub,
        json!({ "files": [
            { "path": "b.bin", "is_dir": false, "file_size": 256 },
            { "path": "deeper", "is_dir": true },
        ] })
    );
    // A file or a missing folder lists as nothing.
    for path in [format!("{dir}/a.csv"), format!("{dir}/nothing")] {
        assert_eq!(s.get(ARTIFACTS, &[("path", &path)]).await.ok(), json!({}));
    }

    let got = s.get(&format!("{ARTIFACTS}/{dir}/a.csv"), &[]).await;
    assert_eq!((got.status, &got.bytes), (200, &csv));
    let got = s.get(&format!("{ARTIFACTS}/{dir}/sub/b.bin"), &[]).await;
    assert_eq!((got.status, &got.bytes), (200, &bin));
    assert_eq!(got.content_type, "application/octet-stream");
    let got = s.get(&format!("{ARTIFACTS}/{dir}/c%20d.txt"), &[]).await;
    assert_eq!((got.status, got.text().as_str()), (200, "spaced"));
    let r = s.get(&format!("{ARTIFACTS}/{dir}/missing.csv"), &[]).await;
    mlflow_error(&r, 404, "RESOURCE_DOES_NOT_EXIST", "missing.csv").unwrap();

    // Paths that would leave the artifact root.
    let r = s.get(ARTIFACTS, &[("path", "1/../../etc")]).await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "").unwrap();
    let r = s
        .get(&format!("{ARTIFACTS}/1%2F..%2F..%2Fsecret"), &[])
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "").unwrap();
    let r = s
        .send_bytes(
            Method::PUT,
            &format!("{ARTIFACTS}//etc/passwd"),
            b"x".to_vec(),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "").unwrap();
    for request in [
        format!("GET {ARTIFACTS}/1/../../secret HTTP/1.1\r\nHost: k\r\nConnection: close\r\n\r\n"),
        format!(
            "PUT {ARTIFACTS}/{dir}/../../../../x HTTP/1.1\r\nHost: k\r\nConnection: close\r\nContent-Length: 3\r\n\r\nabc"
        ),
    ] {
        let (status, body) = raw_http(&s.addr, &request).await;
        assert_eq!(status, 400, "{request}: {body}");
        assert!(body.contains("INVALID_PARAMETER_VALUE"), "{body}");
    }

    // Deleting a file forgets it.
    let r = s
        .send(Method::DELETE, &format!("{ARTIFACTS}/{dir}/a.csv"), None)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let r = s.get(&format!("{ARTIFACTS}/{dir}/a.csv"), &[]).await;
    assert_eq!(r.status, 404);

    let failures = folder_mismatches(s).await;
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Lists what is wrong with folders whose names differ only in case or
/// accents: each is its own folder, byte for byte.
async fn folder_mismatches(s: &Server) -> Vec<String> {
    let root = "1/0123abcd/artifacts";
    let mut failures = Vec::new();
    for path in ["case/plots/a.txt", "case/Plots/b.txt", "accent/e/é.txt"] {
        let r = s
            .send_bytes(
                Method::PUT,
                &format!("{ARTIFACTS}/{root}/{path}"),
                path.into(),
            )
            .await;
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Not `Server::get`: a handler that panics drops the connection.
    let list = |dir: String| async move {
        let url = format!("{}{}", s.base, with_query(ARTIFACTS, &[("path", &dir)]));
        match s.http.get(url).send().await {
            Err(e) => Err(format!("listing `{dir}`: no answer ({e})")),
            Ok(r) => Ok(r.json::<Value>().await.unwrap_or(Value::Null)),
        }
    };
    match list(format!("{root}/case/plots")).await {
        Ok(v)
            if v == json!({ "files": [{ "path": "a.txt", "is_dir": false, "file_size": 16 }] }) => {
        }
        Ok(v) => failures.push(format!("listing `case/plots`: {v}")),
        Err(e) => failures.push(e),
    }
    match list(format!("{root}/case")).await {
        Ok(v) => {
            let mut names = strings(&v["files"], "/path");
            names.sort();
            if names != ["Plots", "plots"] {
                failures.push(format!("listing `case`: {v}"));
            }
        }
        Err(e) => failures.push(e),
    }
    match list(format!("{root}/accent/é")).await {
        Ok(v) if v == json!({}) => {}
        Ok(v) => failures.push(format!("listing the missing `accent/é`: {v}")),
        Err(e) => failures.push(e),
    }
    let r = s
        .send(
            Method::DELETE,
            &format!("{ARTIFACTS}/{root}/case/plots"),
            None,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let kept = s
        .get(&format!("{ARTIFACTS}/{root}/case/Plots/b.txt"), &[])
        .await;
    if kept.status != 200 {
        failures.push("deleting `case/plots` deleted `case/Plots/b.txt`".into());
    }
    failures
}

// ---- /api/v1 ----------------------------------------------------------------------------

/// Walks a `/api/v1` listing page by page; returns the pages' item ids.
async fn walk_v1(s: &Server, path: &str, limit: &str, id: &str) -> Vec<Vec<String>> {
    let mut pages = Vec::new();
    let mut token: Option<String> = None;
    loop {
        let mut q = vec![("limit", limit)];
        if let Some(t) = &token {
            q.push(("page_token", t.as_str()));
        }
        let page = s.get(path, &q).await.ok();
        pages.push(strings(&page["items"], id));
        match &page["next_page_token"] {
            Value::String(t) => token = Some(t.clone()),
            Value::Null => return pages,
            other => panic!("next_page_token is {other}"),
        }
        assert!(pages.len() < 50, "paging does not end");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn v1_pages_listings_reports_errors_and_moves_aliases() {
    let s = Server::start().await;
    let mut runs = BTreeSet::new();
    for i in 0..4 {
        let e = s.create_experiment(&format!("e{i}")).await;
        if i == 0 {
            for j in 0..7 {
                runs.insert(s.create_run(&e, &format!("r{j}"), 10 + j).await);
            }
        }
    }

    let pages = walk_v1(&s, "/api/v1/runs", "3", "/id").await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [3, 3, 1],
        "{pages:?}"
    );
    let all: Vec<String> = pages.concat();
    assert_eq!(all.iter().cloned().collect::<BTreeSet<_>>(), runs);
    assert_eq!(all.len(), runs.len(), "no run twice");
    let pages = walk_v1(&s, "/api/v1/experiments", "2", "/name").await;
    assert_eq!(
        pages.concat(),
        ["Default", "e0", "e1", "e2", "e3"],
        "oldest first: {pages:?}"
    );

    for path in ["/api/v1/runs", "/api/v1/experiments", "/api/v1/models"] {
        for limit in ["0", "-1", "abc", "100000000"] {
            let r = s.get(path, &[("limit", limit)]).await;
            kiln_error(&r, 400, "invalid_argument", Some("limit"))
                .unwrap_or_else(|e| panic!("{path}?limit={limit}: {e}"));
        }
        let r = s.get(path, &[("page_token", "garbage")]).await;
        kiln_error(&r, 400, "invalid_argument", Some("page_token"))
            .unwrap_or_else(|e| panic!("{path}?page_token=garbage: {e}"));
    }
    for id in [NO_RUN, "zz", "0123456"] {
        let r = s.get(&format!("/api/v1/runs/{id}"), &[]).await;
        kiln_error(&r, 404, "not_found", None).unwrap_or_else(|e| panic!("{id}: {e}"));
    }
    let run = runs.iter().next().unwrap().clone();
    let got = s
        .get(&format!("/api/v1/runs/{}", &run[..8]), &[])
        .await
        .ok();
    assert_eq!(got["id"], run.as_str(), "a run by a prefix of its id");

    // A metric's history pages too.
    for step in 0..5 {
        s.log_metric(&run, "loss", json!(step), 1, step).await.ok();
    }
    let pages = walk_v1(&s, &format!("/api/v1/runs/{run}/metrics/loss"), "2", "/key").await;
    assert_eq!(
        pages.iter().map(Vec::len).collect::<Vec<_>>(),
        [2, 2, 1],
        "{pages:?}"
    );

    // A key with a slash, percent-encoded in the path.
    s.log_metric(&run, "val/loss", json!(0.5), 1, 0).await.ok();
    let points = s
        .get(&format!("/api/v1/runs/{run}/metrics/val%2Floss"), &[])
        .await
        .ok();
    assert_eq!(strings(&points["items"], "/key"), ["val/loss"]);

    // Aliases through /api/v1, and lineage from a version to its run.
    s.mpost("registered-models/create", json!({ "name": "lin" }))
        .await
        .ok();
    s.create_version("lin", Some(&run)).await;
    s.create_version("lin", None).await;
    let alias = "/api/v1/models/lin/aliases/champion";
    let srv = &s;
    let put = |version: Value| async move {
        srv.send(Method::PUT, alias, Some(&json!({ "version": version })))
            .await
    };
    let set = put(json!(1)).await.ok();
    assert_eq!(set["previous_version"], Value::Null, "{set}");
    assert_eq!(set["version"], 1);
    let set = put(json!(2)).await.ok();
    assert_eq!(set["previous_version"], 1, "{set}");
    let v = s
        .get("/api/v1/models/lin/versions/champion", &[])
        .await
        .ok();
    assert_eq!(v["version"], 2, "{v}");
    // An MLflow client's version carries no stored explanation (kiln
    // training runs do: crates/kiln-cli/tests/explain.rs).
    assert!(v.as_object().unwrap().contains_key("explanation"), "{v}");
    assert_eq!(v["explanation"], Value::Null);
    kiln_error(&put(json!(9)).await, 404, "not_found", None).unwrap();
    let r = s.send(Method::PUT, alias, Some(&json!({}))).await;
    kiln_error(&r, 400, "invalid_argument", Some("version")).unwrap();
    let gone = s.send(Method::DELETE, alias, None).await.ok();
    assert_eq!(gone["previous_version"], 2, "{gone}");
    let r = s.send(Method::DELETE, alias, None).await;
    kiln_error(&r, 404, "not_found", None).unwrap();

    let tree = s.get("/api/v1/lineage", &[("ref", "lin@1")]).await.ok();
    assert_eq!(
        (&tree["kind"], &tree["id"]),
        (&json!("model_version"), &json!("lin/1")),
        "{tree}"
    );
    let upstream = tree["upstream"].as_array().expect("upstream");
    assert!(
        upstream.iter().any(|n| n["kind"] == "run"
            && n["id"] == run.as_str()
            && n["relation"] == "registered from"),
        "{tree}"
    );
    let r = s.get("/api/v1/lineage", &[]).await;
    kiln_error(&r, 400, "invalid_argument", Some("ref")).unwrap();
    let r = s.get("/api/v1/lineage", &[("ref", "lin@7")]).await;
    kiln_error(&r, 404, "not_found", None).unwrap();
    let r = s.get("/api/v1/nothing", &[]).await;
    kiln_error(&r, 404, "not_found", None).unwrap();
}

// ---- The same flow on SQLite and PostgreSQL ---------------------------------------------

/// An MLflow client's session: experiments, runs, batches, searches with
/// filters, history, lifecycle, registry with aliases, artifacts, `/api/v1`.
async fn mlflow_flow(s: &Server) {
    let e = s
        .mpost(
            "experiments/create",
            json!({ "name": "flow", "tags": [{ "key": "team", "value": "kiln" }] }),
        )
        .await
        .ok()["experiment_id"]
        .as_str()
        .unwrap()
        .to_string();
    let r = s
        .mpost("experiments/create", json!({ "name": "flow" }))
        .await;
    mlflow_error(&r, 400, "RESOURCE_ALREADY_EXISTS", "flow").unwrap();
    let got = s
        .mget("experiments/get-by-name", &[("experiment_name", "flow")])
        .await
        .ok();
    assert_eq!(got["experiment"]["experiment_id"], e.as_str());
    assert_eq!(
        got["experiment"]["tags"],
        json!([{ "key": "team", "value": "kiln" }])
    );
    let found = s
        .mpost(
            "experiments/search",
            json!({ "filter": "name = 'flow'", "max_results": 1000, "view_type": "ACTIVE_ONLY" }),
        )
        .await
        .ok();
    assert_eq!(strings(&found["experiments"], "/name"), ["flow"]);

    let mut runs = Vec::new();
    for (i, (acc, c, owner)) in [
        (0.9, "1.0", "data-scientist"),
        (0.4, "0.5", "ops"),
        (0.7, "1.0", "data"),
    ]
    .iter()
    .enumerate()
    {
        let run = s
            .create_run(&e, &format!("r{}", i + 1), 1_000 + i as i64)
            .await;
        s.log_batch(
            &run,
            json!({
                "metrics": [
                    { "key": "acc", "value": acc, "timestamp": 5, "step": 0 },
                    { "key": "loss", "value": "NaN", "timestamp": 5, "step": 0 },
                    { "key": "loss", "value": "Infinity", "timestamp": 6, "step": 1 },
                    { "key": "loss", "value": 0.5, "timestamp": 7, "step": 2 },
                ],
                "params": [{ "key": "C", "value": c }],
                "tags": [{ "key": "owner", "value": owner }],
            }),
        )
        .await
        .ok();
        // The same points again add nothing.
        s.log_metric(&run, "acc", json!(acc), 5, 0).await.ok();
        s.log_metric(&run, "loss", json!("NaN"), 5, 0).await.ok();
        runs.push(run);
    }
    let got = s
        .mget("runs/get", &[("run_uuid", &runs[0]), ("run_id", &runs[0])])
        .await
        .ok();
    assert_eq!(got["run"]["info"]["run_name"], "r1");
    assert!(
        got["run"]["data"]["tags"]
            .as_array()
            .unwrap()
            .contains(&json!({ "key": "mlflow.runName", "value": "r1" })),
        "{got}"
    );
    assert!(got["run"]["info"].get("end_time").is_none(), "{got}");
    let r = s
        .mpost(
            "runs/log-parameter",
            json!({ "run_id": runs[0], "run_uuid": runs[0], "key": "C", "value": "2.0" }),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "Changing param values").unwrap();
    s.mpost(
        "runs/log-parameter",
        json!({ "run_id": runs[0], "run_uuid": runs[0], "key": "C", "value": "1.0" }),
    )
    .await
    .ok();
    let loss: Vec<Value> = s
        .history(&runs[0], "loss")
        .await
        .iter()
        .map(|p| p["value"].clone())
        .collect();
    assert_eq!(loss, [json!("NaN"), json!("Infinity"), json!(0.5)]);
    assert_eq!(s.history(&runs[0], "acc").await.len(), 1);

    let search = |filter: &str, order: &[&str]| {
        let mut body = json!({ "experiment_ids": [e], "filter": filter, "max_results": 1000, "run_view_type": "ACTIVE_ONLY" });
        if !order.is_empty() {
            body["order_by"] = json!(order);
        }
        async move { run_ids(&s.search_runs(body).await) }
    };
    assert_eq!(
        search(
            "metrics.acc > 0.5 and params.C = '1.0'",
            &["metrics.acc DESC"]
        )
        .await,
        [runs[0].clone(), runs[2].clone()]
    );
    assert_eq!(
        search(
            "metrics.acc >= 0.4 AND metrics.acc < 0.8",
            &["metrics.acc ASC"]
        )
        .await,
        [runs[1].clone(), runs[2].clone()]
    );
    assert_eq!(
        search("tags.owner LIKE 'data%'", &["attributes.start_time ASC"]).await,
        [runs[0].clone(), runs[2].clone()]
    );
    assert_eq!(
        search("tags.owner ILIKE 'DATA'", &[]).await,
        [runs[2].clone()]
    );
    // MLflow takes IN lists for run ids (not for parameters or tags).
    let ids = format!("attributes.run_id IN ('{}', '{}')", runs[1], NO_RUN);
    assert_eq!(search(&ids, &[]).await, [runs[1].clone()]);
    assert_eq!(search("params.C != '1.0'", &[]).await, [runs[1].clone()]);
    assert_eq!(
        search("attributes.run_name = 'r2'", &[]).await,
        [runs[1].clone()]
    );
    assert_eq!(
        search("", &["metrics.loss DESC", "metrics.acc DESC"]).await,
        [runs[0].clone(), runs[2].clone(), runs[1].clone()],
        "ties on the latest loss broken by the next key"
    );
    let r = s
        .mpost(
            "runs/search",
            json!({ "experiment_ids": [e], "filter": "metrics.acc >>> 1" }),
        )
        .await;
    mlflow_error(&r, 400, "INVALID_PARAMETER_VALUE", "").unwrap();
    let page = s
        .search_runs(json!({ "experiment_ids": [e], "max_results": 2 }))
        .await;
    assert_eq!(run_ids(&page), [runs[2].clone(), runs[1].clone()]);
    let token = page["next_page_token"].as_str().expect("a next page");
    let page = s
        .search_runs(json!({ "experiment_ids": [e], "max_results": 2, "page_token": token }))
        .await;
    assert_eq!(run_ids(&page), [runs[0].clone()]);
    assert!(page.get("next_page_token").is_none(), "{page}");

    // Lifecycle.
    let ended = s
        .mpost(
            "runs/update",
            json!({ "run_id": runs[1], "run_uuid": runs[1], "status": "FINISHED", "end_time": 9_000 }),
        )
        .await
        .ok();
    assert_eq!(ended["run_info"]["status"], "FINISHED");
    assert_eq!(ended["run_info"]["end_time"], 9_000);
    s.mpost("runs/delete", json!({ "run_id": runs[1] }))
        .await
        .ok();
    let deleted = s
        .search_runs(json!({ "experiment_ids": [e], "run_view_type": "DELETED_ONLY" }))
        .await;
    assert_eq!(run_ids(&deleted), [runs[1].clone()]);
    s.mpost("runs/restore", json!({ "run_id": runs[1] }))
        .await
        .ok();
    assert_eq!(search("", &[]).await.len(), 3);

    // Registry: a version from a run, aliases, stages, searches.
    registry_flow(s, "flow-model").await;
    s.mpost("registered-models/create", json!({ "name": "from-run" }))
        .await
        .ok();
    let v = s.create_version("from-run", Some(&runs[0])).await;
    assert_eq!(v["run_id"], runs[0].as_str());
    let found = s
        .mget(
            "registered-models/search",
            &[
                (
                    "filter",
                    "name = 'from-run' AND tag.`mlflow.prompt.is_prompt` != 'true'",
                ),
                ("max_results", "100"),
            ],
        )
        .await
        .ok();
    assert_eq!(strings(&found["registered_models"], "/name"), ["from-run"]);
    let found = s
        .mget(
            "model-versions/search",
            &[("filter", "name='flow-model'"), ("max_results", "10000")],
        )
        .await
        .ok();
    let mut versions = strings(&found["model_versions"], "/version");
    versions.sort();
    assert_eq!(versions, ["1", "2"]);
    let tree = s
        .get("/api/v1/lineage", &[("ref", "from-run@1")])
        .await
        .ok();
    assert!(
        tree["upstream"]
            .as_array()
            .is_some_and(|u| u.iter().any(|n| n["id"] == runs[0].as_str())),
        "{tree}"
    );

    artifact_flow(s).await;

    let pages = walk_v1(s, "/api/v1/runs", "2", "/id").await;
    assert_eq!(pages.concat().len(), 3, "{pages:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mlflow_flow_works_on_sqlite() {
    let s = Server::start().await;
    mlflow_flow(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mlflow_flow_works_on_postgresql() {
    let s = Server::on_postgres(kiln_test::postgres_url().await).await;
    mlflow_flow(&s).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nan_metrics_do_not_break_later_metrics_on_postgresql() {
    // Each pooled connection prepares the latest-metric upsert once. NaNs
    // logged at once reach every connection first; numbers must still work.
    let s = Server::on_postgres(kiln_test::postgres_url().await).await;
    let mut runs = Vec::new();
    for i in 0..16 {
        runs.push(s.create_run("0", &format!("nan-{i}"), i).await);
    }
    let mut tasks = Vec::new();
    for run in &runs {
        let url = format!("{}{MLFLOW}/runs/log-metric", s.base);
        let body = json!({ "run_id": run, "key": "m", "value": "NaN", "timestamp": 1, "step": 0 });
        tasks.push(tokio::spawn(async move {
            post_ok(&reqwest::Client::new(), &url, &body).await
        }));
    }
    for t in tasks {
        t.await.expect("a NaN was logged");
    }
    let mut failures = Vec::new();
    for (i, run) in runs.iter().enumerate() {
        let r = s.log_metric(run, "m", json!(i), 1, 1).await;
        if r.status != 200 {
            failures.push(format!("run {i}: HTTP {}: {}", r.status, r.text()));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} numbers refused:\n{}",
        failures.len(),
        runs.len(),
        failures.join("\n")
    );
    for run in &runs {
        assert_eq!(s.history(run, "m").await.len(), 2);
    }
}

/// A fresh database whose default collation is ICU's `en-US`, as on
/// PostgreSQL servers set up with a language's locale.
async fn postgres_url_with_icu_collation() -> String {
    use sqlx::Executor;
    let server = std::env::var(kiln_core::EnvVars::KILN_TEST_POSTGRES_URL).unwrap_or_else(|_| {
        panic!("KILN_TEST_POSTGRES_URL is not set: run the tests with `scripts/test`")
    });
    sqlx::any::install_default_drivers();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let name = format!("kiln_icu_{}_{nanos}", std::process::id());
    let mut conn = <sqlx::AnyConnection as sqlx::Connection>::connect(&server)
        .await
        .expect("connect to the test PostgreSQL server");
    conn.execute(sqlx::AssertSqlSafe(format!(
        "CREATE DATABASE {name} TEMPLATE template0 ENCODING 'UTF8' LOCALE_PROVIDER icu \
         ICU_LOCALE 'en-US' LC_COLLATE 'C' LC_CTYPE 'C'"
    )))
    .await
    .expect("create a database with an ICU collation");
    let base = server.rsplit_once('/').map_or(server.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_artifact_proxy_works_on_postgresql_with_a_language_collation() {
    let s = Server::on_postgres(postgres_url_with_icu_collation().await).await;
    artifact_flow(&s).await;
}

// ---- Many writers at once --------------------------------------------------------------

/// The value writer `w` logs at step `i` (exact in binary).
fn point_value(w: i64, i: i64) -> f64 {
    w as f64 * 1000.0 + i as f64 / 4.0
}

async fn post_ok(http: &reqwest::Client, url: &str, body: &Value) -> Value {
    let r = http
        .post(url)
        .json(body)
        .send()
        .await
        .expect("the server answers");
    let status = r.status();
    let text = r.text().await.expect("a body");
    assert_eq!(status, 200, "{url}: {text}");
    serde_json::from_str(&text).expect("JSON")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thirty_two_concurrent_writers_lose_no_metric_point_on_sqlite() {
    const WRITERS: i64 = 32;
    const SINGLE: i64 = 100;
    const BATCH: i64 = 500;
    let s = Server::start().await;
    let mut tasks = Vec::new();
    for w in 0..WRITERS {
        let base = format!("{}{MLFLOW}", s.base);
        tasks.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            let run = post_ok(
                &http,
                &format!("{base}/runs/create"),
                &json!({ "experiment_id": "0", "run_name": format!("writer-{w}") }),
            )
            .await["run"]["info"]["run_id"]
                .as_str()
                .unwrap()
                .to_string();
            for i in 0..SINGLE {
                post_ok(
                    &http,
                    &format!("{base}/runs/log-metric"),
                    &json!({ "run_id": run, "key": "m", "value": point_value(w, i), "timestamp": 1_000 + i, "step": i }),
                )
                .await;
            }
            let metrics: Vec<Value> = (SINGLE..SINGLE + BATCH)
                .map(|i| json!({ "key": "m", "value": point_value(w, i), "timestamp": 1_000 + i, "step": i }))
                .collect();
            post_ok(
                &http,
                &format!("{base}/runs/log-batch"),
                &json!({ "run_id": run, "metrics": metrics }),
            )
            .await;
            run
        }));
    }
    let mut runs = Vec::new();
    for t in tasks {
        runs.push(t.await.expect("a writer finished"));
    }
    assert_eq!(runs.iter().collect::<BTreeSet<_>>().len(), WRITERS as usize);
    for (w, run) in runs.iter().enumerate() {
        let w = w as i64;
        let history = s.history(run, "m").await;
        assert_eq!(
            history.len() as i64,
            SINGLE + BATCH,
            "writer {w} lost points"
        );
        for (i, p) in history.iter().enumerate() {
            let i = i as i64;
            assert_eq!(
                (
                    p["step"].as_i64(),
                    p["timestamp"].as_i64(),
                    p["value"].as_f64()
                ),
                (Some(i), Some(1_000 + i), Some(point_value(w, i))),
                "writer {w}"
            );
        }
        let got = s.mget("runs/get", &[("run_id", run.as_str())]).await.ok();
        assert_eq!(got["run"]["data"]["metrics"][0]["step"], SINGLE + BATCH - 1);
    }
}
