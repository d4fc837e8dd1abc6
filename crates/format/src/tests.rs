use chrono::NaiveDate;
use pactum_domain::limits::FILE_BYTES_MAX;
use pactum_domain::{Change, Value};
use proptest::prelude::*;

use super::*;

const FULL_TOML: &str = r#"# The opening of a subscription agreement.
agreement = "acme-initech"
title = "Master subscription agreement"
effective = 2024-01-01
summary = "ACME subscribes to Initech's platform for three years."
sources = ["https://example.com/press-release", "https://example.com/filing"]
expect_version = 0

[open]
name = "ACME Corp and Initech master subscription agreement"
parties = ["ACME Corp", "Initech"]

[[set]]
term = "fees.annual"
value = { amount = "120000.00", currency = "USD" }
text = "Customer pays USD 120,000 a year."
until = 2026-12-31

[[set]]
term = "fees.late-interest"
value = { percent = 1.50 }

[[set]]
term = "renewal.auto"
value = true

[[set]]
term = "term.years"
value = 3

[[set]]
term = "sla.uptime"
value = 99.90

[[set]]
term = "governing-law"
value = "Delaware"

[[set]]
term = "service.start"
value = 2024-02-01

[[set]]
term = "service.regions"
value = ["us", "eu", ["eu-west", 2]]

[[remove]]
term = "support.premium"
text = "Premium support is not part of this agreement."
"#;

const FULL_JSON: &str = r#"{
  "agreement": "acme-initech",
  "title": "Master subscription agreement",
  "effective": "2024-01-01",
  "summary": "ACME subscribes to Initech's platform for three years.",
  "sources": ["https://example.com/press-release", "https://example.com/filing"],
  "expect_version": 0,
  "open": {
    "name": "ACME Corp and Initech master subscription agreement",
    "parties": ["ACME Corp", "Initech"]
  },
  "remove": [
    {"term": "support.premium", "text": "Premium support is not part of this agreement."}
  ],
  "set": [
    {"term": "fees.annual", "value": {"amount": "120000.00", "currency": "USD"},
     "text": "Customer pays USD 120,000 a year.", "until": "2026-12-31"},
    {"term": "fees.late-interest", "value": {"percent": 1.50}},
    {"term": "renewal.auto", "value": true},
    {"term": "term.years", "value": 3},
    {"term": "sla.uptime", "value": 99.90},
    {"term": "governing-law", "value": "Delaware"},
    {"term": "service.start", "value": {"date": "2024-02-01"}},
    {"term": "service.regions", "value": ["us", "eu", ["eu-west", 2]]}
  ]
}"#;

const CORRECTION_TOML: &str = r#"agreement = "acme-initech"
title = "Correct the uptime and end the renewal clause"
effective = 2024-03-01
expect_version = 3
revokes = [2, 3]

[[set]]
term = "sla.uptime"
value = { decimal = "99.95" }
text = "Initech keeps the platform available 99.95% of each month."

[[remove]]
term = "renewal.auto"
"#;

fn ok(name: &str, src: &str) -> Draft {
    match parse_amendment(name, src.as_bytes()) {
        Ok(d) => d,
        Err(e) => panic!("{name} refused: {e}"),
    }
}

fn err(name: &str, src: &str) -> FormatError {
    match parse_amendment(name, src.as_bytes()) {
        Ok(d) => panic!("{name} accepted: {d:?}"),
        Err(e) => e,
    }
}

fn date(y: i32, m: u32, d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(y, m, d).unwrap()
}

fn dec(s: &str) -> pactum_domain::Decimal {
    pactum_domain::Decimal::parse(s).unwrap()
}

/// The value of the only `[[set]]` of a minimal file whose value is `value` (TOML).
fn toml_value(value: &str) -> Result<Value, FormatError> {
    let src = format!(
        "agreement = \"a\"\ntitle = \"t\"\neffective = 2024-01-01\n\
         [[set]]\nterm = \"x\"\nvalue = {value}\n"
    );
    first_value(parse_amendment("v.toml", src.as_bytes()))
}

