//! An isolation forest: outlier scores for input rows, fitted at training
//! time and stored in the reference profile.
//!
//! # Method
//!
//! Liu, Ting and Zhou, "Isolation Forest" (ICDM 2008), and "Isolation-Based
//! Anomaly Detection" (ACM TKDD 6(1), 2012). Outliers are few and different,
//! so random axis-parallel cuts separate them from the rest in fewer steps
//! than they need for a typical row. Each tree is grown on a subsample of
//! `ψ = min(sample, n)` training rows drawn without replacement: at each node
//! it picks a column uniformly among those that still vary in the node, and a
//! cut uniformly between that column's minimum and maximum in the node, until
//! a node holds one row or reaches the height limit `⌈log₂ ψ⌉`. The path
//! length `h(x)` of a row in a tree is the depth of the leaf it lands in plus
//! `c(size)`, the average path length of an unsuccessful search in a binary
//! search tree of `size` keys, which stands in for the subtree the height
//! limit cut off:
//!
//! ```text
//! c(n) = 2 H(n - 1) - 2 (n - 1) / n   (n > 2),   c(2) = 1,   c(n ≤ 1) = 0
//! H(i) ≈ ln i + 0.5772156649          (Euler's constant)
//! ```
//!
//! The anomaly score of a row is `s = 2^(-E[h(x)] / c(ψ))`, averaging `h` over
//! the trees: near 1 for rows isolated quickly, 0.5 and below for ordinary
//! rows. The forest also stores a threshold, the `1 - contamination` quantile
//! of the training rows' own scores, so that a row scoring above it is an
//! outlier by the training data's standard.
//!
//! # Missing values
//!
//! NaN (and, since a cut needs finite bounds, ±∞) counts as missing. Fitting
//! and scoring both replace a missing value with the column's median over the
//! training rows, so a row of missing values scores like the median row. A
//! column missing in every training row is imputed with 0 and so never splits.
//!
//! # Determinism and storage
//!
//! Tree `t` draws from its own small generator seeded by the seed and `t`, so
//! the same data and seed give the same forest whatever the thread count.
//! Trees are flat arrays of nodes, children after their parent, which keeps
//! the JSON compact; loading checks the arrays so a damaged profile is an
//! error rather than a panic at scoring time.
//!
//! ```
//! use kiln_monitor::iforest::{ForestParams, IsolationForest};
//!
//! // 1,000 points of a disc of radius 10 (a Vogel spiral).
//! let (x, y): (Vec<f64>, Vec<f64>) = (0..1000)
//!     .map(|i| {
//!         let (r, angle) = ((i as f64 / 10.0).sqrt(), i as f64 * 2.399_963);
//!         (r * angle.cos(), r * angle.sin())
//!     })
//!     .unzip();
//! let names = ["x".to_string(), "y".to_string()];
//! let forest = IsolationForest::fit(&names, &[&x, &y], &ForestParams::default()).unwrap();
//! assert!(forest.is_outlier(&[40.0, -30.0]));
//! assert!(!forest.is_outlier(&[1.0, 2.0]));
//! assert!(!forest.is_outlier(&[f64::NAN, f64::NAN])); // imputed with the medians
//! ```

use std::collections::HashSet;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// `feature` of a leaf node.
const LEAF: u32 = u32::MAX;

/// Rows scored together against one tree at a time, so that the tree stays
/// in L1 cache while the rows' values stay in L2.
const BLOCK: usize = 64;

/// Rows per rayon task when scoring in parallel.
const CHUNK: usize = 1024;

/// Rows descending a tree in lockstep: independent descents let the CPU
/// overlap their memory loads instead of waiting on one chain at a time.
const LANES: usize = 8;

const _: () = assert!(
    BLOCK.is_multiple_of(LANES),
    "a block is whole groups of lanes"
);

/// Below this many rows, scoring stays on the calling thread.
const PARALLEL_ROWS: usize = 4096;

/// Euler–Mascheroni constant, for the harmonic-number approximation in
/// [`average_path_length`].
const EULER_GAMMA: f64 = 0.577_215_664_901_532_9;

/// Hyperparameters of [`IsolationForest::fit`].
#[derive(Debug, Clone, Copy)]
pub struct ForestParams {
    /// Number of trees; the paper finds path lengths converge well before
    /// 100.
    pub trees: usize,
    /// Rows drawn (without replacement) to grow each tree, at least 2; 256 in
    /// the paper. Datasets with fewer rows use all of them.
    pub sample: usize,
    /// Seed of the random choices; equal seeds and data give equal forests.
    pub seed: u64,
    /// Expected fraction of outliers among the training rows, in `[0, 0.5]`:
    /// the threshold is the `1 - contamination` quantile of their scores.
    pub contamination: f64,
}

