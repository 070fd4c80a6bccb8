//! The model file: preprocessing + learner + signature + training metadata.
//!
//! # Format (version 1)
//!
//! A model file is UTF-8 text: the header line `kiln-model 1\n`, then one
//! JSON document, the serialisation of [`Model`]. The header is read first,
//! so a file written by a future kiln with a format this kiln does not know
//! is refused before anything else is parsed. Floats round-trip exactly.
//! Nothing time-dependent is written, so the same seed, data and trials give
//! the same bytes. docs/model-format.md describes each field.

use std::io::Write;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::encode::DenseEncoder;
use crate::error::MlError;
use crate::frame::Features;
use crate::gbdt::Gbdt;
use crate::linear::{Dense, LinearModel};
use crate::preprocess::{InputColumn, Preprocessor, TargetSpec, TransformNote};
use crate::task::{Predictions, Task};

/// The format version this kiln writes and the newest it reads.
pub const FORMAT_VERSION: u32 = 1;
const HEADER: &str = "kiln-model";

/// A trained learner on preprocessed features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Learner {
    Gbdt(Gbdt),
    Linear {
        encoder: DenseEncoder,
        model: LinearModel,
    },
    /// A weighted average of members' predictions (probabilities for
    /// classifiers); weights sum to 1.
    Ensemble {
        members: Vec<(f64, Learner)>,
    },
}

impl Learner {
    pub fn predict(&self, x: &Features) -> Predictions {
        match self {
            Learner::Gbdt(g) => g.predict(x),
            Learner::Linear { encoder, model } => {
                let data = encoder.transform(x);
                let dense = Dense {
                    data: &data,
                    n_rows: x.n_rows(),
                    n_cols: encoder.width(),
                };
                model.predict(&dense)
            }
            Learner::Ensemble { members } => {
                let mut acc: Option<Predictions> = None;
                for (w, m) in members {
                    let p = m.predict(x);
                    acc = Some(match acc {
                        None => scale(p, *w),
                        Some(a) => add_scaled(a, &p, *w),
                    });
                }
                acc.unwrap_or(Predictions::Regression(Vec::new()))
            }
        }
    }

    /// A short description: "gbdt (120 trees)", "linear", "ensemble of 3".
    pub fn describe(&self) -> String {
        match self {
            Learner::Gbdt(g) => format!("gbdt ({} rounds)", g.n_rounds()),
            Learner::Linear { .. } => "linear".into(),
            Learner::Ensemble { members } => format!("ensemble of {}", members.len()),
        }
    }
}

fn values_mut(p: &mut Predictions) -> &mut Vec<f64> {
    match p {
        Predictions::Binary(v) | Predictions::Regression(v) => v,
        Predictions::Multiclass { probs, .. } => probs,
    }
}

fn values(p: &Predictions) -> &[f64] {
    match p {
        Predictions::Binary(v) | Predictions::Regression(v) => v,
        Predictions::Multiclass { probs, .. } => probs,
    }
}

pub(crate) fn scale(mut p: Predictions, w: f64) -> Predictions {
    values_mut(&mut p).iter_mut().for_each(|v| *v *= w);
    p
}

pub(crate) fn add_scaled(mut a: Predictions, b: &Predictions, w: f64) -> Predictions {
    for (x, y) in values_mut(&mut a).iter_mut().zip(values(b)) {
        *x += w * y;
    }
    a
}

/// Facts about how a model was trained (no wall-clock times, so equal
/// trainings give equal bytes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct TrainingInfo {
    /// Metric used to choose the model, and its validation score.
    pub metric: String,
    pub validation_score: Option<f64>,
    /// Scores on the held-out test rows, by metric name.
    #[serde(default)]
    pub test_metrics: std::collections::BTreeMap<String, f64>,
    pub seed: u64,
    /// Configurations evaluated by the search; rerunning with `--trials`
    /// set to this reproduces the model exactly.
    pub trials: usize,
    pub train_rows: usize,
    pub test_rows: usize,
    /// How the test rows were held out (`auto`, `random`, `stratified`,
    /// `time[:COLUMN]`, `group:COLUMN`) and their share.
    pub split: String,
    pub test_fraction: f64,
    /// The winning configuration, as the leaderboard names it.
    pub config: String,
    /// The dataset the model learned from, when known (`name@version`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
}

