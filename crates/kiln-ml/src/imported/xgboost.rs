//! XGBoost JSON models (`booster.save_model('m.json')`), scored as
//! XGBoost's CPU predictor does: features as f32, `x < split` goes left,
//! missing values to the default child, margins summed in f32 starting
//! from the base margin, then the objective's transform in f32.

use serde_json::{Map, Value};

use super::forest::{self, CATEGORICAL, DEFAULT_LEFT, Forest, Node, Output, Rules, Spec};
use super::{Loaded, numbered_classes};
use crate::foreign::{ForeignError, ModelFormat};
use crate::task::Task;

/// Categories at or above this are invalid (XGBoost's `OutOfRangeCat`, 2^24).
const MAX_CATEGORY: f32 = 16_777_216.0;

/// How margins become predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Transform {
    Identity,
    Sigmoid,
    Exp,
    Softmax,
}

/// How a probability-space `base_score` becomes a margin (`ProbToMargin`).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Link {
    Identity,
    Logit,
    Log,
}

#[derive(Debug)]
pub(super) struct Booster {
    forest: Forest,
    /// The output group (class) of each tree.
    groups: Vec<u32>,
    /// The starting margin of each group.
    base: Vec<f32>,
    transform: Transform,
}

/// XGBoost's split decisions (`GetNextNode`, `common::Decision`).
struct Xgb;

impl Rules for Xgb {
    type X = f64;

    #[inline]
    fn goes_left(node: &Node, x: f64, bits: &[u32]) -> bool {
        if x.is_nan() {
            return node.flags & DEFAULT_LEFT != 0;
        }
        let x = x as f32;
        if node.flags & CATEGORICAL != 0 {
            // Listed categories go right; anything else, invalid ones
            // included, goes left.
            if !(0.0..MAX_CATEGORY).contains(&x) {
                return true;
            }
            return !forest::in_bitset(node, bits, x as u32);
        }
        x < node.threshold as f32
    }
}

impl Booster {
    pub fn forest(&self) -> &Forest {
        &self.forest
    }

    /// The output group (class) tree `tree` adds to.
    pub fn group(&self, tree: usize) -> usize {
        self.groups[tree] as usize
    }

    /// The starting margin of each output group.
    pub fn base(&self) -> Vec<f64> {
        self.base.iter().map(|&b| f64::from(b)).collect()
    }

    /// What a margin is, in words.
    pub fn raw_name(&self) -> &'static str {
        match self.transform {
            Transform::Identity => "margin (the prediction)",
            Transform::Sigmoid => "margin (log-odds)",
            Transform::Exp => "margin (the log of the prediction)",
            Transform::Softmax => "margin (the class's softmax input)",
        }
    }

    /// Whether `x` goes to the left child of node `node`.
    #[inline]
    pub fn goes_left(&self, node: &Node, x: f64) -> bool {
        Xgb::goes_left(node, x, &self.forest.bits)
    }

    /// Scores rows of `width` values into `out` (one value per row, or one
    /// per class).
    pub fn predict(&self, x: &[f64], width: usize, out: &mut [f64]) {
        let k = self.base.len();
        let mut margins: Vec<f32> = self.base.iter().copied().cycle().take(out.len()).collect();
        self.forest
            .for_each_leaf::<Xgb>(x, width, |row, tree, leaf| {
                let group = self.groups[tree] as usize;
                margins[row * k + group] += self.forest.outputs[leaf.left as usize].value as f32;
            });
        for (margin, out) in margins.chunks_exact_mut(k).zip(out.chunks_exact_mut(k)) {
            match self.transform {
                Transform::Identity => {
                    for (o, m) in out.iter_mut().zip(margin.iter()) {
                        *o = f64::from(*m);
                    }
                }
                Transform::Sigmoid => {
                    for (o, m) in out.iter_mut().zip(margin.iter()) {
                        *o = f64::from(sigmoid(*m));
                    }
                }
                Transform::Exp => {
                    for (o, m) in out.iter_mut().zip(margin.iter()) {
                        *o = f64::from(m.exp());
                    }
                }
                Transform::Softmax => {
                    let max = margin.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                    let mut sum = 0f64;
                    for m in margin.iter_mut() {
                        *m = (*m - max).exp();
                        sum += f64::from(*m);
                    }
                    let sum = sum as f32;
                    for (o, m) in out.iter_mut().zip(margin.iter()) {
                        *o = f64::from(*m / sum);
                    }
                }
            }
        }
    }
}

