//! Per-column profiles computed in one streaming pass, in bounded memory:
//! counts, nulls, a distinct estimate (HyperLogLog; exact for strings with at
//! most 10,000 distinct values), min, max, mean and standard deviation
//! (Welford), quantiles and a 20-bin histogram (exact up to 65,536 values,
//! from a seeded uniform sample above), and the top values of text and
//! boolean columns.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use arrow_array::cast::AsArray;
use arrow_array::types::{Date32Type, Float64Type, Int64Type, TimestampMicrosecondType};
use arrow_array::{Array, ArrayRef, RecordBatch};
use arrow_schema::{DataType, SchemaRef};
use kiln_core::ColumnType;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::schema::{ColumnSchema, TableSchema, logical_type};
use crate::sketch::{Hll, Reservoir, hash_bytes, mix64};

/// Values kept for exact quantiles before sampling starts.
pub const SAMPLE_SIZE: usize = 65_536;
/// Distinct text values counted exactly before counting stops.
pub const TOP_CAP: usize = 10_000;
/// A text column with at most this many distinct values (and at most one
/// distinct value per two rows) is categorical.
pub const CATEGORICAL_MAX_DISTINCT: u64 = 1_000;
const QUANTILES: [f64; 7] = [0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99];
const BINS: usize = 20;
const TOP_SHOWN: usize = 10;

/// The profile of a whole table.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Profile {
    pub rows: u64,
    pub columns: Vec<ColumnProfile>,
}

/// The statistics of one column.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ColumnProfile {
    pub name: String,
    #[serde(rename = "type")]
    pub ty: ColumnType,
    /// Non-null values.
    pub count: u64,
    pub nulls: u64,
    /// Distinct non-null values (an estimate past 10,000).
    pub distinct: u64,
    /// Smallest and largest value, as shown (numbers, or ISO dates and times).
    pub min: Option<serde_json::Value>,
    pub max: Option<serde_json::Value>,
    pub mean: Option<f64>,
    pub std: Option<f64>,
    /// `(q, value)` for q in 1, 5, 25, 50, 75, 95, 99 %; dates are days and
    /// timestamps microseconds since 1970.
    #[serde(default)]
    pub quantiles: Vec<(f64, f64)>,
    pub histogram: Option<Histogram>,
    /// Most frequent values of text and boolean columns, most frequent first.
    #[serde(default)]
    pub top: Vec<(String, u64)>,
    /// Whether quantiles and histogram come from a sample.
    #[serde(default)]
    pub sampled: bool,
}

/// Equal-width bins: `counts[i]` values fall in `[edges[i], edges[i+1])`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Histogram {
    pub edges: Vec<f64>,
    pub counts: Vec<u64>,
}

impl Profile {
    pub fn column(&self, name: &str) -> Option<&ColumnProfile> {
        self.columns.iter().find(|c| c.name == name)
    }

    /// The table schema this profile implies (with categoricals detected).
    pub fn schema(&self) -> TableSchema {
        TableSchema {
            columns: self
                .columns
                .iter()
                .map(|c| ColumnSchema {
                    name: c.name.clone(),
                    ty: c.ty,
                    nullable: c.nulls > 0,
                })
                .collect(),
        }
    }
}

/// A hasher for keys that are already well-mixed 64-bit hashes.
#[derive(Default)]
struct Prehashed(u64);

