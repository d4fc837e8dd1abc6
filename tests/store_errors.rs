//! The store's promises through the binary: damage is found by `verify` (exit 4), a store held
//! by another process, a path that is not a store and a newer format are clear errors, never
//! panics.

use pactum_store::{OpenMode, SledStore};

use crate::common::{Env, OPENING};

fn seeded() -> Env {
    let env = Env::new();
    env.append(&[("v1.toml", OPENING)]);
    env.append(&[(
        "v2.toml",
        "agreement = \"acme-initech\"\ntitle = \"t\"\neffective = 2025-01-01\n[[set]]\nterm = \"x\"\nvalue = 1\n",
    )]);
    env
}

#[test]
fn a_flipped_byte_in_a_record_is_found_by_verify() {
    let env = seeded();
    {
        let store = SledStore::open(&env.store(), OpenMode::MustExist).unwrap();
        let tree = store.raw_tree("amendments").unwrap();
        let (key, value) = tree.iter().next().unwrap().unwrap();
        let mut damaged = value.to_vec();
        // A byte inside the title, well past the envelope and length prefixes.
        let at = damaged
            .windows(6)
            .position(|w| w == b"Master")
            .expect("title bytes");
        damaged[at] ^= 0x20;
        tree.insert(key, damaged).unwrap();
        tree.flush().unwrap();
    }
    let run = env.run(&["verify"]);
    assert_eq!(run.code, 4, "{run:?}");
    assert!(run.stdout.contains("DAMAGED"), "{}", run.stdout);
    assert!(run.stdout.contains("v1"), "{}", run.stdout);
    let json = env.run(&["verify", "acme-initech", "--format", "json"]);
    assert_eq!(json.code, 4);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).unwrap();
    assert_eq!(v[0]["ok"], false);
    // Reads of a damaged store still answer without panicking.
    for args in [
        vec!["terms", "acme-initech"],
        vec!["log", "acme-initech"],
        vec!["history", "acme-initech", "x"],
    ] {
        let run = env.run(&args);
        assert!(run.code == 0 || run.code == 1, "{run:?}");
    }
}

#[test]
fn a_store_held_by_another_process_is_a_clear_error() {
    let env = seeded();
    let _held = SledStore::open(&env.store(), OpenMode::MustExist).unwrap();
    let line = env.run(&["agreements"]).fails(1).to_owned();
    assert!(line.contains("in use"), "{line}");
    let line = env
        .run(&["append", &env.write("x.toml", OPENING)])
        .fails(1)
        .to_owned();
    assert!(line.contains("in use"), "{line}");
}

#[test]
fn a_path_that_is_not_a_store_is_refused_and_left_alone() {
    let env = Env::new();
    let file = env.write("notes.txt", "my notes");
    let dir = env.path().join("junk");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(dir.join("readme"), "not a store").unwrap();
    for path in [file.as_str(), dir.to_str().unwrap()] {
        let line = env
            .run(&["--store", path, "agreements"])
            .fails(1)
            .to_owned();
        assert!(line.contains(path), "{line}");
        let opening = env.write("open.toml", OPENING);
        env.run(&["--store", path, "append", &opening]).fails(1);
    }
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "my notes");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 1);
}

#[test]
fn a_store_of_a_newer_format_is_refused() {
    let env = seeded();
    {
        let store = SledStore::open(&env.store(), OpenMode::MustExist).unwrap();
        let meta = store.raw_tree("__sled__default").unwrap();
        meta.insert("pactum.format", &99u32.to_be_bytes()).unwrap();
        meta.flush().unwrap();
    }
    let line = env.run(&["agreements"]).fails(1).to_owned();
    assert!(line.contains("99"), "{line}");
}
