-- The read side: read models built from the event store by the projections (oms-projections),
-- queried by the API and, read-only, by analysts' own Postgres logins.
--
-- Everything lives in schema `read`. Every table's primary key starts with tenant_id (except
-- analyst_logins: a login is a cluster-wide role) and no foreign key crosses tenants, so the
-- schema can be distributed by tenant like the event store. Row-level security is enabled and
-- forced on every table: a row is visible only to its tenant (read.current_tenant()). Superusers
-- bypass row-level security, so production should run the service as a non-superuser owner.
--
-- Money is numeric with 2 places: numeric(18,2) for line amounts (weight < 1e9 times price
-- < 1e6 stays below 1e15) and numeric(24,2) for order-level sums, which have no line-count
-- bound; a read model must never refuse an event that the write side accepted.

create schema read;

-- Where each projection is in each tenant's event stream. The projector reads the row
-- `for update` and moves it in the same transaction as the read-model changes it applied.
create table read.checkpoints (
    tenant_id  uuid        not null,
    projection text        not null,
    position   bigint      not null default 0 check (position >= 0),
    updated_at timestamptz default now(),
    primary key (tenant_id, projection)
);

-- ---------------------------------------------------------------------------------------------
-- Analysts' logins and the tenant of the current session
-- ---------------------------------------------------------------------------------------------

-- Which tenant each analyst login (a Postgres role in group oms_analyst, made by
-- `oms analyst create-login`) belongs to. read.current_tenant() looks the session's login up
-- here, so an analyst's tenant comes from who logged in, not from a setting it could change.
create table read.analyst_logins (
    login      name        primary key,
    tenant_id  uuid        not null,
    created_at timestamptz not null default now()
);

create index analyst_logins_tenant_idx on read.analyst_logins (tenant_id, login);

-- The group role of analysts' logins: SELECT on the read models (granted at the end), nothing
-- else. Roles are cluster-wide and several databases may migrate at once: a concurrent
-- `create role` fails with unique_violation rather than duplicate_object, so both are ignored.
do $$
begin
    create role oms_analyst nologin;
exception
    when duplicate_object or unique_violation then null;
end
$$;

-- The tenant whose rows the session may see: an analyst login's own tenant (session_user, so
-- `set role` changes nothing); no tenant for any other member of oms_analyst; otherwise the
-- transaction's `app.tenant_id` setting (set by the service from the verified token).
-- SECURITY DEFINER so analysts need no access to read.analyst_logins; search_path pinned.
create function read.current_tenant() returns uuid
    language sql
    stable
    security definer
    set search_path = pg_catalog, pg_temp
as $$
    select case
        when l.tenant_id is not null then l.tenant_id
        when not r.rolsuper and pg_has_role(session_user, 'oms_analyst', 'member') then null
        else nullif(current_setting('app.tenant_id', true), '')::uuid
    end
    from (select session_user as login) s
    left join read.analyst_logins l on l.login = s.login
    left join pg_roles r on r.rolname = s.login
$$;

-- Days from the reference date to the due date for a credit-terms word: net_N is N days,
-- wire_1_day_prior is the day before, none (or an unknown word) is the same day.
create function read.credit_days(credit_terms text) returns integer
    language sql
    immutable
    set search_path = pg_catalog, pg_temp
as $$
    select case
        when credit_terms = 'wire_1_day_prior' then -1
        when credit_terms ~ '^net_[0-9]{1,4}$' then substr(credit_terms, 5)::integer
        else 0
    end
$$;

-- The aging bucket of a number of days past due.
create function read.aging_bucket(days_past_due integer) returns text
    language sql
    immutable
    set search_path = pg_catalog, pg_temp
as $$
    select case
        when days_past_due <= 0 then 'current'
        when days_past_due <= 30 then '1-30'
        when days_past_due <= 60 then '31-60'
        when days_past_due <= 90 then '61-90'
        else '90+'
    end
$$;

-- ---------------------------------------------------------------------------------------------
-- Reference data (projection reference_data)
-- ---------------------------------------------------------------------------------------------
-- One table per kind: the kind's fields as typed columns, `state` (the aggregate's serde form,
-- which the next event is applied to), `document` (what the API answers with).

