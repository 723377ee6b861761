//! The one error every aggregate returns.
//!
//! The api maps each variant to an HTTP status with an exhaustive match (no `_` arm), so a
//! new variant forces a decision there. This module knows nothing of HTTP.

use serde::Serialize;
use uuid::Uuid;

use crate::services::LookupError;

/// Why a command was refused. Nothing is written when a command fails.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DomainError {
    /// The command names an aggregate that was never created (404).
    #[error("not found")]
    NotFound,
    /// A create command names an aggregate that already exists (409).
    #[error("already exists")]
    AlreadyExists,
    /// The command is not allowed in the aggregate's current status (409).
    #[error("cannot {action} a {status} order")]
    NotAllowed {
        /// What was attempted, as a verb phrase: "approve", "add a line to".
        action: &'static str,
        /// The status it was attempted in: "draft", "closed".
        status: String,
    },
    /// The command is not allowed for a reason other than the status, such as closing an
    /// order that still has money outstanding (409).
    #[error("cannot {action}: {reason}")]
    NotAllowedBecause {
        /// What was attempted, as a verb phrase: "close", "cancel".
        action: &'static str,
        /// Why not, in words a user understands.
        reason: String,
    },
    /// Fields of the command are invalid; each error names its field (422).
    #[error("{}", describe(.0))]
    Invalid(Vec<FieldError>),
    /// A line named in the request path does not exist on the order (404).
    #[error("line {0} not found")]
    LineNotFound(Uuid),
    /// A claim named in the request path does not exist on the order (404).
    #[error("claim {0} not found")]
    ClaimNotFound(Uuid),
    /// A lookup the rules need failed for infrastructure reasons (503).
    #[error("a dependency is unavailable: {0}")]
    Unavailable(String),
}

impl DomainError {
    /// A validation error on a single field.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid(vec![FieldError::new(field, message)])
    }
}

impl From<LookupError> for DomainError {
    fn from(error: LookupError) -> Self {
        Self::Unavailable(error.0)
    }
}

/// One invalid field: its path in the request (`lines[0].product_id`) and what is wrong.
///
/// Also an error of its own (`field: message`), for value types such as
/// [`TenantName`](crate::values::TenantName) that are checked outside any aggregate.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, thiserror::Error)]
#[error("{field}: {message}")]
pub struct FieldError {
    /// The field's path in the request body, such as `supplier_id` or `lines[2].weight`.
    pub field: String,
    /// What is wrong with it.
    pub message: String,
}

impl FieldError {
    /// A field error from its path and message.
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// "field: message; field: message" for the error's Display.
fn describe(errors: &[FieldError]) -> String {
    let parts: Vec<String> = errors
        .iter()
        .map(|e| format!("{}: {}", e.field, e.message))
        .collect();
    format!("invalid: {}", parts.join("; "))
}
