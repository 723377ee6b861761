//! Pieces shared by purchase and sales orders: payments, notes, claims, refunds, and the
//! checks both run.
//!
//! # Money
//!
//! Both orders settle the same way: `outstanding = amount due − credits − payments +
//! refunds`, where credits are the accepted amounts of claims. A payment may not take
//! outstanding below zero; a refund is only possible while it is below zero and may bring it
//! back to zero at most; an order closes only at zero with no claim open. See
//! [`outstanding`] and [`PaymentStatus::of`].
//!
//! The public types are re-exported from [`crate::purchase_order`] and
//! [`crate::sales_order`], so either path works.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DomainError, FieldError};
use crate::services::{DomainServices, ReferenceType};
use crate::values::{
    choice, CreditNoteNumber, LongText, Money, NoteText, PaymentMethod, PaymentStatus, Reason,
    ShortText, Weight,
};

/// The most lines one order may carry. Every line is in the order's document, in every list
/// page that shows the order and, on a create, in one event; an unbounded count would let one
/// request make an event too large to deliver and a document too large to page through.
/// Five hundred is far above any load a trader books on one order.
pub const MAX_LINES_PER_ORDER: usize = 500;

/// The most notes one order may carry, for the same reason as [`MAX_LINES_PER_ORDER`]: each
/// note stays in the order's document for ever.
pub const MAX_NOTES_PER_ORDER: usize = 1_000;

/// The earliest date an order accepts (`0001-01-01`): dates are `YYYY-MM-DD` with a
/// four-digit year, and a date outside them could not be stored or shown as such.
pub const EARLIEST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(1, 1, 1) {
    Some(date) => date,
    None => panic!("0001-01-01 is a date"),
};

/// The latest date an order accepts (`9999-12-31`), see [`EARLIEST_DATE`].
pub const LATEST_DATE: NaiveDate = match NaiveDate::from_ymd_opt(9999, 12, 31) {
    Some(date) => date,
    None => panic!("9999-12-31 is a date"),
};

/// A payment to record against an order.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct NewPayment {
    /// Chosen by the caller, so a retried request cannot pay twice.
    pub payment_id: Uuid,
    /// Must be greater than zero and not above what is outstanding.
    pub amount: Money,
    /// When the money moved; not in the future.
    pub paid_on: NaiveDate,
    /// How it was paid.
    pub method: PaymentMethod,
    /// The bank or cheque reference, if any.
    #[serde(default)]
    pub reference: Option<ShortText>,
}

/// A recorded payment, as the order keeps it.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct Payment {
    /// The payment's id.
    pub payment_id: Uuid,
    /// The amount paid.
    pub amount: Money,
    /// When the money moved.
    pub paid_on: NaiveDate,
    /// How it was paid.
    pub method: PaymentMethod,
    /// The bank or cheque reference, if any.
    pub reference: Option<ShortText>,
}

/// A note on an order.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct Note {
    /// The note's id.
    pub note_id: Uuid,
    /// What it says.
    pub text: NoteText,
}

/// The most claims one order may carry, for the same reason as [`MAX_NOTES_PER_ORDER`].
pub const MAX_CLAIMS_PER_ORDER: usize = 100;

/// The most refunds one order may carry: a refund only ever brings a negative outstanding
/// back towards zero, so a handful is all an order sees.
pub const MAX_REFUNDS_PER_ORDER: usize = 100;

/// The most lots one receipt or shipment line may carry.
pub const MAX_LOTS_PER_LINE: usize = 100;

choice!(
    /// Why goods are claimed against: the trade's usual complaints about a load.
    ClaimReason {
        /// Less weight arrived than was invoiced.
        ShortWeight => "short_weight",
        /// The product is not of the agreed quality.
        Quality => "quality",
        /// The load arrived too warm (or thawed).
        Temperature => "temperature",
        /// Boxes or product damaged.
        Damage => "damage",
        /// The price charged is not the price agreed.
        Pricing => "pricing",
        /// Anything else.
        Other => "other",
    }
);

