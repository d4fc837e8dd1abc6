//! The field rules of SPEC §2, over the neutral tree: which keys exist, their types, and the
//! conversion of term values. Everything that depends on the ledger's history is left to append.

use chrono::NaiveDate;
use pactum_domain::{
    Change, Currency, Decimal, Draft, DraftError, DraftFields, Money, Opening, Slug, TermKey,
    Value, Version,
};

use crate::tree::{Entry, Kind, Node};
use crate::{Fail, Syntax};

const TOP: &[&str] = &[
    "agreement",
    "title",
    "effective",
    "summary",
    "sources",
    "expect_version",
    "revokes",
    "open",
    "set",
    "remove",
];
const OPEN: &[&str] = &["name", "parties"];
const SET: &[&str] = &["term", "value", "text", "until"];
const REMOVE: &[&str] = &["term", "text"];

/// Where the parts that `Draft::new` may refuse were written, so its refusals get a position.
#[derive(Default)]
struct Spots {
    title: Option<usize>,
    open: Option<usize>,
    revokes: Vec<(Version, Option<usize>)>,
    /// Term key positions, in the order of `DraftFields::changes`.
    terms: Vec<(TermKey, Option<usize>)>,
}

pub(crate) fn draft(root: &Node, syntax: Syntax) -> Result<Draft, Fail> {
    let b = Builder { syntax };
    let mut spots = Spots::default();
    let top = b.fields(root, "", TOP)?;

    let agreement = top.req("agreement")?;
    let agreement = Slug::parse(&b.string(agreement, "agreement")?)
        .map_err(|e| Fail::at(agreement, format!("agreement: {e}")))?;
    let title_node = top.req("title")?;
    spots.title = title_node.pos;
    let title = b.string(title_node, "title")?;
    let effective = b.date(top.req("effective")?, "effective")?;
    let summary = top
        .get("summary")
        .map(|n| b.string(n, "summary"))
        .transpose()?;
    let sources = top
        .get("sources")
        .map(|n| b.strings(n, "sources"))
        .transpose()?
        .unwrap_or_default();
    let expect_version = top
        .get("expect_version")
        .map(|n| {
            b.count(
                n,
                "expect_version",
                "a non-negative integer (0: the agreement must not exist yet)",
            )
        })
        .transpose()?;
    let mut revokes = Vec::new();
    if let Some(n) = top.get("revokes") {
        for (i, item) in b
            .array(n, "revokes", "an array of version numbers")?
            .iter()
            .enumerate()
        {
            let v = b.count(item, &format!("revokes[{i}]"), "a version number")?;
            spots.revokes.push((v, item.pos));
            revokes.push(v);
        }
    }
    let open = match top.get("open") {
        None => None,
        Some(n) => {
            spots.open = n.pos;
            let f = b.fields(n, "open", OPEN)?;
            Some(Opening {
                name: b.string(f.req("name")?, "open.name")?,
                parties: b.strings(f.req("parties")?, "open.parties")?,
            })
        }
    };

    let mut changes = Vec::new();
    if let Some(n) = top.get("set") {
        for (i, item) in b.tables(n, "set")?.iter().enumerate() {
            let path = format!("set[{i}]");
            let f = b.fields(item, &path, SET)?;
            let term = b.term(f.req("term")?, &path)?;
            spots.terms.push((term.clone(), f.req("term")?.pos));
            changes.push(Change::Set {
                term,
                value: b.value(
                    f.raw("value").ok_or_else(|| f.missing("value"))?,
                    &format!("{path}.value"),
                )?,
                text: f
                    .get("text")
                    .map(|n| b.string(n, &format!("{path}.text")))
                    .transpose()?,
                until: f
                    .get("until")
                    .map(|n| b.date(n, &format!("{path}.until")))
                    .transpose()?,
            });
        }
    }
    if let Some(n) = top.get("remove") {
        for (i, item) in b.tables(n, "remove")?.iter().enumerate() {
            let path = format!("remove[{i}]");
            let f = b.fields(item, &path, REMOVE)?;
            let term = b.term(f.req("term")?, &path)?;
            spots.terms.push((term.clone(), f.req("term")?.pos));
            changes.push(Change::Remove {
                term,
                text: f
                    .get("text")
                    .map(|n| b.string(n, &format!("{path}.text")))
                    .transpose()?,
            });
        }
    }

    Draft::new(DraftFields {
        agreement,
        title,
        effective,
        summary,
        sources,
        expect_version,
        revokes,
        open,
        changes,
    })
    .map_err(|e| refusal(e, &spots))
}

