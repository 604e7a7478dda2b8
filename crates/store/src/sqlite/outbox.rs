//! The SQLite outbox, one row per block of events (see [`crate::plan::blocks`]).
//!
//! A block's `id` is the sequence number of its last event, and its events
//! are numbered `id - count + 1 ..= id`. `AUTOINCREMENT` keeps the highest
//! id ever written in `sqlite_sequence`, and each write numbers its events
//! from there, so a number is never handed out twice, even once the sweeper
//! has emptied the table. Cursors are event numbers, as they were before
//! blocks: rows written before migration 0008 became blocks of one.
//!
//! Writing a chunk's two thousand events as two rows instead of two
//! thousand takes about half the b-tree work out of completing it.
//! Blocks never change once written, so readers keep the last few parsed
//! in a small cache: a feed read page by page, or a webhook delivered event
//! by event, reads each block from the database once.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use sqlx::{Row, Sqlite, Transaction};

use super::SqliteStore;
use crate::plan::blocks::{event_blocks, BlockLines, MAX_BLOCK_EVENTS};
use crate::plan::EventWrite;
use crate::{Event, Result, StoreError};

/// Append `events` to the outbox, in blocks, numbered after every event
/// written before.
pub(super) async fn write_events(
    tx: &mut Transaction<'_, Sqlite>,
    events: &[EventWrite],
    now: i64,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let mut last: i64 = sqlx::query_scalar(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
    )
    .fetch_one(&mut **tx)
    .await?;
    for block in event_blocks(events, MAX_BLOCK_EVENTS) {
        let count = block.events.len() as i64;
        last += count;
        sqlx::query(
            "INSERT INTO outbox (id, tenant_id, type, created_at, count, events)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(last)
        .bind(block.tenant_id)
        .bind(block.kind)
        .bind(now)
        .bind(count)
        .bind(block.text())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A block read back.
#[derive(Debug)]
pub(super) struct Block {
    id: i64,
    kind: String,
    created_at: i64,
    lines: BlockLines,
}

impl Block {
    /// Number of the block's first event.
    fn first(&self) -> i64 {
        self.id - self.lines.len() as i64 + 1
    }

    /// Where the first event after `cursor` sits in the block.
    fn index_after(&self, cursor: i64) -> usize {
        usize::try_from(cursor - self.first() + 1).unwrap_or(0)
    }

    /// Event `i` of the block.
    fn event(&self, i: usize) -> Result<Event> {
        let (id, data) = self.lines.get(i)?;
        Ok(Event {
            seq: self.first() + i as i64,
            id: id.to_owned(),
            kind: self.kind.clone(),
            created_at: self.created_at,
            data: serde_json::from_str(data).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        })
    }
}

/// The last few blocks read, most recent first.
#[derive(Debug, Default)]
pub(super) struct BlockCache(Mutex<VecDeque<Arc<Block>>>);

/// Blocks the cache keeps: a few hundred KiB each at most.
const CACHED_BLOCKS: usize = 8;

impl BlockCache {
    fn get(&self, id: i64) -> Option<Arc<Block>> {
        let mut blocks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let i = blocks.iter().position(|b| b.id == id)?;
        let block = blocks.remove(i)?;
        blocks.push_front(block.clone());
        Some(block)
    }

    fn put(&self, block: Arc<Block>) {
        let mut blocks = self.0.lock().unwrap_or_else(|e| e.into_inner());
        blocks.push_front(block);
        blocks.truncate(CACHED_BLOCKS);
    }
}

impl SqliteStore {
    /// Block `id`, from the cache or the database; `None` if the sweeper
    /// removed it since its id was read.
    async fn block(&self, id: i64) -> Result<Option<Arc<Block>>> {
        if let Some(b) = self.blocks.get(id) {
            return Ok(Some(b));
        }
        let Some(r) =
            sqlx::query("SELECT type, created_at, count, events FROM outbox WHERE id = ?1")
                .bind(id)
                .fetch_optional(&self.read)
                .await?
        else {
            return Ok(None);
        };
        let block = Arc::new(Block {
            id,
            kind: r.try_get("type")?,
            created_at: r.try_get("created_at")?,
            lines: BlockLines::parse(r.try_get("events")?, r.try_get("count")?)?,
        });
        self.blocks.put(block.clone());
        Ok(Some(block))
    }

    /// Up to `limit` events of a tenant after `after`, of type `kind` if
    /// given, in order.
    pub(super) async fn read_events(
        &self,
        tenant_id: &str,
        kind: Option<&str>,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        // Every block after the cursor holds at least one event after it, so
        // `limit` blocks are always enough. Their text is not read here.
        let heads: Vec<i64> = match kind {
            None => sqlx::query_scalar(
                "SELECT id FROM outbox WHERE tenant_id = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
            )
            .bind(tenant_id)
            .bind(after)
            .bind(limit),
            Some(kind) => sqlx::query_scalar(
                "SELECT id FROM outbox WHERE tenant_id = ?1 AND type = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
            )
            .bind(tenant_id)
            .bind(kind)
            .bind(after)
            .bind(limit),
        }
        .fetch_all(&self.read)
        .await?;
        let wanted = usize::try_from(limit).unwrap_or(0);
        let mut out = Vec::with_capacity(wanted.min(1024));
        for id in heads {
            let Some(block) = self.block(id).await? else {
                continue;
            };
            for i in block.index_after(after)..block.lines.len() {
                if out.len() == wanted {
                    return Ok(out);
                }
                out.push(block.event(i)?);
            }
        }
        Ok(out)
    }

    /// The event after `cursor` in block `id`: what a webhook delivers
    /// next; `None` if the block was swept meanwhile.
    pub(super) async fn event_after_in(&self, id: i64, cursor: i64) -> Result<Option<Event>> {
        match self.block(id).await? {
            Some(block) => block.event(block.index_after(cursor)).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: i64, count: usize) -> Block {
        let text: String = (0..count)
            .map(|i| format!("e{i}\t{{\"i\":{i}}}\n"))
            .collect();
        Block {
            id,
            kind: "k".into(),
            created_at: 5,
            lines: BlockLines::parse(text, count as i64).unwrap(),
        }
    }

    #[test]
    fn events_are_numbered_up_to_the_block_id() {
        let b = block(10, 3);
        assert_eq!(b.first(), 8);
        assert_eq!(b.index_after(0), 0);
        assert_eq!(b.index_after(7), 0);
        assert_eq!(b.index_after(8), 1);
        assert_eq!(b.index_after(9), 2);
        let e = b.event(2).unwrap();
        assert_eq!(
            (e.seq, e.id.as_str(), e.data["i"].as_i64()),
            (10, "e2", Some(2))
        );
        assert!(b.event(3).is_err());
    }

    #[test]
    fn the_cache_keeps_the_most_recent_blocks() {
        let cache = BlockCache::default();
        for id in 1..=CACHED_BLOCKS as i64 {
            cache.put(Arc::new(block(id, 1)));
        }
        assert!(cache.get(1).is_some(), "1 is now the most recent");
        cache.put(Arc::new(block(100, 1)));
        assert!(cache.get(2).is_none(), "the least recent went");
        assert!(cache.get(1).is_some());
        assert!(cache.get(100).is_some());
    }
}
