//! Idempotency records: a command's first response, replayed to a repeat of the same request
//! for 24 hours. Written in the same transaction as the command's events, so a response is
//! recorded exactly when its effects are.
//!
//! Every command through the API gets one: under the client's `Idempotency-Key`, or — when it
//! sent none — under its request id (`X-Request-Id`, generated when absent and returned on the
//! response). The record is also how the service learns what happened when the connection to
//! Postgres fails at `COMMIT`: [`finish`] then looks for the record (waiting for the
//! transaction that may still be committing) and answers what really happened, instead of
//! guessing.

use std::sync::OnceLock;

use serde_json::Value;
use sha2::{Digest, Sha256};
use sqlx::{PgExecutor, PgPool, Postgres, Transaction};
use uuid::Uuid;

/// How long a key's response is replayed.
pub const RETENTION_HOURS: i32 = 24;

/// The longest key accepted.
pub const MAX_KEY_LEN: usize = 200;

/// How long [`finish`] keeps trying to learn whether a commit whose acknowledgement was lost
/// took effect, before it answers that the outcome is unknown.
pub const IN_DOUBT_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

/// Where a record's key came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrigin {
    /// The client's `Idempotency-Key` header: recorded in the events' metadata too.
    Client,
    /// The request id, for a command sent without a key: a client that retries with the same
    /// `X-Request-Id` gets the first outcome, and the service can resolve a lost commit.
    RequestId,
}

/// A request's key and the fingerprint of what it asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey {
    /// The key the record is stored under (the client's key, or `request-id:<id>`).
    pub key: String,
    /// SHA-256 of method, path and body.
    pub request_hash: Vec<u8>,
    /// Whether the client chose it.
    pub origin: KeyOrigin,
    /// Who sent the request (the token's `sub`): keys are scoped by actor, so another user who
    /// happens to send the same key and body gets an answer of their own, never this one's.
    pub actor: String,
}

impl IdempotencyKey {
    /// The client's `Idempotency-Key` for a request.
    pub fn new(key: String, method: &str, path: &str, body: &[u8]) -> Self {
        Self {
            key,
            request_hash: fingerprint(method, path, body),
            origin: KeyOrigin::Client,
            actor: String::new(),
        }
    }

    /// The key of a request sent without an `Idempotency-Key`: its request id, in a namespace
    /// of its own so that it never meets a client's key.
    pub fn for_request_id(request_id: &str, method: &str, path: &str, body: &[u8]) -> Self {
        Self {
            key: format!("request-id:{request_id}"),
            request_hash: fingerprint(method, path, body),
            origin: KeyOrigin::RequestId,
            actor: String::new(),
        }
    }

    /// The same key, scoped to `actor`.
    pub fn for_actor(mut self, actor: &str) -> Self {
        self.actor = actor.to_string();
        self
    }

    /// The key as stored: the actor's length, the actor and the key, so that no two
    /// (actor, key) pairs meet (`3:bob:k` and `5:bob:k:k` cannot be confused).
    pub(crate) fn stored(&self) -> String {
        format!("{}:{}:{}", self.actor.len(), self.actor, self.key)
    }

    /// The client's key, for the events' metadata (none for a request-id key).
    pub fn client_key(&self) -> Option<&str> {
        (self.origin == KeyOrigin::Client).then_some(self.key.as_str())
    }
}

/// SHA-256 of method, path and body: what "the same request" means.
fn fingerprint(method: &str, path: &str, body: &[u8]) -> Vec<u8> {
    let mut hasher = Sha256::new();
    hasher.update(method.as_bytes());
    hasher.update([0]);
    hasher.update(path.as_bytes());
    hasher.update([0]);
    hasher.update(body);
    hasher.finalize().to_vec()
}

/// A response as recorded: what the API sends again on a replay.
#[derive(Debug, Clone, PartialEq)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: Body,
    /// Headers that belong to the response (`Location`, `ETag`).
    pub headers: Vec<(String, String)>,
}

/// A response's JSON body, whose text is made once and kept: the record under the
/// idempotency key (a `json` column, stored as sent) and the HTTP response carry the same
/// bytes. A command's body is its order's whole document, about 95 KB for an order with a
/// thousand notes, and serializing it twice was a visible part of such a command's cost.
#[derive(Debug, Clone)]
pub struct Body {
    value: Value,
    text: OnceLock<String>,
}

impl Body {
    /// The JSON text, made on first use.
    pub fn text(&self) -> &str {
        self.text.get_or_init(|| self.value.to_string())
    }

    /// The JSON text, to send: the one already made if there is one.
    pub fn into_text(self) -> String {
        match self.text.into_inner() {
            Some(text) => text,
            None => self.value.to_string(),
        }
    }
}

impl From<Value> for Body {
    fn from(value: Value) -> Self {
        Self {
            value,
            text: OnceLock::new(),
        }
    }
}

impl std::ops::Deref for Body {
    type Target = Value;

    fn deref(&self) -> &Value {
        &self.value
    }
}

