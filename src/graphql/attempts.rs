//! The attempts kept of a queued webhook (`QueuedWebhook.attempts`).

use async_graphql::{Json, Object, Result};
use entity::delivery_attempts as attempts;
use serde_json::Value;

use crate::{
    domain::{item::rfc3339, webhook::HttpMethod},
    error::AppError,
};

/// One attempt of a queued webhook: the request as sent and the answer.
pub struct DeliveryAttempt(pub attempts::Model);

#[Object]
impl DeliveryAttempt {
    /// When the attempt started (RFC 3339, UTC).
    async fn started_at(&self) -> String {
        rfc3339(self.0.started_at)
    }

    /// From the request sent (its host's connection slot taken) to the answer read; 0 when no
    /// request could be made.
    async fn duration_ms(&self) -> i32 {
        i32::try_from(self.0.duration_ms).unwrap_or(i32::MAX)
    }

    /// The HTTP method of the request (the webhook's, when the attempt was made).
    async fn method(&self) -> Result<HttpMethod> {
        Ok(HttpMethod::parse(&self.0.method).ok_or_else(|| AppError::internal("unknown stored method"))?)
    }

    /// The URL the request went to, as rendered for this row.
    async fn url(&self) -> &str {
        &self.0.url
    }

    /// The headers sent, as a JSON object. Credentials (`Authorization`, the OAuth token, the
    /// credential custom headers, values that look like credentials) and signatures read
    /// `(hidden)`. Empty when no request could be made.
    async fn request_headers(&self) -> Json<Value> {
        Json(self.0.request_headers.clone())
    }

    /// The answer's HTTP status; null when none came.
    async fn status_code(&self) -> Option<i32> {
        self.0.status_code
    }

    /// The answer's headers (the first 50, each value cut at 1 KiB; credentials such as
    /// `Set-Cookie` read `(hidden)`); null when no answer came.
    async fn response_headers(&self) -> Option<Json<Value>> {
        self.0.response_headers.clone().map(Json)
    }

    /// The answer's body, capped like `QueuedWebhook.responseBody`, when the webhook saves
    /// response bodies.
    async fn response_body(&self) -> Option<&str> {
        self.0.response_body.as_deref()
    }

    /// Why the attempt failed; null when it was sent.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
}
