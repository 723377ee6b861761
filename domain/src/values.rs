//! Value types that cannot hold invalid values.
//!
//! Every type here has private fields and is built only by `parse`, `TryFrom` or
//! deserialization, which all run the same checks ("parse, don't validate"). Once a
//! command holds a [`Weight`] or a [`Name`], the aggregate never has to check it again.
//!
//! Decimal types ([`Weight`], [`UnitPrice`], [`Money`]) are exact and travel in JSON as
//! strings (`"2.1575"`, `"86300.00"`). They also accept a JSON number, read through its
//! shortest decimal text, so `2.1575` and `"2.1575"` mean the same; strings are exact.

use std::fmt;
use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::de::{self, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// Why a value was refused, in words a client can show next to the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

impl ValueError {
    fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}

// ---------------------------------------------------------------------------
// Decimals
// ---------------------------------------------------------------------------

/// Parses plain decimal text: an optional `-`, digits, and optionally `.` and digits.
///
/// Stricter than `Decimal::from_str`, which also takes `_` separators and rounds text with
/// too many digits: a money figure should be exactly what the client sent or an error.
fn parse_decimal_text(text: &str) -> Result<Decimal, ValueError> {
    let text = text.trim();
    let unsigned = text.strip_prefix('-').unwrap_or(text);
    let (whole, fraction) = match unsigned.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (unsigned, None),
    };
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|b| b.is_ascii_digit());
    if !digits(whole) || !fraction.is_none_or(digits) {
        return Err(ValueError::new(format!(
            "must be a decimal number such as 12.5, not {text:?}"
        )));
    }
    Decimal::from_str_exact(text)
        .map_err(|_| ValueError::new("has too many digits to be held exactly"))
}

/// Reads a decimal from a JSON string (exact) or a JSON number (via its shortest text).
struct DecimalVisitor;

