//! Tenant authentication for the native API.
//!
//! A client sends its token `<key_id>.<secret>` as `X-API-Key: <token>` or
//! `Authorization: Bearer <token>`. Anything else is 401 `unauthorized`.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use simbatch_store::Tenant;

use crate::error::ApiError;
use crate::AppState;

/// Longest token considered (keys are `sk_` + 16 hex, `.`, 64 hex).
const MAX_TOKEN: usize = 256;

/// The authenticated tenant.
#[derive(Debug, Clone)]
pub struct Auth(pub Tenant);

/// The token a request carries, if any.
pub fn token(parts: &Parts) -> Result<&str, ApiError> {
    if let Some(v) = parts.headers.get("x-api-key") {
        return v
            .to_str()
            .map(str::trim)
            .map_err(|_| ApiError::unauthorized("the X-API-Key header is not valid text"));
    }
    if let Some(v) = parts.headers.get(AUTHORIZATION) {
        let v = v
            .to_str()
            .map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
        let (scheme, rest) = v.trim().split_once(' ').unwrap_or((v, ""));
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Err(ApiError::unauthorized(
                "use Authorization: Bearer <token> or X-API-Key: <token>",
            ));
        }
        return Ok(rest.trim());
    }
    Err(ApiError::unauthorized(
        "missing credentials: send X-API-Key: <token> or Authorization: Bearer <token>",
    ))
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        tenant_for(parts, state).await.map(Auth)
    }
}

/// The tenant a request's token (`X-API-Key` or Bearer) names; dialects that
/// share this scheme (sim.express) call it and render the error their way.
pub async fn tenant_for(parts: &Parts, state: &AppState) -> Result<Tenant, ApiError> {
    let token = token(parts)?;
    let invalid = || ApiError::unauthorized("invalid API key");
    if token.len() > MAX_TOKEN {
        return Err(invalid());
    }
    let (key_id, secret) = token.split_once('.').ok_or_else(invalid)?;
    if key_id.is_empty() || secret.is_empty() {
        return Err(invalid());
    }
    match state.authenticate(key_id, secret).await {
        Ok(Some(t)) => {
            crate::ops::rate_limit::admit(parts, &t.id)?;
            Ok(t)
        }
        Ok(None) => Err(invalid()),
        Err(e) => {
            tracing::error!(error = %e, "authentication failed on the store");
            Err(ApiError::internal())
        }
    }
}
