//! eSIM profiles through real HTTP, on SQLite and PostgreSQL: the SGP.22
//! lifecycle driven by ES2+ (`/gsma/rsp2/es2plus/`), `GET /v1/profiles/{iccid}`,
//! its QR code, and `expireTime` enforced by the sweeper.

#[macro_use]
mod common;

use common::{iccid, read, Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

both_backends!(
    es2plus_transport_rules,
    es2plus_download_order,
    es2plus_confirm_order,
    es2plus_release_profile,
    es2plus_cancel_order,
    es2plus_repeated_calls_execute_once,
    profile_read_and_qr_code,
    expired_profiles_become_unavailable,
);

const EID: &str = "89049032123451234512345678901235";
const EID2: &str = "89049032123451234512345678901332";
const PROTOCOL: &str = "gsma/rsp/v2.2.0";
const TEMPLATE: &str = "tpl";

/// A start with a template (a GSMA TS.48 test profile from shared/).
async fn start(b: Backend) -> TestApp {
    let app = TestApp::start(b).await;
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../../shared/profile-templates/TS48v2_SAIP2.3_BERTLV.der"
    );
    let der = std::fs::read(path).unwrap_or_else(|e| panic!("test template {path}: {e}"));
    app.store.add_template(TEMPLATE, &der).await.unwrap();
    // A worker reads the template names at the start of each round, before it
    // claims: let a round that began before the template existed finish, so
    // it cannot claim the first batch with a stale list.
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    app
}

/// Generate profiles in one batch and wait for it; `extra` is merged into each item.
async fn generate(app: &TestApp, ns: &[usize], extra: Value) {
    let items = ns
        .iter()
        .map(|n| {
            let mut item = json!({
                "iccid": iccid(*n),
                "imsi": format!("00101{n:010}"),
                "ki": "000102030405060708090a0b0c0d0e0f",
                "template": TEMPLATE,
            });
            for (k, v) in extra.as_object().unwrap() {
                item[k] = v.clone();
            }
            item
        })
        .collect();
    let (s, b) = app.submit(Some("generate_activation_code"), items).await;
    assert_eq!(s, 202, "{b}");
    let id = b["id"].as_str().unwrap().to_owned();
    let b = app.wait_batch(&id).await;
    if b["status"] != "COMPLETED" {
        let (_, items) = app.get(&format!("/v1/batches/{id}/items")).await;
        panic!("generate failed: {b}\n{items}");
    }
}

/// AVAILABLE profiles, ready to be ordered.
async fn stock(app: &TestApp, ns: &[usize]) {
    generate(app, ns, json!({"profile_state": "AVAILABLE"})).await;
}

fn header(call: &str) -> Value {
    json!({"functionRequesterIdentifier": "bss.operator.example", "functionCallIdentifier": call})
}

/// Call an ES2+ function as `token`; an executed function answers 200 JSON
/// with the protocol header echoed. Without a `header`, the call gets one
/// with a new functionCallIdentifier.
async fn es2_as(app: &TestApp, token: &str, function: &str, body: Value) -> Value {
    let text = es2_text(app, token, function, body).await;
    serde_json::from_str(&text).unwrap()
}

/// As [`es2_as`], the answer's exact text.
async fn es2_text(app: &TestApp, token: &str, function: &str, mut body: Value) -> String {
    if body.get("header").is_none() {
        body["header"] = header(&uuid::Uuid::new_v4().to_string());
    }
    let r = app
        .req_as(
            token,
            Method::POST,
            &format!("/gsma/rsp2/es2plus/{function}"),
        )
        .header("X-Admin-Protocol", PROTOCOL)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-admin-protocol"], PROTOCOL);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    text
}

async fn es2(app: &TestApp, function: &str, body: Value) -> Value {
    es2_as(app, &app.token, function, body).await
}

fn assert_success(out: &Value) {
    assert_eq!(
        out["header"]["functionExecutionStatus"],
        json!({"status": "Executed-Success"}),
        "{out}"
    );
}

