//! Classification and regression metrics, confusion matrices, calibration
//! tables and threshold selection.
//!
//! [`score`] is the entry point: it checks that a [`Target`] and a model's
//! [`Predictions`] fit together and computes one [`Metric`]. The lower-level
//! functions ([`roc_auc`], [`average_precision`], [`rmse`], …) take plain
//! slices so other modules can call them on data they already hold.
//!
//! Definitions follow scikit-learn's, so numbers in kiln's reports can be
//! checked against it:
//!
//! * ROC AUC gives tied scores half credit (the trapezoid over a tied group);
//!   multiclass ROC AUC and PR AUC are one-vs-rest macro averages.
//! * PR AUC is average precision, a step-wise sum without interpolation.
//! * Precision, recall and F1 are 0 where their denominator is 0
//!   (scikit-learn's `zero_division=0`), because a model that predicts no
//!   positives is a property of the model, not of the data.
//! * A metric that the *data* leaves undefined (ROC AUC with one class, R²
//!   of a constant target) is an error, never `NaN`.
//!
//! Everything is at most O(n log n) (one sort), so scoring a million rows
//! takes a fraction of a second.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::task::{Predictions, Target, Task};

/// The probability at or above which a binary prediction counts as positive
/// for [`Metric::Accuracy`], [`Metric::F1`] and friends.
pub const DEFAULT_THRESHOLD: f64 = 0.5;

/// Log loss clips probabilities to `[LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]` so a
/// confident wrong answer costs a large but finite amount.
pub const LOG_LOSS_EPS: f64 = 1e-15;

/// A way to score predictions against labels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Area under the ROC curve (one-vs-rest macro average for multiclass).
    RocAuc,
    /// Average precision, the step-wise area under the precision-recall
    /// curve (one-vs-rest macro average for multiclass).
    PrAuc,
    /// Mean negative log-likelihood of the true class (cross-entropy).
    // Serialised as its `name()` so reports and config files use one spelling.
    #[serde(rename = "logloss", alias = "log_loss")]
    LogLoss,
    /// Fraction of rows whose predicted class is the true class.
    Accuracy,
    /// Mean per-class recall over the classes present in the labels.
    BalancedAccuracy,
    /// Harmonic mean of precision and recall (macro average for multiclass).
    F1,
    /// Fraction of predicted positives that are positive (macro average for
    /// multiclass).
    Precision,
    /// Fraction of positives predicted positive (macro average for
    /// multiclass).
    Recall,
    /// Root mean squared error.
    Rmse,
    /// Mean absolute error.
    Mae,
    /// Coefficient of determination.
    R2,
    /// Mean absolute percentage error, as a fraction (0.1 is 10 %).
    Mape,
    /// Mean Poisson deviance, for counts and rates.
    PoissonDeviance,
}

impl Metric {
    /// Every metric, in the order their names are listed in messages.
    pub const ALL: [Metric; 13] = [
        Metric::RocAuc,
        Metric::PrAuc,
        Metric::LogLoss,
        Metric::Accuracy,
        Metric::BalancedAccuracy,
        Metric::F1,
        Metric::Precision,
        Metric::Recall,
        Metric::Rmse,
        Metric::Mae,
        Metric::R2,
        Metric::Mape,
        Metric::PoissonDeviance,
    ];

    /// The canonical name, as written in reports and accepted by
    /// [`FromStr`].
    pub fn name(&self) -> &'static str {
        match self {
            Metric::RocAuc => "roc_auc",
            Metric::PrAuc => "pr_auc",
            Metric::LogLoss => "logloss",
            Metric::Accuracy => "accuracy",
            Metric::BalancedAccuracy => "balanced_accuracy",
            Metric::F1 => "f1",
            Metric::Precision => "precision",
            Metric::Recall => "recall",
            Metric::Rmse => "rmse",
            Metric::Mae => "mae",
            Metric::R2 => "r2",
            Metric::Mape => "mape",
            Metric::PoissonDeviance => "poisson_deviance",
        }
    }

    /// Whether a larger value means a better model.
    pub fn higher_is_better(&self) -> bool {
        match self {
            Metric::RocAuc
            | Metric::PrAuc
            | Metric::Accuracy
            | Metric::BalancedAccuracy
            | Metric::F1
            | Metric::Precision
            | Metric::Recall
            | Metric::R2 => true,
            Metric::LogLoss
            | Metric::Rmse
            | Metric::Mae
            | Metric::Mape
            | Metric::PoissonDeviance => false,
        }
    }

    /// Whether the metric is defined for `task`.
    pub fn applies_to(&self, task: Task) -> bool {
        match self {
            Metric::RocAuc
            | Metric::PrAuc
            | Metric::LogLoss
            | Metric::Accuracy
            | Metric::BalancedAccuracy
            | Metric::F1
            | Metric::Precision
            | Metric::Recall => task.is_classification(),
            Metric::Rmse | Metric::Mae | Metric::R2 | Metric::Mape | Metric::PoissonDeviance => {
                task == Task::Regression
            }
        }
    }

    /// The metric models are compared on when the user names none.
    pub fn default_for(task: Task) -> Metric {
        match task {
            Task::Binary => Metric::RocAuc,
            Task::Multiclass => Metric::LogLoss,
            Task::Regression => Metric::Rmse,
        }
    }

    /// The metrics worth reporting for `task`, the default first.
    ///
    /// MAPE and Poisson deviance are left out for regression: they fail or
    /// explode on targets with zeros or negative predictions, so they are
    /// only computed when asked for.
    pub fn all_for(task: Task) -> Vec<Metric> {
        match task {
            Task::Binary => vec![
                Metric::RocAuc,
                Metric::PrAuc,
                Metric::LogLoss,
                Metric::Accuracy,
                Metric::BalancedAccuracy,
                Metric::F1,
                Metric::Precision,
                Metric::Recall,
            ],
            Task::Multiclass => vec![
                Metric::LogLoss,
                Metric::Accuracy,
                Metric::BalancedAccuracy,
                Metric::RocAuc,
                Metric::F1,
                Metric::Precision,
                Metric::Recall,
            ],
            Task::Regression => vec![Metric::Rmse, Metric::Mae, Metric::R2],
        }
    }
}

/// The [`Metric::all_for`] list without the task; kept as a free function so
/// callers can write `metrics::all_for(task)`.
pub fn all_for(task: Task) -> Vec<Metric> {
    Metric::all_for(task)
}

impl fmt::Display for Metric {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Metric {
    type Err = MetricError;

    /// Parses a canonical name or a common alias, ignoring case and treating
    /// `-` and spaces like `_`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let normalised = s.trim().to_ascii_lowercase().replace(['-', ' '], "_");
        let metric = match normalised.as_str() {
            "roc_auc" | "auc" | "auroc" | "rocauc" => Metric::RocAuc,
            "pr_auc" | "prauc" | "auprc" | "ap" | "average_precision" => Metric::PrAuc,
            "logloss" | "log_loss" | "cross_entropy" => Metric::LogLoss,
            "accuracy" | "acc" => Metric::Accuracy,
            "balanced_accuracy" => Metric::BalancedAccuracy,
            "f1" | "f1_score" => Metric::F1,
            "precision" => Metric::Precision,
            "recall" | "sensitivity" => Metric::Recall,
            "rmse" => Metric::Rmse,
            "mae" => Metric::Mae,
            "r2" | "r_squared" => Metric::R2,
            "mape" => Metric::Mape,
            "poisson_deviance" | "poisson" => Metric::PoissonDeviance,
            _ => {
                return Err(MetricError::UnknownMetric {
                    name: s.to_string(),
                });
            }
        };
        Ok(metric)
    }
}

fn metric_names() -> String {
    Metric::ALL.map(|m| m.name()).join(", ")
}

