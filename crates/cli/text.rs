//! Text output for people: aligned tables, a heading line, clause text dimmed under its term.

use pactum_app::{json::timestamp, VerifyReport};
use pactum_domain::{AgreementHead, Amendment, Change, Slug, TermKey};
use pactum_projection::{ChangeKind, Diff, Entry, HistoryRow, Op, ReplayStep, TermChange, TermsAt};

use crate::output::{Style, Table};

fn short(hash: &pactum_domain::Hash) -> String {
    hash.to_hex()[..12].to_owned()
}

fn opt_date(d: Option<chrono::NaiveDate>) -> String {
    d.map(|d| d.to_string()).unwrap_or_default()
}

pub fn appended(style: &Style, recorded: &[Amendment]) -> String {
    let mut t = Table::new(&["AGREEMENT", "VERSION", "ID", "HASH"]);
    for a in recorded {
        t.row(vec![
            a.agreement.to_string(),
            format!("v{}", a.version),
            a.id.to_string(),
            a.hash.to_hex(),
        ]);
    }
    format!(
        "appended {} amendment(s)\n{}",
        recorded.len(),
        t.render(style, "")
    )
}

pub fn agreements(style: &Style, heads: &[AgreementHead]) -> String {
    if heads.is_empty() {
        return "no agreements yet (pactum append FILE... creates one)\n".into();
    }
    let mut t = Table::new(&["AGREEMENT", "VERSION", "HEAD", "NAME", "PARTIES"]);
    for h in heads {
        t.row(vec![
            h.agreement.to_string(),
            format!("v{}", h.version),
            short(&h.head_hash),
            h.name.clone(),
            h.parties.join(", "),
        ]);
    }
    t.render(style, "")
}

pub fn log(style: &Style, log: &[Amendment]) -> String {
    let mut out = String::new();
    for a in log {
        out.push_str(&style.bold(&format!("v{}  {}  {}", a.version, a.effective, a.title)));
        out.push('\n');
        out.push_str(&style.dim(&format!(
            "    recorded {}  id {}  hash {}",
            timestamp(&a.recorded_at),
            a.id,
            short(&a.hash)
        )));
        out.push('\n');
        if let Some(open) = &a.open {
            out.push_str(&format!(
                "    opens {} ({})\n",
                open.name,
                open.parties.join(", ")
            ));
        }
        if let Some(summary) = &a.summary {
            out.push_str(&format!("    {summary}\n"));
        }
        for c in &a.changes {
            match c {
                Change::Set {
                    term, value, until, ..
                } => {
                    let until = until.map(|d| format!(" (until {d})")).unwrap_or_default();
                    out.push_str(&format!(
                        "    {} {term} = {value}{until}\n",
                        style.green("set")
                    ));
                }
                Change::Remove { term, text } => {
                    let why = text.as_ref().map(|t| format!(": {t}")).unwrap_or_default();
                    out.push_str(&format!("    {} {term}{why}\n", style.red("remove")));
                }
            }
        }
        for v in &a.revokes {
            out.push_str(&format!("    {} v{v}\n", style.yellow("revokes")));
        }
        for s in &a.sources {
            out.push_str(&style.dim(&format!("    source: {s}")));
            out.push('\n');
        }
        out.push('\n');
    }
    out
}

fn entry_table(style: &Style, entries: &std::collections::BTreeMap<TermKey, Entry>) -> String {
    let mut t = Table::new(&["TERM", "VALUE", "UNTIL", "SET IN", "EFFECTIVE"]);
    for (key, e) in entries {
        t.row(vec![
            key.to_string(),
            e.value.to_string(),
            opt_date(e.until),
            format!("v{}", e.set_in),
            e.effective.to_string(),
        ]);
        if let Some(text) = &e.text {
            t.note(text.clone());
        }
    }
    t.render(style, "  ")
}

pub fn terms(style: &Style, agreement: &Slug, t: &TermsAt) -> String {
    let mut out = style.bold(&format!(
        "{agreement} at version {}, on {}",
        t.version, t.on
    ));
    out.push_str("\n\n");
    if t.terms.is_empty() {
        out.push_str("  no terms in force\n");
    } else {
        out.push_str(&entry_table(style, &t.terms));
    }
    if !t.lapsed.is_empty() {
        out.push_str(&format!(
            "\n{}\n",
            style.bold("Lapsed (until before the day):")
        ));
        out.push_str(&entry_table(style, &t.lapsed));
    }
    if !t.pending.is_empty() {
        out.push_str(&format!(
            "\n{}\n",
            style.bold("Pending (effective after the day):")
        ));
        for p in &t.pending {
            out.push_str(&format!("  v{}  {}  {}\n", p.version, p.effective, p.title));
        }
    }
    out
}

