#!/usr/bin/env bash
# pg-ceiling: the most command-shaped transactions per second this Postgres can do with no
# service in the way — read one stream's events, append one event, commit — measured with
# pgbench on a throw-away database. `make bench` reports the service's commands/s as a ratio
# to it, taken in the same run, because absolute numbers drift on shared machines.
#
#   scripts/pg-ceiling.sh [seconds] [clients]      (needs pgbench; uses $DATABASE_URL)
# Prints one line: "pg-ceiling tps=<n> clients=<c> seconds=<s>"
set -euo pipefail
secs=${1:-10}
clients=${2:-16}
url=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/postgres}
base=${url%/*}
db=oms_pg_ceiling_$$
command -v pgbench >/dev/null || { echo "pg-ceiling: pgbench is not installed (Debian: postgresql-client)" >&2; exit 1; }
psql -q "$base/postgres" -c "create database $db" >/dev/null
script=$(mktemp)
trap 'rm -f "$script"; psql -q "$base/postgres" -c "drop database if exists $db" >/dev/null 2>&1 || true' EXIT
psql -q "$base/$db" >/dev/null <<'SQL'
create table ev (
  tenant int not null, stream int not null, seq int not null,
  payload jsonb not null, recorded_at timestamptz not null default now(),
  primary key (tenant, stream, seq)
) partition by hash (tenant);
create table ev_0 partition of ev for values with (modulus 4, remainder 0);
create table ev_1 partition of ev for values with (modulus 4, remainder 1);
create table ev_2 partition of ev for values with (modulus 4, remainder 2);
create table ev_3 partition of ev for values with (modulus 4, remainder 3);
SQL
cat >"$script" <<'SQL'
\set tenant random(1, 20)
\set stream random(1, 1000000000)
begin;
select payload from ev where tenant = :tenant and stream = :stream order by seq;
insert into ev (tenant, stream, seq, payload) values (:tenant, :stream, 1,
  '{"type":"PurchaseOrderCreated","supplier_id":"0b9e3c1e-6a59-4f7e-9d7c-2d6f1f0b8a11","lines":[{"product_id":"5d1c","weight":"40000","price_per_unit":"2.1575"}]}');
commit;
SQL
# pgbench's own words when it fails (set -e would otherwise end the script without them).
out=$(pgbench -n -c "$clients" -j 2 -T "$secs" -f "$script" "$base/$db" 2>&1) || {
  printf 'pg-ceiling: pgbench failed:\n%s\n' "$out" >&2
  exit 1
}
tps=$(printf '%s\n' "$out" | sed -n 's/^tps = \([0-9.]*\).*/\1/p')
[ -n "$tps" ] || { printf '%s\n' "$out" >&2; exit 1; }
echo "pg-ceiling tps=${tps%.*} clients=$clients seconds=$secs"
