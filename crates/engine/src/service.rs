//! The use-case facade: submit, read, cancel, retry, single orders, SIMs,
//! events and webhooks.
//!
//! The native API and every dialect call [`Service`]; it knows no HTTP types
//! and reaches storage only through the [`Store`] trait. Every method is
//! scoped to a tenant: another tenant's objects are simply not found.
//!
//! Store failures are logged here and surface as [`ServiceError::Internal`],
//! which carries no detail, so callers can never leak them.

mod esim;
mod profiles;
mod writer;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Map, Value};
use simbatch_core::{BatchMode, Counts, Operation, ValidationProfile};
use simbatch_store::{
    BatchFilter, BatchRecord, DeliveryLog, Event, HistoryEntry, ItemFilter, ItemRecord, SimFilter,
    SimRecord, Store, StoreError, Tenant, Webhook,
};
use tokio::sync::Notify;

pub use esim::{check_template, check_template_name, TemplateView, MAX_TEMPLATE_BYTES};
pub use writer::{BatchWriter, StreamOptions};

/// Items per `append_items` call. Each call is one transaction (on
/// PostgreSQL, one commit to wait for), so fewer, larger chunks upload
/// faster; two chunks in memory stay a few megabytes.
pub const CHUNK: usize = 4000;
/// Rejections kept in a streamed upload's report (counts stay exact).
pub const STREAM_REPORTED_REJECTIONS: usize = 1000;
/// Longest webhook URL accepted.
pub const MAX_URL_LEN: usize = 2048;

/// Service settings.
#[derive(Debug, Clone, Copy)]
pub struct ServiceConfig {
    /// Identifier validation profile of the deployment.
    pub validation: ValidationProfile,
    /// Most items in one batch.
    pub max_items: usize,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            validation: ValidationProfile::Standard,
            max_items: 1_000_000,
        }
    }
}

/// Use-case errors, each with a stable [`ServiceError::code`].
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// The object does not exist for this tenant.
    #[error("{0} not found")]
    NotFound(String),
    /// A batch with no items.
    #[error("the batch has no items")]
    EmptyBatch,
    /// A batch over the limit.
    #[error("a batch holds at most {max} items")]
    TooManyItems {
        /// The limit.
        max: usize,
    },
    /// The request itself is invalid; `errors` name items and fields when known.
    #[error("{message}")]
    InvalidRequest {
        /// Human message.
        message: String,
        /// Per-item problems.
        errors: Vec<RejectedItem>,
    },
    /// Not possible in the object's current state.
    #[error("{0}")]
    Conflict(String),
    /// Storage failed; the cause is logged, never shown.
    #[error("internal error")]
    Internal,
    /// Input refused with its own stable code (e.g. `template_invalid`).
    #[error("{message}")]
    Refused {
        /// Stable machine code.
        code: &'static str,
        /// Human message.
        message: String,
    },
}

impl ServiceError {
    /// Stable machine code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotFound(_) => "not_found",
            Self::EmptyBatch => "empty_batch",
            Self::TooManyItems { .. } => "too_many_items",
            Self::InvalidRequest { .. } => "invalid_request",
            Self::Conflict(_) => "conflict",
            Self::Internal => "internal",
            Self::Refused { code, .. } => code,
        }
    }

    /// An invalid request without item detail.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::InvalidRequest {
            message: message.into(),
            errors: Vec::new(),
        }
    }
}

/// Log a store error and hide it.
pub(crate) fn internal(e: StoreError) -> ServiceError {
    tracing::error!(error = %e, "store error");
    ServiceError::Internal
}

/// Map a store error where `State` means "not in this state".
fn state_conflict(e: StoreError) -> ServiceError {
    match e {
        StoreError::State(msg) => ServiceError::Conflict(msg),
        StoreError::Conflict(what) => ServiceError::Conflict(format!("{what} already exists")),
        other => internal(other),
    }
}

/// One refused item, as reported to the client.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RejectedItem {
    /// 0-based position in the submission.
    pub index: usize,
    /// Field to blame, if any.
    pub field: Option<String>,
    /// Stable code.
    pub code: String,
    /// Human reason.
    pub reason: String,
}

