//! `simbatch bench`: measures the engine end to end on fresh databases.
//!
//! 1. starts a server in this process (API + workers) on a fresh database;
//! 2. registers N SIMs through the HTTP API (streamed NDJSON or CSV);
//! 3. submits one `activate` batch of N items through the HTTP API and waits
//!    until every item is terminal: items/s;
//! 4. meanwhile polls `GET /v1/batches/{id}`: latency percentiles;
//! 5. applies the same effect to a second fresh database as the set-based SQL
//!    floor (one INSERT…SELECT, two UPDATEs): items/s and the ratio;
//! 6. reports peak RSS of the process.
//!
//! `--runs N` repeats all of it on new fresh databases and adds the median,
//! lowest and highest of the target figures.
//!
//! With `--operation generate_activation_code --template FILE` it measures
//! eSIM personalisation instead: one batch of N items, each personalising the
//! template into its own profile package (sealed and stored): packages/s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Args;
use serde_json::{json, Map, Value};
use simbatch_core::{BatchMode, Operation};
use simbatch_store::crypto::Cipher;
use simbatch_store::{NewBatch, NewItem, Store};
use tokio::sync::Notify;

use crate::config::{Db, Serve};
use crate::serve::{app_state, Background};

/// `simbatch bench` flags.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Where to create the fresh databases: a sqlite:// URL (its directory is
    /// used) or a postgres:// server URL. Default: a temporary SQLite directory.
    #[arg(long, env = "SIMBATCH_DATABASE_URL")]
    database_url: Option<String>,
    /// Items in the activate batch (and SIMs registered).
    #[arg(long, default_value_t = 100_000)]
    items: usize,
    /// Upload format.
    #[arg(long, default_value = "ndjson", value_parser = ["ndjson", "csv"])]
    format: String,
    /// Worker loops (default: 1 on SQLite, 2 on PostgreSQL).
    #[arg(long)]
    workers: Option<usize>,
    /// Skip the SQL floor run.
    #[arg(long)]
    no_floor: bool,
    /// What to measure: `activate` (default), or `generate_activation_code`
    /// (personalised profile packages per second; needs `--template`).
    #[arg(long, default_value = "activate", value_parser = ["activate", "generate_activation_code"])]
    operation: String,
    /// The SAIP template (DER) for `--operation generate_activation_code`.
    #[arg(long)]
    template: Option<std::path::PathBuf>,
    /// Repeat the whole measurement this many times, each on fresh
    /// databases, and report every run with the median, lowest and highest
    /// of the target figures. The host's speed drifts within minutes, so one
    /// run can land on a fast or a slow stretch.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    runs: u32,
}

