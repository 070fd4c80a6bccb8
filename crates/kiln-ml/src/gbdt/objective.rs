//! Loss functions: gradients, hessians, starting scores and the link from
//! raw scores to predictions.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

/// What the boosted trees minimise.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
pub enum Objective {
    /// Binary log loss; scores are log-odds of class 1.
    Binary,
    /// Softmax cross-entropy over `n_classes`; one tree per class per round.
    Multiclass { n_classes: usize },
    /// Squared error.
    L2,
    /// Absolute error; leaf values are refitted to residual medians.
    L1,
    /// Huber loss with threshold `delta`.
    Huber { delta: f64 },
    /// Poisson deviance with a log link, for counts.
    Poisson,
    /// Pinball loss for the `alpha` quantile; leaves refitted to it.
    Quantile { alpha: f64 },
}

/// LightGBM's safeguard on Poisson hessians.
const POISSON_MAX_DELTA_STEP: f64 = 0.7;

impl Objective {
    /// Raw scores per row (trees per round).
    pub fn n_outputs(&self) -> usize {
        match self {
            Objective::Multiclass { n_classes } => *n_classes,
            _ => 1,
        }
    }

    /// A stable name, for reports.
    pub fn name(&self) -> &'static str {
        match self {
            Objective::Binary => "binary",
            Objective::Multiclass { .. } => "multiclass",
            Objective::L2 => "l2",
            Objective::L1 => "l1",
            Objective::Huber { .. } => "huber",
            Objective::Poisson => "poisson",
            Objective::Quantile { .. } => "quantile",
        }
    }

    /// Objectives whose leaf values are refitted to a residual quantile.
    pub(crate) fn renew_quantile(&self) -> Option<f64> {
        match self {
            Objective::L1 => Some(0.5),
            Objective::Quantile { alpha } => Some(*alpha),
            _ => None,
        }
    }

    /// The constant starting score(s) that minimise the loss.
    pub(crate) fn init_scores(&self, y: &[f64]) -> Vec<f64> {
        let n = y.len().max(1) as f64;
        match self {
            Objective::Binary => {
                let p = (y.iter().sum::<f64>() / n).clamp(1e-15, 1.0 - 1e-15);
                vec![(p / (1.0 - p)).ln()]
            }
            Objective::Multiclass { n_classes } => {
                let mut counts = vec![0.0; *n_classes];
                for &c in y {
                    counts[c as usize] += 1.0;
                }
                counts
                    .iter()
                    .map(|c| (c / n).clamp(1e-15, 1.0).ln())
                    .collect()
            }
            Objective::L2 | Objective::Huber { .. } => vec![y.iter().sum::<f64>() / n],
            Objective::L1 => vec![quantile(&mut y.to_vec(), 0.5)],
            Objective::Quantile { alpha } => vec![quantile(&mut y.to_vec(), *alpha)],
            Objective::Poisson => vec![(y.iter().sum::<f64>() / n).max(1e-15).ln()],
        }
    }

    /// Writes gradient and hessian pairs of every row and output into
    /// `gh`, output-major (`gh[k * n + row]`). `scores` is row-major
    /// `n × n_outputs`. Element-wise, so parallel chunks do not change the
    /// result.
    pub(crate) fn gradients(&self, y: &[f64], scores: &[f64], gh: &mut [[f32; 2]]) {
        const CHUNK: usize = 8192;
        let n = y.len();
        match self {
            Objective::Multiclass { n_classes } => {
                let m = *n_classes;
                let factor = m as f64 / (m as f64 - 1.0);
                let mut probs = scores.to_vec();
                probs.par_chunks_mut(CHUNK * m).for_each(|c| {
                    for row in c.chunks_mut(m) {
                        softmax(row);
                    }
                });
                for (k, out) in gh.chunks_mut(n).enumerate() {
                    out.par_chunks_mut(CHUNK).enumerate().for_each(|(ci, out)| {
                        let start = ci * CHUNK;
                        for (j, g) in out.iter_mut().enumerate() {
                            let i = start + j;
                            let p = probs[i * m + k];
                            let t = if y[i] as usize == k { 1.0 } else { 0.0 };
                            *g = [(p - t) as f32, (factor * p * (1.0 - p)).max(1e-16) as f32];
                        }
                    });
                }
            }
            _ => {
                let f = |y: f64, s: f64| -> [f32; 2] {
                    match self {
                        Objective::Binary => {
                            let p = sigmoid(s);
                            [(p - y) as f32, (p * (1.0 - p)).max(1e-16) as f32]
                        }
                        Objective::L2 => [(s - y) as f32, 1.0],
                        Objective::L1 => [sign(s - y) as f32, 1.0],
                        Objective::Huber { delta } => [(s - y).clamp(-delta, *delta) as f32, 1.0],
                        Objective::Poisson => [
                            (s.exp() - y) as f32,
                            (s + POISSON_MAX_DELTA_STEP).exp() as f32,
                        ],
                        Objective::Quantile { alpha } => {
                            [(if s >= y { 1.0 - alpha } else { -alpha }) as f32, 1.0]
                        }
                        Objective::Multiclass { .. } => unreachable!(),
                    }
                };
                gh[..n]
                    .par_chunks_mut(CHUNK)
                    .zip(y.par_chunks(CHUNK).zip(scores.par_chunks(CHUNK)))
                    .for_each(|(out, (y, s))| {
                        for ((g, &y), &s) in out.iter_mut().zip(y).zip(s) {
                            *g = f(y, s);
                        }
                    });
            }
        }
    }

    /// Mean loss of raw `scores` against `y`, for early stopping.
    pub(crate) fn loss(&self, y: &[f64], scores: &[f64]) -> f64 {
        let n = y.len().max(1) as f64;
        let m = self.n_outputs();
        let total: f64 = match self {
            Objective::Binary => y
                .iter()
                .zip(scores)
                .map(|(&y, &s)| {
                    // log(1 + e^-z) computed stably, z = ±s.
                    let z = if y > 0.5 { s } else { -s };
                    softplus(-z)
                })
                .sum(),
            Objective::Multiclass { .. } => y
                .iter()
                .enumerate()
                .map(|(i, &y)| {
                    let row = &scores[i * m..(i + 1) * m];
                    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let lse = max + row.iter().map(|s| (s - max).exp()).sum::<f64>().ln();
                    lse - row[y as usize]
                })
                .sum(),
            Objective::L2 => y.iter().zip(scores).map(|(y, s)| (s - y).powi(2)).sum(),
            Objective::L1 => y.iter().zip(scores).map(|(y, s)| (s - y).abs()).sum(),
            Objective::Huber { delta } => y
                .iter()
                .zip(scores)
                .map(|(y, s)| {
                    let r = (s - y).abs();
                    if r <= *delta {
                        0.5 * r * r
                    } else {
                        delta * (r - 0.5 * delta)
                    }
                })
                .sum(),
            Objective::Poisson => y.iter().zip(scores).map(|(y, s)| s.exp() - y * s).sum(),
            Objective::Quantile { alpha } => y
                .iter()
                .zip(scores)
                .map(|(y, s)| {
                    let r = y - s;
                    if r >= 0.0 {
                        alpha * r
                    } else {
                        (alpha - 1.0) * r
                    }
                })
                .sum(),
        };
        total / n
    }

    /// Turns raw scores into predictions in place: probabilities for
    /// classifiers, means for Poisson.
    pub(crate) fn transform(&self, scores: &mut [f64]) {
        match self {
            Objective::Binary => scores.iter_mut().for_each(|s| *s = sigmoid(*s)),
            Objective::Multiclass { n_classes } => {
                for row in scores.chunks_mut(*n_classes) {
                    softmax(row);
                }
            }
            Objective::Poisson => scores.iter_mut().for_each(|s| *s = s.exp()),
            _ => {}
        }
    }
}

pub(crate) fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn softplus(x: f64) -> f64 {
    if x > 0.0 {
        x + (-x).exp().ln_1p()
    } else {
        x.exp().ln_1p()
    }
}

pub(crate) fn softmax(row: &mut [f64]) {
    let max = row.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for s in row.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    for s in row.iter_mut() {
        *s /= sum;
    }
}

fn sign(x: f64) -> f64 {
    if x > 0.0 {
        1.0
    } else if x < 0.0 {
        -1.0
    } else {
        0.0
    }
}

/// The `alpha` quantile of `v` (reordered), interpolated like numpy's default.
pub(crate) fn quantile(v: &mut [f64], alpha: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_unstable_by(f64::total_cmp);
    let pos = alpha * (v.len() - 1) as f64;
    let lo = pos.floor() as usize;
    let hi = pos.ceil() as usize;
    v[lo] + (v[hi] - v[lo]) * (pos - lo as f64)
}
