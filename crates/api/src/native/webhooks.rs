//! `/v1/webhooks`: endpoints that receive the tenant's events, signed.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;
use utoipa::ToSchema;

use super::{DeliveryDto, DeliveryList, WebhookDto, WebhookList};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;

/// A new endpoint.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct CreateWebhookBody {
    /// `http://` or `https://` URL, at most 2048 characters.
    pub url: String,
}

/// Register an endpoint. The signing secret is in this response only.
#[utoipa::path(
    post, path = "/v1/webhooks", tag = "webhooks",
    request_body = CreateWebhookBody,
    responses(
        (status = 201, description = "The endpoint, with its secret", body = WebhookDto),
        (status = 400, description = "Malformed JSON", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Not JSON", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Missing or invalid url", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn create(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body?;
    let v: Value = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    let url = match v.get("url") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => {
            return Err(
                ApiError::unprocessable("invalid_type", "url must be a string").with_error(
                    None,
                    Some("url"),
                    "invalid_type",
                    "must be a string",
                ),
            )
        }
        None => {
            return Err(
                ApiError::unprocessable("invalid_request", "url is required").with_error(
                    None,
                    Some("url"),
                    "missing_field",
                    "url is required",
                ),
            )
        }
    };
    let w = st.service.create_webhook(&tenant, &url).await?;
    Ok((StatusCode::CREATED, Json(WebhookDto::with_secret(w))).into_response())
}

/// The tenant's endpoints (without secrets).
#[utoipa::path(
    get, path = "/v1/webhooks", tag = "webhooks",
    responses(
        (status = 200, description = "Endpoints", body = WebhookList),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(State(st): State<AppState>, Auth(tenant): Auth) -> ApiResult<Json<WebhookList>> {
    let list = st.service.list_webhooks(&tenant).await?;
    Ok(Json(WebhookList {
        data: list.into_iter().map(WebhookDto::public).collect(),
    }))
}

/// One endpoint (without its secret).
#[utoipa::path(
    get, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "The endpoint", body = WebhookDto),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<WebhookDto>> {
    Ok(Json(WebhookDto::public(
        st.service.get_webhook(&tenant, &id).await?,
    )))
}

/// Remove an endpoint.
#[utoipa::path(
    delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn delete(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> ApiResult<StatusCode> {
    st.service.delete_webhook(&tenant, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Recent delivery attempts of an endpoint, newest first.
#[utoipa::path(
    get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = "Webhook id")),
    responses(
        (status = 200, description = "Attempts", body = DeliveryList),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such endpoint for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn deliveries(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<DeliveryList>> {
    let list = st.service.webhook_deliveries(&tenant, &id, 100).await?;
    Ok(Json(DeliveryList {
        data: list.into_iter().map(DeliveryDto::from).collect(),
    }))
}
