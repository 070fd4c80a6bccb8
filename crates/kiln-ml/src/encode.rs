//! [`DenseEncoder`]: features for linear models. Numbers are imputed with
//! the training median (plus a missing-value indicator when training had
//! missing values) and standardised; categories are one-hot encoded (the
//! most frequent ones, the rest and missing values sharing one column), or,
//! when there are more than [`MAX_ONE_HOT`] of them and the target is a
//! number or a binary class, target encoded: each category becomes the
//! smoothed mean of the target over its training rows, computed out of fold
//! for the training rows themselves so a row never sees its own label.
//! Learned on training rows only and saved in the model.

use serde::{Deserialize, Serialize};

use crate::frame::{Column, Features, codes_by_frequency};

/// Most one-hot columns per categorical feature.
pub const MAX_ONE_HOT: usize = 32;
/// Folds for out-of-fold target encoding.
const TE_FOLDS: usize = 5;
/// Pseudo-rows of the overall mean added to every category's mean.
const TE_SMOOTHING: f64 = 10.0;

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
    /// One column: `(means[code] - mean) / scale`; missing and unseen
    /// codes take `prior`.
    Target {
        means: Vec<f64>,
        prior: f64,
        mean: f64,
        scale: f64,
    },
}

impl Encoded {
    /// The dense columns this feature becomes.
    pub fn width(&self) -> usize {
        match self {
            Encoded::Numeric {
                missing_indicator, ..
            } => 1 + usize::from(*missing_indicator),
            Encoded::OneHot { codes } => codes.len() + 1,
            Encoded::Target { .. } => 1,
        }
    }
}

/// Features → a row-major dense matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DenseEncoder {
    pub features: Vec<Encoded>,
}

impl DenseEncoder {
    /// Learns the encoding from training features, with target encoding
    /// where `y` (numbers, or 0/1 for a binary target) is given, and returns
    /// the training rows encoded (target-encoded columns out of fold).
    pub fn fit_transform(x: &Features, y: Option<&[f64]>, seed: u64) -> (DenseEncoder, Vec<f64>) {
        let mut enc = Self::fit(x);
        let Some(y) = y else {
            let m = enc.transform(x);
            return (enc, m);
        };
        let n = x.n_rows();
        let mut rng = crate::rng::Rng::new(seed ^ 0x7E);
        let fold: Vec<usize> = (0..n).map(|_| rng.below(TE_FOLDS)).collect();
        let prior = y.iter().sum::<f64>() / n.max(1) as f64;
        let mut oof_columns: Vec<(usize, Vec<f64>)> = Vec::new();
        for (f, (e, col)) in enc.features.iter_mut().zip(&x.columns).enumerate() {
            let Column::Categorical {
                codes,
                n_categories,
            } = col
            else {
                continue;
            };
            let present = codes_by_frequency(codes, *n_categories, 1).len();
            if present <= MAX_ONE_HOT {
                continue;
            }
            let k = *n_categories as usize;
            // Per-fold sums, so each fold's rows get means from the others.
            let mut sum = vec![0.0; k * TE_FOLDS];
            let mut cnt = vec![0.0; k * TE_FOLDS];
            for (i, &c) in codes.iter().enumerate() {
                if (c as usize) < k {
                    sum[c as usize * TE_FOLDS + fold[i]] += y[i];
                    cnt[c as usize * TE_FOLDS + fold[i]] += 1.0;
                }
            }
            let smooth = |s: f64, c: f64| (s + prior * TE_SMOOTHING) / (c + TE_SMOOTHING);
            let means: Vec<f64> = (0..k)
                .map(|c| {
                    let s: f64 = sum[c * TE_FOLDS..(c + 1) * TE_FOLDS].iter().sum();
                    let n: f64 = cnt[c * TE_FOLDS..(c + 1) * TE_FOLDS].iter().sum();
                    smooth(s, n)
                })
                .collect();
            let oof: Vec<f64> = codes
                .iter()
                .enumerate()
                .map(|(i, &c)| {
                    if (c as usize) >= k {
                        return prior;
                    }
                    let r = c as usize * TE_FOLDS;
                    let s: f64 = sum[r..r + TE_FOLDS].iter().sum::<f64>() - sum[r + fold[i]];
                    let n: f64 = cnt[r..r + TE_FOLDS].iter().sum::<f64>() - cnt[r + fold[i]];
                    smooth(s, n)
                })
                .collect();
            let mean = oof.iter().sum::<f64>() / n.max(1) as f64;
            let var = oof.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n.max(1) as f64;
            let scale = if var > 0.0 { var.sqrt() } else { 1.0 };
            *e = Encoded::Target {
                means,
                prior,
                mean,
                scale,
            };
            oof_columns.push((f, oof.iter().map(|v| (v - mean) / scale).collect()));
        }
        let mut m = enc.transform(x);
        let w = enc.width();
        for (f, values) in oof_columns {
            let offset: usize = enc.features[..f].iter().map(Encoded::width).sum();
            for (i, v) in values.into_iter().enumerate() {
                m[i * w + offset] = v;
            }
        }
        (enc, m)
    }

    /// Learns the encoding from training features (one-hot for every
    /// categorical feature).
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
                    let mut order = codes_by_frequency(codes, *n_categories, 1);
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
                (
                    Encoded::Target {
                        means,
                        prior,
                        mean,
                        scale,
                    },
                    Column::Categorical { codes: values, .. },
                ) => {
                    for (i, &c) in values.iter().enumerate() {
                        let v = means.get(c as usize).copied().unwrap_or(*prior);
                        out[i * w + offset] = (v - mean) / scale;
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
    fn many_categories_are_target_encoded_out_of_fold() {
        // 100 categories; the target is 1 exactly for even codes.
        let n = 5000;
        let codes: Vec<u32> = (0..n).map(|i| (i * 7 % 100) as u32).collect();
        let y: Vec<f64> = codes
            .iter()
            .map(|&c| f64::from(u8::from(c % 2 == 0)))
            .collect();
        let x = Features {
            names: vec!["c".into()],
            columns: vec![Column::Categorical {
                codes: codes.clone(),
                n_categories: 100,
            }],
        };
        let (enc, train) = DenseEncoder::fit_transform(&x, Some(&y), 1);
        assert_eq!(enc.width(), 1);
        let Encoded::Target { means, prior, .. } = &enc.features[0] else {
            panic!("not target encoded: {:?}", enc.features[0])
        };
        assert!((prior - 0.5).abs() < 1e-12);
        // Smoothed towards the prior, but far apart by class.
        assert!(
            means[0] > 0.8 && means[1] < 0.2,
            "{} {}",
            means[0],
            means[1]
        );
        // Out of fold: training values differ from the full-data encoding.
        let full = enc.transform(&x);
        assert_ne!(train, full);
        // And they still separate the classes.
        let pos: f64 = train
            .iter()
            .zip(&y)
            .filter(|(_, y)| **y == 1.0)
            .map(|(v, _)| v)
            .sum();
        assert!(pos > 0.0);
        // Unseen codes take the prior.
        let unseen = Features {
            names: vec!["c".into()],
            columns: vec![Column::Categorical {
                codes: vec![MISSING_CODE, 500],
                n_categories: 100,
            }],
        };
        let m = enc.transform(&unseen);
        assert_eq!(m[0], m[1]);
    }

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
