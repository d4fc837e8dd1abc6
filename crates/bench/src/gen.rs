//! The synthetic portfolio: valid amendment histories, deterministic from a seed.
//!
//! Each agreement has its own random stream, so any agreement can be regenerated (and continued
//! past its imported length) without replaying the others. The generator keeps just enough state
//! per agreement (each term's active events in (effective, version) order) to produce only what
//! `Ledger::append` accepts: removes of terms in force on their effective date, retroactive
//! amendments never before the first, and revocations of active, non-opening versions. Versions
//! it revokes are never revokers themselves, so its model of "active" stays a plain set.

use chrono::{Days, NaiveDate};
use pactum_domain::{
    Change, Currency, Decimal, Draft, DraftFields, Money, Opening, Slug, TermKey, Value, Version,
};

use crate::rng::Rng;
use crate::BenchError;

/// The term keys every agreement draws from; key `i` always holds values of type `i % 8`.
pub const KEYS: [&str; 50] = [
    "term.start-date",
    "fees.annual",
    "fees.setup",
    "fees.currency-note",
    "renewal.auto",
    "renewal.notice-days",
    "renewal.cap",
    "renewal.price-increase",
    "liability.cap-applies",
    "liability.cap-multiple",
    "liability.cap-ratio",
    "liability.exclusions-note",
    "sla.effective",
    "sla.regions",
    "sla.credit",
    "sla.uptime",
    "ip-license.exclusive",
    "ip-license.seats",
    "ip-license.royalty-rate",
    "ip-license.scope",
    "ip-license.expiry",
    "ip-license.territories",
    "ip-license.minimum",
    "ip-license.share",
    "data.residency-required",
    "data.retention-days",
    "data.breach-hours",
    "data.processor",
    "data.audit-date",
    "data.locations",
    "data.penalty",
    "data.share",
    "support.premium",
    "support.response-hours",
    "support.tier",
    "support.language",
    "support.review-date",
    "support.channels",
    "support.fee",
    "support.discount",
    "exclusivity.active",
    "exclusivity.months",
    "exclusivity.score",
    "exclusivity.field",
    "exclusivity.until-date",
    "exclusivity.products",
    "exclusivity.fee",
    "revenue-share.rate",
    "termination.for-convenience",
    "termination.notice-days",
];

/// How an agreement's history is shaped.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Share of amendments effective before the previous one.
    pub retro: f64,
    /// Share of amendments that revoke an earlier version.
    pub revoke: f64,
    /// Share of changes that remove a term in force (where one can be).
    pub remove: f64,
    /// Share of sets that carry an `until`.
    pub until: f64,
    /// Largest gap, in days, between an in-order amendment and the latest effective date.
    pub max_gap: u64,
}

impl Shape {
    /// The portfolio's agreements (and the long one): 5% retroactive, 1% revocations.
    pub fn portfolio(amendments: usize) -> Shape {
        Shape {
            retro: 0.05,
            revoke: 0.01,
            remove: 0.2,
            until: 0.1,
            max_gap: max_gap(amendments),
        }
    }

    /// An agreement amended in date order, never corrected: what a git history of a terms file
    /// can represent.
    pub fn in_order(amendments: usize) -> Shape {
        Shape {
            retro: 0.0,
            revoke: 0.0,
            ..Shape::portfolio(amendments)
        }
    }
}

/// About ten years of history whatever the length, but at least a day or two between amendments.
fn max_gap(amendments: usize) -> u64 {
    (7300 / amendments.max(1) as u64).max(2)
}

/// Counts of what the generator produced, to show the data's shape next to the figures.
#[derive(Debug, Clone, Copy, Default)]
pub struct GenStats {
    pub amendments: u64,
    pub retroactive: u64,
    pub revocations: u64,
    pub sets: u64,
    pub removes: u64,
    pub untils: u64,
}

impl GenStats {
    pub fn add(&mut self, o: &GenStats) {
        self.amendments += o.amendments;
        self.retroactive += o.retroactive;
        self.revocations += o.revocations;
        self.sets += o.sets;
        self.removes += o.removes;
        self.untils += o.untils;
    }
}

