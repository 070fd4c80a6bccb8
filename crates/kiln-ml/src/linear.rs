//! Regularised linear models on a dense, already preprocessed (imputed,
//! one-hot encoded, standardised) feature matrix: ridge and lasso/elastic-net
//! regression, Poisson regression, binary logistic and multinomial (softmax)
//! regression.
//!
//! # Objective and penalty scaling
//!
//! With `n` rows, linear scores `η = W x + b` and a per-row loss `ℓ`, [`fit`]
//! minimises
//!
//! ```text
//! (1/n) · [ Σᵢ ℓ(yᵢ, ηᵢ)  +  (l2/2)·‖W‖²  +  l1·‖W‖₁ ]
//! ```
//!
//! where `‖W‖` runs over all coefficients but never over the intercepts `b`.
//! The losses are `½(y − η)²` (regression, [`Link::Identity`]),
//! `exp(η) − y·η` (regression, [`Link::Log`]: Poisson),
//! `log(1 + exp(η)) − y·η` (binary) and `logsumexp(η) − η_y` (multiclass).
//!
//! The penalties are therefore on the scale of the *summed* loss, so:
//!
//! * `l2` is scikit-learn's `1/C` for `LogisticRegression` (`C = 1` ⇔ `l2 = 1`,
//!   the default here as there);
//! * `l2` is exactly scikit-learn's `alpha` for `Ridge`: the normal equations
//!   are `(XᵀX + l2·I) w = Xᵀy` on centred data;
//! * `l2 = n·alpha` for `PoissonRegressor`, and `l1 = n·alpha·l1_ratio`,
//!   `l2 = n·alpha·(1 − l1_ratio)` for `Lasso`/`ElasticNet`.
//!
//! The leading `1/n` does not move the minimiser; it only makes `tol`
//! independent of the number of rows (see [`LinearParams::tol`]).
//!
//! # Solvers
//!
//! * Ridge (`Identity` link, `l1 = 0`): Cholesky on the centred normal
//!   equations, see [`fit`].
//! * Everything else: L-BFGS (memory 10, backtracking Armijo line search
//!   with quadratic interpolation). With `l1 > 0` it becomes OWL-QN
//!   (orthant-wise L-BFGS, Andrew & Gao 2007), which produces exact zeros.
//!
//! # Determinism
//!
//! The same input gives bit-identical coefficients whatever the number of
//! rayon threads: rows are cut into chunks whose size depends only on the
//! matrix's shape, each chunk's partial sums are computed on its own, and the
//! partial sums are added in chunk order.

use std::collections::VecDeque;
use std::ops::Range;

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::task::{Predictions, Target, Task};

/// Row-major dense matrix: row `i` is `data[i * n_cols..][..n_cols]`.
#[derive(Debug, Clone, Copy)]
pub struct Dense<'a> {
    /// The values, row after row.
    pub data: &'a [f64],
    /// Number of rows.
    pub n_rows: usize,
    /// Number of columns.
    pub n_cols: usize,
}

impl<'a> Dense<'a> {
    /// Row `i`.
    ///
    /// # Panics
    ///
    /// If `i >= n_rows` or `data` is shorter than `n_rows × n_cols`.
    pub fn row(&self, i: usize) -> &'a [f64] {
        &self.data[i * self.n_cols..][..self.n_cols]
    }

    fn check_shape(&self) -> Result<(), LinearError> {
        if self.n_rows.checked_mul(self.n_cols) != Some(self.data.len()) {
            return Err(LinearError::DataShape {
                len: self.data.len(),
                n_rows: self.n_rows,
                n_cols: self.n_cols,
            });
        }
        Ok(())
    }
}

/// Why [`fit`] refused its input.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LinearError {
    /// The matrix's buffer does not hold `n_rows × n_cols` values.
    #[error("The feature matrix holds `{len}` values, not `{n_rows}` rows × `{n_cols}` columns")]
    DataShape {
        /// Length of the buffer.
        len: usize,
        /// Declared rows.
        n_rows: usize,
        /// Declared columns.
        n_cols: usize,
    },
    /// The target has a different number of rows than the matrix.
    #[error("The target has `{target_rows}` rows but the feature matrix has `{n_rows}`")]
    TargetLength {
        /// Rows in the target.
        target_rows: usize,
        /// Rows in the matrix.
        n_rows: usize,
    },
    /// There are no rows to learn from.
    #[error("Cannot fit a linear model on zero rows")]
    Empty,
    /// A feature value is NaN or infinite.
    #[error(
        "The feature matrix holds the non-finite value `{value}` at row `{row}`, column `{col}`"
    )]
    NonFiniteFeature {
        /// Row of the first such value.
        row: usize,
        /// Column of the first such value.
        col: usize,
        /// The value.
        value: f64,
    },
    /// A target value is NaN or infinite.
    #[error("The target holds the non-finite value `{value}` at row `{row}`")]
    NonFiniteTarget {
        /// Row of the first such value.
        row: usize,
        /// The value.
        value: f64,
    },
    /// Class labels for a regression task or values for a classification task.
    #[error("The `{task}` task needs {expected}, but the target holds {found}")]
    TargetKind {
        /// The task asked for.
        task: Task,
        /// What the task needs.
        expected: &'static str,
        /// What the target holds.
        found: &'static str,
    },
    /// Classification with fewer than 2 declared classes, or fewer than 2
    /// classes present in the rows.
    #[error("Classification needs at least 2 classes, found `{found}`")]
    TooFewClasses {
        /// Number of classes declared or present.
        found: usize,
    },
    /// A binary task whose target declares more than 2 classes.
    #[error("The `binary` task needs 2 classes, but the target declares `{n_classes}`")]
    NotBinary {
        /// Declared number of classes.
        n_classes: usize,
    },
    /// A class code is not below the declared number of classes.
    #[error("Row `{row}` has class `{code}`, but there are only `{n_classes}` classes")]
    ClassOutOfRange {
        /// Row of the first such code.
        row: usize,
        /// The code.
        code: u32,
        /// Declared number of classes.
        n_classes: usize,
    },
    /// Poisson regression on a negative target.
    #[error("Poisson regression needs counts ≥ 0, but row `{row}` has `{value}`")]
    NegativeCount {
        /// Row of the first negative value.
        row: usize,
        /// The value.
        value: f64,
    },
    /// A hyperparameter is out of range.
    #[error("The parameter `{name}` is `{value}` but must be {expected}")]
    InvalidParam {
        /// Parameter name.
        name: &'static str,
        /// Value given.
        value: f64,
        /// The allowed range, in words.
        expected: &'static str,
    },
}

/// How a regression model's linear score maps to its prediction.
/// Classification always uses the logistic (binary) or softmax (multiclass)
/// link and ignores this.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Link {
    /// Prediction = score; least squares (ridge, lasso, elastic net).
    #[default]
    Identity,
    /// Prediction = exp(score); Poisson regression for counts.
    Log,
}

