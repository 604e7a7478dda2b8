//! The CLI client as a user runs it: the real `simbatch` binary against a
//! real `simbatch serve` (SQLite, like the other binary tests), checking
//! output, `--json` documents and exit codes (0 success, 1 failures, 2
//! usage or connection errors). Also the serve side of operating it:
//! JSON logs carrying the request id, and the rate-limit flags.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

const MASTER_KEY: &str = "6c1a6bd1b8a3f0c7e52d0e6f4a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_simbatch"));
    c.env("SIMBATCH_MASTER_KEY", MASTER_KEY)
        .env_remove("SIMBATCH_DATABASE_URL")
        .env_remove("SIMBATCH_LISTEN")
        .env_remove("SIMBATCH_CONFIG")
        .env_remove("SIMBATCH_URL")
        .env_remove("SIMBATCH_TOKEN")
        .env_remove("SIMBATCH_LOG_FORMAT")
        .env_remove("SIMBATCH_LOG_JSON")
        .env_remove("SIMBATCH_RATE_LIMIT_RPS")
        .current_dir(dir)
        .kill_on_drop(true);
    c
}

struct Server {
    _child: Child,
    base: String,
    token: String,
    dir: tempfile::TempDir,
    log: std::path::PathBuf,
}

impl Server {
    async fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let db = format!("sqlite://{}", dir.path().join("t.db").display());
        let o = cmd(dir.path())
            .args(["keys", "--database-url", &db, "create", "--tenant", "acme"])
            .output()
            .await
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let key: Value = serde_json::from_slice(&o.stdout).unwrap();
        let addr = free_addr();
        let log = dir.path().join("serve.log");
        let child = cmd(dir.path())
            .args(["serve", "--listen", &addr, "--database-url", &db])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::from(std::fs::File::create(&log).unwrap()))
            .spawn()
            .unwrap();
        let base = format!("http://{addr}");
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        while http.get(format!("{base}/healthz")).send().await.is_err() {
            assert!(Instant::now() < deadline, "{base} did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Self {
            _child: child,
            base,
            token: key["token"].as_str().unwrap().to_owned(),
            dir,
            log,
        }
    }

    /// Run the client with this server's URL and token in the environment.
    async fn cli(&self, args: &[&str]) -> Output {
        cmd(self.dir.path())
            .env("SIMBATCH_URL", &self.base)
            .env("SIMBATCH_TOKEN", &self.token)
            .args(args)
            .stdin(Stdio::null())
            .output()
            .await
            .unwrap()
    }

    fn write(&self, name: &str, text: &str) -> String {
        let p = self.dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    }
}

fn code(o: &Output) -> i32 {
    o.status.code().expect("exited")
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!(
            "stdout is not one JSON document ({e}):\n{}\nstderr:\n{}",
            out(o),
            String::from_utf8_lossy(&o.stderr)
        )
    })
}

fn iccid(n: usize) -> String {
    format!("8988{n:016}")
}

