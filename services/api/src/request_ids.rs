//! Bounds on the request, correlation and causation ids a client may send
//! (`X-Request-Id`, `X-Correlation-Id`, `X-Causation-Id`).
//!
//! These ids are stored in the metadata of every event a command writes, kept for ever, and
//! the request id is echoed in the response's `X-Request-Id` and written to the logs. So they
//! are checked before anything else sees the request — before the request-id layer echoes
//! one, before the trace span records it, before a command stores it:
//!
//! - longer than [`MAX_ID_LEN`] bytes: **431 Request Header Fields Too Large** (RFC 6585: the
//!   server refuses to process a header field because it is too large);
//! - empty, or with anything but visible ASCII (`!` to `~`: no spaces, no control characters,
//!   no bytes above 127), or sent twice: **400 Bad Request** (malformed, as API.md files bad
//!   headers).
//!
//! Both are problem documents, and neither carries the refused id back.

use axum::extract::{Request, State};
use axum::http::HeaderMap;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::error::ApiError;
use super::AppState;

/// The longest id accepted, in bytes (the same bound as an `Idempotency-Key`).
pub const MAX_ID_LEN: usize = 200;

/// The headers checked, as they are spelled in the OpenAPI document.
pub const ID_HEADERS: [&str; 3] = ["X-Request-Id", "X-Correlation-Id", "X-Causation-Id"];

/// Why an id header was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdProblem {
    /// Over [`MAX_ID_LEN`] bytes (431).
    TooLong(&'static str),
    /// Empty, not visible ASCII, or repeated (400).
    Malformed(&'static str),
}

impl From<IdProblem> for ApiError {
    fn from(problem: IdProblem) -> Self {
        match problem {
            IdProblem::TooLong(name) => ApiError::HeaderTooLarge(format!(
                "the {name} header must be at most {MAX_ID_LEN} characters"
            )),
            IdProblem::Malformed(name) => ApiError::BadRequest(format!(
                "the {name} header must be 1 to {MAX_ID_LEN} visible ASCII characters \
                 (no spaces), sent once"
            )),
        }
    }
}

/// Checks the three id headers of a request.
pub fn check(headers: &HeaderMap) -> Result<(), IdProblem> {
    for name in ID_HEADERS {
        let mut values = headers.get_all(name).iter();
        let Some(value) = values.next() else {
            continue;
        };
        if values.next().is_some() {
            return Err(IdProblem::Malformed(name));
        }
        let bytes = value.as_bytes();
        if bytes.len() > MAX_ID_LEN {
            return Err(IdProblem::TooLong(name));
        }
        if bytes.is_empty() || !bytes.iter().all(|b| (b'!'..=b'~').contains(b)) {
            return Err(IdProblem::Malformed(name));
        }
    }
    Ok(())
}

/// Middleware: refuses a request whose id headers are out of bounds, before any other layer
/// sees it (so it is counted here: the counting layer is further in).
pub async fn refuse_bad_ids(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    match check(request.headers()) {
        Ok(()) => next.run(request).await,
        Err(problem) => {
            let response = ApiError::from(problem).into_response();
            state.metrics.response(response.status().as_u16());
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn with(name: &str, value: &[u8]) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(
            axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_bytes(value).unwrap(),
        );
        headers
    }

    #[test]
    fn ids_up_to_the_bound_of_visible_ascii_pass() {
        assert_eq!(check(&HeaderMap::new()), Ok(()));
        assert_eq!(check(&with("x-request-id", b"req-abc-123")), Ok(()));
        let longest = "a".repeat(MAX_ID_LEN);
        assert_eq!(check(&with("x-causation-id", longest.as_bytes())), Ok(()));
        assert_eq!(check(&with("x-correlation-id", b"!~{}\"'")), Ok(()));
    }

    #[test]
    fn long_ids_are_too_large_and_odd_ones_malformed() {
        let long = "a".repeat(MAX_ID_LEN + 1);
        assert_eq!(
            check(&with("x-request-id", long.as_bytes())),
            Err(IdProblem::TooLong("X-Request-Id"))
        );
        for bad in [&b"two words"[..], b"caf\xc3\xa9", b"tab\there", b""] {
            assert_eq!(
                check(&with("x-correlation-id", bad)),
                Err(IdProblem::Malformed("X-Correlation-Id")),
                "{bad:?}"
            );
        }
        let mut twice = with("x-causation-id", b"a");
        twice.append("x-causation-id", HeaderValue::from_static("b"));
        assert_eq!(check(&twice), Err(IdProblem::Malformed("X-Causation-Id")));
    }
}
