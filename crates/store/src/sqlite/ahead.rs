//! Chunks picked ahead: the SQLite engine's two-stage pipeline.
//!
//! SQLite has one writer, and it is the engine's bottleneck. So while the
//! writer writes and commits chunk k, a read connection picks chunk k+1, and
//! the chunk is decoded and executed on the other core; the next transaction
//! only plans and writes it. (The writer itself used to pick the next chunk,
//! at the start of chunk k's transaction: that took about a quarter of its
//! time, and executing the chunk had to wait until the next transaction took
//! it. Moving only the pick to a read connection gained 3-5%, and less on a
//! slow host; the gain came with executing and packing the chunk there too.)
//!
//! The read starts once chunk k's transaction holds the write lock, so it
//! sees the database as that transaction found it, or later. It leaves out
//! chunk k's items by id. Chunk k's items are still APPROVED in that view,
//! so they hold back the later items of their SIMs as usual: chunk k+1 never
//! holds an item whose SIM chunk k changes, and the SIM it read for each
//! item is the SIM the item will run against.
//!
//! A chunk picked ahead is only read, never marked, and executing an order
//! only computes its effect, so it costs nothing to drop, and a crash loses
//! nothing. The next transaction checks it before it writes it: when nothing
//! was written since chunk k committed (the [`Stamp`] is the same), it runs
//! as picked. Otherwise (an upload, a cancel, another process) only its
//! items that are still APPROVED in a PROCESSING batch run. That check is
//! enough because, besides the engine's own chunks, no write changes a SIM
//! or whether a profile exists, and an APPROVED item can never fall behind a
//! newer one of its SIM (ids grow).
//!
//! Chunks whose orders read profile templates are picked ahead but executed
//! only once taken, so an item sees every template registered before its
//! transaction began.

use std::sync::Arc;

use sqlx::SqlitePool;
use sqlx::{Sqlite, Transaction};
use tokio::task::JoinHandle;

use super::outbox::{self, PackedBlock};
use super::{engine::PICK_FRESH, pick};
use crate::crypto::Cipher;
use crate::{plan, ClaimedItem, Completion, Executor, Result, StoreError};

/// What the writer connection has seen: the rows it changed in all
/// (`total_changes()`), and the commits of other connections
/// (`PRAGMA data_version`). Equal stamps mean nothing was written in between.
///
/// The writer pool has one connection that it never replaces (see
/// `SqliteStore::connect`), so the counts are always that connection's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Stamp {
    changes: i64,
    data_version: i64,
}

/// The stamp, and whether any lease has expired (those items go first, in
/// the usual pick).
const STAMP: &str = "SELECT total_changes(), (SELECT data_version FROM pragma_data_version),
    EXISTS (SELECT 1 FROM batch_items INDEXED BY batch_items_leased
            WHERE status = 'PROCESSING' AND lease_until < ?1)";

/// Of the ids in the JSON array `?1`, those still APPROVED in a PROCESSING batch.
const STILL_RUNNABLE: &str = "SELECT i.id FROM json_each(?1) j
    JOIN batch_items i ON i.id = j.value JOIN batches b ON b.id = i.batch_id
    WHERE i.status = 'APPROVED' AND b.status = 'PROCESSING'";

/// Read the stamp inside `tx`; also whether a lease expired before `now`.
pub(super) async fn stamp(
    tx: &mut Transaction<'static, Sqlite>,
    now: i64,
) -> Result<(Stamp, bool)> {
    let (changes, data_version, expired): (i64, i64, bool) =
        sqlx::query_as(STAMP).bind(now).fetch_one(&mut **tx).await?;
    Ok((
        Stamp {
            changes,
            data_version,
        },
        expired,
    ))
}

/// A chunk picked ahead, as the next transaction takes it.
#[derive(Debug)]
pub(super) enum Chunk {
    /// Executed already: the outcome of each item, and their events packed
    /// into outbox blocks (None once items were left out of the chunk).
    Executed(Vec<Completion>, Option<Vec<PackedBlock>>),
    /// Not executed yet: its orders read templates.
    Picked(Vec<ClaimedItem>),
}

impl Chunk {
    fn retain(&mut self, keep: impl Fn(i64) -> bool) {
        match self {
            Chunk::Executed(done, blocks) => {
                let before = done.len();
                done.retain(|c| keep(c.item.id));
                if done.len() != before {
                    *blocks = None;
                }
            }
            Chunk::Picked(items) => items.retain(|i| keep(i.id)),
        }
    }

    /// The ids of its items, in order.
    pub fn ids(&self) -> Vec<i64> {
        match self {
            Chunk::Executed(done, _) => done.iter().map(|c| c.item.id).collect(),
            Chunk::Picked(items) => items.iter().map(|i| i.id).collect(),
        }
    }

    /// Whether the chunk holds no item.
    pub fn is_empty(&self) -> bool {
        match self {
            Chunk::Executed(done, _) => done.is_empty(),
            Chunk::Picked(items) => items.is_empty(),
        }
    }
}

