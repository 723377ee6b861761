//! The futures the API and the projector await must be `Send` (axum handlers and spawned
//! tasks need it): a compile-time check.

use oms_projections::queries::{self, ListRequest, Resource};
use oms_projections::{analysts, EventRecord, Projection};
use sqlx::PgConnection;
use uuid::Uuid;

fn assert_send<T: Send>(_: &T) {}

/// Never run: it only has to compile.
#[allow(dead_code)]
fn every_future_is_send(conn: &mut PgConnection, event: &EventRecord, request: &ListRequest) {
    assert_send(&Projection::Orders.apply(conn, event));
    assert_send(&queries::list(
        conn,
        Uuid::nil(),
        Resource::Suppliers,
        request,
    ));
    assert_send(&queries::get(
        conn,
        Uuid::nil(),
        Resource::Suppliers,
        Uuid::nil(),
    ));
    assert_send(&queries::history(
        conn,
        Uuid::nil(),
        "purchase_order",
        Uuid::nil(),
    ));
    assert_send(&analysts::create_login(
        conn,
        Uuid::nil(),
        "analyst",
        "password",
    ));
    assert_send(&analysts::drop_login(conn, Uuid::nil(), "analyst"));
}

#[test]
fn the_public_futures_are_send() {
    // The check is `every_future_is_send` compiling.
}
