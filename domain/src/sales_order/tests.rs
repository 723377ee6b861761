//! Given/when/then specifications of the sales order, one rule per test.

use cqrs_es::event_sink::EventSink;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::{Aggregate, DomainEvent};

use super::*;
use crate::error::FieldError;
use crate::fixtures::*;
use crate::values::PaymentMethod;

use SalesOrderStatus as S;

fn header() -> SalesOrderHeader {
    SalesOrderHeader {
        customer_id: CUSTOMER,
        order_date: date("2024-06-01"),
        currency: Currency::default(),
        weight_unit: WeightUnit::Lb,
        customer_po_number: Some(ShortText::parse("CUST-77").unwrap()),
        plant_id: Some(PLANT),
        carrier_id: None,
        pickup_date: None,
        delivery_date: Some(date("2024-06-10")),
        notes: None,
    }
}

fn new_line(line_id: Uuid, product_id: Uuid, w: &str, p: &str, source: Option<Uuid>) -> NewLine {
    NewLine {
        line_id,
        product_id,
        weight: weight(w),
        price_per_unit: price(p),
        quantity: None,
        description: None,
        source_purchase_order_id: source,
    }
}

fn order_line(line: NewLine, amount: &str) -> OrderLine {
    let line = OrderLine::new(line);
    assert_eq!(line.amount, money(amount));
    line
}

/// 40000 LB × 2.30 = 92000.00 (from SOURCE_PO) and 10000.5 LB × 1.3333 = 13333.67.
fn create() -> SalesOrderCommand {
    SalesOrderCommand::Create(NewSalesOrder {
        order_number: OrderNumber::assigned("SO", 1),
        header: header(),
        lines: vec![
            new_line(LINE_1, BEEF, "40000", "2.30", Some(SOURCE_PO)),
            new_line(LINE_2, PORK, "10000.5", "1.3333", None),
        ],
    })
}

fn reason(text: &str) -> Reason {
    Reason::parse(text).unwrap()
}

fn ship(lines: &[(Uuid, &str)]) -> SalesOrderCommand {
    SalesOrderCommand::Ship {
        shipped_on: date("2024-06-12"),
        carrier_id: Some(CARRIER),
        carrier_release_number: Some(ShortText::parse("REL-1").unwrap()),
        lines: lines
            .iter()
            .map(|&(line_id, w)| ShipLineInput {
                line_id,
                weight: weight(w),
                quantity: None,
                lots: Vec::new(),
            })
            .collect(),
    }
}

fn invoice(number: u64, invoice_date: &str, due_date: &str) -> SalesOrderCommand {
    SalesOrderCommand::Invoice {
        invoice_number: InvoiceNumber::assigned("INV", number),
        invoice_date: date(invoice_date),
        due_date: date(due_date),
    }
}

fn payment(id: u128, amount: &str, paid_on: &str) -> SalesOrderCommand {
    SalesOrderCommand::RecordPayment(NewPayment {
        payment_id: Uuid::from_u128(id),
        amount: money(amount),
        paid_on: date(paid_on),
        method: PaymentMethod::Ach,
        reference: None,
    })
}

/// The commands that bring a new order to `status`.
///
/// Shipped: 39990 LB of line 1 (91977.00) and 10000.5 LB of line 2 (13333.67) = 105310.67.
fn commands_to(status: SalesOrderStatus) -> Vec<SalesOrderCommand> {
    let mut commands = vec![create()];
    let steps = [
        SalesOrderCommand::Confirm,
        ship(&[(LINE_1, "39990"), (LINE_2, "10000.5")]),
        SalesOrderCommand::Deliver {
            delivered_on: date("2024-06-13"),
        },
        invoice(1, "2024-06-14", "2024-07-14"),
        payment(1, "105310.67", TODAY),
        SalesOrderCommand::Close,
    ];
    let take = match status {
        S::Draft | S::Cancelled => 0,
        S::Confirmed => 1,
        S::Shipped => 2,
        S::Delivered => 3,
        S::Invoiced => 4,
        S::Closed => 6,
    };
    commands.extend(steps.into_iter().take(take));
    if status == S::Cancelled {
        commands.push(SalesOrderCommand::Cancel {
            reason: reason("customer cancelled"),
        });
    }
    commands
}

async fn run(commands: Vec<SalesOrderCommand>) -> (SalesOrder, Vec<SalesOrderEvent>) {
    let services = services();
    let mut order = SalesOrder::default();
    let mut events = Vec::new();
    for command in commands {
        let sink = EventSink::default();
        order
            .handle(command.clone(), &services, &sink)
            .await
            .unwrap_or_else(|e| panic!("setup command {command:?} failed: {e}"));
        events.extend(sink.collect().await);
    }
    (order, events)
}

async fn history(status: SalesOrderStatus) -> Vec<SalesOrderEvent> {
    run(commands_to(status)).await.1
}

async fn given(status: SalesOrderStatus) -> AggregateTestExecutor<SalesOrder> {
    TestFramework::<SalesOrder>::with(services()).given(history(status).await)
}

async fn given_commands(commands: Vec<SalesOrderCommand>) -> AggregateTestExecutor<SalesOrder> {
    TestFramework::<SalesOrder>::with(services()).given(run(commands).await.1)
}

async fn refused_outside(
    allowed: &[SalesOrderStatus],
    action: &'static str,
    command: impl Fn() -> SalesOrderCommand,
) {
    for &status in SalesOrderStatus::ALL {
        if allowed.contains(&status) {
            continue;
        }
        given(status)
            .await
            .when_async(command())
            .await
            .then_expect_error(DomainError::NotAllowed {
                action,
                status: status.to_string(),
            });
    }
}

fn invalid(errors: &[(&str, &str)]) -> DomainError {
    DomainError::Invalid(
        errors
            .iter()
            .map(|(field, message)| FieldError::new(*field, *message))
            .collect(),
    )
}

// --- create ---------------------------------------------------------------------------

