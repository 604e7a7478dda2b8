//! Backend-neutral planning of a chunk completion.
//!
//! [`plan_completion`] turns the outcomes of a claimed chunk into the rows to
//! write: SIM inserts and updates, profiles, history, item results, outbox
//! events and counter deltas. Each backend then writes every list with one
//! set-based statement, so the rules live here once.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use simbatch_core::{BatchMode, BatchStatus, ItemStatus, Operation, Sim};

use crate::crypto::Cipher;
use crate::{BatchRecord, ClaimedItem, Completion, OperationCount, StoreError};

/// A SIM row to insert or update, as the JSON object the SQL reads.
#[derive(Debug, Clone)]
pub struct SimWrite(pub Value);

/// Build the JSON row for a SIM write.
pub fn sim_row(
    tenant_id: &str,
    sim: &Sim,
    ki_enc: Option<String>,
    opc_enc: Option<String>,
    now: i64,
) -> SimWrite {
    let cf = |n: &str| sim.custom_fields.get(n).cloned();
    SimWrite(json!({
        "tenant_id": tenant_id,
        "iccid": sim.iccid,
        "imsi": sim.imsi,
        "msisdn": sim.msisdn,
        "eid": sim.eid,
        "imei": sim.imei,
        "status": sim.status.as_str(),
        "subscription_state": sim.subscription_state.map(|s| s.as_str()),
        "blocked": i64::from(sim.blocked),
        "rate_plan": sim.rate_plan,
        "supplementary_plans": serde_json::to_string(&sim.supplementary_plans).unwrap_or_else(|_| "[]".into()),
        "services": serde_json::to_string(&sim.services).unwrap_or_else(|_| "{}".into()),
        "apn_status": sim.apn_status,
        "custom_field_1": cf("1"),
        "custom_field_2": cf("2"),
        "custom_field_3": cf("3"),
        "custom_field_4": cf("4"),
        "custom_field_5": cf("5"),
        "ki_enc": ki_enc,
        "opc_enc": opc_enc,
        "now": now,
    }))
}

/// The count of `op` in `counts`, appended (zero) if absent.
pub fn operation_slot(counts: &mut Vec<OperationCount>, op: Operation) -> &mut OperationCount {
    let i = match counts.iter().position(|o| o.operation == op) {
        Some(i) => i,
        None => {
            counts.push(OperationCount {
                operation: op,
                completed: 0,
                failed: 0,
                canceled: 0,
            });
            counts.len() - 1
        }
    };
    &mut counts[i]
}

/// Count applied items per operation and outcome, in catalogue order of first appearance.
pub fn count_by_operation(done: &[Completion]) -> Vec<OperationCount> {
    let mut out: Vec<OperationCount> = Vec::new();
    for c in done {
        let slot = operation_slot(&mut out, c.item.operation);
        if c.result.is_ok() {
            slot.completed += 1;
        } else {
            slot.failed += 1;
        }
    }
    out
}

/// Counter changes for one batch.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BatchDelta {
    /// Owner.
    pub tenant_id: String,
    /// Items leaving PROCESSING.
    pub processing_done: i64,
    /// Items run straight from APPROVED (single-transaction chunks).
    pub approved_done: i64,
    /// Items completed.
    pub completed: i64,
    /// Items failed.
    pub failed: i64,
    /// Followers canceled (APPROVED → CANCELED).
    pub canceled: i64,
}

/// A follower-cancel request: later APPROVED items of a sequential batch for one ICCID.
#[derive(Debug, Clone)]
pub struct FollowerCancel {
    /// Batch.
    pub batch_id: String,
    /// Owner.
    pub tenant_id: String,
    /// ICCID.
    pub iccid: String,
    /// Items after this id.
    pub after_id: i64,
    /// Seq of the failed item, for the reason.
    pub seq: i64,
}

impl FollowerCancel {
    /// The JSON row the SQL reads.
    pub fn row(&self, now: i64) -> Value {
        json!({"batch_id": self.batch_id, "tenant_id": self.tenant_id, "iccid": self.iccid,
               "after_id": self.after_id, "reason": follower_reason(self.seq), "now": now})
    }
}

/// An outbox event to insert.
#[derive(Debug, Clone)]
pub struct EventWrite {
    /// Stable event id.
    pub event_id: String,
    /// Owner.
    pub tenant_id: String,
    /// Event type.
    pub kind: &'static str,
    /// JSON payload.
    pub data: Value,
}

