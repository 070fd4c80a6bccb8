//! Drift: how far a current sample of a column has moved from its reference.
//!
//! The verdict of each column comes from a statistical test, so it holds at
//! any sample size, from a window of a few hundred served rows to a table of
//! millions:
//!
//! * numbers: the two-sample Kolmogorov–Smirnov test;
//! * categories: Pearson's chi-squared test of homogeneity on the 2×k table
//!   of counts (a category new in the current sample is a column of its own);
//! * and for both, a change of the missing-value rate (a two-proportion z-test,
//!   and at least [`MIN_NULL_CHANGE`] apart).
//!
//! A column has drifted when a test's p-value is below the threshold, which is
//! `alpha` divided by the number of columns compared (Bonferroni), so the
//! chance of any false alarm over a whole table is at most `alpha`. Distances
//! are reported beside the verdict, for people and for rules: PSI (10
//! reference-decile bins, or the categories), Wasserstein-1 divided by the
//! reference's standard deviation (what Evidently calls normed Wasserstein),
//! and the Jensen–Shannon distance (base 2, 0 to 1).

use serde::Serialize;

use crate::profile::{ColumnProfile, ColumnStats, Kind};
use crate::stats;

/// Fewer non-missing current values than this give no verdict.
pub const MIN_COUNT: u64 = 30;
/// A null-rate change smaller than this is never drift, however significant.
pub const MIN_NULL_CHANGE: f64 = 0.01;
/// Bins of the histograms reports plot.
const PLOT_BINS: usize = 24;
/// Categories a plot and the `new_categories` list show.
const PLOT_CATEGORIES: usize = 20;

/// One column's comparison.
#[derive(Clone, Debug, Serialize)]
pub struct ColumnDrift {
    /// The column.
    pub column: String,
    /// `numeric` or `categorical`.
    pub kind: Kind,
    /// The test behind the verdict: `ks`, `chi2`, `null_rate` (when only the
    /// missing rate moved), `type` (the column's kind changed) or `none` (too
    /// few values); with a distance [`Method`], `psi`, `wasserstein` or
    /// `jensen_shannon`.
    pub test: &'static str,
    /// The test's statistic (the KS distance; chi-squared).
    pub statistic: f64,
    /// The test's p-value.
    pub p_value: f64,
    /// The p-value below which the column has drifted (for a distance
    /// method, the distance above which it has).
    pub threshold: f64,
    /// The verdict.
    pub drifted: bool,
    /// Population stability index.
    pub psi: f64,
    /// Wasserstein-1 distance over the reference's standard deviation
    /// (numbers only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wasserstein: Option<f64>,
    /// Jensen–Shannon distance (base 2).
    pub jensen_shannon: f64,
    /// The reference's rows and missing values.
    pub reference: Side,
    /// The current sample's rows and missing values.
    pub current: Side,
    /// p-value of the missing-rate change.
    pub null_rate_p_value: f64,
    /// Categories in the current sample the reference never saw (the most
    /// frequent 20).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_categories: Vec<String>,
    /// Share of current rows in new categories.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub new_category_share: Option<f64>,
    /// Means (numbers only), for people reading a report.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub means: Option<(f64, f64)>,
    /// Why there is no verdict, or what else changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Both distributions over the same bins, for plots.
    #[serde(skip)]
    pub histogram: Histogram,
}

/// Rows and missing values of one side.
#[derive(Clone, Copy, Debug, Serialize)]
pub struct Side {
    /// Rows, missing included.
    pub rows: u64,
    /// Missing values.
    pub nulls: u64,
}

/// Shares of both sides over the same bins.
#[derive(Clone, Debug, Default)]
pub struct Histogram {
    /// A label per bin.
    pub labels: Vec<String>,
    /// The reference's share per bin.
    pub reference: Vec<f64>,
    /// The current sample's share per bin.
    pub current: Vec<f64>,
}

