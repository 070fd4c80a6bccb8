//! Monitoring in a project: the reference profile stored with every trained
//! model, and monitors (kiln.yaml `monitors:`) over a deployment's logged
//! predictions.
//!
//! A monitor cuts the prediction log into tumbling windows (by rows or by
//! time), in the log's order: segments as they were recorded, rows as they
//! were written. Each window stores the pieces of segments it took (object,
//! first row, rows), so the rows taken are known exactly: a run takes only
//! rows no window took, a segment that lands late (another replica, a slow
//! commit) is taken by the next window, and no row is counted twice or
//! skipped. A time window closes once it ended more than `settle` ago
//! (default 90 s, longer than a server's `--log-flush`); rows that land
//! after that count in a later window.
//!
//! Each window gets metrics: drift of every input column and of the
//! prediction against the reference profile (training–serving skew),
//! outlier inputs (isolation forest), latency percentiles and throughput;
//! label metrics (accuracy, AUC, calibration error; MAE, RMSE) from the
//! feedback joined by request id, final once `label_delay` has passed since
//! the window ended; and the model server's error rate, CPU and memory from
//! its sampled counters. Rules over those metrics fire and resolve alerts
//! (one per rule at a time), which are sent to webhooks as CloudEvents and
//! can record a retraining trigger for the pipeline runner.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::cast::AsArray;
use arrow_array::types::{Float64Type, UInt32Type};
use arrow_array::{Array, RecordBatch};
use kiln_ml::Predictions;
use kiln_ml::model::Model;
use kiln_monitor::anomaly;
use kiln_monitor::drift::{self, ColumnDrift};
use kiln_monitor::iforest::{ForestParams, IsolationForest};
use kiln_monitor::profile::{self, ColumnProfile, Kind, Profile, Values};
use kiln_store::{AlertChange, MonitorWindow, PipelineTrigger, PredictionSegment};
use serde_json::{Map, Value, json};

use crate::config::{MonitorConfig, RuleConfig, WindowSpec};
use crate::{Project, ProjectError, Result};

/// Rows a window has by default.
pub const DEFAULT_WINDOW_ROWS: u64 = 1000;
/// A time window closes this long after its end by default: longer than a
/// model server holds rows before writing them (`--log-flush`, 60 s).
pub const DEFAULT_SETTLE: Duration = Duration::from_secs(90);
/// Rows of the training table the prediction profile and the outlier
/// threshold are computed on, at most.
const PROFILE_SAMPLE_ROWS: usize = 100_000;
/// Labelled rows a window needs before its label metrics (accuracy, AUC,
/// errors) are computed.
pub const MIN_LABELS: usize = 30;
/// Metrics computed on labels: evaluated only once a window is final.
const LABEL_METRICS: &[&str] = &[
    "labels",
    "label.coverage",
    "accuracy",
    "error_rate",
    "auc",
    "log_loss",
    "calibration_error",
    "mae",
    "rmse",
];

/// The metrics a window can have, for `kiln monitor metrics` and errors.
pub const METRICS: &[(&str, &str)] = &[
    ("rows", "rows in the window"),
    ("throughput", "rows per second over the window's span"),
    (
        "drift.share",
        "share of input columns drifted from the reference",
    ),
    ("drift.count", "input columns drifted"),
    ("drift.COLUMN", "1 when COLUMN drifted, else 0"),
    ("psi.COLUMN", "population stability index of COLUMN"),
    ("psi.max", "the largest PSI of any input column"),
    (
        "prediction.drift",
        "1 when the predictions' distribution drifted, else 0",
    ),
    ("prediction.psi", "PSI of the predictions"),
    ("prediction.mean", "mean prediction (regression)"),
    (
        "outliers.share",
        "share of rows the isolation forest calls outliers",
    ),
    ("latency.p50", "median latency, ms"),
    ("latency.p95", "95th percentile latency, ms"),
    ("latency.p99", "99th percentile latency, ms"),
    (
        "labels",
        "rows with a label fed back (label metrics need at least 30)",
    ),
    ("label.coverage", "share of rows with a label"),
    ("accuracy", "share of labelled rows predicted right"),
    ("error_rate", "1 − accuracy"),
    ("auc", "ROC AUC (binary)"),
    ("log_loss", "log loss (binary)"),
    (
        "calibration_error",
        "expected calibration error, 10 bins (binary)",
    ),
    ("mae", "mean absolute error (regression)"),
    ("rmse", "root mean squared error (regression)"),
    (
        "errors.rate",
        "share of requests answered with an error (server counters)",
    ),
    ("requests", "requests the server answered"),
    ("cpu.cores", "CPU cores the model server used on average"),
    (
        "memory.mb",
        "the model server's resident memory, MB (largest)",
    ),
];

/// Whether rules can use `metric`: one of [`METRICS`], or a column's
/// `drift.COLUMN` / `psi.COLUMN`.
pub fn known_metric(metric: &str) -> bool {
    METRICS.iter().any(|(m, _)| *m == metric)
        || ["drift.", "psi."]
            .iter()
            .any(|p| metric.strip_prefix(p).is_some_and(|c| !c.is_empty()))
}

/// The reference profile of a model trained on `batches`: every input
/// column (numbers as 1,000 quantiles, categories by count), the prediction
/// on up to 100,000 of those rows, and an isolation forest over the numeric
/// inputs.
pub fn training_profile(model: &Model, batches: &[RecordBatch], source: &str) -> Result<Profile> {
    let Some(first) = batches.first() else {
        return Err(ProjectError::WrongKind("no rows to profile".into()));
    };
    let schema = first.schema();
    let mut columns = Vec::new();
    let mut numeric: Vec<(String, Vec<f64>)> = Vec::new();
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    let stride = rows.div_ceil(PROFILE_SAMPLE_ROWS).max(1);
    for input in model.inputs() {
        let Ok(index) = schema.index_of(&input.name) else {
            continue;
        };
        let Some(kind) = Kind::of(schema.field(index).data_type()) else {
            continue;
        };
        let mut v = Values::new(kind);
        for b in batches {
            v.push(b.column(index).as_ref())
                .map_err(|e| ProjectError::WrongKind(format!("profiling `{}`: {e}", input.name)))?;
        }
        if kind == Kind::Numeric {
            numeric.push((input.name.clone(), sampled_f64(batches, index, stride)));
        }
        columns.push(ColumnProfile::from_values(
            &input.name,
            v,
            Some(profile::POINTS),
        ));
    }
    // The prediction's distribution on the rows the model held out (what it
    // predicts on data it did not learn from, as in serving); without a
    // test set, on an evenly spread sample of the rows.
    let mut picked = match kiln_ml::evaluate::test_rows(model, batches) {
        Ok(Some(held_out)) if !held_out.is_empty() => held_out,
        _ => (0..rows).step_by(stride).collect(),
    };
    picked.sort_unstable();
    let prediction = model
        .predict(&take_table_rows(batches, &picked)?)
        .ok()
        .map(|scored| prediction_profile(model, &scored.predictions));
    let outliers = if numeric.is_empty() {
        None
    } else {
        let names: Vec<String> = numeric.iter().map(|(n, _)| n.clone()).collect();
        let cols: Vec<&[f64]> = numeric.iter().map(|(_, v)| v.as_slice()).collect();
        IsolationForest::fit(&names, &cols, &ForestParams::default()).ok()
    };
    Ok(Profile {
        format: 1,
        rows: rows as u64,
        source: source.to_string(),
        columns,
        prediction,
        outliers,
    })
}

