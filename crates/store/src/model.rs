//! Records that cross the [`crate::Store`] boundary.
//!
//! Times are Unix milliseconds (UTC) everywhere, on both backends.

use serde::Serialize;
use serde_json::{Map, Value};
use simbatch_core::{
    BatchMode, BatchStatus, Counts, Failure, ItemStatus, Operation, Outcome, Rejection, Sim,
};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// A tenant: the owner of SIMs, batches, events, webhooks and keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Tenant {
    /// Opaque id (UUID text).
    pub id: String,
    /// Unique name.
    pub name: String,
}

/// A key just created: the only time its secret is visible.
#[derive(Debug, Clone, Serialize)]
pub struct NewKey {
    /// Tenant name.
    pub tenant: String,
    /// Public key id (`sk_` + 16 hex).
    pub key_id: String,
    /// Secret (64 hex); stored only as SHA-256.
    pub secret: String,
    /// `<key_id>.<secret>`, what clients send.
    pub token: String,
}

impl NewKey {
    /// Fresh key material for `tenant`: `sk_` + 16 hex id, 64 hex secret.
    pub fn generate(tenant: &str) -> Self {
        let key_id = format!("sk_{}", crate::crypto::random_hex(8));
        let secret = crate::crypto::random_hex(32);
        Self {
            tenant: tenant.to_owned(),
            token: format!("{key_id}.{secret}"),
            key_id,
            secret,
        }
    }

    /// What is stored in place of the secret.
    pub fn secret_hash(&self) -> String {
        crate::crypto::hash_secret(&self.secret)
    }
}

/// A key as listed: never the secret.
#[derive(Debug, Clone, Serialize)]
pub struct KeyInfo {
    /// Public key id.
    pub key_id: String,
    /// Tenant name.
    pub tenant: String,
    /// Creation time.
    pub created_at: i64,
    /// Revocation time, if revoked.
    pub revoked_at: Option<i64>,
}

/// A stored template, without its content.
#[derive(Debug, Clone, Serialize)]
pub struct TemplateInfo {
    /// Name (Simlessly's configName).
    pub name: String,
    /// Size in bytes.
    pub size: i64,
    /// SHA-256 of the content, hex.
    pub sha256: String,
    /// Creation time.
    pub created_at: i64,
}

impl TemplateInfo {
    /// Describe a template about to be stored.
    pub fn describe(name: &str, content: &[u8]) -> Self {
        use sha2::Digest;
        Self {
            name: name.to_owned(),
            size: content.len() as i64,
            sha256: hex::encode(sha2::Sha256::digest(content)),
            created_at: now_ms(),
        }
    }
}

/// What a new batch is.
#[derive(Debug, Clone)]
pub struct NewBatch {
    /// Owner.
    pub tenant_id: String,
    /// The single operation, or None for a mixed batch.
    pub operation: Option<Operation>,
    /// Ordering mode.
    pub mode: BatchMode,
    /// Dialect that created it (`native`, `simlessly`, ...).
    pub source: String,
    /// Dialect's own id for the batch, if it has one (Simlessly batchCode, Smarthub jobId).
    pub external_ref: Option<String>,
    /// Batch this one retries.
    pub parent_id: Option<String>,
}

/// A batch as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BatchRecord {
    /// UUID v7 text: sorts by creation.
    pub id: String,
    /// Owner.
    pub tenant_id: String,
    /// The single operation, or None for a mixed batch.
    pub operation: Option<Operation>,
    /// Ordering mode.
    pub mode: BatchMode,
    /// Status.
    pub status: BatchStatus,
    /// Per-state item counts.
    pub counts: Counts,
    /// Dialect that created it.
    pub source: String,
    /// Dialect's own id.
    pub external_ref: Option<String>,
    /// Batch this one retries.
    pub parent_id: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
    /// When it became terminal.
    pub completed_at: Option<i64>,
}

/// One item to add to a batch.
#[derive(Debug, Clone)]
pub struct NewItem {
    /// 0-based position in the batch.
    pub seq: i64,
    /// ICCID as given (trimmed); may be invalid text when the item is rejected.
    pub iccid: String,
    /// Operation, None when the client named an unknown one (then rejected).
    pub operation: Option<Operation>,
    /// Non-secret fields.
    pub params: Map<String, Value>,
    /// Secret fields (ki, opc, cc): the store encrypts them.
    pub secret: Map<String, Value>,
    /// Rejection, if the item is refused; otherwise it is APPROVED.
    pub rejection: Option<Rejection>,
}

