//! Declared expectations on a dataset, evaluated on its columnar copy in one
//! streaming pass. Each rule of the suite becomes one [`CheckResult`] with
//! the number of failing rows and a few of them.
//!
//! ```yaml
//! checks:
//!   rows: { min: 100, max: 1000000 }
//!   unique: [id, [store, day]]
//!   columns:
//!     age: { type: integer, not_null: true, range: { min: 0, max: 120 } }
//!     plan: { allowed: [basic, premium] }
//!     email: { regex: '^[^@]+@[^@]+$', max_null_fraction: 0.1 }
//!     updated_at: { freshness: 7d }
//! ```

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_cast::display::{ArrayFormatter, FormatOptions};
use arrow_schema::DataType;
use kiln_core::ColumnType;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use regex::Regex;
use serde::{Deserialize, Serialize};

use crate::schema::TableSchema;
use crate::{DataError, Result};

/// Failing rows kept as examples per check.
pub const EXAMPLES: usize = 5;

/// The checks declared for one dataset.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CheckSuite {
    /// Bounds on the number of rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows: Option<Bounds>,
    /// Column sets whose values must be unique together: `[id, [a, b]]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unique: Vec<OneOrMany>,
    /// Rules per column.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub columns: BTreeMap<String, ColumnChecks>,
}

/// A column name or a list of them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn columns(&self) -> Vec<String> {
        match self {
            Self::One(c) => vec![c.clone()],
            Self::Many(c) => c.clone(),
        }
    }
}

/// Inclusive bounds; either may be left out.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min: Option<f64>,
    pub max: Option<f64>,
}

impl std::fmt::Display for Bounds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let b = |v: Option<f64>| v.map_or("…".to_string(), |v| v.to_string());
        write!(f, "[{}, {}]", b(self.min), b(self.max))
    }
}

/// The rules for one column.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColumnChecks {
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub ty: Option<ColumnType>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_null: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<Bounds>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Scalar>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub regex: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_null_fraction: Option<f64>,
    /// Maximum age of the newest value: `90s`, `30m`, `12h`, `7d`, `2w`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub freshness: Option<String>,
}

/// A YAML scalar in an `allowed` list, compared by its text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
    Text(String),
}

impl Scalar {
    fn text(&self) -> String {
        match self {
            Self::Bool(b) => b.to_string(),
            Self::Int(i) => i.to_string(),
            Self::Float(f) => f.to_string(),
            Self::Text(s) => s.clone(),
        }
    }
}

/// The outcome of one rule.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckResult {
    /// E.g. `age: range [0, 120]`.
    pub name: String,
    pub column: Option<String>,
    pub passed: bool,
    /// Rows that break the rule (0 for table-level rules).
    pub failing_rows: u64,
    /// What was observed, in words.
    pub observed: String,
    /// A few failing rows: 1-based row number and the value.
    #[serde(default)]
    pub examples: Vec<(u64, String)>,
}

/// The outcome of a whole suite.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CheckReport {
    pub passed: bool,
    pub rows: u64,
    pub results: Vec<CheckResult>,
}

impl CheckReport {
    pub fn failed(&self) -> usize {
        self.results.iter().filter(|r| !r.passed).count()
    }
}

impl CheckSuite {
    pub fn is_empty(&self) -> bool {
        self.rows.is_none() && self.unique.is_empty() && self.columns.is_empty()
    }

    /// Validates what can be validated without data: regexes and durations.
    pub fn validate(&self) -> Result<()> {
        for (name, c) in &self.columns {
            if let Some(r) = &c.regex {
                Regex::new(r).map_err(|e| DataError::InvalidCheck {
                    target: name.clone(),
                    message: format!("bad regex: {e}"),
                })?;
            }
            if let Some(f) = &c.freshness {
                parse_duration(f).map_err(|m| DataError::InvalidCheck {
                    target: name.clone(),
                    message: m,
                })?;
            }
            if let Some(m) = c.max_null_fraction
                && !(0.0..=1.0).contains(&m)
            {
                return Err(DataError::InvalidCheck {
                    target: name.clone(),
                    message: format!("max_null_fraction {m} is not between 0 and 1"),
                });
            }
        }
        Ok(())
    }
}

/// Parses `90s`, `30m`, `12h`, `7d`, `2w` into seconds.
pub fn parse_duration(s: &str) -> std::result::Result<i64, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like `7d`, `12h`, `30m`"))?;
    let mult = match unit.trim() {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("`{s}` has an unknown unit; use s, m, h, d or w")),
    };
    Ok(n * mult)
}

enum Rule {
    NotNull,
    Range(Bounds),
    Allowed(HashSet<String>),
    Regex(Regex),
    MaxNullFraction(f64),
    Freshness(i64),
    Type(ColumnType),
}

struct ColumnRule {
    name: String,
    column: String,
    rule: Rule,
    failing: u64,
    examples: Vec<(u64, String)>,
    max_seen: Option<i64>,
}

