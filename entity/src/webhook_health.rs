//! Per-webhook delivery control shared by every process: the circuit breaker (consecutive
//! failures, open until a probe) and the pacing of its rate limit. A webhook without a row is
//! closed, with no failure and no pacing.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "webhook_health")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub webhook_id: i64,
    /// `closed`, `open` or `half_open`.
    pub state: String,
    /// Failed attempts since the last success.
    pub consecutive_failures: i32,
    /// When the first of those failures happened.
    pub failing_since: Option<DateTimeUtc>,
    /// When the breaker last opened.
    pub opened_at: Option<DateTimeUtc>,
    /// While open: when a probe may be sent (None: no probe, the webhook was deactivated).
    pub next_probe_at: Option<DateTimeUtc>,
    /// The pause of the last opening, in milliseconds (doubled at each failed probe).
    pub cooldown_ms: i64,
    /// While half-open: the queued webhook sent as the probe.
    pub probe_id: Option<i64>,
    /// While half-open: when the probe is taken for lost and another may be sent.
    pub probe_until: Option<DateTimeUtc>,
    /// Rate limit: no send of the webhook may start before this (reserved up to it).
    pub paced_until: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
