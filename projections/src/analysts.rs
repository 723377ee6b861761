//! Analysts' Postgres logins: roles in group `oms_analyst` that can only `SELECT` the read
//! models, and only their own tenant's rows (row-level security through
//! `read.current_tenant()`, which looks the login up in `read.analyst_logins`).
//!
//! The password never reaches the server in clear: the login is created with a SCRAM-SHA-256
//! verifier computed here (as psql's `\password` does), so it cannot show up in the server log
//! (`log_statement`) or in `pg_stat_activity`.

use sha2::{Digest, Sha256};
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::encoding::{base64, base64url};

/// The group role every analyst login is a member of (created by the migrations).
pub const ANALYST_GROUP: &str = "oms_analyst";

/// SCRAM iteration count (Postgres' default, `scram_iterations`).
const SCRAM_ITERATIONS: u32 = 4096;

/// Why an analyst login could not be created or dropped.
#[derive(Debug, thiserror::Error)]
pub enum AnalystError {
    /// The login name is not allowed.
    #[error("invalid login name {login:?}: {message}")]
    InvalidLogin {
        /// The name asked for.
        login: String,
        /// Why it is refused.
        message: String,
    },
    /// The password is not allowed.
    #[error("invalid password: {0}")]
    InvalidPassword(String),
    /// A role (or analyst login) with this name already exists.
    #[error("a role named {0:?} already exists")]
    Duplicate(String),
    /// No analyst login of this tenant has this name.
    #[error("no analyst login {0:?} in this tenant")]
    NotFound(String),
    /// Postgres failed (creating roles needs the CREATEROLE attribute and the ADMIN option
    /// on `oms_analyst`, which the role that ran the migrations has).
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

/// Checks a login name: `^[a-z][a-z0-9_]{2,62}$`, not starting with `pg_` (reserved by
/// Postgres) or `oms_` (the service's own roles).
pub fn validate_login(login: &str) -> Result<(), AnalystError> {
    let refuse = |message: &str| {
        Err(AnalystError::InvalidLogin {
            login: login.to_owned(),
            message: message.to_owned(),
        })
    };
    let bytes = login.as_bytes();
    if !(3..=63).contains(&bytes.len()) {
        return refuse("must be 3 to 63 characters long");
    }
    if !bytes[0].is_ascii_lowercase() {
        return refuse("must start with a lowercase letter");
    }
    if !bytes
        .iter()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'_')
    {
        return refuse("may hold only lowercase letters, digits and underscores");
    }
    if login.starts_with("pg_") || login.starts_with("oms_") {
        return refuse("must not start with pg_ or oms_");
    }
    Ok(())
}

/// Checks a password: 12 to 1024 printable ASCII characters (so that it needs no SASLprep
/// normalisation and every client sends it the same way).
pub fn validate_password(password: &str) -> Result<(), AnalystError> {
    if !(12..=1024).contains(&password.len()) {
        return Err(AnalystError::InvalidPassword(
            "must be 12 to 1024 characters long".into(),
        ));
    }
    if !password.bytes().all(|b| (0x20..0x7f).contains(&b)) {
        return Err(AnalystError::InvalidPassword(
            "may hold only printable ASCII characters".into(),
        ));
    }
    Ok(())
}

/// A new random password: 43 URL-safe characters (256 bits from the system's random source).
pub fn generate_password() -> String {
    let mut bytes = Vec::with_capacity(32);
    for _ in 0..2 {
        bytes.extend_from_slice(Uuid::new_v4().as_bytes());
    }
    // A v4 UUID has 122 random bits; hashing two of them spreads 244 bits over 32 bytes.
    base64url(&Sha256::digest(&bytes))
}

/// Creates analyst login `login` of `tenant` with `password`, in one transaction: the role
/// (`LOGIN`, member of `oms_analyst`, `search_path` = `read`) and its row in
/// `read.analyst_logins`. An existing role or login of that name is
/// [`AnalystError::Duplicate`].
pub async fn create_login(
    conn: &mut PgConnection,
    tenant: Uuid,
    login: &str,
    password: &str,
) -> Result<(), AnalystError> {
    validate_login(login)?;
    validate_password(password)?;
    let verifier = scram_verifier(password, Uuid::new_v4().as_bytes(), SCRAM_ITERATIONS);
    let duplicate =
        |error: sqlx::Error| match error.as_database_error().and_then(|e| e.code()).as_deref() {
            // duplicate_object (role exists), unique_violation (login row exists)
            Some("42710") | Some("23505") => AnalystError::Duplicate(login.to_owned()),
            _ => AnalystError::Database(error),
        };

    let mut tx = conn.begin().await?;
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
    let statements: (String, String) = sqlx::query_as(
        "select format('create role %I login password %L in role oms_analyst', $1::text, $2::text), \
                format('alter role %I set search_path = read', $1::text)",
    )
    .bind(login)
    .bind(&verifier)
    .fetch_one(&mut *tx)
    .await?;
    // Not kept as a prepared statement: its text holds the verifier.
    sqlx::query(&statements.0)
        .persistent(false)
        .execute(&mut *tx)
        .await
        .map_err(duplicate)?;
    sqlx::query(&statements.1)
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    sqlx::query("insert into read.analyst_logins (login, tenant_id) values ($1, $2)")
        .bind(login)
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(duplicate)?;
    tx.commit().await?;
    Ok(())
}