/// A batch submission.
#[derive(Debug, Clone, Default)]
pub struct SubmitRequest {
    /// The batch's operation; None for a mixed batch (each item names its own).
    pub operation: Option<Operation>,
    /// Ordering mode.
    pub mode: BatchMode,
    /// The items' fields.
    pub items: Vec<Map<String, Value>>,
    /// Validate and report only; store nothing.
    pub dry_run: bool,
    /// Dialect that submits (`native`, ...).
    pub source: String,
    /// Dialect's own id for the batch.
    pub external_ref: Option<String>,
}

/// The outcome of a submission.
#[derive(Debug, Clone, PartialEq)]
pub struct SubmitReport {
    /// The sealed batch; None on a dry run.
    pub batch: Option<BatchRecord>,
    /// Exact counts (on a dry run: approved and rejected as they would be).
    pub counts: Counts,
    /// Refused items (a streamed upload keeps only the first ones).
    pub rejected: Vec<RejectedItem>,
    /// Whether `rejected` was cut short.
    pub rejected_truncated: bool,
}

/// A page of results and the cursor to the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The rows.
    pub data: Vec<T>,
    /// Pass back to get the next page; None at the end.
    pub next_cursor: Option<String>,
}

/// The use cases.
pub struct Service {
    store: Arc<dyn Store>,
    cfg: ServiceConfig,
    wake: Arc<Notify>,
}

impl std::fmt::Debug for Service {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Service")
            .field("backend", &self.store.backend())
            .field("cfg", &self.cfg)
            .finish()
    }
}

/// Whether `id` can name a batch or webhook (UUID text); anything else is
/// simply not found, and never reaches SQL.
fn valid_id(id: &str) -> bool {
    id.len() <= 64 && uuid::Uuid::parse_str(id).is_ok()
}

/// Whether `iccid` can name a SIM (short, alphanumeric).
fn valid_iccid(iccid: &str) -> bool {
    !iccid.is_empty() && iccid.len() <= 32 && iccid.bytes().all(|b| b.is_ascii_alphanumeric())
}

fn page_limit(limit: i64) -> i64 {
    limit.clamp(1, 1000)
}

/// Split `rows` fetched with `limit + 1` into a page.
fn paginate<T>(mut rows: Vec<T>, limit: i64, cursor: impl Fn(&T) -> String) -> Page<T> {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let next_cursor = if more { rows.last().map(cursor) } else { None };
    Page {
        data: rows,
        next_cursor,
    }
}

impl Service {
    /// A service over `store`; `wake` is notified when work is queued.
    pub fn new(store: Arc<dyn Store>, cfg: ServiceConfig, wake: Arc<Notify>) -> Self {
        Self { store, cfg, wake }
    }

    /// The configuration.
    pub fn config(&self) -> &ServiceConfig {
        &self.cfg
    }

    /// Whether the store answers.
    pub async fn ready(&self) -> bool {
        self.store.queue_depth().await.is_ok()
    }

    fn wake_workers(&self) {
        self.wake.notify_waiters();
        self.wake.notify_one();
    }

    /// Submit a whole batch held in memory.
    pub async fn submit(
        &self,
        tenant: &Tenant,
        req: SubmitRequest,
    ) -> Result<SubmitReport, ServiceError> {
        if req.items.is_empty() {
            return Err(ServiceError::EmptyBatch);
        }
        if req.items.len() > self.cfg.max_items {
            return Err(ServiceError::TooManyItems {
                max: self.cfg.max_items,
            });
        }
        let mut w = self.begin_stream_with(
            tenant,
            StreamOptions {
                operation: req.operation,
                mode: req.mode,
                dry_run: req.dry_run,
                source: req.source,
                external_ref: req.external_ref,
                max_reported: usize::MAX,
            },
        );
        for item in req.items {
            if let Err(e) = w.push(item).await {
                w.abort().await;
                return Err(e);
            }
        }
        w.finish().await
    }

    /// Start a streamed submission; push items, then finish.
    pub fn begin_stream(
        &self,
        tenant: &Tenant,
        operation: Option<Operation>,
        mode: BatchMode,
        dry_run: bool,
        source: &str,
    ) -> BatchWriter {
        self.begin_stream_with(
            tenant,
            StreamOptions {
                operation,
                mode,
                dry_run,
                source: source.to_owned(),
                external_ref: None,
                max_reported: STREAM_REPORTED_REJECTIONS,
            },
        )
    }

