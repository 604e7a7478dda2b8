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

use std::sync::Arc;

use sqlx::{Sqlite, Transaction};

use super::SqliteStore;
use crate::outbox::{events_in, Block};
use crate::plan::blocks::{event_blocks, MAX_BLOCK_EVENTS};
use crate::plan::EventWrite;
use crate::{Event, Result};

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

impl SqliteStore {
    /// Block `id`, from the cache or the database; `None` if the sweeper
    /// removed it since its id was read.
    async fn block(&self, id: i64) -> Result<Option<Arc<Block>>> {
        let load = async {
            let row: Option<(String, i64, i64, String)> =
                sqlx::query_as("SELECT type, created_at, count, events FROM outbox WHERE id = ?1")
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?;
            row.map(|(kind, at, count, text)| Block::new(id, kind, at, text, count))
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
