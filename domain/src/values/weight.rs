//! How much is on a line: its weight (exact, in the order's unit) and its count of cases.

use std::fmt;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use super::decimal::{decimal_schema, decimal_serde, parse_decimal_text, places};
use super::ValueError;

/// A weight in the order's [`WeightUnit`](super::WeightUnit): greater than zero, at most 4 decimal places,
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
decimal_schema!(
    Weight,
    r"^(0|[1-9][0-9]{0,8})(\.[0-9]{0,3}[1-9])?$",
    "a weight above zero and below 1000000000, at most 4 decimal places, as a string without trailing zeros (\"39850.5\")"
);

/// A count of cases or pieces: a whole number, zero or more.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    schemars::JsonSchema,
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
