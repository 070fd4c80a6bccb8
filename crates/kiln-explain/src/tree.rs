//! Exact SHAP values for tree ensembles.
//!
//! An [`Ensemble`] is the trees of a model in one flat array, whatever
//! library grew them: kiln's boosted trees ([`Ensemble::from_gbdt`]) or an
//! imported LightGBM or XGBoost model ([`Ensemble::from_view`]). Which way
//! a row goes at each split is the model's own business (its thresholds,
//! missing values and category sets), so a row enters as its *hot* bits:
//! one per node, true where the row goes left ([`Ensemble::hot`]).
//!
//! * **Path-dependent TreeSHAP** ([`Ensemble::shap`]): Lundberg, Erion &
//!   Lee, "Consistent Individualized Feature Attribution for Tree
//!   Ensembles" (2018), Algorithm 2. A feature outside a coalition follows
//!   the training rows down both branches, weighted by the rows (or hessian
//!   cover) that went each way. One pass over each tree's root-to-leaf
//!   paths, carrying the share of all coalitions that reach each leaf:
//!   O(leaves × depth²) per tree and row. The path lives in one buffer
//!   allocated per thread, each level writing its own segment, so nothing
//!   is allocated per node.
//! * **SHAP interaction values** ([`Ensemble::interactions`]): the same
//!   walk with one feature held in (on) or out (off) of every coalition;
//!   half the difference is the pairwise interaction, and the rest of a
//!   feature's value is its main effect on the diagonal.
//! * **Interventional TreeSHAP** ([`Ensemble::shap_interventional`]):
//!   features outside a coalition take a background row's values (the
//!   game `v(S) = f(x_S, r_S̄)`), averaged over a background sample. Per
//!   pair of rows, a walk follows both rows where they agree and branches
//!   where they disagree; a leaf reached with `a` features taken from `x`
//!   and `b` from `r` credits each of the first `(a-1)! b! / (a+b)!` of
//!   its value and debits each of the second `a! (b-1)! / (a+b)!`
//!   (Lundberg et al. 2020, "From local explanations to global
//!   understanding with explainable AI for trees"). It needs no training
//!   weights, only the background.
//!
//! All three are exact Shapley values of their game, so they add up: the
//! expected value plus a row's attributions is the model's raw score for
//! the row.

use kiln_ml::Features;
use kiln_ml::gbdt::Gbdt;
use kiln_ml::gbdt::tree::Node as KilnNode;
use kiln_ml::imported::{TreeView, ViewNode};

/// No feature: the root's placeholder on a path, and a leaf's `feature`.
const NONE: u32 = u32::MAX;

/// The deepest tree TreeSHAP walks, in splits. Trees grown by kiln,
/// LightGBM or XGBoost stay far below; a deeper (hand-made or degenerate)
/// model is explained by permutation SHAP instead.
pub const MAX_DEPTH: usize = 512;

/// Leaves whose paths are shorter than this (in distinct features) are
/// credited by the fast loop; longer ones by [`unwound_sum`].
const SHORT: usize = 64;

/// Paths longer than this (in distinct features) divide instead of
/// looking reciprocals up.
const RECIPROCALS: usize = 256;

/// `1 / k` for `k` in `0..RECIPROCALS` (0 for k = 0): the path arithmetic
/// multiplies by these instead of dividing, which is several times slower.
static RECIP: [f64; RECIPROCALS] = {
    let mut r = [0.0; RECIPROCALS];
    let mut k = 1;
    while k < RECIPROCALS {
        r[k] = 1.0 / k as f64;
        k += 1;
    }
    r
};

#[inline(always)]
fn recip(k: usize) -> f64 {
    if k < RECIPROCALS {
        RECIP[k]
    } else {
        1.0 / k as f64
    }
}

/// One node: a split (`feature != NONE`) or a leaf.
#[derive(Debug, Clone, Copy)]
struct Node {
    feature: u32,
    left: u32,
    right: u32,
    /// Training rows or cover that reached the node (NaN when unknown).
    weight: f64,
    /// A leaf's value.
    value: f64,
}

#[derive(Debug, Clone, Copy)]
struct TreeInfo {
    root: u32,
    output: u32,
    depth: u32,
}

/// Where a model's nodes come from, to fill a row's hot bits.
#[derive(Debug, Clone)]
enum Source {
    /// Kiln's splits, each with its ensemble node.
    Kiln(Vec<(u32, KilnNode)>),
    Imported(TreeView),
}

