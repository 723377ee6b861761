//! Analysts' logins against real Postgres: a login of tenant A reads only A's rows from every
//! read table and view, cannot switch tenant, and is refused on the event store and on writes.
//!
//! Roles are cluster-wide: every test drops the roles it made, also when it fails.

mod common;

use std::future::Future;

use common::{apply_all, options, read_relations, trade, Db};
use oms_projections::analysts::{self, AnalystError};
use sqlx::{Connection, PgConnection, PgPool};
use uuid::Uuid;

/// A login name no other run uses.
fn unique_login(prefix: &str) -> String {
    format!("{prefix}_{}", &Uuid::new_v4().simple().to_string()[..12])
}

/// Runs `test` in a task (so a failed assertion is caught), then drops `roles` and the
/// database, then passes the failure on.
async fn with_cleanup<F>(db: Db, roles: Vec<String>, test: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let result = tokio::spawn(test).await;
    for role in &roles {
        let _ = sqlx::query(&format!("drop role if exists {role}"))
            .execute(&db.pool)
            .await;
    }
    db.drop().await;
    if let Err(error) = result {
        std::panic::resume_unwind(error.into_panic());
    }
}

/// A connection to the test database as `login`.
async fn connect_as(db_name: &str, login: &str, password: &str) -> PgConnection {
    PgConnection::connect_with(&options(db_name).username(login).password(password))
        .await
        .expect("the analyst can connect")
}

/// The SQLSTATE of a failed statement.
async fn refused(conn: &mut PgConnection, sql: &str) -> String {
    let error = sqlx::query(sql)
        .persistent(false)
        .execute(&mut *conn)
        .await
        .expect_err(sql);
    error
        .as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_else(|| panic!("{sql}: {error}"))
}

/// Per relation: (rows of `mine`, rows of other tenants), as the connection sees them.
async fn visible(
    conn: &mut PgConnection,
    relations: &[String],
    mine: Uuid,
) -> Vec<(String, i64, i64)> {
    let mut seen = Vec::new();
    for relation in relations {
        let (own, others): (i64, i64) = sqlx::query_as(&format!(
            "select count(*) filter (where tenant_id = $1), \
                    count(*) filter (where tenant_id is distinct from $1) from read.{relation}"
        ))
        .bind(mine)
        .fetch_one(&mut *conn)
        .await
        .unwrap_or_else(|e| panic!("read.{relation}: {e}"));
        seen.push((relation.clone(), own, others));
    }
    seen
}

/// Per relation: the rows of `tenant` (as the superuser, who bypasses row-level security).
async fn actual(pool: &PgPool, relations: &[String], tenant: Uuid) -> Vec<(String, i64, i64)> {
    let mut rows = Vec::new();
    for relation in relations {
        let count: i64 = sqlx::query_scalar(&format!(
            "select count(*) from read.{relation} where tenant_id = $1"
        ))
        .bind(tenant)
        .fetch_one(pool)
        .await
        .unwrap();
        rows.push((relation.clone(), count, 0));
    }
    rows
}

