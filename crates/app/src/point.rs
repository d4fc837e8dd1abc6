//! The points `diff` compares: `N` / `vN` (the ledger at version N, on today) or `YYYY-MM-DD`
//! (the latest ledger, on that day).

use std::str::FromStr;

use chrono::NaiveDate;
use pactum_domain::Version;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointSpec {
    Version(Version),
    Day(NaiveDate),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a point: write a version (3 or v3) or a day (2025-06-30)")]
pub struct PointSpecError(pub String);

impl FromStr for PointSpec {
    type Err = PointSpecError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let digits = s.strip_prefix('v').unwrap_or(s);
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            return digits
                .parse()
                .map(PointSpec::Version)
                .map_err(|_| PointSpecError(s.to_owned()));
        }
        NaiveDate::parse_from_str(s, "%Y-%m-%d")
            .map(PointSpec::Day)
            .map_err(|_| PointSpecError(s.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_points() {
        assert_eq!("3".parse(), Ok(PointSpec::Version(3)));
        assert_eq!("v12".parse(), Ok(PointSpec::Version(12)));
        assert_eq!(
            "2025-06-30".parse(),
            Ok(PointSpec::Day(
                NaiveDate::from_ymd_opt(2025, 6, 30).unwrap()
            ))
        );
        for bad in ["", "v", "x3", "2025-13-01", "99999999999999999999999", "-1"] {
            assert!(bad.parse::<PointSpec>().is_err(), "{bad}");
        }
    }
}