/// A row as a model reads it.
#[derive(Debug, Clone, Copy)]
pub enum Row<'a> {
    /// Row `row` of a kiln model's preprocessed features.
    Features(&'a Features, usize),
    /// An imported model's inputs in order (NaN for missing).
    Dense(&'a [f64]),
}

/// The trees of a model, flattened for explaining. Attributions are on the
/// raw score (before the link: log-odds, softmax input, log), one vector
/// per output.
#[derive(Debug, Clone)]
pub struct Ensemble {
    nodes: Vec<Node>,
    trees: Vec<TreeInfo>,
    source: Source,
    base: Vec<f64>,
    /// [`Ensemble::expected_value`], computed once.
    expected: Vec<f64>,
    scale: f64,
    n_features: usize,
    max_depth: usize,
    /// Whether every node's weight is known (path-dependent SHAP needs it).
    weighted: bool,
    /// Whether the walks can run: no tree deeper than [`MAX_DEPTH`], no
    /// node shared by two parents.
    walkable: bool,
}

impl Ensemble {
    /// Kiln's boosted trees, weighted by training row counts.
    pub fn from_gbdt(gbdt: &Gbdt, n_features: usize) -> Ensemble {
        Ensemble::from_gbdts(&[(1.0, gbdt)], n_features)
    }

    /// A weighted sum of kiln boosted models with the same outputs (an
    /// ensemble averaging regressors' predictions): every member's trees,
    /// their leaves scaled by its weight, so one walk explains the sum
    /// exactly (Shapley values are linear in the model).
    pub fn from_gbdts(members: &[(f64, &Gbdt)], n_features: usize) -> Ensemble {
        let outputs = members
            .iter()
            .map(|(_, g)| g.init_scores.len())
            .max()
            .unwrap_or(1)
            .max(1);
        let mut nodes = Vec::new();
        let mut trees = Vec::new();
        let mut splits = Vec::new();
        let mut base = vec![0.0; outputs];
        for &(w, gbdt) in members {
            for (b, init) in base.iter_mut().zip(&gbdt.init_scores) {
                *b += w * init;
            }
            for (t, tree) in gbdt.trees.iter().enumerate() {
                let start = nodes.len() as u32;
                let leaf_start = start + tree.nodes.len() as u32;
                let child = |c: i32| {
                    if c >= 0 {
                        start + c as u32
                    } else {
                        leaf_start + !c as u32
                    }
                };
                for n in &tree.nodes {
                    splits.push((nodes.len() as u32, n.clone()));
                    nodes.push(Node {
                        feature: n.feature,
                        left: child(n.left),
                        right: child(n.right),
                        weight: n.count as f64,
                        value: 0.0,
                    });
                }
                for l in &tree.leaves {
                    nodes.push(Node {
                        feature: NONE,
                        left: 0,
                        right: 0,
                        weight: l.count as f64,
                        value: w * l.value,
                    });
                }
                let root = if tree.nodes.is_empty() {
                    leaf_start
                } else {
                    start
                };
                trees.push(TreeInfo {
                    root,
                    output: (t % outputs) as u32,
                    depth: tree.depth() as u32,
                });
            }
        }
        Ensemble::finish(nodes, trees, Source::Kiln(splits), base, 1.0, n_features)
    }

    /// An imported LightGBM or XGBoost model's trees, weighted as the file
    /// records (row counts, hessian cover).
    pub fn from_view(view: TreeView, n_features: usize) -> Ensemble {
        let mut nodes: Vec<Node> = (0..view.n_nodes() as u32)
            .map(|i| {
                let weight = view.weight(i).unwrap_or(f64::NAN);
                match view.node(i) {
                    ViewNode::Split {
                        feature,
                        left,
                        right,
                    } => Node {
                        feature,
                        left,
                        right,
                        weight,
                        value: 0.0,
                    },
                    ViewNode::Leaf { value } => Node {
                        feature: NONE,
                        left: 0,
                        right: 0,
                        weight,
                        value,
                    },
                }
            })
            .collect();
        nodes.shrink_to_fit();
        let trees = (0..view.n_trees())
            .map(|t| TreeInfo {
                root: view.root(t),
                output: view.output(t) as u32,
                depth: 0,
            })
            .collect();
        let (base, scale) = (view.base(), view.scale());
        Ensemble::finish(
            nodes,
            trees,
            Source::Imported(view),
            base,
            scale,
            n_features,
        )
    }

    fn finish(
        nodes: Vec<Node>,
        mut trees: Vec<TreeInfo>,
        source: Source,
        base: Vec<f64>,
        scale: f64,
        n_features: usize,
    ) -> Ensemble {
        // A node reached from two parents (some files share subtrees) would
        // be walked once per path: exponential, so such trees are refused.
        let mut parents = vec![0u8; nodes.len()];
        for n in &nodes {
            if n.feature != NONE {
                for c in [n.left, n.right] {
                    parents[c as usize] = parents[c as usize].saturating_add(1);
                }
            }
        }
        let shared = parents.iter().any(|&p| p > 1);
        for t in &mut trees {
            t.depth = if shared {
                0
            } else {
                depth(&nodes, t.root) as u32
            };
        }
        let max_depth = trees.iter().map(|t| t.depth as usize).max().unwrap_or(0);
        let weighted = nodes
            .iter()
            .all(|n| n.weight.is_finite() && n.weight >= 0.0);
        let walkable = !shared && max_depth <= MAX_DEPTH;
        let mut e = Ensemble {
            nodes,
            trees,
            source,
            base,
            expected: Vec::new(),
            scale,
            n_features,
            max_depth,
            weighted,
            walkable,
        };
        let mut expected = e.base.clone();
        for t in &e.trees {
            expected[t.output as usize] += if walkable {
                e.expected(t.root)
            } else {
                f64::NAN
            };
        }
        expected.iter_mut().for_each(|v| *v *= e.scale);
        e.expected = expected;
        e
    }

    pub fn n_outputs(&self) -> usize {
        self.base.len()
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn n_trees(&self) -> usize {
        self.trees.len()
    }

    /// Whether the training weights path-dependent SHAP needs are known.
    pub fn weighted(&self) -> bool {
        self.weighted
    }

    /// Whether TreeSHAP can walk these trees: none deeper than
    /// [`MAX_DEPTH`] levels (the walks recurse, and their path buffers grow
    /// with the square of the depth) and no node shared by two parents.
    pub fn walkable(&self) -> bool {
        self.walkable
    }

    /// The deepest tree, in splits (0 when nodes are shared).
    pub fn max_depth(&self) -> usize {
        self.max_depth
    }

    /// Fills `hot` (one per node) with where `row` goes at each split:
    /// true for left.
    pub fn hot(&self, row: Row<'_>, hot: &mut Vec<bool>) {
        hot.clear();
        hot.resize(self.nodes.len(), false);
        match (&self.source, row) {
            (Source::Kiln(splits), Row::Features(features, r)) => {
                for (at, n) in splits {
                    hot[*at as usize] = n.goes_left(features, r);
                }
            }
            (Source::Imported(view), Row::Dense(x)) => {
                for (i, (h, n)) in hot.iter_mut().zip(&self.nodes).enumerate() {
                    if n.feature != NONE {
                        *h = view.goes_left(i as u32, x);
                    }
                }
            }
            _ => panic!("a row of the wrong kind for this model's trees"),
        }
    }

    /// The raw score of the row whose hot bits are `hot`, per output.
    pub fn predict(&self, hot: &[bool]) -> Vec<f64> {
        let mut out = self.base.clone();
        for t in &self.trees {
            let mut i = t.root as usize;
            while self.nodes[i].feature != NONE {
                let n = &self.nodes[i];
                i = if hot[i] { n.left } else { n.right } as usize;
            }
            out[t.output as usize] += self.nodes[i].value;
        }
        out.iter_mut().for_each(|v| *v *= self.scale);
        out
    }

    /// The expected raw score per output under the training weights: what
    /// path-dependent attributions start from.
    pub fn expected_value(&self) -> Vec<f64> {
        self.expected.clone()
    }

    fn expected(&self, i: u32) -> f64 {
        let n = &self.nodes[i as usize];
        if n.feature == NONE {
            return n.value;
        }
        let (l, r) = (self.nodes[n.left as usize], self.nodes[n.right as usize]);
        if n.weight > 0.0 {
            (l.weight * self.expected(n.left) + r.weight * self.expected(n.right)) / n.weight
        } else {
            0.5 * (self.expected(n.left) + self.expected(n.right))
        }
    }

    /// A scratch buffer for [`Ensemble::shap`], one per thread.
    pub fn scratch(&self) -> Scratch {
        let d = self.max_depth + 2;
        Scratch {
            path: vec![Elem::default(); d * (d + 1) / 2 + d + 1],
            coefficients: vec![0.0; 3 * SHORT],
            hot: Vec::new(),
            on: Vec::new(),
            off: Vec::new(),
        }
    }

    /// Adds the path-dependent SHAP values of the row with hot bits `hot`
    /// to `phi` (`n_outputs × n_features`, output-major). Their sum plus
    /// [`Ensemble::expected_value`] is the row's raw score.
    ///
    /// # Panics
    ///
    /// When the weights are unknown ([`Ensemble::weighted`] is false).
    pub fn shap(&self, hot: &[bool], scratch: &mut Scratch, phi: &mut [f64]) {
        assert!(self.weighted, "path-dependent SHAP needs training weights");
        self.shap_conditioned(
            hot,
            &mut scratch.path,
            &mut scratch.coefficients,
            phi,
            Condition::None,
        );
    }

    /// [`Ensemble::shap`] with the trees shared out among rayon's threads:
    /// for one row, or a few, whose latency matters (serving).
    pub fn shap_split(&self, hot: &[bool], phi: &mut [f64]) {
        use rayon::prelude::*;
        assert!(self.weighted, "path-dependent SHAP needs training weights");
        let threads = rayon::current_num_threads().max(1);
        if threads == 1 || self.trees.len() < 2 * threads {
            let mut scratch = self.scratch();
            return self.shap_trees(
                &self.trees,
                hot,
                &mut scratch.path,
                &mut scratch.coefficients,
                phi,
                Condition::None,
            );
        }
        let chunk = self.trees.len().div_ceil(threads);
        let parts: Vec<Vec<f64>> = self
            .trees
            .par_chunks(chunk)
            .map(|trees| {
                let mut part = vec![0.0; phi.len()];
                let mut scratch = self.scratch();
                self.shap_trees(
                    trees,
                    hot,
                    &mut scratch.path,
                    &mut scratch.coefficients,
                    &mut part,
                    Condition::None,
                );
                part
            })
            .collect();
        for part in parts {
            for (p, v) in phi.iter_mut().zip(part) {
                *p += v;
            }
        }
    }

    fn shap_conditioned(
        &self,
        hot: &[bool],
        path: &mut [Elem],
        coefficients: &mut [f64],
        phi: &mut [f64],
        c: Condition,
    ) {
        self.shap_trees(&self.trees, hot, path, coefficients, phi, c);
    }

    fn shap_trees(
        &self,
        trees: &[TreeInfo],
        hot: &[bool],
        path: &mut [Elem],
        coefficients: &mut [f64],
        phi: &mut [f64],
        c: Condition,
    ) {
        let m = self.n_features;
        for t in trees {
            let out = &mut phi[t.output as usize * m..(t.output as usize + 1) * m];
            let mut walk = Walk {
                nodes: &self.nodes,
                hot,
                path,
                coefficients,
                phi: out,
                scale: self.scale,
                condition: c,
            };
            walk.recurse(0, 0, t.root, 1.0, 1.0, NONE, true, 1.0);
        }
    }

    /// SHAP interaction values of the row with hot bits `hot`, path
    /// dependent, added to `out` (`n_outputs × n_features × n_features`,
    /// output-major): entry `(i, j)` is half the interaction of features
    /// `i` and `j`, entry `(i, i)` the main effect of `i`; row `i` sums to
    /// feature `i`'s SHAP value.
    pub fn interactions(&self, hot: &[bool], scratch: &mut Scratch, out: &mut [f64]) {
        assert!(self.weighted, "interaction values need training weights");
        let m = self.n_features;
        let k = self.n_outputs();
        let mut phi = vec![0.0; k * m];
        self.shap_conditioned(
            hot,
            &mut scratch.path,
            &mut scratch.coefficients,
            &mut phi,
            Condition::None,
        );
        let used = self.used_features();
        scratch.on.resize(k * m, 0.0);
        scratch.off.resize(k * m, 0.0);
        for o in 0..k {
            for i in 0..m {
                out[o * m * m + i * m + i] += phi[o * m + i];
            }
        }
        for &i in &used {
            scratch.on.fill(0.0);
            scratch.off.fill(0.0);
            let mut on = std::mem::take(&mut scratch.on);
            let mut off = std::mem::take(&mut scratch.off);
            self.shap_conditioned(
                hot,
                &mut scratch.path,
                &mut scratch.coefficients,
                &mut on,
                Condition::On(i),
            );
            self.shap_conditioned(
                hot,
                &mut scratch.path,
                &mut scratch.coefficients,
                &mut off,
                Condition::Off(i),
            );
            for o in 0..k {
                for j in 0..m {
                    if j == i as usize {
                        continue;
                    }
                    let v = (on[o * m + j] - off[o * m + j]) / 2.0;
                    out[o * m * m + i as usize * m + j] += v;
                    out[o * m * m + i as usize * m + i as usize] -= v;
                }
            }
            scratch.on = on;
            scratch.off = off;
        }
    }

    /// The features some split reads, ascending.
    pub fn used_features(&self) -> Vec<u32> {
        let mut seen = vec![false; self.n_features];
        for n in &self.nodes {
            if n.feature != NONE {
                seen[n.feature as usize] = true;
            }
        }
        (0..self.n_features as u32)
            .filter(|&f| seen[f as usize])
            .collect()
    }

    /// Adds the interventional SHAP values of the row with hot bits `hot`
    /// against the background row with hot bits `background` to `phi`
    /// (`n_outputs × n_features`). Their sum is the row's raw score minus
    /// the background row's; averaged over a background sample, the
    /// attributions start from the sample's mean raw score.
    pub fn shap_interventional(
        &self,
        hot: &[bool],
        background: &[bool],
        weights: &Weights,
        state: &mut Vec<u8>,
        phi: &mut [f64],
    ) {
        let m = self.n_features;
        state.clear();
        state.resize(m, 0);
        let mut stack = Vec::with_capacity(2 * self.max_depth + 2);
        for t in &self.trees {
            let out = &mut phi[t.output as usize * m..(t.output as usize + 1) * m];
            let mut walk = Pair {
                nodes: &self.nodes,
                x: hot,
                r: background,
                weights,
                state,
                stack: &mut stack,
                phi: out,
                scale: self.scale,
            };
            walk.recurse(t.root, 0, 0);
        }
    }

    /// The coalition weights interventional SHAP needs for this ensemble's
    /// deepest tree.
    pub fn pair_weights(&self) -> Weights {
        Weights::new(self.max_depth + 1)
    }
}

/// The longest root-to-leaf path below node `i`, in splits; without
/// recursion, as imported trees can be arbitrarily deep.
fn depth(nodes: &[Node], i: u32) -> usize {
    let mut deepest = 0;
    let mut stack = vec![(i, 0usize)];
    while let Some((at, d)) = stack.pop() {
        let n = &nodes[at as usize];
        if n.feature == NONE {
            deepest = deepest.max(d);
        } else {
            stack.push((n.left, d + 1));
            stack.push((n.right, d + 1));
        }
    }
    deepest
}

/// Per-thread buffers for [`Ensemble::shap`] and [`Ensemble::interactions`].
#[derive(Debug, Clone)]
pub struct Scratch {
    path: Vec<Elem>,
    coefficients: Vec<f64>,
    /// Hot bits, for callers that want a buffer to fill.
    pub hot: Vec<bool>,
    on: Vec<f64>,
    off: Vec<f64>,
}

/// One feature on a path: the share of coalitions without it (`zero`) and
/// with it (`one`) that follow the path, and its permutation weight.
#[derive(Debug, Clone, Copy, Default)]
struct Elem {
    feature: u32,
    zero: f64,
    one: f64,
    weight: f64,
}

/// A feature held in or out of every coalition (interaction values).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Condition {
    None,
    On(u32),
    Off(u32),
}

impl Condition {
    fn feature(self) -> Option<u32> {
        match self {
            Condition::None => None,
            Condition::On(f) | Condition::Off(f) => Some(f),
        }
    }
}

struct Walk<'w> {
    nodes: &'w [Node],
    hot: &'w [bool],
    path: &'w mut [Elem],
    /// A leaf's weights and unwinding coefficients: 3 × [`SHORT`].
    coefficients: &'w mut [f64],
    phi: &'w mut [f64],
    scale: f64,
    condition: Condition,
}

