//! Smarthub batch jobs.
//!
//! | path (under `/smarthub/v1`) | body | job `type` | core operation |
//! |---|---|---|---|
//! | `POST /batchJobs/global-sims/activate` | `{"giccids": [...]}` | `ACTIVATE` | `activate` (INVENTORY) or `resume` (SUSPENDED) |
//! | `POST /batchJobs/global-sims/deactivate` | `{"giccids": [...]}` | `DEACTIVATE` | `suspend` |
//! | `POST /batchJobs/global-sims/retire` | `{"giccids": [...]}` | `RETIRE` | `retire` (SUSPENDED only) |
//! | `POST /batchJobs/global-sims/change-basic-rate-plan` | `{"giccids": [...], "basicServicePackageName": "..."}` | `MODIFY_QUOTA_PLAN` | `change_rate_plan` |
//!
//! Each answers 200 `{"jobId": "<32 lower-case hex>"}`; the job id is the
//! batch id without its dashes, so the same batch is visible natively.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::Json;
use serde_json::{json, Map, Value};
use simbatch_core::{BatchStatus, ItemStatus, Operation, SimStatus};
use simbatch_engine::service::SubmitRequest;
use simbatch_store::{BatchRecord, ItemFilter, ItemRecord, Tenant};

use super::{json_object, paging, sm_time, SmAuth, SmError, SOURCE};
use crate::AppState;

/// Most SIMs in one batch job.
pub const MAX_JOB_SIMS: usize = 1000;

/// A Smarthub batch job type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobType {
    /// Activate (or re-activate a suspended SIM).
    Activate,
    /// Suspend.
    Deactivate,
    /// Retire.
    Retire,
    /// Change the basic rate plan.
    ModifyQuotaPlan,
}

impl JobType {
    /// From the path's last segment.
    pub fn from_path(s: &str) -> Option<Self> {
        match s {
            "activate" => Some(Self::Activate),
            "deactivate" => Some(Self::Deactivate),
            "retire" => Some(Self::Retire),
            "change-basic-rate-plan" => Some(Self::ModifyQuotaPlan),
            _ => None,
        }
    }
    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "ACTIVATE",
            Self::Deactivate => "DEACTIVATE",
            Self::Retire => "RETIRE",
            Self::ModifyQuotaPlan => "MODIFY_QUOTA_PLAN",
        }
    }
    fn parse(s: &str) -> Option<Self> {
        [
            Self::Activate,
            Self::Deactivate,
            Self::Retire,
            Self::ModifyQuotaPlan,
        ]
        .into_iter()
        .find(|t| t.as_str() == s)
    }
    /// The job type of a batch: its Smarthub type, else from its operation.
    pub fn of(b: &BatchRecord) -> Option<Self> {
        if b.source == SOURCE {
            let kind = b.external_ref.as_deref().and_then(|r| r.split_once('-'));
            if let Some(t) = kind.and_then(|(k, _)| Self::parse(k)) {
                return Some(t);
            }
        }
        match b.operation? {
            Operation::Activate | Operation::Resume => Some(Self::Activate),
            Operation::Suspend => Some(Self::Deactivate),
            Operation::Retire => Some(Self::Retire),
            Operation::ChangeRatePlan => Some(Self::ModifyQuotaPlan),
            _ => None,
        }
    }
}

/// The job id of a batch: its UUID without dashes (32 lower-case hex).
pub fn job_id(batch_id: &str) -> String {
    batch_id.replace('-', "").to_ascii_lowercase()
}

/// The batch id a job id names, if it has the job id form.
pub fn batch_id(job: &str) -> Option<String> {
    if job.len() != 32
        || !job
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return None;
    }
    uuid::Uuid::parse_str(job)
        .ok()
        .map(|u| u.hyphenated().to_string())
}

/// The core operation that activates a SIM in `status`: resume when it is
/// suspended, activate otherwise (core refuses anything illegal).
pub fn activation_for(status: Option<SimStatus>) -> Operation {
    if status == Some(SimStatus::Suspended) {
        Operation::Resume
    } else {
        Operation::Activate
    }
}

fn giccids(body: &Map<String, Value>) -> Result<Vec<String>, SmError> {
    let list = match body.get("giccids") {
        None | Some(Value::Null) => {
            return Err(SmError::field(
                "batchJob",
                "giccids",
                "missing_field",
                "giccids is required",
            ))
        }
        Some(Value::Array(l)) => l,
        Some(_) => {
            return Err(SmError::bad_request(
                "giccids should be a JSON array of strings",
            ))
        }
    };
    if list.is_empty() {
        return Err(SmError::field(
            "batchJob",
            "giccids",
            "invalid",
            "giccids must not be empty",
        ));
    }
    if list.len() > MAX_JOB_SIMS {
        return Err(SmError::field(
            "batchJob",
            "giccids",
            "invalid",
            format!(
                "a batch job holds at most {MAX_JOB_SIMS} SIMs, got {}",
                list.len()
            ),
        ));
    }
    list.iter()
        .map(|v| match v {
            Value::String(s) => Ok(s.trim().to_owned()),
            _ => Err(SmError::bad_request(
                "giccids should be a JSON array of strings",
            )),
        })
        .collect()
}

