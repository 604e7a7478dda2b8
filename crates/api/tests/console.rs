//! The web console's files over real HTTP, on SQLite and PostgreSQL: served
//! without authentication, with the right content types and a strict
//! Content-Security-Policy, and every module the page loads is there; and
//! the per-state batch counts its Batches page shows.

#[macro_use]
mod common;

use std::collections::BTreeSet;

use common::{iccid, read, Backend, TestApp};
use reqwest::Method;
use serde_json::json;

both_backends!(
    index_and_assets_load_without_auth,
    strict_csp_and_no_inline_code,
    unknown_files_and_methods_are_problems,
    revalidation_answers_304,
    batch_counts_per_state,
);

/// GET without any credentials: status, content type, body.
async fn get_anon(app: &TestApp, path: &str) -> (u16, String, reqwest::header::HeaderMap, String) {
    let r = app
        .http
        .get(format!("{}{path}", app.base))
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    let ct = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    (status, ct, headers, r.text().await.unwrap())
}

/// The `/console/...` files a text refers to (`src=`, `href=`, `from './x'`).
fn references(text: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for part in text.split("/console/").skip(1) {
        let name: String = part
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '.' || *c == '-' || *c == '_')
            .collect();
        out.insert(name);
    }
    for part in text.split("from './").skip(1) {
        out.insert(part.split('\'').next().unwrap_or("").to_owned());
    }
    out
}

