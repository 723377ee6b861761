//! Crypto-shredding of suppliers' and customers' personal data.
//!
//! Each supplier or customer (a "subject") has one random AES-256-GCM data key. Its personal
//! fields (contact name, e-mail, phone, address) are stored in events only as ciphertext under
//! that key: wherever such a field appears in a payload (the details, or the `from` and `to`
//! of a change) its value becomes the envelope `{"enc": "<base64 nonce ‖ ciphertext>", "key":
//! "<subject id>"}`. The data key is stored in `data_keys` wrapped by the master key
//! (`OMS_DATA_KEY`), which the database never holds. Erasure deletes the subject's key in the
//! append transaction of its erasure event; from then on its envelopes read as null.
//!
//! The hash chain covers the stored (encrypted) payload, so erasure changes no hash.
//!
//! Reading: every reader of events calls [`Keyring::prepare`] on the rows it read (it reads
//! their subjects' keys, and forgets destroyed ones), then [`crate::EventStore::upcast`]
//! decrypts. An envelope whose key was not prepared is left as it is: the event then does not
//! deserialise, and the reader fails loudly instead of showing null for data that exists.

use std::collections::HashMap;
use std::sync::Mutex;

use aes_gcm::aead::{Aead, KeyInit, OsRng, Payload};
use aes_gcm::{AeadCore, Aes256Gcm, Key, Nonce};
use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::event::{NewEvent, StoredEvent};

/// The aggregate types whose events carry personal fields.
pub const PERSONAL_AGGREGATES: &[&str] = &["supplier", "customer"];

/// The fields that hold personal data, wherever they appear in such an event.
pub use oms_domain::reference::PERSONAL_FIELDS;

/// Why a master key is unusable.
#[derive(Debug, thiserror::Error)]
pub enum DataKeyError {
    /// Too short to be a key.
    #[error("OMS_DATA_KEY has {0} bytes; it needs at least 32")]
    TooShort(usize),
    /// The file could not be read.
    #[error("cannot read OMS_DATA_KEY_FILE {path}: {message}")]
    File {
        /// The file named.
        path: String,
        /// What the system said.
        message: String,
    },
}

/// The key that wraps every data key. Never stored in the database: losing it loses every
/// subject's personal data, leaking it together with a database copy leaks them.
#[derive(Clone)]
pub struct MasterKey {
    key: [u8; 32],
    id: String,
}

impl std::fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MasterKey").field("id", &self.id).finish()
    }
}

/// The public development master key's secret (`--demo` and tests): it protects nothing.
const DEVELOPMENT_SECRET: &str = "oms development data key -- public, protects nothing";

impl MasterKey {
    /// The key from a secret of at least 32 bytes (its SHA-256, so any text of enough
    /// entropy will do).
    pub fn from_secret(secret: &str) -> Result<Self, DataKeyError> {
        if secret.len() < 32 {
            return Err(DataKeyError::TooShort(secret.len()));
        }
        let key: [u8; 32] = Sha256::digest(secret.as_bytes()).into();
        let id = hex::encode(&Sha256::digest([b"oms data key id:".as_slice(), &key].concat())[..8]);
        Ok(Self { key, id })
    }

