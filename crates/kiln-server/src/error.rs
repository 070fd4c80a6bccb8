//! One error type for every route, rendered in the shape the caller speaks:
//! kiln's `{"error": {"code", "message"}}` under `/api/v1`, MLflow's
//! `{"error_code", "message"}` under `/api/2.0`.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use kiln_project::ProjectError;
use kiln_store::StoreError;

/// What went wrong, independent of the wire format.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("Invalid value for `{field}`: {message}")]
    Invalid { field: String, message: String },
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    MethodNotAllowed(String),
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    pub fn invalid(field: &str, message: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            message: message.into(),
        }
    }

    pub fn missing(field: &str) -> Self {
        Self::invalid(field, "is required")
    }

    pub fn status(&self) -> StatusCode {
        match self {
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::AlreadyExists(_) | Self::Invalid { .. } => StatusCode::BAD_REQUEST,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::MethodNotAllowed(_) => StatusCode::METHOD_NOT_ALLOWED,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// kiln's stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::AlreadyExists(_) => "already_exists",
            Self::Invalid { .. } => "invalid_argument",
            Self::Forbidden(_) => "permission_denied",
            Self::MethodNotAllowed(_) => "method_not_allowed",
            Self::Internal(_) => "internal",
        }
    }

    /// MLflow's `error_code`.
    pub fn mlflow_code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "RESOURCE_DOES_NOT_EXIST",
            Self::AlreadyExists(_) => "RESOURCE_ALREADY_EXISTS",
            Self::Invalid { .. } => "INVALID_PARAMETER_VALUE",
            Self::Forbidden(_) => "PERMISSION_DENIED",
            Self::MethodNotAllowed(_) => "ENDPOINT_NOT_FOUND",
            Self::Internal(_) => "INTERNAL_ERROR",
        }
    }

    fn message(&self) -> String {
        match self {
            // MLflow's clients show the message as is; keep it free of kiln's framing.
            Self::Invalid { message, .. }
                if message.contains(' ') && message.starts_with(char::is_uppercase) =>
            {
                message.clone()
            }
            other => other.to_string(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound { .. }
            | StoreError::UnknownRun(_)
            | StoreError::UnknownDataset { .. }
            | StoreError::UnknownVersion { .. }
            | StoreError::MissingObject(_) => Self::NotFound(e.to_string()),
            StoreError::AlreadyExists { .. } => Self::AlreadyExists(e.to_string()),
            StoreError::Invalid { field, message } => Self::Invalid { field, message },
            StoreError::AmbiguousRun { .. } | StoreError::AmbiguousVersion { .. } => {
                Self::invalid("id", e.to_string())
            }
            other => {
                tracing::error!(error = %other, source = ?std::error::Error::source(&other), "request failed");
                Self::Internal(other.to_string())
            }
        }
    }
}

impl From<ProjectError> for ApiError {
    fn from(e: ProjectError) -> Self {
        match e {
            ProjectError::Store(s) => s.into(),
            ProjectError::InvalidName(_) | ProjectError::InvalidReference(_) => {
                Self::invalid("name", e.to_string())
            }
            ProjectError::WrongKind(m) => Self::invalid("ref", m),
            other => Self::Internal(other.to_string()),
        }
    }
}

/// An [`ApiError`] rendered as MLflow renders errors.
#[derive(Debug)]
pub struct MlflowError(pub ApiError);

impl<E: Into<ApiError>> From<E> for MlflowError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for MlflowError {
    fn into_response(self) -> Response {
        let body = serde_json::json!({
            "error_code": self.0.mlflow_code(),
            "message": self.0.message(),
        });
        (self.0.status(), axum::Json(body)).into_response()
    }
}

/// An [`ApiError`] rendered as kiln's REST API renders errors.
#[derive(Debug)]
pub struct V1Error(pub ApiError);

impl<E: Into<ApiError>> From<E> for V1Error {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

impl IntoResponse for V1Error {
    fn into_response(self) -> Response {
        let mut error = serde_json::json!({
            "code": self.0.code(),
            "message": self.0.to_string(),
        });
        if let ApiError::Invalid { field, .. } = &self.0 {
            error["field"] = field.clone().into();
        }
        (
            self.0.status(),
            axum::Json(serde_json::json!({ "error": error })),
        )
            .into_response()
    }
}
