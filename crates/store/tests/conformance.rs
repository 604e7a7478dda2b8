//! One conformance suite for every [`Store`] backend.
//!
//! Each check is an `async fn(Arc<dyn Store>)`; the `conformance!` macro turns
//! every check into one test on SQLite (a temporary directory) and one on
//! PostgreSQL (a fresh database). The PostgreSQL tests panic when the server
//! is unreachable: they never pass without it.
//!
//! Claims and completions are driven the way the engine drives them: the
//! claimed fields go through `simbatch_core::parse_item` and `execute`.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Map, Value};
use simbatch_core::{
    execute, parse_item, BatchMode, BatchStatus, Context, ItemStatus, Operation, SimStatus,
    ValidationProfile,
};
use simbatch_store::testing::{fresh_postgres_url, fresh_sqlite_url, test_cipher};
use simbatch_store::*;

// ---------------------------------------------------------------- harness

/// Raw access to the database behind the store under test (for the secrets check).
#[derive(Clone)]
enum Raw {
    Sqlite(PathBuf),
    Postgres(String),
}

tokio::task_local! {
    static RAW: Raw;
}

async fn on_sqlite<F, Fut>(check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let dir = tempfile::tempdir().expect("temp dir");
    let url = fresh_sqlite_url(dir.path());
    let store = simbatch_store::sqlite::connect(&url, test_cipher())
        .await
        .expect("open SQLite store");
    let file = dir.path().join("simbatch-test.db");
    RAW.scope(Raw::Sqlite(file), check(store)).await;
}

async fn on_postgres<F, Fut>(check: F)
where
    F: FnOnce(Arc<dyn Store>) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let url = fresh_postgres_url().await;
    let store = simbatch_store::postgres::connect(&url, test_cipher())
        .await
        .expect("open PostgreSQL store");
    RAW.scope(Raw::Postgres(url), check(store)).await;
}

macro_rules! conformance {
    ($($check:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::on_sqlite(super::$check).await;
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $check() {
                    super::on_postgres(super::$check).await;
                }
            )*
        }
    };
}

conformance!(
    keys,
    bootstrap_only_once,
    templates,
    batch_create_append_seal,
    appended_text_round_trips,
    all_rejected_batch_is_terminal,
    claim_orders_items_of_one_sim,
    claim_orders_across_batches,
    lease_expiry_and_fencing,
    complete_effects,
    sequential_failure_cancels_followers,
    parallel_failure_keeps_followers,
    cancel,
    cancel_while_running,
    retry,
    tenant_isolation,
    secrets_never_in_plaintext,
    webhooks,
    idempotency,
    retention_sweep,
    paging_and_filters,
    bench_floor_activate,
    profiles_and_confirmation_codes,
    concurrent_claims_are_disjoint,
    dialect_auth,
    profile_commands,
    profile_expiry,
    concurrent_download_orders_take_distinct_profiles,
    get_item_by_order_id,
    webhook_formats_and_skipped_events,
    dialect_lookups,
    batch_counts_by_state,
    refused_item_is_isolated,
    refused_item_is_isolated_in_run_chunk,
    run_chunk_takes_over_expired_leases,
    event_feed_pages_through_large_writes,
    run_chunk_after_cancel_between_chunks,
    run_chunk_after_one_of_two_batches_is_canceled,
    run_chunk_after_writes_between_chunks,
    run_chunk_keeps_sim_order_across_chunks,
    run_chunk_after_a_lease_expired_between_chunks,
);

/// Checks of the SQLite engine with a second process on the same file.
mod sqlite_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_chunk_after_another_process_claims() {
        super::on_sqlite(super::run_chunk_after_another_process_claims).await;
    }
}

/// Checks of behaviour only PostgreSQL can show: a chunk that `run_chunk`
/// holds while other transactions run. (SQLite has one writer: anything else
/// that writes waits for the chunk's commit.)
mod postgres_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn run_chunk_items_are_passed_by_while_held() {
        super::on_postgres(super::run_chunk_items_are_passed_by_while_held).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn cancel_while_run_chunk_holds_items() {
        super::on_postgres(super::cancel_while_run_chunk_holds_items).await;
    }
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn stalled_run_chunk_loses_its_items() {
        super::on_postgres(super::stalled_run_chunk_loses_its_items).await;
    }
}

// ---------------------------------------------------------------- helpers

const KI: &str = "465B5CE8B199B49FAA5F0A2EE238A6BC";
const OPC: &str = "0A1B2C3D4E5F60718293A4B5C6D7E8F9";

fn iccid(n: u32) -> String {
    format!("89882470000000{n:06}")
}

fn obj(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => panic!("not an object"),
    }
}

async fn tenant(store: &Arc<dyn Store>, name: &str) -> String {
    store.create_key(name).await.unwrap();
    store
        .tenant_by_name(name)
        .await
        .unwrap()
        .expect("tenant exists")
        .id
}

fn new_batch(tenant: &str, op: Option<Operation>, mode: BatchMode) -> NewBatch {
    NewBatch {
        tenant_id: tenant.to_owned(),
        operation: op,
        mode,
        source: "native".into(),
        external_ref: None,
        parent_id: None,
    }
}

/// Items for `op` from JSON rows, parsed as the API does (invalid → rejected).
fn items(op: Operation, rows: &[Value]) -> Vec<NewItem> {
    rows.iter()
        .enumerate()
        .map(|(i, row)| {
            let fields = obj(row.clone());
            let given = fields
                .get("iccid")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .trim()
                .to_owned();
            match parse_item(op, &fields, ValidationProfile::Standard) {
                Ok(p) => NewItem {
                    seq: i as i64,
                    iccid: p.order.iccid.as_str().to_owned(),
                    operation: Some(op),
                    params: p.public,
                    secret: p.secret,
                    rejection: None,
                },
                Err(r) => NewItem {
                    seq: i as i64,
                    iccid: given,
                    operation: Some(op),
                    params: fields,
                    secret: Map::new(),
                    rejection: Some(r),
                },
            }
        })
        .collect()
}

/// Create, fill and seal a batch.
async fn submit(
    store: &Arc<dyn Store>,
    tenant: &str,
    op: Operation,
    mode: BatchMode,
    rows: &[Value],
) -> BatchRecord {
    let b = store
        .create_batch(&new_batch(tenant, Some(op), mode))
        .await
        .unwrap();
    store
        .append_items(tenant, &b.id, &items(op, rows))
        .await
        .unwrap();
    store.seal_batch(tenant, &b.id).await.unwrap()
}

fn reg(n: u32) -> Value {
    json!({ "iccid": iccid(n) })
}

/// Execute claimed items as the engine does.
fn run_items(claimed: &[ClaimedItem]) -> Vec<Completion> {
    claimed
        .iter()
        .map(|item| {
            let ctx = Context {
                smdp_address: "smdp.example.com",
                has_profile: item.has_profile,
                template_exists: &|_| true,
            };
            let parsed = parse_item(item.operation, &item.fields, ValidationProfile::Standard)
                .expect("claimed fields parse");
            let result = execute(&parsed.order, item.sim.as_ref(), &ctx);
            let sim_secrets = match &result {
                Ok(o) if o.created => Some((
                    parsed.order.args.ki.as_ref().map(|k| k.to_hex()),
                    parsed.order.args.opc.as_ref().map(|k| k.to_hex()),
                )),
                _ => None,
            };
            // The engine personalises a SAIP package here; the store treats it as opaque bytes.
            let package = match &result {
                Ok(o)
                    if o.profile.is_some()
                        && item.operation == Operation::GenerateActivationCode =>
                {
                    Some(format!("PKG:{}:{KI}", item.iccid).into_bytes())
                }
                _ => None,
            };
            Completion {
                item: item.clone(),
                result,
                sim_secrets,
                package,
            }
        })
        .collect()
}

/// One claim and its completion.
async fn run_once(store: &Arc<dyn Store>, limit: usize) -> (Claim, CompleteSummary) {
    let claim = store.claim(limit, Duration::from_secs(30)).await.unwrap();
    let summary = store
        .complete(&claim.token, run_items(&claim.items))
        .await
        .unwrap();
    (claim, summary)
}

/// Claim and complete until nothing is runnable; returns the items run.
async fn run_all(store: &Arc<dyn Store>) -> usize {
    let mut n = 0;
    for _ in 0..100 {
        let (claim, _) = run_once(store, 50).await;
        if claim.items.is_empty() {
            return n;
        }
        n += claim.items.len();
    }
    panic!("the queue never drained");
}

async fn all_items(store: &Arc<dyn Store>, tenant: &str, batch: &str) -> Vec<ItemRecord> {
    store
        .list_items(
            tenant,
            batch,
            &ItemFilter {
                limit: 1000,
                ..Default::default()
            },
        )
        .await
        .unwrap()
}