impl Default for ForestParams {
    fn default() -> Self {
        Self {
            trees: 100,
            sample: 256,
            seed: 0,
            contamination: 0.01,
        }
    }
}

/// Why an isolation forest could not be fitted or loaded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ForestError {
    /// No feature columns were given.
    #[error("No columns to fit an isolation forest on; pass at least one numeric feature column")]
    NoColumns,
    /// The number of names differs from the number of columns.
    #[error("Got `{names}` column names for `{columns}` columns; pass one name per column")]
    NameCount {
        /// Names given.
        names: usize,
        /// Columns given.
        columns: usize,
    },
    /// The columns do not all have the same length.
    #[error(
        "Column `{name}` has `{len}` rows but column `{first}` has `{expected}`; pass columns of one table, all the same length"
    )]
    Ragged {
        /// The column whose length differs.
        name: String,
        /// Its length.
        len: usize,
        /// The first column, whose length the others must match.
        first: String,
        /// The first column's length.
        expected: usize,
    },
    /// Fewer than two rows.
    #[error("Cannot fit an isolation forest on `{rows}` rows; it needs at least `2`")]
    TooFewRows {
        /// Rows given.
        rows: usize,
    },
    /// Every value of every column is missing, so there is nothing to learn.
    #[error(
        "Every value of every column is missing (NaN or infinite); check that the numeric columns were read correctly"
    )]
    AllMissing,
    /// `trees` is 0.
    #[error(
        "An isolation forest needs at least one tree, got `trees = 0`; the usual choice is `100`"
    )]
    NoTrees,
    /// `sample` is below 2.
    #[error("Subsample size `{0}` is too small; use at least `2` (the usual choice is `256`)")]
    SampleTooSmall(usize),
    /// `contamination` is outside `[0, 0.5]` (or NaN).
    #[error(
        "Contamination `{0}` is outside `[0, 0.5]`; it is the expected fraction of outliers among the training rows, e.g. `0.01`"
    )]
    InvalidContamination(f64),
    /// A stored forest is inconsistent (a damaged or hand-edited profile).
    #[error("The stored isolation forest is invalid: {0}; fit the reference profile again")]
    Invalid(String),
}

/// A fitted isolation forest: per-column medians for imputation, the trees
/// and the outlier threshold. Serialises to compact JSON for the reference
/// profile; see the [module docs](self) for the method.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(try_from = "ForestRepr")]
pub struct IsolationForest {
    /// Feature names, in the order rows give their values.
    columns: Vec<String>,
    /// Median of each column over the training rows, imputed for missing
    /// values (0 for a column with no values).
    medians: Vec<f64>,
    /// Rows each tree was grown on, `ψ = min(sample, n)`; `c(ψ)` normalises
    /// path lengths.
    sample: usize,
    /// The contamination the threshold was computed for.
    contamination: f64,
    /// Score above which a row is an outlier.
    threshold: f64,
    /// The trees.
    trees: Vec<Tree>,
}

/// One isolation tree as parallel arrays indexed by node; node 0 is the
/// root, and children always come after their parent.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
struct Tree {
    /// Column an internal node splits on; [`LEAF`] at a leaf.
    feature: Vec<u32>,
    /// At an internal node, the cut: rows with a value below it go left,
    /// the others right. At a leaf, the path length credited to rows that
    /// end there: its depth plus `c(size)`.
    value: Vec<f64>,
    /// At an internal node, the index of the left child (the right child is
    /// the next node). At a leaf, the number of subsample rows it holds.
    child: Vec<u32>,
    /// The nodes packed for scoring (see [`Tree::pack`]); not stored.
    #[serde(skip)]
    nodes: Vec<Node>,
    /// Depth of the deepest leaf; not stored.
    #[serde(skip)]
    depth: usize,
}

/// A node as scoring reads it: one 16-byte load per step. A leaf points to
/// itself with a cut of +∞, so every (finite, imputed) value goes "left"
/// back to the leaf and a descent can take a fixed number of steps without
/// testing for leaves.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Node {
    /// Rows with `row[feature] < cut` go to `child`, the others to
    /// `child + 1`.
    cut: f64,
    /// Column compared.
    feature: u32,
    /// Left child.
    child: u32,
}

/// The serialised form of [`IsolationForest`], checked before use.
#[derive(Deserialize)]
struct ForestRepr {
    columns: Vec<String>,
    medians: Vec<f64>,
    sample: usize,
    contamination: f64,
    threshold: f64,
    trees: Vec<Tree>,
}

impl TryFrom<ForestRepr> for IsolationForest {
    type Error = ForestError;

