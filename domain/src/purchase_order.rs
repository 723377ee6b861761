//! The purchase order: buying a load from a supplier.
//!
//! ```text
//! draft ──submit──▶ submitted ──approve──▶ approved ──receipt──▶ partially_received ──receipt(complete)──▶ received ──close──▶ closed
//!   ▲                  │                      │
//!   └────reject────────┘                      │
//! draft/submitted/approved ──cancel(reason)──▶ cancelled
//! ```
//!
//! Amount due is the ordered total until the first receipt, then the received total
//! (each line's received weight × price, rounded to cents). Payments are allowed once
//! approved and may not exceed what is outstanding.
//!
//! Once anything is received, claims may be raised against the supplier (short weight,
//! quality, ...), possibly passing on a customer's claim on a sales order sourced from this
//! one; an accepted claim credits the order. `outstanding = amount due − credits − payments +
//! refunds`; while it is below zero (prepaid, then received short or credited) the supplier
//! refunds the difference. Closing needs nothing outstanding and no open claim.
//!
//! Receipt lines may name the lots that arrived; each lot gets an id, and
//! `(supplier, lot number)` is unique per tenant (see [`LOT_NUMBER_SCOPE`]).
//!
//! `handle` decides every command on the current state without touching it
//! ([`PurchaseOrder::decide`]) and only then writes the events, so a refused command never
//! leaves a half-applied state behind.

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
    choice, patchable, CreditNoteNumber, CreditTerms, Currency, Logistics, LongText, LotNumber,
    Money, NoteText, NumberSeries, OrderNumber, PaymentMethod, PaymentStatus, PaymentTerms,
    Quantity, Reason, ShortText, UnitPrice, ValueError, Weight, WeightUnit,
};
use crate::{LotMovement, UniqueKeyChange, UniqueKeys};

pub use crate::order::{
    Claim, ClaimLine, ClaimReason, ClaimStatus, NewClaim, NewPayment, NewRefund, Note, Payment,
    Refund, MAX_CLAIMS_PER_ORDER, MAX_LINES_PER_ORDER, MAX_LOTS_PER_LINE, MAX_NOTES_PER_ORDER,
    MAX_REFUNDS_PER_ORDER,
};

/// Aggregate type of purchase orders in the event store.
pub const PURCHASE_ORDER_TYPE: &str = "purchase_order";

/// Uniqueness scope of purchase order numbers, the client's own and assigned ones alike.
pub const PURCHASE_ORDER_NUMBER_SCOPE: &str = NumberSeries::PURCHASE_ORDER.scope;

/// Uniqueness scope of received lots: the key is `<supplier_id>/<lot_number>` (see
/// [`lot_key`]), so one supplier's lot number is received once per tenant while two suppliers
/// may use the same number.
pub const LOT_NUMBER_SCOPE: &str = "lot_number";

/// Uniqueness scope of lot ids: the key is the lot id and its holder the purchase order that
/// received the lot, so the store can find a lot's order (and the lot) from its id alone,
/// as a shipment naming the lot needs.
pub const LOT_ID_SCOPE: &str = "lot_id";

/// Uniqueness scope of sales claims passed on to a supplier: the key is the sales claim's
/// id and its holder the purchase order whose claim passes it on, so a customer's claim is
/// passed to the packer once (given up again when that purchase claim is rejected).
pub const PASSED_ON_SALES_CLAIM_SCOPE: &str = "passed_on_sales_claim";

/// The key of a lot in [`LOT_NUMBER_SCOPE`]: `<supplier_id>/<lot_number>`.
pub fn lot_key(supplier_id: Uuid, lot_number: &LotNumber) -> String {
    format!("{supplier_id}/{}", lot_number.as_str())
}

choice!(
    /// Where a purchase order is in its life.
    PurchaseOrderStatus {
        /// Being written; header and lines may change.
        Draft => "draft",
        /// Waiting for a manager's approval.
        Submitted => "submitted",
        /// Approved; the supplier may ship.
        Approved => "approved",
        /// Some product has arrived; more is expected.
        PartiallyReceived => "partially_received",
        /// Receiving is complete.
        Received => "received",
        /// Received and paid; nothing more happens.
        Closed => "closed",
        /// Called off before anything was received.
        Cancelled => "cancelled",
    }
);

patchable! {
    /// What a purchase order is about, apart from its lines.
    PurchaseOrderHeader;
    /// PATCH body for a draft purchase order's header.
    PurchaseOrderHeaderPatch;
    required {
        /// Who we buy from; must be an active supplier.
        supplier_id: Uuid,
        /// When the order was placed.
        order_date: NaiveDate,
        /// The one currency of every amount on the order (default USD).
        #[serde(default)]
        currency: Currency,
        /// The unit of every weight and price on the order (default LB).
        #[serde(default)]
        weight_unit: WeightUnit,
        /// Who moves the load (default supplier_delivery).
        #[serde(default)]
        logistics: Logistics,
    }
    optional {
        /// The plant the load comes from; must be an active plant.
        plant_id: Uuid,
        /// The carrier that moves it; must be an active carrier.
        carrier_id: Uuid,
        /// When it is picked up.
        pickup_date: NaiveDate,
        /// When it is delivered; not before the order date.
        delivery_date: NaiveDate,
        /// How the supplier is paid.
        payment_terms: PaymentTerms,
        /// The supplier's confirmation number.
        supplier_confirmation_number: ShortText,
        /// The carrier's release number.
        carrier_release_number: ShortText,
        /// Free notes on the header.
        notes: LongText,
    }
    extra {}
}

