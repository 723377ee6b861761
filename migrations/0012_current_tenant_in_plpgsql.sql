-- read.current_tenant() as PL/pgSQL, with the same answers as 0006's SQL version.
--
-- Every statement on a read model evaluates the function once (the policies' InitPlan), and
-- the projector runs several such statements per transaction. A SQL function that cannot be
-- inlined (this one is SECURITY DEFINER) has its query planned again at every call: a
-- three-way join with pg_roles, about 0.17 ms each on the development machine, which made the
-- policy the largest single cost of applying an event. PL/pgSQL keeps its plans for the
-- session; the same call costs about a third of that, and less again for the service, whose
-- check comes first among the roles that read `app.tenant_id`.
--
-- The answers, in order (as before):
--   - a login listed in read.analyst_logins: its tenant, whatever `app.tenant_id` says;
--   - the function's owner, a superuser, or a member of oms_service: `app.tenant_id`;
--   - anyone else: null (sees no rows).
-- (pg_has_role is true for superusers too; the rolsuper check stays for clarity and costs
-- nothing on the service's path.)
create or replace function read.current_tenant() returns uuid
    language plpgsql
    stable
    security definer
    set search_path = pg_catalog, pg_temp
as $$
declare
    who name := session_user;
    analyst uuid;
begin
    select l.tenant_id into analyst from read.analyst_logins l where l.login = who;
    if analyst is not null then
        return analyst;
    end if;
    if who = current_user
       or pg_has_role(who, 'oms_service', 'USAGE')
       or coalesce((select r.rolsuper from pg_roles r where r.rolname = who), false) then
        return nullif(current_setting('app.tenant_id', true), '')::uuid;
    end if;
    return null;
end
$$;
