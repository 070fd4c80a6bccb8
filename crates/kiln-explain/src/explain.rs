//! Explaining a model on a table: attributions on the user's own columns,
//! by the best method the model allows.
//!
//! | model | method | explains |
//! |---|---|---|
//! | kiln boosted trees and forests, LightGBM, XGBoost; an ensemble of kiln boosted regressors without a link | exact TreeSHAP, path-dependent (interventional when asked) | the raw score |
//! | LightGBM or XGBoost files without training weights | exact interventional TreeSHAP against the background | the raw score |
//! | kiln linear model | exact linear SHAP against the background's mean | the raw score |
//! | other kiln ensembles, ONNX, trees deeper than [`crate::tree::MAX_DEPTH`] | permutation SHAP (estimate; adds up exactly) | the prediction |
//!
//! A learner feature made from an input column (a date's parts, a
//! one-hot group in a linear model's encoding) is summed back into that
//! column, so every attribution names a column of the user's table.

use arrow_array::RecordBatch;
use kiln_ml::encode::DenseEncoder;
use kiln_ml::gbdt::{Gbdt, Objective};
use kiln_ml::imported::ImportedModel;
use kiln_ml::linear::{LinearModel, Link};
use kiln_ml::model::{Learner, Model};
use kiln_ml::preprocess::{self, FeatureSource};
use kiln_ml::rng::Rng;
use kiln_ml::{Column, Features, MlError, Predictions, Task};
use rayon::prelude::*;
use std::sync::Arc;

use crate::report::{ColumnKind, Method, Value};
use crate::tree::{Ensemble, Row, Scratch};

/// A model to explain: one kiln trained, or one it imported.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'m> {
    Kiln(&'m Model),
    Imported(&'m ImportedModel),
}

/// How to explain, when the user chooses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Choice {
    /// The exact method for the model's kind, else permutation.
    #[default]
    Auto,
    /// Trees against a background sample instead of training weights.
    Interventional,
    /// Model-agnostic, for any model.
    Permutation,
}

/// Why a model cannot be explained as asked.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Ml(#[from] MlError),
    #[error("{0}")]
    Invalid(String),
    /// The method explains against background rows, and none were given.
    #[error("{} needs a background sample of rows{}", .method.as_str(), if *.unweighted { " (the model file records no training weights, so its trees are explained against one)" } else { "" })]
    NeedsBackground { method: Method, unweighted: bool },
}

/// A table in the form a model reads it: a kiln model's learner features,
/// or an imported model's dense inputs.
#[derive(Debug, Clone)]
pub enum Data {
    Features(Features),
    Dense { x: Vec<f64>, width: usize },
}

impl Data {
    pub fn n_rows(&self) -> usize {
        match self {
            Data::Features(f) => f.n_rows(),
            Data::Dense { x, width } => x.len().checked_div(*width).unwrap_or(0),
        }
    }