/// One line per changed term: `+` added, `-` removed, `~` changed (before → after).
fn change_lines(style: &Style, changes: &[TermChange], indent: &str) -> String {
    let mut t = Table::new(&["", "TERM", "CHANGE"]);
    for c in changes {
        let show = |e: &Option<Entry>| {
            e.as_ref()
                .map(|e| {
                    let until = e.until.map(|d| format!(" (until {d})")).unwrap_or_default();
                    format!("{}{until}", e.value)
                })
                .unwrap_or_default()
        };
        let (mark, what) = match c.kind {
            ChangeKind::Added => ("+", show(&c.after)),
            ChangeKind::Removed => ("-", format!("was {}", show(&c.before))),
            ChangeKind::Changed => {
                let (before, after) = (show(&c.before), show(&c.after));
                if before == after {
                    ("~", format!("{after} (clause text changed)"))
                } else {
                    ("~", format!("{before} → {after}"))
                }
            }
        };
        t.row(vec![mark.to_owned(), c.term.to_string(), what]);
    }
    // The header of a change list adds nothing: drop it.
    let rendered = t.render(style, indent);
    let body = rendered.split_once('\n').map(|x| x.1).unwrap_or("");
    body.lines()
        .map(|l| {
            let trimmed = l.trim_start();
            let painted = match trimmed.chars().next() {
                Some('+') => style.green(l),
                Some('-') => style.red(l),
                Some('~') => style.yellow(l),
                _ => l.to_owned(),
            };
            painted + "\n"
        })
        .collect()
}

pub fn diff(style: &Style, agreement: &Slug, d: &Diff) -> String {
    let mut out = style.bold(&format!(
        "{agreement}: version {} on {} → version {} on {}",
        d.from.version, d.from.on, d.to.version, d.to.on
    ));
    out.push('\n');
    if d.changes.is_empty() {
        out.push_str("  no differences\n");
    } else {
        out.push_str(&change_lines(style, &d.changes, "  "));
    }
    out
}

pub fn history(style: &Style, agreement: &Slug, term: &TermKey, rows: &[HistoryRow]) -> String {
    let mut out = style.bold(&format!("{term} in {agreement}"));
    out.push_str("\n\n");
    let mut t = Table::new(&[
        "VERSION",
        "EFFECTIVE",
        "OP",
        "VALUE",
        "UNTIL",
        "RECORDED",
        "TITLE",
    ]);
    for r in rows {
        let (op, value, until) = match (&r.op, &r.entry) {
            (Op::Set, Some(e)) => ("set", e.value.to_string(), opt_date(e.until)),
            (Op::Set, None) => ("set", String::new(), String::new()),
            (Op::Remove, _) => ("remove", String::new(), String::new()),
        };
        let version = match r.revoked_by {
            Some(by) => format!("v{} (revoked by v{by})", r.version),
            None => format!("v{}", r.version),
        };
        t.row(vec![
            version,
            r.effective.to_string(),
            op.to_owned(),
            value,
            until,
            timestamp(&r.recorded_at),
            r.title.clone(),
        ]);
        if let Some(text) = r.entry.as_ref().and_then(|e| e.text.as_ref()) {
            t.note(text.clone());
        }
    }
    out.push_str(&t.render(style, "  "));
    out
}

pub fn replay(style: &Style, agreement: &Slug, steps: &[ReplayStep]) -> String {
    let mut out = style.bold(&format!("{agreement}: replay in version order"));
    out.push_str("\n\n");
    for s in steps {
        out.push_str(&style.bold(&format!("v{}  {}  {}", s.version, s.effective, s.title)));
        out.push('\n');
        if s.changes.is_empty() {
            out.push_str("    no change to the terms in force on that day\n");
        } else {
            out.push_str(&change_lines(style, &s.changes, "    "));
        }
        out.push('\n');
    }
    out
}

/// One line per agreement (its findings, if any, indented below it): `ok`, `DAMAGED` (the chain
/// is not intact) or `MISMATCH` (the chain is intact but does not hold the anchor).
pub fn verify(style: &Style, reports: &[VerifyReport]) -> String {
    if reports.is_empty() {
        return "no agreements to verify\n".into();
    }
    let mut out = String::new();
    for r in reports {
        let anchor = match &r.anchor {
            None => String::new(),
            Some(a) if a.found => format!("; holds anchor {}", short_anchor(&a.anchor)),
            Some(a) => format!(
                "; does NOT hold anchor {}: rolled back, cut short, or not this store",
                short_anchor(&a.anchor)
            ),
        };
        if !r.findings.is_empty() {
            out.push_str(&format!(
                "{} {}: {} problem(s) in {} record(s) checked{anchor}\n",
                style.red("DAMAGED"),
                r.agreement,
                r.findings.len(),
                r.records_checked,
            ));
            for f in &r.findings {
                let at = f.version.map(|v| format!("v{v}: ")).unwrap_or_default();
                out.push_str(&format!("  {at}{}\n", f.problem));
            }
        } else {
            let status = if r.ok() {
                style.green("ok")
            } else {
                style.red("MISMATCH")
            };
            out.push_str(&format!(
                "{status} {}: {} version(s), hash chain intact, head {}{anchor}\n",
                r.agreement,
                r.version,
                r.head_hash.to_hex()
            ));
        }
    }
    out
}

fn short_anchor(anchor: &pactum_app::Anchor) -> String {
    match anchor.version {
        Some(v) => format!("v{v}:{}", short(&anchor.hash)),
        None => short(&anchor.hash),
    }
}

pub fn restored(
    style: &Style,
    store: &std::path::Path,
    amendments: usize,
    heads: &[AgreementHead],
) -> String {
    let mut t = Table::new(&["AGREEMENT", "VERSION", "HEAD"]);
    for h in heads {
        t.row(vec![
            h.agreement.to_string(),
            format!("v{}", h.version),
            h.head_hash.to_hex(),
        ]);
    }
    format!(
        "restored {amendments} amendment(s) of {} agreement(s) into {}\n{}",
        heads.len(),
        store.display(),
        t.render(style, "")
    )
}
