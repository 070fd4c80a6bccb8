//! [`Features`]: the learner-facing table. Preprocessing turns Arrow
//! columns into these; every learner reads them.

use serde::{Deserialize, Serialize};

/// The code of a missing or unknown category.
pub const MISSING_CODE: u32 = u32::MAX;

/// One learner-facing column.
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// Real values; `NaN` is missing.
    Numeric(Vec<f64>),
    /// Category codes `0..n_categories`; [`MISSING_CODE`] (or any code
    /// `>= n_categories`, an unseen category) is missing.
    Categorical { codes: Vec<u32>, n_categories: u32 },
}

impl Column {
    pub fn len(&self) -> usize {
        match self {
            Column::Numeric(v) => v.len(),
            Column::Categorical { codes, .. } => codes.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn kind(&self) -> FeatureKind {
        match self {
            Column::Numeric(_) => FeatureKind::Numeric,
            Column::Categorical { n_categories, .. } => FeatureKind::Categorical {
                n_categories: *n_categories,
            },
        }
    }

    fn take(&self, rows: &[usize]) -> Column {
        match self {
            Column::Numeric(v) => Column::Numeric(rows.iter().map(|&r| v[r]).collect()),
            Column::Categorical {
                codes,
                n_categories,
            } => Column::Categorical {
                codes: rows.iter().map(|&r| codes[r]).collect(),
                n_categories: *n_categories,
            },
        }
    }
}

/// The codes `0..n_categories` seen at least `min_rows` times in `codes`,
/// most frequent first (ties by code, so the order is deterministic);
/// missing and out-of-range codes are not counted.
pub fn codes_by_frequency(codes: &[u32], n_categories: u32, min_rows: usize) -> Vec<u32> {
    let mut counts = vec![0usize; n_categories as usize];
    for &c in codes {
        if let Some(n) = counts.get_mut(c as usize) {
            *n += 1;
        }
    }
    let mut order: Vec<u32> = (0..n_categories)
        .filter(|&c| counts[c as usize] >= min_rows.max(1))
        .collect();
    order.sort_by(|&a, &b| counts[b as usize].cmp(&counts[a as usize]).then(a.cmp(&b)));
    order
}

/// What a learner needs to know about a feature's values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeatureKind {
    Numeric,
    Categorical { n_categories: u32 },
}

/// Named, equally long columns.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Features {
    pub names: Vec<String>,
    pub columns: Vec<Column>,
}

impl Features {
    pub fn n_rows(&self) -> usize {
        self.columns.first().map_or(0, Column::len)
    }

    pub fn n_features(&self) -> usize {
        self.columns.len()
    }

    /// The rows `rows`, in that order.
    pub fn take(&self, rows: &[usize]) -> Features {
        Features {
            names: self.names.clone(),
            columns: self.columns.iter().map(|c| c.take(rows)).collect(),
        }
    }

    pub fn kinds(&self) -> Vec<FeatureKind> {
        self.columns.iter().map(Column::kind).collect()
    }
}
