//! What a webhook would send for an item now, and the variables templates can use.

use std::collections::BTreeSet;

use chrono::Utc;
use entity::{items as item_rows, queued_webhooks};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{Map, Value};

use super::{
    events::{api_data, off_runtime, queued_row},
    filters, items, itemtypes,
    tree::EntityIndex,
    webhook_secrets::opened_settings,
    webhooks,
};
use crate::{
    domain::{
        item::Change,
        payload::ApiData,
        render::{self, FieldError, Rendered, WebhookTemplates},
        template::Limits,
        webhook::{SignatureScheme, WebhookEvent, WebhookSettings},
    },
    error::{AppError, AppResult},
    secret_box::SecretBox,
};

/// A preview of one webhook for one item.
#[derive(Debug, Clone)]
pub struct Preview {
    pub api_data: Value,
    pub rendered: Rendered,
    /// Every header an attempt carries; those computed at send time are shown as placeholders.
    pub headers: Map<String, Value>,
    /// Whether the item matches the webhook's filter (true without a filter).
    pub matches_filter: bool,
}

/// A webhook rendered for a stored item.
struct Rendering {
    webhook: webhooks::Webhook,
    settings: WebhookSettings,
    item: item_rows::Model,
    entities: EntityIndex,
    data: ApiData,
    rendered: Rendered,
}

/// Renders the webhook (with its credentials opened) for the stored item of its itemtype.
async fn render_for(
    conn: &impl ConnectionTrait,
    secrets: &SecretBox,
    limits: Limits,
    webhook_id: i64,
    item_id: &str,
) -> AppResult<Rendering> {
    let webhook = webhooks::require(conn, webhook_id).await?;
    let settings = opened_settings(&webhook, secrets)?;
    let item = items::get(conn, &settings.itemtype, item_id).await?.ok_or_else(|| {
        AppError::not_found(format!(
            "no {} with id `{item_id}`: webhook {webhook_id} fires for {} items only",
            settings.itemtype, settings.itemtype
        ))
    })?;
    let entities = EntityIndex::load(conn).await?;
    let changes = last_changes(conn, settings.event, &item).await?;
    let data = api_data(conn, &entities, settings.event, &item, &changes).await?;
    let templates = WebhookTemplates::parse(&settings, limits).map_err(FieldError::into_error)?;
    let rendered = render_off_runtime(templates, &data).await?.map_err(|reason| refused(reason, ""))?;
    Ok(Rendering { webhook, settings, item, entities, data, rendered })
}

/// Renders the webhook for the stored item, as it would be queued now.
pub async fn preview(
    conn: &impl ConnectionTrait,
    secrets: &SecretBox,
    limits: Limits,
    webhook_id: i64,
    item_id: &str,
) -> AppResult<Preview> {
    let Rendering { webhook, settings, item, entities, data, rendered } =
        render_for(conn, secrets, limits, webhook_id, item_id).await?;
    let headers = attempt_headers(&settings, &rendered);
    // As at event time: a filter that cannot be used matches nothing.
    let matches_filter = match filters::compiled_filter(conn, &webhook.filter).await? {
        Some(Ok(filter)) => filters::item_matches(conn, &entities, &filter, &item).await?,
        Some(Err(_)) => false,
        None => true,
    };
    Ok(Preview { api_data: data.to_value(), rendered, headers, matches_filter })
}

/// The queued webhook of a test delivery (`sendTestDelivery`): the webhook's event for the
/// stored item, rendered exactly as [`preview`] renders it, whatever `isActive` and the
/// filter say. One attempt, and an entry in no item's history; not stored.
pub async fn test_delivery(
    conn: &impl ConnectionTrait,
    secrets: &SecretBox,
    limits: Limits,
    webhook_id: i64,
    item_id: &str,
) -> AppResult<queued_webhooks::Model> {
    let Rendering { settings, item, rendered, .. } = render_for(conn, secrets, limits, webhook_id, item_id).await?;
    // A test delivery starts its own trace, or continues the current operation's.
    let traceparent = crate::telemetry::traceparent(&tracing::Span::current(), None);
    let row =
        queued_row(webhook_id, &settings, &item, settings.event, Ok(rendered), secrets, Utc::now(), Some(traceparent));
    // A test goes now, whatever the webhook's order and coalescing.
    let now = row.create_time;
    Ok(queued_webhooks::Model {
        is_test: true,
        max_attempts: 1,
        log_in_item_history: false,
        order_key: None,
        send_time: now,
        ..row
    })
}

