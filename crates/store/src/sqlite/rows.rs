//! Mapping SQLite rows to records.

use serde_json::{Map, Value};
use simbatch_core::{
    BatchMode, BatchStatus, Counts, ItemStatus, Operation, Sim, SimStatus, SubscriptionState,
};
use sqlx::sqlite::SqliteRow;
use sqlx::Row;

use crate::{BatchRecord, HistoryEntry, ItemRecord, Result, SimRecord, StoreError};

/// Columns read by [`batch`].
pub const BATCH_COLS: &str =
    "id, tenant_id, operation, mode, status, source, external_ref, parent_id, total, approved, \
     rejected, processing, completed, failed, canceled, created_at, updated_at, completed_at";

/// Columns read by [`item`].
pub const ITEM_COLS: &str =
    "id, batch_id, seq, iccid, operation, status, params, error_field, error_code, error_reason, result, updated_at";

/// Columns read by [`sim`].
pub const SIM_COLS: &str = "iccid, imsi, msisdn, eid, imei, status, subscription_state, blocked, rate_plan, \
     supplementary_plans, services, apn_status, custom_field_1, custom_field_2, custom_field_3, custom_field_4, \
     custom_field_5, ki_enc IS NOT NULL AS has_ki, created_at, updated_at";

fn corrupt(what: &str, value: &str) -> StoreError {
    StoreError::Corrupt(format!("unknown {what} '{value}'"))
}

/// Parse an optional stored operation name.
pub fn operation(name: Option<String>) -> Result<Option<Operation>> {
    name.map(|n| Operation::parse(&n).ok_or_else(|| corrupt("operation", &n)))
        .transpose()
}

/// A batch row.
pub fn batch(r: &SqliteRow) -> Result<BatchRecord> {
    let mode: String = r.try_get("mode")?;
    let status: String = r.try_get("status")?;
    Ok(BatchRecord {
        id: r.try_get("id")?,
        tenant_id: r.try_get("tenant_id")?,
        operation: operation(r.try_get("operation")?)?,
        mode: BatchMode::parse(&mode).ok_or_else(|| corrupt("mode", &mode))?,
        status: BatchStatus::parse(&status).ok_or_else(|| corrupt("batch status", &status))?,
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

/// Parse a JSON object stored as text.
pub fn json_map(text: &str) -> Result<Map<String, Value>> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
}

/// An item row.
pub fn item(r: &SqliteRow) -> Result<ItemRecord> {
    let status: String = r.try_get("status")?;
    let params: String = r.try_get("params")?;
    let result: Option<String> = r.try_get("result")?;
    Ok(ItemRecord {
        id: r.try_get("id")?,
        batch_id: r.try_get("batch_id")?,
        seq: r.try_get("seq")?,
        iccid: r.try_get("iccid")?,
        operation: operation(r.try_get("operation")?)?,
        status: ItemStatus::parse(&status).ok_or_else(|| corrupt("item status", &status))?,
        params: json_map(&params)?,
        error_field: r.try_get("error_field")?,
        error_code: r.try_get("error_code")?,
        error_reason: r.try_get("error_reason")?,
        result: result
            .map(|t| serde_json::from_str(&t))
            .transpose()
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A SIM row (secrets are never selected).
pub fn sim(r: &SqliteRow) -> Result<SimRecord> {
    let status: String = r.try_get("status")?;
    let sub: Option<String> = r.try_get("subscription_state")?;
    let plans: String = r.try_get("supplementary_plans")?;
    let services: String = r.try_get("services")?;
    let mut custom_fields = std::collections::BTreeMap::new();
    for (n, col) in [
        "custom_field_1",
        "custom_field_2",
        "custom_field_3",
        "custom_field_4",
        "custom_field_5",
    ]
    .into_iter()
    .enumerate()
    {
        if let Some(v) = r.try_get::<Option<String>, _>(col)? {
            custom_fields.insert((n + 1).to_string(), v);
        }
    }
    let bad = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
    Ok(SimRecord {
        sim: Sim {
            iccid: r.try_get("iccid")?,
            imsi: r.try_get("imsi")?,
            msisdn: r.try_get("msisdn")?,
            eid: r.try_get("eid")?,
            imei: r.try_get("imei")?,
            status: SimStatus::parse(&status).ok_or_else(|| corrupt("SIM status", &status))?,
            subscription_state: sub
                .map(|s| {
                    SubscriptionState::parse(&s).ok_or_else(|| corrupt("subscription state", &s))
                })
                .transpose()?,
            blocked: r.try_get::<i64, _>("blocked")? != 0,
            rate_plan: r.try_get("rate_plan")?,
            supplementary_plans: serde_json::from_str(&plans).map_err(bad)?,
            services: serde_json::from_str(&services).map_err(bad)?,
            apn_status: r.try_get("apn_status")?,
            custom_fields,
        },
        has_ki: r.try_get::<i64, _>("has_ki")? != 0,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

/// A history row.
pub fn history(r: &SqliteRow) -> Result<HistoryEntry> {
    Ok(HistoryEntry {
        id: r.try_get("id")?,
        at: r.try_get("at")?,
        operation: r.try_get("operation")?,
        from_status: r.try_get("from_status")?,
        to_status: r.try_get("to_status")?,
        batch_id: r.try_get("batch_id")?,
        order_id: r.try_get("item_id")?,
    })
}
