-- A recorded response is kept as the JSON text it was sent as (`json`), not parsed into
-- `jsonb`.
--
-- Every command records its response under its idempotency key, in the transaction that
-- writes its events, and the response is the whole order document. Postgres parsed each one
-- into jsonb on the way in, for nothing: a record is only ever read back whole, to be sent
-- again. Parsing a 100 KB document (an order with a thousand notes) cost about 0.5 ms of
-- Postgres's CPU per command, validating it as `json` about 0.2 ms (300 rows, this schema's
-- documents); the few KB of a usual order cost proportionally less. `->>` still works on it,
-- which erasure uses to find the records that name a person.
--
-- The table is rewritten once; it holds a day of records at most.
alter table idempotency_keys alter column response type json using response::json;

-- The type change leaves the column's compression as it was set by 0011; set it again where
-- the server has lz4, so that this holds whatever the order migrations ran in.
do $$
begin
    if exists (
        select 1 from pg_settings
         where name = 'default_toast_compression' and 'lz4' = any(enumvals)
    ) then
        alter table idempotency_keys alter column response set compression lz4;
    end if;
end
$$;
