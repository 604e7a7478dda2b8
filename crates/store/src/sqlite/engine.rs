//! Claim and complete on SQLite: the engine's hot path.
//!
//! SQLite has one writer, so each call is one `BEGIN IMMEDIATE` transaction
//! and every list is written with one multi-row statement (a `VALUES` CTE).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::LazyLock;
use std::time::Duration;

use serde_json::{json, Value};
use simbatch_core::{BatchMode, ItemStatus};
use sqlx::query_builder::Separated;
use sqlx::{Row, Sqlite, Transaction};

use super::values::{self, Shape};
use super::{ahead, outbox, pick, rows, SqliteStore};
use crate::plan::{self, plan_completion, CompletionPlan};
use crate::{now_ms, Claim, ClaimedItem, CompleteSummary, Completion, Result, StoreError};

const CLAIM_FRESH: &str = "UPDATE batch_items SET status = 'PROCESSING', lease_token = ?1, lease_until = ?2, updated_at = ?3
WHERE id IN (
    SELECT i.id FROM batch_items i JOIN batches b ON b.id = i.batch_id
    WHERE i.status = 'APPROVED' AND b.status = 'PROCESSING'
      AND NOT EXISTS (
        SELECT 1 FROM batch_items p
        WHERE p.tenant_id = i.tenant_id AND p.iccid = i.iccid AND p.id < i.id
          AND p.status IN ('APPROVED', 'PROCESSING'))
    ORDER BY i.id LIMIT ?4)
RETURNING id, batch_id, tenant_id, seq, iccid, operation, params, secret_enc";

/// Runnable fresh items, leaving out the ids in the JSON array `?2`: read
/// inside the write transaction of `run_chunk` (with `?2` empty), or on a
/// read connection beside it, leaving out the chunk it writes (see
/// [`super::ahead`]).
pub(super) static PICK_FRESH: LazyLock<String> = LazyLock::new(|| {
    pick::aggregated(
        "SELECT i.id FROM batch_items i JOIN batches b ON b.id = i.batch_id
WHERE i.status = 'APPROVED' AND b.status = 'PROCESSING'
  AND i.id NOT IN (SELECT value FROM json_each(?2))
  AND NOT EXISTS (
    SELECT 1 FROM batch_items p
    WHERE p.tenant_id = i.tenant_id AND p.iccid = i.iccid AND p.id < i.id
      AND p.status IN ('APPROVED', 'PROCESSING'))
ORDER BY i.id LIMIT ?1",
    )
});

/// Items whose lease expired, read inside `run_chunk`. Without `INDEXED BY`
/// the planner satisfies `ORDER BY id` by walking the whole table (every
/// finished item, on every chunk); the partial index holds only leased items.
static PICK_EXPIRED: LazyLock<String> = LazyLock::new(|| {
    pick::aggregated(
        "SELECT i.id FROM batch_items i INDEXED BY batch_items_leased JOIN batches b ON b.id = i.batch_id
WHERE i.status = 'PROCESSING' AND i.lease_until < ?1 ORDER BY i.id LIMIT ?2",
    )
});

/// See `anything_runnable`.
const RUNNABLE: &str =
    "SELECT EXISTS (SELECT 1 FROM batches WHERE status = 'PROCESSING' AND approved > 0)
    OR EXISTS (SELECT 1 FROM batch_items INDEXED BY batch_items_leased
               WHERE status = 'PROCESSING' AND lease_until < ?1)";

const CLAIM_EXPIRED: &str =
    "UPDATE batch_items SET lease_token = ?1, lease_until = ?2, updated_at = ?3
WHERE id IN (
    SELECT id FROM batch_items INDEXED BY batch_items_leased
    WHERE status = 'PROCESSING' AND lease_until < ?3 ORDER BY id LIMIT ?4)
RETURNING id, batch_id, tenant_id, seq, iccid, operation, params, secret_enc";

impl SqliteStore {
    /// Whether a pick could find anything: a PROCESSING batch with APPROVED
    /// items, or an expired lease. Read without the write lock, so idle polls
    /// never hold up writers; and it keeps the pick from walking the runnable
    /// index through the items of a batch still being uploaded (INITIALISING),
    /// which made a large upload slower the larger it grew.
    async fn anything_runnable(&self, now: i64) -> Result<bool> {
        Ok(sqlx::query_scalar(RUNNABLE)
            .bind(now)
            .fetch_one(&self.read)
            .await?)
    }

