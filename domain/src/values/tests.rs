use serde_json::json;

use super::*;
use crate::error::FieldError;

fn amount(w: &str, p: &str) -> String {
    Money::line_amount(&Weight::parse(w).unwrap(), &UnitPrice::parse(p).unwrap()).to_string()
}

#[test]
fn line_amount_is_weight_times_price_rounded_half_up_to_cents() {
    assert_eq!(amount("40000", "2.1575"), "86300.00");
    assert_eq!(amount("10000.5", "1.3333"), "13333.67");
    assert_eq!(amount("1", "0.125"), "0.13");
    assert_eq!(amount("3", "0.005"), "0.02");
    assert_eq!(amount("1", "0.1249"), "0.12");
    assert_eq!(amount("1", "0"), "0.00");
}

#[test]
fn money_keeps_two_places_and_adds_exactly() {
    let a = Money::parse("0.1").unwrap();
    let b = Money::parse("0.2").unwrap();
    assert_eq!((a + b).to_string(), "0.30");
    assert_eq!((a - b).to_string(), "-0.10");
    assert_eq!((a - a).to_string(), "0.00");
    assert_eq!(Money::zero().to_string(), "0.00");
    assert!((a - a).is_zero());
    assert!((a - b).is_negative());
    assert!(a.is_positive());
    assert_eq!([a, b, a].iter().sum::<Money>().to_string(), "0.40");
    assert_eq!(Money::parse("86300").unwrap().to_string(), "86300.00");
    assert_eq!(Money::parse("1.500").unwrap().to_string(), "1.50");
}

#[test]
fn money_refuses_a_third_decimal_place_instead_of_rounding() {
    assert_eq!(
        Money::parse("10.005"),
        Err(ValueError::new("must have at most 2 decimal places"))
    );
}

#[test]
fn weights_and_prices_refuse_out_of_range_values() {
    assert_eq!(
        Weight::parse("-1"),
        Err(ValueError::new("must be greater than zero"))
    );
    assert_eq!(
        Weight::parse("0"),
        Err(ValueError::new("must be greater than zero"))
    );
    assert_eq!(
        Weight::parse("1.00001"),
        Err(ValueError::new("must have at most 4 decimal places"))
    );
    assert!(Weight::parse("1000000000").is_err());
    assert_eq!(
        UnitPrice::parse("2.15751"),
        Err(ValueError::new("must have at most 4 decimal places"))
    );
    assert_eq!(
        UnitPrice::parse("-0.01"),
        Err(ValueError::new("must not be negative"))
    );
    assert!(UnitPrice::parse("0").is_ok());
    assert_eq!(Weight::parse("40000.0000").unwrap().to_string(), "40000");
}

#[test]
fn decimal_text_must_be_plain() {
    for bad in [
        "", "abc", "1e5", "1_000", "NaN", "inf", "1.", ".5", "--1", "1.2.3",
    ] {
        assert!(Weight::parse(bad).is_err(), "{bad:?} should be refused");
    }
    assert!(Weight::parse(" 12.5 ").is_ok());
}

#[test]
fn decimals_serialize_as_strings() {
    assert_eq!(
        serde_json::to_value(Weight::parse("40000").unwrap()).unwrap(),
        json!("40000")
    );
    assert_eq!(
        serde_json::to_value(UnitPrice::parse("2.1575").unwrap()).unwrap(),
        json!("2.1575")
    );
    assert_eq!(
        serde_json::to_value(Money::parse("86300").unwrap()).unwrap(),
        json!("86300.00")
    );
}

#[test]
fn decimals_deserialize_from_strings_and_numbers() {
    let price: UnitPrice = serde_json::from_value(json!(2.1575)).unwrap();
    assert_eq!(price.to_string(), "2.1575");
    let price: UnitPrice = serde_json::from_str("2.1575").unwrap();
    assert_eq!(price.to_string(), "2.1575");
    let weight: Weight = serde_json::from_value(json!(40000)).unwrap();
    assert_eq!(weight.to_string(), "40000");
    let weight: Weight = serde_json::from_value(json!("10000.5")).unwrap();
    assert_eq!(weight.to_string(), "10000.5");
    let money: Money = serde_json::from_value(json!(0.1)).unwrap();
    assert_eq!(money.to_string(), "0.10");
    let money: Money = serde_json::from_value(json!(-5)).unwrap();
    assert_eq!(money.to_string(), "-5.00");
}

#[test]
fn decimal_deserialization_explains_refusals() {
    let error = serde_json::from_value::<Weight>(json!("-3")).unwrap_err();
    assert_eq!(error.to_string(), "must be greater than zero");
    let error = serde_json::from_value::<Money>(json!("1e3")).unwrap_err();
    assert!(error.to_string().starts_with("must be a decimal number"));
    assert!(serde_json::from_value::<Money>(json!(true)).is_err());
    assert!(serde_json::from_value::<Money>(json!(1.005)).is_err());
}

