//! The database roles (migration 0006): the service runs as `oms_service`, with SELECT and
//! INSERT on the events only; a trigger keeps the events append-only for everyone, superusers
//! included, but the maintenance path; row-level security binds the service too, on a
//! deployment with no superuser in it; analysts' logins are limited; and the relay's NOTIFY
//! says nothing.
//!
//! Roles are cluster-wide: every test names its roles uniquely and drops them (and its
//! databases) at the end, also when it fails.

use std::future::Future;
use std::time::Duration;

use oms_api::auth::Role;
use oms_api::config::Config;
use oms_projections::analysts::{self, LoginLimits};
use reqwest::{Method, StatusCode};
use serde_json::json;
use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

use crate::helpers::*;

/// A role name no other run uses.
fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// `url` with `login` as its user (the test server trusts local logins).
fn as_login(url: &str, login: &str) -> String {
    let mut url = url::Url::parse(url).unwrap();
    url.set_username(login).unwrap();
    url.set_password(None).unwrap();
    url.to_string()
}

/// The name of the database `pool` is on.
fn database_of(pool: &PgPool) -> String {
    pool.connect_options().get_database().unwrap().to_string()
}

/// The error `sql` fails with on `conn`: (SQLSTATE, message and hint).
async fn refused(conn: &mut PgConnection, sql: &str) -> (String, String) {
    let error = sqlx::query(sql)
        .persistent(false)
        .execute(&mut *conn)
        .await
        .expect_err(sql);
    let database = error
        .as_database_error()
        .unwrap_or_else(|| panic!("{sql}: {error}"));
    let hint = database
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
        .and_then(|e| e.hint())
        .unwrap_or_default();
    (
        database.code().unwrap_or_default().into_owned(),
        format!("{} {hint}", database.message()),
    )
}

/// Opens a transaction on `conn` as `role` that asks for the maintenance path.
async fn begin_maintenance_as(conn: &mut PgConnection, role: &str) {
    for sql in [
        "begin".to_string(),
        format!("set local role {role}"),
        "set local oms.event_maintenance = 'on'".to_string(),
    ] {
        sqlx::query(&sql).execute(&mut *conn).await.unwrap();
    }
}

/// The rows of read.suppliers `conn` sees that match `filter` (which may use `$1`, `tenant`).
async fn suppliers(conn: &mut PgConnection, filter: &str, tenant: Uuid) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from read.suppliers {filter}"))
        .bind(tenant)
        .fetch_one(&mut *conn)
        .await
        .unwrap()
}

/// Every event of the database.
async fn events(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from events")
        .fetch_one(pool)
        .await
        .unwrap()
}

/// Runs `test` in a task (so that a failed assertion is caught), then drops `databases`
/// (closing their connections) and `roles`, in that order, then passes the failure on.
async fn with_cleanup<F>(databases: Vec<String>, roles: Vec<String>, test: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let result = tokio::spawn(test).await;
    let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
    for database in databases {
        let _ = sqlx::query(&format!("drop database if exists {database} with (force)"))
            .execute(&mut admin)
            .await;
    }
    for role in roles {
        let _ = sqlx::query(&format!("drop role if exists {role}"))
            .execute(&mut admin)
            .await;
    }
    if let Err(error) = result {
        std::panic::resume_unwind(error.into_panic());
    }
}

