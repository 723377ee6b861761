//! The limits on what one client can make the service do: the request time-out, the
//! header-read time-out, the per-address rate limit, the metrics kept off the public listener,
//! and the issuer and audience tokens must carry when they are configured.

use crate::helpers::*;
use oms_api::auth::{Role, TokenKeys};
use reqwest::{Method, StatusCode};
use serde_json::json;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The `host:port` of an app's address.
fn host_port(address: &str) -> &str {
    address.trim_start_matches("http://")
}

#[tokio::test]
async fn a_request_running_past_the_time_out_is_503_and_its_command_is_dropped() {
    // Arrange: a one-second request time-out; the tenant's head row locked by another
    // transaction, so that a command waits for it as long as the lock is held.
    let app = spawn_api_with(|config| config.request_timeout = Duration::from_secs(1)).await;
    app.reference_data().await;
    let before = app.write_footprint().await;
    let mut lock = app.pool.begin().await.unwrap();
    sqlx::query("select position from tenant_heads where tenant_id = $1 for update")
        .bind(app.tenant)
        .fetch_one(&mut *lock)
        .await
        .unwrap();

    // Act: a command that cannot finish while the lock is held.
    let started = Instant::now();
    let response = app
        .request(Method::POST, "/api/v1/suppliers", &app.admin())
        .header("idempotency-key", "slow-supplier")
        .json(&json!({"name": "Slow Supplier"}))
        .send()
        .await
        .unwrap();

    // Assert: 503 problem+json after about a second, saying how to find out what happened.
    let elapsed = started.elapsed();
    let problem = expect_problem(response, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(4),
        "answered after {elapsed:?}"
    );
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("longer than 1 s"), "{detail}");
    assert!(detail.contains("Idempotency-Key"), "{detail}");
    // The work was dropped: once the lock is gone, the command does not go on to commit.
    lock.rollback().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        app.write_footprint().await,
        before,
        "the abandoned command wrote"
    );
    // A query that waits (min_position: up to 5 s for read models that nothing projects
    // here) is cut short the same way.
    let started = Instant::now();
    let waiting = app.get("/api/v1/suppliers?min_position=2").await;
    let problem = expect_problem(waiting, StatusCode::SERVICE_UNAVAILABLE).await;
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );
    assert!(
        problem["detail"]
            .as_str()
            .unwrap()
            .contains("longer than 1 s"),
        "{problem}"
    );
    // And the retry with the same key runs it now.
    let retried = app
        .request(Method::POST, "/api/v1/suppliers", &app.admin())
        .header("idempotency-key", "slow-supplier")
        .json(&json!({"name": "Slow Supplier"}))
        .send()
        .await
        .unwrap();
    assert_eq!(retried.status(), StatusCode::CREATED);
}

