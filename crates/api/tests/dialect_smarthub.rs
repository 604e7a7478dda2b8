//! The Smarthub dialect (`/smarthub/v1`) through real HTTP, on SQLite and
//! PostgreSQL: the seed's batch-job request verbatim, batch jobs and
//! single-SIM endpoints, every documented error and authentication
//! refusal, and 20 concurrent clients.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{iccid, Backend, TestApp};
use reqwest::{Method, Response};
use serde_json::{json, Value};

both_backends!(
    seed_batch_job_request,
    batch_job_pages,
    lifecycle_jobs,
    rate_plan_job,
    single_sim_endpoints,
    errors_and_auth_refusals,
    twenty_concurrent_clients,
    push_notifications,
);

/// Status and JSON body; an error must be Smarthub's problem body, never 5xx.
async fn read(r: Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let ct = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().await.unwrap();
    assert!(status < 500, "server error {status}: {text}");
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status >= 400 {
        assert_eq!(ct, "application/problem+json", "{text}");
        assert_eq!(body["type"], "about:blank", "{text}");
        assert_eq!(body["status"], status, "{text}");
        assert!(body["title"].is_string(), "{text}");
    }
    (status, body)
}

async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&str>,
) -> (u16, Value) {
    let mut r = app
        .http
        .request(method, format!("{}/smarthub/v1{path}", app.base))
        .header("X-API-Key", token);
    if let Some(b) = body {
        r = r
            .header("content-type", "application/json")
            .body(b.to_owned());
    }
    read(r.send().await.unwrap()).await
}

async fn sm(app: &TestApp, method: Method, path: &str, body: Option<&str>) -> (u16, Value) {
    call(app, &app.token, method, path, body).await
}

/// Load SIMs with a basic rate plan through the native API.
async fn load(app: &TestApp, from: usize, n: usize, plan: &str) -> Vec<String> {
    let sims: Vec<String> = (from..from + n).map(iccid).collect();
    let items = sims
        .iter()
        .map(|i| json!({"iccid": i, "rate_plan": plan}))
        .collect();
    let (s, b) = app.submit(Some("register_sim"), items).await;
    assert_eq!(s, 202, "{b}");
    app.wait_batch(b["id"].as_str().unwrap()).await;
    sims
}

async fn job(app: &TestApp, action: &str, body: Value) -> String {
    let (s, b) = sm(
        app,
        Method::POST,
        &format!("/batchJobs/global-sims/{action}"),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let id = b["jobId"].as_str().unwrap().to_owned();
    assert_eq!(b, json!({"jobId": id}));
    assert!(
        id.len() == 32
            && id
                .bytes()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)),
        "{id}"
    );
    id
}

