//! Anchors: a hash a user kept from outside the store (what `append` reported), that
//! `verify --head` looks for in the re-verified chain. The chain alone cannot tell a store
//! rolled back to an older copy, or cut short after a whole amendment, from a shorter history;
//! a hash kept elsewhere can.

use std::fmt;
use std::str::FromStr;

use pactum_domain::{Hash, Version};

/// `HASH` or `N:HASH` (also `vN:HASH`): the hash of an amendment, and optionally its version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Anchor {
    pub version: Option<Version>,
    pub hash: Hash,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{0:?} is not an anchor: write the 64 hex digits of an amendment's hash, optionally after its \
     version (3:HASH), as append printed them"
)]
pub struct AnchorError(pub String);

impl FromStr for Anchor {
    type Err = AnchorError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let fail = || AnchorError(s.to_owned());
        let (version, hex) = match s.split_once(':') {
            Some((v, hex)) => {
                let digits = v.strip_prefix('v').unwrap_or(v);
                if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(fail());
                }
                (Some(digits.parse().map_err(|_| fail())?), hex)
            }
            None => (None, s),
        };
        if hex.len() != 64 {
            return Err(fail());
        }
        let hash = hex.parse().map_err(|_| fail())?;
        Ok(Anchor { version, hash })
    }
}

impl fmt::Display for Anchor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.version {
            Some(v) => write!(f, "v{v}:{}", self.hash),
            None => write!(f, "{}", self.hash),
        }
    }
}

/// What became of an anchor in a verified chain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AnchorCheck {
    pub anchor: Anchor,
    /// Some record's content hashes to the anchor's hash (at its version, when it names one).
    pub found: bool,
}

impl AnchorCheck {
    /// Looks for `anchor` among a chain's recomputed `(version, hash)` pairs.
    pub fn find(anchor: Anchor, hashes: &[(Version, Hash)]) -> AnchorCheck {
        let found = hashes
            .iter()
            .any(|(v, h)| *h == anchor.hash && anchor.version.is_none_or(|want| want == *v));
        AnchorCheck { anchor, found }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEX: &str = "0c98f4beb775a4d9727ed31993c99c0c3facad1439628bf02a6fb38bf88f60db";

    #[test]
    fn anchors_parse_with_or_without_a_version() {
        let bare: Anchor = HEX.parse().unwrap();
        assert_eq!(bare.version, None);
        assert_eq!(bare.to_string(), HEX);
        let at: Anchor = format!("7:{HEX}").parse().unwrap();
        assert_eq!(at.version, Some(7));
        assert_eq!(at.to_string(), format!("v7:{HEX}"));
        assert_eq!(format!("v7:{HEX}").parse::<Anchor>().unwrap(), at);
        assert_eq!(
            HEX.to_uppercase().parse::<Anchor>().unwrap().hash,
            bare.hash
        );
        for bad in [
            "",
            "7:",
            ":abc",
            &HEX[..12],
            &format!("x:{HEX}"),
            &format!("-1:{HEX}"),
            &format!("{HEX}0"),
            &format!("99999999999999999999999:{HEX}"),
            &HEX.replace('0', "g"),
        ] {
            assert!(bad.parse::<Anchor>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn an_anchor_is_found_only_at_its_version() {
        let h = |b: u8| Hash([b; 32]);
        let chain = [(1, h(1)), (2, h(2)), (3, h(3))];
        let find = |version, hash| AnchorCheck::find(Anchor { version, hash }, &chain).found;
        assert!(find(None, h(2)));
        assert!(find(Some(2), h(2)));
        assert!(!find(Some(3), h(2)));
        assert!(!find(None, h(4)));
        assert!(!find(Some(4), h(3)));
    }
}