/// Compares `current` with `reference`; `threshold` is the p-value below
/// which the column has drifted (alpha over the number of columns).
pub fn compare(reference: &ColumnProfile, current: &ColumnProfile, threshold: f64) -> ColumnDrift {
    let null_p =
        stats::two_proportion_p_value(reference.nulls, reference.rows, current.nulls, current.rows);
    let null_moved = null_p < threshold
        && (reference.null_rate() - current.null_rate()).abs() >= MIN_NULL_CHANGE;
    let mut d = ColumnDrift {
        column: reference.name.clone(),
        kind: reference.kind(),
        test: "none",
        statistic: 0.0,
        p_value: 1.0,
        threshold,
        drifted: false,
        psi: 0.0,
        wasserstein: None,
        jensen_shannon: 0.0,
        reference: Side {
            rows: reference.rows,
            nulls: reference.nulls,
        },
        current: Side {
            rows: current.rows,
            nulls: current.nulls,
        },
        null_rate_p_value: null_p,
        new_categories: Vec::new(),
        new_category_share: None,
        means: None,
        note: None,
        histogram: Histogram::default(),
    };
    if reference.kind() != current.kind() {
        d.test = "type";
        d.p_value = 0.0;
        d.drifted = true;
        d.note = Some(format!(
            "was {}, is now {}",
            reference.kind().as_str(),
            current.kind().as_str()
        ));
        return d;
    }
    if current.count() < MIN_COUNT || reference.count() == 0 {
        d.note = Some(format!(
            "{} non-missing values: at least {MIN_COUNT} are needed for a verdict",
            current.count().min(reference.count())
        ));
        if null_moved {
            null_verdict(&mut d, null_p);
        }
        return d;
    }
    match (&reference.stats, &current.stats) {
        (ColumnStats::Numeric { points: r, std, .. }, ColumnStats::Numeric { points: c, .. }) => {
            numeric(&mut d, r, reference.count(), *std, c, current.count());
            // A thinned reference's CDF is off by up to half a point's share
            // (more with ties); that much of the distance is the sketch, not
            // the data, so it does not count as evidence.
            if (r.len() as u64) < reference.count() {
                let slack = 0.5 / r.len() as f64;
                d.p_value = stats::ks_p_value(
                    (d.statistic - slack).max(0.0),
                    reference.count(),
                    current.count(),
                );
            }
        }
        (
            ColumnStats::Categorical {
                categories: r,
                other: ro,
            },
            ColumnStats::Categorical {
                categories: c,
                other: co,
            },
        ) => categorical(&mut d, r, *ro, c, *co),
        _ => unreachable!("kinds compared above"),
    }
    if let (ColumnStats::Numeric { mean: rm, .. }, ColumnStats::Numeric { mean: cm, .. }) =
        (&reference.stats, &current.stats)
    {
        d.means = Some((*rm, *cm));
    }
    d.drifted = d.p_value < threshold;
    if !d.drifted && null_moved {
        null_verdict(&mut d, null_p);
    }
    d
}

fn null_verdict(d: &mut ColumnDrift, p: f64) {
    d.test = "null_rate";
    d.p_value = p;
    d.statistic = d.current.nulls as f64 / d.current.rows.max(1) as f64
        - d.reference.nulls as f64 / d.reference.rows.max(1) as f64;
    d.drifted = true;
}

fn numeric(d: &mut ColumnDrift, r: &[f64], rn: u64, std: f64, c: &[f64], cn: u64) {
    let (ks, w) = stats::ks_wasserstein(r, c);
    d.test = "ks";
    d.statistic = ks;
    d.p_value = stats::ks_p_value(ks, rn, cn);
    d.wasserstein = Some(if std > 0.0 {
        w / std
    } else if w == 0.0 {
        0.0
    } else {
        f64::INFINITY
    });
    // Decile bins of the reference for PSI and Jensen–Shannon.
    let mut edges: Vec<f64> = (1..10)
        .map(|i| stats::quantile(r, i as f64 / 10.0))
        .collect();
    edges.dedup();
    let (rs, cs) = (stats::bin_shares(r, &edges), stats::bin_shares(c, &edges));
    d.psi = stats::psi(&rs, &cs);
    d.jensen_shannon = stats::jensen_shannon(&rs, &cs);
    d.histogram = numeric_histogram(r, c);
}

/// Equal-width bins over the middle 99 % of both samples (the outer bins take
/// the tails), so a shift shows as bars that moved.
fn numeric_histogram(r: &[f64], c: &[f64]) -> Histogram {
    let lo = stats::quantile(r, 0.005).min(stats::quantile(c, 0.005));
    let hi = stats::quantile(r, 0.995).max(stats::quantile(c, 0.995));
    if hi.is_nan() || lo.is_nan() || hi <= lo {
        return Histogram {
            labels: vec![format_value(lo)],
            reference: vec![1.0],
            current: vec![1.0],
        };
    }
    let width = (hi - lo) / PLOT_BINS as f64;
    let edges: Vec<f64> = (1..PLOT_BINS).map(|i| lo + width * i as f64).collect();
    let labels = (0..PLOT_BINS)
        .map(|i| format_value(lo + width * (i as f64 + 0.5)))
        .collect();
    Histogram {
        labels,
        reference: stats::bin_shares(r, &edges),
        current: stats::bin_shares(c, &edges),
    }
}

