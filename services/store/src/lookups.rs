//! The domain's [`Lookups`] answered from the event store, inside the command's transaction.
//!
//! A command holds exactly one connection from start to commit: its reference checks go
//! through the same transaction as its append. (Lookups through the pool would need a second
//! connection while the first waits on a tenant's number-series row: under load every
//! connection could end up waiting for one more.)

use async_trait::async_trait;
use cqrs_es::Aggregate;
use oms_domain::purchase_order::PURCHASE_ORDER_TYPE;
use oms_domain::reference::{
    Carrier, Customer, Plant, Product, Reference, ReferenceKind, Supplier,
};
use oms_domain::services::{LookupError, Lookups, ReferenceSummary, ReferenceType};
use sqlx::{Postgres, Transaction};
use std::sync::Arc;
use tokio::sync::Mutex;
use uuid::Uuid;

use crate::{EventStore, StoredEvent};

/// A command's open transaction, shared between the pipeline and the lookups of `handle`.
pub type SharedTx = Arc<Mutex<Transaction<'static, Postgres>>>;

/// Lookups of one tenant through a command's transaction.
pub struct TxLookups {
    store: EventStore,
    tenant: Uuid,
    tx: SharedTx,
}

impl TxLookups {
    /// Lookups for `tenant` through `tx`.
    pub fn new(store: EventStore, tenant: Uuid, tx: SharedTx) -> Self {
        Self { store, tenant, tx }
    }

    async fn stream(
        &self,
        aggregate_type: &str,
        id: Uuid,
    ) -> Result<Vec<StoredEvent>, LookupError> {
        let mut tx = self.tx.lock().await;
        EventStore::load_stream_with(&mut **tx, self.tenant, aggregate_type, id)
            .await
            .map_err(|err| LookupError(err.to_string()))
    }

    async fn reference_of<K: ReferenceKind>(
        &self,
        id: Uuid,
    ) -> Result<Option<ReferenceSummary>, LookupError>
    where
        Reference<K>: Aggregate,
    {
        let events = self.stream(K::TYPE, id).await?;
        if events.is_empty() {
            return Ok(None);
        }
        let reference: Reference<K> = self
            .store
            .fold(&events)
            .map_err(|err| LookupError(err.to_string()))?;
        Ok(Some(ReferenceSummary {
            active: reference.active,
        }))
    }
}

#[async_trait]
impl Lookups for TxLookups {
    async fn reference(
        &self,
        kind: ReferenceType,
        id: Uuid,
    ) -> Result<Option<ReferenceSummary>, LookupError> {
        match kind {
            ReferenceType::Supplier => self.reference_of::<Supplier>(id).await,
            ReferenceType::Customer => self.reference_of::<Customer>(id).await,
            ReferenceType::Product => self.reference_of::<Product>(id).await,
            ReferenceType::Plant => self.reference_of::<Plant>(id).await,
            ReferenceType::Carrier => self.reference_of::<Carrier>(id).await,
        }
    }

    async fn purchase_order_exists(&self, id: Uuid) -> Result<bool, LookupError> {
        let mut tx = self.tx.lock().await;
        EventStore::stream_exists_with(&mut **tx, self.tenant, PURCHASE_ORDER_TYPE, id)
            .await
            .map_err(|err| LookupError(err.to_string()))
    }
}
