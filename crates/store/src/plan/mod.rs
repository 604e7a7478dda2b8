//! Backend-neutral planning of a chunk completion.
//!
//! [`plan_completion`] turns the outcomes of a claimed chunk into the rows to
//! write: SIM inserts and updates, profiles, history, item results, outbox
//! events and counter deltas. Each backend then writes every list with one
//! set-based statement, so the rules live here once.

pub mod blocks;
mod events;
mod rows;

use std::collections::BTreeMap;

use serde_json::{json, Value};
use simbatch_core::{BatchMode, BatchStatus, ItemStatus, Operation, Sim};

use crate::crypto::Cipher;
use crate::{BatchRecord, ClaimedItem, Completion, OperationCount, StoreError};
pub use events::EventWrite;
use events::{ChangeEvent, OrderEvent, SubscriptionEvent};
pub use rows::{HistoryWrite, ItemWrite, ProfileWrite, SimWrite, StatusWrite};

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

/// Everything one chunk completion writes, borrowed from its completions.
#[derive(Debug, Default)]
pub struct CompletionPlan<'a> {
    /// SIMs to insert (created by the order).
    pub sim_inserts: Vec<SimWrite<'a>>,
    /// SIMs to update in full.
    pub sim_updates: Vec<SimWrite<'a>>,
    /// SIMs whose status alone changed.
    pub status_updates: Vec<StatusWrite<'a>>,
    /// Profiles to insert.
    pub profiles: Vec<ProfileWrite<'a>>,
    /// History rows.
    pub history: Vec<HistoryWrite<'a>>,
    /// Item results.
    pub items: Vec<ItemWrite<'a>>,
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

/// Whether two SIMs differ in their lifecycle status at most. Every field
/// is named, so a field added to [`Sim`] cannot be forgotten here.
fn same_but_status(a: &Sim, b: &Sim) -> bool {
    let Sim {
        iccid,
        imsi,
        msisdn,
        eid,
        imei,
        status: _,
        subscription_state,
        blocked,
        rate_plan,
        supplementary_plans,
        services,
        apn_status,
        custom_fields,
    } = a;
    *iccid == b.iccid
        && *imsi == b.imsi
        && *msisdn == b.msisdn
        && *eid == b.eid
        && *imei == b.imei
        && *subscription_state == b.subscription_state
        && *blocked == b.blocked
        && *rate_plan == b.rate_plan
        && *supplementary_plans == b.supplementary_plans
        && *services == b.services
        && *apn_status == b.apn_status
        && *custom_fields == b.custom_fields
}

/// Plan the writes for completions whose lease is still held: the rows
/// ([`plan_rows`]) and the item events ([`item_events`]).
pub fn plan_completion<'a>(cipher: &Cipher, done: &'a [Completion]) -> CompletionPlan<'a> {
    let mut plan = plan_rows(cipher, done);
    plan.events = item_events(done);
    plan
}

