//! Fast batch prediction: the ensemble compiled into flat node arrays, rows
//! copied into small row-major blocks, every tree run over a block before
//! the next (the block's rows and the tree's nodes stay in cache).

use rayon::prelude::*;

use super::tree::{SplitRule, Tree};
use crate::frame::{Column, Features, MISSING_CODE};

const NUMERIC: u8 = 0;
const NUMERIC_MISSING_LEFT: u8 = 1;
const CATEGORICAL: u8 = 2;
/// Rows per block.
const BLOCK: usize = 64;

#[derive(Clone, Copy)]
struct FlatNode {
    /// Numeric threshold, or (categorical) the offset of the bitset.
    threshold: f64,
    feature: u32,
    /// Child: `>= 0` a node of the same tree, `< 0` the leaf `!child`.
    left: i32,
    right: i32,
    kind: u8,
    /// Bitset length in words (categorical).
    words: u32,
}

/// An ensemble laid out for prediction.
pub(crate) struct Compiled {
    nodes: Vec<FlatNode>,
    node_start: Vec<usize>,
    leaves: Vec<f64>,
    leaf_start: Vec<usize>,
    bits: Vec<u64>,
}

impl Compiled {
    pub fn new(trees: &[Tree]) -> Compiled {
        let mut c = Compiled {
            nodes: Vec::new(),
            node_start: Vec::with_capacity(trees.len()),
            leaves: Vec::new(),
            leaf_start: Vec::with_capacity(trees.len()),
            bits: Vec::new(),
        };
        for t in trees {
            c.node_start.push(c.nodes.len());
            c.leaf_start.push(c.leaves.len());
            c.leaves.extend(t.leaves.iter().map(|l| l.value));
            for n in &t.nodes {
                let (threshold, kind, words) = match &n.rule {
                    SplitRule::Numeric { threshold } => (
                        *threshold,
                        if n.missing_left {
                            NUMERIC_MISSING_LEFT
                        } else {
                            NUMERIC
                        },
                        0,
                    ),
                    SplitRule::Categorical { left } => {
                        let off = c.bits.len();
                        c.bits.extend_from_slice(left);
                        (off as f64, CATEGORICAL, left.len() as u32)
                    }
                };
                c.nodes.push(FlatNode {
                    threshold,
                    feature: n.feature,
                    left: n.left,
                    right: n.right,
                    kind,
                    words,
                });
            }
        }
        c
    }

    #[inline]
    fn leaf(&self, t: usize, row: &[f64]) -> f64 {
        let base = self.node_start[t];
        let leaves = &self.leaves[self.leaf_start[t]..];
        let next = self
            .node_start
            .get(t + 1)
            .copied()
            .unwrap_or(self.nodes.len());
        if next == base {
            return leaves[0];
        }
        let nodes = &self.nodes[base..next];
        let mut i = 0usize;
        loop {
            let n = &nodes[i];
            let x = row[n.feature as usize];
            let left = match n.kind {
                CATEGORICAL => {
                    // Missing codes are NaN here and never in a left set.
                    !x.is_nan() && {
                        let code = x as u64;
                        let word = (code / 64) as usize;
                        word < n.words as usize
                            && self.bits[n.threshold as usize + word] >> (code % 64) & 1 == 1
                    }
                }
                NUMERIC_MISSING_LEFT => x.is_nan() || x <= n.threshold,
                _ => x <= n.threshold,
            };
            let c = if left { n.left } else { n.right };
            if c < 0 {
                return leaves[!c as usize];
            }
            i = c as usize;
        }
    }

    /// Adds every tree's output to `out` (row-major `n × k_out`).
    pub fn predict_into(&self, features: &Features, k_out: usize, out: &mut [f64]) {
        let nf = features.n_features();
        let score_block = |(bi, block): (usize, &mut [f64])| {
            let start = bi * BLOCK;
            let rows = block.len() / k_out;
            // Row-major copy of the block; categories as numbers, missing as NaN.
            let mut x = vec![0f64; rows * nf];
            for (f, col) in features.columns.iter().enumerate() {
                match col {
                    Column::Numeric(v) => {
                        for j in 0..rows {
                            x[j * nf + f] = v[start + j];
                        }
                    }
                    Column::Categorical { codes, .. } => {
                        for j in 0..rows {
                            let c = codes[start + j];
                            x[j * nf + f] = if c == MISSING_CODE {
                                f64::NAN
                            } else {
                                c as f64
                            };
                        }
                    }
                }
            }
            for t in 0..self.node_start.len() {
                let k = t % k_out;
                for j in 0..rows {
                    block[j * k_out + k] += self.leaf(t, &x[j * nf..(j + 1) * nf]);
                }
            }
        };
        // One block (a served request, say) is scored on the calling thread:
        // handing it to the pool costs more than scoring it.
        if out.len() <= BLOCK * k_out {
            score_block((0, out));
        } else {
            out.par_chunks_mut(BLOCK * k_out)
                .enumerate()
                .for_each(score_block);
        }
    }
}