impl Visitor<'_> for DecimalVisitor {
    type Value = Decimal;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a decimal number as a string such as \"12.50\" or a number")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Decimal, E> {
        parse_decimal_text(v).map_err(E::custom)
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Decimal, E> {
        Ok(Decimal::from(v))
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Decimal, E> {
        if !v.is_finite() {
            return Err(E::custom("must be a finite decimal number"));
        }
        // `f64`'s Display is the shortest text that reads back as the same float and never
        // uses an exponent, so 2.1575 arrives as "2.1575", not 2.15749999999999997...
        parse_decimal_text(&v.to_string()).map_err(E::custom)
    }
}

/// Number of decimal places a value really has (trailing zeros do not count).
fn places(value: Decimal) -> u32 {
    value.normalize().scale()
}

/// Serializes as a string and deserializes from a string or number through `from_decimal`.
macro_rules! decimal_serde {
    ($type:ty) => {
        impl Serialize for $type {
            fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let value = deserializer.deserialize_any(DecimalVisitor)?;
                <$type>::try_from(value).map_err(de::Error::custom)
            }
        }

        impl FromStr for $type {
            type Err = ValueError;

            fn from_str(text: &str) -> Result<Self, ValueError> {
                <$type>::parse(text)
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

/// A weight in the order's [`WeightUnit`]: greater than zero, at most 4 decimal places,
/// below one billion.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Weight(Decimal);

impl Weight {
    /// Upper bound (exclusive); far above any load, low enough that sums never overflow.
    const LIMIT: i64 = 1_000_000_000;

    /// Parses decimal text such as `"40000"` or `"10000.5"`.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        Self::try_from(parse_decimal_text(text)?)
    }

    /// The exact decimal value.
    pub fn value(&self) -> Decimal {
        self.0
    }

    /// The sum of two weights, refused if it reaches the upper bound.
    pub fn checked_add(&self, other: &Weight) -> Result<Weight, ValueError> {
        Self::try_from(self.0 + other.0)
    }
}

impl TryFrom<Decimal> for Weight {
    type Error = ValueError;

    fn try_from(value: Decimal) -> Result<Self, ValueError> {
        if value <= Decimal::ZERO {
            return Err(ValueError::new("must be greater than zero"));
        }
        if places(value) > 4 {
            return Err(ValueError::new("must have at most 4 decimal places"));
        }
        if value >= Decimal::from(Self::LIMIT) {
            return Err(ValueError::new("must be less than 1000000000"));
        }
        Ok(Self(value.normalize()))
    }
}

decimal_serde!(Weight);

/// A price per weight unit: zero or more, at most 4 decimal places, below one million.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UnitPrice(Decimal);

impl UnitPrice {
    /// Upper bound (exclusive) on a price per pound or kilogram.
    const LIMIT: i64 = 1_000_000;

    /// Parses decimal text such as `"2.1575"`.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        Self::try_from(parse_decimal_text(text)?)
    }

    /// The exact decimal value.
    pub fn value(&self) -> Decimal {
        self.0
    }
}

impl TryFrom<Decimal> for UnitPrice {
    type Error = ValueError;

    fn try_from(value: Decimal) -> Result<Self, ValueError> {
        if value < Decimal::ZERO {
            return Err(ValueError::new("must not be negative"));
        }
        if places(value) > 4 {
            return Err(ValueError::new("must have at most 4 decimal places"));
        }
        if value >= Decimal::from(Self::LIMIT) {
            return Err(ValueError::new("must be less than 1000000"));
        }
        Ok(Self(value.normalize()))
    }
}

decimal_serde!(UnitPrice);

/// An amount of money in whole cents, always shown with 2 decimal places (`"86300.00"`).
///
/// May be zero or negative as a computed figure (an outstanding balance after a short
/// receipt); a payment additionally requires a positive amount, checked by the aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Money(Decimal);

impl Money {
    /// Bound on the magnitude of a parsed amount, so that sums stay far from overflow.
    const LIMIT: i64 = 1_000_000_000_000_000;

    /// Zero, shown as `"0.00"`.
    pub fn zero() -> Self {
        Self(Decimal::new(0, 2))
    }

    /// Parses decimal text with at most 2 decimal places; a third place is an error,
    /// never rounded away.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        Self::try_from(parse_decimal_text(text)?)
    }

    /// A line's amount: weight × price, rounded half-up (away from zero) to cents.
    pub fn line_amount(weight: &Weight, price: &UnitPrice) -> Self {
        Self::rounded(weight.0 * price.0)
    }

    /// Rounds any decimal half-up to cents.
    fn rounded(value: Decimal) -> Self {
        Self::exact(value.round_dp_with_strategy(2, RoundingStrategy::MidpointAwayFromZero))
    }

    /// Wraps a value that already has at most 2 places, fixing the scale at 2.
    fn exact(value: Decimal) -> Self {
        if value.is_zero() {
            return Self::zero();
        }
        let mut value = value;
        value.rescale(2);
        Self(value)
    }

    /// The exact decimal value (scale 2).
    pub fn value(&self) -> Decimal {
        self.0
    }

    /// Whether the amount is above zero.
    pub fn is_positive(&self) -> bool {
        self.0 > Decimal::ZERO
    }

    /// Whether the amount is exactly zero.
    pub fn is_zero(&self) -> bool {
        self.0.is_zero()
    }

    /// Whether the amount is below zero.
    pub fn is_negative(&self) -> bool {
        self.0 < Decimal::ZERO
    }
}

impl Default for Money {
    fn default() -> Self {
        Self::zero()
    }
}

impl TryFrom<Decimal> for Money {
    type Error = ValueError;

    fn try_from(value: Decimal) -> Result<Self, ValueError> {
        if places(value) > 2 {
            return Err(ValueError::new("must have at most 2 decimal places"));
        }
        if value.abs() >= Decimal::from(Self::LIMIT) {
            return Err(ValueError::new("is too large"));
        }
        Ok(Self::exact(value))
    }
}

decimal_serde!(Money);

impl Add for Money {
    type Output = Money;

    fn add(self, other: Money) -> Money {
        Money::exact(self.0 + other.0)
    }
}

impl Sub for Money {
    type Output = Money;

    fn sub(self, other: Money) -> Money {
        Money::exact(self.0 - other.0)
    }
}

impl Neg for Money {
    type Output = Money;

    fn neg(self) -> Money {
        Money::exact(-self.0)
    }
}

impl AddAssign for Money {
    fn add_assign(&mut self, other: Money) {
        *self = *self + other;
    }
}

impl SubAssign for Money {
    fn sub_assign(&mut self, other: Money) {
        *self = *self - other;
    }
}

impl Sum for Money {
    fn sum<I: Iterator<Item = Money>>(iter: I) -> Money {
        iter.fold(Money::zero(), Add::add)
    }
}

impl<'a> Sum<&'a Money> for Money {
    fn sum<I: Iterator<Item = &'a Money>>(iter: I) -> Money {
        iter.copied().sum()
    }
}

