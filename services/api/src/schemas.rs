//! JSON Schemas of what the domain's value types accept, for the OpenAPI document.
//!
//! The domain knows nothing of OpenAPI, so the schemas of its values are written here, next
//! to the parsers they describe, and the unit tests below hold the two together (a text's
//! bounds, a choice list's words). Each schema describes exactly the text the domain takes
//! where JSON Schema can say it (choice lists, lengths after trimming, control characters,
//! the shape of a decimal, four-digit dates), and no less: whatever the schema refuses, the
//! service refuses too. Rules no schema can state (a weight's upper bound in a decimal
//! string, an e-mail's domain having a dot, a supplier existing) are the service's 422.
//!
//! Request bodies whose Rust type is the domain's own (reference data, header and line
//! patches) get a marker type here ([`SupplierBody`], …) whose only job is its schema.

use oms_domain::order::ClaimReason;
use oms_domain::values::{
    CarrierType, CreditTerms, Edible, FreshOrFrozen, Logistics, NetOrCatch, PackageType,
    PaymentMethod, PaymentTerms, Protein, WeightUnit,
};
use serde_json::{json, Map, Value};
use utoipa::openapi::{RefOr, Schema};

/// White space as Rust's `str::trim` removes it (Unicode White_Space).
const WS: &str = r"\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000";
/// Every control character (Unicode Cc), refused in one-line text.
const CONTROL: &str = r"\x00-\x1f\x7f-\x9f";
/// The control characters refused in multi-line text (all but tab, line feed, return).
const CONTROL_IN_LINES: &str = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f";

/// What a text allows between its first and last character.
#[derive(Debug, Clone, Copy)]
enum Kind {
    /// One line: no control characters.
    Line,
    /// One word: no white space either.
    Word,
    /// Several lines: tabs and line breaks allowed.
    Lines,
}

/// The pattern of a text the domain trims and then bounds to `min..=max` characters of
/// `kind`: surrounding white space is free, what it surrounds is bounded exactly.
fn text_pattern(kind: Kind, min: usize, max: usize) -> String {
    let (inner, edge) = match kind {
        Kind::Line => (format!("[^{CONTROL}]"), format!("[^{WS}{CONTROL}]")),
        Kind::Word => (format!("[^{WS}{CONTROL}]"), format!("[^{WS}{CONTROL}]")),
        Kind::Lines => (
            format!("[^{CONTROL_IN_LINES}]"),
            format!("[^{WS}{CONTROL_IN_LINES}]"),
        ),
    };
    let body = match (kind, max) {
        (Kind::Word, _) => format!("{edge}{{{},{max}}}", min.max(1)),
        (_, 1) => edge.clone(),
        _ => format!("{edge}(?:{inner}{{0,{}}}{edge})?", max - 2),
    };
    let body = if min == 0 {
        format!("(?:{body})?")
    } else {
        body
    };
    format!("^[{WS}]*{body}[{WS}]*$")
}

/// The pattern of a free-text query parameter (`q`): at most 200 characters once trimmed,
/// no control characters.
pub fn query_text_pattern() -> String {
    text_pattern(Kind::Line, 0, 200)
}

/// A comma-separated list of `words`, white space around each allowed (the service trims).
pub fn words(words: &[String]) -> Value {
    let word = format!("[{WS}]*(?:{})[{WS}]*", words.join("|"));
    json!({
        "type": "string",
        "pattern": format!("^{word}(?:,{word})*$"),
        "description": format!("one of {}, or several separated by commas", words.join(", ")),
    })
}

/// A text schema.
fn text(kind: Kind, min: usize, max: usize, what: &str) -> Value {
    let shape = match kind {
        Kind::Line => "one line",
        Kind::Word => "one word (no spaces)",
        Kind::Lines => "line breaks allowed",
    };
    json!({
        "type": "string",
        "pattern": text_pattern(kind, min, max),
        "description": format!(
            "{what}: {min} to {max} characters once surrounding white space is trimmed; {shape}; no control characters"
        ),
    })
}

/// A name: one line, 1 to 200 characters.
pub fn name() -> Value {
    text(Kind::Line, 1, 200, "a name")
}

/// A code, unique per tenant: one word, 1 to 50 characters.
pub fn code() -> Value {
    text(Kind::Word, 1, 50, "a code")
}

/// A short one-line value (phone, reference and registration numbers).
pub fn short_text() -> Value {
    text(Kind::Line, 1, 200, "short text")
}

/// Free text, possibly empty.
pub fn long_text() -> Value {
    text(Kind::Lines, 0, 10_000, "free text")
}

