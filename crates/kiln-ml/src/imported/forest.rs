//! Tree ensembles compiled into one flat array of nodes.
//!
//! Every tree of a model lies in [`Forest::nodes`], laid out depth first
//! (a split's left child, when it is not shared, is the next node), so a
//! row's path through a tree reads a few neighbouring cache lines. A leaf
//! points at its outputs in [`Forest::outputs`], a categorical split at its
//! bitset in [`Forest::bits`]. Nothing is allocated while a row is scored.
//!
//! How a split decides (`<` or `<=`, where missing values and unknown
//! categories go) differs between libraries, so the walk is generic over
//! [`Rules`]: each library gets its own monomorphised loop.

/// Bits of [`Node::flags`].
pub(super) const LEAF: u8 = 1;
/// Missing values go to the left (true) child.
pub(super) const DEFAULT_LEFT: u8 = 2;
/// A categorical split: `threshold` is unused, the bitset is `bits[cat..cat + cat_words]`.
pub(super) const CATEGORICAL: u8 = 4;
/// [`Forest::add_tree`]'s mark for a file node no path reaches.
pub(super) const UNPLACED: u32 = u32::MAX;
/// Rows walked together by [`Forest::for_each_leaf`].
pub(super) const BLOCK: usize = 32;

/// One node of a compiled tree.
#[derive(Debug, Clone, Copy)]
pub(super) struct Node {
    /// The split value (f32 thresholds are stored widened, exactly).
    pub threshold: f64,
    /// The feature a split reads (its column in the row).
    pub feature: u32,
    /// Split: the left (true) child's index in [`Forest::nodes`]. Leaf: the
    /// first of its outputs.
    pub left: u32,
    /// Split: the right (false) child's index. Leaf: one past its last output.
    pub right: u32,
    /// Categorical split: the first word of its bitset in [`Forest::bits`].
    pub cat: u32,
    /// Categorical split: the bitset's length in 32-bit words.
    pub cat_words: u16,
    /// A library's own split kind (ONNX's comparison modes, LightGBM's missing type).
    pub kind: u8,
    /// [`LEAF`], [`DEFAULT_LEFT`], [`CATEGORICAL`].
    pub flags: u8,
}

/// How one library's splits send a value left or right.
pub(super) trait Rules {
    /// The type a row holds (f64 for LightGBM and XGBoost, f32 for ONNX).
    type X: Copy;
    /// Whether value `x` goes to the left (true) child of split `node`.
    fn goes_left(node: &Node, x: Self::X, bits: &[u32]) -> bool;
}

/// One leaf output: added to target (class) `target`.
#[derive(Debug, Clone, Copy)]
pub(super) struct Output {
    pub target: u32,
    pub value: f64,
}

/// All trees of a model.
#[derive(Default)]
pub(super) struct Forest {
    pub nodes: Vec<Node>,
    /// The root of each tree, in the model's order.
    pub roots: Vec<u32>,
    pub outputs: Vec<Output>,
    pub bits: Vec<u32>,
    /// The training weight (row count or hessian cover) of each node, as
    /// the file records it, for path-dependent TreeSHAP; empty when the
    /// format records none, NaN for a node whose file entry is missing.
    pub weights: Vec<f64>,
}

impl std::fmt::Debug for Forest {
    // A summary: the nodes of a large model would fill screens.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Forest")
            .field("trees", &self.roots.len())
            .field("nodes", &self.nodes.len())
            .finish_non_exhaustive()
    }
}

/// A node as a model file describes it, before compiling.
pub(super) enum Spec {
    Split {
        feature: u32,
        threshold: f64,
        kind: u8,
        /// [`DEFAULT_LEFT`] and [`CATEGORICAL`].
        flags: u8,
        /// A categorical split's bitset (bit `c` set: category `c` matches).
        bits: Vec<u32>,
        /// The children's ids in the file's numbering.
        left: usize,
        right: usize,
    },
    Leaf(Vec<Output>),
}