    fn try_from(repr: ForestRepr) -> Result<Self, ForestError> {
        let invalid = |what: String| Err(ForestError::Invalid(what));
        if repr.medians.len() != repr.columns.len() {
            return invalid(format!(
                "`{}` medians for `{}` columns",
                repr.medians.len(),
                repr.columns.len()
            ));
        }
        if repr.medians.iter().any(|m| !m.is_finite()) {
            return invalid("a column median is not finite".to_string());
        }
        if repr.sample < 2 {
            return invalid(format!("subsample size `{}` is below 2", repr.sample));
        }
        if !repr.threshold.is_finite() {
            return invalid("the threshold is not finite".to_string());
        }
        if repr.trees.is_empty() {
            return invalid("it has no trees".to_string());
        }
        let mut trees = repr.trees;
        for (t, tree) in trees.iter_mut().enumerate() {
            if let Err(why) = tree.check(repr.columns.len()) {
                return invalid(format!("tree `{t}` {why}"));
            }
            tree.pack();
        }
        Ok(Self {
            columns: repr.columns,
            medians: repr.medians,
            sample: repr.sample,
            contamination: repr.contamination,
            threshold: repr.threshold,
            trees,
        })
    }
}

impl IsolationForest {
    /// Fits a forest to `columns`, column-major numeric features of equal
    /// length with NaN for missing values, named by `names` (one per
    /// column), and computes the outlier threshold from the training rows'
    /// scores.
    ///
    /// # Errors
    ///
    /// When there are no columns, the names do not match the columns, the
    /// columns are ragged, there are fewer than two rows, every value is
    /// missing, or `params` is out of range.
    pub fn fit(
        names: &[String],
        columns: &[&[f64]],
        params: &ForestParams,
    ) -> Result<Self, ForestError> {
        if params.trees == 0 {
            return Err(ForestError::NoTrees);
        }
        if params.sample < 2 {
            return Err(ForestError::SampleTooSmall(params.sample));
        }
        if !(0.0..=0.5).contains(&params.contamination) {
            return Err(ForestError::InvalidContamination(params.contamination));
        }
        let Some(first) = columns.first() else {
            return Err(ForestError::NoColumns);
        };
        if names.len() != columns.len() {
            return Err(ForestError::NameCount {
                names: names.len(),
                columns: columns.len(),
            });
        }
        let rows = first.len();
        if let Some((name, column)) = names
            .iter()
            .zip(columns)
            .find(|(_, column)| column.len() != rows)
        {
            return Err(ForestError::Ragged {
                name: name.clone(),
                len: column.len(),
                first: names[0].clone(),
                expected: rows,
            });
        }
        if rows < 2 {
            return Err(ForestError::TooFewRows { rows });
        }

        let medians: Vec<Option<f64>> = columns.par_iter().map(|c| median_of_present(c)).collect();
        if medians.iter().all(Option::is_none) {
            return Err(ForestError::AllMissing);
        }
        let medians: Vec<f64> = medians.into_iter().map(|m| m.unwrap_or(0.0)).collect();

        let sample = params.sample.min(rows);
        let height = sample.next_power_of_two().trailing_zeros() as usize;
        let trees = (0..params.trees)
            .into_par_iter()
            .map(|t| {
                let mut rng = SplitMix64::for_stream(params.seed, t as u64);
                Tree::grow(columns, &medians, sample, height, &mut rng)
            })
            .collect();

        let mut forest = Self {
            columns: names.to_vec(),
            medians,
            sample,
            contamination: params.contamination,
            threshold: 0.0,
            trees,
        };
        let mut scores = forest.score_columns(columns);
        forest.threshold = quantile(&mut scores, 1.0 - params.contamination);
        Ok(forest)
    }

    /// Feature names, in the order [`score`](Self::score) and
    /// [`score_columns`](Self::score_columns) take values.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Anomaly score in `(0, 1)` of one row, its values in
    /// [`columns`](Self::columns) order with NaN for missing:
    /// `2^(-E[h(x)] / c(ψ))`. Above 0.5 the row is isolated faster than
    /// average; compare with [`threshold`](Self::threshold).
    ///
    /// # Panics
    ///
    /// When `row` does not have one value per column.
    pub fn score(&self, row: &[f64]) -> f64 {
        assert_eq!(
            row.len(),
            self.columns.len(),
            "a row to score needs one value per forest column"
        );
        let row: Vec<f64> = row
            .iter()
            .zip(&self.medians)
            .map(|(&x, &median)| impute(x, median))
            .collect();
        let total: f64 = self
            .trees
            .iter()
            .map(|tree| tree.value[tree.descend(&row)])
            .sum();
        self.normalise(total)
    }

