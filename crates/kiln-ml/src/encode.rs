//! [`DenseEncoder`]: features for linear models. Numbers are imputed with
//! the training median (plus a missing-value indicator when training had
//! missing values) and standardised; categories are one-hot encoded (the
//! most frequent ones, the rest and missing values sharing one column).
//! Learned on training rows only and saved in the model.

use serde::{Deserialize, Serialize};

use crate::frame::{Column, Features};

/// Most one-hot columns per categorical feature.
pub const MAX_ONE_HOT: usize = 32;

/// How one feature becomes dense columns.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Encoded {
    Numeric {
        median: f64,
        mean: f64,
        scale: f64,
        missing_indicator: bool,
    },
    OneHot {
        /// Codes with a column of their own; every other code and missing
        /// values go to one extra column.
        codes: Vec<u32>,
    },
}

impl Encoded {
    fn width(&self) -> usize {
        match self {
            Encoded::Numeric {
                missing_indicator, ..
            } => 1 + usize::from(*missing_indicator),
            Encoded::OneHot { codes } => codes.len() + 1,
        }
    }
}

/// Features → a row-major dense matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseEncoder {
    pub features: Vec<Encoded>,
}

impl DenseEncoder {
    /// Learns the encoding from training features.
    pub fn fit(x: &Features) -> DenseEncoder {
        let features = x
            .columns
            .iter()
            .map(|c| match c {
                Column::Numeric(v) => {
                    let mut present: Vec<f64> = v.iter().copied().filter(|x| !x.is_nan()).collect();
                    let missing = present.len() < v.len();
                    if present.is_empty() {
                        present.push(0.0);
                    }
                    present.sort_unstable_by(f64::total_cmp);
                    let median = present[present.len() / 2];
                    // Mean and scale of the imputed column, as it is encoded.
                    let n = v.len().max(1) as f64;
                    let mean = v
                        .iter()
                        .map(|&x| if x.is_nan() { median } else { x })
                        .sum::<f64>()
                        / n;
                    let var = v
                        .iter()
                        .map(|&x| (if x.is_nan() { median } else { x } - mean).powi(2))
                        .sum::<f64>()
                        / n;
                    let scale = if var > 0.0 { var.sqrt() } else { 1.0 };
                    Encoded::Numeric {
                        median,
                        mean,
                        scale,
                        missing_indicator: missing,
                    }
                }
                Column::Categorical {
                    codes,
                    n_categories,
                } => {
                    let mut counts = vec![0usize; *n_categories as usize];
                    for &c in codes {
                        if let Some(n) = counts.get_mut(c as usize) {
                            *n += 1;
                        }
                    }
                    let mut order: Vec<u32> = (0..*n_categories)
                        .filter(|&c| counts[c as usize] > 0)
                        .collect();
                    order.sort_by(|&a, &b| {
                        counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b))
                    });
                    order.truncate(MAX_ONE_HOT);
                    order.sort_unstable();
                    Encoded::OneHot { codes: order }
                }
            })
            .collect();
        DenseEncoder { features }
    }

    /// Columns of the encoded matrix.
    pub fn width(&self) -> usize {
        self.features.iter().map(Encoded::width).sum()
    }

    /// Encodes `x` (the training features' layout) row-major.
    pub fn transform(&self, x: &Features) -> Vec<f64> {
        let n = x.n_rows();
        let w = self.width();
        let mut out = vec![0.0; n * w];
        let mut offset = 0;
        for (enc, col) in self.features.iter().zip(&x.columns) {
            match (enc, col) {
                (
                    Encoded::Numeric {
                        median,
                        mean,
                        scale,
                        missing_indicator,
                    },
                    Column::Numeric(v),
                ) => {
                    for (i, &x) in v.iter().enumerate() {
                        let row = &mut out[i * w + offset..];
                        let missing = x.is_nan();
                        row[0] = (if missing { *median } else { x } - mean) / scale;
                        if *missing_indicator {
                            row[1] = f64::from(u8::from(missing));
                        }
                    }
                }
                (Encoded::OneHot { codes }, Column::Categorical { codes: values, .. }) => {
                    for (i, c) in values.iter().enumerate() {
                        let k = codes.binary_search(c).unwrap_or(codes.len());
                        out[i * w + offset + k] = 1.0;
                    }
                }
                // Kinds are fixed by the preprocessor that made both.
                _ => {}
            }
            offset += enc.width();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MISSING_CODE;

    #[test]
    fn numbers_are_imputed_standardised_and_flagged_and_categories_one_hot() {
        let x = Features {
            names: vec!["a".into(), "c".into()],
            columns: vec![
                Column::Numeric(vec![1.0, f64::NAN, 3.0, 5.0]),
                Column::Categorical {
                    codes: vec![0, 1, MISSING_CODE, 1],
                    n_categories: 2,
                },
            ],
        };
        let enc = DenseEncoder::fit(&x);
        assert_eq!(enc.width(), 2 + 3);
        let m = enc.transform(&x);
        // Median 3 imputed; imputed column [1, 3, 3, 5] has mean 3, sd √2.
        let s = 2f64.sqrt();
        assert_eq!(&m[0..5], &[-2.0 / s, 0.0, 1.0, 0.0, 0.0]);
        assert_eq!(&m[5..10], &[0.0, 1.0, 0.0, 1.0, 0.0]);
        assert_eq!(&m[10..15], &[0.0, 0.0, 0.0, 0.0, 1.0]);
    }
}
