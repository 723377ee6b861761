#!/usr/bin/env bash
# Checks that the service keeps its OpenAPI document: schemathesis (4.x) generates requests
# from /api/v1/openapi.json — every operation, valid and invalid data, every check — and
# fails on any server error or any answer the document does not describe.
#
#   scripts/schemathesis.sh [SECONDS]
#
# SECONDS bounds the run (default $SCHEMATHESIS_SECONDS, else 75). The seed is fixed
# ($SCHEMATHESIS_SEED, default 42), so a run can be repeated.
#
# It starts its own service: `oms serve` (api, relay and projector) on a random port, over a
# fresh database oms_test_schemathesis_* on the server of $OMS_TEST_DATABASE_URL (an admin
# URL, as `make test` gives) and a nats-server of its own ($OMS_NATS_SERVER_BIN, else found or
# installed by scripts/ensure-nats.sh), with one tenant and an admin token minted by
# `oms token`. Everything it started is stopped, and the database dropped, on exit.
# schemathesis is installed from PyPI into .tools/schemathesis when missing.
#
# The settings of the checks and the hooks (below, written next to the run) say what no
# schema can: which refusals are the business rules' (422, 409, 412), and which query values
# are only valid when the service gave them out. Reports (JUnit XML, and the NDJSON event
# stream of every case) go to target/schemathesis/.
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

case "${1:-}" in
  -h | --help)
    sed -n '2,20p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'
    exit 0
    ;;
esac

seconds="${1:-${SCHEMATHESIS_SECONDS:-75}}"
[[ "$seconds" =~ ^[0-9]+$ ]] && [ "$seconds" -ge 10 ] || die "SECONDS must be a whole number >= 10, not '$seconds'"
seed="${SCHEMATHESIS_SEED:-42}"
admin_url="${OMS_TEST_DATABASE_URL:-}"
[ -n "$admin_url" ] || die "set OMS_TEST_DATABASE_URL to an admin URL of a Postgres server (make test does)"

ST_TARGET="$TOOLS_DIR/schemathesis"
ST_SPEC='schemathesis>=4,<5'
CARGO="${CARGO:-cargo}"
REPORT_DIR="$ROOT/target/schemathesis"

# --- schemathesis -----------------------------------------------------------------------------
st() { PYTHONPATH="$ST_TARGET${PYTHONPATH:+:$PYTHONPATH}" python3 -m schemathesis.cli "$@"; }

ensure_schemathesis() {
  local v
  if v="$(st --version 2>/dev/null)" && [[ "$v" =~ version\ 4\. ]]; then
    return 0
  fi
  command -v python3 >/dev/null 2>&1 || apt_install python3 python3-pip
  python3 -m pip --version >/dev/null 2>&1 || apt_install python3-pip
  log "installing $ST_SPEC from PyPI into .tools/schemathesis"
  mkdir -p "$TOOLS_DIR"
  # --target keeps it inside the project (and is allowed on externally managed Pythons)
  PIP_ROOT_USER_ACTION=ignore python3 -m pip install --quiet --disable-pip-version-check --no-input \
    --upgrade --target "$ST_TARGET" "$ST_SPEC" >&2 || die "pip could not install $ST_SPEC"
  v="$(st --version)" || die "schemathesis does not run after installing it"
  [[ "$v" =~ version\ 4\. ]] || die "expected schemathesis 4.x, got: $v"
}

# --- the service ------------------------------------------------------------------------------
psql="$(pg_client psql)" || die "psql not found (scripts/ensure-postgres.sh installs it)"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"
admin_psql() { "$psql" -X -w -q -A -t -v ON_ERROR_STOP=1 -d "$admin_url" "$@"; }

# A free TCP port on 127.0.0.1.
free_port() {
  local port
  for _ in $(seq 1 100); do
    port=$((20000 + RANDOM % 30000))
    port_busy 127.0.0.1 "$port" || {
      printf '%s' "$port"
      return 0
    }
  done
  die "no free port found"
}