    /// Scores of many rows given as column-major `columns` in
    /// [`columns`](Self::columns) order; the same numbers as
    /// [`score`](Self::score) row by row. Runs in parallel over rows above a
    /// few thousand rows.
    ///
    /// # Panics
    ///
    /// When there is not one column per forest column, or the columns have
    /// different lengths.
    pub fn score_columns(&self, columns: &[&[f64]]) -> Vec<f64> {
        assert_eq!(
            columns.len(),
            self.columns.len(),
            "scoring needs one column per forest column"
        );
        let rows = columns.first().map_or(0, |c| c.len());
        assert!(
            columns.iter().all(|c| c.len() == rows),
            "columns to score must all have the same length"
        );
        let mut scores = vec![0.0; rows];
        if rows >= PARALLEL_ROWS {
            scores
                .par_chunks_mut(CHUNK)
                .enumerate()
                .for_each(|(i, out)| self.score_rows(columns, i * CHUNK, out));
        } else {
            self.score_rows(columns, 0, &mut scores);
        }
        scores
    }

    /// The score above which a row is an outlier: the
    /// `1 - contamination` quantile of the training rows' scores.
    pub fn threshold(&self) -> f64 {
        self.threshold
    }

    /// Whether `row` (as for [`score`](Self::score)) scores above the
    /// [`threshold`](Self::threshold).
    pub fn is_outlier(&self, row: &[f64]) -> bool {
        self.score(row) > self.threshold()
    }

    /// Scores rows `start..start + out.len()` of `columns` into `out`, a
    /// block of rows at a time, each block through every tree in turn.
    fn score_rows(&self, columns: &[&[f64]], start: usize, out: &mut [f64]) {
        let width = self.columns.len();
        // Rows past the end of a short last block stay 0 and are not read
        // back.
        let mut block = vec![0.0; BLOCK * width];
        for (b, out) in out.chunks_mut(BLOCK).enumerate() {
            let first = start + b * BLOCK;
            // Row-major copy of the block, imputed once for all trees.
            for (j, (column, &median)) in columns.iter().zip(&self.medians).enumerate() {
                for (i, &x) in column[first..first + out.len()].iter().enumerate() {
                    block[i * width + j] = impute(x, median);
                }
            }
            let mut totals = [0.0; BLOCK];
            for tree in &self.trees {
                for (totals, rows) in totals
                    .chunks_exact_mut(LANES)
                    .zip(block.chunks_exact(LANES * width))
                {
                    let leaves = tree.descend_lanes(rows, width);
                    for (total, leaf) in totals.iter_mut().zip(leaves) {
                        *total += tree.value[leaf];
                    }
                }
            }
            for (score, &total) in out.iter_mut().zip(&totals) {
                *score = self.normalise(total);
            }
        }
    }

    /// The score for a path length summed over all trees.
    fn normalise(&self, total: f64) -> f64 {
        let mean = total / self.trees.len() as f64;
        (-mean / average_path_length(self.sample)).exp2()
    }
}

impl Tree {
    /// Grows a tree on `sample` rows of `columns` drawn without replacement,
    /// splitting no deeper than `height`.
    fn grow(
        columns: &[&[f64]],
        medians: &[f64],
        sample: usize,
        height: usize,
        rng: &mut SplitMix64,
    ) -> Self {
        let width = columns.len();
        let picked = sample_without_replacement(rng, columns[0].len(), sample);
        // Row-major, imputed copy of the subsample.
        let mut data = Vec::with_capacity(sample * width);
        for &r in &picked {
            data.extend(columns.iter().zip(medians).map(|(c, &m)| impute(c[r], m)));
        }
        let mut order: Vec<usize> = (0..sample).collect();

        let mut tree = Self::default();
        tree.push_node();
        let mut low = vec![0.0; width];
        let mut high = vec![0.0; width];
        let mut varying = Vec::with_capacity(width);
        // (node, rows order[start..end], depth)
        let mut pending = vec![(0, 0, sample, 0)];
        while let Some((node, start, end, depth)) = pending.pop() {
            let rows = &mut order[start..end];
            if depth >= height || rows.len() <= 1 {
                tree.set_leaf(node, depth, rows.len());
                continue;
            }
            low.fill(f64::INFINITY);
            high.fill(f64::NEG_INFINITY);
            for &r in rows.iter() {
                let row = &data[r * width..(r + 1) * width];
                for ((lo, hi), &x) in low.iter_mut().zip(high.iter_mut()).zip(row) {
                    *lo = lo.min(x);
                    *hi = hi.max(x);
                }
            }
            varying.clear();
            varying.extend((0..width).filter(|&j| high[j] > low[j]));
            if varying.is_empty() {
                tree.set_leaf(node, depth, rows.len());
                continue;
            }
            let j = varying[rng.below(varying.len())];
            let u = rng.unit();
            // Interpolating this way cannot overflow for wide ranges.
            let mut cut = low[j] * (1.0 - u) + high[j] * u;
            // Keep both sides non-empty despite rounding: `cut` in (low, high].
            if cut <= low[j] || cut > high[j] {
                cut = high[j];
            }
            let left_len = partition(rows, |r| data[r * width + j] < cut);
            let left = tree.push_node();
            tree.push_node();
            tree.feature[node] = j as u32;
            tree.value[node] = cut;
            tree.child[node] = left as u32;
            pending.push((left + 1, start + left_len, end, depth + 1));
            pending.push((left, start, start + left_len, depth + 1));
        }
        tree.pack();
        tree
    }

