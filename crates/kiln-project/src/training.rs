//! Training, scoring and evaluating models in a project: the ML engine
//! ([`kiln_ml`]) on dataset versions, with runs and model objects recorded
//! in the stores.

use std::path::Path;
use std::time::Instant;

use arrow_array::RecordBatch;
use kiln_ml::automl::{self, AutoMlOptions, AutoMlOutcome, Event};
use kiln_ml::model::Model;
use kiln_store::{KV, NewRun, RunRecord, VersionRecord};

use crate::datasets::parse_ref;
use crate::{Project, ProjectError, Result};

/// A finished `kiln train`.
pub struct TrainedRun {
    pub run: RunRecord,
    pub outcome: AutoMlOutcome,
    pub model_object: kiln_core::ContentHash,
    pub version: VersionRecord,
}

/// The commit checked out in the project's git repository, and whether the
/// working tree differs from it; `(None, None)` outside git.
pub fn git_state(root: Option<&Path>) -> (Option<String>, Option<bool>) {
    let Some(root) = root else {
        return (None, None);
    };
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(root)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    match git(&["rev-parse", "HEAD"]) {
        Some(commit) if !commit.is_empty() => {
            let dirty =
                git(&["status", "--porcelain", "--untracked-files=no"]).map(|s| !s.is_empty());
            (Some(commit), dirty)
        }
        _ => (None, None),
    }
}

/// What a run ran on, for reproducing it.
fn environment() -> serde_json::Value {
    serde_json::json!({
        "kiln": env!("CARGO_PKG_VERSION"),
        "os": std::env::consts::OS,
        "arch": std::env::consts::ARCH,
        "threads": rayon::current_num_threads(),
    })
}

/// Reads a Parquet, CSV, JSON-lines file into batches.
pub fn read_file(path: &Path) -> Result<Vec<RecordBatch>> {
    let reader = kiln_data::read::open(path, &kiln_data::read::ReadOptions::default(), false)?;
    Ok(reader.collect::<std::result::Result<Vec<_>, _>>()?)
}

impl Project {
    /// The rows of a dataset version (its columnar copy).
    pub async fn read_version(&self, v: &VersionRecord) -> Result<Vec<RecordBatch>> {
        let columnar = v.columnar_object.ok_or_else(|| {
            ProjectError::WrongKind(format!(
                "Version `{}` of `{}` has no columnar copy to learn from (added with --no-profile, or a folder of files that are not one table)",
                v.id.short(),
                v.dataset
            ))
        })?;
        let (path, _guard) = self.objects.fetch_local(&columnar).await?;
        tokio::task::block_in_place(|| read_file(&path))
    }

    /// A table named on the command line: an existing file, or a dataset
    /// reference (`NAME[@VERSION]`). Returns the batches and a label.
    pub async fn read_table(&self, source: &str) -> Result<(Vec<RecordBatch>, String)> {
        match self.resolve_table(source).await? {
            None => {
                let batches = tokio::task::block_in_place(|| read_file(Path::new(source)))?;
                Ok((batches, source.to_string()))
            }
            Some(v) => {
                let label = format!("{}@{}", v.dataset, v.id.short());
                Ok((self.read_version(&v).await?, label))
            }
        }
    }

    /// A table named on the command line as a local file: the file itself,
    /// or a dataset version's columnar (Parquet) copy. Returns the path, a
    /// label, and the guard that keeps a downloaded copy alive.
    pub async fn table_file(
        &self,
        source: &str,
    ) -> Result<(std::path::PathBuf, String, Option<tempfile::TempPath>)> {
        let Some(v) = self.resolve_table(source).await? else {
            if !Path::new(source).exists() {
                return Err(ProjectError::Io {
                    action: "open",
                    path: source.into(),
                    source: std::io::Error::from(std::io::ErrorKind::NotFound),
                });
            }
            return Ok((source.into(), source.to_string(), None));
        };
        let label = format!("{}@{}", v.dataset, v.id.short());
        let columnar = v.columnar_object.ok_or_else(|| {
            ProjectError::WrongKind(format!(
                "Version `{}` of `{}` has no columnar copy (added with --no-profile, or a folder of files that are not one table)",
                v.id.short(),
                v.dataset
            ))
        })?;
        let (path, guard) = self.objects.fetch_local(&columnar).await?;
        Ok((path, label, guard))
    }

