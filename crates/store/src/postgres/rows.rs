//! Turning PostgreSQL rows into records, and the column lists that go with them.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use simbatch_core::{
    BatchMode, BatchStatus, Counts, ItemStatus, Operation, Sim, SimStatus, SubscriptionState,
};
use sqlx::postgres::PgRow;
use sqlx::Row;

use crate::model::*;
use crate::{Result, StoreError};

/// Columns of `batches`, in the order [`batch`] reads them.
pub(crate) const BATCH_COLS: &str = "id, tenant_id, operation, mode, status, source, external_ref, parent_id, \
     total, approved, rejected, processing, completed, failed, canceled, created_at, updated_at, completed_at";

/// Columns of `batch_items` that [`item`] reads.
pub(crate) const ITEM_COLS: &str =
    "id, batch_id, seq, iccid, operation, status, params, error_field, error_code, error_reason, result, updated_at";

/// Columns of `sims` that [`sim_record`] reads (never secrets).
pub(crate) const SIM_COLS: &str = "tenant_id, iccid, imsi, msisdn, eid, imei, status, subscription_state, blocked, \
     rate_plan, supplementary_plans, services, apn_status, custom_field_1, custom_field_2, custom_field_3, \
     custom_field_4, custom_field_5, (ki_enc IS NOT NULL) AS has_ki, created_at, updated_at";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} '{value}'"))
}

/// An optional operation name.
pub(crate) fn operation(name: Option<String>) -> Result<Option<Operation>> {
    name.map(|n| Operation::parse(&n).ok_or_else(|| corrupt("operation", &n)))
        .transpose()
}

/// A batch mode name.
pub(crate) fn mode(name: &str) -> Result<BatchMode> {
    BatchMode::parse(name).ok_or_else(|| corrupt("batch mode", name))
}

/// A batch status name.
pub(crate) fn batch_status(name: &str) -> Result<BatchStatus> {
    BatchStatus::parse(name).ok_or_else(|| corrupt("batch status", name))
}

/// JSON text to a value.
pub(crate) fn json(text: &str) -> Result<Value> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

/// JSON object text to a map.
pub(crate) fn json_map(text: &str) -> Result<Map<String, Value>> {
    match json(text)? {
        Value::Object(m) => Ok(m),
        _ => Err(StoreError::Corrupt("stored JSON is not an object".into())),
    }
}

/// A `batches` row selected with [`BATCH_COLS`].
pub(crate) fn batch(r: &PgRow) -> Result<BatchRecord> {
    Ok(BatchRecord {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        operation: operation(r.try_get("operation")?)?,
        mode: mode(r.try_get::<&str, _>("mode")?)?,
        status: batch_status(r.try_get::<&str, _>("status")?)?,
        counts: Counts {
            total: r.try_get("total")?,
            approved: r.try_get("approved")?,
            rejected: r.try_get("rejected")?,
            processing: r.try_get("processing")?,
            completed: r.try_get("completed")?,
            failed: r.try_get("failed")?,
            canceled: r.try_get("canceled")?,
        },
        source: r.try_get("source")?,
        external_ref: r.try_get("external_ref")?,
        parent_id: r.try_get("parent_id")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
        completed_at: r.try_get("completed_at")?,
    })
}

/// A `batch_items` row selected with [`ITEM_COLS`].
pub(crate) fn item(r: &PgRow) -> Result<ItemRecord> {
    let status: &str = r.try_get("status")?;
    let result: Option<String> = r.try_get("result")?;
    Ok(ItemRecord {
        id: r.try_get("id")?,
        batch_id: r.try_get("batch_id")?,
        seq: r.try_get("seq")?,
        iccid: r.try_get("iccid")?,
        operation: operation(r.try_get("operation")?)?,
        status: ItemStatus::parse(status).ok_or_else(|| corrupt("item status", status))?,
        params: json_map(r.try_get::<&str, _>("params")?)?,
        error_field: r.try_get("error_field")?,
        error_code: r.try_get("error_code")?,
        error_reason: r.try_get("error_reason")?,
        result: result.as_deref().map(json).transpose()?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// The SIM part of a `sims` row selected with [`SIM_COLS`].
pub(crate) fn sim(r: &PgRow) -> Result<Sim> {
    let status: &str = r.try_get("status")?;
    let sub: Option<String> = r.try_get("subscription_state")?;
    let plans: &str = r.try_get("supplementary_plans")?;
    let services: &str = r.try_get("services")?;
    let mut custom_fields = BTreeMap::new();
    for n in 1..=5 {
        let v: Option<String> = r.try_get(format!("custom_field_{n}").as_str())?;
        if let Some(v) = v {
            custom_fields.insert(n.to_string(), v);
        }
    }
    Ok(Sim {
        iccid: r.try_get("iccid")?,
        imsi: r.try_get("imsi")?,
        msisdn: r.try_get("msisdn")?,
        eid: r.try_get("eid")?,
        imei: r.try_get("imei")?,
        status: SimStatus::parse(status).ok_or_else(|| corrupt("SIM status", status))?,
        subscription_state: sub
            .map(|s| SubscriptionState::parse(&s).ok_or_else(|| corrupt("subscription state", &s)))
            .transpose()?,
        blocked: r.try_get("blocked")?,
        rate_plan: r.try_get("rate_plan")?,
        supplementary_plans: serde_json::from_str(plans)
            .map_err(|e| StoreError::Corrupt(format!("supplementary_plans: {e}")))?,
        services: serde_json::from_str(services)
            .map_err(|e| StoreError::Corrupt(format!("services: {e}")))?,
        apn_status: r.try_get("apn_status")?,
        custom_fields,
    })
}

/// A `sims` row selected with [`SIM_COLS`].
pub(crate) fn sim_record(r: &PgRow) -> Result<SimRecord> {
    Ok(SimRecord {
        sim: sim(r)?,
        has_ki: r.try_get("has_ki")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// Columns of `webhooks` that [`webhook`] reads.
pub(crate) const WEBHOOK_COLS: &str =
    "id, tenant_id, url, secret_enc, enabled, disabled_reason, cursor, attempts, created_at, format";

/// A `webhooks` row; the secret is left out (the caller fills it when allowed).
pub(crate) fn webhook(r: &PgRow) -> Result<Webhook> {
    Ok(Webhook {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        url: r.try_get("url")?,
        enabled: r.try_get("enabled")?,
        disabled_reason: r.try_get("disabled_reason")?,
        created_at: r.try_get("created_at")?,
        secret: None,
        cursor: r.try_get("cursor")?,
        attempts: r.try_get("attempts")?,
        format: r.try_get("format")?,
    })
}