/// The rows `sorted` (row numbers across all batches, ascending) of a table.
pub(crate) fn take_table_rows(
    batches: &[RecordBatch],
    sorted: &[usize],
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    let (mut start, mut k) = (0usize, 0usize);
    for b in batches {
        let end = start + b.num_rows();
        let mut idx = Vec::new();
        while k < sorted.len() && sorted[k] < end {
            idx.push((sorted[k] - start) as u32);
            k += 1;
        }
        if !idx.is_empty() {
            out.push(arrow_select_take(b, &arrow_array::UInt32Array::from(idx))?);
        }
        start = end;
    }
    Ok(out)
}

fn arrow_select_take(b: &RecordBatch, idx: &arrow_array::UInt32Array) -> Result<RecordBatch> {
    let cols = b
        .columns()
        .iter()
        .map(|c| arrow_select::take::take(c.as_ref(), idx, None))
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ProjectError::WrongKind(format!("sampling rows to profile: {e}")))?;
    RecordBatch::try_new(b.schema(), cols)
        .map_err(|e| ProjectError::WrongKind(format!("sampling rows to profile: {e}")))
}

/// Every `stride`-th value of a numeric column as f64 (NaN for missing).
fn sampled_f64(batches: &[RecordBatch], index: usize, stride: usize) -> Vec<f64> {
    let mut out = Vec::new();
    let mut i = 0usize;
    for b in batches {
        let Ok(c) = arrow_cast::cast(b.column(index), &arrow_schema::DataType::Float64) else {
            continue;
        };
        let f = c.as_primitive::<Float64Type>();
        for r in 0..f.len() {
            if i.is_multiple_of(stride) {
                out.push(if f.is_null(r) { f64::NAN } else { f.value(r) });
            }
            i += 1;
        }
    }
    out
}

/// The distribution of predictions as the prediction log records them: the
/// class label, or the value.
fn prediction_profile(model: &Model, p: &Predictions) -> ColumnProfile {
    match p {
        Predictions::Regression(v) => ColumnProfile::from_values(
            "prediction",
            Values::Numeric {
                values: v.iter().copied().filter(|x| !x.is_nan()).collect(),
                nulls: v.iter().filter(|x| x.is_nan()).count() as u64,
            },
            Some(profile::POINTS),
        ),
        _ => {
            let mut counts: HashMap<String, u64> = HashMap::new();
            for c in p.classes().unwrap_or_default() {
                let label = model
                    .target
                    .classes
                    .get(c as usize)
                    .cloned()
                    .unwrap_or_default();
                *counts.entry(label).or_default() += 1;
            }
            ColumnProfile::from_values(
                "prediction",
                Values::Categorical { counts, nulls: 0 },
                Some(profile::MAX_CATEGORIES),
            )
        }
    }
}

/// Rows of one segment of the prediction log that a window took: stored
/// with the window, so its rows can be read again exactly (for labels that
/// come later) and the rows already taken are known.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Piece {
    /// The segment's object.
    pub object: String,
    /// The first row taken.
    pub offset: usize,
    /// Rows taken.
    pub len: usize,
}

/// One segment of the log, read.
struct Segment {
    meta: PredictionSegment,
    batch: RecordBatch,
    /// Each row's `time` (µs), read once.
    times: Vec<i64>,
}

impl Segment {
    fn new(meta: PredictionSegment, batch: RecordBatch) -> Segment {
        let times = batch
            .column_by_name("time")
            .and_then(|c| {
                c.as_primitive_opt::<arrow_array::types::TimestampMicrosecondType>()
                    .map(|t| t.values().to_vec())
            })
            .unwrap_or_else(|| vec![0; batch.num_rows()]);
        Segment { meta, batch, times }
    }
}

/// A window's rows: `(segment index, offset, rows)` pieces, in log order.
struct WindowRows {
    pieces: Vec<(usize, usize, usize)>,
    rows: usize,
}

/// What one run of a monitor did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct MonitorRun {
    /// The monitor.
    pub monitor: String,
    /// The deployment it watches.
    pub deployment: String,
    /// Windows closed in this run.
    pub new_windows: Vec<MonitorWindow>,
    /// Earlier windows whose label metrics were brought up to date.
    pub updated_windows: usize,
    /// Alerts that fired in this run.
    pub fired: Vec<kiln_store::Alert>,
    /// Alerts that resolved in this run.
    pub resolved: Vec<kiln_store::Alert>,
    /// Webhook deliveries: URL, alert id, and whether it was delivered.
    pub deliveries: Vec<(String, String, bool)>,
    /// Retraining triggers recorded.
    pub triggers: Vec<PipelineTrigger>,
}

impl Project {
    /// The reference profile stored with a served model version (`model` and
    /// `version` as the prediction log names them), if it has one.
    pub async fn served_profile(&self, model: &str, version: &str) -> Result<Option<Profile>> {
        match self.served_run(model, version).await {
            Some(run) => self.run_profile(&run).await,
            None => Ok(None),
        }
    }

    /// The kiln run behind a served model version (`model` and `version`
    /// as the prediction log and serving name them), if it came from one.
    pub async fn served_run(&self, model: &str, version: &str) -> Option<kiln_store::RunRecord> {
        // A run served directly is `run-…` with the run id as its version
        // (which may be all digits), so that comes first.
        let run_id = if model.starts_with("run-") {
            Some(version.to_string())
        } else if let Ok(v) = version.parse::<i64>() {
            self.meta.model_version(model, v).await.ok()?.run_id
        } else {
            None
        }?;
        self.meta.run(&run_id).await.ok()
    }

