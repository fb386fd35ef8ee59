//! The shared HTTP client: connection pooling and keep-alive, no redirects, no proxy, a
//! timeout, a cap on response bodies, bounded concurrency per target host, and only allowed
//! addresses (checked on literal hosts before sending and on resolved names at connect time).

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Semaphore;

use super::{
    PreparedRequest,
    guard::{GuardedResolver, REFUSED_PREFIX, TargetPolicy},
};
use crate::{
    domain::{
        outcome::{AttemptClass, AttemptResult},
        retry::parse_retry_after,
    },
    metrics::Metrics,
};

pub struct HttpSender {
    client: reqwest::Client,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_per_host: usize,
    max_body: usize,
    timeout: Duration,
    pub policy: Arc<TargetPolicy>,
    /// Sends in flight and waiting for their host; challenges and token requests.
    pub metrics: Arc<Metrics>,
}

/// What one request gave: its result, the class metrics count it in, and the time from its
/// start (its host's slot taken) to its response read (zero when it never went out).
#[derive(Debug, Clone)]
pub struct Exchange {
    pub result: AttemptResult,
    pub class: AttemptClass,
    pub took: Duration,
    /// The answer's headers, at most [`MAX_RESPONSE_HEADERS`] of them, each value capped at
    /// [`MAX_HEADER_VALUE`] bytes (kept with the attempt); empty without an answer.
    pub response_headers: Vec<(String, String)>,
}

/// The most answer headers an attempt keeps.
pub const MAX_RESPONSE_HEADERS: usize = 50;
/// The longest answer header value an attempt keeps, in bytes (longer ones are cut).
pub const MAX_HEADER_VALUE: usize = 1024;

impl Exchange {
    /// A request that was not made: `error` says why.
    pub fn not_made(error: String, class: AttemptClass) -> Self {
        Self { result: AttemptResult::NoResponse { error }, class, took: Duration::ZERO, response_headers: Vec::new() }
    }
}

/// The first headers of an answer, their values capped (see [`Exchange::response_headers`]).
fn kept_headers(headers: &reqwest::header::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .take(MAX_RESPONSE_HEADERS)
        .map(|(name, value)| {
            let text = String::from_utf8_lossy(value.as_bytes());
            let mut end = text.len().min(MAX_HEADER_VALUE);
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            (name.as_str().to_owned(), text[..end].to_owned())
        })
        .collect()
}

impl HttpSender {
    pub fn new(
        timeout: Duration,
        max_per_host: usize,
        max_body: usize,
        policy: TargetPolicy,
        metrics: Arc<Metrics>,
    ) -> Result<Self, reqwest::Error> {
        crate::crypto::install();
        let policy = Arc::new(policy);
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy()
            .dns_resolver(Arc::new(GuardedResolver { policy: policy.clone() }))
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(max_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { client, hosts: Mutex::new(HashMap::new()), max_per_host, max_body, timeout, policy, metrics })
    }

    fn host_limit(&self, url: &url::Url) -> Arc<Semaphore> {
        let key = format!("{}:{}", url.host_str().unwrap_or_default(), url.port_or_known_default().unwrap_or(0));
        let mut hosts = self.hosts.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if hosts.len() > 10_000 {
            // Forget idle hosts so that a stream of distinct hosts cannot grow the map forever.
            hosts.retain(|_, s| s.available_permits() < self.max_per_host);
        }
        hosts.entry(key).or_insert_with(|| Arc::new(Semaphore::new(self.max_per_host))).clone()
    }

    /// Sends one attempt, waiting for a free slot of its host first.
    pub async fn send(&self, request: PreparedRequest) -> Exchange {
        if let Err(error) = self.policy.check_url(&request.url) {
            return Exchange::not_made(error, AttemptClass::Refused);
        }
        let limit = self.host_limit(&request.url);
        let waiting = Metrics::hold(&self.metrics.sends_waiting_for_host);
        let _slot = limit.acquire_owned().await;
        drop(waiting);
        let _in_flight = Metrics::hold(&self.metrics.sends_in_flight);
        let started = std::time::Instant::now();
        let (result, class, response_headers) = self.request(request).await;
        Exchange { result, class, took: started.elapsed(), response_headers }
    }

    /// The request and its answer (or why none came), its class and the answer's headers.
    async fn request(&self, request: PreparedRequest) -> (AttemptResult, AttemptClass, Vec<(String, String)>) {
        let mut builder = self.client.request(request.method, request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(err) => {
                let error = self.describe(&err);
                let class = if err.is_timeout() {
                    AttemptClass::Timeout
                } else if error.starts_with(REFUSED_PREFIX) {
                    AttemptClass::Refused
                } else {
                    AttemptClass::Connect
                };
                return (AttemptResult::NoResponse { error }, class, Vec::new());
            }
        };
        let status = response.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let retry_after = header(reqwest::header::RETRY_AFTER).and_then(|v| parse_retry_after(&v, chrono::Utc::now()));
        let location = header(reqwest::header::LOCATION);
        let headers = kept_headers(response.headers());
        let body = Some(self.read_body(&mut response).await);
        (AttemptResult::Response { status, body, retry_after, location }, AttemptClass::of_status(status), headers)
    }

    /// The body, up to the configured size.
    async fn read_body(&self, response: &mut reqwest::Response) -> String {
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = self.max_body.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                break;
            }
        }
        String::from_utf8_lossy(&body).into_owned()
    }

    /// GETs `url` (a challenge) under the same rules as deliveries: its status and body.
    pub async fn get(&self, url: url::Url) -> Result<(u16, String), String> {
        self.exchange(&url, self.client.get(url.clone())).await
    }

    /// POSTs a form to `url` (a token request) under the same rules as deliveries.
    pub async fn post_form(&self, url: url::Url, form: &[(&str, &str)]) -> Result<(u16, String), String> {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        let builder = self
            .client
            .post(url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(reqwest::header::ACCEPT, "application/json")
            .body(body);
        self.exchange(&url, builder).await
    }

    async fn exchange(&self, url: &url::Url, builder: reqwest::RequestBuilder) -> Result<(u16, String), String> {
        self.policy.check_url(url)?;
        let mut response = builder.send().await.map_err(|err| self.describe(&err))?;
        let status = response.status().as_u16();
        Ok((status, self.read_body(&mut response).await))
    }

    fn describe(&self, err: &reqwest::Error) -> String {
        if err.is_timeout() {
            return format!("no answer within {:?} (timeout)", self.timeout);
        }
        let mut message = if err.is_connect() { "connection failed".to_owned() } else { "request failed".to_owned() };
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            let text = cause.to_string();
            if text.starts_with(REFUSED_PREFIX) {
                // The address guard's refusal says all there is to say.
                return text;
            }
            message.push_str(": ");
            message.push_str(&text);
            source = cause.source();
        }
        message
    }
}
