//! Histogram gradient-boosted decision trees (LightGBM's algorithm family):
//! binned features, leaf-wise growth, native missing values and native
//! categorical splits, row and column subsampling, L1/L2 regularisation and
//! early stopping on a validation set.
//!
//! Training is deterministic: the same data, parameters and seed give the
//! same trees whatever the number of threads.

mod bins;
mod grow;
pub mod objective;
mod predict;
pub mod tree;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::frame::{FeatureKind, Features};
use crate::rng::Rng;
use crate::task::Predictions;
pub use objective::Objective;
pub use tree::{Leaf, Node, SplitRule, Tree};

use bins::{BinOptions, Binned};
use grow::{GrowParams, Grower};

/// How trees are combined.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Boosting {
    /// Gradient boosting: each tree fits the gradients left by the others.
    #[default]
    Gbdt,
    /// Random forest (LightGBM's `rf`): every tree fits the starting
    /// gradients on its own row and feature sample; the model averages them.
    /// Needs `row_subsample < 1` or `col_subsample < 1`.
    RandomForest,
}

/// Training settings. The defaults are LightGBM's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct GbdtParams {
    pub objective: Objective,
    pub boosting: Boosting,
    /// One random threshold per feature and leaf (extremely randomised trees).
    pub extra_trees: bool,
    /// Boosting rounds (trees per output).
    pub n_trees: usize,
    pub learning_rate: f64,
    pub max_leaves: usize,
    /// 0 = unlimited.
    pub max_depth: usize,
    pub min_data_in_leaf: usize,
    pub min_sum_hessian: f64,
    pub lambda_l1: f64,
    pub lambda_l2: f64,
    pub min_gain: f64,
    /// Fraction of rows drawn (without replacement) for each round.
    pub row_subsample: f64,
    /// Fraction of features drawn for each tree.
    pub col_subsample: f64,
    /// Most value bins per numeric feature (at most 255).
    pub max_bin: usize,
    /// Stop when the validation loss has not improved for this many rounds.
    pub early_stopping_rounds: Option<usize>,
    pub max_cat_to_onehot: usize,
    pub max_cat_threshold: usize,
    pub cat_smooth: f64,
    pub cat_l2: f64,
    pub min_data_per_group: usize,
    pub seed: u64,
}

impl Default for GbdtParams {
    fn default() -> Self {
        GbdtParams {
            objective: Objective::L2,
            boosting: Boosting::Gbdt,
            extra_trees: false,
            n_trees: 100,
            learning_rate: 0.1,
            max_leaves: 31,
            max_depth: 0,
            min_data_in_leaf: 20,
            min_sum_hessian: 1e-3,
            lambda_l1: 0.0,
            lambda_l2: 0.0,
            min_gain: 0.0,
            row_subsample: 1.0,
            col_subsample: 1.0,
            max_bin: 255,
            early_stopping_rounds: None,
            max_cat_to_onehot: 4,
            max_cat_threshold: 32,
            cat_smooth: 10.0,
            cat_l2: 10.0,
            min_data_per_group: 100,
            seed: 0,
        }
    }
}

/// A trained ensemble.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Gbdt {
    pub objective: Objective,
    /// Starting raw score per output.
    pub init_scores: Vec<f64>,
    /// Trees round by round: tree `round * n_outputs + k` adds to output `k`.
    pub trees: Vec<Tree>,
    pub feature_kinds: Vec<FeatureKind>,
    /// Validation loss after each round, when a validation set was given.
    pub valid_loss: Vec<f64>,
}

