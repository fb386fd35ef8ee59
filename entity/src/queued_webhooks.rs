use sea_orm::entity::prelude::*;

/// Queue statuses as stored.
pub mod status {
    pub const PENDING: &str = "pending";
    pub const SENDING: &str = "sending";
    pub const SENT: &str = "sent";
    pub const RETRYING: &str = "retrying";
    pub const FAILED: &str = "failed";
    pub const CANCELLED: &str = "cancelled";
}

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
    /// One of [`status`].
    pub status: String,
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
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
