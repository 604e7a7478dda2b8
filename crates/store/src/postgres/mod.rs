//! PostgreSQL implementation of [`crate::Store`].
//!
//! The trait is implemented in one place ([`PgStore`]), each method delegating
//! to a use case written in a submodule:
//!
//! - [`misc`]: tenants, keys, templates, SIM reads, events, idempotency, metrics;
//! - [`batches`]: batch creation, items, sealing, listing, cancel and retry;
//! - [`counts`]: batches per state under the list filters;
//! - [`engine`]: claim, complete, retention and the benchmark floor;
//! - [`chunk`]: a chunk picked, executed and written in one transaction;
//! - [`outbox`]: events written and read as blocks;
//! - [`webhooks`]: endpoints, due deliveries and the delivery log;
//! - [`stats`]: planner statistics refreshed as the hot tables grow.
//!
//! Every query is runtime-checked (`sqlx::query`), every write of many rows is
//! one set-based statement (one JSON array parameter read with
//! `jsonb_to_recordset`, or `UNNEST` of arrays), and every use case owns its
//! transaction.

mod batches;
mod chunk;
mod copy;
mod counts;
mod dialect;
mod engine;
mod lookups;
mod misc;
mod outbox;
mod packages;
mod profiles;
mod rows;
mod stats;
mod webhooks;
mod writes;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgPool, PgPoolOptions};

use crate::crypto::Cipher;
use crate::model::*;
use crate::{ProfileOutcome, ProfileRecord, ProfileRequest, Result, Store, StoreError};

/// The PostgreSQL store: a pool, the master-key cipher, the growth count
/// that keeps planner statistics current and the outbox block cache.
pub struct PgStore {
    pool: PgPool,
    cipher: Cipher,
    growth: stats::Growth,
    /// Outbox blocks read lately.
    blocks: crate::outbox::BlockCache,
}

/// Connect to PostgreSQL (pool of at most 10 connections) and apply the
/// embedded migrations. Migrations take an advisory lock, so replicas
/// starting together apply them once.
pub async fn connect(url: &str, cipher: Cipher) -> Result<Arc<dyn Store>> {
    let pool = PgPoolOptions::new()
        .max_connections(10)
        .acquire_timeout(Duration::from_secs(30))
        .connect(url)
        .await?;
    sqlx::migrate!("migrations/postgres").run(&pool).await?;
    Ok(Arc::new(PgStore {
        pool,
        cipher,
        growth: stats::Growth::default(),
        blocks: crate::outbox::BlockCache::default(),
    }))
}

/// Map a database error, turning unique violations into `Conflict(what)`.
pub(crate) fn db_err(what: &str) -> impl Fn(sqlx::Error) -> StoreError + '_ {
    move |e| {
        if let sqlx::Error::Database(d) = &e {
            if d.is_unique_violation() {
                return StoreError::Conflict(what.to_owned());
            }
        }
        StoreError::Database(e)
    }
}

/// Clamp a page size to something PostgreSQL accepts.
pub(crate) fn page(limit: i64) -> i64 {
    limit.max(0)
}

pub(crate) use outbox::write_events;

#[async_trait]
impl Store for PgStore {
    fn backend(&self) -> &'static str {
        "postgres"
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
        self.template_content_impl(name).await
    }
    async fn template_names(&self) -> Result<HashSet<String>> {
        self.template_names_impl().await
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
        self.get_batch_impl(tenant_id, batch_id).await
    }
    async fn batch_by_ref(
        &self,
        tenant_id: &str,
        source: &str,
        external_ref: &str,
    ) -> Result<Option<BatchRecord>> {
        self.batch_by_ref_impl(tenant_id, source, external_ref)
            .await
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
        lease: Duration,
        execute: &std::sync::Arc<crate::Executor>,
    ) -> Result<Option<CompleteSummary>> {
        self.run_chunk_impl(limit, lease, execute.as_ref()).await
    }
    async fn sweep_retention(&self, before_ms: i64, limit: i64) -> Result<u64> {
        self.sweep_retention_impl(before_ms, limit).await
    }
    async fn queue_depth(&self) -> Result<i64> {
        self.queue_depth_impl().await
    }
    async fn batch_status_counts(&self) -> Result<Vec<(String, i64)>> {
        self.batch_status_counts_impl().await
    }

    async fn get_sim(&self, tenant_id: &str, iccid: &str) -> Result<Option<SimRecord>> {
        self.get_sim_impl(tenant_id, iccid).await
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
        self.sim_history_impl(tenant_id, iccid, after_id, limit)
            .await
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
        self.events_after_impl(tenant_id, after_seq, limit).await
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
        self.list_webhooks_impl(tenant_id).await
    }
    async fn get_webhook(&self, tenant_id: &str, id: &str) -> Result<Option<Webhook>> {
        self.get_webhook_impl(tenant_id, id).await
    }
    async fn delete_webhook(&self, tenant_id: &str, id: &str) -> Result<bool> {
        self.delete_webhook_impl(tenant_id, id).await
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
        self.idempotency_finish_impl(tenant_id, key, status, body)
            .await
    }
    async fn idempotency_abort(&self, tenant_id: &str, key: &str) -> Result<()> {
        self.idempotency_abort_impl(tenant_id, key).await
    }
    async fn idempotency_sweep(&self, before_ms: i64) -> Result<u64> {
        self.idempotency_sweep_impl(before_ms).await
    }

    async fn bench_floor_activate(&self, batch_id: &str) -> Result<u64> {
        self.bench_floor_activate_impl(batch_id).await
    }
}

/// A store on a fresh test database, for tests of this backend's internals.
#[cfg(test)]
pub(crate) async fn test_store() -> PgStore {
    let url = crate::testing::fresh_postgres_url().await;
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(&url)
        .await
        .expect("test database");
    sqlx::migrate!("migrations/postgres")
        .run(&pool)
        .await
        .expect("migrations");
    PgStore {
        pool,
        cipher: crate::testing::test_cipher(),
        growth: stats::Growth::default(),
        blocks: crate::outbox::BlockCache::default(),
    }
}