/// What the benchmark needs to know about a generated agreement to ask it questions.
#[derive(Debug, Clone)]
pub struct Meta {
    pub slug: Slug,
    pub latest: Version,
    pub first: NaiveDate,
    pub last: NaiveDate,
}

/// One active event of one term.
#[derive(Debug, Clone, Copy)]
struct Ev {
    effective: NaiveDate,
    version: Version,
    /// `Some(until)` for a set, `None` for a remove.
    set: Option<Option<NaiveDate>>,
}

/// Generates one agreement's amendments in version order.
pub struct AgreementGen {
    slug: Slug,
    rng: Rng,
    shape: Shape,
    first: Option<NaiveDate>,
    previous: NaiveDate,
    latest_day: NaiveDate,
    /// Per key index: the active events, in (effective, version) order.
    events: Vec<Vec<Ev>>,
    /// Index `v - 1`: version `v`'s effective date and the key indexes it changed.
    changed: Vec<(NaiveDate, Vec<usize>)>,
    /// Versions that may still be revoked: not the opening, not revoked, not revokers.
    revocable: Vec<Version>,
    pub stats: GenStats,
}

/// The portfolio's agreements are `a000000`, `a000001`, …
pub fn portfolio_slug(index: usize) -> Result<Slug, BenchError> {
    slug(&format!("a{index:06}"))
}

pub fn slug(s: &str) -> Result<Slug, BenchError> {
    Slug::parse(s).map_err(|e| BenchError::Generator(e.to_string()))
}

fn key(index: usize) -> Result<TermKey, BenchError> {
    let name = KEYS.get(index).copied().unwrap_or("term.other");
    TermKey::parse(name).map_err(|e| BenchError::Generator(e.to_string()))
}

fn base_day() -> NaiveDate {
    NaiveDate::from_ymd_opt(2010, 1, 1).unwrap_or(NaiveDate::MIN)
}

fn add_days(day: NaiveDate, n: u64) -> NaiveDate {
    day.checked_add_days(Days::new(n)).unwrap_or(day)
}

impl AgreementGen {
    pub fn new(slug: Slug, rng: Rng, shape: Shape) -> AgreementGen {
        AgreementGen {
            slug,
            rng,
            shape,
            first: None,
            previous: base_day(),
            latest_day: base_day(),
            events: vec![Vec::new(); KEYS.len()],
            changed: Vec::new(),
            revocable: Vec::new(),
            stats: GenStats::default(),
        }
    }

    /// The portfolio agreement number `index` of a run with this seed.
    pub fn portfolio(seed: u64, index: usize, amendments: usize) -> Result<Self, BenchError> {
        Ok(AgreementGen::new(
            portfolio_slug(index)?,
            Rng::stream(seed, index as u64),
            Shape::portfolio(amendments),
        ))
    }

    pub fn slug(&self) -> &Slug {
        &self.slug
    }

    /// How many amendments it has generated.
    pub fn version(&self) -> Version {
        self.changed.len() as Version
    }

    pub fn meta(&self) -> Meta {
        Meta {
            slug: self.slug.clone(),
            latest: self.version(),
            first: self.first.unwrap_or(self.latest_day),
            last: self.latest_day,
        }
    }

    /// Whether the term is in force (set, not lapsed) on `day` at the latest version.
    fn in_force(&self, key: usize, day: NaiveDate) -> bool {
        let Some(list) = self.events.get(key) else {
            return false;
        };
        let end = list.partition_point(|e| e.effective <= day);
        match end.checked_sub(1).and_then(|i| list.get(i)) {
            Some(Ev {
                set: Some(until), ..
            }) => until.is_none_or(|u| u >= day),
            _ => false,
        }
    }