fn json_value(value: &str) -> Result<Value, FormatError> {
    let src = format!(
        r#"{{"agreement": "a", "title": "t", "effective": "2024-01-01",
            "set": [{{"term": "x", "value": {value}}}]}}"#
    );
    first_value(parse_amendment("v.json", src.as_bytes()))
}

fn first_value(r: Result<Draft, FormatError>) -> Result<Value, FormatError> {
    r.map(|d| match d.changes.first() {
        Some(Change::Set { value, .. }) => value.clone(),
        other => panic!("not a set: {other:?}"),
    })
}

#[test]
fn toml_and_json_give_equal_drafts() {
    let toml = ok("open.toml", FULL_TOML);
    let json = ok("open.json", FULL_JSON);
    assert_eq!(toml, json);
    assert_eq!(toml.changes.len(), 9);
    // Sets in file order, then removes.
    assert!(matches!(toml.changes.last(), Some(Change::Remove { .. })));
    assert_eq!(toml.expect_version, Some(0));
    assert_eq!(toml.effective, date(2024, 1, 1));
}

#[test]
fn every_value_type() {
    let list = Value::List(vec![
        Value::Int(1),
        Value::Text("a".into()),
        Value::List(vec![Value::Bool(false)]),
    ]);
    let money = Value::Money(pactum_domain::Money {
        amount: dec("120000.00"),
        currency: pactum_domain::Currency::parse("USD").unwrap(),
    });
    let cases: Vec<(&str, &str, Value)> = vec![
        ("true", "true", Value::Bool(true)),
        ("-42", "-42", Value::Int(-42)),
        ("12.50", "12.50", Value::Decimal(dec("12.50"))),
        (
            "\"Delaware\"",
            "\"Delaware\"",
            Value::Text("Delaware".into()),
        ),
        (
            "2024-02-29",
            r#"{"date": "2024-02-29"}"#,
            Value::Date(date(2024, 2, 29)),
        ),
        ("[1, \"a\", [false]]", "[1, \"a\", [false]]", list),
        (
            "{ amount = \"120000.00\", currency = \"USD\" }",
            r#"{"currency": "USD", "amount": "120000.00"}"#,
            money,
        ),
        (
            "{ percent = 20 }",
            r#"{"percent": 20}"#,
            Value::Percent(dec("20")),
        ),
        (
            "{ percent = 12.5 }",
            r#"{"percent": 12.5}"#,
            Value::Percent(dec("12.5")),
        ),
        (
            "{ percent = \"12.5\" }",
            r#"{"percent": "12.5"}"#,
            Value::Percent(dec("12.5")),
        ),
        (
            "{ decimal = \"0.10\" }",
            r#"{"decimal": "0.10"}"#,
            Value::Decimal(dec("0.10")),
        ),
        ("[]", "[]", Value::List(vec![])),
    ];
    for (toml, json, want) in cases {
        assert_eq!(toml_value(toml).unwrap(), want, "TOML {toml}");
        assert_eq!(json_value(json).unwrap(), want, "JSON {json}");
    }
}

#[test]
fn value_tables_in_toml_may_be_standard_tables() {
    let src = "agreement = \"a\"\ntitle = \"t\"\neffective = 2024-01-01\n\
               [[set]]\nterm = \"x\"\n[set.value]\namount = \"5.00\"\ncurrency = \"EUR\"\n";
    let d = ok("t.toml", src);
    assert!(
        matches!(&d.changes[0], Change::Set { value: Value::Money(m), .. } if m.amount.as_str() == "5.00")
    );
    // An inline array of tables is as good as [[set]].
    let src = "agreement = \"a\"\ntitle = \"t\"\neffective = 2024-01-01\n\
               set = [{ term = \"x\", value = 1 }]\n";
    assert_eq!(ok("t.toml", src).changes.len(), 1);
}