impl Walk<'_> {
    /// Visits node `at`: the parent's path is `path[off..off + len]`; this
    /// node's is written just after it, extended with the edge that led
    /// here (`zero`, `one`, `feature`) unless `extend` is false (the edge
    /// split on the conditioned feature).
    #[allow(clippy::too_many_arguments)]
    fn recurse(
        &mut self,
        off: usize,
        len: usize,
        at: u32,
        zero: f64,
        one: f64,
        feature: u32,
        extend: bool,
        fraction: f64,
    ) {
        // No coalition follows this edge (an empty branch): nothing below
        // it is credited to anyone.
        if fraction == 0.0 || (zero == 0.0 && one == 0.0) {
            return;
        }
        let me = off + len;
        self.path.copy_within(off..off + len, me);
        let mut n = len;
        if extend {
            extend_path(&mut self.path[me..], n, zero, one, feature);
            n += 1;
        }
        let node = self.nodes[at as usize];
        if node.feature == NONE {
            let path = &self.path[me..me + n];
            let value = node.value * fraction * self.scale;
            let d = n - 1;
            if d >= SHORT {
                for i in 1..n {
                    let e = path[i];
                    let w = unwound_sum(path, i);
                    self.phi[e.feature as usize] += w * (e.one - e.zero) * value;
                }
                return;
            }
            // Each element's unwinding is a recurrence over the path's
            // weights with coefficients shared by all of them: computed
            // once per leaf, in floating point (no integer conversions in
            // the loops).
            let (w, rest) = self.coefficients.split_at_mut(SHORT);
            let (a, b) = rest.split_at_mut(SHORT);
            let mut cold = 0.0;
            for i in 0..d {
                w[i] = path[i].weight;
                a[i] = recip(i + 1);
                b[i] = (d - i) as f64 * a[i];
                // An element whose coalitions never follow the path (`one`
                // is 0: a cold branch) unwinds to a sum that does not
                // depend on it: this one, over its `zero`.
                cold += w[i] * recip(d - i);
            }
            let top = path[d].weight;
            let scale = (d + 1) as f64 * value;
            for e in &path[1..n] {
                let total = if e.one == 0.0 {
                    cold / e.zero
                } else {
                    let inv_one = 1.0 / e.one;
                    let k = inv_one * e.zero;
                    let (mut next, mut sum) = (top, 0.0);
                    for i in (0..d).rev() {
                        sum += next * a[i];
                        next = w[i] - next * (k * b[i]);
                    }
                    sum * inv_one
                };
                self.phi[e.feature as usize] += total * scale * (e.one - e.zero);
            }
            return;
        }
        let (hot, cold) = if self.hot[at as usize] {
            (node.left, node.right)
        } else {
            (node.right, node.left)
        };
        let (hot_share, cold_share) = if node.weight > 0.0 {
            (
                self.nodes[hot as usize].weight / node.weight,
                self.nodes[cold as usize].weight / node.weight,
            )
        } else {
            (0.5, 0.5)
        };
        // A feature met again is taken off the path, then put back with
        // the shares it had: a coalition has a feature or not, once.
        let (mut in_zero, mut in_one) = (1.0, 1.0);
        if let Some(k) = (1..n).find(|&k| self.path[me + k].feature == node.feature) {
            in_zero = self.path[me + k].zero;
            in_one = self.path[me + k].one;
            unwind_path(&mut self.path[me..me + n], k);
            n -= 1;
        }
        let (mut hot_fraction, mut cold_fraction) = (fraction, fraction);
        let conditioned = self.condition.feature() == Some(node.feature);
        match self.condition {
            Condition::On(_) if conditioned => cold_fraction = 0.0,
            Condition::Off(_) if conditioned => {
                hot_fraction *= hot_share;
                cold_fraction *= cold_share;
            }
            _ => {}
        }
        let f = node.feature;
        self.recurse(
            me,
            n,
            hot,
            hot_share * in_zero,
            in_one,
            f,
            !conditioned,
            hot_fraction,
        );
        self.recurse(
            me,
            n,
            cold,
            cold_share * in_zero,
            0.0,
            f,
            !conditioned,
            cold_fraction,
        );
    }
}