#[tokio::test]
async fn create_records_lines_with_their_source_purchase_order_and_total() {
    TestFramework::<SalesOrder>::with(services())
        .given_no_previous_events()
        .when_async(create())
        .await
        .then_expect_events(vec![SalesOrderEvent::Created {
            order_number: OrderNumber::assigned("SO", 1),
            header: header(),
            lines: vec![
                order_line(
                    new_line(LINE_1, BEEF, "40000", "2.30", Some(SOURCE_PO)),
                    "92000.00",
                ),
                order_line(
                    new_line(LINE_2, PORK, "10000.5", "1.3333", None),
                    "13333.67",
                ),
            ],
            total: money("105333.67"),
        }]);
}

#[tokio::test]
async fn create_claims_the_sales_order_number() {
    let events = history(S::Draft).await;
    assert_eq!(events[0].event_type(), "SalesOrderCreated");
    assert_eq!(
        events[0].unique_key_changes(),
        vec![UniqueKeyChange::Claim {
            scope: "sales_order_number",
            key: "SO-000001".to_owned(),
        }]
    );
}

#[tokio::test]
async fn create_on_an_existing_order_is_already_exists() {
    given(S::Draft)
        .await
        .when_async(create())
        .await
        .then_expect_error(DomainError::AlreadyExists);
}

#[tokio::test]
async fn create_requires_usable_customer_products_and_source_purchase_orders() {
    let mut header = header();
    header.customer_id = INACTIVE_CUSTOMER;
    header.carrier_id = Some(UNKNOWN);
    header.delivery_date = Some(date("2024-05-01"));
    TestFramework::<SalesOrder>::with(services())
        .given_no_previous_events()
        .when_async(SalesOrderCommand::Create(NewSalesOrder {
            order_number: OrderNumber::assigned("SO", 1),
            header,
            lines: vec![
                new_line(LINE_1, INACTIVE_PRODUCT, "1", "1", Some(UNKNOWN)),
                new_line(LINE_1, BEEF, "1", "1", None),
            ],
        }))
        .await
        .then_expect_error(invalid(&[
            ("customer_id", "customer is inactive"),
            ("carrier_id", "no such carrier"),
            ("delivery_date", "must not be before the order date"),
            ("lines[1].line_id", "repeats an earlier line's id"),
            ("lines[0].product_id", "product is inactive"),
            (
                "lines[0].source_purchase_order_id",
                "no such purchase order",
            ),
        ]));
}

#[tokio::test]
async fn every_other_command_on_a_missing_order_is_not_found() {
    let commands = vec![
        SalesOrderCommand::ChangeHeader(SalesOrderHeaderPatch::default()),
        SalesOrderCommand::AddLine(new_line(LINE_3, BEEF, "1", "1", None)),
        SalesOrderCommand::ChangeLine {
            line_id: LINE_1,
            patch: LinePatch::default(),
        },
        SalesOrderCommand::RemoveLine { line_id: LINE_1 },
        SalesOrderCommand::Confirm,
        ship(&[(LINE_1, "1")]),
        SalesOrderCommand::Deliver {
            delivered_on: date(TODAY),
        },
        invoice(1, TODAY, TODAY),
        payment(1, "1.00", TODAY),
        SalesOrderCommand::AddNote {
            note_id: Uuid::from_u128(1),
            text: NoteText::parse("x").unwrap(),
        },
        SalesOrderCommand::Close,
        SalesOrderCommand::Cancel {
            reason: reason("x"),
        },
        raise(9, &[(LINE_1, "1.00")]),
        accept(9, None, 1),
        reject_claim(9),
        refund(1, "1.00", TODAY),
    ];
    for command in commands {
        TestFramework::<SalesOrder>::with(services())
            .given_no_previous_events()
            .when_async(command)
            .await
            .then_expect_error(DomainError::NotFound);
    }
}

// --- header and lines -----------------------------------------------------------------

#[tokio::test]
async fn change_header_in_draft_records_before_and_after() {
    let patch: SalesOrderHeaderPatch = serde_json::from_value(serde_json::json!({
        "customer_po_number": null,
        "currency": "CAD",
    }))
    .unwrap();
    let mut expected = header();
    expected.customer_po_number = None;
    expected.currency = Currency::parse("CAD").unwrap();
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::ChangeHeader(patch))
        .await
        .then_expect_events(vec![SalesOrderEvent::HeaderChanged {
            changes: diff(&header(), &expected),
            header: expected,
        }]);
}

#[tokio::test]
async fn change_header_that_changes_nothing_writes_nothing() {
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::ChangeHeader(SalesOrderHeaderPatch {
            customer_id: Some(CUSTOMER),
            ..Default::default()
        }))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn change_header_requires_an_active_new_customer() {
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::ChangeHeader(SalesOrderHeaderPatch {
            customer_id: Some(UNKNOWN),
            ..Default::default()
        }))
        .await
        .then_expect_error(invalid(&[("customer_id", "no such customer")]));
}

#[tokio::test]
async fn change_header_requires_draft() {
    refused_outside(&[S::Draft], "change the header of", || {
        SalesOrderCommand::ChangeHeader(SalesOrderHeaderPatch {
            pickup_date: Some(Some(date("2024-06-09"))),
            ..Default::default()
        })
    })
    .await;
}

#[tokio::test]
async fn add_line_in_draft_adds_to_the_total() {
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::AddLine(new_line(
            LINE_3,
            PORK,
            "1",
            "0.125",
            Some(SOURCE_PO),
        )))
        .await
        .then_expect_events(vec![SalesOrderEvent::LineAdded {
            line: order_line(
                new_line(LINE_3, PORK, "1", "0.125", Some(SOURCE_PO)),
                "0.13",
            ),
            total: money("105333.80"),
        }]);
}

#[tokio::test]
async fn add_line_requires_an_existing_source_purchase_order() {
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::AddLine(new_line(
            LINE_3,
            PORK,
            "1",
            "1",
            Some(UNKNOWN),
        )))
        .await
        .then_expect_error(invalid(&[(
            "source_purchase_order_id",
            "no such purchase order",
        )]));
}

