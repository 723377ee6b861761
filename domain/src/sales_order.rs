//! The sales order: selling a load to a customer, often the load bought on a purchase order.
//!
//! ```text
//! draft ──confirm──▶ confirmed ──ship──▶ shipped ──deliver──▶ delivered ──invoice──▶ invoiced ──close──▶ closed
//! draft/confirmed ──cancel(reason)──▶ cancelled
//! ```
//!
//! Amount due is the ordered total until shipped, then the shipped total (each shipped
//! line's weight × price, rounded to cents), which becomes the invoiced amount. Payments
//! are recorded against the invoice.
//!
//! Once delivered, the customer may claim (short weight, temperature, ...); an accepted
//! claim credits the order under a credit note number (`CN-000001`, … unless given, unique
//! per tenant). `outstanding = amount due − credits − payments + refunds`; while it is below
//! zero we refund the difference. Closing needs nothing outstanding and no open claim.
//!
//! Shipment lines may name the received lots they ship (by lot id); the weights per lot
//! travel in the `Shipped` event, where the store checks that no lot ships more than was
//! received, across every order of the tenant.
//!
//! Line types have the same names as the purchase order's ([`NewLine`], [`LinePatch`],
//! [`OrderLine`]) and add `source_purchase_order_id`, the PO that supplies the line.

use chrono::NaiveDate;
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::changes::{diff, Changes};
use crate::error::DomainError;
use crate::order::{
    accepted_amount, check_dates, check_delivery_date, check_line_count, check_new_claim,
    check_note_count, check_payment, check_refund, has_open_claim, open_claim, repeated_positions,
    sum_weights, Checks, Claimable, Settlement,
};
use crate::services::{DomainServices, ReferenceType};
use crate::values::{
    choice, patchable, CreditNoteNumber, Currency, InvoiceNumber, LongText, LotNumber, Money,
    NoteText, NumberSeries, OrderNumber, PaymentMethod, PaymentStatus, Quantity, Reason, ShortText,
    UnitPrice, Weight, WeightUnit,
};
use crate::{LotMovement, UniqueKeyChange, UniqueKeys};

pub use crate::order::{
    Claim, ClaimLine, ClaimReason, ClaimStatus, NewClaim, NewPayment, NewRefund, Note, Payment,
    Refund, MAX_CLAIMS_PER_ORDER, MAX_LINES_PER_ORDER, MAX_LOTS_PER_LINE, MAX_NOTES_PER_ORDER,
    MAX_REFUNDS_PER_ORDER,
};

/// Aggregate type of sales orders in the event store.
pub const SALES_ORDER_TYPE: &str = "sales_order";

/// Uniqueness scope of sales order numbers, the client's own and assigned ones alike.
pub const SALES_ORDER_NUMBER_SCOPE: &str = NumberSeries::SALES_ORDER.scope;

/// Uniqueness scope of invoice numbers, the client's own and assigned ones alike.
pub const INVOICE_NUMBER_SCOPE: &str = NumberSeries::INVOICE.scope;

/// Uniqueness scope of credit note numbers, the client's own and assigned ones alike.
pub const CREDIT_NOTE_NUMBER_SCOPE: &str = NumberSeries::CREDIT_NOTE.scope;

/// Uniqueness scope of sales claim ids: the key is the claim id and its holder the sales
/// order, so the store finds a claim's order from the claim id alone (as a purchase claim
/// passing it on to the supplier needs), and a claim id names one claim in the tenant.
pub const SALES_CLAIM_SCOPE: &str = "sales_claim_id";

choice!(
    /// Where a sales order is in its life.
    SalesOrderStatus {
        /// Being written; header and lines may change.
        Draft => "draft",
        /// Confirmed to the customer.
        Confirmed => "confirmed",
        /// On its way.
        Shipped => "shipped",
        /// Arrived at the customer.
        Delivered => "delivered",
        /// Invoiced; payments may be recorded.
        Invoiced => "invoiced",
        /// Invoiced and paid; nothing more happens.
        Closed => "closed",
        /// Called off before shipping.
        Cancelled => "cancelled",
    }
);

patchable! {
    /// What a sales order is about, apart from its lines.
    SalesOrderHeader;
    /// PATCH body for a draft sales order's header.
    SalesOrderHeaderPatch;
    required {
        /// Who we sell to; must be an active customer.
        customer_id: Uuid,
        /// When the order was placed.
        order_date: NaiveDate,
        /// The one currency of every amount on the order (default USD).
        #[serde(default)]
        currency: Currency,
        /// The unit of every weight and price on the order (default LB).
        #[serde(default)]
        weight_unit: WeightUnit,
    }
    optional {
        /// The customer's own purchase order number.
        customer_po_number: ShortText,
        /// The plant the load ships from; must be an active plant.
        plant_id: Uuid,
        /// The carrier that moves it; must be an active carrier.
        carrier_id: Uuid,
        /// When it is picked up.
        pickup_date: NaiveDate,
        /// When it is delivered; not before the order date.
        delivery_date: NaiveDate,
        /// Free notes on the header.
        notes: LongText,
    }
    extra {}
}

/// A line to put on a sales order.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct NewLine {
    /// Chosen by the caller; unique within the order.
    pub line_id: Uuid,
    /// What is sold; must be an active product.
    pub product_id: Uuid,
    /// How much, in the order's weight unit.
    pub weight: Weight,
    /// Price per weight unit.
    pub price_per_unit: UnitPrice,
    /// Cases or pieces, if counted.
    #[serde(default)]
    pub quantity: Option<Quantity>,
    /// Free description.
    #[serde(default)]
    pub description: Option<LongText>,
    /// The purchase order that supplies this line (back-to-back trading); must exist.
    #[serde(default)]
    pub source_purchase_order_id: Option<Uuid>,
}

/// PATCH body for a line of a draft sales order.
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct LinePatch {
    /// New product; must be active.
    #[serde(
        default,
        with = "crate::values::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub product_id: Option<Uuid>,
    /// New weight.
    #[serde(
        default,
        with = "crate::values::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub weight: Option<Weight>,
    /// New price per weight unit.
    #[serde(
        default,
        with = "crate::values::not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub price_per_unit: Option<UnitPrice>,
    /// New quantity; `null` clears it.
    #[serde(
        default,
        with = "crate::values::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub quantity: Option<Option<Quantity>>,
    /// New description; `null` clears it.
    #[serde(
        default,
        with = "crate::values::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub description: Option<Option<LongText>>,
    /// New source purchase order; `null` clears it.
    #[serde(
        default,
        with = "crate::values::double_option",
        skip_serializing_if = "Option::is_none"
    )]
    pub source_purchase_order_id: Option<Option<Uuid>>,
}

