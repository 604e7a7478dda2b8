//! simbatch HTTP.
//!
//! - [`native`]: the `/v1` API, one file per resource.
//! - [`error`]: the one error type, [`error::ApiError`], rendered as RFC 9457
//!   problem+json (its module doc is the error policy).
//! - [`auth`]: tenant API keys (`X-API-Key` or `Authorization: Bearer`).
//! - [`idempotency`]: `Idempotency-Key` with Stripe's semantics.
//! - [`openapi`]: the OpenAPI 3.1 document, served at `/openapi.json`.
//! - [`es2plus`]: SGP.22 ES2+ for operators, under `/gsma/rsp2/es2plus/`.
//! - [`docs`]: the interactive reference at `/docs` (vendored Swagger UI).
//! - [`ops`]: `/metrics`, per-tenant rate limits, the request span.
//! - [`console`]: the web console, served at `/` (embedded static files).
//! - [`dialects`]: the vendor dialects under their own prefixes, each a thin
//!   translator onto the same [`simbatch_engine::service::Service`].

pub mod auth;
pub mod console;
pub mod dialects;
pub mod docs;
pub mod error;
pub mod es2plus;
pub mod idempotency;
pub mod key_cache;
pub mod native;
pub mod openapi;
pub mod ops;
pub mod signed_url;

use std::sync::Arc;

use axum::extract::{DefaultBodyLimit, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use simbatch_engine::service::Service;
use simbatch_store::Store;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};

use crate::error::{ApiError, PROBLEM_JSON};

/// Largest JSON body accepted (streamed CSV/NDJSON have no total limit).
pub const JSON_LIMIT: usize = 64 * 1024 * 1024;

/// What handlers share.
#[derive(Clone)]
pub struct AppState {
    /// The use cases.
    pub service: Arc<Service>,
    /// Only for authentication and idempotency look-ups.
    pub store: Arc<dyn Store>,
    /// API keys verified lately.
    pub keys: Arc<key_cache::KeyCache>,
}

impl AppState {
    /// State over `service` and `store`, with an empty key cache.
    pub fn new(service: Arc<Service>, store: Arc<dyn Store>) -> Self {
        Self {
            service,
            store,
            keys: Arc::default(),
        }
    }

    /// The tenant of API key `key_id` with `secret`; `Ok(None)` when the
    /// pair is not a live key. Keys verified lately are not read again (see
    /// [`key_cache`]).
    pub async fn authenticate(
        &self,
        key_id: &str,
        secret: &str,
    ) -> simbatch_store::Result<Option<simbatch_store::Tenant>> {
        if let Some(t) = self.keys.get(key_id, secret) {
            return Ok(Some(t));
        }
        let tenant = self.store.authenticate(key_id, secret).await?;
        if let Some(t) = &tenant {
            self.keys.put(key_id, secret, t);
        }
        Ok(tenant)
    }
}

/// The whole HTTP application, with fresh metrics and no rate limit.
pub fn router(state: AppState) -> Router {
    router_with(state, ops::Ops::default())
}

/// The whole HTTP application with the given metrics and rate limits.
pub fn router_with(state: AppState, ops: ops::Ops) -> Router {
    use native::{batch_counts, batches, downloads, esim, events, profiles, sims, webhooks};
    let v1 = Router::new()
        .route("/v1/batches", post(batches::submit).get(batches::list))
        .route("/v1/batches/counts", get(batch_counts::counts))
        .route("/v1/batches/{id}", get(batches::get))
        .route("/v1/batches/{id}/items", get(batches::items))
        .route("/v1/batches/{id}/export", get(downloads::batch_export))
        .route("/v1/batches/{id}/cancel", post(batches::cancel))
        .route("/v1/batches/{id}/retry", post(batches::retry))
        .route("/v1/sims", get(sims::list))
        .route("/v1/sims/export", get(downloads::sims_export))
        .route("/v1/operations", get(downloads::operations))
        .route(
            "/v1/operations/{operation}/template.csv",
            get(downloads::operation_template),
        )
        .route("/v1/sims/{iccid}", get(sims::get))
        .route("/v1/sims/{iccid}/history", get(sims::history))
        .route("/v1/sims/{iccid}/{action}", post(sims::action))
        .route("/v1/events", get(events::list))
        .route("/v1/webhooks", post(webhooks::create).get(webhooks::list))
        .route(
            "/v1/webhooks/{id}",
            get(webhooks::get).delete(webhooks::delete),
        )
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::deliveries))
        .route("/v1/profiles/{iccid}", get(profiles::get))
        .route("/v1/profiles/{iccid}/qr.png", get(profiles::qr_png))
        .route("/v1/templates", post(esim::add).get(esim::list))
        .route("/v1/templates/{name}", get(esim::get))
        .route("/v1/profiles/{iccid}/package", get(esim::package));
    Router::new()
        .merge(v1)
        .merge(es2plus::routes())
        .merge(console::router())
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/openapi.json", get(openapi_json))
        .route("/metrics", get(ops::metrics::scrape))
        .merge(docs::routes())
        .fallback(|| async { ApiError::not_found("route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "this path does not accept this method",
            )
        })
        .layer(DefaultBodyLimit::max(JSON_LIMIT))
        .layer(tower_http::catch_panic::CatchPanicLayer::custom(
            panic_response,
        ))
        .layer(middleware::from_fn(problem_everywhere))
        // Dialects render their own vendor error bodies: outside the problem+json layer.
        .merge(
            dialects::router().layer(tower_http::catch_panic::CatchPanicLayer::custom(
                panic_response,
            )),
        )
        .layer(middleware::from_fn(ops::rate_limit::headers))
        .layer(PropagateRequestIdLayer::x_request_id())
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(ops::request_span)
                .on_response(DefaultOnResponse::new().level(tracing::Level::INFO)),
        )
        .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
        .layer(middleware::from_fn(ops::metrics::track))
        .layer(axum::Extension(ops.metrics.clone()))
        .layer(axum::Extension(ops.rate_limit.clone()))
        .with_state(state)
}

