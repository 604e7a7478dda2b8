//! `POST /ecc/v1/batches` and `GET /ecc/v1/batches/{batchid}`.
//!
//! Each API request becomes one item of a mixed batch (its `requestid` is
//! the item's `reference`). A request that cannot be translated is stored
//! REJECTED with its `info`; one whose subscription does not exist is
//! stored as refused with code `subscription_not_found` and shown FAILED
//! with `Subscription not found`. `single` runs in parallel, `multi`
//! sequentially per ICCID; core cancels a failed ICCID's later items, which
//! ECC shows as APPROVED (never executed).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use simbatch_core::{BatchMode, BatchStatus, ItemStatus, Rejection};
use simbatch_engine::service::{BatchWriter, StreamOptions};
use simbatch_store::{BatchRecord, ItemFilter, ItemRecord, SimFilter, Tenant};

use super::request::{self, Selector};
use super::{ecc_time, json_object, EccAuth, EccError, MAX_REQUESTS, SOURCE};
use crate::AppState;

/// Code stored on a request the dialect refused (its reason is the `info`).
pub const REFUSED: &str = "ecc_rejected";
/// Code stored on a request whose subscription does not exist.
pub const NO_SUBSCRIPTION: &str = "subscription_not_found";
/// Core failure codes ECC reports as `Subscription not found` (no order created).
pub const NOT_FOUND_FAILURES: [&str; 2] = ["sim_not_found", "subscription_not_found"];

/// ECC's name of a batch status (CANCELLED batches are PARTIALLY_COMPLETED).
pub fn batch_status(s: BatchStatus) -> &'static str {
    match s {
        BatchStatus::Initialising => "INITIALISING",
        BatchStatus::Processing => "PROCESSING",
        BatchStatus::Completed => "COMPLETED",
        BatchStatus::PartiallyCompleted | BatchStatus::Cancelled => "PARTIALLY_COMPLETED",
    }
}

/// Whether an item is a request for which no order exists (rejected, or its
/// subscription was not found).
pub fn has_no_order(i: &ItemRecord) -> bool {
    let code = i.error_code.as_deref().unwrap_or("");
    match i.status {
        ItemStatus::Rejected | ItemStatus::Canceled => true,
        ItemStatus::Failed => NOT_FOUND_FAILURES.contains(&code),
        _ => false,
    }
}

/// One request's `{requestid, status, info, orderid}`.
pub fn render_request(i: &ItemRecord) -> Value {
    let code = i.error_code.as_deref().unwrap_or("");
    let reason = i.error_reason.clone();
    let (status, info) = match i.status {
        ItemStatus::Approved => ("APPROVED", None),
        ItemStatus::Processing => ("PROCESSING", None),
        ItemStatus::Completed => ("COMPLETED", None),
        ItemStatus::Rejected if code == NO_SUBSCRIPTION => {
            ("FAILED", Some("Subscription not found".to_owned()))
        }
        ItemStatus::Rejected if code == REFUSED => ("REJECTED", reason),
        ItemStatus::Rejected => (
            "REJECTED",
            Some(request::rejection_info(
                i.error_field.as_deref(),
                code,
                reason.as_deref().unwrap_or(""),
            )),
        ),
        ItemStatus::Failed if NOT_FOUND_FAILURES.contains(&code) => {
            ("FAILED", Some("Subscription not found".to_owned()))
        }
        // The order ran and did not succeed.
        ItemStatus::Failed => ("CANCELED", reason),
        // Never executed: an earlier request of the ICCID failed, or the batch was cancelled.
        ItemStatus::Canceled => (
            "APPROVED",
            Some(if code == "preceding_item_failed" {
                "Not executed: an earlier request for this subscription did not complete".to_owned()
            } else {
                "Not executed: the batch was cancelled".to_owned()
            }),
        ),
    };
    let orderid = match i.status {
        ItemStatus::Approved => Value::Null,
        _ if has_no_order(i) => Value::Null,
        _ => json!(i.id),
    };
    json!({
        "requestid": i.params.get("reference").cloned().unwrap_or(Value::Null),
        "status": status,
        "info": info,
        "orderid": orderid,
    })
}

/// A batch with its requests.
pub fn render_batch(b: &BatchRecord, items: &[ItemRecord]) -> Value {
    json!({
        "batchid": b.id,
        "creationdate": ecc_time(b.created_at),
        "status": batch_status(b.status),
        "type": if b.mode == BatchMode::SequentialPerIccid { "multi" } else { "single" },
        "requests": items.iter().map(render_request).collect::<Vec<_>>(),
    })
}

/// The ICCID of the subscription a selector names, if it exists.
pub async fn resolve(
    st: &AppState,
    tenant: &Tenant,
    sel: &Selector,
) -> Result<Option<String>, EccError> {
    let mut filter = SimFilter {
        limit: 1,
        ..Default::default()
    };
    match sel {
        Selector::Iccid(i) => return Ok(Some(i.clone())),
        Selector::Msisdn(m) => filter.msisdn = Some(m.clone()),
        Selector::Imsi(i) => filter.imsi = Some(i.clone()),
    }
    let page = st.service.list_sims(tenant, filter).await?;
    Ok(page.data.into_iter().next().map(|s| s.sim.iccid))
}

fn refusal(code: &str, info: impl Into<String>) -> Rejection {
    Rejection {
        field: None,
        code: code.to_owned(),
        reason: info.into(),
    }
}

/// The request's `requestid` as text (numbers are accepted).
fn request_id(r: &Map<String, Value>) -> Result<Option<String>, String> {
    match r.get("requestid") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Number(n)) => Ok(Some(n.to_string())),
        Some(_) => Err("Invalid requestid parameter: must be a string".into()),
    }
}

