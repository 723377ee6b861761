//! Order and invoice numbers: the client's own, or one the service assigns.

use super::text::{text_type, TextKind};

text_type!(
    /// An order number (`PO-000001`, or the client's own): 1 to 50 characters, no spaces.
    OrderNumber, 1, 50, TextKind::Word
);
text_type!(
    /// An invoice number (`INV-000001`, or the client's own): 1 to 50 characters, no spaces.
    InvoiceNumber, 1, 50, TextKind::Word
);

/// Builds `PREFIX-000042`: six digits zero-padded, wider when the counter needs it.
/// Whitespace in the prefix is dropped and the prefix is cut to 29 characters so that the
/// result is always a valid number (a u64 has at most 20 digits).
fn assigned_number(prefix: &str, n: u64) -> String {
    let prefix: String = prefix
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .take(29)
        .collect();
    format!("{prefix}-{n:06}")
}

impl OrderNumber {
    /// The number the service assigns when the client gives none: `assigned("PO", 1)` is
    /// `PO-000001`.
    pub fn assigned(prefix: &str, n: u64) -> Self {
        Self(assigned_number(prefix, n))
    }
}

impl InvoiceNumber {
    /// The number the service assigns when the client gives none: `assigned("INV", 1)` is
    /// `INV-000001`.
    pub fn assigned(prefix: &str, n: u64) -> Self {
        Self(assigned_number(prefix, n))
    }
}
