//! The `oms` binary as an operator uses it: `token`, `tenant create`, `tenant list`,
//! `migrate`; bad input gets a message and a non-zero exit.

#[path = "../../store/tests/common_db.rs"]
mod common_db;

use common_db::*;
use oms_api::auth::{Role, TokenKeys};
use std::process::{Command, Output};

fn oms(args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_oms"));
    command
        .args(args)
        .env_remove("OMS_JWT_SECRET")
        .env_remove("DATABASE_URL");
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("oms runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

#[test]
fn token_mints_a_token_the_service_accepts() {
    let tenant = uuid::Uuid::now_v7().to_string();
    let output = oms(
        &[
            "token",
            "--tenant",
            &tenant,
            "--roles",
            "manager,user",
            "--sub",
            "alice",
            "--name",
            "Alice",
        ],
        &[("OMS_JWT_SECRET", "s3cret")],
    );
    assert!(output.status.success(), "{output:?}");
    let claims = TokenKeys::new("s3cret")
        .verify(&stdout(&output))
        .expect("a valid token");
    assert_eq!(claims.sub, "alice");
    assert_eq!(claims.name.as_deref(), Some("Alice"));
    assert_eq!(claims.tenant.unwrap().to_string(), tenant);
    assert_eq!(claims.roles, vec![Role::Manager, Role::User]);
}

#[test]
fn token_refuses_bad_input_with_a_message() {
    let no_tenant = oms(&["token", "--roles", "admin"], &[]);
    assert!(!no_tenant.status.success());
    assert!(String::from_utf8_lossy(&no_tenant.stderr).contains("platform_admin"));

    let bad_role = oms(
        &[
            "token",
            "--tenant",
            &uuid::Uuid::nil().to_string(),
            "--roles",
            "owner",
        ],
        &[],
    );
    assert!(!bad_role.status.success());
    assert!(String::from_utf8_lossy(&bad_role.stderr).contains("owner"));

    let bad_tenant = oms(&["token", "--tenant", "acme"], &[]);
    assert!(!bad_tenant.status.success());
}

#[tokio::test]
async fn tenant_create_and_list_provision_tenants() {
    let (name, pool) = fresh_database(2).await;
    let url = database_url(&name);
    let created = oms(
        &["tenant", "create", "--name", "Acme Meats", "--slug", "acme"],
        &[("DATABASE_URL", &url)],
    );
    assert!(created.status.success(), "{created:?}");
    let id: uuid::Uuid = stdout(&created).parse().expect("prints the tenant id");
    let head: i64 = sqlx::query_scalar("select position from tenant_heads where tenant_id = $1")
        .bind(id)
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(head, 0);

    let duplicate = oms(
        &["tenant", "create", "--name", "Again", "--slug", "acme"],
        &[("DATABASE_URL", &url)],
    );
    assert!(!duplicate.status.success());
    assert!(String::from_utf8_lossy(&duplicate.stderr).contains("taken"));
    let invalid = oms(
        &["tenant", "create", "--name", "X", "--slug", "Not a slug"],
        &[("DATABASE_URL", &url)],
    );
    assert!(!invalid.status.success());

    let listed = oms(&["tenant", "list"], &[("DATABASE_URL", &url)]);
    assert!(listed.status.success());
    let listing = stdout(&listed);
    assert_eq!(listing.lines().count(), 1, "{listing}");
    assert!(listing.contains(&id.to_string()) && listing.contains("acme"));
}

#[test]
fn migrate_against_an_unreachable_database_fails_with_a_message() {
    let output = oms(
        &["migrate"],
        &[("DATABASE_URL", "postgres://postgres@127.0.0.1:1/nothing")],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot connect"));
}

#[tokio::test]
async fn migrate_applies_every_migration_once() {
    let (name, pool) = fresh_database(2).await;
    let url = database_url(&name);
    // fresh_database migrated already: a second run is a no-op that succeeds.
    let output = oms(&["migrate"], &[("DATABASE_URL", &url)]);
    assert!(output.status.success(), "{output:?}");
    assert!(oms_store::migrate::is_up_to_date(&pool).await.unwrap());
}

#[test]
fn serve_refuses_a_missing_short_or_development_secret_without_demo() {
    for (secret, says) in [
        (None, "OMS_JWT_SECRET"),
        (Some("short"), "at least 32"),
        (Some("oms-dev-secret-change-me"), "development secret"),
    ] {
        let envs: Vec<(&str, &str)> = secret.map(|s| ("OMS_JWT_SECRET", s)).into_iter().collect();
        let output = oms(&["serve", "--bind", "127.0.0.1:0"], &envs);
        assert!(!output.status.success(), "{secret:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{secret:?}: {stderr}");
    }
    // Not on the command line either, where `ps` would show it.
    let output = oms(
        &[
            "serve",
            "--jwt-secret",
            "a-secret-that-is-long-enough-to-be-accepted",
        ],
        &[],
    );
    assert!(!output.status.success());
}

#[test]
fn serve_refuses_a_relay_without_an_anchor_key_or_with_a_short_one() {
    let secret = "a-test-secret-that-is-at-least-32-characters";
    for (key, says) in [(None, "OMS_ANCHOR_KEY"), (Some("short"), "at least 32")] {
        let mut envs = vec![("OMS_JWT_SECRET", secret)];
        envs.extend(key.map(|k| ("OMS_ANCHOR_KEY", k)));
        for role in ["relay", "all"] {
            let mut command = Command::new(env!("CARGO_BIN_EXE_oms"));
            command
                .args(["serve", "--role", role, "--bind", "127.0.0.1:0"])
                .env_remove("OMS_ANCHOR_KEY")
                .env_remove("OMS_ANCHOR_KEY_FILE")
                .env_remove("DATABASE_URL");
            for (name, value) in &envs {
                command.env(name, value);
            }
            let output = command.output().expect("oms runs");
            assert!(!output.status.success(), "{role} {key:?}: {output:?}");
            let stderr = String::from_utf8_lossy(&output.stderr);
            assert!(stderr.contains(says), "{role} {key:?}: {stderr}");
        }
    }
    // Not on the command line either, where `ps` would show it.
    let output = oms(
        &[
            "serve",
            "--anchor-key",
            "an-anchor-key-that-is-long-enough-to-be-accepted",
        ],
        &[("OMS_JWT_SECRET", secret)],
    );
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("unexpected argument"));
}

#[test]
fn serve_refuses_to_start_without_a_usable_data_key_outside_demo() {
    let secret = "a-test-secret-that-is-at-least-32-characters";
    let anchor = "a-test-anchor-key-of-at-least-32-bytes";
    for (key, says) in [(None, "OMS_DATA_KEY"), (Some("short"), "at least 32")] {
        let mut command = Command::new(env!("CARGO_BIN_EXE_oms"));
        command
            .args(["serve", "--bind", "127.0.0.1:0"])
            .env("OMS_JWT_SECRET", secret)
            .env("OMS_ANCHOR_KEY", anchor)
            .env_remove("OMS_DATA_KEY")
            .env_remove("OMS_DATA_KEY_FILE")
            // Unreachable: the key is checked before anything is connected to.
            .env("DATABASE_URL", "postgres://nobody@127.0.0.1:1/none");
        if let Some(key) = key {
            command.env("OMS_DATA_KEY", key);
        }
        let output = command.output().expect("oms runs");
        assert!(!output.status.success(), "{key:?}: {output:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{key:?}: {stderr}");
    }
}

#[test]
fn audit_verify_refuses_an_empty_export_file() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty.ndjson");
    std::fs::write(&empty, "").unwrap();
    let output = oms(&["audit", "verify", "--file", empty.to_str().unwrap()], &[]);
    assert!(!output.status.success(), "{output:?}");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("empty"), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["ok"], false);
}
