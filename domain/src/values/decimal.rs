//! Decimal text and JSON: the plumbing every decimal value type shares, so that a weight, a
//! price and an amount of money are read by the same strict rules.

use std::fmt;

use rust_decimal::Decimal;
use serde::de::{self, Visitor};

use super::ValueError;

/// Parses plain decimal text: an optional `-`, digits, and optionally `.` and digits.
///
/// Stricter than `Decimal::from_str`, which also takes `_` separators and rounds text with
/// too many digits: a money figure should be exactly what the client sent or an error.
pub(super) fn parse_decimal_text(text: &str) -> Result<Decimal, ValueError> {
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
pub(super) struct DecimalVisitor;

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
pub(super) fn places(value: Decimal) -> u32 {
    value.normalize().scale()
}

/// Serializes as a string and deserializes from a string or number through `TryFrom<Decimal>`,
/// so JSON runs the same checks as `parse`; also gives `FromStr` and `Display`.
/// The JSON Schema of a decimal type as it is serialised: always a string (JSON numbers are
/// accepted on input only), matching `pattern`, so that a consumer parses it as an exact
/// decimal and never through a float.
pub(super) fn string_schema(pattern: &str, description: &str) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "pattern": pattern,
        "description": description,
    })
}

/// Implements `JsonSchema` for a decimal type: its name, the pattern of its serialised text
/// and what it is.
macro_rules! decimal_schema {
    ($type:ident, $pattern:literal, $description:literal) => {
        impl ::schemars::JsonSchema for $type {
            fn schema_name() -> ::std::borrow::Cow<'static, str> {
                stringify!($type).into()
            }

            fn json_schema(_: &mut ::schemars::SchemaGenerator) -> ::schemars::Schema {
                $crate::values::decimal::string_schema($pattern, $description)
            }
        }
    };
}

pub(super) use decimal_schema;

macro_rules! decimal_serde {
    ($type:ty) => {
        impl ::serde::Serialize for $type {
            fn serialize<S: ::serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer.collect_str(self)
            }
        }

        impl<'de> ::serde::Deserialize<'de> for $type {
            fn deserialize<D: ::serde::Deserializer<'de>>(
                deserializer: D,
            ) -> Result<Self, D::Error> {
                let value =
                    deserializer.deserialize_any($crate::values::decimal::DecimalVisitor)?;
                <$type>::try_from(value).map_err(::serde::de::Error::custom)
            }
        }

        impl ::std::str::FromStr for $type {
            type Err = $crate::values::ValueError;

            fn from_str(text: &str) -> Result<Self, $crate::values::ValueError> {
                <$type>::parse(text)
            }
        }

        impl ::std::fmt::Display for $type {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                ::std::fmt::Display::fmt(&self.0, f)
            }
        }
    };
}

pub(super) use decimal_serde;