/// The headers of an attempt, in the order they are sent.
fn attempt_headers(settings: &WebhookSettings, rendered: &Rendered) -> Map<String, Value> {
    let mut headers = Map::new();
    let has = |name: &str| rendered.headers.keys().any(|k| k.eq_ignore_ascii_case(name));
    let get = settings.http_method == crate::domain::webhook::HttpMethod::Get;
    if !get && !has("content-type") {
        headers.insert("Content-Type".into(), "application/json".into());
    }
    if !has("user-agent") {
        headers.insert("User-Agent".into(), concat!("hookline/", env!("CARGO_PKG_VERSION")).into());
    }
    headers.extend(crate::domain::webhook::redact_headers(&rendered.headers));
    headers.insert("X-Hookline-Delivery".into(), "<the queued webhook's delivery id>".into());
    if matches!(settings.signature_scheme, SignatureScheme::Glpi | SignatureScheme::Both) {
        headers.insert("X-GLPI-signature".into(), "<HMAC-SHA256 of the body and timestamp, at send time>".into());
        headers.insert("X-GLPI-timestamp".into(), "<Unix time of the attempt>".into());
    }
    if matches!(settings.signature_scheme, SignatureScheme::StandardWebhooks | SignatureScheme::Both) {
        headers.insert("webhook-id".into(), "<the queued webhook's delivery id>".into());
        headers.insert("webhook-timestamp".into(), "<Unix time of the attempt>".into());
        headers.insert("webhook-signature".into(), "<v1,HMAC-SHA256 at send time>".into());
    }
    headers
}

/// Checks a webhook's templates when it is saved: they must parse, and render (against the
/// newest stored item of the itemtype, when there is one) to a valid request.
pub async fn check_templates(conn: &impl ConnectionTrait, settings: &WebhookSettings, limits: Limits) -> AppResult<()> {
    let templates = WebhookTemplates::parse(settings, limits).map_err(FieldError::into_error)?;
    let Some(sample) = newest_items(conn, &settings.itemtype, 1, None).await?.pop() else { return Ok(()) };
    let entities = EntityIndex::load(conn).await?;
    let changes = last_changes(conn, settings.event, &sample).await?;
    let data = api_data(conn, &entities, settings.event, &sample, &changes).await?;
    let sample = format!(" (rendered for {} `{}`)", sample.itemtype, sample.id);
    render_off_runtime(templates, &data).await?.map_err(|reason| refused(reason, &sample))?;
    Ok(())
}

/// The `changes` a preview of an `update` shows: those of the item's last update, from its
/// history (none for other events).
async fn last_changes(
    conn: &impl ConnectionTrait,
    event: WebhookEvent,
    item: &item_rows::Model,
) -> AppResult<Vec<Change>> {
    if event != WebhookEvent::Update {
        return Ok(Vec::new());
    }
    super::history::last_changes(conn, &item.itemtype, &item.id).await
}

/// Renders on the blocking pool, within the templates' budget.
async fn render_off_runtime(templates: WebhookTemplates, data: &ApiData) -> AppResult<Result<Rendered, String>> {
    let (variables, default_body) = (render::variables(data), data.default_body());
    off_runtime(move || templates.render(&variables, &default_body)).await
}

/// A rendering refused, as a validation error naming the setting (`payload`, `url`,
/// `customHeaders.<Name>`) its reason starts with.
fn refused(reason: String, suffix: &str) -> AppError {
    let field = reason.split_once(": ").map(|(field, _)| field.to_owned()).unwrap_or_default();
    let message = format!("{reason}{suffix}");
    if field == "payload" || field == "url" || field.starts_with("customHeaders.") {
        AppError::invalid(field, message)
    } else {
        AppError::validation(message)
    }
}