    /// The reference profile a kiln run stored, if any.
    pub async fn run_profile(&self, run: &kiln_store::RunRecord) -> Result<Option<Profile>> {
        let Some(hex) = run.artifacts.get("profile").and_then(Value::as_str) else {
            return Ok(None);
        };
        let hash = kiln_core::ContentHash::parse(hex)
            .map_err(|e| ProjectError::WrongKind(format!("run {}: profile: {e}", run.id)))?;
        let bytes = self.objects.get_bytes(&hash).await?;
        let p: Profile = serde_json::from_slice(&bytes).map_err(|e| {
            ProjectError::WrongKind(format!("run {}: unreadable profile: {e}", run.id))
        })?;
        Ok(Some(p))
    }

    /// Runs every monitor kiln.yaml declares, once.
    pub async fn run_monitors(&self) -> Result<Vec<MonitorRun>> {
        let monitors = self.config.monitors.clone();
        let mut out = Vec::new();
        for (name, cfg) in &monitors {
            out.push(self.run_monitor(name, cfg).await?);
        }
        Ok(out)
    }

    /// Runs one monitor: closes the windows the log now completes, brings
    /// label metrics of unfinished windows up to date, evaluates the rules
    /// and acts on alerts.
    pub async fn run_monitor(&self, name: &str, cfg: &MonitorConfig) -> Result<MonitorRun> {
        let now = kiln_store::now_ms();
        let label_delay = duration(cfg.label_delay.as_deref())?.as_millis() as i64;
        let alpha = cfg.alpha.unwrap_or(0.05);
        let method = match &cfg.drift {
            Some(m) => drift::Method::parse(m).map_err(ProjectError::WrongKind)?,
            None => drift::Method::Test,
        };
        let settle = match &cfg.settle {
            Some(d) => duration(Some(d))?,
            None => DEFAULT_SETTLE,
        };
        let existing = self.meta.monitor_windows(name, 0).await?;
        // The ledger: rows of each segment that windows have taken (always a
        // prefix of the segment).
        let mut taken: HashMap<String, usize> = HashMap::new();
        let mut open: Vec<(usize, Vec<Piece>)> = Vec::new();
        for (k, w) in existing.iter().enumerate() {
            let pieces = pieces_of(w)?;
            for p in &pieces {
                let t = taken.entry(p.object.clone()).or_default();
                *t = (*t).max(p.offset + p.len);
            }
            if !w.r#final {
                open.push((k, pieces));
            }
        }
        // Segments with rows no window took (in the order they were
        // recorded; one that landed late is simply next), and those of
        // windows whose labels may still change.
        let again: std::collections::HashSet<&str> = open
            .iter()
            .flat_map(|(_, ps)| ps.iter().map(|p| p.object.as_str()))
            .collect();
        let segments = self
            .read_log(&cfg.deployment, |s| {
                taken.get(&s.object).copied().unwrap_or(0) < s.rows as usize
                    || again.contains(s.object.as_str())
            })
            .await?;
        let index: HashMap<&str, usize> = segments
            .iter()
            .enumerate()
            .map(|(i, s)| (s.meta.object.as_str(), i))
            .collect();
        let reference = match &cfg.reference {
            Some(source) => Some(self.table_profile(source).await?),
            None => None,
        };
        let mut profiles: HashMap<(String, String), Option<Arc<Profile>>> = HashMap::new();
        let labels = self.labels(&cfg.deployment).await?;
        let mut ctx = WindowContext {
            project: self,
            segments: &segments,
            reference: reference.map(Arc::new),
            profiles: &mut profiles,
            labels: &labels,
            alpha,
            method,
            deployment: &cfg.deployment,
        };

        // Earlier windows whose labels may have arrived since.
        let mut updated = Vec::new();
        for (k, pieces) in &open {
            let w = &existing[*k];
            let Some(rows) = pieces
                .iter()
                .map(|p| index.get(p.object.as_str()).map(|&i| (i, p.offset, p.len)))
                .collect::<Option<Vec<_>>>()
                .map(|pieces| WindowRows {
                    rows: pieces.iter().map(|p| p.2).sum(),
                    pieces,
                })
            else {
                continue;
            };
            let mut metrics = w.metrics.as_object().cloned().unwrap_or_default();
            let label = ctx.label_metrics(&rows).await;
            metrics.retain(|k, _| !LABEL_METRICS.contains(&k.as_str()));
            metrics.extend(label);
            let mut w = w.clone();
            w.labels = metrics.get("labels").and_then(Value::as_i64).unwrap_or(0);
            w.metrics = Value::Object(metrics);
            w.r#final = now >= w.end_time + label_delay;
            updated.push(w);
        }

        // New windows, from the rows no window took.
        let mut next: Vec<usize> = segments
            .iter()
            .map(|s| {
                taken
                    .get(&s.meta.object)
                    .copied()
                    .unwrap_or(0)
                    .min(s.batch.num_rows())
            })
            .collect();
        let mut new = Vec::new();
        let mut seq = existing.last().map_or(0, |w| w.seq + 1);
        loop {
            let rows = match &cfg.window {
                None => take_rows(&segments, &mut next, DEFAULT_WINDOW_ROWS as usize),
                Some(WindowSpec::Rows(n)) => take_rows(&segments, &mut next, *n as usize),
                Some(WindowSpec::Time(t)) => {
                    let span = duration(Some(t))?.as_micros() as i64;
                    take_time_window(&segments, &mut next, span, now, settle)
                }
            };
            let Some(rows) = rows else { break };
            let w = ctx.window(name, seq, &rows, now, label_delay).await?;
            seq += 1;
            new.push(w);
        }

