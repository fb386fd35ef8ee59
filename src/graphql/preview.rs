//! Previews of what a webhook sends, the variables its templates can use, and test
//! deliveries.

use async_graphql::{Context, ID, Json, Object, Result, SimpleObject};
use serde_json::{Map, Value};

use super::{
    context::{Session, session},
    paging::numeric_id,
    queue::QueuedWebhook,
};
use crate::{
    error::{AppError, AppResult},
    service::{items, preview, webhooks},
};

/// What a webhook would send for an item now.
#[derive(SimpleObject)]
pub struct WebhookPreview {
    /// The template variables: `{event, item, parent_item?, actor?}` (`actor`: the item's last
    /// writer, `{user, profile}`).
    pub api_data: Json<Value>,
    /// The body, rendered.
    pub payload: String,
    /// The URL, rendered.
    pub url: String,
    /// Every header of an attempt, `{"Name": "value"}`; those computed at send time (signature,
    /// timestamp, delivery id) are shown as placeholders.
    pub headers: Json<Map<String, Value>>,
    /// Whether the item matches the webhook's filter (true without a filter).
    pub matches_filter: bool,
}

/// Refuses a preview of a webhook or an item outside the caller's scope as if it did not
/// exist (missing ones are left for the preview to refuse).
pub(super) async fn preview_in_reach(s: &Session<'_>, webhook_id: i64, item_id: &str) -> AppResult<()> {
    if s.unscoped() {
        return Ok(());
    }
    super::webhook::webhook_in_reach(s, webhook_id).await?;
    let Some(webhook) = webhooks::get(&s.state.db, webhook_id).await? else { return Ok(()) };
    let itemtype = &webhook.settings.itemtype;
    match items::get(&s.state.db, itemtype, item_id).await? {
        Some(item) if !s.sees(item.entity_id).await? => Err(AppError::not_found(format!(
            "no {itemtype} with id `{item_id}`: webhook {webhook_id} fires for {itemtype} items only"
        ))),
        _ => Ok(()),
    }
}

#[derive(Default)]
pub struct PreviewQuery;

#[Object]
impl PreviewQuery {
    /// Renders the webhook for one stored item of its itemtype, as it would be queued now (for
    /// `update`, `changes` are those of the item's last update).
    /// NOT_FOUND for an item of another itemtype; VALIDATION when it cannot be rendered.
    async fn webhook_preview(&self, ctx: &Context<'_>, webhook_id: ID, item_id: ID) -> Result<WebhookPreview> {
        let s = session(ctx)?;
        let webhook_id = numeric_id(&webhook_id, "webhookId")?;
        preview_in_reach(&s, webhook_id, &item_id).await?;
        let limits = s.state.config().templates;
        let preview = preview::preview(&s.state.db, &s.state.secrets, limits, webhook_id, &item_id).await?;
        Ok(WebhookPreview {
            api_data: Json(preview.api_data),
            payload: preview.rendered.body,
            url: preview.rendered.url,
            headers: Json(preview.headers),
            matches_filter: preview.matches_filter,
        })
    }

    /// The variable paths templates of the itemtype can use, for autocompletion: `event`,
    /// `actor.*`, `changes` (`update` only: `[{field, old, new}]`, what the write changed),
    /// `item.*` (known fields and those seen in stored items) and `parent_item.*`.
    async fn payload_variables(&self, ctx: &Context<'_>, itemtype: String) -> Result<Vec<String>> {
        let s = session(ctx)?;
        Ok(preview::payload_variables(&s.state.db, &itemtype).await?)
    }
}

#[derive(Default)]
pub struct PreviewMutation;

#[Object]
impl PreviewMutation {
    /// Renders the webhook for one stored item of its itemtype (as `webhookPreview` shows it)
    /// and sends it now, through the same path as every delivery (signature, CRA, OAuth,
    /// target checks), whatever `isActive` and the filter say: one attempt, no retry. The row
    /// (`isTest: true`) stays in the queue and its log; it writes no item history and a 410
    /// does not deactivate the webhook. Returns the row as the attempt left it.
    async fn send_test_delivery(&self, ctx: &Context<'_>, webhook_id: ID, item_id: ID) -> Result<QueuedWebhook> {
        let s = session(ctx)?;
        let webhook_id = numeric_id(&webhook_id, "webhookId")?;
        preview_in_reach(&s, webhook_id, &item_id).await?;
        let limits = s.state.config().templates;
        let row = preview::test_delivery(&s.state.db, &s.state.secrets, limits, webhook_id, &item_id).await?;
        Ok(QueuedWebhook::from(s.state.queue.send_test(row).await?))
    }
}