/// Why boosting could not run.
#[derive(Debug, thiserror::Error)]
pub enum GbdtError {
    #[error("the training table has no rows")]
    NoRows,
    #[error("{what} has {got} labels for {expected} rows")]
    LabelCount {
        what: &'static str,
        got: usize,
        expected: usize,
    },
    #[error("label {value} at row {row} is not valid for the {objective} objective: {why}")]
    BadLabel {
        row: usize,
        value: f64,
        objective: &'static str,
        why: &'static str,
    },
    #[error("invalid parameter `{name}`: {why}")]
    Param { name: &'static str, why: String },
}

impl GbdtParams {
    fn validate(&self) -> Result<(), GbdtError> {
        let bad = |name, why: &str| {
            Err(GbdtError::Param {
                name,
                why: why.into(),
            })
        };
        if self.n_trees == 0 {
            return bad("n_trees", "must be at least 1");
        }
        if !(self.learning_rate > 0.0 && self.learning_rate.is_finite()) {
            return bad("learning_rate", "must be a positive number");
        }
        if self.max_leaves < 2 {
            return bad("max_leaves", "must be at least 2");
        }
        if !(self.row_subsample > 0.0 && self.row_subsample <= 1.0) {
            return bad("row_subsample", "must be in (0, 1]");
        }
        if !(self.col_subsample > 0.0 && self.col_subsample <= 1.0) {
            return bad("col_subsample", "must be in (0, 1]");
        }
        if !(2..=255).contains(&self.max_bin) {
            return bad("max_bin", "must be between 2 and 255");
        }
        if self.boosting == Boosting::RandomForest
            && self.row_subsample >= 1.0
            && self.col_subsample >= 1.0
        {
            return bad(
                "boosting",
                "a random forest needs row_subsample or col_subsample below 1",
            );
        }
        if self.lambda_l1 < 0.0 || self.lambda_l2 < 0.0 {
            return bad("lambda_l1/lambda_l2", "must not be negative");
        }
        match self.objective {
            Objective::Multiclass { n_classes } if n_classes < 2 => {
                bad("objective", "multiclass needs at least 2 classes")
            }
            Objective::Quantile { alpha } if !(alpha > 0.0 && alpha < 1.0) => {
                bad("objective", "quantile alpha must be in (0, 1)")
            }
            Objective::Huber { delta } if delta <= 0.0 => {
                bad("objective", "huber delta must be positive")
            }
            _ => Ok(()),
        }
    }
}

fn check_labels(objective: Objective, y: &[f64]) -> Result<(), GbdtError> {
    let name = objective.name();
    for (row, &v) in y.iter().enumerate() {
        let why = if !v.is_finite() {
            Some("labels must be finite numbers")
        } else {
            match objective {
                Objective::Binary if v != 0.0 && v != 1.0 => Some("binary labels are 0 or 1"),
                Objective::Multiclass { n_classes }
                    if v < 0.0 || v.fract() != 0.0 || v as usize >= n_classes =>
                {
                    Some("multiclass labels are class indices")
                }
                Objective::Poisson if v < 0.0 => Some("Poisson labels are counts (>= 0)"),
                _ => None,
            }
        };
        if let Some(why) = why {
            return Err(GbdtError::BadLabel {
                row,
                value: v,
                objective: name,
                why,
            });
        }
    }
    Ok(())
}

impl Gbdt {
    /// Trains on `features` with labels `y` (class indices as numbers for
    /// classifiers), stopping early on `valid` when given.
    pub fn fit(
        features: &Features,
        y: &[f64],
        params: &GbdtParams,
        valid: Option<(&Features, &[f64])>,
    ) -> Result<Gbdt, GbdtError> {
        Self::fit_until(features, y, params, valid, &|_| false)
    }

