//! What `kiln explain` reports: global importance, the per-row attributions
//! behind a beeswarm summary, local explanations, permutation importance,
//! partial dependence with ICE curves and the strongest interactions. One
//! [`Explanation`] is what `--json` prints, what the HTML page draws
//! ([`crate::html::page`]) and (without its points) the summary stored with
//! a model version.

use serde::{Deserialize, Serialize};

/// How attributions were computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Exact TreeSHAP, path-dependent: features outside a coalition follow
    /// the training rows down both branches (shap's `tree_path_dependent`).
    TreePathDependent,
    /// Exact TreeSHAP against a background sample (shap's `interventional`).
    TreeInterventional,
    /// Exact SHAP of a linear model on its raw score, against the background
    /// sample's mean encoded inputs (features taken as independent).
    Linear,
    /// Model-agnostic: Shapley values estimated from antithetic permutations
    /// of the columns against a background sample; they add up exactly.
    Permutation,
}

impl Method {
    pub fn as_str(self) -> &'static str {
        match self {
            Method::TreePathDependent => "tree_path_dependent",
            Method::TreeInterventional => "tree_interventional",
            Method::Linear => "linear",
            Method::Permutation => "permutation",
        }
    }

    /// Whether the values are exact Shapley values (not estimates).
    pub fn exact(self) -> bool {
        !matches!(self, Method::Permutation)
    }
}

/// A cell of the user's table: a number, a category or missing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Value {
    Number(f64),
    Text(String),
    Missing,
}

impl Value {
    pub fn as_number(&self) -> Option<f64> {
        match self {
            Value::Number(v) if v.is_finite() => Some(*v),
            _ => None,
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Number(v) => write!(f, "{}", short(*v)),
            Value::Text(s) => f.write_str(s),
            Value::Missing => f.write_str("(missing)"),
        }
    }
}

/// A number with at most 4 significant decimals, without trailing zeros.
pub fn short(v: f64) -> String {
    if v == v.trunc() && v.abs() < 1e15 {
        return format!("{v:.0}");
    }
    let s = format!("{v:.4}");
    s.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// What the attributions explain.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Output {
    /// "raw score", "log-odds of `yes`", "probability of `yes`", "predicted `count`"…
    pub name: String,
    /// The class whose score is explained (classifiers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
}

/// One input column across the explained rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColumnSummary {
    pub column: String,
    /// `numeric` or `categorical` (strings, booleans shown as categories).
    pub kind: ColumnKind,
    /// Mean |attribution|: the global importance.
    pub mean_abs: f64,
    /// Mean attribution (signed).
    pub mean: f64,
    /// One point per explained row, in row order: the row's value of the
    /// column and its attribution. Empty in the stored summary.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub points: Vec<Point>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColumnKind {
    Numeric,
    Categorical,
}

/// A row's value of a column and the column's attribution in that row.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Point {
    pub value: Value,
    pub shap: f64,
}

/// One row's explanation: expected value + contributions = prediction
/// (on [`Explanation::output`]'s scale).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Local {
    /// The row's index in the explained table (0-based).
    pub row: usize,
    /// The model's output for the row, on the explained scale.
    pub output: f64,
    /// The prediction as the user sees it (a probability, a value, a class).
    pub prediction: String,
    /// Every column, largest |shap| first.
    pub contributions: Vec<Contribution>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Contribution {
    pub column: String,
    pub value: Value,
    pub shap: f64,
}

/// How much a metric worsens when a column's values are shuffled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Importance {
    pub column: String,
    /// Mean worsening of the metric over the repeats (positive: the model
    /// needs the column).
    pub mean: f64,
    /// Standard deviation over the repeats.
    pub std: f64,
}

/// Permutation importance on labelled rows.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PermutationImportance {
    /// The metric (e.g. `rmse`, `log_loss`), and whether larger is better.
    pub metric: String,
    pub larger_is_better: bool,
    /// The metric on the unshuffled rows.
    pub baseline: f64,
    pub repeats: usize,
    pub rows: usize,
    /// Largest mean worsening first.
    pub columns: Vec<Importance>,
}

/// Partial dependence of the prediction on one column, with ICE curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dependence {
    pub column: String,
    pub kind: ColumnKind,
    /// The values the column is set to (numbers ascending, or categories).
    pub grid: Vec<Value>,
    /// The mean prediction at each grid value (the partial dependence).
    pub average: Vec<f64>,
    /// Individual conditional expectation: one curve per sampled row.
    pub ice: Vec<Vec<f64>>,
}

/// A pair of columns and their mean |SHAP interaction value|.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Interaction {
    pub a: String,
    pub b: String,
    pub mean_abs: f64,
}

/// Everything `kiln explain` found about a model on a table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Explanation {
    /// The model as the user named it (`bikes@3`, a file name).
    pub model: String,
    pub method: Method,
    /// Why this method was used when the exact one could not be (a model
    /// kind TreeSHAP cannot explain), or other caveats on the method.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method_note: Option<String>,
    pub output: Output,
    /// The mean output over the background (what contributions start from).
    pub expected_value: f64,
    /// Rows whose attributions were computed.
    pub rows: usize,
    /// Rows in the background sample (interventional, linear and
    /// permutation methods).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub background_rows: Option<usize>,
    /// Every input column, largest mean |SHAP| first.
    pub columns: Vec<ColumnSummary>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub local: Vec<Local>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub permutation: Option<PermutationImportance>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dependence: Vec<Dependence>,
    /// The strongest interactions (tree models), largest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub interactions: Vec<Interaction>,
    /// Things the user should know: a small background sample, rows
    /// sampled, classes not shown.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Explanation {
    /// The summary stored with a model version: everything but the points,
    /// the local rows and the ICE curves (a few kilobytes).
    pub fn summary(&self) -> Explanation {
        let mut s = self.clone();
        s.columns.iter_mut().for_each(|c| c.points.clear());
        s.local.clear();
        s.dependence.iter_mut().for_each(|d| d.ice.clear());
        s
    }
}
