//! The ECC subscription operations outside a batch, and orders.
//!
//! Each call is an implicit batch (source `ecc`) whose items are the
//! orders; it answers 202 `{"orders": [id, ...]}`. Requests are validated
//! before anything is stored: a bad parameter is 400, an unknown
//! subscription 404, a SIM or MSISDN already in use 409, and so is a
//! subscription that still has an outstanding order (the ECC order guide
//! allows one at a time).

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use simbatch_core::{parse_item, BatchMode, ItemStatus, Operation};
use simbatch_engine::service::SubmitRequest;
use simbatch_store::{ItemFilter, SimFilter, SimRecord, Tenant};

use super::batches::{has_no_order, resolve};
use super::request::{self, Selector};
use super::{ecc_time, json_object, EccAuth, EccError, SOURCE};
use crate::AppState;

/// The subscription a `{type}:{id}` names; 404 unless it exists with a subscription.
async fn subscription(
    st: &AppState,
    tenant: &Tenant,
    selector: &str,
) -> Result<SimRecord, EccError> {
    let sel = Selector::parse(selector).map_err(EccError::bad_request)?;
    let iccid = resolve(st, tenant, &sel)
        .await?
        .ok_or_else(|| EccError::not_found("Subscription not found"))?;
    let sim = st.service.get_sim(tenant, &iccid).await?;
    if sim.sim.subscription_state.is_none() {
        return Err(EccError::not_found("Subscription not found"));
    }
    Ok(sim)
}

/// 409 when the subscription already has an order that has not finished:
/// ECC allows one outstanding order per subscription.
async fn no_outstanding_order(st: &AppState, tenant: &Tenant, iccid: &str) -> Result<(), EccError> {
    let open = st.store.open_order(&tenant.id, iccid).await.map_err(|e| {
        tracing::error!(error = %e, "outstanding order look-up failed");
        EccError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
    })?;
    match open {
        Some(id) => Err(EccError::conflict(format!(
            "There is an outstanding order ({id}) for this subscription; retry when it has completed"
        ))),
        None => Ok(()),
    }
}

