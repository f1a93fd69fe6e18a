//! Money: an integer amount of minor units (fen, cents) and its currency.
//! There is no float anywhere in a price.

use std::fmt;

use serde::{Deserialize, Serialize};

/// An ISO 4217 alphabetic code: three ASCII capital letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency([u8; 3]);

/// The pattern a currency code must match, shared by the validator and the API document.
pub const CURRENCY_PATTERN: &str = "^[A-Z]{3}$";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a currency is an ISO 4217 code of three capital letters, such as CNY")]
pub struct InvalidCurrency;

impl Currency {
    pub const CNY: Currency = Currency(*b"CNY");

    pub fn parse(code: &str) -> Result<Self, InvalidCurrency> {
        match code.as_bytes() {
            &[a, b, c] if [a, b, c].iter().all(u8::is_ascii_uppercase) => Ok(Self([a, b, c])),
            _ => Err(InvalidCurrency),
        }
    }

    pub fn as_str(&self) -> &str {
        // Only ASCII capitals are ever stored, so this cannot fail.
        std::str::from_utf8(&self.0).unwrap_or("XXX")
    }
}

impl TryFrom<String> for Currency {
    type Error = InvalidCurrency;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        Self::parse(&value)
    }
}

impl From<Currency> for String {
    fn from(value: Currency) -> Self {
        value.as_str().to_owned()
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An amount in minor units of a currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Money {
    minor: i64,
    currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("amounts in {0} and {1} cannot be combined")]
    CurrencyMismatch(Currency, Currency),
    #[error("the amount is too large")]
    Overflow,
}

impl Money {
    pub const fn new(minor: i64, currency: Currency) -> Self {
        Self { minor, currency }
    }

    pub const fn minor(&self) -> i64 {
        self.minor
    }

    pub const fn currency(&self) -> Currency {
        self.currency
    }

    /// The sum of two amounts of the same currency.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch(self.currency, other.currency));
        }
        let minor = self
            .minor
            .checked_add(other.minor)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }

    /// This amount times a quantity.
    pub fn checked_mul(self, quantity: i64) -> Result<Money, MoneyError> {
        let minor = self
            .minor
            .checked_mul(quantity)
            .ok_or(MoneyError::Overflow)?;
        Ok(Money::new(minor, self.currency))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_accepts_three_capitals_only() {
        assert_eq!(Currency::parse("CNY"), Ok(Currency::CNY));
        for bad in ["", "cny", "CN", "CNYY", "C1Y", "ÄBC", "CN "] {
            assert_eq!(Currency::parse(bad), Err(InvalidCurrency), "{bad:?}");
        }
    }

    #[test]
    fn currency_round_trips_through_json() {
        let json = serde_json::to_string(&Currency::CNY).unwrap();
        assert_eq!(json, "\"CNY\"");
        let back: Currency = serde_json::from_str(&json).unwrap();
        assert_eq!(back, Currency::CNY);
        let usd: Currency = serde_json::from_str("\"USD\"").unwrap();
        assert_eq!(usd.as_str(), "USD");
        assert_eq!(serde_json::to_string(&usd).unwrap(), "\"USD\"");
        for bad in ["\"usd\"", "\"CN\"", "\"CNYY\"", "840", "null"] {
            assert!(
                serde_json::from_str::<Currency>(bad).is_err(),
                "{bad} is not a currency"
            );
        }
    }

    #[test]
    fn money_adds_within_one_currency() {
        let usd = Currency::parse("USD").unwrap_or(Currency::CNY);
        let a = Money::new(150, Currency::CNY);
        assert_eq!(
            a.checked_add(Money::new(50, Currency::CNY)),
            Ok(Money::new(200, Currency::CNY))
        );
        assert_eq!(
            a.checked_add(Money::new(1, usd)),
            Err(MoneyError::CurrencyMismatch(Currency::CNY, usd))
        );
    }

    #[test]
    fn money_multiplication_detects_overflow() {
        assert_eq!(
            Money::new(9999, Currency::CNY).checked_mul(3),
            Ok(Money::new(29997, Currency::CNY))
        );
        assert_eq!(
            Money::new(i64::MAX, Currency::CNY).checked_mul(2),
            Err(MoneyError::Overflow)
        );
    }
}
