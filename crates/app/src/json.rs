//! SPEC §5's JSON shapes, built once here so that every front end prints the same JSON, and
//! the reader of the amendment record ([`parse_amendment`]) that restoring a backup needs.

use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use pactum_domain::limits::VALUE_DEPTH_MAX;
use pactum_domain::{
    AgreementHead, Amendment, Change, Currency, Decimal, Hash, Money, Opening, Slug, TermKey, Value,
};
use pactum_projection::{
    ChangeKind, Diff, Entry, HistoryRow, Op, PlainValue, ReplayStep, TermChange, TermsAt,
};
use serde_json::{json, Map, Value as Json};
use uuid::Uuid;

use crate::VerifyReport;

/// RFC 3339 with microseconds, as every `recorded_at` is written.
pub fn timestamp(t: &DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A value in its plain JSON form (one definition, pactum_projection::PlainValue).
pub fn value(v: &Value) -> Json {
    serde_json::to_value(PlainValue(v)).unwrap_or(Json::Null)
}

/// A term entry: `{"type", "value", "text", "until", "set_in", "effective"}`.
pub fn entry(e: &Entry) -> Json {
    serde_json::to_value(e).unwrap_or(Json::Null)
}

fn entries<'a>(map: impl IntoIterator<Item = (&'a pactum_domain::TermKey, &'a Entry)>) -> Json {
    Json::Object(
        map.into_iter()
            .map(|(k, e)| (k.to_string(), entry(e)))
            .collect::<Map<_, _>>(),
    )
}

pub fn terms(agreement: &Slug, t: &TermsAt) -> Json {
    json!({
        "agreement": agreement.as_str(),
        "version": t.version,
        "on": t.on.to_string(),
        "terms": entries(&t.terms),
        "lapsed": entries(&t.lapsed),
        "pending": t.pending.iter().map(|p| json!({
            "version": p.version,
            "effective": p.effective.to_string(),
            "title": p.title,
        })).collect::<Vec<_>>(),
    })
}

fn change_kind(kind: &ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "added",
        ChangeKind::Removed => "removed",
        ChangeKind::Changed => "changed",
    }
}

fn term_changes(changes: &[TermChange]) -> Json {
    changes
        .iter()
        .map(|c| {
            json!({
                "term": c.term.as_str(),
                "kind": change_kind(&c.kind),
                "before": c.before.as_ref().map(entry),
                "after": c.after.as_ref().map(entry),
            })
        })
        .collect()
}

pub fn diff(agreement: &Slug, d: &Diff) -> Json {
    json!({
        "agreement": agreement.as_str(),
        "from": {"version": d.from.version, "on": d.from.on.to_string()},
        "to": {"version": d.to.version, "on": d.to.on.to_string()},
        "changes": term_changes(&d.changes),
    })
}

pub fn history(rows: &[HistoryRow]) -> Json {
    rows.iter().map(history_row).collect()
}

/// One item of [`history`].
pub fn history_row(r: &HistoryRow) -> Json {
    json!({
        "version": r.version,
        "effective": r.effective.to_string(),
        "recorded_at": timestamp(&r.recorded_at),
        "op": match r.op { Op::Set => "set", Op::Remove => "remove" },
        "entry": r.entry.as_ref().map(entry),
        "revoked_by": r.revoked_by,
    })
}

/// The amendment record, as `log` and `export` print it.
pub fn amendment(a: &Amendment) -> Json {
    let changes: Vec<Json> = a
        .changes
        .iter()
        .map(|c| match c {
            Change::Set {
                term,
                value: v,
                text,
                until,
            } => {
                let mut set = json!({
                    "op": "set",
                    "term": term.as_str(),
                    "type": v.type_name(),
                    "value": value(v),
                });
                if let Value::List(items) = v {
                    set["item_types"] = item_types(items);
                }
                set["text"] = json!(text);
                set["until"] = json!(until.map(|d| d.to_string()));
                set
            }
            Change::Remove { term, text } => json!({
                "op": "remove",
                "term": term.as_str(),
                "text": text,
            }),
        })
        .collect();
    json!({
        "version": a.version,
        "id": a.id.to_string(),
        "agreement": a.agreement.as_str(),
        "effective": a.effective.to_string(),
        "recorded_at": timestamp(&a.recorded_at),
        "title": a.title,
        "summary": a.summary,
        "sources": a.sources,
        "open": a.open.as_ref().map(|o| json!({"name": o.name, "parties": o.parties})),
        "changes": changes,
        "revokes": a.revokes,
        "prev_hash": a.prev_hash.to_hex(),
        "hash": a.hash.to_hex(),
    })
}