/// The text of a note.
pub fn note_text() -> Value {
    text(Kind::Lines, 1, 10_000, "the note")
}

/// Why something was done (reject, cancel).
pub fn reason() -> Value {
    text(Kind::Lines, 1, 1000, "the reason")
}

/// An order or invoice number: one word, 1 to 50 characters.
pub fn number() -> Value {
    text(Kind::Word, 1, 50, "a number such as PO-000001")
}

/// A supplier's lot number: one word, 1 to 50 characters.
pub fn lot_number() -> Value {
    text(Kind::Word, 1, 50, "the supplier's lot number, such as A123")
}

/// An e-mail address (the service also wants a dot in the domain).
pub fn email() -> Value {
    let part = format!("[^{WS}{CONTROL}@]+");
    json!({
        "type": "string",
        "pattern": format!("^[{WS}]*{part}@{part}[{WS}]*$"),
        "description": "an e-mail address, at most 254 characters",
        "example": "buyer@example.com",
    })
}

/// An ISO 4217 code of a circulating currency: exactly the codes the domain takes.
pub fn currency() -> Value {
    let letters = || b'A'..=b'Z';
    let codes: Vec<String> = letters()
        .flat_map(|a| letters().flat_map(move |b| letters().map(move |c| [a, b, c])))
        .map(|code| String::from_utf8_lossy(&code).into_owned())
        .filter(|code| oms_domain::values::Currency::parse(code).is_ok())
        .collect();
    json!({
        "type": "string",
        "enum": codes,
        "description": "an ISO 4217 code of a circulating currency (default USD)",
        "example": "USD",
    })
}

/// A decimal sent as a string (exact) or a number. `string` is the pattern of the decimal
/// text between the white space the service trims; `bounds` are the number's.
fn decimal(description: &str, example: &str, string: &str, bounds: Value) -> Value {
    let mut number = json!({"type": "number"});
    if let (Value::Object(number), Value::Object(bounds)) = (&mut number, bounds) {
        number.extend(bounds);
    }
    json!({
        "anyOf": [
            {"type": "string", "pattern": format!("^[{WS}]*(?:{string})[{WS}]*$")},
            number,
        ],
        "description": description,
        "example": example,
    })
}

/// Decimal text greater than zero, with at most `whole` digits before the point (leading
/// zeros aside) and at most `places` after it (trailing zeros aside).
fn positive_decimal(whole: usize, places: usize) -> String {
    format!(
        r"0*[1-9][0-9]{{0,{}}}(?:\.[0-9]{{1,{places}}}0*)?|0+\.[0-9]{{0,{}}}[1-9]0*",
        whole - 1,
        places - 1
    )
}

/// A weight in the order's unit: > 0, at most 4 decimal places, below one billion.
pub fn weight() -> Value {
    decimal(
        "a weight in the order's unit: a decimal string (exact) or number, greater than 0, below 1000000000, at most 4 decimal places",
        "40000",
        &positive_decimal(9, 4),
        json!({"exclusiveMinimum": 0, "exclusiveMaximum": 1_000_000_000}),
    )
}

/// A price per weight unit: ≥ 0, at most 4 decimal places, below one million.
pub fn unit_price() -> Value {
    decimal(
        "a price per weight unit: a decimal string (exact) or number, 0 or more, below 1000000, at most 4 decimal places",
        "2.1575",
        r"0*[0-9]{1,6}(?:\.[0-9]{1,4}0*)?",
        json!({"minimum": 0, "exclusiveMaximum": 1_000_000}),
    )
}

/// An amount of money paid: > 0, at most 2 decimal places, below 10^15.
pub fn money() -> Value {
    decimal(
        "an amount in the order's currency: a decimal string (exact) or number, greater than 0, at most 2 decimal places, at most what is outstanding",
        "1000.00",
        &positive_decimal(15, 2),
        json!({"exclusiveMinimum": 0, "exclusiveMaximum": 1_000_000_000_000_000_i64}),
    )
}

/// A count of cases or pieces.
pub fn quantity() -> Value {
    json!({"type": "integer", "minimum": 0, "maximum": u32::MAX, "description": "cases or pieces"})
}

/// A date, `YYYY-MM-DD`, in the years 0001 to 9999.
pub fn date() -> Value {
    json!({"type": "string", "format": "date", "description": "YYYY-MM-DD, years 0001 to 9999"})
}

/// An id.
pub fn uuid() -> Value {
    json!({"type": "string", "format": "uuid"})
}

/// One of a closed list of words.
fn choice<T: std::fmt::Display>(all: &[T], description: &str) -> Value {
    let words: Vec<String> = all.iter().map(ToString::to_string).collect();
    json!({"type": "string", "enum": words, "description": description})
}