/// Appends an element to the path `path[..n]`, updating the permutation
/// weights.
#[inline]
fn extend_path(path: &mut [Elem], n: usize, zero: f64, one: f64, feature: u32) {
    path[n] = Elem {
        feature,
        zero,
        one,
        weight: if n == 0 { 1.0 } else { 0.0 },
    };
    let inv = recip(n + 1);
    let (one, zero) = (one * inv, zero * inv);
    for i in (0..n).rev() {
        path[i + 1].weight += one * path[i].weight * (i + 1) as f64;
        path[i].weight = zero * path[i].weight * (n - i) as f64;
    }
}

/// Removes element `k` from the path (all of `path`), undoing its
/// extension.
#[inline]
fn unwind_path(path: &mut [Elem], k: usize) {
    let d = path.len() - 1;
    let (one, zero) = (path[k].one, path[k].zero);
    let mut next = path[d].weight;
    let dd = (d + 1) as f64;
    let inv_dd = recip(d + 1);
    if one != 0.0 {
        let scale = dd / one;
        for i in (0..d).rev() {
            let t = path[i].weight;
            path[i].weight = next * scale * recip(i + 1);
            next = t - path[i].weight * zero * (d - i) as f64 * inv_dd;
        }
    } else {
        let scale = dd / zero;
        for i in (0..d).rev() {
            path[i].weight *= scale * recip(d - i);
        }
    }
    for i in k..d {
        path[i].feature = path[i + 1].feature;
        path[i].zero = path[i + 1].zero;
        path[i].one = path[i + 1].one;
    }
}

