//! The Simlessly response envelope and our stable failure codes.
//!
//! Every answer is `{"obj": …, "success": …, "msg": …, "code": …}`. Like the
//! vendor, a refused request is still HTTP 200: clients read `success` and
//! `code`. Only an unknown path or profile (404), a refused result or QR link (403), a
//! QR link to a profile without a code (409), the rate limit (429) and a
//! server fault (500) use another status, with the same envelope. The code
//! table is published in `docs/dialects/simlessly.md`; codes never change
//! meaning.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::Value;
use simbatch_engine::service::ServiceError;

/// Success.
pub const OK: &str = "00000";

/// A refusal: a stable code and a clear message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 10001: an authentication header is missing or unreadable.
    MissingHeader,
    /// 10002: the AccessKey is unknown, revoked, or has no HMAC secret on file.
    UnknownAccessKey,
    /// 10003: the signature does not match.
    BadSignature,
    /// 10004: the Timestamp is not milliseconds within 10 minutes of now.
    BadTimestamp,
    /// 10005: the Request-ID was already used with this AccessKey.
    ReplayedRequestId,
    /// 10006: a Sign-Method other than HMAC-SHA256.
    UnsupportedSignMethod,
    /// 10007: the tenant is over its rate limit (HTTP 429, `Retry-After`).
    RateLimited,
    /// 20001: the body is not a JSON object.
    MalformedBody,
    /// 20002: a parameter is missing or has the wrong type.
    InvalidParameter,
    /// 20003: metaDatas holds fewer than 1 or more than 200 items.
    BatchSize,
    /// 20004: no configuration (template) has this configName.
    UnknownConfigName,
    /// 20005: encryptionMode other than 1 (plaintext).
    UnsupportedEncryptionMode,
    /// 20006: no batch of this tenant has this batchCode.
    UnknownBatchCode,
    /// 20007: the body is larger than the endpoint accepts.
    BodyTooLarge,
    /// 20008: no status-change callback URL is configured.
    NotifyNotConfigured,
    /// 20009: the tenant has no profile with this ICCID (HTTP 404, QR links).
    UnknownIccid,
    /// 30001: a result or QR link whose signature is wrong or that has expired.
    InvalidLink,
    /// 30002: the profile behind a QR link has no activation code any more (HTTP 409).
    NoActivationCode,
    /// 40400: no such path under `/simlessly`.
    UnknownPath,
    /// 99999: a server fault (HTTP 500); the cause is logged only.
    Internal,
}

impl Code {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MissingHeader => "10001",
            Self::UnknownAccessKey => "10002",
            Self::BadSignature => "10003",
            Self::BadTimestamp => "10004",
            Self::ReplayedRequestId => "10005",
            Self::UnsupportedSignMethod => "10006",
            Self::RateLimited => "10007",
            Self::MalformedBody => "20001",
            Self::InvalidParameter => "20002",
            Self::BatchSize => "20003",
            Self::UnknownConfigName => "20004",
            Self::UnsupportedEncryptionMode => "20005",
            Self::UnknownBatchCode => "20006",
            Self::BodyTooLarge => "20007",
            Self::NotifyNotConfigured => "20008",
            Self::UnknownIccid => "20009",
            Self::InvalidLink => "30001",
            Self::NoActivationCode => "30002",
            Self::UnknownPath => "40400",
            Self::Internal => "99999",
        }
    }
}

/// The envelope.
#[derive(Debug, Clone, Serialize)]
pub struct Envelope {
    /// Business payload, or null.
    pub obj: Value,
    /// Whether the request succeeded.
    pub success: bool,
    /// Empty on success; the reason otherwise.
    pub msg: String,
    /// `00000` on success; a [`Code`] otherwise.
    pub code: String,
}

/// A success answer carrying `obj`.
pub fn ok(obj: Value) -> Response {
    Json(Envelope {
        obj,
        success: true,
        msg: String::new(),
        code: OK.to_owned(),
    })
    .into_response()
}

/// A refusal in the envelope.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Stable code.
    pub code: Code,
    /// Clear message.
    pub msg: String,
}

impl Refusal {
    /// A refusal with `code` and `msg`.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }

    /// A server fault.
    pub fn internal() -> Self {
        Self::new(
            Code::Internal,
            "an internal error occurred; it has been logged",
        )
    }
}

impl From<ServiceError> for Refusal {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(_) => Self::new(Code::UnknownBatchCode, "unknown batchCode"),
            ServiceError::EmptyBatch | ServiceError::TooManyItems { .. } => {
                Self::new(Code::BatchSize, "metaDatas must hold 1 to 200 items")
            }
            ServiceError::InvalidRequest { message, .. }
            | ServiceError::Refused { message, .. } => Self::new(Code::InvalidParameter, message),
            ServiceError::Conflict(m) => Self::new(Code::InvalidParameter, m),
            ServiceError::Internal => Self::internal(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        let status = match self.code {
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::UnknownPath => StatusCode::NOT_FOUND,
            // A refused link is 403, like a refused presigned URL.
            Code::InvalidLink => StatusCode::FORBIDDEN,
            Code::NoActivationCode => StatusCode::CONFLICT,
            Code::UnknownIccid => StatusCode::NOT_FOUND,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::OK,
        };
        let body = Envelope {
            obj: Value::Null,
            success: false,
            msg: self.msg,
            code: self.code.as_str().to_owned(),
        };
        (status, Json(body)).into_response()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_distinct_five_digit_strings() {
        use Code::*;
        let all = [
            MissingHeader,
            UnknownAccessKey,
            BadSignature,
            BadTimestamp,
            ReplayedRequestId,
            UnsupportedSignMethod,
            RateLimited,
            MalformedBody,
            InvalidParameter,
            BatchSize,
            UnknownConfigName,
            UnsupportedEncryptionMode,
            UnknownBatchCode,
            BodyTooLarge,
            NotifyNotConfigured,
            UnknownIccid,
            InvalidLink,
            NoActivationCode,
            UnknownPath,
            Internal,
        ];
        let mut seen = std::collections::HashSet::new();
        for c in all {
            let s = c.as_str();
            assert!(s.len() == 5 && s.bytes().all(|b| b.is_ascii_digit()), "{s}");
            assert!(s != OK && seen.insert(s), "{s} reused");
        }
    }
}