/// A `Draft::new` refusal, placed where the offending part was written.
fn refusal(e: DraftError, spots: &Spots) -> Fail {
    let nth_revoke = |v: Version, n: usize| {
        spots
            .revokes
            .iter()
            .filter(|(r, _)| *r == v)
            .nth(n)
            .and_then(|(_, p)| *p)
    };
    let nth_term = |t: &TermKey, n: usize| {
        spots
            .terms
            .iter()
            .filter(|(k, _)| k == t)
            .nth(n)
            .and_then(|(_, p)| *p)
    };
    let pos = match &e {
        DraftError::EmptyTitle => spots.title,
        DraftError::RevokesZero => nth_revoke(0, 0),
        DraftError::RevokesOpening => nth_revoke(1, 0),
        DraftError::DuplicateRevoke(v) => nth_revoke(*v, 1),
        DraftError::EmptyName | DraftError::NoParties => spots.open,
        DraftError::DuplicateTerm(t) => nth_term(t, 1),
        DraftError::TooDeep { term, .. } => nth_term(term, 0),
        _ => None,
    };
    Fail {
        pos,
        msg: e.to_string(),
    }
}

/// The keys of one table, checked against the ones it may have.
struct Fields<'a> {
    path: &'a str,
    pos: Option<usize>,
    entries: &'a [Entry],
}

impl<'a> Fields<'a> {
    /// The field's node; an explicit JSON `null` counts as absent.
    fn get(&self, key: &str) -> Option<&'a Node> {
        self.entries
            .iter()
            .find(|e| e.key == key)
            .map(|e| &e.node)
            .filter(|n| !matches!(n.kind, Kind::Null))
    }

    /// The field's node, `null` included (a term value may not be null, and says so).
    fn raw(&self, key: &str) -> Option<&'a Node> {
        self.entries.iter().find(|e| e.key == key).map(|e| &e.node)
    }

    fn req(&self, key: &str) -> Result<&'a Node, Fail> {
        self.get(key).ok_or_else(|| self.missing(key))
    }

    fn missing(&self, key: &str) -> Fail {
        Fail {
            pos: self.pos,
            msg: format!("missing field `{key}`{}", within(self.path)),
        }
    }
}