    /// Appends a placeholder node and returns its index.
    fn push_node(&mut self) -> usize {
        self.feature.push(LEAF);
        self.value.push(0.0);
        self.child.push(0);
        self.feature.len() - 1
    }

    /// Makes `node` a leaf at `depth` holding `size` rows.
    fn set_leaf(&mut self, node: usize, depth: usize, size: usize) {
        self.feature[node] = LEAF;
        self.value[node] = depth as f64 + average_path_length(size);
        self.child[node] = size as u32;
    }

    /// Fills in the scoring form of the tree, [`Tree::nodes`] and
    /// [`Tree::depth`], from the stored arrays (checked, or just grown).
    fn pack(&mut self) {
        let mut depths = vec![0; self.feature.len()];
        self.nodes = Vec::with_capacity(self.feature.len());
        for node in 0..self.feature.len() {
            if self.feature[node] == LEAF {
                self.nodes.push(Node {
                    cut: f64::INFINITY,
                    feature: 0,
                    child: node as u32,
                });
            } else {
                let child = self.child[node];
                depths[child as usize] = depths[node] + 1;
                depths[child as usize + 1] = depths[node] + 1;
                self.nodes.push(Node {
                    cut: self.value[node],
                    feature: self.feature[node],
                    child,
                });
            }
        }
        self.depth = depths.into_iter().max().unwrap_or(0);
    }

    /// One step down from `node` for `row`.
    #[inline(always)]
    fn step(&self, node: u32, row: &[f64]) -> u32 {
        let node = self.nodes[node as usize];
        node.child + u32::from(row[node.feature as usize] >= node.cut)
    }

    /// The leaf an imputed row lands in.
    fn descend(&self, row: &[f64]) -> usize {
        let mut node = 0;
        for _ in 0..self.depth {
            node = self.step(node, row);
        }
        node as usize
    }

    /// The leaves [`LANES`] imputed rows of `width` values, stored one after
    /// another in `rows`, land in.
    #[inline]
    fn descend_lanes(&self, rows: &[f64], width: usize) -> [usize; LANES] {
        let mut nodes = [0; LANES];
        for _ in 0..self.depth {
            for (lane, node) in nodes.iter_mut().enumerate() {
                *node = self.step(*node, &rows[lane * width..(lane + 1) * width]);
            }
        }
        nodes.map(|node| node as usize)
    }

    /// Checks a deserialised tree for `width` columns, so that scoring
    /// cannot index out of bounds and every descent ends at a leaf: children
    /// in range and after their parent, and every node but the root the
    /// child of exactly one node.
    fn check(&self, width: usize) -> Result<(), String> {
        let nodes = self.feature.len();
        if nodes == 0 {
            return Err("has no nodes".to_string());
        }
        if self.value.len() != nodes || self.child.len() != nodes {
            return Err("has node arrays of different lengths".to_string());
        }
        let mut parents = vec![0u8; nodes];
        for node in 0..nodes {
            if !self.value[node].is_finite() {
                return Err(format!("node `{node}` has a value that is not finite"));
            }
            if self.feature[node] == LEAF {
                continue;
            }
            if self.feature[node] as usize >= width {
                return Err(format!(
                    "node `{node}` splits on a column the forest does not have"
                ));
            }
            let left = self.child[node] as usize;
            if left <= node || left + 1 >= nodes {
                return Err(format!(
                    "node `{node}` has children out of order or out of range"
                ));
            }
            parents[left] = parents[left].saturating_add(1);
            parents[left + 1] = parents[left + 1].saturating_add(1);
        }
        if let Some(node) = (1..nodes).find(|&node| parents[node] != 1) {
            return Err(format!(
                "node `{node}` is not the child of exactly one node"
            ));
        }
        Ok(())
    }
}

/// `c(n)`: the average path length of an unsuccessful search in a binary
/// search tree of `n` keys, the expected remaining depth below a leaf of `n`
/// rows.
fn average_path_length(n: usize) -> f64 {
    match n {
        0 | 1 => 0.0,
        2 => 1.0,
        _ => {
            let n = n as f64;
            2.0 * ((n - 1.0).ln() + EULER_GAMMA) - 2.0 * (n - 1.0) / n
        }
    }
}

/// `x`, or `median` when `x` is missing.
#[inline]
fn impute(x: f64, median: f64) -> f64 {
    if x.is_finite() { x } else { median }
}

