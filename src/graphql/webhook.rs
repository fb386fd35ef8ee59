//! Webhooks: settings, secrets (write-only), history.

use std::sync::Arc;

use async_graphql::{Context, ID, InputObject, Json, MaybeUndefined, Object, Result};
use serde_json::Value;

use super::{
    context::{Session, session},
    entity::{Entity, WebhookCategory},
    item::{HistoryPage, webhook_history},
    paging::{Paged, connection, numeric_id, page_request},
    queue::{QueueStatus, QueuedWebhook, webhook_queue},
};
use crate::{
    delivery::{CraResult, credentials::challenge},
    domain::{
        breaker::{BreakerState, Health},
        item::rfc3339,
        webhook::{HttpMethod, SignatureScheme, WebhookChanges, WebhookEvent, WebhookSettings, redact_headers},
    },
    error::{AppError, AppResult},
    queue::QueueStats,
    service::{
        audit::{self, Change},
        filters, preview,
        webhooks::{self, SecretChanges},
    },
};
use serde_json::Map;

/// The longest window `Webhook.stats` counts over: 366 days.
const MAX_STATS_WINDOW: i32 = 31_622_400;

/// A webhook: what fires it (itemtype, event, entity scope) and what is sent where.
pub struct Webhook(pub webhooks::Webhook);

impl Webhook {
    /// The saved search the filter names, batched with the other webhooks of the page.
    async fn saved_search(&self, ctx: &Context<'_>) -> Result<Option<entity::saved_searches::Model>, AppError> {
        let filters::WebhookFilter::Saved(id) = self.0.filter else { return Ok(None) };
        let loader = super::loaders::loader::<super::loaders::SavedSearchLoader>(ctx)?;
        loader.load_one(id).await.map_err(|err| AppError::internal(err.message))
    }
}

