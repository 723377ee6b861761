#!/usr/bin/env bash
# Stops what the provisioning scripts started, and nothing else: the project-local Postgres
# cluster (.local/pg/data/postmaster.pid) and the project's nats-server
# (.local/nats/nats-server.pid). Servers that were already running are left alone. Data stays
# in .local; `make distclean` removes it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

stopped=0

if pid="$(pg_local_pid)"; then
  major="$(cat "$PG_LOCAL_DATA/PG_VERSION")"
  bindir="$(pg_server_bindir "$major")" || die "no PostgreSQL $major binaries to stop the cluster with (pid $pid)"
  log "stopping the project-local Postgres (pid $pid, port $(pg_local_port))"
  run_as "$(stat -c %U "$PG_LOCAL_DATA")" "$bindir/pg_ctl" -D "$(pg_real_dir)/data" -m fast -w -t 60 -s stop >&2
  stopped=$((stopped + 1))
fi

if pid="$(nats_local_pid)"; then
  log "stopping the project-local nats-server (pid $pid, $(cat "$NATS_URLFILE" 2>/dev/null || echo '?'))"
  kill -TERM "$pid"
  for ((i = 0; i < 100; i++)); do
    pid_alive "$pid" || break
    sleep 0.1
  done
  if pid_alive "$pid"; then
    warn "nats-server (pid $pid) did not stop in 10 s; killing it"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  stopped=$((stopped + 1))
fi
rm -f "$NATS_PIDFILE" "$NATS_URLFILE"

[ "$stopped" -gt 0 ] || log "no project-local services are running"
