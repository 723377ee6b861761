//! `POST /api/v1/tenants`, `GET /api/v1/tenants` (platform_admin).

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::Json;
use serde::Deserialize;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{Authenticated, CommandHeaders, JsonBody};
use super::reply::send;
use super::AppState;
use crate::auth::Permission;
use oms_store::idempotency::{Finished, Reply};
use oms_store::tenants::{self, Tenant, TenantError};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Tenant routes.
pub fn router() -> OpenApiRouter<AppState> {
    // Each route is registered from its handler's `#[utoipa::path]`: the router and the
    // OpenAPI document cannot disagree.
    OpenApiRouter::new().routes(routes!(list, create))
}

/// The body of `POST /tenants`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewTenant {
    /// Display name.
    #[schema(schema_with = crate::schemas::with::tenant_name)]
    pub name: String,
    /// Unique handle: lowercase letters, digits, '-'.
    #[schema(schema_with = crate::schemas::with::tenant_slug)]
    pub slug: String,
}

fn require_platform(claims: &crate::auth::Claims) -> Result<(), ApiError> {
    if claims.may(Permission::Platform) {
        Ok(())
    } else {
        Err(ApiError::Forbidden(
            "only platform_admin manages tenants".into(),
        ))
    }
}

impl From<TenantError> for ApiError {
    fn from(err: TenantError) -> Self {
        match err {
            TenantError::Invalid(err) => ApiError::invalid(err.field, err.message),
            TenantError::SlugTaken(slug) => ApiError::Conflict {
                detail: format!("the slug {slug} is taken"),
                errors: vec![super::error::FieldProblem {
                    field: "slug".into(),
                    message: "is taken".into(),
                }],
            },
            TenantError::IdempotencyMismatch => ApiError::invalid(
                "Idempotency-Key",
                "this key was used for a different request in the last 24 hours",
            ),
            TenantError::IdempotencyRaced => ApiError::Conflict {
                detail: "a concurrent request used this Idempotency-Key".into(),
                errors: Vec::new(),
            },
            TenantError::InDoubt => ApiError::Unavailable(err.to_string()),
            TenantError::Database(err) => err.into(),
        }
    }
}

/// Creates a tenant.
#[utoipa::path(post, path = "/api/v1/tenants", tag = "platform", request_body = NewTenant,
    responses((status = 201, body = TenantDocument), (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn create(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
    headers: CommandHeaders,
    body: JsonBody<NewTenant>,
) -> Result<Response, ApiError> {
    require_platform(&claims)?;
    let key = headers
        .idempotency_key(&body.raw)
        .map(|key| key.for_actor(&claims.sub));
    let finished = tenants::create_keyed(
        &state.pool,
        &body.value.name,
        &body.value.slug,
        key.as_ref(),
        |tenant| Reply {
            status: StatusCode::CREATED.as_u16(),
            body: serde_json::to_value(tenant).unwrap_or_default().into(),
            headers: vec![("location".into(), format!("/api/v1/tenants/{}", tenant.id))],
        },
    )
    .await?;
    Ok(match finished {
        Finished::Committed(reply) => send(reply, false),
        Finished::Replayed(reply) => send(reply, true),
    })
}

/// Lists tenants.
#[utoipa::path(get, path = "/api/v1/tenants", tag = "platform",
    responses((status = 200, description = "`{items: [Tenant]}`")), security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    Authenticated(claims): Authenticated,
) -> Result<Json<serde_json::Value>, ApiError> {
    require_platform(&claims)?;
    let items = tenants::list(&state.pool).await?;
    Ok(Json(
        serde_json::json!({ "items": items, "next_cursor": null }),
    ))
}

/// A tenant as the API shows it (the schema of [`Tenant`]'s serde form).
#[derive(Debug, Clone, serde::Serialize, utoipa::ToSchema)]
pub struct TenantDocument {
    /// Its id: the `tenant` claim of its users' tokens.
    pub id: Uuid,
    /// Its display name.
    pub name: String,
    /// A short unique handle (`acme-meats`).
    pub slug: String,
    /// When it was created.
    pub created_at: chrono::DateTime<chrono::Utc>,
}

impl From<Tenant> for TenantDocument {
    fn from(tenant: Tenant) -> Self {
        Self {
            id: tenant.id,
            name: tenant.name,
            slug: tenant.slug,
            created_at: tenant.created_at,
        }
    }
}