    /// Start a streamed submission with every option.
    pub fn begin_stream_with(&self, tenant: &Tenant, opts: StreamOptions) -> BatchWriter {
        BatchWriter::new(
            self.store.clone(),
            self.wake.clone(),
            self.cfg,
            tenant.clone(),
            opts,
        )
    }

    /// A batch.
    pub async fn get_batch(&self, tenant: &Tenant, id: &str) -> Result<BatchRecord, ServiceError> {
        if !valid_id(id) {
            return Err(ServiceError::NotFound("batch".into()));
        }
        self.store
            .get_batch(&tenant.id, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound("batch".into()))
    }

    /// A batch by the id a dialect gave it (`source` is the dialect, e.g.
    /// `simlessly` and its batchCode); `NotFound` if this tenant has none.
    pub async fn get_batch_by_ref(
        &self,
        tenant: &Tenant,
        source: &str,
        external_ref: &str,
    ) -> Result<BatchRecord, ServiceError> {
        if external_ref.is_empty() || external_ref.len() > 128 {
            return Err(ServiceError::NotFound("batch".into()));
        }
        self.store
            .batch_by_ref(&tenant.id, source, external_ref)
            .await
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound("batch".into()))
    }

    /// Whether a template (Simlessly's configName) of this name exists.
    pub async fn template_exists(&self, name: &str) -> Result<bool, ServiceError> {
        Ok(self
            .store
            .template_names()
            .await
            .map_err(internal)?
            .contains(name))
    }

    /// A page of batches, newest first; the cursor is the last batch id.
    pub async fn list_batches(
        &self,
        tenant: &Tenant,
        mut filter: BatchFilter,
    ) -> Result<Page<BatchRecord>, ServiceError> {
        let limit = page_limit(filter.limit);
        filter.limit = limit + 1;
        let rows = self
            .store
            .list_batches(&tenant.id, &filter)
            .await
            .map_err(internal)?;
        Ok(paginate(rows, limit, |b| b.id.clone()))
    }

    /// A page of a batch's items; the cursor is the last seq.
    pub async fn list_items(
        &self,
        tenant: &Tenant,
        batch_id: &str,
        mut filter: ItemFilter,
    ) -> Result<Page<ItemRecord>, ServiceError> {
        self.get_batch(tenant, batch_id).await?;
        let limit = page_limit(filter.limit);
        filter.limit = limit + 1;
        let rows = self
            .store
            .list_items(&tenant.id, batch_id, &filter)
            .await
            .map_err(internal)?;
        Ok(paginate(rows, limit, |i| i.seq.to_string()))
    }

    /// One order (item) by its global id, the order id dialects show.
    pub async fn get_order(&self, tenant: &Tenant, id: i64) -> Result<ItemRecord, ServiceError> {
        self.store
            .get_item(&tenant.id, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound("order".into()))
    }

    /// Cancel a batch; `Conflict` if it is already terminal.
    pub async fn cancel(&self, tenant: &Tenant, id: &str) -> Result<BatchRecord, ServiceError> {
        if !valid_id(id) {
            return Err(ServiceError::NotFound("batch".into()));
        }
        self.store
            .cancel_batch(&tenant.id, id)
            .await
            .map_err(state_conflict)?
            .ok_or_else(|| ServiceError::NotFound("batch".into()))
    }

    /// A new batch of the failed items; `Conflict` if nothing failed.
    pub async fn retry(&self, tenant: &Tenant, id: &str) -> Result<BatchRecord, ServiceError> {
        if !valid_id(id) {
            return Err(ServiceError::NotFound("batch".into()));
        }
        let b = self
            .store
            .retry_batch(&tenant.id, id)
            .await
            .map_err(state_conflict)?
            .ok_or_else(|| ServiceError::NotFound("batch".into()))?;
        self.wake_workers();
        Ok(b)
    }

    /// A SIM (never secrets).
    pub async fn get_sim(&self, tenant: &Tenant, iccid: &str) -> Result<SimRecord, ServiceError> {
        if !valid_iccid(iccid) {
            return Err(ServiceError::NotFound("sim".into()));
        }
        self.store
            .get_sim(&tenant.id, iccid)
            .await
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound("sim".into()))
    }

    /// A page of SIMs; the cursor is the last ICCID.
    pub async fn list_sims(
        &self,
        tenant: &Tenant,
        mut filter: SimFilter,
    ) -> Result<Page<SimRecord>, ServiceError> {
        let limit = page_limit(filter.limit);
        filter.limit = limit + 1;
        let rows = self
            .store
            .list_sims(&tenant.id, &filter)
            .await
            .map_err(internal)?;
        Ok(paginate(rows, limit, |s| s.sim.iccid.clone()))
    }

    /// A SIM's history, oldest first; the cursor is the last entry id.
    pub async fn sim_history(
        &self,
        tenant: &Tenant,
        iccid: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Page<HistoryEntry>, ServiceError> {
        self.get_sim(tenant, iccid).await?;
        let limit = page_limit(limit);
        let rows = self
            .store
            .sim_history(&tenant.id, iccid, after_id, limit + 1)
            .await
            .map_err(internal)?;
        Ok(paginate(rows, limit, |h| h.id.to_string()))
    }

    /// Events after `after`; when there are none yet, polls the store every
    /// 200 ms until `wait` elapses (so it works across replicas). The cursor
    /// is always set: the last seq returned, or `after`.
    pub async fn events(
        &self,
        tenant: &Tenant,
        after: i64,
        limit: i64,
        wait: Duration,
    ) -> Result<Page<Event>, ServiceError> {
        let limit = page_limit(limit);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let rows = self
                .store
                .events_after(&tenant.id, after, limit)
                .await
                .map_err(internal)?;
            let now = tokio::time::Instant::now();
            if !rows.is_empty() || now >= deadline {
                let next = rows.last().map(|e| e.seq).unwrap_or(after);
                return Ok(Page {
                    data: rows,
                    next_cursor: Some(next.to_string()),
                });
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(200))).await;
        }
    }

    /// Register a webhook endpoint (http or https); the secret is returned once.
    pub async fn create_webhook(
        &self,
        tenant: &Tenant,
        url: &str,
    ) -> Result<Webhook, ServiceError> {
        let url = validate_webhook_url(url)?;
        self.store
            .create_webhook(&tenant.id, &url)
            .await
            .map_err(state_conflict)
    }

    /// Set the tenant's push endpoint of a dialect `format` (e.g. `smarthub`):
    /// it replaces the previous one, and its signing secret is returned once.
    pub async fn set_push_endpoint(
        &self,
        tenant: &Tenant,
        format: &str,
        url: &str,
    ) -> Result<Webhook, ServiceError> {
        if !crate::push::is_known(format) {
            return Err(ServiceError::invalid(format!(
                "unknown push format '{format}'"
            )));
        }
        let url = validate_webhook_url(url)?;
        let hook = self
            .store
            .create_webhook_with_format(&tenant.id, &url, format)
            .await
            .map_err(state_conflict)?;
        for old in self.list_webhooks(tenant).await? {
            if old.format == format && old.id != hook.id {
                self.store
                    .delete_webhook(&tenant.id, &old.id)
                    .await
                    .map_err(internal)?;
            }
        }
        Ok(hook)
    }

    /// The tenant's push endpoint of a dialect `format`, if one is set.
    pub async fn push_endpoint(
        &self,
        tenant: &Tenant,
        format: &str,
    ) -> Result<Option<Webhook>, ServiceError> {
        Ok(self
            .list_webhooks(tenant)
            .await?
            .into_iter()
            .rev()
            .find(|w| w.format == format))
    }

    /// The tenant's webhook endpoints.
    pub async fn list_webhooks(&self, tenant: &Tenant) -> Result<Vec<Webhook>, ServiceError> {
        self.store.list_webhooks(&tenant.id).await.map_err(internal)
    }

    /// One webhook endpoint.
    pub async fn get_webhook(&self, tenant: &Tenant, id: &str) -> Result<Webhook, ServiceError> {
        if !valid_id(id) {
            return Err(ServiceError::NotFound("webhook".into()));
        }
        self.store
            .get_webhook(&tenant.id, id)
            .await
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound("webhook".into()))
    }

    /// Remove a webhook endpoint.
    pub async fn delete_webhook(&self, tenant: &Tenant, id: &str) -> Result<(), ServiceError> {
        if !valid_id(id) {
            return Err(ServiceError::NotFound("webhook".into()));
        }
        if self
            .store
            .delete_webhook(&tenant.id, id)
            .await
            .map_err(internal)?
        {
            Ok(())
        } else {
            Err(ServiceError::NotFound("webhook".into()))
        }
    }

    /// Recent delivery attempts of an endpoint, newest first.
    pub async fn webhook_deliveries(
        &self,
        tenant: &Tenant,
        id: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryLog>, ServiceError> {
        self.get_webhook(tenant, id).await?;
        self.store
            .delivery_log(&tenant.id, id, page_limit(limit))
            .await
            .map_err(internal)
    }

    /// Run one order as an implicit batch of one (source `native`), waiting
    /// up to `wait` for the item to become terminal.
    pub async fn run_single(
        &self,
        tenant: &Tenant,
        operation: Operation,
        iccid: &str,
        fields: Map<String, Value>,
        wait: Duration,
    ) -> Result<(BatchRecord, Option<ItemRecord>), ServiceError> {
        self.run_single_from(tenant, "native", operation, iccid, fields, wait)
            .await
    }

    /// [`Service::run_single`] for a given source (dialect). An invalid item
    /// is refused as `InvalidRequest` and nothing is stored.
    pub async fn run_single_from(
        &self,
        tenant: &Tenant,
        source: &str,
        operation: Operation,
        iccid: &str,
        mut fields: Map<String, Value>,
        wait: Duration,
    ) -> Result<(BatchRecord, Option<ItemRecord>), ServiceError> {
        fields.insert("iccid".into(), Value::String(iccid.to_owned()));
        if let Err(r) = simbatch_core::parse_item(operation, &fields, self.cfg.validation) {
            return Err(ServiceError::InvalidRequest {
                message: r.reason.clone(),
                errors: vec![RejectedItem {
                    index: 0,
                    field: r.field,
                    code: r.code,
                    reason: r.reason,
                }],
            });
        }
        let report = self
            .submit(
                tenant,
                SubmitRequest {
                    operation: Some(operation),
                    mode: BatchMode::Parallel,
                    items: vec![fields],
                    dry_run: false,
                    source: source.to_owned(),
                    external_ref: None,
                },
            )
            .await?;
        let batch = report.batch.ok_or(ServiceError::Internal)?;
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let items = self
                .store
                .list_items(
                    &tenant.id,
                    &batch.id,
                    &ItemFilter {
                        limit: 1,
                        ..Default::default()
                    },
                )
                .await
                .map_err(internal)?;
            let item = items.into_iter().next();
            let now = tokio::time::Instant::now();
            let done = item.as_ref().is_some_and(|i| i.status.is_terminal());
            if done || now >= deadline {
                let batch = self.get_batch(tenant, &batch.id).await?;
                return Ok((batch, item));
            }
            tokio::time::sleep((deadline - now).min(Duration::from_millis(50))).await;
        }
    }
}