/// Assert a `Failed` answer with these codes; returns `statusCodeData`.
fn assert_failed(out: &Value, subject: &str, reason: &str) -> Value {
    let st = &out["header"]["functionExecutionStatus"];
    assert_eq!(st["status"], "Failed", "{out}");
    let data = &st["statusCodeData"];
    assert_eq!(
        (data["subjectCode"].as_str(), data["reasonCode"].as_str()),
        (Some(subject), Some(reason)),
        "{out}"
    );
    assert!(data["message"].as_str().is_some_and(|m| !m.is_empty()));
    data.clone()
}

async fn profile(app: &TestApp, n: usize) -> Value {
    let (s, p) = app.get(&format!("/v1/profiles/{}", iccid(n))).await;
    assert_eq!(s, 200, "{p}");
    p
}

async fn es2_raw(
    app: &TestApp,
    protocol: Option<&str>,
    token: Option<&str>,
    body: &str,
) -> (u16, Value) {
    let mut r = app
        .http
        .post(format!("{}/gsma/rsp2/es2plus/downloadOrder", app.base))
        .header("content-type", "application/json")
        .body(body.to_owned());
    if let Some(p) = protocol {
        r = r.header("X-Admin-Protocol", p);
    }
    if let Some(t) = token {
        r = r.header("Authorization", format!("Bearer {t}"));
    }
    read(r.send().await.unwrap()).await
}

async fn es2plus_transport_rules(b: Backend) {
    let app = start(b).await;
    stock(&app, &[1]).await;
    let body = json!({"header": header("c"), "iccid": iccid(1)}).to_string();
    // X-Admin-Protocol is required, and must name an SGP.22 v2 version.
    let (s, p) = es2_raw(&app, None, Some(&app.token), &body).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (400, Some("admin_protocol_invalid")),
        "{p}"
    );
    assert!(p["detail"].as_str().unwrap().contains("X-Admin-Protocol"));
    let (s, p) = es2_raw(&app, Some("gsma/rsp/v3.0.0"), Some(&app.token), &body).await;
    assert_eq!(
        (s, p["code"].as_str()),
        (400, Some("admin_protocol_invalid"))
    );
    // The tenant API key is required (Bearer here, X-API-Key elsewhere).
    let (s, p) = es2_raw(&app, Some(PROTOCOL), None, &body).await;
    assert_eq!((s, p["code"].as_str()), (401, Some("unauthorized")));
    let (s, _) = es2_raw(&app, Some(PROTOCOL), Some("sk_0000.bad"), &body).await;
    assert_eq!(s, 401);
    // A body that is not a JSON object.
    let (s, p) = es2_raw(&app, Some(PROTOCOL), Some(&app.token), "{not json").await;
    assert_eq!((s, p["code"].as_str()), (400, Some("malformed_json")));
    let (s, _) = es2_raw(&app, Some(PROTOCOL), Some(&app.token), "[1]").await;
    assert_eq!(s, 400);
    // The header and its two identifiers are required.
    let out = es2(
        &app,
        "downloadOrder",
        json!({"header": null, "iccid": iccid(1)}),
    )
    .await;
    assert_failed(&out, "1.1", "2.2");
    let out = es2(
        &app,
        "downloadOrder",
        json!({"header": {"functionRequesterIdentifier": "x"}, "iccid": iccid(1)}),
    )
    .await;
    let d = assert_failed(&out, "1.1", "2.2");
    assert_eq!(d["subjectIdentifier"], "functionCallIdentifier");
    let out = es2(
        &app,
        "downloadOrder",
        json!({"header": {"functionRequesterIdentifier": 7, "functionCallIdentifier": "c"}, "iccid": iccid(1)}),
    )
    .await;
    assert_failed(&out, "1.1", "2.1");
    // Unknown fields are refused by name; nothing changed through all of this.
    let out = es2(
        &app,
        "downloadOrder",
        json!({"iccid": iccid(1), "eidd": EID}),
    )
    .await;
    assert_eq!(
        assert_failed(&out, "8.2", "2.1")["subjectIdentifier"],
        "eidd"
    );
    assert_eq!(profile(&app, 1).await["state"], "AVAILABLE");
    // Unknown function: 404 problem.
    let r = app
        .req(
            Method::POST,
            "/gsma/rsp2/es2plus/handleDownloadProgressInfo",
        )
        .header("X-Admin-Protocol", PROTOCOL)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 404);
    app.stop().await;
}