async fn event_kinds(store: &Arc<dyn Store>, tenant: &str) -> Vec<String> {
    store
        .events_after(tenant, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

async fn batch(store: &Arc<dyn Store>, tenant: &str, id: &str) -> BatchRecord {
    store
        .get_batch(tenant, id)
        .await
        .unwrap()
        .expect("batch exists")
}

// ---------------------------------------------------------------- checks

async fn keys(store: Arc<dyn Store>) {
    let k = store.create_key("acme").await.unwrap();
    assert_eq!(k.tenant, "acme");
    assert!(
        k.key_id.starts_with("sk_") && k.key_id.len() == 19,
        "key id {}",
        k.key_id
    );
    assert_eq!(k.secret.len(), 64);
    assert_eq!(k.token, format!("{}.{}", k.key_id, k.secret));
    let t = store
        .authenticate(&k.key_id, &k.secret)
        .await
        .unwrap()
        .expect("valid key authenticates");
    assert_eq!(t.name, "acme");
    assert_eq!(store.tenant_by_name("acme").await.unwrap(), Some(t.clone()));
    assert!(
        store
            .authenticate(&k.key_id, &"0".repeat(64))
            .await
            .unwrap()
            .is_none(),
        "wrong secret"
    );
    assert!(
        store
            .authenticate("sk_unknown", &k.secret)
            .await
            .unwrap()
            .is_none(),
        "unknown key"
    );

    let k2 = store.create_key("acme").await.unwrap();
    let t2 = store
        .authenticate(&k2.key_id, &k2.secret)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(t2.id, t.id, "a second key joins the same tenant");
    let listed = store.list_keys().await.unwrap();
    assert_eq!(listed.len(), 2);
    assert!(listed
        .iter()
        .all(|i| i.tenant == "acme" && i.revoked_at.is_none()));
    let json = serde_json::to_string(&listed).unwrap();
    assert!(!json.contains(&k.secret), "listing never shows secrets");

    assert!(store.revoke_key(&k.key_id).await.unwrap());
    assert!(
        store
            .authenticate(&k.key_id, &k.secret)
            .await
            .unwrap()
            .is_none(),
        "revoked key"
    );
    assert!(
        store
            .authenticate(&k2.key_id, &k2.secret)
            .await
            .unwrap()
            .is_some(),
        "other key still works"
    );
    assert!(!store.revoke_key("sk_0000000000000000").await.unwrap());
    let revoked = store
        .list_keys()
        .await
        .unwrap()
        .into_iter()
        .find(|i| i.key_id == k.key_id)
        .unwrap();
    assert!(revoked.revoked_at.is_some());
    assert!(
        store.bootstrap_default_tenant().await.unwrap().is_none(),
        "not on a non-empty database"
    );
}

async fn bootstrap_only_once(store: Arc<dyn Store>) {
    let (a, b) = tokio::join!(
        store.bootstrap_default_tenant(),
        store.bootstrap_default_tenant()
    );
    let made: Vec<NewKey> = [a.unwrap(), b.unwrap()].into_iter().flatten().collect();
    assert_eq!(made.len(), 1, "exactly one bootstrap wins");
    let k = &made[0];
    assert_eq!(k.tenant, "default");
    assert_eq!(
        store
            .authenticate(&k.key_id, &k.secret)
            .await
            .unwrap()
            .unwrap()
            .name,
        "default"
    );
    assert!(store.bootstrap_default_tenant().await.unwrap().is_none());
    assert_eq!(store.list_keys().await.unwrap().len(), 1);
}

async fn templates(store: Arc<dyn Store>) {
    let info = store.add_template("tpl-a", b"hello").await.unwrap();
    assert_eq!(info.size, 5);
    assert_eq!(
        info.sha256,
        "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
    );
    assert!(matches!(
        store.add_template("tpl-a", b"other").await,
        Err(StoreError::Conflict(_))
    ));
    store.add_template("tpl-b", b"").await.unwrap();
    let names: Vec<String> = store
        .list_templates()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names.len(), 2);
    assert!(store.template_names().await.unwrap().contains("tpl-b"));
    assert_eq!(
        store.template_content("tpl-a").await.unwrap().as_deref(),
        Some(&b"hello"[..])
    );
    assert!(store.template_content("nope").await.unwrap().is_none());
}

async fn batch_create_append_seal(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let mut nb = new_batch(&t, Some(Operation::RegisterSim), BatchMode::Parallel);
    nb.external_ref = Some("job-1".into());
    let b = store.create_batch(&nb).await.unwrap();
    assert_eq!(b.status, BatchStatus::Initialising);
    assert_eq!(b.counts, Default::default());
    assert!(
        matches!(store.create_batch(&nb).await, Err(StoreError::Conflict(_))),
        "duplicate external_ref"
    );
    assert_eq!(
        store
            .batch_by_ref(&t, "native", "job-1")
            .await
            .unwrap()
            .unwrap()
            .id,
        b.id
    );

    let rows = [
        reg(1),
        json!({ "iccid": "12" }),
        json!({ "iccid": iccid(3), "imsi": "001010000000003" }),
    ];
    let its = items(Operation::RegisterSim, &rows);
    store.append_items(&t, &b.id, &its[..2]).await.unwrap();
    store.append_items(&t, &b.id, &its[2..]).await.unwrap();
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(got.status, BatchStatus::Initialising);
    assert_eq!(
        (got.counts.total, got.counts.approved, got.counts.rejected),
        (3, 2, 1)
    );

    let listed = all_items(&store, &t, &b.id).await;
    assert_eq!(listed.iter().map(|i| i.seq).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(listed[0].status, ItemStatus::Approved);
    assert_eq!(listed[1].status, ItemStatus::Rejected);
    assert_eq!(listed[1].error_field.as_deref(), Some("iccid"));
    assert!(listed[1].error_code.is_some() && listed[1].error_reason.is_some());
    assert_eq!(
        listed[2].params.get("imsi"),
        Some(&json!("001010000000003"))
    );

    let sealed = store.seal_batch(&t, &b.id).await.unwrap();
    assert_eq!(sealed.status, BatchStatus::Processing);
    assert!(sealed.completed_at.is_none());
    assert_eq!(
        store.seal_batch(&t, &b.id).await.unwrap().status,
        BatchStatus::Processing,
        "seal is idempotent"
    );
    assert!(
        matches!(
            store.append_items(&t, &b.id, &its[..1]).await,
            Err(StoreError::State(_))
        ),
        "sealed"
    );
    let other = tenant(&store, "other").await;
    let more = items(Operation::RegisterSim, &[reg(9)]);
    let b2 = store
        .create_batch(&new_batch(&t, None, BatchMode::Parallel))
        .await
        .unwrap();
    assert!(
        matches!(
            store.append_items(&other, &b2.id, &more).await,
            Err(StoreError::State(_))
        ),
        "not yours"
    );
    assert_eq!(store.queue_depth().await.unwrap(), 2);
    assert!(
        event_kinds(&store, &t).await.is_empty(),
        "sealing into PROCESSING emits nothing"
    );
}

/// Text that the bulk insert must carry unchanged: separators, quotes,
/// line breaks, backslashes, COPY's NULL marker and the empty string.
async fn appended_text_round_trips(store: Arc<dyn Store>) {
    const AWKWARD: [&str; 8] = [
        "a,b",
        "say \"hi\"",
        "line\nbreak\r\n",
        "tab\tbed",
        "back\\slash \\N",
        "\\N",
        "",
        "émoji 📶 \"\",",
    ];
    let t = tenant(&store, "acme").await;
    let b = store
        .create_batch(&new_batch(&t, None, BatchMode::Parallel))
        .await
        .unwrap();
    let mut its = Vec::new();
    for (i, text) in AWKWARD.iter().enumerate() {
        let mut params = Map::new();
        params.insert("reference".into(), json!(text));
        params.insert((*text).to_owned(), json!([text, null]));
        its.push(NewItem {
            seq: 2 * i as i64,
            iccid: iccid(i as u32 + 1),
            operation: Some(Operation::Activate),
            params,
            secret: Map::new(),
            rejection: None,
        });
        its.push(NewItem {
            seq: 2 * i as i64 + 1,
            iccid: (*text).to_owned(),
            operation: None,
            params: Map::new(),
            secret: Map::new(),
            rejection: Some(simbatch_core::Rejection {
                field: Some((*text).to_owned()),
                code: "invalid_value".into(),
                reason: format!("bad: {text}"),
            }),
        });
    }
    store.append_items(&t, &b.id, &its).await.unwrap();
    let listed = all_items(&store, &t, &b.id).await;
    assert_eq!(listed.len(), its.len());
    for (got, want) in listed.iter().zip(&its) {
        assert_eq!(got.seq, want.seq);
        assert_eq!(got.iccid, want.iccid, "item {}", want.seq);
        assert_eq!(got.operation, want.operation, "item {}", want.seq);
        assert_eq!(got.params, want.params, "item {}", want.seq);
        match &want.rejection {
            Some(r) => {
                assert_eq!(got.status, ItemStatus::Rejected);
                assert_eq!(got.error_field, r.field, "item {}", want.seq);
                assert_eq!(got.error_reason.as_deref(), Some(r.reason.as_str()));
            }
            None => {
                assert_eq!(got.status, ItemStatus::Approved);
                assert_eq!(
                    (&got.error_field, &got.error_code, &got.error_reason),
                    (&None, &None, &None),
                    "no error is NULL, not empty text"
                );
            }
        }
    }
    // A seq appended twice is refused whole: nothing of that append is kept.
    let again = vec![
        NewItem {
            seq: its.len() as i64,
            ..its[0].clone()
        },
        its[2].clone(),
    ];
    assert!(
        matches!(
            store.append_items(&t, &b.id, &again).await,
            Err(StoreError::Conflict(_))
        ),
        "duplicate seq"
    );
    assert_eq!(all_items(&store, &t, &b.id).await.len(), its.len());
    assert_eq!(
        batch(&store, &t, &b.id).await.counts.total,
        its.len() as i64
    );
}

async fn all_rejected_batch_is_terminal(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::Parallel,
        &[json!({ "iccid": "x" })],
    )
    .await;
    assert_eq!(b.status, BatchStatus::PartiallyCompleted);
    assert!(b.completed_at.is_some());
    assert_eq!((b.counts.total, b.counts.rejected), (1, 1));
    let events = store.events_after(&t, 0, 10).await.unwrap();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, "batch.partially_completed");
    assert_eq!(events[0].data["batch_id"], json!(b.id));
    assert_eq!(events[0].data["status"], json!("PARTIALLY_COMPLETED"));
    assert_eq!(events[0].data["counts"]["rejected"], json!(1));
    // An empty batch completes.
    let e = store
        .create_batch(&new_batch(&t, None, BatchMode::Parallel))
        .await
        .unwrap();
    assert_eq!(
        store.seal_batch(&t, &e.id).await.unwrap().status,
        BatchStatus::Completed
    );
    assert!(store
        .claim(10, Duration::from_secs(30))
        .await
        .unwrap()
        .items
        .is_empty());
}

async fn claim_orders_items_of_one_sim(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = store
        .create_batch(&new_batch(&t, None, BatchMode::Parallel))
        .await
        .unwrap();
    let mut its = items(Operation::RegisterSim, &[reg(1)]);
    let mut act = items(Operation::Activate, &[reg(1), reg(2)]);
    act[0].seq = 1;
    act[1].seq = 2;
    its.extend(act);
    store.append_items(&t, &b.id, &its).await.unwrap();
    store.seal_batch(&t, &b.id).await.unwrap();

    let c1 = store.claim(10, Duration::from_secs(30)).await.unwrap();
    let seqs: Vec<i64> = c1.items.iter().map(|i| i.seq).collect();
    assert_eq!(
        seqs,
        [0, 2],
        "the second item for ICCID 1 waits for the first"
    );
    assert_eq!(c1.items[0].operation, Operation::RegisterSim);
    assert_eq!(c1.items[0].mode, BatchMode::Parallel);
    assert!(c1.items[0].sim.is_none());
    assert_eq!(c1.items[0].tenant_id, t);
    let got = batch(&store, &t, &b.id).await;
    assert_eq!((got.counts.approved, got.counts.processing), (1, 2));
    assert!(
        store
            .claim(10, Duration::from_secs(30))
            .await
            .unwrap()
            .items
            .is_empty(),
        "nothing else runnable"
    );

    store
        .complete(&c1.token, run_items(&c1.items))
        .await
        .unwrap();
    let c2 = store.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(c2.items.len(), 1);
    assert_eq!(c2.items[0].seq, 1);
    assert_eq!(
        c2.items[0].sim.as_ref().map(|s| s.status),
        Some(SimStatus::Inventory),
        "current SIM loaded"
    );
    assert_ne!(c1.token, c2.token);
    store
        .complete(&c2.token, run_items(&c2.items))
        .await
        .unwrap();
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(
        (got.counts.completed, got.counts.failed),
        (2, 1),
        "activate of an unknown SIM fails"
    );
    assert_eq!(got.status, BatchStatus::PartiallyCompleted);
}

async fn claim_orders_across_batches(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let a = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1)],
    )
    .await;
    let b = submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::Parallel,
        &[reg(1)],
    )
    .await;
    let c1 = store.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(c1.items.len(), 1);
    assert_eq!(c1.items[0].batch_id, a.id);
    assert!(store
        .claim(10, Duration::from_secs(30))
        .await
        .unwrap()
        .items
        .is_empty());
    store
        .complete(&c1.token, run_items(&c1.items))
        .await
        .unwrap();
    let c2 = store.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(c2.items.len(), 1);
    assert_eq!(c2.items[0].batch_id, b.id);
    store
        .complete(&c2.token, run_items(&c2.items))
        .await
        .unwrap();
    assert_eq!(
        store
            .get_sim(&t, &iccid(1))
            .await
            .unwrap()
            .unwrap()
            .sim
            .status,
        SimStatus::Activated
    );
    assert_eq!(
        batch(&store, &t, &b.id).await.status,
        BatchStatus::Completed
    );
}

async fn lease_expiry_and_fencing(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1)],
    )
    .await;
    let stale = store.claim(10, Duration::from_millis(1)).await.unwrap();
    assert_eq!(stale.items.len(), 1);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let fresh = store.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(fresh.items.len(), 1, "an expired lease is taken over");
    assert_eq!(fresh.items[0].id, stale.items[0].id);
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(
        (got.counts.approved, got.counts.processing),
        (0, 1),
        "takeover does not move counters"
    );

    let s = store
        .complete(&stale.token, run_items(&stale.items))
        .await
        .unwrap();
    assert_eq!((s.applied, s.fenced_out), (0, 1));
    assert!(s.by_operation.is_empty(), "fenced items are not counted");
    assert!(
        store.get_sim(&t, &iccid(1)).await.unwrap().is_none(),
        "fenced completion changes nothing"
    );
    assert_eq!(
        all_items(&store, &t, &b.id).await[0].status,
        ItemStatus::Processing
    );
    assert!(event_kinds(&store, &t).await.is_empty());

    let s = store
        .complete(&fresh.token, run_items(&fresh.items))
        .await
        .unwrap();
    assert_eq!((s.applied, s.fenced_out, s.completed), (1, 0, 1));
    assert_eq!(s.by_operation.len(), 1);
    assert_eq!(
        (s.by_operation[0].operation, s.by_operation[0].completed),
        (Operation::RegisterSim, 1)
    );
    assert_eq!(s.finished, vec![(b.id.clone(), BatchStatus::Completed)]);
    let again = store
        .complete(&fresh.token, run_items(&fresh.items))
        .await
        .unwrap();
    assert_eq!(
        (again.applied, again.fenced_out),
        (0, 1),
        "a completed item cannot complete twice"
    );
    let got = batch(&store, &t, &b.id).await;
    assert_eq!((got.counts.processing, got.counts.completed), (0, 1));
}

