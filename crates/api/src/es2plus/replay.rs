//! `functionCallIdentifier`: a function call is executed once.
//!
//! An operator's BSS that gets no answer (a timeout, a dropped connection)
//! sends the same call again, with the same `functionRequesterIdentifier`
//! and `functionCallIdentifier`. The repeat must not order, confirm, cancel
//! or release a second time: it gets the answer of the first execution,
//! byte for byte. The answers are kept in the store's idempotency records
//! (both backends), under a key per tenant, requester and call, for as long
//! as the sweeper keeps idempotency keys.
//!
//! - Same identifiers, same function and fields: the first answer, replayed.
//! - Same identifiers, another function or other fields: `Failed`, subject
//!   1.1 (function requester), reason 3.3 (already in use).
//! - Same identifiers while the first call still runs: the repeat waits for
//!   it (a few seconds at most) and replays its answer; if it is still
//!   running then, the same `Failed` 3.3 with a message to retry.
//! - An answer that is a server error is not kept, so the call can be retried.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value};
use simbatch_store::{Idempotency, Store, Tenant};

use super::codes::{reason, subject, Failed};
use super::{failed, Envelope};
use crate::error::{ApiError, PROBLEM_JSON};
use crate::idempotency::{request_hash, run_reserved, Keep};

/// How long a repeat waits for the first call to finish.
const WAIT: Duration = Duration::from_secs(5);
/// How often it looks.
const POLL: Duration = Duration::from_millis(25);

/// An ES2+ answer: HTTP status and body (JSON, or problem+json for errors).
pub(crate) struct Answer {
    /// Status.
    pub status: StatusCode,
    /// Body text.
    pub body: String,
}

impl Answer {
    /// HTTP 200 with an ES2+ JSON body.
    pub fn ok(body: &Value) -> Self {
        Self {
            status: StatusCode::OK,
            body: body.to_string(),
        }
    }
}

impl Keep for Answer {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn body(&self) -> &str {
        &self.body
    }
}

impl From<ApiError> for Answer {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            body: serde_json::to_string(&e.problem()).unwrap_or_default(),
        }
    }
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let ct = if self.status.is_success() {
            "application/json;charset=UTF-8"
        } else {
            PROBLEM_JSON
        };
        let mut r = (self.status, self.body).into_response();
        r.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
        r
    }
}

/// The store key of a call: the requester and call identifiers, each
/// length-prefixed so no two pairs give the same key. It contains a space,
/// which an `Idempotency-Key` header never does, so the two never meet.
pub(crate) fn call_key(requester: &str, call: &str) -> String {
    format!(
        "es2plus {}:{requester} {}:{call}",
        requester.len(),
        call.len()
    )
}

/// What identifies the request: the function and its fields (without the
/// header). Object keys serialise sorted, so field order does not matter.
fn fingerprint(function: &str, body: &Map<String, Value>) -> String {
    let fields = serde_json::to_string(body).unwrap_or_default();
    request_hash(&[function.as_bytes(), fields.as_bytes()])
}

fn reused(message: &str) -> Response {
    failed(&Failed::new(
        subject::FUNCTION_REQUESTER,
        reason::ALREADY_IN_USE,
        Some("functionCallIdentifier".into()),
        message,
    ))
}

/// Run `execute` once per (tenant, requester, call); replay its answer to repeats.
pub(crate) async fn once<F>(
    store: &Arc<dyn Store>,
    tenant: &Tenant,
    function: &str,
    env: &Envelope,
    execute: F,
) -> Response
where
    F: Future<Output = Answer>,
{
    let key = call_key(&env.requester, &env.call_id);
    let hash = fingerprint(function, &env.body);
    let started = tokio::time::Instant::now();
    loop {
        match store.idempotency_begin(&tenant.id, &key, &hash).await {
            Ok(Idempotency::New) => break,
            Ok(Idempotency::Replay { status, body }) => {
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                return Answer { status, body }.into_response();
            }
            Ok(Idempotency::Mismatch) => {
                return reused(
                    "this functionCallIdentifier was already used by this functionRequesterIdentifier for another function call",
                )
            }
            Ok(Idempotency::InProgress) if started.elapsed() < WAIT => {
                tokio::time::sleep(POLL).await;
            }
            Ok(Idempotency::InProgress) => {
                return reused(
                    "a function call with this functionCallIdentifier is still being executed; retry later",
                )
            }
            Err(e) => {
                tracing::error!(error = %e, "es2plus: idempotency_begin failed");
                return ApiError::internal().into_response();
            }
        }
    }
    run_reserved(store, &tenant.id, &key, execute)
        .await
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_keys_do_not_collide() {
        assert_ne!(call_key("a b", "c"), call_key("a", "b c"));
        assert_ne!(call_key("a:1", "x"), call_key("a", "1:x"));
        assert!(call_key("r", "c").contains(' '));
    }

    #[test]
    fn fingerprints_ignore_field_order_but_not_values() {
        let a: Map<String, Value> = serde_json::from_str(r#"{"iccid":"1","eid":"2"}"#).unwrap();
        let b: Map<String, Value> = serde_json::from_str(r#"{"eid":"2","iccid":"1"}"#).unwrap();
        let c: Map<String, Value> = serde_json::from_str(r#"{"eid":"3","iccid":"1"}"#).unwrap();
        assert_eq!(fingerprint("f", &a), fingerprint("f", &b));
        assert_ne!(fingerprint("f", &a), fingerprint("f", &c));
        assert_ne!(fingerprint("f", &a), fingerprint("g", &a));
    }
}