/// A sales line as ordered, with its amount (weight × price, rounded half-up to cents).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
#[schemars(rename = "SalesOrderOrderedLine")]
pub struct OrderLine {
    /// The line's id, unique within the order.
    pub line_id: Uuid,
    /// What is sold.
    pub product_id: Uuid,
    /// Ordered weight.
    pub weight: Weight,
    /// Price per weight unit.
    pub price_per_unit: UnitPrice,
    /// Cases or pieces, if counted.
    pub quantity: Option<Quantity>,
    /// Free description.
    pub description: Option<LongText>,
    /// The purchase order that supplies this line, if any.
    pub source_purchase_order_id: Option<Uuid>,
    /// Ordered weight × price, rounded half-up to cents.
    pub amount: Money,
}

impl OrderLine {
    /// The line a [`NewLine`] describes, with its amount computed.
    pub fn new(line: NewLine) -> Self {
        Self {
            amount: Money::line_amount(&line.weight, &line.price_per_unit),
            line_id: line.line_id,
            product_id: line.product_id,
            weight: line.weight,
            price_per_unit: line.price_per_unit,
            quantity: line.quantity,
            description: line.description,
            source_purchase_order_id: line.source_purchase_order_id,
        }
    }

    /// A copy with the patch applied and the amount recomputed.
    pub fn patched(&self, patch: &LinePatch) -> Self {
        let weight = patch.weight.unwrap_or(self.weight);
        let price_per_unit = patch.price_per_unit.unwrap_or(self.price_per_unit);
        Self {
            line_id: self.line_id,
            product_id: patch.product_id.unwrap_or(self.product_id),
            weight,
            price_per_unit,
            quantity: patch.quantity.unwrap_or(self.quantity),
            description: patch
                .description
                .clone()
                .unwrap_or_else(|| self.description.clone()),
            source_purchase_order_id: patch
                .source_purchase_order_id
                .unwrap_or(self.source_purchase_order_id),
            amount: Money::line_amount(&weight, &price_per_unit),
        }
    }
}

/// A line as the order keeps it: as ordered, plus what was shipped.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct SalesOrderLine {
    /// The line as ordered.
    #[serde(flatten)]
    pub line: OrderLine,
    /// Weight shipped; `None` if the line was not shipped (or not yet).
    pub shipped_weight: Option<Weight>,
    /// Quantity shipped, if counted.
    pub shipped_quantity: Option<Quantity>,
    /// Shipped weight × price, rounded half-up to cents.
    pub shipped_amount: Option<Money>,
    /// The lots shipped on this line.
    #[serde(default)]
    pub lots: Vec<ShippedLot>,
}

/// The sales order to create.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct NewSalesOrder {
    /// Unique per tenant (the store enforces it); assigned by the service when not given.
    pub order_number: OrderNumber,
    /// The header.
    pub header: SalesOrderHeader,
    /// The lines; may be empty while in draft.
    pub lines: Vec<NewLine>,
}

/// One line of a shipment: what the scale said.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct ShipLineInput {
    /// The order line shipped.
    pub line_id: Uuid,
    /// Weight shipped.
    pub weight: Weight,
    /// Cases or pieces shipped, if counted.
    #[serde(default)]
    pub quantity: Option<Quantity>,
    /// The received lots shipped on this line; when given, their weights sum to `weight`.
    #[serde(default)]
    pub lots: Vec<ShipLotInput>,
}

/// A lot shipped on a line: a lot received on a purchase order of the tenant, by its id.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct ShipLotInput {
    /// The lot (its id from the receipt).
    pub lot_id: Uuid,
    /// How much of the line's weight is of this lot.
    pub weight: Weight,
}

/// A shipped lot, with what a trace needs to know of it without another lookup.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct ShippedLot {
    /// The lot's id. The store sums shipped weights per lot id to refuse shipping more of a
    /// lot than was received.
    pub lot_id: Uuid,
    /// The weight shipped of the lot.
    pub weight: Weight,
    /// The supplier's lot number.
    pub lot_number: LotNumber,
    /// The purchase order it was received on.
    pub purchase_order_id: Uuid,
    /// The supplier it came from.
    pub supplier_id: Uuid,
}

/// One line of a recorded shipment, with its amount.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct ShippedLine {
    /// The order line shipped.
    pub line_id: Uuid,
    /// Weight shipped.
    pub weight: Weight,
    /// Quantity shipped, if counted.
    pub quantity: Option<Quantity>,
    /// Shipped weight × price, rounded half-up to cents.
    pub shipped_amount: Money,
    /// The lots shipped on the line (absent from shipments without lots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lots: Vec<ShippedLot>,
}

/// The recorded shipment.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct Shipment {
    /// When it left.
    pub shipped_on: NaiveDate,
    /// Who carried it.
    pub carrier_id: Option<Uuid>,
    /// The carrier's release number.
    pub carrier_release_number: Option<ShortText>,
    /// What was shipped.
    pub lines: Vec<ShippedLine>,
}

/// The invoice sent to the customer.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct Invoice {
    /// Unique per tenant.
    pub invoice_number: InvoiceNumber,
    /// Date of the invoice.
    pub invoice_date: NaiveDate,
    /// When payment is due; not before the invoice date.
    pub due_date: NaiveDate,
    /// The shipped total.
    pub invoiced_amount: Money,
}

