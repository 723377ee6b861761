//! The OpenAPI document served at `/api/v1/openapi.json`: the description, tags, security
//! scheme and shared schemas here; the paths are added by the routers themselves
//! (`utoipa-axum`), from the handlers' `#[utoipa::path]` annotations, as they register them.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

/// The API's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "oms",
        description = "Event-sourced, multi-tenant order management for meat traders.\n\n\
Conventions (see also docs/api.md): decimals are JSON strings in responses and strings or numbers in \
requests; unknown request fields are refused with 422; errors are `application/problem+json`; every \
order and reference-data response carries `version` and an `ETag`, commands accept `If-Match` (412 on \
mismatch) and `Idempotency-Key` (24 h replay with `Idempotent-Replayed: true`); command responses carry \
`position`, the tenant's event position after the command.\n\n\
Choices where the contract is silent: `POST …/{id}/lines` answers 201 with the whole order; an empty \
body is accepted as `{}` on action endpoints; a token whose tenant does not exist is 401; GETs read \
the read models (pass a command's `position` as `?min_position=` to read your own write), while \
`?as_of=` and `…/events` read the event store; the order document lists the order's notes as \
`order_notes` because `notes` is the header's free-text field; rate limits are per tenant and per \
API process (429 with `Retry-After`).",
        version = env!("CARGO_PKG_VERSION"),
    ),
    components(schemas(
        super::error::Problem, super::error::FieldProblem, crate::tenants::TenantDocument,
    )),
    modifiers(&BearerAuth),
    tags(
        (name = "platform", description = "Tenants (platform_admin)"),
        (name = "reference data", description = "Suppliers, customers, products, plants, carriers"),
        (name = "purchase orders", description = "Buying loads from packing plants"),
        (name = "sales orders", description = "Selling loads to buyers"),
        (name = "audit", description = "The event feed and hash-chain verification (auditor, admin)"),
    )
)]
pub struct ApiDoc;

/// Declares the bearer-token scheme the paths refer to.
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                Http::builder()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("HS256; claims sub, tenant, roles, exp, name"))
                    .build(),
            ),
        );
    }
}