fn categorical(
    d: &mut ColumnDrift,
    r: &[(String, u64)],
    r_other: u64,
    c: &[(String, u64)],
    c_other: u64,
) {
    use std::collections::HashMap;
    let current: HashMap<&str, u64> = c.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let mut rc: Vec<f64> = Vec::with_capacity(r.len() + 2);
    let mut cc: Vec<f64> = Vec::with_capacity(r.len() + 2);
    let mut labels = Vec::with_capacity(r.len() + 2);
    for (name, n) in r {
        rc.push(*n as f64);
        cc.push(current.get(name.as_str()).copied().unwrap_or(0) as f64);
        labels.push(name.clone());
    }
    let known: std::collections::HashSet<&str> = r.iter().map(|(k, _)| k.as_str()).collect();
    let unseen: Vec<&(String, u64)> = c
        .iter()
        .filter(|(k, _)| !known.contains(k.as_str()))
        .collect();
    let unseen_rows: u64 = unseen.iter().map(|(_, n)| n).sum::<u64>() + c_other;
    if r_other == 0 {
        // The reference listed every category it saw: the rest are new.
        for (name, n) in &unseen {
            rc.push(0.0);
            cc.push(*n as f64);
            labels.push(name.clone());
        }
        if c_other > 0 {
            rc.push(0.0);
            cc.push(c_other as f64);
            labels.push("(other)".into());
        }
        d.new_categories = unseen
            .iter()
            .take(PLOT_CATEGORIES)
            .map(|(k, _)| k.clone())
            .collect();
        let total: u64 = c.iter().map(|(_, n)| n).sum::<u64>() + c_other;
        if unseen_rows > 0 && total > 0 {
            d.new_category_share = Some(unseen_rows as f64 / total as f64);
        }
    } else {
        // Rarer reference categories were summed: an unlisted current one may
        // be one of them, so the rest is compared as one bucket.
        rc.push(r_other as f64);
        cc.push(unseen_rows as f64);
        labels.push("(other)".into());
    }
    let (stat, _, p) = stats::chi2_homogeneity(&rc, &cc);
    d.test = "chi2";
    d.statistic = stat;
    d.p_value = p;
    let (rs, cs) = (shares(&rc), shares(&cc));
    d.psi = stats::psi(&rs, &cs);
    d.jensen_shannon = stats::jensen_shannon(&rs, &cs);
    // The plot: the most frequent categories of either side, the rest summed.
    let mut order: Vec<usize> = (0..labels.len()).collect();
    order.sort_by(|&a, &b| (rs[b] + cs[b]).total_cmp(&(rs[a] + cs[a])));
    let mut h = Histogram::default();
    let (mut ro, mut co) = (0.0, 0.0);
    for (rank, &i) in order.iter().enumerate() {
        if rank < PLOT_CATEGORIES {
            h.labels.push(labels[i].clone());
            h.reference.push(rs[i]);
            h.current.push(cs[i]);
        } else {
            ro += rs[i];
            co += cs[i];
        }
    }
    if order.len() > PLOT_CATEGORIES {
        h.labels.push("(rest)".into());
        h.reference.push(ro);
        h.current.push(co);
    }
    d.histogram = h;
}

fn shares(counts: &[f64]) -> Vec<f64> {
    let total: f64 = counts.iter().sum();
    counts
        .iter()
        .map(|c| if total > 0.0 { c / total } else { 0.0 })
        .collect()
}

