//! Smarthub (`/smarthub/v1`): batch jobs and single-SIM management.
//!
//! - [`jobs`]: `POST /batchJobs/global-sims/{activate,deactivate,retire,change-basic-rate-plan}`
//!   and `GET /batchJobs/{jobId}`.
//! - [`sims`]: `/global-sims/...` reads, custom fields, and the single-SIM
//!   actions, each an implicit batch of one.
//! - [`notifications`]: the push URL for SIM status and IMEI change notifications.
//!
//! Authentication is the tenant token in `X-API-Key` (or
//! `Authorization: Bearer`). Errors are Smarthub's problem bodies:
//! 401 `Invalid api key`, 400 `Bad Request`, 404 `Not Found`, and 422
//! `Validation Failed` with `errors[{resource, field, code}]`, code one of
//! `missing`, `missing_field`, `invalid`, `illegal_status`.

pub mod jobs;
pub mod notifications;
pub mod sims;

use std::collections::HashMap;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{json, Value};
use simbatch_engine::service::ServiceError;
use simbatch_store::Tenant;

use crate::AppState;

/// Source name of batches submitted through this dialect.
pub const SOURCE: &str = "smarthub";
/// Largest request body accepted.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;

/// The Smarthub routes.
pub fn router() -> Router<AppState> {
    let r = Router::new()
        .route("/batchJobs/global-sims/{action}", post(jobs::submit))
        .route("/batchJobs/{job_id}", get(jobs::get))
        .route(
            "/notification-config",
            get(notifications::get)
                .put(notifications::put)
                .delete(notifications::delete),
        )
        .route("/global-sims", get(sims::list))
        .route("/global-sims/changeLogs", get(sims::change_logs))
        .route("/global-sims/{giccid}", get(sims::get))
        .route(
            "/global-sims/{giccid}/custom-field",
            get(sims::get_custom).put(sims::put_custom),
        )
        .route("/global-sims/{giccid}/{action}", post(sims::action))
        .fallback(|| async { SmError::not_found("No such resource") })
        .method_not_allowed_fallback(|| async {
            SmError::Problem(
                StatusCode::METHOD_NOT_ALLOWED,
                "Method Not Allowed",
                Some("this path does not accept this method".into()),
            )
        })
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT));
    Router::new().nest("/smarthub/v1", r)
}

/// One field to blame in a 422.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The object (`globalSim`, `batchJob`, `customFieldVO`, `notificationConfig`, `query`).
    pub resource: &'static str,
    /// The field.
    pub field: String,
    /// `missing`, `missing_field`, `invalid` or `illegal_status`.
    pub code: &'static str,
}

/// A Smarthub error answer.
#[derive(Debug, Clone)]
pub enum SmError {
    /// A problem body with a status, title and optional detail.
    Problem(StatusCode, &'static str, Option<String>),
    /// 422 `Validation Failed` with the fields to blame and an optional detail.
    Validation(Vec<FieldError>, Option<String>),
}

impl SmError {
    /// 401 `Invalid api key`.
    pub fn unauthorized() -> Self {
        Self::Problem(StatusCode::UNAUTHORIZED, "Invalid api key", None)
    }
    /// 400 `Bad Request`, e.g. `Body should be a JSON object`.
    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::Problem(StatusCode::BAD_REQUEST, "Bad Request", Some(detail.into()))
    }
    /// 404 `Not Found` (also another tenant's objects).
    pub fn not_found(detail: impl Into<String>) -> Self {
        Self::Problem(StatusCode::NOT_FOUND, "Not Found", Some(detail.into()))
    }
    /// 422 with one field to blame.
    pub fn field(
        resource: &'static str,
        field: &str,
        code: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        Self::Validation(
            vec![FieldError {
                resource,
                field: field.to_owned(),
                code,
            }],
            Some(detail.into()),
        )
    }
    /// 500 without detail (the cause is logged where it happened).
    pub(crate) fn internal() -> Self {
        Self::Problem(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Internal Server Error",
            None,
        )
    }
}

