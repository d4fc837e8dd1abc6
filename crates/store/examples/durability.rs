//! What it costs to make an append durable: appends N amendments, one per `append` call as the
//! CLI does, to a fresh store three ways (and from 8 threads at once the way that ships), and
//! prints appends per second for each.
//!
//! ```text
//! cargo run --release -p pactum-store --example durability -- [N] [DIR]
//! ```
//!
//! N defaults to 1000; DIR (default: the system's temporary directory) should be on the disk
//! whose cost you want to know: a tmpfs makes fsync free. Each way runs in three rounds,
//! interleaved with the others so background load hits all of them alike; the median round is
//! reported. Only `fsync` is what pactum does; the others are the knob
//! `SledStore::set_durability`, which exists for this measurement.

use std::path::Path;
use std::time::{Duration, Instant};

use chrono::{NaiveDate, Utc};
use pactum_domain::{
    AppendRequest, Change, Draft, DraftFields, LedgerStore, Opening, Slug, StepStamper, TermKey,
    Value,
};
use pactum_store::{Durability, OpenMode, SledStore};

const ROUNDS: usize = 3;
/// Threads of the concurrent way, each appending to an agreement of its own.
const THREADS: u64 = 8;

const WAYS: [(Durability, &str); 3] = [
    (Durability::Fsync, "log write + fdatasync (what ships)"),
    (Durability::WriteOnly, "log write only"),
    (Durability::Buffered, "nothing written"),
];

type Failure = Box<dyn std::error::Error>;

fn draft(slug: &str, n: u64) -> Result<Draft, Failure> {
    let effective = NaiveDate::from_ymd_opt(2024, 1, 1).ok_or("a valid day")?;
    Ok(Draft::new(DraftFields {
        agreement: Slug::parse(slug)?,
        title: format!("Amendment {n}"),
        effective,
        summary: Some("A benchmark amendment of typical size.".into()),
        sources: vec!["https://example.com/source".into()],
        expect_version: Some(n - 1),
        revokes: vec![],
        open: (n == 1).then(|| Opening {
            name: "The benchmark agreement".into(),
            parties: vec!["ACME Corp".into(), "Initech".into()],
        }),
        changes: vec![Change::Set {
            term: TermKey::parse(&format!("fees.item-{n}"))?,
            value: Value::Int(n as i64),
            text: Some("Customer pays this much for the item.".into()),
            until: None,
        }],
    })?)
}

/// Appends one draft per call, each the next version of its agreement (one agreement).
fn append_each(store: &SledStore, stamper: &StepStamper, drafts: Vec<Draft>) -> Result<(), String> {
    for (version, d) in (0..).zip(drafts) {
        let request = AppendRequest {
            agreement: d.agreement.clone(),
            expected_version: version,
            drafts: vec![d],
        };
        store
            .append(&[request], stamper)
            .map_err(|e| format!("append {}: {e:?}", version + 1))?;
    }
    Ok(())
}

/// Appends `n` amendments one call each to a new store under `dir`; returns the time the
/// appends took (opening the store not included).
fn run(dir: &Path, durability: Durability, n: u64) -> Result<Duration, Failure> {
    let scratch = tempfile::tempdir_in(dir)?;
    let mut store = SledStore::open(&scratch.path().join("store"), OpenMode::CreateIfMissing)?;
    store.set_durability(durability);
    let stamper = StepStamper::new(Utc::now(), chrono::Duration::milliseconds(1));
    let drafts = (1..=n)
        .map(|v| draft("bench", v))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    append_each(&store, &stamper, drafts)?;
    Ok(started.elapsed())
}

/// Appends `n` amendments from `threads` threads at once, each to an agreement of its own, one
/// amendment per call; returns the time they took.
fn run_threads(dir: &Path, threads: u64, n: u64) -> Result<Duration, Failure> {
    let scratch = tempfile::tempdir_in(dir)?;
    let store = SledStore::open(&scratch.path().join("store"), OpenMode::CreateIfMissing)?;
    let stamper = StepStamper::new(Utc::now(), chrono::Duration::milliseconds(1));
    let each = n / threads;
    let mut work = Vec::new();
    for t in 0..threads {
        let slug = format!("bench-{t}");
        let drafts = (1..=each)
            .map(|v| draft(&slug, v))
            .collect::<Result<Vec<_>, _>>()?;
        work.push(drafts);
    }
    let started = Instant::now();
    std::thread::scope(|s| {
        let handles: Vec<_> = work
            .into_iter()
            .map(|drafts| {
                let (store, stamper) = (&store, &stamper);
                s.spawn(move || append_each(store, stamper, drafts))
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().map_err(|_| "a thread panicked".to_owned())?)
    })?;
    Ok(started.elapsed())
}

fn main() -> Result<(), Failure> {
    let mut args = std::env::args().skip(1);
    let n: u64 = args.next().map_or(Ok(1000), |s| s.parse())?;
    let dir = args.next().map_or_else(std::env::temp_dir, Into::into);
    println!(
        "{n} appends, one amendment per call, {ROUNDS} rounds, in {}",
        dir.display()
    );
    let mut times: Vec<Vec<Duration>> = vec![Vec::new(); WAYS.len() + 1];
    for _ in 0..ROUNDS {
        for (i, (durability, _)) in WAYS.iter().enumerate() {
            times[i].push(run(&dir, *durability, n)?);
        }
        times[WAYS.len()].push(run_threads(&dir, THREADS, n)?);
    }
    let rate = |i: usize| {
        let mut t = times[i].clone();
        t.sort();
        n as f64 / t[t.len() / 2].as_secs_f64()
    };
    let shipped = rate(0);
    let threads = format!("{THREADS} threads, log write + fdatasync");
    let names = WAYS.iter().map(|w| w.1).chain([threads.as_str()]);
    for (i, name) in names.enumerate() {
        let r = rate(i);
        println!(
            "{name:<34} {r:>9.0} appends/s  {:>8.3} ms/append  {:>6.1}x the shipped rate",
            1e3 / r,
            r / shipped
        );
    }
    Ok(())
}
