//! Preprocessing learned on training data and saved inside the model:
//! which input columns become which learner features, the categories seen
//! in training, date and timestamp parts, and the columns dropped (constant,
//! empty, identifier-like) with the reason.
//!
//! Imputation is the learners' business: trees route missing values
//! natively, and [`crate::linear`]'s encoder imputes with training medians.

use std::collections::HashMap;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, RecordBatch};
use arrow_schema::{DataType, Schema};
use kiln_core::ColumnType;
use serde::{Deserialize, Serialize};

use crate::error::MlError;
use crate::frame::{Column, Features, MISSING_CODE};
use crate::task::{Target, Task};

/// An input column the model reads: part of its signature.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InputColumn {
    pub name: String,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    /// Categories seen in training (string columns only), most frequent first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub categories: Option<Vec<String>>,
}

/// A part of a date or timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DatePart {
    Year,
    Month,
    Day,
    Weekday,
    DayOfYear,
    Hour,
    /// Days since 1970-01-01 (fractional for timestamps): the trend.
    Epoch,
}

impl DatePart {
    fn name(self) -> &'static str {
        match self {
            DatePart::Year => "year",
            DatePart::Month => "month",
            DatePart::Day => "day",
            DatePart::Weekday => "weekday",
            DatePart::DayOfYear => "dayofyear",
            DatePart::Hour => "hour",
            DatePart::Epoch => "epoch_days",
        }
    }
}

/// How a learner feature is made from an input column.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureSource {
    /// An integer, float or boolean column as a number.
    Numeric { input: usize },
    /// A string column as category codes (its input's `categories`).
    Categorical { input: usize },
    /// A part of a date or timestamp column.
    DatePart { input: usize, part: DatePart },
}

/// A column left out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dropped {
    pub name: String,
    pub reason: String,
}

/// Options for [`Preprocessor::fit`].
#[derive(Debug, Clone)]
pub struct PreprocessOptions {
    /// Columns never used as features (identifiers, group keys, leakage).
    pub exclude: Vec<String>,
    /// Most categories kept per string column; the rest count as unseen.
    pub max_categories: usize,
}

impl Default for PreprocessOptions {
    fn default() -> Self {
        PreprocessOptions {
            exclude: Vec::new(),
            max_categories: 10_000,
        }
    }
}

/// What a model does to a table before its learner sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Preprocessor {
    pub inputs: Vec<InputColumn>,
    pub features: Vec<(String, FeatureSource)>,
    pub dropped: Vec<Dropped>,
}

/// Something a transform did that a user should know about.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TransformNote {
    pub column: String,
    /// Rows whose category was not seen in training (treated as missing).
    pub unseen_categories: usize,
}

/// A column of a table gathered across batches, in canonical types.
pub(crate) enum Gathered {
    Numbers(Vec<f64>),
    Strings(Vec<Option<String>>),
    /// Microseconds since the epoch (dates at midnight).
    Times(Vec<Option<i64>>),
}

impl Gathered {
    fn subset(self, rows: &[usize]) -> Gathered {
        match self {
            Gathered::Numbers(v) => Gathered::Numbers(rows.iter().map(|&r| v[r]).collect()),
            Gathered::Strings(v) => Gathered::Strings(rows.iter().map(|&r| v[r].clone()).collect()),
            Gathered::Times(v) => Gathered::Times(rows.iter().map(|&r| v[r]).collect()),
        }
    }
}