#[Object]
impl Webhook {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }

    async fn name(&self) -> &str {
        &self.0.settings.name
    }

    async fn comment(&self) -> Option<&str> {
        self.0.settings.comment.as_deref()
    }

    /// Only active webhooks fire.
    async fn is_active(&self) -> bool {
        self.0.settings.is_active
    }

    async fn category_id(&self) -> Option<ID> {
        self.0.settings.category_id.map(|id| ID(id.to_string()))
    }

    async fn category(&self, ctx: &Context<'_>) -> Result<Option<WebhookCategory>> {
        let Some(id) = self.0.settings.category_id else {
            return Ok(None);
        };
        let loader = super::loaders::loader::<super::loaders::CategoryLoader>(ctx)?;
        Ok(loader.load_one(id).await?.map(WebhookCategory::from))
    }

    async fn entity_id(&self) -> ID {
        ID(self.0.settings.entity_id.to_string())
    }

    async fn entity(&self, ctx: &Context<'_>) -> Result<Entity> {
        let loader = super::loaders::loader::<super::loaders::EntityLoader>(ctx)?;
        let id = self.0.settings.entity_id;
        let entity = loader.load_one(id).await?;
        Ok(entity.ok_or_else(|| AppError::not_found(format!("no entity with id {id}")))?.into())
    }

    /// Also fires for items of the entity's descendants.
    async fn is_recursive(&self) -> bool {
        self.0.settings.is_recursive
    }

    async fn itemtype(&self) -> &str {
        &self.0.settings.itemtype
    }

    async fn event(&self) -> WebhookEvent {
        self.0.settings.event
    }

    /// GLPI's "number of retries": a queued webhook gets sentTry + 1 attempts.
    async fn sent_try(&self) -> i32 {
        self.0.settings.sent_try
    }

    /// The target URL, a template.
    async fn url(&self) -> &str {
        &self.0.settings.url
    }

    async fn http_method(&self) -> HttpMethod {
        self.0.settings.http_method
    }

    async fn save_response_body(&self) -> bool {
        self.0.settings.save_response_body
    }

    async fn log_in_item_history(&self) -> bool {
        self.0.settings.log_in_item_history
    }

    /// The deliveries of one item (itemtype and id) are sent one at a time, in event order: a
    /// later one waits while an earlier one is pending, sending or retrying. It applies to the
    /// rows queued once it is on (replayed rows included); forced sends and test deliveries
    /// bypass the order.
    async fn ordered(&self) -> bool {
        self.0.settings.ordered
    }

    /// Seconds `update` deliveries wait before their first send; a newer update of the same
    /// item replaces a waiting one. 0: no coalescing.
    async fn coalesce_seconds(&self) -> i32 {
        self.0.settings.coalesce_seconds
    }

    /// Always true: a webhook always has a signing secret. It is never shown; see
    /// regenerateWebhookSecret.
    async fn has_secret(&self) -> bool {
        true
    }

    async fn signature_scheme(&self) -> SignatureScheme {
        self.0.settings.signature_scheme
    }

    /// Seconds a signature stays valid for the receiver's verifier; 0 disables.
    async fn expiration(&self) -> i32 {
        self.0.settings.expiration
    }

    async fn use_cra_challenge(&self) -> bool {
        self.0.settings.use_cra_challenge
    }

    async fn use_oauth(&self) -> bool {
        self.0.settings.use_oauth
    }

    async fn oauth_url(&self) -> Option<&str> {
        self.0.settings.oauth_url.as_deref()
    }

    async fn client_id(&self) -> Option<&str> {
        self.0.settings.client_id.as_deref()
    }

    /// Whether an OAuth client secret is stored (it is never shown).
    async fn has_client_secret(&self) -> bool {
        self.0.has_client_secret
    }

    async fn use_default_payload(&self) -> bool {
        self.0.settings.use_default_payload
    }

    /// The payload template, used when useDefaultPayload is false.
    async fn payload(&self) -> Option<&str> {
        self.0.settings.payload.as_deref()
    }

    /// `{"Header-Name": "template"}`. Credential headers (`Authorization`, `Cookie`, and names that contain `token`,
    /// `secret`, `password`, `passwd`, `auth`, `session`, `credential`, `api-key`, `apikey`
    /// or `api_key`, or end in `key`, such as `X-Functions-Key`) are stored encrypted and read
    /// `(hidden)`; sending `(hidden)` back in an update keeps the
    /// stored value, unless the update moves the url to another scheme, host or port.
    async fn custom_headers(&self) -> Json<Value> {
        Json(Value::Object(redact_headers(&self.0.settings.custom_headers)))
    }

    /// Most sends started in any one second, over every process; null: no limit.
    async fn max_per_second(&self) -> Option<i32> {
        self.0.settings.max_per_second
    }

    /// Its circuit breaker: after HOOKLINE_BREAKER_FAILURES consecutive failed attempts its
    /// sends pause (OPEN), then one probe goes (HALF_OPEN) whose success closes it.
    async fn health(&self, ctx: &Context<'_>) -> Result<WebhookHealth> {
        let loader = super::loaders::loader::<super::loaders::HealthLoader>(ctx)?;
        let health = loader.load_one(self.0.id).await?;
        Ok(WebhookHealth(health.unwrap_or_else(|| Health::closed(self.0.id))))
    }

    /// RFC 3339, UTC.
    async fn created_at(&self) -> String {
        rfc3339(self.0.created_at)
    }

    /// RFC 3339, UTC.
    async fn updated_at(&self) -> String {
        rfc3339(self.0.updated_at)
    }

    /// Its queued webhooks, newest first.
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity)")]
    async fn queue(
        &self,
        ctx: &Context<'_>,
        status: Option<QueueStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Paged<QueuedWebhook>> {
        Ok(webhook_queue(ctx, self.0.id, status, first, after).await?)
    }

    /// Its newest queued webhook (of the caller's entities); null when it has none.
    async fn last_queued_webhook(&self, ctx: &Context<'_>) -> Result<Option<QueuedWebhook>> {
        let s = session(ctx)?;
        let within = s.scope_ids().await?.map(Arc::from);
        let loader = super::loaders::loader::<super::loaders::NewestQueuedLoader>(ctx)?;
        Ok(loader.load_one((self.0.id, within)).await?.map(QueuedWebhook::from))
    }

    /// The counters of its queued webhooks created in the last `sinceSeconds` (1 to 31622400,
    /// 366 days; of the caller's entities): by status, the oldest pending one's age, and those
    /// sent in the last minute.
    async fn stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 3600)] since_seconds: Option<i32>,
    ) -> Result<QueueStats> {
        // An explicit null means the default too.
        let since_seconds = since_seconds.unwrap_or(3600);
        if !(1..=MAX_STATS_WINDOW).contains(&since_seconds) {
            return Err(AppError::invalid(
                "sinceSeconds",
                format!("sinceSeconds: from 1 to {MAX_STATS_WINDOW} seconds (366 days)"),
            )
            .into());
        }
        let s = session(ctx)?;
        let within = s.scope_ids().await?.map(Arc::from);
        let loader = super::loaders::loader::<super::loaders::RecentStatsLoader>(ctx)?;
        let key = super::loaders::RecentStatsKey { webhook_id: self.0.id, seconds: i64::from(since_seconds), within };
        Ok(loader.load_one(key).await?.unwrap_or_default())
    }

    /// The filter's criteria (those of the saved search when the filter is one); null when the
    /// webhook fires for every item.
    async fn filter(&self, ctx: &Context<'_>) -> Result<Option<Vec<Json<Value>>>> {
        let saved = self.saved_search(ctx).await?;
        let criteria = filters::criteria_with(&self.0.filter, saved.as_ref())?;
        Ok(criteria.map(|list| list.into_iter().map(|c| Json(serde_json::to_value(c).unwrap_or_default())).collect()))
    }

    /// Why the webhook's filter cannot be used (unreadable stored criteria, a saved search
    /// that is gone, criteria that do not compile); null when it can, or there is none. A
    /// webhook whose filter cannot be used fires for nothing until the filter is set again.
    async fn filter_error(&self, ctx: &Context<'_>) -> Result<Option<String>> {
        let saved = self.saved_search(ctx).await?;
        Ok(filters::compiled_with(&self.0.filter, saved.as_ref()).and_then(Result::err))
    }

    /// The saved search used as filter, if any.
    async fn saved_search_id(&self) -> Option<ID> {
        match self.0.filter {
            filters::WebhookFilter::Saved(id) => Some(ID(id.to_string())),
            _ => None,
        }
    }

    /// Changes to the webhook, newest first.
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity)")]
    async fn history(&self, ctx: &Context<'_>, first: Option<i32>, after: Option<String>) -> Result<HistoryPage> {
        Ok(webhook_history(ctx, self.0.id, first, after).await?)
    }
}