    /// `OMS_DATA_KEY`, or the contents of the file `OMS_DATA_KEY_FILE` names (never the
    /// command line, where `ps` shows it); `None` when neither is set. `prefix` lets rotation
    /// read the new key from `OMS_NEW_DATA_KEY` the same way.
    pub fn from_env_named(
        env: impl Fn(&str) -> Option<String>,
        prefix: &str,
    ) -> Result<Option<Self>, DataKeyError> {
        if let Some(secret) = env(prefix).filter(|s| !s.is_empty()) {
            return Self::from_secret(&secret).map(Some);
        }
        match env(&format!("{prefix}_FILE")).filter(|s| !s.is_empty()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path).map_err(|err| DataKeyError::File {
                    path: path.clone(),
                    message: err.to_string(),
                })?;
                Self::from_secret(text.trim_end_matches(['\r', '\n'])).map(Some)
            }
            None => Ok(None),
        }
    }

    /// [`MasterKey::from_env_named`] for `OMS_DATA_KEY`.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, DataKeyError> {
        Self::from_env_named(env, "OMS_DATA_KEY")
    }

    /// The public development key: what `--demo` and tests use.
    pub fn development() -> Self {
        Self::from_secret(DEVELOPMENT_SECRET).expect("the development secret is long enough")
    }

    /// A fingerprint that names the key (stored beside each key it wrapped).
    pub fn id(&self) -> &str {
        &self.id
    }

    fn cipher(&self) -> Aes256Gcm {
        Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.key))
    }

    /// The data key encrypted under this key, bound to its tenant and subject.
    pub fn wrap(&self, tenant: Uuid, subject: Uuid, data_key: &[u8; 32]) -> Vec<u8> {
        seal(&self.cipher(), &aad(tenant, subject), data_key)
    }

    /// The data key back, or `None` when `wrapped` was not wrapped by this key for that
    /// tenant and subject.
    pub fn unwrap_key(&self, tenant: Uuid, subject: Uuid, wrapped: &[u8]) -> Option<[u8; 32]> {
        open(&self.cipher(), &aad(tenant, subject), wrapped)?
            .try_into()
            .ok()
    }
}

fn aad(tenant: Uuid, subject: Uuid) -> Vec<u8> {
    [tenant.as_bytes().as_slice(), subject.as_bytes()].concat()
}

fn seal(cipher: &Aes256Gcm, aad: &[u8], plain: &[u8]) -> Vec<u8> {
    let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
    let sealed = cipher
        .encrypt(&nonce, Payload { msg: plain, aad })
        .expect("AES-GCM encrypts any message of this size");
    [nonce.as_slice(), &sealed].concat()
}

fn open(cipher: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    if sealed.len() < 12 {
        return None;
    }
    let (nonce, body) = sealed.split_at(12);
    cipher
        .decrypt(Nonce::from_slice(nonce), Payload { msg: body, aad })
        .ok()
}

/// The data keys read so far: `(tenant, subject)` → the key, or `None` once it is known to
/// be destroyed.
type KeyCache = Mutex<HashMap<(Uuid, Uuid), Option<[u8; 32]>>>;

/// The master key and the data keys read so far: what encrypts on append and decrypts on
/// read. One per [`crate::EventStore`] (shared by its clones).
#[derive(Debug)]
pub struct Keyring {
    master: MasterKey,
    keys: KeyCache,
}

/// Whether an event is of an aggregate type with personal fields.
pub fn is_personal(aggregate_type: &str) -> bool {
    PERSONAL_AGGREGATES.contains(&aggregate_type)
}

/// Whether appending `event` needs the keyring in its transaction: an erasure (it destroys a
/// key), or a supplier's or customer's event with a personal value to encrypt. Such events are
/// appended by a command alone, never in a group-commit batch.
pub fn needs_keyring(event: &NewEvent) -> bool {
    is_personal(&event.aggregate_type)
        && (is_erasure(&event.event_type) || has_personal_value(&event.payload, false))
}

fn is_erasure(event_type: &str) -> bool {
    event_type.ends_with("PersonalDataErased")
}

/// Whether `value` is an encryption envelope.
pub fn is_envelope(value: &Value) -> bool {
    matches!(value, Value::Object(map) if map.len() == 2 && map.contains_key("enc") && map.contains_key("key"))
}