#[test]
fn currency_is_an_uppercase_iso_4217_code() {
    assert_eq!(Currency::default().as_str(), "USD");
    assert!(Currency::parse("EUR").is_ok());
    assert!(Currency::parse("usd").is_err());
    assert!(Currency::parse("US").is_err());
    assert_eq!(
        Currency::parse("ABC"),
        Err(ValueError::new("ABC is not an ISO 4217 currency code"))
    );
    assert!(serde_json::from_value::<Currency>(json!("XXX")).is_err());
    assert_eq!(
        serde_json::from_value::<Currency>(json!("CAD")).unwrap(),
        Currency::parse("CAD").unwrap()
    );
}

#[test]
fn text_is_trimmed_and_bounded() {
    assert_eq!(Name::parse("  Acme  ").unwrap().as_str(), "Acme");
    assert_eq!(
        Name::parse("   "),
        Err(ValueError::new("must not be empty"))
    );
    assert_eq!(
        Name::parse(&"x".repeat(201)),
        Err(ValueError::new("must be at most 200 characters"))
    );
    assert!(Name::parse(&"é".repeat(200)).is_ok());
    assert_eq!(
        Code::parse("AB C"),
        Err(ValueError::new("must not contain spaces"))
    );
    assert!(Name::parse("a\u{0}b").is_err());
    assert!(Name::parse("two\nlines").is_err());
    assert!(NoteText::parse("two\nlines").is_ok());
    assert!(LongText::parse("").is_ok());
    assert!(Reason::parse("").is_err());
    assert!(serde_json::from_value::<Name>(json!("")).is_err());
}

#[test]
fn email_needs_one_at_and_a_dotted_domain() {
    assert!(Email::parse("sales@acme.example").is_ok());
    for bad in [
        "acme.example",
        "@acme.example",
        "a@b",
        "a@@b.co",
        "a@b.co@c.co",
        "a b@c.co",
        "a@.co",
        "a@b..co",
    ] {
        assert!(Email::parse(bad).is_err(), "{bad:?} should be refused");
    }
}

#[test]
fn assigned_numbers_are_zero_padded_to_six_digits() {
    assert_eq!(OrderNumber::assigned("PO", 1).as_str(), "PO-000001");
    assert_eq!(OrderNumber::assigned("SO", 123456).as_str(), "SO-123456");
    assert_eq!(OrderNumber::assigned("SO", 1234567).as_str(), "SO-1234567");
    assert_eq!(InvoiceNumber::assigned("INV", 42).as_str(), "INV-000042");
    assert!(OrderNumber::parse(OrderNumber::assigned("P O", u64::MAX).as_str()).is_ok());
}

#[test]
fn number_series_format_their_numbers_as_assigned_numbers() {
    assert_eq!(NumberSeries::PURCHASE_ORDER.format(1), "PO-000001");
    assert_eq!(NumberSeries::SALES_ORDER.format(123456), "SO-123456");
    assert_eq!(NumberSeries::INVOICE.format(42), "INV-000042");
    assert_eq!(NumberSeries::INVOICE.format(1234567), "INV-1234567");
    for (series, n) in [
        (NumberSeries::PURCHASE_ORDER, 7),
        (NumberSeries::SALES_ORDER, 8),
    ] {
        assert_eq!(
            OrderNumber::assigned(series.prefix, n).as_str(),
            series.format(n)
        );
    }
    assert_eq!(
        InvoiceNumber::assigned(NumberSeries::INVOICE.prefix, 9).as_str(),
        NumberSeries::INVOICE.format(9)
    );
}

#[test]
fn number_series_name_their_counters_and_scopes() {
    let all = [
        NumberSeries::PURCHASE_ORDER,
        NumberSeries::SALES_ORDER,
        NumberSeries::INVOICE,
        NumberSeries::CREDIT_NOTE,
    ];
    assert_eq!(
        all.map(|s| (s.series, s.scope, s.prefix)),
        [
            ("purchase_order", "purchase_order_number", "PO"),
            ("sales_order", "sales_order_number", "SO"),
            ("invoice", "invoice_number", "INV"),
            ("credit_note", "credit_note_number", "CN"),
        ]
    );
    assert_eq!(
        CreditNoteNumber::assigned(NumberSeries::CREDIT_NOTE.prefix, 4).as_str(),
        "CN-000004"
    );
    assert_eq!(
        crate::scope_field(NumberSeries::CREDIT_NOTE.scope),
        "credit_note_number"
    );
    assert_eq!(
        crate::purchase_order::PURCHASE_ORDER_NUMBER_SCOPE,
        NumberSeries::PURCHASE_ORDER.scope
    );
    assert_eq!(
        crate::sales_order::SALES_ORDER_NUMBER_SCOPE,
        NumberSeries::SALES_ORDER.scope
    );
    assert_eq!(
        crate::sales_order::INVOICE_NUMBER_SCOPE,
        NumberSeries::INVOICE.scope
    );
    for series in all {
        assert!(crate::UNIQUE_SCOPES.contains(&series.scope));
    }
    assert_eq!(
        crate::scope_field(NumberSeries::PURCHASE_ORDER.scope),
        "order_number"
    );
    assert_eq!(
        crate::scope_field(NumberSeries::INVOICE.scope),
        "invoice_number"
    );
    assert_eq!(crate::scope_field("product_code"), "code");
}

