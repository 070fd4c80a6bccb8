//! Feature binning: every value becomes a `u8` bin before trees are grown.
//!
//! Bin 0 holds missing values (and, for categorical features, unseen and
//! rare categories). Numeric values go to bins `1..n_bins` by upper bounds
//! placed between distinct sample values, with roughly equal counts per bin
//! when there are more distinct values than bins (LightGBM's scheme).

use rayon::prelude::*;

use crate::frame::{Column, Features, codes_by_frequency};
use crate::rng::Rng;

/// How one feature's values map to bins.
#[derive(Debug, Clone)]
pub(crate) enum BinMap {
    /// `upper[b - 1]` is the largest value in bin `b`; the last is `+inf`.
    Numeric { upper: Vec<f64> },
    /// `code_to_bin[code]` (0 for rare categories); `bin_to_code[b - 1]`.
    Categorical {
        code_to_bin: Vec<u8>,
        bin_to_code: Vec<u32>,
    },
}

impl BinMap {
    /// Bins used, the missing bin included.
    pub fn n_bins(&self) -> usize {
        match self {
            BinMap::Numeric { upper } => upper.len() + 1,
            BinMap::Categorical { bin_to_code, .. } => bin_to_code.len() + 1,
        }
    }

    fn bin_numeric(upper: &[f64], x: f64) -> u8 {
        if x.is_nan() {
            0
        } else {
            // First bin whose upper bound is >= x.
            (upper.partition_point(|&u| u < x) + 1) as u8
        }
    }

    fn bin_column(&self, column: &Column) -> Vec<u8> {
        match (self, column) {
            (BinMap::Numeric { upper }, Column::Numeric(v)) => {
                v.iter().map(|&x| Self::bin_numeric(upper, x)).collect()
            }
            (BinMap::Categorical { code_to_bin, .. }, Column::Categorical { codes, .. }) => codes
                .iter()
                .map(|&c| code_to_bin.get(c as usize).copied().unwrap_or(0))
                .collect(),
            _ => unreachable!("bin maps are built from the same feature kinds"),
        }
    }
}

/// Options for [`Binned::build`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct BinOptions {
    /// Most value bins per feature (at most 255).
    pub max_bin: usize,
    /// Rows sampled to place bin bounds.
    pub sample_rows: usize,
    /// Fewest rows a category needs for its own bin.
    pub min_category_rows: usize,
    pub seed: u64,
}

/// A table binned for training.
#[derive(Debug)]
pub(crate) struct Binned {
    pub maps: Vec<BinMap>,
    /// Column-major bins: `bins[f][row]`.
    pub bins: Vec<Vec<u8>>,
    pub n_rows: usize,
}

impl Binned {
    /// Learns bin maps from `features` and bins it.
    pub fn build(features: &Features, opts: BinOptions) -> Binned {
        let n = features.n_rows();
        let sample: Option<Vec<usize>> = (n > opts.sample_rows).then(|| {
            let mut rng = Rng::new(opts.seed ^ 0xB1B5);
            let mut rows: Vec<usize> = (0..n).collect();
            // Partial Fisher–Yates: the first `sample_rows` are a uniform sample.
            for i in 0..opts.sample_rows {
                let j = i + rng.below(n - i);
                rows.swap(i, j);
            }
            rows.truncate(opts.sample_rows);
            rows.sort_unstable();
            rows
        });
        let maps: Vec<BinMap> = features
            .columns
            .par_iter()
            .map(|c| learn_map(c, sample.as_deref(), opts))
            .collect();
        let bins = Self::apply_maps(&maps, features);
        Binned {
            maps,
            bins,
            n_rows: n,
        }
    }

    /// Bins `features` (same columns) with already learned maps.
    pub fn apply_maps(maps: &[BinMap], features: &Features) -> Vec<Vec<u8>> {
        maps.par_iter()
            .zip(features.columns.par_iter())
            .map(|(m, c)| m.bin_column(c))
            .collect()
    }
}

fn learn_map(column: &Column, sample: Option<&[usize]>, opts: BinOptions) -> BinMap {
    match column {
        Column::Numeric(v) => {
            let mut values: Vec<f64> = match sample {
                Some(rows) => rows.iter().map(|&r| v[r]).filter(|x| !x.is_nan()).collect(),
                None => v.iter().copied().filter(|x| !x.is_nan()).collect(),
            };
            values.sort_unstable_by(f64::total_cmp);
            BinMap::Numeric {
                upper: numeric_bounds(&values, opts.max_bin.clamp(2, 255)),
            }
        }
        Column::Categorical {
            codes,
            n_categories,
        } => {
            let mut order = codes_by_frequency(codes, *n_categories, opts.min_category_rows);
            order.truncate(opts.max_bin.clamp(2, 255));
            let mut code_to_bin = vec![0u8; *n_categories as usize];
            for (i, &c) in order.iter().enumerate() {
                code_to_bin[c as usize] = (i + 1) as u8;
            }
            BinMap::Categorical {
                code_to_bin,
                bin_to_code: order,
            }
        }
    }
}

