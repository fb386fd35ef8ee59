//! Every attempt of a queued webhook (issue 16): the request as sent, with credentials shown
//! `(hidden)`, and the answer (its headers and body capped). Deleted with its row.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "delivery_attempts")]
pub struct Model {
    #[sea_orm(primary_key)]
    pub id: i64,
    pub queued_webhook_id: i64,
    pub started_at: DateTimeUtc,
    pub duration_ms: i64,
    pub method: String,
    pub url: String,
    /// A JSON object of the headers sent, credentials and signatures `(hidden)`.
    pub request_headers: Json,
    /// Null when no answer came.
    pub status_code: Option<i32>,
    /// A JSON object of the answer's headers (capped); null without an answer.
    pub response_headers: Option<Json>,
    /// The answer's body (capped), when the webhook saves response bodies.
    pub response_body: Option<String>,
    /// Why the attempt failed (no answer, or a status other than 2xx).
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
