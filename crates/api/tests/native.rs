//! The native API through real HTTP, on SQLite and PostgreSQL.

#[macro_use]
mod common;

use std::time::{Duration, Instant};

use common::{iccid, read, Backend, TestApp, MAX_ITEMS};
use reqwest::Method;
use serde_json::{json, Value};

both_backends!(
    submit_completes_with_counts,
    dry_run_stores_nothing,
    rejections_name_index_field_code,
    mixed_batch,
    csv_upload,
    ndjson_upload,
    idempotency_replay_and_mismatch,
    cancel_batch,
    retry_failed_items,
    paging,
    single_sim_orders,
    events_feed,
    webhooks_crud,
    auth_required,
    revoked_key_stops_working_within_the_cache_ttl,
    tenant_isolation,
    bad_input_is_4xx_and_loses_nothing,
);

async fn submit_completes_with_counts(b: Backend) {
    let app = TestApp::start(b).await;
    let sims: Vec<String> = (0..3).map(iccid).collect();
    app.register(&sims).await;
    let resp = app
        .req(Method::POST, "/v1/batches")
        .json(
            &json!({"operation": "activate", "mode": "sequential_per_iccid",
                      "items": sims.iter().map(|i| json!({"iccid": i})).collect::<Vec<_>>()}),
        )
        .send()
        .await
        .unwrap();
    let loc = resp.headers().get("location").cloned();
    let (s, body) = read(resp).await;
    assert_eq!(s, 202, "{body}");
    let id = body["id"].as_str().unwrap();
    assert_eq!(loc.unwrap().to_str().unwrap(), format!("/v1/batches/{id}"));
    assert_eq!(body["counts"]["total"], 3);
    assert_eq!(body["rejected"], json!([]));
    let done = app.wait_batch(id).await;
    assert_eq!(done["status"], "COMPLETED");
    assert_eq!(done["mode"], "sequential_per_iccid");
    assert_eq!(
        done["counts"],
        json!({"total": 3, "approved": 0, "rejected": 0, "processing": 0, "completed": 3, "failed": 0, "canceled": 0})
    );
    assert!(
        done["completed_at"].as_str().unwrap().contains('T'),
        "RFC 3339"
    );
    let (_, sim) = app.get(&format!("/v1/sims/{}", sims[0])).await;
    assert_eq!(sim["status"], "ACTIVATED");
    app.stop().await;
}

