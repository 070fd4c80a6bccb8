//! Scoring models trained elsewhere: LightGBM text models, XGBoost JSON
//! models and ONNX models, evaluated by kiln itself (no foreign runtime).
//!
//! [`ImportedModel::load`] finds the format as [`crate::foreign::inspect`]
//! does and compiles the model:
//!
//! * LightGBM (`booster.save_model('m.txt')`): every tree, numerical splits
//!   with their missing-value handling (missing type None, Zero or NaN and
//!   the default direction), categorical splits (bitsets), and the
//!   objective's output transform: `binary` (sigmoid), `multiclass`
//!   (softmax), `multiclassova` (a sigmoid per class), the regression
//!   objectives (identity, or the square for `reg_sqrt`), `poisson`, `gamma`
//!   and `tweedie` (exp); `average_output` (random forests) too. Ranking,
//!   `cross_entropy`, custom objectives and linear trees are refused.
//! * XGBoost (`booster.save_model('m.json')`, `gbtree`): features compared
//!   as f32 (`x < split` goes left), missing values to the default child,
//!   categorical splits (listed categories go right), `base_score` (a
//!   scalar, or XGBoost 3's vector) turned into a margin as the objective
//!   does, trees summed in f32 in file order. Objectives: `binary:logistic`
//!   and `binary:logitraw` (kiln reports the probability, the sigmoid of
//!   the margin), `multi:softprob` and `multi:softmax` (kiln reports the
//!   probabilities), `reg:squarederror`, `reg:squaredlogerror`,
//!   `reg:pseudohubererror`, `reg:absoluteerror`, `reg:linear`,
//!   `reg:logistic`, `count:poisson`, `reg:gamma`, `reg:tweedie`. DART and
//!   linear boosters, multi-target trees, ranking and survival are refused.
//! * ONNX: a small interpreter over f32 tensors `[rows, columns]` for the
//!   operators scikit-learn's exporter (skl2onnx) puts in classical
//!   models: `TreeEnsembleClassifier`, `TreeEnsembleRegressor`,
//!   `LinearClassifier`, `LinearRegressor`, `Scaler`, `Normalizer`,
//!   `FeatureVectorizer` and `ZipMap` (`ai.onnx.ml`), and `Identity`,
//!   `Cast`, `Concat`, `Reshape` and `Flatten` (when they keep
//!   `[rows, columns]`), `Softmax` and `Sigmoid`. Tree ensembles are summed
//!   in f32 (f64 when the file stores double weights) in the order
//!   onnxruntime uses, and classifier scores follow onnxruntime's rules, so
//!   results match it. Only the nodes the scores depend on are evaluated
//!   (the label output is ignored). Inputs must be float tensors shaped
//!   `[N, k]`; any other operator or input is refused with an error that
//!   names it. Regressors predict one target.
//!
//! Trees are compiled into one flat array of nodes (depth first, leaf
//! values apart) and walked for blocks of rows, tree by tree; nothing is
//! allocated per row or node. Batches above 512 rows are split across
//! threads; every row's result is the same however the batch is split.
//!
//! # Inputs
//!
//! [`ImportedModel::inputs`] lists the model's features in its order, all
//! [`ColumnType::Float`]. Names come from the file: LightGBM's
//! `feature_names`; XGBoost's `feature_names`, or `f0`,
//! `f1`, … (XGBoost's own names) when it records none; ONNX's input names
//! when each input is one column (`[N, 1]`), `f0`, `f1`, … for the columns
//! of a single packed input `[N, k]`, and `{input}_{j}` for column `j` of a
//! packed input beside others. Categorical features take the category
//! codes the model was trained on (pandas' `cat.codes`) as numbers.

use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float32Type, Float64Type, Int8Type, Int16Type, Int32Type, Int64Type, UInt8Type, UInt16Type,
    UInt32Type, UInt64Type,
};
use arrow_array::{Array, RecordBatch};
use arrow_schema::DataType;
use kiln_core::ColumnType;
use rayon::prelude::*;

use crate::MlError;
use crate::foreign::{self, ForeignError, ModelFormat};
use crate::preprocess::InputColumn;
use crate::task::{Predictions, Task};

mod forest;
mod lightgbm;
mod onnx;
mod xgboost;

/// Rows per parallel chunk in [`ImportedModel::predict_dense`]; fewer rows
/// are scored on the calling thread.
const CHUNK: usize = 512;

/// A model from another library, compiled for scoring.
#[derive(Debug, Clone)]
pub struct ImportedModel {
    format: ModelFormat,
    inputs: Vec<InputColumn>,
    task: Task,
    classes: Vec<String>,
    scorer: Arc<Scorer>,
}

