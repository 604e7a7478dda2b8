//! Downloads through real HTTP, on SQLite and PostgreSQL: batch item exports
//! (CSV, NDJSON, XLSX) and their re-import, the SIM export, the operation
//! catalogue and CSV templates, and every error a caller can hit; and the
//! CSV files SIM vendors deliver (any column order, extra known columns).

#[macro_use]
mod common;

use std::io::Cursor;

use calamine::{Data, Reader, Xlsx};
use common::{iccid, read, Backend, TestApp};
use reqwest::Method;
use serde_json::{json, Value};

both_backends!(
    failed_items_export_fix_and_reimport,
    csv_export_reimports_as_the_same_items,
    ndjson_export_reimports,
    xlsx_export_is_typed,
    sims_export_never_shows_secrets,
    catalogue_and_templates,
    object_fields_in_csv_cells,
    export_errors,
    formula_cells_are_inert,
    vendor_csv_in_any_column_order,
);

/// Download a path as text, asserting 200 and the content type's start.
async fn download(app: &TestApp, path: &str, content_type: &str) -> String {
    let r = app.req(Method::GET, path).send().await.unwrap();
    assert_eq!(r.status(), 200, "{path}");
    let ct = r.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ct.starts_with(content_type), "{path}: {ct}");
    assert!(r.headers()["content-disposition"]
        .to_str()
        .unwrap()
        .starts_with("attachment"));
    r.text().await.unwrap()
}

async fn upload_csv(app: &TestApp, op: &str, csv: String) -> Value {
    let r = app
        .req(Method::POST, &format!("/v1/batches?operation={op}"))
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await
        .unwrap();
    let (s, body) = read(r).await;
    assert_eq!(s, 202, "{body}");
    body
}

fn csv_rows(text: &str) -> Vec<Vec<String>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(text.as_bytes())
        .records()
        .map(|r| r.unwrap().iter().map(str::to_owned).collect())
        .collect()
}

/// Activate five SIMs of which two are unknown; export the failures, register
/// them, upload the failed-items file unchanged, and see it complete.
async fn failed_items_export_fix_and_reimport(b: Backend) {
    let app = TestApp::start(b).await;
    let known: Vec<String> = (0..3).map(iccid).collect();
    app.register(&known).await;
    let mut csv = String::from("iccid,reference\r\n");
    for i in 0..5 {
        csv.push_str(&format!("{},ref-{i}\r\n", iccid(i)));
    }
    csv.push_str("1234,bad\r\n");
    let sub = upload_csv(&app, "activate", csv).await;
    let id = sub["id"].as_str().unwrap();
    let done = app.wait_batch(id).await;
    assert_eq!(done["counts"]["failed"], 2, "{done}");
    assert_eq!(done["counts"]["rejected"], 1, "{done}");

    let text = download(
        &app,
        &format!("/v1/batches/{id}/export?format=csv&status=failed"),
        "text/csv",
    )
    .await;
    let rows = csv_rows(&text);
    assert_eq!(
        rows[0],
        [
            "iccid",
            "reference",
            "result_index",
            "result_status",
            "result_field",
            "result_code",
            "result_reason",
            "result_data",
            "result_updated_at"
        ]
    );
    assert_eq!(rows.len(), 3, "{text}");
    assert_eq!(rows[1][0], iccid(3));
    assert_eq!(rows[1][1], "ref-3");
    assert_eq!(rows[1][2], "3");
    assert_eq!(rows[1][3], "FAILED");
    assert_eq!(rows[1][5], "sim_not_found");
    assert!(!rows[1][6].is_empty());
    assert_eq!(rows[2][0], iccid(4));

    // The rejected row names its field and code.
    let text = download(
        &app,
        &format!("/v1/batches/{id}/export?status=rejected"),
        "text/csv",
    )
    .await;
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), 2, "{text}");
    assert_eq!(rows[1][2], "5");
    assert_eq!(rows[1][4], "iccid");
    assert!(rows[1][5].starts_with("iccid_"), "{:?}", rows[1]);

    // Fix: register the missing SIMs, then upload the failed file as it is.
    app.register(&[iccid(3), iccid(4)]).await;
    let failed = download(
        &app,
        &format!("/v1/batches/{id}/export?status=failed"),
        "text/csv",
    )
    .await;
    let again = upload_csv(&app, "activate", failed).await;
    assert_eq!(again["counts"]["total"], 2, "{again}");
    assert_eq!(again["counts"]["rejected"], 0, "{again}");
    let again = app.wait_batch(again["id"].as_str().unwrap()).await;
    assert_eq!(again["status"], "COMPLETED", "{again}");
    let (_, sim) = app.get(&format!("/v1/sims/{}", iccid(4))).await;
    assert_eq!(sim["status"], "ACTIVATED");
}

