//! The git peer: an agreement kept as a terms file (`terms.json`, the terms in force after each
//! amendment) in a git repository, one commit per amendment dated on its effective day. A git
//! user asks "what were the terms on DAY" with `git rev-list -1 --before=DAY` and `git show`,
//! then drops the entries whose `until` has passed. Git cannot represent retroactive amendments
//! or revocations, so this peer holds an agreement amended in date order.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use pactum_domain::{Change, Draft};
use pactum_projection::PlainValue;
use serde_json::{json, Value as Json};

use crate::answer::Answer;
use crate::report::Figures;
use crate::sys::percentile_us;
use crate::{pactum, BenchError, Config};

fn git(repo: &Path) -> Command {
    let mut c = Command::new("git");
    c.arg("-C").arg(repo).stdin(Stdio::null());
    c
}

fn run(mut c: Command, what: &str) -> Result<Vec<u8>, BenchError> {
    let out = c
        .output()
        .map_err(|e| BenchError::Git(format!("{what}: cannot run git: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Git(format!(
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(out.stdout)
}

/// The terms file after each amendment of an in-order agreement: a plain fold, since nothing is
/// retroactive or revoked.
fn terms_files(drafts: &[Draft]) -> Result<Vec<String>, BenchError> {
    let mut state: BTreeMap<String, Json> = BTreeMap::new();
    let mut files = Vec::with_capacity(drafts.len());
    for (version, d) in (1u64..).zip(drafts) {
        for c in &d.changes {
            match c {
                Change::Set {
                    term,
                    value,
                    text,
                    until,
                } => {
                    let entry = json!({
                        "type": value.type_name(),
                        "value": PlainValue(value),
                        "text": text,
                        "until": until.map(|u| u.to_string()),
                        "set_in": version,
                        "effective": d.effective.to_string(),
                    });
                    state.insert(term.as_str().to_owned(), entry);
                }
                Change::Remove { term, .. } => {
                    state.remove(term.as_str());
                }
            }
        }
        files.push(serde_json::to_string_pretty(&state)? + "\n");
    }
    Ok(files)
}

/// A fast-import stream: one commit per amendment on `main`, author and committer dated at noon
/// UTC of its effective day.
fn fast_import_stream(drafts: &[Draft], files: &[String]) -> Vec<u8> {
    let mut s = Vec::new();
    for (d, file) in drafts.iter().zip(files) {
        let when = d
            .effective
            .and_hms_opt(12, 0, 0)
            .map_or(0, |t| t.and_utc().timestamp());
        let who = format!("Bench <bench@example.invalid> {when} +0000");
        let msg = &d.title;
        s.extend_from_slice(
            format!(
                "commit refs/heads/main\nauthor {who}\ncommitter {who}\ndata {}\n{msg}\n\
                 M 100644 inline terms.json\ndata {}\n",
                msg.len(),
                file.len()
            )
            .as_bytes(),
        );
        s.extend_from_slice(file.as_bytes());
        s.push(b'\n');
    }
    s
}

fn build(repo: &Path, drafts: &[Draft]) -> Result<(), BenchError> {
    let files = terms_files(drafts)?;
    let mut init = Command::new("git");
    init.args(["init", "-q", "--bare", "-b", "main"])
        .arg(repo)
        .stdin(Stdio::null());
    run(init, "git init")?;
    let mut child = git(repo)
        .args(["fast-import", "--quiet"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| BenchError::Git(format!("cannot run git fast-import: {e}")))?;
    let stream = fast_import_stream(drafts, &files);
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(&stream)
            .map_err(|e| BenchError::Git(format!("writing to git fast-import: {e}")))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| BenchError::Git(format!("git fast-import: {e}")))?;
    if !out.status.success() {
        return Err(BenchError::Git(format!(
            "git fast-import: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(())
}

/// What a git user runs for "the terms on DAY": the last commit on or before that day, then the
/// file as of that commit. `None` when no commit is that old.
fn ask(repo: &Path, on: NaiveDate) -> Result<Option<Vec<u8>>, BenchError> {
    let mut rev = git(repo);
    rev.args(["rev-list", "-1"])
        .arg(format!("--before={on} 23:59:59 +0000"))
        .arg("main");
    let sha = String::from_utf8_lossy(&run(rev, "git rev-list")?)
        .trim()
        .to_owned();
    if sha.is_empty() {
        return Ok(None);
    }
    let mut show = git(repo);
    show.arg("show").arg(format!("{sha}:terms.json"));
    run(show, "git show").map(Some)
}

/// The terms file read on `on`: entries past their `until` are lapsed.
fn answer(file: Option<&[u8]>, on: NaiveDate) -> Result<Answer, BenchError> {
    let state: BTreeMap<String, Json> = match file {
        Some(bytes) => serde_json::from_slice(bytes)?,
        None => BTreeMap::new(),
    };
    let mut terms = BTreeMap::new();
    let mut lapsed = BTreeMap::new();
    for (k, entry) in state {
        let until = entry
            .get("until")
            .and_then(Json::as_str)
            .and_then(|s| s.parse::<NaiveDate>().ok());
        if until.is_some_and(|u| u < on) {
            lapsed.insert(k, entry);
        } else {
            terms.insert(k, entry);
        }
    }
    Ok(Answer {
        terms,
        lapsed,
        pending: None,
    })
}

/// Builds the repository, times the git user's query on each day, and compares the answers with
/// Pactum's (`reference`, one per day). Returns whether every answer agreed.
pub fn measure(
    cfg: &Config,
    repo: &Path,
    days: &[NaiveDate],
    reference: &[Answer],
    f: &mut Figures,
) -> Result<bool, BenchError> {
    let drafts = pactum::in_order_drafts(cfg)?;
    build(repo, &drafts)?;
    let started = Instant::now();
    let mut times: Vec<Duration> = Vec::with_capacity(days.len());
    let mut agree = true;
    let mut shown = 0;
    for (&on, want) in days.iter().zip(reference) {
        if started.elapsed() > cfg.budget.git_queries && times.len() >= 20 {
            break;
        }
        let t = Instant::now();
        let file = ask(repo, on)?;
        times.push(t.elapsed());
        let got = answer(file.as_deref(), on)?;
        if !got.agrees_with(want) {
            agree = false;
            if shown < 3 {
                shown += 1;
                eprintln!(
                    "warning: git differs from pactum on {on}: {}",
                    got.difference(want)
                );
            }
        }
    }
    f.git_query_p50_us = percentile_us(&times, 0.5);
    Ok(agree)
}
