//! The four ES2+ functions: read the fields, run the profile command, answer.

use axum::body::Bytes;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};
use simbatch_core::activation::{hash_confirmation_code, MatchingId};
use simbatch_core::profile::{FinalProfileStatus, ProfileCommand};
use simbatch_core::{Eid, Iccid};
use simbatch_engine::service::ServiceError;
use simbatch_store::{ProfileRecord, ProfileRequest};

use super::codes::{reason, refusal, subject, Failed};
use super::replay::{self, Answer};
use super::{envelope, failed, failed_body, success_body, Envelope};
use crate::auth::Auth;
use crate::error::ApiError;
use crate::AppState;

/// Longest confirmation code accepted.
const MAX_CC: usize = 64;
/// Longest profile type accepted.
const MAX_PROFILE_TYPE: usize = 128;

/// A function's fields, read one by one into typed values or a `Failed`.
struct Fields<'a> {
    body: &'a Map<String, Value>,
    validation: simbatch_core::ValidationProfile,
}

impl Fields<'_> {
    /// An optional string field; present but not a string is `Invalid`.
    fn text(&self, name: &str, subj: &'static str) -> Result<Option<String>, Failed> {
        match self.body.get(name) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.trim().to_owned())),
            Some(_) => Err(Failed::new(
                subj,
                reason::INVALID,
                Some(name.into()),
                format!("{name} must be a string"),
            )),
        }
    }

    fn required(&self, name: &str, subj: &'static str) -> Result<String, Failed> {
        self.text(name, subj)?.ok_or_else(|| {
            Failed::new(
                subj,
                reason::MISSING,
                Some(name.into()),
                format!("{name} is required"),
            )
        })
    }

    fn iccid(&self, required: bool) -> Result<Option<String>, Failed> {
        let v = if required {
            Some(self.required("iccid", subject::ICCID)?)
        } else {
            self.text("iccid", subject::ICCID)?
        };
        v.map(|s| {
            Iccid::parse(&s, self.validation)
                .map(|i| i.to_string())
                .map_err(|e| Failed::new(subject::ICCID, reason::INVALID, Some(s), e.reason))
        })
        .transpose()
    }

    fn eid(&self) -> Result<Option<Eid>, Failed> {
        self.text("eid", subject::EID)?
            .map(|s| {
                Eid::parse(&s)
                    .map_err(|e| Failed::new(subject::EID, reason::INVALID, Some(s), e.reason))
            })
            .transpose()
    }

    fn matching_id(&self) -> Result<Option<MatchingId>, Failed> {
        self.text("matchingId", subject::MATCHING_ID)?
            .map(|s| {
                MatchingId::parse(&s).map_err(|e| {
                    Failed::new(subject::MATCHING_ID, reason::INVALID, Some(s), e.reason)
                })
            })
            .transpose()
    }

    fn flag(&self, name: &str) -> Result<bool, Failed> {
        match self.body.get(name) {
            Some(Value::Bool(b)) => Ok(*b),
            None | Some(Value::Null) => Err(Failed::new(
                subject::PROFILE,
                reason::MISSING,
                Some(name.into()),
                format!("{name} is required"),
            )),
            Some(_) => Err(Failed::new(
                subject::PROFILE,
                reason::INVALID,
                Some(name.into()),
                format!("{name} must be true or false"),
            )),
        }
    }

    /// Refuse fields the function does not define, naming the first one.
    fn only(&self, known: &[&str]) -> Result<(), Failed> {
        match self.body.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(k) => Err(Failed::new(
                subject::PROFILE,
                reason::INVALID,
                Some(k.chars().take(64).collect()),
                "this field is not a parameter of the function",
            )),
        }
    }
}

