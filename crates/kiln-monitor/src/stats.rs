//! The statistics behind the drift tests, on sorted samples and counts.
//!
//! Every two-sample statistic over numbers is computed in one merge of the two
//! sorted samples: the Kolmogorov–Smirnov distance (the largest gap between
//! the two empirical CDFs) and the Wasserstein-1 distance (the area between
//! them) come out of the same walk. A sample may be a *thinned* one (a stored
//! reference profile keeps evenly spaced quantiles, each standing for the
//! same share of the rows), so the walk weighs each point by `1 / len` and
//! the p-value uses the true row counts.

use statrs::distribution::{ChiSquared, ContinuousCDF};

/// Smallest share a bin is given in PSI and Jensen–Shannon, so an empty bin
/// does not make them infinite (the convention of most PSI implementations).
pub const EPSILON: f64 = 1e-4;

/// The Kolmogorov–Smirnov and Wasserstein-1 distances between two sorted
/// samples (NaN-free), each point weighing `1 / len` of its sample.
///
/// Returns `(ks, wasserstein)`; both are 0 when either sample is empty.
pub fn ks_wasserstein(a: &[f64], b: &[f64]) -> (f64, f64) {
    if a.is_empty() || b.is_empty() {
        return (0.0, 0.0);
    }
    let (n, m) = (a.len(), b.len());
    let (wa, wb) = (1.0 / n as f64, 1.0 / m as f64);
    let at = |s: &[f64], k: usize| if k < s.len() { s[k] } else { f64::INFINITY };
    let (mut i, mut j) = (0usize, 0usize);
    let (mut ks, mut area) = (0.0f64, 0.0f64);
    // One point per step, the smaller first; which side moves is data, so
    // the step is written without a branch on it. The gap is measured only
    // once every point equal to the current value has moved its CDF
    // (counting, not adding weights, keeps a full CDF at exactly 1).
    while i < n || j < m {
        let (x, y) = (at(a, i), at(b, j));
        // An exhausted side never moves (it reads as +inf, which a value of
        // the other side can equal).
        let take_a = i < n && (j >= m || x <= y);
        let v = if take_a { x } else { y };
        i += usize::from(take_a);
        j += usize::from(!take_a);
        let next = at(a, i).min(at(b, j));
        if next > v {
            let gap = (i as f64 * wa - j as f64 * wb).abs();
            ks = ks.max(gap);
            if next.is_finite() {
                area += gap * (next - v);
            }
        }
    }
    (ks, area)
}

/// The asymptotic p-value of a two-sample Kolmogorov–Smirnov distance `d`
/// between samples of `n` and `m` rows: Q_KS(λ) with Stephens' small-sample
/// correction, λ = (√n_e + 0.12 + 0.11/√n_e)·d, n_e = nm/(n+m)
/// (Numerical Recipes §14.3; scipy's `ks_2samp(method="asymp")` is the same
/// distribution without the correction).
pub fn ks_p_value(d: f64, n: u64, m: u64) -> f64 {
    if n == 0 || m == 0 || d <= 0.0 {
        return 1.0;
    }
    let ne = (n as f64 * m as f64) / (n as f64 + m as f64);
    let en = ne.sqrt();
    let lambda = (en + 0.12 + 0.11 / en) * d;
    kolmogorov_q(lambda)
}

/// Q_KS(λ) = 2 Σ_{j≥1} (-1)^{j-1} e^{-2 j² λ²}, the Kolmogorov distribution's
/// survival function.
fn kolmogorov_q(lambda: f64) -> f64 {
    if lambda < 0.2 {
        return 1.0;
    }
    let a2 = -2.0 * lambda * lambda;
    let mut sum = 0.0;
    let mut sign = 2.0;
    let mut last = 0.0f64;
    for j in 1..=100 {
        let term = sign * (a2 * (j * j) as f64).exp();
        sum += term;
        if term.abs() <= 1e-10 * last || term.abs() <= 1e-300 {
            return sum.clamp(0.0, 1.0);
        }
        sign = -sign;
        last = term.abs();
    }
    // The series did not converge: λ is tiny, the samples indistinguishable.
    1.0
}