async fn complete_effects(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let reg_b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[
            json!({ "iccid": iccid(1), "imsi": "001010000000001", "rate_plan": "basic" }),
            reg(2),
        ],
    )
    .await;
    let act_b = submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::Parallel,
        &[reg(1)],
    )
    .await;
    assert_eq!(store.queue_depth().await.unwrap(), 3);
    assert_eq!(run_all(&store).await, 3);
    assert_eq!(store.queue_depth().await.unwrap(), 0);

    let sim = store.get_sim(&t, &iccid(1)).await.unwrap().unwrap();
    assert_eq!(sim.sim.status, SimStatus::Activated);
    assert_eq!(sim.sim.imsi.as_deref(), Some("001010000000001"));
    assert_eq!(sim.sim.rate_plan.as_deref(), Some("basic"));
    assert!(!sim.has_ki);
    assert!(sim.updated_at >= sim.created_at);
    let hist = store.sim_history(&t, &iccid(1), 0, 100).await.unwrap();
    assert_eq!(hist.len(), 2, "one history row per completed item");
    assert_eq!(
        (hist[0].from_status.as_deref(), hist[0].to_status.as_str()),
        (None, "INVENTORY")
    );
    assert_eq!(hist[0].operation, "register_sim");
    assert_eq!(hist[0].batch_id.as_deref(), Some(reg_b.id.as_str()));
    assert_eq!(
        (hist[1].from_status.as_deref(), hist[1].to_status.as_str()),
        (Some("INVENTORY"), "ACTIVATED")
    );
    assert_eq!(hist[1].batch_id.as_deref(), Some(act_b.id.as_str()));
    assert!(hist[1].order_id.is_some());
    assert_eq!(
        store
            .sim_history(&t, &iccid(1), hist[0].id, 100)
            .await
            .unwrap()
            .len(),
        1,
        "cursor"
    );

    for id in [&reg_b.id, &act_b.id] {
        let b = batch(&store, &t, id).await;
        assert_eq!(b.status, BatchStatus::Completed);
        assert!(b.completed_at.is_some());
        assert_eq!(b.counts.approved + b.counts.processing, 0);
        assert_eq!(b.counts.completed, b.counts.total);
    }
    let items = all_items(&store, &t, &act_b.id).await;
    assert_eq!(items[0].status, ItemStatus::Completed);
    assert!(items[0].result.is_some());

    let events = store.events_after(&t, 0, 100).await.unwrap();
    let count = |k: &str| events.iter().filter(|e| e.kind == k).count();
    assert_eq!(count("order.completed"), 3);
    assert_eq!(
        count("sim.status_changed"),
        3,
        "two registrations and one activation"
    );
    assert_eq!(count("batch.completed"), 2);
    assert!(events.windows(2).all(|w| w[0].seq < w[1].seq), "ascending");
    let act = events
        .iter()
        .find(|e| e.kind == "sim.status_changed" && e.data["to"] == json!("ACTIVATED"))
        .unwrap();
    assert_eq!(act.data["from"], json!("INVENTORY"));
    assert_eq!(act.data["iccid"], json!(iccid(1)));
    assert_eq!(act.data["operation"], json!("activate"));
    assert_eq!(act.data["batch_id"], json!(act_b.id));
    let done = events
        .iter()
        .find(|e| e.kind == "order.completed" && e.data["batch_id"] == json!(act_b.id))
        .unwrap();
    assert_eq!(done.data["status"], json!("COMPLETED"));
    assert_eq!(done.data["seq"], json!(0));
    assert_eq!(done.data["order_id"], act.data["order_id"]);
    let fin = events
        .iter()
        .find(|e| e.kind == "batch.completed" && e.data["batch_id"] == json!(act_b.id))
        .unwrap();
    assert_eq!(fin.data["counts"]["completed"], json!(1));
    assert_eq!(fin.data["source"], json!("native"));
    let tail = store.events_after(&t, events[2].seq, 100).await.unwrap();
    assert_eq!(tail.len(), events.len() - 3);
    let mut ids: Vec<&str> = events.iter().map(|e| e.id.as_str()).collect();
    ids.dedup();
    assert_eq!(ids.len(), events.len());

    let sims = store
        .list_sims(
            &t,
            &SimFilter {
                limit: 10,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(sims.len(), 2);
    let activated = SimFilter {
        status: Some(SimStatus::Activated),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_sims(&t, &activated).await.unwrap().len(), 1);
    let by_imsi = SimFilter {
        imsi: Some("001010000000001".into()),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        store.list_sims(&t, &by_imsi).await.unwrap()[0].sim.iccid,
        iccid(1)
    );
    let after = SimFilter {
        after_iccid: Some(iccid(1)),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(
        store.list_sims(&t, &after).await.unwrap()[0].sim.iccid,
        iccid(2)
    );
    let counts = store.batch_status_counts().await.unwrap();
    assert_eq!(counts, vec![("COMPLETED".to_owned(), 2)]);
}

async fn sequential_failure_cancels_followers(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let reg_b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2)],
    )
    .await;
    run_all(&store).await;
    assert_eq!(
        batch(&store, &t, &reg_b.id).await.status,
        BatchStatus::Completed
    );
    // resume needs SUSPENDED: item 0 fails; item 1 and 2 (same ICCID) are canceled; ICCID 2 runs.
    let b = store
        .create_batch(&new_batch(&t, None, BatchMode::SequentialPerIccid))
        .await
        .unwrap();
    let mut its = items(Operation::Resume, &[reg(1)]);
    for (seq, (op, n)) in [
        (Operation::Activate, 1),
        (Operation::Suspend, 1),
        (Operation::Activate, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let mut more = items(op, &[reg(n)]);
        more[0].seq = seq as i64 + 1;
        its.extend(more);
    }
    store.append_items(&t, &b.id, &its).await.unwrap();
    store.seal_batch(&t, &b.id).await.unwrap();
    let mut counts: Vec<OperationCount> = Vec::new();
    let mut canceled = 0;
    loop {
        let (claim, summary) = run_once(&store, 50).await;
        if claim.items.is_empty() {
            break;
        }
        canceled += summary.canceled;
        for c in summary.by_operation {
            let slot = simbatch_store::plan::operation_slot(&mut counts, c.operation);
            slot.completed += c.completed;
            slot.failed += c.failed;
            slot.canceled += c.canceled;
        }
    }
    assert_eq!(canceled, 2);
    counts.sort_by_key(|c| c.operation.as_str());
    let count = |operation, completed, failed, canceled| OperationCount {
        operation,
        completed,
        failed,
        canceled,
    };
    assert_eq!(
        counts,
        [
            count(Operation::Activate, 1, 0, 1),
            count(Operation::Resume, 0, 1, 0),
            count(Operation::Suspend, 0, 0, 1),
        ],
        "canceled followers are counted under their own operation"
    );

    let got = all_items(&store, &t, &b.id).await;
    let st: Vec<ItemStatus> = got.iter().map(|i| i.status).collect();
    assert_eq!(
        st,
        [
            ItemStatus::Failed,
            ItemStatus::Canceled,
            ItemStatus::Canceled,
            ItemStatus::Completed
        ]
    );
    assert_eq!(got[0].error_code.as_deref(), Some("illegal_status"));
    for f in &got[1..3] {
        assert_eq!(f.error_code.as_deref(), Some("preceding_item_failed"));
        assert_eq!(
            f.error_reason.as_deref(),
            Some("not run: item 0 for this ICCID failed")
        );
    }
    let bb = batch(&store, &t, &b.id).await;
    assert_eq!(
        (
            bb.counts.completed,
            bb.counts.failed,
            bb.counts.canceled,
            bb.counts.approved,
            bb.counts.processing
        ),
        (1, 1, 2, 0, 0)
    );
    assert_eq!(bb.status, BatchStatus::PartiallyCompleted);
    assert_eq!(
        store
            .get_sim(&t, &iccid(1))
            .await
            .unwrap()
            .unwrap()
            .sim
            .status,
        SimStatus::Inventory
    );
    let kinds = event_kinds(&store, &t).await;
    assert!(kinds.contains(&"order.failed".to_owned()));
    assert!(kinds.contains(&"batch.partially_completed".to_owned()));
    let failed = store
        .events_after(&t, 0, 100)
        .await
        .unwrap()
        .into_iter()
        .find(|e| e.kind == "order.failed")
        .unwrap();
    assert_eq!(failed.data["error_code"], json!("illegal_status"));
    assert_eq!(failed.data["status"], json!("FAILED"));
}

async fn parallel_failure_keeps_followers(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1)],
    )
    .await;
    run_all(&store).await;
    let b = store
        .create_batch(&new_batch(&t, None, BatchMode::Parallel))
        .await
        .unwrap();
    let mut its = items(Operation::Resume, &[reg(1)]);
    let mut act = items(Operation::Activate, &[reg(1)]);
    act[0].seq = 1;
    its.extend(act);
    store.append_items(&t, &b.id, &its).await.unwrap();
    store.seal_batch(&t, &b.id).await.unwrap();
    let mut counts = Vec::new();
    for _ in 0..10 {
        let (claim, summary) = run_once(&store, 50).await;
        if claim.items.is_empty() {
            break;
        }
        counts.extend(summary.by_operation);
    }
    let st: Vec<ItemStatus> = all_items(&store, &t, &b.id)
        .await
        .iter()
        .map(|i| i.status)
        .collect();
    assert_eq!(
        st,
        [ItemStatus::Failed, ItemStatus::Completed],
        "parallel mode runs the rest in order"
    );
    counts.sort_by_key(|c| c.operation.as_str());
    let count = |operation, completed, failed| OperationCount {
        operation,
        completed,
        failed,
        canceled: 0,
    };
    assert_eq!(
        counts,
        [
            count(Operation::Activate, 1, 0),
            count(Operation::Resume, 0, 1)
        ],
        "per-operation outcomes of applied items"
    );
}

async fn cancel(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2)],
    )
    .await;
    let c = store
        .cancel_batch(&t, &b.id)
        .await
        .unwrap()
        .expect("known batch");
    assert_eq!(c.status, BatchStatus::Cancelled);
    assert!(c.completed_at.is_some());
    assert_eq!((c.counts.approved, c.counts.canceled), (0, 2));
    for i in all_items(&store, &t, &b.id).await {
        assert_eq!(i.status, ItemStatus::Canceled);
        assert_eq!(i.error_code.as_deref(), Some("batch_cancelled"));
        assert_eq!(
            i.error_reason.as_deref(),
            Some("batch was cancelled before this item ran")
        );
    }
    assert_eq!(event_kinds(&store, &t).await, ["batch.cancelled"]);
    match store.cancel_batch(&t, &b.id).await {
        Err(StoreError::State(m)) => assert_eq!(m, "batch is already CANCELLED"),
        other => panic!("expected State, got {other:?}"),
    }
    assert!(store
        .cancel_batch(&t, "00000000-0000-0000-0000-000000000000")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .claim(10, Duration::from_secs(30))
        .await
        .unwrap()
        .items
        .is_empty());
    let done = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(3)],
    )
    .await;
    run_all(&store).await;
    match store.cancel_batch(&t, &done.id).await {
        Err(StoreError::State(m)) => assert_eq!(m, "batch is already COMPLETED"),
        other => panic!("expected State, got {other:?}"),
    }
}

async fn cancel_while_running(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2)],
    )
    .await;
    let claim = store.claim(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claim.items.len(), 1);
    let c = store.cancel_batch(&t, &b.id).await.unwrap().unwrap();
    assert_eq!(c.status, BatchStatus::Cancelled);
    assert_eq!(
        (c.counts.approved, c.counts.processing, c.counts.canceled),
        (0, 1, 1)
    );
    let s = store
        .complete(&claim.token, run_items(&claim.items))
        .await
        .unwrap();
    assert_eq!(s.applied, 1);
    assert!(s.finished.is_empty(), "already terminal");
    let after = batch(&store, &t, &b.id).await;
    assert_eq!(
        after.status,
        BatchStatus::Cancelled,
        "status stays CANCELLED"
    );
    assert_eq!(
        (
            after.counts.processing,
            after.counts.completed,
            after.counts.canceled
        ),
        (0, 1, 1)
    );
    assert!(
        store.get_sim(&t, &iccid(1)).await.unwrap().is_some(),
        "the running item was applied"
    );
    assert_eq!(
        event_kinds(&store, &t)
            .await
            .iter()
            .filter(|k| k.starts_with("batch."))
            .count(),
        1
    );
}

async fn retry(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1)],
    )
    .await;
    run_all(&store).await;
    let b = submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::SequentialPerIccid,
        &[reg(5), reg(1), reg(6)],
    )
    .await;
    run_all(&store).await;
    let old = batch(&store, &t, &b.id).await;
    assert_eq!((old.counts.completed, old.counts.failed), (1, 2));
    // Register the missing SIMs first: retried items run in submission order.
    submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(5), reg(6)],
    )
    .await;
    run_all(&store).await;

    let r = store
        .retry_batch(&t, &b.id)
        .await
        .unwrap()
        .expect("known batch");
    assert_ne!(r.id, b.id);
    assert_eq!(r.parent_id.as_deref(), Some(b.id.as_str()));
    assert_eq!(r.status, BatchStatus::Processing);
    assert_eq!((r.counts.total, r.counts.approved), (2, 2));
    assert_eq!(r.operation, Some(Operation::Activate));
    assert_eq!(r.mode, BatchMode::SequentialPerIccid);
    assert_eq!(r.source, "native");
    assert!(r.external_ref.is_none());
    let its = all_items(&store, &t, &r.id).await;
    assert_eq!(
        its.iter()
            .map(|i| (i.seq, i.iccid.clone()))
            .collect::<Vec<_>>(),
        [(0, iccid(5)), (1, iccid(6))]
    );
    assert!(its
        .iter()
        .all(|i| i.status == ItemStatus::Approved && i.params.get("iccid").is_some()));

    assert_eq!(run_all(&store).await, 2);
    assert_eq!(
        batch(&store, &t, &r.id).await.status,
        BatchStatus::Completed,
        "retried items ran"
    );
    assert!(
        matches!(store.retry_batch(&t, &r.id).await, Err(StoreError::State(m)) if m == "batch has no failed items to retry")
    );
    assert!(store
        .retry_batch(&t, "00000000-0000-0000-0000-000000000000")
        .await
        .unwrap()
        .is_none());
}

