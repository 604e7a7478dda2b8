//! The one error type of the HTTP layer, rendered as RFC 9457
//! `application/problem+json`:
//!
//! ```json
//! {"type": "urn:simbatch:problem:<code>", "title": "...", "status": 422,
//!  "detail": "...", "code": "<code>",
//!  "errors": [{"index": 3, "field": "iccid", "code": "iccid_invalid_length", "reason": "..."}]}
//! ```
//! `errors` is present only when items or fields are to blame.
//!
//! # Policy: which status for which code
//!
//! | status | codes | when |
//! |---|---|---|
//! | 400 | `malformed_json`, `malformed_csv`, `invalid_query`, `invalid_cursor`, `invalid_header`, `unknown_column`, `line_too_long` | the request cannot be read |
//! | 401 | `unauthorized` | no key, a malformed key, or an unknown or revoked key |
//! | 404 | `not_found` | unknown route, or an object that does not exist **for this tenant** (another tenant's objects are indistinguishable from missing ones) |
//! | 405 | `method_not_allowed` | known path, other method |
//! | 409 | `conflict`, `idempotency_key_in_use` | not possible in the current state; the first request with this key is still running |
//! | 413 | `payload_too_large` | a JSON body over the limit (64 MiB) |
//! | 415 | `unsupported_media_type` | a body that is not JSON, CSV or NDJSON |
//! | 422 | `invalid_type`, `invalid_request`, `unknown_operation`, `unknown_field`, `empty_batch`, `too_many_items`, `idempotency_key_reused`, `template_invalid`, `template_name_invalid` | readable, but wrong |
//! | 429 | `rate_limited` | the tenant is over its rate limit (`Retry-After`, `RateLimit` headers; see `ops::rate_limit`) |
//! | 500 | `internal` | a store or server fault: the detail is generic, the cause is only logged |
//! | 503 | `not_ready` | the store does not answer (`/readyz`) |
//!
//! Items refused inside an accepted batch are not errors: they are stored as
//! REJECTED and listed in the batch response.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use simbatch_engine::service::{RejectedItem, ServiceError};
use utoipa::ToSchema;

/// Media type of problem documents.
pub const PROBLEM_JSON: &str = "application/problem+json";

/// One item or field to blame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ProblemItem {
    /// 0-based item index (CSV/NDJSON: data row or line), if an item is to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub index: Option<usize>,
    /// Field to blame, if any.
    pub field: Option<String>,
    /// Stable code.
    pub code: String,
    /// Human reason.
    pub reason: String,
}

impl From<RejectedItem> for ProblemItem {
    fn from(r: RejectedItem) -> Self {
        Self {
            index: Some(r.index),
            field: r.field,
            code: r.code,
            reason: r.reason,
        }
    }
}

/// An RFC 9457 problem document.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Problem {
    /// `urn:simbatch:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Short summary of the status.
    pub title: String,
    /// HTTP status.
    pub status: u16,
    /// Human explanation of this occurrence.
    pub detail: String,
    /// Stable machine code.
    pub code: String,
    /// Items and fields to blame.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<ProblemItem>>,
}

/// The HTTP error.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// Status.
    pub status: StatusCode,
    /// Stable code.
    pub code: &'static str,
    /// Detail.
    pub detail: String,
    /// Items and fields to blame.
    pub errors: Vec<ProblemItem>,
}

impl ApiError {
    /// An error with a status, a code and a detail.
    pub fn new(status: StatusCode, code: &'static str, detail: impl Into<String>) -> Self {
        Self {
            status,
            code,
            detail: detail.into(),
            errors: Vec::new(),
        }
    }
    /// Attach one blamed field or item.
    pub fn with_error(
        mut self,
        index: Option<usize>,
        field: Option<&str>,
        code: &str,
        reason: impl Into<String>,
    ) -> Self {
        self.errors.push(ProblemItem {
            index,
            field: field.map(str::to_owned),
            code: code.to_owned(),
            reason: reason.into(),
        });
        self
    }
    /// 400 with `code`.
    pub fn bad_request(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, detail)
    }
    /// 422 with `code`.
    pub fn unprocessable(code: &'static str, detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, detail)
    }
    /// 404 `not_found`.
    pub fn not_found(what: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("{what} not found"),
        )
    }
    /// 401 `unauthorized`.
    pub fn unauthorized(detail: impl Into<String>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthorized", detail)
    }
    /// 500 `internal`, generic detail.
    pub fn internal() -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            "an internal error occurred; it has been logged",
        )
    }

    /// The problem document.
    pub fn problem(&self) -> Problem {
        Problem {
            kind: format!("urn:simbatch:problem:{}", self.code),
            title: self.status.canonical_reason().unwrap_or("Error").to_owned(),
            status: self.status.as_u16(),
            detail: self.detail.clone(),
            code: self.code.to_owned(),
            errors: (!self.errors.is_empty()).then(|| self.errors.clone()),
        }
    }
}

impl From<ServiceError> for ApiError {
    fn from(e: ServiceError) -> Self {
        let detail = e.to_string();
        match e {
            ServiceError::NotFound(what) => Self::not_found(&what),
            ServiceError::EmptyBatch => Self::unprocessable("empty_batch", detail),
            ServiceError::TooManyItems { .. } => Self::unprocessable("too_many_items", detail),
            ServiceError::InvalidRequest { errors, .. } => {
                let mut err = Self::unprocessable("invalid_request", detail);
                err.errors = errors.into_iter().map(ProblemItem::from).collect();
                err
            }
            ServiceError::Conflict(_) => Self::new(StatusCode::CONFLICT, "conflict", detail),
            ServiceError::Internal => Self::internal(),
            ServiceError::Refused { code, .. } => Self::unprocessable(code, detail),
        }
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}: {}", self.status.as_u16(), self.code, self.detail)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = serde_json::to_vec(&self.problem()).unwrap_or_else(|_| b"{}".to_vec());
        let mut resp = (self.status, body).into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
        resp
    }
}

/// Map axum's JSON rejections onto the policy.
impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match r {
            J::JsonDataError(e) => Self::unprocessable("invalid_type", e.body_text()),
            J::JsonSyntaxError(e) => Self::bad_request("malformed_json", e.body_text()),
            J::MissingJsonContentType(_) => Self::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "expected Content-Type: application/json",
            ),
            J::BytesRejection(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                payload_too_large()
            }
            other => Self::bad_request("malformed_json", other.body_text()),
        }
    }
}

/// 413 for an over-long body.
pub fn payload_too_large() -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload_too_large",
        format!(
            "the body exceeds {} MiB; upload large batches as streamed CSV or NDJSON",
            crate::JSON_LIMIT / (1024 * 1024)
        ),
    )
}

/// Map axum's query rejections: 400 `invalid_query`.
impl From<axum::extract::rejection::QueryRejection> for ApiError {
    fn from(r: axum::extract::rejection::QueryRejection) -> Self {
        Self::bad_request("invalid_query", r.body_text())
    }
}

/// Map body buffering failures: 413 when over the limit, else 400.
impl From<axum::extract::rejection::BytesRejection> for ApiError {
    fn from(r: axum::extract::rejection::BytesRejection) -> Self {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            payload_too_large()
        } else {
            Self::bad_request("malformed_body", "the request body could not be read")
        }
    }
}

/// Result alias for handlers.
pub type ApiResult<T> = Result<T, ApiError>;