        // Rules, window by window, then the windows themselves: a run that
        // dies in between evaluates them again, and an alert already firing
        // is not fired twice.
        let mut all: Vec<MonitorWindow> = existing.clone();
        for w in updated.iter().chain(&new) {
            match all.iter_mut().find(|x| x.seq == w.seq) {
                Some(x) => *x = w.clone(),
                None => all.push(w.clone()),
            }
        }
        let mut run = MonitorRun {
            monitor: name.to_string(),
            deployment: cfg.deployment.clone(),
            new_windows: Vec::new(),
            updated_windows: updated.len(),
            fired: Vec::new(),
            resolved: Vec::new(),
            deliveries: Vec::new(),
            triggers: Vec::new(),
        };
        let was_final: HashMap<i64, bool> = existing.iter().map(|w| (w.seq, w.r#final)).collect();
        for w in updated.iter().chain(&new) {
            for rule in &cfg.rules {
                let is_label = LABEL_METRICS.contains(&rule.metric.as_str());
                // Label rules speak once a window is final; others when it closes.
                let due = if is_label {
                    w.r#final && !was_final.get(&w.seq).copied().unwrap_or(false)
                } else {
                    !was_final.contains_key(&w.seq)
                };
                if !due {
                    continue;
                }
                let Some(verdict) = evaluate(rule, w, &all, is_label) else {
                    continue;
                };
                let detail = json!({
                    "metric": rule.metric,
                    "value": verdict.value,
                    "condition": verdict.condition,
                    "message": verdict.message,
                    "deployment": cfg.deployment,
                    "window": {"seq": w.seq, "start": w.start_time, "end": w.end_time, "rows": w.rows},
                });
                let change = self
                    .meta
                    .transition_alert(
                        name,
                        rule.name(),
                        rule.severity.as_deref().unwrap_or("warning"),
                        verdict.breached,
                        w.seq,
                        &detail,
                    )
                    .await?;
                match change {
                    AlertChange::Fired(a) => {
                        self.act(cfg, &a, "firing", &mut run).await?;
                        // The rule's `retrain:` and every pipeline with a
                        // trigger on this monitor's alerts.
                        let mut pipelines: Vec<&String> = rule.retrain.iter().collect();
                        for (pname, pc) in &self.config.pipelines {
                            if pc
                                .triggers
                                .iter()
                                .any(|t| t.value.alert.as_deref() == Some(name))
                                && !pipelines.contains(&pname)
                            {
                                pipelines.push(pname);
                            }
                        }
                        for p in pipelines {
                            let t = self
                                .meta
                                .add_pipeline_trigger(
                                    p,
                                    &format!("alert:{}", a.id),
                                    &verdict.message,
                                )
                                .await?;
                            self.meta
                                .add_alert_event(&a.id, "retrain", &t.id, &json!({"pipeline": p}))
                                .await?;
                            run.triggers.push(t);
                        }
                        run.fired.push(a);
                    }
                    AlertChange::Resolved(a) => {
                        self.act(cfg, &a, "resolved", &mut run).await?;
                        run.resolved.push(a);
                    }
                    AlertChange::Updated(_) | AlertChange::Quiet => {}
                }
            }
        }
        let mut store: Vec<MonitorWindow> = updated;
        store.extend(new.iter().cloned());
        self.meta.put_monitor_windows(&store).await?;
        run.new_windows = new;
        Ok(run)
    }

    /// Sends an alert to the monitor's webhooks, recording each delivery.
    async fn act(
        &self,
        cfg: &MonitorConfig,
        alert: &kiln_store::Alert,
        state: &str,
        run: &mut MonitorRun,
    ) -> Result<()> {
        if cfg.webhooks.is_empty() {
            return Ok(());
        }
        let event = cloud_event(self.meta.project(), alert, state);
        for url in &cfg.webhooks {
            let outcome = deliver(url, &event).await;
            let ok = outcome.is_ok();
            let detail = match &outcome {
                Ok(status) => json!({"url": url, "status": status}),
                Err(e) => json!({"url": url, "error": e}),
            };
            self.meta
                .add_alert_event(
                    &alert.id,
                    "webhook",
                    if ok { "delivered" } else { "failed" },
                    &detail,
                )
                .await?;
            if let Err(e) = outcome {
                tracing::warn!("webhook {url} for alert {} failed: {e}", alert.id);
            }
            run.deliveries.push((url.clone(), alert.id.clone(), ok));
        }
        Ok(())
    }

    /// The reference profile of a table (a file or `NAME@VERSION`).
    async fn table_profile(&self, source: &str) -> Result<Profile> {
        let (path, label, _guard) = self.table_file(source).await?;
        let table = kiln_monitor::table::Table::open(&path, &label)
            .map_err(|e| ProjectError::WrongKind(e.to_string()))?;
        let columns = tokio::task::block_in_place(|| table.profile(Some(profile::POINTS)))
            .map_err(|e| ProjectError::WrongKind(e.to_string()))?;
        Ok(Profile {
            format: 1,
            rows: table.rows(),
            source: label,
            columns,
            prediction: None,
            outliers: None,
        })
    }

    /// The deployment's answered segments that `wanted` picks, read, in the
    /// log's order.
    async fn read_log(
        &self,
        deployment: &str,
        wanted: impl Fn(&PredictionSegment) -> bool,
    ) -> Result<Vec<Segment>> {
        let list = self.meta.prediction_log(deployment, (i64::MIN, "")).await?;
        let mut out = Vec::new();
        for (meta, _) in list.into_iter().filter(|(m, _)| wanted(m)) {
            let hash = kiln_core::ContentHash::parse(&meta.object)
                .map_err(|e| ProjectError::WrongKind(format!("prediction segment: {e}")))?;
            let bytes = bytes::Bytes::from(self.objects.get_bytes(&hash).await?);
            let batches = read_parquet(bytes)?;
            let batch = match batches.len() {
                0 => continue,
                1 => batches.into_iter().next().expect("one batch"),
                _ => arrow_select::concat::concat_batches(&batches[0].schema(), &batches)
                    .map_err(|e| ProjectError::WrongKind(format!("prediction segment: {e}")))?,
            };
            out.push(Segment::new(meta, batch));
        }
        Ok(out)
    }

    /// Every label fed back for a deployment, by request id and row.
    async fn labels(&self, deployment: &str) -> Result<HashMap<(String, i64), Value>> {
        Ok(self
            .meta
            .feedback(deployment, i64::MAX)
            .await?
            .into_iter()
            .map(|f| ((f.request_id, f.row), f.label))
            .collect())
    }
}

fn read_parquet(bytes: bytes::Bytes) -> Result<Vec<RecordBatch>> {
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
        .and_then(|b| b.build())
        .map_err(|e| ProjectError::WrongKind(format!("prediction segment: {e}")))?;
    reader
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| ProjectError::WrongKind(format!("prediction segment: {e}")))
}

fn duration(s: Option<&str>) -> Result<Duration> {
    match s {
        None => Ok(Duration::ZERO),
        Some(s) => kiln_core::parse_duration(s).map_err(ProjectError::WrongKind),
    }
}

