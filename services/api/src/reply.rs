//! Turning a command's outcome into an HTTP response.

use axum::http::{header, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::Value;

use oms_store::idempotency::Reply;
use oms_store::Executed;

/// Sends a recorded or fresh reply; a replay carries `Idempotent-Replayed: true`.
pub fn send(reply: Reply, replayed: bool) -> Response {
    let status = StatusCode::from_u16(reply.status).unwrap_or(StatusCode::OK);
    // The body's text as recorded, not serialized again.
    let content_type = [(header::CONTENT_TYPE, "application/json")];
    let mut response = (status, content_type, reply.body.into_text()).into_response();
    let headers = response.headers_mut();
    for (name, value) in reply.headers {
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(&value),
        ) {
            headers.insert(name, value);
        }
    }
    if replayed {
        headers.insert(
            HeaderName::from_static("idempotent-replayed"),
            HeaderValue::from_static("true"),
        );
    }
    response
}

/// Sends a command's outcome.
pub fn executed(outcome: Executed) -> Response {
    match outcome {
        Executed::Fresh { reply, .. } => send(reply, false),
        Executed::Replayed(reply) => send(reply, true),
    }
}

/// A GET response: the document with its `ETag`.
pub fn document(body: Value, version: i64) -> Response {
    let mut response = Json(body).into_response();
    if let Ok(etag) = HeaderValue::from_str(&format!("\"{version}\"")) {
        response.headers_mut().insert(header::ETAG, etag);
    }
    response
}
