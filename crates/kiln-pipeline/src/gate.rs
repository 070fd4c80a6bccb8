//! A gate: a requirement evaluated against a candidate model version's
//! recorded metrics and those of the versions its aliases point at.
//!
//! A metric name is looked up as recorded, then as `test_NAME` (kiln's
//! held-out metrics), then as `validation_NAME`, so `roc_auc` means the test
//! AUC of a `kiln train` run and the `roc_auc` an MLflow client logged.
//! `p50_latency_ms`, `p99_latency_ms` and `mean_latency_ms` are measured by
//! the gate: one row at a time, on the rows `kiln train` kept with the model
//! (or `--data`).

use std::collections::BTreeMap;
use std::time::Instant;

use arrow_array::RecordBatch;
use kiln_project::{ModelRef, Project};
use kiln_store::ModelVersion;
use serde::Serialize;

use crate::expr::{self, EvalError, Expr, Value};
use crate::{PipelineError, Result};

/// A version's metrics by recorded key.
type Metrics = BTreeMap<String, f64>;

/// One prediction on one row.
type Predict = dyn Fn(&RecordBatch) -> Result<()> + Send;

/// Metrics the gate measures itself.
pub const MEASURED: [&str; 3] = ["p50_latency_ms", "p99_latency_ms", "mean_latency_ms"];

/// How many single-row predictions the latency is measured over (after 20
/// to warm up).
const LATENCY_CALLS: usize = 300;

/// What to gate.
#[derive(Clone, Debug)]
pub struct GateSpec {
    /// `NAME@VERSION` or `NAME@ALIAS`.
    pub model: String,
    /// The requirement, e.g. `roc_auc >= 0.8 && roc_auc >= champion.roc_auc - 0.005`.
    pub require: String,
    /// Rows to measure latency on (a file or dataset reference), instead
    /// of the ones stored with the model.
    pub data: Option<String>,
}

/// Whether a clause held.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    Passed,
    Failed,
    /// It compares with a version that does not exist yet (no champion):
    /// the first model through a gate passes it.
    Skipped,
}

/// One clause of the requirement.
#[derive(Clone, Debug, Serialize)]
pub struct Clause {
    /// As written (normalised).
    pub clause: String,
    /// With each metric's value in place: `0.8612 >= 0.8`.
    pub values: String,
    pub outcome: Outcome,
    /// Why it failed or was skipped, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// A metric the gate read, and where from.
#[derive(Clone, Debug, Serialize)]
pub struct Reading {
    /// As the requirement names it: `roc_auc`, `champion.roc_auc`.
    pub name: String,
    /// The version it was read from (`fraud@3`), or why none.
    pub source: String,
    /// The recorded key it came from (`test_roc_auc`), or `measured`.
    pub key: Option<String>,
    pub value: Option<f64>,
}

/// A gate's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct GateReport {
    /// `NAME@VERSION` of the candidate.
    pub model: String,
    pub require: String,
    pub passed: bool,
    pub clauses: Vec<Clause>,
    pub metrics: Vec<Reading>,
    /// The aliases compared with, and the version each pointed at (None:
    /// the alias is not set).
    pub compared_with: BTreeMap<String, Option<i64>>,
    pub duration_ms: u64,
}

/// Parses a requirement, naming the option it came from in the error.
pub fn parse_requirement(require: &str) -> Result<Expr> {
    expr::parse(require).map_err(|e| PipelineError::Invalid {
        what: "the requirement".into(),
        message: e.to_string(),
        hint: "write clauses such as `roc_auc >= 0.8 && p99_latency_ms < 5`, joined by `&&`".into(),
    })
}

/// A version's metrics: the registry's copy, then its run's latest.
fn recorded(version: &ModelVersion, run: Option<&kiln_store::Run>) -> BTreeMap<String, f64> {
    let mut out = BTreeMap::new();
    if let Some(run) = run {
        for m in &run.metrics {
            out.insert(m.key.clone(), m.value);
        }
    }
    if let Some(map) = version.metrics.as_object() {
        for (k, v) in map {
            if let Some(v) = v.as_f64() {
                out.insert(k.clone(), v);
            }
        }
    }
    out
}