async fn dry_run_stores_nothing(b: Backend) {
    let app = TestApp::start(b).await;
    let (s, body) = app
        .post(
            "/v1/batches",
            json!({"operation": "register_sim", "dry_run": true,
                   "items": [{"iccid": iccid(1)}, {"iccid": "12"}]}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    assert_eq!(body["id"], Value::Null);
    assert_eq!(body["dry_run"], true);
    assert_eq!(body["counts"]["approved"], 1);
    assert_eq!(body["counts"]["rejected"], 1);
    assert_eq!(body["rejected"][0]["index"], 1);
    let (_, list) = app.get("/v1/batches").await;
    assert_eq!(list["data"], json!([]));
    let (s, _) = app.get(&format!("/v1/sims/{}", iccid(1))).await;
    assert_eq!(s, 404);
    app.stop().await;
}

async fn rejections_name_index_field_code(b: Backend) {
    let app = TestApp::start(b).await;
    let (s, body) = app
        .submit(
            Some("register_sim"),
            vec![
                json!({"iccid": iccid(1)}),
                json!({"iccid": "123"}),
                json!({}),
                json!({"iccid": iccid(2), "colour": "red"}),
                json!({"iccid": iccid(3), "ki": "zz"}),
            ],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let rej = body["rejected"].as_array().unwrap();
    let got: Vec<(u64, &str, &str)> = rej
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["field"].as_str().unwrap(),
                r["code"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(got[0], (1, "iccid", "iccid_invalid_length"));
    assert_eq!(got[1], (2, "iccid", "missing_field"));
    assert_eq!(got[2], (3, "colour", "unknown_field"));
    assert_eq!((got[3].0, got[3].1), (4, "ki"));
    assert!(rej.iter().all(|r| r["reason"].is_string()));
    let id = body["id"].as_str().unwrap();
    let done = app.wait_batch(id).await;
    assert_eq!(done["status"], "PARTIALLY_COMPLETED");
    assert_eq!(done["counts"]["completed"], 1);
    assert_eq!(done["counts"]["rejected"], 4);
    let (s, items) = app
        .get(&format!("/v1/batches/{id}/items?status=REJECTED"))
        .await;
    assert_eq!(s, 200);
    let items = items["data"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(items[0]["index"], 1);
    assert_eq!(items[0]["error"]["code"], "iccid_invalid_length");
    // A rejected item never shows a secret it carried.
    assert!(items[3]["params"].get("ki").is_none(), "{}", items[3]);
    app.stop().await;
}

async fn mixed_batch(b: Backend) {
    let app = TestApp::start(b).await;
    let (s, body) = app
        .submit(
            None,
            vec![
                json!({"operation": "register_sim", "iccid": iccid(1)}),
                json!({"operation": "activate", "iccid": iccid(1)}),
                json!({"operation": "explode", "iccid": iccid(1)}),
                json!({"iccid": iccid(1)}),
            ],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    let codes: Vec<_> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["index"].clone(), r["field"].clone(), r["code"].clone()))
        .collect();
    assert_eq!(
        codes,
        vec![
            (json!(2), json!("operation"), json!("unknown_operation")),
            (json!(3), json!("operation"), json!("missing_field")),
        ]
    );
    let done = app.wait_batch(body["id"].as_str().unwrap()).await;
    assert_eq!(done["operation"], Value::Null);
    assert_eq!(done["counts"]["completed"], 2, "{done}");
    let (_, sim) = app.get(&format!("/v1/sims/{}", iccid(1))).await;
    assert_eq!(sim["status"], "ACTIVATED");
    app.stop().await;
}

async fn csv_upload(b: Backend) {
    let app = TestApp::start(b).await;
    let n = 2500;
    let mut csv = String::from("iccid,imsi,rate_plan\r\n");
    for i in 0..n {
        if i == 7 {
            csv.push_str("not,enough\r\n");
        } else if i == 8 {
            csv.push_str("12,,\r\n");
        } else {
            csv.push_str(&format!("{},,\"plan, \"\"A\"\"\"\r\n", iccid(i)));
        }
    }
    let r = app
        .req(
            Method::POST,
            "/v1/batches?operation=register_sim&mode=parallel",
        )
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let (s, body) = read(r).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["counts"]["total"], n);
    assert_eq!(body["counts"]["rejected"], 2);
    assert_eq!(body["rejected"][0]["index"], 7);
    assert_eq!(body["rejected"][0]["code"], "malformed_row");
    assert_eq!(body["rejected"][1]["index"], 8);
    assert_eq!(body["rejected"][1]["field"], "iccid");
    let done = app.wait_batch(body["id"].as_str().unwrap()).await;
    assert_eq!(done["counts"]["completed"], n - 2);
    let (_, sim) = app.get(&format!("/v1/sims/{}", iccid(0))).await;
    assert_eq!(sim["rate_plan"], "plan, \"A\"");

    // Unknown column: 400 naming it; nothing stored.
    let r = app
        .req(Method::POST, "/v1/batches?operation=activate")
        .header("content-type", "text/csv")
        .body(format!("iccid,colour\n{},red\n", iccid(1)))
        .send()
        .await
        .unwrap();
    let (s, body) = read(r).await;
    assert_eq!(s, 400);
    assert_eq!(body["code"], "unknown_column");
    assert!(body["detail"].as_str().unwrap().contains("colour"));
    // Unknown operation in the query.
    let r = app
        .req(Method::POST, "/v1/batches?operation=explode")
        .header("content-type", "text/csv")
        .body("iccid\n1\n")
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.1["code"], "unknown_operation");
    // Header only: empty batch.
    let r = app
        .req(Method::POST, "/v1/batches?operation=activate")
        .header("content-type", "text/csv")
        .body("iccid\n")
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.1["code"], "empty_batch");
    let (_, list) = app.get("/v1/batches").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    app.stop().await;
}

async fn ndjson_upload(b: Backend) {
    let app = TestApp::start(b).await;
    app.register(&[iccid(1), iccid(2)]).await;
    let long = "x".repeat(70 * 1024);
    let body = format!(
        "{{\"operation\":\"activate\",\"iccid\":\"{}\"}}\n\n{{not json\n[1]\n{{\"iccid\":\"{}\",\"operation\":\"activate\",\"reference\":\"{long}\"}}\n{{\"operation\":\"activate\",\"iccid\":\"{}\"}}",
        iccid(1),
        iccid(9),
        iccid(2)
    );
    let r = app
        .req(Method::POST, "/v1/batches")
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    let (s, body) = read(r).await;
    assert_eq!(s, 202, "{body}");
    let codes: Vec<_> = body["rejected"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["index"].as_u64().unwrap(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        codes,
        vec![
            (1, "malformed_json".to_owned()),
            (2, "invalid_type".to_owned()),
            (3, "line_too_long".to_owned())
        ]
    );
    let done = app.wait_batch(body["id"].as_str().unwrap()).await;
    assert_eq!(done["counts"]["completed"], 2, "{done}");
    app.stop().await;
}

async fn idempotency_replay_and_mismatch(b: Backend) {
    let app = TestApp::start(b).await;
    let body = json!({"operation": "register_sim", "items": [{"iccid": iccid(1)}]}).to_string();
    let send = |body: String| {
        app.req(Method::POST, "/v1/batches")
            .header("idempotency-key", "key-1")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let first = send(body.clone()).await.unwrap();
    assert_eq!(first.status(), 202);
    let first = first.bytes().await.unwrap();
    let second = send(body.clone()).await.unwrap();
    assert_eq!(second.status(), 202);
    assert_eq!(second.headers()["idempotent-replayed"], "true");
    assert_eq!(second.bytes().await.unwrap(), first, "byte for byte");
    let other = json!({"operation": "register_sim", "items": [{"iccid": iccid(2)}]}).to_string();
    let (s, p) = read(send(other).await.unwrap()).await;
    assert_eq!(
        (s, p["code"].as_str().unwrap()),
        (422, "idempotency_key_reused")
    );
    let (_, list) = app.get("/v1/batches").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "one batch only");
    // An invalid key is refused.
    let r = app
        .req(Method::POST, "/v1/batches")
        .header("idempotency-key", "x".repeat(300))
        .json(&json!({"operation": "activate", "items": [{"iccid": iccid(1)}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 400);
    app.stop().await;
}

async fn cancel_batch(b: Backend) {
    let app = TestApp::start_with(b, false).await;
    let items = (0..10).map(|i| json!({"iccid": iccid(i)})).collect();
    let (s, body) = app.submit(Some("register_sim"), items).await;
    assert_eq!(s, 202);
    assert_eq!(body["status"], "PROCESSING");
    let id = body["id"].as_str().unwrap();
    let (s, c) = app
        .post(&format!("/v1/batches/{id}/cancel"), json!({}))
        .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["status"], "CANCELLED");
    assert_eq!(c["counts"]["canceled"], 10);
    let (s, p) = app
        .post(&format!("/v1/batches/{id}/cancel"), json!({}))
        .await;
    assert_eq!((s, p["code"].as_str().unwrap()), (409, "conflict"));
    app.stop().await;
}

async fn retry_failed_items(b: Backend) {
    let app = TestApp::start(b).await;
    let (s, body) = app
        .submit(
            Some("activate"),
            vec![json!({"iccid": iccid(1)}), json!({"iccid": iccid(2)})],
        )
        .await;
    assert_eq!(s, 202);
    let id = body["id"].as_str().unwrap().to_owned();
    let done = app.wait_batch(&id).await;
    assert_eq!(done["counts"]["failed"], 2, "{done}");
    let (_, items) = app.get(&format!("/v1/batches/{id}/items")).await;
    assert_eq!(items["data"][0]["status"], "FAILED");
    assert_eq!(items["data"][0]["error"]["code"], "sim_not_found");
    app.register(&[iccid(1), iccid(2)]).await;
    let (s, r) = app
        .post(&format!("/v1/batches/{id}/retry"), json!({}))
        .await;
    assert_eq!(s, 201, "{r}");
    assert_eq!(r["parent_id"], id.as_str());
    let again = app.wait_batch(r["id"].as_str().unwrap()).await;
    assert_eq!(again["counts"]["completed"], 2, "{again}");
    // Nothing failed in the retry: 409.
    let (s, _) = app
        .post(
            &format!("/v1/batches/{}/retry", r["id"].as_str().unwrap()),
            json!({}),
        )
        .await;
    assert_eq!(s, 409);
    app.stop().await;
}

async fn paging(b: Backend) {
    let app = TestApp::start(b).await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let (_, body) = app
            .submit(Some("register_sim"), vec![json!({"iccid": iccid(i)})])
            .await;
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/batches?limit=2&cursor={c}"),
            None => "/v1/batches?limit=2".into(),
        };
        let (s, page) = app.get(&path).await;
        assert_eq!(s, 200, "{page}");
        assert!(page["data"].as_array().unwrap().len() <= 2);
        seen.extend(
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_str().unwrap().to_owned()),
        );
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_owned()),
            None => break,
        }
    }
    ids.reverse();
    assert_eq!(seen, ids, "newest first, each once");
    let (_, page) = app.get("/v1/batches?operation=activate").await;
    assert_eq!(page["data"], json!([]));
    let (_, page) = app
        .get("/v1/batches?created_after=2000-01-01T00:00:00Z&created_before=2100-01-01T00:00:00Z")
        .await;
    assert_eq!(page["data"].as_array().unwrap().len(), 5);
    for bad in [
        "limit=0",
        "limit=1001",
        "status=NOPE",
        "created_after=yesterday",
        "cursor=zzz",
        "limit=abc",
    ] {
        let (s, p) = app.get(&format!("/v1/batches?{bad}")).await;
        assert_eq!(s, 400, "{bad}: {p}");
    }
    // Items and SIMs page too.
    let items = (10..25).map(|i| json!({"iccid": iccid(i)})).collect();
    let (_, body) = app.submit(Some("register_sim"), items).await;
    let id = body["id"].as_str().unwrap();
    app.wait_batch(id).await;
    let (_, p1) = app.get(&format!("/v1/batches/{id}/items?limit=10")).await;
    assert_eq!(p1["data"].as_array().unwrap().len(), 10);
    let c = p1["next_cursor"].as_str().unwrap();
    let (_, p2) = app
        .get(&format!("/v1/batches/{id}/items?limit=10&cursor={c}"))
        .await;
    assert_eq!(p2["data"].as_array().unwrap().len(), 5);
    assert_eq!(p2["data"][0]["index"], 10);
    assert_eq!(p2["next_cursor"], Value::Null);
    for id in &ids {
        app.wait_batch(id).await;
    }
    let (_, s1) = app.get("/v1/sims?limit=15").await;
    assert_eq!(s1["data"].as_array().unwrap().len(), 15);
    let c = s1["next_cursor"].as_str().unwrap();
    let (_, s2) = app.get(&format!("/v1/sims?limit=15&cursor={c}")).await;
    assert_eq!(s2["data"].as_array().unwrap().len(), 5);
    let (_, f) = app.get("/v1/sims?status=INVENTORY&limit=1000").await;
    assert_eq!(f["data"].as_array().unwrap().len(), 20);
    app.stop().await;
}

