//! The circuit breaker and the send pacing of one webhook, as plain rules: what a batch of
//! attempt results does to its health, and which of its claimed rows may be sent now.
//!
//! A failed attempt is any counted attempt (a request was sent, or could not be: timeout,
//! refused connection, address refused by the SSRF guard) that did not end in a 2xx; a failed
//! CRA challenge is not an attempt and does not count, nor does a test delivery. After
//! `failures` consecutive failed attempts the breaker opens: the webhook's rows stay where
//! they are and are not claimed for `cooldown`; then one probe is sent (half-open). Its
//! success closes the breaker; its failure opens it again for twice the cooldown (at most
//! [`MAX_COOLDOWN`]). After `disable_after` of continuous failure the webhook is deactivated
//! and no probe is sent until it is turned on again.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The longest pause of an open breaker.
pub const MAX_COOLDOWN: Duration = Duration::from_secs(3600);

/// How late a paced send may start after its reserved time; beyond it, the row is given back
/// and paced again. Each send of a rate-limited webhook is spaced by a `1/limit` share of one
/// second plus this slack, so that starts delayed by up to the slack still never put more than
/// `limit` starts in one second.
pub const PACING_SLACK: Duration = Duration::from_millis(100);

/// How far ahead a claim reserves the start times of a rate-limited webhook's sends.
pub const PACING_HORIZON: Duration = Duration::from_secs(1);

/// The settings of the breaker (`HOOKLINE_BREAKER_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failed attempts that open the breaker.
    pub failures: u32,
    /// The first pause of an open breaker.
    pub cooldown: Duration,
    /// Continuous failure after which the webhook is deactivated.
    pub disable_after: Duration,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        Self { failures: 20, cooldown: Duration::from_secs(30), disable_after: Duration::from_secs(5 * 86_400) }
    }
}

/// Where a webhook's breaker stands.
#[derive(async_graphql::Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum BreakerState {
    /// Sends flow.
    Closed,
    /// Sends wait until the next probe (or, when the webhook was deactivated, until it is
    /// turned on again).
    Open,
    /// One probe is being sent; the other sends wait for its result.
    HalfOpen,
}

impl BreakerState {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Closed => "closed",
            Self::Open => "open",
            Self::HalfOpen => "half_open",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        [Self::Closed, Self::Open, Self::HalfOpen].into_iter().find(|s| s.as_str() == text)
    }
}

/// A webhook's breaker and pacing (see `entity::webhook_health`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    pub webhook_id: i64,
    pub state: BreakerState,
    pub consecutive_failures: i32,
    pub failing_since: Option<DateTime<Utc>>,
    pub opened_at: Option<DateTime<Utc>>,
    pub next_probe_at: Option<DateTime<Utc>>,
    pub cooldown: Duration,
    pub probe_id: Option<i64>,
    pub probe_until: Option<DateTime<Utc>>,
    pub paced_until: Option<DateTime<Utc>>,
}

/// One counted attempt's result, as the breaker sees it.
#[derive(Debug, Clone, Copy)]
pub struct AttemptEnd {
    pub queued_id: i64,
    pub succeeded: bool,
    pub at: DateTime<Utc>,
}

/// What a claim may do with a webhook's claimed rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Send them (within the rate limit).
    All,
    /// Send the first as the probe; give the others back.
    Probe,
    /// Give them all back.
    None,
}

