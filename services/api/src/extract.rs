//! Extractors: what a handler takes as parameters. Each one refuses bad input with the
//! problem API.md asks for, before the handler runs.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::header::{self, HeaderMap};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use super::error::{ApiError, FieldProblem};
use super::AppState;
use crate::auth::{Claims, Permission, TokenError};
use oms_store::idempotency::{IdempotencyKey, MAX_KEY_LEN};
use oms_store::{Actor, CommandContext};

/// The verified token of a request.
#[derive(Debug, Clone)]
pub struct Authenticated(pub Claims);

impl FromRequestParts<AppState> for Authenticated {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let value = parts.headers.get(header::AUTHORIZATION).ok_or_else(|| {
            ApiError::Unauthorized("an Authorization: Bearer token is required".into())
        })?;
        let token = value
            .to_str()
            .ok()
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        let claims = state.keys.verify(token).map_err(|err| match err {
            TokenError::Expired => ApiError::Unauthorized("the token has expired".into()),
            TokenError::Invalid(_) => ApiError::Unauthorized("the token is invalid".into()),
        })?;
        if !recordable(&claims.sub) || !claims.name.as_deref().is_none_or(recordable) {
            return Err(ApiError::Unauthorized(format!(
                "the token is invalid: sub and name must be 1 to {MAX_ACTOR_LEN} characters \
                 without control characters"
            )));
        }
        Ok(Self(claims))
    }
}

/// The longest `sub` or `name` claim accepted, in characters.
const MAX_ACTOR_LEN: usize = 200;

/// Whether a token's `sub` or `name` can be recorded on events as it is: every event stores
/// them, in JSON that Postgres must hold (no NUL) and people must read (one bounded line).
fn recordable(text: &str) -> bool {
    !text.trim().is_empty()
        && text.chars().count() <= MAX_ACTOR_LEN
        && !text.chars().any(char::is_control)
}

/// A verified token that belongs to a tenant: every endpoint below `/api/v1` except tenants.
#[derive(Debug, Clone)]
pub struct TenantUser {
    /// The token's tenant.
    pub tenant: Uuid,
    /// The token's claims.
    pub claims: Claims,
}

impl TenantUser {
    /// Refuses (403) unless one of the token's roles grants `permission`.
    pub fn require(&self, permission: Permission) -> Result<(), ApiError> {
        if self.claims.may(permission) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "your roles ({}) do not allow this",
                self.claims
                    .roles
                    .iter()
                    .map(|r| serde_json::to_value(r)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default())
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// The actor recorded on events.
    pub fn actor(&self) -> Actor {
        Actor {
            subject: self.claims.sub.clone(),
            name: self.claims.name.clone(),
        }
    }
}

impl FromRequestParts<AppState> for TenantUser {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Authenticated(claims) = Authenticated::from_request_parts(parts, state).await?;
        // A platform administrator's token rightly has no tenant, and may not see a
        // tenant's data (403); any other token without one is malformed (401).
        let tenant = claims.tenant.ok_or_else(|| {
            if claims.may(Permission::Platform) {
                ApiError::Forbidden(
                    "this token has no tenant; tenant data needs a tenant's token".into(),
                )
            } else {
                ApiError::Unauthorized("the token names no tenant".into())
            }
        })?;
        if let Some(limiter) = &state.rate_limiter {
            limiter
                .check(tenant)
                .map_err(|retry_after| ApiError::TooManyRequests { retry_after })?;
        }
        // The tenant's limit covers this request: it does not count against its address
        // (unless it is refused 401 below), not even when the database fails the next check.
        if let Some(limited) = parts.extensions.get::<crate::rate_limit::TenantLimited>() {
            limited.set();
        }
        // After the rate limit, so that a flood of tokens for unknown tenants is limited
        // before it reaches the database.
        if !state.tenants.exists(&state.pool, tenant).await? {
            return Err(ApiError::Unauthorized(
                "the token's tenant does not exist".into(),
            ));
        }
        Ok(Self { tenant, claims })
    }
}

/// The headers a command may carry: `If-Match`, `Idempotency-Key`, and the request,
/// correlation and causation ids.
#[derive(Debug, Clone)]
pub struct CommandHeaders {
    expected_version: Option<i64>,
    idempotency_key: Option<String>,
    request_id: String,
    correlation_id: Option<String>,
    causation_id: Option<String>,
    method: Method,
    path: String,
}

fn header_text(headers: &HeaderMap, name: &str) -> Result<Option<String>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(|v| Some(v.trim().to_string()))
            .map_err(|_| ApiError::BadRequest(format!("the {name} header is not visible ASCII"))),
    }
}

/// Parses `If-Match: "<version>"` (a weak `W/` prefix or bare number are accepted too).
fn parse_if_match(value: &str) -> Result<i64, ApiError> {
    let trimmed = value.trim().trim_start_matches("W/").trim_matches('"');
    trimmed
        .parse::<i64>()
        .ok()
        .filter(|v| *v >= 0)
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "If-Match must be a version like \"3\", not {value}"
            ))
        })
}

