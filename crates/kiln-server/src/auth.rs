//! Authorization: every route names the permission it needs on the project
//! it touches, and one layer asks an [`Authorizer`] before the handler runs.
//! Today a single local owner holds every permission; users, tokens and
//! roles only have to implement [`Authorizer`].

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, MlflowError, V1Error};

/// What a route needs on a project.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Permission {
    /// See experiments, runs, models, datasets, artifacts.
    Read,
    /// Log runs, upload artifacts, register models, move aliases.
    Write,
    /// Delete for good, collect garbage, manage access.
    Admin,
}

impl Permission {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Write => "write",
            Self::Admin => "admin",
        }
    }
}

/// Who is calling, once authorized.
#[derive(Clone, Debug)]
pub struct Principal {
    pub name: String,
}

/// Decides whether a request may do what its route needs.
pub trait Authorizer: Send + Sync + 'static {
    fn authorize(
        &self,
        request: &Parts,
        project: &str,
        needs: Permission,
    ) -> Result<Principal, String>;
}

/// The single local owner: holds every permission on every project.
pub struct LocalOwner;

impl Authorizer for LocalOwner {
    fn authorize(&self, _: &Parts, _: &str, _: Permission) -> Result<Principal, String> {
        Ok(Principal {
            name: kiln_core::current_actor(),
        })
    }
}

/// The state the layer needs: who decides, for which project, and what.
#[derive(Clone)]
pub struct Guard {
    pub authorizer: Arc<dyn Authorizer>,
    pub project: Arc<str>,
    pub needs: Permission,
}

impl Guard {
    /// `route` behind [`authorize`] with this guard.
    pub fn wrap<S: Clone + Send + Sync + 'static>(
        self,
        route: axum::routing::MethodRouter<S>,
    ) -> axum::routing::MethodRouter<S> {
        route.route_layer(axum::middleware::from_fn_with_state(self, authorize))
    }
}

/// The middleware every route is wrapped in (see `router::guarded`).
pub async fn authorize(State(guard): State<Guard>, request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    match guard
        .authorizer
        .authorize(&parts, &guard.project, guard.needs)
    {
        Ok(principal) => {
            parts.extensions.insert(principal);
            next.run(Request::from_parts(parts, body)).await
        }
        Err(why) => {
            let e = ApiError::Forbidden(format!(
                "Permission `{}` on project `{}` is required: {why}",
                guard.needs.as_str(),
                guard.project
            ));
            if crate::speaks_mlflow(parts.uri.path()) {
                MlflowError(e).into_response()
            } else {
                V1Error(e).into_response()
            }
        }
    }
}
