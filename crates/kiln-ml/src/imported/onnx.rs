//! ONNX graphs evaluated by a small interpreter over f32 tensors shaped
//! `[rows, columns]`, for the operators scikit-learn's exporter (skl2onnx)
//! and onnxmltools put in classical models: see [`ML_OPS`] and
//! [`STANDARD_OPS`].
//!
//! Loading picks the graph output that holds the scores (a classifier's
//! probabilities, a regressor's values), keeps only the nodes it depends
//! on (so a label output built from operators kiln lacks does no harm),
//! checks every operator and shape once, and compiles tree ensembles into
//! a [`Forest`]. Scoring then cannot fail.
//!
//! Results follow onnxruntime's CPU kernels: tree ensembles sum leaf
//! weights in the tree element type (f32, or f64 when the file stores
//! `*_as_tensor` doubles) in onnxruntime's order, and a binary classifier's
//! two columns come from its rules (`write_scores`, `_set_score_binary`).
//! The protobuf wire format is read with [`crate::foreign`]'s reader.

use std::collections::{HashMap, HashSet};

use super::Loaded;
use super::forest::{DEFAULT_LEFT, Forest, Node, Output, Rules, Spec};
use crate::foreign::{Fields, Wire};
use crate::foreign::{ForeignError, ModelFormat, expect_len, expect_varint, utf8};
use crate::task::Task;

/// The `ai.onnx.ml` operators kiln evaluates.
const ML_OPS: &[&str] = &[
    "TreeEnsembleClassifier",
    "TreeEnsembleRegressor",
    "LinearClassifier",
    "LinearRegressor",
    "Scaler",
    "Normalizer",
    "FeatureVectorizer",
    "ZipMap",
];

/// The default-domain (`ai.onnx`) operators kiln evaluates.
const STANDARD_OPS: &[&str] = &[
    "Identity", "Cast", "Concat", "Reshape", "Flatten", "Softmax", "Sigmoid",
];

const ML_DOMAIN: &str = "ai.onnx.ml";

// ---------------------------------------------------------------------------
// Reading the protobuf

fn damaged(why: impl Into<String>) -> ForeignError {
    ForeignError::Onnx { why: why.into() }
}

fn unsupported(why: impl Into<String>) -> ForeignError {
    ForeignError::Unsupported {
        format: ModelFormat::Onnx,
        why: why.into(),
    }
}

/// A tensor's values, as far as kiln reads them.
#[derive(Debug, Clone, PartialEq)]
enum Values {
    Float(Vec<f32>),
    Double(Vec<f64>),
    Int(Vec<i64>),
    /// Another element type (its `TensorProto.DataType`).
    Other(u64),
}

#[derive(Debug, Clone)]
struct Tensor {
    values: Values,
}

#[derive(Debug, Default)]
struct Attribute {
    name: String,
    f: Option<f32>,
    i: Option<i64>,
    s: Option<Vec<u8>>,
    t: Option<Tensor>,
    floats: Vec<f32>,
    ints: Vec<i64>,
    strings: Vec<Vec<u8>>,
    /// A reference to a function's attribute, which only functions use.
    reference: bool,
}

#[derive(Debug, Default)]
struct RawNode {
    op_type: String,
    domain: String,
    inputs: Vec<String>,
    outputs: Vec<String>,
    attributes: Vec<Attribute>,
}

/// A graph input's or output's declared type.
#[derive(Debug, Clone, PartialEq)]
enum Declared {
    Tensor {
        elem: u64,
        /// None: no shape recorded; a dimension None: unknown (`N`).
        dims: Option<Vec<Option<i64>>>,
    },
    /// A sequence (a ZipMap's list of maps) or another non-tensor.
    Sequence,
    Unknown,
}

#[derive(Debug)]
struct RawGraph {
    nodes: Vec<RawNode>,
    initializers: HashMap<String, Tensor>,
    inputs: Vec<(String, Declared)>,
    outputs: Vec<(String, Declared)>,
}

/// Appends packed or single f32 values.
fn push_f32(out: &mut Vec<f32>, value: Wire<'_>) -> Result<(), String> {
    match value {
        Wire::Fixed32(v) => out.push(f32::from_bits(v)),
        Wire::Len(b) if b.len() % 4 == 0 => out.extend(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        ),
        _ => return Err("a float list is malformed".into()),
    }
    Ok(())
}

fn push_f64(out: &mut Vec<f64>, value: Wire<'_>) -> Result<(), String> {
    match value {
        Wire::Fixed64(v) => out.push(f64::from_bits(v)),
        Wire::Len(b) if b.len() % 8 == 0 => out.extend(
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])),
        ),
        _ => return Err("a double list is malformed".into()),
    }
    Ok(())
}

fn push_i64(out: &mut Vec<i64>, value: Wire<'_>) -> Result<(), String> {
    match value {
        Wire::Varint(v) => out.push(v as i64),
        Wire::Len(b) => {
            let mut f = Fields::new(b);
            while f.pos < b.len() {
                out.push(f.varint()? as i64);
            }
        }
        _ => return Err("an integer list is malformed".into()),
    }
    Ok(())
}

fn parse_tensor(bytes: &[u8]) -> Result<(String, Tensor), String> {
    let mut name = String::new();
    let mut data_type = 0u64;
    let mut floats = Vec::new();
    let mut doubles = Vec::new();
    let mut ints = Vec::new();
    let mut raw: Option<&[u8]> = None;
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            2 => data_type = expect_varint("a tensor's data type", value)?,
            4 => push_f32(&mut floats, value)?,
            // int32_data and int64_data (int32 also carries smaller types).
            5 | 7 => push_i64(&mut ints, value)?,
            8 => name = utf8("a tensor name", expect_len("a tensor name", value)?)?,
            9 => raw = Some(expect_len("a tensor's raw data", value)?),
            10 => push_f64(&mut doubles, value)?,
            14 if expect_varint("a tensor's data location", value)? == 1 => {
                return Err(format!(
                    "tensor `{name}` keeps its data in an external file; save the model with its weights inside"
                ));
            }
            _ => {}
        }
    }
    let values = match (data_type, raw) {
        (1, Some(b)) if b.len() % 4 == 0 => Values::Float(
            b.chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
        ),
        (11, Some(b)) if b.len() % 8 == 0 => Values::Double(
            b.chunks_exact(8)
                .map(|c| f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        (7, Some(b)) if b.len() % 8 == 0 => Values::Int(
            b.chunks_exact(8)
                .map(|c| i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]))
                .collect(),
        ),
        (6, Some(b)) if b.len() % 4 == 0 => Values::Int(
            b.chunks_exact(4)
                .map(|c| i64::from(i32::from_le_bytes([c[0], c[1], c[2], c[3]])))
                .collect(),
        ),
        (1 | 11 | 7 | 6, Some(_)) => {
            return Err(format!("tensor `{name}`'s raw data has a ragged length"));
        }
        (1, None) => Values::Float(floats),
        (11, None) => Values::Double(doubles),
        (6 | 7, None) => Values::Int(ints),
        (other, _) => Values::Other(other),
    };
    Ok((name, Tensor { values }))
}

