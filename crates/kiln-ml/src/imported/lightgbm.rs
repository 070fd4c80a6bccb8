//! LightGBM text models (`booster.save_model('m.txt')`), scored as
//! LightGBM's `Tree::Predict` and its objectives' `ConvertOutput` do: in
//! f64, trees summed in file order.

use super::forest::{self, CATEGORICAL, DEFAULT_LEFT, Forest, Node, Output, Rules, Spec};
use super::{Loaded, numbered_classes};
use crate::foreign::{ForeignError, ModelFormat};
use crate::task::Task;

/// LightGBM's missing types (bits 2–3 of `decision_type`; 0 is None).
const MISSING_ZERO: u8 = 1;
const MISSING_NAN: u8 = 2;

/// Within this of zero a value is "zero" (LightGBM's `kZeroThreshold`, a float).
const ZERO_THRESHOLD: f64 = 1e-35_f32 as f64;

/// How raw scores become predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transform {
    Identity,
    /// `reg_sqrt`: the model learned the square root; predictions are `sign(s)·s²`.
    Square,
    Exp,
    Sigmoid(f64),
    Softmax,
    /// `multiclassova`: a sigmoid per class, not normalised.
    SigmoidEach(f64),
}

#[derive(Debug)]
pub(super) struct Booster {
    forest: Forest,
    /// Trees per iteration: one per class for multiclass models.
    groups: usize,
    transform: Transform,
    /// `average_output` (random forest mode): raw scores are divided by the
    /// number of iterations.
    divide_by: Option<f64>,
}

/// LightGBM's split decisions (`NumericalDecision`, `CategoricalDecision`).
struct Lgbm;

impl Rules for Lgbm {
    type X = f64;

    #[inline]
    fn goes_left(node: &Node, x: f64, bits: &[u32]) -> bool {
        if node.flags & CATEGORICAL != 0 {
            if x.is_nan() {
                return false;
            }
            // C++'s `static_cast<int>`: truncation; Rust saturates where C++
            // is undefined, and both then miss every bitset.
            let c = x as i32;
            return c >= 0 && forest::in_bitset(node, bits, c as u32);
        }
        let missing = node.kind;
        let x = if x.is_nan() && missing != MISSING_NAN {
            0.0
        } else {
            x
        };
        if (missing == MISSING_ZERO && (-ZERO_THRESHOLD..=ZERO_THRESHOLD).contains(&x))
            || (missing == MISSING_NAN && x.is_nan())
        {
            return node.flags & DEFAULT_LEFT != 0;
        }
        x <= node.threshold
    }
}

impl Booster {
    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// The output (class) tree `tree` adds to.
    pub fn group(&self, tree: usize) -> usize {
        tree % self.groups
    }

    pub fn groups(&self) -> usize {
        self.groups
    }

    /// What raw scores are multiplied by (`average_output`: 1 / iterations).
    pub fn scale(&self) -> f64 {
        self.divide_by.map_or(1.0, |d| 1.0 / d)
    }

    /// What a raw score is, in words.
    pub fn raw_name(&self) -> &'static str {
        match self.transform {
            Transform::Identity => "raw score (the prediction)",
            Transform::Square => "raw score (the square root of the prediction)",
            Transform::Exp => "raw score (the log of the prediction)",
            Transform::Sigmoid(_) | Transform::SigmoidEach(_) => "raw score (log-odds)",
            Transform::Softmax => "raw score (the class's softmax input)",
        }
    }

    /// Whether `x` goes to the left child of node `node`.
    #[inline]
    pub fn goes_left(&self, node: &Node, x: f64) -> bool {
        Lgbm::goes_left(node, x, &self.forest.bits)
    }

    /// Scores rows of `width` values into `out` (one value per row, or one
    /// per class).
    pub fn predict(&self, x: &[f64], width: usize, out: &mut [f64]) {
        let groups = self.groups;
        out.fill(0.0);
        self.forest
            .for_each_leaf::<Lgbm>(x, width, |row, tree, leaf| {
                out[row * groups + tree % groups] += self.forest.outputs[leaf.left as usize].value;
            });
        for out in out.chunks_exact_mut(groups) {
            if let Some(d) = self.divide_by {
                out.iter_mut().for_each(|s| *s /= d);
            }
            match self.transform {
                Transform::Identity => {}
                Transform::Square => out.iter_mut().for_each(|s| *s = s.signum() * *s * *s),
                Transform::Exp => out.iter_mut().for_each(|s| *s = s.exp()),
                Transform::Sigmoid(k) | Transform::SigmoidEach(k) => out
                    .iter_mut()
                    .for_each(|s| *s = 1.0 / (1.0 + (-k * *s).exp())),
                Transform::Softmax => {
                    let max = out.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let mut sum = 0.0;
                    for s in out.iter_mut() {
                        *s = (*s - max).exp();
                        sum += *s;
                    }
                    out.iter_mut().for_each(|s| *s /= sum);
                }
            }
        }
    }
}

