use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::catalog::CatalogError;
use crate::domain::source::FieldError;
use crate::pipeline::PipelineError;

/// An API failure. Internal errors are logged and answered without their details.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(FieldError),
    #[error("this call needs Authorization: Bearer TOKEN")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("internal error")]
    Internal(String),
}

impl From<PipelineError> for ApiError {
    fn from(e: PipelineError) -> Self {
        match e {
            PipelineError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            PipelineError::Conflict(m) => ApiError::Conflict(m),
            PipelineError::Invalid(f) => ApiError::BadRequest(f),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<crate::notify::NotifyError> for ApiError {
    fn from(e: crate::notify::NotifyError) -> Self {
        use crate::notify::NotifyError;
        match e {
            NotifyError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            NotifyError::Conflict(m) => ApiError::Conflict(m),
            NotifyError::Invalid(f) => ApiError::BadRequest(f),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl From<CatalogError> for ApiError {
    fn from(e: CatalogError) -> Self {
        match e {
            CatalogError::NotFound(what) => ApiError::NotFound(format!("{what} not found")),
            CatalogError::Invalid(f) => ApiError::BadRequest(f),
            other => ApiError::Internal(other.to_string()),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, body) = match &self {
            ApiError::BadRequest(f) => (
                StatusCode::BAD_REQUEST,
                json!({"success": false, "error": f.to_string(), "field": f.field}),
            ),
            ApiError::Unauthorized => {
                let body = json!({"success": false, "error": self.to_string()});
                return (
                    StatusCode::UNAUTHORIZED,
                    [(axum::http::header::WWW_AUTHENTICATE, "Bearer")],
                    axum::Json(body),
                )
                    .into_response();
            }
            ApiError::NotFound(m) => (StatusCode::NOT_FOUND, json!({"success": false, "error": m})),
            ApiError::Conflict(m) => (StatusCode::CONFLICT, json!({"success": false, "error": m})),
            ApiError::Internal(detail) => {
                tracing::error!(error = %detail, "internal error in the API");
                (
                    StatusCode::INTERNAL_SERVER_ERROR,
                    json!({"success": false, "error": "internal error"}),
                )
            }
        };
        (status, Json(body)).into_response()
    }
}
