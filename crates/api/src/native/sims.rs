//! `/v1/sims`: read SIMs and their history; single-SIM orders.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use simbatch_core::{Operation, SimStatus};
use simbatch_store::SimFilter;
use utoipa::{IntoParams, ToSchema};

use super::{page_size, BatchDto, HistoryDto, HistoryPage, ItemDto, SimDto, SimPage};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;

/// Longest wait of a single-SIM order, in seconds.
pub const MAX_WAIT: u64 = 30;

/// Filters for listing SIMs.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListSimsQuery {
    /// Only this status (`INVENTORY`, `ACTIVATED`, `SUSPENDED`, `RETIRED`).
    pub status: Option<String>,
    /// Only this rate plan.
    pub rate_plan: Option<String>,
    /// Custom field 1 equals.
    pub custom_field_1: Option<String>,
    /// Custom field 2 equals.
    pub custom_field_2: Option<String>,
    /// Custom field 3 equals.
    pub custom_field_3: Option<String>,
    /// Custom field 4 equals.
    pub custom_field_4: Option<String>,
    /// Custom field 5 equals.
    pub custom_field_5: Option<String>,
    /// Only this IMSI.
    pub imsi: Option<String>,
    /// Only this MSISDN.
    pub msisdn: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000; default 100.
    pub limit: Option<i64>,
}

fn parse_sim_status(s: &str) -> Option<SimStatus> {
    [
        SimStatus::Inventory,
        SimStatus::Activated,
        SimStatus::Suspended,
        SimStatus::Retired,
    ]
    .into_iter()
    .find(|v| v.as_str() == s.trim())
}

/// Turn the list query into a store filter (400 on a bad value).
pub fn sim_filter(q: ListSimsQuery) -> ApiResult<SimFilter> {
    let bad = |m: &str| ApiError::bad_request("invalid_query", m.to_owned());
    let customs = [
        q.custom_field_1,
        q.custom_field_2,
        q.custom_field_3,
        q.custom_field_4,
        q.custom_field_5,
    ];
    let mut custom_field = None;
    for (i, v) in customs.into_iter().enumerate() {
        if let Some(v) = v {
            if custom_field.is_some() {
                return Err(bad("filter on at most one custom_field_N"));
            }
            custom_field = Some((i as u8 + 1, v));
        }
    }
    let text = |v: Option<String>, name: &str| -> ApiResult<Option<String>> {
        match v {
            Some(s) if s.chars().count() > 255 => Err(bad(&format!("{name} is too long"))),
            // No stored value holds a control character; PostgreSQL refuses NUL.
            Some(s) if s.chars().any(char::is_control) => {
                Err(bad(&format!("{name} must not contain control characters")))
            }
            other => Ok(other),
        }
    };
    Ok(SimFilter {
        status: q
            .status
            .as_deref()
            .map(|s| parse_sim_status(s).ok_or_else(|| bad("unknown status")))
            .transpose()?,
        rate_plan: text(q.rate_plan, "rate_plan")?,
        custom_field: custom_field
            .map(|(n, v)| text(Some(v), "custom_field").map(|v| (n, v.unwrap_or_default())))
            .transpose()?,
        imsi: text(q.imsi, "imsi")?,
        msisdn: text(q.msisdn, "msisdn")?,
        after_iccid: text(q.cursor, "cursor")?,
        limit: page_size(q.limit)?,
    })
}

