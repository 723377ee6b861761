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

use crate::order::ClaimStatus;
use crate::values::{LotNumber, Weight, WeightUnit};

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

/// What a purchase claim needs to know of the sales claim it passes on to the supplier.
#[derive(Debug, Clone, PartialEq)]
pub struct SalesClaimSummary {
    /// The sales order the claim is on.
    pub sales_order_id: Uuid,
    /// Open, accepted or rejected (a rejected claim is not passed on).
    pub status: ClaimStatus,
    /// The `source_purchase_order_id` of every sales line the claim names (lines without a
    /// source are left out): a purchase claim passes it on only from one of these orders.
    pub source_purchase_order_ids: Vec<Uuid>,
}

/// What a shipment needs to know of a received lot.
#[derive(Debug, Clone, PartialEq)]
pub struct LotSummary {
    /// The purchase order it was received on.
    pub purchase_order_id: Uuid,
    /// The supplier it came from.
    pub supplier_id: Uuid,
    /// The supplier's lot number.
    pub lot_number: LotNumber,
    /// The weight received of it. A shipment of more than this is refused at once; whether
    /// what is left after other shipments covers it is the store's to enforce, in the append
    /// transaction.
    pub received_weight: Weight,
    /// The unit the lot was received in (its purchase order's); a shipment in another unit is
    /// refused.
    pub weight_unit: WeightUnit,
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

    /// The sales claim with `claim_id` in this tenant, or `None` if there is none.
    ///
    /// A sales order's `ClaimRaised` event claims the unique key
    /// ([`SALES_CLAIM_SCOPE`](crate::sales_order::SALES_CLAIM_SCOPE), claim id), whose holder
    /// is the sales order: an implementation over the event store finds the order there and
    /// folds it.
    async fn sales_claim(&self, claim_id: Uuid) -> Result<Option<SalesClaimSummary>, LookupError>;

    /// The lot with `lot_id` received in this tenant, or `None` if there is none.
    ///
    /// A purchase order's `ReceiptRecorded` event claims the unique key
    /// ([`LOT_ID_SCOPE`](crate::purchase_order::LOT_ID_SCOPE), lot id) for each lot, whose
    /// holder is the purchase order: an implementation over the event store finds the order
    /// there and folds it.
    async fn lot(&self, lot_id: Uuid) -> Result<Option<LotSummary>, LookupError>;

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
    /// Known sales claims.
    sales_claims: HashMap<Uuid, SalesClaimSummary>,
    /// Known lots.
    lots: HashMap<Uuid, LotSummary>,
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

    /// Registers a sales claim.
    #[must_use]
    pub fn with_sales_claim(mut self, claim_id: Uuid, summary: SalesClaimSummary) -> Self {
        self.sales_claims.insert(claim_id, summary);
        self
    }

    /// Registers a received lot.
    #[must_use]
    pub fn with_lot(mut self, lot_id: Uuid, summary: LotSummary) -> Self {
        self.lots.insert(lot_id, summary);
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

    async fn sales_claim(&self, claim_id: Uuid) -> Result<Option<SalesClaimSummary>, LookupError> {
        self.check()?;
        Ok(self.sales_claims.get(&claim_id).cloned())
    }

    async fn lot(&self, lot_id: Uuid) -> Result<Option<LotSummary>, LookupError> {
        self.check()?;
        Ok(self.lots.get(&lot_id).cloned())
    }
}