/// Evaluates `suite` on the Parquet file at `columnar`, whose kiln schema is `schema`.
pub fn run(
    suite: &CheckSuite,
    schema: &TableSchema,
    columnar: &Path,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<CheckReport> {
    suite.validate()?;
    let mut results = Vec::new();
    let mut rules = Vec::new();
    for (col, c) in &suite.columns {
        let Some(cs) = schema.column(col) else {
            results.push(CheckResult {
                name: format!("{col}: exists"),
                column: Some(col.clone()),
                passed: false,
                failing_rows: 0,
                observed: "column is missing".into(),
                examples: vec![],
            });
            continue;
        };
        let mut add = |label: String, rule: Rule| {
            rules.push(ColumnRule {
                name: format!("{col}: {label}"),
                column: col.clone(),
                rule,
                failing: 0,
                examples: vec![],
                max_seen: None,
            });
        };
        if let Some(t) = c.ty {
            add(format!("type {t}"), Rule::Type(t));
        }
        if c.not_null == Some(true) {
            add("not null".into(), Rule::NotNull);
        }
        if let Some(b) = &c.range {
            if !cs.ty.is_numeric() {
                return Err(DataError::InvalidCheck {
                    target: col.clone(),
                    message: format!("range needs a numeric column, but it is {}", cs.ty),
                });
            }
            add(format!("range {b}"), Rule::Range(b.clone()));
        }
        if let Some(a) = &c.allowed {
            add(
                format!("allowed {} values", a.len()),
                Rule::Allowed(a.iter().map(Scalar::text).collect()),
            );
        }
        if let Some(r) = &c.regex {
            add(
                format!("regex {r}"),
                Rule::Regex(Regex::new(r).expect("validated")),
            );
        }
        if let Some(m) = c.max_null_fraction {
            add(format!("max null fraction {m}"), Rule::MaxNullFraction(m));
        }
        if let Some(f) = &c.freshness {
            if !matches!(cs.ty, ColumnType::Date | ColumnType::Timestamp) {
                return Err(DataError::InvalidCheck {
                    target: col.clone(),
                    message: format!(
                        "freshness needs a date or timestamp column, but it is {}",
                        cs.ty
                    ),
                });
            }
            add(
                format!("freshness {f}"),
                Rule::Freshness(parse_duration(f).expect("validated")),
            );
        }
    }
    let mut unique_sets: Vec<Vec<String>> = suite.unique.iter().map(OneOrMany::columns).collect();
    unique_sets.extend(
        suite
            .columns
            .iter()
            .filter(|(_, c)| c.unique == Some(true))
            .map(|(n, _)| vec![n.clone()]),
    );
    let mut uniques = Vec::new();
    for set in unique_sets {
        if let Some(missing) = set.iter().find(|c| schema.column(c).is_none()) {
            results.push(CheckResult {
                name: format!("unique ({})", set.join(", ")),
                column: None,
                passed: false,
                failing_rows: 0,
                observed: format!("column `{missing}` is missing"),
                examples: vec![],
            });
        } else {
            uniques.push((
                set,
                HashSet::<Vec<String>>::new(),
                0u64,
                Vec::<(u64, String)>::new(),
            ));
        }
    }

    let file = std::fs::File::open(columnar).map_err(DataError::io("open", columnar))?;
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)?
        .with_batch_size(crate::read::BATCH_ROWS)
        .build()?;
    let mut row0 = 0u64;
    let mut nulls: BTreeMap<String, u64> = BTreeMap::new();
    for batch in reader {
        let batch = batch?;
        for r in &mut rules {
            let col = column(&batch, &r.column)?;
            eval(r, &col, row0)?;
        }
        for name in rules
            .iter()
            .map(|r| r.column.clone())
            .collect::<HashSet<_>>()
        {
            *nulls.entry(name.clone()).or_default() += column(&batch, &name)?.null_count() as u64;
        }
        for (set, seen, dupes, examples) in &mut uniques {
            let cols: Vec<ArrayRef> = set
                .iter()
                .map(|c| column(&batch, c))
                .collect::<Result<_>>()?;
            let fmts: Vec<ArrayFormatter> = cols
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &FORMAT))
                .collect::<Result<_, _>>()?;
            for i in 0..batch.num_rows() {
                let key: Vec<String> = fmts.iter().map(|f| f.value(i).to_string()).collect();
                if !seen.insert(key.clone()) {
                    *dupes += 1;
                    if examples.len() < EXAMPLES {
                        examples.push((row0 + i as u64 + 1, key.join(", ")));
                    }
                }
            }
        }
        row0 += batch.num_rows() as u64;
    }
    let rows = row0;

    if let Some(b) = &suite.rows {
        let ok = b.min.is_none_or(|m| rows as f64 >= m) && b.max.is_none_or(|m| rows as f64 <= m);
        results.insert(
            0,
            CheckResult {
                name: format!("rows {b}"),
                column: None,
                passed: ok,
                failing_rows: 0,
                observed: format!("{rows} rows"),
                examples: vec![],
            },
        );
    }
    for (set, _, dupes, examples) in uniques {
        results.push(CheckResult {
            name: format!("unique ({})", set.join(", ")),
            column: (set.len() == 1).then(|| set[0].clone()),
            passed: dupes == 0,
            failing_rows: dupes,
            observed: if dupes == 0 {
                "all unique".into()
            } else {
                format!("{dupes} duplicate rows")
            },
            examples,
        });
    }
    for r in rules {
        let col_nulls = nulls.get(&r.column).copied().unwrap_or(0);
        let cs = schema.column(&r.column).expect("checked above");
        let (passed, observed) = match &r.rule {
            Rule::Type(t) => (cs.ty.satisfies(*t), format!("type {}", cs.ty)),
            Rule::MaxNullFraction(m) => {
                let frac = if rows == 0 {
                    0.0
                } else {
                    col_nulls as f64 / rows as f64
                };
                (frac <= *m, format!("null fraction {frac:.4}"))
            }
            Rule::Freshness(secs) => match r.max_seen {
                Some(newest_us) => {
                    let age = now.timestamp() - newest_us / 1_000_000;
                    (
                        age <= *secs,
                        format!("newest value is {} old", human_age(age)),
                    )
                }
                None => (false, "no values".into()),
            },
            _ => (
                r.failing == 0,
                if r.failing == 0 {
                    "ok".into()
                } else {
                    format!("{} failing rows", r.failing)
                },
            ),
        };
        results.push(CheckResult {
            name: r.name,
            column: Some(r.column),
            passed,
            failing_rows: r.failing,
            observed,
            examples: r.examples,
        });
    }
    let passed = results.iter().all(|r| r.passed);
    Ok(CheckReport {
        passed,
        rows,
        results,
    })
}

