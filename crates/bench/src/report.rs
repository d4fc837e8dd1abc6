//! The figures, as one flat JSON object or as a table beside their peers and targets.

use serde::Serialize;
use serde_json::{Map, Value as Json};

/// Every figure of a run. `None` (JSON `null`) where it could not be measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Figures {
    /// Amendments imported: the portfolio, the long agreement and the in-order one.
    pub amendments: u64,
    pub import_per_s: Option<f64>,
    pub durable_append_per_s: Option<f64>,
    pub fsync_floor_per_s: Option<f64>,
    pub concurrent_append_per_s: Option<f64>,
    pub replay_per_s: Option<f64>,
    pub query_p50_us: Option<f64>,
    pub query_p99_us: Option<f64>,
    pub long_query_p99_us: Option<f64>,
    pub cli_query_ms: Option<f64>,
    pub store_open_ms: Option<f64>,
    pub bytes_per_amendment: Option<f64>,
    pub encoded_bytes_per_amendment: Option<f64>,
    pub peak_rss_mib: Option<f64>,
    pub sqlite_import_per_s: Option<f64>,
    pub sqlite_replay_per_s: Option<f64>,
    pub sqlite_query_p99_us: Option<f64>,
    pub git_query_p50_us: Option<f64>,
    pub peers_agree: Option<bool>,
    // Context for reading the figures above.
    pub seed: u64,
    pub long_amendments: u64,
    /// The long agreement's import through `Ledger::append` (see `pactum::import`).
    pub long_import_per_s: Option<f64>,
    /// Closing the store after the appends (`Ledger::close`, which has sled write its snapshot
    /// then, so that the replay's open does not read the log the appends left).
    pub close_ms: Option<f64>,
    pub long_query_samples: u64,
    pub wall_s: Option<f64>,
}

/// Every key `--json` prints, in order (the smoke test checks them).
pub const KEYS: [&str; 25] = [
    "amendments",
    "import_per_s",
    "durable_append_per_s",
    "fsync_floor_per_s",
    "concurrent_append_per_s",
    "replay_per_s",
    "query_p50_us",
    "query_p99_us",
    "long_query_p99_us",
    "cli_query_ms",
    "store_open_ms",
    "bytes_per_amendment",
    "encoded_bytes_per_amendment",
    "peak_rss_mib",
    "sqlite_import_per_s",
    "sqlite_replay_per_s",
    "sqlite_query_p99_us",
    "git_query_p50_us",
    "peers_agree",
    "seed",
    "long_amendments",
    "long_import_per_s",
    "close_ms",
    "long_query_samples",
    "wall_s",
];

/// Rounds a figure to what its unit deserves: rates to whole numbers, times and sizes to one
/// or two decimals.
fn rounded(key: &str, v: f64) -> Json {
    let digits = if key.ends_with("_per_s") {
        0
    } else if key.ends_with("_ms") || key.ends_with("_s") {
        2
    } else {
        1
    };
    let scale = 10f64.powi(digits);
    let r = (v * scale).round() / scale;
    if digits == 0 && r.abs() < 9.0e15 {
        Json::from(r as i64)
    } else {
        serde_json::Number::from_f64(r).map_or(Json::Null, Json::Number)
    }
}

impl Figures {
    /// The flat JSON object, rounded.
    pub fn to_json(&self) -> Result<Json, serde_json::Error> {
        let raw = serde_json::to_value(self)?;
        let mut out = Map::new();
        if let Json::Object(map) = raw {
            for (k, v) in map {
                let v = match v.as_f64() {
                    Some(x) if v.is_f64() => rounded(&k, x),
                    _ => v,
                };
                out.insert(k, v);
            }
        }
        Ok(Json::Object(out))
    }

    /// The targets of issue 4, each with whether it holds (`None`: a figure is missing).
    pub fn targets(&self) -> Vec<(&'static str, String, Option<bool>)> {
        let f = self;
        let le = |a: Option<f64>, b: Option<f64>| Some(a? <= b?);
        let times = |k: f64, b: Option<f64>| b.map(|b| k * b);
        let both = |a: Option<bool>, b: Option<bool>| Some(a? && b?);
        vec![
            (
                "query_p99_us",
                "≤ sqlite_query_p99_us and ≤ git_query_p50_us / 100".into(),
                both(
                    le(f.query_p99_us, f.sqlite_query_p99_us),
                    le(f.query_p99_us, times(0.01, f.git_query_p50_us)),
                ),
            ),
            (
                "long_query_p99_us",
                "≤ 5 × query_p99_us".into(),
                le(f.long_query_p99_us, times(5.0, f.query_p99_us)),
            ),
            (
                "import_per_s",
                "≥ sqlite_import_per_s".into(),
                le(f.sqlite_import_per_s, f.import_per_s),
            ),
            (
                "replay_per_s",
                "≥ 1,000,000 and ≥ sqlite_replay_per_s".into(),
                both(
                    le(Some(1_000_000.0), f.replay_per_s),
                    le(f.sqlite_replay_per_s, f.replay_per_s),
                ),
            ),
            (
                "durable_append_per_s",
                "≥ 0.5 × fsync_floor_per_s".into(),
                le(times(0.5, f.fsync_floor_per_s), f.durable_append_per_s),
            ),
            (
                "concurrent_append_per_s",
                "≥ 3 × durable_append_per_s".into(),
                le(
                    times(3.0, f.durable_append_per_s),
                    f.concurrent_append_per_s,
                ),
            ),
            (
                "cli_query_ms",
                "≤ 1.5 × store_open_ms + 5".into(),
                le(f.cli_query_ms, f.store_open_ms.map(|o| 1.5 * o + 5.0)),
            ),
            (
                "bytes_per_amendment",
                "≤ 3 × encoded_bytes_per_amendment".into(),
                le(
                    f.bytes_per_amendment,
                    times(3.0, f.encoded_bytes_per_amendment),
                ),
            ),
            (
                "peak_rss_mib",
                "≤ 512 (at full size)".into(),
                le(f.peak_rss_mib, Some(512.0)),
            ),
            ("peers_agree", "true".into(), f.peers_agree),
        ]
    }

