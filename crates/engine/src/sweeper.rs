//! Retention sweeper: removes old batches and expired idempotency keys in
//! bounded chunks, so a large backlog never holds the writer for long. It
//! also enforces `expireTime`: an unused eSIM profile past its expiry moves
//! to UNAVAILABLE, with a `profile.status_changed` event.

use std::sync::Arc;
use std::time::Duration;

use simbatch_store::{now_ms, Store};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Sweeper settings.
#[derive(Debug, Clone)]
pub struct SweeperConfig {
    /// Batches (and events) older than this are removed.
    pub retention: Duration,
    /// Idempotency keys are kept at least this long.
    pub idempotency_ttl: Duration,
    /// Time between sweeps.
    pub interval: Duration,
    /// Rows deleted per transaction.
    pub chunk: i64,
}

impl Default for SweeperConfig {
    fn default() -> Self {
        Self {
            retention: Duration::from_secs(60 * 24 * 3600),
            idempotency_ttl: Duration::from_secs(48 * 3600),
            interval: Duration::from_secs(600),
            chunk: 5000,
        }
    }
}

/// One full sweep; returns rows deleted.
pub async fn sweep_once(
    store: &dyn Store,
    cfg: &SweeperConfig,
) -> Result<u64, simbatch_store::StoreError> {
    let cutoff = now_ms() - cfg.retention.as_millis() as i64;
    let mut total = 0;
    loop {
        let n = store.sweep_retention(cutoff, cfg.chunk).await?;
        total += n;
        if n == 0 {
            break;
        }
        tokio::task::yield_now().await;
    }
    total += store
        .idempotency_sweep(now_ms() - cfg.idempotency_ttl.as_millis() as i64)
        .await?;
    total += expire_profiles(store, cfg.chunk).await?;
    Ok(total)
}

/// Move every unused profile whose expiry has passed to UNAVAILABLE, `chunk`
/// profiles per transaction; returns profiles expired.
pub async fn expire_profiles(
    store: &dyn Store,
    chunk: i64,
) -> Result<u64, simbatch_store::StoreError> {
    let now = now_ms();
    let mut total = 0;
    loop {
        let n = store.expire_profiles(now, chunk).await?;
        total += n;
        if n == 0 {
            return Ok(total);
        }
        tokio::task::yield_now().await;
    }
}

/// Run [`sweep_once`] every `cfg.interval` until cancelled.
pub fn start(
    store: Arc<dyn Store>,
    cfg: SweeperConfig,
    cancel: CancellationToken,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            match sweep_once(store.as_ref(), &cfg).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(rows = n, "retention sweep removed rows"),
                Err(e) => tracing::warn!(error = %e, "retention sweep failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(cfg.interval) => {}
                _ = cancel.cancelled() => return,
            }
        }
    })
}
