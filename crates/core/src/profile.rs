//! The SGP.22 profile lifecycle at the SM-DP+, and the rules of the ES2+
//! functions that move a profile through it.
//!
//! Two layers, both pure:
//!
//! - [`transition`]: the state machine alone. Given a state and a
//!   [`ProfileEvent`], the next state or an [`IllegalTransition`].
//! - [`decide`]: one ES2+ function ([`ProfileCommand`]) applied to a stored
//!   profile ([`ProfileSnapshot`]). It checks what SGP.22 asks beyond the
//!   state (the EID the profile is linked to, the matching ID of the order)
//!   and returns the complete [`ProfileChange`] to write, or a
//!   [`ProfileRefusal`] that the ES2+ layer turns into subject and reason codes.
//!
//! ```text
//!                DownloadOrder            ConfirmOrder(release)        download     install
//!   AVAILABLE ───────────────► ALLOCATED ──────────────────────► RELEASED ───► DOWNLOADED ───► INSTALLED
//!       ▲        (with EID)    LINKED    ──► CONFIRMED ──────────────▲    │            │
//!       │                                 ConfirmOrder  ReleaseProfile    └── failure ─┴──► ERROR
//!       └── CancelOrder(Available) from ALLOCATED, LINKED, CONFIRMED, RELEASED
//!   CancelOrder(Unavailable) and expiry: from any unused state → UNAVAILABLE
//! ```

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::activation::{ActivationCode, MatchingId};
use crate::ids::Eid;

/// The state of a profile at the SM-DP+ (SGP.22).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ProfileState {
    /// In inventory, not ordered yet.
    Available,
    /// Ordered without an EID.
    Allocated,
    /// Ordered for one eUICC (EID known).
    Linked,
    /// Order confirmed, matching ID fixed, not yet downloadable.
    Confirmed,
    /// Downloadable: the activation code works.
    Released,
    /// The bound package was delivered to the device.
    Downloaded,
    /// The eUICC reported a successful installation.
    Installed,
    /// Download or installation failed.
    Error,
    /// Withdrawn: cancelled or expired; never usable again.
    Unavailable,
}

impl ProfileState {
    /// Every state.
    pub const ALL: [ProfileState; 9] = [
        Self::Available,
        Self::Allocated,
        Self::Linked,
        Self::Confirmed,
        Self::Released,
        Self::Downloaded,
        Self::Installed,
        Self::Error,
        Self::Unavailable,
    ];

    /// The wire and storage name (`AVAILABLE`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Available => "AVAILABLE",
            Self::Allocated => "ALLOCATED",
            Self::Linked => "LINKED",
            Self::Confirmed => "CONFIRMED",
            Self::Released => "RELEASED",
            Self::Downloaded => "DOWNLOADED",
            Self::Installed => "INSTALLED",
            Self::Error => "ERROR",
            Self::Unavailable => "UNAVAILABLE",
        }
    }

    /// Parse a stored or wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// Not yet downloaded: the states that expiry and CancelOrder act on.
    pub fn is_unused(self) -> bool {
        matches!(
            self,
            Self::Available | Self::Allocated | Self::Linked | Self::Confirmed | Self::Released
        )
    }

    /// Ordered but not downloaded (what CancelOrder accepts).
    pub fn is_ordered(self) -> bool {
        matches!(
            self,
            Self::Allocated | Self::Linked | Self::Confirmed | Self::Released
        )
    }

    /// No event leaves this state.
    pub fn is_final(self) -> bool {
        matches!(self, Self::Installed | Self::Error | Self::Unavailable)
    }

    /// Whether the activation code is settled (the order was confirmed): it is
    /// shown and rendered as a QR code only from then on.
    pub fn has_activation_code(self) -> bool {
        matches!(
            self,
            Self::Confirmed | Self::Released | Self::Downloaded | Self::Installed
        )
    }
}

