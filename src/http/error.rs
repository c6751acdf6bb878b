//! HTTP errors: every layer's typed error becomes an [`ApiError`] — its documented
//! [`ErrorCode`] (which fixes the status) and a message — rendered as the contract's JSON body
//! `{"error": {"code", "message", "limit"?}}` in this one place.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};

use super::deadline::{self, BodyInterrupted};
use crate::auth::AuthError;
use crate::hub::HubError;
use crate::protocol::bodies::ErrorBody;
use crate::protocol::query::QueryError;
use crate::protocol::ErrorCode;
use crate::transport::TransportError;

#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub limit: Option<usize>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            limit: None,
        }
    }

    pub fn status(&self) -> StatusCode {
        StatusCode::from_u16(self.code.http_status()).unwrap_or(StatusCode::BAD_REQUEST)
    }

    pub fn too_large(limit: usize) -> Self {
        Self {
            limit: Some(limit),
            ..Self::new(
                ErrorCode::MessageTooLarge,
                format!("body exceeds the maximum message size of {limit} bytes"),
            )
        }
    }

    /// A body the extractor could not read: not in time (408) or not before shutdown (503),
    /// too large (413) or broken off (400).
    pub fn from_body_rejection(rejection: &BytesRejection, limit: usize) -> Self {
        if let Some(why) = deadline::interruption(rejection) {
            Self::from(why)
        } else if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::too_large(limit)
        } else {
            Self::new(ErrorCode::BadRequest, rejection.body_text())
        }
    }

    /// A JSON body that failed to parse: broken JSON (`bad_json`) or the wrong shape
    /// (`bad_request`).
    pub fn from_json_error(e: &serde_json::Error) -> Self {
        if e.is_syntax() || e.is_eof() {
            Self::new(ErrorCode::BadJson, format!("body is not valid JSON: {e}"))
        } else {
            Self::new(
                ErrorCode::BadRequest,
                format!("body has the wrong shape: {e}"),
            )
        }
    }

    /// A body `axum::body::to_bytes` could not read: interrupted (408, 503), else too large.
    pub fn from_body_error(error: &axum::Error, limit: usize) -> Self {
        deadline::interruption(error).map_or_else(|| Self::too_large(limit), Self::from)
    }

    pub fn from_query_rejection(rejection: &QueryRejection) -> Self {
        Self::new(ErrorCode::BadRequest, rejection.body_text())
    }

    /// A body that is not UTF-8.
    pub fn from_utf8_error(e: std::str::Utf8Error) -> Self {
        Self::new(ErrorCode::InvalidUtf8, format!("body is not UTF-8: {e}"))
    }

    /// The JSON body every error response carries.
    pub fn body(&self) -> String {
        ErrorBody::new(self.code, &self.message, self.limit).to_json()
    }
}

impl From<BodyInterrupted> for ApiError {
    fn from(why: BodyInterrupted) -> Self {
        let code = match why {
            BodyInterrupted::TimedOut => ErrorCode::RequestTimeout,
            BodyInterrupted::ShuttingDown => ErrorCode::ShuttingDown,
        };
        Self::new(code, why.to_string())
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<TransportError> for ApiError {
    fn from(e: TransportError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<AuthError> for ApiError {
    fn from(e: AuthError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        Self::new(e.code(), e.to_string())
    }
}

/// Status and body for a WebSocket handshake refused outside hyper (`transport::ws::direct`).
pub fn render_rejection(error: TransportError) -> (u16, String) {
    let error = ApiError::from(error);
    (error.code.http_status(), error.body())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (
            self.status(),
            [(header::CONTENT_TYPE, "application/json")],
            self.body(),
        )
            .into_response();
        let headers = response.headers_mut();
        if let Some(seconds) = self.code.retry_after_secs() {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if self.code == ErrorCode::Unauthorized {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if self.code == ErrorCode::RequestTimeout {
            // The rest of the body may still be on its way: the connection cannot be reused.
            headers.insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
        response
    }
}
