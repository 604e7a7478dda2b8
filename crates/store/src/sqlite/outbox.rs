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
//! Reading them back is [`crate::outbox`]'s.
//!
//! Blocks are stored packed: the block text compressed with LZ4 (block
//! format, size prepended), as a BLOB in the `events` column. The text of a
//! chunk's events is about 450 bytes an item and very repetitive; packed,
//! it is a fifth of that, and the single writer copies, pages and commits a
//! fifth of the bytes. Rows written before (TEXT) are read as they are:
//! `typeof(events)` tells the two apart.

use std::sync::Arc;

use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::outbox::{events_in, Block};
use crate::plan::blocks::{event_blocks, MAX_BLOCK_EVENTS};
use crate::plan::EventWrite;
use crate::{Event, Result, StoreError};

/// Largest block text a packed block may claim to hold (a damaged row must
/// not make the reader allocate gigabytes).
const MAX_UNPACKED: usize = 64 << 20;

/// An outbox block ready to insert: its owner, type, number of events and
/// packed text.
#[derive(Debug)]
pub(super) struct PackedBlock {
    tenant_id: String,
    kind: &'static str,
    count: i64,
    packed: Vec<u8>,
}

/// Group `events` into blocks (see [`event_blocks`]) and pack each one.
/// CPU work, done before the write lock where it can be.
pub(super) fn pack(events: &[EventWrite]) -> Vec<PackedBlock> {
    event_blocks(events, MAX_BLOCK_EVENTS)
        .into_iter()
        .map(|b| PackedBlock {
            tenant_id: b.tenant_id.to_owned(),
            kind: b.kind,
            count: b.events.len() as i64,
            packed: lz4_flex::compress_prepend_size(b.text().as_bytes()),
        })
        .collect()
}

/// The text of a stored block: `bytes` as they are, or unpacked when the
/// row holds a packed block (a BLOB).
pub(super) fn unpack(packed: bool, bytes: Vec<u8>) -> Result<String> {
    let corrupt = |what: &str| StoreError::Corrupt(format!("outbox block: {what}"));
    let text = if packed {
        let claimed = bytes
            .get(..4)
            .map(|n| u32::from_le_bytes([n[0], n[1], n[2], n[3]]) as usize)
            .ok_or_else(|| corrupt("packed block too short"))?;
        if claimed > MAX_UNPACKED {
            return Err(corrupt("packed block claims more than 64 MiB"));
        }
        let text =
            lz4_flex::decompress_size_prepended(&bytes).map_err(|e| corrupt(&e.to_string()))?;
        if text.len() != claimed {
            return Err(corrupt("packed block shorter than it claims"));
        }
        text
    } else {
        bytes
    };
    String::from_utf8(text).map_err(|_| corrupt("not UTF-8"))
}

/// Append `events` to the outbox, in packed blocks, numbered after every
/// event written before.
pub(super) async fn write_events(
    tx: &mut Transaction<'_, Sqlite>,
    events: &[EventWrite],
    now: i64,
) -> Result<()> {
    write_blocks(tx, &pack(events), now).await
}

