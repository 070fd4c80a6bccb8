//! AutoML: from a table and a target column to the best model found within
//! a time budget.
//!
//! 1. The task and metric are inferred (or given); a test set is held out
//!    (stratified, random, grouped or time-ordered) and never looked at
//!    until the end.
//! 2. Preprocessing is learned on the training rows only.
//! 3. Candidates are scored by k-fold cross-validation on small training
//!    sets (≤ 50,000 rows) and on a validation holdout on larger ones, with
//!    early stopping for boosted trees.
//! 4. A portfolio of strong, diverse defaults runs first (boosted trees of
//!    several shapes, a random forest, extra trees, regularised linear
//!    models); then a local search perturbs the best configuration, with
//!    steps that shrink after failures (FLAML's CFO idea).
//! 5. A greedy (Caruana) ensemble of the candidates' validation
//!    predictions replaces the best single model when it scores better.
//! 6. The winner is refitted on all training rows (cross-validation mode)
//!    and scored on the test set.
//!
//! Every random choice derives from the seed, and nothing depends on the
//! clock except how many trials fit in the budget: the same seed, data and
//! number of trials (`max_trials`) give the same model bytes.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::time::{Duration, Instant};

use arrow_array::RecordBatch;
use serde::Serialize;

use crate::encode::DenseEncoder;
use crate::error::MlError;
use crate::frame::Features;
use crate::gbdt::{Boosting, Gbdt, GbdtParams, Objective};
use crate::linear::{self, Dense, LinearParams, Link};
use crate::metrics::{self, Metric};
use crate::model::{Learner, Model, TrainingInfo, add_scaled, scale};
use crate::preprocess::{self, Labels, PreprocessOptions, Preprocessor, TargetSpec};
use crate::rng::Rng;
use crate::split::{self, Split};
use crate::task::{Predictions, Target, Task};

/// Training rows up to which candidates are cross-validated.
const CV_MAX_ROWS: usize = 50_000;
const CV_FOLDS: usize = 5;
/// Training rows below which cross-validation is repeated with other
/// shuffles: small tables give noisy scores, and a search that compares
/// hundreds of noisy scores picks noise.
const REPEAT_CV_BELOW: usize = 5_000;
const CV_REPEATS: u64 = 3;
/// Rounds without improvement before a boosted model stops.
const PATIENCE: usize = 30;
/// Seconds kept back for scoring the test set and writing the model.
const FINISH_SECONDS: f64 = 0.25;

/// Estimated seconds to refit a configuration whose trial took
/// `trial_seconds`: in cross-validation a trial fits `fits` models on 80% of
/// the rows; the refit fits one on all of them with 10% more rounds.
fn refit_seconds(trial_seconds: f64, cv: bool, fits: usize) -> f64 {
    if cv {
        trial_seconds / fits.max(1) as f64 * 1.25 * 1.1 * 1.1
    } else {
        0.0
    }
}

/// The shortest budget accepted.
pub const MIN_BUDGET: Duration = Duration::from_secs(1);

/// How rows are held out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SplitStrategy {
    /// Stratified for classification, random for regression.
    Auto,
    Random,
    Stratified,
    /// No value of the column on both sides (a patient, a customer).
    Group(String),
    /// The latest rows by the column (or by row order) are held out.
    Time(Option<String>),
}

impl std::fmt::Display for SplitStrategy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SplitStrategy::Auto => f.write_str("auto"),
            SplitStrategy::Random => f.write_str("random"),
            SplitStrategy::Stratified => f.write_str("stratified"),
            SplitStrategy::Group(c) => write!(f, "group:{c}"),
            SplitStrategy::Time(None) => f.write_str("time"),
            SplitStrategy::Time(Some(c)) => write!(f, "time:{c}"),
        }
    }
}

impl FromStr for SplitStrategy {
    type Err = MlError;
    fn from_str(s: &str) -> Result<Self, MlError> {
        Ok(match s.split_once(':') {
            None if s == "auto" => SplitStrategy::Auto,
            None if s == "random" => SplitStrategy::Random,
            None if s == "stratified" => SplitStrategy::Stratified,
            None if s == "time" => SplitStrategy::Time(None),
            Some(("group", c)) if !c.is_empty() => SplitStrategy::Group(c.into()),
            Some(("time", c)) if !c.is_empty() => SplitStrategy::Time(Some(c.into())),
            _ => {
                return Err(MlError::Invalid {
                    what: format!("split `{s}`"),
                    why: "expected auto, random, stratified, time, time:COLUMN or group:COLUMN"
                        .into(),
                });
            }
        })
    }
}

/// Settings of [`train`].
#[derive(Debug, Clone)]
pub struct AutoMlOptions {
    pub task: Option<Task>,
    pub metric: Option<Metric>,
    pub budget: Duration,
    /// Stop after this many trials (and never cut a trial short): for
    /// runs that must be reproduced byte for byte.
    pub max_trials: Option<usize>,
    pub seed: u64,
    pub split: SplitStrategy,
    /// Share of rows held out as the test set; 0 holds out none (the
    /// caller has its own test data) and every labelled row trains.
    pub test_fraction: f64,
    /// The positive class of a binary target.
    pub positive: Option<String>,
    /// Columns never used as features.
    pub exclude: Vec<String>,
    pub ensemble: bool,
}

