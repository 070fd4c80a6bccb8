//! Scoring a model on a labelled table: every metric of its task, the
//! confusion matrix, a calibration table and, on request, a decision
//! threshold.

use std::collections::BTreeMap;
use std::str::FromStr;

use arrow_array::RecordBatch;
use serde::Serialize;

use crate::automl::{SplitStrategy, holdout};
use crate::error::MlError;
use crate::metrics::{
    self, CalibrationBin, ConfusionMatrix, Metric, ThresholdChoice, ThresholdObjective,
};
use crate::model::Model;
use crate::preprocess::{self, TransformNote};
use crate::task::{Predictions, Target};

/// A model's scores on a table.
#[derive(Debug, Clone, Serialize)]
pub struct Evaluation {
    /// Rows scored (labelled, and in the holdout when asked).
    pub rows: usize,
    /// Rows skipped because their label was missing.
    pub unlabelled: usize,
    pub metrics: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confusion: Option<ConfusionMatrix>,
    /// Class names in confusion-matrix order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub calibration: Vec<CalibrationBin>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<ThresholdChoice>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<TransformNote>,
}

/// Parses `max_f1`, `max_balanced_accuracy`, `precision:P`, `recall:R` or
/// `cost:FP,FN`.
pub fn parse_threshold_objective(s: &str) -> Result<ThresholdObjective, MlError> {
    let bad = || MlError::Invalid {
        what: format!("threshold objective `{s}`"),
        why: "expected max_f1, max_balanced_accuracy, precision:P, recall:R or cost:FP,FN".into(),
    };
    let num = |v: &str| f64::from_str(v.trim()).map_err(|_| bad());
    Ok(match s.split_once(':') {
        None if s == "max_f1" => ThresholdObjective::MaxF1,
        None if s == "max_balanced_accuracy" => ThresholdObjective::MaxBalancedAccuracy,
        Some(("precision", v)) => ThresholdObjective::PrecisionAtLeast(num(v)?),
        Some(("recall", v)) => ThresholdObjective::RecallAtLeast(num(v)?),
        Some(("cost", v)) => {
            let (fp, fn_) = v.split_once(',').ok_or_else(bad)?;
            ThresholdObjective::MinCost {
                false_positive: num(fp)?,
                false_negative: num(fn_)?,
            }
        }
        _ => return Err(bad()),
    })
}

/// The predictions of `rows` only, in that order.
pub fn take(p: &Predictions, rows: &[usize]) -> Predictions {
    match p {
        Predictions::Binary(v) => Predictions::Binary(rows.iter().map(|&r| v[r]).collect()),
        Predictions::Regression(v) => Predictions::Regression(rows.iter().map(|&r| v[r]).collect()),
        Predictions::Multiclass { probs, n_classes } => Predictions::Multiclass {
            probs: rows
                .iter()
                .flat_map(|&r| probs[r * n_classes..(r + 1) * n_classes].iter().copied())
                .collect(),
            n_classes: *n_classes,
        },
    }
}

/// The rows of `batches` (the table `model` was trained on) that it held out
/// as its test set, or `None` when it held out none.
pub fn test_rows(model: &Model, batches: &[RecordBatch]) -> Result<Option<Vec<usize>>, MlError> {
    let batches = preprocess::canonicalize(batches)?;
    let labels = model.target.labels(&batches)?;
    Ok(held_out(model, &batches, &labels)?.map(|(rows, _)| rows))
}

/// Held-out rows: their row numbers in the table, and their places among
/// the labelled rows.
type HeldOut = (Vec<usize>, Vec<usize>);

/// The rows `model` held out, if any.
fn held_out(
    model: &Model,
    batches: &[RecordBatch],
    labels: &preprocess::Labels,
) -> Result<Option<HeldOut>, MlError> {
    if model.training.test_rows == 0 {
        return Ok(None);
    }
    let strategy: SplitStrategy = model.training.split.parse()?;
    let split = holdout(
        batches,
        &model.target,
        labels,
        &strategy,
        model.training.test_fraction,
        model.training.seed,
    )?;
    let rows = split.test.iter().map(|&i| labels.rows[i]).collect();
    Ok(Some((rows, split.test)))
}

/// Scores `model` on `batches`. With `holdout`, only the test rows the
/// model held out in training are scored (the table must be the one it
/// was trained on).
pub fn evaluate(
    model: &Model,
    batches: &[RecordBatch],
    holdout_only: bool,
    threshold: Option<ThresholdObjective>,
) -> Result<Evaluation, MlError> {
    let batches = preprocess::canonicalize(batches)?;
    let labels = model.target.labels(&batches)?;
    let scored = model.predict(&batches)?;
    let (rows, target) = if holdout_only {
        let Some((rows, test)) = held_out(model, &batches, &labels)? else {
            return Err(MlError::Invalid {
                what: "--holdout".into(),
                why: "the model held out no test rows (it was trained with --test-fraction 0); evaluate it on a test table instead".into(),
            });
        };
        (rows, labels.target.take(&test))
    } else {
        (labels.rows.clone(), labels.target.clone())
    };
    let pred = take(&scored.predictions, &rows);
    let task = model.task();
    let mut metrics = BTreeMap::new();
    for m in Metric::all_for(task)
        .into_iter()
        .chain(model.training.metric.parse::<Metric>().ok())
    {
        if let Ok(v) = metrics::score(m, &target, &pred) {
            metrics.insert(m.name().to_string(), v);
        }
    }
    let (confusion, calibration, chosen) = match (&target, &pred) {
        (Target::Classes { codes, n_classes }, p) => {
            let predicted = p.classes().expect("classifiers predict classes");
            let cm = ConfusionMatrix::from_classes(codes, &predicted, *n_classes).ok();
            let (cal, thr) = match p {
                Predictions::Binary(prob) => {
                    let y: Vec<bool> = codes.iter().map(|&c| c == 1).collect();
                    (
                        metrics::calibration_table(&y, prob, 10),
                        threshold.and_then(|o| metrics::select_threshold(&y, prob, o)),
                    )
                }
                _ => (Vec::new(), None),
            };
            (cm, cal, thr)
        }
        _ => (None, Vec::new(), None),
    };
    Ok(Evaluation {
        rows: rows.len(),
        unlabelled: labels.total_rows - labels.rows.len(),
        metrics,
        confusion,
        classes: model.target.classes.clone(),
        calibration,
        threshold: chosen,
        notes: scored.notes,
    })
}
