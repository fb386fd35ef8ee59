//! What the workers and the API share about sending: one HTTP client, the signers, the CRA
//! and OAuth caches, and one attempt of a claimed row.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use chrono::{DateTime, Utc};
use entity::webhooks;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use secrecy::ExposeSecret;

use super::{ChallengeCache, Exchange, HttpSender, OAuthClient, PreparedRequest, Signer, TokenCache, prepare};
use crate::{
    config::DeliveryConfig,
    domain::{
        headers::{HIDDEN, shown_exchange_headers},
        outcome::{AttemptClass, AttemptResult, Decision, decide},
        webhook::SignatureScheme,
    },
    error::{AppError, AppResult},
    metrics::Metrics,
    queue::{AttemptRecord, Outcome},
    secret_box::{Purpose, SecretBox},
    telemetry::{self, RemoteParent},
};
use tracing::{Instrument, field::Empty};

/// What the workers and the API share about sending: the configuration, the HTTP client and
/// the caches of signers, challenges and tokens.
pub struct DeliveryClient {
    /// Where the webhooks (their secrets and versions) are read.
    db: DatabaseConnection,
    pub config: DeliveryConfig,
    /// Opens the credential headers stored in queued webhooks.
    pub secrets: SecretBox,
    pub http: HttpSender,
    pub signers: SignerCache,
    /// Successful challenge–responses, per webhook and URL.
    pub challenges: ChallengeCache,
    /// OAuth access tokens, per webhook.
    pub tokens: TokenCache,
}

impl std::fmt::Debug for DeliveryClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryClient").field("config", &self.config).finish_non_exhaustive()
    }
}

impl DeliveryClient {
    pub fn new(
        db: DatabaseConnection,
        config: DeliveryConfig,
        secrets: SecretBox,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        let http = HttpSender::new(
            config.http_timeout,
            config.max_per_host,
            config.max_response_body,
            config.targets.clone(),
            metrics,
        )?;
        let challenges = ChallengeCache::new(config.cra_cache);
        Ok(Self {
            db,
            config,
            secrets,
            http,
            signers: SignerCache::default(),
            challenges,
            tokens: TokenCache::default(),
        })
    }

    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// How long a claimed row belongs to its worker: its longest attempt, plus waiting for a
    /// host slot behind every other attempt before each of its (at most two) requests.
    pub fn lease(&self) -> Duration {
        let host_wait = self.config.http_timeout * (self.config.max_in_flight / self.config.max_per_host) as u32;
        self.longest_attempt() + host_wait * 2
    }

    /// The longest one started attempt can take: a challenge, a token request, the request,
    /// and the request again with a new token after a 401, each within the timeout.
    pub fn longest_attempt(&self) -> Duration {
        self.config.http_timeout * 4 + Duration::from_secs(5)
    }

    /// Makes one attempt of a claimed row and decides what follows, in a span of its own: a
    /// child of the event that queued the row (its stored `traceparent`), named in the
    /// `traceparent` the request carries. A webhook with CRA is challenged first (unless a
    /// recent success is cached); a failed challenge is not an attempt: the row waits for its
    /// next scheduled retry time, until the schedule's window is spent.
    pub async fn attempt(&self, row: entity::queued_webhooks::Model, signer: &Signer) -> Outcome {
        let parent = row.traceparent.as_deref().and_then(RemoteParent::parse);
        let span = attempt_span(&row);
        if let Some(parent) = &parent {
            telemetry::continue_trace(&span, parent);
        }
        let traceparent = telemetry::traceparent(&span, parent.as_ref());
        let started = std::time::Instant::now();
        let outcome = self.attempt_in(row, signer, &traceparent).instrument(span.clone()).await;
        span.record("duration_ms", started.elapsed().as_millis() as u64);
        if let AttemptResult::Response { status, .. } = &outcome.result {
            span.record("status_code", status);
        }
        let decided = match &outcome.decision {
            Decision::Sent => "sent",
            Decision::Retry { .. } => "retry",
            Decision::Failed { .. } => "failed",
        };
        span.record("outcome", decided);
        if decided != "sent" {
            span.record("otel.status_code", "ERROR");
        }
        tracing::debug!(parent: &span, outcome = decided, "attempt made");
        outcome
    }