async fn es2plus_download_order(b: Backend) {
    let app = start(b).await;
    stock(&app, &[1, 2, 3]).await;
    generate(&app, &[9], json!({})).await; // RELEASED at once

    // By ICCID, without an EID: ALLOCATED.
    let out = es2(&app, "downloadOrder", json!({"iccid": iccid(1)})).await;
    assert_success(&out);
    assert_eq!(out["iccid"], iccid(1));
    assert_eq!(profile(&app, 1).await["state"], "ALLOCATED");
    // With an EID: LINKED to it.
    let out = es2(
        &app,
        "downloadOrder",
        json!({"iccid": iccid(2), "eid": EID}),
    )
    .await;
    assert_success(&out);
    let p = profile(&app, 2).await;
    assert_eq!(
        (p["state"].as_str(), p["eid"].as_str()),
        (Some("LINKED"), Some(EID))
    );
    assert_eq!(
        p["activation_code"],
        Value::Null,
        "no code before ConfirmOrder"
    );
    // By profile type: the SM-DP+ picks an AVAILABLE profile of that type.
    let out = es2(&app, "downloadOrder", json!({"profileType": TEMPLATE})).await;
    assert_success(&out);
    assert_eq!(out["iccid"], iccid(3));
    assert_eq!(profile(&app, 3).await["state"], "ALLOCATED");

    // Failures.
    let out = es2(&app, "downloadOrder", json!({"profileType": TEMPLATE})).await;
    assert_failed(&out, "8.2.5", "3.7"); // none AVAILABLE any more
    let out = es2(
        &app,
        "downloadOrder",
        json!({"profileType": "no-such-type"}),
    )
    .await;
    assert_failed(&out, "8.2.5", "3.9");
    let out = es2(&app, "downloadOrder", json!({"iccid": iccid(1)})).await;
    let d = assert_failed(&out, "8.2.1", "3.3"); // not AVAILABLE: already ordered
    assert_eq!(d["subjectIdentifier"], iccid(1));
    let out = es2(&app, "downloadOrder", json!({"iccid": iccid(9)})).await;
    assert_failed(&out, "8.2.1", "3.3"); // RELEASED
    let out = es2(&app, "downloadOrder", json!({"iccid": iccid(77)})).await;
    assert_eq!(
        assert_failed(&out, "8.2.1", "3.9")["subjectIdentifier"],
        iccid(77)
    );
    let out = es2(&app, "downloadOrder", json!({"iccid": "12ab"})).await;
    assert_failed(&out, "8.2.1", "2.1");
    let out = es2(&app, "downloadOrder", json!({"eid": EID})).await;
    assert_failed(&out, "8.2.5", "2.3"); // neither iccid nor profileType
    let out = es2(
        &app,
        "downloadOrder",
        json!({"iccid": iccid(1), "eid": "8904903212345123451234567890123"}),
    )
    .await;
    assert_failed(&out, "8.1.1", "2.1");
    stock(&app, &[4]).await;
    let out = es2(
        &app,
        "downloadOrder",
        json!({"iccid": iccid(4), "profileType": "other"}),
    )
    .await;
    assert_failed(&out, "8.2.5", "3.10");
    // Another tenant: the ICCID is unknown to it, and the profile is untouched.
    let out = es2_as(
        &app,
        &app.other,
        "downloadOrder",
        json!({"iccid": iccid(4)}),
    )
    .await;
    assert_failed(&out, "8.2.1", "3.9");
    let out = es2_as(
        &app,
        &app.other,
        "downloadOrder",
        json!({"profileType": TEMPLATE}),
    )
    .await;
    assert_failed(&out, "8.2.5", "3.9");
    assert_eq!(profile(&app, 4).await["state"], "AVAILABLE");
    app.stop().await;
}