impl FromRequestParts<AppState> for CommandHeaders {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &AppState) -> Result<Self, ApiError> {
        let headers = &parts.headers;
        let expected_version = header_text(headers, "if-match")?
            .map(|v| parse_if_match(&v))
            .transpose()?;
        let idempotency_key = header_text(headers, "idempotency-key")?;
        if let Some(key) = &idempotency_key {
            if key.is_empty() || key.len() > MAX_KEY_LEN {
                return Err(ApiError::BadRequest(format!(
                    "Idempotency-Key must be 1 to {MAX_KEY_LEN} characters"
                )));
            }
        }
        let request_id =
            header_text(headers, "x-request-id")?.unwrap_or_else(|| Uuid::now_v7().to_string());
        Ok(Self {
            expected_version,
            idempotency_key,
            request_id,
            correlation_id: header_text(headers, "x-correlation-id")?.filter(|v| !v.is_empty()),
            causation_id: header_text(headers, "x-causation-id")?.filter(|v| !v.is_empty()),
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
        })
    }
}

impl CommandHeaders {
    /// The command context for `user`'s request whose body was `raw`.
    pub fn context(&self, user: &TenantUser, raw: &[u8]) -> CommandContext {
        CommandContext {
            tenant: user.tenant,
            actor: user.actor(),
            request_id: self.request_id.clone(),
            correlation_id: self
                .correlation_id
                .clone()
                .unwrap_or_else(|| self.request_id.clone()),
            causation_id: self.causation_id.clone(),
            expected_version: self.expected_version,
            // Every command is recorded: under the client's key, else under its request id.
            idempotency: Some(
                match &self.idempotency_key {
                    Some(key) => {
                        IdempotencyKey::new(key.clone(), self.method.as_str(), &self.path, raw)
                    }
                    None => IdempotencyKey::for_request_id(
                        &self.request_id,
                        self.method.as_str(),
                        &self.path,
                        raw,
                    ),
                }
                .for_actor(&user.claims.sub),
            ),
        }
    }

    /// The `Idempotency-Key`, if any (for requests outside a tenant: tenant creation).
    pub fn idempotency_key(&self, raw: &[u8]) -> Option<IdempotencyKey> {
        self.idempotency_key
            .as_ref()
            .map(|key| IdempotencyKey::new(key.clone(), self.method.as_str(), &self.path, raw))
    }
}

/// A JSON body: 415 unless it is JSON, 413 over 1 MiB, 400 when it does not parse, 422 when
/// a field is missing, unknown or invalid (with the field's path). An empty body reads as
/// `{}`, so action endpoints (`/submit`) need none. Keeps the raw bytes for the idempotency
/// fingerprint.
#[derive(Debug, Clone)]
pub struct JsonBody<T> {
    /// The parsed body.
    pub value: T,
    /// The bytes as sent.
    pub raw: Bytes,
}

impl<T: DeserializeOwned> FromRequest<AppState> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, ApiError> {
        let content_type = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_ascii_lowercase);
        let raw = Bytes::from_request(req, state).await.map_err(|rejection| {
            match rejection.status() {
                StatusCode::PAYLOAD_TOO_LARGE => ApiError::PayloadTooLarge,
                _ => ApiError::BadRequest(format!("could not read the body: {rejection}")),
            }
        })?;
        let is_json = content_type.as_deref().is_some_and(|ct| {
            let essence = ct.split(';').next().unwrap_or_default().trim();
            essence == "application/json" || essence.ends_with("+json")
        });
        let text: &[u8] = if raw.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else if !is_json {
            return Err(ApiError::UnsupportedMediaType(
                "send the body as Content-Type: application/json".into(),
            ));
        } else {
            &raw
        };
        let value = parse_json(text)?;
        Ok(Self { value, raw })
    }
}

/// Parses JSON into `T`, telling syntax errors (400) from data errors (422, with the path).
pub fn parse_json<T: DeserializeOwned>(text: &[u8]) -> Result<T, ApiError> {
    let shape: serde_json::Value = serde_json::from_slice(text)
        .map_err(|err| ApiError::BadRequest(format!("the body is not valid JSON: {err}")))?;
    if let Some((field, message)) = misshapen(&shape, String::new()) {
        return Err(ApiError::Unprocessable {
            detail: if field.is_empty() {
                message.to_string()
            } else {
                format!("{field}: {message}")
            },
            errors: vec![FieldProblem {
                field,
                message: message.to_string(),
            }],
        });
    }
    let mut deserializer = serde_json::Deserializer::from_slice(text);
    let parsed: Result<T, _> = serde_path_to_error::deserialize(&mut deserializer);
    let value = match parsed {
        Ok(value) => value,
        Err(err) => {
            let path = err.path().to_string();
            let inner = err.into_inner();
            return Err(match inner.classify() {
                serde_json::error::Category::Data => {
                    let field = if path == "." { String::new() } else { path };
                    let message = clean_serde_message(&inner.to_string());
                    let field = if field.is_empty() {
                        missing_field_name(&message).unwrap_or_default()
                    } else {
                        field
                    };
                    ApiError::Unprocessable {
                        detail: if field.is_empty() {
                            message.clone()
                        } else {
                            format!("{field}: {message}")
                        },
                        errors: vec![FieldProblem { field, message }],
                    }
                }
                _ => ApiError::BadRequest(format!("the body is not valid JSON: {inner}")),
            });
        }
    };
    deserializer
        .end()
        .map_err(|err| ApiError::BadRequest(format!("the body is not valid JSON: {err}")))?;
    Ok(value)
}