/// Pearson's chi-squared test of homogeneity on a 2×k table of counts (the
/// reference's and the current sample's count per category; scipy's
/// `chi2_contingency` without Yates' correction). Categories empty on both
/// sides are left out. Returns `(statistic, degrees of freedom, p-value)`.
pub fn chi2_homogeneity(reference: &[f64], current: &[f64]) -> (f64, usize, f64) {
    let rn: f64 = reference.iter().sum();
    let cn: f64 = current.iter().sum();
    let n = rn + cn;
    if rn <= 0.0 || cn <= 0.0 {
        return (0.0, 0, 1.0);
    }
    let mut stat = 0.0;
    let mut k = 0usize;
    for (&r, &c) in reference.iter().zip(current) {
        let col = r + c;
        if col <= 0.0 {
            continue;
        }
        k += 1;
        let er = rn * col / n;
        let ec = cn * col / n;
        stat += (r - er) * (r - er) / er + (c - ec) * (c - ec) / ec;
    }
    if k < 2 {
        return (0.0, 0, 1.0);
    }
    let df = k - 1;
    let p = ChiSquared::new(df as f64).map_or(1.0, |d| d.sf(stat));
    (stat, df, p)
}

/// The two-sided p-value that two rates `x1/n1` and `x2/n2` are the same (a
/// pooled two-proportion z-test): how null rates are compared.
pub fn two_proportion_p_value(x1: u64, n1: u64, x2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let p = (x1 + x2) as f64 / (n1f + n2f);
    let se = (p * (1.0 - p) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se <= 0.0 {
        return 1.0;
    }
    let z = ((x1 as f64 / n1f) - (x2 as f64 / n2f)).abs() / se;
    statrs::function::erf::erfc(z / std::f64::consts::SQRT_2)
}

/// Population stability index Σ (c − r)·ln(c / r) over matching shares,
/// each floored at [`EPSILON`].
pub fn psi(reference: &[f64], current: &[f64]) -> f64 {
    reference
        .iter()
        .zip(current)
        .map(|(&r, &c)| {
            let (r, c) = (r.max(EPSILON), c.max(EPSILON));
            (c - r) * (c / r).ln()
        })
        .sum()
}

/// The Jensen–Shannon distance (the square root of the divergence, base 2,
/// so between 0 and 1; scipy's `jensenshannon(p, q, base=2)`) between two
/// share vectors.
pub fn jensen_shannon(reference: &[f64], current: &[f64]) -> f64 {
    let rs: f64 = reference.iter().sum();
    let cs: f64 = current.iter().sum();
    if rs <= 0.0 || cs <= 0.0 {
        return 0.0;
    }
    let mut d = 0.0;
    for (&r, &c) in reference.iter().zip(current) {
        let (p, q) = (r / rs, c / cs);
        let m = 0.5 * (p + q);
        if p > 0.0 {
            d += 0.5 * p * (p / m).log2();
        }
        if q > 0.0 {
            d += 0.5 * q * (q / m).log2();
        }
    }
    d.max(0.0).sqrt()
}

/// Shares of a sorted sample that fall in each bin `(-inf, e0], (e0, e1], …,
/// (e_last, +inf)` of the sorted `edges`.
pub fn bin_shares(sorted: &[f64], edges: &[f64]) -> Vec<f64> {
    let n = sorted.len().max(1) as f64;
    let mut out = Vec::with_capacity(edges.len() + 1);
    let mut below = 0usize;
    for &e in edges {
        let upto = sorted.partition_point(|&v| v <= e);
        out.push((upto - below) as f64 / n);
        below = upto;
    }
    out.push((sorted.len() - below) as f64 / n);
    out
}

/// The value at quantile `q` (0..=1) of a sorted, non-empty sample, by
/// linear interpolation between the closest ranks (numpy's default).
pub fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q.clamp(0.0, 1.0) * (sorted.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    let t = pos - lo as f64;
    sorted[lo] + (sorted[hi] - sorted[lo]) * t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn infinite_values_end_the_merge() {
        let (ks, _) = ks_wasserstein(&[1.0, 2.0, 3.0], &[1.0, f64::INFINITY]);
        assert!((ks - 0.5).abs() < 1e-12, "{ks}");
        let (ks, _) = ks_wasserstein(&[f64::INFINITY], &[f64::NEG_INFINITY, f64::INFINITY]);
        assert!((ks - 0.5).abs() < 1e-12, "{ks}");
    }

    #[test]
    fn ks_and_wasserstein_match_hand_computed_values() {
        // CDFs: a steps at 1,2,3; b at 2,3,4 → the gap is 1/3 on [1,4),
        // so KS = 1/3 and the area is 3 × 1/3 = 1.
        let (ks, w) = ks_wasserstein(&[1.0, 2.0, 3.0], &[2.0, 3.0, 4.0]);
        assert!((ks - 1.0 / 3.0).abs() < 1e-12, "{ks}");
        assert!((w - 1.0).abs() < 1e-12, "{w}");
        // Identical samples, ties included, are at distance 0.
        let s = [0.0, 1.0, 1.0, 1.0, 5.0];
        assert_eq!(ks_wasserstein(&s, &s), (0.0, 0.0));
        // A shift by c moves Wasserstein by exactly c.
        let shifted: Vec<f64> = s.iter().map(|v| v + 2.5).collect();
        let (ks, w) = ks_wasserstein(&s, &shifted);
        assert!((w - 2.5).abs() < 1e-12, "{w}");
        assert!(ks > 0.5);
    }

    #[test]
    fn ks_p_value_agrees_with_scipy_asymptotic_values() {
        // scipy.stats.kstwobign.sf(λ) at λ = 1.0 is 0.26999967; with n = m =
        // 10,000 the correction is tiny.
        let d = 1.0 / (5000f64).sqrt();
        let p = ks_p_value(d, 10_000, 10_000);
        assert!((p - 0.27).abs() < 0.005, "{p}");
        assert_eq!(ks_p_value(0.0, 10, 10), 1.0);
        assert!(ks_p_value(0.5, 1000, 1000) < 1e-50);
    }

    #[test]
    fn chi2_detects_a_changed_share_and_not_an_equal_one() {
        let (_, df, p) = chi2_homogeneity(&[500.0, 300.0, 200.0], &[250.0, 150.0, 100.0]);
        assert_eq!(df, 2);
        assert!(p > 0.99, "{p}");
        // scipy.stats.chi2_contingency([[500,300,200],[100,300,100]],
        // correction=False) → statistic 150.0, p = 2.6786e-33.
        let (s, _, p) = chi2_homogeneity(&[500.0, 300.0, 200.0], &[100.0, 300.0, 100.0]);
        assert!((s - 150.0).abs() < 1e-9, "{s}");
        assert!((p / 2.678636961808087e-33 - 1.0).abs() < 1e-6, "{p}");
    }

    #[test]
    fn psi_and_jensen_shannon_are_zero_for_equal_shares_and_grow_with_change() {
        let r = [0.25, 0.25, 0.25, 0.25];
        assert_eq!(psi(&r, &r), 0.0);
        assert_eq!(jensen_shannon(&r, &r), 0.0);
        let c = [0.1, 0.2, 0.3, 0.4];
        let c2 = [0.0, 0.0, 0.5, 0.5];
        assert!(psi(&r, &c) > 0.0 && psi(&r, &c2) > psi(&r, &c));
        assert!(jensen_shannon(&r, &c2) > jensen_shannon(&r, &c));
        // Disjoint supports are at the largest distance, 1.
        assert!((jensen_shannon(&[1.0, 0.0], &[0.0, 1.0]) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn bin_shares_put_values_on_an_edge_in_the_lower_bin() {
        let shares = bin_shares(&[1.0, 2.0, 2.0, 3.0], &[2.0]);
        assert_eq!(shares, vec![0.75, 0.25]);
    }

    #[test]
    fn null_rates_far_apart_have_a_small_p_value() {
        assert!(two_proportion_p_value(10, 1000, 100, 1000) < 1e-10);
        assert!(two_proportion_p_value(10, 1000, 11, 1000) > 0.5);
        assert_eq!(two_proportion_p_value(0, 1000, 0, 1000), 1.0);
    }
}
