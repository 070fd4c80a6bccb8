//! The built-in step kinds, over the project's own operations: what each
//! reads (for its cache key) and what it does.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use kiln_core::NoProgress;
use kiln_project::datasets::AddOptions;
use kiln_project::{ModelRef, Project};
use kiln_store::Edge;
use serde_json::{Map, Value, json};

use crate::gate::{self, GateSpec, Outcome};

/// A step's log: lines appended to a file.
pub struct Log {
    file: std::fs::File,
}

impl Log {
    pub fn create(path: &Path) -> std::io::Result<Log> {
        Ok(Log {
            file: std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?,
        })
    }

    pub fn line(&mut self, text: impl AsRef<str>) {
        let _ = writeln!(self.file, "{}", text.as_ref());
    }

    /// The file, for a child process to write to.
    pub fn handle(&self) -> std::io::Result<std::fs::File> {
        self.file.try_clone()
    }
}

/// What a built-in step produced.
#[derive(Default)]
pub struct Produced {
    pub outputs: Map<String, Value>,
    /// Lineage: (kind, id) of what it produced, linked to the pipeline run.
    pub produced: Vec<(&'static str, String)>,
}

/// A step failure, in words.
pub type Failure = String;

fn arg<'a>(args: &'a Map<String, Value>, key: &str) -> Result<&'a str, Failure> {
    match args.get(key) {
        Some(Value::String(s)) => Ok(s),
        Some(other) => Err(format!("`{key}` must be text, not {other}")),
        None => Err(format!("`{key}` is missing")),
    }
}

fn opt<'a>(args: &'a Map<String, Value>, key: &str) -> Result<Option<&'a str>, Failure> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => arg(args, key).map(Some),
    }
}

/// A number given as a number or as text (a parameter).
fn number(args: &Map<String, Value>, key: &str) -> Result<Option<f64>, Failure> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(Value::String(s)) => s
            .trim()
            .parse()
            .map(Some)
            .map_err(|_| format!("`{key}` must be a number, not `{s}`")),
        Some(other) => Err(format!("`{key}` must be a number, not {other}")),
    }
}

fn boolean(args: &Map<String, Value>, key: &str) -> Result<Option<bool>, Failure> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(Value::String(s)) if s == "true" || s == "false" => Ok(Some(s == "true")),
        Some(other) => Err(format!("`{key}` must be true or false, not {other}")),
    }
}

fn list(args: &Map<String, Value>, key: &str) -> Result<Vec<String>, Failure> {
    match args.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(s.split(',').map(|p| p.trim().to_string()).collect()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(format!("`{key}` must list text, not {other}")),
            })
            .collect(),
        Some(other) => Err(format!("`{key}` must be a list, not {other}")),
    }
}

/// A path in `with`, relative to the project's folder.
pub fn project_path(project: &Project, p: &str) -> PathBuf {
    let path = Path::new(p);
    match &project.root {
        Some(root) if path.is_relative() => root.join(path),
        _ => path.to_path_buf(),
    }
}

fn err(e: impl std::fmt::Display) -> Failure {
    e.to_string()
}

/// What a built-in step reads beyond its definition: the versions its
/// references resolve to now, and the content of the files it ingests.
/// Part of the cache key, so `bikes` (the latest version) re-runs a step
/// when a new version is added.
pub async fn reads(
    project: &Project,
    kind: &str,
    args: &Map<String, Value>,
) -> Result<Value, Failure> {
    let mut out = Map::new();
    if kind == "ingest" {
        let path = project_path(project, arg(args, "path")?);
        out.insert("content".into(), json!(content_hash(project, &path)?));
    }
    if matches!(kind, "check" | "split" | "train" | "evaluate")
        && let Some(source) = opt(args, "dataset")?
    {
        let resolved = match project.resolve_table(source).await.map_err(err)? {
            Some(v) => {
                // A check's answer also depends on the checks kiln.yaml
                // declares now.
                if kind == "check" {
                    out.insert(
                        "checks".into(),
                        serde_json::to_value(project.dataset_config(&v.dataset).checks)
                            .map_err(err)?,
                    );
                }
                format!("{}@{}", v.dataset, v.id.to_hex())
            }
            None => content_hash(project, &project_path(project, source))?,
        };
        out.insert("dataset".into(), json!(resolved));
    }
    if kind == "transform" {
        let mut tables = Map::new();
        for (name, source) in transform_tables(project, args).await? {
            let v = dataset_version(project, &source)
                .await
                .map_err(|e| format!("table `{name}`: {e}"))?;
            tables.insert(name, json!(format!("{}@{}", v.dataset, v.id.to_hex())));
        }
        out.insert("tables".into(), Value::Object(tables));
    }
    if matches!(kind, "evaluate" | "gate" | "deploy") {
        let model = arg(args, "model")?;
        out.insert("model".into(), json!(resolve_model(project, model).await?));
    }
    Ok(Value::Object(out))
}