/// XGBoost's `common::Sigmoid(float)`.
fn sigmoid(x: f32) -> f32 {
    1.0 / ((-x).min(88.7).exp() + 1.0)
}

fn damaged(why: impl Into<String>) -> ForeignError {
    ForeignError::Xgboost { why: why.into() }
}

fn unsupported(why: impl Into<String>) -> ForeignError {
    ForeignError::Unsupported {
        format: ModelFormat::Xgboost,
        why: why.into(),
    }
}

/// The transform, base-score link and task of an objective.
fn objective(name: &str) -> Result<(Transform, Link, Task), ForeignError> {
    Ok(match name {
        "binary:logistic" => (Transform::Sigmoid, Link::Logit, Task::Binary),
        // XGBoost keeps `logitraw`'s base score as a margin.
        "binary:logitraw" => (Transform::Sigmoid, Link::Identity, Task::Binary),
        "multi:softprob" | "multi:softmax" => {
            (Transform::Softmax, Link::Identity, Task::Multiclass)
        }
        "reg:squarederror"
        | "reg:linear"
        | "reg:squaredlogerror"
        | "reg:pseudohubererror"
        | "reg:absoluteerror"
        | "reg:quantileerror" => (Transform::Identity, Link::Identity, Task::Regression),
        "reg:logistic" => (Transform::Sigmoid, Link::Logit, Task::Regression),
        "count:poisson" | "reg:gamma" | "reg:tweedie" => {
            (Transform::Exp, Link::Log, Task::Regression)
        }
        other => {
            return Err(unsupported(format!(
                "its objective `{other}` is not one kiln scores (binary:logistic, multi:softprob, multi:softmax and the reg:/count: objectives are)"
            )));
        }
    })
}

/// A count or number XGBoost writes as a string (`"4"`) or a number.
fn count(v: Option<&Value>) -> Option<usize> {
    match v? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        _ => None,
    }
}

/// `base_score`: `"5E-1"`, or XGBoost 3's vector `"[1.05E0,3.03E-1]"`.
fn base_score(v: Option<&Value>) -> Result<Vec<f32>, ForeignError> {
    let text = match v {
        None => return Ok(vec![0.5]),
        Some(Value::String(s)) => s.as_str(),
        Some(Value::Number(n)) => return Ok(vec![n.as_f64().unwrap_or(0.5) as f32]),
        Some(_) => return Err(damaged("`base_score` is neither text nor a number")),
    };
    let inner = text.trim().trim_start_matches('[').trim_end_matches(']');
    inner
        .split(',')
        .map(|s| {
            s.trim()
                .parse::<f32>()
                .map_err(|_| damaged(format!("`base_score` is `{text}`")))
        })
        .collect()
}

fn array<'a>(
    tree: &'a Map<String, Value>,
    key: &str,
    index: usize,
) -> Result<&'a [Value], ForeignError> {
    match tree.get(key) {
        Some(Value::Array(a)) => Ok(a),
        _ => Err(damaged(format!("tree {index} has no `{key}` list"))),
    }
}

fn ints(tree: &Map<String, Value>, key: &str, index: usize) -> Result<Vec<i64>, ForeignError> {
    array(tree, key, index)?
        .iter()
        .map(|v| match v {
            Value::Bool(b) => Some(i64::from(*b)),
            v => v.as_i64(),
        })
        .collect::<Option<_>>()
        .ok_or_else(|| damaged(format!("tree {index}'s `{key}` holds a non-integer")))
}

