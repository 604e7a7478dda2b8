//! eSIM profile use cases on SQLite. The single writer connection and
//! `BEGIN IMMEDIATE` serialise them with every other write, so the profile
//! read at the start of a transaction is still current when it is updated.

use simbatch_core::profile::{decide, ProfileEvent, ProfileRefusal, ProfileState};
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, Transaction};

use super::SqliteStore;
use crate::plan::EventWrite;
use crate::profiles::{
    by_iccid, history_operation, nothing_available, state, status_event, ProfileUpdate,
    EXPIRED_OPERATION, PROFILE_COLS, UNUSED_STATES,
};
use crate::*;

fn profile(r: &SqliteRow) -> Result<ProfileRecord> {
    Ok(ProfileRecord {
        iccid: r.try_get("iccid")?,
        state: state(&r.try_get::<String, _>("state")?)?,
        matching_id: r.try_get("matching_id")?,
        activation_code: r.try_get("activation_code")?,
        eid: r.try_get("eid")?,
        template: r.try_get("template")?,
        confirmation_code_required: r.try_get::<i64, _>("has_cc")? != 0,
        expires_at: r.try_get("expires_at")?,
        created_at: r.try_get("created_at")?,
        updated_at: r.try_get("updated_at")?,
    })
}

async fn insert_history_and_event(
    tx: &mut Transaction<'_, Sqlite>,
    tenant_id: &str,
    iccid: &str,
    (from, to): (ProfileState, ProfileState),
    operation: &str,
    event: &EventWrite,
    now: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO sim_history (tenant_id, iccid, at, operation, from_status, to_status)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )
    .bind(tenant_id)
    .bind(iccid)
    .bind(now)
    .bind(operation)
    .bind(from.as_str())
    .bind(to.as_str())
    .execute(&mut **tx)
    .await?;
    super::outbox::write_events(tx, std::slice::from_ref(event), now).await
}

