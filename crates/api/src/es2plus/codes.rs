//! SGP.22 status codes used in ES2+ answers: the subject (what is at fault)
//! and the reason (what is wrong with it), and the mapping from the core
//! refusals.

use simbatch_core::profile::{ProfileEvent, ProfileRefusal};

/// Subject codes.
pub mod subject {
    /// Function requester (the request header).
    pub const FUNCTION_REQUESTER: &str = "1.1";
    /// eUICC identifier (EID).
    pub const EID: &str = "8.1.1";
    /// Profile (its non-identifier attributes: releaseFlag, finalProfileStatusIndicator).
    pub const PROFILE: &str = "8.2";
    /// Profile ICCID.
    pub const ICCID: &str = "8.2.1";
    /// Profile type.
    pub const PROFILE_TYPE: &str = "8.2.5";
    /// Matching ID.
    pub const MATCHING_ID: &str = "8.2.6";
    /// Confirmation code.
    pub const CONFIRMATION_CODE: &str = "8.2.7";
    /// SM-DS.
    pub const SMDS: &str = "8.9";
}

/// Reason codes.
pub mod reason {
    /// Format error: invalid value.
    pub const INVALID: &str = "2.1";
    /// Format error: a mandatory element is missing.
    pub const MISSING: &str = "2.2";
    /// Format error: a conditional element is missing.
    pub const CONDITIONAL_MISSING: &str = "2.3";
    /// Already in use.
    pub const ALREADY_IN_USE: &str = "3.3";
    /// Invalid state transition.
    pub const INVALID_TRANSITION: &str = "3.5";
    /// Unavailable.
    pub const UNAVAILABLE: &str = "3.7";
    /// Unknown.
    pub const UNKNOWN: &str = "3.9";
    /// Invalid association (does not belong together).
    pub const INVALID_ASSOCIATION: &str = "3.10";
    /// Inaccessible.
    pub const INACCESSIBLE: &str = "5.1";
}

/// A failed function: `statusCodeData`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failed {
    /// Subject code.
    pub subject: &'static str,
    /// Reason code.
    pub reason: &'static str,
    /// The value at fault (ICCID, EID, field name...), if any.
    pub identifier: Option<String>,
    /// Human explanation.
    pub message: String,
}

impl Failed {
    /// A failure.
    pub fn new(
        subject: &'static str,
        reason: &'static str,
        identifier: Option<String>,
        message: impl Into<String>,
    ) -> Self {
        Self {
            subject,
            reason,
            identifier,
            message: message.into(),
        }
    }
}

/// The codes of a refusal by the lifecycle rules.
pub fn refusal(r: &ProfileRefusal) -> Failed {
    use reason as re;
    use subject as su;
    let message = r.to_string();
    let (s, reason, id) = match r {
        ProfileRefusal::UnknownIccid(i) => (su::ICCID, re::UNKNOWN, i.clone()),
        ProfileRefusal::UnknownProfileType(t) => (su::PROFILE_TYPE, re::UNKNOWN, t.clone()),
        ProfileRefusal::NoProfileAvailable(t) => (su::PROFILE_TYPE, re::UNAVAILABLE, t.clone()),
        ProfileRefusal::ProfileTypeMismatch { requested, .. } => {
            (su::PROFILE_TYPE, re::INVALID_ASSOCIATION, requested.clone())
        }
        // DownloadOrder of a profile that is not AVAILABLE: the ICCID is taken.
        ProfileRefusal::InvalidTransition { iccid, illegal }
            if matches!(illegal.event, ProfileEvent::DownloadOrder { .. }) =>
        {
            (su::ICCID, re::ALREADY_IN_USE, iccid.clone())
        }
        ProfileRefusal::InvalidTransition { iccid, .. } => {
            (su::ICCID, re::INVALID_TRANSITION, iccid.clone())
        }
        ProfileRefusal::EidMismatch { given, .. } => {
            (su::EID, re::INVALID_ASSOCIATION, given.clone())
        }
        ProfileRefusal::MatchingIdMismatch { given, .. } => {
            (su::MATCHING_ID, re::INVALID_ASSOCIATION, given.clone())
        }
        ProfileRefusal::MatchingIdInUse(m) => (su::MATCHING_ID, re::ALREADY_IN_USE, m.clone()),
    };
    Failed::new(s, reason, Some(id), message)
}