impl Default for AutoMlOptions {
    fn default() -> Self {
        AutoMlOptions {
            task: None,
            metric: None,
            budget: Duration::from_secs(60),
            max_trials: None,
            seed: 0,
            split: SplitStrategy::Auto,
            test_fraction: 0.2,
            positive: None,
            exclude: Vec::new(),
            ensemble: true,
        }
    }
}

/// A configuration a trial evaluates.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "learner", rename_all = "snake_case")]
pub enum Config {
    Gbdt(GbdtParams),
    Linear(LinearParams),
}

impl Config {
    /// A short, readable name for the leaderboard.
    pub fn describe(&self) -> String {
        match self {
            Config::Gbdt(p) => {
                let kind = match (p.boosting, p.extra_trees) {
                    (Boosting::Gbdt, _) => "gbdt",
                    (Boosting::RandomForest, false) => "random_forest",
                    (Boosting::RandomForest, true) => "extra_trees",
                };
                let obj = match p.objective {
                    Objective::Poisson => " poisson",
                    _ => "",
                };
                if p.boosting == Boosting::Gbdt {
                    format!(
                        "{kind}{obj} lr={} leaves={} min_leaf={} rows={} cols={} l2={}",
                        p.learning_rate,
                        p.max_leaves,
                        p.min_data_in_leaf,
                        p.row_subsample,
                        p.col_subsample,
                        p.lambda_l2
                    )
                } else {
                    format!(
                        "{kind}{obj} trees={} leaves={} min_leaf={} cols={}",
                        p.n_trees, p.max_leaves, p.min_data_in_leaf, p.col_subsample
                    )
                }
            }
            Config::Linear(p) => {
                let link = if p.link == Link::Log { " poisson" } else { "" };
                format!("linear{link} l2={}", p.l2)
            }
        }
    }
}

/// One evaluated configuration.
#[derive(Debug, Clone, Serialize)]
pub struct Trial {
    pub id: usize,
    pub config: String,
    /// Validation score in the run's metric.
    pub score: f64,
    pub seconds: f64,
    /// Boosting rounds kept (mean over folds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rounds: Option<usize>,
    /// Cut short by the budget.
    pub truncated: bool,
    /// `portfolio` (a fixed default) or `search` (proposed by the search).
    pub stage: &'static str,
    #[serde(skip)]
    pub params: Option<Config>,
}

/// What [`train`] reports as it goes.
pub enum Event<'a> {
    Started {
        task: Task,
        metric: Metric,
        train_rows: usize,
        test_rows: usize,
        validation: &'a str,
        features: usize,
    },
    Trial {
        trial: &'a Trial,
        best: &'a Trial,
    },
    Ensemble {
        score: f64,
        members: usize,
        kept: bool,
    },
    Refit,
}

/// The outcome of [`train`].
#[derive(Debug)]
pub struct AutoMlOutcome {
    pub model: Model,
    pub leaderboard: Vec<Trial>,
    pub metric: Metric,
    pub test_metrics: BTreeMap<String, f64>,
    /// Whether no trial was cut short, so `max_trials = trials` reproduces it.
    pub reproducible: bool,
    pub elapsed: Duration,
}

/// The held-out split of a table's labelled rows, as [`train`] makes it;
/// evaluating a model on its own test rows calls this again with the
/// model's recorded strategy, fraction and seed.
pub fn holdout(
    batches: &[RecordBatch],
    spec: &TargetSpec,
    labels: &Labels,
    strategy: &SplitStrategy,
    test_fraction: f64,
    seed: u64,
) -> Result<Split, MlError> {
    let n = labels.rows.len();
    if test_fraction == 0.0 {
        // No test set: every labelled row trains.
        return Ok(Split {
            train: (0..n).collect(),
            test: Vec::new(),
        });
    }
    let split = match resolve(strategy, spec.task) {
        SplitStrategy::Stratified => match &labels.target {
            Target::Classes { codes, .. } => split::stratified(codes, test_fraction, seed)?,
            Target::Values(_) => split::random(n, test_fraction, seed)?,
        },
        SplitStrategy::Group(col) => split::group(
            &group_keys(batches, &col, &labels.rows)?,
            test_fraction,
            seed,
        )?,
        SplitStrategy::Time(col) => split::time_ordered(
            &order_keys(batches, col.as_deref(), &labels.rows)?,
            test_fraction,
        )?,
        _ => split::random(n, test_fraction, seed)?,
    };
    Ok(split)
}

fn resolve(strategy: &SplitStrategy, task: Task) -> SplitStrategy {
    match strategy {
        SplitStrategy::Auto if task.is_classification() => SplitStrategy::Stratified,
        SplitStrategy::Auto => SplitStrategy::Random,
        other => other.clone(),
    }
}