    pub(super) async fn claim_impl(&self, limit: usize, lease: Duration) -> Result<Claim> {
        let now = now_ms();
        let token = uuid::Uuid::new_v4().to_string();
        let until = now + lease.as_millis() as i64;
        if !self.anything_runnable(now).await? {
            return Ok(Claim {
                token,
                items: Vec::new(),
            });
        }
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let expired = sqlx::query(CLAIM_EXPIRED)
            .bind(&token)
            .bind(until)
            .bind(now)
            .bind(limit as i64)
            .fetch_all(&mut *tx)
            .await?;
        let room = limit.saturating_sub(expired.len());
        let fresh = if room > 0 {
            sqlx::query(CLAIM_FRESH)
                .bind(&token)
                .bind(until)
                .bind(now)
                .bind(room as i64)
                .fetch_all(&mut *tx)
                .await?
        } else {
            Vec::new()
        };
        if expired.is_empty() && fresh.is_empty() {
            tx.commit().await?;
            return Ok(Claim {
                token,
                items: Vec::new(),
            });
        }
        // Counters move only for items that were APPROVED; expired ones were already PROCESSING.
        let mut moved: BTreeMap<String, i64> = BTreeMap::new();
        for r in &fresh {
            *moved.entry(r.try_get("batch_id")?).or_default() += 1;
        }
        for (batch_id, n) in &moved {
            sqlx::query("UPDATE batches SET approved = approved - ?1, processing = processing + ?1, updated_at = ?2 WHERE id = ?3")
                .bind(n)
                .bind(now)
                .bind(batch_id)
                .execute(&mut *tx)
                .await?;
        }
        let mut items = Vec::with_capacity(expired.len() + fresh.len());
        for r in expired.iter().chain(fresh.iter()) {
            items.push(self.claimed_item(r)?);
        }
        self.load_context(&mut tx, &mut items).await?;
        tx.commit().await?;
        items.sort_by_key(|i| i.id);
        Ok(Claim { token, items })
    }

    fn claimed_item(&self, r: &sqlx::sqlite::SqliteRow) -> Result<ClaimedItem> {
        let params: String = r.try_get("params")?;
        let secret: Option<String> = r.try_get("secret_enc")?;
        pick::claimed(
            &self.cipher,
            pick::ItemColumns {
                id: r.try_get("id")?,
                batch_id: r.try_get("batch_id")?,
                tenant_id: r.try_get("tenant_id")?,
                seq: r.try_get("seq")?,
                iccid: r.try_get("iccid")?,
                operation: r.try_get("operation")?,
                params,
                secret_enc: secret,
            },
        )
    }

    /// Fill each item's batch mode, current SIM and profile flag, set-based.
    async fn load_context(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        items: &mut [ClaimedItem],
    ) -> Result<()> {
        let batch_ids: HashSet<&str> = items.iter().map(|i| i.batch_id.as_str()).collect();
        let ids_json =
            serde_json::to_string(&batch_ids.into_iter().collect::<Vec<_>>()).unwrap_or_default();
        let modes: HashMap<String, BatchMode> = sqlx::query(
            "SELECT id, mode FROM batches WHERE id IN (SELECT value FROM json_each(?1))",
        )
        .bind(ids_json)
        .fetch_all(&mut **tx)
        .await?
        .iter()
        .map(|r| {
            let mode: String = r.try_get("mode")?;
            Ok((
                r.try_get("id")?,
                BatchMode::parse(&mode).unwrap_or_default(),
            ))
        })
        .collect::<Result<_>>()?;
        let keys: Vec<Value> = items
            .iter()
            .map(|i| json!([i.tenant_id, i.iccid]))
            .collect();
        let keys = Value::Array(keys).to_string();
        let sql = format!(
            "SELECT s.tenant_id, {cols} FROM json_each(?1) j
             JOIN sims s ON s.tenant_id = j.value ->> 0 AND s.iccid = j.value ->> 1",
            cols = rows::SIM_COLS
                .replace("iccid,", "s.iccid,")
                .replace("created_at", "s.created_at")
                .replace("updated_at", "s.updated_at")
        );
        let mut sims = HashMap::new();
        for r in sqlx::query(&sql).bind(&keys).fetch_all(&mut **tx).await? {
            let t: String = r.try_get("tenant_id")?;
            let rec = rows::sim(&r)?;
            sims.insert((t, rec.sim.iccid.clone()), rec.sim);
        }
        let mut profiles = HashSet::new();
        for r in sqlx::query(
            "SELECT p.tenant_id, p.iccid FROM json_each(?1) j
             JOIN profiles p ON p.tenant_id = j.value ->> 0 AND p.iccid = j.value ->> 1",
        )
        .bind(&keys)
        .fetch_all(&mut **tx)
        .await?
        {
            profiles.insert((r.try_get::<String, _>(0)?, r.try_get::<String, _>(1)?));
        }
        for it in items.iter_mut() {
            let key = (it.tenant_id.clone(), it.iccid.clone());
            it.mode = modes.get(&it.batch_id).copied().unwrap_or_default();
            it.has_profile = profiles.contains(&key);
            it.sim = sims.remove(&key);
        }
        Ok(())
    }

    pub(super) async fn complete_impl(
        &self,
        token: &str,
        done: Vec<Completion>,
    ) -> Result<CompleteSummary> {
        let now = now_ms();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        // Fence: keep only items whose lease still carries our token.
        let held: HashSet<i64> = sqlx::query_scalar(
            "SELECT id FROM batch_items WHERE status = 'PROCESSING' AND lease_token = ?1",
        )
        .bind(token)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let total = done.len();
        let kept: Vec<Completion> = done
            .into_iter()
            .filter(|c| held.contains(&c.item.id))
            .collect();
        let mut summary = CompleteSummary {
            fenced_out: total - kept.len(),
            applied: kept.len(),
            ..Default::default()
        };
        if !kept.is_empty() {
            self.apply_isolating(&mut tx, &kept, None, &HashSet::new(), now, &mut summary)
                .await?;
        }
        tx.commit().await?;
        Ok(summary)
    }

