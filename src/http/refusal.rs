//! Answers to requests refused before GraphQL runs, and the shape of GraphQL answers over HTTP.
//!
//! Every refusal carries a GraphQL body (`{"errors": [{"message", "extensions": {"code"}}]}`)
//! with a one-line message that says what to fix, so that GraphQL clients and `curl` users
//! read the same thing.

use axum::{
    http::{HeaderMap, HeaderValue, StatusCode, header},
    response::{IntoResponse, Response},
};
use serde_json::json;

/// The media type GraphQL over HTTP answers with when the client accepts it.
const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

/// A GraphQL-shaped error answer.
pub fn graphql_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = json!({"errors": [{"message": message, "extensions": {"code": code}}]});
    (status, [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))], body.to_string()).into_response()
}

/// 401: no valid token. `WWW-Authenticate` names the scheme (RFC 6750) and why.
pub fn unauthenticated(reason: &crate::auth::TokenError) -> Response {
    let message = reason.to_string();
    let mut answer = graphql_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", &message);
    let challenge = match reason {
        crate::auth::TokenError::Missing => r#"Bearer realm="hookline""#.to_owned(),
        _ => format!(
            r#"Bearer realm="hookline", error="invalid_token", error_description="{}""#,
            message.replace(['"', '\\'], "'")
        ),
    };
    if let Ok(value) = HeaderValue::from_str(&challenge) {
        answer.headers_mut().insert(header::WWW_AUTHENTICATE, value);
    }
    answer
}

/// 429 with `Retry-After`: an operation refused as a whole, before anything ran, because its
/// token made too many mutations.
pub fn rate_limited(response: &async_graphql::Response) -> Option<Response> {
    let [error] = response.errors.as_slice() else { return None };
    let extensions = error.extensions.as_ref()?;
    if response.data != async_graphql::Value::Null
        || extensions.get("code") != Some(&async_graphql::Value::from("RATE_LIMITED"))
    {
        return None;
    }
    let seconds = match extensions.get("retryAfterSeconds") {
        Some(async_graphql::Value::Number(n)) => n.as_u64().unwrap_or(1),
        _ => 1,
    };
    let body = json!({"errors": [error]});
    let mut answer = (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))],
        body.to_string(),
    )
        .into_response();
    answer.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    Some(answer)
}

/// The time a client has to send a request's whole body once its headers are in.
pub const BODY_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// 408: the body did not arrive within [`BODY_READ_TIMEOUT`].
pub fn too_slow() -> Response {
    graphql_error(
        StatusCode::REQUEST_TIMEOUT,
        "VALIDATION",
        &format!("the request body did not arrive within {} seconds", BODY_READ_TIMEOUT.as_secs()),
    )
}

/// 413: the body is larger than `HOOKLINE_MAX_REQUEST_BODY`.
pub fn too_large(limit: usize) -> Response {
    graphql_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "VALIDATION",
        &format!(
            "the request body is larger than {limit} bytes (HOOKLINE_MAX_REQUEST_BODY); send fewer inputs per call"
        ),
    )
}

/// Whether reading the body failed because it passed the limit.
pub fn is_too_large(err: &axum::Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(err);
    while let Some(inner) = cause {
        if inner.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        cause = inner.source();
    }
    false
}

/// Only `application/json` bodies are taken: a browser page can send `text/plain`, form and
/// multipart bodies to any site without asking first (no CORS preflight), and nothing in the
/// API takes files.
pub fn content_type_refusal(headers: &HeaderMap) -> Option<Response> {
    let given = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    let essence = given.split(';').next().unwrap_or_default().trim().to_ascii_lowercase();
    if essence == "application/json" {
        return None;
    }
    let message = if essence == "multipart/form-data" {
        "multipart requests (file uploads) are not accepted; send the operation as Content-Type: application/json"
            .to_owned()
    } else if essence.is_empty() {
        "the request has no Content-Type; send the operation as Content-Type: application/json".to_owned()
    } else {
        format!("Content-Type `{essence}` is not accepted; send the operation as Content-Type: application/json")
    };
    Some(graphql_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "VALIDATION", &message))
}

/// The answer to an executed operation, as `application/graphql-response+json` when the client
/// accepts it and `application/json` otherwise.
pub fn graphql_response(request_headers: &HeaderMap, response: async_graphql::Response) -> Response {
    let media_type = if accepts_graphql_response(request_headers) { GRAPHQL_RESPONSE } else { "application/json" };
    let body = match serde_json::to_string(&response) {
        Ok(body) => body,
        Err(err) => {
            tracing::error!(%err, "cannot serialize a GraphQL response");
            return graphql_error(StatusCode::INTERNAL_SERVER_ERROR, "INTERNAL", "internal error");
        }
    };
    let mut answer = ([(header::CONTENT_TYPE, HeaderValue::from_static(media_type))], body).into_response();
    answer.headers_mut().extend(response.http_headers);
    answer
}

fn accepts_graphql_response(headers: &HeaderMap) -> bool {
    headers.get_all(header::ACCEPT).iter().filter_map(|v| v.to_str().ok()).any(|accept| {
        accept
            .split(',')
            .any(|part| part.split(';').next().unwrap_or_default().trim().eq_ignore_ascii_case(GRAPHQL_RESPONSE))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(name: header::HeaderName, value: &'static str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_static(value));
        headers
    }

    #[test]
    fn only_json_bodies_are_taken() {
        assert!(content_type_refusal(&with(header::CONTENT_TYPE, "application/json")).is_none());
        assert!(content_type_refusal(&with(header::CONTENT_TYPE, "Application/JSON; charset=utf-8")).is_none());
        for refused in ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x"] {
            let answer = content_type_refusal(&with(header::CONTENT_TYPE, refused)).expect(refused);
            assert_eq!(answer.status(), StatusCode::UNSUPPORTED_MEDIA_TYPE);
        }
        assert!(content_type_refusal(&HeaderMap::new()).is_some());
    }

    #[test]
    fn the_graphql_media_type_is_answered_when_accepted() {
        assert!(accepts_graphql_response(&with(header::ACCEPT, "application/graphql-response+json, application/json")));
        assert!(!accepts_graphql_response(&with(header::ACCEPT, "application/json")));
        assert!(!accepts_graphql_response(&HeaderMap::new()));
    }
}
