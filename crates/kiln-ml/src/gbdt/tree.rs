//! Decision trees as kiln stores, explains and serves them.
//!
//! A tree is a list of internal [`Node`]s (node 0 is the root) and a list of
//! [`Leaf`]s. A child reference `c >= 0` is a node index; `c < 0` is the
//! leaf `!c` (LightGBM's convention). A tree that never split has no nodes
//! and one leaf. Each node and leaf carries its training cover (sum of
//! hessians) and row count, which exact TreeSHAP needs.

use serde::{Deserialize, Serialize};

use crate::frame::{Column, Features};

/// How a node sends a row left.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum SplitRule {
    /// `x <= threshold` goes left; a missing `x` goes where `missing_left` says.
    Numeric { threshold: f64 },
    /// Category codes in the bitset go left; every other code (missing,
    /// unseen or rare in training) goes right.
    Categorical { left: Vec<u64> },
}

/// An internal node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Node {
    pub feature: u32,
    pub rule: SplitRule,
    pub missing_left: bool,
    pub left: i32,
    pub right: i32,
    /// Loss reduction of the split.
    pub gain: f64,
    /// Sum of training hessians that reached the node.
    pub cover: f64,
    /// Training rows that reached the node.
    pub count: u64,
}

/// A leaf: its value (already scaled by the learning rate) and training
/// cover and count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Leaf {
    pub value: f64,
    pub cover: f64,
    pub count: u64,
}

/// One decision tree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Tree {
    pub nodes: Vec<Node>,
    pub leaves: Vec<Leaf>,
}

impl Node {
    /// Whether row `row` of `features` goes left.
    #[inline]
    pub fn goes_left(&self, features: &Features, row: usize) -> bool {
        match (&self.rule, &features.columns[self.feature as usize]) {
            (SplitRule::Numeric { threshold }, Column::Numeric(v)) => {
                let x = v[row];
                if x.is_nan() {
                    self.missing_left
                } else {
                    x <= *threshold
                }
            }
            (SplitRule::Categorical { left }, Column::Categorical { codes, .. }) => {
                bit(left, codes[row])
            }
            // A feature of the wrong kind cannot reach here: models check
            // their input's kinds against the signature before predicting.
            _ => self.missing_left,
        }
    }
}

#[inline]
pub(crate) fn bit(bits: &[u64], code: u32) -> bool {
    let word = (code / 64) as usize;
    word < bits.len() && bits[word] >> (code % 64) & 1 == 1
}

impl Tree {
    /// The leaf that row `row` of `features` falls into.
    #[inline]
    pub fn leaf_index(&self, features: &Features, row: usize) -> usize {
        if self.nodes.is_empty() {
            return 0;
        }
        let mut i = 0usize;
        loop {
            let n = &self.nodes[i];
            let next = if n.goes_left(features, row) {
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

    /// The value of the leaf that row `row` falls into.
    #[inline]
    pub fn predict_row(&self, features: &Features, row: usize) -> f64 {
        self.leaves[self.leaf_index(features, row)].value
    }

    /// Deepest path from the root to a leaf, in splits.
    pub fn depth(&self) -> usize {
        fn walk(t: &Tree, c: i32) -> usize {
            if c < 0 {
                0
            } else {
                let n = &t.nodes[c as usize];
                1 + walk(t, n.left).max(walk(t, n.right))
            }
        }
        if self.nodes.is_empty() {
            0
        } else {
            walk(self, 0)
        }
    }
}
