//! Simlessly RSP, served under `/simlessly` with the vendor's paths.
//!
//! - `POST /simlessly/api/v1/ac/generateByBatch`: 1–200 metadata items
//!   become one `generate_activation_code` batch (source `simlessly`), whose
//!   batchCode (`B` + digits) is the batch's external reference; the batch is
//!   visible through the native API too.
//! - `POST /simlessly/api/v1/batch/info`: the batch's state and every item's
//!   result, with `resultUrl`, a presigned link to an XLSX of the results.
//!   Every item with an activation code also carries `acLink`, a presigned
//!   link to its QR image ([`qr`]; the vendor's `needAcLink`).
//! - `GET /simlessly/files/results/…`: that file ([`results`]).
//! - `GET /simlessly/files/qr/…`: a QR image ([`qr`]).
//! - `POST /simlessly/api/v1/notify/config[/query|/delete]`: the
//!   status-change callback URL ([`notify`]).
//!
//! Requests are authenticated by Simlessly's HMAC signature ([`signing`]),
//! then counted against the tenant's rate limit. Answers use the vendor
//! envelope and our failure codes ([`envelope`]).

pub mod envelope;
pub mod notify;
pub mod qr;
pub mod results;
pub mod signing;
pub mod wire;

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::Router;
use serde_json::json;
use simbatch_core::{BatchMode, Operation};
use simbatch_engine::service::StreamOptions;
use simbatch_store::{ItemFilter, Tenant};

use self::envelope::{Code, Refusal};
use self::wire::ItemView;
use crate::signed_url::{self, LinkError};
use crate::AppState;

/// The `source` of batches created here.
pub const SOURCE: &str = "simlessly";

/// The Simlessly routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/simlessly/api/v1/ac/generateByBatch",
            post(generate_by_batch),
        )
        .route("/simlessly/api/v1/batch/info", post(batch_info))
        .route("/simlessly/api/v1/notify/config", post(notify_set))
        .route("/simlessly/api/v1/notify/config/query", post(notify_query))
        .route(
            "/simlessly/api/v1/notify/config/delete",
            post(notify_delete),
        )
        .route(
            &format!("{}/{{tenant}}/{{file}}", results::PREFIX),
            get(result_file),
        )
        .route(
            &format!("{}/{{tenant}}/{{file}}", qr::PREFIX),
            get(qr_image),
        )
        .route("/simlessly/{*rest}", any(unknown_path))
        .route("/simlessly", any(unknown_path))
        .layer(DefaultBodyLimit::max(wire::BODY_LIMIT))
}

type Outcome = Result<Response, Refusal>;

fn respond(r: Outcome) -> Response {
    r.unwrap_or_else(IntoResponse::into_response)
}

/// The body, or a refusal when it could not be read.
fn body_bytes(body: Result<Bytes, BytesRejection>) -> Result<Bytes, Refusal> {
    body.map_err(|r| {
        if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
            Refusal::new(
                Code::BodyTooLarge,
                format!("the body exceeds {} bytes", wire::BODY_LIMIT),
            )
        } else {
            Refusal::new(Code::MalformedBody, "the body could not be read")
        }
    })
}

/// Authenticate a signed request, then take a token from the tenant's rate limit.
async fn admit(
    st: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Tenant, Refusal> {
    let tenant = signing::authenticate(st, headers, body).await?;
    crate::ops::rate_limit::check(ext, &tenant.id)
        .map_err(|l| Refusal::new(Code::RateLimited, l.message()))?;
    Ok(tenant)
}

async fn generate_by_batch(
    State(st): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(generate(&st, &ext, &headers, body).await)
}

async fn generate(
    st: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Outcome {
    let body = body_bytes(body)?;
    let tenant = admit(st, ext, headers, &body).await?;
    let req = wire::parse_generate(&body)?;
    if !st.service.template_exists(&req.config_name).await? {
        return Err(Refusal::new(
            Code::UnknownConfigName,
            format!("no configuration is named '{}'", req.config_name),
        ));
    }
    let code = wire::new_batch_code();
    let mut w = st.service.begin_stream_with(
        &tenant,
        StreamOptions {
            operation: Some(Operation::GenerateActivationCode),
            mode: BatchMode::Parallel,
            dry_run: false,
            source: SOURCE.to_owned(),
            external_ref: Some(code.clone()),
            max_reported: usize::MAX,
        },
    );
    for item in req.items {
        let pushed = match item {
            Ok(fields) => w.push(fields).await,
            Err((iccid, rejection)) => w.push_refused(iccid_only(&iccid), rejection).await,
        };
        if let Err(e) = pushed {
            w.abort().await;
            return Err(e.into());
        }
    }
    w.finish().await?;
    Ok(envelope::ok(json!({ "batchCode": code })))
}

/// Every item of a batch, in request order.
async fn all_items(
    st: &AppState,
    tenant: &Tenant,
    batch_id: &str,
) -> Result<Vec<ItemView>, Refusal> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = st
            .service
            .list_items(
                tenant,
                batch_id,
                ItemFilter {
                    status: None,
                    after_seq: after,
                    limit: 1000,
                },
            )
            .await?;
        out.extend(page.data.iter().map(wire::item_view));
        match page.next_cursor.and_then(|c| c.parse().ok()) {
            Some(next) => after = Some(next),
            None => return Ok(out),
        }
    }
}

