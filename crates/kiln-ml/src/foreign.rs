//! Model files trained elsewhere: which format a file is, and its signature.
//!
//! [`inspect`] reads a file's bytes and tells `kiln models import FILE` what
//! it holds: a kiln model, an ONNX model, a LightGBM text model or an XGBoost
//! JSON model, with the input features (names and types, where the file
//! records them), the outputs, the task and the program that wrote it.
//!
//! The format is found from the bytes alone, never from the file name:
//!
//! * kiln: the `kiln-model` header line; read with [`Model::from_bytes`].
//! * LightGBM: the first line is `tree` (`booster.save_model('m.txt')`).
//! * XGBoost: a JSON object with a `learner` (`booster.save_model('m.json')`).
//! * ONNX: a protobuf `ModelProto` with an IR version and a graph. The wire
//!   format is decoded here, so no protobuf compiler or crate is needed.
//!
//! Input types use each format's own words: kiln's column types, `float` or
//! `categorical` for LightGBM, kiln's words for XGBoost's feature types
//! (`float`, `integer`, `boolean`, `categorical`) and ONNX's element types
//! (`float`, `int64`, `string`, …). An ONNX tensor that holds one value per
//! row (shape `[N]` or `[N, 1]`) is typed by its element type alone; other
//! tensors carry their shape, `?` for an unknown dimension: `float[?,4]`.
//!
//! Nothing here panics on any input: damaged files of a known format get a
//! specific [`ForeignError`], anything else [`ForeignError::NotAModel`].

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::MlError;
use crate::model::Model;
use crate::task::Task;

/// The formats [`inspect`] recognises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ModelFormat {
    Kiln,
    Onnx,
    Lightgbm,
    Xgboost,
}

impl ModelFormat {
    pub const ALL: [ModelFormat; 4] = [
        ModelFormat::Kiln,
        ModelFormat::Onnx,
        ModelFormat::Lightgbm,
        ModelFormat::Xgboost,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            ModelFormat::Kiln => "kiln",
            ModelFormat::Onnx => "onnx",
            ModelFormat::Lightgbm => "lightgbm",
            ModelFormat::Xgboost => "xgboost",
        }
    }

    /// The format named `s` (as [`ModelFormat::as_str`] spells it, any case).
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        Self::ALL
            .into_iter()
            .find(|f| f.as_str().eq_ignore_ascii_case(s))
    }
}

impl std::fmt::Display for ModelFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A named, typed input or output of a model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SignatureColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub dtype: String,
}

impl SignatureColumn {
    fn new(name: impl Into<String>, dtype: impl Into<String>) -> Self {
        SignatureColumn {
            name: name.into(),
            dtype: dtype.into(),
        }
    }
}

/// What a model reads and what it writes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelSignature {
    pub inputs: Vec<SignatureColumn>,
    pub outputs: Vec<SignatureColumn>,
}

/// What [`inspect`] found in a model file.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    pub format: ModelFormat,
    pub signature: ModelSignature,
    /// "binary", "multiclass", "regression", "ranking", or None when the file does not say.
    pub task: Option<String>,
    /// e.g. "LightGBM v4", "XGBoost 3.2.0", "skl2onnx 1.x (ONNX IR 8)", "kiln 0.1.0".
    pub producer: String,
}

/// Why a file cannot be imported.
#[derive(Debug, thiserror::Error)]
pub enum ForeignError {
    /// No format kiln imports.
    #[error(
        "Not a model file kiln can import{}: expected a kiln model, ONNX, a LightGBM text model or an XGBoost JSON model (save XGBoost models with `.json` / `save_model('m.json')`, LightGBM models with `save_model('m.txt')`, and export other libraries' models to ONNX)",
        looks_like.map(|s| format!(" ({s})")).unwrap_or_default()
    )]
    NotAModel {
        /// What the bytes seem to be instead, when that is clear.
        looks_like: Option<&'static str>,
    },
    /// XGBoost's binary UBJSON format, which kiln does not read.
    #[error(
        "This is an XGBoost model in the binary UBJSON format, which kiln does not read: save it as JSON with `booster.save_model('m.json')` and import that"
    )]
    XgboostUbjson,
    /// A kiln model file that kiln cannot load.
    #[error("Cannot read the kiln model: {why}; {hint}")]
    Kiln { why: String, hint: String },
    /// A damaged ONNX file.
    #[error(
        "Damaged ONNX model: {why}; export the model to ONNX again and check that the whole file was copied"
    )]
    Onnx { why: String },
    /// A damaged LightGBM text model.
    #[error(
        "Damaged LightGBM model: {why}; save it again with `booster.save_model('m.txt')` and check that the whole file was copied"
    )]
    Lightgbm { why: String },
    /// A damaged XGBoost JSON model.
    #[error(
        "Damaged XGBoost model: {why}; save it again with `booster.save_model('m.json')` and check that the whole file was copied"
    )]
    Xgboost { why: String },
    /// A readable model that kiln cannot score ([`crate::imported`]): an
    /// operator, objective or input type it does not evaluate.
    #[error("Cannot score this {} model: {why}", format_title(*format))]
    Unsupported { format: ModelFormat, why: String },
}

/// A format's name as its makers write it, for messages.
fn format_title(format: ModelFormat) -> &'static str {
    match format {
        ModelFormat::Kiln => "kiln",
        ModelFormat::Onnx => "ONNX",
        ModelFormat::Lightgbm => "LightGBM",
        ModelFormat::Xgboost => "XGBoost",
    }
}

/// Finds a model file's format and reads its signature.
pub fn inspect(bytes: &[u8]) -> Result<ModelInfo, ForeignError> {
    if bytes.starts_with(b"kiln-model") {
        return kiln(bytes);
    }
    let text = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let start = text
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(text.len());
    let text = &text[start..];
    if first_line(text) == b"tree" {
        return lightgbm(text);
    }
    if text.first() == Some(&b'{') {
        if matches!(text.get(1), Some(b'i' | b'U' | b'I' | b'l' | b'L')) {
            // UBJSON: an object whose first key starts with a length marker.
            if find(&text[..text.len().min(64)], b"learner").is_some() {
                return Err(ForeignError::XgboostUbjson);
            }
            return Err(ForeignError::NotAModel {
                looks_like: Some("it looks like binary UBJSON, but not an XGBoost model"),
            });
        }
        return json(text);
    }
    if let Some(result) = onnx(bytes) {
        return result;
    }
    Err(ForeignError::NotAModel {
        looks_like: looks_like(bytes),
    })
}

