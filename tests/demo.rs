//! `pactum demo` needs no store and no files, and tours the built-in ledger.

use crate::common::Env;

#[test]
fn demo_runs_without_a_store() {
    let env = Env::new();
    let run = env.run(&["demo"]);
    let text = run.ok();
    assert!(!env.store().exists(), "demo writes no store of the user's");
    for section in [
        "pactum log",
        "pactum terms",
        "pactum diff",
        "pactum history",
        "pactum verify",
    ] {
        assert!(text.contains(section), "{section}");
    }
    insta::assert_snapshot!("demo_text", text);
    let json = env.run(&["demo", "--format", "json"]).json();
    assert_eq!(json["terms"]["agreement"], "microsoft-openai");
    assert_eq!(json["verify"][0]["ok"], true);
}

#[test]
fn demo_embeds_every_data_file() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("data/microsoft-openai");
    let files = std::fs::read_dir(dir)
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "toml")
        })
        .count();
    let json = Env::new().run(&["demo", "--format", "json"]).json();
    assert_eq!(json["log"].as_array().unwrap().len(), files);
}
