//! Engine tests against the real SQLite store: workers drive batches to their
//! end, apply each item once, keep per-SIM order and honour sequential mode.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use simbatch_core::{parse_item, BatchMode, BatchStatus, ItemStatus, Operation, ValidationProfile};
use simbatch_engine::worker::{self, WorkerConfig};
use simbatch_store::crypto::Cipher;
use simbatch_store::{BatchRecord, Executor, ItemFilter, NewBatch, NewItem, Store};
use tokio::sync::Notify;

async fn sqlite_store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    simbatch_store::open(&url, Cipher::new(&[3u8; 32]))
        .await
        .unwrap()
}

fn iccid(n: usize) -> String {
    format!("8988{n:016}")
}

/// Submit items straight through the store, as the service facade does.
async fn submit(
    store: &dyn Store,
    tenant: &str,
    op: Option<Operation>,
    mode: BatchMode,
    items: Vec<(Operation, Value)>,
) -> BatchRecord {
    let batch = store
        .create_batch(&NewBatch {
            tenant_id: tenant.into(),
            operation: op,
            mode,
            source: "test".into(),
            external_ref: None,
            parent_id: None,
        })
        .await
        .unwrap();
    let new: Vec<NewItem> = items
        .into_iter()
        .enumerate()
        .map(|(i, (op, v))| {
            let m: Map<String, Value> = v.as_object().unwrap().clone();
            match parse_item(op, &m, ValidationProfile::Standard) {
                Ok(p) => NewItem {
                    seq: i as i64,
                    iccid: p.order.iccid.to_string(),
                    operation: Some(op),
                    params: p.public,
                    secret: p.secret,
                    rejection: None,
                },
                Err(r) => NewItem {
                    seq: i as i64,
                    iccid: m["iccid"].as_str().unwrap_or("").into(),
                    operation: Some(op),
                    params: Map::new(),
                    secret: Map::new(),
                    rejection: Some(r),
                },
            }
        })
        .collect();
    for chunk in new.chunks(1000) {
        store.append_items(tenant, &batch.id, chunk).await.unwrap();
    }
    store.seal_batch(tenant, &batch.id).await.unwrap()
}

