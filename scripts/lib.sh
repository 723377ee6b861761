# shellcheck shell=bash
# Helpers shared by the provisioning scripts. Source it, do not run it.
#
# Conventions: progress and errors go to stderr; a script's stdout carries only its result
# (a URL or a path) so that callers can capture it with $(...).

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOCAL_DIR="$ROOT/.local" # state of the services we start (git-ignored)
TOOLS_DIR="$ROOT/.tools" # tools we install (git-ignored)

PG_MIN_MAJOR=15
NATS_MIN_VERSION=2.10

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
  printf 'error: %s\n' "$*" >&2
  exit 1
}

is_root() { [ "$(id -u)" -eq 0 ]; }

# Runs a command as root: directly, or through passwordless sudo.
as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo -n "$@"
  else
    die "root is needed to run: $* (run it yourself, or as root)"
  fi
}

# apt_install PACKAGE...: non-interactive install from the distribution's repositories.
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "apt-get not found: install $* yourself"
  log "installing $* with apt-get"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >&2
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" \
    </dev/null >&2
}

# version_ge A B: true when the dotted version A is B or newer.
version_ge() { [ "$(printf '%s\n%s\n' "$2" "$1" | sort -V | head -n1)" = "$2" ]; }

# Strips the brackets of an IPv6 literal.
strip_brackets() {
  local h="${1#[}"
  printf '%s' "${h%]}"
}

# is_local_host HOST: true when HOST names this machine, i.e. we can start a server for it.
is_local_host() {
  local h a
  h="$(strip_brackets "$1")"
  case "$h" in
    "" | localhost | localhost.* | 127.* | ::1 | 0.0.0.0 | ::) return 0 ;;
  esac
  [ "$h" = "$(hostname 2>/dev/null)" ] && return 0
  for a in $(hostname -I 2>/dev/null); do
    [ "$a" = "$h" ] && return 0
  done
  return 1
}

# tcp_open HOST PORT: true when something accepts TCP connections there.
tcp_open() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$(strip_brackets "$1")" "$2" 2>/dev/null
}

# port_busy HOST PORT: true when the port is taken (listening on any address, or connectable).
port_busy() {
  if command -v ss >/dev/null 2>&1 && [ -n "$(ss -Htln "sport = :$2" 2>/dev/null)" ]; then
    return 0
  fi
  tcp_open "$1" "$2"
}

# pid_alive PID: true when the process exists.
pid_alive() { [ -n "${1:-}" ] && kill -0 "$1" 2>/dev/null; }

# ---------------------------------------------------------------------------------------------
# Postgres

# parse_pg_url URL: sets PG_SCHEME, PG_USERINFO (user[:password], may be empty), PG_USER,
# PG_HOST, PG_PORT, PG_DB and PG_QUERY (without '?').
parse_pg_url() {
  local re='^(postgres|postgresql)://(([^@/]*)@)?(\[[^]/]*\]|[^:/?]*)(:([0-9]+))?(/([^?]*))?(\?(.*))?$'
  [[ "$1" =~ $re ]] || die "cannot parse the Postgres URL '$1' (expected postgres://user@host:port/db)"
  PG_SCHEME="${BASH_REMATCH[1]}"
  PG_USERINFO="${BASH_REMATCH[3]}"
  PG_USER="${PG_USERINFO%%:*}"
  PG_HOST="${BASH_REMATCH[4]:-localhost}"
  PG_PORT="${BASH_REMATCH[6]:-5432}"
  PG_DB="${BASH_REMATCH[8]}"
  PG_QUERY="${BASH_REMATCH[10]}"
  [ -n "$PG_USER" ] || PG_USER="$(id -un)"
}

# pg_url_for DB: the parsed URL with another database name.
pg_url_for() {
  local u="$PG_SCHEME://"
  [ -n "$PG_USERINFO" ] && u+="$PG_USERINFO@"
  u+="$PG_HOST:$PG_PORT/$1"
  [ -n "$PG_QUERY" ] && u+="?$PG_QUERY"
  printf '%s' "$u"
}

# Hides the password of a URL for printing.
mask_url() { printf '%s' "$1" | sed -E 's#^([a-z]+://[^:/@]*):[^@/]*@#\1:***@#'; }

# pg_major BINDIR: major version of the server binaries in BINDIR, or fails.
pg_major() {
  [ -x "$1/postgres" ] && [ -x "$1/initdb" ] && [ -x "$1/pg_ctl" ] || return 1
  "$1/postgres" --version 2>/dev/null | sed -nE 's/^[^0-9]*([0-9]+)[.0-9]*.*$/\1/p' | head -n1
}

