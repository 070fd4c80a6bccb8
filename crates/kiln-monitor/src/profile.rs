//! Column values and their profiles.
//!
//! [`Values`] gathers one column from Arrow arrays, batch by batch: the
//! non-missing numbers, or the count of each category, and the number of
//! missing values (null, and NaN for floats). A [`ColumnProfile`] is what
//! drift is measured against: for numbers the sorted values themselves
//! (exact, what `kiln monitor drift` compares two tables with) or, in a stored
//! reference profile, [`POINTS`] evenly spaced quantiles; for categories the
//! count of each (the [`MAX_CATEGORIES`] most frequent, the rest summed).

use std::collections::HashMap;

use arrow_array::{Array, Float64Array, StringArray};
use arrow_schema::DataType;
use serde::{Deserialize, Serialize};

/// Quantile points a stored numeric profile keeps: each stands for 1/1,000
/// of the rows, so a CDF read from them is off by at most 0.001.
pub const POINTS: usize = 1000;
/// Categories a stored profile keeps by name; rarer ones are summed.
pub const MAX_CATEGORIES: usize = 1000;

/// How a column is compared: numbers by their distribution, everything
/// else text-like by category counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// Integers, floats and decimals.
    Numeric,
    /// Text, categorical (dictionary) and boolean columns.
    Categorical,
}

impl Kind {
    /// How a column of this Arrow type is compared; `None` for types drift
    /// is not measured on (dates, times, binary, nested).
    pub fn of(dt: &DataType) -> Option<Kind> {
        use DataType::*;
        match dt {
            Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float16 | Float32
            | Float64 | Decimal32(..) | Decimal64(..) | Decimal128(..) | Decimal256(..) => {
                Some(Kind::Numeric)
            }
            Utf8 | LargeUtf8 | Utf8View | Boolean => Some(Kind::Categorical),
            Dictionary(_, v) => {
                matches!(v.as_ref(), Utf8 | LargeUtf8 | Utf8View).then_some(Kind::Categorical)
            }
            _ => None,
        }
    }

    /// The word used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Numeric => "numeric",
            Kind::Categorical => "categorical",
        }
    }
}

/// One column's values, gathered from Arrow arrays.
#[derive(Clone, Debug)]
pub enum Values {
    /// The non-missing numbers, in arrival order.
    Numeric {
        /// The values; NaN, ±inf and null are counted in `nulls` instead.
        values: Vec<f64>,
        /// Missing values.
        nulls: u64,
    },
    /// How often each category occurs.
    Categorical {
        /// Count per category.
        counts: HashMap<String, u64>,
        /// Missing values.
        nulls: u64,
    },
}

impl Values {
    /// No values yet, of `kind`.
    pub fn new(kind: Kind) -> Values {
        match kind {
            Kind::Numeric => Values::Numeric {
                values: Vec::new(),
                nulls: 0,
            },
            Kind::Categorical => Values::Categorical {
                counts: HashMap::new(),
                nulls: 0,
            },
        }
    }

    /// Adds the values of `array` (any type [`Kind::of`] accepts as this
    /// kind).
    pub fn push(&mut self, array: &dyn Array) -> Result<(), String> {
        match self {
            Values::Numeric { values, nulls } => {
                let cast;
                let floats = match array.as_any().downcast_ref::<Float64Array>() {
                    Some(f) => f,
                    None => {
                        cast = arrow_cast::cast(array, &DataType::Float64)
                            .map_err(|e| e.to_string())?;
                        cast.as_any()
                            .downcast_ref::<Float64Array>()
                            .expect("cast to Float64 gives a Float64Array")
                    }
                };
                values.reserve(floats.len());
                // Infinities count as missing too: no distance or sketch
                // means anything with them.
                if floats.null_count() == 0 {
                    for &v in floats.values() {
                        if v.is_finite() {
                            values.push(v);
                        } else {
                            *nulls += 1;
                        }
                    }
                } else {
                    for v in floats.iter() {
                        match v {
                            Some(v) if v.is_finite() => values.push(v),
                            _ => *nulls += 1,
                        }
                    }
                }
            }
            Values::Categorical { counts, nulls } => {
                let cast;
                let strings = match array.as_any().downcast_ref::<StringArray>() {
                    Some(s) => s,
                    None => {
                        cast =
                            arrow_cast::cast(array, &DataType::Utf8).map_err(|e| e.to_string())?;
                        cast.as_any()
                            .downcast_ref::<StringArray>()
                            .expect("cast to Utf8 gives a StringArray")
                    }
                };
                for v in strings.iter() {
                    match v {
                        None => *nulls += 1,
                        Some(s) => match counts.get_mut(s) {
                            Some(c) => *c += 1,
                            None => {
                                counts.insert(s.to_string(), 1);
                            }
                        },
                    }
                }
            }
        }
        Ok(())
    }

