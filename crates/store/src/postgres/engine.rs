//! The engine's side of the store: claiming runnable items under a lease,
//! committing their effects, the retention sweep and the benchmark floor.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use serde_json::{json, Value};
use simbatch_core::{BatchMode, Operation, Sim};
use sqlx::{Postgres, Row, Transaction};

use super::rows::{self, BATCH_COLS, SIM_COLS};
use super::{batch_event, db_err, write_events, PendingEvent, PgStore};
use crate::crypto::Cipher;
use crate::model::*;
use crate::{Result, StoreError};

/// Terminal batch statuses, as an SQL list.
const TERMINAL: &str = "('COMPLETED', 'PARTIALLY_COMPLETED', 'CANCELLED')";

/// Load the SIMs and the profile flags of `(tenant, iccid)` pairs with two queries.
async fn load_sims(
    tx: &mut Transaction<'_, Postgres>,
    keys: &[(String, String)],
) -> Result<(HashMap<(String, String), Sim>, HashSet<(String, String)>)> {
    let tenants: Vec<&str> = keys.iter().map(|k| k.0.as_str()).collect();
    let iccids: Vec<&str> = keys.iter().map(|k| k.1.as_str()).collect();
    let rows = sqlx::query(&format!(
        "SELECT {SIM_COLS} FROM sims
         WHERE (tenant_id, iccid) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))"
    ))
    .bind(&tenants)
    .bind(&iccids)
    .fetch_all(&mut **tx)
    .await?;
    let mut sims = HashMap::with_capacity(rows.len());
    for r in &rows {
        let tenant: String = r.try_get("tenant_id")?;
        let sim = rows::sim(r)?;
        sims.insert((tenant, sim.iccid.clone()), sim);
    }
    let with_profile: Vec<(String, String)> = sqlx::query_as(
        "SELECT tenant_id, iccid FROM profiles
         WHERE (tenant_id, iccid) IN (SELECT * FROM UNNEST($1::text[], $2::text[]))",
    )
    .bind(&tenants)
    .bind(&iccids)
    .fetch_all(&mut **tx)
    .await?;
    Ok((sims, with_profile.into_iter().collect()))
}

/// An item's fields: its params with its decrypted secrets merged in.
fn item_fields(
    cipher: &Cipher,
    params: &str,
    secret_enc: Option<&str>,
) -> Result<serde_json::Map<String, Value>> {
    let mut fields = rows::json_map(params)?;
    if let Some(sealed) = secret_enc {
        let plain = cipher.open("item", sealed)?;
        let text = std::str::from_utf8(&plain)
            .map_err(|_| StoreError::Corrupt("item secret is not UTF-8".into()))?;
        fields.extend(rows::json_map(text)?);
    }
    Ok(fields)
}

/// Column arrays for a set-based write of SIMs.
#[derive(Default)]
struct SimArrays {
    tenant: Vec<String>,
    iccid: Vec<String>,
    imsi: Vec<Option<String>>,
    msisdn: Vec<Option<String>>,
    eid: Vec<Option<String>>,
    imei: Vec<Option<String>>,
    status: Vec<String>,
    sub: Vec<Option<String>>,
    blocked: Vec<bool>,
    rate_plan: Vec<Option<String>>,
    plans: Vec<String>,
    services: Vec<String>,
    apn: Vec<Option<String>>,
    cf: [Vec<Option<String>>; 5],
    ki: Vec<Option<String>>,
    opc: Vec<Option<String>>,
}

/// The `FROM` clause that reads [`SimArrays`] bound as `$1..$20`.
const SIM_UNNEST: &str = "UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], \
     $7::text[], $8::text[], $9::bool[], $10::text[], $11::text[], $12::text[], $13::text[], $14::text[], \
     $15::text[], $16::text[], $17::text[], $18::text[], $19::text[], $20::text[]) \
     AS u(tenant_id, iccid, imsi, msisdn, eid, imei, status, subscription_state, blocked, rate_plan, \
          supplementary_plans, services, apn_status, cf1, cf2, cf3, cf4, cf5, ki_enc, opc_enc)";

