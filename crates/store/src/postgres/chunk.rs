//! One chunk in one transaction on PostgreSQL: pick, execute, write.
//!
//! The picked rows stay locked (`FOR UPDATE SKIP LOCKED`) while the engine
//! executes them, so other workers and replicas pass them by and no lease is
//! written: an item goes from APPROVED to its result in one UPDATE, and the
//! batch counters move once per chunk.
//!
//! A process that dies mid-chunk drops its connection; PostgreSQL rolls the
//! transaction back and the items are APPROVED again for the other replicas.
//! A worker that stalls instead is cut off once it has sat idle in the
//! transaction for the lease (`idle_in_transaction_session_timeout`), which
//! is the same promise a lease makes.

use std::collections::HashSet;
use std::time::Duration;

use super::engine::{chunk_settings, lock_batches, pick_expired, pick_fresh, CLAIMED_COLS};
use super::writes::Fence;
use super::PgStore;
use crate::model::*;
use crate::{plan, Executor, Result};

impl PgStore {
    /// See [`crate::Store::run_chunk`].
    pub(super) async fn run_chunk_impl(
        &self,
        limit: usize,
        lease: Duration,
        execute: &Executor,
    ) -> Result<Option<CompleteSummary>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let now = now_ms();
        if limit == 0 || !self.anything_runnable(now).await? {
            return Ok(None);
        }
        self.refresh_statistics_if_due().await;
        let mut phases = crate::phases::Phases::start();
        let mut tx = self.pool.begin().await?;
        chunk_settings(&mut tx, Some(lease)).await?;
        let cols = format!("{CLAIMED_COLS}, i.status");
        // Items a claim left leased come first once the lease has expired.
        let mut rows = sqlx::query(&pick_expired(&cols))
            .bind(now)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
        let room = limit - rows.len() as i64;
        if room > 0 {
            rows.extend(
                sqlx::query(&pick_fresh(&cols))
                    .bind(room)
                    .fetch_all(&mut *tx)
                    .await?,
            );
        }
        if rows.is_empty() {
            tx.commit().await?;
            return Ok(None);
        }
        let mut approved = HashSet::with_capacity(rows.len());
        for r in &rows {
            let status: &str = sqlx::Row::try_get(r, "status")?;
            if status == "APPROVED" {
                approved.insert(sqlx::Row::try_get::<i64, _>(r, "id")?);
            }
        }
        phases.mark("pick");
        let items = self.claimed_items(&mut tx, &rows).await?;
        drop(rows);
        phases.mark("read");
        let parts = plan::memory_parts(items);
        if parts.len() > 1 {
            // A later part may name a batch an earlier one did not; every
            // batch row is taken now, in order, before the first part's events
            // take the outbox counter (see `outbox`).
            lock_batches(&mut tx, parts.iter().flatten().map(|i| i.batch_id.as_str())).await?;
        }
        let fence = Fence::Locked(&approved);
        let mut summary = CompleteSummary::default();
        for part in parts {
            let done = execute(part).await;
            phases.mark("exec");
            summary.merge(self.complete_isolating(&mut tx, fence, &done, now).await?);
            phases.mark("write");
        }
        tx.commit().await?;
        phases.mark("commit");
        phases.log("postgres run_chunk", summary.applied);
        Ok(Some(summary))
    }
}