/// An item as shown to clients (never secrets).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ItemRecord {
    /// Global item id, in submission order: the order id dialects show.
    pub id: i64,
    /// Owning batch.
    pub batch_id: String,
    /// 0-based position in the batch.
    pub seq: i64,
    /// ICCID as given.
    pub iccid: String,
    /// Operation (None if unknown at submission).
    pub operation: Option<Operation>,
    /// Status.
    pub status: ItemStatus,
    /// Non-secret fields as given.
    pub params: Map<String, Value>,
    /// Field to blame, for rejections.
    pub error_field: Option<String>,
    /// Stable error code.
    pub error_code: Option<String>,
    /// Human reason.
    pub error_reason: Option<String>,
    /// Operation result (e.g. activation code).
    pub result: Option<Value>,
    /// Last change.
    pub updated_at: i64,
}

/// Filters for listing batches; newest first, keyset on (created_at, id).
#[derive(Debug, Clone, Default)]
pub struct BatchFilter {
    /// Only this status.
    pub status: Option<BatchStatus>,
    /// Only this operation.
    pub operation: Option<Operation>,
    /// Created at or after.
    pub created_after: Option<i64>,
    /// Created before.
    pub created_before: Option<i64>,
    /// Only batches older than this id (the cursor: last id of the previous page).
    pub before_id: Option<String>,
    /// Page size.
    pub limit: i64,
}

/// Filters for listing a batch's items; by seq, keyset.
#[derive(Debug, Clone, Default)]
pub struct ItemFilter {
    /// Only this status.
    pub status: Option<ItemStatus>,
    /// Only items with seq greater than this.
    pub after_seq: Option<i64>,
    /// Page size.
    pub limit: i64,
}

/// Filters for listing SIMs; by ICCID, keyset.
#[derive(Debug, Clone, Default)]
pub struct SimFilter {
    /// Only this status.
    pub status: Option<simbatch_core::SimStatus>,
    /// Only this rate plan.
    pub rate_plan: Option<String>,
    /// Custom field N (1–5) equal to value.
    pub custom_field: Option<(u8, String)>,
    /// Only this IMSI.
    pub imsi: Option<String>,
    /// Only this MSISDN.
    pub msisdn: Option<String>,
    /// ICCIDs greater than this.
    pub after_iccid: Option<String>,
    /// Page size.
    pub limit: i64,
}

/// A SIM with its timestamps.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SimRecord {
    /// The SIM.
    #[serde(flatten)]
    pub sim: Sim,
    /// Whether Ki is on file (the value never leaves the store).
    pub has_ki: bool,
    /// Creation time.
    pub created_at: i64,
    /// Last change.
    pub updated_at: i64,
}

/// One entry of a SIM's history.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct HistoryEntry {
    /// Monotonic id (cursor).
    pub id: i64,
    /// When.
    pub at: i64,
    /// Which operation caused it.
    pub operation: String,
    /// Status before (None when created).
    pub from_status: Option<String>,
    /// Status after.
    pub to_status: String,
    /// Batch of the order.
    pub batch_id: Option<String>,
    /// Order (item) id.
    pub order_id: Option<i64>,
}

/// An item handed to a worker under a lease.
#[derive(Debug, Clone)]
pub struct ClaimedItem {
    /// Global item id (submission order).
    pub id: i64,
    /// Owning batch.
    pub batch_id: String,
    /// Owner.
    pub tenant_id: String,
    /// Position in batch.
    pub seq: i64,
    /// Batch mode.
    pub mode: BatchMode,
    /// Operation.
    pub operation: Operation,
    /// ICCID.
    pub iccid: String,
    /// All fields, secrets decrypted, ready for `parse_item`.
    pub fields: Map<String, Value>,
    /// The SIM now, if it exists.
    pub sim: Option<Sim>,
    /// Whether the SIM already has an eSIM profile.
    pub has_profile: bool,
}

/// A chunk of claimed items and the token that fences their completion.
#[derive(Debug, Clone, Default)]
pub struct Claim {
    /// Lease token; completion only applies to items still holding it.
    pub token: String,
    /// The items.
    pub items: Vec<ClaimedItem>,
}

/// What happened to one claimed item.
#[derive(Debug, Clone)]
pub struct Completion {
    /// The claimed item.
    pub item: ClaimedItem,
    /// Its outcome.
    pub result: Result<Outcome, Failure>,
    /// Ki and OPc (hex) to store with a SIM the order created.
    pub sim_secrets: Option<(Option<String>, Option<String>)>,
    /// The personalised profile package (DER) of a generated profile; sealed at rest.
    pub package: Option<Vec<u8>>,
}

impl Completion {
    /// This completion turned into a failure with `code` and `reason`: no
    /// effects, no secrets, no package; only the item's result and its event.
    pub fn failed(&self, code: &str, reason: String) -> Completion {
        Completion {
            item: self.item.clone(),
            result: Err(Failure {
                code: code.to_owned(),
                reason,
            }),
            sim_secrets: None,
            package: None,
        }
    }
}

