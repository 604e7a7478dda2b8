//! Batches: creation, appending items, sealing, reads, cancel and retry.

use sqlx::{Postgres, Transaction};

use super::copy::CsvRows;
use super::rows::{self, BATCH_COLS, ITEM_COLS};
use super::{db_err, page, write_events, PgStore};
use crate::model::*;
use crate::plan::{self, batch_event};
use crate::{Result, StoreError};
use simbatch_core::BatchStatus;

/// Appends items; the columns in the order `append_items` writes them.
const COPY_ITEMS: &str =
    "COPY batch_items (batch_id, tenant_id, seq, iccid, operation, status, params,
    secret_enc, error_field, error_code, error_reason, updated_at) FROM STDIN (FORMAT csv)";

/// Lock a tenant's batch for the rest of `tx`.
pub(super) async fn lock_batch(
    tx: &mut Transaction<'_, Postgres>,
    tenant_id: &str,
    batch_id: &str,
) -> Result<Option<BatchRecord>> {
    let row = sqlx::query(&format!(
        "SELECT {BATCH_COLS} FROM batches WHERE id = $1 AND tenant_id = $2 FOR UPDATE"
    ))
    .bind(batch_id)
    .bind(tenant_id)
    .fetch_optional(&mut **tx)
    .await?;
    row.as_ref().map(rows::batch).transpose()
}

