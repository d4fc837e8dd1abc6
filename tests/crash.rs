//! Crash safety and confidentiality, through the real binary.
//!
//! The crash harness appends amendments with `pactum append` and SIGKILLs the writer at random
//! moments, then reopens the store and checks that nothing acknowledged was lost, versions are
//! contiguous, `verify` passes and no half-written amendment is visible. SIGKILL tests process
//! crashes only: the kernel's page cache survives them. Power loss is covered by the fsync
//! design (docs/STORAGE.md, Durability), not by this harness.
//!
//! The random choices come from a seeded xorshift whose seed is printed first: replay a failing
//! run with `PACTUM_CRASH_SEED=<seed>` (the kill timings still vary with the machine's load).

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::{Env, OPENING};

/// The agreement every crash episode appends to.
const SLUG: &str = "crash";

/// Out of 100: how many attempts get a kill scheduled. The rest show that a store that has
/// survived kills goes on accepting appends.
const KILL_PERCENT: u64 = 80;

/// Kill delays spread over this many quarters of a typical append's run time, so some kills
/// come after the process is done (and hit nothing) and the creating append, which runs
/// longer, is still mostly cut.
const DELAY_QUARTERS: u32 = 5;

/// Kills in the run that is part of the test suite: about 4 s in a debug build.
const SHORT_RUN_KILLS: u64 = 50;

/// xorshift64*: enough randomness for kill timings, and replayable from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Near-uniform in `0..n`.
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// What a run did, printed at its end (docs/RELIABILITY.md quotes the long run's).
#[derive(Debug, Default)]
struct Figures {
    seed: u64,
    stores: u64,
    /// Append calls run (each of 1 to MOST_PER_CALL amendments).
    attempts: u64,
    kills: u64,
    /// Kills while the store had no amendment yet: during its creation.
    kills_during_creation: u64,
    acknowledged: u64,
    /// Records in the stores at the end of their episodes.
    present: u64,
    /// Present although their append was killed: the kill landed after the commit.
    present_though_killed: u64,
    lost: u64,
    /// The median run time of an append, which kill delays spread over.
    lifetime: Duration,
    elapsed: Duration,
}

impl std::fmt::Display for Figures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} kills ({} during store creation), {} append calls of 1 to \
             {MOST_PER_CALL} amendments, {} stores; {} amendments acknowledged, {} present ({} \
             of them from killed appends), {} lost; append run time {:.1} ms; {:.1} s",
            self.seed,
            self.kills,
            self.kills_during_creation,
            self.attempts,
            self.stores,
            self.acknowledged,
            self.present,
            self.present_though_killed,
            self.lost,
            self.lifetime.as_secs_f64() * 1e3,
            self.elapsed.as_secs_f64()
        )
    }
}

/// What an append call acknowledged: each amendment's version and hash.
type Acked = Vec<(u64, String)>;

/// Most amendments one append call carries: a call of several is stored as record packs
/// (docs/STORAGE.md), and must be there whole or not at all after a kill.
const MOST_PER_CALL: u64 = 3;

/// One store's life: what was submitted to it and what `append` acknowledged.
#[derive(Default)]
struct Episode {
    /// Attempt numbers submitted to this store (one per amendment).
    submitted: BTreeSet<u64>,
    /// Attempts whose process was killed.
    killed: BTreeSet<u64>,
    /// The attempts of each killed call of several amendments: all present or none.
    killed_calls: Vec<Vec<u64>>,
    /// Acknowledged version → (hash, attempt): exit 0 with these in stdout.
    acks: BTreeMap<u64, (String, u64)>,
    /// Acknowledged versions found missing or different at some check.
    lost: BTreeSet<u64>,
    /// The latest version, as last acknowledged or read back.
    latest: u64,
}

struct Harness {
    env: Env,
    rng: Rng,
    figures: Figures,
    /// Attempt numbers run so far, over all stores: each attempt's title is unique.
    attempt: u64,
}

impl Harness {
    fn new(seed: u64) -> Harness {
        println!("crash harness seed {seed} (replay with PACTUM_CRASH_SEED={seed})");
        Harness {
            env: Env::new(),
            rng: Rng::new(seed),
            figures: Figures {
                seed,
                ..Figures::default()
            },
            attempt: 0,
        }
    }

    /// The real binary with the real clock (ids and times as in production) on `store`.
    fn command(&self, store: &Path, args: &[&str]) -> Command {
        let mut c = self.env.command(args);
        c.env_remove("PACTUM_FIXED_CLOCK")
            .env("PACTUM_STORE", store)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        c
    }