impl Forest {
    /// Compiles one tree whose nodes are numbered `0..n` in the file, with
    /// `spec(i)` describing node `i`. A node reached from two parents is
    /// laid out once; a cycle or a child outside `0..n` is an error.
    /// Returns where each file node went ([`UNPLACED`] for one no path
    /// reaches), for [`Forest::set_weights`].
    pub fn add_tree(
        &mut self,
        n: usize,
        root: usize,
        mut spec: impl FnMut(usize) -> Result<Spec, String>,
    ) -> Result<Vec<u32>, String> {
        const UNSEEN: u32 = UNPLACED;
        if root >= n {
            return Err(format!("a tree's root is node {root} of {n}"));
        }
        // Where each file node went, and whether its subtree is still open
        // (reaching an open node again is a cycle).
        let mut placed = vec![UNSEEN; n];
        let mut open = vec![false; n];
        // (file node, parent's index, true for the left child)
        let mut stack: Vec<(usize, Option<(u32, bool)>)> = vec![(root, None)];
        let mut closing: Vec<(usize, usize)> = Vec::new();
        let first = self.nodes.len();
        while let Some((id, parent)) = stack.pop() {
            // Close the subtrees that are finished: everything pushed after
            // an open split belongs to it.
            while let Some(&(open_id, depth)) = closing.last() {
                if stack.len() < depth {
                    open[open_id] = false;
                    closing.pop();
                } else {
                    break;
                }
            }
            if id >= n {
                return Err(format!("a child points at node {id}, but the tree has {n}"));
            }
            let index = if placed[id] != UNSEEN {
                if open[id] {
                    return Err(format!("node {id} is its own descendant (a cycle)"));
                }
                placed[id]
            } else {
                let index = u32::try_from(self.nodes.len())
                    .map_err(|_| "the model has more than 4 billion nodes".to_string())?;
                placed[id] = index;
                match spec(id)? {
                    Spec::Leaf(outputs) => {
                        let start = self.outputs.len() as u32;
                        self.outputs.extend(outputs);
                        self.nodes.push(Node {
                            threshold: 0.0,
                            feature: 0,
                            left: start,
                            right: self.outputs.len() as u32,
                            cat: 0,
                            cat_words: 0,
                            kind: 0,
                            flags: LEAF,
                        });
                    }
                    Spec::Split {
                        feature,
                        threshold,
                        kind,
                        flags,
                        bits,
                        left,
                        right,
                    } => {
                        let cat = self.bits.len() as u32;
                        let cat_words = u16::try_from(bits.len())
                            .map_err(|_| format!("node {id}'s category set is too large"))?;
                        self.bits.extend(bits);
                        self.nodes.push(Node {
                            threshold,
                            feature,
                            left: UNSEEN,
                            right: UNSEEN,
                            cat,
                            cat_words,
                            kind,
                            flags: flags & !LEAF,
                        });
                        open[id] = true;
                        // Its subtree is everything pushed from here on: it
                        // is finished when the stack is shorter than now.
                        closing.push((id, stack.len()));
                        stack.push((right, Some((index, false))));
                        stack.push((left, Some((index, true))));
                    }
                }
                index
            };
            if let Some((p, is_left)) = parent {
                let p = &mut self.nodes[p as usize];
                if is_left {
                    p.left = index;
                } else {
                    p.right = index;
                }
            }
        }
        debug_assert!(self.nodes[first..].iter().all(|n| n.left != UNSEEN));
        self.roots.push(first as u32);
        Ok(placed)
    }

    /// Records the weights of the nodes a tree's [`Forest::add_tree`]
    /// placed: `weight(id)` for file node `id`.
    pub fn set_weights(&mut self, placed: &[u32], weight: impl Fn(usize) -> f64) {
        self.weights.resize(self.nodes.len(), f64::NAN);
        for (id, &at) in placed.iter().enumerate() {
            if at != UNPLACED {
                self.weights[at as usize] = weight(id);
            }
        }
    }

    /// The leaf that `row` reaches in tree `tree`.
    #[inline]
    pub fn leaf<R: Rules>(&self, tree: usize, row: &[R::X]) -> &Node {
        let mut node = &self.nodes[self.roots[tree] as usize];
        while node.flags & LEAF == 0 {
            let x = row[node.feature as usize];
            let next = if R::goes_left(node, x, &self.bits) {
                node.left
            } else {
                node.right
            };
            node = &self.nodes[next as usize];
        }
        node
    }

    /// Calls `visit(row, tree, leaf)` for every row of `x` (rows of
    /// `width` values) and every tree. Rows go in blocks of [`BLOCK`]: each
    /// tree is walked for every row of a block before the next tree, so its
    /// nodes stay in cache and the rows' independent walks overlap in the
    /// CPU; each row still meets the trees in order.
    pub fn for_each_leaf<R: Rules>(
        &self,
        x: &[R::X],
        width: usize,
        mut visit: impl FnMut(usize, usize, &Node),
    ) {
        let n = x.len().checked_div(width).unwrap_or(0);
        for start in (0..n).step_by(BLOCK) {
            let end = (start + BLOCK).min(n);
            for tree in 0..self.roots.len() {
                for row in start..end {
                    let leaf = self.leaf::<R>(tree, &x[row * width..(row + 1) * width]);
                    visit(row, tree, leaf);
                }
            }
        }
    }

