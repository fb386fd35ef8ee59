//! Webhooks: their settings, their secrets (sealed at rest, write-only), their history.

use chrono::Utc;
use entity::webhooks;
use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, IntoActiveModel,
    PaginatorTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use secrecy::ExposeSecret;
use serde_json::Value;

use super::{
    history::{self, NewEntry, Subject},
    itemtypes,
    paging::{Page, PageRequest},
    tree::{CATEGORIES, ENTITIES},
    webhook_secrets::{check_new_target, credential_headers, stored_headers},
};
use crate::{
    delivery::TargetPolicy,
    domain::template::Limits,
    domain::webhook::{
        HttpMethod, SignatureScheme, WebhookChanges, WebhookEvent, WebhookSettings, check_secret, generate_secret,
        keep_hidden_headers, redact_headers,
    },
    error::{AppError, AppResult},
    queue::Queue,
    secret_box::{Purpose, SecretBox},
};

/// The secrets a create or update gives: `secret` (None: keep, or generate on create) and
/// `client_secret` (None: keep; `Some(None)`: remove). Its Debug output says which are given,
/// never their values.
#[derive(Clone, Default)]
pub struct SecretChanges {
    pub secret: Option<String>,
    pub client_secret: Option<Option<String>>,
}

impl std::fmt::Debug for SecretChanges {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let given = |given: bool| if given { "<given>" } else { "<kept>" };
        let client_secret = match &self.client_secret {
            None => "<kept>",
            Some(None) => "<removed>",
            Some(Some(_)) => "<given>",
        };
        f.debug_struct("SecretChanges")
            .field("secret", &format_args!("{}", given(self.secret.is_some())))
            .field("client_secret", &format_args!("{client_secret}"))
            .finish()
    }
}

/// A stored webhook as the API shows it: settings, never secrets.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub id: i64,
    pub settings: WebhookSettings,
    pub filter: super::filters::WebhookFilter,
    pub has_client_secret: bool,
    pub created_at: chrono::DateTime<Utc>,
    pub updated_at: chrono::DateTime<Utc>,
}

impl TryFrom<webhooks::Model> for Webhook {
    type Error = AppError;

    fn try_from(m: webhooks::Model) -> AppResult<Self> {
        let corrupt =
            |what: &str, v: &str| AppError::internal(format!("webhook {}: stored {what} `{v}` is unknown", m.id));
        let settings = WebhookSettings {
            name: m.name.clone(),
            comment: m.comment.clone(),
            is_active: m.is_active,
            category_id: m.category_id,
            entity_id: m.entity_id,
            is_recursive: m.is_recursive,
            itemtype: m.itemtype.clone(),
            event: WebhookEvent::parse(&m.event).ok_or_else(|| corrupt("event", &m.event))?,
            sent_try: m.sent_try,
            url: m.url.clone(),
            http_method: HttpMethod::parse(&m.http_method).ok_or_else(|| corrupt("httpMethod", &m.http_method))?,
            save_response_body: m.save_response_body,
            log_in_item_history: m.log_in_item_history,
            signature_scheme: SignatureScheme::parse(&m.signature_scheme)
                .ok_or_else(|| corrupt("signatureScheme", &m.signature_scheme))?,
            expiration: m.expiration,
            use_cra_challenge: m.use_cra_challenge,
            use_oauth: m.use_oauth,
            oauth_url: m.oauth_url.clone(),
            client_id: m.client_id.clone(),
            use_default_payload: m.use_default_payload,
            payload: m.payload.clone(),
            custom_headers: crate::service::items::as_map(&m.custom_headers),
            max_per_second: m.max_per_second,
            ordered: m.ordered,
            coalesce_seconds: m.coalesce_seconds,
        };
        Ok(Self {
            id: m.id,
            filter: super::filters::WebhookFilter::from_columns(m.filter_criteria.as_ref(), m.saved_search_id),
            settings,
            has_client_secret: m.client_secret_encrypted.is_some(),
            created_at: m.created_at,
            updated_at: m.updated_at,
        })
    }
}

pub async fn get(conn: &impl ConnectionTrait, id: i64) -> AppResult<Option<Webhook>> {
    webhooks::Entity::find_by_id(id).one(conn).await?.map(Webhook::try_from).transpose()
}

