//! kiln's ML engine: tables in (Arrow), models and metrics out. It knows
//! nothing of the store or HTTP.
//!
//! * [`automl`]: `kiln train`'s search: portfolio, local search, ensembles, refit, test scores.
//! * [`evaluate`]: a model's metrics, confusion matrix, calibration and threshold on a table.
//! * [`frame`]: [`Features`], the learner-facing table.
//! * [`gbdt`]: histogram gradient-boosted trees.
//! * [`imported`]: LightGBM, XGBoost and ONNX models scored by kiln itself.
//! * [`preprocess`]: the preprocessing learned on training data and saved in models.
//! * [`encode`]: dense encoding (imputation, scaling, one-hot) for linear models.
//! * [`model`]: the model file: preprocessing, learner, signature, training facts.
//! * [`foreign`]: which format a model file is, and its signature.
//! * [`task`]: what is learned ([`Task`]), labels ([`Target`]) and outputs ([`Predictions`]).
//! * [`metrics`]: classification and regression metrics, confusion matrices,
//!   calibration tables and threshold selection.
//! * [`split`]: random, stratified, group and time-ordered splits and k-fold.
//! * [`linear`]: regularised linear and logistic regression.
//! * [`rng`]: the portable generator behind every random choice, so equal
//!   seeds give equal models everywhere.

pub mod automl;
pub mod encode;
mod error;
pub mod evaluate;
pub mod foreign;
pub mod frame;
pub mod gbdt;
pub mod imported;
pub mod linear;
pub mod metrics;
pub mod model;
pub mod preprocess;
pub mod rng;
pub mod split;
pub mod task;

pub use error::MlError;
pub use frame::{Column, FeatureKind, Features, MISSING_CODE};
pub use task::{Predictions, Target, Task};
