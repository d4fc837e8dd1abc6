//! Backup and restore through the binary: `export --all` → `restore` → `export --all` is byte
//! for byte the same, on real ledgers (revocations, every value type, the golden export); a
//! backup whose records were edited, reordered, duplicated or dropped, or a non-empty target,
//! is refused with one error line naming the line and the rule, and nothing is written.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;

use crate::common::{Env, Run};

/// The semantics ledger (acme-initech: revocations of revocations, lapses, retroactive
/// amendments) plus the Microsoft–OpenAI ledger of data/.
fn two_ledgers() -> Env {
    let mut env = crate::semantics::ledger();
    env.clock = "2026-02-01T00:00:00Z".into();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/microsoft-openai");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut args = vec!["append"];
    args.extend(files.iter().map(String::as_str));
    env.run(&args).ok();
    env
}

/// Runs a command against the store at `store` instead of the environment's.
fn run_on(env: &Env, store: &Path, args: &[&str]) -> Run {
    let mut all = vec!["--store", store.to_str().unwrap()];
    all.extend(args);
    env.run(&all)
}

fn export_all(env: &Env, store: &Path) -> String {
    run_on(env, store, &["export", "--all"]).ok().to_owned()
}

fn fresh(env: &Env, name: &str) -> PathBuf {
    env.path().join(name)
}

#[test]
fn export_restore_export_is_byte_identical() {
    let env = two_ledgers();
    let backup = env.run(&["export", "--all"]).ok().to_owned();
    let lines: Vec<&str> = backup.lines().collect();
    assert_eq!(lines.len(), 7 + 7);
    // Agreements in slug order, records in version order.
    let order: Vec<(String, u64)> = lines
        .iter()
        .map(|l| {
            let j: Json = serde_json::from_str(l).unwrap();
            (
                j["agreement"].as_str().unwrap().to_owned(),
                j["version"].as_u64().unwrap(),
            )
        })
        .collect();
    let mut sorted = order.clone();
    sorted.sort();
    assert_eq!(order, sorted);
    // Each agreement's part is what `export AGREEMENT` prints.
    let per_agreement = env.run(&["export", "acme-initech"]).ok().to_owned()
        + env.run(&["export", "microsoft-openai"]).ok();
    assert_eq!(backup, per_agreement);

    let file = env.write("backup.jsonl", &backup);
    let target = fresh(&env, "restored");
    let run = run_on(&env, &target, &["restore", &file]);
    let out = run.ok();
    assert!(
        out.starts_with("restored 14 amendment(s) of 2 agreement(s) into "),
        "{out}"
    );
    assert_eq!(export_all(&env, &target), backup);
    assert_eq!(
        run_on(&env, &target, &["agreements", "--format", "json"]).ok(),
        env.run(&["agreements", "--format", "json"]).ok()
    );
    assert!(run_on(&env, &target, &["verify"]).ok().starts_with("ok "));
    // Queries answer the same from the restored store.
    for args in [
        ["terms", "acme-initech", "--version", "4"].as_slice(),
        &["history", "microsoft-openai", "ip-license.exclusive"],
        &["replay", "acme-initech"],
    ] {
        assert_eq!(run_on(&env, &target, args).ok(), env.run(args).ok());
    }

    // From standard input, with JSON output: the restored agreements.
    let piped = fresh(&env, "piped");
    let mut args = vec!["--store", piped.to_str().unwrap()];
    args.extend(["restore", "-", "--format", "json"]);
    let json = env.run_with_stdin(&args, Some(&backup)).json();
    assert_eq!(json, env.run(&["agreements", "--format", "json"]).json());
    assert_eq!(export_all(&env, &piped), backup);
}

/// A backup given as a pipe (`restore <(zcat backup.gz)`) is read twice like any other: it is
/// copied to a temporary file first.
#[test]
fn a_backup_read_from_a_named_pipe_restores() {
    let env = two_ledgers();
    let backup = env.run(&["export", "--all"]).ok().to_owned();
    let fifo = env.path().join("backup.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    let writer = {
        let (fifo, backup) = (fifo.clone(), backup.clone());
        std::thread::spawn(move || std::fs::write(fifo, backup).unwrap())
    };
    let target = fresh(&env, "from-pipe");
    let out = run_on(&env, &target, &["restore", fifo.to_str().unwrap()]);
    writer.join().unwrap();
    assert!(out.ok().starts_with("restored 14 amendment(s)"));
    assert_eq!(export_all(&env, &target), backup);
}

#[test]
fn the_golden_export_restores_to_the_golden_hashes() {
    let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden-v1");
    let env = Env::new();
    let export = std::fs::read_to_string(golden.join("export.jsonl")).unwrap();
    let target = fresh(&env, "restored");
    run_on(
        &env,
        &target,
        &["restore", golden.join("export.jsonl").to_str().unwrap()],
    )
    .ok();
    assert_eq!(export_all(&env, &target), export);
    let verify: Json =
        serde_json::from_str(&std::fs::read_to_string(golden.join("verify.json")).unwrap())
            .unwrap();
    let restored = run_on(&env, &target, &["verify", "--format", "json"]).json();
    for (want, got) in verify
        .as_array()
        .unwrap()
        .iter()
        .zip(restored.as_array().unwrap())
    {
        for key in ["agreement", "version", "head_hash", "ok"] {
            assert_eq!(got[key], want[key], "{key}");
        }
    }
}

