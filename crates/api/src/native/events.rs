//! `/v1/events`: the tenant's event feed, with long polling.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::Deserialize;
use utoipa::IntoParams;

use super::{page_size, EventDto, EventPage};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;

/// Longest wait, in seconds.
pub const MAX_WAIT: u64 = 30;

/// Cursor and wait.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// `next_cursor` of the previous call; default: from the start.
    pub after: Option<String>,
    /// Seconds to wait when there is no event yet, 0 to 30; default 0.
    pub wait: Option<u64>,
    /// Most events returned, 1 to 1000; default 100.
    pub limit: Option<i64>,
}

/// Events after the cursor, oldest first. With `wait`, the call holds until
/// an event arrives or the wait ends.
#[utoipa::path(
    get, path = "/v1/events", tag = "events",
    params(EventsQuery),
    responses(
        (status = 200, description = "Events; next_cursor is always set", body = EventPage),
        (status = 400, description = "Invalid cursor or wait", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    query: Result<Query<EventsQuery>, QueryRejection>,
) -> ApiResult<Json<EventPage>> {
    let Query(q) = query?;
    let after = match q.after.as_deref().map(str::trim) {
        None | Some("") => 0,
        Some(c) => c
            .parse::<i64>()
            .ok()
            .filter(|v| *v >= 0)
            .ok_or_else(|| ApiError::bad_request("invalid_cursor", "after is not valid"))?,
    };
    let wait = Duration::from_secs(q.wait.unwrap_or(0).min(MAX_WAIT));
    let page = st
        .service
        .events(&tenant, after, page_size(q.limit)?, wait)
        .await?;
    Ok(Json(EventPage {
        data: page.data.into_iter().map(EventDto::from).collect(),
        next_cursor: page.next_cursor,
    }))
}