    /// A table for people: each figure beside its peer, then the targets with pass or miss.
    pub fn table(&self) -> Result<String, serde_json::Error> {
        let json = self.to_json()?;
        let show = |k: &str| match json.get(k) {
            None | Some(Json::Null) => "n/a".to_owned(),
            Some(v) => v.to_string(),
        };
        let pairs: [(&str, &str, &str); 10] = [
            ("import_per_s", "sqlite_import_per_s", "batched appends/s"),
            (
                "durable_append_per_s",
                "fsync_floor_per_s",
                "one at a time, durable",
            ),
            (
                "concurrent_append_per_s",
                "durable_append_per_s",
                "8 threads, durable",
            ),
            (
                "replay_per_s",
                "sqlite_replay_per_s",
                "cold open, read, project",
            ),
            (
                "query_p50_us",
                "git_query_p50_us",
                "terms at (K, day), store read incl.",
            ),
            ("query_p99_us", "sqlite_query_p99_us", ""),
            ("long_query_p99_us", "query_p99_us", "on the long agreement"),
            (
                "cli_query_ms",
                "store_open_ms",
                "pactum terms process vs bare sled::open",
            ),
            (
                "bytes_per_amendment",
                "encoded_bytes_per_amendment",
                "on disk vs record",
            ),
            ("peak_rss_mib", "", "this process"),
        ];
        let mut out = String::new();
        out.push_str(&format!(
            "pactum-bench: {} amendments (long agreement {}), seed {}, {} s\n\n",
            show("amendments"),
            show("long_amendments"),
            show("seed"),
            show("wall_s")
        ));
        out.push_str(&format!(
            "{:<26} {:>12}   {:<28} {:>12}   {}\n",
            "figure", "pactum", "compared with", "value", "note"
        ));
        for (k, peer, note) in pairs {
            let (peer_name, peer_value) = if peer.is_empty() {
                (String::new(), String::new())
            } else {
                (peer.to_owned(), show(peer))
            };
            out.push_str(&format!(
                "{k:<26} {:>12}   {peer_name:<28} {peer_value:>12}   {note}\n",
                show(k)
            ));
        }
        out.push_str(&format!(
            "{:<26} {:>12}\n\ntargets\n",
            "peers_agree",
            show("peers_agree")
        ));
        for (k, rule, ok) in self.targets() {
            let verdict = match ok {
                Some(true) => "pass",
                Some(false) => "MISS",
                None => "n/a",
            };
            out.push_str(&format!("  {verdict:<5} {k:<26} {rule}\n"));
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_key_in_order_and_rounds() {
        let f = Figures {
            import_per_s: Some(1234.56),
            query_p99_us: Some(12.345),
            cli_query_ms: Some(4.56789),
            ..Figures::default()
        };
        let json = f.to_json().unwrap();
        let keys: Vec<&str> = json
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(keys, KEYS);
        assert_eq!(json["import_per_s"], 1235);
        assert_eq!(json["query_p99_us"], 12.3);
        assert_eq!(json["cli_query_ms"], 4.57);
        assert_eq!(json["peers_agree"], Json::Null);
    }

    #[test]
    fn targets_pass_miss_or_unknown() {
        let f = Figures {
            import_per_s: Some(10.0),
            sqlite_import_per_s: Some(5.0),
            durable_append_per_s: Some(10.0),
            fsync_floor_per_s: Some(100.0),
            ..Figures::default()
        };
        let t = f.targets();
        let get = |k: &str| t.iter().find(|(n, _, _)| *n == k).map(|x| x.2);
        assert_eq!(get("import_per_s"), Some(Some(true)));
        assert_eq!(get("durable_append_per_s"), Some(Some(false)));
        assert_eq!(get("replay_per_s"), Some(None));
    }
}
