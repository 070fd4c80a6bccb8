//! [`explain`]: everything `kiln explain` reports about a model on a
//! table, as one [`Explanation`].

use arrow_array::{Array, RecordBatch};
use kiln_ml::metrics::{self, Metric};
use kiln_ml::rng::Rng;
use kiln_ml::{Predictions, Target, Task};

use crate::explain::{Choice, Data, ExplainError, Explainer, Subject, spread};
use crate::report::{
    ColumnKind, ColumnSummary, Contribution, Dependence, Explanation, Importance, Interaction,
    Local, Method, Output, PermutationImportance, Point, Value,
};

/// Fewer background rows than this are reported as too few.
pub const MIN_BACKGROUND: usize = 20;
/// Rows permutation SHAP explains at most for a global summary (each costs
/// thousands of model calls).
pub const PERMUTATION_ROWS: usize = 100;
/// Background rows by default: permutation SHAP scores every one of them
/// once per column and permutation, so it takes fewer.
pub const BACKGROUND: usize = 100;
pub const PERMUTATION_BACKGROUND: usize = 50;

/// What to explain and how.
#[derive(Debug, Clone)]
pub struct Options {
    pub choice: Choice,
    /// The class explained (classifiers); the positive class by default.
    pub class: Option<String>,
    /// Background rows (interventional, linear, permutation methods);
    /// `None`: [`BACKGROUND`], or [`PERMUTATION_BACKGROUND`] for
    /// permutation SHAP.
    pub background: Option<usize>,
    /// Antithetic pairs of permutations per row (permutation SHAP).
    pub permutations: usize,
    /// Rows explained for the global summary, evenly spread over the table.
    pub rows: usize,
    /// Rows explained one by one (0-based row numbers of the table).
    pub local: Vec<usize>,
    /// Columns given partial dependence plots (the most important first).
    pub dependence: usize,
    /// Shuffles per column for permutation importance (0: none).
    pub repeats: usize,
    /// Whether to compute interaction values (tree models).
    pub interactions: bool,
    pub seed: u64,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            choice: Choice::Auto,
            class: None,
            background: None,
            permutations: 4,
            rows: 1000,
            local: Vec::new(),
            dependence: 4,
            repeats: 5,
            interactions: true,
            seed: 42,
        }
    }
}