impl SimArrays {
    fn push(&mut self, tenant: &str, sim: &Sim, ki: Option<String>, opc: Option<String>) {
        self.tenant.push(tenant.to_owned());
        self.iccid.push(sim.iccid.clone());
        self.imsi.push(sim.imsi.clone());
        self.msisdn.push(sim.msisdn.clone());
        self.eid.push(sim.eid.clone());
        self.imei.push(sim.imei.clone());
        self.status.push(sim.status.as_str().to_owned());
        self.sub
            .push(sim.subscription_state.map(|s| s.as_str().to_owned()));
        self.blocked.push(sim.blocked);
        self.rate_plan.push(sim.rate_plan.clone());
        self.plans.push(json!(sim.supplementary_plans).to_string());
        self.services.push(json!(sim.services).to_string());
        self.apn.push(sim.apn_status.clone());
        for (n, col) in self.cf.iter_mut().enumerate() {
            col.push(sim.custom_fields.get(&(n + 1).to_string()).cloned());
        }
        self.ki.push(ki);
        self.opc.push(opc);
    }

    fn is_empty(&self) -> bool {
        self.tenant.is_empty()
    }

    /// Run `sql` (which reads `SIM_UNNEST` and `$21` = now) with these arrays bound.
    async fn run(self, tx: &mut Transaction<'_, Postgres>, sql: &str, now: i64) -> Result<u64> {
        let [cf1, cf2, cf3, cf4, cf5] = self.cf;
        let done = sqlx::query(sql)
            .bind(self.tenant)
            .bind(self.iccid)
            .bind(self.imsi)
            .bind(self.msisdn)
            .bind(self.eid)
            .bind(self.imei)
            .bind(self.status)
            .bind(self.sub)
            .bind(self.blocked)
            .bind(self.rate_plan)
            .bind(self.plans)
            .bind(self.services)
            .bind(self.apn)
            .bind(cf1)
            .bind(cf2)
            .bind(cf3)
            .bind(cf4)
            .bind(cf5)
            .bind(self.ki)
            .bind(self.opc)
            .bind(now)
            .execute(&mut **tx)
            .await
            .map_err(db_err("SIM"))?;
        Ok(done.rows_affected())
    }
}

/// Unix milliseconds of a time.
fn ms(t: time::OffsetDateTime) -> i64 {
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).unwrap_or(i64::MAX)
}

