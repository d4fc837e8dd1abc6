//! Damage and rollback, through the binary on real stores. Bytes flipped in sled's files,
//! files truncated or deleted, records edited or deleted through the store's raw trees, a head
//! rolled back consistently, an older copy of the whole directory: for every such store, every
//! command exits 0 with the intact store's output, or 1 with one `error:` line, or (verify) 4;
//! never a panic, never a hang, and `verify --head` never says ok once the anchor is gone.
//! Also: a store in use is waited for, up to `--wait`.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use pactum_store::{OpenMode, SledStore};

use crate::common::{copy_dir, Env, Run, OPENING};

/// No command may take longer than this on a damaged store: a hang is a failure.
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

const SLUG: &str = "acme-initech";

fn amendment(n: u32) -> String {
    format!(
        "agreement = \"{SLUG}\"\ntitle = \"Amendment {n}\"\neffective = 2025-0{n}-01\n\
         [[set]]\nterm = \"fees.annual\"\nvalue = {{ amount = \"{n}0000.00\", currency = \"USD\" }}\n"
    )
}

/// acme-initech at version 3 and a second agreement; returns its latest anchor (`3:HASH`).
fn seeded() -> (Env, String) {
    let mut env = Env::new();
    env.append(&[("v1.toml", OPENING)]);
    env.clock = "2026-01-02T00:00:00Z".into();
    // One call each, so that each record has a key of its own to damage (a call's records
    // share one pack; the store's unit tests damage packs).
    env.append(&[("v2.toml", &amendment(2))]);
    env.append(&[("v3.toml", &amendment(3))]);
    env.clock = "2026-01-03T00:00:00Z".into();
    env.append(&[(
        "other.toml",
        "agreement = \"other\"\ntitle = \"Open\"\neffective = 2024-01-01\n[open]\nname = \"O\"\n\
         parties = [\"A\"]\n[[set]]\nterm = \"x\"\nvalue = 1\n",
    )]);
    let anchor = anchor(&env, &env.store(), 3);
    (env, anchor)
}

/// `N:HASH` of acme-initech's version `n` in the store at `store`.
fn anchor(env: &Env, store: &Path, n: usize) -> String {
    let log = on(env, store, &["log", SLUG, "--format", "json"]).json();
    let hash = log[n - 1]["hash"].as_str().expect("hash").to_owned();
    format!("{n}:{hash}")
}

/// Runs a command on the store at `store`, killing it if it outlives [`COMMAND_TIMEOUT`].
fn on(env: &Env, store: &Path, args: &[&str]) -> Run {
    let mut c = env.command(&[]);
    c.arg("--store")
        .arg(store)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().expect("spawn pactum");
    let start = Instant::now();
    while child.try_wait().expect("wait").is_none() {
        if start.elapsed() > COMMAND_TIMEOUT {
            let _ = child.kill();
            panic!("pactum {args:?} on {} hung", store.display());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let out = child.wait_with_output().expect("output");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !stderr.contains("panicked"),
        "pactum {args:?} panicked: {stderr}"
    );
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr,
    }
}

/// Every command a damaged store must survive; the last but one is `verify --head`.
fn commands(anchor: &str) -> Vec<Vec<String>> {
    [
        vec!["agreements"],
        vec!["log", SLUG],
        vec!["terms", SLUG],
        vec!["history", SLUG, "fees.annual"],
        vec!["replay", SLUG],
        vec!["export", SLUG],
        vec!["export", "--all"],
        vec!["verify"],
        vec!["verify", SLUG, "--head", anchor],
        vec!["verify", SLUG, "--format", "json"],
    ]
    .into_iter()
    .map(|c| c.into_iter().map(str::to_owned).collect())
    .collect()
}