impl Hasher for Prehashed {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, _: &[u8]) {
        unreachable!("only u64 keys are hashed")
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

/// Accumulates a [`Profile`] batch by batch.
pub struct Profiler {
    rows: u64,
    columns: Vec<ColumnAcc>,
}

struct ColumnAcc {
    name: String,
    ty: ColumnType,
    nulls: u64,
    count: u64,
    hll: Hll,
    kind: Kind,
}

enum Kind {
    Numeric {
        min: f64,
        max: f64,
        imin: i64,
        imax: i64,
        mean: f64,
        m2: f64,
        sample: Reservoir,
    },
    Boolean {
        trues: u64,
        falses: u64,
    },
    Text {
        /// Counts by the value's 64-bit hash, which HyperLogLog needs anyway.
        top: HashMap<u64, (Box<str>, u64), BuildHasherDefault<Prehashed>>,
        truncated: bool,
    },
}

impl Profiler {
    pub fn new(schema: &SchemaRef) -> Self {
        let columns = schema
            .fields()
            .iter()
            .enumerate()
            .map(|(i, f)| {
                let ty = logical_type(f.data_type()).unwrap_or(ColumnType::String);
                let kind = match ty {
                    ColumnType::Boolean => Kind::Boolean {
                        trues: 0,
                        falses: 0,
                    },
                    ColumnType::String | ColumnType::Categorical => Kind::Text {
                        top: HashMap::default(),
                        truncated: false,
                    },
                    _ => Kind::Numeric {
                        min: f64::INFINITY,
                        max: f64::NEG_INFINITY,
                        imin: i64::MAX,
                        imax: i64::MIN,
                        mean: 0.0,
                        m2: 0.0,
                        sample: Reservoir::new(SAMPLE_SIZE, 0x6b69_6c6e ^ i as u64),
                    },
                };
                ColumnAcc {
                    name: f.name().clone(),
                    ty,
                    nulls: 0,
                    count: 0,
                    hll: Hll::default(),
                    kind,
                }
            })
            .collect();
        Self { rows: 0, columns }
    }

    /// Adds a batch; columns are profiled in parallel.
    pub fn update(&mut self, batch: &RecordBatch) {
        self.rows += batch.num_rows() as u64;
        self.columns
            .par_iter_mut()
            .zip(batch.columns().par_iter())
            .for_each(|(acc, col)| acc.update(col));
    }

    pub fn finish(self) -> Profile {
        Profile {
            rows: self.rows,
            columns: self.columns.into_iter().map(ColumnAcc::finish).collect(),
        }
    }
}

impl ColumnAcc {
    fn update(&mut self, col: &ArrayRef) {
        self.nulls += col.null_count() as u64;
        let hll = &mut self.hll;
        let mut count = 0u64;
        match (&mut self.kind, col.data_type()) {
            (
                Kind::Numeric { .. },
                DataType::Int64 | DataType::Date32 | DataType::Timestamp(..),
            ) => {
                let mut ints: Vec<i64> = match col.data_type() {
                    DataType::Int64 => col.as_primitive::<Int64Type>().iter().flatten().collect(),
                    DataType::Date32 => col
                        .as_primitive::<Date32Type>()
                        .iter()
                        .flatten()
                        .map(i64::from)
                        .collect(),
                    _ => col
                        .as_primitive::<TimestampMicrosecondType>()
                        .iter()
                        .flatten()
                        .collect(),
                };
                for &v in &ints {
                    hll.insert_hash(mix64(v as u64));
                }
                if let (Kind::Numeric { imin, imax, .. }, Some(lo), Some(hi)) =
                    (&mut self.kind, ints.iter().min(), ints.iter().max())
                {
                    *imin = (*imin).min(*lo);
                    *imax = (*imax).max(*hi);
                }
                let floats: Vec<f64> = ints.drain(..).map(|v| v as f64).collect();
                count = floats.len() as u64;
                self.kind.push_floats(&floats);
            }
            (Kind::Numeric { .. }, _) => {
                let floats: Vec<f64> = col
                    .as_primitive::<Float64Type>()
                    .iter()
                    .flatten()
                    .filter(|v| !v.is_nan())
                    .collect();
                let non_null = (col.len() - col.null_count()) as u64;
                self.nulls += non_null - floats.len() as u64;
                for &v in &floats {
                    hll.insert_hash(mix64(v.to_bits()));
                }
                count = floats.len() as u64;
                self.kind.push_floats(&floats);
            }
            (Kind::Boolean { trues, falses }, _) => {
                for v in col.as_boolean().iter().flatten() {
                    if v {
                        *trues += 1
                    } else {
                        *falses += 1
                    }
                    count += 1;
                }
            }
            (Kind::Text { top, truncated }, _) => {
                for v in col.as_string::<i32>().iter().flatten() {
                    let h = hash_bytes(v.as_bytes());
                    hll.insert_hash(h);
                    if let Some((_, n)) = top.get_mut(&h) {
                        *n += 1;
                    } else if top.len() < TOP_CAP {
                        top.insert(h, (v.into(), 1));
                    } else {
                        *truncated = true;
                    }
                    count += 1;
                }
            }
        }
        self.count += count;
    }

