//! Webhook endpoints, the deliveries due now, and the delivery log.

use sqlx::Row;

use super::rows::{self, WEBHOOK_COLS};
use super::{page, PgStore};
use crate::crypto::new_webhook_secret;
use crate::model::*;
use crate::{Result, StoreError};

impl PgStore {
    /// Decrypt a webhook's stored signing secret.
    fn open_webhook_secret(&self, sealed: &str) -> Result<String> {
        let plain = self.cipher.open("webhook", sealed)?;
        String::from_utf8(plain)
            .map_err(|_| StoreError::Corrupt("webhook secret is not UTF-8".into()))
    }

    /// See [`crate::Store::create_webhook`].
    pub(super) async fn create_webhook_impl(
        &self,
        tenant_id: &str,
        url: &str,
        format: &str,
    ) -> Result<Webhook> {
        let secret = new_webhook_secret();
        let row = sqlx::query(&format!(
            "INSERT INTO webhooks (id, tenant_id, url, secret_enc, enabled, cursor, attempts, next_attempt_at, created_at, format)
             VALUES ($1, $2, $3, $4, TRUE, (SELECT last FROM outbox_counter), 0, 0, $5, $6)
             RETURNING {WEBHOOK_COLS}"
        ))
        .bind(uuid::Uuid::new_v4().to_string())
        .bind(tenant_id)
        .bind(url)
        .bind(self.cipher.seal("webhook", secret.as_bytes()))
        .bind(now_ms())
        .bind(format)
        .fetch_one(&self.pool)
        .await?;
        let mut hook = rows::webhook(&row)?;
        hook.secret = Some(secret);
        Ok(hook)
    }

    /// See [`crate::Store::list_webhooks`].
    pub(super) async fn list_webhooks_impl(&self, tenant_id: &str) -> Result<Vec<Webhook>> {
        let rows = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE tenant_id = $1 ORDER BY created_at, id"
        ))
        .bind(tenant_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rows::webhook).collect()
    }

    /// See [`crate::Store::get_webhook`].
    pub(super) async fn get_webhook_impl(
        &self,
        tenant_id: &str,
        id: &str,
    ) -> Result<Option<Webhook>> {
        let row = sqlx::query(&format!(
            "SELECT {WEBHOOK_COLS} FROM webhooks WHERE tenant_id = $1 AND id = $2"
        ))
        .bind(tenant_id)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rows::webhook).transpose()
    }

    /// See [`crate::Store::delete_webhook`].
    pub(super) async fn delete_webhook_impl(&self, tenant_id: &str, id: &str) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        let gone = sqlx::query("DELETE FROM webhooks WHERE tenant_id = $1 AND id = $2")
            .bind(tenant_id)
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        if gone > 0 {
            sqlx::query("DELETE FROM webhook_deliveries WHERE webhook_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(gone > 0)
    }

    /// See [`crate::Store::due_deliveries`].
    pub(super) async fn due_deliveries_impl(
        &self,
        now_ms: i64,
        limit: i64,
    ) -> Result<Vec<(Webhook, Event)>> {
        let rows = sqlx::query(
            "SELECT w.id AS w_id, w.tenant_id, w.url, w.secret_enc, w.enabled, w.disabled_reason, w.cursor,
                    w.attempts, w.created_at AS w_created_at, w.format, e.id AS block_id
             FROM webhooks w
             JOIN LATERAL (SELECT o.id FROM outbox o
                           WHERE o.tenant_id = w.tenant_id AND o.id > w.cursor ORDER BY o.id LIMIT 1) e ON TRUE
             WHERE w.enabled AND w.next_attempt_at <= $1
             ORDER BY w.next_attempt_at, w.id LIMIT $2",
        )
        .bind(now_ms)
        .bind(page(limit))
        .fetch_all(&self.pool)
        .await?;
        // The block holding each webhook's next event; the event is read
        // from the block, most often from the store's block cache.
        let mut due = Vec::with_capacity(rows.len());
        for r in &rows {
            let sealed: String = r.try_get("secret_enc")?;
            let hook = Webhook {
                id: r.try_get("w_id")?,
                tenant_id: r.try_get("tenant_id")?,
                url: r.try_get("url")?,
                enabled: r.try_get("enabled")?,
                disabled_reason: r.try_get("disabled_reason")?,
                created_at: r.try_get("w_created_at")?,
                secret: Some(self.open_webhook_secret(&sealed)?),
                cursor: r.try_get("cursor")?,
                attempts: r.try_get("attempts")?,
                format: r.try_get("format")?,
            };
            let block_id: i64 = r.try_get("block_id")?;
            if let Some(block) = self.block(block_id).await? {
                let event = block.event_after(hook.cursor)?;
                due.push((hook, event));
            }
        }
        Ok(due)
    }

    /// See [`crate::Store::record_delivery`].
    pub(super) async fn record_delivery_impl(&self, a: &DeliveryAttempt) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        let attempts: Option<i64> =
            sqlx::query_scalar("SELECT attempts FROM webhooks WHERE id = $1 FOR UPDATE")
                .bind(&a.webhook_id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(attempts) = attempts else {
            // Deleted while the attempt was in flight: nothing to record.
            return Ok(());
        };
        let now = now_ms();
        if !a.skipped {
            sqlx::query(
            "INSERT INTO webhook_deliveries (webhook_id, event_id, event_type, attempt, status_code, error,
                                             duration_ms, at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&a.webhook_id)
        .bind(&a.event.id)
        .bind(&a.event.kind)
        .bind(attempts + 1)
        .bind(a.status_code)
        .bind(&a.error)
        .bind(a.duration_ms)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        }
        let q = match &a.next {
            DeliveryNext::Advance => sqlx::query(
                "UPDATE webhooks SET cursor = $2, attempts = 0, next_attempt_at = 0 WHERE id = $1",
            )
            .bind(&a.webhook_id)
            .bind(a.event.seq),
            DeliveryNext::RetryAt(t) => sqlx::query(
                "UPDATE webhooks SET attempts = attempts + 1, next_attempt_at = $2 WHERE id = $1",
            )
            .bind(&a.webhook_id)
            .bind(*t),
            DeliveryNext::Disable(reason) => sqlx::query(
                "UPDATE webhooks SET enabled = FALSE, disabled_reason = $2 WHERE id = $1",
            )
            .bind(&a.webhook_id)
            .bind(reason),
        };
        q.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(())
    }

    /// See [`crate::Store::delivery_log`].
    pub(super) async fn delivery_log_impl(
        &self,
        tenant_id: &str,
        webhook_id: &str,
        limit: i64,
    ) -> Result<Vec<DeliveryLog>> {
        let rows = sqlx::query(
            "SELECT d.event_id, d.event_type, d.attempt, d.status_code, d.error, d.duration_ms, d.at
             FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
             WHERE w.tenant_id = $1 AND d.webhook_id = $2 ORDER BY d.id DESC LIMIT $3",
        )
        .bind(tenant_id)
        .bind(webhook_id)
        .bind(page(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryLog {
                    event_id: r.try_get(0)?,
                    event_type: r.try_get(1)?,
                    attempt: r.try_get(2)?,
                    status_code: r.try_get(3)?,
                    error: r.try_get(4)?,
                    duration_ms: r.try_get(5)?,
                    at: r.try_get(6)?,
                })
            })
            .collect()
    }
}