    /// Claim, execute and complete one chunk in a single write transaction.
    /// SQLite has one writer, so no lease is needed: a crash rolls the whole
    /// chunk back and its items stay APPROVED.
    ///
    /// While this chunk is written and committed, the next one is picked on
    /// a read connection, decoded and executed (see [`super::ahead`]).
    pub(super) async fn run_chunk_impl(
        &self,
        limit: usize,
        execute: &std::sync::Arc<crate::Executor>,
    ) -> Result<Option<CompleteSummary>> {
        let mut ahead = self.ahead.lock().await;
        let picked_ahead = ahead.take();
        let now = now_ms();
        let mut phases = crate::phases::Phases::start();
        if picked_ahead.is_none() && !self.anything_runnable(now).await? {
            return Ok(None);
        }
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let taken = match picked_ahead {
            Some(a) => a.take(&mut tx, now).await?,
            None => None,
        };
        let mut fresh_from = 0;
        let chunk = match taken {
            Some(chunk) if !chunk.is_empty() => chunk,
            _ => {
                let items;
                (items, fresh_from) = self.pick_now(&mut tx, limit, now).await?;
                if items.is_empty() {
                    tx.commit().await?;
                    return Ok(None);
                }
                ahead::Chunk::Picked(items)
            }
        };
        let ids = chunk.ids();
        let fresh_ids: HashSet<i64> = ids[fresh_from..].iter().copied().collect();
        phases.mark("pick");
        // The next chunk is read, decoded and executed beside this one.
        let next = ahead::Reading::start(
            self.read.clone(),
            limit,
            serde_json::to_string(&ids).unwrap_or_default(),
            self.cipher.clone(),
            execute.clone(),
        );
        let (completions, blocks) = match chunk {
            ahead::Chunk::Executed(done, blocks) => (done, blocks),
            ahead::Chunk::Picked(items) => (
                tokio::spawn(execute(items)).await.unwrap_or_else(|e| {
                    // Nothing is applied for this chunk; its items run again.
                    tracing::error!(error = %e, "executing a chunk failed");
                    Vec::new()
                }),
                None,
            ),
        };
        phases.mark("execute");
        let mut summary = CompleteSummary {
            applied: completions.len(),
            ..Default::default()
        };
        let plan = match blocks {
            Some(blocks) => Planned::packed(&self.cipher, &completions, blocks),
            None => Planned::new(&self.cipher, &completions),
        };
        phases.mark("plan");
        self.apply_isolating(
            &mut tx,
            &completions,
            Some(plan),
            &fresh_ids,
            now,
            &mut summary,
        )
        .await?;
        phases.mark("apply");
        let (stamp, _) = ahead::stamp(&mut tx, now).await?;
        tx.commit().await?;
        self.wake_checkpointer();
        *ahead = Some(next.stamped(stamp));
        phases.mark("commit");
        // Freeing a chunk's orders and results takes about a millisecond.
        tokio::task::spawn_blocking(move || drop(completions));
        phases.mark("drop");
        phases.log("sqlite run_chunk", summary.applied);
        Ok(Some(summary))
    }

    /// The usual pick: items whose lease expired, then fresh ones, up to
    /// `limit`; and where the fresh ones start.
    async fn pick_now(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        limit: usize,
        now: i64,
    ) -> Result<(Vec<ClaimedItem>, usize)> {
        // Items another process left leased (the claim/complete path) come first once expired.
        let expired: String = sqlx::query_scalar(PICK_EXPIRED.as_str())
            .bind(now)
            .bind(limit as i64)
            .fetch_one(&mut **tx)
            .await?;
        let mut items = pick::items(&expired, &self.cipher)?;
        let n_expired = items.len();
        let room = limit.saturating_sub(n_expired);
        if room > 0 {
            let fresh: String = sqlx::query_scalar(PICK_FRESH.as_str())
                .bind(room as i64)
                .bind("[]")
                .fetch_one(&mut **tx)
                .await?;
            items.extend(pick::items(&fresh, &self.cipher)?);
        }
        Ok((items, n_expired))
    }

