-- Database roles: the service runs with the least it needs, the event store is append-only
-- for everyone, and row-level security binds the service too.
--
--   owner            the login that runs the migrations and owns every table (not a superuser);
--                    it creates the group roles below, the analysts' logins and the service's
--                    login. Only it (and superusers) may alter the schema.
--   oms_service      NOLOGIN group role with what `oms serve` needs and nothing more: SELECT and
--                    INSERT on events (no UPDATE, DELETE or TRUNCATE), the append transaction's
--                    tables, the relay's checkpoints, and the read models under row-level
--                    security. The service's login is a member; `oms serve` sets `role` to it at
--                    connection start-up (OMS_DB_ROLE), so even a deployment that connects as
--                    the owner or a superuser runs with these privileges and under the policies.
--   oms_analyst      analysts' logins (0002).
--   oms_maintenance  NOLOGIN, granted to nobody: the only way past the append-only trigger on
--                    events, and only in a transaction that asks for it (see below).
--
-- A table added by a later migration in schema public needs its own grant to oms_service;
-- tables added to schema read get the service's privileges by default (below).

-- Roles are cluster-wide and several databases may migrate at once: a concurrent `create role`
-- fails with unique_violation rather than duplicate_object, so both are ignored (as in 0002).
do $$
begin
    create role oms_service nologin;
exception
    when duplicate_object or unique_violation then null;
end
$$;

do $$
begin
    create role oms_maintenance nologin;
exception
    when duplicate_object or unique_violation then null;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- The service's privileges
-- ---------------------------------------------------------------------------------------------