    /// A leaf's outputs.
    #[inline]
    pub fn outputs(&self, leaf: &Node) -> &[Output] {
        &self.outputs[leaf.left as usize..leaf.right as usize]
    }
}

/// Whether category `c` (a non-negative integer) is in a split's bitset.
#[inline]
pub(super) fn in_bitset(node: &Node, bits: &[u32], c: u32) -> bool {
    let word = (c / 32) as usize;
    word < node.cat_words as usize && (bits[node.cat as usize + word] >> (c % 32)) & 1 == 1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `x <= threshold` goes left; missing goes where the node says.
    struct LessEqual;

    impl Rules for LessEqual {
        type X = f64;
        fn goes_left(node: &Node, x: f64, _bits: &[u32]) -> bool {
            if x.is_nan() {
                node.flags & DEFAULT_LEFT != 0
            } else {
                x <= node.threshold
            }
        }
    }

    fn split(feature: u32, threshold: f64, left: usize, right: usize) -> Spec {
        Spec::Split {
            feature,
            threshold,
            kind: 0,
            flags: 0,
            bits: Vec::new(),
            left,
            right,
        }
    }

    fn leaf(value: f64) -> Spec {
        Spec::Leaf(vec![Output { target: 0, value }])
    }

    fn value(forest: &Forest, tree: usize, row: &[f64]) -> f64 {
        forest.outputs(forest.leaf::<LessEqual>(tree, row))[0].value
    }

    #[test]
    fn two_level_tree_example() {
        // 0: x0 <= 1 ? 1 : 2;  1: x1 <= 5 ? leaf 10 : leaf 20;  2: leaf 30
        let mut forest = Forest::default();
        forest
            .add_tree(5, 0, |i| {
                Ok(match i {
                    0 => split(0, 1.0, 1, 2),
                    1 => split(1, 5.0, 3, 4),
                    2 => leaf(30.0),
                    3 => leaf(10.0),
                    _ => leaf(20.0),
                })
            })
            .unwrap();
        assert_eq!(value(&forest, 0, &[0.0, 0.0]), 10.0);
        assert_eq!(value(&forest, 0, &[1.0, 6.0]), 20.0);
        assert_eq!(value(&forest, 0, &[2.0, 0.0]), 30.0);
        // Depth first: the left child follows its parent.
        assert_eq!(forest.nodes[0].left, 1);
    }

    #[test]
    fn shared_child_is_laid_out_once_and_cycles_are_refused() {
        let mut forest = Forest::default();
        forest
            .add_tree(2, 0, |i| {
                Ok(if i == 0 {
                    split(0, 0.0, 1, 1)
                } else {
                    leaf(7.0)
                })
            })
            .unwrap();
        assert_eq!(forest.nodes.len(), 2);
        assert_eq!(value(&forest, 0, &[5.0]), 7.0);

        let err = Forest::default()
            .add_tree(3, 0, |i| {
                Ok(match i {
                    0 => split(0, 0.0, 1, 2),
                    1 => split(0, 0.0, 2, 0),
                    _ => leaf(1.0),
                })
            })
            .unwrap_err();
        assert!(err.contains("cycle"), "{err}");
        let err = Forest::default()
            .add_tree(2, 0, |i| {
                Ok(if i == 0 {
                    split(0, 0.0, 1, 9)
                } else {
                    leaf(1.0)
                })
            })
            .unwrap_err();
        assert!(err.contains("node 9"), "{err}");
    }

    #[test]
    fn deep_chain_compiles_without_recursion() {
        let n = 200_001;
        let mut forest = Forest::default();
        forest
            .add_tree(n, 0, |i| {
                Ok(if i + 1 == n {
                    leaf(1.0)
                } else {
                    split(0, i as f64, n - 1, i + 1)
                })
            })
            .unwrap();
        assert_eq!(value(&forest, 0, &[1e9]), 1.0);
    }

    #[test]
    fn bitset_lookup_example() {
        let node = Node {
            threshold: 0.0,
            feature: 0,
            left: 0,
            right: 0,
            cat: 1,
            cat_words: 2,
            kind: 0,
            flags: CATEGORICAL,
        };
        let bits = [u32::MAX, 0b101, 1 << 3];
        assert!(in_bitset(&node, &bits, 0));
        assert!(!in_bitset(&node, &bits, 1));
        assert!(in_bitset(&node, &bits, 2));
        assert!(in_bitset(&node, &bits, 35));
        assert!(!in_bitset(&node, &bits, 64));
        assert!(!in_bitset(&node, &bits, u32::MAX));
    }
}
