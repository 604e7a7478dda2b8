//! Vendor dialects: thin translators from a vendor's wire format onto the
//! same [`simbatch_engine::service::Service`] the native API calls. Each
//! lives under its own prefix (ARCHITECTURE §5), shares tenants and keys
//! with the native API, and renders core state in the vendor's shapes.
//!
//! - [`simlessly`]: Simlessly RSP under `/simlessly` (HMAC-signed requests).
//! - [`simexpress`]: sim.express under `/simexpress` (`X-API-Key`).

pub mod simexpress;
pub mod simlessly;