/// Validate one API request and add it to the batch.
async fn push_request(
    st: &AppState,
    tenant: &Tenant,
    w: &mut BatchWriter,
    multi: bool,
    raw: &Value,
) -> Result<(), EccError> {
    let Value::Object(r) = raw else {
        w.push_refused(
            Map::new(),
            refusal(
                REFUSED,
                "Invalid request: each request must be a JSON object",
            ),
        )
        .await?;
        return Ok(());
    };
    let mut fields = Map::new();
    let reference = match request_id(r) {
        Ok(v) => v,
        Err(info) => {
            w.push_refused(fields, refusal(REFUSED, info)).await?;
            return Ok(());
        }
    };
    if let Some(id) = &reference {
        fields.insert("reference".into(), Value::String(id.clone()));
    }
    let text = |k: &str| match r.get(k) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        None | Some(Value::Null) | Some(Value::String(_)) => Err(format!("Missing {k} parameter")),
        Some(_) => Err(format!("Invalid {k} parameter: must be a string")),
    };
    let parsed = text("method").and_then(|method| {
        let resource = text("resource")?;
        let body = match r.get("body") {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(b)) => b.clone(),
            Some(_) => return Err("Invalid body parameter: must be a JSON object".into()),
        };
        if let Some(k) = r
            .keys()
            .find(|k| !["method", "resource", "body", "requestid"].contains(&k.as_str()))
        {
            return Err(format!(
                "Unknown parameter {} in request",
                k.chars().take(64).collect::<String>()
            ));
        }
        request::translate(&method, &resource, &body)
    });
    let t = match parsed {
        Ok(t) => t,
        Err(info) => {
            w.push_refused(fields, refusal(REFUSED, info)).await?;
            return Ok(());
        }
    };
    let names_iccid = matches!(t.selector, None | Some(Selector::Iccid(_)));
    if multi && !names_iccid {
        let info =
            "Missing iccid: every request of a multi batch must name its subscription by iccid";
        w.push_refused(fields, refusal(REFUSED, info)).await?;
        return Ok(());
    }
    fields.extend(t.fields);
    if let Some(sel) = &t.selector {
        match resolve(st, tenant, sel).await? {
            Some(iccid) => {
                fields.insert("iccid".into(), Value::String(iccid));
            }
            None => {
                w.push_refused(fields, refusal(NO_SUBSCRIPTION, "Subscription not found"))
                    .await?;
                return Ok(());
            }
        }
    }
    fields.insert(
        "operation".into(),
        Value::String(t.operation.as_str().into()),
    );
    w.push(fields).await?;
    Ok(())
}

/// Every request of a batch (at most 1,000 are shown).
async fn all_items(st: &AppState, tenant: &Tenant, id: &str) -> Result<Vec<ItemRecord>, EccError> {
    let page = st
        .service
        .list_items(
            tenant,
            id,
            ItemFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .await?;
    Ok(page.data)
}

/// `POST /ecc/v1/batches`: 202 with the batch and each request's status.
pub async fn submit(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    body: Bytes,
) -> Result<Response, EccError> {
    let obj = json_object(&body)?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["type", "requests"].contains(&k.as_str()))
    {
        return Err(EccError::bad_request(format!(
            "Unknown parameter {} in body",
            k.chars().take(64).collect::<String>()
        )));
    }
    let multi = match obj.get("type") {
        None | Some(Value::Null) => false,
        Some(Value::String(s)) if s == "single" => false,
        Some(Value::String(s)) if s == "multi" => true,
        Some(_) => {
            return Err(EccError::bad_request(
                "Invalid type parameter in body: use single or multi",
            ))
        }
    };
    let requests = match obj.get("requests") {
        None | Some(Value::Null) => {
            return Err(EccError::bad_request("Missing requests parameter in body"))
        }
        Some(Value::Array(a)) => a,
        Some(_) => {
            return Err(EccError::bad_request(
                "Invalid requests parameter in body: must be a list",
            ))
        }
    };
    if requests.is_empty() {
        return Err(EccError::bad_request(
            "Invalid requests parameter in body: a batch needs at least one API request",
        ));
    }
    if requests.len() > MAX_REQUESTS {
        return Err(EccError::bad_request(format!(
            "A batch can contain at most {MAX_REQUESTS} API requests, got {}",
            requests.len()
        )));
    }
    let mode = if multi {
        BatchMode::SequentialPerIccid
    } else {
        BatchMode::Parallel
    };
    let mut w = st.service.begin_stream_with(
        &tenant,
        StreamOptions {
            operation: None,
            mode,
            dry_run: false,
            source: SOURCE.into(),
            external_ref: None,
            max_reported: usize::MAX,
        },
    );
    for raw in requests {
        if let Err(e) = push_request(&st, &tenant, &mut w, multi, raw).await {
            w.abort().await;
            return Err(e);
        }
    }
    let report = w.finish().await?;
    let batch = report
        .batch
        .ok_or_else(|| EccError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error"))?;
    let items = all_items(&st, &tenant, &batch.id).await?;
    Ok((StatusCode::ACCEPTED, Json(render_batch(&batch, &items))).into_response())
}

/// `GET /ecc/v1/batches/{batchid}`.
pub async fn get(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path(id): Path<String>,
) -> Result<Json<Value>, EccError> {
    let batch = st.service.get_batch(&tenant, &id).await?;
    let items = all_items(&st, &tenant, &batch.id).await?;
    Ok(Json(render_batch(&batch, &items)))
}
