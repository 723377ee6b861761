//! `oms analyst create-login`: a Postgres login that can only read one tenant's read models.

use anyhow::Context;
use rand::distr::{Alphanumeric, SampleString};
use uuid::Uuid;

use crate::connect::{connect_and_migrate, DbArgs};

/// The analyst subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AnalystCommand {
    /// Create a Postgres login that can only SELECT the read models of one tenant; prints its
    /// password and a connection URL.
    CreateLogin {
        #[command(flatten)]
        db: DbArgs,
        /// The tenant whose rows it sees.
        #[arg(long)]
        tenant: Uuid,
        /// The login name (lowercase letters, digits, '_'; 3 to 63 characters).
        #[arg(long)]
        name: String,
        /// The password (default: a random one, printed).
        #[arg(long, env = "OMS_ANALYST_PASSWORD", hide_env_values = true)]
        password: Option<String>,
        /// Sessions the login may hold at once.
        #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u16).range(1..=1000))]
        connection_limit: u16,
        /// The login's statement_timeout, in seconds (0: none).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=86_400))]
        statement_timeout_secs: u32,
        /// The login's idle_in_transaction_session_timeout, in seconds (0: none).
        #[arg(long, default_value_t = 60, value_parser = clap::value_parser!(u32).range(0..=86_400))]
        idle_in_transaction_timeout_secs: u32,
        /// The login's temp_file_limit, in MiB: how much disk one session may spill to. Setting
        /// it needs a superuser, or `GRANT SET ON PARAMETER temp_file_limit` to the role that
        /// runs this; otherwise the login is created without it and a warning says what to run.
        #[arg(long, default_value_t = 1024, value_parser = clap::value_parser!(u32).range(1..=1_048_576))]
        temp_file_limit_mb: u32,
    },
}

/// Runs an analyst subcommand.
pub async fn run(command: AnalystCommand) -> anyhow::Result<()> {
    let AnalystCommand::CreateLogin {
        db,
        tenant,
        name,
        password,
        connection_limit,
        statement_timeout_secs,
        idle_in_transaction_timeout_secs,
        temp_file_limit_mb,
    } = command;
    let limits = oms_projections::analysts::LoginLimits {
        connection_limit,
        statement_timeout_ms: statement_timeout_secs * 1000,
        idle_in_transaction_timeout_ms: idle_in_transaction_timeout_secs * 1000,
        temp_file_limit_kb: Some(temp_file_limit_mb * 1024),
    };
    let pool = connect_and_migrate(&db.database_url).await?;
    if oms_store::tenants::find(&pool, tenant).await?.is_none() {
        anyhow::bail!("there is no tenant {tenant}");
    }
    // 32 characters from the OS's cryptographic generator: about 190 bits.
    let password = password.unwrap_or_else(|| Alphanumeric.sample_string(&mut rand::rng(), 32));
    let mut conn = pool.acquire().await?;
    let created =
        oms_projections::analysts::create_login_with(&mut conn, tenant, &name, &password, &limits)
            .await?;
    for warning in &created.warnings {
        eprintln!("warning: {warning}");
    }
    let url = url_for_login(&db.database_url, &name, &password)?;
    println!("login:    {name}");
    println!("password: {password}");
    println!("psql \"{url}\"");
    Ok(())
}

/// The database URL with the analyst's user and password (percent-encoded as needed).
fn url_for_login(database_url: &str, login: &str, password: &str) -> anyhow::Result<url::Url> {
    let mut url = url::Url::parse(database_url).context("DATABASE_URL is not a URL")?;
    url.set_username(login)
        .and_then(|()| url.set_password(Some(password)))
        .map_err(|()| anyhow::anyhow!("DATABASE_URL cannot carry a user name"))?;
    Ok(url)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_replaces_the_user_and_keeps_host_database_and_options() {
        let url = url_for_login(
            "postgres://postgres:secret@db.example:5433/oms?sslmode=require",
            "ana",
            "p@ss/word",
        )
        .unwrap();
        assert_eq!(
            url.as_str(),
            "postgres://ana:p%40ss%2Fword@db.example:5433/oms?sslmode=require"
        );
    }
}