    /// The next amendment, valid against everything generated before it.
    pub fn next_draft(&mut self) -> Result<Draft, BenchError> {
        let version = self.version() + 1;
        let mut stats = GenStats {
            amendments: 1,
            ..GenStats::default()
        };
        let (effective, open) = match self.first {
            None => {
                let day = add_days(base_day(), self.rng.below(3650));
                let n = self.slug.as_str().len();
                let open = Opening {
                    name: format!("Agreement {} (synthetic)", self.slug),
                    parties: vec![format!("Party A{n}"), format!("Party B of {}", self.slug)],
                };
                (day, Some(open))
            }
            Some(first) => {
                let span = self.previous.signed_duration_since(first).num_days();
                let day = if span > 0 && self.rng.chance(self.shape.retro) {
                    stats.retroactive = 1;
                    add_days(first, self.rng.below(span as u64))
                } else {
                    add_days(self.latest_day, self.rng.below(self.shape.max_gap + 1))
                };
                (day, None)
            }
        };
        let mut revokes = Vec::new();
        if open.is_none() && !self.revocable.is_empty() && self.rng.chance(self.shape.revoke) {
            let i = self.rng.below(self.revocable.len() as u64) as usize;
            if i < self.revocable.len() {
                revokes.push(self.revocable.swap_remove(i));
                stats.revocations = 1;
            }
        }
        let count = self.rng.between(1, 5) as usize;
        let mut keys: Vec<usize> = Vec::with_capacity(count);
        while keys.len() < count {
            let k = self.rng.below(KEYS.len() as u64) as usize;
            if !keys.contains(&k) {
                keys.push(k);
            }
        }
        // Removes are judged against the history before this amendment (its own revocation
        // included: the app decides against the stored versions).
        let mut changes = Vec::with_capacity(count);
        let mut new_events = Vec::with_capacity(count);
        for &k in &keys {
            let term = key(k)?;
            if open.is_none() && self.in_force(k, effective) && self.rng.chance(self.shape.remove) {
                stats.removes += 1;
                let text = self
                    .rng
                    .chance(0.3)
                    .then(|| format!("{term} no longer applies."));
                changes.push(Change::Remove { term, text });
                new_events.push((k, None));
            } else {
                stats.sets += 1;
                let until = self.rng.chance(self.shape.until).then(|| {
                    stats.untils += 1;
                    add_days(effective, self.rng.between(30, 1000))
                });
                let text = self.rng.chance(0.3).then(|| {
                    format!("The parties agree on {term} as set out in amendment {version}.")
                });
                let value = value_of(k, &mut self.rng)?;
                changes.push(Change::Set {
                    term,
                    value,
                    text,
                    until,
                });
                new_events.push((k, Some(until)));
            }
        }
        for &target in &revokes {
            self.forget(target);
        }
        for (k, set) in new_events {
            if let Some(list) = self.events.get_mut(k) {
                let at = list.partition_point(|e| e.effective <= effective);
                list.insert(
                    at,
                    Ev {
                        effective,
                        version,
                        set,
                    },
                );
            }
        }
        self.changed.push((effective, keys));
        if version > 1 && revokes.is_empty() {
            self.revocable.push(version);
        }
        self.first.get_or_insert(effective);
        self.previous = effective;
        self.latest_day = self.latest_day.max(effective);
        self.stats.add(&stats);
        let summary = self
            .rng
            .chance(0.2)
            .then(|| format!("Synthetic amendment {version} of {}.", self.slug));
        let sources = if self.rng.chance(0.3) {
            vec![format!("https://example.com/{}/{version}", self.slug)]
        } else {
            Vec::new()
        };
        Draft::new(DraftFields {
            agreement: self.slug.clone(),
            title: format!("Amendment {version} to {}", self.slug),
            effective,
            summary,
            sources,
            expect_version: None,
            revokes,
            open,
            changes,
        })
        .map_err(|e| BenchError::Generator(format!("{} v{version}: {e}", self.slug)))
    }

    /// Drops a revoked version's events from the model.
    fn forget(&mut self, target: Version) {
        let Some((effective, keys)) = usize::try_from(target.saturating_sub(1))
            .ok()
            .and_then(|i| self.changed.get(i))
        else {
            return;
        };
        for &k in keys {
            if let Some(list) = self.events.get_mut(k) {
                let from = list.partition_point(|e| e.effective < *effective);
                if let Some(pos) = list
                    .get(from..)
                    .unwrap_or_default()
                    .iter()
                    .position(|e| e.version == target)
                {
                    list.remove(from + pos);
                }
            }
        }
    }
}