/// A line to put on an order.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct NewLine {
    /// Chosen by the caller; unique within the order.
    pub line_id: Uuid,
    /// What is bought; must be an active product.
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
}

/// PATCH body for a line of a draft order.
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
}

/// A line as ordered, with its amount (weight × price, rounded half-up to cents).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct OrderLine {
    /// The line's id, unique within the order.
    pub line_id: Uuid,
    /// What is bought.
    pub product_id: Uuid,
    /// Ordered weight.
    pub weight: Weight,
    /// Price per weight unit.
    pub price_per_unit: UnitPrice,
    /// Cases or pieces, if counted.
    pub quantity: Option<Quantity>,
    /// Free description.
    pub description: Option<LongText>,
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
            amount: Money::line_amount(&weight, &price_per_unit),
        }
    }
}

/// A line as the order keeps it: as ordered, plus what has been received so far.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct PurchaseOrderLine {
    /// The line as ordered.
    #[serde(flatten)]
    pub line: OrderLine,
    /// Total weight received over all receipts; `None` until the line is first received.
    pub received_weight: Option<Weight>,
    /// Total quantity received, if counted.
    pub received_quantity: Option<Quantity>,
    /// Received weight × price, rounded half-up to cents.
    pub received_amount: Option<Money>,
    /// The lots received on this line, over all receipts.
    #[serde(default)]
    pub lots: Vec<ReceivedLot>,
}

/// The purchase order to create.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct NewPurchaseOrder {
    /// Unique per tenant (the store enforces it); assigned by the service when not given.
    pub order_number: OrderNumber,
    /// The header.
    pub header: PurchaseOrderHeader,
    /// The lines; may be empty while in draft.
    pub lines: Vec<NewLine>,
}

/// One line of a receipt: what the scale said.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct ReceiptLineInput {
    /// The order line received.
    pub line_id: Uuid,
    /// Weight received this time.
    pub weight: Weight,
    /// Cases or pieces received this time, if counted.
    #[serde(default)]
    pub quantity: Option<Quantity>,
    /// The lots that arrived on this line; when given, their weights sum to `weight`.
    #[serde(default)]
    pub lots: Vec<NewLot>,
}

/// A lot arriving on a receipt line.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct NewLot {
    /// Chosen by the caller; the lot's id from now on (shipments name lots by it).
    pub lot_id: Uuid,
    /// The supplier's lot number; unique per supplier and tenant.
    pub lot_number: LotNumber,
    /// How much of the line's weight is of this lot.
    pub weight: Weight,
    /// When the lot was produced (packed); not after it was received.
    #[serde(default)]
    pub production_date: Option<NaiveDate>,
    /// The USDA establishment number of the plant that produced it.
    #[serde(default)]
    pub establishment_number: Option<ShortText>,
}

/// A received lot: what a recall traces from. Carries the supplier and product so that the
/// event alone says whose lot of what it is.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct ReceivedLot {
    /// The lot's id.
    pub lot_id: Uuid,
    /// The supplier's lot number.
    pub lot_number: LotNumber,
    /// The supplier it came from (the order's supplier when it arrived).
    pub supplier_id: Uuid,
    /// The product (the order line's product).
    pub product_id: Uuid,
    /// The weight received of the lot.
    pub weight: Weight,
    /// When it was produced, if known.
    pub production_date: Option<NaiveDate>,
    /// The producing plant's establishment number, if known.
    pub establishment_number: Option<ShortText>,
}

/// One line of a recorded receipt, with the line's running totals after it.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct ReceivedLine {
    /// The order line received.
    pub line_id: Uuid,
    /// Weight received this time.
    pub weight: Weight,
    /// Quantity received this time, if counted.
    pub quantity: Option<Quantity>,
    /// The line's received weight over all receipts so far.
    pub received_weight_total: Weight,
    /// The line's received quantity over all receipts so far, if counted.
    pub received_quantity_total: Option<Quantity>,
    /// The line's received amount: total received weight × price, rounded.
    pub received_amount: Money,
    /// The lots received on the line this time (absent from receipts without lots).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub lots: Vec<ReceivedLot>,
}

/// A recorded receipt.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct Receipt {
    /// The receipt's id.
    pub receipt_id: Uuid,
    /// When the product arrived.
    pub received_on: NaiveDate,
    /// Whether this receipt ended receiving.
    pub complete: bool,
    /// What arrived.
    pub lines: Vec<ReceivedLine>,
}

