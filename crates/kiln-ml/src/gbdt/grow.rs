//! Leaf-wise tree growth on binned data with gradient histograms.
//!
//! Rows of a leaf occupy a contiguous range of one index array, kept in
//! ascending order (stable partitioning), so histogram building reads bins
//! in order. Only the smaller child of a split gets a histogram built from
//! its rows; the larger one's is the parent's minus the smaller's.
//! Histograms are built per feature in parallel; each feature's bins are
//! summed by one thread in row order, so results do not depend on the
//! number of threads.

use rayon::prelude::*;

use super::bins::{BinMap, Binned};
use super::tree::{Leaf, Node, SplitRule, Tree};

/// Bins per feature in a histogram (bin 0 is missing).
pub(crate) const HB: usize = 256;

/// Rows × features below which histograms are built on one thread.
const PARALLEL_WORK: usize = 64 * 1024;

/// Tree-shape and regularisation settings.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GrowParams {
    pub max_leaves: usize,
    /// 0 = unlimited.
    pub max_depth: usize,
    pub min_data_in_leaf: usize,
    pub min_sum_hessian: f64,
    pub lambda_l1: f64,
    pub lambda_l2: f64,
    pub min_gain: f64,
    pub max_cat_to_onehot: usize,
    pub max_cat_threshold: usize,
    pub cat_smooth: f64,
    pub cat_l2: f64,
    pub min_data_per_group: usize,
    pub learning_rate: f64,
    /// Extremely randomised trees: one random threshold per numeric
    /// feature and leaf, drawn from this seed.
    pub extra_trees_seed: Option<u64>,
}

/// A split in bin space, for routing binned rows.
#[derive(Debug, Clone)]
pub(crate) struct BinSplit {
    pub feature: usize,
    pub threshold: u8,
    pub categorical: bool,
    pub cat_bins: [u64; 4],
    pub missing_left: bool,
}

impl BinSplit {
    #[inline]
    pub fn goes_left(&self, bin: u8) -> bool {
        if self.categorical {
            self.cat_bins[(bin / 64) as usize] >> (bin % 64) & 1 == 1
        } else if bin == 0 {
            self.missing_left
        } else {
            bin <= self.threshold
        }
    }
}

/// A grown tree, in value space (for the model) and bin space (for
/// updating scores of binned rows during training).
pub(crate) struct Grown {
    pub tree: Tree,
    pub bin_splits: Vec<BinSplit>,
    /// Each leaf's rows as a range of the grower's index array, valid until
    /// the next [`Grower::grow`] (see [`Grower::leaf_rows`]).
    pub leaf_ranges: Vec<std::ops::Range<usize>>,
}

impl Grown {
    /// Leaf of binned row `row`.
    pub fn leaf_of_binned(&self, bins: &[Vec<u8>], row: usize) -> usize {
        if self.bin_splits.is_empty() {
            return 0;
        }
        let mut i = 0usize;
        loop {
            let s = &self.bin_splits[i];
            let n = &self.tree.nodes[i];
            let next = if s.goes_left(bins[s.feature][row]) {
                n.left
            } else {
                n.right
            };
            if next < 0 {
                return !next as usize;
            }
            i = next as usize;
        }
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct Sums {
    g: f64,
    h: f64,
    n: usize,
}

#[derive(Debug, Clone)]
struct Candidate {
    gain: f64,
    feature: usize,
    threshold: u8,
    missing_left: bool,
    categorical: bool,
    cat_bins: [u64; 4],
    left: Sums,
    right: Sums,
}

struct LeafState {
    begin: usize,
    sums: Sums,
    depth: usize,
    hist: Option<Vec<[f64; 2]>>,
    best: Option<Candidate>,
    /// The node and side that point at this leaf.
    parent: Option<(usize, bool)>,
}

/// Reusable buffers for growing trees on one binned table.
pub(crate) struct Grower<'a> {
    binned: &'a Binned,
    params: GrowParams,
    indices: Vec<u32>,
    scratch: Vec<u32>,
    gh_ordered: Vec<[f32; 2]>,
    pool: Vec<Vec<[f64; 2]>>,
}

impl<'a> Grower<'a> {
    pub fn new(binned: &'a Binned, params: GrowParams) -> Self {
        Grower {
            binned,
            params,
            indices: Vec::with_capacity(binned.n_rows),
            scratch: vec![0; binned.n_rows],
            gh_ordered: vec![[0.0; 2]; binned.n_rows],
            pool: Vec::new(),
        }
    }