choice!(
    /// Where a claim is: raised, then accepted (with a credit) or rejected by a manager.
    ClaimStatus {
        /// Raised; waiting for a manager's decision. An order with an open claim cannot close.
        Open => "open",
        /// Accepted: its accepted amount is credited against the order.
        Accepted => "accepted",
        /// Rejected: it credits nothing.
        Rejected => "rejected",
    }
);

/// One line of a claim: how much is claimed against one order line.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct ClaimLine {
    /// The order line claimed against.
    pub line_id: Uuid,
    /// The amount claimed, in the order's currency: above zero; with the line's other
    /// claims not above the line's received (purchase) or shipped (sales) amount.
    pub amount: Money,
    /// The weight the claim is about (short weight, condemned product), if relevant; not
    /// above the line's received or shipped weight.
    #[serde(default)]
    pub weight: Option<Weight>,
    /// What is wrong with this line.
    #[serde(default)]
    pub description: Option<LongText>,
}

/// A claim to raise against an order.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct NewClaim {
    /// Chosen by the caller; unique within the order (and, for sales claims, the tenant).
    pub claim_id: Uuid,
    /// Why.
    pub reason: ClaimReason,
    /// What is claimed, per order line: at least one, each line once.
    pub lines: Vec<ClaimLine>,
    /// Free notes.
    #[serde(default)]
    pub notes: Option<LongText>,
}

/// A claim as the order keeps it.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct Claim {
    /// The claim's id.
    pub claim_id: Uuid,
    /// Open, accepted or rejected.
    pub status: ClaimStatus,
    /// Why it was raised.
    pub reason: ClaimReason,
    /// What is claimed, per line.
    pub lines: Vec<ClaimLine>,
    /// Free notes.
    pub notes: Option<LongText>,
    /// The sum of the lines' amounts.
    pub claimed_amount: Money,
    /// What was credited, once accepted.
    pub accepted_amount: Option<Money>,
    /// The credit note, once accepted: ours on a sales claim, the supplier's credit memo
    /// number (if it sent one) on a purchase claim.
    pub credit_note_number: Option<CreditNoteNumber>,
    /// Why it was rejected, if it was.
    pub reject_reason: Option<Reason>,
    /// On a purchase claim: the sales claim it passes on to the supplier (back to back).
    pub source_sales_claim_id: Option<Uuid>,
}

impl Claim {
    /// The claim as raised: open, nothing accepted.
    pub(crate) fn raised(
        claim_id: Uuid,
        reason: ClaimReason,
        lines: Vec<ClaimLine>,
        notes: Option<LongText>,
        claimed_amount: Money,
        source_sales_claim_id: Option<Uuid>,
    ) -> Self {
        Self {
            claim_id,
            status: ClaimStatus::Open,
            reason,
            lines,
            notes,
            claimed_amount,
            accepted_amount: None,
            credit_note_number: None,
            reject_reason: None,
            source_sales_claim_id,
        }
    }

    /// What the claim holds of `line_id`'s amount: what it claimed of the line while open or
    /// accepted (an accepted claim credits at most that), nothing once rejected. A line's
    /// claims together hold at most its amount, so credits never exceed the amount due.
    fn holds(&self, line_id: Uuid) -> Money {
        if self.status == ClaimStatus::Rejected {
            return Money::zero();
        }
        self.lines
            .iter()
            .filter(|l| l.line_id == line_id)
            .map(|l| l.amount)
            .sum()
    }
}

/// A refund to record: money returned (by the supplier on a purchase order, by us to the
/// customer on a sales order).
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct NewRefund {
    /// Chosen by the caller, so a retried request cannot refund twice.
    pub refund_id: Uuid,
    /// Above zero and not above what was overpaid (−outstanding).
    pub amount: Money,
    /// When the money moved; not in the future.
    pub refunded_on: NaiveDate,
    /// How it moved.
    pub method: PaymentMethod,
    /// The bank or cheque reference, if any.
    #[serde(default)]
    pub reference: Option<ShortText>,
}

/// A recorded refund, as the order keeps it.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
pub struct Refund {
    /// The refund's id.
    pub refund_id: Uuid,
    /// The amount returned.
    pub amount: Money,
    /// When the money moved.
    pub refunded_on: NaiveDate,
    /// How.
    pub method: PaymentMethod,
    /// The bank or cheque reference, if any.
    pub reference: Option<ShortText>,
}

