//! ES2+ (SGP.22 §5.3): the interface an operator's BSS uses to order eSIM
//! profiles from the SM-DP+, under `/gsma/rsp2/es2plus/`.
//!
//! Served functions: `downloadOrder`, `confirmOrder`, `cancelOrder`,
//! `releaseProfile`. Each is a JSON POST whose body carries a `header` with
//! `functionRequesterIdentifier` and `functionCallIdentifier`. They act on
//! the same profiles, with the same states, as the batch operations: each
//! call is one [`simbatch_engine::service::Service::profile_command`], which
//! writes the profile, a SIM history row and a `profile.status_changed` event
//! in one transaction.
//!
//! # Transport rules
//!
//! - `X-Admin-Protocol: gsma/rsp/v2.<x>.<y>` is required; without it (or with
//!   another value) the answer is HTTP 400 problem+json
//!   `admin_protocol_invalid`. The header is echoed on every ES2+ answer.
//! - Authentication is the tenant API key, as on `/v1` (`X-API-Key: <token>`
//!   or `Authorization: Bearer <token>`); otherwise HTTP 401 problem+json.
//!   SGP.22 leaves the choice of the mutual authentication to the deployment;
//!   this one is the platform's. A tenant sees only its own profiles: another
//!   tenant's ICCID is unknown.
//! - A body that is not a JSON object is HTTP 400 problem+json `malformed_json`.
//! - Everything else is HTTP 200 with `header.functionExecutionStatus`:
//!   `Executed-Success`, or `Failed` with `statusCodeData`
//!   (`subjectCode`, `reasonCode`, `subjectIdentifier`, `message`). The codes
//!   are in [`codes`].
//! - A call repeated with the same `functionRequesterIdentifier` and
//!   `functionCallIdentifier` is not executed again: it gets the first
//!   call's answer (see `replay.rs`).

pub mod codes;
mod functions;
mod replay;

use axum::body::Bytes;
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Map, Value};

use crate::error::ApiError;
use crate::AppState;
use codes::{reason, subject, Failed};

/// Where ES2+ is served.
pub const BASE: &str = "/gsma/rsp2/es2plus";
/// The protocol header.
pub const ADMIN_PROTOCOL: &str = "x-admin-protocol";

/// The ES2+ routes (merged into the main router, so they share its layers).
pub fn routes() -> Router<AppState> {
    Router::new()
        .route(
            &format!("{BASE}/downloadOrder"),
            post(functions::download_order),
        )
        .route(
            &format!("{BASE}/confirmOrder"),
            post(functions::confirm_order),
        )
        .route(
            &format!("{BASE}/cancelOrder"),
            post(functions::cancel_order),
        )
        .route(
            &format!("{BASE}/releaseProfile"),
            post(functions::release_profile),
        )
        .route_layer(middleware::from_fn(require_admin_protocol))
}

