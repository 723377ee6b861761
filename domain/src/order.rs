//! Pieces shared by purchase and sales orders: payments, notes, and the checks both run.
//!
//! The public types are re-exported from [`crate::purchase_order`] and
//! [`crate::sales_order`], so either path works.

use std::collections::HashSet;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::error::{DomainError, FieldError};
use crate::services::{DomainServices, ReferenceType};
use crate::values::{Money, NoteText, PaymentMethod, ShortText};

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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
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
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
pub struct Note {
    /// The note's id.
    pub note_id: Uuid,
    /// What it says.
    pub text: NoteText,
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