/// List SIMs, by ICCID.
#[utoipa::path(
    get, path = "/v1/sims", tag = "sims",
    params(ListSimsQuery),
    responses(
        (status = 200, description = "A page of SIMs", body = SimPage),
        (status = 400, description = "Invalid filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    query: Result<Query<ListSimsQuery>, QueryRejection>,
) -> ApiResult<Json<SimPage>> {
    let Query(q) = query?;
    let filter = sim_filter(q)?;
    let page = st.service.list_sims(&tenant, filter).await?;
    Ok(Json(SimPage {
        data: page.data.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Read a SIM (never its secrets).
#[utoipa::path(
    get, path = "/v1/sims/{iccid}", tag = "sims",
    params(("iccid" = String, Path, description = "ICCID")),
    responses(
        (status = 200, description = "The SIM", body = SimDto),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such SIM for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(iccid): Path<String>,
) -> ApiResult<Json<SimDto>> {
    Ok(Json(st.service.get_sim(&tenant, &iccid).await?.into()))
}

/// Paging of a SIM's history.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000; default 100.
    pub limit: Option<i64>,
}

/// A SIM's status history, oldest first.
#[utoipa::path(
    get, path = "/v1/sims/{iccid}/history", tag = "sims",
    params(("iccid" = String, Path, description = "ICCID"), HistoryQuery),
    responses(
        (status = 200, description = "A page of history", body = HistoryPage),
        (status = 400, description = "Invalid cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such SIM for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn history(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(iccid): Path<String>,
    query: Result<Query<HistoryQuery>, QueryRejection>,
) -> ApiResult<Json<HistoryPage>> {
    let Query(q) = query?;
    let after = match q.cursor.as_deref() {
        None => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor is not valid"))?,
    };
    let page = st
        .service
        .sim_history(&tenant, &iccid, after, page_size(q.limit)?)
        .await?;
    Ok(Json(HistoryPage {
        data: page.data.into_iter().map(HistoryDto::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// How long to wait for a single-SIM order.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct WaitQuery {
    /// Seconds to wait for the order to finish, 0 to 30; default 5.
    pub wait: Option<u64>,
}

/// The outcome of a single-SIM order.
#[derive(Debug, Serialize, ToSchema)]
pub struct SimOrderResponse {
    /// The implicit batch of one.
    pub batch: BatchDto,
    /// Its item: terminal on 200, still waiting or running on 202.
    pub item: Option<ItemDto>,
}

/// The single-SIM actions.
#[derive(Debug, Clone, Copy, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SimAction {
    /// INVENTORY → ACTIVATED.
    Activate,
    /// ACTIVATED → SUSPENDED.
    Suspend,
    /// SUSPENDED → ACTIVATED.
    Resume,
    /// SUSPENDED → RETIRED.
    Retire,
}

impl SimAction {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "activate" => Some(Self::Activate),
            "suspend" => Some(Self::Suspend),
            "resume" => Some(Self::Resume),
            "retire" => Some(Self::Retire),
            _ => None,
        }
    }
    fn operation(self) -> Operation {
        match self {
            Self::Activate => Operation::Activate,
            Self::Suspend => Operation::Suspend,
            Self::Resume => Operation::Resume,
            Self::Retire => Operation::Retire,
        }
    }
}

/// Run one order on one SIM (an implicit batch of one) and wait for it.
///
/// The body is optional: `{"reference": "..."}`.
#[utoipa::path(
    post, path = "/v1/sims/{iccid}/{action}", tag = "sims",
    params(
        ("iccid" = String, Path, description = "ICCID"),
        ("action" = SimAction, Path, description = "activate, suspend, resume or retire"),
        WaitQuery,
    ),
    request_body(content((Object = "application/json")), description = "Optional: {\"reference\": \"...\"}"),
    responses(
        (status = 200, description = "The order finished (COMPLETED or FAILED, see item)", body = SimOrderResponse),
        (status = 202, description = "Still running after the wait", body = SimOrderResponse),
        (status = 400, description = "Malformed body or query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such SIM for this tenant, or unknown action", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn action(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path((iccid, action)): Path<(String, String)>,
    query: Result<Query<WaitQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body?;
    let Query(q) = query?;
    let action = SimAction::parse(&action).ok_or_else(|| ApiError::not_found("action"))?;
    let fields: Map<String, Value> = if body.iter().all(u8::is_ascii_whitespace) {
        Map::new()
    } else {
        match serde_json::from_slice::<Value>(&body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => {
                return Err(ApiError::unprocessable(
                    "invalid_type",
                    "the body must be a JSON object",
                ))
            }
            Err(e) => {
                return Err(ApiError::bad_request(
                    "malformed_json",
                    format!("the body is not valid JSON: {e}"),
                ))
            }
        }
    };
    // The SIM must exist for this tenant (another tenant's SIM is not found).
    st.service.get_sim(&tenant, &iccid).await?;
    let wait = Duration::from_secs(q.wait.unwrap_or(5).min(MAX_WAIT));
    let (batch, item) = st
        .service
        .run_single(&tenant, action.operation(), &iccid, fields, wait)
        .await?;
    let done = item.as_ref().is_some_and(|i| i.status.is_terminal());
    let status = if done {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    Ok((
        status,
        Json(SimOrderResponse {
            batch: batch.into(),
            item: item.map(Into::into),
        }),
    )
        .into_response())
}