fn csv(header: &str, rows: impl Iterator<Item = String>) -> String {
    let mut s = format!("{header}\n");
    for r in rows {
        s.push_str(&r);
        s.push('\n');
    }
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn submit_wait_watch_batches_sims_and_exit_codes() {
    let srv = Server::start(&[]).await;
    // 1. Register 20 SIMs from CSV, waiting: exit 0.
    let reg = srv.write(
        "reg.csv",
        &csv(
            "iccid,imsi",
            (0..20).map(|n| format!("{},46004{n:010}", iccid(n))),
        ),
    );
    let o = srv
        .cli(&[
            "submit",
            "--operation",
            "register_sim",
            "--file",
            &reg,
            "--wait",
        ])
        .await;
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        out(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        out(&o).contains("COMPLETED: total 20 completed 20"),
        "{}",
        out(&o)
    );
    assert!(
        o.stderr.is_empty() || !String::from_utf8_lossy(&o.stderr).contains('\r'),
        "no bar without a terminal"
    );

    // 2. Activate 20 known + 2 unknown SIMs, one bad row: dry run names the row, exit 1.
    let rows = (0..22).map(iccid).chain(std::iter::once("123".to_owned()));
    let act = srv.write("act.csv", &csv("iccid", rows));
    let o = srv
        .cli(&[
            "submit",
            "--operation",
            "activate",
            "--file",
            &act,
            "--dry-run",
        ])
        .await;
    assert_eq!(code(&o), 1, "{}", out(&o));
    let text = out(&o);
    assert!(text.contains("row 23: iccid: "), "{text}");
    assert!(text.contains("(iccid_invalid_length)"), "{text}");
    assert!(
        text.contains("dry run: 23 items, 1 rejected; nothing stored"),
        "{text}"
    );

    // 3. Submit it for real, --json --wait: one document, exit 1 (failures and a rejected row).
    let o = srv
        .cli(&[
            "submit",
            "--operation",
            "activate",
            "--file",
            &act,
            "--mode",
            "sequential_per_iccid",
            "--wait",
            "--json",
        ])
        .await;
    assert_eq!(code(&o), 1);
    let doc = json(&o);
    assert_eq!(doc["submit"]["rejected"][0]["index"], 22, "{doc}");
    assert_eq!(doc["submit"]["rejected"][0]["field"], "iccid");
    assert_eq!(doc["batch"]["status"], "PARTIALLY_COMPLETED", "{doc}");
    assert_eq!(doc["batch"]["mode"], "sequential_per_iccid");
    assert_eq!(doc["batch"]["counts"]["completed"], 20);
    assert_eq!(doc["batch"]["counts"]["failed"], 2);
    let partial = doc["batch"]["id"].as_str().unwrap().to_owned();

    // 4. A clean NDJSON batch without --wait: exit 0, then watch it: exit 0.
    let nd = srv.write(
        "susp.ndjson",
        &(0..5)
            .map(|n| format!("{{\"iccid\":\"{}\"}}\n", iccid(n)))
            .collect::<String>(),
    );
    let o = srv
        .cli(&["submit", "--operation", "suspend", "--file", &nd, "--json"])
        .await;
    assert_eq!(code(&o), 0, "{}", out(&o));
    let doc = json(&o);
    assert!(doc["batch"].is_null());
    let clean = doc["submit"]["id"].as_str().unwrap().to_owned();
    let o = srv.cli(&["watch", &clean]).await;
    assert_eq!(code(&o), 0, "{}", out(&o));
    assert!(
        out(&o).starts_with(&format!("batch {clean} COMPLETED")),
        "{}",
        out(&o)
    );
    let o = srv.cli(&["watch", &partial, "--json"]).await;
    assert_eq!(code(&o), 1);
    assert_eq!(json(&o)["status"], "PARTIALLY_COMPLETED");

    // 5. batches list / show / retry / cancel.
    let o = srv.cli(&["batches", "list", "--json"]).await;
    assert_eq!(code(&o), 0);
    let ids: Vec<String> = json(&o)["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids.contains(&partial) && ids.contains(&clean));
    let o = srv
        .cli(&["batches", "list", "--status", "PARTIALLY_COMPLETED"])
        .await;
    assert_eq!(code(&o), 0);
    assert_eq!(out(&o).lines().count(), 2, "{}", out(&o));
    assert!(out(&o).lines().nth(1).unwrap().starts_with(&partial));
    let o = srv.cli(&["batches", "counts", "--json"]).await;
    assert_eq!(code(&o), 0);
    let c = json(&o);
    assert_eq!(c["total"], 3, "{c}");
    assert_eq!(c["by_status"]["PARTIALLY_COMPLETED"], 1, "{c}");
    let o = srv
        .cli(&["batches", "counts", "--operation", "suspend"])
        .await;
    assert_eq!(code(&o), 0);
    assert!(
        out(&o)
            .lines()
            .any(|l| l.split_whitespace().eq(["total", "1"])),
        "{}",
        out(&o)
    );
    let o = srv
        .cli(&["batches", "counts", "--created-after", "last week"])
        .await;
    assert_eq!(code(&o), 2, "a bad filter is the server refusing: exit 2");
    assert!(out(&o).is_empty());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("created_after"),
        "the error names the filter"
    );
    let o = srv.cli(&["batches", "show", &partial, "--json"]).await;
    assert_eq!(
        (code(&o), json(&o)["id"].as_str()),
        (0, Some(partial.as_str()))
    );
    let o = srv.cli(&["batches", "show", &partial]).await;
    assert!(
        out(&o).contains("status: PARTIALLY_COMPLETED"),
        "{}",
        out(&o)
    );
    // The unknown SIMs fail again on retry: exit 1.
    let o = srv
        .cli(&["batches", "retry", &partial, "--wait", "--json"])
        .await;
    assert_eq!(code(&o), 1, "{}", out(&o));
    let retried = json(&o);
    assert_eq!(retried["parent_id"], partial.as_str());
    assert_eq!(retried["counts"]["failed"], 2, "{retried}");
    // Cancelling a finished batch is refused by the server: exit 2 with its problem.
    let o = srv.cli(&["batches", "cancel", &clean, "--json"]).await;
    assert_eq!(code(&o), 2);
    assert_eq!(json(&o)["code"], "conflict");
    let o = srv.cli(&["batches", "show", "no-such-batch"]).await;
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("404 not_found"));

    // 6. sims show: state shown, secrets never.
    let o = srv.cli(&["sims", "show", &iccid(0), "--json"]).await;
    assert_eq!(code(&o), 0);
    let sim = json(&o);
    assert_eq!(sim["iccid"], iccid(0).as_str());
    assert_eq!(sim["status"], "SUSPENDED");
    assert!(!out(&o).to_lowercase().contains("\"ki\""));
    let o = srv.cli(&["sims", "show", &iccid(0)]).await;
    assert!(out(&o).contains("status: SUSPENDED"), "{}", out(&o));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_and_connection_errors_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let run = |args: Vec<String>| {
        let mut c = cmd(dir.path());
        c.args(args).stdin(Stdio::null());
        async move { c.output().await.unwrap() }
    };
    let s = |v: &[&str]| v.iter().map(|a| a.to_string()).collect::<Vec<_>>();
    // clap usage errors.
    for args in [
        s(&["submit", "--operation", "activate"]),
        s(&["batches", "frobnicate"]),
        s(&["export", "x", "--format", "pdf"]),
        s(&["watch"]),
    ] {
        let o = run(args.clone()).await;
        assert_eq!(code(&o), 2, "{args:?}");
    }
    // Our own usage errors.
    let o = run(s(&["batches", "list", "--url", "not a url"])).await;
    assert_eq!(code(&o), 2);
    let o = run(s(&[
        "submit",
        "--operation",
        "activate",
        "--file",
        "/nonexistent/x.csv",
        "--json",
    ]))
    .await;
    assert_eq!(code(&o), 2);
    assert_eq!(json(&o)["code"], "usage");
    // Nothing listens: connection refused.
    let closed = free_addr();
    let url = format!("http://{closed}");
    for args in [
        s(&["batches", "list", "--url", &url]),
        s(&["watch", "b1", "--url", &url]),
        s(&["sims", "show", "8988", "--url", &url]),
    ] {
        let o = run(args.clone()).await;
        assert_eq!(code(&o), 2, "{args:?}");
        assert!(
            String::from_utf8_lossy(&o.stderr).contains("cannot reach"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    let o = run(s(&["batches", "list", "--json", "--url", &url])).await;
    assert_eq!(code(&o), 2);
    assert_eq!(json(&o)["code"], "connection");
    // A wrong token is the server's refusal: 2, with the problem on --json.
    let srv = Server::start(&[]).await;
    let o = cmd(srv.dir.path())
        .args([
            "batches", "list", "--json", "--url", &srv.base, "--token", "sk_x.y",
        ])
        .output()
        .await
        .unwrap();
    assert_eq!(code(&o), 2);
    assert_eq!(json(&o)["code"], "unauthorized");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_logs_carry_the_request_id_and_rate_limit_flags_apply() {
    let srv = Server::start(&[
        "--log-format",
        "json",
        "--rate-limit-rps",
        "0.01",
        "--rate-limit-burst",
        "1",
    ])
    .await;
    let http = reqwest::Client::new();
    let get = || {
        http.get(format!("{}/v1/batches", srv.base))
            .bearer_auth(&srv.token)
            .header("x-request-id", "req-7f3a-test")
    };
    let r = get().send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req-7f3a-test");
    assert_eq!(r.headers()["ratelimit-policy"], "\"tenant\";q=1;w=100");
    let r = get().send().await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));
    // The CLI sees the 429 as the server's refusal.
    let o = srv.cli(&["batches", "list"]).await;
    assert_eq!(code(&o), 2);
    assert!(String::from_utf8_lossy(&o.stderr).contains("429 rate_limited"));
    // Every log line is JSON; the request's lines carry its id in the span.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let text = std::fs::read_to_string(&srv.log).unwrap();
        let lines: Vec<Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
            .collect();
        let ours: Vec<&Value> = lines
            .iter()
            .filter(|l| l["span"]["request_id"] == "req-7f3a-test")
            .collect();
        if ours.len() >= 2 {
            assert!(ours.iter().all(|l| l["span"]["path"] == "/v1/batches"));
            assert!(
                ours.iter().any(|l| l["fields"]["status"] == 429),
                "{ours:?}"
            );
            break;
        }
        assert!(Instant::now() < deadline, "no request lines in:\n{text}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Read a CSV export: header and rows (no quoted commas in these tests).
fn read_csv(path: &Path) -> (Vec<String>, Vec<Vec<String>>) {
    let text = std::fs::read_to_string(path).unwrap();
    let mut lines = text.lines();
    let header: Vec<String> = lines
        .next()
        .unwrap()
        .split(',')
        .map(str::to_owned)
        .collect();
    let rows = lines
        .map(|l| {
            l.split(',')
                .map(|c| c.trim_matches('"').to_owned())
                .collect()
        })
        .collect();
    (header, rows)
}

/// The values of `cols` in every row, in file order.
fn columns(file: &(Vec<String>, Vec<Vec<String>>), cols: &[&str]) -> Vec<Vec<String>> {
    let idx: Vec<usize> = cols
        .iter()
        .map(|c| {
            file.0
                .iter()
                .position(|h| h == c)
                .unwrap_or_else(|| panic!("no column {c} in {:?}", file.0))
        })
        .collect();
    file.1
        .iter()
        .map(|r| idx.iter().map(|&i| r[i].clone()).collect())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn export_round_trip_failed_quick_path_and_formats() {
    let srv = Server::start(&[]).await;
    let reg = srv.write("reg.csv", &csv("iccid", (0..30).map(iccid)));
    let o = srv
        .cli(&[
            "submit",
            "--operation",
            "register_sim",
            "--file",
            &reg,
            "--wait",
        ])
        .await;
    assert_eq!(code(&o), 0, "{}", out(&o));
    // 30 known SIMs and 2 unknown ones get a rate plan each: 2 fail.
    let plans = srv.write(
        "plans.csv",
        &csv(
            "rate_plan,iccid",
            (0..32).map(|n| format!("PLAN-{},{}", n % 4, iccid(n))),
        ),
    );
    let o = srv
        .cli(&[
            "submit",
            "--operation",
            "change_rate_plan",
            "--file",
            &plans,
            "--wait",
            "--json",
        ])
        .await;
    assert_eq!(code(&o), 1);
    let first = json(&o)["batch"]["id"].as_str().unwrap().to_owned();

    // Export everything as CSV, re-import it as a new batch: the same items.
    let all = srv.dir.path().join("all.csv");
    let o = srv
        .cli(&[
            "export",
            &first,
            "--format",
            "csv",
            "-o",
            all.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert_eq!(code(&o), 0, "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(json(&o)["file"], all.to_str().unwrap());
    assert!(!srv.dir.path().join("all.csv.partial").exists());
    let exported = read_csv(&all);
    assert_eq!(exported.1.len(), 32);
    assert!(
        exported.0.iter().any(|h| h == "result_status"),
        "{:?}",
        exported.0
    );
    let o = srv
        .cli(&[
            "submit",
            "--operation",
            "change_rate_plan",
            "--file",
            all.to_str().unwrap(),
            "--wait",
            "--json",
        ])
        .await;
    assert_eq!(code(&o), 1, "the same two unknown SIMs fail again");
    let doc = json(&o);
    assert_eq!(doc["submit"]["rejected"], serde_json::json!([]), "{doc}");
    let second = doc["batch"]["id"].as_str().unwrap().to_owned();
    assert_ne!(second, first);
    assert_eq!(doc["batch"]["counts"]["total"], 32);
    assert_eq!(doc["batch"]["counts"]["failed"], 2);
    let again = srv.dir.path().join("again.csv");
    let o = srv
        .cli(&["export", &second, "-o", again.to_str().unwrap()])
        .await;
    assert_eq!(code(&o), 0);
    let reexported = read_csv(&again);
    let cols = ["iccid", "rate_plan", "result_status", "result_code"];
    assert_eq!(columns(&exported, &cols), columns(&reexported, &cols));
    assert_eq!(
        columns(&exported, &["iccid", "rate_plan"])[5],
        [iccid(5), "PLAN-1".to_owned()]
    );

    // The quick path: export the failed items, retry them.
    let failed = srv.dir.path().join("failed.csv");
    let o = srv
        .cli(&[
            "export",
            &first,
            "--status",
            "failed",
            "-o",
            failed.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code(&o), 0);
    let f = read_csv(&failed);
    assert_eq!(
        columns(&f, &["iccid", "result_status"]),
        [[iccid(30), "FAILED".into()], [iccid(31), "FAILED".into()]]
    );
    let o = srv.cli(&["batches", "retry", &first, "--wait"]).await;
    assert_eq!(code(&o), 1, "{}", out(&o));
    assert!(
        out(&o).contains("total 2 completed 0 failed 2"),
        "{}",
        out(&o)
    );

    // NDJSON to stdout: one object per item.
    let o = srv.cli(&["export", &first, "--format", "ndjson"]).await;
    assert_eq!(code(&o), 0);
    let lines: Vec<Value> = out(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 32);
    // XLSX to a file: a zip container.
    let x = srv.dir.path().join("b.xlsx");
    let o = srv
        .cli(&[
            "export",
            &first,
            "--format",
            "xlsx",
            "-o",
            x.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code(&o), 0);
    assert_eq!(&std::fs::read(&x).unwrap()[..2], b"PK");
    // The SIM list.
    let s = srv.dir.path().join("sims.csv");
    let o = srv
        .cli(&[
            "sims",
            "export",
            "--format",
            "csv",
            "-o",
            s.to_str().unwrap(),
        ])
        .await;
    assert_eq!(code(&o), 0);
    let sims = read_csv(&s);
    assert_eq!(sims.1.len(), 30);
    assert!(
        !sims.0.iter().any(|h| h == "ki" || h == "opc"),
        "{:?}",
        sims.0
    );
    assert_eq!(columns(&sims, &["rate_plan"])[5], ["PLAN-1"]);
    // With --json: one document naming the file; NDJSON has one line per SIM.
    let nd = srv.dir.path().join("sims.ndjson");
    let o = srv
        .cli(&[
            "sims",
            "export",
            "--format",
            "ndjson",
            "-o",
            nd.to_str().unwrap(),
            "--json",
        ])
        .await;
    assert_eq!(code(&o), 0);
    let doc = json(&o);
    assert_eq!(doc["format"], "ndjson", "{doc}");
    let text = std::fs::read_to_string(&nd).unwrap();
    assert_eq!(doc["bytes"], text.len(), "{doc}");
    assert_eq!(text.lines().count(), 30);

    // Errors: unknown batch (nothing written), --json without -o.
    let none = srv.dir.path().join("none.csv");
    let o = srv
        .cli(&["export", "no-such-batch", "-o", none.to_str().unwrap()])
        .await;
    assert_eq!(code(&o), 2);
    assert!(!none.exists());
    let o = srv.cli(&["export", &first, "--json"]).await;
    assert_eq!(code(&o), 2);
    assert_eq!(json(&o)["code"], "usage");
}

/// A server that leaves a large upload unread for 35 s (longer than the
/// 30 s TCP user timeout reqwest sets by default) must not break `submit`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upload_waits_for_a_slow_server() {
    use axum::body::Body;
    let app = axum::Router::new().route(
        "/v1/batches",
        axum::routing::post(|body: Body| async move {
            tokio::time::sleep(Duration::from_secs(35)).await;
            let n = axum::body::to_bytes(body, usize::MAX).await.unwrap().len();
            axum::Json(
                serde_json::json!({"id": null, "status": null, "dry_run": true,
                "counts": {"total": n, "rejected": 0}, "rejected": []}),
            )
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("big.csv");
    let row = format!("{}\n", iccid(1));
    std::fs::write(&file, format!("iccid\n{}", row.repeat(2_000_000))).unwrap();
    let o = cmd(dir.path())
        .args(["submit", "--operation", "activate", "--dry-run", "--file"])
        .arg(&file)
        .args(["--url", &base, "--token", "sk_x.y"])
        .output()
        .await
        .unwrap();
    assert_eq!(
        code(&o),
        0,
        "{}{}",
        out(&o),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(out(&o).contains("dry run: 42000006 items"), "{}", out(&o));
}
