//! The runner: a pipeline's steps as a DAG, independent ones in parallel,
//! each skipped when its cache key matches an earlier success, retried,
//! timed out, cancelled; every pipeline run and step run recorded.
//!
//! A step's cache key hashes what decides its result: its definition with
//! parameters and upstream outputs filled in, what it reads now (the
//! dataset version a name resolves to, the content of the files it ingests
//! or declares as `inputs`), and the outputs of the steps it needs. An
//! unchanged upstream result leaves a step's key unchanged, so changing one
//! input re-runs only the steps downstream of it.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use kiln_core::NoProgress;
use kiln_project::Project;
use kiln_project::pipelines::{self, PipelineConfig, Ref, StepConfig};
use kiln_store::{NewPipelineRun, PipelineRun, StepRun, now_ms};
use serde::Serialize;
use serde_json::{Map, Value, json};
use tokio::sync::watch;

use crate::junit;
use crate::steps::{self, Log};
use crate::{PipelineError, Result};

/// How to run.
#[derive(Clone, Debug)]
pub struct RunOptions {
    /// `--param NAME=VALUE`.
    pub params: Vec<(String, String)>,
    /// Run every step, cached or not (results are still recorded for later
    /// runs to reuse).
    pub force: bool,
    /// Steps running at once.
    pub jobs: usize,
    /// What started it: `manual`, `schedule:TICK`, `trigger:ID`…
    pub cause: String,
    /// Hand steps to `kiln worker`s (through the store) instead of running
    /// them in this process; approval steps still wait here.
    pub remote: bool,
    /// Re-run a recorded run (`kiln reproduce`): pinned to its versions.
    pub replay: Option<Arc<Replay>>,
}

/// What a reproduction keeps from the run it reproduces.
#[derive(Clone, Debug, Default)]
pub struct Replay {
    /// The run reproduced.
    pub of: String,
    /// Each step's recorded reads: the dataset and model versions it used
    /// are used again, whatever names point at now.
    pub reads: BTreeMap<String, Value>,
    /// Each step's recorded outputs: steps that change the registry or wait
    /// for a person (register, gate, approve, deploy) are not run again;
    /// their outputs are reused.
    pub outputs: BTreeMap<String, Value>,
}

/// Kinds a reproduction does not run again.
pub const NOT_REPLAYED: [&str; 4] = ["register", "gate", "approve", "deploy"];

impl Default for RunOptions {
    fn default() -> Self {
        RunOptions {
            params: Vec::new(),
            force: false,
            jobs: std::thread::available_parallelism().map_or(2, |n| n.get()),
            cause: "manual".into(),
            remote: false,
            replay: None,
        }
    }
}

/// What the runner reports as it goes.
pub enum Event<'a> {
    Started {
        run: &'a PipelineRun,
        order: &'a [String],
    },
    StepStarted {
        step: &'a str,
        attempt: i64,
    },
    Retrying {
        step: &'a str,
        error: &'a str,
        delay: Duration,
    },
    /// An approval step waits for `kiln approve`.
    Waiting {
        step: &'a str,
    },
    StepFinished {
        step: &'a StepRun,
    },
}

/// Receives events; called from the runner's tasks.
pub type Observer = Arc<dyn Fn(Event<'_>) + Send + Sync>;

/// A finished run with its steps in order.
#[derive(Clone, Debug, Serialize)]
pub struct Outcome {
    pub run: PipelineRun,
    pub steps: Vec<StepRun>,
}

/// How long a running run may go without its heartbeat before it counts
/// as abandoned: `KILN_PIPELINE_STALE_AFTER`, default one minute.
pub fn stale_after() -> Duration {
    std::env::var(kiln_core::EnvVars::KILN_PIPELINE_STALE_AFTER)
        .ok()
        .and_then(|v| kiln_core::parse_duration(&v).ok())
        .filter(|d| !d.is_zero())
        .unwrap_or(Duration::from_secs(60))
}

/// Ends runs whose process was killed (see [`stale_after`]); what looks at
/// runs calls it (workers, the scheduler, `kiln pipelines`).
pub async fn sweep_abandoned(project: &Project) -> Result<Vec<String>> {
    Ok(project
        .meta
        .sweep_abandoned_runs(stale_after().as_millis() as i64)
        .await?)
}

/// A pipeline by name, or an error listing the declared ones.
pub fn pipeline<'a>(project: &'a Project, name: &str) -> Result<&'a PipelineConfig> {
    project.config.pipelines.get(name).ok_or_else(|| {
        let names: Vec<&str> = project
            .config
            .pipelines
            .keys()
            .map(String::as_str)
            .collect();
        PipelineError::Invalid {
            what: format!("pipeline `{name}`"),
            message: "kiln.yaml declares no such pipeline".into(),
            hint: if names.is_empty() {
                "declare one under `pipelines:` in kiln.yaml".into()
            } else {
                format!("pipelines: {}", names.join(", "))
            },
        }
    })
}