    async fn attempt_in(&self, row: entity::queued_webhooks::Model, signer: &Signer, traceparent: &str) -> Outcome {
        let attempted_at = Utc::now();
        if signer.cra
            && let Err(error) = self
                .challenges
                .ensure(&self.http, row.webhook_id, signer.version, &row.url, signer.scheme, &signer.secret)
                .await
        {
            let elapsed = (attempted_at - row.create_time).to_std().unwrap_or_default();
            let retries = (row.max_attempts - 1).max(0) as u32;
            let decision = match self.config.retry.next_scheduled(elapsed, retries) {
                Some(delay) => Decision::Retry { delay, error: format!("{error} (not counted as an attempt)") },
                None => Decision::Failed {
                    error: format!("{error}; the retry schedule's window is spent"),
                    deactivate_webhook: false,
                },
            };
            let result = AttemptResult::NoResponse { error };
            return Outcome { row, attempted_at, result, decision, counted: false, attempt: None };
        }
        let (exchange, sent_headers) = match prepare(&row, signer, &self.secrets, attempted_at.timestamp(), traceparent)
        {
            Ok(request) => {
                let mut sent_headers = request.headers.clone();
                if signer.oauth.is_some() {
                    sent_headers.push(("Authorization".into(), HIDDEN.into()));
                }
                (self.send_authorized(request, signer).await, sent_headers)
            }
            Err(error) => (Exchange::not_made(error, AttemptClass::Connect), Vec::new()),
        };
        let Exchange { result, class, took, response_headers } = exchange;
        let decision = decide(&result, row.sent_try.saturating_add(1), row.max_attempts, &self.config.retry);
        // From the item write (when its rows were queued) to this 2xx.
        let latency = (decision == Decision::Sent).then(|| (Utc::now() - row.create_time).to_std().unwrap_or_default());
        self.http.metrics.attempt(row.webhook_id, &decision, class, took, latency);
        let answered = matches!(result, AttemptResult::Response { .. });
        let attempt = AttemptRecord {
            started_at: attempted_at,
            duration_ms: i64::try_from(took.as_millis()).unwrap_or(i64::MAX),
            method: row.http_method.clone(),
            url: row.url.clone(),
            request_headers: shown_exchange_headers(&sent_headers),
            response_headers: answered.then(|| shown_exchange_headers(&response_headers)),
        };
        Outcome { row, attempted_at, result, decision, counted: true, attempt: Some(attempt) }
    }

    /// Sends a request, with an OAuth access token when the webhook has a client; when the
    /// target answers 401, the token is refreshed once and the request sent again (the
    /// exchange's time is then both requests').
    async fn send_authorized(&self, request: PreparedRequest, signer: &Signer) -> Exchange {
        let Some(client) = &signer.oauth else {
            return self.http.send(request).await;
        };
        let mut rejected = None;
        let mut before = Duration::ZERO;
        loop {
            let token =
                match self.tokens.token(&self.http, signer.webhook_id, signer.version, client, rejected.as_ref()).await
                {
                    Ok(token) => token,
                    Err(error) => return Exchange { took: before, ..Exchange::not_made(error, AttemptClass::Connect) },
                };
            let mut authorized = request.clone();
            authorized.headers.retain(|(name, _)| !name.eq_ignore_ascii_case("authorization"));
            authorized.headers.push(("Authorization".into(), format!("Bearer {}", token.expose_secret())));
            let mut exchange = self.http.send(authorized).await;
            exchange.took += before;
            match exchange.result {
                AttemptResult::Response { status: 401, .. } if rejected.is_none() => {
                    rejected = Some(token);
                    before = exchange.took;
                }
                _ => return exchange,
            }
        }
    }
}

/// The span of one attempt: which row, webhook and delivery, to which host; its status code,
/// duration and outcome are recorded when it ends. Never a header, body or URL (they may
/// carry credentials).
fn attempt_span(row: &entity::queued_webhooks::Model) -> tracing::Span {
    let host = target_host(&row.url);
    tracing::info_span!(
        telemetry::ATTEMPT_SPAN,
        otel.name = %format_args!("{} {host}", row.http_method),
        otel.kind = "client",
        queued_webhook_id = row.id,
        webhook_id = row.webhook_id,
        delivery_id = %row.delivery_id,
        target_host = %host,
        attempt = row.sent_try + 1,
        status_code = Empty,
        duration_ms = Empty,
        outcome = Empty,
        otel.status_code = Empty,
    )
}

