//! Every limit of `pactum_domain::limits` (docs/FORMAT.md, "Limits") through the binary: a file
//! just over it is refused with one line naming the limit and its number, exit 1, and nothing
//! written; a file exactly at it is accepted.

use pactum_domain::limits::*;

use crate::common::{Env, OPENING};

/// An amendment of the seeded agreement: `top` goes among the top-level keys, `tables` after.
fn amend(title: &str, top: &str, tables: &str) -> String {
    format!(
        "agreement = \"acme-initech\"\ntitle = \"{title}\"\neffective = 2025-01-01\n{top}\n{tables}"
    )
}

/// The opening of a new agreement, for the limits that only `[open]` has.
fn open_new(slug: &str, name: &str, parties: &[String]) -> String {
    let parties: Vec<String> = parties.iter().map(|p| format!("\"{p}\"")).collect();
    format!(
        "agreement = \"{slug}\"\ntitle = \"Opening\"\neffective = 2024-01-01\n\
         [open]\nname = \"{name}\"\nparties = [{}]\n[[set]]\nterm = \"x\"\nvalue = 1\n",
        parties.join(", ")
    )
}

fn set(term: &str, value: &str) -> String {
    format!("[[set]]\nterm = \"{term}\"\nvalue = {value}\n")
}

fn sets(n: usize) -> String {
    (0..n).map(|i| set(&format!("t{i}"), "1")).collect()
}

fn list(items: usize) -> String {
    format!("[{}]", vec!["1"; items].join(", "))
}

fn nested(depth: usize) -> String {
    format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
}

fn quoted(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("s{i}")).collect()
}

fn strings(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("\"{s}\"")).collect();
    format!("[{}]", quoted.join(", "))
}

/// A valid amendment padded with a comment to exactly `len` bytes.
fn sized(len: usize) -> String {
    let mut file = amend("Padded", "", &set("padded", "true"));
    file.push('#');
    let pad = len - file.len() - 1;
    file.push_str(&"x".repeat(pad));
    file.push('\n');
    assert_eq!(file.len(), len);
    file
}

