//! A span per GraphQL operation, over HTTP and WebSocket alike: named after the operation's
//! type and name (`mutation createItem`), continuing the caller's trace when its request sent
//! a `traceparent` ([`RemoteParent`] in the request's data), marked as an error when the
//! response carries errors. The query text and the variables are never recorded: they may
//! hold secrets.

use std::{
    pin::Pin,
    sync::{Arc, Mutex},
    task::{Context, Poll},
};

use async_graphql::{
    Request, Response, ServerResult, Variables,
    extensions::{
        Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest, NextRequest, NextSubscribe,
    },
    futures_util::stream::{BoxStream, Stream},
    parser::types::{DocumentOperations, ExecutableDocument, OperationType},
};
use tracing::{Instrument, Span, field::Empty};

use crate::telemetry::{self, RemoteParent};

pub struct Traces;

impl ExtensionFactory for Traces {
    fn create(&self) -> Arc<dyn Extension> {
        // A root: an operation's parent is the caller's span, if it named one, never whatever
        // span the server happens to run in.
        let span = tracing::info_span!(
            parent: None,
            "graphql",
            otel.name = "graphql",
            otel.kind = "server",
            graphql.operation.type = Empty,
            graphql.operation.name = Empty,
            graphql.errors = Empty,
            otel.status_code = Empty,
        );
        Arc::new(Operation { span, requested: Mutex::new(None) })
    }
}

/// One operation's span, and the operation its request asked for by name.
struct Operation {
    span: Span,
    requested: Mutex<Option<String>>,
}

impl Operation {
    fn continue_caller(&self, parent: Option<&RemoteParent>) {
        if let Some(parent) = parent {
            telemetry::continue_trace(&self.span, parent);
        }
    }
}

#[async_graphql::async_trait::async_trait]
impl Extension for Operation {
    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let response = next.run(ctx).instrument(self.span.clone()).await;
        finished(&self.span, &response);
        response
    }

    fn subscribe<'s>(
        &self,
        ctx: &ExtensionContext<'_>,
        stream: BoxStream<'s, Response>,
        next: NextSubscribe<'_>,
    ) -> BoxStream<'s, Response> {
        Box::pin(InSpan { span: self.span.clone(), stream: next.run(ctx, stream) })
    }

    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        // The request's data (the caller's trace) is not the context's yet: read it here,
        // before the span starts.
        let parent = request.data.get(&std::any::TypeId::of::<RemoteParent>());
        self.continue_caller(parent.and_then(|parent| parent.downcast_ref::<RemoteParent>()));
        *self.requested.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = request.operation_name.clone();
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let document = next.run(ctx, query, variables).await?;
        let requested = self.requested.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if let Some((kind, name)) = operation(&document, requested.as_deref()) {
            let kind = match kind {
                OperationType::Query => "query",
                OperationType::Mutation => "mutation",
                OperationType::Subscription => "subscription",
            };
            self.span.record("graphql.operation.type", kind);
            match name {
                Some(name) => {
                    self.span.record("graphql.operation.name", name);
                    self.span.record("otel.name", format!("{kind} {name}"));
                }
                None => {
                    self.span.record("otel.name", kind);
                }
            }
        }
        Ok(document)
    }
}

/// The type and name of the operation a request runs: the one it names, or its only one.
pub(super) fn operation<'a>(
    document: &'a ExecutableDocument,
    requested: Option<&str>,
) -> Option<(OperationType, Option<&'a str>)> {
    match &document.operations {
        DocumentOperations::Single(operation) => Some((operation.node.ty, None)),
        DocumentOperations::Multiple(operations) => {
            let (name, operation) = match requested {
                Some(requested) => operations.iter().find(|(name, _)| name.as_str() == requested)?,
                None if operations.len() == 1 => operations.iter().next()?,
                None => return None,
            };
            Some((operation.node.ty, Some(name.as_str())))
        }
    }
}

fn finished(span: &Span, response: &Response) {
    if response.is_err() {
        span.record("graphql.errors", response.errors.len());
        span.record("otel.status_code", "ERROR");
    }
}

/// A subscription's (or a WebSocket operation's) responses, produced inside its span.
struct InSpan<'s> {
    span: Span,
    stream: BoxStream<'s, Response>,
}

impl Stream for InSpan<'_> {
    type Item = Response;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Response>> {
        let this = &mut *self;
        let _entered = this.span.enter();
        let next = this.stream.as_mut().poll_next(cx);
        if let Poll::Ready(Some(response)) = &next {
            finished(&this.span, response);
        }
        next
    }
}
