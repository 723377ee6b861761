//! Tenants: the businesses sharing a deployment. A tenant is a row in `tenants` plus its head
//! row in `tenant_heads` (position 0, the genesis hash), created together.

use chrono::{DateTime, Utc};
use oms_domain::error::FieldError;
use oms_domain::values::{TenantName, TenantSlug};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::idempotency::{self, Finished, IdempotencyKey, KeyError, Reply, Started};

/// A tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Tenant {
    /// Its id: the `tenant` claim of its users' tokens.
    pub id: Uuid,
    /// Its display name.
    pub name: String,
    /// A short unique handle (`acme-meats`).
    pub slug: String,
    /// When it was created.
    pub created_at: DateTime<Utc>,
}

/// Why a tenant was not created.
#[derive(Debug, thiserror::Error)]
pub enum TenantError {
    /// The name or the slug breaks the domain's rules (`TenantName`, `TenantSlug`).
    #[error(transparent)]
    Invalid(#[from] FieldError),
    /// Another tenant has the slug.
    #[error("the slug {0} is taken")]
    SlugTaken(String),
    /// The Idempotency-Key was used for another request.
    #[error("the Idempotency-Key was used for a different request")]
    IdempotencyMismatch,
    /// A concurrent request with the same Idempotency-Key got in the way.
    #[error("a concurrent request used this Idempotency-Key")]
    IdempotencyRaced,
    /// The connection failed at `COMMIT` and whether the tenant was created is unknown.
    #[error("the database connection failed while committing; whether the tenant was created is unknown — retry with the same Idempotency-Key")]
    InDoubt,
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

impl From<KeyError> for TenantError {
    fn from(err: KeyError) -> Self {
        match err {
            KeyError::Mismatch => Self::IdempotencyMismatch,
            KeyError::Raced => Self::IdempotencyRaced,
            KeyError::InDoubt => Self::InDoubt,
            KeyError::Database(err) => Self::Database(err),
        }
    }
}

/// Idempotency records of platform requests (tenant creation) live under the nil tenant.
pub const PLATFORM: Uuid = Uuid::nil();

/// Creates a tenant for a request that may carry an Idempotency-Key: a repeat is answered with
/// the first response; `render` makes the response that is recorded with the tenant.
pub async fn create_keyed(
    pool: &PgPool,
    name: &str,
    slug: &str,
    key: Option<&IdempotencyKey>,
    render: impl Fn(&Tenant) -> Reply,
) -> Result<Finished, TenantError> {
    let mut tx = match idempotency::start(pool, PLATFORM, key).await? {
        Started::New(tx) => tx,
        Started::Replay(reply) => return Ok(Finished::Replayed(reply)),
    };
    let tenant = create_in(&mut tx, name, slug).await?;
    Ok(idempotency::finish(tx, pool, PLATFORM, key, render(&tenant)).await?)
}

/// Checks a tenant's name and slug against the domain's rules.
pub fn validate(name: &str, slug: &str) -> Result<(TenantName, TenantSlug), TenantError> {
    Ok((TenantName::parse(name)?, TenantSlug::parse(slug)?))
}

/// Creates a tenant and its head row in one transaction.
pub async fn create(pool: &PgPool, name: &str, slug: &str) -> Result<Tenant, TenantError> {
    let mut tx = pool.begin().await?;
    let tenant = create_in(&mut tx, name, slug).await?;
    tx.commit().await?;
    Ok(tenant)
}

/// [`create`] inside the caller's transaction.
pub async fn create_in(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    name: &str,
    slug: &str,
) -> Result<Tenant, TenantError> {
    let (name, slug) = validate(name, slug)?;
    let tenant: Option<Tenant> = sqlx::query_as(
        "insert into tenants (id, name, slug) values ($1, $2, $3)
         on conflict (slug) do nothing
         returning id, name, slug, created_at",
    )
    .bind(Uuid::now_v7())
    .bind(name.as_str())
    .bind(slug.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let tenant = tenant.ok_or_else(|| TenantError::SlugTaken(slug.to_string()))?;
    sqlx::query("insert into tenant_heads (tenant_id) values ($1)")
        .bind(tenant.id)
        .execute(&mut **tx)
        .await?;
    Ok(tenant)
}

/// Every tenant, oldest first.
pub async fn list(pool: &PgPool) -> Result<Vec<Tenant>, sqlx::Error> {
    sqlx::query_as("select id, name, slug, created_at from tenants order by created_at, id")
        .fetch_all(pool)
        .await
}

/// The tenant with `slug`, if any.
pub async fn find_by_slug(pool: &PgPool, slug: &str) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as("select id, name, slug, created_at from tenants where slug = $1")
        .bind(slug)
        .fetch_optional(pool)
        .await
}

/// The tenant with `id`, if any.
pub async fn find(pool: &PgPool, id: Uuid) -> Result<Option<Tenant>, sqlx::Error> {
    sqlx::query_as("select id, name, slug, created_at from tenants where id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await
}