/// The rows a completion writes and its counter deltas, without events.
pub fn plan_rows<'a>(cipher: &Cipher, done: &'a [Completion]) -> CompletionPlan<'a> {
    let mut plan = CompletionPlan::default();
    for c in done {
        let it = &c.item;
        let delta = match plan.deltas.get_mut(&it.batch_id) {
            Some(d) => d,
            None => plan
                .deltas
                .entry(it.batch_id.clone())
                .or_insert_with(|| BatchDelta {
                    tenant_id: it.tenant_id.clone(),
                    ..Default::default()
                }),
        };
        delta.processing_done += 1;
        let operation = it.operation.as_str();
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
                    && it
                        .sim
                        .as_ref()
                        .is_some_and(|before| same_but_status(before, &outcome.sim));
                let sim = SimWrite {
                    tenant_id: &it.tenant_id,
                    sim: &outcome.sim,
                    ki_enc,
                    opc_enc,
                };
                if outcome.created {
                    plan.sim_inserts.push(sim);
                } else if status_only {
                    plan.status_updates.push(StatusWrite {
                        tenant_id: &it.tenant_id,
                        iccid: &it.iccid,
                        status: outcome.sim.status.as_str(),
                        item_id: it.id,
                    });
                } else {
                    plan.sim_updates.push(sim);
                }
                if let Some(p) = &outcome.profile {
                    plan.profiles.push(ProfileWrite {
                        tenant_id: &it.tenant_id,
                        iccid: &it.iccid,
                        matching_id: &p.matching_id,
                        activation_code: &p.activation_code,
                        cc_hash_enc: p.cc_hash.map(|h| cipher.seal("cc_hash", &h)),
                        template: p.template.as_deref(),
                        state: p.state,
                        apn: p.apn.as_deref(),
                        package_enc: c
                            .package
                            .as_deref()
                            .map(|pkg| cipher.seal(PACKAGE_PURPOSE, pkg)),
                        expires_at: p
                            .expires_at
                            .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64),
                    });
                }
                plan.history.push(HistoryWrite {
                    tenant_id: &it.tenant_id,
                    iccid: &it.iccid,
                    operation,
                    from_status: outcome.from_status.map(|s| s.as_str()),
                    to_status: outcome.sim.status.as_str(),
                    batch_id: &it.batch_id,
                    item_id: it.id,
                });
                plan.items.push(ItemWrite {
                    id: it.id,
                    status: ItemStatus::Completed.as_str(),
                    error_code: None,
                    error_reason: None,
                    result: Some(outcome.result.to_string()),
                });
            }
            Err(failure) => {
                delta.failed += 1;
                plan.items.push(ItemWrite {
                    id: it.id,
                    status: ItemStatus::Failed.as_str(),
                    error_code: Some(&failure.code),
                    error_reason: Some(&failure.reason),
                    result: None,
                });
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

/// The events of completed and failed orders, in item order: for each
/// item, an IMEI change, a subscription change, the order's own event and a
/// status change, where they apply. Events own their text, so a chunk's can
/// be made (and packed) apart from its rows.
pub fn item_events(done: &[Completion]) -> Vec<EventWrite> {
    let mut events = Vec::with_capacity(done.len() * 2);
    for c in done {
        let it = &c.item;
        let operation = it.operation.as_str();
        let reference = it.fields.get("reference").unwrap_or(&Value::Null);
        match &c.result {
            Ok(outcome) => {
                let before_imei = it.sim.as_ref().and_then(|s| s.imei.as_deref());
                if before_imei != outcome.sim.imei.as_deref() {
                    let change = ChangeEvent {
                        batch_id: &it.batch_id,
                        from: before_imei,
                        iccid: &it.iccid,
                        operation,
                        order_id: it.id,
                        to: outcome.sim.imei.as_deref(),
                    };
                    events.push(EventWrite::of(&it.tenant_id, "sim.imei_changed", &change));
                }
                let before_state = it.sim.as_ref().and_then(|s| s.subscription_state);
                if before_state != outcome.sim.subscription_state {
                    let change = SubscriptionEvent {
                        batch_id: &it.batch_id,
                        from: before_state.map(|s| s.as_str()),
                        iccid: &it.iccid,
                        imsi: outcome.sim.imsi.as_deref(),
                        msisdn: outcome.sim.msisdn.as_deref(),
                        operation,
                        order_id: it.id,
                        to: outcome.sim.subscription_state.map(|s| s.as_str()),
                    };
                    events.push(EventWrite::of(
                        &it.tenant_id,
                        "subscription.state_changed",
                        &change,
                    ));
                }
                let order = OrderEvent {
                    batch_id: &it.batch_id,
                    error_code: None,
                    error_reason: None,
                    iccid: &it.iccid,
                    msisdn: outcome.sim.msisdn.as_deref(),
                    operation,
                    order_id: it.id,
                    reference,
                    result: &outcome.result,
                    seq: it.seq,
                    status: "COMPLETED",
                };
                events.push(EventWrite::of(&it.tenant_id, "order.completed", &order));
                if outcome.status_changed() {
                    let change = ChangeEvent {
                        batch_id: &it.batch_id,
                        from: outcome.from_status.map(|s| s.as_str()),
                        iccid: &it.iccid,
                        operation,
                        order_id: it.id,
                        to: Some(outcome.sim.status.as_str()),
                    };
                    events.push(EventWrite::of(&it.tenant_id, "sim.status_changed", &change));
                }
            }
            Err(failure) => {
                let order = OrderEvent {
                    batch_id: &it.batch_id,
                    error_code: Some(&failure.code),
                    error_reason: Some(&failure.reason),
                    iccid: &it.iccid,
                    msisdn: it.sim.as_ref().and_then(|s| s.msisdn.as_deref()),
                    operation,
                    order_id: it.id,
                    reference,
                    result: &Value::Null,
                    seq: it.seq,
                    status: "FAILED",
                };
                events.push(EventWrite::of(&it.tenant_id, "order.failed", &order));
            }
        }
    }
    events
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
