//! Anomalies in operational series: p99 latency per window, error rate per
//! window, throughput.
//!
//! # Method
//!
//! Each point is compared with a rolling baseline, the median of the
//! `window` points before it, on a robust scale, the median absolute
//! deviation (MAD) times 1.4826, which estimates the standard deviation of
//! Gaussian noise but is not moved by a few outliers (Hampel, "The influence
//! curve and its role in robust estimation", JASA 69, 1974; Rousseeuw and
//! Croux, "Alternatives to the median absolute deviation", JASA 88, 1993).
//! The robust z-score of a point is `(value - median) / scale`. Two things
//! are flagged:
//!
//! - A **spike**: a single point with `|z|` above the threshold (Hampel's
//!   identifier, as in Iglewicz and Hoaglin, "How to Detect and Handle
//!   Outliers", 1993). A spike is left out of later baselines, so one spike
//!   does not widen the scale and hide the next.
//! - A **shift**: a sustained change of level, found by a two-sided tabular
//!   CUSUM (Page, "Continuous inspection schemes", Biometrika 41, 1954) on
//!   the robust z-scores:
//!
//!   ```text
//!   S⁺ = max(0, S⁺ + ψ(z) - k)    S⁻ = max(0, S⁻ - ψ(z) - k)    alarm when S⁺ > h or S⁻ > h
//!   ```
//!
//!   with slack `k` = [`CUSUM_SLACK`] and decision limit `h` =
//!   [`CUSUM_LIMIT`]. The shift is reported once, at the point where a sum
//!   crosses `h`; then both sums reset and the baseline starts again from the
//!   points since that sum last left 0 (or since the jump, for a jump), so it
//!   describes the new level; verdicts resume once it holds `min_points`.
//!
//! The CUSUM is made robust in two ways, after Lucas and Crosier, "Robust
//! CUSUM: a robustness study for CUSUM quality control schemes" (Commun.
//! Statist. Theory Meth. 11, 1982). Ordinary points enter Huber-clipped,
//! `ψ(z) = clamp(z, ±`[`CUSUM_CLIP`]`)`, so heavy-tailed noise does not add up
//! to a shift. An extreme point (`|z|` above the threshold) enters only when
//! the next valid point is extreme on the same side too, and then both enter
//! clipped at `±threshold` instead: a lone spike never feeds the CUSUM, while a jump
//! to a new level far from the old one is confirmed at its second point.
//!
//! A 20-point baseline is itself noisy (its median is off by about 0.3
//! standard deviations and its scale by about 25%, and both persist from one
//! point to the next), so the textbook `h = 4` or `5`, which assume a known
//! in-control level, would raise a false shift every few hundred points. In
//! simulation with Gaussian noise and the default parameters, `k = 0.5`,
//! `h = 8` and a clip of 2 give one false shift in about 4,000 points (false
//! spikes, about one in 700 points at threshold 5, are the more common false
//! alarm; a 50-point window makes them about one in 8,000), find a shift of
//! 3 standard deviations within about 6 points in 98% of cases and one of 10
//! at its second point. Shifts under about 2 standard deviations are often
//! absorbed by the rolling baseline before the CUSUM confirms them.
//!
//! The scale has a floor of `min_scale_fraction × |median|`, so a series that
//! is flat (a MAD of 0) does not alarm on changes too small to matter. Where
//! that is 0 too (a median of 0), the mean absolute deviation × 1.2533 stands
//! in for the MAD, as usual for modified z-scores; a baseline of identical zeros has no
//! scale at all, and any departure from it is flagged with a score clamped to
//! the largest finite `f64`.
//!
//! NaN and infinite points are skipped: never flagged, never part of a
//! baseline.
//!
//! ```
//! use kiln_monitor::anomaly::{AnomalyKind, DetectorParams, detect};
//!
//! let mut latency = vec![100.0, 102.0, 99.0, 101.0, 98.0, 100.0, 103.0, 101.0, 99.0, 100.0];
//! latency.push(500.0);
//! latency.extend([101.0, 100.0, 99.0]);
//! let found = detect(&latency, &DetectorParams::default());
//! assert_eq!(found.len(), 1);
//! assert_eq!((found[0].index, found[0].kind), (10, AnomalyKind::Spike));
//! ```

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