async fn tenant_isolation(store: Arc<dyn Store>) {
    let a = tenant(&store, "alpha").await;
    let b = tenant(&store, "beta").await;
    let mut nb = new_batch(&a, Some(Operation::RegisterSim), BatchMode::Parallel);
    nb.external_ref = Some("r1".into());
    let batch_a = store.create_batch(&nb).await.unwrap();
    store
        .append_items(&a, &batch_a.id, &items(Operation::RegisterSim, &[reg(1)]))
        .await
        .unwrap();
    store.seal_batch(&a, &batch_a.id).await.unwrap();
    run_all(&store).await;
    let hook = store
        .create_webhook(&a, "https://a.example/hook")
        .await
        .unwrap();

    assert!(store.get_batch(&b, &batch_a.id).await.unwrap().is_none());
    assert!(store
        .batch_by_ref(&b, "native", "r1")
        .await
        .unwrap()
        .is_none());
    assert!(store
        .list_batches(
            &b,
            &BatchFilter {
                limit: 10,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_empty());
    assert!(all_items(&store, &b, &batch_a.id).await.is_empty());
    let item_a = all_items(&store, &a, &batch_a.id).await.remove(0);
    assert!(store.get_item(&b, item_a.id).await.unwrap().is_none());
    assert!(store.get_sim(&b, &iccid(1)).await.unwrap().is_none());
    assert!(store
        .list_sims(
            &b,
            &SimFilter {
                limit: 10,
                ..Default::default()
            }
        )
        .await
        .unwrap()
        .is_empty());
    assert!(store
        .sim_history(&b, &iccid(1), 0, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.events_after(&b, 0, 10).await.unwrap().is_empty());
    assert!(store.get_webhook(&b, &hook.id).await.unwrap().is_none());
    assert!(store.list_webhooks(&b).await.unwrap().is_empty());
    assert!(!store.delete_webhook(&b, &hook.id).await.unwrap());
    assert!(store
        .delivery_log(&b, &hook.id, 10)
        .await
        .unwrap()
        .is_empty());
    assert!(store.cancel_batch(&b, &batch_a.id).await.unwrap().is_none());
    assert!(store.retry_batch(&b, &batch_a.id).await.unwrap().is_none());
    assert!(store.seal_batch(&b, &batch_a.id).await.is_err());
    // The same ICCID is a different SIM in another tenant.
    submit(
        &store,
        &b,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1)],
    )
    .await;
    run_all(&store).await;
    assert!(store.get_sim(&b, &iccid(1)).await.unwrap().is_some());
    assert_eq!(
        store.sim_history(&a, &iccid(1), 0, 10).await.unwrap().len(),
        1
    );
    // Idempotency keys are per tenant.
    assert_eq!(
        store.idempotency_begin(&a, "k", "h1").await.unwrap(),
        Idempotency::New
    );
    assert_eq!(
        store.idempotency_begin(&b, "k", "h2").await.unwrap(),
        Idempotency::New
    );
}

/// Every stored byte (SQLite) or every row as text (PostgreSQL), upper-cased.
async fn raw_dump() -> String {
    match RAW.with(|r| r.clone()) {
        Raw::Sqlite(file) => {
            use sqlx::{Connection, Executor};
            let url = format!("sqlite://{}", file.display());
            let mut conn = sqlx::SqliteConnection::connect(&url)
                .await
                .expect("open SQLite file");
            conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                .await
                .expect("checkpoint");
            conn.close().await.unwrap();
            let mut bytes = std::fs::read(&file).expect("read database file");
            for ext in ["-wal", "-journal"] {
                let mut side = file.clone().into_os_string();
                side.push(ext);
                bytes.extend(std::fs::read(side).unwrap_or_default());
            }
            String::from_utf8_lossy(&bytes).to_uppercase()
        }
        Raw::Postgres(url) => {
            use sqlx::{Connection, Row};
            let mut conn = sqlx::PgConnection::connect(&url).await.expect("connect");
            let tables: Vec<String> = sqlx::query_scalar(
                "SELECT table_name::text FROM information_schema.tables
                 WHERE table_schema = 'public' AND table_type = 'BASE TABLE'",
            )
            .fetch_all(&mut conn)
            .await
            .unwrap();
            assert!(tables.len() >= 10, "tables: {tables:?}");
            let mut out = String::new();
            for t in tables {
                let rows = sqlx::query(&format!("SELECT t::text FROM \"{t}\" t"))
                    .fetch_all(&mut conn)
                    .await
                    .unwrap();
                for r in rows {
                    out.push_str(&r.get::<String, _>(0));
                    out.push('\n');
                }
            }
            out.to_uppercase()
        }
    }
}

async fn secrets_never_in_plaintext(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    const KI2: &str = "00112233445566778899AABBCCDDEEFF";
    let rows = [
        json!({ "iccid": iccid(1), "ki": KI, "opc": OPC.to_lowercase() }),
        json!({ "iccid": iccid(2), "ki": KI2.to_lowercase() }),
    ];
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &rows,
    )
    .await;
    let claim = store.claim(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(
        claim.items[0]
            .fields
            .get("ki")
            .and_then(Value::as_str)
            .map(str::to_uppercase)
            .as_deref(),
        Some(KI)
    );
    store
        .complete(&claim.token, run_items(&claim.items))
        .await
        .unwrap();
    let sim = store.get_sim(&t, &iccid(1)).await.unwrap().unwrap();
    assert!(sim.has_ki);
    assert!(!serde_json::to_string(&sim)
        .unwrap()
        .to_uppercase()
        .contains(KI));
    for i in all_items(&store, &t, &b.id).await {
        assert!(
            i.params.get("ki").is_none() && i.params.get("opc").is_none(),
            "items never show secrets"
        );
    }
    // Item 2 is still waiting: its secret lives encrypted in the item row.
    let dump = raw_dump().await;
    assert!(dump.contains(&iccid(1)), "the dump sees the data");
    for secret in [KI, OPC, KI2] {
        assert!(!dump.contains(secret), "{secret} is stored in plaintext");
    }
    let events = serde_json::to_string(&store.events_after(&t, 0, 100).await.unwrap())
        .unwrap()
        .to_uppercase();
    assert!(!events.contains(KI));
}

async fn webhooks(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let reject = [json!({ "iccid": "bad" })];
    submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::Parallel,
        &reject,
    )
    .await;
    let hook = store
        .create_webhook(&t, "https://example.com/hook")
        .await
        .unwrap();
    let secret = hook.secret.clone().expect("secret shown once");
    assert!(secret.starts_with("whsec_"));
    assert!(hook.enabled);
    let listed = store.list_webhooks(&t).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert!(listed[0].secret.is_none());
    assert!(store
        .get_webhook(&t, &hook.id)
        .await
        .unwrap()
        .unwrap()
        .secret
        .is_none());
    let now = now_ms();
    assert!(
        store.due_deliveries(now, 10).await.unwrap().is_empty(),
        "older events are not delivered"
    );

    submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::Parallel,
        &reject,
    )
    .await;
    submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::Parallel,
        &reject,
    )
    .await;
    let now = now_ms();
    let due = store.due_deliveries(now, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    let (w, e1) = &due[0];
    assert_eq!(w.id, hook.id);
    assert_eq!(w.secret.as_deref(), Some(secret.as_str()));
    assert_eq!(e1.kind, "batch.partially_completed");
    let attempt = |event: &Event, next: DeliveryNext, code: Option<i64>| DeliveryAttempt {
        webhook_id: hook.id.clone(),
        event: event.clone(),
        status_code: code,
        error: code.is_none().then(|| "connection refused".to_owned()),
        duration_ms: 12,
        next,
        skipped: false,
    };
    store
        .record_delivery(&attempt(e1, DeliveryNext::RetryAt(now + 60_000), None))
        .await
        .unwrap();
    assert!(
        store.due_deliveries(now, 10).await.unwrap().is_empty(),
        "not before its retry time"
    );
    let due = store.due_deliveries(now + 60_000, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].1.id, e1.id, "the same event again");
    assert_eq!(due[0].0.attempts, 1);
    store
        .record_delivery(&attempt(e1, DeliveryNext::Advance, Some(200)))
        .await
        .unwrap();
    let due = store.due_deliveries(now, 10).await.unwrap();
    assert_eq!(due.len(), 1, "next attempt is immediate after success");
    let e2 = due[0].1.clone();
    assert!(e2.seq > e1.seq);
    assert_eq!(due[0].0.attempts, 0);
    store
        .record_delivery(&attempt(
            &e2,
            DeliveryNext::Disable("endpoint answered 410".into()),
            Some(410),
        ))
        .await
        .unwrap();
    let got = store.get_webhook(&t, &hook.id).await.unwrap().unwrap();
    assert!(!got.enabled);
    assert_eq!(
        got.disabled_reason.as_deref(),
        Some("endpoint answered 410")
    );
    assert!(store
        .due_deliveries(now + 10_000_000, 10)
        .await
        .unwrap()
        .is_empty());

    let log = store.delivery_log(&t, &hook.id, 10).await.unwrap();
    let summary: Vec<(String, i64, Option<i64>)> = log
        .iter()
        .map(|l| (l.event_id.clone(), l.attempt, l.status_code))
        .collect();
    assert_eq!(
        summary,
        [
            (e2.id.clone(), 1, Some(410)),
            (e1.id.clone(), 2, Some(200)),
            (e1.id.clone(), 1, None)
        ],
        "newest first, attempts counted per event"
    );
    assert_eq!(log[2].error.as_deref(), Some("connection refused"));
    assert_eq!(log[0].event_type, "batch.partially_completed");
    assert_eq!(store.delivery_log(&t, &hook.id, 1).await.unwrap().len(), 1);
    assert!(store.delete_webhook(&t, &hook.id).await.unwrap());
    assert!(!store.delete_webhook(&t, &hook.id).await.unwrap());
    assert!(store.get_webhook(&t, &hook.id).await.unwrap().is_none());
}

async fn idempotency(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    assert_eq!(
        store.idempotency_begin(&t, "k1", "h1").await.unwrap(),
        Idempotency::New
    );
    assert_eq!(
        store.idempotency_begin(&t, "k1", "h1").await.unwrap(),
        Idempotency::InProgress
    );
    assert_eq!(
        store.idempotency_begin(&t, "k1", "h2").await.unwrap(),
        Idempotency::Mismatch
    );
    store
        .idempotency_finish(&t, "k1", 202, "{\"id\":1}")
        .await
        .unwrap();
    assert_eq!(
        store.idempotency_begin(&t, "k1", "h1").await.unwrap(),
        Idempotency::Replay {
            status: 202,
            body: "{\"id\":1}".into()
        }
    );
    assert_eq!(
        store.idempotency_begin(&t, "k1", "h2").await.unwrap(),
        Idempotency::Mismatch
    );
    store.idempotency_abort(&t, "k1").await.unwrap();
    assert!(
        matches!(
            store.idempotency_begin(&t, "k1", "h1").await.unwrap(),
            Idempotency::Replay { .. }
        ),
        "finished keys are kept"
    );

    assert_eq!(
        store.idempotency_begin(&t, "k2", "h").await.unwrap(),
        Idempotency::New
    );
    store.idempotency_abort(&t, "k2").await.unwrap();
    assert_eq!(
        store.idempotency_begin(&t, "k2", "h").await.unwrap(),
        Idempotency::New,
        "aborted key is free"
    );

    assert_eq!(store.idempotency_sweep(now_ms() - 60_000).await.unwrap(), 0);
    assert_eq!(store.idempotency_sweep(now_ms() + 1).await.unwrap(), 2);
    assert_eq!(
        store.idempotency_begin(&t, "k1", "h2").await.unwrap(),
        Idempotency::New
    );
}

async fn retention_sweep(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let old = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2)],
    )
    .await;
    run_all(&store).await;
    let running = submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::Parallel,
        &[reg(3)],
    )
    .await; // never run
    tokio::time::sleep(Duration::from_millis(20)).await;
    let cutoff = now_ms();
    tokio::time::sleep(Duration::from_millis(20)).await;
    let recent = submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::Parallel,
        &[json!({ "iccid": "bad" })],
    )
    .await;
    assert!(recent.status.is_terminal());

    let mut deleted = 0;
    for _ in 0..10 {
        let n = store.sweep_retention(cutoff, 1).await.unwrap();
        if n == 0 {
            break;
        }
        deleted += n;
    }
    assert!(
        deleted >= 3,
        "two items and one batch at least, got {deleted}"
    );
    assert!(
        store.get_batch(&t, &old.id).await.unwrap().is_none(),
        "old terminal batch removed"
    );
    assert!(all_items(&store, &t, &old.id).await.is_empty());
    assert!(
        store.get_batch(&t, &running.id).await.unwrap().is_some(),
        "unfinished batch kept"
    );
    assert_eq!(all_items(&store, &t, &running.id).await.len(), 1);
    assert!(
        store.get_batch(&t, &recent.id).await.unwrap().is_some(),
        "recent batch kept"
    );
    assert_eq!(all_items(&store, &t, &recent.id).await.len(), 1);
    assert!(
        store.get_sim(&t, &iccid(1)).await.unwrap().is_some(),
        "SIMs are not swept"
    );
    let events = store.events_after(&t, 0, 100).await.unwrap();
    assert!(
        events.iter().all(|e| e.created_at >= cutoff),
        "old outbox rows removed"
    );
    assert!(
        events
            .iter()
            .any(|e| e.data["batch_id"] == json!(recent.id)),
        "recent events kept"
    );
}

async fn paging_and_filters(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let mut ids = Vec::new();
    let mut times = Vec::new();
    for i in 0..5u32 {
        let op = if i % 2 == 0 {
            Operation::RegisterSim
        } else {
            Operation::Activate
        };
        let rows: Vec<Value> = (0..3).map(|k| reg(i * 10 + k)).collect();
        let b = submit(&store, &t, op, BatchMode::Parallel, &rows).await;
        ids.push(b.id);
        times.push(b.created_at);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = store
            .list_batches(
                &t,
                &BatchFilter {
                    before_id: cursor.clone(),
                    limit: 2,
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 2);
        cursor = page.last().map(|b| b.id.clone());
        seen.extend(page.into_iter().map(|b| b.id));
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first, "newest first, keyset paging");

    let by_op = BatchFilter {
        operation: Some(Operation::Activate),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_batches(&t, &by_op).await.unwrap().len(), 2);
    let by_status = BatchFilter {
        status: Some(BatchStatus::Processing),
        limit: 10,
        ..Default::default()
    };
    assert_eq!(store.list_batches(&t, &by_status).await.unwrap().len(), 5);
    let done = BatchFilter {
        status: Some(BatchStatus::Completed),
        limit: 10,
        ..Default::default()
    };
    assert!(store.list_batches(&t, &done).await.unwrap().is_empty());
    let window = BatchFilter {
        created_after: Some(times[1]),
        created_before: Some(times[3]),
        limit: 10,
        ..Default::default()
    };
    let got: Vec<String> = store
        .list_batches(&t, &window)
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.id)
        .collect();
    assert_eq!(
        got,
        [ids[2].clone(), ids[1].clone()],
        "created_after inclusive, created_before exclusive"
    );

    // Items: a batch with a rejected item in the middle.
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(100), json!({ "iccid": "bad" }), reg(101), reg(102)],
    )
    .await;
    let p1 = store
        .list_items(
            &t,
            &b.id,
            &ItemFilter {
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p1.iter().map(|i| i.seq).collect::<Vec<_>>(), [0, 1]);
    let p2 = store
        .list_items(
            &t,
            &b.id,
            &ItemFilter {
                after_seq: Some(1),
                limit: 2,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(p2.iter().map(|i| i.seq).collect::<Vec<_>>(), [2, 3]);
    let rejected = ItemFilter {
        status: Some(ItemStatus::Rejected),
        limit: 10,
        ..Default::default()
    };
    let r = store.list_items(&t, &b.id, &rejected).await.unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].seq, 1);
    assert_eq!(r[0].iccid, "bad");
}

