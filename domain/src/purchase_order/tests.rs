//! Given/when/then specifications of the purchase order, one rule per test.

use cqrs_es::event_sink::EventSink;
use cqrs_es::test::{AggregateTestExecutor, TestFramework};
use cqrs_es::{Aggregate, DomainEvent};

use super::*;
use crate::error::FieldError;
use crate::fixtures::*;
use crate::services::InMemoryLookups;
use crate::values::{Money, PaymentMethod};

use PurchaseOrderStatus as S;

fn header() -> PurchaseOrderHeader {
    PurchaseOrderHeader {
        supplier_id: SUPPLIER,
        order_date: date("2024-06-01"),
        currency: Currency::default(),
        weight_unit: WeightUnit::Lb,
        logistics: Logistics::SupplierDelivery,
        plant_id: Some(PLANT),
        carrier_id: None,
        pickup_date: None,
        delivery_date: Some(date("2024-06-10")),
        payment_terms: None,
        supplier_confirmation_number: None,
        carrier_release_number: None,
        notes: None,
    }
}

fn new_line(line_id: Uuid, product_id: Uuid, w: &str, p: &str) -> NewLine {
    NewLine {
        line_id,
        product_id,
        weight: weight(w),
        price_per_unit: price(p),
        quantity: None,
        description: None,
    }
}

fn order_line(line_id: Uuid, product_id: Uuid, w: &str, p: &str, amount: &str) -> OrderLine {
    OrderLine {
        line_id,
        product_id,
        weight: weight(w),
        price_per_unit: price(p),
        quantity: None,
        description: None,
        amount: money(amount),
    }
}

/// 40000 LB × 2.1575 = 86300.00 and 10000.5 LB × 1.3333 = 13333.67; total 99633.67.
fn create() -> PurchaseOrderCommand {
    PurchaseOrderCommand::Create(NewPurchaseOrder {
        order_number: OrderNumber::assigned("PO", 1),
        header: header(),
        lines: vec![
            new_line(LINE_1, BEEF, "40000", "2.1575"),
            new_line(LINE_2, PORK, "10000.5", "1.3333"),
        ],
    })
}

fn reason(text: &str) -> Reason {
    Reason::parse(text).unwrap()
}

fn receipt(id: u128, complete: bool, lines: &[(Uuid, &str)]) -> PurchaseOrderCommand {
    PurchaseOrderCommand::RecordReceipt {
        receipt_id: Uuid::from_u128(id),
        received_on: date("2024-06-12"),
        complete,
        lines: lines
            .iter()
            .map(|&(line_id, w)| ReceiptLineInput {
                line_id,
                weight: weight(w),
                quantity: None,
                lots: Vec::new(),
            })
            .collect(),
    }
}

fn payment(id: u128, amount: &str, paid_on: &str) -> PurchaseOrderCommand {
    PurchaseOrderCommand::RecordPayment(NewPayment {
        payment_id: Uuid::from_u128(id),
        amount: Money::parse(amount).unwrap(),
        paid_on: date(paid_on),
        method: PaymentMethod::Wire,
        reference: None,
    })
}

/// The commands that bring a new order to `status`.
///
/// Received: 39990 LB of line 1 (86278.43) and 10000.5 LB of line 2 (13333.67) = 99612.10.
fn commands_to(status: PurchaseOrderStatus) -> Vec<PurchaseOrderCommand> {
    let mut commands = vec![create()];
    let approved = [PurchaseOrderCommand::Submit, PurchaseOrderCommand::Approve];
    match status {
        S::Draft => {}
        S::Submitted => commands.push(PurchaseOrderCommand::Submit),
        S::Approved => commands.extend(approved),
        S::PartiallyReceived => {
            commands.extend(approved);
            commands.push(receipt(1, false, &[(LINE_1, "20000")]));
        }
        S::Received => {
            commands.extend(approved);
            commands.push(receipt(1, true, &[(LINE_1, "39990"), (LINE_2, "10000.5")]));
        }
        S::Closed => {
            commands.extend(approved);
            commands.push(receipt(1, true, &[(LINE_1, "39990"), (LINE_2, "10000.5")]));
            commands.push(payment(1, "99612.10", TODAY));
            commands.push(PurchaseOrderCommand::Close);
        }
        S::Cancelled => commands.push(PurchaseOrderCommand::Cancel {
            reason: reason("supplier out of stock"),
        }),
    }
    commands
}