/// `POST /batchJobs/global-sims/{action}`.
pub async fn submit(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
    Path(action): Path<String>,
    body: Bytes,
) -> Result<Json<Value>, SmError> {
    let t =
        JobType::from_path(&action).ok_or_else(|| SmError::not_found("No such batch job type"))?;
    let body = json_object(&body)?;
    let allowed: &[&str] = if t == JobType::ModifyQuotaPlan {
        &["giccids", "basicServicePackageName"]
    } else {
        &["giccids"]
    };
    if let Some(k) = body.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(SmError::field(
            "batchJob",
            k,
            "invalid",
            format!("{k} is not a field of this batch job"),
        ));
    }
    let ids = giccids(&body)?;
    let plan = if t == JobType::ModifyQuotaPlan {
        match body.get("basicServicePackageName") {
            Some(Value::String(s)) if !s.trim().is_empty() => Some(s.trim().to_owned()),
            None | Some(Value::Null) | Some(Value::String(_)) => {
                return Err(SmError::field(
                    "batchJob",
                    "basicServicePackageName",
                    "missing_field",
                    "basicServicePackageName is required",
                ))
            }
            Some(_) => {
                return Err(SmError::bad_request(
                    "basicServicePackageName should be a string",
                ))
            }
        }
    } else {
        None
    };
    let mut items = Vec::with_capacity(ids.len());
    for giccid in ids {
        let op = match t {
            JobType::Activate => {
                let status = st
                    .service
                    .get_sim(&tenant, &giccid)
                    .await
                    .ok()
                    .map(|s| s.sim.status);
                activation_for(status)
            }
            JobType::Deactivate => Operation::Suspend,
            JobType::Retire => Operation::Retire,
            JobType::ModifyQuotaPlan => Operation::ChangeRatePlan,
        };
        let mut f = Map::new();
        f.insert("iccid".into(), Value::String(giccid));
        f.insert("operation".into(), Value::String(op.as_str().into()));
        if let Some(p) = &plan {
            f.insert("rate_plan".into(), Value::String(p.clone()));
        }
        items.push(f);
    }
    let report = st
        .service
        .submit(
            &tenant,
            SubmitRequest {
                operation: None,
                mode: Default::default(),
                items,
                dry_run: false,
                source: SOURCE.into(),
                // Unique per tenant and source: the type, then a random suffix.
                external_ref: Some(format!("{}-{}", t.as_str(), uuid::Uuid::new_v4().simple())),
            },
        )
        .await?;
    let batch = report.batch.ok_or_else(SmError::internal)?;
    Ok(Json(json!({ "jobId": job_id(&batch.id) })))
}

/// Job status: PROCESSING until every task is terminal, then core's name.
fn job_status(s: BatchStatus) -> &'static str {
    match s {
        BatchStatus::Initialising | BatchStatus::Processing => "PROCESSING",
        other => other.as_str(),
    }
}

/// Task status: PROCESSING, SUCCESS, FAILED or CANCELED.
fn task_status(s: ItemStatus) -> &'static str {
    match s {
        ItemStatus::Approved | ItemStatus::Processing => "PROCESSING",
        ItemStatus::Completed => "SUCCESS",
        ItemStatus::Failed | ItemStatus::Rejected => "FAILED",
        ItemStatus::Canceled => "CANCELED",
    }
}

async fn task(st: &AppState, tenant: &Tenant, i: &ItemRecord) -> Value {
    let plan = match i.params.get("rate_plan").and_then(Value::as_str) {
        Some(p) if i.operation == Some(Operation::ChangeRatePlan) => Some(p.to_owned()),
        _ => st
            .service
            .get_sim(tenant, &i.iccid)
            .await
            .ok()
            .and_then(|s| s.sim.rate_plan),
    };
    json!({
        "giccid": i.iccid,
        "basicServicePackageName": plan,
        "status": task_status(i.status),
        "errorMessage": i.error_reason,
    })
}

/// `GET /batchJobs/{jobId}?page=&size=`: the job and one page of its tasks.
pub async fn get(
    State(st): State<AppState>,
    SmAuth(tenant): SmAuth,
    Path(job): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<Value>, SmError> {
    let Query(q) = query.map_err(|_| SmError::bad_request("the query string is malformed"))?;
    let (page, size) = paging(&q, 10, 100)?;
    let id = batch_id(&job).ok_or_else(|| SmError::not_found("batch job not found"))?;
    let batch = st.service.get_batch(&tenant, &id).await?;
    let t = JobType::of(&batch).ok_or_else(|| SmError::not_found("batch job not found"))?;
    let items = st
        .service
        .list_items(
            &tenant,
            &batch.id,
            ItemFilter {
                after_seq: (page > 0).then(|| page * size - 1),
                limit: size,
                ..Default::default()
            },
        )
        .await?;
    let mut tasks = Vec::with_capacity(items.data.len());
    for i in &items.data {
        tasks.push(task(&st, &tenant, i).await);
    }
    Ok(Json(json!({
        "jobId": job_id(&batch.id),
        "type": t.as_str(),
        "status": job_status(batch.status),
        "createdTime": sm_time(batch.created_at),
        "tasks": tasks,
        "page": page,
        "size": size,
        "total": batch.counts.total,
    })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_ids_are_32_lower_hex_and_roundtrip() {
        let id = "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let j = job_id(id);
        assert_eq!(j, "0193a1b2c3d47e5f8a9b0c1d2e3f4a5b");
        assert_eq!(batch_id(&j).as_deref(), Some(id));
        assert_eq!(batch_id("0193A1B2C3D47E5F8A9B0C1D2E3F4A5B"), None);
        assert_eq!(batch_id("ff80"), None);
        assert!(batch_id("ff8080815b1d381001511e06f52b1232").is_some());
    }

    #[test]
    fn activation_resumes_suspended() {
        assert_eq!(
            activation_for(Some(SimStatus::Suspended)),
            Operation::Resume
        );
        assert_eq!(
            activation_for(Some(SimStatus::Inventory)),
            Operation::Activate
        );
        assert_eq!(activation_for(None), Operation::Activate);
    }
}
