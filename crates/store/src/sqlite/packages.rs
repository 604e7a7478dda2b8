//! Profile package downloads on SQLite.

use sqlx::Row;

use super::SqliteStore;
use crate::model::now_ms;
use crate::plan::PACKAGE_PURPOSE;
use crate::Result;

/// History operation recorded for a download.
pub(crate) const DOWNLOAD_OPERATION: &str = "download_package";

impl SqliteStore {
    /// See [`crate::Store::download_package`].
    pub(super) async fn download_package_impl(
        &self,
        tenant_id: &str,
        iccid: &str,
    ) -> Result<Option<Vec<u8>>> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let row = sqlx::query(
            "SELECT p.package_enc, s.status FROM profiles p
             JOIN sims s ON s.tenant_id = p.tenant_id AND s.iccid = p.iccid
             WHERE p.tenant_id = ?1 AND p.iccid = ?2 AND p.package_enc IS NOT NULL",
        )
        .bind(tenant_id)
        .bind(iccid)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(None);
        };
        let sealed: String = row.try_get(0)?;
        let status: String = row.try_get(1)?;
        let package = self.cipher.open(PACKAGE_PURPOSE, &sealed)?;
        sqlx::query(
            "INSERT INTO sim_history (tenant_id, iccid, at, operation, from_status, to_status)
             VALUES (?1, ?2, ?3, ?4, ?5, ?5)",
        )
        .bind(tenant_id)
        .bind(iccid)
        .bind(now_ms())
        .bind(DOWNLOAD_OPERATION)
        .bind(&status)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Some(package))
    }
}
