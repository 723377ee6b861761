//! `oms tenant create|list`: provisions the businesses sharing a deployment.

use crate::connect::{connect_and_migrate, DbArgs};

/// The tenant subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a tenant; prints its id.
    Create {
        #[command(flatten)]
        db: DbArgs,
        /// Display name.
        #[arg(long)]
        name: String,
        /// Unique handle (lowercase letters, digits, '-').
        #[arg(long)]
        slug: String,
    },
    /// List tenants.
    List {
        #[command(flatten)]
        db: DbArgs,
    },
}

/// Runs a tenant subcommand.
pub async fn run(command: TenantCommand) -> anyhow::Result<()> {
    match command {
        TenantCommand::Create { db, name, slug } => {
            let pool = connect_and_migrate(&db.database_url).await?;
            let tenant = oms_store::tenants::create(&pool, &name, &slug).await?;
            println!("{}", tenant.id);
        }
        TenantCommand::List { db } => {
            let pool = connect_and_migrate(&db.database_url).await?;
            for tenant in oms_store::tenants::list(&pool).await? {
                println!("{}\t{}\t{}", tenant.id, tenant.slug, tenant.name);
            }
        }
    }
    Ok(())
}
