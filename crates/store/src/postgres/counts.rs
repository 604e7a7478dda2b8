//! Batches per state for one tenant, under the list filters (PostgreSQL).

use simbatch_core::BatchStatus;
use sqlx::{Postgres, QueryBuilder};

use super::PgStore;
use crate::{BatchFilter, Result};

impl PgStore {
    /// See [`crate::Store::count_batches`].
    pub(super) async fn count_batches_impl(
        &self,
        tenant_id: &str,
        f: &BatchFilter,
    ) -> Result<Vec<(BatchStatus, i64)>> {
        let mut q = QueryBuilder::<Postgres>::new(
            "SELECT status, count(*)::BIGINT FROM batches WHERE tenant_id = ",
        );
        q.push_bind(tenant_id);
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(o) = f.operation {
            q.push(" AND operation = ").push_bind(o.as_str());
        }
        if let Some(t) = f.created_after {
            q.push(" AND created_at >= ").push_bind(t);
        }
        if let Some(t) = f.created_before {
            q.push(" AND created_at < ").push_bind(t);
        }
        q.push(" GROUP BY status");
        let rows: Vec<(String, i64)> = q.build_query_as().fetch_all(&self.pool).await?;
        Ok(crate::batch_counts::every_status(rows))
    }
}