#[tokio::test]
async fn add_line_requires_draft() {
    refused_outside(&[S::Draft], "add a line to", || {
        SalesOrderCommand::AddLine(new_line(LINE_3, BEEF, "1", "1", None))
    })
    .await;
}

#[tokio::test]
async fn change_line_recomputes_amount_and_checks_a_new_source() {
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::ChangeLine {
            line_id: LINE_2,
            patch: LinePatch {
                price_per_unit: Some(price("1.4")),
                source_purchase_order_id: Some(Some(UNKNOWN)),
                ..Default::default()
            },
        })
        .await
        .then_expect_error(invalid(&[(
            "source_purchase_order_id",
            "no such purchase order",
        )]));
    let before = order_line(
        new_line(LINE_2, PORK, "10000.5", "1.3333", None),
        "13333.67",
    );
    let after = order_line(new_line(LINE_2, PORK, "10000.5", "1.4", None), "14000.70");
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::ChangeLine {
            line_id: LINE_2,
            patch: LinePatch {
                price_per_unit: Some(price("1.4")),
                ..Default::default()
            },
        })
        .await
        .then_expect_events(vec![SalesOrderEvent::LineChanged {
            line_id: LINE_2,
            changes: diff(&before, &after),
            line: after,
            total: money("106000.70"),
        }]);
}

#[tokio::test]
async fn change_or_remove_of_an_unknown_line_is_line_not_found() {
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::ChangeLine {
            line_id: LINE_3,
            patch: LinePatch::default(),
        })
        .await
        .then_expect_error(DomainError::LineNotFound(LINE_3));
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::RemoveLine { line_id: LINE_3 })
        .await
        .then_expect_error(DomainError::LineNotFound(LINE_3));
}

#[tokio::test]
async fn change_line_requires_draft() {
    refused_outside(&[S::Draft], "change a line of", || {
        SalesOrderCommand::ChangeLine {
            line_id: LINE_1,
            patch: LinePatch {
                quantity: Some(None),
                ..Default::default()
            },
        }
    })
    .await;
}

#[tokio::test]
async fn remove_line_in_draft_takes_its_amount_off_the_total() {
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::RemoveLine { line_id: LINE_2 })
        .await
        .then_expect_events(vec![SalesOrderEvent::LineRemoved {
            line: order_line(
                new_line(LINE_2, PORK, "10000.5", "1.3333", None),
                "13333.67",
            ),
            total: money("92000.00"),
        }]);
}

#[tokio::test]
async fn remove_line_requires_draft() {
    refused_outside(&[S::Draft], "remove a line from", || {
        SalesOrderCommand::RemoveLine { line_id: LINE_1 }
    })
    .await;
}

// --- confirm, ship, deliver, invoice --------------------------------------------------

#[tokio::test]
async fn confirm_moves_a_draft_to_confirmed() {
    given(S::Draft)
        .await
        .when_async(SalesOrderCommand::Confirm)
        .await
        .then_expect_events(vec![SalesOrderEvent::Confirmed {
            total: money("105333.67"),
        }]);
}

#[tokio::test]
async fn confirm_requires_at_least_one_line() {
    given_commands(vec![
        create(),
        SalesOrderCommand::RemoveLine { line_id: LINE_1 },
        SalesOrderCommand::RemoveLine { line_id: LINE_2 },
    ])
    .await
    .when_async(SalesOrderCommand::Confirm)
    .await
    .then_expect_error(invalid(&[(
        "lines",
        "the order needs at least one line to be confirmed",
    )]));
}

#[tokio::test]
async fn confirm_requires_draft() {
    refused_outside(&[S::Draft], "confirm", || SalesOrderCommand::Confirm).await;
}

#[tokio::test]
async fn ship_records_shipped_weights_and_makes_the_shipped_total_due() {
    given(S::Confirmed)
        .await
        .when_async(ship(&[(LINE_1, "39990")]))
        .await
        .then_expect_events(vec![SalesOrderEvent::Shipped {
            shipped_on: date("2024-06-12"),
            carrier_id: Some(CARRIER),
            carrier_release_number: Some(ShortText::parse("REL-1").unwrap()),
            lines: vec![ShippedLine {
                line_id: LINE_1,
                weight: weight("39990"),
                quantity: None,
                lots: Vec::new(),
                shipped_amount: money("91977.00"),
            }],
            shipped_total: money("91977.00"),
            amount_due: money("91977.00"),
        }]);
}

#[tokio::test]
async fn ship_refuses_empty_unknown_and_repeated_lines_and_an_inactive_carrier() {
    given(S::Confirmed)
        .await
        .when_async(SalesOrderCommand::Ship {
            shipped_on: date("2024-06-12"),
            carrier_id: Some(INACTIVE_CARRIER),
            carrier_release_number: None,
            lines: vec![],
        })
        .await
        .then_expect_error(invalid(&[
            ("carrier_id", "carrier is inactive"),
            ("lines", "must name at least one line"),
        ]));
    given(S::Confirmed)
        .await
        .when_async(ship(&[(LINE_3, "1"), (LINE_1, "1"), (LINE_1, "1")]))
        .await
        .then_expect_error(invalid(&[
            ("lines[0].line_id", "no such line on this order"),
            ("lines[2].line_id", "repeats an earlier line"),
        ]));
}

#[tokio::test]
async fn ship_requires_confirmed() {
    refused_outside(&[S::Confirmed], "ship", || ship(&[(LINE_1, "1")])).await;
}

#[tokio::test]
async fn deliver_moves_shipped_to_delivered() {
    given(S::Shipped)
        .await
        .when_async(SalesOrderCommand::Deliver {
            delivered_on: date("2024-06-12"),
        })
        .await
        .then_expect_events(vec![SalesOrderEvent::Delivered {
            delivered_on: date("2024-06-12"),
        }]);
}

