//! Explanations for kiln's models, starting with exact TreeSHAP.
//!
//! [`tree_shap`] computes the SHAP values of one row for one decision tree
//! with the path-dependent algorithm of Lundberg, Erion & Lee, "Consistent
//! Individualized Feature Attribution for Tree Ensembles" (2018),
//! Algorithm 2: it follows every root-to-leaf path once, carrying the
//! proportion of all feature subsets that reach each leaf, in
//! O(leaves × depth²) instead of the exponential sum over subsets. "Path
//! dependent" means a feature outside a subset follows the training data
//! down both branches, weighted by how many training rows went each way
//! (the nodes' and leaves' `count`).
//!
//! The values are exact Shapley values of that conditional expectation, so
//! they add up: the tree's [`expected_value`] plus the row's attributions
//! equals the tree's output for the row. An ensemble's attributions are the
//! sum of its trees'.
//!
//! Like kiln-ml, this crate knows nothing of stores or HTTP.

use kiln_ml::Features;
use kiln_ml::gbdt::Gbdt;
use kiln_ml::gbdt::tree::{Node, Tree};

/// The SHAP values of row `row` for output `output` of a boosted ensemble
/// (output 0 for regression and binary models, one per class for
/// multiclass), on its raw score: `(expected value, one attribution per
/// feature)`, which add up to the raw score `predict_raw` gives.
pub fn gbdt_shap(gbdt: &Gbdt, features: &Features, row: usize, output: usize) -> (f64, Vec<f64>) {
    let outputs = gbdt.init_scores.len().max(1);
    let mut phi = vec![0.0; features.n_features()];
    let mut expected = gbdt.init_scores.get(output).copied().unwrap_or(0.0);
    let goes_left = |n: &Node| n.goes_left(features, row);
    for tree in gbdt.trees.iter().skip(output).step_by(outputs) {
        expected += expected_value(tree);
        tree_shap(tree, &goes_left, &mut phi);
    }
    (expected, phi)
}

/// The tree's output averaged over its training rows: each leaf's value
/// weighted by the rows that reached it.
pub fn expected_value(tree: &Tree) -> f64 {
    let rows: f64 = tree.leaves.iter().map(|l| l.count as f64).sum();
    if rows == 0.0 {
        return tree.leaves.first().map_or(0.0, |l| l.value);
    }
    tree.leaves
        .iter()
        .map(|l| l.value * l.count as f64)
        .sum::<f64>()
        / rows
}

/// Adds the SHAP values of one row for `tree` to `phi` (one entry per
/// feature). `goes_left` says which way the row goes at a node (for a kiln
/// model: [`Node::goes_left`] on the row's features).
pub fn tree_shap(tree: &Tree, goes_left: &dyn Fn(&Node) -> bool, phi: &mut [f64]) {
    if tree.nodes.is_empty() {
        return; // a single leaf: every row gets its value, nothing to share
    }
    let mut path = Vec::with_capacity(depth(tree) + 2);
    recurse(tree, goes_left, phi, 0, &mut path, 1.0, 1.0, None);
}

/// One feature on the path: the share of subsets without it (`zero`) and
/// with it (`one`) that follow the path, and the permutation weight.
#[derive(Clone, Copy, Debug)]
struct Elem {
    feature: Option<u32>,
    zero: f64,
    one: f64,
    weight: f64,
}

/// Rows that reached child reference `c` (a node, or `!c` a leaf).
fn count(tree: &Tree, c: i32) -> f64 {
    if c >= 0 {
        tree.nodes[c as usize].count as f64
    } else {
        tree.leaves[!c as usize].count as f64
    }
}

#[allow(clippy::too_many_arguments)]
fn recurse(
    tree: &Tree,
    goes_left: &dyn Fn(&Node) -> bool,
    phi: &mut [f64],
    at: i32,
    path: &mut Vec<Elem>,
    zero: f64,
    one: f64,
    feature: Option<u32>,
) {
    extend(path, zero, one, feature);
    if at < 0 {
        let value = tree.leaves[!at as usize].value;
        for i in 1..path.len() {
            let w = unwound_sum(path, i);
            let e = path[i];
            if let Some(f) = e.feature {
                phi[f as usize] += w * (e.one - e.zero) * value;
            }
        }
        return;
    }
    let node = &tree.nodes[at as usize];
    let (hot, cold) = if goes_left(node) {
        (node.left, node.right)
    } else {
        (node.right, node.left)
    };
    let here = node.count as f64;
    let (hot_share, cold_share) = if here > 0.0 {
        (count(tree, hot) / here, count(tree, cold) / here)
    } else {
        (0.5, 0.5)
    };
    // A feature met again on the path is undone, then extended with the
    // shares it had: a subset either has the feature or not, once.
    let (mut in_zero, mut in_one) = (1.0, 1.0);
    let mut base = path.clone();
    if let Some(k) = (1..base.len()).find(|&k| base[k].feature == Some(node.feature)) {
        in_zero = base[k].zero;
        in_one = base[k].one;
        unwind(&mut base, k);
    }
    let mut hot_path = base.clone();
    recurse(
        tree,
        goes_left,
        phi,
        hot,
        &mut hot_path,
        hot_share * in_zero,
        in_one,
        Some(node.feature),
    );
    let mut cold_path = base;
    recurse(
        tree,
        goes_left,
        phi,
        cold,
        &mut cold_path,
        cold_share * in_zero,
        0.0,
        Some(node.feature),
    );
}