/// Fresh databases for one run; dropped (PostgreSQL) or deleted (SQLite) at the end.
struct Fresh {
    urls: Vec<String>,
    pg_admin: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl Fresh {
    async fn create(base: Option<&str>, n: usize) -> Result<Self, String> {
        match base {
            Some(url) if url.starts_with("postgres") => {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(url)
                    .await
                    .map_err(|e| format!("{url}: {e}"))?;
                let root = url
                    .rsplit_once('/')
                    .map(|(r, _)| r.to_owned())
                    .unwrap_or_else(|| url.to_owned());
                let mut urls = Vec::new();
                for _ in 0..n {
                    let name = format!("simbatch_bench_{}", uuid::Uuid::new_v4().simple());
                    sqlx::query(&format!("CREATE DATABASE {name}"))
                        .execute(&mut conn)
                        .await
                        .map_err(|e| e.to_string())?;
                    urls.push(format!("{root}/{name}"));
                }
                Ok(Self {
                    urls,
                    pg_admin: Some(url.to_owned()),
                    _dir: None,
                })
            }
            Some(url) if !url.starts_with("sqlite:") => {
                Err(format!("unsupported database URL '{url}'"))
            }
            _ => {
                let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
                let urls = (0..n)
                    .map(|i| {
                        format!(
                            "sqlite://{}",
                            dir.path().join(format!("bench{i}.db")).display()
                        )
                    })
                    .collect();
                Ok(Self {
                    urls,
                    pg_admin: None,
                    _dir: Some(dir),
                })
            }
        }
    }

    async fn drop_all(self) {
        if let Some(admin) = &self.pg_admin {
            use sqlx::Connection;
            if let Ok(mut conn) = sqlx::PgConnection::connect(admin).await {
                for url in &self.urls {
                    if let Some((_, name)) = url.rsplit_once('/') {
                        let _ =
                            sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                                .execute(&mut conn)
                                .await;
                    }
                }
            }
        }
    }
}

fn iccid(i: usize) -> String {
    format!("8988{i:016}")
}

/// The request body: N items, generated as it is sent, never held in memory.
fn upload_body(n: usize, format: &str, extra: &'static str) -> reqwest::Body {
    let csv = format == "csv";
    let chunk = 2000;
    let header = csv.then(|| {
        if extra.is_empty() {
            "iccid\n".to_owned()
        } else {
            "iccid,imsi\n".to_owned()
        }
    });
    let stream = futures::stream::iter(header.into_iter().map(Ok::<_, std::io::Error>).chain(
        (0..n).step_by(chunk).map(move |start| {
            let mut s = String::with_capacity(chunk * 48);
            for i in start..(start + chunk).min(n) {
                match (csv, extra.is_empty()) {
                    (true, true) => s.push_str(&format!("{}\n", iccid(i))),
                    (true, false) => s.push_str(&format!("{},{}\n", iccid(i), extra)),
                    (false, true) => s.push_str(&format!("{{\"iccid\":\"{}\"}}\n", iccid(i))),
                    (false, false) => s.push_str(&format!(
                        "{{\"iccid\":\"{}\",\"imsi\":\"{}\"}}\n",
                        iccid(i),
                        extra
                    )),
                }
            }
            Ok(s)
        }),
    ));
    reqwest::Body::wrap_stream(stream)
}

struct Client {
    http: reqwest::Client,
    base: String,
    token: String,
}

impl Client {
    async fn submit(
        &self,
        op: &str,
        n: usize,
        format: &str,
        extra: &'static str,
    ) -> Result<String, String> {
        let ctype = if format == "csv" {
            "text/csv"
        } else {
            "application/x-ndjson"
        };
        let resp = self
            .http
            .post(format!("{}/v1/batches?operation={op}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .header("content-type", ctype)
            .body(upload_body(n, format, extra))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let status = resp.status();
        let body: Value = resp.json().await.map_err(|e| e.to_string())?;
        if !status.is_success() {
            return Err(format!("submit {op}: {status}: {body}"));
        }
        body["id"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| format!("submit {op}: no id in {body}"))
    }

    async fn batch(&self, id: &str) -> Result<Value, String> {
        let resp = self
            .http
            .get(format!("{}/v1/batches/{id}", self.base))
            .header("authorization", format!("Bearer {}", self.token))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        resp.json().await.map_err(|e| e.to_string())
    }

    /// Download a batch's export, counting lines (rows + header for text
    /// formats) and bytes as they stream; returns (lines, bytes, seconds).
    async fn export(&self, id: &str, format: &str) -> Result<(usize, usize, f64), String> {
        use futures::StreamExt;
        let t = Instant::now();
        let resp = self
            .http
            .get(format!(
                "{}/v1/batches/{id}/export?format={format}",
                self.base
            ))
            .header("authorization", format!("Bearer {}", self.token))
            .send()
            .await
            .map_err(|e| e.to_string())?;
        if !resp.status().is_success() {
            return Err(format!("export {format}: {}", resp.status()));
        }
        let (mut lines, mut bytes) = (0, 0);
        let mut body = resp.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| e.to_string())?;
            bytes += chunk.len();
            lines += chunk.iter().filter(|&&b| b == b'\n').count();
        }
        Ok((lines, bytes, t.elapsed().as_secs_f64()))
    }