/// The pieces a stored window took.
fn pieces_of(w: &MonitorWindow) -> Result<Vec<Piece>> {
    serde_json::from_value(w.detail["pieces"].clone()).map_err(|e| {
        ProjectError::WrongKind(format!(
            "monitor `{}`, window {}: unreadable rows taken: {e}",
            w.monitor, w.seq
        ))
    })
}

/// The next `n` rows no window took, in log order (`next` holds each
/// segment's first untaken row and moves past what is taken), or `None`
/// (taking nothing) when fewer are there.
fn take_rows(segments: &[Segment], next: &mut [usize], n: usize) -> Option<WindowRows> {
    let available: usize = segments
        .iter()
        .zip(next.iter())
        .map(|(s, &o)| s.batch.num_rows() - o)
        .sum();
    if n == 0 || available < n {
        return None;
    }
    let mut pieces = Vec::new();
    let mut left = n;
    for (i, s) in segments.iter().enumerate() {
        let free = s.batch.num_rows() - next[i];
        if free == 0 {
            continue;
        }
        let take = left.min(free);
        pieces.push((i, next[i], take));
        next[i] += take;
        left -= take;
        if left == 0 {
            break;
        }
    }
    Some(WindowRows { pieces, rows: n })
}

/// The rows of the earliest untaken time window (windows aligned to
/// multiples of `span` µs), once the window ended more than `settle` ago, so
/// rows still in a model server's buffer have landed: from every segment,
/// its untaken rows before the window's end (a segment's rows are in time
/// order). `None` while the earliest window may still grow.
fn take_time_window(
    segments: &[Segment],
    next: &mut [usize],
    span: i64,
    now_ms: i64,
    settle: Duration,
) -> Option<WindowRows> {
    let time = |s: &Segment, r: usize| s.times[r];
    let first = segments
        .iter()
        .zip(next.iter())
        .filter(|(s, o)| **o < s.batch.num_rows())
        .map(|(s, &o)| time(s, o))
        .min()?;
    let end = (first.div_euclid(span) + 1) * span;
    if now_ms.saturating_mul(1000) <= end + settle.as_micros() as i64 {
        return None;
    }
    let mut pieces = Vec::new();
    let mut rows = 0;
    for (i, s) in segments.iter().enumerate() {
        let from = next[i];
        let mut to = from;
        while to < s.batch.num_rows() && time(s, to) < end {
            to += 1;
        }
        if to > from {
            pieces.push((i, from, to - from));
            rows += to - from;
            next[i] = to;
        }
    }
    Some(WindowRows { pieces, rows })
}

struct WindowContext<'a> {
    project: &'a Project,
    segments: &'a [Segment],
    reference: Option<Arc<Profile>>,
    profiles: &'a mut HashMap<(String, String), Option<Arc<Profile>>>,
    labels: &'a HashMap<(String, i64), Value>,
    alpha: f64,
    method: drift::Method,
    deployment: &'a str,
}