fn parse_attribute(bytes: &[u8]) -> Result<Attribute, String> {
    let mut a = Attribute::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => a.name = utf8("an attribute name", expect_len("an attribute name", value)?)?,
            2 => match value {
                Wire::Fixed32(v) => a.f = Some(f32::from_bits(v)),
                _ => return Err(format!("attribute `{}`'s float is malformed", a.name)),
            },
            3 => a.i = Some(expect_varint("an integer attribute", value)? as i64),
            4 => a.s = Some(expect_len("a text attribute", value)?.to_vec()),
            5 => a.t = Some(parse_tensor(expect_len("a tensor attribute", value)?)?.1),
            7 => push_f32(&mut a.floats, value)?,
            8 => push_i64(&mut a.ints, value)?,
            9 => a.strings.push(expect_len("a text list", value)?.to_vec()),
            21 => a.reference = true,
            _ => {}
        }
    }
    Ok(a)
}

fn parse_node(bytes: &[u8]) -> Result<RawNode, String> {
    let mut node = RawNode::default();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => node
                .inputs
                .push(utf8("a node input", expect_len("a node input", value)?)?),
            2 => node
                .outputs
                .push(utf8("a node output", expect_len("a node output", value)?)?),
            4 => node.op_type = utf8("an operator type", expect_len("an operator type", value)?)?,
            5 => node
                .attributes
                .push(parse_attribute(expect_len("an attribute", value)?)?),
            7 => node.domain = utf8("a domain", expect_len("a domain", value)?)?,
            _ => {}
        }
    }
    Ok(node)
}

/// A `TypeProto` as far as kiln needs it.
fn parse_declared(bytes: &[u8]) -> Result<Declared, String> {
    let mut declared = Declared::Unknown;
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => {
                let mut elem = 0;
                let mut dims = None;
                let mut f = Fields::new(expect_len("a tensor type", value)?);
                while let Some((n, v)) = f.next_field()? {
                    match n {
                        1 => elem = expect_varint("an element type", v)?,
                        2 => {
                            let mut shape = Vec::new();
                            let mut s = Fields::new(expect_len("a shape", v)?);
                            while let Some((n, v)) = s.next_field()? {
                                if n != 1 {
                                    continue;
                                }
                                let mut dim = None;
                                let mut d = Fields::new(expect_len("a dimension", v)?);
                                while let Some((n, v)) = d.next_field()? {
                                    if n == 1 {
                                        dim = Some(expect_varint("a dimension", v)? as i64);
                                    }
                                }
                                shape.push(dim);
                            }
                            dims = Some(shape);
                        }
                        _ => {}
                    }
                }
                declared = Declared::Tensor { elem, dims };
            }
            4 | 5 | 8 | 9 => declared = Declared::Sequence,
            _ => {}
        }
    }
    Ok(declared)
}

fn parse_value_info(bytes: &[u8]) -> Result<(String, Declared), String> {
    let mut name = String::new();
    let mut declared = Declared::Unknown;
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => name = utf8("a value name", expect_len("a value name", value)?)?,
            2 => declared = parse_declared(expect_len("a value type", value)?)?,
            _ => {}
        }
    }
    Ok((name, declared))
}

fn parse_graph(bytes: &[u8]) -> Result<RawGraph, String> {
    let mut g = RawGraph {
        nodes: Vec::new(),
        initializers: HashMap::new(),
        inputs: Vec::new(),
        outputs: Vec::new(),
    };
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => g.nodes.push(parse_node(expect_len("a node", value)?)?),
            5 => {
                let (name, tensor) = parse_tensor(expect_len("an initializer", value)?)?;
                g.initializers.insert(name, tensor);
            }
            11 => g
                .inputs
                .push(parse_value_info(expect_len("an input", value)?)?),
            12 => g
                .outputs
                .push(parse_value_info(expect_len("an output", value)?)?),
            _ => {}
        }
    }
    Ok(g)
}

fn parse_model(bytes: &[u8]) -> Result<RawGraph, String> {
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        if number == 7 {
            return parse_graph(expect_len("the graph", value)?)
                .map_err(|e| format!("in the graph: {e}"));
        }
    }
    Err("it has no graph".into())
}

// ---------------------------------------------------------------------------
// Operators

/// onnxruntime's `POST_EVAL_TRANSFORM`.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Post {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
    Probit,
}

/// onnxruntime's `ComputeLogistic`.
fn logistic(x: f32) -> f32 {
    let v = 1.0 / (1.0 + (-x.abs()).exp());
    if x < 0.0 { 1.0 - v } else { v }
}

/// onnxruntime's `ErfInv` approximation and `ComputeProbit`.
fn probit(x: f32) -> f32 {
    let x = 2.0 * x - 1.0;
    let sign = if x < 0.0 { -1.0 } else { 1.0 };
    let t = (1.0 - x) * (1.0 + x);
    let log = t.ln();
    let v = 2.0 / (std::f32::consts::PI * 0.147) + 0.5 * log;
    let v2 = 1.0 / 0.147 * log;
    let v3 = -v + (v * v - v2).sqrt();
    std::f32::consts::SQRT_2 * sign * v3.sqrt()
}

fn softmax(s: &mut [f32]) {
    let max = s.iter().copied().fold(-f32::MAX, f32::max);
    let mut sum = 0f32;
    for v in s.iter_mut() {
        *v = (*v - max).exp();
        sum += *v;
    }
    s.iter_mut().for_each(|v| *v /= sum);
}

/// onnxruntime's `ComputeSoftmaxZero`: zero scores stay zero.
fn softmax_zero(s: &mut [f32]) {
    let max = s.iter().copied().fold(-f32::MAX, f32::max);
    let exp_neg_max = (-max).exp();
    let mut sum = 0f32;
    for v in s.iter_mut() {
        if *v > 0.000_000_1 || *v < -0.000_000_1 {
            *v = (*v - max).exp();
            sum += *v;
        } else {
            *v *= exp_neg_max;
        }
    }
    s.iter_mut().for_each(|v| *v /= sum);
}

impl Post {
    fn parse(name: &[u8]) -> Result<Post, String> {
        Ok(match name {
            b"NONE" => Post::None,
            b"LOGISTIC" => Post::Logistic,
            b"SOFTMAX" => Post::Softmax,
            b"SOFTMAX_ZERO" => Post::SoftmaxZero,
            b"PROBIT" => Post::Probit,
            other => {
                return Err(format!(
                    "post_transform `{}` is unknown",
                    String::from_utf8_lossy(other)
                ));
            }
        })
    }

    /// Transforms one row of two or more scores.
    fn apply(self, s: &mut [f32]) {
        match self {
            Post::None => {}
            Post::Logistic => s.iter_mut().for_each(|v| *v = logistic(*v)),
            Post::Softmax => softmax(s),
            Post::SoftmaxZero => softmax_zero(s),
            Post::Probit => s.iter_mut().for_each(|v| *v = probit(*v)),
        }
    }
}

/// onnxruntime's `write_binary_scores`: one score becomes two columns.
fn binary_scores(s: f32, post: Post, add_second_class: i32, out: &mut [f32]) {
    if post == Post::Probit {
        out[0] = probit(s);
        out[1] = 0.0;
        return;
    }
    match add_second_class {
        0 | 1 => {
            out[0] = 1.0 - s;
            out[1] = s;
        }
        2 | 3 if post == Post::Logistic => {
            out[0] = logistic(-s);
            out[1] = logistic(s);
        }
        2 => {
            out[0] = -s;
            out[1] = s;
        }
        3 => {
            out[0] = s;
            out[1] = -s;
        }
        _ => {
            out[0] = s;
            out[1] = 0.0;
        }
    }
}

