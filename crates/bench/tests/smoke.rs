//! The benchmark at tiny sizes, end to end: every key is printed and the peers agree with
//! Pactum. It times nothing against a threshold: figures from a debug build on a busy machine
//! mean nothing, only their presence does.

use std::process::Command;

use pactum_bench::report::KEYS;

#[test]
fn a_tiny_run_prints_every_key_and_the_peers_agree() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_pactum-bench"))
        .args([
            "--json",
            "--agreements",
            "40",
            "--amendments",
            "5",
            "--long",
            "50",
            "--git",
            "60",
            "--queries",
            "200",
            "--budget-ms",
            "100",
            "--seed",
            "7",
            "--dir",
        ])
        .arg(dir.path())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let object = json.as_object().unwrap();
    let keys: Vec<&str> = object.keys().map(String::as_str).collect();
    assert_eq!(keys, KEYS, "{json}");
    assert_eq!(json["amendments"], 40 * 5 + 50 + 60);
    assert_eq!(json["peers_agree"], true, "{stderr}");
    // Measured on any machine; `cli_query_ms` needs the pactum binary and may be null.
    for key in KEYS.iter().filter(|k| **k != "cli_query_ms") {
        assert!(!object[*key].is_null(), "{key} is null: {stderr}");
    }
    // The run cleans up after itself.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