fn first_line(bytes: &[u8]) -> &[u8] {
    let end = bytes
        .iter()
        .position(|&b| b == b'\n')
        .unwrap_or(bytes.len());
    let line = &bytes[..end];
    line.strip_suffix(b"\r").unwrap_or(line)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// A guess at what a file that is no model is, for the error message.
fn looks_like(bytes: &[u8]) -> Option<&'static str> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Some("it is empty");
    }
    if bytes.first() == Some(&0x80) && matches!(bytes.get(1), Some(2..=5)) {
        return Some(
            "it looks like a pickled Python object; load it in Python and save the model in its library's own format",
        );
    }
    if bytes.starts_with(b"PK\x03\x04") {
        return Some("it looks like a ZIP archive");
    }
    if bytes.starts_with(b"PAR1") {
        return Some("it looks like a Parquet table; train on it with `kiln train`");
    }
    if bytes.starts_with(b"binf") || bytes.starts_with(b"bs64") {
        return Some("it looks like an XGBoost model in the legacy binary format");
    }
    let head = &bytes[..bytes.len().min(4096)];
    let text = match std::str::from_utf8(head) {
        Ok(t) => t,
        // A multi-byte character cut at the end of the sample.
        Err(e) if e.error_len().is_none() => std::str::from_utf8(&head[..e.valid_up_to()]).ok()?,
        Err(_) => return None,
    };
    let line = text.lines().next().unwrap_or_default();
    if [',', ';', '\t'].iter().any(|&d| line.contains(d)) {
        return Some("it looks like a CSV or other delimited table; train on it with `kiln train`");
    }
    Some("it looks like text")
}

// ---------------------------------------------------------------------------
// kiln

fn kiln(bytes: &[u8]) -> Result<ModelInfo, ForeignError> {
    let model = Model::from_bytes(bytes, "model").map_err(|e| match e {
        MlError::ModelFile { why, hint, .. } => ForeignError::Kiln { why, hint },
        other => ForeignError::Kiln {
            why: other.to_string(),
            hint: "train the model again".into(),
        },
    })?;
    let inputs = model
        .inputs()
        .iter()
        .map(|c| SignatureColumn::new(&c.name, c.column_type.as_str()))
        .collect();
    let task = model.task();
    let outputs = match task {
        Task::Regression => vec![SignatureColumn::new("prediction", "float")],
        Task::Binary | Task::Multiclass => {
            std::iter::once(SignatureColumn::new("prediction", "string"))
                .chain(
                    model
                        .target
                        .classes
                        .iter()
                        .map(|c| SignatureColumn::new(format!("prob_{c}"), "float")),
                )
                .collect()
        }
    };
    Ok(ModelInfo {
        format: ModelFormat::Kiln,
        signature: ModelSignature { inputs, outputs },
        task: Some(task.as_str().into()),
        producer: format!("kiln {}", model.kiln_version),
    })
}

// ---------------------------------------------------------------------------
// Tree libraries' outputs

/// The outputs of a LightGBM or XGBoost model, named as kiln names its own:
/// `prediction`, and `prob_{class}` for classifiers (classes are indices).
fn tree_outputs(task: Option<&str>, n_classes: usize) -> Vec<SignatureColumn> {
    match task {
        Some("binary") | Some("multiclass") => {
            let k = if task == Some("binary") {
                2
            } else {
                n_classes.max(2)
            };
            std::iter::once(SignatureColumn::new("prediction", "integer"))
                .chain((0..k).map(|c| SignatureColumn::new(format!("prob_{c}"), "float")))
                .collect()
        }
        _ => vec![SignatureColumn::new("prediction", "float")],
    }
}

// ---------------------------------------------------------------------------
// LightGBM

fn lightgbm_task(objective: &str) -> Option<&'static str> {
    Some(match objective {
        "binary" => "binary",
        "multiclass" | "softmax" | "multiclassova" | "multiclass_ova" | "ova" | "ovr" => {
            "multiclass"
        }
        "lambdarank" | "rank_xendcg" | "xendcg" | "xe_ndcg" | "xe_ndcg_mart" | "xendcg_mart" => {
            "ranking"
        }
        o if o.starts_with("regression")
            || matches!(
                o,
                "l1" | "l2"
                    | "mse"
                    | "mae"
                    | "rmse"
                    | "mean_squared_error"
                    | "mean_absolute_error"
                    | "root_mean_squared_error"
                    | "huber"
                    | "fair"
                    | "poisson"
                    | "quantile"
                    | "mape"
                    | "mean_absolute_percentage_error"
                    | "gamma"
                    | "tweedie"
            ) =>
        {
            "regression"
        }
        _ => return None,
    })
}

fn lightgbm(bytes: &[u8]) -> Result<ModelInfo, ForeignError> {
    let bad = |why: String| ForeignError::Lightgbm { why };
    let text = std::str::from_utf8(bytes).map_err(|e| {
        bad(format!(
            "it is not valid UTF-8 text (byte {})",
            e.valid_up_to()
        ))
    })?;
    let mut header: Vec<(&str, &str)> = Vec::new();
    let mut trees = 0usize;
    let mut end_of_trees = false;
    let mut in_header = true;
    for line in text.lines().skip(1) {
        let line = line.trim_end_matches('\r');
        if line.starts_with("Tree=") {
            in_header = false;
            trees += 1;
        } else if line == "end of trees" {
            end_of_trees = true;
            break;
        } else if in_header && let Some((key, value)) = line.split_once('=') {
            header.push((key.trim(), value.trim()));
        }
    }
    let get = |key: &str| header.iter().find(|(k, _)| *k == key).map(|(_, v)| *v);

    let Some(names) = get("feature_names") else {
        return Err(bad(
            "it has no `feature_names=` line, so its features are unknown".into(),
        ));
    };
    let names: Vec<&str> = names.split_whitespace().collect();
    if names.is_empty() {
        return Err(bad("its `feature_names=` line is empty".into()));
    }
    if let Some(max) = get("max_feature_idx") {
        let max: usize = max
            .parse()
            .map_err(|_| bad(format!("`max_feature_idx={max}` is not a number")))?;
        if max.checked_add(1) != Some(names.len()) {
            return Err(bad(format!(
                "`max_feature_idx={max}` does not match the {} names in `feature_names=`",
                names.len()
            )));
        }
    }
    let types: Vec<&str> = match get("feature_infos") {
        None => vec!["float"; names.len()],
        Some(infos) => {
            let infos: Vec<&str> = infos.split_whitespace().collect();
            if infos.len() != names.len() {
                return Err(bad(format!(
                    "it lists {} entries in `feature_infos=` for {} features",
                    infos.len(),
                    names.len()
                )));
            }
            infos
                .iter()
                .map(|info| {
                    // `[min:max]` for a numeric feature, `none` for one no
                    // tree uses, `c1:c2:…` (the categories) for a categorical.
                    if info.starts_with('[') || *info == "none" {
                        "float"
                    } else {
                        "categorical"
                    }
                })
                .collect()
        }
    };
    let n_classes = match get("num_class") {
        None => 1,
        Some(n) => n
            .parse::<usize>()
            .map_err(|_| bad(format!("`num_class={n}` is not a number")))?,
    };
    if !end_of_trees {
        return Err(bad(
            "it ends before the `end of trees` line (the file is truncated)".into(),
        ));
    }
    if let Some(sizes) = get("tree_sizes") {
        let expected = sizes.split_whitespace().count();
        if expected != trees {
            return Err(bad(format!(
                "its header announces {expected} trees but it holds {trees}"
            )));
        }
    }
    let task = get("objective")
        .and_then(|o| o.split_whitespace().next())
        .and_then(lightgbm_task);
    let inputs = names
        .iter()
        .zip(types)
        .map(|(n, t)| SignatureColumn::new(*n, t))
        .collect();
    let producer = match get("version") {
        Some(v) if !v.is_empty() => format!("LightGBM {v}"),
        _ => "LightGBM".into(),
    };
    Ok(ModelInfo {
        format: ModelFormat::Lightgbm,
        signature: ModelSignature {
            inputs,
            outputs: tree_outputs(task, n_classes),
        },
        task: task.map(str::to_owned),
        producer,
    })
}

