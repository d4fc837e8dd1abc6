//! One question per history, as a pass over the portfolio asks it: the terms at a point,
//! folded once from the history's views, with no index built.

use std::borrow::Cow;
use std::collections::BTreeMap;

use chrono::NaiveDate;
use pactum_domain::{AmendmentView, ChangeView, TermKey, Version};

use crate::timeline::{check_next, ProjectionError};
use crate::types::{Cut, Entry, Pending, Point, TermsAt};

/// The terms at cut `cut` on day `on` of one agreement whose whole history is given (a short
/// history a store hands a query whole): K is resolved in the history as
/// [`crate::Timeline::resolve`] resolves it, then folded by [`terms_of_history`].
pub fn terms_of_history_at(
    history: Vec<AmendmentView<'_>>,
    cut: Cut,
    on: NaiveDate,
) -> Result<TermsAt, ProjectionError> {
    let version = cut.resolve_in(history.len() as Version, |at| {
        Ok::<_, ProjectionError>(
            history.iter().take_while(|v| v.recorded_at <= at).count() as Version
        )
    })?;
    terms_of_history(history, Point { version, on })
}

/// The terms at `point` of one agreement whose whole history is given, versions 1..=n in
/// order (as [`pactum_domain::LedgerStore::for_each_history`] gives it): the answer of
/// [`crate::fold_terms`] and of [`crate::Timeline::terms_at`], computed by one fold that moves
/// each value into the answer. A caller that asks one history several questions builds a
/// [`crate::Timeline`] instead. A cut beyond the last version is clamped to it.
pub fn terms_of_history<'a>(
    history: impl IntoIterator<Item = AmendmentView<'a>>,
    point: Point,
) -> Result<TermsAt, ProjectionError> {
    let mut versions = Vec::new();
    for (expected, v) in (1..).zip(history) {
        check_next(expected, v.version)?;
        versions.push(v);
    }
    let k = point.version.min(versions.len() as Version);
    let on = point.on;
    versions.truncate(k as usize);

    // Walking down from K decides each revoker's own status before the versions it names (a
    // revocation of a version not earlier than its revoker is ignored, as in the fold).
    let mut revoked = vec![false; versions.len()];
    let mut active = Vec::with_capacity(versions.len());
    for v in versions.into_iter().rev() {
        if revoked[(v.version - 1) as usize] {
            continue;
        }
        for &target in &v.revokes {
            if (1..v.version).contains(&target) {
                revoked[(target - 1) as usize] = true;
            }
        }
        active.push(v);
    }
    active.sort_by_key(|a| (a.effective, a.version));

    let mut in_effect = BTreeMap::new();
    let mut pending = Vec::new();
    for a in active {
        if a.effective > on {
            pending.push(Pending {
                version: a.version,
                effective: a.effective,
                title: a.title.into_owned(),
            });
            continue;
        }
        for change in a.changes {
            match change {
                ChangeView::Set {
                    term,
                    value,
                    text,
                    until,
                } => {
                    let entry = Entry {
                        value,
                        text: text.map(Cow::into_owned),
                        until,
                        set_in: a.version,
                        effective: a.effective,
                    };
                    in_effect.insert(term, entry);
                }
                ChangeView::Remove { term } => {
                    in_effect.remove(&term);
                }
            }
        }
    }
    // The few lapsed terms move out; the rest stay where they are.
    let lapsing: Vec<TermKey> = in_effect
        .iter()
        .filter(|(_, e)| e.lapsed_on(on))
        .map(|(k, _)| k.clone())
        .collect();
    let lapsed = lapsing
        .into_iter()
        .filter_map(|k| in_effect.remove_entry(&k))
        .collect();
    Ok(TermsAt {
        version: k,
        on,
        terms: in_effect,
        lapsed,
        pending,
    })
}