/// The pipeline's only name, when there is one.
pub fn only_pipeline(project: &Project) -> Result<String> {
    let names: Vec<&String> = project.config.pipelines.keys().collect();
    match names.as_slice() {
        [one] => Ok((*one).clone()),
        [] => Err(PipelineError::Invalid {
            what: "kiln.yaml".into(),
            message: "it declares no pipeline".into(),
            hint: "declare one under `pipelines:` (see `kiln run --help`)".into(),
        }),
        many => Err(PipelineError::Invalid {
            what: "the command".into(),
            message: "name the pipeline to run".into(),
            hint: format!(
                "pipelines: {}",
                many.iter()
                    .map(|s| s.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    }
}

/// The parameters' values: defaults, then `given`. An unknown name or a
/// required parameter left out is an error.
pub fn resolve_params(
    name: &str,
    p: &PipelineConfig,
    given: &[(String, String)],
) -> Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for (k, v) in &p.params {
        match v {
            Value::Null => {}
            Value::String(s) => {
                out.insert(k.clone(), s.clone());
            }
            other => {
                out.insert(k.clone(), other.to_string());
            }
        }
    }
    for (k, v) in given {
        if !p.params.contains_key(k) {
            return Err(PipelineError::Invalid {
                what: format!("--param {k}"),
                message: format!("pipeline `{name}` has no parameter `{k}`"),
                hint: if p.params.is_empty() {
                    format!("pipeline `{name}` takes no parameters")
                } else {
                    format!(
                        "its parameters: {}",
                        p.params.keys().cloned().collect::<Vec<_>>().join(", ")
                    )
                },
            });
        }
        out.insert(k.clone(), v.clone());
    }
    let missing: Vec<&String> = p.params.keys().filter(|k| !out.contains_key(*k)).collect();
    if let Some(k) = missing.first() {
        return Err(PipelineError::Invalid {
            what: "the parameters".into(),
            message: format!("pipeline `{name}` needs parameter `{k}`, which has no default"),
            hint: format!("pass `--param {k}=VALUE`"),
        });
    }
    Ok(out)
}

/// A step's definition with its templates filled in.
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub(crate) struct Resolved {
    pub(crate) kind: String,
    pub(crate) args: Map<String, Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) run: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) env: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) inputs: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub(crate) outputs: Vec<String>,
}

/// How a step is tried: not part of its cache key.
#[derive(Clone, Debug, Default, Serialize, serde::Deserialize)]
pub(crate) struct Policy {
    pub(crate) retries: u32,
    pub(crate) retry_delay_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout_ms: Option<u64>,
    /// As written, for messages.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) timeout: Option<String>,
}

impl Policy {
    fn of(step: &StepConfig) -> Policy {
        let ms = |d: &Option<String>| {
            d.as_deref()
                .map(|d| kiln_core::parse_duration(d).expect("validated").as_millis() as u64)
        };
        Policy {
            retries: step.retries.unwrap_or(0),
            retry_delay_ms: ms(&step.retry_delay).unwrap_or(1000),
            timeout_ms: ms(&step.timeout),
            timeout: step.timeout.clone(),
        }
    }
}

/// What a queued step carries to whoever runs it (kept in its `inputs`).
#[derive(Clone, Debug, Serialize, serde::Deserialize)]
pub(crate) struct Work {
    pub(crate) step: Resolved,
    pub(crate) reads: Value,
    pub(crate) policy: Policy,
    /// Files the steps it needs wrote: path → object, put in place before a
    /// command runs (it may run on another machine).
    #[serde(default)]
    pub(crate) upstream_files: Map<String, Value>,
}

fn resolve(
    step: &StepConfig,
    params: &BTreeMap<String, String>,
    upstream: &BTreeMap<String, Value>,
    run_id: &str,
) -> std::result::Result<Resolved, String> {
    let value = |r: &Ref| -> Option<String> {
        match r {
            Ref::Param(p) => params.get(p).cloned(),
            Ref::RunId => Some(run_id.to_string()),
            Ref::Output { step, output } => match upstream.get(step).and_then(|o| o.get(output)) {
                Some(Value::String(s)) => Some(s.clone()),
                Some(Value::Null) | None => None,
                Some(other) => Some(other.to_string()),
            },
        }
    };
    let render = |s: &str| -> std::result::Result<String, String> {
        pipelines::render(s, &value).map_err(|e| match e.strip_suffix(" has no value") {
            Some(r) if r.starts_with("${steps.") => {
                format!("{r}: the step produced no such output")
            }
            _ => e,
        })
    };
    fn walk(
        v: &Value,
        render: &dyn Fn(&str) -> std::result::Result<String, String>,
    ) -> std::result::Result<Value, String> {
        Ok(match v {
            Value::String(s) => Value::String(render(s)?),
            Value::Array(a) => Value::Array(
                a.iter()
                    .map(|x| walk(x, render))
                    .collect::<std::result::Result<_, _>>()?,
            ),
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, x)| Ok((k.clone(), walk(x, render)?)))
                    .collect::<std::result::Result<_, String>>()?,
            ),
            other => other.clone(),
        })
    }
    Ok(Resolved {
        kind: step.kind_name().to_string(),
        args: step
            .args
            .iter()
            .map(|(k, v)| Ok((k.clone(), walk(v, &render)?)))
            .collect::<std::result::Result<_, String>>()?,
        run: step.run.as_deref().map(render).transpose()?,
        env: step
            .env
            .iter()
            .map(|(k, v)| Ok((k.clone(), render(v)?)))
            .collect::<std::result::Result<_, String>>()?,
        inputs: step
            .inputs
            .iter()
            .map(|s| render(s))
            .collect::<std::result::Result<_, _>>()?,
        outputs: step
            .outputs
            .iter()
            .map(|s| render(s))
            .collect::<std::result::Result<_, _>>()?,
    })
}

