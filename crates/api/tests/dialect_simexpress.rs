//! The sim.express dialect through real HTTP, on SQLite and PostgreSQL: the
//! vendor's example sent verbatim (it succeeds, then fails with the exact
//! duplicate reason), every refusal in the vendor's shape (never a 5xx), and
//! 20 concurrent clients.

#[macro_use]
mod common;

use std::sync::Arc;

use common::{Backend, TestApp};
use serde_json::{json, Value};

both_backends!(
    golden_example_succeeds_then_is_a_duplicate,
    table_spelling_is_accepted,
    auth_refusals,
    request_refusals,
    item_failures_in_request_order,
    wrong_tenant_is_apart,
    concurrent_clients,
    concurrent_imports_of_one_iccid,
);

/// The request example of seed 002 (Batch Import), verbatim.
const SEED_IMPORT: &str = r#"    {
	    "profileItems":[
            {
                "iccid":"12345678912345678919",
                "eid":"35203000100100000000000000287435",
                "imei":"861111111111115",
                "ac":"1",
                "cc":"",
                "apn":"1"
            },
            {
                "iccid":"12345678912345678912",
                "eid":"35203000100100000000000000287435",
                "imei":"861111111111115",
                "ac":"1",
                "cc":"",
                "apn":"1"
            },
            {
                "iccid":"12345678912345678915",
                "eid":"35203000100100000000000000287435",
                "imei":"861111111111115",
                "ac":"1",
                "cc":"",
                "apn":"1"
            }
	    ]
    }"#;

const PATH: &str = "/simexpress/v1/profile/importProfileList";
const SEED_ICCIDS: [&str; 3] = [
    "12345678912345678919",
    "12345678912345678912",
    "12345678912345678915",
];

/// POST `body` exactly, with `token` as X-API-Key (None: no key).
async fn send(app: &TestApp, token: Option<&str>, body: &str) -> (u16, Value) {
    let mut req = app
        .http
        .post(format!("{}{PATH}", app.base))
        .header("Content-Type", "application/json")
        .body(body.to_owned());
    if let Some(t) = token {
        req = req.header("X-API-Key", t);
    }
    read_json(req.send().await.unwrap()).await
}

async fn read_json(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = r.text().await.unwrap();
    assert!(status < 500, "server error {status}: {text}");
    assert!(ct.starts_with("application/json"), "{ct}: {text}");
    (status, serde_json::from_str(&text).unwrap())
}

/// A whole-request refusal: HTTP 200, non-"0" code in both spellings, errorMsg.
fn assert_refused(r: &(u16, Value), code: &str, needle: &str) {
    let (status, b) = r;
    assert_eq!(*status, 200, "{b}");
    assert_eq!(
        (&b["code"], &b["errorCode"]),
        (&json!(code), &json!(code)),
        "{b}"
    );
    let msg = b["errorMsg"].as_str().unwrap();
    assert!(msg.contains(needle), "errorMsg {msg:?} lacks {needle:?}");
    assert_eq!(b["resultItems"], json!([]));
    assert_eq!(b["resultList"], json!([]));
}

/// A success answer; its per-item results.
fn results(r: &(u16, Value), sent: &Value) -> Vec<Value> {
    let (status, b) = r;
    assert_eq!(*status, 200, "{b}");
    assert_eq!(
        (&b["code"], &b["errorCode"]),
        (&json!("0"), &json!("0")),
        "{b}"
    );
    assert_eq!(b["errorMsg"], Value::Null);
    let list = sent
        .get("profileItems")
        .or_else(|| sent.get("prfileItems"))
        .unwrap();
    let mut expected = list.clone();
    for item in expected.as_array_mut().unwrap() {
        for (k, v) in item.as_object_mut().unwrap() {
            if k.eq_ignore_ascii_case("cc") && v.as_str().is_some_and(|c| !c.is_empty()) {
                *v = json!("********");
            }
        }
    }
    assert_eq!(
        b["profileItems"], expected,
        "profileItems echoes the request, confirmation codes hidden"
    );
    assert_eq!(b["resultItems"], b["resultList"], "both spellings");
    let out = b["resultItems"].as_array().unwrap().clone();
    assert_eq!(out.len(), list.as_array().unwrap().len());
    out
}

fn profile(iccid: &str) -> Value {
    json!({"iccid": iccid, "eid": "35203000100100000000000000287435", "imei": "861111111111115", "ac": "1$smdp.example.com$ABC", "cc": "", "apn": "internet"})
}