/// A webhook's circuit breaker.
pub struct WebhookHealth(pub Health);

/// A webhook's circuit breaker: whether its sends flow (CLOSED), wait after consecutive
/// failures (OPEN), or wait for one probe (HALF_OPEN).
#[Object]
impl WebhookHealth {
    /// The webhook this breaker guards (a `webhookHealthUpdates` subscription without
    /// `webhookId` receives the changes of every webhook it may read).
    async fn webhook_id(&self) -> ID {
        ID(self.0.webhook_id.to_string())
    }

    /// CLOSED: sends flow. OPEN: sends wait after consecutive failures until `nextProbeAt`
    /// (or until the webhook is turned on again, when the breaker turned it off). HALF_OPEN:
    /// one probe is being sent; its success closes the breaker, its failure opens it again.
    async fn state(&self) -> BreakerState {
        self.0.state
    }

    /// Failed attempts (not 2xx: an error status, a timeout, a refused connection or address)
    /// since its last success; test deliveries do not count.
    async fn consecutive_failures(&self) -> i32 {
        self.0.consecutive_failures
    }

    /// When the breaker last opened (RFC 3339, UTC); null while it is closed.
    async fn opened_at(&self) -> Option<String> {
        (self.0.state != BreakerState::Closed).then_some(self.0.opened_at).flatten().map(rfc3339)
    }

    /// While OPEN: when the probe may go (RFC 3339, UTC); null otherwise, and while the
    /// webhook is deactivated by the breaker (turning it on again sends the probe).
    async fn next_probe_at(&self) -> Option<String> {
        (self.0.state == BreakerState::Open).then_some(self.0.next_probe_at).flatten().map(rfc3339)
    }
}