/// What a compiled model needs to score rows.
#[derive(Debug)]
enum Scorer {
    Lightgbm(lightgbm::Booster),
    Xgboost(xgboost::Booster),
    Onnx(onnx::Graph),
}

/// What each format's loader hands back.
struct Loaded<S> {
    scorer: S,
    names: Vec<String>,
    task: Task,
    classes: Vec<String>,
}

impl ImportedModel {
    /// Detects the format (same detection as [`foreign::inspect`]) and
    /// compiles the model. A kiln model is refused (load it with
    /// [`crate::model::Model::from_bytes`]); a model kiln reads but cannot
    /// score is [`ForeignError::Unsupported`].
    pub fn load(bytes: &[u8]) -> Result<ImportedModel, ForeignError> {
        let info = foreign::inspect(bytes)?;
        let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
        let (scorer, names, task, classes) = match info.format {
            ModelFormat::Kiln => {
                return Err(ForeignError::Unsupported {
                    format: ModelFormat::Kiln,
                    why: "it is a kiln model, which kiln loads as it is (`Model::from_bytes`) rather than importing it".into(),
                });
            }
            ModelFormat::Lightgbm => {
                let l = lightgbm::load(text)?;
                (Scorer::Lightgbm(l.scorer), l.names, l.task, l.classes)
            }
            ModelFormat::Xgboost => {
                let l = xgboost::load(text)?;
                (Scorer::Xgboost(l.scorer), l.names, l.task, l.classes)
            }
            ModelFormat::Onnx => {
                let l = onnx::load(bytes)?;
                (Scorer::Onnx(l.scorer), l.names, l.task, l.classes)
            }
        };
        if names.is_empty() {
            return Err(ForeignError::Unsupported {
                format: info.format,
                why: "it reads no input features".into(),
            });
        }
        let inputs = names
            .into_iter()
            .map(|name| InputColumn {
                name,
                column_type: ColumnType::Float,
                categories: None,
            })
            .collect();
        Ok(ImportedModel {
            format: info.format,
            inputs,
            task,
            classes,
            scorer: Arc::new(scorer),
        })
    }

    pub fn format(&self) -> ModelFormat {
        self.format
    }

    /// The input columns in the model's feature order; all
    /// [`ColumnType::Float`] with no categories. Names come from the file;
    /// a file that records none gets `f0`, `f1`, … (see the module docs).
    pub fn inputs(&self) -> &[InputColumn] {
        &self.inputs
    }

    /// [`Task::Binary`], [`Task::Multiclass`] or [`Task::Regression`].
    pub fn task(&self) -> Task {
        self.task
    }

    /// Class labels as text, in the model's class order: `"0"`, `"1"`, …
    /// when the file records none (LightGBM, XGBoost), an ONNX classifier's
    /// `classlabels_strings` or `classlabels_int64s`; empty for regression.
    pub fn classes(&self) -> &[String] {
        &self.classes
    }

    /// The trees of a LightGBM or XGBoost model, for TreeSHAP; `None` for
    /// ONNX models (explained by a model-agnostic method).
    pub fn trees(&self) -> Option<TreeView> {
        match &*self.scorer {
            Scorer::Lightgbm(_) | Scorer::Xgboost(_) => Some(TreeView {
                scorer: self.scorer.clone(),
            }),
            Scorer::Onnx(_) => None,
        }
    }

    /// Scores a batch whose columns are exactly [`ImportedModel::inputs`],
    /// in order, with the same names; each numeric (Float64, or Float32 and
    /// integers, read as f64). Nulls are missing values (NaN).
    pub fn predict(&self, batch: &RecordBatch) -> Result<Predictions, MlError> {
        let x = self.dense(batch)?;
        Ok(self.predict_dense(&x, batch.num_rows()))
    }

