use std::sync::Arc;
use std::time::{Duration, Instant};
use serde_json::{Map, Value};
use simbatch_core::{BatchMode, Operation};
use simbatch_engine::worker::{self, WorkerConfig};
use simbatch_store::{crypto::Cipher, NewBatch, NewItem};
use tokio::sync::Notify;

#[tokio::main]
async fn main() {
    let n: usize = std::env::args().nth(1).map(|s| s.parse().unwrap()).unwrap_or(100_000);
    let url = std::env::args().nth(2).unwrap_or_else(|| { let _ = std::fs::remove_file("/tmp/probe.db"); "sqlite:///tmp/probe.db".into() });
    let store = simbatch_store::open(&url, Cipher::new(&[1u8; 32])).await.unwrap();
    store.create_key("p").await.unwrap();
    let t = store.tenant_by_name("p").await.unwrap().unwrap().id;
    for op in [Operation::RegisterSim, Operation::Activate] {
        let b = store.create_batch(&NewBatch { tenant_id: t.clone(), operation: Some(op), mode: BatchMode::Parallel, source: "p".into(), external_ref: None, parent_id: None }).await.unwrap();
        let t0 = Instant::now();
        for s in (0..n).step_by(1000) {
            let items: Vec<NewItem> = (s..(s + 1000).min(n)).map(|i| NewItem { seq: i as i64, iccid: format!("8988{i:016}"), operation: Some(op), params: Map::from_iter([("iccid".to_owned(), Value::String(format!("8988{i:016}")))]), secret: Map::new(), rejection: None }).collect();
            store.append_items(&t, &b.id, &items).await.unwrap();
        }
        store.seal_batch(&t, &b.id).await.unwrap();
        let ins = t0.elapsed();
        let t0 = Instant::now();
        let w = worker::start(store.clone(), WorkerConfig { workers: if url.starts_with("postgres") {4} else {1}, ..Default::default() }, Arc::new(Notify::new()));
        loop { let x = store.get_batch(&t, &b.id).await.unwrap().unwrap(); if x.status.is_terminal() { break; } tokio::time::sleep(Duration::from_millis(10)).await; }
        let run = t0.elapsed();
        w.shutdown().await;
        println!("{op}: insert {:.0}/s, run {:.0}/s", n as f64 / ins.as_secs_f64(), n as f64 / run.as_secs_f64());
    }
}