/// `NAME@VERSION` for a registry reference (an alias resolved now); runs
/// and files as given.
async fn resolve_model(project: &Project, model: &str) -> Result<String, Failure> {
    Ok(match ModelRef::parse(model) {
        ModelRef::Alias { name, alias } => {
            let v = project
                .meta
                .model_version_by_alias(&name, &alias)
                .await
                .map_err(err)?;
            format!("{name}@{}", v.version)
        }
        ModelRef::File(p) => content_hash(project, &p)?,
        _ => model.to_string(),
    })
}

/// The BLAKE3 of a file (through the hash cache, so an unchanged file is not
/// read again) or of a folder's listing of files and their hashes.
pub fn content_hash(project: &Project, path: &Path) -> Result<String, Failure> {
    let mut cache = kiln_project::state::HashCache::load(project.root.as_deref());
    let hash = hash_with(&mut cache, path)?;
    cache.save();
    Ok(hash)
}

fn hash_with(cache: &mut kiln_project::state::HashCache, path: &Path) -> Result<String, Failure> {
    let meta =
        std::fs::metadata(path).map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
    if meta.is_dir() {
        let mut files = Vec::new();
        collect_files(path, path, &mut files)
            .map_err(|e| format!("cannot read `{}`: {e}", path.display()))?;
        files.sort();
        let mut h = blake3::Hasher::new();
        for rel in files {
            let hash = hash_with(cache, &path.join(&rel))?;
            h.update(rel.as_bytes());
            h.update(b"\0");
            h.update(hash.as_bytes());
            h.update(b"\n");
        }
        return Ok(h.finalize().to_hex().to_string());
    }
    if let Some(h) = cache.get(path, &meta) {
        return Ok(h.to_hex());
    }
    let (hash, _) = kiln_store::hash_file(path, &NoProgress).map_err(err)?;
    cache.put(path, &meta, hash);
    Ok(hash.to_hex())
}

fn collect_files(root: &Path, dir: &Path, out: &mut Vec<String>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let p = entry.path();
        if entry.file_type()?.is_dir() {
            collect_files(root, &p, out)?;
        } else {
            out.push(
                p.strip_prefix(root)
                    .unwrap_or(&p)
                    .to_string_lossy()
                    .into_owned(),
            );
        }
    }
    Ok(())
}

/// The dataset version a reference (`NAME[@VERSION]`) names now.
async fn dataset_version(
    project: &Project,
    source: &str,
) -> Result<kiln_store::VersionRecord, Failure> {
    project
        .resolve_table(source)
        .await
        .map_err(err)?
        .ok_or_else(|| format!("`{source}` is not a dataset"))
}

/// Adds a file as a version of dataset `name`: the version, whether it is
/// new, and its `NAME@HEX` reference.
async fn add_file(
    project: &Project,
    name: &str,
    path: &Path,
    message: Option<String>,
) -> Result<(Box<kiln_store::VersionRecord>, bool, String), Failure> {
    use kiln_project::datasets::AddOutcome;
    let opts = AddOptions {
        message,
        ..AddOptions::default()
    };
    let (v, created) = match project
        .add(name, path, &opts, &NoProgress)
        .await
        .map_err(err)?
    {
        AddOutcome::Created { version, .. } => (version, true),
        AddOutcome::Unchanged { version } => (version, false),
        AddOutcome::Refused { .. } => unreachable!("checks are not enforced here"),
    };
    let id = format!("{}@{}", v.dataset, v.id.to_hex());
    Ok((v, created, id))
}