/// A count of cases or pieces: a whole number, zero or more.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Quantity(u32);

impl Quantity {
    /// Any whole number is a valid quantity.
    pub fn new(value: u32) -> Self {
        Self(value)
    }

    /// The count.
    pub fn value(&self) -> u32 {
        self.0
    }

    /// The sum of two quantities, refused on overflow.
    pub fn checked_add(&self, other: &Quantity) -> Result<Quantity, ValueError> {
        self.0
            .checked_add(other.0)
            .map(Quantity)
            .ok_or_else(|| ValueError::new("is too large"))
    }
}

impl fmt::Display for Quantity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

// ---------------------------------------------------------------------------
// Currency
// ---------------------------------------------------------------------------

/// Circulating currencies of the ISO 4217 active list (fund codes, precious metals and the
/// testing/no-currency codes are left out: nobody invoices a load of pork in XAU).
const ISO_4217: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CUP", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD",
    "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ",
    "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS", "INR", "IQD", "IRR", "ISK", "JMD", "JOD",
    "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR",
    "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD", "MMK", "MNT", "MOP", "MRU", "MUR", "MVR",
    "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN",
    "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR",
    "SDG", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB",
    "TJS", "TMT", "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "UYU", "UZS",
    "VED", "VES", "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW",
    "ZWG",
];

/// An ISO 4217 currency code such as `USD` (the default): three uppercase letters that
/// name a circulating currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    /// Parses a code; lowercase is refused rather than guessed at.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let text = text.trim();
        if text.len() != 3 || !text.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(ValueError::new(
                "must be three uppercase letters (an ISO 4217 code such as USD)",
            ));
        }
        if !ISO_4217.contains(&text) {
            return Err(ValueError::new(format!(
                "{text} is not an ISO 4217 currency code"
            )));
        }
        Ok(Self(text.to_owned()))
    }

    /// The code.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Default for Currency {
    fn default() -> Self {
        Self("USD".to_owned())
    }
}

impl TryFrom<String> for Currency {
    type Error = ValueError;