#[test]
fn decimals_are_kept_as_written() {
    for (written, kept) in [
        ("12.50", "12.50"),
        ("0.000", "0.000"),
        ("-3.10", "-3.10"),
        ("+1_000.50", "1000.50"),
        ("120000.00", "120000.00"),
    ] {
        assert_eq!(
            toml_value(written).unwrap(),
            Value::Decimal(dec(kept)),
            "{written}"
        );
    }
    for (written, kept) in [
        ("12.50", "12.50"),
        ("-0.10", "-0.10"),
        ("1.000000000000000000001", "1.000000000000000000001"),
    ] {
        assert_eq!(
            json_value(written).unwrap(),
            Value::Decimal(dec(kept)),
            "{written}"
        );
    }
    for bad in ["1e3", "1.5E-2", "inf", "-inf", "nan"] {
        assert!(toml_value(bad).is_err(), "{bad}");
    }
    assert!(json_value("1e3").is_err());
    assert!(json_value("99999999999999999999").is_err());
}

#[test]
fn detect_syntax() {
    assert_eq!(detect("a.json", b"x = 1"), Syntax::Json);
    assert_eq!(detect("A.TOML", b"{}"), Syntax::Toml);
    assert_eq!(detect("-", b"  \n{\"a\": 1}"), Syntax::Json);
    assert_eq!(detect("-", b"\xEF\xBB\xBF{}"), Syntax::Json);
    assert_eq!(detect("-", b"agreement = \"a\""), Syntax::Toml);
    assert_eq!(detect("-", b""), Syntax::Toml);
    // stdin JSON parses as JSON
    assert_eq!(ok("-", FULL_JSON), ok("-", FULL_TOML));
}

#[test]
fn byte_order_mark_is_skipped() {
    let with_bom = format!("\u{feff}{FULL_TOML}");
    assert_eq!(ok("bom.toml", &with_bom), ok("open.toml", FULL_TOML));
    let with_bom = format!("\u{feff}{FULL_JSON}");
    assert_eq!(ok("bom.json", &with_bom), ok("open.json", FULL_JSON));
}

#[test]
fn json_null_means_absent_for_optional_fields() {
    let src = r#"{"agreement": "a", "title": "t", "effective": "2024-01-01", "summary": null,
                  "open": null, "revokes": [2], "set": null}"#;
    let d = ok("n.json", src);
    assert_eq!(d.summary, None);
    assert_eq!(d.revokes, vec![2]);
}

/// A minimal valid TOML file with `extra` appended.
fn toml_with(extra: &str) -> String {
    format!("agreement = \"acme\"\ntitle = \"T\"\neffective = 2024-01-01\n{extra}")
}

