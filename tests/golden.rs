//! Format stability: tests/fixtures/golden-v1 and golden-v2 are stores written by format
//! versions 1 and 2 (see their READMEs). Every later pactum must open each, verify it, export
//! it byte for byte and answer queries from it as it did when it was made. The committed stores
//! are never opened in place (sled writes on open): each test works on a copy.

use std::fs;
use std::path::Path;

use pactum_store::{OpenMode, SledStore, StoreError, FORMAT_VERSION};
use serde_json::Value;

use crate::common::{copy_dir, Env, OPENING};

/// A committed store, and its heads as made, pinned here too, so that regenerating a fixture's
/// files together (which its README forbids) still fails a test.
struct Golden {
    dir: &'static str,
    heads: [(&'static str, u64, &'static str); 2],
}

const GOLDENS: [Golden; 2] = [
    Golden {
        dir: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden-v1"),
        heads: [
            (
                "acme-initech",
                4,
                "d5c30ff709fbd9230a1c758ca320238ca0fcf51da685c173a2cd271dbc2503e7",
            ),
            (
                "microsoft-openai",
                7,
                "0c98f4beb775a4d9727ed31993c99c0c3facad1439628bf02a6fb38bf88f60db",
            ),
        ],
    },
    // Format 2: microsoft-openai's seven records were appended in one call, so they are
    // stored in record packs; acme-initech's one by one, each alone.
    Golden {
        dir: concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/golden-v2"),
        heads: [
            (
                "acme-initech",
                4,
                "0326fe9c4b1e6fe2cb5bf2837a359f93406752854f669042dce29ebe49db0971",
            ),
            (
                "microsoft-openai",
                7,
                "0c98f4beb775a4d9727ed31993c99c0c3facad1439628bf02a6fb38bf88f60db",
            ),
        ],
    },
];

