//! Value types that cannot hold invalid values.
//!
//! Every type here has private fields and is built only by `parse`, `TryFrom` or
//! deserialization, which all run the same checks ("parse, don't validate"). Once a
//! command holds a [`Weight`] or a [`Name`], the aggregate never has to check it again.
//!
//! Decimal types ([`Weight`], [`UnitPrice`], [`Money`]) are exact and travel in JSON as
//! strings (`"2.1575"`, `"86300.00"`). They also accept a JSON number, read through its
//! shortest decimal text, so `2.1575` and `"2.1575"` mean the same; strings are exact.
//!
//! # Layout
//!
//! The files are private; everything is used from here (`crate::values::Money`).
//!
//! - `decimal`: the strict decimal text and JSON reading the decimal types share.
//! - `weight`: [`Weight`] and [`Quantity`], how much is on a line.
//! - `money`: [`UnitPrice`] and [`Money`].
//! - `currency`: [`Currency`].
//! - `text`: [`Name`], [`Code`], [`Reason`], [`NoteText`], [`ShortText`], [`LongText`],
//!   [`Email`].
//! - `numbers`: [`OrderNumber`], [`InvoiceNumber`], [`CreditNoteNumber`], [`LotNumber`] and
//!   the [`NumberSeries`] that assigns them.
//! - `tenant`: [`TenantName`] and [`TenantSlug`], a tenant's own rules.
//! - `choice`, `trade`, `terms`: closed choice lists ([`Protein`], [`CreditTerms`], ...).
//! - `patch`: [`double_option`], [`not_null`] and the macro behind every PATCH body.

mod choice;
mod currency;
mod decimal;
mod money;
mod numbers;
mod patch;
mod tenant;
mod terms;
mod text;
mod trade;
mod weight;

#[cfg(test)]
mod tests;

pub(crate) use choice::choice;
pub use currency::Currency;
pub use money::{Money, UnitPrice};
pub use numbers::{CreditNoteNumber, InvoiceNumber, LotNumber, NumberSeries, OrderNumber};
pub use patch::{double_option, not_null};
pub(crate) use patch::{patch_nullable, patch_required, patchable};
pub use tenant::{TenantName, TenantSlug};
pub use terms::{CreditTerms, PaymentMethod, PaymentStatus, PaymentTerms};
pub use text::{Code, Email, LongText, Name, NoteText, Reason, ShortText};
pub use trade::{
    CarrierType, Edible, FreshOrFrozen, Logistics, NetOrCatch, PackageType, Protein, WeightUnit,
};
pub use weight::{Quantity, Weight};

/// Why a value was refused, in words a client can show next to the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl ValueError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
