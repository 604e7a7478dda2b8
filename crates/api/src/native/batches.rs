//! `/v1/batches`: submit (JSON, or streamed CSV / NDJSON), list, read,
//! items, cancel, retry (per-state counts: [`super::batch_counts`]).

use axum::body::Body;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use simbatch_core::{BatchMode, BatchStatus, Counts, ItemStatus, Operation};
use simbatch_engine::service::{SubmitReport, SubmitRequest};
use simbatch_store::{BatchFilter, ItemFilter};
use utoipa::{IntoParams, ToSchema};

use super::upload::{self, Format};
use super::{page_size, BatchDto, BatchPage, ItemDto, ItemPage, RejectedItemDto};
use crate::auth::Auth;
use crate::error::{payload_too_large, ApiError, ApiResult, Problem};
use crate::idempotency::{self, Answer};
use crate::{AppState, JSON_LIMIT};

/// Most per-item type errors listed in one problem.
const MAX_LISTED: usize = 100;

/// A JSON batch submission.
#[derive(Debug, Deserialize, ToSchema)]
#[allow(dead_code)]
pub struct SubmitBatchBody {
    /// The operation of every item; omit for a mixed batch whose items each
    /// carry `operation`.
    pub operation: Option<Operation>,
    /// Ordering mode; default `parallel`.
    pub mode: Option<BatchMode>,
    /// The items: objects of the operation's fields (see the operation
    /// catalogue), at most 1,000,000 (use CSV/NDJSON for large batches).
    #[schema(value_type = Vec<Object>)]
    pub items: Vec<Map<String, Value>>,
    /// Validate and report only; store nothing.
    pub dry_run: Option<bool>,
}

/// Query of a streamed (CSV or NDJSON) submission.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct SubmitQuery {
    /// The operation of every row; omit for a mixed batch (then each row has an `operation` column/field).
    pub operation: Option<String>,
    /// `parallel` (default) or `sequential_per_iccid`.
    pub mode: Option<String>,
    /// Validate and report only.
    pub dry_run: Option<bool>,
}

/// The answer to a submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct SubmitResponse {
    /// The batch id; null on a dry run.
    pub id: Option<String>,
    /// The batch status; null on a dry run.
    pub status: Option<BatchStatus>,
    /// Whether this was a dry run (nothing stored).
    pub dry_run: bool,
    /// Exact counts.
    pub counts: Counts,
    /// Refused items (streamed uploads list the first 1000).
    pub rejected: Vec<RejectedItemDto>,
    /// Whether `rejected` was cut short.
    pub rejected_truncated: bool,
}

fn submit_answer(report: SubmitReport, dry_run: bool) -> Answer {
    let id = report.batch.as_ref().map(|b| b.id.clone());
    let resp = SubmitResponse {
        id: id.clone(),
        status: report.batch.as_ref().map(|b| b.status),
        dry_run,
        counts: report.counts,
        rejected: report.rejected.into_iter().map(Into::into).collect(),
        rejected_truncated: report.rejected_truncated,
    };
    let status = if dry_run {
        StatusCode::OK
    } else {
        StatusCode::ACCEPTED
    };
    let mut a = Answer::json(status, &resp);
    if let Some(loc) = id.and_then(|id| HeaderValue::from_str(&format!("/v1/batches/{id}")).ok()) {
        a.headers.push((header::LOCATION, loc));
    }
    a
}

fn media_type(headers: &HeaderMap) -> Option<String> {
    let v = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    Some(v.split(';').next()?.trim().to_ascii_lowercase())
}

fn parse_mode(v: Option<&str>) -> Result<BatchMode, ApiError> {
    match v {
        None => Ok(BatchMode::Parallel),
        Some(m) => BatchMode::parse(m.trim()).ok_or_else(|| {
            ApiError::unprocessable(
                "invalid_request",
                "mode must be parallel or sequential_per_iccid",
            )
            .with_error(None, Some("mode"), "invalid_value", "unknown mode")
        }),
    }
}

fn unknown_operation(name: &str) -> ApiError {
    ApiError::unprocessable(
        "unknown_operation",
        format!("unknown operation '{}'", simbatch_core::ids::clip(name)),
    )
    .with_error(
        None,
        Some("operation"),
        "unknown_operation",
        "unknown operation",
    )
}