/// The whole export of a batch uploads as a batch with the same items.
async fn csv_export_reimports_as_the_same_items(b: Backend) {
    let app = TestApp::start(b).await;
    let mut csv = String::from("iccid,imsi,msisdn,rate_plan\r\n");
    for i in 0..25 {
        csv.push_str(&format!(
            "{},00101{i:010},4917{i:08},\"plan, {i}\"\r\n",
            iccid(i)
        ));
    }
    let first = upload_csv(&app, "register_sim", csv).await;
    let first_id = first["id"].as_str().unwrap().to_owned();
    app.wait_batch(&first_id).await;
    let text = download(&app, &format!("/v1/batches/{first_id}/export"), "text/csv").await;
    assert_eq!(csv_rows(&text).len(), 26);

    // Re-importing under a dry run: the same items, all approved.
    let r = app
        .req(
            Method::POST,
            "/v1/batches?operation=register_sim&dry_run=true",
        )
        .header("content-type", "text/csv")
        .body(text)
        .send()
        .await
        .unwrap();
    let (s, dry) = read(r).await;
    assert_eq!(s, 200, "{dry}");
    assert_eq!(dry["counts"]["total"], 25, "{dry}");
    assert_eq!(dry["counts"]["rejected"], 0, "{dry}");

    // Submitted for real: registering existing SIMs fails item by item, but
    // the items are the same, in the same order.
    let text = download(&app, &format!("/v1/batches/{first_id}/export"), "text/csv").await;
    let second = upload_csv(&app, "register_sim", text).await;
    let second_id = second["id"].as_str().unwrap();
    app.wait_batch(second_id).await;
    let items = |id: String| {
        let app = &app;
        async move {
            let (_, page) = app.get(&format!("/v1/batches/{id}/items?limit=100")).await;
            page["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| (i["iccid"].clone(), i["params"].clone()))
                .collect::<Vec<_>>()
        }
    };
    let a = items(first_id.clone()).await;
    let b2 = items(second_id.to_owned()).await;
    assert_eq!(a.len(), 25);
    assert_eq!(a, b2);
}

async fn ndjson_export_reimports(b: Backend) {
    let app = TestApp::start(b).await;
    app.register(&[iccid(1), iccid(2)]).await;
    let (s, sub) = app
        .submit(
            Some("change_rate_plan"),
            vec![
                json!({"iccid": iccid(1), "rate_plan": "gold"}),
                json!({"iccid": iccid(2), "rate_plan": "silver"}),
            ],
        )
        .await;
    assert_eq!(s, 202, "{sub}");
    let id = sub["id"].as_str().unwrap();
    app.wait_batch(id).await;
    let text = download(
        &app,
        &format!("/v1/batches/{id}/export?format=ndjson&status=succeeded"),
        "application/x-ndjson",
    )
    .await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["iccid"], iccid(1));
    assert_eq!(lines[0]["rate_plan"], "gold");
    assert_eq!(lines[0]["result_status"], "COMPLETED");
    assert_eq!(lines[1]["result_index"], 1);

    let r = app
        .req(Method::POST, "/v1/batches?operation=change_rate_plan")
        .header("content-type", "application/x-ndjson")
        .body(text)
        .send()
        .await
        .unwrap();
    let (s, again) = read(r).await;
    assert_eq!(s, 202, "{again}");
    assert_eq!(again["counts"]["rejected"], 0, "{again}");
    let again = app.wait_batch(again["id"].as_str().unwrap()).await;
    assert_eq!(again["counts"]["completed"], 2, "{again}");
}

