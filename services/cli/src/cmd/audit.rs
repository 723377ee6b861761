//! `oms audit show|export|verify`: an order as it was, a tenant's events for an outside
//! auditor, and the verification of hash chains (against the anchors in NATS) or of an export.

use anyhow::Context;
use uuid::Uuid;

use crate::connect::{connect, parse_instant, DbArgs};

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// One JSON object per line (verifiable offline).
    Ndjson,
    /// A header row and one row per event; payload and metadata as JSON text.
    Csv,
}

impl From<ExportFormat> for oms_store::audit::export::ExportFormat {
    fn from(format: ExportFormat) -> Self {
        match format {
            ExportFormat::Ndjson => Self::Ndjson,
            ExportFormat::Csv => Self::Csv,
        }
    }
}

/// The audit subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// An order as it was (now, or at --as-of) and its events up to then.
    Show {
        #[command(flatten)]
        db: DbArgs,
        /// The order's id, or its order number (then --tenant is needed when several tenants
        /// have one).
        order: String,
        /// An RFC 3339 instant.
        #[arg(long)]
        as_of: Option<String>,
        /// The tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Every event of a tenant with metadata, position and hash, streamed.
    Export {
        #[command(flatten)]
        db: DbArgs,
        /// The tenant.
        #[arg(long)]
        tenant: Uuid,
        /// Only events recorded at or after this RFC 3339 instant.
        #[arg(long)]
        from: Option<String>,
        /// Only events recorded at or before this RFC 3339 instant.
        #[arg(long)]
        to: Option<String>,
        /// ndjson (verifiable offline) or csv.
        #[arg(long, value_enum, default_value = "ndjson")]
        format: ExportFormat,
        /// The file to write (default: standard output). Written whole or not at all.
        #[arg(long)]
        output: Option<std::path::PathBuf>,
    },
    /// Recompute hash chains and check them against the signed anchors in NATS, or verify an
    /// export file offline (against a signed anchor with --anchor). The anchor key comes from
    /// OMS_ANCHOR_KEY or OMS_ANCHOR_KEY_FILE (never the command line).
    Verify {
        #[command(flatten)]
        db: DbArgs,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<Uuid>,
        /// Verify this NDJSON export instead of the database.
        #[arg(long)]
        file: Option<std::path::PathBuf>,
        /// NATS, for the anchors.
        #[command(flatten)]
        nats: crate::nats::NatsArgs,
        /// Do not compare with the anchors: only the chain's consistency is checked, which a
        /// database writer who recomputes the chain passes.
        #[arg(long, conflicts_with = "anchor")]
        no_anchors: bool,
        /// With --file: a signed anchor (the JSON published on `oms.anchors.<tenant>`) the
        /// export's chain must reach with the same hash.
        #[arg(long, requires = "file")]
        anchor: Option<std::path::PathBuf>,
        /// How old, in seconds, an event may be before a signed anchor must cover it.
        #[arg(
            long = "max-anchor-age",
            env = "OMS_ANCHOR_MAX_AGE_SECS",
            default_value_t = 300
        )]
        max_anchor_age_secs: u64,
    },
}

