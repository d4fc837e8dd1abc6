//! `pactum demo`: the built-in Microsoft–OpenAI ledger, loaded into a temporary store and
//! toured. Needs no store and no files: the amendment files are compiled into the binary.

use chrono::NaiveDate;
use include_dir::{include_dir, Dir};
use pactum_app::{json, Ledger, PointSpec, Submission};
use pactum_domain::{Slug, Stamper, TermKey};
use pactum_projection::Cut;
use pactum_store::SledStore;

use crate::args::Format;
use crate::commands::{Failure, Outcome};
use crate::output::Style;
use crate::text;

static LEDGER: Dir<'_> = include_dir!("$CARGO_MANIFEST_DIR/data/microsoft-openai");

/// The day the demo's diff starts from: the eve of the 2025 loosening.
const DIFF_FROM: &str = "2024-12-31";
const AGREEMENT: &str = "microsoft-openai";
const TERM: &str = "ip-license.exclusive";

/// The embedded amendment files, in file-name order.
pub fn submissions() -> Result<Vec<Submission>, Failure> {
    let mut files: Vec<_> = LEDGER
        .files()
        .filter(|f| f.path().extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort_by_key(|f| f.path());
    files
        .into_iter()
        .map(|f| {
            let name = format!("data/microsoft-openai/{}", f.path().display());
            let draft = pactum_format::parse_amendment(&name, f.contents())
                .map_err(|e| Failure::refused(e.to_string()))?;
            Ok(Submission { file: name, draft })
        })
        .collect()
}

pub fn run(
    format: Format,
    style: &Style,
    today: NaiveDate,
    stamper: Box<dyn Stamper>,
) -> Result<Outcome, Failure> {
    let ledger = Ledger::new(SledStore::temporary()?, stamper);
    let recorded = ledger.append(&submissions()?)?;
    let agreement = Slug::parse(AGREEMENT).map_err(|e| Failure::refused(e.to_string()))?;
    let term = TermKey::parse(TERM).map_err(|e| Failure::refused(e.to_string()))?;
    let from: PointSpec = DIFF_FROM
        .parse()
        .map_err(|e: pactum_app::PointSpecError| Failure::refused(e.to_string()))?;

    let log = ledger.log(&agreement)?;
    let terms = ledger.terms(&agreement, Cut::Latest, today)?;
    let diff = ledger.diff(&agreement, from, PointSpec::Day(today), today)?;
    let history = ledger.history(&agreement, &term)?;
    let reports = ledger.verify(Some(&agreement))?;

    let stdout = match format {
        Format::Json => {
            let value = serde_json::json!({
                "log": json::log(&log),
                "terms": json::terms(&agreement, &terms),
                "diff": json::diff(&agreement, &diff),
                "history": json::history(&history),
                "verify": json::verify(&reports),
            });
            serde_json::to_string_pretty(&value).unwrap_or_default() + "\n"
        }
        Format::Text => {
            let section = |title: String| format!("{}\n\n", style.bold(&format!("== {title} ==")));
            let mut out = format!(
                "Pactum demo: the Microsoft–OpenAI partnership, {} amendments loaded into a \
                 temporary store.\nEach section shows the command that prints it on your own \
                 store.\n\n",
                recorded.len()
            );
            out += &section(format!("pactum log {AGREEMENT}"));
            out += &text::log(style, &log);
            out += &section(format!("pactum terms {AGREEMENT} --on {today}"));
            out += &text::terms(style, &agreement, &terms);
            out.push('\n');
            out += &section(format!("pactum diff {AGREEMENT} {DIFF_FROM} {today}"));
            out += &text::diff(style, &agreement, &diff);
            out.push('\n');
            out += &section(format!("pactum history {AGREEMENT} {TERM}"));
            out += &text::history(style, &agreement, &term, &history);
            out.push('\n');
            out += &section(format!("pactum verify {AGREEMENT}"));
            out += &text::verify(style, &reports);
            out
        }
    };
    Ok(Outcome::ok(stdout))
}