/// Accept absolute http(s) URLs with a host and no credentials.
fn validate_webhook_url(raw: &str) -> Result<String, ServiceError> {
    let raw = raw.trim();
    if raw.len() > MAX_URL_LEN {
        return Err(ServiceError::invalid(format!(
            "url must be at most {MAX_URL_LEN} characters"
        )));
    }
    let parsed = url::Url::parse(raw)
        .map_err(|e| ServiceError::invalid(format!("url is not a valid URL: {e}")))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(ServiceError::invalid("url must use http or https"));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        return Err(ServiceError::invalid("url must name a host"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err(ServiceError::invalid("url must not carry credentials"));
    }
    Ok(parsed.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn webhook_urls() {
        assert!(validate_webhook_url("https://example.com/hook").is_ok());
        assert!(validate_webhook_url("http://127.0.0.1:9/x").is_ok());
        for bad in [
            "ftp://x/y",
            "not a url",
            "https://u:p@x/",
            "javascript:alert(1)",
            "",
        ] {
            assert!(validate_webhook_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn paginate_sets_cursor_only_when_more() {
        let p = paginate(vec![1, 2, 3], 2, |v| v.to_string());
        assert_eq!((p.data, p.next_cursor), (vec![1, 2], Some("2".into())));
        let p = paginate(vec![1, 2], 2, |v| v.to_string());
        assert_eq!(p.next_cursor, None);
    }
}
