//! Snapshots of a sample ledger with retroactive amendments, a correction, lapses and a future
//! amendment, in SPEC §5's JSON shapes.

use pactum_domain::{Currency, Decimal, Money};

use super::*;
use crate::{fold_terms, Timeline};

fn usd(amount: &str) -> Value {
    Value::Money(Money {
        amount: Decimal::parse(amount).unwrap(),
        currency: Currency::parse("USD").unwrap(),
    })
}

fn text(s: &str) -> Value {
    Value::Text(s.into())
}

fn with_text(mut change: Change, clause: &str) -> Change {
    match &mut change {
        Change::Set { text, .. } | Change::Remove { text, .. } => *text = Some(clause.into()),
    }
    change
}

/// Versions 3 and 7 are retroactive; 5 corrects 4; the launch discount and premium support
/// lapse; 8 is effective in 2026. Recorded 40 days apart, so 3 and 7 are recorded after their
/// effective dates.
fn sample() -> Ledger {
    let mut l = Ledger::recorded_every(chrono::Duration::days(40));
    l.add(
        d("2024-01-01"),
        "Master subscription agreement",
        vec![
            with_text(
                set("fees.annual", usd("120000.00")),
                "Customer pays USD 120,000 a year.",
            ),
            set("support.level", text("standard")),
            set("term.end", Value::Date(d("2026-12-31"))),
            set_until(
                "discount.launch",
                Value::Percent(Decimal::parse("10").unwrap()),
                "2024-06-30",
            ),
            set("data.regions", Value::List(vec![text("us"), text("eu")])),
        ],
        vec![],
    );
    l.add(
        d("2024-03-01"),
        "Premium support for 2024",
        vec![
            set_until("support.premium", Value::Bool(true), "2024-12-31"),
            set("support.level", text("premium")),
        ],
        vec![],
    );
    l.add(
        d("2024-02-01"),
        "Fee cut, backdated to February",
        vec![set("fees.annual", usd("100000.00"))],
        vec![],
    );
    l.add(
        d("2024-09-01"),
        "Fee increase",
        vec![set("fees.annual", usd("150000.00"))],
        vec![],
    );
    l.add(
        d("2024-09-15"),
        "Correction: the fee increase was recorded in error",
        vec![set("notice.days", Value::Int(30))],
        vec![4],
    );
    l.add(
        d("2025-01-01"),
        "Regions narrowed, premium support ended",
        vec![
            set("data.regions", Value::List(vec![text("eu")])),
            with_text(remove("support.premium"), "Premium support ends."),
        ],
        vec![],
    );
    l.add(
        d("2024-04-01"),
        "Late-payment interest, backdated to April",
        vec![set(
            "late.interest",
            Value::Decimal(Decimal::parse("1.5").unwrap()),
        )],
        vec![],
    );
    l.add(
        d("2026-01-01"),
        "Renewal",
        vec![set("term.end", Value::Date(d("2028-12-31")))],
        vec![],
    );
    l
}

#[test]
fn terms_at_every_version() {
    let l = sample();
    let tl = l.timeline();
    let all: Vec<_> = (0..=tl.latest())
        .map(|k| {
            let t = tl.terms_at(at(k, "2025-06-01"));
            assert_eq!(t, fold_terms(&l.amendments, at(k, "2025-06-01")));
            t
        })
        .collect();
    insta::assert_json_snapshot!("terms_at_every_version_on_2025_06_01", all);
}

#[test]
fn terms_through_the_year() {
    let tl = sample().timeline();
    let days = [
        "2024-01-15",
        "2024-06-30",
        "2024-07-01",
        "2024-12-31",
        "2026-06-01",
    ];
    let all: Vec<_> = days.iter().map(|on| tl.terms_at(at(8, on))).collect();
    insta::assert_json_snapshot!("terms_at_latest_through_the_years", all);
}

#[test]
fn diffs() {
    let tl = sample().timeline();
    insta::assert_json_snapshot!(
        "diff_latest_2024_01_15_to_2025_06_01",
        tl.diff(at(8, "2024-01-15"), at(8, "2025-06-01"))
    );
    // What the correction (v5) and the backdated interest (v7) changed about September 2024.
    insta::assert_json_snapshot!(
        "diff_v4_to_v7_on_2024_09_20",
        tl.diff(at(4, "2024-09-20"), at(7, "2024-09-20"))
    );
}

#[test]
fn histories() {
    let tl = sample().timeline();
    insta::assert_json_snapshot!("history_fees_annual", tl.history(&key("fees.annual")));
    insta::assert_json_snapshot!(
        "history_support_premium",
        tl.history(&key("support.premium"))
    );
}

#[test]
fn replay() {
    let tl: Timeline = sample().timeline();
    insta::assert_json_snapshot!("replay", tl.replay());
}
