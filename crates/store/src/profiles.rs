//! eSIM profile use cases: the backend-neutral part.
//!
//! A profile changes state through [`crate::Store::profile_command`] (one
//! ES2+ function) and [`crate::Store::expire_profiles`] (the sweeper). Each
//! backend loads the profile row under a lock, lets
//! [`simbatch_core::profile::decide`] rule, and writes the profile, a history
//! row and a `profile.status_changed` outbox event in the same transaction.
//! The row values and the event are built here, once.
//!
//! Why not an implicit batch of one: ES2+ is synchronous (ConfirmOrder must
//! answer with the matching ID it settled), and a profile row is written only
//! by these use cases once created, so a row lock gives the same
//! exactly-once, one-at-a-time guarantee as the batch engine without making
//! a synchronous call wait for a queue.

use serde::Serialize;
use serde_json::{json, Value};
use simbatch_core::activation::ActivationCode;
use simbatch_core::profile::{
    CcChange, ProfileChange, ProfileCommand, ProfileRefusal, ProfileSnapshot, ProfileState,
};

use crate::crypto::Cipher;
use crate::plan::EventWrite;

/// Event type of every profile state change.
pub const PROFILE_EVENT: &str = "profile.status_changed";
/// History operation of an expiry.
pub const EXPIRED_OPERATION: &str = "profile.expired";

/// The columns every profile read selects, in [`ProfileRecord`] order.
pub const PROFILE_COLS: &str = "iccid, state, matching_id, activation_code, \
    cc_hash_enc IS NOT NULL AS has_cc, template, eid, expires_at, created_at, updated_at";

/// A profile as the platform shows it. The confirmation code is not part of
/// it, in any form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProfileRecord {
    /// ICCID.
    pub iccid: String,
    /// SGP.22 state.
    pub state: ProfileState,
    /// Matching ID.
    pub matching_id: String,
    /// Activation code.
    pub activation_code: String,
    /// EID the profile is linked to.
    pub eid: Option<String>,
    /// Template (profile type) it was generated from.
    pub template: Option<String>,
    /// Whether a confirmation code is required.
    pub confirmation_code_required: bool,
    /// Expiry of an unused profile (Unix ms).
    pub expires_at: Option<i64>,
    /// Creation (Unix ms).
    pub created_at: i64,
    /// Last change (Unix ms).
    pub updated_at: i64,
}

impl ProfileRecord {
    /// The SM-DP+ address in the activation code, when it parses.
    pub fn smdp_address(&self) -> Option<String> {
        ActivationCode::parse(&self.activation_code)
            .ok()
            .map(|ac| ac.smdp_address)
    }

    /// What the rules see.
    pub fn snapshot(&self) -> ProfileSnapshot {
        ProfileSnapshot {
            iccid: self.iccid.clone(),
            state: self.state,
            eid: self.eid.clone(),
            matching_id: self.matching_id.clone(),
            activation_code: self.activation_code.clone(),
            has_cc: self.confirmation_code_required,
        }
    }

    /// The record after `change` at `now`.
    pub fn after(&self, change: &ProfileChange, now: i64) -> Self {
        Self {
            state: change.to,
            matching_id: change.matching_id.clone(),
            activation_code: change.activation_code.clone(),
            eid: change.eid.clone(),
            confirmation_code_required: match change.cc {
                CcChange::Keep => self.confirmation_code_required,
                CcChange::Set(_) => true,
                CcChange::Clear => false,
            },
            updated_at: now,
            ..self.clone()
        }
    }
}

/// One ES2+ function call.
#[derive(Debug, Clone)]
pub struct ProfileRequest {
    /// The profile, by ICCID.
    pub iccid: Option<String>,
    /// Or (DownloadOrder) any AVAILABLE profile of this type (template);
    /// with an ICCID too, the ICCID's profile must be of this type.
    pub profile_type: Option<String>,
    /// What to do.
    pub command: ProfileCommand,
    /// Who asks (`es2plus`): history rows read `<source>.<event>`.
    pub source: String,
    /// The caller's id for this call (ES2+ `functionCallIdentifier`), carried in the event.
    pub call_id: Option<String>,
}

/// A command's result: the profile after it, or the rule that refused it.
pub type ProfileOutcome = std::result::Result<ProfileRecord, ProfileRefusal>;

/// The column values of a profile update.
#[derive(Debug, Clone)]
pub struct ProfileUpdate {
    /// New state.
    pub state: &'static str,
    /// New EID.
    pub eid: Option<String>,
    /// New matching ID.
    pub matching_id: String,
    /// New activation code.
    pub activation_code: String,
    /// Whether `cc_hash_enc` stays as it is.
    pub keep_cc: bool,
    /// Otherwise its new value (sealed SHA-256(CC)), or NULL.
    pub cc_hash_enc: Option<String>,
}

impl ProfileUpdate {
    /// The update a change makes; a new CC hash is sealed with `cipher`.
    pub fn new(change: &ProfileChange, cipher: &Cipher) -> Self {
        let (keep_cc, cc_hash_enc) = match change.cc {
            CcChange::Keep => (true, None),
            CcChange::Set(h) => (false, Some(cipher.seal("cc_hash", &h))),
            CcChange::Clear => (false, None),
        };
        Self {
            state: change.to.as_str(),
            eid: change.eid.clone(),
            matching_id: change.matching_id.clone(),
            activation_code: change.activation_code.clone(),
            keep_cc,
            cc_hash_enc,
        }
    }
}

/// The history operation of a command from `source`.
pub fn history_operation(source: &str, change: &ProfileChange) -> String {
    format!("{source}.{}", change.event.name())
}

/// The outbox event of a state change.
pub fn status_event(
    tenant_id: &str,
    iccid: &str,
    from: ProfileState,
    to: ProfileState,
    operation: &str,
    call_id: Option<&str>,
) -> EventWrite {
    let data: Value = json!({"iccid": iccid, "from": from.as_str(), "to": to.as_str(),
        "operation": operation, "function_call_identifier": call_id});
    EventWrite::new(tenant_id, PROFILE_EVENT, data)
}

/// The profile a request naming an ICCID targets: refused when there is none,
/// or when the request also names a profile type the profile is not of.
pub fn by_iccid(
    found: Option<ProfileRecord>,
    iccid: &str,
    wanted: Option<&String>,
) -> ProfileOutcome {
    let Some(rec) = found else {
        return Err(ProfileRefusal::UnknownIccid(iccid.to_owned()));
    };
    match wanted {
        Some(t) if rec.template.as_deref() != Some(t.as_str()) => {
            Err(ProfileRefusal::ProfileTypeMismatch {
                iccid: iccid.to_owned(),
                requested: t.clone(),
            })
        }
        _ => Ok(rec),
    }
}

/// The refusal for a DownloadOrder by profile type that found nothing:
/// `any_of_type` tells whether the type exists at all.
pub fn nothing_available(profile_type: &str, any_of_type: bool) -> ProfileRefusal {
    if any_of_type {
        ProfileRefusal::NoProfileAvailable(profile_type.to_owned())
    } else {
        ProfileRefusal::UnknownProfileType(profile_type.to_owned())
    }
}

/// States expiry acts on, as an SQL list.
pub const UNUSED_STATES: &str = "('AVAILABLE', 'ALLOCATED', 'LINKED', 'CONFIRMED', 'RELEASED')";

/// Parse a stored state (`Corrupt` if unknown).
pub fn state(name: &str) -> crate::Result<ProfileState> {
    ProfileState::parse(name)
        .ok_or_else(|| crate::StoreError::Corrupt(format!("unknown profile state '{name}'")))
}