/// Validate the orders with core, then submit them as one sequential batch.
/// Every order names the same SIM; refused with 409 while that SIM has an
/// outstanding order.
async fn run_orders(
    st: &AppState,
    tenant: &Tenant,
    orders: Vec<(Operation, Map<String, Value>)>,
) -> Result<Response, EccError> {
    if let Some(iccid) = orders
        .first()
        .and_then(|(_, f)| f.get("iccid"))
        .and_then(Value::as_str)
    {
        no_outstanding_order(st, tenant, iccid.trim()).await?;
    }
    let mut items = Vec::with_capacity(orders.len());
    for (op, mut fields) in orders {
        if let Err(r) = parse_item(op, &fields, st.service.config().validation) {
            return Err(EccError::bad_request(request::rejection_info(
                r.field.as_deref(),
                &r.code,
                &r.reason,
            )));
        }
        fields.insert("operation".into(), Value::String(op.as_str().into()));
        items.push(fields);
    }
    let report = st
        .service
        .submit(
            tenant,
            SubmitRequest {
                operation: None,
                mode: BatchMode::SequentialPerIccid,
                items,
                dry_run: false,
                source: SOURCE.into(),
                external_ref: None,
            },
        )
        .await?;
    let batch = report
        .batch
        .ok_or_else(|| EccError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error"))?;
    let page = st
        .service
        .list_items(
            tenant,
            &batch.id,
            ItemFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .await?;
    let ids: Vec<i64> = page.data.iter().map(|i| i.id).collect();
    Ok((StatusCode::ACCEPTED, Json(json!({ "orders": ids }))).into_response())
}

/// Translate one request aimed at a known subscription into an order.
fn order_for(
    method: &str,
    resource: &str,
    body: &Map<String, Value>,
    iccid: &str,
) -> Result<(Operation, Map<String, Value>), EccError> {
    let t = request::translate(method, resource, body).map_err(EccError::bad_request)?;
    let mut fields = t.fields;
    fields.insert("iccid".into(), Value::String(iccid.to_owned()));
    Ok((t.operation, fields))
}

/// `POST /ecc/v1/subscriptions`: create a subscription on a SIM.
pub async fn create(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    body: Bytes,
) -> Result<Response, EccError> {
    let body = json_object(&body)?;
    let t = request::translate("POST", "subscriptions", &body).map_err(EccError::bad_request)?;
    let iccid = t
        .fields
        .get("iccid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_owned();
    if let Ok(sim) = st.service.get_sim(&tenant, &iccid).await {
        if sim.sim.subscription_state.is_some() {
            return Err(EccError::conflict(format!(
                "The SIM {iccid} is already in use by a subscription"
            )));
        }
    }
    if let Some(msisdn) = t.fields.get("msisdn").and_then(Value::as_str) {
        let msisdn = msisdn.trim().trim_start_matches('+').to_owned();
        let page = st
            .service
            .list_sims(
                &tenant,
                SimFilter {
                    msisdn: Some(msisdn.clone()),
                    limit: 1,
                    ..Default::default()
                },
            )
            .await?;
        if page
            .data
            .iter()
            .any(|s| s.sim.iccid != iccid || s.sim.subscription_state.is_some())
        {
            return Err(EccError::conflict(format!(
                "The MSISDN {msisdn} is already in use"
            )));
        }
    }
    run_orders(&st, &tenant, vec![(t.operation, t.fields)]).await
}

/// `GET /ecc/v1/subscriptions/{type}:{id}`: basic subscription information.
pub async fn get(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path(selector): Path<String>,
) -> Result<Json<Value>, EccError> {
    let rec = subscription(&st, &tenant, &selector).await?;
    let s = rec.sim;
    let mut out = json!({
        "msisdn": s.msisdn,
        "iccid": s.iccid,
        "status": s.subscription_state.map(|v| v.as_str()),
        "blocked": s.blocked,
        "imsi": s.imsi.iter().collect::<Vec<_>>(),
        "main-imsi": s.imsi,
        "services": s.services.keys().collect::<Vec<_>>(),
    });
    if let Some(plan) = &s.rate_plan {
        out["subscription-type"] = json!(plan);
    }
    Ok(Json(out))
}

/// `PATCH /ecc/v1/subscriptions/{type}:{id}`: block/unblock and/or change state.
pub async fn patch(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path(selector): Path<String>,
    body: Bytes,
) -> Result<Response, EccError> {
    let body = json_object(&body)?;
    let sim = subscription(&st, &tenant, &selector).await?;
    let resource = format!("subscriptions/{selector}");
    let mut orders = Vec::new();
    if let Some(k) = body
        .keys()
        .find(|k| !["blocked", "state"].contains(&k.as_str()))
    {
        return Err(EccError::bad_request(format!(
            "Unknown parameter {} in body",
            k.chars().take(64).collect::<String>()
        )));
    }
    // One order per attribute, blocking first, applied in that order.
    for key in ["blocked", "state"] {
        if let Some(v) = body.get(key) {
            let one: Map<String, Value> = [(key.to_owned(), v.clone())].into_iter().collect();
            orders.push(order_for("PATCH", &resource, &one, &sim.sim.iccid)?);
        }
    }
    if orders.is_empty() {
        return Err(EccError::bad_request(
            "Missing blocked or state parameter in body",
        ));
    }
    run_orders(&st, &tenant, orders).await
}

/// `POST /ecc/v1/subscriptions/{type}:{id}/services`: assign one service
/// (`{"id": ...}`) or several (`{"services": [...]}`), one order each.
pub async fn assign(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path(selector): Path<String>,
    body: Bytes,
) -> Result<Response, EccError> {
    let body = json_object(&body)?;
    let sim = subscription(&st, &tenant, &selector).await?;
    let resource = format!("subscriptions/{selector}/services");
    let services: Vec<Map<String, Value>> = match body.get("services") {
        Some(Value::Array(list)) if body.len() == 1 && !list.is_empty() => list
            .iter()
            .map(|v| match v {
                Value::Object(o) => Ok(o.clone()),
                _ => Err(EccError::bad_request(
                    "Invalid services parameter in body: each service must be an object",
                )),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(EccError::bad_request(
                "Invalid services parameter in body: must be a non-empty list of services",
            ))
        }
        None => vec![body.clone()],
    };
    let orders = services
        .iter()
        .map(|s| order_for("POST", &resource, s, &sim.sim.iccid))
        .collect::<Result<Vec<_>, _>>()?;
    run_orders(&st, &tenant, orders).await
}

async fn service_order(
    st: AppState,
    tenant: Tenant,
    method: &str,
    selector: String,
    sid: Option<String>,
    body: Bytes,
) -> Result<Response, EccError> {
    let body = json_object(&body)?;
    let sim = subscription(&st, &tenant, &selector).await?;
    let resource = match &sid {
        Some(sid) => format!("subscriptions/{selector}/services/{sid}"),
        None => format!("subscriptions/{selector}/services"),
    };
    let order = order_for(method, &resource, &body, &sim.sim.iccid)?;
    run_orders(&st, &tenant, vec![order]).await
}

/// `PATCH .../services` with the service `id` in the body.
pub async fn modify(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path(selector): Path<String>,
    body: Bytes,
) -> Result<Response, EccError> {
    service_order(st, tenant, "PATCH", selector, None, body).await
}

/// `DELETE .../services` with the service `id` in the body.
pub async fn withdraw(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path(selector): Path<String>,
    body: Bytes,
) -> Result<Response, EccError> {
    service_order(st, tenant, "DELETE", selector, None, body).await
}

/// `PATCH .../services/{sid}`: modify one service's attributes.
pub async fn modify_one(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path((selector, sid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, EccError> {
    service_order(st, tenant, "PATCH", selector, Some(sid), body).await
}

/// `DELETE .../services/{sid}`: withdraw one service.
pub async fn withdraw_one(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path((selector, sid)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, EccError> {
    service_order(st, tenant, "DELETE", selector, Some(sid), body).await
}

/// ECC's order status: COMPLETED, PROVISIONING or CANCELED.
fn order_status(s: ItemStatus) -> &'static str {
    match s {
        ItemStatus::Completed => "COMPLETED",
        ItemStatus::Approved | ItemStatus::Processing => "PROVISIONING",
        _ => "CANCELED",
    }
}

/// `GET /ecc/v1/orders/{orderid}`.
pub async fn order(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path(id): Path<String>,
) -> Result<Json<Value>, EccError> {
    let id: i64 = id
        .parse()
        .ok()
        .filter(|v| *v > 0)
        .ok_or_else(|| EccError::not_found("Order not found"))?;
    let item = st.service.get_order(&tenant, id).await?;
    if has_no_order(&item) && item.status != ItemStatus::Canceled {
        return Err(EccError::not_found("Order not found"));
    }
    let batch = st.service.get_batch(&tenant, &item.batch_id).await?;
    let msisdn = match st.service.get_sim(&tenant, &item.iccid).await {
        Ok(s) => s.sim.msisdn,
        Err(_) => item
            .params
            .get("msisdn")
            .and_then(Value::as_str)
            .map(str::to_owned),
    };
    let terminal = item.status.is_terminal();
    let mut out = json!({
        "orderId": item.id,
        "msisdn": msisdn,
        "iccid": item.iccid,
        "status": order_status(item.status),
        "orderDate": ecc_time(batch.created_at),
        "completionDate": terminal.then(|| ecc_time(item.updated_at)),
        "batchid": batch.id,
        "requestid": item.params.get("reference").cloned().unwrap_or(Value::Null),
    });
    if item.status != ItemStatus::Completed {
        if let Some(r) = &item.error_reason {
            out["info"] = json!(r);
        }
    }
    Ok(Json(out))
}