/// Median of the finite values, or `None` when there are none.
fn median_of_present(column: &[f64]) -> Option<f64> {
    let mut values: Vec<f64> = column.iter().copied().filter(|x| x.is_finite()).collect();
    if values.is_empty() {
        return None;
    }
    let even = values.len().is_multiple_of(2);
    let mid = values.len() / 2;
    let (below, &mut upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    if even {
        let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        Some(lower / 2.0 + upper / 2.0)
    } else {
        Some(upper)
    }
}

/// Linearly interpolated `p` quantile of non-empty `values` (reordered).
fn quantile(values: &mut [f64], p: f64) -> f64 {
    let position = p * (values.len() - 1) as f64;
    let lower = position.floor() as usize;
    let fraction = position - lower as f64;
    let (_, &mut low, above) = values.select_nth_unstable_by(lower, f64::total_cmp);
    if fraction == 0.0 || above.is_empty() {
        return low;
    }
    let high = above.iter().copied().fold(f64::INFINITY, f64::min);
    low + fraction * (high - low)
}

/// Reorders `items` so those matching `left` come first; returns how many
/// match.
fn partition(items: &mut [usize], left: impl Fn(usize) -> bool) -> usize {
    let mut next = 0;
    for i in 0..items.len() {
        if left(items[i]) {
            items.swap(i, next);
            next += 1;
        }
    }
    next
}

/// `k` distinct indices from `0..n` (Floyd's algorithm), in the order drawn.
fn sample_without_replacement(rng: &mut SplitMix64, n: usize, k: usize) -> Vec<usize> {
    if k >= n {
        return (0..n).collect();
    }
    let mut seen = HashSet::with_capacity(k);
    let mut picked = Vec::with_capacity(k);
    for j in n - k..n {
        let t = rng.below(j + 1);
        let pick = if seen.insert(t) { t } else { j };
        seen.insert(pick);
        picked.push(pick);
    }
    picked
}

/// SplitMix64 (Steele, Lea and Flood 2014): a tiny generator that is good
/// enough for random cuts and keeps the forest independent of any crate's
/// choice of algorithm.
#[derive(Debug, Clone)]
struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator for stream `stream` (the tree index) of `seed`; streams do
    /// not overlap in practice and do not depend on the order they are made.
    fn for_stream(seed: u64, stream: u64) -> Self {
        Self {
            state: mix(seed ^ mix(stream.wrapping_add(0x6A09_E667_F3BC_C909))),
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.state)
    }

    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in `0..n`, `n > 0` (Lemire's multiply-shift).
    fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }
}