// ---------------------------------------------------------------------------
// XGBoost JSON

fn json(bytes: &[u8]) -> Result<ModelInfo, ForeignError> {
    let head = &bytes[..bytes.len().min(256)];
    let doc: Value = match serde_json::from_slice(bytes) {
        Ok(v) => v,
        Err(e) if find(head, b"\"learner\"").is_some() => {
            return Err(ForeignError::Xgboost {
                why: format!("its JSON does not parse ({e})"),
            });
        }
        Err(_) => {
            return Err(ForeignError::NotAModel {
                looks_like: Some("it starts like JSON, but does not parse"),
            });
        }
    };
    let Value::Object(root) = &doc else {
        return Err(ForeignError::NotAModel {
            looks_like: Some("it is JSON, but not an XGBoost model"),
        });
    };
    let Some(learner) = root.get("learner") else {
        if root.contains_key("tree_info") && root.contains_key("feature_names") {
            return Err(ForeignError::NotAModel {
                looks_like: Some(
                    "it is a LightGBM JSON dump, which cannot be loaded back; save the model with `booster.save_model('m.txt')` instead",
                ),
            });
        }
        if is_xgboost_version(root.get("version")) {
            return Err(ForeignError::Xgboost {
                why: "it has no `learner` object".into(),
            });
        }
        return Err(ForeignError::NotAModel {
            looks_like: Some("it is JSON, but has no XGBoost `learner`"),
        });
    };
    xgboost(root, learner)
}

/// XGBoost writes `"version": [major, minor, patch]`.
fn is_xgboost_version(v: Option<&Value>) -> bool {
    matches!(v, Some(Value::Array(parts)) if parts.len() == 3 && parts.iter().all(Value::is_u64))
}

/// A count XGBoost writes as a string (`"4"`) or, in some versions, a number.
fn json_count(v: Option<&Value>) -> Option<usize> {
    match v? {
        Value::String(s) => s.trim().parse().ok(),
        Value::Number(n) => n.as_u64().and_then(|n| usize::try_from(n).ok()),
        _ => None,
    }
}

fn xgboost_task(objective: &str) -> Option<&'static str> {
    let (family, _) = objective.split_once(':').unwrap_or((objective, ""));
    Some(match family {
        "binary" => "binary",
        "multi" => "multiclass",
        "reg" | "count" => "regression",
        "rank" => "ranking",
        "survival" if objective == "survival:aft" => "regression",
        _ => return None,
    })
}

fn xgboost_type(t: &str) -> String {
    match t {
        "float" | "q" => "float",
        "int" => "integer",
        "i" => "boolean",
        "c" => "categorical",
        other => other,
    }
    .into()
}

fn xgboost(
    root: &serde_json::Map<String, Value>,
    learner: &Value,
) -> Result<ModelInfo, ForeignError> {
    let bad = |why: String| ForeignError::Xgboost { why };
    let Value::Object(learner) = learner else {
        return Err(bad("its `learner` is not an object".into()));
    };
    let strings = |key: &str| -> Result<Vec<String>, ForeignError> {
        match learner.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| {
                    v.as_str()
                        .map(str::to_owned)
                        .ok_or_else(|| bad(format!("`learner.{key}` holds a non-string")))
                })
                .collect(),
            Some(_) => Err(bad(format!("`learner.{key}` is not a list"))),
        }
    };
    let names = strings("feature_names")?;
    let types = strings("feature_types")?;
    let params = learner.get("learner_model_param");
    let param = |key: &str| params.and_then(|p| p.get(key));
    let num_feature = json_count(param("num_feature"));
    if params.is_none() && names.is_empty() {
        return Err(bad(
            "it has no `learner.learner_model_param`, so its features are unknown".into(),
        ));
    }
    let names = if names.is_empty() {
        let n = num_feature
            .ok_or_else(|| bad("it records neither feature names nor `num_feature`".into()))?;
        // XGBoost's own names for unnamed features.
        (0..n).map(|i| format!("f{i}")).collect()
    } else {
        if let Some(n) = num_feature
            && n != names.len()
        {
            return Err(bad(format!(
                "it names {} features but `num_feature` is {n}",
                names.len()
            )));
        }
        names
    };
    if !types.is_empty() && types.len() != names.len() {
        return Err(bad(format!(
            "it has {} feature types for {} features",
            types.len(),
            names.len()
        )));
    }
    let inputs = names
        .into_iter()
        .enumerate()
        .map(|(i, name)| {
            let dtype = types
                .get(i)
                .map_or_else(|| "float".into(), |t| xgboost_type(t));
            SignatureColumn { name, dtype }
        })
        .collect();
    let objective = learner
        .get("objective")
        .and_then(|o| o.get("name"))
        .and_then(Value::as_str);
    let task = objective.and_then(xgboost_task);
    let n_classes = json_count(param("num_class")).unwrap_or(0);
    let n_targets = json_count(param("num_target")).unwrap_or(1);
    let outputs = if task == Some("regression") && n_targets > 1 {
        (0..n_targets)
            .map(|i| SignatureColumn::new(format!("prediction_{i}"), "float"))
            .collect()
    } else {
        tree_outputs(task, n_classes)
    };
    let producer = match root.get("version") {
        Some(Value::Array(parts)) if is_xgboost_version(root.get("version")) => format!(
            "XGBoost {}",
            parts
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(".")
        ),
        _ => "XGBoost".into(),
    };
    Ok(ModelInfo {
        format: ModelFormat::Xgboost,
        signature: ModelSignature { inputs, outputs },
        task: task.map(str::to_owned),
        producer,
    })
}

// ---------------------------------------------------------------------------
// ONNX

/// One protobuf field's value (also read by [`crate::imported`]).
pub(crate) enum Wire<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32(u32),
}

/// A reader of protobuf fields in one message's bytes.
pub(crate) struct Fields<'a> {
    buf: &'a [u8],
    pub(crate) pos: usize,
}

/// Nesting deeper than this (types within types) is refused, so hostile
/// input cannot exhaust the stack.
const MAX_DEPTH: usize = 32;