/// Runs an audit subcommand.
pub async fn run(command: AuditCommand) -> anyhow::Result<()> {
    match command {
        AuditCommand::Show {
            db,
            order,
            as_of,
            tenant,
            json,
        } => {
            let as_of = as_of.map(|v| parse_instant("--as-of", &v)).transpose()?;
            let pool = connect(&db.database_url).await?;
            let store = super::data_keys::store(pool)?;
            let shown = oms_store::audit::show::show(&store, &order, tenant, as_of).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&shown.to_json())?);
            } else {
                print!("{}", shown.to_text());
            }
            Ok(())
        }
        AuditCommand::Export {
            db,
            tenant,
            from,
            to,
            format,
            output,
        } => {
            let from = from.map(|v| parse_instant("--from", &v)).transpose()?;
            let to = to.map(|v| parse_instant("--to", &v)).transpose()?;
            let pool = connect(&db.database_url).await?;
            if oms_store::tenants::find(&pool, tenant).await?.is_none() {
                anyhow::bail!("there is no tenant {tenant}");
            }
            let store = super::data_keys::store(pool)?;
            match output {
                None => {
                    let mut out = tokio::io::BufWriter::new(tokio::io::stdout());
                    let summary = oms_store::audit::export::export(
                        &store,
                        tenant,
                        from,
                        to,
                        format.into(),
                        &mut out,
                    )
                    .await?;
                    eprintln!(
                        "exported {} events, last position {}, last hash {}",
                        summary.events, summary.last_position, summary.last_hash
                    );
                }
                Some(path) => {
                    // Written to a temporary file beside the target and renamed when complete:
                    // a failed export leaves nothing half-written.
                    let dir = path
                        .parent()
                        .filter(|d| !d.as_os_str().is_empty())
                        .unwrap_or_else(|| std::path::Path::new("."));
                    let temporary = tempfile::Builder::new()
                        .prefix(".oms-export-")
                        .tempfile_in(dir)
                        .with_context(|| format!("cannot write to {}", dir.display()))?;
                    let file = tokio::fs::File::from_std(
                        temporary
                            .reopen()
                            .with_context(|| format!("cannot write to {}", dir.display()))?,
                    );
                    let mut out = tokio::io::BufWriter::new(file);
                    let summary = oms_store::audit::export::export(
                        &store,
                        tenant,
                        from,
                        to,
                        format.into(),
                        &mut out,
                    )
                    .await?;
                    temporary
                        .persist(&path)
                        .with_context(|| format!("cannot write {}", path.display()))?;
                    eprintln!(
                        "exported {} events to {}, last position {}, last hash {}",
                        summary.events,
                        path.display(),
                        summary.last_position,
                        summary.last_hash
                    );
                }
            }
            Ok(())
        }
        AuditCommand::Verify {
            db,
            tenant,
            file,
            nats,
            no_anchors,
            anchor,
            max_anchor_age_secs,
        } => {
            if let Some(file) = file {
                let anchor = match anchor {
                    None => None,
                    Some(path) => {
                        let text = std::fs::read(&path)
                            .with_context(|| format!("cannot read {}", path.display()))?;
                        let anchor: oms_store::audit::Anchor = serde_json::from_slice(&text)
                            .with_context(|| {
                                format!("{} does not hold an anchor", path.display())
                            })?;
                        Some((anchor, anchor_keys()?))
                    }
                };
                let report =
                    oms_store::audit::export::verify_file(
                        &file,
                        anchor.as_ref().map(|(anchor, keys)| {
                            oms_store::audit::export::FileAnchor { anchor, keys }
                        }),
                    )
                    .await
                    .with_context(|| format!("cannot read {}", file.display()))?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                if !report.ok {
                    let problem = report.problem.unwrap_or_default();
                    match report.first_bad_line {
                        Some(line) => {
                            anyhow::bail!("the export is broken at line {line} ({problem})")
                        }
                        None => anyhow::bail!("the export does not verify: {problem}"),
                    }
                }
                return Ok(());
            }
            let policy = if no_anchors {
                eprintln!(
                    "warning: --no-anchors checks only that the chain is consistent; someone who \
                     can write to the database and recomputes it passes"
                );
                None
            } else {
                Some(oms_store::audit::AnchorPolicy {
                    keys: anchor_keys()?,
                    max_age: std::time::Duration::from_secs(max_anchor_age_secs),
                })
            };
            let pool = connect(&db.database_url).await?;
            let store = super::data_keys::store(pool.clone())?;
            let tenants: Vec<Uuid> = match tenant {
                Some(tenant) => {
                    if oms_store::tenants::find(&pool, tenant).await?.is_none() {
                        anyhow::bail!("there is no tenant {tenant}");
                    }
                    vec![tenant]
                }
                None => oms_store::tenants::list(&pool)
                    .await?
                    .into_iter()
                    .map(|t| t.id)
                    .collect(),
            };
            let jetstream = if no_anchors {
                None
            } else {
                let nats_url = nats.redacted_url();
                let client = tokio::time::timeout(std::time::Duration::from_secs(5), nats.settings()?.connect())
                    .await
                    .map_err(|_| anyhow::anyhow!("NATS at {nats_url} did not answer (use --no-anchors to verify without them)"))?
                    .with_context(|| format!("cannot reach NATS at {nats_url} for the anchors (use --no-anchors to verify without them)"))?;
                Some(async_nats::jetstream::new(client))
            };
            let mut broken = Vec::new();
            for tenant in tenants {
                let report = match (&jetstream, &policy) {
                    (Some(jetstream), Some(policy)) => {
                        // The anchors first, then the chain's snapshot.
                        let anchors = oms_relay::anchors::anchors(jetstream, tenant)
                            .await
                            .map_err(|e| anyhow::anyhow!("reading the anchors: {e}"))?;
                        serde_json::to_value(
                            oms_store::audit::verify_with_anchors(&store, tenant, &anchors, policy)
                                .await?,
                        )?
                    }
                    _ => {
                        serde_json::to_value(oms_store::audit::verify_chain(&store, tenant).await?)?
                    }
                };
                let mut line = serde_json::json!({ "tenant": tenant });
                if let (Some(map), Some(extra)) = (line.as_object_mut(), report.as_object()) {
                    map.extend(extra.clone());
                }
                if report["ok"] != true {
                    let mut why = match report["first_bad_position"].as_i64() {
                        Some(position) => format!("at position {position}"),
                        None => String::new(),
                    };
                    if let Some(problems) = report["anchor_problems"].as_array() {
                        for problem in problems.iter().take(3) {
                            if !why.is_empty() {
                                why.push_str(", ");
                            }
                            why.push_str(problem["problem"].as_str().unwrap_or_default());
                        }
                    }
                    broken.push((tenant, why));
                }
                println!("{}", serde_json::to_string(&line)?);
            }
            if !broken.is_empty() {
                let list: Vec<String> = broken
                    .iter()
                    .map(|(t, why)| format!("{t}: {why}"))
                    .collect();
                anyhow::bail!(
                    "the chain is broken or not vouched for by the anchors: {}",
                    list.join("; ")
                );
            }
            Ok(())
        }
    }
}

/// The anchor key, from `OMS_ANCHOR_KEY` or `OMS_ANCHOR_KEY_FILE`, then the keys of before a
/// rotation (`OMS_ANCHOR_PREVIOUS_KEYS_FILE`): without a key no anchor's signature can be
/// checked, and an unchecked anchor vouches for nothing.
fn anchor_keys() -> anyhow::Result<Vec<oms_store::audit::AnchorKey>> {
    let env = |name: &str| std::env::var(name).ok();
    let current = oms_store::audit::AnchorKey::from_env(env)?.ok_or_else(|| {
        anyhow::anyhow!(
            "set OMS_ANCHOR_KEY or OMS_ANCHOR_KEY_FILE to check the anchors' signatures (or \
             verify the chain alone with --no-anchors)"
        )
    })?;
    let mut keys = vec![current];
    keys.extend(oms_store::audit::AnchorKey::previous_from_env(env)?);
    Ok(keys)
}