#[tokio::test]
async fn deliver_is_not_before_the_shipping_date() {
    given(S::Shipped)
        .await
        .when_async(SalesOrderCommand::Deliver {
            delivered_on: date("2024-06-11"),
        })
        .await
        .then_expect_error(invalid(&[(
            "delivered_on",
            "must not be before the shipping date",
        )]));
}

#[tokio::test]
async fn deliver_requires_shipped() {
    refused_outside(&[S::Shipped], "deliver", || SalesOrderCommand::Deliver {
        delivered_on: date(TODAY),
    })
    .await;
}

#[tokio::test]
async fn invoice_bills_the_shipped_total_and_claims_the_invoice_number() {
    given(S::Delivered)
        .await
        .when_async(invoice(1, "2024-06-14", "2024-07-14"))
        .await
        .then_expect_events(vec![SalesOrderEvent::Invoiced {
            invoice_number: InvoiceNumber::assigned("INV", 1),
            invoice_date: date("2024-06-14"),
            due_date: date("2024-07-14"),
            invoiced_amount: money("105310.67"),
        }]);
    let events = history(S::Invoiced).await;
    let invoiced = events.last().unwrap();
    assert_eq!(invoiced.event_type(), "SalesOrderInvoiced");
    assert_eq!(
        invoiced.unique_key_changes(),
        vec![UniqueKeyChange::Claim {
            scope: "invoice_number",
            key: "INV-000001".to_owned(),
        }]
    );
}

#[tokio::test]
async fn invoice_due_date_is_not_before_the_invoice_date() {
    given(S::Delivered)
        .await
        .when_async(invoice(1, "2024-06-14", "2024-06-13"))
        .await
        .then_expect_error(invalid(&[(
            "due_date",
            "must not be before the invoice date",
        )]));
}

#[tokio::test]
async fn invoice_requires_delivered() {
    refused_outside(&[S::Delivered], "invoice", || invoice(2, TODAY, TODAY)).await;
}

// --- payments, notes, close, cancel ---------------------------------------------------

#[tokio::test]
async fn payment_is_recorded_against_the_invoiced_amount() {
    given(S::Invoiced)
        .await
        .when_async(payment(1, "100000", TODAY))
        .await
        .then_expect_events(vec![SalesOrderEvent::PaymentRecorded {
            payment_id: Uuid::from_u128(1),
            amount: money("100000.00"),
            paid_on: date(TODAY),
            method: PaymentMethod::Ach,
            reference: None,
            amount_paid: money("100000.00"),
            outstanding: money("5310.67"),
            payment_status: PaymentStatus::Partial,
        }]);
}

#[tokio::test]
async fn payment_refuses_more_than_outstanding_and_future_dates() {
    given(S::Invoiced)
        .await
        .when_async(payment(1, "105310.68", "2024-06-16"))
        .await
        .then_expect_error(invalid(&[
            (
                "amount",
                "must not exceed the outstanding amount of 105310.67",
            ),
            ("paid_on", "must not be in the future"),
        ]));
}

#[tokio::test]
async fn payment_requires_invoiced() {
    refused_outside(&[S::Invoiced], "record a payment on", || {
        payment(9, "1.00", TODAY)
    })
    .await;
}

#[tokio::test]
async fn a_note_can_be_added_in_every_state() {
    for &status in SalesOrderStatus::ALL {
        given(status)
            .await
            .when_async(SalesOrderCommand::AddNote {
                note_id: Uuid::from_u128(3),
                text: NoteText::parse("driver called").unwrap(),
            })
            .await
            .then_expect_events(vec![SalesOrderEvent::NoteAdded {
                note_id: Uuid::from_u128(3),
                text: NoteText::parse("driver called").unwrap(),
            }]);
    }
}

#[tokio::test]
async fn close_an_invoiced_and_paid_order() {
    let mut commands = commands_to(S::Invoiced);
    commands.push(payment(1, "105310.67", TODAY));
    let (order, events) = run(commands).await;
    assert_eq!(order.payment_status(), PaymentStatus::Paid);
    TestFramework::<SalesOrder>::with(services())
        .given(events)
        .when_async(SalesOrderCommand::Close)
        .await
        .then_expect_events(vec![SalesOrderEvent::Closed]);
}

#[tokio::test]
async fn close_needs_nothing_outstanding() {
    given(S::Invoiced)
        .await
        .when_async(SalesOrderCommand::Close)
        .await
        .then_expect_error(DomainError::NotAllowedBecause {
            action: "close",
            reason: "105310.67 is outstanding".to_owned(),
        });
}

#[tokio::test]
async fn close_requires_invoiced() {
    refused_outside(&[S::Invoiced], "close", || SalesOrderCommand::Close).await;
}

#[tokio::test]
async fn cancel_is_allowed_from_draft_and_confirmed() {
    for status in [S::Draft, S::Confirmed] {
        given(status)
            .await
            .when_async(SalesOrderCommand::Cancel {
                reason: reason("customer cancelled"),
            })
            .await
            .then_expect_events(vec![SalesOrderEvent::Cancelled {
                reason: reason("customer cancelled"),
                from_status: status,
            }]);
    }
}

#[tokio::test]
async fn cancel_is_refused_once_shipped() {
    refused_outside(&[S::Draft, S::Confirmed], "cancel", || {
        SalesOrderCommand::Cancel {
            reason: reason("too late"),
        }
    })
    .await;
}