/// The webhooks of these ids that exist, by id (one statement for many).
pub async fn get_many(conn: &impl ConnectionTrait, ids: &[i64]) -> AppResult<Vec<Webhook>> {
    webhooks::Entity::find()
        .filter(webhooks::Column::Id.is_in(ids.iter().copied()))
        .all(conn)
        .await?
        .into_iter()
        .map(Webhook::try_from)
        .collect()
}

pub async fn require(conn: &impl ConnectionTrait, id: i64) -> AppResult<Webhook> {
    get(conn, id).await?.ok_or_else(|| AppError::not_found(format!("no webhook with id {id}")))
}

/// Webhooks by id, optionally of one itemtype and in one entity or below it.
/// What `webhooks` lists: `entity_id` and `category_id` include their descendants.
#[derive(Debug, Clone, Copy, Default)]
pub struct WebhookFilter<'a> {
    pub itemtype: Option<&'a str>,
    pub entity_id: Option<i64>,
    pub category_id: Option<i64>,
    /// The caller's entities (None: every entity).
    pub within: Option<&'a [i64]>,
}

pub async fn list(
    conn: &impl ConnectionTrait,
    filter: WebhookFilter<'_>,
    page: PageRequest,
) -> AppResult<Page<Webhook>> {
    let WebhookFilter { itemtype, entity_id, category_id, within } = filter;
    let mut base = webhooks::Entity::find();
    if let Some(within) = within {
        base = base.filter(webhooks::Column::EntityId.is_in(within.iter().copied()));
    }
    if let Some(itemtype) = itemtype {
        base = base.filter(webhooks::Column::Itemtype.eq(itemtype));
    }
    if let Some(entity_id) = entity_id {
        base = base.filter(webhooks::Column::EntityId.is_in(ENTITIES.subtree_ids(conn, entity_id).await?));
    }
    if let Some(category_id) = category_id {
        base = base.filter(webhooks::Column::CategoryId.is_in(CATEGORIES.subtree_ids(conn, category_id).await?));
    }
    let total = base.clone().count(conn).await?;
    let mut query = base.order_by_asc(webhooks::Column::Id).limit(page.first + 1);
    if let Some(after) = page.after {
        query = query.filter(webhooks::Column::Id.gt(after));
    }
    let mut rows = Vec::new();
    for model in query.all(conn).await? {
        rows.push((model.id, Webhook::try_from(model)?));
    }
    Ok(Page::from_fetched(rows, page, total))
}

/// Refuses a URL with a user or password, or whose host is a literal address hookline may not
/// reach (`http://127.0.0.1/`, `http://[::ffff:10.0.0.1]/`, `http://2130706433/`); host names
/// are checked when resolved, at send time.
fn check_targets(settings: &WebhookSettings, targets: &TargetPolicy) -> AppResult<()> {
    for (field, url) in [("url", Some(&settings.url)), ("oauthUrl", settings.oauth_url.as_ref())] {
        let Some(url) = url else { continue };
        let Ok(parsed) = url::Url::parse(without_tags(url).trim()) else { continue };
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(AppError::validation(format!(
                "{field}: must not carry a user or password (`user:password@`), which would be stored and shown \
                 in clear; send credentials in a custom Authorization header (stored encrypted) or use OAuth"
            )));
        }
        if let Err(reason) = targets.check_url(&parsed) {
            return Err(AppError::validation(format!("{field}: {reason}")));
        }
    }
    Ok(())
}

/// The text with each template tag (`{{ … }}`, `{% … %}`) replaced by `x`.
fn without_tags(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('{') {
        let close = match rest[start..].get(..2) {
            Some("{{") => "}}",
            Some("{%") => "%}",
            _ => {
                out.push_str(&rest[..=start]);
                rest = &rest[start + 1..];
                continue;
            }
        };
        out.push_str(&rest[..start]);
        out.push('x');
        rest = rest[start..].find(close).map_or("", |end| &rest[start + end + 2..]);
    }
    out.push_str(rest);
    out
}

