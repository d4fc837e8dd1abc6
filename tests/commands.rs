//! Every command's text and JSON output, snapshotted on the ledger of `semantics`.

use crate::common::Env;
use crate::semantics::ledger;

fn snap(env: &Env, name: &str, args: &[&str]) {
    let text = env.run(args);
    insta::assert_snapshot!(format!("{name}_text"), text.ok());
    let mut json_args = args.to_vec();
    json_args.extend(["--format", "json"]);
    let json = env.run(&json_args);
    insta::assert_snapshot!(format!("{name}_json"), json.ok());
}

#[test]
fn every_command_text_and_json() {
    let env = ledger();
    snap(&env, "agreements", &["agreements"]);
    snap(&env, "log", &["log", "acme-initech"]);
    snap(&env, "terms_latest", &["terms", "acme-initech"]);
    snap(
        &env,
        "terms_v3",
        &[
            "terms",
            "acme-initech",
            "--version",
            "3",
            "--on",
            "2024-07-01",
        ],
    );
    snap(&env, "diff", &["diff", "acme-initech", "v1", "2027-01-01"]);
    snap(&env, "history", &["history", "acme-initech", "sla.uptime"]);
    snap(&env, "replay", &["replay", "acme-initech"]);
    snap(&env, "verify", &["verify"]);
    insta::assert_snapshot!("export", env.run(&["export", "acme-initech"]).ok());
}

#[test]
fn append_output_and_stdin() {
    let env = Env::new();
    let run = env.run_with_stdin(&["append", "-"], Some(crate::common::OPENING));
    insta::assert_snapshot!("append_text", run.ok());
    let json_amendment = r#"{
        "agreement": "acme-initech", "title": "JSON amendment", "effective": "2024-02-01",
        "set": [{"term": "start.date", "value": {"date": "2024-02-01"}}]
    }"#;
    let run = env.run_with_stdin(&["append", "-", "--format", "json"], Some(json_amendment));
    insta::assert_snapshot!("append_json", run.ok());
    let t = env
        .run(&[
            "terms",
            "acme-initech",
            "--format",
            "json",
            "--on",
            "2024-03-01",
        ])
        .json();
    assert_eq!(t["terms"]["start.date"]["type"], "date");
    assert_eq!(t["terms"]["start.date"]["value"], "2024-02-01");
}

#[test]
fn export_is_one_record_per_line_and_matches_log() {
    let env = ledger();
    let export = env.run(&["export", "acme-initech"]);
    let lines: Vec<serde_json::Value> = export
        .ok()
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    let log = env.run(&["log", "acme-initech", "--format", "json"]).json();
    assert_eq!(serde_json::Value::Array(lines.clone()), log);
    for (i, rec) in lines.iter().enumerate() {
        assert_eq!(rec["version"], i as u64 + 1);
        if i > 0 {
            assert_eq!(rec["prev_hash"], lines[i - 1]["hash"], "the chain links");
        }
    }
    assert_eq!(lines[0]["prev_hash"], "0".repeat(64));
}

#[test]
fn recorded_at_has_microseconds_and_strictly_increases() {
    // Every process starts the fixed clock at the same moment: the store must still move
    // recorded_at forward.
    let env = Env::new();
    env.append(&[("v1.toml", crate::common::OPENING)]);
    for i in 2..=4 {
        env.append(&[(
            "vn.toml",
            &format!(
                "agreement = \"acme-initech\"\ntitle = \"t{i}\"\neffective = 2024-02-01\n[[set]]\nterm = \"n\"\nvalue = {i}\n"
            ),
        )]);
    }
    let log = env.run(&["log", "acme-initech", "--format", "json"]).json();
    let times: Vec<String> = log
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["recorded_at"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(times[0], "2026-01-01T00:00:00.000000Z");
    assert_eq!(times[1], "2026-01-01T00:00:00.000001Z");
    for w in times.windows(2) {
        assert!(w[0] < w[1], "{times:?}");
    }
}

#[test]
fn no_color_and_pipes_get_plain_text() {
    let env = ledger();
    let out = env.run(&["terms", "acme-initech"]);
    assert!(!out.ok().contains('\x1b'));
}

#[test]
fn verify_reports_ok_with_exit_0() {
    let env = ledger();
    let v = env.run(&["verify", "--format", "json"]).json();
    assert_eq!(v[0]["ok"], true);
    assert_eq!(v[0]["version"], 7);
}