fn damaged(why: impl Into<String>) -> ForeignError {
    ForeignError::Lightgbm { why: why.into() }
}

fn unsupported(why: impl Into<String>) -> ForeignError {
    ForeignError::Unsupported {
        format: ModelFormat::Lightgbm,
        why: why.into(),
    }
}

/// The transform and task of an `objective=` line.
fn objective(line: Option<&str>) -> Result<(Transform, Task), ForeignError> {
    let Some(line) = line else {
        return Err(unsupported(
            "it records no objective (a custom objective?), so kiln cannot tell how to turn its scores into predictions",
        ));
    };
    let mut words = line.split_whitespace();
    let name = words.next().unwrap_or_default();
    let params: Vec<&str> = words.collect();
    let sigmoid = || -> Result<f64, ForeignError> {
        match params.iter().find_map(|p| p.strip_prefix("sigmoid:")) {
            None => Ok(1.0),
            Some(v) => v
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| damaged(format!("`objective={line}` has a bad sigmoid"))),
        }
    };
    Ok(match name {
        "binary" => (Transform::Sigmoid(sigmoid()?), Task::Binary),
        "multiclass" | "softmax" => (Transform::Softmax, Task::Multiclass),
        "multiclassova" | "multiclass_ova" | "ova" | "ovr" => {
            (Transform::SigmoidEach(sigmoid()?), Task::Multiclass)
        }
        "regression"
        | "regression_l2"
        | "l2"
        | "mean_squared_error"
        | "mse"
        | "rmse"
        | "root_mean_squared_error"
        | "regression_l1"
        | "l1"
        | "mean_absolute_error"
        | "mae"
        | "huber"
        | "fair"
        | "quantile"
        | "mape"
        | "mean_absolute_percentage_error" => {
            let square = params.contains(&"sqrt");
            (
                if square {
                    Transform::Square
                } else {
                    Transform::Identity
                },
                Task::Regression,
            )
        }
        "poisson" | "gamma" | "tweedie" => (Transform::Exp, Task::Regression),
        other => {
            return Err(unsupported(format!(
                "its objective `{other}` is not one kiln scores (binary, multiclass, multiclassova and the regression objectives are)"
            )));
        }
    })
}

fn numbers<T: std::str::FromStr>(key: &str, value: &str) -> Result<Vec<T>, ForeignError> {
    value
        .split_whitespace()
        .map(|v| {
            v.parse::<T>()
                .map_err(|_| damaged(format!("`{key}=` holds `{v}`, which is not a number")))
        })
        .collect()
}

