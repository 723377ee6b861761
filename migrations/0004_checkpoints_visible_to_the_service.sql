-- The service (the role that owns the schema) reads read.checkpoints across tenants: the
-- projector's sweeper compares every tenant's checkpoints with its head, /metrics reports
-- every tenant's lag, and min_position reads a tenant's checkpoints before it knows whether
-- it must wait. Forced row-level security would hide those rows from a service that does
-- not connect as a superuser. Analysts (not the owner) stay bound by the tenant policy.
alter table read.checkpoints no force row level security;
