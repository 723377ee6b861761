//! A fresh database per test, on the server named by `OMS_TEST_DATABASE_URL` (an admin URL;
//! default `postgres://postgres@127.0.0.1:5432/postgres`). `make test` provisions the server
//! and drops databases earlier runs left behind.

use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// The admin URL of the test server.
pub fn admin_url() -> String {
    std::env::var("OMS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

/// The URL of database `name` on the test server.
pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    let (base, _) = admin
        .rsplit_once('/')
        .expect("the admin URL names a database");
    format!("{base}/{name}")
}

/// Creates an empty, migrated database and returns its name and a pool on it.
pub async fn fresh_database(pool_size: u32) -> (String, PgPool) {
    let name = format!("oms_test_{}", uuid::Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url())
        .await
        .expect("the test Postgres is reachable (run the tests with `make test`)");
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .expect("create the test database");
    let pool = PgPoolOptions::new()
        .max_connections(pool_size)
        .connect(&database_url(&name))
        .await
        .expect("connect to the test database");
    oms_store::migrate::run(&pool)
        .await
        .expect("migrations apply");
    (name, pool)
}
