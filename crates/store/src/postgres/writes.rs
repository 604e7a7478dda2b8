//! The writes of a chunk completion on PostgreSQL, from typed plan rows.
//!
//! Each list is one statement: its columns are bound as arrays and read back
//! as rows with `UNNEST`, so a chunk costs one round trip per list and the
//! server parses no JSON. History, which is only ever inserted, goes through
//! `COPY` instead.

use std::collections::HashSet;

use sqlx::{Postgres, Transaction};

use super::copy::CsvRows;
use super::db_err;
use crate::plan::{FollowerCancel, HistoryWrite, ItemWrite, ProfileWrite, SimWrite, StatusWrite};
use crate::Result;

/// A column of `rows`, collected with `f`.
fn col<'r, T, V>(rows: &'r [T], f: impl Fn(&'r T) -> V) -> Vec<V> {
    rows.iter().map(f).collect()
}

/// Insert SIMs the orders created, or update SIMs in full (`update`):
/// secrets given on an order replace the stored ones, absent ones are kept.
pub(super) async fn sims(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[SimWrite<'_>],
    update: bool,
    now: i64,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let plans = col(rows, SimWrite::supplementary_plans);
    let services = col(rows, SimWrite::services);
    let custom = col(rows, SimWrite::custom_fields);
    let sql = if update { UPDATE_SIMS } else { INSERT_SIMS };
    sqlx::query(sql)
        .bind(col(rows, |w| w.tenant_id))
        .bind(col(rows, |w| w.sim.iccid.as_str()))
        .bind(col(rows, |w| w.sim.imsi.as_deref()))
        .bind(col(rows, |w| w.sim.msisdn.as_deref()))
        .bind(col(rows, |w| w.sim.eid.as_deref()))
        .bind(col(rows, |w| w.sim.imei.as_deref()))
        .bind(col(rows, |w| w.sim.status.as_str()))
        .bind(col(rows, |w| w.sim.subscription_state.map(|s| s.as_str())))
        .bind(col(rows, |w| w.sim.blocked))
        .bind(col(rows, |w| w.sim.rate_plan.as_deref()))
        .bind(plans)
        .bind(services)
        .bind(col(rows, |w| w.sim.apn_status.as_deref()))
        .bind(col(&custom, |c| c[0]))
        .bind(col(&custom, |c| c[1]))
        .bind(col(&custom, |c| c[2]))
        .bind(col(&custom, |c| c[3]))
        .bind(col(&custom, |c| c[4]))
        .bind(col(rows, |w| w.ki_enc.as_deref()))
        .bind(col(rows, |w| w.opc_enc.as_deref()))
        .bind(now)
        .execute(&mut **tx)
        .await
        .map_err(db_err("SIM"))?;
    Ok(())
}

/// The SIM columns as `UNNEST` rows `v`.
macro_rules! sim_rows {
    () => {
        "UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
    $8::text[], $9::bool[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[],
    $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[])
    AS v(tenant_id, iccid, imsi, msisdn, eid, imei, status, subscription_state, blocked, rate_plan,
    supplementary_plans, services, apn_status, custom_field_1, custom_field_2, custom_field_3,
    custom_field_4, custom_field_5, ki_enc, opc_enc)"
    };
}

const INSERT_SIMS: &str = concat!(
    "INSERT INTO sims (tenant_id, iccid, imsi, msisdn, eid, imei, status, subscription_state, blocked,
    rate_plan, supplementary_plans, services, apn_status, custom_field_1, custom_field_2, custom_field_3,
    custom_field_4, custom_field_5, ki_enc, opc_enc, created_at, updated_at)
SELECT v.tenant_id, v.iccid, v.imsi, v.msisdn, v.eid, v.imei, v.status, v.subscription_state, v.blocked,
    v.rate_plan, v.supplementary_plans, v.services, v.apn_status, v.custom_field_1, v.custom_field_2,
    v.custom_field_3, v.custom_field_4, v.custom_field_5, v.ki_enc, v.opc_enc, $21, $21
FROM ",
    sim_rows!()
);

const UPDATE_SIMS: &str = concat!(
    "UPDATE sims s SET imsi = v.imsi, msisdn = v.msisdn, eid = v.eid, imei = v.imei, status = v.status,
    subscription_state = v.subscription_state, blocked = v.blocked, rate_plan = v.rate_plan,
    supplementary_plans = v.supplementary_plans, services = v.services, apn_status = v.apn_status,
    custom_field_1 = v.custom_field_1, custom_field_2 = v.custom_field_2, custom_field_3 = v.custom_field_3,
    custom_field_4 = v.custom_field_4, custom_field_5 = v.custom_field_5,
    ki_enc = COALESCE(v.ki_enc, s.ki_enc), opc_enc = COALESCE(v.opc_enc, s.opc_enc), updated_at = $21
FROM ",
    sim_rows!(),
    "
WHERE s.tenant_id = v.tenant_id AND s.iccid = v.iccid"
);

/// Status-only SIM updates (the lifecycle verbs).
pub(super) async fn statuses(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[StatusWrite<'_>],
    now: i64,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "UPDATE sims s SET status = v.status, updated_at = $4
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS v(tenant_id, iccid, status)
         WHERE s.tenant_id = v.tenant_id AND s.iccid = v.iccid",
    )
    .bind(col(rows, |w| w.tenant_id))
    .bind(col(rows, |w| w.iccid))
    .bind(col(rows, |w| w.status))
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err("SIM"))?;
    Ok(())
}