/// What the cache key hashes, besides the definition.
pub(crate) async fn reads(
    project: &Project,
    r: &Resolved,
    upstream_files: &Map<String, Value>,
) -> std::result::Result<Value, String> {
    if r.kind == "run" {
        let mut files = Map::new();
        for i in &r.inputs {
            // A file a needed step wrote is known by its recorded hash: it
            // may have been written on another machine.
            let hash = match upstream_files.get(i) {
                Some(h) => h.clone(),
                None => json!(steps::content_hash(
                    project,
                    &steps::project_path(project, i)
                )?),
            };
            files.insert(i.clone(), hash);
        }
        return Ok(Value::Object(files));
    }
    steps::reads(project, &r.kind, &r.args).await
}

/// A `run:` step's name is part of its key (its command sees `KILN_STEP`);
/// two built-in steps defined alike share results.
fn cache_key(step: &str, r: &Resolved, reads: &Value, needs: &BTreeMap<String, Value>) -> String {
    let upstream: BTreeMap<&String, String> = needs
        .iter()
        .map(|(k, v)| {
            (
                k,
                blake3::hash(v.to_string().as_bytes()).to_hex().to_string(),
            )
        })
        .collect();
    let name = (r.kind == "run").then_some(step);
    let text =
        json!({ "v": 1, "name": name, "step": r, "reads": reads, "needs": upstream }).to_string();
    blake3::hash(text.as_bytes()).to_hex().to_string()
}

/// Everything a step's task needs.
struct Ctx {
    exec: Exec,
    pipeline: PipelineConfig,
    params: BTreeMap<String, String>,
    force: bool,
    remote: bool,
    replay: Option<Arc<Replay>>,
    /// With `remote`: the run's step rows, read by one poller for every
    /// step waiting on a worker.
    rows: Option<watch::Receiver<Vec<(String, String, i64)>>>,
}

/// How often `kiln run --remote` reads its steps' rows.
const REMOTE_POLL: Duration = Duration::from_millis(10);

/// What running a step needs, here or in a worker.
#[derive(Clone)]
pub(crate) struct Exec {
    pub(crate) project: Arc<Project>,
    pub(crate) run_id: String,
    /// Where step logs are written while they run.
    pub(crate) logs: PathBuf,
    /// Who runs it: `local:PID` or a worker's name.
    pub(crate) worker: String,
    pub(crate) observer: Observer,
}

/// Runs a pipeline to its end (or until `cancel` turns true).
pub async fn run(
    project: Arc<Project>,
    name: &str,
    opts: &RunOptions,
    observer: Observer,
    cancel: watch::Receiver<bool>,
) -> Result<Outcome> {
    let config = pipeline(&project, name)?.clone();
    let params = resolve_params(name, &config, &opts.params)?;
    run_config(project, name, config, params, opts, observer, cancel).await
}

