//! The Simlessly RSP dialect through real HTTP, on SQLite and PostgreSQL:
//! the vendor's examples sent verbatim, every refusal in the vendor's
//! envelope (never a 5xx), the presigned result file, and 20 concurrent clients.

#[macro_use]
mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::{iccid, Backend, TestApp};
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

both_backends!(
    golden_generate_reaches_complete_with_codes,
    golden_batch_info_example_is_an_unknown_code,
    auth_refusals,
    request_refusals,
    item_failures_are_reported_per_item,
    golden_generate_seed_verbatim_grows_what_does_not_fit,
    wrong_tenant_sees_nothing,
    result_links,
    concurrent_clients,
    concurrent_replays_are_refused_once,
);

/// The request example of seed 001 (Batch Generate AC), verbatim.
const SEED_GENERATE: &str = r#"{
  "configName": " templateRegualr01",
  "encryptionMode": 1,
  "metaDatas": [
    {
      "iccid": " 89860468152080349618",
      "imsi": " 460048867619618",
      "ki": " 6BE2053E8580B135CD43443380DB7111",
      "opc": " 85304194B0D2A2F92847F1594529F6AA",
      "msidn": " 8613912345678",
      "impi": " 260036614799000@ims.mnc006.mcc260.3gppnetwork.org",
      "impu": ["sip:260036614799000@ims.mnc006.mcc260.3gppnetwork.org"],
      "c9": " 0C3C0302984D3E05212B9A81FC07992113329595FF0400080520",
      "cc": " 1234",
      "expireTime": " 2023-03-07 12:00:00",
      "configName": " templateRegualr01"
    }
  ]
}
"#;

/// The request example of seed 000 (Query Batch AC Generation Results), verbatim.
const SEED_INFO: &str = r#"{
  "batchCode": "B202303071234223"
}"#;

const TEMPLATE: &str = "templateRegualr01";
const GENERATE: &str = "/simlessly/api/v1/ac/generateByBatch";
const INFO: &str = "/simlessly/api/v1/batch/info";

