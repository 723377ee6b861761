//! The postgres-es baseline: the published Rust way of doing this job — cqrs-es 0.5 with
//! postgres-es's `PostgresEventRepository` — behind an equally thin axum handler, so the
//! bench's client can drive it over HTTP with the very same mix.
//!
//! Honest, not flattering: the same domain aggregates decide (their `handle`, their events),
//! the same JSON bodies come in and the same order documents go out; a command is the
//! framework's own cycle (load the aggregate's events, handle, commit through the repository).
//! What it does not do, and the service does: tenants, tenant positions, the hash chain,
//! number series (its order numbers come from an in-process counter), unique keys,
//! idempotency keys and If-Match (ignored), authentication (tokens are not checked), and
//! reference checks against the store (a process-local registry of what it registered).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::persist::PersistedEventStore;
use cqrs_es::{Aggregate, AggregateContext, AggregateError, EventStore};
use oms_domain::order::NewPayment;
use oms_domain::purchase_order::{
    self, NewPurchaseOrder, PurchaseOrder, PurchaseOrderCommand, PurchaseOrderHeader,
    ReceiptLineInput,
};
use oms_domain::reference::{
    Customer, Product, Reference, ReferenceCommand, ReferenceKind, Supplier,
};
use oms_domain::sales_order::{
    self, NewSalesOrder, SalesOrder, SalesOrderCommand, SalesOrderHeader, ShipLineInput,
};
use oms_domain::services::{
    DomainServices, LookupError, Lookups, LotSummary, ReferenceSummary, ReferenceType,
    SalesClaimSummary, SystemClock,
};
use oms_domain::values::{InvoiceNumber, OrderNumber};
use oms_projections::documents::{self, Stamp};
use postgres_es::PostgresEventRepository;
use serde_json::{json, Value};
use std::collections::{HashMap, HashSet};
use std::path::Path as FsPath;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};
use uuid::Uuid;

type Store<A> = PersistedEventStore<PostgresEventRepository, A>;

/// What the baseline knows of reference data and orders: a process-local registry (the
/// baseline has no read side to ask).
#[derive(Default)]
struct Registry {
    references: RwLock<HashMap<(ReferenceType, Uuid), bool>>,
    purchase_orders: RwLock<HashSet<Uuid>>,
}

#[async_trait::async_trait]
impl Lookups for Registry {
    async fn reference(
        &self,
        kind: ReferenceType,
        id: Uuid,
    ) -> Result<Option<ReferenceSummary>, LookupError> {
        let references = self
            .references
            .read()
            .map_err(|e| LookupError(e.to_string()))?;
        Ok(references
            .get(&(kind, id))
            .map(|&active| ReferenceSummary { active }))
    }

    async fn purchase_order_exists(&self, id: Uuid) -> Result<bool, LookupError> {
        let orders = self
            .purchase_orders
            .read()
            .map_err(|e| LookupError(e.to_string()))?;
        Ok(orders.contains(&id))
    }

    /// The baseline's mix raises no claims, so it knows of none.
    async fn sales_claim(&self, _claim_id: Uuid) -> Result<Option<SalesClaimSummary>, LookupError> {
        Ok(None)
    }

    /// The baseline's mix receives no lots, so it knows of none.
    async fn lot(&self, _lot_id: Uuid) -> Result<Option<LotSummary>, LookupError> {
        Ok(None)
    }
}

#[derive(Clone)]
struct Baseline {
    pool: sqlx::PgPool,
    registry: Arc<Registry>,
    services: Arc<DomainServices>,
    numbers: Arc<AtomicU64>,
}

impl Baseline {
    fn store<A: Aggregate>(&self) -> Store<A> {
        PersistedEventStore::new_event_store(
            PostgresEventRepository::new(self.pool.clone()).with_tables("events", "snapshots"),
        )
    }