async fn wait_terminal(store: &dyn Store, tenant: &str, id: &str) -> BatchRecord {
    for _ in 0..400 {
        let b = store.get_batch(tenant, id).await.unwrap().unwrap();
        if b.status.is_terminal() && b.counts.processing == 0 {
            return b;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("batch {id} did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn register_then_activate_exactly_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    let tenant = store.create_key("acme").await.unwrap();
    let t = store
        .tenant_by_name(&tenant.tenant)
        .await
        .unwrap()
        .unwrap()
        .id;
    let wake = Arc::new(Notify::new());
    let workers = worker::start(
        store.clone(),
        WorkerConfig {
            chunk_size: 300,
            ..Default::default()
        },
        wake.clone(),
    );

    let n = 2500;
    let reg = (0..n)
        .map(|i| (Operation::RegisterSim, json!({"iccid": iccid(i), "imsi": "460048867619618", "ki": "465b5ce8b199b49faa5f0a2ee238a6bc"})))
        .collect();
    let b = submit(
        store.as_ref(),
        &t,
        Some(Operation::RegisterSim),
        BatchMode::Parallel,
        reg,
    )
    .await;
    let b = wait_terminal(store.as_ref(), &t, &b.id).await;
    assert_eq!(
        (b.status, b.counts.completed),
        (BatchStatus::Completed, n as i64)
    );

    let mut act: Vec<_> = (0..n)
        .map(|i| (Operation::Activate, json!({"iccid": iccid(i)})))
        .collect();
    act.push((Operation::Activate, json!({"iccid": "12"})));
    let b = submit(
        store.as_ref(),
        &t,
        Some(Operation::Activate),
        BatchMode::Parallel,
        act,
    )
    .await;
    assert_eq!(b.counts.rejected, 1);
    let b = wait_terminal(store.as_ref(), &t, &b.id).await;
    assert_eq!(b.status, BatchStatus::PartiallyCompleted);
    assert_eq!(
        (b.counts.completed, b.counts.rejected, b.counts.failed),
        (n as i64, 1, 0)
    );

    let sim = store.get_sim(&t, &iccid(7)).await.unwrap().unwrap();
    assert_eq!(sim.sim.status.as_str(), "ACTIVATED");
    assert!(sim.has_ki);
    let history = store.sim_history(&t, &iccid(7), 0, 10).await.unwrap();
    assert_eq!(history.len(), 2, "register + activate");
    let events = store.events_after(&t, 0, 100_000).await.unwrap();
    let count = |k: &str| events.iter().filter(|e| e.kind == k).count();
    assert_eq!(count("order.completed"), 2 * n);
    assert_eq!(count("sim.status_changed"), 2 * n);
    assert_eq!(count("batch.completed"), 1);
    assert_eq!(count("batch.partially_completed"), 1);
    workers.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn per_sim_order_and_sequential_stop() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    store.create_key("t").await.unwrap();
    let t = store.tenant_by_name("t").await.unwrap().unwrap().id;
    let wake = Arc::new(Notify::new());
    let workers = worker::start(store.clone(), WorkerConfig::default(), wake);
    let a = iccid(1);
    let b = iccid(2);
    // Mixed, sequential: register, activate, suspend, retire each apply in order;
    // for SIM b, the failing `resume` (it is ACTIVATED) stops its later items.
    let items = vec![
        (Operation::RegisterSim, json!({"iccid": a})),
        (Operation::RegisterSim, json!({"iccid": b})),
        (Operation::Activate, json!({"iccid": a})),
        (Operation::Activate, json!({"iccid": b})),
        (Operation::Suspend, json!({"iccid": a})),
        (Operation::Resume, json!({"iccid": b})),
        (Operation::Retire, json!({"iccid": a})),
        (Operation::Suspend, json!({"iccid": b})),
    ];
    let batch = submit(
        store.as_ref(),
        &t,
        None,
        BatchMode::SequentialPerIccid,
        items,
    )
    .await;
    let done = wait_terminal(store.as_ref(), &t, &batch.id).await;
    assert_eq!(done.status, BatchStatus::PartiallyCompleted);
    assert_eq!(
        (
            done.counts.completed,
            done.counts.failed,
            done.counts.canceled
        ),
        (6, 1, 1)
    );
    let items = store
        .list_items(
            &t,
            &batch.id,
            &ItemFilter {
                limit: 100,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(items[5].status, ItemStatus::Failed);
    assert_eq!(items[5].error_code.as_deref(), Some("illegal_status"));
    assert_eq!(items[7].status, ItemStatus::Canceled);
    assert_eq!(
        items[7].error_code.as_deref(),
        Some("preceding_item_failed")
    );
    assert_eq!(
        store
            .get_sim(&t, &a)
            .await
            .unwrap()
            .unwrap()
            .sim
            .status
            .as_str(),
        "RETIRED"
    );
    assert_eq!(
        store
            .get_sim(&t, &b)
            .await
            .unwrap()
            .unwrap()
            .sim
            .status
            .as_str(),
        "ACTIVATED"
    );

    // Retry makes a new batch of the failed item, linked to its parent.
    let retry = store.retry_batch(&t, &batch.id).await.unwrap().unwrap();
    assert_eq!(
        (retry.parent_id.as_deref(), retry.counts.total),
        (Some(batch.id.as_str()), 1)
    );
    workers.shutdown().await;
}

/// A `generate_activation_code` order for SIM `n` from `template`.
fn order_from(n: usize, template: &str) -> (Operation, serde_json::Value) {
    (
        Operation::GenerateActivationCode,
        json!({"iccid": iccid(n), "template": template, "imsi": format!("00101000000000{n}"),
               "ki": "000102030405060708090A0B0C0D0E0F", "opc": "0F0E0D0C0B0A09080706050403020100"}),
    )
}

/// A shared profile template file.
fn template_der() -> Vec<u8> {
    std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../../shared/profile-templates/TS48v5_SAIP2.3_NoBERTLV.der"),
    )
    .unwrap()
}

/// A batch of `generate_activation_code` orders on a new SQLite store, and
/// the worker's executor for it with the slot where it reports a failure.
async fn template_orders(
    dir: &tempfile::TempDir,
    orders: Vec<(Operation, serde_json::Value)>,
) -> (Arc<dyn Store>, String, BatchRecord, Arc<Executor>, Failure) {
    use simbatch_engine::personalise::TemplateCache;
    let store = sqlite_store(dir).await;
    store.create_key("t").await.unwrap();
    let t = store.tenant_by_name("t").await.unwrap().unwrap().id;
    let batch = submit(
        store.as_ref(),
        &t,
        Some(Operation::GenerateActivationCode),
        BatchMode::Parallel,
        orders,
    )
    .await;
    let failure: Failure = Arc::new(std::sync::Mutex::new(None));
    let execute: Arc<Executor> = Arc::new(worker::executor(
        store.clone(),
        Arc::new(TemplateCache::default()),
        Arc::from("smdp.example.com"),
        failure.clone(),
    ));
    (store, t, batch, execute, failure)
}

/// Where the worker's executor leaves a failure to read templates.
type Failure = Arc<std::sync::Mutex<Option<simbatch_store::StoreError>>>;

/// One `run_chunk(limit)` with `execute` that finds an item to run.
async fn one_chunk(
    store: &Arc<dyn Store>,
    limit: usize,
    execute: &Arc<Executor>,
) -> simbatch_store::CompleteSummary {
    store
        .run_chunk(limit, Duration::from_secs(30), execute)
        .await
        .unwrap()
        .expect("an item was runnable")
}

/// The error code of each item of a batch, in order.
async fn error_codes(store: &Arc<dyn Store>, t: &str, batch: &str) -> Vec<Option<String>> {
    let filter = ItemFilter {
        limit: 10,
        ..Default::default()
    };
    let items = store.list_items(t, batch, &filter).await.unwrap();
    items.into_iter().map(|i| i.error_code).collect()
}

/// The worker's executor reads the templates when it runs a claimed chunk, not
/// before claiming: a template registered between the two is seen.
#[tokio::test]
async fn templates_are_read_after_the_claim() {
    let dir = tempfile::tempdir().unwrap();
    let (store, t, batch, execute, failure) =
        template_orders(&dir, vec![order_from(7, "late")]).await;
    // Registered after the round began (the executor exists) but before the claim.
    store.add_template("late", &template_der()).await.unwrap();
    let summary = one_chunk(&store, 10, &execute).await;
    assert!(failure.lock().unwrap().is_none());
    assert_eq!(error_codes(&store, &t, &batch.id).await, [None]);
    assert_eq!((summary.completed, summary.failed), (1, 0));
    assert!(store
        .download_package(&t, &iccid(7))
        .await
        .unwrap()
        .is_some());
}

/// A chunk of orders that read templates is picked ahead like any other
/// but executed only when its transaction takes it: a template registered
/// between two chunks is seen by the second.
#[tokio::test]
async fn templates_registered_between_chunks_are_seen() {
    let dir = tempfile::tempdir().unwrap();
    let orders = vec![order_from(7, "early"), order_from(8, "late")];
    let (store, t, batch, execute, failure) = template_orders(&dir, orders).await;
    store.add_template("early", &template_der()).await.unwrap();
    let first = one_chunk(&store, 1, &execute).await;
    assert_eq!((first.completed, first.failed), (1, 0));
    // Registered after the first chunk picked the second one ahead.
    store.add_template("late", &template_der()).await.unwrap();
    let second = one_chunk(&store, 1, &execute).await;
    assert!(failure.lock().unwrap().is_none());
    assert_eq!(error_codes(&store, &t, &batch.id).await, [None, None]);
    assert_eq!((second.completed, second.failed), (1, 0));
}

/// `simbatch_items_processed_total` counts followers canceled after a failure
/// in a sequential batch, under result `canceled`.
#[tokio::test]
async fn metrics_count_canceled_followers() {
    let dir = tempfile::tempdir().unwrap();
    let store = sqlite_store(&dir).await;
    store.create_key("t").await.unwrap();
    let t = store.tenant_by_name("t").await.unwrap().unwrap().id;
    let metrics = simbatch_engine::metrics::Metrics::shared();
    let cfg = WorkerConfig {
        metrics: Some(metrics.clone()),
        ..Default::default()
    };
    let workers = worker::start(store.clone(), cfg, Arc::new(Notify::new()));
    let a = iccid(1);
    let items = vec![
        (Operation::RegisterSim, json!({"iccid": a})),
        (Operation::Resume, json!({"iccid": a})),
        (Operation::Activate, json!({"iccid": a})),
        (Operation::Suspend, json!({"iccid": a})),
    ];
    let batch = submit(
        store.as_ref(),
        &t,
        None,
        BatchMode::SequentialPerIccid,
        items,
    )
    .await;
    let done = wait_terminal(store.as_ref(), &t, &batch.id).await;
    workers.shutdown().await;
    assert_eq!(
        (
            done.counts.completed,
            done.counts.failed,
            done.counts.canceled
        ),
        (1, 1, 2)
    );
    let text = metrics.encode();
    for (op, result, n) in [
        ("register_sim", "completed", 1),
        ("resume", "failed", 1),
        ("activate", "canceled", 1),
        ("suspend", "canceled", 1),
    ] {
        let line =
            format!("simbatch_items_processed_total{{operation=\"{op}\",result=\"{result}\"}} {n}");
        assert!(text.contains(&line), "{line} missing from\n{text}");
    }
}