# pg_server_bindir [MAJOR]: the directory of Postgres server binaries (initdb, pg_ctl,
# postgres) of exactly MAJOR, or else of the highest version >= PG_MIN_MAJOR installed.
pg_server_bindir() {
  local want="${1:-}" d m best="" best_m=0
  local candidates=()
  if command -v pg_config >/dev/null 2>&1; then candidates+=("$(pg_config --bindir 2>/dev/null)"); fi
  for d in /usr/lib/postgresql/*/bin /usr/local/pgsql/bin /usr/pgsql-*/bin; do
    [ -d "$d" ] && candidates+=("$d")
  done
  if command -v initdb >/dev/null 2>&1; then candidates+=("$(dirname "$(command -v initdb)")"); fi
  for d in "${candidates[@]}"; do
    m="$(pg_major "$d")" || continue
    [ -n "$m" ] || continue
    if [ -n "$want" ]; then
      [ "$m" = "$want" ] && { printf '%s' "$d"; return 0; }
    elif [ "$m" -ge "$PG_MIN_MAJOR" ] && [ "$m" -gt "$best_m" ]; then
      best="$d" best_m="$m"
    fi
  done
  [ -n "$best" ] && printf '%s' "$best"
}

# pg_client TOOL: path of a client program (psql, pg_isready, ...), or fails.
pg_client() {
  local d
  if command -v "$1" >/dev/null 2>&1; then command -v "$1"; return 0; fi
  for d in "$(pg_server_bindir)" /usr/lib/postgresql/*/bin; do
    [ -n "$d" ] && [ -x "$d/$1" ] && { printf '%s' "$d/$1"; return 0; }
  done
  return 1
}

# The project-local cluster.
PG_LOCAL_DIR="$LOCAL_DIR/pg"
PG_LOCAL_DATA="$PG_LOCAL_DIR/data"

# The cluster's directory with symbolic links resolved: the paths handed to a server that
# runs as another user (who may not be able to enter the checkout; see ensure-postgres.sh).
pg_real_dir() { (cd "$PG_LOCAL_DIR" && pwd -P); }

# Pid of the running project-local Postgres, or fails.
pg_local_pid() {
  local pidfile="$PG_LOCAL_DATA/postmaster.pid" pid
  [ -f "$pidfile" ] || return 1
  pid="$(head -n1 "$pidfile" 2>/dev/null)"
  pid_alive "$pid" || return 1
  printf '%s' "$pid"
}

# Port the running project-local Postgres listens on (line 4 of postmaster.pid).
pg_local_port() { sed -n 4p "$PG_LOCAL_DATA/postmaster.pid" 2>/dev/null; }

# run_as USER CMD...: runs CMD as USER (from /, so that USER need not reach the cwd).
run_as() {
  local user="$1"
  shift
  if [ "$user" = "$(id -un)" ]; then
    (cd / && "$@")
  elif command -v runuser >/dev/null 2>&1; then
    (cd / && runuser -u "$user" -- "$@")
  else
    (cd / && su -s /bin/sh "$user" -c "$(printf '%q ' "$@")")
  fi
}

# ---------------------------------------------------------------------------------------------
# NATS

NATS_LOCAL_DIR="$LOCAL_DIR/nats"
NATS_PIDFILE="$NATS_LOCAL_DIR/nats-server.pid"
NATS_URLFILE="$NATS_LOCAL_DIR/url"
NATS_LOGFILE="$NATS_LOCAL_DIR/nats-server.log"

# parse_nats_url URL: sets NATS_HOST and NATS_PORT from the first server of URL.
parse_nats_url() {
  local first="${1%%,*}" re='^(nats|tls|ws|wss)://(([^@/]*)@)?(\[[^]/]*\]|[^:/?]*)(:([0-9]+))?/?$'
  [[ "$first" =~ $re ]] || die "cannot parse the NATS URL '$1' (expected nats://host:port)"
  NATS_HOST="${BASH_REMATCH[4]:-127.0.0.1}"
  NATS_PORT="${BASH_REMATCH[6]:-4222}"
}

# nats_info HOST PORT: the first line the server sends (INFO {...}), or fails.
nats_info() {
  local line
  line="$(timeout 3 bash -c 'exec 3<>"/dev/tcp/$0/$1" && IFS= read -r -t 2 l <&3 && printf "%s" "$l"' \
    "$(strip_brackets "$1")" "$2" 2>/dev/null)" || return 1
  case "$line" in INFO*) printf '%s' "${line%$'\r'}" ;; *) return 1 ;; esac
}

# Field "version" of an INFO line.
nats_info_version() { printf '%s' "$1" | sed -nE 's/.*"version":"([^"]*)".*/\1/p'; }

# True when an INFO line says JetStream is enabled.
nats_info_js() { printf '%s' "$1" | grep -q '"jetstream":true'; }

# nats_bin_version PATH: version of a nats-server binary (2.10.1), or fails.
nats_bin_version() {
  local v
  v="$(timeout 10 "$1" --version 2>/dev/null | sed -nE 's/.*v([0-9]+\.[0-9]+(\.[0-9]+)?).*/\1/p' | head -n1)"
  [ -n "$v" ] && printf '%s' "$v"
}

# Pid of the running nats-server this project started, or fails.
nats_local_pid() {
  local pid
  [ -f "$NATS_PIDFILE" ] || return 1
  pid="$(tr -dc 0-9 <"$NATS_PIDFILE")"
  pid_alive "$pid" || return 1
  # the pid may have been reused: it must be a nats-server using our store directory
  tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null | grep -q -- "$NATS_LOCAL_DIR" || return 1
  printf '%s' "$pid"
}
