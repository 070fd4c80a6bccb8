//! The command line, declared with clap; doc comments are the help text.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use kiln_core::EnvVars;

/// kiln: the machine-learning loop in one binary.
///
/// Data in, versioned and checked; models trained, tracked and served;
/// everything immutable and traceable. Start with `kiln init`, then
/// `kiln data add NAME FILE`. `kiln demo` shows a tour.
#[derive(Debug, Parser)]
#[command(
    name = "kiln",
    version,
    propagate_version = true,
    max_term_width = 100,
    after_help = "Examples:
  kiln init                                  create a project here
  kiln data add visits visits.csv -m \"Nov\"   version a file (CSV, TSV, Parquet, JSON lines, folder)
  kiln data show visits                      schema and profile of the latest version
  kiln data check visits                     run the checks kiln.yaml declares (exit 1 on failure)
  kiln data diff visits@v1 visits@latest     what changed between two versions
  kiln train visits --target readmitted      find the best model within a budget (AutoML)
  kiln predict RUN new.csv -o scored.csv     score a table with a trained model

Exit status: 0 success, 1 a failed check or gate, 2 a usage or input error."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    #[command(flatten)]
    pub global: GlobalArgs,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// Metadata store: `sqlite://PATH` or `postgres://USER:PASS@HOST:PORT/DB`
    /// (default: the project's `.kiln/kiln.db`).
    #[arg(long, global = true, env = EnvVars::KILN_STORE, value_name = "URL")]
    pub store: Option<String>,
    /// Object store: `file://PATH` or `s3://BUCKET/PREFIX`, with the usual
    /// AWS_* variables and KILN_S3_ENDPOINT for S3-compatible servers
    /// (default: the project's `.kiln/objects`).
    #[arg(long, global = true, env = EnvVars::KILN_OBJECTS, value_name = "URL")]
    pub objects: Option<String>,
    /// The project's name where there is no kiln.yaml (with `--store` and
    /// `--objects`, e.g. a `kiln worker` on another machine).
    #[arg(long, global = true, env = EnvVars::KILN_PROJECT, value_name = "NAME")]
    pub project: Option<String>,
    /// Print machine-readable JSON on stdout instead of tables.
    #[arg(long, global = true)]
    pub json: bool,
    /// Print only what was asked for: no progress, no notes.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log more (repeat for more detail); KILN_LOG sets a filter.
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create a project: kiln.yaml plus .kiln/ (SQLite metadata, object folder).
    ///
    /// Commands find the project by walking up from the working directory,
    /// as git does.
    Init(InitArgs),
    /// Version, profile, check, diff and restore datasets.
    #[command(subcommand)]
    Data(DataCommand),
    /// Run a tour on a throw-away project with a bundled real dataset.
    Demo(DemoArgs),
    /// Find, train and test the best model for a target column (AutoML).
    ///
    /// Infers the task (binary, multiclass, regression) and metric, holds
    /// out a test set, tries a portfolio of strong configurations (boosted
    /// trees, random forest, extra trees, linear models), then searches
    /// around the best one until the budget is spent, builds an ensemble
    /// when it helps, and records the run, the model and the leaderboard.
    /// The same seed, data and `--trials` give the same model bytes.
    ///
    /// Exit status: 0 trained, 2 error.
    Train(TrainArgs),
    /// Score a table with a model; write predictions as CSV or Parquet.
    ///
    /// Output columns: the `--keep` columns, `prediction` and, for
    /// classifiers, `prob_<class>` for each class.
    Predict(PredictArgs),
    /// Score a model on a labelled table: metrics, confusion matrix,
    /// calibration and a decision threshold.
    Evaluate(EvaluateArgs),
    /// Explain a model: which columns drive its predictions, overall and
    /// row by row (SHAP values), with permutation importance and partial
    /// dependence.
    ///
    /// Tree models (kiln's, LightGBM, XGBoost) get exact TreeSHAP on the
    /// raw score (log-odds for classifiers); kiln's linear models exact
    /// linear SHAP; ensembles and ONNX models permutation SHAP on the
    /// prediction, an estimate (the output says so). Attributions are on
    /// the table's own columns and add up: expected value + Σ = output.
    ///
    ///   kiln explain bikes@champion hours.csv --html explain.html
    ///   kiln explain fraud@3 --rows 0,17 --class yes
    ///   kiln explain model.txt sample.parquet --json
    ///
    /// Exit status: 0 explained, 2 error.
    Explain(ExplainArgs),
    /// List, inspect, compare and delete runs (kiln's and MLflow clients').
    #[command(subcommand)]
    Runs(RunsCommand),
    /// List and create experiments (groups of runs).
    #[command(subcommand)]
    Experiments(ExperimentsCommand),
    /// The model registry: models, versions, aliases, imports.
    ///
    /// A version comes from a run's model (`kiln models register NAME
    /// --run RUN`), from a file (`kiln models import NAME FILE`: kiln, ONNX,
    /// LightGBM text, XGBoost JSON), or from MLflow's client
    /// (`registered_model_name=` in `log_model`). Aliases (`champion`,
    /// `challenger`, any name) point at versions; every move is audited.
    #[command(subcommand)]
    Models(ModelsCommand),
    /// Walk lineage from a model version, run or dataset version: what it
    /// came from and what came from it.
    ///
    /// REF is `MODEL@VERSION`, `MODEL@ALIAS`, a run id (prefix), or
    /// `DATASET@VERSION`.
    Lineage {
        #[arg(value_name = "REF")]
        reference: String,
        /// How many edges to follow each way.
        #[arg(long, default_value_t = 8)]
        depth: usize,
    },
    /// Delete for good what was deleted (runs marked deleted), then remove
    /// objects no live record points to.
    ///
    /// Safe while other kiln processes write: objects younger than
    /// `--grace` are kept, since a writer stores objects before it records
    /// them. `--dry-run` reports without deleting.
    Gc(GcArgs),
    /// Serve the REST API and MLflow's tracking, artifact and registry API.
    ///
    /// Point MLflow's client at it: `MLFLOW_TRACKING_URI=http://HOST:PORT`.
    /// kiln's REST API is under /api/v1 (OpenAPI at /api/openapi.json).
    Server(ServerArgs),
    /// Serve models for real-time predictions: MLflow's /invocations, the
    /// Open Inference Protocol v2, kiln's REST API and /metrics.
    ///
    /// Each TARGET is a deployment declared in kiln.yaml (`deployments:`), or
    /// a model: `NAME@ALIAS` (follows the alias: moving it swaps the new
    /// version in without failing a request), `NAME@VERSION`, a run id or a
    /// model file (kiln, ONNX, LightGBM text, XGBoost JSON). Name a model's
    /// deployment with `DEPLOYMENT=MODEL`. No TARGET serves every declared
    /// deployment.
    ///
    ///   kiln serve fraud@champion
    ///   kiln serve fraud@champion --split fraud@challenger=10 --shadow fraud@candidate
    ///   curl -d '{"dataframe_records": [{"amount": 12.5}]}' \
    ///        -H 'content-type: application/json' localhost:8080/invocations
    Serve(ServeArgs),
    /// Show a deployment's logged predictions, newest first, with the
    /// labels fed back for them (POST …/feedback).
    Predictions {
        /// The deployment's name.
        deployment: String,
        /// How many rows to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Watch models: drift between tables, monitors over served traffic,
    /// alerts.
    #[command(subcommand)]
    Monitor(MonitorCommand),
    /// Judge a model version against a requirement, for CI/CD: exit 1 when
    /// it fails.
    ///
    /// The requirement is clauses joined by `&&` (also `||`, `!`, `+ - * /`
    /// and parentheses), each printed with its values. A name is one of the
    /// candidate's recorded metrics (`roc_auc` reads `roc_auc`, else the
    /// held-out `test_roc_auc`, else `validation_roc_auc`); `ALIAS.NAME` is
    /// the metric of the version an alias points at (`champion.roc_auc`).
    /// A clause comparing with an alias that is not set yet is skipped, so
    /// the first model can become champion. `p50_latency_ms`,
    /// `p99_latency_ms` and `mean_latency_ms` are measured here, one row per
    /// call, on the rows `kiln train` stored with the model (or `--data`).
    ///
    ///   kiln gate fraud@3 --require "roc_auc >= 0.80 && roc_auc >= champion.roc_auc - 0.005"
    ///   kiln gate fraud@candidate --require "p99_latency_ms < 5" --junit gate.xml
    ///
    /// Exit status: 0 passed, 1 failed, 2 error (a bad requirement, an
    /// unknown model).
    Gate(GateArgs),
    /// Run a pipeline kiln.yaml declares: its steps in dependency order,
    /// independent ones in parallel, each skipped when nothing it reads
    /// changed since it last succeeded.
    ///
    /// A step's cache key hashes its definition (parameters filled in), the
    /// dataset versions and files it reads, and the outputs of the steps it
    /// needs; change one input and only the steps downstream of it run.
    /// A failed step stops the steps that need it (others go on); retries,
    /// timeouts and Ctrl-C (which cancels, killing running commands) are
    /// recorded with every step's log.
    ///
    ///   kiln run                                  the only pipeline
    ///   kiln run bikes --param budget=2m --dry-run
    ///   kiln run bikes --force --junit kiln-run.xml
    ///
    /// Exit status: 0 succeeded, 1 a step failed (a failed check or gate
    /// included), 2 an error before running (a bad parameter, kiln.yaml).
    Run(RunArgs),
    /// Run pipeline steps that `kiln run --remote` (or `kiln server
    /// --remote-steps`) queues, on this machine.
    ///
    /// Workers share the store: point them at PostgreSQL and S3 (`--store`,
    /// `--objects`, or KILN_STORE and KILN_OBJECTS) and start as many as you
    /// like, on as many machines. Each claims one step at a time under a
    /// lease its heartbeat renews; a worker that dies has its step taken
    /// over when the lease runs out. Commands run in the working directory
    /// (a checkout of the project); files a needed step wrote are fetched
    /// from the object store first. SIGTERM or Ctrl-C finishes the step in
    /// hand, then stops.
    ///
    ///   KILN_STORE=postgres://… KILN_OBJECTS=s3://bucket/kiln kiln worker --name w1
    Worker(WorkerArgs),
    /// Run a recorded pipeline run again and say whether each output is
    /// byte-identical.
    ///
    /// The run's recorded definition and parameters are used (not today's
    /// kiln.yaml), every step runs again (no cache), and each step reads
    /// the dataset and model versions the recorded run read, whatever the
    /// names point at now. Steps that change the registry or wait for a
    /// person (register, gate, approve, deploy) are not run again. Inputs
    /// that changed since (an edited script) are named.
    ///
    ///   kiln reproduce 3f2a9c41
    ///
    /// Exit status: 0 every output identical, 1 an output differs or a step
    /// failed, 2 error.
    Reproduce {
        /// The pipeline run (id or prefix; `kiln pipelines runs` lists them).
        run: String,
    },
    /// Pipelines: what kiln.yaml declares, their runs, step logs.
    #[command(subcommand)]
    Pipelines(PipelinesCommand),
    /// Approve (or reject) a pipeline's approval step that waits.
    ///
    ///   kiln approve 0193ab… promote -m "looked at the report"
    ///
    /// Exit status: 0 recorded, 2 nothing waits there.
    Approve {
        /// The pipeline run (id or prefix; `kiln pipelines runs` lists them).
        run: String,
        /// The approval step.
        step: String,
        /// Reject instead: the step fails, and what needs it is skipped.
        #[arg(long)]
        reject: bool,
        /// Why, for the audit log.
        #[arg(long, short)]
        message: Option<String>,
    },
    /// Write deployment files: a CI pipeline (GitLab, Jenkins, GitHub), a
    /// Dockerfile for a serving image, Kubernetes manifests.
    #[command(subcommand)]
    Export(crate::commands::export::ExportCommand),
    /// Show the audit log: who changed what, and when, newest first.
    Audit {
        /// How many entries to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
}

#[derive(Debug, Args)]
pub struct RunArgs {
    /// The pipeline (default: the only one kiln.yaml declares).
    pub pipeline: Option<String>,
    /// Set a parameter (repeatable): `--param budget=2m`.
    #[arg(long = "param", short = 'p', value_name = "NAME=VALUE", value_parser = parse_param)]
    pub params: Vec<(String, String)>,
    /// Print the plan (steps in order, which are cached) and run nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Run every step, cached or not.
    #[arg(long)]
    pub force: bool,
    /// Steps running at once (default: the number of cores).
    #[arg(long, short)]
    pub jobs: Option<usize>,
    /// Also write the run as JUnit XML, one test case per step.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Hand the steps to `kiln worker`s through the store (PostgreSQL and
    /// S3 for workers on other machines) and wait for them; approval steps
    /// still wait here.
    #[arg(long)]
    pub remote: bool,
}

#[derive(Debug, Args)]
pub struct WorkerArgs {
    /// Its name in step records (default: HOST-PID).
    #[arg(long)]
    pub name: Option<String>,
    /// How long a claimed step stays this worker's without a heartbeat;
    /// after that another worker takes it over.
    #[arg(long, default_value = "30s", value_name = "DURATION")]
    pub lease: String,
    /// How often an idle worker looks for queued steps.
    #[arg(long, default_value = "25ms", value_name = "DURATION")]
    pub poll: String,
}

fn parse_param(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

#[derive(Debug, Subcommand)]
pub enum PipelinesCommand {
    /// The pipelines kiln.yaml declares, with their last run.
    Ls,
    /// A pipeline's steps and schedule, or a run's steps (by run id).
    Show {
        /// A pipeline name or a run id (prefix).
        target: String,
    },
    /// Runs, newest first.
    Runs {
        /// Only this pipeline's.
        pipeline: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: i64,
    },
    /// A step's log (every step's, without STEP).
    Logs {
        /// The run (id or prefix).
        run: String,
        step: Option<String>,
    },
    /// Ask `kiln server` to run a pipeline (a pending trigger it takes
    /// within its `--scheduler-every`).
    Trigger {
        pipeline: String,
        /// Why, shown with the run's cause.
        #[arg(long, default_value = "asked from the command line")]
        reason: String,
    },
    /// The built-in step kinds, their arguments and outputs.
    Kinds,
}

#[derive(Debug, Args)]
pub struct GateArgs {
    /// The candidate: `MODEL@VERSION` or `MODEL@ALIAS`.
    pub model: String,
    /// What it must meet, e.g. `roc_auc >= 0.8 && p99_latency_ms < 5`.
    #[arg(long, short)]
    pub require: String,
    /// Rows to time predictions on (a file or `DATASET[@VERSION]`) instead
    /// of the ones stored with the model.
    #[arg(long)]
    pub data: Option<String>,
    /// Also write the verdict as JUnit XML (one test case per clause), for
    /// Jenkins' `junit` step and GitLab's `reports: junit`.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    /// The dataset to learn from: `NAME`, `NAME@TAG` or `NAME@ID_PREFIX`.
    pub dataset: String,
    /// The column to predict.
    #[arg(long, short)]
    pub target: String,
    /// auto, binary, multiclass or regression.
    #[arg(long, default_value = "auto")]
    pub task: String,
    /// Metric that picks the model (default: roc_auc for binary, logloss
    /// for multiclass, rmse for regression). Also: pr_auc, accuracy,
    /// balanced_accuracy, f1, mae, r2, mape, poisson_deviance.
    #[arg(long)]
    pub metric: Option<String>,
    /// Wall-clock budget for the whole run, e.g. `30s`, `2m`, `1h`.
    #[arg(long, default_value = "60s")]
    pub budget: String,
    /// Run exactly this many trials, never cut short (for byte-for-byte
    /// reproducible runs; a run's record says how many it made).
    #[arg(long)]
    pub trials: Option<usize>,
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// How to hold out the test set (and validation folds): auto
    /// (stratified for classes, random otherwise), random, stratified,
    /// time (by row order), time:COLUMN, or group:COLUMN (no group on both
    /// sides, e.g. a patient id).
    #[arg(long, default_value = "auto")]
    pub split: String,
    /// Share of rows held out for the test set; 0 holds out none (when you
    /// have your own test table) so every row trains.
    #[arg(long, default_value_t = 0.2)]
    pub test_fraction: f64,
    /// The positive class of a binary target (default: 1/true, or the
    /// rarer class).
    #[arg(long)]
    pub positive: Option<String>,
    /// Columns never to use as features (identifiers, leakage).
    #[arg(long, value_delimiter = ',')]
    pub exclude: Vec<String>,
    /// Do not combine models into an ensemble.
    #[arg(long)]
    pub no_ensemble: bool,
    /// The experiment to record the run in, by name or id (created if new;
    /// default: `Default`).
    #[arg(long, short = 'e')]
    pub experiment: Option<String>,
    /// Worker threads (default: all cores).
    #[arg(long)]
    pub threads: Option<usize>,
    /// Also write the model file here.
    #[arg(long, short, value_name = "FILE")]
    pub output: Option<PathBuf>,
}

#[derive(Debug, Args)]
pub struct PredictArgs {
    /// A model: a run id (prefix) from `kiln train`, `NAME@VERSION` or
    /// `NAME@ALIAS` from the registry, or a model file (kiln, ONNX, LightGBM
    /// text, XGBoost JSON; imported models read their columns by name).
    pub model: String,
    /// The rows to score: a file (CSV, Parquet, JSON lines) or a dataset
    /// reference (`NAME[@VERSION]`).
    pub data: String,
    /// Where to write predictions (`.csv` or `.parquet`).
    #[arg(long, short)]
    pub output: PathBuf,
    /// Input columns to copy into the output (e.g. an id).
    #[arg(long, value_delimiter = ',')]
    pub keep: Vec<String>,
}

#[derive(Debug, Args)]
pub struct ExplainArgs {
    /// The model: `NAME@VERSION` or `NAME@ALIAS` from the registry, a run
    /// id (prefix) from `kiln train`, or a model file (kiln, LightGBM text,
    /// XGBoost JSON, ONNX).
    pub model: String,
    /// The rows to explain: a file (CSV, Parquet, JSON lines) or a dataset
    /// reference (`NAME[@VERSION]`). Default: the dataset version a kiln
    /// model was trained on.
    pub data: Option<String>,
    /// Rows to explain one by one (0-based row numbers), e.g. `--rows 0,17`.
    #[arg(long, value_delimiter = ',', value_name = "ROW")]
    pub rows: Vec<usize>,
    /// Write a self-contained HTML report (importance, beeswarm summary,
    /// dependence and partial dependence plots, a waterfall per `--rows`
    /// row).
    #[arg(long, value_name = "FILE")]
    pub html: Option<PathBuf>,
    /// The class to explain (classifiers). Default: the positive class of
    /// a binary model, the first class of a multiclass one.
    #[arg(long)]
    pub class: Option<String>,
    /// `auto` (the exact method for the model), `interventional` (trees
    /// against a background sample instead of their training weights), or
    /// `permutation` (model-agnostic).
    #[arg(long, default_value = "auto", value_name = "METHOD")]
    pub method: String,
    /// Background rows (interventional, linear and permutation methods),
    /// spread over the table. Default: 100, or 50 for permutation SHAP.
    #[arg(long, value_name = "N")]
    pub background: Option<usize>,
    /// Pairs of permutations per row for permutation SHAP (more: slower,
    /// less noisy).
    #[arg(long, default_value_t = 4, value_name = "N")]
    pub permutations: usize,
    /// Rows explained for the summary, spread over the table.
    #[arg(long, default_value_t = 1000, value_name = "N")]
    pub sample: usize,
    /// Shuffles per column for permutation importance (0 skips it; kiln
    /// models, on a table with the target column).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub repeats: usize,
    /// Columns shown in the table (all are in --json and --html).
    #[arg(long, default_value_t = 15, value_name = "N")]
    pub top: usize,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// A kiln model: a run id (prefix) from `kiln train`, `NAME@VERSION`
    /// or `NAME@ALIAS`, or a model file.
    pub model: String,
    /// A labelled table: a file or a dataset reference.
    pub data: String,
    /// Score only the test rows the model held out in training (DATA must
    /// be the dataset version it was trained on): reproduces its test
    /// metrics.
    #[arg(long)]
    pub holdout: bool,
    /// Pick a decision threshold (binary): max_f1, max_balanced_accuracy,
    /// precision:P (best recall with precision ≥ P), recall:R, or
    /// cost:FP,FN (the cheapest, for costs of a false positive and a false
    /// negative).
    #[arg(long, value_name = "OBJECTIVE")]
    pub threshold: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum RunsCommand {
    /// List runs, newest first (or in `--order-by` order).
    #[command(alias = "list")]
    Ls(RunsLsArgs),
    /// Show a run: parameters, metrics, inputs, code, model and leaderboard.
    Show {
        /// Run id or a prefix of it (6+ characters).
        id: String,
    },
    /// Compare runs side by side: parameters, and metrics with the best of
    /// each marked (`*`).
    Compare {
        /// Two or more run ids (or prefixes).
        #[arg(required = true, num_args = 2..)]
        ids: Vec<String>,
    },
    /// Mark runs deleted: hidden from listings, removed for good by `kiln gc`.
    #[command(alias = "rm")]
    Delete {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Bring back runs marked deleted (before `kiln gc`).
    Restore {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Show every point of one metric of a run.
    History { id: String, metric: String },
}

#[derive(Debug, Args)]
pub struct RunsLsArgs {
    /// Only runs of this experiment (name or id).
    #[arg(long, short = 'e')]
    pub experiment: Option<String>,
    /// MLflow search syntax, e.g. `metrics.test_roc_auc > 0.8 and params.split = 'time'`.
    #[arg(long)]
    pub filter: Option<String>,
    /// e.g. `metrics.test_roc_auc DESC` (repeat for ties).
    #[arg(long)]
    pub order_by: Vec<String>,
    /// Also list runs marked deleted.
    #[arg(long)]
    pub all: bool,
    #[arg(long, default_value_t = 50)]
    pub limit: i64,
}

#[derive(Debug, Subcommand)]
pub enum ExperimentsCommand {
    /// List experiments.
    #[command(alias = "list")]
    Ls {
        /// Also list deleted experiments.
        #[arg(long)]
        all: bool,
    },
    /// Create an experiment.
    Create { name: String },
}

#[derive(Debug, Subcommand)]
pub enum ModelsCommand {
    /// List registered models with their latest version and aliases.
    #[command(alias = "list")]
    Ls,
    /// Show a model (its versions and aliases), or one version's card:
    /// `NAME`, `NAME@VERSION` or `NAME@ALIAS`.
    Show {
        #[arg(value_name = "MODEL[@VERSION]")]
        reference: String,
    },
    /// Register a run's model as the next version of NAME.
    Register {
        name: String,
        /// The run whose model to register (id or prefix).
        #[arg(long)]
        run: String,
        #[arg(long, short)]
        description: Option<String>,
    },
    /// Import a model file as the next version of NAME: kiln, ONNX,
    /// LightGBM text or XGBoost JSON (detected from the content).
    Import {
        name: String,
        file: PathBuf,
        #[arg(long, short)]
        description: Option<String>,
    },
    /// Point an alias at a version (moving it if it points elsewhere), or
    /// remove it with `--delete`.
    Alias {
        name: String,
        alias: String,
        /// The version number (not with `--delete`).
        #[arg(value_name = "VERSION", required_unless_present = "delete")]
        number: Option<i64>,
        #[arg(long, conflicts_with = "number")]
        delete: bool,
    },
}

#[derive(Debug, Args)]
pub struct GcArgs {
    /// Report what would be removed, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Keep objects younger than this (e.g. `1h`, `30m`, `0s`).
    #[arg(long, default_value = "1h", value_parser = crate::commands::parse_duration)]
    pub grace: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct ServerArgs {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "KILN_HOST")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, short, default_value_t = 5000, env = "KILN_PORT")]
    pub port: u16,
    /// How often to look for due pipeline schedules, new versions of
    /// watched datasets and pending triggers.
    #[arg(long, default_value = "5s", value_name = "DURATION")]
    pub scheduler_every: String,
    /// Pipelines this server runs hand their steps to `kiln worker`s.
    #[arg(long)]
    pub remote_steps: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Deployments from kiln.yaml, or models to serve (`[DEPLOYMENT=]MODEL`).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Send PERCENT of requests to another model (A/B): `MODEL=PERCENT`.
    /// Repeatable; only with a single model TARGET.
    #[arg(long, value_name = "MODEL=PERCENT")]
    pub split: Vec<String>,
    /// Score every request with this model too, without answering from it,
    /// and compare (GET /api/v1/deployments/NAME/shadow).
    #[arg(long, value_name = "MODEL")]
    pub shadow: Option<String>,
    /// Route by this input column (first row), so that a key always meets
    /// the same model; the header `x-kiln-key` routes too.
    #[arg(long, value_name = "COLUMN")]
    pub sticky: Option<String>,
    /// Fraction of requests whose predictions are logged (0 to 1).
    #[arg(long, value_name = "FRACTION")]
    pub sample: Option<f64>,
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1", env = "KILN_HOST")]
    pub host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, short, default_value_t = 8080, env = "KILN_SERVE_PORT")]
    pub port: u16,
    /// Answer 503 to a request that takes longer (e.g. `30s`).
    #[arg(long, default_value = "30s", value_parser = crate::commands::parse_duration)]
    pub timeout: std::time::Duration,
    /// Largest request body, in MiB.
    #[arg(long, default_value_t = 32, value_name = "MIB")]
    pub max_body: usize,
    /// How often to check whether followed aliases moved.
    #[arg(long, default_value = "2s", value_parser = crate::commands::parse_duration)]
    pub reload_every: std::time::Duration,
    /// How long logged predictions are buffered before a segment is written.
    #[arg(long, default_value = "60s", value_parser = crate::commands::parse_duration)]
    pub log_flush: std::time::Duration,
}

#[derive(Debug, Args)]
pub struct InitArgs {
    /// Directory to create the project in (default: the current one).
    pub dir: Option<PathBuf>,
    /// Project name (default: the directory's name).
    #[arg(long)]
    pub name: Option<String>,
}

#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Keep the demo project in this directory instead of a temporary one.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Add a file or folder as a new version of a dataset.
    ///
    /// CSV/TSV (delimiter, header and types inferred; gzip read), Parquet,
    /// JSON lines, or a folder of files. The version id is the BLAKE3 of
    /// the content: adding identical content again makes no new version.
    /// Tables are profiled and get a columnar (Parquet) copy; checks
    /// declared in kiln.yaml run on the new version.
    ///
    /// Exit status: 0 added or unchanged, 1 refused by `--check`, 2 error.
    Add(AddArgs),
    /// List datasets with their latest version.
    #[command(alias = "list")]
    Ls,
    /// List the versions of a dataset, oldest first.
    Log {
        /// Dataset name.
        name: String,
    },
    /// Show a version's schema and profile.
    Show {
        /// `NAME`, `NAME@latest`, `NAME@TAG` or `NAME@ID_PREFIX`.
        reference: String,
    },
    /// Compare two versions: schema, row counts, statistics, and rows by key.
    ///
    /// Rows are compared when the dataset declares `key:` in kiln.yaml or
    /// `--key` is given.
    Diff {
        /// The older version, e.g. `bikes@v1`.
        a: String,
        /// The newer version, e.g. `bikes@latest`.
        b: String,
        /// Key columns identifying a row (overrides kiln.yaml).
        #[arg(long, value_delimiter = ',')]
        key: Option<Vec<String>>,
    },
    /// Restore a version byte for byte.
    Get {
        /// `NAME@VERSION`.
        reference: String,
        /// Where to write it (must not exist).
        #[arg(short, long)]
        output: PathBuf,
    },
    /// Run the checks kiln.yaml declares for a dataset on a version.
    ///
    /// Exit status: 0 all passed, 1 a check failed, 2 error.
    Check {
        /// `NAME` or `NAME@VERSION` (default: latest).
        reference: String,
    },
    /// Set catalog fields of a dataset.
    Describe {
        /// Dataset name.
        name: String,
        #[arg(long)]
        description: Option<String>,
        #[arg(long)]
        owner: Option<String>,
        /// A catalog tag (repeatable), e.g. `--tag pii --tag healthcare`.
        #[arg(long = "tag")]
        tags: Vec<String>,
    },
    /// Name a version with a tag (moving the tag if it exists).
    Tag {
        /// `NAME@VERSION`.
        reference: String,
        /// The tag, e.g. `v1` or `production`.
        tag: String,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    /// Dataset name (letters, digits, `_`, `-`, `.`).
    pub name: String,
    /// File or folder to add.
    pub path: PathBuf,
    /// A message describing this version.
    #[arg(short, long)]
    pub message: Option<String>,
    /// Refuse the version, writing nothing, if a declared check fails.
    #[arg(long)]
    pub check: bool,
    /// Only hash and store: no profile, no columnar copy.
    #[arg(long, conflicts_with = "check")]
    pub no_profile: bool,
    /// Format, when the extension does not tell: csv, tsv, parquet, jsonl.
    #[arg(long)]
    pub format: Option<String>,
    /// CSV field delimiter (default: sniffed from the header line).
    #[arg(long)]
    pub delimiter: Option<char>,
    /// The CSV file has no header line (columns are named column_1, …).
    #[arg(long)]
    pub no_header: bool,
}

#[derive(Debug, Subcommand)]
pub enum MonitorCommand {
    /// Compare two tables column by column: has the data drifted?
    ///
    /// REFERENCE and CURRENT are files (CSV, Parquet, JSON lines) or dataset
    /// versions (`NAME@VERSION`); columns are matched by name. Numbers are
    /// tested with two-sample Kolmogorov–Smirnov, categories with
    /// chi-squared (a category the reference never saw counts), and both
    /// for a change in missing values. A column has drifted when the test's
    /// p-value is below ALPHA divided by the number of columns (Bonferroni),
    /// so a table without drift raises a false alarm in at most ALPHA of
    /// comparisons, however many rows it has. PSI, normed Wasserstein and
    /// Jensen–Shannon distances are reported beside each verdict.
    ///
    /// Exit status: 0 no column drifted, 1 some column drifted, 2 error.
    #[command(after_help = "Examples:
  kiln monitor drift train.parquet last_week.parquet
  kiln monitor drift visits@v1 visits@latest --html drift.html
  kiln monitor drift ref.csv cur.csv --json | jq '.columns[] | select(.drifted)'")]
    Drift {
        /// The table drift is measured from.
        reference: String,
        /// The table to test.
        current: String,
        /// Write a self-contained HTML report (verdicts, and each column's
        /// two distributions overlaid) to this file.
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
        /// Family-wise false-alarm rate.
        #[arg(long, default_value_t = 0.05)]
        alpha: f64,
        /// How a column's verdict is reached: `test` (the p-value tests),
        /// `psi[:T]` (PSI above T, default 0.2), `wasserstein[:T]` (normed
        /// Wasserstein for numbers, Jensen–Shannon for categories, above T,
        /// default 0.1: Evidently's rule) or `js[:T]`.
        #[arg(long, default_value = "test", value_parser = kiln_monitor::drift::Method::parse)]
        method: kiln_monitor::drift::Method,
    },
    /// Run the monitors kiln.yaml declares, once: close the windows the
    /// prediction log completes, update label metrics, fire and resolve
    /// alerts, call webhooks, record retraining triggers.
    ///
    /// `kiln server` runs them on their own schedule (`every:`); this is for
    /// cron jobs, CI and trying a monitor out.
    ///
    /// Exit status: 0 nothing firing, 1 an alert is firing, 2 error.
    #[command(after_help = "Example kiln.yaml:
  monitors:
    rain-watch:
      deployment: rain            # the deployment whose logged traffic is watched
      window: 500                 # rows per window (or a time span: 10m, 1h)
      label_delay: 1h             # label metrics are final an hour after a window ends
      rules:
        - metric: drift.share     # share of input columns that drifted
          above: 0.3
          for: 2                  # two windows running
        - metric: accuracy
          below: 0.75
          retrain: retrain-rain   # record a trigger for this pipeline
        - metric: latency.p99
          anomaly: true           # a spike or level shift in its series
      webhooks: [https://hooks.example.com/kiln]

`kiln monitor metrics` lists the metrics rules can use.")]
    Run {
        /// Monitors to run (default: all).
        names: Vec<String>,
    },
    /// List alerts, newest first.
    ///
    /// Exit status: 0, or 1 with `--firing` when one is firing (for CI).
    Alerts {
        /// Only alerts firing now.
        #[arg(long)]
        firing: bool,
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// Show a monitor's windows and their main metrics.
    Windows {
        /// The monitor.
        name: String,
        /// How many of the latest windows to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
    /// Write a deployment's monitoring report: drift, accuracy, latency and
    /// alerts over time, and the latest window's distributions against the
    /// reference (self-contained HTML, no raw rows).
    Report {
        /// The deployment.
        deployment: String,
        /// The HTML file to write (without it, or with `--json`, the
        /// windows and alerts are printed as JSON).
        #[arg(long, value_name = "OUT")]
        html: Option<PathBuf>,
        /// Only the latest N windows of each monitor.
        #[arg(long, value_name = "N")]
        last: Option<usize>,
    },
    /// List retraining triggers recorded by alerts (`retrain:` on a rule);
    /// they stay pending for a pipeline runner to take.
    Triggers {
        /// How many to show.
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// List the metrics monitor rules can use.
    Metrics,
}
