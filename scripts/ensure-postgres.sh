#!/usr/bin/env bash
# Makes sure a PostgreSQL >= 15 server answers at $DATABASE_URL and prints the URL to use.
#
#   scripts/ensure-postgres.sh           ensure the server and the URL's database; print the URL
#   scripts/ensure-postgres.sh --admin   ensure the server; print the URL of its `postgres`
#                                        database (for tests, which create their own databases)
#
# If a server answers at the URL's host:port it is used as it is. Otherwise a project-local
# cluster is created in .local/pg (trust auth, listening on that host:port; log in
# .local/pg/log) and started, after installing the distribution's `postgresql` package with
# apt-get if no server binaries >= 15 are installed. Idempotent: a second run finds it running.
# `scripts/stop-services.sh` stops the project-local cluster.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode=db
case "${1:-}" in
  "") ;;
  --admin) mode=admin ;;
  -h | --help)
    sed -n '2,12p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument '$1' (see --help)" ;;
esac

url="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/oms}"
parse_pg_url "$url"
[ "$mode" = admin ] || [ -n "$PG_DB" ] || die "DATABASE_URL names no database: $(mask_url "$url")"
admin_url="$(pg_url_for postgres)"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"

# pg_state: 0 accepting connections, 1 up but not accepting yet, 2 nothing answers
# (pg_isready's codes; 3 is "bad parameters").
pg_state() {
  local isready rc=0
  if isready="$(pg_client pg_isready)"; then
    "$isready" -q -h "$(strip_brackets "$PG_HOST")" -p "$PG_PORT" -t 3 || rc=$?
    return "$rc"
  fi
  tcp_open "$PG_HOST" "$PG_PORT" && return 0
  return 2
}

wait_ready() {
  local i rc
  for ((i = 0; i < 60; i++)); do
    rc=0
    pg_state || rc=$?
    [ "$rc" -eq 0 ] && return 0
    sleep 0.5
  done
  return 1
}

# Installs the distribution's server package without letting it create and start its own
# `main` cluster (which would take port 5432 with password auth): postgresql-common reads
# create_main_cluster from createcluster.d, so a drop-in is placed there during the install.
install_postgres() {
  local dropin=/etc/postgresql-common/createcluster.d/50-oms-no-main-cluster.conf placed="" rc=0
  if [ ! -e "$dropin" ]; then
    as_root mkdir -p "$(dirname "$dropin")"
    printf 'create_main_cluster = false\n' | as_root tee "$dropin" >/dev/null
    placed=1
  fi
  apt_install postgresql || rc=$?
  [ -z "$placed" ] || as_root rm -f "$dropin"
  [ "$rc" -eq 0 ] || die "apt-get could not install postgresql"
}

# The OS user that owns and runs the project-local cluster: initdb refuses to run as root.
cluster_user() {
  if [ -d "$PG_LOCAL_DATA" ]; then
    stat -c %U "$PG_LOCAL_DATA"
  elif is_root; then
    printf 'postgres'
  else
    id -un
  fi
}