impl Keyring {
    /// A keyring under `master`.
    pub fn new(master: MasterKey) -> Self {
        Self {
            master,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The master key.
    pub fn master(&self) -> &MasterKey {
        &self.master
    }

    /// In the append transaction, before the events are hashed: encrypts the personal fields
    /// of supplier and customer events (creating the subject's data key on first use), and
    /// destroys the subject's key for an erasure event.
    pub async fn seal_events(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: Uuid,
        events: &mut [NewEvent],
    ) -> Result<(), sqlx::Error> {
        for event in events.iter_mut() {
            if !is_personal(&event.aggregate_type) {
                continue;
            }
            let subject = event.aggregate_id;
            if is_erasure(&event.event_type) {
                sqlx::query("delete from data_keys where tenant_id = $1 and subject_id = $2")
                    .bind(tenant)
                    .bind(subject)
                    .execute(&mut *tx)
                    .await?;
                // Stored responses (kept 24 hours for retries) hold the subject's document in
                // plaintext: they go too, so a retry of a request about it runs again.
                sqlx::query(
                    "delete from idempotency_keys where tenant_id = $1 and response ->> 'id' = $2",
                )
                .bind(tenant)
                .bind(subject.to_string())
                .execute(&mut *tx)
                .await?;
                self.keys
                    .lock()
                    .expect("keyring")
                    .insert((tenant, subject), None);
                continue;
            }
            self.seal_payload(tx, tenant, subject, &mut event.payload)
                .await?;
        }
        Ok(())
    }

    /// Encrypts the plaintext personal values of one payload of `subject` under its data key
    /// (created on first use); a payload without any is left as it is. Returns whether it
    /// changed.
    pub async fn seal_payload(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: Uuid,
        subject: Uuid,
        payload: &mut Value,
    ) -> Result<bool, sqlx::Error> {
        if !has_personal_value(payload, false) {
            return Ok(false);
        }
        let key = self.key_for_writing(tx, tenant, subject).await?;
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&key));
        let aad = aad(tenant, subject);
        seal_personal(payload, false, &|plain: &Value| {
            let text = plain.to_string();
            let sealed = seal(&cipher, &aad, text.as_bytes());
            json!({
                "enc": base64::engine::general_purpose::STANDARD.encode(sealed),
                "key": subject,
            })
        });
        Ok(true)
    }

    /// The subject's data key, created (random, wrapped by the master key) if it has none.
    async fn key_for_writing(
        &self,
        tx: &mut sqlx::PgConnection,
        tenant: Uuid,
        subject: Uuid,
    ) -> Result<[u8; 32], sqlx::Error> {
        let fresh: [u8; 32] = Aes256Gcm::generate_key(&mut OsRng).into();
        sqlx::query(
            "insert into data_keys (tenant_id, subject_id, wrapped_key, master_key_id)
             values ($1, $2, $3, $4) on conflict (tenant_id, subject_id) do nothing",
        )
        .bind(tenant)
        .bind(subject)
        .bind(self.master.wrap(tenant, subject, &fresh))
        .bind(self.master.id())
        .execute(&mut *tx)
        .await?;
        let wrapped: Vec<u8> = sqlx::query_scalar(
            "select wrapped_key from data_keys where tenant_id = $1 and subject_id = $2",
        )
        .bind(tenant)
        .bind(subject)
        .fetch_one(&mut *tx)
        .await?;
        let key = self
            .master
            .unwrap_key(tenant, subject, &wrapped)
            .ok_or_else(|| {
                sqlx::Error::Protocol(format!(
                    "the data key of {subject} was not wrapped by the configured OMS_DATA_KEY"
                ))
            })?;
        self.keys
            .lock()
            .expect("keyring")
            .insert((tenant, subject), Some(key));
        Ok(key)
    }

