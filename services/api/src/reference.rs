//! Reference data: `POST /{kind}`, `GET /{kind}/{id}`, `PATCH /{kind}/{id}` for suppliers,
//! customers, products, plants and carriers. One generic set of handlers serves the five
//! kinds; `reference_kind!` gives each its routes and OpenAPI entries.

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use oms_domain::reference::{
    Carrier, Customer, Plant, Product, Reference, ReferenceCommand, ReferenceKind, Supplier,
};
use serde_json::Value;
use uuid::Uuid;

use super::error::ApiError;
use super::extract::{ApiPath, ApiQuery, CommandHeaders, JsonBody, TenantUser};
use super::reply::executed;
use super::AppState;
use crate::auth::Permission;
use oms_store::idempotency::Reply;
use oms_store::{Loaded, OmsAggregate};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Routes of the five kinds.
pub fn router() -> OpenApiRouter<AppState> {
    // Each route is registered from its handler's `#[utoipa::path]`: the router and the
    // OpenAPI document cannot disagree.
    OpenApiRouter::new()
        .routes(routes!(list_supplier, create_supplier))
        .routes(routes!(show_supplier, update_supplier))
        .routes(routes!(list_customer, create_customer))
        .routes(routes!(show_customer, update_customer))
        .routes(routes!(erase_supplier))
        .routes(routes!(erase_customer))
        .routes(routes!(list_product, create_product))
        .routes(routes!(show_product, update_product))
        .routes(routes!(list_plant, create_plant))
        .routes(routes!(show_plant, update_plant))
        .routes(routes!(list_carrier, create_carrier))
        .routes(routes!(show_carrier, update_carrier))
}

/// The response body: the item's document and, for commands, `position`.
pub fn view<K: ReferenceKind>(loaded: &Loaded<Reference<K>>, position: Option<i64>) -> Value {
    let mut body = oms_projections::documents::reference(&loaded.aggregate, &loaded.stamp());
    if let Some(position) = position {
        super::orders::with_position(&mut body, position);
    }
    body
}

fn reply<K: ReferenceKind>(
    loaded: &Loaded<Reference<K>>,
    position: i64,
    status: StatusCode,
    plural: &str,
) -> Reply {
    let mut headers = vec![("etag".to_string(), format!("\"{}\"", loaded.version))];
    if status == StatusCode::CREATED {
        headers.push(("location".into(), format!("/api/v1/{plural}/{}", loaded.id)));
    }
    Reply {
        status: status.as_u16(),
        body: view(loaded, Some(position)).into(),
        headers,
    }
}

fn plural_of<K: ReferenceKind>() -> String {
    format!("{}s", K::TYPE)
}

async fn create<K: ReferenceKind>(
    State(state): State<AppState>,
    user: TenantUser,
    headers: CommandHeaders,
    body: JsonBody<K>,
) -> Result<Response, ApiError>
where
    Reference<K>: OmsAggregate<Command = ReferenceCommand<K>>,
    <Reference<K> as cqrs_es::Aggregate>::Event: oms_domain::UniqueKeys,
{
    user.require(Permission::Manage)?;
    let ctx = headers.context(&user, &body.raw);
    let id = Uuid::now_v7();
    let plural = plural_of::<K>();
    let outcome = state
        .commands
        .execute::<Reference<K>, _, _>(
            &ctx,
            id,
            None,
            |_| ReferenceCommand::Register(body.value.clone()),
            move |loaded, position| reply(loaded, position, StatusCode::CREATED, &plural),
        )
        .await?;
    Ok(executed(outcome))
}

async fn update<K: ReferenceKind>(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
    body: JsonBody<K::Patch>,
) -> Result<Response, ApiError>
where
    Reference<K>: OmsAggregate<Command = ReferenceCommand<K>>,
    <Reference<K> as cqrs_es::Aggregate>::Event: oms_domain::UniqueKeys,
{
    user.require(Permission::Manage)?;
    let ctx = headers.context(&user, &body.raw);
    let plural = plural_of::<K>();
    let outcome = state
        .commands
        .execute::<Reference<K>, _, _>(
            &ctx,
            id,
            None,
            |_| ReferenceCommand::Update(body.value.clone()),
            move |loaded, position| reply(loaded, position, StatusCode::OK, &plural),
        )
        .await?;
    Ok(executed(outcome))
}

async fn erase<K: ReferenceKind>(
    State(state): State<AppState>,
    user: TenantUser,
    ApiPath(id): ApiPath<Uuid>,
    headers: CommandHeaders,
) -> Result<Response, ApiError>
where
    Reference<K>: OmsAggregate<Command = ReferenceCommand<K>>,
    <Reference<K> as cqrs_es::Aggregate>::Event: oms_domain::UniqueKeys,
{
    user.require(Permission::Erase)?;
    let ctx = headers.context(&user, b"");
    let plural = plural_of::<K>();
    let at = oms_store::hash::to_stored_precision(chrono::Utc::now());
    let outcome = state
        .commands
        .execute::<Reference<K>, _, _>(
            &ctx,
            id,
            None,
            |_| ReferenceCommand::ErasePersonalData { at },
            move |loaded, position| reply(loaded, position, StatusCode::OK, &plural),
        )
        .await?;
    Ok(executed(outcome))
}