fn within(path: &str) -> String {
    if path.is_empty() {
        String::new()
    } else {
        format!(" in {path}")
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// Keys as a message lists them: a few, each cut short, since they come from the file.
fn backticked(keys: &[&str]) -> String {
    const SHOWN: usize = 12;
    let mut out = keys
        .iter()
        .take(SHOWN)
        .map(|k| format!("`{}`", crate::clip(k)))
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > SHOWN {
        out.push_str(&format!(" and {} more", keys.len() - SHOWN));
    }
    out
}

struct Builder {
    syntax: Syntax,
}

impl Builder {
    fn fields<'a>(
        &self,
        node: &'a Node,
        path: &'a str,
        allowed: &[&str],
    ) -> Result<Fields<'a>, Fail> {
        let Kind::Table(entries) = &node.kind else {
            let what = if path.is_empty() { "the file" } else { path };
            let table = match self.syntax {
                Syntax::Toml => "a table",
                Syntax::Json => "a JSON object",
            };
            return Err(Fail::at(
                node,
                format!("{what} must be {table}, found {}", node.kind.describe()),
            ));
        };
        for (i, e) in entries.iter().enumerate() {
            let pos = e.key_pos.or(node.pos);
            if !allowed.contains(&e.key.as_str()) {
                return Err(Fail {
                    pos,
                    msg: format!(
                        "unknown field `{}`{}, expected one of {}",
                        crate::clip(&e.key),
                        within(path),
                        backticked(allowed)
                    ),
                });
            }
            if entries.iter().take(i).any(|prev| prev.key == e.key) {
                return Err(Fail {
                    pos,
                    msg: format!(
                        "field `{}` appears twice{}",
                        crate::clip(&e.key),
                        within(path)
                    ),
                });
            }
        }
        Ok(Fields {
            path,
            pos: node.pos,
            entries,
        })
    }

    fn string(&self, node: &Node, path: &str) -> Result<String, Fail> {
        match &node.kind {
            Kind::Str(s) => Ok(s.clone()),
            k => Err(Fail::at(
                node,
                format!("{path} must be a string, found {}", k.describe()),
            )),
        }
    }

    fn array<'a>(&self, node: &'a Node, path: &str, what: &str) -> Result<&'a [Node], Fail> {
        match &node.kind {
            Kind::Array(items) => Ok(items),
            k => Err(Fail::at(
                node,
                format!("{path} must be {what}, found {}", k.describe()),
            )),
        }
    }

    fn strings(&self, node: &Node, path: &str) -> Result<Vec<String>, Fail> {
        self.array(node, path, "an array of strings")?
            .iter()
            .enumerate()
            .map(|(i, n)| self.string(n, &format!("{path}[{i}]")))
            .collect()
    }

    /// `[[set]]` / `[[remove]]`: an array of tables (TOML's array of tables or an inline array).
    fn tables<'a>(&self, node: &'a Node, path: &str) -> Result<&'a [Node], Fail> {
        let what = match self.syntax {
            Syntax::Toml => "an array of tables (write [[{path}]], not [{path}])",
            Syntax::Json => "an array of objects",
        };
        self.array(node, path, &what.replace("{path}", path))
    }

    fn term(&self, node: &Node, path: &str) -> Result<TermKey, Fail> {
        let path = join(path, "term");
        TermKey::parse(&self.string(node, &path)?)
            .map_err(|e| Fail::at(node, format!("{path}: {e}")))
    }

    /// A non-negative integer (`expect_version`, a `revokes` entry).
    fn count(&self, node: &Node, path: &str, what: &str) -> Result<u64, Fail> {
        match &node.kind {
            Kind::Int(i) => u64::try_from(*i)
                .map_err(|_| Fail::at(node, format!("{path} must be {what}, found {i}"))),
            Kind::BigInt(raw) => Err(Fail::at(
                node,
                format!("{path}: {raw} is out of range for a version number"),
            )),
            k => Err(Fail::at(
                node,
                format!("{path} must be {what}, found {}", k.describe()),
            )),
        }
    }

    fn date(&self, node: &Node, path: &str) -> Result<NaiveDate, Fail> {
        match (&node.kind, self.syntax) {
            (Kind::Date(d), _) => Ok(*d),
            (Kind::Str(s), Syntax::Json) => {
                parse_date(s).map_err(|e| Fail::at(node, format!("{path} {e}")))
            }
            (Kind::Str(_), Syntax::Toml) => Err(Fail::at(
                node,
                format!(
                    "{path} must be a date like 2024-01-01, found a string \
                     (write a TOML date without quotes)"
                ),
            )),
            (Kind::BadDate(what), _) => Err(Fail::at(
                node,
                format!("{path} must be a date like 2024-01-01, not {what}"),
            )),
            (k, Syntax::Toml) => Err(Fail::at(
                node,
                format!(
                    "{path} must be a date like 2024-01-01, found {}",
                    k.describe()
                ),
            )),
            (k, Syntax::Json) => Err(Fail::at(
                node,
                format!(
                    "{path} must be a date string like \"2024-01-01\", found {}",
                    k.describe()
                ),
            )),
        }
    }

    /// A term value (SPEC §2 value types).
    fn value(&self, node: &Node, path: &str) -> Result<Value, Fail> {
        match &node.kind {
            Kind::Null => Err(Fail::at(
                node,
                format!("{path} is null; a term has a value (to end a term, use remove)"),
            )),
            Kind::Bool(b) => Ok(Value::Bool(*b)),
            Kind::Int(i) => Ok(Value::Int(*i)),
            Kind::BigInt(raw) => Err(Fail::at(
                node,
                format!(
                    "{path}: integer {raw} is out of range (-2^63 to 2^63-1); \
                     write it as a decimal instead"
                ),
            )),
            Kind::Number(raw) => Ok(Value::Decimal(decimal_number(node, raw, path)?)),
            Kind::Str(s) => Ok(Value::Text(s.clone())),
            Kind::Date(d) => Ok(Value::Date(*d)),
            Kind::BadDate(what) => Err(Fail::at(
                node,
                format!("{path}: {what} is not a term value; write a date like 2024-01-01"),
            )),
            Kind::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, n)| self.value(n, &format!("{path}[{i}]")))
                .collect::<Result<_, _>>()
                .map(Value::List),
            Kind::Table(entries) => self.tagged(node, entries, path),
        }
    }

    /// A table value: money, percent, or (needed in JSON, accepted in both) date and decimal.
    fn tagged(&self, node: &Node, entries: &[Entry], path: &str) -> Result<Value, Fail> {
        let mut keys: Vec<&str> = entries.iter().map(|e| e.key.as_str()).collect();
        keys.sort_unstable();
        let field = |key: &str| {
            entries
                .iter()
                .find(|e| e.key == key)
                .map(|e| &e.node)
                .ok_or_else(|| Fail::at(node, format!("{path}: missing `{key}`")))
        };
        match keys.as_slice() {
            ["amount", "currency"] => {
                let amount_path = format!("{path}.amount");
                let amount = field("amount")?;
                let Kind::Str(a) = &amount.kind else {
                    return Err(Fail::at(
                        amount,
                        format!(
                            "{amount_path} must be a decimal string like \"120000.00\", found {}",
                            amount.kind.describe()
                        ),
                    ));
                };
                let amount_value = Decimal::parse(a)
                    .map_err(|e| Fail::at(amount, format!("{amount_path}: {e}")))?;
                let currency_path = format!("{path}.currency");
                let currency = field("currency")?;
                let c = self.string(currency, &currency_path)?;
                let currency_value = Currency::parse(&c)
                    .map_err(|e| Fail::at(currency, format!("{currency_path}: {e}")))?;
                Ok(Value::Money(Money {
                    amount: amount_value,
                    currency: currency_value,
                }))
            }
            ["percent"] => Ok(Value::Percent(
                self.decimal_field(field("percent")?, &format!("{path}.percent"))?,
            )),
            ["decimal"] => Ok(Value::Decimal(
                self.decimal_field(field("decimal")?, &format!("{path}.decimal"))?,
            )),
            ["date"] => {
                let n = field("date")?;
                let date_path = format!("{path}.date");
                match &n.kind {
                    Kind::Str(s) => parse_date(s)
                        .map(Value::Date)
                        .map_err(|e| Fail::at(n, format!("{date_path} {e}"))),
                    _ => self.date(n, &date_path).map(Value::Date),
                }
            }
            _ => {
                let found = if keys.is_empty() {
                    "an empty table".to_owned()
                } else {
                    format!("keys {}", backticked(&keys))
                };
                Err(Fail::at(
                    node,
                    format!(
                        "{path}: a table value must be {{ amount, currency }} (money), \
                         {{ percent }}, {{ date }} or {{ decimal }}; found {found}"
                    ),
                ))
            }
        }
    }

    /// A decimal written as a number (kept as written) or as a string.
    fn decimal_field(&self, node: &Node, path: &str) -> Result<Decimal, Fail> {
        match &node.kind {
            Kind::Int(i) => {
                Decimal::parse(&i.to_string()).map_err(|e| Fail::at(node, format!("{path}: {e}")))
            }
            Kind::BigInt(raw) | Kind::Number(raw) => decimal_number(node, raw, path),
            Kind::Str(s) => Decimal::parse(s).map_err(|e| Fail::at(node, format!("{path}: {e}"))),
            k => Err(Fail::at(
                node,
                format!(
                    "{path} must be a number or a decimal string like \"12.5\", found {}",
                    k.describe()
                ),
            )),
        }
    }
}

