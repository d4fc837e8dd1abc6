//! What a query returns. Every type serializes to the JSON shapes of SPEC §5 (the caller adds the
//! `agreement` field), so front ends and snapshots need no view types of their own.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use pactum_domain::{TermKey, Value, Version};
use serde::ser::{SerializeMap, SerializeSeq, SerializeStruct};
use serde::{Serialize, Serializer};

use crate::timeline::ProjectionError;

/// A term as it stands after an amendment set it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub value: Value,
    pub text: Option<String>,
    /// In force through this day, lapsed after it.
    pub until: Option<NaiveDate>,
    /// The version that set it.
    pub set_in: Version,
    /// That version's effective date.
    pub effective: NaiveDate,
}

impl Entry {
    /// Whether two entries say the same thing (value, text, until), wherever they were set: an
    /// amendment that re-states a term unchanged is not a change.
    pub fn same_content(&self, other: &Entry) -> bool {
        self.value == other.value && self.text == other.text && self.until == other.until
    }

    /// Lapsed on `on`: its `until` is before that day (`until == on` is still in force).
    pub fn lapsed_on(&self, on: NaiveDate) -> bool {
        self.until.is_some_and(|until| until < on)
    }
}

/// SPEC §5's term entry: `{"type", "value", "text", "until", "set_in", "effective"}`, with the
/// value in its plain JSON form ([`PlainValue`]) rather than the stored enum's form.
impl Serialize for Entry {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        let mut s = serializer.serialize_struct("Entry", 6)?;
        s.serialize_field("type", self.value.type_name())?;
        s.serialize_field("value", &PlainValue(&self.value))?;
        s.serialize_field("text", &self.text)?;
        s.serialize_field("until", &self.until)?;
        s.serialize_field("set_in", &self.set_in)?;
        s.serialize_field("effective", &self.effective)?;
        s.end()
    }
}

/// A value in SPEC §5's plain form: bool and int as JSON booleans and numbers; decimal, text,
/// date and percent as strings; a list as an array of plain values; money as
/// `{"amount", "currency"}`. The type travels separately (`Entry`'s `type` field).
#[derive(Debug, Clone, Copy)]
pub struct PlainValue<'a>(pub &'a Value);

impl Serialize for PlainValue<'_> {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Value::Bool(b) => serializer.serialize_bool(*b),
            Value::Int(i) => serializer.serialize_i64(*i),
            Value::Decimal(d) | Value::Percent(d) => serializer.serialize_str(d.as_str()),
            Value::Text(t) => serializer.serialize_str(t),
            Value::Date(d) => serializer.collect_str(d),
            Value::List(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(&PlainValue(item))?;
                }
                seq.end()
            }
            Value::Money(m) => {
                let mut map = serializer.serialize_map(Some(2))?;
                map.serialize_entry("amount", m.amount.as_str())?;
                map.serialize_entry("currency", m.currency.as_str())?;
                map.end()
            }
        }
    }
}

/// An active amendment that is known at the cut but not yet effective on the day.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Pending {
    pub version: Version,
    pub effective: NaiveDate,
    pub title: String,
}

/// The terms at a point (SPEC §3).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TermsAt {
    /// The knowledge cut K actually used (clamped to the latest version).
    pub version: Version,
    pub on: NaiveDate,
    /// In force on `on`.
    pub terms: BTreeMap<TermKey, Entry>,
    /// Would be in force, but their `until` is before `on`.
    pub lapsed: BTreeMap<TermKey, Entry>,
    /// Active amendments with `effective > on`, in (effective, version) order.
    pub pending: Vec<Pending>,
}

/// Which knowledge cut K a query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cut {
    Latest,
    /// The ledger as it stood right after this version was appended (0: before anything).
    Version(Version),
    /// The ledger as it stood at this instant: the last version recorded at or before it.
    KnownAt(DateTime<Utc>),
}

impl Cut {
    /// The version K this cut stands for in a history whose latest version is `latest`;
    /// `known_at(t)` gives the last version recorded at or before `t` (0 if none). One rule
    /// for a timeline, an index and a short history's views alike.
    pub(crate) fn resolve_in<E: From<ProjectionError>>(
        self,
        latest: Version,
        known_at: impl FnOnce(DateTime<Utc>) -> Result<Version, E>,
    ) -> Result<Version, E> {
        match self {
            Cut::Latest => Ok(latest),
            Cut::Version(requested) if requested > latest => {
                Err(ProjectionError::VersionOutOfRange { requested, latest }.into())
            }
            Cut::Version(v) => Ok(v),
            Cut::KnownAt(at) => known_at(at),
        }
    }
}

/// A query point: a knowledge cut K (already resolved to a version) and a day.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Point {
    pub version: Version,
    pub on: NaiveDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    Added,
    Removed,
    Changed,
}

/// How one term differs between two points.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TermChange {
    pub term: TermKey,
    pub kind: ChangeKind,
    /// `None` when added.
    pub before: Option<Entry>,
    /// `None` when removed.
    pub after: Option<Entry>,
}

/// What differs between the in-force terms at two points, sorted by term key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Diff {
    pub from: Point,
    pub to: Point,
    pub changes: Vec<TermChange>,
}

impl Diff {
    /// From the terms at both points, each at the cut it was answered at.
    pub(crate) fn between(before: &TermsAt, after: &TermsAt) -> Diff {
        Diff {
            from: Point {
                version: before.version,
                on: before.on,
            },
            to: Point {
                version: after.version,
                on: after.on,
            },
            changes: compare(&before.terms, &after.terms),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    Set,
    Remove,
}

/// One amendment's set or remove of a term, as `history` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryRow {
    pub version: Version,
    pub effective: NaiveDate,
    /// RFC 3339 with microseconds, as SPEC §1 writes `recorded_at`.
    #[serde(serialize_with = "rfc3339_micros")]
    pub recorded_at: DateTime<Utc>,
    pub title: String,
    pub op: Op,
    /// `Some` for a set (`set_in` = this version), `None` for a remove.
    pub entry: Option<Entry>,
    /// The active amendment that revokes this one at the latest version; `None` if it is active.
    pub revoked_by: Option<Version>,
}

/// What one amendment changed, as of its own effective date.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReplayStep {
    pub version: Version,
    pub effective: NaiveDate,
    pub title: String,
    pub changes: Vec<TermChange>,
}

fn rfc3339_micros<S: Serializer>(t: &DateTime<Utc>, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&t.to_rfc3339_opts(SecondsFormat::Micros, true))
}

/// The changes that turn the in-force terms `before` into `after`, sorted by term key.
pub(crate) fn compare(
    before: &BTreeMap<TermKey, Entry>,
    after: &BTreeMap<TermKey, Entry>,
) -> Vec<TermChange> {
    let keys: BTreeSet<&TermKey> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter_map(|term| {
            let (b, a) = (before.get(term), after.get(term));
            let kind = match (b, a) {
                (None, None) => return None,
                (None, Some(_)) => ChangeKind::Added,
                (Some(_), None) => ChangeKind::Removed,
                (Some(b), Some(a)) if b.same_content(a) => return None,
                (Some(_), Some(_)) => ChangeKind::Changed,
            };
            Some(TermChange {
                term: term.clone(),
                kind,
                before: b.cloned(),
                after: a.cloned(),
            })
        })
        .collect()
}