-- Companies the tenant buys from.
create table read.suppliers (
    tenant_id     uuid        not null,
    id            uuid        not null,
    name          text        not null,
    code          text,
    contact_name  text,
    email         text,
    phone         text,
    address       text,
    payment_terms text,
    credit_terms  text,
    active        boolean     not null,
    version       bigint      not null check (version > 0),
    state         jsonb       not null,
    document      jsonb       not null,
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    primary key (tenant_id, id)
);

create index suppliers_code_idx on read.suppliers (tenant_id, code);
create index suppliers_name_idx on read.suppliers (tenant_id, lower(name));

-- Companies the tenant sells to.
create table read.customers (
    tenant_id     uuid        not null,
    id            uuid        not null,
    name          text        not null,
    code          text,
    contact_name  text,
    email         text,
    phone         text,
    address       text,
    payment_terms text,
    credit_terms  text,
    industry      text,
    active        boolean     not null,
    version       bigint      not null check (version > 0),
    state         jsonb       not null,
    document      jsonb       not null,
    created_at    timestamptz not null,
    updated_at    timestamptz not null,
    primary key (tenant_id, id)
);

create index customers_code_idx on read.customers (tenant_id, code);
create index customers_name_idx on read.customers (tenant_id, lower(name));

-- What the tenant trades. A product's display name is its description.
create table read.products (
    tenant_id       uuid        not null,
    id              uuid        not null,
    code            text        not null,
    description     text        not null,
    protein         text        not null,
    uom             text        not null,
    fresh_or_frozen text,
    package_type    text,
    net_or_catch    text,
    edible          text,
    active          boolean     not null,
    version         bigint      not null check (version > 0),
    state           jsonb       not null,
    document        jsonb       not null,
    created_at      timestamptz not null,
    updated_at      timestamptz not null,
    primary key (tenant_id, id)
);

create index products_code_idx on read.products (tenant_id, code);
create index products_name_idx on read.products (tenant_id, lower(description));

-- Packing plants.
create table read.plants (
    tenant_id            uuid        not null,
    id                   uuid        not null,
    name                 text        not null,
    code                 text        not null,
    establishment_number text,
    address              text,
    plant_type           text,
    active               boolean     not null,
    version              bigint      not null check (version > 0),
    state                jsonb       not null,
    document             jsonb       not null,
    created_at           timestamptz not null,
    updated_at           timestamptz not null,
    primary key (tenant_id, id)
);

create index plants_code_idx on read.plants (tenant_id, code);
create index plants_name_idx on read.plants (tenant_id, lower(name));

-- Freight carriers.
create table read.carriers (
    tenant_id    uuid        not null,
    id           uuid        not null,
    name         text        not null,
    code         text        not null,
    carrier_type text        not null,
    mc_number    text,
    dot_number   text,
    active       boolean     not null,
    version      bigint      not null check (version > 0),
    state        jsonb       not null,
    document     jsonb       not null,
    created_at   timestamptz not null,
    updated_at   timestamptz not null,
    primary key (tenant_id, id)
);

create index carriers_code_idx on read.carriers (tenant_id, code);
create index carriers_name_idx on read.carriers (tenant_id, lower(name));

-- ---------------------------------------------------------------------------------------------
-- Orders (projection orders)
-- ---------------------------------------------------------------------------------------------

-- Purchase orders: header, status and money as typed columns for filters and analysts;
-- `state` is the domain aggregate's serde form (each event is applied to it with the domain's
-- own apply, so this row cannot disagree with the aggregate); `document` is the API's answer.
create table read.purchase_orders (
    tenant_id                    uuid           not null,
    id                           uuid           not null,
    order_number                 text           not null,
    status                       text           not null,
    payment_status               text           not null,
    supplier_id                  uuid           not null,
    order_date                   date           not null,
    currency                     text           not null,
    weight_unit                  text           not null,
    logistics                    text           not null,
    plant_id                     uuid,
    carrier_id                   uuid,
    pickup_date                  date,
    delivery_date                date,
    payment_terms                text,
    supplier_confirmation_number text,
    carrier_release_number       text,
    notes                        text,
    total                        numeric(24, 2) not null,
    -- null until the first receipt
    received_total               numeric(24, 2),
    -- the ordered total until the first receipt, then the received total
    amount_due                   numeric(24, 2) not null,
    amount_paid                  numeric(24, 2) not null,
    -- amount_due - amount_paid; negative if a short receipt left it overpaid
    outstanding                  numeric(24, 2) not null,
    first_received_on            date,
    last_received_on             date,
    cancel_reason                text,
    reject_reason                text,
    version                      bigint         not null check (version > 0),
    -- the tenant position of the newest event applied
    last_position                bigint         not null,
    created_at                   timestamptz    not null,
    updated_at                   timestamptz    not null,
    state                        jsonb          not null,
    document                     jsonb          not null,
    primary key (tenant_id, id)
);

