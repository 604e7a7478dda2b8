//! The SQLite pick read as one JSON value.
//!
//! `run_chunk` reads each picked item with its batch's mode, its SIM and its
//! profile flag. Read as rows, sqlx copies and hands over every column of
//! every row one by one (about 10 us per 30-column row); aggregated by
//! SQLite into one JSON array and decoded here into typed tuples, the whole
//! chunk comes back as a single text value.

use serde::Deserialize;
use serde_json::{Map, Value};
use simbatch_core::{BatchMode, Sim, SimStatus, SubscriptionState};

use super::rows;
use crate::crypto::Cipher;
use crate::{ClaimedItem, Result, StoreError};

/// The columns of one picked item, as one flat JSON array in the order of
/// [`Picked`] (`i`: the item, `b`: its batch, `s`: its SIM, if any). Flat:
/// a nested `json_array` for the SIM made SQLite render and parse it again,
/// about a quarter of the pick's time.
const PICK_JSON: &str =
    "json_array(i.id, i.batch_id, i.tenant_id, i.seq, i.iccid, i.operation, i.params,
    i.secret_enc, b.mode, s.status IS NOT NULL, s.imsi, s.msisdn, s.eid, s.imei, s.status,
    s.subscription_state, s.blocked, s.rate_plan, s.supplementary_plans, s.services, s.apn_status,
    s.custom_field_1, s.custom_field_2, s.custom_field_3, s.custom_field_4, s.custom_field_5,
    EXISTS (SELECT 1 FROM profiles p WHERE p.tenant_id = i.tenant_id AND p.iccid = i.iccid))";

/// One statement returning the items whose ids `ids` (a query selecting
/// `id`) yields, as one JSON array (`[]` when there are none).
pub(super) fn aggregated(ids: &str) -> String {
    format!(
        "SELECT json_group_array({PICK_JSON}) FROM ({ids}) k
JOIN batch_items i ON i.id = k.id JOIN batches b ON b.id = i.batch_id
LEFT JOIN sims s ON s.tenant_id = i.tenant_id AND s.iccid = i.iccid"
    )
}

/// The stored columns of a claimed item, before its secrets are opened.
#[derive(Debug)]
pub(super) struct ItemColumns {
    pub id: i64,
    pub batch_id: String,
    pub tenant_id: String,
    pub seq: i64,
    pub iccid: String,
    pub operation: Option<String>,
    pub params: String,
    pub secret_enc: Option<String>,
}

/// One picked item (see [`PICK_JSON`]): the item's columns, its batch's
/// mode, whether it has a SIM, the SIM's columns (all null without one)
/// and whether it has a profile.
#[derive(Debug, Deserialize)]
pub(super) struct Picked(
    i64,
    String,
    String,
    i64,
    String,
    Option<String>,
    String,
    Option<String>,
    String,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    i64,
);

/// Decode the aggregated pick, in id order.
pub(super) fn decode(text: &str) -> Result<Vec<Picked>> {
    let mut picked: Vec<Picked> = serde_json::from_str(text)
        .map_err(|e| StoreError::Corrupt(format!("picked items: {e}")))?;
    picked.sort_by_key(|p| p.0);
    Ok(picked)
}

/// Decode the aggregated pick into claimed items, in id order, with their
/// secrets opened. CPU work (JSON and AES-GCM): `run_chunk` does it on the
/// blocking pool for a chunk picked ahead.
pub(super) fn items(text: &str, cipher: &Cipher) -> Result<Vec<ClaimedItem>> {
    decode(text)?
        .into_iter()
        .map(|p| {
            let (mode, has_profile, sim) = (p.mode(), p.26 != 0, p.sim()?);
            let mut item = claimed(cipher, p.into_columns())?;
            item.mode = mode;
            item.has_profile = has_profile;
            item.sim = sim;
            Ok(item)
        })
        .collect()
}

/// A claimed item from its stored columns (batch mode, SIM and profile
/// flag are left for the caller).
pub(super) fn claimed(cipher: &Cipher, c: ItemColumns) -> Result<ClaimedItem> {
    let mut fields = rows::json_map(&c.params)?;
    if let Some(sealed) = &c.secret_enc {
        let plain = cipher.open("item", sealed)?;
        let secret: Map<String, Value> = serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt(format!("item secret: {e}")))?;
        fields.extend(secret);
    }
    let operation = rows::operation(c.operation)?
        .ok_or_else(|| StoreError::Corrupt("approved item without operation".into()))?;
    fields.insert("iccid".into(), Value::String(c.iccid.clone()));
    Ok(ClaimedItem {
        id: c.id,
        batch_id: c.batch_id,
        tenant_id: c.tenant_id,
        seq: c.seq,
        mode: BatchMode::Parallel,
        operation,
        iccid: c.iccid,
        fields,
        sim: None,
        has_profile: false,
    })
}

