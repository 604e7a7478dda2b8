//! eSIM profile use cases: read a profile, run one ES2+ function on it.
//!
//! An ES2+ function is one [`Store::profile_command`] call, which owns its
//! transaction (profile, history row and event together); see
//! `simbatch_store::profiles` for why it is not an implicit batch of one.

use simbatch_core::profile::ProfileRefusal;
use simbatch_store::{ProfileOutcome, ProfileRecord, ProfileRequest, Tenant};

use super::{internal, valid_iccid, Service, ServiceError};

/// Longest profile type (template name) looked up.
const MAX_PROFILE_TYPE: usize = 128;

impl Service {
    /// A profile (never its confirmation code); another tenant's is not found.
    pub async fn get_profile(
        &self,
        tenant: &Tenant,
        iccid: &str,
    ) -> Result<ProfileRecord, ServiceError> {
        if !valid_iccid(iccid) {
            return Err(ServiceError::NotFound("profile".into()));
        }
        self.store
            .get_profile(&tenant.id, iccid)
            .await
            .map_err(internal)?
            .ok_or_else(|| ServiceError::NotFound("profile".into()))
    }

    /// Run one ES2+ function on one profile of the tenant. A refusal by the
    /// SGP.22 rules is `Ok(Err(_))`; a request naming neither an ICCID nor a
    /// profile type is `InvalidRequest`.
    pub async fn profile_command(
        &self,
        tenant: &Tenant,
        req: &ProfileRequest,
    ) -> Result<ProfileOutcome, ServiceError> {
        if req.iccid.is_none() && req.profile_type.is_none() {
            return Err(ServiceError::invalid(
                "an ICCID or a profile type is required",
            ));
        }
        if let Some(iccid) = &req.iccid {
            if !valid_iccid(iccid) {
                return Ok(Err(ProfileRefusal::UnknownIccid(iccid.clone())));
            }
        }
        if let Some(t) = &req.profile_type {
            if t.is_empty() || t.len() > MAX_PROFILE_TYPE {
                return Ok(Err(ProfileRefusal::UnknownProfileType(t.clone())));
            }
        }
        self.store
            .profile_command(&tenant.id, req)
            .await
            .map_err(internal)
    }
}