work="$(mktemp -d)"
db="oms_test_schemathesis_$(date +%s)_$$"
oms_pid="" nats_pid=""
cleanup() {
  local status=$?
  [ -n "$oms_pid" ] && kill "$oms_pid" 2>/dev/null && wait "$oms_pid" 2>/dev/null
  [ -n "$nats_pid" ] && kill "$nats_pid" 2>/dev/null && wait "$nats_pid" 2>/dev/null
  printf 'drop database if exists :"db" with (force)' | admin_psql -v db="$db" 2>/dev/null || true
  if [ "$status" -ne 0 ] && [ -s "$work/oms.log" ]; then
    log "last lines of the service's log:"
    tail -n 30 "$work/oms.log" >&2 || true
  fi
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

ensure_schemathesis
log "building oms"
"$CARGO" build --quiet -p oms --bin oms
oms="$ROOT/target/debug/oms"

nats_bin="$(OMS_NATS_SERVER_BIN="${OMS_NATS_SERVER_BIN:-}" "$ROOT/scripts/ensure-nats.sh" bin)"
nats_port="$(free_port)"
"$nats_bin" -js -sd "$work/nats" -a 127.0.0.1 -p "$nats_port" </dev/null >"$work/nats.log" 2>&1 &
nats_pid=$!

printf 'create database :"db"' | admin_psql -v db="$db"
parse_pg_url "$admin_url"
database_url="$(pg_url_for "$db")"
secret="schemathesis-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
# The relay signs anchors and refuses to start without a key.
anchor_key="schemathesis-anchors-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
data_key="schemathesis-data-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export DATABASE_URL="$database_url" OMS_JWT_SECRET="$secret" OMS_ANCHOR_KEY="$anchor_key" \
       OMS_DATA_KEY="$data_key"

tenant="$("$oms" tenant create --name "Schemathesis Meats" --slug schemathesis)"
token="$("$oms" token --tenant "$tenant" --roles admin --sub schemathesis --ttl-hours 2)"
port="$(free_port)"
log "starting oms serve on 127.0.0.1:$port (database $db, nats-server on port $nats_port)"
# No operator listener (another oms may hold its port); no per-address limit (every case comes
# from 127.0.0.1, and the run checks the document, not the limits).
OMS_METRICS_BIND="" OMS_IP_RATE_LIMIT=0 RUST_LOG="${RUST_LOG:-warn}" "$oms" serve --bind "127.0.0.1:$port" --nats-url "nats://127.0.0.1:$nats_port" \
  </dev/null >"$work/oms.log" 2>&1 &
oms_pid=$!
# ready: true when the service answers GET /ready with 200 (plain bash: no HTTP client needed).
ready() {
  timeout 3 bash -c 'exec 3<>"/dev/tcp/127.0.0.1/$0" || exit 1
    printf "GET /ready HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n" >&3
    head -n 1 <&3 | grep -q " 200 "' "$port" 2>/dev/null
}
for ((i = 0; i < 150; i++)); do
  ready && break
  pid_alive "$oms_pid" || die "oms serve exited; see its log above"
  sleep 0.2
done
ready || die "oms serve was not ready within 30 s"

# --- the run ----------------------------------------------------------------------------------
# A schema says which requests are well formed, not which ids exist or what state an order is
# in: a well-formed request may still be refused by a business rule (422: an unknown supplier,
# a payment over what is outstanding, an Idempotency-Key or X-Request-Id reused for another
# request), by the state (409; 412 when If-Match names another version) or for a missing
# resource (404). Those are acceptances of the data, as 404 already is to schemathesis. 400
# stays a failure: it means the service refused what the schema allows. Rejections of invalid
# data may also be 412 (If-Match), 413 and 431 (too large).
cat >"$work/schemathesis.toml" <<'TOML'
hooks = "oms_schemathesis_hooks"

[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "409", "412", "422", "429"]

[checks.negative_data_rejection]
expected-statuses = ["400", "401", "403", "404", "405", "406", "409", "412", "413", "415", "422", "428", "429", "431"]

# Tenants are platform_admin's.
[[operations]]
include-path-regex = "^/api/v1/tenants"
headers = { Authorization = "Bearer ${OMS_PLATFORM_TOKEN}" }
TOML
# Values that are valid only as the service gave them out, or only once: `min_position` above
# the tenant's newest position is a 400 by contract, a cursor is opaque, a date range whose end
# is before its start is refused, and an X-Request-Id or Idempotency-Key sent again with
# another request is a 422 (its first request's). Where the schema calls such a value valid,
# it is replaced by one that is (0, no cursor, the dates swapped, a fresh id); negative cases
# are left alone.
cat >"$work/oms_schemathesis_hooks.py" <<'PY'
import datetime
import re
import uuid

import schemathesis

CURSOR = re.compile(r"^[A-Za-z0-9_-]{0,4096}$")
ONCE = {"x-request-id": re.compile(r"^[!-~]{1,200}$"), "idempotency-key": re.compile(r"^[!-~](?:[ -~]{0,198}[!-~])?$")}


def _date(value):
    try:
        return datetime.date.fromisoformat(value) if isinstance(value, str) and len(value) == 10 else None
    except ValueError:
        return None


@schemathesis.hook
def before_call(context, case, kwargs):
    meta = getattr(case, "meta", None)
    if meta is not None and meta.generation.mode.is_negative:
        return
    headers = case.headers if case.headers is not None else {}
    for name in list(headers.keys()):
        pattern = ONCE.get(name.lower())
        if pattern and isinstance(headers[name], str) and pattern.match(headers[name]):
            headers[name] = str(uuid.uuid4())
    query = case.query
    if query is None or not hasattr(query, "keys"):
        return
    position = query.get("min_position")
    if isinstance(position, str) and position.isascii() and position.isdigit():
        position = int(position)
    if isinstance(position, int) and not isinstance(position, bool) and position > 0:
        query["min_position"] = 0
    if isinstance(query.get("cursor"), str) and CURSOR.match(query["cursor"]):
        del query["cursor"]
    start, end = _date(query.get("order_date_from")), _date(query.get("order_date_to"))
    if start and end and end < start:
        query["order_date_from"], query["order_date_to"] = query["order_date_to"], query["order_date_from"]
PY
platform_token="$("$oms" token --roles platform_admin --sub schemathesis-platform --ttl-hours 2)"
export OMS_PLATFORM_TOKEN="$platform_token"
export PYTHONPATH="$work${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$REPORT_DIR"
log "schemathesis $(st --version | sed 's/.*version //'): every operation, every check, seed $seed, at most ${seconds}s"
set +e
# From the scratch directory: schemathesis keeps its cache in the working directory.
cd "$work"
st --config-file "$work/schemathesis.toml" run "http://127.0.0.1:$port/api/v1/openapi.json" \
  --checks all \
  --mode all \
  --seed "$seed" \
  --max-time "$seconds" \
  --workers 1 \
  --header "Authorization: Bearer $token" \
  --report junit,ndjson \
  --report-junit-path "$REPORT_DIR/junit.xml" \
  --report-ndjson-path "$REPORT_DIR/events.ndjson" \
  --no-color
status=$?
set -e
if [ "$status" -ne 0 ]; then
  die "schemathesis found server errors or conformance failures (exit $status); see above"
fi
log "schemathesis: no server errors, no conformance failures"