/// The backup's lines, changed by `edit`, are refused: exit 1, one line naming `line` and
/// containing `rule`, and the target store is not created.
#[track_caller]
fn refused(env: &Env, lines: &[String], line: usize, rule: &str) {
    let file = env.write("changed.jsonl", &(lines.join("\n") + "\n"));
    let target = fresh(env, "never");
    let run = run_on(env, &target, &["restore", &file]);
    let message = run.fails(1);
    assert!(
        message.starts_with(&format!("error: {file}:{line}: ")),
        "line {line}: {message}"
    );
    assert!(message.contains(rule), "{rule:?} in {message}");
    assert!(!target.exists(), "nothing is written: {}", target.display());
}

#[test]
fn changed_backups_are_refused_by_line_and_rule() {
    let env = two_ledgers();
    let backup = env.run(&["export", "--all"]).ok().to_owned();
    let lines: Vec<String> = backup.lines().map(str::to_owned).collect();
    let hash_rule = "its content does not match its hash";

    let mut value = lines.clone();
    value[1] = value[1].replace("130000.00", "100000.00");
    assert_ne!(value, lines);
    refused(&env, &value, 2, hash_rule);

    let mut title = lines.clone();
    title[0] = title[0].replace("Master subscription", "Master Subscription");
    assert_ne!(title, lines);
    refused(&env, &title, 1, hash_rule);

    let mut swapped = lines.clone();
    swapped.swap(2, 3);
    refused(&env, &swapped, 3, "version 4 comes after version 2");

    let mut middle = lines.clone();
    middle.remove(3);
    refused(&env, &middle, 4, "version 4 is missing");

    let first = lines[1..].to_vec();
    refused(&env, &first, 1, "starts at version 2");

    let mut twice = lines.clone();
    twice.insert(9, lines[8].clone());
    refused(&env, &twice, 10, "appears twice");

    let mut chain = lines.clone();
    chain.remove(7);
    refused(&env, &chain, 8, "starts at version 2");

    let mut junk = lines.clone();
    junk[5].truncate(40);
    refused(&env, &junk, 6, "not JSON");

    let mut field = lines.clone();
    field[0] = field[0].replacen('{', "{\"extra\":1,", 1);
    refused(&env, &field, 1, "unknown field `extra`");

    let missing = env.run(&["--store", "x", "restore", "no-such-file.jsonl"]);
    assert!(missing.fails(1).contains("no-such-file.jsonl: cannot read"));
}

#[test]
fn a_store_that_is_not_empty_is_refused_and_left_alone() {
    let env = two_ledgers();
    let backup = env.run(&["export", "--all"]).ok().to_owned();
    let file = env.write("backup.jsonl", &backup);
    let before = env.content();
    let line = env.run(&["restore", &file]).fails(1).to_owned();
    assert!(
        line.contains("is not empty (it holds 2 agreement(s))"),
        "{line}"
    );
    assert!(line.contains("nothing was written"), "{line}");
    assert_eq!(env.content(), before);

    // A backup of one agreement into a store that holds another: refused too.
    let other = Env::new();
    other.append(&[("o.toml", crate::common::OPENING)]);
    let line = other.run(&["restore", &file]).fails(1).to_owned();
    assert!(line.contains("not empty"), "{line}");
}

#[test]
fn export_needs_an_agreement_or_all() {
    let env = two_ledgers();
    assert!(env.run(&["export"]).fails(2).contains("<AGREEMENT>"));
    env.run(&["export", "acme-initech", "--all"]).fails(2);
    env.run(&["restore"]).fails(2);
    env.run(&["restore", "a", "b"]).fails(2);
    let empty = Env::new();
    let line = empty.run(&["export", "--all"]).fails(1).to_owned();
    assert!(line.contains("no store at"), "{line}");
}

/// Output that cannot be written (here a full disk: `/dev/full`) fails the command with one
/// `error:` line, exit 1; a backup that says nothing of a failed write would be believed.
/// A reader that closes the pipe early (`| head`) is not a failure.
#[test]
fn a_failed_write_of_the_output_is_an_error_a_closed_pipe_is_not() {
    let full = Path::new("/dev/full");
    if !full.exists() {
        return;
    }
    let env = two_ledgers();
    for args in [
        &["export", "--all"][..],
        &["export", "acme-initech"],
        &["log", "acme-initech", "--format", "json"],
        &["terms", "acme-initech"],
    ] {
        let out = env
            .command(args)
            .stdout(std::fs::File::create(full).unwrap())
            .stderr(std::process::Stdio::piped())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("error: cannot write the output: "),
            "{args:?}: {stderr}"
        );
    }
    // A reader that takes nothing and goes: the export stops, and says nothing.
    let mut child = env
        .command(&["export", "--all"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&out.stderr), "");
}

/// `export --all` writes each agreement as it reads it: when a later agreement cannot be read,
/// the earlier ones' lines stay on standard output, whole, and the exit code (1) and the one
/// error line say that the backup is not complete.
#[test]
fn an_export_that_cannot_read_an_agreement_fails_after_the_ones_before_it() {
    let env = two_ledgers();
    let whole = env.run(&["export", "--all"]).ok().to_owned();
    let first = env.run(&["export", "acme-initech"]).ok().to_owned();
    {
        // microsoft-openai comes after acme-initech: cut its first record short.
        let s =
            pactum_store::SledStore::open(&env.store(), pactum_store::OpenMode::MustExist).unwrap();
        let id = s
            .raw_tree("slugs")
            .unwrap()
            .get("microsoft-openai")
            .unwrap()
            .unwrap();
        let records = s.raw_tree("amendments").unwrap();
        let (key, _) = records.scan_prefix(&id).next().unwrap().unwrap();
        records.insert(key, &b"cut"[..]).unwrap();
        records.flush().unwrap();
    }
    let run = env.run(&["export", "--all"]);
    let line = run.fails(1);
    assert!(line.contains("microsoft-openai"), "{line}");
    assert_eq!(run.stdout, first);
    assert!(whole.starts_with(&first) && whole.len() > first.len());
}
