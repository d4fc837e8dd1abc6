//! `Ledger::terms`, `Ledger::diff` and `Ledger::history` have two paths: the store's query
//! index when it keeps one, the whole history otherwise. They must give the same answer at
//! every point, and the same errors.

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Utc};
use pactum_domain::{
    AppendRequest, Change, Draft, DraftFields, LedgerStore, Opening, Slug, StepStamper, TermKey,
    Value, Version,
};
use pactum_projection::{Cut, Point};
use pactum_store::SledStore;

use crate::{AppError, Ledger, PointSpec, Submission};

fn day(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap()
}

fn ledger() -> Ledger<SledStore> {
    let stamper = StepStamper::new(t0(), Duration::hours(1));
    Ledger::new(SledStore::temporary().unwrap(), Box::new(stamper))
}

fn slug() -> Slug {
    Slug::parse("acme-initech").unwrap()
}

fn key(s: &str) -> TermKey {
    TermKey::parse(s).unwrap()
}

fn set(term: &str, value: Value, until: Option<&str>) -> Change {
    Change::Set {
        term: key(term),
        value,
        text: Some(format!("{term} clause")),
        until: until.map(day),
    }
}

fn remove(term: &str) -> Change {
    Change::Remove {
        term: key(term),
        text: Some("ends".into()),
    }
}

fn draft(title: &str, effective: &str, changes: Vec<Change>, revokes: Vec<Version>) -> Draft {
    Draft::new(DraftFields {
        agreement: slug(),
        title: title.into(),
        effective: day(effective),
        summary: None,
        sources: vec![],
        expect_version: None,
        revokes,
        open: (title == "Opening").then(|| Opening {
            name: "ACME and Initech".into(),
            parties: vec!["ACME".into(), "Initech".into()],
        }),
        changes,
    })
    .unwrap()
}

/// The ledger of tests/semantics.rs: a retroactive amendment (v3), a correction that revokes
/// it (v4), a future amendment (v5), a lapse (v6), and a revocation of the correction (v7).
fn semantics(l: &Ledger<SledStore>) {
    let money = |a: &str| {
        Value::Money(pactum_domain::Money {
            amount: pactum_domain::Decimal::parse(a).unwrap(),
            currency: pactum_domain::Currency::parse("USD").unwrap(),
        })
    };
    let drafts = [
        draft(
            "Opening",
            "2024-01-01",
            vec![
                set("fees.annual", money("120000.00"), None),
                set("support.premium", Value::Bool(true), None),
            ],
            vec![],
        ),
        draft(
            "Renewal",
            "2025-01-01",
            vec![
                set("fees.annual", money("130000.00"), Some("2026-12-31")),
                remove("support.premium"),
            ],
            vec![],
        ),
        draft(
            "Uptime side letter",
            "2024-06-01",
            vec![
                set("sla.uptime", Value::Int(9995), None),
                set("notice.days", Value::Int(90), None),
            ],
            vec![],
        ),
        draft(
            "Side letter recorded in error",
            "2025-03-01",
            vec![set("sla.credits", Value::Int(12), None)],
            vec![3],
        ),
        draft(
            "2027 price rise",
            "2027-01-01",
            vec![set("fees.annual", money("150000.00"), None)],
            vec![],
        ),
        draft(
            "Pilot",
            "2025-06-01",
            vec![set(
                "pilot.region",
                Value::Text("APAC".into()),
                Some("2025-09-30"),
            )],
            vec![],
        ),
        draft(
            "The side letter stands after all",
            "2025-03-01",
            vec![],
            vec![4],
        ),
    ];
    for d in drafts {
        let sub = Submission {
            file: "test".into(),
            draft: d,
        };
        l.append(&[sub]).unwrap();
    }
}

