//! The input of an append ([`Draft`]) and the recorded, immutable event ([`Amendment`]).

use std::collections::BTreeSet;
use std::fmt;
use std::ops::Deref;
use std::str::FromStr;

use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::limits::*;
use crate::{Slug, TermKey, Value};

/// An amendment's position in its agreement's ledger: 1, 2, 3 … assigned at append, contiguous.
pub type Version = u64;

/// A SHA-256 digest: a link of an agreement's hash chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev_hash` of version 1.
    pub const ZERO: Hash = Hash([0; 32]);

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({})", self.to_hex())
    }
}

impl FromStr for Hash {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes)?;
        Ok(Hash(bytes))
    }
}

/// The `[open]` table of an agreement's first amendment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opening {
    pub name: String,
    pub parties: Vec<String>,
}

/// One change an amendment makes to one term.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// Add the term or replace it.
    Set {
        term: TermKey,
        value: Value,
        text: Option<String>,
        until: Option<NaiveDate>,
    },
    /// The term stops being in force.
    Remove { term: TermKey, text: Option<String> },
}

impl Change {
    pub fn term(&self) -> &TermKey {
        match self {
            Change::Set { term, .. } | Change::Remove { term, .. } => term,
        }
    }
}

/// Why a draft breaks a rule that holds whatever the ledger already contains.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DraftError {
    #[error("title is empty")]
    EmptyTitle,
    #[error("it changes nothing: no set, remove, revokes or open")]
    Empty,
    #[error("term {0} appears twice in one amendment")]
    DuplicateTerm(TermKey),
    #[error("revokes names version 0, which never exists (versions start at 1)")]
    RevokesZero,
    #[error("revokes names version 1, the opening; correct its terms with a new set instead")]
    RevokesOpening,
    #[error("revokes names version {0} twice")]
    DuplicateRevoke(Version),
    #[error("open.name is empty")]
    EmptyName,
    #[error("open.parties must name at least one party, none of them empty")]
    NoParties,
    #[error("{what} is {len} bytes long, over the limit of {max} bytes")]
    TooLong {
        what: String,
        len: usize,
        max: usize,
    },
    #[error("{what} has {count} entries, over the limit of {max}")]
    TooMany {
        what: String,
        count: usize,
        max: usize,
    },
    #[error("value of term {term} nests lists {depth} deep, over the limit of {max}")]
    TooDeep {
        term: TermKey,
        depth: usize,
        max: usize,
    },
}

/// The fields of a [`Draft`], as the author wrote them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DraftFields {
    pub agreement: Slug,
    pub title: String,
    pub effective: NaiveDate,
    pub summary: Option<String>,
    pub sources: Vec<String>,
    /// Append only if the agreement's latest version is exactly this (0: it must not exist yet).
    pub expect_version: Option<Version>,
    /// Versions this amendment withdraws as recorded in error.
    pub revokes: Vec<Version>,
    pub open: Option<Opening>,
    pub changes: Vec<Change>,
}

/// An amendment as submitted, before the ledger assigns its version, id, time and hash. A `Draft`
/// that exists obeys every rule that does not depend on the ledger's history (see
/// [`DraftError`]); the rules that do are checked at append, against the history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Draft(DraftFields);

impl Draft {
    pub fn new(fields: DraftFields) -> Result<Draft, DraftError> {
        let f = &fields;
        if f.title.trim().is_empty() {
            return Err(DraftError::EmptyTitle);
        }
        if f.changes.is_empty() && f.revokes.is_empty() && f.open.is_none() {
            return Err(DraftError::Empty);
        }
        check_len("title", &f.title, TITLE_MAX)?;
        if let Some(s) = &f.summary {
            check_len("summary", s, TEXT_MAX)?;
        }
        check_count("sources", f.sources.len(), ENTRIES_MAX)?;
        for s in &f.sources {
            check_len("a source", s, TEXT_MAX)?;
        }
        check_count("revokes", f.revokes.len(), ENTRIES_MAX)?;
        let mut revoked = BTreeSet::new();
        for &v in &f.revokes {
            match v {
                0 => return Err(DraftError::RevokesZero),
                1 => return Err(DraftError::RevokesOpening),
                _ if !revoked.insert(v) => return Err(DraftError::DuplicateRevoke(v)),
                _ => {}
            }
        }
        if let Some(open) = &f.open {
            if open.name.trim().is_empty() {
                return Err(DraftError::EmptyName);
            }
            check_len("open.name", &open.name, TITLE_MAX)?;
            if open.parties.is_empty() || open.parties.iter().any(|p| p.trim().is_empty()) {
                return Err(DraftError::NoParties);
            }
            check_count("open.parties", open.parties.len(), ENTRIES_MAX)?;
            for p in &open.parties {
                check_len("a party", p, TITLE_MAX)?;
            }
        }
        check_count("changes", f.changes.len(), CHANGES_MAX)?;
        let mut terms = BTreeSet::new();
        for change in &f.changes {
            if !terms.insert(change.term()) {
                return Err(DraftError::DuplicateTerm(change.term().clone()));
            }
            match change {
                Change::Set {
                    term, value, text, ..
                } => {
                    if let Some(t) = text {
                        check_len(&format!("text of term {term}"), t, TEXT_MAX)?;
                    }
                    check_value(term, value)?;
                }
                Change::Remove { term, text } => {
                    if let Some(t) = text {
                        check_len(&format!("text of term {term}"), t, TEXT_MAX)?;
                    }
                }
            }
        }
        Ok(Draft(fields))
    }