impl PgStore {
    /// See [`crate::Store::claim`].
    pub(super) async fn claim_impl(&self, limit: usize, lease: Duration) -> Result<Claim> {
        let token = uuid::Uuid::new_v4().to_string();
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(Claim {
                token,
                items: Vec::new(),
            });
        }
        let now = now_ms();
        let until = now.saturating_add(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX));
        let mut tx = self.pool.begin().await?;
        let picked: Vec<(i64, String)> = sqlx::query_as(
            "SELECT i.id, i.status FROM batch_items i JOIN batches b ON b.id = i.batch_id
             WHERE b.status = 'PROCESSING'
               AND (i.status = 'APPROVED' OR (i.status = 'PROCESSING' AND i.lease_until < $1))
               AND NOT EXISTS (SELECT 1 FROM batch_items e
                               WHERE e.tenant_id = i.tenant_id AND e.iccid = i.iccid AND e.id < i.id
                                 AND e.status IN ('APPROVED', 'PROCESSING'))
             ORDER BY i.id LIMIT $2
             FOR UPDATE OF i SKIP LOCKED",
        )
        .bind(now)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if picked.is_empty() {
            tx.commit().await?;
            return Ok(Claim {
                token,
                items: Vec::new(),
            });
        }
        let ids: Vec<i64> = picked.iter().map(|p| p.0).collect();
        let fresh: Vec<i64> = picked
            .iter()
            .filter(|p| p.1 == "APPROVED")
            .map(|p| p.0)
            .collect();
        let rows = sqlx::query(
            "UPDATE batch_items i SET status = 'PROCESSING', lease_token = $2, lease_until = $3, updated_at = $4
             FROM batches b WHERE i.id = ANY($1) AND b.id = i.batch_id
             RETURNING i.id, i.batch_id, i.tenant_id, i.seq, i.operation, i.iccid, i.params, i.secret_enc, b.mode",
        )
        .bind(&ids)
        .bind(&token)
        .bind(until)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        if !fresh.is_empty() {
            // Lock the batches in id order, as `complete` does, so concurrent
            // claims and completions never deadlock on counter updates.
            sqlx::query(
                "SELECT id FROM batches WHERE id IN (SELECT batch_id FROM batch_items WHERE id = ANY($1))
                 ORDER BY id FOR UPDATE",
            )
            .bind(&fresh)
            .execute(&mut *tx)
            .await?;
            sqlx::query(
                "UPDATE batches b SET approved = b.approved - c.k, processing = b.processing + c.k, updated_at = $2
                 FROM (SELECT batch_id, count(*) AS k FROM batch_items WHERE id = ANY($1) GROUP BY batch_id) c
                 WHERE b.id = c.batch_id",
            )
            .bind(&fresh)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        let mut keys: Vec<(String, String)> = Vec::with_capacity(rows.len());
        for r in &rows {
            keys.push((r.try_get("tenant_id")?, r.try_get("iccid")?));
        }
        keys.sort();
        keys.dedup();
        let (sims, profiles) = load_sims(&mut tx, &keys).await?;
        let mut items = Vec::with_capacity(rows.len());
        for r in &rows {
            let tenant_id: String = r.try_get("tenant_id")?;
            let iccid: String = r.try_get("iccid")?;
            let op: Option<String> = r.try_get("operation")?;
            let operation = op.as_deref().and_then(Operation::parse).ok_or_else(|| {
                StoreError::Corrupt(format!("approved item without a known operation: {op:?}"))
            })?;
            let mode: &str = r.try_get("mode")?;
            let params: &str = r.try_get("params")?;
            let secret: Option<&str> = r.try_get("secret_enc")?;
            let key = (tenant_id, iccid);
            items.push(ClaimedItem {
                id: r.try_get("id")?,
                batch_id: r.try_get("batch_id")?,
                seq: r.try_get("seq")?,
                mode: rows::mode(mode)?,
                operation,
                fields: item_fields(&self.cipher, params, secret)?,
                sim: sims.get(&key).cloned(),
                has_profile: profiles.contains(&key),
                iccid: key.1,
                tenant_id: key.0,
            });
        }
        items.sort_by_key(|i| i.id);
        tx.commit().await?;
        Ok(Claim { token, items })
    }

    /// See [`crate::Store::complete`].
    pub(super) async fn complete_impl(
        &self,
        token: &str,
        done: Vec<Completion>,
    ) -> Result<CompleteSummary> {
        let mut summary = CompleteSummary::default();
        if done.is_empty() {
            return Ok(summary);
        }
        let now = now_ms();
        let ids: Vec<i64> = done.iter().map(|c| c.item.id).collect();
        let mut tx = self.pool.begin().await?;
        let kept: HashSet<i64> = sqlx::query_scalar::<_, i64>(
            "SELECT id FROM batch_items WHERE id = ANY($1) AND status = 'PROCESSING' AND lease_token = $2
             ORDER BY id FOR UPDATE",
        )
        .bind(&ids)
        .bind(token)
        .fetch_all(&mut *tx)
        .await?
        .into_iter()
        .collect();
        let mut seen = HashSet::new();
        let work: Vec<&Completion> = done
            .iter()
            .filter(|c| kept.contains(&c.item.id) && seen.insert(c.item.id))
            .collect();
        summary.fenced_out = done.len() - work.len();
        summary.applied = work.len();
        if work.is_empty() {
            tx.commit().await?;
            return Ok(summary);
        }

        let mut inserts = SimArrays::default();
        let mut updates = SimArrays::default();
        // Profiles.
        let (mut p_tenant, mut p_iccid, mut p_mid, mut p_ac) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        let (mut p_cc, mut p_tpl, mut p_state, mut p_apn, mut p_exp) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::<Option<i64>>::new(),
        );
        // History.
        let (mut h_tenant, mut h_iccid, mut h_op, mut h_from, mut h_to, mut h_batch, mut h_item) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
        );
        // Items.
        let (mut ok_ids, mut ok_results) = (Vec::new(), Vec::new());
        let (mut bad_ids, mut bad_codes, mut bad_reasons) = (Vec::new(), Vec::new(), Vec::new());
        let (mut f_batch, mut f_iccid, mut f_seq) = (Vec::new(), Vec::new(), Vec::new());
        // Counters per batch: completed, failed, canceled followers.
        let mut counters: BTreeMap<String, [i64; 3]> = BTreeMap::new();
        let mut events = Vec::new();

        for c in &work {
            let it = &c.item;
            let op = it.operation.as_str();
            let ctr = counters.entry(it.batch_id.clone()).or_default();
            match &c.result {
                Ok(out) => {
                    ctr[0] += 1;
                    summary.completed += 1;
                    let (ki, opc) = match &c.sim_secrets {
                        Some((ki, opc)) => (
                            ki.as_ref().map(|k| self.cipher.seal("ki", k.as_bytes())),
                            opc.as_ref().map(|o| self.cipher.seal("opc", o.as_bytes())),
                        ),
                        None => (None, None),
                    };
                    if out.created {
                        inserts.push(&it.tenant_id, &out.sim, ki, opc);
                    } else {
                        updates.push(&it.tenant_id, &out.sim, ki, opc);
                    }
                    if let Some(p) = &out.profile {
                        p_tenant.push(it.tenant_id.clone());
                        p_iccid.push(out.sim.iccid.clone());
                        p_mid.push(p.matching_id.clone());
                        p_ac.push(p.activation_code.clone());
                        p_cc.push(p.cc_hash.map(|h| self.cipher.seal("cc_hash", &h)));
                        p_tpl.push(p.template.clone());
                        p_state.push(p.state.to_owned());
                        p_apn.push(p.apn.clone());
                        p_exp.push(p.expires_at.map(ms));
                    }
                    let from = out.from_status.map(|s| s.as_str().to_owned());
                    let to = out.sim.status.as_str();
                    h_tenant.push(it.tenant_id.clone());
                    h_iccid.push(out.sim.iccid.clone());
                    h_op.push(op.to_owned());
                    h_from.push(from.clone());
                    h_to.push(to.to_owned());
                    h_batch.push(it.batch_id.clone());
                    h_item.push(it.id);
                    ok_ids.push(it.id);
                    ok_results.push(out.result.to_string());
                    events.push(PendingEvent {
                        tenant_id: it.tenant_id.clone(),
                        kind: "order.completed".into(),
                        data: json!({
                            "batch_id": it.batch_id, "order_id": it.id, "seq": it.seq, "iccid": it.iccid,
                            "operation": op, "status": "COMPLETED", "error_code": null,
                            "error_reason": null, "result": out.result,
                        }),
                    });
                    if out.status_changed() {
                        events.push(PendingEvent {
                            tenant_id: it.tenant_id.clone(),
                            kind: "sim.status_changed".into(),
                            data: json!({
                                "iccid": out.sim.iccid, "from": from, "to": to, "operation": op,
                                "batch_id": it.batch_id, "order_id": it.id,
                            }),
                        });
                    }
                }
                Err(fail) => {
                    ctr[1] += 1;
                    summary.failed += 1;
                    bad_ids.push(it.id);
                    bad_codes.push(fail.code.clone());
                    bad_reasons.push(fail.reason.clone());
                    if it.mode == BatchMode::SequentialPerIccid {
                        f_batch.push(it.batch_id.clone());
                        f_iccid.push(it.iccid.clone());
                        f_seq.push(it.seq);
                    }
                    events.push(PendingEvent {
                        tenant_id: it.tenant_id.clone(),
                        kind: "order.failed".into(),
                        data: json!({
                            "batch_id": it.batch_id, "order_id": it.id, "seq": it.seq, "iccid": it.iccid,
                            "operation": op, "status": "FAILED", "error_code": fail.code,
                            "error_reason": fail.reason, "result": null,
                        }),
                    });
                }
            }
        }

        if !inserts.is_empty() {
            let sql = format!(
                "INSERT INTO sims (tenant_id, iccid, imsi, msisdn, eid, imei, status, subscription_state, blocked,
                                   rate_plan, supplementary_plans, services, apn_status, custom_field_1,
                                   custom_field_2, custom_field_3, custom_field_4, custom_field_5, ki_enc, opc_enc,
                                   created_at, updated_at)
                 SELECT u.tenant_id, u.iccid, u.imsi, u.msisdn, u.eid, u.imei, u.status, u.subscription_state,
                        u.blocked, u.rate_plan, u.supplementary_plans, u.services, u.apn_status, u.cf1, u.cf2,
                        u.cf3, u.cf4, u.cf5, u.ki_enc, u.opc_enc, $21, $21
                 FROM {SIM_UNNEST}"
            );
            inserts.run(&mut tx, &sql, now).await?;
        }
        if !updates.is_empty() {
            let sql = format!(
                "UPDATE sims s SET imsi = u.imsi, msisdn = u.msisdn, eid = u.eid, imei = u.imei, status = u.status,
                        subscription_state = u.subscription_state, blocked = u.blocked, rate_plan = u.rate_plan,
                        supplementary_plans = u.supplementary_plans, services = u.services,
                        apn_status = u.apn_status, custom_field_1 = u.cf1, custom_field_2 = u.cf2,
                        custom_field_3 = u.cf3, custom_field_4 = u.cf4, custom_field_5 = u.cf5,
                        ki_enc = COALESCE(u.ki_enc, s.ki_enc), opc_enc = COALESCE(u.opc_enc, s.opc_enc),
                        updated_at = $21
                 FROM {SIM_UNNEST}
                 WHERE s.tenant_id = u.tenant_id AND s.iccid = u.iccid"
            );
            updates.run(&mut tx, &sql, now).await?;
        }
        if !p_tenant.is_empty() {
            sqlx::query(
                "INSERT INTO profiles (tenant_id, iccid, matching_id, activation_code, cc_hash_enc, template, state,
                                       apn, expires_at, created_at, updated_at)
                 SELECT u.*, $10, $10 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                                                  $6::text[], $7::text[], $8::text[], $9::bigint[]) AS u",
            )
            .bind(p_tenant)
            .bind(p_iccid)
            .bind(p_mid)
            .bind(p_ac)
            .bind(p_cc)
            .bind(p_tpl)
            .bind(p_state)
            .bind(p_apn)
            .bind(p_exp)
            .bind(now)
            .execute(&mut *tx)
            .await
            .map_err(db_err("profile"))?;
        }
        if !h_tenant.is_empty() {
            sqlx::query(
                "INSERT INTO sim_history (tenant_id, iccid, at, operation, from_status, to_status, batch_id, item_id)
                 SELECT u.tenant_id, u.iccid, $8, u.operation, u.from_status, u.to_status, u.batch_id, u.item_id
                 FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bigint[])
                      WITH ORDINALITY AS u(tenant_id, iccid, operation, from_status, to_status, batch_id, item_id, ord)
                 ORDER BY u.ord",
            )
            .bind(h_tenant)
            .bind(h_iccid)
            .bind(h_op)
            .bind(h_from)
            .bind(h_to)
            .bind(h_batch)
            .bind(h_item)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if !ok_ids.is_empty() {
            sqlx::query(
                "UPDATE batch_items i SET status = 'COMPLETED', result = u.result, lease_token = NULL,
                        lease_until = NULL, updated_at = $3
                 FROM UNNEST($1::bigint[], $2::text[]) AS u(id, result) WHERE i.id = u.id",
            )
            .bind(ok_ids)
            .bind(ok_results)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if !bad_ids.is_empty() {
            sqlx::query(
                "UPDATE batch_items i SET status = 'FAILED', error_code = u.code, error_reason = u.reason,
                        lease_token = NULL, lease_until = NULL, updated_at = $4
                 FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS u(id, code, reason) WHERE i.id = u.id",
            )
            .bind(bad_ids)
            .bind(bad_codes)
            .bind(bad_reasons)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        }
        if !f_batch.is_empty() {
            let canceled: Vec<String> = sqlx::query_scalar(
                "UPDATE batch_items f SET status = 'CANCELED', error_code = 'preceding_item_failed',
                        error_reason = 'not run: item ' || u.seq || ' for this ICCID failed', updated_at = $4
                 FROM UNNEST($1::text[], $2::text[], $3::bigint[]) AS u(batch_id, iccid, seq)
                 WHERE f.batch_id = u.batch_id AND f.iccid = u.iccid AND f.seq > u.seq AND f.status = 'APPROVED'
                 RETURNING f.batch_id",
            )
            .bind(f_batch)
            .bind(f_iccid)
            .bind(f_seq)
            .bind(now)
            .fetch_all(&mut *tx)
            .await?;
            summary.canceled = canceled.len();
            for b in canceled {
                counters.entry(b).or_default()[2] += 1;
            }
        }

        // Counters, then the batches that are now done.
        let batch_ids: Vec<String> = counters.keys().cloned().collect();
        sqlx::query("SELECT id FROM batches WHERE id = ANY($1) ORDER BY id FOR UPDATE")
            .bind(&batch_ids)
            .execute(&mut *tx)
            .await?;
        let (mut c_done, mut c_failed, mut c_canceled) = (Vec::new(), Vec::new(), Vec::new());
        for v in counters.values() {
            c_done.push(v[0]);
            c_failed.push(v[1]);
            c_canceled.push(v[2]);
        }
        sqlx::query(
            "UPDATE batches b SET processing = b.processing - (u.done + u.failed), completed = b.completed + u.done,
                    failed = b.failed + u.failed, approved = b.approved - u.canceled,
                    canceled = b.canceled + u.canceled, updated_at = $5
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) AS u(id, done, failed, canceled)
             WHERE b.id = u.id",
        )
        .bind(&batch_ids)
        .bind(c_done)
        .bind(c_failed)
        .bind(c_canceled)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let finished = sqlx::query(&format!(
            "UPDATE batches SET status = CASE WHEN rejected = 0 AND failed = 0 AND canceled = 0
                                              THEN 'COMPLETED' ELSE 'PARTIALLY_COMPLETED' END,
                    completed_at = $2, updated_at = $2
             WHERE id = ANY($1) AND status = 'PROCESSING' AND approved = 0 AND processing = 0
             RETURNING {BATCH_COLS}"
        ))
        .bind(&batch_ids)
        .bind(now)
        .fetch_all(&mut *tx)
        .await?;
        for r in &finished {
            let b = rows::batch(r)?;
            events.extend(batch_event(&b));
            summary.finished.push((b.id, b.status));
        }
        write_events(&mut tx, events, now).await?;
        tx.commit().await?;
        Ok(summary)
    }

    /// See [`crate::Store::sweep_retention`].
    pub(super) async fn sweep_retention_impl(&self, before_ms: i64, limit: i64) -> Result<u64> {
        let limit = limit.max(0);
        let mut tx = self.pool.begin().await?;
        let items = sqlx::query(&format!(
            "DELETE FROM batch_items WHERE id IN (
                 SELECT i.id FROM batches b JOIN batch_items i ON i.batch_id = b.id
                 WHERE b.status IN {TERMINAL} AND b.created_at < $1 LIMIT $2)"
        ))
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let batches = sqlx::query(&format!(
            "DELETE FROM batches WHERE id IN (
                 SELECT b.id FROM batches b
                 WHERE b.status IN {TERMINAL} AND b.created_at < $1
                   AND NOT EXISTS (SELECT 1 FROM batch_items i WHERE i.batch_id = b.id)
                 LIMIT $2)"
        ))
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let events = sqlx::query(
            "DELETE FROM outbox WHERE id IN (SELECT id FROM outbox WHERE created_at < $1 ORDER BY id LIMIT $2)",
        )
        .bind(before_ms)
        .bind(limit)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(items + batches + events)
    }

    /// See [`crate::Store::bench_floor_activate`].
    pub(super) async fn bench_floor_activate_impl(&self, batch_id: &str) -> Result<u64> {
        let now = now_ms();
        let mut tx = self.pool.begin().await?;
        sqlx::query(
            "INSERT INTO sim_history (tenant_id, iccid, at, operation, from_status, to_status, batch_id, item_id)
             SELECT i.tenant_id, i.iccid, $2, 'activate', s.status, 'ACTIVATED', i.batch_id, i.id
             FROM batch_items i JOIN sims s ON s.tenant_id = i.tenant_id AND s.iccid = i.iccid
             WHERE i.batch_id = $1 AND i.status = 'APPROVED' ORDER BY i.id",
        )
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE sims s SET status = 'ACTIVATED', updated_at = $2 FROM batch_items i
             WHERE i.batch_id = $1 AND i.status = 'APPROVED' AND s.tenant_id = i.tenant_id AND s.iccid = i.iccid",
        )
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?;
        let n = sqlx::query(
            "UPDATE batch_items SET status = 'COMPLETED', updated_at = $2 WHERE batch_id = $1 AND status = 'APPROVED'",
        )
        .bind(batch_id)
        .bind(now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        tx.commit().await?;
        Ok(n)
    }
}
