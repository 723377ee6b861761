//! The API's one error type. Every error leaves as RFC 9457 `application/problem+json`; a 500
//! never carries its cause to the client (it is logged with the request id instead).

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use oms_domain::error::{DomainError, FieldError};
use serde::Serialize;

use oms_store::CommandError;

/// One field's validation failure, as `errors[]` of a 422.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct FieldProblem {
    /// The field's path in the request (`lines[0].weight`).
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl From<FieldError> for FieldProblem {
    fn from(err: FieldError) -> Self {
        Self {
            field: err.field,
            message: err.message,
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time.
    pub detail: String,
    /// Per-field validation errors (422) or the conflicting field (409).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub errors: Vec<FieldProblem>,
    /// The version the resource is at (412).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub current_version: Option<i64>,
}

/// Everything a handler can answer besides success.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: malformed JSON, header or parameter.
    #[error("{0}")]
    BadRequest(String),
    /// 401: no, invalid or expired token.
    #[error("{0}")]
    Unauthorized(String),
    /// 403: the token's roles do not allow this.
    #[error("{0}")]
    Forbidden(String),
    /// 404: unknown, or another tenant's.
    #[error("{0}")]
    NotFound(String),
    /// 405: the path exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: not allowed in the current state, a duplicate, or a lost race.
    #[error("{detail}")]
    Conflict {
        /// What conflicted.
        detail: String,
        /// The field holding a duplicate value, if that is the conflict.
        errors: Vec<FieldProblem>,
    },
    /// 412: `If-Match` named another version.
    #[error("the resource is at version {current}")]
    PreconditionFailed {
        /// The version it is at.
        current: i64,
    },
    /// 413: body over the limit.
    #[error("the request body is larger than 1 MiB")]
    PayloadTooLarge,
    /// 431: a header is longer than the service accepts (the request, correlation and
    /// causation ids: see `request_ids`).
    #[error("{0}")]
    HeaderTooLarge(String),
    /// 415: the body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// 422: validation failed; nothing was written.
    #[error("{detail}")]
    Unprocessable {
        /// A summary.
        detail: String,
        /// The fields at fault.
        errors: Vec<FieldProblem>,
    },
    /// 429: the tenant sent more requests than its limit.
    #[error("too many requests; retry in {} ms", retry_after.as_millis())]
    TooManyRequests {
        /// When a request will be accepted again.
        retry_after: std::time::Duration,
    },
    /// 503: Postgres (or another dependency) is unavailable, or a wait timed out.
    #[error("{0}")]
    Unavailable(String),
    /// 500: a bug. The cause is logged, not sent.
    #[error("internal error: {0}")]
    Internal(String),
}

impl ApiError {
    /// A 422 for one field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        let message = message.into();
        Self::Unprocessable {
            detail: message.clone(),
            errors: vec![FieldProblem {
                field: field.into(),
                message,
            }],
        }
    }

    /// The HTTP status this error is answered with.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::Conflict { .. } => StatusCode::CONFLICT,
            Self::PreconditionFailed { .. } => StatusCode::PRECONDITION_FAILED,
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::HeaderTooLarge(_) => StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
            Self::Unprocessable { .. } => StatusCode::UNPROCESSABLE_ENTITY,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn slug(&self) -> (&'static str, &'static str) {
        match self {
            Self::BadRequest(_) => ("bad-request", "Malformed request"),
            Self::Unauthorized(_) => ("unauthorized", "Authentication required"),
            Self::Forbidden(_) => ("forbidden", "Not allowed for your role"),
            Self::NotFound(_) => ("not-found", "Not found"),
            Self::MethodNotAllowed => ("method-not-allowed", "Method not allowed"),
            Self::Conflict { .. } => ("conflict", "Conflict with the current state"),
            Self::PreconditionFailed { .. } => ("version-mismatch", "Version mismatch"),
            Self::PayloadTooLarge => ("payload-too-large", "Request body too large"),
            Self::UnsupportedMediaType(_) => ("unsupported-media-type", "Unsupported media type"),
            Self::HeaderTooLarge(_) => ("header-too-large", "Request header too large"),
            Self::Unprocessable { .. } => ("validation", "Validation failed"),
            Self::TooManyRequests { .. } => ("rate-limited", "Too many requests"),
            Self::Unavailable(_) => ("unavailable", "Service unavailable"),
            Self::Internal(_) => ("internal", "Internal error"),
        }
    }

    /// The problem document this error is sent as.
    pub fn problem(&self) -> Problem {
        let (slug, title) = self.slug();
        let (errors, current_version) = match self {
            Self::Conflict { errors, .. } | Self::Unprocessable { errors, .. } => {
                (errors.clone(), None)
            }
            Self::PreconditionFailed { current } => (Vec::new(), Some(*current)),
            _ => (Vec::new(), None),
        };
        let detail = match self {
            Self::Internal(_) => "an internal error occurred; it has been logged".to_string(),
            other => other.to_string(),
        };
        Problem {
            kind: format!("urn:oms:problem:{slug}"),
            title: title.to_string(),
            status: self.status().as_u16(),
            detail,
            errors,
            current_version,
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if let Self::Internal(cause) = &self {
            tracing::error!(%cause, "internal error");
        } else if let Self::Unavailable(cause) = &self {
            tracing::warn!(%cause, "dependency unavailable");
        }
        let status = self.status();
        let mut response = (status, axum::Json(self.problem())).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Self::TooManyRequests { retry_after } = &self {
            let seconds = retry_after.as_secs() + u64::from(retry_after.subsec_nanos() > 0);
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds.max(1)));
        }
        if let Self::PreconditionFailed { current } = self {
            if let Ok(etag) = HeaderValue::from_str(&format!("\"{current}\"")) {
                response.headers_mut().insert(header::ETAG, etag);
            }
        }
        response
    }
}