fn metric_names_for(task: Task) -> String {
    Metric::ALL
        .iter()
        .filter(|m| m.applies_to(task))
        .map(|m| m.name())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Why a metric could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetricError {
    /// The name is not a metric kiln knows.
    #[error("Unknown metric `{name}`; use one of: {}", metric_names())]
    UnknownMetric {
        /// The name as given.
        name: String,
    },
    /// The metric is not defined for the target's task.
    #[error("Metric `{metric}` does not apply to {task} targets; use one of: {}", metric_names_for(*.task))]
    NotApplicable {
        /// The metric asked for.
        metric: Metric,
        /// The task the target implies.
        task: Task,
    },
    /// The predictions are for a different kind of task than the target.
    #[error(
        "Predictions are for a {predictions} task but the target is {target}; score predictions from a model trained on this target"
    )]
    PredictionsMismatch {
        /// The task the target implies.
        target: Task,
        /// The task the predictions are for.
        predictions: Task,
    },
    /// Labels and predictions cover different numbers of rows.
    #[error(
        "Got `{labels}` labels but `{predictions}` predictions; score predictions made for the same rows"
    )]
    LengthMismatch {
        /// Number of labels.
        labels: usize,
        /// Number of predictions.
        predictions: usize,
    },
    /// The target and the predictions disagree on the number of classes.
    #[error(
        "The target has `{target}` classes but the predictions have `{predictions}`; score predictions from a model trained on this target"
    )]
    ClassCountMismatch {
        /// Classes in the target.
        target: usize,
        /// Classes in the predictions.
        predictions: usize,
    },
    /// Multiclass probabilities whose length is not rows × classes.
    #[error(
        "Multiclass predictions hold `{len}` probabilities, which is not a multiple of `{n_classes}` classes"
    )]
    MalformedProbabilities {
        /// Number of probabilities.
        len: usize,
        /// Declared number of classes.
        n_classes: usize,
    },
    /// A classification target with fewer than two classes.
    #[error("A classification target needs at least 2 classes, got `{n_classes}`")]
    TooFewClasses {
        /// Declared number of classes.
        n_classes: usize,
    },
    /// A class label outside `0..n_classes`.
    #[error("Class label `{label}` at row `{row}` is outside `0..{n_classes}`")]
    LabelOutOfRange {
        /// The row holding the label.
        row: usize,
        /// The label.
        label: u32,
        /// Declared number of classes.
        n_classes: usize,
    },
    /// No rows to score.
    #[error("No rows to score; score on a non-empty set of rows")]
    Empty,
    /// A label or prediction is `NaN` or infinite.
    #[error("Non-finite {what} `{value}` at row `{row}`; drop or impute such rows before scoring")]
    NonFinite {
        /// `"label"` or `"prediction"`.
        what: &'static str,
        /// The row holding the value.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A ranking metric on labels of a single class.
    #[error(
        "`{metric}` is undefined when the labels contain only one class; score on rows that include both classes (a stratified split keeps both)"
    )]
    SingleClass {
        /// The metric asked for.
        metric: Metric,
    },
    /// Average precision on labels without a positive.
    #[error(
        "`{metric}` is undefined when no label is positive; score on rows that include positives (a stratified split keeps them)"
    )]
    NoPositives {
        /// The metric asked for.
        metric: Metric,
    },
    /// A one-vs-rest metric on labels in which some class never occurs.
    #[error(
        "`{metric}` is undefined because class `{class}` never occurs in the labels; score on rows that include every class (a stratified split keeps them)"
    )]
    MissingClass {
        /// The metric asked for.
        metric: Metric,
        /// The class that never occurs.
        class: u32,
    },
    /// R² on a target whose values are all equal.
    #[error(
        "`{metric}` is undefined when every label is equal; score on rows with varying labels or use `rmse`"
    )]
    ConstantTarget {
        /// The metric asked for.
        metric: Metric,
    },
    /// Poisson deviance with a prediction that is zero or negative.
    #[error(
        "`{metric}` needs predictions above 0, got `{value}` at row `{row}`; use a model with a log link or another metric"
    )]
    NonPositivePrediction {
        /// The metric asked for.
        metric: Metric,
        /// The row holding the prediction.
        row: usize,
        /// The prediction.
        value: f64,
    },
    /// Poisson deviance with a negative label.
    #[error(
        "`{metric}` needs labels of at least 0, got `{value}` at row `{row}`; use another metric for targets that can be negative"
    )]
    NegativeTarget {
        /// The metric asked for.
        metric: Metric,
        /// The row holding the label.
        row: usize,
        /// The label.
        value: f64,
    },
}

// ---------------------------------------------------------------------------
// Dispatch
// ---------------------------------------------------------------------------

/// Scores `pred` against `target` with `metric`.
///
/// A target with two classes is binary: class 1 is positive, and
/// [`Predictions::Binary`] or two-column [`Predictions::Multiclass`] (column 1
/// is the positive class) are accepted. Binary accuracy, balanced accuracy,
/// precision, recall and F1 count a row positive at
/// [`DEFAULT_THRESHOLD`]; multiclass ones use the argmax class and
/// macro-average precision, recall and F1 over the classes that occur in the
/// labels or the predictions (scikit-learn's default).
pub fn score(metric: Metric, target: &Target, pred: &Predictions) -> Result<f64, MetricError> {
    let task = target_task(target)?;
    if !metric.applies_to(task) {
        return Err(MetricError::NotApplicable { metric, task });
    }
    match (target, pred) {
        (Target::Values(y), Predictions::Regression(p)) => regression(metric, y, p),
        (Target::Classes { codes, n_classes }, _) => {
            let n_classes = *n_classes;
            let probs: std::borrow::Cow<'_, [f64]> = match pred {
                Predictions::Binary(p) if n_classes == 2 => p.as_slice().into(),
                Predictions::Multiclass {
                    probs,
                    n_classes: 2,
                } if n_classes == 2 => {
                    check_multiclass_shape(probs, 2)?;
                    probs
                        .chunks_exact(2)
                        .map(|row| row[1])
                        .collect::<Vec<_>>()
                        .into()
                }
                Predictions::Multiclass {
                    probs,
                    n_classes: k,
                } if *k == n_classes => {
                    check_multiclass_shape(probs, n_classes)?;
                    check_len(codes.len(), probs.len() / n_classes)?;
                    check_labels(codes, n_classes)?;
                    return multiclass(metric, codes, probs, n_classes);
                }
                Predictions::Binary(_) => {
                    return Err(MetricError::ClassCountMismatch {
                        target: n_classes,
                        predictions: 2,
                    });
                }
                Predictions::Multiclass { n_classes: k, .. } => {
                    return Err(MetricError::ClassCountMismatch {
                        target: n_classes,
                        predictions: *k,
                    });
                }
                Predictions::Regression(_) => {
                    return Err(MetricError::PredictionsMismatch {
                        target: task,
                        predictions: Task::Regression,
                    });
                }
            };
            check_len(codes.len(), probs.len())?;
            check_labels(codes, 2)?;
            let y: Vec<bool> = codes.iter().map(|&c| c == 1).collect();
            binary(metric, &y, &probs)
        }
        (Target::Values(_), _) => Err(MetricError::PredictionsMismatch {
            target: task,
            predictions: predictions_task(pred),
        }),
    }
}

fn target_task(target: &Target) -> Result<Task, MetricError> {
    match target {
        Target::Values(_) => Ok(Task::Regression),
        Target::Classes { n_classes, .. } => match n_classes {
            0 | 1 => Err(MetricError::TooFewClasses {
                n_classes: *n_classes,
            }),
            2 => Ok(Task::Binary),
            _ => Ok(Task::Multiclass),
        },
    }
}

fn predictions_task(pred: &Predictions) -> Task {
    match pred {
        Predictions::Binary(_) => Task::Binary,
        Predictions::Multiclass { .. } => Task::Multiclass,
        Predictions::Regression(_) => Task::Regression,
    }
}

fn binary(metric: Metric, y: &[bool], p: &[f64]) -> Result<f64, MetricError> {
    match metric {
        Metric::RocAuc => roc_auc(y, p),
        Metric::PrAuc => average_precision(y, p),
        Metric::LogLoss => log_loss(y, p),
        Metric::Accuracy
        | Metric::BalancedAccuracy
        | Metric::F1
        | Metric::Precision
        | Metric::Recall => {
            let counts = BinaryCounts::at_threshold(y, p, DEFAULT_THRESHOLD)?;
            Ok(match metric {
                Metric::Accuracy => counts.accuracy(),
                Metric::BalancedAccuracy => counts.balanced_accuracy(),
                Metric::F1 => counts.f1(),
                Metric::Precision => counts.precision(),
                _ => counts.recall(),
            })
        }
        _ => Err(MetricError::NotApplicable {
            metric,
            task: Task::Binary,
        }),
    }
}

fn multiclass(
    metric: Metric,
    codes: &[u32],
    probs: &[f64],
    n_classes: usize,
) -> Result<f64, MetricError> {
    check_finite("prediction", probs).map_err(|e| match e {
        MetricError::NonFinite { what, row, value } => MetricError::NonFinite {
            what,
            row: row / n_classes,
            value,
        },
        other => other,
    })?;
    match metric {
        Metric::RocAuc => roc_auc_ovr(codes, probs, n_classes),
        Metric::PrAuc => average_precision_ovr(codes, probs, n_classes),
        Metric::LogLoss => log_loss_multiclass(codes, probs, n_classes),
        Metric::Accuracy
        | Metric::BalancedAccuracy
        | Metric::F1
        | Metric::Precision
        | Metric::Recall => {
            let predicted: Vec<u32> = probs.chunks_exact(n_classes).map(argmax).collect();
            let cm = ConfusionMatrix::from_classes(codes, &predicted, n_classes)?;
            Ok(match metric {
                Metric::Accuracy => cm.accuracy(),
                Metric::BalancedAccuracy => cm.balanced_accuracy(),
                Metric::F1 => cm.macro_f1(),
                Metric::Precision => cm.macro_precision(),
                _ => cm.macro_recall(),
            })
        }
        _ => Err(MetricError::NotApplicable {
            metric,
            task: Task::Multiclass,
        }),
    }
}

fn regression(metric: Metric, y: &[f64], p: &[f64]) -> Result<f64, MetricError> {
    match metric {
        Metric::Rmse => rmse(y, p),
        Metric::Mae => mae(y, p),
        Metric::R2 => r2(y, p),
        Metric::Mape => mape(y, p),
        Metric::PoissonDeviance => poisson_deviance(y, p),
        _ => Err(MetricError::NotApplicable {
            metric,
            task: Task::Regression,
        }),
    }
}

