//! An amendment as a pass over the whole store reads it: what the projections use, and no more.

use std::borrow::Cow;

use chrono::{DateTime, NaiveDate, Utc};

use crate::{Amendment, Change, TermKey, Value, Version};

/// One amendment as [`crate::LedgerStore::for_each_history`] gives it: the fields the
/// projections use, checked as in an [`Amendment`] (term keys, values, dates), with the title
/// and texts borrowed from the stored bytes where the store can. What no projection reads (the
/// id, the agreement, summary, sources, the opening, the hashes) is left out, so a pass over
/// millions of records does not copy strings only to drop them; `verify` checks those.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmendmentView<'a> {
    pub version: Version,
    pub effective: NaiveDate,
    pub recorded_at: DateTime<Utc>,
    pub title: Cow<'a, str>,
    pub changes: Vec<ChangeView<'a>>,
    pub revokes: Vec<Version>,
}

/// A [`Change`] as an [`AmendmentView`] holds it: a remove's text, which no projection shows,
/// is left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeView<'a> {
    Set {
        term: TermKey,
        value: Value,
        text: Option<Cow<'a, str>>,
        until: Option<NaiveDate>,
    },
    Remove {
        term: TermKey,
    },
}

impl ChangeView<'_> {
    pub fn term(&self) -> &TermKey {
        match self {
            ChangeView::Set { term, .. } | ChangeView::Remove { term } => term,
        }
    }

    /// The same, holding its own text.
    pub fn into_owned(self) -> ChangeView<'static> {
        match self {
            ChangeView::Set {
                term,
                value,
                text,
                until,
            } => ChangeView::Set {
                term,
                value,
                text: text.map(|t| Cow::Owned(t.into_owned())),
                until,
            },
            ChangeView::Remove { term } => ChangeView::Remove { term },
        }
    }
}

impl AmendmentView<'_> {
    /// The same, holding its own strings: for a caller that keeps it past the pass.
    pub fn into_owned(self) -> AmendmentView<'static> {
        AmendmentView {
            version: self.version,
            effective: self.effective,
            recorded_at: self.recorded_at,
            title: Cow::Owned(self.title.into_owned()),
            changes: self
                .changes
                .into_iter()
                .map(ChangeView::into_owned)
                .collect(),
            revokes: self.revokes,
        }
    }
}

impl From<Amendment> for AmendmentView<'static> {
    /// The view of an amendment taken whole: its title, values and texts moved, not copied.
    fn from(a: Amendment) -> AmendmentView<'static> {
        AmendmentView {
            version: a.version,
            effective: a.effective,
            recorded_at: a.recorded_at,
            title: Cow::Owned(a.title),
            changes: a
                .changes
                .into_iter()
                .map(|c| match c {
                    Change::Set {
                        term,
                        value,
                        text,
                        until,
                    } => ChangeView::Set {
                        term,
                        value,
                        text: text.map(Cow::Owned),
                        until,
                    },
                    Change::Remove { term, .. } => ChangeView::Remove { term },
                })
                .collect(),
            revokes: a.revokes,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Hash, Opening, Slug};
    use chrono::TimeZone;
    use uuid::Uuid;

    #[test]
    fn a_view_keeps_what_projections_read_and_leaves_the_rest() {
        let term = |s: &str| TermKey::parse(s).unwrap();
        let a = Amendment {
            version: 2,
            id: Uuid::nil(),
            agreement: Slug::parse("acme").unwrap(),
            effective: NaiveDate::from_ymd_opt(2024, 5, 1).unwrap(),
            recorded_at: Utc.with_ymd_and_hms(2024, 5, 2, 9, 0, 0).unwrap(),
            title: "Fee raised".into(),
            summary: Some("left out".into()),
            sources: vec!["left out".into()],
            open: Some(Opening {
                name: "Acme".into(),
                parties: vec!["A".into()],
            }),
            changes: vec![
                Change::Set {
                    term: term("fee.base"),
                    value: Value::Int(5),
                    text: Some("five".into()),
                    until: None,
                },
                Change::Remove {
                    term: term("fee.old"),
                    text: Some("not shown".into()),
                },
            ],
            revokes: vec![1],
            prev_hash: Hash::ZERO,
            hash: Hash::ZERO,
        };
        let view = AmendmentView::from(a);
        assert!(matches!(view.title, Cow::Owned(ref t) if t == "Fee raised"));
        assert_eq!(view.changes[0].term(), &term("fee.base"));
        assert_eq!(
            view.changes[1],
            ChangeView::Remove {
                term: term("fee.old")
            }
        );
        // A view that borrows, made to own its strings, is the same view.
        let borrowed = AmendmentView {
            title: Cow::Borrowed("Fee raised"),
            ..view.clone()
        };
        let owned = borrowed.into_owned();
        assert!(matches!(owned.title, Cow::Owned(_)));
        assert_eq!(owned, view);
        assert_eq!(owned.revokes, vec![1]);
    }
}