#[test]
fn tenant_name_is_trimmed_and_1_to_200_characters() {
    assert_eq!(
        TenantName::parse("  Acme Meats  ").unwrap().as_str(),
        "Acme Meats"
    );
    assert!(TenantName::parse(&"é".repeat(200)).is_ok());
    for bad in ["", "   ", "\u{3000}", &"x".repeat(201)] {
        assert_eq!(
            TenantName::parse(bad),
            Err(FieldError::new("name", "must be 1 to 200 characters")),
            "{bad:?}"
        );
    }
    let padded = format!("  {}  ", "x".repeat(200));
    assert_eq!(TenantName::parse(&padded).unwrap().as_str().len(), 200);
}

#[test]
fn tenant_name_refuses_control_characters() {
    for bad in ["Acme\u{0}Meats", "Acme\nMeats", "Acme\tMeats", "Acme\u{7f}"] {
        let error = TenantName::parse(bad).unwrap_err();
        assert_eq!(error.field, "name");
        assert!(error.message.contains("control characters"), "{bad:?}");
    }
    assert!(serde_json::from_value::<TenantName>(json!("a\u{0}b")).is_err());
}

#[test]
fn tenant_slug_is_lowercase_letters_digits_and_dashes() {
    for good in [
        "acme-meats",
        "acme",
        "1st-choice",
        "a",
        "a-",
        &"a".repeat(63),
    ] {
        assert_eq!(TenantSlug::parse(good).unwrap().as_str(), good);
    }
    let refused = Err(FieldError::new(
        "slug",
        "must be lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters",
    ));
    for bad in [
        "",
        "-acme",
        "Acme",
        "acme_meats",
        "acme meats",
        " acme",
        "acme.example",
        "caf\u{e9}",
        &"a".repeat(64),
    ] {
        assert_eq!(TenantSlug::parse(bad), refused, "{bad:?}");
    }
}

#[test]
fn tenant_values_read_from_json_through_parse() {
    let name: TenantName = serde_json::from_value(json!(" Acme ")).unwrap();
    assert_eq!(name.to_string(), "Acme");
    assert_eq!(serde_json::to_value(&name).unwrap(), json!("Acme"));
    let slug: TenantSlug = serde_json::from_value(json!("acme")).unwrap();
    assert_eq!(String::from(slug), "acme");
    let error = serde_json::from_value::<TenantSlug>(json!("ACME")).unwrap_err();
    assert!(error.to_string().starts_with("must be lowercase letters"));
    assert_eq!(
        TenantSlug::parse("ACME").unwrap_err().to_string(),
        "slug: must be lowercase letters, digits and '-', starting with a letter or digit, at most 63 characters"
    );
}

#[test]
fn choices_use_their_trade_words() {
    assert_eq!(serde_json::to_value(WeightUnit::Kg).unwrap(), json!("KG"));
    assert_eq!(WeightUnit::default(), WeightUnit::Lb);
    assert_eq!(Logistics::default(), Logistics::SupplierDelivery);
    assert_eq!(PackageType::BoxedCo2.to_string(), "boxed_co2");
    assert_eq!(CreditTerms::Wire1DayPrior.to_string(), "wire_1_day_prior");
    assert_eq!(CreditTerms::Net45.days(), 45);
    assert_eq!(CreditTerms::Wire1DayPrior.days(), 0);
    assert_eq!(
        "edible_and_inedible".parse::<Edible>(),
        Ok(Edible::EdibleAndInedible)
    );
    assert_eq!(
        "pig".parse::<Protein>(),
        Err(ValueError::new(
            "must be one of: beef, pork, chicken, turkey, lamb, fish, other"
        ))
    );
    assert_eq!(Protein::ALL.len(), 7);
    assert!(serde_json::from_value::<Protein>(json!("Beef")).is_err());
}

