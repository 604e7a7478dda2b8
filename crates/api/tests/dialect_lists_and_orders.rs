//! Vendor fidelity gaps closed after the first dialect round, through real
//! HTTP on SQLite and PostgreSQL: ECC's one outstanding order per
//! subscription (409), and Smarthub's `total` on its paged lists.

#[macro_use]
mod common;

use common::{iccid, Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

both_backends!(
    ecc_second_outstanding_order_is_409,
    smarthub_lists_carry_total,
);

async fn ecc_post(app: &TestApp, path: &str, body: &str) -> (u16, Value) {
    let (user, pass) = app.token.split_once('.').unwrap();
    let r = app
        .http
        .post(format!("{}{path}", app.base))
        .basic_auth(user, Some(pass))
        .header("content-type", "application/json")
        .body(body.to_owned())
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap())
}

async fn ecc_second_outstanding_order_is_409(b: Backend) {
    // No workers: an accepted order stays outstanding.
    let app = TestApp::start_with(b, false).await;
    let body = r#"{"msisdn": "46708421499", "iccid": "89461177710001700003"}"#;
    let (s, first) = ecc_post(&app, "/ecc/v1/subscriptions", body).await;
    assert_eq!(s, 202, "{first}");
    let order = first["orders"][0].as_i64().unwrap();
    let (s, again) = ecc_post(&app, "/ecc/v1/subscriptions", body).await;
    assert_eq!(s, 409, "{again}");
    assert_eq!(
        (&again["status"], &again["error"]),
        (&json!(409), &json!("Conflict")),
        "{again}"
    );
    let msg = again["message"].as_str().unwrap();
    assert!(
        msg.contains("outstanding order") && msg.contains(&order.to_string()),
        "{msg}"
    );
    // Another subscription is not held up.
    let (s, other) = ecc_post(
        &app,
        "/ecc/v1/subscriptions",
        r#"{"msisdn": "46708421400", "iccid": "89461177710001700011"}"#,
    )
    .await;
    assert_eq!(s, 202, "{other}");
    app.stop().await;
}

async fn smarthub_lists_carry_total(b: Backend) {
    let app = TestApp::start(b).await;
    let sims: Vec<String> = (1..=3).map(iccid).collect();
    app.register(&sims).await;
    let get = |path: String| {
        let app = &app;
        async move {
            let r = app.req(Method::GET, &path).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let p0 = get("/smarthub/v1/global-sims?page=0&size=2".into()).await;
    assert_eq!(
        (&p0["page"], &p0["size"], &p0["total"]),
        (&json!(0), &json!(2), &json!(3)),
        "{p0}"
    );
    assert_eq!(p0["globalSims"].as_array().unwrap().len(), 2);
    let p1 = get("/smarthub/v1/global-sims?page=1&size=2".into()).await;
    assert_eq!((&p1["page"], &p1["total"]), (&json!(1), &json!(3)), "{p1}");
    assert_eq!(p1["globalSims"].as_array().unwrap().len(), 1);
    // The total follows the filters, not the page.
    let none = get("/smarthub/v1/global-sims?status=RETIRED".into()).await;
    assert_eq!(
        (&none["total"], &none["globalSims"]),
        (&json!(0), &json!([]))
    );
    // Another tenant counts its own SIMs.
    let r = app
        .req_as(&app.other, Method::GET, "/smarthub/v1/global-sims")
        .send()
        .await
        .unwrap();
    assert_eq!(r.json::<Value>().await.unwrap()["total"], 0);

    // changeLogs: one change (registration), and activating adds one.
    let r = app
        .req(
            Method::POST,
            &format!("/smarthub/v1/global-sims/{}/activate", sims[0]),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let logs = get(format!(
        "/smarthub/v1/global-sims/changeLogs?giccid={}&page=0&size=1",
        sims[0]
    ))
    .await;
    assert_eq!(
        (&logs["total"], &logs["size"]),
        (&json!(2), &json!(1)),
        "{logs}"
    );
    assert_eq!(logs["changeLogs"].as_array().unwrap().len(), 1);
    app.stop().await;
}