/// onnxruntime's `NODE_MODE` for a split.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(u8)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
}

/// ONNX tree ensembles' split rule: `x <mode> value` goes to the true
/// (left) child; NaN goes there too where `missing_value_tracks_true`.
struct OnnxRules;

impl Rules for OnnxRules {
    type X = f32;

    #[inline]
    fn goes_left(node: &Node, x: f32, _bits: &[u32]) -> bool {
        if x.is_nan() && node.flags & DEFAULT_LEFT != 0 {
            return true;
        }
        // Thresholds are f32 (or the file's doubles): comparing in f64 is
        // exact either way.
        let x = f64::from(x);
        let t = node.threshold;
        match node.kind {
            0 => x <= t,
            1 => x < t,
            2 => x >= t,
            3 => x > t,
            4 => x == t,
            _ => x != t,
        }
    }
}

/// A sum in the ensemble's element type.
trait Acc: Copy + PartialOrd + std::ops::Add<Output = Self> + std::ops::Neg<Output = Self> {
    const ZERO: Self;
    fn of(v: f64) -> Self;
    fn f32(self) -> f32;
    fn div(self, n: usize) -> Self;
}

impl Acc for f32 {
    const ZERO: f32 = 0.0;
    fn of(v: f64) -> f32 {
        v as f32
    }
    fn f32(self) -> f32 {
        self
    }
    fn div(self, n: usize) -> f32 {
        self / n as f32
    }
}

