//! Prices and amounts of money: exact decimals, never floats, rounded only where the trade
//! rounds (a line's amount, half-up to cents).

use std::iter::Sum;
use std::ops::{Add, AddAssign, Neg, Sub, SubAssign};

use rust_decimal::{Decimal, RoundingStrategy};

use super::decimal::{decimal_schema, decimal_serde, parse_decimal_text, places};
use super::{ValueError, Weight};

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
decimal_schema!(
    UnitPrice,
    r"^(0|[1-9][0-9]{0,5})(\.[0-9]{0,3}[1-9])?$",
    "a price per weight unit, zero or more and below 1000000, at most 4 decimal places, as a string without trailing zeros (\"2.1575\")"
);

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
        Self::rounded(weight.value() * price.0)
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
decimal_schema!(
    Money,
    r"^-?(0|[1-9][0-9]{0,17})\.[0-9]{2}$",
    "an amount of money, possibly negative, as a string with exactly 2 decimal places (\"86300.00\")"
);

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