/// What can be asked of a sales order.
#[derive(Clone, Debug, PartialEq)]
pub enum SalesOrderCommand {
    /// Create it in draft.
    Create(NewSalesOrder),
    /// Change the header (draft only).
    ChangeHeader(SalesOrderHeaderPatch),
    /// Add a line (draft only).
    AddLine(NewLine),
    /// Change a line (draft only).
    ChangeLine {
        /// The line to change.
        line_id: Uuid,
        /// What to change.
        patch: LinePatch,
    },
    /// Remove a line (draft only).
    RemoveLine {
        /// The line to remove.
        line_id: Uuid,
    },
    /// Confirm to the customer (draft, at least one line).
    Confirm,
    /// Record the shipment (confirmed).
    Ship {
        /// When it left.
        shipped_on: NaiveDate,
        /// Who carries it; must be an active carrier.
        carrier_id: Option<Uuid>,
        /// The carrier's release number.
        carrier_release_number: Option<ShortText>,
        /// What was shipped, per line.
        lines: Vec<ShipLineInput>,
    },
    /// Record delivery (shipped; not before the shipping date).
    Deliver {
        /// When it arrived.
        delivered_on: NaiveDate,
    },
    /// Invoice the shipped total (delivered).
    Invoice {
        /// The invoice number (assigned by the service when not given).
        invoice_number: InvoiceNumber,
        /// Date of the invoice.
        invoice_date: NaiveDate,
        /// When payment is due; not before the invoice date.
        due_date: NaiveDate,
    },
    /// Record a payment from the customer (invoiced).
    RecordPayment(NewPayment),
    /// Add a note (any state).
    AddNote {
        /// Chosen by the caller; unique within the order.
        note_id: Uuid,
        /// What it says.
        text: NoteText,
    },
    /// Close (invoiced, nothing outstanding, no open claim).
    Close,
    /// Raise the customer's claim (delivered or invoiced).
    RaiseClaim(NewClaim),
    /// Accept an open claim: the customer is credited `accepted_amount` (default: the
    /// claimed amount) under a credit note.
    AcceptClaim {
        /// The claim.
        claim_id: Uuid,
        /// What is credited; above zero, not above the claimed amount.
        accepted_amount: Option<Money>,
        /// The credit note's number (assigned by the service when not given); unique per
        /// tenant.
        credit_note_number: CreditNoteNumber,
    },
    /// Reject an open claim.
    RejectClaim {
        /// The claim.
        claim_id: Uuid,
        /// Why.
        reason: Reason,
    },
    /// Record money returned to the customer (only while more was paid than is owed).
    RecordRefund(NewRefund),
    /// Call off (draft or confirmed).
    Cancel {
        /// Why.
        reason: Reason,
    },
}

/// What happened to a sales order. Each carries the derived facts a view needs.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub enum SalesOrderEvent {
    /// Created in draft.
    Created {
        /// The order number.
        order_number: OrderNumber,
        /// The header.
        header: SalesOrderHeader,
        /// The lines, with amounts.
        lines: Vec<OrderLine>,
        /// Sum of line amounts.
        total: Money,
    },
    /// The header changed.
    HeaderChanged {
        /// The header fields that changed.
        changes: Changes,
        /// The whole header after the change.
        header: SalesOrderHeader,
    },
    /// A line was added.
    LineAdded {
        /// The new line.
        line: OrderLine,
        /// The order total after it.
        total: Money,
    },
    /// A line changed.
    LineChanged {
        /// The line.
        line_id: Uuid,
        /// The line fields that changed (including `amount`).
        changes: Changes,
        /// The whole line after the change.
        line: OrderLine,
        /// The order total after it.
        total: Money,
    },
    /// A line was removed.
    LineRemoved {
        /// The line as it was.
        line: OrderLine,
        /// The order total after it.
        total: Money,
    },
    /// Confirmed to the customer.
    Confirmed {
        /// The total confirmed.
        total: Money,
    },
    /// The load left.
    Shipped {
        /// When.
        shipped_on: NaiveDate,
        /// Who carries it.
        carrier_id: Option<Uuid>,
        /// The carrier's release number.
        carrier_release_number: Option<ShortText>,
        /// What was shipped, with amounts.
        lines: Vec<ShippedLine>,
        /// Sum of shipped amounts.
        shipped_total: Money,
        /// What the customer now owes (the shipped total).
        amount_due: Money,
    },
    /// The load arrived.
    Delivered {
        /// When.
        delivered_on: NaiveDate,
    },
    /// Invoiced.
    Invoiced {
        /// The invoice number.
        invoice_number: InvoiceNumber,
        /// Date of the invoice.
        invoice_date: NaiveDate,
        /// When payment is due.
        due_date: NaiveDate,
        /// The amount invoiced (the shipped total).
        invoiced_amount: Money,
    },
    /// A payment was received.
    PaymentRecorded {
        /// The payment's id.
        payment_id: Uuid,
        /// The amount.
        amount: Money,
        /// When the money moved.
        paid_on: NaiveDate,
        /// How.
        method: PaymentMethod,
        /// Bank or cheque reference.
        reference: Option<ShortText>,
        /// Sum of all payments after this one.
        amount_paid: Money,
        /// What is still outstanding after it.
        outstanding: Money,
        /// Payment status after it.
        payment_status: PaymentStatus,
    },
    /// A note was added.
    NoteAdded {
        /// The note's id.
        note_id: Uuid,
        /// What it says.
        text: NoteText,
    },
    /// Closed.
    Closed,
    /// Called off.
    Cancelled {
        /// Why.
        reason: Reason,
        /// The status it was cancelled from.
        from_status: SalesOrderStatus,
    },
    /// The customer raised a claim.
    ClaimRaised {
        /// The claim's id.
        claim_id: Uuid,
        /// Why.
        reason: ClaimReason,
        /// What is claimed, per line.
        lines: Vec<ClaimLine>,
        /// Free notes.
        notes: Option<LongText>,
        /// The sum of the lines' amounts.
        claimed_amount: Money,
    },
    /// A claim was accepted: the customer is credited under a credit note.
    ClaimAccepted {
        /// The claim's id.
        claim_id: Uuid,
        /// What was credited.
        accepted_amount: Money,
        /// The credit note's number.
        credit_note_number: CreditNoteNumber,
        /// Sum of accepted claims after this one.
        credits: Money,
        /// What is outstanding after it (negative: we owe the customer a refund).
        outstanding: Money,
        /// Payment status after it.
        payment_status: PaymentStatus,
    },
    /// A claim was rejected.
    ClaimRejected {
        /// The claim's id.
        claim_id: Uuid,
        /// Why.
        reason: Reason,
    },
    /// Money was returned to the customer.
    RefundRecorded {
        /// The refund's id.
        refund_id: Uuid,
        /// The amount.
        amount: Money,
        /// When the money moved.
        refunded_on: NaiveDate,
        /// How.
        method: PaymentMethod,
        /// Bank or cheque reference.
        reference: Option<ShortText>,
        /// Sum of all refunds after this one.
        amount_refunded: Money,
        /// What is outstanding after it.
        outstanding: Money,
        /// Payment status after it.
        payment_status: PaymentStatus,
    },
}