pub async fn create(
    db: &DatabaseConnection,
    secrets: &SecretBox,
    limits: Limits,
    targets: &TargetPolicy,
    base: WebhookSettings,
    changes: WebhookChanges,
    secret_changes: SecretChanges,
) -> AppResult<Webhook> {
    let client_secret = secret_changes.client_secret.flatten().filter(|s| !s.is_empty());
    let mut settings = base.with_changes(changes)?;
    // A new webhook has no stored value for `(hidden)` to stand for.
    keep_hidden_headers(&mut settings.custom_headers, &serde_json::Map::new())?;
    settings.validate(client_secret.is_some())?;
    check_targets(&settings, targets)?;
    let txn = crate::db::begin_write(db).await?;
    check_references(&txn, &settings).await?;
    super::preview::check_templates(&txn, &settings, limits).await?;
    let secret = match secret_changes.secret {
        Some(secret) => {
            check_secret(settings.signature_scheme, &secret)?;
            secret
        }
        None => generate_secret(settings.signature_scheme),
    };
    let now = Utc::now();
    let mut model = settings_model(&settings, <webhooks::ActiveModel as Default>::default());
    // Sealed values are bound to the webhook id, known once the row is in: it goes in without
    // them and gets them in the same transaction.
    model.custom_headers = Set(Value::Object(redact_headers(&settings.custom_headers)));
    model.secret_encrypted = Set(String::new());
    model.client_secret_encrypted = Set(None);
    model.created_at = Set(now);
    model.updated_at = Set(now);
    let inserted = webhooks::Entity::insert(model).exec_with_returning(&txn).await?;
    let (id, row) = (inserted.id, inserted.id.to_string());
    let mut sealed = inserted.into_active_model();
    sealed.secret_encrypted = Set(secrets.seal(Purpose::WebhookSecret, &row, &secret));
    sealed.client_secret_encrypted = Set(client_secret.map(|s| secrets.seal(Purpose::OauthClientSecret, &row, &s)));
    sealed.custom_headers = Set(Value::Object(stored_headers(&settings.custom_headers, &[], id, secrets)));
    let stored = sealed.update(&txn).await?;
    history::add(&txn, Subject::Webhook(id), vec![NewEntry::new("create", "Webhook created")]).await?;
    txn.commit().await?;
    Webhook::try_from(stored)
}

#[allow(clippy::too_many_arguments)]
pub async fn update(
    db: &DatabaseConnection,
    queue: &Queue,
    secrets: &SecretBox,
    limits: Limits,
    targets: &TargetPolicy,
    id: i64,
    changes: WebhookChanges,
    secret_changes: SecretChanges,
) -> AppResult<Webhook> {
    let txn = crate::db::begin_write(db).await?;
    let stored = webhooks::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no webhook with id {id}")))?;
    let current = Webhook::try_from(stored.clone())?;
    let headers_given = changes.custom_headers.is_some();
    let mut settings = current.settings.clone().with_changes(changes)?;
    // The credential headers that keep their stored (sealed) value.
    let kept = if headers_given {
        keep_hidden_headers(&mut settings.custom_headers, &current.settings.custom_headers)?
    } else {
        credential_headers(&settings)
    };
    let has_client_secret = match &secret_changes.client_secret {
        Some(new) => new.as_deref().is_some_and(|s| !s.is_empty()),
        None => current.has_client_secret,
    };
    settings.validate(has_client_secret)?;
    check_targets(&settings, targets)?;
    let keeps_client_secret = current.has_client_secret && secret_changes.client_secret.is_none();
    check_new_target(&current.settings, &settings, &kept, keeps_client_secret)?;
    check_references(&txn, &settings).await?;
    super::preview::check_templates(&txn, &settings, limits).await?;

    let mut entries: Vec<NewEntry> = current
        .settings
        .differences(&settings)
        .into_iter()
        .map(|(field, old, new)| NewEntry::change("update", format!("{field} changed"), Some(old), Some(new)))
        .collect();
    // A credential header given anew is a change even when its name was there before (the
    // history shows neither value).
    for name in credential_headers(&settings).into_iter().filter(|name| !kept.contains(name)) {
        entries.push(NewEntry::new("update", format!("customHeaders.{name} set")));
    }
    let row = id.to_string();
    let mut model = settings_model(&settings, stored.clone().into_active_model());
    model.custom_headers = Set(Value::Object(stored_headers(&settings.custom_headers, &kept, id, secrets)));
    match secret_changes.secret {
        Some(secret) => {
            check_secret(settings.signature_scheme, &secret)?;
            model.secret_encrypted = Set(secrets.seal(Purpose::WebhookSecret, &row, &secret));
            entries.push(NewEntry::new("update", "secret changed"));
            drop_previous_secret(&stored, &mut model, &mut entries);
        }
        None if settings.signature_scheme != current.settings.signature_scheme => {
            let stored_secret = secrets.open(Purpose::WebhookSecret, &row, &stored.secret_encrypted)?;
            check_secret(settings.signature_scheme, stored_secret.expose_secret()).map_err(|_| {
                AppError::validation(format!(
                    "secret: the stored secret does not fit signatureScheme {}; give a new `secret` \
                     (whsec_<base64>) in the same update",
                    settings.signature_scheme.as_str()
                ))
            })?;
            drop_previous_secret(&stored, &mut model, &mut entries);
        }
        None => {}
    }
    if settings.itemtype != current.settings.itemtype && current.filter != super::filters::WebhookFilter::None {
        // As GLPI: a filter searches one itemtype, so it goes when the itemtype changes.
        model.filter_criteria = Set(None);
        model.saved_search_id = Set(None);
        entries.push(NewEntry::new("update", "filter dropped: the itemtype changed"));
    }
    if let Some(client_secret) = secret_changes.client_secret {
        let client_secret = client_secret.filter(|s| !s.is_empty());
        model.client_secret_encrypted = Set(client_secret.map(|s| secrets.seal(Purpose::OauthClientSecret, &row, &s)));
        entries.push(NewEntry::new("update", "clientSecret changed"));
    }
    if entries.is_empty() {
        return Ok(current);
    }
    model.updated_at = Set(Utc::now());
    // Turned on again: a webhook the breaker turned off probes its target at once (its health
    // row is locked before its row is written, as the recorder locks them).
    let probe_due = settings.is_active && !current.settings.is_active && Queue::reactivated(&txn, id).await?;
    let updated = model.update(&txn).await?;
    history::add(&txn, Subject::Webhook(id), entries).await?;
    txn.commit().await?;
    if probe_due && let Err(err) = queue.probe_due().await {
        // The probe goes at the workers' next poll.
        tracing::warn!(?err, webhook = id, "cannot wake the workers for a reactivated webhook's probe");
    }
    Webhook::try_from(updated)
}

