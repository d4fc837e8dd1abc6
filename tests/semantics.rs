//! SPEC §3 through the binary, on a history written for it: a retroactive amendment, a
//! correction, a revoked correction, a lapse, a future amendment, and knowledge cuts by version
//! and by recorded time.

use serde_json::Value as Json;

use crate::common::{Env, OPENING};

const HEAD: &str = "agreement = \"acme-initech\"\n";

fn amendment(title: &str, effective: &str, body: &str) -> String {
    format!("{HEAD}title = \"{title}\"\neffective = {effective}\n{body}")
}

/// v1 opening 2024-01-01; v2 2025-01-01 raises fees, ends premium support; v3 2024-06-01
/// (retroactive) sets uptime and notice; v4 2025-03-01 revokes v3 (recorded in error) and sets
/// credits; v5 2027-01-01 (future) raises fees again; v6 2025-06-01 a pilot that lapses after
/// 2025-09-30; v7 revokes v4 (the correction itself was wrong: v3 is restored).
/// Each append is its own process with its own clock, an hour apart.
pub fn ledger() -> Env {
    let mut env = Env::new();
    let files = [
        OPENING.to_owned(),
        amendment(
            "Renewal",
            "2025-01-01",
            "[[set]]\nterm = \"fees.annual\"\nvalue = { amount = \"130000.00\", currency = \"USD\" }\nuntil = 2026-12-31\n[[remove]]\nterm = \"support.premium\"\ntext = \"Premium support ends.\"\n",
        ),
        amendment(
            "Uptime side letter",
            "2024-06-01",
            "[[set]]\nterm = \"sla.uptime\"\nvalue = { percent = 99.95 }\n[[set]]\nterm = \"notice.days\"\nvalue = 90\n",
        ),
        amendment(
            "Side letter recorded in error",
            "2025-03-01",
            "revokes = [3]\n[[set]]\nterm = \"sla.credits\"\nvalue = 12.50\n",
        ),
        amendment(
            "2027 price rise",
            "2027-01-01",
            "[[set]]\nterm = \"fees.annual\"\nvalue = { amount = \"150000.00\", currency = \"USD\" }\n",
        ),
        amendment(
            "Pilot",
            "2025-06-01",
            "[[set]]\nterm = \"pilot.region\"\nvalue = \"APAC\"\nuntil = 2025-09-30\n",
        ),
        amendment(
            "The side letter stands after all",
            "2025-03-01",
            "revokes = [4]\n",
        ),
    ];
    for (i, content) in files.iter().enumerate() {
        env.clock = format!("2026-01-01T{:02}:00:00Z", i);
        env.append(&[(&format!("v{}.toml", i + 1), content)]);
    }
    env
}

fn terms(env: &Env, args: &[&str]) -> Json {
    let mut all = vec!["terms", "acme-initech", "--format", "json"];
    all.extend_from_slice(args);
    env.run(&all).json()
}

fn keys(v: &Json, field: &str) -> Vec<String> {
    v[field].as_object().unwrap().keys().cloned().collect()
}

#[test]
fn terms_follow_spec_section_3() {
    let env = ledger();

    // The ledger at version 1, before anything else was known.
    let t = terms(&env, &["--version", "1", "--on", "2025-06-01"]);
    assert_eq!(t["terms"]["fees.annual"]["value"]["amount"], "120000.00");
    assert_eq!(t["terms"]["support.premium"]["value"], true);

    // At version 3, the retroactive side letter applies from 2024-06-01 on.
    let t = terms(&env, &["--version", "3", "--on", "2024-07-01"]);
    assert_eq!(t["terms"]["sla.uptime"]["value"], "99.95");
    assert_eq!(t["terms"]["sla.uptime"]["set_in"], 3);
    assert_eq!(t["terms"]["notice.days"]["value"], 90);
    let t = terms(&env, &["--version", "3", "--on", "2024-05-31"]);
    assert_eq!(t["terms"]["sla.uptime"]["value"], "99.9");
    assert!(t["terms"].get("notice.days").is_none());

    // At version 4, v3 is revoked: it has no effect at all, on any day.
    let t = terms(&env, &["--version", "4", "--on", "2024-07-01"]);
    assert_eq!(t["terms"]["sla.uptime"]["value"], "99.9");
    assert!(t["terms"].get("notice.days").is_none());
    let t = terms(&env, &["--version", "4", "--on", "2025-06-01"]);
    assert_eq!(t["terms"]["sla.credits"]["value"], "12.50");
    assert_eq!(t["terms"]["sla.credits"]["type"], "decimal");

    // At version 7, v4 is revoked: v3 is restored and v4's own set is gone.
    let t = terms(&env, &["--on", "2025-06-01"]);
    assert_eq!(t["version"], 7);
    assert_eq!(t["terms"]["sla.uptime"]["value"], "99.95");
    assert!(t["terms"].get("sla.credits").is_none());

    // Removes and untils: premium support ends 2025-01-01; fees lapse after 2026-12-31 until
    // the 2027 rise; the pilot lapses after 2025-09-30 (until is inclusive).
    let t = terms(&env, &["--on", "2025-09-30"]);
    assert!(t["terms"].get("support.premium").is_none());
    assert_eq!(t["terms"]["pilot.region"]["until"], "2025-09-30");
    let t = terms(&env, &["--on", "2025-10-01"]);
    assert_eq!(keys(&t, "lapsed"), ["pilot.region"]);
    assert!(t["terms"].get("pilot.region").is_none());
    assert_eq!(t["pending"][0]["version"], 5);
    assert_eq!(t["pending"][0]["effective"], "2027-01-01");

    let t = terms(&env, &["--on", "2027-02-01"]);
    assert_eq!(t["terms"]["fees.annual"]["value"]["amount"], "150000.00");
    assert_eq!(t["terms"]["fees.annual"]["until"], Json::Null);
    assert_eq!(t["pending"], serde_json::json!([]));
}

