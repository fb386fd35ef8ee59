//! What a webhook needs before its request goes out: a validated challenge–response (CRA) and
//! an OAuth 2 access token (client credentials), each cached instead of being redone for every
//! request.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use rand::RngCore;
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use super::HttpSender;
use crate::{
    domain::{
        signing::{hex, same},
        webhook::SignatureScheme,
    },
    verify::cra_answer,
};

/// The OAuth client of a webhook.
pub struct OAuthClient {
    pub token_url: String,
    pub client_id: String,
    pub client_secret: SecretString,
}

impl std::fmt::Debug for OAuthClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuthClient")
            .field("token_url", &self.token_url)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// The result of a challenge, as `validateCraChallenge` returns it.
#[derive(Debug, Clone, PartialEq, async_graphql::SimpleObject)]
#[graphql(name = "CraResult")]
pub struct CraResult {
    pub valid: bool,
    pub message: String,
    /// The target's HTTP status; null when it did not answer.
    pub status_code: Option<i32>,
}

fn random_token() -> String {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    hex(&bytes)
}

/// Sends one challenge: `GET <url>?crc_token=<random token of 64 hex digits>` must answer 200
/// with the hex HMAC-SHA256 of the token, keyed as [`cra_answer`] says for the webhook's
/// signature scheme (surrounding whitespace ignored). Counted in
/// `hookline_cra_challenges_total`.
pub async fn challenge(http: &HttpSender, url: &str, scheme: SignatureScheme, secret: &SecretString) -> CraResult {
    let result = run_challenge(http, url, scheme, secret).await;
    http.metrics.cra_challenges.count(result.valid);
    result
}

async fn run_challenge(http: &HttpSender, url: &str, scheme: SignatureScheme, secret: &SecretString) -> CraResult {
    let failed = |message: String, status_code| CraResult { valid: false, message, status_code };
    let mut target = match url::Url::parse(url.trim()) {
        Ok(target) => target,
        Err(err) => return failed(format!("challenge–response failed: the URL `{url}` is not valid: {err}"), None),
    };
    let token = random_token();
    let kept: Vec<(String, String)> =
        target.query_pairs().filter(|(k, _)| k != "crc_token").map(|(k, v)| (k.into_owned(), v.into_owned())).collect();
    target.query_pairs_mut().clear().extend_pairs(kept).append_pair("crc_token", &token);
    match http.get(target).await {
        Err(error) => failed(format!("challenge–response failed: {error}"), None),
        Ok((200, body)) => {
            let expected = match cra_answer(scheme, secret.expose_secret(), &token) {
                Ok(expected) => expected,
                Err(err) => return failed(format!("challenge–response failed: {err}"), None),
            };
            if same(body.trim().as_bytes(), expected.as_bytes()) {
                CraResult { valid: true, message: "challenge–response validated".into(), status_code: Some(200) }
            } else {
                failed(
                    "challenge–response failed: the answer returned by the target is not the HMAC of the token".into(),
                    Some(200),
                )
            }
        }
        Ok((status, _)) => failed(
            format!("challenge–response failed: the target answered HTTP {status} instead of 200"),
            Some(i32::from(status)),
        ),
    }
}

/// The last run of a gate: when it ended and what it gave.
type LastRun<T> = Arc<tokio::sync::Mutex<Option<(Instant, T)>>>;

/// One run at a time per key (a challenge, a token request). Those who waited for a run take
/// its result, success or failure, instead of running again: a burst of deliveries to a
/// failing endpoint costs one request, not one per delivery in turn.
struct Gates<K, T> {
    gates: Mutex<HashMap<K, LastRun<T>>>,
}

impl<K, T> Default for Gates<K, T> {
    fn default() -> Self {
        Self { gates: Mutex::new(HashMap::new()) }
    }
}

impl<K: std::hash::Hash + Eq, T: Clone> Gates<K, T> {
    /// `cached()` when it has a result once the gate is ours; else the result of a run that
    /// ended while we waited; else `run`'s.
    async fn run(&self, key: K, cached: impl Fn() -> Option<T>, run: impl Future<Output = T>) -> T {
        let waited_from = Instant::now();
        let gate = {
            let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
            if gates.len() > 10_000 {
                gates.retain(|_, gate| Arc::strong_count(gate) > 1);
            }
            gates.entry(key).or_default().clone()
        };
        let mut last = gate.lock().await;
        if let Some(result) = cached() {
            return result;
        }
        if let Some((ended, result)) = last.as_ref()
            && *ended >= waited_from
        {
            return result.clone();
        }
        let result = run.await;
        *last = Some((Instant::now(), result.clone()));
        result
    }
}