impl<'a> Fields<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Fields { buf, pos: 0 }
    }

    pub(crate) fn varint(&mut self) -> Result<u64, String> {
        let mut value = 0u64;
        for i in 0..10 {
            let Some(&b) = self.buf.get(self.pos) else {
                return Err("a number is cut off (the file is truncated)".into());
            };
            self.pos += 1;
            if i == 9 && b > 1 {
                return Err("a number is longer than 64 bits".into());
            }
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err("a number is longer than 64 bits".into())
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], String> {
        let left = self.buf.len() - self.pos;
        if n > left as u64 {
            return Err(format!(
                "a field needs {n} bytes but only {left} remain (the file is truncated)"
            ));
        }
        let start = self.pos;
        self.pos += n as usize;
        Ok(&self.buf[start..self.pos])
    }

    /// The next field, or None at the end of the message.
    pub(crate) fn next_field(&mut self) -> Result<Option<(u64, Wire<'a>)>, String> {
        if self.pos >= self.buf.len() {
            return Ok(None);
        }
        let key = self.varint()?;
        let number = key >> 3;
        if number == 0 || number > (1 << 29) - 1 {
            return Err(format!("field number {number} is not valid protobuf"));
        }
        let value = match key & 7 {
            0 => Wire::Varint(self.varint()?),
            1 => {
                let b = self.take(8)?;
                Wire::Fixed64(u64::from_le_bytes(b.try_into().unwrap_or_default()))
            }
            2 => {
                let n = self.varint()?;
                Wire::Len(self.take(n)?)
            }
            5 => {
                let b = self.take(4)?;
                Wire::Fixed32(u32::from_le_bytes(b.try_into().unwrap_or_default()))
            }
            w => {
                return Err(format!(
                    "field {number} has wire type {w}, which ONNX never uses"
                ));
            }
        };
        Ok(Some((number, value)))
    }
}

pub(crate) fn expect_len<'a>(what: &str, value: Wire<'a>) -> Result<&'a [u8], String> {
    match value {
        Wire::Len(b) => Ok(b),
        _ => Err(format!("{what} is not a length-delimited field")),
    }
}

pub(crate) fn expect_varint(what: &str, value: Wire<'_>) -> Result<u64, String> {
    match value {
        Wire::Varint(v) => Ok(v),
        _ => Err(format!("{what} is not a varint field")),
    }
}

pub(crate) fn utf8(what: &str, bytes: &[u8]) -> Result<String, String> {
    std::str::from_utf8(bytes)
        .map(str::to_owned)
        .map_err(|_| format!("{what} is not valid UTF-8"))
}

/// The parts of an ONNX `ModelProto` that [`inspect`] reports.
struct OnnxModel {
    ir_version: Option<u64>,
    producer_name: String,
    producer_version: String,
    graph: Option<OnnxGraph>,
    /// `(domain, version)` of each `opset_import`.
    opsets: Vec<(String, i64)>,
}

#[derive(Default)]
struct OnnxGraph {
    inputs: Vec<SignatureColumn>,
    outputs: Vec<SignatureColumn>,
    /// Names of the graph's initializers (weights): before IR 4 they are
    /// listed among the inputs too, but are no features.
    initializers: Vec<String>,
    task: Option<&'static str>,
}

/// Reads `bytes` as ONNX: None when they are not ONNX at all, an error when
/// they start like ONNX but are damaged.
fn onnx(bytes: &[u8]) -> Option<Result<ModelInfo, ForeignError>> {
    // Every ONNX writer puts `ir_version` (field 1, a varint) first.
    let starts_like_onnx = bytes.first() == Some(&0x08)
        && Fields::new(&bytes[1..])
            .varint()
            // A cut-off number still starts like ONNX (a truncated file).
            .map_or(bytes.len() < 11, |v| (1..=64).contains(&v));
    match parse_model(bytes) {
        // Since IR 3 a model must import an opset; none means the file
        // ends after its graph.
        Ok(m) if m.ir_version >= Some(3) && m.graph.is_some() && m.opsets.is_empty() => {
            Some(Err(ForeignError::Onnx {
                why: "it has no `opset_import` (the file may be truncated)".into(),
            }))
        }
        Ok(m) if m.ir_version.is_some() && m.graph.is_some() => Some(Ok(onnx_info(m))),
        Ok(m) if starts_like_onnx => Some(Err(ForeignError::Onnx {
            why: if m.graph.is_none() {
                "it has no graph (the file may be truncated)".into()
            } else {
                "it has no `ir_version`".into()
            },
        })),
        Err(why) if starts_like_onnx => Some(Err(ForeignError::Onnx { why })),
        _ => None,
    }
}

fn onnx_info(m: OnnxModel) -> ModelInfo {
    let graph = m.graph.unwrap_or_default();
    let inputs = graph
        .inputs
        .into_iter()
        .filter(|c| !graph.initializers.contains(&c.name))
        .collect();
    let opset = m
        .opsets
        .iter()
        .find(|(d, _)| d.is_empty() || d == "ai.onnx")
        .map(|(_, v)| format!(", opset {v}"))
        .unwrap_or_default();
    let who = match (m.producer_name.trim(), m.producer_version.trim()) {
        ("", _) => "unknown producer".to_owned(),
        (name, "") => name.to_owned(),
        (name, version) => format!("{name} {version}"),
    };
    ModelInfo {
        format: ModelFormat::Onnx,
        signature: ModelSignature {
            inputs,
            outputs: graph.outputs,
        },
        task: graph.task.map(str::to_owned),
        producer: format!(
            "{who} (ONNX IR {}{opset})",
            m.ir_version.unwrap_or_default()
        ),
    }
}

fn parse_model(bytes: &[u8]) -> Result<OnnxModel, String> {
    let mut m = OnnxModel {
        ir_version: None,
        producer_name: String::new(),
        producer_version: String::new(),
        graph: None,
        opsets: Vec::new(),
    };
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => m.ir_version = Some(expect_varint("`ir_version`", value)?),
            2 => m.producer_name = utf8("`producer_name`", expect_len("`producer_name`", value)?)?,
            3 => {
                m.producer_version = utf8(
                    "`producer_version`",
                    expect_len("`producer_version`", value)?,
                )?;
            }
            7 => {
                let graph = parse_graph(expect_len("`graph`", value)?)
                    .map_err(|e| format!("in the graph: {e}"))?;
                m.graph = Some(graph);
            }
            8 => {
                let mut domain = String::new();
                let mut version = 0i64;
                let mut f = Fields::new(expect_len("`opset_import`", value)?);
                while let Some((n, v)) = f.next_field()? {
                    match n {
                        1 => domain = utf8("an opset domain", expect_len("an opset domain", v)?)?,
                        2 => version = expect_varint("an opset version", v)? as i64,
                        _ => {}
                    }
                }
                m.opsets.push((domain, version));
            }
            _ => {}
        }
    }
    Ok(m)
}

fn parse_graph(bytes: &[u8]) -> Result<OnnxGraph, String> {
    let mut g = OnnxGraph::default();
    let mut fields = Fields::new(bytes);
    let mut regressor = false;
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => {
                let task = node_task(expect_len("a node", value)?)?;
                match task {
                    Some("regression") => regressor = true,
                    Some(t) if g.task.is_none() => g.task = Some(t),
                    _ => {}
                }
            }
            5 => {
                // TensorProto: field 8 is the name.
                let mut f = Fields::new(expect_len("an initializer", value)?);
                while let Some((n, v)) = f.next_field()? {
                    if n == 8 {
                        g.initializers
                            .push(utf8("an initializer name", expect_len("a name", v)?)?);
                    }
                }
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
    if g.task.is_none() && regressor {
        g.task = Some("regression");
    }
    Ok(g)
}

/// The task an `ai.onnx.ml` predictor node implies: its class labels say
/// binary or multiclass; a regressor says regression.
fn node_task(bytes: &[u8]) -> Result<Option<&'static str>, String> {
    let mut op_type = String::new();
    let mut attributes = Vec::new();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            4 => op_type = utf8("an operator type", expect_len("an operator type", value)?)?,
            5 => attributes.push(expect_len("an attribute", value)?),
            _ => {}
        }
    }
    match op_type.as_str() {
        "LinearRegressor" | "TreeEnsembleRegressor" | "SVMRegressor" => Ok(Some("regression")),
        "LinearClassifier" | "TreeEnsembleClassifier" | "SVMClassifier" => {
            let mut classes = 0usize;
            for attribute in attributes {
                classes = classes.max(class_label_count(attribute)?);
            }
            Ok(match classes {
                0 => None,
                1 | 2 => Some("binary"),
                _ => Some("multiclass"),
            })
        }
        _ => Ok(None),
    }
}