    /// The rows `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Data {
        match self {
            Data::Features(f) => Data::Features(f.take(rows)),
            Data::Dense { x, width } => Data::Dense {
                x: rows
                    .iter()
                    .flat_map(|&r| x[r * width..(r + 1) * width].iter().copied())
                    .collect(),
                width: *width,
            },
        }
    }

    fn row(&self, r: usize) -> Row<'_> {
        match self {
            Data::Features(f) => Row::Features(f, r),
            Data::Dense { x, width } => Row::Dense(&x[r * width..(r + 1) * width]),
        }
    }

    /// For each mask (one flag per column), the background rows with the
    /// masked-in columns (features `groups[j] == column`) set to row `row`
    /// of `self`: `masks.len() × background.n_rows()` rows.
    fn mixed(&self, row: usize, background: &Data, groups: &[usize], masks: &[Vec<bool>]) -> Data {
        let b = background.n_rows();
        match (self, background) {
            (Data::Features(x), Data::Features(bg)) => {
                let columns = x
                    .columns
                    .iter()
                    .zip(&bg.columns)
                    .zip(groups)
                    .map(|((xc, bc), &g)| match (xc, bc) {
                        (Column::Numeric(xv), Column::Numeric(bv)) => Column::Numeric(
                            masks
                                .iter()
                                .flat_map(|m| {
                                    (0..b).map(move |i| if m[g] { xv[row] } else { bv[i] })
                                })
                                .collect(),
                        ),
                        (
                            Column::Categorical {
                                codes: xv,
                                n_categories,
                            },
                            Column::Categorical { codes: bv, .. },
                        ) => Column::Categorical {
                            codes: masks
                                .iter()
                                .flat_map(|m| {
                                    (0..b).map(move |i| if m[g] { xv[row] } else { bv[i] })
                                })
                                .collect(),
                            n_categories: *n_categories,
                        },
                        _ => unreachable!("one model's features have one kind"),
                    })
                    .collect();
                Data::Features(Features {
                    names: x.names.clone(),
                    columns,
                })
            }
            (Data::Dense { x, width }, Data::Dense { x: bx, .. }) => {
                let w = *width;
                let mut out = Vec::with_capacity(masks.len() * b * w);
                for m in masks {
                    for i in 0..b {
                        for j in 0..w {
                            out.push(if m[j] { x[row * w + j] } else { bx[i * w + j] });
                        }
                    }
                }
                Data::Dense { x: out, width: w }
            }
            _ => unreachable!("a table and its background have one form"),
        }
    }

    /// Sets column `column` (features `groups[j] == column`) of every row
    /// to row `from`'s value in `source`.
    fn set_column(&mut self, groups: &[usize], column: usize, source: &Data, from: usize) {
        match (self, source) {
            (Data::Features(x), Data::Features(s)) => {
                for (j, c) in x.columns.iter_mut().enumerate() {
                    if groups[j] != column {
                        continue;
                    }
                    match (c, &s.columns[j]) {
                        (Column::Numeric(v), Column::Numeric(sv)) => v.fill(sv[from]),
                        (
                            Column::Categorical { codes, .. },
                            Column::Categorical { codes: sc, .. },
                        ) => codes.fill(sc[from]),
                        _ => unreachable!("one model's features have one kind"),
                    }
                }
            }
            (Data::Dense { x, width }, Data::Dense { x: sx, width: sw }) => {
                let v = sx[from * *sw + column];
                for row in x.chunks_exact_mut(*width) {
                    row[column] = v;
                }
            }
            _ => unreachable!("a table and its source have one form"),
        }
    }

    /// Shuffles column `column` across the rows by `order`.
    fn permute_column(&mut self, groups: &[usize], column: usize, order: &[usize]) {
        match self {
            Data::Features(x) => {
                for (j, c) in x.columns.iter_mut().enumerate() {
                    if groups[j] != column {
                        continue;
                    }
                    match c {
                        Column::Numeric(v) => *v = order.iter().map(|&r| v[r]).collect(),
                        Column::Categorical { codes, .. } => {
                            *codes = order.iter().map(|&r| codes[r]).collect()
                        }
                    }
                }
            }
            Data::Dense { x, width } => {
                let w = *width;
                let old: Vec<f64> = (0..order.len()).map(|r| x[r * w + column]).collect();
                for (r, &o) in order.iter().enumerate() {
                    x[r * w + column] = old[o];
                }
            }
        }
    }
}

/// An ensemble's members when all are boosted trees whose raw score is the
/// prediction (regression objectives without a link): their weighted
/// average is then one sum of trees, explained exactly.
fn tree_members(m: &Model) -> Option<Vec<(f64, &Gbdt)>> {
    let Learner::Ensemble { members } = &m.learner else {
        return None;
    };
    if m.task() != Task::Regression {
        return None;
    }
    members
        .iter()
        .map(|(w, l)| match l {
            Learner::Gbdt(g)
                if matches!(
                    g.objective,
                    Objective::L2
                        | Objective::L1
                        | Objective::Huber { .. }
                        | Objective::Quantile { .. }
                ) =>
            {
                Some((*w, g))
            }
            _ => None,
        })
        .collect()
}

/// The trees of `subject` flattened for TreeSHAP, when it is a tree model
/// (kiln's boosted trees, LightGBM, XGBoost): what
/// [`Explainer::with_trees`] takes, built once per model.
pub fn trees_of(subject: Subject<'_>) -> Option<Arc<Ensemble>> {
    match subject {
        Subject::Kiln(m) => match &m.learner {
            Learner::Gbdt(g) => Some(Arc::new(Ensemble::from_gbdt(
                g,
                m.preprocessor.features.len(),
            ))),
            _ => tree_members(m)
                .map(|ms| Arc::new(Ensemble::from_gbdts(&ms, m.preprocessor.features.len()))),
        },
        Subject::Imported(m) => m
            .trees()
            .map(|v| Arc::new(Ensemble::from_view(v, m.inputs().len()))),
    }
}

/// The method [`Explainer::new`] picks for `subject` under `choice`.
pub fn method_for(subject: Subject<'_>, choice: Choice) -> Method {
    method_with(subject, choice, trees_of(subject).as_deref())
}

