//! Reading the outbox back, for both backends.
//!
//! Both stores keep the outbox as blocks (see [`crate::plan::blocks`]): the
//! events of one tenant and type that one transaction wrote, in one row
//! whose `id` is the number of its last event. Its events are numbered
//! `id - count + 1 ..= id`, so cursors are event numbers whatever the
//! storage. Blocks never change once written, so readers keep the last few
//! parsed in a [`BlockCache`]: a feed read page by page, or a webhook fed
//! event by event, reads each block from the database once.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex};

use crate::plan::blocks::BlockLines;
use crate::{Event, Result, StoreError};

/// A block read back.
#[derive(Debug)]
pub(crate) struct Block {
    id: i64,
    kind: String,
    created_at: i64,
    lines: BlockLines,
}

impl Block {
    /// A stored block: its `id`, type, time, and `count` events in `text`.
    pub fn new(id: i64, kind: String, created_at: i64, text: String, count: i64) -> Result<Self> {
        Ok(Self {
            id,
            kind,
            created_at,
            lines: BlockLines::parse(text, count)?,
        })
    }

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

    /// The block's first event after `cursor` (the block must hold one).
    pub fn event_after(&self, cursor: i64) -> Result<Event> {
        self.event(self.index_after(cursor))
    }
}

/// The last few blocks read, most recent first.
#[derive(Debug, Default)]
pub(crate) struct BlockCache(Mutex<VecDeque<Arc<Block>>>);

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

    /// Block `id` from the cache, or from `load` (kept for next time);
    /// `None` if the sweeper removed it since its id was read.
    pub async fn get_or_load<F>(&self, id: i64, load: F) -> Result<Option<Arc<Block>>>
    where
        F: Future<Output = Result<Option<Block>>>,
    {
        if let Some(b) = self.get(id) {
            return Ok(Some(b));
        }
        let Some(block) = load.await? else {
            return Ok(None);
        };
        let block = Arc::new(block);
        self.put(block.clone());
        Ok(Some(block))
    }
}

/// Up to `limit` events after `after`, from the blocks `heads` (ids in
/// order, each holding at least one event after the cursor), each fetched
/// with `block`.
pub(crate) async fn events_in<F, Fut>(
    heads: Vec<i64>,
    after: i64,
    limit: i64,
    block: F,
) -> Result<Vec<Event>>
where
    F: Fn(i64) -> Fut,
    Fut: Future<Output = Result<Option<Arc<Block>>>>,
{
    let wanted = usize::try_from(limit).unwrap_or(0);
    let mut out = Vec::with_capacity(wanted.min(1024));
    for id in heads {
        let Some(block) = block(id).await? else {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn block(id: i64, count: usize) -> Block {
        let text: String = (0..count)
            .map(|i| format!("e{i}\t{{\"i\":{i}}}\n"))
            .collect();
        Block::new(id, "k".into(), 5, text, count as i64).unwrap()
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
        assert_eq!(b.event_after(8).unwrap().seq, 9);
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

    #[tokio::test]
    async fn a_page_starts_after_the_cursor_and_stops_at_the_limit() {
        let blocks = [Arc::new(block(3, 3)), Arc::new(block(5, 2))];
        let fetch = |id: i64| {
            let b = blocks.iter().find(|b| b.id == id).cloned();
            async move { Ok(b) }
        };
        let seqs = |es: Vec<Event>| es.iter().map(|e| e.seq).collect::<Vec<_>>();
        let page = events_in(vec![3, 5], 1, 10, fetch).await.unwrap();
        assert_eq!(seqs(page), [2, 3, 4, 5]);
        let page = events_in(vec![3, 5], 1, 3, fetch).await.unwrap();
        assert_eq!(seqs(page), [2, 3, 4]);
        // A block swept since its id was read is passed over.
        let page = events_in(vec![4, 5], 3, 10, fetch).await.unwrap();
        assert_eq!(seqs(page), [4, 5]);
    }

    #[tokio::test]
    async fn a_cached_block_is_not_loaded_again() {
        let cache = BlockCache::default();
        let first = cache
            .get_or_load(3, async { Ok(Some(block(3, 1))) })
            .await
            .unwrap();
        assert!(first.is_some());
        let again = cache
            .get_or_load(3, async { Err(StoreError::Corrupt("loaded twice".into())) })
            .await
            .unwrap();
        assert!(again.is_some());
        let gone = cache.get_or_load(9, async { Ok(None) }).await.unwrap();
        assert!(gone.is_none());
    }
}