/// How many labels a `classlabels_*` attribute lists (0 for other attributes).
fn class_label_count(bytes: &[u8]) -> Result<usize, String> {
    let mut name = String::new();
    let mut count = 0usize;
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Wire::Len(b)) => name = utf8("an attribute name", b)?,
            // `ints`: one varint each, or packed.
            (8, Wire::Varint(_)) => count += 1,
            (8, Wire::Len(packed)) => {
                let mut f = Fields::new(packed);
                while f.pos < packed.len() {
                    f.varint()?;
                    count += 1;
                }
            }
            // `strings`.
            (9, Wire::Len(_)) => count += 1,
            _ => {}
        }
    }
    Ok(if name.starts_with("classlabels_") {
        count
    } else {
        0
    })
}

fn parse_value_info(bytes: &[u8]) -> Result<SignatureColumn, String> {
    let mut name = String::new();
    let mut dtype = "unknown".to_owned();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => name = utf8("a value name", expect_len("a value name", value)?)?,
            2 => dtype = parse_type(expect_len("a value type", value)?, 0, true)?,
            _ => {}
        }
    }
    Ok(SignatureColumn { name, dtype })
}

pub(crate) fn elem_type_name(t: u64) -> String {
    match t {
        1 => "float",
        2 => "uint8",
        3 => "int8",
        4 => "uint16",
        5 => "int16",
        6 => "int32",
        7 => "int64",
        8 => "string",
        9 => "bool",
        10 => "float16",
        11 => "double",
        12 => "uint32",
        13 => "uint64",
        14 => "complex64",
        15 => "complex128",
        16 => "bfloat16",
        17 => "float8e4m3fn",
        18 => "float8e4m3fnuz",
        19 => "float8e5m2",
        20 => "float8e5m2fnuz",
        21 => "uint4",
        22 => "int4",
        23 => "float4e2m1",
        0 => "undefined",
        other => return format!("elem_type {other}"),
    }
    .into()
}

/// A `TypeProto` in words: `float`, `float[?,4]`, `sequence<map<string,float>>`.
/// `top` is true for a graph input or output, whose per-row tensors drop
/// their shape.
fn parse_type(bytes: &[u8], depth: usize, top: bool) -> Result<String, String> {
    if depth > MAX_DEPTH {
        return Err(format!(
            "a type is nested more than {MAX_DEPTH} levels deep"
        ));
    }
    let mut out = "unknown".to_owned();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => out = parse_tensor_type(expect_len("a tensor type", value)?, top)?,
            4 => {
                let mut elem = "unknown".to_owned();
                let mut f = Fields::new(expect_len("a sequence type", value)?);
                while let Some((n, v)) = f.next_field()? {
                    if n == 1 {
                        elem = parse_type(expect_len("a sequence element", v)?, depth + 1, false)?;
                    }
                }
                out = format!("sequence<{elem}>");
            }
            5 => {
                let mut key = "unknown".to_owned();
                let mut val = "unknown".to_owned();
                let mut f = Fields::new(expect_len("a map type", value)?);
                while let Some((n, v)) = f.next_field()? {
                    match n {
                        1 => key = elem_type_name(expect_varint("a map key type", v)?),
                        2 => val = parse_type(expect_len("a map value", v)?, depth + 1, false)?,
                        _ => {}
                    }
                }
                out = format!("map<{key},{val}>");
            }
            8 => {
                let tensor = parse_tensor_type(expect_len("a sparse tensor type", value)?, false)?;
                out = format!("sparse<{tensor}>");
            }
            9 => {
                let mut elem = "unknown".to_owned();
                let mut f = Fields::new(expect_len("an optional type", value)?);
                while let Some((n, v)) = f.next_field()? {
                    if n == 1 {
                        elem = parse_type(expect_len("an optional element", v)?, depth + 1, false)?;
                    }
                }
                out = format!("optional<{elem}>");
            }
            _ => {}
        }
    }
    Ok(out)
}

/// A `TypeProto.Tensor` (or `SparseTensor`): element type, then shape.
fn parse_tensor_type(bytes: &[u8], per_row_drops_shape: bool) -> Result<String, String> {
    let mut elem = "undefined".to_owned();
    let mut dims: Option<Vec<String>> = None;
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => elem = elem_type_name(expect_varint("an element type", value)?),
            2 => {
                let mut shape = Vec::new();
                let mut f = Fields::new(expect_len("a shape", value)?);
                while let Some((n, v)) = f.next_field()? {
                    if n == 1 {
                        shape.push(parse_dim(expect_len("a dimension", v)?)?);
                    }
                }
                dims = Some(shape);
            }
            _ => {}
        }
    }
    Ok(match dims {
        None => elem,
        Some(d) if per_row_drops_shape && (d.len() == 1 || (d.len() == 2 && d[1] == "1")) => elem,
        Some(d) => format!("{elem}[{}]", d.join(",")),
    })
}