/// [`method_for`] with the model's trees already flattened ([`trees_of`]).
pub fn method_with(subject: Subject<'_>, choice: Choice, trees: Option<&Ensemble>) -> Method {
    if let Subject::Kiln(m) = subject
        && matches!(m.learner, Learner::Linear { .. })
        && choice != Choice::Permutation
    {
        return Method::Linear;
    }
    match (trees, choice) {
        (_, Choice::Permutation) | (None, _) => Method::Permutation,
        (Some(t), _) if !t.walkable() => Method::Permutation,
        (Some(t), Choice::Auto) if t.weighted() => Method::TreePathDependent,
        (Some(_), _) => Method::TreeInterventional,
    }
}

/// A model made ready to explain: its columns, the output explained, and
/// the method's state (trees, linear means, a background sample).
pub struct Explainer<'m> {
    subject: Subject<'m>,
    /// The user's columns the attributions are reported on.
    pub columns: Vec<String>,
    pub kinds: Vec<ColumnKind>,
    /// The column of each model feature.
    groups: Vec<usize>,
    pub method: Method,
    /// Why the method is not the exact one, when it is not.
    pub note: Option<String>,
    /// The output explained: an index into the raw scores (tree, linear)
    /// or into the predicted probabilities (permutation).
    output: usize,
    /// The binary negative class: values are negated.
    negate: bool,
    /// The explained class's index among the predicted probabilities
    /// (0 for regression).
    class_output: usize,
    /// What the explained output is, in words, and its class.
    pub output_name: String,
    pub class: Option<String>,
    tree: Option<Arc<Ensemble>>,
    background: Option<Data>,
    /// Interventional: the background rows' hot bits.
    background_hot: Vec<Vec<bool>>,
    /// Linear: the background's mean encoded inputs.
    linear_mean: Vec<f64>,
    /// Permutation: antithetic pairs of permutations per row.
    pub permutations: usize,
    pub seed: u64,
    expected: f64,
}