/// A new webhook. Omitted: isActive true, isRecursive false, sentTry 3, httpMethod POST,
/// useDefaultPayload true, signatureScheme GLPI, expiration 0, other booleans false, and a
/// generated secret.
#[derive(InputObject)]
pub struct WebhookInput {
    pub name: String,
    pub comment: Option<String>,
    pub is_active: Option<bool>,
    pub category_id: Option<ID>,
    pub entity_id: ID,
    pub is_recursive: Option<bool>,
    pub itemtype: String,
    pub event: WebhookEvent,
    /// Number of retries, 0 to 255 (attempts = sentTry + 1).
    pub sent_try: Option<i32>,
    /// A template; the text must start with http:// or https://.
    pub url: String,
    pub http_method: Option<HttpMethod>,
    pub save_response_body: Option<bool>,
    pub log_in_item_history: Option<bool>,
    /// GLPI signs with the secret's UTF-8 bytes. STANDARD_WEBHOOKS and BOTH need a
    /// `whsec_<base64>` secret. Omitted, one is generated (40 alphanumerics for GLPI, whsec_
    /// and 32 random bytes otherwise).
    pub secret: Option<String>,
    pub signature_scheme: Option<SignatureScheme>,
    /// Seconds, 0 = disabled.
    pub expiration: Option<i32>,
    pub use_cra_challenge: Option<bool>,
    pub use_oauth: Option<bool>,
    pub oauth_url: Option<String>,
    pub client_id: Option<String>,
    pub client_secret: Option<String>,
    pub use_default_payload: Option<bool>,
    pub payload: Option<String>,
    /// `{"Name": "template"}` (or a string holding that JSON). Credential headers
    /// (`Authorization`, `Cookie`, and names that contain `token`, `secret`, `password`,
    /// `passwd`, `auth`, `session`, `credential`, `api-key`, `apikey` or `api_key`, or end in
    /// `key`, such as `X-Functions-Key`) are stored encrypted and read `(hidden)` afterwards.
    /// Headers that frame or route the request (`Host`, `Content-Length`,
    /// `Transfer-Encoding`, `Connection`, `TE`, `Upgrade`, `Trailer`, `Proxy-*`) and the
    /// signature and delivery headers are refused.
    pub custom_headers: Option<Json<Value>>,
    /// Most sends started in any one second, over every process, 1 to 10000 (null: no
    /// limit). Rows beyond it wait their turn; forced sends and test deliveries pass but count.
    pub max_per_second: Option<i32>,
    /// The deliveries of one item (itemtype and id) are sent one at a time, in event order: a
    /// later one waits while an earlier one is pending, sending or retrying. Default false.
    pub ordered: Option<bool>,
    /// Seconds `update` deliveries wait before their first send, 0 to 3600 (default 0): a
    /// newer update of the same item replaces a waiting one (CANCELLED, "coalesced into <id>")
    /// and carries the item's final state and the merged `changes`.
    pub coalesce_seconds: Option<i32>,
}

/// Changes to a webhook: omitted fields stay; null clears a nullable one.
#[derive(InputObject)]
pub struct WebhookPatch {
    pub name: Option<String>,
    pub comment: MaybeUndefined<String>,
    pub is_active: Option<bool>,
    pub category_id: MaybeUndefined<ID>,
    pub entity_id: Option<ID>,
    pub is_recursive: Option<bool>,
    pub itemtype: Option<String>,
    pub event: Option<WebhookEvent>,
    pub sent_try: Option<i32>,
    pub url: Option<String>,
    pub http_method: Option<HttpMethod>,
    pub save_response_body: Option<bool>,
    pub log_in_item_history: Option<bool>,
    /// A new secret; it must fit the (new) signature scheme.
    pub secret: Option<String>,
    pub signature_scheme: Option<SignatureScheme>,
    pub expiration: Option<i32>,
    pub use_cra_challenge: Option<bool>,
    pub use_oauth: Option<bool>,
    pub oauth_url: MaybeUndefined<String>,
    pub client_id: MaybeUndefined<String>,
    pub client_secret: MaybeUndefined<String>,
    pub use_default_payload: Option<bool>,
    pub payload: MaybeUndefined<String>,
    /// The whole set of custom headers (as in WebhookInput). `(hidden)` for a credential
    /// header keeps its stored value; when the url moves to another scheme, host or port (or
    /// one known only when rendered), every stored credential header must be given again or
    /// left out, and likewise clientSecret when oauthUrl moves.
    pub custom_headers: MaybeUndefined<Json<Value>>,
    /// 1 to 10000 sends started a second; null removes the limit.
    pub max_per_second: MaybeUndefined<i32>,
    /// Send the deliveries of one item one at a time, in event order (see `Webhook.ordered`);
    /// it applies to the rows queued once it is on.
    pub ordered: Option<bool>,
    /// Seconds `update` deliveries wait before their first send, 0 to 3600 (0: no
    /// coalescing); it applies to the rows queued from then on.
    pub coalesce_seconds: Option<i32>,
}