impl PartialEq for Body {
    fn eq(&self, other: &Self) -> bool {
        self.value == other.value
    }
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
    .bind(key.stored())
    .bind(RETENTION_HOURS)
    .fetch_optional(executor)
    .await?;
    Ok(match row {
        None => Recorded::New,
        Some((hash, _, _, _)) if hash != key.request_hash => Recorded::Mismatch,
        Some((_, status, body, headers)) => Recorded::Replay(Reply {
            status: u16::try_from(status).unwrap_or(200),
            body: body.into(),
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
         values ($1, $2, $3, $4, $5::json, $6)
         on conflict (tenant_id, key) do update
            set request_hash = excluded.request_hash, status = excluded.status,
                response = excluded.response, headers = excluded.headers, created_at = now()
          where idempotency_keys.created_at <= now() - make_interval(hours => $7)
         returning 1",
    )
    .bind(tenant)
    .bind(key.stored())
    .bind(&key.request_hash)
    .bind(i16::try_from(reply.status).unwrap_or(200))
    .bind(reply.body.text())
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
    /// The connection failed at `COMMIT` and, within [`IN_DOUBT_WAIT`], the service could not
    /// find out whether the transaction committed: the client must retry with the same key.
    #[error("the database connection failed while committing; whether it took effect is unknown")]
    InDoubt,
    /// Postgres failed (and nothing was committed).
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
            return lost(tx, pool, tenant, key).await;
        }
    }
    commit(tx, pool, tenant, key, reply).await
}

/// Ends a transaction whose record could not be written because a concurrent request with the
/// same key committed first: rolls everything back and answers with that request's response.
pub async fn lost(
    tx: Transaction<'static, Postgres>,
    pool: &PgPool,
    tenant: Uuid,
    key: &IdempotencyKey,
) -> Result<Finished, KeyError> {
    tx.rollback().await?;
    match lookup(pool, tenant, key).await? {
        Recorded::Replay(reply) => Ok(Finished::Replayed(reply)),
        Recorded::Mismatch => Err(KeyError::Mismatch),
        Recorded::New => Err(KeyError::Raced),
    }
}

/// Commits a transaction whose record (if it has a key) is already written in it — by
/// [`record`], or in the events' own statement (`EventStore::write`). A lost acknowledgement
/// of the `COMMIT` is resolved through the key, as [`finish`] describes.
pub async fn commit(
    tx: Transaction<'static, Postgres>,
    pool: &PgPool,
    tenant: Uuid,
    key: Option<&IdempotencyKey>,
    reply: Reply,
) -> Result<Finished, KeyError> {
    match tx.commit().await {
        Ok(()) => Ok(Finished::Committed(reply)),
        // The connection broke at COMMIT: the transaction may or may not have committed.
        Err(err) if crate::is_unavailable(&err) => match key {
            Some(key) => match resolve(pool, tenant, key).await {
                Some(true) => Ok(Finished::Committed(reply)),
                Some(false) => Err(KeyError::Database(err)),
                None => Err(KeyError::InDoubt),
            },
            None => Err(KeyError::InDoubt),
        },
        Err(err) => Err(KeyError::Database(err)),
    }
}

/// Whether the transaction that recorded `key` committed, when its `COMMIT` was not
/// acknowledged. Tries until [`IN_DOUBT_WAIT`] is up (Postgres may be restarting); `None`:
/// it could not find out.
///
/// A plain read could run before the other transaction's commit becomes visible. So the probe
/// inserts the same key in a transaction of its own and rolls it back: the primary key makes
/// that insert wait for the other transaction to end, then either succeed (nothing was
/// committed) or meet the committed record.
pub(crate) async fn resolve(pool: &PgPool, tenant: Uuid, key: &IdempotencyKey) -> Option<bool> {
    let deadline = tokio::time::Instant::now() + IN_DOUBT_WAIT;
    let mut pause = std::time::Duration::from_millis(100);
    loop {
        match probe(pool, tenant, key).await {
            Ok(committed) => {
                tracing::warn!(tenant = %tenant, committed, "a commit's acknowledgement was lost; resolved");
                return Some(committed);
            }
            Err(err) if tokio::time::Instant::now() + pause < deadline => {
                tracing::warn!(error = %err, "a commit's acknowledgement was lost; still finding out");
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(std::time::Duration::from_secs(1));
            }
            Err(err) => {
                tracing::error!(error = %err, tenant = %tenant, "a commit's outcome is unknown");
                return None;
            }
        }
    }
}

async fn probe(pool: &PgPool, tenant: Uuid, key: &IdempotencyKey) -> Result<bool, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let free: Option<i32> = sqlx::query_scalar(
        "insert into idempotency_keys (tenant_id, key, request_hash, status, response)
         values ($1, $2, '', 0, 'null') on conflict do nothing returning 1",
    )
    .bind(tenant)
    .bind(key.stored())
    .fetch_optional(&mut *tx)
    .await?;
    tx.rollback().await?;
    if free.is_some() {
        return Ok(false);
    }
    Ok(matches!(
        lookup(pool, tenant, key).await?,
        Recorded::Replay(_)
    ))
}

/// Deletes records older than the retention, at most `batch` at a time; returns how many.
/// Every command leaves a record, so something must take them away again.
pub async fn purge_expired(pool: &PgPool, batch: i64) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "delete from idempotency_keys
          where ctid in (select ctid from idempotency_keys
                          where created_at <= now() - make_interval(hours => $1)
                          limit $2)",
    )
    .bind(RETENTION_HOURS)
    .bind(batch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}