/// The first index of the largest value (NumPy's `argmax`).
fn argmax(row: &[f64]) -> u32 {
    let mut best = 0;
    for (k, &p) in row.iter().enumerate() {
        if p > row[best] {
            best = k;
        }
    }
    best as u32
}

// ---------------------------------------------------------------------------
// Input checks
// ---------------------------------------------------------------------------

fn check_len(labels: usize, predictions: usize) -> Result<(), MetricError> {
    if labels != predictions {
        return Err(MetricError::LengthMismatch {
            labels,
            predictions,
        });
    }
    if labels == 0 {
        return Err(MetricError::Empty);
    }
    Ok(())
}

fn check_finite(what: &'static str, values: &[f64]) -> Result<(), MetricError> {
    match values.iter().position(|v| !v.is_finite()) {
        Some(row) => Err(MetricError::NonFinite {
            what,
            row,
            value: values[row],
        }),
        None => Ok(()),
    }
}

fn check_labels(codes: &[u32], n_classes: usize) -> Result<(), MetricError> {
    match codes.iter().position(|&c| c as usize >= n_classes) {
        Some(row) => Err(MetricError::LabelOutOfRange {
            row,
            label: codes[row],
            n_classes,
        }),
        None => Ok(()),
    }
}

fn check_multiclass_shape(probs: &[f64], n_classes: usize) -> Result<(), MetricError> {
    if n_classes == 0 || !probs.len().is_multiple_of(n_classes) {
        return Err(MetricError::MalformedProbabilities {
            len: probs.len(),
            n_classes,
        });
    }
    Ok(())
}

fn check_regression(y: &[f64], p: &[f64]) -> Result<(), MetricError> {
    check_len(y.len(), p.len())?;
    check_finite("label", y)?;
    check_finite("prediction", p)
}

fn check_binary(y: &[bool], score: &[f64]) -> Result<(), MetricError> {
    check_len(y.len(), score.len())?;
    check_finite("prediction", score)
}

// ---------------------------------------------------------------------------
// Ranking metrics
// ---------------------------------------------------------------------------

/// Rows that share one score: how many are positive and negative.
#[derive(Debug, Clone, Copy)]
struct ScoreGroup {
    score: f64,
    pos: u64,
    neg: u64,
}

/// Groups rows by distinct score, highest score first. Scores must be
/// finite.
fn score_groups(y: &[bool], score: &[f64]) -> Vec<ScoreGroup> {
    // `+ 0.0` turns -0.0 into 0.0, which `total_cmp` would otherwise order
    // apart from it and so split a tie.
    let mut rows: Vec<(f64, bool)> = score
        .iter()
        .map(|&s| s + 0.0)
        .zip(y.iter().copied())
        .collect();
    rows.sort_unstable_by(|a, b| b.0.total_cmp(&a.0));
    let mut groups: Vec<ScoreGroup> = Vec::new();
    for (s, positive) in rows {
        match groups.last_mut() {
            Some(g) if g.score == s => {
                if positive {
                    g.pos += 1;
                } else {
                    g.neg += 1;
                }
            }
            _ => groups.push(ScoreGroup {
                score: s,
                pos: u64::from(positive),
                neg: u64::from(!positive),
            }),
        }
    }
    groups
}

/// Area under the ROC curve of `score` for the labels `y` (`true` is
/// positive): the probability that a random positive outscores a random
/// negative, with ties counting one half.
///
/// Computed exactly in integers from one sort, so it agrees with
/// scikit-learn's `roc_auc_score` to rounding. Errors if `y` holds only one
/// class.
pub fn roc_auc(y: &[bool], score: &[f64]) -> Result<f64, MetricError> {
    check_binary(y, score)?;
    let groups = score_groups(y, score);
    // Walk from the lowest score up; each positive earns 2 per negative below
    // it and 1 per tied negative, so the sum is twice the pair count.
    let mut neg_below: u64 = 0;
    let mut twice_wins: u128 = 0;
    let mut positives: u64 = 0;
    for g in groups.iter().rev() {
        twice_wins += u128::from(g.pos) * u128::from(2 * neg_below + g.neg);
        neg_below += g.neg;
        positives += g.pos;
    }
    if positives == 0 || neg_below == 0 {
        return Err(MetricError::SingleClass {
            metric: Metric::RocAuc,
        });
    }
    let pairs = u128::from(positives) * u128::from(neg_below);
    Ok(twice_wins as f64 / (2 * pairs) as f64)
}

/// Average precision of `score` for the labels `y` (`true` is positive):
/// `Σ (Rₖ − Rₖ₋₁) Pₖ` over the distinct scores from highest to lowest, as
/// scikit-learn's `average_precision_score` (no interpolation; tied scores
/// form one step).
///
/// Errors if `y` holds no positive.
pub fn average_precision(y: &[bool], score: &[f64]) -> Result<f64, MetricError> {
    check_binary(y, score)?;
    let groups = score_groups(y, score);
    let positives: u64 = groups.iter().map(|g| g.pos).sum();
    if positives == 0 {
        return Err(MetricError::NoPositives {
            metric: Metric::PrAuc,
        });
    }
    let (mut tp, mut fp) = (0u64, 0u64);
    let mut sum = 0.0;
    for g in &groups {
        tp += g.pos;
        fp += g.neg;
        if g.pos > 0 {
            sum += g.pos as f64 * (tp as f64 / (tp + fp) as f64);
        }
    }
    Ok(sum / positives as f64)
}

/// Applies a binary ranking metric to each class against the rest and
/// averages, after checking that every class occurs.
fn one_vs_rest(
    metric: Metric,
    codes: &[u32],
    probs: &[f64],
    n_classes: usize,
    binary_metric: fn(&[bool], &[f64]) -> Result<f64, MetricError>,
) -> Result<f64, MetricError> {
    check_multiclass_shape(probs, n_classes)?;
    check_len(codes.len(), probs.len() / n_classes)?;
    check_labels(codes, n_classes)?;
    let mut seen = vec![false; n_classes];
    for &c in codes {
        seen[c as usize] = true;
    }
    if let Some(class) = seen.iter().position(|&s| !s) {
        return Err(MetricError::MissingClass {
            metric,
            class: class as u32,
        });
    }
    let mut total = 0.0;
    let mut column = vec![0.0; codes.len()];
    let mut is_class = vec![false; codes.len()];
    for k in 0..n_classes {
        for (i, row) in probs.chunks_exact(n_classes).enumerate() {
            column[i] = row[k];
            is_class[i] = codes[i] as usize == k;
        }
        total += binary_metric(&is_class, &column)?;
    }
    Ok(total / n_classes as f64)
}

/// One-vs-rest macro-averaged ROC AUC (scikit-learn's
/// `roc_auc_score(multi_class="ovr", average="macro")`). `probs` is
/// row-major, `n_classes` per row. Errors if some class never occurs in
/// `codes`.
pub fn roc_auc_ovr(codes: &[u32], probs: &[f64], n_classes: usize) -> Result<f64, MetricError> {
    one_vs_rest(Metric::RocAuc, codes, probs, n_classes, roc_auc)
}

/// One-vs-rest macro-averaged [`average_precision`]. `probs` is row-major,
/// `n_classes` per row. Errors if some class never occurs in `codes`.
pub fn average_precision_ovr(
    codes: &[u32],
    probs: &[f64],
    n_classes: usize,
) -> Result<f64, MetricError> {
    one_vs_rest(Metric::PrAuc, codes, probs, n_classes, average_precision)
}

// ---------------------------------------------------------------------------
// Probabilistic metrics
// ---------------------------------------------------------------------------

/// Binary log loss: `−mean(y ln p + (1 − y) ln(1 − p))` with `p` the
/// probability of the positive class, clipped to
/// `[LOG_LOSS_EPS, 1 − LOG_LOSS_EPS]`.
pub fn log_loss(y: &[bool], prob: &[f64]) -> Result<f64, MetricError> {
    check_binary(y, prob)?;
    let mut sum = Sum::default();
    for (&positive, &p) in y.iter().zip(prob) {
        let p = p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS);
        sum.add(if positive { -p.ln() } else { -(1.0 - p).ln() });
    }
    Ok(sum.mean(y.len()))
}

/// Multiclass log loss: `−mean(ln p[i, codes[i]])` with probabilities
/// clipped to `[LOG_LOSS_EPS, 1 − LOG_LOSS_EPS]`. Rows are not renormalised.
/// `probs` is row-major, `n_classes` per row.
pub fn log_loss_multiclass(
    codes: &[u32],
    probs: &[f64],
    n_classes: usize,
) -> Result<f64, MetricError> {
    check_multiclass_shape(probs, n_classes)?;
    check_len(codes.len(), probs.len() / n_classes)?;
    check_labels(codes, n_classes)?;
    let mut sum = Sum::default();
    for (i, row) in probs.chunks_exact(n_classes).enumerate() {
        let p = row[codes[i] as usize];
        if !p.is_finite() {
            return Err(MetricError::NonFinite {
                what: "prediction",
                row: i,
                value: p,
            });
        }
        sum.add(-p.clamp(LOG_LOSS_EPS, 1.0 - LOG_LOSS_EPS).ln());
    }
    Ok(sum.mean(codes.len()))
}

// ---------------------------------------------------------------------------
// Thresholded binary metrics
// ---------------------------------------------------------------------------

