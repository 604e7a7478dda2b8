//! The Nobill ECC dialect (`/ecc/v1`) through real HTTP, on SQLite and
//! PostgreSQL: the seed's example requests verbatim, every documented error
//! and authentication refusal, events with long polling, and 20 concurrent
//! clients.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use base64::Engine as _;
use common::{Backend, TestApp};
use reqwest::{Method, RequestBuilder, Response};
use serde_json::{json, Value};

both_backends!(
    seed_batch_submit_answer,
    seed_batch_runs_and_reads_back,
    multi_batch_stops_an_iccid_at_its_first_failure,
    single_requests_and_orders,
    errors_and_auth_refusals,
    events_with_long_polling,
    twenty_concurrent_clients,
);

/// The seed's single batch, verbatim.
const SEED_BATCH: &str = r#"{
    "type": "single",
    "requests": [
      {
        "method": "POST",
        "resource": "subscriptions",
        "body": {
          "msisdn": "46708421499",
          "iccid": "89461177710001700003"
        },
        "requestid": "127322"
      },
      {
        "method": "PATCH",
        "resource": "subscriptions/msisdn:46708421488",
        "body": {
           "blocked": true
        },
        "requestid": "127323"
      },
      {
        "method": "POST",
        "resource": "subscriptions/msisdn:46708421466/services",
        "body": {
           "id": "Data1G",
           "limit": "100"
        },
        "requestid": "127324"
      },
      {
        "method": "POST",
        "resource": "subscriptions/msisdn:46708421477/services",
        "body": {
           "limit": 100
        },
        "requestid": "127325"
      }
    ]
}"#;

/// HTTP Basic credentials from a `key_id.secret` token.
fn basic(token: &str) -> String {
    let (id, secret) = token.split_once('.').unwrap();
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{id}:{secret}"))
    )
}

fn ecc(app: &TestApp, token: &str, method: Method, path: &str) -> RequestBuilder {
    app.http
        .request(method, format!("{}{path}", app.base))
        .header("authorization", basic(token))
        .header("accept", "application/json")
}

