//! A fetch's messages of one tenant applied in one transaction: each message keeps its own
//! outcome (applied, duplicate, refused), the checkpoint moves once to the highest position the
//! store has, and a forged position neither moves it nor stops the others.

use oms_projections::{checkpoints, Projection};
use oms_projector::{apply_deliveries, apply_deliveries_to, Outcome};
use oms_store::{EventStore, NewEvent, StoredEvent};
use serde_json::json;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

fn admin_url() -> String {
    std::env::var("OMS_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_string())
}

async fn fresh_database() -> PgPool {
    let name = format!("oms_test_{}", Uuid::new_v4().simple());
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    sqlx::query(&format!("create database {name}"))
        .execute(&mut admin)
        .await
        .unwrap();
    let (base, _) = admin_url()
        .rsplit_once('/')
        .map(|(b, d)| (b.to_owned(), d.to_owned()))
        .unwrap();
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&format!("{base}/{name}"))
        .await
        .unwrap();
    oms_store::migrate::run(&pool).await.unwrap();
    pool
}

/// An event of an aggregate type no projection keeps: applying it changes no row, only the
/// checkpoint.
fn note(sequence: i64) -> NewEvent {
    NewEvent {
        aggregate_type: "note".into(),
        aggregate_id: Uuid::nil(),
        sequence,
        event_type: "Noted".into(),
        event_version: "1.0".into(),
        payload: json!({"n": sequence}),
        metadata: json!({"actor": "test"}),
        unique_keys: Vec::new(),
        lot_movements: Vec::new(),
    }
}

async fn stored(store: &EventStore, tenant: Uuid) -> Vec<StoredEvent> {
    EventStore::events_between(store.pool(), tenant, 0, i64::MAX, 100)
        .await
        .unwrap()
}

async fn checkpoint(store: &EventStore, tenant: Uuid) -> Option<i64> {
    checkpoint_of(store, Projection::Orders, tenant).await
}

async fn checkpoint_of(store: &EventStore, projection: Projection, tenant: Uuid) -> Option<i64> {
    checkpoints::all(store.pool())
        .await
        .unwrap()
        .into_iter()
        .find(|(t, p, _)| *t == tenant && *p == projection)
        .map(|(_, _, position)| position)
}

#[tokio::test]
async fn each_message_of_a_batch_keeps_its_outcome_and_the_checkpoint_moves_once() {
    let store = EventStore::new(fresh_database().await);
    let tenant = oms_store::tenants::create(store.pool(), "Batch", "batch")
        .await
        .unwrap()
        .id;
    let other = oms_store::tenants::create(store.pool(), "Other", "other")
        .await
        .unwrap()
        .id;
    store
        .append(tenant, vec![note(1), note(2), note(3)])
        .await
        .unwrap();
    store.append(other, vec![note(1), note(2)]).await.unwrap();
    let events = stored(&store, tenant).await;

    let first = apply_deliveries(&store, Projection::Orders, tenant, &[&events[0]])
        .await
        .unwrap();
    assert_eq!(first[0].outcome, Outcome::Applied { gap_filled: 0 });

    let mut beyond = events[2].clone();
    beyond.position = 99;
    let mut below = events[0].clone();
    below.position = -5;
    let mut forged = events[2].clone();
    forged.payload = json!({"n": "FORGED"});
    let others = stored(&store, other).await;
    let batch = [&forged, &beyond, &events[0], &events[2], &below, &others[1]];
    let outcomes: Vec<_> = apply_deliveries(&store, Projection::Orders, tenant, &batch)
        .await
        .unwrap();
    let kinds: Vec<Outcome> = outcomes.iter().map(|d| d.outcome).collect();
    assert_eq!(
        kinds,
        [
            // 3, after filling 2 from the store
            Outcome::Applied { gap_filled: 1 },
            // beyond the head
            Outcome::Refused,
            // at or below the checkpoint
            Outcome::Duplicate,
            // named twice in one fetch
            Outcome::Duplicate,
            // no such position
            Outcome::Refused,
            // another tenant's message in this tenant's group
            Outcome::Refused,
        ]
    );
    // The store's row was applied; the forged body is only reported.
    assert_eq!(outcomes[0].disagreeing, ["payload"]);
    assert_eq!(checkpoint(&store, tenant).await, Some(3));

    // A fetch of forged positions only moves nothing, and leaves no checkpoint behind for a
    // tenant that does not exist.
    let outcomes = apply_deliveries(&store, Projection::Orders, tenant, &[&beyond])
        .await
        .unwrap();
    assert_eq!(outcomes[0].outcome, Outcome::Refused);
    assert_eq!(checkpoint(&store, tenant).await, Some(3));
    let mut ghost = events[0].clone();
    ghost.tenant_id = Uuid::new_v4();
    let outcomes = apply_deliveries(&store, Projection::Orders, ghost.tenant_id, &[&ghost])
        .await
        .unwrap();
    assert_eq!(outcomes[0].outcome, Outcome::Refused);
    assert_eq!(checkpoint(&store, ghost.tenant_id).await, None);
}

#[tokio::test]
async fn projections_at_different_checkpoints_each_apply_their_own_part_in_one_transaction() {
    let store = EventStore::new(fresh_database().await);
    let tenant = oms_store::tenants::create(store.pool(), "Together", "together")
        .await
        .unwrap()
        .id;
    store
        .append(tenant, (1..=5).map(note).collect())
        .await
        .unwrap();
    let events = stored(&store, tenant).await;
    // Orders has applied through 3 and reference data through 1; history has nothing yet.
    apply_deliveries(&store, Projection::Orders, tenant, &[&events[2]])
        .await
        .unwrap();
    apply_deliveries(&store, Projection::ReferenceData, tenant, &[&events[0]])
        .await
        .unwrap();

    let mut beyond = events[4].clone();
    beyond.position = 6;
    let projections = [
        Projection::ReferenceData,
        Projection::Orders,
        Projection::OrderHistory,
    ];
    let per_projection = apply_deliveries_to(
        &store,
        &projections,
        tenant,
        &[&events[4], &events[1], &beyond],
    )
    .await
    .unwrap();
    let kinds: Vec<Vec<Outcome>> = per_projection
        .iter()
        .map(|deliveries| deliveries.iter().map(|d| d.outcome).collect())
        .collect();
    assert_eq!(
        kinds,
        [
            // from 1: 5 and 2 named, 3 and 4 filled from the store
            vec![
                Outcome::Applied { gap_filled: 2 },
                Outcome::Applied { gap_filled: 0 },
                Outcome::Refused,
            ],
            // from 3: 5 named, 4 filled; 2 is below the checkpoint
            vec![
                Outcome::Applied { gap_filled: 1 },
                Outcome::Duplicate,
                Outcome::Refused,
            ],
            // from 0: 5 and 2 named, 1, 3 and 4 filled
            vec![
                Outcome::Applied { gap_filled: 3 },
                Outcome::Applied { gap_filled: 0 },
                Outcome::Refused,
            ],
        ]
    );
    for projection in projections {
        assert_eq!(checkpoint_of(&store, projection, tenant).await, Some(5));
    }

    // Everything again: duplicates for all, nothing moves; a position beyond the head alone
    // moves nothing either.
    let again = apply_deliveries_to(&store, &projections, tenant, &[&events[4], &beyond])
        .await
        .unwrap();
    for deliveries in &again {
        assert_eq!(deliveries[0].outcome, Outcome::Duplicate);
        assert_eq!(deliveries[1].outcome, Outcome::Refused);
    }
    for projection in projections {
        assert_eq!(checkpoint_of(&store, projection, tenant).await, Some(5));
    }
}