fn floats(tree: &Map<String, Value>, key: &str, index: usize) -> Result<Vec<f64>, ForeignError> {
    array(tree, key, index)?
        .iter()
        .map(Value::as_f64)
        .collect::<Option<_>>()
        .ok_or_else(|| damaged(format!("tree {index}'s `{key}` holds a non-number")))
}

/// Reads and compiles an XGBoost JSON model.
pub(super) fn load(bytes: &[u8]) -> Result<Loaded<Booster>, ForeignError> {
    let doc: Value = serde_json::from_slice(bytes)
        .map_err(|e| damaged(format!("its JSON does not parse ({e})")))?;
    let learner = doc
        .get("learner")
        .and_then(Value::as_object)
        .ok_or_else(|| damaged("it has no `learner` object"))?;
    let params = learner.get("learner_model_param");
    let param = |key: &str| params.and_then(|p| p.get(key));

    let objective_name = learner
        .get("objective")
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str)
        .ok_or_else(|| damaged("it names no objective"))?;
    let (transform, link, task) = objective(objective_name)?;

    let names: Vec<String> = match learner.get("feature_names") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned))
            .collect::<Option<_>>()
            .ok_or_else(|| damaged("`feature_names` holds a non-string"))?,
        _ => {
            let n = count(param("num_feature"))
                .ok_or_else(|| damaged("it records neither feature names nor `num_feature`"))?;
            (0..n).map(|i| format!("f{i}")).collect()
        }
    };
    if count(param("num_target")).unwrap_or(1) > 1 {
        return Err(unsupported(
            "it predicts several targets, and kiln scores one target per model",
        ));
    }
    let n_classes = count(param("num_class")).unwrap_or(0);
    let groups = match task {
        Task::Multiclass if n_classes < 2 => {
            return Err(damaged(format!(
                "a multiclass model has `num_class` {n_classes}"
            )));
        }
        Task::Multiclass => n_classes,
        Task::Binary | Task::Regression => 1,
    };
    let classes = match task {
        Task::Binary => numbered_classes(2),
        Task::Multiclass => numbered_classes(n_classes),
        Task::Regression => Vec::new(),
    };

    let mut base = base_score(param("base_score"))?;
    if base.len() == 1 && groups > 1 {
        base = vec![base[0]; groups];
    }
    if base.len() != groups {
        return Err(damaged(format!(
            "`base_score` has {} values for {groups} output groups",
            base.len()
        )));
    }
    for b in &mut base {
        *b = match link {
            Link::Identity => *b,
            Link::Logit => -(1.0 / *b - 1.0).ln(),
            Link::Log => b.ln(),
        };
    }

    let booster = learner
        .get("gradient_booster")
        .and_then(Value::as_object)
        .ok_or_else(|| damaged("it has no `gradient_booster`"))?;
    match booster.get("name").and_then(Value::as_str) {
        Some("gbtree") => {}
        Some(other) => {
            return Err(unsupported(format!(
                "its booster is `{other}`; kiln scores `gbtree` boosters"
            )));
        }
        None => return Err(damaged("its `gradient_booster` has no name")),
    }
    let model = booster
        .get("model")
        .and_then(Value::as_object)
        .ok_or_else(|| damaged("its `gradient_booster` has no `model`"))?;
    let trees = match model.get("trees") {
        Some(Value::Array(t)) => t,
        _ => return Err(damaged("its model has no `trees` list")),
    };
    let tree_info: Vec<u32> = match model.get("tree_info") {
        Some(Value::Array(info)) => info
            .iter()
            .map(|v| v.as_u64().and_then(|g| u32::try_from(g).ok()))
            .collect::<Option<_>>()
            .ok_or_else(|| damaged("`tree_info` holds a non-integer"))?,
        _ => return Err(damaged("its model has no `tree_info` list")),
    };
    if tree_info.len() != trees.len() {
        return Err(damaged(format!(
            "`tree_info` lists {} trees but the model holds {}",
            tree_info.len(),
            trees.len()
        )));
    }
    if let Some(&g) = tree_info.iter().find(|&&g| g as usize >= groups) {
        return Err(damaged(format!(
            "a tree belongs to output group {g}, but the model has {groups}"
        )));
    }
    let mut forest = Forest::default();
    for (index, tree) in trees.iter().enumerate() {
        let tree = tree
            .as_object()
            .ok_or_else(|| damaged(format!("tree {index} is not an object")))?;
        add_tree(&mut forest, tree, index, names.len())?;
    }
    Ok(Loaded {
        scorer: Booster {
            forest,
            groups: tree_info,
            base,
            transform,
        },
        names,
        task,
        classes,
    })
}