impl WindowContext<'_> {
    /// The arrays of column `name` over a window's pieces.
    fn arrays(&self, rows: &WindowRows, name: &str) -> Vec<arrow_array::ArrayRef> {
        rows.pieces
            .iter()
            .filter_map(|&(i, off, len)| {
                self.segments[i]
                    .batch
                    .column_by_name(name)
                    .map(|c| c.slice(off, len))
            })
            .collect()
    }

    fn values(&self, rows: &WindowRows, name: &str, kind: Kind) -> Option<Values> {
        let arrays = self.arrays(rows, name);
        if arrays.is_empty() {
            return None;
        }
        let mut v = Values::new(kind);
        for a in &arrays {
            v.push(a.as_ref()).ok()?;
        }
        Some(v)
    }

    fn floats(&self, rows: &WindowRows, name: &str) -> Vec<f64> {
        let mut out = Vec::with_capacity(rows.rows);
        for a in self.arrays(rows, name) {
            match arrow_cast::cast(&a, &arrow_schema::DataType::Float64) {
                Ok(c) => {
                    let f = c.as_primitive::<Float64Type>();
                    out.extend(
                        (0..f.len()).map(|r| if f.is_null(r) { f64::NAN } else { f.value(r) }),
                    );
                }
                Err(_) => out.extend(std::iter::repeat_n(f64::NAN, a.len())),
            }
        }
        out
    }

    /// The profile rows are compared with: the monitor's `reference`, else
    /// the one stored with the model version that served most of them.
    async fn profile_for(&mut self, rows: &WindowRows) -> Result<Option<Arc<Profile>>> {
        if let Some(r) = &self.reference {
            return Ok(Some(r.clone()));
        }
        let mut counts: HashMap<(String, String), usize> = HashMap::new();
        for &(i, _, len) in &rows.pieces {
            let m = &self.segments[i].meta;
            *counts
                .entry((m.model.clone(), m.version.clone()))
                .or_default() += len;
        }
        let Some((key, _)) = counts
            .into_iter()
            .max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)))
        else {
            return Ok(None);
        };
        if let Some(p) = self.profiles.get(&key) {
            return Ok(p.clone());
        }
        // A profile that cannot be read leaves drift unmeasured; it must
        // not stop the monitor's other rules.
        let p = match self.project.served_profile(&key.0, &key.1).await {
            Ok(p) => p.map(Arc::new),
            Err(e) => {
                tracing::warn!("{}@{}: no reference profile: {e}", key.0, key.1);
                None
            }
        };
        self.profiles.insert(key, p.clone());
        Ok(p)
    }

    /// Computes a new window's metrics.
    async fn window(
        &mut self,
        monitor: &str,
        seq: i64,
        rows: &WindowRows,
        now: i64,
        label_delay: i64,
    ) -> Result<MonitorWindow> {
        let times = rows
            .pieces
            .iter()
            .flat_map(|&(i, off, len)| &self.segments[i].times[off..off + len]);
        let start_us = times.clone().copied().min().unwrap_or(0);
        let end_us = times.copied().max().unwrap_or(0);
        let mut m = Map::new();
        let mut detail = Map::new();
        m.insert("rows".into(), json!(rows.rows));
        let span_s = (end_us - start_us) as f64 / 1e6;
        if span_s > 0.0 {
            m.insert("throughput".into(), json!(rows.rows as f64 / span_s));
        }
        // Latency.
        let mut lat = self.floats(rows, "latency_ms");
        lat.retain(|x| !x.is_nan());
        lat.sort_unstable_by(f64::total_cmp);
        if !lat.is_empty() {
            for (k, q) in [
                ("latency.p50", 0.5),
                ("latency.p95", 0.95),
                ("latency.p99", 0.99),
            ] {
                m.insert(k.into(), json!(kiln_monitor::stats::quantile(&lat, q)));
            }
        }
        // Drift against the reference.
        let profile = self.profile_for(rows).await?;
        if let Some(profile) = &profile {
            let mut drifts: Vec<ColumnDrift> = Vec::new();
            let inputs: Vec<(&ColumnProfile, Values)> = profile
                .columns
                .iter()
                .filter_map(|c| {
                    self.values(rows, &format!("input.{}", c.name), c.kind())
                        .map(|v| (c, v))
                })
                .collect();
            let t = drift::threshold(self.alpha, inputs.len());
            for (c, v) in inputs {
                let cur = ColumnProfile::from_values(&c.name, v, None);
                let mut d = drift::compare(c, &cur, t);
                self.method.apply(&mut d);
                drifts.push(d);
            }
            if !drifts.is_empty() {
                let n = drifts.iter().filter(|d| d.drifted).count();
                m.insert("drift.count".into(), json!(n));
                m.insert("drift.share".into(), json!(n as f64 / drifts.len() as f64));
                let mut psi_max = 0.0f64;
                for d in &drifts {
                    m.insert(format!("drift.{}", d.column), json!(u8::from(d.drifted)));
                    m.insert(format!("psi.{}", d.column), json!(finite(d.psi)));
                    psi_max = psi_max.max(d.psi);
                }
                m.insert("psi.max".into(), json!(finite(psi_max)));
            }
            if let Some(pref) = &profile.prediction
                && let Some(v) = self.values(rows, "prediction", pref.kind())
            {
                let cur = ColumnProfile::from_values("prediction", v, None);
                if let profile::ColumnStats::Numeric { mean, .. } = &cur.stats {
                    m.insert("prediction.mean".into(), json!(mean));
                }
                let mut d = drift::compare(pref, &cur, self.alpha);
                self.method.apply(&mut d);
                m.insert("prediction.drift".into(), json!(u8::from(d.drifted)));
                m.insert("prediction.psi".into(), json!(finite(d.psi)));
                drifts.push(d);
            }
            if let Some(forest) = &profile.outliers {
                let cols: Vec<Vec<f64>> = forest
                    .columns()
                    .iter()
                    .map(|c| self.floats(rows, &format!("input.{c}")))
                    .collect();
                if cols.iter().all(|c| c.len() == rows.rows) {
                    let refs: Vec<&[f64]> = cols.iter().map(Vec::as_slice).collect();
                    let scores = forest.score_columns(&refs);
                    let out = scores.iter().filter(|s| **s > forest.threshold()).count();
                    m.insert(
                        "outliers.share".into(),
                        json!(out as f64 / rows.rows.max(1) as f64),
                    );
                }
            }
            detail.insert(
                "reference".into(),
                json!({"source": profile.source, "rows": profile.rows}),
            );
            detail.insert("columns".into(), drift_detail(&drifts));
        }
        // The server's counters over the window.
        let start_ms = start_us / 1000;
        let end_ms = end_us / 1000;
        m.extend(self.serving_metrics(start_ms, end_ms).await?);
        // Labels.
        m.extend(self.label_metrics(rows).await);
        let pieces: Vec<Piece> = rows
            .pieces
            .iter()
            .map(|&(i, offset, len)| Piece {
                object: self.segments[i].meta.object.clone(),
                offset,
                len,
            })
            .collect();
        let end_key = pieces.last().map_or(
            Value::Null,
            |p| json!({"object": p.object, "offset": p.offset + p.len}),
        );
        detail.insert(
            "pieces".into(),
            serde_json::to_value(&pieces).expect("serialises"),
        );
        Ok(MonitorWindow {
            monitor: monitor.to_string(),
            seq,
            deployment: self.deployment.to_string(),
            start_time: start_ms,
            end_time: end_ms,
            end_key,
            rows: rows.rows as i64,
            labels: m.get("labels").and_then(Value::as_i64).unwrap_or(0),
            r#final: now >= end_ms + label_delay,
            metrics: Value::Object(m),
            detail: Value::Object(detail),
        })
    }

    /// Error rate, CPU and memory from the server's samples in the window.
    async fn serving_metrics(&self, from: i64, to: i64) -> Result<Map<String, Value>> {
        // Samples come every 5 s: take those around the window too, so a
        // short window is bracketed by the one before and the one after.
        let margin = 10_000;
        let all = self
            .project
            .meta
            .serving_samples(self.deployment, from - margin, to + margin)
            .await?;
        let mut samples: Vec<&kiln_store::ServingSample> = Vec::new();
        let mut by: HashMap<&str, Vec<&kiln_store::ServingSample>> = HashMap::new();
        for s in &all {
            by.entry(&s.instance).or_default().push(s);
        }
        for list in by.values() {
            let before = list.iter().rposition(|s| s.at <= from).unwrap_or(0);
            let after = list
                .iter()
                .position(|s| s.at >= to)
                .unwrap_or(list.len() - 1);
            samples.extend(&list[before..=after.max(before)]);
        }
        let mut by_instance: HashMap<&str, Vec<&kiln_store::ServingSample>> = HashMap::new();
        for s in samples {
            by_instance.entry(&s.instance).or_default().push(s);
        }
        let (mut req, mut err, mut cpu, mut span) = (0i64, 0i64, 0i64, 0i64);
        let mut rss = 0i64;
        for list in by_instance.values() {
            rss = rss.max(list.iter().map(|s| s.rss_bytes).max().unwrap_or(0));
            if let (Some(a), Some(b)) = (list.first(), list.last())
                && b.at > a.at
            {
                req += b.requests - a.requests;
                err += b.errors - a.errors;
                cpu += b.cpu_ms - a.cpu_ms;
                span = span.max(b.at - a.at);
            }
        }
        let mut m = Map::new();
        if rss > 0 {
            m.insert("memory.mb".into(), json!(rss as f64 / 1e6));
        }
        if span > 0 {
            m.insert("requests".into(), json!(req));
            m.insert("cpu.cores".into(), json!(cpu as f64 / span as f64));
            if req > 0 {
                m.insert("errors.rate".into(), json!(err as f64 / req as f64));
            }
        }
        Ok(m)
    }

    /// Label metrics over the rows that have a label.
    async fn label_metrics(&self, rows: &WindowRows) -> Map<String, Value> {
        let mut m = Map::new();
        let mut labelled: Vec<(usize, usize, &Value)> = Vec::new();
        for &(i, off, len) in &rows.pieces {
            let b = &self.segments[i].batch;
            let (Some(ids), Some(rs)) = (b.column_by_name("request_id"), b.column_by_name("row"))
            else {
                continue;
            };
            let (Some(ids), Some(rs)) = (
                ids.as_string_opt::<i32>(),
                rs.as_primitive_opt::<UInt32Type>(),
            ) else {
                continue;
            };
            for r in off..off + len {
                if let Some(l) = self
                    .labels
                    .get(&(ids.value(r).to_string(), i64::from(rs.value(r))))
                {
                    labelled.push((i, r, l));
                }
            }
        }
        m.insert("labels".into(), json!(labelled.len()));
        m.insert(
            "label.coverage".into(),
            json!(labelled.len() as f64 / rows.rows.max(1) as f64),
        );
        // Accuracy on a handful of labels is noise, and alerting on it
        // would be too.
        if labelled.len() < MIN_LABELS {
            return m;
        }
        let first = &self.segments[labelled[0].0].batch;
        let regression = first
            .column_by_name("prediction")
            .is_some_and(|c| c.data_type() == &arrow_schema::DataType::Float64);
        if regression {
            let (mut y, mut p) = (Vec::new(), Vec::new());
            for &(i, r, l) in &labelled {
                let pred = self.segments[i]
                    .batch
                    .column_by_name("prediction")
                    .and_then(|c| Some(c.as_primitive_opt::<Float64Type>()?.value(r)));
                if let (Some(pred), Some(y_)) = (pred, label_number(l)) {
                    y.push(y_);
                    p.push(pred);
                }
            }
            if let Ok(v) = kiln_ml::metrics::mae(&y, &p) {
                m.insert("mae".into(), json!(v));
            }
            if let Ok(v) = kiln_ml::metrics::rmse(&y, &p) {
                m.insert("rmse".into(), json!(v));
            }
            return m;
        }
        // Classification: right or wrong; binary also AUC, log loss, calibration.
        // The positive (second) class's probability column of each segment.
        let positives: Vec<Option<(String, &arrow_array::Float64Array)>> = self
            .segments
            .iter()
            .map(|seg| {
                let schema = seg.batch.schema();
                let probs: Vec<(usize, String)> = schema
                    .fields()
                    .iter()
                    .enumerate()
                    .filter_map(|(ci, f)| Some((ci, f.name().strip_prefix("prob.")?.to_string())))
                    .collect();
                match probs.as_slice() {
                    [_, (ci, class)] => Some((
                        class.clone(),
                        seg.batch.column(*ci).as_primitive_opt::<Float64Type>()?,
                    )),
                    _ => None,
                }
            })
            .collect();
        let mut right = 0usize;
        let (mut y, mut prob) = (Vec::new(), Vec::new());
        for &(i, r, l) in &labelled {
            let b = &self.segments[i].batch;
            // A window may span an alias moved to a model of another task:
            // rows whose prediction is not a class are left out.
            let Some(pred) = b
                .column_by_name("prediction")
                .and_then(|c| c.as_string_opt::<i32>())
            else {
                continue;
            };
            let truth = label_text(l);
            if pred.value(r) == truth {
                right += 1;
            }
            if let Some((positive, p)) = &positives[i] {
                y.push(truth == *positive);
                prob.push(p.value(r));
            }
        }
        let acc = right as f64 / labelled.len() as f64;
        m.insert("accuracy".into(), json!(acc));
        m.insert("error_rate".into(), json!(1.0 - acc));
        if y.len() == labelled.len() && y.iter().any(|v| *v) && y.iter().any(|v| !*v) {
            if let Ok(v) = kiln_ml::metrics::roc_auc(&y, &prob) {
                m.insert("auc".into(), json!(v));
            }
            if let Ok(v) = kiln_ml::metrics::log_loss(&y, &prob) {
                m.insert("log_loss".into(), json!(v));
            }
            let bins = kiln_ml::metrics::calibration_table(&y, &prob, 10);
            let n = y.len() as f64;
            let ece: f64 = bins
                .iter()
                .map(|b| b.count as f64 / n * (b.mean_predicted - b.fraction_positive).abs())
                .sum();
            m.insert("calibration_error".into(), json!(ece));
        }
        m
    }
}

