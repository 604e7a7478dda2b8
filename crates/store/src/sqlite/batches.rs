//! Batch use cases on SQLite: create, append, seal, list, cancel, retry, retention.

use simbatch_core::ItemStatus;
use sqlx::{QueryBuilder, Sqlite};

use super::outbox::write_events;
use super::values::{self, Shape};
use super::{conflict, rows, SqliteStore};
use crate::plan;
use crate::*;

/// Rejected items, every column bound per row (they are few).
const INSERT_REJECTED: &str = "INSERT INTO batch_items (batch_id, tenant_id, seq, iccid, operation,
    status, params, secret_enc, error_field, error_code, error_reason, updated_at)";

/// The rejected item columns, in the order `append_items` binds them.
const REJECTED_COLS: [&str; 12] = [
    "batch_id",
    "tenant_id",
    "seq",
    "iccid",
    "operation",
    "status",
    "params",
    "secret_enc",
    "error_field",
    "error_code",
    "error_reason",
    "updated_at",
];

/// Approved items from the rows CTE `v`: what all of them share (batch,
/// tenant, status, time) is written once per statement, not bound per row.
/// The time and the batch's rowid are bound after the rows. SQLite scans a
/// `VALUES` list in order, so ids follow the items' order, which per-SIM
/// ordering relies on (`run_chunk_keeps_sim_order_across_chunks` checks it).
const INSERT_APPROVED: &str = "INSERT INTO batch_items (batch_id, tenant_id, seq, iccid, operation,
    status, params, secret_enc, updated_at)
SELECT b.id, b.tenant_id, v.seq, v.iccid, v.operation, 'APPROVED', v.params, v.secret_enc, ?
FROM v, batches b WHERE b.rowid = ?";

/// The approved item columns of `v`, in the order `append_items` binds them.
const APPROVED_COLS: [&str; 5] = ["seq", "iccid", "operation", "params", "secret_enc"];

impl SqliteStore {
    pub(super) async fn create_batch_impl(&self, new: &NewBatch) -> Result<BatchRecord> {
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!(
            "INSERT INTO batches (id, tenant_id, operation, mode, status, source, external_ref, parent_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'INITIALISING', ?5, ?6, ?7, ?8, ?8) RETURNING {}",
            rows::BATCH_COLS
        );
        let row = sqlx::query(&sql)
            .bind(&id)
            .bind(&new.tenant_id)
            .bind(new.operation.map(|o| o.as_str()))
            .bind(new.mode.as_str())
            .bind(&new.source)
            .bind(&new.external_ref)
            .bind(&new.parent_id)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(conflict)?;
        tx.commit().await?;
        rows::batch(&row)
    }