/// What `complete` did.
#[derive(Debug, Clone, Default)]
pub struct CompleteSummary {
    /// Items whose result was committed.
    pub applied: usize,
    /// Items skipped because their lease had passed to another worker.
    pub fenced_out: usize,
    /// Items completed / failed / canceled (followers after a failure).
    pub completed: usize,
    /// Failed items.
    pub failed: usize,
    /// Follower items canceled in sequential mode.
    pub canceled: usize,
    /// Batches that became terminal, with their new status.
    pub finished: Vec<(String, BatchStatus)>,
    /// Applied items per operation, for metrics (see [`crate::plan::count_by_operation`]).
    pub by_operation: Vec<OperationCount>,
}

impl CompleteSummary {
    /// Add another part of the same chunk (applied piece by piece) to this one.
    pub fn merge(&mut self, other: CompleteSummary) {
        self.applied += other.applied;
        self.fenced_out += other.fenced_out;
        self.completed += other.completed;
        self.failed += other.failed;
        self.canceled += other.canceled;
        self.finished.extend(other.finished);
        for c in other.by_operation {
            let slot = crate::plan::operation_slot(&mut self.by_operation, c.operation);
            slot.completed += c.completed;
            slot.failed += c.failed;
            slot.canceled += c.canceled;
        }
    }
}

/// Applied items of one operation in a completed chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OperationCount {
    /// The operation.
    pub operation: Operation,
    /// Items that succeeded.
    pub completed: u64,
    /// Items that failed.
    pub failed: u64,
    /// Items never run because an earlier item for their ICCID failed
    /// (sequential mode); counted under their own operation.
    pub canceled: u64,
}

/// An event from the outbox / feed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Cursor (monotonic per database).
    pub seq: i64,
    /// Stable event id (UUID), for deduplication by receivers.
    pub id: String,
    /// Type, e.g. `batch.completed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When.
    pub created_at: i64,
    /// Payload.
    pub data: Value,
}

/// A webhook endpoint.
#[derive(Debug, Clone, Serialize)]
pub struct Webhook {
    /// Id (UUID text).
    pub id: String,
    /// Owner.
    #[serde(skip)]
    pub tenant_id: String,
    /// Target URL.
    pub url: String,
    /// Whether deliveries are attempted.
    pub enabled: bool,
    /// Why it was disabled (e.g. the endpoint answered 410).
    pub disabled_reason: Option<String>,
    /// Creation time.
    pub created_at: i64,
    /// Signing secret `whsec_<base64>`; only filled for the dispatcher and on creation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
    /// Outbox cursor: events up to here are delivered.
    #[serde(skip)]
    pub cursor: i64,
    /// Consecutive failed attempts of the event at the head.
    #[serde(skip)]
    pub attempts: i64,
    /// What it receives: [`WEBHOOK_STANDARD`] or a dialect push format (e.g. `smarthub`).
    #[serde(skip)]
    pub format: String,
}

/// The format of ordinary webhooks: every event, Standard Webhooks payload.
pub const WEBHOOK_STANDARD: &str = "standard";

/// The result of one delivery attempt, for the log and the cursor.
#[derive(Debug, Clone)]
pub struct DeliveryAttempt {
    /// Webhook.
    pub webhook_id: String,
    /// Event delivered.
    pub event: Event,
    /// HTTP status, if any answer came.
    pub status_code: Option<i64>,
    /// Transport error, if any.
    pub error: Option<String>,
    /// How long it took.
    pub duration_ms: i64,
    /// What to do next.
    pub next: DeliveryNext,
    /// The event is not one this endpoint's format carries: nothing was
    /// sent, the cursor just moves on and no attempt is logged.
    pub skipped: bool,
}

/// What follows an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum DeliveryNext {
    /// Delivered: advance the cursor past the event.
    Advance,
    /// Retry the same event at this time.
    RetryAt(i64),
    /// Give up on the endpoint (410 Gone, or too many failures).
    Disable(String),
}

/// A logged delivery attempt.
#[derive(Debug, Clone, Serialize)]
pub struct DeliveryLog {
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Attempt number for that event, from 1.
    pub attempt: i64,
    /// HTTP status.
    pub status_code: Option<i64>,
    /// Transport error.
    pub error: Option<String>,
    /// Duration.
    pub duration_ms: i64,
    /// When.
    pub at: i64,
}

/// State of an idempotency key when a request arrives.
#[derive(Debug, Clone, PartialEq)]
pub enum Idempotency {
    /// First use: the caller runs the request, then calls `idempotency_finish`.
    New,
    /// Same key and body already answered: replay.
    Replay {
        /// HTTP status.
        status: u16,
        /// Body.
        body: String,
    },
    /// Same key, another body.
    Mismatch,
    /// Same key, first request still running.
    InProgress,
}
