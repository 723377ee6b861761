#!/bin/sh
# Runs once, when the Postgres container initialises an empty data directory (the official
# image runs /docker-entrypoint-initdb.d/*.sh as the superuser). It makes the roles of
# docs/operations.md, "Database roles":
#   oms_owner    a login that owns database `oms`, runs the migrations (`oms migrate`) and
#                creates analysts' logins; CREATEROLE, not a superuser.
#   oms_service  the group role of the service (the migrations create it too, and grant it
#                exactly what the service needs); NOLOGIN.
#   oms_app      the service's login: a member of oms_service, nothing else.
# Passwords come from the environment (compose.yaml requires them). The statements are
# idempotent, so the script may be run again by hand against an existing cluster.
set -eu

: "${OMS_OWNER_PASSWORD:?set OMS_OWNER_PASSWORD}"
: "${OMS_SERVICE_PASSWORD:?set OMS_SERVICE_PASSWORD}"
database="${POSTGRES_DB:-oms}"

psql -v ON_ERROR_STOP=1 --username "${POSTGRES_USER:-postgres}" --dbname postgres \
    -v owner_password="$OMS_OWNER_PASSWORD" \
    -v service_password="$OMS_SERVICE_PASSWORD" \
    -v database="$database" <<'SQL'
-- The passwords are set through psql variables (quoted by psql), never spliced into text.
select not exists (select 1 from pg_roles where rolname = 'oms_owner') as create_owner \gset
\if :create_owner
create role oms_owner login createrole;
\endif
alter role oms_owner with login createrole nosuperuser password :'owner_password';

select not exists (select 1 from pg_roles where rolname = 'oms_service') as create_service \gset
\if :create_service
create role oms_service nologin;
\endif

select not exists (select 1 from pg_roles where rolname = 'oms_app') as create_app \gset
\if :create_app
create role oms_app login;
\endif
alter role oms_app with login nosuperuser nocreaterole nocreatedb password :'service_password';
grant oms_service to oms_app;

-- The owner owns the database (and so the schema public in it, on PostgreSQL 15+): the
-- migrations then need no superuser, and can take TEMP away from everyone else.
alter database :"database" owner to oms_owner;
SQL
