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
