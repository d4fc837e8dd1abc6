//! Tests: hand-written histories for each rule of SPEC §3 (`rules`), the indexed timeline
//! against the reference fold on random histories (`props`), arbitrary event sequences no
//! append would write (`fuzz`), and snapshots of a sample ledger (`sample`).

mod fuzz;
mod props;
mod rules;
mod sample;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use pactum_domain::{
    Amendment, Change, Hash, Opening, Slug, Stamper, StepStamper, TermKey, Value, Version,
};

use crate::Point;

/// Builds a ledger in version order, with deterministic ids and `recorded_at` (by default one
/// hour apart, from 2024-01-01T09:00Z).
pub(crate) struct Ledger {
    pub amendments: Vec<Amendment>,
    stamper: StepStamper,
}

impl Ledger {
    pub fn new() -> Ledger {
        Ledger::recorded_every(Duration::hours(1))
    }

    /// A ledger whose amendments are recorded `step` apart, from 2024-01-01T09:00Z.
    pub fn recorded_every(step: Duration) -> Ledger {
        Ledger {
            amendments: Vec::new(),
            stamper: StepStamper::new(first_recorded(), step),
        }
    }

    /// Appends an amendment; the first one gets an `[open]`.
    pub fn add(
        &mut self,
        effective: NaiveDate,
        title: &str,
        changes: Vec<Change>,
        revokes: Vec<Version>,
    ) -> Version {
        let version = self.amendments.len() as Version + 1;
        let recorded_at = self.stamper.now();
        let open = (version == 1).then(|| Opening {
            name: "Test agreement".into(),
            parties: vec!["A".into(), "B".into()],
        });
        self.amendments.push(Amendment {
            version,
            id: self.stamper.new_id(recorded_at),
            agreement: Slug::parse("acme-initech").expect("valid slug"),
            effective,
            recorded_at,
            title: title.into(),
            summary: None,
            sources: vec![],
            open,
            changes,
            revokes,
            prev_hash: Hash::ZERO,
            hash: Hash::ZERO,
        });
        version
    }

    pub fn timeline(&self) -> crate::Timeline {
        crate::Timeline::new(&self.amendments).expect("contiguous")
    }
}

pub(crate) fn first_recorded() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 1, 1, 9, 0, 0).unwrap()
}

pub(crate) fn d(s: &str) -> NaiveDate {
    s.parse().expect("a date")
}

pub(crate) fn key(s: &str) -> TermKey {
    TermKey::parse(s).expect("a term key")
}

pub(crate) fn at(version: Version, on: &str) -> Point {
    Point { version, on: d(on) }
}

pub(crate) fn set(term: &str, value: Value) -> Change {
    Change::Set {
        term: key(term),
        value,
        text: None,
        until: None,
    }
}

pub(crate) fn set_until(term: &str, value: Value, until: &str) -> Change {
    Change::Set {
        term: key(term),
        value,
        text: None,
        until: Some(d(until)),
    }
}

pub(crate) fn remove(term: &str) -> Change {
    Change::Remove {
        term: key(term),
        text: None,
    }
}
