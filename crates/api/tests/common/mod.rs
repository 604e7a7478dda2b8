//! Test harness: the real router on 127.0.0.1:0 over a real store, with
//! workers, called through reqwest.
#![allow(dead_code)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};
use simbatch_api::ops::Ops;
use simbatch_api::{router_with, AppState};
use simbatch_engine::service::{Service, ServiceConfig};
use simbatch_engine::worker::{self, WorkerConfig, WorkerHandle};
use simbatch_store::crypto::Cipher;
use simbatch_store::Store;
use tokio::sync::Notify;

/// Run each named `async fn(Backend)` of a test file as two tests, one on
/// SQLite (`sqlite::name`) and one on PostgreSQL (`postgres::name`).
#[allow(unused_macros)]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            use super::*;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(Backend::Postgres).await
                }
            )*
        }
    };
}

/// Most items per batch in tests (small, so "too many" is cheap to send).
pub const MAX_ITEMS: usize = 5000;

/// Which store.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// A fresh PostgreSQL database; panics if PostgreSQL is unreachable.
pub use simbatch_store::testing::fresh_postgres_url;

/// A running application.
pub struct TestApp {
    pub base: String,
    pub http: reqwest::Client,
    pub store: Arc<dyn Store>,
    /// The database URL (`sqlite://FILE` or `postgres://…`).
    pub url: String,
    /// Tenant `acme`'s token.
    pub token: String,
    /// Tenant `other`'s token.
    pub other: String,
    worker: Option<WorkerHandle>,
    server: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

impl TestApp {
    /// Start with workers.
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, true).await
    }

    /// Start, with or without workers (without: batches stay PROCESSING).
    pub async fn start_with(backend: Backend, workers: bool) -> Self {
        Self::start_cfg(backend, workers, MAX_ITEMS).await
    }

    /// Start with a given batch size limit.
    pub async fn start_cfg(backend: Backend, workers: bool, max_items: usize) -> Self {
        Self::start_service(
            backend,
            workers,
            ServiceConfig {
                max_items,
                ..Default::default()
            },
        )
        .await
    }

    /// Start with a given service configuration.
    pub async fn start_service(backend: Backend, workers: bool, config: ServiceConfig) -> Self {
        Self::start_ops(backend, workers, config, Ops::default()).await
    }

    /// Start with given metrics and rate limits (the workers record into `ops.metrics`).
    pub async fn start_ops(
        backend: Backend,
        workers: bool,
        config: ServiceConfig,
        ops: Ops,
    ) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = match backend {
            Backend::Sqlite => format!("sqlite://{}", dir.path().join("t.db").display()),
            Backend::Postgres => fresh_postgres_url().await,
        };
        let store = simbatch_store::open(&url, Cipher::new(&[7u8; 32]))
            .await
            .expect("open store");
        let token = store.create_key("acme").await.unwrap().token;
        let other = store.create_key("other").await.unwrap().token;
        let wake = Arc::new(Notify::new());
        let service = Arc::new(Service::new(store.clone(), config, wake.clone()));
        let worker = workers.then(|| {
            worker::start(
                store.clone(),
                WorkerConfig {
                    idle_poll: Duration::from_millis(50),
                    metrics: Some(ops.metrics.clone()),
                    ..Default::default()
                },
                wake,
            )
        });
        let app = router_with(AppState::new(service, store.clone()), ops);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Self {
            base: format!("http://{addr}"),
            http: reqwest::Client::new(),
            store,
            url,
            token,
            other,
            worker,
            server,
            _dir: dir,
        }
    }

    pub async fn stop(mut self) {
        if let Some(w) = self.worker.take() {
            w.shutdown().await;
        }
        self.server.abort();
    }

    /// A request as tenant `acme`.
    pub fn req(&self, method: Method, path: &str) -> RequestBuilder {
        self.req_as(&self.token, method, path)
    }

    /// A request with a given token.
    pub fn req_as(&self, token: &str, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.base))
            .header("x-api-key", token)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        read(self.req(Method::GET, path).send().await.unwrap()).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        read(
            self.req(Method::POST, path)
                .json(&body)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    /// Submit a JSON batch; returns status and body.
    pub async fn submit(&self, op: Option<&str>, items: Vec<Value>) -> (u16, Value) {
        let mut body = json!({ "items": items });
        if let Some(op) = op {
            body["operation"] = json!(op);
        }
        self.post("/v1/batches", body).await
    }

    /// Poll a batch until it is terminal.
    pub async fn wait_batch(&self, id: &str) -> Value {
        let start = Instant::now();
        loop {
            let (s, b) = self.get(&format!("/v1/batches/{id}")).await;
            assert_eq!(s, 200, "{b}");
            if ["COMPLETED", "PARTIALLY_COMPLETED", "CANCELLED"]
                .contains(&b["status"].as_str().unwrap())
            {
                return b;
            }
            assert!(
                start.elapsed() < Duration::from_secs(30),
                "batch {id} not terminal: {b}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Register SIMs and wait until they exist.
    pub async fn register(&self, iccids: &[String]) {
        let items = iccids.iter().map(|i| json!({ "iccid": i })).collect();
        let (s, b) = self.submit(Some("register_sim"), items).await;
        assert_eq!(s, 202, "{b}");
        let b = self.wait_batch(b["id"].as_str().unwrap()).await;
        assert_eq!(b["status"], "COMPLETED", "{b}");
    }
}

/// Status and JSON body (Null if not JSON); asserts problem+json on errors.
pub async fn read(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    assert!(
        r.headers().contains_key("x-request-id"),
        "x-request-id missing"
    );
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.unwrap();
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status >= 400 {
        assert!(
            ct.starts_with("application/problem+json"),
            "{status} must be problem+json, got {ct}: {text}"
        );
        assert_eq!(body["status"], status, "{body}");
        assert!(body["code"].is_string(), "{body}");
    }
    assert!(status < 500, "server error {status}: {text}");
    (status, body)
}

/// A valid 20-digit ICCID (standard profile).
pub fn iccid(n: usize) -> String {
    format!("8988{:016}", n)
}

/// A GSMA TS.48 test profile from `shared/profile-templates/` (DER).
pub fn ts48_template(file: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/profile-templates")
        .join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The TS.48 template tests register by default.
pub const TS48: &str = "TS48v5_SAIP2.3_NoBERTLV.der";

impl TestApp {
    /// Register a real TS.48 template under `name` through `POST /v1/templates`.
    pub async fn add_template(&self, name: &str) {
        let r = self
            .req(Method::POST, &format!("/v1/templates?name={name}"))
            .header("content-type", "application/octet-stream")
            .body(ts48_template(TS48))
            .send()
            .await
            .unwrap();
        let (s, b) = read(r).await;
        assert_eq!(s, 201, "{b}");
    }
}
