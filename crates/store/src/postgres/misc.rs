//! Tenants and keys, templates, SIM reads, the event feed, idempotency keys
//! and the small metric queries.

use std::collections::HashSet;

use sqlx::{Postgres, Row, Transaction};

use super::rows::{self, SIM_COLS};
use super::{db_err, page, PgStore};
use crate::crypto::hash_secret;
use crate::model::*;
use crate::Result;

/// Advisory lock key that serializes `bootstrap_default_tenant` across replicas.
const BOOTSTRAP_LOCK: i64 = 0x0053_494d_424f_4f54; // "SIMBOOT"

/// Create the tenant if needed and a key for it, inside `tx`.
async fn insert_key(tx: &mut Transaction<'_, Postgres>, tenant_name: &str) -> Result<NewKey> {
    let now = now_ms();
    sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING")
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(tenant_name)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let tenant_id: String = sqlx::query_scalar("SELECT id FROM tenants WHERE name = $1")
        .bind(tenant_name)
        .fetch_one(&mut **tx)
        .await?;
    let key = NewKey::generate(tenant_name);
    sqlx::query(
        "INSERT INTO api_keys (key_id, tenant_id, secret_hash, created_at) VALUES ($1, $2, $3, $4)",
    )
    .bind(&key.key_id)
    .bind(&tenant_id)
    .bind(key.secret_hash())
    .bind(now)
    .execute(&mut **tx)
    .await
    .map_err(db_err("key"))?;
    Ok(key)
}

impl PgStore {
    /// See [`crate::Store::create_key`].
    pub(super) async fn create_key_impl(&self, tenant_name: &str) -> Result<NewKey> {
        let mut tx = self.pool.begin().await?;
        let key = insert_key(&mut tx, tenant_name).await?;
        self.seal_key_secret(&mut tx, &key).await?;
        tx.commit().await?;
        Ok(key)
    }

