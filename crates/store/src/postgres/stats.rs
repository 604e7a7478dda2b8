//! Planner statistics kept current while the hot tables grow.
//!
//! PostgreSQL plans from the statistics `ANALYZE` gathers; autovacuum runs
//! it at most once a minute, and only after a share of the table changed.
//! A fresh database that takes a 100,000-item upload is planned as if it
//! were still empty for the whole run: the pick sorted every runnable item
//! on each claim and the claim's `id = ANY(...)` update scanned the whole
//! item table, so each chunk cost more than the one before.
//!
//! Each store counts the rows it adds to `batch_items` and `sims`. When they
//! reach half of what the tables held at the last refresh (and at least
//! [`MIN_GROWTH`]), the next claim first runs `ANALYZE` on the hot tables.
//! The count is per process: every replica refreshes after its own writes,
//! which only makes refreshes more frequent.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};

use super::PgStore;

/// Rows added before statistics are worth refreshing.
pub(super) const MIN_GROWTH: i64 = 10_000;

/// Rows this process added to the hot tables since their last `ANALYZE`.
#[derive(Debug, Default)]
pub(super) struct Growth {
    /// Rows added since the last refresh.
    since: AtomicI64,
    /// Rows counted up to the last refresh.
    base: AtomicI64,
    /// A refresh is running.
    running: AtomicBool,
}

impl Growth {
    /// Count `rows` added.
    pub fn record(&self, rows: usize) {
        self.since
            .fetch_add(i64::try_from(rows).unwrap_or(i64::MAX), Ordering::Relaxed);
    }

    /// Whether the tables grew enough since the last refresh.
    pub fn due(&self) -> bool {
        let since = self.since.load(Ordering::Relaxed);
        since >= MIN_GROWTH.max(self.base.load(Ordering::Relaxed) / 2)
    }

    /// Take the right to refresh: false if another task is refreshing.
    fn begin(&self) -> bool {
        self.running
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Relaxed)
            .is_ok()
    }

    /// A refresh ended; `counted` rows are now in the statistics.
    fn end(&self, counted: Option<i64>) {
        if let Some(n) = counted {
            self.since.fetch_sub(n, Ordering::Relaxed);
            self.base.fetch_add(n, Ordering::Relaxed);
        }
        self.running.store(false, Ordering::Release);
    }
}

impl PgStore {
    /// `ANALYZE` the tables the engine's statements plan against, if they
    /// grew enough since this process last did. A failed refresh is logged
    /// and tried again on a later claim; the claim goes on either way.
    pub(super) async fn refresh_statistics_if_due(&self) {
        if !self.growth.due() || !self.growth.begin() {
            return;
        }
        let counted = self.growth.since.load(Ordering::Relaxed);
        let started = std::time::Instant::now();
        let outcome = sqlx::query("ANALYZE batch_items, sims, profiles")
            .execute(&self.pool)
            .await;
        match outcome {
            Ok(_) => {
                self.growth.end(Some(counted));
                tracing::debug!(
                    rows = counted,
                    ms = started.elapsed().as_millis() as u64,
                    "planner statistics refreshed"
                );
            }
            Err(e) => {
                self.growth.end(None);
                tracing::warn!(error = %e, "refreshing planner statistics failed");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refresh_is_due_after_min_growth_then_after_half_the_base() {
        let g = Growth::default();
        g.record(MIN_GROWTH as usize - 1);
        assert!(!g.due());
        g.record(1);
        assert!(g.due());
        assert!(g.begin());
        assert!(!g.begin(), "one refresh at a time");
        g.end(Some(MIN_GROWTH));
        assert!(!g.due());
        // The tables now hold 100,000 counted rows: the next refresh waits for 50,000.
        g.base.store(100_000, Ordering::Relaxed);
        g.record(49_999);
        assert!(!g.due());
        g.record(1);
        assert!(g.due());
    }

    #[test]
    fn a_failed_refresh_keeps_its_rows_due() {
        let g = Growth::default();
        g.record(MIN_GROWTH as usize);
        assert!(g.begin());
        g.end(None);
        assert!(g.due());
        assert!(g.begin(), "the flag was released");
    }
}

#[cfg(test)]
mod database_tests {
    use super::*;

    #[tokio::test]
    async fn a_due_refresh_analyzes_the_hot_tables() {
        let store = super::super::test_store().await;
        let analyzed = || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM pg_stat_user_tables
                 WHERE relname IN ('batch_items', 'sims', 'profiles') AND last_analyze IS NOT NULL",
            )
            .fetch_one(&store.pool)
            .await
            .unwrap();
            n
        };
        store.refresh_statistics_if_due().await;
        assert_eq!(analyzed().await, 0, "nothing grew: no refresh");
        store.growth.record(MIN_GROWTH as usize);
        store.refresh_statistics_if_due().await;
        assert_eq!(analyzed().await, 3);
        assert!(!store.growth.due());
    }
}