/// LB or KG.
pub fn weight_unit() -> Value {
    choice(
        WeightUnit::ALL,
        "the unit of every weight and price (default LB)",
    )
}

/// Who moves the load.
pub fn logistics() -> Value {
    choice(
        Logistics::ALL,
        "who moves the load (default supplier_delivery)",
    )
}

/// How a party is paid.
pub fn payment_terms() -> Value {
    choice(PaymentTerms::ALL, "how the party is usually paid")
}

/// When a party is paid.
pub fn credit_terms() -> Value {
    choice(CreditTerms::ALL, "when the party is usually paid")
}

/// How a payment was made.
pub fn payment_method() -> Value {
    choice(PaymentMethod::ALL, "how it was paid")
}

/// Why a claim is raised.
pub fn claim_reason() -> Value {
    choice(ClaimReason::ALL, "why the claim is raised")
}

/// Which of `value`'s types also takes `null` (a patch clears the field with it).
pub fn nullable(value: Value) -> Value {
    json!({"anyOf": [value, {"type": "null"}]})
}

/// An object of `required` and `optional` fields and nothing else (unknown fields are 422).
pub fn object(description: &str, required: &[(&str, Value)], optional: &[(&str, Value)]) -> Value {
    let mut properties = Map::new();
    for (name, schema) in required.iter().chain(optional) {
        properties.insert((*name).to_string(), schema.clone());
    }
    let mut object = json!({
        "type": "object",
        "description": description,
        "properties": properties,
        "additionalProperties": false,
    });
    if !required.is_empty() {
        object["required"] = json!(required.iter().map(|(n, _)| *n).collect::<Vec<_>>());
    }
    object
}

/// A schema as utoipa holds it.
pub fn to_schema(value: Value) -> RefOr<Schema> {
    serde_json::from_value(value).expect("the schemas written here are valid schemas")
}

/// `schema_with` adapters for the request types that derive their schema: each field's
/// schema is the domain value's own; `opt_*` also takes `null` (an optional field, which
/// reads `null` as absent).
pub mod with {
    use super::{nullable, to_schema, RefOr, Schema};

    macro_rules! adapters {
        (required: $($name:ident),*; optional: $($optional:ident = $of:ident),*;) => {
            $(
                #[doc = concat!("[`super::", stringify!($name), "`].")]
                pub fn $name() -> RefOr<Schema> {
                    to_schema(super::$name())
                }
            )*
            $(
                #[doc = concat!("[`super::", stringify!($of), "`] or `null`.")]
                pub fn $optional() -> RefOr<Schema> {
                    to_schema(nullable(super::$of()))
                }
            )*
        };
    }

    /// A tenant's name: one line, 1 to 200 characters.
    pub fn tenant_name() -> RefOr<Schema> {
        to_schema(super::name())
    }

    /// A tenant's slug: what fits a DNS label as it is.
    pub fn tenant_slug() -> RefOr<Schema> {
        to_schema(serde_json::json!({
            "type": "string",
            "pattern": "^[a-z0-9][a-z0-9-]{0,62}$",
            "description": "1 to 63 lowercase letters, digits and '-', starting with a letter or digit",
        }))
    }

    adapters! {
        required: note_text, reason, weight, unit_price, money, payment_method, claim_reason, lot_number;
        optional: opt_short_text = short_text, opt_money = money, opt_weight = weight, opt_long_text = long_text, opt_number = number,
            opt_currency = currency, opt_quantity = quantity, opt_weight_unit = weight_unit,
            opt_logistics = logistics, opt_payment_terms = payment_terms;
    }
}

