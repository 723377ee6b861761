-- The relay's progress: per tenant, the last position published to NATS JetStream and
-- acknowledged by it. Moved only after the ack; a relay holds the tenant's row
-- (select ... for update skip locked) while it publishes, so each tenant is relayed by one
-- relay process at a time while several run.
create table relay_checkpoints (
    tenant_id  uuid        primary key references tenants (id),
    position   bigint      not null default 0 check (position >= 0),
    updated_at timestamptz not null default now()
);
