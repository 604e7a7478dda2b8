//! Workers: claim a chunk under a lease, execute it, complete it.
//!
//! Each worker loops on `Store::run_chunk`: the store picks a chunk, the
//! worker runs `core::execute` for every item on the blocking pool (it is CPU
//! work), and the store commits the results. Both backends hold the chunk in
//! one transaction, so a crash rolls it back and its items run again; items
//! left leased by `Store::claim` are taken over once the lease expires. Every
//! item is applied exactly once.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::BoxFuture;
use simbatch_core::{execute, parse_item, Context, Failure, Operation, ValidationProfile};
use simbatch_store::{ClaimedItem, Completion, Store};
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::personalise::{execute_parallel, package_for, TemplateCache, Templates};

/// Worker settings.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Concurrent worker loops (SQLite gains nothing beyond 1: it has one writer).
    pub workers: usize,
    /// Items claimed per round trip.
    pub chunk_size: usize,
    /// Lease length: how long a crashed worker's items stay untouched.
    pub lease: Duration,
    /// Poll interval when idle (a wake-up comes sooner on local submissions).
    pub idle_poll: Duration,
    /// SM-DP+ address written into new activation codes.
    pub smdp_address: String,
    /// Where to record per-chunk metrics, if anywhere.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
}

impl Default for WorkerConfig {
    fn default() -> Self {
        Self {
            workers: 1,
            chunk_size: 1000,
            lease: simbatch_store::DEFAULT_LEASE,
            idle_poll: Duration::from_millis(250),
            smdp_address: "smdp.simbatch.local".into(),
            metrics: None,
        }
    }
}

/// Counters the workers keep, for `/metrics` and the benchmark.
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Items completed.
    pub completed: AtomicU64,
    /// Items failed.
    pub failed: AtomicU64,
    /// Items whose lease had passed on (not applied by us).
    pub fenced_out: AtomicU64,
    /// Sum of claim-to-complete time of chunks, in microseconds, per item.
    pub latency_us_total: AtomicU64,
}

/// Running workers.
pub struct WorkerHandle {
    cancel: CancellationToken,
    tasks: Vec<JoinHandle<()>>,
    /// Shared counters.
    pub stats: Arc<WorkerStats>,
}

impl WorkerHandle {
    /// Stop claiming, let in-flight chunks finish and commit, then return.
    pub async fn shutdown(self) {
        self.cancel.cancel();
        for t in self.tasks {
            let _ = t.await;
        }
    }
}

/// Start `cfg.workers` worker loops.
pub fn start(store: Arc<dyn Store>, cfg: WorkerConfig, wake: Arc<Notify>) -> WorkerHandle {
    let cancel = CancellationToken::new();
    let stats = Arc::new(WorkerStats::default());
    let cfg = Arc::new(cfg);
    let templates = Arc::new(TemplateCache::default());
    let tasks = (0..cfg.workers.max(1))
        .map(|n| {
            let w = Worker {
                n,
                store: store.clone(),
                cfg: cfg.clone(),
                wake: wake.clone(),
                cancel: cancel.clone(),
                stats: stats.clone(),
                templates: templates.clone(),
            };
            tokio::spawn(w.run())
        })
        .collect();
    WorkerHandle {
        cancel,
        tasks,
        stats,
    }
}

struct Worker {
    n: usize,
    store: Arc<dyn Store>,
    cfg: Arc<WorkerConfig>,
    wake: Arc<Notify>,
    cancel: CancellationToken,
    stats: Arc<WorkerStats>,
    templates: Arc<TemplateCache>,
}