    /// The framework's command cycle (as `CqrsFramework::execute`): load, handle, commit —
    /// keeping the decided state to answer with.
    async fn execute<A>(&self, id: Uuid, command: A::Command) -> Result<(A, i64), Problem>
    where
        A: Aggregate<Services = DomainServices> + Clone,
        A::Error: std::fmt::Display,
    {
        let store = self.store::<A>();
        let mut context = store
            .load_aggregate(&id.to_string())
            .await
            .map_err(problem)?;
        let sink = EventSink::default();
        context
            .aggregate()
            .handle(command, &self.services, &sink)
            .await
            .map_err(|err| Problem(StatusCode::UNPROCESSABLE_ENTITY, err.to_string()))?;
        let events = sink.collect().await;
        // The sink has applied the events: this is the state after the command.
        let state = context.aggregate().clone();
        let committed = store
            .commit(events, context, HashMap::new())
            .await
            .map_err(problem)?;
        let version = committed.last().map_or(0, |e| e.sequence as i64);
        Ok((state, version))
    }
}

struct Problem(StatusCode, String);

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        (
            self.0,
            Json(json!({"status": self.0.as_u16(), "detail": self.1})),
        )
            .into_response()
    }
}

fn problem<E: std::error::Error>(err: AggregateError<E>) -> Problem {
    match err {
        AggregateError::AggregateConflict => Problem(StatusCode::CONFLICT, "conflict".into()),
        AggregateError::UserError(e) => Problem(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        other => Problem(StatusCode::INTERNAL_SERVER_ERROR, other.to_string()),
    }
}

fn bad(err: impl std::fmt::Display) -> Problem {
    Problem(StatusCode::UNPROCESSABLE_ENTITY, err.to_string())
}

fn stamp(id: Uuid, version: i64) -> Stamp {
    let now = chrono::Utc::now();
    Stamp {
        id,
        version,
        created_at: Some(now),
        updated_at: Some(now),
    }
}

fn answer(status: StatusCode, mut body: Value, version: i64) -> Response {
    if let Value::Object(map) = &mut body {
        map.insert("position".into(), json!(version));
    }
    (status, [("etag", format!("\"{version}\""))], Json(body)).into_response()
}

/// Splits a create body into its header (everything but `lines` and `order_number`) and its
/// lines, each given a fresh `line_id` as the service does.
fn split(mut body: Value) -> Result<(Value, Vec<Value>), Problem> {
    let map = body.as_object_mut().ok_or_else(|| bad("not an object"))?;
    map.remove("order_number");
    let lines = match map.remove("lines") {
        Some(Value::Array(lines)) => lines,
        _ => Vec::new(),
    };
    let lines = lines
        .into_iter()
        .map(|mut line| {
            if let Value::Object(m) = &mut line {
                m.insert("line_id".into(), json!(Uuid::now_v7()));
            }
            line
        })
        .collect();
    Ok((body, lines))
}

fn next_number(state: &Baseline, prefix: &str) -> u64 {
    let _ = prefix;
    state.numbers.fetch_add(1, Ordering::Relaxed) + 1
}

async fn register<K>(
    state: &Baseline,
    kind: ReferenceType,
    body: Value,
) -> Result<Response, Problem>
where
    K: ReferenceKind,
    Reference<K>: Aggregate<Command = ReferenceCommand<K>, Services = DomainServices> + Clone,
    <Reference<K> as Aggregate>::Error: std::fmt::Display,
{
    let details: K = serde_json::from_value(body).map_err(bad)?;
    let id = Uuid::now_v7();
    let (_, version) = state
        .execute::<Reference<K>>(id, ReferenceCommand::Register(details))
        .await?;
    if let Ok(mut references) = state.registry.references.write() {
        references.insert((kind, id), true);
    }
    Ok(answer(
        StatusCode::CREATED,
        json!({"id": id, "version": version}),
        version,
    ))
}

async fn suppliers(
    State(s): State<Baseline>,
    Json(body): Json<Value>,
) -> Result<Response, Problem> {
    register::<Supplier>(&s, ReferenceType::Supplier, body).await
}
async fn products(State(s): State<Baseline>, Json(body): Json<Value>) -> Result<Response, Problem> {
    register::<Product>(&s, ReferenceType::Product, body).await
}
async fn customers(
    State(s): State<Baseline>,
    Json(body): Json<Value>,
) -> Result<Response, Problem> {
    register::<Customer>(&s, ReferenceType::Customer, body).await
}

async fn po(
    state: &Baseline,
    id: Uuid,
    status: StatusCode,
    command: PurchaseOrderCommand,
) -> Result<Response, Problem> {
    let (order, version) = state.execute::<PurchaseOrder>(id, command).await?;
    Ok(answer(
        status,
        documents::purchase_order(&order, &stamp(id, version)),
        version,
    ))
}

async fn so(
    state: &Baseline,
    id: Uuid,
    status: StatusCode,
    command: SalesOrderCommand,
) -> Result<Response, Problem> {
    let (order, version) = state.execute::<SalesOrder>(id, command).await?;
    Ok(answer(
        status,
        documents::sales_order(&order, &stamp(id, version)),
        version,
    ))
}

async fn po_create(
    State(s): State<Baseline>,
    Json(body): Json<Value>,
) -> Result<Response, Problem> {
    let (header, lines) = split(body)?;
    let header: PurchaseOrderHeader = serde_json::from_value(header).map_err(bad)?;
    let lines: Vec<purchase_order::NewLine> = lines
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    let id = Uuid::now_v7();
    let command = PurchaseOrderCommand::Create(NewPurchaseOrder {
        order_number: OrderNumber::assigned("PO", next_number(&s, "PO")),
        header,
        lines,
    });
    let response = po(&s, id, StatusCode::CREATED, command).await?;
    if let Ok(mut orders) = s.registry.purchase_orders.write() {
        orders.insert(id);
    }
    Ok(response)
}

async fn po_action(
    State(s): State<Baseline>,
    Path((id, action)): Path<(Uuid, String)>,
    body: Option<Json<Value>>,
) -> Result<Response, Problem> {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let command = match action.as_str() {
        "submit" => PurchaseOrderCommand::Submit,
        "approve" => PurchaseOrderCommand::Approve,
        "close" => PurchaseOrderCommand::Close,
        "receipts" => {
            #[derive(serde::Deserialize)]
            struct Receipt {
                received_on: NaiveDate,
                complete: bool,
                lines: Vec<ReceiptLineInput>,
            }
            let r: Receipt = serde_json::from_value(body).map_err(bad)?;
            PurchaseOrderCommand::RecordReceipt {
                receipt_id: Uuid::now_v7(),
                received_on: r.received_on,
                complete: r.complete,
                lines: r.lines,
            }
        }
        "payments" => PurchaseOrderCommand::RecordPayment(payment(body)?),
        _ => return Err(Problem(StatusCode::NOT_FOUND, "no such action".into())),
    };
    po(&s, id, StatusCode::OK, command).await
}

fn payment(mut body: Value) -> Result<NewPayment, Problem> {
    if let Value::Object(map) = &mut body {
        map.insert("payment_id".into(), json!(Uuid::now_v7()));
    }
    serde_json::from_value(body).map_err(bad)
}

async fn so_create(
    State(s): State<Baseline>,
    Json(body): Json<Value>,
) -> Result<Response, Problem> {
    let (header, lines) = split(body)?;
    let header: SalesOrderHeader = serde_json::from_value(header).map_err(bad)?;
    let lines: Vec<sales_order::NewLine> = lines
        .into_iter()
        .map(serde_json::from_value)
        .collect::<Result<_, _>>()
        .map_err(bad)?;
    let command = SalesOrderCommand::Create(NewSalesOrder {
        order_number: OrderNumber::assigned("SO", next_number(&s, "SO")),
        header,
        lines,
    });
    so(&s, Uuid::now_v7(), StatusCode::CREATED, command).await
}

async fn so_action(
    State(s): State<Baseline>,
    Path((id, action)): Path<(Uuid, String)>,
    body: Option<Json<Value>>,
) -> Result<Response, Problem> {
    let body = body.map(|Json(b)| b).unwrap_or(Value::Null);
    let command = match action.as_str() {
        "confirm" => SalesOrderCommand::Confirm,
        "close" => SalesOrderCommand::Close,
        "ship" => {
            #[derive(serde::Deserialize)]
            struct Ship {
                shipped_on: NaiveDate,
                carrier_id: Option<Uuid>,
                carrier_release_number: Option<oms_domain::values::ShortText>,
                lines: Vec<ShipLineInput>,
            }
            let r: Ship = serde_json::from_value(body).map_err(bad)?;
            SalesOrderCommand::Ship {
                shipped_on: r.shipped_on,
                carrier_id: r.carrier_id,
                carrier_release_number: r.carrier_release_number,
                lines: r.lines,
            }
        }
        "deliver" => {
            #[derive(serde::Deserialize)]
            struct Deliver {
                delivered_on: NaiveDate,
            }
            let r: Deliver = serde_json::from_value(body).map_err(bad)?;
            SalesOrderCommand::Deliver {
                delivered_on: r.delivered_on,
            }
        }
        "invoice" => {
            #[derive(serde::Deserialize)]
            struct Invoice {
                invoice_date: NaiveDate,
                due_date: NaiveDate,
            }
            let r: Invoice = serde_json::from_value(body).map_err(bad)?;
            SalesOrderCommand::Invoice {
                invoice_number: InvoiceNumber::assigned("INV", next_number(&s, "INV")),
                invoice_date: r.invoice_date,
                due_date: r.due_date,
            }
        }
        "payments" => SalesOrderCommand::RecordPayment(payment(body)?),
        _ => return Err(Problem(StatusCode::NOT_FOUND, "no such action".into())),
    };
    so(&s, id, StatusCode::OK, command).await
}

/// Serves the baseline on `bind` over `database_url` (its tables are created first) until
/// the process is stopped.
pub async fn serve(database_url: &str, bind: std::net::SocketAddr) -> anyhow::Result<()> {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(32)
        .connect(database_url)
        .await?;
    // postgres-es's own schema (its README's).
    sqlx::raw_sql(
        "create table if not exists events (
             aggregate_type text not null, aggregate_id text not null,
             sequence bigint check (sequence >= 0) not null, event_type text not null,
             event_version text not null, payload json not null, metadata json not null,
             primary key (aggregate_type, aggregate_id, sequence));
         create table if not exists snapshots (
             aggregate_type text not null, aggregate_id text not null,
             last_sequence bigint check (last_sequence >= 0) not null,
             current_snapshot bigint check (current_snapshot >= 0) not null,
             payload json not null,
             primary key (aggregate_type, aggregate_id, last_sequence));",
    )
    .execute(&pool)
    .await?;
    let registry = Arc::new(Registry::default());
    let state = Baseline {
        pool,
        services: Arc::new(DomainServices::new(registry.clone(), Arc::new(SystemClock))),
        registry,
        numbers: Arc::new(AtomicU64::new(0)),
    };
    let app = Router::new()
        .route("/ready", get(|| async { "ok" }))
        .route("/api/v1/suppliers", post(suppliers))
        .route("/api/v1/products", post(products))
        .route("/api/v1/customers", post(customers))
        .route("/api/v1/purchase-orders", post(po_create))
        .route("/api/v1/purchase-orders/{id}/{action}", post(po_action))
        .route("/api/v1/sales-orders", post(so_create))
        .route("/api/v1/sales-orders/{id}/{action}", post(so_action))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(bind).await?;
    axum::serve(listener, app).await?;
    Ok(())
}

/// The baseline server as a process of its own (`oms bench --serve-baseline`), so that it
/// does not share the load client's runtime, as the service does not.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
}

impl Server {
    /// Starts `oms bench --serve-baseline` over `database_url` and waits until it answers.
    pub async fn start(oms: &FsPath, database_url: &str) -> anyhow::Result<Self> {
        let port = crate::procs::free_port()?;
        let child = Command::new(oms)
            .args(["bench", "--serve-baseline", &format!("127.0.0.1:{port}")])
            .env("DATABASE_URL", database_url)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?;
        let mut server = Self {
            child,
            base: format!("http://127.0.0.1:{port}"),
        };
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = http.get(format!("{}/ready", server.base)).send().await {
                if r.status().is_success() {
                    return Ok(server);
                }
            }
            if let Some(status) = server.child.try_wait()? {
                anyhow::bail!("the baseline server exited ({status})");
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the baseline server did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Its peak resident set so far, MB.
    pub fn peak_rss_mb(&self) -> Option<f64> {
        crate::procs::peak_rss_mb(self.child.id())
    }

    /// The process id (for its CPU time).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
