//! `read.checkpoints` against real Postgres: the lock creates a missing row once and then
//! finds it, serialises writers of one (projection, tenant), and only a deferred transaction
//! commits without waiting for the WAL flush.

mod common;

use common::Db;
use oms_projections::checkpoints::{self, Durability};
use oms_projections::Projection;
use std::time::Duration;
use uuid::Uuid;

/// `synchronous_commit` as the transaction sees it.
async fn synchronous_commit(conn: &mut sqlx::PgConnection) -> String {
    sqlx::query_scalar("select current_setting('synchronous_commit')")
        .fetch_one(conn)
        .await
        .unwrap()
}

#[tokio::test]
async fn the_lock_creates_a_missing_checkpoint_then_finds_it_and_only_deferred_skips_the_flush() {
    let db = Db::fresh().await;
    let tenant = Uuid::new_v4();
    let server: String = sqlx::query_scalar("select current_setting('synchronous_commit')")
        .fetch_one(&db.pool)
        .await
        .unwrap();

    // First lock: the row is made at 0, the commit waits as the server is configured.
    let mut tx = db.pool.begin().await.unwrap();
    let at = checkpoints::lock(&mut tx, Projection::Orders, tenant)
        .await
        .unwrap();
    assert_eq!(at, 0);
    assert_eq!(synchronous_commit(&mut tx).await, server);
    checkpoints::advance(&mut tx, Projection::Orders, tenant, 7)
        .await
        .unwrap();
    tx.commit().await.unwrap();

    // The projector's lock finds the row, and its commit does not wait for the flush; the
    // setting is the transaction's own, so the same connection is back to the server's after.
    let mut conn = db.pool.acquire().await.unwrap();
    let mut tx = sqlx::Connection::begin(&mut *conn).await.unwrap();
    let at = checkpoints::lock_with(&mut tx, Projection::Orders, tenant, Durability::Deferred)
        .await
        .unwrap();
    assert_eq!(at, 7);
    assert_eq!(synchronous_commit(&mut tx).await, "off");
    checkpoints::advance(&mut tx, Projection::Orders, tenant, 9)
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(synchronous_commit(&mut conn).await, server);
    drop(conn);

    // One row per (projection, tenant), wherever the lock went.
    let rows: i64 =
        sqlx::query_scalar("select count(*) from read.checkpoints where tenant_id = $1")
            .bind(tenant)
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(rows, 1);

    // A second writer of the same (projection, tenant) waits for the first to commit, then
    // sees where it left the checkpoint.
    let mut first = db.pool.begin().await.unwrap();
    checkpoints::lock_with(&mut first, Projection::Orders, tenant, Durability::Deferred)
        .await
        .unwrap();
    let pool = db.pool.clone();
    let second = tokio::spawn(async move {
        let mut tx = pool.begin().await.unwrap();
        let at = checkpoints::lock(&mut tx, Projection::Orders, tenant)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        at
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!second.is_finished(), "the second lock waits for the first");
    checkpoints::advance(&mut first, Projection::Orders, tenant, 12)
        .await
        .unwrap();
    first.commit().await.unwrap();
    assert_eq!(second.await.unwrap(), 12);
    db.drop().await;
}
