//! Raising an event: every matching webhook renders its request and joins the queue, in the
//! caller's transaction, so the item write and its queue rows commit together.

use std::sync::{Arc, OnceLock};

use chrono::{DateTime, Utc};
use entity::{items, queued_webhooks, queued_webhooks::QueueStatus};
use sea_orm::ConnectionTrait;
use serde_json::Value;
use tokio::sync::Semaphore;

use super::{
    cache::{CachedWebhook, HotCache},
    items::document_in,
    tree::EntityIndex,
};
use crate::{
    AppState,
    delivery::seal_credentials,
    domain::{
        filter::Subject,
        item::{Actor, Change, changes_value},
        matching::entity_matches,
        payload::ApiData,
        render::{self, Rendered, WebhookTemplates},
        template::Limits,
        webhook::{WebhookEvent, WebhookSettings},
    },
    error::{AppError, AppResult},
    metrics::Metrics,
    queue::Staged,
    secret_box::SecretBox,
    telemetry,
};

/// What raising events needs, owned so that it travels into the writer's jobs.
#[derive(Clone)]
pub struct Intake {
    pub cache: Arc<HotCache>,
    pub secrets: SecretBox,
    pub limits: Limits,
    /// Counts the events raised.
    pub metrics: Arc<Metrics>,
}

impl Intake {
    pub fn of(state: &AppState) -> Self {
        Self {
            cache: state.cache.clone(),
            secrets: state.secrets.clone(),
            limits: state.config().templates,
            metrics: state.metrics.clone(),
        }
    }

    /// Notes the event in the job's staged changes: counted once its batch commits.
    pub fn count_event(&self, staged: &mut Staged, item: &items::Model, event: WebhookEvent) {
        staged.count_event(self.metrics.event(&item.itemtype, event));
    }
}

/// The template variables of an event for an item: `event`, `item`, `parent_item` when the
/// item has a stored parent, and for `update` the write's `changes`.
pub async fn api_data(
    conn: &impl ConnectionTrait,
    entities: &EntityIndex,
    event: WebhookEvent,
    item: &items::Model,
    changes: &[Change],
) -> AppResult<ApiData> {
    let parent_item = match (&item.parent_itemtype, &item.parent_id) {
        (Some(ptype), Some(pid)) => match super::items::get(conn, ptype, pid).await? {
            Some(parent) => Some(document_in(entities, &parent)?),
            None => None,
        },
        _ => None,
    };
    let actor = Actor::stored(&item.actor_user, &item.actor_profile).map(|actor| actor.to_value());
    let changes = (event == WebhookEvent::Update).then(|| changes_value(changes));
    Ok(ApiData { item: document_in(entities, item)?, event: event.as_str(), parent_item, actor, changes })
}

/// The active webhooks whose entity scope holds an item of the entity `chain` (the item's
/// entity first, then its ancestors).
pub fn in_scope<'a>(candidates: &'a [CachedWebhook], chain: &[i64]) -> Vec<&'a CachedWebhook> {
    candidates
        .iter()
        .filter(|c| {
            let s = &c.webhook.settings;
            s.is_active && entity_matches(s.entity_id, s.is_recursive, chain)
        })
        .collect()
}

/// Those whose filter (if any) matches the event's documents.
pub fn passing<'a>(in_scope: Vec<&'a CachedWebhook>, subject: &Subject<'_>) -> Vec<&'a CachedWebhook> {
    in_scope
        .into_iter()
        .filter(|c| match &c.filter {
            None => true,
            Some(Ok(filter)) => filter.matches(subject),
            Some(Err(reason)) => {
                tracing::warn!(webhook = c.webhook.id, %reason, "the webhook's filter cannot be used; it does not fire");
                false
            }
        })
        .collect()
}

/// Queues every active webhook of the item's type and the event whose entity scope holds
/// the item. A webhook whose request cannot be rendered gets a FAILED row saying why; the
/// others go on. Returns the queued rows.
/// `changes`: what the write changed (`update`; empty otherwise).
/// Run it in the event's span (see [`plan`]).
pub async fn raise(
    conn: &impl ConnectionTrait,
    staged: &mut Staged,
    intake: &Intake,
    event: WebhookEvent,
    item: &items::Model,
    changes: &[Change],
) -> AppResult<Vec<queued_webhooks::Model>> {
    intake.count_event(staged, item, event);
    intake.cache.read_versions(conn, &item.itemtype, event.as_str(), staged.batch()).await?;
    let candidates = intake
        .cache
        .webhooks(conn, &intake.secrets, &item.itemtype, event.as_str(), intake.limits, staged.batch())
        .await?;
    if !candidates.iter().any(|c| c.webhook.settings.is_active) {
        return Ok(Vec::new());
    }
    let entities = intake.cache.entities_in(conn, staged.batch()).await?;
    let queued = plan(conn, intake, event, item, changes, &candidates, &entities).await?;
    super::coalesce::enqueue(conn, staged, intake, event, item, changes, queued, &candidates, &entities).await
}