/// A trained model, ready to score tables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Model {
    pub kiln_version: String,
    pub preprocessor: Preprocessor,
    pub target: TargetSpec,
    pub learner: Learner,
    pub training: TrainingInfo,
}

/// A model's predictions for a table.
#[derive(Debug, Clone)]
pub struct Scored {
    pub predictions: Predictions,
    pub notes: Vec<TransformNote>,
}

impl Model {
    pub fn task(&self) -> Task {
        self.target.task
    }

    /// The input columns the model reads (its signature).
    pub fn inputs(&self) -> &[InputColumn] {
        &self.preprocessor.inputs
    }

    /// Scores a table (any column order; extra columns, the target
    /// included, are ignored).
    pub fn predict(&self, batches: &[arrow_array::RecordBatch]) -> Result<Scored, MlError> {
        let (x, notes) = self.preprocessor.transform(batches)?;
        Ok(Scored {
            predictions: self.learner.predict(&x),
            notes,
        })
    }

    /// The model file's bytes.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("{HEADER} {FORMAT_VERSION}\n").into_bytes();
        serde_json::to_writer(&mut out, self).expect("models serialise");
        out.push(b'\n');
        out
    }

    /// Reads a model file's bytes; `origin` names it in errors.
    pub fn from_bytes(bytes: &[u8], origin: &str) -> Result<Model, MlError> {
        let bad = |why: String, hint: &str| MlError::ModelFile {
            path: origin.into(),
            why,
            hint: hint.into(),
        };
        let newline = bytes
            .iter()
            .position(|&b| b == b'\n')
            .unwrap_or(bytes.len());
        let header = std::str::from_utf8(&bytes[..newline]).unwrap_or_default();
        let Some(version) = header.strip_prefix(HEADER).map(str::trim) else {
            return Err(bad(
                "it is not a kiln model file (no `kiln-model` header)".into(),
                "pass a model file written by `kiln train -o FILE`, or a run id (`kiln runs ls` lists them)",
            ));
        };
        let version: u32 = version.parse().map_err(|_| {
            bad(
                format!("its format version `{version}` is not a number"),
                "the file is damaged; train the model again",
            )
        })?;
        if version > FORMAT_VERSION {
            return Err(bad(
                format!(
                    "it has format version {version}, newer than this kiln's {FORMAT_VERSION} (kiln {})",
                    env!("CARGO_PKG_VERSION")
                ),
                "upgrade kiln to read it",
            ));
        }
        serde_json::from_slice(&bytes[newline..]).map_err(|e| {
            bad(
                format!("its content does not parse: {e}"),
                "the file is damaged; train the model again",
            )
        })
    }

    /// Writes the model file atomically (temporary file, then rename).
    pub fn save(&self, path: &Path) -> Result<(), MlError> {
        let io = |action, source| MlError::Io {
            action,
            path: path.display().to_string(),
            source,
        };
        let dir = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .map_err(|e| io("create a temporary file beside", e))?;
        tmp.write_all(&self.to_bytes())
            .map_err(|e| io("write", e))?;
        tmp.persist(path).map_err(|e| io("rename into", e.error))?;
        Ok(())
    }

    pub fn load(path: &Path) -> Result<Model, MlError> {
        let bytes = std::fs::read(path).map_err(|source| MlError::Io {
            action: "read",
            path: path.display().to_string(),
            source,
        })?;
        Self::from_bytes(&bytes, &path.display().to_string())
    }
}