impl Golden {
    fn fixture(&self, name: &str) -> String {
        let path = Path::new(self.dir).join(name);
        fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    fn fixture_json(&self, name: &str) -> Value {
        serde_json::from_str(&self.fixture(name))
            .unwrap_or_else(|e| panic!("{}/{name}: {e}", self.dir))
    }
}

/// An environment whose store is a fresh copy of a golden store.
fn golden(g: &Golden) -> Env {
    let env = Env::new();
    copy_dir(&Path::new(g.dir).join("store"), &env.store());
    // git keeps no empty directories; sled's is recreated if missing, but make the copy whole.
    fs::create_dir_all(env.store().join("blobs")).unwrap();
    env
}

/// `actual` says at least what `expected` says: every object key of `expected` is in `actual`
/// with a matching value, arrays match item for item. Fields a later version adds to an output
/// do not break the fixture; a changed or missing one does.
#[track_caller]
fn assert_includes(actual: &Value, expected: &Value, at: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, ev) in e {
                let av = a
                    .get(k)
                    .unwrap_or_else(|| panic!("{at}.{k} is missing from {actual}"));
                assert_includes(av, ev, &format!("{at}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{at}: {actual} vs {expected}");
            for (i, (av, ev)) in a.iter().zip(e).enumerate() {
                assert_includes(av, ev, &format!("{at}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "at {at}"),
    }
}

#[test]
fn the_golden_stores_verify() {
    for g in &GOLDENS {
        golden_verifies(g);
    }
}

fn golden_verifies(g: &Golden) {
    let env = golden(g);
    let run = env.run(&["verify", "--format", "json"]);
    let reports = run.json();
    assert_includes(&reports, &g.fixture_json("verify.json"), "verify");
    for (report, (slug, version, hash)) in reports.as_array().unwrap().iter().zip(g.heads) {
        assert_eq!(
            (
                &report["agreement"],
                &report["version"],
                &report["head_hash"]
            ),
            (
                &Value::from(slug),
                &Value::from(version),
                &Value::from(hash)
            )
        );
    }
    for slug in ["acme-initech", "microsoft-openai"] {
        env.run(&["verify", slug]).ok();
    }
}

#[test]
fn the_golden_stores_export_byte_for_byte() {
    for g in &GOLDENS {
        golden_exports(g);
    }
}

fn golden_exports(g: &Golden) {
    let env = golden(g);
    let heads = env.run(&["agreements", "--format", "json"]).json();
    let slugs: Vec<&str> = heads
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["agreement"].as_str().unwrap())
        .collect();
    assert_eq!(slugs, ["acme-initech", "microsoft-openai"]);
    let export: String = slugs
        .iter()
        .map(|s| env.run(&["export", s]).ok().to_owned())
        .collect();
    assert_eq!(export, g.fixture("export.jsonl"), "{}", g.dir);
}

#[test]
fn the_golden_stores_answer_terms_queries() {
    for g in &GOLDENS {
        golden_answers(g);
    }
}

fn golden_answers(g: &Golden) {
    let env = golden(g);
    for (args, expected) in [
        (
            vec!["terms", "acme-initech", "--on", "2025-06-01"],
            "terms-acme-initech-2025-06-01.json",
        ),
        // Before the correction: the revoked fee rise is still in force at version 3.
        (
            vec![
                "terms",
                "acme-initech",
                "--version",
                "3",
                "--on",
                "2025-06-01",
            ],
            "terms-acme-initech-v3-2025-06-01.json",
        ),
        (
            vec!["terms", "microsoft-openai", "--on", "2026-06-01"],
            "terms-microsoft-openai-2026-06-01.json",
        ),
    ] {
        let mut args = args;
        args.extend(["--format", "json"]);
        assert_eq!(
            env.run(&args).json(),
            g.fixture_json(expected),
            "{}: {args:?}",
            g.dir
        );
    }
}

/// A store of an old format is not read-only: it takes new amendments and stays intact.
#[test]
fn the_golden_stores_take_new_amendments() {
    for g in &GOLDENS {
        golden_takes_amendments(g);
    }
}

fn golden_takes_amendments(g: &Golden) {
    let env = golden(g);
    let next = OPENING
        .replace("acme-initech", "new-agreement")
        .replace("title = \"Master", "expect_version = 0\ntitle = \"Master");
    env.append(&[("new.toml", &next)]);
    let more = "agreement = \"acme-initech\"\ntitle = \"More\"\neffective = 2025-04-01\n\
                expect_version = 4\n[[set]]\nterm = \"term.years\"\nvalue = 5\n";
    let run = env.append(&[("more.toml", more)]);
    assert!(run.stdout.contains("v5"), "{}", run.stdout);
    let verify = env.run(&["verify", "--format", "json"]).json();
    assert_eq!(verify.as_array().unwrap().len(), 3);
    for report in verify.as_array().unwrap() {
        assert_eq!(report["ok"], true, "{report}");
    }
}

#[test]
fn a_store_of_a_newer_format_is_refused_by_name_and_number() {
    let env = golden(&GOLDENS[1]);
    let newer = FORMAT_VERSION + 1;
    {
        let store = SledStore::open(&env.store(), OpenMode::MustExist).unwrap();
        let meta = store.raw_tree("__sled__default").unwrap();
        meta.insert("pactum.format", &newer.to_be_bytes()).unwrap();
        meta.flush().unwrap();
    }
    // Waiting as the CLI does: sled lets go of its lock on the directory a moment after the
    // store above is dropped, from a thread of its own.
    let wait = std::time::Duration::from_secs(3);
    match SledStore::open_waiting(&env.store(), OpenMode::MustExist, wait) {
        Err(StoreError::NewerFormat {
            found, supported, ..
        }) => assert_eq!((found, supported), (newer, FORMAT_VERSION)),
        Err(e) => panic!("expected NewerFormat, got {e}"),
        Ok(_) => panic!("a store of format {newer} was opened"),
    }
    for args in [
        vec!["agreements"],
        vec!["verify"],
        vec!["export", "acme-initech"],
    ] {
        let line = env.run(&args).fails(1).to_owned();
        assert!(
            line.contains(&format!("format version {newer}"))
                && line.contains(&format!("supports ({FORMAT_VERSION})")),
            "{args:?}: {line}"
        );
    }
    let line = env
        .run(&["append", &env.write("open.toml", OPENING)])
        .fails(1)
        .to_owned();
    assert!(line.contains("upgrade pactum"), "{line}");
}

/// What makes golden-v2 a format-2 store: its format key, and records in packs (a value that
/// starts with the pack byte 0x02 and holds several records under one key).
#[test]
fn the_golden_v2_store_holds_record_packs() {
    let env = golden(&GOLDENS[1]);
    let store = SledStore::open(&env.store(), OpenMode::MustExist).unwrap();
    let format = store.raw_tree("__sled__default").unwrap();
    let format = format.get("pactum.format").unwrap().unwrap();
    assert_eq!(format.as_ref(), 2u32.to_be_bytes());
    let values: Vec<u8> = store
        .raw_tree("amendments")
        .unwrap()
        .iter()
        .map(|kv| kv.unwrap().1[0])
        .collect();
    assert!(values.contains(&2), "{values:?}");
    assert!(values.contains(&1), "{values:?}");
    assert!(values.len() < 11, "{values:?}");
}