    fn take_hist(&mut self) -> Vec<[f64; 2]> {
        self.pool
            .pop()
            .unwrap_or_else(|| vec![[0.0; 2]; self.binned.maps.len() * HB])
    }

    /// Grows one tree on gradients `gh` (one pair per row of the table)
    /// over `rows` (all rows when `None`; ascending otherwise) using the
    /// features flagged in `use_feature`. `renew(rows)` may replace a
    /// leaf's Newton value (quantile objectives).
    pub fn grow(
        &mut self,
        gh: &[[f32; 2]],
        rows: Option<&[u32]>,
        use_feature: &[bool],
        mut renew: impl FnMut(&[u32]) -> Option<f64>,
    ) -> Grown {
        let p = self.params;
        self.indices.clear();
        match rows {
            Some(r) => self.indices.extend_from_slice(r),
            None => self.indices.extend(0..self.binned.n_rows as u32),
        }
        let n = self.indices.len();
        let mut root_sums = Sums::default();
        for &r in &self.indices {
            let [g, h] = gh[r as usize];
            root_sums.g += g as f64;
            root_sums.h += h as f64;
        }
        root_sums.n = n;

        let mut root_hist = self.take_hist();
        if rows.is_none() {
            build_hist(self.binned, use_feature, None, gh, &mut root_hist);
        } else {
            gather(&self.indices, gh, &mut self.gh_ordered[..n]);
            build_hist(
                self.binned,
                use_feature,
                Some(&self.indices),
                &self.gh_ordered[..n],
                &mut root_hist,
            );
        }
        let mut leaves = vec![LeafState {
            begin: 0,
            sums: root_sums,
            depth: 0,
            best: None,
            hist: None,
            parent: None,
        }];
        leaves[0].best = self.best_split(&root_hist, root_sums, 0, use_feature);
        leaves[0].hist = Some(root_hist);

        let mut nodes: Vec<Node> = Vec::new();
        let mut bin_splits: Vec<BinSplit> = Vec::new();

        while leaves.len() < p.max_leaves {
            // The leaf with the best split; ties go to the lowest index.
            let mut pick: Option<(usize, f64)> = None;
            for (i, l) in leaves.iter().enumerate() {
                if let Some(c) = &l.best
                    && c.gain > p.min_gain
                    && pick.is_none_or(|(_, g)| c.gain > g)
                {
                    pick = Some((i, c.gain));
                }
            }
            let Some((li, _)) = pick else { break };
            let cand = leaves[li].best.take().expect("picked leaf has a split");
            let begin = leaves[li].begin;
            let split = BinSplit {
                feature: cand.feature,
                threshold: cand.threshold,
                categorical: cand.categorical,
                cat_bins: cand.cat_bins,
                missing_left: cand.missing_left,
            };
            let n_left = self.partition(begin, leaves[li].sums.n, &split);

            // The node replaces the leaf in its parent.
            let node_index = nodes.len();
            if let Some((parent, is_left)) = leaves[li].parent {
                if is_left {
                    nodes[parent].left = node_index as i32;
                } else {
                    nodes[parent].right = node_index as i32;
                }
            }
            let right_index = leaves.len();
            nodes.push(Node {
                feature: cand.feature as u32,
                rule: value_rule(&self.binned.maps[cand.feature], &split),
                missing_left: cand.missing_left,
                left: !(li as i32),
                right: !(right_index as i32),
                gain: cand.gain,
                cover: leaves[li].sums.h,
                count: leaves[li].sums.n as u64,
            });
            bin_splits.push(split);

            let depth = leaves[li].depth + 1;
            let mut parent_hist = leaves[li].hist.take().expect("split leaf has a histogram");
            let left_sums = Sums {
                n: n_left,
                ..cand.left
            };
            let right_sums = Sums {
                n: leaves[li].sums.n - n_left,
                ..cand.right
            };
            leaves[li] = LeafState {
                begin,
                sums: left_sums,
                depth,
                hist: None,
                best: None,
                parent: Some((node_index, true)),
            };
            leaves.push(LeafState {
                begin: begin + n_left,
                sums: right_sums,
                depth,
                hist: None,
                best: None,
                parent: Some((node_index, false)),
            });

            let can_split = |s: &Sums| {
                s.n >= 2 * p.min_data_in_leaf.max(1) && (p.max_depth == 0 || depth < p.max_depth)
            };
            let left_ok = can_split(&left_sums);
            let right_ok = can_split(&right_sums);
            if !left_ok && !right_ok {
                self.pool.push(parent_hist);
                continue;
            }
            // Histogram of the smaller child from its rows; the larger's by
            // subtraction.
            let (small, large) = if n_left <= right_sums.n {
                (li, right_index)
            } else {
                (right_index, li)
            };
            let (sb, sn) = (leaves[small].begin, leaves[small].sums.n);
            let mut small_hist = self.take_hist();
            gather(&self.indices[sb..sb + sn], gh, &mut self.gh_ordered[..sn]);
            build_hist(
                self.binned,
                use_feature,
                Some(&self.indices[sb..sb + sn]),
                &self.gh_ordered[..sn],
                &mut small_hist,
            );
            subtract(&mut parent_hist, &small_hist, use_feature);
            for (leaf, hist) in [(small, small_hist), (large, parent_hist)] {
                let ok = if leaf == li { left_ok } else { right_ok };
                if ok {
                    let s = leaves[leaf].sums;
                    leaves[leaf].best = self.best_split(&hist, s, depth, use_feature);
                    leaves[leaf].hist = Some(hist);
                } else {
                    self.pool.push(hist);
                }
            }
        }

        let mut tree_leaves = Vec::with_capacity(leaves.len());
        let mut leaf_ranges = Vec::with_capacity(leaves.len());
        for l in &mut leaves {
            if let Some(h) = l.hist.take() {
                self.pool.push(h);
            }
            let rows = &self.indices[l.begin..l.begin + l.sums.n];
            let value = match renew(rows) {
                Some(v) => v,
                None => leaf_output(l.sums.g, l.sums.h, p.lambda_l1, p.lambda_l2),
            } * p.learning_rate;
            leaf_ranges.push(l.begin..l.begin + l.sums.n);
            tree_leaves.push(Leaf {
                value,
                cover: l.sums.h,
                count: l.sums.n as u64,
            });
        }
        Grown {
            tree: Tree {
                nodes,
                leaves: tree_leaves,
            },
            bin_splits,
            leaf_ranges,
        }
    }