/// Insert the profiles the orders generated or imported.
pub(super) async fn profiles(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[ProfileWrite<'_>],
    now: i64,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO profiles (tenant_id, iccid, matching_id, activation_code, cc_hash_enc, template,
             state, apn, expires_at, package_enc, created_at, updated_at)
         SELECT v.*, $11, $11
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                     $7::text[], $8::text[], $9::bigint[], $10::text[])
              AS v(tenant_id, iccid, matching_id, activation_code, cc_hash_enc, template, state, apn,
                   expires_at, package_enc)",
    )
    .bind(col(rows, |p| p.tenant_id))
    .bind(col(rows, |p| p.iccid))
    .bind(col(rows, |p| p.matching_id))
    .bind(col(rows, |p| p.activation_code))
    .bind(col(rows, |p| p.cc_hash_enc.as_deref()))
    .bind(col(rows, |p| p.template))
    .bind(col(rows, |p| p.state))
    .bind(col(rows, |p| p.apn))
    .bind(col(rows, |p| p.expires_at))
    .bind(col(rows, |p| p.package_enc.as_deref()))
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err("profile"))?;
    Ok(())
}

/// Insert history rows, in plan order (history ids follow item order),
/// with `COPY`: the list is insert-only and as long as the chunk.
pub(super) async fn history(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[HistoryWrite<'_>],
    now: i64,
) -> Result<()> {
    if rows.is_empty() {
        return Ok(());
    }
    let mut csv = CsvRows::with_capacity(rows.len() * 128);
    for h in rows {
        csv.text(Some(h.tenant_id))
            .text(Some(h.iccid))
            .int(now)
            .text(Some(h.operation))
            .text(h.from_status)
            .text(Some(h.to_status))
            .text(Some(h.batch_id))
            .int(h.item_id);
        csv.end_row();
    }
    let mut copy = tx
        .copy_in_raw(
            "COPY sim_history (tenant_id, iccid, at, operation, from_status, to_status, batch_id, item_id)
             FROM STDIN (FORMAT csv)",
        )
        .await?;
    copy.send(csv.into_bytes()).await?;
    copy.finish().await.map_err(db_err("history"))?;
    Ok(())
}

/// How a completion shows it still owns its items.
#[derive(Debug, Clone, Copy)]
pub(super) enum Fence<'a> {
    /// The items are PROCESSING under a lease carrying this token (`claim`, then `complete`).
    Lease(&'a str),
    /// This transaction picked the items and holds their row locks
    /// (`run_chunk`); the ids listed were APPROVED when picked, the others
    /// PROCESSING under an expired lease.
    Locked(&'a HashSet<i64>),
}

impl Fence<'_> {
    /// Whether the item went from APPROVED straight to its result.
    pub(super) fn was_approved(&self, id: i64) -> bool {
        matches!(self, Fence::Locked(fresh) if fresh.contains(&id))
    }
}

/// The item-result UPDATE up to its fence.
macro_rules! update_items {
    ($fence:literal) => {
        concat!(
            "UPDATE batch_items i SET status = v.status, error_code = v.error_code,
             error_reason = v.error_reason, result = v.result, lease_token = NULL, lease_until = NULL,
             updated_at = $7
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[])
              AS v(id, status, error_code, error_reason, result)
         WHERE i.id = v.id AND ",
            $fence,
            " RETURNING i.id"
        )
    };
}

/// Write item results, fenced: only items this completion still owns are
/// written (see [`Fence`]). Returns the ids written.
pub(super) async fn items(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[ItemWrite<'_>],
    fence: Fence<'_>,
    now: i64,
) -> Result<Vec<i64>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let (sql, token) = match fence {
        Fence::Lease(token) => (
            update_items!("i.status = 'PROCESSING' AND i.lease_token = $6"),
            Some(token),
        ),
        // Locked rows cannot have moved; the status check only keeps a
        // finished item from being written twice should that ever change.
        Fence::Locked(_) => (
            update_items!("i.status IN ('APPROVED', 'PROCESSING') AND $6::text IS NULL"),
            None,
        ),
    };
    Ok(sqlx::query_scalar(sql)
        .bind(col(rows, |i| i.id))
        .bind(col(rows, |i| i.status))
        .bind(col(rows, |i| i.error_code))
        .bind(col(rows, |i| i.error_reason))
        .bind(col(rows, |i| i.result.as_deref()))
        .bind(token)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?)
}

/// Cancel the later APPROVED items of each failed item's ICCID in its
/// sequential batch; returns the batch and operation of each one canceled.
pub(super) async fn cancel_followers(
    tx: &mut Transaction<'_, Postgres>,
    rows: &[FollowerCancel],
    now: i64,
) -> Result<Vec<(String, Option<String>)>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let reasons = col(rows, |f| crate::plan::follower_reason(f.seq));
    Ok(sqlx::query_as(
        "UPDATE batch_items f SET status = 'CANCELED', error_code = 'preceding_item_failed',
             error_reason = v.reason, updated_at = $6
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[])
              AS v(batch_id, tenant_id, iccid, after_id, reason)
         WHERE f.tenant_id = v.tenant_id AND f.iccid = v.iccid AND f.id > v.after_id
           AND f.batch_id = v.batch_id AND f.status = 'APPROVED'
         RETURNING f.batch_id, f.operation",
    )
    .bind(col(rows, |f| f.batch_id.as_str()))
    .bind(col(rows, |f| f.tenant_id.as_str()))
    .bind(col(rows, |f| f.iccid.as_str()))
    .bind(col(rows, |f| f.after_id))
    .bind(reasons)
    .bind(now)
    .fetch_all(&mut **tx)
    .await?)
}