/// Renderings allowed to run at once: one per CPU, so that a rendering's clock
/// (`HOOKLINE_TEMPLATE_TIMEOUT`) measures its own work, not time spent waiting for a core
/// during a burst. The others wait their turn before their clock starts.
fn renderers() -> Arc<Semaphore> {
    static RENDERERS: OnceLock<Arc<Semaphore>> = OnceLock::new();
    RENDERERS
        .get_or_init(|| Arc::new(Semaphore::new(std::thread::available_parallelism().map_or(1, |n| n.get()))))
        .clone()
}

/// Runs `work` (a rendering) on the blocking pool, off the async runtime's threads, once one
/// of the CPUs' turns is free (the budget's clock starts inside `work`); a panic in it is an
/// error, not a lost worker.
pub async fn off_runtime<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> AppResult<T> {
    let turn = renderers().acquire_owned().await.map_err(|e| AppError::internal(format!("no rendering turn: {e}")))?;
    tokio::task::spawn_blocking(move || {
        // Held until the rendering ends, even when the caller stops waiting for it.
        let _turn = turn;
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work))
    })
    .await
    .map_err(|e| AppError::internal(format!("a rendering task did not finish: {e}")))?
    .map_err(|_| AppError::internal("a rendering panicked"))
}

/// Renders each webhook's request: on the blocking pool when a template has anything to
/// evaluate, each within its budget, so that one slow or huge template fails only its own
/// row.
pub(super) async fn render_all(
    candidates: &Arc<Vec<CachedWebhook>>,
    chosen: Vec<usize>,
    variables: liquid::Object,
    default_body: String,
) -> AppResult<Vec<Result<Rendered, String>>> {
    let fixed = chosen
        .iter()
        .all(|&i| candidates.get(i).is_none_or(|c| c.templates.as_ref().ok().is_none_or(WebhookTemplates::is_fixed)));
    let render = move |list: &[CachedWebhook]| -> Vec<Result<Rendered, String>> {
        chosen
            .iter()
            .map(|&i| {
                let templates = list.get(i).map(|c| &c.templates);
                let templates = templates.ok_or_else(|| "the webhook vanished".to_owned())?.as_ref();
                let templates = templates.map_err(Clone::clone)?;
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| templates.render(&variables, &default_body)))
                    .unwrap_or_else(|_| Err("rendering failed: an internal error (see the log)".into()))
            })
            .collect()
    };
    if fixed {
        return Ok(render(candidates));
    }
    let list = candidates.clone();
    off_runtime(move || render(&list)).await
}

/// The rows an event queues, rendered from the given webhooks and entity tree; not stored.
/// `conn` is read for the parent item. Run it in the event's span: the rows carry its trace.
pub async fn plan(
    conn: &impl ConnectionTrait,
    intake: &Intake,
    event: WebhookEvent,
    item: &items::Model,
    changes: &[Change],
    candidates: &Arc<Vec<CachedWebhook>>,
    entities: &EntityIndex,
) -> AppResult<Vec<queued_webhooks::Model>> {
    let secrets = &intake.secrets;
    if !candidates.iter().any(|c| c.webhook.settings.is_active) {
        return Ok(Vec::new());
    }
    let in_scope = in_scope(candidates, &entities.chain(item.entity_id));
    if in_scope.is_empty() {
        return Ok(Vec::new());
    }
    let data = api_data(conn, entities, event, item, changes).await?;
    let entity_chain = |id| entities.chain(id);
    let subject = Subject {
        item: &data.item,
        parent_item: data.parent_item.as_ref(),
        actor: data.actor.as_ref(),
        entity_chain: &entity_chain,
    };
    let matching = passing(in_scope, &subject);
    if matching.is_empty() {
        return Ok(Vec::new());
    }
    let default_body = data.default_body();
    let needs_variables = matching.iter().any(|c| c.templates.as_ref().is_ok_and(|t| t.uses_variables()));
    let variables = if needs_variables { render::variables(&data) } else { liquid::Object::new() };
    let chosen = matching.iter().filter_map(|m| candidates.iter().position(|c| std::ptr::eq(c, *m))).collect();
    let rendered = render_all(candidates, chosen, variables, default_body).await?;
    let now = Utc::now();
    // The rows join the trace of the event's span, the current one (see `telemetry::event_span`).
    let traceparent = telemetry::traceparent(&tracing::Span::current(), None);
    tracing::debug!(rows = matching.len(), "the event's requests are rendered");
    Ok(matching
        .into_iter()
        .zip(rendered)
        .map(|(CachedWebhook { webhook, .. }, rendered)| {
            let row = queued_row(
                webhook.id,
                &webhook.settings,
                item,
                event,
                rendered,
                secrets,
                now,
                Some(traceparent.clone()),
            );
            // A coalescing webhook's update row keeps its changes, for a newer update to merge.
            let coalescing = event == WebhookEvent::Update && webhook.settings.coalesce_seconds > 0;
            queued_webhooks::Model { changes: coalescing.then(|| data.changes.clone()).flatten(), ..row }
        })
        .collect())
}

