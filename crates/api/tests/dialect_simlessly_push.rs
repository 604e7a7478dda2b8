//! Simlessly status-change callbacks and `acLink` QR links, through real
//! HTTP on SQLite and PostgreSQL: the callback URL is set with a signed call,
//! a profile generated through Simlessly changes state (ES2+ CancelOrder),
//! and the webhook dispatcher POSTs the callback to a local receiver that
//! checks Simlessly's signature; a profile generated natively sends nothing.

#[macro_use]
mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::http::HeaderMap;
use common::{iccid, read, Backend, TestApp};
use hmac::{Hmac, Mac};
use reqwest::Method;
use serde_json::{json, Value};
use sha2::Sha256;

both_backends!(
    callbacks_are_signed_and_only_for_simlessly_profiles,
    callback_config_refusals,
    ac_links_download_without_headers,
);

const TEMPLATE: &str = "templateRegular01";
const GENERATE: &str = "/simlessly/api/v1/ac/generateByBatch";
const INFO: &str = "/simlessly/api/v1/batch/info";
const CONFIG: &str = "/simlessly/api/v1/notify/config";
const PROTOCOL: &str = "gsma/rsp/v2.2.0";

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Hex HMAC-SHA256 of Timestamp + RequestID + AccessKey + body, computed here
/// independently of the server's code.
fn hmac_hex(secret: &str, ts: &str, rid: &str, key: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    mac.update(rid.as_bytes());
    mac.update(key.as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// POST a signed Simlessly call as `token`; status and envelope.
async fn call(app: &TestApp, token: &str, path: &str, body: &str) -> (u16, Value) {
    let (key, secret) = token.split_once('.').unwrap();
    let ts = now_ms().to_string();
    let rid = uuid::Uuid::new_v4().to_string();
    let r = app
        .http
        .post(format!("{}{path}", app.base))
        .header("Content-Type", "application/json")
        .header("Access-Key", key)
        .header("Timestamp", &ts)
        .header("Request-ID", &rid)
        .header(
            "Signature",
            hmac_hex(secret, &ts, &rid, key, body.as_bytes()),
        )
        .header("Sign-Method", "SHA256")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert!(status < 500, "{status}: {text}");
    (status, serde_json::from_str(&text).unwrap())
}

fn assert_refused(r: &(u16, Value), code: &str, needle: &str) {
    let (status, b) = r;
    assert_eq!(
        (*status, &b["success"], &b["code"]),
        (200, &json!(false), &json!(code)),
        "{b}"
    );
    let msg = b["msg"].as_str().unwrap();
    assert!(msg.contains(needle), "{msg:?} lacks {needle:?}");
}

/// Generate `ns` through Simlessly and wait until COMPLETE; the info `obj`.
async fn simlessly_generate(app: &TestApp, ns: &[usize]) -> Value {
    let items: Vec<Value> = ns
        .iter()
        .map(|n| json!({"iccid": iccid(*n), "imsi": format!("46004{n:010}"), "ki": "6BE2053E8580B135CD43443380DB7111"}))
        .collect();
    let body = json!({"configName": TEMPLATE, "encryptionMode": 1, "needAcLink": true, "metaDatas": items});
    let (s, b) = call(app, &app.token, GENERATE, &body.to_string()).await;
    assert_eq!((s, &b["success"]), (200, &json!(true)), "{b}");
    let code = b["obj"]["batchCode"].as_str().unwrap().to_owned();
    let start = Instant::now();
    loop {
        let q = json!({"batchCode": code, "needAcLink": true}).to_string();
        let (_, b) = call(app, &app.token, INFO, &q).await;
        assert_eq!(b["success"], true, "{b}");
        if b["obj"]["batchTaskInfo"]["status"] == "COMPLETE" {
            assert_eq!(b["obj"]["batchTaskInfo"]["succeedNum"], ns.len(), "{b}");
            return b["obj"].clone();
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Cancel a profile's order for good over ES2+ (RELEASED -> UNAVAILABLE).
async fn cancel_for_good(app: &TestApp, n: usize) {
    let body = json!({
        "header": {"functionRequesterIdentifier": "bss.example", "functionCallIdentifier": format!("cancel-{n}")},
        "iccid": iccid(n), "finalProfileStatusIndicator": "Unavailable"});
    let r = app
        .req(Method::POST, "/gsma/rsp2/es2plus/cancelOrder")
        .header("X-Admin-Protocol", PROTOCOL)
        .json(&body)
        .send()
        .await
        .unwrap();
    let (s, out) = read(r).await;
    assert_eq!(s, 200, "{out}");
    assert_eq!(
        out["header"]["functionExecutionStatus"]["status"], "Executed-Success",
        "{out}"
    );
}

/// What the local receiver saw: headers and raw body of each request.
type Seen = Arc<Mutex<Vec<(HeaderMap, Vec<u8>)>>>;

/// A receiver on 127.0.0.1 that records every request; it answers 500 to
/// the first `fail_first` requests, then 200.
async fn receiver(fail_first: usize) -> (String, Seen) {
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: HeaderMap, body: axum::body::Bytes| {
            let seen = s2.clone();
            async move {
                let mut v = seen.lock().unwrap();
                v.push((headers, body.to_vec()));
                if v.len() <= fail_first {
                    axum::http::StatusCode::INTERNAL_SERVER_ERROR
                } else {
                    axum::http::StatusCode::OK
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/hook"), seen)
}

/// Run dispatch passes until the receiver has seen `n` requests.
async fn dispatch_until(app: &TestApp, seen: &Seen, n: usize) {
    let client = reqwest::Client::new();
    let start = Instant::now();
    while seen.lock().unwrap().len() < n {
        simbatch_engine::webhooks::dispatch_once(app.store.as_ref(), &client)
            .await
            .unwrap();
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "only {} deliveries",
            seen.lock().unwrap().len()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name)
        .unwrap_or_else(|| panic!("{name} missing"))
        .to_str()
        .unwrap()
}

async fn callbacks_are_signed_and_only_for_simlessly_profiles(b: Backend) {
    let app = TestApp::start(b).await;
    app.add_template(TEMPLATE).await;
    let (url, seen) = receiver(1).await;
    let (s, set) = call(&app, &app.token, CONFIG, &json!({"url": url}).to_string()).await;
    assert_eq!(
        (s, &set["success"], &set["code"]),
        (200, &json!(true), &json!("00000")),
        "{set}"
    );
    let access_key = set["obj"]["accessKey"].as_str().unwrap().to_owned();
    let secret_key = set["obj"]["secretKey"].as_str().unwrap().to_owned();
    assert_eq!(
        (&set["obj"]["url"], &set["obj"]["enabled"]),
        (&json!(url), &json!(true))
    );
    // The query shows the configuration, never the secret.
    let (_, q) = call(&app, &app.token, &format!("{CONFIG}/query"), "{}").await;
    assert_eq!(q["obj"]["accessKey"], access_key.as_str(), "{q}");
    assert!(q["obj"].get("secretKey").is_none(), "{q}");
    assert!(!q.to_string().contains(&secret_key));

    // Profile 1 comes from Simlessly, profile 2 from the native API.
    simlessly_generate(&app, &[1]).await;
    let (s, nb) = app
        .submit(
            Some("generate_activation_code"),
            vec![json!({"iccid": iccid(2), "imsi": "460040000000002", "ki": "6BE2053E8580B135CD43443380DB7111", "template": TEMPLATE})],
        )
        .await;
    assert_eq!(s, 202, "{nb}");
    app.wait_batch(nb["id"].as_str().unwrap()).await;
    let (_, profile) = app.get(&format!("/v1/profiles/{}", iccid(1))).await;
    cancel_for_good(&app, 2).await;
    cancel_for_good(&app, 1).await;

    // The first attempt is answered 500 and retried (after about 2 s).
    dispatch_until(&app, &seen, 2).await;
    for _ in 0..3 {
        simbatch_engine::webhooks::dispatch_once(app.store.as_ref(), &reqwest::Client::new())
            .await
            .unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert_eq!(
        seen.len(),
        2,
        "one callback (retried once), none for the native profile"
    );
    let mut request_ids = Vec::new();
    for (h, body) in &seen {
        assert_eq!(header(h, "Access-Key"), access_key);
        assert_eq!(header(h, "Sign-Method"), "SHA256");
        assert_eq!(header(h, "content-type"), "application/json");
        let ts = header(h, "Timestamp");
        assert!(
            (now_ms() - ts.parse::<i64>().unwrap()).abs() < 60_000,
            "{ts}"
        );
        let rid = header(h, "Request-ID");
        let expected = hmac_hex(&secret_key, ts, rid, &access_key, body);
        assert!(header(h, "Signature").eq_ignore_ascii_case(&expected));
        // A wrong secret does not verify.
        assert_ne!(
            hmac_hex("wrong", ts, rid, &access_key, body),
            header(h, "Signature")
        );
        request_ids.push(rid.to_owned());
    }
    assert_ne!(
        request_ids[0], request_ids[1],
        "a fresh Request-ID per attempt"
    );
    assert_eq!(seen[0].1, seen[1].1, "the retry carries the same body");
    let v: Value = serde_json::from_slice(&seen[0].1).unwrap();
    assert_eq!(v["iccid"], iccid(1));
    assert_eq!(v["matchingId"], profile["matching_id"], "{v} vs {profile}");
    assert_eq!(v["configName"], TEMPLATE);
    assert_eq!(v["eid"], Value::Null);
    assert_eq!(v["deviceName"], Value::Null);
    assert_eq!(v["notificationType"], "CANCEL_ORDER");
    assert_eq!(
        v["notificationStatus"],
        json!({"status": "Success", "message": "profile RELEASED -> UNAVAILABLE"})
    );
    assert_eq!(
        (&v["profileStatus"], &v["previousStatus"]),
        (&json!("UNAVAILABLE"), &json!("RELEASED"))
    );
    let ts: i64 = v["timestamp"].as_str().unwrap().parse().unwrap();
    assert!((now_ms() - ts).abs() < 60_000);
    assert!(v["eventId"].is_string());
    assert!(
        !String::from_utf8_lossy(&seen[0].1).contains("6BE2053E"),
        "no Ki"
    );

    // Deleting stops the callbacks.
    let (_, d) = call(&app, &app.token, &format!("{CONFIG}/delete"), "").await;
    assert_eq!(
        (&d["success"], &d["obj"]),
        (&json!(true), &Value::Null),
        "{d}"
    );
    let r = call(&app, &app.token, &format!("{CONFIG}/query"), "{}").await;
    assert_refused(&r, "20008", "no callback URL");
    app.stop().await;
}

async fn callback_config_refusals(b: Backend) {
    let app = TestApp::start(b).await;
    let cases = [
        (json!({}), "20002", "url is mandatory"),
        (json!({"url": 5}), "20002", "url must be a string"),
        (json!({"url": "ftp://example.com/x"}), "20002", "url"),
        (json!({"url": "not a url"}), "20002", "url"),
        (
            json!({"url": "http://127.0.0.1/x", "secret": "s"}),
            "20002",
            "secret is not a parameter",
        ),
    ];
    for (body, code, needle) in cases {
        let r = call(&app, &app.token, CONFIG, &body.to_string()).await;
        assert_refused(&r, code, needle);
    }
    let r = call(&app, &app.token, CONFIG, "[1]").await;
    assert_refused(&r, "20001", "JSON object");
    // Each tenant has its own callback: another tenant's query finds none.
    let (_, ok) = call(
        &app,
        &app.token,
        CONFIG,
        &json!({"url": "http://127.0.0.1:9/x"}).to_string(),
    )
    .await;
    assert_eq!(ok["success"], true, "{ok}");
    let r = call(&app, &app.other, &format!("{CONFIG}/query"), "{}").await;
    assert_refused(&r, "20008", "no callback URL");
    let r = call(&app, &app.other, &format!("{CONFIG}/delete"), "{}").await;
    assert_refused(&r, "20008", "no callback URL");
    // Unsigned calls are refused like every Simlessly call.
    let r = app
        .http
        .post(format!("{}{CONFIG}", app.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(
        (&v["success"], &v["code"]),
        (&json!(false), &json!("10001")),
        "{v}"
    );
    app.stop().await;
}

async fn ac_links_download_without_headers(b: Backend) {
    let app = TestApp::start(b).await;
    app.add_template(TEMPLATE).await;
    let obj = simlessly_generate(&app, &[1, 2]).await;
    let results = obj["results"].as_array().unwrap();
    assert_eq!(results.len(), 2);
    let native = app
        .req(Method::GET, &format!("/v1/profiles/{}/qr.png", iccid(1)))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let link = results[0]["acLink"].as_str().unwrap().to_owned();
    assert_eq!(
        obj["result"][0]["acLink"],
        link.as_str(),
        "both list spellings"
    );
    assert!(
        link.starts_with(&format!("{}/simlessly/files/qr/", app.base)),
        "{link}"
    );
    // No headers at all: a plain client.
    let plain = reqwest::Client::new();
    let r = plain.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let png = r.bytes().await.unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert_eq!(png, native, "the same QR as the native endpoint");

    // A tampered link (another ICCID, or a changed expiry or signature) is refused with 403.
    let other = link.replace(&iccid(1), &iccid(2));
    let later = {
        let (before, rest) = link.split_once("expires=").unwrap();
        let (exp, after) = rest.split_once('&').unwrap();
        format!(
            "{before}expires={}&{after}",
            exp.parse::<i64>().unwrap() + 1
        )
    };
    // Another last hex digit (a fixed "0" left the link intact when it already ended in 0).
    let last = if link.ends_with('0') { '1' } else { '0' };
    let bad_sig = format!("{}{last}", &link[..link.len() - 1]);
    for bad in [
        other,
        later,
        bad_sig,
        link.split('?').next().unwrap().to_owned(),
    ] {
        let r = plain.get(&bad).send().await.unwrap();
        assert_eq!(r.status(), 403, "{bad}");
        let v: Value = r.json().await.unwrap();
        assert_eq!(
            (&v["success"], &v["code"]),
            (&json!(false), &json!("30001")),
            "{v}"
        );
    }
    // An expired link, signed with the server's own key, is refused too.
    let signer = simbatch_api::signed_url::signer(app.store.as_ref())
        .await
        .unwrap();
    let path = link
        .strip_prefix(&app.base)
        .unwrap()
        .split('?')
        .next()
        .unwrap()
        .to_owned();
    let expired = format!(
        "{}{}",
        app.base,
        signer.sign(&path, simbatch_api::signed_url::now_secs() - 1)
    );
    let r = plain.get(&expired).send().await.unwrap();
    assert_eq!(r.status(), 403);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "30001");
    assert!(v["msg"].as_str().unwrap().contains("expired"), "{v}");

    // A correctly signed link to a profile that does not exist: 404.
    let ghost = format!(
        "{}{}",
        app.base,
        signer.sign(
            &path.replace(&iccid(1), &iccid(99)),
            simbatch_api::signed_url::now_secs() + 60
        )
    );
    let r = plain.get(&ghost).send().await.unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "20009", "{v}");

    // Once the order is cancelled for good there is no code to show.
    cancel_for_good(&app, 1).await;
    let r = plain.get(&link).send().await.unwrap();
    assert_eq!(r.status(), 409);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["code"], "30002", "{v}");
    // needAcLink must be a boolean.
    let r = call(
        &app,
        &app.token,
        INFO,
        r#"{"batchCode":"B1","needAcLink":"yes"}"#,
    )
    .await;
    assert_refused(&r, "20002", "needAcLink must be true or false");
    app.stop().await;
}
