//! SQLite implementation of [`crate::Store`].
//!
//! WAL mode, one writer connection (every write is `BEGIN IMMEDIATE`, so
//! writers never deadlock on lock upgrades) and a small pool of readers.
//!
//! The pools never ping a connection before lending it: a SQLite connection
//! is a handle in this process and cannot go stale, and the ping was one more
//! hand-off to the connection's thread on every read (it put about a third
//! on the p99 of `GET /v1/batches/{id}` while a batch runs).

mod ahead;
mod batches;
mod counts;
mod dialect;
mod engine;
mod lookups;
mod misc;
mod outbox;
mod packages;
mod pick;
mod profiles;
mod rows;
mod values;

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::crypto::Cipher;
use crate::*;

/// The SQLite store.
pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
    cipher: Cipher,
    /// Outbox blocks read lately.
    blocks: crate::outbox::BlockCache,
    /// The chunk the last `run_chunk` picked ahead; held through a whole
    /// `run_chunk`, so chunks run one at a time.
    ahead: tokio::sync::Mutex<Option<ahead::Ahead>>,
    /// Wakes the background checkpointer after a bulk write (see `checkpointer`).
    wrote: Arc<tokio::sync::Notify>,
    /// Alive as long as the store: the background checkpointer stops when
    /// it can no longer upgrade its weak reference.
    _alive: Arc<()>,
}

/// Open (creating) the SQLite database and apply migrations.
pub async fn connect(url: &str, cipher: Cipher) -> Result<Arc<dyn Store>> {
    Ok(Arc::new(SqliteStore::connect(url, cipher).await?))
}

/// Map unique-constraint violations to [`StoreError::Conflict`].
pub(crate) fn conflict(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) if db.is_unique_violation() => {
            StoreError::Conflict(db.message().to_owned())
        }
        _ => StoreError::Database(e),
    }
}

impl SqliteStore {
    /// Tell the background checkpointer that a bulk write committed.
    fn wake_checkpointer(&self) {
        self.wrote.notify_one();
    }

    /// Open the database at `url` (`sqlite://PATH`, created if missing).
    pub async fn connect(url: &str, cipher: Cipher) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(Duration::from_secs(30))
            .pragma("temp_store", "memory")
            // The writer checkpoints only as a backstop, at 256 MiB of WAL; see `checkpointer`.
            .pragma("wal_autocheckpoint", "65536")
            .foreign_keys(false);
        // One writer connection, never closed for age or idleness: the chunk
        // picked ahead is checked against its change counts (`ahead::Stamp`).
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .max_lifetime(None)
            .idle_timeout(None)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("migrations/sqlite").run(&write).await?;
        let checkpoints = SqlitePoolOptions::new()
            .max_connections(1)
            .test_before_acquire(false)
            .connect_with(opts.clone())
            .await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .test_before_acquire(false)
            .connect_with(opts.read_only(true))
            .await?;
        let alive = Arc::new(());
        let wrote = Arc::new(tokio::sync::Notify::new());
        tokio::spawn(checkpointer(
            checkpoints,
            wrote.clone(),
            Arc::downgrade(&alive),
        ));
        Ok(Self {
            write,
            read,
            cipher,
            blocks: crate::outbox::BlockCache::default(),
            ahead: tokio::sync::Mutex::new(None),
            wrote,
            _alive: alive,
        })
    }
}

/// How often the background checkpointer runs when no bulk write wakes it.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

/// Copy committed WAL frames into the database file from a connection of
/// its own: after every bulk write (a chunk or an append: see
/// [`SqliteStore::wake_checkpointer`]) and at least twice a second, until the store is
/// dropped.
///
/// Left to the writer, a checkpoint runs inside the commit that crosses the
/// WAL threshold: on the hot path that was one commit in thirty taking
/// ~420 ms (copying and syncing 64 MiB) while every other write waited.
/// A PASSIVE checkpoint runs beside the writer and never blocks it. While
/// chunks commit back to back it never quite catches up, so the WAL only
/// starts over when the writer's own checkpoint runs at the threshold;
/// checkpointing after every bulk write leaves that one little to copy
/// (with a checkpoint every 500 ms it copied up to 40 MB: 110-136 ms).
async fn checkpointer(
    pool: SqlitePool,
    wrote: Arc<tokio::sync::Notify>,
    alive: std::sync::Weak<()>,
) {
    loop {
        tokio::select! {
            _ = wrote.notified() => {}
            _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
        }
        if alive.upgrade().is_none() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "background WAL checkpoint failed");
        }
    }
    pool.close().await;
}