    /// Reads (again) the data keys of the subjects of `events`: a key destroyed since it was
    /// last read is forgotten here. Call it on every batch of rows read before upcasting them.
    pub async fn prepare<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
        events: &[StoredEvent],
    ) -> Result<(), sqlx::Error> {
        let mut wanted: Vec<(Uuid, Uuid)> = events
            .iter()
            .filter(|e| is_personal(&e.aggregate_type))
            .map(|e| (e.tenant_id, e.aggregate_id))
            .collect();
        wanted.sort_unstable();
        wanted.dedup();
        if wanted.is_empty() {
            return Ok(());
        }
        let rows: Vec<(Uuid, Uuid, Vec<u8>)> = sqlx::query_as(
            "select k.tenant_id, k.subject_id, k.wrapped_key
               from data_keys k
               join unnest($1::uuid[], $2::uuid[]) as w(tenant_id, subject_id)
                 on k.tenant_id = w.tenant_id and k.subject_id = w.subject_id",
        )
        .bind(wanted.iter().map(|w| w.0).collect::<Vec<_>>())
        .bind(wanted.iter().map(|w| w.1).collect::<Vec<_>>())
        .fetch_all(executor)
        .await?;
        let found: HashMap<(Uuid, Uuid), Vec<u8>> = rows
            .into_iter()
            .map(|(tenant, subject, wrapped)| ((tenant, subject), wrapped))
            .collect();
        let mut keys = self.keys.lock().expect("keyring");
        for (tenant, subject) in wanted {
            let key = found
                .get(&(tenant, subject))
                .and_then(|wrapped| self.master.unwrap_key(tenant, subject, wrapped));
            if key.is_none() && found.contains_key(&(tenant, subject)) {
                tracing::error!(%tenant, %subject, "a data key is not wrapped by OMS_DATA_KEY");
                keys.remove(&(tenant, subject));
                continue;
            }
            keys.insert((tenant, subject), key);
        }
        Ok(())
    }

    /// The payload of a stored event with its personal fields decrypted: null where the key
    /// is destroyed; left encrypted where the key was not prepared.
    pub fn open_payload(&self, tenant: Uuid, event_type: &str, subject: Uuid, payload: &mut Value) {
        if is_erasure(event_type) {
            self.keys
                .lock()
                .expect("keyring")
                .insert((tenant, subject), None);
        }
        let keys = self.keys.lock().expect("keyring");
        open_envelopes(payload, &|envelope: &Value| {
            let subject = envelope
                .get("key")
                .and_then(Value::as_str)
                .and_then(|s| Uuid::parse_str(s).ok())?;
            let key = keys.get(&(tenant, subject))?;
            let Some(key) = key else {
                return Some(Value::Null);
            };
            let sealed = envelope
                .get("enc")
                .and_then(Value::as_str)
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())?;
            let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(key));
            let plain = open(&cipher, &aad(tenant, subject), &sealed);
            Some(
                plain
                    .and_then(|bytes| serde_json::from_slice(&bytes).ok())
                    .unwrap_or(Value::Null),
            )
        });
    }
}

/// Whether a personal field anywhere in `value` holds a plaintext value (`inside`: `value`
/// is already under a personal field).
pub fn has_personal_value(value: &Value, inside: bool) -> bool {
    match value {
        Value::Object(map) if !is_envelope(value) => map.iter().any(|(field, value)| {
            has_personal_value(value, inside || PERSONAL_FIELDS.contains(&field.as_str()))
        }),
        Value::Array(items) => items.iter().any(|v| has_personal_value(v, inside)),
        Value::Null => false,
        Value::Object(_) => false,
        _ => inside,
    }
}

/// Replaces every non-null scalar under a personal field by null: what is left of a legacy
/// plaintext value of a subject already erased. Returns whether anything changed.
pub fn null_personal(value: &mut Value) -> bool {
    let changed = has_personal_value(value, false);
    seal_personal(value, false, &|_| Value::Null);
    changed
}

