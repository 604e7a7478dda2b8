//! The real `simbatch` binary (SQLite unless noted): the first-start token,
//! graceful SIGTERM, the admin subcommands, activation codes from a
//! registered template, parallel migrations on PostgreSQL, and the TOML
//! config file.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, Command};

const MASTER_KEY: &str = "6c1a6bd1b8a3f0c7e52d0e6f4a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_simbatch")
}

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

fn sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", dir.join("t.db").display())
}

fn cmd(dir: &Path) -> Command {
    let mut c = Command::new(bin());
    c.env("SIMBATCH_MASTER_KEY", MASTER_KEY)
        .env_remove("SIMBATCH_DATABASE_URL")
        .env_remove("SIMBATCH_LISTEN")
        .env_remove("SIMBATCH_CONFIG")
        .current_dir(dir)
        .kill_on_drop(true);
    c
}

/// Run an admin command to completion.
async fn run(dir: &Path, args: &[&str]) -> Output {
    cmd(dir)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap()
}

fn stdout_lines(o: &Output) -> Vec<Value> {
    String::from_utf8(o.stdout.clone())
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{l}: {e}")))
        .collect()
}

struct Server {
    child: Child,
    base: String,
}

/// Spawn `serve` with stdout piped; wait until /healthz answers.
async fn serve(dir: &Path, db: &str, extra: &[&str]) -> Server {
    let addr = free_addr();
    let log =
        std::fs::File::create(dir.join(format!("serve-{}.log", addr.replace(':', "_")))).unwrap();
    let child = cmd(dir)
        .args(["serve", "--listen", &addr, "--database-url", db])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::from(log))
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    wait_healthy(&base).await;
    Server { child, base }
}

async fn wait_healthy(base: &str) {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(Instant::now() < deadline, "{base} did not start");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn sigterm(child: &Child) {
    let pid = child.id().expect("running").to_string();
    let st = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(st.success());
}

async fn wait_exit(child: &mut Child) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(120), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap()
}

async fn rest_of_stdout(child: &mut Child) -> String {
    let mut s = String::new();
    if let Some(mut out) = child.stdout.take() {
        out.read_to_string(&mut s).await.unwrap();
    }
    s
}

