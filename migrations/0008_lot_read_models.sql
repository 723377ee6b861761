-- Lots and recalls: the read side (part of the orders projection, so `oms replay --projection
-- orders` rebuilds it).
--
-- A recall asks forward (lot → its receipt, every shipment, what is left) and backward (sales
-- order → its lots → purchase orders, suppliers, plants, establishment numbers). Receipts and
-- shipments are final (no event undoes them), so both tables only ever gain rows: one per
-- received lot, and one per receipt or shipment of a lot, each written from the event that
-- recorded it, with that event's tenant position and time.
--
-- Nothing to fill in: no receipt or shipment carried lots before the API took them, with this
-- migration. A database that has some anyway gets their rows with
-- `oms replay --projection orders` (the projector skips events it has applied already).

-- One row per received lot: where and when it came from. `document` is the API's answer
-- (GET /lots, GET /lots/{id}); the columns are its fields.
create table read.lots (
    tenant_id            uuid        not null,
    lot_id               uuid        not null,
    lot_number           text        not null,
    supplier_id          uuid        not null,
    product_id           uuid        not null,
    purchase_order_id    uuid        not null,
    order_number         text        not null,
    line_id              uuid        not null,
    receipt_id           uuid        not null,
    plant_id             uuid,
    -- the lot's own establishment number, as the receipt gave it
    establishment_number text,
    production_date      date,
    received_on          date        not null,
    received_weight      numeric     not null,
    weight_unit          text        not null,
    -- the tenant position and time of the receipt event
    position             bigint      not null,
    created_at           timestamptz not null,
    document             jsonb       not null,
    primary key (tenant_id, lot_id)
);

create index lots_number_idx on read.lots (tenant_id, lot_number text_pattern_ops);
create index lots_supplier_idx on read.lots (tenant_id, supplier_id);
create index lots_purchase_order_idx on read.lots (tenant_id, purchase_order_id);
create index lots_created_idx on read.lots (tenant_id, created_at, lot_id);
create index lots_received_on_idx on read.lots (tenant_id, received_on, lot_id);

-- One row per receipt (kind 'received', from a purchase order) or shipment (kind 'shipped',
-- from a sales order) of a lot, per order line. supplier_id is the lot's supplier on every row;
-- customer_id is set on shipments. moved_on is the receipt's or the shipment's date.
create table read.lot_movements (
    tenant_id    uuid        not null,
    lot_id       uuid        not null,
    kind         text        not null check (kind in ('received', 'shipped')),
    order_type   text        not null check (order_type in ('purchase_order', 'sales_order')),
    order_id     uuid        not null,
    order_number text        not null,
    line_id      uuid        not null,
    product_id   uuid        not null,
    lot_number   text        not null,
    supplier_id  uuid        not null,
    customer_id  uuid,
    moved_on     date        not null,
    weight       numeric     not null,
    weight_unit  text        not null,
    -- the tenant position and time of the receipt or shipment event
    position     bigint      not null,
    recorded_at  timestamptz not null,
    primary key (tenant_id, lot_id, order_id, line_id),
    check ((kind = 'received') = (order_type = 'purchase_order')),
    check ((kind = 'shipped') = (customer_id is not null))
);

-- Backward trace: a sales order's lots (the forward trace uses the primary key).
create index lot_movements_order_idx on read.lot_movements (tenant_id, order_id);
-- Who received a recalled lot: the customers' shipments by customer.
create index lot_movements_customer_idx on read.lot_movements (tenant_id, customer_id)
    where customer_id is not null;

-- Row-level security as on every other read model (0002's loop ran before these tables
-- existed): a row is visible to, and may be written by, its tenant only.
alter table read.lots enable row level security;
alter table read.lots force row level security;
create policy tenant_isolation on read.lots
    using (tenant_id = (select read.current_tenant()))
    with check (tenant_id = (select read.current_tenant()));

alter table read.lot_movements enable row level security;
alter table read.lot_movements force row level security;
create policy tenant_isolation on read.lot_movements
    using (tenant_id = (select read.current_tenant()))
    with check (tenant_id = (select read.current_tenant()));

-- The default privileges of 0002 and 0006 already give analysts SELECT and the service its
-- read-model privileges on tables the migrating role creates; granted here too, so a deployment
-- whose migrating role differs from the one that ran 0006 gets the same.
grant select on read.lots, read.lot_movements to oms_analyst;
grant select, insert, update, delete on read.lots, read.lot_movements to oms_service;