#[tokio::test]
async fn amount_due_follows_ordered_then_shipped_then_invoiced() {
    let (confirmed, _) = run(commands_to(S::Confirmed)).await;
    assert_eq!(confirmed.amount_due(), money("105333.67"));
    let (shipped, _) = run(commands_to(S::Shipped)).await;
    assert_eq!(shipped.amount_due(), money("105310.67"));
    assert_eq!(
        shipped.line(LINE_1).unwrap().shipped_amount,
        Some(money("91977.00"))
    );
    let (closed, events) = run(commands_to(S::Closed)).await;
    assert_eq!(closed.status, Some(S::Closed));
    assert!(closed.outstanding().is_zero());
    for event in &events {
        let text = serde_json::to_string(event).unwrap();
        assert_eq!(
            &serde_json::from_str::<SalesOrderEvent>(&text).unwrap(),
            event
        );
    }
    let text = serde_json::to_string(&closed).unwrap();
    assert_eq!(serde_json::from_str::<SalesOrder>(&text).unwrap(), closed);
}

// --- size and date limits -------------------------------------------------------------

/// `count` lines of 1 LB beef at 1.00, with ids 0x10000, 0x10001, …
fn many_lines(count: usize) -> Vec<NewLine> {
    (0..count)
        .map(|i| new_line(Uuid::from_u128(0x10000 + i as u128), BEEF, "1", "1", None))
        .collect()
}

fn create_with_lines(lines: Vec<NewLine>) -> SalesOrderCommand {
    SalesOrderCommand::Create(NewSalesOrder {
        order_number: OrderNumber::assigned("SO", 1),
        header: header(),
        lines,
    })
}

const TOO_MANY_LINES: &str = "an order may have at most 500 lines";

#[tokio::test]
async fn create_refuses_more_lines_than_the_cap_and_takes_the_cap() {
    TestFramework::<SalesOrder>::with(services())
        .given_no_previous_events()
        .when_async(create_with_lines(many_lines(MAX_LINES_PER_ORDER + 1)))
        .await
        .then_expect_error(invalid(&[("lines", TOO_MANY_LINES)]));
    let (order, _) = run(vec![create_with_lines(many_lines(MAX_LINES_PER_ORDER))]).await;
    assert_eq!(order.lines.len(), MAX_LINES_PER_ORDER);
}

#[tokio::test]
async fn add_line_refuses_the_line_past_the_cap() {
    given_commands(vec![create_with_lines(many_lines(MAX_LINES_PER_ORDER))])
        .await
        .when_async(SalesOrderCommand::AddLine(new_line(
            LINE_3, BEEF, "1", "1", None,
        )))
        .await
        .then_expect_error(invalid(&[("lines", TOO_MANY_LINES)]));
    let (order, _) = run(vec![
        create_with_lines(many_lines(MAX_LINES_PER_ORDER - 1)),
        SalesOrderCommand::AddLine(new_line(LINE_3, BEEF, "1", "1", None)),
    ])
    .await;
    assert_eq!(order.lines.len(), MAX_LINES_PER_ORDER);
}

#[tokio::test]
async fn add_note_refuses_the_note_past_the_cap() {
    let note = |i: usize| SalesOrderEvent::NoteAdded {
        note_id: Uuid::from_u128(0x20000 + i as u128),
        text: NoteText::parse("x").unwrap(),
    };
    let mut full = history(S::Invoiced).await;
    full.extend((0..MAX_NOTES_PER_ORDER).map(note));
    TestFramework::<SalesOrder>::with(services())
        .given(full.clone())
        .when_async(SalesOrderCommand::AddNote {
            note_id: Uuid::from_u128(5),
            text: NoteText::parse("one too many").unwrap(),
        })
        .await
        .then_expect_error(invalid(&[(
            "notes",
            "an order may have at most 1000 notes",
        )]));
    full.pop();
    TestFramework::<SalesOrder>::with(services())
        .given(full)
        .when_async(SalesOrderCommand::AddNote {
            note_id: Uuid::from_u128(5),
            text: NoteText::parse("the last one").unwrap(),
        })
        .await
        .then_expect_events(vec![SalesOrderEvent::NoteAdded {
            note_id: Uuid::from_u128(5),
            text: NoteText::parse("the last one").unwrap(),
        }]);
}

const OUT_OF_RANGE: &str = "must be a date from 0001-01-01 to 9999-12-31";

fn year(year: i32) -> NaiveDate {
    NaiveDate::from_ymd_opt(year, 1, 1).unwrap()
}

#[tokio::test]
async fn every_date_of_an_order_must_have_a_four_digit_year() {
    let mut header = header();
    header.order_date = year(0);
    header.pickup_date = Some(year(10_000));
    TestFramework::<SalesOrder>::with(services())
        .given_no_previous_events()
        .when_async(SalesOrderCommand::Create(NewSalesOrder {
            order_number: OrderNumber::assigned("SO", 1),
            header,
            lines: Vec::new(),
        }))
        .await
        .then_expect_error(invalid(&[
            ("order_date", OUT_OF_RANGE),
            ("pickup_date", OUT_OF_RANGE),
        ]));
    let mut far_ship = ship(&[(LINE_1, "1")]);
    if let SalesOrderCommand::Ship { shipped_on, .. } = &mut far_ship {
        *shipped_on = year(10_000);
    }
    given(S::Confirmed)
        .await
        .when_async(far_ship)
        .await
        .then_expect_error(invalid(&[("shipped_on", OUT_OF_RANGE)]));
    given(S::Shipped)
        .await
        .when_async(SalesOrderCommand::Deliver {
            delivered_on: year(10_000),
        })
        .await
        .then_expect_error(invalid(&[("delivered_on", OUT_OF_RANGE)]));
    given(S::Delivered)
        .await
        .when_async(SalesOrderCommand::Invoice {
            invoice_number: InvoiceNumber::assigned("INV", 1),
            invoice_date: date("2024-06-14"),
            due_date: year(10_000),
        })
        .await
        .then_expect_error(invalid(&[("due_date", OUT_OF_RANGE)]));
}

// --- claims, credit notes and refunds ---------------------------------------------------

fn claim_line(line_id: Uuid, amount: &str) -> ClaimLine {
    ClaimLine {
        line_id,
        amount: money(amount),
        weight: None,
        description: None,
    }
}

