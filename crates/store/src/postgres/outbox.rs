//! The PostgreSQL outbox, one row per block of events (see
//! [`crate::plan::blocks`] and [`crate::outbox`]).
//!
//! Event numbers come from the one-row `outbox_counter`. Writing events is
//! the last write of a transaction: the counter's row lock is then held
//! until the commit, so concurrent transactions number their events in the
//! order they commit. A reader that has passed event `n` never sees a
//! smaller number appear later, which a sequence could not promise (its
//! values are taken at insert time, not at commit).

use std::sync::Arc;

use sqlx::{Postgres, Transaction};

use super::{db_err, PgStore};
use crate::outbox::{events_in, Block};
use crate::plan::blocks::{event_blocks, MAX_BLOCK_EVENTS};
use crate::plan::EventWrite;
use crate::{Event, Result};

/// Append `events` to the outbox, in blocks, numbered after every event
/// written before. Call it as the transaction's last write.
pub(crate) async fn write_events(
    tx: &mut Transaction<'_, Postgres>,
    events: &[EventWrite],
    now: i64,
) -> Result<()> {
    if events.is_empty() {
        return Ok(());
    }
    let blocks = event_blocks(events, MAX_BLOCK_EVENTS);
    let total = events.len() as i64;
    let last: i64 = sqlx::query_scalar("UPDATE outbox_counter SET last = last + $1 RETURNING last")
        .bind(total)
        .fetch_one(&mut **tx)
        .await?;
    let mut id = last - total;
    let mut ids = Vec::with_capacity(blocks.len());
    for b in &blocks {
        id += b.events.len() as i64;
        ids.push(id);
    }
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, type, created_at, count, events)
         SELECT v.id, v.tenant_id, v.type, $6, v.count, v.events
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::bigint[], $5::text[])
              AS v(id, tenant_id, type, count, events)",
    )
    .bind(ids)
    .bind(blocks.iter().map(|b| b.tenant_id).collect::<Vec<_>>())
    .bind(blocks.iter().map(|b| b.kind).collect::<Vec<_>>())
    .bind(
        blocks
            .iter()
            .map(|b| b.events.len() as i64)
            .collect::<Vec<_>>(),
    )
    .bind(blocks.iter().map(|b| b.text()).collect::<Vec<_>>())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err("event"))?;
    Ok(())
}

impl PgStore {
    /// Block `id`, from the cache or the database; `None` if the sweeper
    /// removed it since its id was read.
    pub(super) async fn block(&self, id: i64) -> Result<Option<Arc<Block>>> {
        let load = async {
            let row: Option<(String, i64, i64, String)> =
                sqlx::query_as("SELECT type, created_at, count, events FROM outbox WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
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
        let limit = limit.max(0);
        let heads: Vec<i64> = match kind {
            None => sqlx::query_scalar(
                "SELECT id FROM outbox WHERE tenant_id = $1 AND id > $2 ORDER BY id LIMIT $3",
            )
            .bind(tenant_id)
            .bind(after)
            .bind(limit),
            Some(kind) => sqlx::query_scalar(
                "SELECT id FROM outbox WHERE tenant_id = $1 AND type = $2 AND id > $3 ORDER BY id LIMIT $4",
            )
            .bind(tenant_id)
            .bind(kind)
            .bind(after)
            .bind(limit),
        }
        .fetch_all(&self.pool)
        .await?;
        events_in(heads, after, limit, |id| self.block(id)).await
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use serde_json::json;

    use super::super::test_store;
    use super::*;

    fn event(n: i64) -> EventWrite {
        EventWrite::new("t", "order.completed", json!({ "n": n }))
    }

    /// A transaction that writes events after another one did, while that
    /// one is still open, waits for its commit and numbers after it: the
    /// feed never shows a later number before an earlier one.
    #[tokio::test]
    async fn events_are_numbered_in_commit_order() {
        let store = test_store().await;
        let mut first = store.pool.begin().await.unwrap();
        write_events(&mut first, &[event(1), event(2)], 0)
            .await
            .unwrap();
        let pool = store.pool.clone();
        let second = tokio::spawn(async move {
            let mut tx = pool.begin().await.unwrap();
            write_events(&mut tx, &[event(3)], 0).await.unwrap();
            tx.commit().await.unwrap();
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(
            !second.is_finished(),
            "the second writer waits for the first"
        );
        assert!(store
            .read_events("t", None, 0, 10)
            .await
            .unwrap()
            .is_empty());
        first.commit().await.unwrap();
        second.await.unwrap();
        let got: Vec<(i64, i64)> = store
            .read_events("t", None, 0, 10)
            .await
            .unwrap()
            .iter()
            .map(|e| (e.seq, e.data["n"].as_i64().unwrap()))
            .collect();
        assert_eq!(got, [(1, 1), (2, 2), (3, 3)]);
    }

    #[tokio::test]
    async fn blocks_read_back_by_type_and_after_a_cursor() {
        let store = test_store().await;
        let mut tx = store.pool.begin().await.unwrap();
        let other = EventWrite::new("t", "sim.status_changed", json!({ "n": 9 }));
        write_events(&mut tx, &[event(1), other, event(2)], 0)
            .await
            .unwrap();
        tx.commit().await.unwrap();
        let seqs = |es: Vec<Event>| es.iter().map(|e| e.seq).collect::<Vec<_>>();
        // One block per type: order.completed holds 1-2, sim.status_changed 3.
        assert_eq!(
            seqs(store.read_events("t", None, 0, 10).await.unwrap()),
            [1, 2, 3]
        );
        assert_eq!(
            seqs(store.read_events("t", None, 1, 10).await.unwrap()),
            [2, 3]
        );
        let changed = store
            .read_events("t", Some("sim.status_changed"), 0, 10)
            .await
            .unwrap();
        assert_eq!(
            (changed[0].seq, changed[0].data["n"].as_i64()),
            (3, Some(9))
        );
        assert!(store
            .read_events("other", None, 0, 10)
            .await
            .unwrap()
            .is_empty());
    }
}