/// Hyperparameters of [`fit`]. See the [module docs](self) for the exact
/// objective.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearParams {
    /// Squared-L2 penalty weight (≥ 0) on the summed loss; `1/C` in
    /// scikit-learn's `LogisticRegression`, `alpha` in its `Ridge`.
    pub l2: f64,
    /// L1 penalty weight (≥ 0) on the summed loss. When positive the solver is
    /// OWL-QN and coefficients can be exactly zero.
    pub l1: f64,
    /// Most L-BFGS/OWL-QN iterations (ignored by the Cholesky ridge solver).
    pub max_iter: usize,
    /// Convergence tolerance: L-BFGS stops when the largest absolute
    /// component of the (pseudo-)gradient of the `1/n`-scaled objective is at
    /// most `tol`, or when an iteration lowers the objective by less than
    /// `64·ε` relative (as SciPy's L-BFGS-B with scikit-learn's settings).
    pub tol: f64,
    /// Whether to learn unpenalised intercepts (otherwise they are 0).
    pub fit_intercept: bool,
    /// Link for regression tasks.
    pub link: Link,
}

impl Default for LinearParams {
    /// `l2 = 1` (scikit-learn's `C = 1`), `l1 = 0`, `max_iter = 100`,
    /// `tol = 1e-4`, an intercept and the identity link.
    fn default() -> Self {
        Self {
            l2: 1.0,
            l1: 0.0,
            max_iter: 100,
            tol: 1e-4,
            fit_intercept: true,
            link: Link::Identity,
        }
    }
}

impl LinearParams {
    /// Checks that every value is in range.
    pub fn validate(&self) -> Result<(), LinearError> {
        let nonneg = |name, value: f64| {
            if value.is_finite() && value >= 0.0 {
                Ok(())
            } else {
                Err(LinearError::InvalidParam {
                    name,
                    value,
                    expected: "finite and ≥ 0",
                })
            }
        };
        nonneg("l2", self.l2)?;
        nonneg("l1", self.l1)?;
        nonneg("tol", self.tol)?;
        Ok(())
    }
}

/// A fitted linear model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearModel {
    /// The task it was fitted for.
    pub task: Task,
    /// 2 for binary, the number of classes for multiclass, 0 for regression.
    pub n_classes: usize,
    /// Coefficients, `n_outputs × n_cols` row-major, where `n_outputs` is 1
    /// for regression and binary (the log-odds of class 1) and `n_classes`
    /// for multiclass.
    pub coef: Vec<f64>,
    /// One intercept per output (zeros when fitted without intercept).
    pub intercept: Vec<f64>,
    /// The regression link; always [`Link::Identity`] for classification.
    #[serde(default)]
    pub link: Link,
}

impl LinearModel {
    /// Number of score columns: `n_classes` for multiclass, otherwise 1.
    pub fn n_outputs(&self) -> usize {
        self.intercept.len()
    }

    /// Number of feature columns the model expects.
    pub fn n_features(&self) -> usize {
        self.coef.len() / self.n_outputs().max(1)
    }

    /// Writes the raw linear scores `W x + b` of every row into `out`,
    /// `n_rows × n_outputs` row-major (log-odds for binary, logits for
    /// multiclass, the log of the mean for Poisson).
    ///
    /// # Panics
    ///
    /// If `x` has a different number of columns than the model, its buffer
    /// is not `n_rows × n_cols`, or `out` is not `n_rows × n_outputs` long.
    pub fn decision(&self, x: &Dense, out: &mut [f64]) {
        let k = self.n_outputs();
        let p = self.n_features();
        assert_eq!(x.n_cols, p, "the model was fitted on {p} columns");
        assert_eq!(x.data.len(), x.n_rows * x.n_cols, "bad matrix shape");
        assert_eq!(
            out.len(),
            x.n_rows * k,
            "`out` must hold n_rows × n_outputs scores"
        );
        if k == 0 {
            return;
        }
        const ROWS: usize = 1024;
        let score = |(c, chunk): (usize, &mut [f64])| {
            for (r, scores) in chunk.chunks_exact_mut(k).enumerate() {
                let xi = x.row(c * ROWS + r);
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = dot(xi, &self.coef[j * p..][..p]) + self.intercept[j];
                }
            }
        };
        // A small batch (a served request) stays on the calling thread.
        if out.len() <= ROWS * k {
            score((0, out));
        } else {
            out.par_chunks_mut(ROWS * k).enumerate().for_each(score);
        }
    }

    /// Predictions for every row: the probability of class 1 (binary), the
    /// class probabilities (multiclass) or the predicted value (regression).
    ///
    /// # Panics
    ///
    /// As [`LinearModel::decision`].
    pub fn predict(&self, x: &Dense) -> Predictions {
        let mut scores = vec![0.0; x.n_rows * self.n_outputs()];
        self.decision(x, &mut scores);
        match self.task {
            Task::Binary => {
                scores.iter_mut().for_each(|s| *s = sigmoid(*s));
                Predictions::Binary(scores)
            }
            Task::Multiclass => {
                let k = self.n_outputs();
                if k > 0 {
                    for row in scores.chunks_exact_mut(k) {
                        softmax_in_place(row);
                    }
                }
                Predictions::Multiclass {
                    probs: scores,
                    n_classes: k,
                }
            }
            Task::Regression => {
                if self.link == Link::Log {
                    scores.iter_mut().for_each(|s| *s = s.exp());
                }
                Predictions::Regression(scores)
            }
        }
    }
}

