//! The first real ledger, data/microsoft-openai: every file parses (snapshot of each draft), and
//! the ledger answers DESIGN.md's questions through `terms --on`, `diff` and `history`.

use std::path::Path;

use serde_json::Value as Json;

use crate::common::Env;

fn data_files() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/microsoft-openai");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("data dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_data_file_parses() {
    let files = data_files();
    assert!(files.len() >= 7, "{files:?}");
    for path in files {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let bytes = std::fs::read(&path).unwrap();
        let draft =
            pactum_format::parse_amendment(&name, &bytes).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(!draft.sources.is_empty(), "{name} names its sources");
        insta::assert_yaml_snapshot!(format!("draft_{name}"), draft);
    }
}

fn loaded() -> Env {
    let env = Env::new();
    let files: Vec<String> = data_files()
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    let mut args = vec!["append"];
    args.extend(files.iter().map(String::as_str));
    env.run(&args).ok();
    env
}

fn terms_on(env: &Env, day: &str) -> Json {
    env.run(&["terms", "microsoft-openai", "--on", day, "--format", "json"])
        .json()
}

#[test]
fn the_ledger_answers_the_design_questions() {
    let env = loaded();
    // Was Microsoft's licence to OpenAI's IP exclusive on a given day?
    assert_eq!(
        terms_on(&env, "2020-06-01")["terms"].get("ip-license.exclusive"),
        None
    );
    assert_eq!(
        terms_on(&env, "2021-01-01")["terms"]["ip-license.exclusive"]["value"],
        true
    );
    assert_eq!(
        terms_on(&env, "2026-04-26")["terms"]["ip-license.exclusive"]["value"],
        true
    );
    assert_eq!(
        terms_on(&env, "2026-04-27")["terms"]["ip-license.exclusive"]["value"],
        false
    );

    // Every key date: the terms in force, for review.
    for day in [
        "2019-07-22",
        "2020-09-22",
        "2023-01-23",
        "2025-01-21",
        "2025-10-28",
        "2026-03-31",
        "2026-04-27",
        "2030-12-31",
        "2031-01-01",
        "2033-01-01",
    ] {
        insta::assert_snapshot!(
            format!("microsoft_openai_terms_on_{day}"),
            env.run(&["terms", "microsoft-openai", "--on", day]).ok()
        );
    }
    for v in 1..=7 {
        insta::assert_snapshot!(
            format!("microsoft_openai_terms_at_v{v}"),
            env.run(&[
                "terms",
                "microsoft-openai",
                "--version",
                &v.to_string(),
                "--on",
                "2026-06-01"
            ])
            .ok()
        );
    }
    insta::assert_snapshot!(
        "microsoft_openai_diff_2024_2026",
        env.run(&["diff", "microsoft-openai", "2024-12-31", "2026-05-01"])
            .ok()
    );
    insta::assert_snapshot!(
        "microsoft_openai_history_ip_license",
        env.run(&["history", "microsoft-openai", "ip-license.exclusive"])
            .ok()
    );
    insta::assert_snapshot!(
        "microsoft_openai_replay",
        env.run(&["replay", "microsoft-openai"]).ok()
    );
}