/// A number as written in the file, as a decimal: no exponent, no inf or nan.
fn decimal_number(node: &Node, raw: &str, path: &str) -> Result<Decimal, Fail> {
    let lower = raw.to_ascii_lowercase();
    if lower.contains("inf") || lower.contains("nan") {
        return Err(Fail::at(
            node,
            format!("{path}: {raw} is not a finite number"),
        ));
    }
    if lower.contains('e') {
        return Err(Fail::at(
            node,
            format!(
                "{path}: {raw} has an exponent; write the number out in full \
                 (1500.0, not 1.5e3), so it is kept exactly as written"
            ),
        ));
    }
    Decimal::parse(raw).map_err(|e| Fail::at(node, format!("{path}: {e}")))
}

/// A `YYYY-MM-DD` string (JSON has no date type). The error reads after the field's path.
fn parse_date(s: &str) -> Result<NaiveDate, String> {
    let b = s.as_bytes();
    let shape = b.len() == 10
        && b.iter().enumerate().all(|(i, c)| {
            if i == 4 || i == 7 {
                *c == b'-'
            } else {
                c.is_ascii_digit()
            }
        });
    if !shape {
        return Err(format!(
            "must be a date like 2024-01-01 (YYYY-MM-DD), found {s:?}"
        ));
    }
    let num = |r: std::ops::Range<usize>| s.get(r).and_then(|p| p.parse::<u32>().ok());
    let day = match (num(0..4), num(5..7), num(8..10)) {
        (Some(y), Some(m), Some(d)) => i32::try_from(y)
            .ok()
            .and_then(|y| NaiveDate::from_ymd_opt(y, m, d)),
        _ => None,
    };
    day.ok_or_else(|| format!("must be a date like 2024-01-01: {s} is not a day in the calendar"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn date_strings() {
        assert_eq!(
            parse_date("2024-02-29"),
            Ok(NaiveDate::from_ymd_opt(2024, 2, 29).unwrap())
        );
        for bad in [
            "2023-02-29",
            "2024-1-01",
            "2024-01-01T00:00",
            "",
            "２０２４-01-01",
            "2024/01/01",
        ] {
            assert!(parse_date(bad).is_err(), "{bad}");
        }
    }
}