fn add_tree(
    forest: &mut Forest,
    tree: &Map<String, Value>,
    index: usize,
    n_features: usize,
) -> Result<(), ForeignError> {
    if let Some(size) = tree
        .get("tree_param")
        .and_then(|p| count(p.get("size_leaf_vector")))
        && size > 1
    {
        return Err(unsupported(
            "it has multi-target trees (vector leaves), which kiln does not score",
        ));
    }
    let left = ints(tree, "left_children", index)?;
    let right = ints(tree, "right_children", index)?;
    let feature = ints(tree, "split_indices", index)?;
    let condition = floats(tree, "split_conditions", index)?;
    let default_left = ints(tree, "default_left", index)?;
    let n = left.len();
    if n == 0 {
        return Err(damaged(format!("tree {index} has no nodes")));
    }
    for (key, len) in [
        ("right_children", right.len()),
        ("split_indices", feature.len()),
        ("split_conditions", condition.len()),
        ("default_left", default_left.len()),
    ] {
        if len != n {
            return Err(damaged(format!(
                "tree {index} has {n} nodes but {len} entries in `{key}`"
            )));
        }
    }
    // Categorical splits: `split_type` 1, with their categories listed per node.
    let split_type = match tree.get("split_type") {
        Some(_) => ints(tree, "split_type", index)?,
        None => vec![0; n],
    };
    if split_type.len() != n {
        return Err(damaged(format!(
            "tree {index} has {n} nodes but {} split types",
            split_type.len()
        )));
    }
    let mut categories: Vec<Option<Vec<u32>>> = vec![None; n];
    if split_type.iter().any(|&t| t != 0) {
        let cats = ints(tree, "categories", index)?;
        let nodes = ints(tree, "categories_nodes", index)?;
        let segments = ints(tree, "categories_segments", index)?;
        let sizes = ints(tree, "categories_sizes", index)?;
        if nodes.len() != segments.len() || nodes.len() != sizes.len() {
            return Err(damaged(format!(
                "tree {index}'s category lists differ in length"
            )));
        }
        for ((&node, &start), &size) in nodes.iter().zip(&segments).zip(&sizes) {
            let bad = || {
                damaged(format!(
                    "tree {index}'s categories for node {node} are out of range"
                ))
            };
            let node = usize::try_from(node)
                .ok()
                .filter(|&i| i < n)
                .ok_or_else(bad)?;
            let start = usize::try_from(start).map_err(|_| bad())?;
            let end = usize::try_from(size)
                .ok()
                .and_then(|s| start.checked_add(s))
                .filter(|&e| e <= cats.len())
                .ok_or_else(bad)?;
            let mut bits: Vec<u32> = Vec::new();
            for &c in &cats[start..end] {
                let c = u32::try_from(c)
                    .ok()
                    .filter(|&c| (c as f32) < MAX_CATEGORY)
                    .ok_or_else(bad)?;
                let word = (c / 32) as usize;
                if bits.len() <= word {
                    bits.resize(word + 1, 0);
                }
                bits[word] |= 1 << (c % 32);
            }
            categories[node] = Some(bits);
        }
    }
    let child = |c: i64, i: usize| -> Result<usize, String> {
        usize::try_from(c)
            .ok()
            .filter(|&c| c < n)
            .ok_or_else(|| format!("tree {index}'s node {i} has a child `{c}` out of range"))
    };
    // Hessian covers, for path-dependent TreeSHAP (what XGBoost's own
    // `pred_contribs` weighs by).
    let cover: Option<Vec<f64>> = tree
        .get("sum_hessian")
        .and_then(|_| floats(tree, "sum_hessian", index).ok())
        .filter(|c| c.len() == n);
    let placed = forest
        .add_tree(n, 0, |i| {
            if left[i] == -1 {
                return Ok(Spec::Leaf(vec![Output {
                    target: 0,
                    value: f64::from(condition[i] as f32),
                }]));
            }
            let f = u32::try_from(feature[i])
                .ok()
                .filter(|&f| (f as usize) < n_features)
                .ok_or_else(|| {
                    format!(
                        "tree {index} splits on feature {}, but the model has {n_features}",
                        feature[i]
                    )
                })?;
            let mut flags = 0;
            if default_left[i] != 0 {
                flags |= DEFAULT_LEFT;
            }
            let bits = match (split_type[i], categories[i].take()) {
                (0, _) => Vec::new(),
                (_, Some(bits)) => {
                    flags |= CATEGORICAL;
                    bits
                }
                (_, None) => {
                    // A categorical split whose set is empty: every valid
                    // category goes left.
                    flags |= CATEGORICAL;
                    Vec::new()
                }
            };
            Ok(Spec::Split {
                feature: f,
                threshold: f64::from(condition[i] as f32),
                kind: 0,
                flags,
                bits,
                left: child(left[i], i)?,
                right: child(right[i], i)?,
            })
        })
        .map_err(damaged)?;
    forest.set_weights(&placed, |i| cover.as_ref().map_or(f64::NAN, |c| c[i]));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(flags: u8, threshold: f64) -> Node {
        Node {
            threshold,
            feature: 0,
            left: 0,
            right: 0,
            cat: 0,
            cat_words: 1,
            kind: 0,
            flags,
        }
    }

    #[test]
    fn numerical_decision_compares_as_f32() {
        let n = node(0, f64::from(0.1f32));
        // 0.1 as f64 is above the f32 0.1, but equal once converted.
        assert!(!Xgb::goes_left(&n, 0.1, &[]));
        assert!(Xgb::goes_left(&n, 0.0999, &[]));
        assert!(!Xgb::goes_left(&n, f64::NAN, &[]));
        assert!(Xgb::goes_left(&node(DEFAULT_LEFT, 0.0), f64::NAN, &[]));
    }

    #[test]
    fn categorical_decision_sends_listed_categories_right() {
        let n = node(CATEGORICAL, 0.0);
        let bits = [0b100];
        assert!(!Xgb::goes_left(&n, 2.0, &bits));
        assert!(!Xgb::goes_left(&n, 2.9, &bits));
        assert!(Xgb::goes_left(&n, 1.0, &bits));
        assert!(Xgb::goes_left(&n, 40.0, &bits));
        assert!(Xgb::goes_left(&n, -1.0, &bits));
        assert!(Xgb::goes_left(&n, 1e9, &bits));
    }

    #[test]
    fn base_score_forms_example() {
        assert_eq!(base_score(Some(&Value::from("5E-1"))).unwrap(), [0.5]);
        assert_eq!(
            base_score(Some(&Value::from("[1E0,-2.5E-1]"))).unwrap(),
            [1.0, -0.25]
        );
        assert_eq!(base_score(None).unwrap(), [0.5]);
        assert!(base_score(Some(&Value::from("[a]"))).is_err());
    }

    #[test]
    fn objectives_example() {
        assert_eq!(
            objective("binary:logistic").unwrap(),
            (Transform::Sigmoid, Link::Logit, Task::Binary)
        );
        assert_eq!(
            objective("count:poisson").unwrap(),
            (Transform::Exp, Link::Log, Task::Regression)
        );
        for name in ["rank:pairwise", "binary:hinge", "survival:cox"] {
            let err = objective(name).unwrap_err();
            assert!(err.to_string().contains(name), "{err}");
        }
    }
}
