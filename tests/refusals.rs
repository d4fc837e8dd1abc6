//! Every refusal of SPEC §2: a one-line `error:` naming the file and the rule, exit 1 (3 for a
//! version conflict), and the store's content (heads and every record) unchanged.

use crate::common::{Env, OPENING};

const AMEND_HEAD: &str = "agreement = \"acme-initech\"\ntitle = \"An amendment\"\n";

/// (case, file content, expected exit code, words the message must contain)
fn cases() -> Vec<(&'static str, String, i32, Vec<&'static str>)> {
    let amend = |body: &str| format!("{AMEND_HEAD}{body}");
    vec![
        (
            "syntax error",
            amend("effective = 2025-01-01\n[[set]\nterm = \"x\"\n"),
            1,
            vec!["bad.toml:4:"],
        ),
        (
            "unknown field",
            amend("effective = 2025-01-01\ncolour = \"red\"\n[[set]]\nterm = \"x\"\nvalue = 1\n"),
            1,
            vec!["bad.toml:", "colour"],
        ),
        (
            "unknown field in set",
            amend("effective = 2025-01-01\n[[set]]\nterm = \"x\"\nvalue = 1\nnote = \"n\"\n"),
            1,
            vec!["bad.toml:", "note"],
        ),
        (
            "malformed slug",
            "agreement = \"Acme_Initech\"\ntitle = \"t\"\neffective = 2025-01-01\n[[set]]\nterm = \"x\"\nvalue = 1\n".into(),
            1,
            vec!["bad.toml", "slug"],
        ),
        (
            "malformed term key",
            amend("effective = 2025-01-01\n[[set]]\nterm = \"Fees..Annual\"\nvalue = 1\n"),
            1,
            vec!["bad.toml", "Fees..Annual"],
        ),
        (
            "malformed date",
            amend("effective = \"first of May\"\n[[set]]\nterm = \"x\"\nvalue = 1\n"),
            1,
            vec!["bad.toml", "effective"],
        ),
        (
            "datetime instead of date",
            amend("effective = 2025-01-01T10:00:00Z\n[[set]]\nterm = \"x\"\nvalue = 1\n"),
            1,
            vec!["bad.toml", "effective"],
        ),
        (
            "malformed currency",
            amend("effective = 2025-01-01\n[[set]]\nterm = \"x\"\nvalue = { amount = \"1.00\", currency = \"usd\" }\n"),
            1,
            vec!["bad.toml", "usd"],
        ),
        (
            "missing title",
            "agreement = \"acme-initech\"\neffective = 2025-01-01\n[[set]]\nterm = \"x\"\nvalue = 1\n".into(),
            1,
            vec!["bad.toml", "title"],
        ),
        (
            "missing effective",
            amend("[[set]]\nterm = \"x\"\nvalue = 1\n"),
            1,
            vec!["bad.toml", "effective"],
        ),
        (
            "changes nothing",
            amend("effective = 2025-01-01\n"),
            1,
            vec!["bad.toml", "changes nothing"],
        ),
        (
            "term twice",
            amend("effective = 2025-01-01\n[[set]]\nterm = \"x\"\nvalue = 1\n[[remove]]\nterm = \"x\"\n"),
            1,
            vec!["bad.toml", "twice"],
        ),
        (
            "remove of a term not in force",
            amend("effective = 2025-01-01\n[[remove]]\nterm = \"never.set\"\n"),
            1,
            vec!["bad.toml", "never.set", "not in force"],
        ),
        (
            "remove of a term lapsed on its effective date",
            amend("effective = 2027-06-01\n[[remove]]\nterm = \"fees.annual\"\n"),
            1,
            vec!["bad.toml", "fees.annual", "not in force"],
        ),
        (
            "open on an existing agreement",
            amend("effective = 2025-01-01\n[open]\nname = \"n\"\nparties = [\"p\"]\n"),
            1,
            vec!["bad.toml", "already exists"],
        ),
        (
            "open missing for a new agreement",
            "agreement = \"new-one\"\ntitle = \"t\"\neffective = 2025-01-01\n[[set]]\nterm = \"x\"\nvalue = 1\n".into(),
            1,
            vec!["bad.toml", "new-one", "open"],
        ),
        (
            "effective before the first amendment",
            amend("effective = 2023-12-31\n[[set]]\nterm = \"x\"\nvalue = 1\n"),
            1,
            vec!["bad.toml", "before"],
        ),
        (
            "revokes a version that does not exist",
            amend("effective = 2025-01-01\nrevokes = [9]\n"),
            1,
            vec!["bad.toml", "9"],
        ),
        (
            "revokes the opening",
            amend("effective = 2025-01-01\nrevokes = [1]\n"),
            1,
            vec!["bad.toml", "version 1"],
        ),
        (
            "revokes an already revoked version",
            amend("effective = 2025-01-01\nrevokes = [2]\n"),
            1,
            vec!["bad.toml", "already revoked"],
        ),
        (
            "expect_version does not match",
            amend("effective = 2025-01-01\nexpect_version = 1\n[[set]]\nterm = \"x\"\nvalue = 1\n"),
            3,
            vec!["bad.toml", "conflict"],
        ),
    ]
}