/// What every function does around its own part: read the envelope; once
/// per function call (see `replay.rs`): build the request, run it, answer.
async fn run(
    st: &AppState,
    tenant: &simbatch_store::Tenant,
    bytes: &Bytes,
    function: &'static str,
    build: impl FnOnce(&Fields<'_>) -> Result<(ProfileRequest, Output), Failed>,
) -> Response {
    let env = match envelope(bytes) {
        Err(e) => return e.into_response(),
        Ok(Err(f)) => return failed(&f),
        Ok(Ok(env)) => env,
    };
    replay::once(
        &st.store,
        tenant,
        function,
        &env,
        execute(st, tenant, &env, build),
    )
    .await
}

/// Build the request from the fields, run it, and give the answer.
async fn execute(
    st: &AppState,
    tenant: &simbatch_store::Tenant,
    env: &Envelope,
    build: impl FnOnce(&Fields<'_>) -> Result<(ProfileRequest, Output), Failed>,
) -> Answer {
    let fields = Fields {
        body: &env.body,
        validation: st.service.config().validation,
    };
    let (mut req, output) = match build(&fields) {
        Ok(r) => r,
        Err(f) => return Answer::ok(&failed_body(&f)),
    };
    req.call_id = Some(env.call_id.clone());
    match st.service.profile_command(tenant, &req).await {
        Ok(Ok(p)) => Answer::ok(&success_body(output(&p))),
        Ok(Err(r)) => Answer::ok(&failed_body(&refusal(&r))),
        Err(ServiceError::InvalidRequest { message, .. }) => {
            Answer::ok(&failed_body(&Failed::new(
                subject::PROFILE_TYPE,
                reason::CONDITIONAL_MISSING,
                None,
                message,
            )))
        }
        Err(e) => Answer::from(ApiError::from(e)),
    }
}

/// The output fields of a successful function, from the profile after it.
type Output = fn(&ProfileRecord) -> Map<String, Value>;

fn request(iccid: Option<String>, command: ProfileCommand) -> ProfileRequest {
    ProfileRequest {
        iccid,
        profile_type: None,
        command,
        source: "es2plus".into(),
        call_id: None,
    }
}

fn fields(v: Value) -> Map<String, Value> {
    match v {
        Value::Object(m) => m,
        _ => Map::new(),
    }
}

/// ES2+.DownloadOrder: reserve an AVAILABLE profile, by ICCID or by profile
/// type, optionally for one EID. Answers the profile's ICCID.
pub async fn download_order(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    bytes: Bytes,
) -> Response {
    run(&st, &tenant, &bytes, "downloadOrder", |f| {
        f.only(&["eid", "iccid", "profileType"])?;
        let eid = f.eid()?;
        let iccid = f.iccid(false)?;
        let profile_type = f.text("profileType", subject::PROFILE_TYPE)?;
        if let Some(t) = &profile_type {
            if t.chars().count() > MAX_PROFILE_TYPE || t.chars().any(char::is_control) {
                return Err(Failed::new(
                    subject::PROFILE_TYPE,
                    reason::INVALID,
                    None,
                    format!("profileType must be at most {MAX_PROFILE_TYPE} printable characters"),
                ));
            }
        }
        if iccid.is_none() && profile_type.is_none() {
            return Err(Failed::new(
                subject::PROFILE_TYPE,
                reason::CONDITIONAL_MISSING,
                Some("profileType".into()),
                "either iccid or profileType is required",
            ));
        }
        let mut req = request(iccid, ProfileCommand::DownloadOrder { eid });
        req.profile_type = profile_type;
        Ok((req, |p: &ProfileRecord| fields(json!({"iccid": p.iccid}))))
    })
    .await
}

/// ES2+.ConfirmOrder: settle the matching ID (the operator's, or the
/// profile's own), optionally a confirmation code and the EID; release at
/// once when `releaseFlag` is true. Answers the EID, matching ID and SM-DP+
/// address.
pub async fn confirm_order(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    bytes: Bytes,
) -> Response {
    run(&st, &tenant, &bytes, "confirmOrder", |f| {
        f.only(&[
            "iccid",
            "eid",
            "matchingId",
            "confirmationCode",
            "smdsAddress",
            "releaseFlag",
        ])?;
        let iccid = f.iccid(true)?;
        let eid = f.eid()?;
        let matching_id = f.matching_id()?;
        let cc = f.text("confirmationCode", subject::CONFIRMATION_CODE)?;
        if let Some(cc) = &cc {
            if cc.chars().count() > MAX_CC || cc.chars().any(char::is_control) {
                // The code itself is never echoed.
                return Err(Failed::new(
                    subject::CONFIRMATION_CODE,
                    reason::INVALID,
                    None,
                    format!("confirmationCode must be at most {MAX_CC} printable characters"),
                ));
            }
        }
        if let Some(smds) = f.text("smdsAddress", subject::SMDS)? {
            return Err(Failed::new(
                subject::SMDS,
                reason::INACCESSIBLE,
                Some(smds),
                "this SM-DP+ does not register events with an SM-DS; omit smdsAddress",
            ));
        }
        let release = f.flag("releaseFlag")?;
        let command = ProfileCommand::ConfirmOrder {
            eid,
            matching_id,
            cc_hash: cc.as_deref().map(hash_confirmation_code),
            release,
        };
        Ok((request(iccid, command), |p: &ProfileRecord| {
            let mut out = Map::new();
            if let Some(e) = &p.eid {
                out.insert("eid".into(), json!(e));
            }
            out.insert("matchingId".into(), json!(p.matching_id));
            if let Some(a) = p.smdp_address() {
                out.insert("smdpAddress".into(), json!(a));
            }
            out
        }))
    })
    .await
}

/// ES2+.CancelOrder: undo an order; the profile goes back to AVAILABLE (with
/// a new matching ID) or to UNAVAILABLE, per `finalProfileStatusIndicator`.
pub async fn cancel_order(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    bytes: Bytes,
) -> Response {
    run(&st, &tenant, &bytes, "cancelOrder", |f| {
        f.only(&["iccid", "eid", "matchingId", "finalProfileStatusIndicator"])?;
        let iccid = f.iccid(true)?;
        let eid = f.eid()?;
        let matching_id = f.matching_id()?;
        let indicator = f.required("finalProfileStatusIndicator", subject::PROFILE)?;
        let final_status = FinalProfileStatus::parse(&indicator).ok_or_else(|| {
            Failed::new(
                subject::PROFILE,
                reason::INVALID,
                Some("finalProfileStatusIndicator".into()),
                "finalProfileStatusIndicator must be Available or Unavailable",
            )
        })?;
        let command = ProfileCommand::CancelOrder {
            eid,
            matching_id,
            final_status,
        };
        Ok((request(iccid, command), |_: &ProfileRecord| Map::new()))
    })
    .await
}

/// ES2+.ReleaseProfile: make a CONFIRMED profile downloadable.
pub async fn release_profile(
    State(st): State<AppState>,
    Auth(tenant): Auth,
    bytes: Bytes,
) -> Response {
    run(&st, &tenant, &bytes, "releaseProfile", |f| {
        f.only(&["iccid"])?;
        let iccid = f.iccid(true)?;
        Ok((
            request(iccid, ProfileCommand::ReleaseProfile),
            |_: &ProfileRecord| Map::new(),
        ))
    })
    .await
}
