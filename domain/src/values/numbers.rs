//! Order, invoice, credit note and lot numbers: the client's own, or the next of a [`NumberSeries`].

use super::text::{text_type, TextKind};

text_type!(
    /// An order number (`PO-000001`, or the client's own): 1 to 50 characters, no spaces.
    OrderNumber, 1, 50, TextKind::Word
);
text_type!(
    /// An invoice number (`INV-000001`, or the client's own): 1 to 50 characters, no spaces.
    InvoiceNumber, 1, 50, TextKind::Word
);
text_type!(
    /// A credit note number: ours on a sales claim (`CN-000001`, or the client's own), the
    /// supplier's credit memo number on a purchase claim. 1 to 50 characters, no spaces.
    CreditNoteNumber, 1, 50, TextKind::Word
);
text_type!(
    /// A supplier's lot number, as printed on the boxes (`A123`): 1 to 50 characters, no
    /// spaces, so that the key `(supplier, lot number)` a recall asks by is exact.
    LotNumber, 1, 50, TextKind::Word
);

/// A series the service numbers purchase orders, sales orders or invoices from when the
/// client gives no number of its own: the one place that names each series' counter, the
/// uniqueness scope its numbers are claimed in and their prefix, so the store that counts,
/// the aggregates that claim and the format that prints cannot drift apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumberSeries {
    /// The series' name in the store's number series table, where its per-tenant counter is
    /// kept.
    pub series: &'static str,
    /// The uniqueness scope its numbers are claimed in; numbers the client chose share it, so
    /// an assigned number never collides with one of the client's.
    pub scope: &'static str,
    /// What its numbers start with (`PO`, `SO`, `INV`), so a reader tells them apart.
    pub prefix: &'static str,
}

impl NumberSeries {
    /// Purchase order numbers: `PO-000001`, ...
    pub const PURCHASE_ORDER: Self = Self {
        series: "purchase_order",
        scope: "purchase_order_number",
        prefix: "PO",
    };
    /// Sales order numbers: `SO-000001`, ...
    pub const SALES_ORDER: Self = Self {
        series: "sales_order",
        scope: "sales_order_number",
        prefix: "SO",
    };
    /// Invoice numbers: `INV-000001`, ...
    pub const INVOICE: Self = Self {
        series: "invoice",
        scope: "invoice_number",
        prefix: "INV",
    };
    /// Our credit note numbers, given on accepting a sales claim: `CN-000001`, ...
    pub const CREDIT_NOTE: Self = Self {
        series: "credit_note",
        scope: "credit_note_number",
        prefix: "CN",
    };

    /// The `n`-th number of the series, such as `PO-000042`: the format of every assigned
    /// number (see [`OrderNumber::assigned`]).
    pub fn format(&self, n: u64) -> String {
        assigned_number(self.prefix, n)
    }
}

/// Builds `PREFIX-000042`: six digits zero-padded (so that numbers sort as text below a
/// million), wider when the counter needs it. Whitespace in the prefix is dropped and the
/// prefix is cut to 29 characters so that the result is always a valid number (a u64 has at
/// most 20 digits).
fn assigned_number(prefix: &str, n: u64) -> String {
    let prefix: String = prefix
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .take(29)
        .collect();
    format!("{prefix}-{n:06}")
}

impl OrderNumber {
    /// The number the service assigns when the client gives none, in the format of
    /// [`NumberSeries::format`]: `assigned(NumberSeries::PURCHASE_ORDER.prefix, 1)` is
    /// `PO-000001`.
    pub fn assigned(prefix: &str, n: u64) -> Self {
        Self(assigned_number(prefix, n))
    }
}

impl CreditNoteNumber {
    /// The number the service assigns when the client gives none, in the format of
    /// [`NumberSeries::format`]: `assigned(NumberSeries::CREDIT_NOTE.prefix, 1)` is
    /// `CN-000001`.
    pub fn assigned(prefix: &str, n: u64) -> Self {
        Self(assigned_number(prefix, n))
    }
}

impl InvoiceNumber {
    /// The number the service assigns when the client gives none, in the format of
    /// [`NumberSeries::format`]: `assigned(NumberSeries::INVOICE.prefix, 1)` is
    /// `INV-000001`.
    pub fn assigned(prefix: &str, n: u64) -> Self {
        Self(assigned_number(prefix, n))
    }
}
