#!/usr/bin/env bash
# Drops the databases named oms_test_* that earlier test runs left behind (a test creates and
# drops its own; a killed run leaves them). A database still in use, e.g. by a test run going
# on in parallel, is skipped.
#
#   scripts/drop-test-dbs.sh [ADMIN_URL]   (default: $OMS_TEST_DATABASE_URL)
set -euo pipefail
# shellcheck source=scripts/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

admin_url="${1:-${OMS_TEST_DATABASE_URL:-}}"
[ -n "$admin_url" ] || die "usage: $0 ADMIN_URL (or set OMS_TEST_DATABASE_URL)"
psql="$(pg_client psql)" || die "psql not found"
export PGCONNECT_TIMEOUT="${PGCONNECT_TIMEOUT:-5}"
q() { "$psql" -X -w -q -A -t -v ON_ERROR_STOP=1 -d "$admin_url" "$@"; }

dbs="$(q -c "select datname from pg_database where datname like 'oms\_test\_%' order by 1")"
[ -n "$dbs" ] || exit 0
dropped=0 skipped=0
while IFS= read -r db; do
  if printf 'drop database if exists :"db"' | q -v db="$db" 2>/dev/null; then
    dropped=$((dropped + 1))
  else
    skipped=$((skipped + 1))
  fi
done <<<"$dbs"
msg="dropped $dropped leftover oms_test_* database(s)"
[ "$skipped" -eq 0 ] || msg+=", skipped $skipped still in use"
log "$msg"