fn raise(id: u128, lines: &[(Uuid, &str)]) -> SalesOrderCommand {
    SalesOrderCommand::RaiseClaim(NewClaim {
        claim_id: Uuid::from_u128(id),
        reason: ClaimReason::Temperature,
        lines: lines.iter().map(|&(l, a)| claim_line(l, a)).collect(),
        notes: None,
    })
}

fn credit_note(n: u64) -> CreditNoteNumber {
    CreditNoteNumber::assigned(NumberSeries::CREDIT_NOTE.prefix, n)
}

fn accept(id: u128, amount: Option<&str>, note: u64) -> SalesOrderCommand {
    SalesOrderCommand::AcceptClaim {
        claim_id: Uuid::from_u128(id),
        accepted_amount: amount.map(money),
        credit_note_number: credit_note(note),
    }
}

fn reject_claim(id: u128) -> SalesOrderCommand {
    SalesOrderCommand::RejectClaim {
        claim_id: Uuid::from_u128(id),
        reason: reason("delivered cold"),
    }
}

fn refund(id: u128, amount: &str, on: &str) -> SalesOrderCommand {
    SalesOrderCommand::RecordRefund(NewRefund {
        refund_id: Uuid::from_u128(id),
        amount: money(amount),
        refunded_on: date(on),
        method: PaymentMethod::Ach,
        reference: None,
    })
}

/// Invoiced (105310.67 due), then `commands`.
fn invoiced_then(commands: Vec<SalesOrderCommand>) -> Vec<SalesOrderCommand> {
    let mut all = commands_to(S::Invoiced);
    all.extend(commands);
    all
}

#[tokio::test]
async fn a_claim_is_raised_once_delivered_and_takes_its_id_as_a_key() {
    for status in [S::Delivered, S::Invoiced] {
        let (order, events) = run({
            let mut commands = commands_to(status);
            commands.push(raise(9, &[(LINE_1, "312.40")]));
            commands
        })
        .await;
        let raised = events.last().unwrap();
        assert_eq!(
            raised,
            &SalesOrderEvent::ClaimRaised {
                claim_id: Uuid::from_u128(9),
                reason: ClaimReason::Temperature,
                lines: vec![claim_line(LINE_1, "312.40")],
                notes: None,
                claimed_amount: money("312.40"),
            }
        );
        assert_eq!(raised.event_type(), "SalesOrderClaimRaised");
        assert_eq!(
            raised.unique_key_changes(),
            vec![UniqueKeyChange::Claim {
                scope: SALES_CLAIM_SCOPE,
                key: Uuid::from_u128(9).to_string(),
            }]
        );
        assert!(order.has_open_claim());
        assert_eq!(
            order.claim(Uuid::from_u128(9)).unwrap().status,
            ClaimStatus::Open
        );
    }
}

#[tokio::test]
async fn a_claim_needs_a_delivered_or_invoiced_order() {
    refused_outside(&[S::Delivered, S::Invoiced], "raise a claim on", || {
        raise(9, &[(LINE_1, "1.00")])
    })
    .await;
}

#[tokio::test]
async fn a_claim_is_within_each_lines_shipped_amount_and_weight() {
    // Line 1 shipped 39990 LB = 91977.00; line 2 10000.5 LB = 13333.67.
    let mut claim = NewClaim {
        claim_id: Uuid::from_u128(9),
        reason: ClaimReason::ShortWeight,
        lines: vec![claim_line(LINE_1, "91977.01"), claim_line(LINE_2, "1.00")],
        notes: None,
    };
    claim.lines[1].weight = Some(weight("10000.6"));
    given(S::Invoiced)
        .await
        .when_async(SalesOrderCommand::RaiseClaim(claim))
        .await
        .then_expect_error(invalid(&[
            (
                "lines[0].amount",
                "must not exceed the line's amount of 91977.00 less 0.00 already claimed (at most 91977.00)",
            ),
            ("lines[1].weight", "must not exceed the line's weight of 10000.5"),
        ]));
}

#[tokio::test]
async fn a_claim_names_shipped_lines_only() {
    let commands = vec![
        create(),
        SalesOrderCommand::Confirm,
        ship(&[(LINE_1, "39990")]),
        SalesOrderCommand::Deliver {
            delivered_on: date("2024-06-13"),
        },
    ];
    given_commands(commands)
        .await
        .when_async(raise(9, &[(LINE_2, "1.00"), (UNKNOWN, "1.00")]))
        .await
        .then_expect_error(invalid(&[
            ("lines[0].line_id", "the line has not been shipped"),
            ("lines[1].line_id", "no such line on this order"),
        ]));
}

#[tokio::test]
async fn accepting_a_claim_credits_it_under_a_credit_note_number_taken_as_a_key() {
    let mut commands = invoiced_then(vec![raise(9, &[(LINE_1, "312.40")])]);
    commands.push(accept(9, Some("300.00"), 4));
    let (order, events) = run(commands).await;
    let accepted = events.last().unwrap();
    assert_eq!(
        accepted,
        &SalesOrderEvent::ClaimAccepted {
            claim_id: Uuid::from_u128(9),
            accepted_amount: money("300.00"),
            credit_note_number: credit_note(4),
            credits: money("300.00"),
            outstanding: money("105010.67"),
            payment_status: PaymentStatus::Unpaid,
        }
    );
    assert_eq!(credit_note(4).as_str(), "CN-000004");
    assert_eq!(
        accepted.unique_key_changes(),
        vec![UniqueKeyChange::Claim {
            scope: CREDIT_NOTE_NUMBER_SCOPE,
            key: "CN-000004".into(),
        }]
    );
    let claim = order.claim(Uuid::from_u128(9)).unwrap();
    assert_eq!(claim.credit_note_number, Some(credit_note(4)));
    assert_eq!(order.credits, money("300.00"));
    assert_eq!(order.outstanding(), money("105010.67"));
}