impl EventWrite {
    /// A new event with a fresh id.
    pub fn new(tenant_id: &str, kind: &'static str, data: Value) -> Self {
        Self {
            event_id: event_id(),
            tenant_id: tenant_id.to_owned(),
            kind,
            data,
        }
    }

    /// The JSON row the SQL reads.
    pub fn row(&self, now: i64) -> Value {
        json!({"event_id": self.event_id, "tenant_id": self.tenant_id, "type": self.kind, "created_at": now,
               "data": self.data.to_string()})
    }
}

/// A fresh version 4 UUID for an event.
///
/// The hot path makes two or three per item; uuid's `fast-rng` feature draws
/// them from a thread-local generator seeded from the OS, instead of one OS
/// random call per id (about a millisecond per 1,000-item chunk).
fn event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// Everything one chunk completion writes.
#[derive(Debug, Default)]
pub struct CompletionPlan {
    /// SIMs to insert (created by the order).
    pub sim_inserts: Vec<Value>,
    /// SIMs to update in full.
    pub sim_updates: Vec<Value>,
    /// SIMs whose status alone changed (the lifecycle verbs): a narrower update
    /// that leaves the identifier indexes untouched.
    pub status_updates: Vec<Value>,
    /// Profiles to insert.
    pub profiles: Vec<Value>,
    /// History rows.
    pub history: Vec<Value>,
    /// Item results.
    pub items: Vec<Value>,
    /// Follower cancellations (sequential mode).
    pub followers: Vec<FollowerCancel>,
    /// Outbox events.
    pub events: Vec<EventWrite>,
    /// Counter deltas by batch id.
    pub deltas: BTreeMap<String, BatchDelta>,
}

/// Most `generate_activation_code` items executed and committed at once by
/// [`crate::Store::run_chunk`]'s default: each holds its personalised package
/// (~12 KB) and, while it is written, the sealed copy and the statement text
/// that carry it (some 60 KB in all), so a 5,000-item chunk would need about
/// 300 MB. Parts of 500 keep that near 30 MB per worker.
pub const PACKAGE_PART: usize = 500;

/// The parts a claimed chunk is executed and completed in: the whole chunk,
/// or, when it personalises profile packages, parts of at most
/// [`PACKAGE_PART`] items, in order.
pub fn memory_parts(items: Vec<ClaimedItem>) -> Vec<Vec<ClaimedItem>> {
    parts_of(items, PACKAGE_PART, |i| {
        i.operation == Operation::GenerateActivationCode
    })
}

/// `items` whole, or in parts of at most `size` when any of them is `heavy`.
fn parts_of<T>(items: Vec<T>, size: usize, heavy: impl Fn(&T) -> bool) -> Vec<Vec<T>> {
    if items.len() <= size || !items.iter().any(heavy) {
        return vec![items];
    }
    let mut parts = Vec::with_capacity(items.len().div_ceil(size));
    let mut it = items.into_iter().peekable();
    while it.peek().is_some() {
        parts.push(it.by_ref().take(size).collect());
    }
    parts
}

/// Associated data of a sealed profile package.
pub const PACKAGE_PURPOSE: &str = "profile_package";