/// Where a body is not shaped as every request body of this API is: an object, whose arrays
/// (`lines`) hold objects. serde would otherwise read an array as a struct, field by field in
/// order (`[]` as `{}`), which no client means and the OpenAPI document does not allow.
fn misshapen(value: &serde_json::Value, path: String) -> Option<(String, &'static str)> {
    use serde_json::Value;
    match value {
        Value::Object(fields) if path.is_empty() || path.ends_with(']') => {
            fields.iter().find_map(|(name, value)| {
                let path = if path.is_empty() {
                    name.clone()
                } else {
                    format!("{path}.{name}")
                };
                match value {
                    Value::Array(items) => items.iter().enumerate().find_map(|(i, item)| {
                        let at = format!("{path}[{i}]");
                        match item {
                            Value::Object(_) => misshapen(item, at),
                            _ => Some((at, "must be an object")),
                        }
                    }),
                    _ => None,
                }
            })
        }
        Value::Object(_) => None,
        _ if path.is_empty() => Some((String::new(), "the body must be a JSON object")),
        _ => Some((path, "must be an object")),
    }
}

/// Drops serde's " at line 1 column 42" tail: the field path says where.
fn clean_serde_message(message: &str) -> String {
    match message.rfind(" at line ") {
        Some(index) => message[..index].to_string(),
        None => message.to_string(),
    }
}

/// serde reports a missing field at the parent's path; name the field itself.
fn missing_field_name(message: &str) -> Option<String> {
    message
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
        .map(str::to_string)
}

/// Path parameters: 400 (not 500 or plain text) when one does not parse.
#[derive(Debug, Clone)]
pub struct ApiPath<T>(pub T);

impl<T> FromRequestParts<AppState> for ApiPath<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(value)| Self(value))
            .map_err(|rejection| {
                ApiError::BadRequest(format!("bad path parameter: {}", rejection.body_text()))
            })
    }
}

/// Query parameters: 400 when they do not parse.
#[derive(Debug, Clone)]
pub struct ApiQuery<T>(pub T);

impl<T> FromRequestParts<AppState> for ApiQuery<T>
where
    T: DeserializeOwned + Send,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(value)| Self(value))
            .map_err(|rejection| {
                ApiError::BadRequest(format!("bad query parameter: {}", rejection.body_text()))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Body {
        name: String,
        count: u32,
    }

    #[test]
    fn malformed_json_is_a_bad_request() {
        assert!(matches!(
            parse_json::<Body>(b"{\"name\": "),
            Err(ApiError::BadRequest(_))
        ));
    }

    #[test]
    fn an_unknown_field_is_unprocessable_and_named() {
        let err = parse_json::<Body>(br#"{"name":"a","count":1,"colour":"red"}"#).unwrap_err();
        let ApiError::Unprocessable { errors, .. } = err else {
            panic!("{err:?}")
        };
        assert!(errors[0].message.contains("colour"), "{errors:?}");
    }

    #[test]
    fn a_missing_field_is_named() {
        let err = parse_json::<Body>(br#"{"name":"a"}"#).unwrap_err();
        let ApiError::Unprocessable { errors, .. } = err else {
            panic!("{err:?}")
        };
        assert_eq!(errors[0].field, "count");
    }

    #[test]
    fn arrays_are_not_read_as_objects() {
        for (body, field) in [
            (&b"[]"[..], ""),
            (b"[\"a\", 1]", ""),
            (b"\"text\"", ""),
            (br#"{"lines": [["p", "1", "1"]]}"#, "lines[0]"),
            (br#"{"lines": [{}, 3]}"#, "lines[1]"),
            (br#"{"lines": [{"lots": [1]}]}"#, "lines[0].lots[0]"),
        ] {
            let err = parse_json::<Body>(body).unwrap_err();
            let ApiError::Unprocessable { errors, .. } = err else {
                panic!("{err:?}")
            };
            assert_eq!(errors[0].field, field, "{}", String::from_utf8_lossy(body));
        }
        assert!(parse_json::<Body>(br#"{"name":"a","count":1}"#).is_ok());
    }

    #[test]
    fn if_match_accepts_quoted_weak_and_bare_versions() {
        assert_eq!(parse_if_match("\"3\"").unwrap(), 3);
        assert_eq!(parse_if_match("W/\"4\"").unwrap(), 4);
        assert_eq!(parse_if_match("5").unwrap(), 5);
        assert!(parse_if_match("\"abc\"").is_err());
    }
}