#[tokio::test]
async fn accepting_defaults_to_the_claimed_amount_and_refuses_more() {
    let mut commands = invoiced_then(vec![raise(9, &[(LINE_1, "312.40")])]);
    commands.push(accept(9, None, 1));
    assert_eq!(run(commands).await.0.credits, money("312.40"));
    given_commands(invoiced_then(vec![raise(9, &[(LINE_1, "312.40")])]))
        .await
        .when_async(accept(9, Some("312.41"), 1))
        .await
        .then_expect_error(invalid(&[(
            "accepted_amount",
            "must not exceed the claimed amount of 312.40",
        )]));
}

#[tokio::test]
async fn a_credit_note_number_is_used_once_on_an_order() {
    given_commands(invoiced_then(vec![
        raise(9, &[(LINE_1, "1.00")]),
        accept(9, None, 1),
        raise(10, &[(LINE_1, "1.00")]),
    ]))
    .await
    .when_async(accept(10, None, 1))
    .await
    .then_expect_error(invalid(&[(
        "credit_note_number",
        "is already the credit note of another claim on this order",
    )]));
}

#[tokio::test]
async fn rejecting_a_claim_credits_nothing_and_an_unknown_claim_is_not_found() {
    let mut commands = invoiced_then(vec![raise(9, &[(LINE_1, "1.00")])]);
    commands.push(reject_claim(9));
    let (order, events) = run(commands).await;
    assert_eq!(
        events.last().unwrap(),
        &SalesOrderEvent::ClaimRejected {
            claim_id: Uuid::from_u128(9),
            reason: reason("delivered cold"),
        }
    );
    assert!(events.last().unwrap().unique_key_changes().is_empty());
    assert_eq!(
        order.claim(Uuid::from_u128(9)).unwrap().status,
        ClaimStatus::Rejected
    );
    assert_eq!(order.credits, Money::zero());
    for command in [accept(7, None, 1), reject_claim(7)] {
        given(S::Invoiced)
            .await
            .when_async(command)
            .await
            .then_expect_error(DomainError::ClaimNotFound(Uuid::from_u128(7)));
    }
    given_commands(invoiced_then(vec![
        raise(9, &[(LINE_1, "1.00")]),
        reject_claim(9),
    ]))
    .await
    .when_async(accept(9, None, 1))
    .await
    .then_expect_error(DomainError::NotAllowedBecause {
        action: "accept the claim",
        reason: "the claim is already rejected".into(),
    });
}

#[tokio::test]
async fn close_needs_every_claim_decided() {
    given_commands(invoiced_then(vec![
        payment(1, "105310.67", TODAY),
        raise(9, &[(LINE_1, "1.00")]),
    ]))
    .await
    .when_async(SalesOrderCommand::Close)
    .await
    .then_expect_error(DomainError::NotAllowedBecause {
        action: "close",
        reason: "a claim is still open".into(),
    });
}

#[tokio::test]
async fn a_claim_accepted_after_payment_is_refunded_to_the_customer_then_the_order_closes() {
    let mut commands = invoiced_then(vec![
        payment(1, "105310.67", TODAY),
        raise(9, &[(LINE_1, "312.40")]),
        accept(9, Some("300.00"), 4),
    ]);
    let (credited, _) = run(commands.clone()).await;
    assert_eq!(credited.outstanding(), money("-300.00"));
    assert_eq!(credited.payment_status(), PaymentStatus::Overpaid);
    commands.push(refund(1, "300.00", TODAY));
    let (refunded, events) = run(commands.clone()).await;
    assert_eq!(
        events.last().unwrap(),
        &SalesOrderEvent::RefundRecorded {
            refund_id: Uuid::from_u128(1),
            amount: money("300.00"),
            refunded_on: date(TODAY),
            method: PaymentMethod::Ach,
            reference: None,
            amount_refunded: money("300.00"),
            outstanding: money("0.00"),
            payment_status: PaymentStatus::Paid,
        }
    );
    assert_eq!(
        events.last().unwrap().event_type(),
        "SalesOrderRefundRecorded"
    );
    assert!(refunded.outstanding().is_zero());
    commands.push(SalesOrderCommand::Close);
    assert_eq!(run(commands).await.0.status, Some(S::Closed));
}

#[tokio::test]
async fn a_claim_accepted_before_payment_lowers_what_the_customer_pays() {
    let commands = invoiced_then(vec![raise(9, &[(LINE_1, "310.67")]), accept(9, None, 1)]);
    given_commands(commands.clone())
        .await
        .when_async(payment(1, "105310.67", TODAY))
        .await
        .then_expect_error(invalid(&[(
            "amount",
            "must not exceed the outstanding amount of 105000.00",
        )]));
    let mut paid = commands;
    paid.push(payment(1, "105000.00", TODAY));
    paid.push(SalesOrderCommand::Close);
    let (order, _) = run(paid).await;
    assert_eq!(order.status, Some(S::Closed));
    assert_eq!(order.payment_status(), PaymentStatus::Paid);
}

#[tokio::test]
async fn a_refund_needs_money_owed_back_within_what_was_overpaid() {
    given(S::Invoiced)
        .await
        .when_async(refund(1, "1.00", TODAY))
        .await
        .then_expect_error(DomainError::NotAllowedBecause {
            action: "record a refund",
            reason: "nothing was overpaid (105310.67 is outstanding)".into(),
        });
    given_commands(invoiced_then(vec![
        payment(1, "105310.67", TODAY),
        raise(9, &[(LINE_1, "300.00")]),
        accept(9, None, 1),
    ]))
    .await
    .when_async(refund(1, "300.01", "2024-06-16"))
    .await
    .then_expect_error(invalid(&[
        ("amount", "must not exceed the overpaid amount of 300.00"),
        ("refunded_on", "must not be in the future"),
    ]));
}

#[tokio::test]
async fn a_refund_needs_an_invoiced_order() {
    refused_outside(&[S::Invoiced], "record a refund on", || {
        refund(1, "1.00", TODAY)
    })
    .await;
}