pub async fn delete(db: &DatabaseConnection, id: i64) -> AppResult<()> {
    let txn = crate::db::begin_write(db).await?;
    let result = webhooks::Entity::delete_by_id(id).exec(&txn).await?;
    if result.rows_affected == 0 {
        return Err(AppError::not_found(format!("no webhook with id {id}")));
    }
    history::purge(&txn, Subject::Webhook(id)).await?;
    txn.commit().await?;
    Ok(())
}

/// The longest a replaced secret may keep signing (`keepPreviousSeconds`): 7 days.
pub const MAX_KEEP_PREVIOUS_SECONDS: i64 = 7 * 24 * 3600;

/// Replaces the secret with a new random one that fits the scheme and returns it: the only
/// time a secret leaves hookline. For `keep_previous_seconds` (0 to 7 days) attempts are
/// signed with the replaced secret too; with 0, no previous secret signs any more (one kept
/// by an earlier rotation included).
pub async fn regenerate_secret(
    db: &DatabaseConnection,
    secrets: &SecretBox,
    id: i64,
    keep_previous_seconds: i64,
) -> AppResult<String> {
    if !(0..=MAX_KEEP_PREVIOUS_SECONDS).contains(&keep_previous_seconds) {
        return Err(AppError::invalid(
            "keepPreviousSeconds",
            format!("keepPreviousSeconds: from 0 to {MAX_KEEP_PREVIOUS_SECONDS} (7 days), not {keep_previous_seconds}"),
        ));
    }
    let txn = crate::db::begin_write(db).await?;
    let stored = webhooks::Entity::find_by_id(id)
        .one(&txn)
        .await?
        .ok_or_else(|| AppError::not_found(format!("no webhook with id {id}")))?;
    let webhook = Webhook::try_from(stored.clone())?;
    let secret = generate_secret(webhook.settings.signature_scheme);
    let row = id.to_string();
    let now = Utc::now();
    let (previous, until, message) = if keep_previous_seconds > 0 {
        let replaced = secrets.open(Purpose::WebhookSecret, &row, &stored.secret_encrypted)?;
        let sealed = secrets.seal(Purpose::PreviousWebhookSecret, &row, replaced.expose_secret());
        let until = now + chrono::Duration::seconds(keep_previous_seconds);
        let message = format!("secret regenerated; the previous one also signs for {keep_previous_seconds} s");
        (Some(sealed), Some(until), message)
    } else {
        (None, None, "secret regenerated".to_owned())
    };
    webhooks::Entity::update_many()
        .col_expr(webhooks::Column::SecretEncrypted, secrets.seal(Purpose::WebhookSecret, &row, &secret).into())
        .col_expr(webhooks::Column::PreviousSecretEncrypted, previous.into())
        .col_expr(webhooks::Column::PreviousSecretExpiresAt, until.into())
        .col_expr(webhooks::Column::UpdatedAt, now.into())
        .filter(webhooks::Column::Id.eq(id))
        .exec(&txn)
        .await?;
    history::add(&txn, Subject::Webhook(id), vec![NewEntry::new("update", message)]).await?;
    txn.commit().await?;
    Ok(secret)
}