async fn single_sim_orders(b: Backend) {
    let app = TestApp::start(b).await;
    let (s, body) = app
        .submit(
            Some("register_sim"),
            vec![json!({"iccid": iccid(1), "ki": "465b5ce8b199b49faa5f0a2ee238a6bc", "imsi": "460048867619618"})],
        )
        .await;
    assert_eq!(s, 202);
    app.wait_batch(body["id"].as_str().unwrap()).await;
    let (s, sim) = app.get(&format!("/v1/sims/{}", iccid(1))).await;
    assert_eq!(s, 200);
    assert_eq!(sim["has_ki"], true);
    let text = sim.to_string();
    assert!(!text.contains("465b5ce8"), "never secrets: {text}");
    let (s, r) = app
        .post(
            &format!("/v1/sims/{}/activate?wait=10", iccid(1)),
            json!({"reference": "r1"}),
        )
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["item"]["status"], "COMPLETED");
    assert_eq!(r["batch"]["counts"]["total"], 1);
    // Illegal transition: terminal, FAILED.
    let (s, r) = app
        .post(&format!("/v1/sims/{}/resume?wait=10", iccid(1)), json!({}))
        .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(r["item"]["status"], "FAILED");
    assert_eq!(r["item"]["error"]["code"], "illegal_status");
    let r = app
        .req(
            Method::POST,
            &format!("/v1/sims/{}/suspend?wait=10", iccid(1)),
        )
        .send()
        .await
        .unwrap();
    let (s, r) = read(r).await;
    assert_eq!((s, r["item"]["status"].as_str()), (200, Some("COMPLETED")));
    let (_, sim) = app.get(&format!("/v1/sims/{}", iccid(1))).await;
    assert_eq!(sim["status"], "SUSPENDED");
    let (s, h) = app.get(&format!("/v1/sims/{}/history", iccid(1))).await;
    assert_eq!(s, 200);
    let to: Vec<_> = h["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["to_status"].clone())
        .collect();
    assert_eq!(
        to,
        vec![json!("INVENTORY"), json!("ACTIVATED"), json!("SUSPENDED")]
    );
    // Unknown SIM, unknown action, bad field: 4xx.
    assert_eq!(
        app.post(&format!("/v1/sims/{}/activate", iccid(5)), json!({}))
            .await
            .0,
        404
    );
    assert_eq!(
        app.post(&format!("/v1/sims/{}/explode", iccid(1)), json!({}))
            .await
            .0,
        404
    );
    let (s, p) = app
        .post(
            &format!("/v1/sims/{}/retire", iccid(1)),
            json!({"colour": 1}),
        )
        .await;
    assert_eq!((s, p["errors"][0]["field"].as_str()), (422, Some("colour")));
    app.stop().await;
}