/// A list's item types, mirroring it (a nested list is the array of its items' types): the
/// plain form of `"12.50"` or `"2024-03-01"` does not tell text from a decimal, a percent or a
/// date, and a backup must restore to exactly the value that was hashed.
fn item_types(items: &[Value]) -> Json {
    items
        .iter()
        .map(|v| match v {
            Value::List(inner) => item_types(inner),
            v => Json::from(v.type_name()),
        })
        .collect()
}

/// Every amendment of a `log`, as one array: [`amendment`] of each.
pub fn log(amendments: &[Amendment]) -> Json {
    amendments.iter().map(amendment).collect()
}

pub fn replay(steps: &[ReplayStep]) -> Json {
    steps.iter().map(replay_step).collect()
}

/// One item of [`replay`].
pub fn replay_step(s: &ReplayStep) -> Json {
    json!({
        "version": s.version,
        "effective": s.effective.to_string(),
        "title": s.title,
        "changes": term_changes(&s.changes),
    })
}

pub fn agreements(heads: &[AgreementHead]) -> Json {
    heads.iter().map(agreement).collect()
}

/// One item of [`agreements`].
pub fn agreement(h: &AgreementHead) -> Json {
    json!({
        "agreement": h.agreement.as_str(),
        "name": h.name,
        "parties": h.parties,
        "version": h.version,
        "head_hash": h.head_hash.to_hex(),
    })
}

pub fn appended(amendments: &[Amendment]) -> Json {
    amendments
        .iter()
        .map(|a| {
            json!({
                "agreement": a.agreement.as_str(),
                "version": a.version,
                "id": a.id.to_string(),
                "hash": a.hash.to_hex(),
            })
        })
        .collect()
}

/// `verify --format json`: per agreement, what was checked and what was found.
pub fn verify(reports: &[VerifyReport]) -> Json {
    reports
        .iter()
        .map(|r| {
            json!({
                "agreement": r.agreement.as_str(),
                "version": r.version,
                "head_hash": r.head_hash.to_hex(),
                "records_checked": r.records_checked,
                "chain": if r.findings.is_empty() { "intact" } else { "damaged" },
                "anchor": r.anchor.map(|a| json!({
                    "version": a.anchor.version,
                    "hash": a.anchor.hash.to_hex(),
                    "found": a.found,
                })),
                "ok": r.ok(),
                "findings": r.findings.iter().map(|f| json!({
                    "version": f.version,
                    "problem": f.problem,
                })).collect::<Vec<_>>(),
            })
        })
        .collect()
}

/// Why a line of a backup is not an amendment record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct RecordError(pub String);

fn bad(message: impl Into<String>) -> RecordError {
    RecordError(message.into())
}

/// Reads one amendment record ([`amendment`]'s shape, one line of `export`). Every field must be
/// there and no other, each in the form [`amendment`] writes (canonical: a record that reads
/// back writes back the same bytes). Whether it is the record that was stored is
/// [`check_hash`]'s question.
pub fn parse_amendment(line: &str) -> Result<Amendment, RecordError> {
    let json: Json = serde_json::from_str(line).map_err(|e| bad(format!("not JSON: {e}")))?;
    let f = Fields::new(
        &json,
        "the record",
        &[
            "version",
            "id",
            "agreement",
            "effective",
            "recorded_at",
            "title",
            "summary",
            "sources",
            "open",
            "changes",
            "revokes",
            "prev_hash",
            "hash",
        ],
    )?;
    let open = match f.get("open") {
        Json::Null => None,
        o => {
            let of = Fields::new(o, "open", &["name", "parties"])?;
            Some(Opening {
                name: of.string("name")?,
                parties: of.strings("parties")?,
            })
        }
    };
    let changes = match f.get("changes") {
        Json::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, c)| change(c, i))
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(bad(format!(
                "changes must be an array, not {}",
                kind(other)
            )))
        }
    };
    let revokes = match f.get("revokes") {
        Json::Array(items) => items
            .iter()
            .map(|v| {
                v.as_u64()
                    .ok_or_else(|| bad("revokes must hold versions (1, 2, …)"))
            })
            .collect::<Result<Vec<_>, _>>()?,
        other => {
            return Err(bad(format!(
                "revokes must be an array, not {}",
                kind(other)
            )))
        }
    };
    Ok(Amendment {
        version: f.u64("version")?,
        id: f.canonical("id", |s| Uuid::parse_str(s).ok(), |u| u.to_string())?,
        agreement: Slug::parse(f.str("agreement")?).map_err(|e| bad(e.to_string()))?,
        effective: f.date("effective")?,
        recorded_at: f.canonical(
            "recorded_at",
            |s| DateTime::parse_from_rfc3339(s).ok().map(|t| t.to_utc()),
            timestamp,
        )?,
        title: f.string("title")?,
        summary: f.opt_string("summary")?,
        sources: f.strings("sources")?,
        open,
        changes,
        revokes,
        prev_hash: f.canonical("prev_hash", |s| s.parse().ok(), Hash::to_hex)?,
        hash: f.canonical("hash", |s| s.parse().ok(), Hash::to_hex)?,
    })
}

