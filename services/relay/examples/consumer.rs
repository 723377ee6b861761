//! An integrator's consumer of oms's events (docs/integration.md): a durable JetStream consumer
//! of its own on the `OMS_EVENTS` stream, filtered by tenant and aggregate type, that
//! deduplicates by `Nats-Msg-Id` and acknowledges each event once it is handled.
//!
//! ```text
//! cargo run -p oms-relay --example consumer -- \
//!     [--nats nats://127.0.0.1:4222] [--name billing] [--tenant <id>|*] [--type purchase_order|*] \
//!     [--idle-exit <seconds>]
//! ```
//!
//! It prints one JSON line per event (tenant, position, type, version, aggregate). Stopped and
//! started again with the same `--name`, it goes on after the last event it acknowledged:
//! the consumer, and its position, live in JetStream.

use async_nats::jetstream::{self, consumer};
use futures::StreamExt;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::time::Duration;

/// Reads `--flag value` from the arguments, or `default`.
fn argument(flag: &str, default: &str) -> String {
    let arguments: Vec<String> = std::env::args().collect();
    arguments
        .iter()
        .position(|a| a == flag)
        .and_then(|i| arguments.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_owned())
}

#[tokio::main]
async fn main() -> Result<(), async_nats::Error> {
    let url = argument("--nats", "nats://127.0.0.1:4222");
    let name = argument("--name", "example-consumer");
    let tenant = argument("--tenant", "*");
    let aggregate_type = argument("--type", "*");
    let idle_exit: Option<u64> = argument("--idle-exit", "").parse().ok();

    let client = async_nats::connect(&url).await?;
    let jetstream = jetstream::new(client);
    let stream = jetstream.get_stream("OMS_EVENTS").await?;
    // One durable consumer per integration: JetStream keeps its position, so a restart goes
    // on where it stopped, and each integration reads at its own pace.
    let consumer = stream
        .get_or_create_consumer(
            &name,
            consumer::pull::Config {
                durable_name: Some(name.clone()),
                filter_subject: format!("oms.events.{tenant}.{aggregate_type}.*"),
                deliver_policy: consumer::DeliverPolicy::All,
                ack_policy: consumer::AckPolicy::Explicit,
                ack_wait: Duration::from_secs(30),
                ..Default::default()
            },
        )
        .await?;

    // Per tenant, the last position handled. The stream is in each tenant's position order,
    // so an event at or below it is a redelivery (the ack was lost) or a republish that
    // outlived JetStream's duplicate window: skip it, but acknowledge it. A real integration
    // keeps this in its own database, in the transaction that applies the event.
    let mut handled: HashMap<String, i64> = HashMap::new();
    let mut messages = consumer.messages().await?;
    loop {
        let next = match idle_exit {
            Some(seconds) => {
                match tokio::time::timeout(Duration::from_secs(seconds), messages.next()).await {
                    Ok(next) => next,
                    Err(_) => break,
                }
            }
            None => messages.next().await,
        };
        let Some(message) = next else { break };
        let message = message?;
        let headers = message.headers.clone().unwrap_or_default();
        let header = |name: &str| headers.get(name).map(|v| v.as_str().to_owned());
        // Nats-Msg-Id is `<tenant>:<position>`.
        let id = header("Nats-Msg-Id").unwrap_or_default();
        let Some((event_tenant, position)) = id
            .split_once(':')
            .and_then(|(t, p)| Some((t.to_owned(), p.parse::<i64>().ok()?)))
        else {
            eprintln!("not an oms event (no Nats-Msg-Id): {}", message.subject);
            message.ack().await?;
            continue;
        };
        if handled
            .get(&event_tenant)
            .is_some_and(|last| position <= *last)
        {
            message.ack().await?;
            continue;
        }
        let envelope: Value = serde_json::from_slice(&message.payload)?;
        if header("Oms-Payload").as_deref() == Some("omitted") {
            // Too large for a NATS message: the identity is here, the event is in the API.
            eprintln!("{id}: payload omitted; fetch it from the API");
        }
        println!(
            "{}",
            json!({
                "tenant": event_tenant,
                "position": position,
                "event_type": envelope["event_type"],
                "event_version": envelope["event_version"],
                "aggregate_type": envelope["aggregate_type"],
                "aggregate_id": envelope["aggregate_id"],
            })
        );
        handled.insert(event_tenant, position);
        message.ack().await?;
    }
    Ok(())
}
