//! `GET /v1/batches/counts`: how many batches are in each state, under the
//! same filters as the batch list (status, operation, creation window).
//!
//! One grouped count in the store, so the console's per-state chips cost one
//! request whatever the number of batches. The filter parsing lives here and
//! is shared with `GET /v1/batches`, so both answer bad input alike.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use simbatch_core::BatchStatus;
use simbatch_store::BatchFilter;
use utoipa::{IntoParams, ToSchema};

use super::parse_rfc3339;
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;

/// Filters of the batch counts (those of `GET /v1/batches` without paging).
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct BatchCountsQuery {
    /// Only this status (`PROCESSING`, `COMPLETED`, ...); the other states count 0.
    pub status: Option<String>,
    /// Only this operation.
    pub operation: Option<String>,
    /// Created at or after (RFC 3339).
    pub created_after: Option<String>,
    /// Created before (RFC 3339).
    pub created_before: Option<String>,
}

/// Batches per state; every state is present, zero when none.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
pub struct BatchStateCounts {
    /// Still receiving items.
    #[serde(rename = "INITIALISING")]
    pub initialising: i64,
    /// Items being executed.
    #[serde(rename = "PROCESSING")]
    pub processing: i64,
    /// Every item completed.
    #[serde(rename = "COMPLETED")]
    pub completed: i64,
    /// Ended with rejected, failed or canceled items.
    #[serde(rename = "PARTIALLY_COMPLETED")]
    pub partially_completed: i64,
    /// Cancelled by the client.
    #[serde(rename = "CANCELLED")]
    pub cancelled: i64,
}

/// The answer of `GET /v1/batches/counts`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchCountsDto {
    /// Batches matching the filters.
    pub total: i64,
    /// Of those, how many are in each state.
    pub by_status: BatchStateCounts,
}

impl BatchCountsDto {
    /// Build from the store's `(state, count)` pairs.
    pub fn from_pairs(pairs: &[(BatchStatus, i64)]) -> Self {
        let mut c = BatchStateCounts::default();
        for (s, n) in pairs {
            let slot = match s {
                BatchStatus::Initialising => &mut c.initialising,
                BatchStatus::Processing => &mut c.processing,
                BatchStatus::Completed => &mut c.completed,
                BatchStatus::PartiallyCompleted => &mut c.partially_completed,
                BatchStatus::Cancelled => &mut c.cancelled,
            };
            *slot += n;
        }
        Self {
            total: pairs.iter().map(|p| p.1).sum(),
            by_status: c,
        }
    }
}

fn invalid(field: &str, detail: String, reason: &str) -> ApiError {
    ApiError::bad_request("invalid_query", detail).with_error(
        None,
        Some(field),
        "invalid_value",
        reason,
    )
}

/// The filter of a batch list or count query (paging left at its defaults).
pub(super) fn filter(
    status: Option<&str>,
    operation: Option<&str>,
    created_after: Option<&str>,
    created_before: Option<&str>,
) -> Result<BatchFilter, ApiError> {
    let status = status
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            BatchStatus::parse(&s.to_ascii_uppercase()).ok_or_else(|| {
                let all: Vec<&str> = BatchStatus::ALL.iter().map(|s| s.as_str()).collect();
                invalid(
                    "status",
                    format!(
                        "status '{}' is not a batch state; use one of {}",
                        simbatch_core::ids::clip(s),
                        all.join(", ")
                    ),
                    "unknown batch state",
                )
            })
        })
        .transpose()?;
    let operation = operation
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            super::parse_operation(s).ok_or_else(|| {
                invalid(
                    "operation",
                    format!(
                        "operation '{}' is not known; GET /v1/operations lists them",
                        simbatch_core::ids::clip(s)
                    ),
                    "unknown operation",
                )
            })
        })
        .transpose()?;
    let time = |name: &str, v: Option<&str>| {
        v.map(|v| {
            parse_rfc3339(name, v)
                .map_err(|e| invalid(name, e.detail.clone(), "not an RFC 3339 time"))
        })
        .transpose()
    };
    Ok(BatchFilter {
        status,
        operation,
        created_after: time("created_after", created_after)?,
        created_before: time("created_before", created_before)?,
        ..Default::default()
    })
}

/// Count the tenant's batches per state.
///
/// Takes the filters of `GET /v1/batches` (not its paging); a `status`
/// filter leaves the other states at 0.
#[utoipa::path(
    get, path = "/v1/batches/counts", tag = "batches",
    params(BatchCountsQuery),
    responses(
        (status = 200, description = "Batches per state", body = BatchCountsDto),
        (status = 400, description = "Invalid filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn counts(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    query: Result<Query<BatchCountsQuery>, QueryRejection>,
) -> ApiResult<Json<BatchCountsDto>> {
    let Query(q) = query?;
    let f = filter(
        q.status.as_deref(),
        q.operation.as_deref(),
        q.created_after.as_deref(),
        q.created_before.as_deref(),
    )?;
    let pairs = st.store.count_batches(&tenant.id, &f).await.map_err(|e| {
        tracing::error!(error = %e, "counting batches failed");
        ApiError::internal()
    })?;
    Ok(Json(BatchCountsDto::from_pairs(&pairs)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_fill_every_state_and_the_total() {
        let dto = BatchCountsDto::from_pairs(&[
            (BatchStatus::Processing, 2),
            (BatchStatus::Cancelled, 1),
        ]);
        assert_eq!(dto.total, 3);
        assert_eq!(dto.by_status.processing, 2);
        assert_eq!(dto.by_status.cancelled, 1);
        assert_eq!(dto.by_status.completed, 0);
        let v = serde_json::to_value(&dto).unwrap();
        assert_eq!(v["by_status"]["PARTIALLY_COMPLETED"], 0);
    }

    #[test]
    fn bad_filters_name_the_field() {
        let e = filter(Some("DONE"), None, None, None).unwrap_err();
        assert_eq!(e.errors[0].field.as_deref(), Some("status"));
        assert!(e.detail.contains("PARTIALLY_COMPLETED"), "{}", e.detail);
        let e = filter(None, Some("nope"), None, None).unwrap_err();
        assert_eq!(e.errors[0].field.as_deref(), Some("operation"));
        let e = filter(None, None, None, Some("yesterday")).unwrap_err();
        assert_eq!(e.errors[0].field.as_deref(), Some("created_before"));
        let f = filter(Some(" processing "), Some("activate"), None, None).unwrap();
        assert_eq!(f.status, Some(BatchStatus::Processing));
    }
}
