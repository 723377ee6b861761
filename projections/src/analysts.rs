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

/// What an analyst login may use of the server, so that one login cannot starve the service
/// or its colleagues: set on the role, so they hold in every session of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoginLimits {
    /// Sessions at once (`CONNECTION LIMIT`).
    pub connection_limit: u16,
    /// The role's default `statement_timeout`, in milliseconds (0: none). A session may
    /// change it: it stops runaway queries, not a determined analyst.
    pub statement_timeout_ms: u32,
    /// The role's `idle_in_transaction_session_timeout`, in milliseconds (0: none): a session
    /// left open in a transaction holds back vacuum.
    pub idle_in_transaction_timeout_ms: u32,
    /// The role's `temp_file_limit`, in kB (None: the server's): how much disk one session's
    /// sorts and hashes may spill. Only a superuser, or a role granted `SET ON PARAMETER
    /// temp_file_limit` (PostgreSQL 15+), may set it; the session cannot lift it.
    pub temp_file_limit_kb: Option<u32>,
}

impl Default for LoginLimits {
    /// 5 sessions, 60 s per statement, 60 s idle in a transaction, 1 GiB of temporary files.
    fn default() -> Self {
        Self {
            connection_limit: 5,
            statement_timeout_ms: 60_000,
            idle_in_transaction_timeout_ms: 60_000,
            temp_file_limit_kb: Some(1024 * 1024),
        }
    }
}

/// A login made by [`create_login`], with what could not be set on it.
#[derive(Debug, Default)]
pub struct CreatedLogin {
    /// Limits the creating role may not set (`temp_file_limit` without superuser or `SET`
    /// on it), each with what the DBA runs instead. The login exists and works without them.
    pub warnings: Vec<String>,
}

/// Creates analyst login `login` of `tenant` with `password` and the default
/// [`LoginLimits`]; see [`create_login_with`].
pub async fn create_login(
    conn: &mut PgConnection,
    tenant: Uuid,
    login: &str,
    password: &str,
) -> Result<CreatedLogin, AnalystError> {
    create_login_with(conn, tenant, login, password, &LoginLimits::default()).await
}

/// Creates analyst login `login` of `tenant` with `password`, in one transaction: the role
/// (`LOGIN`, member of `oms_analyst`, `search_path` = `read`, the `limits`) and its row in
/// `read.analyst_logins`. An existing role or login of that name is
/// [`AnalystError::Duplicate`]. A `temp_file_limit` the creating role may not set is left
/// out and reported in [`CreatedLogin::warnings`].
pub async fn create_login_with(
    conn: &mut PgConnection,
    tenant: Uuid,
    login: &str,
    password: &str,
    limits: &LoginLimits,
) -> Result<CreatedLogin, AnalystError> {
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
    let statements: (String, String, String, String) = sqlx::query_as(
        "select format('create role %I login password %L connection limit %s in role oms_analyst',
                       $1::text, $2::text, $3::int),
                format('alter role %I set search_path = read', $1::text),
                format('alter role %I set statement_timeout = %s', $1::text, $4::bigint),
                format('alter role %I set idle_in_transaction_session_timeout = %s',
                       $1::text, $5::bigint)",
    )
    .bind(login)
    .bind(&verifier)
    .bind(i32::from(limits.connection_limit))
    .bind(i64::from(limits.statement_timeout_ms))
    .bind(i64::from(limits.idle_in_transaction_timeout_ms))
    .fetch_one(&mut *tx)
    .await?;
    // Not kept as a prepared statement: its text holds the verifier.
    sqlx::query(&statements.0)
        .persistent(false)
        .execute(&mut *tx)
        .await
        .map_err(duplicate)?;
    for statement in [&statements.1, &statements.2, &statements.3] {
        sqlx::query(statement)
            .persistent(false)
            .execute(&mut *tx)
            .await?;
    }
    let mut created = CreatedLogin::default();
    if let Some(kb) = limits.temp_file_limit_kb {
        let (statement, creator): (String, String) = sqlx::query_as(
            "select format('alter role %I set temp_file_limit = %s', $1::text, $2::bigint),
                    format('%I', current_user)",
        )
        .bind(login)
        .bind(i64::from(kb))
        .fetch_one(&mut *tx)
        .await?;
        // temp_file_limit is a superuser's setting: tried in a savepoint, so that a refusal
        // leaves the rest of the login in place.
        let mut savepoint = tx.begin().await?;
        match sqlx::query(&statement)
            .persistent(false)
            .execute(&mut *savepoint)
            .await
        {
            Ok(_) => savepoint.commit().await?,
            Err(error)
                if error.as_database_error().and_then(|e| e.code()).as_deref() == Some("42501") =>
            {
                savepoint.rollback().await?;
                created.warnings.push(format!(
                    "temp_file_limit was not set on {login}: role {creator} may not set it. \
                     A superuser runs either `{statement};` or, once for every later login \
                     (PostgreSQL 15+), `GRANT SET ON PARAMETER temp_file_limit TO {creator};`"
                ));
            }
            Err(error) => return Err(error.into()),
        }
    }
    sqlx::query("insert into read.analyst_logins (login, tenant_id) values ($1, $2)")
        .bind(login)
        .bind(tenant)
        .execute(&mut *tx)
        .await
        .map_err(duplicate)?;
    tx.commit().await?;
    Ok(created)
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