    /// [`Gbdt::fit`], asking `stop(round)` before each round after the
    /// first whether to stop (a deadline); the rounds built so far are kept.
    pub fn fit_until(
        features: &Features,
        y: &[f64],
        params: &GbdtParams,
        valid: Option<(&Features, &[f64])>,
        stop: &dyn Fn(usize) -> bool,
    ) -> Result<Gbdt, GbdtError> {
        params.validate()?;
        let n = features.n_rows();
        if n == 0 {
            return Err(GbdtError::NoRows);
        }
        if y.len() != n {
            return Err(GbdtError::LabelCount {
                what: "the training set",
                got: y.len(),
                expected: n,
            });
        }
        check_labels(params.objective, y)?;
        if let Some((vf, vy)) = valid {
            if vy.len() != vf.n_rows() {
                return Err(GbdtError::LabelCount {
                    what: "the validation set",
                    got: vy.len(),
                    expected: vf.n_rows(),
                });
            }
            check_labels(params.objective, vy)?;
        }
        let objective = params.objective;
        let k_out = objective.n_outputs();
        let binned = Binned::build(
            features,
            BinOptions {
                max_bin: params.max_bin,
                sample_rows: 200_000,
                min_category_rows: 1,
                seed: params.seed,
            },
        );
        let valid_bins = valid.map(|(vf, _)| Binned::apply_maps(&binned.maps, vf));
        let init_scores = objective.init_scores(y);
        let mut scores: Vec<f64> = init_scores
            .iter()
            .copied()
            .cycle()
            .take(n * k_out)
            .collect();
        let mut valid_scores: Vec<f64> = valid.map_or_else(Vec::new, |(vf, _)| {
            init_scores
                .iter()
                .copied()
                .cycle()
                .take(vf.n_rows() * k_out)
                .collect()
        });
        let mut gh = vec![[0f32; 2]; n * k_out];
        let grow_params = GrowParams {
            max_leaves: params.max_leaves,
            max_depth: params.max_depth,
            min_data_in_leaf: params.min_data_in_leaf,
            min_sum_hessian: params.min_sum_hessian,
            lambda_l1: params.lambda_l1,
            lambda_l2: params.lambda_l2,
            min_gain: params.min_gain,
            max_cat_to_onehot: params.max_cat_to_onehot,
            max_cat_threshold: params.max_cat_threshold,
            cat_smooth: params.cat_smooth,
            cat_l2: params.cat_l2,
            min_data_per_group: params.min_data_per_group,
            learning_rate: match params.boosting {
                Boosting::Gbdt => params.learning_rate,
                Boosting::RandomForest => 1.0 / params.n_trees as f64,
            },
            extra_trees_seed: params.extra_trees.then_some(params.seed ^ 0xE7),
        };
        let forest = params.boosting == Boosting::RandomForest;
        let mut grower = Grower::new(&binned, grow_params);
        let nf = features.n_features();
        let mut trees = Vec::with_capacity(params.n_trees * k_out);
        let mut valid_loss = Vec::new();
        let mut best = (f64::INFINITY, 0usize);
        let mut bag: Vec<u32> = Vec::new();
        for round in 0..params.n_trees {
            if round > 0 && stop(round) {
                break;
            }
            if !forest || round == 0 {
                objective.gradients(y, &scores, &mut gh);
            }
            let bagged = params.row_subsample < 1.0;
            if bagged {
                let mut rng = Rng::derive(params.seed, 2 * round as u64);
                bag.clear();
                bag.extend((0..n as u32).filter(|_| rng.next_f64() < params.row_subsample));
                if bag.is_empty() {
                    bag.push(rng.below(n) as u32);
                }
            }
            let mut use_feature = vec![true; nf];
            if params.col_subsample < 1.0 {
                let mut rng = Rng::derive(params.seed, 2 * round as u64 + 1);
                let keep = ((nf as f64 * params.col_subsample).round() as usize).clamp(1, nf);
                let mut order: Vec<usize> = (0..nf).collect();
                rng.shuffle(&mut order);
                use_feature.fill(false);
                for &f in &order[..keep] {
                    use_feature[f] = true;
                }
            }
            for k in 0..k_out {
                let gh_k = &gh[k * n..(k + 1) * n];
                let renew_alpha = objective.renew_quantile();
                let scores_ref = &scores;
                let renew = |rows: &[u32]| {
                    renew_alpha.map(|alpha| {
                        let mut r: Vec<f64> = rows
                            .iter()
                            .map(|&i| y[i as usize] - scores_ref[i as usize * k_out + k])
                            .collect();
                        objective::quantile(&mut r, alpha)
                    })
                };
                let grown =
                    grower.grow(gh_k, bagged.then_some(bag.as_slice()), &use_feature, renew);
                if bagged {
                    // Out-of-bag rows were not partitioned: route every row.
                    let g = &grown;
                    scores
                        .par_chunks_mut(4096 * k_out)
                        .enumerate()
                        .for_each(|(ci, chunk)| {
                            for (j, row) in chunk.chunks_mut(k_out).enumerate() {
                                let leaf = g.leaf_of_binned(&binned.bins, ci * 4096 + j);
                                row[k] += g.tree.leaves[leaf].value;
                            }
                        });
                } else {
                    for (leaf, range) in grown.tree.leaves.iter().zip(&grown.leaf_ranges) {
                        for &r in grower.leaf_rows(range.clone()) {
                            scores[r as usize * k_out + k] += leaf.value;
                        }
                    }
                }
                if let Some(vb) = &valid_bins {
                    let g = &grown;
                    valid_scores
                        .par_chunks_mut(4096 * k_out)
                        .enumerate()
                        .for_each(|(ci, chunk)| {
                            for (j, row) in chunk.chunks_mut(k_out).enumerate() {
                                let leaf = g.leaf_of_binned(vb, ci * 4096 + j);
                                row[k] += g.tree.leaves[leaf].value;
                            }
                        });
                }
                trees.push(grown.tree);
            }
            if let Some((_, vy)) = valid {
                let loss = objective.loss(vy, &valid_scores);
                valid_loss.push(loss);
                if loss < best.0 {
                    best = (loss, round + 1);
                }
                if let Some(patience) = params.early_stopping_rounds
                    && round + 1 - best.1 >= patience
                {
                    break;
                }
            }
        }
        if valid.is_some() && params.early_stopping_rounds.is_some() && !forest {
            trees.truncate(best.1 * k_out);
        }
        let built = trees.len() / k_out;
        if forest && built < params.n_trees {
            // Stopped early: leaves were scaled for the full forest.
            let f = params.n_trees as f64 / built as f64;
            for t in &mut trees {
                t.leaves.iter_mut().for_each(|l| l.value *= f);
            }
        }
        Ok(Gbdt {
            objective,
            init_scores,
            trees,
            feature_kinds: features.kinds(),
            valid_loss,
        })
    }