async fn batch_info(
    State(st): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    respond(info(&st, &ext, &headers, body).await)
}

async fn info(
    st: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Outcome {
    let body = body_bytes(body)?;
    let tenant = admit(st, ext, headers, &body).await?;
    let obj = wire::object(&body)?;
    let code = wire::required_string(&obj, "batchCode")?;
    wire::optional_bool(&obj, "needAcLink")?;
    let unknown = || Refusal::new(Code::UnknownBatchCode, format!("unknown batchCode {code}"));
    if !wire::is_batch_code(&code) {
        return Err(unknown());
    }
    let batch = match st.service.get_batch_by_ref(&tenant, SOURCE, &code).await {
        Ok(b) => b,
        Err(simbatch_engine::service::ServiceError::NotFound(_)) => return Err(unknown()),
        Err(e) => return Err(e.into()),
    };
    let mut items = all_items(st, &tenant, &batch.id).await?;
    let signer = signed_url::signer(st.store.as_ref()).await.map_err(|e| {
        tracing::error!(error = %e, "url signing key unavailable");
        Refusal::internal()
    })?;
    let origin = results::origin(headers);
    let now = signed_url::now_secs();
    let url = format!(
        "{origin}{}",
        signer.sign(
            &results::path(&tenant.id, &code),
            now + results::LINK_TTL_SECS
        )
    );
    for it in items.iter_mut().filter(|it| it.activation_code.is_some()) {
        it.ac_link = qr::link(
            &signer,
            &origin,
            &tenant.id,
            &it.iccid,
            now + qr::LINK_TTL_SECS,
        );
    }
    Ok(envelope::ok(wire::batch_info(&batch, &items, &url)))
}

/// The tenant and JSON object body (empty when the body is blank) of a signed call.
async fn signed_object(
    st: &AppState,
    ext: &Extensions,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(Tenant, serde_json::Map<String, serde_json::Value>), Refusal> {
    let body = body_bytes(body)?;
    let tenant = admit(st, ext, headers, &body).await?;
    let obj = if body.iter().all(u8::is_ascii_whitespace) {
        serde_json::Map::new()
    } else {
        wire::object(&body)?
    };
    Ok((tenant, obj))
}

async fn notify_set(
    State(st): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = async {
        let (t, obj) = signed_object(&st, &ext, &headers, body).await?;
        Ok(envelope::ok(notify::set(&st, &t, &obj).await?))
    };
    respond(r.await)
}

async fn notify_query(
    State(st): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = async {
        let (t, _) = signed_object(&st, &ext, &headers, body).await?;
        Ok(envelope::ok(notify::query(&st, &t).await?))
    };
    respond(r.await)
}

async fn notify_delete(
    State(st): State<AppState>,
    ext: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = async {
        let (t, _) = signed_object(&st, &ext, &headers, body).await?;
        Ok(envelope::ok(notify::delete(&st, &t).await?))
    };
    respond(r.await)
}

async fn qr_image(
    State(st): State<AppState>,
    Path((tenant_id, file)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let expires = q.get("expires").and_then(|e| e.parse().ok());
    let signature = q.get("signature").map(String::as_str).unwrap_or("");
    respond(qr::serve(&st, &tenant_id, &file, expires, signature).await)
}

async fn result_file(
    State(st): State<AppState>,
    Path((tenant_id, file)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let r = async {
        let invalid = |e: LinkError| Refusal::new(Code::InvalidLink, e.to_string());
        let code = file
            .strip_suffix(".xlsx")
            .filter(|c| wire::is_batch_code(c))
            .ok_or_else(|| invalid(LinkError::BadSignature))?;
        let expires: i64 = q
            .get("expires")
            .and_then(|e| e.parse().ok())
            .ok_or_else(|| invalid(LinkError::BadSignature))?;
        let signature = q.get("signature").map(String::as_str).unwrap_or("");
        let signer = signed_url::signer(st.store.as_ref()).await.map_err(|e| {
            tracing::error!(error = %e, "url signing key unavailable");
            Refusal::internal()
        })?;
        signer
            .verify(
                &results::path(&tenant_id, code),
                expires,
                signature,
                signed_url::now_secs(),
            )
            .map_err(invalid)?;
        // The signature vouches for the tenant id; the service scopes by id.
        let tenant = Tenant {
            id: tenant_id.clone(),
            name: String::new(),
        };
        let batch = st
            .service
            .get_batch_by_ref(&tenant, SOURCE, code)
            .await
            .map_err(|e| match e {
                simbatch_engine::service::ServiceError::NotFound(_) => {
                    Refusal::new(Code::UnknownBatchCode, format!("unknown batchCode {code}"))
                }
                other => other.into(),
            })?;
        let items = all_items(&st, &tenant, &batch.id).await?;
        let bytes = results::workbook(code, &items).map_err(|e| {
            tracing::error!(error = %e, "result workbook failed");
            Refusal::internal()
        })?;
        Ok(results::attachment(code, bytes))
    }
    .await;
    respond(r)
}

async fn unknown_path() -> Response {
    Refusal::new(
        Code::UnknownPath,
        "no such Simlessly endpoint: see docs/dialects/simlessly.md",
    )
    .into_response()
}

/// The fields kept with an item refused here: its ICCID as given.
fn iccid_only(iccid: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("iccid".into(), serde_json::Value::String(iccid.to_owned()));
    m
}
