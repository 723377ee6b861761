#!/usr/bin/env bash
# The benchmark, one run: Postgres's own ceiling (scripts/pg-ceiling.sh), then `oms bench`,
# which starts what it measures itself (oms serve, a nats-server, throw-away databases) and
# prints one table with the ratios. See docs/benchmarks.md.
#
#   scripts/bench.sh           the full run (release build); the summary goes to
#                              docs/bench/latest.json
#   scripts/bench.sh --smoke   a run of seconds (debug build, tiny durations, few tenants, a
#                              20k-event rebuild, the same code paths); fails unless every
#                              field of the summary is there and no command was answered 5xx;
#                              the summary goes to target/bench/smoke.json
#
# Settings (environment): BENCH_SECONDS (20), BENCH_GROWTH_SECONDS (10), BENCH_CLIENTS (16),
# BENCH_TENANTS (20), BENCH_GROWTH_TENANTS (1,200), BENCH_ORDER_EVENTS (10,1000),
# BENCH_REBUILD_EVENTS (100000,1000000), BENCH_REBUILD_TIMEOUT (240 s per replay),
# BENCH_CEILING_SECONDS (10), BENCH_ARGS (more `oms bench` options), BENCH_JSON (where the
# summary goes). Postgres: $OMS_TEST_DATABASE_URL (an admin URL), else the server of
# $DATABASE_URL, started if needed (scripts/ensure-postgres.sh). nats-server:
# $OMS_NATS_SERVER_BIN, else found or installed (scripts/ensure-nats.sh).
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

smoke=""
case "${1:-}" in
  --smoke) smoke=1 ;;
  "") ;;
  -h | --help)
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument '$1' (see --help)" ;;
esac
CARGO="${CARGO:-cargo}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
cd "$ROOT"

if [ -n "${OMS_TEST_DATABASE_URL:-}" ]; then
  admin_url="$OMS_TEST_DATABASE_URL"
  DATABASE_URL="$admin_url" scripts/ensure-postgres.sh --admin >/dev/null
else
  admin_url="$(DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/oms}" scripts/ensure-postgres.sh --admin)"
fi
# TLS to a Postgres on this very host protects nothing and costs every round trip, on both
# sides (about a tenth of a rebuild's CPU, docs/benchmarks.md). Unless the URL or PGSSLMODE
# says otherwise, the run reaches a Postgres on this host without it, as compose's services
# reach theirs (the postgres image serves no TLS); every part of the run alike: pgbench, the
# service, the baseline, the replay (libpq and sqlx both read PGSSLMODE). The summary
# records which it was (machine.postgres_tls).
parse_pg_url "$admin_url"
if [[ "&$PG_QUERY" != *"&sslmode="* ]] && [ -z "${PGSSLMODE:-}" ] && is_local_host "$PG_HOST"; then
  export PGSSLMODE=disable
  log "Postgres is on this host: connecting without TLS (PGSSLMODE=disable)"
fi
OMS_NATS_SERVER_BIN="$(OMS_NATS_SERVER_BIN="${OMS_NATS_SERVER_BIN:-}" scripts/ensure-nats.sh bin)"
export OMS_NATS_SERVER_BIN
# pgbench comes with Postgres's client programs, which are not always on PATH.
if ! command -v pgbench >/dev/null 2>&1; then
  pgbench_bin="$(pg_client pgbench)" || {
    apt_install postgresql-client
    pgbench_bin="$(pg_client pgbench)" || die "pgbench not found (it comes with postgresql-client)"
  }
  PATH="$(dirname "$pgbench_bin"):$PATH"
fi

if [ -n "$smoke" ]; then
  log "building oms (debug)"
  "$CARGO" build --quiet -p oms --bin oms
  built="$TARGET_DIR/debug/oms"
  ceiling_seconds=2 clients=4
  json="${BENCH_JSON:-$TARGET_DIR/bench/smoke.json}"
  args=(--seconds 2 --growth-seconds 1 --clients 4 --tenants 3 --growth-tenants 1,3
    --order-events 10,30 --order-samples 10 --rebuild-events 20000 --rebuild-timeout-secs 60
    --drain-timeout-secs 30 --check)
else
  log "building oms (release)"
  "$CARGO" build --release --quiet -p oms --bin oms
  built="$TARGET_DIR/release/oms"
  ceiling_seconds="${BENCH_CEILING_SECONDS:-10}" clients="${BENCH_CLIENTS:-16}"
  json="${BENCH_JSON:-$ROOT/docs/bench/latest.json}"
  args=(--seconds "${BENCH_SECONDS:-20}" --growth-seconds "${BENCH_GROWTH_SECONDS:-10}"
    --clients "$clients" --tenants "${BENCH_TENANTS:-20}"
    --growth-tenants "${BENCH_GROWTH_TENANTS:-1,200}" --order-events "${BENCH_ORDER_EVENTS:-10,1000}"
    --rebuild-events "${BENCH_REBUILD_EVENTS:-100000,1000000}"
    --rebuild-timeout-secs "${BENCH_REBUILD_TIMEOUT:-240}")
fi

# A copy: a build running meanwhile must not swap the binary the bench starts processes from.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
oms="$work/oms"
cp "$built" "$oms"

log "Postgres's ceiling for a command-shaped transaction (${ceiling_seconds} s, $clients clients)"
ceiling="$(DATABASE_URL="$admin_url" scripts/pg-ceiling.sh "$ceiling_seconds" "$clients")" ||
  die "pg-ceiling failed (its reason is above)"
printf '%s\n' "$ceiling" >&2
tps="$(sed -n 's/.*tps=\([0-9]*\).*/\1/p' <<<"$ceiling")"
[ -n "$tps" ] || die "pg-ceiling printed no tps"

log "oms bench ($(basename "$(dirname "$built")") build)"
# shellcheck disable=SC2086 # BENCH_ARGS is a list of options
DATABASE_URL="$admin_url" OMS_LOG="${OMS_LOG:-warn,sqlx=error}" "$oms" bench "${args[@]}" \
  --ceiling "$tps" --json-out "$json" ${BENCH_ARGS:-}