    /// Boosting rounds kept.
    pub fn n_rounds(&self) -> usize {
        self.trees.len() / self.objective.n_outputs()
    }

    /// Raw scores, row-major `n × n_outputs`.
    pub fn predict_raw(&self, features: &Features) -> Vec<f64> {
        let k_out = self.objective.n_outputs();
        let mut out: Vec<f64> = self
            .init_scores
            .iter()
            .copied()
            .cycle()
            .take(features.n_rows() * k_out)
            .collect();
        predict::Compiled::new(&self.trees).predict_into(features, k_out, &mut out);
        out
    }

    /// Predictions: probabilities for classifiers, values for regression.
    pub fn predict(&self, features: &Features) -> Predictions {
        let mut s = self.predict_raw(features);
        self.objective.transform(&mut s);
        match self.objective {
            Objective::Binary => Predictions::Binary(s),
            Objective::Multiclass { n_classes } => Predictions::Multiclass {
                probs: s,
                n_classes,
            },
            _ => Predictions::Regression(s),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{Column, MISSING_CODE};

    /// y = 2·x0 − x1² + 3·[c = 2] with NaNs in x0 (which mean +1) and a
    /// few missing categories.
    fn synthetic(n: usize, seed: u64) -> (Features, Vec<f64>) {
        let mut rng = Rng::new(seed);
        let mut x0 = Vec::new();
        let mut x1 = Vec::new();
        let mut c = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a = rng.next_f64() * 4.0 - 2.0;
            let b = rng.next_f64() * 2.0 - 1.0;
            let cat = rng.below(6) as u32;
            let missing = rng.next_f64() < 0.1;
            x0.push(if missing { f64::NAN } else { a });
            x1.push(b);
            c.push(if rng.next_f64() < 0.05 {
                MISSING_CODE
            } else {
                cat
            });
            let effect_a = if missing { 1.0 } else { 2.0 * a };
            y.push(
                effect_a - b * b
                    + if cat == 2 && c.last() != Some(&MISSING_CODE) {
                        3.0
                    } else {
                        0.0
                    },
            );
        }
        let f = Features {
            names: vec!["x0".into(), "x1".into(), "c".into()],
            columns: vec![
                Column::Numeric(x0),
                Column::Numeric(x1),
                Column::Categorical {
                    codes: c,
                    n_categories: 6,
                },
            ],
        };
        (f, y)
    }

    fn rmse(a: &[f64], b: &[f64]) -> f64 {
        (a.iter().zip(b).map(|(x, y)| (x - y).powi(2)).sum::<f64>() / a.len() as f64).sqrt()
    }

    #[test]
    fn regression_learns_numeric_missing_and_categorical_effects() {
        let (x, y) = synthetic(5000, 1);
        let (xt, yt) = synthetic(2000, 2);
        let params = GbdtParams {
            n_trees: 200,
            max_cat_to_onehot: 2,
            min_data_per_group: 20,
            ..GbdtParams::default()
        };
        let m = Gbdt::fit(&x, &y, &params, None).unwrap();
        let Predictions::Regression(p) = m.predict(&xt) else {
            panic!()
        };
        let baseline = {
            let mean = y.iter().sum::<f64>() / y.len() as f64;
            rmse(&vec![mean; yt.len()], &yt)
        };
        let e = rmse(&p, &yt);
        assert!(e < 0.15 * baseline, "rmse {e} vs baseline {baseline}");
        let cat_splits = m
            .trees
            .iter()
            .flat_map(|t| &t.nodes)
            .filter(|n| matches!(n.rule, SplitRule::Categorical { .. }))
            .count();
        assert!(cat_splits > 0, "no categorical splits");
    }

    #[test]
    fn binary_classifier_separates_classes_and_early_stopping_truncates() {
        let (x, y) = synthetic(4000, 3);
        let labels: Vec<f64> = y.iter().map(|&v| f64::from(u8::from(v > 0.5))).collect();
        let (xv, yv) = synthetic(1000, 4);
        let valid_labels: Vec<f64> = yv.iter().map(|&v| f64::from(u8::from(v > 0.5))).collect();
        let params = GbdtParams {
            objective: Objective::Binary,
            n_trees: 500,
            learning_rate: 0.3,
            early_stopping_rounds: Some(10),
            ..GbdtParams::default()
        };
        let m = Gbdt::fit(&x, &labels, &params, Some((&xv, &valid_labels))).unwrap();
        assert!(m.n_rounds() < 500, "early stopping never triggered");
        let best = m.valid_loss.iter().copied().fold(f64::INFINITY, f64::min);
        assert!(best < 0.2, "validation logloss {best}");
        let Predictions::Binary(p) = m.predict(&xv) else {
            panic!()
        };
        let correct = p
            .iter()
            .zip(&valid_labels)
            .filter(|(p, y)| (**p >= 0.5) == (**y == 1.0))
            .count();
        assert!(correct as f64 / p.len() as f64 > 0.93, "{correct} correct");
    }

    #[test]
    fn multiclass_probabilities_sum_to_one_and_predict_the_right_class() {
        let (x, y) = synthetic(3000, 5);
        let classes: Vec<f64> = y
            .iter()
            .map(|&v| {
                if v < -0.5 {
                    0.0
                } else if v < 1.5 {
                    1.0
                } else {
                    2.0
                }
            })
            .collect();
        let params = GbdtParams {
            objective: Objective::Multiclass { n_classes: 3 },
            n_trees: 60,
            ..GbdtParams::default()
        };
        let m = Gbdt::fit(&x, &classes, &params, None).unwrap();
        assert_eq!(m.trees.len(), 180);
        let pred = m.predict(&x);
        let Predictions::Multiclass { probs, .. } = &pred else {
            panic!()
        };
        for row in probs.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-9);
        }
        let hits = pred
            .classes()
            .unwrap()
            .iter()
            .zip(&classes)
            .filter(|(p, y)| **p as f64 == **y)
            .count();
        assert!(hits as f64 / classes.len() as f64 > 0.9, "{hits} hits");
    }