impl SalesOrderEvent {
    /// What precedes the variant's name in the event type (`SalesOrderCreated`): the
    /// published event documents name the types the same way.
    pub const EVENT_PREFIX: &'static str = "SalesOrder";

    /// The current version of the variant named `variant` (1.0 for all so far). A function
    /// of the name, not of a value, so that the event documents can state it for every type.
    pub fn version_of(_variant: &str) -> &'static str {
        "1.0"
    }

    /// The variant name, which follows "SalesOrder" in the event type.
    fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "Created",
            Self::HeaderChanged { .. } => "HeaderChanged",
            Self::LineAdded { .. } => "LineAdded",
            Self::LineChanged { .. } => "LineChanged",
            Self::LineRemoved { .. } => "LineRemoved",
            Self::Confirmed { .. } => "Confirmed",
            Self::Shipped { .. } => "Shipped",
            Self::Delivered { .. } => "Delivered",
            Self::Invoiced { .. } => "Invoiced",
            Self::PaymentRecorded { .. } => "PaymentRecorded",
            Self::NoteAdded { .. } => "NoteAdded",
            Self::Closed => "Closed",
            Self::Cancelled { .. } => "Cancelled",
            Self::ClaimRaised { .. } => "ClaimRaised",
            Self::ClaimAccepted { .. } => "ClaimAccepted",
            Self::ClaimRejected { .. } => "ClaimRejected",
            Self::RefundRecorded { .. } => "RefundRecorded",
        }
    }
}

impl DomainEvent for SalesOrderEvent {
    fn event_type(&self) -> String {
        format!("{}{}", Self::EVENT_PREFIX, self.name())
    }

    fn event_version(&self) -> String {
        Self::version_of(self.name()).to_owned()
    }
}

impl UniqueKeys for SalesOrderEvent {
    fn unique_key_changes(&self) -> Vec<UniqueKeyChange> {
        match self {
            Self::Created { order_number, .. } => vec![UniqueKeyChange::Claim {
                scope: SALES_ORDER_NUMBER_SCOPE,
                key: order_number.as_str().to_owned(),
            }],
            Self::Invoiced { invoice_number, .. } => vec![UniqueKeyChange::Claim {
                scope: INVOICE_NUMBER_SCOPE,
                key: invoice_number.as_str().to_owned(),
            }],
            Self::ClaimRaised { claim_id, .. } => vec![UniqueKeyChange::Claim {
                scope: SALES_CLAIM_SCOPE,
                key: claim_id.to_string(),
            }],
            Self::ClaimAccepted {
                credit_note_number, ..
            } => vec![UniqueKeyChange::Claim {
                scope: CREDIT_NOTE_NUMBER_SCOPE,
                key: credit_note_number.as_str().to_owned(),
            }],
            _ => Vec::new(),
        }
    }

