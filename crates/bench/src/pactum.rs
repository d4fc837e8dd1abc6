//! Pactum's side: everything goes through `pactum_app::Ledger` over `pactum_store::SledStore`,
//! the path the `pactum` command takes.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use chrono::{Days, NaiveDate};
use pactum_app::{Ledger, Submission, SystemStamper};
use pactum_domain::{AppendRequest, LedgerStore, Slug, StoreFailure};
use pactum_projection::Cut;
use pactum_store::{OpenMode, SledStore, StoreError};

use crate::answer::Answer;
use crate::gen::{self, AgreementGen, GenStats, Meta, Shape};
use crate::rng::Rng;
use crate::sys::Progress;
use crate::{BenchError, Config, QueryPoint};

pub type PactumLedger = Ledger<SledStore>;

/// The long agreement's slug and random stream.
pub const LONG: (&str, u64) = ("long-agreement", u64::MAX - 1);
/// The in-order agreement the git peer also holds.
pub const IN_ORDER: (&str, u64) = ("in-order-agreement", u64::MAX - 2);

/// A store at `path`, as `pactum append` opens it (real clock, random ids).
pub fn open(path: &Path) -> Result<PactumLedger, BenchError> {
    let store = SledStore::open(path, OpenMode::CreateIfMissing)?;
    Ok(Ledger::new(store, Box::new(SystemStamper)))
}

/// What the import did and how long it took.
pub struct Imported {
    pub metas: Vec<Meta>,
    pub long: Meta,
    pub in_order: Meta,
    pub stats: GenStats,
    portfolio: (u64, Duration),
    /// The long agreement's amendments appended through `Ledger::append`, and the time.
    long_ledger: (u64, Duration),
    /// The rest of the long agreement, appended straight to the store once the budget ran out.
    long_via_store: u64,
    long_store_time: Duration,
}

impl Imported {
    pub fn total_amendments(&self) -> u64 {
        self.portfolio.0 + self.long.latest + self.in_order.latest
    }

    pub fn portfolio_per_s(&self) -> f64 {
        self.portfolio.0 as f64 / self.portfolio.1.as_secs_f64().max(1e-9)
    }

    pub fn long_ledger_per_s(&self) -> Option<f64> {
        crate::ratio(self.long_ledger.0 as f64, self.long_ledger.1.as_secs_f64())
    }

    pub fn notes(&self) -> Vec<String> {
        let mut out = vec![format!(
            "long agreement: {} amendments via Ledger::append in {:.1} s",
            self.long_ledger.0,
            self.long_ledger.1.as_secs_f64()
        )];
        if self.long_via_store > 0 {
            out.push(format!(
                "long agreement: the import budget ran out, so the other {} amendments went \
                 straight to SledStore::append (no decide) in {:.1} s",
                self.long_via_store,
                self.long_store_time.as_secs_f64()
            ));
        }
        out
    }
}

fn submission(draft: pactum_domain::Draft) -> Submission {
    Submission {
        file: "synthetic".into(),
        draft,
    }
}

/// Appends a batch through the ledger; returns the time the call took.
fn append_timed(ledger: &PactumLedger, subs: &mut Vec<Submission>) -> Result<Duration, BenchError> {
    if subs.is_empty() {
        return Ok(Duration::ZERO);
    }
    let t = Instant::now();
    ledger.append(subs)?;
    let took = t.elapsed();
    subs.clear();
    Ok(took)
}

