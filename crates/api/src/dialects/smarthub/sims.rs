//! Smarthub single-SIM endpoints under `/smarthub/v1/global-sims`.
//!
//! Reads go straight to the Service; changes (`activate`, `suspend`,
//! `retire`, custom fields) run as an implicit batch of one (source
//! `smarthub`) and wait up to [`WAIT`] for the result: 200 when it is
//! applied, 422 with the failure's code (e.g. `illegal_status`) when it
//! failed, 202 `{"jobId"}` when it is still queued.

use std::collections::HashMap;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use simbatch_core::{ItemStatus, Operation, SimStatus};
use simbatch_store::{SimFilter, SimRecord, Tenant};

use super::jobs::{activation_for, job_id};
use super::{json_object, paging, sm_time, SmAuth, SmError, SOURCE};
use crate::AppState;

/// How long a single-SIM change waits for its result.
pub const WAIT: Duration = Duration::from_secs(10);
/// Deepest offset served by the paged lists.
pub const MAX_OFFSET: i64 = 100_000;

type Q = Result<Query<HashMap<String, String>>, QueryRejection>;

fn query(q: Q) -> Result<HashMap<String, String>, SmError> {
    q.map(|Query(q)| q)
        .map_err(|_| SmError::bad_request("the query string is malformed"))
}

/// A SIM as Smarthub shows it.
pub fn sim_json(r: &SimRecord) -> Value {
    let s = &r.sim;
    let cf = |n: &str| s.custom_fields.get(n).cloned();
    json!({
        "giccid": s.iccid,
        "imsi": s.imsi,
        "msisdn": s.msisdn,
        "eid": s.eid,
        "imei": s.imei,
        "status": s.status.as_str(),
        "basicServicePackageName": s.rate_plan,
        "supplementaryServicePackageNames": s.supplementary_plans,
        "apnStatus": s.apn_status,
        "customFields": {"custom1": cf("1"), "custom2": cf("2"), "custom3": cf("3"),
                         "custom4": cf("4"), "custom5": cf("5")},
        "createdTime": sm_time(r.created_at),
        "updatedTime": sm_time(r.updated_at),
    })
}

fn check_offset(page: i64, size: i64) -> Result<i64, SmError> {
    let offset = page * size;
    if offset > MAX_OFFSET {
        return Err(SmError::field(
            "query",
            "page",
            "invalid",
            format!("page * size must be at most {MAX_OFFSET}"),
        ));
    }
    Ok(offset)
}

/// `GET /global-sims/{giccid}`.
pub async fn get(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
    Path(giccid): Path<String>,
) -> Result<Json<Value>, SmError> {
    let r = st.service.get_sim(&tenant, &giccid).await?;
    Ok(Json(sim_json(&r)))
}

/// A store failure while counting: logged, answered 500 without detail.
fn store_failed(e: simbatch_store::StoreError) -> SmError {
    tracing::error!(error = %e, "Smarthub count failed");
    SmError::internal()
}

/// `GET /global-sims?page=&size=&status=&basicServicePackageName=&imsi=&msisdn=`:
/// a page of SIMs, with `total`, the number of SIMs the filters match.
pub async fn list(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
    q: Q,
) -> Result<Json<Value>, SmError> {
    let q = query(q)?;
    let (page, size) = paging(&q, 10, 100)?;
    let mut skip = check_offset(page, size)?;
    let status = match q.get("status") {
        None => None,
        Some(s) => Some(SimStatus::parse(s.trim()).ok_or_else(|| {
            SmError::field(
                "query",
                "status",
                "invalid",
                "status must be INVENTORY, ACTIVATED, SUSPENDED or RETIRED",
            )
        })?),
    };
    let mut filter = SimFilter {
        status,
        rate_plan: q.get("basicServicePackageName").cloned(),
        imsi: q.get("imsi").cloned(),
        msisdn: q.get("msisdn").cloned(),
        ..Default::default()
    };
    // Keyset pages of the Service, skipped up to the requested offset.
    let mut out = Vec::new();
    loop {
        filter.limit = (skip + size - out.len() as i64).clamp(1, 1000);
        let p = st.service.list_sims(&tenant, filter.clone()).await?;
        let last = p.data.last().map(|s| s.sim.iccid.clone());
        for s in p.data {
            if skip > 0 {
                skip -= 1;
            } else if (out.len() as i64) < size {
                out.push(sim_json(&s));
            }
        }
        if out.len() as i64 >= size || p.next_cursor.is_none() {
            break;
        }
        filter.after_iccid = last;
    }
    let total = st
        .store
        .count_sims(&tenant.id, &filter)
        .await
        .map_err(store_failed)?;
    Ok(Json(
        json!({"globalSims": out, "page": page, "size": size, "total": total}),
    ))
}

