//! Dialect look-ups on PostgreSQL: one event type after a cursor, a SIM's
//! open order, and the counts behind paged vendor lists. Each is served by an index.

use sqlx::Postgres;

use super::PgStore;
use crate::*;

impl PgStore {
    pub(super) async fn events_of_type_after_impl(
        &self,
        tenant_id: &str,
        kind: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        self.read_events(tenant_id, Some(kind), after, limit).await
    }

    pub(super) async fn open_order_impl(
        &self,
        tenant_id: &str,
        iccid: &str,
    ) -> Result<Option<i64>> {
        Ok(sqlx::query_scalar(
            "SELECT id FROM batch_items WHERE tenant_id = $1 AND iccid = $2
             AND status IN ('APPROVED', 'PROCESSING') ORDER BY id LIMIT 1",
        )
        .bind(tenant_id)
        .bind(iccid)
        .fetch_optional(&self.pool)
        .await?)
    }

    pub(super) async fn count_sims_impl(&self, tenant_id: &str, f: &SimFilter) -> Result<i64> {
        let mut q =
            sqlx::QueryBuilder::<Postgres>::new("SELECT count(*) FROM sims WHERE tenant_id = ");
        q.push_bind(tenant_id);
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(p) = &f.rate_plan {
            q.push(" AND rate_plan = ").push_bind(p);
        }
        if let Some((n, v)) = &f.custom_field {
            if !(1..=5).contains(n) {
                return Ok(0);
            }
            q.push(format!(" AND custom_field_{n} = ")).push_bind(v);
        }
        if let Some(v) = &f.imsi {
            q.push(" AND imsi = ").push_bind(v);
        }
        if let Some(v) = &f.msisdn {
            q.push(" AND msisdn = ").push_bind(v);
        }
        Ok(q.build_query_scalar().fetch_one(&self.pool).await?)
    }

    pub(super) async fn count_sim_history_impl(&self, tenant_id: &str, iccid: &str) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM sim_history WHERE tenant_id = $1 AND iccid = $2",
        )
        .bind(tenant_id)
        .bind(iccid)
        .fetch_one(&self.pool)
        .await?)
    }
}