/// Runs a pipeline as given (a recorded definition, for `kiln reproduce`).
pub(crate) async fn run_config(
    project: Arc<Project>,
    name: &str,
    config: PipelineConfig,
    params: BTreeMap<String, String>,
    opts: &RunOptions,
    observer: Observer,
    mut cancel: watch::Receiver<bool>,
) -> Result<Outcome> {
    let order: Vec<String> = config
        .order()
        .expect("kiln.yaml was validated when read")
        .into_iter()
        .map(str::to_string)
        .collect();
    let deps: BTreeMap<String, BTreeSet<String>> = config
        .dependencies()
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.into_iter().map(str::to_string).collect()))
        .collect();
    let (source_commit, source_dirty) = kiln_project::training::git_state(project.root.as_deref());
    let record = project
        .meta
        .create_pipeline_run(&NewPipelineRun {
            pipeline: name.to_string(),
            cause: opts.cause.clone(),
            params: json!(params),
            definition: serde_json::to_value(&config).expect("pipelines serialise"),
            source_commit,
            source_dirty,
            steps: order
                .iter()
                .map(|s| (s.clone(), config.steps[s].value.kind_name().to_string()))
                .collect(),
        })
        .await?;
    observer(Event::Started {
        run: &record,
        order: &order,
    });
    let logs = log_dir(&project, &record.id);
    std::fs::create_dir_all(&logs).map_err(PipelineError::io("create", &logs))?;
    // The heartbeat that tells others this run is still followed.
    let heartbeat = {
        let project = project.clone();
        let run_id = record.id.clone();
        let every = (stale_after() / 6).max(Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                if let Err(e) = project.meta.beat_pipeline_run(&run_id).await {
                    tracing::warn!("renewing the run's heartbeat: {e}");
                }
            }
        })
    };
    let _stop_heartbeat = AbortOnDrop(heartbeat);
    // One reader of the step rows for all the steps that wait on workers,
    // however many there are.
    let poller = opts.remote.then(|| {
        let (tx, rx) = watch::channel(Vec::new());
        let project = project.clone();
        let run_id = record.id.clone();
        let task = tokio::spawn(async move {
            loop {
                tokio::time::sleep(REMOTE_POLL).await;
                match project.meta.step_states(&run_id).await {
                    Ok(rows) => {
                        if tx.send(rows).is_err() {
                            return;
                        }
                    }
                    Err(e) => tracing::warn!("reading the run's steps: {e}"),
                }
            }
        });
        (rx, task)
    });
    let ctx = Arc::new(Ctx {
        exec: Exec {
            project: project.clone(),
            run_id: record.id.clone(),
            logs,
            worker: format!("local:{}", std::process::id()),
            observer: observer.clone(),
        },
        pipeline: config.clone(),
        params: params.clone(),
        force: opts.force || opts.replay.is_some(),
        remote: opts.remote,
        replay: opts.replay.clone(),
        rows: poller.as_ref().map(|(rx, _)| rx.clone()),
    });

    let position: BTreeMap<&str, usize> = order
        .iter()
        .enumerate()
        .map(|(i, s)| (s.as_str(), i))
        .collect();
    let mut state: BTreeMap<String, StepRun> = BTreeMap::new();
    let mut outputs: BTreeMap<String, Value> = BTreeMap::new();
    let mut running = tokio::task::JoinSet::new();
    let mut started: BTreeSet<String> = BTreeSet::new();
    let mut cancelled = false;
    loop {
        // Steps whose needs failed are skipped; ready ones start.
        for step in &order {
            if started.contains(step) || state.contains_key(step) {
                continue;
            }
            let needs = &deps[step];
            if let Some(bad) = needs.iter().find(|d| {
                state
                    .get(*d)
                    .is_some_and(|s| !matches!(s.status.as_str(), "succeeded" | "cached"))
            }) {
                let mut s = blank(&ctx, step, position[step.as_str()]);
                s.status = "skipped".into();
                s.error = Some(format!(
                    "needs `{bad}`, which {}",
                    match state[bad].status.as_str() {
                        "failed" => "failed",
                        "cancelled" => "was cancelled",
                        _ => "was skipped",
                    }
                ));
                s.finished_at = Some(now_ms());
                project.meta.put_step(&s, &[]).await?;
                observer(Event::StepFinished { step: &s });
                state.insert(step.clone(), s);
                continue;
            }
            // Workers bound how many queued steps run at once; here,
            // `--jobs` does.
            if cancelled || (!ctx.remote && running.len() >= opts.jobs.max(1)) {
                continue;
            }
            if needs.iter().all(|d| state.contains_key(d)) {
                let upstream: BTreeMap<String, Value> = needs
                    .iter()
                    .map(|d| (d.clone(), outputs.get(d).cloned().unwrap_or(Value::Null)))
                    .collect();
                started.insert(step.clone());
                let ctx = ctx.clone();
                let step = step.clone();
                let pos = position[step.as_str()];
                running.spawn(async move { execute(ctx, step, pos, upstream).await });
            }
        }
        if running.is_empty() {
            break;
        }
        let joined = tokio::select! {
            j = running.join_next() => j,
            _ = cancel.changed(), if !cancelled => {
                cancelled = true;
                running.abort_all();
                continue;
            }
        };
        match joined {
            Some(Ok(Ok(s))) => {
                if let Some(o) = &s.outputs {
                    outputs.insert(s.step.clone(), o.clone());
                }
                started.remove(&s.step);
                state.insert(s.step.clone(), s);
            }
            Some(Ok(Err(e))) => {
                // The store failed under a step: end the run rather than
                // leave it running with nobody following it.
                running.abort_all();
                let why = format!("the run stopped: {e}");
                for step in &order {
                    if !state.contains_key(step) {
                        let _ = project
                            .meta
                            .end_unfinished_step(&record.id, step, "failed", &why)
                            .await;
                    }
                }
                let _ = project
                    .meta
                    .finish_pipeline_run(&record.id, "failed", Some(&why))
                    .await;
                if let Some((_, task)) = &poller {
                    task.abort();
                }
                return Err(e);
            }
            Some(Err(e)) if e.is_cancelled() => {}
            Some(Err(e)) => std::panic::resume_unwind(e.into_panic()),
            None => break,
        }
        if cancelled && running.is_empty() {
            break;
        }
    }
    // What never finished was cancelled; a step a worker finished in the
    // meantime keeps its result.
    for step in &order {
        if !state.contains_key(step) {
            project
                .meta
                .end_unfinished_step(&record.id, step, "cancelled", "the run was cancelled")
                .await?;
            let s = project.meta.step_run(&record.id, step).await?;
            observer(Event::StepFinished { step: &s });
            state.insert(step.clone(), s);
        }
    }
    let failed: Vec<&StepRun> = order
        .iter()
        .map(|s| &state[s])
        .filter(|s| s.status == "failed")
        .collect();
    let (status, error) =
        if cancelled && failed.is_empty() && order.iter().all(|s| state[s].status != "cancelled") {
            ("succeeded", None)
        } else if cancelled {
            ("cancelled", Some("cancelled".to_string()))
        } else if let Some(first) = failed.first() {
            (
                "failed",
                Some(format!(
                    "step `{}` failed: {}",
                    first.step,
                    first.error.as_deref().unwrap_or("")
                )),
            )
        } else {
            ("succeeded", None)
        };
    if let Some((_, task)) = &poller {
        task.abort();
    }
    project
        .meta
        .finish_pipeline_run(&record.id, status, error.as_deref())
        .await?;
    Ok(Outcome {
        run: project.meta.pipeline_run(&record.id).await?,
        steps: order.iter().map(|s| state[s].clone()).collect(),
    })
}