async fn golden_example_succeeds_then_is_a_duplicate(backend: Backend) {
    let app = TestApp::start(backend).await;
    let sent: Value = serde_json::from_str(SEED_IMPORT).unwrap();
    let r = send(&app, Some(&app.token), SEED_IMPORT).await;
    for res in results(&r, &sent) {
        assert_eq!(res, json!({"result": "SUCCEED", "reason": null}));
    }
    // Imported SIMs are native SIMs.
    let (s, sim) = app.get("/v1/sims/12345678912345678919").await;
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["eid"], "35203000100100000000000000287435");
    assert_eq!(sim["imei"], "861111111111115");

    let r = send(&app, Some(&app.token), SEED_IMPORT).await;
    let res = results(&r, &sent);
    for (res, iccid) in res.iter().zip(SEED_ICCIDS) {
        assert_eq!(
            res,
            &json!({"result": "FAILED", "reason": format!("the iccid is exist in db, iccid:[{iccid}]")})
        );
    }
    // Both requests are native batches of the sim.express source.
    let (_, list) = app.get("/v1/batches").await;
    let batches = list["data"].as_array().unwrap();
    assert_eq!(batches.len(), 2);
    for b in batches {
        assert_eq!(b["source"], "simexpress");
        assert_eq!(b["operation"], "import_profile");
        assert_eq!(b["counts"]["total"], 3);
    }
    app.stop().await;
}

