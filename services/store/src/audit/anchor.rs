//! Signed anchors: a tenant's head `(position, hash)` with the time it was taken, signed with
//! HMAC-SHA256 under a key the database never holds. Whoever can write to Postgres can
//! recompute the whole chain, but cannot make an anchor for the rewritten head: the verifier
//! refuses anchors that are unsigned or whose signature does not check.
//!
//! The MAC covers an unambiguous encoding of the anchor ([`Anchor::signed_bytes`]): a domain
//! tag, then fixed-width fields and length-prefixed variable ones, so no two anchors share
//! the bytes that are signed.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::fmt;
use uuid::Uuid;

type HmacSha256 = Hmac<Sha256>;

/// The shortest anchor key accepted: HMAC-SHA256's key should be at least as long as its
/// 32-byte output.
pub const MIN_ANCHOR_KEY_BYTES: usize = 32;

/// The key `serve --demo` signs anchors with when none is given. Public, so anyone can forge
/// a demo anchor: never for production.
pub const DEV_ANCHOR_KEY: &str = "oms-development-anchor-key-not-for-production-use";

/// The tag the signed bytes start with: a signature made for anything else never checks as
/// an anchor's, and a future encoding takes another tag.
const DOMAIN_TAG: &[u8] = b"oms-anchor-v1\0";

/// An anchor key: the secret and its id. The id (a fingerprint of the key, not the key) is
/// written into each anchor so that after a rotation the verifier can say which key an
/// anchor was signed with.
#[derive(Clone)]
pub struct AnchorKey {
    id: String,
    secret: Vec<u8>,
}

impl fmt::Debug for AnchorKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AnchorKey({}, ***)", self.id)
    }
}

/// Why an anchor key cannot be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AnchorKeyError {
    /// Neither variable is set.
    #[error("set OMS_ANCHOR_KEY or OMS_ANCHOR_KEY_FILE (at least {MIN_ANCHOR_KEY_BYTES} bytes)")]
    Missing,
    /// The key is too short to resist a guess.
    #[error("the anchor key has {0} bytes; it needs at least {MIN_ANCHOR_KEY_BYTES}")]
    TooShort(usize),
    /// A key file could not be read.
    #[error("cannot read the anchor key file {path}: {error}")]
    File {
        /// The file named.
        path: String,
        /// Why.
        error: String,
    },
}

impl AnchorKey {
    /// A key from its secret bytes; refused under [`MIN_ANCHOR_KEY_BYTES`].
    pub fn new(secret: impl Into<Vec<u8>>) -> Result<Self, AnchorKeyError> {
        let secret = secret.into();
        if secret.len() < MIN_ANCHOR_KEY_BYTES {
            return Err(AnchorKeyError::TooShort(secret.len()));
        }
        let mut fingerprint = Sha256::new();
        fingerprint.update(b"oms-anchor-key-id\0");
        fingerprint.update(&secret);
        let id = hex::encode(&fingerprint.finalize()[..8]);
        Ok(Self { id, secret })
    }

    /// The key from `OMS_ANCHOR_KEY`, or from the file `OMS_ANCHOR_KEY_FILE` names (a trailing
    /// line end is dropped) — never from the command line, where `ps` would show it. `env`
    /// reads a variable (`std::env::var(..).ok()` in the binary; a table in tests). `Ok(None)`
    /// when neither is set.
    pub fn from_env(env: impl Fn(&str) -> Option<String>) -> Result<Option<Self>, AnchorKeyError> {
        let secret = match (env("OMS_ANCHOR_KEY"), env("OMS_ANCHOR_KEY_FILE")) {
            (Some(key), _) if !key.is_empty() => key.into_bytes(),
            (_, Some(path)) if !path.is_empty() => {
                let mut bytes = std::fs::read(&path).map_err(|err| AnchorKeyError::File {
                    path: path.clone(),
                    error: err.to_string(),
                })?;
                while matches!(bytes.last(), Some(b'\n' | b'\r')) {
                    bytes.pop();
                }
                bytes
            }
            _ => return Ok(None),
        };
        Self::new(secret).map(Some)
    }