#[tokio::test]
async fn events_are_append_only_for_the_service_the_owner_and_superusers_but_the_maintenance_path()
{
    // The app runs as oms_service (the default of Config): its commands append.
    let app = spawn_api().await;
    app.reference_data().await;
    let database = database_of(&app.pool);
    let writer = unique("events_writer");
    let pool = app.pool.clone();
    let tenant = app.tenant;
    with_cleanup(vec![database.clone()], vec![writer.clone()], async move {
        let before = events(&pool).await;
        assert_eq!(before, 2);
        let partition: String = sqlx::query_scalar(
            "select tableoid::regclass::text from events where tenant_id = $1 limit 1",
        )
        .bind(tenant)
        .fetch_one(&pool)
        .await
        .unwrap();
        let update = "update events set payload = '{}' where position = 1".to_string();
        let statements = [
            update.clone(),
            "delete from events where position = 1".to_string(),
            "truncate events".to_string(),
            format!("update {partition} set payload = '{{}}'"),
            format!("delete from {partition}"),
            format!("truncate {partition}"),
        ];

        // The service: no such privilege, on the parent or a partition (not even SELECT on a
        // partition), with the maintenance setting or without.
        let service = Config::local(database_url(&database), SECRET)
            .pool()
            .unwrap();
        let mut conn = service.acquire().await.unwrap();
        let role: String = sqlx::query_scalar("select current_user::text")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(role, "oms_service");
        sqlx::query("set oms.event_maintenance = 'on'")
            .execute(&mut *conn)
            .await
            .unwrap();
        for sql in statements
            .iter()
            .cloned()
            .chain([format!("select count(*) from {partition}")])
        {
            let (code, message) = refused(&mut conn, &sql).await;
            assert_eq!(code, "42501", "{sql}: {message}");
        }
        drop(conn);

        // A superuser: the trigger refuses, on the parent and on a partition, and says what
        // to do instead.
        let mut admin = pool.acquire().await.unwrap();
        for sql in &statements {
            let (code, message) = refused(&mut admin, sql).await;
            assert_eq!(code, "42501", "{sql}: {message}");
            assert!(message.contains("append-only"), "{sql}: {message}");
            assert!(
                message.contains("oms.event_maintenance"),
                "{sql}: {message}"
            );
        }

        // A role with the privileges (as the owner has them) asking for maintenance, but
        // without oms_maintenance: refused.
        for sql in [
            format!("create role {writer} nologin"),
            format!("grant select, update, delete on events to {writer}"),
            format!("grant select, update, delete, truncate on {partition} to {writer}"),
        ] {
            sqlx::query(&sql).execute(&mut *admin).await.unwrap();
        }
        for sql in [&statements[0], &statements[4], &statements[5]] {
            begin_maintenance_as(&mut admin, &writer).await;
            let (code, message) = refused(&mut admin, sql).await;
            assert_eq!(code, "42501", "{sql}: {message}");
            assert!(message.contains("append-only"), "{sql}: {message}");
            sqlx::query("rollback").execute(&mut *admin).await.unwrap();
        }

        // Granted oms_maintenance, the same role may, in a transaction that asks for it.
        sqlx::query(&format!("grant oms_maintenance to {writer}"))
            .execute(&mut *admin)
            .await
            .unwrap();
        for sql in [&statements[0], &statements[4], &statements[5]] {
            begin_maintenance_as(&mut admin, &writer).await;
            sqlx::query(sql)
                .execute(&mut *admin)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            sqlx::query("rollback").execute(&mut *admin).await.unwrap();
        }
        // And a superuser, the same way.
        for sql in &statements {
            let mut tx = pool.begin().await.unwrap();
            sqlx::query("set local oms.event_maintenance = 'on'")
                .execute(&mut *tx)
                .await
                .unwrap();
            sqlx::query(sql)
                .execute(&mut *tx)
                .await
                .unwrap_or_else(|e| panic!("{sql}: {e}"));
            tx.rollback().await.unwrap();
        }
        // The setting alone, outside that transaction, opens nothing.
        let (code, _) = refused(&mut admin, &update).await;
        assert_eq!(code, "42501");
        assert_eq!(events(&pool).await, before);
        sqlx::query(&format!("drop owned by {writer}"))
            .execute(&mut *admin)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn a_deployment_without_a_superuser_migrates_as_its_owner_and_serves_under_row_level_security(
) {
    let owner = unique("owner");
    let service = unique("service");
    let member = unique("member");
    let analyst = unique("analyst");
    let database = format!("oms_test_{}", Uuid::new_v4().simple());
    let empty = format!("oms_test_{}", Uuid::new_v4().simple());
    let roles = vec![
        analyst.clone(),
        member.clone(),
        service.clone(),
        owner.clone(),
    ];
    with_cleanup(vec![database.clone(), empty.clone()], roles, async move {
        // The DBA: an owner login that may create roles, and a database it owns.
        let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
        for sql in [
            format!("create role {owner} login createrole"),
            format!("create database {database} owner {owner}"),
            format!("create database {empty}"),
        ] {
            sqlx::query(&sql).execute(&mut admin).await.unwrap();
        }
        // The owner migrates (it is no superuser), and creates the service's login.
        let owner_url = as_login(&database_url(&database), &owner);
        let owner_pool = PgPoolOptions::new()
            .max_connections(4)
            .connect(&owner_url)
            .await
            .unwrap();
        oms_store::migrate::run(&owner_pool)
            .await
            .expect("the owner migrates");
        sqlx::query(&format!("create role {service} login in role oms_service"))
            .execute(&owner_pool)
            .await
            .unwrap();
        // As PostgreSQL 16 does for the role that creates oms_analyst: the owner is a member
        // of it. And another member of oms_analyst, not an analyst's login.
        for sql in [
            format!("grant oms_analyst to {owner}"),
            format!("create role {member} login in role oms_analyst"),
        ] {
            sqlx::query(&sql).execute(&mut admin).await.unwrap();
        }

        // The service's login cannot migrate; with nothing pending it goes on, and with
        // migrations pending it says who must run them.
        let service_url = as_login(&database_url(&database), &service);
        let plain = PgPoolOptions::new()
            .max_connections(1)
            .connect(&service_url)
            .await
            .unwrap();
        oms_store::migrate::apply_or_check(&plain)
            .await
            .expect("nothing is pending");
        let unmigrated = PgPoolOptions::new()
            .max_connections(1)
            .connect(&as_login(&database_url(&empty), &service))
            .await
            .unwrap();
        let pending = oms_store::migrate::apply_or_check(&unmigrated)
            .await
            .expect_err("the service's login may not create tables");
        assert!(pending.to_string().contains("oms migrate"), "{pending}");
        unmigrated.close().await;

        // The app, as the service's login, with two tenants.
        let app = spawn_app_on(&service_url, owner_pool.clone()).await;
        let a = app.tenant;
        let b = oms_store::tenants::create(
            &owner_pool,
            "Beta Foods",
            &unique("beta").replace('_', "-"),
        )
        .await
        .unwrap()
        .id;
        let supplier_a = id_of(
            &app.post_ok(
                "/api/v1/suppliers",
                json!({"name": "Prairie Packers", "code": "PRA"}),
                StatusCode::CREATED,
            )
            .await,
        );
        let token_b = app.token_for(b, &[Role::Admin]);
        let response = app
            .request(Method::POST, "/api/v1/suppliers", &token_b)
            .json(&json!({"name": "Bayou Beef", "code": "BAY"}))
            .send()
            .await
            .unwrap();
        expect_json(response, StatusCode::CREATED).await;

        // The projector, as the service.
        let service_pool = Config::local(service_url.clone(), SECRET).pool().unwrap();
        let store = oms_store::EventStore::new(service_pool.clone());
        assert!(oms_projector::catch_up_all(&store, 500).await.unwrap() >= 2);
        let read = app.get(&format!("/api/v1/suppliers/{supplier_a}")).await;
        assert_eq!(
            expect_json(read, StatusCode::OK).await["name"],
            "Prairie Packers"
        );
        let other = app
            .request(
                Method::GET,
                &format!("/api/v1/suppliers/{supplier_a}"),
                &token_b,
            )
            .send()
            .await
            .unwrap();
        assert_eq!(other.status(), StatusCode::NOT_FOUND);

        // Row-level security binds the service: no tenant, no rows; tenant A, A's rows.
        let mut conn = service_pool.acquire().await.unwrap();
        let who: (String, String) = sqlx::query_as("select session_user::text, current_user::text")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(who, (service.clone(), "oms_service".to_string()));
        assert_eq!(
            suppliers(&mut conn, "where $1::uuid is not null", a).await,
            0
        );
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("select set_config('app.tenant_id', $1, true)")
            .bind(a.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        assert_eq!(suppliers(&mut tx, "where $1::uuid is not null", a).await, 1);
        assert_eq!(suppliers(&mut tx, "where tenant_id = $1", b).await, 0);
        let tenant: Option<Uuid> = sqlx::query_scalar("select read.current_tenant()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(tenant, Some(a));
        tx.commit().await.unwrap();
        // The checkpoints of every tenant, for the sweeper and /metrics.
        let tenants: i64 =
            sqlx::query_scalar("select count(distinct tenant_id) from read.checkpoints")
                .fetch_one(&mut *conn)
                .await
                .unwrap();
        assert_eq!(tenants, 2);
        // And nothing beyond its grants.
        for sql in [
            "update events set payload = payload",
            "create table public.stash (a int)",
            "select * from read.analyst_logins",
        ] {
            assert_eq!(refused(&mut conn, sql).await.0, "42501", "{sql}");
        }
        drop(conn);

        // The owner (a member of oms_analyst, as on PostgreSQL 16) gets the tenant it sets.
        let mut conn = owner_pool.acquire().await.unwrap();
        let mut tx = conn.begin().await.unwrap();
        sqlx::query("select set_config('app.tenant_id', $1, true)")
            .bind(a.to_string())
            .execute(&mut *tx)
            .await
            .unwrap();
        let tenant: Option<Uuid> = sqlx::query_scalar("select read.current_tenant()")
            .fetch_one(&mut *tx)
            .await
            .unwrap();
        assert_eq!(tenant, Some(a));
        tx.commit().await.unwrap();

        // Another member of oms_analyst gets none, whatever it sets.
        let mut sneaky = PgConnection::connect(&as_login(&database_url(&database), &member))
            .await
            .unwrap();
        sqlx::query(&format!("set app.tenant_id = '{a}'"))
            .execute(&mut sneaky)
            .await
            .unwrap();
        let tenant: Option<Uuid> = sqlx::query_scalar("select read.current_tenant()")
            .fetch_one(&mut sneaky)
            .await
            .unwrap();
        assert_eq!(tenant, None);
        assert_eq!(
            suppliers(&mut sneaky, "where $1::uuid is not null", a).await,
            0
        );
        sneaky.close().await.unwrap();

        // The owner creates an analyst's login: limited, though it may not set
        // temp_file_limit (a superuser's setting), which it is told how to get.
        let limits = LoginLimits {
            connection_limit: 3,
            ..LoginLimits::default()
        };
        let created = analysts::create_login_with(
            &mut conn,
            a,
            &analyst,
            &analysts::generate_password(),
            &limits,
        )
        .await
        .unwrap();
        assert!(
            created
                .warnings
                .iter()
                .any(|w| w.contains("GRANT SET ON PARAMETER temp_file_limit")),
            "{:?}",
            created.warnings
        );
        let limit: i32 = sqlx::query_scalar("select rolconnlimit from pg_roles where rolname = $1")
            .bind(&analyst)
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(limit, 3);
        let mut login = PgConnection::connect(&as_login(&database_url(&database), &analyst))
            .await
            .unwrap();
        assert_eq!(
            suppliers(&mut login, "where $1::uuid is not null", a).await,
            1
        );
        assert_eq!(
            refused(&mut login, "create temp table stash (a int)")
                .await
                .0,
            "42501"
        );
        login.close().await.unwrap();
        analysts::drop_login(&mut conn, a, &analyst).await.unwrap();
        drop(conn);
        service_pool.close().await;
        plain.close().await;
    })
    .await;
}

#[tokio::test]
async fn an_analysts_login_is_limited_and_gets_no_temporary_tables() {
    let app = spawn_api().await;
    let database = database_of(&app.pool);
    let login = unique("analyst");
    let pool = app.pool.clone();
    let tenant = app.tenant;
    with_cleanup(vec![database.clone()], vec![login.clone()], async move {
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
            .args([
                "analyst",
                "create-login",
                "--database-url",
                &database_url(&database),
                "--tenant",
                &tenant.to_string(),
                "--name",
                &login,
                "--connection-limit",
                "2",
                "--statement-timeout-secs",
                "45",
            ])
            .output()
            .await
            .unwrap();
        assert!(output.status.success(), "{output:?}");
        let limit: i32 = sqlx::query_scalar("select rolconnlimit from pg_roles where rolname = $1")
            .bind(&login)
            .fetch_one(&pool)
            .await
            .unwrap();
        assert_eq!(limit, 2);
        let settings: Vec<String> = sqlx::query_scalar(
            "select unnest(s.setconfig) from pg_db_role_setting s
               join pg_roles r on r.oid = s.setrole
              where r.rolname = $1 and s.setdatabase = 0 order by 1",
        )
        .bind(&login)
        .fetch_all(&pool)
        .await
        .unwrap();
        for expected in [
            "statement_timeout=45000",
            "idle_in_transaction_session_timeout=60000",
            // as a superuser made it: the default 1 GiB, in kB
            "temp_file_limit=1048576",
        ] {
            assert!(
                settings.iter().any(|s| s == expected),
                "{expected}: {settings:?}"
            );
        }
        let mut analyst = PgConnection::connect(&as_login(&database_url(&database), &login))
            .await
            .unwrap();
        let timeout: String = sqlx::query_scalar("show statement_timeout")
            .fetch_one(&mut analyst)
            .await
            .unwrap();
        assert_eq!(timeout, "45s");
        assert_eq!(
            refused(&mut analyst, "create temp table stash (a int)")
                .await
                .0,
            "42501"
        );
        analyst.close().await.unwrap();
        let mut admin = pool.acquire().await.unwrap();
        oms_projections::analysts::drop_login(&mut admin, tenant, &login)
            .await
            .unwrap();
    })
    .await;
}

#[tokio::test]
async fn the_relays_notification_carries_no_tenant_id() {
    let app = spawn_api().await;
    // Any login may LISTEN, an analyst's too.
    let mut listener = PgListener::connect(&database_url(&database_of(&app.pool)))
        .await
        .unwrap();
    listener.listen("oms_events").await.unwrap();
    app.reference_data().await;
    let notification = tokio::time::timeout(Duration::from_secs(10), listener.recv())
        .await
        .expect("a notification after a command")
        .unwrap();
    assert_eq!(notification.payload(), "");
    assert!(!notification.payload().contains(&app.tenant.to_string()));
}

#[tokio::test]
async fn the_relay_and_the_projector_run_as_the_service_role() {
    let mut stack = spawn_stack().await;
    stack.abort_relays();
    stack.abort_projectors();
    // Both over the service's pool (role oms_service, statement timeout), as `oms serve`
    // runs them; the relay polls once a minute, so what it publishes within seconds came
    // from its LISTEN, opened as oms_service.
    let database = database_of(&stack.app.pool);
    let service = Config::local(database_url(&database), SECRET)
        .pool()
        .unwrap();
    let store = oms_store::EventStore::new(service.clone());
    let relay = oms_relay::Relay::new(
        store.clone(),
        stack.jetstream.clone(),
        oms_relay::RelayConfig {
            poll_interval: Duration::from_secs(60),
            ..test_relay_config()
        },
    );
    let projector = oms_projector::Projector::new(
        store.clone(),
        stack.jetstream.clone(),
        test_projector_config(),
    );
    let stop = tokio_util::sync::CancellationToken::new();
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    let projector_task = tokio::spawn(projector.run(stop.clone()));
    tokio::time::sleep(Duration::from_millis(500)).await; // their first rounds and LISTEN

    let app = &stack.app;
    let created = app
        .post_ok(
            "/api/v1/customers",
            json!({"name": "Woken"}),
            StatusCode::CREATED,
        )
        .await;
    let position = created["position"].as_i64().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while stack.relay_checkpoint(app.tenant).await < position {
        assert!(
            std::time::Instant::now() < deadline,
            "the relay (as oms_service) was not woken by the notification"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The projector applied it, under row-level security, as the service.
    let id = id_of(&created);
    let applied = loop {
        let applied: i64 = sqlx::query_scalar(
            "select count(*) from read.customers where tenant_id = $1 and id = $2::uuid",
        )
        .bind(app.tenant)
        .bind(&id)
        .fetch_one(&app.pool)
        .await
        .unwrap();
        if applied == 1 || std::time::Instant::now() > deadline + Duration::from_secs(5) {
            break applied;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert_eq!(
        applied, 1,
        "the projector (as oms_service) applied the event"
    );
    stop.cancel();
    relay_task.await.unwrap().unwrap();
    projector_task.await.unwrap().unwrap();
}

#[tokio::test]
async fn serve_stops_with_what_to_do_when_its_login_may_not_take_the_service_role() {
    let (database, _pool) = fresh_database(2).await;
    let stranger = unique("stranger");
    with_cleanup(vec![database.clone()], vec![stranger.clone()], async move {
        let mut admin = PgConnection::connect(&admin_url()).await.unwrap();
        sqlx::query(&format!("create role {stranger} login"))
            .execute(&mut admin)
            .await
            .unwrap();
        let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_oms"))
            .args(["serve", "--role", "api"])
            .env(
                "DATABASE_URL",
                as_login(&database_url(&database), &stranger),
            )
            .env("OMS_MIGRATION_DATABASE_URL", database_url(&database))
            .env("OMS_JWT_SECRET", "s".repeat(40))
            .env("OMS_DATA_KEY", "a-test-data-key-of-at-least-32-bytes-long")
            .env("OMS_BIND", "127.0.0.1:0")
            .env("NATS_URL", "nats://127.0.0.1:1")
            .kill_on_drop(true)
            .output();
        let output = tokio::time::timeout(Duration::from_secs(30), output)
            .await
            .expect("oms serve stops at once")
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success(), "{stderr}");
        assert!(stderr.contains("grant oms_service to"), "{stderr}");
    })
    .await;
}

#[tokio::test]
async fn the_services_statements_are_bounded_and_a_long_one_lifts_the_bound_in_its_transaction() {
    let (database, pool) = fresh_database(2).await;
    with_cleanup(vec![database.clone()], Vec::new(), async move {
        // The default: 30 s on every connection of the service's pool.
        let default = Config::local(database_url(&database), SECRET)
            .pool()
            .unwrap();
        let shown: String = sqlx::query_scalar("show statement_timeout")
            .fetch_one(&default)
            .await
            .unwrap();
        assert_eq!(shown, "30s");
        default.close().await;

        let mut config = Config::local(database_url(&database), SECRET);
        config.statement_timeout = Duration::from_millis(300);
        let service = config.pool().unwrap();
        let error = sqlx::query("select pg_sleep(2)")
            .execute(&service)
            .await
            .expect_err("cancelled by statement_timeout");
        assert_eq!(
            error.as_database_error().and_then(|e| e.code()).as_deref(),
            Some("57014"),
            "{error}"
        );
        // What a whole-chain verification does: lift it for its own transaction only.
        let mut tx = service.begin().await.unwrap();
        sqlx::query("set local statement_timeout = 0")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query("select pg_sleep(0.6)")
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let mut conn = service.acquire().await.unwrap();
        let shown: String = sqlx::query_scalar("show statement_timeout")
            .fetch_one(&mut *conn)
            .await
            .unwrap();
        assert_eq!(shown, "300ms");
        drop(conn);
        service.close().await;
        pool.close().await;
    })
    .await;
}