/// CUSUM slack `k`, in robust z units: the drift each point is allowed
/// before it counts towards a shift. Shifts smaller than about `2k` take long
/// to find.
pub const CUSUM_SLACK: f64 = 0.5;

/// CUSUM decision limit `h`, in robust z units: a shift is reported when a
/// cumulative sum exceeds it.
pub const CUSUM_LIMIT: f64 = 8.0;

/// Huber clip of the z-scores of ordinary points before they enter the
/// CUSUM, in robust z units: no single point adds more than
/// `CUSUM_CLIP - CUSUM_SLACK`, so heavy-tailed noise does not add up to a
/// false shift.
pub const CUSUM_CLIP: f64 = 2.0;

/// MAD × this estimates the standard deviation of Gaussian noise.
const MAD_TO_SD: f64 = 1.4826;

/// Mean absolute deviation × this estimates the standard deviation of
/// Gaussian noise.
const MEAN_AD_TO_SD: f64 = 1.2533;

/// Settings of [`detect`]; missing fields take their defaults when
/// deserialised.
#[derive(Debug, Clone, Copy, Serialize, Deserialize)]
#[serde(default)]
pub struct DetectorParams {
    /// Number of earlier points the baseline is computed from.
    pub window: usize,
    /// Robust z-score beyond which a point is a spike.
    pub threshold: f64,
    /// Baseline points needed before any verdict (at most `window` are ever
    /// needed).
    pub min_points: usize,
    /// Floor of the scale as a fraction of `|median|`, so that a flat series
    /// does not alarm on noise: with 0.01, a change under 1% of the level
    /// is never a spike.
    pub min_scale_fraction: f64,
}

impl Default for DetectorParams {
    fn default() -> Self {
        Self {
            window: 20,
            threshold: 5.0,
            min_points: 8,
            min_scale_fraction: 0.01,
        }
    }
}

/// A flagged point of a series.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Anomaly {
    /// Position of the point in the series.
    pub index: usize,
    /// The point's value.
    pub value: f64,
    /// Median of the baseline the point was compared with.
    pub baseline: f64,
    /// Scale of the baseline: 1.4826 × MAD, with the floors described in the
    /// [module docs](self).
    pub scale: f64,
    /// Robust z-score, `(value - baseline) / scale`.
    pub score: f64,
    /// Spike or shift.
    pub kind: AnomalyKind,
}

/// What kind of anomaly a point is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AnomalyKind {
    /// A single point far from the baseline.
    Spike,
    /// A sustained change of level, found by the robust CUSUM; reported at
    /// the point where it is confirmed, usually a few points after it began.
    Shift,
}

/// Anomalies in `series`, in time order.
///
/// Each point is compared with the median and MAD of the `window` valid
/// points before it that were not spikes; there is no verdict until
/// `min_points` of them exist. NaN (and infinite) points are skipped and
/// never flagged. See the [module docs](self) for the method.
///
/// The verdict on a point depends only on the points up to it, so
/// `detect(&series[..=i], params)` flags `i` exactly when `detect(&series,
/// params)` does.
pub fn detect(series: &[f64], params: &DetectorParams) -> Vec<Anomaly> {
    let mut detector = Detector::new(params);
    series
        .iter()
        .enumerate()
        .filter_map(|(index, &value)| detector.push(index, value))
        .collect()
}

/// The anomaly at the last point of `series`, if it is one: what an alert
/// rule evaluated on each new window asks. `None` when the last point is NaN.
pub fn last_is_anomalous(series: &[f64], params: &DetectorParams) -> Option<Anomaly> {
    let last = series.len().checked_sub(1)?;
    detect(series, params)
        .pop()
        .filter(|anomaly| anomaly.index == last)
}