/// Upper bounds for sorted, non-missing `values`: midpoints between
/// distinct values, merged into at most `max_bin` bins of roughly equal
/// counts. The last bound is `+inf`.
fn numeric_bounds(values: &[f64], max_bin: usize) -> Vec<f64> {
    let mut distinct: Vec<(f64, usize)> = Vec::new();
    for &x in values {
        match distinct.last_mut() {
            Some((v, c)) if *v == x => *c += 1,
            _ => distinct.push((x, 1)),
        }
    }
    if distinct.len() <= 1 {
        return vec![f64::INFINITY];
    }
    let mut upper = Vec::new();
    if distinct.len() <= max_bin {
        for w in distinct.windows(2) {
            upper.push(midpoint(w[0].0, w[1].0));
        }
    } else {
        // Greedy equal-frequency: close a bin once it holds its share of
        // the remaining rows; a very frequent value gets a bin of its own.
        let total = values.len();
        let mut remaining = total;
        let mut bins_left = max_bin;
        let mut in_bin = 0usize;
        for i in 0..distinct.len() - 1 {
            in_bin += distinct[i].1;
            let target = remaining as f64 / bins_left as f64;
            let next_big = distinct[i + 1].1 as f64 >= target;
            if (in_bin as f64 >= target || next_big) && bins_left > 1 {
                upper.push(midpoint(distinct[i].0, distinct[i + 1].0));
                remaining -= in_bin;
                in_bin = 0;
                bins_left -= 1;
            }
        }
    }
    upper.push(f64::INFINITY);
    upper
}

fn midpoint(a: f64, b: f64) -> f64 {
    let m = a + (b - a) / 2.0;
    // Keep `a` strictly in the lower bin even when the midpoint rounds to b.
    if m >= b { a } else { m }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::MISSING_CODE;

    #[test]
    fn few_distinct_values_get_one_bin_each_and_nan_gets_bin_zero() {
        let f = Features {
            names: vec!["x".into()],
            columns: vec![Column::Numeric(vec![3.0, 1.0, f64::NAN, 2.0, 1.0])],
        };
        let b = Binned::build(
            &f,
            BinOptions {
                max_bin: 255,
                sample_rows: 1000,
                min_category_rows: 1,
                seed: 0,
            },
        );
        assert_eq!(b.bins[0], vec![3, 1, 0, 2, 1]);
    }

    #[test]
    fn many_distinct_values_are_merged_into_at_most_max_bin_bins() {
        let values: Vec<f64> = (0..10_000).map(|i| (i % 997) as f64).collect();
        let upper = numeric_bounds(
            &{
                let mut v = values.clone();
                v.sort_by(f64::total_cmp);
                v
            },
            16,
        );
        assert!(upper.len() <= 16, "{} bins", upper.len());
        let bins: Vec<u8> = values
            .iter()
            .map(|&x| BinMap::bin_numeric(&upper, x))
            .collect();
        let mut counts = [0usize; 17];
        for b in bins {
            counts[b as usize] += 1;
        }
        // Roughly equal: no bin holds more than twice its share.
        assert!(counts.iter().all(|&c| c <= 2 * 10_000 / 16), "{counts:?}");
    }

    #[test]
    fn rare_and_unseen_categories_share_the_missing_bin() {
        let f = Features {
            names: vec!["c".into()],
            columns: vec![Column::Categorical {
                codes: vec![0, 0, 0, 1, 1, 2, MISSING_CODE],
                n_categories: 3,
            }],
        };
        let b = Binned::build(
            &f,
            BinOptions {
                max_bin: 255,
                sample_rows: 1000,
                min_category_rows: 2,
                seed: 0,
            },
        );
        assert_eq!(b.bins[0], vec![1, 1, 1, 2, 2, 0, 0]);
        let unseen = Features {
            names: vec!["c".into()],
            columns: vec![Column::Categorical {
                codes: vec![7, 1],
                n_categories: 3,
            }],
        };
        assert_eq!(Binned::apply_maps(&b.maps, &unseen)[0], vec![0, 2]);
    }
}