async fn get(base: &str, token: &str, path: &str) -> (u16, Value) {
    let r = reqwest::Client::new()
        .get(format!("{base}{path}"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn post(base: &str, token: &str, path: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}

async fn wait_terminal(base: &str, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        let (s, b) = get(base, token, &format!("/v1/batches/{id}")).await;
        assert_eq!(s, 200, "{b}");
        if ["COMPLETED", "PARTIALLY_COMPLETED", "CANCELLED"]
            .contains(&b["status"].as_str().unwrap())
        {
            return b;
        }
        assert!(Instant::now() < deadline, "batch {id} not terminal: {b}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn iccid(n: usize) -> String {
    format!("8988{n:016}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_start_prints_one_token_line_and_second_start_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let mut a = serve(dir.path(), &db, &[]).await;
    let mut lines = BufReader::new(a.child.stdout.take().unwrap()).lines();
    let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
        .await
        .expect("a token line")
        .unwrap()
        .expect("a token line");
    let v: Value = serde_json::from_str(&line).unwrap();
    let obj = v.as_object().unwrap();
    let mut keys: Vec<_> = obj.keys().map(String::as_str).collect();
    keys.sort_unstable();
    assert_eq!(keys, ["key_id", "secret", "tenant", "token"], "{line}");
    assert_eq!(v["tenant"], "default");
    let token = v["token"].as_str().unwrap().to_owned();
    assert!(v["key_id"].as_str().unwrap().starts_with("sk_"), "{line}");
    assert!(token.starts_with(v["key_id"].as_str().unwrap()), "{line}");
    assert!(token.contains(v["secret"].as_str().unwrap()), "{line}");
    let (s, b) = get(&a.base, &token, "/v1/batches").await;
    assert_eq!(s, 200, "{b}");
    let (s, _) = get(&a.base, "sk_nope.nope", "/v1/batches").await;
    assert_eq!(s, 401);
    sigterm(&a.child);
    assert!(wait_exit(&mut a.child).await.success());
    let mut rest = String::new();
    while let Some(l) = lines.next_line().await.unwrap() {
        rest.push_str(&l);
        rest.push('\n');
    }
    assert_eq!(rest, "", "exactly one line on stdout");
    // Second start on the same database: nothing on stdout; the token still works.
    let mut b = serve(dir.path(), &db, &[]).await;
    let (s, _) = get(&b.base, &token, "/v1/batches").await;
    assert_eq!(s, 200);
    sigterm(&b.child);
    assert!(wait_exit(&mut b.child).await.success());
    assert_eq!(
        rest_of_stdout(&mut b.child).await,
        "",
        "second start prints nothing"
    );
}

async fn create_key(dir: &Path, db: &str, tenant: &str) -> Value {
    let o = run(
        dir,
        &["keys", "--database-url", db, "create", "--tenant", tenant],
    )
    .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let lines = stdout_lines(&o);
    assert_eq!(lines.len(), 1, "one JSON line");
    lines[0].clone()
}

/// Item status counts and the batch row's counters, straight from SQLite.
async fn db_counts(db: &str, batch: &str) -> (Vec<(String, i64)>, Vec<i64>) {
    use sqlx::Connection;
    let mut c = sqlx::SqliteConnection::connect(db).await.unwrap();
    let by_status: Vec<(String, i64)> = sqlx::query_as(
        "SELECT status, count(*) FROM batch_items WHERE batch_id = ? GROUP BY status ORDER BY status",
    )
    .bind(batch)
    .fetch_all(&mut c)
    .await
    .unwrap();
    let row: (i64, i64, i64, i64, i64, i64, i64) = sqlx::query_as(
        "SELECT total, approved, rejected, processing, completed, failed, canceled FROM batches WHERE id = ?",
    )
    .bind(batch)
    .fetch_one(&mut c)
    .await
    .unwrap();
    (
        by_status,
        vec![row.0, row.1, row.2, row.3, row.4, row.5, row.6],
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_in_flight_work_and_exits_zero() {
    const N: usize = 50_000;
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let token = create_key(dir.path(), &db, "acme").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut a = serve(dir.path(), &db, &[]).await;
    let body: String = (0..N)
        .map(|i| format!("{{\"iccid\":\"{}\"}}\n", iccid(i)))
        .collect();
    let r = reqwest::Client::new()
        .post(format!("{}/v1/batches?operation=register_sim", a.base))
        .bearer_auth(&token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 202);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    // SIGTERM once the batch is under way.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (_, b) = get(&a.base, &token, &format!("/v1/batches/{id}")).await;
        if b["counts"]["completed"].as_i64().unwrap_or(0) > 0 {
            break;
        }
        assert!(Instant::now() < deadline, "batch never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    sigterm(&a.child);
    let status = wait_exit(&mut a.child).await;
    assert_eq!(status.code(), Some(0), "graceful exit");
    // Consistent: no item left PROCESSING, counters match the items.
    let (by_status, counters) = db_counts(&db, &id).await;
    let count = |s: &str| {
        by_status
            .iter()
            .find(|(k, _)| k == s)
            .map_or(0, |(_, n)| *n)
    };
    assert_eq!(count("PROCESSING"), 0, "{by_status:?}");
    for (s, _) in &by_status {
        assert!(
            ["APPROVED", "COMPLETED", "FAILED", "REJECTED", "CANCELED"].contains(&s.as_str()),
            "{by_status:?}"
        );
    }
    let total: i64 = by_status.iter().map(|(_, n)| n).sum();
    assert_eq!(total, N as i64);
    assert_eq!(
        counters,
        vec![
            N as i64,
            count("APPROVED"),
            count("REJECTED"),
            0,
            count("COMPLETED"),
            count("FAILED"),
            count("CANCELED")
        ],
        "batch counters match the items: {by_status:?}"
    );
    assert!(count("COMPLETED") > 0);
    eprintln!("at SIGTERM: {by_status:?}");
    // A restart finishes the rest.
    let mut b = serve(dir.path(), &db, &[]).await;
    let done = wait_terminal(&b.base, &token, &id).await;
    assert_eq!(done["counts"]["completed"], N, "{done}");
    sigterm(&b.child);
    assert_eq!(wait_exit(&mut b.child).await.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_create_list_revoke() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    let k1 = create_key(dir.path(), &db, "acme").await;
    let k2 = create_key(dir.path(), &db, "acme").await;
    let token1 = k1["token"].as_str().unwrap().to_owned();
    let token2 = k2["token"].as_str().unwrap().to_owned();
    let id1 = k1["key_id"].as_str().unwrap().to_owned();
    assert_eq!(k1["tenant"], "acme");
    let o = run(dir.path(), &["keys", "--database-url", &db, "list"]).await;
    assert!(o.status.success());
    let listed = stdout_lines(&o);
    let text = String::from_utf8_lossy(&o.stdout).to_string();
    assert!(listed.iter().any(|k| k["key_id"] == id1.as_str()), "{text}");
    assert!(
        !text.contains(k1["secret"].as_str().unwrap()),
        "list never shows secrets: {text}"
    );
    let mut a = serve(dir.path(), &db, &["--no-workers"]).await;
    assert_eq!(get(&a.base, &token1, "/v1/batches").await.0, 200);
    let o = run(dir.path(), &["keys", "--database-url", &db, "revoke", &id1]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(stdout_lines(&o), vec![json!({"revoked": id1})]);
    // The server trusts a key it verified lately for up to KEY_TTL.
    tokio::time::sleep(simbatch_api::key_cache::KEY_TTL + std::time::Duration::from_millis(100))
        .await;
    let (s, p) = get(&a.base, &token1, "/v1/batches").await;
    assert_eq!(
        (s, p["code"].as_str()),
        (401, Some("unauthorized")),
        "revoked: {p}"
    );
    assert_eq!(
        get(&a.base, &token2, "/v1/batches").await.0,
        200,
        "other key unaffected"
    );
    // Revoking again, or an unknown key: exit 2 with a message.
    for key in [id1.as_str(), "sk_unknown"] {
        let o = run(dir.path(), &["keys", "--database-url", &db, "revoke", key]).await;
        assert_eq!(o.status.code(), Some(2));
        assert!(String::from_utf8_lossy(&o.stderr).contains(key));
    }
    sigterm(&a.child);
    assert!(wait_exit(&mut a.child).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_and_activation_codes() {
    let dir = tempfile::tempdir().unwrap();
    let db = sqlite_url(dir.path());
    // A file that is not a profile package is refused, with the reason.
    let junk = dir.path().join("junk.der");
    std::fs::write(&junk, b"\x30\x0a\x80\x08template").unwrap();
    let o = run(
        dir.path(),
        &[
            "templates",
            "--database-url",
            &db,
            "add",
            "tplJ",
            junk.to_str().unwrap(),
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("junk.der") && err.contains("not a usable SAIP profile package"),
        "{err}"
    );
    // A GSMA TS.48 test profile.
    let file = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../../shared/profile-templates/TS48v4_SAIP2.3_BERTLV.der");
    let f = file.to_str().unwrap();
    let o = run(
        dir.path(),
        &["templates", "--database-url", &db, "add", "tplA", f],
    )
    .await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let line = &stdout_lines(&o)[0];
    assert_eq!(line["name"], "tplA");
    assert_eq!(
        (line["version"].as_str(), line["aka_parameters"].as_u64()),
        (Some("2.3"), Some(2)),
        "{line}"
    );
    let o = run(
        dir.path(),
        &["templates", "--database-url", &db, "add", "tplA", f],
    )
    .await;
    assert_eq!(o.status.code(), Some(2), "same name twice");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("tplA") && err.contains("already exists"),
        "{err}"
    );
    let o = run(dir.path(), &["templates", "--database-url", &db, "list"]).await;
    assert!(o.status.success());
    let names: Vec<_> = stdout_lines(&o)
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(names, vec!["tplA"]);
    // Unknown file, empty file: exit 2.
    let o = run(
        dir.path(),
        &[
            "templates",
            "--database-url",
            &db,
            "add",
            "tplB",
            "nope.der",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));
    std::fs::write(dir.path().join("empty.der"), b"").unwrap();
    let o = run(
        dir.path(),
        &[
            "templates",
            "--database-url",
            &db,
            "add",
            "tplB",
            "empty.der",
        ],
    )
    .await;
    assert_eq!(o.status.code(), Some(2));

    let token = create_key(dir.path(), &db, "acme").await["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut a = serve(dir.path(), &db, &["--smdp-address", "rsp.example.com"]).await;
    let (s, b) = post(
        &a.base,
        &token,
        "/v1/batches",
        json!({"operation": "generate_activation_code", "items": [
            {"iccid": iccid(1), "template": "tplA", "imsi": "001010000000001",
             "ki": "465b5ce8b199b49faa5f0a2ee238a6bc"},
            {"iccid": iccid(2), "template": "tplMissing", "imsi": "001010000000002",
             "ki": "465b5ce8b199b49faa5f0a2ee238a6bc"},
        ]}),
    )
    .await;
    assert_eq!(s, 202, "{b}");
    let id = b["id"].as_str().unwrap();
    let done = wait_terminal(&a.base, &token, id).await;
    assert_eq!(done["status"], "PARTIALLY_COMPLETED", "{done}");
    let (_, items) = get(&a.base, &token, &format!("/v1/batches/{id}/items")).await;
    let ok = &items["data"][0];
    assert_eq!(ok["status"], "COMPLETED", "{ok}");
    let code = ok["result"]["activation_code"].as_str().unwrap();
    let matching = code
        .strip_prefix("1$rsp.example.com$")
        .unwrap_or_else(|| panic!("{code}"));
    assert_eq!(matching.len(), 32, "{code}");
    assert!(
        matching
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)),
        "{code}"
    );
    let bad = &items["data"][1];
    assert_eq!(bad["status"], "FAILED", "{bad}");
    assert_eq!(bad["error"]["code"], "template_not_found", "{bad}");
    // The personalised package, from the served binary.
    let r = reqwest::Client::new()
        .get(format!("{}/v1/profiles/{}/package", a.base, iccid(1)))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let der = r.bytes().await.unwrap();
    assert_eq!(&der[..2], &[0xa0, 0x81], "starts with the ProfileHeader");
    sigterm(&a.child);
    assert!(wait_exit(&mut a.child).await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_parallel_migrations_are_serialized() {
    let dir = tempfile::tempdir().unwrap();
    let db = simbatch_store::testing::fresh_postgres_url().await;
    let args = ["migrate", "--database-url", &db];
    let (a, b) = tokio::join!(run(dir.path(), &args), run(dir.path(), &args));
    for o in [&a, &b] {
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert_eq!(
            stdout_lines(o),
            vec![json!({"migrated": true, "backend": "postgres"})]
        );
    }
    let o = run(dir.path(), &["migrate", "--database-url", &db]).await;
    assert!(o.status.success(), "and again");
    // The schema is whole: a key can be made and used.
    create_key(dir.path(), &db, "acme").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_file_sets_listen_and_refuses_unknown_keys() {
    let dir = tempfile::tempdir().unwrap();
    let addr = free_addr();
    let cfg = dir.path().join("simbatch.toml");
    std::fs::write(
        &cfg,
        format!(
            "listen = \"{addr}\"\ndatabase_url = \"{}\"\nno_workers = true\n",
            sqlite_url(dir.path())
        ),
    )
    .unwrap();
    let mut child = cmd(dir.path())
        .args(["--config", cfg.to_str().unwrap(), "serve"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    wait_healthy(&base).await;
    assert!(
        dir.path().join("t.db").exists(),
        "database_url from the file"
    );
    sigterm(&child);
    assert!(wait_exit(&mut child).await.success());
    // A flag wins over the file.
    let addr2 = free_addr();
    let mut child = cmd(dir.path())
        .args([
            "serve",
            "--config",
            cfg.to_str().unwrap(),
            "--listen",
            &addr2,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_healthy(&format!("http://{addr2}")).await;
    sigterm(&child);
    assert!(wait_exit(&mut child).await.success());
    // Unknown key: exit 2 naming it; nothing served.
    std::fs::write(&cfg, "lisen = \"127.0.0.1:1\"\n").unwrap();
    let o = run(dir.path(), &["--config", cfg.to_str().unwrap(), "serve"]).await;
    assert_eq!(o.status.code(), Some(2));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("lisen"), "{err}");
    // A missing file, too.
    let o = run(dir.path(), &["--config", "missing.toml", "migrate"]).await;
    assert_eq!(o.status.code(), Some(2));
}
