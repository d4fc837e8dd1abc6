//! Many threads appending to one agreement through one shared [`Ledger`]: the expected-version
//! check must turn every race into a conflict, never into a lost, duplicated or out-of-chain
//! amendment.

use std::collections::BTreeMap;
use std::sync::{Barrier, Mutex};

use chrono::{Duration, NaiveDate, TimeZone, Utc};
use pactum_domain::{
    Change, Draft, DraftFields, Hash, LedgerStore, Opening, Slug, StepStamper, TermKey, Value,
    Version,
};
use pactum_store::SledStore;

use crate::{AppError, Ledger, Submission};

const THREADS: usize = 8;
const ATTEMPTS: usize = 200;
const AGREEMENT: &str = "race";

/// A compile-time check: front ends may share one ledger between threads.
const _: () = {
    const fn shareable<T: Send + Sync>() {}
    shareable::<Ledger<SledStore>>();
};

fn slug() -> Slug {
    Slug::parse(AGREEMENT).unwrap()
}

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

/// A ledger over a temporary store whose agreement is already opened (version 1).
fn opened_ledger() -> Ledger<SledStore> {
    let start = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
    let ledger = Ledger::new(
        SledStore::temporary().unwrap(),
        Box::new(StepStamper::new(start, Duration::milliseconds(1))),
    );
    let draft = Draft::new(DraftFields {
        agreement: slug(),
        title: "Opening".into(),
        effective: day("2024-01-01"),
        summary: None,
        sources: vec![],
        expect_version: Some(0),
        revokes: vec![],
        open: Some(Opening {
            name: "Race".into(),
            parties: vec!["A".into(), "B".into()],
        }),
        changes: vec![],
    })
    .unwrap();
    ledger
        .append(&[Submission {
            file: "open.toml".into(),
            draft,
        }])
        .unwrap();
    ledger
}

/// One attempt's amendment: its title names the thread and attempt, so a winner can be found in
/// the log; each thread sets its own term, so no draft needs the projection to be decided.
fn attempt(thread: usize, n: usize, expect_version: Option<Version>) -> Submission {
    let draft = Draft::new(DraftFields {
        agreement: slug(),
        title: format!("thread {thread} attempt {n}"),
        effective: day("2025-01-01"),
        summary: None,
        sources: vec![],
        expect_version,
        revokes: vec![],
        open: None,
        changes: vec![Change::Set {
            term: TermKey::parse(&format!("writer.t{thread}")).unwrap(),
            value: Value::Int(n as i64),
            text: None,
            until: None,
        }],
    })
    .unwrap();
    Submission {
        file: format!("t{thread}-{n}.toml"),
        draft,
    }
}

/// A won attempt: who, and what the ledger said it recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Win {
    title: String,
    hash: Hash,
}

/// Runs `THREADS × ATTEMPTS` appends at once; returns the wins by version and the number of
/// conflicts. Panics on any outcome other than a recorded amendment or a version conflict.
fn race(ledger: &Ledger<SledStore>, with_expect_version: bool) -> (BTreeMap<Version, Win>, usize) {
    let wins: Mutex<BTreeMap<Version, Win>> = Mutex::new(BTreeMap::new());
    let conflicts = Mutex::new(0usize);
    let start = Barrier::new(THREADS);
    std::thread::scope(|scope| {
        for thread in 0..THREADS {
            let (wins, conflicts, start) = (&wins, &conflicts, &start);
            scope.spawn(move || {
                start.wait();
                for n in 0..ATTEMPTS {
                    let observed = ledger
                        .store()
                        .head(&slug())
                        .unwrap()
                        .expect("the agreement exists")
                        .version;
                    let expect = with_expect_version.then_some(observed);
                    let sub = attempt(thread, n, expect);
                    match ledger.append(std::slice::from_ref(&sub)) {
                        Ok(recorded) => {
                            assert_eq!(recorded.len(), 1);
                            let a = &recorded[0];
                            if with_expect_version {
                                assert_eq!(a.version, observed + 1, "{}", sub.draft.title);
                            }
                            let win = Win {
                                title: a.title.clone(),
                                hash: a.hash,
                            };
                            let earlier = wins.lock().unwrap().insert(a.version, win);
                            assert_eq!(earlier, None, "two winners of version {}", a.version);
                        }
                        Err(AppError::Conflict { .. }) => *conflicts.lock().unwrap() += 1,
                        Err(e) => panic!("{}: neither recorded nor a conflict: {e}", sub.file),
                    }
                }
            });
        }
    });
    (wins.into_inner().unwrap(), conflicts.into_inner().unwrap())
}