/// Aborts a task when dropped (on every way out of a function).
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Where a run's step logs are written while it runs.
///
/// The project's `.kiln/logs`, or the temporary folder where there is no
/// project folder or it cannot be written (a worker whose kiln.yaml is a
/// read-only mount).
pub fn log_dir(project: &Project, run_id: &str) -> PathBuf {
    let temp = || std::env::temp_dir().join("kiln-logs").join(run_id);
    match &project.root {
        Some(root) => {
            let dir = root.join(".kiln").join("logs").join(run_id);
            if dir.is_dir() || std::fs::create_dir_all(&dir).is_ok() {
                dir
            } else {
                temp()
            }
        }
        None => temp(),
    }
}

fn blank(ctx: &Ctx, step: &str, position: usize) -> StepRun {
    StepRun {
        run_id: ctx.exec.run_id.clone(),
        step: step.to_string(),
        kind: ctx.pipeline.steps[step].value.kind_name().to_string(),
        position: position as i64,
        status: "waiting".into(),
        inputs: json!({}),
        ..StepRun::default()
    }
}

/// Runs one step: resolve, key, reuse or run (here or on a worker),
/// record.
async fn execute(
    ctx: Arc<Ctx>,
    step: String,
    position: usize,
    upstream: BTreeMap<String, Value>,
) -> Result<StepRun> {
    let project = &ctx.exec.project;
    let cfg = &ctx.pipeline.steps[&step].value;
    let mut s = blank(&ctx, &step, position);
    s.started_at = Some(now_ms());
    let mut resolved = match resolve(cfg, &ctx.params, &upstream, &ctx.exec.run_id) {
        Ok(r) => r,
        Err(e) => return fail(&ctx.exec, s, e).await,
    };
    if let Some(replay) = &ctx.replay {
        if NOT_REPLAYED.contains(&resolved.kind.as_str()) {
            s.status = "cached".into();
            s.outputs = replay.outputs.get(&step).cloned();
            s.cached_from = Some(replay.of.clone());
            s.inputs = json!({ "replay": "not run again when reproducing: its outputs are the recorded run's" });
            s.finished_at = Some(now_ms());
            project.meta.put_step(&s, &[]).await?;
            (ctx.exec.observer)(Event::StepFinished { step: &s });
            return Ok(s);
        }
        // The versions the recorded run read, not what the names mean now.
        if let Some(read) = replay.reads.get(&step) {
            if let Some(Value::Object(tables)) = read.get("tables")
                && resolved.kind == "transform"
            {
                resolved
                    .args
                    .insert("tables".into(), Value::Object(tables.clone()));
            }
            for key in ["dataset", "model"] {
                if let (Some(Value::String(v)), true) =
                    (read.get(key), resolved.args.contains_key(key))
                    && v.contains('@')
                {
                    resolved.args.insert(key.into(), json!(v));
                }
            }
        }
    }
    let mut upstream_files = Map::new();
    for o in upstream.values() {
        if let Some(files) = o.get("files").and_then(Value::as_object) {
            upstream_files.extend(files.clone());
        }
    }
    let read = match reads(project, &resolved, &upstream_files).await {
        Ok(r) => r,
        Err(e) => return fail(&ctx.exec, s, e).await,
    };
    let key = cache_key(&step, &resolved, &read, &upstream);
    s.cache_key = Some(key.clone());
    let work = Work {
        step: resolved,
        reads: read,
        policy: Policy::of(cfg),
        upstream_files,
    };
    s.inputs = serde_json::to_value(&work).expect("work serialises");
    // A cached result whose files cannot be put back (collected by
    // `kiln gc`, say) is not used: the step runs.
    let reusable = match project.meta.cached_step(&key).await? {
        Some(prev) if cfg.cached() && !ctx.force => {
            if work.step.kind == "run" {
                match restore_outputs(project, prev.outputs.as_ref()).await {
                    Ok(()) => Some(prev),
                    Err(e) => {
                        tracing::warn!("step `{step}`: not reused from the cache: {e}");
                        None
                    }
                }
            } else {
                Some(prev)
            }
        }
        _ => None,
    };
    if let Some(prev) = reusable {
        s.status = "cached".into();
        s.outputs = prev.outputs.clone();
        s.cached_from = Some(prev.cached_from.clone().unwrap_or(prev.run_id.clone()));
        s.log_object = prev.log_object.clone();
        s.finished_at = Some(now_ms());
        project.meta.put_step(&s, &[]).await?;
        (ctx.exec.observer)(Event::StepFinished { step: &s });
        return Ok(s);
    }
    if ctx.remote && work.step.kind != "approve" {
        return on_a_worker(&ctx, s, work.policy.retries).await;
    }
    s.status = "running".into();
    s.worker = Some(ctx.exec.worker.clone());
    project.meta.put_step(&s, &[]).await?;
    let result = perform(&ctx.exec, &mut s, &work).await?;
    match result {
        Ok(produced) => {
            s.status = "succeeded".into();
            s.outputs = Some(Value::Object(produced.outputs));
            s.finished_at = Some(now_ms());
            project
                .meta
                .put_step(&s, &steps::edges(&s.run_id, &produced.produced))
                .await?;
            (ctx.exec.observer)(Event::StepFinished { step: &s });
            Ok(s)
        }
        Err(e) => fail(&ctx.exec, s, e).await,
    }
}