/// `Ledger::terms` (which takes the index, or folds a short history's records whole) against
/// the full read, at every `cut_step`-th
/// version, `Latest` and instants at and just before some recordings, on every `step` days
/// over the span and on the days around some effective dates and `until`s. Returns how many
/// points were compared.
fn both_paths_agree(
    l: &Ledger<SledStore>,
    span: (&str, &str),
    step: i64,
    cut_step: usize,
) -> usize {
    assert!(
        l.store().index(&slug()).unwrap().is_some(),
        "the index path is taken"
    );
    let amendments = l.log(&slug()).unwrap();
    let timeline = l.timeline(&slug()).unwrap();
    let latest = amendments.len() as Version;
    let mut days: Vec<NaiveDate> = Vec::new();
    let (mut d, end) = (day(span.0), day(span.1));
    while d <= end {
        days.push(d);
        d += Duration::days(step);
    }
    for a in amendments.iter().step_by(cut_step) {
        let mut edges = vec![a.effective];
        edges.extend(a.changes.iter().filter_map(|c| match c {
            Change::Set { until, .. } => *until,
            Change::Remove { .. } => None,
        }));
        for e in edges {
            days.extend([e - Duration::days(1), e, e + Duration::days(1)]);
        }
    }
    let mut cuts: Vec<Cut> = (0..=latest).step_by(cut_step).map(Cut::Version).collect();
    cuts.extend([Cut::Version(latest), Cut::Latest]);
    for a in amendments.iter().step_by(cut_step) {
        cuts.push(Cut::KnownAt(a.recorded_at));
        cuts.push(Cut::KnownAt(a.recorded_at - Duration::microseconds(1)));
    }
    let mut compared = 0;
    for &cut in &cuts {
        let version = timeline.resolve(cut).unwrap();
        for &on in &days {
            let indexed = l.terms(&slug(), cut, on).unwrap();
            assert_eq!(
                indexed,
                timeline.terms_at(Point { version, on }),
                "{cut:?} on {on}"
            );
            compared += 1;
        }
    }
    // Diffs: a version (read on `today`) against the latest ledger on a day, and two versions.
    let versions: Vec<Version> = (0..=latest).step_by(cut_step).collect();
    for (&v, &on) in versions.iter().zip(days.iter().step_by(3).cycle()) {
        let today = days[days.len() / 2];
        let from = Point {
            version: v,
            on: today,
        };
        let indexed = l
            .diff(&slug(), PointSpec::Version(v), PointSpec::Day(on), today)
            .unwrap();
        let to = Point {
            version: latest,
            on,
        };
        assert_eq!(indexed, timeline.diff(from, to), "v{v} to {on}");
        let back = latest - v / 2;
        let indexed = l
            .diff(&slug(), PointSpec::Version(back), PointSpec::Version(v), on)
            .unwrap();
        let (from, to) = (Point { version: back, on }, Point { version: v, on });
        assert_eq!(indexed, timeline.diff(from, to), "v{back} to v{v} on {on}");
        compared += 2;
    }
    // Every term's history, and one never named.
    let mut terms: Vec<TermKey> = amendments
        .iter()
        .flat_map(|a| a.changes.iter().map(|c| c.term().clone()))
        .collect();
    terms.sort();
    terms.dedup();
    assert!(!terms.is_empty());
    for term in &terms {
        assert_eq!(
            l.history(&slug(), term).unwrap(),
            timeline.history(term),
            "{term}"
        );
        compared += 1;
    }
    assert!(matches!(
        l.history(&slug(), &key("never.named")),
        Err(AppError::UnknownTerm { .. })
    ));
    compared
}

#[test]
fn the_index_and_the_history_agree_on_the_semantics_ledger() {
    let l = ledger();
    semantics(&l);
    assert!(both_paths_agree(&l, ("2023-12-01", "2027-03-01"), 5, 1) > 2000);
    // The rules the semantics ledger is there for, through the index path.
    let at = |v, on| l.terms(&slug(), Cut::Version(v), day(on)).unwrap();
    assert!(at(3, "2025-06-01").terms.contains_key(&key("sla.uptime")));
    assert!(!at(4, "2025-06-01").terms.contains_key(&key("sla.uptime")));
    assert!(at(7, "2025-06-01").terms.contains_key(&key("sla.uptime")));
    assert!(!at(7, "2025-06-01").terms.contains_key(&key("sla.credits")));
    assert!(at(7, "2025-10-01")
        .lapsed
        .contains_key(&key("pilot.region")));
    let pending: Vec<Version> = at(7, "2025-06-01")
        .pending
        .iter()
        .map(|p| p.version)
        .collect();
    assert_eq!(pending, [5]);
}

