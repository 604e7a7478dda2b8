//! Bad input through real HTTP, on SQLite and PostgreSQL: every case answers
//! 4xx `application/problem+json` with a stable `code` (naming the item index
//! and field where there is one), never 5xx, and a batch accepted before the
//! bad requests is still intact and completes afterwards.

#[macro_use]
mod common;

use common::{iccid, read, Backend, TestApp, MAX_ITEMS};
use reqwest::Method;
use serde_json::{json, Map, Value};
use simbatch_core::operation::FieldKind;
use simbatch_core::{Operation, ValidationProfile};
use simbatch_engine::service::ServiceConfig;

both_backends!(
    malformed_json_and_wrong_types,
    unknown_operation_empty_and_oversized,
    invalid_identifiers_have_specific_codes,
    strict_identifier_codes,
    ten_megabyte_strings,
    sql_metacharacters_in_every_field,
    sql_metacharacters_in_path_and_query,
);

/// The SQL metacharacter payloads.
const NASTY: [&str; 4] = ["'; DROP TABLE sims;--", "\" OR 1=1 --", "\0", "%_"];

/// Tables that must survive.
const TABLES: [&str; 10] = [
    "tenants",
    "api_keys",
    "templates",
    "sims",
    "sim_history",
    "profiles",
    "batches",
    "batch_items",
    "outbox",
    "webhooks",
];

/// A batch accepted before the bad requests; checked intact afterwards.
struct Prior {
    id: String,
    n: usize,
}

const PRIOR_BASE: usize = 900_000;

async fn prior_batch(app: &TestApp) -> Prior {
    let n = 1500;
    let items = (0..n)
        .map(|i| json!({"iccid": iccid(PRIOR_BASE + i), "rate_plan": "before"}))
        .collect();
    let (s, body) = app.submit(Some("register_sim"), items).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(body["counts"]["approved"], n);
    Prior {
        id: body["id"].as_str().unwrap().to_owned(),
        n,
    }
}

impl Prior {
    async fn verify(&self, app: &TestApp) {
        let done = app.wait_batch(&self.id).await;
        assert_eq!(done["status"], "COMPLETED", "{done}");
        assert_eq!(done["counts"]["total"], self.n, "{done}");
        assert_eq!(done["counts"]["completed"], self.n, "{done}");
        for i in [0, self.n / 2, self.n - 1] {
            let (s, sim) = app
                .get(&format!("/v1/sims/{}", iccid(PRIOR_BASE + i)))
                .await;
            assert_eq!(s, 200, "{sim}");
            assert_eq!(sim["status"], "INVENTORY");
            assert_eq!(sim["rate_plan"], "before");
        }
        let (s, page) = app.get("/v1/sims?rate_plan=before&limit=1000").await;
        assert_eq!(s, 200);
        assert_eq!(page["data"].as_array().unwrap().len(), 1000);
        tables_exist(app).await;
    }
}

/// Every table is still there and answers a count.
async fn tables_exist(app: &TestApp) {
    use sqlx::Connection;
    for t in TABLES {
        let q = format!("SELECT count(*) FROM {t}");
        let n: i64 = if app.url.starts_with("postgres") {
            let mut c = sqlx::PgConnection::connect(&app.url).await.unwrap();
            sqlx::query_scalar(&q).fetch_one(&mut c).await.unwrap()
        } else {
            let mut c = sqlx::SqliteConnection::connect(&app.url).await.unwrap();
            sqlx::query_scalar(&q).fetch_one(&mut c).await.unwrap()
        };
        assert!(n >= 0, "{t}");
    }
}

