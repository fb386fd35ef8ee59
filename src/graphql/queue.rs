//! The delivery queue: queued webhooks, their outcomes, and what can be done to them.

use async_graphql::{Context, Enum, ID, InputObject, Json, Object, Result, SimpleObject};
use entity::queued_webhooks::{self as rows, QueueStatus as Stored};
use serde_json::Value;

use super::{
    attempts::DeliveryAttempt,
    context::{Session, session},
    idempotency,
    paging::{Paged, connection, numeric_id, page_request},
    webhook::Webhook,
};
use crate::{
    domain::{
        item::rfc3339,
        webhook::{HttpMethod, WebhookEvent},
    },
    error::{AppError, AppResult},
    queue::{QueueFilter, ReplayWindow},
    service::{
        idempotency::{Ran, run_once},
        paging::MAX_PAGE,
        trigger::{self, Trigger},
    },
};

/// The largest age, in days, `cleanQueuedWebhooks` takes (100 years).
const MAX_CLEANUP_DAYS: u32 = 36_500;

/// Where a queued webhook stands.
#[derive(Enum, Copy, Clone, Debug, PartialEq, Eq)]
pub enum QueueStatus {
    /// Waiting for its first attempt.
    Pending,
    /// An attempt is in flight.
    Sending,
    /// A 2xx answer was received.
    Sent,
    /// An attempt failed; another one is due at `sendTime`.
    Retrying,
    /// No attempt left, or the target answered 410 Gone.
    Failed,
    /// Cancelled before it was sent.
    Cancelled,
}

impl From<QueueStatus> for Stored {
    fn from(status: QueueStatus) -> Self {
        match status {
            QueueStatus::Pending => Self::Pending,
            QueueStatus::Sending => Self::Sending,
            QueueStatus::Sent => Self::Sent,
            QueueStatus::Retrying => Self::Retrying,
            QueueStatus::Failed => Self::Failed,
            QueueStatus::Cancelled => Self::Cancelled,
        }
    }
}

impl From<Stored> for QueueStatus {
    fn from(status: Stored) -> Self {
        match status {
            Stored::Pending => Self::Pending,
            Stored::Sending => Self::Sending,
            Stored::Sent => Self::Sent,
            Stored::Retrying => Self::Retrying,
            Stored::Failed => Self::Failed,
            Stored::Cancelled => Self::Cancelled,
        }
    }
}

/// One event for one webhook: the request it sends and how its attempts went.
pub struct QueuedWebhook {
    row: rows::Model,
    /// A row from a live change, without body, headers and response body (read on demand).
    partial: bool,
}

impl From<rows::Model> for QueuedWebhook {
    fn from(row: rows::Model) -> Self {
        Self { row, partial: false }
    }
}

impl QueuedWebhook {
    pub fn partial(row: rows::Model) -> Self {
        Self { row, partial: true }
    }

    /// The whole stored row, for the fields a live change leaves out.
    async fn full(&self, ctx: &Context<'_>) -> Result<rows::Model> {
        if !self.partial {
            return Ok(self.row.clone());
        }
        let s = session(ctx)?;
        Ok(s.state.queue.get(self.row.id).await?.unwrap_or_else(|| self.row.clone()))
    }
}

#[Object]
impl QueuedWebhook {
    async fn id(&self) -> ID {
        ID(self.row.id.to_string())
    }

    async fn webhook_id(&self) -> ID {
        ID(self.row.webhook_id.to_string())
    }

    /// Null when the webhook was deleted, or is outside the caller's entities.
    async fn webhook(&self, ctx: &Context<'_>) -> Result<Option<Webhook>> {
        let loader = super::loaders::loader::<super::loaders::WebhookLoader>(ctx)?;
        let Some(webhook) = loader.load_one(self.row.webhook_id).await? else { return Ok(None) };
        let s = session(ctx)?;
        Ok(s.sees(webhook.settings.entity_id).await?.then_some(Webhook(webhook)))
    }

    async fn itemtype(&self) -> &str {
        &self.row.itemtype
    }

    async fn item_id(&self) -> ID {
        ID(self.row.item_id.clone())
    }

    /// The item's entity when the event was raised.
    async fn entity_id(&self) -> ID {
        ID(self.row.entity_id.to_string())
    }

