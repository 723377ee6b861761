//! `oms migrate`: applies the embedded migrations and exits.

use anyhow::Context;

use crate::connect::{connect, DbArgs};

/// Applies the migrations that are not applied yet.
pub async fn run(db: DbArgs) -> anyhow::Result<()> {
    let pool = connect(&db.database_url).await?;
    oms_store::migrate::run(&pool).await.context(
        "migration failed (migrations create roles and tables: run them as the database's \
             owner, a login with CREATEROLE, or a superuser)",
    )?;
    println!("migrations applied");
    Ok(())
}