#[tokio::test]
async fn an_analyst_login_reads_only_its_tenant_and_nothing_else() {
    let db = Db::fresh().await;
    let today = db.today().await;
    let a = trade(Uuid::new_v4(), today).await;
    let b = trade(Uuid::new_v4(), today).await;
    apply_all(&db.pool, &a.log.events).await;
    apply_all(&db.pool, &b.log.events).await;
    let (tenant_a, tenant_b) = (a.log.tenant, b.log.tenant);
    let logins = [unique_login("analyst_a"), unique_login("analyst_b")];
    let password = analysts::generate_password();
    let pool = db.pool.clone();
    let name = db.name.clone();
    let roles = logins.to_vec();

    with_cleanup(db, roles, async move {
        let mut admin = pool.acquire().await.unwrap();
        analysts::create_login(&mut admin, tenant_a, &logins[0], &password)
            .await
            .unwrap();
        analysts::create_login(&mut admin, tenant_b, &logins[1], &password)
            .await
            .unwrap();
        let relations = read_relations(&pool).await;
        for expected in [
            "aging", "back_to_back_margin", "carriers", "checkpoints", "customers",
            "daily_volume", "lot_movements", "lots", "order_history", "order_history_states",
            "payables", "plants", "products", "purchase_order_lines", "purchase_orders",
            "receivables", "sales_order_lines", "sales_orders", "suppliers",
        ] {
            assert!(relations.iter().any(|r| r == expected), "{expected}");
        }

        for (login, mine, other) in [
            (&logins[0], tenant_a, tenant_b),
            (&logins[1], tenant_b, tenant_a),
        ] {
            let expected = actual(&pool, &relations, mine).await;
            assert!(expected.iter().filter(|(_, n, _)| *n > 0).count() >= 15);
            let mut analyst = connect_as(&name, login, &password).await;
            let tenant: Option<Uuid> = sqlx::query_scalar("select read.current_tenant()")
                .fetch_one(&mut analyst)
                .await
                .unwrap();
            assert_eq!(tenant, Some(mine));
            // Its own rows, all of them, and no other tenant's, from every table and view ...
            assert_eq!(visible(&mut analyst, &relations, mine).await, expected);
            // ... also after trying to switch tenant with the setting the service uses ...
            sqlx::query(&format!("set app.tenant_id = '{other}'"))
                .execute(&mut analyst)
                .await
                .unwrap();
            assert_eq!(visible(&mut analyst, &relations, mine).await, expected);
            let mut tx = analyst.begin().await.unwrap();
            sqlx::query("select set_config('app.tenant_id', $1, true)")
                .bind(other.to_string())
                .execute(&mut *tx)
                .await
                .unwrap();
            assert_eq!(visible(&mut tx, &relations, mine).await, expected);
            tx.rollback().await.unwrap();
            // ... or as the group role (search_path is `read`, so unqualified names work).
            sqlx::query("set role oms_analyst").execute(&mut analyst).await.unwrap();
            assert_eq!(visible(&mut analyst, &relations, mine).await, expected);
            let count: i64 = sqlx::query_scalar("select count(*) from purchase_orders where tenant_id = $1")
                .bind(other)
                .fetch_one(&mut analyst)
                .await
                .unwrap();
            assert_eq!(count, 0);
            sqlx::query("reset role").execute(&mut analyst).await.unwrap();

            // Refused: the event store and the rest of public, the logins, every write.
            for sql in [
                "select * from public.events limit 1",
                "select * from public.tenants limit 1",
                "select * from public.unique_keys limit 1",
                "select * from read.analyst_logins",
                "insert into read.checkpoints (tenant_id, projection) values (gen_random_uuid(), 'x')",
                "update read.suppliers set name = 'mine now'",
                "delete from read.order_history",
                "truncate read.purchase_orders",
                "create table read.stash (a int)",
                "insert into public.events select * from public.events",
                "create role sneaky login",
            ] {
                let code = refused(&mut analyst, sql).await;
                assert_eq!(code, "42501", "{login}: {sql}");
            }
            analyst.close().await.unwrap();
        }

        // Dropping a login: only by its own tenant.
        assert!(matches!(
            analysts::drop_login(&mut admin, tenant_b, &logins[0]).await,
            Err(AnalystError::NotFound(_))
        ));
        for (login, tenant) in [(&logins[0], tenant_a), (&logins[1], tenant_b)] {
            analysts::drop_login(&mut admin, tenant, login).await.unwrap();
        }
        let left: i64 = sqlx::query_scalar(
            "select count(*) from pg_roles where rolname = any($1)",
        )
        .bind(logins.to_vec())
        .fetch_one(&mut *admin)
        .await
        .unwrap();
        assert_eq!(left, 0);
    })
    .await;
}