/// Each distinct text's rank in sorted order (ISO-8601 dates sort as time);
/// empty for other columns.
fn text_ranks(g: &preprocess::Gathered) -> std::collections::HashMap<&str, i64> {
    match g {
        preprocess::Gathered::Strings(v) => {
            let mut distinct: Vec<&str> = v.iter().flatten().map(String::as_str).collect();
            distinct.sort_unstable();
            distinct.dedup();
            distinct.into_iter().zip(0..).collect()
        }
        _ => Default::default(),
    }
}

fn group_keys(batches: &[RecordBatch], col: &str, rows: &[usize]) -> Result<Vec<u64>, MlError> {
    let (_, g) = preprocess::gather(batches, col)?;
    let ranks = text_ranks(&g);
    Ok(rows
        .iter()
        .map(|&r| match &g {
            preprocess::Gathered::Numbers(v) => v[r].to_bits(),
            preprocess::Gathered::Strings(v) => {
                v[r].as_deref().map_or(u64::MAX, |s| ranks[s] as u64)
            }
            preprocess::Gathered::Times(v) => v[r].unwrap_or(i64::MIN) as u64,
        })
        .collect())
}

fn order_keys(
    batches: &[RecordBatch],
    col: Option<&str>,
    rows: &[usize],
) -> Result<Vec<i64>, MlError> {
    let Some(col) = col else {
        return Ok(rows.iter().map(|&r| r as i64).collect());
    };
    let (_, g) = preprocess::gather(batches, col)?;
    let ranks = text_ranks(&g);
    Ok(rows
        .iter()
        .map(|&r| match &g {
            preprocess::Gathered::Numbers(v) => {
                if v[r].is_nan() {
                    i64::MIN
                } else {
                    (v[r] * 1e6) as i64
                }
            }
            preprocess::Gathered::Strings(v) => v[r].as_deref().map_or(i64::MIN, |s| ranks[s]),
            preprocess::Gathered::Times(v) => v[r].unwrap_or(i64::MIN),
        })
        .collect())
}

/// Higher is better, whatever the metric.
fn oriented(metric: Metric, v: f64) -> f64 {
    if metric.higher_is_better() { v } else { -v }
}

fn is_count(target: &Target) -> bool {
    matches!(target, Target::Values(v) if v.iter().all(|&y| y >= 0.0 && y.fract() == 0.0))
}

/// The portfolio: strong, diverse defaults, in the order they run.
fn portfolio(task: Task, n_classes: usize, counts: bool, n_rows: usize) -> Vec<Config> {
    let objective = match task {
        Task::Binary => Objective::Binary,
        Task::Multiclass => Objective::Multiclass { n_classes },
        Task::Regression => Objective::L2,
    };
    let small = n_rows < 5_000;
    let gbdt = |lr: f64, leaves: usize, min_leaf: usize, rows: f64, cols: f64, l2: f64| {
        Config::Gbdt(GbdtParams {
            objective,
            n_trees: if lr >= 0.1 { 1000 } else { 3000 },
            learning_rate: lr,
            max_leaves: leaves,
            min_data_in_leaf: min_leaf,
            row_subsample: rows,
            col_subsample: cols,
            lambda_l2: l2,
            early_stopping_rounds: Some(PATIENCE),
            min_data_per_group: if small { 20 } else { 100 },
            ..GbdtParams::default()
        })
    };
    let forest = |extra: bool| {
        Config::Gbdt(GbdtParams {
            objective: if task == Task::Binary {
                Objective::Binary
            } else {
                objective
            },
            boosting: Boosting::RandomForest,
            extra_trees: extra,
            // Forests are slow on large tables and rarely win there.
            n_trees: if n_rows > 100_000 { 100 } else { 200 },
            max_leaves: if small {
                128
            } else if n_rows > 100_000 {
                255
            } else {
                1024
            },
            min_data_in_leaf: if small { 3 } else { 10 },
            row_subsample: 0.632,
            col_subsample: 0.6,
            min_data_per_group: 10,
            ..GbdtParams::default()
        })
    };
    let linear = |l2: f64, link: Link| {
        Config::Linear(LinearParams {
            l2,
            link,
            max_iter: 200,
            ..LinearParams::default()
        })
    };
    let mut p = vec![
        gbdt(0.1, 31, 20, 1.0, 1.0, 0.0),
        gbdt(0.05, 8, 20, 0.8, 0.8, 1.0),
        linear(1.0, Link::Identity),
        gbdt(0.05, 63, 10, 0.8, 0.6, 1.0),
        forest(false),
    ];
    if n_rows > 100_000 {
        // Large tables support bigger trees, which reach a good fit in far
        // fewer rounds: the first model already uses the budget well.
        p.insert(0, gbdt(0.1, 127, 40, 1.0, 1.0, 1.0));
    }
    if counts {
        if let Config::Gbdt(mut g) = gbdt(0.05, 31, 20, 0.8, 0.8, 1.0) {
            g.objective = Objective::Poisson;
            p.push(Config::Gbdt(g));
        }
        p.push(linear(1.0, Link::Log));
    }
    p.push(forest(true));
    p.push(gbdt(0.03, 15, 40, 0.7, 0.5, 10.0));
    p.push(linear(30.0, Link::Identity));
    p.push(gbdt(0.05, 255, 5, 0.7, 0.7, 0.1));
    p
}

