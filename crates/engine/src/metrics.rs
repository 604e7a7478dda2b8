//! Prometheus metrics of one process, encoded in the OpenMetrics text format
//! that Prometheus scrapes.
//!
//! One [`Metrics`] value is shared by the workers (items and chunk latency),
//! the webhook dispatcher (deliveries) and the HTTP layer (request duration).
//! Gauges that describe the database, not the process (batches by state,
//! queue depth), are read from the store at scrape time by
//! [`Metrics::encode_with`], so every replica reports the same numbers.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use simbatch_core::BatchStatus;
use simbatch_store::{CompleteSummary, Store, StoreError};

/// Media type of the encoded metrics.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ItemLabels {
    operation: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ResultLabel {
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StateLabel {
    state: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: String,
    route: String,
    status: String,
}

fn latency_histogram() -> Histogram {
    // 1 ms … ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// The process's metrics (see `docs/operations.md` for the list).
pub struct Metrics {
    registry: Registry,
    items: Family<ItemLabels, Counter>,
    chunk_latency: Histogram,
    webhook_deliveries: Family<ResultLabel, Counter>,
    batches: Family<StateLabel, Gauge>,
    queue_depth: Gauge,
    http: Family<HttpLabels, Histogram>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every simbatch metric registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("simbatch");
        let items = Family::<ItemLabels, Counter>::default();
        registry.register(
            "items_processed",
            "Items the workers processed, by operation and result (completed, failed, or canceled: \
             not run because an earlier item for the SIM failed in a sequential batch)",
            items.clone(),
        );
        let chunk_latency = latency_histogram();
        registry.register(
            "chunk_claim_to_complete_seconds",
            "Time from claiming a chunk of items to committing its results",
            chunk_latency.clone(),
        );
        let webhook_deliveries = Family::<ResultLabel, Counter>::default();
        registry.register(
            "webhook_deliveries",
            "Webhook delivery attempts, by result (success, http_error, network_error, disabled)",
            webhook_deliveries.clone(),
        );
        let batches = Family::<StateLabel, Gauge>::default();
        registry.register(
            "batches",
            "Batches in the database, by state (read at scrape time)",
            batches.clone(),
        );
        let queue_depth = Gauge::default();
        registry.register(
            "queue_depth",
            "Items waiting to run or running (read at scrape time)",
            queue_depth.clone(),
        );
        let http = Family::<HttpLabels, Histogram>::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "HTTP request duration, by method, matched route template and status",
            http.clone(),
        );
        Self {
            registry,
            items,
            chunk_latency,
            webhook_deliveries,
            batches,
            queue_depth,
            http,
        }
    }

    /// A shared fresh instance.
    pub fn shared() -> Arc<Self> {
        Arc::new(Self::new())
    }

    /// Record a completed chunk: its per-operation outcomes and its latency.
    pub fn chunk_done(&self, summary: &CompleteSummary, claim_to_complete: Duration) {
        for c in &summary.by_operation {
            let op = c.operation.as_str().to_owned();
            for (result, n) in [
                ("completed", c.completed),
                ("failed", c.failed),
                ("canceled", c.canceled),
            ] {
                if n > 0 {
                    self.items
                        .get_or_create(&ItemLabels {
                            operation: op.clone(),
                            result: result.into(),
                        })
                        .inc_by(n);
                }
            }
        }
        self.chunk_latency.observe(claim_to_complete.as_secs_f64());
    }

    /// Record one webhook delivery attempt by its result.
    pub fn webhook_delivery(&self, result: &str) {
        self.webhook_deliveries
            .get_or_create(&ResultLabel {
                result: result.into(),
            })
            .inc();
    }

    /// Record one HTTP request; `route` is the matched path template
    /// (e.g. `/v1/batches/{id}`), never the raw path.
    pub fn http_request(&self, method: &str, route: &str, status: u16, elapsed: Duration) {
        self.http
            .get_or_create(&HttpLabels {
                method: method.into(),
                route: route.into(),
                status: status.to_string(),
            })
            .observe(elapsed.as_secs_f64());
    }

    /// Read the store's gauges, then encode everything.
    pub async fn encode_with(&self, store: &dyn Store) -> Result<String, StoreError> {
        let depth = store.queue_depth().await?;
        let counts = store.batch_status_counts().await?;
        for state in BatchStatus::ALL {
            let n = counts
                .iter()
                .find(|(s, _)| s == state.as_str())
                .map_or(0, |(_, n)| *n);
            self.batches
                .get_or_create(&StateLabel {
                    state: state.as_str().into(),
                })
                .set(n);
        }
        self.queue_depth.set(depth);
        Ok(self.encode())
    }

    /// Encode the current values.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use simbatch_core::Operation;
    use simbatch_store::OperationCount;

    #[test]
    fn counters_and_histograms_encode_with_labels() {
        let m = Metrics::new();
        let summary = CompleteSummary {
            by_operation: vec![OperationCount {
                operation: Operation::Activate,
                completed: 3,
                failed: 2,
                canceled: 4,
            }],
            ..Default::default()
        };
        m.chunk_done(&summary, Duration::from_millis(20));
        m.webhook_delivery("success");
        m.http_request("GET", "/v1/batches/{id}", 200, Duration::from_millis(3));
        let text = m.encode();
        assert!(
            text.contains(
                "simbatch_items_processed_total{operation=\"activate\",result=\"completed\"} 3"
            ),
            "{text}"
        );
        assert!(text.contains(
            "simbatch_items_processed_total{operation=\"activate\",result=\"failed\"} 2"
        ));
        assert!(text.contains(
            "simbatch_items_processed_total{operation=\"activate\",result=\"canceled\"} 4"
        ));
        assert!(text.contains("simbatch_chunk_claim_to_complete_seconds_count 1"));
        assert!(text.contains("simbatch_webhook_deliveries_total{result=\"success\"} 1"));
        assert!(text.contains(
            "simbatch_http_request_duration_seconds_count{method=\"GET\",route=\"/v1/batches/{id}\",status=\"200\"} 1"
        ));
        assert!(text.ends_with("# EOF\n"));
    }
}