/// Queues a step for `kiln worker`s and waits for its end.
async fn on_a_worker(ctx: &Ctx, mut s: StepRun, retries: u32) -> Result<StepRun> {
    let exec = &ctx.exec;
    // Its retries, and up to two takeovers after a worker died.
    s.max_attempts = Some(i64::from(retries) + 3);
    s.status = "queued".into();
    s.queued_at = Some(now_ms());
    s.started_at = None;
    exec.project.meta.put_step(&s, &[]).await?;
    let mut rows = ctx.rows.clone().expect("a remote run has a poller");
    let mut announced = false;
    loop {
        if rows.changed().await.is_err() {
            return Err(PipelineError::Invalid {
                what: "the run".into(),
                message: "it stopped reading its steps from the store".into(),
                hint: "`kiln pipelines show RUN` shows where its steps are".into(),
            });
        }
        let now = rows
            .borrow_and_update()
            .iter()
            .find(|(step, _, _)| *step == s.step)
            .cloned();
        let Some((_, status, attempts)) = now else {
            continue;
        };
        if status == "running" && !announced {
            announced = true;
            (exec.observer)(Event::StepStarted {
                step: &s.step,
                attempt: attempts,
            });
        }
        if matches!(
            status.as_str(),
            "succeeded" | "cached" | "failed" | "skipped" | "cancelled"
        ) {
            let now = exec.project.meta.step_run(&s.run_id, &s.step).await?;
            (exec.observer)(Event::StepFinished { step: &now });
            return Ok(now);
        }
    }
}

/// Records a step's failure.
async fn fail(exec: &Exec, mut s: StepRun, error: String) -> Result<StepRun> {
    s.status = "failed".into();
    s.error = Some(error);
    s.finished_at = Some(now_ms());
    exec.project.meta.put_step(&s, &[]).await?;
    (exec.observer)(Event::StepFinished { step: &s });
    Ok(s)
}

/// Runs a step's tries (retries with doubling waits, each under the
/// timeout) and keeps its log; the outer error is the store's, the inner
/// the step's.
pub(crate) async fn perform(
    exec: &Exec,
    s: &mut StepRun,
    work: &Work,
) -> Result<std::result::Result<steps::Produced, String>> {
    let step = s.step.clone();
    let log_path = exec.logs.join(format!("{step}.log"));
    let mut log = Log::create(&log_path).map_err(PipelineError::io("write", &log_path))?;
    let r = &work.step;
    if r.kind == "run" {
        let files = Value::Object(
            [(
                "files".to_string(),
                Value::Object(work.upstream_files.clone()),
            )]
            .into_iter()
            .collect(),
        );
        if let Err(e) = restore_outputs(&exec.project, Some(&files)).await {
            return Ok(Err(e));
        }
    }
    let mut delay = Duration::from_millis(work.policy.retry_delay_ms);
    let timeout = work.policy.timeout_ms.map(Duration::from_millis);
    let mut result;
    loop {
        s.attempts += 1;
        (exec.observer)(Event::StepStarted {
            step: &step,
            attempt: s.attempts,
        });
        if s.attempts > 1 {
            log.line(format!("--- attempt {}", s.attempts));
        }
        let t = Instant::now();
        let attempt = once(exec, &step, r, &mut log);
        result = match timeout {
            Some(limit) => match tokio::time::timeout(limit, attempt).await {
                Ok(r) => r,
                Err(_) => Err(format!(
                    "timed out after {} (timeout: {})",
                    human(t.elapsed()),
                    work.policy.timeout.as_deref().unwrap_or_default()
                )),
            },
            None => attempt.await,
        };
        match &result {
            Err(e) if s.attempts <= i64::from(work.policy.retries) => {
                log.line(format!(
                    "attempt {} failed: {}",
                    s.attempts,
                    e.lines().next().unwrap_or_default()
                ));
                (exec.observer)(Event::Retrying {
                    step: &step,
                    error: e,
                    delay,
                });
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
            _ => break,
        }
    }
    drop(log);
    s.log_object = store_log(&exec.project, &log_path).await?;
    Ok(result)
}

/// One try of a step.
async fn once(
    exec: &Exec,
    step: &str,
    r: &Resolved,
    log: &mut Log,
) -> std::result::Result<steps::Produced, String> {
    match r.kind.as_str() {
        "run" => run_command(exec, step, r, log).await,
        "approve" => approve(exec, step, r, log).await,
        kind => steps::builtin(&exec.project, kind, &r.args, log).await,
    }
}

/// Kills a command's whole process group when dropped (a timeout, a
/// cancelled run), so no grandchild outlives its step.
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            // SAFETY: killpg only sends a signal; a stale group id fails
            // with ESRCH, which is ignored.
            #[allow(unsafe_code)]
            unsafe {
                libc::killpg(pid, libc::SIGKILL);
            }
        }
    }
}

