//! The native `/v1` API: one file per resource, and the DTOs they share.
//!
//! DTOs live here (not in the store) so the wire format and its OpenAPI
//! schema are owned by the HTTP layer. Times are RFC 3339 (UTC).

pub mod batch_counts;
pub mod batches;
pub mod downloads;
pub mod esim;
pub mod events;
pub mod export;
pub mod formula;
pub mod profiles;
pub mod sims;
mod upload;
pub mod webhooks;

use serde::Serialize;
use serde_json::{Map, Value};
use simbatch_core::{BatchMode, BatchStatus, Counts, ItemStatus, Operation, Sim};
use simbatch_engine::service::RejectedItem;
use simbatch_store::{
    BatchRecord, DeliveryLog, Event, HistoryEntry, ItemRecord, SimRecord, Webhook,
};
use utoipa::ToSchema;

use crate::error::ApiError;

/// Unix milliseconds as RFC 3339 (UTC, millisecond precision).
pub fn rfc3339(ms: i64) -> String {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| t.format(&Rfc3339).ok())
        .unwrap_or_default()
}

/// Parse an RFC 3339 query value into Unix milliseconds (400 otherwise).
pub fn parse_rfc3339(name: &str, v: &str) -> Result<i64, ApiError> {
    use time::format_description::well_known::Rfc3339;
    time::OffsetDateTime::parse(v, &Rfc3339)
        .map(|t| (t.unix_timestamp_nanos() / 1_000_000) as i64)
        .map_err(|_| {
            ApiError::bad_request(
                "invalid_query",
                format!("{name} must be an RFC 3339 time, e.g. 2025-01-02T03:04:05Z"),
            )
        })
}

/// Check a page size: 1 to 1000, default 100.
pub fn page_size(limit: Option<i64>) -> Result<i64, ApiError> {
    match limit {
        None => Ok(100),
        Some(l) if (1..=1000).contains(&l) => Ok(l),
        Some(_) => Err(ApiError::bad_request(
            "invalid_query",
            "limit must be between 1 and 1000",
        )),
    }
}

/// Parse an operation name from a query or body (`code` names the failure).
pub fn parse_operation(v: &str) -> Option<Operation> {
    Operation::parse(v.trim())
}

/// A batch.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchDto {
    /// Batch id (UUID v7).
    pub id: String,
    /// Status.
    pub status: BatchStatus,
    /// The operation, or null for a mixed batch.
    pub operation: Option<Operation>,
    /// Ordering mode.
    pub mode: BatchMode,
    /// Item counts per state.
    pub counts: Counts,
    /// Which API created it (`native`, a dialect name).
    pub source: String,
    /// The creating dialect's own reference, if any.
    pub external_ref: Option<String>,
    /// The batch this one retries.
    pub parent_id: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
    /// When it became terminal.
    pub completed_at: Option<String>,
}

impl From<BatchRecord> for BatchDto {
    fn from(b: BatchRecord) -> Self {
        Self {
            id: b.id,
            status: b.status,
            operation: b.operation,
            mode: b.mode,
            counts: b.counts,
            source: b.source,
            external_ref: b.external_ref,
            parent_id: b.parent_id,
            created_at: rfc3339(b.created_at),
            updated_at: rfc3339(b.updated_at),
            completed_at: b.completed_at.map(rfc3339),
        }
    }
}

/// An item refused at submission.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedItemDto {
    /// 0-based item index (CSV: data row, NDJSON: non-blank line).
    pub index: usize,
    /// Field to blame, if any.
    pub field: Option<String>,
    /// Stable code, e.g. `iccid_invalid_length`, `missing_field`, `unknown_operation`.
    pub code: String,
    /// Human reason.
    pub reason: String,
}

impl From<RejectedItem> for RejectedItemDto {
    fn from(r: RejectedItem) -> Self {
        Self {
            index: r.index,
            field: r.field,
            code: r.code,
            reason: r.reason,
        }
    }
}

/// Why an item did not run or failed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemErrorDto {
    /// Field to blame, if any.
    pub field: Option<String>,
    /// Stable code.
    pub code: Option<String>,
    /// Human reason.
    pub reason: Option<String>,
}

/// One item of a batch (never secrets).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemDto {
    /// Owning batch.
    pub batch_id: String,
    /// 0-based position in the batch.
    pub index: i64,
    /// ICCID as given.
    pub iccid: String,
    /// Operation (null if the client named an unknown one).
    pub operation: Option<Operation>,
    /// Status.
    pub status: ItemStatus,
    /// Non-secret fields as given.
    #[schema(value_type = Object)]
    pub params: Map<String, Value>,
    /// Rejection or failure, if any.
    pub error: Option<ItemErrorDto>,
    /// Result (e.g. the activation code).
    #[schema(value_type = Option<Object>)]
    pub result: Option<Value>,
    /// Last change.
    pub updated_at: String,
}