#[test]
fn credit_terms_put_the_due_date_net_days_after_the_reference_or_a_day_before_for_wire() {
    let day = |text: &str| text.parse::<chrono::NaiveDate>().unwrap();
    let reference = day("2024-02-28");
    let due = |terms: CreditTerms| terms.due_date(reference);
    assert_eq!(due(CreditTerms::Wire1DayPrior), day("2024-02-27"));
    assert_eq!(due(CreditTerms::Net7), day("2024-03-06"));
    assert_eq!(due(CreditTerms::Net15), day("2024-03-14"));
    assert_eq!(due(CreditTerms::Net30), day("2024-03-29"));
    assert_eq!(due(CreditTerms::Net45), day("2024-04-13"));
    assert_eq!(due(CreditTerms::Net60), day("2024-04-28"));
    assert_eq!(
        CreditTerms::Wire1DayPrior.due_date(day("2024-03-01")),
        day("2024-02-29")
    );
    for terms in CreditTerms::ALL {
        let distance = (terms.due_date(reference) - reference).num_days();
        match terms {
            CreditTerms::Wire1DayPrior => assert_eq!(distance, -1),
            _ => assert_eq!(distance, terms.days(), "{terms}"),
        }
    }
}

#[test]
fn credit_terms_due_dates_stop_at_the_ends_of_the_calendar() {
    use chrono::NaiveDate;
    assert_eq!(CreditTerms::Net60.due_date(NaiveDate::MAX), NaiveDate::MAX);
    assert_eq!(
        CreditTerms::Wire1DayPrior.due_date(NaiveDate::MIN),
        NaiveDate::MIN
    );
}

#[test]
fn payment_status_follows_paid_against_due() {
    let m = |s| Money::parse(s).unwrap();
    let zero = m("0");
    assert_eq!(
        PaymentStatus::of(zero, zero, m("10")),
        PaymentStatus::Unpaid
    );
    assert_eq!(PaymentStatus::of(zero, zero, zero), PaymentStatus::Unpaid);
    assert_eq!(
        PaymentStatus::of(zero, m("3"), m("7")),
        PaymentStatus::Unpaid
    );
    assert_eq!(
        PaymentStatus::of(m("5"), zero, m("5")),
        PaymentStatus::Partial
    );
    assert_eq!(PaymentStatus::of(m("10"), zero, zero), PaymentStatus::Paid);
    assert_eq!(PaymentStatus::of(zero, m("10"), zero), PaymentStatus::Paid);
    assert_eq!(
        PaymentStatus::of(m("12"), zero, m("-2")),
        PaymentStatus::Overpaid
    );
}

#[test]
fn quantity_is_a_whole_number() {
    assert_eq!(
        serde_json::from_value::<Quantity>(json!(12))
            .unwrap()
            .value(),
        12
    );
    assert!(serde_json::from_value::<Quantity>(json!(-1)).is_err());
    assert!(serde_json::from_value::<Quantity>(json!(1.5)).is_err());
}

#[test]
fn the_scopes_of_claims_credit_notes_and_lots_are_store_scopes_named_by_their_field() {
    use crate::purchase_order::{LOT_ID_SCOPE, LOT_NUMBER_SCOPE, PASSED_ON_SALES_CLAIM_SCOPE};
    use crate::sales_order::{CREDIT_NOTE_NUMBER_SCOPE, SALES_CLAIM_SCOPE};
    for (scope, field) in [
        (CREDIT_NOTE_NUMBER_SCOPE, "credit_note_number"),
        (LOT_NUMBER_SCOPE, "lot_number"),
        (LOT_ID_SCOPE, "lot_id"),
        (SALES_CLAIM_SCOPE, "claim_id"),
        (PASSED_ON_SALES_CLAIM_SCOPE, "source_sales_claim_id"),
    ] {
        assert!(crate::UNIQUE_SCOPES.contains(&scope), "{scope}");
        assert_eq!(crate::scope_field(scope), field);
    }
    let mut scopes = crate::UNIQUE_SCOPES.to_vec();
    scopes.sort_unstable();
    scopes.dedup();
    assert_eq!(
        scopes.len(),
        crate::UNIQUE_SCOPES.len(),
        "scopes are distinct"
    );
}

#[test]
fn lot_and_credit_note_numbers_are_single_words() {
    assert_eq!(LotNumber::parse(" A123 ").unwrap().as_str(), "A123");
    assert!(LotNumber::parse("A 123").is_err());
    assert!(LotNumber::parse("").is_err());
    assert!(LotNumber::parse(&"x".repeat(51)).is_err());
    assert!(CreditNoteNumber::parse("CN 1").is_err());
    assert_eq!(
        CreditNoteNumber::parse("ACME-CM-77").unwrap().as_str(),
        "ACME-CM-77"
    );
}