async fn bench_floor_activate(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2), reg(3)],
    )
    .await;
    run_all(&store).await;
    let b = submit(
        &store,
        &t,
        Operation::Activate,
        BatchMode::Parallel,
        &[reg(1), reg(2), reg(3)],
    )
    .await;
    assert_eq!(store.bench_floor_activate(&b.id).await.unwrap(), 3);
    for n in 1..=3 {
        assert_eq!(
            store
                .get_sim(&t, &iccid(n))
                .await
                .unwrap()
                .unwrap()
                .sim
                .status,
            SimStatus::Activated
        );
        let h = store.sim_history(&t, &iccid(n), 0, 10).await.unwrap();
        assert_eq!(h.len(), 2);
        assert_eq!(
            (
                h[1].operation.as_str(),
                h[1].from_status.as_deref(),
                h[1].to_status.as_str()
            ),
            ("activate", Some("INVENTORY"), "ACTIVATED")
        );
        assert_eq!(h[1].batch_id.as_deref(), Some(b.id.as_str()));
    }
    assert!(all_items(&store, &t, &b.id)
        .await
        .iter()
        .all(|i| i.status == ItemStatus::Completed));
    assert_eq!(
        store.bench_floor_activate(&b.id).await.unwrap(),
        0,
        "nothing left to apply"
    );
}

async fn profiles_and_confirmation_codes(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    const CC: &str = "CONFIRM-7731";
    let rows = [
        json!({ "iccid": iccid(1), "template": "tpl", "cc": CC, "expire_time": "2030-01-02 03:04:05",
                "imsi": "001010000000001", "ki": KI }),
        json!({ "iccid": iccid(2), "template": "tpl", "imsi": "001010000000002", "ki": KI }),
    ];
    let b = submit(
        &store,
        &t,
        Operation::GenerateActivationCode,
        BatchMode::Parallel,
        &rows,
    )
    .await;
    assert_eq!(run_all(&store).await, 2);
    let done = batch(&store, &t, &b.id).await;
    assert_eq!(
        (done.status, done.counts.completed),
        (BatchStatus::Completed, 2)
    );
    let its = all_items(&store, &t, &b.id).await;
    let ac = its[0]
        .result
        .as_ref()
        .and_then(|r| r["activation_code"].as_str())
        .expect("activation code");
    assert!(
        ac.starts_with("1$smdp.example.com$") && ac.ends_with("$$1"),
        "{ac}"
    );
    assert!(its[0].params.get("cc").is_none());
    assert!(
        store.get_sim(&t, &iccid(1)).await.unwrap().is_some(),
        "the SIM is created with its profile"
    );

    // A second code for the same ICCID: the claim reports the existing profile.
    let again = submit(
        &store,
        &t,
        Operation::GenerateActivationCode,
        BatchMode::Parallel,
        &rows[1..],
    )
    .await;
    let claim = store.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claim.items.len(), 1);
    assert!(claim.items[0].has_profile);
    assert!(claim.items[0].sim.is_some());
    store
        .complete(&claim.token, run_items(&claim.items))
        .await
        .unwrap();
    let item = &all_items(&store, &t, &again.id).await[0];
    assert_eq!(item.status, ItemStatus::Failed);
    assert_eq!(item.error_code.as_deref(), Some("iccid_exists"));
    assert!(
        !raw_dump().await.contains(CC),
        "confirmation code stored in plaintext"
    );

    // The package: sealed at rest, given back to its tenant only, each download recorded.
    let pkg = format!("PKG:{}:{KI}", iccid(1)).into_bytes();
    assert!(
        !raw_dump().await.contains("PKG:"),
        "package stored in plaintext"
    );
    let other = tenant(&store, "other").await;
    assert_eq!(
        store.download_package(&other, &iccid(1)).await.unwrap(),
        None
    );
    assert_eq!(store.download_package(&t, &iccid(9)).await.unwrap(), None);
    for _ in 0..2 {
        assert_eq!(
            store
                .download_package(&t, &iccid(1))
                .await
                .unwrap()
                .as_deref(),
            Some(pkg.as_slice())
        );
    }
    let history = store.sim_history(&t, &iccid(1), 0, 100).await.unwrap();
    let downloads: Vec<_> = history
        .iter()
        .filter(|h| h.operation == "download_package")
        .collect();
    assert_eq!(downloads.len(), 2, "{history:?}");
    assert_eq!(downloads[0].to_status, history[0].to_status);
    assert!(downloads[0].batch_id.is_none());
    assert!(store
        .sim_history(&other, &iccid(1), 0, 100)
        .await
        .unwrap()
        .is_empty());
}

async fn concurrent_claims_are_disjoint(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let rows: Vec<Value> = (0..60).map(reg).collect();
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &rows,
    )
    .await;
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let store = store.clone();
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let claim = store.claim(7, Duration::from_secs(30)).await.unwrap();
                if claim.items.is_empty() {
                    return mine;
                }
                mine.extend(claim.items.iter().map(|i| i.id));
                let s = store
                    .complete(&claim.token, run_items(&claim.items))
                    .await
                    .unwrap();
                assert_eq!(s.fenced_out, 0);
            }
        }));
    }
    let mut all = Vec::new();
    for task in tasks {
        all.extend(task.await.unwrap());
    }
    let n = all.len();
    all.sort_unstable();
    all.dedup();
    assert_eq!((n, all.len()), (60, 60), "every item claimed exactly once");
    let done = batch(&store, &t, &b.id).await;
    assert_eq!(
        (done.status, done.counts.completed, done.counts.processing),
        (BatchStatus::Completed, 60, 0)
    );
    assert_eq!(
        event_kinds(&store, &t)
            .await
            .iter()
            .filter(|k| *k == "batch.completed")
            .count(),
        1
    );
}

async fn dialect_auth(store: Arc<dyn Store>) {
    // key_secret: the plain secret of a live key, sealed at rest.
    let k = store.create_key("acme").await.unwrap();
    let (t, secret) = store.key_secret(&k.key_id).await.unwrap().unwrap();
    assert_eq!(
        (t.name.as_str(), secret.as_str()),
        ("acme", k.secret.as_str())
    );
    assert!(store.key_secret("sk_unknown").await.unwrap().is_none());
    let dump = raw_dump().await;
    assert!(
        !dump.contains(&k.secret.to_uppercase()),
        "the key secret is stored in plaintext"
    );
    assert!(store.revoke_key(&k.key_id).await.unwrap());
    assert!(store.key_secret(&k.key_id).await.unwrap().is_none());

    // remember_request_id: once per key; forgotten after the retention.
    let now = now_ms();
    assert!(store.remember_request_id("k1", "r1", now).await.unwrap());
    assert!(!store
        .remember_request_id("k1", "r1", now + 1)
        .await
        .unwrap());
    assert!(store.remember_request_id("k2", "r1", now).await.unwrap());
    let later = now + REQUEST_ID_RETENTION_MS + 1;
    assert!(store.remember_request_id("k1", "r2", later).await.unwrap());
    assert!(
        store.remember_request_id("k1", "r1", later).await.unwrap(),
        "swept after the retention"
    );

    // server_secret: 32 random bytes, stable, distinct per name, sealed.
    let a = store.server_secret("url_signing").await.unwrap();
    assert_eq!(a.len(), 32);
    assert_eq!(store.server_secret("url_signing").await.unwrap(), a);
    assert_ne!(store.server_secret("other").await.unwrap(), a);
    assert!(!raw_dump().await.contains(&hex::encode(&a).to_uppercase()));
}

// ---------------------------------------------------------------- eSIM profile lifecycle

mod lifecycle {
    use simbatch_core::activation::{hash_confirmation_code, MatchingId};
    pub use simbatch_core::profile::{FinalProfileStatus, ProfileCommand};
    use simbatch_core::Eid;

    use super::*;

    pub const EID: &str = "89049032123451234512345678901235";
    pub const EID2: &str = "89049032123451234512345678901332";

    pub fn req(
        iccid: Option<String>,
        profile_type: Option<&str>,
        command: ProfileCommand,
    ) -> ProfileRequest {
        ProfileRequest {
            iccid,
            profile_type: profile_type.map(str::to_owned),
            command,
            source: "es2plus".into(),
            call_id: Some("call-1".into()),
        }
    }

    pub fn download(eid: Option<&str>) -> ProfileCommand {
        ProfileCommand::DownloadOrder {
            eid: eid.map(|e| Eid::parse(e).unwrap()),
        }
    }

    pub fn confirm(
        eid: Option<&str>,
        mid: Option<&str>,
        cc: Option<&str>,
        release: bool,
    ) -> ProfileCommand {
        ProfileCommand::ConfirmOrder {
            eid: eid.map(|e| Eid::parse(e).unwrap()),
            matching_id: mid.map(|m| MatchingId::parse(m).unwrap()),
            cc_hash: cc.map(hash_confirmation_code),
            release,
        }
    }

    pub fn cancel(final_status: FinalProfileStatus) -> ProfileCommand {
        ProfileCommand::CancelOrder {
            eid: None,
            matching_id: None,
            final_status,
        }
    }

    /// Generate profiles (all rows, one batch) and run them; rows get the
    /// IMSI and Ki personalisation needs unless they carry their own.
    pub async fn generate(store: &Arc<dyn Store>, t: &str, rows: &[Value]) {
        let rows: Vec<Value> = rows
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let m = r.as_object_mut().expect("rows are objects");
                m.entry("imsi").or_insert_with(|| json!("001010000000009"));
                m.entry("ki")
                    .or_insert_with(|| json!("000102030405060708090a0b0c0d0e0f"));
                r
            })
            .collect();
        submit(
            store,
            t,
            Operation::GenerateActivationCode,
            BatchMode::Parallel,
            &rows,
        )
        .await;
        assert_eq!(run_all(store).await, rows.len());
    }

    pub fn state_of(o: &ProfileOutcome) -> S {
        o.as_ref().expect("command succeeds").state
    }

    pub use simbatch_core::profile::ProfileRefusal as R;
    pub use simbatch_core::profile::ProfileState as S;
}

