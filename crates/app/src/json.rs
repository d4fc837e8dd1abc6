//! SPEC §5's JSON shapes, built once here so that every front end prints the same JSON.

use chrono::{DateTime, SecondsFormat, Utc};
use pactum_domain::{AgreementHead, Amendment, Change, Slug, Value};
use pactum_projection::{
    ChangeKind, Diff, Entry, HistoryRow, Op, PlainValue, ReplayStep, TermChange, TermsAt,
};
use serde_json::{json, Map, Value as Json};

use crate::VerifyReport;

/// RFC 3339 with microseconds, as every `recorded_at` is written.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A value in its plain JSON form (one definition, pactum_projection::PlainValue).
pub fn value(v: &Value) -> Json {
    serde_json::to_value(PlainValue(v)).unwrap_or(Json::Null)
}

/// A term entry: `{"type", "value", "text", "until", "set_in", "effective"}`.
pub fn entry(e: &Entry) -> Json {
    serde_json::to_value(e).unwrap_or(Json::Null)
}

fn entries<'a>(map: impl IntoIterator<Item = (&'a pactum_domain::TermKey, &'a Entry)>) -> Json {
    Json::Object(
        map.into_iter()
            .map(|(k, e)| (k.to_string(), entry(e)))
            .collect::<Map<_, _>>(),
    )
}

pub fn terms(agreement: &Slug, t: &TermsAt) -> Json {
    json!({
        "agreement": agreement.as_str(),
        "version": t.version,
        "on": t.on.to_string(),
        "terms": entries(&t.terms),
        "lapsed": entries(&t.lapsed),
        "pending": t.pending.iter().map(|p| json!({
            "version": p.version,
            "effective": p.effective.to_string(),
            "title": p.title,
        })).collect::<Vec<_>>(),
    })
}

fn change_kind(kind: &ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
    }
}

fn term_changes(changes: &[TermChange]) -> Json {
    changes
        .iter()
        .map(|c| {
            json!({
                "term": c.term.as_str(),
                "kind": change_kind(&c.kind),
                "before": c.before.as_ref().map(entry),
                "after": c.after.as_ref().map(entry),
            })
        })
        .collect()
}

pub fn diff(agreement: &Slug, d: &Diff) -> Json {
    json!({
        "agreement": agreement.as_str(),
        "from": {"version": d.from.version, "on": d.from.on.to_string()},
        "to": {"version": d.to.version, "on": d.to.on.to_string()},
        "changes": term_changes(&d.changes),
    })
}

pub fn history(rows: &[HistoryRow]) -> Json {
    rows.iter()
        .map(|r| {
            json!({
                "version": r.version,
                "effective": r.effective.to_string(),
                "recorded_at": timestamp(&r.recorded_at),
                "op": match r.op { Op::Set => "set", Op::Remove => "remove" },
                "entry": r.entry.as_ref().map(entry),
                "revoked_by": r.revoked_by,
            })
        })
        .collect()
}

/// The amendment record, as `log` and `export` print it.
pub fn amendment(a: &Amendment) -> Json {
    let changes: Vec<Json> = a
        .changes
        .iter()
        .map(|c| match c {
            Change::Set {
                term,
                value: v,
                text,
                until,
            } => json!({
                "op": "set",
                "term": term.as_str(),
                "type": v.type_name(),
                "value": value(v),
                "text": text,
                "until": until.map(|d| d.to_string()),
            }),
            Change::Remove { term, text } => json!({
                "op": "remove",
                "term": term.as_str(),
                "text": text,
            }),
        })
        .collect();
    json!({
        "version": a.version,
        "id": a.id.to_string(),
        "agreement": a.agreement.as_str(),
        "effective": a.effective.to_string(),
        "recorded_at": timestamp(&a.recorded_at),
        "title": a.title,
        "summary": a.summary,
        "sources": a.sources,
        "open": a.open.as_ref().map(|o| json!({"name": o.name, "parties": o.parties})),
        "changes": changes,
        "revokes": a.revokes,
        "prev_hash": a.prev_hash.to_hex(),
        "hash": a.hash.to_hex(),
    })
}

pub fn log(amendments: &[Amendment]) -> Json {
    amendments.iter().map(amendment).collect()
}

pub fn replay(steps: &[ReplayStep]) -> Json {
    steps
        .iter()
        .map(|s| {
            json!({
                "version": s.version,
                "effective": s.effective.to_string(),
                "title": s.title,
                "changes": term_changes(&s.changes),
            })
        })
        .collect()
}

pub fn agreements(heads: &[AgreementHead]) -> Json {
    heads
        .iter()
        .map(|h| {
            json!({
                "agreement": h.agreement.as_str(),
                "name": h.name,
                "parties": h.parties,
                "version": h.version,
                "head_hash": h.head_hash.to_hex(),
            })
        })
        .collect()
}

pub fn appended(amendments: &[Amendment]) -> Json {
    amendments
        .iter()
        .map(|a| {
            json!({
                "agreement": a.agreement.as_str(),
                "version": a.version,
                "id": a.id.to_string(),
                "hash": a.hash.to_hex(),
            })
        })
        .collect()
}

/// `verify --format json`: per agreement, what was checked and what was found.
pub fn verify(reports: &[VerifyReport]) -> Json {
    reports
        .iter()
        .map(|r| {
            json!({
                "agreement": r.agreement.as_str(),
                "version": r.version,
                "head_hash": r.head_hash.to_hex(),
                "ok": r.findings.is_empty(),
                "findings": r.findings.iter().map(|f| json!({
                    "version": f.version,
                    "problem": f.problem,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}
