//! Operating it, through real HTTP on SQLite and PostgreSQL: `/metrics`
//! after real batches, `x-request-id`, per-tenant rate limits, and the
//! vendored `/docs` reference.

#[macro_use]
mod common;

use axum::http::StatusCode;
use common::{iccid, read, Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};
use simbatch_api::ops::{Ops, RateLimitConfig};
use simbatch_engine::metrics::Metrics;
use simbatch_engine::service::ServiceConfig;
use simbatch_engine::webhooks::dispatch_once_with;

both_backends!(
    metrics_count_items_batches_webhooks_and_routes,
    request_id_is_set_or_propagated,
    rate_limit_answers_429_per_tenant,
    docs_are_served_offline,
);

async fn start(b: Backend, ops: Ops) -> TestApp {
    TestApp::start_ops(b, true, ServiceConfig::default(), ops).await
}

/// The value of the sample `series` (name with its labels, as printed).
fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map(|v| v.trim().parse().expect("a number"))
}

async fn scrape(app: &TestApp) -> String {
    let r = app
        .http
        .get(format!("{}/metrics", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with("application/openmetrics-text"), "{ct}");
    r.text().await.unwrap()
}

/// An endpoint answering `status` to every POST.
async fn endpoint(status: StatusCode) -> String {
    let app =
        axum::Router::new().route("/hook", axum::routing::post(move || async move { status }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

async fn metrics_count_items_batches_webhooks_and_routes(b: Backend) {
    let metrics = Metrics::shared();
    let app = start(b, Ops::new(metrics.clone(), None)).await;
    let (s, _) = app
        .post(
            "/v1/webhooks",
            json!({"url": endpoint(StatusCode::OK).await}),
        )
        .await;
    assert_eq!(s, 201);
    let (s, _) = app
        .post(
            "/v1/webhooks",
            json!({"url": endpoint(StatusCode::INTERNAL_SERVER_ERROR).await}),
        )
        .await;
    assert_eq!(s, 201);

    let sims: Vec<String> = (0..3).map(iccid).collect();
    app.register(&sims).await;
    // Three registered SIMs activate; two unknown ones fail; one row is rejected.
    let mut items: Vec<Value> = (0..5).map(|n| json!({ "iccid": iccid(n) })).collect();
    items.push(json!({"iccid": "123"}));
    let (s, sub) = app.submit(Some("activate"), items).await;
    assert_eq!(s, 202, "{sub}");
    let id = sub["id"].as_str().unwrap();
    let done = app.wait_batch(id).await;
    assert_eq!(done["status"], "PARTIALLY_COMPLETED", "{done}");
    let (s, _) = app
        .get(&format!("/v1/batches/{id}/items?status=FAILED"))
        .await;
    assert_eq!(s, 200);
    let (s, _) = app.get("/v1/batches/nope").await;
    assert_eq!(s, 404);

    let client = reqwest::Client::new();
    let attempts = dispatch_once_with(app.store.as_ref(), &client, Some(&metrics))
        .await
        .unwrap();
    assert!(attempts >= 2, "both endpoints got an event");

    let text = scrape(&app).await;
    let v = |series: &str| sample(&text, series).unwrap_or_else(|| panic!("{series}:\n{text}"));
    assert_eq!(
        v(r#"simbatch_items_processed_total{operation="register_sim",result="completed"}"#),
        3.0
    );
    assert_eq!(
        v(r#"simbatch_items_processed_total{operation="activate",result="completed"}"#),
        3.0
    );
    assert_eq!(
        v(r#"simbatch_items_processed_total{operation="activate",result="failed"}"#),
        2.0
    );
    assert_eq!(v(r#"simbatch_batches{state="COMPLETED"}"#), 1.0);
    assert_eq!(v(r#"simbatch_batches{state="PARTIALLY_COMPLETED"}"#), 1.0);
    assert_eq!(v(r#"simbatch_batches{state="PROCESSING"}"#), 0.0);
    assert_eq!(v("simbatch_queue_depth"), 0.0);
    assert!(v("simbatch_chunk_claim_to_complete_seconds_count") >= 2.0);
    assert_eq!(
        v(r#"simbatch_webhook_deliveries_total{result="success"}"#),
        1.0
    );
    assert_eq!(
        v(r#"simbatch_webhook_deliveries_total{result="http_error"}"#),
        1.0
    );
    assert!(
        v(
            r#"simbatch_http_request_duration_seconds_count{method="GET",route="/v1/batches/{id}",status="200"}"#
        ) >= 1.0
    );
    assert_eq!(
        v(
            r#"simbatch_http_request_duration_seconds_count{method="GET",route="/v1/batches/{id}",status="404"}"#
        ),
        1.0
    );
    assert_eq!(
        v(
            r#"simbatch_http_request_duration_seconds_count{method="POST",route="/v1/batches",status="202"}"#
        ),
        2.0
    );
    assert!(
        !text.contains(id),
        "routes are templates, never raw paths with ids"
    );
    // A queued item shows in the depth gauge (no workers on this app).
    let idle = TestApp::start_ops(b, false, ServiceConfig::default(), Ops::default()).await;
    let (s, _) = idle
        .submit(Some("register_sim"), vec![json!({"iccid": iccid(9)})])
        .await;
    assert_eq!(s, 202);
    let text = scrape(&idle).await;
    assert_eq!(sample(&text, "simbatch_queue_depth"), Some(1.0), "{text}");
    assert_eq!(
        sample(&text, r#"simbatch_batches{state="PROCESSING"}"#),
        Some(1.0)
    );
    idle.stop().await;
    app.stop().await;
}

async fn request_id_is_set_or_propagated(b: Backend) {
    let app = TestApp::start(b).await;
    let r = app.req(Method::GET, "/v1/batches").send().await.unwrap();
    let id = r.headers()["x-request-id"].to_str().unwrap().to_owned();
    assert_eq!(id.len(), 36, "a UUID: {id}");
    let r2 = app.req(Method::GET, "/v1/batches").send().await.unwrap();
    assert_ne!(r2.headers()["x-request-id"].to_str().unwrap(), id);
    // A client's id comes back unchanged, on errors too.
    for path in ["/v1/batches", "/v1/batches/missing", "/nowhere"] {
        let r = app
            .req(Method::GET, path)
            .header("x-request-id", "trace-abc-123")
            .send()
            .await
            .unwrap();
        assert_eq!(r.headers()["x-request-id"], "trace-abc-123", "{path}");
    }
    let r = app
        .http
        .get(format!("{}/healthz", app.base))
        .send()
        .await
        .unwrap();
    assert!(r.headers().contains_key("x-request-id"));
    app.stop().await;
}

async fn rate_limit_answers_429_per_tenant(b: Backend) {
    // One request per 100 s refills nothing during the test.
    let ops = Ops::new(
        Metrics::shared(),
        Some(RateLimitConfig {
            rps: 0.01,
            burst: 2,
        }),
    );
    let app = start(b, ops).await;
    for left in [1, 0] {
        let r = app.req(Method::GET, "/v1/batches").send().await.unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["ratelimit-policy"], "\"tenant\";q=2;w=200");
        let rl = r.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(rl.starts_with(&format!("\"tenant\";r={left};t=")), "{rl}");
        assert!(!r.headers().contains_key("retry-after"));
    }
    let r = app.req(Method::GET, "/v1/batches").send().await.unwrap();
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=100).contains(&retry), "{retry}");
    assert!(r.headers()["ratelimit"]
        .to_str()
        .unwrap()
        .starts_with("\"tenant\";r=0;"));
    let (s, body) = read(r).await;
    assert_eq!(s, 429);
    assert_eq!(body["code"], "rate_limited", "{body}");
    // Writes are limited too, and nothing is stored.
    let (s, _) = app
        .submit(Some("register_sim"), vec![json!({"iccid": iccid(1)})])
        .await;
    assert_eq!(s, 429);
    // Another tenant has its own bucket; unauthenticated probes are not limited.
    let r = app
        .req_as(&app.other, Method::GET, "/v1/batches")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (s, _) = read(
        app.http
            .get(format!("{}/healthz", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 200);
    // A bad key is 401 and takes no token from anyone.
    let (s, _) = read(
        app.req_as("sk_nope.nope", Method::GET, "/v1/batches")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 401);
    let stored = app.store.batch_status_counts().await.unwrap();
    assert!(
        stored.iter().all(|(_, n)| *n == 0),
        "the refused submit stored nothing: {stored:?}"
    );
    app.stop().await;
}

async fn docs_are_served_offline(b: Backend) {
    let app = TestApp::start(b).await;
    let r = app
        .http
        .get(format!("{}/docs", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let csp = r.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(csp.contains("default-src 'self'"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(
        !html.contains("http://") && !html.contains("https://"),
        "{html}"
    );
    let assets: Vec<&str> = html
        .split('"')
        .filter(|s| s.starts_with("/docs/"))
        .collect();
    assert_eq!(assets.len(), 3, "{html}");
    for a in assets {
        let r = app
            .http
            .get(format!("{}{a}", app.base))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{a}");
        let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
        assert!(
            ct.starts_with("text/javascript") || ct.starts_with("text/css"),
            "{a}: {ct}"
        );
        assert!(!r.bytes().await.unwrap().is_empty());
    }
    let init = app
        .http
        .get(format!("{}/docs/init.js", app.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(init.contains("\"/openapi.json\"") && init.contains("validatorUrl: null"));
    let (s, body) = read(
        app.http
            .get(format!("{}/docs/nothing.js", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((s, body["code"].as_str()), (404, Some("not_found")));
    let spec: Value = app
        .http
        .get(format!("{}/openapi.json", app.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(spec["paths"]["/v1/batches"]["get"]["responses"]["429"].is_object());
    assert!(spec["paths"]["/healthz"]["get"]["responses"]["429"].is_null());
    assert!(spec["paths"]["/metrics"]["get"].is_object());
    app.stop().await;
}

#[test]
fn sample_reads_exact_series() {
    let text = "a_total{x=\"1\"} 3\na_total{x=\"10\"} 5\nb 0\n";
    assert_eq!(sample(text, "a_total{x=\"1\"}"), Some(3.0));
    assert_eq!(sample(text, "a_total{x=\"10\"}"), Some(5.0));
    assert_eq!(sample(text, "c"), None);
}