/// A neighbour of `base`: each continuous setting moved by a random factor
/// of up to `step` (in log space).
fn perturb(base: &GbdtParams, step: f64, rng: &mut Rng) -> GbdtParams {
    let mut p = base.clone();
    let mut f = |x: f64| x * (step * (2.0 * rng.next_f64() - 1.0)).exp();
    p.learning_rate = f(p.learning_rate).clamp(0.01, 0.2);
    p.max_leaves = (f(p.max_leaves as f64).round() as usize).clamp(4, 1024);
    p.min_data_in_leaf = (f(p.min_data_in_leaf as f64).round() as usize).clamp(3, 1000);
    p.row_subsample = (f(p.row_subsample)).clamp(0.3, 1.0);
    p.col_subsample = (f(p.col_subsample)).clamp(0.4, 1.0);
    p.lambda_l2 = if p.lambda_l2 == 0.0 {
        f(0.01)
    } else {
        f(p.lambda_l2)
    }
    .min(1000.0);
    p.n_trees = if p.learning_rate >= 0.1 { 1000 } else { 3000 };
    // Round so the leaderboard stays readable and configs repeat exactly.
    p.learning_rate = (p.learning_rate * 1000.0).round() / 1000.0;
    p.row_subsample = (p.row_subsample * 100.0).round() / 100.0;
    p.col_subsample = (p.col_subsample * 100.0).round() / 100.0;
    p.lambda_l2 = (p.lambda_l2 * 1000.0).round() / 1000.0;
    p
}

/// Training data split into folds for validation.
struct Folds {
    x: Features,
    target: Target,
    folds: Vec<Split>,
    /// Rows that get a validation prediction (all, except in time folds).
    scored: Vec<usize>,
    cv: bool,
}

/// What one configuration produced.
struct Fitted {
    /// Validation predictions for `Folds::scored` rows, in that order.
    oof: Predictions,
    score: f64,
    rounds: Option<usize>,
    truncated: bool,
    /// The trained learner (holdout mode only; cross-validation refits).
    learner: Option<Learner>,
}

fn empty_like(task: Task, n_classes: usize, n: usize) -> Predictions {
    match task {
        Task::Binary => Predictions::Binary(vec![0.0; n]),
        Task::Multiclass => Predictions::Multiclass {
            probs: vec![0.0; n * n_classes],
            n_classes,
        },
        Task::Regression => Predictions::Regression(vec![0.0; n]),
    }
}

fn fit_learner(
    config: &Config,
    task: Task,
    x: &Features,
    target: &Target,
    valid: Option<(&Features, &Target)>,
    rounds: Option<usize>,
    stop: &dyn Fn(usize) -> bool,
) -> Result<(Learner, Option<usize>), MlError> {
    match config {
        Config::Gbdt(p) => {
            let mut p = p.clone();
            if let Some(r) = rounds {
                p.n_trees = r.max(1);
                p.early_stopping_rounds = None;
            }
            let y = target.numbers();
            let vy = valid.map(|(_, t)| t.numbers());
            let g = Gbdt::fit_until(x, &y, &p, valid.map(|(vx, _)| vx).zip(vy.as_deref()), stop)?;
            let r = g.n_rounds();
            Ok((Learner::Gbdt(g), Some(r)))
        }
        Config::Linear(p) => {
            // Target encoding for many categories needs numeric labels:
            // regression values or a binary 0/1.
            let multiclass = matches!(target, Target::Classes { n_classes, .. } if *n_classes > 2);
            let y = (!multiclass).then(|| target.numbers());
            let (encoder, data) = DenseEncoder::fit_transform(x, y.as_deref(), 0);
            let dense = Dense {
                data: &data,
                n_rows: x.n_rows(),
                n_cols: encoder.width(),
            };
            let model = linear::fit(&dense, target, task, p)?;
            Ok((Learner::Linear { encoder, model }, None))
        }
    }
}