/// One side of the two-sided CUSUM.
#[derive(Debug, Clone, Copy, Default)]
struct Cusum {
    /// The cumulative sum, never negative.
    sum: f64,
    /// Index of the point at which the sum last left 0: where the shift it
    /// tracks began.
    start: usize,
}

impl Cusum {
    /// Adds `z` (oriented so that positive means "towards a shift on this
    /// side") from point `index`.
    fn add(&mut self, index: usize, z: f64) {
        if self.sum == 0.0 {
            self.start = index;
        }
        self.sum = (self.sum + z - CUSUM_SLACK).max(0.0);
    }
}

/// An extreme point whose z-score enters the CUSUM only if the next valid
/// point is extreme on the same side too.
#[derive(Debug, Clone, Copy)]
struct Pending {
    /// The point's index.
    index: usize,
    /// Its clipped z-score.
    z: f64,
}

/// The streaming state behind [`detect`].
#[derive(Debug)]
struct Detector {
    /// The settings.
    params: DetectorParams,
    /// Baseline points needed for a verdict: `min_points`, at least 1 and
    /// at most `window`.
    needed: usize,
    /// The last `window` valid points that were not spikes.
    baseline: VecDeque<f64>,
    /// The last `window` valid points with their indices, spikes included,
    /// from which the baseline re-forms after a shift.
    recent: VecDeque<(usize, f64)>,
    /// CUSUM of upward shifts.
    up: Cusum,
    /// CUSUM of downward shifts.
    down: Cusum,
    /// Side of the previous valid point if it was extreme (`true`: above).
    last_extreme: Option<bool>,
    /// An extreme point not yet fed to the CUSUM.
    pending: Option<Pending>,
    /// Scratch space for medians.
    scratch: Vec<f64>,
}

impl Detector {
    fn new(params: &DetectorParams) -> Self {
        Self {
            params: *params,
            needed: params.min_points.max(1).min(params.window),
            baseline: VecDeque::with_capacity(params.window + 1),
            recent: VecDeque::with_capacity(params.window + 1),
            up: Cusum::default(),
            down: Cusum::default(),
            last_extreme: None,
            pending: None,
            scratch: Vec::with_capacity(params.window),
        }
    }

    /// Takes the next point and returns its verdict.
    fn push(&mut self, index: usize, value: f64) -> Option<Anomaly> {
        let window = self.params.window;
        if !value.is_finite() || window == 0 {
            return None;
        }
        push_bounded(&mut self.recent, (index, value), window);
        if self.baseline.len() < self.needed {
            push_bounded(&mut self.baseline, value, window);
            return None;
        }

        let (median, scale) =
            robust_location_scale(&self.baseline, &mut self.scratch, &self.params);
        let score = ((value - median) / scale).clamp(f64::MIN, f64::MAX);
        let threshold = self.params.threshold;
        let extreme = score.abs() > threshold;
        let above = score > 0.0;

        if extreme {
            let limit = threshold.abs().max(CUSUM_CLIP);
            let clipped = score.clamp(-limit, limit);
            match self.pending.take() {
                // The second extreme point on one side: both count.
                Some(pending) if self.last_extreme == Some(above) => {
                    self.feed(pending.index, pending.z);
                    self.feed(index, clipped);
                    // The new level began with the jump, whatever noise the
                    // sum had gathered before it.
                    let side = if above { &mut self.up } else { &mut self.down };
                    side.start = pending.index;
                }
                // Later extreme points of a run count at once.
                _ if self.last_extreme == Some(above) => self.feed(index, clipped),
                // A first extreme point waits for the next.
                _ => self.pending = Some(Pending { index, z: clipped }),
            }
            self.last_extreme = Some(above);
        } else {
            // The extreme point before this one, if any, was a lone spike.
            self.pending = None;
            self.last_extreme = None;
            self.feed(index, score.clamp(-CUSUM_CLIP, CUSUM_CLIP));
        }

        let anomaly = |kind| Anomaly {
            index,
            value,
            baseline: median,
            scale,
            score,
            kind,
        };
        let crossed = [self.up, self.down]
            .into_iter()
            .filter(|side| side.sum > CUSUM_LIMIT)
            .max_by(|a, b| a.sum.total_cmp(&b.sum));
        if let Some(side) = crossed {
            self.restart_from(side.start);
            return Some(anomaly(AnomalyKind::Shift));
        }
        if extreme {
            return Some(anomaly(AnomalyKind::Spike));
        }
        push_bounded(&mut self.baseline, value, window);
        None
    }