async fn es2plus_confirm_order(b: Backend) {
    let app = start(b).await;
    stock(&app, &[1, 2, 3]).await;
    generate(&app, &[9], json!({})).await;
    for (n, eid) in [(1, Some(EID)), (2, None), (3, Some(EID))] {
        let mut body = json!({"iccid": iccid(n)});
        if let Some(e) = eid {
            body["eid"] = json!(e);
        }
        assert_success(&es2(&app, "downloadOrder", body).await);
    }
    let taken = profile(&app, 9).await["matching_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let before = profile(&app, 1).await;

    // Failures first: nothing changes.
    let confirm = |n: usize, extra: Value| {
        let mut body = json!({"iccid": iccid(n), "releaseFlag": true});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    let out = es2(&app, "confirmOrder", confirm(1, json!({"eid": EID2}))).await;
    assert_eq!(
        assert_failed(&out, "8.1.1", "3.10")["subjectIdentifier"],
        EID2
    );
    let out = es2(
        &app,
        "confirmOrder",
        confirm(1, json!({"matchingId": taken})),
    )
    .await;
    assert_failed(&out, "8.2.6", "3.3");
    let out = es2(
        &app,
        "confirmOrder",
        confirm(1, json!({"matchingId": "lower-case"})),
    )
    .await;
    assert_failed(&out, "8.2.6", "2.1");
    let out = es2(&app, "confirmOrder", confirm(9, json!({}))).await;
    assert_failed(&out, "8.2.1", "3.5"); // RELEASED already
    let out = es2(&app, "confirmOrder", confirm(55, json!({}))).await;
    assert_failed(&out, "8.2.1", "3.9");
    let out = es2(&app, "confirmOrder", json!({"iccid": iccid(1)})).await;
    assert_eq!(
        assert_failed(&out, "8.2", "2.2")["subjectIdentifier"],
        "releaseFlag"
    );
    let out = es2(
        &app,
        "confirmOrder",
        json!({"iccid": iccid(1), "releaseFlag": "yes"}),
    )
    .await;
    assert_failed(&out, "8.2", "2.1");
    let out = es2(&app, "confirmOrder", json!({"releaseFlag": true})).await;
    assert_failed(&out, "8.2.1", "2.2");
    let out = es2(
        &app,
        "confirmOrder",
        confirm(1, json!({"smdsAddress": "smds.example.com"})),
    )
    .await;
    assert_failed(&out, "8.9", "5.1");
    let out = es2_as(&app, &app.other, "confirmOrder", confirm(1, json!({}))).await;
    assert_failed(&out, "8.2.1", "3.9");
    assert_eq!(profile(&app, 1).await, before, "refusals change nothing");

    // Linked profile, operator's matching ID and a confirmation code, released at once.
    const CC: &str = "CC-55813";
    let out = es2(
        &app,
        "confirmOrder",
        confirm(
            1,
            json!({"eid": EID, "matchingId": "OP-0001-ABCD", "confirmationCode": CC}),
        ),
    )
    .await;
    assert_success(&out);
    assert_eq!(out["matchingId"], "OP-0001-ABCD");
    assert_eq!(out["eid"], EID);
    assert_eq!(out["smdpAddress"], "smdp.simbatch.local");
    assert!(!out.to_string().contains(CC));
    let p = profile(&app, 1).await;
    assert_eq!(p["state"], "RELEASED");
    assert_eq!(
        p["activation_code"],
        "1$smdp.simbatch.local$OP-0001-ABCD$$1"
    );
    assert_eq!(p["confirmation_code_required"], true);
    // Allocated profile, no EID, the SM-DP+'s own matching ID, not released.
    let out = es2(
        &app,
        "confirmOrder",
        json!({"iccid": iccid(2), "releaseFlag": false}),
    )
    .await;
    assert_success(&out);
    assert!(out.get("eid").is_none());
    let p = profile(&app, 2).await;
    assert_eq!(p["state"], "CONFIRMED");
    assert_eq!(p["matching_id"], out["matchingId"]);
    assert_eq!(
        p["activation_code"].as_str().unwrap(),
        format!(
            "1$smdp.simbatch.local${}",
            out["matchingId"].as_str().unwrap()
        )
    );
    // The matching ID an operator chose is now in use for everyone.
    let out = es2(
        &app,
        "confirmOrder",
        confirm(3, json!({"matchingId": "OP-0001-ABCD"})),
    )
    .await;
    assert_failed(&out, "8.2.6", "3.3");

    // History and events record each step; the code never shows.
    let (s, h) = app.get(&format!("/v1/sims/{}/history", iccid(1))).await;
    assert_eq!(s, 200);
    let ops: Vec<_> = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["operation"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        ops,
        [
            "generate_activation_code",
            "es2plus.download_order",
            "es2plus.confirm_order"
        ]
    );
    let (_, ev) = app.get("/v1/events?limit=1000").await;
    let changes: Vec<_> = ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "profile.status_changed" && e["data"]["iccid"] == iccid(1))
        .map(|e| (e["data"]["from"].clone(), e["data"]["to"].clone()))
        .collect();
    assert_eq!(
        changes,
        [
            (json!("AVAILABLE"), json!("LINKED")),
            (json!("LINKED"), json!("RELEASED"))
        ]
    );
    assert!(!ev.to_string().contains(CC));
    app.stop().await;
}

async fn es2plus_release_profile(b: Backend) {
    let app = start(b).await;
    stock(&app, &[1, 2]).await;
    assert_success(&es2(&app, "downloadOrder", json!({"iccid": iccid(1)})).await);
    assert_success(
        &es2(
            &app,
            "confirmOrder",
            json!({"iccid": iccid(1), "releaseFlag": false}),
        )
        .await,
    );
    let out = es2_as(
        &app,
        &app.other,
        "releaseProfile",
        json!({"iccid": iccid(1)}),
    )
    .await;
    assert_failed(&out, "8.2.1", "3.9");
    assert_eq!(profile(&app, 1).await["state"], "CONFIRMED");
    let out = es2(&app, "releaseProfile", json!({"iccid": iccid(1)})).await;
    assert_success(&out);
    assert_eq!(
        out.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["header"],
        "ReleaseProfile answers only the header"
    );
    assert_eq!(profile(&app, 1).await["state"], "RELEASED");
    let out = es2(&app, "releaseProfile", json!({"iccid": iccid(1)})).await;
    assert_failed(&out, "8.2.1", "3.5"); // already RELEASED
    let out = es2(&app, "releaseProfile", json!({"iccid": iccid(2)})).await;
    assert_failed(&out, "8.2.1", "3.5"); // AVAILABLE: not ordered
    let out = es2(&app, "releaseProfile", json!({"iccid": iccid(3)})).await;
    assert_failed(&out, "8.2.1", "3.9");
    let out = es2(&app, "releaseProfile", json!({})).await;
    assert_failed(&out, "8.2.1", "2.2");
    app.stop().await;
}

async fn es2plus_cancel_order(b: Backend) {
    let app = start(b).await;
    stock(&app, &[1, 2, 3]).await;
    for n in [1, 2] {
        assert_success(
            &es2(
                &app,
                "downloadOrder",
                json!({"iccid": iccid(n), "eid": EID}),
            )
            .await,
        );
    }
    let out = es2(
        &app,
        "confirmOrder",
        json!({"iccid": iccid(1), "releaseFlag": true, "matchingId": "CANCEL-ME-1", "confirmationCode": "1234"}),
    )
    .await;
    assert_success(&out);
    let cancel = |n: usize, extra: Value| {
        let mut body = json!({"iccid": iccid(n), "finalProfileStatusIndicator": "Available"});
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        body
    };
    // Failures: nothing changes.
    let out = es2(&app, "cancelOrder", cancel(1, json!({"eid": EID2}))).await;
    assert_failed(&out, "8.1.1", "3.10");
    let out = es2(
        &app,
        "cancelOrder",
        cancel(1, json!({"matchingId": "OTHER-MID"})),
    )
    .await;
    assert_failed(&out, "8.2.6", "3.10");
    let out = es2(
        &app,
        "cancelOrder",
        cancel(1, json!({"finalProfileStatusIndicator": "Gone"})),
    )
    .await;
    assert_failed(&out, "8.2", "2.1");
    let out = es2(&app, "cancelOrder", json!({"iccid": iccid(1)})).await;
    assert_failed(&out, "8.2", "2.2");
    let out = es2(&app, "cancelOrder", cancel(3, json!({}))).await;
    assert_failed(&out, "8.2.1", "3.5"); // AVAILABLE: nothing to cancel
    let out = es2(&app, "cancelOrder", cancel(99, json!({}))).await;
    assert_failed(&out, "8.2.1", "3.9");
    let out = es2_as(&app, &app.other, "cancelOrder", cancel(1, json!({}))).await;
    assert_failed(&out, "8.2.1", "3.9");
    assert_eq!(profile(&app, 1).await["state"], "RELEASED");

    // Back to AVAILABLE: a fresh matching ID, no EID, no confirmation code.
    let out = es2(
        &app,
        "cancelOrder",
        cancel(1, json!({"eid": EID, "matchingId": "CANCEL-ME-1"})),
    )
    .await;
    assert_success(&out);
    let p = profile(&app, 1).await;
    assert_eq!(p["state"], "AVAILABLE");
    assert_eq!(p["eid"], Value::Null);
    assert_eq!(p["confirmation_code_required"], false);
    assert_ne!(p["matching_id"], "CANCEL-ME-1");
    // ... so it can be ordered again, and its old matching ID is free again.
    assert_success(&es2(&app, "downloadOrder", json!({"iccid": iccid(1)})).await);
    // Unavailable: withdrawn for good.
    assert_success(
        &es2(
            &app,
            "cancelOrder",
            cancel(2, json!({"finalProfileStatusIndicator": "Unavailable"})),
        )
        .await,
    );
    assert_eq!(profile(&app, 2).await["state"], "UNAVAILABLE");
    let out = es2(&app, "downloadOrder", json!({"iccid": iccid(2)})).await;
    assert_failed(&out, "8.2.1", "3.3");
    app.stop().await;
}

/// The states of profiles 1 to 5.
async fn states(app: &TestApp) -> Vec<String> {
    let mut v = Vec::new();
    for n in 1..=5 {
        v.push(profile(app, n).await["state"].as_str().unwrap().to_owned());
    }
    v
}

/// A call repeated with the same functionRequesterIdentifier and
/// functionCallIdentifier is executed once and answered the same; reused
/// identifiers with other fields are refused; other requesters and tenants
/// have their own identifiers; concurrent repeats run once.
async fn es2plus_repeated_calls_execute_once(b: Backend) {
    let app = start(b).await;
    stock(&app, &[1, 2, 3, 4, 5]).await;
    let order = |call: &str, requester: &str| {
        json!({
            "header": {"functionRequesterIdentifier": requester, "functionCallIdentifier": call},
            "profileType": TEMPLATE,
        })
    };
    let bss = "bss.operator.example";
    // By profile type: executed twice, it would take a second profile.
    let first = es2_text(&app, &app.token, "downloadOrder", order("dup-1", bss)).await;
    let again = es2_text(&app, &app.token, "downloadOrder", order("dup-1", bss)).await;
    assert_eq!(first, again, "the first answer, byte for byte");
    let out: Value = serde_json::from_str(&first).unwrap();
    assert_success(&out);
    assert_eq!(out["iccid"], iccid(1));
    assert_eq!(
        states(&app).await,
        [
            "ALLOCATED",
            "AVAILABLE",
            "AVAILABLE",
            "AVAILABLE",
            "AVAILABLE"
        ]
    );
    // The same identifiers with other fields, or for another function: refused.
    let mut other = order("dup-1", bss);
    other["profileType"] = json!("other");
    let out = es2(&app, "downloadOrder", other).await;
    let d = assert_failed(&out, "1.1", "3.3");
    assert_eq!(d["subjectIdentifier"], "functionCallIdentifier");
    let out = es2(
        &app,
        "releaseProfile",
        json!({"header": header("dup-1"), "iccid": iccid(1)}),
    )
    .await;
    assert_failed(&out, "1.1", "3.3");
    // Field order does not make another call.
    let reordered = r#"{"profileType":"tpl","header":{"functionCallIdentifier":"dup-1","functionRequesterIdentifier":"bss.operator.example"}}"#;
    let out = es2(
        &app,
        "downloadOrder",
        serde_json::from_str(reordered).unwrap(),
    )
    .await;
    assert_eq!(out, serde_json::from_str::<Value>(&first).unwrap());
    // Another requester, or another tenant, with the same call identifier: executed.
    let out = es2(&app, "downloadOrder", order("dup-1", "bss.second.example")).await;
    assert_eq!(out["iccid"], iccid(2));
    let out = es2_as(&app, &app.other, "downloadOrder", order("dup-1", bss)).await;
    assert_failed(&out, "8.2.5", "3.9"); // the other tenant has no such profiles
                                         // A failed execution is answered the same when repeated.
    let unknown = json!({"header": header("dup-2"), "iccid": iccid(77)});
    let f1 = es2_text(&app, &app.token, "releaseProfile", unknown.clone()).await;
    let f2 = es2_text(&app, &app.token, "releaseProfile", unknown).await;
    assert_eq!(f1, f2);
    assert_failed(&serde_json::from_str(&f1).unwrap(), "8.2.1", "3.9");
    // Concurrent repeats: one execution, one answer.
    let calls = (0..6).map(|_| es2_text(&app, &app.token, "downloadOrder", order("dup-3", bss)));
    let answers = futures::future::join_all(calls).await;
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "{answers:?}");
    let out: Value = serde_json::from_str(&answers[0]).unwrap();
    assert_eq!(out["iccid"], iccid(3));
    assert_eq!(
        states(&app).await,
        [
            "ALLOCATED",
            "ALLOCATED",
            "ALLOCATED",
            "AVAILABLE",
            "AVAILABLE"
        ]
    );
    // Each execution is one history entry: the repeats left none.
    let (_, h) = app.get(&format!("/v1/sims/{}/history", iccid(3))).await;
    let orders = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["operation"] == "es2plus.download_order")
        .count();
    assert_eq!(orders, 1, "{h}");
    app.stop().await;
}