/// What can be asked of a purchase order.
#[derive(Clone, Debug, PartialEq)]
pub enum PurchaseOrderCommand {
    /// Create it in draft.
    Create(NewPurchaseOrder),
    /// Change the header (draft only).
    ChangeHeader(PurchaseOrderHeaderPatch),
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
    /// Ask for approval (draft, at least one line).
    Submit,
    /// Approve (submitted).
    Approve,
    /// Send back to draft (submitted).
    Reject {
        /// Why.
        reason: Reason,
    },
    /// Call off (draft, submitted or approved; nothing paid).
    Cancel {
        /// Why.
        reason: Reason,
    },
    /// Record product that arrived (approved or partially received).
    RecordReceipt {
        /// Chosen by the caller; unique within the order.
        receipt_id: Uuid,
        /// When it arrived.
        received_on: NaiveDate,
        /// Whether receiving is finished.
        complete: bool,
        /// What arrived, per line.
        lines: Vec<ReceiptLineInput>,
    },
    /// Record a payment to the supplier (approved, partially received or received).
    RecordPayment(NewPayment),
    /// Add a note (any state).
    AddNote {
        /// Chosen by the caller; unique within the order.
        note_id: Uuid,
        /// What it says.
        text: NoteText,
    },
    /// Close (received, nothing outstanding, no open claim).
    Close,
    /// Raise a claim against the supplier (partially received or received).
    RaiseClaim {
        /// This order's own id (the aggregate does not hold it): a passed-on sales claim must
        /// be on a sales line sourced from this order.
        order_id: Uuid,
        /// The claim.
        claim: NewClaim,
        /// The customer's claim (on a sales order sourced from this one) that this passes on.
        source_sales_claim_id: Option<Uuid>,
    },
    /// Accept an open claim: the supplier credits `accepted_amount` (default: the claimed
    /// amount).
    AcceptClaim {
        /// The claim.
        claim_id: Uuid,
        /// What is credited; above zero, not above the claimed amount.
        accepted_amount: Option<Money>,
        /// The supplier's credit memo number, if it sent one.
        credit_note_number: Option<CreditNoteNumber>,
    },
    /// Reject an open claim.
    RejectClaim {
        /// The claim.
        claim_id: Uuid,
        /// Why.
        reason: Reason,
    },
    /// Record money the supplier returned (only while more was paid than is owed).
    RecordRefund(NewRefund),
}

/// What happened to a purchase order. Each carries the derived facts a view needs.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub enum PurchaseOrderEvent {
    /// Created in draft.
    Created {
        /// The order number.
        order_number: OrderNumber,
        /// The header.
        header: PurchaseOrderHeader,
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
        header: PurchaseOrderHeader,
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
    /// Submitted for approval.
    Submitted {
        /// The total submitted.
        total: Money,
    },
    /// Approved.
    Approved,
    /// Sent back to draft.
    Rejected {
        /// Why.
        reason: Reason,
    },
    /// Called off.
    Cancelled {
        /// Why.
        reason: Reason,
        /// The status it was cancelled from.
        from_status: PurchaseOrderStatus,
    },
    /// Product arrived.
    ReceiptRecorded {
        /// The receipt's id.
        receipt_id: Uuid,
        /// When it arrived.
        received_on: NaiveDate,
        /// Whether receiving is finished (status becomes received).
        complete: bool,
        /// What arrived, with each line's running totals.
        lines: Vec<ReceivedLine>,
        /// Sum of received amounts over all lines.
        received_total: Money,
        /// What is now due to the supplier (the received total).
        amount_due: Money,
        /// Amount due less amount paid; negative if more was paid than is now due.
        outstanding: Money,
        /// Payment status against the new amount due.
        payment_status: PaymentStatus,
    },
    /// A payment was made.
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
    /// A claim was raised against the supplier.
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
        /// The customer's claim it passes on, if any.
        #[serde(default)]
        source_sales_claim_id: Option<Uuid>,
    },
    /// A claim was accepted: the order is credited.
    ClaimAccepted {
        /// The claim's id.
        claim_id: Uuid,
        /// What was credited.
        accepted_amount: Money,
        /// The supplier's credit memo number, if any.
        credit_note_number: Option<CreditNoteNumber>,
        /// Sum of accepted claims after this one.
        credits: Money,
        /// What is outstanding after it (negative: the supplier owes a refund).
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
        /// The sales claim the rejected claim passed on, which may now be passed on again.
        #[serde(default)]
        source_sales_claim_id: Option<Uuid>,
    },
    /// The supplier returned money.
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

impl PurchaseOrderEvent {
    /// What precedes the variant's name in the event type (`PurchaseOrderCreated`): the
    /// published event documents name the types the same way.
    pub const EVENT_PREFIX: &'static str = "PurchaseOrder";

    /// The current version of the variant named `variant`: 2.0.0 for `Created` (1.0 named
    /// the supplier `vendor_id`: see [`crate::upcasters`]); 1.0 for the rest. A function of
    /// the name, not of a value, so that the event documents can state it for every type.
    pub fn version_of(variant: &str) -> &'static str {
        match variant {
            "Created" => crate::upcasters::PURCHASE_ORDER_CREATED_VERSION,
            _ => "1.0",
        }
    }

    /// The variant name, which follows "PurchaseOrder" in the event type.
    fn name(&self) -> &'static str {
        match self {
            Self::Created { .. } => "Created",
            Self::HeaderChanged { .. } => "HeaderChanged",
            Self::LineAdded { .. } => "LineAdded",
            Self::LineChanged { .. } => "LineChanged",
            Self::LineRemoved { .. } => "LineRemoved",
            Self::Submitted { .. } => "Submitted",
            Self::Approved => "Approved",
            Self::Rejected { .. } => "Rejected",
            Self::Cancelled { .. } => "Cancelled",
            Self::ReceiptRecorded { .. } => "ReceiptRecorded",
            Self::PaymentRecorded { .. } => "PaymentRecorded",
            Self::NoteAdded { .. } => "NoteAdded",
            Self::Closed => "Closed",
            Self::ClaimRaised { .. } => "ClaimRaised",
            Self::ClaimAccepted { .. } => "ClaimAccepted",
            Self::ClaimRejected { .. } => "ClaimRejected",
            Self::RefundRecorded { .. } => "RefundRecorded",
        }
    }
}