    fn lot_movements(&self) -> Vec<LotMovement> {
        match self {
            Self::Shipped { lines, .. } => lines
                .iter()
                .flat_map(|line| &line.lots)
                .map(|lot| LotMovement {
                    lot_id: lot.lot_id,
                    received: rust_decimal::Decimal::ZERO,
                    shipped: lot.weight.value(),
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A sales order's state, rebuilt from its events.
#[derive(Default, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct SalesOrder {
    /// `None` until created.
    pub status: Option<SalesOrderStatus>,
    /// The order number.
    pub order_number: Option<OrderNumber>,
    /// The header.
    pub header: Option<SalesOrderHeader>,
    /// The lines, in the order they were added.
    pub lines: Vec<SalesOrderLine>,
    /// Sum of ordered line amounts.
    pub total: Money,
    /// The shipment, once shipped.
    pub shipment: Option<Shipment>,
    /// Sum of shipped line amounts; `None` until shipped.
    pub shipped_total: Option<Money>,
    /// When it was delivered.
    pub delivered_on: Option<NaiveDate>,
    /// The invoice, once invoiced.
    pub invoice: Option<Invoice>,
    /// Sum of payments.
    pub amount_paid: Money,
    /// Payments, in order.
    pub payments: Vec<Payment>,
    /// Notes, in order.
    pub notes: Vec<Note>,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<Reason>,
    /// The customer's claims, in the order raised.
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// Sum of accepted claims' amounts.
    #[serde(default)]
    pub credits: Money,
    /// Refunds to the customer, in order.
    #[serde(default)]
    pub refunds: Vec<Refund>,
    /// Sum of refunds.
    #[serde(default)]
    pub amount_refunded: Money,
}

impl SalesOrder {
    /// Whether it has been created.
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }

    /// What the customer owes: the ordered total until shipped, then the shipped total
    /// (which is the invoiced amount once invoiced).
    pub fn amount_due(&self) -> Money {
        match (&self.invoice, self.shipped_total) {
            (Some(invoice), _) => invoice.invoiced_amount,
            (None, Some(shipped)) => shipped,
            (None, None) => self.total,
        }
    }

    /// Amount due − credits − payments + refunds (negative if a credit after payment left
    /// it overpaid: we owe the customer a refund).
    pub fn outstanding(&self) -> Money {
        self.settlement().outstanding()
    }

    /// Unpaid, partial, paid or overpaid: see [`PaymentStatus::of`].
    pub fn payment_status(&self) -> PaymentStatus {
        self.settlement().payment_status()
    }

    /// The money as it stands.
    fn settlement(&self) -> Settlement {
        Settlement {
            amount_due: self.amount_due(),
            credits: self.credits,
            amount_paid: self.amount_paid,
            refunded: self.amount_refunded,
        }
    }

    /// Whether a claim is still open (the order cannot close while one is).
    pub fn has_open_claim(&self) -> bool {
        has_open_claim(&self.claims)
    }

    /// The claim with `claim_id`, if any.
    pub fn claim(&self, claim_id: Uuid) -> Option<&Claim> {
        self.claims.iter().find(|c| c.claim_id == claim_id)
    }

    /// The line with `line_id`, if any.
    pub fn line(&self, line_id: Uuid) -> Option<&SalesOrderLine> {
        self.lines.iter().find(|l| l.line.line_id == line_id)
    }

    /// The current status, or `NotFound` if not created.
    fn current_status(&self) -> Result<SalesOrderStatus, DomainError> {
        self.status.ok_or(DomainError::NotFound)
    }

    /// The current status if it is one of `allowed`, else `NotFound` or `NotAllowed`.
    fn require(
        &self,
        action: &'static str,
        allowed: &[SalesOrderStatus],
    ) -> Result<SalesOrderStatus, DomainError> {
        let status = self.current_status()?;
        if allowed.contains(&status) {
            Ok(status)
        } else {
            Err(DomainError::NotAllowed {
                action,
                status: status.to_string(),
            })
        }
    }

    /// The header of a created order.
    fn current_header(&self) -> Result<&SalesOrderHeader, DomainError> {
        self.header.as_ref().ok_or(DomainError::NotFound)
    }

    /// Decides what a command leads to, without changing anything: every rule lives here.
    pub async fn decide(
        &self,
        command: SalesOrderCommand,
        services: &DomainServices,
    ) -> Result<Vec<SalesOrderEvent>, DomainError> {
        use SalesOrderStatus as S;
        let event = match command {
            SalesOrderCommand::Create(new) => self.decide_create(new, services).await?,
            SalesOrderCommand::ChangeHeader(patch) => {
                self.require("change the header of", &[S::Draft])?;
                let before = self.current_header()?;
                let header = before.patched(&patch);
                let changes = diff(before, &header);
                if changes.is_empty() {
                    return Ok(Vec::new());
                }
                let mut checks = Checks::new();
                if header.customer_id != before.customer_id {
                    checks
                        .reference(
                            services,
                            ReferenceType::Customer,
                            header.customer_id,
                            "customer_id",
                        )
                        .await?;
                }
                if header.plant_id != before.plant_id {
                    if let Some(id) = header.plant_id {
                        checks
                            .reference(services, ReferenceType::Plant, id, "plant_id")
                            .await?;
                    }
                }
                if header.carrier_id != before.carrier_id {
                    if let Some(id) = header.carrier_id {
                        checks
                            .reference(services, ReferenceType::Carrier, id, "carrier_id")
                            .await?;
                    }
                }
                check_delivery_date(&mut checks, header.order_date, header.delivery_date);
                check_header_dates(&mut checks, &header);
                checks.finish()?;
                SalesOrderEvent::HeaderChanged { changes, header }
            }
            SalesOrderCommand::AddLine(new) => {
                self.require("add a line to", &[S::Draft])?;
                check_line_count(self.lines.len() + 1)?;
                let mut checks = Checks::new();
                checks.require(
                    self.line(new.line_id).is_none(),
                    "line_id",
                    "a line with this id is already on the order",
                );
                check_line_references(
                    &mut checks,
                    services,
                    Some(new.product_id),
                    new.source_purchase_order_id,
                    "",
                )
                .await?;
                checks.finish()?;
                let line = OrderLine::new(new);
                SalesOrderEvent::LineAdded {
                    total: self.total + line.amount,
                    line,
                }
            }
            SalesOrderCommand::ChangeLine { line_id, patch } => {
                self.require("change a line of", &[S::Draft])?;
                let before = &self
                    .line(line_id)
                    .ok_or(DomainError::LineNotFound(line_id))?
                    .line;
                let line = before.patched(&patch);
                let changes = diff(before, &line);
                if changes.is_empty() {
                    return Ok(Vec::new());
                }
                let mut checks = Checks::new();
                check_line_references(
                    &mut checks,
                    services,
                    Some(line.product_id).filter(|&id| id != before.product_id),
                    line.source_purchase_order_id
                        .filter(|&id| Some(id) != before.source_purchase_order_id),
                    "",
                )
                .await?;
                checks.finish()?;
                SalesOrderEvent::LineChanged {
                    line_id,
                    changes,
                    total: self.total - before.amount + line.amount,
                    line,
                }
            }
            SalesOrderCommand::RemoveLine { line_id } => {
                self.require("remove a line from", &[S::Draft])?;
                let line = self
                    .line(line_id)
                    .ok_or(DomainError::LineNotFound(line_id))?
                    .line
                    .clone();
                SalesOrderEvent::LineRemoved {
                    total: self.total - line.amount,
                    line,
                }
            }
            SalesOrderCommand::Confirm => {
                self.require("confirm", &[S::Draft])?;
                if self.lines.is_empty() {
                    return Err(DomainError::invalid(
                        "lines",
                        "the order needs at least one line to be confirmed",
                    ));
                }
                SalesOrderEvent::Confirmed { total: self.total }
            }
            SalesOrderCommand::Ship {
                shipped_on,
                carrier_id,
                carrier_release_number,
                lines,
            } => {
                self.require("ship", &[S::Confirmed])?;
                self.decide_shipment(
                    shipped_on,
                    carrier_id,
                    carrier_release_number,
                    lines,
                    services,
                )
                .await?
            }
            SalesOrderCommand::Deliver { delivered_on } => {
                self.require("deliver", &[S::Shipped])?;
                let mut checks = Checks::new();
                check_dates(&mut checks, [("delivered_on", Some(delivered_on))]);
                checks.finish()?;
                if self
                    .shipment
                    .as_ref()
                    .is_some_and(|s| delivered_on < s.shipped_on)
                {
                    return Err(DomainError::invalid(
                        "delivered_on",
                        "must not be before the shipping date",
                    ));
                }
                SalesOrderEvent::Delivered { delivered_on }
            }
            SalesOrderCommand::Invoice {
                invoice_number,
                invoice_date,
                due_date,
            } => {
                self.require("invoice", &[S::Delivered])?;
                let mut checks = Checks::new();
                check_dates(
                    &mut checks,
                    [
                        ("invoice_date", Some(invoice_date)),
                        ("due_date", Some(due_date)),
                    ],
                );
                checks.finish()?;
                if due_date < invoice_date {
                    return Err(DomainError::invalid(
                        "due_date",
                        "must not be before the invoice date",
                    ));
                }
                SalesOrderEvent::Invoiced {
                    invoice_number,
                    invoice_date,
                    due_date,
                    invoiced_amount: self.shipped_total.unwrap_or_default(),
                }
            }
            SalesOrderCommand::RecordPayment(payment) => {
                self.require("record a payment on", &[S::Invoiced])?;
                check_payment(
                    &payment,
                    self.outstanding(),
                    services.today(),
                    &self.payments,
                )?;
                let after = Settlement {
                    amount_paid: self.amount_paid + payment.amount,
                    ..self.settlement()
                };
                SalesOrderEvent::PaymentRecorded {
                    payment_id: payment.payment_id,
                    amount: payment.amount,
                    paid_on: payment.paid_on,
                    method: payment.method,
                    reference: payment.reference,
                    amount_paid: after.amount_paid,
                    outstanding: after.outstanding(),
                    payment_status: after.payment_status(),
                }
            }
            SalesOrderCommand::AddNote { note_id, text } => {
                self.current_status()?;
                check_note_count(self.notes.len())?;
                if self.notes.iter().any(|n| n.note_id == note_id) {
                    return Err(DomainError::invalid(
                        "note_id",
                        "a note with this id is already on the order",
                    ));
                }
                SalesOrderEvent::NoteAdded { note_id, text }
            }
            SalesOrderCommand::Close => {
                self.require("close", &[S::Invoiced])?;
                let outstanding = self.outstanding();
                if !outstanding.is_zero() {
                    return Err(DomainError::NotAllowedBecause {
                        action: "close",
                        reason: format!("{outstanding} is outstanding"),
                    });
                }
                if self.has_open_claim() {
                    return Err(DomainError::NotAllowedBecause {
                        action: "close",
                        reason: "a claim is still open".into(),
                    });
                }
                SalesOrderEvent::Closed
            }
            SalesOrderCommand::RaiseClaim(claim) => {
                self.require("raise a claim on", &[S::Delivered, S::Invoiced])?;
                let claimed_amount = check_new_claim(&claim, &self.claims, |line_id| {
                    let line = self.line(line_id).ok_or("no such line on this order")?;
                    match (line.shipped_amount, line.shipped_weight) {
                        (Some(amount), Some(weight)) => Ok(Claimable { amount, weight }),
                        _ => Err("the line has not been shipped"),
                    }
                })?;
                SalesOrderEvent::ClaimRaised {
                    claim_id: claim.claim_id,
                    reason: claim.reason,
                    lines: claim.lines,
                    notes: claim.notes,
                    claimed_amount,
                }
            }
            SalesOrderCommand::AcceptClaim {
                claim_id,
                accepted_amount: accepted,
                credit_note_number,
            } => {
                self.require("accept a claim on", &[S::Delivered, S::Invoiced])?;
                let claim = open_claim(&self.claims, claim_id, "accept the claim")?;
                let accepted_amount = accepted_amount(claim, accepted)?;
                if self
                    .claims
                    .iter()
                    .any(|c| c.credit_note_number.as_ref() == Some(&credit_note_number))
                {
                    return Err(DomainError::invalid(
                        "credit_note_number",
                        "is already the credit note of another claim on this order",
                    ));
                }
                let after = Settlement {
                    credits: self.credits + accepted_amount,
                    ..self.settlement()
                };
                SalesOrderEvent::ClaimAccepted {
                    claim_id,
                    accepted_amount,
                    credit_note_number,
                    credits: after.credits,
                    outstanding: after.outstanding(),
                    payment_status: after.payment_status(),
                }
            }
            SalesOrderCommand::RejectClaim { claim_id, reason } => {
                self.require("reject a claim on", &[S::Delivered, S::Invoiced])?;
                open_claim(&self.claims, claim_id, "reject the claim")?;
                SalesOrderEvent::ClaimRejected { claim_id, reason }
            }
            SalesOrderCommand::RecordRefund(refund) => {
                self.require("record a refund on", &[S::Invoiced])?;
                check_refund(&refund, self.outstanding(), services.today(), &self.refunds)?;
                let after = Settlement {
                    refunded: self.amount_refunded + refund.amount,
                    ..self.settlement()
                };
                SalesOrderEvent::RefundRecorded {
                    refund_id: refund.refund_id,
                    amount: refund.amount,
                    refunded_on: refund.refunded_on,
                    method: refund.method,
                    reference: refund.reference,
                    amount_refunded: after.refunded,
                    outstanding: after.outstanding(),
                    payment_status: after.payment_status(),
                }
            }
            SalesOrderCommand::Cancel { reason } => {
                let from_status = self.require("cancel", &[S::Draft, S::Confirmed])?;
                SalesOrderEvent::Cancelled {
                    reason,
                    from_status,
                }
            }
        };
        Ok(vec![event])
    }

    /// Create: customer, plant, carrier, every line's product and source purchase order
    /// must be usable, line ids distinct, and the delivery date not before the order date.
    async fn decide_create(
        &self,
        new: NewSalesOrder,
        services: &DomainServices,
    ) -> Result<SalesOrderEvent, DomainError> {
        if self.exists() {
            return Err(DomainError::AlreadyExists);
        }
        check_line_count(new.lines.len())?;
        let header = &new.header;
        let wanted: Vec<(ReferenceType, Uuid)> = [(ReferenceType::Customer, header.customer_id)]
            .into_iter()
            .chain(header.plant_id.map(|id| (ReferenceType::Plant, id)))
            .chain(header.carrier_id.map(|id| (ReferenceType::Carrier, id)))
            .chain(
                new.lines
                    .iter()
                    .map(|line| (ReferenceType::Product, line.product_id)),
            )
            .collect();
        let sources: Vec<Uuid> = new
            .lines
            .iter()
            .filter_map(|line| line.source_purchase_order_id)
            .collect();
        services.lookups().prefetch(&wanted, &sources).await?;
        let mut checks = Checks::new();
        checks
            .reference(
                services,
                ReferenceType::Customer,
                header.customer_id,
                "customer_id",
            )
            .await?;
        if let Some(id) = header.plant_id {
            checks
                .reference(services, ReferenceType::Plant, id, "plant_id")
                .await?;
        }
        if let Some(id) = header.carrier_id {
            checks
                .reference(services, ReferenceType::Carrier, id, "carrier_id")
                .await?;
        }
        check_delivery_date(&mut checks, header.order_date, header.delivery_date);
        check_header_dates(&mut checks, header);
        for i in repeated_positions(new.lines.iter().map(|l| l.line_id)) {
            checks.add(
                format!("lines[{i}].line_id"),
                "repeats an earlier line's id",
            );
        }
        for (i, line) in new.lines.iter().enumerate() {
            check_line_references(
                &mut checks,
                services,
                Some(line.product_id),
                line.source_purchase_order_id,
                &format!("lines[{i}]."),
            )
            .await?;
        }
        checks.finish()?;
        let lines: Vec<OrderLine> = new.lines.into_iter().map(OrderLine::new).collect();
        Ok(SalesOrderEvent::Created {
            order_number: new.order_number,
            header: new.header,
            total: lines.iter().map(|l| l.amount).sum(),
            lines,
        })
    }

    /// Ship: the carrier must be usable; lines named once each, all on the order.
    async fn decide_shipment(
        &self,
        shipped_on: NaiveDate,
        carrier_id: Option<Uuid>,
        carrier_release_number: Option<ShortText>,
        inputs: Vec<ShipLineInput>,
        services: &DomainServices,
    ) -> Result<SalesOrderEvent, DomainError> {
        let mut checks = Checks::new();
        if let Some(id) = carrier_id {
            checks
                .reference(services, ReferenceType::Carrier, id, "carrier_id")
                .await?;
        }
        if inputs.is_empty() {
            checks.add("lines", "must name at least one line");
        }
        check_dates(&mut checks, [("shipped_on", Some(shipped_on))]);
        let repeated = repeated_positions(inputs.iter().map(|l| l.line_id));
        let mut shipped = Vec::new();
        let mut received = Vec::new();
        for (i, input) in inputs.into_iter().enumerate() {
            if repeated.contains(&i) {
                checks.add(format!("lines[{i}].line_id"), "repeats an earlier line");
                continue;
            }
            let Some(line) = self.line(input.line_id) else {
                checks.add(format!("lines[{i}].line_id"), "no such line on this order");
                continue;
            };
            let prefix = format!("lines[{i}].");
            let unit = self
                .header
                .as_ref()
                .map(|h| h.weight_unit)
                .unwrap_or_default();
            let lots =
                shipped_lots(&mut checks, services, &prefix, unit, &input, &mut received).await?;
            shipped.push(ShippedLine {
                shipped_amount: Money::line_amount(&input.weight, &line.line.price_per_unit),
                line_id: input.line_id,
                weight: input.weight,
                quantity: input.quantity,
                lots,
            });
        }
        checks.finish()?;
        check_lot_weights(&shipped, &received)?;
        let shipped_total: Money = shipped.iter().map(|l| l.shipped_amount).sum();
        Ok(SalesOrderEvent::Shipped {
            shipped_on,
            carrier_id,
            carrier_release_number,
            lines: shipped,
            shipped_total,
            amount_due: shipped_total,
        })
    }
}

/// The lots of a shipment line: at most [`MAX_LOTS_PER_LINE`], each named once, each a lot
/// received in the tenant in the order's weight unit (a lot's stock is kept in the unit it
/// was received in), weights summing to the line's weight. Errors go to `checks` (reported
/// under `{prefix}lots`); a failed lookup is `Unavailable`. Each lot found is added to
/// `received` with its received weight, for [`check_lot_weights`].
async fn shipped_lots(
    checks: &mut Checks,
    services: &DomainServices,
    prefix: &str,
    unit: WeightUnit,
    input: &ShipLineInput,
    received: &mut Vec<(Uuid, LotNumber, Weight)>,
) -> Result<Vec<ShippedLot>, DomainError> {
    if input.lots.is_empty() {
        return Ok(Vec::new());
    }
    if input.lots.len() > MAX_LOTS_PER_LINE {
        checks.add(
            format!("{prefix}lots"),
            format!("a line may have at most {MAX_LOTS_PER_LINE} lots"),
        );
        return Ok(Vec::new());
    }
    if sum_weights(input.lots.iter().map(|l| l.weight)) != Some(input.weight) {
        checks.add(
            format!("{prefix}lots"),
            format!(
                "the lots' weights must sum to the line's weight of {}",
                input.weight
            ),
        );
    }
    let repeated = repeated_positions(input.lots.iter().map(|l| l.lot_id));
    let mut lots = Vec::new();
    for (j, lot) in input.lots.iter().enumerate() {
        let field = format!("{prefix}lots[{j}].lot_id");
        if repeated.contains(&j) {
            checks.add(field, "repeats an earlier lot of this line");
            continue;
        }
        match services.lookups().lot(lot.lot_id).await? {
            None => checks.add(field, "no such lot"),
            Some(found) if found.weight_unit != unit => checks.add(
                field,
                format!(
                    "the lot was received in {}, this order weighs in {}",
                    found.weight_unit.as_str(),
                    unit.as_str()
                ),
            ),
            Some(found) => {
                received.push((lot.lot_id, found.lot_number.clone(), found.received_weight));
                lots.push(ShippedLot {
                    lot_id: lot.lot_id,
                    weight: lot.weight,
                    lot_number: found.lot_number,
                    purchase_order_id: found.purchase_order_id,
                    supplier_id: found.supplier_id,
                });
            }
        }
    }
    Ok(lots)
}

/// Refuses a shipment that ships more of a lot (over all its lines) than was received of it.
/// What other shipments already took of the lot is the store's to check, in the append
/// transaction, where concurrent shipments are serialised.
fn check_lot_weights(
    shipped: &[ShippedLine],
    received: &[(Uuid, LotNumber, Weight)],
) -> Result<(), DomainError> {
    let mut per_lot: Vec<(Uuid, rust_decimal::Decimal)> = Vec::new();
    for lot in shipped.iter().flat_map(|line| &line.lots) {
        match per_lot.iter_mut().find(|(id, _)| *id == lot.lot_id) {
            Some((_, sum)) => *sum += lot.weight.value(),
            None => per_lot.push((lot.lot_id, lot.weight.value())),
        }
    }
    for (lot_id, weight) in per_lot {
        let Some((_, number, received)) = received.iter().find(|(id, _, _)| *id == lot_id) else {
            continue;
        };
        if weight > received.value() {
            return Err(DomainError::NotAllowedBecause {
                action: "ship",
                reason: format!(
                    "lot {} ({lot_id}) shipped {} but only {received} was received",
                    number.as_str(),
                    weight.normalize(),
                ),
            });
        }
    }
    Ok(())
}

/// Checks the header's dates against the range every order date must be in.
fn check_header_dates(checks: &mut Checks, header: &SalesOrderHeader) {
    check_dates(
        checks,
        [
            ("order_date", Some(header.order_date)),
            ("pickup_date", header.pickup_date),
            ("delivery_date", header.delivery_date),
        ],
    );
}

/// Checks a line's product (if given: active) and source purchase order (if given: exists),
/// reporting on `{prefix}product_id` and `{prefix}source_purchase_order_id`.
async fn check_line_references(
    checks: &mut Checks,
    services: &DomainServices,
    product_id: Option<Uuid>,
    source_purchase_order_id: Option<Uuid>,
    prefix: &str,
) -> Result<(), DomainError> {
    if let Some(id) = product_id {
        checks
            .reference(
                services,
                ReferenceType::Product,
                id,
                format!("{prefix}product_id"),
            )
            .await?;
    }
    if let Some(id) = source_purchase_order_id {
        checks
            .purchase_order(services, id, format!("{prefix}source_purchase_order_id"))
            .await?;
    }
    Ok(())
}

impl Aggregate for SalesOrder {
    const TYPE: &'static str = SALES_ORDER_TYPE;
    type Command = SalesOrderCommand;
    type Event = SalesOrderEvent;
    type Error = DomainError;
    type Services = DomainServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        for event in self.decide(command, services).await? {
            sink.write(event, self).await;
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        use SalesOrderStatus as S;
        let unshipped = |line: OrderLine| SalesOrderLine {
            line,
            shipped_weight: None,
            shipped_quantity: None,
            shipped_amount: None,
            lots: Vec::new(),
        };
        match event {
            SalesOrderEvent::Created {
                order_number,
                header,
                lines,
                total,
            } => {
                self.status = Some(S::Draft);
                self.order_number = Some(order_number);
                self.header = Some(header);
                self.lines = lines.into_iter().map(unshipped).collect();
                self.total = total;
            }
            SalesOrderEvent::HeaderChanged { header, .. } => self.header = Some(header),
            SalesOrderEvent::LineAdded { line, total } => {
                self.lines.push(unshipped(line));
                self.total = total;
            }
            SalesOrderEvent::LineChanged {
                line_id,
                line,
                total,
                ..
            } => {
                if let Some(kept) = self.lines.iter_mut().find(|l| l.line.line_id == line_id) {
                    kept.line = line;
                }
                self.total = total;
            }
            SalesOrderEvent::LineRemoved { line, total } => {
                self.lines.retain(|l| l.line.line_id != line.line_id);
                self.total = total;
            }
            SalesOrderEvent::Confirmed { .. } => self.status = Some(S::Confirmed),
            SalesOrderEvent::Shipped {
                shipped_on,
                carrier_id,
                carrier_release_number,
                lines,
                shipped_total,
                ..
            } => {
                for shipped in &lines {
                    if let Some(line) = self
                        .lines
                        .iter_mut()
                        .find(|l| l.line.line_id == shipped.line_id)
                    {
                        line.shipped_weight = Some(shipped.weight);
                        line.shipped_quantity = shipped.quantity;
                        line.shipped_amount = Some(shipped.shipped_amount);
                        line.lots = shipped.lots.clone();
                    }
                }
                self.shipped_total = Some(shipped_total);
                self.shipment = Some(Shipment {
                    shipped_on,
                    carrier_id,
                    carrier_release_number,
                    lines,
                });
                self.status = Some(S::Shipped);
            }
            SalesOrderEvent::Delivered { delivered_on } => {
                self.delivered_on = Some(delivered_on);
                self.status = Some(S::Delivered);
            }
            SalesOrderEvent::Invoiced {
                invoice_number,
                invoice_date,
                due_date,
                invoiced_amount,
            } => {
                self.invoice = Some(Invoice {
                    invoice_number,
                    invoice_date,
                    due_date,
                    invoiced_amount,
                });
                self.status = Some(S::Invoiced);
            }
            SalesOrderEvent::PaymentRecorded {
                payment_id,
                amount,
                paid_on,
                method,
                reference,
                amount_paid,
                ..
            } => {
                self.payments.push(Payment {
                    payment_id,
                    amount,
                    paid_on,
                    method,
                    reference,
                });
                self.amount_paid = amount_paid;
            }
            SalesOrderEvent::NoteAdded { note_id, text } => {
                self.notes.push(Note { note_id, text });
            }
            SalesOrderEvent::Closed => self.status = Some(S::Closed),
            SalesOrderEvent::Cancelled { reason, .. } => {
                self.status = Some(S::Cancelled);
                self.cancel_reason = Some(reason);
            }
            SalesOrderEvent::ClaimRaised {
                claim_id,
                reason,
                lines,
                notes,
                claimed_amount,
            } => self.claims.push(Claim::raised(
                claim_id,
                reason,
                lines,
                notes,
                claimed_amount,
                None,
            )),
            SalesOrderEvent::ClaimAccepted {
                claim_id,
                accepted_amount,
                credit_note_number,
                credits,
                ..
            } => {
                if let Some(claim) = self.claims.iter_mut().find(|c| c.claim_id == claim_id) {
                    claim.status = ClaimStatus::Accepted;
                    claim.accepted_amount = Some(accepted_amount);
                    claim.credit_note_number = Some(credit_note_number);
                }
                self.credits = credits;
            }
            SalesOrderEvent::ClaimRejected { claim_id, reason } => {
                if let Some(claim) = self.claims.iter_mut().find(|c| c.claim_id == claim_id) {
                    claim.status = ClaimStatus::Rejected;
                    claim.reject_reason = Some(reason);
                }
            }
            SalesOrderEvent::RefundRecorded {
                refund_id,
                amount,
                refunded_on,
                method,
                reference,
                amount_refunded,
                ..
            } => {
                self.refunds.push(Refund {
                    refund_id,
                    amount,
                    refunded_on,
                    method,
                    reference,
                });
                self.amount_refunded = amount_refunded;
            }
        }
    }
}

#[cfg(test)]
mod tests;