async fn profile_commands(store: Arc<dyn Store>) {
    use lifecycle::*;
    let t = tenant(&store, "acme").await;
    let other = tenant(&store, "other").await;
    let avail = |n| json!({"iccid": iccid(n), "template": "tpl", "profile_state": "AVAILABLE"});
    generate(
        &store,
        &t,
        &[
            avail(1),
            avail(2),
            avail(3),
            json!({"iccid": iccid(4), "template": "tpl", "cc": "4242"}),
        ],
    )
    .await;
    let p1 = store.get_profile(&t, &iccid(1)).await.unwrap().unwrap();
    assert_eq!(
        (p1.state, p1.template.as_deref()),
        (S::Available, Some("tpl"))
    );
    assert!(
        store
            .get_profile(&other, &iccid(1))
            .await
            .unwrap()
            .is_none(),
        "other tenant"
    );
    let p4 = store.get_profile(&t, &iccid(4)).await.unwrap().unwrap();
    assert_eq!(p4.state, S::Released);
    assert!(p4.confirmation_code_required);
    assert_eq!(p4.smdp_address().as_deref(), Some("smdp.example.com"));

    // DownloadOrder: by profile type (first AVAILABLE), by ICCID, with an EID.
    let cmd = |i: Option<String>, pt: Option<&str>, c| {
        let (r, store, t) = (req(i, pt, c), store.clone(), t.clone());
        async move { store.profile_command(&t, &r).await }
    };
    assert_eq!(
        cmd(None, Some("nope"), download(None)).await.unwrap(),
        Err(R::UnknownProfileType("nope".into()))
    );
    let o = cmd(None, Some("tpl"), download(None)).await.unwrap();
    assert_eq!(
        (state_of(&o), o.as_ref().unwrap().iccid.clone()),
        (S::Allocated, iccid(1))
    );
    let o = cmd(Some(iccid(2)), Some("tpl"), download(Some(EID)))
        .await
        .unwrap();
    assert_eq!(state_of(&o), S::Linked);
    assert_eq!(o.unwrap().eid.as_deref(), Some(EID));
    assert!(matches!(
        cmd(Some(iccid(3)), Some("other-type"), download(None))
            .await
            .unwrap(),
        Err(R::ProfileTypeMismatch { .. })
    ));
    assert_eq!(
        state_of(&cmd(Some(iccid(3)), None, download(None)).await.unwrap()),
        S::Allocated
    );
    assert_eq!(
        cmd(None, Some("tpl"), download(None)).await.unwrap(),
        Err(R::NoProfileAvailable("tpl".into()))
    );
    assert!(matches!(
        cmd(Some(iccid(4)), None, download(None)).await.unwrap(),
        Err(R::InvalidTransition { .. })
    ));
    assert_eq!(
        store
            .profile_command(&other, &req(Some(iccid(1)), None, download(None)))
            .await
            .unwrap(),
        Err(R::UnknownIccid(iccid(1))),
        "another tenant's profile is unknown"
    );
    assert!(matches!(
        store
            .profile_command(&t, &req(None, None, download(None)))
            .await,
        Err(StoreError::State(_))
    ));

    // ConfirmOrder: EID mismatch, matching ID in use, then confirmed with a CC.
    let before = store.get_profile(&t, &iccid(2)).await.unwrap().unwrap();
    assert!(matches!(
        cmd(Some(iccid(2)), None, confirm(Some(EID2), None, None, true))
            .await
            .unwrap(),
        Err(R::EidMismatch { .. })
    ));
    assert_eq!(
        cmd(
            Some(iccid(2)),
            None,
            confirm(Some(EID), Some(&p4.matching_id), None, true)
        )
        .await
        .unwrap(),
        Err(R::MatchingIdInUse(p4.matching_id.clone()))
    );
    assert_eq!(
        store.get_profile(&t, &iccid(2)).await.unwrap().unwrap(),
        before,
        "a refusal writes nothing"
    );
    const CC: &str = "CC-8817";
    let o = cmd(
        Some(iccid(2)),
        None,
        confirm(Some(EID), Some("OP-MID-2"), Some(CC), false),
    )
    .await
    .unwrap()
    .unwrap();
    assert_eq!(
        (o.state, o.matching_id.as_str()),
        (S::Confirmed, "OP-MID-2")
    );
    assert_eq!(o.activation_code, "1$smdp.example.com$OP-MID-2$$1");
    assert!(o.confirmation_code_required);
    assert_eq!(
        store.get_profile(&t, &iccid(2)).await.unwrap().unwrap(),
        o,
        "what was written"
    );

    // ReleaseProfile, then again (not CONFIRMED any more).
    assert_eq!(
        state_of(
            &cmd(Some(iccid(2)), None, ProfileCommand::ReleaseProfile)
                .await
                .unwrap()
        ),
        S::Released
    );
    assert!(matches!(
        cmd(Some(iccid(2)), None, ProfileCommand::ReleaseProfile)
            .await
            .unwrap(),
        Err(R::InvalidTransition { .. })
    ));
    // ConfirmOrder with releaseFlag on an ALLOCATED profile links it to the EID.
    let o = cmd(Some(iccid(3)), None, confirm(Some(EID2), None, None, true))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((o.state, o.eid.as_deref()), (S::Released, Some(EID2)));

    // CancelOrder back to AVAILABLE: a new matching ID, no EID, no CC.
    let o = cmd(Some(iccid(2)), None, cancel(FinalProfileStatus::Available))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (o.state, o.eid.clone(), o.confirmation_code_required),
        (S::Available, None, false)
    );
    assert_ne!(o.matching_id, "OP-MID-2");
    let o = cmd(
        Some(iccid(1)),
        None,
        cancel(FinalProfileStatus::Unavailable),
    )
    .await
    .unwrap();
    assert_eq!(state_of(&o), S::Unavailable);
    assert!(matches!(
        cmd(Some(iccid(1)), None, cancel(FinalProfileStatus::Available))
            .await
            .unwrap(),
        Err(R::InvalidTransition { .. })
    ));

    // History and events record every change, and nothing else.
    let h = store.sim_history(&t, &iccid(2), 0, 100).await.unwrap();
    let ops: Vec<_> = h
        .iter()
        .map(|e| {
            (
                e.operation.as_str(),
                e.from_status.as_deref(),
                e.to_status.as_str(),
            )
        })
        .collect();
    assert_eq!(
        &ops[1..],
        &[
            ("es2plus.download_order", Some("AVAILABLE"), "LINKED"),
            ("es2plus.confirm_order", Some("LINKED"), "CONFIRMED"),
            ("es2plus.release_profile", Some("CONFIRMED"), "RELEASED"),
            ("es2plus.cancel_order", Some("RELEASED"), "AVAILABLE"),
        ]
    );
    let events = store.events_after(&t, 0, 1000).await.unwrap();
    let changes: Vec<_> = events
        .iter()
        .filter(|e| e.kind == "profile.status_changed")
        .collect();
    assert_eq!(changes.len(), 8, "{changes:?}");
    assert_eq!(changes[0].data["function_call_identifier"], "call-1");
    assert!(store
        .events_after(&other, 0, 1000)
        .await
        .unwrap()
        .iter()
        .all(|e| e.kind != "profile.status_changed"));
    assert!(
        !raw_dump().await.contains(CC),
        "confirmation code stored in plaintext"
    );
}

async fn profile_expiry(store: Arc<dyn Store>) {
    use lifecycle::*;
    let t = tenant(&store, "acme").await;
    let past = "2020-01-02 03:04:05";
    generate(
        &store,
        &t,
        &[
            json!({"iccid": iccid(1), "template": "tpl", "expire_time": past}),
            json!({"iccid": iccid(2), "template": "tpl", "expire_time": past, "profile_state": "AVAILABLE"}),
            json!({"iccid": iccid(3), "template": "tpl", "expire_time": "2999-01-01 00:00:00"}),
            json!({"iccid": iccid(4), "template": "tpl"}),
            json!({"iccid": iccid(5), "template": "tpl", "expire_time": past}),
        ],
    )
    .await;
    // A used-up profile is not expired again: cancel 5 for good first.
    let o = store
        .profile_command(
            &t,
            &req(
                Some(iccid(5)),
                None,
                cancel(FinalProfileStatus::Unavailable),
            ),
        )
        .await
        .unwrap();
    assert_eq!(state_of(&o), S::Unavailable);
    let now = now_ms();
    assert_eq!(
        store.expire_profiles(now, 1).await.unwrap(),
        1,
        "bounded by the limit"
    );
    assert_eq!(store.expire_profiles(now, 100).await.unwrap(), 1);
    assert_eq!(
        store.expire_profiles(now, 100).await.unwrap(),
        0,
        "nothing left"
    );
    for (n, want) in [
        (1, S::Unavailable),
        (2, S::Unavailable),
        (3, S::Released),
        (4, S::Released),
        (5, S::Unavailable),
    ] {
        assert_eq!(
            store
                .get_profile(&t, &iccid(n))
                .await
                .unwrap()
                .unwrap()
                .state,
            want,
            "profile {n}"
        );
    }
    let h = store.sim_history(&t, &iccid(2), 0, 100).await.unwrap();
    let last = h.last().unwrap();
    assert_eq!(
        (
            last.operation.as_str(),
            last.from_status.as_deref(),
            last.to_status.as_str()
        ),
        ("profile.expired", Some("AVAILABLE"), "UNAVAILABLE")
    );
    let expired: Vec<_> = store
        .events_after(&t, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "profile.status_changed" && e.data["operation"] == "profile.expired")
        .map(|e| e.data["iccid"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(expired.len(), 2);
    assert!(expired.contains(&iccid(1)) && expired.contains(&iccid(2)));
    // The expiry cut-off is the time given: nothing is due a day in the past.
    assert_eq!(store.expire_profiles(1_000, 100).await.unwrap(), 0);
}

async fn concurrent_download_orders_take_distinct_profiles(store: Arc<dyn Store>) {
    use lifecycle::*;
    let t = tenant(&store, "acme").await;
    let rows: Vec<Value> = (1..=6)
        .map(|n| json!({"iccid": iccid(n), "template": "tpl", "profile_state": "AVAILABLE"}))
        .collect();
    generate(&store, &t, &rows).await;
    // Eight callers race for six profiles of one type: six win distinct
    // profiles, two are told none is available, and nothing is taken twice.
    let calls = (0..8).map(|_| {
        let (store, t) = (store.clone(), t.clone());
        tokio::spawn(async move {
            store
                .profile_command(&t, &req(None, Some("tpl"), download(None)))
                .await
                .unwrap()
        })
    });
    let mut won = Vec::new();
    let mut none_left = 0;
    for c in calls.collect::<Vec<_>>() {
        match c.await.unwrap() {
            Ok(p) => won.push(p.iccid),
            Err(R::NoProfileAvailable(_)) => none_left += 1,
            Err(other) => panic!("unexpected refusal {other:?}"),
        }
    }
    won.sort();
    won.dedup();
    assert_eq!((won.len(), none_left), (6, 2), "{won:?}");
    for n in 1..=6 {
        assert_eq!(
            store
                .get_profile(&t, &iccid(n))
                .await
                .unwrap()
                .unwrap()
                .state,
            S::Allocated
        );
        assert_eq!(
            store
                .sim_history(&t, &iccid(n), 0, 100)
                .await
                .unwrap()
                .len(),
            2,
            "one order each"
        );
    }
}

/// `get_item` finds an item by its global id (the order id dialects show),
/// equal to what `list_items` returns, and nothing for unknown ids.
async fn get_item_by_order_id(store: Arc<dyn Store>) {
    let t = tenant(&store, "orders").await;
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2)],
    )
    .await;
    let listed = all_items(&store, &t, &b.id).await;
    assert_eq!(listed.len(), 2);
    assert!(listed[0].id < listed[1].id, "ids follow submission order");
    for it in &listed {
        let got = store.get_item(&t, it.id).await.unwrap().unwrap();
        assert_eq!(&got, it);
    }
    run_all(&store).await;
    let done = store.get_item(&t, listed[1].id).await.unwrap().unwrap();
    assert_eq!(done.status, ItemStatus::Completed);
    assert!(store.get_item(&t, i64::MAX).await.unwrap().is_none());
    assert!(store.get_item(&t, -1).await.unwrap().is_none());
}

/// A webhook keeps its format; a skipped event moves the cursor without
/// being logged as a delivery attempt.
async fn webhook_formats_and_skipped_events(store: Arc<dyn Store>) {
    let t = tenant(&store, "formats").await;
    let plain = store
        .create_webhook(&t, "https://a.example/std")
        .await
        .unwrap();
    assert_eq!(plain.format, WEBHOOK_STANDARD);
    let hook = store
        .create_webhook_with_format(&t, "https://a.example/push", "smarthub")
        .await
        .unwrap();
    assert_eq!(hook.format, "smarthub");
    let listed = store.list_webhooks(&t).await.unwrap();
    // Created in the same millisecond, their listing order is not defined.
    let mut formats: Vec<&str> = listed.iter().map(|w| w.format.as_str()).collect();
    formats.sort_unstable();
    assert_eq!(formats, ["smarthub", WEBHOOK_STANDARD]);
    assert_eq!(
        store
            .get_webhook(&t, &hook.id)
            .await
            .unwrap()
            .unwrap()
            .format,
        "smarthub"
    );
    submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1)],
    )
    .await;
    run_all(&store).await;
    let now = now_ms();
    let due = store.due_deliveries(now + 1, 10).await.unwrap();
    let (h, first) = due
        .iter()
        .find(|(h, _)| h.id == hook.id)
        .cloned()
        .expect("the push endpoint has an event due");
    assert_eq!(h.format, "smarthub");
    assert!(h.secret.is_some());
    store
        .record_delivery(&DeliveryAttempt {
            webhook_id: hook.id.clone(),
            event: first.clone(),
            status_code: None,
            error: None,
            duration_ms: 0,
            next: DeliveryNext::Advance,
            skipped: true,
        })
        .await
        .unwrap();
    assert!(store
        .delivery_log(&t, &hook.id, 10)
        .await
        .unwrap()
        .is_empty());
    let due = store.due_deliveries(now + 1, 10).await.unwrap();
    let (_, next) = due.iter().find(|(h, _)| h.id == hook.id).cloned().unwrap();
    assert!(
        next.seq > first.seq,
        "the cursor moved past the skipped event"
    );
}