/// A label as the prediction log writes classes: text as is, numbers
/// without a trailing `.0`, booleans as `true`/`false`.
fn label_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        other => other.to_string(),
    }
}

fn label_number(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        Value::Bool(b) => Some(f64::from(u8::from(*b))),
        _ => None,
    }
}

fn finite(v: f64) -> Option<f64> {
    v.is_finite().then_some(v)
}

/// Per-column drift for reports: the statistics and both histograms.
fn drift_detail(drifts: &[ColumnDrift]) -> Value {
    Value::Array(
        drifts
            .iter()
            .map(|d| {
                json!({
                    "column": d.column,
                    "kind": d.kind,
                    "test": d.test,
                    "statistic": finite(d.statistic),
                    "p_value": d.p_value,
                    "drifted": d.drifted,
                    "psi": finite(d.psi),
                    "wasserstein": d.wasserstein.and_then(finite),
                    "jensen_shannon": d.jensen_shannon,
                    "new_categories": d.new_categories,
                    "histogram": {
                        "labels": d.histogram.labels,
                        "reference": d.histogram.reference,
                        "current": d.histogram.current,
                    },
                })
            })
            .collect(),
    )
}

/// A rule's verdict on a window.
struct Verdict {
    breached: bool,
    value: f64,
    condition: String,
    message: String,
}