pub use oms_store::is_unavailable;

impl From<sqlx::Error> for ApiError {
    fn from(err: sqlx::Error) -> Self {
        if is_unavailable(&err) {
            Self::Unavailable("the database is unavailable; try again shortly".into())
        } else if let sqlx::Error::Database(db) = &err {
            if db.code().as_deref() == Some("40001") || db.code().as_deref() == Some("40P01") {
                return Self::Conflict {
                    detail: "a concurrent change got in the way; try again".into(),
                    errors: Vec::new(),
                };
            }
            Self::Internal(err.to_string())
        } else {
            Self::Internal(err.to_string())
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::NotFound => Self::NotFound("not found".into()),
            DomainError::AlreadyExists => Self::Conflict {
                detail: "it already exists".into(),
                errors: Vec::new(),
            },
            DomainError::NotAllowed { .. } | DomainError::NotAllowedBecause { .. } => {
                Self::Conflict {
                    detail: err.to_string(),
                    errors: Vec::new(),
                }
            }
            DomainError::Invalid(errors) => Self::Unprocessable {
                detail: errors
                    .iter()
                    .map(|e| format!("{}: {}", e.field, e.message))
                    .collect::<Vec<_>>()
                    .join("; "),
                errors: errors.into_iter().map(FieldProblem::from).collect(),
            },
            DomainError::LineNotFound(line) => Self::NotFound(format!("line {line} not found")),
            DomainError::ClaimNotFound(claim) => Self::NotFound(format!("claim {claim} not found")),
            DomainError::Unavailable(cause) => Self::Unavailable(cause),
        }
    }
}

impl From<CommandError> for ApiError {
    fn from(err: CommandError) -> Self {
        let err_text = err.to_string();
        match err {
            CommandError::Domain(err) => err.into(),
            CommandError::VersionMismatch { current } => Self::PreconditionFailed { current },
            CommandError::Conflict => Self::Conflict {
                detail: "the order was changed concurrently; reload and retry".into(),
                errors: Vec::new(),
            },
            CommandError::Duplicate { scope, key } => {
                let field = oms_domain::scope_field(&scope);
                Self::Conflict {
                    detail: format!("{field} {key} is already used"),
                    errors: vec![FieldProblem {
                        field: field.to_string(),
                        message: format!("{key} is already used"),
                    }],
                }
            }
            CommandError::OverShipped { lot_id, .. } => Self::Conflict {
                detail: format!("{err_text}; another shipment took it first"),
                errors: vec![FieldProblem {
                    field: "lot_id".into(),
                    message: format!("lot {lot_id} has too little left"),
                }],
            },
            CommandError::IdempotencyMismatch => Self::invalid(
                "Idempotency-Key",
                "this key was used for a different request in the last 24 hours",
            ),
            CommandError::UnknownTenant => {
                Self::Unauthorized("the token's tenant does not exist".into())
            }
            CommandError::RequestIdReused => Self::invalid(
                "X-Request-Id",
                "this request id was used for a different request in the last 24 hours",
            ),
            CommandError::EventTooLarge { .. } => Self::Unprocessable {
                detail: format!("{err_text}; send fewer lines or shorter texts"),
                errors: Vec::new(),
            },
            CommandError::InDoubt => Self::Unavailable(err_text),
            CommandError::Corrupt(err) => Self::Internal(err.to_string()),
            CommandError::Database(err) => err.into(),
        }
    }
}