#[tokio::test]
async fn login_names_passwords_and_duplicates_are_checked() {
    let db = Db::fresh().await;
    let login = unique_login("analyst_dup");
    let tenant = Uuid::new_v4();
    let pool = db.pool.clone();
    let roles = vec![login.clone()];

    with_cleanup(db, roles, async move {
        let mut admin = pool.acquire().await.unwrap();
        let password = analysts::generate_password();
        for bad in [
            "ab",
            "Analyst",
            "pg_reader",
            "oms_admin",
            "x; drop role postgres",
            "émile",
        ] {
            assert!(
                matches!(
                    analysts::create_login(&mut admin, tenant, bad, &password).await,
                    Err(AnalystError::InvalidLogin { .. })
                ),
                "{bad}"
            );
        }
        assert!(matches!(
            analysts::create_login(&mut admin, tenant, &login, "short").await,
            Err(AnalystError::InvalidPassword(_))
        ));
        analysts::create_login(&mut admin, tenant, &login, &password)
            .await
            .unwrap();
        let error = analysts::create_login(&mut admin, Uuid::new_v4(), &login, &password)
            .await
            .unwrap_err();
        assert!(matches!(&error, AnalystError::Duplicate(name) if *name == login));
        assert!(error.to_string().contains("already exists"));
        // An existing role that is not an analyst login is a duplicate too, and nothing of the
        // failed attempt stays behind.
        assert!(matches!(
            analysts::create_login(&mut admin, tenant, "postgres", &password).await,
            Err(AnalystError::Duplicate(_))
        ));
        let logins: Vec<(String, Uuid)> =
            sqlx::query_as("select login::text, tenant_id from read.analyst_logins")
                .fetch_all(&mut *admin)
                .await
                .unwrap();
        assert_eq!(logins, vec![(login.clone(), tenant)]);
        // The role: a login, member of oms_analyst, search_path read, the default limits,
        // SCRAM password.
        let (can_login, member, config, secret): (bool, bool, Vec<String>, String) =
            sqlx::query_as(
                "select r.rolcanlogin, pg_has_role(r.oid, 'oms_analyst', 'member'), \
                    coalesce(r.rolconfig, '{}'), a.rolpassword \
             from pg_roles r join pg_authid a on a.oid = r.oid where r.rolname = $1",
            )
            .bind(&login)
            .fetch_one(&mut *admin)
            .await
            .unwrap();
        assert!(can_login && member);
        assert_eq!(
            config,
            [
                "search_path=read",
                "statement_timeout=60000",
                "idle_in_transaction_session_timeout=60000",
                "temp_file_limit=1048576",
            ]
        );
        assert!(secret.starts_with("SCRAM-SHA-256$4096:"), "{secret}");
        assert!(!secret.contains(&password));
        analysts::drop_login(&mut admin, tenant, &login)
            .await
            .unwrap();
    })
    .await;
}

/// The SCRAM-SHA-256 verifier Postgres stores for `password` with a chosen salt (RFC 5802,
/// RFC 7677): `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`. Computed with
/// RustCrypto's PBKDF2 and HMAC, independently of the code under test, so that it can stand
/// between Postgres' verifier (whose salt it cannot choose) and the analysts' logins' (whose
/// salt is random).
fn scram_verifier_with(password: &str, salt: &[u8], iterations: u32) -> String {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use hmac::{Hmac, Mac};
    use sha2::{Digest, Sha256};

    let hmac = |key: &[u8], message: &[u8]| {
        let mut mac = Hmac::<Sha256>::new_from_slice(key).unwrap();
        mac.update(message);
        mac.finalize().into_bytes()
    };
    let mut salted = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
    let stored_key = Sha256::digest(hmac(&salted, b"Client Key"));
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key),
        STANDARD.encode(server_key)
    )
}

/// The stored verifier of `role` and its iteration count and salt.
async fn stored_verifier(pool: &PgPool, role: &str) -> (String, u32, Vec<u8>) {
    let secret: String = sqlx::query_scalar("select rolpassword from pg_authid where rolname = $1")
        .bind(role)
        .fetch_one(pool)
        .await
        .unwrap();
    // SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>
    let (head, _) = secret.split_once('$').unwrap().1.split_once('$').unwrap();
    let (iterations, salt) = head.split_once(':').unwrap();
    let salt: Vec<u8> = sqlx::query_scalar("select decode($1, 'base64')")
        .bind(salt)
        .fetch_one(pool)
        .await
        .unwrap();
    let iterations = iterations.parse().unwrap();
    (secret, iterations, salt)
}

#[tokio::test]
async fn the_scram_verifier_is_the_one_postgres_computes() {
    let db = Db::fresh().await;
    let role = unique_login("scram_check");
    let login = unique_login("scram_login");
    let pool = db.pool.clone();
    let roles = vec![role.clone(), login.clone()];

    with_cleanup(db, roles, async move {
        let password = "correct horse battery staple";
        let mut tx = pool.begin().await.unwrap();
        sqlx::query("set local password_encryption = 'scram-sha-256'")
            .execute(&mut *tx)
            .await
            .unwrap();
        sqlx::query(&format!("create role {role} login password '{password}'"))
            .execute(&mut *tx)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let (secret, iterations, salt) = stored_verifier(&pool, &role).await;
        assert_eq!(scram_verifier_with(password, &salt, iterations), secret);

        // An analyst login's verifier is the one Postgres would compute for its salt.
        let mut admin = pool.acquire().await.unwrap();
        analysts::create_login(&mut admin, Uuid::new_v4(), &login, password)
            .await
            .unwrap();
        let (secret, iterations, salt) = stored_verifier(&pool, &login).await;
        assert_eq!(iterations, 4096);
        assert_eq!(salt.len(), 16);
        assert_eq!(scram_verifier_with(password, &salt, iterations), secret);
    })
    .await;
}
