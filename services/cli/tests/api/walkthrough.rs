//! The walk-throughs a new user follows, run as written: the shell blocks of README.md's "A
//! first purchase order, with curl" and of docs/api.md's reference data and lots, claims and
//! recall sections, with bash, curl and jq against the service. A request the docs send that
//! the service refuses, or a `jq` filter that no longer matches what the service answers,
//! fails the test; so do the values the docs promise in their comments.

use crate::helpers::*;
use oms_api::auth::Role;
use reqwest::StatusCode;
use tokio::process::Command;

/// The ```sh blocks of the sections of `doc` (a path from the repository root) whose headings
/// start with `sections`, in order.
fn shell_blocks(doc: &str, sections: &[&str]) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .join(doc);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{doc}: {e}"));
    let mut script = String::new();
    for heading in sections {
        let start = text
            .find(&format!("\n## {heading}"))
            .unwrap_or_else(|| panic!("{doc} has a section {heading:?}"));
        let body = &text[start + 1..];
        let body = &body[..body.find("\n## ").unwrap_or(body.len())];
        let mut rest = body;
        while let Some(open) = rest.find("```sh\n") {
            let block = &rest[open + 6..];
            let close = block.find("```").expect("a closed code block");
            script.push_str(&block[..close]);
            script.push('\n');
            rest = &block[close..][3..];
        }
    }
    assert!(!script.is_empty(), "{doc} {sections:?} has shell blocks");
    script
}

/// Runs `script` with bash against `app`, as the docs' reader would with the token `make run`
/// prints: `curl` fails on any 4xx or 5xx and every pipeline's failure stops the script.
/// Returns what it printed. (Asynchronously: the service under test runs on this test's
/// runtime, which a blocking wait would stop.)
async fn run(app: &TestApp, script: &str) -> String {
    for tool in ["bash", "curl", "jq"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .await
            .expect("sh runs");
        assert!(
            found.status.success(),
            "the walk-throughs need {tool} on PATH, as their reader does"
        );
    }
    let token = app.token_for(app.tenant, &[Role::Admin]);
    // The docs' own `API=` lines name the default address; the test's service is elsewhere.
    let script = script
        .lines()
        .filter(|line| !line.starts_with("API="))
        .collect::<Vec<_>>()
        .join("\n");
    let prelude = format!(
        "set -euo pipefail\n\
         curl() {{ command curl --silent --show-error --fail-with-body --max-time 30 \"$@\"; }}\n\
         API={}/api/v1\n\
         H=(-H \"Authorization: Bearer $TOKEN\" -H 'Content-Type: application/json')\n",
        app.address
    );
    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("{prelude}{script}"))
        .env("TOKEN", token)
        .kill_on_drop(true)
        .output()
        .await
        .expect("bash runs");
    let stdout = String::from_utf8_lossy(&output.stdout).to_string();
    assert!(
        output.status.success(),
        "the walk-through failed ({}):\n--- printed:\n{stdout}\n--- errors:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// Every `# "value"` the docs' comments promise is printed by the walk-through.
fn promised_values_printed(script: &str, printed: &str) {
    for line in script.lines() {
        let Some((_, comment)) = line.rsplit_once("# ") else {
            continue;
        };
        for value in comment.split(", ").map(str::trim) {
            if value.len() > 2 && value.starts_with('"') && value.ends_with('"') {
                assert!(
                    printed.contains(value),
                    "the docs promise {value} ({line:?}); the service printed:\n{printed}"
                );
            }
        }
    }
}

#[tokio::test]
async fn the_readmes_first_purchase_order_works_as_written() {
    let app = spawn_app().await;
    let script = shell_blocks("README.md", &["A first purchase order, with curl"]);
    let printed = run(&app, &script).await;
    promised_values_printed(&script, &printed);
    assert!(printed.contains("\"closed\""), "{printed}");
}

#[tokio::test]
async fn the_api_guides_lot_claim_and_recall_walk_through_works_as_written() {
    let app = spawn_app().await;
    let script = shell_blocks(
        "docs/api.md",
        &["Reference data", "Lots, claims passed back to the packer"],
    );
    let printed = run(&app, &script).await;
    promised_values_printed(&script, &printed);

    // Both orders ended closed, and the trace found the lot's one shipment.
    let closed: i64 = sqlx::query_scalar(
        "select count(*) from events where event_type in ('PurchaseOrderClosed', 'SalesOrderClosed')",
    )
    .fetch_one(&app.pool)
    .await
    .unwrap();
    assert_eq!(closed, 2, "{printed}");
    let lots = expect_json(app.get("/api/v1/lots?q=A123").await, StatusCode::OK).await;
    assert_eq!(lots["items"][0]["lot_number"], "A123", "{lots}");
}
