//! Idempotency-Key records: a keyed POST's first response, replayed to a repeat of the same
//! request for 24 hours. Written in the same transaction as the request's events, so a
//! response is recorded exactly when its effects are.

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// How long a key's response is replayed.
pub const RETENTION_HOURS: i32 = 24;

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 200;

/// A request's key and the fingerprint of what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The client's key.
    pub key: String,
    /// SHA-256 of method, path and body.
    pub request_hash: Vec<u8>,
}

impl IdempotencyKey {
    /// The key for a request.
    pub fn new(key: String, method: &str, path: &str, body: &[u8]) -> Self {
        let mut hasher = Sha256::new();
        hasher.update(method.as_bytes());
        hasher.update([0]);
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(body);
        Self {
            key,
            request_hash: hasher.finalize().to_vec(),
        }
    }
}

/// A response as recorded: what the API sends again on a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Value,
    /// Headers that belong to the response (`Location`, `ETag`).
    pub headers: Vec<(String, String)>,
}

/// What a key's record says about a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Recorded {
    /// No live record: handle the request.
    New,
    /// The same request was answered before: send this again.
    Replay(Reply),
    /// The key was used for a different request.
    Mismatch,
}

/// Looks a key up (records older than the retention are ignored).
pub async fn lookup<'e>(
    executor: impl PgExecutor<'e>,
    tenant: Uuid,
    key: &IdempotencyKey,
) -> Result<Recorded, sqlx::Error> {
    let row: Option<(Vec<u8>, i16, Value, Value)> = sqlx::query_as(
        "select request_hash, status, response, headers from idempotency_keys
          where tenant_id = $1 and key = $2
            and created_at > now() - make_interval(hours => $3)",
    )
    .bind(tenant)
    .bind(&key.key)
    .bind(RETENTION_HOURS)
    .fetch_optional(executor)
    .await?;
    Ok(match row {
        None => Recorded::New,
        Some((hash, _, _, _)) if hash != key.request_hash => Recorded::Mismatch,
        Some((_, status, body, headers)) => Recorded::Replay(Reply {
            status: u16::try_from(status).unwrap_or(200),
            body,
            headers: serde_json::from_value(headers).unwrap_or_default(),
        }),
    })
}

/// Records a response in the caller's transaction. Returns false when a concurrent request
/// with the same key committed first (the caller rolls back and replays that one).
pub async fn record(
    tx: &mut Transaction<'static, Postgres>,
    tenant: Uuid,
    key: &IdempotencyKey,
    reply: &Reply,
) -> Result<bool, sqlx::Error> {
    // An expired record is replaced; a live one is left alone (no row returned).
    let inserted: Option<i32> = sqlx::query_scalar(
        "insert into idempotency_keys (tenant_id, key, request_hash, status, response, headers)
         values ($1, $2, $3, $4, $5, $6)
         on conflict (tenant_id, key) do update
            set request_hash = excluded.request_hash, status = excluded.status,
                response = excluded.response, headers = excluded.headers, created_at = now()
          where idempotency_keys.created_at <= now() - make_interval(hours => $7)
         returning 1",
    )
    .bind(tenant)
    .bind(&key.key)
    .bind(&key.request_hash)
    .bind(i16::try_from(reply.status).unwrap_or(200))
    .bind(&reply.body)
    .bind(serde_json::to_value(&reply.headers).unwrap_or_default())
    .bind(RETENTION_HOURS)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(inserted.is_some())
}

/// How a keyed request's transaction starts.
#[derive(Debug)]
pub enum Started {
    /// No live record: the request runs in this transaction.
    New(Transaction<'static, Postgres>),
    /// The same request was answered before: send this again, write nothing.
    Replay(Reply),
}

/// How a keyed request's transaction ends.
#[derive(Debug, Clone, PartialEq)]
pub enum Finished {
    /// Its effects and its response are committed together.
    Committed(Reply),
    /// A concurrent request with the same key committed first: everything of this one was
    /// rolled back, and this is the first one's response.
    Replayed(Reply),
}

/// Why a keyed request cannot run.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key was used for a different request within the retention.
    #[error("the Idempotency-Key was used for a different request")]
    Mismatch,
    /// A concurrent request with the key won, and then its record vanished (expired): the
    /// client should retry.
    #[error("a concurrent request used this Idempotency-Key")]
    Raced,
    /// Postgres failed.
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Begins the transaction of a request with an optional key: a repeat of an answered request
/// is replayed without running it again. Every keyed write (commands, tenant creation) starts
/// here and ends in [`finish`], so a response is recorded exactly when its effects are.
pub async fn start(
    pool: &PgPool,
    tenant: Uuid,
    key: Option<&IdempotencyKey>,
) -> Result<Started, KeyError> {
    let mut tx = pool.begin().await?;
    if let Some(key) = key {
        match lookup(&mut *tx, tenant, key).await? {
            Recorded::New => {}
            Recorded::Replay(reply) => return Ok(Started::Replay(reply)),
            Recorded::Mismatch => return Err(KeyError::Mismatch),
        }
    }
    Ok(Started::New(tx))
}

/// Records `reply` under the key (if any) in `tx` and commits; when a concurrent request with
/// the same key committed first, rolls back and answers with that request's response.
pub async fn finish(
    mut tx: Transaction<'static, Postgres>,
    pool: &PgPool,
    tenant: Uuid,
    key: Option<&IdempotencyKey>,
    reply: Reply,
) -> Result<Finished, KeyError> {
    if let Some(key) = key {
        if !record(&mut tx, tenant, key, &reply).await? {
            tx.rollback().await?;
            return match lookup(pool, tenant, key).await? {
                Recorded::Replay(reply) => Ok(Finished::Replayed(reply)),
                Recorded::Mismatch => Err(KeyError::Mismatch),
                Recorded::New => Err(KeyError::Raced),
            };
        }
    }
    tx.commit().await?;
    Ok(Finished::Committed(reply))
}