    pub(super) async fn append_items_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
        items: &[NewItem],
    ) -> Result<()> {
        let now = now_ms();
        let mut phases = crate::phases::Phases::start();
        // Params and sealed secrets as the text the columns hold, made before the write lock.
        let texts: Vec<(String, Option<String>)> = items
            .iter()
            .map(|it| {
                let params = serde_json::to_string(&it.params).unwrap_or_else(|_| "{}".into());
                let secret = (!it.secret.is_empty()).then(|| {
                    let plain = serde_json::to_vec(&it.secret).unwrap_or_default();
                    self.cipher.seal("item", &plain)
                });
                (params, secret)
            })
            .collect();
        let (approved_rows, rejected_rows): (Vec<_>, Vec<_>) = items
            .iter()
            .zip(&texts)
            .partition(|(it, _)| it.rejection.is_none());
        let (approved, rejected) = (approved_rows.len() as i64, rejected_rows.len() as i64);
        phases.mark("prep");
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        phases.mark("lock");
        let batch: Option<(i64, String)> =
            sqlx::query_as("SELECT rowid, status FROM batches WHERE tenant_id = ?1 AND id = ?2")
                .bind(tenant_id)
                .bind(batch_id)
                .fetch_optional(&mut *tx)
                .await?;
        let rowid = match batch {
            Some((rowid, s)) if s == "INITIALISING" => rowid,
            Some((_, s)) => {
                return Err(StoreError::State(format!(
                    "batch is {s}; items can only be added while INITIALISING"
                )))
            }
            None => {
                return Err(StoreError::State(format!(
                    "batch {batch_id} does not exist"
                )))
            }
        };
        values::write(
            &mut tx,
            Shape::Cte,
            ("", &APPROVED_COLS, INSERT_APPROVED),
            &approved_rows,
            &[now, rowid],
            |b, (it, (params, secret))| {
                b.push_bind(it.seq)
                    .push_bind(it.iccid.as_str())
                    .push_bind(it.operation.map(|o| o.as_str()))
                    .push_bind(params.as_str())
                    .push_bind(secret.as_deref());
            },
        )
        .await?;
        values::write(
            &mut tx,
            Shape::Insert,
            (INSERT_REJECTED, &REJECTED_COLS, ""),
            &rejected_rows,
            &[],
            |b, (it, (params, secret))| {
                let r = it.rejection.as_ref();
                b.push_bind(batch_id)
                    .push_bind(tenant_id)
                    .push_bind(it.seq)
                    .push_bind(it.iccid.as_str())
                    .push_bind(it.operation.map(|o| o.as_str()))
                    .push_bind(ItemStatus::Rejected.as_str())
                    .push_bind(params.as_str())
                    .push_bind(secret.as_deref())
                    .push_bind(r.and_then(|r| r.field.as_deref()))
                    .push_bind(r.map(|r| r.code.as_str()))
                    .push_bind(r.map(|r| r.reason.as_str()))
                    .push_bind(now);
            },
        )
        .await?;
        sqlx::query(
            "UPDATE batches SET total = total + ?1, approved = approved + ?2, rejected = rejected + ?3, updated_at = ?4
             WHERE id = ?5",
        )
        .bind(items.len() as i64)
        .bind(approved)
        .bind(rejected)
        .bind(now)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
        phases.mark("write");
        tx.commit().await?;
        self.wake_checkpointer();
        phases.mark("commit");
        phases.log("sqlite append", items.len());
        Ok(())
    }

    pub(super) async fn seal_batch_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
    ) -> Result<BatchRecord> {
        let now = now_ms();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!(
            "UPDATE batches SET
                status = CASE WHEN approved > 0 THEN 'PROCESSING'
                              WHEN rejected = 0 AND failed = 0 AND canceled = 0 THEN 'COMPLETED'
                              ELSE 'PARTIALLY_COMPLETED' END,
                completed_at = CASE WHEN approved > 0 THEN NULL ELSE ?1 END,
                updated_at = ?1
             WHERE tenant_id = ?2 AND id = ?3 AND status = 'INITIALISING' RETURNING {}",
            rows::BATCH_COLS
        );
        let sealed = sqlx::query(&sql)
            .bind(now)
            .bind(tenant_id)
            .bind(batch_id)
            .fetch_optional(&mut *tx)
            .await?;
        let batch = match sealed {
            Some(row) => {
                let b = rows::batch(&row)?;
                if let Some(ev) = plan::batch_event(&b) {
                    write_events(&mut tx, &[ev], now).await?;
                }
                b
            }
            None => {
                let sql = format!(
                    "SELECT {} FROM batches WHERE tenant_id = ?1 AND id = ?2",
                    rows::BATCH_COLS
                );
                let row = sqlx::query(&sql)
                    .bind(tenant_id)
                    .bind(batch_id)
                    .fetch_optional(&mut *tx)
                    .await?;
                let row = row
                    .ok_or_else(|| StoreError::State(format!("batch {batch_id} does not exist")))?;
                rows::batch(&row)?
            }
        };
        tx.commit().await?;
        Ok(batch)
    }

    pub(super) async fn list_batches_impl(
        &self,
        tenant_id: &str,
        f: &BatchFilter,
    ) -> Result<Vec<BatchRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {} FROM batches WHERE tenant_id = ",
            rows::BATCH_COLS
        ));
        q.push_bind(tenant_id);
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(o) = f.operation {
            q.push(" AND operation = ").push_bind(o.as_str());
        }
        if let Some(t) = f.created_after {
            q.push(" AND created_at >= ").push_bind(t);
        }
        if let Some(t) = f.created_before {
            q.push(" AND created_at < ").push_bind(t);
        }
        if let Some(id) = &f.before_id {
            q.push(" AND id < ").push_bind(id.clone());
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(f.limit.max(1));
        q.build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(rows::batch)
            .collect()
    }

    pub(super) async fn list_items_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
        f: &ItemFilter,
    ) -> Result<Vec<ItemRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {} FROM batch_items WHERE batch_id = ",
            rows::ITEM_COLS
        ));
        q.push_bind(batch_id)
            .push(" AND tenant_id = ")
            .push_bind(tenant_id);
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        q.push(" AND seq > ").push_bind(f.after_seq.unwrap_or(-1));
        q.push(" ORDER BY seq LIMIT ").push_bind(f.limit.max(1));
        q.build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(rows::item)
            .collect()
    }

    pub(super) async fn get_item_impl(
        &self,
        tenant_id: &str,
        item_id: i64,
    ) -> Result<Option<ItemRecord>> {
        let sql = format!(
            "SELECT {} FROM batch_items WHERE id = ? AND tenant_id = ?",
            rows::ITEM_COLS
        );
        sqlx::query(&sql)
            .bind(item_id)
            .bind(tenant_id)
            .fetch_optional(&self.read)
            .await?
            .as_ref()
            .map(rows::item)
            .transpose()
    }

    pub(super) async fn cancel_batch_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
    ) -> Result<Option<BatchRecord>> {
        let now = now_ms();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!(
            "SELECT {} FROM batches WHERE tenant_id = ?1 AND id = ?2",
            rows::BATCH_COLS
        );
        let Some(row) = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(batch_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let b = rows::batch(&row)?;
        if b.status.is_terminal() {
            return Err(StoreError::State(format!(
                "batch is already {}",
                b.status.as_str()
            )));
        }
        let n = sqlx::query(
            "UPDATE batch_items SET status = 'CANCELED', error_code = ?1, error_reason = ?2, updated_at = ?3
             WHERE batch_id = ?4 AND status = 'APPROVED'",
        )
        .bind(plan::CANCELLED_CODE)
        .bind(plan::CANCELLED_REASON)
        .bind(now)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        let sql = format!(
            "UPDATE batches SET status = 'CANCELLED', approved = approved - ?1, canceled = canceled + ?1,
                    completed_at = ?2, updated_at = ?2 WHERE id = ?3 RETURNING {}",
            rows::BATCH_COLS
        );
        let b = rows::batch(
            &sqlx::query(&sql)
                .bind(n)
                .bind(now)
                .bind(batch_id)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        if let Some(ev) = plan::batch_event(&b) {
            write_events(&mut tx, &[ev], now).await?;
        }
        tx.commit().await?;
        Ok(Some(b))
    }

    pub(super) async fn retry_batch_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
    ) -> Result<Option<BatchRecord>> {
        let now = now_ms();
        let id = uuid::Uuid::now_v7().to_string();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let sql = format!(
            "SELECT {} FROM batches WHERE tenant_id = ?1 AND id = ?2",
            rows::BATCH_COLS
        );
        let Some(row) = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(batch_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            return Ok(None);
        };
        let parent = rows::batch(&row)?;
        if parent.counts.failed == 0 {
            return Err(StoreError::State(
                "batch has no failed items to retry".into(),
            ));
        }
        sqlx::query(
            "INSERT INTO batches (id, tenant_id, operation, mode, status, source, parent_id, created_at, updated_at)
             VALUES (?1, ?2, ?3, ?4, 'INITIALISING', ?5, ?6, ?7, ?7)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(parent.operation.map(|o| o.as_str()))
        .bind(parent.mode.as_str())
        .bind(&parent.source)
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(
            "INSERT INTO batch_items (batch_id, tenant_id, seq, iccid, operation, status, params, secret_enc, updated_at)
             SELECT ?1, tenant_id, row_number() OVER (ORDER BY seq) - 1, iccid, operation, 'APPROVED', params, secret_enc, ?2
             FROM batch_items WHERE batch_id = ?3 AND status = 'FAILED' ORDER BY seq",
        )
        .bind(&id)
        .bind(now)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        let sql = format!(
            "UPDATE batches SET status = 'PROCESSING', total = ?1, approved = ?1 WHERE id = ?2 RETURNING {}",
            rows::BATCH_COLS
        );
        let b = rows::batch(
            &sqlx::query(&sql)
                .bind(n)
                .bind(&id)
                .fetch_one(&mut *tx)
                .await?,
        )?;
        tx.commit().await?;
        Ok(Some(b))
    }

    pub(super) async fn sweep_impl(&self, before_ms: i64, limit: i64) -> Result<u64> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let items = sqlx::query(
            "DELETE FROM batch_items WHERE id IN (
                SELECT i.id FROM batches b JOIN batch_items i ON i.batch_id = b.id
                WHERE b.created_at < ?1 AND b.status IN ('COMPLETED', 'PARTIALLY_COMPLETED', 'CANCELLED')
                LIMIT ?2)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let batches = sqlx::query(
            "DELETE FROM batches WHERE id IN (
                SELECT b.id FROM batches b
                WHERE b.created_at < ?1 AND b.status IN ('COMPLETED', 'PARTIALLY_COMPLETED', 'CANCELLED')
                  AND NOT EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = b.id)
                LIMIT ?2)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let events = sqlx::query("DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created_at < ?1 ORDER BY id LIMIT ?2)")
            .bind(before_ms)
            .bind(limit)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(items + batches + events)
    }
}
