-- How much of each received lot is left: the weight received and the weight shipped, per tenant
-- and lot, in the unit the lot was received in. Moved by the events that receive and ship lots
-- (PurchaseOrderReceiptRecorded, SalesOrderShipped), in their append transaction, like unique
-- keys: the row lock serialises two shipments racing for the same lot, and the second one
-- finds what the first took. A shipment that would take more than is left is refused there
-- (the append's statement finds the row's condition false and writes nothing); the check
-- below is the last line behind it.
--
-- Derived from the events alone, so it is filled here from the events already stored.
create table lot_stock (
    tenant_id uuid    not null,
    lot_id    uuid    not null,
    received  numeric not null check (received >= 0),
    shipped   numeric not null check (shipped >= 0),
    constraint lot_stock_pkey primary key (tenant_id, lot_id),
    constraint lot_stock_not_over_shipped check (shipped <= received)
);

insert into lot_stock (tenant_id, lot_id, received, shipped)
select e.tenant_id,
       (lot ->> 'lot_id')::uuid,
       sum(case when e.event_type = 'PurchaseOrderReceiptRecorded'
                then (lot ->> 'weight')::numeric else 0 end),
       sum(case when e.event_type = 'SalesOrderShipped'
                then (lot ->> 'weight')::numeric else 0 end)
  from events e
 cross join lateral jsonb_array_elements(
           coalesce(e.payload -> 'ReceiptRecorded' -> 'lines', e.payload -> 'Shipped' -> 'lines')
       ) as line
 cross join lateral jsonb_array_elements(coalesce(line -> 'lots', '[]'::jsonb)) as lot
 where e.event_type in ('PurchaseOrderReceiptRecorded', 'SalesOrderShipped')
 group by 1, 2;

-- The append transaction reads and moves it (insert ... on conflict do update).
grant select, insert, update on lot_stock to oms_service;