#[tokio::test]
async fn a_stored_sales_order_from_before_claims_still_reads() {
    let order = run(commands_to(S::Invoiced)).await.0;
    let mut old = serde_json::to_value(&order).unwrap();
    for field in ["claims", "credits", "refunds", "amount_refunded"] {
        old.as_object_mut().unwrap().remove(field);
    }
    for line in old["lines"].as_array_mut().unwrap() {
        line.as_object_mut().unwrap().remove("lots");
    }
    assert_eq!(serde_json::from_value::<SalesOrder>(old).unwrap(), order);
}

// --- lots -------------------------------------------------------------------------------

/// A shipment line: the line, its weight, and its lots with their weights.
type LotLine<'a> = (Uuid, &'a str, Vec<(Uuid, &'a str)>);

fn ship_lots(lines: Vec<LotLine>) -> SalesOrderCommand {
    SalesOrderCommand::Ship {
        shipped_on: date("2024-06-12"),
        carrier_id: Some(CARRIER),
        carrier_release_number: None,
        lines: lines
            .into_iter()
            .map(|(line_id, w, lots)| ShipLineInput {
                line_id,
                weight: weight(w),
                quantity: None,
                lots: lots
                    .into_iter()
                    .map(|(lot_id, w)| ShipLotInput {
                        lot_id,
                        weight: weight(w),
                    })
                    .collect(),
            })
            .collect(),
    }
}

#[tokio::test]
async fn a_shipment_names_its_lots_with_what_a_trace_needs() {
    let mut commands = commands_to(S::Confirmed);
    commands.push(ship_lots(vec![(
        LINE_1,
        "39990",
        vec![(LOT_A, "29990"), (LOT_B, "10000")],
    )]));
    let (order, events) = run(commands).await;
    let SalesOrderEvent::Shipped { lines, .. } = events.last().unwrap() else {
        panic!("{events:?}")
    };
    assert_eq!(
        lines[0].lots[0],
        ShippedLot {
            lot_id: LOT_A,
            weight: weight("29990"),
            lot_number: LotNumber::parse("A123").unwrap(),
            purchase_order_id: SOURCE_PO,
            supplier_id: SUPPLIER,
        }
    );
    assert_eq!(order.line(LINE_1).unwrap().lots.len(), 2);
    assert_eq!(
        events.last().unwrap().lot_movements(),
        vec![
            crate::LotMovement {
                lot_id: LOT_A,
                received: rust_decimal::Decimal::ZERO,
                shipped: weight("29990").value(),
            },
            crate::LotMovement {
                lot_id: LOT_B,
                received: rust_decimal::Decimal::ZERO,
                shipped: weight("10000").value(),
            },
        ],
        "the store takes shipped lots from their stock"
    );
    let json = serde_json::to_value(events.last().unwrap()).unwrap();
    assert_eq!(
        json["Shipped"]["lines"][0]["lots"][1]["lot_id"],
        LOT_B.to_string()
    );
    assert_eq!(
        serde_json::from_value::<SalesOrderEvent>(json).unwrap(),
        *events.last().unwrap()
    );
}

#[tokio::test]
async fn shipped_lots_are_known_named_once_and_sum_to_the_line() {
    given(S::Confirmed)
        .await
        .when_async(ship_lots(vec![
            (LINE_1, "100", vec![(LOT_A, "50"), (LOT_A, "50")]),
            (LINE_2, "10", vec![(UNKNOWN, "4"), (LOT_B, "5")]),
        ]))
        .await
        .then_expect_error(invalid(&[
            (
                "lines[0].lots[1].lot_id",
                "repeats an earlier lot of this line",
            ),
            (
                "lines[1].lots",
                "the lots' weights must sum to the line's weight of 10",
            ),
            ("lines[1].lots[0].lot_id", "no such lot"),
        ]));
}

#[tokio::test]
async fn a_shipment_never_takes_more_of_a_lot_than_was_received() {
    // Lot B456: 10000 received. Over two lines of one shipment, 10000.5 is too much.
    given(S::Confirmed)
        .await
        .when_async(ship_lots(vec![
            (LINE_1, "5000", vec![(LOT_B, "5000")]),
            (LINE_2, "5000.5", vec![(LOT_B, "5000.5")]),
        ]))
        .await
        .then_expect_error(DomainError::NotAllowedBecause {
            action: "ship",
            reason: format!("lot B456 ({LOT_B}) shipped 10000.5 but only 10000 was received"),
        });
    let mut exactly = commands_to(S::Confirmed);
    exactly.push(ship_lots(vec![(LINE_1, "10000", vec![(LOT_B, "10000")])]));
    assert_eq!(run(exactly).await.0.status, Some(S::Shipped));
}

#[tokio::test]
async fn a_lot_ships_only_on_an_order_weighing_in_the_unit_it_was_received_in() {
    // Lots A123 and B456 were received in LB; an order in KG cannot ship them, since a lot's
    // stock is kept in the unit it was received in.
    let mut commands = commands_to(S::Confirmed);
    let SalesOrderCommand::Create(new) = &mut commands[0] else {
        panic!("the first command creates")
    };
    new.header.weight_unit = WeightUnit::Kg;
    given_commands(commands)
        .await
        .when_async(ship_lots(vec![(LINE_1, "10", vec![(LOT_A, "10")])]))
        .await
        .then_expect_error(invalid(&[(
            "lines[0].lots[0].lot_id",
            "the lot was received in LB, this order weighs in KG",
        )]));
}

#[tokio::test]
async fn a_failed_lot_lookup_is_unavailable() {
    let mut command = ship_lots(vec![(LINE_1, "10", vec![(LOT_A, "10")])]);
    if let SalesOrderCommand::Ship { carrier_id, .. } = &mut command {
        *carrier_id = None; // so that the lot is the only lookup
    }
    TestFramework::<SalesOrder>::with(services_with(lookups().failing("db down")))
        .given(history(S::Confirmed).await)
        .when_async(command)
        .await
        .then_expect_error(DomainError::Unavailable("db down".into()));
}
