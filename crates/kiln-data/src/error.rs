use std::path::PathBuf;

/// What can go wrong reading, profiling, checking or diffing data.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// A file could not be opened, read or written.
    #[error("Failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Malformed content at a known place in a file.
    #[error("{}:{}{}: {message}", path.display(), line, column.map(|c| format!(":{c}")).unwrap_or_default())]
    Malformed {
        path: PathBuf,
        /// 1-based line (for CSV: the record's first line).
        line: u64,
        /// 1-based field number, when known.
        column: Option<u64>,
        message: String,
        hint: String,
    },
    /// A value that does not parse as its column's inferred type. Reading
    /// retries with types inferred from the whole file before reporting it.
    #[error("{}:{line}:{column}: value `{value}` of column `{name}` is not a valid {expected}", path.display())]
    TypeMismatch {
        path: PathBuf,
        line: u64,
        column: u64,
        name: String,
        value: String,
        expected: String,
    },
    /// Content kiln cannot read, without a precise place.
    #[error("Failed to read `{}` as {format}: {message}", path.display())]
    Unreadable {
        path: PathBuf,
        format: String,
        message: String,
    },
    /// Files meant to be read as one table do not fit together.
    #[error("Cannot read `{}` with the other files of the folder: {message}", path.display())]
    Mismatch { path: PathBuf, message: String },
    /// A column type kiln has no logical type for.
    #[error("Column `{column}` of `{}` has type {arrow_type}, which kiln does not support", path.display())]
    UnsupportedType {
        path: PathBuf,
        column: String,
        arrow_type: String,
    },
    /// A problem with a declared check (not with the data).
    #[error("Invalid check on `{target}`: {message}")]
    InvalidCheck { target: String, message: String },
    /// A key column for a row diff is missing or not unique.
    #[error("Cannot diff rows by key {key}: {message}")]
    Key { key: String, message: String },
    /// An Arrow or Parquet operation failed on data kiln wrote itself.
    #[error("Internal columnar error: {0}")]
    Columnar(String),
}

impl DataError {
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }

    /// A line telling the user what to do, where there is one.
    pub fn hint(&self) -> Option<String> {
        match self {
            Self::Malformed { hint, .. } => Some(hint.clone()),
            Self::Unreadable { .. } => Some(
                "pass `--format csv|tsv|parquet|jsonl` (and `--delimiter` for CSV) if the format was guessed wrong".into(),
            ),
            Self::UnsupportedType { .. } => {
                Some("convert the column to a number, boolean, string, date or timestamp".into())
            }
            Self::Io { source, .. }
                if matches!(source.raw_os_error(), Some(28) | Some(27)) || source.kind() == std::io::ErrorKind::StorageFull =>
            {
                Some("free some disk space and run the command again; nothing was recorded".into())
            }
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some("check the path".into())
            }
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                Some("check the file's permissions".into())
            }
            Self::Mismatch { .. } => Some(
                "the files of a folder dataset are read as one table and need the same columns; add differing files as separate datasets".into(),
            ),
            Self::Key { .. } => Some("declare `key:` for the dataset in kiln.yaml, or pass `--key COLUMN`, naming columns that identify a row".into()),
            Self::InvalidCheck { .. } => Some("fix the check in kiln.yaml".into()),
            _ => None,
        }
    }
}

impl From<parquet::errors::ParquetError> for DataError {
    fn from(e: parquet::errors::ParquetError) -> Self {
        Self::Columnar(e.to_string())
    }
}

impl From<arrow_schema::ArrowError> for DataError {
    fn from(e: arrow_schema::ArrowError) -> Self {
        Self::Columnar(e.to_string())
    }
}