/// Decode a QR code from a greyscale PNG.
fn decode_qr(png_bytes: &[u8]) -> String {
    let decoder = png::Decoder::new(std::io::Cursor::new(png_bytes));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!(info.color_type, png::ColorType::Grayscale);
    let (w, h) = (info.width as usize, info.height as usize);
    let mut img = rqrr::PreparedImage::prepare_from_greyscale(w, h, |x, y| buf[y * w + x]);
    let grids = img.detect_grids();
    assert_eq!(grids.len(), 1, "one QR code in the image");
    grids[0].decode().unwrap().1
}

async fn profile_read_and_qr_code(b: Backend) {
    let app = start(b).await;
    const KI: &str = "465b5ce8b199b49faa5f0a2ee238a6bc";
    const CC: &str = "9911";
    generate(
        &app,
        &[1],
        json!({"cc": CC, "ki": KI, "expire_time": "2031-05-06 07:08:09"}),
    )
    .await;
    stock(&app, &[2]).await;

    let p = profile(&app, 1).await;
    assert_eq!(p["iccid"], iccid(1));
    assert_eq!(p["state"], "RELEASED");
    assert_eq!(p["template"], TEMPLATE);
    assert_eq!(p["smdp_address"], "smdp.simbatch.local");
    assert_eq!(p["confirmation_code_required"], true);
    assert_eq!(p["expires_at"], "2031-05-06T07:08:09Z");
    assert!(p["created_at"].as_str().unwrap().contains('T'));
    let ac = p["activation_code"].as_str().unwrap().to_owned();
    assert_eq!(
        ac,
        format!(
            "1$smdp.simbatch.local${}$$1",
            p["matching_id"].as_str().unwrap()
        )
    );
    let text = p.to_string().to_lowercase();
    assert!(
        !text.contains(CC)
            && !text.contains(KI)
            && !text.contains("cc_hash")
            && !text.contains("\"ki"),
        "{p}"
    );

    // The QR code: a PNG that decodes to LPA: + the activation code.
    let r = app
        .req(Method::GET, &format!("/v1/profiles/{}/qr.png", iccid(1)))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "image/png");
    let png_bytes = r.bytes().await.unwrap();
    assert_eq!(&png_bytes[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png_bytes.len() > 100 && png_bytes.len() < 64 * 1024,
        "{}",
        png_bytes.len()
    );
    assert_eq!(decode_qr(&png_bytes), format!("LPA:{ac}"));

    // No code before the order is confirmed.
    let (s, e) = app.get(&format!("/v1/profiles/{}/qr.png", iccid(2))).await;
    assert_eq!((s, e["code"].as_str()), (409, Some("conflict")), "{e}");
    assert!(e["detail"].as_str().unwrap().contains("AVAILABLE"));
    // Other tenants, unknown ICCIDs, no key.
    for path in [
        format!("/v1/profiles/{}", iccid(1)),
        format!("/v1/profiles/{}/qr.png", iccid(1)),
    ] {
        let (s, e) = read(
            app.req_as(&app.other, Method::GET, &path)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!((s, e["code"].as_str()), (404, Some("not_found")), "{path}");
        let (s, _) = read(
            app.http
                .get(format!("{}{path}", app.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 401);
    }
    for path in [
        format!("/v1/profiles/{}", iccid(3)),
        "/v1/profiles/x'--/qr.png".to_owned(),
    ] {
        assert_eq!(app.get(&path).await.0, 404, "{path}");
    }
    app.stop().await;
}

async fn expired_profiles_become_unavailable(b: Backend) {
    let app = start(b).await;
    let past = "2020-02-03 04:05:06";
    generate(&app, &[1], json!({"expire_time": past})).await;
    generate(
        &app,
        &[2],
        json!({"expire_time": past, "profile_state": "AVAILABLE"}),
    )
    .await;
    generate(&app, &[3], json!({"expire_time": "2999-01-01 00:00:00"})).await;
    generate(&app, &[4], json!({})).await;
    generate(
        &app,
        &[5],
        json!({"expire_time": past, "profile_state": "AVAILABLE"}),
    )
    .await;
    // 5 was ordered and cancelled for good before the sweep: it is not unused any more.
    assert_success(&es2(&app, "downloadOrder", json!({"iccid": iccid(5)})).await);
    assert_success(
        &es2(
            &app,
            "cancelOrder",
            json!({"iccid": iccid(5), "finalProfileStatusIndicator": "Unavailable"}),
        )
        .await,
    );

    let swept = simbatch_engine::sweeper::sweep_once(app.store.as_ref(), &Default::default())
        .await
        .unwrap();
    assert!(swept >= 2, "{swept}");
    for (n, want) in [
        (1, "UNAVAILABLE"),
        (2, "UNAVAILABLE"),
        (3, "RELEASED"),
        (4, "RELEASED"),
        (5, "UNAVAILABLE"),
    ] {
        assert_eq!(profile(&app, n).await["state"], want, "profile {n}");
    }
    let (_, ev) = app.get("/v1/events?limit=1000").await;
    let mut expired: Vec<_> = ev["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| {
            e["type"] == "profile.status_changed" && e["data"]["operation"] == "profile.expired"
        })
        .map(|e| {
            (
                e["data"]["iccid"].as_str().unwrap().to_owned(),
                e["data"]["from"].clone(),
            )
        })
        .collect();
    expired.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        expired,
        [
            (iccid(1), json!("RELEASED")),
            (iccid(2), json!("AVAILABLE"))
        ]
    );
    let (_, h) = app.get(&format!("/v1/sims/{}/history", iccid(1))).await;
    let last = h["data"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(
        (last["operation"].as_str(), last["to_status"].as_str()),
        (Some("profile.expired"), Some("UNAVAILABLE")),
        "{h}"
    );
    // An expired code is no longer rendered, nor can the profile be ordered.
    assert_eq!(
        app.get(&format!("/v1/profiles/{}/qr.png", iccid(1)))
            .await
            .0,
        409
    );
    assert_failed(
        &es2(&app, "downloadOrder", json!({"iccid": iccid(2)})).await,
        "8.2.1",
        "3.3",
    );
    // A second sweep finds nothing to expire.
    simbatch_engine::sweeper::sweep_once(app.store.as_ref(), &Default::default())
        .await
        .unwrap();
    let (_, ev2) = app.get("/v1/events?limit=1000").await;
    assert_eq!(
        ev2["data"].as_array().unwrap().len(),
        ev["data"].as_array().unwrap().len()
    );
    app.stop().await;
}
