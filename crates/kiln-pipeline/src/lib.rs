//! Pipelines as code: the steps `kiln.yaml` declares run as a DAG, cached by
//! what they read; gates that CI can act on.
//!
//! - [`expr`] — the gate language: `roc_auc >= 0.80 && roc_auc >= champion.roc_auc - 0.005`.
//! - [`gate`] — a gate evaluated against a model version's recorded metrics
//!   and its champion's, with each clause reported and JUnit XML.

mod error;
pub mod expr;
pub mod gate;
pub mod junit;
pub mod reproduce;
pub mod run;
pub mod schedule;
pub mod steps;
pub mod worker;

pub use error::PipelineError;

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
