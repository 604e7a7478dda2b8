//! The web console end to end, in a real headless Chromium driven through
//! WebDriver (chromedriver + fantoccini), against the real router and
//! workers on 127.0.0.1.
//!
//! Needs Debian's `chromium` and `chromium-driver` (`.ci/run` installs them;
//! `CHROMIUM` and `CHROMEDRIVER` override the paths). Without them the test
//! fails, never skips. Screenshots go to `target/e2e-artifacts/`; with
//! `UPDATE_SCREENSHOTS=1` the README's images in `docs/img/` are refreshed.

#[macro_use]
mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{iccid, Backend, TestApp};
use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{json, Value};

/// The three bad rows of the upload: (file line, field, code).
/// (A blank line after line 300 shifts the later ones: the report counts
/// lines of the file, as an editor or a spreadsheet shows them.)
const BAD: [(usize, &str, &str); 3] = [
    (101, "iccid", "iccid_invalid_length"),
    (503, "imsi", "imsi_not_digits"),
    (804, "ki", "ki_not_hex"),
];

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn artifacts() -> PathBuf {
    let dir = workspace_root().join("target/e2e-artifacts");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Drop the screenshots of an earlier run.
fn clear_artifacts() {
    for e in std::fs::read_dir(artifacts()).unwrap().flatten() {
        if e.path()
            .extension()
            .is_some_and(|x| x == "png" || x == "csv")
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// A program from an environment variable or the usual Debian paths.
fn program(var: &str, candidates: &[&str]) -> PathBuf {
    if let Ok(p) = std::env::var(var) {
        return PathBuf::from(p);
    }
    candidates
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .unwrap_or_else(|| {
            panic!(
                "{} not found (tried {candidates:?}; set {var}). Install it with \
                 `apt-get install -y chromium chromium-driver` (.ci/run does). \
                 This test fails rather than skips{}.",
                candidates[0],
                if std::env::var_os("CI").is_some() {
                    " under CI"
                } else {
                    ""
                }
            )
        })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// chromedriver on a random port, killed when dropped.
struct Driver {
    _child: tokio::process::Child,
    url: String,
}

impl Driver {
    async fn start() -> Self {
        let bin = program(
            "CHROMEDRIVER",
            &["/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver"],
        );
        let port = free_port();
        let log = std::fs::File::create(artifacts().join("chromedriver.log")).unwrap();
        let child = tokio::process::Command::new(&bin)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let url = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let start = Instant::now();
        loop {
            if let Ok(r) = http.get(format!("{url}/status")).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "chromedriver did not start"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Self { _child: child, url }
    }
}

/// A fresh headless Chromium session; `phone` emulates a 375×812 screen.
async fn browser(driver: &Driver, profile: &Path, downloads: &Path, phone: bool) -> Client {
    let chromium = program(
        "CHROMIUM",
        &["/usr/bin/chromium", "/usr/bin/chromium-browser"],
    );
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                "--disable-dev-shm-usage", "--window-size=1280,800",
                format!("--user-data-dir={}", profile.display()),
            ],
            "prefs": {
                "download.default_directory": downloads,
                "download.prompt_for_download": false,
            },
        },
    });
    let mut caps = caps;
    if phone {
        caps["goog:chromeOptions"]["mobileEmulation"] = json!({"deviceMetrics": {"width": 375, "height": 812, "pixelRatio": 2.0, "touch": true}});
    }
    let Value::Object(caps) = caps else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a WebDriver session in headless Chromium")
}

/// Evaluate `script` (a function body returning a value) until `ok` holds.
async fn until(
    c: &Client,
    what: &str,
    secs: u64,
    script: &str,
    ok: impl Fn(&Value) -> bool,
) -> Value {
    let start = Instant::now();
    loop {
        let v = c.execute(script, vec![]).await.unwrap_or(Value::Null);
        if ok(&v) {
            return v;
        }
        if start.elapsed() > Duration::from_secs(secs) {
            shot(c, &format!("timeout-{}", what.replace(' ', "-"))).await;
            panic!("timed out waiting for {what}; last value {v}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The trimmed text of the first element matching `css` (empty if none).
async fn text(c: &Client, css: &str) -> String {
    let v = c
        .execute(
            "const e = document.querySelector(arguments[0]); return e ? e.textContent.trim() : '';",
            vec![json!(css)],
        )
        .await
        .unwrap();
    v.as_str().unwrap_or_default().to_owned()
}

async fn wait_text(c: &Client, css: &str, secs: u64, ok: impl Fn(&str) -> bool) -> String {
    let script = format!(
        "const e = document.querySelector({}); return e ? e.textContent.trim() : null;",
        json!(css)
    );
    let v = until(c, css, secs, &script, |v| v.as_str().is_some_and(&ok)).await;
    v.as_str().unwrap().to_owned()
}

/// Save a PNG screenshot into target/e2e-artifacts/.
async fn shot(c: &Client, name: &str) -> Vec<u8> {
    let png = c.screenshot().await.unwrap_or_default();
    std::fs::write(artifacts().join(format!("{name}.png")), &png).unwrap();
    png
}

/// Keep the README's screenshot when asked (`UPDATE_SCREENSHOTS=1`),
/// without the passing notices.
async fn readme_image(c: &Client, name: &str) {
    c.execute(
        "document.getElementById('toast').replaceChildren(); window.scrollTo(0, 0);",
        vec![],
    )
    .await
    .unwrap();
    let png = shot(c, &format!("readme-{name}")).await;
    if std::env::var_os("UPDATE_SCREENSHOTS").is_some() {
        let dir = workspace_root().join("docs/img");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(format!("console-{name}.png")), png).unwrap();
    }
}

/// Record every Blob the page turns into a download, so the test can read it.
const CAPTURE_DOWNLOADS: &str = "
    if (!window.__downloads) {
        window.__downloads = [];
        const orig = URL.createObjectURL.bind(URL);
        URL.createObjectURL = (b) => { window.__downloads.push(b); return orig(b); };
    }
    return window.__downloads.length;";

/// The text of the `n`-th downloaded Blob.
async fn downloaded(c: &Client, n: usize) -> String {
    until(
        c,
        "a download",
        30,
        "return window.__downloads ? window.__downloads.length : 0;",
        |v| v.as_u64().unwrap_or(0) as usize > n,
    )
    .await;
    let v = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.__downloads[arguments[0]].text().then(done, (e) => done('ERROR ' + e));",
            vec![json!(n)],
        )
        .await
        .unwrap();
    v.as_str().unwrap().to_owned()
}

/// 1,000 register_sim rows (ICCID, IMSI, Ki, MSISDN) with CRLF line ends
/// and a blank line after line 300; lines 101, 503 and 804 are bad.
/// Returns the file text and the good ICCIDs.
fn upload_csv() -> (String, Vec<String>) {
    let mut s = String::from("iccid,imsi,ki,msisdn\r\n");
    let mut good = Vec::new();
    for n in 0..1000 {
        let (mut id, mut imsi, mut ki) = (
            iccid(n),
            format!("2080110{:08}", n),
            format!("{:032x}", 0x465b_5ce8_b199_b49f_u128 + n as u128),
        );
        match n {
            99 => id = "8988123".into(),
            500 => imsi = "20801ABC".into(),
            801 => ki = "Z".repeat(32),
            _ => good.push(id.clone()),
        }
        s.push_str(&format!("{id},{imsi},{ki},+33612{:06}\r\n", n));
        if n == 298 {
            s.push_str("\r\n");
        }
    }
    (s, good)
}

/// CSV data rows (the header dropped, blank lines ignored).
fn data_rows(csv: &str) -> Vec<&str> {
    csv.lines()
        .skip(1)
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn console_upload_watch_and_download_failed() {
    clear_artifacts();
    let app = TestApp::start(Backend::Sqlite).await;
    let driver = Driver::start().await;
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("profile");
    let dl_dir = tmp.path().join("downloads");
    std::fs::create_dir_all(&dl_dir).unwrap();
    let c = browser(&driver, &profile, &dl_dir, false).await;
    let result = run(&c, "failure", scenario(&c, &app, tmp.path())).await;
    let _ = c.close().await;
    // The same pages at phone width, in a second session.
    let result = match result {
        Ok(id) => {
            let p = browser(&driver, &tmp.path().join("phone"), &dl_dir, true).await;
            let r = run(&p, "failure-phone", phone(&p, &app, id)).await;
            let _ = p.close().await;
            r
        }
        Err(e) => Err(e),
    };
    // Cancel, on a server without workers so the batch waits for it.
    let idle = TestApp::start_with(Backend::Sqlite, false).await;
    let result = match result {
        Ok(()) => {
            let k = browser(&driver, &tmp.path().join("cancel"), &dl_dir, false).await;
            let r = run(&k, "failure-cancel", cancel(&k, &idle)).await;
            let _ = k.close().await;
            r
        }
        Err(e) => Err(e),
    };
    idle.stop().await;
    drop(driver);
    app.stop().await;
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// Run a scenario, catching its panic so the browser is closed (and a
/// screenshot of the failure kept) before the test fails.
async fn run<T>(
    c: &Client,
    failure: &str,
    f: impl std::future::Future<Output = T>,
) -> Result<T, Box<dyn std::any::Any + Send>> {
    use futures::FutureExt;
    let r = std::panic::AssertUnwindSafe(f).catch_unwind().await;
    if r.is_err() {
        shot(c, failure).await;
    }
    r
}

/// Size the window so the page's viewport is `w`×`h` CSS pixels.
async fn viewport(c: &Client, w: u32, h: u32) {
    c.set_window_size(w, h).await.unwrap();
    let v = c
        .execute("return [window.outerWidth - window.innerWidth, window.outerHeight - window.innerHeight];", vec![])
        .await
        .unwrap();
    let dw = v[0].as_u64().unwrap_or(0) as u32;
    let dh = v[1].as_u64().unwrap_or(0) as u32;
    c.set_window_size(w + dw, h + dh).await.unwrap();
    let v = c
        .execute("return [window.innerWidth, window.innerHeight];", vec![])
        .await
        .unwrap();
    assert_eq!(v, json!([w, h]), "viewport");
}

async fn scenario(c: &Client, app: &TestApp, tmp: &Path) -> String {
    viewport(c, 1280, 800).await;
    // 1. Sign in: a wrong token is refused on the page, the right one kept in
    //    sessionStorage and never put in the URL.
    c.goto(&format!("{}/", app.base)).await.unwrap();
    let token_box = c.wait().for_element(Locator::Id("token")).await.unwrap();
    token_box.send_keys("sk_nope.wrong").await.unwrap();
    c.find(Locator::Id("signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_text(c, "#signin-error", 10, |t| t.contains("not valid")).await;
    shot(c, "01-signin-refused").await;
    token_box.clear().await.unwrap();
    token_box.send_keys(&app.token).await.unwrap();
    c.find(Locator::Id("signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Id("batch-list"))
        .await
        .unwrap();
    let stored = c
        .execute("return sessionStorage.getItem('simbatch.token');", vec![])
        .await
        .unwrap();
    assert_eq!(stored, json!(app.token));
    shot(c, "02-batches-empty").await;

    // 2. New batch: register_sim, upload 1,000 rows of which 3 are bad.
    c.goto(&format!("{}/#/new", app.base)).await.unwrap();
    until(
        c,
        "the operation list",
        10,
        "return document.querySelector('#operation')?.value;",
        |v| v == "register_sim",
    )
    .await;
    let cols = wait_text(c, "#op-columns", 10, |t| t.contains("iccid")).await;
    assert!(cols.contains("imsi") && cols.contains("ki"), "{cols}");
    // The template downloads through the API with the header.
    c.execute(CAPTURE_DOWNLOADS, vec![]).await.unwrap();
    c.find(Locator::Id("template"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let template = downloaded(c, 0).await;
    assert!(
        template.lines().next().unwrap_or("").contains("iccid"),
        "template: {template}"
    );

    let (csv, good) = upload_csv();
    let file = tmp.join("sims.csv");
    std::fs::write(&file, &csv).unwrap();
    c.find(Locator::Id("csv-file"))
        .await
        .unwrap()
        .send_keys(file.to_str().unwrap())
        .await
        .unwrap();

    // 3. The dry-run report names the three errors: row, field, reason.
    let summary = wait_text(c, "#report-summary", 30, |t| t.contains("with errors")).await;
    assert!(
        summary.contains("1,000 rows")
            && summary.contains("997 valid")
            && summary.contains("3 with errors"),
        "{summary}"
    );
    let rows = c
        .execute(
            "return [...document.querySelectorAll('#report-errors tbody tr')]
                 .map(tr => [...tr.cells].map(td => td.textContent.trim()));",
            vec![],
        )
        .await
        .unwrap();
    let rows = rows.as_array().unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for ((line, field, code), row) in BAD.iter().zip(rows) {
        assert_eq!(row[0], json!(line.to_string()), "{row}");
        assert_eq!(row[1], json!(field), "{row}");
        assert_eq!(row[2], json!(code), "{row}");
        assert!(row[3].as_str().unwrap().len() > 10, "a reason: {row}");
    }
    shot(c, "03-dry-run-report").await;
    // Nothing was stored by the dry run.
    let (_, page) = app.get("/v1/batches").await;
    assert_eq!(page["data"], json!([]), "a dry run stores nothing");

    // 4. Submit the 997 valid rows and land on the batch page.
    c.find(Locator::Id("submit-valid"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let url = until(c, "the batch page", 20, "return location.hash;", |v| {
        v.as_str().is_some_and(|h| h.starts_with("#/batches/"))
    })
    .await;
    let id = url
        .as_str()
        .unwrap()
        .trim_start_matches("#/batches/")
        .to_owned();
    assert!(
        !c.current_url().await.unwrap().as_str().contains(&app.token),
        "the token is never in a URL"
    );

    // 5. The page follows the batch live until COMPLETED.
    wait_text(c, "#batch-status", 60, |t| t == "COMPLETED").await;
    wait_text(c, "[data-count=completed] dd", 10, |t| t == "997").await;
    assert_eq!(text(c, "[data-count=total] dd").await, "997");
    assert_eq!(text(c, "[data-count=failed] dd").await, "0");
    shot(c, "04-batch-completed").await;
    let b = app.wait_batch(&id).await;
    assert_eq!(b["status"], "COMPLETED", "{b}");
    assert_eq!(b["counts"]["completed"], 997, "{b}");
    // The item table pages 50 at a time: Next shows indexes 50 to 99, Previous goes back.
    let first_index =
        "return document.querySelector('#item-table tbody tr')?.dataset.index ?? null;";
    until(c, "the first item page", 10, first_index, |v| v == "0").await;
    c.find(Locator::Id("items-next"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "the second item page", 10, first_index, |v| v == "50").await;
    assert_eq!(text(c, "#items-page").await, "Page 2");
    let rows = c
        .execute(
            "return document.querySelectorAll('#item-table tbody tr').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(rows, json!(50));
    c.find(Locator::Id("items-prev"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "back to the first item page", 10, first_index, |v| {
        v == "0"
    })
    .await;

    // 6. Downloads: failed (none) and succeeded (all 997), as CSV.
    c.execute(CAPTURE_DOWNLOADS, vec![]).await.unwrap();
    c.find(Locator::Id("dl-failed-csv"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let failed = downloaded(c, 1).await;
    assert!(
        failed.lines().next().unwrap_or("").contains("iccid"),
        "{failed}"
    );
    assert_eq!(data_rows(&failed).len(), 0, "nothing failed: {failed}");
    wait_text(c, "#download-status", 10, |t| {
        t.starts_with("Saved") && t.contains("failed")
    })
    .await;
    c.find(Locator::Id("dl-succeeded-csv"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let ok = downloaded(c, 2).await;
    let ok_rows = data_rows(&ok);
    assert_eq!(ok_rows.len(), 997, "succeeded export");
    for id in [&good[0], &good[500], &good[996]] {
        assert!(ok.contains(id.as_str()), "{id} in the succeeded export");
    }
    for secret in ["465b5ce8b199b49f", "465B5CE8B199B49F"] {
        assert!(!ok.contains(secret), "a Ki leaked into the export");
    }

    // A batch with failures: activate three registered SIMs and two unknown
    // ones; the failed-items CSV holds exactly the two, with their code.
    let unknown = [iccid(5000), iccid(5001)];
    let mut act = String::from("iccid\n");
    for i in [&good[0], &unknown[0], &good[1], &unknown[1], &good[2]] {
        act.push_str(i);
        act.push('\n');
    }
    let act_file = tmp.join("activate.csv");
    std::fs::write(&act_file, &act).unwrap();
    c.goto(&format!("{}/#/new", app.base)).await.unwrap();
    until(
        c,
        "operations",
        10,
        "return document.querySelectorAll('#operation option').length;",
        |v| v.as_u64().unwrap_or(0) > 1,
    )
    .await;
    c.find(Locator::Id("operation"))
        .await
        .unwrap()
        .select_by_value("activate")
        .await
        .unwrap();
    c.find(Locator::Id("csv-file"))
        .await
        .unwrap()
        .send_keys(act_file.to_str().unwrap())
        .await
        .unwrap();
    let summary = wait_text(c, "#report-summary", 30, |t| t.contains("valid")).await;
    assert!(
        summary.contains("5 rows, 5 valid, 0 with errors"),
        "{summary}"
    );
    c.find(Locator::Id("submit-valid"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "the second batch page",
        20,
        "return location.hash;",
        |v| {
            v.as_str()
                .is_some_and(|h| h.starts_with("#/batches/") && !h.ends_with(&id))
        },
    )
    .await;
    wait_text(c, "#batch-status", 60, |t| t == "PARTIALLY COMPLETED").await;
    wait_text(c, "[data-count=failed] dd", 10, |t| t == "2").await;
    readme_image(c, "batch").await;
    // The item table, filtered to FAILED, shows the code and reason per item.
    c.find(Locator::Id("item-status"))
        .await
        .unwrap()
        .select_by_value("FAILED")
        .await
        .unwrap();
    let items = until(
        c,
        "failed items",
        10,
        "return [...document.querySelectorAll('#item-table tbody tr')]
             .map(tr => [...tr.cells].map(td => td.textContent.trim()));",
        |v| v.as_array().is_some_and(|a| a.len() == 2),
    )
    .await;
    for (row, want) in items.as_array().unwrap().iter().zip(&unknown) {
        assert_eq!(row[1], json!(want), "{row}");
        assert_eq!(row[2], json!("FAILED"), "{row}");
        assert_eq!(row[3], json!("sim_not_found"), "{row}");
        assert!(row[5].as_str().unwrap().contains(want.as_str()), "{row}");
    }
    shot(c, "05-batch-failed-items").await;
    c.execute(CAPTURE_DOWNLOADS, vec![]).await.unwrap();
    c.find(Locator::Id("dl-failed-csv"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let failed = downloaded(c, 3).await;
    std::fs::write(artifacts().join("failed-items.csv"), &failed).unwrap();
    let rows = data_rows(&failed);
    assert_eq!(rows.len(), 2, "{failed}");
    for (row, want) in rows.iter().zip(&unknown) {
        assert!(row.contains(want.as_str()), "{row}");
        assert!(row.contains("sim_not_found"), "{row}");
    }
    for good_id in &good[..3] {
        assert!(!failed.contains(good_id.as_str()), "{good_id} did not fail");
    }
    // The XLSX export downloads too (a ZIP container).
    c.find(Locator::Id("dl-failed-xlsx"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "the xlsx download",
        30,
        "return window.__downloads.length;",
        |v| v == 5,
    )
    .await;
    let magic = c
        .execute_async(
            "const done = arguments[arguments.length - 1];
             window.__downloads[4].slice(0, 2).text().then(done);",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(magic, json!("PK"), "an XLSX file");

    // Retry failed: a new batch of the two failed items, linked to this one.
    let second = c.execute("return location.hash;", vec![]).await.unwrap();
    let second = second
        .as_str()
        .unwrap()
        .trim_start_matches("#/batches/")
        .to_owned();
    c.find(Locator::Id("retry-failed"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(
        c,
        "the retry batch page",
        20,
        "return location.hash;",
        |v| {
            v.as_str()
                .is_some_and(|h| h.starts_with("#/batches/") && !h.ends_with(&second))
        },
    )
    .await;
    wait_text(c, "#batch-summary", 10, |t| t.contains(&second)).await;
    wait_text(c, "#batch-status", 60, |t| t == "PARTIALLY COMPLETED").await;
    wait_text(c, "[data-count=total] dd", 10, |t| t == "2").await;
    wait_text(c, "[data-count=failed] dd", 10, |t| t == "2").await;

    // A file the server refuses as a whole (an unknown column) is explained
    // on the page, and nothing can be submitted.
    let bad_file = tmp.join("bad-header.csv");
    std::fs::write(&bad_file, "iccid,colour\n89880000000000000001,red\n").unwrap();
    c.goto(&format!("{}/#/new", app.base)).await.unwrap();
    until(
        c,
        "operations",
        10,
        "return document.querySelector('#operation')?.value;",
        |v| v == "register_sim",
    )
    .await;
    c.find(Locator::Id("csv-file"))
        .await
        .unwrap()
        .send_keys(bad_file.to_str().unwrap())
        .await
        .unwrap();
    let err = wait_text(c, "#report-error", 20, |t| !t.is_empty()).await;
    assert!(
        err.contains("colour") && err.contains("unknown_column"),
        "{err}"
    );
    let buttons = c
        .execute(
            "return document.querySelectorAll('#report button').length;",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(buttons, json!(0), "nothing to submit");
    shot(c, "06-refused-file").await;

    // The Batches page: live progress bars and counts per state.
    c.goto(&format!("{}/#/batches", app.base)).await.unwrap();
    until(
        c,
        "three batches listed",
        10,
        "return document.querySelectorAll('#batch-list tbody tr').length;",
        |v| v == 3,
    )
    .await;
    wait_text(c, "#state-counts [data-state=COMPLETED] b", 10, |t| {
        t == "1"
    })
    .await;
    wait_text(
        c,
        "#state-counts [data-state=PARTIALLY_COMPLETED] b",
        10,
        |t| t == "2",
    )
    .await;
    shot(c, "06-batches").await;
    readme_image(c, "batches").await;
    // Filters: by status, then by operation (kept in the URL's hash).
    c.find(Locator::Id("f-status"))
        .await
        .unwrap()
        .select_by_value("PARTIALLY_COMPLETED")
        .await
        .unwrap();
    c.find(Locator::Css("#batch-filters button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let rows_by =
        "return [...document.querySelectorAll('#batch-list tbody tr')].map(r => r.dataset.status);";
    until(c, "the status filter", 10, rows_by, |v| {
        v == &json!(["PARTIALLY_COMPLETED", "PARTIALLY_COMPLETED"])
    })
    .await;
    c.goto(&format!("{}/#/batches?operation=register_sim", app.base))
        .await
        .unwrap();
    until(c, "the operation filter", 10, rows_by, |v| {
        v == &json!(["COMPLETED"])
    })
    .await;
    wait_text(
        c,
        "#state-counts [data-state=PARTIALLY_COMPLETED] b",
        10,
        |t| t == "0",
    )
    .await;
    // A state's chip lists the batches in that state (the operation filter kept).
    c.goto(&format!("{}/#/batches", app.base)).await.unwrap();
    wait_text(
        c,
        "#state-counts [data-state=PARTIALLY_COMPLETED] b",
        10,
        |t| t == "2",
    )
    .await;
    c.find(Locator::Css("#state-counts [data-state=COMPLETED] a"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    until(c, "the chip's filter", 10, rows_by, |v| {
        v == &json!(["COMPLETED"])
    })
    .await;

    // SIM lookup by MSISDN: state, plan, custom fields, history; no secrets.
    c.goto(&format!("{}/#/sims", app.base)).await.unwrap();
    let q = c
        .wait()
        .for_element(Locator::Id("lookup-value"))
        .await
        .unwrap();
    q.send_keys("+33612000000").await.unwrap();
    c.find(Locator::Css("form[role=search] button[type=submit]"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let details = wait_text(c, "#sim-details", 10, |t| {
        t.contains(good[0].as_str()) || t.contains("ACTIVATED")
    })
    .await;
    assert!(details.contains("ACTIVATED"), "{details}");
    assert!(details.contains("on file (never shown)"), "{details}");
    wait_text(c, "#sim-history", 10, |t| t.contains("activate")).await;
    let page = c.source().await.unwrap();
    assert!(
        !page.to_ascii_lowercase().contains("465b5ce8b199b49f"),
        "no Ki on the page"
    );
    shot(c, "07-sim-lookup").await;
    // By ICCID and by IMSI too, and a number nobody has.
    for (by, q) in [
        ("iccid", good[1].clone()),
        ("imsi", "208011000000001".to_owned()),
    ] {
        c.goto(&format!("{}/#/sims?by={by}&q={q}", app.base))
            .await
            .unwrap();
        let h = wait_text(c, "#sim-h", 10, |t| t.contains("ACTIVATED")).await;
        assert!(h.contains(good[1].as_str()), "{by}: {h}");
    }
    c.goto(&format!("{}/#/sims?by=any&q=999999999", app.base))
        .await
        .unwrap();
    wait_text(c, "#sim-result", 10, |t| {
        t.contains("No SIM matches 999999999")
    })
    .await;

    // Signing out forgets the token.
    c.find(Locator::Id("signout"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait().for_element(Locator::Id("token")).await.unwrap();
    let stored = c
        .execute("return sessionStorage.getItem('simbatch.token');", vec![])
        .await
        .unwrap();
    assert_eq!(stored, Value::Null);
    id
}

/// Sign in on a 375 px wide phone screen and check the main pages fit: the
/// page itself never scrolls sideways (wide tables scroll in their box).
async fn phone(c: &Client, app: &TestApp, id: String) {
    c.goto(&format!("{}/", app.base)).await.unwrap();
    let token = c.wait().for_element(Locator::Id("token")).await.unwrap();
    token.send_keys(&app.token).await.unwrap();
    c.find(Locator::Id("signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Id("batch-list"))
        .await
        .unwrap();
    let width = c
        .execute("return window.innerWidth;", vec![])
        .await
        .unwrap();
    assert_eq!(width, json!(375), "phone viewport");
    for (name, hash, ready) in [
        ("batches", "#/batches".to_owned(), "#batch-list tbody tr"),
        ("batch", format!("#/batches/{id}"), "#item-table tbody tr"),
        ("new", "#/new".to_owned(), "#operation option"),
        (
            "sims",
            "#/sims?by=msisdn&q=%2B33612000000".to_owned(),
            "#sim-details",
        ),
    ] {
        c.goto(&format!("{}/{hash}", app.base)).await.unwrap();
        let script = format!("return document.querySelectorAll({}).length;", json!(ready));
        until(c, name, 10, &script, |v| v.as_u64().unwrap_or(0) > 0).await;
        let overflow = c
            .execute(
                "return document.documentElement.scrollWidth - window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        shot(c, &format!("phone-{name}")).await;
        assert!(
            overflow.as_i64().unwrap() <= 0,
            "{name} scrolls sideways at 375 px by {overflow}"
        );
    }
}

/// The Cancel button: on a batch that is still waiting, confirmed in the
/// browser's dialog, the batch ends CANCELLED with its items canceled and
/// the button disabled.
async fn cancel(c: &Client, app: &TestApp) {
    let (s, sub) = app
        .submit(
            Some("register_sim"),
            (0..30)
                .map(|i| json!({ "iccid": iccid(7000 + i) }))
                .collect(),
        )
        .await;
    assert_eq!(s, 202, "{sub}");
    let id = sub["id"].as_str().unwrap().to_owned();
    c.goto(&format!("{}/", app.base)).await.unwrap();
    let token = c.wait().for_element(Locator::Id("token")).await.unwrap();
    token.send_keys(&app.token).await.unwrap();
    c.find(Locator::Id("signin-submit"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.wait()
        .for_element(Locator::Id("batch-list"))
        .await
        .unwrap();
    c.goto(&format!("{}/#/batches/{id}", app.base))
        .await
        .unwrap();
    wait_text(c, "#batch-status", 10, |t| t == "PROCESSING").await;
    let enabled = "return !document.getElementById('cancel-batch').disabled;";
    until(c, "cancel enabled", 10, enabled, |v| v == true).await;
    c.find(Locator::Id("cancel-batch"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.accept_alert().await.unwrap();
    wait_text(c, "#batch-status", 10, |t| t == "CANCELLED").await;
    wait_text(c, "[data-count=canceled] dd", 10, |t| t == "30").await;
    until(c, "cancel disabled", 10, enabled, |v| v == false).await;
    shot(c, "08-batch-cancelled").await;
    // The unprocessed split holds the 30 canceled items.
    c.execute(CAPTURE_DOWNLOADS, vec![]).await.unwrap();
    c.find(Locator::Id("dl-unprocessed-csv"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let unprocessed = downloaded(c, 0).await;
    let rows = data_rows(&unprocessed);
    assert_eq!(rows.len(), 30, "{unprocessed}");
    assert!(
        rows.iter().all(|r| r.contains(",CANCELED,")),
        "{unprocessed}"
    );
    let (_, b) = app.get(&format!("/v1/batches/{id}")).await;
    assert_eq!(b["status"], "CANCELLED", "{b}");
    assert_eq!(b["counts"]["canceled"], 30, "{b}");
}
