//! Where the tenant's Simlessly status-change callbacks go.
//!
//! Simlessly sets the callback URL in its web console; simbatch serves three
//! signed calls instead, in the vendor's all-POST style:
//!
//! - `POST /simlessly/api/v1/notify/config` with `{"url": "https://…"}`:
//!   sets (or replaces) the URL; `obj` carries `url`, `enabled`, and the
//!   callback's own `accessKey` and `secretKey`, which sign every callback
//!   the way Simlessly signs (the secret is shown only here);
//! - `POST /simlessly/api/v1/notify/config/query`: the URL, `accessKey`,
//!   `enabled` and `disabledReason`;
//! - `POST /simlessly/api/v1/notify/config/delete`: stops the callbacks.
//!
//! Deliveries are webhooks in the `simlessly` push format (body and headers
//! in [`simbatch_engine::push::simlessly`]): retried until the endpoint
//! answers 2xx, and listed in the native `GET /v1/webhooks/{id}/deliveries`.

use serde_json::{json, Map, Value};
use simbatch_engine::push::simlessly::FORMAT;
use simbatch_engine::service::ServiceError;
use simbatch_store::Tenant;

use super::envelope::{Code, Refusal};
use crate::AppState;

fn not_configured() -> Refusal {
    Refusal::new(
        Code::NotifyNotConfigured,
        "no callback URL is configured: set one with notify/config",
    )
}

/// Set the callback URL from `{"url": …}`: the envelope's `obj`.
pub async fn set(
    st: &AppState,
    tenant: &Tenant,
    body: &Map<String, Value>,
) -> Result<Value, Refusal> {
    if let Some(k) = body.keys().find(|k| k.as_str() != "url") {
        return Err(Refusal::new(
            Code::InvalidParameter,
            format!("{k} is not a parameter of notify/config: send only url"),
        ));
    }
    let url = super::wire::required_string(body, "url")?;
    let hook = st
        .service
        .set_push_endpoint(tenant, FORMAT, &url)
        .await
        .map_err(|e| match e {
            ServiceError::InvalidRequest { message, .. } => {
                Refusal::new(Code::InvalidParameter, format!("url: {message}"))
            }
            other => other.into(),
        })?;
    Ok(json!({"url": hook.url, "enabled": hook.enabled,
              "accessKey": hook.id, "secretKey": hook.secret}))
}

/// The configured callback: the envelope's `obj` (never the secret).
pub async fn query(st: &AppState, tenant: &Tenant) -> Result<Value, Refusal> {
    let hook = st
        .service
        .push_endpoint(tenant, FORMAT)
        .await?
        .ok_or_else(not_configured)?;
    Ok(
        json!({"url": hook.url, "enabled": hook.enabled, "accessKey": hook.id,
              "disabledReason": hook.disabled_reason}),
    )
}

/// Remove the callback URL.
pub async fn delete(st: &AppState, tenant: &Tenant) -> Result<Value, Refusal> {
    let hook = st
        .service
        .push_endpoint(tenant, FORMAT)
        .await?
        .ok_or_else(not_configured)?;
    st.service.delete_webhook(tenant, &hook.id).await?;
    Ok(Value::Null)
}
