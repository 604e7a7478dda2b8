//! `/v1` downloads: a batch's items and the SIM list as CSV, NDJSON or XLSX,
//! and the operation catalogue with a CSV template per operation.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use simbatch_core::Operation;
use utoipa::ToSchema;

use super::export::{self, ExportQuery, Format, FormatQuery, Selection};
use super::sims::{sim_filter, ListSimsQuery};
use crate::auth::Auth;
use crate::error::{ApiError, ApiResult, Problem};
use crate::AppState;

/// Download a batch's items, streamed.
///
/// Columns: the operation's parameters (never a secret; `operation` first in a
/// mixed batch), then `result_index`, `result_status`, `result_field`,
/// `result_code`, `result_reason`, `result_data`, `result_updated_at`.
/// Uploads ignore `result_*` columns, so a download re-imports as is.
#[utoipa::path(
    get, path = "/v1/batches/{id}/export", tag = "batches",
    params(("id" = String, Path, description = "Batch id"), ExportQuery),
    responses(
        (status = 200, description = "The items, streamed", content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        )),
        (status = 400, description = "Unknown format or status", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such batch for this tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn batch_export(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(id): Path<String>,
    query: Result<Query<ExportQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let format = Format::parse(q.format.as_deref())?;
    let selection = Selection::parse(q.status.as_deref())?;
    export::batch_items(st.service.clone(), tenant, &id, format, selection).await
}

/// Download the tenant's SIMs (same filters as `GET /v1/sims`), streamed.
/// Secrets are never exported; `has_ki` says whether a Ki is on file.
#[utoipa::path(
    get, path = "/v1/sims/export", tag = "sims",
    params(ListSimsQuery, FormatQuery),
    responses(
        (status = 200, description = "The SIMs, streamed", content(
            (String = "text/csv"),
            (String = "application/x-ndjson"),
            (Vec<u8> = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
        )),
        (status = 400, description = "Unknown format or invalid filter", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn sims_export(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    filters: Result<Query<ListSimsQuery>, QueryRejection>,
    query: Result<Query<FormatQuery>, QueryRejection>,
) -> ApiResult<Response> {
    let Query(f) = filters?;
    let Query(q) = query?;
    let format = Format::parse(q.format.as_deref())?;
    let filter = sim_filter(f)?;
    Ok(export::sims(st.service.clone(), tenant, filter, format))
}

/// One parameter of an operation.
#[derive(Debug, Serialize, ToSchema)]
pub struct FieldDto {
    /// Name in JSON, NDJSON and as a CSV column.
    pub name: &'static str,
    /// Whether every item must give it.
    pub required: bool,
    /// Whether it is a secret (encrypted at rest, never shown again).
    pub secret: bool,
}

/// An operation and its parameters, in CSV column order.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationDto {
    /// The operation's name.
    pub name: &'static str,
    /// Its parameters.
    pub fields: Vec<FieldDto>,
}

/// The operation catalogue.
#[utoipa::path(
    get, path = "/v1/operations", tag = "batches",
    responses(
        (status = 200, description = "Every operation with its parameters", body = Vec<OperationDto>),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn operations(Auth(_tenant): Auth) -> Json<Vec<OperationDto>> {
    Json(
        Operation::ALL
            .iter()
            .map(|op| OperationDto {
                name: op.as_str(),
                fields: op
                    .fields()
                    .iter()
                    .map(|f| FieldDto {
                        name: f.name,
                        required: f.required,
                        secret: f.is_secret(),
                    })
                    .collect(),
            })
            .collect(),
    )
}

/// The CSV template of an operation: its header row.
pub fn csv_template(op: Operation) -> String {
    let names: Vec<&str> = op.fields().iter().map(|f| f.name).collect();
    format!("{}\r\n", names.join(","))
}

/// Download an operation's CSV template (the header row to fill in).
#[utoipa::path(
    get, path = "/v1/operations/{operation}/template.csv", tag = "batches",
    params(("operation" = String, Path, description = "Operation name, e.g. activate")),
    responses(
        (status = 200, description = "The header row", content_type = "text/csv", body = String),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such operation", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn operation_template(
    Auth(_tenant): Auth,
    Path(operation): Path<String>,
) -> ApiResult<Response> {
    let op = Operation::parse(operation.trim()).ok_or_else(|| ApiError::not_found("operation"))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (
                header::CONTENT_DISPOSITION,
                format!("attachment; filename=\"{}.csv\"", op.as_str()),
            ),
        ],
        csv_template(op),
    )
        .into_response())
}