/// The dialects' look-ups: one event type after a cursor, a SIM's open
/// order, and the counts behind paged lists; each scoped to its tenant.
async fn dialect_lookups(store: Arc<dyn Store>) {
    let t = tenant(&store, "lookups").await;
    let u = tenant(&store, "lookups-other").await;
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2)],
    )
    .await;
    let items = all_items(&store, &t, &b.id).await;
    assert_eq!(
        store.open_order(&t, &iccid(1)).await.unwrap(),
        Some(items[0].id)
    );
    assert_eq!(store.open_order(&u, &iccid(1)).await.unwrap(), None);
    run_all(&store).await;
    assert_eq!(store.open_order(&t, &iccid(1)).await.unwrap(), None);

    let all = SimFilter {
        limit: 1,
        ..Default::default()
    };
    assert_eq!(store.count_sims(&t, &all).await.unwrap(), 2);
    assert_eq!(store.count_sims(&u, &all).await.unwrap(), 0);
    let status = store
        .get_sim(&t, &iccid(1))
        .await
        .unwrap()
        .unwrap()
        .sim
        .status;
    let same = SimFilter {
        status: Some(status),
        after_iccid: Some(iccid(1)),
        ..all.clone()
    };
    assert_eq!(
        store.count_sims(&t, &same).await.unwrap(),
        2,
        "cursor ignored"
    );
    let none = SimFilter {
        msisdn: Some("46700000000".into()),
        ..all.clone()
    };
    assert_eq!(store.count_sims(&t, &none).await.unwrap(), 0);
    assert_eq!(store.count_sim_history(&t, &iccid(1)).await.unwrap(), 1);
    assert_eq!(store.count_sim_history(&u, &iccid(1)).await.unwrap(), 0);

    let orders = store
        .events_of_type_after(&t, "order.completed", 0, 10)
        .await
        .unwrap();
    assert_eq!(orders.len(), 2);
    assert!(orders.iter().all(|e| e.kind == "order.completed"));
    assert!(orders[0].seq < orders[1].seq);
    let after = store
        .events_of_type_after(&t, "order.completed", orders[0].seq, 10)
        .await
        .unwrap();
    assert_eq!(after, orders[1..].to_vec());
    let one = store
        .events_of_type_after(&t, "order.completed", 0, 1)
        .await
        .unwrap();
    assert_eq!(one, orders[..1].to_vec());
    let batches = store
        .events_of_type_after(&t, "batch.completed", 0, 10)
        .await
        .unwrap();
    assert_eq!(batches.len(), 1);
    assert!(batches[0].seq > orders[0].seq);
    assert!(store
        .events_of_type_after(&u, "order.completed", 0, 10)
        .await
        .unwrap()
        .is_empty());
}

/// `count_batches`: one count per state, honouring the list filters (status,
/// operation, created window), ignoring cursor and limit, tenant-scoped.
async fn batch_counts_by_state(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let other = tenant(&store, "other").await;
    let count = |f: BatchFilter| {
        let store = store.clone();
        let t = t.clone();
        async move {
            store
                .count_batches(&t, &f)
                .await
                .unwrap()
                .into_iter()
                .map(|(s, n)| (s.as_str(), n))
                .collect::<Vec<_>>()
        }
    };
    let zero: Vec<(&str, i64)> = BatchStatus::ALL.iter().map(|s| (s.as_str(), 0)).collect();
    assert_eq!(count(BatchFilter::default()).await, zero, "no batches yet");

    let mut times = Vec::new();
    // 0, 2: register_sim (2 stays PROCESSING), 1: activate, all rejected
    // (PARTIALLY_COMPLETED), 3: activate, cancelled.
    for i in 0..4u32 {
        let (op, rows) = match i {
            1 => (Operation::Activate, vec![json!({ "iccid": "bad" })]),
            3 => (Operation::Activate, vec![reg(30)]),
            _ => (Operation::RegisterSim, vec![reg(i * 10)]),
        };
        let b = submit(&store, &t, op, BatchMode::Parallel, &rows).await;
        if i == 3 {
            store.cancel_batch(&t, &b.id).await.unwrap().unwrap();
        }
        times.push(b.created_at);
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    submit(
        &store,
        &other,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(99)],
    )
    .await;

    let want = |pairs: &[(&str, i64)]| -> Vec<(&'static str, i64)> {
        BatchStatus::ALL
            .iter()
            .map(|s| {
                let n = pairs
                    .iter()
                    .find(|(k, _)| *k == s.as_str())
                    .map_or(0, |p| p.1);
                (s.as_str(), n)
            })
            .collect()
    };
    assert_eq!(
        count(BatchFilter {
            limit: 1,
            before_id: Some("0".into()),
            ..Default::default()
        })
        .await,
        want(&[
            ("PROCESSING", 2),
            ("PARTIALLY_COMPLETED", 1),
            ("CANCELLED", 1)
        ]),
        "every batch of the tenant, cursor and limit ignored"
    );
    assert_eq!(
        count(BatchFilter {
            operation: Some(Operation::Activate),
            ..Default::default()
        })
        .await,
        want(&[("PARTIALLY_COMPLETED", 1), ("CANCELLED", 1)])
    );
    assert_eq!(
        count(BatchFilter {
            status: Some(BatchStatus::Processing),
            ..Default::default()
        })
        .await,
        want(&[("PROCESSING", 2)])
    );
    assert_eq!(
        count(BatchFilter {
            created_after: Some(times[1]),
            created_before: Some(times[3]),
            ..Default::default()
        })
        .await,
        want(&[("PROCESSING", 1), ("PARTIALLY_COMPLETED", 1)]),
        "created_after inclusive, created_before exclusive"
    );
    let theirs = store
        .count_batches(&other, &BatchFilter::default())
        .await
        .unwrap();
    assert_eq!(theirs.iter().map(|p| p.1).sum::<i64>(), 1, "tenant-scoped");
}

/// Completions of an activate chunk in which the order for `bad` claims to
/// create its SIM, which already exists: the SIM insert breaks the primary key.
fn poisoned(claimed: &[ClaimedItem], bad: &str) -> Vec<Completion> {
    let mut done = run_items(claimed);
    for c in &mut done {
        if c.item.iccid == bad {
            if let Ok(o) = &mut c.result {
                o.created = true;
            }
        }
    }
    done
}

/// Registers SIMs 1..=3 and queues an activate batch for them.
async fn activate_three(store: &Arc<dyn Store>, t: &str) -> BatchRecord {
    submit(
        store,
        t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2), reg(3)],
    )
    .await;
    run_all(store).await;
    submit(
        store,
        t,
        Operation::Activate,
        BatchMode::Parallel,
        &[reg(1), reg(2), reg(3)],
    )
    .await
}

/// After one refused item: it alone failed, the others took effect, the batch is terminal.
async fn assert_isolated(store: &Arc<dyn Store>, t: &str, b: &BatchRecord) {
    let got = all_items(store, t, &b.id).await;
    let st: Vec<ItemStatus> = got.iter().map(|i| i.status).collect();
    assert_eq!(
        st,
        [
            ItemStatus::Completed,
            ItemStatus::Failed,
            ItemStatus::Completed
        ]
    );
    assert_eq!(got[1].error_code.as_deref(), Some(REFUSED_CODE));
    let reason = got[1].error_reason.clone().unwrap_or_default();
    assert!(
        reason.starts_with("the database refused this item's changes"),
        "{reason}"
    );
    let bb = batch(store, t, &b.id).await;
    assert_eq!(bb.status, BatchStatus::PartiallyCompleted);
    assert_eq!(
        (
            bb.counts.completed,
            bb.counts.failed,
            bb.counts.processing,
            bb.counts.approved
        ),
        (2, 1, 0, 0)
    );
    for (n, want) in [
        (1, SimStatus::Activated),
        (2, SimStatus::Inventory),
        (3, SimStatus::Activated),
    ] {
        let sim = store.get_sim(t, &iccid(n)).await.unwrap().unwrap();
        assert_eq!(sim.sim.status, want, "SIM {n}");
    }
    assert_eq!(
        store.sim_history(t, &iccid(2), 0, 10).await.unwrap().len(),
        1,
        "the refused item wrote no history"
    );
    let events = store.events_after(t, 0, 100).await.unwrap();
    let failed: Vec<&Event> = events.iter().filter(|e| e.kind == "order.failed").collect();
    assert_eq!(failed.len(), 1);
    assert_eq!(failed[0].data["iccid"], json!(iccid(2)));
    assert_eq!(failed[0].data["error_code"], json!(REFUSED_CODE));
    assert_eq!(
        events
            .iter()
            .filter(|e| e.kind == "order.completed" && e.data["batch_id"] == json!(b.id))
            .count(),
        2
    );
    assert!(events.iter().any(|e| e.kind == "batch.partially_completed"));
    assert_eq!(store.queue_depth().await.unwrap(), 0);
}

/// A completion whose writes break a constraint fails alone (claim/complete path).
async fn refused_item_is_isolated(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = activate_three(&store, &t).await;
    let claim = store.claim(10, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claim.items.len(), 3);
    let s = store
        .complete(&claim.token, poisoned(&claim.items, &iccid(2)))
        .await
        .expect("a refused item does not fail the chunk");
    assert_eq!(
        (s.applied, s.completed, s.failed, s.fenced_out),
        (3, 2, 1, 0)
    );
    assert_eq!(s.by_operation.len(), 1);
    assert_eq!(
        (s.by_operation[0].completed, s.by_operation[0].failed),
        (2, 1)
    );
    assert_eq!(
        s.finished,
        vec![(b.id.clone(), BatchStatus::PartiallyCompleted)]
    );
    assert_isolated(&store, &t, &b).await;
}

/// The same through `run_chunk` (one transaction on SQLite).
async fn refused_item_is_isolated_in_run_chunk(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = activate_three(&store, &t).await;
    let bad = iccid(2);
    let execute = shared(
        move |items: Vec<ClaimedItem>| -> futures::future::BoxFuture<'static, Vec<Completion>> {
            let done = poisoned(&items, &bad);
            Box::pin(async move { done })
        },
    );
    let s = store
        .run_chunk(10, Duration::from_secs(30), &execute)
        .await
        .expect("a refused item does not fail the chunk")
        .expect("the chunk ran");
    assert_eq!((s.applied, s.completed, s.failed), (3, 2, 1));
    assert_isolated(&store, &t, &b).await;
    assert!(store
        .run_chunk(10, Duration::from_secs(30), &execute)
        .await
        .unwrap()
        .is_none());
}

/// An executor that runs items as the engine does.
/// A test executor as `run_chunk` takes it.
fn shared(
    f: impl Fn(Vec<ClaimedItem>) -> futures::future::BoxFuture<'static, Vec<Completion>>
        + Send
        + Sync
        + 'static,
) -> Arc<Executor> {
    Arc::new(f)
}

fn plain_executor(
) -> impl Fn(Vec<ClaimedItem>) -> futures::future::BoxFuture<'static, Vec<Completion>> + Send + Sync
{
    |items: Vec<ClaimedItem>| -> futures::future::BoxFuture<'static, Vec<Completion>> {
        let done = run_items(&items);
        Box::pin(async move { done })
    }
}

/// `run_chunk` takes over items a claim left leased once the lease expired,
/// together with fresh ones, and the counters come out whole; the stale
/// claim's completion is fenced out.
async fn run_chunk_takes_over_expired_leases(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2), reg(3)],
    )
    .await;
    let stale = store.claim(1, Duration::from_millis(1)).await.unwrap();
    assert_eq!(stale.items.len(), 1);
    tokio::time::sleep(Duration::from_millis(30)).await;
    let s = store
        .run_chunk(10, Duration::from_secs(30), &shared(plain_executor()))
        .await
        .unwrap()
        .expect("the chunk ran");
    assert_eq!((s.applied, s.completed, s.failed), (3, 3, 0));
    assert_eq!(s.finished, vec![(b.id.clone(), BatchStatus::Completed)]);
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(
        (
            got.counts.approved,
            got.counts.processing,
            got.counts.completed
        ),
        (0, 0, 3)
    );
    let late = store
        .complete(&stale.token, run_items(&stale.items))
        .await
        .unwrap();
    assert_eq!((late.applied, late.fenced_out), (0, 1));
    assert!(all_items(&store, &t, &b.id)
        .await
        .iter()
        .all(|i| i.status == ItemStatus::Completed));
}

/// While one `run_chunk` executes its items, another worker's `run_chunk`
/// and `claim` pass them by and take the rest; every item is applied once.
async fn run_chunk_items_are_passed_by_while_held(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2), reg(3), reg(4)],
    )
    .await;
    let inner = store.clone();
    let execute =
        move |items: Vec<ClaimedItem>| -> futures::future::BoxFuture<'static, Vec<Completion>> {
            let store = inner.clone();
            Box::pin(async move {
                let other = store
                    .run_chunk(10, Duration::from_secs(30), &shared(plain_executor()))
                    .await
                    .expect("a second worker runs beside the first")
                    .expect("it finds the items not held");
                assert_eq!(other.applied, 2, "only the items not held");
                let claim = store.claim(10, Duration::from_secs(30)).await.unwrap();
                assert!(claim.items.is_empty(), "held items are not claimable");
                run_items(&items)
            })
        };
    let s = store
        .run_chunk(2, Duration::from_secs(30), &shared(execute))
        .await
        .unwrap()
        .expect("the chunk ran");
    assert_eq!((s.applied, s.completed), (2, 2));
    assert_eq!(s.finished, vec![(b.id.clone(), BatchStatus::Completed)]);
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(
        (
            got.counts.approved,
            got.counts.processing,
            got.counts.completed
        ),
        (0, 0, 4)
    );
    let items = all_items(&store, &t, &b.id).await;
    assert_eq!(items.len(), 4);
    assert!(items.iter().all(|i| i.status == ItemStatus::Completed));
}

/// A cancel while `run_chunk` holds an item cancels the others at once; the
/// held item finishes and the batch stays CANCELLED.
async fn cancel_while_run_chunk_holds_items(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2), reg(3)],
    )
    .await;
    let (inner, tenant_id, batch_id) = (store.clone(), t.clone(), b.id.clone());
    let execute =
        move |items: Vec<ClaimedItem>| -> futures::future::BoxFuture<'static, Vec<Completion>> {
            let (store, t, b) = (inner.clone(), tenant_id.clone(), batch_id.clone());
            Box::pin(async move {
                let c = store.cancel_batch(&t, &b).await.unwrap().unwrap();
                assert_eq!(c.status, BatchStatus::Cancelled);
                assert_eq!(c.counts.canceled, 2, "the items not held are canceled");
                run_items(&items)
            })
        };
    let s = store
        .run_chunk(1, Duration::from_secs(30), &shared(execute))
        .await
        .unwrap()
        .expect("the chunk ran");
    assert_eq!((s.applied, s.completed), (1, 1));
    assert!(s.finished.is_empty(), "already terminal");
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(got.status, BatchStatus::Cancelled);
    assert_eq!(
        (
            got.counts.approved,
            got.counts.processing,
            got.counts.completed,
            got.counts.canceled
        ),
        (0, 0, 1, 2)
    );
    assert!(store.get_sim(&t, &iccid(1)).await.unwrap().is_some());
    assert_eq!(
        event_kinds(&store, &t)
            .await
            .iter()
            .filter(|k| k.starts_with("batch."))
            .count(),
        1
    );
}

