//! One servable model, whatever its format: what it reads (its signature),
//! what it predicts, and the prediction itself.

use arrow_array::RecordBatch;
use kiln_ml::imported::ImportedModel;
use kiln_ml::model::Model;
use kiln_ml::preprocess::{InputColumn, TransformNote};
use kiln_ml::{MlError, Predictions, Task};

/// A loaded model ready to score typed batches.
pub enum Predictor {
    /// A model kiln trained: its learned preprocessing included.
    Kiln(Box<Model>),
    /// A LightGBM, XGBoost or ONNX model, compiled and evaluated by kiln.
    Imported(ImportedModel),
}

impl Predictor {
    /// Loads a model file's bytes. `format` is the registry's format name
    /// (`kiln`, `onnx`, `lightgbm`, `xgboost`); `origin` names the model
    /// in errors.
    pub fn load(format: &str, bytes: &[u8], origin: &str) -> Result<Predictor, MlError> {
        match format {
            "kiln" => Ok(Predictor::Kiln(Box::new(Model::from_bytes(bytes, origin)?))),
            "onnx" | "lightgbm" | "xgboost" => ImportedModel::load(bytes)
                .map(Predictor::Imported)
                .map_err(|e| MlError::ModelFile {
                    path: origin.to_string(),
                    why: e.to_string(),
                    hint: "export the model with one of the operators or objectives listed".into(),
                }),
            other => Err(MlError::ModelFile {
                path: origin.to_string(),
                why: format!("it is a `{other}` model, which this server cannot load"),
                hint: "serve a kiln, ONNX, LightGBM or XGBoost model".into(),
            }),
        }
    }

    /// The columns a request must carry, in the model's order.
    pub fn inputs(&self) -> &[InputColumn] {
        match self {
            Predictor::Kiln(m) => m.inputs(),
            Predictor::Imported(m) => m.inputs(),
        }
    }

    pub fn task(&self) -> Task {
        match self {
            Predictor::Kiln(m) => m.task(),
            Predictor::Imported(m) => m.task(),
        }
    }

    /// Class labels, in the order of the probabilities (empty for regression).
    pub fn classes(&self) -> &[String] {
        match self {
            Predictor::Kiln(m) => &m.target.classes,
            Predictor::Imported(m) => m.classes(),
        }
    }

    /// The format name, as the registry writes it.
    pub fn format(&self) -> &'static str {
        match self {
            Predictor::Kiln(_) => "kiln",
            Predictor::Imported(m) => m.format().as_str(),
        }
    }

    /// Scores a batch typed by [`Frame::to_batch`](crate::Frame::to_batch)
    /// with [`Predictor::inputs`]; notes report unseen categories.
    pub fn predict(
        &self,
        batch: &RecordBatch,
    ) -> Result<(Predictions, Vec<TransformNote>), MlError> {
        match self {
            Predictor::Kiln(m) => {
                let scored = m.predict(std::slice::from_ref(batch))?;
                Ok((scored.predictions, scored.notes))
            }
            Predictor::Imported(m) => Ok((m.predict(batch)?, Vec::new())),
        }
    }
}