/// Forgets the previous secrets whose overlap has ended (they sign nothing any more).
pub async fn clear_expired_previous_secrets(db: &DatabaseConnection) -> AppResult<u64> {
    let cleared = webhooks::Entity::update_many()
        .col_expr(webhooks::Column::PreviousSecretEncrypted, Expr::value(Option::<String>::None))
        .col_expr(webhooks::Column::PreviousSecretExpiresAt, Expr::value(Option::<chrono::DateTime<Utc>>::None))
        .filter(webhooks::Column::PreviousSecretExpiresAt.lte(Utc::now()))
        .exec(db)
        .await?;
    Ok(cleared.rows_affected)
}

/// A secret given anew, or a change of scheme, ends a rotation's overlap: the previous secret
/// (chosen for the old scheme, replaced by the caller's choice) signs no more.
fn drop_previous_secret(stored: &webhooks::Model, model: &mut webhooks::ActiveModel, entries: &mut Vec<NewEntry>) {
    if stored.previous_secret_encrypted.is_some() {
        model.previous_secret_encrypted = Set(None);
        model.previous_secret_expires_at = Set(None);
        if stored.previous_secret_expires_at.is_some_and(|until| until > Utc::now()) {
            entries.push(NewEntry::new("update", "previous secret dropped"));
        }
    }
}

/// The itemtype, entity and category the settings name must exist.
async fn check_references(conn: &impl ConnectionTrait, settings: &WebhookSettings) -> AppResult<()> {
    itemtypes::require(conn, &settings.itemtype, "itemtype").await?;
    if ENTITIES.get(conn, settings.entity_id).await?.is_none() {
        return Err(AppError::validation(format!("entityId: no entity with id {}", settings.entity_id)));
    }
    if let Some(category_id) = settings.category_id
        && CATEGORIES.get(conn, category_id).await?.is_none()
    {
        return Err(AppError::validation(format!("categoryId: no webhook category with id {category_id}")));
    }
    Ok(())
}

fn settings_model(s: &WebhookSettings, mut m: webhooks::ActiveModel) -> webhooks::ActiveModel {
    m.name = Set(s.name.clone());
    m.comment = Set(s.comment.clone());
    m.is_active = Set(s.is_active);
    m.category_id = Set(s.category_id);
    m.entity_id = Set(s.entity_id);
    m.is_recursive = Set(s.is_recursive);
    m.itemtype = Set(s.itemtype.clone());
    m.event = Set(s.event.as_str().to_owned());
    m.sent_try = Set(s.sent_try);
    m.url = Set(s.url.clone());
    m.http_method = Set(s.http_method.as_str().to_owned());
    m.save_response_body = Set(s.save_response_body);
    m.log_in_item_history = Set(s.log_in_item_history);
    m.signature_scheme = Set(s.signature_scheme.as_str().to_owned());
    m.expiration = Set(s.expiration);
    m.use_cra_challenge = Set(s.use_cra_challenge);
    m.use_oauth = Set(s.use_oauth);
    m.oauth_url = Set(s.oauth_url.clone());
    m.client_id = Set(s.client_id.clone());
    m.use_default_payload = Set(s.use_default_payload);
    m.payload = Set(s.payload.clone());
    m.custom_headers = Set(Value::Object(s.custom_headers.clone()));
    m.max_per_second = Set(s.max_per_second);
    m.ordered = Set(s.ordered);
    m.coalesce_seconds = Set(s.coalesce_seconds);
    m
}