create index purchase_orders_status_idx on read.purchase_orders (tenant_id, status);
create index purchase_orders_supplier_idx on read.purchase_orders (tenant_id, supplier_id);
create index purchase_orders_order_date_idx on read.purchase_orders (tenant_id, order_date);
create index purchase_orders_number_idx on read.purchase_orders (tenant_id, order_number text_pattern_ops);
create index purchase_orders_created_idx on read.purchase_orders (tenant_id, created_at, id);

-- The lines of purchase orders, replaced whenever an event changes them. line_no is the
-- line's place on the order (1, 2, ...), in the order lines were added.
create table read.purchase_order_lines (
    tenant_id         uuid           not null,
    order_id          uuid           not null,
    line_id           uuid           not null,
    line_no           integer        not null,
    product_id        uuid           not null,
    description       text,
    weight            numeric        not null,
    price_per_unit    numeric        not null,
    quantity          bigint,
    amount            numeric(18, 2) not null,
    -- totals over all receipts; null until the line is first received
    received_weight   numeric,
    received_quantity bigint,
    received_amount   numeric(18, 2),
    primary key (tenant_id, order_id, line_id)
);

create index purchase_order_lines_product_idx on read.purchase_order_lines (tenant_id, product_id);

-- Sales orders; the same idea as purchase orders.
create table read.sales_orders (
    tenant_id              uuid           not null,
    id                     uuid           not null,
    order_number           text           not null,
    status                 text           not null,
    payment_status         text           not null,
    customer_id            uuid           not null,
    order_date             date           not null,
    currency               text           not null,
    weight_unit            text           not null,
    customer_po_number     text,
    plant_id               uuid,
    carrier_id             uuid,
    pickup_date            date,
    delivery_date          date,
    notes                  text,
    total                  numeric(24, 2) not null,
    -- the shipment, once shipped
    shipped_on             date,
    shipment_carrier_id    uuid,
    carrier_release_number text,
    shipped_total          numeric(24, 2),
    delivered_on           date,
    -- the invoice, once invoiced
    invoice_number         text,
    invoice_date           date,
    due_date               date,
    invoiced_amount        numeric(24, 2),
    -- the ordered total until shipped, then the shipped (= invoiced) total
    amount_due             numeric(24, 2) not null,
    amount_paid            numeric(24, 2) not null,
    outstanding            numeric(24, 2) not null,
    cancel_reason          text,
    version                bigint         not null check (version > 0),
    last_position          bigint         not null,
    created_at             timestamptz    not null,
    updated_at             timestamptz    not null,
    state                  jsonb          not null,
    document               jsonb          not null,
    primary key (tenant_id, id)
);

create index sales_orders_status_idx on read.sales_orders (tenant_id, status);
create index sales_orders_customer_idx on read.sales_orders (tenant_id, customer_id);
create index sales_orders_order_date_idx on read.sales_orders (tenant_id, order_date);
create index sales_orders_number_idx on read.sales_orders (tenant_id, order_number text_pattern_ops);
create index sales_orders_created_idx on read.sales_orders (tenant_id, created_at, id);

-- The lines of sales orders, with the purchase order that supplies each (back-to-back).
create table read.sales_order_lines (
    tenant_id                uuid           not null,
    order_id                 uuid           not null,
    line_id                  uuid           not null,
    line_no                  integer        not null,
    product_id               uuid           not null,
    description              text,
    weight                   numeric        not null,
    price_per_unit           numeric        not null,
    quantity                 bigint,
    amount                   numeric(18, 2) not null,
    source_purchase_order_id uuid,
    -- what was shipped; null if the line was not shipped (or not yet)
    shipped_weight           numeric,
    shipped_quantity         bigint,
    shipped_amount           numeric(18, 2),
    primary key (tenant_id, order_id, line_id)
);

create index sales_order_lines_product_idx on read.sales_order_lines (tenant_id, product_id);
create index sales_order_lines_source_idx on read.sales_order_lines (tenant_id, source_purchase_order_id);

-- ---------------------------------------------------------------------------------------------
-- History (projection order_history)
-- ---------------------------------------------------------------------------------------------