/// A store at version 3: the opening, an amendment, and a correction that revokes it.
fn seeded() -> Env {
    let env = Env::new();
    env.append(&[
        ("v1.toml", OPENING),
        (
            "v2.toml",
            &format!(
                "{AMEND_HEAD}effective = 2024-06-01\n[[set]]\nterm = \"notice.days\"\nvalue = 90\n"
            ),
        ),
        (
            "v3.toml",
            &format!("{AMEND_HEAD}effective = 2024-07-01\nrevokes = [2]\n"),
        ),
    ]);
    env
}

#[test]
fn each_refusal_names_the_file_and_rule_and_writes_nothing() {
    let env = seeded();
    let before = env.content();
    assert!(before.contains("\"version\": 3"), "{before}");
    let mut messages = String::new();
    for (case, content, code, words) in cases() {
        let bad = env.write("bad.toml", &content);
        let run = env.run(&["append", &bad]);
        let line = run.fails(code).to_owned();
        for w in words {
            assert!(line.contains(w), "{case}: {line:?} lacks {w:?}");
        }
        assert_eq!(env.content(), before, "{case}: the store changed");
        messages.push_str(&format!(
            "{case}: {}\n",
            line.replace(env.path().to_str().unwrap(), "$DIR")
        ));
    }
    insta::assert_snapshot!(messages);
}

#[test]
fn several_files_are_all_or_nothing() {
    let env = seeded();
    let before = env.content();
    let good = env.write(
        "good.toml",
        &format!("{AMEND_HEAD}effective = 2025-01-01\n[[set]]\nterm = \"x\"\nvalue = 1\n"),
    );
    let new_agreement = env.write(
        "new.toml",
        "agreement = \"other\"\ntitle = \"t\"\neffective = 2025-01-01\n[open]\nname = \"n\"\nparties = [\"p\"]\n",
    );
    // Bad in parsing, and bad only against the history: neither lets the good files through.
    for bad in [
        format!("{AMEND_HEAD}effective = 2025-01-01\n"),
        format!("{AMEND_HEAD}effective = 2025-01-01\n[[remove]]\nterm = \"nope\"\n"),
    ] {
        let bad = env.write("bad.toml", &bad);
        let run = env.run(&["append", &good, &new_agreement, &bad]);
        run.fails(1);
        assert_eq!(env.content(), before);
    }
    // A later file is checked against the earlier ones of the same call.
    let removes_x = env.write(
        "removes-x.toml",
        &format!(
            "{AMEND_HEAD}effective = 2025-02-01\nexpect_version = 4\n[[remove]]\nterm = \"x\"\n"
        ),
    );
    let run = env.run(&[
        "append",
        &good,
        &removes_x,
        &new_agreement,
        "--format",
        "json",
    ]);
    let out = run.json();
    let versions: Vec<(String, u64)> = out
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["agreement"].as_str().unwrap().to_owned(),
                r["version"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        versions,
        [
            ("acme-initech".into(), 4),
            ("acme-initech".into(), 5),
            ("other".into(), 1)
        ]
    );
}

#[test]
fn unreadable_and_missing_inputs_are_refused() {
    let env = seeded();
    let before = env.content();
    env.run(&["append", "no-such-file.toml"]).fails(1);
    let binary = env.path().join("binary.toml");
    std::fs::write(&binary, [0xff, 0xfe, 0x00, 0x41]).unwrap();
    env.run(&["append", binary.to_str().unwrap()]).fails(1);
    let huge = env.write("huge.toml", &"#".repeat(2 * 1024 * 1024));
    env.run(&["append", &huge]).fails(1);
    env.run_with_stdin(&["append", "-"], Some("not toml at all = = ="))
        .fails(1);
    assert_eq!(env.content(), before);
}

#[test]
fn reads_of_a_missing_store_do_not_create_it() {
    let env = Env::new();
    let line = env.run(&["agreements"]).fails(1).to_owned();
    assert!(line.contains("store"), "{line}");
    assert!(!env.store().exists());
}

#[test]
fn usage_errors_exit_2() {
    let env = seeded();
    for args in [
        vec![],
        vec!["frobnicate"],
        vec!["terms"],
        vec![
            "terms",
            "acme-initech",
            "--version",
            "1",
            "--known-at",
            "2026-01-01T00:00:00Z",
        ],
        vec!["terms", "acme-initech", "--on", "yesterday"],
        vec!["terms", "Not_A_Slug"],
        vec!["diff", "acme-initech", "1", "tomorrow"],
        vec!["history", "acme-initech", "Bad Key"],
        vec!["log", "acme-initech", "--format", "xml"],
    ] {
        env.run(&args).fails(2);
    }
}

#[test]
fn unknown_agreement_term_or_version_exit_1() {
    let env = seeded();
    for args in [
        vec!["log", "nobody"],
        vec!["terms", "nobody"],
        vec!["history", "acme-initech", "never.set"],
        vec!["terms", "acme-initech", "--version", "99"],
        vec!["diff", "acme-initech", "1", "v99"],
        vec!["verify", "nobody"],
        vec!["export", "nobody"],
    ] {
        env.run(&args).fails(1);
    }
}
