//! The OTLP exporter's HTTP client: hookline's own reqwest (no second HTTP stack), run on the
//! Tokio runtime. The SDK's batch processor exports from a thread of its own, outside the
//! runtime, so each request is spawned onto the runtime and its result awaited there.

use std::{future::Future, pin::Pin, time::Duration};

use opentelemetry_http::{Bytes, HttpClient, HttpError, Request, Response};

/// Most bytes of a collector's answer that are read (it only says what it rejected).
const MAX_ANSWER: usize = 1024 * 1024;

#[derive(Debug)]
pub struct Client {
    http: reqwest::Client,
    runtime: tokio::runtime::Handle,
}

impl Client {
    pub fn new(runtime: tokio::runtime::Handle, timeout: Duration) -> Result<Self, reqwest::Error> {
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(timeout)
            .connect_timeout(timeout)
            .build()?;
        Ok(Self { http, runtime })
    }
}

async fn exchange(http: reqwest::Client, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
    let request = reqwest::Request::try_from(request)?;
    let mut response = http.execute(request).await?;
    let mut answer = Response::builder().status(response.status());
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        body.extend_from_slice(&chunk[..chunk.len().min(MAX_ANSWER - body.len())]);
        if body.len() >= MAX_ANSWER {
            break;
        }
    }
    if let Some(headers) = answer.headers_mut() {
        *headers = std::mem::take(response.headers_mut());
    }
    Ok(answer.body(Bytes::from(body))?)
}

// `HttpClient` is an `async_trait`; this is the signature that macro writes.
impl HttpClient for Client {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: Request<Bytes>,
    ) -> Pin<Box<dyn Future<Output = Result<Response<Bytes>, HttpError>> + Send + 'async_trait>>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let task = self.runtime.spawn(exchange(self.http.clone(), request));
        Box::pin(async move { task.await.map_err(|e| format!("the export request did not finish: {e}"))? })
    }
}
