//! Smarthub push notifications: where the tenant's SIM status and IMEI
//! change notifications go (`/notification-config`).
//!
//! Smarthub configures the push URL outside its API; simbatch serves
//! `PUT`, `GET` and `DELETE /smarthub/v1/notification-config`. Deliveries
//! are webhooks in the `smarthub` push format (bodies in
//! [`simbatch_engine::push`]), signed with Standard Webhooks headers using
//! the secret returned by `PUT`, and retried until the endpoint answers 2xx.

use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use simbatch_engine::push::SMARTHUB;

use super::{json_object, SmAuth, SmError};
use crate::AppState;

/// `PUT /notification-config` with `{"url": "https://..."}`: 200 with the URL and signing secret.
pub async fn put(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
    body: Bytes,
) -> Result<Json<Value>, SmError> {
    let body = json_object(&body)?;
    if let Some(k) = body.keys().find(|k| k.as_str() != "url") {
        return Err(SmError::field(
            "notificationConfig",
            k,
            "invalid",
            format!("{k} is not a field of the notification configuration"),
        ));
    }
    let url = match body.get("url") {
        Some(Value::String(u)) if !u.trim().is_empty() => u.clone(),
        None | Some(Value::Null) | Some(Value::String(_)) => {
            return Err(SmError::field(
                "notificationConfig",
                "url",
                "missing_field",
                "url is required",
            ))
        }
        Some(_) => return Err(SmError::bad_request("url should be a string")),
    };
    let hook = st
        .service
        .set_push_endpoint(&tenant, SMARTHUB, &url)
        .await
        .map_err(|e| match e {
            simbatch_engine::service::ServiceError::InvalidRequest { message, .. } => {
                SmError::field("notificationConfig", "url", "invalid", message)
            }
            other => other.into(),
        })?;
    Ok(Json(
        json!({"url": hook.url, "secret": hook.secret, "enabled": hook.enabled}),
    ))
}

/// `GET /notification-config`: the URL and whether deliveries are enabled.
pub async fn get(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
) -> Result<Json<Value>, SmError> {
    let hook = st
        .service
        .push_endpoint(&tenant, SMARTHUB)
        .await?
        .ok_or_else(|| SmError::not_found("no notification URL is configured"))?;
    Ok(Json(
        json!({"url": hook.url, "enabled": hook.enabled, "disabledReason": hook.disabled_reason}),
    ))
}

/// `DELETE /notification-config`: 204; 404 when none is configured.
pub async fn delete(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
) -> Result<Response, SmError> {
    let hook = st
        .service
        .push_endpoint(&tenant, SMARTHUB)
        .await?
        .ok_or_else(|| SmError::not_found("no notification URL is configured"))?;
    st.service.delete_webhook(&tenant, &hook.id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