/// Submit a batch.
///
/// JSON (`application/json`): the whole batch in the body. Large batches:
/// `text/csv` (header row = field names) or `application/x-ndjson` (one JSON
/// object per line), streamed, with `operation`, `mode` and `dry_run` in the
/// query. Items refused by validation are kept as REJECTED and listed.
#[utoipa::path(
    post, path = "/v1/batches", tag = "batches",
    params(
        SubmitQuery,
        ("Idempotency-Key" = Option<String>, Header, description = "Replay-safe retries: the same key and request replay the first answer"),
    ),
    request_body(content(
        (SubmitBatchBody = "application/json"),
        (String = "text/csv"),
        (String = "application/x-ndjson"),
    )),
    responses(
        (status = 202, description = "Batch accepted", body = SubmitResponse),
        (status = 200, description = "Dry run: validated, nothing stored", body = SubmitResponse),
        (status = 400, description = "Malformed body, header or query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key in use", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "JSON body too large", body = Problem, content_type = "application/problem+json"),
        (status = 415, description = "Unsupported content type", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Wrong types, unknown operation, empty or oversized batch, idempotency key reused", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn submit(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    method: Method,
    uri: Uri,
    query: Result<Query<SubmitQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let key = match idempotency::key(&headers) {
        Ok(k) => k,
        Err(e) => return e.into_response(),
    };
    let media = media_type(&headers);
    let format = match media.as_deref() {
        Some("application/json") => None,
        Some("text/csv") => Some(Format::Csv),
        Some("application/x-ndjson" | "application/ndjson" | "application/jsonl") => {
            Some(Format::Ndjson)
        }
        _ => {
            return ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "send application/json, text/csv or application/x-ndjson",
            )
            .into_response()
        }
    };
    let Some(format) = format else {
        let bytes = match axum::body::to_bytes(body, JSON_LIMIT).await {
            Ok(b) => b,
            Err(_) => return payload_too_large().into_response(),
        };
        let hash =
            idempotency::request_hash(&[method.as_str().as_bytes(), uri.path().as_bytes(), &bytes]);
        return idempotency::with_key(&st.store, &tenant, key, hash, async {
            match submit_json(&st, &tenant, &bytes).await {
                Ok(a) => a,
                Err(e) => e.into(),
            }
        })
        .await;
    };
    let Query(q) = match query {
        Ok(q) => q,
        Err(e) => return ApiError::from(e).into_response(),
    };
    let hash = idempotency::request_hash(&[
        method.as_str().as_bytes(),
        uri.path().as_bytes(),
        uri.query().unwrap_or("").as_bytes(),
        media.as_deref().unwrap_or("").as_bytes(),
    ]);
    idempotency::with_key(&st.store, &tenant, key, hash, async {
        let run = async {
            let op = match q.operation.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(name) => {
                    Some(super::parse_operation(name).ok_or_else(|| unknown_operation(name))?)
                }
            };
            let mode = parse_mode(q.mode.as_deref())?;
            let dry_run = q.dry_run.unwrap_or(false);
            let writer = st
                .service
                .begin_stream(&tenant, op, mode, dry_run, "native");
            let report = upload::run(format, op, body, writer).await?;
            Ok::<_, ApiError>(submit_answer(report, dry_run))
        };
        match run.await {
            Ok(a) => a,
            Err(e) => e.into(),
        }
    })
    .await
}

async fn submit_json(
    st: &AppState,
    tenant: &simbatch_store::Tenant,
    bytes: &[u8],
) -> ApiResult<Answer> {
    let v: Value = serde_json::from_slice(bytes).map_err(|e| {
        ApiError::bad_request("malformed_json", format!("the body is not valid JSON: {e}"))
    })?;
    let Value::Object(mut body) = v else {
        return Err(ApiError::unprocessable(
            "invalid_type",
            "the body must be a JSON object",
        ));
    };
    if let Some(k) = body
        .keys()
        .find(|k| !["operation", "mode", "items", "dry_run"].contains(&k.as_str()))
    {
        let k = simbatch_core::ids::clip(k);
        return Err(ApiError::unprocessable(
            "unknown_field",
            format!("'{k}' is not a field of a batch submission"),
        )
        .with_error(None, Some(&k), "unknown_field", "unknown field"));
    }
    let type_err = |field: &str, want: &str| {
        ApiError::unprocessable("invalid_type", format!("{field} must be {want}")).with_error(
            None,
            Some(field),
            "invalid_type",
            format!("must be {want}"),
        )
    };
    let operation = match body.remove("operation") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => {
            Some(super::parse_operation(&s).ok_or_else(|| unknown_operation(&s))?)
        }
        Some(_) => return Err(type_err("operation", "a string")),
    };
    let mode = match body.remove("mode") {
        None | Some(Value::Null) => BatchMode::Parallel,
        Some(Value::String(s)) => parse_mode(Some(&s))?,
        Some(_) => return Err(type_err("mode", "a string")),
    };
    let dry_run = match body.remove("dry_run") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => b,
        Some(_) => return Err(type_err("dry_run", "a boolean")),
    };
    let items = match body.remove("items") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(
                ApiError::unprocessable("invalid_request", "items is required").with_error(
                    None,
                    Some("items"),
                    "missing_field",
                    "items is required",
                ),
            )
        }
        Some(_) => return Err(type_err("items", "an array of objects")),
    };
    let mut maps = Vec::with_capacity(items.len());
    let mut bad = ApiError::unprocessable("invalid_type", "every item must be a JSON object");
    for (i, item) in items.into_iter().enumerate() {
        match item {
            Value::Object(m) => maps.push(m),
            _ if bad.errors.len() < MAX_LISTED => {
                bad = bad.with_error(Some(i), None, "invalid_type", "the item must be an object")
            }
            _ => {}
        }
    }
    if !bad.errors.is_empty() {
        return Err(bad);
    }
    let report = st
        .service
        .submit(
            tenant,
            SubmitRequest {
                operation,
                mode,
                items: maps,
                dry_run,
                source: "native".into(),
                external_ref: None,
            },
        )
        .await?;
    Ok(submit_answer(report, dry_run))
}

