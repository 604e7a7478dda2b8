//! simbatch storage.
//!
//! [`Store`] is made of whole use cases; each implementation owns the
//! transaction of each call. There are two implementations, [`sqlite`] and
//! [`postgres`], each with its own migrations, and one conformance suite
//! (`tests/conformance.rs`) that runs against both.
//!
//! Secrets (Ki, OPc, confirmation codes, webhook secrets) are encrypted with
//! [`crypto::Cipher`] before they reach SQL.

mod batch_counts;
pub mod crypto;
pub mod model;
mod outbox;
mod phases;
pub mod plan;
pub mod postgres;
pub mod profiles;
pub mod sqlite;
#[cfg(feature = "testing")]
pub mod testing;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
pub use model::*;
pub use plan::REFUSED_CODE;
pub use profiles::{ProfileOutcome, ProfileRecord, ProfileRequest};

/// Storage errors. Input problems never reach here: they are rejected by core.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A migration failed.
    #[error("migration error: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A unique constraint: the thing already exists.
    #[error("{0} already exists")]
    Conflict(String),
    /// Stored data could not be decrypted or decoded (wrong master key, corruption).
    #[error("stored data is unreadable: {0}")]
    Corrupt(String),
    /// The request is not valid in the current state (e.g. retry with nothing failed).
    #[error("{0}")]
    State(String),
}

/// Runs a claimed chunk's orders; the engine supplies it to [`Store::run_chunk`].
pub type Executor =
    dyn Fn(Vec<ClaimedItem>) -> futures::future::BoxFuture<'static, Vec<Completion>> + Send + Sync;

