-- Claims, credit notes and refunds in the read models, for analysts.
--
-- The orders' documents already carry `credits` (the sum of accepted claims) and `refunds` (the
-- sum of money returned), and `outstanding = amount_due - credits - amount_paid + refunds`; the
-- order tables get the two sums as columns (the projector fills them from the document, like
-- every typed column), every claim gets a row of its own in read.claims (written by the orders
-- projection from the order's state), and the analysts' views show them: claims by reason,
-- supplier and customer; payables, receivables and aging with the credits and refunds behind
-- their outstanding; back-to-back margin net of the claims accepted on both sides.

-- Row-level security is forced on the read tables, which would hide every row from the
-- migrating owner: it is lifted for the back-fills below, inside the migration's transaction.
alter table read.purchase_orders no force row level security;
alter table read.sales_orders no force row level security;

-- ---------------------------------------------------------------------------------------------
-- Credits and refunds of each order
-- ---------------------------------------------------------------------------------------------

-- credits: the sum of the order's accepted claims; refunds: the sum of the money returned (by
-- the supplier on a purchase order, by us on a sales order). Rows projected before this
-- migration take them from their document (which has had them since claims exist; 0 before).
alter table read.purchase_orders
    add column credits numeric(24, 2),
    add column refunds numeric(24, 2);
alter table read.sales_orders
    add column credits numeric(24, 2),
    add column refunds numeric(24, 2);

update read.purchase_orders
set credits = coalesce((document ->> 'credits')::numeric, 0),
    refunds = coalesce((document ->> 'refunds')::numeric, 0);
update read.sales_orders
set credits = coalesce((document ->> 'credits')::numeric, 0),
    refunds = coalesce((document ->> 'refunds')::numeric, 0);

alter table read.purchase_orders
    alter column credits set not null,
    alter column refunds set not null;
alter table read.sales_orders
    alter column credits set not null,
    alter column refunds set not null;

-- ---------------------------------------------------------------------------------------------
-- Claims (projection orders)
-- ---------------------------------------------------------------------------------------------