#[tokio::test]
async fn a_client_trickling_its_headers_is_disconnected_and_others_are_served() {
    // Arrange: a one-second header-read time-out.
    let app = spawn_api_with(|config| config.header_read_timeout = Duration::from_secs(1)).await;
    let mut slow = TcpStream::connect(host_port(&app.address)).await.unwrap();

    // Act: a request line sent a byte every 200 ms, never finished (slowloris).
    let started = Instant::now();
    let request = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
    let mut closed_after = None;
    for byte in request.iter().chain(std::iter::repeat(&b'a')) {
        if slow.write_all(&[*byte]).await.is_err() {
            closed_after = Some(started.elapsed());
            break;
        }
        let mut buffer = [0u8; 1024];
        match tokio::time::timeout(Duration::from_millis(200), slow.read(&mut buffer)).await {
            Ok(Ok(0) | Err(_)) => {
                closed_after = Some(started.elapsed());
                break;
            }
            Ok(Ok(_)) => {} // an error response (408) before the close
            Err(_) => {}    // still open
        }
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "still connected after 5 s"
        );
    }

    // Assert: disconnected after about the bound; a normal request is served meanwhile.
    let closed_after = closed_after.unwrap();
    assert!(
        closed_after >= Duration::from_millis(900) && closed_after < Duration::from_secs(3),
        "closed after {closed_after:?}"
    );
    let health = app
        .client
        .get(format!("{}/health", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status(), StatusCode::OK);
    // A connection that sends nothing at all is closed too.
    let mut idle = TcpStream::connect(host_port(&app.address)).await.unwrap();
    let mut buffer = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(3), async {
        loop {
            match idle.read(&mut buffer).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(read.is_ok(), "an idle connection stayed open");
}

/// An app whose client addresses may make `per_second` requests (a burst of 3).
async fn spawn_ip_limited(per_second: f64) -> TestApp {
    spawn_api_with(|config| config.ip_rate_limit = Some((per_second, 3.0))).await
}

#[tokio::test]
async fn unauthenticated_routes_are_limited_per_address_and_a_tenants_requests_are_not_counted() {
    // Arrange: three requests per address at once, then one every ten seconds.
    let app = spawn_ip_limited(0.1).await;

    // A tenant's authenticated requests, well past the address's burst, are all served: the
    // tenant's own limit covers them.
    for _ in 0..10 {
        assert_eq!(app.get("/api/v1/suppliers").await.status(), StatusCode::OK);
    }

    // Act: unauthenticated requests past the burst (an unknown path counts too: no tenant's
    // limit covers it).
    let mut statuses = Vec::new();
    for path in [
        "/health",
        "/api/v1/nowhere",
        "/api/v1/openapi.json",
        "/ready",
    ] {
        let response = app
            .client
            .get(format!("{}{path}", app.address))
            .send()
            .await
            .unwrap();
        statuses.push((path, response.status()));
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            // Assert: 429 problem+json with a Retry-After.
            let retry_after: u64 = response.headers()["retry-after"]
                .to_str()
                .unwrap()
                .parse()
                .unwrap();
            assert!((1..=10).contains(&retry_after), "{retry_after}");
            expect_problem(response, StatusCode::TOO_MANY_REQUESTS).await;
        }
    }
    assert_eq!(
        statuses.iter().map(|(_, s)| s.as_u16()).collect::<Vec<_>>(),
        [200, 404, 200, 429],
        "{statuses:?}"
    );
    // Over its allowance, the address is refused everything, a valid token's request too.
    expect_problem(
        app.get("/api/v1/suppliers").await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
}

#[tokio::test]
async fn refused_tokens_and_platform_routes_count_against_the_address() {
    // Arrange: three requests per address at once, then one a second.
    let app = spawn_ip_limited(1.0).await;
    let forged = TokenKeys::new("not-our-secret").mint(
        "mallory",
        None,
        Some(app.tenant),
        vec![Role::Admin],
        chrono::Duration::hours(1),
    );

    // Act: tokens guessed past the burst.
    let mut statuses = Vec::new();
    for _ in 0..5 {
        let response = app
            .request(Method::GET, "/api/v1/suppliers", &forged)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }

    // Assert: a refusal counts once it is answered, so the fourth is the one that finds the
    // allowance spent, and the fifth guess is refused before its token is looked at; so is a
    // right one from that address, until the allowance refills.
    assert_eq!(statuses, [401, 401, 401, 401, 429]);
    expect_problem(
        app.get("/api/v1/suppliers").await,
        StatusCode::TOO_MANY_REQUESTS,
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(app.get("/api/v1/suppliers").await.status(), StatusCode::OK);

    // The platform routes count whatever the token: a platform admin's list too.
    let root = app.keys.mint(
        "root",
        None,
        None,
        vec![Role::PlatformAdmin],
        chrono::Duration::hours(1),
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let response = app
            .request(Method::GET, "/api/v1/tenants", &root)
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
}

#[tokio::test]
async fn metrics_are_served_on_the_operator_listener_and_not_on_the_public_one() {
    let app = spawn_api().await;
    app.get("/api/v1/suppliers").await;

    // The public listener, with no metrics token configured: no such endpoint, whatever sent.
    for token in [None, Some("anything")] {
        let mut request = app.client.get(format!("{}/metrics", app.address));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.unwrap();
        let problem = expect_problem(response, StatusCode::NOT_FOUND).await;
        assert!(!problem.to_string().contains("oms_"), "{problem}");
    }

    // The operator's listener serves them, without authentication.
    let text = metrics_text(&app).await;
    assert!(
        text.contains(&format!(
            "oms_projection_lag_events{{tenant=\"{}\",projection=\"orders\"}}",
            app.tenant
        )),
        "{text}"
    );
    // And nothing else.
    let other = app
        .client
        .get(format!("{}/api/v1/suppliers", app.metrics_address))
        .bearer_auth(app.admin())
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn with_a_metrics_token_the_public_listener_serves_metrics_to_its_bearer_only() {
    let token = "a-metrics-token-for-prometheus";
    let app = spawn_api_with(|config| {
        config.metrics_token = Some(oms_api::config::Secret::new(token));
    })
    .await;
    let get = |bearer: Option<&str>| {
        let mut request = app.client.get(format!("{}/metrics", app.address));
        if let Some(bearer) = bearer {
            request = request.bearer_auth(bearer);
        }
        request.send()
    };
    for wrong in [
        None,
        Some("a-metrics-token-for-prometheuS"),
        Some("a-metrics-token"),
        Some(""),
        Some(app.admin().as_str()),
    ] {
        let response = get(wrong).await.unwrap();
        expect_problem(response, StatusCode::UNAUTHORIZED).await;
    }
    let response = get(Some(token)).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response
        .text()
        .await
        .unwrap()
        .contains("oms_http_responses_total{status=\"401\"}"));
}

#[tokio::test]
async fn a_configured_issuer_and_audience_are_required_of_every_token() {
    let app = spawn_api_with(|config| {
        config.jwt_issuer = Some("https://id.example.com".into());
        config.jwt_audience = Some("oms".into());
    })
    .await;
    let keys = |issuer: Option<&str>, audience: Option<&str>| {
        TokenKeys::new(SECRET)
            .with_issuer_and_audience(issuer.map(Into::into), audience.map(Into::into))
            .mint(
                "mary",
                None,
                Some(app.tenant),
                vec![Role::Admin],
                chrono::Duration::hours(1),
            )
    };
    for (case, token) in [
        ("neither", keys(None, None)),
        ("no aud", keys(Some("https://id.example.com"), None)),
        ("no iss", keys(None, Some("oms"))),
        (
            "another aud",
            keys(Some("https://id.example.com"), Some("billing")),
        ),
        (
            "another iss",
            keys(Some("https://evil.example.com"), Some("oms")),
        ),
    ] {
        let response = app
            .request(Method::GET, "/api/v1/suppliers", &token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED, "{case}");
    }
    let right = keys(Some("https://id.example.com"), Some("oms"));
    let response = app
        .request(Method::GET, "/api/v1/suppliers", &right)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // `oms token` mints them from the same settings.
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_oms"))
        .args([
            "token",
            "--tenant",
            &app.tenant.to_string(),
            "--roles",
            "readonly",
        ])
        .env("OMS_JWT_SECRET", SECRET)
        .env("OMS_JWT_ISSUER", "https://id.example.com")
        .env("OMS_JWT_AUDIENCE", "oms")
        .env_remove("OMS_JWT_SECRET_FILE")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let minted = String::from_utf8(output.stdout).unwrap();
    let response = app
        .request(Method::GET, "/api/v1/suppliers", minted.trim())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
}