/// Replaces every non-null scalar under a personal field by `seal(value)`.
fn seal_personal(value: &mut Value, inside: bool, seal: &dyn Fn(&Value) -> Value) {
    match value {
        Value::Object(map) if !is_envelope_map(map) => {
            for (field, value) in map.iter_mut() {
                let inside = inside || PERSONAL_FIELDS.contains(&field.as_str());
                seal_personal(value, inside, seal);
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| seal_personal(v, inside, seal)),
        Value::Null | Value::Object(_) => {}
        scalar if inside => *scalar = seal(scalar),
        _ => {}
    }
}

fn is_envelope_map(map: &serde_json::Map<String, Value>) -> bool {
    map.len() == 2 && map.contains_key("enc") && map.contains_key("key")
}

/// Replaces every envelope by what `open` makes of it (`None`: left as it is).
fn open_envelopes(value: &mut Value, open: &dyn Fn(&Value) -> Option<Value>) {
    if is_envelope(value) {
        if let Some(plain) = open(value) {
            *value = plain;
        }
        return;
    }
    match value {
        Value::Object(map) => map.values_mut().for_each(|v| open_envelopes(v, open)),
        Value::Array(items) => items.iter_mut().for_each(|v| open_envelopes(v, open)),
        _ => {}
    }
}

/// Re-wraps every data key wrapped by `old` under `new`, in one transaction: what rotating
/// `OMS_DATA_KEY` takes. Returns how many keys were re-wrapped; keys wrapped by neither key
/// make it fail and change nothing.
pub async fn rotate(
    pool: &sqlx::PgPool,
    old: &MasterKey,
    new: &MasterKey,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let rows: Vec<(Uuid, Uuid, Vec<u8>, String)> = sqlx::query_as(
        "select tenant_id, subject_id, wrapped_key, master_key_id from data_keys for update",
    )
    .fetch_all(&mut *tx)
    .await?;
    let mut rewrapped = 0u64;
    for (tenant, subject, wrapped, id) in rows {
        if id == new.id() && new.unwrap_key(tenant, subject, &wrapped).is_some() {
            continue;
        }
        let key = old.unwrap_key(tenant, subject, &wrapped).ok_or_else(|| {
            sqlx::Error::Protocol(format!(
                "the data key of {subject} (tenant {tenant}) is wrapped by neither key"
            ))
        })?;
        sqlx::query(
            "update data_keys set wrapped_key = $3, master_key_id = $4
              where tenant_id = $1 and subject_id = $2",
        )
        .bind(tenant)
        .bind(subject)
        .bind(new.wrap(tenant, subject, &key))
        .bind(new.id())
        .execute(&mut *tx)
        .await?;
        rewrapped += 1;
    }
    tx.commit().await?;
    Ok(rewrapped)
}

/// What [`encrypt_legacy`] did to one tenant.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LegacyReport {
    /// The tenant.
    pub tenant_id: Uuid,
    /// Events whose plaintext personal values were encrypted (or, for a subject already
    /// erased, set to null).
    pub events_rewritten: u64,
    /// The first position whose hash changed (`None`: nothing was plaintext).
    pub first_position: Option<i64>,
    /// The chain's head hash before, hex.
    pub head_hash_before: String,
    /// The chain's head hash after, hex (equal to before when nothing changed).
    pub head_hash_after: String,
}