/// Checks that `a`'s content hashes, by `seal` (the store's rule), to the hash it carries.
pub fn check_hash(
    a: &Amendment,
    seal: impl Fn(&Amendment) -> Result<Hash, String>,
) -> Result<(), RecordError> {
    let recomputed = seal(a).map_err(bad)?;
    if recomputed == a.hash {
        Ok(())
    } else {
        Err(bad(format!(
            "its content does not match its hash (recorded {}, recomputed {recomputed}): the \
             record was changed",
            a.hash
        )))
    }
}

fn change(c: &Json, index: usize) -> Result<Change, RecordError> {
    let at = format!("changes[{index}]");
    let op = match c.get("op") {
        Some(Json::String(op)) => op.as_str(),
        _ => return Err(bad(format!("{at}.op must be \"set\" or \"remove\""))),
    };
    match op {
        "set" => {
            let list = c.get("type").and_then(Json::as_str) == Some("list");
            let keys: &[&str] = if list {
                &["op", "term", "type", "value", "item_types", "text", "until"]
            } else {
                &["op", "term", "type", "value", "text", "until"]
            };
            let f = Fields::new(c, &at, keys)?;
            let term = f.term()?;
            let value_at = format!("{at}.value");
            let value = if list {
                let types_at = format!("{at}.item_types");
                read_list(f.get("value"), f.get("item_types"), &value_at, &types_at, 1)?
            } else {
                read_value(f.str("type")?, f.get("value"), &value_at)?
            };
            Ok(Change::Set {
                term,
                value,
                text: f.opt_string("text")?,
                until: match f.get("until") {
                    Json::Null => None,
                    _ => Some(f.date("until")?),
                },
            })
        }
        "remove" => {
            let f = Fields::new(c, &at, &["op", "term", "text"])?;
            Ok(Change::Remove {
                term: f.term()?,
                text: f.opt_string("text")?,
            })
        }
        other => Err(bad(format!(
            "{at}.op is {other:?}; it must be \"set\" or \"remove\""
        ))),
    }
}

/// A value that is not a list, of the type the record names.
fn read_value(type_name: &str, v: &Json, at: &str) -> Result<Value, RecordError> {
    let string = || {
        v.as_str()
            .ok_or_else(|| bad(format!("{at} must be a string for type {type_name}")))
    };
    let decimal = |s: &str| Decimal::parse(s).map_err(|e| bad(format!("{at}: {e}")));
    Ok(match type_name {
        "bool" => Value::Bool(
            v.as_bool()
                .ok_or_else(|| bad(format!("{at} must be true or false")))?,
        ),
        "int" => Value::Int(
            v.as_i64()
                .ok_or_else(|| bad(format!("{at} must be a whole number (64-bit)")))?,
        ),
        "decimal" => Value::Decimal(decimal(string()?)?),
        "percent" => Value::Percent(decimal(string()?)?),
        "text" => Value::Text(string()?.to_owned()),
        "date" => Value::Date(
            canonical_date(string()?)
                .ok_or_else(|| bad(format!("{at} must be a date like \"2024-01-01\"")))?,
        ),
        "money" => money(v, at)?,
        other => return Err(bad(format!("{at}: unknown type {other:?}"))),
    })
}

