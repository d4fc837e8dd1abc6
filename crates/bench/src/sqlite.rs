//! The SQLite peer: the same amendments in a temporal schema a careful engineer would write,
//! with the indexes the bitemporal question needs, answering it in SQL.
//!
//! Schema: `agreements` (integer ids), `amendments` (one row per version, keyed by
//! (agreement, version), indexed by (agreement, effective, version) for the pending list),
//! `revocations` (revoker → target), `term_events` (one row per set or remove, uniquely indexed
//! by (agreement, term, effective, version)) and `agreement_terms` (the terms an agreement ever
//! named). WAL mode with `synchronous = FULL`, so a committed transaction is durable, as an
//! acknowledged Pactum append is.
//!
//! The question "terms at version K on day D": one small query for the revocations known at K
//! (which versions are active is decided in Rust, since a revoked revocation restores what it
//! withdrew), then per term the last active event on or before D (a correlated subquery that
//! walks the index backwards), then the pending amendments.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{Datelike, NaiveDate, SecondsFormat, Utc};
use pactum_domain::{Change, Draft, Slug, Version};
use pactum_projection::PlainValue;
use rusqlite::{params, Connection};
use serde_json::{json, Value as Json};

use crate::answer::Answer;
use crate::gen::{self, AgreementGen, Shape};
use crate::pactum::{IN_ORDER, LONG};
use crate::report::Figures;
use crate::rng::Rng;
use crate::sys::{percentile_us, Progress};
use crate::{BenchError, Config, QueryPoint};

const SCHEMA: &str = "
PRAGMA journal_mode = WAL;
PRAGMA synchronous = FULL;
CREATE TABLE agreements (
    id INTEGER PRIMARY KEY,
    slug TEXT NOT NULL UNIQUE,
    name TEXT NOT NULL,
    parties TEXT NOT NULL
);
CREATE TABLE amendments (
    agreement INTEGER NOT NULL REFERENCES agreements (id),
    version INTEGER NOT NULL,
    effective INTEGER NOT NULL,
    recorded_at TEXT NOT NULL,
    title TEXT NOT NULL,
    summary TEXT,
    sources TEXT NOT NULL,
    PRIMARY KEY (agreement, version)
) WITHOUT ROWID;
CREATE INDEX amendments_by_day ON amendments (agreement, effective, version);
CREATE TABLE revocations (
    agreement INTEGER NOT NULL,
    version INTEGER NOT NULL,
    target INTEGER NOT NULL,
    PRIMARY KEY (agreement, version, target)
) WITHOUT ROWID;
CREATE TABLE term_events (
    id INTEGER PRIMARY KEY,
    agreement INTEGER NOT NULL,
    term TEXT NOT NULL,
    effective INTEGER NOT NULL,
    version INTEGER NOT NULL,
    op TEXT NOT NULL CHECK (op IN ('set', 'remove')),
    type TEXT,
    value TEXT,
    text TEXT,
    until INTEGER
);
CREATE UNIQUE INDEX term_events_at ON term_events (agreement, term, effective, version);
CREATE TABLE agreement_terms (
    agreement INTEGER NOT NULL,
    term TEXT NOT NULL,
    PRIMARY KEY (agreement, term)
) WITHOUT ROWID;
";

const Q_AGREEMENT: &str = "SELECT id FROM agreements WHERE slug = ?1";
const Q_REVOCATIONS: &str =
    "SELECT version, target FROM revocations WHERE agreement = ?1 AND version <= ?2";
const Q_TERMS: &str = "
SELECT e.term, e.op, e.type, e.value, e.text, e.until, e.version, e.effective
FROM agreement_terms t
JOIN term_events e ON e.id = (
    SELECT x.id FROM term_events x
    WHERE x.agreement = t.agreement AND x.term = t.term
      AND x.effective <= ?3 AND x.version <= ?2
      AND x.version NOT IN (SELECT value FROM json_each(?4))
    ORDER BY x.effective DESC, x.version DESC
    LIMIT 1)
WHERE t.agreement = ?1
ORDER BY t.term";
const Q_PENDING: &str = "
SELECT version, effective, title FROM amendments
WHERE agreement = ?1 AND version <= ?2 AND effective > ?3
  AND version NOT IN (SELECT value FROM json_each(?4))
ORDER BY effective, version";

fn day(d: NaiveDate) -> i64 {
    i64::from(d.num_days_from_ce())
}

fn date(n: i64) -> Option<NaiveDate> {
    i32::try_from(n)
        .ok()
        .and_then(NaiveDate::from_num_days_from_ce_opt)
}