/// Declares a marker type whose schema is `$schema` (a [`Value`]), for request bodies
/// parsed into the domain's own types.
macro_rules! body_schema {
    ($(#[$doc:meta])* $name:ident, $schema:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Copy)]
        pub struct $name;

        impl utoipa::PartialSchema for $name {
            fn schema() -> RefOr<Schema> {
                to_schema($schema)
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

/// The fields of a reference kind, as (name, schema, required on create).
type Fields = Vec<(&'static str, Value, bool)>;

fn supplier_fields(industry: bool) -> Fields {
    let mut fields = vec![
        ("name", name(), true),
        ("code", code(), false),
        ("contact_name", name(), false),
        ("email", email(), false),
        ("phone", short_text(), false),
        ("address", long_text(), false),
        ("payment_terms", payment_terms(), false),
        ("credit_terms", credit_terms(), false),
    ];
    if industry {
        fields.push(("industry", short_text(), false));
    }
    fields
}

fn product_fields() -> Fields {
    vec![
        ("code", code(), true),
        ("description", name(), true),
        (
            "protein",
            choice(Protein::ALL, "the animal it comes from"),
            true,
        ),
        ("uom", weight_unit(), true),
        (
            "fresh_or_frozen",
            choice(FreshOrFrozen::ALL, "fresh or frozen"),
            false,
        ),
        (
            "package_type",
            choice(PackageType::ALL, "how it is packed"),
            false,
        ),
        (
            "net_or_catch",
            choice(NetOrCatch::ALL, "net or catch weight"),
            false,
        ),
        ("edible", choice(Edible::ALL, "edible or not"), false),
    ]
}

fn plant_fields() -> Fields {
    vec![
        ("name", name(), true),
        ("code", code(), true),
        ("establishment_number", short_text(), false),
        ("address", long_text(), false),
        ("plant_type", short_text(), false),
    ]
}

fn carrier_fields() -> Fields {
    vec![
        ("name", name(), true),
        ("code", code(), true),
        (
            "carrier_type",
            choice(CarrierType::ALL, "how it moves freight"),
            true,
        ),
        ("mc_number", short_text(), false),
        ("dot_number", short_text(), false),
    ]
}

/// The create body of a kind: its required fields required, the rest optional (a product's
/// `uom` defaults to LB).
fn create_body(what: &str, fields: Fields) -> Value {
    let required: Vec<(&str, Value)> = fields
        .iter()
        .filter(|f| f.2 && f.0 != "uom")
        .map(|f| (f.0, f.1.clone()))
        .collect();
    let optional: Vec<(&str, Value)> = fields
        .iter()
        .filter(|f| !f.2 || f.0 == "uom")
        .map(|f| (f.0, f.1.clone()))
        .collect();
    object(what, &required, &optional)
}

/// The PATCH body of a kind: every field optional; required ones may not be `null`, optional
/// ones are cleared by it; plus `active`.
fn patch_body(what: &str, fields: Fields) -> Value {
    let mut optional: Vec<(&str, Value)> = fields
        .into_iter()
        .map(|(n, s, required)| (n, if required { s } else { nullable(s) }))
        .collect();
    optional.push((
        "active",
        json!({"type": "boolean", "description": "false deactivates, true reactivates"}),
    ));
    object(what, &[], &optional)
}

body_schema!(
    /// `POST /api/v1/suppliers`.
    SupplierBody, create_body("a supplier", supplier_fields(false)));
body_schema!(
    /// `PATCH /api/v1/suppliers/{id}`.
    SupplierPatchBody, patch_body("changes to a supplier", supplier_fields(false)));
body_schema!(
    /// `POST /api/v1/customers`.
    CustomerBody, create_body("a customer", supplier_fields(true)));
body_schema!(
    /// `PATCH /api/v1/customers/{id}`.
    CustomerPatchBody, patch_body("changes to a customer", supplier_fields(true)));
body_schema!(
    /// `POST /api/v1/products`.
    ProductBody, create_body("a product", product_fields()));
body_schema!(
    /// `PATCH /api/v1/products/{id}`.
    ProductPatchBody, patch_body("changes to a product", product_fields()));
body_schema!(
    /// `POST /api/v1/plants`.
    PlantBody, create_body("a plant", plant_fields()));
body_schema!(
    /// `PATCH /api/v1/plants/{id}`.
    PlantPatchBody, patch_body("changes to a plant", plant_fields()));
body_schema!(
    /// `POST /api/v1/carriers`.
    CarrierBody, create_body("a carrier", carrier_fields()));
body_schema!(
    /// `PATCH /api/v1/carriers/{id}`.
    CarrierPatchBody, patch_body("changes to a carrier", carrier_fields()));

/// The header fields an order's PATCH may change: (name, schema, may be cleared with null).
fn header_fields(purchase: bool) -> Vec<(&'static str, Value, bool)> {
    let mut fields = vec![
        (
            if purchase {
                "supplier_id"
            } else {
                "customer_id"
            },
            uuid(),
            false,
        ),
        ("order_date", date(), false),
        ("currency", currency(), false),
        ("weight_unit", weight_unit(), false),
        ("plant_id", uuid(), true),
        ("carrier_id", uuid(), true),
        ("pickup_date", date(), true),
        ("delivery_date", date(), true),
        ("notes", long_text(), true),
    ];
    if purchase {
        fields.extend([
            ("logistics", logistics(), false),
            ("payment_terms", payment_terms(), true),
            ("supplier_confirmation_number", short_text(), true),
            ("carrier_release_number", short_text(), true),
        ]);
    } else {
        fields.push(("customer_po_number", short_text(), true));
    }
    fields
}

fn header_patch(purchase: bool) -> Value {
    let optional: Vec<(&str, Value)> = header_fields(purchase)
        .into_iter()
        .map(|(n, s, clearable)| (n, if clearable { nullable(s) } else { s }))
        .collect();
    object(
        "header fields to change (draft only); absent fields stay, null clears an optional one",
        &[],
        &optional,
    )
}

fn line_patch(sales: bool) -> Value {
    let mut optional = vec![
        ("product_id", uuid()),
        ("weight", weight()),
        ("price_per_unit", unit_price()),
        ("quantity", nullable(quantity())),
        ("description", nullable(long_text())),
    ];
    if sales {
        optional.push(("source_purchase_order_id", nullable(uuid())));
    }
    object(
        "line fields to change (draft only); absent fields stay, null clears quantity, description (and the source purchase order)",
        &[],
        &optional,
    )
}

body_schema!(
    /// `PATCH /api/v1/purchase-orders/{id}`.
    PurchaseOrderHeaderPatchBody, header_patch(true));
body_schema!(
    /// `PATCH /api/v1/sales-orders/{id}`.
    SalesOrderHeaderPatchBody, header_patch(false));
body_schema!(
    /// `PATCH /api/v1/purchase-orders/{id}/lines/{line_id}`.
    PurchaseLinePatchBody, line_patch(false));
body_schema!(
    /// `PATCH /api/v1/sales-orders/{id}/lines/{line_id}`.
    SalesLinePatchBody, line_patch(true));

#[cfg(test)]
mod tests {
    use super::*;
    use oms_domain::values::{Code, Email, LongText, Name, NoteText, Reason};

    /// A domain parser: whether it takes the text.
    type Parser = fn(&str) -> bool;

    #[test]
    fn text_bounds_are_the_domains() {
        let cases: [(&str, Value, Parser, usize, usize); 5] = [
            ("name", name(), |t| Name::parse(t).is_ok(), 1, 200),
            ("code", code(), |t| Code::parse(t).is_ok(), 1, 50),
            ("reason", reason(), |t| Reason::parse(t).is_ok(), 1, 1000),
            (
                "note",
                note_text(),
                |t| NoteText::parse(t).is_ok(),
                1,
                10_000,
            ),
            (
                "long",
                long_text(),
                |t| LongText::parse(t).is_ok(),
                0,
                10_000,
            ),
        ];
        for (what, schema, parses, min, max) in cases {
            // The schema's bound is the domain's: the longest text passes, one more fails.
            let pattern = schema["pattern"].as_str().unwrap();
            let bound = if what == "code" {
                format!("{{1,{max}}}")
            } else {
                format!("{{0,{}}}", max - 2)
            };
            assert!(pattern.contains(&bound), "{what}: {pattern}");
            assert_eq!(pattern.contains(")?)?["), min == 0, "{what}: {pattern}");
            assert!(parses(&"x".repeat(max)), "{what} at {max}");
            assert!(!parses(&"x".repeat(max + 1)), "{what} past {max}");
            assert_eq!(parses(""), min == 0, "{what} empty");
            assert!(
                parses(&format!("  {}  ", "x".repeat(max))),
                "{what} trimmed"
            );
            assert!(!parses("a\u{0}b"), "{what} NUL");
        }
        assert!(Email::parse("buyer@example.com").is_ok());
    }

    #[test]
    fn the_currency_list_is_the_domains() {
        let codes = currency()["enum"].as_array().unwrap().len();
        assert!((150..200).contains(&codes), "{codes}");
        assert!(currency()["enum"]
            .as_array()
            .unwrap()
            .contains(&json!("USD")));
    }

    #[test]
    fn patterns_bound_what_trimming_leaves() {
        assert_eq!(
            text_pattern(Kind::Word, 1, 50),
            format!("^[{WS}]*[^{WS}{CONTROL}]{{1,50}}[{WS}]*$")
        );
        assert!(text_pattern(Kind::Line, 1, 200).contains("{0,198}"));
        assert!(text_pattern(Kind::Lines, 0, 10_000).starts_with(&format!("^[{WS}]*(?:")));
    }

    #[test]
    fn every_schema_is_a_valid_schema() {
        for value in [
            name(),
            code(),
            email(),
            currency(),
            weight(),
            unit_price(),
            money(),
            quantity(),
            date(),
            header_patch(true),
            header_patch(false),
            line_patch(true),
            create_body("x", product_fields()),
            patch_body("x", carrier_fields()),
        ] {
            to_schema(value);
        }
    }
}