async fn table_spelling_is_accepted(backend: Backend) {
    let app = TestApp::start(backend).await;
    let sent = json!({"prfileItems": [{"Iccid": "12345678912345678919", "Eid": "35203000100100000000000000287435", "Imei": "861111111111115", "Ac": "1", "cc": "4711", "Apn": "1"}]});
    let r = send(&app, Some(&app.token), &sent.to_string()).await;
    assert_eq!(results(&r, &sent)[0]["result"], "SUCCEED", "{}", r.1);
    assert!(
        !r.1.to_string().contains("4711"),
        "the confirmation code is never shown"
    );
    // Bearer works like X-API-Key.
    let r = read_json(
        app.http
            .post(format!("{}{PATH}", app.base))
            .bearer_auth(&app.token)
            .body(json!({"profileItems": [profile("12345678912345678927")]}).to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(r.1["resultList"][0]["result"], "SUCCEED", "{}", r.1);
    app.stop().await;
}

async fn auth_refusals(backend: Backend) {
    let app = TestApp::start(backend).await;
    let r = send(&app, None, SEED_IMPORT).await;
    assert_refused(&r, "40101", "X-API-Key");
    let (key_id, _) = app.token.split_once('.').unwrap();
    let wrong = format!("{key_id}.{}", "0".repeat(64));
    let r = send(&app, Some(&wrong), SEED_IMPORT).await;
    assert_refused(&r, "40101", "invalid API key");
    let r = send(&app, Some("garbage"), SEED_IMPORT).await;
    assert_refused(&r, "40101", "invalid API key");
    assert!(app.store.revoke_key(key_id).await.unwrap());
    let r = send(&app, Some(&app.token), SEED_IMPORT).await;
    assert_refused(&r, "40101", "invalid API key");
    let (_, list) = app
        .req_as(&app.other, reqwest::Method::GET, "/v1/batches")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .map(|v| (0, v))
        .unwrap();
    assert_eq!(list["data"], json!([]), "nothing was stored");
    app.stop().await;
}

async fn request_refusals(backend: Backend) {
    let app = TestApp::start(backend).await;
    let t = Some(app.token.as_str());
    assert_refused(
        &send(&app, t, "{\"profileItems\": [").await,
        "40001",
        "not valid JSON",
    );
    assert_refused(&send(&app, t, "[]").await, "40001", "JSON object");
    assert_refused(
        &send(&app, t, "{}").await,
        "40002",
        "profileItems is mandatory",
    );
    assert_refused(
        &send(&app, t, r#"{"profileItems":{}}"#).await,
        "40002",
        "must be a list",
    );
    assert_refused(
        &send(&app, t, r#"{"profileItems":[1]}"#).await,
        "40002",
        "profileItems[0]",
    );
    assert_refused(
        &send(&app, t, r#"{"profileItems":[]}"#).await,
        "40003",
        "empty",
    );
    let many: Vec<Value> = (0..1000)
        .map(|i| profile(&format!("8988{i:016}")))
        .collect();
    let r = send(&app, t, &json!({ "profileItems": many }).to_string()).await;
    assert_refused(&r, "40004", "fewer than 1000");
    let (_, list) = app.get("/v1/batches").await;
    assert_eq!(list["data"], json!([]), "nothing was stored: {list}");
    // 999 items are accepted.
    let most: Vec<Value> = (0..999).map(|i| profile(&format!("8988{i:016}"))).collect();
    let sent = json!({ "profileItems": most });
    let r = send(&app, t, &sent.to_string()).await;
    assert!(results(&r, &sent).iter().all(|x| x["result"] == "SUCCEED"));
    // An unknown path under the prefix.
    let (status, b) = read_json(
        app.http
            .post(format!("{}/simexpress/v1/nope", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, &b["code"]), (404, &json!("40400")));
    // Last: the server answers an over-size body without reading it, then
    // closes that connection, so no request may follow on the same client.
    let huge = format!(r#"{{"x":"{}"}}"#, "x".repeat(5 * 1024 * 1024));
    assert_refused(&send(&app, t, &huge).await, "40005", "exceeds");
    app.stop().await;
}

async fn item_failures_in_request_order(backend: Backend) {
    let app = TestApp::start(backend).await;
    let mut bad_eid = profile("12345678912345678901");
    bad_eid["eid"] = json!("123");
    let mut no_apn = profile("12345678912345678902");
    no_apn.as_object_mut().unwrap().remove("apn");
    let mut short_iccid = profile("123");
    short_iccid["ac"] = json!("1");
    let mut extra = profile("12345678912345678903");
    extra["group"] = json!("g");
    let ok = profile("12345678912345678904");
    let sent = json!({"profileItems": [bad_eid, ok.clone(), no_apn, short_iccid, extra, ok]});
    let r = send(&app, Some(&app.token), &sent.to_string()).await;
    let res = results(&r, &sent);
    let reason = |i: usize| res[i]["reason"].as_str().unwrap_or("").to_owned();
    assert_eq!(res[0]["result"], "FAILED");
    assert!(reason(0).contains("eid"), "{}", reason(0));
    assert_eq!(res[1], json!({"result": "SUCCEED", "reason": null}));
    assert_eq!(res[2]["result"], "FAILED");
    assert_eq!(reason(2), "apn is mandatory");
    assert_eq!(res[3]["result"], "FAILED");
    assert!(reason(3).contains("iccid"), "{}", reason(3));
    assert_eq!(res[4]["result"], "FAILED");
    assert!(reason(4).contains("group"), "{}", reason(4));
    assert_eq!(
        res[5],
        json!({"result": "FAILED", "reason": "the iccid is exist in db, iccid:[12345678912345678904]"}),
        "a duplicate within one request"
    );
    app.stop().await;
}

async fn wrong_tenant_is_apart(backend: Backend) {
    let app = TestApp::start(backend).await;
    let sent: Value = serde_json::from_str(SEED_IMPORT).unwrap();
    let r = send(&app, Some(&app.token), SEED_IMPORT).await;
    assert!(results(&r, &sent).iter().all(|x| x["result"] == "SUCCEED"));
    // Another tenant's ICCIDs do not collide, and its SIMs stay invisible.
    let r = send(&app, Some(&app.other), SEED_IMPORT).await;
    assert!(
        results(&r, &sent).iter().all(|x| x["result"] == "SUCCEED"),
        "{}",
        r.1
    );
    let s = app
        .req_as(&app.other, reqwest::Method::GET, "/v1/batches")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    assert_eq!(s["data"].as_array().unwrap().len(), 1, "only its own batch");
    app.stop().await;
}

async fn concurrent_clients(backend: Backend) {
    let app = Arc::new(TestApp::start(backend).await);
    let mut tasks = Vec::new();
    for c in 0..20usize {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let items: Vec<Value> = (0..10)
                .map(|i| profile(&format!("8988{:016}", c * 10 + i)))
                .collect();
            let sent = json!({ "profileItems": items });
            let r = send(&app, Some(&app.token), &sent.to_string()).await;
            let res = results(&r, &sent);
            assert!(
                res.iter().all(|x| x["result"] == "SUCCEED"),
                "client {c}: {}",
                r.1
            );
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let (_, sims) = app.get("/v1/sims?limit=1000").await;
    let sims = sims["data"].as_array().unwrap();
    assert_eq!(sims.len(), 200, "no lost or extra SIMs");
    let (_, list) = app.get("/v1/batches?limit=100").await;
    let batches = list["data"].as_array().unwrap();
    assert_eq!(batches.len(), 20);
    assert!(
        batches.iter().all(|b| b["counts"]["completed"] == 10),
        "{list}"
    );
    Arc::into_inner(app).unwrap().stop().await;
}

async fn concurrent_imports_of_one_iccid(backend: Backend) {
    let app = Arc::new(TestApp::start(backend).await);
    let body = json!({ "profileItems": [profile("12345678912345678919")] }).to_string();
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (app, body) = (app.clone(), body.clone());
        tasks.push(tokio::spawn(async move {
            send(&app, Some(&app.token), &body).await
        }));
    }
    let mut succeeded = 0;
    for t in tasks {
        let (s, b) = t.await.unwrap();
        assert_eq!((s, &b["code"]), (200, &json!("0")), "{b}");
        match b["resultList"][0]["result"].as_str().unwrap() {
            "SUCCEED" => succeeded += 1,
            _ => assert_eq!(
                b["resultList"][0]["reason"],
                "the iccid is exist in db, iccid:[12345678912345678919]"
            ),
        }
    }
    assert_eq!(
        succeeded, 1,
        "exactly one of 20 imports of one ICCID succeeds"
    );
    Arc::into_inner(app).unwrap().stop().await;
}
