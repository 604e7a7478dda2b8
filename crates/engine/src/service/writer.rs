//! [`BatchWriter`]: validate items one at a time and store them in chunks,
//! so a million-item upload needs memory for two chunks only.
//!
//! A full chunk is written by a background task while the next one is
//! validated (at most one write in flight), so parsing and storing use two
//! cores; a failed write is reported by the next `push` or by `finish`.

use std::sync::Arc;

use serde_json::{Map, Value};
use simbatch_core::operation::SECRET_FIELDS;
use simbatch_core::{parse_item, BatchMode, Counts, Operation, Rejection};
use simbatch_store::{BatchRecord, NewBatch, NewItem, Store, StoreError, Tenant};
use tokio::sync::Notify;
use tokio::task::JoinHandle;

use super::{internal, RejectedItem, ServiceConfig, ServiceError, SubmitReport, CHUNK};

/// Longest text kept from a rejected item's values (and its ICCID).
const MAX_KEPT_VALUE: usize = 256;
/// Longest ICCID text stored for a rejected item.
const MAX_KEPT_ICCID: usize = 64;

/// Options of a streamed submission.
#[derive(Debug, Clone, Default)]
pub struct StreamOptions {
    /// The batch's operation; None for a mixed batch.
    pub operation: Option<Operation>,
    /// Ordering mode.
    pub mode: BatchMode,
    /// Validate only; store nothing.
    pub dry_run: bool,
    /// Dialect that submits.
    pub source: String,
    /// Dialect's own id for the batch.
    pub external_ref: Option<String>,
    /// Rejections kept in the report.
    pub max_reported: usize,
}

/// A submission in progress. Create it with [`super::Service::begin_stream`],
/// [`push`](Self::push) items, then [`finish`](Self::finish). The batch is
/// created when the first chunk is written; a writer dropped or aborted
/// before `finish` cancels that batch.
pub struct BatchWriter {
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    cfg: ServiceConfig,
    tenant: Tenant,
    opts: StreamOptions,
    batch: Option<BatchRecord>,
    buf: Vec<NewItem>,
    /// The chunk being written in the background, if any.
    pending: Option<JoinHandle<Result<(), StoreError>>>,
    next_seq: usize,
    counts: Counts,
    rejected: Vec<RejectedItem>,
    truncated: bool,
    done: bool,
}

impl std::fmt::Debug for BatchWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchWriter")
            .field("tenant", &self.tenant.id)
            .field("batch", &self.batch.as_ref().map(|b| &b.id))
            .field("next_seq", &self.next_seq)
            .finish()
    }
}

impl BatchWriter {
    pub(super) fn new(
        store: Arc<dyn Store>,
        wake: Arc<Notify>,
        cfg: ServiceConfig,
        tenant: Tenant,
        opts: StreamOptions,
    ) -> Self {
        Self {
            store,
            wake,
            cfg,
            tenant,
            opts,
            batch: None,
            buf: Vec::with_capacity(CHUNK),
            pending: None,
            next_seq: 0,
            counts: Counts::default(),
            rejected: Vec::new(),
            truncated: false,
            done: false,
        }
    }

    /// Items pushed so far.
    pub fn len(&self) -> usize {
        self.next_seq
    }

