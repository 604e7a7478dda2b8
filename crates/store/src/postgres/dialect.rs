//! Dialect authentication on PostgreSQL: sealed key secrets for HMAC schemes,
//! used request ids, and platform-wide server secrets.

use sqlx::{Postgres, Row};

use super::PgStore;
use crate::crypto::{key_secret_purpose, random_hex};
use crate::*;

impl PgStore {
    /// Keep a sealed copy of a new key's secret, in the key's transaction.
    pub(super) async fn seal_key_secret(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        key: &NewKey,
    ) -> Result<()> {
        let sealed = self
            .cipher
            .seal(&key_secret_purpose(&key.key_id), key.secret.as_bytes());
        sqlx::query("UPDATE api_keys SET secret_enc = $1 WHERE key_id = $2")
            .bind(sealed)
            .bind(&key.key_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    pub(super) async fn key_secret_impl(&self, key_id: &str) -> Result<Option<(Tenant, String)>> {
        let row = sqlx::query(
            "SELECT t.id, t.name, k.secret_enc FROM api_keys k JOIN tenants t ON t.id = k.tenant_id
             WHERE k.key_id = $1 AND k.revoked_at IS NULL AND k.secret_enc IS NOT NULL",
        )
        .bind(key_id)
        .fetch_optional(&self.pool)
        .await?;
        let Some(r) = row else { return Ok(None) };
        let sealed: String = r.try_get(2)?;
        let plain = self.cipher.open(&key_secret_purpose(key_id), &sealed)?;
        let secret = String::from_utf8(plain)
            .map_err(|_| StoreError::Corrupt("api key secret is not text".into()))?;
        Ok(Some((
            Tenant {
                id: r.try_get(0)?,
                name: r.try_get(1)?,
            },
            secret,
        )))
    }

    pub(super) async fn remember_request_id_impl(
        &self,
        key_id: &str,
        request_id: &str,
        now_ms: i64,
    ) -> Result<bool> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM seen_request_ids WHERE seen_at < $1")
            .bind(now_ms - REQUEST_ID_RETENTION_MS)
            .execute(&mut *tx)
            .await?;
        let done = sqlx::query(
            "INSERT INTO seen_request_ids (key_id, request_id, seen_at) VALUES ($1, $2, $3)
             ON CONFLICT (key_id, request_id) DO NOTHING",
        )
        .bind(key_id)
        .bind(request_id)
        .bind(now_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(done.rows_affected() == 1)
    }

    pub(super) async fn server_secret_impl(&self, name: &str) -> Result<Vec<u8>> {
        let purpose = format!("server_secret:{name}");
        let fresh = self.cipher.seal(&purpose, random_hex(32).as_bytes());
        sqlx::query(
            "INSERT INTO server_secrets (name, secret_enc, created_at) VALUES ($1, $2, $3)
             ON CONFLICT (name) DO NOTHING",
        )
        .bind(name)
        .bind(fresh)
        .bind(now_ms())
        .execute(&self.pool)
        .await?;
        let sealed: String =
            sqlx::query_scalar("SELECT secret_enc FROM server_secrets WHERE name = $1")
                .bind(name)
                .fetch_one(&self.pool)
                .await?;
        let hex_text = self.cipher.open(&purpose, &sealed)?;
        hex::decode(hex_text).map_err(|_| StoreError::Corrupt(format!("{purpose}: not hex")))
    }
}
