//! `pactum-bench`: measures Pactum and its peers on one seeded synthetic portfolio. Build the
//! `pactum` binary first (`cargo build --release`) so that `cli_query_ms` can be measured.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;

/// The allocator the `pactum` binary ships with (crates/cli/main.rs), so that the library is
/// measured as it runs there.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use pactum_bench::{run, Budget, Config};

#[derive(Debug, Parser)]
#[command(
    name = "pactum-bench",
    about = "Measures Pactum beside SQLite and git on a seeded synthetic portfolio",
    long_about = "Measures Pactum beside SQLite and git on a seeded synthetic portfolio.\n\n\
        Default size: 100,000 agreements × 10 amendments plus one agreement of 100,000 \
        (several minutes); --quick: 10,000 × 10 plus 10,000. Build the pactum binary first \
        (cargo build --release) so that cli_query_ms can be measured."
)]
struct Args {
    /// 10,000 agreements × 10 amendments, a long agreement of 10,000
    #[arg(long)]
    quick: bool,
    /// Print one flat JSON object on stdout instead of a table
    #[arg(long)]
    json: bool,
    /// Seed of the synthetic portfolio
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Where to make the run's temporary directory [default: target/ next to this binary, else
    /// $TMPDIR]
    #[arg(long, value_name = "PATH")]
    dir: Option<PathBuf>,
    /// Keep the run's directory (stores, git repository, SQLite database)
    #[arg(long)]
    keep: bool,
    /// Portfolio agreements
    #[arg(long, value_name = "N")]
    agreements: Option<usize>,
    /// Amendments per portfolio agreement
    #[arg(long, value_name = "N")]
    amendments: Option<usize>,
    /// Amendments of the long agreement
    #[arg(long, value_name = "N")]
    long: Option<usize>,
    /// Amendments of the in-order agreement kept in git
    #[arg(long, value_name = "N")]
    git: Option<usize>,
    /// Queries on the portfolio
    #[arg(long, value_name = "N")]
    queries: Option<usize>,
    /// Every time limit (fsync loop, durable and concurrent appends, long queries, long import)
    /// set to this many milliseconds: for smoke runs
    #[arg(long, value_name = "MS")]
    budget_ms: Option<u64>,
    /// Open the store at PATH with a bare sled::open and exit (the child that store_open_ms
    /// times)
    #[arg(long, value_name = "PATH", hide = true)]
    open_only: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(path) = &args.open_only {
        return match sled::open(path) {
            Ok(db) => {
                drop(db);
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("error: opening {}: {e}", path.display());
                ExitCode::FAILURE
            }
        };
    }
    let exe = std::env::current_exe().ok();
    let exe_dir = exe.as_ref().and_then(|e| e.parent()).map(PathBuf::from);
    let dir = args.dir.clone().unwrap_or_else(|| {
        exe_dir
            .as_ref()
            .and_then(|d| d.parent())
            .filter(|t| t.file_name().is_some_and(|n| n == "target"))
            .map(PathBuf::from)
            .unwrap_or_else(std::env::temp_dir)
    });
    let mut cfg = if args.quick {
        Config::quick(dir)
    } else {
        Config::full(dir)
    };
    cfg.seed = args.seed;
    cfg.keep = args.keep;
    cfg.progress = std::io::stderr().is_terminal();
    cfg.self_exe = exe.clone();
    cfg.pactum_exe = exe_dir
        .map(|d| d.join(format!("pactum{}", std::env::consts::EXE_SUFFIX)))
        .filter(|p| p.is_file());
    if let Some(n) = args.agreements {
        cfg.agreements = n;
    }
    if let Some(n) = args.amendments {
        cfg.amendments = n;
    }
    if let Some(n) = args.long {
        cfg.long = n;
    }
    if let Some(n) = args.git {
        cfg.git = n;
    }
    if let Some(n) = args.queries {
        cfg.queries = n;
    }
    if let Some(ms) = args.budget_ms {
        cfg.budget = Budget::all(Duration::from_millis(ms));
    }
    match run(&cfg) {
        Ok((figures, notes)) => {
            let printed = if args.json {
                figures.to_json().map(|j| j.to_string())
            } else {
                figures.table()
            };
            let data = notes.data;
            let mut lines = vec![format!(
                "data: {} amendments generated, {} retroactive, {} revocations, {} sets \
                 ({} with until), {} removes",
                data.amendments,
                data.retroactive,
                data.revocations,
                data.sets,
                data.untils,
                data.removes
            )];
            lines.extend(notes.lines);
            match printed {
                Ok(text) => {
                    println!("{text}");
                    for l in lines {
                        if args.json {
                            eprintln!("note: {l}");
                        } else {
                            println!("note: {l}");
                        }
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("error: {e}");
                    ExitCode::FAILURE
                }
            }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
