//! Postgres going away: requests get 503 quickly (not a hang, not a 500) and the service
//! recovers by itself when it returns.
//!
//! The app reaches the real test Postgres through a TCP proxy the test controls; "down" means
//! the proxy drops every connection and refuses new ones, which is what a crashed or
//! unreachable server looks like from the service.

use crate::helpers::*;
use reqwest::StatusCode;
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A TCP proxy to Postgres that can be switched off (its port refuses connections and every
/// open connection is cut, as when the server is down) and on again (same port).
struct FaultProxy {
    port: u16,
    target: String,
    accept: std::sync::Mutex<Option<tokio::task::JoinHandle<()>>>,
    generation: watch::Sender<u64>,
}

impl FaultProxy {
    async fn start(target: String) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (generation, _) = watch::channel(0u64);
        let proxy = Self {
            port,
            target,
            accept: std::sync::Mutex::new(None),
            generation,
        };
        proxy.serve(listener);
        proxy
    }

    fn serve(&self, listener: TcpListener) {
        let target = self.target.clone();
        let generation = self.generation.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    continue;
                };
                let target = target.clone();
                let mut cut = generation.subscribe();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(&target).await else {
                        return;
                    };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        *self.accept.lock().unwrap() = Some(task);
    }

    async fn down(&self) {
        if let Some(task) = self.accept.lock().unwrap().take() {
            task.abort();
        }
        self.generation.send_modify(|g| *g += 1);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    async fn up(&self) {
        let listener = TcpListener::bind(("127.0.0.1", self.port)).await.unwrap();
        self.serve(listener);
    }
}

#[tokio::test]
async fn postgres_down_gives_503_quickly_and_the_service_recovers() {
    let (name, pool) = fresh_database(4).await;
    let direct = database_url(&name);
    let (scheme_host, rest) = direct.split_once("://").unwrap();
    let authority = rest.split('/').next().unwrap();
    let host_port = authority.rsplit('@').next().unwrap().to_string();
    let proxy = FaultProxy::start(host_port.clone()).await;
    let proxied = direct.replacen(&host_port, &format!("127.0.0.1:{}", proxy.port), 1);
    assert!(proxied.starts_with(scheme_host));
    let app = spawn_app_on(&proxied, pool).await;

    let (supplier, _) = app.reference_data().await;
    let events_before = app.event_count().await;

    proxy.down().await;
    for attempt in 0..3 {
        let started = Instant::now();
        let response = app
            .post("/api/v1/customers", json!({"name": format!("C{attempt}")}))
            .await;
        let elapsed = started.elapsed();
        expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
        assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
        let read = app.get(&format!("/api/v1/suppliers/{supplier}")).await;
        expect_problem(read, StatusCode::SERVICE_UNAVAILABLE).await;
    }
    let ready = app
        .client
        .get(format!("{}/ready", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(ready.status(), StatusCode::SERVICE_UNAVAILABLE);

    proxy.up().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let response = app
            .post("/api/v1/customers", json!({"name": "After the outage"}))
            .await;
        if response.status() == StatusCode::CREATED {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "did not recover: {}",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Nothing from the outage was half-written: exactly the one customer after it.
    assert_eq!(app.event_count().await, events_before + 1);
}

/// The service's pool does not ping a connection it reuses at once (sqlx checked it as it
/// was put back), but one that sat idle past `PING_AFTER_IDLE` is checked before use: a
/// connection Postgres closed meanwhile (a restart, an administrator's terminate) is
/// replaced, not handed to a request to fail on.
#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_before_use() {
    let (name, admin) = fresh_database(2).await;
    let mut config = oms_api::config::Config::local(database_url(&name), SECRET);
    config.pool_size = 1;
    let pool = config.pool().expect("a valid URL");
    let pid = |pool: sqlx::PgPool| async move {
        sqlx::query_scalar::<_, i32>("select pg_backend_pid()")
            .fetch_one(&pool)
            .await
    };
    let first = pid(pool.clone()).await.unwrap();
    let terminated: bool = sqlx::query_scalar("select pg_terminate_backend($1, 5000)")
        .bind(first)
        .fetch_one(&admin)
        .await
        .unwrap();
    assert!(terminated, "the backend {first} was not terminated");
    tokio::time::sleep(oms_api::config::PING_AFTER_IDLE + Duration::from_millis(200)).await;
    let second = pid(pool.clone())
        .await
        .expect("the closed connection was handed out instead of replaced");
    assert_ne!(
        first, second,
        "the same backend answered after it was terminated"
    );
}
