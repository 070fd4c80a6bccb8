use kiln_project::ProjectError;
use kiln_store::StoreError;

/// What can go wrong in a pipeline or a gate.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// Input kiln refuses, with what to do instead.
    #[error("Invalid {what}: {message}")]
    Invalid {
        what: String,
        message: String,
        hint: String,
    },
    /// A file could not be written or read.
    #[error("Failed to {action} `{}`", path.display())]
    Io {
        action: &'static str,
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Project(#[from] ProjectError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl PipelineError {
    /// How to fix it, when kiln knows.
    pub fn hint(&self) -> Option<String> {
        match self {
            PipelineError::Invalid { hint, .. } if !hint.is_empty() => Some(hint.clone()),
            PipelineError::Project(e) => e.hint(),
            PipelineError::Store(e) => e.hint(),
            _ => None,
        }
    }

    pub(crate) fn io(
        action: &'static str,
        path: impl Into<std::path::PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| Self::Io {
            action,
            path,
            source,
        }
    }
}