/// Plan the writes for completions whose lease is still held.
pub fn plan_completion(cipher: &Cipher, done: &[Completion], now: i64) -> CompletionPlan {
    let mut plan = CompletionPlan::default();
    for c in done {
        let it = &c.item;
        let delta = plan
            .deltas
            .entry(it.batch_id.clone())
            .or_insert_with(|| BatchDelta {
                tenant_id: it.tenant_id.clone(),
                ..Default::default()
            });
        delta.processing_done += 1;
        // Both `order.*` payloads carry every key; the ones that do not apply are null.
        // `reference` is the client's correlation id (ECC's requestid); `msisdn` the SIM's, if known.
        let mut base = json!({"batch_id": it.batch_id, "order_id": it.id, "seq": it.seq, "iccid": it.iccid,
                          "operation": it.operation.as_str(), "error_code": null, "error_reason": null,
                          "result": null, "reference": it.fields.get("reference").cloned().unwrap_or(Value::Null),
                          "msisdn": it.sim.as_ref().and_then(|s| s.msisdn.clone())});
        match &c.result {
            Ok(outcome) => {
                delta.completed += 1;
                let (ki_enc, opc_enc) = match &c.sim_secrets {
                    Some((ki, opc)) => (
                        ki.as_deref().map(|k| cipher.seal("ki", k.as_bytes())),
                        opc.as_deref().map(|o| cipher.seal("opc", o.as_bytes())),
                    ),
                    None => (None, None),
                };
                let status_only = c.sim_secrets.is_none()
                    && it.sim.as_ref().is_some_and(|before| {
                        let mut same = before.clone();
                        same.status = outcome.sim.status;
                        same == outcome.sim
                    });
                if outcome.created {
                    plan.sim_inserts
                        .push(sim_row(&it.tenant_id, &outcome.sim, ki_enc, opc_enc, now).0);
                } else if status_only {
                    plan.status_updates
                        .push(json!({"tenant_id": it.tenant_id, "iccid": it.iccid,
                        "status": outcome.sim.status.as_str(), "now": now}));
                } else {
                    plan.sim_updates
                        .push(sim_row(&it.tenant_id, &outcome.sim, ki_enc, opc_enc, now).0);
                }
                if let Some(p) = &outcome.profile {
                    plan.profiles.push(json!({
                        "tenant_id": it.tenant_id, "iccid": it.iccid, "matching_id": p.matching_id,
                        "activation_code": p.activation_code,
                        "cc_hash_enc": p.cc_hash.map(|h| cipher.seal("cc_hash", &h)),
                        "template": p.template, "state": p.state, "apn": p.apn,
                        "package_enc": c.package.as_deref().map(|pkg| cipher.seal(PACKAGE_PURPOSE, pkg)),
                        "expires_at": p.expires_at.map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
                        "now": now,
                    }));
                }
                let from = outcome.from_status.map(|s| s.as_str());
                let to = outcome.sim.status.as_str();
                plan.history.push(
                    json!({"tenant_id": it.tenant_id, "iccid": it.iccid, "at": now,
                    "operation": it.operation.as_str(), "from_status": from, "to_status": to,
                    "batch_id": it.batch_id, "item_id": it.id}),
                );
                plan.items.push(json!({"id": it.id, "status": ItemStatus::Completed.as_str(),
                    "error_code": null, "error_reason": null, "result": outcome.result.to_string(), "now": now}));
                base["msisdn"] = json!(outcome.sim.msisdn);
                let before_imei = it.sim.as_ref().and_then(|s| s.imei.clone());
                if before_imei != outcome.sim.imei {
                    plan.events.push(EventWrite::new(
                        &it.tenant_id,
                        "sim.imei_changed",
                        json!({"iccid": it.iccid, "from": before_imei, "to": outcome.sim.imei,
                               "operation": it.operation.as_str(), "batch_id": it.batch_id, "order_id": it.id}),
                    ));
                }
                let before_state = it.sim.as_ref().and_then(|s| s.subscription_state);
                if before_state != outcome.sim.subscription_state {
                    plan.events.push(EventWrite::new(
                        &it.tenant_id,
                        "subscription.state_changed",
                        json!({"iccid": it.iccid, "msisdn": outcome.sim.msisdn, "imsi": outcome.sim.imsi,
                               "from": before_state.map(|s| s.as_str()),
                               "to": outcome.sim.subscription_state.map(|s| s.as_str()),
                               "operation": it.operation.as_str(), "batch_id": it.batch_id, "order_id": it.id}),
                    ));
                }
                let mut data = base.clone();
                data["status"] = json!("COMPLETED");
                data["result"] = outcome.result.clone();
                plan.events
                    .push(EventWrite::new(&it.tenant_id, "order.completed", data));
                if outcome.status_changed() {
                    plan.events.push(EventWrite::new(
                        &it.tenant_id,
                        "sim.status_changed",
                        json!({"iccid": it.iccid, "from": from, "to": to, "operation": it.operation.as_str(),
                               "batch_id": it.batch_id, "order_id": it.id}),
                    ));
                }
            }
            Err(failure) => {
                delta.failed += 1;
                plan.items.push(json!({"id": it.id, "status": ItemStatus::Failed.as_str(),
                    "error_code": failure.code, "error_reason": failure.reason, "result": null, "now": now}));
                let mut data = base.clone();
                data["status"] = json!("FAILED");
                data["error_code"] = json!(failure.code);
                data["error_reason"] = json!(failure.reason);
                plan.events
                    .push(EventWrite::new(&it.tenant_id, "order.failed", data));
                if it.mode == BatchMode::SequentialPerIccid {
                    plan.followers.push(FollowerCancel {
                        batch_id: it.batch_id.clone(),
                        tenant_id: it.tenant_id.clone(),
                        iccid: it.iccid.clone(),
                        after_id: it.id,
                        seq: it.seq,
                    });
                }
            }
        }
    }
    plan
}