    /// See [`crate::Store::list_keys`].
    pub(super) async fn list_keys_impl(&self) -> Result<Vec<KeyInfo>> {
        let rows = sqlx::query(
            "SELECT k.key_id, t.name, k.created_at, k.revoked_at FROM api_keys k
             JOIN tenants t ON t.id = k.tenant_id ORDER BY k.created_at DESC, k.key_id DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(KeyInfo {
                    key_id: r.try_get(0)?,
                    tenant: r.try_get(1)?,
                    created_at: r.try_get(2)?,
                    revoked_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// See [`crate::Store::revoke_key`].
    pub(super) async fn revoke_key_impl(&self, key_id: &str) -> Result<bool> {
        let done = sqlx::query(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $2) WHERE key_id = $1",
        )
        .bind(key_id)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() > 0)
    }

    /// See [`crate::Store::authenticate`].
    pub(super) async fn authenticate_impl(
        &self,
        key_id: &str,
        secret: &str,
    ) -> Result<Option<Tenant>> {
        let row = sqlx::query(
            "SELECT t.id, t.name FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_id = $1 AND k.secret_hash = $2 AND k.revoked_at IS NULL",
        )
        .bind(key_id)
        .bind(hash_secret(secret))
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| {
            Ok(Tenant {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// See [`crate::Store::bootstrap_default_tenant`].
    pub(super) async fn bootstrap_impl(&self) -> Result<Option<NewKey>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(BOOTSTRAP_LOCK)
            .execute(&mut *tx)
            .await?;
        let any: bool = sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM tenants)")
            .fetch_one(&mut *tx)
            .await?;
        if any {
            return Ok(None);
        }
        let key = insert_key(&mut tx, "default").await?;
        self.seal_key_secret(&mut tx, &key).await?;
        tx.commit().await?;
        Ok(Some(key))
    }

    /// See [`crate::Store::tenant_by_name`].
    pub(super) async fn tenant_by_name_impl(&self, name: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name FROM tenants WHERE name = $1")
            .bind(name)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| {
            Ok(Tenant {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
            })
        })
        .transpose()
    }

    /// See [`crate::Store::add_template`].
    pub(super) async fn add_template_impl(
        &self,
        name: &str,
        content: &[u8],
    ) -> Result<TemplateInfo> {
        let info = TemplateInfo::describe(name, content);
        sqlx::query("INSERT INTO templates (name, content, size, sha256, created_at) VALUES ($1, $2, $3, $4, $5)")
            .bind(&info.name)
            .bind(content)
            .bind(info.size)
            .bind(&info.sha256)
            .bind(info.created_at)
            .execute(&self.pool)
            .await
            .map_err(db_err(&format!("template '{name}'")))?;
        Ok(info)
    }

    /// See [`crate::Store::list_templates`].
    pub(super) async fn list_templates_impl(&self) -> Result<Vec<TemplateInfo>> {
        let rows =
            sqlx::query("SELECT name, size, sha256, created_at FROM templates ORDER BY name")
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|r| {
                Ok(TemplateInfo {
                    name: r.try_get(0)?,
                    size: r.try_get(1)?,
                    sha256: r.try_get(2)?,
                    created_at: r.try_get(3)?,
                })
            })
            .collect()
    }

    /// See [`crate::Store::template_content`].
    pub(super) async fn template_content_impl(&self, name: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT content FROM templates WHERE name = $1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// See [`crate::Store::template_names`].
    pub(super) async fn template_names_impl(&self) -> Result<HashSet<String>> {
        let names: Vec<String> = sqlx::query_scalar("SELECT name FROM templates")
            .fetch_all(&self.pool)
            .await?;
        Ok(names.into_iter().collect())
    }

    /// See [`crate::Store::queue_depth`].
    pub(super) async fn queue_depth_impl(&self) -> Result<i64> {
        Ok(sqlx::query_scalar(
            "SELECT count(*) FROM batch_items WHERE status IN ('APPROVED', 'PROCESSING')",
        )
        .fetch_one(&self.pool)
        .await?)
    }

    /// See [`crate::Store::batch_status_counts`].
    pub(super) async fn batch_status_counts_impl(&self) -> Result<Vec<(String, i64)>> {
        Ok(
            sqlx::query_as("SELECT status, count(*) FROM batches GROUP BY status ORDER BY status")
                .fetch_all(&self.pool)
                .await?,
        )
    }

    /// See [`crate::Store::get_sim`].
    pub(super) async fn get_sim_impl(
        &self,
        tenant_id: &str,
        iccid: &str,
    ) -> Result<Option<SimRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {SIM_COLS} FROM sims WHERE tenant_id = $1 AND iccid = $2"
        ))
        .bind(tenant_id)
        .bind(iccid)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::sim_record).transpose()
    }

    /// See [`crate::Store::list_sims`].
    pub(super) async fn list_sims_impl(
        &self,
        tenant_id: &str,
        f: &SimFilter,
    ) -> Result<Vec<SimRecord>> {
        let mut q = sqlx::QueryBuilder::<Postgres>::new(format!(
            "SELECT {SIM_COLS} FROM sims WHERE tenant_id = "
        ));
        q.push_bind(tenant_id);
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(p) = &f.rate_plan {
            q.push(" AND rate_plan = ").push_bind(p);
        }
        if let Some((n, v)) = &f.custom_field {
            if !(1..=5).contains(n) {
                return Ok(Vec::new());
            }
            q.push(format!(" AND custom_field_{n} = ")).push_bind(v);
        }
        if let Some(v) = &f.imsi {
            q.push(" AND imsi = ").push_bind(v);
        }
        if let Some(v) = &f.msisdn {
            q.push(" AND msisdn = ").push_bind(v);
        }
        if let Some(v) = &f.after_iccid {
            q.push(" AND iccid > ").push_bind(v);
        }
        q.push(" ORDER BY iccid LIMIT ").push_bind(page(f.limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(rows::sim_record).collect()
    }

    /// See [`crate::Store::sim_history`].
    pub(super) async fn sim_history_impl(
        &self,
        tenant_id: &str,
        iccid: &str,
        after_id: i64,
        limit: i64,
    ) -> Result<Vec<HistoryEntry>> {
        let rows = sqlx::query(
            "SELECT id, at, operation, from_status, to_status, batch_id, item_id FROM sim_history
             WHERE tenant_id = $1 AND iccid = $2 AND id > $3 ORDER BY id LIMIT $4",
        )
        .bind(tenant_id)
        .bind(iccid)
        .bind(after_id)
        .bind(page(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(HistoryEntry {
                    id: r.try_get(0)?,
                    at: r.try_get(1)?,
                    operation: r.try_get(2)?,
                    from_status: r.try_get(3)?,
                    to_status: r.try_get(4)?,
                    batch_id: r.try_get(5)?,
                    order_id: r.try_get(6)?,
                })
            })
            .collect()
    }

    /// See [`crate::Store::events_after`].
    pub(super) async fn events_after_impl(
        &self,
        tenant_id: &str,
        after: i64,
        limit: i64,
    ) -> Result<Vec<Event>> {
        self.read_events(tenant_id, None, after, limit).await
    }

    /// See [`crate::Store::idempotency_begin`].
    pub(super) async fn idempotency_begin_impl(
        &self,
        tenant_id: &str,
        key: &str,
        hash: &str,
    ) -> Result<Idempotency> {
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, status_code, body, created_at)
             VALUES ($1, $2, $3, NULL, NULL, $4) ON CONFLICT DO NOTHING",
        )
        .bind(tenant_id)
        .bind(key)
        .bind(hash)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        if inserted.rows_affected() > 0 {
            return Ok(Idempotency::New);
        }
        let row = sqlx::query("SELECT request_hash, status_code, body FROM idempotency_keys WHERE tenant_id = $1 AND key = $2")
            .bind(tenant_id)
            .bind(key)
            .fetch_optional(&self.pool)
            .await?;
        let Some(r) = row else {
            // Aborted or swept between the two statements: the caller may retry.
            return Ok(Idempotency::InProgress);
        };
        let stored_hash: String = r.try_get(0)?;
        let status: Option<i64> = r.try_get(1)?;
        let body: Option<String> = r.try_get(2)?;
        Ok(if stored_hash != hash {
            Idempotency::Mismatch
        } else {
            match status {
                None => Idempotency::InProgress,
                Some(s) => Idempotency::Replay {
                    status: u16::try_from(s).unwrap_or(500),
                    body: body.unwrap_or_default(),
                },
            }
        })
    }

    /// See [`crate::Store::idempotency_finish`].
    pub(super) async fn idempotency_finish_impl(
        &self,
        tenant_id: &str,
        key: &str,
        status: u16,
        body: &str,
    ) -> Result<()> {
        sqlx::query("UPDATE idempotency_keys SET status_code = $3, body = $4 WHERE tenant_id = $1 AND key = $2")
            .bind(tenant_id)
            .bind(key)
            .bind(i64::from(status))
            .bind(body)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// See [`crate::Store::idempotency_abort`].
    pub(super) async fn idempotency_abort_impl(&self, tenant_id: &str, key: &str) -> Result<()> {
        sqlx::query("DELETE FROM idempotency_keys WHERE tenant_id = $1 AND key = $2 AND status_code IS NULL")
            .bind(tenant_id)
            .bind(key)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// See [`crate::Store::idempotency_sweep`].
    pub(super) async fn idempotency_sweep_impl(&self, before_ms: i64) -> Result<u64> {
        let done = sqlx::query("DELETE FROM idempotency_keys WHERE created_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?;
        Ok(done.rows_affected())
    }
}