/// The four cells of a binary confusion matrix at one threshold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct BinaryCounts {
    /// Positives predicted positive.
    pub true_positive: u64,
    /// Negatives predicted positive.
    pub false_positive: u64,
    /// Negatives predicted negative.
    pub true_negative: u64,
    /// Positives predicted negative.
    pub false_negative: u64,
}

impl BinaryCounts {
    /// Counts with rows predicted positive when `prob >= threshold`.
    pub fn at_threshold(y: &[bool], prob: &[f64], threshold: f64) -> Result<Self, MetricError> {
        check_binary(y, prob)?;
        let mut c = BinaryCounts::default();
        for (&positive, &p) in y.iter().zip(prob) {
            match (positive, p >= threshold) {
                (true, true) => c.true_positive += 1,
                (false, true) => c.false_positive += 1,
                (false, false) => c.true_negative += 1,
                (true, false) => c.false_negative += 1,
            }
        }
        Ok(c)
    }

    /// Number of rows counted.
    pub fn total(&self) -> u64 {
        self.true_positive + self.false_positive + self.true_negative + self.false_negative
    }

    /// Fraction of rows classified correctly (0 with no rows).
    pub fn accuracy(&self) -> f64 {
        ratio(self.true_positive + self.true_negative, self.total())
    }

    /// `tp / (tp + fp)`, 0 when nothing is predicted positive.
    pub fn precision(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_positive)
    }

    /// `tp / (tp + fn)`, 0 when no label is positive.
    pub fn recall(&self) -> f64 {
        ratio(self.true_positive, self.true_positive + self.false_negative)
    }

    /// `tn / (tn + fp)`, 0 when no label is negative.
    pub fn specificity(&self) -> f64 {
        ratio(self.true_negative, self.true_negative + self.false_positive)
    }

    /// `2tp / (2tp + fp + fn)`, 0 when that denominator is 0.
    pub fn f1(&self) -> f64 {
        ratio(
            2 * self.true_positive,
            2 * self.true_positive + self.false_positive + self.false_negative,
        )
    }

    /// Mean of recall and specificity over the classes present in the
    /// labels (just the one when the labels hold a single class), as
    /// scikit-learn's `balanced_accuracy_score`.
    pub fn balanced_accuracy(&self) -> f64 {
        let positives = self.true_positive + self.false_negative;
        let negatives = self.true_negative + self.false_positive;
        match (positives > 0, negatives > 0) {
            (true, true) => (self.recall() + self.specificity()) / 2.0,
            (true, false) => self.recall(),
            (false, true) => self.specificity(),
            (false, false) => 0.0,
        }
    }
}

fn ratio(num: u64, den: u64) -> f64 {
    if den == 0 {
        0.0
    } else {
        num as f64 / den as f64
    }
}

/// A multiclass confusion matrix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfusionMatrix {
    /// Number of classes; the matrix is `n_classes × n_classes`.
    pub n_classes: usize,
    /// Row = true class, column = predicted class, row-major.
    pub counts: Vec<u64>,
}

impl ConfusionMatrix {
    /// Counts each (true, predicted) pair. Errors if the slices differ in
    /// length or hold a class outside `0..n_classes`.
    pub fn from_classes(
        truth: &[u32],
        predicted: &[u32],
        n_classes: usize,
    ) -> Result<Self, MetricError> {
        if truth.len() != predicted.len() {
            return Err(MetricError::LengthMismatch {
                labels: truth.len(),
                predictions: predicted.len(),
            });
        }
        check_labels(truth, n_classes)?;
        check_labels(predicted, n_classes)?;
        let mut counts = vec![0u64; n_classes * n_classes];
        for (&t, &p) in truth.iter().zip(predicted) {
            counts[t as usize * n_classes + p as usize] += 1;
        }
        Ok(Self { n_classes, counts })
    }

    /// Rows of true class `truth` predicted as `predicted`.
    pub fn get(&self, truth: usize, predicted: usize) -> u64 {
        self.counts[truth * self.n_classes + predicted]
    }

    /// Number of rows counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().sum()
    }

    /// Rows whose true class is `class`.
    pub fn support(&self, class: usize) -> u64 {
        (0..self.n_classes).map(|p| self.get(class, p)).sum()
    }

    /// Rows predicted as `class`.
    pub fn predicted_count(&self, class: usize) -> u64 {
        (0..self.n_classes).map(|t| self.get(t, class)).sum()
    }

    /// Fraction of rows on the diagonal (0 with no rows).
    pub fn accuracy(&self) -> f64 {
        let correct = (0..self.n_classes).map(|k| self.get(k, k)).sum();
        ratio(correct, self.total())
    }

    /// Precision of `class`, 0 when it is never predicted.
    pub fn precision(&self, class: usize) -> f64 {
        ratio(self.get(class, class), self.predicted_count(class))
    }

    /// Recall of `class`, 0 when it never occurs.
    pub fn recall(&self, class: usize) -> f64 {
        ratio(self.get(class, class), self.support(class))
    }

    /// F1 of `class`, `2tp / (2tp + fp + fn)`, 0 when that denominator is 0.
    pub fn f1(&self, class: usize) -> f64 {
        let tp = self.get(class, class);
        ratio(2 * tp, self.support(class) + self.predicted_count(class))
    }

    /// Classes that occur in the labels or the predictions, the ones
    /// scikit-learn macro-averages over by default.
    fn active_classes(&self) -> Vec<usize> {
        (0..self.n_classes)
            .filter(|&k| self.support(k) > 0 || self.predicted_count(k) > 0)
            .collect()
    }

    fn macro_average(&self, per_class: impl Fn(usize) -> f64) -> f64 {
        let classes = self.active_classes();
        if classes.is_empty() {
            return 0.0;
        }
        classes.iter().map(|&k| per_class(k)).sum::<f64>() / classes.len() as f64
    }

    /// Mean precision over the classes that occur in the labels or the
    /// predictions.
    pub fn macro_precision(&self) -> f64 {
        self.macro_average(|k| self.precision(k))
    }

    /// Mean recall over the classes that occur in the labels or the
    /// predictions.
    pub fn macro_recall(&self) -> f64 {
        self.macro_average(|k| self.recall(k))
    }

    /// Mean F1 over the classes that occur in the labels or the predictions.
    pub fn macro_f1(&self) -> f64 {
        self.macro_average(|k| self.f1(k))
    }

    /// Mean recall over the classes that occur in the labels.
    pub fn balanced_accuracy(&self) -> f64 {
        let present: Vec<usize> = (0..self.n_classes)
            .filter(|&k| self.support(k) > 0)
            .collect();
        if present.is_empty() {
            return 0.0;
        }
        present.iter().map(|&k| self.recall(k)).sum::<f64>() / present.len() as f64
    }
}

// ---------------------------------------------------------------------------
// Regression metrics
// ---------------------------------------------------------------------------

/// Neumaier-compensated sum, so a million-row mean does not drift.
#[derive(Debug, Default, Clone, Copy)]
struct Sum {
    sum: f64,
    compensation: f64,
}

impl Sum {
    fn add(&mut self, x: f64) {
        let t = self.sum + x;
        if self.sum.abs() >= x.abs() {
            self.compensation += (self.sum - t) + x;
        } else {
            self.compensation += (x - t) + self.sum;
        }
        self.sum = t;
    }

    fn value(&self) -> f64 {
        self.sum + self.compensation
    }

    fn mean(&self, n: usize) -> f64 {
        self.value() / n as f64
    }
}

fn mean_of(y: &[f64], p: &[f64], term: impl Fn(f64, f64) -> f64) -> f64 {
    let mut sum = Sum::default();
    for (&y, &p) in y.iter().zip(p) {
        sum.add(term(y, p));
    }
    sum.mean(y.len())
}

/// Mean squared error.
pub fn mse(y: &[f64], pred: &[f64]) -> Result<f64, MetricError> {
    check_regression(y, pred)?;
    Ok(mean_of(y, pred, |y, p| (y - p) * (y - p)))
}

/// Root mean squared error.
pub fn rmse(y: &[f64], pred: &[f64]) -> Result<f64, MetricError> {
    mse(y, pred).map(f64::sqrt)
}

/// Mean absolute error.
pub fn mae(y: &[f64], pred: &[f64]) -> Result<f64, MetricError> {
    check_regression(y, pred)?;
    Ok(mean_of(y, pred, |y, p| (y - p).abs()))
}

/// Coefficient of determination, `1 − Σ(y − p)² / Σ(y − ȳ)²`. Errors when
/// every label is equal, where it is undefined.
pub fn r2(y: &[f64], pred: &[f64]) -> Result<f64, MetricError> {
    check_regression(y, pred)?;
    let mut total = Sum::default();
    for &v in y {
        total.add(v);
    }
    let mean = total.mean(y.len());
    let mut ss_tot = Sum::default();
    let mut ss_res = Sum::default();
    for (&v, &p) in y.iter().zip(pred) {
        ss_tot.add((v - mean) * (v - mean));
        ss_res.add((v - p) * (v - p));
    }
    let ss_tot = ss_tot.value();
    if ss_tot == 0.0 {
        return Err(MetricError::ConstantTarget { metric: Metric::R2 });
    }
    Ok(1.0 - ss_res.value() / ss_tot)
}