/// Adds a feature to the path, updating the permutation weights.
fn extend(path: &mut Vec<Elem>, zero: f64, one: f64, feature: Option<u32>) {
    let d = path.len();
    path.push(Elem {
        feature,
        zero,
        one,
        weight: if d == 0 { 1.0 } else { 0.0 },
    });
    for i in (0..d).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64 / (d + 1) as f64;
        path[i].weight = zero * path[i].weight * (d - i) as f64 / (d + 1) as f64;
    }
}

/// Removes element `k` from the path, undoing its extension.
fn unwind(path: &mut Vec<Elem>, k: usize) {
    let d = path.len() - 1;
    let (one, zero) = (path[k].one, path[k].zero);
    let mut next = path[d].weight;
    for i in (0..d).rev() {
        if one != 0.0 {
            let t = path[i].weight;
            path[i].weight = next * (d + 1) as f64 / ((i + 1) as f64 * one);
            next = t - path[i].weight * zero * (d - i) as f64 / (d + 1) as f64;
        } else {
            path[i].weight = path[i].weight * (d + 1) as f64 / (zero * (d - i) as f64);
        }
    }
    for i in k..d {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
    path.pop();
}

/// The total permutation weight the path would have without element `k`.
fn unwound_sum(path: &[Elem], k: usize) -> f64 {
    let d = path.len() - 1;
    let (one, zero) = (path[k].one, path[k].zero);
    let mut next = path[d].weight;
    let mut total = 0.0;
    for i in (0..d).rev() {
        if one != 0.0 {
            let t = next * (d + 1) as f64 / ((i + 1) as f64 * one);
            total += t;
            next = path[i].weight - t * zero * (d - i) as f64 / (d + 1) as f64;
        } else {
            total += path[i].weight / zero * (d + 1) as f64 / (d - i) as f64;
        }
    }
    total
}

/// The longest root-to-leaf path, in nodes.
fn depth(tree: &Tree) -> usize {
    fn walk(tree: &Tree, c: i32) -> usize {
        if c < 0 {
            0
        } else {
            let n = &tree.nodes[c as usize];
            1 + walk(tree, n.left).max(walk(tree, n.right))
        }
    }
    walk(tree, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ml::gbdt::tree::{Leaf, SplitRule};
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    /// A random tree over `features` features with `depth` levels, whose
    /// counts split the parent's rows at random.
    fn random_tree(rng: &mut SmallRng, features: u32, depth: usize) -> Tree {
        let mut t = Tree {
            nodes: Vec::new(),
            leaves: Vec::new(),
        };
        fn grow(t: &mut Tree, rng: &mut SmallRng, features: u32, depth: usize, rows: u64) -> i32 {
            if depth == 0 || rows < 2 || rng.random::<f64>() < 0.15 {
                t.leaves.push(Leaf {
                    value: rng.random::<f64>() * 4.0 - 2.0,
                    cover: rows as f64,
                    count: rows,
                });
                return !(t.leaves.len() as i32 - 1);
            }
            let idx = t.nodes.len();
            t.nodes.push(Node {
                feature: rng.random_range(0..features),
                rule: SplitRule::Numeric {
                    threshold: rng.random::<f64>(),
                },
                missing_left: true,
                left: 0,
                right: 0,
                gain: 0.0,
                cover: rows as f64,
                count: rows,
            });
            let left_rows = rng.random_range(1..rows);
            let l = grow(t, rng, features, depth - 1, left_rows);
            let r = grow(t, rng, features, depth - 1, rows - left_rows);
            t.nodes[idx].left = l;
            t.nodes[idx].right = r;
            idx as i32
        }
        grow(&mut t, rng, features, depth, 1000);
        t
    }

    fn left(x: &[f64]) -> impl Fn(&Node) -> bool + '_ {
        move |n: &Node| match n.rule {
            SplitRule::Numeric { threshold } => x[n.feature as usize] <= threshold,
            SplitRule::Categorical { .. } => n.missing_left,
        }
    }

    /// E[f(x) | x_S]: features in `s` follow the row, the others the
    /// training rows down both branches.
    fn conditional(t: &Tree, x: &[f64], s: u32, c: i32) -> f64 {
        if c < 0 {
            return t.leaves[!c as usize].value;
        }
        let n = &t.nodes[c as usize];
        if s & (1 << n.feature) != 0 {
            let next = if left(x)(n) { n.left } else { n.right };
            conditional(t, x, s, next)
        } else {
            let here = n.count as f64;
            (count(t, n.left) * conditional(t, x, s, n.left)
                + count(t, n.right) * conditional(t, x, s, n.right))
                / here
        }
    }

    /// Shapley values by their definition: every subset of the features.
    fn brute_force(t: &Tree, x: &[f64], m: u32) -> Vec<f64> {
        let fact = |k: u32| (1..=k).map(f64::from).product::<f64>();
        let root = if t.nodes.is_empty() { -1 } else { 0 };
        let v = |s: u32| conditional(t, x, s, root);
        (0..m)
            .map(|i| {
                let mut phi = 0.0;
                for s in 0..(1u32 << m) {
                    if s & (1 << i) != 0 {
                        continue;
                    }
                    let k = s.count_ones();
                    let w = fact(k) * fact(m - k - 1) / fact(m);
                    phi += w * (v(s | (1 << i)) - v(s));
                }
                phi
            })
            .collect()
    }

    #[test]
    fn tree_shap_equals_the_shapley_values_by_definition() {
        let mut rng = SmallRng::seed_from_u64(42);
        for case in 0..200 {
            let m = 1 + case % 5;
            let t = random_tree(&mut rng, m, 1 + (case as usize % 6));
            let x: Vec<f64> = (0..m).map(|_| rng.random()).collect();
            let mut phi = vec![0.0; m as usize];
            tree_shap(&t, &left(&x), &mut phi);
            let expected = brute_force(&t, &x, m);
            for (a, b) in phi.iter().zip(&expected) {
                assert!(
                    (a - b).abs() < 1e-10,
                    "case {case}: {phi:?} vs {expected:?}"
                );
            }
        }
    }

    #[test]
    fn attributions_add_up_to_the_prediction() {
        let mut rng = SmallRng::seed_from_u64(7);
        for _ in 0..100 {
            let t = random_tree(&mut rng, 6, 8);
            let x: Vec<f64> = (0..6).map(|_| rng.random()).collect();
            let mut phi = vec![0.0; 6];
            tree_shap(&t, &left(&x), &mut phi);
            let root = if t.nodes.is_empty() { -1 } else { 0 };
            let predicted = conditional(&t, &x, u32::MAX, root);
            let total = expected_value(&t) + phi.iter().sum::<f64>();
            assert!((total - predicted).abs() < 1e-10, "{total} vs {predicted}");
        }
    }

    #[test]
    fn a_boosted_models_attributions_add_up_to_its_raw_score() {
        use kiln_ml::Column;
        use kiln_ml::gbdt::GbdtParams;
        let mut rng = SmallRng::seed_from_u64(3);
        let n = 600;
        let cols: Vec<Vec<f64>> = (0..4)
            .map(|_| (0..n).map(|_| rng.random::<f64>()).collect())
            .collect();
        // The target ignores the last feature.
        let y: Vec<f64> = (0..n)
            .map(|i| 3.0 * cols[0][i] - 2.0 * cols[1][i] * cols[2][i] + 0.1 * rng.random::<f64>())
            .collect();
        let features = Features {
            names: (0..4).map(|i| format!("x{i}")).collect(),
            columns: cols.into_iter().map(Column::Numeric).collect(),
        };
        let model = Gbdt::fit(&features, &y, &GbdtParams::default(), None).unwrap();
        let raw = model.predict_raw(&features);
        for row in (0..n).step_by(37) {
            let (expected, phi) = gbdt_shap(&model, &features, row, 0);
            let total = expected + phi.iter().sum::<f64>();
            assert!(
                (total - raw[row]).abs() < 1e-9,
                "row {row}: {total} vs {}",
                raw[row]
            );
        }
        // x0 matters most on average; x3 carries nearly nothing.
        let mean_abs = |f: usize| {
            (0..n)
                .step_by(7)
                .map(|r| gbdt_shap(&model, &features, r, 0).1[f].abs())
                .sum::<f64>()
        };
        assert!(mean_abs(0) > mean_abs(1) && mean_abs(1) > mean_abs(3));
    }

    #[test]
    fn a_single_leaf_shares_nothing() {
        let t = Tree {
            nodes: Vec::new(),
            leaves: vec![Leaf {
                value: 3.0,
                cover: 10.0,
                count: 10,
            }],
        };
        let mut phi = vec![0.0; 2];
        tree_shap(&t, &|_: &Node| true, &mut phi);
        assert_eq!(phi, vec![0.0, 0.0]);
        assert_eq!(expected_value(&t), 3.0);
    }
}