    /// Runs one append call of `count` new attempts (one amendment each) after version
    /// `latest`, SIGKILLing it after `kill_after` unless it finished first. Returns the attempt
    /// numbers, how long it ran, and `None` if the kill landed, else each acknowledged version
    /// and hash.
    fn append(
        &mut self,
        store: &Path,
        latest: u64,
        count: u64,
        kill_after: Option<Duration>,
    ) -> (Vec<u64>, Duration, Option<Acked>) {
        let mut attempts = Vec::new();
        let mut args = vec!["append".to_owned()];
        for i in 0..count {
            self.attempt += 1;
            let n = self.attempt;
            attempts.push(n);
            args.push(
                self.env
                    .write(&format!("attempt-{n}.toml"), &amendment(n, latest + i)),
            );
        }
        args.extend(["--format".to_owned(), "json".to_owned()]);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = Instant::now();
        let mut child = self.command(store, &args).spawn().expect("spawn pactum");
        if let Some(delay) = kill_after {
            std::thread::sleep(delay);
            // A child that has exited stays a zombie until waited for: the signal hits nothing.
            child.kill().expect("kill");
        }
        let out = child.wait_with_output().expect("wait");
        let ran = started.elapsed();
        if out.status.signal() == Some(9) {
            return (attempts, ran, None);
        }
        let seed = self.figures.seed;
        assert!(
            out.status.success(),
            "seed {seed}: attempts {attempts:?} (expect_version {latest}) were not killed but \
             failed: {:?} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let rows: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("append prints JSON");
        let mut acked = Vec::new();
        for (i, n) in attempts.iter().enumerate() {
            let row = &rows[i];
            let version = row["version"].as_u64().expect("version");
            assert_eq!(
                version,
                latest + 1 + i as u64,
                "seed {seed}: attempt {n}: {rows}"
            );
            acked.push((version, row["hash"].as_str().expect("hash").to_owned()));
        }
        (attempts, ran, Some(acked))
    }

    /// Reopens the store and checks it against what the episode knows; returns the attempt
    /// number of each record, in version order. Missing acknowledged records go to `ep.lost`;
    /// anything else wrong fails the test.
    fn check(&self, store: &Path, ep: &mut Episode) -> Vec<u64> {
        let seed = self.figures.seed;
        let run = |args: &[&str]| {
            let out = self.command(store, args).output().expect("run pactum");
            let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
            assert!(
                !stderr.contains("panicked"),
                "seed {seed}: {args:?}: {stderr}"
            );
            (out.status.code(), out.stdout, stderr)
        };
        // Without any acknowledged append, a store cut short in its creation may read as no
        // store at all, or as one without the agreement: never as anything worse.
        let absent = |code: Option<i32>, stderr: &str| {
            code == Some(1)
                && ep.acks.is_empty()
                && (stderr.contains("no store at") || stderr.contains("unknown agreement"))
        };
        let (code, stdout, stderr) = run(&["verify", "--format", "json"]);
        if !absent(code, &stderr) {
            assert_eq!(
                code,
                Some(0),
                "seed {seed}: verify after a kill: {stderr}{}",
                String::from_utf8_lossy(&stdout)
            );
        }
        let (code, stdout, stderr) = run(&["log", SLUG, "--format", "json"]);
        let records: Vec<serde_json::Value> = if absent(code, &stderr) {
            Vec::new()
        } else {
            assert_eq!(code, Some(0), "seed {seed}: log after a kill: {stderr}");
            serde_json::from_slice(&stdout).expect("log prints a JSON array")
        };
        let mut attempts = Vec::new();
        let mut prev_hash = "0".repeat(64);
        for (i, record) in records.iter().enumerate() {
            let version = i as u64 + 1;
            let context = format!("seed {seed}: record {i} of {}: {record}", store.display());
            assert_eq!(record["version"].as_u64(), Some(version), "{context}");
            let n = record["title"]
                .as_str()
                .and_then(|t| t.strip_prefix("attempt "))
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{context}: not a title the harness wrote"));
            assert!(ep.submitted.contains(&n), "{context}: never submitted here");
            assert!(
                !attempts.contains(&n),
                "{context}: attempt {n} is there twice"
            );
            assert_eq!(record["changes"], expected_changes(n), "{context}");
            assert_eq!(record["open"].is_null(), version != 1, "{context}");
            assert_eq!(
                record["prev_hash"].as_str(),
                Some(prev_hash.as_str()),
                "{context}"
            );
            prev_hash = record["hash"].as_str().expect("hash").to_owned();
            attempts.push(n);
        }
        for call in &ep.killed_calls {
            let there = call.iter().filter(|n| attempts.contains(n)).count();
            assert!(
                there == 0 || there == call.len(),
                "seed {seed}: {there} of the {} amendments of killed call {call:?} are there",
                call.len()
            );
        }
        for (&version, (hash, n)) in &ep.acks {
            let found = records.get(version as usize - 1);
            let same = found.is_some_and(|r| {
                r["hash"].as_str() == Some(hash.as_str())
                    && r["title"].as_str() == Some(title(*n).as_str())
            });
            if !same {
                println!("seed {seed}: LOST acknowledged v{version} (attempt {n}): {found:?}");
                ep.lost.insert(version);
            }
        }
        ep.latest = records.len() as u64;
        attempts
    }
}

/// Each attempt's title is unique, so a record names the attempt that wrote it.
fn title(n: u64) -> String {
    format!("attempt {n}")
}

/// The amendment file of attempt `n`, to follow version `latest`.
fn amendment(n: u64, latest: u64) -> String {
    let open = if latest == 0 {
        "[open]\nname = \"Crash harness\"\nparties = [\"Harness\"]\n"
    } else {
        ""
    };
    format!(
        "agreement = \"{SLUG}\"\ntitle = \"{}\"\neffective = 2024-01-01\n\
         expect_version = {latest}\n{open}\n[[set]]\nterm = \"k{n}\"\nvalue = {n}\n",
        title(n)
    )
}

/// The changes of attempt `n` as `pactum log` shows them.
fn expected_changes(n: u64) -> serde_json::Value {
    serde_json::json!([{
        "op": "set", "term": format!("k{n}"), "type": "int", "value": n,
        "text": null, "until": null
    }])
}

fn seed() -> u64 {
    match std::env::var("PACTUM_CRASH_SEED") {
        Ok(s) => s.parse().expect("PACTUM_CRASH_SEED is a u64"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// Runs episodes, each on a fresh store of 3 to 30 append attempts, until `kills` kills have
/// landed.
fn crash_run(kills: u64) -> Figures {
    let started = Instant::now();
    let mut h = Harness::new(seed());
    // How long an append runs, measured on a store of its own; kills spread over it.
    let scratch = h.env.path().join("measure");
    let mut times = Vec::new();
    for latest in 0..7 {
        let (_, ran, acked) = h.append(&scratch, latest, 1, None);
        assert!(acked.is_some());
        times.push(ran);
    }
    times.sort();
    h.figures.lifetime = times[times.len() / 2];
    let spread = (h.figures.lifetime * DELAY_QUARTERS / 4).as_micros() as u64;

    while h.figures.kills < kills {
        h.figures.stores += 1;
        let store = h.env.path().join(format!("store-{}", h.figures.stores));
        let mut ep = Episode::default();
        let length = 3 + h.rng.below(28);
        for _ in 0..length {
            if h.figures.kills >= kills {
                break;
            }
            let kill_after = (h.rng.below(100) < KILL_PERCENT)
                .then(|| Duration::from_micros(h.rng.below(spread + 1)));
            let latest = ep.latest;
            let count = 1 + h.rng.below(MOST_PER_CALL);
            h.figures.attempts += 1;
            let (ns, _, acked) = h.append(&store, latest, count, kill_after);
            ep.submitted.extend(&ns);
            match acked {
                Some(versions) => {
                    for ((version, hash), &n) in versions.into_iter().zip(&ns) {
                        h.figures.acknowledged += 1;
                        ep.acks.insert(version, (hash, n));
                        ep.latest = version;
                    }
                }
                None => {
                    h.figures.kills += 1;
                    if latest == 0 {
                        h.figures.kills_during_creation += 1;
                    }
                    ep.killed.extend(&ns);
                    if ns.len() > 1 {
                        ep.killed_calls.push(ns);
                    }
                    h.check(&store, &mut ep);
                }
            }
        }
        let present = h.check(&store, &mut ep);
        h.figures.present += present.len() as u64;
        h.figures.present_though_killed +=
            present.iter().filter(|n| ep.killed.contains(n)).count() as u64;
        h.figures.lost += ep.lost.len() as u64;
    }
    h.figures.elapsed = started.elapsed();
    println!("crash run: {}", h.figures);
    h.figures
}

#[test]
fn crash_short_run_loses_nothing() {
    let figures = crash_run(SHORT_RUN_KILLS);
    assert!(figures.kills >= SHORT_RUN_KILLS, "{figures}");
    assert_eq!(figures.lost, 0, "{figures}");
}

/// The long run: `PACTUM_CRASH_KILLS=500 cargo test --test integration crash_long -- --ignored
/// --nocapture` (docs/RELIABILITY.md).
#[test]
#[ignore = "long: run it by hand, see docs/RELIABILITY.md"]
fn crash_long_run_loses_nothing() {
    let kills = std::env::var("PACTUM_CRASH_KILLS")
        .map_or(500, |s| s.parse().expect("PACTUM_CRASH_KILLS is a number"));
    let figures = crash_run(kills);
    assert!(figures.kills >= kills, "{figures}");
    assert_eq!(figures.lost, 0, "{figures}");
}

/// Every directory under `dir` is 0700 and every file 0600; returns how many files it saw.
fn assert_owner_only_inside(dir: &Path) -> usize {
    let mut files = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let entry = entry.unwrap();
        let mode = entry.metadata().unwrap().permissions().mode() & 0o777;
        if entry.file_type().unwrap().is_dir() {
            assert_eq!(mode, 0o700, "{}", entry.path().display());
            files += assert_owner_only_inside(&entry.path());
        } else {
            assert_eq!(mode, 0o600, "{}", entry.path().display());
            files += 1;
        }
    }
    files
}

fn mode_of(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn a_new_store_is_readable_by_its_owner_only() {
    let env = Env::new();
    env.append(&[("v1.toml", OPENING)]);
    assert_eq!(mode_of(&env.store()), 0o700);
    assert!(assert_owner_only_inside(&env.store()) >= 2);
    // Parents made for the store keep the usual modes; only the store is closed.
    let nested = env.path().join("a/b/store");
    let file = env.write("v1.toml", OPENING);
    env.run(&["--store", nested.to_str().unwrap(), "append", &file])
        .ok();
    assert_eq!(mode_of(&nested), 0o700);
    let usual = env.path().join("usual");
    std::fs::create_dir(&usual).unwrap();
    assert_eq!(mode_of(&env.path().join("a")), mode_of(&usual));
    assert_owner_only_inside(&nested);
}

#[test]
fn a_directory_the_user_made_keeps_its_mode_and_its_files_are_closed() {
    let env = Env::new();
    std::fs::create_dir(env.store()).unwrap();
    std::fs::set_permissions(env.store(), std::fs::Permissions::from_mode(0o750)).unwrap();
    env.append(&[("v1.toml", OPENING)]);
    assert_eq!(mode_of(&env.store()), 0o750);
    assert_owner_only_inside(&env.store());
    // A file opened up since (a copy, an older pactum) is closed again by the next open, even
    // a read.
    std::fs::set_permissions(
        env.store().join("conf"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    env.run(&["agreements"]).ok();
    assert_owner_only_inside(&env.store());
}

/// A directory entry sled leaves behind: a file with its bytes, or (`None`) an empty directory.
type Leftover<'a> = (&'a str, Option<&'a [u8]>);

#[test]
fn a_store_whose_creation_was_cut_short_reopens() {
    let env = Env::new();
    env.append(&[("v1.toml", OPENING)]);
    let conf = std::fs::read(env.store().join("conf")).unwrap();
    let file = env.write("open.toml", OPENING);
    // What sled has written when it is cut short before its db file exists: an empty blobs/,
    // then conf, partly or wholly.
    let leftovers: [&[Leftover]; 4] = [
        &[],
        &[("blobs", None)],
        &[("blobs", None), ("conf", Some(b""))],
        &[("blobs", None), ("conf", Some(&conf))],
    ];
    for (i, entries) in leftovers.iter().enumerate() {
        let store = env.path().join(format!("cut-{i}"));
        std::fs::create_dir(&store).unwrap();
        for (name, content) in *entries {
            match content {
                None => std::fs::create_dir(store.join(name)).unwrap(),
                Some(bytes) => std::fs::write(store.join(name), bytes).unwrap(),
            }
        }
        let at = store.to_str().unwrap();
        let line = env.run(&["--store", at, "agreements"]).fails(1).to_owned();
        assert!(line.contains("no store at"), "{entries:?}: {line}");
        env.run(&["--store", at, "append", &file]).ok();
        env.run(&["--store", at, "verify"]).ok();
    }
}

/// Every raw record of the `amendments` tree, key and value bytes.
fn raw_records(env: &Env) -> Vec<(Vec<u8>, Vec<u8>)> {
    let store = pactum_store::SledStore::open(&env.store(), pactum_store::OpenMode::MustExist)
        .expect("open");
    let tree = store.raw_tree("amendments").expect("tree");
    tree.iter()
        .map(|kv| kv.map(|(k, v)| (k.to_vec(), v.to_vec())).expect("read"))
        .collect()
}

#[test]
fn records_are_never_rewritten() {
    let env = Env::new();
    env.append(&[("v1.toml", OPENING)]);
    let amend = |title: &str, extra: &str| {
        format!(
            "agreement = \"acme-initech\"\ntitle = \"{title}\"\neffective = 2025-01-01\n{extra}"
        )
    };
    env.append(&[(
        "v2.toml",
        &amend("Raise", "[[set]]\nterm = \"fees.annual\"\nvalue = 1\n"),
    )]);
    let before = raw_records(&env);
    // A correction and a removal: new records after the old ones, in one new key (one call,
    // one record pack).
    env.append(&[
        ("v3.toml", &amend("Withdraw the raise", "revokes = [2]\n")),
        (
            "v4.toml",
            &amend("Drop support", "[[remove]]\nterm = \"support.premium\"\n"),
        ),
    ]);
    let after = raw_records(&env);
    assert_eq!(after.len(), before.len() + 1);
    assert_eq!(
        &after[..before.len()],
        &before[..],
        "earlier records changed"
    );
    env.run(&["verify"]).ok();
}

/// A backup of `agreements` agreements of `each` amendments, as `export --all` writes it.
fn backup_of(env: &Env, agreements: usize, each: usize) -> String {
    let mut files = Vec::new();
    for a in 0..agreements {
        for v in 0..each {
            let open = if v == 0 {
                "[open]\nname = \"N\"\nparties = [\"A\", \"B\"]\n"
            } else {
                ""
            };
            let text = format!(
                "agreement = \"a{a:03}\"\ntitle = \"v{v}\"\neffective = 2024-01-{:02}\n{open}\
                 [[set]]\nterm = \"fee.t{}\"\nvalue = {v}\ntext = \"{}\"\n",
                v + 1,
                v % 4,
                "clause ".repeat(200)
            );
            files.push(env.write(&format!("b-{a}-{v}.toml"), &text));
        }
    }
    let mut args = vec!["append"];
    args.extend(files.iter().map(String::as_str));
    env.run(&args).ok();
    env.run(&["export", "--all"]).ok().to_owned()
}

/// A restore killed at a random moment leaves the store with the whole backup or with nothing
/// (what it wrote before its heads is swept at the next open), and a restore after it then
/// gives the whole backup.
#[test]
fn a_restore_cut_short_leaves_all_or_nothing() {
    let env = Env::new();
    // Records of about 1.5 KB: more than sled buffers in memory, so that a kill finds some of
    // them in its file before the heads are written.
    let backup_text = backup_of(&env, 100, 8);
    let backup = env.write("backup.jsonl", &backup_text);
    let mut rng = Rng::new(seed());
    let on = |store: &Path, args: &[&str]| {
        let mut all = vec!["--store", store.to_str().unwrap()];
        all.extend(args);
        env.run(&all)
    };
    // How long an uncut restore takes here, to spread the kills over it.
    let timed = env.path().join("timed");
    let started = Instant::now();
    on(&timed, &["restore", &backup]).ok();
    let full = started.elapsed();
    let mut outcomes = BTreeMap::new();
    for episode in 0..16 {
        let store = env.path().join(format!("cut-{episode}"));
        let delay = full.mul_f64(rng.below(125) as f64 / 100.0);
        let mut child = env
            .command(&["--store", store.to_str().unwrap(), "restore", &backup])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(delay);
        child.kill().unwrap();
        let killed = child.wait().unwrap().signal() == Some(9);
        let listed = on(&store, &["agreements", "--format", "json"]);
        let found = if listed.code == 0 {
            listed.json().as_array().map_or(0, Vec::len)
        } else {
            assert!(listed.stderr.contains("no store at"), "{}", listed.stderr);
            0
        };
        assert!(
            found == 0 || found == 100,
            "episode {episode}: {found} agreements"
        );
        if found == 0 {
            on(&store, &["restore", &backup]).ok();
        }
        assert_eq!(on(&store, &["export", "--all"]).ok(), backup_text);
        on(&store, &["verify"]).ok();
        *outcomes.entry((killed, found)).or_insert(0) += 1;
    }
    println!("restore took {full:?}; (killed, agreements found) -> episodes: {outcomes:?}");
}
