//! The one aggregate all kinds of reference data share: registered, updated, deactivated and
//! reactivated, each change an event.

use chrono::{DateTime, Utc};
use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use super::kinds::{Carrier, Customer, Plant, Product, ReferenceKind, Supplier};
use crate::changes::{diff, Changes};
use crate::error::DomainError;
use crate::services::DomainServices;
use crate::{UniqueKeyChange, UniqueKeys};

/// One piece of reference data of kind `K`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[serde(bound(serialize = "K: Serialize", deserialize = "K: DeserializeOwned"))]
pub struct Reference<K> {
    /// The current details; `None` until registered.
    pub details: Option<K>,
    /// Whether it may be put on new orders and lines.
    pub active: bool,
    /// When its personal data was erased: from then on the personal fields are null in
    /// every view, and the key that decrypts them in stored events is gone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub personal_data_erased_at: Option<DateTime<Utc>>,
}

impl<K> Default for Reference<K> {
    fn default() -> Self {
        Self {
            details: None,
            active: false,
            personal_data_erased_at: None,
        }
    }
}

impl<K> Reference<K> {
    /// Whether it has been registered.
    pub fn exists(&self) -> bool {
        self.details.is_some()
    }
}

/// What can be asked of reference data.
#[derive(Clone, Debug)]
pub enum ReferenceCommand<K: ReferenceKind> {
    /// Register new reference data (active).
    Register(K),
    /// Change details and/or the active flag.
    Update(K::Patch),
    /// Forget the person behind it: clear the personal fields for good (the store destroys
    /// the data key that decrypts them in the same transaction). `at` is the time recorded.
    ErasePersonalData {
        /// When the erasure is recorded.
        at: DateTime<Utc>,
    },
}

/// What happened to reference data.
#[derive(Serialize, Deserialize, schemars::JsonSchema, Clone, Debug, PartialEq)]
#[serde(bound(serialize = "K: Serialize", deserialize = "K: DeserializeOwned"))]
pub enum ReferenceEvent<K> {
    /// Registered, active.
    Registered {
        /// The details as registered.
        details: K,
    },
    /// Details changed.
    Updated {
        /// The fields that changed, before and after (a code change is read from here).
        changes: Changes,
        /// All details after the change.
        details: K,
    },
    /// No longer usable on new orders and lines.
    Deactivated,
    /// Usable again.
    Reactivated,
    /// Its personal fields were erased (see [`ReferenceCommand::ErasePersonalData`]).
    PersonalDataErased {
        /// When.
        at: DateTime<Utc>,
    },
}

impl<K> ReferenceEvent<K> {
    /// The current version of the variant named `variant` (1.0 for all so far). A function
    /// of the name, not of a value, so that the event documents can state it for every type.
    pub fn version_of(_variant: &str) -> &'static str {
        "1.0"
    }
}

impl<K: ReferenceKind> DomainEvent for ReferenceEvent<K> {
    fn event_type(&self) -> String {
        let name = match self {
            Self::Registered { .. } => "Registered",
            Self::Updated { .. } => "Updated",
            Self::Deactivated => "Deactivated",
            Self::Reactivated => "Reactivated",
            Self::PersonalDataErased { .. } => "PersonalDataErased",
        };
        format!("{}{}", K::EVENT_PREFIX, name)
    }

    fn event_version(&self) -> String {
        Self::version_of("").to_owned()
    }
}

impl<K: ReferenceKind> UniqueKeys for ReferenceEvent<K> {
    fn unique_key_changes(&self) -> Vec<UniqueKeyChange> {
        match self {
            Self::Registered { details } => details
                .code()
                .map(|code| UniqueKeyChange::Claim {
                    scope: K::CODE_SCOPE,
                    key: code.as_str().to_owned(),
                })
                .into_iter()
                .collect(),
            Self::Updated { changes, .. } => {
                let Some(change) = changes.get("code") else {
                    return Vec::new();
                };
                let mut keys = Vec::new();
                if let Some(old) = change.from.as_str() {
                    keys.push(UniqueKeyChange::Release {
                        scope: K::CODE_SCOPE,
                        key: old.to_owned(),
                    });
                }
                if let Some(new) = change.to.as_str() {
                    keys.push(UniqueKeyChange::Claim {
                        scope: K::CODE_SCOPE,
                        key: new.to_owned(),
                    });
                }
                keys
            }
            Self::Deactivated | Self::Reactivated | Self::PersonalDataErased { .. } => Vec::new(),
        }
    }
}