impl DomainEvent for PurchaseOrderEvent {
    fn event_type(&self) -> String {
        format!("{}{}", Self::EVENT_PREFIX, self.name())
    }

    fn event_version(&self) -> String {
        Self::version_of(self.name()).to_owned()
    }
}

impl UniqueKeys for PurchaseOrderEvent {
    fn unique_key_changes(&self) -> Vec<UniqueKeyChange> {
        match self {
            Self::Created { order_number, .. } => vec![UniqueKeyChange::Claim {
                scope: PURCHASE_ORDER_NUMBER_SCOPE,
                key: order_number.as_str().to_owned(),
            }],
            Self::ReceiptRecorded { lines, .. } => lines
                .iter()
                .flat_map(|line| &line.lots)
                .flat_map(|lot| {
                    [
                        UniqueKeyChange::Claim {
                            scope: LOT_NUMBER_SCOPE,
                            key: lot_key(lot.supplier_id, &lot.lot_number),
                        },
                        UniqueKeyChange::Claim {
                            scope: LOT_ID_SCOPE,
                            key: lot.lot_id.to_string(),
                        },
                    ]
                })
                .collect(),
            Self::ClaimRaised {
                source_sales_claim_id: Some(source),
                ..
            } => vec![UniqueKeyChange::Claim {
                scope: PASSED_ON_SALES_CLAIM_SCOPE,
                key: source.to_string(),
            }],
            Self::ClaimRejected {
                source_sales_claim_id: Some(source),
                ..
            } => vec![UniqueKeyChange::Release {
                scope: PASSED_ON_SALES_CLAIM_SCOPE,
                key: source.to_string(),
            }],
            _ => Vec::new(),
        }
    }

    fn lot_movements(&self) -> Vec<LotMovement> {
        match self {
            Self::ReceiptRecorded { lines, .. } => lines
                .iter()
                .flat_map(|line| &line.lots)
                .map(|lot| LotMovement {
                    lot_id: lot.lot_id,
                    received: lot.weight.value(),
                    shipped: rust_decimal::Decimal::ZERO,
                })
                .collect(),
            _ => Vec::new(),
        }
    }
}

/// A purchase order's state, rebuilt from its events.
#[derive(Default, Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct PurchaseOrder {
    /// `None` until created.
    pub status: Option<PurchaseOrderStatus>,
    /// The order number.
    pub order_number: Option<OrderNumber>,
    /// The header.
    pub header: Option<PurchaseOrderHeader>,
    /// The lines, in the order they were added.
    pub lines: Vec<PurchaseOrderLine>,
    /// Sum of ordered line amounts.
    pub total: Money,
    /// Sum of received line amounts; `None` until the first receipt.
    pub received_total: Option<Money>,
    /// Sum of payments.
    pub amount_paid: Money,
    /// Payments, in order.
    pub payments: Vec<Payment>,
    /// Notes, in order.
    pub notes: Vec<Note>,
    /// Receipts, in order.
    pub receipts: Vec<Receipt>,
    /// Why it was cancelled, if it was.
    pub cancel_reason: Option<Reason>,
    /// Why it was last sent back to draft, if it was.
    pub last_reject_reason: Option<Reason>,
    /// Claims against the supplier, in the order raised.
    #[serde(default)]
    pub claims: Vec<Claim>,
    /// Sum of accepted claims' amounts.
    #[serde(default)]
    pub credits: Money,
    /// Refunds from the supplier, in order.
    #[serde(default)]
    pub refunds: Vec<Refund>,
    /// Sum of refunds.
    #[serde(default)]
    pub amount_refunded: Money,
}

impl PurchaseOrder {
    /// Whether it has been created.
    pub fn exists(&self) -> bool {
        self.status.is_some()
    }

    /// What is owed to the supplier: the ordered total until the first receipt, then the
    /// received total.
    pub fn amount_due(&self) -> Money {
        self.received_total.unwrap_or(self.total)
    }

    /// Amount due − credits − payments + refunds (negative if a short receipt or a credit
    /// left it overpaid: the supplier owes a refund).
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

    /// Every lot received on the order, line by line.
    pub fn lots(&self) -> impl Iterator<Item = &ReceivedLot> {
        self.lines.iter().flat_map(|line| &line.lots)
    }

    /// The date the supplier's credit terms run from: the last receipt's date (what arrived
    /// is what is owed), else the agreed delivery date, else the order date. `None` until
    /// created.
    pub fn payment_reference_date(&self) -> Option<NaiveDate> {
        let header = self.header.as_ref()?;
        let last_receipt = self.receipts.iter().map(|r| r.received_on).max();
        Some(
            last_receipt
                .or(header.delivery_date)
                .unwrap_or(header.order_date),
        )
    }