impl Acc for f64 {
    const ZERO: f64 = 0.0;
    fn of(v: f64) -> f64 {
        v
    }
    fn f32(self) -> f32 {
        self as f32
    }
    fn div(self, n: usize) -> f64 {
        self / n as f64
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

#[derive(Debug)]
enum EnsembleKind {
    Regressor {
        aggregate: Aggregate,
    },
    Classifier {
        /// Two classes, weights for only one of them.
        binary_case: bool,
        weights_all_positive: bool,
    },
}

#[derive(Debug)]
struct Ensemble {
    forest: Forest,
    kind: EnsembleKind,
    /// Output columns: classes, or 1 for a regressor.
    outputs: usize,
    base: Vec<f64>,
    post: Post,
    /// Sum in f64 (the file stores doubles).
    double: bool,
}

impl Ensemble {
    fn run(&self, x: &[f32], cols: usize, out: &mut [f32]) {
        if self.double {
            self.run_in::<f64>(x, cols, out);
        } else {
            self.run_in::<f32>(x, cols, out);
        }
    }

    fn run_in<A: Acc>(&self, x: &[f32], cols: usize, out: &mut [f32]) {
        let k = self.outputs;
        let trees = self.forest.roots.len();
        let base: Vec<A> = self.base.iter().map(|&b| A::of(b)).collect();
        // Sums (or extremes) per row and output, and whether any leaf
        // gave each one a weight.
        let mut sums = vec![A::ZERO; out.len()];
        let mut has = vec![false; out.len()];
        match self.kind {
            EnsembleKind::Regressor { aggregate } => {
                self.forest
                    .for_each_leaf::<OnnxRules>(x, cols, |row, _, leaf| {
                        // onnxruntime reads a leaf's first weight.
                        let Some(w) = self.forest.outputs(leaf).first() else {
                            return;
                        };
                        let w = A::of(w.value);
                        let (s, any) = (sums[row], has[row]);
                        sums[row] = match aggregate {
                            Aggregate::Sum | Aggregate::Average => s + w,
                            // onnxruntime: `(!has || w < score) ? w : score`.
                            Aggregate::Min if !any || w < s => w,
                            Aggregate::Max if !any || w > s => w,
                            Aggregate::Min | Aggregate::Max => s,
                        };
                        has[row] = true;
                    });
                let origin = if base.len() == 1 { base[0] } else { A::ZERO };
                for ((o, &s), &any) in out.iter_mut().zip(&sums).zip(&has) {
                    let score = match aggregate {
                        Aggregate::Sum => s + origin,
                        Aggregate::Average => s.div(trees) + origin,
                        Aggregate::Min | Aggregate::Max if any => s + origin,
                        Aggregate::Min | Aggregate::Max => origin,
                    };
                    *o = score.f32();
                }
            }
            EnsembleKind::Classifier {
                binary_case,
                weights_all_positive,
            } => {
                self.forest
                    .for_each_leaf::<OnnxRules>(x, cols, |row, _, leaf| {
                        for w in self.forest.outputs(leaf) {
                            let t = row * k + w.target as usize;
                            sums[t] = sums[t] + A::of(w.value);
                            has[t] = true;
                        }
                    });
                for ((out, scores), has) in out
                    .chunks_exact_mut(k)
                    .zip(sums.chunks_exact_mut(k))
                    .zip(has.chunks_exact(k))
                {
                    if k > 2 {
                        for (j, &b) in base.iter().enumerate().take(k) {
                            scores[j] = if has[j] { scores[j] + b } else { b };
                        }
                        for (o, s) in out.iter_mut().zip(scores.iter()) {
                            *o = s.f32();
                        }
                        self.post.apply(out);
                        continue;
                    }
                    // Two classes: onnxruntime's `FinalizeScores`.
                    let mut add_second_class = -1;
                    let mut two = true;
                    match base.len() {
                        // onnxruntime's rule (it assumes equal base values).
                        2 if has[1] => {
                            scores[1] = base[1] + scores[0];
                            scores[0] = -scores[1];
                        }
                        2 => {
                            scores[1] = scores[1] + base[1];
                            scores[0] = scores[0] + base[0];
                        }
                        1 => {
                            scores[0] = scores[0] + base[0];
                            two = has[1];
                        }
                        0 => {
                            add_second_class = 3;
                            two = has[1];
                        }
                        _ => {}
                    }
                    if binary_case {
                        let positive = if two && has[1] {
                            scores[1]
                        } else if has[0] {
                            scores[0]
                        } else {
                            A::ZERO
                        };
                        add_second_class = match weights_all_positive {
                            true if positive > A::of(0.5) => 0,
                            true => 1,
                            false if positive > A::ZERO => 2,
                            false => 3,
                        };
                    }
                    if two {
                        out[0] = scores[0].f32();
                        out[1] = scores[1].f32();
                        self.post.apply(out);
                    } else {
                        binary_scores(scores[0].f32(), self.post, add_second_class, out);
                    }
                }
            }
        }
    }
}

#[derive(Debug)]
struct Linear {
    /// `targets × inputs`, row-major.
    coefficients: Vec<f32>,
    intercepts: Vec<f32>,
    post: Post,
    /// A classifier with one score column and two labels: `[1 - s, s]`.
    add_second_class: bool,
}

impl Linear {
    /// `x · coefficientsᵀ + intercepts`, as onnxruntime's GEMM (f32, fused
    /// multiply-adds along the row, the intercept added last).
    fn run(&self, x: &[f32], cols: usize, out: &mut [f32]) {
        let targets = self.intercepts.len();
        let width = if self.add_second_class { 2 } else { targets };
        for (row, out) in x.chunks_exact(cols.max(1)).zip(out.chunks_exact_mut(width)) {
            for (t, o) in out[..targets].iter_mut().enumerate() {
                let w = &self.coefficients[t * cols..(t + 1) * cols];
                let mut acc = 0f32;
                for (a, b) in row.iter().zip(w) {
                    acc = a.mul_add(*b, acc);
                }
                *o = acc + self.intercepts[t];
            }
            if self.add_second_class {
                let s = out[0];
                binary_scores(s, self.post, 1, out);
            } else if targets >= 2 {
                self.post.apply(out);
            }
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Norm {
    Max,
    L1,
    L2,
}

#[derive(Debug)]
enum Op {
    /// Identity, Cast to float, ZipMap, Reshape and Flatten that keep `[N, C]`.
    Copy,
    /// Concat along columns, FeatureVectorizer (each input cut or padded
    /// to the given width).
    Columns(Vec<usize>),
    Scaler {
        offset: Vec<f32>,
        scale: Vec<f32>,
    },
    Normalizer(Norm),
    Softmax,
    Sigmoid,
    Linear(Linear),
    Ensemble(Box<Ensemble>),
}

/// One node to run: its operator, input slots (with their widths) and
/// output slots (the first output is the one computed, except for
/// classifiers whose scores are their second output).
#[derive(Debug)]
struct Step {
    op: Op,
    inputs: Vec<(usize, usize)>,
    /// The slot computed, and its width.
    output: (usize, usize),
}

/// A graph input: where its columns sit in a kiln row.
#[derive(Debug)]
struct Input {
    slot: usize,
    first: usize,
    width: usize,
}

#[derive(Debug)]
pub(super) struct Graph {
    inputs: Vec<Input>,
    steps: Vec<Step>,
    slots: usize,
    /// The slot holding the scores, and its width.
    output: (usize, usize),
    task: Task,
}

impl Graph {
    /// Scores rows of `width` f64 values into `out` (one value per row, or
    /// one per class).
    pub fn predict(&self, x: &[f64], width: usize, out: &mut [f64]) {
        let n = x.len().checked_div(width).unwrap_or(0);
        let mut values: Vec<Vec<f32>> = vec![Vec::new(); self.slots];
        for input in &self.inputs {
            let mut v = Vec::with_capacity(n * input.width);
            for row in x.chunks_exact(width.max(1)) {
                v.extend(
                    row[input.first..input.first + input.width]
                        .iter()
                        .map(|&v| v as f32),
                );
            }
            values[input.slot] = v;
        }
        for step in &self.steps {
            let (slot, cols) = step.output;
            let mut result = vec![0f32; n * cols];
            let (first, first_cols) = step.inputs.first().copied().unwrap_or((0, 0));
            let src = &values[first];
            match &step.op {
                Op::Copy => result.copy_from_slice(src),
                Op::Columns(widths) => {
                    let mut at = 0;
                    for (&(input, c), &w) in step.inputs.iter().zip(widths) {
                        let src = &values[input];
                        let take = c.min(w);
                        for i in 0..n {
                            result[i * cols + at..i * cols + at + take]
                                .copy_from_slice(&src[i * c..i * c + take]);
                        }
                        at += w;
                    }
                }
                Op::Scaler { offset, scale } => {
                    for (i, (r, &v)) in result.iter_mut().zip(src).enumerate() {
                        let j = if offset.len() == 1 { 0 } else { i % cols };
                        *r = (v - offset[j]) * scale[j];
                    }
                }
                Op::Normalizer(norm) => {
                    for (r, v) in result.chunks_exact_mut(cols).zip(src.chunks_exact(cols)) {
                        normalize(*norm, v, r);
                    }
                }
                Op::Softmax => {
                    result.copy_from_slice(src);
                    result.chunks_exact_mut(cols).for_each(softmax);
                }
                Op::Sigmoid => {
                    for (r, &v) in result.iter_mut().zip(src) {
                        *r = 1.0 / (1.0 + (-v).exp());
                    }
                }
                Op::Linear(l) => l.run(src, first_cols, &mut result),
                Op::Ensemble(e) => e.run(src, first_cols, &mut result),
            }
            values[slot] = result;
        }
        let (slot, cols) = self.output;
        let scores = &values[slot];
        match self.task {
            Task::Binary => {
                for (o, row) in out.iter_mut().zip(scores.chunks_exact(cols)) {
                    *o = f64::from(row[1]);
                }
            }
            Task::Multiclass | Task::Regression => {
                for (o, &s) in out.iter_mut().zip(scores) {
                    *o = f64::from(s);
                }
            }
        }
    }
}

/// onnxruntime's `NormalizeMax`, `NormalizeL1`, `NormalizeL2`.
fn normalize(norm: Norm, x: &[f32], out: &mut [f32]) {
    match norm {
        Norm::Max => {
            let max = x.iter().copied().fold(f32::MIN, f32::max);
            for (o, &v) in out.iter_mut().zip(x) {
                *o = if max != 0.0 { v / max } else { v };
            }
        }
        Norm::L1 => {
            let sum: f32 = x.iter().fold(0.0, |s, v| s + v.abs());
            for (o, &v) in out.iter_mut().zip(x) {
                *o = if sum != 0.0 { v / sum } else { v };
            }
        }
        Norm::L2 => {
            let sum: f32 = x.iter().fold(0.0, |s, v| s + v * v);
            for (o, &v) in out.iter_mut().zip(x) {
                *o = if sum != 0.0 {
                    let r = (v * v / sum).sqrt();
                    if v < 0.0 { -r } else { r }
                } else {
                    v
                };
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Compiling

/// What a value name holds while compiling.
#[derive(Debug, Clone, Copy)]
enum Known {
    /// A float tensor `[N, cols]` in a slot.
    Float { slot: usize, cols: usize },
    /// Labels (or other values kiln does not compute), in a slot nobody reads.
    Labels,
}

struct Compiler<'g> {
    graph: &'g RawGraph,
    known: HashMap<&'g str, Known>,
    slots: usize,
    steps: Vec<Step>,
    /// Class labels of the last classifier, or None for regressors.
    classes: Option<Vec<String>>,
    predictors: usize,
}

/// An attribute's name → value, with typed getters.
struct Attrs<'a> {
    op: &'a str,
    list: &'a [Attribute],
}

impl<'a> Attrs<'a> {
    fn get(&self, name: &str) -> Option<&'a Attribute> {
        self.list.iter().find(|a| a.name == name)
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        self.get(name).and_then(|a| a.i).unwrap_or(default)
    }

    fn text(&self, name: &str, default: &'a [u8]) -> &'a [u8] {
        self.get(name)
            .and_then(|a| a.s.as_deref())
            .unwrap_or(default)
    }

    fn floats(&self, name: &str) -> &'a [f32] {
        self.get(name).map_or(&[], |a| a.floats.as_slice())
    }

    fn ints(&self, name: &str) -> &'a [i64] {
        self.get(name).map_or(&[], |a| a.ints.as_slice())
    }

    /// `name` (floats) or `name_as_tensor` (a float or double tensor):
    /// the values as f64, and whether they were doubles.
    fn numbers(&self, name: &str) -> Result<(Vec<f64>, bool), ForeignError> {
        if let Some(t) = self
            .get(&format!("{name}_as_tensor"))
            .and_then(|a| a.t.as_ref())
        {
            return match &t.values {
                Values::Double(v) => Ok((v.clone(), true)),
                Values::Float(v) => Ok((v.iter().map(|&v| f64::from(v)).collect(), false)),
                _ => Err(damaged(format!(
                    "{}'s `{name}_as_tensor` is neither float nor double",
                    self.op
                ))),
            };
        }
        Ok((
            self.floats(name).iter().map(|&v| f64::from(v)).collect(),
            false,
        ))
    }

    fn post(&self) -> Result<Post, ForeignError> {
        Post::parse(self.text("post_transform", b"NONE"))
            .map_err(|e| damaged(format!("{}'s {e}", self.op)))
    }

    /// Class labels as text: `classlabels_strings` or the integer labels.
    fn labels(&self, ints: &str) -> Vec<String> {
        let strings = self
            .get("classlabels_strings")
            .map_or(&[][..], |a| a.strings.as_slice());
        if !strings.is_empty() {
            strings
                .iter()
                .map(|s| String::from_utf8_lossy(s).into_owned())
                .collect()
        } else {
            self.ints(ints).iter().map(i64::to_string).collect()
        }
    }
}

fn usize_of(v: i64, what: &str) -> Result<usize, ForeignError> {
    usize::try_from(v).map_err(|_| damaged(format!("{what} is {v}")))
}

impl<'g> Compiler<'g> {
    fn slot(&mut self) -> usize {
        self.slots += 1;
        self.slots - 1
    }

    /// The float input `i` of `node`.
    fn float_input(&self, node: &RawNode, i: usize) -> Result<(usize, usize), ForeignError> {
        let name = node.inputs.get(i).map_or("", String::as_str);
        match self.known.get(name) {
            Some(Known::Float { slot, cols }) => Ok((*slot, *cols)),
            Some(Known::Labels) => Err(unsupported(format!(
                "{} reads `{name}`, which holds labels or integers; kiln computes float tensors only",
                node.op_type
            ))),
            None if self.graph.initializers.contains_key(name) => Err(unsupported(format!(
                "{} reads the constant `{name}` as data; kiln evaluates operators on the model's inputs only",
                node.op_type
            ))),
            None if name.is_empty() => Err(damaged(format!(
                "{} lacks its input {}",
                node.op_type,
                i + 1
            ))),
            None => Err(damaged(format!(
                "{} reads `{name}` before any node writes it (the graph is not in order)",
                node.op_type
            ))),
        }
    }

    fn compile(&mut self, node: &'g RawNode) -> Result<(), ForeignError> {
        let a = Attrs {
            op: &node.op_type,
            list: &node.attributes,
        };
        if let Some(r) = node.attributes.iter().find(|a| a.reference) {
            return Err(unsupported(format!(
                "{}'s attribute `{}` refers to a function attribute",
                node.op_type, r.name
            )));
        }
        let op = node.op_type.as_str();
        // Labels in, labels out: Identity or Cast of a label output.
        if matches!(op, "Identity" | "Cast")
            && let Some(Known::Labels) =
                node.inputs.first().and_then(|i| self.known.get(i.as_str()))
        {
            return self.labels_out(node);
        }
        let (op_value, cols, scores_output) = match op {
            "Identity" | "ZipMap" => {
                let (s, c) = self.float_input(node, 0)?;
                (Op::Copy, vec![(s, c)], c)
            }
            "Cast" => {
                let (s, c) = self.float_input(node, 0)?;
                match a.int("to", 0) {
                    1 => (Op::Copy, vec![(s, c)], c),
                    11 => {
                        return Err(unsupported(
                            "Cast to double: kiln evaluates ONNX graphs in f32",
                        ));
                    }
                    // Integers, strings, booleans: labels.
                    _ => return self.labels_out(node),
                }
            }
            "Flatten" => {
                let (s, c) = self.float_input(node, 0)?;
                if !matches!(a.int("axis", 1), 1 | -1) {
                    return Err(unsupported("Flatten with an axis other than 1"));
                }
                (Op::Copy, vec![(s, c)], c)
            }
            "Reshape" => {
                let (s, c) = self.float_input(node, 0)?;
                let shape = node
                    .inputs
                    .get(1)
                    .and_then(|n| self.graph.initializers.get(n.as_str()))
                    .ok_or_else(|| unsupported("Reshape to a shape computed in the graph"))?;
                let Values::Int(dims) = &shape.values else {
                    return Err(damaged("Reshape's shape is not an integer tensor"));
                };
                // Only reshapes that keep `[N, C]` (skl2onnx's `[-1, C]`).
                let keeps = dims.len() == 2
                    && matches!(dims[0], -1 | 0)
                    && (dims[1] == -1
                        || dims[1] == c as i64
                        || (dims[1] == 0 && a.int("allowzero", 0) == 0));
                if !keeps {
                    return Err(unsupported(format!(
                        "Reshape of a [N, {c}] tensor to {dims:?}; kiln keeps tensors shaped [N, columns]"
                    )));
                }
                (Op::Copy, vec![(s, c)], c)
            }
            "Concat" => {
                if !matches!(a.int("axis", 1), 1 | -1) {
                    return Err(unsupported("Concat along an axis other than the columns"));
                }
                let inputs = (0..node.inputs.len())
                    .map(|i| self.float_input(node, i))
                    .collect::<Result<Vec<_>, _>>()?;
                let widths: Vec<usize> = inputs.iter().map(|&(_, c)| c).collect();
                let total = widths.iter().sum();
                (Op::Columns(widths), inputs, total)
            }
            "FeatureVectorizer" => {
                let inputs = (0..node.inputs.len())
                    .map(|i| self.float_input(node, i))
                    .collect::<Result<Vec<_>, _>>()?;
                let dims = a.ints("inputdimensions");
                if dims.len() != inputs.len() {
                    return Err(damaged(format!(
                        "FeatureVectorizer has {} inputs but {} input dimensions",
                        inputs.len(),
                        dims.len()
                    )));
                }
                let widths = dims
                    .iter()
                    .map(|&d| usize_of(d, "a FeatureVectorizer input dimension"))
                    .collect::<Result<Vec<_>, _>>()?;
                let total = widths.iter().sum();
                (Op::Columns(widths), inputs, total)
            }
            "Scaler" => {
                let (s, c) = self.float_input(node, 0)?;
                let offset = a.floats("offset").to_vec();
                let scale = a.floats("scale").to_vec();
                let fits = (offset.len() == c && scale.len() == c)
                    || (offset.len() == 1 && scale.len() == 1);
                if !fits {
                    return Err(damaged(format!(
                        "Scaler has {} offsets and {} scales for {c} columns",
                        offset.len(),
                        scale.len()
                    )));
                }
                (Op::Scaler { offset, scale }, vec![(s, c)], c)
            }
            "Normalizer" => {
                let (s, c) = self.float_input(node, 0)?;
                let norm = match a.text("norm", b"MAX") {
                    b"MAX" => Norm::Max,
                    b"L1" => Norm::L1,
                    b"L2" => Norm::L2,
                    other => {
                        return Err(damaged(format!(
                            "Normalizer's norm `{}` is unknown",
                            String::from_utf8_lossy(other)
                        )));
                    }
                };
                (Op::Normalizer(norm), vec![(s, c)], c)
            }
            "Softmax" | "Sigmoid" => {
                let (s, c) = self.float_input(node, 0)?;
                if op == "Softmax" && !matches!(a.int("axis", -1), 1 | -1) {
                    return Err(unsupported("Softmax along an axis other than the columns"));
                }
                let op = if op == "Softmax" {
                    Op::Softmax
                } else {
                    Op::Sigmoid
                };
                (op, vec![(s, c)], c)
            }
            "LinearRegressor" => {
                let (s, c) = self.float_input(node, 0)?;
                let targets = a.int("targets", 1);
                if targets != 1 {
                    return Err(unsupported(format!(
                        "LinearRegressor with {targets} targets; kiln scores one target"
                    )));
                }
                if a.post()? != Post::None {
                    return Err(unsupported(
                        "LinearRegressor with a post_transform other than NONE",
                    ));
                }
                let coefficients = a.floats("coefficients").to_vec();
                let mut intercepts = a.floats("intercepts").to_vec();
                if intercepts.is_empty() {
                    intercepts.push(0.0);
                }
                if coefficients.len() != c || intercepts.len() != 1 {
                    return Err(damaged(format!(
                        "LinearRegressor has {} coefficients and {} intercepts for {c} columns",
                        coefficients.len(),
                        intercepts.len()
                    )));
                }
                self.predictors += 1;
                self.classes = None;
                let linear = Linear {
                    coefficients,
                    intercepts,
                    post: Post::None,
                    add_second_class: false,
                };
                (Op::Linear(linear), vec![(s, c)], 1)
            }
            "LinearClassifier" => {
                let (s, c) = self.float_input(node, 0)?;
                let coefficients = a.floats("coefficients").to_vec();
                let intercepts = a.floats("intercepts").to_vec();
                let labels = a.labels("classlabels_ints");
                let targets = intercepts.len();
                if targets == 0 || coefficients.len() != targets * c {
                    return Err(damaged(format!(
                        "LinearClassifier has {} coefficients and {targets} intercepts for {c} columns",
                        coefficients.len()
                    )));
                }
                let post = a.post()?;
                let add_second_class = targets == 1 && labels.len() == 2;
                if add_second_class && post != Post::None {
                    return Err(unsupported(
                        "LinearClassifier with one score column and a post_transform",
                    ));
                }
                let width = if add_second_class { 2 } else { targets };
                if labels.len() != width {
                    return Err(unsupported(format!(
                        "LinearClassifier with {} labels and {width} score columns",
                        labels.len()
                    )));
                }
                self.predictors += 1;
                self.classes = Some(labels);
                let linear = Linear {
                    coefficients,
                    intercepts,
                    post,
                    add_second_class,
                };
                (Op::Linear(linear), vec![(s, c)], width)
            }
            "TreeEnsembleRegressor" | "TreeEnsembleClassifier" => {
                let (s, c) = self.float_input(node, 0)?;
                let ensemble = ensemble(&a, op == "TreeEnsembleClassifier", c)?;
                self.predictors += 1;
                if let EnsembleKind::Classifier { .. } = ensemble.kind {
                    self.classes = Some(a.labels("classlabels_int64s"));
                } else {
                    self.classes = None;
                }
                let width = ensemble.outputs;
                (Op::Ensemble(Box::new(ensemble)), vec![(s, c)], width)
            }
            other => {
                return Err(unsupported(format!("operator `{other}` is not supported")));
            }
        };
        // A classifier's scores are its second output; its first (labels)
        // is not computed.
        let classifier = matches!(op, "LinearClassifier" | "TreeEnsembleClassifier");
        let out_index = usize::from(classifier);
        for (i, name) in node.outputs.iter().enumerate() {
            if name.is_empty() {
                continue;
            }
            if i != out_index {
                self.known.insert(name, Known::Labels);
            }
        }
        if scores_output == 0 {
            return Err(damaged(format!("{op} produces a tensor with no columns")));
        }
        let slot = self.slot();
        if let Some(name) = node.outputs.get(out_index).filter(|n| !n.is_empty()) {
            self.known.insert(
                name,
                Known::Float {
                    slot,
                    cols: scores_output,
                },
            );
        }
        self.steps.push(Step {
            op: op_value,
            inputs: cols,
            output: (slot, scores_output),
        });
        Ok(())
    }

    fn labels_out(&mut self, node: &'g RawNode) -> Result<(), ForeignError> {
        for name in &node.outputs {
            self.known.insert(name, Known::Labels);
        }
        Ok(())
    }
}

fn mode(name: &[u8]) -> Result<Option<Mode>, ForeignError> {
    Ok(Some(match name {
        b"BRANCH_LEQ" => Mode::Leq,
        b"BRANCH_LT" => Mode::Lt,
        b"BRANCH_GTE" => Mode::Gte,
        b"BRANCH_GT" => Mode::Gt,
        b"BRANCH_EQ" => Mode::Eq,
        b"BRANCH_NEQ" => Mode::Neq,
        b"LEAF" => return Ok(None),
        other => {
            return Err(unsupported(format!(
                "tree node mode `{}` is not supported",
                String::from_utf8_lossy(other)
            )));
        }
    }))
}

/// Compiles a TreeEnsembleRegressor or TreeEnsembleClassifier reading
/// `cols` features.
fn ensemble(a: &Attrs<'_>, classifier: bool, cols: usize) -> Result<Ensemble, ForeignError> {
    let op = a.op;
    let tree_ids = a.ints("nodes_treeids");
    let node_ids = a.ints("nodes_nodeids");
    let features = a.ints("nodes_featureids");
    let modes = a
        .get("nodes_modes")
        .map_or(&[][..], |m| m.strings.as_slice());
    let (values, values_double) = a.numbers("nodes_values")?;
    let trues = a.ints("nodes_truenodeids");
    let falses = a.ints("nodes_falsenodeids");
    let tracks = a.ints("nodes_missing_value_tracks_true");
    let n = tree_ids.len();
    if n == 0 {
        return Err(damaged(format!("{op} has no nodes")));
    }
    for (what, len) in [
        ("nodes_nodeids", node_ids.len()),
        ("nodes_featureids", features.len()),
        ("nodes_modes", modes.len()),
        ("nodes_values", values.len()),
        ("nodes_truenodeids", trues.len()),
        ("nodes_falsenodeids", falses.len()),
    ] {
        if len != n {
            return Err(damaged(format!(
                "{op} lists {n} nodes but {len} entries in `{what}`"
            )));
        }
    }
    if !tracks.is_empty() && tracks.len() != n {
        return Err(damaged(format!(
            "{op} lists {n} nodes but {} missing-value flags",
            tracks.len()
        )));
    }
    let modes = modes
        .iter()
        .map(|m| mode(m))
        .collect::<Result<Vec<_>, _>>()?;

    let (prefix, labels) = if classifier {
        let labels = a.labels("classlabels_int64s");
        if labels.len() < 2 {
            return Err(damaged(format!("{op} has {} class labels", labels.len())));
        }
        ("class", labels.len())
    } else {
        let targets = a.int("n_targets", 0);
        if targets != 1 {
            return Err(if targets > 1 {
                unsupported(format!(
                    "{op} with {targets} targets; kiln scores one target"
                ))
            } else {
                damaged(format!("{op} has `n_targets` {targets}"))
            });
        }
        ("target", 1)
    };
    let w_trees = a.ints(&format!("{prefix}_treeids"));
    let w_nodes = a.ints(&format!("{prefix}_nodeids"));
    let w_ids = a.ints(&format!("{prefix}_ids"));
    let (w_values, weights_double) = a.numbers(&format!("{prefix}_weights"))?;
    if w_nodes.len() != w_trees.len()
        || w_ids.len() != w_trees.len()
        || w_values.len() != w_trees.len()
    {
        return Err(damaged(format!(
            "{op}'s `{prefix}_*` lists differ in length"
        )));
    }
    let (base, base_double) = a.numbers("base_values")?;
    let post = a.post()?;

    // Positions by (tree, node); trees are contiguous runs of ids.
    let mut position: HashMap<(i64, i64), usize> = HashMap::with_capacity(n);
    for i in 0..n {
        if position.insert((tree_ids[i], node_ids[i]), i).is_some() {
            return Err(damaged(format!(
                "{op} lists node {} of tree {} twice",
                node_ids[i], tree_ids[i]
            )));
        }
    }
    let mut runs: Vec<(usize, usize)> = Vec::new();
    let mut seen = HashSet::new();
    for i in 0..n {
        if i == 0 || tree_ids[i] != tree_ids[i - 1] {
            if !seen.insert(tree_ids[i]) {
                return Err(damaged(format!(
                    "{op} lists the nodes of tree {} in two places",
                    tree_ids[i]
                )));
            }
            runs.push((i, i + 1));
        } else if let Some(run) = runs.last_mut() {
            run.1 = i + 1;
        }
    }
    // Leaf weights in onnxruntime's order: by tree, node, then position.
    let mut order: Vec<usize> = (0..w_trees.len()).collect();
    order.sort_by_key(|&i| (w_trees[i], w_nodes[i], i));
    let mut leaf_outputs: Vec<Vec<Output>> = vec![Vec::new(); n];
    let mut weight_classes = HashSet::new();
    let mut all_positive = true;
    for i in order {
        let Some(&p) = position.get(&(w_trees[i], w_nodes[i])) else {
            return Err(damaged(format!(
                "{op} has a weight for node {} of tree {}, which does not exist",
                w_nodes[i], w_trees[i]
            )));
        };
        let target = usize_of(w_ids[i], &format!("a {prefix} id"))?;
        if target >= labels {
            return Err(damaged(format!(
                "{op} has a weight for {prefix} {target} of {labels}"
            )));
        }
        weight_classes.insert(target);
        all_positive &= w_values[i] >= 0.0;
        // onnxruntime ignores weights on split nodes.
        if modes[p].is_none() {
            leaf_outputs[p].push(Output {
                target: target as u32,
                value: w_values[i],
            });
        }
    }
    let mut forest = Forest::default();
    for &(start, end) in &runs {
        let tree = tree_ids[start];
        let local = |node: i64, i: usize| -> Result<usize, String> {
            match position.get(&(tree, node)) {
                Some(&p) if (start..end).contains(&p) => Ok(p - start),
                _ => Err(format!(
                    "node {} of tree {tree} points at node {node}, which is not in the tree",
                    node_ids[i]
                )),
            }
        };
        forest
            .add_tree(end - start, 0, |l| {
                let i = start + l;
                let Some(m) = modes[i] else {
                    return Ok(Spec::Leaf(std::mem::take(&mut leaf_outputs[i])));
                };
                let feature = u32::try_from(features[i])
                    .ok()
                    .filter(|&f| (f as usize) < cols)
                    .ok_or_else(|| {
                        format!(
                            "a split reads feature {}, but its input has {cols} columns",
                            features[i]
                        )
                    })?;
                let flags = if tracks.get(i).is_some_and(|&t| t == 1) {
                    DEFAULT_LEFT
                } else {
                    0
                };
                Ok(Spec::Split {
                    feature,
                    threshold: values[i],
                    kind: m as u8,
                    flags,
                    bits: Vec::new(),
                    left: local(trues[i], i)?,
                    right: local(falses[i], i)?,
                })
            })
            .map_err(|e| damaged(format!("{op}: {e}")))?;
    }
    let kind = if classifier {
        EnsembleKind::Classifier {
            binary_case: labels == 2 && weight_classes.len() == 1,
            weights_all_positive: all_positive,
        }
    } else {
        if post != Post::None {
            return Err(unsupported(format!(
                "{op} with a post_transform other than NONE"
            )));
        }
        let aggregate = match a.text("aggregate_function", b"SUM") {
            b"SUM" => Aggregate::Sum,
            b"AVERAGE" => Aggregate::Average,
            b"MIN" => Aggregate::Min,
            b"MAX" => Aggregate::Max,
            other => {
                return Err(damaged(format!(
                    "{op}'s aggregate_function `{}` is unknown",
                    String::from_utf8_lossy(other)
                )));
            }
        };
        EnsembleKind::Regressor { aggregate }
    };
    Ok(Ensemble {
        forest,
        kind,
        outputs: labels,
        base,
        post,
        double: values_double || weights_double || base_double,
    })
}

/// Reads and compiles an ONNX model.
pub(super) fn load(bytes: &[u8]) -> Result<Loaded<Graph>, ForeignError> {
    let graph = parse_model(bytes).map_err(damaged)?;
    compile(&graph)
}

fn is_float_like(d: &Declared) -> bool {
    match d {
        Declared::Tensor { elem, .. } => *elem == 1,
        Declared::Sequence | Declared::Unknown => true,
    }
}

fn compile(graph: &RawGraph) -> Result<Loaded<Graph>, ForeignError> {
    // Which output holds the scores: the first float (or ZipMap) output
    // of a regressor, the last of a classifier (labels come first).
    let classifier_ops = [
        "TreeEnsembleClassifier",
        "LinearClassifier",
        "SVMClassifier",
        "TreeEnsemble",
    ];
    let has_classifier = graph
        .nodes
        .iter()
        .any(|n| classifier_ops.contains(&n.op_type.as_str()));
    let candidates: Vec<&str> = graph
        .outputs
        .iter()
        .filter(|(_, d)| is_float_like(d))
        .map(|(n, _)| n.as_str())
        .collect();
    let chosen = if has_classifier {
        candidates.last()
    } else {
        candidates.first()
    };
    let Some(&chosen) = chosen else {
        return Err(unsupported(
            "it has no float output for kiln to report as its predictions",
        ));
    };

    // The nodes the scores depend on.
    let writer: HashMap<&str, usize> = graph
        .nodes
        .iter()
        .enumerate()
        .flat_map(|(i, n)| n.outputs.iter().map(move |o| (o.as_str(), i)))
        .collect();
    let mut needed = vec![false; graph.nodes.len()];
    let mut needed_inputs: HashSet<&str> = HashSet::new();
    let mut stack = vec![chosen];
    let mut visited: HashSet<&str> = HashSet::new();
    while let Some(name) = stack.pop() {
        if !visited.insert(name) {
            continue;
        }
        if let Some(&i) = writer.get(name) {
            needed[i] = true;
            stack.extend(graph.nodes[i].inputs.iter().map(String::as_str));
        } else if !graph.initializers.contains_key(name) && !name.is_empty() {
            needed_inputs.insert(name);
        }
    }

    // Every problem at once: operators kiln lacks, inputs it cannot feed.
    let mut problems: Vec<String> = Vec::new();
    let mut unknown_ops: Vec<String> = Vec::new();
    for (i, node) in graph.nodes.iter().enumerate() {
        if !needed[i] {
            continue;
        }
        let op = node.op_type.as_str();
        let supported = match node.domain.as_str() {
            "" | "ai.onnx" => STANDARD_OPS.contains(&op),
            ML_DOMAIN => ML_OPS.contains(&op),
            _ => false,
        };
        if !supported {
            let name =
                if node.domain.is_empty() || node.domain == "ai.onnx" || node.domain == ML_DOMAIN {
                    format!("`{}`", node.op_type)
                } else {
                    format!("`{}` (domain `{}`)", node.op_type, node.domain)
                };
            if !unknown_ops.contains(&name) {
                unknown_ops.push(name);
            }
        }
    }
    if !unknown_ops.is_empty() {
        problems.push(format!(
            "{} {} not supported",
            if unknown_ops.len() == 1 {
                "the operator"
            } else {
                "the operators"
            },
            unknown_ops.join(", ")
                + if unknown_ops.len() == 1 {
                    " is"
                } else {
                    " are"
                }
        ));
    }
    // Graph inputs (initializers listed as inputs are weights, not features).
    let mut columns: Vec<(String, usize)> = Vec::new();
    for (name, declared) in &graph.inputs {
        if graph.initializers.contains_key(name) {
            continue;
        }
        let width = match declared {
            Declared::Tensor {
                elem: 1,
                dims: Some(dims),
            } if dims.len() == 2 => dims[1].and_then(|d| usize::try_from(d).ok()),
            _ => None,
        };
        match (width, declared) {
            (Some(w), _) => columns.push((name.clone(), w)),
            (None, _) if !needed_inputs.contains(name.as_str()) => columns.push((name.clone(), 0)),
            (None, Declared::Tensor { elem, .. }) if *elem != 1 => problems.push(format!(
                "input `{name}` is a tensor of {}, and kiln feeds float tensors only",
                crate::foreign::elem_type_name(*elem)
            )),
            (None, _) => problems.push(format!(
                "input `{name}` is not shaped [N, k] with a known k"
            )),
        }
    }
    if !problems.is_empty() {
        return Err(unsupported(format!(
            "{}; kiln evaluates float inputs through the operators {}",
            problems.join("; "),
            [ML_OPS, STANDARD_OPS].concat().join(", ")
        )));
    }

    // Compile the needed nodes in graph order.
    let mut c = Compiler {
        graph,
        known: HashMap::new(),
        slots: 0,
        steps: Vec::new(),
        classes: None,
        predictors: 0,
    };
    let mut inputs = Vec::new();
    let mut names = Vec::new();
    let fed: Vec<&(String, usize)> = columns.iter().filter(|(_, w)| *w > 0).collect();
    let single = fed.len() == 1;
    let mut first = 0;
    for (name, width) in &columns {
        if *width == 0 {
            // An input the scores do not read with an unknown width: no
            // columns.
            continue;
        }
        let slot = c.slot();
        c.known.insert(name, Known::Float { slot, cols: *width });
        inputs.push(Input {
            slot,
            first,
            width: *width,
        });
        first += width;
        if *width == 1 {
            names.push(name.clone());
        } else if single {
            names.extend((0..*width).map(|j| format!("f{j}")));
        } else {
            names.extend((0..*width).map(|j| format!("{name}_{j}")));
        }
    }
    for (i, node) in graph.nodes.iter().enumerate() {
        if needed[i] {
            c.compile(node)?;
        }
    }
    let (slot, cols) = match c.known.get(chosen) {
        Some(Known::Float { slot, cols }) => (*slot, *cols),
        Some(Known::Labels) => {
            return Err(unsupported(format!(
                "its output `{chosen}` holds labels, not scores"
            )));
        }
        None => match graph.inputs.iter().find(|(n, _)| n == chosen) {
            Some(_) => return Err(unsupported("its output is one of its inputs")),
            None => return Err(damaged(format!("no node writes its output `{chosen}`"))),
        },
    };
    if c.predictors == 0 {
        return Err(unsupported(format!(
            "no predictor computes its output `{chosen}` (kiln scores graphs with a TreeEnsembleClassifier, TreeEnsembleRegressor, LinearClassifier or LinearRegressor)"
        )));
    }
    let (task, classes) = match c.classes.take() {
        Some(labels) => {
            if labels.len() < 2 {
                return Err(unsupported(format!(
                    "its classifier has {} class label(s); kiln scores two or more classes",
                    labels.len()
                )));
            }
            if cols != labels.len() {
                return Err(unsupported(format!(
                    "its output `{chosen}` has {cols} columns for {} classes",
                    labels.len()
                )));
            }
            let task = if labels.len() == 2 {
                Task::Binary
            } else {
                Task::Multiclass
            };
            (task, labels)
        }
        None => {
            if cols != 1 {
                return Err(unsupported(format!(
                    "its output `{chosen}` has {cols} columns; kiln scores one target"
                )));
            }
            (Task::Regression, Vec::new())
        }
    };
    Ok(Loaded {
        scorer: Graph {
            inputs,
            steps: c.steps,
            slots: c.slots,
            output: (slot, cols),
            task,
        },
        names,
        task,
        classes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn logistic_matches_onnxruntime_formula_example() {
        assert_eq!(logistic(0.0), 0.5);
        assert!((logistic(2.0) - 0.880_797_1).abs() < 1e-7);
        assert!((logistic(-2.0) - 0.119_202_92).abs() < 1e-7);
    }

    #[test]
    fn binary_scores_follow_onnxruntime_cases() {
        let mut out = [0.0; 2];
        binary_scores(0.75, Post::None, 0, &mut out);
        assert_eq!(out, [0.25, 0.75]);
        binary_scores(0.0, Post::Logistic, 2, &mut out);
        assert_eq!(out, [0.5, 0.5]);
        binary_scores(1.5, Post::None, 3, &mut out);
        assert_eq!(out, [1.5, -1.5]);
    }

    #[test]
    fn normalizers_example() {
        let mut out = [0.0; 3];
        normalize(Norm::L1, &[1.0, -1.0, 2.0], &mut out);
        assert_eq!(out, [0.25, -0.25, 0.5]);
        normalize(Norm::Max, &[1.0, 4.0, 2.0], &mut out);
        assert_eq!(out, [0.25, 1.0, 0.5]);
        normalize(Norm::L2, &[3.0, -4.0, 0.0], &mut out);
        assert_eq!(out, [0.6, -0.8, 0.0]);
        normalize(Norm::L1, &[0.0, 0.0, 0.0], &mut out);
        assert_eq!(out, [0.0, 0.0, 0.0]);
    }

    #[test]
    fn onnx_split_modes_and_missing_tracks() {
        let node = |kind: Mode, flags: u8| Node {
            threshold: 1.0,
            feature: 0,
            left: 0,
            right: 0,
            cat: 0,
            cat_words: 0,
            kind: kind as u8,
            flags,
        };
        assert!(OnnxRules::goes_left(&node(Mode::Leq, 0), 1.0, &[]));
        assert!(!OnnxRules::goes_left(&node(Mode::Lt, 0), 1.0, &[]));
        assert!(OnnxRules::goes_left(&node(Mode::Gte, 0), 1.0, &[]));
        assert!(!OnnxRules::goes_left(&node(Mode::Gt, 0), 1.0, &[]));
        assert!(OnnxRules::goes_left(&node(Mode::Eq, 0), 1.0, &[]));
        assert!(OnnxRules::goes_left(&node(Mode::Neq, 0), 2.0, &[]));
        // NaN compares false, except where missing values track true.
        assert!(!OnnxRules::goes_left(&node(Mode::Leq, 0), f32::NAN, &[]));
        assert!(OnnxRules::goes_left(&node(Mode::Neq, 0), f32::NAN, &[]));
        assert!(OnnxRules::goes_left(
            &node(Mode::Gt, DEFAULT_LEFT),
            f32::NAN,
            &[]
        ));
    }
}