/// The total permutation weight of the path without element `k`.
#[inline]
fn unwound_sum(path: &[Elem], k: usize) -> f64 {
    let d = path.len() - 1;
    let (one, zero) = (path[k].one, path[k].zero);
    let mut next = path[d].weight;
    let mut total = 0.0;
    if one != 0.0 {
        let inv_one = 1.0 / one;
        for i in (0..d).rev() {
            let t = next * recip(i + 1) * inv_one;
            total += t;
            next = path[i].weight - t * zero * (d - i) as f64;
        }
    } else {
        let inv_zero = 1.0 / zero;
        for i in (0..d).rev() {
            total += path[i].weight * recip(d - i);
        }
        total *= inv_zero;
    }
    total * (d + 1) as f64
}

/// `w[a][b] = a! b! / (a + b + 1)!`: the weight of one ordering class in
/// interventional SHAP.
#[derive(Debug, Clone)]
pub struct Weights {
    n: usize,
    w: Vec<f64>,
}

impl Weights {
    fn new(n: usize) -> Weights {
        let mut w = vec![0.0; (n + 1) * (n + 1)];
        for a in 0..=n {
            for b in 0..=n {
                w[a * (n + 1) + b] = if a == 0 && b == 0 {
                    1.0
                } else if a > 0 {
                    w[(a - 1) * (n + 1) + b] * a as f64 / (a + b + 1) as f64
                } else {
                    w[b - 1] * b as f64 / (b + 1) as f64
                };
            }
        }
        Weights { n, w }
    }