/// Runs every command on the store at `store` and checks the promise; `label` names the damage.
/// Returns whether the damage showed (some command did not answer as the intact store did).
fn check_store(env: &Env, store: &Path, anchor: &str, intact: &[String], label: &str) -> bool {
    let mut differing = Vec::new();
    let mut failed = false;
    let mut head_ok = false;
    for (cmd, want) in commands(anchor).iter().zip(intact) {
        let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
        let run = on(env, store, &args);
        let is_verify = args[0] == "verify";
        match run.code {
            0 => {
                if run.stdout != *want {
                    differing.push(format!("{args:?}"));
                }
                if args.contains(&"--head") {
                    head_ok = true;
                }
            }
            1 => {
                failed = true;
                let line = run.stderr.trim_end();
                assert!(
                    line.starts_with("error: ") && line.lines().count() == 1,
                    "{label}: {args:?}: one error line, got {line:?}"
                );
                assert!(
                    run.stdout.is_empty(),
                    "{label}: {args:?} printed {}",
                    run.stdout
                );
            }
            4 if is_verify => {
                failed = true;
                assert!(
                    ["DAMAGED", "MISMATCH", "\"ok\": false"]
                        .iter()
                        .any(|w| run.stdout.contains(w)),
                    "{label}: {args:?}: exit 4 says why: {}",
                    run.stdout
                )
            }
            _ => panic!("{label}: {args:?}: {run:?}"),
        }
    }
    // The store may answer from an older, intact state (sled recovering to an earlier point):
    // then the anchor, taken from the intact store, must be missed.
    assert!(
        !head_ok || differing.is_empty(),
        "{label}: verify --head said ok, yet {differing:?} differ from the intact store"
    );
    failed || !differing.is_empty()
}

/// What the intact store's copy at `store` answers to every command.
fn intact_outputs(env: &Env, store: &Path, anchor: &str) -> Vec<String> {
    commands(anchor)
        .iter()
        .map(|cmd| {
            let args: Vec<&str> = cmd.iter().map(String::as_str).collect();
            on(env, store, &args).ok().to_owned()
        })
        .collect()
}

/// A damage done to a copy of the store directory.
type Damage = Box<dyn Fn(&Path) + Send + Sync>;

fn flip(name: String, offset: u64) -> Damage {
    Box::new(move |dir| {
        let path = dir.join(&name);
        let mut bytes = fs::read(&path).unwrap();
        if let Some(b) = bytes.get_mut(offset as usize) {
            *b ^= 0xff;
        }
        fs::write(&path, bytes).unwrap();
    })
}

fn truncate(name: String, len: u64) -> Damage {
    Box::new(move |dir| {
        let f = fs::OpenOptions::new()
            .write(true)
            .open(dir.join(&name))
            .unwrap();
        f.set_len(len).unwrap();
    })
}

fn delete(name: String) -> Damage {
    Box::new(move |dir| {
        let path = dir.join(&name);
        if path.is_dir() {
            fs::remove_dir_all(path).unwrap();
        } else {
            fs::remove_file(path).unwrap();
        }
    })
}

/// `n` offsets spread over `0..len`, ends included.
fn spread(len: u64, n: u64) -> Vec<u64> {
    let mut v: Vec<u64> = (0..n)
        .map(|i| i * len.saturating_sub(1) / (n - 1).max(1))
        .collect();
    v.dedup();
    v
}

#[test]
fn damaged_files_give_errors_or_exit_4_never_panics_or_false_oks() {
    let (env, anchor) = seeded();
    // A read makes sled write a snapshot file: damage that too.
    on(&env, &env.store(), &["verify"]).ok();
    let pristine = env.path().join("pristine");
    copy_dir(&env.store(), &pristine);
    let intact = intact_outputs(&env, &env.store(), &anchor);

    let names: Vec<String> = fs::read_dir(&pristine)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let snap = names
        .iter()
        .find(|n| n.starts_with("snap."))
        .expect("a snapshot file")
        .clone();
    let len = |name: &str| fs::metadata(pristine.join(name)).unwrap().len();
    // The db file is mostly sled's zero-filled segment: aim at the bytes it wrote.
    let db = fs::read(pristine.join("db")).unwrap();
    let used = db.iter().rposition(|b| *b != 0).map_or(1, |p| p as u64 + 1);

    let mut damages: Vec<(String, Damage)> = Vec::new();
    for off in spread(used, 30)
        .into_iter()
        .chain([used + 7, len("db") - 1])
    {
        damages.push((format!("db byte {off} flipped"), flip("db".into(), off)));
    }
    for name in ["conf".to_owned(), snap.clone()] {
        for off in spread(len(&name), 8) {
            damages.push((
                format!("{name} byte {off} flipped"),
                flip(name.clone(), off),
            ));
        }
    }
    for (name, lens) in [
        ("db".to_owned(), vec![0, 100, used / 2, used - 1, used]),
        ("conf".to_owned(), vec![0, 20]),
        (snap.clone(), vec![0, len(&snap) / 2]),
    ] {
        for l in lens {
            damages.push((
                format!("{name} cut to {l} bytes"),
                truncate(name.clone(), l),
            ));
        }
    }
    for name in ["db", "conf", snap.as_str(), "blobs"] {
        damages.push((format!("{name} deleted"), delete(name.to_owned())));
    }
    assert!(damages.len() >= 50, "{}", damages.len());

    // Two at a time: the machine is shared.
    let next = AtomicUsize::new(0);
    let shown = AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some((label, damage)) = damages.get(i) else {
                    break;
                };
                let copy = env.path().join(format!("damaged-{i}"));
                copy_dir(&pristine, &copy);
                damage(&copy);
                if check_store(&env, &copy, &anchor, &intact, label) {
                    shown.fetch_add(1, Ordering::Relaxed);
                }
                let _ = fs::remove_dir_all(&copy);
            });
        }
    });
    // Most damage lands where sled keeps data and is caught; some lands in bytes it never
    // reads back (padding, a file it rebuilds) and changes nothing.
    let shown = shown.into_inner();
    eprintln!(
        "{shown} of {} damaged stores showed the damage",
        damages.len()
    );
    assert!(shown * 2 > damages.len(), "{shown} of {}", damages.len());
}

