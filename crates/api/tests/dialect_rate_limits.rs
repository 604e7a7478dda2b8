//! Per-tenant rate limits on every dialect, through real HTTP on SQLite and
//! PostgreSQL: past the burst each dialect answers 429 with `Retry-After`
//! and the `RateLimit` fields, in its own vendor error shape.

#[macro_use]
mod common;

use common::{Backend, TestApp};
use hmac::{Hmac, Mac};
use reqwest::{Method, Response};
use serde_json::{json, Value};
use sha2::Sha256;
use simbatch_api::ops::{Ops, RateLimitConfig};
use simbatch_engine::metrics::Metrics;
use simbatch_engine::service::ServiceConfig;

both_backends!(
    ecc_answers_429_in_its_shape,
    smarthub_answers_429_in_its_shape,
    simlessly_answers_429_in_its_shape,
    simexpress_answers_429_in_its_shape,
);

/// An app whose tenants may make 2 requests, then one per 100 s.
async fn start(b: Backend) -> TestApp {
    let ops = Ops::new(
        Metrics::shared(),
        Some(RateLimitConfig {
            rps: 0.01,
            burst: 2,
        }),
    );
    TestApp::start_ops(b, false, ServiceConfig::default(), ops).await
}

/// Send `make()` three times; the first two pass, the third is refused.
/// Returns the refusal's JSON body (content type checked by the caller).
async fn third_is_limited<F, Fut>(make: F, content_type: &str) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = reqwest::Result<Response>>,
{
    for left in [1, 0] {
        let r = make().await.unwrap();
        assert_ne!(r.status(), 429);
        let rl = r.headers()["ratelimit"].to_str().unwrap().to_owned();
        assert!(rl.starts_with(&format!("\"tenant\";r={left};t=")), "{rl}");
        assert!(!r.headers().contains_key("retry-after"));
    }
    let r = make().await.unwrap();
    assert_eq!(r.status(), 429);
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
    assert_eq!(r.headers()["ratelimit-policy"], "\"tenant\";q=2;w=200");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with(content_type), "{ct}");
    r.json().await.unwrap()
}

async fn ecc_answers_429_in_its_shape(b: Backend) {
    let app = start(b).await;
    let (user, pass) = app.token.split_once('.').unwrap();
    let body = third_is_limited(
        || {
            app.http
                .get(format!("{}/ecc/v1/orders/12345", app.base))
                .basic_auth(user, Some(pass))
                .send()
        },
        "application/json",
    )
    .await;
    assert_eq!(body["status"], 429, "{body}");
    assert_eq!(body["error"], "Too Many Requests", "{body}");
    assert!(
        body["message"].as_str().unwrap().contains("retry in"),
        "{body}"
    );
    // Wrong credentials are refused before the limiter: still 401.
    let r = app
        .http
        .get(format!("{}/ecc/v1/orders/1", app.base))
        .basic_auth(user, Some("wrong"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    app.stop().await;
}

async fn smarthub_answers_429_in_its_shape(b: Backend) {
    let app = start(b).await;
    let body = third_is_limited(
        || app.req(Method::GET, "/smarthub/v1/global-sims").send(),
        "application/problem+json",
    )
    .await;
    assert_eq!(
        (&body["type"], &body["title"], &body["status"]),
        (
            &json!("about:blank"),
            &json!("Too Many Requests"),
            &json!(429)
        ),
        "{body}"
    );
    assert!(body["detail"].as_str().unwrap().contains("retry in"));
    // Another tenant has its own bucket.
    let r = app
        .req_as(&app.other, Method::GET, "/smarthub/v1/global-sims")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    app.stop().await;
}

fn now_ms() -> String {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        .to_string()
}

async fn simlessly_answers_429_in_its_shape(b: Backend) {
    let app = start(b).await;
    let (key, secret) = app.token.split_once('.').unwrap();
    let body = r#"{"batchCode":"B1"}"#;
    let body = third_is_limited(
        || {
            let ts = now_ms();
            let rid = uuid::Uuid::new_v4().to_string();
            let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
            mac.update(format!("{ts}{rid}{key}{body}").as_bytes());
            app.http
                .post(format!("{}/simlessly/api/v1/batch/info", app.base))
                .header("Access-Key", key)
                .header("Timestamp", ts)
                .header("Request-ID", rid)
                .header("Signature", hex::encode(mac.finalize().into_bytes()))
                .body(body)
                .send()
        },
        "application/json",
    )
    .await;
    assert_eq!(
        (&body["success"], &body["code"], &body["obj"]),
        (&json!(false), &json!("10007"), &Value::Null),
        "{body}"
    );
    assert!(body["msg"].as_str().unwrap().contains("retry in"));
    app.stop().await;
}

async fn simexpress_answers_429_in_its_shape(b: Backend) {
    let app = start(b).await;
    let body = third_is_limited(
        || {
            app.req(Method::POST, "/simexpress/v1/profile/importProfileList")
                .header("content-type", "application/json")
                .body(r#"{"profileItems": []}"#)
                .send()
        },
        "application/json",
    )
    .await;
    assert_eq!(
        (&body["code"], &body["errorCode"]),
        (&json!("42901"), &json!("42901")),
        "{body}"
    );
    assert!(body["errorMsg"].as_str().unwrap().contains("retry in"));
    assert_eq!(body["resultItems"], json!([]));
    app.stop().await;
}
