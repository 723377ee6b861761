-- The write side: tenants, the event store and the small per-tenant tables that the append
-- transaction writes together with the events. Every primary and unique key starts with
-- tenant_id and no foreign key crosses tenants, so the schema can be distributed by tenant.

-- The businesses that share this deployment. Their id is the partition key of everything else.
create table tenants (
    id         uuid        primary key,
    name       text        not null check (length(btrim(name)) > 0),
    slug       text        not null unique check (slug ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    created_at timestamptz not null default now()
);

-- One row per tenant: the position and hash of the tenant's newest event. An append takes this
-- row last (update ... returning) just before commit, so a tenant's appends serialise on it and
-- positions come out gapless and in commit order; other tenants are not affected.
create table tenant_heads (
    tenant_id uuid   primary key references tenants (id),
    position  bigint not null default 0 check (position >= 0),
    -- sha-256 of the newest event; 32 zero bytes before the first one
    hash      bytea  not null default '\x0000000000000000000000000000000000000000000000000000000000000000'
);

-- The event store: the source of truth. Hash partitions of tenant_id are the single-node twin of
-- sharding by tenant.
create table events (
    tenant_id      uuid        not null,
    -- the tenant's event number: 1, 2, 3, ... without gaps, in commit order
    position       bigint      not null check (position > 0),
    aggregate_type text        not null,
    aggregate_id   uuid        not null,
    -- the aggregate's event number: 1, 2, 3, ...
    sequence       bigint      not null check (sequence > 0),
    event_type     text        not null,
    event_version  text        not null,
    payload        jsonb       not null,
    -- actor, request, correlation and causation ids, idempotency key
    metadata       jsonb       not null,
    recorded_at    timestamptz not null,
    -- sha-256(previous event's hash || canonical bytes of this event); see store::hash
    hash           bytea       not null,
    -- optimistic concurrency: two writers of one aggregate cannot both take a sequence number
    constraint events_pkey primary key (tenant_id, aggregate_type, aggregate_id, sequence),
    constraint events_position_key unique (tenant_id, position)
) partition by hash (tenant_id);

create table events_p0 partition of events for values with (modulus 8, remainder 0);
create table events_p1 partition of events for values with (modulus 8, remainder 1);
create table events_p2 partition of events for values with (modulus 8, remainder 2);
create table events_p3 partition of events for values with (modulus 8, remainder 3);
create table events_p4 partition of events for values with (modulus 8, remainder 4);
create table events_p5 partition of events for values with (modulus 8, remainder 5);
create table events_p6 partition of events for values with (modulus 8, remainder 6);
create table events_p7 partition of events for values with (modulus 8, remainder 7);

-- Uniqueness across aggregates: order numbers, invoice numbers and reference codes, unique per
-- tenant. Claimed and released by the events that set them, in the same transaction.
create table unique_keys (
    tenant_id    uuid not null,
    scope        text not null,
    key          text not null,
    aggregate_id uuid not null,
    constraint unique_keys_pkey primary key (tenant_id, scope, key)
);

-- Number series (PO-000001, SO-000001, INV-000001): the last number handed out per tenant and
-- series. Taken inside the append transaction, so a failed command gives its number back.
create table number_series (
    tenant_id  uuid   not null,
    series     text   not null,
    last_value bigint not null,
    primary key (tenant_id, series)
);

-- Idempotency-Key records: the first response to a keyed request, written in the same
-- transaction as its events, replayed for 24 hours to a repeat with the same request.
create table idempotency_keys (
    tenant_id    uuid        not null,
    key          text        not null,
    -- sha-256 of method, path and body: the same key with another request is refused
    request_hash bytea       not null,
    status       smallint    not null,
    response     jsonb       not null,
    headers      jsonb       not null default '{}',
    created_at   timestamptz not null default now(),
    constraint idempotency_keys_pkey primary key (tenant_id, key)
);