/// Status and JSON body; an error must be ECC's `{status, error, message}`, never 5xx.
async fn read(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(status < 500, "server error {status}: {text}");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(body["status"], status, "{text}");
        assert!(body["error"].is_string(), "{text}");
        assert!(
            body["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }
    (status, body)
}

async fn send(app: &TestApp, method: Method, path: &str, body: Option<&str>) -> (u16, Value) {
    let mut r = ecc(app, &app.token, method, path);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    read(r.send().await.unwrap()).await
}

async fn wait_ecc_batch(app: &TestApp, id: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, b) = send(app, Method::GET, &format!("/ecc/v1/batches/{id}"), None).await;
        assert_eq!(s, 200, "{b}");
        if ["COMPLETED", "PARTIALLY_COMPLETED"].contains(&b["status"].as_str().unwrap()) {
            return b;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not done: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn wait_order(app: &TestApp, id: i64) -> Value {
    let start = Instant::now();
    loop {
        let (s, b) = send(app, Method::GET, &format!("/ecc/v1/orders/{id}"), None).await;
        assert_eq!(s, 200, "{b}");
        if b["status"] != "PROVISIONING" {
            return b;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not done: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Create a subscription through the single endpoint and wait for its order.
async fn subscribe(app: &TestApp, iccid: &str, msisdn: &str) {
    let body = json!({"msisdn": msisdn, "iccid": iccid}).to_string();
    let (s, b) = send(app, Method::POST, "/ecc/v1/subscriptions", Some(&body)).await;
    assert_eq!(s, 202, "{b}");
    let o = wait_order(app, b["orders"][0].as_i64().unwrap()).await;
    assert_eq!(o["status"], "COMPLETED", "{o}");
}

fn assert_time(v: &Value) {
    let t = v.as_str().unwrap_or_else(|| panic!("not a time: {v}"));
    let ok = t.len() == 23
        && t.ends_with('Z')
        && t.as_bytes()[10] == b'T'
        && t.as_bytes()[19] == b'.'
        && time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok();
    assert!(
        ok,
        "ECC time like 2016-10-26T13:40:28.21Z expected, got {t}"
    );
}

fn request(b: &Value, requestid: &str) -> Value {
    b["requests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["requestid"] == requestid)
        .cloned()
        .unwrap_or_else(|| panic!("no request {requestid} in {b}"))
}

/// Without workers nothing runs, so the 202 answer is exactly what submission decided.
async fn seed_batch_submit_answer(b: Backend) {
    let app = TestApp::start_with(b, false).await;
    let (s, body) = send(&app, Method::POST, "/ecc/v1/batches", Some(SEED_BATCH)).await;
    assert_eq!(s, 202, "{body}");
    assert!(uuid::Uuid::parse_str(body["batchid"].as_str().unwrap()).is_ok());
    assert_time(&body["creationdate"]);
    assert_eq!(body["status"], "PROCESSING");
    assert_eq!(body["requests"].as_array().unwrap().len(), 4);
    assert_eq!(
        body["requests"][0],
        json!({"requestid": "127322", "status": "APPROVED", "info": null, "orderid": null})
    );
    // No subscription has these MSISDNs: no order can be created.
    for id in ["127323", "127324"] {
        assert_eq!(
            request(&body, id),
            json!({"requestid": id, "status": "FAILED", "info": "Subscription not found", "orderid": null})
        );
    }
    assert_eq!(
        body["requests"][3],
        json!({"requestid": "127325", "status": "REJECTED", "info": "Missing id parameter in body", "orderid": null})
    );
    // The same batch through the native API.
    let (s, native) = app
        .get(&format!(
            "/v1/batches/{}",
            body["batchid"].as_str().unwrap()
        ))
        .await;
    assert_eq!(s, 200, "{native}");
    assert_eq!(native["source"], "ecc");
    assert_eq!(native["counts"]["total"], 4);
    assert_eq!(native["counts"]["rejected"], 3);
    app.stop().await;
}

async fn seed_batch_runs_and_reads_back(b: Backend) {
    let app = TestApp::start(b).await;
    subscribe(&app, "89461177710001700011", "46708421488").await;
    let (s, body) = send(&app, Method::POST, "/ecc/v1/batches", Some(SEED_BATCH)).await;
    assert_eq!(s, 202, "{body}");
    let r = request(&body, "127323");
    assert!(
        ["APPROVED", "PROCESSING", "COMPLETED"].contains(&r["status"].as_str().unwrap()),
        "{r}"
    );
    assert_eq!(r["orderid"].is_null(), r["status"] == "APPROVED", "{r}");
    let id = body["batchid"].as_str().unwrap();
    // The seed's GET, verbatim apart from the id.
    let done = wait_ecc_batch(&app, id).await;
    assert_eq!(done["batchid"], id);
    assert_eq!(done["creationdate"], body["creationdate"]);
    assert_eq!(done["status"], "PARTIALLY_COMPLETED");
    for rid in ["127322", "127323"] {
        let r = request(&done, rid);
        assert_eq!(r["status"], "COMPLETED", "{r}");
        assert_eq!(r["info"], Value::Null);
        assert!(r["orderid"].as_i64().is_some_and(|o| o > 0), "{r}");
    }
    assert_eq!(
        request(&done, "127324"),
        json!({"requestid": "127324", "orderid": null, "status": "FAILED", "info": "Subscription not found"})
    );
    assert_eq!(
        request(&done, "127325"),
        json!({"requestid": "127325", "orderid": null, "status": "REJECTED", "info": "Missing id parameter in body"})
    );
    // The orders are readable, and their effects visible.
    let oid = request(&done, "127322")["orderid"].as_i64().unwrap();
    let o = wait_order(&app, oid).await;
    assert_eq!(o["orderId"], oid);
    assert_eq!(o["iccid"], "89461177710001700003");
    assert_eq!(o["msisdn"], "46708421499");
    assert_eq!(o["status"], "COMPLETED");
    assert_eq!(o["batchid"], id);
    assert_eq!(o["requestid"], "127322");
    assert_time(&o["orderDate"]);
    assert_time(&o["completionDate"]);
    let (s, sub) = send(
        &app,
        Method::GET,
        "/ecc/v1/subscriptions/msisdn:46708421488",
        None,
    )
    .await;
    assert_eq!(s, 200, "{sub}");
    assert_eq!(sub["blocked"], true);
    assert_eq!(sub["iccid"], "89461177710001700011");
    assert_eq!(sub["status"], "BEFORE_FIRST_USE");
    // The same SIM through the native API.
    let (s, sim) = app.get("/v1/sims/89461177710001700003").await;
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["subscription_state"], "BEFORE_FIRST_USE");
    app.stop().await;
}

async fn multi_batch_stops_an_iccid_at_its_first_failure(b: Backend) {
    let app = TestApp::start(b).await;
    let (a, c, x) = (
        "89461177710001700021",
        "89461177710001700022",
        "89461177710001700023",
    );
    let body = json!({"type": "multi", "requests": [
        {"method": "POST", "resource": "subscriptions", "body": {"iccid": a, "msisdn": "46700000021"}, "requestid": "a1"},
        {"method": "POST", "resource": format!("subscriptions/iccid:{a}/services"), "body": {"id": "Data1G", "limit": 100}, "requestid": "a2"},
        {"method": "PATCH", "resource": format!("subscriptions/iccid:{x}"), "body": {"blocked": true}, "requestid": "x1"},
        {"method": "PATCH", "resource": format!("subscriptions/iccid:{x}"), "body": {"blocked": false}, "requestid": "x2"},
        {"method": "POST", "resource": "subscriptions", "body": {"iccid": c}, "requestid": "c1"},
        {"method": "PATCH", "resource": format!("subscriptions/iccid:{c}"), "body": {"state": "IN_USE"}, "requestid": "c2"},
        {"method": "PATCH", "resource": format!("subscriptions/iccid:{c}"), "body": {"state": "BEFORE_FIRST_USE"}, "requestid": "c3"},
        {"method": "PATCH", "resource": format!("subscriptions/iccid:{c}"), "body": {"blocked": true}, "requestid": "c4"},
        {"method": "PATCH", "resource": "subscriptions/msisdn:46700000021", "body": {"blocked": true}, "requestid": "m1"},
        {"method": "POST", "resource": format!("subscriptions/iccid:{a}/services"), "body": {"id": "Voice"}, "requestid": 7},
    ]});
    let (s, sub) = send(
        &app,
        Method::POST,
        "/ecc/v1/batches",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(s, 202, "{sub}");
    assert_eq!(
        request(&sub, "m1"),
        json!({"requestid": "m1", "status": "REJECTED", "orderid": null,
               "info": "Missing iccid: every request of a multi batch must name its subscription by iccid"})
    );
    let done = wait_ecc_batch(&app, sub["batchid"].as_str().unwrap()).await;
    assert_eq!(done["type"], "multi");
    assert_eq!(done["status"], "PARTIALLY_COMPLETED");
    for rid in ["a1", "a2", "c1", "c2", "7"] {
        assert_eq!(request(&done, rid)["status"], "COMPLETED", "{rid}: {done}");
    }
    // x has no subscription: the first fails without an order, the rest never runs.
    assert_eq!(
        request(&done, "x1"),
        json!({"requestid": "x1", "status": "FAILED", "info": "Subscription not found", "orderid": null})
    );
    let x2 = request(&done, "x2");
    assert_eq!(
        (x2["status"].clone(), x2["orderid"].clone()),
        (json!("APPROVED"), Value::Null),
        "{x2}"
    );
    // c's state cannot go back: that order ran and failed (CANCELED), c4 never ran.
    let c3 = request(&done, "c3");
    assert_eq!(c3["status"], "CANCELED", "{c3}");
    assert!(c3["orderid"].as_i64().is_some());
    assert!(
        c3["info"].as_str().unwrap().contains("BEFORE_FIRST_USE"),
        "{c3}"
    );
    let o = wait_order(&app, c3["orderid"].as_i64().unwrap()).await;
    assert_eq!(o["status"], "CANCELED");
    let c4 = request(&done, "c4");
    assert_eq!(
        (c4["status"].clone(), c4["orderid"].clone()),
        (json!("APPROVED"), Value::Null),
        "{c4}"
    );
    let (_, sim) = send(
        &app,
        Method::GET,
        &format!("/ecc/v1/subscriptions/iccid:{c}"),
        None,
    )
    .await;
    assert_eq!(
        (sim["status"].clone(), sim["blocked"].clone()),
        (json!("IN_USE"), json!(false))
    );
    let (_, sim) = send(
        &app,
        Method::GET,
        &format!("/ecc/v1/subscriptions/iccid:{a}"),
        None,
    )
    .await;
    assert_eq!(sim["services"], json!(["Data1G", "Voice"]));
    app.stop().await;
}

async fn orders_of(app: &TestApp, method: Method, path: &str, body: &str, n: usize) -> Vec<Value> {
    let (s, b) = send(app, method, path, Some(body)).await;
    assert_eq!(s, 202, "{path}: {b}");
    let ids = b["orders"].as_array().unwrap().clone();
    assert_eq!(ids.len(), n, "{b}");
    let mut out = Vec::new();
    for id in ids {
        out.push(wait_order(app, id.as_i64().unwrap()).await);
    }
    out
}

/// The guide's single-request examples, verbatim, in a sensible order.
async fn single_requests_and_orders(b: Backend) {
    let app = TestApp::start(b).await;
    let sub = "/ecc/v1/subscriptions/msisdn:46708421488";
    let o = orders_of(
        &app,
        Method::POST,
        "/ecc/v1/subscriptions",
        r#"{"msisdn": "46708421488", "iccid": "89461177710001700003"}"#,
        1,
    )
    .await;
    assert_eq!(o[0]["status"], "COMPLETED", "{o:?}");
    assert_eq!(o[0]["msisdn"], "46708421488");
    assert_eq!(o[0]["iccid"], "89461177710001700003");
    let o = orders_of(&app, Method::PATCH, sub, r#"{"blocked": true}"#, 1).await;
    assert_eq!(o[0]["status"], "COMPLETED");
    let o = orders_of(&app, Method::PATCH, sub, r#"{"state" : "IN_USE"}"#, 1).await;
    assert_eq!(o[0]["status"], "COMPLETED");
    let o = orders_of(
        &app,
        Method::POST,
        &format!("{sub}/services"),
        r#"{
  "services": [
    {
      "id": "data1GB",
      "limit": 100
    },
    {
      "id": "cfu",
      "forward-number":"467012312334"
    }
  ]
}"#,
        2,
    )
    .await;
    assert!(o.iter().all(|o| o["status"] == "COMPLETED"), "{o:?}");
    // cfnr was never assigned: the order runs and is canceled, saying why.
    let o = orders_of(
        &app,
        Method::PATCH,
        &format!("{sub}/services/cfnr"),
        r#"{"forward-number" : "467012312345"}"#,
        1,
    )
    .await;
    assert_eq!(o[0]["status"], "CANCELED");
    assert!(o[0]["info"].as_str().unwrap().contains("cfnr"), "{o:?}");
    let o = orders_of(
        &app,
        Method::PATCH,
        &format!("{sub}/services/cfu"),
        r#"{"forward-number" : "467012312345"}"#,
        1,
    )
    .await;
    assert_eq!(o[0]["status"], "COMPLETED");
    let (s, b2) = send(
        &app,
        Method::DELETE,
        &format!("{sub}/services/Data5G"),
        None,
    )
    .await;
    assert_eq!(s, 202, "{b2}");
    let o = wait_order(&app, b2["orders"][0].as_i64().unwrap()).await;
    assert_eq!(o["status"], "CANCELED");
    let (s, b2) = send(
        &app,
        Method::DELETE,
        &format!("{sub}/services/data1GB"),
        None,
    )
    .await;
    assert_eq!(s, 202, "{b2}");
    assert_eq!(
        wait_order(&app, b2["orders"][0].as_i64().unwrap()).await["status"],
        "COMPLETED"
    );
    // Block and state in one PATCH: two orders, applied in order.
    let o = orders_of(
        &app,
        Method::PATCH,
        "/ecc/v1/subscriptions/iccid:89461177710001700003",
        r#"{"blocked": false, "state": "IN_USE"}"#,
        2,
    )
    .await;
    assert_eq!(
        (o[0]["status"].clone(), o[1]["status"].clone()),
        (json!("COMPLETED"), json!("CANCELED"))
    );
    let (s, g) = send(&app, Method::GET, sub, None).await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(g["msisdn"], "46708421488");
    assert_eq!(g["iccid"], "89461177710001700003");
    assert_eq!(g["status"], "IN_USE");
    assert_eq!(g["blocked"], false);
    assert_eq!(g["imsi"], json!([]));
    assert_eq!(g["services"], json!(["cfu"]));
    // Selecting by IMSI once the SIM has one.
    let o = orders_of(
        &app,
        Method::POST,
        "/ecc/v1/subscriptions",
        r#"{"msisdn": "46708421489", "iccid": "89461177710001700004", "imsi": "244141000170000"}"#,
        1,
    )
    .await;
    assert_eq!(o[0]["status"], "COMPLETED");
    let (s, g) = send(
        &app,
        Method::GET,
        "/ecc/v1/subscriptions/imsi:244141000170000",
        None,
    )
    .await;
    assert_eq!(s, 200, "{g}");
    assert_eq!(
        (g["imsi"].clone(), g["main-imsi"].clone()),
        (json!(["244141000170000"]), json!("244141000170000"))
    );
    app.stop().await;
}

async fn errors_and_auth_refusals(b: Backend) {
    let app = TestApp::start(b).await;
    subscribe(&app, "89461177710001700031", "46700000031").await;
    let (s, sub) = send(&app, Method::POST, "/ecc/v1/batches", Some(SEED_BATCH)).await;
    assert_eq!(s, 202);
    let batch = sub["batchid"].as_str().unwrap().to_owned();
    let order = {
        let (_, b) = send(
            &app,
            Method::PATCH,
            "/ecc/v1/subscriptions/msisdn:46700000031",
            Some(r#"{"blocked": true}"#),
        )
        .await;
        b["orders"][0].as_i64().unwrap()
    };

    // Authentication: none, wrong secret, unknown key, Bearer, not base64.
    let url = format!("{}/ecc/v1/batches/{batch}", app.base);
    let (key, _) = app.token.split_once('.').unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for auth in [
        None,
        Some(format!("Basic {}", b64(&format!("{key}:wrong")))),
        Some(format!("Basic {}", b64("sk_0000000000000000:secret"))),
        Some(format!("Basic {}", b64("no-colon"))),
        Some(format!("Bearer {}", app.token)),
        Some("Basic !!!".to_owned()),
    ] {
        let mut r = app.http.get(&url);
        if let Some(a) = &auth {
            r = r.header("authorization", a);
        }
        let resp = r.send().await.unwrap();
        assert_eq!(
            resp.headers()
                .get("www-authenticate")
                .map(|v| v.to_str().unwrap().to_owned()),
            Some("Basic realm=\"ecc\"".to_owned())
        );
        let (s, body) = read(resp).await;
        assert_eq!(s, 401, "{auth:?}: {body}");
    }

    // Another tenant sees none of it: 404.
    for path in [
        format!("/ecc/v1/batches/{batch}"),
        format!("/ecc/v1/orders/{order}"),
        "/ecc/v1/subscriptions/msisdn:46700000031".to_owned(),
        "/ecc/v1/subscriptions/iccid:89461177710001700031".to_owned(),
    ] {
        let (s, body) = read(
            ecc(&app, &app.other, Method::GET, &path)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 404, "{path}: {body}");
    }
    let (s, body) = read(
        ecc(
            &app,
            &app.other,
            Method::PATCH,
            "/ecc/v1/subscriptions/msisdn:46700000031",
        )
        .body(r#"{"blocked": false}"#)
        .send()
        .await
        .unwrap(),
    )
    .await;
    assert_eq!(
        (s, body["message"].clone()),
        (404, json!("Subscription not found"))
    );

    // Batches: too many requests, malformed, wrong shapes.
    let many: Vec<Value> = (0..101)
        .map(|i| json!({"method": "POST", "resource": "subscriptions", "body": {"iccid": format!("894611777100017{i:05}")}}))
        .collect();
    let cases: Vec<(String, &str)> = vec![
        (
            json!({"requests": many}).to_string(),
            "A batch can contain at most 100 API requests, got 101",
        ),
        ("{\"requests\": [".to_owned(), "The body is not valid JSON"),
        ("[1, 2]".to_owned(), "The body must be a JSON object"),
        ("{}".to_owned(), "Missing requests parameter in body"),
        (
            r#"{"requests": {}}"#.to_owned(),
            "Invalid requests parameter in body: must be a list",
        ),
        (
            r#"{"requests": []}"#.to_owned(),
            "Invalid requests parameter in body: a batch needs at least one API request",
        ),
        (
            r#"{"type": "double", "requests": [{}]}"#.to_owned(),
            "Invalid type parameter in body: use single or multi",
        ),
        (
            r#"{"requests": [{}], "colour": 1}"#.to_owned(),
            "Unknown parameter colour in body",
        ),
    ];
    for (body, message) in cases {
        let (s, e) = send(&app, Method::POST, "/ecc/v1/batches", Some(&body)).await;
        assert_eq!(s, 400, "{body}: {e}");
        assert!(e["message"].as_str().unwrap().starts_with(message), "{e}");
    }
    // Per-request refusals with a clear info; the valid request still proceeds.
    let body = json!({"requests": [
        {"method": "GET", "resource": "subscriptions", "requestid": "r1"},
        {"resource": "subscriptions", "requestid": "r2"},
        {"method": "POST", "resource": "subscriptions", "body": {"iccid": "123"}, "requestid": "r3"},
        {"method": "PATCH", "resource": "subscriptions/msisdn:46700000031", "body": {"state": "SOON"}, "requestid": "r4"},
        "not an object",
        {"method": "PATCH", "resource": "subscriptions/iccid:89461177710001700031", "body": {"blocked": false}, "requestid": "r6"},
    ]});
    let (s, sub) = send(
        &app,
        Method::POST,
        "/ecc/v1/batches",
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(s, 202, "{sub}");
    let infos: Vec<Value> = sub["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["info"].clone())
        .collect();
    assert_eq!(infos[0], "Unsupported API request: GET subscriptions");
    assert_eq!(infos[1], "Missing method parameter");
    assert!(
        infos[2]
            .as_str()
            .unwrap()
            .starts_with("Invalid iccid parameter in body: "),
        "{sub}"
    );
    assert!(
        infos[3]
            .as_str()
            .unwrap()
            .starts_with("Invalid state parameter in body: "),
        "{sub}"
    );
    assert_eq!(
        infos[4],
        "Invalid request: each request must be a JSON object"
    );
    assert_eq!(sub["requests"][4]["requestid"], Value::Null);
    let done = wait_ecc_batch(&app, sub["batchid"].as_str().unwrap()).await;
    assert_eq!(request(&done, "r6")["status"], "COMPLETED", "{done}");

    // Unknown objects, bad references, conflicts.
    for (method, path, body, status, message) in [
        (
            Method::GET,
            "/ecc/v1/batches/f81d4fae-7dec-11d0-a765-00a0c91e6bf6",
            None,
            404,
            "Batch not found",
        ),
        (
            Method::GET,
            "/ecc/v1/batches/nope",
            None,
            404,
            "Batch not found",
        ),
        (
            Method::GET,
            "/ecc/v1/orders/10091",
            None,
            404,
            "Order not found",
        ),
        (
            Method::GET,
            "/ecc/v1/orders/abc",
            None,
            404,
            "Order not found",
        ),
        (
            Method::GET,
            "/ecc/v1/subscriptions/msisdn:46708421400",
            None,
            404,
            "Subscription not found",
        ),
        (
            Method::GET,
            "/ecc/v1/subscriptions/phone:1",
            None,
            400,
            "Invalid subscription reference type 'phone': use iccid, msisdn or imsi",
        ),
        (
            Method::PATCH,
            "/ecc/v1/subscriptions/msisdn:46700000031",
            Some("{"),
            400,
            "The body is not valid JSON",
        ),
        (
            Method::PATCH,
            "/ecc/v1/subscriptions/msisdn:46700000031",
            Some("{}"),
            400,
            "Missing blocked or state parameter in body",
        ),
        (
            Method::PATCH,
            "/ecc/v1/subscriptions/msisdn:46700000031",
            Some(r#"{"msisdn": "1"}"#),
            400,
            "Unknown parameter msisdn in body",
        ),
        (
            Method::POST,
            "/ecc/v1/subscriptions/msisdn:46700000031/services",
            Some(r#"{"limit": 100}"#),
            400,
            "Missing id parameter in body",
        ),
        (
            Method::POST,
            "/ecc/v1/subscriptions",
            Some(r#"{"msisdn": "46700000031"}"#),
            400,
            "Missing iccid parameter in body",
        ),
        (
            Method::POST,
            "/ecc/v1/subscriptions",
            Some(r#"{"iccid": "12"}"#),
            400,
            "Invalid iccid parameter in body: ",
        ),
        (
            Method::POST,
            "/ecc/v1/subscriptions",
            Some(r#"{"iccid": "89461177710001700031"}"#),
            409,
            "The SIM 89461177710001700031 is already in use by a subscription",
        ),
        (
            Method::POST,
            "/ecc/v1/subscriptions",
            Some(r#"{"iccid": "89461177710001700032", "msisdn": "46700000031"}"#),
            409,
            "The MSISDN 46700000031 is already in use",
        ),
        (
            Method::GET,
            "/ecc/v1/events/threshold",
            None,
            400,
            "Unsupported event type 'threshold'",
        ),
        (
            Method::GET,
            "/ecc/v1/events/order?limit=0",
            None,
            400,
            "Invalid limit parameter",
        ),
        (
            Method::GET,
            "/ecc/v1/events/order?limit=101",
            None,
            400,
            "Invalid limit parameter",
        ),
        (
            Method::GET,
            "/ecc/v1/events/order?long-polling=x",
            None,
            400,
            "Invalid long-polling parameter",
        ),
        (
            Method::GET,
            "/ecc/v1/nothing",
            None,
            404,
            "No such resource",
        ),
        (
            Method::PUT,
            "/ecc/v1/batches",
            None,
            405,
            "This resource does not accept this method",
        ),
    ] {
        let (s, e) = send(&app, method.clone(), path, body).await;
        assert_eq!(s, status, "{method} {path}: {e}");
        assert!(
            e["message"].as_str().unwrap().starts_with(message),
            "{path}: {e}"
        );
    }
    app.stop().await;
}

async fn events_with_long_polling(b: Backend) {
    let app = TestApp::start(b).await;
    let (s, sub) = send(&app, Method::POST, "/ecc/v1/batches", Some(SEED_BATCH)).await;
    assert_eq!(s, 202);
    let id = sub["batchid"].as_str().unwrap().to_owned();
    let done = wait_ecc_batch(&app, &id).await;
    let oid = request(&done, "127322")["orderid"].as_i64().unwrap();
    subscribe(&app, "89461177710001700041", "46700000041").await;

    let (s, ev) = send(&app, Method::GET, "/ecc/v1/events/batch", None).await;
    assert_eq!(s, 200, "{ev}");
    let e = &ev["events"][0];
    assert_eq!(e["batchid"], id.as_str());
    assert_eq!(e["status"], "PARTIALLY_COMPLETED");
    assert_eq!(e["type"], "BatchEventInfo");
    assert!(e["sequence-number"].as_i64().is_some());
    assert_eq!(e["time"].as_str().unwrap().len(), 19, "{e}");

    // Order events: the failed "subscription not found" request has none.
    let (_, ev) = send(&app, Method::GET, "/ecc/v1/events/order", None).await;
    let orders = ev["events"].as_array().unwrap();
    assert_eq!(orders.len(), 2, "{ev}");
    assert_eq!(orders[0]["orderid"], oid.to_string());
    assert_eq!(orders[0]["batchid"], id.as_str());
    assert_eq!(orders[0]["requestid"], "127322");
    assert_eq!(orders[0]["status"], "COMPLETED");
    assert_eq!(orders[0]["iccid"], "89461177710001700003");
    assert_eq!(orders[0]["msisdn"], "46708421499");
    assert_eq!(orders[0]["type"], "OrderEventInfo");
    // limit and first-element page through them.
    let (_, one) = send(&app, Method::GET, "/ecc/v1/events/order?limit=1", None).await;
    assert_eq!(one["events"].as_array().unwrap().len(), 1);
    let next = orders[1]["sequence-number"].as_i64().unwrap();
    let (_, tail) = send(
        &app,
        Method::GET,
        &format!("/ecc/v1/events/order?limit=50&first-element={next}"),
        None,
    )
    .await;
    assert_eq!(tail["events"], json!([orders[1].clone()]));

    let (_, sc) = send(&app, Method::GET, "/ecc/v1/events/state-change", None).await;
    let sc = sc["events"].as_array().unwrap();
    assert_eq!(sc.len(), 2);
    assert_eq!(sc[1]["iccid"], "89461177710001700041");
    assert_eq!(sc[1]["previous-state"], Value::Null);
    assert_eq!(sc[1]["new-state"], "BEFORE_FIRST_USE");
    assert_eq!(sc[1]["type"], "StateChangeEventInfo");

    // Long polling: ETag, then 304 at timeout with nothing new.
    let resp = ecc(&app, &app.token, Method::GET, "/ecc/v1/events/state-change")
        .send()
        .await
        .unwrap();
    let tag = resp.headers()["etag"].to_str().unwrap().to_owned();
    let started = Instant::now();
    let resp = ecc(
        &app,
        &app.token,
        Method::GET,
        "/ecc/v1/events/state-change?long-polling=1",
    )
    .header("if-none-match", &tag)
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status(), 304);
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), tag);
    assert!(started.elapsed() >= Duration::from_millis(900));
    // A state change while the request hangs answers it at once.
    let app2 = std::sync::Arc::new(app);
    let poller = {
        let app = app2.clone();
        let tag = tag.clone();
        tokio::spawn(async move {
            let started = Instant::now();
            let resp = ecc(
                &app,
                &app.token,
                Method::GET,
                "/ecc/v1/events/state-change?long-polling=20",
            )
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
            (started.elapsed(), read(resp).await)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (s, _) = send(
        &app2,
        Method::PATCH,
        "/ecc/v1/subscriptions/msisdn:46700000041",
        Some(r#"{"state": "IN_USE"}"#),
    )
    .await;
    assert_eq!(s, 202);
    let (took, (s, ev)) = poller.await.unwrap();
    assert_eq!(s, 200, "{ev}");
    assert!(took < Duration::from_secs(15), "{took:?}");
    assert_eq!(ev["events"][0]["previous-state"], "BEFORE_FIRST_USE");
    assert_eq!(ev["events"][0]["new-state"], "IN_USE");
    assert_eq!(ev["events"][0]["msisdn"], "46700000041");
    if let Ok(app) = std::sync::Arc::try_unwrap(app2) {
        app.stop().await;
    }
}

/// 20 clients submit a batch of 5 at once: every request is stored once,
/// with its own requestid, and runs once.
async fn twenty_concurrent_clients(b: Backend) {
    let app = std::sync::Arc::new(TestApp::start(b).await);
    let mut tasks = Vec::new();
    for c in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let requests: Vec<Value> = (0..5)
                .map(|i| json!({"method": "POST", "resource": "subscriptions",
                    "body": {"iccid": format!("8946117771{:05}{:05}", c, i)}, "requestid": format!("{c}-{i}")}))
                .collect();
            let body = json!({"type": "single", "requests": requests}).to_string();
            let (s, sub) = send(&app, Method::POST, "/ecc/v1/batches", Some(&body)).await;
            assert_eq!(s, 202, "{sub}");
            sub["batchid"].as_str().unwrap().to_owned()
        }));
    }
    let mut ids = Vec::new();
    for t in tasks {
        ids.push(t.await.unwrap());
    }
    let mut seen = std::collections::BTreeSet::new();
    for (c, id) in ids.iter().enumerate() {
        let done = wait_ecc_batch(&app, id).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
        let rids: Vec<String> = done["requests"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["requestid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(rids, (0..5).map(|i| format!("{c}-{i}")).collect::<Vec<_>>());
        for r in done["requests"].as_array().unwrap() {
            assert!(
                seen.insert(r["orderid"].as_i64().unwrap()),
                "order id repeated"
            );
        }
    }
    assert_eq!(seen.len(), 100);
    let (s, sims) = app.get("/v1/sims?limit=1000").await;
    assert_eq!(s, 200);
    assert_eq!(
        sims["data"].as_array().unwrap().len(),
        100,
        "one SIM per request, none lost or doubled"
    );
    if let Ok(app) = std::sync::Arc::try_unwrap(app) {
        app.stop().await;
    }
}