    /// A batch's columns as a dense row-major matrix of f64 (NaN for a
    /// missing value), the rows [`ImportedModel::predict_dense`] and
    /// [`TreeView::goes_left`] read. The batch's columns must be the
    /// model's inputs in order, as [`ImportedModel::predict`] requires.
    pub fn dense(&self, batch: &RecordBatch) -> Result<Vec<f64>, MlError> {
        let schema = batch.schema();
        if batch.num_columns() != self.inputs.len() {
            return Err(MlError::Invalid {
                what: "input batch".into(),
                why: format!(
                    "it has {} column(s), but the model takes {}: {}",
                    batch.num_columns(),
                    self.inputs.len(),
                    self.inputs
                        .iter()
                        .map(|c| format!("`{}`", c.name))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
        for (field, input) in schema.fields().iter().zip(&self.inputs) {
            if field.name() != &input.name {
                return Err(MlError::Invalid {
                    what: "input batch".into(),
                    why: format!(
                        "column `{}` stands where the model expects `{}` (columns must be the model's inputs, in order)",
                        field.name(),
                        input.name
                    ),
                });
            }
        }
        let n = batch.num_rows();
        let width = self.inputs.len();
        let mut x = vec![f64::NAN; n * width];
        for (j, column) in batch.columns().iter().enumerate() {
            macro_rules! gather {
                ($t:ty) => {{
                    let a = column.as_primitive::<$t>();
                    for i in 0..n {
                        if a.is_valid(i) {
                            x[i * width + j] = a.value(i) as f64;
                        }
                    }
                }};
            }
            match column.data_type() {
                DataType::Float64 => gather!(Float64Type),
                DataType::Float32 => gather!(Float32Type),
                DataType::Int64 => gather!(Int64Type),
                DataType::Int32 => gather!(Int32Type),
                DataType::Int16 => gather!(Int16Type),
                DataType::Int8 => gather!(Int8Type),
                DataType::UInt64 => gather!(UInt64Type),
                DataType::UInt32 => gather!(UInt32Type),
                DataType::UInt16 => gather!(UInt16Type),
                DataType::UInt8 => gather!(UInt8Type),
                DataType::Null => {}
                other => {
                    return Err(MlError::WrongType {
                        name: self.inputs[j].name.clone(),
                        got: other.to_string(),
                        expected: ColumnType::Float,
                    });
                }
            }
        }
        Ok(x)
    }

    /// Scores a dense row-major matrix of `n_rows` × `inputs().len()`
    /// values; NaN is a missing value.
    ///
    /// # Panics
    ///
    /// When `x.len()` is not `n_rows * inputs().len()`.
    pub fn predict_dense(&self, x: &[f64], n_rows: usize) -> Predictions {
        let width = self.inputs.len();
        assert_eq!(
            x.len(),
            n_rows * width,
            "predict_dense: {} values for {n_rows} rows of {width}",
            x.len()
        );
        let outputs = match self.task {
            Task::Multiclass => self.classes.len(),
            Task::Binary | Task::Regression => 1,
        };
        let mut out = vec![0.0; n_rows * outputs];
        let score = |x: &[f64], out: &mut [f64]| match &*self.scorer {
            Scorer::Lightgbm(b) => b.predict(x, width, out),
            Scorer::Xgboost(b) => b.predict(x, width, out),
            Scorer::Onnx(g) => g.predict(x, width, out),
        };
        if n_rows <= CHUNK {
            score(x, &mut out);
        } else {
            x.par_chunks(CHUNK * width)
                .zip(out.par_chunks_mut(CHUNK * outputs))
                .for_each(|(x, out)| score(x, out));
        }
        match self.task {
            Task::Binary => Predictions::Binary(out),
            Task::Multiclass => Predictions::Multiclass {
                probs: out,
                n_classes: outputs,
            },
            Task::Regression => Predictions::Regression(out),
        }
    }
}

/// The trees of an imported LightGBM or XGBoost model as explainers walk
/// them ([`ImportedModel::trees`]). Nodes are numbered `0..n_nodes()`
/// across all trees; a tree's raw score for a row is the value of the leaf
/// the row reaches, and a model's raw score for output `k` is
/// `(base()[k] + Σ trees of output k) × scale()`.
#[derive(Debug, Clone)]
pub struct TreeView {
    scorer: Arc<Scorer>,
}

/// A node of a [`TreeView`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ViewNode {
    /// A split on feature `feature` (an index into
    /// [`ImportedModel::inputs`]), with its children's node numbers.
    Split { feature: u32, left: u32, right: u32 },
    /// A leaf and its value, added to its tree's output.
    Leaf { value: f64 },
}

impl TreeView {
    fn forest(&self) -> &forest::Forest {
        match &*self.scorer {
            Scorer::Lightgbm(b) => b.forest(),
            Scorer::Xgboost(b) => b.forest(),
            Scorer::Onnx(_) => unreachable!("ONNX models have no tree view"),
        }
    }

    pub fn n_trees(&self) -> usize {
        self.forest().roots.len()
    }

    pub fn n_nodes(&self) -> usize {
        self.forest().nodes.len()
    }

    /// The root node of tree `tree`.
    pub fn root(&self, tree: usize) -> u32 {
        self.forest().roots[tree]
    }

    /// The output (class) tree `tree` adds to.
    pub fn output(&self, tree: usize) -> usize {
        match &*self.scorer {
            Scorer::Lightgbm(b) => b.group(tree),
            Scorer::Xgboost(b) => b.group(tree),
            Scorer::Onnx(_) => 0,
        }
    }

    /// Raw scores per output: 1, or one per class.
    pub fn n_outputs(&self) -> usize {
        match &*self.scorer {
            Scorer::Lightgbm(b) => b.groups(),
            Scorer::Xgboost(b) => b.base().len(),
            Scorer::Onnx(_) => 1,
        }
    }

    /// The raw score every output starts from.
    pub fn base(&self) -> Vec<f64> {
        match &*self.scorer {
            Scorer::Xgboost(b) => b.base(),
            _ => vec![0.0; self.n_outputs()],
        }
    }

    /// What the sum of the trees is multiplied by (LightGBM's
    /// `average_output`: one over the iterations; otherwise 1).
    pub fn scale(&self) -> f64 {
        match &*self.scorer {
            Scorer::Lightgbm(b) => b.scale(),
            _ => 1.0,
        }
    }

    /// What a raw score is, in words ("raw score (log-odds)").
    pub fn raw_name(&self) -> &'static str {
        match &*self.scorer {
            Scorer::Lightgbm(b) => b.raw_name(),
            Scorer::Xgboost(b) => b.raw_name(),
            Scorer::Onnx(_) => "raw score",
        }
    }

    pub fn node(&self, i: u32) -> ViewNode {
        let n = &self.forest().nodes[i as usize];
        if n.flags & forest::LEAF != 0 {
            ViewNode::Leaf {
                value: self.forest().outputs(n).first().map_or(0.0, |o| o.value),
            }
        } else {
            ViewNode::Split {
                feature: n.feature,
                left: n.left,
                right: n.right,
            }
        }
    }

    /// The training weight of node `i` as the file records it (LightGBM's
    /// row counts, XGBoost's hessian cover); `None` when it records none.
    pub fn weight(&self, i: u32) -> Option<f64> {
        self.forest()
            .weights
            .get(i as usize)
            .copied()
            .filter(|w| w.is_finite())
    }

    /// Whether `row` (the model's inputs in order, NaN for missing) goes
    /// to the left child of split `i`.
    #[inline]
    pub fn goes_left(&self, i: u32, row: &[f64]) -> bool {
        match &*self.scorer {
            Scorer::Lightgbm(b) => {
                let n = &b.forest().nodes[i as usize];
                b.goes_left(n, row[n.feature as usize])
            }
            Scorer::Xgboost(b) => {
                let n = &b.forest().nodes[i as usize];
                b.goes_left(n, row[n.feature as usize])
            }
            Scorer::Onnx(_) => false,
        }
    }
}

/// The class names `"0"`, `"1"`, … for a file that records none.
fn numbered_classes(n: usize) -> Vec<String> {
    (0..n).map(|i| i.to_string()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_model_is_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ImportedModel>();
    }

    #[test]
    fn kiln_models_are_refused_with_a_pointer_to_model_loading() {
        let n = 60;
        let x: Vec<f64> = (0..n).map(|i| f64::from(i % 17)).collect();
        let y: Vec<&str> = (0..n)
            .map(|i| if i % 17 > 8 { "yes" } else { "no" })
            .collect();
        let batch = RecordBatch::try_from_iter([
            (
                "x",
                Arc::new(arrow_array::Float64Array::from(x)) as arrow_array::ArrayRef,
            ),
            ("y", Arc::new(arrow_array::StringArray::from(y)) as _),
        ])
        .unwrap();
        let options = crate::automl::AutoMlOptions {
            max_trials: Some(1),
            ensemble: false,
            ..crate::automl::AutoMlOptions::default()
        };
        let model = crate::automl::train(&[batch], "y", &options, &mut |_| {})
            .unwrap()
            .model;
        let err = ImportedModel::load(&model.to_bytes()).unwrap_err();
        assert!(
            matches!(
                err,
                ForeignError::Unsupported {
                    format: ModelFormat::Kiln,
                    ..
                }
            ),
            "{err:?}"
        );
        assert!(err.to_string().contains("Model::from_bytes"), "{err}");

        // A damaged kiln file is the kiln error `inspect` gives.
        let err = ImportedModel::load(b"kiln-model 99\n{}").unwrap_err();
        assert!(matches!(err, ForeignError::Kiln { .. }), "{err:?}");
    }
}