/// The event for a batch that just became terminal.
pub fn batch_event(b: &BatchRecord) -> Option<EventWrite> {
    let kind = b.status.event_type()?;
    Some(EventWrite::new(
        &b.tenant_id,
        kind,
        json!({"batch_id": b.id, "status": b.status.as_str(), "counts": b.counts, "source": b.source,
               "external_ref": b.external_ref}),
    ))
}

/// The reason written on followers canceled after item `seq` failed.
pub fn follower_reason(seq: i64) -> String {
    format!("not run: item {seq} for this ICCID failed")
}

/// Error code on an item whose effects the database refused (a constraint):
/// the item fails alone and the rest of its chunk is applied.
pub const REFUSED_CODE: &str = "store_refused";

/// Whether `e` is the database refusing one item's rows (a constraint or a
/// value it cannot hold) rather than the database failing; if so, the reason
/// to record on the item. The message names the constraint, never the values.
pub fn refusal(e: &StoreError) -> Option<String> {
    use sqlx::error::ErrorKind;
    let message = match e {
        StoreError::Conflict(_) => e.to_string(),
        StoreError::Database(sqlx::Error::Database(db)) => {
            let constraint = !matches!(db.kind(), ErrorKind::Other);
            // SQLSTATE class 22 (data exception) on PostgreSQL; SQLITE_TOOBIG (18)
            // and SQLITE_MISMATCH (20) on SQLite.
            let data = db
                .code()
                .is_some_and(|c| (c.len() == 5 && c.starts_with("22")) || c == "18" || c == "20");
            if !(constraint || data) {
                return None;
            }
            db.message().to_owned()
        }
        _ => return None,
    };
    Some(format!(
        "the database refused this item's changes: {message}"
    ))
}

/// Error code on items canceled by a batch cancel.
pub const CANCELLED_CODE: &str = "batch_cancelled";
/// Reason on items canceled by a batch cancel.
pub const CANCELLED_REASON: &str = "batch was cancelled before this item ran";

/// Whether a status is one the finaliser may leave (only PROCESSING batches finish by themselves).
pub fn finishes(status: BatchStatus) -> bool {
    status == BatchStatus::Processing
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::CompleteSummary;

    #[test]
    fn event_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| event_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4);
        }
        let other = std::thread::spawn(event_id).join().unwrap();
        assert!(!ids.contains(&other));
    }

    #[test]
    fn only_chunks_with_heavy_items_are_split_in_order() {
        let light: Vec<u32> = (0..1200).collect();
        assert_eq!(parts_of(light.clone(), 500, |_| false), vec![light.clone()]);
        let parts = parts_of(light.clone(), 500, |x| *x == 1100);
        assert_eq!(
            parts.iter().map(Vec::len).collect::<Vec<_>>(),
            [500, 500, 200]
        );
        assert_eq!(parts.concat(), light);
        let small: Vec<u32> = (0..500).collect();
        assert_eq!(parts_of(small.clone(), 500, |_| true), vec![small]);
        assert_eq!(parts_of(Vec::<u32>::new(), 500, |_| true).len(), 1);
    }

    #[test]
    fn summaries_of_parts_add_up() {
        let part = |completed: u64, failed: u64| CompleteSummary {
            applied: (completed + failed) as usize,
            completed: (completed + failed) as usize,
            failed: failed as usize,
            fenced_out: 1,
            canceled: 0,
            finished: vec![("b".into(), BatchStatus::Completed)],
            by_operation: vec![OperationCount {
                operation: Operation::GenerateActivationCode,
                completed,
                failed,
                canceled: 0,
            }],
        };
        let mut total = part(3, 1);
        total.merge(part(5, 0));
        assert_eq!((total.applied, total.failed, total.fenced_out), (9, 1, 2));
        assert_eq!(total.finished.len(), 2);
        assert_eq!(
            (
                total.by_operation.len(),
                total.by_operation[0].completed,
                total.by_operation[0].failed
            ),
            (1, 8, 1)
        );
    }
}