/// Result alias.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Every use case the platform needs from storage.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// `sqlite` or `postgres`.
    fn backend(&self) -> &'static str;

    // ---- tenants and keys ----

    /// Create a key for `tenant_name`, creating the tenant if needed.
    async fn create_key(&self, tenant_name: &str) -> Result<NewKey>;
    /// All keys, newest first.
    async fn list_keys(&self) -> Result<Vec<KeyInfo>>;
    /// Revoke a key; false if unknown.
    async fn revoke_key(&self, key_id: &str) -> Result<bool>;
    /// The tenant owning this non-revoked key id and secret.
    async fn authenticate(&self, key_id: &str, secret: &str) -> Result<Option<Tenant>>;
    /// On an empty database, create tenant `default` and a key for it.
    async fn bootstrap_default_tenant(&self) -> Result<Option<NewKey>>;
    /// A tenant by name.
    async fn tenant_by_name(&self, name: &str) -> Result<Option<Tenant>>;

    // ---- dialect authentication and signed links ----

    /// The tenant and the plain secret of a non-revoked key, for schemes that
    /// verify an HMAC made with the secret (Simlessly). None when the key is
    /// unknown, revoked, or was created before secrets were kept sealed.
    async fn key_secret(&self, key_id: &str) -> Result<Option<(Tenant, String)>>;
    /// Record that `key_id` used `request_id` at `now_ms`; false if it was
    /// already used. Ids older than [`REQUEST_ID_RETENTION_MS`] are forgotten.
    async fn remember_request_id(
        &self,
        key_id: &str,
        request_id: &str,
        now_ms: i64,
    ) -> Result<bool>;
    /// A platform-wide random 32-byte secret named `name`, created on first
    /// use; every replica sharing the database gets the same bytes.
    async fn server_secret(&self, name: &str) -> Result<Vec<u8>>;

    // ---- templates (platform-wide) ----

    /// Store a template; `Conflict` if the name is taken.
    async fn add_template(&self, name: &str, content: &[u8]) -> Result<TemplateInfo>;
    /// All templates.
    async fn list_templates(&self) -> Result<Vec<TemplateInfo>>;
    /// A template's content.
    async fn template_content(&self, name: &str) -> Result<Option<Vec<u8>>>;
    /// The names of all templates.
    async fn template_names(&self) -> Result<HashSet<String>>;

    // ---- batches ----

    /// Create an empty batch in INITIALISING.
    async fn create_batch(&self, new: &NewBatch) -> Result<BatchRecord>;
    /// Append a chunk of items (approved or rejected) to an INITIALISING batch,
    /// updating its counters, in one transaction.
    async fn append_items(&self, tenant_id: &str, batch_id: &str, items: &[NewItem]) -> Result<()>;
    /// Close an INITIALISING batch: PROCESSING if it has approved items, else
    /// terminal (with its outbox event).
    async fn seal_batch(&self, tenant_id: &str, batch_id: &str) -> Result<BatchRecord>;
    /// A batch, O(1).
    async fn get_batch(&self, tenant_id: &str, batch_id: &str) -> Result<Option<BatchRecord>>;
    /// A batch by the dialect's own reference.
    async fn batch_by_ref(
        &self,
        tenant_id: &str,
        source: &str,
        external_ref: &str,
    ) -> Result<Option<BatchRecord>>;
    /// A page of batches, newest first.
    async fn list_batches(&self, tenant_id: &str, filter: &BatchFilter)
        -> Result<Vec<BatchRecord>>;
    /// How many of the tenant's batches are in each state, under the
    /// filter's status, operation and creation-time bounds (its cursor and
    /// limit are ignored): every state of [`simbatch_core::BatchStatus::ALL`]
    /// once, in that order, zero when none.
    async fn count_batches(
        &self,
        tenant_id: &str,
        filter: &BatchFilter,
    ) -> Result<Vec<(simbatch_core::BatchStatus, i64)>>;
    /// A page of a batch's items, by seq.
    async fn list_items(
        &self,
        tenant_id: &str,
        batch_id: &str,
        filter: &ItemFilter,
    ) -> Result<Vec<ItemRecord>>;
    /// One item by its global id (the order id), if it belongs to the tenant.
    async fn get_item(&self, tenant_id: &str, item_id: i64) -> Result<Option<ItemRecord>>;
    /// Cancel: unclaimed items become CANCELED, the batch CANCELLED. None if unknown.
    /// `State` if the batch is already terminal.
    async fn cancel_batch(&self, tenant_id: &str, batch_id: &str) -> Result<Option<BatchRecord>>;
    /// New batch of the FAILED items, linked to its parent. None if unknown;
    /// `State` if nothing failed.
    async fn retry_batch(&self, tenant_id: &str, batch_id: &str) -> Result<Option<BatchRecord>>;

    // ---- engine ----

    /// Claim up to `limit` runnable items under a lease of `lease`: items whose
    /// batch is PROCESSING, that have no earlier unfinished item for the same
    /// SIM, and that are APPROVED or PROCESSING with an expired lease.
    async fn claim(&self, limit: usize, lease: Duration) -> Result<Claim>;
    /// Commit a chunk's effects, results, counters and outbox events in one
    /// transaction, skipping items whose lease no longer carries `token`.
    async fn complete(&self, token: &str, done: Vec<Completion>) -> Result<CompleteSummary>;
    /// Claim a chunk, run `execute` on it and complete it. The default is
    /// [`Store::claim`] then [`Store::complete`]: two transactions fenced by a
    /// lease (a chunk of profile packages is executed and completed in parts,
    /// under the same lease). Both backends do all three in one transaction
    /// instead: SQLite under its single writer, PostgreSQL holding the picked
    /// rows' locks, so no lease is written and a crash rolls the chunk back.
    /// Items an expired lease left behind are taken over. None when nothing
    /// was runnable.
    ///
    /// A store may also hand the chunk it picks ahead for the next call to
    /// `execute` (SQLite does, beside the chunk it writes), so every executor
    /// given to it must run orders alike. Orders that read templates are
    /// only executed in the call that takes them.
    async fn run_chunk(
        &self,
        limit: usize,
        lease: Duration,
        execute: &std::sync::Arc<Executor>,
    ) -> Result<Option<CompleteSummary>> {
        let claim = self.claim(limit, lease).await?;
        if claim.items.is_empty() {
            return Ok(None);
        }
        // A chunk that personalises profile packages runs and commits in parts
        // (see `plan::memory_parts`), so a large chunk never holds all its packages.
        let mut summary = CompleteSummary::default();
        for part in plan::memory_parts(claim.items) {
            let done = execute(part).await;
            summary.merge(self.complete(&claim.token, done).await?);
        }
        Ok(Some(summary))
    }
    /// Delete up to `limit` items of terminal batches created before
    /// `before_ms`, then such batches that have no items left. Returns rows deleted.
    async fn sweep_retention(&self, before_ms: i64, limit: i64) -> Result<u64>;
    /// Items waiting or running.
    async fn queue_depth(&self) -> Result<i64>;
    /// Batches per status.
    async fn batch_status_counts(&self) -> Result<Vec<(String, i64)>>;

    // ---- SIMs ----

    /// A SIM (never secrets).
    async fn get_sim(&self, tenant_id: &str, iccid: &str) -> Result<Option<SimRecord>>;
    /// A page of SIMs.
    async fn list_sims(&self, tenant_id: &str, filter: &SimFilter) -> Result<Vec<SimRecord>>;
    /// A SIM's history, oldest first, after the cursor.
    async fn sim_history(
        &self,
        tenant_id: &str,
        iccid: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>>;

    // ---- eSIM profiles (SGP.22 lifecycle; see `profiles.rs`) ----

    /// A profile (never its confirmation code).
    async fn get_profile(&self, tenant_id: &str, iccid: &str) -> Result<Option<ProfileRecord>>;
    /// Run one ES2+ function on one profile: lock it, let core rule, then
    /// write the profile, a history row and a `profile.status_changed` event
    /// in one transaction. A refusal writes nothing. `State` if the request
    /// names neither an ICCID nor a profile type.
    async fn profile_command(
        &self,
        tenant_id: &str,
        req: &ProfileRequest,
    ) -> Result<ProfileOutcome>;
    /// Move up to `limit` unused profiles whose expiry is at or before
    /// `now_ms` to UNAVAILABLE, each with a history row and an event, in one
    /// transaction. Returns profiles expired.
    async fn expire_profiles(&self, now_ms: i64, limit: i64) -> Result<u64>;
    /// The personalised profile package (DER) of the tenant's SIM, decrypted,
    /// recording the download in the SIM's history in the same transaction.
    /// `None` when the tenant has no profile for the ICCID, or it has no package.
    async fn download_package(&self, tenant_id: &str, iccid: &str) -> Result<Option<Vec<u8>>>;

    // ---- dialect look-ups (each served by an index) ----

    /// Events of one type (e.g. `order.completed`) of the tenant after the
    /// cursor, oldest first; at most `limit` (1..=1000).
    async fn events_of_type_after(
        &self,
        tenant_id: &str,
        kind: &str,
        after_seq: i64,
        limit: i64,
    ) -> Result<Vec<Event>>;
    /// The oldest unfinished (APPROVED or PROCESSING) item of the tenant's
    /// SIM, if any: its order id.
    async fn open_order(&self, tenant_id: &str, iccid: &str) -> Result<Option<i64>>;
    /// How many SIMs match `filter` (its cursor and limit are ignored).
    async fn count_sims(&self, tenant_id: &str, filter: &SimFilter) -> Result<i64>;
    /// How many history rows the tenant's SIM has.
    async fn count_sim_history(&self, tenant_id: &str, iccid: &str) -> Result<i64>;

    // ---- events ----

    /// Events of the tenant after the cursor, oldest first.
    async fn events_after(&self, tenant_id: &str, after_seq: i64, limit: i64)
        -> Result<Vec<Event>>;

    // ---- webhooks ----

    /// Register an endpoint; its secret is returned once. Deliveries start with
    /// events created after this call.
    async fn create_webhook(&self, tenant_id: &str, url: &str) -> Result<Webhook>;
    /// Register an endpoint receiving a given format ([`WEBHOOK_STANDARD`],
    /// or a dialect's push format); otherwise as [`Store::create_webhook`].
    async fn create_webhook_with_format(
        &self,
        tenant_id: &str,
        url: &str,
        format: &str,
    ) -> Result<Webhook>;
    /// The tenant's endpoints.
    async fn list_webhooks(&self, tenant_id: &str) -> Result<Vec<Webhook>>;
    /// One endpoint.
    async fn get_webhook(&self, tenant_id: &str, id: &str) -> Result<Option<Webhook>>;
    /// Remove an endpoint; false if unknown.
    async fn delete_webhook(&self, tenant_id: &str, id: &str) -> Result<bool>;
    /// Enabled endpoints due now that have an event after their cursor, each
    /// with that next event; secrets filled.
    async fn due_deliveries(&self, now_ms: i64, limit: i64) -> Result<Vec<(Webhook, Event)>>;
    /// Log an attempt and move the endpoint's cursor, schedule or state.
    async fn record_delivery(&self, attempt: &DeliveryAttempt) -> Result<()>;
    /// Recent attempts of an endpoint, newest first.
    async fn delivery_log(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryLog>>;

    // ---- idempotency ----

    /// Reserve `key` for a request whose body hashes to `request_hash`.
    async fn idempotency_begin(
        &self,
        tenant_id: &str,
        key: &str,
        request_hash: &str,
    ) -> Result<Idempotency>;
    /// Save the response of a reserved key.
    async fn idempotency_finish(
        &self,
        tenant_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<()>;
    /// Release a reserved key whose request failed before answering.
    async fn idempotency_abort(&self, tenant_id: &str, key: &str) -> Result<()>;
    /// Forget keys created before `before_ms`.
    async fn idempotency_sweep(&self, before_ms: i64) -> Result<u64>;

    // ---- benchmark ----

    /// The set-based floor for the benchmark: apply `activate` to every APPROVED
    /// item of the batch with one INSERT…SELECT of history, one UPDATE of SIMs
    /// and one UPDATE of items. Returns items applied.
    async fn bench_floor_activate(&self, batch_id: &str) -> Result<u64>;
}

/// Open the store a URL names (`sqlite://…` or `postgres://…`), applying migrations.
pub async fn open(url: &str, cipher: crypto::Cipher) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::connect(url, cipher).await
    } else if url.starts_with("sqlite:") {
        sqlite::connect(url, cipher).await
    } else {
        Err(StoreError::State(format!(
            "unsupported database URL '{url}': use sqlite://PATH or postgres://USER@HOST/DB"
        )))
    }
}

/// How long a used request id is remembered (30 minutes): longer than any
/// window in which a signed request's timestamp is accepted.
pub const REQUEST_ID_RETENTION_MS: i64 = 30 * 60 * 1000;

/// How long to keep a lease before another worker may take the item over.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(30);
