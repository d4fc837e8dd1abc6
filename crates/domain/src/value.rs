//! Typed term values.

use std::fmt;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

/// Why a value was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValueError {
    #[error(
        "decimal {0:?} is malformed: write digits with an optional sign and fraction, e.g. 12.5"
    )]
    Decimal(String),
    #[error("currency {0:?} is malformed: it must be an ISO 4217 code of three capital letters, e.g. USD")]
    Currency(String),
}

/// A decimal number kept exactly as written (`12.50` stays `12.50`): `-?[0-9]+(\.[0-9]+)?`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Decimal(String);

impl Decimal {
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        let digits = s.strip_prefix('-').unwrap_or(s);
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, Some(f)),
            None => (digits, None),
        };
        let all_digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
        if all_digits(int) && frac.is_none_or(all_digits) {
            Ok(Decimal(s.to_owned()))
        } else {
            Err(ValueError::Decimal(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An ISO 4217 currency code: three capital ASCII letters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Currency(String);

impl Currency {
    pub fn parse(s: &str) -> Result<Self, ValueError> {
        if s.len() == 3 && s.bytes().all(|b| b.is_ascii_uppercase()) {
            Ok(Currency(s.to_owned()))
        } else {
            Err(ValueError::Currency(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! validated_string {
    ($t:ty, $parse:path) => {
        impl TryFrom<String> for $t {
            type Error = ValueError;
            fn try_from(s: String) -> Result<Self, ValueError> {
                $parse(&s)
            }
        }
        impl From<$t> for String {
            fn from(v: $t) -> String {
                v.0
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}
validated_string!(Decimal, Decimal::parse);
validated_string!(Currency, Currency::parse);

/// An amount of money in one currency.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    pub amount: Decimal,
    pub currency: Currency,
}

/// A term's typed value (SPEC §2). Stored as a plain enum: bincode carries it as a variant index.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Value {
    Bool(bool),
    Int(i64),
    Decimal(Decimal),
    Text(String),
    Date(NaiveDate),
    List(Vec<Value>),
    Money(Money),
    Percent(Decimal),
}

impl Value {
    /// The type's name as SPEC §5 writes it.
    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Bool(_) => "bool",
            Value::Int(_) => "int",
            Value::Decimal(_) => "decimal",
            Value::Text(_) => "text",
            Value::Date(_) => "date",
            Value::List(_) => "list",
            Value::Money(_) => "money",
            Value::Percent(_) => "percent",
        }
    }

    /// How deeply lists nest inside this value (a scalar is 0, `[1]` is 1).
    pub fn depth(&self) -> usize {
        match self {
            Value::List(items) => 1 + items.iter().map(Value::depth).max().unwrap_or(0),
            _ => 0,
        }
    }
}

/// The form people read: `true`, `42`, `12.5`, `text`, `2024-01-01`, `[a, b]`, `USD 120000.00`,
/// `20%`.
impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Int(i) => write!(f, "{i}"),
            Value::Decimal(d) => write!(f, "{d}"),
            Value::Text(t) => f.write_str(t),
            Value::Date(d) => write!(f, "{d}"),
            Value::List(items) => {
                f.write_str("[")?;
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        f.write_str(", ")?;
                    }
                    write!(f, "{item}")?;
                }
                f.write_str("]")
            }
            Value::Money(m) => write!(f, "{} {}", m.currency, m.amount),
            Value::Percent(p) => write!(f, "{p}%"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decimals_are_kept_as_written() {
        for ok in ["0", "12.5", "12.50", "-3", "-0.001", "120000.00"] {
            assert_eq!(Decimal::parse(ok).unwrap().as_str(), ok);
        }
        for bad in [
            "", "-", ".5", "5.", "1e3", "+1", "1_000", "nan", "1.2.3", " 1",
        ] {
            assert!(Decimal::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn currencies() {
        assert!(Currency::parse("USD").is_ok());
        for bad in ["usd", "US", "USDX", "U$D", ""] {
            assert!(Currency::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_and_depth() {
        let v = Value::List(vec![
            Value::Int(1),
            Value::List(vec![Value::Text("a".into())]),
            Value::Money(Money {
                amount: Decimal::parse("1.00").unwrap(),
                currency: Currency::parse("EUR").unwrap(),
            }),
            Value::Percent(Decimal::parse("20").unwrap()),
        ]);
        assert_eq!(v.to_string(), "[1, [a], EUR 1.00, 20%]");
        assert_eq!(v.depth(), 2);
        assert_eq!(v.type_name(), "list");
    }
}