/// Imports the portfolio in batches of `cfg.batch` submissions (whole agreements, many per
/// call), then the long agreement, then the in-order one. Generating drafts is not timed.
///
/// The long agreement goes through `Ledger::append` until `cfg.budget.long_import` is spent:
/// each call reads the agreement's whole history, and each draft with a remove or a revocation
/// builds a projection of it, so the cost per amendment grows with the history. The rest goes
/// to `SledStore::append` directly (the generator only makes valid drafts), so that the other
/// figures are still measured on a long agreement of the requested length.
pub fn import(
    ledger: &PactumLedger,
    cfg: &Config,
    progress: &Progress,
) -> Result<Imported, BenchError> {
    let mut stats = GenStats::default();
    let mut metas = Vec::with_capacity(cfg.agreements);
    let mut subs = Vec::with_capacity(cfg.batch + cfg.amendments);
    let mut timed = Duration::ZERO;
    for i in 0..cfg.agreements {
        let mut g = AgreementGen::portfolio(cfg.seed, i, cfg.amendments)?;
        for _ in 0..cfg.amendments {
            subs.push(submission(g.next_draft()?));
        }
        stats.add(&g.stats);
        metas.push(g.meta());
        if subs.len() >= cfg.batch {
            timed += append_timed(ledger, &mut subs)?;
            progress.step("pactum import", i + 1, cfg.agreements);
        }
    }
    timed += append_timed(ledger, &mut subs)?;
    let portfolio = ((cfg.agreements * cfg.amendments) as u64, timed);

    progress.phase("pactum import, long agreement");
    let mut g = AgreementGen::new(
        gen::slug(LONG.0)?,
        Rng::stream(cfg.seed, LONG.1),
        Shape::portfolio(cfg.long),
    );
    let (mut via_ledger, mut ledger_time) = (0u64, Duration::ZERO);
    let (mut via_store, mut store_time) = (0u64, Duration::ZERO);
    while (g.version() as usize) < cfg.long {
        let before = g.version();
        let n = cfg.batch.min(cfg.long - before as usize);
        for _ in 0..n {
            subs.push(submission(g.next_draft()?));
        }
        if ledger_time < cfg.budget.long_import || before == 0 {
            ledger_time += append_timed(ledger, &mut subs)?;
            via_ledger += n as u64;
        } else {
            let request = AppendRequest {
                agreement: g.slug().clone(),
                expected_version: before,
                drafts: subs.drain(..).map(|s| s.draft).collect(),
            };
            let t = Instant::now();
            match ledger.store().append(&[request], &SystemStamper) {
                Ok(_) => {}
                Err(StoreFailure::Backend(e)) => return Err(e.into()),
                Err(e @ StoreFailure::Conflict { .. }) => {
                    return Err(BenchError::Generator(e.to_string()))
                }
            }
            store_time += t.elapsed();
            via_store += n as u64;
        }
        progress.step(
            "pactum import, long agreement",
            g.version() as usize,
            cfg.long,
        );
    }
    stats.add(&g.stats);
    let long = g.meta();

    let mut g = AgreementGen::new(
        gen::slug(IN_ORDER.0)?,
        Rng::stream(cfg.seed, IN_ORDER.1),
        Shape::in_order(cfg.git),
    );
    while (g.version() as usize) < cfg.git {
        let n = cfg.batch.min(cfg.git - g.version() as usize);
        for _ in 0..n {
            subs.push(submission(g.next_draft()?));
        }
        append_timed(ledger, &mut subs)?;
    }
    stats.add(&g.stats);
    Ok(Imported {
        metas,
        long,
        in_order: g.meta(),
        stats,
        portfolio,
        long_ledger: (via_ledger, ledger_time),
        long_via_store: via_store,
        long_store_time: store_time,
    })
}

/// The in-order agreement's drafts, regenerated (for the git peer).
pub fn in_order_drafts(cfg: &Config) -> Result<Vec<pactum_domain::Draft>, BenchError> {
    let mut g = AgreementGen::new(
        gen::slug(IN_ORDER.0)?,
        Rng::stream(cfg.seed, IN_ORDER.1),
        Shape::in_order(cfg.git),
    );
    (0..cfg.git).map(|_| g.next_draft()).collect()
}

/// Stored records and their total encoded length (without the framing of record packs).
pub fn encoded_bytes(ledger: &PactumLedger) -> Result<(u64, u64), BenchError> {
    Ok(ledger.store().record_sizes()?)
}

/// A day in the agreement's span, give or take a month either side.
fn day_in(m: &Meta, rng: &mut Rng) -> NaiveDate {
    let span = m.last.signed_duration_since(m.first).num_days().max(0) as u64;
    let start = m.first.checked_sub_days(Days::new(30)).unwrap_or(m.first);
    start
        .checked_add_days(Days::new(rng.below(span + 61)))
        .unwrap_or(m.first)
}

/// `n` query points: a random agreement, a random version of it, a random day.
pub fn points(metas: &[Meta], n: usize, rng: &mut Rng) -> Vec<QueryPoint> {
    (0..n)
        .filter_map(|_| {
            let m = rng.pick(metas)?;
            Some(QueryPoint {
                slug: m.slug.clone(),
                version: rng.between(1, m.latest),
                on: day_in(m, rng),
            })
        })
        .collect()
}

pub fn days_of(m: &Meta, n: usize, rng: &mut Rng) -> Vec<NaiveDate> {
    (0..n).map(|_| day_in(m, rng)).collect()
}

/// Timings of queries, and the answers of the first few (to compare the peers with).
pub struct QueryRun {
    pub times: Vec<Duration>,
    pub sample: Vec<(usize, Answer)>,
}

/// Each query as `pactum terms` runs it: read the agreement from the store, build its
/// projection, answer at (K, on). Stops early, after at least 20 queries, once `budget` is spent.
pub fn queries(
    ledger: &PactumLedger,
    points: &[QueryPoint],
    sample: usize,
    budget: Option<Duration>,
) -> Result<QueryRun, BenchError> {
    let started = Instant::now();
    let mut run = QueryRun {
        times: Vec::with_capacity(points.len()),
        sample: Vec::new(),
    };
    for (i, p) in points.iter().enumerate() {
        if budget.is_some_and(|b| started.elapsed() > b) && run.times.len() >= 20 {
            break;
        }
        let t = Instant::now();
        let terms = ledger.terms(&p.slug, Cut::Version(p.version), p.on)?;
        run.times.push(t.elapsed());
        if i < sample {
            run.sample.push((i, Answer::of_terms(&terms)?));
        }
    }
    Ok(run)
}