    fn finish(self) -> ColumnProfile {
        let mut p = ColumnProfile {
            name: self.name,
            ty: self.ty,
            count: self.count,
            nulls: self.nulls,
            distinct: self.hll.estimate().min(self.count),
            min: None,
            max: None,
            mean: None,
            std: None,
            quantiles: Vec::new(),
            histogram: None,
            top: Vec::new(),
            sampled: false,
        };
        match self.kind {
            Kind::Numeric {
                min,
                max,
                imin,
                imax,
                mean,
                m2,
                mut sample,
            } if self.count > 0 => {
                let shown = |f: f64, i: i64| display_value(self.ty, f, i);
                p.min = Some(shown(min, imin));
                p.max = Some(shown(max, imax));
                if self.ty.is_numeric() {
                    p.mean = Some(mean);
                    p.std = Some(if self.count > 1 {
                        (m2 / (self.count - 1) as f64).sqrt()
                    } else {
                        0.0
                    });
                }
                p.sampled = !sample.is_exact();
                sample.values.sort_unstable_by(f64::total_cmp);
                let s = &sample.values;
                p.quantiles = QUANTILES
                    .iter()
                    .map(|&q| {
                        (
                            q,
                            s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)],
                        )
                    })
                    .collect();
                p.histogram = Some(histogram(
                    s,
                    min,
                    max,
                    self.ty != ColumnType::Float,
                    self.count,
                ));
            }
            Kind::Numeric { .. } => {}
            Kind::Boolean { trues, falses } => {
                p.distinct = u64::from(trues > 0) + u64::from(falses > 0);
                p.top = [("true".to_string(), trues), ("false".to_string(), falses)]
                    .into_iter()
                    .filter(|(_, n)| *n > 0)
                    .collect();
                p.top.sort_by_key(|t| std::cmp::Reverse(t.1));
            }
            Kind::Text { top, truncated } => {
                if !truncated {
                    p.distinct = top.len() as u64;
                }
                let mut all: Vec<(String, u64)> = top
                    .into_values()
                    .map(|(k, v)| (k.into_string(), v))
                    .collect();
                all.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                if let (Some(first), Some(last)) = (
                    all.iter().map(|a| &a.0).min(),
                    all.iter().map(|a| &a.0).max(),
                ) && !truncated
                {
                    p.min = Some(first.clone().into());
                    p.max = Some(last.clone().into());
                }
                all.truncate(TOP_SHOWN);
                p.top = all;
                if p.distinct <= CATEGORICAL_MAX_DISTINCT
                    && p.distinct * 2 <= p.count
                    && p.count > 0
                {
                    p.ty = ColumnType::Categorical;
                }
            }
        }
        p
    }
}

impl Kind {
    /// Adds a batch of values: min, max, and mean and M2 merged with Chan's
    /// formula (batch statistics in two vectorisable passes, no division per
    /// value), then the reservoir.
    fn push_floats(&mut self, values: &[f64]) {
        let Kind::Numeric {
            min,
            max,
            mean,
            m2,
            sample,
            ..
        } = self
        else {
            return;
        };
        if values.is_empty() {
            return;
        }
        let n_a = sample.seen() as f64;
        let n_b = values.len() as f64;
        let (lo, hi, sum) = values.iter().fold(
            (f64::INFINITY, f64::NEG_INFINITY, 0.0),
            |(lo, hi, s), &v| (lo.min(v), hi.max(v), s + v),
        );
        let mean_b = sum / n_b;
        let m2_b: f64 = values.iter().map(|&v| (v - mean_b) * (v - mean_b)).sum();
        let n = n_a + n_b;
        let delta = mean_b - *mean;
        *mean += delta * n_b / n;
        *m2 += m2_b + delta * delta * n_a * n_b / n;
        *min = min.min(lo);
        *max = max.max(hi);
        sample.extend(values);
    }
}