/// Reads and compiles a LightGBM text model.
pub(super) fn load(bytes: &[u8]) -> Result<Loaded<Booster>, ForeignError> {
    let text = std::str::from_utf8(bytes).map_err(|_| damaged("it is not valid UTF-8 text"))?;
    let mut lines = text.lines().map(|l| l.trim_end_matches('\r'));
    let mut header: Vec<(&str, &str)> = Vec::new();
    let mut average_output = false;
    // The header, up to the first tree.
    let mut in_tree = false;
    let mut ended = false;
    for line in lines.by_ref() {
        if line.starts_with("Tree=") {
            in_tree = true;
            break;
        }
        if line == "end of trees" {
            ended = true;
            break;
        }
        if line.trim() == "average_output" {
            average_output = true;
        } else if let Some((k, v)) = line.split_once('=') {
            header.push((k.trim(), v.trim()));
        }
    }
    let get = |key: &str| header.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let names: Vec<String> = get("feature_names")
        .ok_or_else(|| damaged("it has no `feature_names=` line"))?
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    let (transform, task) = objective(get("objective"))?;
    let num_class: usize = match get("num_class") {
        None => 1,
        Some(v) => v
            .parse()
            .map_err(|_| damaged(format!("`num_class={v}` is not a number")))?,
    };
    let groups: usize = match get("num_tree_per_iteration") {
        None => num_class,
        Some(v) => v
            .parse()
            .map_err(|_| damaged(format!("`num_tree_per_iteration={v}` is not a number")))?,
    };
    let classes = match task {
        Task::Binary => {
            if groups != 1 {
                return Err(damaged(format!(
                    "a binary model has {groups} trees per iteration"
                )));
            }
            numbered_classes(2)
        }
        Task::Multiclass => {
            if num_class < 2 || groups != num_class {
                return Err(damaged(format!(
                    "a multiclass model has `num_class={num_class}` and {groups} trees per iteration"
                )));
            }
            numbered_classes(num_class)
        }
        Task::Regression => {
            if groups != 1 {
                return Err(damaged(format!(
                    "a regression model has {groups} trees per iteration"
                )));
            }
            Vec::new()
        }
    };

    // The trees: `key=value` blocks after each `Tree=` line.
    let mut forest = Forest::default();
    let mut block: Vec<(&str, &str)> = Vec::new();
    for line in lines {
        if ended {
            break;
        }
        if line.starts_with("Tree=") || line == "end of trees" {
            if in_tree {
                let index = forest.roots.len();
                add_tree(&mut forest, &block, names.len(), index)?;
            }
            block.clear();
            in_tree = line.starts_with("Tree=");
            ended = line == "end of trees";
        } else if in_tree && let Some((k, v)) = line.split_once('=') {
            block.push((k.trim(), v.trim()));
        }
    }
    if !ended {
        return Err(damaged(
            "it ends before the `end of trees` line (the file is truncated)",
        ));
    }
    if forest.roots.is_empty() {
        return Err(damaged("it holds no trees"));
    }
    let divide_by = average_output.then(|| (forest.roots.len() / groups).max(1) as f64);
    Ok(Loaded {
        scorer: Booster {
            forest,
            groups,
            transform,
            divide_by,
        },
        names,
        task,
        classes,
    })
}