/// Builds the peer, times import, cold replay and queries, and compares its answers with
/// Pactum's on the sample. Returns whether every compared answer agreed.
#[allow(clippy::too_many_arguments)]
pub fn measure(
    cfg: &Config,
    path: &Path,
    points: &[QueryPoint],
    all_points: &[QueryPoint],
    sample: &[(usize, &Answer)],
    progress: &Progress,
    f: &mut Figures,
    notes: &mut Vec<String>,
) -> Result<bool, BenchError> {
    let mut peer = Peer::create(path)?;
    let (n, took) = peer.import_portfolio(cfg, progress)?;
    f.sqlite_import_per_s = crate::ratio(n as f64, took.as_secs_f64());
    let (long_n, long_took) = peer.import_one(cfg, LONG, Shape::portfolio(cfg.long), cfg.long)?;
    notes.push(format!(
        "sqlite long agreement import: {:.0} amendments/s",
        long_n as f64 / long_took.as_secs_f64().max(1e-9)
    ));
    peer.import_one(cfg, IN_ORDER, Shape::in_order(cfg.git), cfg.git)?;
    drop(peer);
    for plan in plans(path)? {
        notes.push(format!("sqlite plan: {plan}"));
    }

    progress.phase("sqlite cold replay");
    let (rows, amendments, took) = replay(path)?;
    f.sqlite_replay_per_s = crate::ratio(amendments as f64, took.as_secs_f64());
    notes.push(format!(
        "sqlite replay read {rows} rows for {amendments} amendments in {:.2} s",
        took.as_secs_f64()
    ));

    progress.phase("sqlite queries");
    let conn = Connection::open(path)?;
    let mut times = Vec::with_capacity(points.len());
    for p in points {
        let t = Instant::now();
        let raw = query(&conn, p)?;
        times.push(t.elapsed());
        std::hint::black_box(raw);
    }
    f.sqlite_query_p99_us = percentile_us(&times, 0.99);
    notes.push(format!(
        "sqlite query p50 {:.1} us",
        percentile_us(&times, 0.5).unwrap_or(0.0)
    ));

    let mut agree = true;
    let mut shown = 0;
    for &(i, reference) in sample {
        let Some(p) = all_points.get(i) else {
            continue;
        };
        let got = query(&conn, p)?.answer(p.on)?;
        if !got.agrees_with(reference) {
            agree = false;
            if shown < 3 {
                shown += 1;
                eprintln!(
                    "warning: sqlite differs from pactum on {} K={} on {}: {}",
                    p.slug,
                    p.version,
                    p.on,
                    got.difference(reference)
                );
            }
        }
    }
    Ok(agree)
}

struct Peer {
    conn: Connection,
    ids: HashMap<Slug, i64>,
}

impl Peer {
    fn create(path: &Path) -> Result<Peer, BenchError> {
        let conn = Connection::open(path)?;
        conn.execute_batch(SCHEMA)?;
        Ok(Peer {
            conn,
            ids: HashMap::new(),
        })
    }

    /// The portfolio, in the same batches as Pactum's import, one transaction each. Generating
    /// the drafts is not timed.
    fn import_portfolio(
        &mut self,
        cfg: &Config,
        progress: &Progress,
    ) -> Result<(u64, Duration), BenchError> {
        let mut batch = Vec::with_capacity(cfg.batch + cfg.amendments);
        let mut took = Duration::ZERO;
        for i in 0..cfg.agreements {
            let mut g = AgreementGen::portfolio(cfg.seed, i, cfg.amendments)?;
            for _ in 0..cfg.amendments {
                let d = g.next_draft()?;
                batch.push((d, g.version()));
            }
            if batch.len() >= cfg.batch {
                took += self.insert(&batch)?;
                batch.clear();
                progress.step("sqlite import", i + 1, cfg.agreements);
            }
        }
        took += self.insert(&batch)?;
        Ok(((cfg.agreements * cfg.amendments) as u64, took))
    }

    fn import_one(
        &mut self,
        cfg: &Config,
        (slug, stream): (&str, u64),
        shape: Shape,
        len: usize,
    ) -> Result<(u64, Duration), BenchError> {
        let mut g = AgreementGen::new(gen::slug(slug)?, Rng::stream(cfg.seed, stream), shape);
        let mut took = Duration::ZERO;
        while (g.version() as usize) < len {
            let n = cfg.batch.min(len - g.version() as usize);
            let mut batch = Vec::with_capacity(n);
            for _ in 0..n {
                let d = g.next_draft()?;
                batch.push((d, g.version()));
            }
            took += self.insert(&batch)?;
        }
        Ok((len as u64, took))
    }

