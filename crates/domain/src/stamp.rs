//! Where a store gets ids and times from. Injected, so tests are deterministic and the domain
//! stays free of the clock.

use std::sync::atomic::{AtomicU64, Ordering};

use chrono::{DateTime, Duration, DurationRound, Utc};
use uuid::Uuid;

/// A source of `recorded_at` times and amendment ids.
pub trait Stamper: Send + Sync {
    /// The current time (a store truncates it to microseconds and keeps it strictly increasing).
    fn now(&self) -> DateTime<Utc>;
    /// A fresh UUID v7 for an amendment recorded at `recorded_at`.
    fn new_id(&self, recorded_at: DateTime<Utc>) -> Uuid;
}

/// The `recorded_at` of an amendment appended after one recorded at `previous`: `now` truncated
/// to microseconds, or one microsecond after `previous` if the clock has not moved past it (or
/// stepped back).
pub fn next_recorded_at(previous: Option<DateTime<Utc>>, now: DateTime<Utc>) -> DateTime<Utc> {
    let now = now.duration_trunc(Duration::microseconds(1)).unwrap_or(now);
    match previous {
        Some(prev) if now <= prev => prev + Duration::microseconds(1),
        _ => now,
    }
}

/// A deterministic stamper for tests: the n-th call to `now` returns `start + n × step`; ids are
/// UUID v7 built from the time and a counter.
pub struct StepStamper {
    start: DateTime<Utc>,
    step: Duration,
    calls: AtomicU64,
    ids: AtomicU64,
}

impl StepStamper {
    pub fn new(start: DateTime<Utc>, step: Duration) -> Self {
        StepStamper {
            start,
            step,
            calls: AtomicU64::new(0),
            ids: AtomicU64::new(0),
        }
    }
}

impl StepStamper {
    /// Starts the id counter at `n`, as if `n` ids had been handed out: a process that appends
    /// to a store already holding `n` amendments then never repeats an id.
    pub fn with_ids_from(self, n: u64) -> Self {
        self.ids.store(n, Ordering::Relaxed);
        self
    }
}

impl Stamper for StepStamper {
    fn now(&self) -> DateTime<Utc> {
        let n = self.calls.fetch_add(1, Ordering::Relaxed);
        self.start + self.step * (n as i32)
    }

    fn new_id(&self, recorded_at: DateTime<Utc>) -> Uuid {
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut tail = [0u8; 10];
        tail[2..].copy_from_slice(&n.to_be_bytes());
        let millis = recorded_at.timestamp_millis().max(0) as u64;
        uuid::Builder::from_unix_timestamp_millis(millis, &tail).into_uuid()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn recorded_at_strictly_increases() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let later = t + Duration::nanoseconds(1500);
        assert_eq!(next_recorded_at(None, later), t + Duration::microseconds(1));
        assert_eq!(next_recorded_at(Some(t), t), t + Duration::microseconds(1));
        assert_eq!(
            next_recorded_at(Some(t), t - Duration::hours(1)),
            t + Duration::microseconds(1)
        );
        assert_eq!(
            next_recorded_at(Some(t), later),
            t + Duration::microseconds(1)
        );
        let much_later = t + Duration::seconds(5);
        assert_eq!(next_recorded_at(Some(t), much_later), much_later);
    }

    #[test]
    fn step_stamper_is_deterministic() {
        let t = Utc.with_ymd_and_hms(2026, 1, 1, 0, 0, 0).unwrap();
        let s = StepStamper::new(t, Duration::seconds(1));
        assert_eq!(s.now(), t);
        assert_eq!(s.now(), t + Duration::seconds(1));
        let a = s.new_id(t);
        let b = s.new_id(t);
        assert_ne!(a, b);
        assert_eq!(a.get_version_num(), 7);
        let s2 = StepStamper::new(t, Duration::seconds(1));
        assert_eq!(s2.new_id(t), a);
    }
}