/// AccessKey (key id) and SecretKey (secret) of a native token.
fn split(token: &str) -> (String, String) {
    let (k, s) = token.split_once('.').unwrap();
    (k.to_owned(), s.to_owned())
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// Hex HMAC-SHA256 of Timestamp + RequestID + AccessKey + body.
fn signature(secret: &str, ts: &str, rid: &str, key: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{ts}{rid}{key}{body}").as_bytes());
    hex::encode_upper(mac.finalize().into_bytes())
}

/// How a test request is signed.
#[derive(Clone)]
struct Signer {
    key: String,
    secret: String,
    ts: Option<i64>,
    rid: Option<String>,
    sig: Option<String>,
    hyphenated: bool,
    method: Option<&'static str>,
}

impl Signer {
    fn of(token: &str) -> Self {
        let (key, secret) = split(token);
        Self {
            key,
            secret,
            ts: None,
            rid: None,
            sig: None,
            hyphenated: true,
            method: Some("SHA256"),
        }
    }
}

/// POST `body` (sent exactly) with Simlessly headers; status and JSON.
async fn send(app: &TestApp, path: &str, body: &str, s: &Signer) -> (u16, Value) {
    let ts = s.ts.unwrap_or_else(now_ms).to_string();
    let rid = s
        .rid
        .clone()
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    let sig = s
        .sig
        .clone()
        .unwrap_or_else(|| signature(&s.secret, &ts, &rid, &s.key, body));
    let (kh, rh) = if s.hyphenated {
        ("Access-Key", "Request-ID")
    } else {
        ("AccessKey", "RequestID")
    };
    let mut req = app
        .http
        .post(format!("{}{path}", app.base))
        .header("Content-Type", "application/json")
        .header(kh, &s.key)
        .header("Timestamp", &ts)
        .header(rh, &rid)
        .header("Signature", sig)
        .body(body.to_owned());
    if let Some(m) = s.method {
        req = req.header("Sign-Method", m);
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

/// A refusal: HTTP 200, the envelope with success false, `code`, a clear msg.
fn assert_refused(r: &(u16, Value), code: &str, needle: &str) {
    let (status, b) = r;
    assert_eq!(*status, 200, "{b}");
    assert_eq!(b["success"], false, "{b}");
    assert_eq!(b["code"], code, "{b}");
    assert_eq!(b["obj"], Value::Null, "{b}");
    let msg = b["msg"].as_str().unwrap();
    assert!(msg.contains(needle), "msg {msg:?} lacks {needle:?}");
    assert_eq!(
        b.as_object().unwrap().len(),
        4,
        "only obj, success, msg, code: {b}"
    );
}

async fn start(backend: Backend) -> TestApp {
    let app = TestApp::start(backend).await;
    app.add_template(TEMPLATE).await;
    app
}

/// Generate from `body`; the batch code.
async fn generate(app: &TestApp, token: &str, body: &str) -> String {
    let (s, b) = send(app, GENERATE, body, &Signer::of(token)).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["success"], true, "{b}");
    assert_eq!(b["code"], "00000", "{b}");
    assert_eq!(b["msg"], "", "{b}");
    let code = b["obj"]["batchCode"].as_str().unwrap().to_owned();
    assert!(
        code.starts_with('B') && code[1..].bytes().all(|c| c.is_ascii_digit()),
        "{code}"
    );
    code
}

/// Poll batch/info until COMPLETE; the `obj`.
async fn wait_complete(app: &TestApp, token: &str, code: &str) -> Value {
    let start = Instant::now();
    loop {
        let body = json!({ "batchCode": code }).to_string();
        let (s, b) = send(app, INFO, &body, &Signer::of(token)).await;
        assert_eq!((s, &b["success"]), (200, &json!(true)), "{b}");
        let status = b["obj"]["batchTaskInfo"]["status"].as_str().unwrap();
        assert!(["PROCESSING", "COMPLETE"].contains(&status), "{b}");
        if status == "COMPLETE" {
            return b["obj"].clone();
        }
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "not complete: {b}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn is_ac(ac: &str, with_cc: bool) -> bool {
    let parts: Vec<&str> = ac.split('$').collect();
    let head_ok = parts.len() >= 3
        && parts[0] == "1"
        && parts[1] == "smdp.simbatch.local"
        && parts[2].len() == 32
        && parts[2]
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'A'..=b'F').contains(&b));
    head_ok && (ac.ends_with("$$1") == with_cc)
}

/// The seed's IMPI (51 bytes as EF.IMPI stores it) is longer than EF.IMPI
/// in every GSMA TS.48 test template (32 bytes): sent verbatim, the file
/// grows, as an SM-DP+ back end does, and the item succeeds with both IMS
/// identities in its package.
async fn golden_generate_seed_verbatim_grows_what_does_not_fit(backend: Backend) {
    let app = start(backend).await;
    let code = generate(&app, &app.token, SEED_GENERATE).await;
    let obj = wait_complete(&app, &app.token, &code).await;
    let info = &obj["batchTaskInfo"];
    assert_eq!(info["status"], "COMPLETE", "{obj}");
    assert_eq!(
        (&info["total"], &info["succeedNum"], &info["failedNum"]),
        (&json!(1), &json!(1), &json!(0)),
        "{obj}"
    );
    assert_eq!(obj["results"][0]["success"], true, "{obj}");
    let r = app
        .req(
            reqwest::Method::GET,
            "/v1/profiles/89860468152080349618/package",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v = simbatch_saip::Package::parse(&r.bytes().await.unwrap())
        .unwrap()
        .values();
    assert_eq!(
        (v.impi.as_deref(), v.impu.as_deref()),
        (
            Some("260036614799000@ims.mnc006.mcc260.3gppnetwork.org"),
            Some("sip:260036614799000@ims.mnc006.mcc260.3gppnetwork.org")
        )
    );
    app.stop().await;
}

/// The seed without the IMS identities that do not fit a TS.48 template.
fn seed_generate_fitting() -> String {
    SEED_GENERATE
        .lines()
        .filter(|l| !l.contains("\"impi\"") && !l.contains("\"impu\""))
        .collect::<Vec<_>>()
        .join("\n")
}

async fn golden_generate_reaches_complete_with_codes(backend: Backend) {
    let app = start(backend).await;
    let code = generate(&app, &app.token, &seed_generate_fitting()).await;
    let obj = wait_complete(&app, &app.token, &code).await;

    let info = &obj["batchTaskInfo"];
    assert_eq!(info["batchCode"], code.as_str());
    assert_eq!(info["taskType"], "GENERATE AC");
    assert_eq!(info["status"], "COMPLETE");
    assert_eq!(info["total"], 1);
    assert_eq!(
        (&info["succeedNum"], &info["succeed"]),
        (&json!(1), &json!(1)),
        "{obj}"
    );
    assert_eq!(
        (&info["failedNum"], &info["failed"]),
        (&json!(0), &json!(0))
    );
    let ct = info["createTime"].as_str().unwrap();
    let shape = ct.len() == 19
        && ct.char_indices().all(|(i, c)| match i {
            4 | 7 => c == '/',
            10 => c == ' ',
            13 | 16 => c == ':',
            _ => c.is_ascii_digit(),
        });
    assert!(shape, "createTime {ct} is yyyy/MM/dd HH:mm:ss");
    let url = info["resultUrl"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/simlessly/files/results/", app.base)),
        "{url}"
    );

    assert_eq!(obj["results"], obj["result"], "both spellings");
    let results = obj["results"].as_array().unwrap();
    assert_eq!(results.len(), 1);
    let r = &results[0];
    assert_eq!(r["success"], true);
    assert_eq!(
        (&r["errorReason"], &r["errorReson"]),
        (&json!(""), &json!(""))
    );
    assert_eq!(r["iccid"], "89860468152080349618", "trimmed");
    assert_eq!(r["eid"], Value::Null);
    let ac = r["activationCode"].as_str().unwrap();
    assert!(is_ac(ac, true), "{ac} (cc given, so $$1)");
    assert!(!obj.to_string().contains("6BE2053E"), "Ki never shown");

    // The batch is a native batch too, with the batch code as its reference.
    let (s, list) = app.get("/v1/batches?limit=10").await;
    assert_eq!(s, 200, "{list}");
    let native = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["external_ref"] == code.as_str())
        .expect("the batch is listed natively")
        .clone();
    assert_eq!(native["source"], "simlessly");
    assert_eq!(native["operation"], "generate_activation_code");
    assert_eq!(native["status"], "COMPLETED");
    let (_, sim) = app.get("/v1/sims/89860468152080349618").await;
    assert_eq!(sim["imsi"], "460048867619618", "{sim}");
    assert_eq!(sim["msisdn"], "8613912345678", "{sim}");

    // The result file: no headers needed, the same data.
    let resp = reqwest::get(url).await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let bytes = resp.bytes().await.unwrap();
    let rows = xlsx_rows(&bytes);
    assert_eq!(
        rows[0][..5],
        ["batchCode", "iccid", "eid", "success", "activationCode"]
    );
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1][0], code);
    assert_eq!(rows[1][1], "89860468152080349618");
    assert_eq!(rows[1][3], "true");
    assert_eq!(rows[1][4], ac);

    // The same example again: a new batch whose item fails as a duplicate.
    let again = generate(&app, &app.token, SEED_GENERATE).await;
    assert_ne!(again, code);
    let obj = wait_complete(&app, &app.token, &again).await;
    assert_eq!(obj["batchTaskInfo"]["failedNum"], 1);
    let r = &obj["results"][0];
    assert_eq!(r["success"], false);
    assert_eq!(
        r["errorReason"],
        "PROFILE EXECUTION_ERROR, generateByProfileMetadata, ICCID [89860468152080349618] already existsById."
    );
    assert_eq!(r["errorReson"], r["errorReason"]);
    assert_eq!(r["errorCode"], "iccid_exists");
    assert_eq!(r["activationCode"], Value::Null);
    app.stop().await;
}