/// Filters for listing batches.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListBatchesQuery {
    /// Only this status (`PROCESSING`, `COMPLETED`, ...).
    pub status: Option<String>,
    /// Only this operation.
    pub operation: Option<String>,
    /// Created at or after (RFC 3339).
    pub created_after: Option<String>,
    /// Created before (RFC 3339).
    pub created_before: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000; default 100.
    pub limit: Option<i64>,
}

/// List batches, newest first.
#[utoipa::path(
    get, path = "/v1/batches", tag = "batches",
    params(ListBatchesQuery),
    responses(
        (status = 200, description = "A page of batches", body = BatchPage),
        (status = 400, description = "Invalid filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    query: Result<Query<ListBatchesQuery>, QueryRejection>,
) -> ApiResult<Json<BatchPage>> {
    let Query(q) = query?;
    let filter = BatchFilter {
        before_id: q
            .cursor
            .map(|c| {
                uuid::Uuid::parse_str(&c)
                    .map(|u| u.to_string())
                    .map_err(|_| ApiError::bad_request("invalid_cursor", "cursor is not valid"))
            })
            .transpose()?,
        limit: page_size(q.limit)?,
        ..super::batch_counts::filter(
            q.status.as_deref(),
            q.operation.as_deref(),
            q.created_after.as_deref(),
            q.created_before.as_deref(),
        )?
    };
    let page = st.service.list_batches(&tenant, filter).await?;
    Ok(Json(BatchPage {
        data: page.data.into_iter().map(Into::into).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Read a batch: status and counts, O(1).
#[utoipa::path(
    get, path = "/v1/batches/{id}", tag = "batches",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The batch", body = BatchDto),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<BatchDto>> {
    Ok(Json(st.service.get_batch(&tenant, &id).await?.into()))
}

/// Filters for listing a batch's items.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListItemsQuery {
    /// Only this status (`APPROVED`, `REJECTED`, `COMPLETED`, `FAILED`, ...).
    pub status: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 1000; default 100.
    pub limit: Option<i64>,
}

/// List a batch's items, by index.
#[utoipa::path(
    get, path = "/v1/batches/{id}/items", tag = "batches",
    params(("id" = String, Path, description = "Batch id"), ListItemsQuery),
    responses(
        (status = 200, description = "A page of items", body = ItemPage),
        (status = 400, description = "Invalid filter or cursor", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn items(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
    query: Result<Query<ListItemsQuery>, QueryRejection>,
) -> ApiResult<Json<ItemPage>> {
    let Query(q) = query?;
    let filter = ItemFilter {
        status: q
            .status
            .as_deref()
            .map(|s| {
                ItemStatus::parse(s.trim())
                    .ok_or_else(|| ApiError::bad_request("invalid_query", "unknown status"))
            })
            .transpose()?,
        after_seq: q
            .cursor
            .as_deref()
            .map(|c| {
                c.parse::<i64>()
                    .ok()
                    .filter(|v| *v >= 0)
                    .ok_or_else(|| ApiError::bad_request("invalid_cursor", "cursor is not valid"))
            })
            .transpose()?,
        limit: page_size(q.limit)?,
    };
    let page = st.service.list_items(&tenant, &id, filter).await?;
    Ok(Json(ItemPage {
        data: page.data.into_iter().map(ItemDto::from).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// Cancel a batch: items not yet claimed become CANCELED.
#[utoipa::path(
    post, path = "/v1/batches/{id}/cancel", tag = "batches",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 200, description = "The cancelled batch", body = BatchDto),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The batch is already terminal", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn cancel(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> ApiResult<Json<BatchDto>> {
    Ok(Json(st.service.cancel(&tenant, &id).await?.into()))
}

/// Retry: a new batch of the FAILED items, linked by `parent_id`.
#[utoipa::path(
    post, path = "/v1/batches/{id}/retry", tag = "batches",
    params(("id" = String, Path, description = "Batch id")),
    responses(
        (status = 201, description = "The new batch", body = BatchDto),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Nothing failed", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn retry(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let b = st.service.retry(&tenant, &id).await?;
    let loc = HeaderValue::from_str(&format!("/v1/batches/{}", b.id)).ok();
    let mut r = (StatusCode::CREATED, Json(BatchDto::from(b))).into_response();
    if let Some(loc) = loc {
        r.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(r)
}