    fn try_from(text: String) -> Result<Self, ValueError> {
        Self::parse(&text)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> String {
        value.0
    }
}

impl FromStr for Currency {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        Self::parse(text)
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// Text
// ---------------------------------------------------------------------------

/// What a text type allows besides its length.
#[derive(Clone, Copy)]
enum TextKind {
    /// One line: no control characters at all.
    Line,
    /// One word: no whitespace and no control characters.
    Word,
    /// Several lines: newlines and tabs allowed, other control characters not.
    Lines,
}

/// Trims and checks text against a length range (in characters) and a kind.
fn check_text(text: &str, min: usize, max: usize, kind: TextKind) -> Result<String, ValueError> {
    let text = text.trim();
    let length = text.chars().count();
    if length < min {
        return Err(ValueError::new("must not be empty"));
    }
    if length > max {
        return Err(ValueError::new(format!("must be at most {max} characters")));
    }
    let refused = |c: char| match kind {
        TextKind::Line => c.is_control(),
        TextKind::Word => c.is_control() || c.is_whitespace(),
        TextKind::Lines => c.is_control() && !matches!(c, '\n' | '\r' | '\t'),
    };
    if let Some(c) = text.chars().find(|&c| refused(c)) {
        return Err(ValueError::new(if c.is_whitespace() {
            "must not contain spaces"
        } else {
            "must not contain control characters"
        }));
    }
    Ok(text.to_owned())
}

/// Declares a trimmed, length-bounded text newtype with parse, serde and Display.
macro_rules! text_type {
    ($(#[$meta:meta])* $name:ident, $min:expr, $max:expr, $kind:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// Trims the text and checks it.
            pub fn parse(text: &str) -> Result<Self, ValueError> {
                check_text(text, $min, $max, $kind).map(Self)
            }

            /// The trimmed text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = ValueError;

            fn try_from(text: String) -> Result<Self, ValueError> {
                Self::parse(&text)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = ValueError;

            fn try_from(text: &str) -> Result<Self, ValueError> {
                Self::parse(text)
            }
        }

        impl FromStr for $name {
            type Err = ValueError;

            fn from_str(text: &str) -> Result<Self, ValueError> {
                Self::parse(text)
            }
        }

        impl From<$name> for String {
            fn from(value: $name) -> String {
                value.0
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_type!(
    /// A person's or company's name: one line, 1 to 200 characters.
    Name, 1, 200, TextKind::Line
);
text_type!(
    /// A short code (supplier, product, plant, carrier): 1 to 50 characters, no spaces.
    Code, 1, 50, TextKind::Word
);
text_type!(
    /// Why something was done (reject, cancel): 1 to 1000 characters.
    Reason, 1, 1000, TextKind::Lines
);
text_type!(
    /// The text of a note on an order: 1 to 10 000 characters.
    NoteText, 1, 10_000, TextKind::Lines
);
text_type!(
    /// A short one-line value: phone, reference numbers, establishment, MC and DOT numbers.
    ShortText, 1, 200, TextKind::Line
);
text_type!(
    /// Free text (address, description, notes): at most 10 000 characters, may be empty.
    LongText, 0, 10_000, TextKind::Lines
);
text_type!(
    /// An order number (`PO-000001`, or the client's own): 1 to 50 characters, no spaces.
    OrderNumber, 1, 50, TextKind::Word
);
text_type!(
    /// An invoice number (`INV-000001`, or the client's own): 1 to 50 characters, no spaces.
    InvoiceNumber, 1, 50, TextKind::Word
);

/// Builds `PREFIX-000042`: six digits zero-padded, wider when the counter needs it.
/// Whitespace in the prefix is dropped and the prefix is cut to 29 characters so that the
/// result is always a valid number (a u64 has at most 20 digits).
fn assigned_number(prefix: &str, n: u64) -> String {
    let prefix: String = prefix
        .chars()
        .filter(|c| !c.is_whitespace() && !c.is_control())
        .take(29)
        .collect();
    format!("{prefix}-{n:06}")
}

impl OrderNumber {
    /// The number the service assigns when the client gives none: `assigned("PO", 1)` is
    /// `PO-000001`.
    pub fn assigned(prefix: &str, n: u64) -> Self {
        Self(assigned_number(prefix, n))
    }
}

impl InvoiceNumber {
    /// The number the service assigns when the client gives none: `assigned("INV", 1)` is
    /// `INV-000001`.
    pub fn assigned(prefix: &str, n: u64) -> Self {
        Self(assigned_number(prefix, n))
    }
}

/// An e-mail address, checked for plain sanity only (one `@`, non-empty parts, a dot in the
/// domain, no spaces, at most 254 characters); deliverability is not the domain's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// Trims the address and checks it.
    pub fn parse(text: &str) -> Result<Self, ValueError> {
        let text = check_text(text, 1, 254, TextKind::Word)
            .map_err(|e| ValueError::new(format!("is not a valid e-mail address: {e}")))?;
        let invalid = || ValueError::new("is not a valid e-mail address");
        let (local, domain) = text.split_once('@').ok_or_else(invalid)?;
        if local.is_empty()
            || domain.contains('@')
            || !domain.contains('.')
            || domain.starts_with('.')
            || domain.ends_with('.')
            || domain.contains("..")
        {
            return Err(invalid());
        }
        Ok(Self(text))
    }

    /// The address.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for Email {
    type Error = ValueError;

    fn try_from(text: String) -> Result<Self, ValueError> {
        Self::parse(&text)
    }
}

impl From<Email> for String {
    fn from(value: Email) -> String {
        value.0
    }
}

impl FromStr for Email {
    type Err = ValueError;

    fn from_str(text: &str) -> Result<Self, ValueError> {
        Self::parse(text)
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------
// Choice lists
// ---------------------------------------------------------------------------

/// Declares a closed choice list with its wire words, `ALL`, `as_str`, Display and FromStr.
macro_rules! choice {
    (
        $(#[$meta:meta])*
        $name:ident { $($(#[$vmeta:meta])* $variant:ident => $word:literal),+ $(,)? }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, ::serde::Serialize, ::serde::Deserialize)]
        pub enum $name {
            $($(#[$vmeta])* #[serde(rename = $word)] $variant),+
        }

        impl $name {
            /// Every choice, in the order the trade lists them.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The word used on the wire and in the database.
            pub fn as_str(&self) -> &'static str {
                match self {
                    $($name::$variant => $word),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::values::ValueError;

            fn from_str(text: &str) -> Result<Self, $crate::values::ValueError> {
                $name::ALL
                    .iter()
                    .copied()
                    .find(|choice| choice.as_str() == text)
                    .ok_or_else(|| {
                        let words: Vec<&str> = $name::ALL.iter().map(|c| c.as_str()).collect();
                        $crate::values::ValueError(format!("must be one of: {}", words.join(", ")))
                    })
            }
        }
    };
}

pub(crate) use choice;

choice!(
    /// The unit every weight and price on an order is in.
    #[derive(Default)]
    WeightUnit {
        /// Pounds (the default).
        #[default]
        Lb => "LB",
        /// Kilograms.
        Kg => "KG",
    }
);

choice!(
    /// The animal a product comes from.
    Protein {
        /// Beef.
        Beef => "beef",
        /// Pork.
        Pork => "pork",
        /// Chicken.
        Chicken => "chicken",
        /// Turkey.
        Turkey => "turkey",
        /// Lamb.
        Lamb => "lamb",
        /// Fish.
        Fish => "fish",
        /// Anything else.
        Other => "other",
    }
);

choice!(
    /// Whether a product ships fresh or frozen.
    FreshOrFrozen {
        /// Fresh (chilled).
        Fresh => "fresh",
        /// Frozen.
        Frozen => "frozen",
    }
);

choice!(
    /// How a product is packed.
    PackageType {
        /// Wax-lined boxes.
        BoxedWaxLined => "boxed_wax_lined",
        /// Boxes packed with CO2.
        BoxedCo2 => "boxed_co2",
        /// Combo bins.
        ComboBins => "combo_bins",
        /// Totes.
        Totes => "totes",
        /// Bags.
        Bags => "bags",
        /// Bulk.
        Bulk => "bulk",
        /// Poly, multiple pieces.
        PolyMultiple => "poly_multiple",
        /// Unwrapped.
        Nude => "nude",
    }
);

choice!(
    /// Whether a product is sold at a fixed (net) weight or at what the scale says (catch).
    NetOrCatch {
        /// Fixed weight.
        Net => "net",
        /// Catch weight: invoiced at the weighed amount.
        Catch => "catch",
    }
);

choice!(
    /// Whether a product is fit for human consumption.
    Edible {
        /// Edible.
        Edible => "edible",
        /// Inedible.
        Inedible => "inedible",
        /// Both edible and inedible.
        EdibleAndInedible => "edible_and_inedible",
    }
);

choice!(
    /// How a supplier or customer is usually paid.
    PaymentTerms {
        /// Wire transfer.
        Wire => "wire",
        /// ACH transfer.
        Ach => "ach",
        /// Cheque.
        Check => "check",
        /// Credit card.
        CreditCard => "credit_card",
    }
);

choice!(
    /// When payment is due.
    CreditTerms {
        /// Wired one day before delivery.
        Wire1DayPrior => "wire_1_day_prior",
        /// Net 7 days.
        Net7 => "net_7",
        /// Net 15 days.
        Net15 => "net_15",
        /// Net 30 days.
        Net30 => "net_30",
        /// Net 45 days.
        Net45 => "net_45",
        /// Net 60 days.
        Net60 => "net_60",
    }
);

impl CreditTerms {
    /// Days after the invoice that payment is due (0 for payment before delivery).
    pub fn days(&self) -> i64 {
        match self {
            Self::Wire1DayPrior => 0,
            Self::Net7 => 7,
            Self::Net15 => 15,
            Self::Net30 => 30,
            Self::Net45 => 45,
            Self::Net60 => 60,
        }
    }
}

choice!(
    /// How a payment was actually made.
    PaymentMethod {
        /// Wire transfer.
        Wire => "wire",
        /// ACH transfer.
        Ach => "ach",
        /// Cheque.
        Check => "check",
        /// Credit card.
        CreditCard => "credit_card",
        /// Cash.
        Cash => "cash",
        /// Anything else.
        Other => "other",
    }
);

choice!(
    /// Who moves the load from the plant.
    #[derive(Default)]
    Logistics {
        /// The supplier delivers (the default).
        #[default]
        SupplierDelivery => "supplier_delivery",
        /// The customer picks up.
        CustomerPickup => "customer_pickup",
        /// We pick up.
        WePickup => "we_pickup",
    }
);

choice!(
    /// How a carrier moves freight.
    CarrierType {
        /// Truck.
        Truck => "truck",
        /// Rail.
        Rail => "rail",
        /// Air.
        Air => "air",
        /// Sea.
        Sea => "sea",
        /// Anything else.
        Other => "other",
    }
);

choice!(
    /// How much of an order's amount due has been paid, derived from payment events.
    PaymentStatus {
        /// Nothing paid yet.
        Unpaid => "unpaid",
        /// Something paid, less than the amount due.
        Partial => "partial",
        /// The amount due paid in full (or more, after a short receipt).
        Paid => "paid",
    }
);

impl PaymentStatus {
    /// The status for what has been paid against what is due: nothing paid is `unpaid`,
    /// less than due is `partial`, otherwise `paid`.
    pub fn of(amount_paid: Money, amount_due: Money) -> Self {
        if !amount_paid.is_positive() {
            Self::Unpaid
        } else if amount_paid < amount_due {
            Self::Partial
        } else {
            Self::Paid
        }
    }
}

// ---------------------------------------------------------------------------
// PATCH helpers
// ---------------------------------------------------------------------------

/// Serde helpers for a nullable PATCH field, `Option<Option<T>>`:
/// absent is `None` (unchanged), `null` is `Some(None)` (clear), a value is `Some(Some(v))`.
///
/// Use as `#[serde(default, with = "crate::values::double_option", skip_serializing_if =
/// "Option::is_none")]`.
pub mod double_option {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Reads a present field: `null` becomes `Some(None)`, a value `Some(Some(v))`.
    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<Option<T>>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        Option::<T>::deserialize(deserializer).map(Some)
    }

    /// Writes `Some(None)` as `null` and `Some(Some(v))` as the value; pair with
    /// `skip_serializing_if = "Option::is_none"` so `None` is left out.
    pub fn serialize<T, S>(value: &Option<Option<T>>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize,
        S: Serializer,
    {
        match value {
            Some(inner) => inner.serialize(serializer),
            None => serializer.serialize_none(),
        }
    }
}

/// Serde helpers for a PATCH field that may be left out but never cleared: absent is
/// `None` (unchanged), a value is `Some(v)`, and `null` is an error rather than being
/// silently read as "unchanged".
///
/// Use as `#[serde(default, with = "crate::values::not_null", skip_serializing_if =
/// "Option::is_none")]`.
pub mod not_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    /// Reads a present field, refusing `null`.
    pub fn deserialize<'de, T, D>(deserializer: D) -> Result<Option<T>, D::Error>
    where
        T: Deserialize<'de>,
        D: Deserializer<'de>,
    {
        T::deserialize(deserializer).map(Some)
    }

    /// Writes the value (pair with `skip_serializing_if = "Option::is_none"`).
    pub fn serialize<T, S>(value: &Option<T>, serializer: S) -> Result<S::Ok, S::Error>
    where
        T: Serialize,
        S: Serializer,
    {
        value.serialize(serializer)
    }
}

/// Declares a struct, its PATCH struct and `patched`, from one field list, so the two
/// cannot drift apart.
///
/// Required fields become `Option<T>` in the patch (absent = unchanged, `null` refused);
/// optional fields become `Option<Option<T>>` (absent = unchanged, `null` = clear). Extra
/// patch-only fields (such as `active`) are declared with their own attributes.
macro_rules! patchable {
    (
        $(#[$meta:meta])*
        $name:ident;
        $(#[$pmeta:meta])*
        $patch:ident;
        required { $($(#[$rmeta:meta])* $rfield:ident: $rtype:ty,)* }
        optional { $($(#[$ometa:meta])* $ofield:ident: $otype:ty,)* }
        extra { $($(#[$emeta:meta])* $efield:ident: $etype:ty,)* }
    ) => {
        #[derive(::serde::Serialize, ::serde::Deserialize, Clone, Debug, PartialEq)]
        $(#[$meta])*
        pub struct $name {
            $($(#[$rmeta])* pub $rfield: $rtype,)*
            $($(#[$ometa])* #[serde(default)] pub $ofield: Option<$otype>,)*
        }

        $(#[$pmeta])*
        #[derive(::serde::Serialize, ::serde::Deserialize, Clone, Debug, Default, PartialEq)]
        #[serde(deny_unknown_fields)]
        pub struct $patch {
            $(
                #[doc = concat!("New `", stringify!($rfield), "`; absent leaves it, `null` is refused.")]
                #[serde(
                    default,
                    with = "crate::values::not_null",
                    skip_serializing_if = "Option::is_none"
                )]
                pub $rfield: Option<$rtype>,
            )*
            $(
                #[doc = concat!("New `", stringify!($ofield), "`; absent leaves it, `null` clears it.")]
                #[serde(
                    default,
                    with = "crate::values::double_option",
                    skip_serializing_if = "Option::is_none"
                )]
                pub $ofield: Option<Option<$otype>>,
            )*
            $($(#[$emeta])* pub $efield: $etype,)*
        }

        impl $name {
            /// A copy with the patch applied (the patch's extra fields are not looked at).
            pub fn patched(&self, patch: &$patch) -> Self {
                Self {
                    $($rfield: crate::values::patch_required(&self.$rfield, &patch.$rfield),)*
                    $($ofield: crate::values::patch_nullable(&self.$ofield, &patch.$ofield),)*
                }
            }
        }
    };
}

pub(crate) use patchable;

/// Applies a nullable PATCH field to a current value.
pub(crate) fn patch_nullable<T: Clone>(
    current: &Option<T>,
    patch: &Option<Option<T>>,
) -> Option<T> {
    match patch {
        Some(new) => new.clone(),
        None => current.clone(),
    }
}

/// Applies a required PATCH field to a current value.
pub(crate) fn patch_required<T: Clone>(current: &T, patch: &Option<T>) -> T {
    patch.as_ref().unwrap_or(current).clone()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

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
    fn payment_status_follows_paid_against_due() {
        let m = |s| Money::parse(s).unwrap();
        assert_eq!(PaymentStatus::of(m("0"), m("10")), PaymentStatus::Unpaid);
        assert_eq!(PaymentStatus::of(m("5"), m("10")), PaymentStatus::Partial);
        assert_eq!(PaymentStatus::of(m("10"), m("10")), PaymentStatus::Paid);
        assert_eq!(PaymentStatus::of(m("12"), m("10")), PaymentStatus::Paid);
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
}
