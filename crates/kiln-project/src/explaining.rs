//! Explanations stored with models: the global summary `kiln train`
//! computes on the rows a model held out, kept as the run's `explanation`
//! artifact and shown on every model version's card.

use arrow_array::RecordBatch;
use kiln_explain::report::{Explanation, Method};
use kiln_explain::{Choice, Options, Subject};
use kiln_ml::model::Model;
use serde_json::Value;

use crate::{Project, ProjectError, Result};

/// Rows the stored summary explains at most (spread over the held-out rows).
const SUMMARY_ROWS: usize = 500;

/// The global explanation of a model trained on `batches`: TreeSHAP (or
/// the model's exact method, or permutation SHAP) on up to 500 of the rows
/// it held out, permutation importance on them (a validation set), partial
/// dependence of its top columns; without points and local rows.
pub fn training_explanation(
    model: &Model,
    batches: &[RecordBatch],
    name: &str,
) -> Result<Explanation> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let mut picked = match kiln_ml::evaluate::test_rows(model, batches) {
        Ok(Some(held_out)) if !held_out.is_empty() => held_out,
        _ => (0..rows).collect(),
    };
    picked.sort_unstable();
    let step = picked.len().div_ceil(2000).max(1);
    let picked: Vec<usize> = picked.into_iter().step_by(step).collect();
    let table = crate::monitoring::take_table_rows(batches, &picked)?;
    // Permutation SHAP (ensembles) costs thousands of model calls a row:
    // fewer rows and background rows keep training quick.
    let sampled = kiln_explain::explain::method_for(Subject::Kiln(model), Choice::Auto)
        == Method::Permutation;
    let options = Options {
        rows: if sampled { 100 } else { SUMMARY_ROWS },
        background: sampled.then_some(30),
        permutations: if sampled { 3 } else { 4 },
        repeats: 3,
        dependence: 4,
        ..Options::default()
    };
    let e = kiln_explain::explain(Subject::Kiln(model), name, &table, &options)
        .map_err(|e| ProjectError::WrongKind(format!("explaining the model: {e}")))?;
    Ok(e.summary())
}

impl Project {
    /// The explanation summary a kiln run stored, if any.
    pub async fn run_explanation(
        &self,
        run: &kiln_store::RunRecord,
    ) -> Result<Option<Explanation>> {
        let Some(hex) = run.artifacts.get("explanation").and_then(Value::as_str) else {
            return Ok(None);
        };
        let hash = kiln_core::ContentHash::parse(hex)
            .map_err(|e| ProjectError::WrongKind(format!("run {}: explanation: {e}", run.id)))?;
        let bytes = self.objects.get_bytes(&hash).await?;
        let e = serde_json::from_slice(&bytes).map_err(|e| {
            ProjectError::WrongKind(format!("run {}: unreadable explanation: {e}", run.id))
        })?;
        Ok(Some(e))
    }

    /// The explanation summary of registered version `version` of `model`,
    /// when it came from a kiln run.
    pub async fn version_explanation(&self, model: &str, version: i64) -> Result<Option<Explanation>> {
        let Some(run_id) = self.meta.model_version(model, version).await?.run_id else {
            return Ok(None);
        };
        let Ok(run) = self.meta.run(&run_id).await else {
            return Ok(None);
        };
        self.run_explanation(&run).await
    }
}