/// The named column of `batches`, gathered.
pub(crate) fn gather(
    batches: &[RecordBatch],
    name: &str,
) -> Result<(ColumnType, Gathered), MlError> {
    let schema = batches
        .first()
        .map(|b| b.schema())
        .ok_or_else(|| MlError::Invalid {
            what: "table".into(),
            why: "it has no rows".into(),
        })?;
    let (index, field) = schema
        .column_with_name(name)
        .ok_or_else(|| MlError::MissingColumns {
            names: vec![name.into()],
        })?;
    let ty =
        kiln_data::schema::logical_type(field.data_type()).ok_or_else(|| MlError::WrongType {
            name: name.into(),
            got: field.data_type().to_string(),
            expected: ColumnType::Float,
        })?;
    let n: usize = batches.iter().map(RecordBatch::num_rows).sum();
    let arrays = batches.iter().map(|b| b.column(index));
    let gathered = match field.data_type() {
        DataType::Int64 => {
            let mut v = Vec::with_capacity(n);
            for a in arrays {
                let a = a.as_primitive::<Int64Type>();
                v.extend((0..a.len()).map(|i| {
                    if a.is_null(i) {
                        f64::NAN
                    } else {
                        a.value(i) as f64
                    }
                }));
            }
            Gathered::Numbers(v)
        }
        DataType::Float64 => {
            let mut v = Vec::with_capacity(n);
            for a in arrays {
                let a = a.as_primitive::<Float64Type>();
                v.extend((0..a.len()).map(|i| if a.is_null(i) { f64::NAN } else { a.value(i) }));
            }
            Gathered::Numbers(v)
        }
        DataType::Boolean => {
            let mut v = Vec::with_capacity(n);
            for a in arrays {
                let a = a.as_boolean();
                v.extend((0..a.len()).map(|i| {
                    if a.is_null(i) {
                        f64::NAN
                    } else {
                        f64::from(u8::from(a.value(i)))
                    }
                }));
            }
            Gathered::Numbers(v)
        }
        DataType::Utf8 => {
            let mut v = Vec::with_capacity(n);
            for a in arrays {
                let a = a.as_string::<i32>();
                v.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i).to_string())));
            }
            Gathered::Strings(v)
        }
        DataType::Date32 => {
            let mut v = Vec::with_capacity(n);
            for a in arrays {
                let a = a.as_primitive::<Date32Type>();
                v.extend(
                    (0..a.len())
                        .map(|i| (!a.is_null(i)).then(|| a.value(i) as i64 * 86_400_000_000)),
                );
            }
            Gathered::Times(v)
        }
        DataType::Timestamp(_, _) => {
            let mut v = Vec::with_capacity(n);
            for a in arrays {
                let a = a.as_primitive::<TimestampMicrosecondType>();
                v.extend((0..a.len()).map(|i| (!a.is_null(i)).then(|| a.value(i))));
            }
            Gathered::Times(v)
        }
        other => {
            return Err(MlError::WrongType {
                name: name.into(),
                got: other.to_string(),
                expected: ColumnType::Float,
            });
        }
    };
    Ok((ty, gathered))
}

/// Casts batches to kiln's canonical column types (Int64, Float64, Boolean,
/// Utf8, Date32, Timestamp µs), as training saw them.
pub fn canonicalize(batches: &[RecordBatch]) -> Result<Vec<RecordBatch>, MlError> {
    let Some(first) = batches.first() else {
        return Ok(Vec::new());
    };
    let schema = kiln_data::schema::canonical_schema(&first.schema()).map_err(|(name, dt)| {
        MlError::WrongType {
            name,
            got: dt.to_string(),
            expected: ColumnType::Float,
        }
    })?;
    batches
        .iter()
        .map(|b| Ok(kiln_data::read::cast_batch(b, &schema)?))
        .collect()
}

