//! Explanations served with predictions (`"explain": true` on kiln's
//! predict endpoint): each row's top columns by |SHAP|, with their values.
//!
//! Tree models (kiln's boosted trees, LightGBM and XGBoost files with their
//! training weights) are explained by exact path-dependent TreeSHAP on the
//! raw score, which needs nothing but the model: well under a millisecond
//! a row for a 200-tree model. Other kiln models are explained against the
//! background sample `kiln train` stored with the run (exact linear SHAP,
//! or permutation SHAP for ensembles); a model with neither (an ONNX file,
//! a tree file without weights) is refused with a reason.

use arrow_array::RecordBatch;
use kiln_explain::report::Value as Cell;
use kiln_explain::{Choice, Data, Ensemble, Explainer, Subject};
use serde_json::{Value, json};
use std::sync::{Arc, OnceLock};

use crate::Predictor;

/// What a request asked to be explained.
#[derive(Debug, Clone, PartialEq)]
pub struct ExplainRequest {
    /// Columns listed per row, largest |SHAP| first (the rest are summed).
    pub top: usize,
    /// The class explained (classifiers); the positive (or first) class by
    /// default.
    pub class: Option<String>,
}

/// What a served model keeps between explained requests: its trees,
/// flattened for TreeSHAP on the first request (a few hundred microseconds
/// for a 200-tree model, not paid again), and its background sample in the
/// model's form.
#[derive(Debug, Default)]
pub struct Cache {
    trees: OnceLock<Option<Arc<Ensemble>>>,
    /// The version's background sample in the model's form, or why it
    /// does not fit the model.
    background: OnceLock<Result<Option<Data>, String>>,
}

/// Whether explaining rows of this model is cheap enough to run on the
/// server's async threads: path-dependent TreeSHAP, well under a
/// millisecond a row. The other methods score the model hundreds of times
/// a row and belong on a blocking thread.
pub fn cheap(predictor: &Predictor, cache: &Cache) -> bool {
    let subject = match predictor {
        Predictor::Kiln(m) => Subject::Kiln(m),
        Predictor::Imported(m) => Subject::Imported(m),
    };
    let trees = cache
        .trees
        .get_or_init(|| kiln_explain::explain::trees_of(subject));
    kiln_explain::explain::method_with(subject, Choice::Auto, trees.as_deref())
        == kiln_explain::report::Method::TreePathDependent
}

/// Columns listed per row when the request does not say.
pub const DEFAULT_TOP: usize = 5;

impl ExplainRequest {
    /// Reads the request body's `explain`: `true`, or `{"top": K, "class":
    /// C}`; `None` for absent or `false`.
    pub fn parse(v: Option<&Value>) -> Result<Option<ExplainRequest>, String> {
        match v {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
            Some(Value::Bool(true)) => Ok(Some(ExplainRequest {
                top: DEFAULT_TOP,
                class: None,
            })),
            Some(Value::Object(o)) => {
                let top = match o.get("top") {
                    None => DEFAULT_TOP,
                    Some(t) => t
                        .as_u64()
                        .filter(|&t| t > 0)
                        .ok_or("`explain.top` must be a whole number above 0")?
                        as usize,
                };
                let class = match o.get("class") {
                    None | Some(Value::Null) => None,
                    Some(Value::String(c)) => Some(c.clone()),
                    Some(other) => Some(other.to_string()),
                };
                if let Some(k) = o.keys().find(|k| *k != "top" && *k != "class") {
                    return Err(format!(
                        "`explain.{k}` is not an option: `explain` takes `top` and `class`"
                    ));
                }
                Ok(Some(ExplainRequest { top, class }))
            }
            Some(_) => Err("`explain` must be true, false or {\"top\": K, \"class\": C}".into()),
        }
    }
}

/// The explanation of every row of `batch` (typed by the model's
/// signature): `{"method", "output", "class", "expected_value", "rows":
/// [{"output", "top": [{"column", "value", "shap"}], "rest"}]}`, where a
/// row's `output` is `expected_value` plus its columns' SHAP values (`top`
/// and `rest`). The second value is each row's entry as JSON text, for
/// the prediction log.
pub fn explain(
    predictor: &Predictor,
    batch: &RecordBatch,
    background: Option<&[RecordBatch]>,
    request: &ExplainRequest,
    cache: &Cache,
) -> Result<(Value, Vec<String>), String> {
    let subject = match predictor {
        Predictor::Kiln(m) => Subject::Kiln(m),
        Predictor::Imported(m) => Subject::Imported(m),
    };
    let data = kiln_explain::explain::data_of(subject, std::slice::from_ref(batch))
        .map_err(|e| e.to_string())?;
    let trees = cache
        .trees
        .get_or_init(|| kiln_explain::explain::trees_of(subject))
        .clone();
    let method = kiln_explain::explain::method_with(subject, Choice::Auto, trees.as_deref());
    let background = match background {
        Some(bg) if method != kiln_explain::report::Method::TreePathDependent => cache
            .background
            .get_or_init(|| {
                kiln_explain::explain::data_of(subject, bg)
                    .map(Some)
                    .map_err(|e| format!("the model's background sample does not fit it: {e}"))
            })
            .clone()?,
        _ => None,
    };
    let explainer =
        Explainer::with_trees(subject, Choice::Auto, request.class.as_deref(), background, trees)
        .map_err(|e| match e {
            kiln_explain::ExplainError::NeedsBackground { method, unweighted } => format!(
                "this model is explained by {} against a background sample of training rows, and its served version has none{}; models kiln trained carry one, and tree files with training weights (LightGBM's counts, XGBoost's covers) need none; explain it offline with `kiln explain MODEL DATA`",
                method.as_str(),
                if unweighted {
                    " (its file records no training weights)"
                } else {
                    ""
                }
            ),
            other => other.to_string(),
        })?;
    let c = explainer.columns.len();
    let phi = explainer.attributions(&data);
    let shown = kiln_explain::global::Shown::new(&explainer, std::slice::from_ref(batch));
    let expected = explainer.expected_value();
    let mut rows = Vec::with_capacity(data.n_rows());
    let mut log = Vec::with_capacity(data.n_rows());
    for r in 0..data.n_rows() {
        let row = &phi[r * c..(r + 1) * c];
        let mut order: Vec<usize> = (0..c).collect();
        order.sort_by(|&a, &b| row[b].abs().total_cmp(&row[a].abs()));
        let top: Vec<Value> = order
            .iter()
            .take(request.top)
            .map(|&j| {
                json!({
                    "column": explainer.columns[j],
                    "value": cell(&shown.value(&explainer, &data, r, r, j)),
                    "shap": row[j],
                })
            })
            .collect();
        let rest: f64 = order.iter().skip(request.top).map(|&j| row[j]).sum();
        let entry = json!({
            "output": expected + row.iter().sum::<f64>(),
            "top": top,
            "rest": rest,
        });
        log.push(entry.to_string());
        rows.push(entry);
    }
    let mut out = json!({
        "method": explainer.method.as_str(),
        "output": explainer.output_name,
        "expected_value": expected,
        "rows": rows,
    });
    if let Some(class) = &explainer.class {
        out["class"] = json!(class);
    }
    if let Some(note) = &explainer.note {
        out["note"] = json!(note);
    }
    Ok((out, log))
}

fn cell(v: &Cell) -> Value {
    match v {
        Cell::Number(x) => json!(x),
        Cell::Text(s) => json!(s),
        Cell::Missing => Value::Null,
    }
}
