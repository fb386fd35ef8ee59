use sea_orm::entity::prelude::*;

/// Where a queued webhook stands, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, EnumIter, DeriveActiveEnum, serde::Serialize, serde::Deserialize)]
#[sea_orm(rs_type = "String", db_type = "String(StringLen::None)")]
#[serde(rename_all = "lowercase")]
pub enum QueueStatus {
    /// Waiting for its first attempt.
    #[sea_orm(string_value = "pending")]
    Pending,
    /// Claimed by a worker: an attempt is in flight.
    #[sea_orm(string_value = "sending")]
    Sending,
    #[sea_orm(string_value = "sent")]
    Sent,
    /// An attempt failed; another is due at `send_time`.
    #[sea_orm(string_value = "retrying")]
    Retrying,
    #[sea_orm(string_value = "failed")]
    Failed,
    #[sea_orm(string_value = "cancelled")]
    Cancelled,
}

impl QueueStatus {
    /// The stored text.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Sending => "sending",
            Self::Sent => "sent",
            Self::Retrying => "retrying",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }
}

impl std::fmt::Display for QueueStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A queued webhook. The table has two more columns, computed by the database and indexed, that
/// the queue's SQL reads and nothing writes: `due_at`, the send time of a `pending` or
/// `retrying` row (null otherwise), and `turn_key`, the `order_key` of an unfinished row.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel, serde::Serialize, serde::Deserialize)]
#[sea_orm(table_name = "queued_webhooks")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub webhook_id: i64,
    pub itemtype: String,
    pub item_id: String,
    /// The item's entity when the event was raised.
    pub entity_id: i64,
    pub event: String,
    /// The rendered URL.
    pub url: String,
    pub http_method: String,
    /// The rendered custom headers, a JSON object (signature headers are added per attempt).
    pub headers: Json,
    pub body: Option<String>,
    pub status: QueueStatus,
    /// Attempts made so far.
    pub sent_try: i32,
    /// Attempts allowed: the webhook's number of retries + 1 when the row was queued.
    pub max_attempts: i32,
    /// Stable across attempts: `X-Hookline-Delivery` and `webhook-id`.
    pub delivery_id: String,
    pub create_time: DateTimeUtc,
    /// When the next attempt is due.
    pub send_time: DateTimeUtc,
    /// When the last attempt was made.
    pub sent_time: Option<DateTimeUtc>,
    pub last_status_code: Option<i32>,
    pub response_body: Option<String>,
    pub last_error: Option<String>,
    pub save_response_body: bool,
    pub log_in_item_history: bool,
    /// While `sending`: until when the worker that claimed the row owns it.
    pub lease_until: Option<DateTimeUtc>,
    /// The fencing token of the claim that last took the row (see `queue_claims`): only the
    /// claim holding it writes the outcome. Kept after the outcome (an update that changed
    /// it would rewrite its index entry); cleared when the row is given back unattempted.
    pub claim_token: Option<i64>,
    /// While `sending`: the process (see `workers`) that claimed the row.
    pub claimed_by: Option<String>,
    /// The W3C `traceparent` of the event that queued the row: each attempt continues its
    /// trace.
    pub traceparent: Option<String>,
    /// Sent by `sendTestDelivery`: one attempt, whatever the webhook's state and filter.
    #[serde(default)]
    pub is_test: bool,
    /// For an ordered webhook: webhook id, itemtype and item id. A row is not claimed while an
    /// earlier row of its key is still to be sent or being sent.
    #[serde(default)]
    pub order_key: Option<String>,
    /// For an `update` row of a coalescing webhook: the changes it carries (`[{field, old,
    /// new}]`), which a newer update of the item merges when it replaces this row.
    #[serde(default)]
    pub changes: Option<Json>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
