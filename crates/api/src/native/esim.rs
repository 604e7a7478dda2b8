//! `/v1/templates` (SAIP profile templates) and `/v1/profiles/{iccid}/package`
//! (a personalised profile package, DER).

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::{Deserialize, Serialize};
use simbatch_engine::service::{TemplateView, MAX_TEMPLATE_BYTES};
use simbatch_store::TemplateInfo;
use utoipa::{IntoParams, ToSchema};

use super::rfc3339;
use crate::auth::Auth;
use crate::error::{payload_too_large, ApiError, ApiResult, Problem};
use crate::AppState;

/// A profile template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateDto {
    /// Name (Simlessly's `configName`).
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256 of the package, hex.
    pub sha256: String,
    /// When it was added (RFC 3339).
    pub created_at: String,
    /// What the package is (on single reads and uploads).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub profile: Option<TemplateProfileDto>,
}

/// What a template package holds.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateProfileDto {
    /// SAIP version from the ProfileHeader, `major.minor`.
    pub version: String,
    /// The header's profileType.
    pub profile_type: Option<String>,
    /// The template's own ICCID (replaced per profile).
    pub iccid: String,
    /// Number of ProfileElements.
    pub elements: usize,
    /// AKA parameter elements (each gets Ki and OPc).
    pub aka_parameters: usize,
    /// Whether EF.MSISDN is present (personalised when an item gives `msisdn`).
    pub has_msisdn: bool,
    /// Whether EF.IMPI is present (`impi`).
    pub has_impi: bool,
    /// Whether EF.IMPU is present (`impu`).
    pub has_impu: bool,
}

/// Every template.
#[derive(Debug, Serialize, ToSchema)]
pub struct TemplateList {
    /// Templates by name.
    pub data: Vec<TemplateDto>,
}

fn info_dto(i: TemplateInfo) -> TemplateDto {
    TemplateDto {
        name: i.name,
        size: i.size,
        sha256: i.sha256,
        created_at: rfc3339(i.created_at),
        profile: None,
    }
}

impl From<TemplateView> for TemplateDto {
    fn from(v: TemplateView) -> Self {
        let mut dto = info_dto(v.info);
        dto.profile = v.summary.map(|s| TemplateProfileDto {
            version: s.version,
            profile_type: s.profile_type,
            iccid: s.iccid,
            elements: s.elements,
            aka_parameters: s.aka_parameters,
            has_msisdn: s.has_msisdn,
            has_impi: s.has_impi,
            has_impu: s.has_impu,
        });
        dto
    }
}

/// The name of an uploaded template.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct AddTemplateQuery {
    /// Template name, 1 to 128 characters without `/`.
    pub name: Option<String>,
}

/// Register a profile template: the raw DER of an unprotected SAIP profile
/// package. It is parsed and checked; anything else is refused with
/// `template_invalid` and the reason.
#[utoipa::path(
    post, path = "/v1/templates", tag = "esim",
    params(AddTemplateQuery),
    request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "The package, DER"),
    responses(
        (status = 201, description = "Registered", body = TemplateDto),
        (status = 400, description = "Missing name", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The name is taken", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Larger than 1 MiB", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "Not a usable profile package (`template_invalid`) or a bad name (`template_name_invalid`)", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn add(
    State(st): State<AppState>,
    Auth(_tenant): Auth,
    query: Result<Query<AddTemplateQuery>, QueryRejection>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let Query(q) = query?;
    let name = q.name.filter(|n| !n.trim().is_empty()).ok_or_else(|| {
        ApiError::bad_request("missing_name", "the query parameter name is required")
    })?;
    let body = body?;
    if body.len() > MAX_TEMPLATE_BYTES {
        return Err(payload_too_large());
    }
    let view = st.service.add_template(name.trim(), &body).await?;
    Ok((StatusCode::CREATED, Json(TemplateDto::from(view))).into_response())
}

/// List templates.
#[utoipa::path(
    get, path = "/v1/templates", tag = "esim",
    responses(
        (status = 200, description = "Every template, by name", body = TemplateList),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn list(
    State(st): State<AppState>,
    Auth(_tenant): Auth,
) -> ApiResult<Json<TemplateList>> {
    let data = st.service.list_templates().await?;
    Ok(Json(TemplateList {
        data: data.into_iter().map(info_dto).collect(),
    }))
}

/// One template and what its package holds.
#[utoipa::path(
    get, path = "/v1/templates/{name}", tag = "esim",
    params(("name" = String, Path, description = "Template name")),
    responses(
        (status = 200, description = "The template", body = TemplateDto),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such template", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn get(
    State(st): State<AppState>,
    Auth(_tenant): Auth,
    Path(name): Path<String>,
) -> ApiResult<Json<TemplateDto>> {
    Ok(Json(st.service.get_template(&name).await?.into()))
}

/// Download the personalised profile package (DER) of one of the tenant's
/// generated profiles. It holds Ki: every download is recorded in the SIM's
/// history (`download_package`).
#[utoipa::path(
    get, path = "/v1/profiles/{iccid}/package", tag = "esim",
    params(("iccid" = String, Path, description = "ICCID")),
    responses(
        (status = 200, description = "The package", body = Vec<u8>, content_type = "application/octet-stream"),
        (status = 401, description = "Missing or invalid API key", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No generated profile with a package for this ICCID and tenant", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []), ("bearer" = []))
)]
pub async fn package(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    Path(iccid): Path<String>,
) -> ApiResult<Response> {
    let der = st.service.download_package(&tenant, &iccid).await?;
    let mut resp = der.into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    if let Ok(v) = HeaderValue::from_str(&format!("attachment; filename=\"{iccid}.der\"")) {
        h.insert(header::CONTENT_DISPOSITION, v);
    }
    Ok(resp)
}