start_local_cluster() {
  local bindir major user sockdir listen
  is_local_host "$PG_HOST" ||
    die "nothing answers at $PG_HOST:$PG_PORT, and that is not this machine: start Postgres there or change DATABASE_URL"

  if pid="$(pg_local_pid)"; then
    die "the project-local Postgres already runs on port $(pg_local_port) (pid $pid), not on $PG_PORT: run 'make stop-services' first, or use that port in DATABASE_URL"
  fi

  # server binaries: the cluster's own version if it exists, else the newest >= 15
  if [ -s "$PG_LOCAL_DATA/PG_VERSION" ]; then
    major="$(cat "$PG_LOCAL_DATA/PG_VERSION")"
    bindir="$(pg_server_bindir "$major")" ||
      die "the cluster in .local/pg was made by PostgreSQL $major, whose server binaries are gone: remove .local/pg or reinstall them"
  else
    bindir="$(pg_server_bindir)" || true
    if [ -z "$bindir" ]; then
      log "no PostgreSQL >= $PG_MIN_MAJOR server binaries found"
      install_postgres
      bindir="$(pg_server_bindir)" ||
        die "no PostgreSQL >= $PG_MIN_MAJOR server binaries after installing: this distribution's postgresql is too old (add the PGDG apt repository, https://wiki.postgresql.org/wiki/Apt)"
    fi
    major="$(pg_major "$bindir")"
  fi

  user="$(cluster_user)"
  if [ "$user" != "$(id -un)" ]; then
    getent passwd "$user" >/dev/null ||
      as_root useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash "$user"
  fi

  mkdir -p "$LOCAL_DIR"
  if [ ! -e "$PG_LOCAL_DIR" ]; then
    mkdir -p "$PG_LOCAL_DIR"
    if [ "$user" != "$(id -un)" ]; then
      chown "$user:" "$PG_LOCAL_DIR"
      if ! run_as "$user" test -w "$PG_LOCAL_DIR"; then
        # the checkout lies below a directory the cluster's user cannot enter (e.g. a private
        # home): keep the cluster in a directory of its own and link it into .local
        local alt
        alt="/var/tmp/oms-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
        warn "user $user cannot reach $PG_LOCAL_DIR; keeping the cluster in $alt (linked from .local/pg)"
        rmdir "$PG_LOCAL_DIR"
        mkdir -p "$alt"
        chown "$user:" "$alt"
        chmod 0755 "$alt"
        ln -s "$alt" "$PG_LOCAL_DIR"
      fi
    fi
  fi

  local real
  real="$(pg_real_dir)"
  if [ ! -s "$PG_LOCAL_DATA/PG_VERSION" ]; then
    log "creating a project-local PostgreSQL $major cluster in .local/pg/data (superuser $PG_USER, trust auth)"
    run_as "$user" "$bindir/initdb" -D "$real/data" -U "$PG_USER" --auth=trust \
      --encoding=UTF8 --no-locale --no-instructions >"$PG_LOCAL_DIR/initdb.log" 2>&1 ||
      {
        tail -n 20 "$PG_LOCAL_DIR/initdb.log" >&2
        die "initdb failed (log: .local/pg/initdb.log)"
      }
  fi

  # unix socket next to the cluster, unless the path is too long for a socket address
  sockdir="$real"
  if [ "${#sockdir}" -gt 90 ]; then
    sockdir="/tmp/oms-pg-$(printf '%s' "$ROOT" | sha256sum | cut -c1-12)"
    mkdir -p "$sockdir"
    [ "$user" = "$(id -un)" ] || chown "$user:" "$sockdir"
  fi
  listen="$(strip_brackets "$PG_HOST")"
  case "$listen" in 0.0.0.0 | ::) listen='*' ;; esac

  log "starting the project-local PostgreSQL $major on $PG_HOST:$PG_PORT (log: .local/pg/log)"
  run_as "$user" "$bindir/pg_ctl" -D "$real/data" -l "$real/log" -w -t 60 -s \
    -o "-c listen_addresses='$listen' -c port=$PG_PORT -c unix_socket_directories='$sockdir'" \
    start >&2 || {
    tail -n 20 "$PG_LOCAL_DIR/log" >&2 || true
    die "the project-local Postgres did not start (log: .local/pg/log)"
  }
  wait_ready || die "the project-local Postgres does not accept connections (log: .local/pg/log)"
}

# --- the server -------------------------------------------------------------------------------
rc=0
pg_state || rc=$?
if [ "$rc" -le 1 ]; then
  [ "$rc" -eq 0 ] || wait_ready || die "Postgres at $PG_HOST:$PG_PORT does not accept connections"
  if pid="$(pg_local_pid)" && [ "$(pg_local_port)" = "$PG_PORT" ]; then
    log "Postgres at $PG_HOST:$PG_PORT is up (the project-local cluster, pid $pid)"
  else
    log "Postgres at $PG_HOST:$PG_PORT is up"
  fi
elif tcp_open "$PG_HOST" "$PG_PORT"; then
  die "$PG_HOST:$PG_PORT is taken by something that is not Postgres: change DATABASE_URL"
else
  log "nothing answers at $PG_HOST:$PG_PORT"
  start_local_cluster
fi

# --- version and database ---------------------------------------------------------------------
psql="$(pg_client psql)" || {
  apt_install postgresql-client
  psql="$(pg_client psql)" || die "psql not found"
}
q() { "$psql" -X -w -q -A -t -v ON_ERROR_STOP=1 "$@"; }

version_num="$(q -d "$admin_url" -c 'show server_version_num' 2>&1)" ||
  die "cannot connect as $(mask_url "$admin_url"): $version_num"
[ "$version_num" -ge $((PG_MIN_MAJOR * 10000)) ] ||
  die "the Postgres at $PG_HOST:$PG_PORT is version $version_num; $PG_MIN_MAJOR or newer is needed"

if [ "$mode" = db ]; then
  exists="$(printf "select 1 from pg_database where datname = :'db'" | q -v db="$PG_DB" -d "$admin_url")"
  if [ "$exists" != 1 ]; then
    log "creating database $PG_DB"
    # another process may create it at the same time: only a database still missing is an error
    printf 'create database :"db"' | q -v db="$PG_DB" -d "$admin_url" 2>/dev/null ||
      [ "$(printf "select 1 from pg_database where datname = :'db'" | q -v db="$PG_DB" -d "$admin_url")" = 1 ] ||
      die "could not create database $PG_DB"
  fi
  printf '%s\n' "$url"
else
  printf '%s\n' "$admin_url"
fi
