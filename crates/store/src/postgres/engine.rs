//! The engine's side of the store: claiming runnable items under a lease,
//! committing their effects, the retention sweep and the benchmark floor.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use simbatch_core::{Operation, Sim};
use sqlx::postgres::PgRow;
use sqlx::{Postgres, Row, Transaction};

use super::rows::{self, BATCH_COLS, SIM_COLS};
use super::writes::{self, Fence};
use super::{write_events, PgStore};
use crate::crypto::Cipher;
use crate::model::*;
use crate::plan::{self, plan_completion};
use crate::{Result, StoreError};

const UPDATE_COUNTERS: &str = "UPDATE batches b SET processing = b.processing - v.processing_done,
    completed = b.completed + v.completed, failed = b.failed + v.failed,
    approved = b.approved - v.canceled - v.approved_done, canceled = b.canceled + v.canceled,
    updated_at = $2
FROM jsonb_to_recordset($1::text::jsonb) AS v(id text, processing_done bigint, approved_done bigint,
    completed bigint, failed bigint, canceled bigint)
WHERE b.id = v.id";

/// The columns [`PgStore::claimed_items`] reads: an item (`i`) and its batch's mode (`b`).
pub(super) const CLAIMED_COLS: &str =
    "i.id, i.batch_id, i.tenant_id, i.seq, i.operation, i.iccid, i.params, i.secret_enc, b.mode";

/// Items whose lease expired, oldest first (batch_items_leased; a SIM has at
/// most one leased item, so their order does not matter), with `cols`; `$1`
/// is now, `$2` the limit. The rows are locked, skipping those another
/// transaction holds.
pub(super) fn pick_expired(cols: &str) -> String {
    format!(
        "SELECT {cols} FROM batch_items i JOIN batches b ON b.id = i.batch_id
         WHERE i.status = 'PROCESSING' AND i.lease_until < $1
         ORDER BY i.lease_until LIMIT $2
         FOR UPDATE OF i SKIP LOCKED"
    )
}

/// Runnable APPROVED items in id order (batch_items_runnable): in PROCESSING
/// batches, and the first waiting or running item of their SIM. `$1` is the
/// limit. One query with the expired pick, joined by an OR, would walk the
/// primary key past every finished item.
pub(super) fn pick_fresh(cols: &str) -> String {
    format!(
        "SELECT {cols} FROM batch_items i JOIN batches b ON b.id = i.batch_id
         WHERE i.status = 'APPROVED' AND b.status = 'PROCESSING'
           AND NOT EXISTS (SELECT 1 FROM batch_items e
                           WHERE e.tenant_id = i.tenant_id AND e.iccid = i.iccid AND e.id < i.id
                             AND e.status IN ('APPROVED', 'PROCESSING'))
         ORDER BY i.id LIMIT $1
         FOR UPDATE OF i SKIP LOCKED"
    )
}