/// Every win is in the log at its version with its hash, nothing else is (the opening aside),
/// versions run 1..=n with no gap, and verify finds nothing.
fn check_ledger(ledger: &Ledger<SledStore>, wins: &BTreeMap<Version, Win>, conflicts: usize) {
    assert_eq!(wins.len() + conflicts, THREADS * ATTEMPTS);
    assert!(!wins.is_empty());
    let log = ledger.log(&slug()).unwrap();
    let versions: Vec<Version> = log.iter().map(|a| a.version).collect();
    let contiguous: Vec<Version> = (1..=log.len() as Version).collect();
    assert_eq!(versions, contiguous, "versions have a gap or repeat");
    // The opening plus one amendment per win: none lost, none extra.
    assert_eq!(log.len(), wins.len() + 1);
    for a in &log[1..] {
        let win = wins
            .get(&a.version)
            .unwrap_or_else(|| panic!("v{} {:?} has no winner", a.version, a.title));
        assert_eq!((&win.title, win.hash), (&a.title, a.hash), "v{}", a.version);
    }
    // Each winner's title is in the log once.
    let mut titles: Vec<&str> = log.iter().map(|a| a.title.as_str()).collect();
    titles.sort_unstable();
    titles.dedup();
    assert_eq!(titles.len(), log.len());
    let head = ledger.store().head(&slug()).unwrap().unwrap();
    assert_eq!(head.version, log.len() as Version);
    assert_eq!(head.head_hash, log[log.len() - 1].hash);
    let reports = ledger.verify(Some(&slug())).unwrap();
    assert!(reports[0].findings.is_empty(), "{:?}", reports[0].findings);
}

#[test]
fn one_winner_per_version_with_expected_versions() {
    let ledger = opened_ledger();
    let (wins, conflicts) = race(&ledger, true);
    eprintln!(
        "{} attempts: {} won, {conflicts} conflicts",
        THREADS * ATTEMPTS,
        wins.len()
    );
    check_ledger(&ledger, &wins, conflicts);
    // Version 1 is the opening; every later version was won exactly once, so the wins are
    // exactly versions 2..=n.
    let won: Vec<Version> = wins.keys().copied().collect();
    let expected: Vec<Version> = (2..=wins.len() as Version + 1).collect();
    assert_eq!(won, expected);
}

#[test]
fn plain_appends_racing_land_or_conflict() {
    let ledger = opened_ledger();
    let (wins, conflicts) = race(&ledger, false);
    eprintln!(
        "{} attempts: {} won, {conflicts} conflicts",
        THREADS * ATTEMPTS,
        wins.len()
    );
    check_ledger(&ledger, &wins, conflicts);
}

/// Readers asking for terms while writers append (and create agreements): every answer is that
/// of a whole version, never of an append halfway through its keys. The query index is read
/// without the store's read lock, so this is what keeps it honest.
#[test]
fn readers_racing_appends_see_whole_versions() {
    const WRITERS: usize = 3;
    const EACH: usize = 60;
    let ledger = opened_ledger();
    let on = day("2025-06-01");
    let name = |w: usize| Slug::parse(&format!("grow-{w}")).unwrap();
    let finished = std::sync::atomic::AtomicUsize::new(0);
    let answers = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|scope| {
        for w in 0..WRITERS {
            let (ledger, finished) = (&ledger, &finished);
            scope.spawn(move || {
                for n in 0..EACH {
                    let draft = Draft::new(DraftFields {
                        agreement: name(w),
                        title: format!("grow {w} step {n}"),
                        effective: day("2025-01-01") + Duration::days(n as i64 * 3),
                        summary: None,
                        sources: vec![],
                        expect_version: None,
                        revokes: vec![],
                        open: (n == 0).then(|| Opening {
                            name: format!("Grow {w}"),
                            parties: vec!["A".into()],
                        }),
                        changes: vec![Change::Set {
                            term: TermKey::parse(&format!("step.k{}", n % 5)).unwrap(),
                            value: Value::Int(n as i64),
                            text: None,
                            until: None,
                        }],
                    })
                    .unwrap();
                    let sub = Submission {
                        file: format!("grow-{w}-{n}.toml"),
                        draft,
                    };
                    ledger.append(std::slice::from_ref(&sub)).unwrap();
                }
                finished.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            });
        }
        for _ in 0..2 {
            let (ledger, finished, answers) = (&ledger, &finished, &answers);
            scope.spawn(move || loop {
                // One more pass after the last writer is done, so every agreement is asked.
                let last = finished.load(std::sync::atomic::Ordering::SeqCst) == WRITERS;
                {
                    for w in 0..WRITERS {
                        let slug = name(w);
                        let terms = match ledger.terms(&slug, pactum_projection::Cut::Latest, on) {
                            Ok(terms) => terms,
                            Err(AppError::UnknownAgreement(_)) => continue,
                            Err(e) => panic!("{slug}: {e}"),
                        };
                        let whole = ledger.timeline(&slug).unwrap();
                        let point = pactum_projection::Point {
                            version: terms.version,
                            on,
                        };
                        assert_eq!(terms, whole.terms_at(point), "{slug} v{}", terms.version);
                        answers.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    }
                }
                if last {
                    break;
                }
            });
        }
    });
    assert!(
        answers.into_inner() >= 2 * WRITERS,
        "each reader asks each agreement at least once"
    );
}
