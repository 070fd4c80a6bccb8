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
    pub async fn version_explanation(
        &self,
        model: &str,
        version: i64,
    ) -> Result<Option<Explanation>> {
        let Some(run_id) = self.meta.model_version(model, version).await?.run_id else {
            return Ok(None);
        };
        let Ok(run) = self.meta.run(&run_id).await else {
            return Ok(None);
        };
        self.run_explanation(&run).await
    }
}

/// Rows kept as a model's background sample.
pub const BACKGROUND_ROWS: usize = 100;

/// A background sample for explaining a model trained on `batches`: 100
/// rows spread over the table, the model's input columns only, as Parquet.
/// Serving explains non-tree models against it.
pub fn background_sample(model: &Model, batches: &[RecordBatch]) -> Result<Vec<u8>> {
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let picked = kiln_explain::explain::spread(rows, BACKGROUND_ROWS);
    let table = crate::monitoring::take_table_rows(batches, &picked)?;
    let Some(first) = table.first() else {
        return Err(ProjectError::WrongKind(
            "no rows for a background sample".into(),
        ));
    };
    let schema = first.schema();
    let keep: Vec<usize> = model
        .inputs()
        .iter()
        .filter_map(|c| schema.index_of(&c.name).ok())
        .collect();
    let projected: Vec<RecordBatch> = table
        .iter()
        .map(|b| b.project(&keep))
        .collect::<std::result::Result<_, _>>()
        .map_err(kiln_data::DataError::from)?;
    let schema = projected
        .first()
        .map(RecordBatch::schema)
        .unwrap_or_else(|| std::sync::Arc::new(schema.project(&keep).expect("columns exist")));
    let mut out = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema, None)
        .map_err(kiln_data::DataError::from)?;
    for b in &projected {
        w.write(b).map_err(kiln_data::DataError::from)?;
    }
    w.close().map_err(kiln_data::DataError::from)?;
    Ok(out)
}

impl Project {
    /// The background sample a kiln run stored, if any.
    pub async fn run_background(
        &self,
        run: &kiln_store::RunRecord,
    ) -> Result<Option<Vec<RecordBatch>>> {
        let Some(hex) = run.artifacts.get("background").and_then(Value::as_str) else {
            return Ok(None);
        };
        let hash = kiln_core::ContentHash::parse(hex)
            .map_err(|e| ProjectError::WrongKind(format!("run {}: background: {e}", run.id)))?;
        let bytes = bytes::Bytes::from(self.objects.get_bytes(&hash).await?);
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes)
            .and_then(|b| b.build())
            .map_err(kiln_data::DataError::from)?;
        let batches = reader
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(kiln_data::DataError::from)?;
        Ok(Some(batches))
    }

    /// The background sample stored with a served model version (`model`
    /// and `version` as serving names them: a registry version, or a run).
    pub async fn served_background(
        &self,
        model: &str,
        version: &str,
    ) -> Result<Option<Vec<RecordBatch>>> {
        match self.served_run(model, version).await {
            Some(run) => self.run_background(&run).await,
            None => Ok(None),
        }
    }
}