/// `name`, `test_name` or `validation_name`, whichever is recorded first.
fn find(metrics: &BTreeMap<String, f64>, name: &str) -> Option<(String, f64)> {
    [
        name.to_string(),
        format!("test_{name}"),
        format!("validation_{name}"),
    ]
    .into_iter()
    .find_map(|k| metrics.get(&k).map(|v| (k, *v)))
}

/// Evaluates a gate.
pub async fn evaluate(project: &Project, spec: &GateSpec) -> Result<GateReport> {
    let start = Instant::now();
    let requirement = parse_requirement(&spec.require)?;
    let (name, candidate) = match ModelRef::parse(&spec.model) {
        ModelRef::Version { name, version } => {
            let v = project.meta.model_version(&name, version).await?;
            (name, v)
        }
        ModelRef::Alias { name, alias } => {
            let v = project.meta.model_version_by_alias(&name, &alias).await?;
            (name, v)
        }
        _ => {
            return Err(PipelineError::Invalid {
                what: format!("`{}`", spec.model),
                message: "a gate judges a registered model version".into(),
                hint: "name it `MODEL@VERSION` or `MODEL@ALIAS` (register a run with \
                       `kiln models register NAME --run RUN`)"
                    .into(),
            });
        }
    };
    let label = format!("{name}@{}", candidate.version);
    let run = match &candidate.run_id {
        Some(id) => project.meta.tracked_run(id).await.ok(),
        None => None,
    };
    let mut own = recorded(&candidate, run.as_ref());

    let wanted = requirement.metrics();
    if wanted
        .iter()
        .any(|(scope, m)| scope.is_none() && MEASURED.contains(m))
    {
        for (k, v) in
            measure_latency(project, &spec.model, &candidate, spec.data.as_deref()).await?
        {
            own.insert(k.to_string(), v);
        }
    }

    // The other versions the requirement names, by alias.
    let mut others: BTreeMap<String, Option<(i64, Metrics)>> = BTreeMap::new();
    for (scope, _) in &wanted {
        let Some(alias) = scope else { continue };
        if others.contains_key(*alias) {
            continue;
        }
        let found = match project.meta.model_version_by_alias(&name, alias).await {
            Ok(v) => {
                let run = match &v.run_id {
                    Some(id) => project.meta.tracked_run(id).await.ok(),
                    None => None,
                };
                Some((v.version, recorded(&v, run.as_ref())))
            }
            Err(kiln_store::StoreError::NotFound { .. }) => None,
            Err(e) => return Err(e.into()),
        };
        others.insert(alias.to_string(), found);
    }

    let mut readings = Vec::new();
    for (scope, m) in &wanted {
        let (source, found) = match scope {
            None => (
                label.clone(),
                if MEASURED.contains(m) {
                    own.get(*m).map(|v| ("measured".to_string(), *v))
                } else {
                    find(&own, m)
                },
            ),
            Some(alias) => match &others[*alias] {
                Some((version, metrics)) => {
                    (format!("{name}@{version} ({alias})"), find(metrics, m))
                }
                None => (format!("no version is `{name}@{alias}`"), None),
            },
        };
        readings.push(Reading {
            name: match scope {
                Some(s) => format!("{s}.{m}"),
                None => m.to_string(),
            },
            source,
            key: found.as_ref().map(|(k, _)| k.clone()),
            value: found.map(|(_, v)| v),
        });
    }
    let lookup = |scope: Option<&str>, m: &str| -> Option<f64> {
        let name = match scope {
            Some(s) => format!("{s}.{m}"),
            None => m.to_string(),
        };
        readings
            .iter()
            .find(|r| r.name == name)
            .and_then(|r| r.value)
    };

    let mut clauses = Vec::new();
    for c in requirement.clauses() {
        let values = c.substituted(&lookup);
        let (outcome, reason) = match c.eval(&lookup) {
            Ok(Value::Bool(true)) => (Outcome::Passed, None),
            Ok(Value::Bool(false)) => (Outcome::Failed, Some(format!("{values} is false"))),
            Ok(Value::Number(_)) => (
                Outcome::Failed,
                Some(format!(
                    "`{c}` is a number, not a comparison (e.g. `{c} >= 0.8`)"
                )),
            ),
            Err(EvalError::Missing {
                scope: Some(alias), ..
            }) if others.get(&alias).is_some_and(Option::is_none) => (
                Outcome::Skipped,
                Some(format!(
                    "no version of `{name}` is `{alias}` yet, so there is nothing to compare with"
                )),
            ),
            Err(EvalError::Missing { scope, name: m }) => {
                let (metrics, whose) = match &scope {
                    None => (Some(&own), label.clone()),
                    Some(a) => (others[a].as_ref().map(|(_, m)| m), format!("{name}@{a}")),
                };
                let known = metrics
                    .map(|m| m.keys().cloned().collect::<Vec<_>>().join(", "))
                    .unwrap_or_default();
                let why = if MEASURED.contains(&m.as_str()) && scope.is_none() {
                    format!(
                        "`{m}` could not be measured: {label} has no stored rows to time \
                         predictions on; pass `--data FILE`"
                    )
                } else if known.is_empty() {
                    format!("{whose} has no metrics recorded, so `{m}` is unknown")
                } else {
                    format!("{whose} has no metric `{m}` (recorded: {known})")
                };
                (Outcome::Failed, Some(why))
            }
            Err(EvalError::Type(why)) => (Outcome::Failed, Some(why)),
        };
        clauses.push(Clause {
            clause: c.to_string(),
            values,
            outcome,
            reason,
        });
    }
    let passed = clauses.iter().all(|c| c.outcome != Outcome::Failed);
    Ok(GateReport {
        model: label,
        require: spec.require.clone(),
        passed,
        clauses,
        metrics: readings,
        compared_with: others
            .into_iter()
            .map(|(a, v)| (a, v.map(|(version, _)| version)))
            .collect(),
        duration_ms: start.elapsed().as_millis() as u64,
    })
}