/// The host a target URL names, as a span shows it: between `//` (and any credentials) and
/// the port or path. Read without parsing the URL (every attempt's span needs it, and the
/// request parses the URL anyway); empty when there is none.
fn target_host(url: &str) -> &str {
    let rest = url.trim().split_once("//").map_or("", |(_, rest)| rest);
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host = authority.rsplit_once('@').map_or(authority, |(_, host)| host);
    if host.starts_with('[') {
        return host.split_once(']').map_or(host, |(v6, _)| &host[..v6.len() + 1]);
    }
    host.split(':').next().unwrap_or_default()
}

/// A webhook's signer and the `updated_at` of the webhook it was made from.
type VersionedSigner = (DateTime<Utc>, Arc<Signer>);

/// Decrypted signing secrets by webhook, reused while the webhook is unchanged.
#[derive(Default)]
pub struct SignerCache {
    entries: Mutex<HashMap<i64, VersionedSigner>>,
}

impl SignerCache {
    /// The signers of the given webhooks; a webhook that no longer exists is absent. Only the
    /// webhooks' versions are read, and the whole rows of those whose signer is not cached at
    /// its version.
    pub async fn for_webhooks(
        &self,
        db: &DatabaseConnection,
        secrets: &SecretBox,
        ids: &[i64],
    ) -> AppResult<HashMap<i64, Arc<Signer>>> {
        let versions: Vec<(i64, DateTime<Utc>)> = webhooks::Entity::find()
            .select_only()
            .column(webhooks::Column::Id)
            .column(webhooks::Column::UpdatedAt)
            .filter(webhooks::Column::Id.is_in(ids.iter().copied()))
            .into_tuple()
            .all(db)
            .await?;
        let mut out = HashMap::with_capacity(versions.len());
        let mut stale = Vec::new();
        {
            let entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            for (id, version) in versions {
                match entries.get(&id).filter(|(at, _)| *at == version) {
                    Some((_, signer)) => {
                        out.insert(id, signer.clone());
                    }
                    None => stale.push(id),
                }
            }
        }
        if stale.is_empty() {
            return Ok(out);
        }
        // Changed since the versions were read: the newer row is the one to sign with.
        let rows = webhooks::Entity::find().filter(webhooks::Column::Id.is_in(stale)).all(db).await?;
        let mut entries = self.entries.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        for row in rows {
            let signer = Arc::new(signer_of(&row, secrets)?);
            entries.insert(row.id, (row.updated_at, signer.clone()));
            out.insert(row.id, signer);
        }
        Ok(out)
    }
}

/// How a webhook row signs: its scheme, its secret opened, its OAuth client.
fn signer_of(row: &webhooks::Model, secrets: &SecretBox) -> AppResult<Signer> {
    let scheme = SignatureScheme::parse(&row.signature_scheme)
        .ok_or_else(|| AppError::internal(format!("webhook {}: unknown signature scheme", row.id)))?;
    let id = row.id.to_string();
    let secret = secrets.open(Purpose::WebhookSecret, &id, &row.secret_encrypted)?;
    let oauth = match (row.use_oauth, &row.oauth_url, &row.client_secret_encrypted) {
        (true, Some(token_url), Some(sealed)) => Some(Arc::new(OAuthClient {
            token_url: token_url.clone(),
            client_id: row.client_id.clone().unwrap_or_default(),
            client_secret: secrets.open(Purpose::OauthClientSecret, &id, sealed)?,
        })),
        _ => None,
    };
    let previous = match (&row.previous_secret_encrypted, row.previous_secret_expires_at) {
        (Some(sealed), Some(until)) if until > Utc::now() => {
            Some((secrets.open(Purpose::PreviousWebhookSecret, &id, sealed)?, until))
        }
        _ => None,
    };
    Ok(Signer {
        webhook_id: row.id,
        version: row.updated_at,
        scheme,
        secret,
        previous,
        cra: row.use_cra_challenge,
        oauth,
    })
}

#[cfg(test)]
mod tests {
    use super::target_host;

    #[test]
    fn the_span_names_the_host_of_the_target() {
        assert_eq!(target_host("https://hooks.example.com/glpi?x=1"), "hooks.example.com");
        assert_eq!(target_host(" http://user:pw@receiver.local:8080/in "), "receiver.local");
        assert_eq!(target_host("http://127.0.0.1:9000"), "127.0.0.1");
        assert_eq!(target_host("http://[::1]:9000/x"), "[::1]");
        assert_eq!(target_host("https://example.org#frag"), "example.org");
        assert_eq!(target_host("not a url"), "");
    }
}