/// SplitMix64's output function.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// Standard normal draws (Box–Muller).
    fn normal(rng: &mut SmallRng) -> f64 {
        let u: f64 = 1.0 - rng.random::<f64>();
        let v: f64 = rng.random();
        (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }

    fn names(width: usize) -> Vec<String> {
        (0..width).map(|j| format!("x{j}")).collect()
    }

    /// `rows` rows of `width` columns from two unit Gaussian clusters centred
    /// at 0 and 10, column-major.
    fn clusters(rows: usize, width: usize, seed: u64) -> Vec<Vec<f64>> {
        gaussians(rows, width, seed, 10.0)
    }

    /// `rows` rows of `width` columns from unit Gaussians centred at 0 and
    /// `separation` in turn, column-major.
    fn gaussians(rows: usize, width: usize, seed: u64, separation: f64) -> Vec<Vec<f64>> {
        let mut rng = SmallRng::seed_from_u64(seed);
        let mut columns = vec![Vec::with_capacity(rows); width];
        for i in 0..rows {
            let centre = if i % 2 == 0 { 0.0 } else { separation };
            for column in &mut columns {
                column.push(centre + normal(&mut rng));
            }
        }
        columns
    }

    fn views(columns: &[Vec<f64>]) -> Vec<&[f64]> {
        columns.iter().map(Vec::as_slice).collect()
    }

    fn fit(columns: &[Vec<f64>], params: &ForestParams) -> IsolationForest {
        IsolationForest::fit(&names(columns.len()), &views(columns), params).unwrap()
    }

    #[test]
    fn far_points_score_above_every_inlier_and_the_threshold() {
        let mut columns = clusters(2000, 4, 1);
        let far = [
            [40.0, 40.0, 40.0, 40.0],
            [-30.0, 5.0, 5.0, -30.0],
            [5.0, 5.0, 5.0, 5.0],
        ];
        for row in &far {
            for (column, &x) in columns.iter_mut().zip(row) {
                column.push(x);
            }
        }
        let forest = fit(&columns, &ForestParams::default());
        let scores = forest.score_columns(&views(&columns));
        let inliers = &scores[..2000];
        let top_inlier = inliers.iter().copied().fold(f64::MIN, f64::max);
        for (row, &score) in far.iter().zip(&scores[2000..]) {
            assert!(
                score > top_inlier,
                "{row:?} scored {score}, an inlier {top_inlier}"
            );
            assert!(score > forest.threshold(), "{row:?} scored {score}");
            assert!(forest.is_outlier(row));
        }
    }

    #[test]
    fn fraction_of_training_rows_above_threshold_is_the_contamination() {
        let columns = clusters(5000, 3, 2);
        for contamination in [0.01, 0.05, 0.2] {
            let params = ForestParams {
                contamination,
                ..ForestParams::default()
            };
            let forest = fit(&columns, &params);
            let scores = forest.score_columns(&views(&columns));
            let above = scores.iter().filter(|&&s| s > forest.threshold()).count();
            let fraction = above as f64 / scores.len() as f64;
            assert!(
                (fraction - contamination).abs() <= 0.002,
                "{fraction} above the threshold for contamination {contamination}"
            );
        }
    }

    #[test]
    fn same_seed_gives_the_same_forest_and_other_seeds_do_not() {
        let columns = clusters(1000, 3, 3);
        let params = ForestParams {
            seed: 42,
            ..ForestParams::default()
        };
        let forest = fit(&columns, &params);
        assert_eq!(forest, fit(&columns, &params));
        let other = ForestParams { seed: 43, ..params };
        assert_ne!(forest, fit(&columns, &other));
    }

    #[test]
    fn json_round_trip_gives_an_equal_forest() {
        let mut columns = clusters(1000, 3, 4);
        columns[1][7] = f64::NAN;
        let forest = fit(&columns, &ForestParams::default());
        let json = serde_json::to_string(&forest).unwrap();
        let back: IsolationForest = serde_json::from_str(&json).unwrap();
        assert_eq!(back, forest);
        assert_eq!(back.score(&[1.0, 2.0, 3.0]), forest.score(&[1.0, 2.0, 3.0]));
    }

    #[test]
    fn damaged_json_is_an_error_not_a_panic() {
        let columns = clusters(300, 2, 5);
        let forest = fit(&columns, &ForestParams::default());
        let json: serde_json::Value = serde_json::to_value(&forest).unwrap();
        let damages = [
            (
                "/trees/0/child/0",
                serde_json::json!(100_000),
                "tree `0` node `0`",
            ),
            (
                "/trees/1/feature/0",
                serde_json::json!(7),
                "tree `1` node `0`",
            ),
            ("/trees/0/child/0", serde_json::json!(2), "tree `0` node `"),
            ("/medians/0", serde_json::Value::Null, "invalid type: null"),
        ];
        for (pointer, value, message) in damages {
            let mut damaged = json.clone();
            *damaged.pointer_mut(pointer).unwrap() = value;
            let error = serde_json::from_value::<IsolationForest>(damaged).unwrap_err();
            let error = error.to_string();
            assert!(error.contains(message), "{pointer}: {error}");
        }
        let mut no_trees = json.clone();
        no_trees["trees"] = serde_json::json!([]);
        let error = serde_json::from_value::<IsolationForest>(no_trees).unwrap_err();
        assert!(error.to_string().contains("no trees"), "{error}");
    }

    #[test]
    fn row_of_missing_values_scores_like_the_median_row() {
        let mut columns = gaussians(2000, 3, 6, 0.0);
        // Missing values in training are imputed too, and do not split.
        for i in (0..2000).step_by(10) {
            columns[0][i] = f64::NAN;
        }
        let forest = fit(&columns, &ForestParams::default());
        let medians: Vec<f64> = columns
            .iter()
            .map(|c| median_of_present(c).unwrap())
            .collect();
        let missing = forest.score(&[f64::NAN; 3]);
        assert_eq!(missing, forest.score(&medians));
        assert!(!forest.is_outlier(&[f64::NAN; 3]));
        let partly = forest.score(&[f64::NAN, medians[1], f64::INFINITY]);
        assert_eq!(partly, missing);
    }

    #[test]
    fn column_missing_everywhere_never_splits() {
        let mut columns = clusters(500, 2, 7);
        columns.push(vec![f64::NAN; 500]);
        let forest = fit(&columns, &ForestParams::default());
        assert!(forest.trees.iter().all(|t| !t.feature.contains(&2)));
        assert_eq!(
            forest.score(&[0.0, 0.0, 1e9]),
            forest.score(&[0.0, 0.0, 0.0])
        );
    }

    #[test]
    fn scores_lie_strictly_between_zero_and_one() {
        let mut columns = clusters(3000, 2, 8);
        columns[0][0] = 1e300;
        columns[1][1] = -1e300;
        let forest = fit(&columns, &ForestParams::default());
        let mut scores = forest.score_columns(&views(&columns));
        scores.push(forest.score(&[f64::MAX, f64::MIN]));
        assert!(scores.iter().all(|&s| s > 0.0 && s < 1.0));
        // A constant column set cannot split: every row scores 0.5.
        let flat = vec![vec![3.0; 50]];
        let forest = fit(&flat, &ForestParams::default());
        assert!((forest.score(&[3.0]) - 0.5).abs() < 1e-12);
        assert!(!forest.is_outlier(&[100.0]));
    }

    #[test]
    fn score_columns_matches_score_row_by_row_serial_and_parallel() {
        let columns = clusters(PARALLEL_ROWS + 100, 3, 9);
        let forest = fit(&columns, &ForestParams::default());
        let scores = forest.score_columns(&views(&columns));
        for i in [0, 1, BLOCK - 1, BLOCK, CHUNK + 3, PARALLEL_ROWS + 99] {
            let row: Vec<f64> = columns.iter().map(|c| c[i]).collect();
            assert_eq!(scores[i], forest.score(&row), "row {i}");
        }
        let few: Vec<&[f64]> = columns.iter().map(|c| &c[..10]).collect();
        assert_eq!(forest.score_columns(&few), scores[..10]);
    }

    #[test]
    fn tree_heights_stay_within_the_limit() {
        let columns = clusters(1000, 3, 10);
        let forest = fit(&columns, &ForestParams::default());
        let limit = 8.0 + average_path_length(256);
        for tree in &forest.trees {
            for (node, &f) in tree.feature.iter().enumerate() {
                if f == LEAF {
                    assert!(tree.value[node] <= limit);
                }
            }
        }
        assert_eq!(forest.sample, 256);
        let small = fit(&clusters(100, 2, 11), &ForestParams::default());
        assert_eq!(small.sample, 100);
    }

    #[test]
    fn bad_input_is_an_error() {
        let a = [1.0, 2.0, 3.0];
        let b = [1.0, 2.0];
        let params = ForestParams::default();
        let check =
            |names: &[&str], columns: &[&[f64]], params: &ForestParams, expect: ForestError| {
                let names: Vec<String> = names.iter().map(|s| s.to_string()).collect();
                assert_eq!(
                    IsolationForest::fit(&names, columns, params).unwrap_err(),
                    expect
                );
            };
        check(&[], &[], &params, ForestError::NoColumns);
        check(
            &["a", "b"],
            &[&a, &b],
            &params,
            ForestError::Ragged {
                name: "b".into(),
                len: 2,
                first: "a".into(),
                expected: 3,
            },
        );
        check(
            &["a"],
            &[&a, &a],
            &params,
            ForestError::NameCount {
                names: 1,
                columns: 2,
            },
        );
        check(
            &["a"],
            &[&[1.0]],
            &params,
            ForestError::TooFewRows { rows: 1 },
        );
        check(&["a"], &[&[]], &params, ForestError::TooFewRows { rows: 0 });
        check(
            &["a"],
            &[&[f64::NAN, f64::NAN]],
            &params,
            ForestError::AllMissing,
        );
        let zero = ForestParams { trees: 0, ..params };
        check(&["a"], &[&a], &zero, ForestError::NoTrees);
        let one = ForestParams {
            sample: 1,
            ..params
        };
        check(&["a"], &[&a], &one, ForestError::SampleTooSmall(1));
        let much = ForestParams {
            contamination: 0.9,
            ..params
        };
        check(&["a"], &[&a], &much, ForestError::InvalidContamination(0.9));
    }

    #[test]
    fn median_and_quantile_examples() {
        assert_eq!(median_of_present(&[3.0, f64::NAN, 1.0, 2.0]), Some(2.0));
        assert_eq!(median_of_present(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median_of_present(&[f64::NAN]), None);
        assert_eq!(quantile(&mut [4.0, 1.0, 3.0, 2.0, 5.0], 0.5), 3.0);
        assert!((quantile(&mut [4.0, 1.0, 3.0, 2.0, 5.0], 0.9) - 4.6).abs() < 1e-12);
        assert_eq!(quantile(&mut [1.0, 2.0], 1.0), 2.0);
        assert_eq!(average_path_length(1), 0.0);
        assert_eq!(average_path_length(2), 1.0);
        assert!((average_path_length(256) - 10.2448).abs() < 1e-3);
    }

    #[test]
    fn sampling_without_replacement_draws_distinct_indices() {
        let mut rng = SplitMix64::for_stream(1, 2);
        let picked = sample_without_replacement(&mut rng, 300, 256);
        let distinct: HashSet<usize> = picked.iter().copied().collect();
        assert_eq!(distinct.len(), 256);
        assert!(picked.iter().all(|&i| i < 300));
    }
}