/// Explains `subject` (named `name` in the report) on `batches`.
pub fn explain(
    subject: Subject<'_>,
    name: &str,
    batches: &[RecordBatch],
    options: &Options,
) -> Result<Explanation, ExplainError> {
    let data = crate::explain::data_of(subject, batches)?;
    let n = data.n_rows();
    if n == 0 {
        return Err(ExplainError::Invalid(
            "the table has no rows to explain".into(),
        ));
    }
    if let Some(&bad) = options.local.iter().find(|&&r| r >= n) {
        return Err(ExplainError::Invalid(format!(
            "row {bad} is not in the table, which has {n} rows (rows are numbered from 0)"
        )));
    }
    let mut notes = Vec::new();
    // Which method the model gets decides the background's default size;
    // its trees are flattened once, for both.
    let trees = crate::explain::trees_of(subject);
    let method = crate::explain::method_with(subject, options.choice, trees.as_deref());
    let wanted_background = options
        .background
        .unwrap_or(if method == Method::Permutation {
            PERMUTATION_BACKGROUND
        } else {
            BACKGROUND
        });
    let background = data.take(&spread(n, wanted_background.max(1)));
    let mut explainer = Explainer::with_trees(
        subject,
        options.choice,
        options.class.as_deref(),
        Some(background),
        trees,
    )?;
    explainer.permutations = options.permutations.max(1);
    explainer.seed = options.seed;
    let b = explainer.background_rows();
    if let Some(b) = b {
        let fix = if b < n {
            "ask for more with --background"
        } else {
            "explain a table of at least 100 rows"
        };
        if b < MIN_BACKGROUND {
            notes.push(format!(
                "the background sample has only {b} rows (fewer than {MIN_BACKGROUND}), too small for stable attributions: they depend on which rows it holds; {fix}"
            ));
        } else if b < wanted_background {
            notes.push(format!(
                "the background sample has {b} rows, all the table has ({wanted_background} wanted)"
            ));
        }
    }
    let mut wanted = options.rows.max(1);
    let capped = explainer.method == Method::Permutation && wanted > PERMUTATION_ROWS;
    if capped {
        wanted = PERMUTATION_ROWS;
    }
    let sample_rows = spread(n, wanted);
    if capped && sample_rows.len() < n {
        notes.push(format!(
            "permutation SHAP calls the model thousands of times per row, so the summary explains {} of the table's {n} rows, evenly spread",
            sample_rows.len()
        ));
    } else if sample_rows.len() < n {
        notes.push(format!(
            "the summary explains {} of the table's {n} rows, evenly spread",
            sample_rows.len()
        ));
    }
    let sample = data.take(&sample_rows);
    let values = explainer.attributions(&sample);
    let c = explainer.columns.len();
    // Columns a model reads in parts (dates): shown as the table has them.
    let shown = Shown::new(&explainer, batches);

    let mut columns: Vec<ColumnSummary> = (0..c)
        .map(|j| {
            let col: Vec<f64> = values.iter().skip(j).step_by(c).copied().collect();
            let rows = col.len().max(1) as f64;
            ColumnSummary {
                column: explainer.columns[j].clone(),
                kind: explainer.kinds[j],
                mean_abs: col.iter().map(|v| v.abs()).sum::<f64>() / rows,
                mean: col.iter().sum::<f64>() / rows,
                points: col
                    .iter()
                    .enumerate()
                    .map(|(i, &shap)| Point {
                        value: shown.value(&explainer, &sample, i, sample_rows[i], j),
                        shap,
                    })
                    .collect(),
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..c).collect();
    order.sort_by(|&a, &b| columns[b].mean_abs.total_cmp(&columns[a].mean_abs));

    // Local explanations.
    let mut local = Vec::new();
    if !options.local.is_empty() {
        let rows = data.take(&options.local);
        let phi = explainer.attributions(&rows);
        let predictions = explainer.predict(&rows);
        for (i, &row) in options.local.iter().enumerate() {
            let phi = &phi[i * c..(i + 1) * c];
            let mut contributions: Vec<Contribution> = (0..c)
                .map(|j| Contribution {
                    column: explainer.columns[j].clone(),
                    value: shown.value(&explainer, &rows, i, row, j),
                    shap: phi[j],
                })
                .collect();
            contributions.sort_by(|a, b| b.shap.abs().total_cmp(&a.shap.abs()));
            local.push(Local {
                row,
                output: explainer.expected_value() + phi.iter().sum::<f64>(),
                prediction: explainer.describe(&predictions, i),
                contributions,
            });
        }
    }

    let permutation = match subject {
        Subject::Kiln(m) if options.repeats > 0 => match m.target.labels(batches) {
            Ok(labels) if labels.rows.is_empty() => {
                notes.push(format!(
                    "no permutation importance: no row has a `{}` label to score against",
                    m.target.name
                ));
                None
            }
            Ok(labels) => match permutation_importance(
                &explainer,
                &data,
                &labels.target,
                &labels.rows,
                m.task(),
                options,
            ) {
                Ok(p) => Some(p),
                Err(e) => {
                    notes.push(format!("no permutation importance: {e}"));
                    None
                }
            },
            Err(e) => {
                notes.push(format!(
                    "no permutation importance: the `{}` labels cannot be read ({e})",
                    m.target.name
                ));
                None
            }
        },
        Subject::Imported(_) if options.repeats > 0 => {
            notes.push(
                "no permutation importance: an imported model does not name its target column"
                    .into(),
            );
            None
        }
        _ => None,
    };

    let dependence = order
        .iter()
        .copied()
        .filter(|&j| explainer.settable(j))
        .take(options.dependence)
        .map(|j| partial_dependence(&explainer, &sample, j))
        .collect();

    let mut interactions = Vec::new();
    if options.interactions {
        // Each row costs one TreeSHAP pass, then two per feature the trees
        // use: the rows are capped so the passes stay near 8,000.
        let used = explainer.features_used().unwrap_or(0);
        let rows = spread(
            sample.n_rows(),
            (INTERACTION_PASSES / (1 + 2 * used)).clamp(10, 200),
        );
        if let Some(matrix) = explainer.interactions(&sample.take(&rows)) {
            for a in 0..c {
                for b in a + 1..c {
                    let v = matrix[a * c + b];
                    if v > 0.0 {
                        interactions.push(Interaction {
                            a: explainer.columns[a].clone(),
                            b: explainer.columns[b].clone(),
                            mean_abs: v,
                        });
                    }
                }
            }
            interactions.sort_by(|x, y| y.mean_abs.total_cmp(&x.mean_abs));
            interactions.truncate(10);
        }
    }

    if let Some(class) = &explainer.class
        && options.class.is_none()
        && subject_task(subject) == Task::Multiclass
    {
        notes.push(format!(
            "a multiclass model: this explains class `{class}`; pass --class for another"
        ));
    }
    let sorted: Vec<ColumnSummary> = order.iter().map(|&j| columns[j].clone()).collect();
    columns.clear();
    Ok(Explanation {
        model: name.to_string(),
        method: explainer.method,
        method_note: explainer.note.clone(),
        output: Output {
            name: explainer.output_name.clone(),
            class: explainer.class.clone(),
        },
        expected_value: explainer.expected_value(),
        rows: sample.n_rows(),
        background_rows: b,
        columns: sorted,
        local,
        permutation,
        dependence,
        interactions,
        notes,
    })
}

fn subject_task(subject: Subject<'_>) -> Task {
    match subject {
        Subject::Kiln(m) => m.task(),
        Subject::Imported(m) => m.task(),
    }
}

/// TreeSHAP passes interaction values may take (rows × (1 + 2 × features
/// used)).
const INTERACTION_PASSES: usize = 8_000;

/// Rows permutation importance scores at most.
const IMPORTANCE_ROWS: usize = 2000;

/// How much the model's metric worsens when each column is shuffled.
fn permutation_importance(
    explainer: &Explainer<'_>,
    data: &Data,
    target: &Target,
    labelled: &[usize],
    task: Task,
    options: &Options,
) -> Result<PermutationImportance, ExplainError> {
    let picks = spread(labelled.len(), IMPORTANCE_ROWS);
    let rows: Vec<usize> = picks.iter().map(|&i| labelled[i]).collect();
    let target = match target {
        Target::Classes { codes, n_classes } => Target::Classes {
            codes: picks.iter().map(|&i| codes[i]).collect(),
            n_classes: *n_classes,
        },
        Target::Values(v) => Target::Values(picks.iter().map(|&i| v[i]).collect()),
    };
    let metric = match task {
        Task::Regression => Metric::Rmse,
        Task::Binary | Task::Multiclass => Metric::LogLoss,
    };
    let data = data.take(&rows);
    let score = |p: &Predictions| -> Result<f64, ExplainError> {
        metrics::score(metric, &target, p)
            .map_err(|e| ExplainError::Invalid(format!("cannot score {metric}: {e}")))
    };
    let baseline = score(&explainer.predict(&data))?;
    let larger = metric.higher_is_better();
    let mut rng = Rng::new(options.seed);
    let n = data.n_rows();
    let mut columns = Vec::with_capacity(explainer.columns.len());
    for (j, name) in explainer.columns.iter().enumerate() {
        let mut drops = Vec::with_capacity(options.repeats);
        for _ in 0..options.repeats {
            let mut order: Vec<usize> = (0..n).collect();
            rng.shuffle(&mut order);
            let s = score(&explainer.predict(&explainer.with_permuted(&data, j, &order)))?;
            drops.push(if larger { baseline - s } else { s - baseline });
        }
        let mean = drops.iter().sum::<f64>() / drops.len().max(1) as f64;
        let var =
            drops.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (drops.len().max(2) - 1) as f64;
        columns.push(Importance {
            column: name.clone(),
            mean,
            std: var.sqrt(),
        });
    }
    columns.sort_by(|a, b| b.mean.total_cmp(&a.mean));
    Ok(PermutationImportance {
        metric: metric.name().to_string(),
        larger_is_better: larger,
        baseline,
        repeats: options.repeats,
        rows: n,
        columns,
    })
}

/// Grid points per numeric column.
const GRID: usize = 20;
/// Rows averaged for partial dependence, and ICE curves drawn.
const PDP_ROWS: usize = 200;
const ICE_CURVES: usize = 30;

/// The mean prediction over `sample`'s rows with column `j` set to each of
/// a grid of its values, and the first rows' curves (ICE).
fn partial_dependence(explainer: &Explainer<'_>, sample: &Data, j: usize) -> Dependence {
    let rows = spread(sample.n_rows(), PDP_ROWS);
    let data = sample.take(&rows);
    let n = data.n_rows();
    let kind = explainer.kinds[j];
    // Grid points as rows of `data` holding each value.
    let mut cells: Vec<(Value, usize)> =
        (0..n).map(|r| (explainer.value(&data, r, j), r)).collect();
    let grid: Vec<(Value, usize)> = match kind {
        ColumnKind::Numeric => {
            cells.retain(|(v, _)| v.as_number().is_some());
            cells.sort_by(|a, b| {
                a.0.as_number()
                    .unwrap_or(0.0)
                    .total_cmp(&b.0.as_number().unwrap_or(0.0))
            });
            let mut picked: Vec<(Value, usize)> = spread(cells.len(), GRID)
                .into_iter()
                .map(|i| cells[i].clone())
                .collect();
            if let Some(last) = cells.last() {
                picked.push(last.clone());
            }
            picked.dedup_by(|a, b| a.0 == b.0);
            picked
        }
        ColumnKind::Categorical => {
            let mut seen: Vec<(Value, usize, usize)> = Vec::new();
            for (v, r) in cells {
                if v == Value::Missing {
                    continue;
                }
                match seen.iter_mut().find(|s| s.0 == v) {
                    Some(s) => s.2 += 1,
                    None => seen.push((v, r, 1)),
                }
            }
            seen.sort_by_key(|s| std::cmp::Reverse(s.2));
            seen.truncate(GRID);
            seen.into_iter().map(|(v, r, _)| (v, r)).collect()
        }
    };
    let curves: Vec<Vec<f64>> = grid
        .iter()
        .map(|(_, r)| {
            let set = explainer.with_column(&data, j, &data, *r);
            explainer.prediction(&explainer.predict(&set))
        })
        .collect();
    let average = curves
        .iter()
        .map(|c| c.iter().sum::<f64>() / c.len().max(1) as f64)
        .collect();
    let ice = (0..n.min(ICE_CURVES))
        .map(|r| curves.iter().map(|c| c[r]).collect())
        .collect();
    Dependence {
        column: explainer.columns[j].clone(),
        kind,
        grid: grid.into_iter().map(|(v, _)| v).collect(),
        average,
        ice,
    }
}

/// The table's own text of the columns a model reads in parts (a date's
/// year, month, hour…), which its features cannot show whole.
pub struct Shown {
    /// Per column: the table's cells as text, when the column is read in parts.
    text: Vec<Option<Vec<Option<String>>>>,
}

impl Shown {
    pub fn new(explainer: &Explainer<'_>, batches: &[RecordBatch]) -> Shown {
        let text = (0..explainer.columns.len())
            .map(|j| {
                if explainer.settable(j) {
                    return None;
                }
                let name = &explainer.columns[j];
                let mut out = Vec::new();
                for b in batches {
                    let Ok(i) = b.schema().index_of(name) else {
                        return None;
                    };
                    let column = b.column(i);
                    let options = arrow_cast::display::FormatOptions::default();
                    let f = arrow_cast::display::ArrayFormatter::try_new(column.as_ref(), &options)
                        .ok()?;
                    for r in 0..column.len() {
                        out.push(column.is_valid(r).then(|| f.value(r).to_string()));
                    }
                }
                Some(out)
            })
            .collect();
        Shown { text }
    }

    /// Row `i` of `data` (row `table_row` of the table), column `j`.
    pub fn value(
        &self,
        explainer: &Explainer<'_>,
        data: &Data,
        i: usize,
        table_row: usize,
        j: usize,
    ) -> Value {
        match &self.text[j] {
            Some(cells) => match cells.get(table_row) {
                Some(Some(s)) => Value::Text(s.clone()),
                _ => Value::Missing,
            },
            None => explainer.value(data, i, j),
        }
    }
}