/// Planner settings for a chunk's transaction, scoped to it, and the idle
/// limit of a transaction that holds its picked rows, if it does.
///
/// Each pick must walk its partial index in order and stop at the limit.
/// Statistics lag a table that grows by a million rows in a minute, and with
/// them the planner preferred sorting every runnable item (or scanning the
/// table for `id = ANY`) on each claim, so each chunk cost more than the last.
///
/// Every write joins a chunk's rows (`UNNEST`) to a table by its key, which
/// is an index probe per row. Hash and merge joins are off: with them the
/// planner read every active item and every SIM into a hash table for each
/// chunk, a cost that grows with the tables.
///
/// JIT is off too: a disabled plan node costs 10^10, which is past
/// `jit_above_cost`, so every statement of the transaction that scans a small
/// table (the outbox counter, above all) was compiled first, at 40 to 100 ms
/// a statement.
pub(super) async fn chunk_settings(
    tx: &mut Transaction<'_, Postgres>,
    idle_limit: Option<Duration>,
) -> Result<()> {
    let idle_ms = idle_limit.map(|d| d.as_millis().clamp(1, i32::MAX as u128).to_string());
    sqlx::query(
        "SELECT set_config('enable_sort', 'off', true), set_config('enable_seqscan', 'off', true),
                set_config('enable_hashjoin', 'off', true), set_config('enable_mergejoin', 'off', true),
                set_config('jit', 'off', true),
                set_config('idle_in_transaction_session_timeout',
                           COALESCE($1, current_setting('idle_in_transaction_session_timeout')), true)",
    )
    .bind(idle_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Terminal batch statuses, as an SQL list.
const TERMINAL: &str = "('COMPLETED', 'PARTIALLY_COMPLETED', 'CANCELLED')";

/// Load the SIMs and the profile flags of `(tenant, iccid)` pairs with two queries.
///
/// Each key is probed by `LATERAL … LIMIT 1`, so the plan is one primary-key
/// lookup per key whatever the statistics say. The `LIMIT` keeps the planner
/// from flattening the subquery into a plain join: with hash joins off and
/// statistics taken while `sims` was still empty, it put the table outside
/// and rescanned the 5,000 keys for every SIM (4 to 6 s a chunk while
/// registering). A key the chunk names twice comes back twice and lands once
/// in the map.
async fn load_sims(
    tx: &mut Transaction<'_, Postgres>,
    keys: &[(String, String)],
) -> Result<(HashMap<(String, String), Sim>, HashSet<(String, String)>)> {
    let tenants: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let iccids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let rows = sqlx::query(&format!(
        "SELECT s.* FROM UNNEST($1::text[], $2::text[]) AS k(t, i)
         CROSS JOIN LATERAL (SELECT {SIM_COLS} FROM sims
                             WHERE tenant_id = k.t AND iccid = k.i LIMIT 1) s"
    ))
    .bind(&tenants)
    .bind(&iccids)
    .fetch_all(&mut **tx)
    .await?;
    let mut sims = HashMap::with_capacity(rows.len());
    for r in &rows {
        let tenant: String = r.try_get("tenant_id")?;
        let sim = rows::sim(r)?;
        sims.insert((tenant, sim.iccid.clone()), sim);
    }
    let with_profile: Vec<(String, String)> = sqlx::query_as(
        "SELECT p.* FROM UNNEST($1::text[], $2::text[]) AS k(t, i)
         CROSS JOIN LATERAL (SELECT tenant_id, iccid FROM profiles
                             WHERE tenant_id = k.t AND iccid = k.i LIMIT 1) p",
    )
    .bind(&tenants)
    .bind(&iccids)
    .fetch_all(&mut **tx)
    .await?;
    Ok((sims, with_profile.into_iter().collect()))
}

/// Lock the rows of `batch_ids` in id order, the order every transaction
/// takes them in, so counter updates never deadlock.
pub(super) async fn lock_batches<'a>(
    tx: &mut Transaction<'_, Postgres>,
    batch_ids: impl Iterator<Item = &'a str>,
) -> Result<()> {
    let mut ids: Vec<&str> = batch_ids.collect();
    ids.sort_unstable();
    ids.dedup();
    sqlx::query("SELECT id FROM batches WHERE id = ANY($1) ORDER BY id FOR UPDATE")
        .bind(&ids)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// An item's fields: its params with its decrypted secrets merged in.
fn item_fields(
    cipher: &Cipher,
    params: &str,
    secret_enc: Option<&str>,
) -> Result<serde_json::Map<String, Value>> {
    let mut fields = rows::json_map(params)?;
    if let Some(sealed) = secret_enc {
        let plain = cipher.open("item", sealed)?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| StoreError::Corrupt("item secret is not UTF-8".into()))?;
        fields.extend(rows::json_map(text)?);
    }
    Ok(fields)
}

impl PgStore {
    /// Whether a pick could find anything: a PROCESSING batch with APPROVED
    /// items, or an expired lease. This keeps the fresh pick from walking the
    /// runnable index through a batch still being uploaded (INITIALISING).
    pub(super) async fn anything_runnable(&self, now: i64) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM batches WHERE status = 'PROCESSING' AND approved > 0)
                 OR EXISTS (SELECT 1 FROM batch_items WHERE status = 'PROCESSING' AND lease_until < $1)",
        )
        .bind(now)
        .fetch_one(&self.pool)
        .await?)
    }

    /// Claimed items from picked rows (the columns of [`CLAIMED_COLS`]), with
    /// their SIMs and profile flags read in the same transaction, in id order.
    pub(super) async fn claimed_items(
        &self,
        tx: &mut Transaction<'_, Postgres>,
        rows: &[PgRow],
    ) -> Result<Vec<ClaimedItem>> {
        let mut keys: Vec<(String, String)> = Vec::with_capacity(rows.len());
        for r in rows {
            keys.push((r.try_get("tenant_id")?, r.try_get("iccid")?));
        }
        keys.sort();
        keys.dedup();
        let (sims, profiles) = load_sims(tx, &keys).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in rows {
            let tenant_id: String = r.try_get("tenant_id")?;
            let iccid: String = r.try_get("iccid")?;
            let op: Option<String> = r.try_get("operation")?;
            let operation = op.as_deref().and_then(Operation::parse).ok_or_else(|| {
                StoreError::Corrupt(format!("approved item without a known operation: {op:?}"))
            })?;
            let mode: &str = r.try_get("mode")?;
            let params: &str = r.try_get("params")?;
            let secret: Option<&str> = r.try_get("secret_enc")?;
            let key = (tenant_id, iccid);
            items.push(ClaimedItem {
                id: r.try_get("id")?,
                batch_id: r.try_get("batch_id")?,
                seq: r.try_get("seq")?,
                mode: rows::mode(mode)?,
                operation,
                fields: item_fields(&self.cipher, params, secret)?,
                sim: sims.get(&key).cloned(),
                has_profile: profiles.contains(&key),
                iccid: key.1,
                tenant_id: key.0,
            });
        }
        items.sort_by_key(|i| i.id);
        Ok(items)
    }

    /// See [`crate::Store::claim`].
    pub(super) async fn claim_impl(&self, limit: usize, lease: Duration) -> Result<Claim> {
        let token = uuid::Uuid::new_v4().to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(Claim {
                token,
                items: Vec::new(),
            });
        }
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        if !self.anything_runnable(now).await? {
            return Ok(Claim {
                token,
                items: Vec::new(),
            });
        }
        self.refresh_statistics_if_due().await;
        let mut tx = self.pool.begin().await?;
        chunk_settings(&mut tx, None).await?;
        let mut picked: Vec<(i64, String)> = sqlx::query_as(&pick_expired("i.id, i.status"))
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let room = limit - picked.len() as i64;
        if room > 0 {
            let fresh: Vec<(i64, String)> = sqlx::query_as(&pick_fresh("i.id, i.status"))
                .bind(room)
                .fetch_all(&mut *tx)
                .await?;
            picked.extend(fresh);
        }
        if picked.is_empty() {
            tx.commit().await?;
            return Ok(Claim {
                token,
                items: Vec::new(),
            });
        }
        let ids: Vec<i64> = picked.iter().map(|p| p.0).collect();
        let fresh: Vec<i64> = picked
            .iter()
            .filter(|p| p.1 == "APPROVED")
            .map(|p| p.0)
            .collect();
        let rows = sqlx::query(&format!(
            "UPDATE batch_items i SET status = 'PROCESSING', lease_token = $2, lease_until = $3, updated_at = $4
             FROM batches b WHERE i.id = ANY($1) AND b.id = i.batch_id
             RETURNING {CLAIMED_COLS}"
        ))
        .bind(&ids)
        .bind(&token)
        .bind(until)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        let items = self.claimed_items(&mut tx, &rows).await?;
        if !fresh.is_empty() {
            // The hot batch rows are locked last, just before the commit, and in
            // id order as `complete` does, so concurrent claims and completions
            // hold them briefly and never deadlock on counter updates.
            sqlx::query(
                "SELECT id FROM batches WHERE id IN (SELECT batch_id FROM batch_items WHERE id = ANY($1))
                 ORDER BY id FOR UPDATE",
            )
            .bind(&fresh)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE batches b SET approved = b.approved - c.k, processing = b.processing + c.k, updated_at = $2
                 FROM (SELECT batch_id, count(*) AS k FROM batch_items WHERE id = ANY($1) GROUP BY batch_id) c
                 WHERE b.id = c.batch_id",
            )
            .bind(&fresh)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(Claim { token, items })
    }

    /// See [`crate::Store::complete`].
    ///
    /// A chunk the database refuses (a constraint broken by one item's rows)
    /// is rolled back to a savepoint and completed item by item: a refused
    /// item fails alone with [`crate::REFUSED_CODE`] and the others take
    /// effect, so no chunk is retried forever.
    pub(super) async fn complete_impl(
        &self,
        token: &str,
        done: Vec<Completion>,
    ) -> Result<CompleteSummary> {
        if done.is_empty() {
            return Ok(CompleteSummary::default());
        }
        let now = now_ms();
        let total = done.len();
        let mut seen = HashSet::new();
        let done: Vec<Completion> = done
            .into_iter()
            .filter(|c| seen.insert(c.item.id))
            .collect();
        let mut tx = self.pool.begin().await?;
        chunk_settings(&mut tx, None).await?;
        let mut summary = self
            .complete_isolating(&mut tx, Fence::Lease(token), &done, now)
            .await?;
        summary.fenced_out += total - done.len();
        tx.commit().await?;
        Ok(summary)
    }

    /// Complete distinct items inside `tx` (no commit). A chunk the database
    /// refuses is rolled back to a savepoint and completed item by item.
    pub(super) async fn complete_isolating(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        fence: Fence<'_>,
        done: &[Completion],
        now: i64,
    ) -> Result<CompleteSummary> {
        if done.is_empty() {
            return Ok(CompleteSummary::default());
        }
        sqlx::query("SAVEPOINT chunk").execute(&mut **tx).await?;
        let err = match self.complete_in(tx, fence, done, now).await {
            // Left open: a later part of the chunk shadows it with its own.
            Ok(summary) => return Ok(summary),
            Err(e) => e,
        };
        if plan::refusal(&err).is_none() {
            return Err(err);
        }
        sqlx::query("ROLLBACK TO SAVEPOINT chunk")
            .execute(&mut **tx)
            .await?;
        tracing::warn!(items = done.len(), error = %err, "chunk refused; completing its items one by one");
        // Every batch row the items will lock is locked now, in id order:
        // the first item's events take the outbox counter, and no batch
        // lock may be taken after it (see `outbox`).
        lock_batches(tx, done.iter().map(|c| c.item.batch_id.as_str())).await?;
        let mut summary = CompleteSummary::default();
        for c in done {
            sqlx::query("SAVEPOINT item").execute(&mut **tx).await?;
            let one = match self
                .complete_in(tx, fence, std::slice::from_ref(c), now)
                .await
            {
                Ok(one) => one,
                Err(e) => {
                    let Some(reason) = plan::refusal(&e) else {
                        return Err(e);
                    };
                    sqlx::query("ROLLBACK TO SAVEPOINT item")
                        .execute(&mut **tx)
                        .await?;
                    tracing::warn!(item = c.item.id, batch_id = %c.item.batch_id, %reason, "item refused");
                    let failed = c.failed(crate::REFUSED_CODE, reason);
                    self.complete_in(tx, fence, std::slice::from_ref(&failed), now)
                        .await?
                }
            };
            sqlx::query("RELEASE SAVEPOINT item")
                .execute(&mut **tx)
                .await?;
            summary.merge(one);
        }
        Ok(summary)
    }

    /// Complete distinct items inside `tx` (no commit).
    async fn complete_in(
        &self,
        tx: &mut Transaction<'static, Postgres>,
        fence: Fence<'_>,
        done: &[Completion],
        now: i64,
    ) -> Result<CompleteSummary> {
        let mut summary = CompleteSummary::default();
        let total = done.len();
        let mut phases = crate::phases::Phases::start();
        let plan = plan_completion(&self.cipher, done);
        phases.mark("plan");
        // Fence and item results in one statement: only items this
        // completion still owns are written (and locked).
        let held: HashSet<i64> = writes::items(tx, &plan.items, fence, now)
            .await?
            .into_iter()
            .collect();
        phases.mark("items");
        summary.fenced_out = total - held.len();
        summary.applied = held.len();
        if held.is_empty() {
            return Ok(summary);
        }
        // The plan is made again only for the items that kept their lease.
        let held_only: Vec<Completion>;
        let (mut plan, kept) = if held.len() < done.len() {
            held_only = done
                .iter()
                .filter(|c| held.contains(&c.item.id))
                .cloned()
                .collect();
            (plan_completion(&self.cipher, &held_only), &held_only[..])
        } else {
            (plan, done)
        };
        summary.by_operation = crate::plan::count_by_operation(kept);
        for c in kept.iter().filter(|c| fence.was_approved(c.item.id)) {
            if let Some(d) = plan.deltas.get_mut(&c.item.batch_id) {
                d.processing_done -= 1;
                d.approved_done += 1;
            }
        }
        writes::sims(tx, &plan.sim_inserts, false, now).await?;
        self.growth.record(plan.sim_inserts.len());
        writes::sims(tx, &plan.sim_updates, true, now).await?;
        writes::statuses(tx, &plan.status_updates, now).await?;
        phases.mark("sims");
        writes::profiles(tx, &plan.profiles, now).await?;
        writes::history(tx, &plan.history, now).await?;
        phases.mark("history");
        summary.completed = plan.deltas.values().map(|d| d.completed as usize).sum();
        summary.failed = plan.deltas.values().map(|d| d.failed as usize).sum();
        // Sequential batches: a failure leaves that ICCID's later items unexecuted.
        if !plan.followers.is_empty() {
            let canceled = writes::cancel_followers(tx, &plan.followers, now).await?;
            summary.canceled = canceled.len();
            for (b, op) in canceled {
                if let Some(d) = plan.deltas.get_mut(&b) {
                    d.canceled += 1;
                }
                if let Some(op) = op.as_deref().and_then(Operation::parse) {
                    plan::operation_slot(&mut summary.by_operation, op).canceled += 1;
                }
            }
        }
        // Events are written last (see `outbox`): the counter's lock comes
        // after the batch rows', in every transaction.
        let mut events = std::mem::take(&mut plan.events);

        // Counters, then the batches that are now done. Batches are locked in
        // id order (as `claim` does), so concurrent transactions never deadlock.
        let batch_ids: Vec<&String> = plan.deltas.keys().collect();
        let ids_json = serde_json::to_string(&batch_ids).unwrap_or_default();
        phases.mark("cancel");
        lock_batches(tx, batch_ids.iter().map(|id| id.as_str())).await?;
        let deltas: Vec<Value> = plan
            .deltas
            .iter()
            .map(|(id, d)| {
                json!({"id": id, "processing_done": d.processing_done,
                       "approved_done": d.approved_done, "completed": d.completed,
                       "failed": d.failed, "canceled": d.canceled})
            })
            .collect();
        sqlx::query(UPDATE_COUNTERS)
            .bind(Value::Array(deltas).to_string())
            .bind(now)
            .execute(&mut **tx)
            .await?;
        let finished = sqlx::query(&format!(
            "UPDATE batches SET status = CASE WHEN rejected = 0 AND failed = 0 AND canceled = 0
                                              THEN 'COMPLETED' ELSE 'PARTIALLY_COMPLETED' END,
                    completed_at = $2, updated_at = $2
             WHERE id IN (SELECT jsonb_array_elements_text($1::text::jsonb))
               AND status = 'PROCESSING' AND approved = 0 AND processing = 0
             RETURNING {BATCH_COLS}"
        ))
        .bind(&ids_json)
        .bind(now)
        .fetch_all(&mut **tx)
        .await?;
        for r in &finished {
            let b = rows::batch(r)?;
            events.extend(plan::batch_event(&b));
            summary.finished.push((b.id, b.status));
        }
        phases.mark("counters");
        write_events(tx, &events, now).await?;
        phases.mark("outbox");
        phases.log("postgres complete", summary.applied);
        Ok(summary)
    }

    /// See [`crate::Store::sweep_retention`].
    pub(super) async fn sweep_retention_impl(&self, before_ms: i64, limit: i64) -> Result<u64> {
        let limit = limit.max(0);
        let mut tx = self.pool.begin().await?;
        let items = sqlx::query(&format!(
            "DELETE FROM batch_items WHERE id IN (
                 SELECT i.id FROM batches b JOIN batch_items i ON i.batch_id = b.id
                 WHERE b.status IN {TERMINAL} AND b.created_at < $1 LIMIT $2)"
        ))
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let batches = sqlx::query(&format!(
            "DELETE FROM batches WHERE id IN (
                 SELECT b.id FROM batches b
                 WHERE b.status IN {TERMINAL} AND b.created_at < $1
                   AND NOT EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = b.id)
                 LIMIT $2)"
        ))
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let events = sqlx::query(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created_at < $1 ORDER BY id LIMIT $2)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(items + batches + events)
    }

    /// See [`crate::Store::bench_floor_activate`].
    pub(super) async fn bench_floor_activate_impl(&self, batch_id: &str) -> Result<u64> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sim_history (tenant_id, iccid, at, operation, from_status, to_status, batch_id, item_id)
             SELECT i.tenant_id, i.iccid, $2, 'activate', s.status, 'ACTIVATED', i.batch_id, i.id
             FROM batch_items i JOIN sims s ON s.tenant_id = i.tenant_id AND s.iccid = i.iccid
             WHERE i.batch_id = $1 AND i.status = 'APPROVED' ORDER BY i.id",
        )
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sims s SET status = 'ACTIVATED', updated_at = $2 FROM batch_items i
             WHERE i.batch_id = $1 AND i.status = 'APPROVED' AND s.tenant_id = i.tenant_id AND s.iccid = i.iccid",
        )
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(
            "UPDATE batch_items SET status = 'COMPLETED', updated_at = $2 WHERE batch_id = $1 AND status = 'APPROVED'",
        )
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
