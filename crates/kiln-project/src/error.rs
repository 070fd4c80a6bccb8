use std::path::PathBuf;

use kiln_data::DataError;
use kiln_store::StoreError;

/// What can go wrong in a project operation.
#[derive(Debug, thiserror::Error)]
pub enum ProjectError {
    /// No `kiln.yaml` here or above, and no `--store`/`--objects` given.
    #[error("No kiln project found in `{}` or any parent directory", .0.display())]
    NotFound(PathBuf),
    /// `kiln init` on a directory that already has a `kiln.yaml`.
    #[error("`{}` is already a kiln project", .0.display())]
    AlreadyInitialized(PathBuf),
    /// `kiln.yaml` is malformed.
    #[error("Invalid `{}`: {message}", path.display())]
    Config { path: PathBuf, message: String },
    /// A mistake at a line of `kiln.yaml`, with its fix.
    #[error("{}:{line}: {message}", path.display())]
    ConfigAt {
        path: PathBuf,
        line: u64,
        message: String,
        hint: String,
    },
    /// A dataset name kiln does not accept.
    #[error("Invalid dataset name `{0}`")]
    InvalidName(String),
    /// A `NAME@VERSION` reference that does not parse.
    #[error("Invalid dataset reference `{0}`")]
    InvalidReference(String),
    /// An operation that needs a table on a folder of files, or vice versa.
    #[error("{0}")]
    WrongKind(String),
    /// A restore target that exists.
    #[error("`{}` already exists", .0.display())]
    TargetExists(PathBuf),
    /// A file operation failed.
    #[error("Failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error(transparent)]
    Ml(kiln_ml::MlError),
    /// A model file kiln cannot import.
    #[error("`{}`: {source}", path.display())]
    Import {
        path: PathBuf,
        #[source]
        source: kiln_ml::foreign::ForeignError,
    },
}

impl ProjectError {
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
            Self::NotFound(_) => Some(
                "run `kiln init` to create a project here, or pass `--store` and `--objects`"
                    .into(),
            ),
            Self::AlreadyInitialized(_) => {
                Some("use the existing project, or choose another directory".into())
            }
            Self::ConfigAt { hint, .. } => Some(hint.clone()),
            Self::Config { .. } => {
                Some("fix kiln.yaml; `kiln init --help` shows its layout".into())
            }
            Self::InvalidName(_) => Some(
                "names start with a letter or digit and use only letters, digits, `_`, `-` and `.`"
                    .into(),
            ),
            Self::InvalidReference(_) => {
                Some("write `NAME`, `NAME@latest`, `NAME@TAG` or `NAME@ID_PREFIX`".into())
            }
            Self::TargetExists(_) => Some("choose another output path or remove it first".into()),
            Self::Io { source, .. } if kiln_store_disk_full(source) => {
                Some("free some disk space and run the command again; nothing was recorded".into())
            }
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                Some("check the path".into())
            }
            Self::Io { source, .. } if source.kind() == std::io::ErrorKind::PermissionDenied => {
                Some("check the file's permissions".into())
            }
            Self::Store(e) => e.hint(),
            Self::Data(e) => e.hint(),
            Self::Ml(e) => e.hint(),
            _ => None,
        }
    }
}

fn kiln_store_disk_full(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(28) | Some(27))
}
