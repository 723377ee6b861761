//! Reference data: create, read, partial update, deactivate; codes unique per tenant.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;

#[tokio::test]
async fn each_reference_kind_is_created_read_and_patched() {
    let app = spawn_app().await;
    let kinds = [
        (
            "suppliers",
            json!({"name": "Prairie Packers", "code": "PRA", "email": "sales@prairie.example", "credit_terms": "net_30"}),
        ),
        (
            "customers",
            json!({"name": "Metro Grocers", "code": "MET", "industry": "retail"}),
        ),
        (
            "products",
            json!({"code": "PK-LOIN", "description": "Pork loin boneless", "protein": "pork", "fresh_or_frozen": "fresh", "package_type": "boxed_wax_lined", "net_or_catch": "catch", "edible": "edible", "uom": "LB"}),
        ),
        (
            "plants",
            json!({"name": "Plant 12", "code": "P12", "establishment_number": "EST 245C"}),
        ),
        (
            "carriers",
            json!({"name": "Reefer Lines", "code": "RFL", "carrier_type": "truck", "mc_number": "MC-1"}),
        ),
    ];
    for (kind, body) in kinds {
        let created = app
            .post_ok(
                &format!("/api/v1/{kind}"),
                body.clone(),
                StatusCode::CREATED,
            )
            .await;
        assert_eq!(created["active"], true, "{kind}");
        assert_eq!(created["version"], 1, "{kind}");
        let id = id_of(&created);
        let fetched = expect_json(
            app.get(&format!(
                "/api/v1/{kind}/{id}?min_position={}",
                created["position"]
            ))
            .await,
            StatusCode::OK,
        )
        .await;
        for (field, value) in body.as_object().unwrap() {
            assert_eq!(&fetched[field], value, "{kind}.{field}");
        }
        let deactivated = expect_json(
            app.patch(&format!("/api/v1/{kind}/{id}"), json!({"active": false}))
                .await,
            StatusCode::OK,
        )
        .await;
        assert_eq!(deactivated["active"], false, "{kind}");
        assert_eq!(deactivated["version"], 2, "{kind}");
    }
}

#[tokio::test]
async fn a_code_is_unique_per_tenant_and_free_again_after_it_changes() {
    let app = spawn_app().await;
    let first = app
        .post_ok(
            "/api/v1/carriers",
            json!({"name": "A", "code": "TRK", "carrier_type": "truck"}),
            StatusCode::CREATED,
        )
        .await;
    let dup = app
        .post(
            "/api/v1/carriers",
            json!({"name": "B", "code": "TRK", "carrier_type": "rail"}),
        )
        .await;
    expect_problem(dup, StatusCode::CONFLICT).await;
    let renamed = expect_json(
        app.patch(
            &format!("/api/v1/carriers/{}", id_of(&first)),
            json!({"code": "TRK-OLD"}),
        )
        .await,
        StatusCode::OK,
    )
    .await;
    assert_eq!(renamed["code"], "TRK-OLD");
    app.post_ok(
        "/api/v1/carriers",
        json!({"name": "B", "code": "TRK", "carrier_type": "rail"}),
        StatusCode::CREATED,
    )
    .await;
}

#[tokio::test]
async fn an_inactive_supplier_cannot_take_new_orders() {
    let app = spawn_app().await;
    let (supplier, product) = app.reference_data().await;
    app.patch(
        &format!("/api/v1/suppliers/{supplier}"),
        json!({"active": false}),
    )
    .await;
    let before = app.write_footprint().await;
    let response = app
        .post(
            "/api/v1/purchase-orders",
            json!({"supplier_id": supplier, "order_date": "2026-11-02",
                   "lines": [{"product_id": product, "weight": "1", "price_per_unit": "1"}]}),
        )
        .await;
    let problem = expect_problem(response, StatusCode::UNPROCESSABLE_ENTITY).await;
    assert_eq!(problem["errors"][0]["field"], "supplier_id");
    assert_eq!(app.write_footprint().await, before);
}