-- One row per event of an order: who, when, a human summary and every field it changed
-- ({field: {from, to}}). Derived from events, so tenant and actor are always set, and nothing
-- is deleted when an order is cancelled.
create table read.order_history (
    tenant_id   uuid        not null,
    order_type  text        not null check (order_type in ('purchase_order', 'sales_order')),
    order_id    uuid        not null,
    position    bigint      not null,
    sequence    bigint      not null check (sequence > 0),
    event_type  text        not null,
    actor       text        not null,
    actor_name  text,
    occurred_at timestamptz not null,
    summary     text        not null,
    changes     jsonb       not null,
    primary key (tenant_id, order_id, sequence)
);

create index order_history_position_idx on read.order_history (tenant_id, position);

-- The history projection's own fold of each order (the aggregate's serde form), so it can
-- compute before/after values without depending on the orders projection, which keeps its
-- own checkpoint and may be ahead or behind.
create table read.order_history_states (
    tenant_id  uuid   not null,
    order_id   uuid   not null,
    order_type text   not null check (order_type in ('purchase_order', 'sales_order')),
    version    bigint not null check (version > 0),
    state      jsonb  not null,
    primary key (tenant_id, order_id)
);

-- ---------------------------------------------------------------------------------------------
-- Analysts' views (security_invoker: the querying role's row-level security applies)
-- ---------------------------------------------------------------------------------------------

-- Open payables: purchase orders from approval on (nothing is owed on a draft or submitted
-- order; cancelled ones owe nothing) with something outstanding (a negative outstanding is a
-- credit with the supplier after a short receipt). Due date: the last receipt's date, else the
-- delivery date, else the order date, plus the supplier's credit terms.
create view read.payables with (security_invoker = true) as
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
    select coalesce(po.last_received_on, po.delivery_date, po.order_date)
           + read.credit_days(s.credit_terms) as due_date
) d
where po.status in ('approved', 'partially_received', 'received')
  and po.outstanding <> 0;

-- Open receivables: invoiced sales orders with something outstanding.
create view read.receivables with (security_invoker = true) as
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
    greatest(current_date - so.due_date, 0)    as days_past_due
from read.sales_orders so
left join read.customers c on c.tenant_id = so.tenant_id and c.id = so.customer_id
where so.invoice_number is not null
  and so.status <> 'cancelled'
  and so.outstanding <> 0;

-- Payables and receivables by aging bucket (current, 1-30, 31-60, 61-90, 90+ days past due,
-- counted from today); bucket_order sorts the buckets.
create view read.aging with (security_invoker = true) as
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
    end                                        as bucket_order
from (
    select tenant_id, 'payable'::text as direction, purchase_order_id as order_id, order_number,
           supplier_id as counterparty_id, supplier_name as counterparty_name, currency,
           due_date, outstanding, days_past_due
    from read.payables
    union all
    select tenant_id, 'receivable'::text, sales_order_id, order_number,
           customer_id, customer_name, currency,
           due_date, outstanding, days_past_due
    from read.receivables
) a;

-- Volume and value by order date, direction (purchase/sale), protein and product, per weight
-- unit and currency (they are never added across). Weight and value are the actual (catch)
-- figures where a line has them (received on a purchase, shipped on a sale), zero for a line
-- left out of a finished receipt or of the shipment, and the ordered figures before that.
-- Cancelled orders are left out.
create view read.daily_volume with (security_invoker = true) as
with lines as (
    select po.tenant_id, po.order_date as day, 'purchase'::text as direction, po.id as order_id,
           po.weight_unit, po.currency, l.product_id,
           case when l.received_weight is not null then l.received_weight
                when po.status in ('received', 'closed') then 0
                else l.weight end as weight,
           case when l.received_amount is not null then l.received_amount
                when po.status in ('received', 'closed') then 0
                else l.amount end as value
    from read.purchase_orders po
    join read.purchase_order_lines l on l.tenant_id = po.tenant_id and l.order_id = po.id
    where po.status <> 'cancelled'
    union all
    select so.tenant_id, so.order_date, 'sale'::text, so.id,
           so.weight_unit, so.currency, l.product_id,
           case when l.shipped_weight is not null then l.shipped_weight
                when so.shipped_on is not null then 0
                else l.weight end,
           case when l.shipped_amount is not null then l.shipped_amount
                when so.shipped_on is not null then 0
                else l.amount end
    from read.sales_orders so
    join read.sales_order_lines l on l.tenant_id = so.tenant_id and l.order_id = so.id
    where so.status <> 'cancelled'
)
select
    x.tenant_id,
    x.day,
    x.direction,
    p.protein,
    x.product_id,
    p.code                       as product_code,
    p.description                as product_description,
    x.weight_unit,
    x.currency,
    sum(x.weight)                as weight,
    sum(x.value)                 as value,
    count(distinct x.order_id)   as orders,
    count(*)                     as lines