async fn index_and_assets_load_without_auth(b: Backend) {
    let app = TestApp::start_with(b, false).await;
    let (s, ct, headers, html) = get_anon(&app, "/").await;
    assert_eq!(s, 200, "{html}");
    assert_eq!(ct, "text/html; charset=utf-8");
    assert!(headers.contains_key("x-request-id"));
    assert!(html.contains(r#"<script type="module" src="/console/app.js"></script>"#));
    assert!(
        html.contains(r#"<meta name="viewport""#),
        "usable on a phone"
    );

    // Crawl everything the page loads, transitively.
    let mut todo: Vec<String> = references(&html).into_iter().collect();
    let mut seen = BTreeSet::new();
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let (s, ct, _, body) = get_anon(&app, &format!("/console/{name}")).await;
        assert_eq!(s, 200, "/console/{name}: {body}");
        let want = match name.rsplit('.').next().unwrap() {
            "js" => "text/javascript; charset=utf-8",
            "css" => "text/css; charset=utf-8",
            "svg" => "image/svg+xml",
            other => panic!("unexpected asset type {other}"),
        };
        assert_eq!(ct, want, "/console/{name}");
        todo.extend(references(&body).into_iter().filter(|r| !seen.contains(r)));
    }
    for must in [
        "app.js",
        "api.js",
        "ui.js",
        "app.css",
        "icon.svg",
        "signin.js",
        "batches.js",
        "batch.js",
        "new.js",
        "sims.js",
    ] {
        assert!(seen.contains(must), "{must} is not loaded: {seen:?}");
    }
    // Loading the console opens nothing of the API: /v1 still needs a key.
    let (s, _, _, body) = get_anon(&app, "/v1/batches").await;
    assert_eq!(s, 401, "{body}");
    // And the token never travels in a URL: the client sends a header.
    let (_, _, _, api_js) = get_anon(&app, "/console/api.js").await;
    assert!(api_js.contains("'X-API-Key'"));
    assert!(api_js.contains("sessionStorage"));
    app.stop().await;
}

async fn strict_csp_and_no_inline_code(b: Backend) {
    let app = TestApp::start_with(b, false).await;
    for path in [
        "/",
        "/console/app.js",
        "/console/app.css",
        "/console/icon.svg",
    ] {
        let (s, _, h, _) = get_anon(&app, path).await;
        assert_eq!(s, 200, "{path}");
        let csp = h
            .get("content-security-policy")
            .unwrap_or_else(|| panic!("{path}: no CSP"))
            .to_str()
            .unwrap();
        let directive = |name: &str| {
            csp.split(';')
                .map(str::trim)
                .find(|d| d.starts_with(&format!("{name} ")))
                .unwrap_or_else(|| panic!("{path}: no {name} in {csp}"))
                .to_owned()
        };
        assert_eq!(directive("default-src"), "default-src 'none'");
        assert_eq!(directive("script-src"), "script-src 'self'");
        assert_eq!(directive("style-src"), "style-src 'self'");
        assert_eq!(directive("connect-src"), "connect-src 'self'");
        assert_eq!(directive("frame-ancestors"), "frame-ancestors 'none'");
        assert_eq!(directive("object-src"), "object-src 'none'");
        assert!(
            !csp.contains("unsafe-inline") && !csp.contains("unsafe-eval"),
            "{csp}"
        );
        assert!(
            !csp.contains("http:") && !csp.contains("https:"),
            "no remote origin: {csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff", "{path}");
        assert_eq!(h["referrer-policy"], "no-referrer", "{path}");
        assert_eq!(h["cache-control"], "no-cache", "{path}");
    }
    // The page itself carries no inline script, handler or style attribute,
    // and loads nothing from another origin.
    let (_, _, _, html) = get_anon(&app, "/").await;
    let lower = html.to_ascii_lowercase();
    for tag in lower.split("<script").skip(1) {
        assert!(
            tag.split('>').next().unwrap().contains(" src="),
            "inline script in {html}"
        );
    }
    for bad in [
        " onclick=",
        " onload=",
        " style=",
        "javascript:",
        "http://",
        "https://",
        "<style",
    ] {
        assert!(!lower.contains(bad), "index.html contains {bad}");
    }
    app.stop().await;
}

async fn unknown_files_and_methods_are_problems(b: Backend) {
    let app = TestApp::start_with(b, false).await;
    for path in [
        "/console/nope.js",
        "/console/..%2Flib.rs",
        "/console/",
        "/console/app.js/x",
    ] {
        let (s, body) = read(
            app.http
                .get(format!("{}{path}", app.base))
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(s, 404, "{path}: {body}");
        assert_eq!(body["code"], "not_found", "{path}: {body}");
    }
    let (s, body) = read(app.req(Method::POST, "/").send().await.unwrap()).await;
    assert_eq!(s, 405, "{body}");
    let (s, body) = read(
        app.req(Method::DELETE, "/console/app.js")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(s, 405, "{body}");
    app.stop().await;
}

async fn revalidation_answers_304(b: Backend) {
    let app = TestApp::start_with(b, false).await;
    for path in ["/", "/console/app.js"] {
        let (s, _, h, body) = get_anon(&app, path).await;
        assert_eq!(s, 200);
        let tag = h["etag"].to_str().unwrap().to_owned();
        assert!(tag.starts_with('"') && tag.ends_with('"'), "{tag}");
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .header("if-none-match", &tag)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 304, "{path}");
        assert!(r.headers().contains_key("content-security-policy"));
        assert_eq!(r.text().await.unwrap(), "");
        // A stale tag gets the file again.
        let r = app
            .http
            .get(format!("{}{path}", app.base))
            .header("if-none-match", "\"stale\"")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.text().await.unwrap(), body);
    }
    app.stop().await;
}

/// `GET /v1/batches/counts`, which the Batches page's chips show: one count
/// per state under the list's filters, tenant-scoped, bad filters named.
async fn batch_counts_per_state(b: Backend) {
    let app = TestApp::start(b).await;
    let (s, c) = app.get("/v1/batches/counts").await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(
        c,
        json!({"total": 0, "by_status": {"INITIALISING": 0, "PROCESSING": 0,
            "COMPLETED": 0, "PARTIALLY_COMPLETED": 0, "CANCELLED": 0}})
    );

    // COMPLETED (register), PARTIALLY_COMPLETED (activate of an unknown SIM).
    app.register(&[iccid(1)]).await;
    let (_, sub) = app
        .submit(Some("activate"), vec![json!({"iccid": iccid(2)})])
        .await;
    let failed = app.wait_batch(sub["id"].as_str().unwrap()).await;
    assert_eq!(failed["status"], "PARTIALLY_COMPLETED", "{failed}");
    let (_, c) = app.get("/v1/batches/counts").await;
    assert_eq!(c["total"], 2, "{c}");
    assert_eq!(c["by_status"]["COMPLETED"], 1, "{c}");
    assert_eq!(c["by_status"]["PARTIALLY_COMPLETED"], 1, "{c}");

    // The same filters as the list, and the same number of batches.
    for q in [
        "operation=activate",
        "operation=register_sim",
        "status=completed",
        "created_after=2000-01-01T00:00:00Z&created_before=2100-01-01T00:00:00Z",
        "created_after=2100-01-01T00:00:00Z",
    ] {
        let (s, c) = app.get(&format!("/v1/batches/counts?{q}")).await;
        assert_eq!(s, 200, "{q}: {c}");
        let (_, page) = app.get(&format!("/v1/batches?{q}")).await;
        let listed = page["data"].as_array().unwrap();
        assert_eq!(c["total"], listed.len(), "{q}: {c}");
        for batch in listed {
            let st = batch["status"].as_str().unwrap();
            assert!(c["by_status"][st].as_i64().unwrap() >= 1, "{q}: {c}");
        }
    }

    // Another tenant sees none of them.
    let r = app
        .req_as(&app.other, Method::GET, "/v1/batches/counts")
        .send()
        .await
        .unwrap();
    let (s, c) = read(r).await;
    assert_eq!((s, c["total"].clone()), (200, json!(0)), "{c}");

    // Bad filters: 400 naming the field; no key: 401.
    for (q, field) in [
        ("status=DONE", "status"),
        ("operation=teleport", "operation"),
        ("created_after=yesterday", "created_after"),
        ("created_before=2025-13-01", "created_before"),
    ] {
        let (s, body) = app.get(&format!("/v1/batches/counts?{q}")).await;
        assert_eq!(s, 400, "{q}: {body}");
        assert_eq!(body["code"], "invalid_query", "{q}: {body}");
        assert_eq!(body["errors"][0]["field"], field, "{q}: {body}");
        // The list answers the same bad filter the same way.
        let (s, list) = app.get(&format!("/v1/batches?{q}")).await;
        assert_eq!((s, &list["errors"]), (400, &body["errors"]), "{q}");
    }
    let r = app
        .http
        .get(format!("{}/v1/batches/counts", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 401);
}