impl Picked {
    /// The batch's mode.
    pub fn mode(&self) -> BatchMode {
        BatchMode::parse(&self.8).unwrap_or_default()
    }

    /// The item's own columns.
    pub fn into_columns(self) -> ItemColumns {
        ItemColumns {
            id: self.0,
            batch_id: self.1,
            tenant_id: self.2,
            seq: self.3,
            iccid: self.4,
            operation: self.5,
            params: self.6,
            secret_enc: self.7,
        }
    }

    /// The item's SIM, if there is one.
    pub fn sim(&self) -> Result<Option<Sim>> {
        if self.9 == 0 {
            return Ok(None);
        }
        let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("unknown {what} '{v}'"));
        let bad = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let status = sim_text(&self.14, "status")?;
        let custom = [&self.21, &self.22, &self.23, &self.24, &self.25];
        let custom_fields = custom
            .iter()
            .enumerate()
            .filter_map(|(n, v)| v.as_ref().map(|v| ((n + 1).to_string(), v.clone())))
            .collect();
        Ok(Some(Sim {
            iccid: self.4.clone(),
            imsi: self.10.clone(),
            msisdn: self.11.clone(),
            eid: self.12.clone(),
            imei: self.13.clone(),
            status: SimStatus::parse(status).ok_or_else(|| corrupt("SIM status", status))?,
            subscription_state: self
                .15
                .as_deref()
                .map(|v| {
                    SubscriptionState::parse(v).ok_or_else(|| corrupt("subscription state", v))
                })
                .transpose()?,
            blocked: self.16.unwrap_or(0) != 0,
            rate_plan: self.17.clone(),
            supplementary_plans: serde_json::from_str(sim_text(&self.18, "supplementary plans")?)
                .map_err(bad)?,
            services: serde_json::from_str(sim_text(&self.19, "services")?).map_err(bad)?,
            apn_status: self.20.clone(),
            custom_fields,
        }))
    }
}

/// A SIM column that is never null when the SIM exists.
fn sim_text<'a>(v: &'a Option<String>, what: &str) -> Result<&'a str> {
    v.as_deref()
        .ok_or_else(|| StoreError::Corrupt(format!("SIM without {what}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    /// What the pick hands the engine is the SIM as stored, every column
    /// of it, and an item without a SIM comes back without one.
    #[tokio::test]
    async fn a_picked_item_carries_its_sim_as_stored() {
        let (_dir, store) = super::super::SqliteStore::fresh_for_test().await;
        let t = "tenant-a";
        sqlx::query(
            "INSERT INTO sims (tenant_id, iccid, imsi, msisdn, eid, imei, status, subscription_state,
                blocked, rate_plan, supplementary_plans, services, apn_status, custom_field_1,
                custom_field_3, custom_field_5, created_at, updated_at)
             VALUES (?1, '8988247000000000001', '262011234567890', '4915112345678',
                '89049032000000000000000000000001', '490154203237518', 'SUSPENDED', 'IN_USE', 1,
                'gold', '[\"roaming\"]', '{\"data\":true}', 'ENABLED', 'one', 'three', 'five', 0, 0)",
        )
        .bind(t)
        .execute(&store.write)
        .await
        .unwrap();
        sqlx::query(
            "INSERT INTO batches (id, tenant_id, operation, mode, status, source, created_at, updated_at)
             VALUES ('b', ?1, 'resume', 'sequential_per_iccid', 'PROCESSING', 'api', 0, 0)",
        )
        .bind(t)
        .execute(&store.write)
        .await
        .unwrap();
        for (seq, iccid) in [(0, "8988247000000000001"), (1, "8988247000000000002")] {
            sqlx::query(
                "INSERT INTO batch_items (batch_id, tenant_id, seq, iccid, operation, status, params, updated_at)
                 VALUES ('b', ?1, ?2, ?3, 'resume', 'APPROVED', '{\"reference\":\"r\"}', 0)",
            )
            .bind(t)
            .bind(seq)
            .bind(iccid)
            .execute(&store.write)
            .await
            .unwrap();
        }
        let text: String = sqlx::query_scalar(super::super::engine::PICK_FRESH.as_str())
            .bind(10)
            .bind("[]")
            .fetch_one(&store.write)
            .await
            .unwrap();
        let items = items(&text, &store.cipher).unwrap();
        assert_eq!(items.len(), 2);
        let stored = store
            .get_sim(t, "8988247000000000001")
            .await
            .unwrap()
            .unwrap();
        assert_eq!(items[0].sim.as_ref(), Some(&stored.sim));
        assert_eq!(items[0].mode, BatchMode::SequentialPerIccid);
        assert_eq!(items[0].fields["reference"], "r");
        assert!(!items[0].has_profile);
        assert!(items[1].sim.is_none());
        assert_eq!(items[1].iccid, "8988247000000000002");
    }
}