    /// `None` when `source` is a file (existing, or a path-like name that is
    /// not a dataset), else the dataset version it names.
    pub async fn resolve_table(&self, source: &str) -> Result<Option<VersionRecord>> {
        if Path::new(source).exists() {
            return Ok(None);
        }
        // A missing `new.csv` or `out/x.parquet` is reported as a missing
        // file, not as an unknown or invalid dataset name.
        let (name, spec) = match parse_ref(source) {
            Err(_) if looks_like_path(source) => return Ok(None),
            other => other?,
        };
        match self.meta.resolve(&name, &spec).await {
            Err(kiln_store::StoreError::UnknownDataset { .. }) if looks_like_path(source) => {
                Ok(None)
            }
            other => Ok(Some(other?)),
        }
    }

    /// Runs AutoML on a dataset version and records the run, the model and
    /// the leaderboard.
    pub async fn train(
        &self,
        reference: &str,
        target: &str,
        opts: &AutoMlOptions,
        experiment: Option<&str>,
        on_event: &mut (dyn FnMut(Event<'_>) + Send),
    ) -> Result<TrainedRun> {
        // An unknown experiment is an error before the work, not after.
        let experiment_id = match experiment {
            Some(e) => Some(match self.meta.find_experiment(e).await {
                Ok(x) => x.id,
                Err(kiln_store::StoreError::NotFound { .. }) => {
                    self.meta.create_experiment(e, None, &[]).await?.id
                }
                Err(other) => return Err(other.into()),
            }),
            None => None,
        };
        let started_at = kiln_core::now_rfc3339();
        let start = Instant::now();
        let (name, spec) = parse_ref(reference)?;
        let version = self.meta.resolve(&name, &spec).await?;
        let batches = self.read_version(&version).await?;
        check_split_column(&batches, &opts.split)?;
        // The budget covers the whole command: reading the data counts.
        let mut opts = opts.clone();
        if opts.budget >= automl::MIN_BUDGET {
            opts.budget = opts
                .budget
                .saturating_sub(start.elapsed())
                .max(automl::MIN_BUDGET);
        }
        let mut outcome =
            tokio::task::block_in_place(|| automl::train(&batches, target, &opts, on_event))
                .map_err(ProjectError::Ml)?;
        outcome.model.training.dataset =
            Some(format!("{}@{}", version.dataset, version.id.to_hex()));
        let leaderboard =
            serde_json::to_vec_pretty(&outcome.leaderboard).expect("leaderboards serialise");
        // What drift is measured against later: the training data's profile.
        let profile = tokio::task::block_in_place(|| {
            crate::monitoring::training_profile(
                &outcome.model,
                &batches,
                &format!("{}@{}", version.dataset, version.id.short()),
            )
        })?;
        let profile = serde_json::to_vec(&profile).expect("profiles serialise");
        // What drives its predictions: shown on every version's card.
        let explanation = tokio::task::block_in_place(|| {
            crate::explaining::training_explanation(
                &outcome.model,
                &batches,
                &format!("{}@{}", version.dataset, version.id.short()),
            )
        })?;
        let explanation = serde_json::to_vec(&explanation).expect("explanations serialise");
        let background = tokio::task::block_in_place(|| {
            crate::explaining::background_sample(&outcome.model, &batches)
        })?;
        let (
            model_object,
            leaderboard_object,
            profile_object,
            explanation_object,
            background_object,
        ) = {
            let _lock = self.objects.lock()?;
            (
                self.objects.put_bytes(outcome.model.to_bytes()).await?,
                self.objects.put_bytes(leaderboard).await?,
                self.objects.put_bytes(profile).await?,
                self.objects.put_bytes(explanation).await?,
                self.objects.put_bytes(background).await?,
            )
        };
        let m = &outcome.model;
        let mut flat_params = vec![
            KV::new("target", target),
            KV::new("task", m.task().to_string()),
            KV::new("metric", m.training.metric.clone()),
            KV::new("trials", m.training.trials.to_string()),
            KV::new("seed", opts.seed.to_string()),
            KV::new("split", m.training.split.clone()),
            KV::new("test_fraction", m.training.test_fraction.to_string()),
            KV::new("model", m.training.config.clone()),
        ];
        if opts.max_trials.is_none() {
            flat_params.push(KV::new(
                "budget_seconds",
                opts.budget.as_secs_f64().to_string(),
            ));
        }
        let mut flat_metrics: Vec<(String, f64)> = m
            .training
            .validation_score
            .map(|v| (format!("validation_{}", m.training.metric), v))
            .into_iter()
            .collect();
        for (k, v) in &m.training.test_metrics {
            flat_metrics.push((format!("test_{k}"), *v));
        }
        let (source_commit, source_dirty) = git_state(self.root.as_deref());
        let run = self
            .meta
            .record_run(NewRun {
                kind: "train".into(),
                status: "finished".into(),
                dataset: Some(version.dataset.clone()),
                dataset_version: Some(version.id),
                params: serde_json::json!({
                    "target": target,
                    "task": m.task(),
                    "metric": m.training.metric,
                    "budget_seconds": opts.max_trials.is_none().then_some(opts.budget.as_secs_f64()),
                    "trials": m.training.trials,
                    "seed": opts.seed,
                    "split": m.training.split,
                    "test_fraction": m.training.test_fraction,
                    "model": m.training.config,
                    "reproducible": outcome.reproducible,
                }),
                metrics: serde_json::json!({
                    "validation": { m.training.metric.clone(): m.training.validation_score },
                    "test": m.training.test_metrics,
                }),
                model_object: Some(model_object),
                artifacts: serde_json::json!({
                    "leaderboard": leaderboard_object.to_hex(),
                    "profile": profile_object.to_hex(),
                    "explanation": explanation_object.to_hex(),
                    "background": background_object.to_hex(),
                }),
                started_at,
                duration_ms: start.elapsed().as_millis() as i64,
                experiment_id,
                flat_params,
                flat_metrics,
                dataset_role: Some("train".into()),
                source_commit,
                source_dirty,
                command: Some(std::env::args().collect::<Vec<_>>().join(" ")),
                environment: Some(environment()),
            })
            .await?;
        if std::env::var_os(kiln_core::EnvVars::KILN_OPENLINEAGE_URL).is_some() {
            let tracked = self.meta.tracked_run(&run.id).await?;
            let event = crate::openlineage::run_event(
                self.meta.project(),
                &tracked,
                &[format!("model_artifact:{}", model_object.to_hex())],
            );
            crate::openlineage::emit(&event).await;
        }
        Ok(TrainedRun {
            run,
            outcome,
            model_object,
            version,
        })
    }

    /// A model named on the command line: a model file, or a run id (or a
    /// prefix of one) whose model it loads.
    pub async fn load_model(&self, reference: &str) -> Result<Model> {
        let path = Path::new(reference);
        // Run ids have neither a folder nor an extension: `model.kiln` is a
        // file, and its absence is reported as such.
        if path.is_file() || looks_like_path(reference) {
            return Model::load(path).map_err(ProjectError::Ml);
        }
        let r = crate::ModelRef::parse(reference);
        if matches!(
            r,
            crate::ModelRef::Alias { .. } | crate::ModelRef::Version { .. }
        ) {
            let fetched = self.fetch_model(&r).await?;
            if fetched.format != "kiln" {
                return Err(ProjectError::WrongKind(format!(
                    "{reference} is a {} model; this command reads kiln models (serve imported \
                     models with `kiln serve`)",
                    fetched.format
                )));
            }
            return Model::from_bytes(&fetched.bytes, reference).map_err(ProjectError::Ml);
        }
        let id = reference.strip_prefix("run:").unwrap_or(reference);
        let run = self.meta.run(id).await?;
        let object = run.model_object.as_deref().ok_or_else(|| {
            ProjectError::WrongKind(format!("Run `{}` produced no model", &run.id[..12]))
        })?;
        let hash =
            kiln_core::ContentHash::parse(object).map_err(|e| kiln_store::StoreError::Corrupt {
                context: "a run's model object",
                detail: e.to_string(),
            })?;
        let bytes = self.objects.get_bytes(&hash).await?;
        Model::from_bytes(&bytes, &format!("run {}", &run.id[..12])).map_err(ProjectError::Ml)
    }
}

impl Project {
    /// An imported model (ONNX, LightGBM, XGBoost) that `reference` names: a
    /// file or a registry version of one of those formats. None for kiln
    /// models and runs, which [`Project::load_model`] loads.
    pub async fn load_imported(
        &self,
        reference: &str,
    ) -> Result<Option<kiln_ml::imported::ImportedModel>> {
        let r = crate::ModelRef::parse(reference);
        let bytes = match &r {
            crate::ModelRef::File(path) if path.is_file() => {
                std::fs::read(path).map_err(ProjectError::io("read", path))?
            }
            crate::ModelRef::Alias { name, alias } => {
                // The record says the format: a kiln model's bytes are
                // fetched once, by `load_model`.
                if self.meta.model_version_by_alias(name, alias).await?.format == "kiln" {
                    return Ok(None);
                }
                self.fetch_model(&r).await?.bytes
            }
            crate::ModelRef::Version { name, version } => {
                if self.meta.model_version(name, *version).await?.format == "kiln" {
                    return Ok(None);
                }
                self.fetch_model(&r).await?.bytes
            }
            _ => return Ok(None),
        };
        match kiln_ml::foreign::inspect(&bytes) {
            Ok(info) if info.format != kiln_ml::foreign::ModelFormat::Kiln => {
                kiln_ml::imported::ImportedModel::load(&bytes)
                    .map(Some)
                    .map_err(|source| ProjectError::Import {
                        path: reference.into(),
                        source,
                    })
            }
            _ => Ok(None),
        }
    }
}

/// The columns an imported model reads, taken by name from `input` and
/// cast to floats, as one batch (extra columns are left out).
pub fn imported_input(
    model: &kiln_ml::imported::ImportedModel,
    input: &[RecordBatch],
) -> Result<RecordBatch> {
    use std::sync::Arc;
    let mut fields = Vec::new();
    let mut columns = Vec::new();
    for c in model.inputs() {
        let mut parts = Vec::new();
        for b in input {
            let col = b.column_by_name(&c.name).ok_or_else(|| {
                ProjectError::WrongKind(format!(
                    "The input lacks column `{}`, which the model reads (it reads {})",
                    c.name,
                    model
                        .inputs()
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ))
            })?;
            parts.push(
                arrow_cast::cast(col, &arrow_schema::DataType::Float64).map_err(|e| {
                    ProjectError::WrongKind(format!(
                        "Column `{}` cannot be read as numbers ({e}); the model takes numbers \
                         (category codes for categorical features)",
                        c.name
                    ))
                })?,
            );
        }
        let refs: Vec<&dyn arrow_array::Array> = parts.iter().map(|a| a.as_ref()).collect();
        columns.push(arrow_select::concat::concat(&refs).map_err(kiln_data::DataError::from)?);
        fields.push(arrow_schema::Field::new(
            &c.name,
            arrow_schema::DataType::Float64,
            true,
        ));
    }
    RecordBatch::try_new(Arc::new(arrow_schema::Schema::new(fields)), columns)
        .map_err(|e| ProjectError::Data(kiln_data::DataError::from(e)))
}

/// Whether a command-line name that is neither a file nor a known dataset or
/// run was meant as a file: it has a folder part, or an extension and no
/// `@VERSION`.
fn looks_like_path(s: &str) -> bool {
    let p = Path::new(s);
    p.components().count() > 1 || (!s.contains('@') && p.extension().is_some())
}

/// Refuses a `group:COLUMN` or `time:COLUMN` split on a table without the
/// column, before any training (the search would report it as a column
/// missing at prediction time).
fn check_split_column(batches: &[RecordBatch], split: &automl::SplitStrategy) -> Result<()> {
    let (automl::SplitStrategy::Group(name) | automl::SplitStrategy::Time(Some(name))) = split
    else {
        return Ok(());
    };
    let Some(schema) = batches.first().map(RecordBatch::schema) else {
        return Ok(());
    };
    if schema.column_with_name(name).is_some() {
        return Ok(());
    }
    Err(ProjectError::Ml(kiln_ml::MlError::NoSettingColumn {
        setting: format!("--split {split}"),
        name: name.clone(),
        available: schema.fields().iter().map(|f| f.name().clone()).collect(),
    }))
}

/// Writes predictions as CSV or Parquet (by the file's extension): the
/// `keep` columns of the input, then `prediction` and, for classifiers,
/// `prob_<class>` per class. The file appears whole or not at all.
pub fn write_predictions(
    classes: &[String],
    predictions: &kiln_ml::Predictions,
    input: &[RecordBatch],
    keep: &[String],
    out: &Path,
) -> Result<usize> {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for name in keep {
        let schema = input.first().map(|b| b.schema());
        let Some((i, field)) = schema
            .as_ref()
            .and_then(|s| s.column_with_name(name).map(|(i, f)| (i, f.clone())))
        else {
            return Err(ProjectError::WrongKind(format!(
                "Cannot keep column `{name}`: the input has no such column"
            )));
        };
        let parts: Vec<&dyn arrow_array::Array> =
            input.iter().map(|b| b.column(i).as_ref()).collect();
        columns.push(arrow_select::concat::concat(&parts).map_err(kiln_data::DataError::from)?);
        fields.push(field);
    }
    match predictions {
        kiln_ml::Predictions::Regression(v) => {
            fields.push(Field::new("prediction", DataType::Float64, false));
            columns.push(Arc::new(Float64Array::from(v.clone())));
        }
        p => {
            let labels: Vec<&str> = p
                .classes()
                .expect("classifiers predict classes")
                .iter()
                .map(|&c| classes[c as usize].as_str())
                .collect();
            fields.push(Field::new("prediction", DataType::Utf8, false));
            columns.push(Arc::new(StringArray::from(labels)));
            let k = classes.len();
            for (j, class) in classes.iter().enumerate() {
                let probs: Vec<f64> = match p {
                    kiln_ml::Predictions::Binary(v) => v
                        .iter()
                        .map(|&q| if j == 1 { q } else { 1.0 - q })
                        .collect(),
                    kiln_ml::Predictions::Multiclass { probs, .. } => {
                        probs.chunks(k).map(|row| row[j]).collect()
                    }
                    kiln_ml::Predictions::Regression(_) => unreachable!(),
                };
                fields.push(Field::new(
                    format!("prob_{class}"),
                    DataType::Float64,
                    false,
                ));
                columns.push(Arc::new(Float64Array::from(probs)));
            }
        }
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(kiln_data::DataError::from)?;
    let dir = out
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let tmp = tempfile::NamedTempFile::new_in(dir)
        .map_err(ProjectError::io("create a temporary file in", dir))?;
    let parquet = out
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    {
        let file = tmp
            .as_file()
            .try_clone()
            .map_err(ProjectError::io("write", out))?;
        if parquet {
            let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None)
                .map_err(kiln_data::DataError::from)?;
            w.write(&batch).map_err(kiln_data::DataError::from)?;
            w.close().map_err(kiln_data::DataError::from)?;
        } else {
            let mut w = arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(std::io::BufWriter::new(file));
            w.write(&batch).map_err(kiln_data::DataError::from)?;
        }
    }
    tmp.persist(out).map_err(|e| ProjectError::Io {
        action: "write",
        path: out.to_path_buf(),
        source: e.error,
    })?;
    Ok(batch.num_rows())
}
