//! Refusals nobody else words: an unknown path (`404 not_found`), a method a route does not
//! take (`405 method_not_allowed`), and, as a last resort, any error response from axum's
//! extractors or the static-file service that has no JSON body. Before this, those were
//! empty or plain-text bodies, outside the contract.

use axum::extract::Request;
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};

use crate::protocol::ErrorCode;

use super::error::ApiError;

/// Most bytes of a plain-text refusal (axum's rejection texts) kept as the JSON message.
const MAX_REASON_BYTES: usize = 1024;

/// What the static-file service falls back to: a path it has no file for, or a method other
/// than GET and HEAD.
pub async fn static_fallback(request: Request) -> Response {
    if request.method() == Method::GET || request.method() == Method::HEAD {
        ApiError::new(ErrorCode::NotFound, "no such path").into_response()
    } else {
        method_not_allowed().await
    }
}

/// A route that exists, asked with a method it does not take.
pub async fn method_not_allowed() -> Response {
    ApiError::new(
        ErrorCode::MethodNotAllowed,
        "this path does not take this method",
    )
    .into_response()
}

/// Gives an error response without a JSON body the contract's body: the code its status
/// stands for, and the plain text it had (if any) as the message. Headers such as `Allow`
/// are kept. Statuses without a code of their own are left as they are (documented).
pub async fn json_errors(response: Response) -> Response {
    let status = response.status();
    let code = match status {
        StatusCode::BAD_REQUEST => ErrorCode::BadRequest,
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        _ => return response,
    };
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if is_json {
        return response;
    }
    let (parts, body) = response.into_parts();
    let text = axum::body::to_bytes(body, MAX_REASON_BYTES)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .filter(|t| !t.trim().is_empty())
        .unwrap_or_else(|| {
            status
                .canonical_reason()
                .unwrap_or("refused")
                .to_ascii_lowercase()
        });
    let mut json = ApiError::new(code, text).into_response();
    for name in [header::ALLOW, header::CONNECTION] {
        if let Some(value) = parts.headers.get(&name) {
            json.headers_mut().insert(name, value.clone());
        }
    }
    json
}
