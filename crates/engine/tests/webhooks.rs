//! The outbox dispatcher against real HTTP endpoints on 127.0.0.1: signed
//! deliveries that verify, retries scheduled after a failure, 410 disabling.

use std::sync::{Arc, Mutex};

use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use serde_json::{Map, Value};
use simbatch_core::{BatchMode, Operation, Rejection};
use simbatch_engine::webhooks::{dispatch_once, sign};
use simbatch_store::crypto::Cipher;
use simbatch_store::{now_ms, NewBatch, NewItem, Store};

type Seen = Arc<Mutex<Vec<(HeaderMap, String)>>>;

/// An endpoint answering `status`, recording what it receives.
async fn endpoint(status: StatusCode) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: String| async move {
            s.lock().unwrap().push((headers, body));
            status
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

/// One event in the tenant's outbox: a batch whose only item is rejected ends at once.
async fn emit_event(store: &dyn Store, tenant: &str) {
    let b = store
        .create_batch(&NewBatch {
            tenant_id: tenant.into(),
            operation: Some(Operation::Activate),
            mode: BatchMode::Parallel,
            source: "test".into(),
            external_ref: None,
            parent_id: None,
        })
        .await
        .unwrap();
    let item = NewItem {
        seq: 0,
        iccid: "1".into(),
        operation: Some(Operation::Activate),
        params: Map::new(),
        secret: Map::new(),
        rejection: Some(Rejection::field(
            "iccid",
            "iccid_invalid_length",
            "too short",
        )),
    };
    store.append_items(tenant, &b.id, &[item]).await.unwrap();
    store.seal_batch(tenant, &b.id).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_are_signed_retried_and_disabled_on_410() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("w.db").display());
    let store = simbatch_store::open(&url, Cipher::new(&[5u8; 32]))
        .await
        .unwrap();
    store.create_key("hooks").await.unwrap();
    let tenant = store.tenant_by_name("hooks").await.unwrap().unwrap().id;
    let client = reqwest::Client::new();

    let (ok_url, ok_seen) = endpoint(StatusCode::NO_CONTENT).await;
    let (fail_url, fail_seen) = endpoint(StatusCode::INTERNAL_SERVER_ERROR).await;
    let (gone_url, _) = endpoint(StatusCode::GONE).await;
    let ok = store.create_webhook(&tenant, &ok_url).await.unwrap();
    let fail = store.create_webhook(&tenant, &fail_url).await.unwrap();
    let gone = store.create_webhook(&tenant, &gone_url).await.unwrap();
    emit_event(store.as_ref(), &tenant).await;

    assert_eq!(dispatch_once(store.as_ref(), &client).await.unwrap(), 3);

    // The 2xx endpoint got one delivery whose signature verifies with its secret.
    let (headers, body) = ok_seen.lock().unwrap()[0].clone();
    let h = |k: &str| headers.get(k).unwrap().to_str().unwrap().to_owned();
    let ts: i64 = h("webhook-timestamp").parse().unwrap();
    assert!((now_ms() / 1000 - ts).abs() < 60);
    assert_eq!(
        h("webhook-signature"),
        sign(ok.secret.as_deref().unwrap(), &h("webhook-id"), ts, &body).unwrap()
    );
    let event: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(event["type"], "batch.partially_completed");
    assert_eq!(event["id"].as_str().unwrap(), h("webhook-id"));

    // Failure is retried later, not now; 410 disables the endpoint.
    assert_eq!(fail_seen.lock().unwrap().len(), 1);
    assert_eq!(
        dispatch_once(store.as_ref(), &client).await.unwrap(),
        0,
        "delivered, or backing off"
    );
    let fail_now = store.get_webhook(&tenant, &fail.id).await.unwrap().unwrap();
    assert!(fail_now.enabled && fail_now.disabled_reason.is_none());
    let gone_now = store.get_webhook(&tenant, &gone.id).await.unwrap().unwrap();
    assert!(!gone_now.enabled);
    assert!(gone_now.disabled_reason.unwrap().contains("410"));

    // The delivery log records each attempt with its status.
    let log = store.delivery_log(&tenant, &fail.id, 10).await.unwrap();
    assert_eq!(
        (log.len(), log[0].status_code, log[0].attempt),
        (1, Some(500), 1)
    );
    let log = store.delivery_log(&tenant, &ok.id, 10).await.unwrap();
    assert_eq!(log[0].status_code, Some(204));

    // A new event reaches the healthy endpoint only: the failing one is still backing off.
    emit_event(store.as_ref(), &tenant).await;
    assert_eq!(dispatch_once(store.as_ref(), &client).await.unwrap(), 1);
    assert_eq!(ok_seen.lock().unwrap().len(), 2);
}