/// The terms at the latest version on each day (what the git peer is asked).
pub fn latest_answers(
    ledger: &PactumLedger,
    slug: &Slug,
    days: &[NaiveDate],
) -> Result<Vec<Answer>, BenchError> {
    days.iter()
        .map(|&on| Ok(Answer::of_terms(&ledger.terms(slug, Cut::Latest, on)?)?))
        .collect()
}

/// Generators for agreements `range`, advanced past what the import appended, so that their
/// next drafts are valid new versions.
fn continued(cfg: &Config, range: std::ops::Range<usize>) -> Result<Vec<AgreementGen>, BenchError> {
    range
        .map(|i| {
            let mut g = AgreementGen::portfolio(cfg.seed, i, cfg.amendments)?;
            for _ in 0..cfg.amendments {
                g.next_draft()?;
            }
            Ok(g)
        })
        .collect()
}

/// Appends to `pool` round robin, one submission per call (each one durable before the next),
/// until `max` appends or the deadline. Returns how many and the time spent appending.
fn append_one_by_one(
    ledger: &PactumLedger,
    pool: &mut [AgreementGen],
    max: usize,
    deadline: Instant,
) -> Result<(u64, Duration), BenchError> {
    let mut spent = Duration::ZERO;
    let mut n = 0u64;
    let len = pool.len();
    if len == 0 {
        return Ok((0, spent));
    }
    while (n as usize) < max && Instant::now() < deadline {
        let Some(g) = pool.get_mut(n as usize % len) else {
            break;
        };
        let sub = [submission(g.next_draft()?)];
        let t = Instant::now();
        ledger.append(&sub)?;
        spent += t.elapsed();
        n += 1;
    }
    Ok((n, spent))
}

/// The first quarter of the portfolio (at most 32 agreements) is for single durable appends.
fn durable_pool(cfg: &Config) -> std::ops::Range<usize> {
    0..(cfg.agreements / 4).clamp(1, 32)
}

/// Single appends, each reported done (durable) before the next starts.
pub fn durable_appends(ledger: &PactumLedger, cfg: &Config) -> Result<f64, BenchError> {
    let mut pool = continued(cfg, durable_pool(cfg))?;
    let deadline = Instant::now() + cfg.budget.durable;
    let (n, spent) = append_one_by_one(ledger, &mut pool, cfg.durable_appends, deadline)?;
    Ok(n as f64 / spent.as_secs_f64().max(1e-9))
}

/// `cfg.threads` threads share one ledger, each appending one durable submission at a time to
/// agreements of its own.
pub fn concurrent_appends(ledger: &PactumLedger, cfg: &Config) -> Result<f64, BenchError> {
    let threads = cfg.threads.max(1);
    let base = cfg.agreements / 4;
    let per = ((cfg.agreements - base) / threads).clamp(1, 16);
    let mut pools = (0..threads)
        .map(|t| continued(cfg, base + t * per..base + (t + 1) * per))
        .collect::<Result<Vec<_>, _>>()?;
    let started = Instant::now();
    let deadline = started + cfg.budget.concurrent;
    let results: Vec<Result<(u64, Duration), BenchError>> = std::thread::scope(|s| {
        let handles: Vec<_> = pools
            .iter_mut()
            .map(|pool| {
                s.spawn(move || append_one_by_one(ledger, pool, cfg.durable_appends, deadline))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(BenchError::Generator("an append thread panicked".into()))
                })
            })
            .collect()
    });
    let elapsed = started.elapsed();
    let mut total = 0;
    for r in results {
        total += r?.0;
    }
    Ok(total as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// Opens the store cold (a new `SledStore::open`), reads every agreement, decodes it and
/// projects it into its terms at the latest version, in one pass over the store
/// (`Ledger::for_each_terms`: each history folded once as it is read). Returns the amendments
/// done and the time, open included.
pub fn replay(path: &Path) -> Result<(u64, Duration), BenchError> {
    let far = NaiveDate::from_ymd_opt(9999, 12, 31).unwrap_or(NaiveDate::MAX);
    // sled lets go of the directory a moment after the import's store is dropped, from a
    // thread of its own: that wait is not the replay's, so only the open that succeeds is
    // timed.
    let given_up = Instant::now() + Duration::from_secs(3);
    let (t, store) = loop {
        let t = Instant::now();
        match SledStore::open(path, OpenMode::MustExist) {
            Err(StoreError::Locked { .. }) if Instant::now() < given_up => {
                std::thread::sleep(Duration::from_millis(5));
            }
            opened => break (t, opened?),
        }
    };
    let ledger = Ledger::new(store, Box::new(SystemStamper));
    let done = AtomicU64::new(0);
    let failed = Mutex::new(None);
    ledger.for_each_terms(far, |_, terms| match terms {
        Ok(terms) => {
            done.fetch_add(terms.version, Ordering::Relaxed);
            std::hint::black_box(terms);
        }
        Err(e) => {
            failed
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .get_or_insert(e);
        }
    })?;
    if let Some(e) = failed.into_inner().unwrap_or_else(PoisonError::into_inner) {
        return Err(e.into());
    }
    Ok((done.into_inner(), t.elapsed()))
}