/// When a webhook (at a version) passed a challenge, by webhook and URL.
type Validated = HashMap<(i64, String), (DateTime<Utc>, Instant)>;

/// Successful challenges by webhook and URL, kept for a while. One challenge per webhook
/// version and URL runs at a time.
pub struct ChallengeCache {
    ttl: Duration,
    validated: Mutex<Validated>,
    running: Gates<(i64, DateTime<Utc>, String), Result<(), String>>,
}

impl ChallengeCache {
    pub fn new(ttl: Duration) -> Self {
        Self { ttl, validated: Mutex::new(HashMap::new()), running: Gates::default() }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Validated> {
        self.validated.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether `url` of the webhook (at `version`) passed a challenge less than the TTL ago.
    pub fn is_valid(&self, webhook_id: i64, version: DateTime<Utc>, url: &str) -> bool {
        self.lock()
            .get(&(webhook_id, url.to_owned()))
            .is_some_and(|(at_version, at)| *at_version == version && at.elapsed() < self.ttl)
    }

    pub fn remember(&self, webhook_id: i64, version: DateTime<Utc>, url: &str) {
        let mut validated = self.lock();
        if validated.len() > 100_000 {
            let ttl = self.ttl;
            validated.retain(|_, (_, at)| at.elapsed() < ttl);
        }
        validated.insert((webhook_id, url.to_owned()), (version, Instant::now()));
    }

    /// Challenges unless a recent success is cached; a success is cached.
    pub async fn ensure(
        &self,
        http: &HttpSender,
        webhook_id: i64,
        version: DateTime<Utc>,
        url: &str,
        scheme: SignatureScheme,
        secret: &SecretString,
    ) -> Result<(), String> {
        if self.is_valid(webhook_id, version, url) {
            return Ok(());
        }
        let key = (webhook_id, version, url.to_owned());
        let cached = || self.is_valid(webhook_id, version, url).then_some(Ok(()));
        let run = async {
            let outcome = challenge(http, url, scheme, secret).await;
            if outcome.valid {
                self.remember(webhook_id, version, url);
                Ok(())
            } else {
                Err(outcome.message)
            }
        };
        self.running.run(key, cached, run).await
    }
}

/// An access token and when to stop using it.
#[derive(Clone)]
struct Token {
    value: SecretString,
    version: DateTime<Utc>,
    until: Instant,
}

/// Access tokens by webhook. A valid token is read without waiting; when it must be fetched,
/// one request per webhook does it while the others wait for its result, so a burst of
/// deliveries costs one token request.
#[derive(Default)]
pub struct TokenCache {
    tokens: Mutex<HashMap<i64, Token>>,
    fetching: Gates<(i64, DateTime<Utc>), Result<SecretString, String>>,
}

/// How long a token without `expires_in` or a JWT `exp` is used.
const DEFAULT_TOKEN_LIFETIME: Duration = Duration::from_secs(300);
/// The longest a token is used, whatever it says.
const MAX_TOKEN_LIFETIME: Duration = Duration::from_secs(86_400);

#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<String>,
    expires_in: Option<serde_json::Value>,
    error: Option<String>,
    error_description: Option<String>,
}

impl TokenCache {
    /// The cached token of the webhook, if it is still good and not `rejected`.
    fn cached(&self, webhook_id: i64, version: DateTime<Utc>, rejected: Option<&SecretString>) -> Option<SecretString> {
        let tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        let token = tokens.get(&webhook_id)?;
        let usable = token.version == version
            && token.until > Instant::now()
            && rejected.is_none_or(|r| r.expose_secret() != token.value.expose_secret());
        usable.then(|| token.value.clone())
    }