impl<'m> Explainer<'m> {
    /// Prepares `subject` for explaining output class `class` (classifiers;
    /// `None`: the positive class of a binary model, the first class of a
    /// multiclass one) by `choice`, with `background` rows (needed by the
    /// interventional, linear and permutation methods; `None` when there
    /// are none, as in serving a tree model).
    pub fn new(
        subject: Subject<'m>,
        choice: Choice,
        class: Option<&str>,
        background: Option<Data>,
    ) -> Result<Explainer<'m>, ExplainError> {
        Explainer::with_trees(subject, choice, class, background, None)
    }

    /// [`Explainer::new`] with the model's trees already flattened
    /// ([`trees_of`]), as a server keeps them between requests.
    pub fn with_trees(
        subject: Subject<'m>,
        choice: Choice,
        class: Option<&str>,
        background: Option<Data>,
        trees: Option<Arc<Ensemble>>,
    ) -> Result<Explainer<'m>, ExplainError> {
        let (columns, kinds, groups) = columns_of(subject);
        let classes = match subject {
            Subject::Kiln(m) => m.target.classes.clone(),
            Subject::Imported(m) => m.classes().to_vec(),
        };
        let task = match subject {
            Subject::Kiln(m) => m.task(),
            Subject::Imported(m) => m.task(),
        };
        let class_index = match class {
            None => match task {
                Task::Binary => Some(1),
                Task::Multiclass => Some(0),
                Task::Regression => None,
            },
            Some(c) => {
                if task == Task::Regression {
                    return Err(ExplainError::Invalid(format!(
                        "the model is a regression model, so there is no class `{c}` to explain; leave the class out"
                    )));
                }
                Some(classes.iter().position(|k| k == c).ok_or_else(|| {
                    ExplainError::Invalid(format!(
                        "the model has no class `{c}`; its classes are {}",
                        classes
                            .iter()
                            .map(|k| format!("`{k}`"))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ))
                })?)
            }
        };
        let class_name = class_index.and_then(|i| classes.get(i).cloned());
        let target = match subject {
            Subject::Kiln(m) => m.target.name.clone(),
            Subject::Imported(_) => "the prediction".into(),
        };
        let mut e = Explainer {
            subject,
            columns,
            kinds,
            groups,
            method: Method::Permutation,
            note: None,
            output: 0,
            negate: false,
            class_output: class_index.unwrap_or(0),
            output_name: String::new(),
            class: class_name.clone(),
            tree: None,
            background,
            background_hot: Vec::new(),
            linear_mean: Vec::new(),
            permutations: 4,
            seed: 42,
            expected: 0.0,
        };
        let quoted =
            |c: &Option<String>| c.as_deref().map(|c| format!(" `{c}`")).unwrap_or_default();
        // Raw-score methods: binary models have one score (class 1's).
        let (raw_output, negate) = match (task, class_index) {
            (Task::Binary, Some(0)) => (0, true),
            (Task::Multiclass, Some(i)) => (i, false),
            _ => (0, false),
        };
        let exact: Result<(), String> = match (subject, choice) {
            (_, Choice::Permutation) => Err(String::new()),
            (Subject::Kiln(m), _) => match &m.learner {
                Learner::Gbdt(g) => {
                    let n = m.preprocessor.features.len();
                    e.tree = Some(trees.unwrap_or_else(|| Arc::new(Ensemble::from_gbdt(g, n))));
                    e.output_name = match g.objective {
                        Objective::Binary => format!("log-odds of{}", quoted(&class_name)),
                        Objective::Multiclass { .. } => {
                            format!("raw score (softmax input) of{}", quoted(&class_name))
                        }
                        Objective::Poisson => format!("log of the predicted `{target}`"),
                        _ => format!("predicted `{target}`"),
                    };
                    Ok(())
                }
                Learner::Linear { model, .. } => {
                    e.output_name = linear_output(model, &class_name, &target);
                    Ok(())
                }
                Learner::Ensemble { .. } if tree_members(m).is_some() => {
                    let ms = tree_members(m).expect("tree members");
                    let n = m.preprocessor.features.len();
                    e.tree = Some(trees.unwrap_or_else(|| Arc::new(Ensemble::from_gbdts(&ms, n))));
                    e.output_name = format!("predicted `{target}`");
                    Ok(())
                }
                Learner::Ensemble { members } => Err(format!(
                    "the model is an ensemble of {} learners averaged on the prediction (a classifier's probabilities, or a linear or log-link member), which no exact method explains",
                    members.len()
                )),
            },
            (Subject::Imported(m), _) => match m.trees() {
                Some(view) => {
                    e.output_name = format!(
                        "{}{}",
                        view.raw_name(),
                        quoted(&class_name).replace(" `", " of `")
                    );
                    let n = m.inputs().len();
                    e.tree = Some(trees.unwrap_or_else(|| Arc::new(Ensemble::from_view(view, n))));
                    Ok(())
                }
                None => Err(format!(
                    "it is an {} model, which TreeSHAP cannot walk",
                    m.format()
                )),
            },
        };
        // Trees the walks cannot take (too deep, shared nodes) fall back.
        let exact = match (exact, &e.tree) {
            (Ok(()), Some(t)) if !t.walkable() => Err(format!(
                "its trees are {} levels deep or share nodes, past what TreeSHAP walks (at most {})",
                t.max_depth(),
                crate::tree::MAX_DEPTH
            )),
            (other, _) => other,
        };
        match exact {
            Ok(()) => {
                e.output = raw_output;
                e.negate = negate;
                if let Some(tree) = &e.tree {
                    if choice == Choice::Interventional || !tree.weighted() {
                        if !tree.weighted() && choice != Choice::Interventional {
                            e.note = Some(
                                "the model file records no training weights, so its trees are explained against a background sample (interventional TreeSHAP)".into(),
                            );
                        }
                        e.method = Method::TreeInterventional;
                    } else {
                        e.method = Method::TreePathDependent;
                    }
                } else {
                    e.method = Method::Linear;
                }
            }
            Err(why) => {
                if !why.is_empty() {
                    e.note = Some(format!(
                        "{why}; attributions are estimated by permutation SHAP on the prediction instead (model-agnostic; they add up exactly, but are estimates)"
                    ));
                }
                e.method = Method::Permutation;
                e.tree = None;
                e.output = class_index.unwrap_or(0);
                e.output_name = match &class_name {
                    Some(c) => format!("probability of `{c}`"),
                    None => format!("predicted `{target}`"),
                };
            }
        }
        e.prepare()?;
        Ok(e)
    }

    /// Computes what the method needs from the background.
    fn prepare(&mut self) -> Result<(), ExplainError> {
        let needs_background = !matches!(self.method, Method::TreePathDependent);
        let Some(bg) = &self.background else {
            if needs_background {
                return Err(ExplainError::NeedsBackground {
                    method: self.method,
                    unweighted: self.tree.as_ref().is_some_and(|t| !t.weighted()),
                });
            }
            self.expected = self
                .tree
                .as_ref()
                .map_or(0.0, |t| t.expected_value()[self.output]);
            return Ok(());
        };
        if bg.n_rows() == 0 {
            return Err(ExplainError::Invalid(
                "the background sample has no rows".into(),
            ));
        }
        match self.method {
            Method::TreePathDependent => {
                self.expected = self
                    .tree
                    .as_ref()
                    .map_or(0.0, |t| t.expected_value()[self.output]);
            }
            Method::TreeInterventional => {
                let tree = self.tree.as_ref().expect("trees");
                let mut total = 0.0;
                self.background_hot = (0..bg.n_rows())
                    .map(|r| {
                        let mut hot = Vec::new();
                        tree.hot(bg.row(r), &mut hot);
                        total += tree.predict(&hot)[self.output];
                        hot
                    })
                    .collect();
                self.expected = total / bg.n_rows() as f64;
            }
            Method::Linear => {
                let (_, model, z, w) = self.linear(bg);
                let n = bg.n_rows();
                let mut mean = vec![0.0; w];
                for row in z.chunks_exact(w) {
                    for (m, v) in mean.iter_mut().zip(row) {
                        *m += v;
                    }
                }
                mean.iter_mut().for_each(|m| *m /= n as f64);
                let coef = &model.coef[self.output * w..(self.output + 1) * w];
                self.expected = model.intercept[self.output]
                    + coef.iter().zip(&mean).map(|(c, m)| c * m).sum::<f64>();
                self.linear_mean = mean;
            }
            Method::Permutation => {
                let out = self.outputs(bg)?;
                self.expected = out.iter().sum::<f64>() / out.len() as f64;
            }
        }
        if self.negate {
            self.expected = -self.expected;
        }
        Ok(())
    }

    /// The explained class's column in [`Explainer::predict`]'s
    /// predictions, as [`Explainer::prediction`] reads it.
    pub fn prediction(&self, p: &Predictions) -> Vec<f64> {
        select(p, self.class_output)
    }

    /// The features the model's trees split on (tree methods).
    pub fn features_used(&self) -> Option<usize> {
        self.tree.as_ref().map(|t| t.used_features().len())
    }

    /// What attributions start from: the mean explained output.
    pub fn expected_value(&self) -> f64 {
        self.expected
    }

    pub fn background_rows(&self) -> Option<usize> {
        match self.method {
            Method::TreePathDependent => None,
            _ => self.background.as_ref().map(Data::n_rows),
        }
    }

    /// A table in the model's form.
    pub fn data(&self, batches: &[RecordBatch]) -> Result<Data, ExplainError> {
        data_of(self.subject, batches)
    }

    /// The explained output of every row of `data` (raw score or
    /// prediction, by method), one per row.
    pub fn outputs(&self, data: &Data) -> Result<Vec<f64>, ExplainError> {
        if let (Some(tree), false) = (&self.tree, self.method == Method::Permutation) {
            let sign = if self.negate { -1.0 } else { 1.0 };
            return Ok((0..data.n_rows())
                .into_par_iter()
                .map_init(Vec::new, |hot, r| {
                    tree.hot(data.row(r), hot);
                    sign * tree.predict(hot)[self.output]
                })
                .collect());
        }
        if self.method == Method::Linear {
            let (_, model, z, w) = self.linear(data);
            let coef = &model.coef[self.output * w..(self.output + 1) * w];
            let sign = if self.negate { -1.0 } else { 1.0 };
            return Ok(z
                .chunks_exact(w)
                .map(|row| {
                    sign * (model.intercept[self.output]
                        + coef.iter().zip(row).map(|(c, v)| c * v).sum::<f64>())
                })
                .collect());
        }
        Ok(select(&self.predict(data), self.output))
    }

    /// The model's predictions for `data`.
    pub fn predict(&self, data: &Data) -> Predictions {
        match (self.subject, data) {
            (Subject::Kiln(m), Data::Features(f)) => m.learner.predict(f),
            (Subject::Imported(m), Data::Dense { x, width }) => {
                m.predict_dense(x, x.len().checked_div(*width).unwrap_or(0))
            }
            _ => unreachable!("a table in another model's form"),
        }
    }

    /// Attributions of every row of `data` on the columns: row-major,
    /// `n_rows × columns.len()`. Each row's values sum to its explained
    /// output minus [`Explainer::expected_value`].
    pub fn attributions(&self, data: &Data) -> Vec<f64> {
        let c = self.columns.len();
        let n = data.n_rows();
        let mut out = vec![0.0; n * c];
        let sign = if self.negate { -1.0 } else { 1.0 };
        match self.method {
            Method::TreePathDependent | Method::TreeInterventional => {
                let tree = self.tree.as_ref().expect("trees");
                let m = tree.n_features();
                let k = tree.n_outputs();
                let weights = tree.pair_weights();
                // A row or two (serving): the trees are shared out instead.
                if self.method == Method::TreePathDependent && n < rayon::current_num_threads() {
                    let mut hot = Vec::new();
                    let mut phi = vec![0.0; k * m];
                    for (r, row) in out.chunks_mut(c).enumerate() {
                        phi.fill(0.0);
                        tree.hot(data.row(r), &mut hot);
                        tree.shap_split(&hot, &mut phi);
                        for (f, p) in phi[self.output * m..(self.output + 1) * m]
                            .iter()
                            .enumerate()
                        {
                            row[self.groups[f]] += sign * p;
                        }
                    }
                    return out;
                }
                out.par_chunks_mut(c).enumerate().for_each_init(
                    || (tree.scratch(), vec![0.0; k * m], Vec::new()),
                    |(scratch, phi, state): &mut (Scratch, Vec<f64>, Vec<u8>), (r, row)| {
                        phi.fill(0.0);
                        let mut hot = std::mem::take(&mut scratch.hot);
                        tree.hot(data.row(r), &mut hot);
                        if self.method == Method::TreePathDependent {
                            tree.shap(&hot, scratch, phi);
                        } else {
                            for bg in &self.background_hot {
                                tree.shap_interventional(&hot, bg, &weights, state, phi);
                            }
                            let b = self.background_hot.len() as f64;
                            phi.iter_mut().for_each(|p| *p /= b);
                        }
                        scratch.hot = hot;
                        let phi = &phi[self.output * m..(self.output + 1) * m];
                        for (f, p) in phi.iter().enumerate() {
                            row[self.groups[f]] += sign * p;
                        }
                    },
                );
            }
            Method::Linear => {
                let (encoder, lm, z, w) = self.linear(data);
                let coef = &lm.coef[self.output * w..(self.output + 1) * w];
                let owner = encoded_owner(encoder);
                for (r, zr) in z.chunks_exact(w).enumerate() {
                    for k in 0..w {
                        out[r * c + self.groups[owner[k]]] +=
                            sign * coef[k] * (zr[k] - self.linear_mean[k]);
                    }
                }
            }
            Method::Permutation => {
                let bg = self.background.as_ref().expect("a background sample");
                out.par_chunks_mut(c)
                    .enumerate()
                    .for_each(|(r, row)| self.permutation_row(data, r, bg, row));
            }
        }
        out
    }

    /// A linear model's encoder and coefficients, and `data` encoded as it
    /// reads it (row-major) with the encoding's width. Only for
    /// [`Method::Linear`], which only kiln's linear models get.
    fn linear(&self, data: &Data) -> (&'m DenseEncoder, &'m LinearModel, Vec<f64>, usize) {
        let (Subject::Kiln(m), Data::Features(f)) = (self.subject, data) else {
            unreachable!("linear SHAP is for kiln models")
        };
        let Learner::Linear { encoder, model } = &m.learner else {
            unreachable!("linear SHAP is for linear models")
        };
        (encoder, model, encoder.transform(f), encoder.width())
    }

    /// Permutation SHAP for one row: for each permutation and its reverse,
    /// the columns are switched from the background's values to the row's
    /// one at a time, and each column is credited with the change in the
    /// mean output.
    fn permutation_row(&self, data: &Data, r: usize, bg: &Data, out: &mut [f64]) {
        let c = self.columns.len();
        let b = bg.n_rows();
        let mut rng = Rng::derive(self.seed, r as u64);
        let pairs = self.permutations.max(1);
        for _ in 0..pairs {
            let mut order: Vec<usize> = (0..c).collect();
            rng.shuffle(&mut order);
            for pass in 0..2 {
                if pass == 1 {
                    order.reverse();
                }
                let mut mask = vec![false; c];
                let masks: Vec<Vec<bool>> = order
                    .iter()
                    .map(|&j| {
                        mask[j] = true;
                        mask.clone()
                    })
                    .collect();
                let mixed = data.mixed(r, bg, &self.groups, &masks);
                let values = select(&self.predict(&mixed), self.output);
                let mut prev = self.expected;
                for (k, &j) in order.iter().enumerate() {
                    let mean = values[k * b..(k + 1) * b].iter().sum::<f64>() / b as f64;
                    out[j] += mean - prev;
                    prev = mean;
                }
            }
        }
        let total = (2 * pairs) as f64;
        out.iter_mut().for_each(|v| *v /= total);
    }

    /// SHAP interaction values on the columns, summed over `data`'s rows
    /// as mean |interaction| per pair of columns (`c × c`, symmetric, the
    /// diagonal zero); `None` unless the method is path-dependent TreeSHAP.
    pub fn interactions(&self, data: &Data) -> Option<Vec<f64>> {
        if self.method != Method::TreePathDependent {
            return None;
        }
        let tree = self.tree.as_ref()?;
        let m = tree.n_features();
        let k = tree.n_outputs();
        let c = self.columns.len();
        let n = data.n_rows().max(1);
        let total = (0..data.n_rows())
            .into_par_iter()
            .fold(
                || (tree.scratch(), vec![0.0; k * m * m], vec![0.0; c * c]),
                |(mut scratch, mut buf, mut acc), r| {
                    buf.fill(0.0);
                    let mut hot = std::mem::take(&mut scratch.hot);
                    tree.hot(data.row(r), &mut hot);
                    tree.interactions(&hot, &mut scratch, &mut buf);
                    scratch.hot = hot;
                    let o = &buf[self.output * m * m..(self.output + 1) * m * m];
                    // Sum features into columns, then take the pair's
                    // whole interaction (both halves).
                    let mut cols = vec![0.0; c * c];
                    for i in 0..m {
                        for j in 0..m {
                            cols[self.groups[i] * c + self.groups[j]] += o[i * m + j];
                        }
                    }
                    for a in 0..c {
                        for b in 0..c {
                            if a != b {
                                let v: f64 = cols[a * c + b] + cols[b * c + a];
                                acc[a * c + b] += v.abs();
                            }
                        }
                    }
                    (scratch, buf, acc)
                },
            )
            .map(|(_, _, acc)| acc)
            .reduce(
                || vec![0.0; c * c],
                |a, b| a.iter().zip(&b).map(|(x, y)| x + y).collect(),
            );
        Some(total.into_iter().map(|v| v / n as f64).collect())
    }

    /// Column `column`'s features set to row `from` of `source`, for every
    /// row of `data` (partial dependence).
    pub fn with_column(&self, data: &Data, column: usize, source: &Data, from: usize) -> Data {
        let mut d = data.clone();
        d.set_column(&self.groups, column, source, from);
        d
    }

    /// `data` with column `column` shuffled by `order` (permutation
    /// importance).
    pub fn with_permuted(&self, data: &Data, column: usize, order: &[usize]) -> Data {
        let mut d = data.clone();
        d.permute_column(&self.groups, column, order);
        d
    }

    /// Whether column `column` is one feature a grid can set (not a date,
    /// whose parts move together).
    pub fn settable(&self, column: usize) -> bool {
        match self.subject {
            Subject::Imported(_) => true,
            Subject::Kiln(m) => m
                .preprocessor
                .features
                .iter()
                .filter(|(_, s)| source_input(s) == column)
                .all(|(_, s)| !matches!(s, FeatureSource::DatePart { .. })),
        }
    }

    /// The explained output of each row as a user reads it: a probability,
    /// a value, a class.
    pub fn describe(&self, p: &Predictions, row: usize) -> String {
        use crate::report::short;
        match p {
            Predictions::Regression(v) => short(v[row]),
            Predictions::Binary(v) => {
                // The explained class's probability (class 0: 1 − p).
                let p = if self.class_output == 0 {
                    1.0 - v[row]
                } else {
                    v[row]
                };
                match &self.class {
                    Some(c) => format!("P({c}) = {}", short(p)),
                    None => short(p),
                }
            }
            Predictions::Multiclass { probs, n_classes } => {
                let row = &probs[row * n_classes..(row + 1) * n_classes];
                let p = row.get(self.class_output).copied().unwrap_or(f64::NAN);
                let best = (0..row.len())
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap_or(0);
                let classes = match self.subject {
                    Subject::Kiln(m) => m.target.classes.clone(),
                    Subject::Imported(m) => m.classes().to_vec(),
                };
                let name = |i: usize| classes.get(i).cloned().unwrap_or_else(|| i.to_string());
                format!(
                    "P({}) = {} (predicted {})",
                    name(self.class_output),
                    short(p),
                    name(best)
                )
            }
        }
    }

    /// The model's categories of a categorical column (kiln models).
    pub fn categories(&self, column: usize) -> Option<&[String]> {
        match self.subject {
            Subject::Kiln(m) => m.inputs()[column].categories.as_deref(),
            Subject::Imported(_) => None,
        }
    }

    /// Row `r`'s value of column `column`, as the model reads it.
    pub fn value(&self, data: &Data, r: usize, column: usize) -> Value {
        match data {
            Data::Dense { x, width } => number(x[r * width + column]),
            Data::Features(f) => {
                let Some(j) = self.groups.iter().position(|&g| g == column) else {
                    return Value::Missing;
                };
                match &f.columns[j] {
                    Column::Numeric(v) if self.settable(column) => number(v[r]),
                    Column::Numeric(_) => Value::Missing,
                    Column::Categorical { codes, .. } => self
                        .categories(column)
                        .and_then(|c| c.get(codes[r] as usize))
                        .map_or(Value::Missing, |s| Value::Text(s.clone())),
                }
            }
        }
    }
}