/// A worker that sits inside a chunk for longer than the lease has its
/// transaction ended by the server: nothing of the chunk is applied, and the
/// next worker runs the items once.
async fn stalled_run_chunk_loses_its_items(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let b = submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &[reg(1), reg(2)],
    )
    .await;
    let stall = |items: Vec<ClaimedItem>| -> futures::future::BoxFuture<'static, Vec<Completion>> {
        Box::pin(async move {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            run_items(&items)
        })
    };
    let err = store
        .run_chunk(10, Duration::from_millis(300), &shared(stall))
        .await
        .expect_err("the stalled chunk is cut off");
    assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    assert!(store.get_sim(&t, &iccid(1)).await.unwrap().is_none());
    let s = store
        .run_chunk(10, Duration::from_secs(30), &shared(plain_executor()))
        .await
        .unwrap()
        .expect("the items are runnable again");
    assert_eq!((s.applied, s.completed), (2, 2));
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(got.status, BatchStatus::Completed);
    assert_eq!(
        (
            got.counts.approved,
            got.counts.processing,
            got.counts.completed
        ),
        (0, 0, 2)
    );
}

/// Events written by one large chunk completion, for two tenants at once,
/// read back whole, page by page, by type, and by a webhook event by event:
/// every reader sees each event once, in the same ascending order.
async fn event_feed_pages_through_large_writes(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let u = tenant(&store, "other").await;
    let (mine, theirs): (Vec<Value>, Vec<Value>) =
        ((1..=40).map(reg).collect(), (41..=50).map(reg).collect());
    submit(
        &store,
        &t,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &mine,
    )
    .await;
    submit(
        &store,
        &u,
        Operation::RegisterSim,
        BatchMode::Parallel,
        &theirs,
    )
    .await;
    run_all(&store).await;
    let hook = store
        .create_webhook(&t, "https://example.com/hook")
        .await
        .unwrap();
    submit(&store, &t, Operation::Activate, BatchMode::Parallel, &mine).await;
    submit(
        &store,
        &u,
        Operation::Activate,
        BatchMode::Parallel,
        &theirs,
    )
    .await;
    let (claim, _) = run_once(&store, 1000).await;
    assert_eq!(claim.items.len(), 50, "one chunk for both tenants");

    let all = store.events_after(&t, 0, 10_000).await.unwrap();
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "ascending");
    let ids: HashSet<&str> = all.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids.len(), all.len(), "each event once");
    let count = |k: &str| all.iter().filter(|e| e.kind == k).count();
    assert_eq!(
        count("order.completed"),
        80,
        "40 registrations, 40 activations"
    );
    assert_eq!(count("sim.status_changed"), 80);
    assert_eq!(count("batch.completed"), 2);
    assert_eq!(
        all.last().map(|e| e.kind.as_str()),
        Some("batch.completed"),
        "a batch's end comes after its items' events"
    );
    let theirs = store.events_after(&u, 0, 10_000).await.unwrap();
    assert_eq!(theirs.len(), 10 + 10 + 10 + 10 + 2);
    assert!(theirs.iter().all(|e| !ids.contains(e.id.as_str())));

    let mut paged = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store.events_after(&t, cursor, 7).await.unwrap();
        assert!(page.len() <= 7);
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        paged.extend(page);
    }
    assert_eq!(paged, all, "pages of 7 give the whole feed");

    let changes: Vec<Event> = all
        .iter()
        .filter(|e| e.kind == "sim.status_changed")
        .cloned()
        .collect();
    let mut typed = Vec::new();
    let mut cursor = 0;
    loop {
        let page = store
            .events_of_type_after(&t, "sim.status_changed", cursor, 9)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        cursor = last.seq;
        typed.extend(page);
    }
    assert_eq!(typed, changes, "pages of one type");

    let mut delivered = Vec::new();
    for _ in 0..1000 {
        let due = store.due_deliveries(now_ms(), 10).await.unwrap();
        let Some((w, event)) = due.into_iter().next() else {
            break;
        };
        assert_eq!(w.id, hook.id);
        store
            .record_delivery(&DeliveryAttempt {
                webhook_id: w.id,
                event: event.clone(),
                status_code: Some(200),
                error: None,
                duration_ms: 1,
                next: DeliveryNext::Advance,
                skipped: false,
            })
            .await
            .unwrap();
        delivered.push(event);
    }
    let since: Vec<Event> = all
        .iter()
        .filter(|e| e.seq > hook.cursor)
        .cloned()
        .collect();
    assert_eq!(since.len(), 40 + 40 + 1, "the activation's events");
    assert_eq!(
        delivered, since,
        "the webhook gets each later event once, in order"
    );
}

// ------------------------------------------------- between two run_chunks
//
// On SQLite, the next chunk is picked and executed ahead while one is
// written (`sqlite::ahead`); these checks change the database between two
// `run_chunk` calls and hold on both backends.

/// A parallel batch registering the SIMs numbered `ns`.
async fn register(
    store: &Arc<dyn Store>,
    t: &str,
    ns: std::ops::RangeInclusive<u32>,
) -> BatchRecord {
    let rows: Vec<Value> = ns.map(reg).collect();
    submit(store, t, Operation::RegisterSim, BatchMode::Parallel, &rows).await
}

/// A tenant and a batch registering four SIMs, of which one `run_chunk`
/// ran the first two (on SQLite, the other two are now picked ahead).
async fn half_run(store: &Arc<dyn Store>) -> (String, BatchRecord) {
    let t = tenant(store, "acme").await;
    let b = register(store, &t, 1..=4).await;
    assert_eq!(one_chunk(store, 2).await.applied, 2);
    (t, b)
}

/// One `run_chunk(limit)` that finds items to run.
async fn one_chunk(store: &Arc<dyn Store>, limit: usize) -> CompleteSummary {
    store
        .run_chunk(limit, Duration::from_secs(30), &shared(plain_executor()))
        .await
        .unwrap()
        .expect("the chunk ran")
}

/// Run `run_chunk(limit)` until nothing is runnable; the items applied by each call.
async fn run_chunks(store: &Arc<dyn Store>, limit: usize) -> Vec<usize> {
    let mut applied = Vec::new();
    while let Some(s) = store
        .run_chunk(limit, Duration::from_secs(30), &shared(plain_executor()))
        .await
        .unwrap()
    {
        applied.push(s.applied);
        assert!(applied.len() < 100, "the queue never drained");
    }
    applied
}

/// A batch canceled between two chunks runs none of its remaining items.
async fn run_chunk_after_cancel_between_chunks(store: Arc<dyn Store>) {
    let (t, b) = half_run(&store).await;
    let c = store.cancel_batch(&t, &b.id).await.unwrap().unwrap();
    assert_eq!((c.status, c.counts.canceled), (BatchStatus::Cancelled, 2));
    assert_eq!(run_chunks(&store, 2).await, Vec::<usize>::new());
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(
        (
            got.counts.completed,
            got.counts.canceled,
            got.counts.approved
        ),
        (2, 2, 0)
    );
    for n in 3..=4 {
        assert!(store.get_sim(&t, &iccid(n)).await.unwrap().is_none());
    }
}

/// A cancel between two chunks that takes some items of the next chunk (on
/// SQLite, picked and executed ahead) leaves the others to run, and the
/// outbox gets the events of exactly the items that ran.
async fn run_chunk_after_one_of_two_batches_is_canceled(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    let a = register(&store, &t, 1..=3).await;
    let b = register(&store, &t, 4..=5).await;
    // Items 1 and 2 run; on SQLite, 3 (batch a) and 4 (batch b) are next.
    assert_eq!(one_chunk(&store, 2).await.applied, 2);
    store.cancel_batch(&t, &a.id).await.unwrap().unwrap();
    let applied = run_chunks(&store, 2).await;
    assert_eq!(applied.iter().sum::<usize>(), 2, "{applied:?}");
    assert_eq!(
        batch(&store, &t, &b.id).await.status,
        BatchStatus::Completed
    );
    assert!(store.get_sim(&t, &iccid(3)).await.unwrap().is_none());
    let mut ran: Vec<String> = store
        .events_after(&t, 0, 1000)
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.kind == "order.completed")
        .map(|e| e.data["iccid"].as_str().unwrap_or_default().to_owned())
        .collect();
    ran.sort();
    assert_eq!(ran, [1, 2, 4, 5].map(iccid));
}

/// Items appended between two chunks (another batch) neither hold back nor
/// lose the items that were next; every item runs once.
async fn run_chunk_after_writes_between_chunks(store: Arc<dyn Store>) {
    let (t, a) = half_run(&store).await;
    let b = register(&store, &t, 5..=6).await;
    let second = one_chunk(&store, 2).await;
    assert_eq!(second.applied, 2);
    assert_eq!(
        second.finished,
        vec![(a.id.clone(), BatchStatus::Completed)]
    );
    assert_eq!(run_chunks(&store, 2).await, vec![2]);
    assert_eq!(
        batch(&store, &t, &b.id).await.status,
        BatchStatus::Completed
    );
    for n in 1..=6 {
        assert!(store.get_sim(&t, &iccid(n)).await.unwrap().is_some());
    }
}

/// Items of one SIM spread over several chunks run in order, each against
/// the SIM its predecessor left (a wrong order fails with `illegal_status`).
async fn run_chunk_keeps_sim_order_across_chunks(store: Arc<dyn Store>) {
    let t = tenant(&store, "acme").await;
    register(&store, &t, 1..=3).await;
    assert_eq!(run_chunks(&store, 10).await, vec![3]);
    let b = store
        .create_batch(&new_batch(&t, None, BatchMode::Parallel))
        .await
        .unwrap();
    let steps = [
        (Operation::Activate, 1),
        (Operation::Activate, 2),
        (Operation::Suspend, 1),
        (Operation::Suspend, 2),
        (Operation::Resume, 1),
        (Operation::Activate, 3),
    ];
    let its: Vec<NewItem> = steps
        .iter()
        .enumerate()
        .map(|(seq, (op, n))| {
            let mut item = items(*op, &[reg(*n)]).remove(0);
            item.seq = seq as i64;
            item
        })
        .collect();
    store.append_items(&t, &b.id, &its).await.unwrap();
    store.seal_batch(&t, &b.id).await.unwrap();
    let applied = run_chunks(&store, 2).await;
    assert_eq!(applied.iter().sum::<usize>(), 6, "chunks: {applied:?}");
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(
        (got.status, got.counts.completed, got.counts.failed),
        (BatchStatus::Completed, 6, 0)
    );
    let status = |n| {
        let store = store.clone();
        let t = t.clone();
        async move {
            store
                .get_sim(&t, &iccid(n))
                .await
                .unwrap()
                .unwrap()
                .sim
                .status
        }
    };
    assert_eq!(status(1).await, SimStatus::Activated);
    assert_eq!(status(2).await, SimStatus::Suspended);
    assert_eq!(status(3).await, SimStatus::Activated);
}

/// A lease that expires between two chunks: the next chunk takes the
/// expired item over with the rest, and the stale claim is fenced out.
async fn run_chunk_after_a_lease_expired_between_chunks(store: Arc<dyn Store>) {
    let (t, b) = half_run(&store).await;
    let stale = store.claim(1, Duration::from_millis(1)).await.unwrap();
    assert_eq!(stale.items.len(), 1);
    tokio::time::sleep(Duration::from_millis(30)).await;
    assert_eq!(run_chunks(&store, 10).await, vec![2]);
    let late = store
        .complete(&stale.token, run_items(&stale.items))
        .await
        .unwrap();
    assert_eq!((late.applied, late.fenced_out), (0, 1));
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(
        (got.status, got.counts.completed, got.counts.processing),
        (BatchStatus::Completed, 4, 0)
    );
}

/// SQLite: another process (a second store on the same file) claims an item
/// between two chunks; the chunk picked ahead leaves that item to it.
async fn run_chunk_after_another_process_claims(store: Arc<dyn Store>) {
    let Raw::Sqlite(file) = RAW.with(|r| r.clone()) else {
        panic!("SQLite only");
    };
    let other =
        simbatch_store::sqlite::connect(&format!("sqlite://{}", file.display()), test_cipher())
            .await
            .expect("a second store on the same file");
    let (t, b) = half_run(&store).await;
    let claim = other.claim(1, Duration::from_secs(30)).await.unwrap();
    assert_eq!(claim.items.len(), 1);
    assert_eq!(
        run_chunks(&store, 2).await,
        vec![1],
        "only the item not claimed"
    );
    let s = other
        .complete(&claim.token, run_items(&claim.items))
        .await
        .unwrap();
    assert_eq!((s.applied, s.fenced_out), (1, 0));
    let got = batch(&store, &t, &b.id).await;
    assert_eq!(
        (got.status, got.counts.completed),
        (BatchStatus::Completed, 4)
    );
}