-- One row per claim, on either kind of order: the claim as the order keeps it (its serde
-- form's fields are the columns of the same name), the order's number, counterparty, currency
-- and weight unit, and when the claim was raised and decided (the times of those events).
-- Claims are never removed from an order, so neither are their rows.
create table read.claims (
    tenant_id             uuid           not null,
    order_type            text           not null check (order_type in ('purchase_order', 'sales_order')),
    order_id              uuid           not null,
    claim_id              uuid           not null,
    order_number          text           not null,
    -- the order's supplier on a purchase claim, its customer on a sales claim
    supplier_id           uuid,
    customer_id           uuid,
    reason                text           not null,
    status                text           not null,
    currency              text           not null,
    weight_unit           text           not null,
    claimed_amount        numeric(24, 2) not null,
    -- once accepted
    accepted_amount       numeric(24, 2),
    -- once accepted: our credit note on a sales claim; the supplier's credit memo number, if it
    -- sent one, on a purchase claim
    credit_note_number    text,
    -- once rejected
    reject_reason         text,
    notes                 text,
    -- on a purchase claim: the sales claim it passes on to the supplier (back to back)
    source_sales_claim_id uuid,
    -- [{line_id, amount, weight, description}]: what is claimed of each order line
    lines                 jsonb          not null,
    -- when the claim was raised, and accepted or rejected (null while open)
    raised_at             timestamptz,
    decided_at            timestamptz,
    primary key (tenant_id, order_id, claim_id),
    check ((order_type = 'purchase_order') = (supplier_id is not null)),
    check ((order_type = 'sales_order') = (customer_id is not null))
);

create index claims_supplier_idx on read.claims (tenant_id, supplier_id) where supplier_id is not null;
create index claims_customer_idx on read.claims (tenant_id, customer_id) where customer_id is not null;
create index claims_status_idx on read.claims (tenant_id, status);
create index claims_source_idx on read.claims (tenant_id, source_sales_claim_id)
    where source_sales_claim_id is not null;

-- Claims of orders projected before this migration, from the orders' states as the projector
-- writes them, with their times from the events that raised and decided them; from then on
-- the projector keeps the rows.
insert into read.claims
select r.*
from (
    select 'purchase_order' as order_type, o.tenant_id, o.id, o.order_number, o.currency,
           o.weight_unit, 'supplier_id' as counterparty, o.supplier_id as counterparty_id,
           o.state -> 'claims' as claims, 'PurchaseOrder' as prefix
    from read.purchase_orders o
    union all
    select 'sales_order', o.tenant_id, o.id, o.order_number, o.currency, o.weight_unit,
           'customer_id', o.customer_id, o.state -> 'claims', 'SalesOrder'
    from read.sales_orders o
) o
cross join lateral jsonb_array_elements(coalesce(o.claims, '[]'::jsonb)) c (claim)
cross join lateral jsonb_populate_record(
    null::read.claims,
    c.claim || jsonb_build_object(
        'tenant_id', o.tenant_id,
        'order_type', o.order_type,
        'order_id', o.id,
        'order_number', o.order_number,
        'currency', o.currency,
        'weight_unit', o.weight_unit,
        o.counterparty, o.counterparty_id,
        'raised_at', (
            select e.recorded_at from public.events e
            where e.tenant_id = o.tenant_id and e.aggregate_type = o.order_type
              and e.aggregate_id = o.id
              and e.event_type = o.prefix || 'ClaimRaised'
              and e.payload -> 'ClaimRaised' ->> 'claim_id' = c.claim ->> 'claim_id'
            order by e.sequence limit 1),
        'decided_at', (
            select e.recorded_at from public.events e
            where e.tenant_id = o.tenant_id and e.aggregate_type = o.order_type
              and e.aggregate_id = o.id
              and e.event_type in (o.prefix || 'ClaimAccepted', o.prefix || 'ClaimRejected')
              and coalesce(e.payload -> 'ClaimAccepted', e.payload -> 'ClaimRejected')
                      ->> 'claim_id' = c.claim ->> 'claim_id'
            order by e.sequence limit 1)
    )
) r;

alter table read.purchase_orders force row level security;
alter table read.sales_orders force row level security;

-- Row-level security as on every read table (0002): a row is visible to, and may be written
-- by, its tenant only.
alter table read.claims enable row level security;
alter table read.claims force row level security;
create policy tenant_isolation on read.claims
    using (tenant_id = (select read.current_tenant()))
    with check (tenant_id = (select read.current_tenant()));

-- The projector writes the rows (upserts: a claim's times are kept when a later event
-- rewrites it), the API and analysts read them. Default privileges (0002, 0006) grant the
-- same to tables the migrating role creates; granted here too so that it holds whoever runs
-- the migration.
grant select, insert, update, delete on read.claims to oms_service;
grant select on read.claims to oms_analyst;

-- ---------------------------------------------------------------------------------------------
-- Analysts' views (security_invoker: the querying role's row-level security applies)
-- ---------------------------------------------------------------------------------------------

