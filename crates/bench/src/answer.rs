//! One shape for everyone's answer to "what are the terms at (K, on)", so that Pactum's, SQLite's
//! and git's can be compared: term entries as SPEC §5's JSON.

use std::collections::BTreeMap;

use chrono::NaiveDate;
use pactum_domain::Version;
use pactum_projection::TermsAt;
use serde_json::Value as Json;

#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    /// In force: term key → SPEC §5 entry.
    pub terms: BTreeMap<String, Json>,
    /// Set but past their `until`.
    pub lapsed: BTreeMap<String, Json>,
    /// Active amendments effective after the day; `None` where the peer cannot know (git).
    pub pending: Option<Vec<(Version, NaiveDate, String)>>,
}

impl Answer {
    pub fn of_terms(t: &TermsAt) -> Result<Answer, serde_json::Error> {
        let map = |m: &BTreeMap<pactum_domain::TermKey, pactum_projection::Entry>| {
            m.iter()
                .map(|(k, e)| Ok((k.as_str().to_owned(), serde_json::to_value(e)?)))
                .collect::<Result<BTreeMap<_, _>, serde_json::Error>>()
        };
        Ok(Answer {
            terms: map(&t.terms)?,
            lapsed: map(&t.lapsed)?,
            pending: Some(
                t.pending
                    .iter()
                    .map(|p| (p.version, p.effective, p.title.clone()))
                    .collect(),
            ),
        })
    }

    /// Whether a peer's answer says what the reference says, on everything the peer knows.
    pub fn agrees_with(&self, reference: &Answer) -> bool {
        let pending = match (&self.pending, &reference.pending) {
            (Some(a), Some(b)) => a == b,
            _ => true,
        };
        self.terms == reference.terms && self.lapsed == reference.lapsed && pending
    }

    /// A short description of the first difference, for stderr.
    pub fn difference(&self, reference: &Answer) -> String {
        let keys = |a: &BTreeMap<String, Json>, b: &BTreeMap<String, Json>| {
            a.iter()
                .filter(|(k, v)| b.get(*k) != Some(*v))
                .map(|(k, v)| format!("{k}={v}"))
                .chain(
                    b.keys()
                        .filter(|k| !a.contains_key(*k))
                        .map(|k| format!("{k} missing")),
                )
                .take(3)
                .collect::<Vec<_>>()
                .join(", ")
        };
        if self.terms != reference.terms {
            return format!("terms differ: {}", keys(&self.terms, &reference.terms));
        }
        if self.lapsed != reference.lapsed {
            return format!("lapsed differ: {}", keys(&self.lapsed, &reference.lapsed));
        }
        format!(
            "pending differ: {} vs {} entries",
            self.pending.as_ref().map_or(0, Vec::len),
            reference.pending.as_ref().map_or(0, Vec::len)
        )
    }
}
