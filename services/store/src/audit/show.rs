//! `oms audit show`: an order as it was at an instant, and its events up to then — who, when,
//! what changed — folded from the event store.

use chrono::{DateTime, Utc};
use cqrs_es::Aggregate;
use oms_domain::changes::{diff, Changes};
use oms_domain::purchase_order::{PurchaseOrder, PURCHASE_ORDER_TYPE};
use oms_domain::sales_order::{SalesOrder, SALES_ORDER_TYPE};
use oms_projections::documents::{self, Stamp};
use serde_json::{json, Value};
use std::fmt::Write;
use uuid::Uuid;

use crate::{EventStore, FoldError, StoredEvent};

/// One event as the audit shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct ShownEvent {
    /// The tenant position.
    pub position: i64,
    /// The order's event number.
    pub sequence: i64,
    /// When it was recorded.
    pub recorded_at: DateTime<Utc>,
    /// Who (`sub`).
    pub actor: String,
    /// Their name, if the token had one.
    pub actor_name: Option<String>,
    /// The event type.
    pub event_type: String,
    /// Every field of the order document it changed.
    pub changes: Changes,
}

/// An order at an instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Shown {
    /// `purchase_order` or `sales_order`.
    pub order_type: &'static str,
    /// The order.
    pub id: Uuid,
    /// Its tenant.
    pub tenant: Uuid,
    /// The instant (None: now).
    pub as_of: Option<DateTime<Utc>>,
    /// The order document then.
    pub document: Value,
    /// Its events up to then.
    pub events: Vec<ShownEvent>,
}