/// Evaluates `rule` on window `w` (with the earlier windows of `all` for
/// `for` and anomalies); `None` when the window lacks the metric.
fn evaluate(
    rule: &RuleConfig,
    w: &MonitorWindow,
    all: &[MonitorWindow],
    is_label: bool,
) -> Option<Verdict> {
    let value = w.metrics.get(&rule.metric)?.as_f64()?;
    // The windows the rule is evaluated on, up to this one, in order.
    let series: Vec<(i64, f64)> = all
        .iter()
        .filter(|x| x.seq <= w.seq && (!is_label || x.r#final || x.seq == w.seq))
        .filter_map(|x| Some((x.seq, x.metrics.get(&rule.metric)?.as_f64()?)))
        .collect();
    let (breach, condition): (Box<dyn Fn(f64) -> bool>, String) = if rule.anomaly {
        let values: Vec<f64> = series.iter().map(|(_, v)| *v).collect();
        let params = anomaly::DetectorParams::default();
        let hit = anomaly::last_is_anomalous(&values, &params).is_some();
        (
            Box::new(move |_| hit),
            "an anomaly in its series".to_string(),
        )
    } else if let Some(a) = rule.above {
        (Box::new(move |v| v > a), format!("above {a}"))
    } else if let Some(b) = rule.below {
        (Box::new(move |v| v < b), format!("below {b}"))
    } else {
        return None;
    };
    let need = rule.for_windows.unwrap_or(1) as usize;
    let breached = if rule.anomaly {
        breach(value)
    } else {
        series.len() >= need
            && series[series.len() - need..]
                .iter()
                .all(|(_, v)| breach(*v))
    };
    let message = format!(
        "{} is {} ({}{}) in window {} of {} rows",
        rule.metric,
        fmt(value),
        condition,
        if need > 1 {
            format!(", {need} windows running")
        } else {
            String::new()
        },
        w.seq,
        w.rows
    );
    Some(Verdict {
        breached,
        value,
        condition,
        message,
    })
}

fn fmt(v: f64) -> String {
    if v.abs() >= 100.0 {
        format!("{v:.1}")
    } else {
        format!("{v:.4}")
    }
}

/// An alert as a CloudEvents 1.0 event (structured JSON).
pub fn cloud_event(project: &str, a: &kiln_store::Alert, state: &str) -> Value {
    json!({
        "specversion": "1.0",
        "id": uuid::Uuid::now_v7().to_string(),
        "source": format!("/kiln/{project}/monitors/{}", a.monitor),
        "type": format!("dev.kiln.alert.{state}"),
        "subject": a.rule,
        "time": kiln_core::now_rfc3339(),
        "datacontenttype": "application/json",
        "data": {
            "alert_id": a.id,
            "monitor": a.monitor,
            "rule": a.rule,
            "severity": a.severity,
            "state": a.state,
            "started_at": a.started_at,
            "resolved_at": a.resolved_at,
            "window": a.window_seq,
            "detail": a.detail,
        },
    })
}

/// POSTs an event, trying 3 times; the HTTP status, or why it failed.
async fn deliver(url: &str, event: &Value) -> std::result::Result<u16, String> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| e.to_string())?;
    let body = event.to_string();
    let mut last = String::new();
    for attempt in 0..3u32 {
        if attempt > 0 {
            tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
        }
        match client
            .post(url)
            .header("content-type", "application/cloudevents+json")
            .body(body.clone())
            .send()
            .await
        {
            Ok(r) if r.status().is_success() => return Ok(r.status().as_u16()),
            Ok(r) if r.status().is_client_error() => {
                return Err(format!("HTTP {}", r.status().as_u16()));
            }
            Ok(r) => last = format!("HTTP {}", r.status().as_u16()),
            Err(e) => last = e.to_string(),
        }
    }
    Err(last)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::TimestampMicrosecondArray;

    fn segment(object: &str, times_ms: &[i64]) -> Segment {
        let schema = Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
            "time",
            arrow_schema::DataType::Timestamp(arrow_schema::TimeUnit::Microsecond, None),
            false,
        )]));
        let times =
            TimestampMicrosecondArray::from(times_ms.iter().map(|t| t * 1000).collect::<Vec<_>>());
        Segment::new(
            PredictionSegment {
                deployment: "d".into(),
                hour: "h".into(),
                model: "m".into(),
                version: "1".into(),
                role: "answer".into(),
                object: object.into(),
                rows: times_ms.len() as i64,
                first_time: 0,
                last_time: 0,
            },
            RecordBatch::try_new(schema, vec![Arc::new(times)]).unwrap(),
        )
    }

    #[test]
    fn row_windows_take_untaken_rows_across_segments_and_never_a_partial_window() {
        let segs = vec![segment("a", &[1, 2, 3]), segment("b", &[4, 5, 6, 7])];
        // Two rows of `a` were taken by an earlier window.
        let mut next = vec![2, 0];
        let w = take_rows(&segs, &mut next, 4).unwrap();
        assert_eq!(w.pieces, vec![(0, 2, 1), (1, 0, 3)]);
        assert_eq!(next, vec![3, 3]);
        // One row is left: no window, and nothing is taken.
        assert!(take_rows(&segs, &mut next, 2).is_none());
        assert_eq!(next, vec![3, 3]);
    }

    #[test]
    fn a_late_segment_is_taken_by_the_next_window_without_losing_rows() {
        // `late` was recorded after windows took all of `a`, with an older
        // timestamp of creation; the ledger still has it untaken.
        let segs = vec![segment("late", &[1, 2]), segment("a", &[3, 4])];
        let mut next = vec![0, 2];
        let w = take_rows(&segs, &mut next, 2).unwrap();
        assert_eq!(w.pieces, vec![(0, 0, 2)]);
        assert_eq!(next, vec![2, 2]);
    }

    #[test]
    fn time_windows_wait_for_the_settle_and_take_each_segments_rows_before_the_end() {
        // Two servers' segments, interleaved in time; windows of 1 s.
        let segs = vec![
            segment("a", &[100, 900, 1_100, 2_500]),
            segment("b", &[500, 1_200, 1_900]),
        ];
        let mut next = vec![0, 0];
        let settle = Duration::from_millis(200);
        // At 1.1 s the first window (0–1 s) is still settling.
        assert!(take_time_window(&segs, &mut next, 1_000_000, 1_100, settle).is_none());
        let w = take_time_window(&segs, &mut next, 1_000_000, 1_300, settle).unwrap();
        assert_eq!((w.pieces.clone(), w.rows), (vec![(0, 0, 2), (1, 0, 1)], 3));
        // The 1–2 s window: a's 1.1 s row and b's 1.2 s and 1.9 s rows.
        let w = take_time_window(&segs, &mut next, 1_000_000, 2_300, settle).unwrap();
        assert_eq!((w.pieces.clone(), w.rows), (vec![(0, 2, 1), (1, 1, 2)], 3));
        // The 2–3 s window has not ended.
        assert!(take_time_window(&segs, &mut next, 1_000_000, 2_900, settle).is_none());
        assert_eq!(next, vec![3, 3]);
    }

    #[test]
    fn rule_metrics_are_checked_by_name() {
        assert!(known_metric("accuracy"));
        assert!(known_metric("psi.age"));
        assert!(known_metric("drift.share"));
        assert!(!known_metric("acuracy"));
        assert!(!known_metric("psi."));
    }
}