-- Claims by reason, on each kind of order (purchase claims are ours against suppliers, sales
-- claims our customers' against us), per currency: how many, how many of each status, and the
-- amounts claimed, accepted (credited), claimed by the claims rejected and claimed by those
-- still open.
create view read.claims_by_reason with (security_invoker = true) as
select
    cl.tenant_id,
    cl.order_type,
    cl.reason,
    cl.currency,
    count(*)                                                        as claims,
    count(*) filter (where cl.status = 'open')                      as open_claims,
    count(*) filter (where cl.status = 'accepted')                  as accepted_claims,
    count(*) filter (where cl.status = 'rejected')                  as rejected_claims,
    sum(cl.claimed_amount)                                          as claimed_amount,
    coalesce(sum(cl.accepted_amount) filter (where cl.status = 'accepted'), 0.00)
                                                                    as accepted_amount,
    coalesce(sum(cl.claimed_amount) filter (where cl.status = 'rejected'), 0.00)
                                                                    as rejected_amount,
    coalesce(sum(cl.claimed_amount) filter (where cl.status = 'open'), 0.00)
                                                                    as open_amount
from read.claims cl
group by cl.tenant_id, cl.order_type, cl.reason, cl.currency;

-- Claims against each supplier (purchase claims), per currency; the same figures.
create view read.claims_by_supplier with (security_invoker = true) as
select
    cl.tenant_id,
    cl.supplier_id,
    s.name                                                          as supplier_name,
    cl.currency,
    count(*)                                                        as claims,
    count(*) filter (where cl.status = 'open')                      as open_claims,
    count(*) filter (where cl.status = 'accepted')                  as accepted_claims,
    count(*) filter (where cl.status = 'rejected')                  as rejected_claims,
    sum(cl.claimed_amount)                                          as claimed_amount,
    coalesce(sum(cl.accepted_amount) filter (where cl.status = 'accepted'), 0.00)
                                                                    as accepted_amount,
    coalesce(sum(cl.claimed_amount) filter (where cl.status = 'rejected'), 0.00)
                                                                    as rejected_amount,
    coalesce(sum(cl.claimed_amount) filter (where cl.status = 'open'), 0.00)
                                                                    as open_amount
from read.claims cl
left join read.suppliers s on s.tenant_id = cl.tenant_id and s.id = cl.supplier_id
where cl.order_type = 'purchase_order'
group by cl.tenant_id, cl.supplier_id, s.name, cl.currency;

-- Claims by each customer (sales claims), per currency; the same figures.
create view read.claims_by_customer with (security_invoker = true) as
select
    cl.tenant_id,
    cl.customer_id,
    c.name                                                          as customer_name,
    cl.currency,
    count(*)                                                        as claims,
    count(*) filter (where cl.status = 'open')                      as open_claims,
    count(*) filter (where cl.status = 'accepted')                  as accepted_claims,
    count(*) filter (where cl.status = 'rejected')                  as rejected_claims,
    sum(cl.claimed_amount)                                          as claimed_amount,
    coalesce(sum(cl.accepted_amount) filter (where cl.status = 'accepted'), 0.00)
                                                                    as accepted_amount,
    coalesce(sum(cl.claimed_amount) filter (where cl.status = 'rejected'), 0.00)
                                                                    as rejected_amount,
    coalesce(sum(cl.claimed_amount) filter (where cl.status = 'open'), 0.00)
                                                                    as open_amount
from read.claims cl
left join read.customers c on c.tenant_id = cl.tenant_id and c.id = cl.customer_id
where cl.order_type = 'sales_order'
group by cl.tenant_id, cl.customer_id, c.name, cl.currency;

-- Open payables, as in 0005 (same columns, same values, same rows), with the credits and
-- refunds behind `outstanding` (amount_due - credits - amount_paid + refunds; negative when the
-- supplier owes us, after a short receipt or a credit, until it refunds). New columns go last:
-- `create or replace` keeps the view's grants and read.aging, which is built on it.
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
    greatest(current_date - d.due_date, 0)     as days_past_due,
    po.credits,
    po.refunds
from read.purchase_orders po
left join read.suppliers s on s.tenant_id = po.tenant_id and s.id = po.supplier_id
cross join lateral (
    select (po.due_dates ->> coalesce(s.credit_terms, 'none'))::date as due_date
) d
where po.status in ('approved', 'partially_received', 'received')
  and po.outstanding <> 0;

-- Open receivables, as in 0002, with the credits (our credit notes) and refunds behind
-- `outstanding` (negative when we owe the customer, after a credit, until we refund).
create or replace view read.receivables with (security_invoker = true) as
select
    so.tenant_id,
    so.id                                      as sales_order_id,
    so.order_number,
    so.status,
    so.customer_id,
    c.name                                     as customer_name,
    so.currency,
    so.invoice_number,
    so.invoice_date,
    so.due_date,
    so.invoiced_amount,
    so.amount_paid,
    so.outstanding,
    so.payment_status,
    greatest(current_date - so.due_date, 0)    as days_past_due,
    so.credits,
    so.refunds
from read.sales_orders so
left join read.customers c on c.tenant_id = so.tenant_id and c.id = so.customer_id
where so.invoice_number is not null
  and so.status <> 'cancelled'
  and so.outstanding <> 0;

-- Aging, as in 0002, with each order's credits and refunds.
create or replace view read.aging with (security_invoker = true) as
select
    a.tenant_id,
    a.direction,
    a.order_id,
    a.order_number,
    a.counterparty_id,
    a.counterparty_name,
    a.currency,
    a.due_date,
    a.outstanding,
    a.days_past_due,
    read.aging_bucket(a.days_past_due)         as bucket,
    case read.aging_bucket(a.days_past_due)
        when 'current' then 0 when '1-30' then 1 when '31-60' then 2 when '61-90' then 3 else 4
    end                                        as bucket_order,
    a.credits,
    a.refunds
from (
    select tenant_id, 'payable'::text as direction, purchase_order_id as order_id, order_number,
           supplier_id as counterparty_id, supplier_name as counterparty_name, currency,
           due_date, outstanding, days_past_due, credits, refunds
    from read.payables
    union all
    select tenant_id, 'receivable'::text, sales_order_id, order_number,
           customer_id, customer_name, currency,
           due_date, outstanding, days_past_due, credits, refunds
    from read.receivables
) a;

-- Back-to-back margin, as in 0002 (same columns, same values), and the margin net of the
-- claims accepted on both sides:
--   sell_credit  the credits of the sales line: each accepted sales claim's accepted amount
--                shared among its lines in proportion to their claimed amounts (a one-line
--                claim credits its line the whole accepted amount), this line's shares summed;
--   buy_credit   the credits of the source purchase order's lines of the same product (shared
--                the same way), spread over every unit of those lines (received weight, zero
--                for a line left out of a finished receipt, ordered weight before any receipt),
--                converted to the sale's weight unit, times the sold weight: a credit from the
--                packer lowers the cost of every unit bought of it, sold on this line or not;
--                null when the currencies differ, as buy_price is.
--   net_margin_total    = margin_total - sell_credit + buy_credit (from the unrounded figures);
--   net_margin_per_unit = net_margin_total / sold_weight (null when nothing was sold);
--   margin_per_lb, net_margin_per_lb: margin_per_unit and net_margin_per_unit per pound
--                (a KG sale's per-unit figures times 0.45359237).
create or replace view read.back_to_back_margin with (security_invoker = true) as
select
    sl.tenant_id,
    so.id                                               as sales_order_id,
    so.order_number                                     as sales_order_number,
    so.status                                           as sales_order_status,
    so.order_date,
    so.customer_id,
    c.name                                              as customer_name,
    sl.line_id                                          as sales_line_id,
    sl.product_id,
    p.code                                              as product_code,
    p.description                                       as product_description,
    p.protein,
    sl.source_purchase_order_id                         as purchase_order_id,
    po.order_number                                     as purchase_order_number,
    po.supplier_id,
    so.weight_unit,
    so.currency,
    round(b.buy_price, 4)                               as buy_price,
    sl.price_per_unit                                   as sell_price,
    round(sl.price_per_unit - b.buy_price, 4)           as margin_per_unit,
    w.sold_weight,
    round((sl.price_per_unit - b.buy_price) * w.sold_weight, 2) as margin_total,
    round(coalesce(sc.credit, 0), 2)                    as sell_credit,
    round(b.buy_credit_per_unit * w.sold_weight, 2)     as buy_credit,
    round(n.net_margin, 2)                              as net_margin_total,
    round(n.net_margin / nullif(w.sold_weight, 0), 4)   as net_margin_per_unit,
    round((sl.price_per_unit - b.buy_price) * u.to_lb, 4) as margin_per_lb,
    round(n.net_margin / nullif(w.sold_weight, 0) * u.to_lb, 4) as net_margin_per_lb
from read.sales_order_lines sl
join read.sales_orders so on so.tenant_id = sl.tenant_id and so.id = sl.order_id
left join read.customers c on c.tenant_id = so.tenant_id and c.id = so.customer_id
left join read.products p on p.tenant_id = sl.tenant_id and p.id = sl.product_id
left join read.purchase_orders po
       on po.tenant_id = sl.tenant_id and po.id = sl.source_purchase_order_id
left join lateral (
    select sum(pl.price_per_unit * pl.weight) / nullif(sum(pl.weight), 0) as avg_price,
           sum(case when pl.received_weight is not null then pl.received_weight
                    when po.status in ('received', 'closed') then 0
                    else pl.weight end) as bought_weight
    from read.purchase_order_lines pl
    where pl.tenant_id = sl.tenant_id
      and pl.order_id = sl.source_purchase_order_id
      and pl.product_id = sl.product_id
) a on true
left join lateral (
    select sum((l.line ->> 'amount')::numeric * cl.accepted_amount / cl.claimed_amount) as credit
    from read.claims cl
    cross join lateral jsonb_array_elements(cl.lines) l (line)
    join read.purchase_order_lines pl
      on pl.tenant_id = cl.tenant_id and pl.order_id = cl.order_id
     and pl.line_id = (l.line ->> 'line_id')::uuid
    where cl.tenant_id = sl.tenant_id
      and cl.order_id = sl.source_purchase_order_id
      and cl.status = 'accepted'
      and pl.product_id = sl.product_id
) bc on true
left join lateral (
    select sum((l.line ->> 'amount')::numeric * cl.accepted_amount / cl.claimed_amount) as credit
    from read.claims cl
    cross join lateral jsonb_array_elements(cl.lines) l (line)
    where cl.tenant_id = sl.tenant_id
      and cl.order_id = sl.order_id
      and cl.status = 'accepted'
      and (l.line ->> 'line_id')::uuid = sl.line_id
) sc on true
cross join lateral (
    select coalesce(bc.credit, 0) / nullif(a.bought_weight, 0) as per_unit
) bu
cross join lateral (
    select case
        when po.currency is distinct from so.currency then null
        when po.weight_unit = so.weight_unit then a.avg_price
        when po.weight_unit = 'KG' and so.weight_unit = 'LB' then a.avg_price * 0.45359237
        when po.weight_unit = 'LB' and so.weight_unit = 'KG' then a.avg_price / 0.45359237
    end as buy_price,
    case
        when po.currency is distinct from so.currency then null
        when coalesce(bc.credit, 0) = 0 then 0
        when po.weight_unit = so.weight_unit then bu.per_unit
        when po.weight_unit = 'KG' and so.weight_unit = 'LB' then bu.per_unit * 0.45359237
        when po.weight_unit = 'LB' and so.weight_unit = 'KG' then bu.per_unit / 0.45359237
    end as buy_credit_per_unit
) b
cross join lateral (
    select case
        when sl.shipped_weight is not null then sl.shipped_weight
        when so.shipped_on is not null then 0
        else sl.weight
    end as sold_weight
) w
cross join lateral (
    select (sl.price_per_unit - b.buy_price + b.buy_credit_per_unit) * w.sold_weight
           - coalesce(sc.credit, 0) as net_margin
) n
cross join lateral (
    select case so.weight_unit when 'KG' then 0.45359237 else 1 end as to_lb
) u
where sl.source_purchase_order_id is not null
  and so.status <> 'cancelled';

grant select on read.claims_by_reason, read.claims_by_supplier, read.claims_by_customer
    to oms_analyst, oms_service;