    /// The keys anchors were signed with before the last rotation, which the verification
    /// still accepts (never used to sign): one key per line of the file
    /// `OMS_ANCHOR_PREVIOUS_KEYS_FILE` names (empty lines skipped), each at least
    /// [`MIN_ANCHOR_KEY_BYTES`]. None when the variable is not set.
    pub fn previous_from_env(
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Vec<Self>, AnchorKeyError> {
        let Some(path) = env("OMS_ANCHOR_PREVIOUS_KEYS_FILE").filter(|p| !p.is_empty()) else {
            return Ok(Vec::new());
        };
        let text = std::fs::read(&path).map_err(|err| AnchorKeyError::File {
            path: path.clone(),
            error: err.to_string(),
        })?;
        text.split(|b| *b == b'\n')
            .map(|line| line.strip_suffix(b"\r").unwrap_or(line))
            .filter(|line| !line.is_empty())
            .map(|line| Self::new(line.to_vec()))
            .collect()
    }

    /// The development key of `serve --demo`.
    pub fn development() -> Self {
        Self::new(DEV_ANCHOR_KEY.as_bytes()).expect("the development key is long enough")
    }

    /// The key's id, as written in the anchors it signs.
    pub fn id(&self) -> &str {
        &self.id
    }

    fn mac(&self) -> HmacSha256 {
        HmacSha256::new_from_slice(&self.secret).expect("HMAC takes a key of any length")
    }
}

/// A tenant's head, published outside the database. `key_id` and `signature` are absent on
/// anchors published before anchors were signed; the verifier reports those as unsigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Anchor {
    /// The tenant.
    pub tenant_id: Uuid,
    /// The head's position.
    pub position: i64,
    /// The head's hash (hex).
    pub hash: String,
    /// When it was taken.
    pub at: DateTime<Utc>,
    /// The id of the key that signed it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_id: Option<String>,
    /// HMAC-SHA256 of [`Anchor::signed_bytes`], hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Why an anchor is not trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AnchorProblem {
    /// No signature: anyone who can publish to NATS could have written it.
    #[error("unsigned")]
    Unsigned,
    /// Signed with a key the verifier does not hold.
    #[error("signed with key {0}, which this verifier does not hold")]
    UnknownKey(String),
    /// The signature does not check: forged, or changed after signing.
    #[error("the signature does not match (forged or altered)")]
    BadSignature,
    /// The hash is not hex.
    #[error("the hash is not hex")]
    BadHash,
    /// Published under another tenant's subject.
    #[error("the anchor is of tenant {0}")]
    OtherTenant(Uuid),
}

impl Anchor {
    /// The bytes the signature covers: the domain tag; the tenant (16 bytes); the position
    /// (8 bytes, big-endian, two's complement); the hash's bytes (a 4-byte big-endian length,
    /// then the bytes); `at` as whole seconds since the Unix epoch (8 bytes, big-endian) and
    /// nanoseconds (4 bytes, big-endian); the key id (a 4-byte length, then its UTF-8 bytes).
    /// `None` when the hash is not hex.
    pub fn signed_bytes(&self) -> Option<Vec<u8>> {
        let hash = hex::decode(&self.hash).ok()?;
        let key_id = self.key_id.as_deref().unwrap_or_default().as_bytes();
        let mut out = Vec::with_capacity(DOMAIN_TAG.len() + 80 + key_id.len());
        out.extend_from_slice(DOMAIN_TAG);
        out.extend_from_slice(self.tenant_id.as_bytes());
        out.extend_from_slice(&self.position.to_be_bytes());
        out.extend_from_slice(&u32::try_from(hash.len()).ok()?.to_be_bytes());
        out.extend_from_slice(&hash);
        out.extend_from_slice(&self.at.timestamp().to_be_bytes());
        out.extend_from_slice(&self.at.timestamp_subsec_nanos().to_be_bytes());
        out.extend_from_slice(&u32::try_from(key_id.len()).ok()?.to_be_bytes());
        out.extend_from_slice(key_id);
        Some(out)
    }

    /// A signed anchor of `tenant`'s head `(position, hash)` taken `at`.
    pub fn signed(
        key: &AnchorKey,
        tenant_id: Uuid,
        position: i64,
        hash: &[u8],
        at: DateTime<Utc>,
    ) -> Self {
        let mut anchor = Self {
            tenant_id,
            position,
            hash: hex::encode(hash),
            at,
            key_id: Some(key.id().to_string()),
            signature: None,
        };
        let mut mac = key.mac();
        mac.update(&anchor.signed_bytes().expect("a hex hash"));
        anchor.signature = Some(hex::encode(mac.finalize().into_bytes()));
        anchor
    }

    /// The anchored hash's bytes, once [`Anchor::check`] has passed.
    pub fn hash_bytes(&self) -> Option<Vec<u8>> {
        hex::decode(&self.hash).ok()
    }