    /// Feeds a clipped z-score to both sides of the CUSUM.
    fn feed(&mut self, index: usize, z: f64) {
        self.up.add(index, z);
        self.down.add(index, -z);
    }

    /// After a shift that began at point `start`: resets the CUSUM and
    /// rebuilds the baseline from the points since then.
    fn restart_from(&mut self, start: usize) {
        self.up = Cusum::default();
        self.down = Cusum::default();
        self.pending = None;
        self.last_extreme = None;
        self.baseline.clear();
        self.baseline.extend(
            self.recent
                .iter()
                .filter(|&&(index, _)| index >= start)
                .map(|&(_, value)| value),
        );
    }
}

/// Appends `item`, dropping the oldest items beyond `bound`.
fn push_bounded<T>(items: &mut VecDeque<T>, item: T, bound: usize) {
    items.push_back(item);
    while items.len() > bound {
        items.pop_front();
    }
}

/// Median and floored robust scale of a non-empty baseline.
fn robust_location_scale(
    baseline: &VecDeque<f64>,
    scratch: &mut Vec<f64>,
    params: &DetectorParams,
) -> (f64, f64) {
    scratch.clear();
    scratch.extend(baseline.iter().copied());
    let median = median_in_place(scratch);
    let mean_ad = scratch.iter().map(|x| (x - median).abs()).sum::<f64>() / scratch.len() as f64;
    for x in scratch.iter_mut() {
        *x = (*x - median).abs();
    }
    let mad = MAD_TO_SD * median_in_place(scratch);
    let mut scale = mad.max(params.min_scale_fraction * median.abs());
    if scale == 0.0 {
        scale = MEAN_AD_TO_SD * mean_ad;
    }
    if scale.is_nan() || scale <= 0.0 {
        // Identical zeros: no scale, so any departure is as far as can be.
        scale = f64::MIN_POSITIVE;
    }
    (median, scale)
}

