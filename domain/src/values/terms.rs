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
    /// How much of an order's amount due has been settled, derived from payment, credit and
    /// refund events.
    PaymentStatus {
        /// Nothing paid yet (credits alone may have reduced what is owed).
        Unpaid => "unpaid",
        /// Something paid, and something still outstanding.
        Partial => "partial",
        /// Nothing outstanding: settled by payments, credits or both.
        Paid => "paid",
        /// More paid than is owed (a short receipt or a credit after payment): money is to be
        /// refunded.
        Overpaid => "overpaid",
    }
);

impl PaymentStatus {
    /// The status from what has been paid (`amount_paid`, the sum of payments), credited
    /// (`credits`, the sum of accepted claims) and what is `outstanding` after payments,
    /// credits and refunds:
    ///
    /// - outstanding below zero is `overpaid`;
    /// - nothing outstanding, with something paid or credited, is `paid`;
    /// - otherwise nothing paid is `unpaid` (an order with nothing due and nothing paid too);
    /// - otherwise `partial`.
    pub fn of(amount_paid: Money, credits: Money, outstanding: Money) -> Self {
        if outstanding.is_negative() {
            Self::Overpaid
        } else if outstanding.is_zero() && (amount_paid.is_positive() || credits.is_positive()) {
            Self::Paid
        } else if !amount_paid.is_positive() {
            Self::Unpaid
        } else {
            Self::Partial
        }
    }
}
