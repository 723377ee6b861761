//! `oms token`: mints a development token.

use oms_api::auth::{Role, TokenKeys};
use oms_api::config::DEV_JWT_SECRET;
use uuid::Uuid;

/// The token's claims and secret.
#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// The tenant (omit for platform_admin).
    #[arg(long)]
    tenant: Option<Uuid>,
    /// The actor (`sub`).
    #[arg(long, default_value = "dev")]
    sub: String,
    /// The actor's display name.
    #[arg(long)]
    name: Option<String>,
    /// Roles, comma-separated: readonly, auditor, user, manager, admin, platform_admin.
    #[arg(long, value_delimiter = ',', default_value = "admin")]
    roles: Vec<Role>,
    /// Hours until it expires.
    #[arg(long, default_value_t = 24)]
    ttl_hours: i64,
    /// The secret (default: the development secret).
    #[arg(long, env = "OMS_JWT_SECRET", hide_env_values = true)]
    jwt_secret: Option<String>,
    /// The issuer (`iss`) the service requires, when it requires one.
    #[arg(long, env = "OMS_JWT_ISSUER")]
    issuer: Option<String>,
    /// The audience (`aud`) the service requires, when it requires one.
    #[arg(long, env = "OMS_JWT_AUDIENCE")]
    audience: Option<String>,
}

/// Prints a signed token.
pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let secret = args
        .jwt_secret
        .unwrap_or_else(|| DEV_JWT_SECRET.to_string());
    if args.tenant.is_none() && !args.roles.contains(&Role::PlatformAdmin) {
        anyhow::bail!("a token without --tenant is for platform_admin: pass --roles platform_admin or a --tenant");
    }
    if args.ttl_hours <= 0 {
        anyhow::bail!("--ttl-hours must be positive");
    }
    let token = TokenKeys::new(&secret)
        .with_issuer_and_audience(args.issuer, args.audience)
        .mint(
            &args.sub,
            args.name.as_deref(),
            args.tenant,
            args.roles,
            chrono::Duration::hours(args.ttl_hours),
        );
    println!("{token}");
    Ok(())
}