async fn run_command(
    exec: &Exec,
    step: &str,
    r: &Resolved,
    log: &mut Log,
) -> std::result::Result<steps::Produced, String> {
    let command = r.run.as_deref().unwrap_or_default();
    let outputs_file = exec.logs.join(format!("{step}.outputs"));
    let _ = std::fs::remove_file(&outputs_file);
    let cwd = exec
        .project
        .root
        .clone()
        .unwrap_or_else(|| PathBuf::from("."));
    let out = log
        .handle()
        .map_err(|e| format!("cannot write the log: {e}"))?;
    let err = log
        .handle()
        .map_err(|e| format!("cannot write the log: {e}"))?;
    let mut cmd = tokio::process::Command::new("sh");
    cmd.arg("-c")
        .arg(command)
        .current_dir(&cwd)
        .envs(&r.env)
        .env("KILN_RUN_ID", &exec.run_id)
        .env("KILN_STEP", step)
        .env("KILN_OUTPUTS", &outputs_file)
        .stdin(std::process::Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    #[cfg(target_os = "linux")]
    // SAFETY: prctl is async-signal-safe; it asks the kernel to kill the
    // shell if this process dies (a worker killed with SIGKILL must not
    // leave its command running and writing).
    #[allow(unsafe_code)]
    unsafe {
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            Ok(())
        });
    }
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start `sh -c {command}`: {e}"))?;
    let mut guard = GroupGuard(child.id().map(|p| p as i32));
    let status = child
        .wait()
        .await
        .map_err(|e| format!("waiting for `{command}`: {e}"))?;
    guard.0 = None;
    if !status.success() {
        let tail = tail_of(&exec.logs.join(format!("{step}.log")), 5);
        return Err(format!(
            "`{command}` exited with {}{}",
            match status.code() {
                Some(c) => format!("status {c}"),
                None => "a signal".into(),
            },
            if tail.is_empty() {
                String::new()
            } else {
                format!("; its last lines:\n{tail}")
            }
        ));
    }
    let mut p = steps::Produced::default();
    if let Ok(text) = std::fs::read_to_string(&outputs_file) {
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            let Some((k, v)) = line.split_once('=') else {
                return Err(format!("$KILN_OUTPUTS line `{line}` is not NAME=VALUE"));
            };
            p.outputs.insert(k.trim().to_string(), json!(v.trim()));
        }
    }
    let mut files = Map::new();
    for o in &r.outputs {
        let path = steps::project_path(&exec.project, o);
        if !path.is_file() {
            return Err(format!("it declares output `{o}`, but wrote no file there"));
        }
        let (hash, _, _) = exec
            .project
            .objects
            .put_file(&path, &NoProgress)
            .await
            .map_err(|e| format!("storing output `{o}`: {e}"))?;
        files.insert(o.clone(), json!(hash.to_hex()));
    }
    if !files.is_empty() {
        p.outputs.insert("files".into(), Value::Object(files));
    }
    Ok(p)
}

/// Waits for `kiln approve` (or a rejection).
async fn approve(
    exec: &Exec,
    step: &str,
    r: &Resolved,
    log: &mut Log,
) -> std::result::Result<steps::Produced, String> {
    if let Some(Value::String(m)) = r.args.get("message") {
        log.line(m);
    }
    log.line(format!(
        "waiting: kiln approve {} {step} (or --reject)",
        &exec.run_id
    ));
    (exec.observer)(Event::Waiting { step });
    loop {
        match exec.project.meta.step_decision(&exec.run_id, step).await {
            Ok(Some((d, by))) if d == "approved" => {
                log.line(format!("approved by {by}"));
                let mut p = steps::Produced::default();
                p.outputs.insert("by".into(), json!(by));
                return Ok(p);
            }
            Ok(Some((_, by))) => return Err(format!("rejected by {by}")),
            Ok(None) => tokio::time::sleep(Duration::from_millis(250)).await,
            Err(e) => return Err(e.to_string()),
        }
    }
}

/// Puts a cached `run:` step's files back where they belong, when missing
/// or changed.
async fn restore_outputs(
    project: &Project,
    outputs: Option<&Value>,
) -> std::result::Result<(), String> {
    let Some(files) = outputs
        .and_then(|o| o.get("files"))
        .and_then(Value::as_object)
    else {
        return Ok(());
    };
    for (rel, hash) in files {
        let hash = hash.as_str().unwrap_or_default();
        let path = steps::project_path(project, rel);
        if path.is_file() && steps::content_hash(project, &path).is_ok_and(|h| h == hash) {
            continue;
        }
        let id = kiln_core::ContentHash::parse(hash).map_err(|e| e.to_string())?;
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("restoring `{rel}`: {e}"))?;
        }
        project
            .objects
            .get_to_file(&id, &path, &NoProgress)
            .await
            .map_err(|e| format!("restoring `{rel}`: {e}"))?;
    }
    Ok(())
}

