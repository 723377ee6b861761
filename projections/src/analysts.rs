//! Analysts' Postgres logins: roles in group `oms_analyst` that can only `SELECT` the read
//! models, and only their own tenant's rows (row-level security through
//! `read.current_tenant()`, which looks the login up in `read.analyst_logins`).
//!
//! The password never reaches the server in clear: the login is created with a SCRAM-SHA-256
//! verifier computed here (as psql's `\password` does, by `postgres-protocol`, the protocol
//! library of the `postgres` crate: Postgres' default 4096 iterations and a random 16-byte
//! salt), so it cannot show up in the server log (`log_statement`) or in `pg_stat_activity`.

use rand::RngCore;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

use crate::encoding::base64url;

/// The group role every analyst login is a member of (created by the migrations).
pub const ANALYST_GROUP: &str = "oms_analyst";

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

/// A new random password, so that nobody has to invent one: 43 URL-safe characters holding
/// 256 bits from a cryptographically secure generator (`rand`'s thread generator, seeded by
/// the operating system).
pub fn generate_password() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    base64url(&bytes)
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
    // The password is printable ASCII (checked above), which SASLprep leaves as it is, so
    // every client derives the same key from it.
    let verifier = postgres_protocol::password::scram_sha_256(password.as_bytes());
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

#[cfg(test)]
mod tests {
    use super::*;

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