/// The one formula of what is still owed on an order: `amount due − credits − payments +
/// refunds`. Below zero, more was paid than is owed and the difference is to be refunded.
pub fn outstanding(
    amount_due: Money,
    credits: Money,
    amount_paid: Money,
    refunded: Money,
) -> Money {
    amount_due - credits - amount_paid + refunded
}

/// An order's money after an event: the derived facts money events carry, so views need
/// not work the formula out again.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Settlement {
    /// What is owed before credits, payments and refunds.
    pub(crate) amount_due: Money,
    /// Sum of accepted claims.
    pub(crate) credits: Money,
    /// Sum of payments.
    pub(crate) amount_paid: Money,
    /// Sum of refunds.
    pub(crate) refunded: Money,
}

impl Settlement {
    /// See [`outstanding`].
    pub(crate) fn outstanding(&self) -> Money {
        outstanding(
            self.amount_due,
            self.credits,
            self.amount_paid,
            self.refunded,
        )
    }

    /// See [`PaymentStatus::of`].
    pub(crate) fn payment_status(&self) -> PaymentStatus {
        PaymentStatus::of(self.amount_paid, self.credits, self.outstanding())
    }
}

/// What an order line may be claimed against: its received (purchase) or shipped (sales)
/// amount and weight.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Claimable {
    /// The line's received or shipped amount.
    pub(crate) amount: Money,
    /// The line's received or shipped weight.
    pub(crate) weight: Weight,
}

/// Checks a new claim against the order's claims and its lines (`claimable` answers, for a
/// line id, what the line may be claimed against, or why it may not be claimed at all).
/// Returns the claimed amount.
pub(crate) fn check_new_claim(
    claim: &NewClaim,
    existing: &[Claim],
    claimable: impl Fn(Uuid) -> Result<Claimable, &'static str>,
) -> Result<Money, DomainError> {
    if existing.len() >= MAX_CLAIMS_PER_ORDER {
        return Err(DomainError::invalid(
            "claims",
            format!("an order may have at most {MAX_CLAIMS_PER_ORDER} claims"),
        ));
    }
    check_line_count(claim.lines.len())?;
    let mut checks = Checks::new();
    if existing.iter().any(|c| c.claim_id == claim.claim_id) {
        checks.add("claim_id", "a claim with this id is already on the order");
    }
    if claim.lines.is_empty() {
        checks.add("lines", "must name at least one line");
    }
    let repeated = repeated_positions(claim.lines.iter().map(|l| l.line_id));
    for (i, line) in claim.lines.iter().enumerate() {
        if repeated.contains(&i) {
            checks.add(format!("lines[{i}].line_id"), "repeats an earlier line");
            continue;
        }
        if !line.amount.is_positive() {
            checks.add(format!("lines[{i}].amount"), "must be greater than zero");
        }
        let limit = match claimable(line.line_id) {
            Ok(limit) => limit,
            Err(why) => {
                checks.add(format!("lines[{i}].line_id"), why);
                continue;
            }
        };
        let held: Money = existing.iter().map(|c| c.holds(line.line_id)).sum();
        let room = limit.amount - held;
        if line.amount.is_positive() && line.amount > room {
            checks.add(
                format!("lines[{i}].amount"),
                format!(
                    "must not exceed the line's amount of {} less {held} already claimed (at most {room})",
                    limit.amount
                ),
            );
        }
        if line.weight.is_some_and(|w| w > limit.weight) {
            checks.add(
                format!("lines[{i}].weight"),
                format!("must not exceed the line's weight of {}", limit.weight),
            );
        }
    }
    checks.finish()?;
    Ok(claim.lines.iter().map(|l| l.amount).sum())
}