fn civil(micros: i64) -> (i64, u32, u32, u32, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let days = micros.div_euclid(86_400_000_000);
    let hour = (micros.rem_euclid(86_400_000_000) / 3_600_000_000) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy_march = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy_march + 2) / 153;
    let day = (doy_march - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    let weekday = (days + 3).rem_euclid(7) as u32; // Monday = 0
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    const CUM: [u32; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let doy = CUM[month as usize - 1] + day + u32::from(leap && month > 2);
    (year, month, day, weekday, doy, hour)
}

fn date_part(micros: Option<i64>, part: DatePart) -> f64 {
    let Some(m) = micros else { return f64::NAN };
    let (y, mo, d, wd, doy, h) = civil(m);
    match part {
        DatePart::Year => y as f64,
        DatePart::Month => mo as f64,
        DatePart::Day => d as f64,
        DatePart::Weekday => wd as f64,
        DatePart::DayOfYear => doy as f64,
        DatePart::Hour => h as f64,
        DatePart::Epoch => m as f64 / 86_400_000_000.0,
    }
}

impl Preprocessor {
    /// Learns the preprocessing from training `batches` (canonical types),
    /// leaving out `target` and the excluded columns.
    ///
    /// Only the rows `rows` are looked at when given (the training rows of
    /// a split), so nothing is learned from held-out rows.
    pub fn fit(
        batches: &[RecordBatch],
        target: &str,
        rows: Option<&[usize]>,
        opts: &PreprocessOptions,
    ) -> Result<Preprocessor, MlError> {
        let schema: std::sync::Arc<Schema> =
            batches
                .first()
                .map(|b| b.schema())
                .ok_or_else(|| MlError::Invalid {
                    what: "training table".into(),
                    why: "it has no rows".into(),
                })?;
        let mut inputs = Vec::new();
        let mut features = Vec::new();
        let mut dropped = Vec::new();
        for field in schema.fields() {
            let name = field.name();
            if name == target {
                continue;
            }
            if opts.exclude.iter().any(|e| e == name) {
                dropped.push(Dropped {
                    name: name.clone(),
                    reason: "excluded".into(),
                });
                continue;
            }
            let (ty, col) = gather(batches, name)?;
            let col = match rows {
                None => col,
                Some(rows) => col.subset(rows),
            };
            let drop = |reason: &str, dropped: &mut Vec<Dropped>| {
                dropped.push(Dropped {
                    name: name.clone(),
                    reason: reason.into(),
                })
            };
            let input = inputs.len();
            match col {
                Gathered::Numbers(v) => {
                    let nulls = v.iter().filter(|x| x.is_nan()).count();
                    if nulls == v.len() {
                        drop("all values are missing", &mut dropped);
                        continue;
                    }
                    if nulls == 0 && v.iter().all(|&x| x == v[0]) {
                        drop("constant", &mut dropped);
                        continue;
                    }
                    // A distinct, increasing integer per row (a row number) is
                    // kept: in time-ordered data it is the time, and trees
                    // ignore it where it carries nothing.
                    inputs.push(InputColumn {
                        name: name.clone(),
                        column_type: ty,
                        categories: None,
                    });
                    features.push((name.clone(), FeatureSource::Numeric { input }));
                }
                Gathered::Strings(v) => {
                    let mut counts: HashMap<&str, usize> = HashMap::new();
                    let mut nulls = 0usize;
                    for s in &v {
                        match s {
                            Some(s) => *counts.entry(s.as_str()).or_default() += 1,
                            None => nulls += 1,
                        }
                    }
                    if nulls == v.len() {
                        drop("all values are missing", &mut dropped);
                        continue;
                    }
                    if counts.len() == 1 && nulls == 0 {
                        drop("constant", &mut dropped);
                        continue;
                    }
                    let present = v.len() - nulls;
                    if counts.len() > 100 && counts.len() * 10 > present * 9 {
                        drop(
                            "identifier-like: nearly every value is distinct",
                            &mut dropped,
                        );
                        continue;
                    }
                    let mut cats: Vec<(&str, usize)> = counts.into_iter().collect();
                    cats.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
                    cats.truncate(opts.max_categories);
                    inputs.push(InputColumn {
                        name: name.clone(),
                        column_type: ty,
                        categories: Some(cats.into_iter().map(|(s, _)| s.to_string()).collect()),
                    });
                    features.push((name.clone(), FeatureSource::Categorical { input }));
                }
                Gathered::Times(v) => {
                    let present: Vec<i64> = v.iter().flatten().copied().collect();
                    if present.is_empty() {
                        drop("all values are missing", &mut dropped);
                        continue;
                    }
                    inputs.push(InputColumn {
                        name: name.clone(),
                        column_type: ty,
                        categories: None,
                    });
                    let mut parts = vec![
                        DatePart::Year,
                        DatePart::Month,
                        DatePart::Day,
                        DatePart::Weekday,
                        DatePart::DayOfYear,
                    ];
                    if ty == ColumnType::Timestamp {
                        parts.push(DatePart::Hour);
                    }
                    parts.push(DatePart::Epoch);
                    for part in parts {
                        // A part that never varies (one year, midnight only) says nothing.
                        let first = date_part(Some(present[0]), part);
                        if present.iter().all(|&m| date_part(Some(m), part) == first) {
                            continue;
                        }
                        features.push((
                            format!("{name}.{}", part.name()),
                            FeatureSource::DatePart { input, part },
                        ));
                    }
                }
            }
        }
        if features.is_empty() {
            let why = if dropped.is_empty() {
                "the table has only the target column".to_string()
            } else {
                let list: Vec<String> = dropped
                    .iter()
                    .map(|d| format!("`{}` ({})", d.name, d.reason))
                    .collect();
                format!("left out {}", list.join(", "))
            };
            return Err(MlError::NoFeatures { why });
        }
        Ok(Preprocessor {
            inputs,
            features,
            dropped,
        })
    }

    /// Turns a table (any column order; extra columns ignored) into learner
    /// features. Integers may feed float inputs and vice versa; a missing
    /// column or a type that cannot feed its input is an error. Categories
    /// unseen in training become missing and are counted in the notes.
    pub fn transform(
        &self,
        batches: &[RecordBatch],
    ) -> Result<(Features, Vec<TransformNote>), MlError> {
        let batches = canonicalize(batches)?;
        let n_rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if let Some(first) = batches.first() {
            let schema = first.schema();
            let missing: Vec<String> = self
                .inputs
                .iter()
                .filter(|c| schema.column_with_name(&c.name).is_none())
                .map(|c| c.name.clone())
                .collect();
            if !missing.is_empty() {
                return Err(MlError::MissingColumns { names: missing });
            }
        }
        let mut gathered: Vec<Gathered> = Vec::with_capacity(self.inputs.len());
        for input in &self.inputs {
            let col = if n_rows == 0 {
                match input.column_type {
                    ColumnType::String | ColumnType::Categorical => Gathered::Strings(Vec::new()),
                    ColumnType::Date | ColumnType::Timestamp => Gathered::Times(Vec::new()),
                    _ => Gathered::Numbers(Vec::new()),
                }
            } else {
                gather(&batches, &input.name)?.1
            };
            let ok = matches!(
                (&col, input.column_type),
                (
                    Gathered::Numbers(_),
                    ColumnType::Integer | ColumnType::Float | ColumnType::Boolean
                ) | (
                    Gathered::Strings(_),
                    ColumnType::String | ColumnType::Categorical
                ) | (Gathered::Times(_), ColumnType::Date | ColumnType::Timestamp)
            );
            if !ok {
                let got = batches[0]
                    .schema()
                    .field_with_name(&input.name)
                    .map(|f| {
                        kiln_data::schema::logical_type(f.data_type())
                            .map_or_else(|| f.data_type().to_string(), |t| t.as_str().to_string())
                    })
                    .unwrap_or_default();
                return Err(MlError::WrongType {
                    name: input.name.clone(),
                    got,
                    expected: input.column_type,
                });
            }
            if let Gathered::Numbers(v) = &col
                && let Some(row) = v.iter().position(|x| x.is_infinite())
            {
                return Err(MlError::NonFinite {
                    name: input.name.clone(),
                    row,
                    value: v[row],
                });
            }
            gathered.push(col);
        }
        let mut notes = Vec::new();
        let mut names = Vec::with_capacity(self.features.len());
        let mut columns = Vec::with_capacity(self.features.len());
        for (name, source) in &self.features {
            names.push(name.clone());
            let column = match *source {
                FeatureSource::Numeric { input } => match &gathered[input] {
                    Gathered::Numbers(v) => Column::Numeric(v.clone()),
                    _ => unreachable!("types checked above"),
                },
                FeatureSource::Categorical { input } => {
                    let cats = self.inputs[input].categories.as_deref().unwrap_or_default();
                    let lookup: HashMap<&str, u32> = cats
                        .iter()
                        .enumerate()
                        .map(|(i, c)| (c.as_str(), i as u32))
                        .collect();
                    let Gathered::Strings(v) = &gathered[input] else {
                        unreachable!("types checked above")
                    };
                    let mut unseen = 0usize;
                    let codes = v
                        .iter()
                        .map(|s| match s {
                            None => MISSING_CODE,
                            Some(s) => lookup.get(s.as_str()).copied().unwrap_or_else(|| {
                                unseen += 1;
                                MISSING_CODE
                            }),
                        })
                        .collect();
                    if unseen > 0 {
                        notes.push(TransformNote {
                            column: self.inputs[input].name.clone(),
                            unseen_categories: unseen,
                        });
                    }
                    Column::Categorical {
                        codes,
                        n_categories: cats.len() as u32,
                    }
                }
                FeatureSource::DatePart { input, part } => {
                    let Gathered::Times(v) = &gathered[input] else {
                        unreachable!("types checked above")
                    };
                    Column::Numeric(v.iter().map(|&m| date_part(m, part)).collect())
                }
            };
            columns.push(column);
        }
        Ok((Features { names, columns }, notes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn civil_dates_match_known_calendar_days() {
        // 2013-01-01 was a Tuesday; 2024-02-29 a Thursday, day 60.
        let d = 15_706i64 * 86_400_000_000 + 10 * 3_600_000_000;
        assert_eq!(civil(d), (2013, 1, 1, 1, 1, 10));
        let leap = 19_782i64 * 86_400_000_000;
        assert_eq!(civil(leap), (2024, 2, 29, 3, 60, 0));
        let before_epoch = -86_400_000_000i64;
        assert_eq!(civil(before_epoch).0, 1969);
    }
}

/// What the model predicts: the target column, its task and, for
/// classifiers, the class labels in class-index order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TargetSpec {
    pub name: String,
    pub task: Task,
    #[serde(rename = "type")]
    pub column_type: ColumnType,
    /// Class labels; for binary tasks `[negative, positive]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub classes: Vec<String>,
}

/// Labels read from a table, and which rows had one.
#[derive(Debug, Clone)]
pub struct Labels {
    pub target: Target,
    /// Rows with a label (the others are left out of training and scoring).
    pub rows: Vec<usize>,
    /// Rows of the table.
    pub total_rows: usize,
}

/// Numeric labels as class names (`true`/`false` for booleans); missing
/// labels stay missing.
fn label_texts(v: &[f64], ty: ColumnType) -> Vec<Option<String>> {
    v.iter()
        .map(|&x| {
            (!x.is_nan()).then(|| {
                if ty == ColumnType::Boolean {
                    (if x == 1.0 { "true" } else { "false" }).to_string()
                } else {
                    label_text(x)
                }
            })
        })
        .collect()
}

fn label_text(x: f64) -> String {
    if x.fract() == 0.0 && x.abs() < 1e15 {
        format!("{}", x as i64)
    } else {
        format!("{x}")
    }
}

impl TargetSpec {
    /// Reads the target column of training `batches`, infers the task when
    /// `task` is `None` (strings and booleans: classification; numbers with
    /// two values: binary; other numbers: regression) and fixes the class
    /// order. The positive class of a binary task is `positive` when given,
    /// else `1`/`true` when the labels are 0/1 or booleans, else the less
    /// frequent label.
    pub fn fit(
        batches: &[RecordBatch],
        name: &str,
        task: Option<Task>,
        positive: Option<&str>,
    ) -> Result<(TargetSpec, Labels), MlError> {
        let available = || {
            batches
                .first()
                .map(|b| {
                    b.schema()
                        .fields()
                        .iter()
                        .map(|f| f.name().clone())
                        .collect()
                })
                .unwrap_or_default()
        };
        let (ty, col) = match gather(batches, name) {
            Err(MlError::MissingColumns { .. }) => {
                return Err(MlError::NoTarget {
                    name: name.into(),
                    available: available(),
                });
            }
            other => other?,
        };
        let bad = |why: String, hint: &str| MlError::BadTarget {
            name: name.into(),
            why,
            hint: hint.into(),
        };
        // Labels as text (for classes) and numbers (for regression).
        let (texts, numbers): (Vec<Option<String>>, Option<Vec<f64>>) = match col {
            Gathered::Numbers(v) => {
                if let Some(row) = v.iter().position(|x| x.is_infinite()) {
                    return Err(MlError::NonFinite {
                        name: name.into(),
                        row,
                        value: v[row],
                    });
                }
                let t = label_texts(&v, ty);
                (t, (ty != ColumnType::Boolean).then_some(v))
            }
            Gathered::Strings(v) => (v, None),
            Gathered::Times(_) => {
                return Err(bad(
                    format!("it is a {} column", ty.as_str()),
                    "predict a number or a class; use the date as a feature instead",
                ));
            }
        };
        let rows: Vec<usize> = (0..texts.len()).filter(|&i| texts[i].is_some()).collect();
        if rows.is_empty() {
            return Err(bad(
                "every value is missing".into(),
                "pick a column with values to learn",
            ));
        }
        let mut counts: HashMap<&str, usize> = HashMap::new();
        for t in texts.iter().flatten() {
            *counts.entry(t.as_str()).or_default() += 1;
        }
        let task = match task {
            Some(t) => t,
            None if numbers.is_none() => {
                if counts.len() == 2 {
                    Task::Binary
                } else {
                    Task::Multiclass
                }
            }
            None if counts.len() == 2 => Task::Binary,
            None => Task::Regression,
        };
        if counts.len() < 2 {
            let only = counts.keys().next().copied().unwrap_or_default();
            return Err(bad(
                format!("every row has the same value `{only}`"),
                "a model needs at least two different target values; check the column and any filter",
            ));
        }
        let total_rows = texts.len();
        match task {
            Task::Regression => {
                let Some(v) = numbers else {
                    return Err(bad(
                        format!(
                            "regression needs numbers, but it is a {} column",
                            ty.as_str()
                        ),
                        "use --task binary or --task multiclass, or pick a numeric target",
                    ));
                };
                let values = rows.iter().map(|&r| v[r]).collect();
                Ok((
                    TargetSpec {
                        name: name.into(),
                        task,
                        column_type: ty,
                        classes: Vec::new(),
                    },
                    Labels {
                        target: Target::Values(values),
                        rows,
                        total_rows,
                    },
                ))
            }
            Task::Binary | Task::Multiclass => {
                if task == Task::Binary && counts.len() != 2 {
                    return Err(bad(
                        format!(
                            "binary classification needs two classes; it has {}",
                            counts.len()
                        ),
                        "use --task multiclass, or --task regression for a numeric target",
                    ));
                }
                if counts.len() > 1000 {
                    return Err(bad(
                        format!(
                            "it has {} distinct values, too many for classes",
                            counts.len()
                        ),
                        "use --task regression for a numeric target",
                    ));
                }
                let mut classes: Vec<String> = counts.keys().map(|s| s.to_string()).collect();
                // Numbers in numeric order, text in text order.
                classes.sort_by(|a, b| match (a.parse::<f64>(), b.parse::<f64>()) {
                    (Ok(x), Ok(y)) => x.total_cmp(&y),
                    _ => a.cmp(b),
                });
                if task == Task::Binary {
                    let pos = match positive {
                        Some(p) => {
                            if !classes.iter().any(|c| c == p) {
                                return Err(bad(
                                    format!(
                                        "the positive class `{p}` is not one of its values {classes:?}"
                                    ),
                                    "pass --positive with one of the target's values",
                                ));
                            }
                            p.to_string()
                        }
                        None if classes == ["0", "1"] || classes == ["false", "true"] => {
                            classes[1].clone()
                        }
                        None => {
                            let (a, b) = (&classes[0], &classes[1]);
                            if counts[a.as_str()] < counts[b.as_str()] {
                                a.clone()
                            } else {
                                b.clone()
                            }
                        }
                    };
                    classes.retain(|c| *c != pos);
                    classes.push(pos);
                }
                let spec = TargetSpec {
                    name: name.into(),
                    task,
                    column_type: ty,
                    classes,
                };
                let target = spec.codes(&texts, &rows)?;
                Ok((
                    spec,
                    Labels {
                        target,
                        rows,
                        total_rows,
                    },
                ))
            }
        }
    }

    fn codes(&self, texts: &[Option<String>], rows: &[usize]) -> Result<Target, MlError> {
        let lookup: HashMap<&str, u32> = self
            .classes
            .iter()
            .enumerate()
            .map(|(i, c)| (c.as_str(), i as u32))
            .collect();
        let mut codes = Vec::with_capacity(rows.len());
        for &r in rows {
            let t = texts[r].as_deref().unwrap_or_default();
            match lookup.get(t) {
                Some(&c) => codes.push(c),
                None => {
                    return Err(MlError::BadTarget {
                        name: self.name.clone(),
                        why: format!(
                            "row {} has class `{t}`, which the model was not trained on",
                            r + 1
                        ),
                        hint: format!("the model knows the classes {:?}", self.classes),
                    });
                }
            }
        }
        Ok(Target::Classes {
            codes,
            n_classes: self.classes.len(),
        })
    }

    /// Reads the labels of another table (for evaluation) with this spec.
    pub fn labels(&self, batches: &[RecordBatch]) -> Result<Labels, MlError> {
        let batches = canonicalize(batches)?;
        let (ty, col) = match gather(&batches, &self.name) {
            Err(MlError::MissingColumns { .. }) => {
                return Err(MlError::NoTarget {
                    name: self.name.clone(),
                    available: batches
                        .first()
                        .map(|b| {
                            b.schema()
                                .fields()
                                .iter()
                                .map(|f| f.name().clone())
                                .collect()
                        })
                        .unwrap_or_default(),
                });
            }
            other => other?,
        };
        let texts: Vec<Option<String>> = match &col {
            Gathered::Numbers(v) => label_texts(v, ty),
            Gathered::Strings(v) => v.clone(),
            Gathered::Times(_) => {
                return Err(MlError::WrongType {
                    name: self.name.clone(),
                    got: ty.as_str().into(),
                    expected: self.column_type,
                });
            }
        };
        let rows: Vec<usize> = (0..texts.len()).filter(|&i| texts[i].is_some()).collect();
        let total_rows = texts.len();
        let target = match (self.task, col) {
            (Task::Regression, Gathered::Numbers(v)) => {
                Target::Values(rows.iter().map(|&r| v[r]).collect())
            }
            (Task::Regression, _) => {
                return Err(MlError::WrongType {
                    name: self.name.clone(),
                    got: ty.as_str().into(),
                    expected: self.column_type,
                });
            }
            _ => self.codes(&texts, &rows)?,
        };
        Ok(Labels {
            target,
            rows,
            total_rows,
        })
    }
}