    /// Which kind these values are.
    pub fn kind(&self) -> Kind {
        match self {
            Values::Numeric { .. } => Kind::Numeric,
            Values::Categorical { .. } => Kind::Categorical,
        }
    }
}

/// What drift is measured against for one column.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ColumnProfile {
    /// The column's name.
    pub name: String,
    /// Rows, missing ones included.
    pub rows: u64,
    /// Missing values (null, or NaN in a float column).
    pub nulls: u64,
    /// The distribution of the non-missing values.
    #[serde(flatten)]
    pub stats: ColumnStats,
}

/// The distribution part of a [`ColumnProfile`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ColumnStats {
    /// Numbers.
    Numeric {
        /// Mean of the values (0 when there are none).
        mean: f64,
        /// Population standard deviation.
        std: f64,
        /// Smallest value.
        min: f64,
        /// Largest value.
        max: f64,
        /// The sorted values, or evenly spaced quantiles of them (the value at
        /// rank `(i + ½)·n/len` for each point `i`), each point standing for
        /// the same share of the rows.
        points: Vec<f64>,
    },
    /// Categories.
    Categorical {
        /// Category and count, most frequent first (ties by name).
        categories: Vec<(String, u64)>,
        /// Rows in categories not listed (beyond the most frequent kept).
        other: u64,
    },
}

impl ColumnProfile {
    /// Profiles `values`. `limit` thins numbers to that many quantile points
    /// and keeps that many categories by name (what a stored profile does);
    /// `None` keeps everything (an exact comparison).
    pub fn from_values(name: &str, values: Values, limit: Option<usize>) -> ColumnProfile {
        match values {
            Values::Numeric { mut values, nulls } => {
                // A radix sort (radsort): faster than a comparison sort on
                // a million floats (BENCHMARKS.md, drift), and sorting is
                // most of the cost of an exact comparison.
                radsort::sort(&mut values);
                let count = values.len();
                let (mean, std) = mean_std(&values);
                let (min, max) = (
                    values.first().copied().unwrap_or(0.0),
                    values.last().copied().unwrap_or(0.0),
                );
                let points = match limit {
                    Some(k) if count > k && k > 0 => thin(&values, k),
                    _ => values,
                };
                ColumnProfile {
                    name: name.to_string(),
                    rows: count as u64 + nulls,
                    nulls,
                    stats: ColumnStats::Numeric {
                        mean,
                        std,
                        min,
                        max,
                        points,
                    },
                }
            }
            Values::Categorical { counts, nulls } => {
                let total: u64 = counts.values().sum();
                let mut categories: Vec<(String, u64)> = counts.into_iter().collect();
                categories.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                let mut other = 0;
                if let Some(k) = limit
                    && categories.len() > k
                {
                    other = categories[k..].iter().map(|c| c.1).sum();
                    categories.truncate(k);
                }
                debug_assert_eq!(categories.iter().map(|c| c.1).sum::<u64>() + other, total);
                ColumnProfile {
                    name: name.to_string(),
                    rows: total + nulls,
                    nulls,
                    stats: ColumnStats::Categorical { categories, other },
                }
            }
        }
    }

    /// Non-missing values.
    pub fn count(&self) -> u64 {
        self.rows - self.nulls
    }

    /// Numeric or categorical.
    pub fn kind(&self) -> Kind {
        match self.stats {
            ColumnStats::Numeric { .. } => Kind::Numeric,
            ColumnStats::Categorical { .. } => Kind::Categorical,
        }
    }

    /// Share of rows missing (0 for an empty column).
    pub fn null_rate(&self) -> f64 {
        if self.rows == 0 {
            0.0
        } else {
            self.nulls as f64 / self.rows as f64
        }
    }
}

/// `k` evenly spaced quantiles of sorted `values`: the value at rank
/// `(i + ½)·n/k`, so each point stands for `1/k` of the values.
fn thin(values: &[f64], k: usize) -> Vec<f64> {
    let n = values.len();
    (0..k)
        .map(|i| values[(((i as f64 + 0.5) * n as f64 / k as f64) as usize).min(n - 1)])
        .collect()
}

/// Mean and population standard deviation of sorted finite values, in two
/// passes, scaled by the largest magnitude when squares could overflow, so
/// values near `f64::MAX` do not give infinity (which JSON could not store).
fn mean_std(values: &[f64]) -> (f64, f64) {
    if values.is_empty() {
        return (0.0, 0.0);
    }
    let n = values.len() as f64;
    // Sorted values: the largest magnitude is at one end.
    let scale = values[0].abs().max(values[values.len() - 1].abs());
    if scale == 0.0 {
        return (0.0, 0.0);
    }
    // Scale only when squares could overflow; multiplying keeps it cheap.
    let (k, inv) = if scale > 1e150 {
        (scale, 1.0 / scale)
    } else {
        (1.0, 1.0)
    };
    let mean = values.iter().map(|v| v * inv).sum::<f64>() / n;
    let var = values
        .iter()
        .map(|v| (v * inv - mean) * (v * inv - mean))
        .sum::<f64>()
        / n;
    (mean * k, var.sqrt() * k)
}

