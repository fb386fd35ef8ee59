//! Retry policy: when the next attempt of a failed delivery is due.

use std::time::Duration;

use rand::Rng;

/// Delays before retry 1, 2, …; the last one repeats when a webhook allows more retries.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    pub schedule: Vec<Duration>,
    /// A fraction: each delay is spread uniformly over ±jitter of itself. 0 disables jitter.
    pub jitter: f64,
    /// The longest a `Retry-After` answer may push the next attempt.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            schedule: ["10s", "1m", "5m", "30m", "2h", "5h", "10h"]
                .iter()
                .filter_map(|d| parse_duration(d).ok())
                .collect(),
            jitter: 0.2,
            max_retry_after: Duration::from_secs(24 * 3600),
        }
    }
}

impl RetryPolicy {
    /// The delay before the retry that follows `attempts_made` attempts (1 for the first
    /// retry). A `Retry-After` from the receiver wins when it asks for longer, up to
    /// `max_retry_after`.
    pub fn next_delay(&self, attempts_made: u32, retry_after: Option<Duration>) -> Duration {
        let index = attempts_made.saturating_sub(1) as usize;
        let base = self.schedule.get(index).or(self.schedule.last()).copied().unwrap_or(Duration::from_secs(60));
        let jittered = if self.jitter > 0.0 {
            let factor = rand::rng().random_range((1.0 - self.jitter)..=(1.0 + self.jitter));
            Duration::try_from_secs_f64(base.as_secs_f64() * factor.max(0.0)).unwrap_or(base)
        } else {
            base
        };
        match retry_after {
            Some(asked) if asked > jittered => asked.min(self.max_retry_after),
            _ => jittered,
        }
    }
}

impl RetryPolicy {
    /// For a row queued `elapsed` ago that allows `retries` retries: the time left until its
    /// next scheduled retry (the schedule's delays added up, without jitter), or None when the
    /// schedule's window is spent.
    pub fn next_scheduled(&self, elapsed: Duration, retries: u32) -> Option<Duration> {
        let mut at = Duration::ZERO;
        for index in 0..retries as usize {
            let delay = self.schedule.get(index).or(self.schedule.last()).copied().unwrap_or(Duration::from_secs(60));
            at = at.saturating_add(delay);
            if at > elapsed {
                return Some(at.saturating_sub(elapsed));
            }
        }
        None
    }
}

/// Parses `500ms`, `10s`, `5m`, `2h`, `1d` (a bare number is seconds).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.').unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let value: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration such as 500ms, 10s, 5m or 2h"))?;
    let seconds = match unit.trim() {
        "ms" => value / 1000.0,
        "" | "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        "d" => value * 86400.0,
        other => return Err(format!("`{other}` is not a duration unit (ms, s, m, h, d)")),
    };
    Duration::try_from_secs_f64(seconds).map_err(|_| format!("`{text}` is out of range"))
}

/// Parses a comma-separated retry schedule such as `10s,1m,5m`.
pub fn parse_schedule(text: &str) -> Result<Vec<Duration>, String> {
    let schedule: Vec<Duration> = text.split(',').map(parse_duration).collect::<Result<_, _>>()?;
    if schedule.is_empty() {
        return Err("the schedule needs at least one delay".into());
    }
    Ok(schedule)
}

/// Reads a `Retry-After` header: delay-seconds or an HTTP date.
pub fn parse_retry_after(value: &str, now: chrono::DateTime<chrono::Utc>) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?.to_utc();
    (at - now).to_std().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scheduled_retries_follow_the_schedule_from_the_queue_time() {
        let policy =
            RetryPolicy { schedule: vec![Duration::from_secs(10), Duration::from_secs(60)], ..Default::default() };
        assert_eq!(policy.next_scheduled(Duration::from_secs(3), 3), Some(Duration::from_secs(7)));
        assert_eq!(policy.next_scheduled(Duration::from_secs(10), 3), Some(Duration::from_secs(60)));
        assert_eq!(policy.next_scheduled(Duration::from_secs(75), 3), Some(Duration::from_secs(55)));
        assert_eq!(policy.next_scheduled(Duration::from_secs(130), 3), None, "10 s + 60 s + 60 s are spent");
        assert_eq!(policy.next_scheduled(Duration::ZERO, 0), None, "no retry allowed");
    }

    fn policy(jitter: f64) -> RetryPolicy {
        RetryPolicy { schedule: parse_schedule("10s,1m,5m").expect("schedule"), jitter, ..Default::default() }
    }

    #[test]
    fn the_schedule_is_followed_and_its_last_delay_repeats() {
        let p = policy(0.0);
        let delays: Vec<u64> = (1..=5).map(|n| p.next_delay(n, None).as_secs()).collect();
        assert_eq!(delays, [10, 60, 300, 300, 300]);
    }

    #[test]
    fn jitter_stays_within_its_fraction() {
        let p = policy(0.2);
        for _ in 0..200 {
            let d = p.next_delay(2, None).as_secs_f64();
            assert!((48.0..=72.0).contains(&d), "{d}");
        }
    }

    #[test]
    fn retry_after_wins_when_longer_and_is_capped() {
        let p = RetryPolicy { max_retry_after: Duration::from_secs(600), ..policy(0.0) };
        assert_eq!(p.next_delay(1, Some(Duration::from_secs(120))), Duration::from_secs(120));
        assert_eq!(p.next_delay(1, Some(Duration::from_secs(1))), Duration::from_secs(10));
        assert_eq!(p.next_delay(1, Some(Duration::from_secs(99_999))), Duration::from_secs(600));
    }

    #[test]
    fn durations_and_retry_after_values_parse() {
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("2h"), Ok(Duration::from_secs(7200)));
        assert!(parse_duration("soon").is_err());
        assert!(parse_schedule("10s,,1m").is_err());
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T00:00:00Z").expect("date").to_utc();
        assert_eq!(parse_retry_after("30", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Thu, 01 Jan 2026 00:01:00 GMT", now), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("garbage", now), None);
    }
}
