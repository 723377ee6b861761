//! What aggregates may consult while deciding: lookups of other aggregates and the date.
//!
//! The domain defines these traits; oms-store implements them over the event store, inside a
//! command's own transaction.
//! [`InMemoryLookups`] and [`FixedClock`] serve the domain's own tests and examples.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::Arc;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The five kinds of reference data an order can point at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReferenceType {
    /// A supplier (on purchase orders).
    Supplier,
    /// A customer (on sales orders).
    Customer,
    /// A product (on order lines).
    Product,
    /// A packing plant.
    Plant,
    /// A carrier.
    Carrier,
}

impl ReferenceType {
    /// Every kind.
    pub const ALL: &'static [ReferenceType] = &[
        Self::Supplier,
        Self::Customer,
        Self::Product,
        Self::Plant,
        Self::Carrier,
    ];

    /// The aggregate type name of this kind in the event store: "supplier", ...
    pub fn aggregate_type(&self) -> &'static str {
        match self {
            Self::Supplier => "supplier",
            Self::Customer => "customer",
            Self::Product => "product",
            Self::Plant => "plant",
            Self::Carrier => "carrier",
        }
    }
}

impl fmt::Display for ReferenceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.aggregate_type())
    }
}

/// What the rules need to know about a reference: whether it may be used.
#[derive(Debug, Clone, PartialEq)]
pub struct ReferenceSummary {
    /// Inactive references stay readable but cannot be put on new orders or lines.
    pub active: bool,
}

/// A lookup failed for infrastructure reasons (database down, timeout).
#[derive(Debug, Clone, thiserror::Error)]
#[error("{0}")]
pub struct LookupError(pub String);

/// Lookups of other aggregates in the same tenant (the implementation is tenant-scoped).
#[async_trait::async_trait]
pub trait Lookups: Send + Sync {
    /// The reference of `kind` with `id`, or `None` if there is none in this tenant.
    async fn reference(
        &self,
        kind: ReferenceType,
        id: Uuid,
    ) -> Result<Option<ReferenceSummary>, LookupError>;

    /// Whether a purchase order with `id` exists in this tenant.
    async fn purchase_order_exists(&self, id: Uuid) -> Result<bool, LookupError>;

    /// Announces the lookups a command is about to make, so that an implementation over a
    /// database can answer all of them in one round trip instead of one each (a create with
    /// many lines checks many products). The answers still come from [`Lookups::reference`]
    /// and [`Lookups::purchase_order_exists`]; an implementation without batching ignores it.
    async fn prefetch(
        &self,
        _references: &[(ReferenceType, Uuid)],
        _purchase_orders: &[Uuid],
    ) -> Result<(), LookupError> {
        Ok(())
    }
}

/// Today's date, so that "not in the future" rules can be tested.
pub trait Clock: Send + Sync {
    /// The current date.
    fn today(&self) -> NaiveDate;
}

/// The real clock: today's date in UTC.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn today(&self) -> NaiveDate {
        chrono::Utc::now().date_naive()
    }
}

/// A clock stopped at one date, for tests.
#[derive(Debug, Clone, Copy)]
pub struct FixedClock(pub NaiveDate);

impl Clock for FixedClock {
    fn today(&self) -> NaiveDate {
        self.0
    }
}

/// What every aggregate's `handle` may consult. Cheap to clone.
#[derive(Clone)]
pub struct DomainServices {
    /// Lookups of other aggregates.
    lookups: Arc<dyn Lookups>,
    /// Source of today's date.
    clock: Arc<dyn Clock>,
}

impl DomainServices {
    /// Services from a lookup implementation and a clock.
    pub fn new(lookups: Arc<dyn Lookups>, clock: Arc<dyn Clock>) -> Self {
        Self { lookups, clock }
    }

    /// The lookups.
    pub fn lookups(&self) -> &dyn Lookups {
        self.lookups.as_ref()
    }

    /// Today's date.
    pub fn today(&self) -> NaiveDate {
        self.clock.today()
    }
}

impl fmt::Debug for DomainServices {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DomainServices")
            .field("today", &self.today())
            .finish_non_exhaustive()
    }
}

/// In-memory [`Lookups`] for tests and examples: a registry of ids and their active flag.
#[derive(Debug, Clone, Default)]
pub struct InMemoryLookups {
    /// Known references and whether each is active.
    references: HashMap<(ReferenceType, Uuid), bool>,
    /// Known purchase orders.
    purchase_orders: HashSet<Uuid>,
    /// When set, every lookup fails with this message (to test `Unavailable`).
    failure: Option<String>,
}

impl InMemoryLookups {
    /// An empty registry.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a reference of `kind` with `id`, active or not.
    #[must_use]
    pub fn with_reference(mut self, kind: ReferenceType, id: Uuid, active: bool) -> Self {
        self.references.insert((kind, id), active);
        self
    }

    /// Registers a purchase order.
    #[must_use]
    pub fn with_purchase_order(mut self, id: Uuid) -> Self {
        self.purchase_orders.insert(id);
        self
    }

    /// Makes every lookup fail with `message`, as a database outage would.
    #[must_use]
    pub fn failing(mut self, message: impl Into<String>) -> Self {
        self.failure = Some(message.into());
        self
    }

    /// The configured failure, if any.
    fn check(&self) -> Result<(), LookupError> {
        match &self.failure {
            Some(message) => Err(LookupError(message.clone())),
            None => Ok(()),
        }
    }
}

#[async_trait::async_trait]
impl Lookups for InMemoryLookups {
    async fn reference(
        &self,
        kind: ReferenceType,
        id: Uuid,
    ) -> Result<Option<ReferenceSummary>, LookupError> {
        self.check()?;
        Ok(self
            .references
            .get(&(kind, id))
            .map(|&active| ReferenceSummary { active }))
    }

    async fn purchase_order_exists(&self, id: Uuid) -> Result<bool, LookupError> {
        self.check()?;
        Ok(self.purchase_orders.contains(&id))
    }
}
