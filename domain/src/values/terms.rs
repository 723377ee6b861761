//! How and when money changes hands: payment and credit terms, payment methods and the
//! payment status derived from payments.

use chrono::{Days, NaiveDate};

use super::choice::choice;
use super::Money;

choice!(
    /// How a supplier or customer is usually paid.
    PaymentTerms {
        /// Wire transfer.
        Wire => "wire",
        /// ACH transfer.
        Ach => "ach",
        /// Cheque.
        Check => "check",
        /// Credit card.
        CreditCard => "credit_card",
    }
);

choice!(
    /// When payment is due.
    CreditTerms {
        /// Wired one day before delivery.
        Wire1DayPrior => "wire_1_day_prior",
        /// Net 7 days.
        Net7 => "net_7",
        /// Net 15 days.
        Net15 => "net_15",
        /// Net 30 days.
        Net30 => "net_30",
        /// Net 45 days.
        Net45 => "net_45",
        /// Net 60 days.
        Net60 => "net_60",
    }
);

impl CreditTerms {
    /// Days of credit the terms grant: N for net N, none for a wire before delivery. Not the
    /// distance to the due date (a wire before delivery is due the day *before* the
    /// reference date): ask [`CreditTerms::due_date`] when payment is due.
    pub fn days(&self) -> i64 {
        match self {
            Self::Wire1DayPrior => 0,
            Self::Net7 => 7,
            Self::Net15 => 15,
            Self::Net30 => 30,
            Self::Net45 => 45,
            Self::Net60 => 60,
        }
    }

    /// When payment is due under these terms, counted from `reference`, the date the terms
    /// run from (for a purchase order, [`PurchaseOrder::payment_reference_date`]): net N is
    /// N days after it, a wire before delivery the day before it. The one place this rule
    /// lives: read models store its answer instead of working it out again. At the ends of
    /// the calendar the date stops at the first or last day rather than overflowing.
    ///
    /// [`PurchaseOrder::payment_reference_date`]: crate::purchase_order::PurchaseOrder::payment_reference_date
    pub fn due_date(&self, reference: NaiveDate) -> NaiveDate {
        match self {
            Self::Wire1DayPrior => reference.pred_opt().unwrap_or(NaiveDate::MIN),
            Self::Net7 | Self::Net15 | Self::Net30 | Self::Net45 | Self::Net60 => reference
                .checked_add_days(Days::new(self.days().unsigned_abs()))
                .unwrap_or(NaiveDate::MAX),
        }
    }
}

choice!(
    /// How a payment was actually made.
    PaymentMethod {
        /// Wire transfer.
        Wire => "wire",
        /// ACH transfer.
        Ach => "ach",
        /// Cheque.
        Check => "check",
        /// Credit card.
        CreditCard => "credit_card",
        /// Cash.
        Cash => "cash",
        /// Anything else.
        Other => "other",
    }
);

choice!(
    /// How much of an order's amount due has been paid, derived from payment events.
    PaymentStatus {
        /// Nothing paid yet.
        Unpaid => "unpaid",
        /// Something paid, less than the amount due.
        Partial => "partial",
        /// The amount due paid in full (or more, after a short receipt).
        Paid => "paid",
    }
);

impl PaymentStatus {
    /// The status for what has been paid against what is due: nothing paid is `unpaid`,
    /// less than due is `partial`, otherwise `paid`.
    pub fn of(amount_paid: Money, amount_due: Money) -> Self {
        if !amount_paid.is_positive() {
            Self::Unpaid
        } else if amount_paid < amount_due {
            Self::Partial
        } else {
            Self::Paid
        }
    }
}