/// A deterministic xorshift.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n.max(1)
    }
}

/// A random history of terms "a" to "e" (sets, removes, untils that lapse, retroactive dates,
/// revocations), appended straight to the store: it need not pass the app's decision rules.
struct RandomHistory {
    rng: Rng,
    base: NaiveDate,
    cursor: i64,
    version: Version,
    stamper: StepStamper,
}

impl RandomHistory {
    fn new() -> RandomHistory {
        RandomHistory {
            rng: Rng(0x9e37_79b9_7f4a_7c15),
            base: day("2020-01-01"),
            cursor: 0,
            version: 0,
            stamper: StepStamper::new(t0(), Duration::hours(1)),
        }
    }

    /// Appends `size` more versions in one call.
    fn append(&mut self, l: &Ledger<SledStore>, size: usize) {
        let terms = ["a", "b", "c.d", "e", "f"];
        let rng = &mut self.rng;
        let mut drafts = Vec::new();
        for _ in 0..size {
            self.version += 1;
            let version = self.version;
            let effective = if version > 1 && rng.below(5) == 0 {
                self.base + Duration::days(rng.below(self.cursor.max(1) as u64) as i64)
            } else {
                self.cursor += rng.below(6) as i64;
                self.base + Duration::days(self.cursor)
            };
            let mut changes = Vec::new();
            for (i, t) in terms.iter().enumerate() {
                if version == 1 || rng.below(3) == 0 {
                    changes.push(match rng.below(5) {
                        0 if version > 1 => remove(t),
                        1 => set(
                            t,
                            Value::Int(version as i64),
                            Some(&(effective + Duration::days(30)).to_string()),
                        ),
                        _ => set(t, Value::Int(i as i64 * 1000 + version as i64), None),
                    });
                }
            }
            let revokes = if version > 4 && rng.below(7) == 0 {
                vec![2 + rng.below(version - 3)]
            } else {
                vec![]
            };
            let title = if version == 1 {
                "Opening".to_owned()
            } else {
                format!("v{version}")
            };
            if changes.is_empty() && revokes.is_empty() {
                changes.push(set("e", Value::Bool(true), None));
            }
            drafts.push(draft(&title, &effective.to_string(), changes, revokes));
        }
        let request = AppendRequest {
            agreement: slug(),
            expected_version: self.version - size as Version,
            drafts,
        };
        l.store().append(&[request], &self.stamper).unwrap();
    }

    /// The days to ask about: from before the first version to after the last `until`.
    fn span(&self) -> (String, String) {
        let end = self.base + Duration::days(self.cursor + 40);
        ("2019-12-01".to_owned(), end.to_string())
    }
}

#[test]
fn the_index_and_the_history_agree_on_a_long_ledger_appended_in_calls_of_every_size() {
    let l = ledger();
    let mut random = RandomHistory::new();
    for size in [1usize, 1, 5, 64, 2, 70, 1, 1, 30, 3] {
        random.append(&l, size);
    }
    assert_eq!(random.version, 178);
    let (start, end) = random.span();
    assert!(both_paths_agree(&l, (&start, &end), 20, 4) > 3000);
}

#[test]
fn a_short_history_folded_whole_agrees_with_the_full_read_at_every_length() {
    // Up to the store's limit for reading a history whole (16 versions), `terms` folds the
    // records; past it, it walks the index. Both must answer as the full read does.
    let l = ledger();
    let mut random = RandomHistory::new();
    let mut short = Vec::new();
    for _ in 0..18 {
        random.append(&l, 1);
        short.push(l.store().short_history(&slug(), &mut |_| {}).unwrap());
        let (start, end) = random.span();
        assert!(both_paths_agree(&l, (&start, &end), 7, 1) > 50);
    }
    let folded = short.iter().filter(|s| **s).count();
    assert_eq!(folded, 16, "{short:?}");
    assert!(short[..16].iter().all(|s| *s), "{short:?}");
}