/// Why there is nothing to show.
#[derive(Debug, thiserror::Error)]
pub enum ShowError {
    /// No such order (in the tenant, when given).
    #[error("no order {0}")]
    NotFound(String),
    /// The order did not exist yet at the instant.
    #[error("order {0} did not exist at {1}")]
    NotYet(String, DateTime<Utc>),
    /// The order number is used by several tenants.
    #[error("order number {0} exists in several tenants; pass --tenant")]
    Ambiguous(String),
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    /// A stored event does not fit.
    #[error(transparent)]
    Fold(#[from] FoldError),
}

/// Finds the order (by id or order number) and folds it up to `as_of`.
pub async fn show(
    store: &EventStore,
    order: &str,
    tenant: Option<Uuid>,
    as_of: Option<DateTime<Utc>>,
) -> Result<Shown, ShowError> {
    let found: Vec<(Uuid, String, Uuid)> = match Uuid::parse_str(order) {
        Ok(id) => {
            sqlx::query_as(
                "select distinct tenant_id, aggregate_type, aggregate_id from events
                  where aggregate_id = $1 and aggregate_type in ($2, $3) and sequence = 1
                    and ($4::uuid is null or tenant_id = $4)",
            )
            .bind(id)
            .bind(PURCHASE_ORDER_TYPE)
            .bind(SALES_ORDER_TYPE)
            .bind(tenant)
            .fetch_all(store.pool())
            .await?
        }
        Err(_) => {
            sqlx::query_as(
                "select tenant_id,
                        case scope when 'purchase_order_number' then $2 else $3 end,
                        aggregate_id
                   from unique_keys
                  where key = $1 and scope in ('purchase_order_number', 'sales_order_number')
                    and ($4::uuid is null or tenant_id = $4)",
            )
            .bind(order)
            .bind(PURCHASE_ORDER_TYPE)
            .bind(SALES_ORDER_TYPE)
            .bind(tenant)
            .fetch_all(store.pool())
            .await?
        }
    };
    let (tenant, aggregate_type, id) = match found.as_slice() {
        [] => return Err(ShowError::NotFound(order.to_string())),
        [one] => one.clone(),
        _ => return Err(ShowError::Ambiguous(order.to_string())),
    };
    let mut events = store.load_stream(tenant, &aggregate_type, id).await?;
    if let Some(at) = as_of {
        events.retain(|e| e.recorded_at <= at);
        if events.is_empty() {
            return Err(ShowError::NotYet(order.to_string(), at));
        }
    }
    let (order_type, document, shown) = if aggregate_type == PURCHASE_ORDER_TYPE {
        let (document, shown) =
            fold_steps::<PurchaseOrder>(store, id, &events, documents::purchase_order)?;
        (PURCHASE_ORDER_TYPE, document, shown)
    } else {
        let (document, shown) =
            fold_steps::<SalesOrder>(store, id, &events, documents::sales_order)?;
        (SALES_ORDER_TYPE, document, shown)
    };
    Ok(Shown {
        order_type,
        id,
        tenant,
        as_of,
        document,
        events: shown,
    })
}

/// Folds the events one at a time, noting what each changed in the document.
fn fold_steps<A: Aggregate>(
    store: &EventStore,
    id: Uuid,
    events: &[StoredEvent],
    document: fn(&A, &Stamp) -> Value,
) -> Result<(Value, Vec<ShownEvent>), FoldError> {
    let mut aggregate = A::default();
    let mut shown = Vec::with_capacity(events.len());
    let created_at = events.first().map(|e| e.recorded_at);
    let mut before = json!({});
    for event in events {
        let serialized = store.upcast(event);
        let payload: A::Event =
            serde_json::from_value(serialized.payload).map_err(|err| FoldError {
                position: event.position,
                message: err.to_string(),
            })?;
        aggregate.apply(payload);
        let after = document(
            &aggregate,
            &Stamp {
                id,
                version: event.sequence,
                created_at,
                updated_at: Some(event.recorded_at),
            },
        );
        let mut changes = diff(&before, &after);
        for noise in ["version", "updated_at", "created_at", "id"] {
            changes.remove(noise);
        }
        shown.push(ShownEvent {
            position: event.position,
            sequence: event.sequence,
            recorded_at: event.recorded_at,
            actor: event.metadata["actor"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            actor_name: event.metadata["actor_name"].as_str().map(str::to_string),
            event_type: event.event_type.clone(),
            changes,
        });
        before = after;
    }
    Ok((before, shown))
}

impl Shown {
    /// As JSON: `{order_type, id, tenant, as_of, state, events: [...]}`.
    pub fn to_json(&self) -> Value {
        json!({
            "order_type": self.order_type,
            "id": self.id,
            "tenant": self.tenant,
            "as_of": self.as_of,
            "state": self.document,
            "events": self.events.iter().map(|e| json!({
                "position": e.position,
                "sequence": e.sequence,
                "recorded_at": e.recorded_at,
                "actor": e.actor,
                "actor_name": e.actor_name,
                "event_type": e.event_type,
                "changes": e.changes,
            })).collect::<Vec<_>>(),
        })
    }

    /// As text for a terminal.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let d = &self.document;
        let _ = writeln!(
            out,
            "{} {} ({})  tenant {}",
            self.order_type.replace('_', " "),
            d["order_number"].as_str().unwrap_or("?"),
            self.id,
            self.tenant
        );
        let _ = writeln!(
            out,
            "as of {}",
            self.as_of
                .map_or_else(|| "now".to_string(), |t| t.to_rfc3339())
        );
        for field in [
            "status",
            "payment_status",
            "total",
            "amount_due",
            "amount_paid",
            "outstanding",
            "version",
        ] {
            let value = &d[field];
            let text = value
                .as_str()
                .map_or_else(|| value.to_string(), str::to_string);
            let _ = writeln!(out, "  {field:<15} {text}");
        }
        let _ = writeln!(out, "\nevents:");
        for e in &self.events {
            let who = e
                .actor_name
                .as_deref()
                .map_or_else(|| e.actor.clone(), |n| format!("{n} ({})", e.actor));
            let _ = writeln!(
                out,
                "  #{:<4} pos {:<6} {}  {:<30} by {}",
                e.sequence,
                e.position,
                e.recorded_at.format("%Y-%m-%d %H:%M:%S%.3fZ"),
                e.event_type,
                who
            );
            for (field, change) in &e.changes {
                let short = |v: &Value| {
                    let text = v.as_str().map_or_else(|| v.to_string(), str::to_string);
                    if text.len() > 60 {
                        format!(
                            "{}…",
                            &text[..text.char_indices().nth(59).map_or(text.len(), |(i, _)| i)]
                        )
                    } else {
                        text
                    }
                };
                let _ = writeln!(
                    out,
                    "        {field}: {} → {}",
                    short(&change.from),
                    short(&change.to)
                );
            }
        }
        out
    }
}