/// Fits a linear model of `task` to `target` on `x`.
///
/// Ridge regression (`Identity` link, `l1 = 0`) solves the normal equations
/// `(XᵀX + l2·I) w = Xᵀy` on column-centred data (the intercept is then
/// `ȳ − x̄·w`) by Cholesky. If the matrix is numerically singular (a pivot
/// below `1e-12` of its diagonal entry, which happens with `l2 = 0` and
/// collinear or constant columns), a jitter of `1e-10 ×` the mean diagonal is
/// added to the diagonal, and multiplied by 100 until the factorisation
/// succeeds; the result then approaches the minimum-norm least-squares fit.
///
/// Every other model is fitted by L-BFGS, or OWL-QN when `l1 > 0`, from
/// zero coefficients and intercepts set to the log-odds of the class
/// frequencies (classification), `log ȳ` (Poisson) or `ȳ` (least squares).
///
/// # Errors
///
/// See [`LinearError`]: shape mismatches, non-finite values, a target that
/// does not suit the task, fewer than 2 classes, negative Poisson counts and
/// out-of-range parameters.
#[tracing::instrument(skip_all, fields(task = %task, n_rows = x.n_rows, n_cols = x.n_cols))]
pub fn fit(
    x: &Dense,
    target: &Target,
    task: Task,
    params: &LinearParams,
) -> Result<LinearModel, LinearError> {
    params.validate()?;
    x.check_shape()?;
    if target.len() != x.n_rows {
        return Err(LinearError::TargetLength {
            target_rows: target.len(),
            n_rows: x.n_rows,
        });
    }
    if x.n_rows == 0 {
        return Err(LinearError::Empty);
    }
    let n = x.n_rows;
    let p = x.n_cols;

    // Check the target first: it is cheap and says more about a wrong call.
    let (loss, labels, n_classes) = match (task, target) {
        (Task::Binary, Target::Classes { codes, n_classes }) => {
            check_classes(codes, *n_classes)?;
            if *n_classes > 2 {
                return Err(LinearError::NotBinary {
                    n_classes: *n_classes,
                });
            }
            let y = codes.iter().map(|&c| f64::from(c)).collect();
            (Loss::Logistic, Labels::Values(y), 2)
        }
        (Task::Multiclass, Target::Classes { codes, n_classes }) => {
            check_classes(codes, *n_classes)?;
            (Loss::Softmax, Labels::Codes(codes), *n_classes)
        }
        (Task::Regression, Target::Values(v)) => {
            if let Some(row) = v.iter().position(|y| !y.is_finite()) {
                return Err(LinearError::NonFiniteTarget { row, value: v[row] });
            }
            let loss = match params.link {
                Link::Identity => Loss::Squared,
                Link::Log => {
                    if let Some(row) = v.iter().position(|&y| y < 0.0) {
                        return Err(LinearError::NegativeCount { row, value: v[row] });
                    }
                    Loss::Poisson
                }
            };
            (loss, Labels::Values(v.clone()), 0)
        }
        (Task::Regression, Target::Classes { .. }) => {
            return Err(LinearError::TargetKind {
                task,
                expected: "real values",
                found: "class labels",
            });
        }
        (Task::Binary | Task::Multiclass, Target::Values(_)) => {
            return Err(LinearError::TargetKind {
                task,
                expected: "class labels",
                found: "real values",
            });
        }
    };
    if let Some(idx) = x.data.iter().position(|v| !v.is_finite()) {
        return Err(LinearError::NonFiniteFeature {
            row: idx / p,
            col: idx % p,
            value: x.data[idx],
        });
    }

    let k = if loss == Loss::Softmax { n_classes } else { 1 };
    let link = if task == Task::Regression {
        params.link
    } else {
        Link::Identity
    };

    let (coef, intercept) = match (&labels, loss) {
        (Labels::Values(y), Loss::Squared) if params.l1 == 0.0 => {
            let (w, b) = fit_ridge(x, y, params.l2, params.fit_intercept);
            (w, vec![b])
        }
        _ => {
            let problem = Problem {
                x: *x,
                labels,
                loss,
                k,
                fit_intercept: params.fit_intercept,
                l2: params.l2 / n as f64,
                rows_per_chunk: rows_per_chunk(p),
            };
            let mut theta = vec![0.0; problem.dim()];
            if params.fit_intercept {
                problem.initial_intercepts(&mut theta[k * p..]);
            }
            let outcome = minimize(
                &problem,
                &mut theta,
                params.l1 / n as f64,
                k * p,
                params.max_iter,
                params.tol,
            );
            tracing::debug!(
                iterations = outcome.iterations,
                evaluations = outcome.evaluations,
                converged = outcome.converged,
                "L-BFGS finished"
            );
            let intercept = if params.fit_intercept {
                theta.split_off(k * p)
            } else {
                vec![0.0; k]
            };
            (theta, intercept)
        }
    };

    Ok(LinearModel {
        task,
        n_classes,
        coef,
        intercept,
        link,
    })
}

/// Checks codes against `n_classes` and that at least 2 classes occur.
fn check_classes(codes: &[u32], n_classes: usize) -> Result<(), LinearError> {
    if n_classes < 2 {
        return Err(LinearError::TooFewClasses { found: n_classes });
    }
    let mut seen = vec![false; n_classes];
    for (row, &code) in codes.iter().enumerate() {
        match seen.get_mut(code as usize) {
            Some(s) => *s = true,
            None => {
                return Err(LinearError::ClassOutOfRange {
                    row,
                    code,
                    n_classes,
                });
            }
        }
    }
    let present = seen.iter().filter(|&&s| s).count();
    if present < 2 {
        return Err(LinearError::TooFewClasses { found: present });
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Deterministic parallel sums.

/// Rows per chunk for the gradient: a function of the shape only, so the
/// summation order never depends on the thread count.
fn rows_per_chunk(n_cols: usize) -> usize {
    (65_536 / n_cols.max(1)).clamp(64, 4096)
}

/// Calls `f(rows, acc)` on consecutive row ranges of `rows_per_chunk` rows
/// (in parallel, each with its own zeroed `acc` of length `len`) and adds the
/// partial results in chunk order.
fn chunked_sum<F>(n_rows: usize, rows_per_chunk: usize, len: usize, f: F) -> Vec<f64>
where
    F: Fn(Range<usize>, &mut [f64]) + Sync,
{
    let n_chunks = n_rows.div_ceil(rows_per_chunk);
    let partials: Vec<Vec<f64>> = (0..n_chunks)
        .into_par_iter()
        .map(|c| {
            let mut acc = vec![0.0; len];
            let start = c * rows_per_chunk;
            f(start..(start + rows_per_chunk).min(n_rows), &mut acc);
            acc
        })
        .collect();
    let mut total = vec![0.0; len];
    for part in &partials {
        for (t, v) in total.iter_mut().zip(part) {
            *t += v;
        }
    }
    total
}

/// Dot product with eight independent accumulators, which the compiler turns
/// into SIMD while keeping a fixed summation order.
#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0.0f64; 8];
    let ca = a.chunks_exact(8);
    let cb = b.chunks_exact(8);
    let (ra, rb) = (ca.remainder(), cb.remainder());
    for (x, y) in ca.zip(cb) {
        for j in 0..8 {
            acc[j] += x[j] * y[j];
        }
    }
    let mut tail = 0.0;
    for (x, y) in ra.iter().zip(rb) {
        tail += x * y;
    }
    ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7])) + tail
}

/// `y += a·x`.
#[inline]
fn axpy(a: f64, x: &[f64], y: &mut [f64]) {
    for (yi, xi) in y.iter_mut().zip(x) {
        *yi += a * xi;
    }
}

fn sigmoid(z: f64) -> f64 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Replaces scores by their softmax; returns `ln Σ exp(scores)`.
fn softmax_in_place(scores: &mut [f64]) -> f64 {
    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let mut sum = 0.0;
    for s in scores.iter_mut() {
        *s = (*s - max).exp();
        sum += *s;
    }
    for s in scores.iter_mut() {
        *s /= sum;
    }
    max + sum.ln()
}

// ---------------------------------------------------------------------------
// Ridge by Cholesky.