/// Append `blocks` to the outbox in order, numbered after every event
/// written before.
pub(super) async fn write_blocks(
    tx: &mut Transaction<'_, Sqlite>,
    blocks: &[PackedBlock],
    now: i64,
) -> Result<()> {
    if blocks.is_empty() {
        return Ok(());
    }
    let mut last: i64 = sqlx::query_scalar(
        "SELECT coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'outbox'), 0)",
    )
    .fetch_one(&mut **tx)
    .await?;
    for block in blocks {
        last += block.count;
        sqlx::query(
            "INSERT INTO outbox (id, tenant_id, type, created_at, count, events)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )
        .bind(last)
        .bind(block.tenant_id.as_str())
        .bind(block.kind)
        .bind(now)
        .bind(block.count)
        .bind(block.packed.as_slice())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

impl SqliteStore {
    /// Block `id`, from the cache or the database; `None` if the sweeper
    /// removed it since its id was read.
    async fn block(&self, id: i64) -> Result<Option<Arc<Block>>> {
        let load = async {
            let row: Option<(String, i64, i64, bool, Vec<u8>)> = sqlx::query_as(
                "SELECT type, created_at, count, typeof(events) = 'blob', CAST(events AS BLOB)
                 FROM outbox WHERE id = ?1",
            )
            .bind(id)
            .fetch_optional(&self.read)
            .await?;
            row.map(|(kind, at, count, packed, bytes)| {
                Block::new(id, kind, at, unpack(packed, bytes)?, count)
            })
            .transpose()
        };
        self.blocks.get_or_load(id, load).await
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
        events_in(heads, after, limit, |id| self.block(id)).await
    }

    /// The event after `cursor` in block `id`: what a webhook delivers
    /// next; `None` if the block was swept meanwhile.
    pub(super) async fn event_after_in(&self, id: i64, cursor: i64) -> Result<Option<Event>> {
        match self.block(id).await? {
            Some(block) => block.event_after(cursor).map(Some),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Store;

    fn events(tenant: &str, n: usize) -> Vec<EventWrite> {
        (0..n)
            .map(|i| {
                let data = serde_json::json!({
                    "batch_id": "01a24d4b-7462-7082-ab26-fc17466bc864",
                    "iccid": format!("89882470000{i:08}"),
                    "operation": "activate",
                    "order_id": i,
                    "status": "COMPLETED",
                });
                EventWrite::of(tenant, "order.completed", &data)
            })
            .collect()
    }

    #[test]
    fn a_packed_block_unpacks_to_its_text_and_is_smaller() {
        let events = events("t", 500);
        let text = event_blocks(&events, MAX_BLOCK_EVENTS)[0].text();
        let blocks = pack(&events);
        assert_eq!(blocks.len(), 1);
        assert_eq!(blocks[0].count, 500);
        assert!(blocks[0].packed.len() * 2 < text.len());
        assert_eq!(unpack(true, blocks[0].packed.clone()).unwrap(), text);
        // A TEXT row (written before blocks were packed) is read as it is.
        assert_eq!(unpack(false, text.clone().into_bytes()).unwrap(), text);
    }

    #[test]
    fn a_damaged_packed_block_is_an_error_not_a_panic_or_a_huge_allocation() {
        let mut packed = pack(&events("t", 10)).remove(0).packed;
        for bad in [vec![], vec![1, 0], u32::MAX.to_le_bytes().to_vec()] {
            let r = unpack(true, bad.clone());
            assert!(matches!(r, Err(StoreError::Corrupt(_))), "{bad:?}: {r:?}");
        }
        for cut in 4..packed.len() {
            assert!(
                unpack(true, packed[..cut].to_vec()).is_err(),
                "cut at {cut}"
            );
        }
        packed[4..].fill(0xff);
        assert!(unpack(true, packed).is_err());
        assert!(unpack(false, vec![0xff, 0xfe]).is_err());
    }

    /// Packed blocks and a TEXT block written the old way read back as one
    /// numbered sequence.
    #[tokio::test]
    async fn packed_and_text_blocks_read_back_in_order() {
        let (_dir, store) = super::super::SqliteStore::fresh_for_test().await;
        let written = events("t", 3);
        let mut tx = store.write.begin().await.unwrap();
        write_events(&mut tx, &written[..2], 1).await.unwrap();
        let old = event_blocks(&written[2..], MAX_BLOCK_EVENTS)[0].text();
        sqlx::query(
            "INSERT INTO outbox (id, tenant_id, type, created_at, count, events)
             VALUES (3, 't', 'order.completed', 1, 1, ?1)",
        )
        .bind(old)
        .execute(&mut *tx)
        .await
        .unwrap();
        tx.commit().await.unwrap();
        let kinds: Vec<String> =
            sqlx::query_scalar("SELECT typeof(events) FROM outbox ORDER BY id")
                .fetch_all(&store.write)
                .await
                .unwrap();
        assert_eq!(kinds, ["blob", "text"]);
        let read = store.events_after("t", 0, 10).await.unwrap();
        let ids: Vec<&str> = read.iter().map(|e| e.id.as_str()).collect();
        let want: Vec<&str> = written.iter().map(|e| e.event_id.as_str()).collect();
        assert_eq!(ids, want);
        assert_eq!(read.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
        assert_eq!(read[1].data["order_id"], 1);
    }
}
