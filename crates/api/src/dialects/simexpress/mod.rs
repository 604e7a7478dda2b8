//! sim.express, served under `/simexpress` with the vendor's path.
//!
//! `POST /simexpress/v1/profile/importProfileList` imports up to 999 eSIM
//! profiles synchronously: the items become one `import_profile` batch
//! (source `simexpress`, visible through the native API), and the answer
//! comes once every item is terminal, with one result per item in request
//! order.
//!
//! Authentication is the tenant API token as `X-API-Key` (or
//! `Authorization: Bearer`), per ARCHITECTURE §6: the vendor documents no
//! scheme of its own.

pub mod wire;

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use axum::Router;
use simbatch_core::{BatchMode, Operation};
use simbatch_engine::service::StreamOptions;
use simbatch_store::{ItemFilter, ItemRecord, Tenant};

use self::wire::{Code, Failure};
use crate::AppState;

/// The `source` of batches created here.
pub const SOURCE: &str = "simexpress";
/// Longest wait for a batch to finish before answering with its id.
pub const SYNC_TIMEOUT: Duration = Duration::from_secs(120);

/// The sim.express routes.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(
            "/simexpress/v1/profile/importProfileList",
            post(import_profile_list),
        )
        .route("/simexpress/{*rest}", any(unknown_path))
        .route("/simexpress", any(unknown_path))
        .layer(DefaultBodyLimit::max(wire::BODY_LIMIT))
}

/// The tenant of the request's API token, refusals in sim.express's shape.
struct ExpressAuth(Tenant);

impl FromRequestParts<AppState> for ExpressAuth {
    type Rejection = Failure;

    async fn from_request_parts(parts: &mut Parts, st: &AppState) -> Result<Self, Failure> {
        match crate::auth::tenant_for(parts, st).await {
            Ok(t) => Ok(Self(t)),
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                Err(Failure::new(Code::Unauthorized, e.detail))
            }
            Err(e) if e.status == StatusCode::TOO_MANY_REQUESTS => {
                Err(Failure::new(Code::RateLimited, e.detail))
            }
            Err(_) => Err(Failure::internal()),
        }
    }
}

async fn import_profile_list(
    State(st): State<AppState>,
    auth: Result<ExpressAuth, Failure>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let r = async {
        let ExpressAuth(tenant) = auth?;
        let body = body.map_err(|r| {
            if r.status() == StatusCode::PAYLOAD_TOO_LARGE {
                Failure::new(
                    Code::BodyTooLarge,
                    format!("the body exceeds {} bytes", wire::BODY_LIMIT),
                )
            } else {
                Failure::new(Code::MalformedBody, "the body could not be read")
            }
        })?;
        let req = wire::parse(&body)?;
        let items = run(&st, &tenant, &req).await?;
        Ok::<_, Failure>(wire::success(req.echo, &items))
    }
    .await;
    r.unwrap_or_else(IntoResponse::into_response)
}

/// Submit the items as one batch, wait until it is done, and return its items.
async fn run(
    st: &AppState,
    tenant: &Tenant,
    req: &wire::ImportRequest,
) -> Result<Vec<ItemRecord>, Failure> {
    let mut w = st.service.begin_stream_with(
        tenant,
        StreamOptions {
            operation: Some(Operation::ImportProfile),
            mode: BatchMode::Parallel,
            dry_run: false,
            source: SOURCE.to_owned(),
            external_ref: None,
            max_reported: usize::MAX,
        },
    );
    for item in &req.items {
        let pushed = match item {
            Ok(fields) => w.push(fields.clone()).await,
            Err((iccid, rejection)) => w.push_refused(iccid_only(iccid), rejection.clone()).await,
        };
        if let Err(e) = pushed {
            w.abort().await;
            return Err(e.into());
        }
    }
    let report = w.finish().await?;
    let batch = report.batch.ok_or_else(Failure::internal)?;
    let deadline = tokio::time::Instant::now() + SYNC_TIMEOUT;
    let mut pause = Duration::from_millis(10);
    loop {
        let b = st.service.get_batch(tenant, &batch.id).await?;
        if b.status.is_terminal() {
            break;
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(Failure::new(
                Code::Timeout,
                format!(
                    "the import is still running as batch {}; follow it with GET /v1/batches/{}",
                    b.id, b.id
                ),
            ));
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_millis(100));
    }
    let page = st
        .service
        .list_items(
            tenant,
            &batch.id,
            ItemFilter {
                status: None,
                after_seq: None,
                limit: 1000,
            },
        )
        .await?;
    Ok(page.data)
}

async fn unknown_path() -> Response {
    Failure::new(
        Code::UnknownPath,
        "no such sim.express endpoint: see docs/dialects/simexpress.md",
    )
    .into_response()
}

/// The fields kept with an item refused here: its ICCID as given.
fn iccid_only(iccid: &str) -> serde_json::Map<String, serde_json::Value> {
    let mut m = serde_json::Map::new();
    m.insert("iccid".into(), serde_json::Value::String(iccid.to_owned()));
    m
}