/// Ridge regression on centred data; returns `(coef, intercept)`.
fn fit_ridge(x: &Dense, y: &[f64], l2: f64, fit_intercept: bool) -> (Vec<f64>, f64) {
    let n = x.n_rows;
    let p = x.n_cols;
    let chunk = rows_per_chunk(p);
    // Means in a first pass: centring before the products is more accurate
    // than subtracting n·x̄x̄ᵀ afterwards.
    let (mean_x, mean_y) = if fit_intercept {
        let sums = chunked_sum(n, chunk, p + 1, |rows, acc| {
            let (sx, sy) = acc.split_at_mut(p);
            for i in rows {
                axpy(1.0, x.row(i), sx);
                sy[0] += y[i];
            }
        });
        let inv = 1.0 / n as f64;
        (
            sums[..p].iter().map(|s| s * inv).collect::<Vec<_>>(),
            sums[p] * inv,
        )
    } else {
        (vec![0.0; p], 0.0)
    };

    // Upper triangle of the centred Gram matrix, then Xᵀy. Bound the number
    // of partial p×p matrices held at once.
    let max_chunks = ((1usize << 22) / (p * p + p).max(1)).clamp(1, 64);
    let gram_chunk = n.div_ceil(max_chunks).max(256);
    let sums = chunked_sum(n, gram_chunk, p * p + p, |rows, acc| {
        let (g, xty) = acc.split_at_mut(p * p);
        let mut c = vec![0.0; p];
        for i in rows {
            for ((cj, xj), mj) in c.iter_mut().zip(x.row(i)).zip(&mean_x) {
                *cj = xj - mj;
            }
            let yc = y[i] - mean_y;
            for j in 0..p {
                let cj = c[j];
                if cj != 0.0 {
                    axpy(cj, &c[j..], &mut g[j * p + j..(j + 1) * p]);
                    xty[j] += cj * yc;
                }
            }
        }
    });
    let (gram, xty) = sums.split_at(p * p);
    let mut a = gram.to_vec();
    for j in 0..p {
        for i in 0..j {
            a[j * p + i] = a[i * p + j];
        }
        a[j * p + j] += l2;
    }

    let w = if p == 0 {
        Vec::new()
    } else {
        let mean_diag = (0..p).map(|j| a[j * p + j]).sum::<f64>() / p as f64;
        let mut jitter = 1e-10 * if mean_diag > 0.0 { mean_diag } else { 1.0 };
        let mut factor = a.clone();
        let mut tries = 0;
        while !cholesky_in_place(&mut factor, p) {
            tries += 1;
            if tries > 40 {
                // Only reachable when the Gram matrix overflowed to ±∞.
                tracing::warn!(
                    "ridge normal equations cannot be factorised; coefficients set to 0"
                );
                return (vec![0.0; p], if fit_intercept { mean_y } else { 0.0 });
            }
            tracing::debug!(jitter, "ridge normal equations singular; adding jitter");
            factor.copy_from_slice(&a);
            for j in 0..p {
                factor[j * p + j] += jitter;
            }
            jitter *= 100.0;
        }
        cholesky_solve(&factor, p, xty)
    };
    let b = if fit_intercept {
        mean_y - dot(&mean_x, &w)
    } else {
        0.0
    };
    (w, b)
}

/// Lower Cholesky factor of the symmetric `a` (`p × p`, row-major) in place.
/// Returns false when a pivot is below `1e-12` of its diagonal entry (or not
/// positive), i.e. the matrix is numerically singular.
fn cholesky_in_place(a: &mut [f64], p: usize) -> bool {
    for j in 0..p {
        let diag = a[j * p + j];
        let d = diag - dot(&a[j * p..j * p + j], &a[j * p..j * p + j]);
        if d.is_nan() || d <= 1e-12 * diag.abs() || d.is_infinite() {
            return false;
        }
        let ljj = d.sqrt();
        a[j * p + j] = ljj;
        // Column j below the diagonal: L[i][j] = (A[i][j] − L[i]·L[j]) / L[j][j].
        let (upper, lower) = a.split_at_mut((j + 1) * p);
        let lj = &upper[j * p..j * p + j];
        for row_i in lower.chunks_exact_mut(p) {
            row_i[j] = (row_i[j] - dot(&row_i[..j], lj)) / ljj;
        }
    }
    // Clear the strict upper triangle so the factor reads as L only.
    for i in 0..p {
        a[i * p + i + 1..(i + 1) * p].fill(0.0);
    }
    true
}

/// Solves `L Lᵀ w = b` for the lower factor `l`.
fn cholesky_solve(l: &[f64], p: usize, b: &[f64]) -> Vec<f64> {
    let mut z = vec![0.0; p];
    for i in 0..p {
        z[i] = (b[i] - dot(&l[i * p..i * p + i], &z[..i])) / l[i * p + i];
    }
    let mut w = vec![0.0; p];
    for i in (0..p).rev() {
        let mut s = z[i];
        for j in (i + 1)..p {
            s -= l[j * p + i] * w[j];
        }
        w[i] = s / l[i * p + i];
    }
    w
}

// ---------------------------------------------------------------------------
// Smooth objectives.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Loss {
    Squared,
    Poisson,
    Logistic,
    Softmax,
}

enum Labels<'a> {
    Values(Vec<f64>),
    Codes(&'a [u32]),
}

/// The smooth part of the objective: mean loss plus `l2/2·‖W‖²` (with `l2`
/// already divided by `n`). Parameters are `[W (k × p, row-major), b (k)]`,
/// without `b` when there is no intercept.
struct Problem<'a> {
    x: Dense<'a>,
    labels: Labels<'a>,
    loss: Loss,
    k: usize,
    fit_intercept: bool,
    l2: f64,
    rows_per_chunk: usize,
}

impl Problem<'_> {
    fn dim(&self) -> usize {
        self.k * self.x.n_cols + if self.fit_intercept { self.k } else { 0 }
    }

    /// A good starting point for the intercepts: the optimum with `W = 0`
    /// (or close to it).
    fn initial_intercepts(&self, b: &mut [f64]) {
        let n = self.x.n_rows as f64;
        match &self.labels {
            Labels::Values(y) => {
                let mean = y.iter().sum::<f64>() / n;
                b[0] = match self.loss {
                    Loss::Squared => mean,
                    Loss::Poisson => mean.max(1e-10).ln(),
                    // Clamp so a rare class does not start at ±∞.
                    _ => {
                        let q = mean.clamp(1e-10, 1.0 - 1e-10);
                        (q / (1.0 - q)).ln()
                    }
                };
            }
            Labels::Codes(codes) => {
                let mut counts = vec![0.0; self.k];
                for &c in *codes {
                    counts[c as usize] += 1.0;
                }
                for (bk, c) in b.iter_mut().zip(&counts) {
                    *bk = ((c + 0.5) / (n + 0.5 * self.k as f64)).ln();
                }
                let mean = b.iter().sum::<f64>() / self.k as f64;
                b.iter_mut().for_each(|bk| *bk -= mean);
            }
        }
    }

    /// Objective value at `theta`; its gradient goes into `grad`.
    fn eval(&self, theta: &[f64], grad: &mut [f64]) -> f64 {
        let p = self.x.n_cols;
        let k = self.k;
        let kp = k * p;
        let w = &theta[..kp];
        let zeros = vec![0.0; k];
        let b = if self.fit_intercept {
            &theta[kp..]
        } else {
            &zeros[..]
        };
        // Accumulator: [gradient of W (k·p), gradient of b (k), loss].
        let len = kp + k + 1;
        let x = &self.x;
        let sums = chunked_sum(x.n_rows, self.rows_per_chunk, len, |rows, acc| {
            let (gw, rest) = acc.split_at_mut(kp);
            let (gb, loss) = rest.split_at_mut(k);
            match (&self.labels, self.loss) {
                (Labels::Values(y), Loss::Logistic) => {
                    let (mut l, mut sb) = (0.0, 0.0);
                    for i in rows {
                        let xi = x.row(i);
                        let eta = dot(xi, w) + b[0];
                        let e = (-eta.abs()).exp();
                        l += e.ln_1p() + eta.max(0.0) - y[i] * eta;
                        let prob = if eta >= 0.0 {
                            1.0 / (1.0 + e)
                        } else {
                            e / (1.0 + e)
                        };
                        let r = prob - y[i];
                        axpy(r, xi, gw);
                        sb += r;
                    }
                    gb[0] = sb;
                    loss[0] = l;
                }
                (Labels::Values(y), Loss::Poisson) => {
                    let (mut l, mut sb) = (0.0, 0.0);
                    for i in rows {
                        let xi = x.row(i);
                        let eta = dot(xi, w) + b[0];
                        let mu = eta.exp();
                        l += mu - y[i] * eta;
                        let r = mu - y[i];
                        axpy(r, xi, gw);
                        sb += r;
                    }
                    gb[0] = sb;
                    loss[0] = l;
                }
                (Labels::Values(y), _) => {
                    let (mut l, mut sb) = (0.0, 0.0);
                    for i in rows {
                        let xi = x.row(i);
                        let r = dot(xi, w) + b[0] - y[i];
                        l += 0.5 * r * r;
                        axpy(r, xi, gw);
                        sb += r;
                    }
                    gb[0] = sb;
                    loss[0] = l;
                }
                (Labels::Codes(codes), _) => {
                    let mut eta = vec![0.0; k];
                    let mut l = 0.0;
                    for i in rows {
                        let xi = x.row(i);
                        for (j, e) in eta.iter_mut().enumerate() {
                            *e = dot(xi, &w[j * p..][..p]) + b[j];
                        }
                        let c = codes[i] as usize;
                        let eta_c = eta[c];
                        l += softmax_in_place(&mut eta) - eta_c;
                        eta[c] -= 1.0;
                        for (j, &r) in eta.iter().enumerate() {
                            axpy(r, xi, &mut gw[j * p..][..p]);
                            gb[j] += r;
                        }
                    }
                    loss[0] = l;
                }
            }
        });
        let inv_n = 1.0 / x.n_rows as f64;
        let mut f = sums[len - 1] * inv_n;
        for (g, s) in grad[..kp].iter_mut().zip(&sums[..kp]) {
            *g = s * inv_n;
        }
        if self.fit_intercept {
            for (g, s) in grad[kp..].iter_mut().zip(&sums[kp..kp + k]) {
                *g = s * inv_n;
            }
        }
        if self.l2 > 0.0 {
            f += 0.5 * self.l2 * dot(w, w);
            axpy(self.l2, w, &mut grad[..kp]);
        }
        f
    }
}