fn number(v: f64) -> Value {
    if v.is_nan() {
        Value::Missing
    } else {
        Value::Number(v)
    }
}

fn linear_output(model: &LinearModel, class: &Option<String>, target: &str) -> String {
    let class = class
        .as_deref()
        .map(|c| format!(" `{c}`"))
        .unwrap_or_default();
    match model.task {
        Task::Binary => format!("log-odds of{class}"),
        Task::Multiclass => format!("raw score (softmax input) of{class}"),
        Task::Regression if model.link == Link::Log => format!("log of the predicted `{target}`"),
        Task::Regression => format!("predicted `{target}`"),
    }
}

/// The explained output's column of predictions.
fn select(p: &Predictions, output: usize) -> Vec<f64> {
    match p {
        Predictions::Regression(v) => v.clone(),
        Predictions::Binary(v) => {
            if output == 0 {
                v.iter().map(|p| 1.0 - p).collect()
            } else {
                v.clone()
            }
        }
        Predictions::Multiclass { probs, n_classes } => probs
            .iter()
            .skip(output)
            .step_by(*n_classes)
            .copied()
            .collect(),
    }
}

fn source_input(s: &FeatureSource) -> usize {
    match s {
        FeatureSource::Numeric { input }
        | FeatureSource::Categorical { input }
        | FeatureSource::DatePart { input, .. } => *input,
    }
}