    /// Whether nothing was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.next_seq == 0
    }

    /// Validate one item and buffer it; writes a chunk when the buffer is full.
    pub async fn push(&mut self, fields: Map<String, Value>) -> Result<(), ServiceError> {
        let item = self.check_capacity()?;
        let item = to_new_item(item as i64, self.opts.operation, fields, &self.cfg);
        self.account(item).await
    }

    /// Record an item refused before it could be read as fields (a malformed
    /// CSV row or NDJSON line): it is kept as REJECTED at its index.
    pub async fn push_rejected(&mut self, rejection: Rejection) -> Result<(), ServiceError> {
        let seq = self.check_capacity()?;
        let item = NewItem {
            seq: seq as i64,
            iccid: String::new(),
            operation: self.opts.operation,
            params: Map::new(),
            secret: Map::new(),
            rejection: Some(rejection),
        };
        self.account(item).await
    }

    /// Record an item a dialect refused before core could parse it (an
    /// unsupported request, an unknown subscription): it is kept as REJECTED
    /// at its index with the rejection given, and with its short, non-secret
    /// fields (so the client's correlation id, `reference`, stays visible).
    pub async fn push_refused(
        &mut self,
        fields: Map<String, Value>,
        rejection: Rejection,
    ) -> Result<(), ServiceError> {
        let seq = self.check_capacity()?;
        let item = rejected(seq as i64, self.opts.operation, &fields, rejection);
        self.account(item).await
    }

    fn check_capacity(&mut self) -> Result<usize, ServiceError> {
        if self.done {
            return Err(ServiceError::invalid("the submission is already finished"));
        }
        if self.next_seq >= self.cfg.max_items {
            return Err(ServiceError::TooManyItems {
                max: self.cfg.max_items,
            });
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        Ok(seq)
    }

    async fn account(&mut self, item: NewItem) -> Result<(), ServiceError> {
        self.counts.total += 1;
        match &item.rejection {
            Some(r) => {
                self.counts.rejected += 1;
                if self.rejected.len() < self.opts.max_reported {
                    self.rejected.push(RejectedItem {
                        index: item.seq as usize,
                        field: r.field.clone(),
                        code: r.code.clone(),
                        reason: r.reason.clone(),
                    });
                } else {
                    self.truncated = true;
                }
            }
            None => self.counts.approved += 1,
        }
        if self.opts.dry_run {
            return Ok(());
        }
        self.buf.push(item);
        if self.buf.len() >= CHUNK {
            self.flush().await?;
        }
        Ok(())
    }

    /// Wait for the chunk being written, if any.
    async fn settle(&mut self) -> Result<(), ServiceError> {
        match self.pending.take() {
            None => Ok(()),
            Some(task) => match task.await {
                Ok(r) => r.map_err(internal),
                Err(e) => {
                    tracing::error!(error = %e, "writing a chunk of items failed");
                    Err(ServiceError::Internal)
                }
            },
        }
    }

    async fn flush(&mut self) -> Result<(), ServiceError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let batch_id = match &self.batch {
            Some(b) => b.id.clone(),
            None => {
                let b = self
                    .store
                    .create_batch(&NewBatch {
                        tenant_id: self.tenant.id.clone(),
                        operation: self.opts.operation,
                        mode: self.opts.mode,
                        source: self.opts.source.clone(),
                        external_ref: self.opts.external_ref.clone(),
                        parent_id: None,
                    })
                    .await
                    .map_err(internal)?;
                let id = b.id.clone();
                self.batch = Some(b);
                id
            }
        };
        // One write in flight: the previous chunk is stored before this one
        // starts, so items are appended in order.
        self.settle().await?;
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        let (store, tenant) = (self.store.clone(), self.tenant.id.clone());
        self.pending = Some(tokio::spawn(async move {
            store.append_items(&tenant, &batch_id, &chunk).await
        }));
        Ok(())
    }

    /// Store what is buffered, seal the batch and wake the workers.
    /// `EmptyBatch` if nothing was pushed.
    pub async fn finish(mut self) -> Result<SubmitReport, ServiceError> {
        if self.next_seq == 0 {
            self.done = true;
            return Err(ServiceError::EmptyBatch);
        }
        let batch = if self.opts.dry_run {
            None
        } else {
            if let Err(e) = self.flush().await {
                self.abort_inner().await;
                return Err(e);
            }
            if let Err(e) = self.settle().await {
                self.abort_inner().await;
                return Err(e);
            }
            let Some(id) = self.batch.as_ref().map(|b| b.id.clone()) else {
                return Err(ServiceError::Internal);
            };
            let sealed = match self.store.seal_batch(&self.tenant.id, &id).await {
                Ok(b) => b,
                Err(e) => {
                    let err = internal(e);
                    self.abort_inner().await;
                    return Err(err);
                }
            };
            self.wake.notify_waiters();
            self.wake.notify_one();
            Some(sealed)
        };
        self.done = true;
        let counts = batch.as_ref().map(|b| b.counts).unwrap_or(self.counts);
        Ok(SubmitReport {
            batch,
            counts,
            rejected: std::mem::take(&mut self.rejected),
            rejected_truncated: self.truncated,
        })
    }

    /// Give up: cancel the batch if one was created. Nothing runs.
    pub async fn abort(mut self) {
        self.abort_inner().await;
    }

    async fn abort_inner(&mut self) {
        self.done = true;
        self.buf.clear();
        // Let a write in flight end first, so the cancel sees every stored item.
        let _ = self.settle().await;
        if let Some(b) = self.batch.take() {
            if let Err(e) = self.store.cancel_batch(&self.tenant.id, &b.id).await {
                tracing::warn!(batch = %b.id, error = %e, "could not cancel an aborted upload");
            }
        }
    }
}

impl Drop for BatchWriter {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let Some(b) = self.batch.take() else { return };
        let store = self.store.clone();
        let tenant = self.tenant.id.clone();
        let pending = self.pending.take();
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                if let Some(task) = pending {
                    let _ = task.await;
                }
                if let Err(e) = store.cancel_batch(&tenant, &b.id).await {
                    tracing::warn!(batch = %b.id, error = %e, "could not cancel an abandoned upload");
                }
            });
        }
    }
}