/// Runs a built-in step (not `run` nor `approve`, which the runner runs).
pub async fn builtin(
    project: &Project,
    kind: &str,
    args: &Map<String, Value>,
    log: &mut Log,
) -> Result<Produced, Failure> {
    let mut p = Produced::default();
    match kind {
        "ingest" => {
            let name = arg(args, "dataset")?;
            let path = project_path(project, arg(args, "path")?);
            let message = opt(args, "message")?.map(str::to_string);
            let (v, created, id) = add_file(project, name, &path, message).await?;
            log.line(format!(
                "{} {name}@{} from {} ({} rows)",
                if created { "added" } else { "unchanged:" },
                v.id.short(),
                path.display(),
                v.row_count.unwrap_or(0)
            ));
            p.outputs.insert("dataset".into(), json!(id));
            p.outputs.insert("version".into(), json!(v.id.to_hex()));
            p.outputs.insert("rows".into(), json!(v.row_count));
            if created {
                p.produced.push(("dataset_version", id));
            }
        }
        "check" => {
            let source = arg(args, "dataset")?;
            let v = dataset_version(project, source).await?;
            let report = project.check(&v).await.map_err(err)?;
            for r in &report.results {
                log.line(format!(
                    "{} {}",
                    if r.passed { "pass" } else { "FAIL" },
                    r.name
                ));
            }
            if !report.passed {
                let failed: Vec<&str> = report
                    .results
                    .iter()
                    .filter(|r| !r.passed)
                    .map(|r| r.name.as_str())
                    .collect();
                return Err(format!(
                    "{} of {} checks failed on {}@{}: {}",
                    failed.len(),
                    report.results.len(),
                    v.dataset,
                    v.id.short(),
                    failed.join("; ")
                ));
            }
            p.outputs
                .insert("passed".into(), json!(report.results.len()));
            p.outputs.insert("failed".into(), json!(0));
        }
        "split" => split(project, args, log, &mut p).await?,
        "transform" => transform(project, args, log, &mut p).await?,
        "train" => {
            let dataset = arg(args, "dataset")?;
            let target = arg(args, "target")?;
            let mut opts = kiln_ml::automl::AutoMlOptions::default();
            if let Some(t) = opt(args, "task")? {
                opts.task = match t {
                    "auto" => None,
                    "binary" => Some(kiln_ml::Task::Binary),
                    "multiclass" => Some(kiln_ml::Task::Multiclass),
                    "regression" => Some(kiln_ml::Task::Regression),
                    other => {
                        return Err(format!(
                            "task `{other}`: use auto, binary, multiclass or regression"
                        ));
                    }
                };
            }
            if let Some(m) = opt(args, "metric")? {
                opts.metric = Some(m.parse().map_err(err)?);
            }
            if let Some(b) = opt(args, "budget")? {
                opts.budget = kiln_core::parse_duration(b)?;
            }
            if let Some(n) = number(args, "trials")? {
                if n < 1.0 {
                    return Err("`trials` must be at least 1".into());
                }
                opts.max_trials = Some(n as usize);
            }
            if let Some(s) = number(args, "seed")? {
                opts.seed = s as u64;
            }
            if let Some(s) = opt(args, "split")? {
                opts.split = s.parse().map_err(err)?;
            }
            if let Some(f) = number(args, "test_fraction")? {
                opts.test_fraction = f;
            }
            opts.positive = opt(args, "positive")?.map(str::to_string);
            opts.exclude = list(args, "exclude")?;
            if let Some(e) = boolean(args, "ensemble")? {
                opts.ensemble = e;
            }
            let experiment = opt(args, "experiment")?;
            let mut lines: Vec<String> = Vec::new();
            let trained = project
                .train(dataset, target, &opts, experiment, &mut |e| {
                    if let kiln_ml::automl::Event::Trial { trial, .. } = e {
                        lines.push(format!(
                            "trial {}: {} score {:.6}",
                            trial.id, trial.config, trial.score
                        ));
                    }
                })
                .await
                .map_err(err)?;
            for l in lines {
                log.line(l);
            }
            let metric = trained.outcome.metric.name();
            let score = trained.run.metrics["test"][metric]
                .as_f64()
                .or_else(|| trained.run.metrics["validation"][metric].as_f64());
            log.line(format!(
                "run {} on {}@{}: test {metric} {}",
                trained.run.id,
                trained.version.dataset,
                trained.version.id.short(),
                score.map_or("-".into(), |s| format!("{s:.6}"))
            ));
            p.outputs.insert("run".into(), json!(trained.run.id));
            p.outputs
                .insert("model".into(), json!(trained.model_object.to_hex()));
            p.outputs.insert("metric".into(), json!(metric));
            p.outputs.insert("score".into(), json!(score));
            p.produced.push(("run", trained.run.id.clone()));
        }
        "evaluate" => {
            let model = project.load_model(arg(args, "model")?).await.map_err(err)?;
            let (batches, label) = project
                .read_table(arg(args, "dataset")?)
                .await
                .map_err(err)?;
            let ev = tokio::task::block_in_place(|| {
                kiln_ml::evaluate::evaluate(&model, &batches, false, None)
            })
            .map_err(err)?;
            log.line(format!("{} rows of {label}", ev.rows));
            for (k, v) in &ev.metrics {
                log.line(format!("{k} = {v}"));
                p.outputs.insert(k.clone(), json!(v));
            }
        }
        "register" => {
            let name = arg(args, "model")?;
            let run = arg(args, "run")?;
            let v = project
                .register_run_model(name, run, opt(args, "description")?)
                .await
                .map_err(err)?;
            log.line(format!("registered run {run} as {name}@{}", v.version));
            p.outputs
                .insert("model".into(), json!(format!("{name}@{}", v.version)));
            p.outputs.insert("version".into(), json!(v.version));
            p.produced
                .push(("model_version", format!("{name}/{}", v.version)));
        }
        "gate" => {
            let report = gate::evaluate(
                project,
                &GateSpec {
                    model: arg(args, "model")?.to_string(),
                    require: arg(args, "require")?.to_string(),
                    data: opt(args, "data")?.map(str::to_string),
                },
            )
            .await
            .map_err(err)?;
            for c in &report.clauses {
                log.line(format!(
                    "{} {}  [{}]{}",
                    match c.outcome {
                        Outcome::Passed => "pass",
                        Outcome::Failed => "FAIL",
                        Outcome::Skipped => "skip",
                    },
                    c.clause,
                    c.values,
                    c.reason
                        .as_ref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                ));
            }
            p.outputs.insert(
                "clauses".into(),
                serde_json::to_value(&report.clauses).map_err(err)?,
            );
            if !report.passed {
                let failed: Vec<String> = report
                    .clauses
                    .iter()
                    .filter(|c| c.outcome == Outcome::Failed)
                    .map(|c| {
                        format!(
                            "{} ({})",
                            c.clause,
                            c.reason.as_deref().unwrap_or(&c.values)
                        )
                    })
                    .collect();
                return Err(format!(
                    "{} failed the gate: {}",
                    report.model,
                    failed.join("; ")
                ));
            }
            p.outputs.insert("passed".into(), json!(true));
        }
        "deploy" => {
            let model = arg(args, "model")?;
            let alias = arg(args, "alias")?;
            let (name, version) = match ModelRef::parse(model) {
                ModelRef::Version { name, version } => (name, version),
                ModelRef::Alias { name, alias: from } => {
                    let v = project
                        .meta
                        .model_version_by_alias(&name, &from)
                        .await
                        .map_err(err)?;
                    (name, v.version)
                }
                _ => {
                    return Err(format!(
                        "`{model}` is not a registered version: name it MODEL@VERSION"
                    ));
                }
            };
            let previous = project
                .meta
                .set_alias(&name, alias, version)
                .await
                .map_err(err)?;
            log.line(match previous {
                Some(p) if p == version => format!("{name}@{alias} already points at {version}"),
                Some(p) => format!("{name}@{alias}: {p} → {version}"),
                None => format!("{name}@{alias} → {version}"),
            });
            p.outputs
                .insert("model".into(), json!(format!("{name}@{version}")));
            p.outputs.insert("previous".into(), json!(previous));
        }
        other => return Err(format!("`{other}` is not a built-in step kind")),
    }
    Ok(p)
}