    #[test]
    fn poisson_and_quantile_objectives_fit_their_statistics() {
        let (x, y) = synthetic(4000, 6);
        let counts: Vec<f64> = y.iter().map(|v| (v + 3.0).max(0.0).round()).collect();
        let params = GbdtParams {
            objective: Objective::Poisson,
            n_trees: 100,
            ..GbdtParams::default()
        };
        let m = Gbdt::fit(&x, &counts, &params, None).unwrap();
        let Predictions::Regression(p) = m.predict(&x) else {
            panic!()
        };
        assert!(p.iter().all(|&v| v > 0.0));
        let mean_p = p.iter().sum::<f64>() / p.len() as f64;
        let mean_y = counts.iter().sum::<f64>() / counts.len() as f64;
        assert!(
            (mean_p - mean_y).abs() / mean_y < 0.02,
            "{mean_p} vs {mean_y}"
        );

        let params = GbdtParams {
            objective: Objective::Quantile { alpha: 0.9 },
            n_trees: 100,
            ..GbdtParams::default()
        };
        let m = Gbdt::fit(&x, &y, &params, None).unwrap();
        let Predictions::Regression(p) = m.predict(&x) else {
            panic!()
        };
        let below = p.iter().zip(&y).filter(|(p, y)| *y <= *p).count() as f64 / y.len() as f64;
        assert!(
            (below - 0.9).abs() < 0.04,
            "{below} of rows below the 0.9 quantile"
        );
    }

