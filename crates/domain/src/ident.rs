//! Validated identifiers. Parse, don't validate: a [`Slug`] or [`TermKey`] that exists is valid.

use std::borrow::Borrow;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::limits::{SLUG_MAX, TERM_KEY_MAX};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdentError {
    #[error(
        "agreement slug {0:?} is malformed: it must match ^[a-z0-9][a-z0-9-]{{0,63}}$ (at most 64 \
         characters)"
    )]
    Slug(String),
    #[error(
        "term key {0:?} is malformed: it must be dot-separated segments of [a-z0-9][a-z0-9_-]*, \
         at most 128 characters"
    )]
    TermKey(String),
}

/// An agreement's name: `^[a-z0-9][a-z0-9-]{0,63}$`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        Self::check(s)?;
        Ok(Slug(s.to_owned()))
    }

    fn check(s: &str) -> Result<(), IdentError> {
        let bytes = s.as_bytes();
        let first_ok = bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
        let rest_ok = bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-');
        if first_ok && rest_ok && bytes.len() <= SLUG_MAX {
            Ok(())
        } else {
            Err(IdentError::Slug(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A term's key: segments `[a-z0-9][a-z0-9_-]*` joined by `.`, at most 128 characters
/// (`ip-license.exclusive`). Shared, not copied, when cloned: a ledger names a few dozen keys
/// over and over, and a replay holds each of them many times.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TermKey(Arc<str>);

impl TermKey {
    pub fn parse(s: &str) -> Result<Self, IdentError> {
        Self::check(s)?;
        Ok(TermKey(Arc::from(s)))
    }

    fn check(s: &str) -> Result<(), IdentError> {
        let segment_ok = |seg: &str| {
            let b = seg.as_bytes();
            b.first()
                .is_some_and(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
                && b.iter().all(|c| {
                    c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'_' || *c == b'-'
                })
        };
        if !s.is_empty() && s.len() <= TERM_KEY_MAX && s.split('.').all(segment_ok) {
            Ok(())
        } else {
            Err(IdentError::TermKey(s.to_owned()))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! string_newtype_impls {
    ($t:ty) => {
        impl FromStr for $t {
            type Err = IdentError;
            fn from_str(s: &str) -> Result<Self, IdentError> {
                Self::parse(s)
            }
        }
        impl TryFrom<String> for $t {
            type Error = IdentError;
            fn try_from(s: String) -> Result<Self, IdentError> {
                Self::check(&s)?;
                Ok(Self(s.into()))
            }
        }
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
        impl AsRef<str> for $t {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}
string_newtype_impls!(Slug);
string_newtype_impls!(TermKey);

impl From<Slug> for String {
    fn from(v: Slug) -> String {
        v.0
    }
}

impl From<TermKey> for String {
    fn from(v: TermKey) -> String {
        v.0.as_ref().to_owned()
    }
}

/// A term key is looked up by its text: it orders, hashes and compares as its `str` does.
impl Borrow<str> for TermKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs() {
        for ok in ["a", "microsoft-openai", "0", "a-", &"a".repeat(64)] {
            assert!(Slug::parse(ok).is_ok(), "{ok}");
        }
        for bad in ["", "-a", "A", "a_b", "a.b", "a b", &"a".repeat(65), "é"] {
            assert!(Slug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_term_key_is_found_by_its_text() {
        let mut by_key = std::collections::BTreeMap::new();
        by_key.insert(TermKey::parse("fee.base").unwrap(), 1);
        assert_eq!(by_key.get("fee.base"), Some(&1));
        let key = TermKey::parse("fee").unwrap();
        assert_eq!(String::from(key.clone()), "fee");
        assert_eq!(TermKey::try_from("fee".to_string()).unwrap(), key);
    }

    #[test]
    fn term_keys() {
        for ok in ["a", "ip-license.exclusive", "a_b.c-d.0", &"a".repeat(128)] {
            assert!(TermKey::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            ".",
            "a.",
            ".a",
            "a..b",
            "A",
            "_a",
            "a._b",
            "a b",
            &"a".repeat(129),
        ] {
            assert!(TermKey::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn conversion_from_string_validates() {
        assert!(Slug::try_from("Bad".to_string()).is_err());
        assert_eq!(
            TermKey::try_from("a.b".to_string()).unwrap().as_str(),
            "a.b"
        );
    }
}