fn histogram(sorted: &[f64], min: f64, max: f64, integral: bool, total: u64) -> Histogram {
    let (lo, hi, bins) = if integral && max - min < BINS as f64 {
        (min - 0.5, max + 0.5, (max - min) as usize + 1)
    } else if max > min {
        (min, max, BINS)
    } else {
        (min - 0.5, max + 0.5, 1)
    };
    let width = (hi - lo) / bins as f64;
    let mut counts = vec![0u64; bins];
    for &v in sorted {
        let i = (((v - lo) / width) as usize).min(bins - 1);
        counts[i] += 1;
    }
    if sorted.len() as u64 != total && !sorted.is_empty() {
        // Scale a sample's counts up to the column's count.
        let scale = total as f64 / sorted.len() as f64;
        for c in &mut counts {
            *c = (*c as f64 * scale).round() as u64;
        }
    }
    Histogram {
        edges: (0..=bins).map(|i| lo + width * i as f64).collect(),
        counts,
    }
}

/// A value as profiles show it: integers exactly, dates and times as ISO text.
pub fn display_value(ty: ColumnType, f: f64, i: i64) -> serde_json::Value {
    match ty {
        ColumnType::Integer => i.into(),
        ColumnType::Date => format_date(i).into(),
        ColumnType::Timestamp => format_timestamp(i).into(),
        _ => serde_json::Number::from_f64(f).map_or(serde_json::Value::Null, Into::into),
    }
}

/// Days since 1970 as `YYYY-MM-DD`.
pub fn format_date(days: i64) -> String {
    chrono::DateTime::from_timestamp(days * 86_400, 0)
        .map_or_else(|| days.to_string(), |d| d.format("%Y-%m-%d").to_string())
}

/// Microseconds since 1970 as `YYYY-MM-DD HH:MM:SS`.
pub fn format_timestamp(us: i64) -> String {
    chrono::DateTime::from_timestamp_micros(us).map_or_else(
        || us.to_string(),
        |d| d.format("%Y-%m-%d %H:%M:%S").to_string(),
    )
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{Float64Array, Int64Array, StringArray};
    use arrow_schema::{Field, Schema};

    use super::*;

    fn profile(cols: Vec<(&str, ArrayRef)>) -> Profile {
        let schema = Arc::new(Schema::new(
            cols.iter()
                .map(|(n, a)| Field::new(*n, a.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let batch =
            RecordBatch::try_new(schema.clone(), cols.into_iter().map(|c| c.1).collect()).unwrap();
        let mut p = Profiler::new(&schema);
        p.update(&batch);
        p.finish()
    }

    #[test]
    fn numeric_column_statistics_example() {
        let p = profile(vec![(
            "x",
            Arc::new(Int64Array::from(vec![
                Some(1),
                Some(2),
                None,
                Some(3),
                Some(4),
            ])),
        )]);
        let c = &p.columns[0];
        assert_eq!((c.count, c.nulls, c.distinct), (4, 1, 4));
        assert_eq!(c.min, Some(1.into()));
        assert_eq!(c.max, Some(4.into()));
        assert_eq!(c.mean, Some(2.5));
        assert!((c.std.unwrap() - 1.290_994).abs() < 1e-5);
        assert_eq!(c.histogram.as_ref().unwrap().counts, vec![1, 1, 1, 1]);
        assert!(!c.sampled);
    }

    #[test]
    fn few_distinct_strings_become_categorical_and_unique_ones_stay_strings() {
        let cats: Vec<&str> = (0..100)
            .map(|i| if i % 3 == 0 { "pos" } else { "neg" })
            .collect();
        let ids: Vec<String> = (0..100).map(|i| format!("id{i}")).collect();
        let p = profile(vec![
            ("label", Arc::new(StringArray::from(cats))),
            ("id", Arc::new(StringArray::from(ids))),
        ]);
        assert_eq!(p.columns[0].ty, ColumnType::Categorical);
        assert_eq!(p.columns[0].top[0], ("neg".to_string(), 66));
        assert_eq!(p.columns[1].ty, ColumnType::String);
        assert_eq!(p.columns[1].distinct, 100);
    }

    #[test]
    fn nan_counts_as_missing() {
        let p = profile(vec![(
            "f",
            Arc::new(Float64Array::from(vec![1.0, f64::NAN, 3.0])),
        )]);
        assert_eq!((p.columns[0].count, p.columns[0].nulls), (2, 1));
        assert_eq!(p.columns[0].mean, Some(2.0));
    }
}