/// Opens the store in the test process (holding sled's lock), runs `f` on its raw trees, and
/// makes the change durable before the binary looks.
fn with_trees(store: &Path, f: impl FnOnce(&SledStore)) {
    let s = SledStore::open(store, OpenMode::MustExist).unwrap();
    f(&s);
    for tree in ["amendments", "agreements", "slugs"] {
        s.raw_tree(tree).unwrap().flush().unwrap();
    }
}

/// The raw key of acme-initech's record `version`, and its value.
fn record(s: &SledStore, version: u64) -> (Vec<u8>, Vec<u8>) {
    let id = s.raw_tree("slugs").unwrap().get(SLUG).unwrap().unwrap();
    let mut key = id.to_vec();
    key.extend(version.to_be_bytes());
    let value = s
        .raw_tree("amendments")
        .unwrap()
        .get(&key)
        .unwrap()
        .unwrap();
    (key, value.to_vec())
}

#[test]
fn edited_and_deleted_records_are_found_and_lose_the_anchor() {
    let (env, anchor) = seeded();
    let intact = intact_outputs(&env, &env.store(), &anchor);
    type RawDamage = fn(&SledStore);
    let cases: [(&str, RawDamage); 4] = [
        ("record v2 edited", |s| {
            let (k, v) = record(s, 2);
            let mut bytes = v;
            let at = bytes.windows(9).position(|w| w == b"Amendment").unwrap();
            bytes[at] ^= 0x20;
            s.raw_tree("amendments").unwrap().insert(k, bytes).unwrap();
        }),
        ("record v3 edited in its hash", |s| {
            let (k, v) = record(s, 3);
            let mut bytes = v;
            let last = bytes.len() - 1;
            bytes[last] ^= 1;
            s.raw_tree("amendments").unwrap().insert(k, bytes).unwrap();
        }),
        ("record v2 deleted", |s| {
            let (k, _) = record(s, 2);
            s.raw_tree("amendments").unwrap().remove(k).unwrap();
        }),
        ("record v3 deleted, head left", |s| {
            let (k, _) = record(s, 3);
            s.raw_tree("amendments").unwrap().remove(k).unwrap();
        }),
    ];
    for (label, damage) in cases {
        let copy = env.path().join(label.replace(' ', "-"));
        copy_dir(&env.store(), &copy);
        with_trees(&copy, damage);
        assert!(check_store(&env, &copy, &anchor, &intact, label), "{label}");
        assert_eq!(on(&env, &copy, &["verify"]).code, 4, "{label}");
        let head = on(&env, &copy, &["verify", SLUG, "--head", &anchor]);
        assert_eq!(head.code, 4, "{label}: {head:?}");
    }
}