impl IntoResponse for SmError {
    fn into_response(self) -> Response {
        let (status, body) = match self {
            Self::Problem(status, title, detail) => {
                let mut b =
                    json!({"type": "about:blank", "title": title, "status": status.as_u16()});
                if let Some(d) = detail {
                    b["detail"] = json!(d);
                }
                (status, b)
            }
            Self::Validation(errors, detail) => {
                let errors: Vec<Value> = errors
                    .iter()
                    .map(|e| json!({"resource": e.resource, "field": e.field, "code": e.code}))
                    .collect();
                let mut b = json!({"type": "about:blank", "title": "Validation Failed",
                                   "status": 422, "errors": errors});
                if let Some(d) = detail {
                    b["detail"] = json!(d);
                }
                (StatusCode::UNPROCESSABLE_ENTITY, b)
            }
        };
        let mut resp = (status, Json(body)).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}

impl From<ServiceError> for SmError {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::NotFound(what) => match what.as_str() {
                "batch" => Self::not_found("batch job not found"),
                _ => Self::not_found("SIM not found"),
            },
            ServiceError::EmptyBatch => Self::field(
                "batchJob",
                "giccids",
                "missing_field",
                "giccids must not be empty",
            ),
            ServiceError::TooManyItems { max } => Self::field(
                "batchJob",
                "giccids",
                "invalid",
                format!("a batch job holds at most {max} SIMs"),
            ),
            ServiceError::InvalidRequest { message, errors } => {
                let field = errors
                    .first()
                    .and_then(|e| e.field.clone())
                    .unwrap_or_else(|| "body".into());
                let code = match errors.first().map(|e| e.code.as_str()) {
                    Some("missing_field") => "missing_field",
                    _ => "invalid",
                };
                Self::field("globalSim", &field, code, message)
            }
            ServiceError::Refused { message, .. } => {
                Self::field("globalSim", "body", "invalid", message)
            }
            ServiceError::Conflict(m) => Self::field("globalSim", "status", "illegal_status", m),
            ServiceError::Internal => Self::internal(),
        }
    }
}

/// The tenant of a request authenticated with `X-API-Key` (or Bearer).
#[derive(Debug, Clone)]
pub struct SmAuth(pub Tenant);

impl FromRequestParts<AppState> for SmAuth {
    type Rejection = SmError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, SmError> {
        let token = crate::auth::token(parts).map_err(|_| SmError::unauthorized())?;
        let (key_id, secret) = token.split_once('.').ok_or_else(SmError::unauthorized)?;
        match super::tenant_for(state, key_id, secret).await {
            Ok(Some(t)) => {
                crate::ops::rate_limit::check(&parts.extensions, &t.id).map_err(|l| {
                    SmError::Problem(
                        StatusCode::TOO_MANY_REQUESTS,
                        "Too Many Requests",
                        Some(l.message()),
                    )
                })?;
                Ok(SmAuth(t))
            }
            Ok(None) => Err(SmError::unauthorized()),
            Err(()) => Err(SmError::internal()),
        }
    }
}

/// A JSON object body; 400 `Body should be a JSON object` otherwise.
pub fn json_object(body: &[u8]) -> Result<serde_json::Map<String, Value>, SmError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(SmError::bad_request("Body should be a JSON object")),
    }
}

/// A 0-based `page` and a `size` (1..=max, default `default`) from the query.
pub fn paging(q: &HashMap<String, String>, default: i64, max: i64) -> Result<(i64, i64), SmError> {
    let num = |name: &str, min: i64, max: i64, default: i64| match q.get(name) {
        None => Ok(default),
        Some(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                SmError::field(
                    "query",
                    name,
                    "invalid",
                    format!("{name} must be a whole number from {min} to {max}"),
                )
            }),
    };
    Ok((num("page", 0, 1_000_000, 0)?, num("size", 1, max, default)?))
}

/// Smarthub time: `2018-10-10T10:32:50+0000` (UTC).
pub fn sm_time(ms: i64) -> String {
    use time::macros::format_description;
    let base = super::format_ms(
        ms,
        format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
    );
    format!("{base}+0000")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_like_the_seed() {
        assert_eq!(sm_time(1_539_167_570_000), "2018-10-10T10:32:50+0000");
    }
}