/// The one-off migration of events written before personal fields were encrypted: in one
/// transaction per tenant, holding the tenant's head (its appends wait), each supplier's and
/// customer's event with a plaintext personal value has it encrypted under the subject's data
/// key — or set to null when the subject's personal data was already erased — and the chain
/// is re-hashed from the first event changed on, the head included, so that it verifies.
///
/// It rewrites events: it runs on the maintenance path of the append-only trigger (a login
/// with `oms_maintenance`'s privileges), and every export and anchor taken before it stops
/// matching from `first_position` on: the report says where, with the head hashes before and
/// after, for the audit record (see docs/privacy.md).
pub async fn encrypt_legacy(
    pool: &sqlx::PgPool,
    keyring: &Keyring,
    tenant: Uuid,
) -> Result<LegacyReport, sqlx::Error> {
    let mut tx = pool.begin().await?;
    sqlx::query("set local oms.event_maintenance = 'on'")
        .execute(&mut *tx)
        .await?;
    let (head_position, head_hash): (i64, Vec<u8>) =
        sqlx::query_as("select position, hash from tenant_heads where tenant_id = $1 for update")
            .bind(tenant)
            .fetch_one(&mut *tx)
            .await?;
    let erased: Vec<Uuid> = sqlx::query_scalar(
        "select aggregate_id from events
          where tenant_id = $1 and event_type like '%PersonalDataErased'",
    )
    .bind(tenant)
    .fetch_all(&mut *tx)
    .await?;
    let events: Vec<StoredEvent> = sqlx::query_as(crate::event_store::select_events!(
        "where tenant_id = $1 and aggregate_type = any($2) order by position"
    ))
    .bind(tenant)
    .bind(PERSONAL_AGGREGATES)
    .fetch_all(&mut *tx)
    .await?;
    let mut changed: HashMap<i64, Value> = HashMap::new();
    for event in events {
        let mut payload = event.payload.clone();
        let rewritten = if erased.contains(&event.aggregate_id) {
            null_personal(&mut payload)
        } else {
            keyring
                .seal_payload(&mut tx, tenant, event.aggregate_id, &mut payload)
                .await?
        };
        if rewritten {
            changed.insert(event.position, payload);
        }
    }
    let Some(first) = changed.keys().min().copied() else {
        tx.commit().await?;
        return Ok(LegacyReport {
            tenant_id: tenant,
            events_rewritten: 0,
            first_position: None,
            head_hash_before: hex::encode(&head_hash),
            head_hash_after: hex::encode(&head_hash),
        });
    };
    let rewritten = u64::try_from(changed.len()).unwrap_or(u64::MAX);
    // Re-hash from the first changed event on, in position order.
    let mut previous: Vec<u8> = if first == 1 {
        crate::hash::GENESIS.to_vec()
    } else {
        sqlx::query_scalar("select hash from events where tenant_id = $1 and position = $2")
            .bind(tenant)
            .bind(first - 1)
            .fetch_one(&mut *tx)
            .await?
    };
    let mut after = first;
    loop {
        let batch: Vec<StoredEvent> = sqlx::query_as(crate::event_store::select_events!(
            "where tenant_id = $1 and position >= $2 and position <= $3
             order by position limit 1000"
        ))
        .bind(tenant)
        .bind(after)
        .bind(head_position)
        .fetch_all(&mut *tx)
        .await?;
        let Some(last) = batch.last().map(|e| e.position) else {
            break;
        };
        let (mut positions, mut payloads, mut hashes) = (Vec::new(), Vec::new(), Vec::new());
        for mut event in batch {
            if let Some(payload) = changed.remove(&event.position) {
                event.payload = payload;
            }
            event.hash = crate::hash::chain_hash(&previous, &event).to_vec();
            previous = event.hash.clone();
            positions.push(event.position);
            payloads.push(event.payload);
            hashes.push(event.hash);
        }
        sqlx::query(
            "update events e set payload = u.payload, hash = u.hash
               from unnest($2::bigint[], $3::jsonb[], $4::bytea[]) as u(position, payload, hash)
              where e.tenant_id = $1 and e.position = u.position",
        )
        .bind(tenant)
        .bind(&positions)
        .bind(&payloads)
        .bind(&hashes)
        .execute(&mut *tx)
        .await?;
        after = last + 1;
    }
    sqlx::query("update tenant_heads set hash = $2 where tenant_id = $1")
        .bind(tenant)
        .bind(&previous)
        .execute(&mut *tx)
        .await?;
    // Stored responses may hold the plaintext documents too: they are dropped (a retry of
    // their requests runs again).
    sqlx::query(
        "delete from idempotency_keys
          where tenant_id = $1 and response ->> 'kind' = any($2)",
    )
    .bind(tenant)
    .bind(PERSONAL_AGGREGATES)
    .execute(&mut *tx)
    .await?;
    let report = LegacyReport {
        tenant_id: tenant,
        events_rewritten: rewritten,
        first_position: Some(first),
        head_hash_before: hex::encode(&head_hash),
        head_hash_after: hex::encode(&previous),
    };
    tx.commit().await?;
    Ok(report)
}