    /// A token for the webhook: the cached one unless it expired, its webhook changed, or it
    /// is `rejected` (the target answered 401 with it).
    pub async fn token(
        &self,
        http: &HttpSender,
        webhook_id: i64,
        version: DateTime<Utc>,
        client: &OAuthClient,
        rejected: Option<&SecretString>,
    ) -> Result<SecretString, String> {
        if let Some(token) = self.cached(webhook_id, version, rejected) {
            return Ok(token);
        }
        let cached = || self.cached(webhook_id, version, rejected).map(Ok);
        let fetch = async {
            let requested = request_token(http, client).await;
            http.metrics.oauth_token_requests.count(requested.is_ok());
            let (value, lifetime) = requested?;
            let usable = lifetime.saturating_sub((lifetime / 5).min(Duration::from_secs(30)));
            let until = Instant::now().checked_add(usable).unwrap_or_else(|| Instant::now() + MAX_TOKEN_LIFETIME);
            let token = Token { value: value.clone(), version, until };
            self.tokens.lock().unwrap_or_else(|p| p.into_inner()).insert(webhook_id, token);
            Ok(value)
        };
        self.fetching.run((webhook_id, version), cached, fetch).await
    }
}

/// POSTs `grant_type=client_credentials` with the client id and secret to the token URL.
async fn request_token(http: &HttpSender, client: &OAuthClient) -> Result<(SecretString, Duration), String> {
    let url = url::Url::parse(&client.token_url).map_err(|e| format!("OAuth: the token URL is not valid: {e}"))?;
    // Shown in errors without any user or password it carries.
    let shown = {
        let mut shown = url.clone();
        shown.set_username("").ok();
        shown.set_password(None).ok();
        shown.to_string()
    };
    let form = [
        ("grant_type", "client_credentials"),
        ("client_id", client.client_id.as_str()),
        ("client_secret", client.client_secret.expose_secret()),
    ];
    let (status, body) =
        http.post_form(url, &form).await.map_err(|e| format!("OAuth: token request to {} failed: {e}", shown))?;
    let parsed: Option<TokenResponse> = serde_json::from_str(&body).ok();
    if !(200..300).contains(&status) {
        let reason = parsed
            .and_then(|p| {
                p.error.map(|e| format!("{e}{}", p.error_description.map(|d| format!(": {d}")).unwrap_or_default()))
            })
            .unwrap_or_default();
        return Err(format!("OAuth: the token endpoint {} answered HTTP {status} {reason}", shown)
            .trim_end()
            .to_owned());
    }
    let Some(response) = parsed else {
        return Err(format!("OAuth: the token endpoint {} did not answer a JSON token response", shown));
    };
    let Some(token) = response.access_token.filter(|t| !t.is_empty()) else {
        return Err(format!("OAuth: the token endpoint {} answered without an access_token", shown));
    };
    let expires_in = match response.expires_in {
        Some(serde_json::Value::Number(n)) => n.as_f64(),
        Some(serde_json::Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    };
    let lifetime = match expires_in {
        Some(seconds) if seconds > 0.0 => Duration::from_secs_f64(seconds.min(MAX_TOKEN_LIFETIME.as_secs_f64())),
        _ => jwt_lifetime(&token).unwrap_or(DEFAULT_TOKEN_LIFETIME),
    };
    Ok((SecretString::from(token), lifetime))
}

/// The time left before the `exp` claim of a JWT (not verified: only its expiry is read).
fn jwt_lifetime(token: &str) -> Option<Duration> {
    let mut parts = token.split('.');
    let (_header, claims, _signature) = (parts.next()?, parts.next()?, parts.next()?);
    let claims: serde_json::Value =
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims.trim_end_matches('=')).ok()?).ok()?;
    let exp = claims.get("exp")?.as_f64()?;
    let left = exp - Utc::now().timestamp() as f64;
    Some(Duration::from_secs_f64(left.clamp(0.0, MAX_TOKEN_LIFETIME.as_secs_f64())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_jwt_lifetime_comes_from_its_exp_claim() {
        let claims = URL_SAFE_NO_PAD.encode(format!("{{\"exp\":{}}}", Utc::now().timestamp() + 120));
        let token = format!("eyJhbGciOiJIUzI1NiJ9.{claims}.c2ln");
        let left = jwt_lifetime(&token).expect("a lifetime");
        assert!(left > Duration::from_secs(110) && left <= Duration::from_secs(120), "{left:?}");
        assert_eq!(jwt_lifetime("opaque-token"), None);
        let far = format!("eyJhbGciOiJIUzI1NiJ9.{}.c2ln", URL_SAFE_NO_PAD.encode("{\"exp\":1e20}"));
        assert_eq!(jwt_lifetime(&far), Some(MAX_TOKEN_LIFETIME), "capped, not a panic");
    }
}