    #[test]
    fn random_forest_and_extra_trees_learn_and_average() {
        let (x, y) = synthetic(4000, 9);
        let (xt, yt) = synthetic(1000, 10);
        for extra_trees in [false, true] {
            let params = GbdtParams {
                boosting: Boosting::RandomForest,
                extra_trees,
                n_trees: 50,
                max_leaves: 64,
                min_data_in_leaf: 5,
                row_subsample: 0.632,
                ..GbdtParams::default()
            };
            let m = Gbdt::fit(&x, &y, &params, None).unwrap();
            let Predictions::Regression(p) = m.predict(&xt) else {
                panic!()
            };
            let mean = y.iter().sum::<f64>() / y.len() as f64;
            let baseline = rmse(&vec![mean; yt.len()], &yt);
            let e = rmse(&p, &yt);
            assert!(
                e < 0.3 * baseline,
                "extra_trees={extra_trees}: {e} vs {baseline}"
            );
            // Averaging: the prediction's mean stays near the label mean.
            let pm = p.iter().sum::<f64>() / p.len() as f64;
            assert!((pm - mean).abs() < 0.2, "{pm} vs {mean}");
        }
        let e = Gbdt::fit(
            &x,
            &y,
            &GbdtParams {
                boosting: Boosting::RandomForest,
                ..GbdtParams::default()
            },
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("subsample"), "{e}");
    }

    #[test]
    fn compiled_prediction_equals_walking_each_tree() {
        let (x, y) = synthetic(3000, 11);
        let params = GbdtParams {
            n_trees: 40,
            max_cat_to_onehot: 2,
            min_data_per_group: 20,
            ..GbdtParams::default()
        };
        let m = Gbdt::fit(&x, &y, &params, None).unwrap();
        let (xt, _) = synthetic(777, 12);
        let fast = m.predict_raw(&xt);
        for (r, &got) in fast.iter().enumerate() {
            let want =
                m.init_scores[0] + m.trees.iter().map(|t| t.predict_row(&xt, r)).sum::<f64>();
            assert!((got - want).abs() < 1e-9, "row {r}: {got} vs {want}");
        }
    }

    #[test]
    fn training_is_identical_across_runs_and_thread_counts() {
        let (x, y) = synthetic(3000, 7);
        let params = GbdtParams {
            n_trees: 30,
            row_subsample: 0.7,
            col_subsample: 0.67,
            seed: 42,
            ..GbdtParams::default()
        };
        let fit = |threads| {
            rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap()
                .install(|| Gbdt::fit(&x, &y, &params, None).unwrap())
        };
        let a = fit(1);
        let b = fit(2);
        let c = fit(2);
        assert_eq!(a, b);
        assert_eq!(b, c);
        let other = Gbdt::fit(
            &x,
            &y,
            &GbdtParams {
                seed: 43,
                ..params.clone()
            },
            None,
        )
        .unwrap();
        assert_ne!(a, other);
    }

    #[test]
    fn bad_labels_and_parameters_are_refused_with_the_row() {
        let (x, _) = synthetic(50, 8);
        let mut y = vec![0.0; 50];
        y[7] = 2.0;
        let params = GbdtParams {
            objective: Objective::Binary,
            ..GbdtParams::default()
        };
        let e = Gbdt::fit(&x, &y, &params, None).unwrap_err().to_string();
        assert!(e.contains("row 7"), "{e}");
        let e = Gbdt::fit(&x, &y[..10], &params, None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("10 labels for 50 rows"), "{e}");
        let e = Gbdt::fit(
            &x,
            &vec![0.0; 50],
            &GbdtParams {
                learning_rate: 0.0,
                ..params
            },
            None,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("learning_rate"), "{e}");
    }
}