/// Mean absolute percentage error, `mean(|y − p| / max(|y|, ε))` with
/// `ε = f64::EPSILON`, as a fraction, like scikit-learn's. Labels of 0 give
/// huge but finite values.
pub fn mape(y: &[f64], pred: &[f64]) -> Result<f64, MetricError> {
    check_regression(y, pred)?;
    Ok(mean_of(y, pred, |y, p| {
        (y - p).abs() / y.abs().max(f64::EPSILON)
    }))
}

/// Mean Poisson deviance, `mean(2 (y ln(y / p) − (y − p)))` with
/// `y ln(y / p) = 0` when `y = 0`. Errors when a label is negative or a
/// prediction is not above 0.
pub fn poisson_deviance(y: &[f64], pred: &[f64]) -> Result<f64, MetricError> {
    check_regression(y, pred)?;
    let metric = Metric::PoissonDeviance;
    if let Some(row) = y.iter().position(|&v| v < 0.0) {
        return Err(MetricError::NegativeTarget {
            metric,
            row,
            value: y[row],
        });
    }
    if let Some(row) = pred.iter().position(|&p| p <= 0.0) {
        return Err(MetricError::NonPositivePrediction {
            metric,
            row,
            value: pred[row],
        });
    }
    Ok(mean_of(y, pred, |y, p| {
        let log_term = if y == 0.0 { 0.0 } else { y * (y / p).ln() };
        2.0 * (log_term - (y - p))
    }))
}

// ---------------------------------------------------------------------------
// Calibration
// ---------------------------------------------------------------------------

/// One bin of a reliability diagram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    /// Lower edge of the bin (exclusive, except 0 for the first bin).
    pub lower: f64,
    /// Upper edge of the bin (inclusive).
    pub upper: f64,
    /// Rows whose probability falls in the bin.
    pub count: u64,
    /// Mean predicted probability of those rows.
    pub mean_predicted: f64,
    /// Fraction of those rows that are positive.
    pub fraction_positive: f64,
}

/// Splits `[0, 1]` into `bins` equal-width bins and reports, for each bin
/// that holds a row, the mean predicted probability and the observed
/// fraction of positives (scikit-learn's `calibration_curve` with
/// `strategy="uniform"`: a probability on an inner edge belongs to the lower
/// bin).
///
/// Probabilities outside `[0, 1]` are clamped into it and rows whose
/// probability is `NaN` are skipped. Returns no bins when `bins` is 0.
///
/// # Panics
///
/// If `y` and `prob` differ in length.
pub fn calibration_table(y: &[bool], prob: &[f64], bins: usize) -> Vec<CalibrationBin> {
    assert_eq!(
        y.len(),
        prob.len(),
        "calibration_table needs one probability per label"
    );
    if bins == 0 {
        return Vec::new();
    }
    // Edges as NumPy's `linspace(0, 1, bins + 1)` computes them, so rows on
    // an edge land where scikit-learn puts them.
    let step = 1.0 / bins as f64;
    let inner: Vec<f64> = (1..bins).map(|i| i as f64 * step).collect();
    let edge = |i: usize| if i == bins { 1.0 } else { i as f64 * step };
    let mut count = vec![0u64; bins];
    let mut positives = vec![0u64; bins];
    let mut sums = vec![Sum::default(); bins];
    for (&positive, &p) in y.iter().zip(prob) {
        if p.is_nan() {
            continue;
        }
        let p = p.clamp(0.0, 1.0);
        let b = inner.partition_point(|&e| e < p);
        count[b] += 1;
        positives[b] += u64::from(positive);
        sums[b].add(p);
    }
    (0..bins)
        .filter(|&b| count[b] > 0)
        .map(|b| CalibrationBin {
            lower: edge(b),
            upper: edge(b + 1),
            count: count[b],
            mean_predicted: sums[b].value() / count[b] as f64,
            fraction_positive: positives[b] as f64 / count[b] as f64,
        })
        .collect()
}

// ---------------------------------------------------------------------------
// Threshold selection
// ---------------------------------------------------------------------------

/// What a binary classifier's decision threshold should optimise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ThresholdObjective {
    /// Highest F1.
    MaxF1,
    /// Highest balanced accuracy.
    MaxBalancedAccuracy,
    /// Highest recall among thresholds whose precision is at least this.
    PrecisionAtLeast(f64),
    /// Highest precision among thresholds whose recall is at least this.
    RecallAtLeast(f64),
    /// Lowest total cost of the errors.
    MinCost {
        /// Cost of one negative predicted positive.
        false_positive: f64,
        /// Cost of one positive predicted negative.
        false_negative: f64,
    },
}

/// A threshold picked by [`select_threshold`] and how it performs on the
/// rows it was picked on.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ThresholdChoice {
    /// Rows with `prob >= threshold` are predicted positive.
    pub threshold: f64,
    /// Precision at the threshold (0 if nothing is predicted positive).
    pub precision: f64,
    /// Recall at the threshold.
    pub recall: f64,
    /// F1 at the threshold.
    pub f1: f64,
    /// Total cost of the errors, for [`ThresholdObjective::MinCost`].
    pub cost: Option<f64>,
}