/// A handler that panics answers 500 `internal` like any other fault: the
/// connection is kept, and the panic message is logged, never sent.
fn panic_response(err: Box<dyn std::any::Any + Send + 'static>) -> Response {
    let message = err
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| err.downcast_ref::<&str>().copied())
        .unwrap_or("(non-string panic payload)");
    tracing::error!(panic = message, "request handler panicked");
    ApiError::internal().into_response()
}

/// Health of the process.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

/// Liveness: 200 while the process runs.
#[utoipa::path(get, path = "/healthz", tag = "health",
    responses((status = 200, description = "Alive", body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health {
        status: "ok".into(),
    })
}

/// Readiness: 200 when the store answers, else 503 `not_ready`.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses(
        (status = 200, description = "Ready", body = Health),
        (status = 503, description = "The store does not answer", body = error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn readyz(State(st): State<AppState>) -> Response {
    if st.service.ready().await {
        healthz().await.into_response()
    } else {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            "the store does not answer",
        )
        .into_response()
    }
}

/// The OpenAPI 3.1 document.
#[utoipa::path(get, path = "/openapi.json", tag = "health",
    responses((status = 200, description = "OpenAPI 3.1 document", body = Object)))]
pub async fn openapi_json() -> Response {
    let doc = openapi::spec_json();
    ([(header::CONTENT_TYPE, "application/json")], doc).into_response()
}

/// Any error answer that is not problem+json yet (axum's own rejections,
/// for instance) becomes one; a 5xx never carries its original body.
async fn problem_everywhere(req: Request, next: Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return resp;
    }
    let is_problem = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(PROBLEM_JSON.as_bytes()));
    if is_problem {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096)
        .await
        .ok()
        .and_then(|b| String::from_utf8(b.to_vec()).ok())
        .unwrap_or_default();
    let err = if status.is_server_error() {
        let mut e = ApiError::internal();
        e.status = status;
        e
    } else {
        let code = match status {
            StatusCode::NOT_FOUND => "not_found",
            StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
            StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
            StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
            StatusCode::UNPROCESSABLE_ENTITY => "invalid_type",
            StatusCode::UNAUTHORIZED => "unauthorized",
            _ => "bad_request",
        };
        let detail = if text.is_empty() {
            status.canonical_reason().unwrap_or("error").to_owned()
        } else {
            text
        };
        ApiError::new(status, code, detail)
    };
    let mut out = err.into_response();
    for (k, v) in parts.headers.iter() {
        if k != header::CONTENT_TYPE && k != header::CONTENT_LENGTH {
            out.headers_mut().insert(k.clone(), v.clone());
        }
    }
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn boom() -> &'static str {
        panic!("secret detail 465b5ce8")
    }

    #[tokio::test]
    async fn a_panicking_handler_answers_problem_500_without_its_message() {
        use tower::ServiceExt;
        let app: Router = Router::new().route("/boom", get(boom)).layer(
            tower_http::catch_panic::CatchPanicLayer::custom(panic_response),
        );
        let req = axum::http::Request::get("/boom")
            .body(axum::body::Body::empty())
            .unwrap();
        let resp = app.oneshot(req).await.unwrap();
        assert_eq!(resp.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(resp.headers()[header::CONTENT_TYPE], PROBLEM_JSON);
        let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("\"code\":\"internal\""), "{text}");
        assert!(
            !text.contains("465b5ce8"),
            "the panic message must not be sent"
        );
    }
}