#[async_trait]
impl Store for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn create_key(&self, tenant_name: &str) -> Result<NewKey> {
        self.create_key_impl(tenant_name).await
    }
    async fn list_keys(&self) -> Result<Vec<KeyInfo>> {
        self.list_keys_impl().await
    }
    async fn revoke_key(&self, key_id: &str) -> Result<bool> {
        self.revoke_key_impl(key_id).await
    }
    async fn authenticate(&self, key_id: &str, secret: &str) -> Result<Option<Tenant>> {
        self.authenticate_impl(key_id, secret).await
    }
    async fn bootstrap_default_tenant(&self) -> Result<Option<NewKey>> {
        self.bootstrap_impl().await
    }
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>> {
        self.tenant_by_name_impl(name).await
    }

    async fn key_secret(&self, key_id: &str) -> Result<Option<(Tenant, String)>> {
        self.key_secret_impl(key_id).await
    }
    async fn remember_request_id(
        &self,
        key_id: &str,
        request_id: &str,
        now_ms: i64,
    ) -> Result<bool> {
        self.remember_request_id_impl(key_id, request_id, now_ms)
            .await
    }
    async fn server_secret(&self, name: &str) -> Result<Vec<u8>> {
        self.server_secret_impl(name).await
    }

    async fn add_template(&self, name: &str, content: &[u8]) -> Result<TemplateInfo> {
        self.add_template_impl(name, content).await
    }
    async fn list_templates(&self) -> Result<Vec<TemplateInfo>> {
        self.list_templates_impl().await
    }
    async fn template_content(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT content FROM templates WHERE name = ?1")
                .bind(name)
                .fetch_optional(&self.read)
                .await?,
        )
    }
    async fn template_names(&self) -> Result<HashSet<String>> {
        Ok(sqlx::query_scalar("SELECT name FROM templates")
            .fetch_all(&self.read)
            .await?
            .into_iter()
            .collect())
    }

    async fn create_batch(&self, new: &NewBatch) -> Result<BatchRecord> {
        self.create_batch_impl(new).await
    }
    async fn append_items(&self, tenant_id: &str, batch_id: &str, items: &[NewItem]) -> Result<()> {
        self.append_items_impl(tenant_id, batch_id, items).await
    }
    async fn seal_batch(&self, tenant_id: &str, batch_id: &str) -> Result<BatchRecord> {
        self.seal_batch_impl(tenant_id, batch_id).await
    }
    async fn get_batch(&self, tenant_id: &str, batch_id: &str) -> Result<Option<BatchRecord>> {
        let sql = format!(
            "SELECT {} FROM batches WHERE tenant_id = ?1 AND id = ?2",
            rows::BATCH_COLS
        );
        let row = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(batch_id)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(rows::batch).transpose()
    }
    async fn batch_by_ref(
        &self,
        tenant_id: &str,
        source: &str,
        external_ref: &str,
    ) -> Result<Option<BatchRecord>> {
        let sql = format!(
            "SELECT {} FROM batches WHERE tenant_id = ?1 AND source = ?2 AND external_ref = ?3",
            rows::BATCH_COLS
        );
        let row = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(source)
            .bind(external_ref)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(rows::batch).transpose()
    }
    async fn list_batches(
        &self,
        tenant_id: &str,
        filter: &BatchFilter,
    ) -> Result<Vec<BatchRecord>> {
        self.list_batches_impl(tenant_id, filter).await
    }
    async fn count_batches(
        &self,
        tenant_id: &str,
        filter: &BatchFilter,
    ) -> Result<Vec<(simbatch_core::BatchStatus, i64)>> {
        self.count_batches_impl(tenant_id, filter).await
    }
    async fn list_items(
        &self,
        tenant_id: &str,
        batch_id: &str,
        filter: &ItemFilter,
    ) -> Result<Vec<ItemRecord>> {
        self.list_items_impl(tenant_id, batch_id, filter).await
    }
    async fn get_item(&self, tenant_id: &str, item_id: i64) -> Result<Option<ItemRecord>> {
        self.get_item_impl(tenant_id, item_id).await
    }
    async fn cancel_batch(&self, tenant_id: &str, batch_id: &str) -> Result<Option<BatchRecord>> {
        self.cancel_batch_impl(tenant_id, batch_id).await
    }
    async fn retry_batch(&self, tenant_id: &str, batch_id: &str) -> Result<Option<BatchRecord>> {
        self.retry_batch_impl(tenant_id, batch_id).await
    }

    async fn claim(&self, limit: usize, lease: Duration) -> Result<Claim> {
        self.claim_impl(limit, lease).await
    }
    async fn complete(&self, token: &str, done: Vec<Completion>) -> Result<CompleteSummary> {
        self.complete_impl(token, done).await
    }
    async fn run_chunk(
        &self,
        limit: usize,
        _lease: Duration,
        execute: &std::sync::Arc<Executor>,
    ) -> Result<Option<CompleteSummary>> {
        self.run_chunk_impl(limit, execute).await
    }
    async fn sweep_retention(&self, before_ms: i64, limit: i64) -> Result<u64> {
        self.sweep_impl(before_ms, limit).await
    }
    async fn queue_depth(&self) -> Result<i64> {
        Ok(
            sqlx::query_scalar("SELECT coalesce(sum(approved + processing), 0) FROM batches")
                .fetch_one(&self.read)
                .await?,
        )
    }
    async fn batch_status_counts(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT status, count(*) FROM batches GROUP BY status")
                .fetch_all(&self.read)
                .await?,
        )
    }

    async fn get_sim(&self, tenant_id: &str, iccid: &str) -> Result<Option<SimRecord>> {
        let sql = format!(
            "SELECT {} FROM sims WHERE tenant_id = ?1 AND iccid = ?2",
            rows::SIM_COLS
        );
        let row = sqlx::query(&sql)
            .bind(tenant_id)
            .bind(iccid)
            .fetch_optional(&self.read)
            .await?;
        row.as_ref().map(rows::sim).transpose()
    }
    async fn list_sims(&self, tenant_id: &str, filter: &SimFilter) -> Result<Vec<SimRecord>> {
        self.list_sims_impl(tenant_id, filter).await
    }
    async fn download_package(&self, tenant_id: &str, iccid: &str) -> Result<Option<Vec<u8>>> {
        self.download_package_impl(tenant_id, iccid).await
    }
    async fn sim_history(
        &self,
        tenant_id: &str,
        iccid: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>> {
        sqlx::query(
            "SELECT id, at, operation, from_status, to_status, batch_id, item_id FROM sim_history
             WHERE tenant_id = ?1 AND iccid = ?2 AND id > ?3 ORDER BY id LIMIT ?4",
        )
        .bind(tenant_id)
        .bind(iccid)
        .bind(after_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?
        .iter()
        .map(rows::history)
        .collect()
    }

    async fn get_profile(&self, tenant_id: &str, iccid: &str) -> Result<Option<ProfileRecord>> {
        self.get_profile_impl(tenant_id, iccid).await
    }
    async fn profile_command(
        &self,
        tenant_id: &str,
        req: &ProfileRequest,
    ) -> Result<ProfileOutcome> {
        self.profile_command_impl(tenant_id, req).await
    }
    async fn expire_profiles(&self, now_ms: i64, limit: i64) -> Result<u64> {
        self.expire_profiles_impl(now_ms, limit).await
    }

    async fn events_of_type_after(
        &self,
        tenant_id: &str,
        kind: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        self.events_of_type_after_impl(tenant_id, kind, after_seq, limit)
            .await
    }
    async fn open_order(&self, tenant_id: &str, iccid: &str) -> Result<Option<i64>> {
        self.open_order_impl(tenant_id, iccid).await
    }
    async fn count_sims(&self, tenant_id: &str, filter: &SimFilter) -> Result<i64> {
        self.count_sims_impl(tenant_id, filter).await
    }
    async fn count_sim_history(&self, tenant_id: &str, iccid: &str) -> Result<i64> {
        self.count_sim_history_impl(tenant_id, iccid).await
    }

    async fn events_after(
        &self,
        tenant_id: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        self.read_events(tenant_id, None, after_seq, limit).await
    }

    async fn create_webhook(&self, tenant_id: &str, url: &str) -> Result<Webhook> {
        self.create_webhook_impl(tenant_id, url, WEBHOOK_STANDARD)
            .await
    }
    async fn create_webhook_with_format(
        &self,
        tenant_id: &str,
        url: &str,
        format: &str,
    ) -> Result<Webhook> {
        self.create_webhook_impl(tenant_id, url, format).await
    }
    async fn list_webhooks(&self, tenant_id: &str) -> Result<Vec<Webhook>> {
        self.list_webhooks_impl(tenant_id, None).await
    }
    async fn get_webhook(&self, tenant_id: &str, id: &str) -> Result<Option<Webhook>> {
        Ok(self.list_webhooks_impl(tenant_id, Some(id)).await?.pop())
    }
    async fn delete_webhook(&self, tenant_id: &str, id: &str) -> Result<bool> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query("DELETE FROM webhooks WHERE tenant_id = ?1 AND id = ?2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = ?1")
            .bind(id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n > 0)
    }
    async fn due_deliveries(&self, now_ms: i64, limit: i64) -> Result<Vec<(Webhook, Event)>> {
        self.due_deliveries_impl(now_ms, limit).await
    }
    async fn record_delivery(&self, attempt: &DeliveryAttempt) -> Result<()> {
        self.record_delivery_impl(attempt).await
    }
    async fn delivery_log(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryLog>> {
        self.delivery_log_impl(tenant_id, webhook_id, limit).await
    }

    async fn idempotency_begin(
        &self,
        tenant_id: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Idempotency> {
        self.idempotency_begin_impl(tenant_id, key, request_hash)
            .await
    }
    async fn idempotency_finish(
        &self,
        tenant_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("UPDATE idempotency_keys SET status_code = ?1, body = ?2 WHERE tenant_id = ?3 AND key = ?4")
            .bind(i64::from(status))
            .bind(body)
            .bind(tenant_id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
    async fn idempotency_abort(&self, tenant_id: &str, key: &str) -> Result<()> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2 AND status_code IS NULL")
            .bind(tenant_id)
            .bind(key)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
    async fn idempotency_sweep(&self, before_ms: i64) -> Result<u64> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < ?1")
            .bind(before_ms)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        Ok(n)
    }

    async fn bench_floor_activate(&self, batch_id: &str) -> Result<u64> {
        let now = now_ms();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO sim_history (tenant_id, iccid, at, operation, from_status, to_status, batch_id, item_id)
             SELECT i.tenant_id, i.iccid, ?1, 'activate', s.status, 'ACTIVATED', i.batch_id, i.id
             FROM batch_items i JOIN sims s ON s.tenant_id = i.tenant_id AND s.iccid = i.iccid
             WHERE i.batch_id = ?2 AND i.status = 'APPROVED' AND s.status = 'INVENTORY'",
        )
        .bind(now)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sims SET status = 'ACTIVATED', updated_at = ?1
             WHERE status = 'INVENTORY' AND (tenant_id, iccid) IN
                 (SELECT tenant_id, iccid FROM batch_items WHERE batch_id = ?2 AND status = 'APPROVED')",
        )
        .bind(now)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(
            "UPDATE batch_items SET status = 'COMPLETED', updated_at = ?1 WHERE batch_id = ?2 AND status = 'APPROVED'",
        )
        .bind(now)
        .bind(batch_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}

#[cfg(test)]
impl SqliteStore {
    /// A store on a new database in a temporary directory (kept as long as
    /// the directory is; see [`crate::testing::fresh_sqlite_url`]).
    pub(super) async fn fresh_for_test() -> (tempfile::TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let url = crate::testing::fresh_sqlite_url(dir.path());
        let store = SqliteStore::connect(&url, crate::testing::test_cipher())
            .await
            .unwrap();
        (dir, store)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Size of the main database file (what checkpoints write to).
    fn db_len(dir: &tempfile::TempDir) -> u64 {
        std::fs::metadata(crate::testing::fresh_sqlite_path(dir.path()))
            .unwrap()
            .len()
    }

    #[tokio::test]
    async fn no_pool_pings_its_connections_before_lending_them() {
        let (_dir, store) = SqliteStore::fresh_for_test().await;
        assert!(!store.write.options().get_test_before_acquire());
        assert!(!store.read.options().get_test_before_acquire());
    }

    #[tokio::test]
    async fn the_wal_is_checkpointed_beside_the_writer_and_the_checkpointer_stops_with_the_store() {
        let (dir, store) = SqliteStore::fresh_for_test().await;
        // Whatever migrations left in the WAL is checkpointed first.
        tokio::time::sleep(CHECKPOINT_EVERY * 3).await;
        let before = db_len(&dir);
        sqlx::query("CREATE TABLE filler (b BLOB)")
            .execute(&store.write)
            .await
            .unwrap();
        sqlx::query("INSERT INTO filler VALUES (zeroblob(4000000))")
            .execute(&store.write)
            .await
            .unwrap();
        // 4 MB is far below the writer's own threshold (256 MiB): only the
        // background checkpointer copies it into the database file.
        assert!(db_len(&dir) < before + 4_000_000);
        tokio::time::sleep(CHECKPOINT_EVERY * 4).await;
        assert!(
            db_len(&dir) >= before + 4_000_000,
            "the WAL was not checkpointed: {} -> {}",
            before,
            db_len(&dir)
        );
        let alive = Arc::downgrade(&store._alive);
        drop(store);
        assert!(alive.upgrade().is_none());
    }
}