/// Compiles one `Tree=` block.
fn add_tree(
    forest: &mut Forest,
    block: &[(&str, &str)],
    n_features: usize,
    index: usize,
) -> Result<(), ForeignError> {
    let get = |key: &str| block.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);
    let need =
        |key: &str| get(key).ok_or_else(|| damaged(format!("tree {index} has no `{key}=` line")));
    if get("is_linear").is_some_and(|v| v != "0") {
        return Err(unsupported(format!(
            "tree {index} is a linear tree (`linear_tree=true`), which kiln does not score"
        )));
    }
    let leaves: usize = need("num_leaves")?
        .parse()
        .map_err(|_| damaged(format!("tree {index} has a bad `num_leaves=`")))?;
    let leaf_value: Vec<f64> = numbers("leaf_value", need("leaf_value")?)?;
    if leaves == 0 || leaf_value.len() != leaves {
        return Err(damaged(format!(
            "tree {index} announces {leaves} leaves but lists {} values",
            leaf_value.len()
        )));
    }
    // A tree's class is its position modulo the trees per iteration
    // (`Booster::predict`), so outputs carry no target.
    // Row counts, for path-dependent TreeSHAP: absent from some writers'
    // files, and then the model is explained against a background sample.
    let leaf_count: Option<Vec<f64>> = get("leaf_count")
        .and_then(|v| numbers("leaf_count", v).ok())
        .filter(|c: &Vec<f64>| c.len() == leaves);
    if leaves == 1 {
        let placed = forest
            .add_tree(1, 0, |_| {
                Ok(Spec::Leaf(vec![Output {
                    target: 0,
                    value: leaf_value[0],
                }]))
            })
            .map_err(damaged)?;
        let w = leaf_count.as_ref().map_or(f64::NAN, |c| c[0]);
        forest.set_weights(&placed, |_| w);
        return Ok(());
    }
    let splits = leaves - 1;
    let feature: Vec<u32> = numbers("split_feature", need("split_feature")?)?;
    let threshold: Vec<f64> = numbers("threshold", need("threshold")?)?;
    let decision: Vec<u8> = numbers("decision_type", need("decision_type")?)?;
    let left: Vec<i64> = numbers("left_child", need("left_child")?)?;
    let right: Vec<i64> = numbers("right_child", need("right_child")?)?;
    for (key, len) in [
        ("split_feature", feature.len()),
        ("threshold", threshold.len()),
        ("decision_type", decision.len()),
        ("left_child", left.len()),
        ("right_child", right.len()),
    ] {
        if len != splits {
            return Err(damaged(format!(
                "tree {index} has {leaves} leaves but {len} entries in `{key}=`"
            )));
        }
    }
    let num_cat: usize = get("num_cat").map_or(Ok(0), |v| {
        v.parse()
            .map_err(|_| damaged(format!("tree {index} has a bad `num_cat=`")))
    })?;
    let (boundaries, cat_bits): (Vec<usize>, Vec<u32>) = if num_cat > 0 {
        let b: Vec<usize> = numbers("cat_boundaries", need("cat_boundaries")?)?;
        let t: Vec<u32> = numbers("cat_threshold", need("cat_threshold")?)?;
        if b.len() != num_cat + 1 || b.windows(2).any(|w| w[0] > w[1]) || b[num_cat] > t.len() {
            return Err(damaged(format!(
                "tree {index}'s `cat_boundaries=` do not fit its `cat_threshold=`"
            )));
        }
        (b, t)
    } else {
        (Vec::new(), Vec::new())
    };
    // File numbering: splits 0..splits, then leaf `l` as splits + l
    // (LightGBM writes a leaf child as `-(l + 1)`).
    let child = |c: i64| -> Result<usize, ForeignError> {
        let id = if c >= 0 {
            usize::try_from(c).ok().filter(|&c| c < splits)
        } else {
            usize::try_from(-(c + 1))
                .ok()
                .filter(|&l| l < leaves)
                .map(|l| splits + l)
        };
        id.ok_or_else(|| damaged(format!("tree {index} has a child `{c}` out of range")))
    };
    let internal_count: Option<Vec<f64>> = get("internal_count")
        .and_then(|v| numbers("internal_count", v).ok())
        .filter(|c: &Vec<f64>| c.len() == splits);
    let mut kids = Vec::with_capacity(splits);
    for i in 0..splits {
        kids.push((child(left[i])?, child(right[i])?));
    }
    let placed = forest
        .add_tree(splits + leaves, 0, |id| {
            if id >= splits {
                return Ok(Spec::Leaf(vec![Output {
                    target: 0,
                    value: leaf_value[id - splits],
                }]));
            }
            let f = feature[id];
            if f as usize >= n_features {
                return Err(format!(
                    "tree {index} splits on feature {f}, but the model has {n_features}"
                ));
            }
            let d = decision[id];
            let mut flags = 0;
            if d & 2 != 0 {
                flags |= DEFAULT_LEFT;
            }
            let mut bits = Vec::new();
            if d & 1 != 0 {
                flags |= CATEGORICAL;
                let t = threshold[id];
                let c = t as usize;
                if t < 0.0 || t.fract() != 0.0 || c >= num_cat {
                    return Err(format!(
                        "tree {index} has a categorical split on set {t}, but lists {num_cat}"
                    ));
                }
                bits = cat_bits[boundaries[c]..boundaries[c + 1]].to_vec();
            }
            let missing = (d >> 2) & 3;
            if missing > MISSING_NAN {
                return Err(format!("tree {index} has decision type {d}"));
            }
            Ok(Spec::Split {
                feature: f,
                threshold: threshold[id],
                kind: missing,
                flags,
                bits,
                left: kids[id].0,
                right: kids[id].1,
            })
        })
        .map_err(damaged)?;
    forest.set_weights(&placed, |id| {
        if id < splits {
            internal_count.as_ref().map_or(f64::NAN, |c| c[id])
        } else {
            leaf_count.as_ref().map_or(f64::NAN, |c| c[id - splits])
        }
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(kind: u8, flags: u8, threshold: f64) -> Node {
        Node {
            threshold,
            feature: 0,
            left: 0,
            right: 0,
            cat: 0,
            cat_words: 1,
            kind,
            flags,
        }
    }

    #[test]
    fn numerical_decision_example() {
        // Missing type None: NaN is zero.
        let none = node(0, 0, 0.5);
        assert!(Lgbm::goes_left(&none, f64::NAN, &[]));
        assert!(Lgbm::goes_left(&none, 0.5, &[]));
        assert!(!Lgbm::goes_left(&none, 0.6, &[]));
        let none = node(0, DEFAULT_LEFT, -1.0);
        assert!(!Lgbm::goes_left(&none, f64::NAN, &[]));
        // Missing type Zero: NaN and ±1e-35 take the default side.
        let zero = node(MISSING_ZERO, DEFAULT_LEFT, -5.0);
        assert!(Lgbm::goes_left(&zero, f64::NAN, &[]));
        assert!(Lgbm::goes_left(&zero, 1e-36, &[]));
        assert!(!Lgbm::goes_left(&zero, 1e-30, &[]));
        // Missing type NaN: only NaN takes the default side.
        let nan = node(MISSING_NAN, 0, 10.0);
        assert!(!Lgbm::goes_left(&nan, f64::NAN, &[]));
        assert!(Lgbm::goes_left(&nan, 0.0, &[]));
    }

    #[test]
    fn categorical_decision_example() {
        let cat = node(0, CATEGORICAL, 0.0);
        let bits = [0b1010];
        assert!(Lgbm::goes_left(&cat, 1.0, &bits));
        assert!(Lgbm::goes_left(&cat, 3.7, &bits));
        assert!(!Lgbm::goes_left(&cat, 2.0, &bits));
        assert!(!Lgbm::goes_left(&cat, f64::NAN, &bits));
        assert!(!Lgbm::goes_left(&cat, -1.0, &bits));
        assert!(!Lgbm::goes_left(&cat, 40.0, &bits));
        assert!(!Lgbm::goes_left(&cat, 1e20, &bits));
    }

    #[test]
    fn objectives_example() {
        for (line, transform, task) in [
            ("binary sigmoid:2", Transform::Sigmoid(2.0), Task::Binary),
            (
                "multiclass num_class:3",
                Transform::Softmax,
                Task::Multiclass,
            ),
            (
                "multiclassova num_class:3 sigmoid:1",
                Transform::SigmoidEach(1.0),
                Task::Multiclass,
            ),
            ("regression", Transform::Identity, Task::Regression),
            ("regression sqrt", Transform::Square, Task::Regression),
            ("huber alpha:0.9", Transform::Identity, Task::Regression),
            (
                "poisson max_delta_step:0.7",
                Transform::Exp,
                Task::Regression,
            ),
        ] {
            assert_eq!(objective(Some(line)).unwrap(), (transform, task), "{line}");
        }
        for line in ["lambdarank", "cross_entropy", "custom"] {
            let err = objective(Some(line)).unwrap_err();
            assert!(matches!(err, ForeignError::Unsupported { .. }), "{err:?}");
        }
        assert!(objective(None).is_err());
    }

    #[test]
    fn single_leaf_trees_and_average_output_example() {
        let text = "tree\nversion=v4\nnum_class=1\nnum_tree_per_iteration=1\nmax_feature_idx=0\nobjective=regression\naverage_output\nfeature_names=x\nfeature_infos=[0:1]\n\nTree=0\nnum_leaves=1\nnum_cat=0\nsplit_feature=\nthreshold=\ndecision_type=\nleft_child=\nright_child=\nleaf_value=3\nshrinkage=1\n\n\nTree=1\nnum_leaves=2\nnum_cat=0\nsplit_feature=0\nthreshold=0.5\ndecision_type=2\nleft_child=-1\nright_child=-2\nleaf_value=1 5\nshrinkage=1\n\n\nend of trees\n";
        let loaded = load(text.as_bytes()).unwrap();
        assert_eq!(loaded.names, ["x"]);
        let mut out = [0.0; 2];
        loaded.scorer.predict(&[0.0, 1.0], 1, &mut out);
        assert_eq!(out, [2.0, 4.0]);
    }
}