async fn events_feed(b: Backend) {
    let app = TestApp::start(b).await;
    app.register(&[iccid(1)]).await;
    let (s, e) = app.get("/v1/events").await;
    assert_eq!(s, 200);
    let data = e["data"].as_array().unwrap();
    assert!(data.iter().any(|e| e["type"] == "batch.completed"), "{e}");
    assert!(data[0]["created_at"].as_str().unwrap().contains('T'));
    let next = e["next_cursor"].as_str().unwrap().to_owned();
    let t = Instant::now();
    let (s, e2) = app.get(&format!("/v1/events?after={next}&wait=1")).await;
    assert_eq!(s, 200);
    assert_eq!(e2["data"], json!([]));
    assert_eq!(e2["next_cursor"], next.as_str());
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "long poll waited"
    );
    // A long poll returns as soon as an event arrives.
    let waiter = {
        let req = app.req(Method::GET, &format!("/v1/events?after={next}&wait=20"));
        tokio::spawn(async move { read(req.send().await.unwrap()).await })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let t = Instant::now();
    app.register(&[iccid(2)]).await;
    let (s, e3) = waiter.await.unwrap();
    assert_eq!(s, 200);
    assert!(!e3["data"].as_array().unwrap().is_empty());
    assert!(t.elapsed() < Duration::from_secs(15));
    assert_eq!(app.get("/v1/events?after=-1").await.0, 400);
    app.stop().await;
}