    /// [`Self::apply`] with `plan` (the chunk's, made beforehand) or a plan
    /// made here; but a chunk the database refuses (a constraint broken
    /// by one item's rows) is rolled back to a savepoint and applied item by
    /// item: a refused item fails alone with [`crate::REFUSED_CODE`] and the
    /// others take effect, so no chunk is retried forever.
    async fn apply_isolating<'r>(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        kept: &'r [Completion],
        plan: Option<Planned<'r>>,
        fresh: &HashSet<i64>,
        now: i64,
        summary: &mut CompleteSummary,
    ) -> Result<()> {
        let mut whole = summary.clone();
        exec(tx, "SAVEPOINT chunk").await?;
        let plan = plan.unwrap_or_else(|| Planned::new(&self.cipher, kept));
        let err = match self.apply(tx, kept, plan, fresh, now, &mut whole).await {
            Ok(()) => {
                exec(tx, "RELEASE chunk").await?;
                *summary = whole;
                return Ok(());
            }
            Err(e) => e,
        };
        if plan::refusal(&err).is_none() {
            return Err(err);
        }
        exec(tx, "ROLLBACK TO chunk").await?;
        exec(tx, "RELEASE chunk").await?;
        tracing::warn!(items = kept.len(), error = %err, "chunk refused; applying its items one by one");
        for c in kept {
            let mut one = CompleteSummary::default();
            exec(tx, "SAVEPOINT item").await?;
            let one_plan = Planned::new(&self.cipher, std::slice::from_ref(c));
            match self
                .apply(tx, std::slice::from_ref(c), one_plan, fresh, now, &mut one)
                .await
            {
                Ok(()) => exec(tx, "RELEASE item").await?,
                Err(e) => {
                    let Some(reason) = plan::refusal(&e) else {
                        return Err(e);
                    };
                    exec(tx, "ROLLBACK TO item").await?;
                    exec(tx, "RELEASE item").await?;
                    tracing::warn!(item = c.item.id, batch_id = %c.item.batch_id, %reason, "item refused");
                    one = CompleteSummary::default();
                    let failed = c.failed(crate::REFUSED_CODE, reason);
                    let failed = std::slice::from_ref(&failed);
                    let failed_plan = Planned::new(&self.cipher, failed);
                    self.apply(tx, failed, failed_plan, fresh, now, &mut one)
                        .await?;
                }
            }
            summary.merge(one);
        }
        Ok(())
    }

    /// Write a chunk's effects, results, counters and events, as `plan`
    /// (made from `kept`) has them. Items in
    /// `fresh` were still APPROVED (run in one transaction); the others were
    /// PROCESSING under a lease.
    async fn apply(
        &self,
        tx: &mut Transaction<'static, Sqlite>,
        kept: &[Completion],
        planned: Planned<'_>,
        fresh: &HashSet<i64>,
        now: i64,
        summary: &mut CompleteSummary,
    ) -> Result<()> {
        let mut phases = crate::phases::Phases::start();
        let Planned { mut plan, packing } = planned;
        summary.by_operation = crate::plan::count_by_operation(kept);
        for c in kept.iter().filter(|c| fresh.contains(&c.item.id)) {
            if let Some(d) = plan.deltas.get_mut(&c.item.batch_id) {
                d.processing_done -= 1;
                d.approved_done += 1;
            }
        }
        write_sims(tx, &plan.sim_inserts, &plan.sim_updates, now).await?;
        phases.mark("sims");
        write_status(tx, &plan.status_updates, now).await?;
        phases.mark("status");
        write_profiles(tx, &plan.profiles, now).await?;
        phases.mark("profiles");
        write_history(tx, &plan.history, now).await?;
        phases.mark("history");
        write_items(tx, &plan.items, now).await?;
        phases.mark("items");
        summary.completed = plan.deltas.values().map(|d| d.completed as usize).sum();
        summary.failed = plan.deltas.values().map(|d| d.failed as usize).sum();
        // Sequential batches: a failure leaves that ICCID's later items unexecuted.
        for (batch_id, op) in cancel_followers(tx, &plan.followers, now).await? {
            if let Some(d) = plan.deltas.get_mut(&batch_id) {
                d.canceled += 1;
            }
            summary.canceled += 1;
            if let Some(op) = rows::operation(op)? {
                plan::operation_slot(&mut summary.by_operation, op).canceled += 1;
            }
        }
        phases.mark("cancel");
        for (batch_id, d) in &plan.deltas {
            sqlx::query(
                "UPDATE batches SET processing = processing - ?1, completed = completed + ?2, failed = failed + ?3,
                        approved = approved - ?4 - ?7, canceled = canceled + ?4, updated_at = ?5 WHERE id = ?6",
            )
            .bind(d.processing_done)
            .bind(d.completed)
            .bind(d.failed)
            .bind(d.canceled)
            .bind(now)
            .bind(batch_id)
            .bind(d.approved_done)
            .execute(&mut **tx)
            .await?;
        }
        phases.mark("counters");
        let ids =
            serde_json::to_string(&plan.deltas.keys().collect::<Vec<_>>()).unwrap_or_default();
        let finished = sqlx::query(&format!(
            "UPDATE batches SET status = CASE WHEN rejected = 0 AND failed = 0 AND canceled = 0
                                 THEN 'COMPLETED' ELSE 'PARTIALLY_COMPLETED' END,
                    completed_at = ?1, updated_at = ?1
             WHERE id IN (SELECT value FROM json_each(?2)) AND status = 'PROCESSING' AND approved = 0 AND processing = 0
             RETURNING {}",
            rows::BATCH_COLS
        ))
        .bind(now)
        .bind(ids)
        .fetch_all(&mut **tx)
        .await?;
        for r in &finished {
            let b = rows::batch(r)?;
            plan.events.extend(plan::batch_event(&b));
            summary.finished.push((b.id, b.status));
        }
        phases.mark("finished");
        // The item events were packed while the rows above were written;
        // the batch events of this chunk follow them.
        let mut blocks = match packing {
            Packing::Packed(blocks) => blocks,
            Packing::Running(task) => task
                .await
                .map_err(|e| StoreError::State(format!("packing outbox events failed: {e}")))?,
        };
        blocks.extend(outbox::pack(&plan.events));
        outbox::write_blocks(tx, &blocks, now).await?;
        phases.mark("outbox");
        phases.log("sqlite apply", kept.len());
        Ok(())
    }
}