impl PgStore {
    /// See [`crate::Store::create_batch`].
    pub(super) async fn create_batch_impl(&self, new: &NewBatch) -> Result<BatchRecord> {
        let now = now_ms();
        let row = sqlx::query(&format!(
            "INSERT INTO batches (id, tenant_id, operation, mode, status, source, external_ref, parent_id,
                                  created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'INITIALISING', $5, $6, $7, $8, $8) RETURNING {BATCH_COLS}"
        ))
        .bind(uuid::Uuid::now_v7().to_string())
        .bind(&new.tenant_id)
        .bind(new.operation.map(|o| o.as_str()))
        .bind(new.mode.as_str())
        .bind(&new.source)
        .bind(&new.external_ref)
        .bind(&new.parent_id)
        .bind(now)
        .fetch_one(&self.pool)
        .await
        .map_err(db_err("a batch with this reference"))?;
        rows::batch(&row)
    }

    /// See [`crate::Store::append_items`].
    pub(super) async fn append_items_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
        items: &[NewItem],
    ) -> Result<()> {
        let mut phases = crate::phases::Phases::start();
        let n = items.len();
        let now = now_ms();
        let mut approved = 0i64;
        let mut rows = CsvRows::with_capacity(n * 256);
        for it in items {
            // Serialised from the borrowed maps, as on SQLite: no copy per item.
            let params = serde_json::to_string(&it.params).unwrap_or_else(|_| "{}".into());
            let secret = (!it.secret.is_empty()).then(|| {
                let plain = serde_json::to_vec(&it.secret).unwrap_or_default();
                self.cipher.seal("item", &plain)
            });
            let (status, field, code, reason) = match &it.rejection {
                Some(r) => (
                    "REJECTED",
                    r.field.as_deref(),
                    Some(r.code.as_str()),
                    Some(r.reason.as_str()),
                ),
                None => {
                    approved += 1;
                    ("APPROVED", None, None, None)
                }
            };
            rows.text(Some(batch_id))
                .text(Some(tenant_id))
                .int(it.seq)
                .text(Some(&it.iccid))
                .text(it.operation.map(|o| o.as_str()))
                .text(Some(status))
                .text(Some(&params))
                .text(secret.as_deref())
                .text(field)
                .text(code)
                .text(reason)
                .int(now);
            rows.end_row();
        }
        phases.mark("prep");
        let mut tx = self.pool.begin().await?;
        let batch = lock_batch(&mut tx, tenant_id, batch_id)
            .await?
            .ok_or_else(|| StoreError::State(format!("batch {batch_id} does not exist")))?;
        phases.mark("lock");
        if batch.status != BatchStatus::Initialising {
            return Err(StoreError::State(format!(
                "batch is {}; items can only be added while INITIALISING",
                batch.status.as_str()
            )));
        }
        if items.is_empty() {
            return Ok(());
        }
        // Rows are numbered in the order they are sent: ids follow seq.
        let mut copy = tx.copy_in_raw(COPY_ITEMS).await?;
        copy.send(rows.into_bytes()).await?;
        copy.finish()
            .await
            .map_err(db_err("an item with this seq"))?;
        phases.mark("insert");
        self.growth.record(n);
        let n = n as i64;
        sqlx::query(
            "UPDATE batches SET total = total + $2, approved = approved + $3, rejected = rejected + $4,
                                updated_at = $5 WHERE id = $1",
        )
        .bind(batch_id)
        .bind(n)
        .bind(approved)
        .bind(n - approved)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        phases.mark("update");
        tx.commit().await?;
        phases.mark("commit");
        phases.log("postgres append", items.len());
        Ok(())
    }

    /// See [`crate::Store::seal_batch`].
    pub(super) async fn seal_batch_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
    ) -> Result<BatchRecord> {
        let mut tx = self.pool.begin().await?;
        let batch = lock_batch(&mut tx, tenant_id, batch_id)
            .await?
            .ok_or_else(|| StoreError::State(format!("batch {batch_id} does not exist")))?;
        if batch.status != BatchStatus::Initialising {
            return Ok(batch);
        }
        let now = now_ms();
        let (status, completed_at) = if batch.counts.approved > 0 {
            (BatchStatus::Processing, None)
        } else {
            (batch.counts.final_status(), Some(now))
        };
        let row = sqlx::query(&format!(
            "UPDATE batches SET status = $2, completed_at = $3, updated_at = $4 WHERE id = $1 RETURNING {BATCH_COLS}"
        ))
        .bind(batch_id)
        .bind(status.as_str())
        .bind(completed_at)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let sealed = rows::batch(&row)?;
        if let Some(e) = batch_event(&sealed) {
            write_events(&mut tx, &[e], now).await?;
        }
        tx.commit().await?;
        Ok(sealed)
    }

    /// See [`crate::Store::get_batch`].
    pub(super) async fn get_batch_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
    ) -> Result<Option<BatchRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {BATCH_COLS} FROM batches WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(batch_id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::batch).transpose()
    }

    /// See [`crate::Store::batch_by_ref`].
    pub(super) async fn batch_by_ref_impl(
        &self,
        tenant_id: &str,
        source: &str,
        external_ref: &str,
    ) -> Result<Option<BatchRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {BATCH_COLS} FROM batches WHERE tenant_id = $1 AND source = $2 AND external_ref = $3"
        ))
        .bind(tenant_id)
        .bind(source)
        .bind(external_ref)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::batch).transpose()
    }

    /// See [`crate::Store::list_batches`].
    pub(super) async fn list_batches_impl(
        &self,
        tenant_id: &str,
        f: &BatchFilter,
    ) -> Result<Vec<BatchRecord>> {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(format!(
            "SELECT {BATCH_COLS} FROM batches WHERE tenant_id = "
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
            q.push(" AND id < ").push_bind(id);
        }
        q.push(" ORDER BY id DESC LIMIT ").push_bind(page(f.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(rows::batch).collect()
    }

    /// See [`crate::Store::list_items`].
    pub(super) async fn list_items_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
        f: &ItemFilter,
    ) -> Result<Vec<ItemRecord>> {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(format!(
            "SELECT {ITEM_COLS} FROM batch_items WHERE batch_id = "
        ));
        q.push_bind(batch_id)
            .push(" AND tenant_id = ")
            .push_bind(tenant_id);
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(after) = f.after_seq {
            q.push(" AND seq > ").push_bind(after);
        }
        q.push(" ORDER BY seq LIMIT ").push_bind(page(f.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(rows::item).collect()
    }

    /// See [`crate::Store::get_item`].
    pub(super) async fn get_item_impl(
        &self,
        tenant_id: &str,
        item_id: i64,
    ) -> Result<Option<ItemRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {ITEM_COLS} FROM batch_items WHERE id = $1 AND tenant_id = $2"
        ))
        .bind(item_id)
        .bind(tenant_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::item).transpose()
    }

    /// See [`crate::Store::cancel_batch`].
    pub(super) async fn cancel_batch_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
    ) -> Result<Option<BatchRecord>> {
        let mut tx = self.pool.begin().await?;
        let Some(batch) = lock_batch(&mut tx, tenant_id, batch_id).await? else {
            return Ok(None);
        };
        if batch.status.is_terminal() {
            return Err(StoreError::State(format!(
                "batch is already {}",
                batch.status.as_str()
            )));
        }
        let now = now_ms();
        // Items a concurrent claim holds are left to it: they run and finish
        // later, moving only the counters of this (then CANCELLED) batch.
        let canceled = sqlx::query(
            "UPDATE batch_items SET status = 'CANCELED', error_code = $3, error_reason = $4, updated_at = $2
             WHERE id IN (SELECT id FROM batch_items WHERE batch_id = $1 AND status = 'APPROVED'
                          FOR UPDATE SKIP LOCKED)",
        )
        .bind(batch_id)
        .bind(now)
        .bind(plan::CANCELLED_CODE)
        .bind(plan::CANCELLED_REASON)
        .execute(&mut *tx)
        .await?
        .rows_affected() as i64;
        let row = sqlx::query(&format!(
            "UPDATE batches SET approved = approved - $2, canceled = canceled + $2, status = 'CANCELLED',
                    completed_at = $3, updated_at = $3
             WHERE id = $1 RETURNING {BATCH_COLS}"
        ))
        .bind(batch_id)
        .bind(canceled)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let done = rows::batch(&row)?;
        if let Some(e) = batch_event(&done) {
            write_events(&mut tx, &[e], now).await?;
        }
        tx.commit().await?;
        Ok(Some(done))
    }

    /// See [`crate::Store::retry_batch`].
    pub(super) async fn retry_batch_impl(
        &self,
        tenant_id: &str,
        batch_id: &str,
    ) -> Result<Option<BatchRecord>> {
        let mut tx = self.pool.begin().await?;
        let Some(old) = lock_batch(&mut tx, tenant_id, batch_id).await? else {
            return Ok(None);
        };
        let failed: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM batch_items WHERE batch_id = $1 AND status = 'FAILED'",
        )
        .bind(batch_id)
        .fetch_one(&mut *tx)
        .await?;
        if failed == 0 {
            return Err(StoreError::State(
                "batch has no failed items to retry".into(),
            ));
        }
        let now = now_ms();
        let new_id = uuid::Uuid::now_v7().to_string();
        let row = sqlx::query(&format!(
            "INSERT INTO batches (id, tenant_id, operation, mode, status, source, external_ref, parent_id,
                                  total, approved, created_at, updated_at)
             VALUES ($1, $2, $3, $4, 'PROCESSING', $5, NULL, $6, $7, $7, $8, $8) RETURNING {BATCH_COLS}"
        ))
        .bind(&new_id)
        .bind(tenant_id)
        .bind(old.operation.map(|o| o.as_str()))
        .bind(old.mode.as_str())
        .bind(&old.source)
        .bind(&old.id)
        .bind(failed)
        .bind(now)
        .fetch_one(&mut *tx)
        .await?;
        let batch = rows::batch(&row)?;
        sqlx::query(
            "INSERT INTO batch_items (batch_id, tenant_id, seq, iccid, operation, status, params, secret_enc, updated_at)
             SELECT $1, tenant_id, row_number() OVER (ORDER BY seq) - 1, iccid, operation, 'APPROVED',
                    params, secret_enc, $3
             FROM batch_items WHERE batch_id = $2 AND status = 'FAILED' ORDER BY seq",
        )
        .bind(&new_id)
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(batch))
    }
}
