//! Chunks picked ahead: the SQLite engine's two-stage pipeline.
//!
//! SQLite has one writer, and a chunk used to run strictly in turn: pick
//! (writer), decode and execute (tokio), write and commit (writer). Now the
//! transaction that writes chunk k first picks chunk k+1, and chunk k+1 is
//! decoded on the blocking pool while the writer writes and commits chunk k.
//! (Picking on a read connection beside the writer was tried as well: on two
//! cores the reader, the writer and the checkpointer then compete for CPU,
//! and it came out 5-15% slower.)
//!
//! The pick leaves out chunk k's items by id. Chunk k's items are still
//! APPROVED while k+1 is picked, so they hold back the later items of their
//! SIMs as usual: chunk k+1 never holds an item whose SIM chunk k changes,
//! and the SIM it read for each item is the SIM the item will run against.
//!
//! A chunk picked ahead is only read, never marked, so it costs nothing to
//! drop, and a crash loses nothing. The next transaction checks it before it
//! runs: when nothing was written since chunk k committed (the [`Stamp`] is
//! the same), it runs as picked. Otherwise (an upload, a cancel, another
//! process) only its items that are still APPROVED in a PROCESSING batch
//! run. That check is enough because, besides the engine's own chunks, no
//! write changes a SIM or whether a profile exists, and an APPROVED item can
//! never fall behind a newer one of its SIM (ids grow).

use sqlx::{Sqlite, Transaction};
use tokio::task::JoinHandle;

use super::pick;
use crate::crypto::Cipher;
use crate::{ClaimedItem, Result};

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

/// A chunk picked ahead, being decoded; it becomes [`Ahead`] once the
/// transaction that picked it has written its own chunk.
pub(super) struct Decoding(JoinHandle<Result<Vec<ClaimedItem>>>);

impl Decoding {
    /// Decode `text` (an aggregated pick, see [`pick::aggregated`]) on the
    /// blocking pool.
    pub fn decode(text: String, cipher: Cipher) -> Self {
        Self(tokio::task::spawn_blocking(move || {
            pick::items(&text, &cipher)
        }))
    }

    /// The chunk as of `stamp`, read just before its transaction commits.
    pub fn stamped(self, stamp: Stamp) -> Ahead {
        Ahead {
            stamp,
            items: self.0,
        }
    }
}

/// A chunk picked ahead by a committed transaction.
pub(super) struct Ahead {
    stamp: Stamp,
    items: JoinHandle<Result<Vec<ClaimedItem>>>,
}

impl Ahead {
    /// The items of the chunk that can still run as picked, checked inside
    /// the write transaction `tx`; empty when a lease expired meanwhile
    /// (the usual pick takes those items first).
    pub async fn take(
        self,
        tx: &mut Transaction<'static, Sqlite>,
        now: i64,
    ) -> Result<Vec<ClaimedItem>> {
        let (stamp, expired) = stamp(tx, now).await?;
        if expired {
            self.items.abort();
            return Ok(Vec::new());
        }
        let mut items = match self.items.await {
            Ok(Ok(items)) => items,
            // The usual pick reads the same items again, and reports what
            // is wrong if it still is.
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "picking a chunk ahead failed");
                return Ok(Vec::new());
            }
            Err(e) => {
                tracing::error!(error = %e, "picking a chunk ahead failed");
                return Ok(Vec::new());
            }
        };
        if stamp == self.stamp || items.is_empty() {
            return Ok(items);
        }
        let ids = serde_json::to_string(&items.iter().map(|i| i.id).collect::<Vec<_>>())
            .unwrap_or_default();
        let still: std::collections::HashSet<i64> = sqlx::query_scalar(STILL_RUNNABLE)
            .bind(ids)
            .fetch_all(&mut **tx)
            .await?
            .into_iter()
            .collect();
        items.retain(|i| still.contains(&i.id));
        Ok(items)
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