/// The model's input columns, their kinds, and each feature's column.
fn columns_of(subject: Subject<'_>) -> (Vec<String>, Vec<ColumnKind>, Vec<usize>) {
    match subject {
        Subject::Kiln(m) => {
            let columns = m.inputs().iter().map(|c| c.name.clone()).collect();
            let kinds = m
                .inputs()
                .iter()
                .map(|c| {
                    if c.categories.is_some() {
                        ColumnKind::Categorical
                    } else {
                        ColumnKind::Numeric
                    }
                })
                .collect();
            let groups = m
                .preprocessor
                .features
                .iter()
                .map(|(_, s)| source_input(s))
                .collect();
            (columns, kinds, groups)
        }
        Subject::Imported(m) => {
            let columns: Vec<String> = m.inputs().iter().map(|c| c.name.clone()).collect();
            let n = columns.len();
            (columns, vec![ColumnKind::Numeric; n], (0..n).collect())
        }
    }
}

/// Which feature each encoded column of a linear model belongs to.
fn encoded_owner(encoder: &DenseEncoder) -> Vec<usize> {
    let mut owner = Vec::with_capacity(encoder.width());
    for (j, e) in encoder.features.iter().enumerate() {
        owner.extend(std::iter::repeat_n(j, e.width()));
    }
    owner
}