/// Every cell of the first sheet as text.
fn xlsx_rows(bytes: &[u8]) -> Vec<Vec<String>> {
    use calamine::{Reader, Xlsx};
    let mut wb: Xlsx<_> = Xlsx::new(std::io::Cursor::new(bytes.to_vec())).unwrap();
    let range = wb.worksheet_range("results").unwrap();
    range
        .rows()
        .map(|r| r.iter().map(|c| c.to_string()).collect())
        .collect()
}

async fn golden_batch_info_example_is_an_unknown_code(backend: Backend) {
    let app = start(backend).await;
    let r = send(&app, INFO, SEED_INFO, &Signer::of(&app.token)).await;
    assert_refused(&r, "20006", "B202303071234223");
    app.stop().await;
}

async fn auth_refusals(backend: Backend) {
    let app = start(backend).await;
    let ok = Signer::of(&app.token);
    let body = SEED_INFO;

    // Missing headers, each named.
    for (drop, name) in [("Signature", "Signature"), ("Timestamp", "Timestamp")] {
        let mut req = app
            .http
            .post(format!("{}{INFO}", app.base))
            .body(body.to_owned());
        for (h, v) in [
            ("Access-Key", ok.key.as_str()),
            ("Timestamp", "1"),
            ("Request-ID", "r1"),
            ("Signature", "00"),
        ] {
            if h != drop {
                req = req.header(h, v);
            }
        }
        let r = read_json(req.send().await.unwrap()).await;
        assert_refused(&r, "10001", name);
    }
    let r = read_json(
        app.http
            .post(format!("{}{INFO}", app.base))
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_refused(&r, "10001", "Access-Key");

    // Unknown key.
    let r = send(
        &app,
        INFO,
        body,
        &Signer {
            key: "sk_0000000000000000".into(),
            ..ok.clone()
        },
    )
    .await;
    assert_refused(&r, "10002", "AccessKey");
    // Wrong key: another tenant's key id with this secret.
    let wrong = Signer {
        key: split(&app.other).0,
        ..ok.clone()
    };
    let r = send(&app, INFO, body, &wrong).await;
    assert_refused(&r, "10003", "Signature");
    // Bad signature.
    let r = send(
        &app,
        INFO,
        body,
        &Signer {
            sig: Some("AB".repeat(32)),
            ..ok.clone()
        },
    )
    .await;
    assert_refused(&r, "10003", "Signature");
    let r = send(
        &app,
        INFO,
        body,
        &Signer {
            sig: Some("not hex".into()),
            ..ok.clone()
        },
    )
    .await;
    assert_refused(&r, "10003", "Signature");
    // Expired and future timestamps, and seconds instead of milliseconds.
    let r = send(
        &app,
        INFO,
        body,
        &Signer {
            ts: Some(now_ms() - 11 * 60 * 1000),
            ..ok.clone()
        },
    )
    .await;
    assert_refused(&r, "10004", "10 minutes old");
    let r = send(
        &app,
        INFO,
        body,
        &Signer {
            ts: Some(now_ms() + 11 * 60 * 1000),
            ..ok.clone()
        },
    )
    .await;
    assert_refused(&r, "10004", "future");
    let r = send(
        &app,
        INFO,
        body,
        &Signer {
            ts: Some(now_ms() / 1000),
            ..ok.clone()
        },
    )
    .await;
    assert_refused(&r, "10004", "Timestamp");
    // Replayed Request-ID: the first use passes auth, the second is refused.
    let once = Signer {
        rid: Some("fc61e3ac-cff8-4ca8-8bf6-f7a5f2331b74".into()),
        ..ok.clone()
    };
    let r = send(&app, INFO, body, &once).await;
    assert_refused(&r, "20006", "unknown batchCode");
    let r = send(&app, INFO, body, &once).await;
    assert_refused(&r, "10005", "fc61e3ac-cff8-4ca8-8bf6-f7a5f2331b74");
    // A refused signature does not burn the Request-ID.
    let fresh = Signer {
        rid: Some("burn-test".into()),
        ..ok.clone()
    };
    let r = send(
        &app,
        INFO,
        body,
        &Signer {
            sig: Some("00".into()),
            ..fresh.clone()
        },
    )
    .await;
    assert_refused(&r, "10003", "Signature");
    let r = send(&app, INFO, body, &fresh).await;
    assert_refused(&r, "20006", "unknown batchCode");
    // Unsupported Sign-Method.
    let r = send(
        &app,
        INFO,
        body,
        &Signer {
            method: Some("MD5"),
            ..ok.clone()
        },
    )
    .await;
    assert_refused(&r, "10006", "Sign-Method");
    // The unhyphenated spellings and lower-case hex work too.
    let ts = now_ms().to_string();
    let sig = signature(&ok.secret, &ts, "lower-1", &ok.key, body).to_lowercase();
    let r = send(
        &app,
        INFO,
        body,
        &Signer {
            hyphenated: false,
            method: None,
            ts: Some(ts.parse().unwrap()),
            rid: Some("lower-1".into()),
            sig: Some(sig),
            ..ok.clone()
        },
    )
    .await;
    assert_refused(&r, "20006", "unknown batchCode");
    // A revoked key.
    assert!(app.store.revoke_key(&ok.key).await.unwrap());
    let r = send(&app, INFO, body, &ok).await;
    assert_refused(&r, "10002", "AccessKey");
    app.stop().await;
}

fn item(n: usize) -> Value {
    json!({
        "iccid": iccid(n),
        "imsi": format!("46004{:010}", n),
        "ki": "6BE2053E8580B135CD43443380DB7111",
    })
}

fn gen_body(items: Vec<Value>) -> String {
    json!({ "configName": TEMPLATE, "metaDatas": items }).to_string()
}

async fn request_refusals(backend: Backend) {
    let app = start(backend).await;
    let s = Signer::of(&app.token);
    let r = send(&app, GENERATE, "{not json", &s).await;
    assert_refused(&r, "20001", "not valid JSON");
    let r = send(&app, GENERATE, "[1]", &s).await;
    assert_refused(&r, "20001", "JSON object");
    let r = send(
        &app,
        GENERATE,
        &json!({"metaDatas": [item(1)]}).to_string(),
        &s,
    )
    .await;
    assert_refused(&r, "20002", "configName is mandatory");
    let r = send(
        &app,
        GENERATE,
        &json!({"configName": TEMPLATE}).to_string(),
        &s,
    )
    .await;
    assert_refused(&r, "20002", "metaDatas is mandatory");
    let r = send(&app, GENERATE, &gen_body(vec![]), &s).await;
    assert_refused(&r, "20003", "1 to 200");
    let r = send(&app, GENERATE, &gen_body((0..201).map(item).collect()), &s).await;
    assert_refused(&r, "20003", "got 201");
    let r = send(
        &app,
        GENERATE,
        &json!({"configName": "nope", "metaDatas": [item(1)]}).to_string(),
        &s,
    )
    .await;
    assert_refused(&r, "20004", "'nope'");
    let r = send(
        &app,
        GENERATE,
        &json!({"configName": TEMPLATE, "encryptionMode": 2, "metaDatas": [item(1)]}).to_string(),
        &s,
    )
    .await;
    assert_refused(&r, "20005", "only 1 (plaintext)");
    let r = send(&app, INFO, "{}", &s).await;
    assert_refused(&r, "20002", "batchCode is mandatory");
    let r = send(&app, INFO, r#"{"batchCode":"B1"}"#, &s).await;
    assert_refused(&r, "20006", "B1");
    let r = send(&app, INFO, r#"{"batchCode":"'; drop table batches"}"#, &s).await;
    assert_refused(&r, "20006", "unknown batchCode");
    // Nothing was stored by any refusal.
    let (_, list) = app.get("/v1/batches").await;
    assert_eq!(list["data"], json!([]), "{list}");
    // An unknown path under the prefix: 404 in the envelope.
    let (status, b) = read_json(
        app.http
            .post(format!("{}/simlessly/api/v1/nope", app.base))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(
        (status, &b["code"], &b["success"]),
        (404, &json!("40400"), &json!(false))
    );
    // Last: the server answers an over-size body without reading it, then
    // closes that connection, so no request may follow on the same client.
    let huge = format!(r#"{{"configName":"{}"}}"#, "x".repeat(3 * 1024 * 1024));
    let r = send(&app, GENERATE, &huge, &s).await;
    assert_refused(&r, "20007", "exceeds");
    app.stop().await;
}

async fn item_failures_are_reported_per_item(backend: Backend) {
    let app = start(backend).await;
    let mut bad_iccid = item(2);
    bad_iccid["iccid"] = json!("123");
    let mut no_ki = item(3);
    no_ki.as_object_mut().unwrap().remove("ki");
    let mut pin = item(4);
    pin["pin1"] = json!("12");
    let code = generate(
        &app,
        &app.token,
        &gen_body(vec![item(1), bad_iccid, no_ki, pin, item(1)]),
    )
    .await;
    let obj = wait_complete(&app, &app.token, &code).await;
    let info = &obj["batchTaskInfo"];
    assert_eq!(
        (&info["total"], &info["succeedNum"], &info["failedNum"]),
        (&json!(5), &json!(1), &json!(4))
    );
    let r = obj["results"].as_array().unwrap();
    let iccids: Vec<&str> = r.iter().map(|x| x["iccid"].as_str().unwrap()).collect();
    assert_eq!(
        iccids,
        [iccid(1).as_str(), "123", &iccid(3), &iccid(4), &iccid(1)],
        "request order"
    );
    assert_eq!(r[0]["success"], true);
    assert!(is_ac(r[0]["activationCode"].as_str().unwrap(), false));
    let reason = |i: usize| r[i]["errorReason"].as_str().unwrap().to_owned();
    assert!(reason(1).contains("iccid"), "{}", reason(1));
    assert_eq!(reason(2), "ki is mandatory");
    assert!(reason(3).contains("pin1"), "{}", reason(3));
    assert!(reason(4).contains("already existsById"), "{}", reason(4));
    for failed in &r[1..] {
        assert_eq!(failed["success"], false);
        assert_eq!(failed["errorReson"], failed["errorReason"]);
        assert!(failed["errorCode"].is_string());
    }
    app.stop().await;
}

async fn wrong_tenant_sees_nothing(backend: Backend) {
    let app = start(backend).await;
    let code = generate(&app, &app.token, &gen_body(vec![item(1)])).await;
    wait_complete(&app, &app.token, &code).await;
    let body = json!({ "batchCode": code }).to_string();
    let r = send(&app, INFO, &body, &Signer::of(&app.other)).await;
    assert_refused(&r, "20006", &code);
    // The other tenant may generate the same ICCID: tenants are apart.
    let theirs = generate(&app, &app.other, &gen_body(vec![item(1)])).await;
    let obj = wait_complete(&app, &app.other, &theirs).await;
    assert_eq!(obj["results"][0]["success"], true, "{obj}");
    app.stop().await;
}

async fn result_links(backend: Backend) {
    let app = start(backend).await;
    let code = generate(&app, &app.token, &gen_body(vec![item(1), item(2)])).await;
    let obj = wait_complete(&app, &app.token, &code).await;
    let url = obj["batchTaskInfo"]["resultUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    let rows = xlsx_rows(&reqwest::get(&url).await.unwrap().bytes().await.unwrap());
    assert_eq!(rows.len(), 3);
    assert_eq!(
        (rows[1][1].as_str(), rows[2][1].as_str()),
        (iccid(1).as_str(), iccid(2).as_str())
    );

    let refused = |r: (u16, Value), needle: &str| {
        assert_eq!(r.0, 403, "{}", r.1);
        assert_eq!(
            (&r.1["code"], &r.1["success"]),
            (&json!("30001"), &json!(false))
        );
        assert!(r.1["msg"].as_str().unwrap().contains(needle), "{}", r.1);
    };
    // Tampered signature, expiry or path.
    let tampered = format!("{}0", &url[..url.len() - 1]);
    let tampered = if tampered == url {
        format!("{}1", &url[..url.len() - 1])
    } else {
        tampered
    };
    refused(
        read_json(reqwest::get(&tampered).await.unwrap()).await,
        "signature",
    );
    let (head, tail) = url.split_once("expires=").unwrap();
    let later = format!("{head}expires=9{tail}");
    refused(
        read_json(reqwest::get(&later).await.unwrap()).await,
        "signature",
    );
    let other_tenant = url.replacen("/results/", "/results/x", 1);
    refused(
        read_json(reqwest::get(&other_tenant).await.unwrap()).await,
        "signature",
    );
    let bare = url.split('?').next().unwrap();
    refused(
        read_json(reqwest::get(bare).await.unwrap()).await,
        "signature",
    );
    // A correctly signed link whose time has passed.
    let key = app
        .store
        .server_secret(simbatch_api::signed_url::KEY_NAME)
        .await
        .unwrap();
    let signer = simbatch_api::signed_url::UrlSigner::new(&key);
    let path = bare.trim_start_matches(&app.base);
    let past = simbatch_api::signed_url::now_secs() - 1;
    let expired = format!("{}{}", app.base, signer.sign(path, past));
    refused(
        read_json(reqwest::get(&expired).await.unwrap()).await,
        "expired",
    );
    let valid = format!("{}{}", app.base, signer.sign(path, past + 100));
    assert_eq!(reqwest::get(&valid).await.unwrap().status(), 200);
    app.stop().await;
}

async fn concurrent_clients(backend: Backend) {
    let app = std::sync::Arc::new(start(backend).await);
    let mut tasks = Vec::new();
    for c in 0..20 {
        let app = app.clone();
        tasks.push(tokio::spawn(async move {
            let items: Vec<Value> = (0..10).map(|i| item(c * 10 + i)).collect();
            let code = generate(&app, &app.token, &gen_body(items)).await;
            (c, code)
        }));
    }
    let mut codes = HashSet::new();
    let mut acs = HashSet::new();
    for t in tasks {
        let (c, code) = t.await.unwrap();
        assert!(codes.insert(code.clone()), "duplicate batch code {code}");
        let obj = wait_complete(&app, &app.token, &code).await;
        assert_eq!(obj["batchTaskInfo"]["succeedNum"], 10, "{obj}");
        let results = obj["results"].as_array().unwrap();
        let got: Vec<String> = results
            .iter()
            .map(|r| r["iccid"].as_str().unwrap().to_owned())
            .collect();
        let want: Vec<String> = (0..10).map(|i| iccid(c * 10 + i)).collect();
        assert_eq!(got, want, "client {c}: its own items, in order");
        for r in results {
            assert!(acs.insert(r["activationCode"].as_str().unwrap().to_owned()));
        }
    }
    assert_eq!((codes.len(), acs.len()), (20, 200));
    let (_, sims) = app.get("/v1/sims?limit=1000").await;
    assert_eq!(
        sims["data"].as_array().unwrap().len(),
        200,
        "no lost or extra SIMs"
    );
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}

async fn concurrent_replays_are_refused_once(backend: Backend) {
    let app = std::sync::Arc::new(start(backend).await);
    let body = gen_body(vec![item(1)]);
    let fixed = Signer {
        ts: Some(now_ms()),
        rid: Some("same-request".into()),
        ..Signer::of(&app.token)
    };
    let mut tasks = Vec::new();
    for _ in 0..20 {
        let (app, body, s) = (app.clone(), body.clone(), fixed.clone());
        tasks.push(tokio::spawn(async move {
            send(&app, GENERATE, &body, &s).await
        }));
    }
    let mut accepted = 0;
    for t in tasks {
        let r = t.await.unwrap();
        if r.1["success"] == true {
            accepted += 1;
        } else {
            assert_refused(&r, "10005", "same-request");
        }
    }
    assert_eq!(
        accepted, 1,
        "exactly one of 20 identical requests is accepted"
    );
    let (_, list) = app.get("/v1/batches").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    std::sync::Arc::into_inner(app).unwrap().stop().await;
}