impl SqliteStore {
    /// See [`crate::Store::get_profile`].
    pub(super) async fn get_profile_impl(
        &self,
        tenant_id: &str,
        iccid: &str,
    ) -> Result<Option<ProfileRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {PROFILE_COLS} FROM profiles WHERE tenant_id = ?1 AND iccid = ?2"
        ))
        .bind(tenant_id)
        .bind(iccid)
        .fetch_optional(&self.read)
        .await?;
        row.as_ref().map(profile).transpose()
    }

    /// The profile a request targets, or why there is none.
    async fn target(
        tx: &mut Transaction<'_, Sqlite>,
        tenant_id: &str,
        req: &ProfileRequest,
    ) -> Result<std::result::Result<ProfileRecord, ProfileRefusal>> {
        match (&req.iccid, &req.profile_type) {
            (Some(iccid), wanted) => {
                let row = sqlx::query(&format!(
                    "SELECT {PROFILE_COLS} FROM profiles WHERE tenant_id = ?1 AND iccid = ?2"
                ))
                .bind(tenant_id)
                .bind(iccid)
                .fetch_optional(&mut **tx)
                .await?;
                let found = row.as_ref().map(profile).transpose()?;
                Ok(by_iccid(found, iccid, wanted.as_ref()))
            }
            (None, Some(t)) => {
                let row = sqlx::query(&format!(
                    "SELECT {PROFILE_COLS} FROM profiles
                     WHERE tenant_id = ?1 AND template = ?2 AND state = 'AVAILABLE'
                     ORDER BY iccid LIMIT 1"
                ))
                .bind(tenant_id)
                .bind(t)
                .fetch_optional(&mut **tx)
                .await?;
                if let Some(r) = row {
                    return Ok(Ok(profile(&r)?));
                }
                let any: Option<i64> = sqlx::query_scalar(
                    "SELECT 1 FROM profiles WHERE tenant_id = ?1 AND template = ?2 LIMIT 1",
                )
                .bind(tenant_id)
                .bind(t)
                .fetch_optional(&mut **tx)
                .await?;
                Ok(Err(nothing_available(t, any.is_some())))
            }
            (None, None) => Err(StoreError::State(
                "a profile command needs an ICCID or a profile type".into(),
            )),
        }
    }

    /// See [`crate::Store::profile_command`].
    pub(super) async fn profile_command_impl(
        &self,
        tenant_id: &str,
        req: &ProfileRequest,
    ) -> Result<ProfileOutcome> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let rec = match Self::target(&mut tx, tenant_id, req).await? {
            Ok(r) => r,
            Err(refusal) => return Ok(Err(refusal)),
        };
        let change = match decide(&rec.snapshot(), &req.command) {
            Ok(c) => c,
            Err(refusal) => return Ok(Err(refusal)),
        };
        if change.matching_id != rec.matching_id {
            let taken: Option<i64> =
                sqlx::query_scalar("SELECT 1 FROM profiles WHERE matching_id = ?1")
                    .bind(&change.matching_id)
                    .fetch_optional(&mut *tx)
                    .await?;
            if taken.is_some() {
                return Ok(Err(ProfileRefusal::MatchingIdInUse(change.matching_id)));
            }
        }
        let now = now_ms();
        let u = ProfileUpdate::new(&change, &self.cipher);
        sqlx::query(
            "UPDATE profiles SET state = ?1, eid = ?2, matching_id = ?3, activation_code = ?4,
                 cc_hash_enc = CASE WHEN ?5 THEN cc_hash_enc ELSE ?6 END, updated_at = ?7
             WHERE tenant_id = ?8 AND iccid = ?9",
        )
        .bind(u.state)
        .bind(&u.eid)
        .bind(&u.matching_id)
        .bind(&u.activation_code)
        .bind(u.keep_cc)
        .bind(&u.cc_hash_enc)
        .bind(now)
        .bind(tenant_id)
        .bind(&rec.iccid)
        .execute(&mut *tx)
        .await?;
        let operation = history_operation(&req.source, &change);
        let event = status_event(
            tenant_id,
            &rec.iccid,
            change.from,
            change.to,
            &operation,
            req.call_id.as_deref(),
        );
        insert_history_and_event(
            &mut tx,
            tenant_id,
            &rec.iccid,
            (change.from, change.to),
            &operation,
            &event,
            now,
        )
        .await?;
        tx.commit().await?;
        Ok(Ok(rec.after(&change, now)))
    }

    /// See [`crate::Store::expire_profiles`].
    pub(super) async fn expire_profiles_impl(&self, now_ms: i64, limit: i64) -> Result<u64> {
        let mut tx = self.write.begin_with("BEGIN IMMEDIATE").await?;
        let due = sqlx::query(&format!(
            "SELECT tenant_id, iccid, state FROM profiles
             WHERE expires_at IS NOT NULL AND expires_at <= ?1 AND state IN {UNUSED_STATES}
             ORDER BY expires_at LIMIT ?2"
        ))
        .bind(now_ms)
        .bind(limit.max(0))
        .fetch_all(&mut *tx)
        .await?;
        let now = crate::now_ms();
        let mut n = 0;
        for r in &due {
            let tenant_id: String = r.try_get("tenant_id")?;
            let iccid: String = r.try_get("iccid")?;
            let from = state(&r.try_get::<String, _>("state")?)?;
            let Ok(to) = simbatch_core::profile::transition(from, ProfileEvent::Expired) else {
                continue;
            };
            sqlx::query(
                "UPDATE profiles SET state = ?1, updated_at = ?2 WHERE tenant_id = ?3 AND iccid = ?4",
            )
            .bind(to.as_str())
            .bind(now)
            .bind(&tenant_id)
            .bind(&iccid)
            .execute(&mut *tx)
            .await?;
            let event = status_event(&tenant_id, &iccid, from, to, EXPIRED_OPERATION, None);
            insert_history_and_event(
                &mut tx,
                &tenant_id,
                &iccid,
                (from, to),
                EXPIRED_OPERATION,
                &event,
                now,
            )
            .await?;
            n += 1;
        }
        tx.commit().await?;
        Ok(n)
    }
}
