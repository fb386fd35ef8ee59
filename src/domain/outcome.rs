//! What an attempt's result means for its queued webhook: sent, retried later, or failed.

use std::time::Duration;

use super::retry::RetryPolicy;

/// What came back from one attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    /// The target answered.
    Response { status: u16, body: Option<String>, retry_after: Option<Duration>, location: Option<String> },
    /// No answer: timeout, refused connection, DNS failure, … (the message says which).
    NoResponse { error: String },
}

/// What an attempt's result was, in the few classes metrics count (`hookline_attempts_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AttemptClass {
    Status2xx,
    Status3xx,
    Status4xx,
    /// A 5xx, or any other status outside 200–499 (an informational one as a final answer).
    Status5xx,
    /// No answer within the timeout.
    Timeout,
    /// No answer for another reason: the connection failed or broke, the name did not resolve,
    /// or the request could not be made (its URL or stored headers unusable, no OAuth token).
    Connect,
    /// The target's address was refused (the SSRF guard) or its URL carried credentials.
    Refused,
}

impl AttemptClass {
    pub const ALL: [Self; 7] = [
        Self::Status2xx,
        Self::Status3xx,
        Self::Status4xx,
        Self::Status5xx,
        Self::Timeout,
        Self::Connect,
        Self::Refused,
    ];

    /// The class of an answer with this status.
    pub fn of_status(status: u16) -> Self {
        match status {
            200..=299 => Self::Status2xx,
            300..=399 => Self::Status3xx,
            400..=499 => Self::Status4xx,
            _ => Self::Status5xx,
        }
    }

    /// Its label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Status2xx => "2xx",
            Self::Status3xx => "3xx",
            Self::Status4xx => "4xx",
            Self::Status5xx => "5xx",
            Self::Timeout => "timeout",
            Self::Connect => "connect",
            Self::Refused => "refused",
        }
    }

    /// Its place in [`Self::ALL`].
    pub fn index(self) -> usize {
        self as usize
    }
}

/// What happens to the queued webhook next.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    Sent,
    /// Another attempt after the delay.
    Retry {
        delay: Duration,
        error: String,
    },
    /// No more attempts.
    Failed {
        error: String,
        deactivate_webhook: bool,
    },
}

impl Decision {
    /// Its label value in metrics (`outcome`).
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Sent => "sent",
            Self::Retry { .. } => "retry",
            Self::Failed { .. } => "failed",
        }
    }

    /// Its place among `sent`, `retry`, `failed`.
    pub fn index(&self) -> usize {
        match self {
            Self::Sent => 0,
            Self::Retry { .. } => 1,
            Self::Failed { .. } => 2,
        }
    }
}

/// Decides after an attempt; `attempts_made` counts it, `max_attempts` is the budget
/// (the webhook's number of retries + 1).
pub fn decide(result: &AttemptResult, attempts_made: i32, max_attempts: i32, policy: &RetryPolicy) -> Decision {
    let (error, retry_after) = match result {
        AttemptResult::Response { status, .. } if (200..300).contains(status) => return Decision::Sent,
        AttemptResult::Response { status: 410, .. } => {
            return Decision::Failed {
                error: "HTTP 410 Gone: the target asked to stop; the webhook was deactivated".into(),
                deactivate_webhook: true,
            };
        }
        AttemptResult::Response { status, location, .. } if (300..400).contains(status) => (
            format!(
                "HTTP {status}: redirect to {} not followed (redirects are never followed)",
                location.as_deref().unwrap_or("an unknown location")
            ),
            None,
        ),
        AttemptResult::Response { status, retry_after, .. } => (format!("HTTP {status}"), *retry_after),
        AttemptResult::NoResponse { error } => (error.clone(), None),
    };
    if attempts_made >= max_attempts {
        return Decision::Failed {
            error: format!("{error} (attempt {attempts_made} of {max_attempts}, no retry left)"),
            deactivate_webhook: false,
        };
    }
    let delay = policy.next_delay(attempts_made.max(1) as u32, retry_after);
    Decision::Retry { delay, error: format!("{error} (attempt {attempts_made} of {max_attempts})") }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn response(status: u16) -> AttemptResult {
        AttemptResult::Response { status, body: None, retry_after: None, location: None }
    }

    fn policy() -> RetryPolicy {
        RetryPolicy { jitter: 0.0, ..Default::default() }
    }

    #[test]
    fn any_2xx_is_sent() {
        for status in [200, 201, 204, 299] {
            assert_eq!(decide(&response(status), 1, 4, &policy()), Decision::Sent);
        }
    }

    #[test]
    fn failures_retry_until_the_budget_is_spent() {
        assert!(
            matches!(decide(&response(500), 1, 4, &policy()), Decision::Retry { delay, .. } if delay == Duration::from_secs(10))
        );
        assert!(matches!(decide(&response(500), 3, 4, &policy()), Decision::Retry { .. }));
        assert!(matches!(decide(&response(500), 4, 4, &policy()), Decision::Failed { deactivate_webhook: false, .. }));
        let timeout = AttemptResult::NoResponse { error: "timed out after 10s".into() };
        assert!(
            matches!(decide(&timeout, 1, 1, &policy()), Decision::Failed { ref error, .. } if error.contains("timed out"))
        );
    }

    #[test]
    fn gone_fails_at_once_and_deactivates() {
        assert!(matches!(decide(&response(410), 1, 4, &policy()), Decision::Failed { deactivate_webhook: true, .. }));
    }

    #[test]
    fn a_redirect_is_a_failure_that_says_so() {
        let redirect = AttemptResult::Response {
            status: 302,
            body: None,
            retry_after: None,
            location: Some("http://127.0.0.1/".into()),
        };
        match decide(&redirect, 1, 2, &policy()) {
            Decision::Retry { error, .. } => {
                assert!(error.contains("redirect to http://127.0.0.1/ not followed"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn statuses_fall_in_their_class_and_odd_ones_with_the_server_errors() {
        for (status, class) in [(200, "2xx"), (299, "2xx"), (302, "3xx"), (404, "4xx"), (503, "5xx"), (101, "5xx")] {
            assert_eq!(AttemptClass::of_status(status).as_str(), class, "{status}");
        }
        for (i, class) in AttemptClass::ALL.into_iter().enumerate() {
            assert_eq!(class.index(), i);
        }
    }

    #[test]
    fn retry_after_is_honoured() {
        let busy = AttemptResult::Response {
            status: 429,
            body: None,
            retry_after: Some(Duration::from_secs(90)),
            location: None,
        };
        assert!(
            matches!(decide(&busy, 1, 4, &policy()), Decision::Retry { delay, .. } if delay == Duration::from_secs(90))
        );
    }
}