    /// When the supplier is to be paid under `terms`, the supplier's credit terms (passed in
    /// because they belong to the supplier and may change after the order): see
    /// [`CreditTerms::due_date`]; a supplier without credit terms is due on the reference
    /// date itself. `None` until created.
    pub fn due_date(&self, terms: Option<CreditTerms>) -> Option<NaiveDate> {
        let reference = self.payment_reference_date()?;
        Some(terms.map_or(reference, |terms| terms.due_date(reference)))
    }

    /// The line with `line_id`, if any.
    pub fn line(&self, line_id: Uuid) -> Option<&PurchaseOrderLine> {
        self.lines.iter().find(|l| l.line.line_id == line_id)
    }

    /// The current status, or `NotFound` if not created.
    fn current_status(&self) -> Result<PurchaseOrderStatus, DomainError> {
        self.status.ok_or(DomainError::NotFound)
    }

    /// The current status if it is one of `allowed`, else `NotFound` or `NotAllowed`.
    fn require(
        &self,
        action: &'static str,
        allowed: &[PurchaseOrderStatus],
    ) -> Result<PurchaseOrderStatus, DomainError> {
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
    fn current_header(&self) -> Result<&PurchaseOrderHeader, DomainError> {
        self.header.as_ref().ok_or(DomainError::NotFound)
    }

    /// Decides what a command leads to, without changing anything: every rule lives here.
    pub async fn decide(
        &self,
        command: PurchaseOrderCommand,
        services: &DomainServices,
    ) -> Result<Vec<PurchaseOrderEvent>, DomainError> {
        use PurchaseOrderStatus as S;
        let event = match command {
            PurchaseOrderCommand::Create(new) => self.decide_create(new, services).await?,
            PurchaseOrderCommand::ChangeHeader(patch) => {
                self.require("change the header of", &[S::Draft])?;
                let before = self.current_header()?;
                let header = before.patched(&patch);
                let changes = diff(before, &header);
                if changes.is_empty() {
                    return Ok(Vec::new());
                }
                let mut checks = Checks::new();
                if header.supplier_id != before.supplier_id {
                    checks
                        .reference(
                            services,
                            ReferenceType::Supplier,
                            header.supplier_id,
                            "supplier_id",
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
                PurchaseOrderEvent::HeaderChanged { changes, header }
            }
            PurchaseOrderCommand::AddLine(new) => {
                self.require("add a line to", &[S::Draft])?;
                check_line_count(self.lines.len() + 1)?;
                let mut checks = Checks::new();
                checks.require(
                    self.line(new.line_id).is_none(),
                    "line_id",
                    "a line with this id is already on the order",
                );
                checks
                    .reference(
                        services,
                        ReferenceType::Product,
                        new.product_id,
                        "product_id",
                    )
                    .await?;
                checks.finish()?;
                let line = OrderLine::new(new);
                PurchaseOrderEvent::LineAdded {
                    total: self.total + line.amount,
                    line,
                }
            }
            PurchaseOrderCommand::ChangeLine { line_id, patch } => {
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
                if line.product_id != before.product_id {
                    let mut checks = Checks::new();
                    checks
                        .reference(
                            services,
                            ReferenceType::Product,
                            line.product_id,
                            "product_id",
                        )
                        .await?;
                    checks.finish()?;
                }
                PurchaseOrderEvent::LineChanged {
                    line_id,
                    changes,
                    total: self.total - before.amount + line.amount,
                    line,
                }
            }
            PurchaseOrderCommand::RemoveLine { line_id } => {
                self.require("remove a line from", &[S::Draft])?;
                let line = self
                    .line(line_id)
                    .ok_or(DomainError::LineNotFound(line_id))?
                    .line
                    .clone();
                PurchaseOrderEvent::LineRemoved {
                    total: self.total - line.amount,
                    line,
                }
            }
            PurchaseOrderCommand::Submit => {
                self.require("submit", &[S::Draft])?;
                if self.lines.is_empty() {
                    return Err(DomainError::invalid(
                        "lines",
                        "the order needs at least one line to be submitted",
                    ));
                }
                PurchaseOrderEvent::Submitted { total: self.total }
            }
            PurchaseOrderCommand::Approve => {
                self.require("approve", &[S::Submitted])?;
                PurchaseOrderEvent::Approved
            }
            PurchaseOrderCommand::Reject { reason } => {
                self.require("reject", &[S::Submitted])?;
                PurchaseOrderEvent::Rejected { reason }
            }
            PurchaseOrderCommand::Cancel { reason } => {
                let from_status = self.require("cancel", &[S::Draft, S::Submitted, S::Approved])?;
                if self.amount_paid.is_positive() {
                    return Err(DomainError::NotAllowedBecause {
                        action: "cancel",
                        reason: format!("{} has been paid on this order", self.amount_paid),
                    });
                }
                PurchaseOrderEvent::Cancelled {
                    reason,
                    from_status,
                }
            }
            PurchaseOrderCommand::RecordReceipt {
                receipt_id,
                received_on,
                complete,
                lines,
            } => {
                self.require("record a receipt on", &[S::Approved, S::PartiallyReceived])?;
                self.decide_receipt(receipt_id, received_on, complete, lines)?
            }
            PurchaseOrderCommand::RecordPayment(payment) => {
                self.require(
                    "record a payment on",
                    &[S::Approved, S::PartiallyReceived, S::Received],
                )?;
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
                PurchaseOrderEvent::PaymentRecorded {
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
            PurchaseOrderCommand::AddNote { note_id, text } => {
                self.current_status()?;
                check_note_count(self.notes.len())?;
                if self.notes.iter().any(|n| n.note_id == note_id) {
                    return Err(DomainError::invalid(
                        "note_id",
                        "a note with this id is already on the order",
                    ));
                }
                PurchaseOrderEvent::NoteAdded { note_id, text }
            }
            PurchaseOrderCommand::Close => {
                self.require("close", &[S::Received])?;
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
                PurchaseOrderEvent::Closed
            }
            PurchaseOrderCommand::RaiseClaim {
                order_id,
                claim,
                source_sales_claim_id,
            } => {
                self.require("raise a claim on", &[S::PartiallyReceived, S::Received])?;
                self.decide_claim(order_id, claim, source_sales_claim_id, services)
                    .await?
            }
            PurchaseOrderCommand::AcceptClaim {
                claim_id,
                accepted_amount: accepted,
                credit_note_number,
            } => {
                self.require("accept a claim on", &[S::PartiallyReceived, S::Received])?;
                let claim = open_claim(&self.claims, claim_id, "accept the claim")?;
                let accepted_amount = accepted_amount(claim, accepted)?;
                let after = Settlement {
                    credits: self.credits + accepted_amount,
                    ..self.settlement()
                };
                PurchaseOrderEvent::ClaimAccepted {
                    claim_id,
                    accepted_amount,
                    credit_note_number,
                    credits: after.credits,
                    outstanding: after.outstanding(),
                    payment_status: after.payment_status(),
                }
            }
            PurchaseOrderCommand::RejectClaim { claim_id, reason } => {
                self.require("reject a claim on", &[S::PartiallyReceived, S::Received])?;
                let claim = open_claim(&self.claims, claim_id, "reject the claim")?;
                PurchaseOrderEvent::ClaimRejected {
                    claim_id,
                    reason,
                    source_sales_claim_id: claim.source_sales_claim_id,
                }
            }
            PurchaseOrderCommand::RecordRefund(refund) => {
                self.require(
                    "record a refund on",
                    &[S::Approved, S::PartiallyReceived, S::Received],
                )?;
                check_refund(&refund, self.outstanding(), services.today(), &self.refunds)?;
                let after = Settlement {
                    refunded: self.amount_refunded + refund.amount,
                    ..self.settlement()
                };
                PurchaseOrderEvent::RefundRecorded {
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
        };
        Ok(vec![event])
    }

    /// Create: supplier, plant, carrier and every line's product must be usable, line ids
    /// distinct, and the delivery date not before the order date.
    async fn decide_create(
        &self,
        new: NewPurchaseOrder,
        services: &DomainServices,
    ) -> Result<PurchaseOrderEvent, DomainError> {
        if self.exists() {
            return Err(DomainError::AlreadyExists);
        }
        check_line_count(new.lines.len())?;
        let header = &new.header;
        let wanted: Vec<(ReferenceType, Uuid)> = [(ReferenceType::Supplier, header.supplier_id)]
            .into_iter()
            .chain(header.plant_id.map(|id| (ReferenceType::Plant, id)))
            .chain(header.carrier_id.map(|id| (ReferenceType::Carrier, id)))
            .chain(
                new.lines
                    .iter()
                    .map(|line| (ReferenceType::Product, line.product_id)),
            )
            .collect();
        services.lookups().prefetch(&wanted, &[]).await?;
        let mut checks = Checks::new();
        checks
            .reference(
                services,
                ReferenceType::Supplier,
                header.supplier_id,
                "supplier_id",
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
            checks
                .reference(
                    services,
                    ReferenceType::Product,
                    line.product_id,
                    format!("lines[{i}].product_id"),
                )
                .await?;
        }
        checks.finish()?;
        let lines: Vec<OrderLine> = new.lines.into_iter().map(OrderLine::new).collect();
        Ok(PurchaseOrderEvent::Created {
            order_number: new.order_number,
            header: new.header,
            total: lines.iter().map(|l| l.amount).sum(),
            lines,
        })
    }

    /// Receipt: lines named once each, all on the order; running totals must stay valid.
    fn decide_receipt(
        &self,
        receipt_id: Uuid,
        received_on: NaiveDate,
        complete: bool,
        inputs: Vec<ReceiptLineInput>,
    ) -> Result<PurchaseOrderEvent, DomainError> {
        let mut checks = Checks::new();
        if self.receipts.iter().any(|r| r.receipt_id == receipt_id) {
            checks.add("receipt_id", "a receipt with this id is already recorded");
        }
        if inputs.is_empty() {
            checks.add("lines", "must name at least one line");
        }
        check_dates(&mut checks, [("received_on", Some(received_on))]);
        let repeated = repeated_positions(inputs.iter().map(|l| l.line_id));
        let supplier_id = self.current_header()?.supplier_id;
        let mut lot_numbers: Vec<&LotNumber> = self.lots().map(|l| &l.lot_number).collect();
        let mut lot_ids: Vec<Uuid> = self.lots().map(|l| l.lot_id).collect();
        let mut received = Vec::new();
        for (i, input) in inputs.iter().enumerate() {
            if repeated.contains(&i) {
                checks.add(format!("lines[{i}].line_id"), "repeats an earlier line");
                continue;
            }
            let Some(line) = self.line(input.line_id) else {
                checks.add(format!("lines[{i}].line_id"), "no such line on this order");
                continue;
            };
            check_lots(
                &mut checks,
                &format!("lines[{i}]."),
                input,
                received_on,
                (&mut lot_numbers, &mut lot_ids),
            );
            match received_line(line, input, supplier_id) {
                Ok(r) => received.push(r),
                Err((field, e)) => checks.add(format!("lines[{i}].{field}"), e.0),
            }
        }
        checks.finish()?;
        let received_total: Money = self
            .lines
            .iter()
            .filter_map(|line| {
                received
                    .iter()
                    .find(|r| r.line_id == line.line.line_id)
                    .map(|r| r.received_amount)
                    .or(line.received_amount)
            })
            .sum();
        let after = Settlement {
            amount_due: received_total,
            ..self.settlement()
        };
        Ok(PurchaseOrderEvent::ReceiptRecorded {
            receipt_id,
            received_on,
            complete,
            lines: received,
            received_total,
            amount_due: received_total,
            outstanding: after.outstanding(),
            payment_status: after.payment_status(),
        })
    }

    /// Raise a claim: lines received, each claimed within what is left of its received
    /// amount; a passed-on sales claim must exist, not be rejected, be on a sales line
    /// sourced from this order, and not be passed on by another claim of this order.
    async fn decide_claim(
        &self,
        order_id: Uuid,
        claim: NewClaim,
        source_sales_claim_id: Option<Uuid>,
        services: &DomainServices,
    ) -> Result<PurchaseOrderEvent, DomainError> {
        let claimed_amount = check_new_claim(&claim, &self.claims, |line_id| {
            let line = self.line(line_id).ok_or("no such line on this order")?;
            match (line.received_amount, line.received_weight) {
                (Some(amount), Some(weight)) => Ok(Claimable { amount, weight }),
                _ => Err("the line has not been received"),
            }
        })?;
        if let Some(source) = source_sales_claim_id {
            let field = "source_sales_claim_id";
            let passed_on = self.claims.iter().any(|c| {
                c.source_sales_claim_id == Some(source) && c.status != ClaimStatus::Rejected
            });
            if passed_on {
                return Err(DomainError::invalid(
                    field,
                    "is already passed on by another claim on this order",
                ));
            }
            match services.lookups().sales_claim(source).await? {
                None => return Err(DomainError::invalid(field, "no such sales claim")),
                Some(found) if found.status == ClaimStatus::Rejected => {
                    return Err(DomainError::invalid(field, "the sales claim was rejected"))
                }
                Some(found) if !found.source_purchase_order_ids.contains(&order_id) => {
                    return Err(DomainError::invalid(
                        field,
                        "the sales claim is on no sales line sourced from this purchase order",
                    ))
                }
                Some(_) => {}
            }
        }
        Ok(PurchaseOrderEvent::ClaimRaised {
            claim_id: claim.claim_id,
            reason: claim.reason,
            lines: claim.lines,
            notes: claim.notes,
            claimed_amount,
            source_sales_claim_id,
        })
    }
}

/// Checks a receipt line's lots: at most [`MAX_LOTS_PER_LINE`], weights summing to the line's weight,
/// numbers and ids new to the order and to the receipt (`seen` holds those met so far, and
/// takes this line's), production dates valid and not after the receipt.
fn check_lots<'a>(
    checks: &mut Checks,
    prefix: &str,
    input: &'a ReceiptLineInput,
    received_on: NaiveDate,
    seen: (&mut Vec<&'a LotNumber>, &mut Vec<Uuid>),
) {
    let (numbers, ids) = seen;
    if input.lots.is_empty() {
        return;
    }
    if input.lots.len() > MAX_LOTS_PER_LINE {
        checks.add(
            format!("{prefix}lots"),
            format!("a line may have at most {MAX_LOTS_PER_LINE} lots"),
        );
        return;
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
    for (j, lot) in input.lots.iter().enumerate() {
        let at = format!("{prefix}lots[{j}].");
        if numbers.contains(&&lot.lot_number) {
            checks.add(
                format!("{at}lot_number"),
                "this lot is already received on this order",
            );
        } else {
            numbers.push(&lot.lot_number);
        }
        if ids.contains(&lot.lot_id) {
            checks.add(
                format!("{at}lot_id"),
                "a lot with this id is already received",
            );
        } else {
            ids.push(lot.lot_id);
        }
        if lot.production_date.is_some_and(|d| d > received_on) {
            checks.add(
                format!("{at}production_date"),
                "must not be after the receipt date",
            );
        }
        check_dates(
            checks,
            [(format!("{at}production_date").as_str(), lot.production_date)],
        );
    }
}

/// Checks the header's dates against the range every order date must be in.
fn check_header_dates(checks: &mut Checks, header: &PurchaseOrderHeader) {
    check_dates(
        checks,
        [
            ("order_date", Some(header.order_date)),
            ("pickup_date", header.pickup_date),
            ("delivery_date", header.delivery_date),
        ],
    );
}

/// A line's running totals after receiving `input`, or the field that would overflow.
fn received_line(
    line: &PurchaseOrderLine,
    input: &ReceiptLineInput,
    supplier_id: Uuid,
) -> Result<ReceivedLine, (&'static str, ValueError)> {
    let weight_total = match line.received_weight {
        Some(before) => before
            .checked_add(&input.weight)
            .map_err(|e| ("weight", e))?,
        None => input.weight,
    };
    let quantity_total = match (line.received_quantity, input.quantity) {
        (Some(before), Some(now)) => Some(before.checked_add(&now).map_err(|e| ("quantity", e))?),
        (before, now) => now.or(before),
    };
    Ok(ReceivedLine {
        line_id: input.line_id,
        weight: input.weight,
        quantity: input.quantity,
        received_weight_total: weight_total,
        received_quantity_total: quantity_total,
        received_amount: Money::line_amount(&weight_total, &line.line.price_per_unit),
        lots: input
            .lots
            .iter()
            .map(|lot| ReceivedLot {
                lot_id: lot.lot_id,
                lot_number: lot.lot_number.clone(),
                supplier_id,
                product_id: line.line.product_id,
                weight: lot.weight,
                production_date: lot.production_date,
                establishment_number: lot.establishment_number.clone(),
            })
            .collect(),
    })
}

impl Aggregate for PurchaseOrder {
    const TYPE: &'static str = PURCHASE_ORDER_TYPE;
    type Command = PurchaseOrderCommand;
    type Event = PurchaseOrderEvent;
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
        use PurchaseOrderStatus as S;
        match event {
            PurchaseOrderEvent::Created {
                order_number,
                header,
                lines,
                total,
            } => {
                self.status = Some(S::Draft);
                self.order_number = Some(order_number);
                self.header = Some(header);
                self.lines = lines
                    .into_iter()
                    .map(|line| PurchaseOrderLine {
                        line,
                        received_weight: None,
                        received_quantity: None,
                        received_amount: None,
                        lots: Vec::new(),
                    })
                    .collect();
                self.total = total;
            }
            PurchaseOrderEvent::HeaderChanged { header, .. } => self.header = Some(header),
            PurchaseOrderEvent::LineAdded { line, total } => {
                self.lines.push(PurchaseOrderLine {
                    line,
                    received_weight: None,
                    received_quantity: None,
                    received_amount: None,
                    lots: Vec::new(),
                });
                self.total = total;
            }
            PurchaseOrderEvent::LineChanged {
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
            PurchaseOrderEvent::LineRemoved { line, total } => {
                self.lines.retain(|l| l.line.line_id != line.line_id);
                self.total = total;
            }
            PurchaseOrderEvent::Submitted { .. } => self.status = Some(S::Submitted),
            PurchaseOrderEvent::Approved => self.status = Some(S::Approved),
            PurchaseOrderEvent::Rejected { reason } => {
                self.status = Some(S::Draft);
                self.last_reject_reason = Some(reason);
            }
            PurchaseOrderEvent::Cancelled { reason, .. } => {
                self.status = Some(S::Cancelled);
                self.cancel_reason = Some(reason);
            }
            PurchaseOrderEvent::ReceiptRecorded {
                receipt_id,
                received_on,
                complete,
                lines,
                received_total,
                ..
            } => {
                for received in &lines {
                    if let Some(line) = self
                        .lines
                        .iter_mut()
                        .find(|l| l.line.line_id == received.line_id)
                    {
                        line.received_weight = Some(received.received_weight_total);
                        line.received_quantity = received.received_quantity_total;
                        line.received_amount = Some(received.received_amount);
                        line.lots.extend(received.lots.iter().cloned());
                    }
                }
                self.received_total = Some(received_total);
                self.status = Some(if complete {
                    S::Received
                } else {
                    S::PartiallyReceived
                });
                self.receipts.push(Receipt {
                    receipt_id,
                    received_on,
                    complete,
                    lines,
                });
            }
            PurchaseOrderEvent::PaymentRecorded {
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
            PurchaseOrderEvent::NoteAdded { note_id, text } => {
                self.notes.push(Note { note_id, text });
            }
            PurchaseOrderEvent::Closed => self.status = Some(S::Closed),
            PurchaseOrderEvent::ClaimRaised {
                claim_id,
                reason,
                lines,
                notes,
                claimed_amount,
                source_sales_claim_id,
            } => self.claims.push(Claim::raised(
                claim_id,
                reason,
                lines,
                notes,
                claimed_amount,
                source_sales_claim_id,
            )),
            PurchaseOrderEvent::ClaimAccepted {
                claim_id,
                accepted_amount,
                credit_note_number,
                credits,
                ..
            } => {
                if let Some(claim) = self.claims.iter_mut().find(|c| c.claim_id == claim_id) {
                    claim.status = ClaimStatus::Accepted;
                    claim.accepted_amount = Some(accepted_amount);
                    claim.credit_note_number = credit_note_number;
                }
                self.credits = credits;
            }
            PurchaseOrderEvent::ClaimRejected {
                claim_id, reason, ..
            } => {
                if let Some(claim) = self.claims.iter_mut().find(|c| c.claim_id == claim_id) {
                    claim.status = ClaimStatus::Rejected;
                    claim.reject_reason = Some(reason);
                }
            }
            PurchaseOrderEvent::RefundRecorded {
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