const FORMAT: FormatOptions<'static> = FormatOptions::new().with_null("");

fn column(batch: &RecordBatch, name: &str) -> Result<ArrayRef> {
    batch.column_by_name(name).cloned().ok_or_else(|| {
        DataError::Columnar(format!("column `{name}` missing from the columnar copy"))
    })
}

fn eval(r: &mut ColumnRule, col: &ArrayRef, row0: u64) -> Result<()> {
    let fail = |r: &mut ColumnRule, i: usize, v: String| {
        r.failing += 1;
        if r.examples.len() < EXAMPLES {
            r.examples.push((row0 + i as u64 + 1, v));
        }
    };
    match &r.rule {
        Rule::NotNull => {
            if col.null_count() > 0 {
                for i in (0..col.len()).filter(|&i| col.is_null(i)) {
                    fail(r, i, "null".into());
                }
            }
        }
        Rule::Range(b) => {
            let (lo, hi) = (
                b.min.unwrap_or(f64::NEG_INFINITY),
                b.max.unwrap_or(f64::INFINITY),
            );
            match col.data_type() {
                DataType::Int64 => {
                    for (i, v) in col.as_primitive::<Int64Type>().iter().enumerate() {
                        if let Some(v) = v
                            && !((v as f64) >= lo && (v as f64) <= hi)
                        {
                            fail(r, i, v.to_string());
                        }
                    }
                }
                _ => {
                    for (i, v) in col.as_primitive::<Float64Type>().iter().enumerate() {
                        if let Some(v) = v
                            && !(v >= lo && v <= hi)
                        {
                            fail(r, i, v.to_string());
                        }
                    }
                }
            }
        }
        Rule::Allowed(_) | Rule::Regex(_) => {
            let f = ArrayFormatter::try_new(col.as_ref(), &FORMAT)?;
            for i in 0..col.len() {
                if col.is_null(i) {
                    continue;
                }
                let v = f.value(i).to_string();
                let ok = match &r.rule {
                    Rule::Allowed(set) => set.contains(&v),
                    Rule::Regex(re) => re.is_match(&v),
                    _ => unreachable!(),
                };
                if !ok {
                    fail(r, i, v);
                }
            }
        }
        Rule::Freshness(_) => {
            let newest = match col.data_type() {
                DataType::Date32 => col
                    .as_primitive::<Date32Type>()
                    .iter()
                    .flatten()
                    .max()
                    .map(|d| i64::from(d) * 86_400_000_000),
                _ => col
                    .as_primitive::<TimestampMicrosecondType>()
                    .iter()
                    .flatten()
                    .max(),
            };
            r.max_seen = r.max_seen.max(newest);
        }
        Rule::MaxNullFraction(_) | Rule::Type(_) => {}
    }
    Ok(())
}

fn human_age(secs: i64) -> String {
    match secs {
        s if s < 120 => format!("{s}s"),
        s if s < 7200 => format!("{}m", s / 60),
        s if s < 172_800 => format!("{}h", s / 3600),
        s => format!("{}d", s / 86_400),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_with_units() {
        assert_eq!(parse_duration("7d"), Ok(604_800));
        assert_eq!(parse_duration("90s"), Ok(90));
        assert!(parse_duration("7 days").is_err());
        assert!(parse_duration("d").is_err());
    }
}