/// Runs commands through `handle` and returns the order and every event written.
async fn run(commands: Vec<PurchaseOrderCommand>) -> (PurchaseOrder, Vec<PurchaseOrderEvent>) {
    let services = services();
    let mut order = PurchaseOrder::default();
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

async fn history(status: PurchaseOrderStatus) -> Vec<PurchaseOrderEvent> {
    run(commands_to(status)).await.1
}

async fn state(status: PurchaseOrderStatus) -> PurchaseOrder {
    run(commands_to(status)).await.0
}

async fn given(status: PurchaseOrderStatus) -> AggregateTestExecutor<PurchaseOrder> {
    TestFramework::<PurchaseOrder>::with(services()).given(history(status).await)
}

/// The state after `commands`, followed by `command`; the events `command` wrote.
async fn after(
    commands: Vec<PurchaseOrderCommand>,
    command: PurchaseOrderCommand,
) -> (PurchaseOrder, Vec<PurchaseOrderEvent>) {
    let (mut order, _) = run(commands).await;
    let sink = EventSink::default();
    order.handle(command, &services(), &sink).await.unwrap();
    (order, sink.collect().await)
}

/// Checks that `command` is refused as `NotAllowed { action }` in every status outside
/// `allowed`.
async fn refused_outside(
    allowed: &[PurchaseOrderStatus],
    action: &'static str,
    command: impl Fn() -> PurchaseOrderCommand,
) {
    for &status in PurchaseOrderStatus::ALL {
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
async fn create_records_lines_with_half_up_amounts_and_their_total() {
    TestFramework::<PurchaseOrder>::with(services())
        .given_no_previous_events()
        .when_async(create())
        .await
        .then_expect_events(vec![PurchaseOrderEvent::Created {
            order_number: OrderNumber::assigned("PO", 1),
            header: header(),
            lines: vec![
                order_line(LINE_1, BEEF, "40000", "2.1575", "86300.00"),
                order_line(LINE_2, PORK, "10000.5", "1.3333", "13333.67"),
            ],
            total: money("99633.67"),
        }]);
}

#[tokio::test]
async fn create_claims_the_order_number_and_starts_in_draft() {
    let (order, events) = run(vec![create()]).await;
    assert_eq!(order.status, Some(S::Draft));
    assert_eq!(order.payment_status(), PaymentStatus::Unpaid);
    assert_eq!(order.amount_due(), money("99633.67"));
    assert_eq!(events[0].event_type(), "PurchaseOrderCreated");
    assert_eq!(
        events[0].event_version(),
        crate::upcasters::PURCHASE_ORDER_CREATED_VERSION
    );
    assert_eq!(
        events[0].unique_key_changes(),
        vec![UniqueKeyChange::Claim {
            scope: "purchase_order_number",
            key: "PO-000001".to_owned(),
        }]
    );
}

#[tokio::test]
async fn create_may_start_without_lines() {
    let (order, _) = run(vec![PurchaseOrderCommand::Create(NewPurchaseOrder {
        order_number: OrderNumber::assigned("PO", 2),
        header: header(),
        lines: vec![],
    })])
    .await;
    assert_eq!(order.total, Money::zero());
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
async fn create_requires_usable_supplier_plant_carrier_and_products() {
    let mut header = header();
    header.supplier_id = INACTIVE_SUPPLIER;
    header.plant_id = Some(UNKNOWN);
    header.carrier_id = Some(INACTIVE_CARRIER);
    let command = PurchaseOrderCommand::Create(NewPurchaseOrder {
        order_number: OrderNumber::assigned("PO", 1),
        header,
        lines: vec![
            new_line(LINE_1, BEEF, "1", "1"),
            new_line(LINE_2, INACTIVE_PRODUCT, "1", "1"),
            new_line(LINE_3, UNKNOWN, "1", "1"),
        ],
    });
    TestFramework::<PurchaseOrder>::with(services())
        .given_no_previous_events()
        .when_async(command)
        .await
        .then_expect_error(invalid(&[
            ("supplier_id", "supplier is inactive"),
            ("plant_id", "no such plant"),
            ("carrier_id", "carrier is inactive"),
            ("lines[1].product_id", "product is inactive"),
            ("lines[2].product_id", "no such product"),
        ]));
}

#[tokio::test]
async fn create_refuses_an_unknown_supplier() {
    let mut header = header();
    header.supplier_id = UNKNOWN;
    TestFramework::<PurchaseOrder>::with(services())
        .given_no_previous_events()
        .when_async(PurchaseOrderCommand::Create(NewPurchaseOrder {
            order_number: OrderNumber::assigned("PO", 1),
            header,
            lines: vec![],
        }))
        .await
        .then_expect_error(invalid(&[("supplier_id", "no such supplier")]));
}

#[tokio::test]
async fn create_refuses_delivery_before_the_order_date_and_repeated_line_ids() {
    let mut header = header();
    header.delivery_date = Some(date("2024-05-31"));
    TestFramework::<PurchaseOrder>::with(services())
        .given_no_previous_events()
        .when_async(PurchaseOrderCommand::Create(NewPurchaseOrder {
            order_number: OrderNumber::assigned("PO", 1),
            header,
            lines: vec![
                new_line(LINE_1, BEEF, "1", "1"),
                new_line(LINE_1, PORK, "2", "1"),
            ],
        }))
        .await
        .then_expect_error(invalid(&[
            ("delivery_date", "must not be before the order date"),
            ("lines[1].line_id", "repeats an earlier line's id"),
        ]));
}

#[tokio::test]
async fn create_reports_a_failed_lookup_as_unavailable() {
    TestFramework::<PurchaseOrder>::with(services_with(
        InMemoryLookups::new().failing("connection refused"),
    ))
    .given_no_previous_events()
    .when_async(create())
    .await
    .then_expect_error(DomainError::Unavailable("connection refused".to_owned()));
}

#[tokio::test]
async fn every_other_command_on_a_missing_order_is_not_found() {
    let commands = vec![
        PurchaseOrderCommand::ChangeHeader(PurchaseOrderHeaderPatch::default()),
        PurchaseOrderCommand::AddLine(new_line(LINE_3, BEEF, "1", "1")),
        PurchaseOrderCommand::ChangeLine {
            line_id: LINE_1,
            patch: LinePatch::default(),
        },
        PurchaseOrderCommand::RemoveLine { line_id: LINE_1 },
        PurchaseOrderCommand::Submit,
        PurchaseOrderCommand::Approve,
        PurchaseOrderCommand::Reject {
            reason: reason("no"),
        },
        PurchaseOrderCommand::Cancel {
            reason: reason("no"),
        },
        receipt(1, false, &[(LINE_1, "1")]),
        payment(1, "1.00", TODAY),
        PurchaseOrderCommand::AddNote {
            note_id: Uuid::from_u128(1),
            text: NoteText::parse("hello").unwrap(),
        },
        PurchaseOrderCommand::Close,
        raise(9, &[(LINE_1, "1.00")]),
        accept(9, None),
        reject_claim(9),
        refund(1, "1.00", TODAY),
    ];
    for command in commands {
        TestFramework::<PurchaseOrder>::with(services())
            .given_no_previous_events()
            .when_async(command)
            .await
            .then_expect_error(DomainError::NotFound);
    }
}

// --- header ---------------------------------------------------------------------------

#[tokio::test]
async fn change_header_in_draft_records_before_and_after() {
    let patch: PurchaseOrderHeaderPatch = serde_json::from_value(serde_json::json!({
        "carrier_id": CARRIER,
        "plant_id": null,
        "weight_unit": "KG",
    }))
    .unwrap();
    let mut expected = header();
    expected.carrier_id = Some(CARRIER);
    expected.plant_id = None;
    expected.weight_unit = WeightUnit::Kg;
    let changes = diff(&header(), &expected);
    assert_eq!(
        changes.keys().collect::<Vec<_>>(),
        ["carrier_id", "plant_id", "weight_unit"]
    );
    assert_eq!(changes["weight_unit"].from, serde_json::json!("LB"));
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::ChangeHeader(patch))
        .await
        .then_expect_events(vec![PurchaseOrderEvent::HeaderChanged {
            changes,
            header: expected,
        }]);
}

#[tokio::test]
async fn change_header_that_changes_nothing_writes_nothing() {
    let patch = PurchaseOrderHeaderPatch {
        supplier_id: Some(SUPPLIER),
        plant_id: Some(Some(PLANT)),
        ..Default::default()
    };
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::ChangeHeader(patch))
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn change_header_requires_a_usable_new_supplier_and_carrier() {
    let patch = PurchaseOrderHeaderPatch {
        supplier_id: Some(INACTIVE_SUPPLIER),
        carrier_id: Some(Some(UNKNOWN)),
        ..Default::default()
    };
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::ChangeHeader(patch))
        .await
        .then_expect_error(invalid(&[
            ("supplier_id", "supplier is inactive"),
            ("carrier_id", "no such carrier"),
        ]));
}

#[tokio::test]
async fn change_header_checks_the_delivery_date_against_the_new_order_date() {
    let patch = PurchaseOrderHeaderPatch {
        order_date: Some(date("2024-06-11")),
        ..Default::default()
    };
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::ChangeHeader(patch))
        .await
        .then_expect_error(invalid(&[(
            "delivery_date",
            "must not be before the order date",
        )]));
}

#[tokio::test]
async fn change_header_requires_draft() {
    refused_outside(&[S::Draft], "change the header of", || {
        PurchaseOrderCommand::ChangeHeader(PurchaseOrderHeaderPatch {
            notes: Some(LongText::parse("x").ok()),
            ..Default::default()
        })
    })
    .await;
}

#[test]
fn header_patch_refuses_unknown_fields_and_null_for_required_fields() {
    let unknown = serde_json::from_value::<PurchaseOrderHeaderPatch>(
        serde_json::json!({"supplier": SUPPLIER}),
    );
    assert!(unknown.is_err());
    let null = serde_json::from_value::<PurchaseOrderHeaderPatch>(
        serde_json::json!({"supplier_id": null}),
    );
    assert!(null.is_err());
    let absent: PurchaseOrderHeaderPatch = serde_json::from_value(serde_json::json!({})).unwrap();
    assert_eq!(absent, PurchaseOrderHeaderPatch::default());
}

// --- lines ----------------------------------------------------------------------------

#[tokio::test]
async fn add_line_in_draft_adds_its_amount_to_the_total() {
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::AddLine(new_line(
            LINE_3, BEEF, "20", "1.3333",
        )))
        .await
        .then_expect_events(vec![PurchaseOrderEvent::LineAdded {
            line: order_line(LINE_3, BEEF, "20", "1.3333", "26.67"),
            total: money("99660.34"),
        }]);
}

#[tokio::test]
async fn add_line_refuses_a_repeated_line_id_and_an_inactive_product() {
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::AddLine(new_line(
            LINE_1,
            INACTIVE_PRODUCT,
            "1",
            "1",
        )))
        .await
        .then_expect_error(invalid(&[
            ("line_id", "a line with this id is already on the order"),
            ("product_id", "product is inactive"),
        ]));
}

#[tokio::test]
async fn add_line_requires_draft() {
    refused_outside(&[S::Draft], "add a line to", || {
        PurchaseOrderCommand::AddLine(new_line(LINE_3, BEEF, "1", "1"))
    })
    .await;
}

#[tokio::test]
async fn change_line_recomputes_its_amount_and_the_total() {
    let patch = LinePatch {
        weight: Some(weight("39990")),
        quantity: Some(Some(Quantity::new(1200))),
        ..Default::default()
    };
    let mut line = order_line(LINE_1, BEEF, "39990", "2.1575", "86278.43");
    line.quantity = Some(Quantity::new(1200));
    let changes = diff(
        &order_line(LINE_1, BEEF, "40000", "2.1575", "86300.00"),
        &line,
    );
    assert_eq!(
        changes.keys().collect::<Vec<_>>(),
        ["amount", "quantity", "weight"]
    );
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::ChangeLine {
            line_id: LINE_1,
            patch,
        })
        .await
        .then_expect_events(vec![PurchaseOrderEvent::LineChanged {
            line_id: LINE_1,
            changes,
            line,
            total: money("99612.10"),
        }]);
}

#[tokio::test]
async fn change_line_that_changes_nothing_writes_nothing() {
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::ChangeLine {
            line_id: LINE_1,
            patch: LinePatch {
                product_id: Some(BEEF),
                ..Default::default()
            },
        })
        .await
        .then_expect_events(vec![]);
}

#[tokio::test]
async fn change_line_requires_an_active_new_product() {
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::ChangeLine {
            line_id: LINE_1,
            patch: LinePatch {
                product_id: Some(UNKNOWN),
                ..Default::default()
            },
        })
        .await
        .then_expect_error(invalid(&[("product_id", "no such product")]));
}

#[tokio::test]
async fn change_or_remove_of_an_unknown_line_is_line_not_found() {
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::ChangeLine {
            line_id: LINE_3,
            patch: LinePatch::default(),
        })
        .await
        .then_expect_error(DomainError::LineNotFound(LINE_3));
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::RemoveLine { line_id: LINE_3 })
        .await
        .then_expect_error(DomainError::LineNotFound(LINE_3));
}

