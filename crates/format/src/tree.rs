//! One neutral tree for both syntaxes, so the field rules in `build` are written once. Every node
//! keeps the byte offset where it starts (where the parser tells it), for error positions.

use chrono::NaiveDate;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;

use crate::Fail;

/// How deeply JSON arrays and objects may nest before the tree refuses them. Far above what a
/// valid amendment needs (`pactum_domain::limits::VALUE_DEPTH_MAX` plus the file's own
/// structure); it only bounds the recursion below. TOML's parser has its own limit.
const JSON_DEPTH_MAX: usize = 64;

#[derive(Debug)]
pub(crate) struct Node {
    /// Byte offset of the node in the parsed text.
    pub pos: Option<usize>,
    pub kind: Kind,
}

#[derive(Debug)]
pub(crate) enum Kind {
    Null,
    Bool(bool),
    Int(i64),
    /// An integer as written that does not fit an `i64` (JSON only).
    BigInt(String),
    /// A non-integer number as written (TOML: `_` separators and a leading `+` removed).
    Number(String),
    Str(String),
    Date(NaiveDate),
    /// A TOML date-time, time or impossible date, described for the refusal.
    BadDate(String),
    Array(Vec<Node>),
    Table(Vec<Entry>),
}

#[derive(Debug)]
pub(crate) struct Entry {
    pub key: String,
    pub key_pos: Option<usize>,
    pub node: Node,
}

impl Kind {
    /// What a value is, for "must be …, found …" messages.
    pub fn describe(&self) -> &'static str {
        match self {
            Kind::Null => "null",
            Kind::Bool(_) => "a boolean",
            Kind::Int(_) | Kind::BigInt(_) => "an integer",
            Kind::Number(_) => "a number with a fraction",
            Kind::Str(_) => "a string",
            Kind::Date(_) => "a date",
            Kind::BadDate(_) => "a date-time",
            Kind::Array(_) => "an array",
            Kind::Table(_) => "a table",
        }
    }
}

// ---------------------------------------------------------------------------------------------
// TOML

pub(crate) fn from_toml(text: &str) -> Result<Node, Fail> {
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        let span = e.span();
        let mut msg = format!("TOML syntax error: {}", e.message());
        // toml_edit does not say which key; its span does.
        if let Some(key) = span.clone().and_then(|s| text.get(s)) {
            if msg.ends_with("duplicate key") && !key.is_empty() {
                msg = format!("{msg} `{}`", key.trim());
            }
        }
        Fail {
            pos: span.map(|s| s.start),
            msg,
        }
    })?;
    let mut root = toml_item(doc.as_item(), text);
    // Fields missing from the file as a whole have no position worth showing.
    root.pos = None;
    Ok(root)
}

fn toml_item(item: &toml_edit::Item, src: &str) -> Node {
    use toml_edit::Item;
    match item {
        Item::None => Node {
            pos: None,
            kind: Kind::Null,
        },
        Item::Value(v) => toml_value(v, src),
        Item::Table(t) => toml_table(t, src),
        Item::ArrayOfTables(a) => Node {
            pos: a.span().map(|s| s.start),
            kind: Kind::Array(a.iter().map(|t| toml_table(t, src)).collect()),
        },
    }
}

fn toml_table(t: &toml_edit::Table, src: &str) -> Node {
    Node {
        pos: t.span().map(|s| s.start),
        kind: Kind::Table(
            t.iter()
                .map(|(k, item)| Entry {
                    key: k.to_owned(),
                    key_pos: t.key(k).and_then(|k| k.span()).map(|s| s.start),
                    node: toml_item(item, src),
                })
                .collect(),
        ),
    }
}

fn toml_value(v: &toml_edit::Value, src: &str) -> Node {
    use toml_edit::Value;
    let pos = v.span().map(|s| s.start);
    let kind = match v {
        Value::String(s) => Kind::Str(s.value().clone()),
        Value::Integer(i) => Kind::Int(*i.value()),
        Value::Boolean(b) => Kind::Bool(*b.value()),
        Value::Float(f) => {
            // The float as written, not as an f64: `12.50` must stay `12.50`.
            let raw = f
                .as_repr()
                .and_then(|r| r.span())
                .and_then(|s| src.get(s))
                .map(str::to_owned)
                .unwrap_or_else(|| f.value().to_string());
            let raw: String = raw.trim().chars().filter(|c| *c != '_').collect();
            let raw = raw.strip_prefix('+').map(str::to_owned).unwrap_or(raw);
            Kind::Number(raw)
        }
        Value::Datetime(d) => toml_datetime(d.value()),
        Value::Array(a) => Kind::Array(a.iter().map(|v| toml_value(v, src)).collect()),
        Value::InlineTable(t) => Kind::Table(
            t.iter()
                .map(|(k, v)| Entry {
                    key: k.to_owned(),
                    key_pos: t.key(k).and_then(|k| k.span()).map(|s| s.start),
                    node: toml_value(v, src),
                })
                .collect(),
        ),
    };
    Node { pos, kind }
}

fn toml_datetime(d: &toml_edit::Datetime) -> Kind {
    match (&d.date, &d.time, &d.offset) {
        (Some(date), None, None) => {
            let day = NaiveDate::from_ymd_opt(
                i32::from(date.year),
                u32::from(date.month),
                u32::from(date.day),
            );
            match day {
                Some(day) => Kind::Date(day),
                None => Kind::BadDate(format!("{date}, which is not a day in the calendar")),
            }
        }
        (Some(_), Some(_), Some(_)) => Kind::BadDate(format!("an offset date-time ({d})")),
        (Some(_), Some(_), None) => Kind::BadDate(format!("a local date-time ({d})")),
        _ => Kind::BadDate(format!("a time ({d})")),
    }
}

