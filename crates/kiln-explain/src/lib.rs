//! Explanations for kiln's models and imported ones.
//!
//! * [`tree`]: exact TreeSHAP for tree ensembles (kiln's boosted trees,
//!   LightGBM, XGBoost): path-dependent, interventional against a
//!   background sample, and interaction values.
//! * [`explain`](mod@explain): a model made ready to explain ([`Explainer`]):
//!   attributions on the user's columns by the best method the model
//!   allows (TreeSHAP, exact linear SHAP, or permutation SHAP as the
//!   model-agnostic fallback).
//! * [`global`]: [`explain()`], the whole report: importance, summary, local
//!   rows, permutation importance, partial dependence, interactions.
//! * [`report`]: what `kiln explain` reports, as data.
//! * [`html`]: the report as one self-contained HTML page.
//!
//! Like kiln-ml, this crate knows nothing of stores or HTTP: models and
//! tables in, attributions out.

pub mod explain;
pub mod global;
pub mod html;
pub mod report;
pub mod tree;

pub use explain::{Choice, Data, ExplainError, Explainer, Subject};
pub use global::{Options, explain};
pub use tree::{Ensemble, Row};