/// A chunk's plan, its item events being packed into outbox blocks on the
/// blocking pool meanwhile: the CPU work of completing a chunk, kept off
/// the single writer's path.
struct Planned<'r> {
    plan: CompletionPlan<'r>,
    packing: Packing,
}

/// A chunk's item events as outbox blocks: packed already, or being packed.
enum Packing {
    Packed(Vec<outbox::PackedBlock>),
    Running(tokio::task::JoinHandle<Vec<outbox::PackedBlock>>),
}

impl<'r> Planned<'r> {
    fn new(cipher: &crate::crypto::Cipher, kept: &'r [Completion]) -> Self {
        let mut plan = plan_completion(cipher, kept);
        let events = std::mem::take(&mut plan.events);
        let packing = tokio::task::spawn_blocking(move || outbox::pack(&events));
        Self {
            plan,
            packing: Packing::Running(packing),
        }
    }

    /// The plan of `kept`, whose item events were packed into `blocks` already.
    fn packed(
        cipher: &crate::crypto::Cipher,
        kept: &'r [Completion],
        blocks: Vec<outbox::PackedBlock>,
    ) -> Self {
        Self {
            plan: plan::plan_rows(cipher, kept),
            packing: Packing::Packed(blocks),
        }
    }
}

/// Run one statement without parameters (savepoints).
async fn exec(tx: &mut Transaction<'static, Sqlite>, sql: &str) -> Result<()> {
    sqlx::query(sql).execute(&mut **tx).await?;
    Ok(())
}

/// Cancel the later APPROVED items of each failed item's ICCID in its
/// sequential batch; returns the batch and operation of each one canceled.
async fn cancel_followers(
    tx: &mut Transaction<'static, Sqlite>,
    followers: &[plan::FollowerCancel],
    now: i64,
) -> Result<Vec<(String, Option<String>)>> {
    let cols = ["batch_id", "tenant_id", "iccid", "after_id", "reason"];
    let reasons: Vec<String> = followers
        .iter()
        .map(|f| plan::follower_reason(f.seq))
        .collect();
    let rows: Vec<(&plan::FollowerCancel, &String)> = followers.iter().zip(&reasons).collect();
    let mut out = Vec::new();
    for mut q in values::statements(
        Shape::Cte,
        "",
        &cols,
        CANCEL_FOLLOWERS,
        &rows,
        |b, (f, reason)| {
            b.push_bind(f.batch_id.as_str())
                .push_bind(f.tenant_id.as_str())
                .push_bind(f.iccid.as_str())
                .push_bind(f.after_id)
                .push_bind(reason.as_str());
        },
    ) {
        for r in q.build().bind(now).fetch_all(&mut **tx).await? {
            out.push((r.try_get(0)?, r.try_get(1)?));
        }
    }
    Ok(out)
}

/// The SIM columns, in the order [`bind_sim`] binds them.
const SIM_WRITE_COLS: [&str; 20] = [
    "tenant_id",
    "iccid",
    "imsi",
    "msisdn",
    "eid",
    "imei",
    "status",
    "subscription_state",
    "blocked",
    "rate_plan",
    "supplementary_plans",
    "services",
    "apn_status",
    "custom_field_1",
    "custom_field_2",
    "custom_field_3",
    "custom_field_4",
    "custom_field_5",
    "ki_enc",
    "opc_enc",
];

fn bind_sim<'r>(b: &mut Separated<'_, 'r, Sqlite, &'static str>, w: &'r plan::SimWrite<'r>) {
    let s = w.sim;
    b.push_bind(w.tenant_id)
        .push_bind(s.iccid.as_str())
        .push_bind(s.imsi.as_deref())
        .push_bind(s.msisdn.as_deref())
        .push_bind(s.eid.as_deref())
        .push_bind(s.imei.as_deref())
        .push_bind(s.status.as_str())
        .push_bind(s.subscription_state.map(|v| v.as_str()))
        .push_bind(i64::from(s.blocked))
        .push_bind(s.rate_plan.as_deref())
        .push_bind(w.supplementary_plans())
        .push_bind(w.services())
        .push_bind(s.apn_status.as_deref());
    for f in w.custom_fields() {
        b.push_bind(f);
    }
    b.push_bind(w.ki_enc.as_deref())
        .push_bind(w.opc_enc.as_deref());
}