    pub fn into_fields(self) -> DraftFields {
        self.0
    }
}

impl Deref for Draft {
    type Target = DraftFields;
    fn deref(&self) -> &DraftFields {
        &self.0
    }
}

fn check_len(what: &str, s: &str, max: usize) -> Result<(), DraftError> {
    if s.len() > max {
        return Err(DraftError::TooLong {
            what: what.to_owned(),
            len: s.len(),
            max,
        });
    }
    Ok(())
}

fn check_count(what: &str, count: usize, max: usize) -> Result<(), DraftError> {
    if count > max {
        return Err(DraftError::TooMany {
            what: what.to_owned(),
            count,
            max,
        });
    }
    Ok(())
}

fn check_value(term: &TermKey, value: &Value) -> Result<(), DraftError> {
    let depth = value.depth();
    if depth > VALUE_DEPTH_MAX {
        return Err(DraftError::TooDeep {
            term: term.clone(),
            depth,
            max: VALUE_DEPTH_MAX,
        });
    }
    fn walk(v: &Value, items: &mut usize, longest: &mut usize) {
        match v {
            Value::List(list) => {
                *items += list.len();
                list.iter().for_each(|i| walk(i, items, longest));
            }
            Value::Text(t) => *longest = (*longest).max(t.len()),
            _ => {}
        }
    }
    let (mut items, mut longest) = (0, 0);
    walk(value, &mut items, &mut longest);
    check_count(&format!("value of term {term}"), items, LIST_ITEMS_MAX)?;
    if longest > TEXT_MAX {
        return Err(DraftError::TooLong {
            what: format!("a text in the value of term {term}"),
            len: longest,
            max: TEXT_MAX,
        });
    }
    Ok(())
}

/// A recorded amendment: the immutable event. Fields are public because a store decodes them
/// from disk; their consistency with each other is what `verify` checks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Amendment {
    pub version: Version,
    /// UUID v7, assigned at append.
    pub id: Uuid,
    pub agreement: Slug,
    /// Valid time: the day its changes take effect.
    pub effective: NaiveDate,
    /// Transaction time, assigned at append; microsecond precision, strictly increasing within
    /// an agreement.
    pub recorded_at: DateTime<Utc>,
    pub title: String,
    pub summary: Option<String>,
    pub sources: Vec<String>,
    pub open: Option<Opening>,
    pub changes: Vec<Change>,
    pub revokes: Vec<Version>,
    pub prev_hash: Hash,
    pub hash: Hash,
}

impl Amendment {
    /// The amendment a draft becomes once the ledger has given it a place, an id and a time.
    /// Its `hash` is [`Hash::ZERO`] until the store seals it.
    pub fn unsealed(
        draft: &Draft,
        version: Version,
        id: Uuid,
        recorded_at: DateTime<Utc>,
        prev_hash: Hash,
    ) -> Amendment {
        let d = &draft.0;
        Amendment {
            version,
            id,
            agreement: d.agreement.clone(),
            effective: d.effective,
            recorded_at,
            title: d.title.clone(),
            summary: d.summary.clone(),
            sources: d.sources.clone(),
            open: d.open.clone(),
            changes: d.changes.clone(),
            revokes: d.revokes.clone(),
            prev_hash,
            hash: Hash::ZERO,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields() -> DraftFields {
        DraftFields {
            agreement: Slug::parse("a").unwrap(),
            title: "t".into(),
            effective: NaiveDate::from_ymd_opt(2024, 1, 1).unwrap(),
            summary: None,
            sources: vec![],
            expect_version: None,
            revokes: vec![],
            open: None,
            changes: vec![Change::Remove {
                term: TermKey::parse("x").unwrap(),
                text: None,
            }],
        }
    }

    #[test]
    fn draft_rules() {
        assert!(Draft::new(fields()).is_ok());
        let mut f = fields();
        f.title = " ".into();
        assert_eq!(Draft::new(f), Err(DraftError::EmptyTitle));
        let mut f = fields();
        f.changes.clear();
        assert_eq!(Draft::new(f), Err(DraftError::Empty));
        let mut f = fields();
        f.changes.push(f.changes[0].clone());
        assert!(matches!(Draft::new(f), Err(DraftError::DuplicateTerm(_))));
        let mut f = fields();
        f.revokes = vec![1];
        assert_eq!(Draft::new(f), Err(DraftError::RevokesOpening));
        let mut f = fields();
        f.revokes = vec![3, 3];
        assert_eq!(Draft::new(f), Err(DraftError::DuplicateRevoke(3)));
        let mut f = fields();
        f.open = Some(Opening {
            name: "n".into(),
            parties: vec![],
        });
        assert_eq!(Draft::new(f), Err(DraftError::NoParties));
        let mut f = fields();
        f.title = "x".repeat(TITLE_MAX + 1);
        assert!(matches!(Draft::new(f), Err(DraftError::TooLong { .. })));
        let mut f = fields();
        let mut v = Value::Int(1);
        for _ in 0..=VALUE_DEPTH_MAX {
            v = Value::List(vec![v]);
        }
        f.changes = vec![Change::Set {
            term: TermKey::parse("x").unwrap(),
            value: v,
            text: None,
            until: None,
        }];
        assert!(matches!(Draft::new(f), Err(DraftError::TooDeep { .. })));
    }

    #[test]
    fn hash_hex_round_trip() {
        let h = Hash([0xab; 32]);
        assert_eq!(h.to_hex().parse::<Hash>().unwrap(), h);
        assert!("zz".parse::<Hash>().is_err());
    }
}