    /// Checks that this is `tenant`'s anchor, signed by one of `keys` (compared in constant
    /// time by the `Mac` trait).
    pub fn check(&self, tenant: Uuid, keys: &[AnchorKey]) -> Result<(), AnchorProblem> {
        let (Some(key_id), Some(signature)) = (&self.key_id, &self.signature) else {
            return Err(AnchorProblem::Unsigned);
        };
        let key = keys
            .iter()
            .find(|k| k.id() == key_id)
            .ok_or_else(|| AnchorProblem::UnknownKey(key_id.clone()))?;
        let bytes = self.signed_bytes().ok_or(AnchorProblem::BadHash)?;
        let signature = hex::decode(signature).map_err(|_| AnchorProblem::BadSignature)?;
        let mut mac = key.mac();
        mac.update(&bytes);
        mac.verify_slice(&signature)
            .map_err(|_| AnchorProblem::BadSignature)?;
        // Checked after the signature: a signed anchor of another tenant is genuine, but
        // republished under the wrong subject.
        if self.tenant_id != tenant {
            return Err(AnchorProblem::OtherTenant(self.tenant_id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> AnchorKey {
        AnchorKey::new(vec![byte; 32]).unwrap()
    }

    #[test]
    fn a_signed_anchor_checks_and_any_change_to_it_does_not() {
        let tenant = Uuid::now_v7();
        let at = Utc::now();
        let anchor = Anchor::signed(&key(1), tenant, 42, &[7; 32], at);
        assert_eq!(anchor.check(tenant, &[key(1)]), Ok(()));
        // Round trip through JSON: what NATS carries.
        let parsed: Anchor = serde_json::from_slice(&serde_json::to_vec(&anchor).unwrap()).unwrap();
        assert_eq!(parsed.check(tenant, &[key(2), key(1)]), Ok(()));

        let mut moved = anchor.clone();
        moved.position = 43;
        assert_eq!(
            moved.check(tenant, &[key(1)]),
            Err(AnchorProblem::BadSignature)
        );
        let mut rehashed = anchor.clone();
        rehashed.hash = hex::encode([8; 32]);
        assert_eq!(
            rehashed.check(tenant, &[key(1)]),
            Err(AnchorProblem::BadSignature)
        );
        let mut later = anchor.clone();
        later.at = at + chrono::Duration::nanoseconds(1);
        assert_eq!(
            later.check(tenant, &[key(1)]),
            Err(AnchorProblem::BadSignature)
        );
        let mut unsigned = anchor.clone();
        unsigned.signature = None;
        assert_eq!(
            unsigned.check(tenant, &[key(1)]),
            Err(AnchorProblem::Unsigned)
        );
        assert_eq!(
            anchor.check(tenant, &[key(2)]),
            Err(AnchorProblem::UnknownKey(key(1).id().into()))
        );
        // The same signature with another key's id: refused.
        let mut relabelled = anchor.clone();
        relabelled.key_id = Some(key(2).id().into());
        assert_eq!(
            relabelled.check(tenant, &[key(2)]),
            Err(AnchorProblem::BadSignature)
        );
        let other = Uuid::now_v7();
        assert_eq!(
            anchor.check(other, &[key(1)]),
            Err(AnchorProblem::OtherTenant(tenant))
        );
    }

    #[test]
    fn a_key_comes_from_the_environment_or_a_file_and_is_long_enough() {
        let env = |vars: Vec<(&'static str, String)>| {
            move |name: &str| {
                vars.iter()
                    .find(|(n, _)| *n == name)
                    .map(|(_, v)| v.clone())
            }
        };
        assert_eq!(
            AnchorKey::from_env(env(vec![])).unwrap().map(|k| k.id),
            None
        );
        assert_eq!(
            AnchorKey::from_env(env(vec![("OMS_ANCHOR_KEY", "short".into())])).unwrap_err(),
            AnchorKeyError::TooShort(5)
        );
        let long = "k".repeat(32);
        let from_env = AnchorKey::from_env(env(vec![("OMS_ANCHOR_KEY", long.clone())]))
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{long}\n")).unwrap();
        let from_file = AnchorKey::from_env(env(vec![(
            "OMS_ANCHOR_KEY_FILE",
            path.to_string_lossy().into_owned(),
        )]))
        .unwrap()
        .unwrap();
        assert_eq!(from_env.id(), from_file.id());
        assert!(!format!("{from_env:?}").contains(&long));

        // Previous keys, for anchors signed before a rotation: one per line, each long enough.
        let previous = dir.path().join("previous");
        std::fs::write(&previous, format!("{long}\r\n\n{}\n", "p".repeat(40))).unwrap();
        let vars = || {
            env(vec![(
                "OMS_ANCHOR_PREVIOUS_KEYS_FILE",
                previous.to_string_lossy().into_owned(),
            )])
        };
        let keys = AnchorKey::previous_from_env(vars()).unwrap();
        assert_eq!(keys.len(), 2);
        assert_eq!(keys[0].id(), from_env.id());
        let tenant = Uuid::now_v7();
        let old = Anchor::signed(&keys[1], tenant, 1, &[1; 32], Utc::now());
        assert_eq!(old.check(tenant, &keys), Ok(()));
        std::fs::write(&previous, "short\n").unwrap();
        assert_eq!(
            AnchorKey::previous_from_env(vars()).unwrap_err(),
            AnchorKeyError::TooShort(5)
        );
        assert!(AnchorKey::previous_from_env(env(vec![]))
            .unwrap()
            .is_empty());
    }
}
