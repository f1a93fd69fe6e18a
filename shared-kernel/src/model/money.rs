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

    /// How many decimal digits a major unit has in minor units (ISO 4217's
    /// exponent): 2 for most currencies (CNY, USD, EUR), 0 for JPY or KRW, 3
    /// for the dinars of Bahrain, Iraq, Jordan, Kuwait, Libya and Tunisia, and
    /// Oman's rial.
    pub fn minor_digits(&self) -> u32 {
        match self.as_str() {
            "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF"
            | "UGX" | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
            "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
            "CLF" | "UYW" => 4,
            _ => 2,
        }
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

/// In major units with the currency's decimals, for people: `500` fen is
/// `5.00 CNY`, `500` yen `500 JPY`.
impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let digits = self.currency.minor_digits();
        let sign = if self.minor < 0 { "-" } else { "" };
        let minor = self.minor.unsigned_abs();
        match 10u64.checked_pow(digits) {
            Some(scale) if digits > 0 => write!(
                f,
                "{sign}{}.{:0width$} {}",
                minor / scale,
                minor % scale,
                self.currency,
                width = digits as usize
            ),
            _ => write!(f, "{sign}{minor} {}", self.currency),
        }
    }
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
    fn money_shows_major_units_with_the_currency_decimals() {
        let cases = [
            (500, "CNY", "5.00 CNY"),
            (999_900, "CNY", "9999.00 CNY"),
            (5, "CNY", "0.05 CNY"),
            (0, "USD", "0.00 USD"),
            (-5, "CNY", "-0.05 CNY"),
            (-1_234, "EUR", "-12.34 EUR"),
            (500, "JPY", "500 JPY"),
            (-7, "KRW", "-7 KRW"),
            (1_234, "KWD", "1.234 KWD"),
            (12_345, "CLF", "1.2345 CLF"),
            (i64::MIN, "CNY", "-92233720368547758.08 CNY"),
            (i64::MAX, "JPY", "9223372036854775807 JPY"),
        ];
        for (minor, currency, shown) in cases {
            let money = Money::new(minor, Currency::parse(currency).unwrap());
            assert_eq!(money.to_string(), shown);
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