impl fmt::Display for ProfileState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where CancelOrder leaves the profile (`finalProfileStatusIndicator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FinalProfileStatus {
    /// Back to inventory, with a new matching ID.
    Available,
    /// Withdrawn for good.
    Unavailable,
}

impl FinalProfileStatus {
    /// Parse the ES2+ value (`Available` or `Unavailable`).
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "Available" => Some(Self::Available),
            "Unavailable" => Some(Self::Unavailable),
            _ => None,
        }
    }
}

/// Something that happens to a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ProfileEvent {
    /// ES2+.DownloadOrder; `with_eid` when the order names the eUICC.
    DownloadOrder {
        /// Whether an EID was given.
        with_eid: bool,
    },
    /// ES2+.ConfirmOrder; `release` is its `releaseFlag`.
    ConfirmOrder {
        /// Release at once.
        release: bool,
    },
    /// ES2+.ReleaseProfile.
    ReleaseProfile,
    /// ES2+.CancelOrder.
    CancelOrder {
        /// `finalProfileStatusIndicator`.
        final_status: FinalProfileStatus,
    },
    /// The bound profile package was delivered (ES9+).
    Downloaded,
    /// The eUICC reported a successful installation.
    Installed,
    /// Download or installation failed for good.
    Failed,
    /// `expireTime` passed while the profile was unused.
    Expired,
}

impl ProfileEvent {
    /// A stable name, used in history rows and events.
    pub fn name(self) -> &'static str {
        match self {
            Self::DownloadOrder { .. } => "download_order",
            Self::ConfirmOrder { .. } => "confirm_order",
            Self::ReleaseProfile => "release_profile",
            Self::CancelOrder { .. } => "cancel_order",
            Self::Downloaded => "downloaded",
            Self::Installed => "installed",
            Self::Failed => "failed",
            Self::Expired => "expired",
        }
    }
}

/// A transition SGP.22 does not define.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IllegalTransition {
    /// The state the profile is in.
    pub from: ProfileState,
    /// What was attempted.
    pub event: ProfileEvent,
}

impl fmt::Display for IllegalTransition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} is not possible while the profile is {}",
            self.event.name(),
            self.from
        )
    }
}

/// The state machine: the state after `event`, or why it cannot happen.
pub fn transition(
    from: ProfileState,
    event: ProfileEvent,
) -> Result<ProfileState, IllegalTransition> {
    use ProfileState as S;
    let next = match (from, event) {
        (S::Available, ProfileEvent::DownloadOrder { with_eid: false }) => Some(S::Allocated),
        (S::Available, ProfileEvent::DownloadOrder { with_eid: true }) => Some(S::Linked),
        (S::Allocated | S::Linked, ProfileEvent::ConfirmOrder { release: false }) => {
            Some(S::Confirmed)
        }
        (S::Allocated | S::Linked, ProfileEvent::ConfirmOrder { release: true }) => {
            Some(S::Released)
        }
        (S::Confirmed, ProfileEvent::ReleaseProfile) => Some(S::Released),
        (s, ProfileEvent::CancelOrder { final_status }) if s.is_ordered() => {
            Some(match final_status {
                FinalProfileStatus::Available => S::Available,
                FinalProfileStatus::Unavailable => S::Unavailable,
            })
        }
        (S::Released, ProfileEvent::Downloaded) => Some(S::Downloaded),
        (S::Downloaded, ProfileEvent::Installed) => Some(S::Installed),
        (S::Released | S::Downloaded, ProfileEvent::Failed) => Some(S::Error),
        (s, ProfileEvent::Expired) if s.is_unused() => Some(S::Unavailable),
        _ => None,
    };
    next.ok_or(IllegalTransition { from, event })
}

/// A stored profile, as the rules need to see it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileSnapshot {
    /// ICCID.
    pub iccid: String,
    /// Current state.
    pub state: ProfileState,
    /// EID the profile is linked to, if any.
    pub eid: Option<String>,
    /// Current matching ID.
    pub matching_id: String,
    /// Current activation code (its SM-DP+ address is kept across changes).
    pub activation_code: String,
    /// Whether a confirmation code is on file.
    pub has_cc: bool,
}

/// An ES2+ function applied to one profile.
#[derive(Debug, Clone)]
pub enum ProfileCommand {
    /// DownloadOrder.
    DownloadOrder {
        /// The eUICC to link to.
        eid: Option<Eid>,
    },
    /// ConfirmOrder.
    ConfirmOrder {
        /// Must equal the linked EID; links an ALLOCATED profile.
        eid: Option<Eid>,
        /// The operator's matching ID; the profile's own one when absent.
        matching_id: Option<MatchingId>,
        /// SHA-256 of the confirmation code to require, if any.
        cc_hash: Option<[u8; 32]>,
        /// Release at once.
        release: bool,
    },
    /// CancelOrder.
    CancelOrder {
        /// Must equal the linked EID, when given.
        eid: Option<Eid>,
        /// Must equal the profile's matching ID, when given.
        matching_id: Option<MatchingId>,
        /// Where the profile goes.
        final_status: FinalProfileStatus,
    },
    /// ReleaseProfile.
    ReleaseProfile,
}

impl ProfileCommand {
    /// The state-machine event this command drives.
    pub fn event(&self) -> ProfileEvent {
        match self {
            Self::DownloadOrder { eid } => ProfileEvent::DownloadOrder {
                with_eid: eid.is_some(),
            },
            Self::ConfirmOrder { release, .. } => ProfileEvent::ConfirmOrder { release: *release },
            Self::CancelOrder { final_status, .. } => ProfileEvent::CancelOrder {
                final_status: *final_status,
            },
            Self::ReleaseProfile => ProfileEvent::ReleaseProfile,
        }
    }
}

/// What happens to the confirmation-code hash on file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CcChange {
    /// Leave it as it is.
    Keep,
    /// Store this SHA-256(CC).
    Set([u8; 32]),
    /// Remove it.
    Clear,
}

/// Everything a successful command writes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProfileChange {
    /// State before.
    pub from: ProfileState,
    /// State after.
    pub to: ProfileState,
    /// The event, for history and events.
    pub event: ProfileEvent,
    /// EID after.
    pub eid: Option<String>,
    /// Matching ID after.
    pub matching_id: String,
    /// Activation code after.
    pub activation_code: String,
    /// Confirmation code.
    pub cc: CcChange,
}

/// Why a command was refused. The ES2+ layer maps each to SGP.22 codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProfileRefusal {
    /// No profile with this ICCID (for this tenant).
    UnknownIccid(String),
    /// No profile of this type (template) exists for this tenant.
    UnknownProfileType(String),
    /// Profiles of this type exist, but none is AVAILABLE.
    NoProfileAvailable(String),
    /// The ICCID's profile is of another type than the one ordered.
    ProfileTypeMismatch {
        /// ICCID.
        iccid: String,
        /// Type asked for.
        requested: String,
    },
    /// The state machine forbids it.
    InvalidTransition {
        /// ICCID.
        iccid: String,
        /// The refused transition.
        illegal: IllegalTransition,
    },
    /// The EID given is not the one the profile is linked to.
    EidMismatch {
        /// ICCID.
        iccid: String,
        /// EID given.
        given: String,
    },
    /// The matching ID given is not the profile's.
    MatchingIdMismatch {
        /// ICCID.
        iccid: String,
        /// Matching ID given.
        given: String,
    },
    /// The matching ID is already used by another profile.
    MatchingIdInUse(String),
}

impl fmt::Display for ProfileRefusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownIccid(i) => write!(f, "no profile with ICCID {i}"),
            Self::UnknownProfileType(t) => write!(f, "no profile of type '{t}'"),
            Self::NoProfileAvailable(t) => write!(f, "no profile of type '{t}' is AVAILABLE"),
            Self::ProfileTypeMismatch { iccid, requested } => {
                write!(f, "profile {iccid} is not of type '{requested}'")
            }
            Self::InvalidTransition { iccid, illegal } => write!(f, "profile {iccid}: {illegal}"),
            Self::EidMismatch { iccid, given } => {
                write!(f, "profile {iccid} is not linked to EID {given}")
            }
            Self::MatchingIdMismatch { iccid, given } => {
                write!(f, "matching ID {given} is not the one of profile {iccid}")
            }
            Self::MatchingIdInUse(m) => write!(f, "matching ID {m} is already in use"),
        }
    }
}

/// Apply `cmd` to `p`. Matching-ID uniqueness across profiles is the
/// store's to check (it sees every profile); everything else is here.
pub fn decide(p: &ProfileSnapshot, cmd: &ProfileCommand) -> Result<ProfileChange, ProfileRefusal> {
    let event = cmd.event();
    let to = transition(p.state, event).map_err(|illegal| ProfileRefusal::InvalidTransition {
        iccid: p.iccid.clone(),
        illegal,
    })?;
    let eid_must_match = |given: &Option<Eid>| -> Result<(), ProfileRefusal> {
        match (given, &p.eid) {
            (Some(g), Some(linked)) if g.as_str() != linked => Err(ProfileRefusal::EidMismatch {
                iccid: p.iccid.clone(),
                given: g.to_string(),
            }),
            _ => Ok(()),
        }
    };
    // The SM-DP+ address of the code stays; only the matching ID and the CC flag change.
    let smdp = ActivationCode::parse(&p.activation_code)
        .map(|ac| ac.smdp_address)
        .unwrap_or_default();
    let code = |mid: &MatchingId, cc: bool| {
        if smdp.is_empty() {
            p.activation_code.clone()
        } else {
            ActivationCode::new(&smdp, mid.clone(), cc).to_string()
        }
    };
    let mut change = ProfileChange {
        from: p.state,
        to,
        event,
        eid: p.eid.clone(),
        matching_id: p.matching_id.clone(),
        activation_code: p.activation_code.clone(),
        cc: CcChange::Keep,
    };
    match cmd {
        ProfileCommand::DownloadOrder { eid } => {
            change.eid = eid.as_ref().map(|e| e.to_string());
        }
        ProfileCommand::ConfirmOrder {
            eid,
            matching_id,
            cc_hash,
            ..
        } => {
            eid_must_match(eid)?;
            if let Some(e) = eid {
                change.eid = Some(e.to_string());
            }
            let mid = match matching_id {
                Some(m) => m.clone(),
                None => {
                    MatchingId::parse(&p.matching_id).unwrap_or_else(|_| MatchingId::generate())
                }
            };
            let cc_required = cc_hash.is_some() || p.has_cc;
            if let Some(h) = cc_hash {
                change.cc = CcChange::Set(*h);
            }
            change.matching_id = mid.as_str().to_owned();
            change.activation_code = code(&mid, cc_required);
        }
        ProfileCommand::CancelOrder {
            eid, matching_id, ..
        } => {
            eid_must_match(eid)?;
            if let Some(m) = matching_id {
                if m.as_str() != p.matching_id {
                    return Err(ProfileRefusal::MatchingIdMismatch {
                        iccid: p.iccid.clone(),
                        given: m.to_string(),
                    });
                }
            }
            if to == ProfileState::Available {
                // Back in inventory: the old code must never work again.
                let mid = MatchingId::generate();
                change.eid = None;
                change.cc = CcChange::Clear;
                change.matching_id = mid.as_str().to_owned();
                change.activation_code = code(&mid, false);
            }
        }
        ProfileCommand::ReleaseProfile => {}
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use ProfileState as S;

    const EVENTS: [ProfileEvent; 11] = [
        ProfileEvent::DownloadOrder { with_eid: false },
        ProfileEvent::DownloadOrder { with_eid: true },
        ProfileEvent::ConfirmOrder { release: false },
        ProfileEvent::ConfirmOrder { release: true },
        ProfileEvent::ReleaseProfile,
        ProfileEvent::CancelOrder {
            final_status: FinalProfileStatus::Available,
        },
        ProfileEvent::CancelOrder {
            final_status: FinalProfileStatus::Unavailable,
        },
        ProfileEvent::Downloaded,
        ProfileEvent::Installed,
        ProfileEvent::Failed,
        ProfileEvent::Expired,
    ];

    /// Every legal transition, written out by hand from SGP.22. Any
    /// (state, event) pair not listed here must be refused.
    fn legal() -> Vec<(ProfileState, ProfileEvent, ProfileState)> {
        let [dl, dl_eid, confirm, confirm_release, release, cancel_av, cancel_un, downloaded, installed, failed, expired] =
            EVENTS;
        vec![
            (S::Available, dl, S::Allocated),
            (S::Available, dl_eid, S::Linked),
            (S::Allocated, confirm, S::Confirmed),
            (S::Allocated, confirm_release, S::Released),
            (S::Linked, confirm, S::Confirmed),
            (S::Linked, confirm_release, S::Released),
            (S::Confirmed, release, S::Released),
            (S::Allocated, cancel_av, S::Available),
            (S::Linked, cancel_av, S::Available),
            (S::Confirmed, cancel_av, S::Available),
            (S::Released, cancel_av, S::Available),
            (S::Allocated, cancel_un, S::Unavailable),
            (S::Linked, cancel_un, S::Unavailable),
            (S::Confirmed, cancel_un, S::Unavailable),
            (S::Released, cancel_un, S::Unavailable),
            (S::Released, downloaded, S::Downloaded),
            (S::Downloaded, installed, S::Installed),
            (S::Released, failed, S::Error),
            (S::Downloaded, failed, S::Error),
            (S::Available, expired, S::Unavailable),
            (S::Allocated, expired, S::Unavailable),
            (S::Linked, expired, S::Unavailable),
            (S::Confirmed, expired, S::Unavailable),
            (S::Released, expired, S::Unavailable),
        ]
    }

    #[test]
    fn transition_table_every_pair() {
        let table = legal();
        let mut legal_count = 0;
        for from in S::ALL {
            for event in EVENTS {
                let expected = table
                    .iter()
                    .find(|(f, e, _)| *f == from && *e == event)
                    .map(|(_, _, to)| *to);
                match (transition(from, event), expected) {
                    (Ok(to), Some(want)) => {
                        assert_eq!(to, want, "{from} --{}--> ", event.name());
                        legal_count += 1;
                    }
                    (Err(e), None) => {
                        assert_eq!(e, IllegalTransition { from, event });
                        assert!(e.to_string().contains(from.as_str()));
                    }
                    (got, want) => panic!("{from} --{}: got {got:?}, want {want:?}", event.name()),
                }
            }
        }
        assert_eq!(legal_count, table.len());
        // 9 states × 11 events: every other pair was checked as illegal.
        assert_eq!(S::ALL.len() * EVENTS.len() - legal_count, 75);
    }

    #[test]
    fn names_roundtrip_and_final_states_absorb() {
        for s in S::ALL {
            assert_eq!(S::parse(s.as_str()), Some(s));
            if s.is_final() {
                assert!(EVENTS.iter().all(|e| transition(s, *e).is_err()), "{s}");
            }
        }
        assert_eq!(S::parse("released"), None);
        assert_eq!(
            FinalProfileStatus::parse("Available"),
            Some(FinalProfileStatus::Available)
        );
        assert_eq!(FinalProfileStatus::parse("AVAILABLE"), None);
    }

    fn snapshot(state: ProfileState, eid: Option<&str>) -> ProfileSnapshot {
        ProfileSnapshot {
            iccid: "89880000000000000001".into(),
            state,
            eid: eid.map(str::to_owned),
            matching_id: "OLD-MID".into(),
            activation_code: "1$smdp.example.com$OLD-MID".into(),
            has_cc: false,
        }
    }

    const EID: &str = "89049032123451234512345678901235";
    const EID2: &str = "89049032123451234512345678901332";

    fn eid(s: &str) -> Eid {
        Eid::parse(s).expect("valid test EID")
    }

    #[test]
    fn download_order_links_with_eid() {
        let c = decide(
            &snapshot(S::Available, None),
            &ProfileCommand::DownloadOrder {
                eid: Some(eid(EID)),
            },
        )
        .unwrap();
        assert_eq!((c.from, c.to), (S::Available, S::Linked));
        assert_eq!(c.eid.as_deref(), Some(EID));
        let c = decide(
            &snapshot(S::Available, None),
            &ProfileCommand::DownloadOrder { eid: None },
        )
        .unwrap();
        assert_eq!((c.to, c.eid), (S::Allocated, None));
        let e = decide(
            &snapshot(S::Released, None),
            &ProfileCommand::DownloadOrder { eid: None },
        )
        .unwrap_err();
        assert!(matches!(e, ProfileRefusal::InvalidTransition { .. }), "{e}");
    }

    #[test]
    fn confirm_order_checks_eid_and_builds_code() {
        let linked = snapshot(S::Linked, Some(EID));
        let confirm = |eid_: Option<&str>, mid: Option<&str>, cc: bool, release| {
            ProfileCommand::ConfirmOrder {
                eid: eid_.map(eid),
                matching_id: mid.map(|m| MatchingId::parse(m).unwrap()),
                cc_hash: cc.then(|| crate::activation::hash_confirmation_code("1234")),
                release,
            }
        };
        let e = decide(&linked, &confirm(Some(EID2), None, false, true)).unwrap_err();
        assert_eq!(
            e,
            ProfileRefusal::EidMismatch {
                iccid: linked.iccid.clone(),
                given: EID2.into()
            }
        );
        let c = decide(&linked, &confirm(Some(EID), Some("NEW-MID"), true, true)).unwrap();
        assert_eq!(c.to, S::Released);
        assert_eq!(c.matching_id, "NEW-MID");
        assert_eq!(c.activation_code, "1$smdp.example.com$NEW-MID$$1");
        assert!(matches!(c.cc, CcChange::Set(_)));
        // Without a matching ID the profile keeps its own; ALLOCATED gets linked.
        let c = decide(
            &snapshot(S::Allocated, None),
            &confirm(Some(EID2), None, false, false),
        )
        .unwrap();
        assert_eq!(
            (c.to, c.eid.as_deref(), c.matching_id.as_str()),
            (S::Confirmed, Some(EID2), "OLD-MID")
        );
        assert_eq!(c.activation_code, "1$smdp.example.com$OLD-MID");
    }

    #[test]
    fn cancel_order_checks_and_resets() {
        let p = snapshot(S::Confirmed, Some(EID));
        let cancel = |eid_: Option<&str>, mid: Option<&str>, fs| ProfileCommand::CancelOrder {
            eid: eid_.map(eid),
            matching_id: mid.map(|m| MatchingId::parse(m).unwrap()),
            final_status: fs,
        };
        assert!(matches!(
            decide(&p, &cancel(Some(EID2), None, FinalProfileStatus::Available)),
            Err(ProfileRefusal::EidMismatch { .. })
        ));
        assert!(matches!(
            decide(
                &p,
                &cancel(None, Some("OTHER"), FinalProfileStatus::Available)
            ),
            Err(ProfileRefusal::MatchingIdMismatch { .. })
        ));
        let c = decide(
            &p,
            &cancel(Some(EID), Some("OLD-MID"), FinalProfileStatus::Available),
        )
        .unwrap();
        assert_eq!(
            (c.to, c.eid.clone(), c.cc),
            (S::Available, None, CcChange::Clear)
        );
        assert_ne!(
            c.matching_id, "OLD-MID",
            "a cancelled code never works again"
        );
        assert!(c.activation_code.ends_with(&c.matching_id));
        let c = decide(&p, &cancel(None, None, FinalProfileStatus::Unavailable)).unwrap();
        assert_eq!((c.to, c.matching_id.as_str()), (S::Unavailable, "OLD-MID"));
        assert!(decide(
            &snapshot(S::Available, None),
            &cancel(None, None, FinalProfileStatus::Unavailable)
        )
        .is_err());
    }

    #[test]
    fn release_only_from_confirmed() {
        for s in S::ALL {
            let r = decide(&snapshot(s, None), &ProfileCommand::ReleaseProfile);
            assert_eq!(r.is_ok(), s == S::Confirmed, "{s}");
        }
    }

    #[test]
    fn generated_profiles_start_released_or_available() {
        use crate::execute::{execute, Context};
        use crate::ids::ValidationProfile;
        use crate::operation::{parse_item, Operation};
        let ctx = Context {
            smdp_address: "smdp.example.com",
            has_profile: false,
            template_exists: &|_| true,
        };
        let run = |extra: serde_json::Value| {
            let mut m = extra.as_object().cloned().unwrap_or_default();
            m.insert("iccid".into(), "89880000000000000001".into());
            m.insert("template".into(), "tpl".into());
            m.insert("imsi".into(), "001010000000001".into());
            m.insert("ki".into(), "000102030405060708090a0b0c0d0e0f".into());
            let order = parse_item(
                Operation::GenerateActivationCode,
                &m,
                ValidationProfile::Standard,
            )
            .map(|p| p.order);
            order.map(|o| execute(&o, None, &ctx).unwrap())
        };
        let o = run(serde_json::json!({})).unwrap();
        assert_eq!(o.profile.unwrap().state, "RELEASED");
        assert!(o.result["activation_code"].is_string());
        let o = run(serde_json::json!({"profile_state": "AVAILABLE"})).unwrap();
        assert_eq!(o.profile.unwrap().state, "AVAILABLE");
        assert!(
            o.result.get("activation_code").is_none(),
            "no code before the order"
        );
        let r = run(serde_json::json!({"profile_state": "LINKED"})).unwrap_err();
        assert_eq!(
            (r.field.as_deref(), r.code.as_str()),
            (Some("profile_state"), "invalid_value")
        );
    }

    proptest! {
        /// Random event sequences from AVAILABLE: every state reached is one
        /// the table defines, a refused event changes nothing, and a final
        /// state is never left.
        #[test]
        fn random_sequences_stay_defined(events in proptest::collection::vec(0usize..EVENTS.len(), 0..60)) {
            let table = legal();
            let mut state = S::Available;
            let mut finished = false;
            for i in events {
                let event = EVENTS[i];
                match transition(state, event) {
                    Ok(next) => {
                        prop_assert!(!finished, "left final state {state}");
                        prop_assert!(table.contains(&(state, event, next)));
                        prop_assert!(S::ALL.contains(&next));
                        state = next;
                    }
                    Err(e) => prop_assert_eq!(e.from, state),
                }
                finished = state.is_final();
            }
            prop_assert_eq!(S::parse(state.as_str()), Some(state));
        }
    }
}