fn parse_dim(bytes: &[u8]) -> Result<String, String> {
    let mut dim = "?".to_owned();
    let mut fields = Fields::new(bytes);
    while let Some((number, value)) = fields.next_field()? {
        match number {
            1 => dim = (expect_varint("a dimension", value)? as i64).to_string(),
            2 => {
                let param = utf8("a dimension name", expect_len("a dimension name", value)?)?;
                if !param.is_empty() {
                    dim = param;
                }
            }
            _ => {}
        }
    }
    Ok(dim)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};

    use super::*;
    use crate::automl::{AutoMlOptions, train};
    use crate::rng::Rng;

    macro_rules! fixture {
        ($name:literal) => {
            std::fs::read(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/fixtures/foreign/",
                $name
            ))
            .unwrap()
        };
    }

    fn all_fixtures() -> Vec<(&'static str, Vec<u8>)> {
        vec![
            (
                "lightgbm_bikeshare_regression.txt",
                fixture!("lightgbm_bikeshare_regression.txt"),
            ),
            (
                "lightgbm_credit_binary.txt",
                fixture!("lightgbm_credit_binary.txt"),
            ),
            (
                "lightgbm_bikeshare_weather_multiclass.txt",
                fixture!("lightgbm_bikeshare_weather_multiclass.txt"),
            ),
            (
                "xgboost_credit_binary.json",
                fixture!("xgboost_credit_binary.json"),
            ),
            (
                "xgboost_bikeshare_regression_unnamed.json",
                fixture!("xgboost_bikeshare_regression_unnamed.json"),
            ),
            (
                "xgboost_bikeshare_weather_multiclass.json",
                fixture!("xgboost_bikeshare_weather_multiclass.json"),
            ),
            (
                "xgboost_bikeshare_regression_unnamed.ubj",
                fixture!("xgboost_bikeshare_regression_unnamed.ubj"),
            ),
            (
                "onnx_bikeshare_logreg.onnx",
                fixture!("onnx_bikeshare_logreg.onnx"),
            ),
            (
                "onnx_credit_forest.onnx",
                fixture!("onnx_credit_forest.onnx"),
            ),
            ("kiln", tiny_kiln_model().to_bytes()),
        ]
    }

    fn columns(cols: &[SignatureColumn]) -> Vec<(&str, &str)> {
        cols.iter()
            .map(|c| (c.name.as_str(), c.dtype.as_str()))
            .collect()
    }

    fn not_a_model(bytes: &[u8]) -> String {
        let err = inspect(bytes).unwrap_err();
        assert!(
            matches!(err, ForeignError::NotAModel { .. }),
            "expected NotAModel, got {err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.contains(
                "expected a kiln model, ONNX, a LightGBM text model or an XGBoost JSON model"
            ),
            "{msg}"
        );
        assert!(msg.contains("save_model('m.json')"), "{msg}");
        msg
    }

    /// A binary classifier trained by kiln on 80 made-up flats.
    fn tiny_kiln_model() -> Model {
        let n = 80;
        let area: Vec<f64> = (0..n).map(|i| 30.0 + (i * 7 % 50) as f64).collect();
        let rooms: Vec<i64> = (0..n).map(|i| 1 + (i % 4) as i64).collect();
        let city: Vec<&str> = (0..n).map(|i| ["leeds", "york", "hull"][i % 3]).collect();
        let sold: Vec<&str> = (0..n)
            .map(|i| {
                if area[i] + 10.0 * rooms[i] as f64 > 70.0 {
                    "yes"
                } else {
                    "no"
                }
            })
            .collect();
        let batch = RecordBatch::try_from_iter([
            ("area_m2", Arc::new(Float64Array::from(area)) as ArrayRef),
            ("rooms", Arc::new(Int64Array::from(rooms)) as ArrayRef),
            ("city", Arc::new(StringArray::from(city)) as ArrayRef),
            ("sold", Arc::new(StringArray::from(sold)) as ArrayRef),
        ])
        .unwrap();
        let opts = AutoMlOptions {
            max_trials: Some(1),
            ensemble: false,
            ..AutoMlOptions::default()
        };
        train(&[batch], "sold", &opts, &mut |_| {}).unwrap().model
    }

    #[test]
    fn kiln_model_trained_in_memory_is_detected_with_its_inputs() {
        let model = tiny_kiln_model();
        let info = inspect(&model.to_bytes()).unwrap();
        assert_eq!(info.format, ModelFormat::Kiln);
        assert_eq!(info.task.as_deref(), Some("binary"));
        assert_eq!(info.producer, format!("kiln {}", env!("CARGO_PKG_VERSION")));
        let expected: Vec<SignatureColumn> = model
            .inputs()
            .iter()
            .map(|c| SignatureColumn::new(&c.name, c.column_type.as_str()))
            .collect();
        assert_eq!(info.signature.inputs, expected);
        let names: Vec<&str> = info
            .signature
            .inputs
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["area_m2", "rooms", "city"]);
        assert_eq!(info.signature.inputs[0].dtype, "float");
        assert_eq!(info.signature.inputs[1].dtype, "integer");
        let mut classes = model.target.classes.clone();
        classes.sort();
        assert_eq!(classes, ["no", "yes"]);
        let outputs: Vec<SignatureColumn> =
            std::iter::once(SignatureColumn::new("prediction", "string"))
                .chain(
                    model
                        .target
                        .classes
                        .iter()
                        .map(|c| SignatureColumn::new(format!("prob_{c}"), "float")),
                )
                .collect();
        assert_eq!(info.signature.outputs, outputs);
    }

    #[test]
    fn kiln_model_from_a_newer_kiln_is_a_kiln_error() {
        let err = inspect(b"kiln-model 99\n{}").unwrap_err();
        assert!(matches!(err, ForeignError::Kiln { .. }), "{err:?}");
        assert!(err.to_string().contains("upgrade kiln"), "{err}");
        let err = inspect(b"kiln-model 1\n{\"kiln_version\":").unwrap_err();
        assert!(matches!(err, ForeignError::Kiln { .. }), "{err:?}");
    }

    #[test]
    fn lightgbm_bikeshare_regression_has_a_categorical_weather() {
        let info = inspect(&fixture!("lightgbm_bikeshare_regression.txt")).unwrap();
        assert_eq!(info.format, ModelFormat::Lightgbm);
        assert_eq!(info.task.as_deref(), Some("regression"));
        assert_eq!(info.producer, "LightGBM v4");
        assert_eq!(
            columns(&info.signature.inputs),
            [
                ("hour", "float"),
                ("weekday", "float"),
                ("weather", "categorical"),
                ("temp", "float"),
                ("humidity", "float"),
                ("windspeed", "float"),
            ]
        );
        assert_eq!(columns(&info.signature.outputs), [("prediction", "float")]);
    }

    #[test]
    fn lightgbm_credit_binary_has_a_categorical_home() {
        let info = inspect(&fixture!("lightgbm_credit_binary.txt")).unwrap();
        assert_eq!(info.format, ModelFormat::Lightgbm);
        assert_eq!(info.task.as_deref(), Some("binary"));
        assert_eq!(
            columns(&info.signature.inputs),
            [
                ("seniority", "float"),
                ("home", "categorical"),
                ("age", "float"),
                ("income", "float"),
                ("amount", "float"),
            ]
        );
        assert_eq!(
            columns(&info.signature.outputs),
            [
                ("prediction", "integer"),
                ("prob_0", "float"),
                ("prob_1", "float")
            ]
        );
    }

    #[test]
    fn lightgbm_weather_multiclass_has_three_class_probabilities() {
        let info = inspect(&fixture!("lightgbm_bikeshare_weather_multiclass.txt")).unwrap();
        assert_eq!(info.task.as_deref(), Some("multiclass"));
        assert_eq!(
            columns(&info.signature.inputs),
            [
                ("hour", "float"),
                ("temp", "float"),
                ("humidity", "float"),
                ("windspeed", "float"),
            ]
        );
        let outputs: Vec<&str> = info
            .signature
            .outputs
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(outputs, ["prediction", "prob_0", "prob_1", "prob_2"]);
    }

    #[test]
    fn lightgbm_objectives_name_their_task() {
        for (objective, task) in [
            ("binary sigmoid:1", Some("binary")),
            ("multiclassova num_class:3 sigmoid:1", Some("multiclass")),
            ("regression_l1", Some("regression")),
            ("huber alpha:0.9", Some("regression")),
            ("poisson max_delta_step:0.7", Some("regression")),
            ("tweedie tweedie_variance_power:1.5", Some("regression")),
            ("lambdarank", Some("ranking")),
            ("rank_xendcg", Some("ranking")),
            ("cross_entropy", None),
        ] {
            let text = format!(
                "tree\nversion=v4\nnum_class=1\nmax_feature_idx=0\nobjective={objective}\nfeature_names=x\nfeature_infos=[0:1]\n\nend of trees\n"
            );
            let info = inspect(text.as_bytes()).unwrap();
            assert_eq!(info.task.as_deref(), task, "{objective}");
        }
    }

    #[test]
    fn lightgbm_without_feature_names_is_a_specific_error() {
        let text = fixture!("lightgbm_credit_binary.txt");
        let text = String::from_utf8(text).unwrap();
        let broken: String = text
            .lines()
            .filter(|l| !l.starts_with("feature_names="))
            .map(|l| format!("{l}\n"))
            .collect();
        let err = inspect(broken.as_bytes()).unwrap_err();
        assert!(matches!(err, ForeignError::Lightgbm { .. }), "{err:?}");
        assert!(err.to_string().contains("`feature_names=`"), "{err}");
    }

    #[test]
    fn lightgbm_cut_before_end_of_trees_is_a_specific_error() {
        let text = fixture!("lightgbm_bikeshare_regression.txt");
        let end = find(&text, b"end of trees").unwrap();
        for cut in [20, 300, text.len() / 3, end] {
            let err = inspect(&text[..cut]).unwrap_err();
            assert!(
                matches!(err, ForeignError::Lightgbm { .. }),
                "cut {cut}: {err:?}"
            );
        }
    }

    #[test]
    fn xgboost_credit_binary_keeps_names_and_types() {
        let info = inspect(&fixture!("xgboost_credit_binary.json")).unwrap();
        assert_eq!(info.format, ModelFormat::Xgboost);
        assert_eq!(info.task.as_deref(), Some("binary"));
        assert_eq!(info.producer, "XGBoost 3.2.0");
        assert_eq!(
            columns(&info.signature.inputs),
            [
                ("seniority", "integer"),
                ("home", "categorical"),
                ("age", "integer"),
                ("income", "float"),
                ("amount", "integer"),
            ]
        );
        assert_eq!(
            columns(&info.signature.outputs),
            [
                ("prediction", "integer"),
                ("prob_0", "float"),
                ("prob_1", "float")
            ]
        );
    }

    #[test]
    fn xgboost_unnamed_regression_gets_xgboost_default_names() {
        let info = inspect(&fixture!("xgboost_bikeshare_regression_unnamed.json")).unwrap();
        assert_eq!(info.format, ModelFormat::Xgboost);
        assert_eq!(info.task.as_deref(), Some("regression"));
        assert_eq!(
            columns(&info.signature.inputs),
            [
                ("f0", "float"),
                ("f1", "float"),
                ("f2", "float"),
                ("f3", "float")
            ]
        );
        assert_eq!(columns(&info.signature.outputs), [("prediction", "float")]);
    }

    #[test]
    fn xgboost_weather_multiclass_has_three_class_probabilities() {
        let info = inspect(&fixture!("xgboost_bikeshare_weather_multiclass.json")).unwrap();
        assert_eq!(info.task.as_deref(), Some("multiclass"));
        assert_eq!(
            columns(&info.signature.inputs),
            [
                ("hour", "integer"),
                ("temp", "float"),
                ("humidity", "float"),
                ("windspeed", "float"),
            ]
        );
        let outputs: Vec<&str> = info
            .signature
            .outputs
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(outputs, ["prediction", "prob_0", "prob_1", "prob_2"]);
    }

    #[test]
    fn xgboost_json_without_learner_is_a_specific_error() {
        let err = inspect(br#"{"version": [3, 2, 0]}"#).unwrap_err();
        assert!(matches!(err, ForeignError::Xgboost { .. }), "{err:?}");
        assert!(err.to_string().contains("`learner`"), "{err}");

        let err = inspect(
            br#"{"learner": {"objective": {"name": "reg:squarederror"}}, "version": [3, 2, 0]}"#,
        )
        .unwrap_err();
        assert!(matches!(err, ForeignError::Xgboost { .. }), "{err:?}");

        let json = fixture!("xgboost_credit_binary.json");
        let err = inspect(&json[..json.len() / 2]).unwrap_err();
        assert!(matches!(err, ForeignError::Xgboost { .. }), "{err:?}");
    }

    #[test]
    fn xgboost_ubjson_is_refused_with_a_hint_to_save_json() {
        let err = inspect(&fixture!("xgboost_bikeshare_regression_unnamed.ubj")).unwrap_err();
        assert!(matches!(err, ForeignError::XgboostUbjson), "{err:?}");
        assert!(err.to_string().contains("save_model('m.json')"), "{err}");
    }

    #[test]
    fn json_that_is_not_xgboost_is_rejected_with_the_accepted_formats() {
        let msg = not_a_model(br#"{"name": "kiln", "columns": ["a", "b"]}"#);
        assert!(msg.contains("no XGBoost `learner`"), "{msg}");
        not_a_model(b"[1, 2, 3]");
        not_a_model(b"{ not json");
    }

    #[test]
    fn csv_file_is_rejected_with_the_accepted_formats() {
        let msg = not_a_model(
            b"datetime,season,month,hour,temp,bikers\n2011-01-01 00:00:00,1,Jan,0,0.24,16\n",
        );
        assert!(msg.contains("CSV"), "{msg}");
        assert!(msg.starts_with("Not a model file kiln can import"), "{msg}");
    }

    #[test]
    fn empty_and_text_inputs_are_rejected() {
        assert!(not_a_model(b"").contains("empty"));
        assert!(not_a_model(b"  \n").contains("empty"));
        not_a_model(b"hello world\n");
        not_a_model(b"tre");
        not_a_model(b"\x80\x04\x95pickle");
    }

    #[test]
    fn onnx_logistic_regression_has_four_named_float_inputs() {
        let info = inspect(&fixture!("onnx_bikeshare_logreg.onnx")).unwrap();
        assert_eq!(info.format, ModelFormat::Onnx);
        assert_eq!(info.task.as_deref(), Some("binary"));
        assert_eq!(info.producer, "skl2onnx 1.20.0 (ONNX IR 8, opset 11)");
        assert_eq!(
            columns(&info.signature.inputs),
            [
                ("temp", "float"),
                ("atemp", "float"),
                ("humidity", "float"),
                ("windspeed", "float"),
            ]
        );
        assert_eq!(
            columns(&info.signature.outputs),
            [("label", "int64"), ("probabilities", "float[?,2]")]
        );
    }

    #[test]
    fn onnx_forest_pipeline_has_string_int64_and_float_inputs() {
        let info = inspect(&fixture!("onnx_credit_forest.onnx")).unwrap();
        assert_eq!(info.format, ModelFormat::Onnx);
        assert_eq!(info.task.as_deref(), Some("binary"));
        assert_eq!(info.producer, "skl2onnx 1.20.0 (ONNX IR 8, opset 16)");
        assert_eq!(
            columns(&info.signature.inputs),
            [("home", "string"), ("age", "int64"), ("income", "float")]
        );
        assert_eq!(
            columns(&info.signature.outputs),
            [
                ("output_label", "string"),
                ("output_probability", "sequence<map<string,float>>"),
            ]
        );
    }

    // A protobuf writer, for hand-made ONNX files.
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }

    fn int_field(number: u64, v: u64) -> Vec<u8> {
        let mut out = Vec::new();
        varint(number << 3, &mut out);
        varint(v, &mut out);
        out
    }

    fn len_field(number: u64, body: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        varint((number << 3) | 2, &mut out);
        varint(body.len() as u64, &mut out);
        out.extend_from_slice(body);
        out
    }

    fn tensor_value(name: &str, elem: u64, dims: &[Result<u64, &str>]) -> Vec<u8> {
        let shape: Vec<u8> = dims
            .iter()
            .flat_map(|d| {
                let dim = match d {
                    Ok(v) => int_field(1, *v),
                    Err(p) => len_field(2, p.as_bytes()),
                };
                len_field(1, &dim)
            })
            .collect();
        let tensor = [int_field(1, elem), len_field(2, &shape)].concat();
        [
            len_field(1, name.as_bytes()),
            len_field(2, &len_field(1, &tensor)),
        ]
        .concat()
    }

    fn onnx_model(graph: &[u8]) -> Vec<u8> {
        [
            int_field(1, 3),
            len_field(2, b"pytorch"),
            len_field(3, b"2.5"),
            len_field(7, graph),
            len_field(8, &[len_field(1, b""), int_field(2, 9)].concat()),
        ]
        .concat()
    }

    #[test]
    fn onnx_packed_input_keeps_its_shape_and_initializers_are_no_inputs() {
        let graph = [
            // An IR 3 graph lists its weights among its inputs.
            len_field(5, &[int_field(1, 2), len_field(8, b"weight")].concat()),
            len_field(11, &tensor_value("features", 11, &[Err("batch"), Ok(4)])),
            len_field(11, &tensor_value("weight", 1, &[Ok(4), Ok(1)])),
            len_field(11, &tensor_value("flag", 9, &[Err("batch")])),
            len_field(12, &tensor_value("score", 1, &[Err("batch"), Ok(1)])),
        ]
        .concat();
        let info = inspect(&onnx_model(&graph)).unwrap();
        assert_eq!(info.format, ModelFormat::Onnx);
        assert_eq!(info.task, None);
        assert_eq!(info.producer, "pytorch 2.5 (ONNX IR 3, opset 9)");
        assert_eq!(
            columns(&info.signature.inputs),
            [("features", "double[batch,4]"), ("flag", "bool")]
        );
        assert_eq!(columns(&info.signature.outputs), [("score", "float")]);
    }

    #[test]
    fn onnx_regressor_and_multiclass_nodes_name_the_task() {
        let node = |op: &str, labels: usize| {
            let mut attr = len_field(1, b"classlabels_int64s");
            for i in 0..labels {
                attr.extend(int_field(8, i as u64));
            }
            len_field(
                1,
                &[len_field(4, op.as_bytes()), len_field(5, &attr)].concat(),
            )
        };
        let input = len_field(11, &tensor_value("x", 1, &[Err("N"), Ok(3)]));
        for (op, labels, task) in [
            ("TreeEnsembleRegressor", 0, Some("regression")),
            ("TreeEnsembleClassifier", 2, Some("binary")),
            ("LinearClassifier", 5, Some("multiclass")),
            ("Relu", 0, None),
        ] {
            let graph = [node(op, labels), input.clone()].concat();
            let info = inspect(&onnx_model(&graph)).unwrap();
            assert_eq!(info.task.as_deref(), task, "{op}");
        }
    }

    #[test]
    fn onnx_truncated_or_without_graph_is_a_specific_error() {
        let onnx = fixture!("onnx_credit_forest.onnx");
        let graph_end = {
            // Field 7 starts after ir_version and the producer strings.
            let mut f = Fields::new(&onnx);
            loop {
                let (n, _) = f.next_field().unwrap().unwrap();
                if n == 7 {
                    break f.pos;
                }
            }
        };
        for cut in [1, 2, 10, 40, graph_end / 2, graph_end - 1, graph_end] {
            let err = inspect(&onnx[..cut]).unwrap_err();
            assert!(
                matches!(err, ForeignError::Onnx { .. }),
                "cut {cut}: {err:?}"
            );
            assert!(err.to_string().starts_with("Damaged ONNX model"), "{err}");
        }
        assert!(
            inspect(&onnx[..graph_end])
                .unwrap_err()
                .to_string()
                .contains("no `opset_import`")
        );
        let err = inspect(&[int_field(1, 8), len_field(2, b"skl2onnx")].concat()).unwrap_err();
        assert!(err.to_string().contains("no graph"), "{err}");
    }

    #[test]
    fn onnx_deeply_nested_type_is_refused_without_overflowing_the_stack() {
        let mut ty = len_field(1, &int_field(1, 1));
        for _ in 0..10_000 {
            ty = len_field(4, &len_field(1, &ty));
        }
        let value = [len_field(1, b"x"), len_field(2, &ty)].concat();
        let err = inspect(&onnx_model(&len_field(11, &value))).unwrap_err();
        assert!(err.to_string().contains("nested"), "{err}");
    }

    #[test]
    fn truncated_prefixes_of_every_fixture_never_panic() {
        for (name, bytes) in all_fixtures() {
            let step = (bytes.len() / 400).max(1);
            for cut in (0..bytes.len())
                .step_by(step)
                .chain([bytes.len().saturating_sub(1)])
            {
                let result = std::panic::catch_unwind(|| inspect(&bytes[..cut]));
                assert!(result.is_ok(), "{name} cut at {cut} panicked");
            }
        }
    }

    #[test]
    fn random_and_mutated_bytes_never_panic() {
        let mut rng = Rng::new(42);
        let fixtures = all_fixtures();
        for round in 0..4000 {
            let bytes: Vec<u8> = if round % 2 == 0 {
                let len = rng.below(300);
                (0..len).map(|_| rng.next_u64() as u8).collect()
            } else {
                let (_, base) = &fixtures[rng.below(fixtures.len())];
                let mut b = base.clone();
                for _ in 0..1 + rng.below(8) {
                    let at = rng.below(b.len());
                    b[at] = rng.next_u64() as u8;
                }
                b
            };
            for start in [&[][..], b"\x08\x08", b"tree\n", b"{", b"kiln-model 1\n"] {
                let input = [start, &bytes].concat();
                let result = std::panic::catch_unwind(|| inspect(&input));
                assert!(result.is_ok(), "round {round} panicked on {input:?}");
            }
        }
    }

    #[test]
    fn model_format_names_round_trip() {
        for f in ModelFormat::ALL {
            assert_eq!(ModelFormat::parse(f.as_str()), Some(f));
            let json = serde_json::to_string(&f).unwrap();
            assert_eq!(json, format!("\"{}\"", f.as_str()));
        }
        assert_eq!(ModelFormat::parse("LightGBM"), Some(ModelFormat::Lightgbm));
        assert_eq!(ModelFormat::parse("pickle"), None);
    }

    #[test]
    fn model_info_serialises_with_type_fields() {
        let info = inspect(&fixture!("xgboost_bikeshare_regression_unnamed.json")).unwrap();
        let json = serde_json::to_value(&info).unwrap();
        assert_eq!(json["format"], "xgboost");
        assert_eq!(json["signature"]["inputs"][0]["type"], "float");
        assert_eq!(json["task"], "regression");
    }
}