impl<K: ReferenceKind> Aggregate for Reference<K> {
    const TYPE: &'static str = K::TYPE;
    type Command = ReferenceCommand<K>;
    type Event = ReferenceEvent<K>;
    type Error = DomainError;
    type Services = DomainServices;

    async fn handle(
        &mut self,
        command: Self::Command,
        _services: &Self::Services,
        sink: &EventSink<Self>,
    ) -> Result<(), DomainError> {
        match command {
            ReferenceCommand::Register(details) => {
                if self.exists() {
                    return Err(DomainError::AlreadyExists);
                }
                sink.write(ReferenceEvent::Registered { details }, self)
                    .await;
            }
            ReferenceCommand::Update(patch) => {
                let current = self.details.as_ref().ok_or(DomainError::NotFound)?;
                let details = current.patched(&patch);
                let changes = diff(current, &details);
                if self.personal_data_erased_at.is_some()
                    && K::personal_fields()
                        .iter()
                        .any(|field| changes.contains_key(*field))
                {
                    return Err(DomainError::NotAllowedBecause {
                        action: "set personal data",
                        reason: "its personal data was erased".into(),
                    });
                }
                let activation = match K::patch_active(&patch) {
                    Some(true) if !self.active => Some(ReferenceEvent::Reactivated),
                    Some(false) if self.active => Some(ReferenceEvent::Deactivated),
                    _ => None,
                };
                if !changes.is_empty() {
                    sink.write(ReferenceEvent::Updated { changes, details }, self)
                        .await;
                }
                if let Some(event) = activation {
                    sink.write(event, self).await;
                }
            }
            ReferenceCommand::ErasePersonalData { at } => {
                if !self.exists() {
                    return Err(DomainError::NotFound);
                }
                if K::personal_fields().is_empty() {
                    return Err(DomainError::NotAllowedBecause {
                        action: "erase personal data",
                        reason: format!("a {} holds no personal data", K::TYPE),
                    });
                }
                if self.personal_data_erased_at.is_some() {
                    return Err(DomainError::NotAllowedBecause {
                        action: "erase personal data",
                        reason: "it was already erased".into(),
                    });
                }
                sink.write(ReferenceEvent::PersonalDataErased { at }, self)
                    .await;
            }
        }
        Ok(())
    }

    fn apply(&mut self, event: Self::Event) {
        match event {
            ReferenceEvent::Registered { details } => {
                self.details = Some(details);
                self.active = true;
            }
            ReferenceEvent::Updated { details, .. } => self.details = Some(details),
            ReferenceEvent::Deactivated => self.active = false,
            ReferenceEvent::Reactivated => self.active = true,
            ReferenceEvent::PersonalDataErased { at } => {
                self.details = self.details.as_ref().map(K::without_personal_data);
                self.personal_data_erased_at = Some(at);
            }
        }
    }
}

/// A supplier aggregate.
pub type SupplierAggregate = Reference<Supplier>;
/// A customer aggregate.
pub type CustomerAggregate = Reference<Customer>;
/// A product aggregate.
pub type ProductAggregate = Reference<Product>;
/// A plant aggregate.
pub type PlantAggregate = Reference<Plant>;
/// A carrier aggregate.
pub type CarrierAggregate = Reference<Carrier>;

/// Events of a supplier.
pub type SupplierEvent = ReferenceEvent<Supplier>;
/// Events of a customer.
pub type CustomerEvent = ReferenceEvent<Customer>;
/// Events of a product.
pub type ProductEvent = ReferenceEvent<Product>;
/// Events of a plant.
pub type PlantEvent = ReferenceEvent<Plant>;
/// Events of a carrier.
pub type CarrierEvent = ReferenceEvent<Carrier>;

/// Commands to a supplier.
pub type SupplierCommand = ReferenceCommand<Supplier>;
/// Commands to a customer.
pub type CustomerCommand = ReferenceCommand<Customer>;
/// Commands to a product.
pub type ProductCommand = ReferenceCommand<Product>;
/// Commands to a plant.
pub type PlantCommand = ReferenceCommand<Plant>;
/// Commands to a carrier.
pub type CarrierCommand = ReferenceCommand<Carrier>;
