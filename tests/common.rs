//! Running the real binary against a temporary store, deterministically: a fixed clock for
//! recorded times and ids, a fixed "today", no colour.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const CLOCK: &str = "2026-01-01T00:00:00Z";
pub const TODAY: &str = "2026-06-01";

pub struct Env {
    dir: tempfile::TempDir,
    pub clock: String,
}

#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts success and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(
            self.code, 0,
            "stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        &self.stdout
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.ok()).expect("stdout is JSON")
    }

    /// Asserts a failure with `code` and one `error:` line on stderr; returns that line.
    #[track_caller]
    pub fn fails(&self, code: i32) -> &str {
        assert_eq!(
            self.code, code,
            "stderr: {}\nstdout: {}",
            self.stderr, self.stdout
        );
        let line = self.stderr.trim_end();
        assert!(line.starts_with("error: "), "stderr: {line}");
        assert_eq!(line.lines().count(), 1, "one line: {line}");
        line
    }
}

impl Env {
    pub fn new() -> Env {
        Env {
            dir: tempfile::tempdir().expect("tempdir"),
            clock: CLOCK.into(),
        }
    }

    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file in the temporary directory and returns its path as a string.
    pub fn write(&self, name: &str, content: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, content).expect("write");
        p.to_string_lossy().into_owned()
    }

    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_pactum"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("PACTUM_STORE", self.store())
            .env("PACTUM_FIXED_CLOCK", &self.clock)
            .env("PACTUM_TODAY", TODAY)
            .env("NO_COLOR", "1")
            .stdin(Stdio::null());
        c
    }

    pub fn run(&self, args: &[&str]) -> Run {
        self.run_with_stdin(args, None)
    }

    pub fn run_with_stdin(&self, args: &[&str], stdin: Option<&str>) -> Run {
        let mut c = self.command(args);
        if stdin.is_some() {
            c.stdin(Stdio::piped());
        }
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = c.spawn().expect("spawn pactum");
        if let Some(input) = stdin {
            child
                .stdin
                .take()
                .expect("stdin")
                .write_all(input.as_bytes())
                .expect("write stdin");
        }
        let out = child.wait_with_output().expect("wait");
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!stderr.contains("panicked"), "pactum panicked: {stderr}");
        Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr,
        }
    }

    /// Appends amendment texts, one file each, in one call; asserts success.
    pub fn append(&self, files: &[(&str, &str)]) -> Run {
        let paths: Vec<String> = files.iter().map(|(n, c)| self.write(n, c)).collect();
        let mut args = vec!["append"];
        args.extend(paths.iter().map(String::as_str));
        let run = self.run(&args);
        run.ok();
        run
    }

    /// The store's content as users see it: every agreement's head and full export.
    pub fn content(&self) -> String {
        let heads = self.run(&["agreements", "--format", "json"]);
        if heads.code != 0 {
            return format!("no store: {}", heads.stderr);
        }
        let mut out = heads.stdout.clone();
        for head in heads.json().as_array().expect("array") {
            let slug = head["agreement"].as_str().expect("slug");
            out.push_str(self.run(&["export", slug]).ok());
        }
        out
    }
}

/// An agreement's opening amendment, ACME–Initech, used across the tests.
pub const OPENING: &str = r#"
agreement = "acme-initech"
title = "Master subscription agreement"
effective = 2024-01-01
summary = "The opening terms."
sources = ["https://example.com/msa"]

[open]
name = "ACME Corp and Initech master subscription agreement"
parties = ["ACME Corp", "Initech"]

[[set]]
term = "fees.annual"
value = { amount = "120000.00", currency = "USD" }
text = "Customer pays USD 120,000 a year."
until = 2026-12-31

[[set]]
term = "support.premium"
value = true

[[set]]
term = "sla.uptime"
value = { percent = 99.9 }

[[set]]
term = "territory"
value = ["EU", "US"]
"#;

/// Copies a store directory (tests damage or read copies, never the original).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