fn later(at: DateTime<Utc>, by: Duration) -> DateTime<Utc> {
    chrono::Duration::from_std(by).ok().and_then(|by| at.checked_add_signed(by)).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

impl Health {
    /// A closed breaker with no failure and no pacing.
    pub fn closed(webhook_id: i64) -> Self {
        Self {
            webhook_id,
            state: BreakerState::Closed,
            consecutive_failures: 0,
            failing_since: None,
            opened_at: None,
            next_probe_at: None,
            cooldown: Duration::ZERO,
            probe_id: None,
            probe_until: None,
            paced_until: None,
        }
    }

    /// The health after these attempts (in the order they ended), and whether the webhook is
    /// to be deactivated now (it failed without a break for `disable_after`).
    pub fn after(&self, attempts: &[AttemptEnd], config: &BreakerConfig, now: DateTime<Utc>) -> (Self, bool) {
        let mut next = self.clone();
        for attempt in attempts {
            if attempt.succeeded {
                next = Self { paced_until: next.paced_until, ..Self::closed(next.webhook_id) };
                continue;
            }
            next.consecutive_failures = next.consecutive_failures.saturating_add(1);
            next.failing_since.get_or_insert(attempt.at);
            match next.state {
                BreakerState::Closed if next.consecutive_failures as u64 >= u64::from(config.failures) => {
                    next.open(config.cooldown, now);
                }
                BreakerState::HalfOpen if next.probe_id == Some(attempt.queued_id) => {
                    next.open((next.cooldown * 2).clamp(config.cooldown, MAX_COOLDOWN), now);
                }
                // Attempts claimed before the breaker opened, or forced sends: they count, but
                // only the probe decides.
                _ => {}
            }
        }
        let deactivate = next.consecutive_failures > 0
            && next.failing_since.is_some_and(|since| later(since, config.disable_after) <= now)
            && !next.held();
        if deactivate {
            if next.state != BreakerState::Open {
                next.state = BreakerState::Open;
                next.opened_at = Some(now);
                next.cooldown = next.cooldown.max(config.cooldown);
            }
            next.next_probe_at = None;
            next.probe_id = None;
            next.probe_until = None;
        }
        (next, deactivate)
    }

    fn open(&mut self, cooldown: Duration, now: DateTime<Utc>) {
        self.state = BreakerState::Open;
        self.opened_at = Some(now);
        self.cooldown = cooldown.min(MAX_COOLDOWN);
        self.next_probe_at = Some(later(now, self.cooldown));
        self.probe_id = None;
        self.probe_until = None;
    }

    /// Open with no probe to come: the webhook was deactivated by the breaker.
    pub fn held(&self) -> bool {
        self.state == BreakerState::Open && self.next_probe_at.is_none()
    }

    /// What a claim at `now` may do with this webhook's rows.
    pub fn admission(&self, now: DateTime<Utc>) -> Admission {
        match self.state {
            BreakerState::Closed => Admission::All,
            BreakerState::Open if self.next_probe_at.is_some_and(|at| at <= now) => Admission::Probe,
            BreakerState::Open => Admission::None,
            // A probe whose process died (or whose lease ended) is replaced by another.
            BreakerState::HalfOpen if self.probe_until.is_none_or(|until| until <= now) => Admission::Probe,
            BreakerState::HalfOpen => Admission::None,
        }
    }

    /// The breaker goes half-open with this row as its probe, owned until `until`.
    pub fn probing(&mut self, queued_id: i64, until: DateTime<Utc>) {
        self.state = BreakerState::HalfOpen;
        self.probe_id = Some(queued_id);
        self.probe_until = Some(until);
    }

    /// The probe went back to the queue unsent: another may go at once.
    pub fn probe_released(&mut self, now: DateTime<Utc>) {
        self.state = BreakerState::Open;
        self.next_probe_at = Some(now);
        self.probe_id = None;
        self.probe_until = None;
    }

    /// The webhook was turned on again after the breaker deactivated it: one probe at once,
    /// and the failure clock starts again.
    pub fn reactivated(&mut self, now: DateTime<Utc>) {
        if self.held() {
            self.next_probe_at = Some(now);
            self.failing_since = Some(now);
        }
    }

    /// Reserves start times for up to `wanted` sends of a webhook limited to `per_second`:
    /// spaced by `(1 s + slack) / per_second`, from the later of now and the last reservation,
    /// and no further ahead than the horizon. Returns the start times (maybe fewer than
    /// wanted, maybe none).
    pub fn pace(&mut self, wanted: usize, per_second: u32, now: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let spacing = spacing(per_second);
        let mut at = self.paced_until.filter(|until| *until > now).unwrap_or(now);
        let horizon = later(now, PACING_HORIZON);
        let mut starts = Vec::new();
        while starts.len() < wanted && at < horizon {
            starts.push(at);
            at = later(at, spacing);
        }
        if !starts.is_empty() {
            self.paced_until = Some(at);
        }
        starts
    }

    /// A send made outside the pacing (a forced send, a test delivery) still spends a share.
    pub fn spend(&mut self, per_second: u32, now: DateTime<Utc>) {
        let at = self.paced_until.filter(|until| *until > now).unwrap_or(now);
        self.paced_until = Some(later(at, spacing(per_second)));
    }
}

/// A duration as people write it: `5d`, `2h`, `30s`, `250ms` (its largest whole unit).
pub fn describe(duration: Duration) -> String {
    let ms = duration.as_millis();
    for (unit, size) in [("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)] {
        if ms >= size && ms.is_multiple_of(size) {
            return format!("{}{unit}", ms / size);
        }
    }
    format!("{ms}ms")
}

/// The time between two paced starts.
pub fn spacing(per_second: u32) -> Duration {
    (Duration::from_secs(1) + PACING_SLACK) / per_second.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> BreakerConfig {
        BreakerConfig { failures: 3, cooldown: Duration::from_secs(1), disable_after: Duration::from_secs(3600) }
    }

    fn ends(results: &[bool], now: DateTime<Utc>) -> Vec<AttemptEnd> {
        results.iter().enumerate().map(|(i, &ok)| AttemptEnd { queued_id: i as i64, succeeded: ok, at: now }).collect()
    }

    #[test]
    fn opens_after_the_failures_and_a_success_resets() {
        let now = Utc::now();
        let (h, deactivate) = Health::closed(1).after(&ends(&[false, false], now), &config(), now);
        assert_eq!((h.state, h.consecutive_failures, deactivate), (BreakerState::Closed, 2, false));
        let (h, _) = h.after(&ends(&[true], now), &config(), now);
        assert_eq!(h, Health::closed(1));
        let (h, _) = h.after(&ends(&[false, false, false], now), &config(), now);
        assert_eq!(h.state, BreakerState::Open);
        assert_eq!(h.next_probe_at, Some(now + chrono::Duration::seconds(1)));
        assert_eq!(h.admission(now), Admission::None);
        assert_eq!(h.admission(now + chrono::Duration::seconds(1)), Admission::Probe);
    }

    #[test]
    fn a_failed_probe_doubles_the_cooldown_up_to_an_hour_and_only_the_probe_decides() {
        let now = Utc::now();
        let (mut h, _) = Health::closed(1).after(&ends(&[false, false, false], now), &config(), now);
        for expected in [2, 4, 8] {
            h.probing(99, now + chrono::Duration::seconds(60));
            assert_eq!(h.admission(now), Admission::None);
            // A straggler's failure does not decide.
            let (same, _) = h.after(&[AttemptEnd { queued_id: 5, succeeded: false, at: now }], &config(), now);
            assert_eq!(same.state, BreakerState::HalfOpen);
            (h, _) = h.after(&[AttemptEnd { queued_id: 99, succeeded: false, at: now }], &config(), now);
            assert_eq!((h.state, h.cooldown), (BreakerState::Open, Duration::from_secs(expected)));
        }
        h.cooldown = Duration::from_secs(3000);
        h.probing(99, now);
        (h, _) = h.after(&[AttemptEnd { queued_id: 99, succeeded: false, at: now }], &config(), now);
        assert_eq!(h.cooldown, MAX_COOLDOWN);
        h.probing(99, now + chrono::Duration::seconds(60));
        (h, _) = h.after(&[AttemptEnd { queued_id: 99, succeeded: true, at: now }], &config(), now);
        assert_eq!(h.state, BreakerState::Closed);
    }

    #[test]
    fn a_lost_probe_is_replaced_once_its_lease_ends() {
        let now = Utc::now();
        let mut h = Health::closed(1);
        h.state = BreakerState::Open;
        h.probing(7, now + chrono::Duration::seconds(5));
        assert_eq!(h.admission(now), Admission::None);
        assert_eq!(h.admission(now + chrono::Duration::seconds(5)), Admission::Probe);
        h.probe_released(now);
        assert_eq!(h.admission(now), Admission::Probe);
    }

    #[test]
    fn continuous_failure_deactivates_once_and_holds_the_rows() {
        let start = Utc::now();
        let now = start + chrono::Duration::seconds(3600);
        let first = [AttemptEnd { queued_id: 1, succeeded: false, at: start }];
        let (h, deactivate) = Health::closed(1).after(&first, &config(), start);
        assert!(!deactivate);
        let (mut h, deactivate) = h.after(&ends(&[false], now), &config(), now);
        assert!(deactivate && h.held());
        assert_eq!(h.admission(now + chrono::Duration::days(30)), Admission::None);
        let (_, again) = h.after(&ends(&[false], now), &config(), now);
        assert!(!again);
        h.reactivated(now);
        assert_eq!(h.admission(now), Admission::Probe);
    }

    #[test]
    fn durations_read_as_written() {
        assert_eq!(describe(Duration::from_secs(5 * 86_400)), "5d");
        assert_eq!(describe(Duration::from_secs(90)), "90s");
        assert_eq!(describe(Duration::from_millis(1500)), "1500ms");
    }

    #[test]
    fn pacing_spaces_starts_within_the_horizon() {
        let now = Utc::now();
        let mut h = Health::closed(1);
        let starts = h.pace(100, 5, now);
        assert_eq!(starts.len(), 5);
        assert_eq!(starts[1] - starts[0], chrono::Duration::milliseconds(220));
        // No more within the horizon until time passes.
        assert!(h.pace(10, 5, now).is_empty());
        let later = h.paced_until.expect("paced");
        assert_eq!(h.pace(1, 5, later)[0], later);
        // Claim after claim, any limit+1 consecutive starts span more than a second.
        let mut h = Health::closed(2);
        let mut starts = Vec::new();
        let mut at = now;
        for _ in 0..5 {
            starts.extend(h.pace(100, 10, at));
            at = h.paced_until.expect("paced");
        }
        assert_eq!(starts.len(), 50);
        assert!(starts.windows(11).all(|w| w[10] - w[0] > chrono::Duration::seconds(1)));
        // A forced send spends a share.
        let before = h.paced_until;
        h.spend(10, now);
        assert_eq!(h.paced_until, before.map(|t| t + chrono::Duration::milliseconds(110)));
    }
}
