//! `/metrics` and the middleware that times every request by its matched
//! route template (so `/v1/batches/{id}`, never one label per batch id).

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::Extension;
use simbatch_engine::metrics::{Metrics, CONTENT_TYPE};

use crate::error::ApiError;
use crate::AppState;

/// Label for requests that matched no route (bounded, unlike raw paths).
pub const UNMATCHED: &str = "unmatched";

/// Middleware: observe the request's duration by method, route and status.
pub async fn track(
    Extension(metrics): Extension<Arc<Metrics>>,
    req: Request,
    next: Next,
) -> Response {
    let started = Instant::now();
    let method = req.method().as_str().to_owned();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or(UNMATCHED, |p| p.as_str())
        .to_owned();
    let resp = next.run(req).await;
    metrics.http_request(&method, &route, resp.status().as_u16(), started.elapsed());
    resp
}

/// Prometheus metrics of this process (OpenMetrics text). Not
/// authenticated: serve it on a network only the scraper reaches.
#[utoipa::path(get, path = "/metrics", tag = "health",
    responses(
        (status = 200, description = "Metrics in the OpenMetrics text format", body = String, content_type = "application/openmetrics-text"),
        (status = 500, description = "The store did not answer", body = crate::error::Problem, content_type = "application/problem+json"),
    ))]
pub async fn scrape(
    State(st): State<AppState>,
    Extension(metrics): Extension<Arc<Metrics>>,
) -> Response {
    match metrics.encode_with(st.store.as_ref()).await {
        Ok(text) => ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "metrics: the store did not answer");
            ApiError::internal().into_response()
        }
    }
}