async fn xlsx_export_is_typed(b: Backend) {
    let app = TestApp::start(b).await;
    app.register(&[iccid(7)]).await;
    let (_, sub) = app
        .submit(
            Some("activate"),
            vec![json!({"iccid": iccid(7)}), json!({"iccid": iccid(8)})],
        )
        .await;
    let id = sub["id"].as_str().unwrap();
    app.wait_batch(id).await;
    let r = app
        .req(Method::GET, &format!("/v1/batches/{id}/export?format=xlsx"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
    );
    let bytes = r.bytes().await.unwrap();
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    let sheet = book.worksheet_range("export-1").unwrap();
    let rows: Vec<_> = sheet.rows().collect();
    assert_eq!(rows.len(), 3);
    assert_eq!(rows[0][0], Data::String("iccid".into()));
    // The ICCID stays text, not a number that loses digits.
    assert_eq!(rows[1][0], Data::String(iccid(7)));
    assert_eq!(rows[1][2], Data::Float(0.0), "result_index is a number");
    assert_eq!(rows[2][3], Data::String("FAILED".into()));
    assert!(
        matches!(rows[1][8], Data::DateTime(_)),
        "result_updated_at is a date: {:?}",
        rows[1][8]
    );

    // An empty selection is still a workbook with its header row.
    let r = app
        .req(
            Method::GET,
            &format!("/v1/batches/{id}/export?format=xlsx&status=canceled"),
        )
        .send()
        .await
        .unwrap();
    let bytes = r.bytes().await.unwrap();
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    let sheet = book.worksheet_range("export-1").unwrap();
    assert_eq!(sheet.rows().count(), 1);
}

async fn sims_export_never_shows_secrets(b: Backend) {
    let app = TestApp::start(b).await;
    let ki = "000102030405060708090a0b0c0d0e0f";
    let (s, sub) = app
        .submit(
            Some("register_sim"),
            vec![
                json!({"iccid": iccid(1), "ki": ki, "imsi": "001010000000001"}),
                json!({"iccid": iccid(2)}),
            ],
        )
        .await;
    assert_eq!(s, 202, "{sub}");
    app.wait_batch(sub["id"].as_str().unwrap()).await;
    app.submit(Some("activate"), vec![json!({"iccid": iccid(2)})])
        .await;
    let text = download(&app, "/v1/sims/export", "text/csv").await;
    assert!(!text.to_lowercase().contains(ki), "{text}");
    let rows = csv_rows(&text);
    assert_eq!(rows.len(), 3, "{text}");
    let has_ki = rows[0].iter().position(|c| c == "has_ki").unwrap();
    assert_eq!(rows[1][0], iccid(1));
    assert_eq!(rows[1][1], "001010000000001");
    assert_eq!(rows[1][has_ki], "true");
    assert_eq!(rows[2][has_ki], "false");

    // Filters are those of GET /v1/sims.
    let text = download(
        &app,
        "/v1/sims/export?format=ndjson&status=INVENTORY",
        "application/x-ndjson",
    )
    .await;
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.iter().all(|l| l["status"] == "INVENTORY"), "{text}");
    assert!(lines.iter().any(|l| l["iccid"] == iccid(1)));

    // The other tenant sees none of them.
    let r = app
        .req_as(&app.other, Method::GET, "/v1/sims/export")
        .send()
        .await
        .unwrap();
    let text = r.text().await.unwrap();
    assert_eq!(csv_rows(&text).len(), 1, "{text}");
}