/// A list `v` (at `depth`) read item by item with the types in `types` (at `types_at`), which
/// must mirror it: one type name per item, an array of them for a nested list.
fn read_list(
    v: &Json,
    types: &Json,
    at: &str,
    types_at: &str,
    depth: usize,
) -> Result<Value, RecordError> {
    let (Json::Array(items), Json::Array(types)) = (v, types) else {
        return Err(bad(format!(
            "{at} and {types_at} must both be arrays (a list and its items' types)"
        )));
    };
    if depth > VALUE_DEPTH_MAX {
        return Err(bad(format!("{at}: lists nest over {VALUE_DEPTH_MAX} deep")));
    }
    if types.len() != items.len() {
        return Err(bad(format!(
            "{types_at} has {} type(s) for {} item(s) of {at}",
            types.len(),
            items.len()
        )));
    }
    let items = items.iter().zip(types).enumerate().map(|(i, (item, ty))| {
        let (at, types_at) = (format!("{at}[{i}]"), format!("{types_at}[{i}]"));
        match ty {
            Json::Array(_) => read_list(item, ty, &at, &types_at, depth + 1),
            Json::String(name) if name != "list" => read_value(name, item, &at),
            _ => Err(bad(format!(
                "{types_at} must be a type name, or an array of them for a nested list"
            ))),
        }
    });
    Ok(Value::List(items.collect::<Result<_, _>>()?))
}

fn money(v: &Json, at: &str) -> Result<Value, RecordError> {
    let f = Fields::new(v, at, &["amount", "currency"])?;
    Ok(Value::Money(Money {
        amount: Decimal::parse(f.str("amount")?).map_err(|e| bad(format!("{at}: {e}")))?,
        currency: Currency::parse(f.str("currency")?).map_err(|e| bad(format!("{at}: {e}")))?,
    }))
}

/// A `YYYY-MM-DD` day, written exactly as `amendment` writes it.
fn canonical_date(s: &str) -> Option<NaiveDate> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .ok()
        .filter(|d| d.to_string() == s)
}

fn kind(v: &Json) -> &'static str {
    match v {
        Json::Null => "null",
        Json::Bool(_) => "a boolean",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "an array",
        Json::Object(_) => "an object",
    }
}

/// An object that must have exactly the given keys.
struct Fields<'a> {
    map: &'a Map<String, Json>,
    at: String,
}