fn evaluate_config(
    config: &Config,
    task: Task,
    n_classes: usize,
    metric: Metric,
    folds: &Folds,
    deadline: Option<Instant>,
) -> Result<Fitted, MlError> {
    let truncated = std::cell::Cell::new(false);
    let stop = |_: usize| {
        let late = deadline.is_some_and(|d| Instant::now() >= d);
        if late {
            truncated.set(true);
        }
        late
    };
    let n = folds.x.n_rows();
    let mut oof_full = empty_like(task, n_classes, n);
    // Rows are predicted once per repeat of the folds: average them.
    let mut times = vec![0u32; n];
    let mut rounds = Vec::new();
    let mut learner = None;
    for fold in &folds.folds {
        let xt = folds.x.take(&fold.train);
        let tt = folds.target.take(&fold.train);
        let xv = folds.x.take(&fold.test);
        let tv = folds.target.take(&fold.test);
        let (l, r) = fit_learner(config, task, &xt, &tt, Some((&xv, &tv)), None, &stop)?;
        let p = l.predict(&xv);
        scatter_add(&mut oof_full, &p, &fold.test);
        fold.test.iter().for_each(|&r| times[r] += 1);
        rounds.extend(r);
        if !folds.cv {
            learner = Some(l);
        }
    }
    let oof = gather_rows(&oof_full, &folds.scored);
    let seen: Vec<u32> = folds.scored.iter().map(|&r| times[r]).collect();
    let oof = average(oof, &seen);
    let truth = folds.target.take(&folds.scored);
    let score = oriented(
        metric,
        metrics::score(metric, &truth, &oof).unwrap_or(f64::NAN),
    );
    let score = if score.is_finite() {
        score
    } else {
        f64::NEG_INFINITY
    };
    Ok(Fitted {
        oof,
        score,
        rounds: (!rounds.is_empty()).then(|| rounds.iter().sum::<usize>() / rounds.len()),
        truncated: truncated.get(),
        learner,
    })
}

/// Adds `part` (predictions for `rows`) into `full`.
fn scatter_add(full: &mut Predictions, part: &Predictions, rows: &[usize]) {
    match (full, part) {
        (Predictions::Binary(f), Predictions::Binary(p))
        | (Predictions::Regression(f), Predictions::Regression(p)) => {
            for (i, &r) in rows.iter().enumerate() {
                f[r] += p[i];
            }
        }
        (
            Predictions::Multiclass {
                probs: f,
                n_classes,
            },
            Predictions::Multiclass { probs: p, .. },
        ) => {
            let k = *n_classes;
            for (i, &r) in rows.iter().enumerate() {
                for j in 0..k {
                    f[r * k + j] += p[i * k + j];
                }
            }
        }
        _ => unreachable!("one task per run"),
    }
}

/// Divides row `i`'s prediction by `times[i]` (rows are predicted once per
/// repeat of the folds).
fn average(mut p: Predictions, times: &[u32]) -> Predictions {
    if times.iter().all(|&t| t == 1) {
        return p;
    }
    let k = match &p {
        Predictions::Multiclass { n_classes, .. } => *n_classes,
        _ => 1,
    };
    let v = match &mut p {
        Predictions::Binary(v) | Predictions::Regression(v) => v,
        Predictions::Multiclass { probs, .. } => probs,
    };
    for (i, &t) in times.iter().enumerate() {
        for x in &mut v[i * k..(i + 1) * k] {
            *x /= f64::from(t.max(1));
        }
    }
    p
}

fn gather_rows(full: &Predictions, rows: &[usize]) -> Predictions {
    match full {
        Predictions::Binary(f) => Predictions::Binary(rows.iter().map(|&r| f[r]).collect()),
        Predictions::Regression(f) => Predictions::Regression(rows.iter().map(|&r| f[r]).collect()),
        Predictions::Multiclass { probs, n_classes } => {
            let k = *n_classes;
            Predictions::Multiclass {
                probs: rows
                    .iter()
                    .flat_map(|&r| probs[r * k..(r + 1) * k].iter().copied())
                    .collect(),
                n_classes: k,
            }
        }
    }
}

/// Greedy forward selection with replacement (Caruana et al. 2004) over
/// candidates' validation predictions. Returns (weights, score).
fn caruana(
    candidates: &[&Predictions],
    truth: &Target,
    metric: Metric,
    steps: usize,
) -> (Vec<usize>, f64) {
    let mut counts = vec![0usize; candidates.len()];
    let mut sum: Option<Predictions> = None;
    let mut best_score = f64::NEG_INFINITY;
    let mut best_counts = counts.clone();
    for step in 1..=steps {
        let mut pick: Option<(usize, f64)> = None;
        for (i, c) in candidates.iter().enumerate() {
            let trial = match &sum {
                None => (*c).clone(),
                Some(s) => add_scaled(s.clone(), c, 1.0),
            };
            let avg = scale(trial, 1.0 / step as f64);
            let s = oriented(
                metric,
                metrics::score(metric, truth, &avg).unwrap_or(f64::NAN),
            );
            if s.is_finite() && pick.is_none_or(|(_, b)| s > b) {
                pick = Some((i, s));
            }
        }
        let Some((i, s)) = pick else { break };
        counts[i] += 1;
        sum = Some(match sum {
            None => candidates[i].clone(),
            Some(acc) => add_scaled(acc, candidates[i], 1.0),
        });
        if s > best_score {
            best_score = s;
            best_counts = counts.clone();
        }
    }
    (best_counts, best_score)
}