// ---------------------------------------------------------------------------------------------
// JSON

/// An object's members in file order, duplicates kept (so they can be refused), values unparsed.
struct Members<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Members<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Members<'de>, A::Error> {
                let mut out = Vec::new();
                while let Some(key) = map.next_key::<String>()? {
                    let value: &'de RawValue = map.next_value()?;
                    out.push((key, value));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

pub(crate) fn from_json(text: &str) -> Result<Node, Fail> {
    // One full pass first: syntax errors come with serde_json's line and column.
    let root: &RawValue = serde_json::from_str(text).map_err(|e| json_syntax(text, &e))?;
    let mut root = json_node(root, text, 0)?;
    root.pos = None;
    Ok(root)
}

fn json_syntax(text: &str, e: &serde_json::Error) -> Fail {
    let msg = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let msg = msg.strip_suffix(&suffix).unwrap_or(&msg).to_owned();
    Fail {
        pos: offset_of(text, e.line(), e.column()),
        msg: format!("JSON syntax error: {msg}"),
    }
}

/// The byte offset of serde_json's (1-based line, 1-based byte column), so every error position
/// goes through the same conversion.
fn offset_of(text: &str, line: usize, column: usize) -> Option<usize> {
    if line == 0 {
        return None;
    }
    let mut start = 0;
    for _ in 1..line {
        start += text.get(start..)?.find('\n')? + 1;
    }
    let off = (start + column.saturating_sub(1)).min(text.len());
    // Back off to a character boundary so later slicing cannot fail.
    (0..=off).rev().find(|&o| text.is_char_boundary(o))
}

fn json_node(raw: &RawValue, src: &str, depth: usize) -> Result<Node, Fail> {
    let text = raw.get();
    // RawValue hands back a slice of the parsed text: its address gives its position.
    let pos = (text.as_ptr() as usize)
        .checked_sub(src.as_ptr() as usize)
        .filter(|&p| p <= src.len());
    let inner = |e: serde_json::Error| Fail {
        pos,
        msg: format!("JSON: {e}"),
    };
    if depth > JSON_DEPTH_MAX {
        return Err(Fail {
            pos,
            msg: format!("arrays and objects nest more than {JSON_DEPTH_MAX} deep"),
        });
    }
    let kind = match text.as_bytes().first() {
        Some(b'{') => {
            let Members(members) = serde_json::from_str(text).map_err(inner)?;
            let mut entries = Vec::with_capacity(members.len());
            for (key, value) in members {
                let node = json_node(value, src, depth + 1)?;
                entries.push(Entry {
                    key,
                    key_pos: node.pos,
                    node,
                });
            }
            Kind::Table(entries)
        }
        Some(b'[') => {
            let items: Vec<&RawValue> = serde_json::from_str(text).map_err(inner)?;
            Kind::Array(
                items
                    .into_iter()
                    .map(|v| json_node(v, src, depth + 1))
                    .collect::<Result<_, _>>()?,
            )
        }
        Some(b'"') => Kind::Str(serde_json::from_str(text).map_err(inner)?),
        Some(b't' | b'f') => Kind::Bool(serde_json::from_str(text).map_err(inner)?),
        Some(b'n') => Kind::Null,
        _ => {
            let is_integer = text.bytes().all(|b| b.is_ascii_digit() || b == b'-');
            match text.parse::<i64>() {
                Ok(i) if is_integer => Kind::Int(i),
                _ if is_integer => Kind::BigInt(text.to_owned()),
                _ => Kind::Number(text.to_owned()),
            }
        }
    };
    Ok(Node { pos, kind })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_positions_are_offsets_into_the_text() {
        let src = "{\n  \"a\": [1, 2.50],\n  \"b\": \"x\"\n}";
        let node = from_json(src).unwrap();
        let Kind::Table(entries) = node.kind else {
            panic!("not a table")
        };
        assert_eq!(entries[0].key, "a");
        assert_eq!(entries[0].node.pos, Some(9));
        let Kind::Array(items) = &entries[0].node.kind else {
            panic!("not an array")
        };
        assert!(matches!(&items[1].kind, Kind::Number(n) if n == "2.50"));
        assert_eq!(entries[1].node.pos, src.find("\"x\""));
    }

    #[test]
    fn toml_floats_are_kept_as_written() {
        let node = from_toml("a = +1_000.50\nb = 12.50\n").unwrap();
        let Kind::Table(entries) = node.kind else {
            panic!("not a table")
        };
        assert!(matches!(&entries[0].node.kind, Kind::Number(n) if n == "1000.50"));
        assert!(matches!(&entries[1].node.kind, Kind::Number(n) if n == "12.50"));
        assert_eq!(entries[1].key_pos, Some(14));
    }

    #[test]
    fn offsets_of_line_and_column() {
        let t = "ab\ncd\né";
        assert_eq!(offset_of(t, 1, 1), Some(0));
        assert_eq!(offset_of(t, 2, 2), Some(4));
        assert_eq!(offset_of(t, 3, 2), Some(6));
        assert_eq!(offset_of(t, 9, 1), None);
        assert_eq!(offset_of(t, 0, 1), None);
    }
}