    /// The rows of a leaf of the tree grown last.
    pub fn leaf_rows(&self, range: std::ops::Range<usize>) -> &[u32] {
        &self.indices[range]
    }

    /// Stable partition of `indices[begin..begin + n]`; returns the number
    /// going left.
    fn partition(&mut self, begin: usize, n: usize, split: &BinSplit) -> usize {
        let col = &self.binned.bins[split.feature];
        let rows = &mut self.indices[begin..begin + n];
        let mut l = 0usize;
        let mut r = 0usize;
        let right = &mut self.scratch[..n];
        for i in 0..n {
            let row = rows[i];
            if split.goes_left(col[row as usize]) {
                rows[l] = row;
                l += 1;
            } else {
                right[r] = row;
                r += 1;
            }
        }
        rows[l..].copy_from_slice(&right[..r]);
        l
    }

    fn best_split(
        &self,
        hist: &[[f64; 2]],
        sums: Sums,
        depth: usize,
        use_feature: &[bool],
    ) -> Option<Candidate> {
        let p = &self.params;
        if p.max_depth > 0 && depth >= p.max_depth {
            return None;
        }
        let parent_gain = leaf_gain(sums.g, sums.h, p.lambda_l1, p.lambda_l2);
        let find = |f: usize| -> Option<Candidate> {
            if !use_feature[f] {
                return None;
            }
            let h = &hist[f * HB..(f + 1) * HB];
            match &self.binned.maps[f] {
                m @ BinMap::Numeric { .. } => {
                    let only = p.extra_trees_seed.map(|seed| {
                        let nb = m.n_bins();
                        let stream = ((sums.n as u64) << 32) ^ ((depth as u64) << 16) ^ f as u64;
                        1 + crate::rng::Rng::derive(seed, stream).below(nb.saturating_sub(2).max(1))
                    });
                    numeric_split(p, f, &h[..m.n_bins()], sums, parent_gain, only)
                }
                m => categorical_split(p, f, &h[..m.n_bins()], sums, parent_gain),
            }
        };
        let nf = self.binned.maps.len();
        if sums.n * nf >= PARALLEL_WORK {
            (0..nf).into_par_iter().filter_map(find).reduce_with(better)
        } else {
            (0..nf).filter_map(find).reduce(better)
        }
    }
}

/// The better candidate; ties go to the lower feature index, so the result
/// does not depend on the order of reduction.
fn better(a: Candidate, b: Candidate) -> Candidate {
    if b.gain > a.gain || (b.gain == a.gain && b.feature < a.feature) {
        b
    } else {
        a
    }
}

fn gather(rows: &[u32], gh: &[[f32; 2]], out: &mut [[f32; 2]]) {
    for (o, &r) in out.iter_mut().zip(rows) {
        *o = gh[r as usize];
    }
}

fn build_hist(
    binned: &Binned,
    use_feature: &[bool],
    rows: Option<&[u32]>,
    gh: &[[f32; 2]],
    hist: &mut [[f64; 2]],
) {
    let n = rows.map_or(binned.n_rows, <[u32]>::len);
    let one = |(f, h): (usize, &mut [[f64; 2]])| {
        if !use_feature[f] {
            return;
        }
        h.fill([0.0; 2]);
        let col = &binned.bins[f];
        match rows {
            None => {
                for (&b, &[g, hh]) in col.iter().zip(gh) {
                    let e = &mut h[b as usize];
                    e[0] += g as f64;
                    e[1] += hh as f64;
                }
            }
            Some(rows) => {
                for (&r, &[g, hh]) in rows.iter().zip(gh) {
                    let e = &mut h[col[r as usize] as usize];
                    e[0] += g as f64;
                    e[1] += hh as f64;
                }
            }
        }
    };
    if n * binned.maps.len() >= PARALLEL_WORK {
        hist.par_chunks_mut(HB).enumerate().for_each(one);
    } else {
        hist.chunks_mut(HB).enumerate().for_each(one);
    }
}

fn subtract(parent: &mut [[f64; 2]], child: &[[f64; 2]], use_feature: &[bool]) {
    for (f, (p, c)) in parent.chunks_mut(HB).zip(child.chunks(HB)).enumerate() {
        if use_feature[f] {
            for (p, c) in p.iter_mut().zip(c) {
                p[0] -= c[0];
                p[1] -= c[1];
            }
        }
    }
}

#[inline]
fn threshold_l1(g: f64, l1: f64) -> f64 {
    if l1 > 0.0 {
        g.signum() * (g.abs() - l1).max(0.0)
    } else {
        g
    }
}

#[inline]
pub(crate) fn leaf_gain(g: f64, h: f64, l1: f64, l2: f64) -> f64 {
    let t = threshold_l1(g, l1);
    t * t / (h + l2)
}

#[inline]
pub(crate) fn leaf_output(g: f64, h: f64, l1: f64, l2: f64) -> f64 {
    -threshold_l1(g, l1) / (h + l2)
}

/// Estimated rows from a hessian sum (exact for constant hessians).
#[inline]
fn count_of(h: f64, cnt_factor: f64) -> usize {
    (h * cnt_factor + 0.5) as usize
}

fn numeric_split(
    p: &GrowParams,
    feature: usize,
    h: &[[f64; 2]],
    sums: Sums,
    parent_gain: f64,
    only: Option<usize>,
) -> Option<Candidate> {
    let nb = h.len();
    if nb < 3 && h[0][1] == 0.0 {
        return None;
    }
    let cnt_factor = sums.n as f64 / sums.h;
    let miss = h[0];
    let has_missing = miss[1] > 0.0;
    let mut best: Option<Candidate> = None;
    // Missing right (always), then missing left (only when there are any).
    for missing_left in [false, true] {
        if missing_left && !has_missing {
            break;
        }
        let (mut lg, mut lh) = if missing_left {
            (miss[0], miss[1])
        } else {
            (0.0, 0.0)
        };
        // Threshold t: bins 1..=t go left. With missing going right, t may
        // be the last bin (missing versus the rest).
        let last = if has_missing && !missing_left {
            nb - 1
        } else {
            nb - 2
        };
        for (t, bin) in h.iter().enumerate().take(last + 1).skip(1) {
            lg += bin[0];
            lh += bin[1];
            let ln = count_of(lh, cnt_factor);
            if ln < p.min_data_in_leaf || lh < p.min_sum_hessian {
                continue;
            }
            let (rg, rh) = (sums.g - lg, sums.h - lh);
            let rn = sums.n.saturating_sub(ln);
            if rn < p.min_data_in_leaf || rh < p.min_sum_hessian {
                break;
            }
            if only.is_some_and(|o| o != t) {
                continue;
            }
            let gain = leaf_gain(lg, lh, p.lambda_l1, p.lambda_l2)
                + leaf_gain(rg, rh, p.lambda_l1, p.lambda_l2)
                - parent_gain;
            if best.as_ref().is_none_or(|b| gain > b.gain) {
                // Without missing values in training, missing rows follow
                // the larger side at prediction time.
                let ml = if has_missing { missing_left } else { ln >= rn };
                best = Some(Candidate {
                    gain,
                    feature,
                    threshold: t as u8,
                    missing_left: ml,
                    categorical: false,
                    cat_bins: [0; 4],
                    left: Sums {
                        g: lg,
                        h: lh,
                        n: ln,
                    },
                    right: Sums {
                        g: rg,
                        h: rh,
                        n: rn,
                    },
                });
            }
        }
    }
    best
}

fn categorical_split(
    p: &GrowParams,
    feature: usize,
    h: &[[f64; 2]],
    sums: Sums,
    parent_gain: f64,
) -> Option<Candidate> {
    let nb = h.len();
    if nb < 2 {
        return None;
    }
    let cnt_factor = sums.n as f64 / sums.h;
    let mut best: Option<Candidate> = None;
    let consider = |bins: &[usize], l2: f64, best: &mut Option<Candidate>| {
        let (mut lg, mut lh) = (0.0, 0.0);
        for &b in bins {
            lg += h[b][0];
            lh += h[b][1];
        }
        let ln = count_of(lh, cnt_factor);
        let (rg, rh) = (sums.g - lg, sums.h - lh);
        let rn = sums.n.saturating_sub(ln);
        if ln < p.min_data_in_leaf
            || rn < p.min_data_in_leaf
            || lh < p.min_sum_hessian
            || rh < p.min_sum_hessian
        {
            return;
        }
        let gain =
            leaf_gain(lg, lh, p.lambda_l1, l2) + leaf_gain(rg, rh, p.lambda_l1, l2) - parent_gain;
        if best.as_ref().is_none_or(|c| gain > c.gain) {
            let mut cat_bins = [0u64; 4];
            for &b in bins {
                cat_bins[b / 64] |= 1 << (b % 64);
            }
            *best = Some(Candidate {
                gain,
                feature,
                threshold: 0,
                missing_left: false,
                categorical: true,
                cat_bins,
                left: Sums {
                    g: lg,
                    h: lh,
                    n: ln,
                },
                right: Sums {
                    g: rg,
                    h: rh,
                    n: rn,
                },
            });
        }
    };
    if nb - 1 <= p.max_cat_to_onehot {
        for (b, bin) in h.iter().enumerate().skip(1) {
            if bin[1] > 0.0 {
                consider(&[b], p.lambda_l2, &mut best);
            }
        }
        return best;
    }
    // LightGBM's many-vs-many search: order categories by their gradient
    // ratio and try prefixes from both ends.
    let mut used: Vec<usize> = (1..nb)
        .filter(|&b| count_of(h[b][1], cnt_factor) as f64 >= p.cat_smooth)
        .collect();
    if used.len() < 2 {
        return None;
    }
    let ratio = |b: usize| h[b][0] / (h[b][1] + p.cat_smooth);
    used.sort_by(|&a, &b| ratio(a).total_cmp(&ratio(b)).then(a.cmp(&b)));
    let l2 = p.lambda_l2 + p.cat_l2;
    let max_take = p.max_cat_threshold.min(used.len().div_ceil(2)).max(1);
    for reverse in [false, true] {
        let order: Vec<usize> = if reverse {
            used.iter().rev().copied().collect()
        } else {
            used.clone()
        };
        let mut group_rows = 0usize;
        let mut left_rows = 0usize;
        for k in 0..max_take.min(order.len() - 1) {
            let c = count_of(h[order[k]][1], cnt_factor);
            group_rows += c;
            left_rows += c;
            if group_rows < p.min_data_per_group {
                continue;
            }
            group_rows = 0;
            if sums.n.saturating_sub(left_rows) < p.min_data_per_group.max(p.min_data_in_leaf) {
                break;
            }
            consider(&order[..=k], l2, &mut best);
        }
    }
    best
}

/// The value-space rule of a bin-space split.
fn value_rule(map: &BinMap, split: &BinSplit) -> SplitRule {
    match map {
        BinMap::Numeric { upper } => SplitRule::Numeric {
            // `+inf` (missing versus everything else) does not survive JSON;
            // inputs are finite, so the largest float splits the same way.
            threshold: upper[split.threshold as usize - 1].min(f64::MAX),
        },
        BinMap::Categorical { bin_to_code, .. } => {
            let max_code = bin_to_code.iter().copied().max().unwrap_or(0);
            let mut left = vec![0u64; max_code as usize / 64 + 1];
            for (i, &code) in bin_to_code.iter().enumerate() {
                let b = i + 1;
                if split.cat_bins[b / 64] >> (b % 64) & 1 == 1 {
                    left[code as usize / 64] |= 1 << (code % 64);
                }
            }
            while left.len() > 1 && left.last() == Some(&0) {
                left.pop();
            }
            SplitRule::Categorical { left }
        }
    }
}