/// A chunk being picked ahead on a read connection, decoded and executed;
/// it becomes [`Ahead`] once the transaction that started it commits.
pub(super) struct Reading(JoinHandle<Result<Option<Chunk>>>);

impl Reading {
    /// Start picking up to `limit` fresh items, leaving out the ids in the
    /// JSON array `exclude` (the chunk being written). Call it inside the
    /// write transaction, so the read sees what that transaction found.
    pub fn start(
        read: SqlitePool,
        limit: usize,
        exclude: String,
        cipher: Cipher,
        execute: Arc<Executor>,
    ) -> Self {
        Self(tokio::spawn(async move {
            let text: String = sqlx::query_scalar(PICK_FRESH.as_str())
                .bind(limit as i64)
                .bind(exclude)
                .fetch_one(&read)
                .await?;
            if text == "[]" {
                return Ok(None);
            }
            let items = tokio::task::spawn_blocking(move || pick::items(&text, &cipher))
                .await
                .map_err(|e| StoreError::State(format!("decoding a chunk failed: {e}")))??;
            if items.iter().any(|i| i.operation.reads_templates()) {
                return Ok(Some(Chunk::Picked(items)));
            }
            let done = execute(items).await;
            let (done, blocks) = tokio::task::spawn_blocking(move || {
                let blocks = outbox::pack(&plan::item_events(&done));
                (done, blocks)
            })
            .await
            .map_err(|e| StoreError::State(format!("packing a chunk's events failed: {e}")))?;
            Ok(Some(Chunk::Executed(done, Some(blocks))))
        }))
    }

    /// The chunk as of `stamp`, read just before its transaction commits.
    pub fn stamped(self, stamp: Stamp) -> Ahead {
        Ahead {
            stamp,
            chunk: self.0,
        }
    }
}

/// A chunk picked ahead by a committed transaction.
pub(super) struct Ahead {
    stamp: Stamp,
    chunk: JoinHandle<Result<Option<Chunk>>>,
}

impl Ahead {
    /// The items of the chunk that can still run as picked, checked inside
    /// the write transaction `tx`; None when a lease expired meanwhile (the
    /// usual pick takes those items first) or when picking ahead failed (the
    /// usual pick reads the same items again, and reports what is wrong if
    /// it still is).
    pub async fn take(
        self,
        tx: &mut Transaction<'static, Sqlite>,
        now: i64,
    ) -> Result<Option<Chunk>> {
        let (stamp, expired) = stamp(tx, now).await?;
        if expired {
            self.chunk.abort();
            return Ok(None);
        }
        let mut chunk = match self.chunk.await {
            Ok(Ok(Some(chunk))) => chunk,
            Ok(Ok(None)) => return Ok(None),
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "picking a chunk ahead failed");
                return Ok(None);
            }
            Err(e) => {
                tracing::error!(error = %e, "picking a chunk ahead failed");
                return Ok(None);
            }
        };
        if stamp == self.stamp || chunk.is_empty() {
            return Ok(Some(chunk));
        }
        let ids = serde_json::to_string(&chunk.ids()).unwrap_or_default();
        let still: std::collections::HashSet<i64> = sqlx::query_scalar(STILL_RUNNABLE)
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();
        chunk.retain(|id| still.contains(&id));
        Ok(Some(chunk))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sqlite::SqliteStore;
    use crate::Store;

    /// The writer's stamp, read in a write transaction of its own.
    async fn stamp_now(store: &SqliteStore) -> Stamp {
        let mut tx = store.write.begin_with("BEGIN IMMEDIATE").await.unwrap();
        let (s, expired) = stamp(&mut tx, 0).await.unwrap();
        assert!(!expired);
        tx.commit().await.unwrap();
        s
    }

    /// What the pipeline relies on: the stamp stays put while nothing is
    /// written (a checkpoint included, or every chunk would be checked
    /// again), and moves with the writer's own writes and with another
    /// connection's commits.
    #[tokio::test]
    async fn the_stamp_moves_with_every_write_and_only_then() {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::testing::fresh_sqlite_url(dir.path());
        let (cipher, _) = Cipher::load(None, &dir.path().join("k")).unwrap();
        let store = SqliteStore::connect(&url, cipher.clone()).await.unwrap();
        let other = SqliteStore::connect(&url, cipher).await.unwrap();

        let first = stamp_now(&store).await;
        assert_eq!(stamp_now(&store).await, first, "reads change nothing");
        store.create_key("acme").await.unwrap();
        let own = stamp_now(&store).await;
        assert_ne!(own, first, "the writer's own write");
        other.create_key("globex").await.unwrap();
        let theirs = stamp_now(&store).await;
        assert_ne!(theirs, own, "another connection's commit");
        sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&other.write)
            .await
            .unwrap();
        assert_eq!(stamp_now(&store).await, theirs, "a checkpoint");
    }
}
