//! Vendor dialects: thin translators from a vendor's wire format onto the
//! same [`simbatch_engine::service::Service`] the native API uses.
//!
//! Each dialect lives under its own prefix (ARCHITECTURE §5), authenticates
//! with the tenant keys in the vendor's scheme and renders errors in the
//! vendor's shape. Dialect routes are mounted outside the native
//! problem+json middleware, so their error bodies reach the client as the
//! vendor defines them.
//!
//! - [`ecc`]: Nobill ECC, `/ecc/v1/...`.
//! - [`simexpress`]: sim.express, `/simexpress/v1/...` (`X-API-Key`).
//! - [`simlessly`]: Simlessly RSP, `/simlessly/api/v1/...` (HMAC-signed requests).
//! - [`smarthub`]: Smarthub, `/smarthub/v1/...`.

pub mod ecc;
pub mod simexpress;
pub mod simlessly;
pub mod smarthub;

use axum::Router;

use crate::AppState;

/// Every dialect's routes, each under its own prefix.
pub fn router() -> Router<AppState> {
    Router::new()
        .merge(ecc::router())
        .merge(smarthub::router())
        .merge(simlessly::router())
        .merge(simexpress::router())
}

/// Format Unix milliseconds with a `time` format description (UTC).
pub(crate) fn format_ms(
    ms: i64,
    fmt: &[time::format_description::BorrowedFormatItem<'_>],
) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(fmt).ok())
        .unwrap_or_default()
}

/// Look a tenant up by key id and secret; `Ok(None)` when the pair is not a
/// live key, `Err(())` when the store failed (already logged).
pub(crate) async fn tenant_for(
    state: &AppState,
    key_id: &str,
    secret: &str,
) -> Result<Option<simbatch_store::Tenant>, ()> {
    if key_id.is_empty() || secret.is_empty() || key_id.len() > 128 || secret.len() > 256 {
        return Ok(None);
    }
    state
        .authenticate(key_id, secret)
        .await
        .map_err(|e| tracing::error!(error = %e, "authentication failed on the store"))
}
