//! Where a command's time goes: the CPU time the service, Postgres and the bench's own client
//! spent during a run, per successful command.
//!
//! Everything runs on one machine, so throughput is bounded by the CPU all three share; the
//! split says which part a change must make cheaper. The service and the client are processes
//! of the bench; Postgres's share is the CPU of the backends serving the run's database (found
//! in `pg_stat_activity`), read from `/proc` — so it is only measured when Postgres runs on
//! this machine, and the backends must outlive the run (a pool's connections do). When the
//! run goes through NATS (the whole pipeline), the nats-server's CPU is a share of its own.

use serde_json::{json, Value};
use std::collections::HashMap;

/// Linux reports `/proc/<pid>/stat` times in USER_HZ, which is 100 on every mainstream
/// architecture.
const TICKS_PER_SECOND: f64 = 100.0;

/// CPU ticks (user + system) of a process so far; None when it is gone or not readable.
fn ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The fields after the command name, which is in parentheses and may hold spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let user: u64 = fields.get(11)?.parse().ok()?;
    let system: u64 = fields.get(12)?.parse().ok()?;
    Some(user + system)
}

/// A reading of the CPU used so far by the run's processes.
#[derive(Debug, Clone, Default)]
pub struct Reading {
    service: u64,
    client: u64,
    nats: Option<u64>,
    postgres: HashMap<u32, u64>,
}

/// Reads the service's (`service_pid`), this process's and the Postgres backends' CPU of
/// `database` (through `admin_url`), and the nats-server's (`nats_pid`) when the run uses one.
pub async fn read(
    admin_url: &str,
    database: &str,
    service_pid: u32,
    nats_pid: Option<u32>,
) -> Reading {
    let backends: Vec<i32> = async {
        let mut conn = <sqlx::PgConnection as sqlx::Connection>::connect(admin_url)
            .await
            .ok()?;
        sqlx::query_scalar("select pid from pg_stat_activity where datname = $1")
            .bind(database)
            .fetch_all(&mut conn)
            .await
            .ok()
    }
    .await
    .unwrap_or_default();
    Reading {
        service: ticks(service_pid).unwrap_or(0),
        client: ticks(std::process::id()).unwrap_or(0),
        nats: nats_pid.and_then(ticks),
        postgres: backends
            .into_iter()
            .filter_map(|pid| {
                let pid = u32::try_from(pid).ok()?;
                Some((pid, ticks(pid)?))
            })
            .collect(),
    }
}

/// CPU milliseconds per command between two readings, for `commands` successful commands:
/// `{service, postgres, client, total}`, with `nats` when both readings have it (null when
/// nothing was measured).
pub fn per_command(before: &Reading, after: &Reading, commands: u64) -> Value {
    if commands == 0 || after.postgres.is_empty() {
        return Value::Null;
    }
    let ms = |ticks: u64| {
        let value = ticks as f64 / TICKS_PER_SECOND * 1000.0 / commands as f64;
        (value * 1000.0).round() / 1000.0
    };
    let service = after.service.saturating_sub(before.service);
    let client = after.client.saturating_sub(before.client);
    // A backend that started during the run counts whole.
    let postgres: u64 = after
        .postgres
        .iter()
        .map(|(pid, now)| now.saturating_sub(before.postgres.get(pid).copied().unwrap_or(0)))
        .sum();
    let nats = match (before.nats, after.nats) {
        (Some(before), Some(after)) => Some(after.saturating_sub(before)),
        _ => None,
    };
    let mut split = json!({
        "service": ms(service),
        "postgres": ms(postgres),
        "client": ms(client),
        "total": ms(service + postgres + client + nats.unwrap_or(0)),
    });
    if let Some(nats) = nats {
        split["nats"] = json!(ms(nats));
    }
    split
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_a_cpu_time_that_grows_with_work() {
        let before = ticks(std::process::id()).expect("own stat readable");
        let started = std::time::Instant::now();
        let mut x = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(300) {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
        }
        std::hint::black_box(x);
        let after = ticks(std::process::id()).expect("own stat readable");
        assert!(
            after >= before + 10,
            "{before} → {after} ticks after 300 ms of work"
        );
    }

    #[test]
    fn per_command_splits_the_deltas_and_counts_new_backends_whole() {
        let before = Reading {
            service: 100,
            client: 50,
            nats: None,
            postgres: HashMap::from([(1, 200)]),
        };
        let after = Reading {
            service: 300,
            client: 60,
            nats: None,
            postgres: HashMap::from([(1, 500), (2, 100)]),
        };
        // 1,000 commands: service 200 ticks = 2 s → 2 ms each; postgres 300 + 100 ticks.
        let split = per_command(&before, &after, 1000);
        assert_eq!(split["service"], json!(2.0));
        assert_eq!(split["postgres"], json!(4.0));
        assert_eq!(split["client"], json!(0.1));
        assert_eq!(split["total"], json!(6.1));
        assert_eq!(split.get("nats"), None);
        assert_eq!(per_command(&before, &after, 0), Value::Null);
    }

    #[test]
    fn the_nats_share_counts_in_the_total_when_both_readings_have_it() {
        let reading = |service, nats, postgres| Reading {
            service,
            client: 0,
            nats: Some(nats),
            postgres: HashMap::from([(1, postgres)]),
        };
        let split = per_command(&reading(0, 40, 0), &reading(100, 90, 200), 1000);
        assert_eq!(split["nats"], json!(0.5));
        assert_eq!(split["total"], json!(3.5));
    }
}