-- Start from nothing (the role may have been made by a deployment's init script), then grant
-- exactly what the code uses.
revoke all on all tables in schema public from oms_service;
revoke all on all tables in schema read from oms_service;

grant usage on schema public to oms_service;
-- The event store: read and append. Nothing on its partitions (an insert into the parent
-- routes to them, and a select of the parent reads them with the parent's privileges).
grant select, insert on events to oms_service;
-- Tenants are created through the API (platform admin) and read by every token check.
grant select, insert on tenants to oms_service;
-- The head row: created with the tenant, moved by every append.
grant select, insert, update on tenant_heads to oms_service;
-- Unique keys are claimed (insert ... on conflict do update) and released (delete) by events.
grant select, insert, update, delete on unique_keys to oms_service;
-- Number series: insert ... on conflict do update.
grant select, insert, update on number_series to oms_service;
-- Idempotency records: written with the events, replaced when expired, purged.
grant select, insert, update, delete on idempotency_keys to oms_service;
-- The relay's progress.
grant select, insert, update on relay_checkpoints to oms_service;

-- /ready checks that every migration is applied.
do $$
begin
    if to_regclass('public._sqlx_migrations') is not null then
        grant select on public._sqlx_migrations to oms_service;
    end if;
end
$$;

-- The read models: the projector writes them and the API reads them, always with the token's
-- (or the event's) tenant in `app.tenant_id`; row-level security (forced since 0002) now
-- applies to the service as it does to analysts. Views: SELECT only.
grant usage on schema read to oms_service;
do $$
declare
    r record;
begin
    for r in
        select c.relname, c.relkind from pg_class c
        where c.relnamespace = 'read'::regnamespace and c.relkind in ('r', 'p', 'v')
          and c.relname <> 'analyst_logins'
        order by c.relname
    loop
        if r.relkind = 'v' then
            execute format('grant select on read.%I to oms_service', r.relname);
        else
            execute format('grant select, insert, update, delete on read.%I to oms_service',
                           r.relname);
        end if;
    end loop;
end
$$;
-- Checkpoints are locked, created and moved, never deleted.
revoke delete on read.checkpoints from oms_service;
-- The analysts' logins are managed by `oms analyst` as the owner; read.current_tenant() reads
-- them as its owner (SECURITY DEFINER). The service needs nothing there.
revoke all on read.analyst_logins from oms_service;
-- Read models added later by the migrating role get the same privileges.
alter default privileges in schema read grant select, insert, update, delete on tables to oms_service;

-- read.checkpoints across tenants: the projector's sweeper compares every tenant's checkpoints
-- with its head, /metrics reports every tenant's lag, and min_position reads a tenant's
-- checkpoints before it scopes a transaction. 0004 let the owner past the policy; the service
-- is no longer the owner, so it gets a SELECT policy of its own. Writes still need the tenant
-- in `app.tenant_id` (the projector's lock sets it), and analysts stay bound to their tenant.
create policy service_reads_every_checkpoint on read.checkpoints
    for select to oms_service
    using (true);

-- Nobody creates objects in schema public but its owner (PostgreSQL 15 already does this for
-- new databases; older clusters granted CREATE to PUBLIC). Only the schema's owner can change
-- it; anyone else leaves it as it is.
do $$
begin
    if pg_has_role(current_user, (select nspowner from pg_namespace where nspname = 'public'),
                   'USAGE') then
        revoke create on schema public from public;
    end if;
end
$$;

-- Temporary tables are a way around every grant above (an analyst could fill the disk with
-- them): nobody but the database's owner gets TEMP. This is a privilege of the database, so
-- only its owner (or a superuser) can revoke it; when the migrating role is neither, the
-- migration goes on and says what the DBA must run.
do $$
begin
    if exists (select 1 from pg_database d
               where d.datname = current_database()
                 and pg_has_role(current_user, d.datdba, 'USAGE')) then
        execute format('revoke temporary on database %I from public', current_database());
    else
        raise warning 'analysts keep TEMP on database %: the migrating role does not own it', current_database()
            using hint = format('Ask the database owner or a superuser to run: REVOKE TEMPORARY ON DATABASE %I FROM PUBLIC;',
                                current_database());
    end if;
end
$$;

-- ---------------------------------------------------------------------------------------------
-- The tenant of the current session
-- ---------------------------------------------------------------------------------------------

-- An analyst login's own tenant (from read.analyst_logins, by session_user, so `set role`
-- changes nothing); the transaction's `app.tenant_id` for the service (a session_user with the
-- privileges of oms_service), for the owner (inside this SECURITY DEFINER function current_user
-- is the owner, so `session_user = current_user` holds exactly when the owner logged in) and
-- for superusers (whom row-level security does not bind anyway); no tenant for anyone else.
--
-- 0002 asked instead whether the session was a member of oms_analyst, and otherwise trusted
-- `app.tenant_id`. On PostgreSQL 16 and later a CREATEROLE role is granted ADMIN membership in
-- every role it creates, so the owner, which created oms_analyst, is "a member" of it and would
-- read nothing; and every other login (one a DBA granted SELECT on a read model, say) could
-- choose any tenant by setting `app.tenant_id`. Now the roles that may choose are named, and
-- everyone else gets no tenant: fail closed.
create or replace function read.current_tenant() returns uuid
    language sql
    stable
    security definer
    set search_path = pg_catalog, pg_temp
as $$
    select case
        when l.tenant_id is not null then l.tenant_id
        when s.login = current_user
          or coalesce(r.rolsuper, false)
          or pg_has_role(s.login, 'oms_service', 'USAGE')
            then nullif(current_setting('app.tenant_id', true), '')::uuid
    end
    from (select session_user as login) s
    left join read.analyst_logins l on l.login = s.login
    left join pg_roles r on r.rolname = s.login
$$;

-- ---------------------------------------------------------------------------------------------
-- Events are append-only
-- ---------------------------------------------------------------------------------------------

-- The history is corrected by appending events, never by rewriting them. The trigger refuses
-- UPDATE, DELETE and TRUNCATE of events to everyone: the service (which has no such privilege
-- anyway), the owner and superusers. Triggers fire for superusers too; only the table's owner
-- or a superuser could disable them (ALTER TABLE ... DISABLE TRIGGER), a deliberate schema
-- change that the log records.
--
-- The maintenance path (restoring a backup over a tenant, removing a tenant's data): a role
-- with the privileges of oms_maintenance (granted to nobody by default; superusers have them),
-- in a transaction that asks for it:
--     begin;
--     set local oms.event_maintenance = 'on';
--     delete from events where tenant_id = '...';
--     commit;
-- Anything else gets the error below.
create function public.events_are_append_only() returns trigger
    language plpgsql
    set search_path = pg_catalog, pg_temp
as $$
begin
    if current_setting('oms.event_maintenance', true) = 'on'
       and pg_has_role(current_user, 'oms_maintenance', 'USAGE') then
        if tg_level = 'ROW' then
            if tg_op = 'DELETE' then
                return old;
            end if;
            return new;
        end if;
        return null;
    end if;
    raise exception 'events are append-only: % of %.% is refused', tg_op, tg_table_schema, tg_table_name
        using errcode = 'insufficient_privilege',
              detail = 'The event store is the record; an event is never changed or removed.',
              hint = 'Correct history by appending an event. For maintenance, a role granted '
                     'oms_maintenance runs the statement in a transaction after '
                     '`set local oms.event_maintenance = ''on''` (docs/operations.md, '
                     '"Database roles").';
end
$$;

-- A row trigger on the partitioned table is cloned to every partition, today's and later ones,
-- so `update events_p3 ...` is refused too.
create trigger events_append_only
    before update or delete on events
    for each row execute function public.events_are_append_only();

-- TRUNCATE triggers are statement triggers, which are not cloned: `truncate events` fires the
-- parent's, `truncate events_p3` only the partition's. Every partition gets its own; a
-- migration that adds a partition must add this trigger to it.
create trigger events_no_truncate
    before truncate on events
    for each statement execute function public.events_are_append_only();

do $$
declare
    p regclass;
begin
    for p in select inhrelid::regclass from pg_inherits where inhparent = 'public.events'::regclass
    loop
        execute format('create trigger events_no_truncate before truncate on %s
                            for each statement execute function public.events_are_append_only()',
                       p);
    end loop;
end
$$;