/// Every refusal case: name, file name, contents.
fn refusals() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let t = |s: String| s.into_bytes();
    let mut v: Vec<(&str, &str, Vec<u8>)> = vec![
        ("syntax error", "a.toml", t(toml_with("[[set]\nterm = \"x\"\n"))),
        ("syntax error, JSON", "a.json", t("{\n  \"agreement\": \"a\",\n  \"title\" \"t\"\n}".into())),
        ("duplicate key, TOML", "a.toml", t(toml_with("title = \"again\"\n"))),
        ("duplicate key, JSON", "a.json", t(r#"{"agreement": "a", "agreement": "b"}"#.into())),
        ("JSON that is not an object", "a.json", t("[1, 2]".into())),
        ("unknown top-level field", "a.toml", t(toml_with("titel = \"x\"\n"))),
        ("unknown top-level field, JSON", "a.json", t(r#"{"agreement": "a", "effectve": "2024-01-01"}"#.into())),
        ("unknown field in [[set]]", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = 1\nuntill = 2025-01-01\n"))),
        ("unknown field in [open]", "a.toml", t(toml_with("[open]\nname = \"n\"\nparties = [\"p\"]\nsigned = true\n"))),
        ("[set] instead of [[set]]", "a.toml", t(toml_with("[set]\nterm = \"x\"\nvalue = 1\n"))),
        ("missing agreement", "a.toml", t("title = \"T\"\neffective = 2024-01-01\n".into())),
        ("missing title", "a.toml", t("agreement = \"a\"\neffective = 2024-01-01\n".into())),
        ("missing effective", "a.toml", t("agreement = \"a\"\ntitle = \"T\"\n".into())),
        ("missing term in [[set]]", "a.toml", t(toml_with("[[set]]\nvalue = 1\n"))),
        ("missing value in [[set]]", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\n"))),
        ("empty file", "a.toml", t(String::new())),
        ("malformed slug", "a.toml", t("agreement = \"ACME Corp\"\ntitle = \"T\"\neffective = 2024-01-01\n".into())),
        ("malformed term key", "a.toml", t(toml_with("[[set]]\nterm = \"Fees.Annual\"\nvalue = 1\n"))),
        ("malformed date", "a.toml", t("agreement = \"a\"\ntitle = \"T\"\neffective = 2024-02-30\n".into())),
        ("malformed date, JSON", "a.json", t(r#"{"agreement": "a", "title": "T", "effective": "2024-13-01"}"#.into())),
        ("date written as a string in TOML", "a.toml", t("agreement = \"a\"\ntitle = \"T\"\neffective = \"2024-01-01\"\n".into())),
        ("until of the wrong type", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = 1\n[[set]]\nterm = \"y\"\nvalue = 2\n[[set]]\nterm = \"z\"\nvalue = 3\nuntil = 20261231\n"))),
        ("offset date-time instead of date", "a.toml", t("agreement = \"a\"\ntitle = \"T\"\neffective = 2024-01-01T09:00:00Z\n".into())),
        ("local date-time instead of date", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = 1\nuntil = 2025-01-01T00:00:00\n"))),
        ("time as a value", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = 09:00:00\n"))),
        ("malformed currency", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = { amount = \"1.00\", currency = \"usd\" }\n"))),
        ("malformed decimal amount", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = { amount = \"1,000.00\", currency = \"USD\" }\n"))),
        ("money amount as a number", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = { amount = 1000.00, currency = \"USD\" }\n"))),
        ("malformed percent", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = { percent = \"12%\" }\n"))),
        ("malformed decimal, JSON", "a.json", t(r#"{"agreement": "a", "title": "T", "effective": "2024-01-01", "set": [{"term": "x", "value": {"decimal": ".5"}}]}"#.into())),
        ("float with an exponent", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = 1.5e3\n"))),
        ("inf", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = inf\n"))),
        ("unknown table value", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = { amount = \"1.00\" }\n"))),
        ("null value, JSON", "a.json", t(r#"{"agreement": "a", "title": "T", "effective": "2024-01-01", "set": [{"term": "x", "value": null}]}"#.into())),
        ("empty amendment", "a.toml", t(toml_with(""))),
        ("empty title", "a.toml", t("agreement = \"a\"\ntitle = \" \"\neffective = 2024-01-01\n[[remove]]\nterm = \"x\"\n".into())),
        ("duplicate term (set and remove)", "a.toml", t(toml_with("[[set]]\nterm = \"fees\"\nvalue = 1\n[[remove]]\nterm = \"fees\"\n"))),
        ("revokes = [1]", "a.toml", t(toml_with("revokes = [1]\n"))),
        ("revokes = [0]", "a.toml", t(toml_with("revokes = [0]\n"))),
        ("revokes twice", "a.toml", t(toml_with("revokes = [2, 3, 2]\n"))),
        ("revokes of a string", "a.toml", t(toml_with("revokes = [\"v2\"]\n"))),
        ("expect_version = -1", "a.toml", t(toml_with("expect_version = -1\n[[remove]]\nterm = \"x\"\n"))),
        ("expect_version a string, JSON", "a.json", t(r#"{"agreement": "a", "title": "T", "effective": "2024-01-01", "expect_version": "3"}"#.into())),
        ("open without parties", "a.toml", t(toml_with("[open]\nname = \"n\"\nparties = []\n"))),
        ("title of the wrong type", "a.toml", t("agreement = \"a\"\ntitle = 5\neffective = 2024-01-01\n".into())),
        ("lists nested too deep", "a.toml", t(toml_with("[[set]]\nterm = \"x\"\nvalue = [[[[[[[[[1]]]]]]]]]\n"))),
        ("title over the limit", "a.toml", t(format!("agreement = \"a\"\ntitle = \"{}\"\neffective = 2024-01-01\nrevokes = [2]\n", "x".repeat(513)))),
        ("non-UTF-8", "a.toml", b"agreement = \"a\"\ntitle = \"caf\xE9\"\n".to_vec()),
    ];
    let mut big = toml_with("summary = \"").into_bytes();
    big.resize(FILE_BYTES_MAX + 1, b'x');
    v.push(("oversize file", "big.toml", big));
    v
}

#[test]
fn every_refusal_is_one_line() {
    let mut lines = Vec::new();
    for (case, name, bytes) in refusals() {
        let e = match parse_amendment(name, &bytes) {
            Ok(d) => panic!("{case}: accepted {d:?}"),
            Err(e) => e,
        };
        let shown = e.to_string();
        assert!(!shown.contains('\n'), "{case}: {shown}");
        assert!(shown.starts_with(name), "{case}: {shown}");
        lines.push(format!("{case}: {shown}"));
    }
    insta::assert_snapshot!("refusals", lines.join("\n"));
}

#[test]
fn positions_of_refusals() {
    let e = err("a.toml", &toml_with("[[set]\nterm = \"x\"\n"));
    assert_eq!((e.line, e.column), (Some(4), Some(7)));
    assert!(e.message.starts_with("TOML syntax error"), "{e}");

    let e = err("a.json", "{\n  \"agreement\": \"a\",\n  \"title\" \"t\"\n}");
    assert_eq!((e.line, e.column), (Some(3), Some(11)));

    let e = err("a.toml", &toml_with("titel = \"x\"\n"));
    assert_eq!((e.line, e.column), (Some(4), Some(1)));
    assert!(
        e.message
            .starts_with("unknown field `titel`, expected one of `agreement`"),
        "{e}"
    );

    let e = err(
        "a.toml",
        &toml_with("[[set]]\nterm = \"x\"\nvalue = 1\n  untill = 2025-01-01\n"),
    );
    assert_eq!((e.line, e.column), (Some(7), Some(3)));

    let e = err(
        "a.toml",
        &toml_with("[[set]]\nterm = \"fees\"\nvalue = 1\n[[remove]]\nterm = \"fees\"\n"),
    );
    assert_eq!(e.message, "term fees appears twice in one amendment");
    assert_eq!(e.line, Some(8));

    let e = err(
        "a.toml",
        "agreement = \"a\"\ntitle = \"é\"\neffective = 2024-01-01T00:00:00\n",
    );
    assert_eq!((e.line, e.column), (Some(3), Some(13)));

    // Columns count characters, not bytes.
    let e = err("a.toml", "title = \"é\" x\n");
    assert_eq!((e.line, e.column), (Some(1), Some(13)));

    let e = parse_amendment("a.toml", b"title = \"caf\xE9\"").unwrap_err();
    assert_eq!((e.line, e.column), (Some(1), Some(13)));

    let e = err("missing.toml", "title = \"T\"\n");
    assert_eq!(e.to_string(), "missing.toml: missing field `agreement`");
}

#[test]
fn multi_line_parser_messages_collapse() {
    let e = FormatError::new("f\nx", Some((1, 2)), "a\n  b\n");
    assert_eq!(e.message, "a b");
    assert_eq!(e.to_string(), "f x:1:2: a b");
    let e = FormatError {
        file: "f".into(),
        line: None,
        column: None,
        message: "m\nn".into(),
    };
    assert_eq!(e.to_string(), "f: m n");
}

#[test]
fn drafts_snapshot() {
    insta::assert_yaml_snapshot!("opening_toml", ok("0001-open.toml", FULL_TOML));
    insta::assert_yaml_snapshot!("correction_toml", ok("0002-correct.toml", CORRECTION_TOML));
}

#[test]
fn deep_json_is_refused_not_overflowed() {
    let deep = format!(
        r#"{{"agreement": "a", "title": "t", "effective": "2024-01-01", "set": [{{"term": "x", "value": {}1{}}}]}}"#,
        "[".repeat(5000),
        "]".repeat(5000)
    );
    let e = err("d.json", &deep);
    assert!(e.message.contains("nest"), "{e}");
    let deep = format!("value = {}1{}", "[".repeat(5000), "]".repeat(5000));
    let _ = err("d.toml", &deep);
}

fn mutate(src: &str, edits: &[(usize, u8, char)]) -> String {
    let mut chars: Vec<char> = src.chars().collect();
    for &(at, op, c) in edits {
        if chars.is_empty() {
            chars.push(c);
            continue;
        }
        let i = at % chars.len();
        match op % 3 {
            0 => {
                chars.remove(i);
            }
            1 => chars.insert(i, c),
            _ => chars[i] = c,
        }
    }
    chars.into_iter().collect()
}

fn edit_char() -> impl Strategy<Value = char> {
    prop_oneof![
        prop::sample::select(vec![
            '"', '\'', '[', ']', '{', '}', '=', ',', ':', '.', '-', '+', '_', 'e', '0', '9', '\n',
            ' ', '#', '\\', 'T', 'Z', 'é', '\u{feff}',
        ]),
        any::<char>(),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..512), json in any::<bool>()) {
        let name = if json { "x.json" } else { "x.toml" };
        let _ = parse_amendment(name, &bytes);
        let _ = parse_amendment("-", &bytes);
    }

    #[test]
    fn mutated_files_never_panic(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), edit_char()), 1..8),
        which in 0..3usize,
    ) {
        let (name, src) = [("m.toml", FULL_TOML), ("m.json", FULL_JSON), ("c.toml", CORRECTION_TOML)][which];
        let mutated = mutate(src, &edits);
        if let Err(e) = parse_amendment(name, mutated.as_bytes()) {
            prop_assert!(!e.to_string().contains('\n'));
        }
    }
}

#[test]
fn messages_quoting_the_file_stay_short() {
    let long_key = "k".repeat(10_000);
    let e = err("a.toml", &toml_with(&format!("{long_key} = 1\n")));
    assert!(e.message.len() < 1200, "{}", e.message.len());
    let e = err(
        "a.toml",
        &format!("agreement = \"{long_key}\"\ntitle = \"T\"\neffective = 2024-01-01\n"),
    );
    assert!(e.message.chars().count() <= 1025);
    let keys: String = (0..1000).map(|i| format!("k{i} = 1, ")).collect();
    let e = err(
        "a.toml",
        &toml_with(&format!(
            "[[set]]\nterm = \"x\"\nvalue = {{ {keys}z = 1 }}\n"
        )),
    );
    assert!(e.message.contains("and 989 more"), "{}", e.message);
}

/// The examples in docs/FORMAT.md are files a user may copy: they must parse, and the TOML and
/// JSON forms of the first example must agree.
#[test]
fn format_doc_examples_parse() {
    let doc = include_str!("../../../docs/FORMAT.md");
    let mut drafts = Vec::new();
    let mut rest = doc;
    while let Some(start) = rest.find("\n```") {
        let after = &rest[start + 4..];
        let Some(nl) = after.find('\n') else { break };
        let lang = &after[..nl];
        let Some(end) = after[nl..].find("\n```") else {
            break;
        };
        let body = &after[nl + 1..nl + end + 1];
        if lang == "toml" || lang == "json" {
            drafts.push((lang, ok(&format!("example.{lang}"), body)));
        }
        rest = &after[nl + end + 4..];
    }
    assert_eq!(drafts.len(), 3);
    assert_eq!(drafts[0].1, drafts[1].1);
    assert_eq!(drafts[0].0, "toml");
    assert_eq!(drafts[1].0, "json");
}
