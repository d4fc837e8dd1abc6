//! The command line, as SPEC §4 fixes it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use chrono::{DateTime, NaiveDate, Utc};
use clap::{Args, Parser, Subcommand, ValueEnum};
use pactum_app::{Anchor, PointSpec};
use pactum_domain::{Slug, TermKey, Version};

#[derive(Debug, Parser)]
#[command(
    name = "pactum",
    version,
    about = "An event-sourced ledger of agreement amendments",
    long_about = "An event-sourced ledger of agreement amendments.\n\n\
        Every amendment is an immutable event in an append-only store; the terms in force at any \
        version, on any day, are rebuilt by replay.\n\n\
        Exit codes: 0 done; 1 refused or failed; 2 usage error; 3 version conflict; \
        4 verification found damage."
)]
pub struct Cli {
    /// The store (a sled database directory) [default: ./pactum.db]
    #[arg(long, global = true, env = "PACTUM_STORE", value_name = "PATH")]
    pub store: Option<PathBuf>,

    /// Output format
    #[arg(long, global = true, value_enum, default_value_t = Format::Text)]
    pub format: Format,

    /// How long to wait for a store that another process is using before giving up (0: fail at
    /// once)
    #[arg(
        long,
        global = true,
        value_name = "SECONDS",
        default_value = "3",
        value_parser = parse_wait
    )]
    pub wait: Duration,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned tables for people (colour only on a terminal, never with NO_COLOR)
    Text,
    /// JSON for scripts (shapes in docs/CLI.md)
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Load the built-in Microsoft–OpenAI ledger into a temporary store and tour it (needs no
    /// store: --store does not apply)
    Demo,
    /// Validate and append amendment files (TOML or JSON; `-` reads one from stdin), all or
    /// nothing
    Append {
        /// Amendment files (.toml or .json); `-` reads one from stdin
        #[arg(required = true, value_name = "FILE")]
        files: Vec<String>,
    },
    /// Every agreement: slug, name, parties, latest version, head hash
    Agreements,
    /// Every amendment of an agreement, in version order
    Log {
        /// The agreement's slug
        agreement: Slug,
    },
    /// The terms in force at a point, and the lapsed and pending ones
    Terms {
        /// The agreement's slug
        agreement: Slug,
        #[command(flatten)]
        cut: CutArgs,
        /// The day the terms are read on [default: today, UTC]
        #[arg(long, value_name = "YYYY-MM-DD")]
        on: Option<NaiveDate>,
    },
    /// What differs between two points: N or vN (the ledger at version N, on today) or
    /// YYYY-MM-DD (the latest ledger, on that day)
    Diff {
        /// The agreement's slug
        agreement: Slug,
        /// The first point: N, vN or YYYY-MM-DD
        from: PointSpec,
        /// The second point: N, vN or YYYY-MM-DD
        to: PointSpec,
    },
    /// Every amendment that set or removed a term, revoked ones marked
    History {
        /// The agreement's slug
        agreement: Slug,
        /// The term's key, e.g. ip-license.exclusive
        term: TermKey,
    },
    /// Walk the ledger in version order: what each amendment changed, as of its effective date
    Replay {
        /// The agreement's slug
        agreement: Slug,
    },
    /// Re-read every record, recompute the hash chain, check versions are contiguous; with
    /// --head, also check the chain still holds a hash kept from an earlier append
    Verify {
        /// Only this agreement [default: every agreement]
        agreement: Option<Slug>,
        /// Exit 4 unless the agreement's chain still holds this hash: HASH or N:HASH (an
        /// amendment's hash, and its version, as append printed them). Catches a store rolled
        /// back to an older copy or cut short. Needs AGREEMENT
        #[arg(long, value_name = "ANCHOR", requires = "agreement")]
        head: Option<Anchor>,
    },
    /// Every amendment as one JSON object per line, hashes included (always JSON Lines:
    /// --format does not apply)
    Export {
        /// The agreement's slug
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        agreement: Option<Slug>,
        /// Every agreement, in slug order, each in version order: a backup for `pactum restore`
        #[arg(long)]
        all: bool,
    },
    /// Restore a backup written by `export --all` into an empty store (created if missing),
    /// after checking every line, version, link and hash; all or nothing
    Restore {
        /// The backup (JSON Lines); `-` reads standard input
        #[arg(value_name = "FILE")]
        file: String,
    },
}

/// Longest `--wait`: a day. Past that, waiting is a mistake, not patience.
const WAIT_MAX_SECONDS: f64 = 86_400.0;

fn parse_wait(s: &str) -> Result<Duration, String> {
    s.parse::<f64>()
        .ok()
        .filter(|secs| (0.0..=WAIT_MAX_SECONDS).contains(secs))
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{s:?} is not a number of seconds from 0 to {WAIT_MAX_SECONDS}"))
}

#[derive(Debug, Args)]
#[group(multiple = false)]
pub struct CutArgs {
    /// The ledger as it stood right after version N was appended
    #[arg(long, value_name = "N")]
    pub version: Option<Version>,
    /// The ledger as it stood at this moment (RFC 3339): the last version recorded at or before it
    #[arg(long, value_name = "TIMESTAMP")]
    pub known_at: Option<DateTime<Utc>>,
}

/// A usage error: one `error:` line on stderr, exit 2; `--help` and `--version` print and exit 0.
pub fn usage_failure(e: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return ExitCode::SUCCESS;
    }
    let rendered = e.render().to_string();
    let mut lines = rendered.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = match e.kind() {
        ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand | ErrorKind::MissingSubcommand => {
            "a command is required".to_owned()
        }
        _ => {
            let first = lines
                .next()
                .unwrap_or("invalid usage")
                .trim_start_matches("error: ");
            // clap lists what is missing on the lines after "…were not provided:".
            match first.strip_suffix(':') {
                Some(lead) => {
                    let missing: Vec<&str> =
                        lines.take_while(|l| !l.starts_with("Usage:")).collect();
                    format!("{lead}: {}", missing.join(", "))
                }
                None => first.to_owned(),
            }
        }
    };
    eprintln!("error: {first} (see pactum --help)");
    ExitCode::from(2)
}