    #[inline]
    fn get(&self, a: usize, b: usize) -> f64 {
        self.w[a * (self.n + 1) + b]
    }
}

/// One walk of interventional SHAP: row `x` against background row `r`.
struct Pair<'w> {
    nodes: &'w [Node],
    x: &'w [bool],
    r: &'w [bool],
    weights: &'w Weights,
    /// Per feature: 0 not met where the rows part, 1 taken from `x`, 2
    /// from `r`.
    state: &'w mut [u8],
    /// The features in states 1 and 2, in the order they were met.
    stack: &'w mut Vec<u32>,
    phi: &'w mut [f64],
    scale: f64,
}

impl Pair<'_> {
    /// `a` features on the path come from `x`, `b` from `r`.
    fn recurse(&mut self, at: u32, a: usize, b: usize) {
        let node = self.nodes[at as usize];
        if node.feature == NONE {
            let v = node.value * self.scale;
            if v == 0.0 || a + b == 0 {
                return;
            }
            let credit = if a > 0 {
                self.weights.get(a - 1, b) * v
            } else {
                0.0
            };
            let debit = if b > 0 {
                self.weights.get(a, b - 1) * v
            } else {
                0.0
            };
            for &f in self.stack.iter() {
                if self.state[f as usize] == 1 {
                    self.phi[f as usize] += credit;
                } else {
                    self.phi[f as usize] -= debit;
                }
            }
            return;
        }
        let child = |left: bool| if left { node.left } else { node.right };
        let (gx, gr) = (self.x[at as usize], self.r[at as usize]);
        if gx == gr {
            return self.recurse(child(gx), a, b);
        }
        let f = node.feature as usize;
        match self.state[f] {
            1 => self.recurse(child(gx), a, b),
            2 => self.recurse(child(gr), a, b),
            _ => {
                self.stack.push(f as u32);
                self.state[f] = 1;
                self.recurse(child(gx), a + 1, b);
                self.state[f] = 2;
                self.recurse(child(gr), a, b + 1);
                self.state[f] = 0;
                self.stack.pop();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kiln_ml::gbdt::tree::{Leaf, Node as KilnNode, SplitRule, Tree};
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
            t.nodes.push(KilnNode {
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

    /// A one-output model of `trees` (init score 0.25) over `m` features.
    fn model(trees: Vec<Tree>, m: usize) -> Gbdt {
        Gbdt {
            objective: kiln_ml::gbdt::Objective::L2,
            init_scores: vec![0.25],
            trees,
            feature_kinds: vec![kiln_ml::FeatureKind::Numeric; m],
            valid_loss: Vec::new(),
        }
    }

    fn features(rows: &[Vec<f64>]) -> Features {
        let m = rows[0].len();
        Features {
            names: (0..m).map(|i| format!("x{i}")).collect(),
            columns: (0..m)
                .map(|j| kiln_ml::Column::Numeric(rows.iter().map(|r| r[j]).collect()))
                .collect(),
        }
    }

    /// The ensemble's value when the features in coalition `s` take the
    /// row's path (hot bits `x`) and the others follow `other`: the
    /// training weights (`None`, path dependent) or a background row.
    fn value(e: &Ensemble, x: &[bool], other: Option<&[bool]>, s: u32) -> f64 {
        fn walk(e: &Ensemble, x: &[bool], other: Option<&[bool]>, s: u32, i: u32) -> f64 {
            let n = e.nodes[i as usize];
            if n.feature == NONE {
                return n.value;
            }
            let go = |left: bool| walk(e, x, other, s, if left { n.left } else { n.right });
            if s & (1 << n.feature) != 0 {
                return go(x[i as usize]);
            }
            match other {
                Some(r) => go(r[i as usize]),
                None => {
                    let (l, r) = (e.nodes[n.left as usize], e.nodes[n.right as usize]);
                    (l.weight * go(true) + r.weight * go(false)) / n.weight
                }
            }
        }
        e.base[0]
            + e.trees
                .iter()
                .map(|t| walk(e, x, other, s, t.root))
                .sum::<f64>()
    }

    fn fact(k: u32) -> f64 {
        (1..=k).map(f64::from).product()
    }

    /// Shapley values by their definition: every coalition.
    fn brute_force(v: &dyn Fn(u32) -> f64, m: u32) -> Vec<f64> {
        (0..m)
            .map(|i| {
                (0..1u32 << m)
                    .filter(|s| s & (1 << i) == 0)
                    .map(|s| {
                        let k = s.count_ones();
                        fact(k) * fact(m - k - 1) / fact(m) * (v(s | 1 << i) - v(s))
                    })
                    .sum()
            })
            .collect()
    }

    /// Shapley interaction values by their definition; the diagonal is
    /// the rest of each feature's Shapley value.
    fn brute_interactions(v: &dyn Fn(u32) -> f64, m: u32) -> Vec<f64> {
        let phi = brute_force(v, m);
        let mut out = vec![0.0; (m * m) as usize];
        for i in 0..m {
            for j in 0..m {
                if i == j {
                    continue;
                }
                let mut total = 0.0;
                for s in 0..1u32 << m {
                    if s & (1 << i | 1 << j) != 0 {
                        continue;
                    }
                    let k = s.count_ones();
                    let w = fact(k) * fact(m - k - 2) / (2.0 * fact(m - 1));
                    total += w * (v(s | 1 << i | 1 << j) - v(s | 1 << i) - v(s | 1 << j) + v(s));
                }
                out[(i * m + j) as usize] = total;
            }
        }
        for i in 0..m as usize {
            let off: f64 = (0..m as usize)
                .filter(|&j| j != i)
                .map(|j| out[i * m as usize + j])
                .sum();
            out[i * m as usize + i] = phi[i] - off;
        }
        out
    }

    fn close(a: &[f64], b: &[f64], tol: f64) -> bool {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() < tol)
    }

    /// A random case: `trees` trees of `depth` levels over `m` features,
    /// and `rows` random rows with their hot bits.
    struct Case {
        gbdt: Gbdt,
        e: Ensemble,
        f: Features,
        hot: Vec<Vec<bool>>,
    }

    fn random_case(rng: &mut SmallRng, m: u32, trees: u32, depth: usize, rows: usize) -> Case {
        let trees = (0..trees).map(|_| random_tree(rng, m, depth)).collect();
        let gbdt = model(trees, m as usize);
        let e = Ensemble::from_gbdt(&gbdt, m as usize);
        let x: Vec<Vec<f64>> = (0..rows)
            .map(|_| (0..m).map(|_| rng.random()).collect())
            .collect();
        let f = features(&x);
        let hot = (0..rows)
            .map(|r| {
                let mut hot = Vec::new();
                e.hot(Row::Features(&f, r), &mut hot);
                hot
            })
            .collect();
        Case { gbdt, e, f, hot }
    }

    #[test]
    fn path_dependent_values_equal_the_shapley_values_by_definition() {
        let mut rng = SmallRng::seed_from_u64(42);
        for case in 0..200u32 {
            let m = 1 + case % 5;
            let Case { gbdt, e, f, hot } =
                random_case(&mut rng, m, 1 + case % 3, 1 + (case as usize % 6), 1);
            let hot = &hot[0];
            let mut scratch = e.scratch();
            let mut phi = vec![0.0; m as usize];
            e.shap(hot, &mut scratch, &mut phi);
            let expected = brute_force(&|s| value(&e, hot, None, s), m);
            assert!(
                close(&phi, &expected, 1e-10),
                "case {case}: {phi:?} vs {expected:?}"
            );
            // They add up to the prediction.
            let total = e.expected_value()[0] + phi.iter().sum::<f64>();
            assert!((total - e.predict(hot)[0]).abs() < 1e-10);
            assert!((e.predict(hot)[0] - gbdt.predict_raw(&f)[0]).abs() < 1e-12);
        }
    }

    #[test]
    fn interaction_values_equal_the_shapley_interaction_index() {
        let mut rng = SmallRng::seed_from_u64(5);
        for case in 0..120u32 {
            let m = 2 + case % 4;
            let Case { e, hot, .. } =
                random_case(&mut rng, m, 1 + case % 2, 2 + (case as usize % 5), 1);
            let hot = &hot[0];
            let mut scratch = e.scratch();
            let mut out = vec![0.0; (m * m) as usize];
            e.interactions(hot, &mut scratch, &mut out);
            let expected = brute_interactions(&|s| value(&e, hot, None, s), m);
            assert!(
                close(&out, &expected, 1e-10),
                "case {case}: {out:?} vs {expected:?}"
            );
        }
    }

    #[test]
    fn interventional_values_equal_the_shapley_values_by_definition() {
        let mut rng = SmallRng::seed_from_u64(9);
        for case in 0..200u32 {
            let m = 1 + case % 5;
            let Case { e, hot, .. } =
                random_case(&mut rng, m, 1 + case % 3, 1 + (case as usize % 6), 2);
            let (hx, hr) = (&hot[0], &hot[1]);
            let mut phi = vec![0.0; m as usize];
            let mut state = Vec::new();
            e.shap_interventional(hx, hr, &e.pair_weights(), &mut state, &mut phi);
            let expected = brute_force(&|s| value(&e, hx, Some(hr), s), m);
            assert!(
                close(&phi, &expected, 1e-10),
                "case {case}: {phi:?} vs {expected:?}"
            );
            let gap = e.predict(hx)[0] - e.predict(hr)[0];
            assert!((phi.iter().sum::<f64>() - gap).abs() < 1e-10);
        }
    }

    #[test]
    fn a_boosted_models_attributions_add_up_to_its_raw_score() {
        use kiln_ml::gbdt::GbdtParams;
        let mut rng = SmallRng::seed_from_u64(3);
        let n = 600;
        let rows: Vec<Vec<f64>> = (0..n)
            .map(|_| (0..4).map(|_| rng.random::<f64>()).collect())
            .collect();
        // The target ignores the last feature.
        let y: Vec<f64> = rows
            .iter()
            .map(|r| 3.0 * r[0] - 2.0 * r[1] * r[2] + 0.1 * rng.random::<f64>())
            .collect();
        let f = features(&rows);
        let gbdt = Gbdt::fit(&f, &y, &GbdtParams::default(), None).unwrap();
        let e = Ensemble::from_gbdt(&gbdt, 4);
        let raw = gbdt.predict_raw(&f);
        let mut scratch = e.scratch();
        let mut hot = Vec::new();
        let mut mean_abs = [0.0; 4];
        for (row, raw) in raw.iter().enumerate().step_by(7) {
            e.hot(Row::Features(&f, row), &mut hot);
            let mut phi = vec![0.0; 4];
            e.shap(&hot, &mut scratch, &mut phi);
            let total = e.expected_value()[0] + phi.iter().sum::<f64>();
            assert!((total - raw).abs() < 1e-9, "row {row}: {total} vs {raw}");
            for (m, p) in mean_abs.iter_mut().zip(&phi) {
                *m += p.abs();
            }
        }
        // x0 matters most on average; x3 carries nearly nothing.
        assert!(
            mean_abs[0] > mean_abs[1] && mean_abs[1] > mean_abs[3],
            "{mean_abs:?}"
        );
    }

    #[test]
    fn trees_shared_out_among_threads_give_the_same_values() {
        let mut rng = SmallRng::seed_from_u64(11);
        let trees = (0..64).map(|_| random_tree(&mut rng, 6, 7)).collect();
        let gbdt = model(trees, 6);
        let e = Ensemble::from_gbdt(&gbdt, 6);
        let x: Vec<f64> = (0..6).map(|_| rng.random()).collect();
        let f = features(std::slice::from_ref(&x));
        let mut hot = Vec::new();
        e.hot(Row::Features(&f, 0), &mut hot);
        let mut one = vec![0.0; 6];
        e.shap(&hot, &mut e.scratch(), &mut one);
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap();
        let mut split = vec![0.0; 6];
        pool.install(|| e.shap_split(&hot, &mut split));
        assert!(close(&one, &split, 1e-10), "{one:?} vs {split:?}");
        assert!(one.iter().any(|v| v.abs() > 1e-3));
    }

    #[test]
    fn a_tree_deeper_than_the_walks_go_is_not_walkable() {
        // A chain of 600 splits: each left child is a leaf.
        let mut t = Tree {
            nodes: Vec::new(),
            leaves: Vec::new(),
        };
        for i in 0..600 {
            t.leaves.push(Leaf {
                value: i as f64,
                cover: 1.0,
                count: 1,
            });
            let right = if i + 1 < 600 { i + 1 } else { !600 };
            t.nodes.push(KilnNode {
                feature: 0,
                rule: SplitRule::Numeric {
                    threshold: i as f64,
                },
                missing_left: true,
                left: !i,
                right,
                gain: 0.0,
                cover: (601 - i) as f64,
                count: (601 - i) as u64,
            });
        }
        t.leaves.push(Leaf {
            value: 600.0,
            cover: 1.0,
            count: 1,
        });
        let gbdt = model(vec![t], 1);
        let e = Ensemble::from_gbdt(&gbdt, 1);
        assert_eq!(e.max_depth(), 600);
        assert!(!e.walkable());
        let shallow = model(vec![random_tree(&mut SmallRng::seed_from_u64(1), 2, 5)], 2);
        assert!(Ensemble::from_gbdt(&shallow, 2).walkable());
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
        let gbdt = model(vec![t], 2);
        let e = Ensemble::from_gbdt(&gbdt, 2);
        let mut phi = vec![0.0; 2];
        e.shap(&[false], &mut e.scratch(), &mut phi);
        assert_eq!(phi, vec![0.0, 0.0]);
        assert_eq!(e.expected_value(), vec![3.25]);
    }
}