from lines x
left join read.products p on p.tenant_id = x.tenant_id and p.id = x.product_id
group by x.tenant_id, x.day, x.direction, p.protein, x.product_id, p.code, p.description,
         x.weight_unit, x.currency;

-- Margin on back-to-back trades: each sales line with a source purchase order against that
-- order's lines of the same product. buy_price is their price per weight unit (averaged,
-- weighted by ordered weight, when there are several), converted to the sale's weight unit
-- (1 LB = 0.45359237 KG); null when the currencies differ or no line matches.
-- margin_total = margin_per_unit x sold_weight (the shipped weight if shipped, else ordered).
create view read.back_to_back_margin with (security_invoker = true) as
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
    round((sl.price_per_unit - b.buy_price) * w.sold_weight, 2) as margin_total
from read.sales_order_lines sl
join read.sales_orders so on so.tenant_id = sl.tenant_id and so.id = sl.order_id
left join read.customers c on c.tenant_id = so.tenant_id and c.id = so.customer_id
left join read.products p on p.tenant_id = sl.tenant_id and p.id = sl.product_id
left join read.purchase_orders po
       on po.tenant_id = sl.tenant_id and po.id = sl.source_purchase_order_id
left join lateral (
    select sum(pl.price_per_unit * pl.weight) / nullif(sum(pl.weight), 0) as avg_price
    from read.purchase_order_lines pl
    where pl.tenant_id = sl.tenant_id
      and pl.order_id = sl.source_purchase_order_id
      and pl.product_id = sl.product_id
) a on true
cross join lateral (
    select case
        when po.currency is distinct from so.currency then null
        when po.weight_unit = so.weight_unit then a.avg_price
        when po.weight_unit = 'KG' and so.weight_unit = 'LB' then a.avg_price * 0.45359237
        when po.weight_unit = 'LB' and so.weight_unit = 'KG' then a.avg_price / 0.45359237
    end as buy_price
) b
cross join lateral (
    select case
        when sl.shipped_weight is not null then sl.shipped_weight
        when so.shipped_on is not null then 0
        else sl.weight
    end as sold_weight
) w
where sl.source_purchase_order_id is not null
  and so.status <> 'cancelled';

-- ---------------------------------------------------------------------------------------------
-- Row-level security and grants
-- ---------------------------------------------------------------------------------------------

-- Every table but analyst_logins: a row is visible to, and may be written by, its tenant only.
-- `(select read.current_tenant())` is evaluated once per query, not once per row. FORCE makes
-- the policy apply to the tables' owner too (superusers still bypass it).
do $$
declare
    t text;
begin
    for t in
        select tablename from pg_tables
        where schemaname = 'read' and tablename <> 'analyst_logins'
        order by tablename
    loop
        execute format('alter table read.%I enable row level security', t);
        execute format('alter table read.%I force row level security', t);
        execute format(
            'create policy tenant_isolation on read.%I
                 using (tenant_id = (select read.current_tenant()))
                 with check (tenant_id = (select read.current_tenant()))',
            t);
    end loop;
end
$$;

-- analyst_logins: read.current_tenant() (running as the owner) sees the session's own login;
-- the service sees and writes the logins of the tenant in `app.tenant_id`.
alter table read.analyst_logins enable row level security;
alter table read.analyst_logins force row level security;
create policy own_login_or_tenant on read.analyst_logins
    using (login = session_user
           or tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid)
    with check (tenant_id = nullif(current_setting('app.tenant_id', true), '')::uuid);

-- Analysts read every read model and view (and the checkpoints, to see how fresh they are),
-- not the login table, and nothing of the public schema (the event store and its tables).
grant usage on schema read to oms_analyst;
grant select on all tables in schema read to oms_analyst;
revoke all on read.analyst_logins from oms_analyst;
revoke all on all tables in schema public from oms_analyst;
-- Read models added (or rebuilt) later by the migrating role are readable too.
alter default privileges in schema read grant select on tables to oms_analyst;