/// The open claim `claim_id`: `ClaimNotFound` if there is none, `NotAllowedBecause` if it
/// was already decided.
pub(crate) fn open_claim<'a>(
    claims: &'a [Claim],
    claim_id: Uuid,
    action: &'static str,
) -> Result<&'a Claim, DomainError> {
    let claim = claims
        .iter()
        .find(|c| c.claim_id == claim_id)
        .ok_or(DomainError::ClaimNotFound(claim_id))?;
    if claim.status != ClaimStatus::Open {
        return Err(DomainError::NotAllowedBecause {
            action,
            reason: format!("the claim is already {}", claim.status),
        });
    }
    Ok(claim)
}

/// The amount to accept of `claim`: `accepted` if given (above zero, not above the claimed
/// amount), else the claimed amount.
pub(crate) fn accepted_amount(
    claim: &Claim,
    accepted: Option<Money>,
) -> Result<Money, DomainError> {
    let Some(amount) = accepted else {
        return Ok(claim.claimed_amount);
    };
    if !amount.is_positive() {
        return Err(DomainError::invalid(
            "accepted_amount",
            "must be greater than zero (reject the claim to credit nothing)",
        ));
    }
    if amount > claim.claimed_amount {
        return Err(DomainError::invalid(
            "accepted_amount",
            format!(
                "must not exceed the claimed amount of {}",
                claim.claimed_amount
            ),
        ));
    }
    Ok(amount)
}

/// Whether any claim is still open (an order closes only when none is).
pub(crate) fn has_open_claim(claims: &[Claim]) -> bool {
    claims.iter().any(|c| c.status == ClaimStatus::Open)
}

/// Checks a refund against what is outstanding (a refund only while below zero, up to
/// −outstanding), today's date and earlier refunds.
pub(crate) fn check_refund(
    refund: &NewRefund,
    outstanding: Money,
    today: NaiveDate,
    earlier: &[Refund],
) -> Result<(), DomainError> {
    if !outstanding.is_negative() {
        return Err(DomainError::NotAllowedBecause {
            action: "record a refund",
            reason: format!("nothing was overpaid ({outstanding} is outstanding)"),
        });
    }
    if earlier.len() >= MAX_REFUNDS_PER_ORDER {
        return Err(DomainError::invalid(
            "refunds",
            format!("an order may have at most {MAX_REFUNDS_PER_ORDER} refunds"),
        ));
    }
    let mut checks = Checks::new();
    if earlier.iter().any(|r| r.refund_id == refund.refund_id) {
        checks.add("refund_id", "a refund with this id is already recorded");
    }
    let overpaid = -outstanding;
    if !refund.amount.is_positive() {
        checks.add("amount", "must be greater than zero");
    } else if refund.amount > overpaid {
        checks.add(
            "amount",
            format!("must not exceed the overpaid amount of {overpaid}"),
        );
    }
    if refund.refunded_on > today {
        checks.add("refunded_on", "must not be in the future");
    }
    check_dates(&mut checks, [("refunded_on", Some(refund.refunded_on))]);
    checks.finish()
}

/// The sum of some weights, or `None` if it overflows a weight.
pub(crate) fn sum_weights(weights: impl IntoIterator<Item = Weight>) -> Option<Weight> {
    let mut weights = weights.into_iter();
    let first = weights.next()?;
    weights.try_fold(first, |sum, w| sum.checked_add(&w).ok())
}

/// Collects field errors so that a client hears about every bad field at once.
#[derive(Default)]
pub(crate) struct Checks {
    /// Errors found so far.
    errors: Vec<FieldError>,
}

impl Checks {
    /// No errors yet.
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Records an error on `field`.
    pub(crate) fn add(&mut self, field: impl Into<String>, message: impl Into<String>) {
        self.errors.push(FieldError::new(field, message));
    }

    /// Records an error on `field` unless `ok`.
    pub(crate) fn require(&mut self, ok: bool, field: impl Into<String>, message: &str) {
        if !ok {
            self.add(field, message);
        }
    }

    /// Checks that the reference exists and is active; a failed lookup is `Unavailable`.
    pub(crate) async fn reference(
        &mut self,
        services: &DomainServices,
        kind: ReferenceType,
        id: Uuid,
        field: impl Into<String>,
    ) -> Result<(), DomainError> {
        match services.lookups().reference(kind, id).await? {
            None => self.add(field, format!("no such {kind}")),
            Some(summary) if !summary.active => self.add(field, format!("{kind} is inactive")),
            Some(_) => {}
        }
        Ok(())
    }