/// A number for a plot label: 3 significant digits, compact.
pub fn format_value(v: f64) -> String {
    let a = v.abs();
    if a == 0.0 {
        "0".into()
    } else if a >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if a >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else if a >= 100.0 {
        format!("{v:.0}")
    } else if a >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

/// The comparison of two tables (or a reference profile and a window).
#[derive(Clone, Debug, Serialize)]
pub struct DriftReport {
    /// The family-wise false-alarm rate the per-column threshold keeps.
    pub alpha: f64,
    /// Columns compared.
    pub columns_checked: usize,
    /// Columns that drifted.
    pub drifted_columns: usize,
    /// `drifted_columns / columns_checked`.
    pub share_drifted: f64,
    /// One entry per column compared, in the reference's order.
    pub columns: Vec<ColumnDrift>,
    /// Reference columns the current sample lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub missing_columns: Vec<String>,
    /// Current columns the reference lacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub new_columns: Vec<String>,
    /// Columns not compared (dates, times, binary), with the reason.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub skipped: Vec<(String, String)>,
}

impl DriftReport {
    /// Gathers per-column results into a report.
    pub fn new(alpha: f64, columns: Vec<ColumnDrift>) -> DriftReport {
        let mut r = DriftReport::empty(alpha);
        r.set_columns(columns);
        r
    }

    fn empty(alpha: f64) -> DriftReport {
        DriftReport {
            alpha,
            columns_checked: 0,
            drifted_columns: 0,
            share_drifted: 0.0,
            columns: Vec::new(),
            missing_columns: Vec::new(),
            new_columns: Vec::new(),
            skipped: Vec::new(),
        }
    }

    /// Re-decides every column by `method` and recounts.
    pub fn apply(&mut self, method: Method) {
        let mut columns = std::mem::take(&mut self.columns);
        for c in &mut columns {
            method.apply(c);
        }
        self.set_columns(columns);
    }

    fn set_columns(&mut self, columns: Vec<ColumnDrift>) {
        let drifted = columns.iter().filter(|c| c.drifted).count();
        self.columns_checked = columns.len();
        self.drifted_columns = drifted;
        self.share_drifted = if columns.is_empty() {
            0.0
        } else {
            drifted as f64 / columns.len() as f64
        };
        self.columns = columns;
    }
}

/// How a column's verdict is reached.
///
/// Statistical tests answer "is there any difference?", which on large or
/// autocorrelated samples (a day of weather against years of it) is nearly
/// always yes; a distance with a threshold answers "is the difference
/// large?". The distances are reported either way.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case", tag = "method", content = "threshold")]
pub enum Method {
    /// The p-value tests (the default).
    Test,
    /// PSI above the threshold (0.1 is a moderate shift, 0.25 a large one).
    Psi(f64),
    /// Normed Wasserstein for numbers and Jensen–Shannon for categories above
    /// the threshold (Evidently's rule above 1,000 rows, with 0.1).
    Wasserstein(f64),
    /// Jensen–Shannon distance above the threshold.
    JensenShannon(f64),
}

impl Method {
    /// Parses `test`, `psi`, `psi:0.2`, `wasserstein:0.1`, `js:0.1`
    /// (thresholds default to 0.2, 0.1 and 0.1).
    pub fn parse(s: &str) -> Result<Method, String> {
        let (name, t) = match s.split_once(':') {
            Some((n, t)) => (
                n,
                Some(t.parse::<f64>().ok().filter(|t| *t > 0.0).ok_or_else(|| {
                    format!("`{t}` is not a positive threshold in drift method `{s}`")
                })?),
            ),
            None => (s, None),
        };
        Ok(match name {
            "test" if t.is_none() => Method::Test,
            "psi" => Method::Psi(t.unwrap_or(0.2)),
            "wasserstein" => Method::Wasserstein(t.unwrap_or(0.1)),
            "js" | "jensen_shannon" => Method::JensenShannon(t.unwrap_or(0.1)),
            _ => {
                return Err(format!(
                    "unknown drift method `{s}`: use test, psi[:T], wasserstein[:T] or js[:T]"
                ));
            }
        })
    }

    /// Re-decides a compared column by this method. Columns whose kind
    /// changed, and missing-rate changes, stay drifted; columns without a
    /// verdict stay without one.
    pub fn apply(self, d: &mut ColumnDrift) {
        if matches!(d.test, "none" | "type" | "null_rate") {
            return;
        }
        let (test, value, threshold) = match self {
            Method::Test => return,
            Method::Psi(t) => ("psi", d.psi, t),
            Method::Wasserstein(t) => match d.wasserstein {
                Some(w) => ("wasserstein", w, t),
                None => ("jensen_shannon", d.jensen_shannon, t),
            },
            Method::JensenShannon(t) => ("jensen_shannon", d.jensen_shannon, t),
        };
        d.test = test;
        d.statistic = value;
        d.threshold = threshold;
        d.drifted = value > threshold;
    }
}

/// The per-column p-value threshold for `alpha` over `columns` columns.
pub fn threshold(alpha: f64, columns: usize) -> f64 {
    alpha / columns.max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::profile::Values;
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    fn normal(rng: &mut SmallRng) -> f64 {
        // Box–Muller.
        let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
        (-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()
    }

    fn numbers(name: &str, values: Vec<f64>, limit: Option<usize>) -> ColumnProfile {
        ColumnProfile::from_values(name, Values::Numeric { values, nulls: 0 }, limit)
    }

    fn cats(name: &str, counts: &[(&str, u64)], nulls: u64) -> ColumnProfile {
        ColumnProfile::from_values(
            name,
            Values::Categorical {
                counts: counts.iter().map(|(k, v)| (k.to_string(), *v)).collect(),
                nulls,
            },
            None,
        )
    }

    #[test]
    fn a_subtle_mean_shift_is_found_and_fresh_draws_are_not_flagged() {
        let mut rng = SmallRng::seed_from_u64(7);
        let n = 200_000;
        let r: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let same: Vec<f64> = (0..n).map(|_| normal(&mut rng)).collect();
        let shifted: Vec<f64> = (0..n).map(|_| normal(&mut rng) + 0.05).collect();
        let reference = numbers("x", r, None);
        let t = threshold(0.05, 25);
        let ok = compare(&reference, &numbers("x", same, None), t);
        assert!(!ok.drifted, "{ok:?}");
        let moved = compare(&reference, &numbers("x", shifted, None), t);
        assert!(moved.drifted, "{moved:?}");
        assert_eq!(moved.test, "ks");
        // Evidently's normed Wasserstein stays far below its 0.1 threshold.
        assert!(moved.wasserstein.unwrap() < 0.1);
    }

    #[test]
    fn a_thinned_reference_gives_nearly_the_exact_statistics() {
        let mut rng = SmallRng::seed_from_u64(3);
        let r: Vec<f64> = (0..100_000).map(|_| normal(&mut rng)).collect();
        let c: Vec<f64> = (0..5_000).map(|_| normal(&mut rng) * 1.2).collect();
        let t = threshold(0.05, 1);
        let exact = compare(
            &numbers("x", r.clone(), None),
            &numbers("x", c.clone(), None),
            t,
        );
        let thin = compare(
            &numbers("x", r, Some(crate::profile::POINTS)),
            &numbers("x", c, None),
            t,
        );
        assert!((exact.statistic - thin.statistic).abs() < 2e-3);
        assert!((exact.wasserstein.unwrap() - thin.wasserstein.unwrap()).abs() < 0.01);
        assert_eq!(exact.drifted, thin.drifted);
        assert!(thin.drifted);
    }

    #[test]
    fn a_new_category_drifts_and_is_named() {
        let r = cats("c", &[("a", 5000), ("b", 3000), ("c", 2000)], 0);
        let c = cats(
            "c",
            &[("a", 4800), ("b", 2900), ("c", 2000), ("zz", 300)],
            0,
        );
        let d = compare(&r, &c, 0.01);
        assert!(d.drifted);
        assert_eq!(d.test, "chi2");
        assert_eq!(d.new_categories, vec!["zz".to_string()]);
        assert!((d.new_category_share.unwrap() - 0.03).abs() < 1e-9);
        let same = cats("c", &[("a", 2510), ("b", 1490), ("c", 1000)], 0);
        assert!(!compare(&r, &same, 0.01).drifted);
    }

    #[test]
    fn a_jump_in_missing_values_drifts_even_when_the_rest_does_not() {
        let r = cats("c", &[("a", 5000), ("b", 5000)], 100);
        let c = cats("c", &[("a", 5000), ("b", 5000)], 1500);
        let d = compare(&r, &c, 0.01);
        assert!(d.drifted);
        assert_eq!(d.test, "null_rate");
    }

    #[test]
    fn too_few_values_give_no_verdict() {
        let r = numbers("x", (0..1000).map(f64::from).collect(), None);
        let c = numbers("x", vec![5000.0; 10], None);
        let d = compare(&r, &c, 0.05);
        assert!(!d.drifted);
        assert_eq!(d.test, "none");
        assert!(d.note.unwrap().contains("at least 30"));
    }

    #[test]
    fn a_distance_method_ignores_a_significant_but_tiny_shift() {
        let mut rng = SmallRng::seed_from_u64(11);
        let r: Vec<f64> = (0..200_000).map(|_| normal(&mut rng)).collect();
        let c: Vec<f64> = (0..200_000).map(|_| normal(&mut rng) + 0.05).collect();
        let mut d = compare(&numbers("x", r, None), &numbers("x", c, None), 0.002);
        assert!(d.drifted);
        Method::parse("wasserstein").unwrap().apply(&mut d);
        assert!(!d.drifted, "{d:?}");
        assert_eq!((d.test, d.threshold), ("wasserstein", 0.1));
        assert_eq!(Method::parse("psi:0.3"), Ok(Method::Psi(0.3)));
        assert!(Method::parse("psi:-1").is_err());
        assert!(Method::parse("chi").unwrap_err().contains("use test, psi"));
    }

    #[test]
    fn a_column_that_changed_kind_has_drifted() {
        let r = numbers("x", vec![1.0; 100], None);
        let c = cats("x", &[("1", 100)], 0);
        let d = compare(&r, &c, 0.05);
        assert!(d.drifted);
        assert_eq!(d.test, "type");
    }
}