/// `GET /global-sims/changeLogs?giccid=&page=&size=`: the SIM's state
/// changes, oldest first, with `total`, the number of changes.
pub async fn change_logs(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
    q: Q,
) -> Result<Json<Value>, SmError> {
    let q = query(q)?;
    let (page, size) = paging(&q, 10, 100)?;
    let mut skip = check_offset(page, size)?;
    let giccid = q
        .get("giccid")
        .filter(|g| !g.trim().is_empty())
        .ok_or_else(|| SmError::field("query", "giccid", "missing_field", "giccid is required"))?
        .trim()
        .to_owned();
    let mut after = 0;
    let mut out = Vec::new();
    loop {
        let limit = (skip + size - out.len() as i64).clamp(1, 1000);
        let p = st
            .service
            .sim_history(&tenant, &giccid, after, limit)
            .await?;
        for h in &p.data {
            after = h.id;
            if skip > 0 {
                skip -= 1;
            } else if (out.len() as i64) < size {
                out.push(json!({
                    "giccid": giccid,
                    "operation": h.operation,
                    "beforeStatus": h.from_status,
                    "afterStatus": h.to_status,
                    "changedTime": sm_time(h.at),
                    "jobId": h.batch_id.as_deref().map(job_id),
                }));
            }
        }
        if out.len() as i64 >= size || p.next_cursor.is_none() {
            break;
        }
    }
    let total = st
        .store
        .count_sim_history(&tenant.id, &giccid)
        .await
        .map_err(store_failed)?;
    Ok(Json(
        json!({"changeLogs": out, "page": page, "size": size, "total": total}),
    ))
}

fn custom_json(r: &SimRecord) -> Value {
    let cf = |n: &str| r.sim.custom_fields.get(n).cloned();
    json!({"custom1": cf("1"), "custom2": cf("2"), "custom3": cf("3"), "custom4": cf("4"), "custom5": cf("5")})
}

/// `GET /global-sims/{giccid}/custom-field`.
pub async fn get_custom(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
    Path(giccid): Path<String>,
) -> Result<Json<Value>, SmError> {
    let r = st.service.get_sim(&tenant, &giccid).await?;
    Ok(Json(custom_json(&r)))
}

/// Run one order on a SIM and answer in Smarthub's terms.
async fn run(
    st: &AppState,
    tenant: &Tenant,
    op: Operation,
    giccid: &str,
    fields: Map<String, Value>,
) -> Result<(Option<SimRecord>, String), SmError> {
    let (batch, item) = st
        .service
        .run_single_from(tenant, SOURCE, op, giccid, fields, WAIT)
        .await?;
    let job = job_id(&batch.id);
    match item {
        Some(i) if i.status == ItemStatus::Completed => {
            Ok((Some(st.service.get_sim(tenant, giccid).await?), job))
        }
        Some(i) if i.status.is_terminal() => {
            let code = match i.error_code.as_deref() {
                Some("illegal_status") => "illegal_status",
                Some("sim_not_found") => "missing",
                _ => "invalid",
            };
            let field = if code == "illegal_status" {
                "status"
            } else {
                "giccid"
            };
            Err(SmError::field(
                "globalSim",
                field,
                code,
                i.error_reason.unwrap_or_default(),
            ))
        }
        _ => Ok((None, job)),
    }
}

/// `PUT /global-sims/{giccid}/custom-field` with `custom1` … `custom5` (each optional).
pub async fn put_custom(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
    Path(giccid): Path<String>,
    body: Bytes,
) -> Result<Response, SmError> {
    let body = json_object(&body)?;
    st.service.get_sim(&tenant, &giccid).await?;
    let mut fields = Map::new();
    for (k, v) in &body {
        let n = match k.strip_prefix("custom").and_then(|n| n.parse::<u8>().ok()) {
            Some(n @ 1..=5) if k.len() == 7 => n,
            _ => {
                return Err(SmError::field(
                    "customFieldVO",
                    k,
                    "invalid",
                    format!("{k} is not a custom field; use custom1 to custom5"),
                ))
            }
        };
        match v {
            Value::Null => {}
            Value::String(s) if s.chars().count() <= 255 => {
                fields.insert(format!("custom_field_{n}"), v.clone());
            }
            _ => {
                return Err(SmError::field(
                    "customFieldVO",
                    k,
                    "invalid",
                    format!("{k} must be a string of at most 255 characters"),
                ))
            }
        }
    }
    match run(&st, &tenant, Operation::SetCustomFields, &giccid, fields).await? {
        (Some(sim), _) => Ok(Json(custom_json(&sim)).into_response()),
        (None, job) => Ok((StatusCode::ACCEPTED, Json(json!({"jobId": job}))).into_response()),
    }
}

/// `POST /global-sims/{giccid}/{activate|suspend|retire}`.
pub async fn action(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
    Path((giccid, action)): Path<(String, String)>,
) -> Result<Response, SmError> {
    let current = st.service.get_sim(&tenant, &giccid).await?;
    let op = match action.as_str() {
        "activate" => activation_for(Some(current.sim.status)),
        "suspend" => Operation::Suspend,
        "retire" => Operation::Retire,
        _ => return Err(SmError::not_found("No such SIM action")),
    };
    match run(&st, &tenant, op, &giccid, Map::new()).await? {
        (Some(sim), job) => Ok(Json(json!({
            "giccid": sim.sim.iccid, "status": sim.sim.status.as_str(), "jobId": job
        }))
        .into_response()),
        (None, job) => Ok((StatusCode::ACCEPTED, Json(json!({"jobId": job}))).into_response()),
    }
}