/// POST a raw body with a content type.
async fn raw(app: &TestApp, path: &str, ct: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
    read(
        app.req(Method::POST, path)
            .header("content-type", ct)
            .body(body)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Assert a problem with a status and code.
fn problem(got: &(u16, Value), status: u16, code: &str, what: &str) {
    assert_eq!(
        (got.0, got.1["code"].as_str().unwrap_or("")),
        (status, code),
        "{what}: {}",
        got.1
    );
    assert_eq!(
        got.1["type"],
        format!("urn:simbatch:problem:{code}"),
        "{what}"
    );
    assert!(got.1["detail"].is_string(), "{what}");
}

/// The first blamed (index, field, code) of a problem.
fn blamed(p: &Value) -> (Option<u64>, Option<&str>, Option<&str>) {
    let e = &p["errors"][0];
    (e["index"].as_u64(), e["field"].as_str(), e["code"].as_str())
}

/// `(index, field, code)` of a submit response's rejections.
fn rejections(body: &Value) -> Vec<(u64, String, String)> {
    body["rejected"]
        .as_array()
        .unwrap_or_else(|| panic!("no rejected list: {body}"))
        .iter()
        .map(|r| {
            assert!(r["reason"].is_string(), "{r}");
            (
                r["index"].as_u64().unwrap(),
                r["field"].as_str().unwrap_or("").to_owned(),
                r["code"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn rej(i: u64, field: &str, code: &str) -> (u64, String, String) {
    (i, field.to_owned(), code.to_owned())
}

async fn malformed_json_and_wrong_types(b: Backend) {
    let app = TestApp::start(b).await;
    let prior = prior_batch(&app).await;
    let good = format!(
        "{{\"operation\":\"activate\",\"items\":[{{\"iccid\":\"{}\"}}]}}",
        iccid(1)
    );
    let json = "application/json";
    // Malformed JSON: 400 malformed_json.
    let truncated = &good[..good.len() - 7];
    for body in [
        truncated.to_owned(),
        format!("{good} trailing"),
        format!("{good}}}"),
        format!("{good}{good}"),
        "{".to_owned(),
        "".to_owned(),
        "{'operation': 'activate'}".to_owned(),
        "\u{feff}".to_owned(),
    ] {
        let got = raw(&app, "/v1/batches", json, body.clone()).await;
        problem(&got, 400, "malformed_json", &body);
    }
    // Invalid UTF-8.
    let got = raw(&app, "/v1/batches", json, vec![b'{', 0xff, 0xfe, b'}']).await;
    problem(&got, 400, "malformed_json", "invalid utf-8");
    // Not an object: 422 invalid_type.
    for body in ["[]", "[1,2]", "\"batch\"", "42", "null", "true"] {
        let got = raw(&app, "/v1/batches", json, body).await;
        problem(&got, 422, "invalid_type", body);
    }
    // Wrong types of batch fields name the field.
    for (body, field) in [
        (json!({"operation": "activate", "items": "x"}), "items"),
        (
            json!({"operation": "activate", "items": {"iccid": iccid(1)}}),
            "items",
        ),
        (json!({"operation": "activate", "items": 5}), "items"),
        (
            json!({"operation": 5, "items": [{"iccid": iccid(1)}]}),
            "operation",
        ),
        (
            json!({"operation": ["activate"], "items": [{"iccid": iccid(1)}]}),
            "operation",
        ),
        (
            json!({"operation": "activate", "dry_run": "yes", "items": [{"iccid": iccid(1)}]}),
            "dry_run",
        ),
        (
            json!({"operation": "activate", "dry_run": 1, "items": [{"iccid": iccid(1)}]}),
            "dry_run",
        ),
        (
            json!({"operation": "activate", "mode": 1, "items": [{"iccid": iccid(1)}]}),
            "mode",
        ),
    ] {
        let got = app.post("/v1/batches", body.clone()).await;
        problem(&got, 422, "invalid_type", &body.to_string());
        assert_eq!(
            blamed(&got.1),
            (None, Some(field), Some("invalid_type")),
            "{body}"
        );
    }
    // An unknown mode.
    let body = json!({"operation": "activate", "mode": "fast", "items": [{"iccid": iccid(1)}]});
    let got = app.post("/v1/batches", body).await;
    problem(&got, 422, "invalid_request", "mode fast");
    assert_eq!(blamed(&got.1), (None, Some("mode"), Some("invalid_value")));
    // Items that are not objects name their index; nothing is stored.
    let body = json!({"operation": "activate",
                      "items": [{"iccid": iccid(1)}, 7, "x", [], null, {"iccid": iccid(2)}]});
    let got = app.post("/v1/batches", body).await;
    problem(&got, 422, "invalid_type", "non-object items");
    let idx: Vec<_> = got.1["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["index"].as_u64().unwrap())
        .collect();
    assert_eq!(idx, vec![1, 2, 3, 4], "{}", got.1);
    // A missing items list, an unknown batch field.
    let got = app
        .post("/v1/batches", json!({"operation": "activate"}))
        .await;
    problem(&got, 422, "invalid_request", "no items");
    assert_eq!(blamed(&got.1), (None, Some("items"), Some("missing_field")));
    let got = app
        .post(
            "/v1/batches",
            json!({"operation": "activate", "items": [], "colour": 1}),
        )
        .await;
    problem(&got, 422, "unknown_field", "colour");
    assert_eq!(blamed(&got.1).1, Some("colour"));
    // Wrong field types inside items: the item is rejected, naming index and field.
    let (s, body) = app
        .submit(
            Some("register_sim"),
            vec![
                json!({"iccid": iccid(10)}),
                json!({"iccid": 8988000000000000011u64}),
                json!({"iccid": iccid(12), "imsi": 460048867619618u64}),
                json!({"iccid": iccid(13), "rate_plan": ["a"]}),
                json!({"iccid": iccid(14), "ki": {"hex": "00"}}),
                json!({"iccid": true}),
            ],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        rejections(&body),
        vec![
            rej(1, "iccid", "invalid_type"),
            rej(2, "imsi", "invalid_type"),
            rej(3, "rate_plan", "invalid_type"),
            rej(4, "ki", "invalid_type"),
            rej(5, "iccid", "invalid_type"),
        ]
    );
    let (s, body) = app
        .submit(
            Some("assign_service"),
            vec![json!({"iccid": iccid(10), "service": "s", "parameters": "not an object"})],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        rejections(&body),
        vec![rej(0, "parameters", "invalid_type")]
    );
    // Streamed uploads: bad query values.
    let ndjson = "application/x-ndjson";
    let line = format!("{{\"iccid\":\"{}\"}}\n", iccid(1));
    let got = raw(
        &app,
        "/v1/batches?operation=activate&mode=fast",
        ndjson,
        line.clone(),
    )
    .await;
    problem(&got, 422, "invalid_request", "ndjson mode");
    assert_eq!(blamed(&got.1).1, Some("mode"));
    let got = raw(
        &app,
        "/v1/batches?operation=activate&dry_run=yes",
        ndjson,
        line.clone(),
    )
    .await;
    problem(&got, 400, "invalid_query", "ndjson dry_run");
    let got = raw(
        &app,
        "/v1/batches?operation=activate&dry_run=yes",
        "text/csv",
        "iccid\n1\n",
    )
    .await;
    problem(&got, 400, "invalid_query", "csv dry_run");
    // NDJSON lines that are not objects or not JSON are rejected items.
    let body = format!("{line}{{\"iccid\":\n[1]\n\"x\"\n{{\"iccid\": 5}}\n{line}");
    let (s, p) = raw(&app, "/v1/batches?operation=register_sim", ndjson, body).await;
    assert_eq!(s, 202, "{p}");
    let codes: Vec<_> = rejections(&p).into_iter().map(|(i, _, c)| (i, c)).collect();
    assert_eq!(
        codes,
        vec![
            (1, "malformed_json".to_owned()),
            (2, "invalid_type".to_owned()),
            (3, "invalid_type".to_owned()),
            (4, "invalid_type".to_owned()),
        ]
    );
    // Malformed CSV: a row with too many cells.
    let csv = format!("iccid,rate_plan\n{},a,b\n{},c\n", iccid(20), iccid(21));
    let (s, p) = raw(&app, "/v1/batches?operation=register_sim", "text/csv", csv).await;
    assert_eq!(s, 202, "{p}");
    assert_eq!(rejections(&p)[0].0, 0);
    assert_eq!(rejections(&p)[0].2, "malformed_row");
    prior.verify(&app).await;
    app.stop().await;
}

async fn unknown_operation_empty_and_oversized(b: Backend) {
    let app = TestApp::start(b).await;
    let prior = prior_batch(&app).await;
    // Unknown operation, batch level: JSON, CSV and NDJSON.
    for op in ["explode", "", "ACTIVATE", "activate; DROP TABLE batches"] {
        let got = app
            .post(
                "/v1/batches",
                json!({"operation": op, "items": [{"iccid": iccid(1)}]}),
            )
            .await;
        problem(&got, 422, "unknown_operation", op);
        assert_eq!(
            blamed(&got.1),
            (None, Some("operation"), Some("unknown_operation"))
        );
    }
    for ct in ["text/csv", "application/x-ndjson"] {
        let got = raw(&app, "/v1/batches?operation=explode", ct, "iccid\n").await;
        problem(&got, 422, "unknown_operation", ct);
        assert_eq!(blamed(&got.1).1, Some("operation"));
    }
    // Unknown operation, item level in a mixed batch: that item only.
    let (s, body) = app
        .submit(
            None,
            vec![
                json!({"operation": "register_sim", "iccid": iccid(1)}),
                json!({"operation": "explode", "iccid": iccid(2)}),
                json!({"operation": 7, "iccid": iccid(3)}),
                json!({"iccid": iccid(4)}),
                json!({"operation": "register_sim", "iccid": iccid(5)}),
            ],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        rejections(&body),
        vec![
            rej(1, "operation", "unknown_operation"),
            rej(2, "operation", "unknown_operation"),
            rej(3, "operation", "missing_field"),
        ]
    );
    let done = app.wait_batch(body["id"].as_str().unwrap()).await;
    assert_eq!(done["counts"]["completed"], 2, "{done}");
    // Item naming another operation than the batch's.
    let (s, body) = app
        .submit(
            Some("register_sim"),
            vec![json!({"operation": "activate", "iccid": iccid(6)})],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        rejections(&body),
        vec![rej(0, "operation", "operation_mismatch")]
    );
    // Mixed NDJSON with an unknown item operation.
    let nd = format!(
        "{{\"operation\":\"register_sim\",\"iccid\":\"{}\"}}\n{{\"operation\":\"explode\",\"iccid\":\"{}\"}}\n",
        iccid(7),
        iccid(8)
    );
    let (s, body) = raw(&app, "/v1/batches", "application/x-ndjson", nd).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        rejections(&body),
        vec![rej(1, "operation", "unknown_operation")]
    );
    // Empty batches.
    let got = app.submit(Some("activate"), vec![]).await;
    problem(&got, 422, "empty_batch", "json");
    let got = app.submit(None, vec![]).await;
    problem(&got, 422, "empty_batch", "json mixed");
    for (ct, body) in [
        ("text/csv", "iccid\n"),
        ("text/csv", ""),
        ("application/x-ndjson", ""),
        ("application/x-ndjson", "\n\n  \n"),
    ] {
        let got = raw(&app, "/v1/batches?operation=activate", ct, body).await;
        assert!(
            got.1["code"] == "empty_batch" || (ct == "text/csv" && body.is_empty()),
            "{ct} {body:?}: {}",
            got.1
        );
        assert!((400..500).contains(&got.0), "{ct} {body:?}: {}", got.1);
    }
    // Oversized: MAX_ITEMS + 1 in JSON, NDJSON and CSV.
    let items: Vec<Value> = (0..=MAX_ITEMS)
        .map(|i| json!({"iccid": iccid(i)}))
        .collect();
    let got = app.submit(Some("activate"), items).await;
    problem(&got, 422, "too_many_items", "json");
    let nd: String = (0..=MAX_ITEMS)
        .map(|i| format!("{{\"iccid\":\"{}\"}}\n", iccid(i)))
        .collect();
    let got = raw(
        &app,
        "/v1/batches?operation=activate",
        "application/x-ndjson",
        nd,
    )
    .await;
    problem(&got, 422, "too_many_items", "ndjson");
    let csv: String = std::iter::once("iccid\n".to_owned())
        .chain((0..=MAX_ITEMS).map(|i| format!("{}\n", iccid(i))))
        .collect();
    let got = raw(&app, "/v1/batches?operation=activate", "text/csv", csv).await;
    problem(&got, 422, "too_many_items", "csv");
    // Exactly MAX_ITEMS is accepted (as a dry run).
    let items: Vec<Value> = (0..MAX_ITEMS).map(|i| json!({"iccid": iccid(i)})).collect();
    let (s, body) = app
        .post(
            "/v1/batches",
            json!({"operation": "activate", "dry_run": true, "items": items}),
        )
        .await;
    assert_eq!(s, 200, "{body}");
    // The oversized streamed uploads left nothing runnable behind.
    let (_, list) = app.get("/v1/batches?limit=1000").await;
    for b in list["data"].as_array().unwrap() {
        if b["counts"]["total"].as_u64().unwrap() > MAX_ITEMS as u64 - 10 {
            assert_eq!(b["status"], "CANCELLED", "{b}");
        }
    }
    prior.verify(&app).await;
    app.stop().await;
}

/// A 32-digit string whose ISO 7064 check fails.
fn bad_eid() -> String {
    (0..100u64)
        .map(|n| format!("89049032{n:024}"))
        .find(|s| !simbatch_core::ids::mod97_valid(s))
        .unwrap()
}

async fn invalid_identifiers_have_specific_codes(b: Backend) {
    let app = TestApp::start(b).await;
    let prior = prior_batch(&app).await;
    let i = iccid(1);
    let cases: Vec<(Value, &str, &str)> = vec![
        (
            json!({"iccid": "8988x000000000000001"}),
            "iccid",
            "iccid_not_digits",
        ),
        (json!({"iccid": "8988"}), "iccid", "iccid_invalid_length"),
        (
            json!({"iccid": "898800000000000000012"}),
            "iccid",
            "iccid_invalid_length",
        ),
        (
            json!({"iccid": i, "imsi": "46004886761961A"}),
            "imsi",
            "imsi_not_digits",
        ),
        (
            json!({"iccid": i, "imsi": "12345"}),
            "imsi",
            "imsi_invalid_length",
        ),
        (
            json!({"iccid": i, "imsi": "1234567890123456"}),
            "imsi",
            "imsi_invalid_length",
        ),
        (
            json!({"iccid": i, "msisdn": "+46-70"}),
            "msisdn",
            "msisdn_not_digits",
        ),
        (
            json!({"iccid": i, "msisdn": "+"}),
            "msisdn",
            "msisdn_not_digits",
        ),
        (
            json!({"iccid": i, "msisdn": "1234"}),
            "msisdn",
            "msisdn_invalid_length",
        ),
        (
            json!({"iccid": i, "msisdn": "1234567890123456"}),
            "msisdn",
            "msisdn_invalid_length",
        ),
        (
            json!({"iccid": i, "eid": "8904903200000000000000000000000X"}),
            "eid",
            "eid_not_digits",
        ),
        (
            json!({"iccid": i, "eid": "1234"}),
            "eid",
            "eid_invalid_length",
        ),
        (json!({"iccid": i, "eid": bad_eid()}), "eid", "eid_checksum"),
        (
            json!({"iccid": i, "ki": "465b5ce8b199b49faa5f0a2ee238a6b"}),
            "ki",
            "ki_invalid_length",
        ),
        (
            json!({"iccid": i, "ki": "465b5ce8b199b49faa5f0a2ee238a6zz"}),
            "ki",
            "ki_not_hex",
        ),
        (
            json!({"iccid": i, "opc": "12"}),
            "opc",
            "opc_invalid_length",
        ),
        (
            json!({"iccid": i, "opc": "g65b5ce8b199b49faa5f0a2ee238a6bc"}),
            "opc",
            "opc_not_hex",
        ),
    ];
    let (items, want): (Vec<Value>, Vec<_>) = cases
        .into_iter()
        .enumerate()
        .map(|(n, (item, f, c))| (item, rej(n as u64, f, c)))
        .unzip();
    let (s, body) = app.submit(Some("register_sim"), items).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(rejections(&body), want);
    // IMEI is a field of import_profile.
    let (s, body) = app
        .submit(
            Some("import_profile"),
            vec![
                json!({"iccid": i, "imei": "35209900176148X"}),
                json!({"iccid": i, "imei": "3520990017614"}),
            ],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        rejections(&body),
        vec![
            rej(0, "imei", "imei_not_digits"),
            rej(1, "imei", "imei_invalid_length")
        ]
    );
    // The same through CSV: the data row index and the column are named.
    let csv = format!("iccid,imsi,ki\n{i},460048867619618,\n{i},1,\n{i},,zz\n");
    let (s, body) = raw(&app, "/v1/batches?operation=register_sim", "text/csv", csv).await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        rejections(&body),
        vec![
            rej(1, "imsi", "imsi_invalid_length"),
            rej(2, "ki", "ki_invalid_length")
        ]
    );
    // Single-SIM orders with a bad ICCID in the path: 404, never 5xx.
    for bad in ["123", "8988x", "%00", "%27%3B"] {
        let got = app
            .post(&format!("/v1/sims/{bad}/activate"), json!({}))
            .await;
        assert_eq!(got.0, 404, "{bad}: {}", got.1);
    }
    prior.verify(&app).await;
    app.stop().await;
}

async fn strict_identifier_codes(b: Backend) {
    let app = TestApp::start_service(
        b,
        true,
        ServiceConfig {
            validation: ValidationProfile::Strict,
            max_items: MAX_ITEMS,
        },
    )
    .await;
    let luhn = |body: &str| {
        (0..10)
            .map(|d| format!("{body}{d}"))
            .find(|s| simbatch_core::ids::luhn_valid(s))
            .unwrap()
    };
    let good = luhn("8988000000000000001");
    let bad_luhn = {
        let last = good.as_bytes()[19] - b'0';
        format!("{}{}", &good[..19], (last + 1) % 10)
    };
    let no_prefix = luhn("1288000000000000001");
    let imei_ok = luhn("35209900176148");
    let imei_bad = {
        let last = imei_ok.as_bytes()[14] - b'0';
        format!("{}{}", &imei_ok[..14], (last + 1) % 10)
    };
    let (s, body) = app
        .submit(
            Some("import_profile"),
            vec![
                json!({"iccid": good, "imei": imei_ok}),
                json!({"iccid": bad_luhn}),
                json!({"iccid": no_prefix}),
                json!({"iccid": good, "imei": imei_bad}),
            ],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    assert_eq!(
        rejections(&body),
        vec![
            rej(1, "iccid", "iccid_luhn"),
            rej(2, "iccid", "iccid_prefix"),
            rej(3, "imei", "imei_luhn"),
        ]
    );
    app.stop().await;
}

async fn ten_megabyte_strings(b: Backend) {
    let app = TestApp::start(b).await;
    let prior = prior_batch(&app).await;
    app.register(&[iccid(1)]).await;
    let big = "x".repeat(10 << 20);
    // In JSON: in a text field, an identifier, a secret and a field name.
    let (s, body) = app
        .submit(
            Some("register_sim"),
            vec![
                json!({"iccid": iccid(2), "rate_plan": big}),
                json!({"iccid": big}),
                json!({"iccid": iccid(3), "imsi": big}),
                json!({"iccid": iccid(4), "ki": big}),
                json!({"iccid": iccid(5), "reference": big}),
                json!({"iccid": iccid(6), big.clone(): "x"}),
                json!({"iccid": iccid(7)}),
            ],
        )
        .await;
    assert_eq!(s, 202);
    let text = body.to_string();
    assert!(text.len() < 20_000, "never echoed: {} bytes", text.len());
    let got = rejections(&body);
    assert_eq!(got.len(), 6, "{text}");
    assert_eq!(got[0], rej(0, "rate_plan", "too_long"));
    assert_eq!(got[1], rej(1, "iccid", "iccid_not_digits"));
    assert_eq!(got[2], rej(2, "imsi", "imsi_not_digits"));
    assert_eq!(got[3], rej(3, "ki", "ki_invalid_length"));
    assert_eq!(got[4], rej(4, "reference", "too_long"));
    assert_eq!((got[5].0, got[5].2.as_str()), (5, "unknown_field"));
    let id = body["id"].as_str().unwrap().to_owned();
    let done = app.wait_batch(&id).await;
    assert_eq!(done["counts"]["completed"], 1, "{done}");
    let (s, items) = app.get(&format!("/v1/batches/{id}/items?limit=1000")).await;
    assert_eq!(s, 200);
    let text = items.to_string();
    assert!(
        text.len() < 50_000,
        "rejected items keep no huge values: {} bytes",
        text.len()
    );
    // A 10 MB string in the batch's own fields.
    let got = app
        .post(
            "/v1/batches",
            json!({"operation": big, "items": [{"iccid": iccid(1)}]}),
        )
        .await;
    problem(&got, 422, "unknown_operation", "huge operation");
    assert!(got.1.to_string().len() < 10_000);
    let got = app
        .post(
            "/v1/batches",
            json!({"operation": "activate", "mode": big, "items": [{"iccid": iccid(1)}]}),
        )
        .await;
    problem(&got, 422, "invalid_request", "huge mode");
    assert!(got.1.to_string().len() < 10_000);
    // As an NDJSON line: that line is rejected, the others run.
    let nd = format!(
        "{{\"iccid\":\"{}\"}}\n{{\"iccid\":\"{}\",\"rate_plan\":\"{big}\"}}\n{big}\n{{\"iccid\":\"{}\"}}\n",
        iccid(20),
        iccid(21),
        iccid(22)
    );
    let (s, body) = raw(
        &app,
        "/v1/batches?operation=register_sim",
        "application/x-ndjson",
        nd,
    )
    .await;
    assert_eq!(s, 202, "{body}");
    assert!(body.to_string().len() < 10_000);
    let codes: Vec<_> = rejections(&body)
        .into_iter()
        .map(|(i, _, c)| (i, c))
        .collect();
    assert_eq!(
        codes,
        vec![
            (1, "line_too_long".to_owned()),
            (2, "line_too_long".to_owned())
        ]
    );
    let done = app.wait_batch(body["id"].as_str().unwrap()).await;
    assert_eq!(done["counts"]["completed"], 2, "{done}");
    // As a CSV cell.
    let csv = format!("iccid,rate_plan\n{},{big}\n{},ok\n", iccid(30), iccid(31));
    let (s, body) = raw(&app, "/v1/batches?operation=register_sim", "text/csv", csv).await;
    assert!((200..500).contains(&s), "{body}");
    assert!(body.to_string().len() < 10_000);
    if s == 202 {
        assert_eq!(rejections(&body)[0].0, 0, "{body}");
    } else {
        assert!(body["code"].is_string());
    }
    // As a query parameter and a path segment.
    // (a URL cannot carry 10 MB: 8 KB, about what proxies allow).
    let long = &big[..8 << 10];
    let got = app.get(&format!("/v1/sims?rate_plan={long}")).await;
    problem(&got, 400, "invalid_query", "long filter");
    for path in [format!("/v1/sims/{long}"), format!("/v1/batches/{long}")] {
        let got = app.get(&path).await;
        problem(&got, 404, "not_found", "long path");
    }
    prior.verify(&app).await;
    app.stop().await;
}

/// A valid value for each required field, so that the field under test is
/// the one to blame.
fn valid_value(name: &str) -> Value {
    match name {
        "apn_status" => json!("ENABLED"),
        "state" => json!("IN_USE"),
        "template" => json!("tpl"),
        "profile_state" => json!("AVAILABLE"),
        "imsi" => json!("001010000000001"),
        "ki" => json!("465b5ce8b199b49faa5f0a2ee238a6bc"),
        _ => json!("v"),
    }
}

/// What a string field does with a payload: accepted, or the code refusing it.
fn expected(kind: FieldKind, payload: &str) -> Option<&'static str> {
    match kind {
        FieldKind::Text(_) | FieldKind::SecretText(_) => {
            payload.contains('\0').then_some("invalid_characters")
        }
        FieldKind::Iccid => Some("iccid_not_digits"),
        FieldKind::Imsi => Some("imsi_not_digits"),
        FieldKind::Msisdn => Some("msisdn_not_digits"),
        FieldKind::Eid => Some("eid_not_digits"),
        FieldKind::Imei => Some("imei_not_digits"),
        FieldKind::Ki => Some(if payload.len() == 32 {
            "ki_not_hex"
        } else {
            "ki_invalid_length"
        }),
        FieldKind::Opc => Some(if payload.len() == 32 {
            "opc_not_hex"
        } else {
            "opc_invalid_length"
        }),
        FieldKind::Op => Some(if payload.len() == 32 {
            "op_not_hex"
        } else {
            "op_invalid_length"
        }),
        FieldKind::SecretCode(..) => Some("invalid_code"),
        FieldKind::Time => Some("invalid_time"),
        FieldKind::SubscriptionState | FieldKind::ApnStatus | FieldKind::InitialProfileState => {
            Some("invalid_value")
        }
        FieldKind::Object => None,
    }
}

async fn sql_metacharacters_in_every_field(b: Backend) {
    let app = TestApp::start(b).await;
    let prior = prior_batch(&app).await;
    let sim = iccid(1);
    app.register(std::slice::from_ref(&sim)).await;
    let mut accepted_total = 0;
    for op in Operation::ALL {
        let mut items = Vec::new();
        let mut want = Vec::new();
        for spec in op.fields() {
            for payload in NASTY {
                let mut item = Map::new();
                for other in op.fields().iter().filter(|s| s.required) {
                    let v = if other.name == "iccid" {
                        json!(sim)
                    } else {
                        valid_value(other.name)
                    };
                    item.insert(other.name.to_owned(), v);
                }
                let (value, outcome) = if spec.kind == FieldKind::Object {
                    (json!({ "k": payload, payload: "v" }), None)
                } else {
                    (json!(payload), expected(spec.kind, payload))
                };
                item.insert(spec.name.to_owned(), value.clone());
                want.push((items.len(), spec.name, spec.is_secret(), value, outcome));
                items.push(Value::Object(item));
            }
        }
        // Mixed-batch form too: the operation is a field of the item.
        for payload in NASTY {
            items.push(json!({"operation": payload, "iccid": sim}));
        }
        let mixed_from = items.len() - NASTY.len();
        let (s, body) = app
            .submit(Some(op.as_str()), items[..mixed_from].to_vec())
            .await;
        assert_eq!(s, 202, "{op}: {body}");
        let rejected = rejections(&body);
        let mut r = rejected.iter();
        for (idx, field, _, _, outcome) in &want {
            if let Some(code) = outcome {
                assert_eq!(
                    r.next(),
                    Some(&rej(*idx as u64, field, code)),
                    "{op}.{field} item {idx}"
                );
            }
        }
        assert_eq!(r.next(), None, "{op}: unexpected rejections {rejected:?}");
        let id = body["id"].as_str().unwrap().to_owned();
        app.wait_batch(&id).await;
        // Accepted values are stored verbatim.
        let (s, page) = app.get(&format!("/v1/batches/{id}/items?limit=1000")).await;
        assert_eq!(s, 200);
        let stored = page["data"].as_array().unwrap();
        assert_eq!(stored.len(), want.len());
        for (idx, field, secret, value, outcome) in &want {
            let item = &stored[*idx];
            assert_eq!(item["index"], *idx as u64);
            if outcome.is_some() {
                assert_eq!(item["status"], "REJECTED", "{op}.{field}: {item}");
                continue;
            }
            accepted_total += 1;
            assert_ne!(item["status"], "REJECTED", "{op}.{field}: {item}");
            if *secret {
                assert!(item["params"].get(*field).is_none(), "{item}");
            } else {
                assert_eq!(&item["params"][*field], value, "{op}.{field}: {item}");
            }
        }
        // The mixed form.
        let (s, body) = app.submit(None, items[mixed_from..].to_vec()).await;
        assert_eq!(s, 202, "{op}: {body}");
        assert!(rejections(&body)
            .iter()
            .all(|r| r.1 == "operation" && r.2 == "unknown_operation"));
        app.wait_batch(body["id"].as_str().unwrap()).await;
    }
    assert!(accepted_total > 50, "{accepted_total}");
    // '%_' is stored verbatim and matched exactly, never as a LIKE pattern
    // (every SIM of the prior batch would match '%_' as a pattern).
    let (s, body) = app
        .submit(
            Some("set_custom_fields"),
            vec![json!({"iccid": sim, "custom_field_1": "%_", "custom_field_2": NASTY[0]})],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    app.wait_batch(body["id"].as_str().unwrap()).await;
    let (s, body) = app
        .submit(
            Some("change_rate_plan"),
            vec![json!({"iccid": sim, "rate_plan": "%_"})],
        )
        .await;
    assert_eq!(s, 202, "{body}");
    app.wait_batch(body["id"].as_str().unwrap()).await;
    for q in [
        "rate_plan=%25_",
        "custom_field_1=%25_",
        "custom_field_2=%27%3B%20DROP%20TABLE%20sims%3B--",
    ] {
        let (s, page) = app.get(&format!("/v1/sims?{q}&limit=1000")).await;
        assert_eq!(s, 200, "{page}");
        let found: Vec<_> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["iccid"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(found, vec![sim.clone()], "{q}");
    }
    let (_, s1) = app.get(&format!("/v1/sims/{sim}")).await;
    assert_eq!(s1["rate_plan"], "%_", "{s1}");
    prior.verify(&app).await;
    app.stop().await;
}

fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

async fn sql_metacharacters_in_path_and_query(b: Backend) {
    let app = TestApp::start(b).await;
    let prior = prior_batch(&app).await;
    // A SIM whose rate plan is a payload, to be found by an exact filter.
    let (s, body) = app
        .submit(
            Some("register_sim"),
            vec![
                json!({"iccid": iccid(1), "rate_plan": NASTY[0], "imsi": "460048867619618"}),
                json!({"iccid": iccid(2), "rate_plan": NASTY[1]}),
                json!({"iccid": iccid(3), "rate_plan": NASTY[3]}),
            ],
        )
        .await;
    assert_eq!(s, 202);
    let id = body["id"].as_str().unwrap().to_owned();
    app.wait_batch(&id).await;
    for payload in NASTY {
        let e = enc(payload);
        for path in [
            format!("/v1/sims/{e}"),
            format!("/v1/sims/{e}/history"),
            format!("/v1/batches/{e}"),
            format!("/v1/batches/{e}/items"),
            format!("/v1/webhooks/{e}"),
            format!("/v1/webhooks/{e}/deliveries"),
        ] {
            let got = app.get(&path).await;
            problem(&got, 404, "not_found", &path);
        }
        for path in [
            format!("/v1/batches/{e}/cancel"),
            format!("/v1/batches/{e}/retry"),
        ] {
            let got = app.post(&path, json!({})).await;
            problem(&got, 404, "not_found", &path);
        }
        for path in [
            format!("/v1/batches?status={e}"),
            format!("/v1/batches?operation={e}"),
            format!("/v1/batches?cursor={e}"),
            format!("/v1/batches?created_after={e}"),
            format!("/v1/batches/{id}/items?status={e}"),
            format!("/v1/batches/{id}/items?cursor={e}"),
            format!("/v1/sims?status={e}"),
            format!("/v1/sims/{}/history?cursor={e}", iccid(1)),
            format!("/v1/events?after={e}"),
            format!("/v1/batches?limit={e}"),
        ] {
            let got = app.get(&path).await;
            assert_eq!(got.0, 400, "{path}: {}", got.1);
            assert!(
                ["invalid_query", "invalid_cursor"].contains(&got.1["code"].as_str().unwrap()),
                "{path}: {}",
                got.1
            );
        }
        // Free-text filters and the SIM cursor: exact matches, never 5xx.
        for filter in ["rate_plan", "imsi", "msisdn", "custom_field_1", "cursor"] {
            let path = format!("/v1/sims?{filter}={e}");
            let (s, page) = app.get(&path).await;
            assert!(s == 200 || s == 400, "{path}: {page}");
            if s == 400 {
                assert_eq!(page["code"], "invalid_query", "{path}: {page}");
                assert!(
                    payload.contains('\0'),
                    "only NUL may be refused: {path}: {page}"
                );
                continue;
            }
            let got: Vec<_> = page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["rate_plan"].as_str().unwrap_or("").to_owned())
                .collect();
            match filter {
                "rate_plan" if !payload.contains('\0') => {
                    assert_eq!(got, vec![payload.to_owned()], "{path}")
                }
                "cursor" => {}
                _ => assert_eq!(got, Vec::<String>::new(), "{path}"),
            }
        }
    }
    // Keyset cursors of other shapes.
    for path in [
        "/v1/batches?cursor=1%20OR%201%3D1",
        "/v1/sims?limit=-1",
        "/v1/events?after=1%20OR%201%3D1",
        "/v1/events?wait=%27",
    ] {
        let got = app.get(path).await;
        assert_eq!(got.0, 400, "{path}: {}", got.1);
    }
    // Idempotency keys are headers: a payload there is data, not SQL.
    let r = app
        .req(Method::POST, "/v1/batches")
        .header("idempotency-key", NASTY[0])
        .json(&json!({"operation": "register_sim", "items": [{"iccid": iccid(4)}]}))
        .send()
        .await
        .unwrap();
    let (s, body) = read(r).await;
    assert!(s == 202 || s == 400, "{body}");
    let (_, sim) = app.get(&format!("/v1/sims/{}", iccid(1))).await;
    assert_eq!(sim["rate_plan"], NASTY[0]);
    prior.verify(&app).await;
    app.stop().await;
}