/// Median of non-empty `values` (reordered).
fn median_in_place(values: &mut [f64]) -> f64 {
    let mid = values.len() / 2;
    let even = values.len().is_multiple_of(2);
    let (below, &mut upper, _) = values.select_nth_unstable_by(mid, f64::total_cmp);
    if even {
        let lower = below.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        lower / 2.0 + upper / 2.0
    } else {
        upper
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::SmallRng;
    use rand::{Rng, SeedableRng};

    use super::*;

    /// `n` points of Gaussian noise (Box–Muller) with mean `level` and
    /// standard deviation `sd`.
    fn noise(rng: &mut SmallRng, n: usize, level: f64, sd: f64) -> Vec<f64> {
        (0..n)
            .map(|_| {
                let u: f64 = 1.0 - rng.random::<f64>();
                let v: f64 = rng.random();
                level + sd * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
            })
            .collect()
    }

    fn kinds(found: &[Anomaly]) -> Vec<(usize, AnomalyKind)> {
        found.iter().map(|a| (a.index, a.kind)).collect()
    }

    #[test]
    fn flat_noisy_series_raises_nothing() {
        // Noise of 0.5% of the level, under the 1% scale floor.
        let params = DetectorParams::default();
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let series = noise(&mut rng, 1000, 100.0, 0.5);
            assert_eq!(kinds(&detect(&series, &params)), [], "seed {seed}");
        }
    }

    #[test]
    fn false_alarms_in_noise_above_the_scale_floor_are_rare() {
        // Noise of 3% of the level, where the 20-point MAD sets the scale:
        // about one false spike in 700 points and one false shift in 4,000
        // are expected (see the module docs); allow twice as many.
        let params = DetectorParams::default();
        let (mut spikes, mut shifts) = (0, 0);
        for seed in 0..10 {
            let mut rng = SmallRng::seed_from_u64(seed);
            for anomaly in detect(&noise(&mut rng, 2000, 100.0, 3.0), &params) {
                match anomaly.kind {
                    AnomalyKind::Spike => spikes += 1,
                    AnomalyKind::Shift => shifts += 1,
                }
            }
        }
        assert!(
            spikes <= 2 * 20_000 / 700,
            "{spikes} false spikes in 20,000 points"
        );
        assert!(
            shifts <= 2 * 20_000 / 4000,
            "{shifts} false shifts in 20,000 points"
        );
    }

    #[test]
    fn single_tenfold_spike_is_a_spike_at_its_index_and_nothing_else() {
        let mut rng = SmallRng::seed_from_u64(1);
        let mut series = noise(&mut rng, 200, 100.0, 3.0);
        series[120] *= 10.0;
        let found = detect(&series, &DetectorParams::default());
        assert_eq!(kinds(&found), [(120, AnomalyKind::Spike)]);
        let spike = &found[0];
        assert_eq!(spike.value, series[120]);
        assert!((spike.baseline - 100.0).abs() < 3.0, "{spike:?}");
        assert!(spike.score > 100.0, "{spike:?}");
    }

    #[test]
    fn downward_spike_is_a_spike_too() {
        let mut rng = SmallRng::seed_from_u64(2);
        let mut series = noise(&mut rng, 100, 100.0, 3.0);
        series[50] = 10.0;
        let found = detect(&series, &DetectorParams::default());
        assert_eq!(kinds(&found), [(50, AnomalyKind::Spike)]);
        assert!(found[0].score < -5.0);
    }

    #[test]
    fn spikes_are_left_out_of_later_baselines() {
        // Spikes at every other point: were they part of the baseline, half
        // of a window would soon be spikes, its MAD would blow up and later
        // spikes would go unflagged.
        let mut rng = SmallRng::seed_from_u64(3);
        let mut series = noise(&mut rng, 100, 100.0, 3.0);
        let spikes: Vec<usize> = (40..80).step_by(2).collect();
        for &i in &spikes {
            series[i] = 400.0;
        }
        let found = detect(&series, &DetectorParams::default());
        let expected: Vec<_> = spikes.iter().map(|&i| (i, AnomalyKind::Spike)).collect();
        assert_eq!(kinds(&found), expected);
        assert!(found.iter().all(|a| a.scale < 10.0), "{found:?}");
    }

    #[test]
    fn level_shift_is_a_shift_within_a_few_points_of_the_change() {
        for seed in 0..20 {
            let mut rng = SmallRng::seed_from_u64(seed);
            let mut series = noise(&mut rng, 100, 100.0, 3.0);
            series.extend(noise(&mut rng, 100, 130.0, 3.0));
            let found = detect(&series, &DetectorParams::default());
            // Shifts from the change on (false alarms before it are the
            // subject of another test).
            let shifts: Vec<usize> = found
                .iter()
                .filter(|a| a.kind == AnomalyKind::Shift && a.index >= 100)
                .map(|a| a.index)
                .collect();
            assert_eq!(shifts.len(), 1, "seed {seed}: {:?}", kinds(&found));
            assert!(
                (100..=103).contains(&shifts[0]),
                "seed {seed}: {:?}",
                kinds(&found)
            );
            // Around the change, at most the first point of the new level is
            // also flagged, as a spike.
            let around: Vec<_> = kinds(&found)
                .into_iter()
                .filter(|&(i, kind)| (100..=103).contains(&i) && kind == AnomalyKind::Spike)
                .collect();
            assert!(
                around.is_empty() || around == [(100, AnomalyKind::Spike)],
                "seed {seed}: {:?}",
                kinds(&found)
            );
        }
    }

    #[test]
    fn downward_shift_of_three_scale_units_is_found() {
        let mut rng = SmallRng::seed_from_u64(4);
        let mut series = noise(&mut rng, 60, 50.0, 2.0);
        series.extend(noise(&mut rng, 60, 44.0, 2.0));
        let found = detect(&series, &DetectorParams::default());
        let shifts: Vec<&Anomaly> = found
            .iter()
            .filter(|a| a.kind == AnomalyKind::Shift)
            .collect();
        assert_eq!(shifts.len(), 1, "{:?}", kinds(&found));
        assert!((60..=72).contains(&shifts[0].index), "{:?}", kinds(&found));
        assert!(shifts[0].score < 0.0);
    }

    #[test]
    fn nan_points_are_skipped() {
        let mut rng = SmallRng::seed_from_u64(5);
        let mut series = noise(&mut rng, 60, 100.0, 3.0);
        series[30] = f64::NAN;
        series[31] = f64::INFINITY;
        series[32] = 1000.0;
        series[33] = f64::NAN;
        let found = detect(&series, &DetectorParams::default());
        assert_eq!(kinds(&found), [(32, AnomalyKind::Spike)]);
        let nan = vec![f64::NAN; 30];
        assert_eq!(detect(&nan, &DetectorParams::default()), []);
    }

    #[test]
    fn small_change_of_a_constant_series_under_the_scale_floor_is_not_flagged() {
        let mut series = vec![200.0; 40];
        series.extend([200.8, 201.0, 199.0]);
        series.extend(vec![201.5; 40]);
        assert_eq!(detect(&series, &DetectorParams::default()), []);
        // A change well over the floor is.
        let mut series = vec![200.0; 40];
        series.extend(vec![230.0; 5]);
        let found = detect(&series, &DetectorParams::default());
        assert_eq!(
            kinds(&found),
            [(40, AnomalyKind::Spike), (41, AnomalyKind::Shift)]
        );
    }

    #[test]
    fn constant_zero_series_flags_any_departure_with_a_finite_score() {
        let mut series = vec![0.0; 20];
        series.push(0.01);
        series.extend(vec![0.0; 5]);
        let found = detect(&series, &DetectorParams::default());
        assert_eq!(kinds(&found), [(20, AnomalyKind::Spike)]);
        assert!(found[0].score.is_finite() && found[0].score > 1e100);
        assert!(serde_json::to_string(&found).is_ok());
    }

    #[test]
    fn too_few_points_give_no_verdict() {
        let params = DetectorParams::default();
        // Eight points of baseline are needed: the ninth is the first judged.
        let mut series = vec![100.0, 101.0, 99.0, 100.0, 102.0, 98.0, 100.0, 101.0];
        assert_eq!(last_is_anomalous(&series, &params), None);
        series[7] = 1e6;
        assert_eq!(detect(&series, &params), []);
        series[7] = 101.0;
        series.push(1e6);
        assert_eq!(
            last_is_anomalous(&series, &params).map(|a| a.index),
            Some(8)
        );
        assert_eq!(last_is_anomalous(&[], &params), None);
    }

    #[test]
    fn last_is_anomalous_agrees_with_detect_at_every_prefix() {
        let mut rng = SmallRng::seed_from_u64(6);
        let mut series = noise(&mut rng, 80, 100.0, 3.0);
        series[30] = 500.0;
        series.extend(noise(&mut rng, 40, 140.0, 3.0));
        series[100] = f64::NAN;
        let params = DetectorParams::default();
        let found = detect(&series, &params);
        assert!(found.len() >= 2, "{:?}", kinds(&found));
        for end in 0..series.len() {
            let expected = found.iter().find(|a| a.index == end).cloned();
            assert_eq!(
                last_is_anomalous(&series[..=end], &params),
                expected,
                "at {end}"
            );
        }
    }

    #[test]
    fn params_deserialise_with_defaults_for_missing_fields() {
        let params: DetectorParams = serde_json::from_str(r#"{"threshold": 4.0}"#).unwrap();
        assert_eq!(params.threshold, 4.0);
        assert_eq!(params.window, 20);
        let kind = serde_json::to_string(&AnomalyKind::Shift).unwrap();
        assert_eq!(kind, r#""shift""#);
    }
}