async fn catalogue_and_templates(b: Backend) {
    let app = TestApp::start_with(b, false).await;
    let (s, ops) = app.get("/v1/operations").await;
    assert_eq!(s, 200);
    let ops = ops.as_array().unwrap();
    assert_eq!(ops.len(), 18);
    let reg = ops.iter().find(|o| o["name"] == "register_sim").unwrap();
    let ki = reg["fields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "ki")
        .unwrap();
    assert_eq!(ki["secret"], true);
    for op in ops {
        let name = op["name"].as_str().unwrap();
        let text = download(
            &app,
            &format!("/v1/operations/{name}/template.csv"),
            "text/csv",
        )
        .await;
        let cols: Vec<&str> = op["fields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|f| f["name"].as_str().unwrap())
            .collect();
        assert_eq!(text, format!("{}\r\n", cols.join(",")));
        // A template is a valid (empty) upload header.
        let r = app
            .req(
                Method::POST,
                &format!("/v1/batches?operation={name}&dry_run=true"),
            )
            .header("content-type", "text/csv")
            .body(format!("{text}{}\r\n", vec![""; cols.len()].join(",")))
            .send()
            .await
            .unwrap();
        let (s, body) = read(r).await;
        assert_eq!(s, 200, "{name}: {body}");
    }
    let (s, body) = app.get("/v1/operations/teleport/template.csv").await;
    assert_eq!(s, 404, "{body}");
    let r = app
        .http
        .get(format!("{}/v1/operations", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 401);
}

async fn object_fields_in_csv_cells(b: Backend) {
    let app = TestApp::start(b).await;
    let (_, sub) = app
        .submit(
            Some("create_subscription"),
            vec![json!({"iccid": iccid(1)}), json!({"iccid": iccid(2)})],
        )
        .await;
    let done = app.wait_batch(sub["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let csv = format!(
        "iccid,service,parameters\r\n{},data,\"{{\"\"speed\"\":\"\"10M\"\"}}\"\r\n{},data,not-json\r\n",
        iccid(1),
        iccid(2)
    );
    let sub = upload_csv(&app, "assign_service", csv).await;
    assert_eq!(sub["counts"]["rejected"], 1, "{sub}");
    assert_eq!(sub["rejected"][0]["index"], 1);
    assert_eq!(sub["rejected"][0]["field"], "parameters");
    let id = sub["id"].as_str().unwrap();
    app.wait_batch(id).await;
    let (_, sim) = app.get(&format!("/v1/sims/{}", iccid(1))).await;
    assert_eq!(sim["services"]["data"]["speed"], "10M", "{sim}");

    // The object round-trips through an export as JSON text.
    let text = download(
        &app,
        &format!("/v1/batches/{id}/export?status=completed"),
        "text/csv",
    )
    .await;
    let rows = csv_rows(&text);
    assert_eq!(rows[1][2], r#"{"speed":"10M"}"#);
}

async fn export_errors(b: Backend) {
    let app = TestApp::start(b).await;
    app.register(&[iccid(1)]).await;
    let (_, list) = app.get("/v1/batches").await;
    let id = list["data"][0]["id"].as_str().unwrap().to_owned();
    for (path, code, status) in [
        (
            format!("/v1/batches/{id}/export?format=pdf"),
            "invalid_query",
            400,
        ),
        (
            format!("/v1/batches/{id}/export?status=lost"),
            "invalid_query",
            400,
        ),
        ("/v1/batches/nope/export".to_owned(), "not_found", 404),
        (
            "/v1/sims/export?format=doc".to_owned(),
            "invalid_query",
            400,
        ),
        (
            "/v1/sims/export?status=SLEEPING".to_owned(),
            "invalid_query",
            400,
        ),
    ] {
        let (s, body) = app.get(&path).await;
        assert_eq!(s, status, "{path}: {body}");
        assert_eq!(body["code"], code, "{path}: {body}");
    }
    // Another tenant's batch does not exist for it; no key is 401.
    let r = app
        .req_as(&app.other, Method::GET, &format!("/v1/batches/{id}/export"))
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 404);
    let r = app
        .http
        .get(format!("{}/v1/batches/{id}/export", app.base))
        .send()
        .await
        .unwrap();
    assert_eq!(read(r).await.0, 401);
}

/// Values a spreadsheet would run as formulas (a rate plan, custom fields)
/// come out of a CSV export behind a single quote and out of an XLSX export
/// as plain string cells; the CSV re-imports as the very same items.
async fn formula_cells_are_inert(b: Backend) {
    let app = TestApp::start(b).await;
    app.register(&[iccid(1), iccid(2), iccid(3)]).await;
    let plans = [
        "=HYPERLINK(\"http://evil.example\",\"x\")",
        "+1+cmd|' /C calc'!A0",
        "'=already quoted",
    ];
    let (s, sub) = app
        .submit(
            Some("change_rate_plan"),
            (0..3)
                .map(|i| json!({"iccid": iccid(i + 1), "rate_plan": plans[i]}))
                .collect(),
        )
        .await;
    assert_eq!(s, 202, "{sub}");
    let plan_id = sub["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_batch(&plan_id).await["status"], "COMPLETED");
    let (s, sub) = app
        .submit(
            Some("set_custom_fields"),
            vec![json!({"iccid": iccid(1), "custom_field_1": "@SUM(1,2)",
                "custom_field_2": "-2+3", "custom_field_3": "plain"})],
        )
        .await;
    assert_eq!(s, 202, "{sub}");
    let fields_id = sub["id"].as_str().unwrap().to_owned();
    assert_eq!(app.wait_batch(&fields_id).await["status"], "COMPLETED");

    // CSV: the risky text cells carry one leading quote; others do not.
    let text = download(&app, &format!("/v1/batches/{plan_id}/export"), "text/csv").await;
    let rows = csv_rows(&text);
    let plan_col = rows[0].iter().position(|c| c == "rate_plan").unwrap();
    let got: Vec<&str> = rows[1..].iter().map(|r| r[plan_col].as_str()).collect();
    assert_eq!(
        got,
        [
            "'=HYPERLINK(\"http://evil.example\",\"x\")",
            "'+1+cmd|' /C calc'!A0",
            "''=already quoted"
        ]
    );
    assert_eq!(rows[1][0], iccid(1), "identifiers are not touched");
    let text = download(&app, &format!("/v1/batches/{fields_id}/export"), "text/csv").await;
    let rows = csv_rows(&text);
    let cell = |name: &str| {
        let c = rows[0].iter().position(|c| c == name).unwrap();
        rows[1][c].clone()
    };
    assert_eq!(cell("custom_field_1"), "'@SUM(1,2)");
    assert_eq!(cell("custom_field_2"), "'-2+3");
    assert_eq!(cell("custom_field_3"), "plain");

    // The SIM export guards its rate plan column too.
    let sims = csv_rows(&download(&app, "/v1/sims/export", "text/csv").await);
    let plan_col = sims[0].iter().position(|c| c == "rate_plan").unwrap();
    assert_eq!(sims[1][plan_col], format!("'{}", plans[0]), "{sims:?}");

    // Re-imported, the quote is gone again: the same items, value for value.
    let text = download(&app, &format!("/v1/batches/{plan_id}/export"), "text/csv").await;
    let again = upload_csv(&app, "change_rate_plan", text).await;
    let again_id = again["id"].as_str().unwrap();
    app.wait_batch(again_id).await;
    for id in [&plan_id, &again_id.to_owned()] {
        let (_, page) = app.get(&format!("/v1/batches/{id}/items")).await;
        let got: Vec<&str> = page["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["params"]["rate_plan"].as_str().unwrap())
            .collect();
        assert_eq!(got, plans, "batch {id}");
    }

    // XLSX: the value is unchanged and a string cell, never a formula.
    let r = app
        .req(
            Method::GET,
            &format!("/v1/batches/{plan_id}/export?format=xlsx"),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let bytes = r.bytes().await.unwrap();
    let mut book: Xlsx<_> = calamine::open_workbook_from_rs(Cursor::new(bytes.to_vec())).unwrap();
    let sheet = book.worksheet_range("export-1").unwrap();
    let rows: Vec<_> = sheet.rows().collect();
    let plan_col = rows[0]
        .iter()
        .position(|c| *c == Data::String("rate_plan".into()))
        .unwrap();
    for (i, plan) in plans.iter().enumerate() {
        assert_eq!(rows[i + 1][plan_col], Data::String((*plan).into()));
    }
    let formulas = book.worksheet_formula("export-1").unwrap();
    assert!(
        formulas.used_cells().all(|(_, _, f)| f.is_empty()),
        "no formula cells"
    );
}

/// A vendor's delivery file: a byte-order mark, CRLF, the columns in the
/// vendor's own order with more known fields than iccid, imsi, ki and opc.
/// It loads as it is; secrets are kept but never shown. A column that is
/// not a field of the operation is refused by name, and nothing is stored.
async fn vendor_csv_in_any_column_order(b: Backend) {
    let app = TestApp::start(b).await;
    let ki = "465B5CE8B199B49FAA5F0A2EE238A6BC";
    let opc = "0A1B2C3D4E5F60718293A4B5C6D7E8F9";
    let eid = "89049032123451234512345678901235";
    let mut csv = String::from("\u{feff}opc,msisdn,ki,eid,imsi,rate_plan,iccid\r\n");
    csv.push_str(&format!(
        "{opc},+4917000001,{ki},{eid},262019876543210,iot-s,{}\r\n",
        iccid(1)
    ));
    csv.push_str(&format!(
        "{opc},4917000002,{ki},,262019876543211,,{}\r\n",
        iccid(2)
    ));
    let sub = upload_csv(&app, "register_sim", csv).await;
    assert_eq!(sub["counts"]["rejected"], 0, "{sub}");
    let done = app.wait_batch(sub["id"].as_str().unwrap()).await;
    assert_eq!(done["status"], "COMPLETED", "{done}");
    let (_, sim) = app.get(&format!("/v1/sims/{}", iccid(1))).await;
    assert_eq!(sim["imsi"], "262019876543210", "{sim}");
    assert_eq!(sim["msisdn"], "4917000001", "{sim}");
    assert_eq!(sim["eid"], eid, "{sim}");
    assert_eq!(sim["rate_plan"], "iot-s", "{sim}");
    assert_eq!(sim["has_ki"], true, "{sim}");
    let shown = sim.to_string().to_ascii_uppercase();
    assert!(!shown.contains(ki) && !shown.contains(opc), "{sim}");

    // A vendor column that is no field of register_sim: 400 naming it.
    let before = app.get("/v1/batches").await.1["data"]
        .as_array()
        .unwrap()
        .len();
    let r = app
        .req(Method::POST, "/v1/batches?operation=register_sim")
        .header("content-type", "text/csv")
        .body(format!(
            "iccid,imsi,ki,opc,batch_no\r\n{},262019876543212,{ki},{opc},7\r\n",
            iccid(3)
        ))
        .send()
        .await
        .unwrap();
    let (s, body) = read(r).await;
    assert_eq!(s, 400, "{body}");
    assert_eq!(body["code"], "unknown_column", "{body}");
    assert_eq!(body["errors"][0]["field"], "batch_no", "{body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("column 5 'batch_no'"),
        "{body}"
    );
    let after = app.get("/v1/batches").await.1["data"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(before, after, "nothing stored");
}