/// Drops analyst login `login` of `tenant` (its row and its role), in one transaction. A
/// login of another tenant, or none, is [`AnalystError::NotFound`].
pub async fn drop_login(
    conn: &mut PgConnection,
    tenant: Uuid,
    login: &str,
) -> Result<(), AnalystError> {
    validate_login(login)?;
    let mut tx = conn.begin().await?;
    sqlx::query("select set_config('app.tenant_id', $1, true)")
        .bind(tenant.to_string())
        .execute(&mut *tx)
        .await?;
    let deleted: Option<String> = sqlx::query_scalar(
        "delete from read.analyst_logins where login = $1 and tenant_id = $2 \
         returning login::text",
    )
    .bind(login)
    .bind(tenant)
    .fetch_optional(&mut *tx)
    .await?;
    if deleted.is_none() {
        return Err(AnalystError::NotFound(login.to_owned()));
    }
    let statement: String = sqlx::query_scalar("select format('drop role if exists %I', $1::text)")
        .bind(login)
        .fetch_one(&mut *tx)
        .await?;
    sqlx::query(&statement)
        .persistent(false)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}

/// HMAC-SHA-256 of the concatenation of `parts` under `key` (RFC 2104).
fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    for part in parts {
        inner.update(part);
    }
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize());
    outer.finalize().into()
}

/// PBKDF2-HMAC-SHA-256 with a 32-byte output (RFC 8018; one block).
fn pbkdf2_sha256(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut u = hmac_sha256(password, &[salt, &1u32.to_be_bytes()]);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac_sha256(password, &[&u]);
        for (o, b) in out.iter_mut().zip(u) {
            *o ^= b;
        }
    }
    out
}

/// The SCRAM-SHA-256 verifier Postgres stores for `password` (RFC 5802/7677):
/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
fn scram_verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let salted = pbkdf2_sha256(password.as_bytes(), salt, iterations);
    let client_key = hmac_sha256(&salted, &[b"Client Key"]);
    let stored_key: [u8; 32] = Sha256::digest(client_key).into();
    let server_key = hmac_sha256(&salted, &[b"Server Key"]);
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        base64(salt),
        base64(&stored_key),
        base64(&server_key)
    )
}

/// The verifier of `password` for a given salt and iteration count (for tests that compare
/// it with the one Postgres computes).
#[doc(hidden)]
pub fn scram_verifier_with(password: &str, salt: &[u8], iterations: u32) -> String {
    scram_verifier(password, salt, iterations)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_matches_rfc_4231() {
        assert_eq!(
            hex(&hmac_sha256(
                b"Jefe",
                &[b"what do ya want ", b"for nothing?"]
            )),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block.
        assert_eq!(
            hex(&hmac_sha256(
                &[0xaa; 131],
                &[b"Test Using Larger Than Block-Size Key - Hash Key First"]
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn pbkdf2_matches_the_known_vector() {
        assert_eq!(
            hex(&pbkdf2_sha256(b"password", b"salt", 4096)),
            "c5e478d59288c841aa530db6845c4c8d962893a001ce4e11a4963873aa98134a"
        );
    }

    #[test]
    fn login_names_are_checked() {
        for good in ["ana", "mary_bi", "a12", &format!("a{}", "b".repeat(62))] {
            assert!(validate_login(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Mary",
            "1abc",
            "_abc",
            "a-b-c",
            "ana smith",
            "pg_reader",
            "oms_analyst",
            "ana\"; drop role x; --",
            &format!("a{}", "b".repeat(63)),
        ] {
            assert!(
                matches!(validate_login(bad), Err(AnalystError::InvalidLogin { .. })),
                "{bad}"
            );
        }
    }

    #[test]
    fn passwords_are_checked_and_generated_ones_pass() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("twelve chars").is_ok());
        assert!(validate_password("caf\u{e9} au lait!!").is_err());
        assert!(validate_password("tab\there.....").is_err());
        let a = generate_password();
        assert_eq!(a.len(), 43);
        assert!(validate_password(&a).is_ok());
        assert_ne!(a, generate_password());
    }
}