impl Worker {
    async fn run(self) {
        tracing::debug!(worker = self.n, "worker started");
        let mut backoff = Duration::from_millis(100);
        while !self.cancel.is_cancelled() {
            match self.round().await {
                Ok(true) => backoff = Duration::from_millis(100),
                Ok(false) => {
                    tokio::select! {
                        _ = self.wake.notified() => {}
                        _ = tokio::time::sleep(self.cfg.idle_poll) => {}
                        _ = self.cancel.cancelled() => {}
                    }
                }
                Err(e) => {
                    tracing::warn!(worker = self.n, error = %e, "worker round failed; retrying");
                    tokio::select! {
                        _ = tokio::time::sleep(backoff) => {}
                        _ = self.cancel.cancelled() => {}
                    }
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        tracing::debug!(worker = self.n, "worker stopped");
    }

    /// One claim–execute–complete round; false when there was nothing to do.
    async fn round(&self) -> Result<bool, simbatch_store::StoreError> {
        let started = Instant::now();
        let failure = Arc::new(std::sync::Mutex::new(None));
        let execute: Arc<simbatch_store::Executor> = Arc::new(executor(
            self.store.clone(),
            self.templates.clone(),
            Arc::from(self.cfg.smdp_address.as_str()),
            failure.clone(),
        ));
        // The chunk's results are committed even when shutdown was requested meanwhile.
        let Some(summary) = self
            .store
            .run_chunk(self.cfg.chunk_size, self.cfg.lease, &execute)
            .await?
        else {
            return Ok(false);
        };
        if let Some(e) = failure.lock().unwrap_or_else(|e| e.into_inner()).take() {
            // Nothing of the chunk was applied; its items run again after the back-off.
            return Err(e);
        }
        let n = summary.applied as u64;
        tracing::debug!(
            worker = self.n,
            items = n,
            ms = started.elapsed().as_secs_f64() * 1e3,
            "chunk done"
        );
        self.stats
            .completed
            .fetch_add(summary.completed as u64, Ordering::Relaxed);
        self.stats
            .failed
            .fetch_add(summary.failed as u64, Ordering::Relaxed);
        self.stats
            .fenced_out
            .fetch_add(summary.fenced_out as u64, Ordering::Relaxed);
        self.stats
            .latency_us_total
            .fetch_add(started.elapsed().as_micros() as u64 * n, Ordering::Relaxed);
        if let Some(m) = &self.cfg.metrics {
            m.chunk_done(&summary, started.elapsed());
        }
        for (batch, status) in &summary.finished {
            tracing::info!(batch_id = %batch, status = status.as_str(), "batch finished");
        }
        Ok(true)
    }
}

/// The executor a worker hands to [`Store::run_chunk`]: it runs a claimed
/// chunk's items on the blocking pool, across the cores when the chunk
/// personalises profiles. Other chunks take about a microsecond an item and
/// run on one thread: a second one only took a core from the store's writer.
///
/// Templates are read here, after the claim, and only for chunks that
/// personalise profiles: a template registered before an item was claimed is
/// always seen by that item. When they cannot be read, nothing of the chunk
/// is applied (its items run again later) and the error is left in `failure`.
pub fn executor(
    store: Arc<dyn Store>,
    templates: Arc<TemplateCache>,
    smdp: Arc<str>,
    failure: Arc<std::sync::Mutex<Option<simbatch_store::StoreError>>>,
) -> impl Fn(Vec<ClaimedItem>) -> BoxFuture<'static, Vec<Completion>> + Send + Sync {
    move |items: Vec<ClaimedItem>| -> BoxFuture<'static, Vec<Completion>> {
        let (store, cache, smdp, failure) = (
            store.clone(),
            templates.clone(),
            smdp.clone(),
            failure.clone(),
        );
        Box::pin(async move {
            let needs_templates = items.iter().any(|i| i.operation.reads_templates());
            let templates = if needs_templates {
                match cache.snapshot(store.as_ref()).await {
                    Ok(t) => t,
                    Err(e) => {
                        *failure.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                        return Vec::new();
                    }
                }
            } else {
                Arc::new(Templates::new())
            };
            // Off the async executor; across every core for personalisation,
            // which is heavy CPU work (see `crate::personalise`).
            let run = tokio::task::spawn_blocking(move || {
                let run = |item| run_item(item, &smdp, &templates);
                if needs_templates {
                    execute_parallel(items, run)
                } else {
                    items.into_iter().map(run).collect()
                }
            });
            run.await.unwrap_or_else(|e| {
                // Nothing is applied for this chunk; its items run again.
                tracing::error!(error = %e, "executor task failed");
                Vec::new()
            })
        })
    }
}

/// Execute one claimed item: parse its stored fields back into an order and
/// run it against the SIM it was claimed with.
///
/// A generated profile gets its package here: the named template personalised
/// with the item's values. If that fails, the item fails and nothing is stored.
///
/// A panic while executing one item (a bug, never expected on any input)
/// fails that item alone with `internal_error`; the rest of its chunk is
/// applied, so the chunk is not re-run forever.
pub fn run_item(item: ClaimedItem, smdp_address: &str, templates: &Templates) -> Completion {
    isolate(item, |item| evaluate(item, smdp_address, templates))
}

/// What executing an item gives: its result, the SIM secrets to store and
/// the personalised package.
type Evaluated = (
    Result<simbatch_core::Outcome, Failure>,
    Option<(Option<String>, Option<String>)>,
    Option<Vec<u8>>,
);

/// Run `evaluate` on `item`, turning a panic into an `internal_error` failure
/// of that item (the cause goes to the log, never to the item's reason).
fn isolate(item: ClaimedItem, evaluate: impl FnOnce(&ClaimedItem) -> Evaluated) -> Completion {
    let run = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| evaluate(&item)));
    let (result, sim_secrets, package) = run.unwrap_or_else(|_| {
        tracing::error!(item = item.id, batch = %item.batch_id, "executing the item panicked");
        let failure = Failure {
            code: "internal_error".into(),
            reason:
                "the item could not be executed because of an internal fault; nothing was applied"
                    .into(),
        };
        (Err(failure), None, None)
    });
    Completion {
        item,
        result,
        sim_secrets,
        package,
    }
}