/// The queue row of one webhook for an event of the item, from its rendered request (or the
/// reason it could not be rendered: the row is then FAILED saying why); not stored.
/// `traceparent`: the trace its attempts continue.
#[allow(clippy::too_many_arguments)]
pub fn queued_row(
    webhook_id: i64,
    settings: &WebhookSettings,
    item: &items::Model,
    event: WebhookEvent,
    rendered: Result<Rendered, String>,
    secrets: &SecretBox,
    now: DateTime<Utc>,
    traceparent: Option<String>,
) -> queued_webhooks::Model {
    let delivery_id = format!("msg_{}", uuid::Uuid::now_v7().simple());
    if let Err(reason) = &rendered {
        tracing::debug!(webhook = webhook_id, %reason, "a webhook's request cannot be rendered; its row is FAILED");
    }
    let (url, headers, body, last_error) = match rendered {
        Ok(mut r) => {
            seal_credentials(&mut r.headers, secrets, &delivery_id);
            (r.url, Value::Object(r.headers), Some(r.body), None)
        }
        Err(reason) => (settings.url.clone(), Value::Object(Default::default()), None, Some(reason)),
    };
    // An update of a coalescing webhook waits for newer updates of the item to replace it.
    let send_time = match event {
        WebhookEvent::Update if settings.coalesce_seconds > 0 => {
            now + chrono::Duration::seconds(i64::from(settings.coalesce_seconds))
        }
        _ => now,
    };
    queued_webhooks::Model {
        id: 0,
        webhook_id,
        itemtype: item.itemtype.clone(),
        item_id: item.id.clone(),
        entity_id: item.entity_id,
        event: event.as_str().to_owned(),
        url,
        http_method: settings.http_method.as_str().to_owned(),
        headers,
        body,
        // The queue sets it: PENDING, or FAILED without a body.
        status: QueueStatus::Pending,
        sent_try: 0,
        max_attempts: settings.sent_try + 1,
        delivery_id,
        create_time: now,
        send_time,
        sent_time: None,
        last_status_code: None,
        response_body: None,
        last_error,
        save_response_body: settings.save_response_body,
        log_in_item_history: settings.log_in_item_history,
        lease_until: None,
        claim_token: None,
        claimed_by: None,
        traceparent,
        is_test: false,
        order_key: settings.ordered.then(|| crate::queue::order_key(webhook_id, &item.itemtype, &item.id)),
        changes: None,
    }
}

#[cfg(test)]
mod tests {
    use std::{
        sync::atomic::{AtomicUsize, Ordering},
        time::Duration,
    };

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_renderings_run_at_once_than_there_are_cpus() {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let tasks: Vec<_> = (0..cpus * 4)
            .map(|_| {
                let (running, most) = (running.clone(), most.clone());
                tokio::spawn(off_runtime(move || {
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(20));
                    running.fetch_sub(1, Ordering::SeqCst);
                }))
            })
            .collect();
        for task in tasks {
            task.await.expect("joined").expect("ran");
        }
        let most = most.load(Ordering::SeqCst);
        assert!(most >= 1 && most <= cpus, "{most} renderings at once on {cpus} CPUs");
    }
}