/// Stores a step's log as an object (an empty log stores nothing).
async fn store_log(project: &Project, path: &Path) -> Result<Option<String>> {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => {
            let (hash, _, _) = project.objects.put_file(path, &NoProgress).await?;
            Ok(Some(hash.to_hex()))
        }
        _ => Ok(None),
    }
}

fn tail_of(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..]
        .iter()
        .map(|l| format!("  {l}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// `1.2s`, `3m04s`.
pub fn human(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1}s")
    } else {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    }
}

/// What `--dry-run` shows for one step.
#[derive(Clone, Debug, Serialize)]
pub struct Planned {
    pub step: String,
    pub kind: String,
    pub needs: Vec<String>,
    /// The command, or the built-in's arguments, as far as they are known
    /// before running.
    pub does: String,
    /// `cached` (its key matches an earlier success), `run`, or `run` after
    /// a step that runs.
    pub will: String,
}

/// The plan `kiln run --dry-run` prints: the steps in order, and which
/// would be reused from the cache. Nothing is recorded or run.
pub async fn plan(project: &Project, name: &str, opts: &RunOptions) -> Result<Vec<Planned>> {
    let config = pipeline(project, name)?;
    let params = resolve_params(name, config, &opts.params)?;
    let deps = config.dependencies();
    let mut known: BTreeMap<String, Value> = BTreeMap::new();
    let mut out = Vec::new();
    for step in config.order().expect("validated") {
        let cfg = &config.steps[step].value;
        let needs: Vec<String> = deps[step].iter().map(|s| s.to_string()).collect();
        let pending: Vec<&String> = needs.iter().filter(|n| !known.contains_key(*n)).collect();
        let upstream: BTreeMap<String, Value> = needs
            .iter()
            .filter_map(|n| known.get(n).map(|v| (n.clone(), v.clone())))
            .collect();
        let shown = |r: &Resolved| match &r.run {
            Some(c) => c.clone(),
            None => Value::Object(r.args.clone()).to_string(),
        };
        let (does, will) = if !pending.is_empty() {
            let does = match &cfg.run {
                Some(c) => c.clone(),
                None => serde_json::to_string(&cfg.args).unwrap_or_default(),
            };
            (does, format!("run after `{}`", pending[0]))
        } else {
            match resolve(cfg, &params, &upstream, "(new run)") {
                Err(e) => (String::new(), format!("fail: {e}")),
                Ok(r) => {
                    let does = shown(&r);
                    let cached = if cfg.cached() && !opts.force {
                        let mut files = Map::new();
                        for o in upstream.values() {
                            if let Some(f) = o.get("files").and_then(Value::as_object) {
                                files.extend(f.clone());
                            }
                        }
                        match reads(project, &r, &files).await {
                            Ok(read) => {
                                project
                                    .meta
                                    .cached_step(&cache_key(step, &r, &read, &upstream))
                                    .await?
                            }
                            Err(e) => {
                                out.push(Planned {
                                    step: step.to_string(),
                                    kind: r.kind.clone(),
                                    needs,
                                    does,
                                    will: format!("fail: {e}"),
                                });
                                continue;
                            }
                        }
                    } else {
                        None
                    };
                    match cached {
                        Some(prev) => {
                            known.insert(step.to_string(), prev.outputs.unwrap_or(Value::Null));
                            (
                                does,
                                format!(
                                    "cached (run {})",
                                    &prev.cached_from.unwrap_or(prev.run_id)[..12]
                                ),
                            )
                        }
                        None => (does, "run".to_string()),
                    }
                }
            }
        };
        out.push(Planned {
            step: step.to_string(),
            kind: cfg.kind_name().to_string(),
            needs,
            does,
            will,
        });
    }
    Ok(out)
}

/// A run as JUnit test cases, one per step.
pub fn junit_cases(outcome: &Outcome) -> Vec<junit::Case> {
    outcome
        .steps
        .iter()
        .map(|s| junit::Case {
            name: s.step.clone(),
            classname: format!("kiln.pipeline.{}", outcome.run.pipeline),
            seconds: match (s.started_at, s.finished_at) {
                (Some(a), Some(b)) => (b - a) as f64 / 1e3,
                _ => 0.0,
            },
            outcome: match s.status.as_str() {
                "succeeded" | "cached" => junit::CaseOutcome::Passed,
                "failed" => junit::CaseOutcome::Failed {
                    message: s
                        .error
                        .as_deref()
                        .unwrap_or("failed")
                        .lines()
                        .next()
                        .unwrap_or_default()
                        .to_string(),
                    detail: s.error.clone().unwrap_or_default(),
                },
                _ => junit::CaseOutcome::Skipped {
                    message: s.error.clone().unwrap_or_else(|| s.status.clone()),
                },
            },
        })
        .collect()
}