#[tokio::test]
async fn change_line_requires_draft() {
    refused_outside(&[S::Draft], "change a line of", || {
        PurchaseOrderCommand::ChangeLine {
            line_id: LINE_1,
            patch: LinePatch {
                weight: Some(weight("1")),
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
        .when_async(PurchaseOrderCommand::RemoveLine { line_id: LINE_1 })
        .await
        .then_expect_events(vec![PurchaseOrderEvent::LineRemoved {
            line: order_line(LINE_1, BEEF, "40000", "2.1575", "86300.00"),
            total: money("13333.67"),
        }]);
}

#[tokio::test]
async fn remove_line_requires_draft() {
    refused_outside(&[S::Draft], "remove a line from", || {
        PurchaseOrderCommand::RemoveLine { line_id: LINE_1 }
    })
    .await;
}

// --- submit, approve, reject, cancel --------------------------------------------------

#[tokio::test]
async fn submit_moves_a_draft_to_submitted() {
    given(S::Draft)
        .await
        .when_async(PurchaseOrderCommand::Submit)
        .await
        .then_expect_events(vec![PurchaseOrderEvent::Submitted {
            total: money("99633.67"),
        }]);
}

#[tokio::test]
async fn submit_requires_at_least_one_line() {
    let commands = vec![
        create(),
        PurchaseOrderCommand::RemoveLine { line_id: LINE_1 },
        PurchaseOrderCommand::RemoveLine { line_id: LINE_2 },
    ];
    TestFramework::<PurchaseOrder>::with(services())
        .given(run(commands).await.1)
        .when_async(PurchaseOrderCommand::Submit)
        .await
        .then_expect_error(invalid(&[(
            "lines",
            "the order needs at least one line to be submitted",
        )]));
}

#[tokio::test]
async fn submit_requires_draft() {
    refused_outside(&[S::Draft], "submit", || PurchaseOrderCommand::Submit).await;
}

#[tokio::test]
async fn approve_moves_a_submitted_order_to_approved() {
    given(S::Submitted)
        .await
        .when_async(PurchaseOrderCommand::Approve)
        .await
        .then_expect_events(vec![PurchaseOrderEvent::Approved]);
}

#[tokio::test]
async fn approve_requires_submitted_order() {
    refused_outside(&[S::Submitted], "approve", || PurchaseOrderCommand::Approve).await;
}

#[tokio::test]
async fn reject_returns_a_submitted_order_to_draft_with_its_reason() {
    given(S::Submitted)
        .await
        .when_async(PurchaseOrderCommand::Reject {
            reason: reason("price too high"),
        })
        .await
        .then_expect_events(vec![PurchaseOrderEvent::Rejected {
            reason: reason("price too high"),
        }]);
    let mut commands = commands_to(S::Submitted);
    commands.push(PurchaseOrderCommand::Reject {
        reason: reason("price too high"),
    });
    let (order, _) = run(commands).await;
    assert_eq!(order.status, Some(S::Draft));
    assert_eq!(order.last_reject_reason, Some(reason("price too high")));
}

#[tokio::test]
async fn reject_requires_submitted_order() {
    refused_outside(&[S::Submitted], "reject", || PurchaseOrderCommand::Reject {
        reason: reason("no"),
    })
    .await;
}

#[tokio::test]
async fn cancel_is_allowed_from_draft_submitted_and_approved() {
    for status in [S::Draft, S::Submitted, S::Approved] {
        given(status)
            .await
            .when_async(PurchaseOrderCommand::Cancel {
                reason: reason("supplier out of stock"),
            })
            .await
            .then_expect_events(vec![PurchaseOrderEvent::Cancelled {
                reason: reason("supplier out of stock"),
                from_status: status,
            }]);
    }
}

#[tokio::test]
async fn cancel_is_refused_once_anything_is_received() {
    refused_outside(&[S::Draft, S::Submitted, S::Approved], "cancel", || {
        PurchaseOrderCommand::Cancel {
            reason: reason("too late"),
        }
    })
    .await;
}

#[tokio::test]
async fn cancel_is_refused_once_something_is_paid() {
    let mut commands = commands_to(S::Approved);
    commands.push(payment(1, "50000.00", TODAY));
    TestFramework::<PurchaseOrder>::with(services())
        .given(run(commands).await.1)
        .when_async(PurchaseOrderCommand::Cancel {
            reason: reason("changed our mind"),
        })
        .await
        .then_expect_error(DomainError::NotAllowedBecause {
            action: "cancel",
            reason: "50000.00 has been paid on this order".to_owned(),
        });
}

// --- receipts -------------------------------------------------------------------------

#[tokio::test]
async fn a_partial_receipt_moves_approved_to_partially_received() {
    given(S::Approved)
        .await
        .when_async(receipt(1, false, &[(LINE_1, "20000")]))
        .await
        .then_expect_events(vec![PurchaseOrderEvent::ReceiptRecorded {
            receipt_id: Uuid::from_u128(1),
            received_on: date("2024-06-12"),
            complete: false,
            lines: vec![ReceivedLine {
                line_id: LINE_1,
                weight: weight("20000"),
                quantity: None,
                lots: Vec::new(),
                received_weight_total: weight("20000"),
                received_quantity_total: None,
                received_amount: money("43150.00"),
            }],
            received_total: money("43150.00"),
            amount_due: money("43150.00"),
            outstanding: money("43150.00"),
            payment_status: PaymentStatus::Unpaid,
        }]);
}

#[tokio::test]
async fn received_weight_accumulates_and_the_amount_is_rounded_on_the_total() {
    let mut commands = commands_to(S::PartiallyReceived);
    commands.push(PurchaseOrderCommand::RecordReceipt {
        receipt_id: Uuid::from_u128(2),
        received_on: date("2024-06-13"),
        complete: true,
        lines: vec![
            ReceiptLineInput {
                line_id: LINE_1,
                weight: weight("19990.5"),
                quantity: Some(Quantity::new(3)),
                lots: Vec::new(),
            },
            ReceiptLineInput {
                line_id: LINE_2,
                weight: weight("100"),
                quantity: None,
                lots: Vec::new(),
            },
        ],
    });
    let (order, events) = run(commands).await;
    let PurchaseOrderEvent::ReceiptRecorded {
        lines,
        received_total,
        ..
    } = events.last().unwrap()
    else {
        panic!("expected a receipt");
    };
    // 39990.5 × 2.1575 = 86279.50375 → 86279.50; 100 × 1.3333 = 133.33.
    assert_eq!(lines[0].received_weight_total, weight("39990.5"));
    assert_eq!(lines[0].received_quantity_total, Some(Quantity::new(3)));
    assert_eq!(lines[0].received_amount, money("86279.50"));
    assert_eq!(lines[1].received_amount, money("133.33"));
    assert_eq!(*received_total, money("86412.83"));
    assert_eq!(order.status, Some(S::Received));
    assert_eq!(order.amount_due(), money("86412.83"));
    assert_eq!(order.receipts.len(), 2);
    assert_eq!(
        order.line(LINE_1).unwrap().received_weight,
        Some(weight("39990.5"))
    );
}

#[tokio::test]
async fn a_complete_receipt_moves_to_received() {
    let order = state(S::Received).await;
    assert_eq!(order.status, Some(S::Received));
    assert_eq!(order.received_total, Some(money("99612.10")));
    assert_eq!(order.amount_due(), money("99612.10"));
}

#[tokio::test]
async fn receipt_refuses_empty_lines() {
    given(S::Approved)
        .await
        .when_async(receipt(1, false, &[]))
        .await
        .then_expect_error(invalid(&[("lines", "must name at least one line")]));
}

#[tokio::test]
async fn receipt_refuses_unknown_and_repeated_lines_and_a_repeated_receipt_id() {
    given(S::PartiallyReceived)
        .await
        .when_async(receipt(
            1,
            false,
            &[(LINE_1, "1"), (LINE_3, "1"), (LINE_1, "2")],
        ))
        .await
        .then_expect_error(invalid(&[
            ("receipt_id", "a receipt with this id is already recorded"),
            ("lines[1].line_id", "no such line on this order"),
            ("lines[2].line_id", "repeats an earlier line"),
        ]));
}

#[tokio::test]
async fn receipt_refuses_a_running_weight_past_the_limit() {
    given(S::PartiallyReceived)
        .await
        .when_async(receipt(2, false, &[(LINE_1, "999999999")]))
        .await
        .then_expect_error(invalid(&[(
            "lines[0].weight",
            "must be less than 1000000000",
        )]));
}

#[tokio::test]
async fn receipt_requires_approved_or_partially_received() {
    refused_outside(
        &[S::Approved, S::PartiallyReceived],
        "record a receipt on",
        || receipt(9, false, &[(LINE_1, "1")]),
    )
    .await;
}

// --- payments -------------------------------------------------------------------------

#[tokio::test]
async fn payment_before_receipt_is_against_the_ordered_total() {
    given(S::Approved)
        .await
        .when_async(payment(1, "50000", TODAY))
        .await
        .then_expect_events(vec![PurchaseOrderEvent::PaymentRecorded {
            payment_id: Uuid::from_u128(1),
            amount: money("50000.00"),
            paid_on: date(TODAY),
            method: PaymentMethod::Wire,
            reference: None,
            amount_paid: money("50000.00"),
            outstanding: money("49633.67"),
            payment_status: PaymentStatus::Partial,
        }]);
}

#[tokio::test]
async fn paying_what_is_outstanding_makes_it_paid() {
    let (order, events) = after(commands_to(S::Received), payment(1, "99612.10", TODAY)).await;
    assert_eq!(order.payment_status(), PaymentStatus::Paid);
    assert!(order.outstanding().is_zero());
    assert!(matches!(
        events[0],
        PurchaseOrderEvent::PaymentRecorded {
            payment_status: PaymentStatus::Paid,
            ..
        }
    ));
}

#[tokio::test]
async fn payment_after_a_receipt_is_against_the_received_total() {
    given(S::PartiallyReceived)
        .await
        .when_async(payment(1, "43150.01", TODAY))
        .await
        .then_expect_error(invalid(&[(
            "amount",
            "must not exceed the outstanding amount of 43150.00",
        )]));
}

#[tokio::test]
async fn payment_must_be_positive_not_in_the_future_and_not_repeated() {
    let mut commands = commands_to(S::Approved);
    commands.push(payment(1, "10.00", TODAY));
    TestFramework::<PurchaseOrder>::with(services())
        .given(run(commands).await.1)
        .when_async(payment(1, "0", "2024-06-16"))
        .await
        .then_expect_error(invalid(&[
            ("payment_id", "a payment with this id is already recorded"),
            ("amount", "must be greater than zero"),
            ("paid_on", "must not be in the future"),
        ]));
}

#[tokio::test]
async fn payment_requires_approved_or_later() {
    refused_outside(
        &[S::Approved, S::PartiallyReceived, S::Received],
        "record a payment on",
        || payment(7, "1.00", TODAY),
    )
    .await;
}

#[tokio::test]
async fn a_short_receipt_after_prepayment_leaves_it_overpaid_and_blocks_close() {
    let mut commands = commands_to(S::Approved);
    commands.push(payment(1, "99633.67", TODAY));
    commands.push(receipt(1, true, &[(LINE_1, "39990"), (LINE_2, "10000.5")]));
    let (order, events) = run(commands).await;
    assert!(matches!(
        events.last().unwrap(),
        PurchaseOrderEvent::ReceiptRecorded { outstanding, payment_status: PaymentStatus::Overpaid, .. }
            if *outstanding == money("-21.57")
    ));
    assert_eq!(order.payment_status(), PaymentStatus::Overpaid);
    assert_eq!(order.outstanding(), money("-21.57"));
    TestFramework::<PurchaseOrder>::with(services())
        .given(events)
        .when_async(PurchaseOrderCommand::Close)
        .await
        .then_expect_error(DomainError::NotAllowedBecause {
            action: "close",
            reason: "-21.57 is outstanding".to_owned(),
        });
}

// --- notes and close ------------------------------------------------------------------

#[tokio::test]
async fn a_note_can_be_added_in_every_state() {
    for &status in PurchaseOrderStatus::ALL {
        given(status)
            .await
            .when_async(PurchaseOrderCommand::AddNote {
                note_id: Uuid::from_u128(5),
                text: NoteText::parse("call the plant").unwrap(),
            })
            .await
            .then_expect_events(vec![PurchaseOrderEvent::NoteAdded {
                note_id: Uuid::from_u128(5),
                text: NoteText::parse("call the plant").unwrap(),
            }]);
    }
}

#[tokio::test]
async fn a_note_id_cannot_be_reused() {
    let text = NoteText::parse("x").unwrap();
    let mut commands = commands_to(S::Draft);
    commands.push(PurchaseOrderCommand::AddNote {
        note_id: Uuid::from_u128(5),
        text: text.clone(),
    });
    TestFramework::<PurchaseOrder>::with(services())
        .given(run(commands).await.1)
        .when_async(PurchaseOrderCommand::AddNote {
            note_id: Uuid::from_u128(5),
            text,
        })
        .await
        .then_expect_error(invalid(&[(
            "note_id",
            "a note with this id is already on the order",
        )]));
}

#[tokio::test]
async fn close_a_received_and_paid_order() {
    let mut commands = commands_to(S::Received);
    commands.push(payment(1, "99612.10", TODAY));
    TestFramework::<PurchaseOrder>::with(services())
        .given(run(commands).await.1)
        .when_async(PurchaseOrderCommand::Close)
        .await
        .then_expect_events(vec![PurchaseOrderEvent::Closed]);
    assert_eq!(state(S::Closed).await.status, Some(S::Closed));
}

#[tokio::test]
async fn close_needs_nothing_outstanding() {
    let mut commands = commands_to(S::Received);
    commands.push(payment(1, "99612.00", TODAY));
    TestFramework::<PurchaseOrder>::with(services())
        .given(run(commands).await.1)
        .when_async(PurchaseOrderCommand::Close)
        .await
        .then_expect_error(DomainError::NotAllowedBecause {
            action: "close",
            reason: "0.10 is outstanding".to_owned(),
        });
}

#[tokio::test]
async fn close_requires_received() {
    refused_outside(&[S::Received], "close", || PurchaseOrderCommand::Close).await;
}

// --- events on the wire ---------------------------------------------------------------

#[tokio::test]
async fn events_carry_money_and_weights_as_strings_and_round_trip() {
    let events = history(S::Closed).await;
    let types: Vec<String> = events.iter().map(|e| e.event_type()).collect();
    assert_eq!(
        types,
        [
            "PurchaseOrderCreated",
            "PurchaseOrderSubmitted",
            "PurchaseOrderApproved",
            "PurchaseOrderReceiptRecorded",
            "PurchaseOrderPaymentRecorded",
            "PurchaseOrderClosed",
        ]
    );
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(json["Created"]["total"], "99633.67");
    assert_eq!(json["Created"]["lines"][0]["weight"], "40000");
    assert_eq!(json["Created"]["lines"][0]["price_per_unit"], "2.1575");
    assert_eq!(json["Created"]["header"]["currency"], "USD");
    assert_eq!(json["Created"]["header"]["order_date"], "2024-06-01");
    for event in &events {
        let text = serde_json::to_string(event).unwrap();
        assert_eq!(
            &serde_json::from_str::<PurchaseOrderEvent>(&text).unwrap(),
            event
        );
    }
    let order = state(S::Closed).await;
    let text = serde_json::to_string(&order).unwrap();
    assert_eq!(serde_json::from_str::<PurchaseOrder>(&text).unwrap(), order);
}

// --- when payment is due --------------------------------------------------------------

#[tokio::test]
async fn payment_is_due_from_the_last_receipt_else_the_delivery_else_the_order_date() {
    assert_eq!(PurchaseOrder::default().payment_reference_date(), None);
    assert_eq!(
        PurchaseOrder::default().due_date(Some(CreditTerms::Net30)),
        None
    );

    let mut approved = state(S::Approved).await;
    assert_eq!(approved.payment_reference_date(), Some(date("2024-06-10")));
    approved.header.as_mut().unwrap().delivery_date = None;
    assert_eq!(approved.payment_reference_date(), Some(date("2024-06-01")));

    // The latest receipt date counts, not the receipt recorded last.
    let mut commands = commands_to(S::PartiallyReceived);
    commands.push(PurchaseOrderCommand::RecordReceipt {
        receipt_id: Uuid::from_u128(2),
        received_on: date("2024-06-11"),
        complete: false,
        lines: vec![ReceiptLineInput {
            line_id: LINE_2,
            weight: weight("100"),
            quantity: None,
            lots: Vec::new(),
        }],
    });
    let (received, _) = run(commands).await;
    assert_eq!(received.payment_reference_date(), Some(date("2024-06-12")));
}

#[tokio::test]
async fn due_date_applies_the_suppliers_credit_terms_to_the_reference_date() {
    let received = state(S::Received).await;
    assert_eq!(received.payment_reference_date(), Some(date("2024-06-12")));
    assert_eq!(
        received.due_date(Some(CreditTerms::Net30)),
        Some(date("2024-07-12"))
    );
    assert_eq!(
        received.due_date(Some(CreditTerms::Wire1DayPrior)),
        Some(date("2024-06-11"))
    );
    assert_eq!(received.due_date(None), Some(date("2024-06-12")));
}

// --- size and date limits -------------------------------------------------------------

/// `count` lines of 1 LB beef at 1.00, with ids 0x10000, 0x10001, …
fn many_lines(count: usize) -> Vec<NewLine> {
    (0..count)
        .map(|i| new_line(Uuid::from_u128(0x10000 + i as u128), BEEF, "1", "1"))
        .collect()
}

fn create_with_lines(lines: Vec<NewLine>) -> PurchaseOrderCommand {
    PurchaseOrderCommand::Create(NewPurchaseOrder {
        order_number: OrderNumber::assigned("PO", 1),
        header: header(),
        lines,
    })
}

#[tokio::test]
async fn create_takes_up_to_the_line_cap() {
    let (order, events) = run(vec![create_with_lines(many_lines(MAX_LINES_PER_ORDER))]).await;
    assert_eq!(order.lines.len(), MAX_LINES_PER_ORDER);
    assert_eq!(events.len(), 1);
}

#[tokio::test]
async fn create_refuses_more_lines_than_the_cap() {
    TestFramework::<PurchaseOrder>::with(services())
        .given_no_previous_events()
        .when_async(create_with_lines(many_lines(MAX_LINES_PER_ORDER + 1)))
        .await
        .then_expect_error(invalid(&[("lines", "an order may have at most 500 lines")]));
}

#[tokio::test]
async fn add_line_refuses_the_line_past_the_cap() {
    let given = run(vec![create_with_lines(many_lines(MAX_LINES_PER_ORDER))])
        .await
        .1;
    TestFramework::<PurchaseOrder>::with(services())
        .given(given)
        .when_async(PurchaseOrderCommand::AddLine(new_line(
            LINE_3, BEEF, "1", "1",
        )))
        .await
        .then_expect_error(invalid(&[("lines", "an order may have at most 500 lines")]));
}

#[tokio::test]
async fn add_line_is_allowed_up_to_the_cap() {
    let (order, events) = after(
        vec![create_with_lines(many_lines(MAX_LINES_PER_ORDER - 1))],
        PurchaseOrderCommand::AddLine(new_line(LINE_3, BEEF, "1", "1")),
    )
    .await;
    assert_eq!(events.len(), 1);
    assert_eq!(order.lines.len(), MAX_LINES_PER_ORDER);
}

/// The events of a draft order with `count` notes.
async fn with_notes(count: usize) -> Vec<PurchaseOrderEvent> {
    let mut events = history(S::Draft).await;
    events.extend((0..count).map(|i| PurchaseOrderEvent::NoteAdded {
        note_id: Uuid::from_u128(0x20000 + i as u128),
        text: NoteText::parse("x").unwrap(),
    }));
    events
}

#[tokio::test]
async fn add_note_refuses_the_note_past_the_cap() {
    TestFramework::<PurchaseOrder>::with(services())
        .given(with_notes(MAX_NOTES_PER_ORDER).await)
        .when_async(PurchaseOrderCommand::AddNote {
            note_id: Uuid::from_u128(5),
            text: NoteText::parse("one too many").unwrap(),
        })
        .await
        .then_expect_error(invalid(&[(
            "notes",
            "an order may have at most 1000 notes",
        )]));
}

#[tokio::test]
async fn add_note_is_allowed_up_to_the_cap() {
    TestFramework::<PurchaseOrder>::with(services())
        .given(with_notes(MAX_NOTES_PER_ORDER - 1).await)
        .when_async(PurchaseOrderCommand::AddNote {
            note_id: Uuid::from_u128(5),
            text: NoteText::parse("the last one").unwrap(),
        })
        .await
        .then_expect_events(vec![PurchaseOrderEvent::NoteAdded {
            note_id: Uuid::from_u128(5),
            text: NoteText::parse("the last one").unwrap(),
        }]);
}

const OUT_OF_RANGE: &str = "must be a date from 0001-01-01 to 9999-12-31";

#[tokio::test]
async fn create_refuses_dates_outside_four_digit_years() {
    let mut header = header();
    header.order_date = NaiveDate::from_ymd_opt(0, 1, 1).unwrap();
    header.pickup_date = Some(NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap());
    header.delivery_date = Some(NaiveDate::from_ymd_opt(-262_000, 1, 1).unwrap());
    TestFramework::<PurchaseOrder>::with(services())
        .given_no_previous_events()
        .when_async(PurchaseOrderCommand::Create(NewPurchaseOrder {
            order_number: OrderNumber::assigned("PO", 1),
            header,
            lines: Vec::new(),
        }))
        .await
        .then_expect_error(invalid(&[
            ("delivery_date", "must not be before the order date"),
            ("order_date", OUT_OF_RANGE),
            ("pickup_date", OUT_OF_RANGE),
            ("delivery_date", OUT_OF_RANGE),
        ]));
}

#[tokio::test]
async fn the_calendars_edges_are_valid_order_dates() {
    let mut header = header();
    header.order_date = date("0001-01-01");
    header.delivery_date = Some(date("9999-12-31"));
    let (order, _) = run(vec![PurchaseOrderCommand::Create(NewPurchaseOrder {
        order_number: OrderNumber::assigned("PO", 1),
        header,
        lines: Vec::new(),
    })])
    .await;
    assert!(order.exists());
}

#[tokio::test]
async fn receipts_and_payments_refuse_dates_outside_four_digit_years() {
    let mut receipt = receipt(1, false, &[(LINE_1, "1")]);
    if let PurchaseOrderCommand::RecordReceipt { received_on, .. } = &mut receipt {
        *received_on = NaiveDate::from_ymd_opt(10_000, 1, 1).unwrap();
    }
    given(S::Approved)
        .await
        .when_async(receipt)
        .await
        .then_expect_error(invalid(&[("received_on", OUT_OF_RANGE)]));
    let mut payment = payment(1, "1.00", TODAY);
    if let PurchaseOrderCommand::RecordPayment(new) = &mut payment {
        new.paid_on = NaiveDate::from_ymd_opt(0, 12, 31).unwrap();
    }
    given(S::Approved)
        .await
        .when_async(payment)
        .await
        .then_expect_error(invalid(&[("paid_on", OUT_OF_RANGE)]));
}

// --- claims, credits and refunds -------------------------------------------------------

fn claim_line(line_id: Uuid, amount: &str) -> ClaimLine {
    ClaimLine {
        line_id,
        amount: money(amount),
        weight: None,
        description: None,
    }
}

fn new_claim(id: u128, lines: Vec<ClaimLine>) -> NewClaim {
    NewClaim {
        claim_id: Uuid::from_u128(id),
        reason: ClaimReason::ShortWeight,
        lines,
        notes: None,
    }
}

/// A claim against this order (whose id is [`SOURCE_PO`]).
fn raise(id: u128, lines: &[(Uuid, &str)]) -> PurchaseOrderCommand {
    PurchaseOrderCommand::RaiseClaim {
        order_id: SOURCE_PO,
        claim: new_claim(id, lines.iter().map(|&(l, a)| claim_line(l, a)).collect()),
        source_sales_claim_id: None,
    }
}

fn passing_on(id: u128, sales_claim: Uuid) -> PurchaseOrderCommand {
    PurchaseOrderCommand::RaiseClaim {
        order_id: SOURCE_PO,
        claim: new_claim(id, vec![claim_line(LINE_1, "312.40")]),
        source_sales_claim_id: Some(sales_claim),
    }
}

fn accept(id: u128, amount: Option<&str>) -> PurchaseOrderCommand {
    PurchaseOrderCommand::AcceptClaim {
        claim_id: Uuid::from_u128(id),
        accepted_amount: amount.map(money),
        credit_note_number: None,
    }
}

fn reject_claim(id: u128) -> PurchaseOrderCommand {
    PurchaseOrderCommand::RejectClaim {
        claim_id: Uuid::from_u128(id),
        reason: reason("the load was fine"),
    }
}

fn refund(id: u128, amount: &str, on: &str) -> PurchaseOrderCommand {
    PurchaseOrderCommand::RecordRefund(NewRefund {
        refund_id: Uuid::from_u128(id),
        amount: money(amount),
        refunded_on: date(on),
        method: PaymentMethod::Wire,
        reference: None,
    })
}

/// Received (99612.10 due) with `commands` after.
fn received_then(commands: Vec<PurchaseOrderCommand>) -> Vec<PurchaseOrderCommand> {
    let mut all = commands_to(S::Received);
    all.extend(commands);
    all
}

/// Prepaid the ordered 99633.67 in full, then received short: 21.57 overpaid.
fn prepaid_and_received_short() -> Vec<PurchaseOrderCommand> {
    let mut commands = commands_to(S::Approved);
    commands.push(payment(1, "99633.67", TODAY));
    commands.push(receipt(1, true, &[(LINE_1, "39990"), (LINE_2, "10000.5")]));
    commands
}

#[tokio::test]
async fn a_claim_is_raised_open_with_its_claimed_total_once_anything_is_received() {
    for status in [S::PartiallyReceived, S::Received] {
        let (order, events) = after(commands_to(status), raise(9, &[(LINE_1, "312.40")])).await;
        assert_eq!(
            events,
            vec![PurchaseOrderEvent::ClaimRaised {
                claim_id: Uuid::from_u128(9),
                reason: ClaimReason::ShortWeight,
                lines: vec![claim_line(LINE_1, "312.40")],
                notes: None,
                claimed_amount: money("312.40"),
                source_sales_claim_id: None,
            }]
        );
        let claim = order.claim(Uuid::from_u128(9)).unwrap();
        assert_eq!(claim.status, ClaimStatus::Open);
        assert_eq!(claim.accepted_amount, None);
        assert!(order.has_open_claim());
        assert_eq!(
            order.credits,
            Money::zero(),
            "an open claim credits nothing"
        );
        assert_eq!(events[0].event_type(), "PurchaseOrderClaimRaised");
        assert!(events[0].unique_key_changes().is_empty());
    }
}

#[tokio::test]
async fn a_claim_needs_something_received() {
    refused_outside(
        &[S::PartiallyReceived, S::Received],
        "raise a claim on",
        || raise(9, &[(LINE_1, "1.00")]),
    )
    .await;
}

#[tokio::test]
async fn a_claim_names_received_lines_of_the_order_once_each() {
    given(S::PartiallyReceived)
        .await
        .when_async(raise(
            9,
            &[
                (LINE_1, "1.00"),
                (LINE_1, "2.00"),
                (LINE_2, "1.00"),
                (UNKNOWN, "1.00"),
            ],
        ))
        .await
        .then_expect_error(invalid(&[
            ("lines[1].line_id", "repeats an earlier line"),
            ("lines[2].line_id", "the line has not been received"),
            ("lines[3].line_id", "no such line on this order"),
        ]));
    given(S::Received)
        .await
        .when_async(raise(9, &[]))
        .await
        .then_expect_error(invalid(&[("lines", "must name at least one line")]));
}

#[tokio::test]
async fn a_claim_amount_is_positive_and_within_the_lines_received_amount() {
    // Line 1 received 39990 LB = 86278.43; line 2 10000.5 LB = 13333.67.
    given(S::Received)
        .await
        .when_async(raise(9, &[(LINE_1, "0"), (LINE_2, "13333.68")]))
        .await
        .then_expect_error(invalid(&[
            ("lines[0].amount", "must be greater than zero"),
            (
                "lines[1].amount",
                "must not exceed the line's amount of 13333.67 less 0.00 already claimed (at most 13333.67)",
            ),
        ]));
    let (order, _) = after(commands_to(S::Received), raise(9, &[(LINE_2, "13333.67")])).await;
    assert_eq!(
        order.claim(Uuid::from_u128(9)).unwrap().claimed_amount,
        money("13333.67")
    );
}

#[tokio::test]
async fn claims_on_one_line_together_stay_within_its_received_amount() {
    let history = run(received_then(vec![raise(8, &[(LINE_2, "13000.00")])]))
        .await
        .1;
    TestFramework::<PurchaseOrder>::with(services())
        .given(history)
        .when_async(raise(9, &[(LINE_2, "333.68")]))
        .await
        .then_expect_error(invalid(&[(
            "lines[0].amount",
            "must not exceed the line's amount of 13333.67 less 13000.00 already claimed (at most 333.67)",
        )]));
    // A rejected claim holds nothing of the line any more.
    let (order, _) = after(
        received_then(vec![raise(8, &[(LINE_2, "13000.00")]), reject_claim(8)]),
        raise(9, &[(LINE_2, "13333.67")]),
    )
    .await;
    assert!(order.claim(Uuid::from_u128(9)).is_some());
}

#[tokio::test]
async fn a_claim_weight_is_within_the_lines_received_weight() {
    let mut claim = new_claim(9, vec![claim_line(LINE_2, "10.00")]);
    claim.lines[0].weight = Some(weight("10000.6"));
    given(S::Received)
        .await
        .when_async(PurchaseOrderCommand::RaiseClaim {
            order_id: SOURCE_PO,
            claim,
            source_sales_claim_id: None,
        })
        .await
        .then_expect_error(invalid(&[(
            "lines[0].weight",
            "must not exceed the line's weight of 10000.5",
        )]));
}

#[tokio::test]
async fn a_claim_id_is_used_once_per_order() {
    let history = run(received_then(vec![raise(9, &[(LINE_1, "1.00")])]))
        .await
        .1;
    TestFramework::<PurchaseOrder>::with(services())
        .given(history)
        .when_async(raise(9, &[(LINE_2, "1.00")]))
        .await
        .then_expect_error(invalid(&[(
            "claim_id",
            "a claim with this id is already on the order",
        )]));
}

#[tokio::test]
async fn accepting_a_claim_credits_the_claimed_amount_by_default() {
    let (order, events) = after(
        received_then(vec![raise(9, &[(LINE_1, "312.40")])]),
        accept(9, None),
    )
    .await;
    assert_eq!(
        events,
        vec![PurchaseOrderEvent::ClaimAccepted {
            claim_id: Uuid::from_u128(9),
            accepted_amount: money("312.40"),
            credit_note_number: None,
            credits: money("312.40"),
            outstanding: money("99299.70"),
            payment_status: PaymentStatus::Unpaid,
        }]
    );
    assert_eq!(order.credits, money("312.40"));
    assert_eq!(order.outstanding(), money("99299.70"));
    assert!(!order.has_open_claim());
    assert_eq!(events[0].event_type(), "PurchaseOrderClaimAccepted");
}

#[tokio::test]
async fn accepting_less_than_claimed_credits_that_under_the_suppliers_memo() {
    let memo = CreditNoteNumber::parse("ACME-CM-77").unwrap();
    let (order, events) = after(
        received_then(vec![raise(9, &[(LINE_1, "312.40")])]),
        PurchaseOrderCommand::AcceptClaim {
            claim_id: Uuid::from_u128(9),
            accepted_amount: Some(money("300.00")),
            credit_note_number: Some(memo.clone()),
        },
    )
    .await;
    assert!(matches!(
        &events[0],
        PurchaseOrderEvent::ClaimAccepted { accepted_amount, credit_note_number: Some(n), credits, .. }
            if *accepted_amount == money("300.00") && *n == memo && *credits == money("300.00")
    ));
    let claim = order.claim(Uuid::from_u128(9)).unwrap();
    assert_eq!(claim.status, ClaimStatus::Accepted);
    assert_eq!(claim.accepted_amount, Some(money("300.00")));
    assert_eq!(claim.credit_note_number, Some(memo));
    assert!(
        events[0].unique_key_changes().is_empty(),
        "a supplier's memo number is the supplier's, not unique in the tenant"
    );
}

#[tokio::test]
async fn an_accepted_amount_is_positive_and_not_above_the_claim() {
    let history = run(received_then(vec![raise(9, &[(LINE_1, "312.40")])]))
        .await
        .1;
    for (amount, message) in [
        ("312.41", "must not exceed the claimed amount of 312.40"),
        (
            "0",
            "must be greater than zero (reject the claim to credit nothing)",
        ),
    ] {
        TestFramework::<PurchaseOrder>::with(services())
            .given(history.clone())
            .when_async(accept(9, Some(amount)))
            .await
            .then_expect_error(invalid(&[("accepted_amount", message)]));
    }
}

#[tokio::test]
async fn an_unknown_claim_is_claim_not_found() {
    for command in [accept(9, None), reject_claim(9)] {
        given(S::Received)
            .await
            .when_async(command)
            .await
            .then_expect_error(DomainError::ClaimNotFound(Uuid::from_u128(9)));
    }
}

#[tokio::test]
async fn a_decided_claim_is_neither_accepted_nor_rejected_again() {
    for (decided, status) in [(accept(9, None), "accepted"), (reject_claim(9), "rejected")] {
        let history = run(received_then(vec![raise(9, &[(LINE_1, "1.00")]), decided]))
            .await
            .1;
        for (command, action) in [
            (accept(9, None), "accept the claim"),
            (reject_claim(9), "reject the claim"),
        ] {
            TestFramework::<PurchaseOrder>::with(services())
                .given(history.clone())
                .when_async(command)
                .await
                .then_expect_error(DomainError::NotAllowedBecause {
                    action,
                    reason: format!("the claim is already {status}"),
                });
        }
    }
}

#[tokio::test]
async fn rejecting_a_claim_keeps_its_reason_and_credits_nothing() {
    let (order, events) = after(
        received_then(vec![raise(9, &[(LINE_1, "1.00")])]),
        reject_claim(9),
    )
    .await;
    assert_eq!(
        events,
        vec![PurchaseOrderEvent::ClaimRejected {
            claim_id: Uuid::from_u128(9),
            reason: reason("the load was fine"),
            source_sales_claim_id: None,
        }]
    );
    let claim = order.claim(Uuid::from_u128(9)).unwrap();
    assert_eq!(claim.status, ClaimStatus::Rejected);
    assert_eq!(claim.reject_reason, Some(reason("the load was fine")));
    assert_eq!(order.credits, Money::zero());
    assert!(!order.has_open_claim());
}

#[tokio::test]
async fn deciding_a_claim_needs_a_receiving_or_received_order() {
    // A claim exists only once something was received; a closed order has none open.
    let closed = run(received_then(vec![
        raise(9, &[(LINE_1, "100.00")]),
        accept(9, None),
        payment(1, "99512.10", TODAY),
        PurchaseOrderCommand::Close,
    ]))
    .await
    .1;
    for (command, action) in [
        (accept(9, None), "accept a claim on"),
        (reject_claim(9), "reject a claim on"),
        (raise(10, &[(LINE_1, "1.00")]), "raise a claim on"),
    ] {
        TestFramework::<PurchaseOrder>::with(services())
            .given(closed.clone())
            .when_async(command)
            .await
            .then_expect_error(DomainError::NotAllowed {
                action,
                status: "closed".into(),
            });
    }
}

#[tokio::test]
async fn close_is_refused_while_a_claim_is_open() {
    let history = run(received_then(vec![
        payment(1, "99612.10", TODAY),
        raise(9, &[(LINE_1, "1.00")]),
    ]))
    .await
    .1;
    TestFramework::<PurchaseOrder>::with(services())
        .given(history)
        .when_async(PurchaseOrderCommand::Close)
        .await
        .then_expect_error(DomainError::NotAllowedBecause {
            action: "close",
            reason: "a claim is still open".into(),
        });
}

#[tokio::test]
async fn a_credit_lowers_what_may_be_paid() {
    let history = run(received_then(vec![
        raise(9, &[(LINE_1, "312.40")]),
        accept(9, None),
    ]))
    .await
    .1;
    TestFramework::<PurchaseOrder>::with(services())
        .given(history)
        .when_async(payment(1, "99612.10", TODAY))
        .await
        .then_expect_error(invalid(&[(
            "amount",
            "must not exceed the outstanding amount of 99299.70",
        )]));
    let (order, events) = after(
        received_then(vec![raise(9, &[(LINE_1, "312.40")]), accept(9, None)]),
        payment(1, "99299.70", TODAY),
    )
    .await;
    assert!(matches!(
        &events[0],
        PurchaseOrderEvent::PaymentRecorded { outstanding, payment_status: PaymentStatus::Paid, .. }
            if outstanding.is_zero()
    ));
    assert_eq!(order.payment_status(), PaymentStatus::Paid);
}

#[tokio::test]
async fn a_prepaid_order_received_short_is_refunded_then_closed() {
    let (order, events) = after(prepaid_and_received_short(), refund(1, "21.57", TODAY)).await;
    assert_eq!(
        events,
        vec![PurchaseOrderEvent::RefundRecorded {
            refund_id: Uuid::from_u128(1),
            amount: money("21.57"),
            refunded_on: date(TODAY),
            method: PaymentMethod::Wire,
            reference: None,
            amount_refunded: money("21.57"),
            outstanding: money("0.00"),
            payment_status: PaymentStatus::Paid,
        }]
    );
    assert_eq!(events[0].event_type(), "PurchaseOrderRefundRecorded");
    assert!(order.outstanding().is_zero());
    assert_eq!(order.refunds.len(), 1);
    let mut commands = prepaid_and_received_short();
    commands.push(refund(1, "21.57", TODAY));
    let (closed, _) = after(commands, PurchaseOrderCommand::Close).await;
    assert_eq!(closed.status, Some(S::Closed));
}

#[tokio::test]
async fn a_prepaid_order_credited_by_an_accepted_claim_is_refunded_then_closed() {
    // Prepaid the received 99612.10 exactly, then the supplier accepts 300.00 of a claim.
    let mut commands = received_then(vec![
        payment(1, "99612.10", TODAY),
        raise(9, &[(LINE_1, "312.40")]),
        PurchaseOrderCommand::AcceptClaim {
            claim_id: Uuid::from_u128(9),
            accepted_amount: Some(money("300.00")),
            credit_note_number: None,
        },
    ]);
    let (credited, events) = run(commands.clone()).await;
    assert!(matches!(
        events.last().unwrap(),
        PurchaseOrderEvent::ClaimAccepted { outstanding, payment_status: PaymentStatus::Overpaid, .. }
            if *outstanding == money("-300.00")
    ));
    assert_eq!(credited.payment_status(), PaymentStatus::Overpaid);
    TestFramework::<PurchaseOrder>::with(services())
        .given(events)
        .when_async(PurchaseOrderCommand::Close)
        .await
        .then_expect_error(DomainError::NotAllowedBecause {
            action: "close",
            reason: "-300.00 is outstanding".into(),
        });
    commands.push(refund(1, "100.00", TODAY));
    commands.push(refund(2, "200.00", TODAY));
    commands.push(PurchaseOrderCommand::Close);
    let (closed, _) = run(commands).await;
    assert_eq!(closed.status, Some(S::Closed));
    assert_eq!(closed.amount_refunded, money("300.00"));
}

#[tokio::test]
async fn a_refund_needs_an_overpaid_order() {
    for commands in [
        commands_to(S::Received),
        received_then(vec![payment(1, "99612.10", TODAY)]),
    ] {
        let outstanding = run(commands.clone()).await.0.outstanding();
        TestFramework::<PurchaseOrder>::with(services())
            .given(run(commands).await.1)
            .when_async(refund(1, "1.00", TODAY))
            .await
            .then_expect_error(DomainError::NotAllowedBecause {
                action: "record a refund",
                reason: format!("nothing was overpaid ({outstanding} is outstanding)"),
            });
    }
}

#[tokio::test]
async fn a_refund_is_positive_within_the_overpaid_amount_not_in_the_future_and_not_repeated() {
    let history = run(prepaid_and_received_short()).await.1;
    TestFramework::<PurchaseOrder>::with(services())
        .given(history.clone())
        .when_async(refund(1, "21.58", "2024-06-16"))
        .await
        .then_expect_error(invalid(&[
            ("amount", "must not exceed the overpaid amount of 21.57"),
            ("refunded_on", "must not be in the future"),
        ]));
    TestFramework::<PurchaseOrder>::with(services())
        .given(history)
        .when_async(refund(1, "0", TODAY))
        .await
        .then_expect_error(invalid(&[("amount", "must be greater than zero")]));
    let mut commands = prepaid_and_received_short();
    commands.push(refund(1, "1.00", TODAY));
    TestFramework::<PurchaseOrder>::with(services())
        .given(run(commands).await.1)
        .when_async(refund(1, "1.00", TODAY))
        .await
        .then_expect_error(invalid(&[(
            "refund_id",
            "a refund with this id is already recorded",
        )]));
}

#[tokio::test]
async fn a_refund_needs_an_order_that_takes_money() {
    refused_outside(
        &[S::Approved, S::PartiallyReceived, S::Received],
        "record a refund on",
        || refund(1, "1.00", TODAY),
    )
    .await;
}

#[tokio::test]
async fn money_events_round_trip_and_old_receipts_without_lots_still_read() {
    let (_, events) = run(received_then(vec![
        raise(9, &[(LINE_1, "312.40")]),
        accept(9, Some("300.00")),
        raise(10, &[(LINE_2, "1.00")]),
        reject_claim(10),
    ]))
    .await;
    for event in &events {
        let json = serde_json::to_value(event).unwrap();
        assert_eq!(
            &serde_json::from_value::<PurchaseOrderEvent>(json).unwrap(),
            event
        );
    }
    let receipt = events
        .iter()
        .find(|e| matches!(e, PurchaseOrderEvent::ReceiptRecorded { .. }))
        .unwrap();
    let json = serde_json::to_value(receipt).unwrap();
    assert!(
        json["ReceiptRecorded"]["lines"][0].get("lots").is_none(),
        "a receipt without lots is written as before: {json}"
    );
    // A stored state from before claims existed reads with no claims, credits or refunds.
    let mut old_state = serde_json::to_value(state(S::Received).await).unwrap();
    for field in ["claims", "credits", "refunds", "amount_refunded"] {
        old_state.as_object_mut().unwrap().remove(field);
    }
    let read: PurchaseOrder = serde_json::from_value(old_state).unwrap();
    assert_eq!(read, state(S::Received).await);
}

// --- passing a customer's claim on to the supplier -------------------------------------

#[tokio::test]
async fn a_sales_claim_sourced_from_this_order_is_passed_on_and_taken_as_a_key() {
    let (order, events) = after(commands_to(S::Received), passing_on(9, SALES_CLAIM)).await;
    assert!(matches!(
        &events[0],
        PurchaseOrderEvent::ClaimRaised { source_sales_claim_id: Some(id), .. } if *id == SALES_CLAIM
    ));
    assert_eq!(
        order
            .claim(Uuid::from_u128(9))
            .unwrap()
            .source_sales_claim_id,
        Some(SALES_CLAIM)
    );
    assert_eq!(
        events[0].unique_key_changes(),
        vec![UniqueKeyChange::Claim {
            scope: PASSED_ON_SALES_CLAIM_SCOPE,
            key: SALES_CLAIM.to_string(),
        }]
    );
}

#[tokio::test]
async fn rejecting_a_passed_on_claim_gives_the_sales_claim_back() {
    let (order, events) = after(
        received_then(vec![passing_on(9, SALES_CLAIM)]),
        reject_claim(9),
    )
    .await;
    assert_eq!(
        events[0].unique_key_changes(),
        vec![UniqueKeyChange::Release {
            scope: PASSED_ON_SALES_CLAIM_SCOPE,
            key: SALES_CLAIM.to_string(),
        }]
    );
    // ... so it may be passed on again.
    let mut commands = received_then(vec![passing_on(9, SALES_CLAIM), reject_claim(9)]);
    commands.push(passing_on(10, SALES_CLAIM));
    assert!(run(commands).await.0.claim(Uuid::from_u128(10)).is_some());
    assert!(order.claim(Uuid::from_u128(9)).is_some());
}

#[tokio::test]
async fn a_sales_claim_is_passed_on_once() {
    let history = run(received_then(vec![passing_on(9, SALES_CLAIM)])).await.1;
    TestFramework::<PurchaseOrder>::with(services())
        .given(history)
        .when_async(passing_on(10, SALES_CLAIM))
        .await
        .then_expect_error(invalid(&[(
            "source_sales_claim_id",
            "is already passed on by another claim on this order",
        )]));
}

#[tokio::test]
async fn only_a_known_unrejected_sales_claim_sourced_from_this_order_is_passed_on() {
    for (sales_claim, message) in [
        (UNKNOWN, "no such sales claim"),
        (REJECTED_SALES_CLAIM, "the sales claim was rejected"),
        (
            OTHER_SALES_CLAIM,
            "the sales claim is on no sales line sourced from this purchase order",
        ),
    ] {
        given(S::Received)
            .await
            .when_async(passing_on(9, sales_claim))
            .await
            .then_expect_error(invalid(&[("source_sales_claim_id", message)]));
    }
}

#[tokio::test]
async fn a_failed_sales_claim_lookup_is_unavailable() {
    TestFramework::<PurchaseOrder>::with(services_with(lookups().failing("db down")))
        .given(history(S::Received).await)
        .when_async(passing_on(9, SALES_CLAIM))
        .await
        .then_expect_error(DomainError::Unavailable("db down".into()));
}

// --- lots -------------------------------------------------------------------------------

fn new_lot(id: u128, number: &str, w: &str) -> NewLot {
    NewLot {
        lot_id: Uuid::from_u128(id),
        lot_number: LotNumber::parse(number).unwrap(),
        weight: weight(w),
        production_date: Some(date("2024-06-03")),
        establishment_number: Some(ShortText::parse("EST. 245C").unwrap()),
    }
}

fn receipt_with_lots(id: u128, line_id: Uuid, w: &str, lots: Vec<NewLot>) -> PurchaseOrderCommand {
    PurchaseOrderCommand::RecordReceipt {
        receipt_id: Uuid::from_u128(id),
        received_on: date("2024-06-12"),
        complete: false,
        lines: vec![ReceiptLineInput {
            line_id,
            weight: weight(w),
            quantity: None,
            lots,
        }],
    }
}

#[tokio::test]
async fn received_lots_get_their_ids_supplier_and_product_and_take_their_keys() {
    let (order, events) = after(
        commands_to(S::Approved),
        receipt_with_lots(
            1,
            LINE_1,
            "20000",
            vec![
                new_lot(0x10a, "A123", "12000"),
                new_lot(0x10b, "A124", "8000"),
            ],
        ),
    )
    .await;
    let PurchaseOrderEvent::ReceiptRecorded { lines, .. } = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(
        lines[0].lots[0],
        ReceivedLot {
            lot_id: Uuid::from_u128(0x10a),
            lot_number: LotNumber::parse("A123").unwrap(),
            supplier_id: SUPPLIER,
            product_id: BEEF,
            weight: weight("12000"),
            production_date: Some(date("2024-06-03")),
            establishment_number: Some(ShortText::parse("EST. 245C").unwrap()),
        }
    );
    assert_eq!(order.line(LINE_1).unwrap().lots.len(), 2);
    assert_eq!(order.lots().count(), 2);
    assert_eq!(
        events[0].unique_key_changes(),
        vec![
            UniqueKeyChange::Claim {
                scope: LOT_NUMBER_SCOPE,
                key: format!("{SUPPLIER}/A123"),
            },
            UniqueKeyChange::Claim {
                scope: LOT_ID_SCOPE,
                key: Uuid::from_u128(0x10a).to_string(),
            },
            UniqueKeyChange::Claim {
                scope: LOT_NUMBER_SCOPE,
                key: format!("{SUPPLIER}/A124"),
            },
            UniqueKeyChange::Claim {
                scope: LOT_ID_SCOPE,
                key: Uuid::from_u128(0x10b).to_string(),
            },
        ]
    );
    assert_eq!(
        events[0].lot_movements(),
        vec![
            crate::LotMovement {
                lot_id: Uuid::from_u128(0x10a),
                received: weight("12000").value(),
                shipped: rust_decimal::Decimal::ZERO,
            },
            crate::LotMovement {
                lot_id: Uuid::from_u128(0x10b),
                received: weight("8000").value(),
                shipped: rust_decimal::Decimal::ZERO,
            },
        ],
        "the store adds received lots to their stock"
    );
    let json = serde_json::to_value(&events[0]).unwrap();
    assert_eq!(
        json["ReceiptRecorded"]["lines"][0]["lots"][0]["lot_number"],
        "A123"
    );
    assert_eq!(
        serde_json::from_value::<PurchaseOrderEvent>(json).unwrap(),
        events[0]
    );
}

#[tokio::test]
async fn lots_accumulate_on_the_line_over_receipts() {
    let mut commands = commands_to(S::Approved);
    commands.push(receipt_with_lots(
        1,
        LINE_1,
        "100",
        vec![new_lot(0x10a, "A123", "100")],
    ));
    let (order, _) = after(
        commands,
        receipt_with_lots(2, LINE_1, "50", vec![new_lot(0x10b, "A124", "50")]),
    )
    .await;
    let numbers: Vec<&str> = order
        .line(LINE_1)
        .unwrap()
        .lots
        .iter()
        .map(|l| l.lot_number.as_str())
        .collect();
    assert_eq!(numbers, ["A123", "A124"]);
}

#[tokio::test]
async fn lot_weights_sum_to_the_lines_received_weight() {
    given(S::Approved)
        .await
        .when_async(receipt_with_lots(
            1,
            LINE_1,
            "20000",
            vec![
                new_lot(0x10a, "A123", "12000"),
                new_lot(0x10b, "A124", "7999.5"),
            ],
        ))
        .await
        .then_expect_error(invalid(&[(
            "lines[0].lots",
            "the lots' weights must sum to the line's weight of 20000",
        )]));
}

#[tokio::test]
async fn a_lot_number_and_a_lot_id_are_received_once_on_an_order() {
    given(S::Approved)
        .await
        .when_async(PurchaseOrderCommand::RecordReceipt {
            receipt_id: Uuid::from_u128(1),
            received_on: date("2024-06-12"),
            complete: false,
            lines: vec![
                ReceiptLineInput {
                    line_id: LINE_1,
                    weight: weight("20"),
                    quantity: None,
                    lots: vec![new_lot(0x10a, "A123", "10"), new_lot(0x10a, "A123", "10")],
                },
                ReceiptLineInput {
                    line_id: LINE_2,
                    weight: weight("5"),
                    quantity: None,
                    lots: vec![new_lot(0x10c, "A123", "5")],
                },
            ],
        })
        .await
        .then_expect_error(invalid(&[
            (
                "lines[0].lots[1].lot_number",
                "this lot is already received on this order",
            ),
            (
                "lines[0].lots[1].lot_id",
                "a lot with this id is already received",
            ),
            (
                "lines[1].lots[0].lot_number",
                "this lot is already received on this order",
            ),
        ]));
    let mut commands = commands_to(S::Approved);
    commands.push(receipt_with_lots(
        1,
        LINE_1,
        "100",
        vec![new_lot(0x10a, "A123", "100")],
    ));
    TestFramework::<PurchaseOrder>::with(services())
        .given(run(commands).await.1)
        .when_async(receipt_with_lots(
            2,
            LINE_2,
            "5",
            vec![new_lot(0x10a, "A123", "5")],
        ))
        .await
        .then_expect_error(invalid(&[
            (
                "lines[0].lots[0].lot_number",
                "this lot is already received on this order",
            ),
            (
                "lines[0].lots[0].lot_id",
                "a lot with this id is already received",
            ),
        ]));
}

#[tokio::test]
async fn a_lot_is_not_produced_after_it_arrived() {
    let mut lot = new_lot(0x10a, "A123", "100");
    lot.production_date = Some(date("2024-06-13"));
    given(S::Approved)
        .await
        .when_async(receipt_with_lots(1, LINE_1, "100", vec![lot]))
        .await
        .then_expect_error(invalid(&[(
            "lines[0].lots[0].production_date",
            "must not be after the receipt date",
        )]));
}

#[tokio::test]
async fn a_line_takes_at_most_the_lot_cap() {
    let lots: Vec<NewLot> = (0..=MAX_LOTS_PER_LINE as u128)
        .map(|i| new_lot(0x1000 + i, &format!("L{i}"), "1"))
        .collect();
    let w = (MAX_LOTS_PER_LINE + 1).to_string();
    given(S::Approved)
        .await
        .when_async(receipt_with_lots(1, LINE_1, &w, lots))
        .await
        .then_expect_error(invalid(&[(
            "lines[0].lots",
            "a line may have at most 100 lots",
        )]));
}