async fn write_sims(
    tx: &mut Transaction<'static, Sqlite>,
    inserts: &[plan::SimWrite<'_>],
    updates: &[plan::SimWrite<'_>],
    now: i64,
) -> Result<()> {
    let (insert, update) = (
        ("", &SIM_WRITE_COLS[..], INSERT_SIMS),
        ("", &SIM_WRITE_COLS[..], UPDATE_SIMS),
    );
    values::write(tx, Shape::Cte, insert, inserts, &[now, now], bind_sim).await?;
    values::write(tx, Shape::Cte, update, updates, &[now], bind_sim).await?;
    // Secrets given on an order for an existing SIM (e.g. generate_activation_code) are kept.
    let secrets: Vec<&plan::SimWrite<'_>> = updates.iter().filter(|u| u.has_secrets()).collect();
    let cols = ["tenant_id", "iccid", "ki_enc", "opc_enc"];
    values::write(
        tx,
        Shape::Cte,
        ("", &cols, UPDATE_SIM_SECRETS),
        &secrets,
        &[],
        |b, w| {
            b.push_bind(w.tenant_id)
                .push_bind(w.sim.iccid.as_str())
                .push_bind(w.ki_enc.as_deref())
                .push_bind(w.opc_enc.as_deref());
        },
    )
    .await
}

/// The ids of `rows` as JSON arrays, grouped by `key`, in row order within a
/// group. The keys used take few values (lifecycle statuses, results shared
/// by a whole chunk), and each group becomes one set-based statement with a
/// few binds.
fn ids_by<'r, T, K: Ord>(
    rows: &'r [T],
    key: impl Fn(&'r T) -> K,
    id: impl Fn(&T) -> i64,
) -> BTreeMap<K, String> {
    let mut groups: BTreeMap<K, Vec<i64>> = BTreeMap::new();
    for r in rows {
        groups.entry(key(r)).or_default().push(id(r));
    }
    groups
        .into_iter()
        .map(|(k, ids)| (k, serde_json::to_string(&ids).unwrap_or_default()))
        .collect()
}

/// SIMs whose status alone changed, one statement per new status.
async fn write_status(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[plan::StatusWrite<'_>],
    now: i64,
) -> Result<()> {
    for (status, ids) in ids_by(rows, |w| w.status, |w| w.item_id) {
        sqlx::query(UPDATE_SIM_STATUS)
            .bind(status)
            .bind(now)
            .bind(ids)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

async fn write_profiles(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[plan::ProfileWrite<'_>],
    now: i64,
) -> Result<()> {
    const HEAD: &str = "INSERT INTO profiles (tenant_id, iccid, matching_id, activation_code,
        cc_hash_enc, template, state, apn, expires_at, package_enc, created_at, updated_at)";
    let cols = [
        "tenant_id",
        "iccid",
        "matching_id",
        "activation_code",
        "cc_hash_enc",
        "template",
        "state",
        "apn",
        "expires_at",
        "package_enc",
        "created_at",
        "updated_at",
    ];
    values::write(tx, Shape::Insert, (HEAD, &cols, ""), rows, &[], |b, p| {
        b.push_bind(p.tenant_id)
            .push_bind(p.iccid)
            .push_bind(p.matching_id)
            .push_bind(p.activation_code)
            .push_bind(p.cc_hash_enc.as_deref())
            .push_bind(p.template)
            .push_bind(p.state)
            .push_bind(p.apn)
            .push_bind(p.expires_at)
            .push_bind(p.package_enc.as_deref())
            .push_bind(now)
            .push_bind(now);
    })
    .await
}

/// History rows take the SIM, operation and batch from the item's own row:
/// one statement per pair of statuses.
async fn write_history(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[plan::HistoryWrite<'_>],
    now: i64,
) -> Result<()> {
    for ((from, to), ids) in ids_by(rows, |h| (h.from_status, h.to_status), |h| h.item_id) {
        sqlx::query(INSERT_HISTORY)
            .bind(now)
            .bind(from)
            .bind(to)
            .bind(ids)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// Most distinct results for which completed items are written one
/// statement per result (bulk lifecycle orders all return the same one);
/// beyond it, each item binds its own.
const SHARED_RESULTS: usize = 4;

/// Completed items bind their id and result only (or, when few results are
/// shared by all, just their ids per result); failed ones also bind their
/// status, code and reason.
async fn write_items(
    tx: &mut Transaction<'static, Sqlite>,
    rows: &[plan::ItemWrite<'_>],
    now: i64,
) -> Result<()> {
    let (completed, others): (Vec<&plan::ItemWrite<'_>>, Vec<&plan::ItemWrite<'_>>) =
        rows.iter().partition(|i| {
            i.status == ItemStatus::Completed.as_str()
                && i.error_code.is_none()
                && i.error_reason.is_none()
        });
    let by_result = ids_by(&completed, |i| i.result.as_deref(), |i| i.id);
    if by_result.len() <= SHARED_RESULTS {
        for (result, ids) in by_result {
            sqlx::query(UPDATE_COMPLETED_SHARING)
                .bind(result)
                .bind(now)
                .bind(ids)
                .execute(&mut **tx)
                .await?;
        }
    } else {
        values::write(
            tx,
            Shape::Cte,
            ("", &["id", "result"], UPDATE_COMPLETED_ITEMS),
            &completed,
            &[now],
            |b, i| {
                b.push_bind(i.id).push_bind(i.result.as_deref());
            },
        )
        .await?;
    }
    let cols = ["id", "status", "error_code", "error_reason", "result"];
    values::write(
        tx,
        Shape::Cte,
        ("", &cols, UPDATE_ITEMS),
        &others,
        &[now],
        |b, i| {
            b.push_bind(i.id)
                .push_bind(i.status)
                .push_bind(i.error_code)
                .push_bind(i.error_reason)
                .push_bind(i.result.as_deref());
        },
    )
    .await
}

/// Insert SIMs from the rows CTE `v`; the time is bound twice after the rows.
pub(super) const INSERT_SIMS: &str = "INSERT INTO sims (tenant_id, iccid, imsi, msisdn, eid, imei, status,
    subscription_state, blocked, rate_plan, supplementary_plans, services, apn_status, custom_field_1,
    custom_field_2, custom_field_3, custom_field_4, custom_field_5, ki_enc, opc_enc, created_at, updated_at)
SELECT v.tenant_id, v.iccid, v.imsi, v.msisdn, v.eid, v.imei, v.status,
    v.subscription_state, v.blocked, v.rate_plan, v.supplementary_plans, v.services,
    v.apn_status, v.custom_field_1, v.custom_field_2, v.custom_field_3, v.custom_field_4,
    v.custom_field_5, v.ki_enc, v.opc_enc, ?, ?
FROM v";

const UPDATE_SIMS: &str = "UPDATE sims SET imsi = v.imsi, msisdn = v.msisdn, eid = v.eid,
    imei = v.imei, status = v.status, subscription_state = v.subscription_state,
    blocked = v.blocked, rate_plan = v.rate_plan, supplementary_plans = v.supplementary_plans,
    services = v.services, apn_status = v.apn_status, custom_field_1 = v.custom_field_1,
    custom_field_2 = v.custom_field_2, custom_field_3 = v.custom_field_3,
    custom_field_4 = v.custom_field_4, custom_field_5 = v.custom_field_5, updated_at = ?
FROM v
WHERE sims.tenant_id = v.tenant_id AND sims.iccid = v.iccid";

/// One history row (at `?1`, from status `?2` to `?3`) per item whose id is
/// in the JSON array `?4`, in its order.
const INSERT_HISTORY: &str =
    "INSERT INTO sim_history (tenant_id, iccid, at, operation, from_status,
    to_status, batch_id, item_id)
SELECT i.tenant_id, i.iccid, ?1, i.operation, ?2, ?3, i.batch_id, i.id
FROM json_each(?4) j JOIN batch_items i ON i.id = j.value";

/// Later APPROVED items of a failed item's ICCID in a sequential batch.
const CANCEL_FOLLOWERS: &str = "UPDATE batch_items SET status = 'CANCELED', error_code = 'preceding_item_failed',
    error_reason = v.reason, updated_at = ?
FROM v
WHERE batch_items.tenant_id = v.tenant_id AND batch_items.iccid = v.iccid AND batch_items.id > v.after_id
  AND batch_items.batch_id = v.batch_id AND batch_items.status IN ('APPROVED', 'PROCESSING')
  AND batch_items.status = 'APPROVED'
RETURNING batch_items.batch_id, batch_items.operation";

/// The SIM of each item whose id is in the JSON array `?3` takes status
/// `?1` at `?2`; the SIM is found through the item's row.
const UPDATE_SIM_STATUS: &str = "UPDATE sims SET status = ?1, updated_at = ?2
FROM (SELECT i.tenant_id AS tenant_id, i.iccid AS iccid
      FROM json_each(?3) j JOIN batch_items i ON i.id = j.value) k
WHERE sims.tenant_id = k.tenant_id AND sims.iccid = k.iccid";

const UPDATE_SIM_SECRETS: &str = "UPDATE sims SET ki_enc = coalesce(v.ki_enc, sims.ki_enc),
    opc_enc = coalesce(v.opc_enc, sims.opc_enc)
FROM v
WHERE sims.tenant_id = v.tenant_id AND sims.iccid = v.iccid";

/// [`UPDATE_ITEMS`] for completed items: status, code and reason are known,
/// so the rows CTE `v` carries only id and result.
const UPDATE_COMPLETED_ITEMS: &str =
    "UPDATE batch_items SET status = 'COMPLETED', error_code = NULL,
    error_reason = NULL, result = v.result, lease_token = NULL, lease_until = NULL, updated_at = ?
FROM v
WHERE batch_items.id = v.id";

/// [`UPDATE_COMPLETED_ITEMS`] for items sharing one result `?1`, at `?2`,
/// whose ids are in the JSON array `?3`.
const UPDATE_COMPLETED_SHARING: &str =
    "UPDATE batch_items SET status = 'COMPLETED', error_code = NULL,
    error_reason = NULL, result = ?1, lease_token = NULL, lease_until = NULL, updated_at = ?2
WHERE id IN (SELECT value FROM json_each(?3))";

const UPDATE_ITEMS: &str = "UPDATE batch_items SET status = v.status, error_code = v.error_code,
    error_reason = v.error_reason, result = v.result, lease_token = NULL, lease_until = NULL,
    updated_at = ?
FROM v
WHERE batch_items.id = v.id";

#[cfg(test)]
mod tests {
    use super::*;

    /// A store holding SIMs 1..=n of tenant `t` (INVENTORY) and an APPROVED
    /// activate item for each in batch `b`, item id = SIM number.
    async fn items_on_sims(n: i64) -> (tempfile::TempDir, SqliteStore) {
        let (dir, store) = SqliteStore::fresh_for_test().await;
        sqlx::query(
            "INSERT INTO batches (id, tenant_id, operation, mode, status, source, created_at, updated_at)
             VALUES ('b', 't', 'activate', 'parallel', 'PROCESSING', 'api', 0, 0)",
        )
        .execute(&store.write)
        .await
        .unwrap();
        for k in 1..=n {
            let iccid = format!("89882470000000000{k:02}");
            sqlx::query(
                "INSERT INTO sims (tenant_id, iccid, status, created_at, updated_at)
                 VALUES ('t', ?1, 'INVENTORY', 0, 0)",
            )
            .bind(&iccid)
            .execute(&store.write)
            .await
            .unwrap();
            sqlx::query(
                "INSERT INTO batch_items (id, batch_id, tenant_id, seq, iccid, operation, status, params, updated_at)
                 VALUES (?1, 'b', 't', ?1, ?2, 'activate', 'APPROVED', '{}', 0)",
            )
            .bind(k)
            .bind(&iccid)
            .execute(&store.write)
            .await
            .unwrap();
        }
        (dir, store)
    }

    /// `(item id, column)` of every item, in id order.
    async fn item_column(store: &SqliteStore, column: &str) -> Vec<(i64, Option<String>)> {
        sqlx::query_as(&format!("SELECT id, {column} FROM batch_items ORDER BY id"))
            .fetch_all(&store.write)
            .await
            .unwrap()
    }

    fn completed(id: i64, result: &str) -> plan::ItemWrite<'static> {
        plan::ItemWrite {
            id,
            status: ItemStatus::Completed.as_str(),
            error_code: None,
            error_reason: None,
            result: Some(result.to_owned()),
        }
    }

    /// Completed items get their own results whether a few results are
    /// shared (one statement each) or every item has its own (bound per row).
    #[tokio::test]
    async fn completed_items_keep_their_own_results_shared_or_not() {
        let (_dir, store) = items_on_sims(9).await;
        let shared: Vec<_> = (1..=3)
            .map(|id| completed(id, "{}"))
            .chain([completed(4, r#"{"n":4}"#)])
            .collect();
        let own: Vec<_> = (5..=9)
            .map(|id| completed(id, &format!(r#"{{"n":{id}}}"#)))
            .collect();
        assert!(own.len() > SHARED_RESULTS, "the per-row path");
        let mut tx = store.write.begin().await.unwrap();
        write_items(&mut tx, &shared, 7).await.unwrap();
        write_items(&mut tx, &own, 7).await.unwrap();
        tx.commit().await.unwrap();
        let results = item_column(&store, "result").await;
        let want: Vec<(i64, Option<String>)> = shared
            .iter()
            .chain(&own)
            .map(|i| (i.id, i.result.clone()))
            .collect();
        assert_eq!(results, want);
        let statuses = item_column(&store, "status").await;
        assert!(statuses
            .iter()
            .all(|(_, s)| s.as_deref() == Some("COMPLETED")));
    }

    /// SIM statuses and history rows are written one statement per status
    /// (or pair of statuses), each SIM and item taking its own.
    #[tokio::test]
    async fn statuses_and_history_are_grouped_by_status() {
        let (_dir, store) = items_on_sims(4).await;
        let iccids: Vec<String> = (1..=4)
            .map(|k| format!("89882470000000000{k:02}"))
            .collect();
        let to = |k: i64| if k % 2 == 0 { "ACTIVATED" } else { "RETIRED" };
        let status: Vec<plan::StatusWrite<'_>> = (1..=4)
            .map(|k| plan::StatusWrite {
                tenant_id: "t",
                iccid: &iccids[k as usize - 1],
                status: to(k),
                item_id: k,
            })
            .collect();
        let history: Vec<plan::HistoryWrite<'_>> = (1..=4)
            .map(|k| plan::HistoryWrite {
                tenant_id: "t",
                iccid: &iccids[k as usize - 1],
                operation: "activate",
                from_status: (k != 4).then_some("INVENTORY"),
                to_status: to(k),
                batch_id: "b",
                item_id: k,
            })
            .collect();
        let mut tx = store.write.begin().await.unwrap();
        write_status(&mut tx, &status, 7).await.unwrap();
        write_history(&mut tx, &history, 7).await.unwrap();
        tx.commit().await.unwrap();
        let sims: Vec<(String, String, i64)> =
            sqlx::query_as("SELECT iccid, status, updated_at FROM sims ORDER BY iccid")
                .fetch_all(&store.write)
                .await
                .unwrap();
        for (k, (iccid, s, at)) in (1..=4).zip(sims) {
            assert_eq!(
                (iccid.as_str(), s.as_str(), at),
                (iccids[k - 1].as_str(), to(k as i64), 7)
            );
        }
        let mut rows: Vec<(i64, String, Option<String>, String, i64)> =
            sqlx::query_as("SELECT item_id, iccid, from_status, to_status, at FROM sim_history")
                .fetch_all(&store.write)
                .await
                .unwrap();
        rows.sort();
        let want: Vec<_> = (1..=4i64)
            .map(|k| {
                let from = (k != 4).then(|| "INVENTORY".to_owned());
                (k, iccids[k as usize - 1].clone(), from, to(k).to_owned(), 7)
            })
            .collect();
        assert_eq!(rows, want);
    }
}
