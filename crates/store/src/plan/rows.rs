//! The typed rows a chunk completion writes.
//!
//! Each row borrows from the completions it was planned from, so planning a
//! 1,000-item chunk copies no identifiers; each backend binds the fields
//! straight into its multi-row statements (SQLite `VALUES`, PostgreSQL
//! `UNNEST`).

use simbatch_core::Sim;

/// The custom field numbers, as the keys of [`Sim::custom_fields`].
const CUSTOM_FIELDS: [&str; 5] = ["1", "2", "3", "4", "5"];

/// A SIM to insert or update in full (orders that create or edit SIMs).
#[derive(Debug)]
pub struct SimWrite<'a> {
    /// Owner.
    pub tenant_id: &'a str,
    /// The SIM after the order.
    pub sim: &'a Sim,
    /// Sealed Ki given on the order, if any.
    pub ki_enc: Option<String>,
    /// Sealed OPc given on the order, if any.
    pub opc_enc: Option<String>,
}

impl SimWrite<'_> {
    /// Supplementary plans as the JSON text the column holds.
    pub fn supplementary_plans(&self) -> String {
        serde_json::to_string(&self.sim.supplementary_plans).unwrap_or_else(|_| "[]".into())
    }

    /// Services as the JSON text the column holds.
    pub fn services(&self) -> String {
        serde_json::to_string(&self.sim.services).unwrap_or_else(|_| "{}".into())
    }

    /// Custom fields 1 to 5, in column order.
    pub fn custom_fields(&self) -> [Option<&str>; 5] {
        CUSTOM_FIELDS.map(|n| self.sim.custom_fields.get(n).map(String::as_str))
    }

    /// Whether the order gave a Ki or an OPc to store.
    pub fn has_secrets(&self) -> bool {
        self.ki_enc.is_some() || self.opc_enc.is_some()
    }
}

/// A SIM whose lifecycle status alone changed (the lifecycle verbs): a
/// narrower update that leaves the identifier indexes untouched.
#[derive(Debug)]
pub struct StatusWrite<'a> {
    /// Owner.
    pub tenant_id: &'a str,
    /// SIM.
    pub iccid: &'a str,
    /// The new status.
    pub status: &'static str,
    /// The order (item id) that set it.
    pub item_id: i64,
}

/// An eSIM profile to insert.
#[derive(Debug)]
pub struct ProfileWrite<'a> {
    /// Owner.
    pub tenant_id: &'a str,
    /// SIM.
    pub iccid: &'a str,
    /// Matching ID.
    pub matching_id: &'a str,
    /// Activation code text.
    pub activation_code: &'a str,
    /// Sealed SHA-256 of the confirmation code, if one is required.
    pub cc_hash_enc: Option<String>,
    /// Template name.
    pub template: Option<&'a str>,
    /// SGP.22 state.
    pub state: &'static str,
    /// APN given at import.
    pub apn: Option<&'a str>,
    /// Sealed personalised package.
    pub package_enc: Option<String>,
    /// Expiry of an unused profile, Unix ms.
    pub expires_at: Option<i64>,
}

/// A SIM history row (its time is the completion's).
#[derive(Debug)]
pub struct HistoryWrite<'a> {
    /// Owner.
    pub tenant_id: &'a str,
    /// SIM.
    pub iccid: &'a str,
    /// Operation that ran.
    pub operation: &'static str,
    /// Status before (None when the order created the SIM).
    pub from_status: Option<&'static str>,
    /// Status after.
    pub to_status: &'static str,
    /// Batch of the order.
    pub batch_id: &'a str,
    /// The order (item id).
    pub item_id: i64,
}

/// An item's final state and result.
#[derive(Debug)]
pub struct ItemWrite<'a> {
    /// Item id.
    pub id: i64,
    /// COMPLETED or FAILED.
    pub status: &'static str,
    /// Failure code.
    pub error_code: Option<&'a str>,
    /// Failure reason.
    pub error_reason: Option<&'a str>,
    /// The result shown to the client, as JSON text.
    pub result: Option<String>,
}
