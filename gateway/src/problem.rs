//! Every error the gateway answers with, as RFC 9457 problem details
//! (`application/problem+json`), and the one table that maps the module's error
//! replies to HTTP statuses.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

/// An RFC 9457 problem details object.
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem (`about:blank` when the status says it all).
    #[serde(rename = "type")]
    pub kind: String,
    /// A short summary of the kind of problem.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong this time, in words (the module's error text when it refused).
    pub detail: String,
    /// The Redis error code of the module's reply (`NOPERM`, `ERR`, `BUSYKEY`, ...), when there was one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
}

/// An error on its way to becoming a problem response.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub detail: String,
    pub code: Option<String>,
    /// Seconds for `Retry-After` (429 and 503).
    pub retry_after: Option<u64>,
}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        ApiError { status, detail: detail.into(), code: None, retry_after: None }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, detail)
    }

    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, detail)
    }

    pub fn forbidden(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, detail)
    }

    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, detail)
    }

    /// Redis cannot be reached (or did not answer in time): try again later.
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError { retry_after: Some(1), ..Self::new(StatusCode::SERVICE_UNAVAILABLE, detail) }
    }

    pub fn too_many(detail: impl Into<String>, retry_after: u64) -> Self {
        ApiError { retry_after: Some(retry_after.max(1)), ..Self::new(StatusCode::TOO_MANY_REQUESTS, detail) }
    }

    /// The module (or Redis) refused a command with `code detail`: the status from
    /// the table in the README's "Gateway" section.
    pub fn from_module(code: &str, detail: &str) -> Self {
        let text = format!("{code} {detail}");
        let status = module_status(code, detail);
        let retry_after = match status {
            StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE => Some(1),
            _ => None,
        };
        ApiError { status, detail: text, code: Some(code.to_string()), retry_after }
    }
}

/// The mapping of a module error reply to an HTTP status.
pub fn module_status(code: &str, detail: &str) -> StatusCode {
    match code {
        "NOPERM" => StatusCode::FORBIDDEN,
        "BUSYKEY" | "WRONGTYPE" => StatusCode::CONFLICT,
        "CROSSSLOT" => StatusCode::BAD_REQUEST,
        "OOM" | "READONLY" | "LOADING" | "MASTERDOWN" | "TRYAGAIN" | "CLUSTERDOWN" | "BUSY" | "NOAUTH"
        | "WRONGPASS" => StatusCode::SERVICE_UNAVAILABLE,
        "ERR" => {
            if detail.starts_with("no such mailbox") || detail.starts_with("no such message") {
                StatusCode::NOT_FOUND
            } else if detail.contains("over the mailbox.max-payload-bytes limit") {
                StatusCode::PAYLOAD_TOO_LARGE
            } else if detail.starts_with("send quota exceeded") {
                StatusCode::TOO_MANY_REQUESTS
            } else if detail.starts_with("mailbox is full")
                || detail.contains("reached mailbox.max-thread-messages")
            {
                StatusCode::CONFLICT
            } else if detail.starts_with("unknown command") {
                // The module is not loaded on this server.
                StatusCode::SERVICE_UNAVAILABLE
            } else {
                StatusCode::BAD_REQUEST
            }
        }
        _ => StatusCode::SERVICE_UNAVAILABLE,
    }
}

fn title(status: StatusCode) -> &'static str {
    status.canonical_reason().unwrap_or("Error")
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = Problem {
            kind: "about:blank".to_string(),
            title: title(self.status).to_string(),
            status: self.status.as_u16(),
            detail: self.detail,
            code: self.code,
        };
        let json = serde_json::to_vec(&body).unwrap_or_default();
        let mut res = (self.status, json).into_response();
        let headers = res.headers_mut();
        headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/problem+json"));
        if let Some(secs) = self.retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if self.status == StatusCode::UNAUTHORIZED {
            headers.insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_errors_map_to_the_documented_statuses() {
        let cases = [
            ("NOPERM", "agent 'a' has no 'read' permission on 'b'", 403),
            ("ERR", "no such mailbox", 404),
            ("ERR", "no such message in this mailbox", 404),
            ("ERR", "payload is 20 bytes, over the mailbox.max-payload-bytes limit of 10", 413),
            ("ERR", "send quota exceeded for agent 'a' (1 messages/s, burst 1)", 429),
            ("ERR", "mailbox is full (MAXLEN reached)", 409),
            ("ERR", "thread 't' reached mailbox.max-thread-messages (3); start a new thread", 409),
            ("ERR", "PRIORITY must be an integer from 0 to 9", 400),
            ("ERR", "unknown command 'MAILBOX.SEND'", 503),
            ("BUSYKEY", "mailbox already exists", 409),
            ("WRONGTYPE", "Operation against a key holding the wrong kind of value", 409),
            ("CROSSSLOT", "Keys in request don't hash to the same slot", 400),
            ("OOM", "command not allowed when used memory > 'maxmemory'.", 503),
            ("READONLY", "You can't write against a read only replica.", 503),
        ];
        for (code, detail, status) in cases {
            assert_eq!(module_status(code, detail).as_u16(), status, "{code} {detail}");
        }
    }

    #[test]
    fn retry_after_only_on_429_and_503() {
        assert_eq!(ApiError::from_module("ERR", "send quota exceeded for agent 'a'").retry_after, Some(1));
        assert_eq!(ApiError::from_module("OOM", "x").retry_after, Some(1));
        assert_eq!(ApiError::from_module("NOPERM", "x").retry_after, None);
    }
}