/// An optional input value as a patch value: omitted stays omitted.
fn given<T>(value: Option<T>) -> MaybeUndefined<T> {
    value.map_or(MaybeUndefined::Undefined, MaybeUndefined::Value)
}

fn maybe<T>(value: MaybeUndefined<T>) -> Option<Option<T>> {
    match value {
        MaybeUndefined::Undefined => None,
        MaybeUndefined::Null => Some(None),
        MaybeUndefined::Value(v) => Some(Some(v)),
    }
}

impl WebhookPatch {
    fn into_changes(self) -> AppResult<(WebhookChanges, SecretChanges)> {
        let category_id = match maybe(self.category_id) {
            Some(Some(id)) => Some(Some(numeric_id(&id, "categoryId")?)),
            Some(None) => Some(None),
            None => None,
        };
        let changes = WebhookChanges {
            name: self.name,
            comment: maybe(self.comment),
            is_active: self.is_active,
            category_id,
            entity_id: self.entity_id.map(|id| numeric_id(&id, "entityId")).transpose()?,
            is_recursive: self.is_recursive,
            itemtype: self.itemtype,
            event: self.event,
            sent_try: self.sent_try,
            url: self.url,
            http_method: self.http_method,
            save_response_body: self.save_response_body,
            log_in_item_history: self.log_in_item_history,
            signature_scheme: self.signature_scheme,
            expiration: self.expiration,
            use_cra_challenge: self.use_cra_challenge,
            use_oauth: self.use_oauth,
            oauth_url: maybe(self.oauth_url),
            client_id: maybe(self.client_id),
            use_default_payload: self.use_default_payload,
            payload: maybe(self.payload),
            custom_headers: maybe(self.custom_headers).map(|h| h.map_or(Value::Null, |j| j.0)),
            max_per_second: maybe(self.max_per_second),
            ordered: self.ordered,
            coalesce_seconds: self.coalesce_seconds,
        };
        Ok((changes, SecretChanges { secret: self.secret, client_secret: maybe(self.client_secret) }))
    }
}

impl WebhookInput {
    /// The defaults with the required fields, and the optional fields as changes to them.
    fn into_parts(self) -> AppResult<(WebhookSettings, WebhookChanges, SecretChanges)> {
        let base = WebhookSettings::defaults(
            self.name,
            numeric_id(&self.entity_id, "entityId")?,
            self.itemtype,
            self.event,
            self.url,
        );
        let patch = WebhookPatch {
            name: None,
            comment: given(self.comment),
            is_active: self.is_active,
            category_id: given(self.category_id),
            entity_id: None,
            is_recursive: self.is_recursive,
            itemtype: None,
            event: None,
            sent_try: self.sent_try,
            url: None,
            http_method: self.http_method,
            save_response_body: self.save_response_body,
            log_in_item_history: self.log_in_item_history,
            secret: self.secret,
            signature_scheme: self.signature_scheme,
            expiration: self.expiration,
            use_cra_challenge: self.use_cra_challenge,
            use_oauth: self.use_oauth,
            oauth_url: given(self.oauth_url),
            client_id: given(self.client_id),
            client_secret: given(self.client_secret),
            use_default_payload: self.use_default_payload,
            payload: given(self.payload),
            custom_headers: given(self.custom_headers),
            max_per_second: given(self.max_per_second),
            ordered: self.ordered,
            coalesce_seconds: self.coalesce_seconds,
        };
        let (changes, secrets) = patch.into_changes()?;
        Ok((base, changes, secrets))
    }
}

