//! `Idempotency-Key` with Stripe's semantics, on top of
//! `Store::idempotency_begin/finish/abort`.
//!
//! - First use: the request runs; a 2xx or 4xx answer is saved, a 5xx
//!   releases the key so the client may try again.
//! - Same key, same request (SHA-256 of method, path and body): the first
//!   answer is replayed byte for byte, with `Idempotent-Replayed: true`.
//! - Same key, another request: 422 `idempotency_key_reused`.
//! - Same key while the first request still runs: 409 `idempotency_key_in_use`.
//!
//! Streamed CSV/NDJSON uploads cannot be hashed before they run, so for them
//! the hash covers method, path, query and content type only.

use std::future::Future;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use sha2::{Digest, Sha256};
use simbatch_store::{Idempotency, Store, Tenant};

use crate::error::{ApiError, PROBLEM_JSON};

/// Header name.
pub const HEADER: &str = "idempotency-key";
/// Longest key accepted.
pub const MAX_KEY: usize = 255;

/// The key a request carries, validated.
pub fn key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(v) = headers.get(HEADER) else {
        return Ok(None);
    };
    let bad = || {
        ApiError::bad_request(
            "invalid_header",
            format!("Idempotency-Key must be 1 to {MAX_KEY} visible ASCII characters"),
        )
    };
    let s = v.to_str().map_err(|_| bad())?.trim();
    if s.is_empty() || s.len() > MAX_KEY || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(bad());
    }
    Ok(Some(s.to_owned()))
}

/// SHA-256 (hex) of the parts that identify a request.
pub fn request_hash(parts: &[&[u8]]) -> String {
    let mut h = Sha256::new();
    for p in parts {
        h.update((p.len() as u64).to_be_bytes());
        h.update(p);
    }
    hex::encode(h.finalize())
}

/// A JSON answer ready to be sent and saved.
pub struct Answer {
    /// Status.
    pub status: StatusCode,
    /// JSON or problem+json text.
    pub body: String,
    /// Extra headers (not replayed).
    pub headers: Vec<(header::HeaderName, HeaderValue)>,
}

impl Answer {
    /// A JSON answer.
    pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Self {
        match serde_json::to_string(value) {
            Ok(body) => Self {
                status,
                body,
                headers: Vec::new(),
            },
            Err(_) => Self::from(ApiError::internal()),
        }
    }
}

impl From<ApiError> for Answer {
    fn from(e: ApiError) -> Self {
        Self {
            status: e.status,
            body: serde_json::to_string(&e.problem()).unwrap_or_default(),
            headers: Vec::new(),
        }
    }
}

fn render(status: StatusCode, body: String) -> Response {
    let ct = if status.is_client_error() || status.is_server_error() {
        PROBLEM_JSON
    } else {
        "application/json"
    };
    let mut r = (status, Body::from(body)).into_response();
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(ct));
    r
}

impl IntoResponse for Answer {
    fn into_response(self) -> Response {
        let mut r = render(self.status, self.body);
        for (k, v) in self.headers {
            r.headers_mut().insert(k, v);
        }
        r
    }
}

/// An answer that can be kept for replays: its status and body text.
pub(crate) trait Keep {
    /// HTTP status.
    fn status(&self) -> StatusCode;
    /// Body text, replayed as is.
    fn body(&self) -> &str;
}

impl Keep for Answer {
    fn status(&self) -> StatusCode {
        self.status
    }
    fn body(&self) -> &str {
        &self.body
    }
}

/// Releases a reserved key if the request is dropped midway.
struct Guard {
    store: std::sync::Arc<dyn Store>,
    tenant: String,
    key: String,
    armed: bool,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        let (store, tenant, key) = (self.store.clone(), self.tenant.clone(), self.key.clone());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let _ = store.idempotency_abort(&tenant, &key).await;
            });
        }
    }
}

/// Run `run` under a key that `idempotency_begin` just reserved, then keep
/// its answer for replays. A server error, or a request dropped midway,
/// releases the key instead, so the call can be retried.
pub(crate) async fn run_reserved<A: Keep>(
    store: &std::sync::Arc<dyn Store>,
    tenant_id: &str,
    key: &str,
    run: impl Future<Output = A>,
) -> A {
    let mut guard = Guard {
        store: store.clone(),
        tenant: tenant_id.to_owned(),
        key: key.to_owned(),
        armed: true,
    };
    let answer = run.await;
    guard.armed = false;
    let saved = if answer.status().is_server_error() {
        store.idempotency_abort(tenant_id, key).await
    } else {
        store
            .idempotency_finish(tenant_id, key, answer.status().as_u16(), answer.body())
            .await
    };
    if let Err(e) = saved {
        tracing::error!(error = %e, "could not keep an idempotent answer");
    }
    answer
}

/// Run `run` under the key (if any).
pub async fn with_key<F>(
    store: &std::sync::Arc<dyn Store>,
    tenant: &Tenant,
    key: Option<String>,
    hash: String,
    run: F,
) -> Response
where
    F: Future<Output = Answer>,
{
    let Some(key) = key else {
        return run.await.into_response();
    };
    match store.idempotency_begin(&tenant.id, &key, &hash).await {
        Ok(Idempotency::New) => {}
        Ok(Idempotency::Replay { status, body }) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
            let mut r = render(status, body);
            r.headers_mut()
                .insert("idempotent-replayed", HeaderValue::from_static("true"));
            return r;
        }
        Ok(Idempotency::Mismatch) => {
            return ApiError::unprocessable(
                "idempotency_key_reused",
                "this Idempotency-Key was used with a different request",
            )
            .into_response()
        }
        Ok(Idempotency::InProgress) => {
            return ApiError::new(
                StatusCode::CONFLICT,
                "idempotency_key_in_use",
                "a request with this Idempotency-Key is still running; retry later",
            )
            .into_response()
        }
        Err(e) => {
            tracing::error!(error = %e, "idempotency_begin failed");
            return ApiError::internal().into_response();
        }
    }
    run_reserved(store, &tenant.id, &key, run)
        .await
        .into_response()
}
