//! The reference projection: SPEC §3 written as a plain fold, with no index and no cleverness.
//! [`crate::Timeline`] must agree with it at every point; the property tests check that it does.

use std::collections::{BTreeMap, BTreeSet};

use pactum_domain::{Amendment, Change, Version};

use crate::types::{Entry, Pending, Point, TermsAt};

/// The terms at `point`, computed from scratch.
///
/// Takes the amendments as given (it does not need them contiguous). A cut beyond the highest
/// version is clamped to it, as [`crate::Timeline::terms_at`] does. A revocation of a version
/// that is not earlier than its revoker is ignored: append never records one, and honouring it
/// would make "active" circular.
pub fn fold_terms(amendments: &[Amendment], point: Point) -> TermsAt {
    let highest = amendments.iter().map(|a| a.version).max().unwrap_or(0);
    let k = point.version.min(highest);
    let on = point.on;

    // Every revoker is later than what it revokes, so walking down from K decides each
    // revoker's own status before the versions it names.
    let mut known: Vec<&Amendment> = amendments.iter().filter(|a| a.version <= k).collect();
    known.sort_by_key(|a| std::cmp::Reverse(a.version));
    let mut revoked: BTreeSet<Version> = BTreeSet::new();
    let mut active: Vec<&Amendment> = Vec::new();
    for a in known {
        if revoked.contains(&a.version) {
            continue;
        }
        revoked.extend(a.revokes.iter().copied().filter(|&v| v < a.version));
        active.push(a);
    }
    active.sort_by_key(|a| (a.effective, a.version));

    let mut in_effect: BTreeMap<_, Entry> = BTreeMap::new();
    let mut pending = Vec::new();
    for a in active {
        if a.effective > on {
            pending.push(Pending {
                version: a.version,
                effective: a.effective,
                title: a.title.clone(),
            });
            continue;
        }
        for change in &a.changes {
            match change {
                Change::Set {
                    term,
                    value,
                    text,
                    until,
                } => {
                    let entry = Entry {
                        value: value.clone(),
                        text: text.clone(),
                        until: *until,
                        set_in: a.version,
                        effective: a.effective,
                    };
                    in_effect.insert(term.clone(), entry);
                }
                Change::Remove { term, .. } => {
                    in_effect.remove(term);
                }
            }
        }
    }
    let (lapsed, terms) = in_effect.into_iter().partition(|(_, e)| e.lapsed_on(on));
    TermsAt {
        version: k,
        on,
        terms,
        lapsed,
        pending,
    }
}