/// The secret fields an input sets (their values are never written to the audit log).
fn secret_fields(secrets: &SecretChanges) -> Vec<&'static str> {
    let mut fields = Vec::new();
    if secrets.secret.is_some() {
        fields.push("secret");
    }
    if secrets.client_secret.is_some() {
        fields.push("clientSecret");
    }
    fields
}

/// The webhook, when its entity is in the caller's scope.
pub async fn visible_webhook(s: &Session<'_>, id: i64) -> AppResult<Option<webhooks::Webhook>> {
    match webhooks::get(&s.state.db, id).await? {
        Some(webhook) if s.sees(webhook.settings.entity_id).await? => Ok(Some(webhook)),
        _ => Ok(None),
    }
}

/// Refuses to act on a webhook outside the caller's scope as if it did not exist (a missing
/// one is left for the action itself to refuse).
pub async fn webhook_in_reach(s: &Session<'_>, id: i64) -> AppResult<()> {
    if s.unscoped() {
        return Ok(());
    }
    match webhooks::get(&s.state.db, id).await? {
        Some(webhook) if !s.sees(webhook.settings.entity_id).await? => {
            Err(AppError::not_found(format!("no webhook with id {id}")))
        }
        _ => Ok(()),
    }
}

#[derive(Default)]
pub struct WebhookQuery;