    async fn event(&self) -> Result<WebhookEvent> {
        Ok(WebhookEvent::parse(&self.row.event).ok_or_else(|| AppError::internal("unknown stored event"))?)
    }

    /// The rendered target URL.
    async fn url(&self) -> &str {
        &self.row.url
    }

    async fn http_method(&self) -> Result<HttpMethod> {
        Ok(HttpMethod::parse(&self.row.http_method).ok_or_else(|| AppError::internal("unknown stored method"))?)
    }

    /// The rendered custom headers (credential headers read `(hidden)`: they are stored
    /// encrypted); the signature, delivery and OAuth headers are added to each attempt when it
    /// is sent.
    async fn headers(&self, ctx: &Context<'_>) -> Result<Json<Value>> {
        let headers = match self.full(ctx).await?.headers {
            Value::Object(map) => Value::Object(crate::domain::webhook::redact_headers(&map)),
            other => other,
        };
        Ok(Json(headers))
    }

    async fn body(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        Ok(self.full(ctx).await?.body)
    }

    async fn status(&self) -> QueueStatus {
        self.row.status.into()
    }

    /// Attempts made so far.
    async fn sent_try(&self) -> i32 {
        self.row.sent_try
    }

    /// Attempts allowed: the webhook's number of retries + 1 when the event was queued.
    async fn max_attempts(&self) -> i32 {
        self.row.max_attempts
    }

    /// The same on every attempt: the `X-Hookline-Delivery` header (and `webhook-id`), for
    /// receivers to de-duplicate.
    async fn delivery_id(&self) -> &str {
        &self.row.delivery_id
    }

    /// RFC 3339, UTC.
    async fn create_time(&self) -> String {
        rfc3339(self.row.create_time)
    }

    /// When the next attempt is due (RFC 3339, UTC).
    async fn send_time(&self) -> String {
        rfc3339(self.row.send_time)
    }

    /// When the last attempt was made (RFC 3339, UTC).
    async fn sent_time(&self) -> Option<String> {
        self.row.sent_time.map(rfc3339)
    }

    /// The HTTP status of the last answer; null when the last attempt got none.
    async fn last_status_code(&self) -> Option<i32> {
        self.row.last_status_code
    }

    /// The last answer's body (capped), when the webhook saves response bodies.
    async fn response_body(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        Ok(self.full(ctx).await?.response_body)
    }

    /// Why the last attempt failed, or why the request could not be rendered.
    async fn last_error(&self) -> Option<&str> {
        self.row.last_error.as_deref()
    }

    /// Sent by `sendTestDelivery` (one attempt, whatever the webhook's state and filter).
    async fn is_test(&self) -> bool {
        self.row.is_test
    }

    /// Every attempt made (scheduled, retried, forced or test), newest first; the latest 100
    /// are kept. A failed CRA challenge is not an attempt and is not listed.
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity)")]
    async fn attempts(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Paged<DeliveryAttempt>> {
        let s = session(ctx)?;
        let request = page_request(first, after)?;
        let page = s.state.queue.attempts(self.row.id, request).await?;
        Ok(connection(page, request.after.is_some(), DeliveryAttempt))
    }
}

/// An event raised by a system that owns its data.
#[derive(InputObject)]
pub struct TriggerEventInput {
    pub itemtype: String,
    pub item_id: ID,
    pub event: WebhookEvent,
    /// The item's snapshot, with ItemInput's keys (name, entityId, fields, parentItemtype,
    /// parentId): stored (created or replaced) before the event is raised. Without it, the
    /// stored item is used and must exist.
    pub item: Option<Json<Value>>,
}

impl From<TriggerEventInput> for Trigger {
    fn from(input: TriggerEventInput) -> Self {
        Self {
            itemtype: input.itemtype,
            item_id: input.item_id.0,
            event: input.event,
            snapshot: input.item.map(|j| j.0),
            actor: None,
        }
    }
}

#[derive(SimpleObject)]
pub struct TriggerEventResult {
    /// One queued webhook per matching webhook.
    pub queued: Vec<QueuedWebhook>,
}