/// Finds, trains and tests the best model for `target` in `batches`.
pub fn train(
    batches: &[RecordBatch],
    target: &str,
    opts: &AutoMlOptions,
    on_event: &mut dyn FnMut(Event<'_>),
) -> Result<AutoMlOutcome, MlError> {
    let start = Instant::now();
    if opts.max_trials.is_none() && opts.budget < MIN_BUDGET {
        return Err(MlError::Invalid {
            what: format!("budget {:?}", opts.budget),
            why: format!(
                "no model can be trained and validated in under {}s; give --budget 1s or more, or --trials N",
                MIN_BUDGET.as_secs()
            ),
        });
    }
    if !(opts.test_fraction >= 0.0 && opts.test_fraction < 1.0) {
        return Err(MlError::Invalid {
            what: format!("test fraction {}", opts.test_fraction),
            why: "it must be at least 0 (no test set) and below 1".into(),
        });
    }
    let batches = preprocess::canonicalize(batches)?;
    let (spec, labels) = TargetSpec::fit(&batches, target, opts.task, opts.positive.as_deref())?;
    let task = spec.task;
    let n_classes = spec.classes.len();
    let metric = opts.metric.unwrap_or(Metric::default_for(task));
    if !metric.applies_to(task) {
        return Err(MlError::Invalid {
            what: format!("metric {}", metric.name()),
            why: format!(
                "it does not apply to {task} tasks; use one of {}",
                Metric::all_for(task)
                    .iter()
                    .map(|m| m.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    let split = holdout(
        &batches,
        &spec,
        &labels,
        &opts.split,
        opts.test_fraction,
        opts.seed,
    )?;
    // Table rows of the training and test parts.
    let train_rows: Vec<usize> = split.train.iter().map(|&i| labels.rows[i]).collect();
    let test_rows: Vec<usize> = split.test.iter().map(|&i| labels.rows[i]).collect();
    let mut exclude = opts.exclude.clone();
    if let SplitStrategy::Group(c) = &opts.split {
        exclude.push(c.clone());
    }
    let pre = Preprocessor::fit(
        &batches,
        target,
        Some(&train_rows),
        &PreprocessOptions {
            exclude,
            ..PreprocessOptions::default()
        },
    )?;
    let (x_all, _) = pre.transform(&batches)?;
    let x_train = x_all.take(&train_rows);
    let x_test = x_all.take(&test_rows);
    let t_train = labels.target.take(&split.train);
    let t_test = labels.target.take(&split.test);

    // Validation inside the training rows, with the same strategy.
    let n_train = train_rows.len();
    let cv = n_train <= CV_MAX_ROWS;
    let strategy = resolve(&opts.split, task);
    let inner_seed = opts.seed.wrapping_add(1);
    let repeats = if n_train < REPEAT_CV_BELOW && !matches!(strategy, SplitStrategy::Time(_)) {
        CV_REPEATS
    } else {
        1
    };
    let folds: Vec<Split> = if cv {
        let mut all = Vec::new();
        for r in 0..repeats {
            let seed = inner_seed.wrapping_add(r);
            all.extend(match &strategy {
                SplitStrategy::Stratified => match &t_train {
                    Target::Classes { codes, .. } => {
                        split::stratified_kfold(codes, CV_FOLDS, seed)?
                    }
                    Target::Values(_) => split::kfold(n_train, CV_FOLDS, seed)?,
                },
                SplitStrategy::Group(c) => {
                    split::group_kfold(&group_keys(&batches, c, &train_rows)?, CV_FOLDS, seed)?
                }
                SplitStrategy::Time(c) => split::time_series_folds(
                    &order_keys(&batches, c.as_deref(), &train_rows)?,
                    CV_FOLDS,
                )?,
                _ => split::kfold(n_train, CV_FOLDS, seed)?,
            });
        }
        all
    } else {
        vec![match &strategy {
            SplitStrategy::Group(c) => {
                split::group(&group_keys(&batches, c, &train_rows)?, 0.2, inner_seed)?
            }
            SplitStrategy::Time(c) => {
                split::time_ordered(&order_keys(&batches, c.as_deref(), &train_rows)?, 0.2)?
            }
            SplitStrategy::Stratified => match &t_train {
                Target::Classes { codes, .. } => split::stratified(codes, 0.2, inner_seed)?,
                Target::Values(_) => split::random(n_train, 0.2, inner_seed)?,
            },
            _ => split::random(n_train, 0.2, inner_seed)?,
        }]
    };
    let mut scored: Vec<usize> = folds.iter().flat_map(|f| f.test.iter().copied()).collect();
    scored.sort_unstable();
    scored.dedup();
    let n_fits = folds.len();
    let validation = if cv && repeats > 1 {
        format!("{CV_FOLDS}-fold cross-validation repeated {repeats} times")
    } else if cv {
        format!("{}-fold cross-validation", folds.len())
    } else {
        "20% validation holdout".to_string()
    };
    let folds = Folds {
        x: x_train,
        target: t_train,
        folds,
        scored,
        cv,
    };
    on_event(Event::Started {
        task,
        metric,
        train_rows: n_train,
        test_rows: test_rows.len(),
        validation: &validation,
        features: folds.x.n_features(),
    });

    // Search.
    let counts = task == Task::Regression && is_count(&folds.target);
    let mut queue: std::collections::VecDeque<Config> =
        portfolio(task, n_classes, counts, n_train).into();
    let mut trials: Vec<Trial> = Vec::new();
    let mut fitted: Vec<Fitted> = Vec::new();
    let mut rng = Rng::derive(opts.seed, 0x5EA2C4);
    let mut step = 0.5f64;
    let mut failures = 0usize;
    let mut local_trials = 0usize;
    let deadline = (opts.max_trials.is_none()).then(|| start + opts.budget);
    // Time kept back for the final refit: the twelve best trials' refits,
    // as an ensemble of them would need.
    let reserve = |trials: &[Trial], best: Option<usize>| -> Duration {
        if best.is_none() {
            return Duration::ZERO;
        }
        let mut top: Vec<&Trial> = trials.iter().filter(|t| t.score.is_finite()).collect();
        top.sort_by(|a, b| b.score.total_cmp(&a.score));
        let refit: f64 = top
            .iter()
            .take(12)
            .map(|t| refit_seconds(t.seconds, cv, n_fits))
            .sum();
        Duration::from_secs_f64(refit + FINISH_SECONDS)
    };
    let mut best: Option<usize> = None;
    let mut seen: Vec<Config> = Vec::new();
    loop {
        if let Some(m) = opts.max_trials
            && trials.len() >= m
        {
            break;
        }
        let config = match queue.pop_front() {
            Some(c) => c,
            None => {
                // The best boosted configuration so far.
                let base = trials
                    .iter()
                    .filter(|t| t.score.is_finite())
                    .filter_map(|t| match &t.params {
                        Some(Config::Gbdt(p)) if p.boosting == Boosting::Gbdt => Some((t.score, p)),
                        _ => None,
                    })
                    .fold(None::<(f64, &GbdtParams)>, |acc, (s, p)| match acc {
                        Some((b, _)) if b >= s => acc,
                        _ => Some((s, p)),
                    })
                    .map(|(_, p)| p.clone());
                let Some(base) = base else { break };
                local_trials += 1;
                // Every third proposal explores far from the incumbent (a
                // global sample, BlendSearch's idea); the others search
                // near it with a step that shrinks after failures (CFO).
                let explore = local_trials.is_multiple_of(3);
                let step_now = if explore { 2.0 } else { step };
                let mut c = Config::Gbdt(perturb(&base, step_now, &mut rng));
                let mut tries = 0;
                while seen.contains(&c) && tries < 10 {
                    c = Config::Gbdt(perturb(&base, step_now, &mut rng));
                    tries += 1;
                }
                c
            }
        };
        if let Some(d) = deadline {
            let now = Instant::now();
            // Skip a trial that cannot finish: estimate from similar ones.
            // The last trial of the same kind (boosting, forest, extra
            // trees, linear) says how long this one will take.
            let same = |a: &Config| match (a, &config) {
                (Config::Gbdt(x), Config::Gbdt(y)) => {
                    x.boosting == y.boosting && x.extra_trees == y.extra_trees
                }
                (Config::Linear(_), Config::Linear(_)) => true,
                _ => false,
            };
            let est = trials
                .iter()
                .rev()
                .find(|t| t.params.as_ref().is_some_and(same))
                .map_or(0.0, |t| t.seconds);
            let r = reserve(&trials, best);
            if !trials.is_empty() && now + r + Duration::from_secs_f64(est) >= d {
                // A portfolio entry that does not fit may leave room for the
                // next, cheaper one; a search proposal means time is up.
                if queue.is_empty() {
                    break;
                }
                continue;
            }
        }
        let trial_deadline = deadline.map(|d| d.checked_sub(reserve(&trials, best)).unwrap_or(d));
        let t0 = Instant::now();
        let f = evaluate_config(&config, task, n_classes, metric, &folds, trial_deadline)?;
        let trial = Trial {
            id: trials.len() + 1,
            config: config.describe(),
            score: f.score,
            seconds: t0.elapsed().as_secs_f64(),
            rounds: f.rounds,
            truncated: f.truncated,
            stage: if local_trials == 0 {
                "portfolio"
            } else {
                "search"
            },
            params: Some(config.clone()),
        };
        let improved = best.is_none_or(|b| trial.score > trials[b].score);
        if local_trials > 0 {
            if improved {
                failures = 0;
            } else {
                failures += 1;
                if failures >= 8 {
                    step *= 0.7;
                    failures = 0;
                    if step < 0.1 {
                        // Converged here: start again with a wide step.
                        step = 0.5;
                    }
                }
            }
        }
        seen.push(config);
        trials.push(trial);
        fitted.push(f);
        if improved {
            best = Some(trials.len() - 1);
        }
        let b = best.expect("at least one trial");
        // Scores are kept higher-is-better while searching; report them
        // in the metric's own direction.
        let shown = |t: &Trial| Trial {
            score: oriented(metric, t.score),
            ..t.clone()
        };
        on_event(Event::Trial {
            trial: &shown(trials.last().expect("just pushed")),
            best: &shown(&trials[b]),
        });
        if deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
    }
    let best = best.expect("the loop runs at least one trial");
    if !trials[best].score.is_finite() {
        return Err(MlError::Invalid {
            what: "search".into(),
            why: format!("no configuration produced a valid {} score", metric.name()),
        });
    }

    // Ensemble of the best distinct candidates.
    let mut order: Vec<usize> = (0..trials.len())
        .filter(|&i| trials[i].score.is_finite())
        .collect();
    order.sort_by(|&a, &b| trials[b].score.total_cmp(&trials[a].score).then(a.cmp(&b)));
    // Candidates: the ten best, plus the best of each kind of learner
    // (diverse members make better ensembles than ten near-twins).
    let kind = |i: usize| match &trials[i].params {
        Some(Config::Gbdt(p)) => (
            p.boosting as u8,
            p.extra_trees,
            matches!(p.objective, Objective::Poisson),
        ),
        _ => (9, false, false),
    };
    let mut candidates: Vec<usize> = order.iter().take(10).copied().collect();
    for &i in &order {
        if !candidates.iter().any(|&c| kind(c) == kind(i)) {
            candidates.push(i);
        }
    }
    let order = candidates;
    let mut members: Vec<(usize, usize)> = vec![(best, 1)];
    let mut refit_cut = false;
    let mut final_score = trials[best].score;
    if opts.ensemble && order.len() > 1 {
        let preds: Vec<&Predictions> = order.iter().map(|&i| &fitted[i].oof).collect();
        let truth = folds.target.take(&folds.scored);
        let (counts, score) = caruana(&preds, &truth, metric, 25);
        let used: Vec<(usize, usize)> = order
            .iter()
            .zip(&counts)
            .filter(|(_, c)| **c > 0)
            .map(|(&i, &c)| (i, c))
            .collect();
        // An ensemble is kept unless the best single model beats it by more
        // than validation noise: averaging is the more robust choice, and
        // the best of hundreds of noisy scores is partly luck.
        let mut kept = used.len() > 1
            && score >= trials[best].score - 1e-3 * trials[best].score.abs().max(1e-9);
        // Under a budget, an ensemble whose refit would overrun it gives
        // way to the best single model.
        if kept
            && cv
            && let Some(d) = deadline
        {
            let cost: f64 = used
                .iter()
                .map(|(i, _)| refit_seconds(trials[*i].seconds, cv, n_fits))
                .sum();
            if Instant::now() + Duration::from_secs_f64(cost + FINISH_SECONDS) > d {
                kept = false;
                refit_cut = true;
            }
        }
        on_event(Event::Ensemble {
            score: oriented(metric, score),
            members: used.len(),
            kept,
        });
        if kept {
            members = used;
            final_score = score;
        }
    }

    // Final learners: refitted on all training rows (cross-validation) or
    // the holdout-trained ones.
    on_event(Event::Refit);
    let total: usize = members.iter().map(|(_, c)| c).sum();
    let mut learners = Vec::new();
    for &(i, c) in &members {
        let learner = if cv {
            let config = trials[i].params.as_ref().expect("trials keep their config");
            let rounds = trials[i].rounds.map(|r| ((r as f64) * 1.1).ceil() as usize);
            let (l, _) = fit_learner(config, task, &folds.x, &folds.target, None, rounds, &|_| {
                false
            })?;
            l
        } else {
            fitted[i]
                .learner
                .take()
                .expect("holdout trials keep their learner")
        };
        learners.push((c as f64 / total as f64, learner));
    }
    let learner = if learners.len() == 1 {
        learners.pop().expect("one").1
    } else {
        Learner::Ensemble { members: learners }
    };

    // Test scores.
    let test_pred = learner.predict(&x_test);
    let mut test_metrics = BTreeMap::new();
    let scored_metrics = if test_rows.is_empty() {
        Vec::new()
    } else {
        Metric::all_for(task).into_iter().chain([metric]).collect()
    };
    for m in scored_metrics {
        if let Ok(v) = metrics::score(m, &t_test, &test_pred) {
            test_metrics.insert(m.name().to_string(), v);
        }
    }
    let reproducible = !refit_cut && !trials.iter().any(|t| t.truncated);
    let config = if members.len() > 1 {
        format!(
            "ensemble of {}",
            members
                .iter()
                .map(|(i, _)| format!("#{}", trials[*i].id))
                .collect::<Vec<_>>()
                .join(", ")
        )
    } else {
        format!("#{} {}", trials[best].id, trials[best].config)
    };
    let model = Model {
        kiln_version: env!("CARGO_PKG_VERSION").to_string(),
        preprocessor: pre,
        target: spec,
        learner,
        training: TrainingInfo {
            metric: metric.name().to_string(),
            validation_score: Some(oriented(metric, final_score)),
            test_metrics: test_metrics.clone(),
            seed: opts.seed,
            trials: trials.len(),
            train_rows: n_train,
            test_rows: test_rows.len(),
            split: opts.split.to_string(),
            test_fraction: opts.test_fraction,
            config,
            dataset: None,
        },
    };
    // Scores on the leaderboard in the metric's own direction.
    for t in &mut trials {
        t.score = oriented(metric, t.score);
    }
    Ok(AutoMlOutcome {
        model,
        leaderboard: trials,
        metric,
        test_metrics,
        reproducible,
        elapsed: start.elapsed(),
    })
}