#[Object]
impl WebhookQuery {
    async fn webhook(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Webhook>> {
        let s = session(ctx)?;
        Ok(visible_webhook(&s, numeric_id(&id, "id")?).await?.map(Webhook))
    }

    /// Webhooks by id; `entityId` and `categoryId` include their descendants.
    #[graphql(complexity = "super::paging::page_cost(first, child_complexity)")]
    async fn webhooks(
        &self,
        ctx: &Context<'_>,
        itemtype: Option<String>,
        entity_id: Option<ID>,
        category_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Paged<Webhook>> {
        let s = session(ctx)?;
        let entity_id = entity_id.map(|id| numeric_id(&id, "entityId")).transpose()?;
        let category_id = category_id.map(|id| numeric_id(&id, "categoryId")).transpose()?;
        let request = page_request(first, after)?;
        let within = s.scope_ids().await?;
        let filter = webhooks::WebhookFilter {
            itemtype: itemtype.as_deref(),
            entity_id,
            category_id,
            within: within.as_deref(),
        };
        let page = webhooks::list(&s.state.db, filter, request).await?;
        Ok(connection(page, request.after.is_some(), Webhook))
    }
}

#[derive(Default)]
pub struct WebhookMutation;

#[Object]
impl WebhookMutation {
    async fn create_webhook(&self, ctx: &Context<'_>, input: WebhookInput) -> Result<Webhook> {
        let s = session(ctx)?;
        let (base, changes, secrets) = input.into_parts()?;
        s.entity_input(base.entity_id, "entityId").await?;
        let config = s.state.config();
        let secret_fields = secret_fields(&secrets);
        let created =
            webhooks::create(&s.state.db, &s.state.secrets, config.templates, &config.targets, base, changes, secrets)
                .await?;
        let mut change = Change::new("Webhook", created.id, "create")
            .in_entity(created.settings.entity_id)
            .fields(&Map::new(), &audit::webhook_view(&created));
        for field in secret_fields {
            change = change.secret(field);
        }
        s.audit(change).await;
        Ok(Webhook(created))
    }

    async fn update_webhook(&self, ctx: &Context<'_>, id: ID, input: WebhookPatch) -> Result<Webhook> {
        let s = session(ctx)?;
        let (changes, secrets) = input.into_changes()?;
        let config = s.state.config();
        let id = numeric_id(&id, "id")?;
        webhook_in_reach(&s, id).await?;
        if let Some(entity_id) = changes.entity_id {
            s.entity_input(entity_id, "entityId").await?;
        }
        let before = webhooks::get(&s.state.db, id).await?;
        let secret_fields = secret_fields(&secrets);
        let updated = webhooks::update(
            &s.state.db,
            &s.state.queue,
            &s.state.secrets,
            config.templates,
            &config.targets,
            id,
            changes,
            secrets,
        )
        .await?;
        let before = before.as_ref().map(audit::webhook_view).unwrap_or_default();
        let mut change = Change::new("Webhook", id, "update")
            .in_entity(updated.settings.entity_id)
            .fields(&before, &audit::webhook_view(&updated));
        for field in secret_fields {
            change = change.secret(field);
        }
        s.audit(change).await;
        Ok(Webhook(updated))
    }

    /// Deletes the webhook and its history.
    async fn delete_webhook(&self, ctx: &Context<'_>, id: ID) -> Result<bool> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        webhook_in_reach(&s, id).await?;
        let before = webhooks::get(&s.state.db, id).await?;
        webhooks::delete(&s.state.db, id).await?;
        if let Some(before) = before {
            let change = Change::new("Webhook", id, "delete")
                .in_entity(before.settings.entity_id)
                .fields(&audit::webhook_view(&before), &Map::new());
            s.audit(change).await;
        }
        Ok(true)
    }

    /// Runs the challenge–response (CRA) against the webhook's URL now, whether or not
    /// `useCraChallenge` is on: `GET <url>?crc_token=<64 hex digits>` must answer 200 with the
    /// hex HMAC-SHA256 of the token, keyed with the secret's bytes for GLPI and with
    /// HMAC-SHA256(decoded whsec_ key, "hookline-cra-v1") for STANDARD_WEBHOOKS and BOTH (so
    /// that an answer is never a signature). A templated URL is rendered for
    /// `itemId` (default: the newest stored item). A success is cached like those of sends.
    async fn validate_cra_challenge(
        &self,
        ctx: &Context<'_>,
        webhook_id: ID,
        item_id: Option<ID>,
    ) -> Result<CraResult> {
        let s = session(ctx)?;
        let id = numeric_id(&webhook_id, "webhookId")?;
        webhook_in_reach(&s, id).await?;
        if let Some(item_id) = &item_id {
            // The URL rendered for an item outside the scope would carry its data out.
            super::preview::preview_in_reach(&s, id, item_id).await?;
        }
        let pipeline = &s.state.delivery;
        let within = s.scope_ids().await?;
        let url = preview::challenge_url(
            &s.state.db,
            &s.state.secrets,
            pipeline.config.templates,
            id,
            item_id.as_ref().map(|id| id.as_str()),
            within.as_deref(),
        )
        .await?;
        let signer = pipeline
            .signers
            .for_webhooks(&s.state.db, &pipeline.secrets, &[id])
            .await?
            .remove(&id)
            .ok_or_else(|| AppError::not_found(format!("no webhook with id `{id}`")))?;
        let result = challenge(&pipeline.http, &url, signer.scheme, &signer.secret).await;
        if result.valid {
            pipeline.challenges.remember(id, signer.version, &url);
        }
        Ok(result)
    }

    /// Replaces the secret with a new random one that fits the signature scheme and returns
    /// it: the only time a secret is shown. For `keepPreviousSeconds` (0 to 604800, 7 days;
    /// null: 0) every attempt is also signed with the replaced secret, so that receivers
    /// switch without a gap: `webhook-signature` holds both `v1,` signatures (the new one
    /// first), and GLPI's signature with the replaced secret goes in
    /// `X-GLPI-signature-previous`. 0 ends any overlap at once; so does a new `secret` or
    /// `signatureScheme` given to `updateWebhook`. The replaced secret is never shown.
    async fn regenerate_webhook_secret(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(default_with = "Some(0)")] keep_previous_seconds: Option<i32>,
    ) -> Result<String> {
        let s = session(ctx)?;
        let id = numeric_id(&id, "id")?;
        webhook_in_reach(&s, id).await?;
        let keep = i64::from(keep_previous_seconds.unwrap_or(0));
        let secret = webhooks::regenerate_secret(&s.state.db, &s.state.secrets, id, keep).await?;
        if let Some(webhook) = webhooks::get(&s.state.db, id).await? {
            s.audit(
                Change::new("Webhook", id, "regenerateSecret").in_entity(webhook.settings.entity_id).secret("secret"),
            )
            .await;
        }
        Ok(secret)
    }
}