async fn webhooks_crud(b: Backend) {
    let app = TestApp::start(b).await;
    let (s, w) = app
        .post("/v1/webhooks", json!({"url": "https://example.com/hook"}))
        .await;
    assert_eq!(s, 201, "{w}");
    assert!(w["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = w["id"].as_str().unwrap();
    let (s, l) = app.get("/v1/webhooks").await;
    assert_eq!(s, 200);
    assert_eq!(l["data"].as_array().unwrap().len(), 1);
    assert!(l["data"][0].get("secret").is_none(), "secret only once");
    let (s, g) = app.get(&format!("/v1/webhooks/{id}")).await;
    assert_eq!(
        (s, g["url"].as_str()),
        (200, Some("https://example.com/hook"))
    );
    assert!(g.get("secret").is_none());
    let (s, d) = app.get(&format!("/v1/webhooks/{id}/deliveries")).await;
    assert_eq!(s, 200);
    assert!(d["data"].is_array());
    let r = app
        .req(Method::DELETE, &format!("/v1/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    assert_eq!(app.get(&format!("/v1/webhooks/{id}")).await.0, 404);
    let r = app
        .req(Method::DELETE, &format!("/v1/webhooks/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 404);
    for bad in [
        json!({"url": "ftp://x/y"}),
        json!({"url": 5}),
        json!({}),
        json!({"url": "javascript:alert(1)"}),
    ] {
        let (s, p) = app.post("/v1/webhooks", bad.clone()).await;
        assert_eq!(s, 422, "{bad}: {p}");
    }
    app.stop().await;
}

async fn auth_required(b: Backend) {
    let app = TestApp::start(b).await;
    let anon = |path: &str| app.http.get(format!("{}{path}", app.base));
    for path in ["/v1/batches", "/v1/sims", "/v1/events", "/v1/webhooks"] {
        let (s, p) = read(anon(path).send().await.unwrap()).await;
        assert_eq!(
            (s, p["code"].as_str()),
            (401, Some("unauthorized")),
            "{path}"
        );
        let (s, _) = read(
            anon(path)
                .header("x-api-key", "sk_nope.secret")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 401);
        let (s, _) = read(
            anon(path)
                .header("x-api-key", "garbage")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 401);
        let (s, _) = read(
            anon(path)
                .header("authorization", "Basic abc")
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 401);
        let bearer = format!("Bearer {}", app.token);
        let (s, _) = read(
            anon(path)
                .header("authorization", bearer)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200, "{path}");
    }
    let (s, _) = read(anon("/healthz").send().await.unwrap()).await;
    assert_eq!(s, 200);
    let (s, _) = read(anon("/readyz").send().await.unwrap()).await;
    assert_eq!(s, 200);
    app.stop().await;
}

async fn tenant_isolation(b: Backend) {
    let app = TestApp::start(b).await;
    app.register(&[iccid(1)]).await;
    let (_, body) = app
        .submit(Some("activate"), vec![json!({"iccid": iccid(9)})])
        .await;
    let id = body["id"].as_str().unwrap().to_owned();
    app.wait_batch(&id).await;
    let (_, w) = app
        .post("/v1/webhooks", json!({"url": "http://127.0.0.1:9/h"}))
        .await;
    let wid = w["id"].as_str().unwrap().to_owned();
    let sim = iccid(1);
    let cases = [
        (Method::GET, format!("/v1/batches/{id}")),
        (Method::GET, format!("/v1/batches/{id}/items")),
        (Method::POST, format!("/v1/batches/{id}/cancel")),
        (Method::POST, format!("/v1/batches/{id}/retry")),
        (Method::GET, format!("/v1/sims/{sim}")),
        (Method::GET, format!("/v1/sims/{sim}/history")),
        (Method::POST, format!("/v1/sims/{sim}/activate?wait=0")),
        (Method::GET, format!("/v1/webhooks/{wid}")),
        (Method::GET, format!("/v1/webhooks/{wid}/deliveries")),
        (Method::DELETE, format!("/v1/webhooks/{wid}")),
    ];
    for (m, path) in cases {
        let (s, p) = read(
            app.req_as(&app.other, m.clone(), &path)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(
            (s, p["code"].as_str()),
            (404, Some("not_found")),
            "{m} {path}"
        );
    }
    for path in ["/v1/batches", "/v1/sims", "/v1/events", "/v1/webhooks"] {
        let (s, p) = read(
            app.req_as(&app.other, Method::GET, path)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(p["data"], json!([]), "{path} leaks: {p}");
    }
    // Still there for the owner.
    assert_eq!(app.get(&format!("/v1/webhooks/{wid}")).await.0, 200);
    assert_eq!(
        app.get(&format!("/v1/sims/{sim}")).await.1["status"],
        "INVENTORY"
    );
    app.stop().await;
}

async fn bad_input_is_4xx_and_loses_nothing(b: Backend) {
    let app = TestApp::start(b).await;
    app.register(&[iccid(1)]).await;
    let raw = |body: &'static str| {
        app.req(Method::POST, "/v1/batches")
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let cases: Vec<(&str, u16, &str)> = vec![
        ("{", 400, "malformed_json"),
        ("", 400, "malformed_json"),
        ("[]", 422, "invalid_type"),
        ("{\"operation\": 5, \"items\": []}", 422, "invalid_type"),
        (
            "{\"operation\": \"activate\", \"items\": \"x\"}",
            422,
            "invalid_type",
        ),
        ("{\"operation\": \"activate\"}", 422, "invalid_request"),
        (
            "{\"operation\": \"explode\", \"items\": [{}]}",
            422,
            "unknown_operation",
        ),
        (
            "{\"operation\": \"activate\", \"items\": []}",
            422,
            "empty_batch",
        ),
        (
            "{\"operation\": \"activate\", \"mode\": \"fast\", \"items\": [{}]}",
            422,
            "invalid_request",
        ),
        (
            "{\"operation\": \"activate\", \"dry_run\": \"yes\", \"items\": [{}]}",
            422,
            "invalid_type",
        ),
        (
            "{\"operation\": \"activate\", \"itemz\": []}",
            422,
            "unknown_field",
        ),
    ];
    for (body, status, code) in cases {
        let (s, p) = read(raw(body).await.unwrap()).await;
        assert_eq!(
            (s, p["code"].as_str().unwrap()),
            (status, code),
            "{body}: {p}"
        );
    }
    // A non-object item names its index.
    let (s, p) = app
        .post(
            "/v1/batches",
            json!({"operation": "activate", "items": [{"iccid": iccid(1)}, 7]}),
        )
        .await;
    assert_eq!((s, p["errors"][0]["index"].as_u64()), (422, Some(1)), "{p}");
    // Too many items.
    let items: Vec<Value> = (0..=MAX_ITEMS).map(|_| json!({})).collect();
    let (s, p) = app.submit(Some("activate"), items).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "too_many_items"));
    // A 10 MB string: a rejected item, not an error, and not echoed back.
    let (s, p) = app
        .submit(
            Some("change_rate_plan"),
            vec![json!({"iccid": iccid(1), "rate_plan": "x".repeat(10 << 20)})],
        )
        .await;
    assert_eq!(s, 202);
    assert_eq!(p["rejected"][0]["code"], "too_long");
    assert!(p.to_string().len() < 10_000);
    // SQL metacharacters are plain data everywhere.
    let sql = "x'); DROP TABLE sims;--";
    let (s, p) = app
        .submit(
            Some("change_rate_plan"),
            vec![json!({"iccid": iccid(1), "rate_plan": sql})],
        )
        .await;
    assert_eq!(s, 202);
    app.wait_batch(p["id"].as_str().unwrap()).await;
    let enc = "x%27%29%3B%20DROP%20TABLE%20sims%3B--";
    for path in [
        format!("/v1/batches/{enc}"),
        format!("/v1/batches/{enc}/items"),
        format!("/v1/sims/{enc}"),
        format!("/v1/webhooks/{enc}"),
        "/v1/batches/not-a-uuid".to_owned(),
        format!("/v1/sims/{}", "9".repeat(5000)),
    ] {
        assert_eq!(app.get(&path).await.0, 404, "{path}");
    }
    let (s, page) = app
        .get(&format!(
            "/v1/sims?rate_plan={}",
            "x%27%29%3B%20DROP%20TABLE%20sims%3B--"
        ))
        .await;
    assert_eq!(s, 200);
    assert_eq!(page["data"][0]["rate_plan"], sql);
    // Wrong media type, wrong method, unknown route.
    let r = app
        .req(Method::POST, "/v1/batches")
        .header("content-type", "text/plain")
        .body("hi")
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.1["code"], "unsupported_media_type");
    let r = app
        .req(Method::POST, "/v1/batches")
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 415);
    let r = app.req(Method::PUT, "/v1/batches").send().await.unwrap();
    assert_eq!(read(r).await.0, 405);
    assert_eq!(app.get("/v1/nothing").await.0, 404);
    // Over 64 MiB of JSON: 413. The server answers before reading the whole
    // body and drops the connection, so this goes through a client of its own:
    // a pooled connection reused afterwards could be closed under a later request.
    let big = vec![b' '; 65 * 1024 * 1024];
    let r = reqwest::Client::new()
        .post(format!("{}/v1/batches", app.base))
        .header("x-api-key", &app.token)
        .header("content-type", "application/json")
        .body(big)
        .send()
        .await;
    if let Ok(r) = r {
        let (s, p) = read(r).await;
        assert_eq!((s, p["code"].as_str().unwrap()), (413, "payload_too_large"));
    }
    // Nothing accepted before was lost.
    let (_, sim) = app.get(&format!("/v1/sims/{}", iccid(1))).await;
    assert_eq!(sim["status"], "INVENTORY");
    assert_eq!(sim["rate_plan"], sql);
    let (_, list) = app.get("/v1/batches?limit=1000").await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        3,
        "register, too_long, sql"
    );
    app.stop().await;
}

fn csv_stream(
    n: usize,
) -> impl futures::Stream<Item = Result<String, std::io::Error>> + Send + 'static {
    futures::stream::iter((0..=n / 1000).map(move |chunk| {
        let mut s = String::new();
        if chunk == 0 {
            s.push_str("iccid\n");
        }
        for i in chunk * 1000..((chunk + 1) * 1000).min(n) {
            s.push_str(&iccid(i));
            s.push('\n');
        }
        Ok(s)
    }))
}

/// A large CSV upload streams through in chunks (SQLite, no workers); one
/// over the limit is refused and its partial batch is cancelled, never run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_csv_streams() {
    let app = TestApp::start_with(Backend::Sqlite, false).await;
    let r = app
        .req(Method::POST, "/v1/batches?operation=register_sim")
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(csv_stream(MAX_ITEMS + 10)))
        .send()
        .await
        .unwrap();
    let (s, p) = read(r).await;
    assert_eq!((s, p["code"].as_str().unwrap()), (422, "too_many_items"));
    let (_, list) = app.get("/v1/batches").await;
    for b in list["data"].as_array().unwrap() {
        assert_eq!(b["status"], "CANCELLED", "{b}");
    }
    app.stop().await;

    let app = TestApp::start_cfg(Backend::Sqlite, false, 1_000_000).await;
    let n = 100_000usize;
    let t = Instant::now();
    let r = app
        .req(
            Method::POST,
            "/v1/batches?operation=register_sim&dry_run=true",
        )
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(csv_stream(n)))
        .send()
        .await
        .unwrap();
    let (s, body) = read(r).await;
    assert_eq!(
        (s, body["counts"]["approved"].as_u64()),
        (200, Some(n as u64))
    );
    eprintln!("{n} rows validated (dry run) in {:?}", t.elapsed());
    let t = Instant::now();
    let r = app
        .req(Method::POST, "/v1/batches?operation=register_sim")
        .header("content-type", "text/csv")
        .body(reqwest::Body::wrap_stream(csv_stream(n)))
        .send()
        .await
        .unwrap();
    let (s, body) = read(r).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["counts"]["total"], n);
    assert_eq!(body["counts"]["approved"], n);
    eprintln!("{n} rows streamed in {:?}", t.elapsed());
    app.stop().await;
}

/// A key verified lately is not read again for a second (see
/// `simbatch_api::key_cache`): a wrong secret is still refused at once, and
/// a key revoked from outside the server stops working within that time.
async fn revoked_key_stops_working_within_the_cache_ttl(b: Backend) {
    let app = TestApp::start(b).await;
    let get = |token: &str| {
        app.http
            .get(format!("{}/v1/batches", app.base))
            .header("x-api-key", token)
            .send()
    };
    let (s, _) = read(get(&app.token).await.unwrap()).await;
    assert_eq!(s, 200);
    let (key_id, _) = app.token.split_once('.').unwrap();
    let wrong = format!("{key_id}.{}", "0".repeat(64));
    let (s, p) = read(get(&wrong).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str()), (401, Some("unauthorized")), "{p}");
    assert!(app.store.revoke_key(key_id).await.unwrap());
    tokio::time::sleep(simbatch_api::key_cache::KEY_TTL + Duration::from_millis(100)).await;
    let (s, p) = read(get(&app.token).await.unwrap()).await;
    assert_eq!((s, p["code"].as_str()), (401, Some("unauthorized")), "{p}");
    app.stop().await;
}
