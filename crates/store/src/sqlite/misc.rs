//! Tenants, keys, templates, SIM listing, webhooks and idempotency on SQLite.

use sqlx::{QueryBuilder, Row, Sqlite};

use super::{conflict, rows, SqliteStore};
use crate::crypto::{constant_time_eq, hash_secret, new_webhook_secret};
use crate::*;

impl SqliteStore {
    pub(super) async fn create_key_impl(&self, tenant_name: &str) -> Result<NewKey> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let key = create_key_in(&mut tx, tenant_name).await?;
        self.seal_key_secret(&mut tx, &key).await?;
        tx.commit().await?;
        Ok(key)
    }

    pub(super) async fn list_keys_impl(&self) -> Result<Vec<KeyInfo>> {
        let rows = sqlx::query(
            "SELECT k.key_id, t.name, k.created_at, k.revoked_at FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             ORDER BY k.created_at DESC, k.key_id",
        )
        .fetch_all(&self.read)
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

    pub(super) async fn revoke_key_impl(&self, key_id: &str) -> Result<bool> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let n = sqlx::query(
            "UPDATE api_keys SET revoked_at = ?1 WHERE key_id = ?2 AND revoked_at IS NULL",
        )
        .bind(now_ms())
        .bind(key_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n > 0)
    }

    pub(super) async fn authenticate_impl(
        &self,
        key_id: &str,
        secret: &str,
    ) -> Result<Option<Tenant>> {
        let row = sqlx::query(
            "SELECT t.id, t.name, k.secret_hash FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_id = ?1 AND k.revoked_at IS NULL",
        )
        .bind(key_id)
        .fetch_optional(&self.read)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let stored: String = r.try_get(2)?;
        if !constant_time_eq(stored.as_bytes(), hash_secret(secret).as_bytes()) {
            return Ok(None);
        }
        Ok(Some(Tenant {
            id: r.try_get(0)?,
            name: r.try_get(1)?,
        }))
    }

    pub(super) async fn bootstrap_impl(&self) -> Result<Option<NewKey>> {
        // The check and the insert share one write transaction, so two callers cannot both see an empty table.
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let count: i64 = sqlx::query_scalar("SELECT count(*) FROM tenants")
            .fetch_one(&mut *tx)
            .await?;
        let key = if count == 0 {
            let key = create_key_in(&mut tx, "default").await?;
            self.seal_key_secret(&mut tx, &key).await?;
            Some(key)
        } else {
            None
        };
        tx.commit().await?;
        Ok(key)
    }

    pub(super) async fn tenant_by_name_impl(&self, name: &str) -> Result<Option<Tenant>> {
        let row = sqlx::query("SELECT id, name FROM tenants WHERE name = ?1")
            .bind(name)
            .fetch_optional(&self.read)
            .await?;
        row.map(|r| {
            Ok(Tenant {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
            })
        })
        .transpose()
    }

    pub(super) async fn add_template_impl(
        &self,
        name: &str,
        content: &[u8],
    ) -> Result<TemplateInfo> {
        let info = TemplateInfo::describe(name, content);
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query("INSERT INTO templates (name, content, size, sha256, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .bind(name)
            .bind(content)
            .bind(info.size)
            .bind(&info.sha256)
            .bind(info.created_at)
            .execute(&mut *tx)
            .await
            .map_err(|e| match conflict(e) {
                StoreError::Conflict(_) => StoreError::Conflict(format!("template '{name}'")),
                other => other,
            })?;
        tx.commit().await?;
        Ok(info)
    }

    pub(super) async fn list_templates_impl(&self) -> Result<Vec<TemplateInfo>> {
        let rows =
            sqlx::query("SELECT name, size, sha256, created_at FROM templates ORDER BY name")
                .fetch_all(&self.read)
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

    pub(super) async fn list_sims_impl(
        &self,
        tenant_id: &str,
        f: &SimFilter,
    ) -> Result<Vec<SimRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {} FROM sims WHERE tenant_id = ",
            rows::SIM_COLS
        ));
        q.push_bind(tenant_id);
        if let Some(s) = f.status {
            q.push(" AND status = ").push_bind(s.as_str());
        }
        if let Some(p) = &f.rate_plan {
            q.push(" AND rate_plan = ").push_bind(p.clone());
        }
        if let Some((n, v)) = &f.custom_field {
            // n is 1..=5, checked by the caller; the column name is never user text.
            let n = (*n).clamp(1, 5);
            q.push(format!(" AND custom_field_{n} = "))
                .push_bind(v.clone());
        }
        if let Some(v) = &f.imsi {
            q.push(" AND imsi = ").push_bind(v.clone());
        }
        if let Some(v) = &f.msisdn {
            q.push(" AND msisdn = ").push_bind(v.clone());
        }
        if let Some(c) = &f.after_iccid {
            q.push(" AND iccid > ").push_bind(c.clone());
        }
        q.push(" ORDER BY iccid LIMIT ").push_bind(f.limit.max(1));
        q.build()
            .fetch_all(&self.read)
            .await?
            .iter()
            .map(rows::sim)
            .collect()
    }

    pub(super) async fn create_webhook_impl(
        &self,
        tenant_id: &str,
        url: &str,
        format: &str,
    ) -> Result<Webhook> {
        let now = now_ms();
        let id = uuid::Uuid::new_v4().to_string();
        let secret = new_webhook_secret();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let cursor: i64 = sqlx::query_scalar("SELECT coalesce(max(id), 0) FROM outbox")
            .fetch_one(&mut *tx)
            .await?;
        sqlx::query(
            "INSERT INTO webhooks (id, tenant_id, url, secret_enc, cursor, created_at, format) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .bind(&id)
        .bind(tenant_id)
        .bind(url)
        .bind(self.cipher.seal("webhook", secret.as_bytes()))
        .bind(cursor)
        .bind(now)
        .bind(format)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Webhook {
            id,
            tenant_id: tenant_id.to_owned(),
            url: url.to_owned(),
            enabled: true,
            disabled_reason: None,
            created_at: now,
            secret: Some(secret),
            cursor,
            attempts: 0,
            format: format.to_owned(),
        })
    }

    fn webhook(&self, r: &sqlx::sqlite::SqliteRow, with_secret: bool) -> Result<Webhook> {
        let secret = if with_secret {
            let sealed: String = r.try_get("secret_enc")?;
            Some(
                String::from_utf8(self.cipher.open("webhook", &sealed)?)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
            )
        } else {
            None
        };
        Ok(Webhook {
            id: r.try_get("id")?,
            tenant_id: r.try_get("tenant_id")?,
            url: r.try_get("url")?,
            enabled: r.try_get::<i64, _>("enabled")? != 0,
            disabled_reason: r.try_get("disabled_reason")?,
            created_at: r.try_get("created_at")?,
            secret,
            cursor: r.try_get("cursor")?,
            attempts: r.try_get("attempts")?,
            format: r.try_get("format")?,
        })
    }

    pub(super) async fn list_webhooks_impl(
        &self,
        tenant_id: &str,
        id: Option<&str>,
    ) -> Result<Vec<Webhook>> {
        let rows = sqlx::query(
            "SELECT * FROM webhooks WHERE tenant_id = ?1 AND (?2 IS NULL OR id = ?2) ORDER BY created_at, id",
        )
        .bind(tenant_id)
        .bind(id)
        .fetch_all(&self.read)
        .await?;
        rows.iter().map(|r| self.webhook(r, false)).collect()
    }

    pub(super) async fn due_deliveries_impl(
        &self,
        now: i64,
        limit: i64,
    ) -> Result<Vec<(Webhook, Event)>> {
        // The block holding each webhook's next event; the event is read
        // from the block, most often from the store's block cache.
        let rows = sqlx::query(
            "SELECT w.*, (SELECT min(id) FROM outbox WHERE tenant_id = w.tenant_id AND id > w.cursor) AS block_id
             FROM webhooks w
             WHERE w.enabled = 1 AND w.next_attempt_at <= ?1 AND block_id IS NOT NULL
             ORDER BY w.next_attempt_at LIMIT ?2",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        let mut due = Vec::with_capacity(rows.len());
        for r in &rows {
            let hook = self.webhook(r, true)?;
            if let Some(event) = self
                .event_after_in(r.try_get("block_id")?, hook.cursor)
                .await?
            {
                due.push((hook, event));
            }
        }
        Ok(due)
    }

    pub(super) async fn record_delivery_impl(&self, a: &DeliveryAttempt) -> Result<()> {
        let now = now_ms();
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        if !a.skipped {
            sqlx::query(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, attempt, status_code, error, duration_ms, at)
             SELECT ?1, ?2, ?3, attempts + 1, ?4, ?5, ?6, ?7 FROM webhooks WHERE id = ?1",
        )
        .bind(&a.webhook_id)
        .bind(&a.event.id)
        .bind(&a.event.kind)
        .bind(a.status_code)
        .bind(&a.error)
        .bind(a.duration_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        }
        let q = match &a.next {
            DeliveryNext::Advance => sqlx::query(
                "UPDATE webhooks SET cursor = ?1, attempts = 0, next_attempt_at = 0 WHERE id = ?2",
            )
            .bind(a.event.seq)
            .bind(&a.webhook_id),
            DeliveryNext::RetryAt(t) => sqlx::query(
                "UPDATE webhooks SET attempts = attempts + 1, next_attempt_at = ?1 WHERE id = ?2",
            )
            .bind(*t)
            .bind(&a.webhook_id),
            DeliveryNext::Disable(reason) => {
                sqlx::query("UPDATE webhooks SET enabled = 0, disabled_reason = ?1 WHERE id = ?2")
                    .bind(reason)
                    .bind(&a.webhook_id)
            }
        };
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    pub(super) async fn delivery_log_impl(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryLog>> {
        let rows = sqlx::query(
            "SELECT d.* FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE w.tenant_id = ?1 AND d.webhook_id = ?2 ORDER BY d.id DESC LIMIT ?3",
        )
        .bind(tenant_id)
        .bind(webhook_id)
        .bind(limit)
        .fetch_all(&self.read)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryLog {
                    event_id: r.try_get("event_id")?,
                    event_type: r.try_get("event_type")?,
                    attempt: r.try_get("attempt")?,
                    status_code: r.try_get("status_code")?,
                    error: r.try_get("error")?,
                    duration_ms: r.try_get("duration_ms")?,
                    at: r.try_get("at")?,
                })
            })
            .collect()
    }

    pub(super) async fn idempotency_begin_impl(
        &self,
        tenant_id: &str,
        key: &str,
        hash: &str,
    ) -> Result<Idempotency> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let inserted = sqlx::query(
            "INSERT INTO idempotency_keys (tenant_id, key, request_hash, created_at) VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (tenant_id, key) DO NOTHING",
        )
        .bind(tenant_id)
        .bind(key)
        .bind(hash)
        .bind(now_ms())
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let state = if inserted == 1 {
            Idempotency::New
        } else {
            let r = sqlx::query("SELECT request_hash, status_code, body FROM idempotency_keys WHERE tenant_id = ?1 AND key = ?2")
                .bind(tenant_id)
                .bind(key)
                .fetch_one(&mut *tx)
                .await?;
            let stored: String = r.try_get(0)?;
            let status: Option<i64> = r.try_get(1)?;
            match status {
                _ if stored != hash => Idempotency::Mismatch,
                None => Idempotency::InProgress,
                Some(s) => Idempotency::Replay {
                    status: s as u16,
                    body: r.try_get::<Option<String>, _>(2)?.unwrap_or_default(),
                },
            }
        };
        tx.commit().await?;
        Ok(state)
    }
}

/// Create a key (and its tenant if needed) inside a write transaction.
async fn create_key_in(
    tx: &mut sqlx::Transaction<'static, Sqlite>,
    tenant_name: &str,
) -> Result<NewKey> {
    let now = now_ms();
    sqlx::query("INSERT INTO tenants (id, name, created_at) VALUES (?1, ?2, ?3) ON CONFLICT (name) DO NOTHING")
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(tenant_name)
        .bind(now)
        .execute(&mut **tx)
        .await?;
    let tenant_id: String = sqlx::query_scalar("SELECT id FROM tenants WHERE name = ?1")
        .bind(tenant_name)
        .fetch_one(&mut **tx)
        .await?;
    let key = NewKey::generate(tenant_name);
    sqlx::query(
        "INSERT INTO api_keys (key_id, tenant_id, secret_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
    )
    .bind(&key.key_id)
    .bind(&tenant_id)
    .bind(key.secret_hash())
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(key)
}
