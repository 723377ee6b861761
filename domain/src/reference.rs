//! Reference data: suppliers, customers, products, plants and carriers.
//!
//! The five kinds share one aggregate, [`Reference<K>`], and differ only in their details
//! type `K` (a [`ReferenceKind`]). Each kind's details struct is also its create body and
//! has a PATCH body (`SupplierPatch`, ...) where every field is optional. Changes are
//! events like everything else, so reference data has an audit trail too.
//!
//! # Layout
//!
//! The files are private; everything is used from here (`crate::reference::Supplier`).
//!
//! - `kinds`: [`ReferenceKind`] and the five kinds with their PATCH bodies.
//! - `aggregate`: [`Reference<K>`], its commands and events, and the per-kind aliases
//!   ([`SupplierAggregate`], [`SupplierEvent`], [`SupplierCommand`], ...).

mod aggregate;
mod kinds;

#[cfg(test)]
mod tests;

pub use aggregate::{
    CarrierAggregate, CarrierCommand, CarrierEvent, CustomerAggregate, CustomerCommand,
    CustomerEvent, PlantAggregate, PlantCommand, PlantEvent, ProductAggregate, ProductCommand,
    ProductEvent, Reference, ReferenceCommand, ReferenceEvent, SupplierAggregate, SupplierCommand,
    SupplierEvent,
};
pub use kinds::{
    Carrier, CarrierPatch, Customer, CustomerPatch, Plant, PlantPatch, Product, ProductPatch,
    ReferenceKind, Supplier, SupplierPatch, PERSONAL_FIELDS,
};