async fn wait_job(app: &TestApp, id: &str, query: &str) -> Value {
    let start = Instant::now();
    loop {
        let (s, b) = sm(app, Method::GET, &format!("/batchJobs/{id}{query}"), None).await;
        assert_eq!(s, 200, "{b}");
        if b["status"] != "PROCESSING" {
            return b;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "not done: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn assert_created_time(v: &Value) {
    let t = v.as_str().unwrap();
    let ok = t.len() == 24
        && t.ends_with("+0000")
        && t.as_bytes()[10] == b'T'
        && time::PrimitiveDateTime::parse(
            &t[..19],
            time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]"),
        )
        .is_ok();
    assert!(
        ok,
        "createdTime like 2018-10-10T10:32:50+0000 expected, got {t}"
    );
}

/// The seed's request, `curl --request GET '/batchJobs/ff80…' --header 'X-API-Key;'`:
/// an empty key is refused; with a key, that job id is simply not found; a
/// real job answers in exactly the seed's shape.
async fn seed_batch_job_request(b: Backend) {
    let app = TestApp::start(b).await;
    let (s, e) = call(
        &app,
        "",
        Method::GET,
        "/batchJobs/ff8080815b1d381001511e06f52b1232",
        None,
    )
    .await;
    assert_eq!(
        (s, e),
        (
            401,
            json!({"type": "about:blank", "title": "Invalid api key", "status": 401})
        )
    );
    let (s, e) = sm(
        &app,
        Method::GET,
        "/batchJobs/ff8080815b1d381001511e06f52b1232",
        None,
    )
    .await;
    assert_eq!(s, 404, "{e}");

    let sims = load(&app, 0, 2, "Prepaid-Addon-10M").await;
    let id = job(&app, "activate", json!({"giccids": sims})).await;
    let done = wait_job(&app, &id, "").await;
    let keys: Vec<&String> = done.as_object().unwrap().keys().collect();
    assert_eq!(
        keys,
        [
            "createdTime",
            "jobId",
            "page",
            "size",
            "status",
            "tasks",
            "total",
            "type"
        ]
    );
    assert_eq!(done["jobId"], id.as_str());
    assert_eq!(done["type"], "ACTIVATE");
    assert_eq!(done["status"], "COMPLETED");
    assert_created_time(&done["createdTime"]);
    assert_eq!(
        (
            done["page"].clone(),
            done["size"].clone(),
            done["total"].clone()
        ),
        (json!(0), json!(10), json!(2))
    );
    assert_eq!(
        done["tasks"],
        json!([
            {"giccid": sims[0], "basicServicePackageName": "Prepaid-Addon-10M", "status": "SUCCESS", "errorMessage": null},
            {"giccid": sims[1], "basicServicePackageName": "Prepaid-Addon-10M", "status": "SUCCESS", "errorMessage": null},
        ])
    );
    // The same batch through the native API.
    let batch_id = uuid::Uuid::parse_str(&id).unwrap().hyphenated().to_string();
    let (s, native) = app.get(&format!("/v1/batches/{batch_id}")).await;
    assert_eq!(s, 200, "{native}");
    assert_eq!(native["source"], "smarthub");
    app.stop().await;
}

async fn batch_job_pages(b: Backend) {
    let app = TestApp::start(b).await;
    let sims = load(&app, 100, 25, "Plan-A").await;
    let id = job(&app, "activate", json!({"giccids": sims})).await;
    wait_job(&app, &id, "").await;
    let mut seen = Vec::new();
    for (page, n) in [(0, 10), (1, 10), (2, 5), (3, 0)] {
        let (s, p) = sm(
            &app,
            Method::GET,
            &format!("/batchJobs/{id}?page={page}&size=10"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{p}");
        assert_eq!(
            (p["page"].clone(), p["size"].clone(), p["total"].clone()),
            (json!(page), json!(10), json!(25))
        );
        let tasks = p["tasks"].as_array().unwrap();
        assert_eq!(tasks.len(), n, "page {page}");
        seen.extend(
            tasks
                .iter()
                .map(|t| t["giccid"].as_str().unwrap().to_owned()),
        );
    }
    assert_eq!(seen, sims);
    app.stop().await;
}

async fn lifecycle_jobs(b: Backend) {
    let app = TestApp::start(b).await;
    let sims = load(&app, 200, 3, "Plan-B").await;
    let done = wait_job(
        &app,
        &job(&app, "activate", json!({"giccids": sims})).await,
        "",
    )
    .await;
    assert_eq!(done["status"], "COMPLETED");
    // Retire only from SUSPENDED: the ACTIVATED SIM's task fails and says why.
    let done = wait_job(
        &app,
        &job(&app, "retire", json!({"giccids": [sims[0]]})).await,
        "",
    )
    .await;
    assert_eq!(done["type"], "RETIRE");
    assert_eq!(done["status"], "PARTIALLY_COMPLETED");
    assert_eq!(done["tasks"][0]["status"], "FAILED");
    assert!(
        done["tasks"][0]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("ACTIVATED"),
        "{done}"
    );
    let done = wait_job(
        &app,
        &job(&app, "deactivate", json!({"giccids": sims})).await,
        "",
    )
    .await;
    assert_eq!(
        (done["type"].clone(), done["status"].clone()),
        (json!("DEACTIVATE"), json!("COMPLETED"))
    );
    let done = wait_job(
        &app,
        &job(&app, "retire", json!({"giccids": [sims[0]]})).await,
        "",
    )
    .await;
    assert_eq!(done["status"], "COMPLETED");
    // Activating again resumes the suspended ones; the retired one fails; unknown and malformed ICCIDs fail.
    let done = wait_job(
        &app,
        &job(
            &app,
            "activate",
            json!({"giccids": [sims[0], sims[1], sims[2], iccid(999), "12"]}),
        )
        .await,
        "",
    )
    .await;
    let st: Vec<&str> = done["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(
        st,
        ["FAILED", "SUCCESS", "SUCCESS", "FAILED", "FAILED"],
        "{done}"
    );
    assert!(
        done["tasks"][3]["errorMessage"]
            .as_str()
            .unwrap()
            .contains("does not exist"),
        "{done}"
    );
    assert!(
        done["tasks"][4]["errorMessage"].as_str().is_some(),
        "{done}"
    );
    let (_, sim) = sm(
        &app,
        Method::GET,
        &format!("/global-sims/{}", sims[1]),
        None,
    )
    .await;
    assert_eq!(sim["status"], "ACTIVATED");
    app.stop().await;
}

async fn rate_plan_job(b: Backend) {
    let app = TestApp::start(b).await;
    let sims = load(&app, 300, 2, "Old-Plan").await;
    let id = job(
        &app,
        "change-basic-rate-plan",
        json!({"giccids": sims, "basicServicePackageName": "Prepaid-Addon-10M"}),
    )
    .await;
    let done = wait_job(&app, &id, "").await;
    assert_eq!(
        (done["type"].clone(), done["status"].clone()),
        (json!("MODIFY_QUOTA_PLAN"), json!("COMPLETED"))
    );
    assert!(done["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["basicServicePackageName"] == "Prepaid-Addon-10M"));
    let (_, sim) = sm(
        &app,
        Method::GET,
        &format!("/global-sims/{}", sims[0]),
        None,
    )
    .await;
    assert_eq!(sim["basicServicePackageName"], "Prepaid-Addon-10M");
    let (s, e) = sm(
        &app,
        Method::POST,
        "/batchJobs/global-sims/change-basic-rate-plan",
        Some(&json!({"giccids": sims}).to_string()),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        e["errors"],
        json!([{"resource": "batchJob", "field": "basicServicePackageName", "code": "missing_field"}])
    );
    app.stop().await;
}

async fn single_sim_endpoints(b: Backend) {
    let app = TestApp::start(b).await;
    let sims = load(&app, 400, 3, "Plan-C").await;
    let g = &sims[0];
    let (s, sim) = sm(&app, Method::GET, &format!("/global-sims/{g}"), None).await;
    assert_eq!(s, 200, "{sim}");
    assert_eq!(sim["giccid"], g.as_str());
    assert_eq!(sim["status"], "INVENTORY");
    assert_eq!(sim["basicServicePackageName"], "Plan-C");
    assert_created_time(&sim["createdTime"]);

    // activate → suspend → retire, each answered once applied.
    let (s, r) = sm(
        &app,
        Method::POST,
        &format!("/global-sims/{g}/activate"),
        None,
    )
    .await;
    assert_eq!((s, r["status"].clone()), (200, json!("ACTIVATED")), "{r}");
    assert_eq!(r["jobId"].as_str().unwrap().len(), 32);
    let (s, e) = sm(
        &app,
        Method::POST,
        &format!("/global-sims/{g}/retire"),
        None,
    )
    .await;
    assert_eq!(s, 422, "{e}");
    assert_eq!(e["title"], "Validation Failed");
    assert_eq!(
        e["errors"],
        json!([{"resource": "globalSim", "field": "status", "code": "illegal_status"}])
    );
    let (s, r) = sm(
        &app,
        Method::POST,
        &format!("/global-sims/{g}/suspend"),
        None,
    )
    .await;
    assert_eq!((s, r["status"].clone()), (200, json!("SUSPENDED")));
    let (s, r) = sm(
        &app,
        Method::POST,
        &format!("/global-sims/{g}/activate"),
        None,
    )
    .await;
    assert_eq!(
        (s, r["status"].clone()),
        (200, json!("ACTIVATED")),
        "activate resumes a suspended SIM"
    );
    sm(
        &app,
        Method::POST,
        &format!("/global-sims/{g}/suspend"),
        None,
    )
    .await;
    let (s, r) = sm(
        &app,
        Method::POST,
        &format!("/global-sims/{g}/retire"),
        None,
    )
    .await;
    assert_eq!((s, r["status"].clone()), (200, json!("RETIRED")));
    // The job of a single action is readable.
    let (s, j) = sm(
        &app,
        Method::GET,
        &format!("/batchJobs/{}", r["jobId"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(
        (s, j["type"].clone(), j["total"].clone()),
        (200, json!("RETIRE"), json!(1))
    );

    // Change logs, oldest first, paged.
    let (s, logs) = sm(
        &app,
        Method::GET,
        &format!("/global-sims/changeLogs?giccid={g}&size=100"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{logs}");
    let steps: Vec<(Value, Value)> = logs["changeLogs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| (l["beforeStatus"].clone(), l["afterStatus"].clone()))
        .collect();
    assert_eq!(steps[0], (Value::Null, json!("INVENTORY")));
    assert_eq!(
        steps.last().unwrap(),
        &(json!("SUSPENDED"), json!("RETIRED"))
    );
    assert_eq!(steps.len(), 6, "{logs}");
    let (_, p1) = sm(
        &app,
        Method::GET,
        &format!("/global-sims/changeLogs?giccid={g}&page=1&size=4"),
        None,
    )
    .await;
    assert_eq!(p1["changeLogs"].as_array().unwrap().len(), 2);
    assert_eq!(p1["changeLogs"][1]["afterStatus"], "RETIRED");

    // Custom fields.
    let (s, cf) = sm(
        &app,
        Method::GET,
        &format!("/global-sims/{}/custom-field", sims[1]),
        None,
    )
    .await;
    assert_eq!(
        (s, cf),
        (
            200,
            json!({"custom1": null, "custom2": null, "custom3": null, "custom4": null, "custom5": null})
        )
    );
    let (s, cf) = sm(
        &app,
        Method::PUT,
        &format!("/global-sims/{}/custom-field", sims[1]),
        Some(r#"{"custom1": "fleet-7", "custom5": "blue"}"#),
    )
    .await;
    assert_eq!(
        (s, cf),
        (
            200,
            json!({"custom1": "fleet-7", "custom2": null, "custom3": null, "custom4": null, "custom5": "blue"})
        )
    );
    let (_, cf) = sm(
        &app,
        Method::PUT,
        &format!("/global-sims/{}/custom-field", sims[1]),
        Some(r#"{"custom2": "x"}"#),
    )
    .await;
    assert_eq!(
        (cf["custom1"].clone(), cf["custom2"].clone()),
        (json!("fleet-7"), json!("x")),
        "omitted fields are kept"
    );

    // The list, paged and filtered.
    let (s, l) = sm(&app, Method::GET, "/global-sims?size=2", None).await;
    assert_eq!(s, 200, "{l}");
    assert_eq!(l["globalSims"].as_array().unwrap().len(), 2);
    let (_, l2) = sm(&app, Method::GET, "/global-sims?size=2&page=1", None).await;
    assert_eq!(l2["globalSims"].as_array().unwrap().len(), 1);
    assert_eq!(l2["globalSims"][0]["giccid"], sims[2].as_str());
    let (_, f) = sm(&app, Method::GET, "/global-sims?status=RETIRED", None).await;
    assert_eq!(f["globalSims"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn errors_and_auth_refusals(b: Backend) {
    let app = TestApp::start(b).await;
    let sims = load(&app, 500, 1, "Plan-D").await;
    let g = &sims[0];
    let id = job(&app, "deactivate", json!({"giccids": sims})).await;

    // Authentication.
    let invalid = json!({"type": "about:blank", "title": "Invalid api key", "status": 401});
    for token in [
        "",
        "garbage",
        "sk_0000000000000000.00",
        &format!("{}x", app.token),
    ] {
        let (s, e) = call(&app, token, Method::GET, &format!("/global-sims/{g}"), None).await;
        assert_eq!((s, e), (401, invalid.clone()), "{token}");
    }
    let r = app
        .http
        .get(format!("{}/smarthub/v1/global-sims/{g}", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await, (401, invalid.clone()));
    let r = app
        .http
        .get(format!("{}/smarthub/v1/global-sims/{g}", app.base))
        .header("authorization", format!("Bearer {}", app.token))
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 200, "Bearer is accepted too");

    // Another tenant: not found.
    for path in [
        format!("/global-sims/{g}"),
        format!("/batchJobs/{id}"),
        format!("/global-sims/{g}/custom-field"),
    ] {
        let (s, e) = call(&app, &app.other, Method::GET, &path, None).await;
        assert_eq!((s, e["title"].clone()), (404, json!("Not Found")), "{path}");
    }
    let (s, _) = call(
        &app,
        &app.other,
        Method::POST,
        &format!("/global-sims/{g}/suspend"),
        None,
    )
    .await;
    assert_eq!(s, 404);

    // 400: not JSON, not an object, wrong types.
    let bad = json!({"type": "about:blank", "title": "Bad Request", "status": 400, "detail": "Body should be a JSON object"});
    for body in ["{", "[]", "\"x\"", ""] {
        let (s, e) = sm(
            &app,
            Method::POST,
            "/batchJobs/global-sims/activate",
            Some(body),
        )
        .await;
        assert_eq!((s, e), (400, bad.clone()), "{body}");
    }
    let (s, e) = sm(
        &app,
        Method::PUT,
        &format!("/global-sims/{g}/custom-field"),
        Some("nope"),
    )
    .await;
    assert_eq!((s, e), (400, bad.clone()));
    let (s, e) = sm(
        &app,
        Method::POST,
        "/batchJobs/global-sims/activate",
        Some(r#"{"giccids": "8988"}"#),
    )
    .await;
    assert_eq!((s, e["title"].clone()), (400, json!("Bad Request")));
    let (s, _) = sm(
        &app,
        Method::POST,
        "/batchJobs/global-sims/activate",
        Some(r#"{"giccids": [1]}"#),
    )
    .await;
    assert_eq!(s, 400);

    // 422: the Global Description's example, verbatim, and each code.
    let (s, e) = sm(
        &app,
        Method::PUT,
        &format!("/global-sims/{g}/custom-field"),
        Some(r#"{"custom1": 5}"#),
    )
    .await;
    assert_eq!(s, 422);
    assert_eq!(
        e["errors"],
        json!([{"resource": "customFieldVO", "field": "custom1", "code": "invalid"}])
    );
    assert_eq!(e["title"], "Validation Failed");
    let over: Vec<String> = (0..1001).map(iccid).collect();
    for (body, field, code) in [
        (json!({}), "giccids", "missing_field"),
        (json!({"giccids": []}), "giccids", "invalid"),
        (json!({"giccids": over}), "giccids", "invalid"),
        (
            json!({"giccids": [g], "colour": "red"}),
            "colour",
            "invalid",
        ),
    ] {
        let (s, e) = sm(
            &app,
            Method::POST,
            "/batchJobs/global-sims/deactivate",
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(s, 422, "{e}");
        assert_eq!(
            e["errors"],
            json!([{"resource": "batchJob", "field": field, "code": code}])
        );
    }
    let (s, e) = sm(
        &app,
        Method::PUT,
        &format!("/global-sims/{g}/custom-field"),
        Some(r#"{"custom9": "x"}"#),
    )
    .await;
    assert_eq!(
        (s, e["errors"][0]["field"].clone()),
        (422, json!("custom9"))
    );
    let (s, e) = sm(&app, Method::GET, "/global-sims/changeLogs", None).await;
    assert_eq!(
        (s, e["errors"].clone()),
        (
            422,
            json!([{"resource": "query", "field": "giccid", "code": "missing_field"}])
        )
    );
    let (s, e) = sm(&app, Method::GET, &format!("/batchJobs/{id}?size=0"), None).await;
    assert_eq!(
        (s, e["errors"].clone()),
        (
            422,
            json!([{"resource": "query", "field": "size", "code": "invalid"}])
        )
    );
    let (s, e) = sm(&app, Method::GET, "/global-sims?status=LOST", None).await;
    assert_eq!((s, e["errors"][0]["field"].clone()), (422, json!("status")));
    wait_job(&app, &id, "").await;
    let (s, e) = sm(
        &app,
        Method::POST,
        &format!("/global-sims/{g}/suspend"),
        None,
    )
    .await;
    assert_eq!(
        (s, e["errors"].clone()),
        (
            422,
            json!([{"resource": "globalSim", "field": "status", "code": "illegal_status"}])
        )
    );

    // Unknown things.
    for (method, path) in [
        (Method::GET, "/global-sims/8988000000000000999".to_owned()),
        (Method::GET, "/batchJobs/not-a-job".to_owned()),
        (Method::POST, "/batchJobs/global-sims/explode".to_owned()),
        (Method::POST, format!("/global-sims/{g}/explode")),
        (Method::GET, "/nothing".to_owned()),
    ] {
        let (s, e) = sm(&app, method.clone(), &path, Some("{}")).await;
        assert_eq!(
            (s, e["title"].clone()),
            (404, json!("Not Found")),
            "{method} {path}"
        );
    }
    let (s, e) = sm(&app, Method::DELETE, &format!("/global-sims/{g}"), None).await;
    assert_eq!((s, e["title"].clone()), (405, json!("Method Not Allowed")));
    app.stop().await;
}

/// 20 clients submit an activation job of 5 SIMs at once: 20 distinct jobs,
/// every SIM activated exactly once.
async fn twenty_concurrent_clients(b: Backend) {
    let app = std::sync::Arc::new(TestApp::start(b).await);
    let sims = load(&app, 1000, 100, "Plan-E").await;
    let mut tasks = Vec::new();
    for c in 0..20 {
        let app = app.clone();
        let mine: Vec<String> = sims[c * 5..c * 5 + 5].to_vec();
        tasks.push(tokio::spawn(async move {
            (job(&app, "activate", json!({"giccids": mine})).await, mine)
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (id, mine) = t.await.unwrap();
        assert!(ids.insert(id.clone()), "job id repeated");
        let done = wait_job(&app, &id, "").await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
        let got: Vec<String> = done["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["giccid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(got, mine);
    }
    let (_, l) = sm(
        &app,
        Method::GET,
        "/global-sims?status=ACTIVATED&size=100",
        None,
    )
    .await;
    assert_eq!(l["globalSims"].as_array().unwrap().len(), 100);
    let (_, h) = app.get(&format!("/v1/sims/{}/history", sims[0])).await;
    assert_eq!(
        h["data"].as_array().unwrap().len(),
        2,
        "activated exactly once: {h}"
    );
    if let Ok(app) = std::sync::Arc::try_unwrap(app) {
        app.stop().await;
    }
}

type Received = std::sync::Arc<std::sync::Mutex<Vec<(reqwest::header::HeaderMap, String)>>>;

/// An HTTP endpoint that records what is pushed to it.
async fn receiver() -> (String, Received, tokio::task::JoinHandle<()>) {
    use axum::routing::post;
    let got: Received = Default::default();
    let store = got.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: axum::http::HeaderMap, body: String| {
            let store = store.clone();
            async move {
                let mut h = reqwest::header::HeaderMap::new();
                for (k, v) in headers.iter() {
                    h.insert(
                        reqwest::header::HeaderName::from_bytes(k.as_str().as_bytes()).unwrap(),
                        reqwest::header::HeaderValue::from_bytes(v.as_bytes()).unwrap(),
                    );
                }
                store.lock().unwrap().push((h, body));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let server = tokio::spawn(async move {
        axum::serve(listener, app).await.unwrap();
    });
    (url, got, server)
}

/// SIM status and IMEI changes are pushed, signed, to the configured URL.
async fn push_notifications(b: Backend) {
    let app = TestApp::start(b).await;
    let (url, got, server) = receiver().await;
    let (s, e) = sm(&app, Method::GET, "/notification-config", None).await;
    assert_eq!((s, e["title"].clone()), (404, json!("Not Found")));
    for (body, code) in [
        (json!({}), "missing_field"),
        (json!({"url": "ftp://example.com/x"}), "invalid"),
        (json!({"url": url, "colour": 1}), "invalid"),
    ] {
        let (s, e) = sm(
            &app,
            Method::PUT,
            "/notification-config",
            Some(&body.to_string()),
        )
        .await;
        assert_eq!(
            (s, e["errors"][0]["code"].clone()),
            (422, json!(code)),
            "{body}: {e}"
        );
    }
    let (s, cfg) = sm(
        &app,
        Method::PUT,
        "/notification-config",
        Some(&json!({"url": "https://old.example/x"}).to_string()),
    )
    .await;
    assert_eq!(s, 200, "{cfg}");
    let (s, cfg) = sm(
        &app,
        Method::PUT,
        "/notification-config",
        Some(&json!({"url": url}).to_string()),
    )
    .await;
    assert_eq!(s, 200, "{cfg}");
    let secret = cfg["secret"].as_str().unwrap().to_owned();
    assert!(secret.starts_with("whsec_"));
    let (_, now) = sm(&app, Method::GET, "/notification-config", None).await;
    assert_eq!(
        now,
        json!({"url": url, "enabled": true, "disabledReason": null})
    );
    let (s, _) = call(&app, &app.other, Method::GET, "/notification-config", None).await;
    assert_eq!(s, 404, "another tenant has none");
    let (_, hooks) = app.get("/v1/webhooks").await;
    assert_eq!(
        hooks["data"].as_array().map(Vec::len).unwrap_or(0),
        1,
        "the old URL was replaced: {hooks}"
    );

    let dispatcher = {
        let store = app.store.clone();
        tokio::spawn(async move {
            let client = reqwest::Client::new();
            loop {
                let _ = simbatch_engine::webhooks::dispatch_once(&*store, &client).await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
    };
    let sims = load(&app, 700, 1, "Plan-P").await;
    let id = job(&app, "activate", json!({"giccids": sims})).await;
    wait_job(&app, &id, "").await;
    let (s, b2) = app
        .submit(
            Some("import_profile"),
            vec![json!({"iccid": sims[0], "imei": "490154203237518"})],
        )
        .await;
    assert_eq!(s, 202, "{b2}");
    app.wait_batch(b2["id"].as_str().unwrap()).await;
    let start = Instant::now();
    while got.lock().unwrap().len() < 3 {
        assert!(
            start.elapsed() < Duration::from_secs(30),
            "pushes missing: {:?}",
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let got = got.lock().unwrap().clone();
    assert_eq!(
        got.len(),
        3,
        "only status and IMEI changes are pushed: {got:?}"
    );
    let bodies: Vec<Value> = got
        .iter()
        .map(|(_, b)| serde_json::from_str(b).unwrap())
        .collect();
    for (h, body) in &got {
        let id = h["webhook-id"].to_str().unwrap();
        let ts: i64 = h["webhook-timestamp"].to_str().unwrap().parse().unwrap();
        let expected = simbatch_engine::webhooks::sign(&secret, id, ts, body).unwrap();
        assert_eq!(h["webhook-signature"].to_str().unwrap(), expected);
    }
    assert_eq!(bodies[0]["eventType"], "SIM_STATUS_CHANGE");
    assert_eq!(
        (
            bodies[0]["beforeStatus"].clone(),
            bodies[0]["afterStatus"].clone()
        ),
        (Value::Null, json!("INVENTORY"))
    );
    assert_eq!(bodies[1]["eventType"], "SIM_STATUS_CHANGE");
    assert_eq!(bodies[1]["giccid"], sims[0].as_str());
    assert_eq!(
        (
            bodies[1]["beforeStatus"].clone(),
            bodies[1]["afterStatus"].clone()
        ),
        (json!("INVENTORY"), json!("ACTIVATED"))
    );
    assert_eq!(bodies[1]["jobId"], id.as_str());
    assert_created_time(&bodies[1]["eventTime"]);
    assert_eq!(
        (
            bodies[2]["eventType"].clone(),
            bodies[2]["beforeImei"].clone(),
            bodies[2]["afterImei"].clone()
        ),
        (json!("IMEI_CHANGE"), Value::Null, json!("490154203237518"))
    );
    let (s, _) = sm(&app, Method::DELETE, "/notification-config", None).await;
    assert_eq!(s, 204);
    let (s, _) = sm(&app, Method::DELETE, "/notification-config", None).await;
    assert_eq!(s, 404);
    dispatcher.abort();
    server.abort();
    app.stop().await;
}
