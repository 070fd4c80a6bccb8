//! What is being learned ([`Task`]), the labels it is learned from
//! ([`Target`]) and what a model says back ([`Predictions`]).

use serde::{Deserialize, Serialize};

/// The kind of supervised problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    Binary,
    Multiclass,
    Regression,
}

impl Task {
    pub fn as_str(self) -> &'static str {
        match self {
            Task::Binary => "binary",
            Task::Multiclass => "multiclass",
            Task::Regression => "regression",
        }
    }

    pub fn is_classification(self) -> bool {
        !matches!(self, Task::Regression)
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Labels, one per row.
#[derive(Debug, Clone, PartialEq)]
pub enum Target {
    /// Class indices `0..n_classes` (for binary: 1 is the positive class).
    Classes { codes: Vec<u32>, n_classes: usize },
    /// Real values (regression).
    Values(Vec<f64>),
}

impl Target {
    pub fn len(&self) -> usize {
        match self {
            Target::Classes { codes, .. } => codes.len(),
            Target::Values(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Labels as numbers: class indices for classes, values otherwise (what
    /// the boosted trees and target encoding learn from).
    pub fn numbers(&self) -> Vec<f64> {
        match self {
            Target::Classes { codes, .. } => codes.iter().map(|&c| f64::from(c)).collect(),
            Target::Values(v) => v.clone(),
        }
    }

    /// The labels of the rows `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Target {
        match self {
            Target::Classes { codes, n_classes } => Target::Classes {
                codes: rows.iter().map(|&r| codes[r]).collect(),
                n_classes: *n_classes,
            },
            Target::Values(v) => Target::Values(rows.iter().map(|&r| v[r]).collect()),
        }
    }
}

/// A model's output for a batch of rows.
#[derive(Debug, Clone, PartialEq)]
pub enum Predictions {
    /// Probability of the positive class (class index 1), one per row.
    Binary(Vec<f64>),
    /// Class probabilities, row-major: row `i` is `probs[i * n_classes..][..n_classes]`.
    Multiclass { probs: Vec<f64>, n_classes: usize },
    /// Predicted values.
    Regression(Vec<f64>),
}

impl Predictions {
    pub fn len(&self) -> usize {
        match self {
            Predictions::Binary(p) | Predictions::Regression(p) => p.len(),
            Predictions::Multiclass { probs, n_classes } => probs.len() / (*n_classes).max(1),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The predicted class of each row (argmax; 0.5 for binary), or `None`
    /// for regression.
    pub fn classes(&self) -> Option<Vec<u32>> {
        match self {
            Predictions::Binary(p) => Some(p.iter().map(|&p| u32::from(p >= 0.5)).collect()),
            Predictions::Multiclass { probs, n_classes } => Some(
                probs
                    .chunks(*n_classes)
                    .map(|row| {
                        let mut best = 0;
                        for (k, &p) in row.iter().enumerate() {
                            if p > row[best] {
                                best = k;
                            }
                        }
                        best as u32
                    })
                    .collect(),
            ),
            Predictions::Regression(_) => None,
        }
    }
}