/// Whether `v` is `gsma/rsp/v2.<x>.<y>` (digits).
pub fn valid_admin_protocol(v: &str) -> bool {
    let Some(version) = v.strip_prefix("gsma/rsp/v") else {
        return false;
    };
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3
        && parts[0] == "2"
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.len() <= 3 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuse a request without a valid `X-Admin-Protocol` before anything else
/// (authentication included); echo the header on the answer.
async fn require_admin_protocol(req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(ADMIN_PROTOCOL)
        .map(|v| v.to_str().map(str::trim).map(str::to_owned));
    let version = match given {
        None => {
            return ApiError::bad_request(
                "admin_protocol_invalid",
                "the X-Admin-Protocol header is required (e.g. gsma/rsp/v2.2.0)",
            )
            .into_response()
        }
        Some(Ok(v)) if valid_admin_protocol(&v) => v,
        Some(_) => {
            return ApiError::bad_request(
                "admin_protocol_invalid",
                "X-Admin-Protocol must be gsma/rsp/v2.<x>.<y>",
            )
            .into_response()
        }
    };
    let mut resp = next.run(req).await;
    if let Ok(v) = HeaderValue::from_str(&version) {
        resp.headers_mut().insert(ADMIN_PROTOCOL, v);
    }
    resp
}

/// A request body: its fields, after the header was checked.
pub(crate) struct Envelope {
    /// The function's fields (everything but `header`).
    pub body: Map<String, Value>,
    /// `functionRequesterIdentifier`.
    pub requester: String,
    /// `functionCallIdentifier`.
    pub call_id: String,
}

/// Read the body: not a JSON object → 400; a bad `header` → `Failed`.
pub(crate) fn envelope(bytes: &Bytes) -> Result<Result<Envelope, Failed>, ApiError> {
    let value: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    let Value::Object(mut body) = value else {
        return Err(ApiError::bad_request(
            "malformed_json",
            "the body must be a JSON object",
        ));
    };
    let header = match body.remove("header") {
        Some(Value::Object(h)) => h,
        None | Some(Value::Null) => {
            return Ok(Err(Failed::new(
                subject::FUNCTION_REQUESTER,
                reason::MISSING,
                Some("header".into()),
                "header is required",
            )))
        }
        Some(_) => {
            return Ok(Err(Failed::new(
                subject::FUNCTION_REQUESTER,
                reason::INVALID,
                Some("header".into()),
                "header must be an object",
            )))
        }
    };
    let mut ids = Vec::new();
    for name in ["functionRequesterIdentifier", "functionCallIdentifier"] {
        match header.get(name) {
            Some(Value::String(s)) if !s.trim().is_empty() && s.len() <= 256 => {
                ids.push(s.trim().to_owned())
            }
            None | Some(Value::Null) => {
                return Ok(Err(Failed::new(
                    subject::FUNCTION_REQUESTER,
                    reason::MISSING,
                    Some(name.into()),
                    format!("header.{name} is required"),
                )))
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                return Ok(Err(Failed::new(
                    subject::FUNCTION_REQUESTER,
                    reason::MISSING,
                    Some(name.into()),
                    format!("header.{name} must not be empty"),
                )))
            }
            Some(_) => {
                return Ok(Err(Failed::new(
                    subject::FUNCTION_REQUESTER,
                    reason::INVALID,
                    Some(name.into()),
                    format!("header.{name} must be a string of at most 256 characters"),
                )))
            }
        }
    }
    let call_id = ids.pop().unwrap_or_default();
    Ok(Ok(Envelope {
        body,
        requester: ids.pop().unwrap_or_default(),
        call_id,
    }))
}

/// HTTP 200 with a JSON body, as SGP.22 answers every executed function.
fn answer(body: Value) -> Response {
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/json;charset=UTF-8")],
        body.to_string(),
    )
        .into_response()
}

/// `Executed-Success`, with the function's output fields.
pub(crate) fn success_body(mut fields: Map<String, Value>) -> Value {
    let mut body = Map::new();
    body.insert(
        "header".into(),
        json!({"functionExecutionStatus": {"status": "Executed-Success"}}),
    );
    body.append(&mut fields);
    Value::Object(body)
}

/// `Failed`, with its `statusCodeData`.
pub(crate) fn failed_body(f: &Failed) -> Value {
    let mut data = json!({"subjectCode": f.subject, "reasonCode": f.reason, "message": f.message});
    if let Some(id) = &f.identifier {
        data["subjectIdentifier"] = json!(id);
    }
    json!({"header": {"functionExecutionStatus": {"status": "Failed", "statusCodeData": data}}})
}

/// A `Failed` answer.
pub(crate) fn failed(f: &Failed) -> Response {
    answer(failed_body(f))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_protocol_values() {
        for ok in ["gsma/rsp/v2.2.0", "gsma/rsp/v2.1.0", "gsma/rsp/v2.5.12"] {
            assert!(valid_admin_protocol(ok), "{ok}");
        }
        for bad in [
            "",
            "gsma/rsp/v2",
            "gsma/rsp/v2.2",
            "gsma/rsp/v3.0.0",
            "gsma/rsp/v2.x.y",
            "GSMA/RSP/V2.2.0",
            "gsma/rsp/v2.2.0.1",
            "gsma/rsp/v2..0",
        ] {
            assert!(!valid_admin_protocol(bad), "{bad}");
        }
    }
}
