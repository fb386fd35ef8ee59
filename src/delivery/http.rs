//! The shared HTTP client: connection pooling and keep-alive, no redirects, a timeout, a cap on
//! response bodies, and bounded concurrency per target host.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Semaphore;

use super::PreparedRequest;
use crate::domain::{outcome::AttemptResult, retry::parse_retry_after};

pub struct HttpSender {
    client: reqwest::Client,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
    max_per_host: usize,
    max_body: usize,
    timeout: Duration,
}

impl HttpSender {
    pub fn new(timeout: Duration, max_per_host: usize, max_body: usize) -> Result<Self, reqwest::Error> {
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(max_per_host)
            .pool_idle_timeout(Duration::from_secs(90))
            .tcp_nodelay(true)
            .build()?;
        Ok(Self { client, hosts: Mutex::new(HashMap::new()), max_per_host, max_body, timeout })
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
    pub async fn send(&self, request: PreparedRequest) -> AttemptResult {
        let limit = self.host_limit(&request.url);
        let _slot = limit.acquire_owned().await;
        let mut builder = self.client.request(request.method, request.url);
        for (name, value) in &request.headers {
            builder = builder.header(name.as_str(), value.as_str());
        }
        if let Some(body) = request.body {
            builder = builder.body(body);
        }
        let mut response = match builder.send().await {
            Ok(response) => response,
            Err(err) => return AttemptResult::NoResponse { error: self.describe(&err) },
        };
        let status = response.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            response.headers().get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
        };
        let retry_after = header(reqwest::header::RETRY_AFTER).and_then(|v| parse_retry_after(&v, chrono::Utc::now()));
        let location = header(reqwest::header::LOCATION);
        let mut body = Vec::new();
        while let Ok(Some(chunk)) = response.chunk().await {
            let room = self.max_body.saturating_sub(body.len());
            body.extend_from_slice(&chunk[..chunk.len().min(room)]);
            if chunk.len() > room {
                break;
            }
        }
        let body = Some(String::from_utf8_lossy(&body).into_owned());
        AttemptResult::Response { status, body, retry_after, location }
    }

    fn describe(&self, err: &reqwest::Error) -> String {
        if err.is_timeout() {
            return format!("no answer within {:?} (timeout)", self.timeout);
        }
        let mut message = if err.is_connect() { "connection failed".to_owned() } else { "request failed".to_owned() };
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            message.push_str(": ");
            message.push_str(&cause.to_string());
            source = cause.source();
        }
        message
    }
}