/// Each limit: a name for messages, the file just over it, and what the error must say.
fn over_limit() -> Vec<(&'static str, String, Vec<String>)> {
    let n = |v: usize| v.to_string();
    let long = |len: usize| "y".repeat(len);
    vec![
        (
            "file size",
            sized(FILE_BYTES_MAX + 1),
            vec![
                n(FILE_BYTES_MAX + 1),
                format!("over the limit of {FILE_BYTES_MAX}"),
            ],
        ),
        (
            "slug",
            open_new(&"a".repeat(SLUG_MAX + 1), "N", &quoted(1)),
            vec!["agreement slug".into(), format!("{{0,{}}}", SLUG_MAX - 1)],
        ),
        (
            "term key",
            amend("T", "", &set(&"k".repeat(TERM_KEY_MAX + 1), "1")),
            vec![
                "term key".into(),
                format!("at most {TERM_KEY_MAX} characters"),
            ],
        ),
        (
            "title",
            amend(&long(TITLE_MAX + 1), "", &set("x", "1")),
            vec!["title".into(), format!("over the limit of {TITLE_MAX}")],
        ),
        (
            // Bytes, not characters: 257 two-byte characters.
            "title in bytes",
            amend(&"é".repeat(TITLE_MAX / 2 + 1), "", &set("x", "1")),
            vec![format!("title is {} bytes long", TITLE_MAX + 2)],
        ),
        (
            "open.name",
            open_new("other", &long(TITLE_MAX + 1), &quoted(1)),
            vec!["open.name".into(), format!("over the limit of {TITLE_MAX}")],
        ),
        (
            "party",
            open_new("other", "N", &[long(TITLE_MAX + 1)]),
            vec!["a party".into(), format!("over the limit of {TITLE_MAX}")],
        ),
        (
            "summary",
            amend(
                "T",
                &format!("summary = \"{}\"", long(TEXT_MAX + 1)),
                &set("x", "1"),
            ),
            vec!["summary".into(), format!("over the limit of {TEXT_MAX}")],
        ),
        (
            "source",
            amend(
                "T",
                &format!("sources = [\"{}\"]", long(TEXT_MAX + 1)),
                &set("x", "1"),
            ),
            vec!["a source".into(), format!("over the limit of {TEXT_MAX}")],
        ),
        (
            "set text",
            amend(
                "T",
                "",
                &format!("{}text = \"{}\"\n", set("x", "1"), long(TEXT_MAX + 1)),
            ),
            vec![
                "text of term x".into(),
                format!("over the limit of {TEXT_MAX}"),
            ],
        ),
        (
            "remove text",
            amend(
                "T",
                "",
                &format!(
                    "[[remove]]\nterm = \"support.premium\"\ntext = \"{}\"\n",
                    long(TEXT_MAX + 1)
                ),
            ),
            vec![
                "text of term support.premium".into(),
                format!("over the limit of {TEXT_MAX}"),
            ],
        ),
        (
            "text value",
            amend("T", "", &set("x", &format!("\"{}\"", long(TEXT_MAX + 1)))),
            vec![
                "a text in the value of term x".into(),
                format!("over the limit of {TEXT_MAX}"),
            ],
        ),
        (
            "text in a list",
            amend(
                "T",
                "",
                &set("x", &format!("[1, [\"{}\"]]", long(TEXT_MAX + 1))),
            ),
            vec![
                "a text in the value of term x".into(),
                format!("over the limit of {TEXT_MAX}"),
            ],
        ),
        (
            "changes",
            amend("T", "", &sets(CHANGES_MAX + 1)),
            vec![
                format!("changes has {} entries", CHANGES_MAX + 1),
                format!("over the limit of {CHANGES_MAX}"),
            ],
        ),
        (
            "sources",
            amend(
                "T",
                &format!("sources = {}", strings(&quoted(ENTRIES_MAX + 1))),
                &set("x", "1"),
            ),
            vec![
                format!("sources has {} entries", ENTRIES_MAX + 1),
                format!("over the limit of {ENTRIES_MAX}"),
            ],
        ),
        (
            "parties",
            open_new("other", "N", &quoted(ENTRIES_MAX + 1)),
            vec![
                format!("open.parties has {} entries", ENTRIES_MAX + 1),
                format!("over the limit of {ENTRIES_MAX}"),
            ],
        ),
        (
            "revokes",
            amend(
                "T",
                &format!(
                    "revokes = [{}]",
                    (2..ENTRIES_MAX + 3)
                        .map(|v| v.to_string())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                "",
            ),
            vec![
                format!("revokes has {} entries", ENTRIES_MAX + 1),
                format!("over the limit of {ENTRIES_MAX}"),
            ],
        ),
        (
            "list items",
            amend("T", "", &set("x", &list(LIST_ITEMS_MAX + 1))),
            vec![
                format!("value of term x has {} entries", LIST_ITEMS_MAX + 1),
                format!("over the limit of {LIST_ITEMS_MAX}"),
            ],
        ),
        (
            // Nested items count: 2 lists of 512 items, plus the 2 lists themselves.
            "nested list items",
            amend(
                "T",
                "",
                &set("x", &format!("[{0}, {0}]", list(LIST_ITEMS_MAX / 2))),
            ),
            vec![format!(
                "value of term x has {} entries",
                LIST_ITEMS_MAX + 2
            )],
        ),
        (
            "nesting depth",
            amend("T", "", &set("x", &nested(VALUE_DEPTH_MAX + 1))),
            vec![format!(
                "nests lists {} deep, over the limit of {VALUE_DEPTH_MAX}",
                VALUE_DEPTH_MAX + 1
            )],
        ),
    ]
}

#[test]
fn a_file_over_any_limit_is_refused_and_nothing_is_written() {
    let env = Env::new();
    env.append(&[("open.toml", OPENING)]);
    let before = env.content();
    for (what, file, says) in over_limit() {
        let path = env.write(&format!("{}.toml", what.replace(' ', "-")), &file);
        let line = env.run(&["append", &path]).fails(1).to_owned();
        for s in &says {
            assert!(line.contains(s.as_str()), "{what}: {s:?} not in {line}");
        }
        // The message names the file, and stays short however long the input was.
        assert!(line.contains(&path), "{what}: {line}");
        assert!(line.len() < 1500, "{what}: a {} byte message", line.len());
        assert_eq!(env.content(), before, "{what}: the store changed");
    }
}

#[test]
fn json_and_stdin_are_held_to_the_same_limits() {
    let env = Env::new();
    env.append(&[("open.toml", OPENING)]);
    let before = env.content();
    let line = env
        .run_with_stdin(&["append", "-"], Some(&sized(FILE_BYTES_MAX + 1)))
        .fails(1)
        .to_owned();
    assert!(
        line.contains(&format!("over the limit of {FILE_BYTES_MAX}")),
        "{line}"
    );
    let deep = format!(
        r#"{{"agreement": "acme-initech", "title": "T", "effective": "2025-01-01", "set": [{{"term": "x", "value": {}}}]}}"#,
        nested(VALUE_DEPTH_MAX + 1)
    );
    let line = env
        .run(&["append", &env.write("deep.json", &deep)])
        .fails(1)
        .to_owned();
    assert!(
        line.contains(&format!("over the limit of {VALUE_DEPTH_MAX}")),
        "{line}"
    );
    let changes: Vec<String> = (0..=CHANGES_MAX)
        .map(|i| format!(r#"{{"term": "t{i}", "value": 1}}"#))
        .collect();
    let many = format!(
        r#"{{"agreement": "acme-initech", "title": "T", "effective": "2025-01-01", "set": [{}]}}"#,
        changes.join(", ")
    );
    let line = env
        .run(&["append", &env.write("many.json", &many)])
        .fails(1)
        .to_owned();
    assert!(
        line.contains(&format!("over the limit of {CHANGES_MAX}")),
        "{line}"
    );
    assert_eq!(env.content(), before);
}

#[test]
fn a_file_at_every_limit_is_accepted() {
    let env = Env::new();
    env.append(&[("open.toml", OPENING)]);
    let long = |len: usize| "y".repeat(len);
    let at_limit = [
        sized(FILE_BYTES_MAX),
        open_new(
            &"a".repeat(SLUG_MAX),
            &long(TITLE_MAX),
            &quoted(ENTRIES_MAX),
        ),
        open_new("other", "N", &[long(TITLE_MAX)]),
        amend("T", "", &set(&"k".repeat(TERM_KEY_MAX), "1")),
        amend(&long(TITLE_MAX), "", &set("x", "1")),
        amend(&"é".repeat(TITLE_MAX / 2), "", &set("x", "2")),
        amend(
            "T",
            &format!("summary = \"{0}\"\nsources = [\"{0}\"]", long(TEXT_MAX)),
            &format!("{}text = \"{}\"\n", set("x", "3"), long(TEXT_MAX)),
        ),
        amend("T", "", &set("x", &format!("\"{}\"", long(TEXT_MAX)))),
        amend(
            "T",
            &format!("sources = {}", strings(&quoted(ENTRIES_MAX))),
            &set("x", "4"),
        ),
        amend("T", "", &sets(CHANGES_MAX)),
        amend("T", "", &set("x", &list(LIST_ITEMS_MAX))),
        amend(
            "T",
            "",
            &set("x", &format!("[{0}, {0}]", list(LIST_ITEMS_MAX / 2 - 1))),
        ),
        amend("T", "", &set("x", &nested(VALUE_DEPTH_MAX))),
    ];
    for (i, file) in at_limit.iter().enumerate() {
        env.append(&[(&format!("at-{i}.toml"), file)]);
    }
    // revokes at its limit passes the file checks; it is refused only because those versions
    // do not exist.
    let revokes: Vec<String> = (2..ENTRIES_MAX + 2).map(|v| v.to_string()).collect();
    let file = amend("T", &format!("revokes = [{}]", revokes.join(", ")), "");
    let line = env
        .run(&["append", &env.write("revokes.toml", &file)])
        .fails(1)
        .to_owned();
    assert!(line.contains("does not exist"), "{line}");
    assert!(!line.contains("limit"), "{line}");
    let verify = env.run(&["verify", "--format", "json"]).json();
    for report in verify.as_array().unwrap() {
        assert_eq!(report["ok"], true, "{report}");
    }
}
