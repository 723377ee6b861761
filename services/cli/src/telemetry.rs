//! Logging: `OMS_LOG` filters (default `info,sqlx=warn`); `OMS_LOG_FORMAT=json` writes one
//! JSON object per line; otherwise plain text, with colours only when stderr is a terminal, so
//! a log file or a container's log driver gets no escape codes.

use std::io::IsTerminal;
use tracing_subscriber::EnvFilter;

/// Installs the global subscriber; logs go to stderr, leaving stdout to command output.
pub fn init() {
    let filter =
        EnvFilter::try_from_env("OMS_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn"));
    let json = std::env::var("OMS_LOG_FORMAT").is_ok_and(|v| v == "json");
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.with_ansi(std::io::stderr().is_terminal()).init();
    }
}