/// Erases a supplier's personal data (admin): contact name, e-mail, phone and address become
/// null everywhere for good, and `personal_data_erased_at` is set.
#[utoipa::path(post, path = "/api/v1/suppliers/{id}/erase-personal-data", tag = "reference data",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "the document"), (status = 403, body = super::error::Problem), (status = 404, body = super::error::Problem), (status = 409, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn erase_supplier(
    state: State<AppState>,
    user: TenantUser,
    id: ApiPath<Uuid>,
    headers: CommandHeaders,
) -> Result<Response, ApiError> {
    erase::<Supplier>(state, user, id, headers).await
}

/// Erases a customer's personal data (admin): see `erase_supplier`.
#[utoipa::path(post, path = "/api/v1/customers/{id}/erase-personal-data", tag = "reference data",
    params(("id" = Uuid, Path)),
    responses((status = 200, description = "the document"), (status = 403, body = super::error::Problem), (status = 404, body = super::error::Problem), (status = 409, body = super::error::Problem)),
    security(("bearer" = [])))]
pub async fn erase_customer(
    state: State<AppState>,
    user: TenantUser,
    id: ApiPath<Uuid>,
    headers: CommandHeaders,
) -> Result<Response, ApiError> {
    erase::<Customer>(state, user, id, headers).await
}

/// Documented per-kind entry points (the routes use the generic handlers; these exist so the
/// OpenAPI document lists every kind's paths).
macro_rules! documented_kind {
    ($kind:ty, $body:ty, $patch_body:ty, $plural:literal, $resource:ident, $create:ident, $list:ident, $show:ident, $update:ident) => {
        #[doc = concat!("Lists ", $plural, ": filters `q` (name or code contains), `active`; `sort`, `limit`, `cursor`; CSV.")]
        #[utoipa::path(get, path = concat!("/api/v1/", $plural), tag = "reference data",
            params(("q" = Option<String>, Query), ("active" = Option<bool>, Query), ("sort" = Option<String>, Query, description = "name, code, created_at, updated_at; -field for descending"),
                   ("limit" = Option<u32>, Query), ("cursor" = Option<String>, Query), ("min_position" = Option<i64>, Query), ("format" = Option<String>, Query)),
            responses((status = 200, description = "`{items, next_cursor}` or CSV")), security(("bearer" = [])))]
        pub async fn $list(State(state): State<AppState>, user: TenantUser, headers: axum::http::HeaderMap, ApiQuery(params): ApiQuery<std::collections::BTreeMap<String, String>>) -> Result<Response, ApiError> {
            super::queries::list(&state, &user, oms_projections::queries::Resource::$resource, &headers, params).await
        }

        #[doc = concat!("Creates a ", stringify!($kind), ".")]
        #[utoipa::path(post, path = concat!("/api/v1/", $plural), tag = "reference data",
            request_body = $body,
            responses((status = 201, description = "the document"), (status = 409, body = super::error::Problem), (status = 422, body = super::error::Problem)),
            security(("bearer" = [])))]
        pub async fn $create(state: State<AppState>, user: TenantUser, headers: CommandHeaders, body: JsonBody<$kind>) -> Result<Response, ApiError> {
            create::<$kind>(state, user, headers, body).await
        }

        #[doc = concat!("Reads a ", stringify!($kind), ".")]
        #[utoipa::path(get, path = concat!("/api/v1/", $plural, "/{id}"), tag = "reference data",
            params(("id" = Uuid, Path), ("min_position" = Option<i64>, Query)), responses((status = 200, description = "the document"), (status = 404, body = super::error::Problem)),
            security(("bearer" = [])))]
        pub async fn $show(State(state): State<AppState>, user: TenantUser, ApiPath(id): ApiPath<Uuid>, ApiQuery(params): ApiQuery<std::collections::BTreeMap<String, String>>) -> Result<Response, ApiError> {
            super::queries::show(&state, &user, oms_projections::queries::Resource::$resource, id, &params).await
        }

        #[doc = concat!("Changes some fields of a ", stringify!($kind), "; `{\"active\": false}` deactivates it.")]
        #[utoipa::path(patch, path = concat!("/api/v1/", $plural, "/{id}"), tag = "reference data",
            request_body = $patch_body,
            params(("id" = Uuid, Path)),
            responses((status = 200, description = "the document"), (status = 404, body = super::error::Problem), (status = 412, body = super::error::Problem)),
            security(("bearer" = [])))]
        pub async fn $update(state: State<AppState>, user: TenantUser, id: ApiPath<Uuid>, headers: CommandHeaders, body: JsonBody<<$kind as ReferenceKind>::Patch>) -> Result<Response, ApiError> {
            update::<$kind>(state, user, id, headers, body).await
        }
    };
}

documented_kind!(
    Supplier,
    crate::schemas::SupplierBody,
    crate::schemas::SupplierPatchBody,
    "suppliers",
    Suppliers,
    create_supplier,
    list_supplier,
    show_supplier,
    update_supplier
);
documented_kind!(
    Customer,
    crate::schemas::CustomerBody,
    crate::schemas::CustomerPatchBody,
    "customers",
    Customers,
    create_customer,
    list_customer,
    show_customer,
    update_customer
);
documented_kind!(
    Product,
    crate::schemas::ProductBody,
    crate::schemas::ProductPatchBody,
    "products",
    Products,
    create_product,
    list_product,
    show_product,
    update_product
);
documented_kind!(
    Plant,
    crate::schemas::PlantBody,
    crate::schemas::PlantPatchBody,
    "plants",
    Plants,
    create_plant,
    list_plant,
    show_plant,
    update_plant
);
documented_kind!(
    Carrier,
    crate::schemas::CarrierBody,
    crate::schemas::CarrierPatchBody,
    "carriers",
    Carriers,
    create_carrier,
    list_carrier,
    show_carrier,
    update_carrier
);