/// The URL a challenge of the webhook goes to: its URL, rendered for `item_id` (or the newest
/// stored item of its itemtype) when it is a template.
pub async fn challenge_url(
    conn: &impl ConnectionTrait,
    secrets: &SecretBox,
    limits: Limits,
    webhook_id: i64,
    item_id: Option<&str>,
    within: Option<&[i64]>,
) -> AppResult<String> {
    let webhook = webhooks::require(conn, webhook_id).await?;
    let url = &webhook.settings.url;
    if !render::is_dynamic(url) {
        return Ok(url.clone());
    }
    let item_id = match item_id {
        Some(id) => id.to_owned(),
        None => newest_items(conn, &webhook.settings.itemtype, 1, within).await?.pop().map(|item| item.id).ok_or_else(|| {
            AppError::validation(format!(
                "itemId: the URL of webhook {webhook_id} is a template and no {} is stored to render it; give itemId",
                webhook.settings.itemtype
            ))
        })?,
    };
    Ok(preview(conn, secrets, limits, webhook_id, &item_id).await?.rendered.url)
}

/// The newest stored items of the itemtype (of the `within` entities when given).
async fn newest_items(
    conn: &impl ConnectionTrait,
    itemtype: &str,
    count: u64,
    within: Option<&[i64]>,
) -> AppResult<Vec<item_rows::Model>> {
    let mut query = item_rows::Entity::find();
    if let Some(within) = within {
        query = query.filter(item_rows::Column::EntityId.is_in(within.iter().copied()));
    }
    Ok(query
        .filter(item_rows::Column::Itemtype.eq(itemtype))
        .order_by_desc(item_rows::Column::Seq)
        .limit(count)
        .all(conn)
        .await?)
}

/// The variable paths templates can use for an itemtype: `event`, `actor.*`, `changes`
/// (`update` only: `[{field, old, new}]`), the item document's keys (known fields and those
/// seen in the newest stored items, nested objects flattened) and `parent_item.*` for types
/// with parents.
pub async fn payload_variables(conn: &impl ConnectionTrait, itemtype: &str) -> AppResult<Vec<String>> {
    let known = itemtypes::require(conn, itemtype, "itemtype").await?;
    let mut paths = BTreeSet::from(
        ["event", "actor.user", "actor.profile", "changes", "changes[0].field", "changes[0].old", "changes[0].new"]
            .map(str::to_owned),
    );
    add_document_paths(conn, &mut paths, "item", &known).await?;
    for parent in &known.parent_itemtypes {
        if let Some(parent) = itemtypes::get(conn, parent).await? {
            add_document_paths(conn, &mut paths, "parent_item", &parent).await?;
        }
    }
    Ok(paths.into_iter().collect())
}

async fn add_document_paths(
    conn: &impl ConnectionTrait,
    paths: &mut BTreeSet<String>,
    root: &str,
    itemtype: &itemtypes::Itemtype,
) -> AppResult<()> {
    for key in
        ["id", "name", "is_deleted", "date_creation", "date_mod", "entity.id", "entity.name", "entity.completename"]
    {
        paths.insert(format!("{root}.{key}"));
    }
    for field in &itemtype.fields {
        paths.insert(format!("{root}.{field}"));
    }
    for item in newest_items(conn, &itemtype.name, 50, None).await? {
        if let Value::Object(fields) = &item.fields {
            for (key, value) in fields {
                flatten(paths, &format!("{root}.{key}"), value, 0);
            }
        }
    }
    Ok(())
}

fn flatten(paths: &mut BTreeSet<String>, path: &str, value: &Value, depth: usize) {
    match value {
        Value::Object(map) if depth < 4 && !map.is_empty() => {
            for (key, inner) in map {
                flatten(paths, &format!("{path}.{key}"), inner, depth + 1);
            }
        }
        Value::Array(items) if depth < 4 => {
            paths.insert(path.to_owned());
            if let Some(Value::Object(first)) = items.first() {
                for (key, inner) in first {
                    flatten(paths, &format!("{path}[0].{key}"), inner, depth + 1);
                }
            }
        }
        _ => {
            paths.insert(path.to_owned());
        }
    }
}