/// The body of [`run_item`].
fn evaluate(item: &ClaimedItem, smdp_address: &str, templates: &Templates) -> Evaluated {
    // Items were validated at submission; `standard` re-parses them (a superset of `strict`).
    let parsed = parse_item(item.operation, &item.fields, ValidationProfile::Standard);
    let mut package = None;
    let (result, sim_secrets) = match parsed {
        Err(r) => (
            Err(Failure {
                code: r.code,
                reason: r.reason,
            }),
            None,
        ),
        Ok(p) => {
            let ctx = Context {
                smdp_address,
                has_profile: item.has_profile,
                template_exists: &|name: &str| templates.contains_key(name),
            };
            let mut result = execute(&p.order, item.sim.as_ref(), &ctx);
            if let Ok(outcome) = &result {
                let template = outcome
                    .profile
                    .as_ref()
                    .and_then(|pr| pr.template.as_deref());
                if let (Operation::GenerateActivationCode, Some(t)) = (item.operation, template) {
                    match templates.get(t).map(|t| package_for(&p.order, t)) {
                        Some(Ok(pkg)) => package = Some(pkg),
                        Some(Err(f)) => result = Err(f),
                        None => {} // execute checked it exists
                    }
                }
            }
            let a = &p.order.args;
            // An OP given instead of OPc is stored as the OPc it derives.
            let opc = a.opc.as_ref().map(|o| o.to_hex()).or_else(|| {
                let (ki, op) = (a.ki.as_ref()?, a.op.as_ref()?);
                Some(hex::encode_upper(simbatch_saip::derive_opc(
                    ki.bytes(),
                    op.bytes(),
                )))
            });
            let secrets = (result.is_ok() && (a.ki.is_some() || opc.is_some()))
                .then(|| (a.ki.as_ref().map(|k| k.to_hex()), opc));
            (result, secrets)
        }
    };
    (result, sim_secrets, package)
}

#[cfg(test)]
mod isolation_tests {
    use super::*;
    use simbatch_core::BatchMode;

    fn item(id: i64, operation: Operation) -> ClaimedItem {
        ClaimedItem {
            id,
            batch_id: "b".into(),
            tenant_id: "t".into(),
            seq: id,
            mode: BatchMode::Parallel,
            operation,
            iccid: format!("898824700000000000{id}"),
            fields: serde_json::Map::new(),
            sim: None,
            has_profile: false,
        }
    }

    #[test]
    fn a_panicking_item_fails_alone_with_internal_error() {
        let done = isolate(item(7, Operation::Activate), |_| panic!("a bug"));
        assert_eq!(done.item.id, 7);
        let failure = done.result.unwrap_err();
        assert_eq!(failure.code, "internal_error");
        assert!(!failure.reason.contains("a bug"), "{}", failure.reason);
        assert!(done.sim_secrets.is_none() && done.package.is_none());
    }

    #[test]
    fn an_item_that_does_not_panic_keeps_its_result() {
        let done = isolate(item(8, Operation::Activate), |_| {
            let f = Failure {
                code: "sim_not_found".into(),
                reason: "no such SIM".into(),
            };
            (Err(f), None, None)
        });
        assert_eq!(done.result.unwrap_err().code, "sim_not_found");
    }

    #[test]
    fn run_item_still_runs_real_orders() {
        // An activate of an unknown SIM fails in the engine's rules, not in `isolate`.
        let mut it = item(9, Operation::Activate);
        it.fields
            .insert("iccid".into(), serde_json::json!("89882470000000000016"));
        it.iccid = "89882470000000000016".into();
        let done = run_item(it, "smdp.example", &Templates::new());
        let failure = done.result.unwrap_err();
        assert_ne!(failure.code, "internal_error", "{failure:?}");
    }
}