/// The lineage edges of what a step produced, from the pipeline run.
pub fn edges(run_id: &str, produced: &[(&'static str, String)]) -> Vec<Edge> {
    produced
        .iter()
        .map(|(kind, id)| {
            (
                kind.to_string(),
                id.clone(),
                "produced_by".to_string(),
                "pipeline_run".to_string(),
                run_id.to_string(),
            )
        })
        .collect()
}

/// The `split` kind: rows of a dataset version into two new datasets.
async fn split(
    project: &Project,
    args: &Map<String, Value>,
    log: &mut Log,
    p: &mut Produced,
) -> Result<(), Failure> {
    use std::sync::Arc;

    use arrow_array::{Array, UInt32Array};

    let source = arg(args, "dataset")?;
    let v = dataset_version(project, source).await?;
    let batches = project.read_version(&v).await.map_err(err)?;
    let Some(schema) = batches.first().map(|b| b.schema()) else {
        return Err(format!("{}@{} has no rows", v.dataset, v.id.short()));
    };
    let table = arrow_select::concat::concat_batches(&schema, &batches).map_err(err)?;
    let n = table.num_rows();
    let fraction = number(args, "test_fraction")?.unwrap_or(0.2);
    let seed = number(args, "seed")?.unwrap_or(0.0) as u64;
    let parts = match opt(args, "stratify")? {
        None => kiln_ml::split::random(n, fraction, seed).map_err(err)?,
        Some(col) => {
            let column = table.column_by_name(col).ok_or_else(|| {
                format!(
                    "`stratify: {col}`: {}@{} has no column `{col}`",
                    v.dataset,
                    v.id.short()
                )
            })?;
            let text = arrow_cast::cast(column, &arrow_schema::DataType::Utf8).map_err(err)?;
            let text = text
                .as_any()
                .downcast_ref::<arrow_array::StringArray>()
                .expect("cast to Utf8");
            let mut codes: BTreeMap<String, u32> = BTreeMap::new();
            let classes: Vec<u32> = (0..n)
                .map(|i| {
                    let key = if text.is_null(i) {
                        "\0null".to_string()
                    } else {
                        text.value(i).to_string()
                    };
                    let next = codes.len() as u32;
                    *codes.entry(key).or_insert(next)
                })
                .collect();
            kiln_ml::split::stratified(&classes, fraction, seed).map_err(err)?
        }
    };
    let dir = tempfile::tempdir().map_err(err)?;
    for (side, rows) in [("train", &parts.train), ("test", &parts.test)] {
        let name = match opt(args, side)? {
            Some(n) => n.to_string(),
            None => format!("{}-{side}", v.dataset),
        };
        let idx = UInt32Array::from(rows.iter().map(|&r| r as u32).collect::<Vec<_>>());
        let taken = arrow_select::take::take_record_batch(&table, &idx).map_err(err)?;
        let path = dir.path().join(format!("{name}.parquet"));
        let file = std::fs::File::create(&path).map_err(err)?;
        let mut w =
            parquet::arrow::ArrowWriter::try_new(file, Arc::clone(&schema), None).map_err(err)?;
        w.write(&taken).map_err(err)?;
        w.close().map_err(err)?;
        let message = format!(
            "{side} part of {}@{} ({} of {n} rows, seed {seed})",
            v.dataset,
            v.id.short(),
            rows.len()
        );
        let (added, created, id) = add_file(project, &name, &path, Some(message)).await?;
        log.line(format!(
            "{side}: {name}@{} ({} rows)",
            added.id.short(),
            rows.len()
        ));
        p.outputs.insert(side.into(), json!(id));
        p.outputs.insert(format!("{side}_rows"), json!(rows.len()));
        if created {
            p.produced.push(("dataset_version", id));
        }
    }
    Ok(())
}

/// The tables a transform's SQL reads: `tables:` (name → dataset
/// reference), else every dataset of the project whose name the SQL
/// mentions as a word.
async fn transform_tables(
    project: &Project,
    args: &Map<String, Value>,
) -> Result<Vec<(String, String)>, Failure> {
    match args.get("tables") {
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                other => Err(format!("`tables.{k}` must name a dataset, not {other}")),
            })
            .collect(),
        Some(other) => Err(format!(
            "`tables` maps table names to datasets (`{{ trips: \"${{steps.ingest.dataset}}\" }}`), not {other}"
        )),
        None => {
            let sql = arg(args, "sql")?;
            let mut out = Vec::new();
            for d in project.meta.list_datasets().await.map_err(err)? {
                let name = d.dataset.name;
                let word = regex::Regex::new(&format!(r"(?i)\b{}\b", regex::escape(&name)))
                    .expect("an escaped name is a regex");
                if word.is_match(sql) {
                    out.push((name.clone(), name));
                }
            }
            if out.is_empty() {
                return Err(
                    "its SQL names no dataset of this project; list them in `tables:`".into(),
                );
            }
            Ok(out)
        }
    }
}

