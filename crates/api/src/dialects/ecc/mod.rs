//! Nobill ECC (`/ecc/v1`): batches, subscriptions, orders and events.
//!
//! - [`request`]: one ECC API request (method, resource, body) translated
//!   into a core operation and its fields; pure, unit-tested.
//! - [`batches`]: `POST /ecc/v1/batches`, `GET /ecc/v1/batches/{batchid}`.
//! - [`subscriptions`]: the same operations outside a batch, and orders.
//! - [`events`]: `GET /ecc/v1/events/{batch|order|state-change}`.
//!
//! Authentication is HTTP Basic with the tenant key id as user and the key
//! secret as password. Errors are JSON `{"status", "error", "message"}` with
//! the HTTP codes of the ECC error guide (400, 401, 404, 409).

pub mod batches;
pub mod events;
pub mod request;
pub mod subscriptions;

use axum::body::Bytes;
use axum::extract::FromRequestParts;
use axum::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use base64::Engine as _;
use serde_json::{json, Map, Value};
use simbatch_engine::service::ServiceError;
use simbatch_store::Tenant;

use crate::AppState;

/// Source name of batches submitted through this dialect.
pub const SOURCE: &str = "ecc";
/// Most API requests in one batch.
pub const MAX_REQUESTS: usize = 100;
/// Largest request body accepted (100 requests of a few KiB each).
pub const BODY_LIMIT: usize = 1024 * 1024;

/// The ECC routes.
pub fn router() -> Router<AppState> {
    let r = Router::new()
        .route("/batches", post(batches::submit))
        .route("/batches/{batchid}", get(batches::get))
        .route("/subscriptions", post(subscriptions::create))
        .route(
            "/subscriptions/{selector}",
            get(subscriptions::get).patch(subscriptions::patch),
        )
        .route(
            "/subscriptions/{selector}/services",
            post(subscriptions::assign)
                .patch(subscriptions::modify)
                .delete(subscriptions::withdraw),
        )
        .route(
            "/subscriptions/{selector}/services/{sid}",
            axum::routing::patch(subscriptions::modify_one).delete(subscriptions::withdraw_one),
        )
        .route("/orders/{orderid}", get(subscriptions::order))
        .route("/events/{event_type}", get(events::list))
        .fallback(|| async { EccError::not_found("No such resource") })
        .method_not_allowed_fallback(|| async {
            EccError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "This resource does not accept this method",
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
    Router::new().nest("/ecc/v1", r)
}

/// An ECC error answer: `{"status": 404, "error": "Not Found", "message": "..."}`.
#[derive(Debug, Clone)]
pub struct EccError {
    /// HTTP status.
    pub status: StatusCode,
    /// Human readable message.
    pub message: String,
}

impl EccError {
    /// An error with a status and message.
    pub fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    /// 400: missing or malformed parameters, or a non-existing entity other than the subscription.
    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }
    /// 404: the main resource (subscription, batch, order) does not exist for this user.
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, message)
    }
    /// 409: the SIM or MSISDN is already in use.
    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, message)
    }
    fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
    }
}

impl IntoResponse for EccError {
    fn into_response(self) -> Response {
        let body = json!({
            "status": self.status.as_u16(),
            "error": self.status.canonical_reason().unwrap_or("Error"),
            "message": self.message,
        });
        let mut resp = (self.status, Json(body)).into_response();
        if self.status == StatusCode::UNAUTHORIZED {
            resp.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"ecc\""),
            );
        }
        resp
    }
}

impl From<ServiceError> for EccError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => match what.as_str() {
                "batch" => Self::not_found("Batch not found"),
                "order" => Self::not_found("Order not found"),
                _ => Self::not_found("Subscription not found"),
            },
            ServiceError::EmptyBatch => Self::bad_request("Missing requests parameter in body"),
            ServiceError::TooManyItems { max } => Self::bad_request(format!(
                "A batch can contain at most {} API requests",
                max.min(MAX_REQUESTS)
            )),
            ServiceError::InvalidRequest { message, .. }
            | ServiceError::Refused { message, .. } => Self::bad_request(message),
            ServiceError::Conflict(m) => Self::conflict(m),
            ServiceError::Internal => Self::internal(),
        }
    }
}

/// The tenant of a request authenticated with HTTP Basic (key id, secret).
#[derive(Debug, Clone)]
pub struct EccAuth(pub Tenant);

impl FromRequestParts<AppState> for EccAuth {
    type Rejection = EccError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, EccError> {
        let unauthorized = |m: &str| EccError::new(StatusCode::UNAUTHORIZED, m);
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| unauthorized("Missing credentials: use HTTP Basic authentication"))?
            .to_str()
            .map_err(|_| unauthorized("The Authorization header is not valid text"))?
            .trim();
        let (scheme, encoded) = header.split_once(' ').unwrap_or((header, ""));
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(unauthorized("Use HTTP Basic authentication"));
        }
        let decoded = base64::engine::general_purpose::STANDARD
            .decode(encoded.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .ok_or_else(|| unauthorized("The Basic credentials are not valid base64"))?;
        let (user, password) = decoded
            .split_once(':')
            .ok_or_else(|| unauthorized("Invalid user name or password"))?;
        match super::tenant_for(state, user, password).await {
            Ok(Some(t)) => {
                crate::ops::rate_limit::check(&parts.extensions, &t.id)
                    .map_err(|l| EccError::new(StatusCode::TOO_MANY_REQUESTS, l.message()))?;
                Ok(EccAuth(t))
            }
            Ok(None) => Err(unauthorized("Invalid user name or password")),
            Err(()) => Err(EccError::internal()),
        }
    }
}

/// Read a JSON object body; 400 with a clear message otherwise.
pub fn json_object(body: &Bytes) -> Result<Map<String, Value>, EccError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(EccError::bad_request("The body must be a JSON object")),
        Err(e) => Err(EccError::bad_request(format!(
            "The body is not valid JSON: {e}"
        ))),
    }
}

/// ECC date-time: ISO 8601 UTC with hundredths, e.g. `2016-10-26T13:40:28.21Z`.
pub fn ecc_time(ms: i64) -> String {
    use time::macros::format_description;
    let base = super::format_ms(
        ms,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    );
    format!("{base}.{:02}Z", (ms.rem_euclid(1000)) / 10)
}

/// ECC event time: `2016-03-10 08:22:13` (UTC).
pub fn event_time(ms: i64) -> String {
    use time::macros::format_description;
    super::format_ms(
        ms,
        format_description!("[year]-[month]-[day] [hour]:[minute]:[second]"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times() {
        assert_eq!(ecc_time(1_477_489_228_210), "2016-10-26T13:40:28.21Z");
        assert_eq!(event_time(1_457_598_133_000), "2016-03-10 08:22:13");
    }
}