#[test]
fn known_at_cuts_by_recorded_time() {
    let env = ledger();
    // v1 was recorded at 00:00, v2 at 01:00, v3 at 02:00 …
    let t = terms(
        &env,
        &["--known-at", "2026-01-01T02:30:00Z", "--on", "2024-07-01"],
    );
    assert_eq!(t["version"], 3);
    assert_eq!(t["terms"]["notice.days"]["value"], 90);
    let t = terms(
        &env,
        &["--known-at", "2026-01-01T02:00:00Z", "--on", "2024-07-01"],
    );
    assert_eq!(
        t["version"], 3,
        "a version recorded exactly at the cut is known"
    );
    let t = terms(
        &env,
        &[
            "--known-at",
            "2026-01-01T03:59:59+00:00",
            "--on",
            "2024-07-01",
        ],
    );
    assert_eq!(t["version"], 4);
    assert!(t["terms"].get("notice.days").is_none());
    let t = terms(
        &env,
        &["--known-at", "2025-01-01T00:00:00Z", "--on", "2024-07-01"],
    );
    assert_eq!(t["version"], 0, "nothing was known before the first record");
    assert_eq!(t["terms"], serde_json::json!({}));
}

#[test]
fn diff_history_and_replay() {
    let env = ledger();
    let d = env
        .run(&["diff", "acme-initech", "1", "v7", "--format", "json"])
        .json();
    let changes: Vec<(String, String)> = d["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["term"].as_str().unwrap().into(),
                c["kind"].as_str().unwrap().into(),
            )
        })
        .collect();
    // Read on today (2026-06-01): fees changed, premium support removed, side letter restored.
    assert_eq!(
        changes,
        [
            ("fees.annual".to_string(), "changed".to_string()),
            ("notice.days".into(), "added".into()),
            ("sla.uptime".into(), "changed".into()),
            ("support.premium".into(), "removed".into()),
        ]
    );
    let d = env
        .run(&[
            "diff",
            "acme-initech",
            "2025-09-30",
            "2025-10-01",
            "--format",
            "json",
        ])
        .json();
    assert_eq!(d["changes"][0]["term"], "pilot.region");
    assert_eq!(d["changes"][0]["kind"], "removed");

    let h = env
        .run(&["history", "acme-initech", "sla.uptime", "--format", "json"])
        .json();
    let rows: Vec<(u64, Json)> = h
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["version"].as_u64().unwrap(), r["revoked_by"].clone()))
        .collect();
    assert_eq!(rows, [(1, Json::Null), (3, Json::Null)]);
    let h = env
        .run(&["history", "acme-initech", "sla.credits", "--format", "json"])
        .json();
    assert_eq!(h[0]["revoked_by"], 7);

    let r = env
        .run(&["replay", "acme-initech", "--format", "json"])
        .json();
    assert_eq!(r.as_array().unwrap().len(), 7);
    assert_eq!(r[6]["changes"][0]["term"], "notice.days");

    insta::assert_snapshot!(
        "semantics_terms_text",
        env.run(&["terms", "acme-initech", "--on", "2025-10-01"])
            .ok()
    );
    insta::assert_snapshot!(
        "semantics_replay_text",
        env.run(&["replay", "acme-initech"]).ok()
    );
    insta::assert_snapshot!(
        "semantics_history_text",
        env.run(&["history", "acme-initech", "fees.annual"]).ok()
    );
}