impl From<ItemRecord> for ItemDto {
    fn from(i: ItemRecord) -> Self {
        let error = if i.error_code.is_some() || i.error_reason.is_some() {
            Some(ItemErrorDto {
                field: i.error_field,
                code: i.error_code,
                reason: i.error_reason,
            })
        } else {
            None
        };
        Self {
            batch_id: i.batch_id,
            index: i.seq,
            iccid: i.iccid,
            operation: i.operation,
            status: i.status,
            params: i.params,
            error,
            result: i.result,
            updated_at: rfc3339(i.updated_at),
        }
    }
}

/// A SIM (never secrets).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct SimDto {
    /// The SIM.
    #[serde(flatten)]
    pub sim: Sim,
    /// Whether a Ki is on file (its value is never shown).
    pub has_ki: bool,
    /// Creation time.
    pub created_at: String,
    /// Last change.
    pub updated_at: String,
}

impl From<SimRecord> for SimDto {
    fn from(s: SimRecord) -> Self {
        Self {
            sim: s.sim,
            has_ki: s.has_ki,
            created_at: rfc3339(s.created_at),
            updated_at: rfc3339(s.updated_at),
        }
    }
}

/// One change of a SIM's status.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct HistoryDto {
    /// Monotonic id (cursor).
    pub id: i64,
    /// When.
    pub at: String,
    /// Operation that caused it.
    pub operation: String,
    /// Status before (null when created).
    pub from_status: Option<String>,
    /// Status after.
    pub to_status: String,
    /// Batch of the order.
    pub batch_id: Option<String>,
    /// Order (item) id.
    pub order_id: Option<i64>,
}

impl From<HistoryEntry> for HistoryDto {
    fn from(h: HistoryEntry) -> Self {
        Self {
            id: h.id,
            at: rfc3339(h.at),
            operation: h.operation,
            from_status: h.from_status,
            to_status: h.to_status,
            batch_id: h.batch_id,
            order_id: h.order_id,
        }
    }
}

/// An event of the feed.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EventDto {
    /// Cursor.
    pub seq: i64,
    /// Stable id, for deduplication.
    pub id: String,
    /// Type, e.g. `batch.completed`.
    #[serde(rename = "type")]
    pub kind: String,
    /// When.
    pub created_at: String,
    /// Payload.
    #[schema(value_type = Object)]
    pub data: Value,
}

impl From<Event> for EventDto {
    fn from(e: Event) -> Self {
        Self {
            seq: e.seq,
            id: e.id,
            kind: e.kind,
            created_at: rfc3339(e.created_at),
            data: e.data,
        }
    }
}

/// A webhook endpoint.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookDto {
    /// Id.
    pub id: String,
    /// Target URL.
    pub url: String,
    /// Whether deliveries are attempted.
    pub enabled: bool,
    /// Why it was disabled.
    pub disabled_reason: Option<String>,
    /// Creation time.
    pub created_at: String,
    /// Signing secret (`whsec_…`): only in the response that creates it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub secret: Option<String>,
}

impl WebhookDto {
    /// The endpoint without its secret.
    pub fn public(w: Webhook) -> Self {
        Self {
            secret: None,
            ..Self::with_secret(w)
        }
    }
    /// The endpoint with its secret (creation only).
    pub fn with_secret(w: Webhook) -> Self {
        Self {
            id: w.id,
            url: w.url,
            enabled: w.enabled,
            disabled_reason: w.disabled_reason,
            created_at: rfc3339(w.created_at),
            secret: w.secret,
        }
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryDto {
    /// Event id.
    pub event_id: String,
    /// Event type.
    pub event_type: String,
    /// Attempt number for that event, from 1.
    pub attempt: i64,
    /// HTTP status answered.
    pub status_code: Option<i64>,
    /// Transport error.
    pub error: Option<String>,
    /// Duration in ms.
    pub duration_ms: i64,
    /// When.
    pub at: String,
}

impl From<DeliveryLog> for DeliveryDto {
    fn from(d: DeliveryLog) -> Self {
        Self {
            event_id: d.event_id,
            event_type: d.event_type,
            attempt: d.attempt,
            status_code: d.status_code,
            error: d.error,
            duration_ms: d.duration_ms,
            at: rfc3339(d.at),
        }
    }
}

macro_rules! page {
    ($(#[$doc:meta])* $name:ident, $item:ty) => {
        $(#[$doc])*
        #[derive(Debug, Clone, Serialize, ToSchema)]
        pub struct $name {
            /// The rows.
            pub data: Vec<$item>,
            /// Pass as `cursor` (events: `after`) to get the next page; null at the end.
            pub next_cursor: Option<String>,
        }
    };
}

page!(
    /// A page of batches, newest first.
    BatchPage,
    BatchDto
);
page!(
    /// A page of items, by index.
    ItemPage,
    ItemDto
);
page!(
    /// A page of SIMs, by ICCID.
    SimPage,
    SimDto
);
page!(
    /// A page of a SIM's history, oldest first.
    HistoryPage,
    HistoryDto
);
page!(
    /// Events after the cursor, oldest first; `next_cursor` is always set.
    EventPage,
    EventDto
);

/// The tenant's webhook endpoints.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct WebhookList {
    /// Endpoints.
    pub data: Vec<WebhookDto>,
}

/// Recent delivery attempts, newest first.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct DeliveryList {
    /// Attempts.
    pub data: Vec<DeliveryDto>,
}