    /// Checks that the purchase order exists; a failed lookup is `Unavailable`.
    pub(crate) async fn purchase_order(
        &mut self,
        services: &DomainServices,
        id: Uuid,
        field: impl Into<String>,
    ) -> Result<(), DomainError> {
        if !services.lookups().purchase_order_exists(id).await? {
            self.add(field, "no such purchase order");
        }
        Ok(())
    }

    /// `Ok` if nothing was found, else `Invalid` with every error.
    pub(crate) fn finish(self) -> Result<(), DomainError> {
        if self.errors.is_empty() {
            Ok(())
        } else {
            Err(DomainError::Invalid(self.errors))
        }
    }
}

/// Checks a delivery date against the order date on the header as it would be.
pub(crate) fn check_delivery_date(
    checks: &mut Checks,
    order_date: NaiveDate,
    delivery_date: Option<NaiveDate>,
) {
    if delivery_date.is_some_and(|d| d < order_date) {
        checks.add("delivery_date", "must not be before the order date");
    }
}

/// Checks that each date given is within [`EARLIEST_DATE`]..=[`LATEST_DATE`]: JSON reads
/// dates with five-digit and negative years too, which neither `YYYY-MM-DD` nor the read
/// models can hold, and due dates computed from them could overflow.
pub(crate) fn check_dates<'a>(
    checks: &mut Checks,
    dates: impl IntoIterator<Item = (&'a str, Option<NaiveDate>)>,
) {
    for (field, date) in dates {
        if date.is_some_and(|d| !(EARLIEST_DATE..=LATEST_DATE).contains(&d)) {
            checks.add(field, "must be a date from 0001-01-01 to 9999-12-31");
        }
    }
}

/// Refuses an order of `count` lines when that is more than [`MAX_LINES_PER_ORDER`]; the
/// error names `lines`, the field that holds them. Checked before anything else about the
/// lines, so an oversized request costs no lookups.
pub(crate) fn check_line_count(count: usize) -> Result<(), DomainError> {
    if count > MAX_LINES_PER_ORDER {
        return Err(DomainError::invalid(
            "lines",
            format!("an order may have at most {MAX_LINES_PER_ORDER} lines"),
        ));
    }
    Ok(())
}

/// Refuses a note that would take an order past [`MAX_NOTES_PER_ORDER`]; the error names
/// `notes`, the order's list of notes.
pub(crate) fn check_note_count(existing: usize) -> Result<(), DomainError> {
    if existing >= MAX_NOTES_PER_ORDER {
        return Err(DomainError::invalid(
            "notes",
            format!("an order may have at most {MAX_NOTES_PER_ORDER} notes"),
        ));
    }
    Ok(())
}

/// Checks a payment against what is outstanding, today's date and earlier payments.
pub(crate) fn check_payment(
    payment: &NewPayment,
    outstanding: Money,
    today: NaiveDate,
    earlier: &[Payment],
) -> Result<(), DomainError> {
    let mut checks = Checks::new();
    if earlier.iter().any(|p| p.payment_id == payment.payment_id) {
        checks.add("payment_id", "a payment with this id is already recorded");
    }
    if !payment.amount.is_positive() {
        checks.add("amount", "must be greater than zero");
    } else if payment.amount > outstanding {
        checks.add(
            "amount",
            format!("must not exceed the outstanding amount of {outstanding}"),
        );
    }
    if payment.paid_on > today {
        checks.add("paid_on", "must not be in the future");
    }
    check_dates(&mut checks, [("paid_on", Some(payment.paid_on))]);
    checks.finish()
}

/// The positions of ids that repeat an earlier id in the same request (line ids in a
/// create, a receipt or a shipment).
pub(crate) fn repeated_positions(ids: impl IntoIterator<Item = Uuid>) -> Vec<usize> {
    let mut seen = HashSet::new();
    ids.into_iter()
        .enumerate()
        .filter(|(_, id)| !seen.insert(*id))
        .map(|(i, _)| i)
        .collect()
}