/// Picks the threshold on `prob` that best meets `objective` for the labels
/// `y`, predicting positive when `prob >= threshold`.
///
/// Every distinct probability is a candidate, evaluated in one sweep after a
/// sort (O(n log n)); tied rows always fall on the same side. For
/// [`ThresholdObjective::MinCost`] a threshold just above the highest
/// probability (predict nothing positive) is a candidate too. When
/// candidates tie on the objective, the highest threshold wins.
///
/// Returns `None` when there are no rows, `y` lacks either class, a
/// probability is not finite, a cost is negative or not finite, or no
/// threshold meets a `…AtLeast` constraint.
///
/// # Panics
///
/// If `y` and `prob` differ in length.
pub fn select_threshold(
    y: &[bool],
    prob: &[f64],
    objective: ThresholdObjective,
) -> Option<ThresholdChoice> {
    assert_eq!(
        y.len(),
        prob.len(),
        "select_threshold needs one probability per label"
    );
    if prob.iter().any(|p| !p.is_finite()) {
        return None;
    }
    let costs = match objective {
        ThresholdObjective::MinCost {
            false_positive,
            false_negative,
        } => {
            let valid = |c: f64| c.is_finite() && c >= 0.0;
            if !valid(false_positive) || !valid(false_negative) {
                return None;
            }
            Some((false_positive, false_negative))
        }
        _ => None,
    };
    let groups = score_groups(y, prob);
    let positives: u64 = groups.iter().map(|g| g.pos).sum();
    let negatives: u64 = groups.iter().map(|g| g.neg).sum();
    if positives == 0 || negatives == 0 {
        return None;
    }

    let evaluate = |threshold: f64, tp: u64, fp: u64| {
        let counts = BinaryCounts {
            true_positive: tp,
            false_positive: fp,
            true_negative: negatives - fp,
            false_negative: positives - tp,
        };
        let cost = costs.map(|(c_fp, c_fn)| {
            counts.false_positive as f64 * c_fp + counts.false_negative as f64 * c_fn
        });
        let key = match objective {
            ThresholdObjective::MaxF1 => Some(counts.f1()),
            ThresholdObjective::MaxBalancedAccuracy => Some(counts.balanced_accuracy()),
            ThresholdObjective::PrecisionAtLeast(min) => {
                (tp + fp > 0 && counts.precision() >= min).then(|| counts.recall())
            }
            ThresholdObjective::RecallAtLeast(min) => {
                (counts.recall() >= min).then(|| counts.precision())
            }
            ThresholdObjective::MinCost { .. } => cost.map(|c| -c),
        };
        let choice = ThresholdChoice {
            threshold,
            precision: counts.precision(),
            recall: counts.recall(),
            f1: counts.f1(),
            cost,
        };
        key.map(|k| (k, choice))
    };

    let mut best: Option<(f64, ThresholdChoice)> = None;
    let mut consider = |candidate: Option<(f64, ThresholdChoice)>| {
        if let Some((key, choice)) = candidate
            && best.is_none_or(|(best_key, _)| key > best_key)
        {
            best = Some((key, choice));
        }
    };
    if costs.is_some() {
        let above_all = groups[0].score.next_up();
        if above_all.is_finite() {
            consider(evaluate(above_all, 0, 0));
        }
    }
    let (mut tp, mut fp) = (0u64, 0u64);
    for g in &groups {
        tp += g.pos;
        fp += g.neg;
        consider(evaluate(g.score, tp, fp));
    }
    best.map(|(_, choice)| choice)
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOL: f64 = 1e-12;

    fn close(actual: f64, expected: f64) {
        assert!(
            (actual - expected).abs() <= TOL * expected.abs().max(1.0),
            "got {actual}, expected {expected}"
        );
    }

    fn bools(bits: &[u8]) -> Vec<bool> {
        bits.iter().map(|&b| b == 1).collect()
    }

    fn binary_target(bits: &[u8]) -> Target {
        Target::Classes {
            codes: bits.iter().map(|&b| u32::from(b)).collect(),
            n_classes: 2,
        }
    }

    // ---- Metric ----------------------------------------------------------

    #[test]
    fn names_round_trip_through_from_str_and_serde() {
        for m in Metric::ALL {
            assert_eq!(m.name().parse::<Metric>(), Ok(m));
            assert_eq!(m.to_string(), m.name());
            let json = serde_json::to_string(&m).unwrap();
            assert_eq!(json, format!("\"{}\"", m.name()));
            assert_eq!(serde_json::from_str::<Metric>(&json).unwrap(), m);
        }
        assert_eq!(
            serde_json::from_str::<Metric>("\"log_loss\"").unwrap(),
            Metric::LogLoss
        );
    }

    #[test]
    fn from_str_accepts_aliases_ignoring_case_and_dashes() {
        let check = |s: &str, m: Metric| assert_eq!(s.parse::<Metric>(), Ok(m), "{s}");
        check("auc", Metric::RocAuc);
        check("ROC-AUC", Metric::RocAuc);
        check("log_loss", Metric::LogLoss);
        check("Log-Loss", Metric::LogLoss);
        check("ap", Metric::PrAuc);
        check("average_precision", Metric::PrAuc);
        check("average-precision", Metric::PrAuc);
        check("f1_score", Metric::F1);
        check(" R2 ", Metric::R2);
        check("poisson", Metric::PoissonDeviance);
    }

    #[test]
    fn unknown_metric_error_lists_valid_names() {
        let err = "mse".parse::<Metric>().unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("Unknown metric `mse`"), "{msg}");
        for m in Metric::ALL {
            assert!(msg.contains(m.name()), "{msg} lacks {}", m.name());
        }
    }

    #[test]
    fn direction_task_and_defaults_fit_together() {
        assert!(Metric::RocAuc.higher_is_better());
        assert!(Metric::R2.higher_is_better());
        assert!(!Metric::LogLoss.higher_is_better());
        assert!(!Metric::Rmse.higher_is_better());
        assert!(!Metric::PoissonDeviance.higher_is_better());
        assert!(Metric::RocAuc.applies_to(Task::Multiclass));
        assert!(!Metric::RocAuc.applies_to(Task::Regression));
        assert!(!Metric::Mae.applies_to(Task::Binary));
        assert_eq!(Metric::default_for(Task::Binary), Metric::RocAuc);
        assert_eq!(Metric::default_for(Task::Multiclass), Metric::LogLoss);
        assert_eq!(Metric::default_for(Task::Regression), Metric::Rmse);
        for task in [Task::Binary, Task::Multiclass, Task::Regression] {
            let all = all_for(task);
            assert_eq!(all[0], Metric::default_for(task));
            assert!(all.iter().all(|m| m.applies_to(task)), "{task}");
        }
    }

    // ---- ROC AUC and average precision -----------------------------------

    #[test]
    fn roc_auc_counts_ordered_pairs() {
        // Positives 0.35 and 0.8 against negatives 0.1 and 0.4: 0.35 beats
        // one, 0.8 beats both, so 3 of 4 pairs.
        let y = bools(&[0, 0, 1, 1]);
        close(roc_auc(&y, &[0.1, 0.4, 0.35, 0.8]).unwrap(), 0.75);
    }

    #[test]
    fn roc_auc_gives_tied_pairs_half_credit() {
        // Positives {0.5, 0.9}, negatives {0.5, 0.2}: the 0.5/0.5 tie is half
        // a pair, the other three are wins: 3.5 / 4.
        let y = bools(&[0, 1, 0, 1]);
        close(roc_auc(&y, &[0.5, 0.5, 0.2, 0.9]).unwrap(), 0.875);
        // All scores tied: exactly chance.
        close(roc_auc(&y, &[0.3; 4]).unwrap(), 0.5);
        // -0.0 and 0.0 are the same score.
        close(roc_auc(&bools(&[0, 1]), &[0.0, -0.0]).unwrap(), 0.5);
    }

    #[test]
    fn roc_auc_of_a_million_interleaved_rows_is_exact() {
        // Score i, positive when i is odd: the positive 2j+1 beats the j+1
        // negatives below it, so AUC = Σ(j+1) / m² = (m+1) / 2m.
        let m = 500_000usize;
        let score: Vec<f64> = (0..2 * m).map(|i| i as f64).collect();
        let y: Vec<bool> = (0..2 * m).map(|i| i % 2 == 1).collect();
        close(
            roc_auc(&y, &score).unwrap(),
            (m + 1) as f64 / (2 * m) as f64,
        );
    }

    #[test]
    fn roc_auc_with_one_class_is_an_error() {
        assert_eq!(
            roc_auc(&bools(&[1, 1, 1]), &[0.2, 0.5, 0.9]),
            Err(MetricError::SingleClass {
                metric: Metric::RocAuc
            })
        );
        let err = score(
            Metric::RocAuc,
            &binary_target(&[0, 0]),
            &Predictions::Binary(vec![0.1, 0.2]),
        )
        .unwrap_err();
        assert!(matches!(err, MetricError::SingleClass { .. }), "{err}");
    }

    #[test]
    fn average_precision_is_a_step_sum_over_recall() {
        // Descending: 0.8 (+) P=1 R=½; 0.4 (−); 0.35 (+) P=⅔ R=1.
        // AP = ½·1 + ½·⅔ = 5/6.
        let y = bools(&[0, 0, 1, 1]);
        close(
            average_precision(&y, &[0.1, 0.4, 0.35, 0.8]).unwrap(),
            5.0 / 6.0,
        );
    }

    #[test]
    fn average_precision_treats_tied_scores_as_one_step() {
        // 0.9 holds one positive and one negative: P=½ at R=½; then 0.5 (+):
        // P=⅔ at R=1. AP = ½·½ + ½·⅔ = 7/12.
        let y = bools(&[1, 0, 1, 0]);
        close(
            average_precision(&y, &[0.9, 0.9, 0.5, 0.1]).unwrap(),
            7.0 / 12.0,
        );
    }

    #[test]
    fn average_precision_without_positives_is_an_error() {
        assert_eq!(
            average_precision(&bools(&[0, 0]), &[0.1, 0.9]),
            Err(MetricError::NoPositives {
                metric: Metric::PrAuc
            })
        );
        // Without negatives it is defined: every step has precision 1.
        close(
            average_precision(&bools(&[1, 1]), &[0.1, 0.9]).unwrap(),
            1.0,
        );
    }

    fn three_class_example() -> (Vec<u32>, Vec<f64>) {
        let codes = vec![0, 1, 2, 0, 1, 2];
        #[rustfmt::skip]
        let probs = vec![
            0.6, 0.3, 0.1,
            0.2, 0.5, 0.3,
            0.1, 0.3, 0.6,
            0.3, 0.4, 0.3,
            0.5, 0.2, 0.3,
            0.2, 0.2, 0.6,
        ];
        (codes, probs)
    }

    #[test]
    fn multiclass_roc_auc_is_the_one_vs_rest_macro_average() {
        // Class 0: positives {0.6, 0.3} vs {0.2, 0.1, 0.5, 0.2}: 4 + 3 = 7/8.
        // Class 1: positives {0.5, 0.2} vs {0.3, 0.3, 0.4, 0.2}: 4 + ½ = 4.5/8.
        // Class 2: positives {0.6, 0.6} vs {0.1, 0.3, 0.3, 0.3}: 8/8.
        let (codes, probs) = three_class_example();
        let expected = (7.0 / 8.0 + 4.5 / 8.0 + 1.0) / 3.0;
        close(roc_auc_ovr(&codes, &probs, 3).unwrap(), expected);
        let target = Target::Classes {
            codes,
            n_classes: 3,
        };
        let pred = Predictions::Multiclass {
            probs,
            n_classes: 3,
        };
        close(score(Metric::RocAuc, &target, &pred).unwrap(), 0.8125);
    }

    #[test]
    fn multiclass_pr_auc_is_the_one_vs_rest_macro_average() {
        // Class 0 descending: 0.6 (+) P=1; 0.5 (−); 0.3 (+) P=⅔ → ½ + ⅓ = 5/6.
        // Class 1 descending: 0.5 (+) P=1; 0.4, 0.3, 0.3 (−); 0.2 {+, −}
        //   P=2/6 → ½ + ⅙ = ⅔.
        // Class 2: both positives (0.6) on top → 1.
        let (codes, probs) = three_class_example();
        let expected = (5.0 / 6.0 + 2.0 / 3.0 + 1.0) / 3.0;
        close(average_precision_ovr(&codes, &probs, 3).unwrap(), expected);
    }

    #[test]
    fn multiclass_roc_auc_with_a_missing_class_is_an_error() {
        let codes = vec![0, 1, 0];
        let probs = vec![0.5, 0.3, 0.2, 0.1, 0.8, 0.1, 0.6, 0.2, 0.2];
        assert_eq!(
            roc_auc_ovr(&codes, &probs, 3),
            Err(MetricError::MissingClass {
                metric: Metric::RocAuc,
                class: 2
            })
        );
    }

    // ---- Log loss --------------------------------------------------------

    #[test]
    fn binary_log_loss_averages_negative_log_likelihood() {
        let y = bools(&[1, 0]);
        let expected = -(0.8f64.ln() + 0.6f64.ln()) / 2.0;
        close(log_loss(&y, &[0.8, 0.4]).unwrap(), expected);
        let via_score = score(
            Metric::LogLoss,
            &binary_target(&[1, 0]),
            &Predictions::Binary(vec![0.8, 0.4]),
        )
        .unwrap();
        close(via_score, expected);
    }

    #[test]
    fn log_loss_clips_certain_wrong_answers() {
        // p = 1 for a negative is clipped to 1 − 1e-15, so the loss is
        // −ln(1 − (1 − 1e-15)) ≈ 34.5 (1 − 1e-15 rounds to a double), not
        // infinity.
        let expected = -(1.0 - (1.0 - 1e-15f64)).ln();
        close(log_loss(&bools(&[0]), &[1.0]).unwrap(), expected);
        assert!((expected - 34.54).abs() < 0.01, "{expected}");
        close(log_loss(&bools(&[1]), &[0.0]).unwrap(), -(1e-15f64).ln());
    }

    #[test]
    fn multiclass_log_loss_uses_the_true_class_column() {
        let codes = [0, 2];
        let probs = [0.7, 0.2, 0.1, 0.1, 0.3, 0.6];
        let expected = -(0.7f64.ln() + 0.6f64.ln()) / 2.0;
        close(log_loss_multiclass(&codes, &probs, 3).unwrap(), expected);
    }

    // ---- Thresholded metrics ---------------------------------------------

    #[test]
    fn binary_thresholded_metrics_count_half_as_positive() {
        // Predicted at 0.5: [1, 1, 0, 1, 0, 0, 1] → TP 2, FN 1, FP 2, TN 2.
        let bits = [1, 1, 1, 0, 0, 0, 0];
        let target = binary_target(&bits);
        let pred = Predictions::Binary(vec![0.9, 0.5, 0.2, 0.7, 0.1, 0.3, 0.6]);
        let s = |m| score(m, &target, &pred).unwrap();
        close(s(Metric::Accuracy), 4.0 / 7.0);
        close(s(Metric::BalancedAccuracy), (2.0 / 3.0 + 2.0 / 4.0) / 2.0);
        close(s(Metric::Precision), 2.0 / 4.0);
        close(s(Metric::Recall), 2.0 / 3.0);
        close(s(Metric::F1), 4.0 / 7.0);
    }

    #[test]
    fn precision_with_no_predicted_positive_is_zero() {
        let c = BinaryCounts::at_threshold(&bools(&[1, 0]), &[0.1, 0.2], 0.5).unwrap();
        assert_eq!(c.precision(), 0.0);
        assert_eq!(c.f1(), 0.0);
        assert_eq!(c.balanced_accuracy(), 0.5);
    }

    #[test]
    fn two_column_multiclass_predictions_score_like_binary_ones() {
        let target = binary_target(&[0, 1, 1, 0]);
        let p1 = [0.2, 0.7, 0.4, 0.6];
        let binary = Predictions::Binary(p1.to_vec());
        let two_col = Predictions::Multiclass {
            probs: p1.iter().flat_map(|&p| [1.0 - p, p]).collect(),
            n_classes: 2,
        };
        for m in Metric::all_for(Task::Binary) {
            assert_eq!(
                score(m, &target, &binary),
                score(m, &target, &two_col),
                "{m}"
            );
        }
    }

    #[test]
    fn multiclass_thresholded_metrics_macro_average_argmax_classes() {
        // Truth [0,0,1,1,2,2], argmax [0,1,1,1,2,0].
        // Class 0: P ½ R ½ F1 ½; class 1: P ⅔ R 1 F1 ⅘; class 2: P 1 R ½ F1 ⅔.
        let target = Target::Classes {
            codes: vec![0, 0, 1, 1, 2, 2],
            n_classes: 3,
        };
        #[rustfmt::skip]
        let pred = Predictions::Multiclass {
            probs: vec![
                0.8, 0.1, 0.1,
                0.3, 0.6, 0.1,
                0.1, 0.8, 0.1,
                0.2, 0.5, 0.3,
                0.1, 0.2, 0.7,
                0.5, 0.2, 0.3,
            ],
            n_classes: 3,
        };
        let s = |m| score(m, &target, &pred).unwrap();
        close(s(Metric::Accuracy), 4.0 / 6.0);
        close(s(Metric::BalancedAccuracy), (0.5 + 1.0 + 0.5) / 3.0);
        close(s(Metric::Precision), (0.5 + 2.0 / 3.0 + 1.0) / 3.0);
        close(s(Metric::Recall), (0.5 + 1.0 + 0.5) / 3.0);
        close(s(Metric::F1), (0.5 + 0.8 + 2.0 / 3.0) / 3.0);
    }

    #[test]
    fn macro_averages_skip_classes_absent_from_truth_and_predictions() {
        // Class 3 never occurs: averages run over classes 0..3 only.
        let cm = ConfusionMatrix::from_classes(&[0, 1, 2, 2], &[0, 1, 2, 1], 4).unwrap();
        assert_eq!(cm.get(2, 1), 1);
        assert_eq!(cm.total(), 4);
        close(cm.macro_recall(), (1.0 + 1.0 + 0.5) / 3.0);
        close(cm.macro_precision(), (1.0 + 0.5 + 1.0) / 3.0);
        close(cm.balanced_accuracy(), (1.0 + 1.0 + 0.5) / 3.0);
    }

    #[test]
    fn confusion_matrix_counts_rows_by_truth_then_prediction() {
        let cm =
            ConfusionMatrix::from_classes(&[0, 0, 1, 2, 2, 2], &[0, 1, 1, 2, 0, 2], 3).unwrap();
        assert_eq!(cm.counts, vec![1, 1, 0, 0, 1, 0, 1, 0, 2]);
        assert_eq!(cm.support(2), 3);
        assert_eq!(cm.predicted_count(0), 2);
        assert_eq!(
            ConfusionMatrix::from_classes(&[0, 3], &[0, 1], 3),
            Err(MetricError::LabelOutOfRange {
                row: 1,
                label: 3,
                n_classes: 3
            })
        );
    }

    // ---- Regression ------------------------------------------------------

    const Y: [f64; 4] = [3.0, -0.5, 2.0, 7.0];
    const P: [f64; 4] = [2.5, 0.0, 2.0, 8.0];

    #[test]
    fn rmse_mae_and_r2_of_a_small_example() {
        // Errors 0.5, −0.5, 0, −1: MSE = 1.5/4, MAE = 2/4.
        // ȳ = 2.875, Σ(y − ȳ)² = 29.1875, so R² = 1 − 1.5/29.1875.
        close(mse(&Y, &P).unwrap(), 0.375);
        close(rmse(&Y, &P).unwrap(), 0.375f64.sqrt());
        close(mae(&Y, &P).unwrap(), 0.5);
        close(r2(&Y, &P).unwrap(), 1.0 - 1.5 / 29.1875);
        let target = Target::Values(Y.to_vec());
        let pred = Predictions::Regression(P.to_vec());
        close(
            score(Metric::Rmse, &target, &pred).unwrap(),
            0.375f64.sqrt(),
        );
    }

    #[test]
    fn mape_divides_by_the_label_magnitude() {
        // 0.5/3 + 0.5/0.5 + 0/2 + 1/7, over 4.
        close(
            mape(&Y, &P).unwrap(),
            (0.5 / 3.0 + 1.0 + 0.0 + 1.0 / 7.0) / 4.0,
        );
        // A zero label divides by machine epsilon instead.
        close(mape(&[0.0], &[1.0]).unwrap(), 1.0 / f64::EPSILON);
    }

    #[test]
    fn poisson_deviance_treats_zero_labels_as_zero_log_term() {
        let y = [2.0, 0.0, 1.0, 4.0];
        let p = [0.5, 0.5, 2.0, 2.0];
        let terms = [
            2.0 * (2.0 * 4.0f64.ln() - 1.5),
            2.0 * 0.5,
            2.0 * (0.5f64.ln() + 1.0),
            2.0 * (4.0 * 2.0f64.ln() - 2.0),
        ];
        close(
            poisson_deviance(&y, &p).unwrap(),
            terms.iter().sum::<f64>() / 4.0,
        );
    }

    #[test]
    fn poisson_deviance_rejects_non_positive_predictions_and_negative_labels() {
        assert_eq!(
            poisson_deviance(&[1.0, 2.0], &[1.0, 0.0]),
            Err(MetricError::NonPositivePrediction {
                metric: Metric::PoissonDeviance,
                row: 1,
                value: 0.0
            })
        );
        assert!(matches!(
            poisson_deviance(&[-1.0], &[1.0]),
            Err(MetricError::NegativeTarget { row: 0, .. })
        ));
    }

    #[test]
    fn r2_of_a_constant_target_is_an_error() {
        assert_eq!(
            r2(&[2.0, 2.0], &[2.0, 2.0]),
            Err(MetricError::ConstantTarget { metric: Metric::R2 })
        );
    }

    // ---- score() input checks --------------------------------------------

    #[test]
    fn score_rejects_mismatched_lengths_kinds_and_labels() {
        let err = |m, t: &Target, p: &Predictions| score(m, t, p).unwrap_err();
        assert_eq!(
            err(
                Metric::Rmse,
                &Target::Values(vec![1.0, 2.0]),
                &Predictions::Regression(vec![1.0])
            ),
            MetricError::LengthMismatch {
                labels: 2,
                predictions: 1
            }
        );
        assert_eq!(
            err(
                Metric::RocAuc,
                &binary_target(&[0, 1]),
                &Predictions::Binary(vec![0.5, 0.5, 0.5])
            ),
            MetricError::LengthMismatch {
                labels: 2,
                predictions: 3
            }
        );
        assert_eq!(
            err(
                Metric::Rmse,
                &binary_target(&[0, 1]),
                &Predictions::Binary(vec![0.5, 0.5])
            ),
            MetricError::NotApplicable {
                metric: Metric::Rmse,
                task: Task::Binary
            }
        );
        assert_eq!(
            err(
                Metric::Accuracy,
                &binary_target(&[0, 1]),
                &Predictions::Regression(vec![0.5, 0.5])
            ),
            MetricError::PredictionsMismatch {
                target: Task::Binary,
                predictions: Task::Regression
            }
        );
        assert_eq!(
            err(
                Metric::Mae,
                &Target::Values(vec![1.0]),
                &Predictions::Binary(vec![0.5])
            ),
            MetricError::PredictionsMismatch {
                target: Task::Regression,
                predictions: Task::Binary
            }
        );
        let three = Target::Classes {
            codes: vec![0, 1, 2],
            n_classes: 3,
        };
        assert_eq!(
            err(Metric::LogLoss, &three, &Predictions::Binary(vec![0.5; 3])),
            MetricError::ClassCountMismatch {
                target: 3,
                predictions: 2
            }
        );
        assert_eq!(
            err(
                Metric::Accuracy,
                &Target::Classes {
                    codes: vec![0, 5],
                    n_classes: 2
                },
                &Predictions::Binary(vec![0.5; 2])
            ),
            MetricError::LabelOutOfRange {
                row: 1,
                label: 5,
                n_classes: 2
            }
        );
        assert_eq!(
            err(
                Metric::Rmse,
                &Target::Values(vec![]),
                &Predictions::Regression(vec![])
            ),
            MetricError::Empty
        );
        assert!(matches!(
            err(
                Metric::RocAuc,
                &binary_target(&[0, 1]),
                &Predictions::Binary(vec![f64::NAN, 0.5])
            ),
            MetricError::NonFinite { row: 0, .. }
        ));
    }

    // ---- Calibration -----------------------------------------------------

    #[test]
    fn calibration_table_omits_empty_bins_and_puts_edges_in_the_lower_bin() {
        let y = bools(&[0, 1, 0, 1, 1]);
        let prob = [0.05, 0.15, 0.5, 0.55, 1.0];
        // Four bins of width ¼: [0, ¼] holds rows 0 and 1, (¼, ½] holds the
        // edge value 0.5, (½, ¾] holds 0.55 and (¾, 1] holds 1.0.
        let table = calibration_table(&y, &prob, 4);
        let summary: Vec<(f64, f64, u64)> =
            table.iter().map(|b| (b.lower, b.upper, b.count)).collect();
        assert_eq!(
            summary,
            vec![
                (0.0, 0.25, 2),
                (0.25, 0.5, 1),
                (0.5, 0.75, 1),
                (0.75, 1.0, 1)
            ]
        );
        close(table[0].mean_predicted, 0.1);
        close(table[0].fraction_positive, 0.5);
        // Eight bins leave some empty: they are omitted.
        let table = calibration_table(&y, &prob, 8);
        let lowers: Vec<f64> = table.iter().map(|b| b.lower).collect();
        assert_eq!(lowers, vec![0.0, 0.125, 0.375, 0.5, 0.875]);
    }

    #[test]
    fn calibration_table_averages_probabilities_and_labels_per_bin() {
        let y = bools(&[0, 1, 0, 1, 1]);
        let prob = [0.05, 0.15, 0.6, 0.7, 0.95];
        let table = calibration_table(&y, &prob, 2);
        assert_eq!(table.len(), 2);
        assert_eq!(table[1].count, 3);
        close(table[1].mean_predicted, (0.6 + 0.7 + 0.95) / 3.0);
        close(table[1].fraction_positive, 2.0 / 3.0);
    }

    // ---- Threshold selection ---------------------------------------------

    // Descending by probability:
    //   t     tp fp  precision recall  F1    balanced acc.
    //   0.9   1  0   1         ⅓       ½     ⅔
    //   0.8   2  0   1         ⅔       ⅘     ⅚
    //   0.7   2  1   ⅔         ⅔       ⅔     ⅔
    //   0.6   3  1   ¾         1       6/7   ⅚
    //   0.3   3  2   ⅗         1       ¾     ⅔
    //   0.2   3  3   ½         1       ⅔     ½
    const TY: [u8; 6] = [1, 1, 0, 1, 0, 0];
    const TP: [f64; 6] = [0.9, 0.8, 0.7, 0.6, 0.3, 0.2];

    fn pick(objective: ThresholdObjective) -> Option<ThresholdChoice> {
        select_threshold(&bools(&TY), &TP, objective)
    }

    #[test]
    fn max_f1_picks_the_threshold_with_the_best_f1() {
        let c = pick(ThresholdObjective::MaxF1).unwrap();
        assert_eq!(c.threshold, 0.6);
        close(c.precision, 0.75);
        close(c.recall, 1.0);
        close(c.f1, 6.0 / 7.0);
        assert_eq!(c.cost, None);
    }

    #[test]
    fn max_balanced_accuracy_breaks_ties_toward_the_higher_threshold() {
        // 0.8 and 0.6 both reach ⅚.
        assert_eq!(
            pick(ThresholdObjective::MaxBalancedAccuracy)
                .unwrap()
                .threshold,
            0.8
        );
    }

    #[test]
    fn precision_at_least_maximises_recall_under_the_constraint() {
        assert_eq!(
            pick(ThresholdObjective::PrecisionAtLeast(0.75))
                .unwrap()
                .threshold,
            0.6
        );
        assert_eq!(
            pick(ThresholdObjective::PrecisionAtLeast(0.9))
                .unwrap()
                .threshold,
            0.8
        );
        assert_eq!(pick(ThresholdObjective::PrecisionAtLeast(1.01)), None);
    }

    #[test]
    fn recall_at_least_maximises_precision_under_the_constraint() {
        assert_eq!(
            pick(ThresholdObjective::RecallAtLeast(1.0))
                .unwrap()
                .threshold,
            0.6
        );
        assert_eq!(
            pick(ThresholdObjective::RecallAtLeast(0.5))
                .unwrap()
                .threshold,
            0.8
        );
    }

    #[test]
    fn min_cost_weighs_false_negatives_against_false_positives() {
        // Costs fp·1 + fn·5: 10, 5, 6, 1, 2, 3 → 0.6.
        let c = pick(ThresholdObjective::MinCost {
            false_positive: 1.0,
            false_negative: 5.0,
        })
        .unwrap();
        assert_eq!((c.threshold, c.cost), (0.6, Some(1.0)));
        // Costs fp·10 + fn·1: 2, 1, 11, 10, 20, 30; none positive 3 → 0.8.
        let c = pick(ThresholdObjective::MinCost {
            false_positive: 10.0,
            false_negative: 1.0,
        })
        .unwrap();
        assert_eq!((c.threshold, c.cost), (0.8, Some(1.0)));
    }

    #[test]
    fn min_cost_can_choose_to_predict_nothing_positive() {
        // At 0.9: fp + fn = 5 + 1; at 0.1: fp = 5; above 0.9: fn = 1.
        let c = select_threshold(
            &bools(&[0, 1]),
            &[0.9, 0.1],
            ThresholdObjective::MinCost {
                false_positive: 5.0,
                false_negative: 1.0,
            },
        )
        .unwrap();
        assert!(
            c.threshold > 0.9 && c.threshold < 0.9 + 1e-12,
            "{}",
            c.threshold
        );
        assert_eq!((c.precision, c.recall, c.cost), (0.0, 0.0, Some(1.0)));
    }

    #[test]
    fn tied_probabilities_move_across_the_threshold_together() {
        // At 0.8 both tied rows are positive: P = ½, F1 = ½; at 0.4: F1 = ⅔.
        let c = select_threshold(
            &bools(&[1, 0, 1, 0]),
            &[0.8, 0.8, 0.4, 0.4],
            ThresholdObjective::MaxF1,
        )
        .unwrap();
        assert_eq!(c.threshold, 0.4);
        close(c.f1, 2.0 / 3.0);
        let c = select_threshold(
            &bools(&[1, 0, 1, 0]),
            &[0.8, 0.8, 0.4, 0.4],
            ThresholdObjective::PrecisionAtLeast(0.5),
        )
        .unwrap();
        assert_eq!((c.threshold, c.recall), (0.4, 1.0));
    }

    #[test]
    fn select_threshold_needs_both_classes_and_valid_costs() {
        assert_eq!(
            select_threshold(&bools(&[1, 1]), &[0.2, 0.4], ThresholdObjective::MaxF1),
            None
        );
        assert_eq!(
            select_threshold(
                &bools(&[1, 0]),
                &[0.2, 0.4],
                ThresholdObjective::MinCost {
                    false_positive: -1.0,
                    false_negative: 1.0
                }
            ),
            None
        );
    }
}
