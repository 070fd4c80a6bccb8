use kiln_core::ColumnType;

/// What can go wrong learning from or predicting on a table.
#[derive(Debug, thiserror::Error)]
pub enum MlError {
    /// The target column is not in the table.
    #[error("The table has no column `{name}`")]
    NoTarget {
        name: String,
        available: Vec<String>,
    },
    /// The target cannot be learned.
    #[error("Cannot learn target `{name}`: {why}")]
    BadTarget {
        name: String,
        why: String,
        hint: String,
    },
    /// Nothing left to learn from.
    #[error("No usable feature columns: {why}")]
    NoFeatures { why: String },
    /// Columns the model needs are absent at prediction time.
    #[error("The input lacks column(s) {} that the model was trained on", names.join(", "))]
    MissingColumns { names: Vec<String> },
    /// A column has a type the model cannot take.
    #[error("Column `{name}` is {got}, but the model expects {expected}")]
    WrongType {
        name: String,
        got: String,
        expected: ColumnType,
    },
    /// Infinite values where a finite number is needed.
    #[error("Column `{name}` holds a non-finite value ({value}) at row {}", .row + 1)]
    NonFinite {
        name: String,
        /// The table row, from 0 (shown from 1, as `kiln data check` does).
        row: usize,
        value: f64,
    },
    /// A column a setting names (`--split group:COLUMN`) is not in the table.
    #[error("The table has no column `{name}` for {setting}")]
    NoSettingColumn {
        setting: String,
        name: String,
        available: Vec<String>,
    },
    /// Invalid settings.
    #[error("Invalid {what}: {why}")]
    Invalid { what: String, why: String },
    /// Reading a table failed.
    #[error(transparent)]
    Data(#[from] kiln_data::DataError),
    /// A learner failed.
    #[error(transparent)]
    Gbdt(#[from] crate::gbdt::GbdtError),
    #[error(transparent)]
    Linear(#[from] crate::linear::LinearError),
    #[error(transparent)]
    Split(#[from] crate::split::SplitError),
    #[error(transparent)]
    Metric(#[from] crate::metrics::MetricError),
    /// A model file kiln cannot read.
    #[error("Cannot load model `{path}`: {why}")]
    ModelFile {
        path: String,
        why: String,
        hint: String,
    },
    #[error("Failed to {action} `{path}`")]
    Io {
        action: &'static str,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl MlError {
    /// How to fix it, for the CLI's `hint:` line.
    pub fn hint(&self) -> Option<String> {
        match self {
            MlError::NoTarget { available, .. } | MlError::NoSettingColumn { available, .. } => {
                Some(format!("the table's columns are: {}", available.join(", ")))
            }
            MlError::BadTarget { hint, .. } | MlError::ModelFile { hint, .. } => Some(hint.clone()),
            MlError::NoFeatures { .. } => Some(
                "every other column was constant, empty or an identifier; add informative columns"
                    .into(),
            ),
            MlError::MissingColumns { .. } => {
                Some("score a table with the same columns as the training data".into())
            }
            MlError::WrongType { .. } => {
                Some("convert the column, or retrain on data of this type".into())
            }
            MlError::NonFinite { .. } => Some(
                "replace infinities with a finite value or leave the cell empty (missing)".into(),
            ),
            MlError::Data(e) => e.hint(),
            MlError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some("check the path".into())
            }
            _ => None,
        }
    }
}