/// The `transform` kind: SQL over dataset versions in an in-memory SQLite
/// database (the engine kiln already embeds for its metadata), its result
/// ingested as a new dataset (types inferred again, as for a CSV).
async fn transform(
    project: &Project,
    args: &Map<String, Value>,
    log: &mut Log,
    p: &mut Produced,
) -> Result<(), Failure> {
    use arrow_array::Array;
    use sqlx::{Column, Row, TypeInfo, ValueRef};

    let sql = arg(args, "sql")?;
    let output = arg(args, "output")?;
    kiln_project::datasets::validate_name(output).map_err(|e| format!("`output`: {e}"))?;
    let db = sqlx::sqlite::SqlitePoolOptions::new()
        .max_connections(1)
        .connect("sqlite::memory:")
        .await
        .map_err(err)?;
    for (name, source) in transform_tables(project, args).await? {
        let v = dataset_version(project, &source)
            .await
            .map_err(|e| format!("table `{name}`: {e}"))?;
        let batches = project.read_version(&v).await.map_err(err)?;
        let Some(schema) = batches.first().map(|b| b.schema()) else {
            return Err(format!(
                "table `{name}`: {}@{} has no rows to read",
                v.dataset,
                v.id.short()
            ));
        };
        let quote = |s: &str| format!("\"{}\"", s.replace('"', "\"\""));
        let columns: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| {
                use arrow_schema::DataType as T;
                let ty = match f.data_type() {
                    T::Int8
                    | T::Int16
                    | T::Int32
                    | T::Int64
                    | T::UInt8
                    | T::UInt16
                    | T::UInt32
                    | T::UInt64
                    | T::Boolean => "INTEGER",
                    T::Float16
                    | T::Float32
                    | T::Float64
                    | T::Decimal128(..)
                    | T::Decimal256(..) => "REAL",
                    _ => "TEXT",
                };
                format!("{} {ty}", quote(f.name()))
            })
            .collect();
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "CREATE TABLE {} ({})",
            quote(&name),
            columns.join(", ")
        )))
        .execute(&db)
        .await
        .map_err(|e| format!("loading table `{name}`: {e}"))?;
        let width = schema.fields().len();
        let per_insert = (30_000 / width.max(1)).clamp(1, 500);
        let mut tx = db.begin().await.map_err(err)?;
        let mut rows = 0usize;
        for b in &batches {
            // Numbers and booleans stay numbers; everything else (dates,
            // times, categories) is text SQLite's functions read.
            // Other integer and float widths become Int64 and Float64.
            let text: Vec<Option<arrow_array::ArrayRef>> = b
                .columns()
                .iter()
                .zip(schema.fields())
                .map(|(c, f)| {
                    use arrow_schema::DataType as T;
                    let to = match c.data_type() {
                        T::Int64 | T::Float64 | T::Boolean | T::Utf8 => return Ok(None),
                        T::Int8
                        | T::Int16
                        | T::Int32
                        | T::UInt8
                        | T::UInt16
                        | T::UInt32
                        | T::UInt64 => T::Int64,
                        T::Float16 | T::Float32 | T::Decimal128(..) | T::Decimal256(..) => {
                            T::Float64
                        }
                        _ => T::Utf8,
                    };
                    arrow_cast::cast(c, &to).map(Some).map_err(|e| {
                        format!(
                            "table `{name}`: column `{}` ({}) cannot be read as {to}: {e}",
                            f.name(),
                            c.data_type()
                        )
                    })
                })
                .collect::<Result<_, Failure>>()?;
            let mut start = 0;
            while start < b.num_rows() {
                let end = (start + per_insert).min(b.num_rows());
                let marks =
                    vec![format!("({})", vec!["?"; width].join(", ")); end - start].join(", ");
                let stmt = format!("INSERT INTO {} VALUES {marks}", quote(&name));
                let mut q = sqlx::query(sqlx::AssertSqlSafe(stmt));
                for r in start..end {
                    for (c, col) in b.columns().iter().enumerate() {
                        let col = text[c].as_ref().unwrap_or(col);
                        if col.is_null(r) {
                            q = q.bind(None::<String>);
                            continue;
                        }
                        let any = col.as_any();
                        q = if let Some(a) = any.downcast_ref::<arrow_array::Int64Array>() {
                            q.bind(a.value(r))
                        } else if let Some(a) = any.downcast_ref::<arrow_array::Float64Array>() {
                            q.bind(a.value(r))
                        } else if let Some(a) = any.downcast_ref::<arrow_array::BooleanArray>() {
                            q.bind(i64::from(a.value(r)))
                        } else if let Some(a) = any.downcast_ref::<arrow_array::StringArray>() {
                            q.bind(a.value(r).to_string())
                        } else {
                            q.bind(None::<String>)
                        };
                    }
                }
                q.execute(&mut *tx)
                    .await
                    .map_err(|e| format!("loading table `{name}`: {e}"))?;
                rows += end - start;
                start = end;
            }
        }
        tx.commit().await.map_err(err)?;
        log.line(format!(
            "table {name} = {}@{} ({rows} rows)",
            v.dataset,
            v.id.short()
        ));
    }

    // The result, as CSV, then ingested like any file.
    let dir = tempfile::tempdir().map_err(err)?;
    let path = dir.path().join(format!("{output}.csv"));
    let mut out = std::io::BufWriter::new(std::fs::File::create(&path).map_err(err)?);
    let field = |s: &str| {
        if s.contains([',', '"', '\n', '\r']) || s.is_empty() {
            format!("\"{}\"", s.replace('"', "\"\""))
        } else {
            s.to_string()
        }
    };
    let mut n = 0usize;
    let mut header: Option<Vec<String>> = None;
    {
        use futures::TryStreamExt;
        let mut stream = sqlx::query(sqlx::AssertSqlSafe(sql.to_string())).fetch(&db);
        while let Some(row) = stream
            .try_next()
            .await
            .map_err(|e| format!("the SQL failed: {e}"))?
        {
            if header.is_none() {
                let names: Vec<String> =
                    row.columns().iter().map(|c| c.name().to_string()).collect();
                writeln!(
                    out,
                    "{}",
                    names.iter().map(|s| field(s)).collect::<Vec<_>>().join(",")
                )
                .map_err(err)?;
                header = Some(names);
            }
            let mut cells = Vec::with_capacity(row.len());
            for i in 0..row.len() {
                let raw = row.try_get_raw(i).map_err(err)?;
                let cell = if raw.is_null() {
                    String::new()
                } else {
                    match raw.type_info().name() {
                        "INTEGER" => row.try_get::<i64, _>(i).map_err(err)?.to_string(),
                        // Always with a point, so a column of whole
                        // floats is read back as floats.
                        "REAL" => {
                            let t = row.try_get::<f64, _>(i).map_err(err)?.to_string();
                            if t.contains(['.', 'e', 'N', 'i']) {
                                t
                            } else {
                                format!("{t}.0")
                            }
                        }
                        _ => field(&row.try_get::<String, _>(i).map_err(err)?),
                    }
                };
                cells.push(cell);
            }
            writeln!(out, "{}", cells.join(",")).map_err(err)?;
            n += 1;
        }
    }
    db.close().await;
    std::io::Write::flush(&mut out).map_err(err)?;
    drop(out);
    if n == 0 {
        return Err("the SQL returned no rows, so there is no dataset to add".into());
    }
    let message = opt(args, "message")?
        .map(str::to_string)
        .unwrap_or_else(|| {
            format!(
                "transform: {}",
                sql.split_whitespace().collect::<Vec<_>>().join(" ")
            )
        });
    let (v, created, id) = add_file(project, output, &path, Some(message)).await?;
    log.line(format!("{output}@{} ({n} rows)", v.id.short()));
    p.outputs.insert("dataset".into(), json!(id));
    p.outputs.insert("version".into(), json!(v.id.to_hex()));
    p.outputs.insert("rows".into(), json!(n));
    if created {
        p.produced.push(("dataset_version", id));
    }
    Ok(())
}