/// Validate one item's fields into a [`NewItem`] (approved or rejected).
pub(crate) fn to_new_item(
    seq: i64,
    batch_op: Option<Operation>,
    mut fields: Map<String, Value>,
    cfg: &ServiceConfig,
) -> NewItem {
    let item_op = fields.remove("operation");
    let op = resolve_operation(batch_op, item_op.as_ref());
    let op = match op {
        Ok(op) => op,
        Err(r) => return rejected(seq, batch_op, &fields, r),
    };
    match parse_item(op, &fields, cfg.validation) {
        Ok(parsed) => NewItem {
            seq,
            iccid: parsed.order.iccid.as_str().to_owned(),
            operation: Some(op),
            params: parsed.public,
            secret: parsed.secret,
            rejection: None,
        },
        Err(r) => rejected(seq, Some(op), &fields, r),
    }
}

fn resolve_operation(
    batch_op: Option<Operation>,
    item_op: Option<&Value>,
) -> Result<Operation, Rejection> {
    let named = match item_op {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) if s.trim().is_empty() => None,
        Some(Value::String(s)) => Some(Operation::parse(s.trim()).ok_or_else(|| {
            Rejection::field(
                "operation",
                "unknown_operation",
                format!("unknown operation '{}'", simbatch_core::ids::clip(s)),
            )
        })?),
        Some(_) => {
            return Err(Rejection::field(
                "operation",
                "unknown_operation",
                "operation must be a string naming an operation",
            ))
        }
    };
    match (batch_op, named) {
        (Some(b), Some(n)) if b != n => Err(Rejection::field(
            "operation",
            "operation_mismatch",
            format!("item operation {n} differs from the batch operation {b}"),
        )),
        (Some(b), _) => Ok(b),
        (None, Some(n)) => Ok(n),
        (None, None) => Err(Rejection::field(
            "operation",
            "missing_field",
            "operation is required on every item of a mixed batch",
        )),
    }
}

/// A rejected item keeps only short, non-secret values, so nothing secret
/// or huge is stored or shown.
fn rejected(
    seq: i64,
    op: Option<Operation>,
    fields: &Map<String, Value>,
    rejection: Rejection,
) -> NewItem {
    let iccid = match fields.get("iccid") {
        Some(Value::String(s)) => s.trim().chars().take(MAX_KEPT_ICCID).collect(),
        _ => String::new(),
    };
    let params = fields
        .iter()
        .filter(|(k, _)| k.len() <= 64 && !SECRET_FIELDS.contains(&k.as_str()))
        .filter(|(_, v)| match v {
            Value::String(s) => s.len() <= MAX_KEPT_VALUE,
            Value::Object(_) | Value::Array(_) => false,
            _ => true,
        })
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    // Text columns cannot hold NUL on PostgreSQL: keep the rest of the text.
    let rejection = Rejection {
        field: rejection.field.map(|f| strip_nul(&f)),
        code: rejection.code,
        reason: strip_nul(&rejection.reason),
    };
    NewItem {
        seq,
        iccid: strip_nul(&iccid),
        operation: op,
        params,
        secret: Map::new(),
        rejection: Some(rejection),
    }
}

/// `s` without NUL characters, shown as U+FFFD instead.
fn strip_nul(s: &str) -> String {
    s.replace('\0', "\u{fffd}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn m(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    const ICCID: &str = "89860468152080349618";

    #[test]
    fn mixed_items_need_a_known_operation() {
        let cfg = ServiceConfig::default();
        let i = to_new_item(0, None, m(json!({"iccid": ICCID})), &cfg);
        let r = i.rejection.unwrap();
        assert_eq!(
            (r.field.as_deref(), r.code.as_str()),
            (Some("operation"), "missing_field")
        );
        let i = to_new_item(
            1,
            None,
            m(json!({"iccid": ICCID, "operation": "explode"})),
            &cfg,
        );
        assert_eq!(i.rejection.unwrap().code, "unknown_operation");
        let i = to_new_item(
            2,
            None,
            m(json!({"iccid": ICCID, "operation": "activate"})),
            &cfg,
        );
        assert!(i.rejection.is_none());
        assert_eq!(i.operation, Some(Operation::Activate));
        let i = to_new_item(
            3,
            Some(Operation::Suspend),
            m(json!({"iccid": ICCID, "operation": "activate"})),
            &cfg,
        );
        assert_eq!(i.rejection.unwrap().code, "operation_mismatch");
    }

    #[test]
    fn rejected_items_drop_secrets_and_huge_values() {
        let cfg = ServiceConfig::default();
        let i = to_new_item(
            0,
            Some(Operation::RegisterSim),
            m(
                json!({"iccid": "12", "ki": "00112233445566778899aabbccddeeff", "rate_plan": "x".repeat(10_000)}),
            ),
            &cfg,
        );
        assert!(i.rejection.is_some());
        assert!(!i.params.contains_key("ki"));
        assert!(!i.params.contains_key("rate_plan"));
        assert!(i.secret.is_empty());
    }
}