/// A table in `subject`'s form. Columns are found by name; for an imported
/// model, the table's columns named like the model's inputs, in its order.
pub fn data_of(subject: Subject<'_>, batches: &[RecordBatch]) -> Result<Data, ExplainError> {
    match subject {
        Subject::Kiln(m) => Ok(Data::Features(m.preprocessor.transform(batches)?.0)),
        Subject::Imported(m) => {
            let batches = preprocess::canonicalize(batches)?;
            let width = m.inputs().len();
            let mut x = Vec::new();
            for b in &batches {
                let schema = b.schema();
                let mut arrays = Vec::with_capacity(width);
                let mut fields = Vec::with_capacity(width);
                for input in m.inputs() {
                    let Some((i, f)) = schema.column_with_name(&input.name) else {
                        return Err(ExplainError::Invalid(format!(
                            "the table has no column `{}`, which the model reads (its inputs: {})",
                            input.name,
                            m.inputs()
                                .iter()
                                .map(|c| format!("`{}`", c.name))
                                .collect::<Vec<_>>()
                                .join(", ")
                        )));
                    };
                    arrays.push(b.column(i).clone());
                    fields.push(f.clone());
                }
                let schema = std::sync::Arc::new(arrow_schema::Schema::new(fields));
                let batch = RecordBatch::try_new(schema, arrays).map_err(|e| {
                    ExplainError::Invalid(format!("the table's columns do not line up: {e}"))
                })?;
                x.extend(m.dense(&batch)?);
            }
            Ok(Data::Dense { x, width })
        }
    }
}

/// `n` rows of `0..total`, evenly spread (all of them when `n >= total`).
pub fn spread(total: usize, n: usize) -> Vec<usize> {
    if n >= total {
        return (0..total).collect();
    }
    (0..n).map(|i| i * total / n).collect()
}