#[test]
fn unknown_agreements_and_versions_fail_alike() {
    let l = ledger();
    semantics(&l);
    let nobody = Slug::parse("nobody").unwrap();
    assert!(matches!(
        l.terms(&nobody, Cut::Latest, day("2025-01-01")),
        Err(AppError::UnknownAgreement(_))
    ));
    let e = l
        .terms(&slug(), Cut::Version(8), day("2025-01-01"))
        .unwrap_err();
    assert!(matches!(e, AppError::Projection { .. }), "{e}");
    assert_eq!(
        e.to_string(),
        "acme-initech: version 8 does not exist: the latest version is 7"
    );
    assert!(matches!(
        l.history(&nobody, &key("sla.uptime")),
        Err(AppError::UnknownAgreement(_))
    ));
    let (on, today) = (PointSpec::Day(day("2025-01-01")), day("2025-01-01"));
    assert!(matches!(
        l.diff(&nobody, PointSpec::Version(1), on, today),
        Err(AppError::UnknownAgreement(_))
    ));
    let e = l
        .diff(&slug(), on, PointSpec::Version(8), today)
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "acme-initech: version 8 does not exist: the latest version is 7"
    );
}

/// A store at `dir` that keeps no query index (as one made before the index existed): made,
/// its `pactum.index` key taken away before anything is appended, and opened again.
fn store_without_index(dir: &std::path::Path) -> SledStore {
    {
        let store = SledStore::open(dir, pactum_store::OpenMode::CreateIfMissing).unwrap();
        let meta = store.raw_tree("__sled__default").unwrap();
        meta.remove("pactum.index").unwrap();
        meta.flush().unwrap();
    }
    let wait = std::time::Duration::from_secs(3);
    SledStore::open_waiting(dir, pactum_store::OpenMode::MustExist, wait).unwrap()
}

#[test]
fn appends_are_decided_alike_from_the_index_and_from_the_history() {
    let dir = tempfile::tempdir().unwrap();
    let stamper = || Box::new(StepStamper::new(t0(), Duration::hours(1)));
    let indexed = Ledger::new(SledStore::temporary().unwrap(), stamper());
    let plain = Ledger::new(store_without_index(&dir.path().join("plain")), stamper());
    assert!(
        indexed.store().index(&slug()).unwrap().is_none(),
        "no agreement yet"
    );
    let terms = ["a", "b", "c.d"];
    let mut rng = Rng(0x2545_f491_4f6c_dd1d);
    let (mut refused, mut accepted) = (0, 0);
    let opening: Vec<Change> = terms.iter().map(|t| set(t, Value::Int(0), None)).collect();
    let open = [Submission {
        file: "open.toml".into(),
        draft: draft("Opening", "2024-01-01", opening, vec![]),
    }];
    indexed.append(&open).unwrap();
    plain.append(&open).unwrap();
    for call in 1..150u64 {
        // 1–4 drafts, each setting, removing (often of a term not in force then) or revoking.
        let size = 1 + rng.below(4) as usize;
        let mut subs = Vec::new();
        for i in 0..size {
            let title = format!("call {call} draft {i}");
            let effective = day("2024-01-01") + Duration::days(rng.below(400) as i64);
            let mut changes = Vec::new();
            for t in terms {
                match rng.below(4) {
                    0 => changes.push(set(t, Value::Int(call as i64), None)),
                    1 => changes.push(remove(t)),
                    _ => {}
                }
            }
            let revokes = match rng.below(6) {
                0 if call > 2 => vec![2 + rng.below(call + 2)],
                _ => vec![],
            };
            if changes.is_empty() && revokes.is_empty() {
                changes.push(set("e", Value::Bool(true), None));
            }
            let d = draft(&title, &effective.to_string(), changes, revokes);
            subs.push(Submission {
                file: format!("c{call}-{i}.toml"),
                draft: d,
            });
        }
        let a = indexed.append(&subs).map_err(|e| e.to_string());
        let b = plain.append(&subs).map_err(|e| e.to_string());
        assert_eq!(a, b, "call {call}");
        match a {
            Ok(_) => accepted += 1,
            Err(_) => refused += 1,
        }
    }
    assert!(
        accepted > 20 && refused > 20,
        "{accepted} accepted, {refused} refused"
    );
    assert!(indexed.store().index(&slug()).unwrap().is_some());
    assert!(plain.store().index(&slug()).unwrap().is_none());
}