    /// Poll until terminal, recording each GET's latency.
    async fn wait(&self, id: &str, latencies: &mut Vec<Duration>) -> Result<Value, String> {
        loop {
            let t = Instant::now();
            let b = self.batch(id).await?;
            latencies.push(t.elapsed());
            let status = b["status"].as_str().unwrap_or_default();
            let processing = b["counts"]["processing"].as_i64().unwrap_or(0);
            if matches!(status, "COMPLETED" | "PARTIALLY_COMPLETED" | "CANCELLED")
                && processing == 0
            {
                return Ok(b);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The figures [`summarize`] sums up, by name and JSON pointer into a run's
/// report (those a report lacks are left out).
const SUMMARIZED: [(&str, &str); 6] = [
    ("activate_items_per_s", "/activate/items_per_s"),
    ("floor_items_per_s", "/floor/items_per_s"),
    ("ratio", "/ratio"),
    ("get_batch_p99_ms", "/get_batch_ms/p99"),
    ("peak_rss_mib", "/peak_rss_mib"),
    ("packages_per_s", "/packages_per_s"),
];

/// Several runs' reports as one: every run as it was, and the median, lowest
/// and highest of each figure in [`SUMMARIZED`].
fn summarize(runs: Vec<Value>) -> Value {
    let mut summary = Map::new();
    for (name, pointer) in SUMMARIZED {
        let mut values: Vec<f64> = runs
            .iter()
            .filter_map(|r| r.pointer(pointer).and_then(Value::as_f64))
            .collect();
        if values.is_empty() {
            continue;
        }
        values.sort_by(f64::total_cmp);
        let mid = values.len() / 2;
        let median = if values.len().is_multiple_of(2) {
            (values[mid - 1] + values[mid]) / 2.0
        } else {
            values[mid]
        };
        summary.insert(
            name.into(),
            json!({"median": median, "min": values[0], "max": values[values.len() - 1]}),
        );
    }
    json!({"summary": summary, "runs": runs})
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let idx = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[idx].as_secs_f64() * 1000.0
}

/// Start a new peak for [`peak_rss_mib`] at the current resident set (Linux;
/// elsewhere the peak stays the process's own): each of several runs then
/// reports its own peak, not an earlier run's floor.
fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

/// Peak resident set size of this process, in MiB (Linux).
fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// Run the benchmark and print its figures.
pub async fn run(args: BenchArgs) -> Result<(), String> {
    let n = args.items.max(1);
    let template = if args.operation == "generate_activation_code" {
        let file = args
            .template
            .as_ref()
            .ok_or("--operation generate_activation_code needs --template FILE")?;
        Some(std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?)
    } else {
        None
    };
    if let Some(t) = &template {
        simbatch_engine::service::check_template(t).map_err(|e| e.to_string())?;
    }
    let mut reports = Vec::new();
    for run in 1..=args.runs {
        if args.runs > 1 {
            eprintln!("bench: run {run} of {}", args.runs);
            reset_peak_rss();
        }
        let fresh = Fresh::create(
            args.database_url.as_deref(),
            if args.no_floor || template.is_some() {
                1
            } else {
                2
            },
        )
        .await?;
        let result = if args.operation == "generate_activation_code" {
            measure_packages(&args, n, &fresh).await
        } else {
            measure(&args, n, &fresh).await
        };
        fresh.drop_all().await;
        reports.push(result?);
    }
    let report = match reports.len() {
        1 => reports.remove(0),
        _ => summarize(reports),
    };
    println!(
        "{}",
        serde_json::to_string_pretty(&report).map_err(|e| e.to_string())?
    );
    Ok(())
}

/// The server the benchmark starts: the first fresh database, a throw-away
/// master key, no rate limit.
fn bench_serve(args: &BenchArgs, fresh: &Fresh, key_dir: &tempfile::TempDir) -> Serve {
    Serve {
        listen: ([127, 0, 0, 1], 0).into(),
        db: Db {
            url: fresh.urls[0].clone(),
            key_file: key_dir.path().join("bench.key"),
        },
        smdp_address: "smdp.bench.local".into(),
        validation: Default::default(),
        retention_days: 60,
        workers: args.workers,
        no_workers: false,
        lease_secs: 30,
        rate_limit: None,
        metrics: Default::default(),
    }
}

async fn measure(args: &BenchArgs, n: usize, fresh: &Fresh) -> Result<Value, String> {
    let key_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cfg = bench_serve(args, fresh, &key_dir);
    let store = cfg.db.open().await?;
    let backend = store.backend();
    let key = store.create_key("bench").await.map_err(|e| e.to_string())?;
    let wake = Arc::new(Notify::new());
    let background = Background::start(&store, &cfg, wake.clone());
    let app = simbatch_api::router(app_state(store.clone(), &cfg, wake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{addr}"),
        token: key.token,
    };

    eprintln!("bench: {backend}, {n} items, {} upload", args.format);
    let mut lat = Vec::new();
    let t = Instant::now();
    let reg = client
        .submit("register_sim", n, &args.format, "460048867619618")
        .await?;
    let reg_submitted = t.elapsed();
    let reg_done = client.wait(&reg, &mut lat).await?;
    let reg_secs = t.elapsed().as_secs_f64();
    eprintln!(
        "bench: registered {} SIMs in {reg_secs:.2}s",
        reg_done["counts"]["completed"]
    );

    settle(&fresh.urls[0]).await?;
    let mut lat = Vec::new();
    let t = Instant::now();
    let act = client.submit("activate", n, &args.format, "").await?;
    let submitted = t.elapsed();
    let done = client.wait(&act, &mut lat).await?;
    let secs = t.elapsed().as_secs_f64();
    let completed = done["counts"]["completed"].as_i64().unwrap_or(0);
    if completed != n as i64 {
        return Err(format!(
            "activate batch ended with {completed} of {n} completed: {done}"
        ));
    }
    // O(1) status reads on the finished batch, for stable percentiles.
    for _ in 0..2000 {
        let t = Instant::now();
        client.batch(&act).await?;
        lat.push(t.elapsed());
    }
    lat.sort();
    let rate = n as f64 / secs;
    let mut exports = Map::new();
    for format in ["csv", "xlsx"] {
        let (lines, bytes, secs) = client.export(&act, format).await?;
        if format == "csv" && lines != n + 1 {
            return Err(format!(
                "the CSV export has {lines} lines, expected {}",
                n + 1
            ));
        }
        eprintln!("bench: exported {n} items as {format} in {secs:.2}s");
        exports.insert(
            format.into(),
            json!({"seconds": secs, "rows_per_s": n as f64 / secs, "bytes": bytes}),
        );
    }
    let stats = background.stats();
    background.shutdown().await;
    server.abort();
    // The engine's own peak: upload, run and exports. The floor's bulk
    // statements below make SQLite hold far more pages than the engine ever
    // does, so the high-water mark after them is reported on its own.
    let peak_serving = peak_rss_mib();

    let floor = if args.no_floor {
        None
    } else {
        Some(floor_rate(&fresh.urls[1], n, &key_dir).await?)
    };
    let ratio = floor.map(|f| rate / f);
    Ok(json!({
        "backend": backend,
        "items": n,
        "upload_format": args.format,
        "register": {"seconds": reg_secs, "items_per_s": n as f64 / reg_secs, "upload_seconds": reg_submitted.as_secs_f64()},
        "activate": {"seconds": secs, "items_per_s": rate, "upload_seconds": submitted.as_secs_f64()},
        "floor": floor.map(|f| json!({"items_per_s": f})),
        "ratio": ratio,
        "export": exports,
        "get_batch_ms": {"samples": lat.len(), "p50": percentile(&lat, 0.50), "p99": percentile(&lat, 0.99),
                         "max": percentile(&lat, 1.0)},
        "worker_fenced_out": stats.map(|s| s.fenced_out.load(std::sync::atomic::Ordering::Relaxed)),
        "peak_rss_mib": peak_serving,
        "peak_rss_mib_with_floor": peak_rss_mib(),
    }))
}

/// NDJSON generate_activation_code items, generated as they are sent.
fn package_items(n: usize) -> reqwest::Body {
    let chunk = 1000;
    let stream = futures::stream::iter((0..n).step_by(chunk).map(move |start| {
        let mut s = String::with_capacity(chunk * 200);
        for i in start..(start + chunk).min(n) {
            s.push_str(&format!(
                "{{\"iccid\":\"{}\",\"template\":\"bench\",\"imsi\":\"00101{i:010}\",\
                 \"ki\":\"{i:032x}\",\"opc\":\"{:032x}\",\"msisdn\":\"4670{i:07}\"}}\n",
                iccid(i),
                i ^ 0x5a5a
            ));
        }
        Ok::<_, std::io::Error>(s)
    }));
    reqwest::Body::wrap_stream(stream)
}

/// Personalisation throughput: one generate_activation_code batch of N items.
async fn measure_packages(args: &BenchArgs, n: usize, fresh: &Fresh) -> Result<Value, String> {
    let key_dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let cfg = bench_serve(args, fresh, &key_dir);
    let file = args.template.as_ref().ok_or("--template is required")?;
    let template = std::fs::read(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let store = cfg.db.open().await?;
    let backend = store.backend();
    store
        .add_template("bench", &template)
        .await
        .map_err(|e| e.to_string())?;
    let key = store.create_key("bench").await.map_err(|e| e.to_string())?;
    let wake = Arc::new(Notify::new());
    let background = Background::start(&store, &cfg, wake.clone());
    let app = simbatch_api::router(app_state(store.clone(), &cfg, wake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = Client {
        http: reqwest::Client::new(),
        base: format!("http://{addr}"),
        token: key.token,
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    eprintln!(
        "bench: {backend}, {n} generate_activation_code items, template {} ({} bytes), {cores} cores",
        file.display(),
        template.len()
    );
    let t = Instant::now();
    let resp = client
        .http
        .post(format!(
            "{}/v1/batches?operation=generate_activation_code",
            client.base
        ))
        .header("authorization", format!("Bearer {}", client.token))
        .header("content-type", "application/x-ndjson")
        .body(package_items(n))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let status = resp.status();
    let body: Value = resp.json().await.map_err(|e| e.to_string())?;
    if !status.is_success() {
        return Err(format!("submit: {status}: {body}"));
    }
    let id = body["id"].as_str().ok_or("no batch id")?.to_owned();
    let submitted = t.elapsed();
    let mut lat = Vec::new();
    let done = client.wait(&id, &mut lat).await?;
    let secs = t.elapsed().as_secs_f64();
    let completed = done["counts"]["completed"].as_i64().unwrap_or(0);
    if completed != n as i64 {
        return Err(format!(
            "generate_activation_code ended with {completed} of {n} completed: {done}"
        ));
    }
    // One package back, to prove the work was real.
    let pkg = client
        .http
        .get(format!(
            "{}/v1/profiles/{}/package",
            client.base,
            iccid(n - 1)
        ))
        .header("authorization", format!("Bearer {}", client.token))
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let package_bytes = pkg.bytes().await.map_err(|e| e.to_string())?.len();
    // Personalisation alone, on one core, for comparison.
    let (parsed, _) =
        simbatch_saip::Package::parse_template(&template).map_err(|e| e.to_string())?;
    let m = n.min(5000);
    let t1 = Instant::now();
    for i in 0..m {
        let inputs = simbatch_saip::Inputs {
            iccid: iccid(i),
            imsi: format!("00101{i:010}"),
            ki: [i as u8; 16],
            opc: Some([!(i as u8); 16]),
            ..Default::default()
        };
        simbatch_saip::personalise_package(&parsed, &inputs).map_err(|e| e.to_string())?;
    }
    let one_core = m as f64 / t1.elapsed().as_secs_f64();
    background.shutdown().await;
    server.abort();
    Ok(json!({
        "backend": backend,
        "operation": "generate_activation_code",
        "items": n,
        "cores": cores,
        "template_bytes": template.len(),
        "package_bytes": package_bytes,
        "seconds": secs,
        "upload_seconds": submitted.as_secs_f64(),
        "packages_per_s": n as f64 / secs,
        "personalise_only_one_core_per_s": one_core,
        "peak_rss_mib": peak_rss_mib(),
    }))
}

/// Start a timed run from the same place on SQLite: everything written so
/// far checkpointed into the database file and the WAL emptied. Without it
/// the run found whatever WAL the untimed loading left behind, and a run
/// that had to grow the WAL again was slower than one that reused it,
/// whatever it ran. PostgreSQL has nothing to settle.
async fn settle(url: &str) -> Result<(), String> {
    use sqlx::Connection;
    if !url.starts_with("sqlite") {
        return Ok(());
    }
    let mut conn = sqlx::SqliteConnection::connect(url)
        .await
        .map_err(|e| format!("{url}: {e}"))?;
    for _ in 0..100 {
        let (busy, _, _): (i64, i64, i64) = sqlx::query_as("PRAGMA wal_checkpoint(TRUNCATE)")
            .fetch_one(&mut conn)
            .await
            .map_err(|e| format!("checkpoint: {e}"))?;
        if busy == 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    conn.close().await.map_err(|e| e.to_string())
}

/// The set-based floor: same SIMs, same batch, applied with three statements.
async fn floor_rate(url: &str, n: usize, key_dir: &tempfile::TempDir) -> Result<f64, String> {
    let (cipher, _) = Cipher::load(None, &key_dir.path().join("floor.key"))?;
    let store = simbatch_store::open(url, cipher)
        .await
        .map_err(|e| e.to_string())?;
    let key = store.create_key("bench").await.map_err(|e| e.to_string())?;
    let tenant = store
        .tenant_by_name(&key.tenant)
        .await
        .map_err(|e| e.to_string())?
        .ok_or("tenant vanished")?;
    // Load the SIMs with the engine (not timed), then queue the activate batch without workers.
    let reg = load_batch(store.as_ref(), &tenant.id, Operation::RegisterSim, n).await?;
    let wake = Arc::new(Notify::new());
    let workers = simbatch_engine::worker::start(store.clone(), Default::default(), wake);
    loop {
        let b = store
            .get_batch(&tenant.id, &reg)
            .await
            .map_err(|e| e.to_string())?
            .ok_or("batch vanished")?;
        if b.status.is_terminal() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    workers.shutdown().await;
    let act = load_batch(store.as_ref(), &tenant.id, Operation::Activate, n).await?;
    settle(url).await?;
    let t = Instant::now();
    let applied = store
        .bench_floor_activate(&act)
        .await
        .map_err(|e| e.to_string())?;
    let secs = t.elapsed().as_secs_f64();
    if applied != n as u64 {
        return Err(format!("floor applied {applied} of {n}"));
    }
    Ok(n as f64 / secs)
}

async fn load_batch(
    store: &dyn Store,
    tenant: &str,
    op: Operation,
    n: usize,
) -> Result<String, String> {
    let new = NewBatch {
        tenant_id: tenant.into(),
        operation: Some(op),
        mode: BatchMode::Parallel,
        source: "bench".into(),
        external_ref: None,
        parent_id: None,
    };
    let b = store.create_batch(&new).await.map_err(|e| e.to_string())?;
    for start in (0..n).step_by(5000) {
        let items: Vec<NewItem> = (start..(start + 5000).min(n))
            .map(|i| NewItem {
                seq: i as i64,
                iccid: iccid(i),
                operation: Some(op),
                params: Map::from_iter([("iccid".to_owned(), Value::String(iccid(i)))]),
                secret: Map::new(),
                rejection: None,
            })
            .collect();
        store
            .append_items(tenant, &b.id, &items)
            .await
            .map_err(|e| e.to_string())?;
    }
    store
        .seal_batch(tenant, &b.id)
        .await
        .map_err(|e| e.to_string())?;
    Ok(b.id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn several_runs_are_summed_up_by_median_lowest_and_highest() {
        let run = |rate: f64, floor: Option<f64>| {
            json!({"activate": {"items_per_s": rate}, "floor": floor.map(|f| json!({"items_per_s": f})),
                   "ratio": floor.map(|f| rate / f), "get_batch_ms": {"p99": rate / 10_000.0}})
        };
        let s = summarize(vec![
            run(40_000.0, Some(100_000.0)),
            run(60_000.0, None),
            run(50_000.0, Some(125_000.0)),
        ]);
        assert_eq!(s["runs"].as_array().unwrap().len(), 3);
        let rate = &s["summary"]["activate_items_per_s"];
        assert_eq!(
            (
                rate["median"].as_f64(),
                rate["min"].as_f64(),
                rate["max"].as_f64()
            ),
            (Some(50_000.0), Some(40_000.0), Some(60_000.0))
        );
        // Two runs have a floor: the median of an even count is the mean of the middle two.
        assert_eq!(
            s["summary"]["floor_items_per_s"]["median"].as_f64(),
            Some(112_500.0)
        );
        assert_eq!(s["summary"]["ratio"]["median"].as_f64(), Some(0.4));
        assert!(s["summary"].get("packages_per_s").is_none());
    }
}
