//! The `pactum` command: argument parsing, reading amendment files, and text or JSON output.
//! Every use case goes through `pactum_app::Ledger`; this binary only adds the command line.

mod args;
mod commands;
mod demo;
mod output;
mod text;

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;

/// sled and the record decoders allocate many small blocks; mimalloc serves them about twice as
/// fast as the system allocator (docs/PERFORMANCE-LOG.md, item 2).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match args::Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => return args::usage_failure(e),
    };
    match commands::run(&cli) {
        Ok(outcome) => {
            let mut stdout = std::io::stdout().lock();
            let written = stdout
                .write_all(outcome.stdout.as_bytes())
                .and_then(|_| stdout.flush())
                .or_else(commands::closed_pipe);
            if let Some(warning) = outcome.warning {
                eprintln!("warning: {warning}");
            }
            match written {
                Ok(()) => ExitCode::from(outcome.code),
                Err(failure) => {
                    eprintln!("error: {}", failure.message);
                    ExitCode::from(failure.code)
                }
            }
        }
        Err(failure) => {
            eprintln!("error: {}", failure.message);
            ExitCode::from(failure.code)
        }
    }
}
