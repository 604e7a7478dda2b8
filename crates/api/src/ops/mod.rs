//! What the people who run simbatch need from the HTTP layer: Prometheus
//! metrics ([`metrics`]), per-tenant rate limits ([`rate_limit`]) and a
//! request span that carries the `x-request-id` ([`request_span`]).
//!
//! [`Ops`] holds the process-wide pieces; [`crate::router_with`] installs
//! them. `docs/operations.md` is the operator's guide.

pub mod metrics;
pub mod rate_limit;

use std::sync::Arc;

use axum::http::Request;
use simbatch_engine::metrics::Metrics;
use tracing::Span;

pub use rate_limit::{RateLimitConfig, RateLimiter};

/// Process-wide operational state shared by the router and the background tasks.
#[derive(Clone, Debug)]
pub struct Ops {
    /// The metrics registry (give the same `Arc` to the workers and the dispatcher).
    pub metrics: Arc<Metrics>,
    /// Per-tenant limits; `None` turns them off.
    pub rate_limit: Option<Arc<RateLimiter>>,
}

impl Default for Ops {
    /// Fresh metrics, no rate limit.
    fn default() -> Self {
        Self {
            metrics: Metrics::shared(),
            rate_limit: None,
        }
    }
}

impl Ops {
    /// Metrics shared with the background tasks, and optional limits.
    pub fn new(metrics: Arc<Metrics>, rate_limit: Option<RateLimitConfig>) -> Self {
        Self {
            metrics,
            rate_limit: rate_limit.map(|c| Arc::new(RateLimiter::new(c))),
        }
    }
}

/// The span of one HTTP request: method, path and the request id that
/// `SetRequestIdLayer` assigned (or the client sent), so every log line of
/// the request can be matched to the `x-request-id` the client saw.
pub fn request_span<B>(req: &Request<B>) -> Span {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id = %id,
    )
}