// ---------------------------------------------------------------------------
// L-BFGS / OWL-QN.

struct Outcome {
    iterations: usize,
    evaluations: usize,
    converged: bool,
}

/// Minimises `problem.eval(θ) + l1·‖θ[..n_pen]‖₁` from `theta` in place.
/// With `l1 = 0` this is plain L-BFGS; otherwise OWL-QN: the search direction
/// is built from the pseudo-gradient, kept in its orthant, and every trial
/// point is projected back onto the orthant of the current point.
fn minimize(
    problem: &Problem,
    theta: &mut [f64],
    l1: f64,
    n_pen: usize,
    max_iter: usize,
    tol: f64,
) -> Outcome {
    const MEMORY: usize = 10;
    const C1: f64 = 1e-4;
    const MAX_LINE_SEARCH: usize = 40;
    let ftol = 64.0 * f64::EPSILON;

    let d = theta.len();
    let l1_norm = |t: &[f64]| -> f64 {
        if l1 > 0.0 {
            l1 * t[..n_pen].iter().map(|v| v.abs()).sum::<f64>()
        } else {
            0.0
        }
    };
    let mut grad = vec![0.0; d];
    let mut fx = problem.eval(theta, &mut grad) + l1_norm(theta);
    let mut evaluations = 1;
    let mut pg = vec![0.0; d];
    pseudo_gradient(theta, &grad, l1, n_pen, &mut pg);

    let mut history: VecDeque<(Vec<f64>, Vec<f64>, f64)> = VecDeque::with_capacity(MEMORY);
    let mut dir = vec![0.0; d];
    let mut trial = vec![0.0; d];
    let mut trial_grad = vec![0.0; d];
    let mut alpha = vec![0.0; MEMORY];
    let mut converged = inf_norm(&pg) <= tol;
    let mut iterations = 0;

    while !converged && iterations < max_iter {
        iterations += 1;
        two_loop(&history, &pg, &mut dir, &mut alpha);
        if l1 > 0.0 {
            for (dj, &gj) in dir[..n_pen].iter_mut().zip(&pg) {
                if *dj * gj >= 0.0 {
                    *dj = 0.0;
                }
            }
        }
        let mut slope = dot(&dir, &pg);
        if slope.is_nan() || slope >= 0.0 {
            // Not a descent direction (bad curvature pairs): restart.
            history.clear();
            dir.iter_mut().zip(&pg).for_each(|(dj, gj)| *dj = -gj);
            slope = -dot(&pg, &pg);
        }
        let mut step = if history.is_empty() {
            (1.0 / dot(&dir, &dir).sqrt()).min(1.0)
        } else {
            1.0
        };

        let mut accepted = None;
        for _ in 0..MAX_LINE_SEARCH {
            for j in 0..d {
                trial[j] = theta[j] + step * dir[j];
            }
            if l1 > 0.0 {
                // Stay in the orthant of θ (that of −pg where θ is 0).
                for j in 0..n_pen {
                    let orthant = if theta[j] != 0.0 {
                        theta[j].signum()
                    } else {
                        -pg[j].signum()
                    };
                    if trial[j] * orthant <= 0.0 {
                        trial[j] = 0.0;
                    }
                }
            }
            let f_trial = problem.eval(&trial, &mut trial_grad) + l1_norm(&trial);
            evaluations += 1;
            let predicted: f64 = (0..d).map(|j| pg[j] * (trial[j] - theta[j])).sum();
            if f_trial.is_finite() && f_trial <= fx + C1 * predicted {
                accepted = Some(f_trial);
                break;
            }
            // Backtrack to the minimiser of the quadratic through f(0),
            // f'(0) and f(step), kept within [0.1, 0.5]·step.
            let next = if f_trial.is_finite() {
                let denom = 2.0 * (f_trial - fx - slope * step);
                if denom > 0.0 {
                    -slope * step * step / denom
                } else {
                    0.5 * step
                }
            } else {
                0.1 * step
            };
            step = next.clamp(0.1 * step, 0.5 * step);
        }

        let Some(f_new) = accepted else {
            if history.is_empty() {
                // Even steepest descent cannot lower the objective: we are at
                // the optimum to machine precision.
                converged = true;
                break;
            }
            history.clear();
            continue;
        };

        let mut s = vec![0.0; d];
        let mut y = vec![0.0; d];
        for j in 0..d {
            s[j] = trial[j] - theta[j];
            y[j] = trial_grad[j] - grad[j];
        }
        let sy = dot(&s, &y);
        let yy = dot(&y, &y);
        if sy > 1e-10 * yy && sy > 0.0 {
            if history.len() == MEMORY {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        let small_decrease = fx - f_new <= ftol * fx.abs().max(f_new.abs()).max(1.0);
        theta.copy_from_slice(&trial);
        std::mem::swap(&mut grad, &mut trial_grad);
        fx = f_new;
        pseudo_gradient(theta, &grad, l1, n_pen, &mut pg);
        converged = small_decrease || inf_norm(&pg) <= tol;
    }
    Outcome {
        iterations,
        evaluations,
        converged,
    }
}

/// The L-BFGS two-loop recursion: `dir = −H·g`.
fn two_loop(
    history: &VecDeque<(Vec<f64>, Vec<f64>, f64)>,
    g: &[f64],
    dir: &mut [f64],
    alpha: &mut [f64],
) {
    dir.iter_mut().zip(g).for_each(|(d, gj)| *d = -gj);
    for (i, (s, y, rho)) in history.iter().enumerate().rev() {
        let a = rho * dot(s, dir);
        alpha[i] = a;
        axpy(-a, y, dir);
    }
    if let Some((s, y, _)) = history.back() {
        let gamma = dot(s, y) / dot(y, y);
        dir.iter_mut().for_each(|d| *d *= gamma);
    }
    for (i, (s, y, rho)) in history.iter().enumerate() {
        let beta = rho * dot(y, dir);
        axpy(alpha[i] - beta, s, dir);
    }
}

/// The pseudo-gradient of `f + l1·‖θ[..n_pen]‖₁`: the gradient where the
/// objective is differentiable, else the one-sided derivative of least
/// magnitude that lowers it, or 0 at a kink that is a minimum along that
/// coordinate.
fn pseudo_gradient(theta: &[f64], grad: &[f64], l1: f64, n_pen: usize, pg: &mut [f64]) {
    pg.copy_from_slice(grad);
    if l1 == 0.0 {
        return;
    }
    for j in 0..n_pen {
        let g = grad[j];
        pg[j] = if theta[j] > 0.0 {
            g + l1
        } else if theta[j] < 0.0 {
            g - l1
        } else if g + l1 < 0.0 {
            g + l1
        } else if g - l1 > 0.0 {
            g - l1
        } else {
            0.0
        };
    }
}

fn inf_norm(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator (64-bit LCG, top 53 bits).
    struct Lcg(u64);

    impl Lcg {
        fn uniform(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }

        /// Standard normal by Box–Muller.
        fn normal(&mut self) -> f64 {
            let u = self.uniform().max(1e-300);
            let v = self.uniform();
            (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
        }

        /// Poisson by Knuth's product of uniforms (fine for small means).
        fn poisson(&mut self, mean: f64) -> f64 {
            let limit = (-mean).exp();
            let mut k = 0.0;
            let mut prod = self.uniform();
            while prod > limit {
                k += 1.0;
                prod *= self.uniform();
            }
            k
        }
    }

    fn normal_matrix(rng: &mut Lcg, n: usize, p: usize) -> Vec<f64> {
        (0..n * p).map(|_| rng.normal()).collect()
    }

    fn dense(data: &[f64], n_cols: usize) -> Dense<'_> {
        Dense {
            data,
            n_rows: data.len() / n_cols,
            n_cols,
        }
    }

    fn params(l2: f64, l1: f64) -> LinearParams {
        LinearParams {
            l2,
            l1,
            max_iter: 1000,
            tol: 1e-10,
            ..LinearParams::default()
        }
    }

    /// Binary data: `P(y = 1) = σ(0.5 + 2x₀ − x₁ + 0·x₂)`.
    fn logistic_data(n: usize, seed: u64) -> (Vec<f64>, Target) {
        let mut rng = Lcg(seed);
        let x = normal_matrix(&mut rng, n, 3);
        let codes = x
            .chunks(3)
            .map(|r| u32::from(rng.uniform() < sigmoid(0.5 + 2.0 * r[0] - r[1])))
            .collect();
        (
            x,
            Target::Classes {
                codes,
                n_classes: 2,
            },
        )
    }

    #[test]
    fn ridge_without_penalty_recovers_noiseless_coefficients() {
        let mut rng = Lcg(1);
        let x = normal_matrix(&mut rng, 200, 3);
        let y = x
            .chunks(3)
            .map(|r| 1.5 + 2.0 * r[0] - 3.0 * r[1] + 0.5 * r[2])
            .collect();
        let model = fit(
            &dense(&x, 3),
            &Target::Values(y),
            Task::Regression,
            &params(0.0, 0.0),
        )
        .unwrap();
        for (got, want) in model.coef.iter().zip([2.0, -3.0, 0.5]) {
            assert!((got - want).abs() < 1e-10, "{:?}", model.coef);
        }
        assert!((model.intercept[0] - 1.5).abs() < 1e-10);
        assert_eq!(model.n_classes, 0);
    }

    #[test]
    fn ridge_matches_closed_form_on_two_features() {
        let x = [1.0, 2.0, 2.0, 1.0, 3.0, 5.0, 4.0, 3.0, 5.0, 4.0];
        let y = [3.0, 2.0, 7.0, 5.0, 8.0];
        let lambda = 2.5;
        // Independent closed form: centre, then solve the 2×2 system by Cramer.
        let n = 5.0;
        let (m0, m1) = (
            x.iter().step_by(2).sum::<f64>() / n,
            x.iter().skip(1).step_by(2).sum::<f64>() / n,
        );
        let my = y.iter().sum::<f64>() / n;
        let (mut s00, mut s01, mut s11, mut t0, mut t1) = (0.0, 0.0, 0.0, 0.0, 0.0);
        for i in 0..5 {
            let (a, b, c) = (x[2 * i] - m0, x[2 * i + 1] - m1, y[i] - my);
            s00 += a * a;
            s01 += a * b;
            s11 += b * b;
            t0 += a * c;
            t1 += b * c;
        }
        let (a00, a11) = (s00 + lambda, s11 + lambda);
        let det = a00 * a11 - s01 * s01;
        let w0 = (t0 * a11 - s01 * t1) / det;
        let w1 = (a00 * t1 - s01 * t0) / det;
        let b = my - w0 * m0 - w1 * m1;

        let model = fit(
            &dense(&x, 2),
            &Target::Values(y.to_vec()),
            Task::Regression,
            &params(lambda, 0.0),
        )
        .unwrap();
        assert!(
            (model.coef[0] - w0).abs() < 1e-12,
            "{} vs {w0}",
            model.coef[0]
        );
        assert!(
            (model.coef[1] - w1).abs() < 1e-12,
            "{} vs {w1}",
            model.coef[1]
        );
        assert!((model.intercept[0] - b).abs() < 1e-12);
    }

    #[test]
    fn ridge_without_penalty_survives_duplicate_and_constant_columns() {
        let mut rng = Lcg(2);
        let base = normal_matrix(&mut rng, 100, 1);
        // Columns: x, x (duplicate), 0 (constant).
        let x: Vec<f64> = base.iter().flat_map(|&v| [v, v, 0.0]).collect();
        let y: Vec<f64> = base.iter().map(|&v| 1.0 + 4.0 * v).collect();
        let model = fit(
            &dense(&x, 3),
            &Target::Values(y.clone()),
            Task::Regression,
            &params(0.0, 0.0),
        )
        .unwrap();
        assert!(model.coef.iter().all(|c| c.is_finite()));
        assert!(
            (model.coef[0] + model.coef[1] - 4.0).abs() < 1e-6,
            "{:?}",
            model.coef
        );
        let Predictions::Regression(pred) = model.predict(&dense(&x, 3)) else {
            panic!("regression model gave non-regression predictions")
        };
        for (p, t) in pred.iter().zip(&y) {
            assert!((p - t).abs() < 1e-6);
        }
    }

    #[test]
    fn lasso_by_owlqn_zeroes_irrelevant_coefficients() {
        let mut rng = Lcg(3);
        let n = 500;
        let x = normal_matrix(&mut rng, n, 6);
        let y: Vec<f64> = x
            .chunks(6)
            .map(|r| 3.0 * r[0] - 2.0 * r[1] + 0.1 * rng.normal())
            .collect();
        let l1 = 0.05 * n as f64;
        let model = fit(
            &dense(&x, 6),
            &Target::Values(y),
            Task::Regression,
            &params(0.0, l1),
        )
        .unwrap();
        assert!(
            model.coef[2..].iter().all(|&c| c == 0.0),
            "{:?}",
            model.coef
        );
        assert!((model.coef[0] - 3.0).abs() < 0.1 && (model.coef[1] + 2.0).abs() < 0.1);
    }

    #[test]
    fn logistic_l1_zeroes_irrelevant_coefficients_and_meets_kkt() {
        let (x, target) = logistic_data(2000, 4);
        let l1 = 60.0;
        let model = fit(&dense(&x, 3), &target, Task::Binary, &params(0.0, l1)).unwrap();
        assert_eq!(model.coef[2], 0.0, "{:?}", model.coef);
        assert!(model.coef[0] > 1.0 && model.coef[1] < -0.5);
        // KKT: zero coefficients have |∂loss/∂w| ≤ l1; others ∂loss/∂w = −l1·sign(w).
        let g = logistic_gradient(&x, &target, &model, 0.0);
        for (j, (&gj, &wj)) in g.iter().zip(&model.coef).enumerate() {
            if wj == 0.0 {
                assert!(gj.abs() <= l1 + 1e-6, "coef {j}: {gj}");
            } else {
                assert!((gj + l1 * wj.signum()).abs() < 1e-5, "coef {j}: {gj}");
            }
        }
    }

    /// Gradient of the summed logistic loss plus `l2/2·‖w‖²`, computed
    /// naively, with the intercept's component last.
    fn logistic_gradient(x: &[f64], target: &Target, model: &LinearModel, l2: f64) -> Vec<f64> {
        let Target::Classes { codes, .. } = target else {
            unreachable!()
        };
        let p = model.coef.len();
        let mut g = vec![0.0; p + 1];
        for (row, &c) in x.chunks(p).zip(codes) {
            let eta: f64 =
                row.iter().zip(&model.coef).map(|(a, b)| a * b).sum::<f64>() + model.intercept[0];
            let r = 1.0 / (1.0 + (-eta).exp()) - f64::from(c);
            for (gj, xj) in g.iter_mut().zip(row) {
                *gj += r * xj;
            }
            g[p] += r;
        }
        for (gj, wj) in g.iter_mut().zip(&model.coef) {
            *gj += l2 * wj;
        }
        g
    }

    #[test]
    fn logistic_is_accurate_and_its_gradient_vanishes_at_the_optimum() {
        let (x, target) = logistic_data(3000, 5);
        let model = fit(&dense(&x, 3), &target, Task::Binary, &params(1.0, 0.0)).unwrap();
        let g = logistic_gradient(&x, &target, &model, 1.0);
        assert!(inf_norm(&g) / 3000.0 < 1e-9, "{g:?}");
        let Target::Classes { codes, .. } = &target else {
            unreachable!()
        };
        let classes = model.predict(&dense(&x, 3)).classes().unwrap();
        let correct = classes.iter().zip(codes).filter(|(a, b)| a == b).count();
        // The Bayes rate for this generator is about 0.83.
        assert!(correct as f64 / 3000.0 > 0.8, "accuracy {correct}/3000");
        assert!((model.coef[0] - 2.0).abs() < 0.25 && (model.coef[1] + 1.0).abs() < 0.2);
        assert_eq!(model.n_classes, 2);
    }

    #[test]
    fn logistic_on_separable_blobs_classifies_everything() {
        let mut rng = Lcg(6);
        let n = 400;
        let mut x = Vec::new();
        let mut codes = Vec::new();
        for i in 0..n {
            let c = (i % 2) as u32;
            let shift = if c == 1 { 5.0 } else { -5.0 };
            x.extend([shift + rng.normal(), rng.normal()]);
            codes.push(c);
        }
        let target = Target::Classes {
            codes: codes.clone(),
            n_classes: 2,
        };
        let model = fit(
            &dense(&x, 2),
            &target,
            Task::Binary,
            &LinearParams::default(),
        )
        .unwrap();
        assert_eq!(model.predict(&dense(&x, 2)).classes().unwrap(), codes);
    }

    fn three_blobs(n: usize, seed: u64) -> (Vec<f64>, Vec<u32>) {
        let mut rng = Lcg(seed);
        let centres = [(0.0, 4.0), (4.0, -2.0), (-4.0, -2.0)];
        let mut x = Vec::new();
        let mut codes = Vec::new();
        for i in 0..n {
            let c = i % 3;
            x.extend([centres[c].0 + rng.normal(), centres[c].1 + rng.normal()]);
            codes.push(c as u32);
        }
        (x, codes)
    }

    #[test]
    fn multinomial_probabilities_sum_to_one_and_separate_three_blobs() {
        let (x, codes) = three_blobs(600, 7);
        let target = Target::Classes {
            codes: codes.clone(),
            n_classes: 3,
        };
        let model = fit(&dense(&x, 2), &target, Task::Multiclass, &params(1.0, 0.0)).unwrap();
        assert_eq!(
            (model.coef.len(), model.intercept.len(), model.n_classes),
            (6, 3, 3)
        );
        let pred = model.predict(&dense(&x, 2));
        let Predictions::Multiclass { probs, n_classes } = &pred else {
            panic!("multiclass model gave {pred:?}")
        };
        assert_eq!(*n_classes, 3);
        for row in probs.chunks(3) {
            assert!((row.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        }
        let classes = pred.classes().unwrap();
        let correct = classes.iter().zip(&codes).filter(|(a, b)| a == b).count();
        assert!(correct >= 594, "accuracy {correct}/600");

        // Stationarity of W: Σᵢ (pᵢₖ − [yᵢ = k])·xᵢ + l2·wₖ = 0.
        let mut g = vec![0.0; 6];
        for ((row, p), &c) in x.chunks(2).zip(probs.chunks(3)).zip(&codes) {
            for k in 0..3 {
                let r = p[k] - f64::from(u32::from(c as usize == k));
                g[2 * k] += r * row[0];
                g[2 * k + 1] += r * row[1];
            }
        }
        for (gj, wj) in g.iter_mut().zip(&model.coef) {
            *gj += wj;
        }
        assert!(inf_norm(&g) / 600.0 < 1e-8, "{g:?}");
    }

    #[test]
    fn poisson_recovers_log_linear_coefficients() {
        let mut rng = Lcg(8);
        let n = 5000;
        let x = normal_matrix(&mut rng, n, 2);
        let y: Vec<f64> = x
            .chunks(2)
            .map(|r| rng.poisson((0.7 + 0.4 * r[0] - 0.3 * r[1]).exp()))
            .collect();
        let params = LinearParams {
            link: Link::Log,
            ..params(1e-6, 0.0)
        };
        let model = fit(&dense(&x, 2), &Target::Values(y), Task::Regression, &params).unwrap();
        assert_eq!(model.link, Link::Log);
        assert!(
            (model.intercept[0] - 0.7).abs() < 0.05,
            "{:?}",
            model.intercept
        );
        assert!((model.coef[0] - 0.4).abs() < 0.05, "{:?}", model.coef);
        assert!((model.coef[1] + 0.3).abs() < 0.05, "{:?}", model.coef);
        let Predictions::Regression(pred) = model.predict(&dense(&x[..2], 2)) else {
            panic!("not a regression")
        };
        let eta = model.intercept[0] + model.coef[0] * x[0] + model.coef[1] * x[1];
        assert!((pred[0] - eta.exp()).abs() < 1e-12);
    }

    #[test]
    fn fitting_twice_or_on_other_thread_counts_gives_identical_bits() {
        // Enough rows for many chunks, so the summation order matters.
        let (x, target) = logistic_data(20_000, 9);
        let (xm, codes) = three_blobs(9000, 10);
        let multi = Target::Classes {
            codes,
            n_classes: 3,
        };
        let reg = Target::Values(x.chunks(3).map(|r| r[0] - 2.0 * r[2]).collect());
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            pool.install(|| {
                (
                    fit(&dense(&x, 3), &target, Task::Binary, &params(1.0, 0.0)).unwrap(),
                    fit(&dense(&x, 3), &target, Task::Binary, &params(0.0, 5.0)).unwrap(),
                    fit(&dense(&xm, 2), &multi, Task::Multiclass, &params(1.0, 0.0)).unwrap(),
                    fit(&dense(&x, 3), &reg, Task::Regression, &params(1.0, 0.0)).unwrap(),
                )
            })
        };
        let bits = |m: &LinearModel| -> Vec<u64> {
            m.coef
                .iter()
                .chain(&m.intercept)
                .map(|v| v.to_bits())
                .collect()
        };
        let a = run(1);
        for b in [run(1), run(2), run(3)] {
            assert_eq!(bits(&a.0), bits(&b.0));
            assert_eq!(bits(&a.1), bits(&b.1));
            assert_eq!(bits(&a.2), bits(&b.2));
            assert_eq!(bits(&a.3), bits(&b.3));
        }
    }

    #[test]
    fn model_roundtrips_through_json() {
        let (x, target) = logistic_data(100, 11);
        let model = fit(
            &dense(&x, 3),
            &target,
            Task::Binary,
            &LinearParams::default(),
        )
        .unwrap();
        let json = serde_json::to_string(&model).unwrap();
        let back: LinearModel = serde_json::from_str(&json).unwrap();
        assert_eq!(
            (back.task, back.n_classes, back.link),
            (model.task, 2, Link::Identity)
        );
        // serde_json parses floats to within an ulp unless `float_roundtrip` is on.
        for (a, b) in back
            .coef
            .iter()
            .chain(&back.intercept)
            .zip(model.coef.iter().chain(&model.intercept))
        {
            assert!((a - b).abs() <= 1e-15 * b.abs());
        }
    }

    #[test]
    fn fitting_without_intercept_keeps_it_zero() {
        let (x, target) = logistic_data(500, 12);
        let params = LinearParams {
            fit_intercept: false,
            ..LinearParams::default()
        };
        let model = fit(&dense(&x, 3), &target, Task::Binary, &params).unwrap();
        assert_eq!(model.intercept, vec![0.0]);
    }

    #[test]
    fn bad_inputs_give_the_matching_error() {
        let x = [0.0, 1.0, 2.0, 3.0, 4.0, 5.0];
        let ok = Dense {
            data: &x,
            n_rows: 3,
            n_cols: 2,
        };
        let classes = |codes: &[u32], n_classes| Target::Classes {
            codes: codes.to_vec(),
            n_classes,
        };
        let values = |v: &[f64]| Target::Values(v.to_vec());
        let poisson = LinearParams {
            link: Link::Log,
            ..LinearParams::default()
        };
        let default = LinearParams::default();
        let mut nan_x = x;
        nan_x[3] = f64::NAN;
        let nan_dense = Dense { data: &nan_x, ..ok };
        let bad_shape = Dense { n_rows: 4, ..ok };
        let empty = Dense {
            data: &[],
            n_rows: 0,
            n_cols: 2,
        };
        let negative = LinearParams {
            l2: -1.0,
            ..LinearParams::default()
        };
        let check =
            |x: &Dense, target: Target, task, params: &LinearParams, expect: LinearError| {
                assert_eq!(fit(x, &target, task, params).unwrap_err(), expect);
            };
        use LinearError as E;
        check(
            &bad_shape,
            values(&[1.0; 4]),
            Task::Regression,
            &default,
            E::DataShape {
                len: 6,
                n_rows: 4,
                n_cols: 2,
            },
        );
        check(
            &ok,
            values(&[1.0; 2]),
            Task::Regression,
            &default,
            E::TargetLength {
                target_rows: 2,
                n_rows: 3,
            },
        );
        check(&empty, values(&[]), Task::Regression, &default, E::Empty);
        let nan_err = fit(&nan_dense, &values(&[1.0; 3]), Task::Regression, &default).unwrap_err();
        assert!(
            matches!(nan_err, E::NonFiniteFeature { row: 1, col: 1, value } if value.is_nan()),
            "{nan_err:?}"
        );
        check(
            &ok,
            values(&[1.0, f64::INFINITY, 2.0]),
            Task::Regression,
            &default,
            E::NonFiniteTarget {
                row: 1,
                value: f64::INFINITY,
            },
        );
        check(
            &ok,
            values(&[1.0, 0.0, 1.0]),
            Task::Binary,
            &default,
            E::TargetKind {
                task: Task::Binary,
                expected: "class labels",
                found: "real values",
            },
        );
        check(
            &ok,
            classes(&[0, 1, 0], 2),
            Task::Regression,
            &default,
            E::TargetKind {
                task: Task::Regression,
                expected: "real values",
                found: "class labels",
            },
        );
        check(
            &ok,
            classes(&[0, 0, 0], 1),
            Task::Multiclass,
            &default,
            E::TooFewClasses { found: 1 },
        );
        check(
            &ok,
            classes(&[2, 2, 2], 3),
            Task::Multiclass,
            &default,
            E::TooFewClasses { found: 1 },
        );
        check(
            &ok,
            classes(&[0, 1, 2], 3),
            Task::Binary,
            &default,
            E::NotBinary { n_classes: 3 },
        );
        check(
            &ok,
            classes(&[0, 5, 1], 2),
            Task::Binary,
            &default,
            E::ClassOutOfRange {
                row: 1,
                code: 5,
                n_classes: 2,
            },
        );
        check(
            &ok,
            values(&[1.0, 0.0, -2.0]),
            Task::Regression,
            &poisson,
            E::NegativeCount {
                row: 2,
                value: -2.0,
            },
        );
        check(
            &ok,
            values(&[1.0, 0.0, 2.0]),
            Task::Regression,
            &negative,
            E::InvalidParam {
                name: "l2",
                value: -1.0,
                expected: "finite and ≥ 0",
            },
        );
    }

    #[test]
    fn linear_types_are_send_and_sync() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<LinearModel>();
        assert_send_sync::<LinearParams>();
        assert_send_sync::<LinearError>();
        assert_send_sync::<Dense<'static>>();
    }
}
