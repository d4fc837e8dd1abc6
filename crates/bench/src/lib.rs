//! Pactum's benchmark: builds a seeded synthetic portfolio of agreements, drives it through the
//! same library path the `pactum` command uses (`pactum_app::Ledger` over
//! `pactum_store::SledStore`), and measures the same work, in the same run, on the two things a
//! user would pick instead: a temporal table in SQLite, and a git repository of a terms file.
//!
//! It is a measuring instrument, not a test of speed: it reports figures beside their targets
//! and never fails because a figure misses one. It is not part of Pactum's library path, and it
//! stores nothing with sled itself (its `--open-only` child only opens a store, to time the floor
//! every sled-backed command pays).

pub mod answer;
pub mod gen;
pub mod git;
pub mod pactum;
pub mod report;
pub mod rng;
pub mod sqlite;
pub mod sys;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::NaiveDate;

use crate::answer::Answer;
use crate::gen::GenStats;
pub use crate::report::Figures;
use crate::sys::Progress;

/// Why the benchmark could not run. A peer that cannot be measured is not an error: its figure
/// is `null` and the reason goes to stderr.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("store: {0}")]
    Store(#[from] pactum_store::StoreError),
    #[error("ledger: {0}")]
    App(#[from] pactum_app::AppError),
    #[error("sqlite: {0}")]
    Sqlite(#[from] rusqlite::Error),
    #[error("{context}: {source}")]
    Io {
        context: String,
        source: std::io::Error,
    },
    #[error("git: {0}")]
    Git(String),
    #[error("generator: {0}")]
    Generator(String),
    #[error("{0}")]
    Config(String),
    #[error("json: {0}")]
    Json(#[from] serde_json::Error),
}

impl BenchError {
    pub fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let context = context.into();
        move |source| BenchError::Io { context, source }
    }
}

/// Time limits of the phases that run until a count or a deadline, whichever comes first.
#[derive(Debug, Clone, Copy)]
pub struct Budget {
    pub fsync: Duration,
    pub durable: Duration,
    pub concurrent: Duration,
    pub long_queries: Duration,
    /// How long the long agreement is imported through `Ledger::append` before the rest goes
    /// straight to the store (see [`pactum::import`]).
    pub long_import: Duration,
    pub git_queries: Duration,
}

impl Budget {
    pub fn quick() -> Budget {
        Budget {
            fsync: Duration::from_secs(2),
            durable: Duration::from_secs(3),
            concurrent: Duration::from_secs(3),
            long_queries: Duration::from_secs(10),
            long_import: Duration::from_secs(30),
            git_queries: Duration::from_secs(5),
        }
    }

    pub fn full() -> Budget {
        Budget {
            fsync: Duration::from_secs(3),
            durable: Duration::from_secs(5),
            concurrent: Duration::from_secs(5),
            long_queries: Duration::from_secs(60),
            long_import: Duration::from_secs(180),
            git_queries: Duration::from_secs(10),
        }
    }

    /// Every limit set to one value: for smoke runs.
    pub fn all(d: Duration) -> Budget {
        Budget {
            fsync: d,
            durable: d,
            concurrent: d,
            long_queries: d,
            long_import: d,
            git_queries: d,
        }
    }
}

/// Sizes and settings of one run.
#[derive(Debug, Clone)]
pub struct Config {
    pub seed: u64,
    /// Portfolio agreements.
    pub agreements: usize,
    /// Amendments per portfolio agreement (the opening included).
    pub amendments: usize,
    /// Amendments of the long agreement.
    pub long: usize,
    /// Amendments of the in-order agreement the git peer holds.
    pub git: usize,
    /// Submissions per `Ledger::append` call (and per SQLite transaction) at import.
    pub batch: usize,
    /// Queries on the portfolio (p50, p99).
    pub queries: usize,
    /// Most queries on the long agreement (also bounded by `budget.long_queries`).
    pub long_queries: usize,
    /// Queries each peer's answers are compared on (at least 200 for the figure).
    pub sample: usize,
    pub git_queries: usize,
    /// Most single durable appends (also bounded by `budget.durable`).
    pub durable_appends: usize,
    pub threads: usize,
    /// Runs of each child process (`pactum terms`, `--open-only`); the median is reported.
    pub process_runs: usize,
    pub budget: Budget,
    /// Where the run's temporary directory is made (same filesystem as the figures it claims).
    pub dir: PathBuf,
    /// Keep the run's directory (stores, repo, database) afterwards.
    pub keep: bool,
    /// The `pactum` binary for `cli_query_ms`; `None`: not measured.
    pub pactum_exe: Option<PathBuf>,
    /// This program, re-executed with `--open-only` for `store_open_ms`; `None`: not measured.
    pub self_exe: Option<PathBuf>,
    pub progress: bool,
}

impl Config {
    /// `--quick`: 10,000 × 10 plus a long agreement of 10,000.
    pub fn quick(dir: PathBuf) -> Config {
        Config {
            seed: 42,
            agreements: 10_000,
            amendments: 10,
            long: 10_000,
            git: 1_000,
            batch: 1_000,
            queries: 1_000,
            long_queries: 1_000,
            sample: 200,
            git_queries: 100,
            durable_appends: 5_000,
            threads: 8,
            process_runs: 7,
            budget: Budget::quick(),
            dir,
            keep: false,
            pactum_exe: None,
            self_exe: None,
            progress: false,
        }
    }

    /// The default: 100,000 × 10 plus a long agreement of 100,000.
    pub fn full(dir: PathBuf) -> Config {
        Config {
            agreements: 100_000,
            long: 100_000,
            queries: 10_000,
            long_queries: 10_000,
            budget: Budget::full(),
            ..Config::quick(dir)
        }
    }

    fn check(&self) -> Result<(), BenchError> {
        let min_agreements = 4 * self.threads.max(1);
        if self.agreements < min_agreements {
            return Err(BenchError::Config(format!(
                "--agreements must be at least {min_agreements} (durable and concurrent appends \
                 each need agreements of their own)"
            )));
        }
        if self.amendments == 0 || self.long == 0 || self.git == 0 || self.batch == 0 {
            return Err(BenchError::Config(
                "--amendments, --long, --git and --batch must be at least 1".into(),
            ));
        }
        if self.queries == 0 {
            return Err(BenchError::Config("--queries must be at least 1".into()));
        }
        Ok(())
    }
}

/// A query point: the same questions are put to Pactum and to the peers.
#[derive(Debug, Clone)]
pub struct QueryPoint {
    pub slug: pactum_domain::Slug,
    pub version: pactum_domain::Version,
    pub on: NaiveDate,
}

/// What a run learned besides the figures: the data's shape, for the report.
#[derive(Debug, Clone, Default)]
pub struct RunNotes {
    pub data: GenStats,
    pub lines: Vec<String>,
}

/// Runs every measurement and returns the figures; a peer that cannot be measured leaves its
/// figures `None` with a reason on stderr.
pub fn run(cfg: &Config) -> Result<(Figures, RunNotes), BenchError> {
    cfg.check()?;
    let started = Instant::now();
    let progress = Progress::new(cfg.progress);
    std::fs::create_dir_all(&cfg.dir)
        .map_err(BenchError::io(format!("creating {}", cfg.dir.display())))?;
    let tmp = tempfile::Builder::new()
        .prefix("pactum-bench-")
        .tempdir_in(&cfg.dir)
        .map_err(BenchError::io(format!(
            "making a directory in {}",
            cfg.dir.display()
        )))?;
    let work = tmp.path().to_path_buf();
    let result = run_in(cfg, &work, &progress, started);
    progress.done();
    if cfg.keep {
        let kept = tmp.keep();
        eprintln!("kept the run's directory: {}", kept.display());
    }
    result
}

fn run_in(
    cfg: &Config,
    work: &Path,
    progress: &Progress,
    started: Instant,
) -> Result<(Figures, RunNotes), BenchError> {
    let mut f = Figures {
        seed: cfg.seed,
        ..Figures::default()
    };
    let mut notes = RunNotes::default();
    let store_path = work.join("pactum.db");

    progress.phase("fsync floor");
    f.fsync_floor_per_s = Some(sys::fsync_floor(work, cfg.budget.fsync)?);

    // Pactum: import, sizes, queries, appends, then cold replay.
    progress.phase("pactum import");
    let ledger = pactum::open(&store_path)?;
    let imported = pactum::import(&ledger, cfg, progress)?;
    notes.data = imported.stats;
    f.amendments = imported.total_amendments();
    f.long_amendments = imported.long.latest;
    f.import_per_s = Some(imported.portfolio_per_s());
    f.long_import_per_s = imported.long_ledger_per_s();
    notes.lines.extend(imported.notes());

    let (records, record_bytes) = pactum::encoded_bytes(&ledger)?;
    f.encoded_bytes_per_amendment = ratio(record_bytes as f64, records as f64);

    progress.phase("pactum queries");
    let mut rng = rng::Rng::stream(cfg.seed, u64::MAX - 10);
    let points = pactum::points(&imported.metas, cfg.queries, &mut rng);
    let long_points = pactum::points(
        std::slice::from_ref(&imported.long),
        cfg.long_queries,
        &mut rng,
    );
    let q = pactum::queries(&ledger, &points, cfg.sample, None)?;
    f.query_p50_us = sys::percentile_us(&q.times, 0.50);
    f.query_p99_us = sys::percentile_us(&q.times, 0.99);
    progress.phase("pactum queries on the long agreement");
    let lq = pactum::queries(
        &ledger,
        &long_points,
        cfg.sample / 10,
        Some(cfg.budget.long_queries),
    )?;
    f.long_query_p99_us = sys::percentile_us(&lq.times, 0.99);
    f.long_query_samples = lq.times.len() as u64;
    let git_days = pactum::days_of(&imported.in_order, cfg.git_queries, &mut rng);
    let git_reference = pactum::latest_answers(&ledger, &imported.in_order.slug, &git_days)?;

    progress.phase("durable appends");
    f.durable_append_per_s = Some(pactum::durable_appends(&ledger, cfg)?);
    progress.phase("concurrent appends");
    f.concurrent_append_per_s = Some(pactum::concurrent_appends(&ledger, cfg)?);
    let in_store = pactum::encoded_bytes(&ledger)?.0;
    let t = Instant::now();
    ledger.close()?;
    f.close_ms = Some(t.elapsed().as_secs_f64() * 1e3);

    f.bytes_per_amendment = ratio(sys::du(&store_path)? as f64, in_store as f64);
    progress.phase("pactum cold replay");
    let (replayed, replay_time) = pactum::replay(&store_path)?;
    f.replay_per_s = ratio(replayed as f64, replay_time.as_secs_f64());

    progress.phase("pactum terms and bare open, as processes");
    let long_point = long_points.first().cloned();
    f.cli_query_ms = soft(
        "cli_query_ms",
        match (&cfg.pactum_exe, &long_point) {
            (Some(exe), Some(p)) => {
                sys::cli_query_ms(exe, &store_path, p, cfg.process_runs).map(Some)
            }
            (None, _) => Err(BenchError::Config(
                "no pactum binary next to this one: run `cargo build --release` first".into(),
            )),
            (_, None) => Ok(None),
        },
    )
    .flatten();
    f.store_open_ms = soft(
        "store_open_ms",
        match &cfg.self_exe {
            Some(exe) => sys::open_only_ms(exe, &store_path, cfg.process_runs),
            None => Err(BenchError::Config("no path to this program".into())),
        },
    );

    // The SQLite peer, on the same data and the same questions.
    progress.phase("sqlite import");
    let sample_answers: Vec<(usize, &Answer)> = q
        .sample
        .iter()
        .map(|(i, a)| (*i, a))
        .chain(lq.sample.iter().map(|(i, a)| (points.len() + *i, a)))
        .collect();
    let all_points: Vec<QueryPoint> = points.iter().chain(&long_points).cloned().collect();
    let sqlite_agrees = soft(
        "sqlite peer",
        sqlite::measure(
            cfg,
            &work.join("peer.sqlite"),
            &points,
            &all_points,
            &sample_answers,
            progress,
            &mut f,
            &mut notes.lines,
        ),
    );

    progress.phase("git peer");
    let git_agrees = soft(
        "git peer",
        git::measure(
            cfg,
            &work.join("peer.git"),
            &git_days,
            &git_reference,
            &mut f,
        ),
    );

    let compared = sample_answers.len();
    f.peers_agree = match (sqlite_agrees, git_agrees) {
        (Some(s), Some(g)) => Some(s && g && compared >= 200),
        _ => None,
    };
    notes.lines.push(format!(
        "peers compared with pactum on {compared} sqlite queries and {} git queries{}",
        git_days.len(),
        if compared < 200 {
            " (fewer than 200: peers_agree is false)"
        } else {
            ""
        }
    ));
    f.peak_rss_mib = soft("peak_rss_mib", sys::peak_rss_mib());
    notes.lines.push(format!(
        "peak RSS (MiB) by the end of: {}",
        progress.peaks()
    ));
    f.wall_s = Some(started.elapsed().as_secs_f64());
    Ok((f, notes))
}

/// `a / b`, or `None` when `b` is not positive.
pub fn ratio(a: f64, b: f64) -> Option<f64> {
    (b > 0.0).then(|| a / b)
}

/// The value, or `None` with the reason on stderr.
fn soft<T>(what: &str, r: Result<T, BenchError>) -> Option<T> {
    match r {
        Ok(v) => Some(v),
        Err(e) => {
            eprintln!("warning: {what} not measured: {e}");
            None
        }
    }
}