/// Times single-row predictions: the model as served, one row per call.
async fn measure_latency(
    project: &Project,
    reference: &str,
    version: &ModelVersion,
    data: Option<&str>,
) -> Result<Vec<(&'static str, f64)>> {
    let rows: Option<Vec<RecordBatch>> = match data {
        Some(source) => Some(project.read_table(source).await?.0),
        None => match &version.run_id {
            Some(id) => match project.meta.run(id).await {
                Ok(run) => project.run_background(&run).await?,
                Err(_) => None,
            },
            None => None,
        },
    };
    let Some(rows) = rows else {
        return Ok(Vec::new());
    };
    let rows: Vec<RecordBatch> = rows
        .iter()
        .flat_map(|b| (0..b.num_rows()).map(move |i| b.slice(i, 1)))
        .take(LATENCY_CALLS)
        .collect();
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let call: Box<Predict> = if version.format == "kiln" {
        let model = project.load_model(reference).await?;
        Box::new(move |row: &RecordBatch| {
            model
                .predict(std::slice::from_ref(row))
                .map(drop)
                .map_err(|e| PipelineError::Project(kiln_project::ProjectError::Ml(e)))
        })
    } else {
        let Some(model) = project.load_imported(reference).await? else {
            return Ok(Vec::new());
        };
        Box::new(move |row: &RecordBatch| {
            let input = kiln_project::training::imported_input(&model, std::slice::from_ref(row))?;
            model
                .predict(&input)
                .map(drop)
                .map_err(|e| PipelineError::Project(kiln_project::ProjectError::Ml(e)))
        })
    };
    let times = tokio::task::spawn_blocking(move || -> Result<Vec<f64>> {
        for row in rows.iter().cycle().take(20) {
            call(row)?;
        }
        let mut times = Vec::with_capacity(LATENCY_CALLS);
        for row in rows.iter().cycle().take(LATENCY_CALLS) {
            let t = Instant::now();
            call(row)?;
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
        Ok(times)
    })
    .await
    .expect("latency measurement does not panic")?;
    let mut sorted = times.clone();
    sorted.sort_by(f64::total_cmp);
    let q = |p: f64| sorted[((sorted.len() - 1) as f64 * p).round() as usize];
    Ok(vec![
        ("p50_latency_ms", q(0.5)),
        ("p99_latency_ms", q(0.99)),
        (
            "mean_latency_ms",
            times.iter().sum::<f64>() / times.len() as f64,
        ),
    ])
}
