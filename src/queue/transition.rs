//! The queue's state machine: the one function that says where a queued webhook goes next.
//!
//! ```text
//! (queued) ─→ PENDING ─claim→ SENDING ─sent→ SENT
//!    │           ↑  │            │  └─retry→ RETRYING ─claim→ SENDING
//!    │           │  └─cancel→ CANCELLED     └─failed→ FAILED ─resend→ PENDING
//!    └─(cannot be rendered)→ FAILED
//! ```
//! A claimed row that was never attempted (stop, crash, lost lease) is released to PENDING
//! when it was never attempted before, else to RETRYING. A forced send claims a row in any
//! status but SENDING.

use entity::queued_webhooks::{Model, QueueStatus};

use crate::domain::outcome::Decision;

/// What happens to a queued webhook.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Step<'a> {
    /// The row is queued; `renderable` is false when its request could not be rendered.
    Queued { renderable: bool },
    /// A worker takes a due row.
    Claim,
    /// `forceSendQueuedWebhook`: taken whatever its status and budget.
    Force,
    /// A claimed row goes back untouched; `attempted_before` tells PENDING from RETRYING.
    Release { attempted_before: bool },
    /// An attempt ended with this decision.
    Outcome(&'a Decision),
    /// `resendFailedWebhooks`.
    Resend,
    /// `cancelQueuedWebhook`.
    Cancel,
}

/// Why a step does not apply to a row in its status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a queued webhook that is {from} cannot be {step}")]
pub struct Refused {
    pub from: &'static str,
    pub step: &'static str,
}

/// The status a step leads to from `from` (None: the row does not exist yet).
pub fn next(from: Option<QueueStatus>, step: Step<'_>) -> Result<QueueStatus, Refused> {
    use QueueStatus::*;
    let to = match (from, step) {
        (None, Step::Queued { renderable: true }) => Some(Pending),
        (None, Step::Queued { renderable: false }) => Some(Failed),
        (Some(Pending | Retrying), Step::Claim) => Some(Sending),
        (Some(Pending | Retrying | Sent | Failed | Cancelled), Step::Force) => Some(Sending),
        (Some(Sending), Step::Release { attempted_before: false }) => Some(Pending),
        (Some(Sending), Step::Release { attempted_before: true }) => Some(Retrying),
        (Some(Sending), Step::Outcome(Decision::Sent)) => Some(Sent),
        (Some(Sending), Step::Outcome(Decision::Retry { .. })) => Some(Retrying),
        (Some(Sending), Step::Outcome(Decision::Failed { .. })) => Some(Failed),
        (Some(Failed), Step::Resend) => Some(Pending),
        (Some(Pending | Retrying), Step::Cancel) => Some(Cancelled),
        _ => None,
    };
    to.ok_or(Refused { from: from.map_or("not queued", QueueStatus::as_str), step: step.name() })
}

impl Step<'_> {
    fn name(&self) -> &'static str {
        match self {
            Step::Queued { .. } => "queued",
            Step::Claim => "claimed",
            Step::Force => "force-sent while an attempt is in flight",
            Step::Release { .. } => "released",
            Step::Outcome(_) => "given an attempt's outcome",
            Step::Resend => "resent (only failed ones can)",
            Step::Cancel => "cancelled (only pending or retrying ones can)",
        }
    }
}

/// One change the queue made: the row as written, and its status before.
#[derive(Debug, Clone)]
pub struct Transition {
    pub row: Model,
    pub from: Option<QueueStatus>,
}

impl Transition {
    pub fn to(&self) -> QueueStatus {
        self.row.status
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use QueueStatus::*;

    const ALL: [QueueStatus; 6] = [Pending, Sending, Sent, Retrying, Failed, Cancelled];

    fn retry() -> Decision {
        Decision::Retry { delay: Duration::from_secs(1), error: "HTTP 500".into() }
    }

    fn failed() -> Decision {
        Decision::Failed { error: "HTTP 500".into(), deactivate_webhook: false }
    }

    #[test]
    fn a_queued_row_is_pending_unless_it_cannot_be_rendered() {
        assert_eq!(next(None, Step::Queued { renderable: true }), Ok(Pending));
        assert_eq!(next(None, Step::Queued { renderable: false }), Ok(Failed));
        for from in ALL {
            assert!(next(Some(from), Step::Queued { renderable: true }).is_err());
        }
    }

    #[test]
    fn only_pending_and_retrying_rows_are_claimed() {
        for from in ALL {
            let expected = matches!(from, Pending | Retrying).then_some(Sending);
            assert_eq!(next(Some(from), Step::Claim).ok(), expected, "{from}");
        }
        assert!(next(None, Step::Claim).is_err());
    }

    #[test]
    fn a_forced_send_takes_any_row_but_one_in_flight() {
        for from in ALL {
            let expected = (from != Sending).then_some(Sending);
            assert_eq!(next(Some(from), Step::Force).ok(), expected, "{from}");
        }
    }

    #[test]
    fn a_released_row_goes_back_to_where_it_was_claimed_from() {
        assert_eq!(next(Some(Sending), Step::Release { attempted_before: false }), Ok(Pending));
        assert_eq!(next(Some(Sending), Step::Release { attempted_before: true }), Ok(Retrying));
        for from in ALL.into_iter().filter(|s| *s != Sending) {
            assert!(next(Some(from), Step::Release { attempted_before: true }).is_err(), "{from}");
        }
    }

    #[test]
    fn an_outcome_applies_only_to_a_row_being_sent() {
        assert_eq!(next(Some(Sending), Step::Outcome(&Decision::Sent)), Ok(Sent));
        assert_eq!(next(Some(Sending), Step::Outcome(&retry())), Ok(Retrying));
        assert_eq!(next(Some(Sending), Step::Outcome(&failed())), Ok(Failed));
        for from in ALL.into_iter().filter(|s| *s != Sending) {
            assert!(next(Some(from), Step::Outcome(&Decision::Sent)).is_err(), "{from}");
        }
    }

    #[test]
    fn only_failed_rows_are_resent() {
        for from in ALL {
            let expected = (from == Failed).then_some(Pending);
            assert_eq!(next(Some(from), Step::Resend).ok(), expected, "{from}");
        }
    }

    #[test]
    fn only_pending_and_retrying_rows_are_cancelled_and_the_refusal_says_why() {
        for from in ALL {
            let expected = matches!(from, Pending | Retrying).then_some(Cancelled);
            assert_eq!(next(Some(from), Step::Cancel).ok(), expected, "{from}");
        }
        let refused = next(Some(Sent), Step::Cancel).err().map(|e| e.to_string()).unwrap_or_default();
        assert_eq!(refused, "a queued webhook that is sent cannot be cancelled (only pending or retrying ones can)");
    }
}