    /// One transaction; returns the time it took, commit (and its fsync) included.
    fn insert(&mut self, batch: &[(Draft, Version)]) -> Result<Duration, BenchError> {
        if batch.is_empty() {
            return Ok(Duration::ZERO);
        }
        let t = Instant::now();
        let tx = self.conn.transaction()?;
        {
            let mut agreement = tx.prepare_cached(
                "INSERT INTO agreements (slug, name, parties) VALUES (?1, ?2, ?3)",
            )?;
            let mut amendment = tx.prepare_cached(
                "INSERT INTO amendments (agreement, version, effective, recorded_at, title, \
                 summary, sources) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            let mut revocation = tx.prepare_cached(
                "INSERT INTO revocations (agreement, version, target) VALUES (?1, ?2, ?3)",
            )?;
            let mut event = tx.prepare_cached(
                "INSERT INTO term_events (agreement, term, effective, version, op, type, value, \
                 text, until) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?;
            let mut named = tx.prepare_cached(
                "INSERT OR IGNORE INTO agreement_terms (agreement, term) VALUES (?1, ?2)",
            )?;
            for (d, version) in batch {
                let id = match (&d.open, self.ids.get(&d.agreement)) {
                    (_, Some(&id)) => id,
                    (Some(open), None) => {
                        agreement.execute(params![
                            d.agreement.as_str(),
                            open.name,
                            serde_json::to_string(&open.parties)?
                        ])?;
                        let id = tx.last_insert_rowid();
                        self.ids.insert(d.agreement.clone(), id);
                        id
                    }
                    (None, None) => {
                        return Err(BenchError::Generator(format!(
                            "{} has no opening amendment",
                            d.agreement
                        )))
                    }
                };
                let v = *version as i64;
                let recorded_at = Utc::now().to_rfc3339_opts(SecondsFormat::Micros, true);
                amendment.execute(params![
                    id,
                    v,
                    day(d.effective),
                    recorded_at,
                    d.title,
                    d.summary,
                    serde_json::to_string(&d.sources)?
                ])?;
                for &target in &d.revokes {
                    revocation.execute(params![id, v, target as i64])?;
                }
                for c in &d.changes {
                    match c {
                        Change::Set {
                            term,
                            value,
                            text,
                            until,
                        } => {
                            event.execute(params![
                                id,
                                term.as_str(),
                                day(d.effective),
                                v,
                                "set",
                                value.type_name(),
                                serde_json::to_string(&PlainValue(value))?,
                                text,
                                until.map(day)
                            ])?;
                        }
                        Change::Remove { term, .. } => {
                            event.execute(params![
                                id,
                                term.as_str(),
                                day(d.effective),
                                v,
                                "remove",
                                None::<String>,
                                None::<String>,
                                None::<String>,
                                None::<i64>
                            ])?;
                        }
                    }
                    named.execute(params![id, c.term().as_str()])?;
                }
            }
        }
        tx.commit()?;
        Ok(t.elapsed())
    }
}

/// Reads every row of every table in key order from a fresh connection, each column into an
/// owned value. Returns the rows, the amendments among them, and the time, open included.
fn replay(path: &Path) -> Result<(u64, u64, Duration), BenchError> {
    let t = Instant::now();
    let conn = Connection::open(path)?;
    let read_all = |sql: &str| -> Result<u64, BenchError> {
        let mut st = conn.prepare(sql)?;
        let columns = st.column_count();
        let mut rows = st.query([])?;
        let mut n = 0;
        while let Some(r) = rows.next()? {
            for i in 0..columns {
                std::hint::black_box(r.get::<_, rusqlite::types::Value>(i)?);
            }
            n += 1;
        }
        Ok(n)
    };
    let mut rows = read_all("SELECT id, slug, name, parties FROM agreements ORDER BY id")?;
    let amendments = read_all(
        "SELECT agreement, version, effective, recorded_at, title, summary, sources \
         FROM amendments ORDER BY agreement, version",
    )?;
    rows += amendments;
    rows += read_all(
        "SELECT agreement, version, target FROM revocations ORDER BY agreement, version, target",
    )?;
    rows += read_all(
        "SELECT agreement, term, effective, version, op, type, value, text, until \
         FROM term_events ORDER BY id",
    )?;
    Ok((rows, amendments, t.elapsed()))
}

/// A term row as the query returns it.
#[derive(Debug)]
struct TermRow {
    term: String,
    op: String,
    kind: Option<String>,
    value: Option<String>,
    text: Option<String>,
    until: Option<i64>,
    version: i64,
    effective: i64,
}

/// The query's rows, before they are turned into an [`Answer`].
#[derive(Debug)]
pub struct Raw {
    terms: Vec<TermRow>,
    pending: Vec<(i64, i64, String)>,
}

/// The versions not active at K, given the revocations recorded at or before K: a revoker is
/// active unless an active later version revokes it, so deciding from the top down settles
/// each revoker before the versions it names.
fn inactive(revocations: &[(i64, i64)]) -> Vec<i64> {
    let mut revokers_of: BTreeMap<i64, Vec<i64>> = BTreeMap::new();
    let mut involved = BTreeSet::new();
    for &(r, t) in revocations {
        revokers_of.entry(t).or_default().push(r);
        involved.insert(r);
        involved.insert(t);
    }
    let mut out = BTreeSet::new();
    for &v in involved.iter().rev() {
        let revoked = revokers_of
            .get(&v)
            .is_some_and(|rs| rs.iter().any(|r| !out.contains(r)));
        if revoked {
            out.insert(v);
        }
    }
    out.into_iter().collect()
}

/// The terms at (K, on) of one agreement, as the peer answers them.
pub fn query(conn: &Connection, p: &QueryPoint) -> Result<Raw, BenchError> {
    let id: i64 = conn
        .prepare_cached(Q_AGREEMENT)?
        .query_row([p.slug.as_str()], |r| r.get(0))?;
    let k = p.version as i64;
    let revocations: Vec<(i64, i64)> = conn
        .prepare_cached(Q_REVOCATIONS)?
        .query_map(params![id, k], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<Result<_, _>>()?;
    let skip = serde_json::to_string(&inactive(&revocations))?;
    let on = day(p.on);
    let terms = conn
        .prepare_cached(Q_TERMS)?
        .query_map(params![id, k, on, skip], |r| {
            Ok(TermRow {
                term: r.get(0)?,
                op: r.get(1)?,
                kind: r.get(2)?,
                value: r.get(3)?,
                text: r.get(4)?,
                until: r.get(5)?,
                version: r.get(6)?,
                effective: r.get(7)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    let pending = conn
        .prepare_cached(Q_PENDING)?
        .query_map(params![id, k, on, skip], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })?
        .collect::<Result<_, _>>()?;
    Ok(Raw { terms, pending })
}

impl Raw {
    pub fn answer(self, on: NaiveDate) -> Result<Answer, BenchError> {
        let bad = |what: &str| BenchError::Generator(format!("sqlite returned a bad {what}"));
        let mut terms = BTreeMap::new();
        let mut lapsed = BTreeMap::new();
        for row in self.terms {
            if row.op != "set" {
                continue;
            }
            let until = match row.until {
                Some(n) => Some(date(n).ok_or_else(|| bad("until"))?),
                None => None,
            };
            let value: Json = serde_json::from_str(row.value.as_deref().unwrap_or("null"))?;
            let entry = json!({
                "type": row.kind,
                "value": value,
                "text": row.text,
                "until": until.map(|d| d.to_string()),
                "set_in": row.version,
                "effective": date(row.effective).ok_or_else(|| bad("effective"))?.to_string(),
            });
            if until.is_some_and(|u| u < on) {
                lapsed.insert(row.term, entry);
            } else {
                terms.insert(row.term, entry);
            }
        }
        let pending = self
            .pending
            .into_iter()
            .map(|(v, e, title)| Ok((v as Version, date(e).ok_or_else(|| bad("date"))?, title)))
            .collect::<Result<_, BenchError>>()?;
        Ok(Answer {
            terms,
            lapsed,
            pending: Some(pending),
        })
    }
}

/// The query plans, for the report: each must search an index, never scan a table.
pub fn plans(path: &Path) -> Result<Vec<String>, BenchError> {
    let conn = Connection::open(path)?;
    let mut out = Vec::new();
    for q in [Q_TERMS, Q_PENDING] {
        let mut st = conn.prepare(&format!("EXPLAIN QUERY PLAN {q}"))?;
        let lines: Vec<String> = st
            .query_map(params![1, 1, 1, "[]"], |r| r.get::<_, String>(3))?
            .collect::<Result<_, _>>()?;
        out.push(lines.join(" | "));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revoking_a_revocation_restores_what_it_withdrew() {
        assert_eq!(inactive(&[]), Vec::<i64>::new());
        assert_eq!(inactive(&[(5, 3)]), vec![3]);
        // 7 revokes 5, which revoked 3: 5 is out, so 3 is back.
        assert_eq!(inactive(&[(5, 3), (7, 5)]), vec![5]);
        // 9 revokes 7 as well: 5 is back, so 3 is out again.
        assert_eq!(inactive(&[(5, 3), (7, 5), (9, 7)]), vec![3, 7]);
    }
}
