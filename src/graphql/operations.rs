//! Counts GraphQL operations by type and outcome (`hookline_graphql_operations_total`): an
//! operation whose answer carries errors is an `error`. A query or mutation is counted when it
//! is answered (over HTTP or WebSocket), a subscription at its first message, or when it ends
//! without one. A document that does not parse counts as a query (GraphQL's default).

use std::sync::{Arc, Mutex};

use async_graphql::{
    Request, Response, ServerResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest, NextSubscribe,
    },
    futures_util::stream::{BoxStream, StreamExt},
    parser::types::{ExecutableDocument, OperationType},
};

use crate::metrics::Metrics;

/// The extension; registered last, so that it sees the document before the rights guard
/// refuses it.
pub struct Operations(pub Arc<Metrics>);

impl ExtensionFactory for Operations {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(Counting { metrics: self.0.clone(), seen: Arc::default() })
    }
}

/// What one request is: its operation's name, then its type.
#[derive(Default)]
struct Seen {
    name: Option<String>,
    ty: Option<OperationType>,
    parsed: bool,
}

/// The state of one request.
struct Counting {
    metrics: Arc<Metrics>,
    seen: Arc<Mutex<Seen>>,
}

/// Counts an operation once: at its first answer, or when its stream ends without one.
struct Once {
    metrics: Arc<Metrics>,
    seen: Arc<Mutex<Seen>>,
    counted: bool,
}

impl Once {
    fn count(&mut self, ok: bool) {
        if std::mem::replace(&mut self.counted, true) {
            return;
        }
        let seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        if !seen.parsed && ok {
            // Dropped before it ever ran: not an operation.
            return;
        }
        self.metrics.graphql_operation(seen.ty.unwrap_or(OperationType::Query), ok);
    }
}

impl Drop for Once {
    fn drop(&mut self) {
        self.count(true);
    }
}

impl Counting {
    fn once(&self) -> Once {
        Once { metrics: self.metrics.clone(), seen: self.seen.clone(), counted: false }
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Counting {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let mut once = self.once();
        let response = next.run(ctx).await;
        once.count(response.errors.is_empty());
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        let mut once = self.once();
        next.run(ctx, stream)
            .map(move |response| {
                once.count(response.errors.is_empty());
                response
            })
            .boxed()
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        self.seen.lock().unwrap_or_else(|p| p.into_inner()).name.clone_from(&request.operation_name);
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let parsed = next.run(ctx, query, variables).await;
        let mut seen = self.seen.lock().unwrap_or_else(|p| p.into_inner());
        seen.parsed = true;
        if let Ok(document) = &parsed {
            seen.ty = super::traces::operation(document, seen.name.as_deref()).map(|(ty, _)| ty);
        }
        parsed
    }
}