#[test]
fn a_last_record_removed_with_its_head_rolled_back_fails_only_the_anchor() {
    let mut env = Env::new();
    env.append(&[("v1.toml", OPENING), ("v2.toml", &amendment(2))]);
    // The head as it stood at version 2, raw.
    let head_at_2 = {
        let s = SledStore::open(&env.store(), OpenMode::MustExist).unwrap();
        let id = s.raw_tree("slugs").unwrap().get(SLUG).unwrap().unwrap();
        let head = s.raw_tree("agreements").unwrap().get(&id).unwrap().unwrap();
        (id, head)
    };
    let v2 = anchor(&env, &env.store(), 2);
    env.clock = "2026-01-02T00:00:00Z".into();
    env.append(&[("v3.toml", &amendment(3))]);
    let v3 = anchor(&env, &env.store(), 3);
    assert_eq!(env.run(&["verify", SLUG, "--head", &v3]).code, 0);

    with_trees(&env.store(), |s| {
        let (k, _) = record(s, 3);
        s.raw_tree("amendments").unwrap().remove(&k).unwrap();
        let (id, head) = head_at_2.clone();
        s.raw_tree("agreements").unwrap().insert(id, head).unwrap();
        // A thorough rollback takes the query index back too (v3 was appended alone: its
        // segment has the record's key); verify would report one left past the head.
        s.raw_tree("idx_segments").unwrap().remove(&k).unwrap();
    });
    // Consistent on its own: plain verify cannot tell.
    let plain = env.run(&["verify", SLUG]);
    assert!(
        plain.ok().starts_with("ok acme-initech: 2 version(s)"),
        "{plain:?}"
    );
    // The anchor kept from the append of version 3 can.
    let run = env.run(&["verify", SLUG, "--head", &v3]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stdout.starts_with("MISMATCH acme-initech"),
        "{}",
        run.stdout
    );
    let json = env.run(&["verify", SLUG, "--head", &v3, "--format", "json"]);
    assert_eq!(json.code, 4);
    let j: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(j[0]["chain"], "intact");
    assert_eq!(j[0]["records_checked"], 2);
    assert_eq!(j[0]["anchor"]["version"], 3);
    assert_eq!(j[0]["anchor"]["found"], false);
    assert_eq!(j[0]["ok"], false);
    // The hash alone, without its version, is not there either; the older anchor still is.
    let bare = v3.split_once(':').unwrap().1;
    assert_eq!(env.run(&["verify", SLUG, "--head", bare]).code, 4);
    let older = env.run(&["verify", SLUG, "--head", &v2]);
    assert!(older.ok().contains("holds anchor v2:"), "{}", older.stdout);
}

#[test]
fn an_older_copy_of_the_store_is_caught_by_the_anchor() {
    let mut env = Env::new();
    env.append(&[("v1.toml", OPENING), ("v2.toml", &amendment(2))]);
    let old: PathBuf = env.path().join("old-copy");
    copy_dir(&env.store(), &old);
    env.clock = "2026-01-02T00:00:00Z".into();
    let appended = env.run(&[
        "append",
        &env.write("v3.toml", &amendment(3)),
        "--format",
        "json",
    ]);
    let a = &appended.json()[0];
    let anchor = format!("{}:{}", a["version"], a["hash"].as_str().unwrap());
    assert_eq!(env.run(&["verify", SLUG, "--head", &anchor]).code, 0);

    // The directory replaced by the copy taken before version 3.
    fs::remove_dir_all(env.store()).unwrap();
    fs::rename(&old, env.store()).unwrap();
    assert_eq!(env.run(&["verify"]).code, 0);
    let run = env.run(&["verify", SLUG, "--head", &anchor]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(
        run.stdout.contains("does NOT hold anchor v3:"),
        "{}",
        run.stdout
    );
}

#[test]
fn head_needs_an_agreement_and_a_full_hash() {
    let (env, anchor) = seeded();
    assert!(env
        .run(&["verify", "--head", &anchor])
        .fails(2)
        .contains("<AGREEMENT>"));
    let short = &anchor[..14];
    assert!(env
        .run(&["verify", SLUG, "--head", short])
        .fails(2)
        .contains("is not an anchor"));
    env.run(&["verify", "nobody", "--head", &anchor]).fails(1);
}

#[test]
fn a_store_in_use_is_waited_for_up_to_the_bound() {
    let (env, _) = seeded();
    let held = SledStore::open(&env.store(), OpenMode::MustExist).unwrap();

    let start = Instant::now();
    let line = env.run(&["agreements", "--wait", "1"]).fails(1).to_owned();
    let waited = start.elapsed();
    assert!(
        line.ends_with("is in use by another process; waited 1 s"),
        "{line}"
    );
    assert!(waited >= Duration::from_secs(1), "{waited:?}");
    assert!(waited < Duration::from_secs(10), "{waited:?}");

    let start = Instant::now();
    let line = env.run(&["agreements", "--wait", "0"]).fails(1).to_owned();
    // The message says it did not wait; the bound only catches a wait or a hang, not a slow
    // machine.
    assert!(line.ends_with("is in use by another process"), "{line}");
    assert!(
        start.elapsed() < Duration::from_secs(10),
        "no wait: {:?}",
        start.elapsed()
    );

    env.run(&["agreements", "--wait", "-1"]).fails(2);
    env.run(&["agreements", "--wait", "soon"]).fails(2);

    // Released during the wait: the command goes through.
    let child = env
        .command(&["agreements", "--wait", "20"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(500));
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains(SLUG));
}