/// A value of key `k`'s type: bool, int, decimal, text, date, list, money, percent.
fn value_of(k: usize, rng: &mut Rng) -> Result<Value, BenchError> {
    let decimal = |s: String| Decimal::parse(&s).map_err(|e| BenchError::Generator(e.to_string()));
    Ok(match k % 8 {
        0 => Value::Bool(rng.chance(0.5)),
        1 => Value::Int(rng.below(100_000) as i64),
        2 => Value::Decimal(decimal(format!(
            "{}.{:02}",
            rng.below(10_000),
            rng.below(100)
        ))?),
        3 => Value::Text(
            rng.pick(&[
                "net 30",
                "net 60",
                "best efforts",
                "worldwide",
                "on request",
            ])
            .map_or("", |s| s)
            .to_owned(),
        ),
        4 => Value::Date(add_days(base_day(), rng.below(7300))),
        5 => {
            let regions = ["us", "eu", "uk", "apac", "latam", "mena"];
            let n = rng.between(1, 4) as usize;
            let start = rng.below(regions.len() as u64) as usize;
            Value::List(
                (0..n)
                    .filter_map(|i| regions.get((start + i) % regions.len()))
                    .map(|r| Value::Text((*r).to_owned()))
                    .collect(),
            )
        }
        6 => Value::Money(Money {
            amount: decimal(format!("{}.00", rng.between(1, 2_000_000)))?,
            currency: Currency::parse(rng.pick(&["USD", "EUR", "GBP", "JPY"]).map_or("USD", |s| s))
                .map_err(|e| BenchError::Generator(e.to_string()))?,
        }),
        _ => Value::Percent(decimal(if rng.chance(0.5) {
            format!("{}", rng.below(101))
        } else {
            format!("{}.5", rng.below(100))
        })?),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use pactum_app::{Ledger, Submission};
    use pactum_domain::StepStamper;
    use pactum_projection::{fold_terms, Cut, Point};
    use pactum_store::SledStore;

    #[test]
    fn every_key_parses_and_every_type_appears() {
        for k in 0..KEYS.len() {
            key(k).unwrap();
        }
        let mut rng = Rng::stream(1, 1);
        let types: std::collections::BTreeSet<&str> = (0..8)
            .map(|k| value_of(k, &mut rng).unwrap().type_name())
            .collect();
        assert_eq!(types.len(), 8);
    }

    /// Heavier than the portfolio (many retroactive amendments, revocations and removes), each
    /// amendment appended on its own so that the app judges every one against the store: the
    /// generator must never produce a history the ledger refuses, and the ledger's answers
    /// must equal the reference fold.
    #[test]
    fn generated_histories_are_accepted_one_by_one() {
        let start = chrono::DateTime::UNIX_EPOCH;
        let ledger = Ledger::new(
            SledStore::temporary().unwrap(),
            Box::new(StepStamper::new(start, chrono::Duration::seconds(1))),
        );
        let shape = Shape {
            retro: 0.3,
            revoke: 0.15,
            remove: 0.5,
            until: 0.3,
            max_gap: 20,
        };
        let mut total = GenStats::default();
        for i in 0..6 {
            let mut g =
                AgreementGen::new(portfolio_slug(i).unwrap(), Rng::stream(9, i as u64), shape);
            for _ in 0..60 {
                let draft = g.next_draft().unwrap();
                ledger
                    .append(&[Submission {
                        file: "gen".into(),
                        draft,
                    }])
                    .unwrap();
            }
            total.add(&g.stats);
            let m = g.meta();
            let all = ledger.log(&m.slug).unwrap();
            let mut rng = Rng::stream(3, i as u64);
            for _ in 0..40 {
                let version = rng.between(1, m.latest);
                let span = m.last.signed_duration_since(m.first).num_days() as u64;
                let on = add_days(m.first, rng.below(span + 60)) - Days::new(30);
                let got = ledger.terms(&m.slug, Cut::Version(version), on).unwrap();
                let want = fold_terms(&all, Point { version, on });
                assert_eq!(got, want);
            }
        }
        assert!(total.retroactive > 10 && total.revocations > 5 && total.removes > 10);
        assert!(total.untils > 10);
    }

    #[test]
    fn same_seed_same_drafts() {
        let mut a = AgreementGen::portfolio(5, 3, 10).unwrap();
        let mut b = AgreementGen::portfolio(5, 3, 10).unwrap();
        for _ in 0..10 {
            assert_eq!(a.next_draft().unwrap(), b.next_draft().unwrap());
        }
    }
}
