//! HTTP errors: every layer's typed error mapped to a status code and a JSON body
//! `{"error": {"code", "message", "limit"?}}` in this one place.

use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::json;

use crate::hub::HubError;
use crate::transport::TransportError;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    pub limit: Option<usize>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            limit: None,
        }
    }

    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    pub fn too_large(limit: usize) -> Self {
        Self {
            limit: Some(limit),
            ..Self::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "message_too_large",
                format!("body exceeds the maximum message size of {limit} bytes"),
            )
        }
    }

    /// A body the extractor could not read: too large (413) or broken off (400).
    pub fn from_body_rejection(rejection: &BytesRejection, limit: usize) -> Self {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Self::too_large(limit)
        } else {
            Self::bad_request("bad_request", rejection.body_text())
        }
    }

    /// A JSON body that failed to parse: broken JSON (`bad_json`) or the wrong shape
    /// (`bad_request`).
    pub fn from_json_error(e: &serde_json::Error) -> Self {
        if e.is_syntax() || e.is_eof() {
            Self::bad_request("bad_json", format!("body is not valid JSON: {e}"))
        } else {
            Self::bad_request("bad_request", format!("body has the wrong shape: {e}"))
        }
    }

    pub fn from_query_rejection(rejection: &QueryRejection) -> Self {
        Self::bad_request("bad_request", rejection.body_text())
    }
}

impl From<HubError> for ApiError {
    fn from(e: HubError) -> Self {
        Self::from_hub_ref(&e)
    }
}

impl From<TransportError> for ApiError {
    fn from(e: TransportError) -> Self {
        let (status, code) = match &e {
            TransportError::Hub(hub) => return Self::from_hub_ref(hub),
            TransportError::UnknownSession => (StatusCode::NOT_FOUND, "unknown_session"),
            TransportError::PollInProgress => (StatusCode::CONFLICT, "poll_in_progress"),
            TransportError::BadAck { .. } => (StatusCode::BAD_REQUEST, "bad_ack"),
            TransportError::NotWebSocket(_) => (StatusCode::BAD_REQUEST, "not_websocket"),
            TransportError::ShuttingDown => (StatusCode::SERVICE_UNAVAILABLE, "shutting_down"),
            TransportError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
        };
        Self::new(status, code, e.to_string())
    }
}

impl ApiError {
    fn from_hub_ref(e: &HubError) -> Self {
        let status = match e {
            HubError::OverCapacity(_) | HubError::Overloaded { .. } => {
                StatusCode::SERVICE_UNAVAILABLE
            }
            HubError::PublishForbidden(_) => StatusCode::FORBIDDEN,
            HubError::ClientGone => StatusCode::GONE,
            HubError::InvalidChannel(_)
            | HubError::AlreadySubscribed(_)
            | HubError::NotSubscribed(_)
            | HubError::TooManySubscriptions(_) => StatusCode::BAD_REQUEST,
        };
        Self::new(status, e.code(), e.to_string())
    }
}

impl ApiError {
    /// The JSON body every error response carries.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({"code": self.code, "message": self.message});
        if let Some(limit) = self.limit {
            error["limit"] = limit.into();
        }
        json!({ "error": error })
    }
}

/// Status and body for a WebSocket handshake refused outside hyper (`transport::ws::direct`).
pub fn render_rejection(error: TransportError) -> (u16, String) {
    let error = ApiError::from(error);
    (error.status.as_u16(), error.body().to_string())
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.status, Json(self.body())).into_response();
        if self.code == "overloaded" {
            // Publishers back off for about a second; queues drain in far less.
            response.headers_mut().insert(
                axum::http::header::RETRY_AFTER,
                axum::http::HeaderValue::from_static("1"),
            );
        }
        response.headers_mut().insert(
            axum::http::header::CACHE_CONTROL,
            axum::http::HeaderValue::from_static("no-store"),
        );
        response
    }
}