/// Reads an RFC 3339 timestamp argument; `field` names it in the error.
fn timestamp(text: &str, field: &str) -> AppResult<chrono::DateTime<chrono::Utc>> {
    chrono::DateTime::parse_from_rfc3339(text.trim()).map(|at| at.to_utc()).map_err(|_| {
        AppError::invalid(field, format!("{field}: `{text}` is not an RFC 3339 timestamp (like 2026-12-06T09:30:00Z)"))
    })
}

fn status_filter(status: Option<QueueStatus>) -> Option<Stored> {
    status.map(Stored::from)
}

/// The queue of one webhook, for `Webhook.queue`.
pub async fn webhook_queue(
    ctx: &Context<'_>,
    webhook_id: i64,
    status: Option<QueueStatus>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<Paged<QueuedWebhook>, AppError> {
    let s = session(ctx)?;
    let request = page_request(first, after)?;
    let filter = QueueFilter {
        webhook_id: Some(webhook_id),
        status: status_filter(status),
        within: s.scope_ids().await?,
        ..Default::default()
    };
    let page = s.state.queue.list(&filter, request).await?;
    Ok(connection(page, request.after.is_some(), QueuedWebhook::from))
}

/// The queued webhook, when its entity is in the caller's scope.
async fn visible_row(s: &Session<'_>, id: i64) -> AppResult<Option<rows::Model>> {
    match s.state.queue.get(id).await? {
        Some(row) if s.sees(row.entity_id).await? => Ok(Some(row)),
        _ => Ok(None),
    }
}

/// Refuses an action on a queued webhook unless both it and its webhook are in the caller's
/// scope, as if it did not exist (a missing one is left for the action to refuse).
async fn row_in_reach(s: &Session<'_>, id: i64) -> AppResult<()> {
    if s.unscoped() {
        return Ok(());
    }
    let Some(row) = s.state.queue.get(id).await? else { return Ok(()) };
    let webhook = crate::service::webhooks::get(&s.state.db, row.webhook_id).await?;
    let webhook_seen = match webhook {
        Some(webhook) => s.sees(webhook.settings.entity_id).await?,
        None => true,
    };
    if s.sees(row.entity_id).await? && webhook_seen {
        Ok(())
    } else {
        Err(AppError::not_found(format!("no queued webhook with id {id}")))
    }
}

/// Refuses a trigger for an item outside the caller's scope as if the item did not exist, and
/// one whose snapshot moves the item outside it as a missing entity.
async fn trigger_in_reach(s: &Session<'_>, trigger: &Trigger) -> AppResult<()> {
    if s.unscoped() {
        return Ok(());
    }
    if let Some(stored) = crate::service::items::get(&s.state.db, &trigger.itemtype, &trigger.item_id).await?
        && !s.sees(stored.entity_id).await?
    {
        return Err(AppError::not_found(format!("no {} with id `{}`", trigger.itemtype, trigger.item_id)));
    }
    if let Some(entity_id) = trigger.snapshot_entity() {
        s.entity_input(entity_id, "item.entityId").await?;
    }
    Ok(())
}

#[derive(Default)]
pub struct QueueQuery;

#[Object]
impl QueueQuery {
    async fn queued_webhook(&self, ctx: &Context<'_>, id: ID) -> Result<Option<QueuedWebhook>> {
        let s = session(ctx)?;
        Ok(visible_row(&s, numeric_id(&id, "id")?).await?.map(QueuedWebhook::from))
    }

    /// Queued webhooks, newest first. `entityId` matches the item's entity and its children;
    /// `deliveryId` finds the queued webhook a receiver reports (its `X-Hookline-Delivery` or
    /// `webhook-id` header).
    #[allow(clippy::too_many_arguments)]
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity)")]
    async fn queued_webhooks(
        &self,
        ctx: &Context<'_>,
        webhook_id: Option<ID>,
        status: Option<QueueStatus>,
        itemtype: Option<String>,
        item_id: Option<ID>,
        entity_id: Option<ID>,
        delivery_id: Option<String>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Paged<QueuedWebhook>> {
        let s = session(ctx)?;
        let request = page_request(first, after)?;
        let filter = QueueFilter {
            webhook_id: webhook_id.map(|id| numeric_id(&id, "webhookId")).transpose()?,
            status: status_filter(status),
            itemtype,
            item_id: item_id.map(|id| id.0),
            entity_id: entity_id.map(|id| numeric_id(&id, "entityId")).transpose()?,
            delivery_id,
            within: s.scope_ids().await?,
        };
        let page = s.state.queue.list(&filter, request).await?;
        Ok(connection(page, request.after.is_some(), QueuedWebhook::from))
    }
}

#[derive(Default)]
pub struct QueueMutation;

#[Object]
impl QueueMutation {
    /// Upserts the snapshot in `item` (if given) and raises `event` for the item, whether or
    /// not the snapshot changed. DELETE and RESTORE also move the stored item into or out of
    /// the trash; PURGE removes it after raising.
    async fn trigger_event(
        &self,
        ctx: &Context<'_>,
        input: TriggerEventInput,
        #[graphql(
            desc = "A key of the caller's choosing (such as a UUID): a repeat of this call with the same key within the idempotency window answers the first call's result and raises nothing; the same key with other arguments is a CONFLICT."
        )]
        idempotency_key: Option<String>,
    ) -> Result<TriggerEventResult> {
        let s = session(ctx)?;
        let once = idempotency::once(ctx, &s, idempotency_key)?;
        let trigger = Trigger { actor: Some(s.caller.actor()), ..input.into() };
        trigger_in_reach(&s, &trigger).await?;
        let queued =
            match run_once(&s.state.db, once.as_ref(), trigger::trigger(s.state, trigger, once.clone())).await? {
                Ran::Now(changed) => changed.queued,
                Ran::Before(answer) => idempotency::queued_of(&s, answer).await?.into_iter().flatten().collect(),
            };
        Ok(TriggerEventResult { queued: queued.into_iter().map(QueuedWebhook::from).collect() })
    }

    /// `triggerEvent` for up to 1000 events in one transaction, all or nothing: a refused
    /// input refuses the call (`extensions.index` names it). Results are in input order.
    #[graphql(complexity = "super::paging::list_cost(inputs.len(), child_complexity)")]
    async fn trigger_events(
        &self,
        ctx: &Context<'_>,
        inputs: Vec<TriggerEventInput>,
        #[graphql(
            desc = "A key of the caller's choosing (such as a UUID): a repeat of this call with the same key within the idempotency window answers the first call's result and raises nothing; the same key with other arguments is a CONFLICT."
        )]
        idempotency_key: Option<String>,
    ) -> Result<Vec<TriggerEventResult>> {
        let s = session(ctx)?;
        let once = idempotency::once(ctx, &s, idempotency_key)?;
        let triggers: Vec<Trigger> =
            inputs.into_iter().map(|input| Trigger { actor: Some(s.caller.actor()), ..input.into() }).collect();
        for (index, trigger) in triggers.iter().enumerate() {
            trigger_in_reach(&s, trigger).await.map_err(|e| e.at_index(index))?;
        }
        let events =
            match run_once(&s.state.db, once.as_ref(), trigger::trigger_many(s.state, triggers, once.clone())).await? {
                Ran::Now(results) => results.into_iter().map(|changed| changed.queued).collect(),
                Ran::Before(answer) => idempotency::queued_of(&s, answer).await?,
            };
        Ok(events
            .into_iter()
            .map(|queued| TriggerEventResult { queued: queued.into_iter().map(QueuedWebhook::from).collect() })
            .collect())
    }

    /// Sends now, whatever the status and the attempts left, and returns the outcome.
    /// CONFLICT while an attempt is in flight.
    async fn force_send_queued_webhook(&self, ctx: &Context<'_>, id: ID) -> Result<QueuedWebhook> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        row_in_reach(&s, id).await?;
        Ok(QueuedWebhook::from(s.state.queue.force(id).await?))
    }

    /// Puts FAILED rows (of one webhook, or all) back to PENDING with a fresh budget; with
    /// `ids` (at most 500), only those of them that are FAILED. Returns how many.
    async fn resend_failed_webhooks(
        &self,
        ctx: &Context<'_>,
        webhook_id: Option<ID>,
        ids: Option<Vec<ID>>,
    ) -> Result<i32> {
        let s = session(ctx)?;
        let webhook_id = webhook_id.map(|id| numeric_id(&id, "webhookId")).transpose()?;
        if let Some(id) = webhook_id {
            super::webhook::webhook_in_reach(&s, id).await?;
        }
        let ids = match ids {
            Some(ids) if ids.len() > MAX_PAGE as usize => {
                return Err(AppError::invalid("ids", format!("ids: at most {MAX_PAGE} queued webhooks at once")).into());
            }
            Some(ids) => Some(ids.iter().map(|id| numeric_id(id, "ids")).collect::<AppResult<Vec<i64>>>()?),
            None => None,
        };
        let count = s.state.queue.resend_failed(webhook_id, ids, s.scope_ids().await?).await?;
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// Queues again, as new rows (new delivery ids, a fresh budget, due now), the queued
    /// webhooks of `webhookId` created in [`since`, `until`) (RFC 3339; open-ended when
    /// absent) whose status is `status`; without `status`, every SENT or FAILED one (CANCELLED
    /// rows, among them the updates coalesced into a later one, only when `status` asks for
    /// them: sent again they would follow the item's final state). Each sends the same stored URL, headers and body; rows never rendered (no
    /// body) and test deliveries are left out. At most 1000 rows per call (VALIDATION
    /// beyond: narrow the window). `dryRun` only counts, as a real run would (null: false).
    /// Returns how many.
    async fn replay_queued_webhooks(
        &self,
        ctx: &Context<'_>,
        webhook_id: ID,
        status: Option<QueueStatus>,
        since: Option<String>,
        until: Option<String>,
        #[graphql(default_with = "Some(false)")] dry_run: Option<bool>,
    ) -> Result<i32> {
        let s = session(ctx)?;
        let webhook_id = numeric_id(&webhook_id, "webhookId")?;
        let since = since.as_deref().map(|text| timestamp(text, "since")).transpose()?;
        let until = until.as_deref().map(|text| timestamp(text, "until")).transpose()?;
        if let (Some(since), Some(until)) = (since, until)
            && until <= since
        {
            return Err(AppError::invalid("until", "until: must be later than since").into());
        }
        match crate::service::webhooks::get(&s.state.db, webhook_id).await? {
            Some(webhook) if s.sees(webhook.settings.entity_id).await? => {}
            _ => return Err(AppError::not_found(format!("no webhook with id {webhook_id}")).into()),
        }
        let window =
            ReplayWindow { webhook_id, status: status_filter(status), since, until, within: s.scope_ids().await? };
        // The new rows' attempts continue this operation's trace.
        let traceparent = crate::telemetry::traceparent(&tracing::Span::current(), None);
        let count =
            s.state.queue.replay(window, dry_run.unwrap_or(false), s.state.secrets.clone(), traceparent).await?;
        Ok(i32::try_from(count).unwrap_or(i32::MAX))
    }

    /// Cancels a PENDING or RETRYING queued webhook; CONFLICT in any other status.
    async fn cancel_queued_webhook(&self, ctx: &Context<'_>, id: ID) -> Result<QueuedWebhook> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        row_in_reach(&s, id).await?;
        Ok(QueuedWebhook::from(s.state.queue.cancel(id).await?))
    }

    /// Runs the cleanup now: deletes SENT rows older than `sentDays` and FAILED or CANCELLED
    /// rows older than `failedDays` (0 to 36500; defaults from the configuration, 30); never a
    /// row still to be sent. Returns how many were deleted.
    async fn clean_queued_webhooks(
        &self,
        ctx: &Context<'_>,
        sent_days: Option<i32>,
        failed_days: Option<i32>,
    ) -> Result<i32> {
        let s = session(ctx)?;
        let config = s.state.config();
        let days = |value: Option<i32>, default: u32, field: &str| match value.map(u32::try_from) {
            None => Ok(default),
            Some(Ok(days)) if days <= MAX_CLEANUP_DAYS => Ok(days),
            Some(_) => Err(AppError::invalid(
                field,
                format!("{field}: a number of days from 0 to {MAX_CLEANUP_DAYS} (100 years)"),
            )),
        };
        let sent = days(sent_days, config.cleanup_sent_days, "sentDays")?;
        let failed = days(failed_days, config.cleanup_failed_days, "failedDays")?;
        let deleted = s.state.queue.clean(sent, failed, s.scope_ids().await?).await?;
        Ok(i32::try_from(deleted).unwrap_or(i32::MAX))
    }
}
