//! Crash test: run `simbatch serve` as a child process, submit a 50,000-item
//! batch, SIGKILL the server mid-run and restart it (on PostgreSQL: run two
//! replicas and kill one). Every item must end terminal and be applied exactly
//! once: one `activate` history row per completed item and no SIM twice.

use std::net::TcpListener;
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::process::{Child, Command};

const N: usize = 50_000;
const MASTER_KEY: &str = "6c1a6bd1b8a3f0c7e52d0e6f4a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4e3f2a1b";

fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_simbatch")
}

fn free_addr() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().to_string()
}

async fn create_token(db: &str, dir: &Path) -> String {
    let out = Command::new(bin())
        .args(["keys", "--database-url", db, "create", "--tenant", "crash"])
        .env("SIMBATCH_MASTER_KEY", MASTER_KEY)
        .current_dir(dir)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "keys create failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

struct Server {
    child: Child,
    base: String,
}

async fn start(db: &str, dir: &Path, name: &str) -> Server {
    let addr = free_addr();
    let log = std::fs::File::create(dir.join(format!("{name}.log"))).unwrap();
    let child = Command::new(bin())
        .args([
            "serve",
            "--listen",
            &addr,
            "--database-url",
            db,
            "--lease-secs",
            "2",
        ])
        .env("SIMBATCH_MASTER_KEY", MASTER_KEY)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::from(log))
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let base = format!("http://{addr}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while http.get(format!("{base}/healthz")).send().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "{name} did not start; see {name}.log"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Server { child, base }
}

fn ndjson(n: usize, with_imsi: bool) -> String {
    let mut s = String::with_capacity(n * 60);
    for i in 0..n {
        if with_imsi {
            s.push_str(&format!(
                "{{\"iccid\":\"8988{i:016}\",\"imsi\":\"46004886761{:04}\"}}\n",
                i % 10_000
            ));
        } else {
            s.push_str(&format!("{{\"iccid\":\"8988{i:016}\"}}\n"));
        }
    }
    s
}

async fn submit(base: &str, token: &str, op: &str, body: String) -> String {
    let resp = reqwest::Client::new()
        .post(format!("{base}/v1/batches?operation={op}"))
        .bearer_auth(token)
        .header("content-type", "application/x-ndjson")
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202, "submit {op}");
    let v: Value = resp.json().await.unwrap();
    v["id"].as_str().unwrap().to_owned()
}

async fn batch(base: &str, token: &str, id: &str) -> Option<Value> {
    let resp = reqwest::Client::new()
        .get(format!("{base}/v1/batches/{id}"))
        .bearer_auth(token)
        .send()
        .await
        .ok()?;
    resp.json().await.ok()
}

async fn wait_terminal(base: &str, token: &str, id: &str) -> Value {
    let deadline = Instant::now() + Duration::from_secs(300);
    loop {
        if let Some(b) = batch(base, token, id).await {
            let done = matches!(
                b["status"].as_str(),
                Some("COMPLETED" | "PARTIALLY_COMPLETED")
            );
            if done && b["counts"]["processing"] == 0 {
                return b;
            }
        }
        assert!(Instant::now() < deadline, "batch {id} did not finish");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Kill `victim` with SIGKILL once the batch is under way but not finished.
async fn kill_mid_run(victim: &mut Server, token: &str, id: &str) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(b) = batch(&victim.base, token, id).await {
            let completed = b["counts"]["completed"].as_i64().unwrap_or(0);
            if completed > 0 {
                victim.child.start_kill().unwrap();
                victim.child.wait().await.unwrap();
                return completed;
            }
        }
        assert!(Instant::now() < deadline, "batch {id} never started");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// History rows of `activate`, SIMs with more than one, and SIMs ACTIVATED.
async fn effects(db: &str) -> (i64, i64, i64) {
    use sqlx::Connection;
    let q1 = "SELECT count(*) FROM sim_history WHERE operation = 'activate'";
    let q2 = "SELECT count(*) FROM (SELECT iccid FROM sim_history WHERE operation = 'activate'
              GROUP BY tenant_id, iccid HAVING count(*) > 1) d";
    let q3 = "SELECT count(*) FROM sims WHERE status = 'ACTIVATED'";
    if db.starts_with("postgres") {
        let mut c = sqlx::PgConnection::connect(db).await.unwrap();
        let mut out = [0i64; 3];
        for (o, q) in out.iter_mut().zip([q1, q2, q3]) {
            *o = sqlx::query_scalar(q).fetch_one(&mut c).await.unwrap();
        }
        (out[0], out[1], out[2])
    } else {
        let mut c = sqlx::SqliteConnection::connect(db).await.unwrap();
        let mut out = [0i64; 3];
        for (o, q) in out.iter_mut().zip([q1, q2, q3]) {
            *o = sqlx::query_scalar(q).fetch_one(&mut c).await.unwrap();
        }
        (out[0], out[1], out[2])
    }
}

async fn assert_exactly_once(db: &str, b: &Value) {
    assert_eq!(b["status"], "COMPLETED", "{b}");
    assert_eq!(b["counts"]["completed"], N as i64, "{b}");
    let (history, doubles, activated) = effects(db).await;
    assert_eq!(history, N as i64, "one history row per completed item");
    assert_eq!(doubles, 0, "no SIM transitioned twice");
    assert_eq!(activated, N as i64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_sigkill_and_restart_applies_each_item_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("crash.db").display());
    let token = create_token(&db, dir.path()).await;
    let mut a = start(&db, dir.path(), "first").await;
    let reg = submit(&a.base, &token, "register_sim", ndjson(N, true)).await;
    wait_terminal(&a.base, &token, &reg).await;
    let act = submit(&a.base, &token, "activate", ndjson(N, false)).await;
    let at_kill = kill_mid_run(&mut a, &token, &act).await;
    assert!(
        at_kill < N as i64,
        "the kill must land mid-run (completed {at_kill})"
    );
    let b = start(&db, dir.path(), "restarted").await;
    let done = wait_terminal(&b.base, &token, &act).await;
    assert_exactly_once(&db, &done).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_two_replicas_one_killed_applies_each_item_once() {
    let dir = tempfile::tempdir().unwrap();
    let db = simbatch_store::testing::fresh_postgres_url().await;
    let token = create_token(&db, dir.path()).await;
    let mut a = start(&db, dir.path(), "replica-a").await;
    let b = start(&db, dir.path(), "replica-b").await;
    let reg = submit(&a.base, &token, "register_sim", ndjson(N, true)).await;
    wait_terminal(&b.base, &token, &reg).await;
    let act = submit(&a.base, &token, "activate", ndjson(N, false)).await;
    let at_kill = kill_mid_run(&mut a, &token, &act).await;
    assert!(
        at_kill < N as i64,
        "the kill must land mid-run (completed {at_kill})"
    );
    let done = wait_terminal(&b.base, &token, &act).await;
    assert_exactly_once(&db, &done).await;
}
