//! `oms data-keys`: the master key of personal data. `rotate` re-wraps every supplier's and
//! customer's data key from the current master key (`OMS_DATA_KEY`) to a new one
//! (`OMS_NEW_DATA_KEY`), in one transaction; the events are not touched (their ciphertexts
//! are under the data keys, which do not change), so the hash chain is unaffected.

use anyhow::Context;
use oms_store::personal::MasterKey;

use crate::connect::{connect_and_migrate, DbArgs};

/// What to do with the master key.
#[derive(Debug, clap::Subcommand)]
pub enum DataKeysCommand {
    /// Re-wrap every data key from OMS_DATA_KEY to OMS_NEW_DATA_KEY (both from the
    /// environment or their `_FILE` variants, never the command line). Afterwards run the
    /// service with the new key as OMS_DATA_KEY.
    Rotate(DbArgs),
    /// One-off, for events written before personal fields were encrypted: encrypts their
    /// plaintext personal values (null for subjects already erased) and re-hashes each
    /// tenant's chain from the first event changed. Rewrites events: run it as a login with
    /// oms_maintenance's privileges, with the service stopped; prints per tenant what changed.
    EncryptLegacy(DbArgs),
}

/// Runs a `data-keys` subcommand.
pub async fn run(command: DataKeysCommand) -> anyhow::Result<()> {
    match command {
        DataKeysCommand::Rotate(db) => {
            let env = |name: &str| std::env::var(name).ok();
            let old = MasterKey::from_env(env)?
                .context("set OMS_DATA_KEY (or OMS_DATA_KEY_FILE) to the current master key")?;
            let new = MasterKey::from_env_named(env, "OMS_NEW_DATA_KEY")?
                .context("set OMS_NEW_DATA_KEY (or OMS_NEW_DATA_KEY_FILE) to the new master key")?;
            if old.id() == new.id() {
                anyhow::bail!("OMS_NEW_DATA_KEY is the current key");
            }
            let pool = connect_and_migrate(&db.database_url).await?;
            let rewrapped = oms_store::personal::rotate(&pool, &old, &new).await?;
            pool.close().await;
            println!(
                "re-wrapped {rewrapped} data keys from master key {} to {}; run the service \
                 with the new key as OMS_DATA_KEY",
                old.id(),
                new.id()
            );
            Ok(())
        }
        DataKeysCommand::EncryptLegacy(db) => {
            let pool = connect_and_migrate(&db.database_url).await?;
            let store = store(pool.clone())?;
            let tenants: Vec<uuid::Uuid> =
                sqlx::query_scalar("select tenant_id from tenant_heads order by tenant_id")
                    .fetch_all(&pool)
                    .await?;
            for tenant in tenants {
                let report = oms_store::personal::encrypt_legacy(&pool, store.keyring(), tenant)
                    .await
                    .with_context(|| format!("tenant {tenant}"))?;
                println!("{}", serde_json::to_string(&report)?);
            }
            pool.close().await;
            Ok(())
        }
    }
}

/// The store the one-shot commands (replay, audit) read through: its master key is
/// `OMS_DATA_KEY` when set; otherwise the public development key (what `--demo` uses), with a
/// warning — events encrypted under another key then fail to read rather than showing null.
pub fn store(pool: sqlx::PgPool) -> anyhow::Result<oms_store::EventStore> {
    let store = oms_store::EventStore::new(pool);
    match MasterKey::from_env(|name| std::env::var(name).ok())? {
        Some(key) => Ok(store.with_master_key(key)),
        None => {
            tracing::warn!(
                "OMS_DATA_KEY is not set; reading personal data with the development key"
            );
            Ok(store)
        }
    }
}
