-- Payables' due dates are decided by the domain (CreditTerms::due_date, PurchaseOrder::due_date)
-- and stored by the orders projection, instead of being worked out again in read.payables with
-- read.credit_days: a business rule lives in one place.
--
-- The due date depends on the supplier's credit terms, which belong to the supplier (another
-- aggregate, kept by another projection with its own checkpoint) and may change after the order
-- was placed. So the projection stores the order's due date under every credit terms a supplier
-- may have, and read.payables picks the one of the supplier's current terms, as it did before.
-- A credit terms word added to the domain later is filled in for existing orders by a replay of
-- the orders projection.

-- The order's due date under each credit terms, keyed by the terms' word, and 'none' for a
-- supplier without terms: {"none": "2026-03-01", "wire_1_day_prior": "2026-02-28",
-- "net_30": "2026-03-31", ...}. Null only on rows no event has rewritten since (see below).
alter table read.purchase_orders add column due_dates jsonb;

-- Rows projected before this migration get the dates read.payables gave them until now (the last
-- receipt, else the delivery date, else the order date, plus read.credit_days); the projection
-- rewrites them from the domain with each order's next event, and a replay rewrites them all.
-- Row-level security is forced on the table, which would hide every row from the migrating
-- owner: it is lifted for this one statement, inside the migration's transaction.
alter table read.purchase_orders no force row level security;

update read.purchase_orders po
set due_dates = (
    select jsonb_object_agg(
               t.word,
               coalesce(po.last_received_on, po.delivery_date, po.order_date)
                   + read.credit_days(nullif(t.word, 'none')))
    from unnest(array['none', 'wire_1_day_prior', 'net_7', 'net_15', 'net_30', 'net_45',
                      'net_60']) as t (word)
);

alter table read.purchase_orders force row level security;

-- Open payables, as in 0002 (same columns, same values), with the due date of the supplier's
-- current credit terms taken from due_dates. `create or replace` keeps the view's grants to
-- oms_analyst and read.aging, which is built on it.
create or replace view read.payables with (security_invoker = true) as
select
    po.tenant_id,
    po.id                                      as purchase_order_id,
    po.order_number,
    po.status,
    po.supplier_id,
    s.name                                     as supplier_name,
    s.credit_terms,
    po.order_date,
    po.currency,
    po.amount_due,
    po.amount_paid,
    po.outstanding,
    po.payment_status,
    d.due_date,
    greatest(current_date - d.due_date, 0)     as days_past_due
from read.purchase_orders po
left join read.suppliers s on s.tenant_id = po.tenant_id and s.id = po.supplier_id
cross join lateral (
    select (po.due_dates ->> coalesce(s.credit_terms, 'none'))::date as due_date
) d
where po.status in ('approved', 'partially_received', 'received')
  and po.outstanding <> 0;

-- Nothing computes a due date in SQL any more.
drop function read.credit_days(text);
