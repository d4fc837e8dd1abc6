//! What the benchmark measures of the machine and of processes: the fsync floor, disk usage,
//! peak memory, wall time of child processes, and progress on a terminal.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{BenchError, QueryPoint};

/// Writes 4 KiB and fsyncs it, in a loop, in `dir` (the stores' filesystem): the most durable
/// appends per second any store on this disk can reach one at a time. The file grows, as a log
/// does, so each fsync also carries the file's size.
pub fn fsync_floor(dir: &Path, budget: Duration) -> Result<f64, BenchError> {
    let path = dir.join("fsync-floor.bin");
    let ctx = || format!("fsync floor in {}", dir.display());
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(BenchError::io(ctx()))?;
    let block = [0x5au8; 4096];
    let started = Instant::now();
    let mut n = 0u64;
    while n < 10 || (started.elapsed() < budget && n < 1_000_000) {
        file.write_all(&block).map_err(BenchError::io(ctx()))?;
        file.sync_all().map_err(BenchError::io(ctx()))?;
        n += 1;
    }
    let elapsed = started.elapsed();
    drop(file);
    fs::remove_file(&path).map_err(BenchError::io(ctx()))?;
    Ok(n as f64 / elapsed.as_secs_f64().max(1e-9))
}

/// Bytes the files under `path` occupy on disk (allocated blocks, as `du` counts them).
pub fn du(path: &Path) -> Result<u64, BenchError> {
    let ctx = || format!("measuring {}", path.display());
    let mut total = 0;
    for entry in fs::read_dir(path).map_err(BenchError::io(ctx()))? {
        let entry = entry.map_err(BenchError::io(ctx()))?;
        let meta = entry.metadata().map_err(BenchError::io(ctx()))?;
        if meta.is_dir() {
            total += du(&entry.path())?;
        } else {
            total += allocated(&meta);
        }
    }
    Ok(total)
}

#[cfg(unix)]
fn allocated(meta: &fs::Metadata) -> u64 {
    std::os::unix::fs::MetadataExt::blocks(meta) * 512
}

#[cfg(not(unix))]
fn allocated(meta: &fs::Metadata) -> u64 {
    meta.len()
}

/// This process's peak resident memory (VmHWM), in MiB.
pub fn peak_rss_mib() -> Result<f64, BenchError> {
    let status = fs::read_to_string("/proc/self/status")
        .map_err(BenchError::io("reading /proc/self/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<f64>()
                .ok()
        })
        .map(|kib| kib / 1024.0)
        .ok_or_else(|| BenchError::Config("no VmHWM line in /proc/self/status".into()))
}

/// The `q` quantile of the durations, in microseconds (nearest rank).
pub fn percentile_us(times: &[Duration], q: f64) -> Option<f64> {
    let mut sorted: Vec<Duration> = times.to_vec();
    sorted.sort_unstable();
    let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
    sorted.get(rank - 1).map(|d| d.as_secs_f64() * 1e6)
}

/// The median of `runs` wall times of a child process, in milliseconds; fails if any run fails.
fn median_ms(runs: usize, mut command: impl FnMut() -> Command) -> Result<f64, BenchError> {
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs.max(1) {
        let mut cmd = command();
        let program = format!("{:?}", cmd.get_program());
        let t = Instant::now();
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .map_err(BenchError::io(format!("running {program}")))?;
        times.push(t.elapsed());
        if !out.status.success() {
            return Err(BenchError::Config(format!(
                "{program} failed ({}): {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            )));
        }
    }
    Ok(percentile_us(&times, 0.5).unwrap_or(0.0) / 1000.0)
}

/// `pactum terms AGREEMENT --version V --on DAY --format json --store PATH`, a fresh process
/// each time: the median wall time, in milliseconds.
pub fn cli_query_ms(
    pactum: &Path,
    store: &Path,
    p: &QueryPoint,
    runs: usize,
) -> Result<f64, BenchError> {
    median_ms(runs, || {
        let mut c = Command::new(pactum);
        c.arg("terms")
            .arg(p.slug.as_str())
            .arg("--version")
            .arg(p.version.to_string())
            .arg("--on")
            .arg(p.on.to_string())
            .arg("--format")
            .arg("json")
            .arg("--store")
            .arg(store)
            .stdout(Stdio::null());
        c
    })
}

/// This program in its `--open-only` mode (a bare `sled::open` of the store, then exit): the
/// median wall time, in milliseconds.
pub fn open_only_ms(this: &Path, store: &Path, runs: usize) -> Result<f64, BenchError> {
    median_ms(runs, || {
        let mut c = Command::new(this);
        c.arg("--open-only").arg(store).stdout(Stdio::null());
        c
    })
}

/// Progress lines on stderr, only when it is a terminal (the caller decides). It also notes the
/// peak memory at the end of each phase, to tell which phase sets `peak_rss_mib`.
pub struct Progress {
    on: bool,
    started: Instant,
    /// The current phase, and each finished phase with the peak RSS (MiB) at its end.
    phases: std::cell::RefCell<(String, Vec<(String, f64)>)>,
}

impl Progress {
    pub fn new(on: bool) -> Progress {
        Progress {
            on,
            started: Instant::now(),
            phases: Default::default(),
        }
    }

    /// "phase: peak MiB" for every phase that raised the peak.
    pub fn peaks(&self) -> String {
        self.end_phase("");
        let phases = self.phases.borrow();
        let mut last = 0.0;
        let mut out = Vec::new();
        for (name, mib) in &phases.1 {
            if *mib > last + 1.0 {
                out.push(format!("{name} {mib:.0}"));
                last = *mib;
            }
        }
        out.join(", ")
    }

    fn end_phase(&self, next: &str) {
        let mut phases = self.phases.borrow_mut();
        let current = std::mem::replace(&mut phases.0, next.to_owned());
        if !current.is_empty() {
            phases.1.push((current, peak_rss_mib().unwrap_or(0.0)));
        }
    }

    pub fn phase(&self, what: &str) {
        self.end_phase(what);
        if self.on {
            eprint!(
                "\r\x1b[K[{:6.1}s] {what}",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    pub fn step(&self, what: &str, done: usize, total: usize) {
        if self.on {
            let pct = done as f64 * 100.0 / total.max(1) as f64;
            eprint!(
                "\r\x1b[K[{:6.1}s] {what}: {done}/{total} ({pct:.0}%)",
                self.started.elapsed().as_secs_f64()
            );
        }
    }

    pub fn done(&self) {
        if self.on {
            eprint!("\r\x1b[K");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_rank_percentiles() {
        let times: Vec<Duration> = (1..=100).map(Duration::from_micros).collect();
        assert_eq!(percentile_us(&times, 0.5).map(f64::round), Some(50.0));
        assert_eq!(percentile_us(&times, 0.99).map(f64::round), Some(99.0));
        assert_eq!(percentile_us(&[], 0.5), None);
        let one = [Duration::from_micros(7)];
        assert_eq!(percentile_us(&one, 0.99).map(f64::round), Some(7.0));
    }
}