impl<'a> Fields<'a> {
    fn new(v: &'a Json, at: &str, keys: &[&str]) -> Result<Self, RecordError> {
        let Json::Object(map) = v else {
            return Err(bad(format!("{at} must be an object, not {}", kind(v))));
        };
        if let Some(k) = keys.iter().find(|k| !map.contains_key(**k)) {
            return Err(bad(format!("{at}: field `{k}` is missing")));
        }
        if let Some(k) = map.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(bad(format!("{at}: unknown field `{k}`")));
        }
        Ok(Fields {
            map,
            at: at.to_owned(),
        })
    }

    fn get(&self, key: &str) -> &'a Json {
        static NULL: Json = Json::Null;
        self.map.get(key).unwrap_or(&NULL)
    }

    fn str(&self, key: &str) -> Result<&'a str, RecordError> {
        self.get(key).as_str().ok_or_else(|| {
            bad(format!(
                "{}.{key} must be a string, not {}",
                self.at,
                kind(self.get(key))
            ))
        })
    }

    fn string(&self, key: &str) -> Result<String, RecordError> {
        self.str(key).map(str::to_owned)
    }

    fn opt_string(&self, key: &str) -> Result<Option<String>, RecordError> {
        match self.get(key) {
            Json::Null => Ok(None),
            _ => self.string(key).map(Some),
        }
    }

    fn strings(&self, key: &str) -> Result<Vec<String>, RecordError> {
        let wrong = || bad(format!("{}.{key} must be an array of strings", self.at));
        match self.get(key) {
            Json::Array(items) => items
                .iter()
                .map(|s| s.as_str().map(str::to_owned).ok_or_else(wrong))
                .collect(),
            _ => Err(wrong()),
        }
    }

    fn u64(&self, key: &str) -> Result<u64, RecordError> {
        self.get(key)
            .as_u64()
            .ok_or_else(|| bad(format!("{}.{key} must be a whole number", self.at)))
    }

    fn date(&self, key: &str) -> Result<NaiveDate, RecordError> {
        canonical_date(self.str(key)?).ok_or_else(|| {
            bad(format!(
                "{}.{key} must be a date like \"2024-01-01\"",
                self.at
            ))
        })
    }

    fn term(&self) -> Result<TermKey, RecordError> {
        TermKey::parse(self.str("term")?).map_err(|e| bad(format!("{}: {e}", self.at)))
    }

    /// A string field read by `parse` and written back by `show` exactly as it stands.
    fn canonical<T>(
        &self,
        key: &str,
        parse: impl Fn(&str) -> Option<T>,
        show: impl Fn(&T) -> String,
    ) -> Result<T, RecordError> {
        let s = self.str(key)?;
        parse(s).filter(|v| show(v) == s).ok_or_else(|| {
            bad(format!(
                "{}.{key} {s:?} is not written as pactum writes it",
                self.at
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use chrono::{Duration, TimeZone};
    use pactum_domain::{AppendRequest, Draft, DraftFields, LedgerStore, Opening, StepStamper};
    use pactum_store::SledStore;

    use super::*;

    fn day(s: &str) -> NaiveDate {
        s.parse().unwrap()
    }

    fn dec(s: &str) -> Decimal {
        Decimal::parse(s).unwrap()
    }

    fn set(term: &str, value: Value) -> Change {
        Change::Set {
            term: TermKey::parse(term).unwrap(),
            value,
            text: None,
            until: None,
        }
    }

    /// One sealed amendment with these changes, as a store records it.
    fn sealed(changes: Vec<Change>) -> Amendment {
        let store = SledStore::temporary().unwrap();
        let draft = Draft::new(DraftFields {
            agreement: Slug::parse("acme").unwrap(),
            title: "Opening \"quoted\" ✓".into(),
            effective: day("2024-01-01"),
            summary: Some("line\nbreak".into()),
            sources: vec!["https://example.com".into()],
            expect_version: None,
            revokes: vec![],
            open: Some(Opening {
                name: "N".into(),
                parties: vec!["P".into()],
            }),
            changes,
        })
        .unwrap();
        let t0 = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let stamper = StepStamper::new(t0, Duration::microseconds(1_234_567));
        let request = AppendRequest {
            agreement: draft.agreement.clone(),
            expected_version: 0,
            drafts: vec![draft],
        };
        store.append(&[request], &stamper).unwrap().remove(0)
    }

    fn read_back(a: &Amendment) -> Result<Amendment, RecordError> {
        let read = parse_amendment(&amendment(a).to_string())?;
        check_hash(&read, SledStore::seal_hash)?;
        Ok(read)
    }

    #[test]
    fn every_value_reads_back_exactly() {
        let usd = Money {
            amount: dec("120000.00"),
            currency: Currency::parse("USD").unwrap(),
        };
        let a = sealed(vec![
            set("flag", Value::Bool(false)),
            set("count", Value::Int(i64::MIN)),
            set("rate", Value::Decimal(dec("12.50"))),
            set("share", Value::Percent(dec("-0.5"))),
            set("note", Value::Text("12.50".into())),
            set("start", Value::Date(day("2024-02-29"))),
            set("fee", Value::Money(usd.clone())),
            Change::Remove {
                term: TermKey::parse("gone").unwrap(),
                text: Some("why".into()),
            },
            Change::Set {
                term: TermKey::parse("until").unwrap(),
                value: Value::Text("x".into()),
                text: Some("clause".into()),
                until: Some(day("2030-12-31")),
            },
            set(
                "list",
                Value::List(vec![
                    Value::Int(1),
                    Value::Bool(true),
                    Value::Money(usd),
                    Value::List(vec![]),
                    Value::Text("eu".into()),
                ]),
            ),
        ]);
        assert_eq!(read_back(&a), Ok(a));
    }

    #[test]
    fn list_items_carry_their_types_and_read_back_exactly() {
        // Strings whose plain form reads several ways, nested and mixed in no pattern.
        let mut items: Vec<Value> = (0..10)
            .map(|i| Value::Decimal(dec(&i.to_string())))
            .collect();
        items.push(Value::Percent(dec("10")));
        items.push(Value::Text("11".into()));
        items.push(Value::List(vec![
            Value::Text("2024-03-01".into()),
            Value::Date(day("2024-03-01")),
            Value::List(vec![]),
        ]));
        let a = sealed(vec![set("mixed", Value::List(items))]);
        let record = amendment(&a);
        assert_eq!(
            record["changes"][0]["item_types"],
            json!([
                "decimal",
                "decimal",
                "decimal",
                "decimal",
                "decimal",
                "decimal",
                "decimal",
                "decimal",
                "decimal",
                "decimal",
                "percent",
                "text",
                ["text", "date", []]
            ])
        );
        let keys: Vec<&str> = record["changes"][0]
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        assert_eq!(
            keys,
            ["op", "term", "type", "value", "item_types", "text", "until"]
        );
        assert_eq!(read_back(&a), Ok(a));
    }

    #[test]
    fn a_changed_record_fails_the_hash_check() {
        let a = sealed(vec![set(
            "l",
            Value::List(vec![Value::Decimal(dec("1")), Value::Text("2".into())]),
        )]);
        let line = amendment(&a).to_string();
        for (from, to) in [
            ("\"Opening", "\"Opened"),
            ("\"1\"", "\"3\""),
            ("\"value\":[\"1\"", "\"value\":[\"1.0\""),
            ("\"item_types\":[\"decimal\"", "\"item_types\":[\"percent\""),
        ] {
            assert!(line.contains(from), "{from} in {line}");
            let changed = parse_amendment(&line.replacen(from, to, 1)).unwrap();
            let e = check_hash(&changed, SledStore::seal_hash).unwrap_err();
            assert!(e.0.contains("does not match its hash"), "{e}");
        }
    }

    #[test]
    fn records_must_be_written_as_pactum_writes_them() {
        let a = sealed(vec![
            set("x", Value::Int(1)),
            set(
                "l",
                Value::List(vec![Value::Text("a".into()), Value::Int(2)]),
            ),
        ]);
        let good = amendment(&a);
        let refused = |edit: &dyn Fn(&mut Json)| {
            let mut j = good.clone();
            edit(&mut j);
            parse_amendment(&j.to_string()).unwrap_err().0
        };
        type Edit = Box<dyn Fn(&mut Json)>;
        let cases: Vec<(&str, Edit)> = vec![
            (
                "missing",
                Box::new(|j| drop(j.as_object_mut().unwrap().remove("title"))),
            ),
            ("unknown field `extra`", Box::new(|j| j["extra"] = json!(1))),
            (
                "not written as pactum",
                Box::new(|j| j["recorded_at"] = json!("2026-01-01T00:00:00Z")),
            ),
            (
                "not written as pactum",
                Box::new(|j| j["hash"] = json!(j["hash"].as_str().unwrap().to_uppercase())),
            ),
            (
                "must be a whole number",
                Box::new(|j| j["version"] = json!("1")),
            ),
            ("date", Box::new(|j| j["effective"] = json!("2024-1-1"))),
            (
                "unknown type",
                Box::new(|j| j["changes"][0]["type"] = json!("float")),
            ),
            (
                "whole number",
                Box::new(|j| j["changes"][0]["value"] = json!(1.5)),
            ),
            (
                "\"set\" or \"remove\"",
                Box::new(|j| j["changes"][0]["op"] = json!("put")),
            ),
            (
                "malformed",
                Box::new(|j| j["agreement"] = json!("Bad Slug")),
            ),
            (
                "malformed",
                Box::new(|j| j["changes"][0]["term"] = json!("Bad")),
            ),
            ("array", Box::new(|j| j["changes"] = json!({}))),
            (
                "changes[0]: unknown field `item_types`",
                Box::new(|j| j["changes"][0]["item_types"] = json!([])),
            ),
            (
                "changes[1]: field `item_types` is missing",
                Box::new(|j| {
                    drop(
                        j["changes"][1]
                            .as_object_mut()
                            .unwrap()
                            .remove("item_types"),
                    )
                }),
            ),
            (
                "changes[1].item_types has 1 type(s) for 2 item(s) of changes[1].value",
                Box::new(|j| j["changes"][1]["item_types"] = json!(["text"])),
            ),
            (
                "changes[1].value[1] and changes[1].item_types[1] must both be arrays",
                Box::new(|j| j["changes"][1]["item_types"] = json!(["text", ["date"]])),
            ),
            (
                "changes[1].item_types[1] must be a type name",
                Box::new(|j| j["changes"][1]["item_types"] = json!(["text", "list"])),
            ),
            (
                "changes[1].value[0] must be a date",
                Box::new(|j| j["changes"][1]["item_types"] = json!(["date", "int"])),
            ),
            (
                "changes[1].value and changes[1].item_types must both be arrays",
                Box::new(|j| j["changes"][1]["item_types"] = json!("text")),
            ),
        ];
        for (want, edit) in cases {
            let e = refused(edit.as_ref());
            assert!(e.contains(want), "{want:?} in {e:?}");
        }
        assert!(parse_amendment("[1, 2")
            .unwrap_err()
            .0
            .starts_with("not JSON"));
        assert!(parse_amendment("[]").is_err());
        // Deeply nested arrays are an error from the JSON parser, not a stack overflow.
        let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
        assert!(parse_amendment(&deep).is_err());
    }
}