/// The reference profile of a model version: every input column's profile
/// and the prediction's, taken from the training rows, so drift never needs
/// the training data again.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Profile {
    /// Format of this document (1).
    pub format: u32,
    /// Rows profiled.
    pub rows: u64,
    /// Where the rows came from (a dataset version, a file).
    pub source: String,
    /// One profile per input column, in the model's input order.
    pub columns: Vec<ColumnProfile>,
    /// The distribution of the model's predictions on those rows (the
    /// predicted class, or the predicted value), if it was scored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prediction: Option<ColumnProfile>,
    /// An isolation forest over the numeric inputs, for outlier rows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outliers: Option<crate::iforest::IsolationForest>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{BooleanArray, Int64Array};

    #[test]
    fn nulls_and_nan_are_counted_missing_not_profiled() {
        let mut v = Values::new(Kind::Numeric);
        v.push(&Float64Array::from(vec![
            Some(1.0),
            None,
            Some(f64::NAN),
            Some(3.0),
        ]))
        .unwrap();
        v.push(&Int64Array::from(vec![2])).unwrap();
        let p = ColumnProfile::from_values("x", v, None);
        assert_eq!((p.rows, p.nulls, p.count()), (5, 2, 3));
        match p.stats {
            ColumnStats::Numeric {
                points,
                mean,
                min,
                max,
                ..
            } => {
                assert_eq!(points, vec![1.0, 2.0, 3.0]);
                assert_eq!((mean, min, max), (2.0, 1.0, 3.0));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn huge_values_keep_a_finite_mean_and_std_and_infinities_are_missing() {
        let mut v = Values::new(Kind::Numeric);
        v.push(&Float64Array::from(vec![
            1e300,
            -1e300,
            1e308,
            f64::INFINITY,
        ]))
        .unwrap();
        let p = ColumnProfile::from_values("x", v, None);
        assert_eq!(p.nulls, 1);
        let ColumnStats::Numeric { mean, std, .. } = p.stats else {
            panic!()
        };
        assert!(mean.is_finite() && std.is_finite(), "{mean} {std}");
        let json = serde_json::to_string(&p).unwrap();
        assert_eq!(serde_json::from_str::<ColumnProfile>(&json).unwrap(), p);
    }

    #[test]
    fn thinned_profile_keeps_evenly_spaced_quantiles() {
        let mut v = Values::new(Kind::Numeric);
        v.push(&Float64Array::from(
            (0..10_000).map(f64::from).collect::<Vec<_>>(),
        ))
        .unwrap();
        let p = ColumnProfile::from_values("x", v, Some(100));
        let ColumnStats::Numeric { points, .. } = &p.stats else {
            panic!()
        };
        assert_eq!(points.len(), 100);
        assert_eq!(points[0], 50.0);
        assert_eq!(points[99], 9950.0);
        assert_eq!(p.count(), 10_000);
    }

    #[test]
    fn categories_are_counted_most_frequent_first_and_rare_ones_summed() {
        let mut v = Values::new(Kind::Categorical);
        v.push(&StringArray::from(vec![
            Some("a"),
            Some("b"),
            Some("b"),
            None,
            Some("c"),
            Some("b"),
            Some("a"),
        ]))
        .unwrap();
        v.push(&BooleanArray::from(vec![true])).unwrap();
        let p = ColumnProfile::from_values("c", v, Some(2));
        assert_eq!((p.rows, p.nulls), (8, 1));
        assert_eq!(
            p.stats,
            ColumnStats::Categorical {
                categories: vec![("b".into(), 3), ("a".into(), 2)],
                other: 2,
            }
        );
    }

    #[test]
    fn profile_round_trips_through_json() {
        let mut v = Values::new(Kind::Numeric);
        v.push(&Float64Array::from(vec![0.5, 1.5])).unwrap();
        let p = Profile {
            format: 1,
            rows: 2,
            source: "t.csv".into(),
            columns: vec![ColumnProfile::from_values("x", v, Some(POINTS))],
            prediction: None,
            outliers: None,
        };
        let json = serde_json::to_string(&p).unwrap();
        assert!(json.contains(r#""kind":"numeric""#), "{json}");
        assert_eq!(serde_json::from_str::<Profile>(&json).unwrap(), p);
    }
}
