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

/// The columns of one picked item, as a JSON array in the order of
/// [`Picked`] (`i`: the item, `b`: its batch, `s`: its SIM, if any).
const PICK_JSON: &str = "json_array(i.id, i.batch_id, i.tenant_id, i.seq, i.iccid, i.operation, i.params,
    i.secret_enc, b.mode,
    json(CASE WHEN s.status IS NULL THEN NULL ELSE json_array(s.imsi, s.msisdn, s.eid, s.imei, s.status,
        s.subscription_state, s.blocked, s.rate_plan, s.supplementary_plans, s.services, s.apn_status,
        json_array(s.custom_field_1, s.custom_field_2, s.custom_field_3, s.custom_field_4, s.custom_field_5)) END),
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

/// One picked item (see [`PICK_JSON`]).
#[derive(Debug, Deserialize)]
pub(super) struct Picked(
    pub i64,
    pub String,
    pub String,
    pub i64,
    pub String,
    pub Option<String>,
    pub String,
    pub Option<String>,
    pub String,
    pub Option<PickedSim>,
    pub i64,
);

/// A picked item's SIM: every column of [`Sim`], the ICCID aside (it is
/// the item's).
#[derive(Debug, Deserialize)]
pub(super) struct PickedSim(
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    i64,
    Option<String>,
    String,
    String,
    Option<String>,
    [Option<String>; 5],
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
            let (mode, has_profile, sim) = (p.mode(), p.has_profile(), p.sim()?);
            let mut item = claimed(cipher, p)?;
            item.mode = mode;
            item.has_profile = has_profile;
            item.sim = sim;
            Ok(item)
        })
        .collect()
}

/// A claimed item from its stored columns (batch mode, SIM and profile
/// flag are left for the caller).
pub(super) fn claimed(cipher: &Cipher, p: Picked) -> Result<ClaimedItem> {
    let mut fields = rows::json_map(&p.6)?;
    if let Some(sealed) = &p.7 {
        let plain = cipher.open("item", sealed)?;
        let secret: Map<String, Value> = serde_json::from_slice(&plain)
            .map_err(|e| StoreError::Corrupt(format!("item secret: {e}")))?;
        fields.extend(secret);
    }
    let operation = rows::operation(p.5)?
        .ok_or_else(|| StoreError::Corrupt("approved item without operation".into()))?;
    fields.insert("iccid".into(), Value::String(p.4.clone()));
    Ok(ClaimedItem {
        id: p.0,
        batch_id: p.1,
        tenant_id: p.2,
        seq: p.3,
        mode: BatchMode::Parallel,
        operation,
        iccid: p.4,
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

    /// Whether the item's ICCID has a profile.
    pub fn has_profile(&self) -> bool {
        self.10 != 0
    }

    /// The item's SIM, if there is one.
    pub fn sim(&self) -> Result<Option<Sim>> {
        let Some(s) = &self.9 else {
            return Ok(None);
        };
        let corrupt = |what: &str, v: &str| StoreError::Corrupt(format!("unknown {what} '{v}'"));
        let bad = |e: serde_json::Error| StoreError::Corrupt(e.to_string());
        let custom_fields =
            s.11.iter()
                .enumerate()
                .filter_map(|(n, v)| v.clone().map(|v| ((n + 1).to_string(), v)))
                .collect();
        Ok(Some(Sim {
            iccid: self.4.clone(),
            imsi: s.0.clone(),
            msisdn: s.1.clone(),
            eid: s.2.clone(),
            imei: s.3.clone(),
            status: SimStatus::parse(&s.4).ok_or_else(|| corrupt("SIM status", &s.4))?,
            subscription_state: s
                .5
                .as_deref()
                .map(|v| {
                    SubscriptionState::parse(v).ok_or_else(|| corrupt("subscription state", v))
                })
                .transpose()?,
            blocked: s.6 != 0,
            rate_plan: s.7.clone(),
            supplementary_plans: serde_json::from_str(&s.8).map_err(bad)?,
            services: serde_json::from_str(&s.9).map_err(bad)?,
            apn_status: s.10.clone(),
            custom_fields,
        }))
    }
}
