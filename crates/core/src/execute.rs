//! Executing an order against a SIM's current state.
//!
//! [`execute`] is a pure function: given the order, the SIM as it is now and a
//! little context, it returns the SIM as it must become (plus a profile, for
//! the eSIM operations) or a [`Failure`] with a stable code. The engine commits
//! whatever it returns in one transaction with the item's result.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use time::OffsetDateTime;

use crate::activation::{hash_confirmation_code, ActivationCode, MatchingId};
use crate::lifecycle::{transition, SimStatus, SubscriptionState};
use crate::operation::{ApnStatus, Operation, Order};

/// A SIM as the platform knows it. Secrets are not part of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Sim {
    /// ICCID (key within a tenant).
    pub iccid: String,
    /// IMSI.
    pub imsi: Option<String>,
    /// MSISDN.
    pub msisdn: Option<String>,
    /// EID of the eUICC holding the profile.
    pub eid: Option<String>,
    /// IMEI of the bound device.
    pub imei: Option<String>,
    /// Lifecycle status.
    pub status: SimStatus,
    /// ECC subscription state; `None` until a subscription is created.
    pub subscription_state: Option<SubscriptionState>,
    /// ECC blocked flag.
    pub blocked: bool,
    /// Basic rate plan.
    pub rate_plan: Option<String>,
    /// Supplementary plans, in the order added.
    pub supplementary_plans: Vec<String>,
    /// Assigned services by name, with their parameters.
    #[schema(value_type = Object)]
    pub services: BTreeMap<String, Value>,
    /// `ENABLED` or `DISABLED`, once set.
    pub apn_status: Option<String>,
    /// Custom fields 1–5 by number ("1" to "5").
    pub custom_fields: BTreeMap<String, String>,
}

impl Sim {
    /// A fresh SIM in INVENTORY.
    pub fn new(iccid: &str) -> Self {
        Self {
            iccid: iccid.to_owned(),
            imsi: None,
            msisdn: None,
            eid: None,
            imei: None,
            status: SimStatus::Inventory,
            subscription_state: None,
            blocked: false,
            rate_plan: None,
            supplementary_plans: Vec::new(),
            services: BTreeMap::new(),
            apn_status: None,
            custom_fields: BTreeMap::new(),
        }
    }
}

/// A new eSIM profile to store with the SIM.
#[derive(Debug, Clone)]
pub struct NewProfile {
    /// Matching ID (unique platform-wide).
    pub matching_id: String,
    /// Activation code as text.
    pub activation_code: String,
    /// SHA-256 of the confirmation code, if one is required.
    pub cc_hash: Option<[u8; 32]>,
    /// Template (configName) it was generated from.
    pub template: Option<String>,
    /// SGP.22 state.
    pub state: &'static str,
    /// When an unused profile expires.
    pub expires_at: Option<OffsetDateTime>,
    /// APN given at import.
    pub apn: Option<String>,
}

/// What an order does when it succeeds.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The SIM after the order.
    pub sim: Sim,
    /// Whether the SIM did not exist before.
    pub created: bool,
    /// Status before (None when created) and after.
    pub from_status: Option<SimStatus>,
    /// A profile to create with the SIM.
    pub profile: Option<NewProfile>,
    /// The result shown to the client (never secrets).
    pub result: Value,
}

impl Outcome {
    /// Whether the lifecycle status changed (emits `sim.status_changed`).
    pub fn status_changed(&self) -> bool {
        self.from_status != Some(self.sim.status)
    }
}

/// Why an order failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    /// Stable machine code, e.g. `illegal_status`.
    pub code: String,
    /// Human reason.
    pub reason: String,
}

impl Failure {
    fn new(code: &str, reason: impl Into<String>) -> Self {
        Self {
            code: code.to_owned(),
            reason: reason.into(),
        }
    }
}

/// What the executor needs to know beyond the SIM itself.
pub struct Context<'a> {
    /// SM-DP+ address for new activation codes.
    pub smdp_address: &'a str,
    /// Whether the SIM already has an eSIM profile.
    pub has_profile: bool,
    /// Whether a template of that name exists.
    pub template_exists: &'a dyn Fn(&str) -> bool,
}

/// Run `order` against `current` (None when the SIM does not exist).
pub fn execute(
    order: &Order,
    current: Option<&Sim>,
    ctx: &Context<'_>,
) -> Result<Outcome, Failure> {
    let op = order.operation;
    let iccid = order.iccid.as_str();
    let created = current.is_none();
    let mut sim = match current {
        Some(s) => s.clone(),
        None if op.creates_sim() => Sim::new(iccid),
        None => {
            return Err(Failure::new(
                "sim_not_found",
                format!("SIM {iccid} does not exist"),
            ))
        }
    };
    let from_status = current.map(|s| s.status);
    let a = &order.args;
    let mut profile = None;
    let mut result = json!({});
    let need_not_retired = |sim: &Sim| {
        if sim.status == SimStatus::Retired {
            Err(Failure::new(
                "illegal_status",
                format!("{op} is not allowed: SIM {iccid} is RETIRED"),
            ))
        } else {
            Ok(())
        }
    };
    let need_subscription = |sim: &Sim| {
        sim.subscription_state.ok_or_else(|| {
            Failure::new(
                "subscription_not_found",
                format!("SIM {iccid} has no subscription"),
            )
        })
    };
    match op {
        Operation::RegisterSim => {
            if !created {
                return Err(Failure::new(
                    "iccid_exists",
                    format!("SIM {iccid} is already registered"),
                ));
            }
            set(&mut sim.imsi, a.imsi.as_ref().map(|v| v.to_string()));
            set(&mut sim.msisdn, a.msisdn.as_ref().map(|v| v.to_string()));
            set(&mut sim.eid, a.eid.as_ref().map(|v| v.to_string()));
            set(&mut sim.rate_plan, a.text("rate_plan").map(str::to_owned));
        }
        Operation::Activate | Operation::Suspend | Operation::Resume | Operation::Retire => {
            let target = match op {
                Operation::Activate | Operation::Resume => SimStatus::Activated,
                Operation::Suspend => SimStatus::Suspended,
                _ => SimStatus::Retired,
            };
            // `activate` starts service from INVENTORY; `resume` brings back a SUSPENDED SIM.
            let wrong_verb = match op {
                Operation::Activate => sim.status != SimStatus::Inventory,
                Operation::Resume => sim.status != SimStatus::Suspended,
                _ => false,
            };
            let next = if wrong_verb {
                Err(())
            } else {
                transition(sim.status, target).map_err(|_| ())
            };
            sim.status = next.map_err(|_| {
                Failure::new(
                    "illegal_status",
                    format!(
                        "cannot {op} SIM {iccid}: current status is {}",
                        sim.status.as_str()
                    ),
                )
            })?;
        }
        Operation::ChangeRatePlan => {
            need_not_retired(&sim)?;
            sim.rate_plan = a.text("rate_plan").map(str::to_owned);
        }
        Operation::AddSupplementaryPlan => {
            need_not_retired(&sim)?;
            let plan = a.text("plan").unwrap_or_default().to_owned();
            if sim.supplementary_plans.contains(&plan) {
                return Err(Failure::new(
                    "plan_exists",
                    format!("SIM {iccid} already has supplementary plan '{plan}'"),
                ));
            }
            sim.supplementary_plans.push(plan);
        }
        Operation::SetApnStatus => {
            need_not_retired(&sim)?;
            sim.apn_status = Some(match a.apn_status {
                Some(ApnStatus::Disabled) => "DISABLED".into(),
                _ => "ENABLED".into(),
            });
        }
        Operation::SetCustomFields => {
            for n in 1..=5 {
                if let Some(v) = a.text(&format!("custom_field_{n}")) {
                    sim.custom_fields.insert(n.to_string(), v.to_owned());
                }
            }
        }
        Operation::CreateSubscription => {
            need_not_retired(&sim)?;
            if sim.subscription_state.is_some() {
                return Err(Failure::new(
                    "subscription_exists",
                    format!("SIM {iccid} already has a subscription"),
                ));
            }
            sim.subscription_state = Some(SubscriptionState::BeforeFirstUse);
            set(&mut sim.msisdn, a.msisdn.as_ref().map(|v| v.to_string()));
            set(&mut sim.imsi, a.imsi.as_ref().map(|v| v.to_string()));
            set(&mut sim.rate_plan, a.text("rate_plan").map(str::to_owned));
            if sim.status == SimStatus::Inventory {
                sim.status = SimStatus::Activated;
            }
        }
        Operation::Block | Operation::Unblock => {
            need_subscription(&sim)?;
            let block = op == Operation::Block;
            if sim.blocked == block {
                let now = if block {
                    "already blocked"
                } else {
                    "not blocked"
                };
                return Err(Failure::new(
                    "illegal_status",
                    format!("cannot {op} SIM {iccid}: it is {now}"),
                ));
            }
            sim.blocked = block;
        }
        Operation::ChangeState => {
            let current = need_subscription(&sim)?;
            let target = a.state.unwrap_or(SubscriptionState::InUse);
            if !current.can_move_to(target) {
                return Err(Failure::new(
                    "illegal_status",
                    format!(
                        "cannot change state of SIM {iccid} to {}: current state is {}",
                        target.as_str(),
                        current.as_str()
                    ),
                ));
            }
            sim.subscription_state = Some(target);
        }
        Operation::AssignService | Operation::ModifyService | Operation::WithdrawService => {
            need_subscription(&sim)?;
            let service = a.text("service").unwrap_or_default().to_owned();
            let exists = sim.services.contains_key(&service);
            match (op, exists) {
                (Operation::AssignService, true) => {
                    return Err(Failure::new(
                        "service_exists",
                        format!("service '{service}' is already assigned"),
                    ));
                }
                (Operation::AssignService | Operation::ModifyService, _)
                    if op == Operation::AssignService || exists =>
                {
                    let params = Value::Object(a.parameters.clone().unwrap_or_default());
                    sim.services.insert(service, params);
                }
                (Operation::WithdrawService, true) => {
                    sim.services.remove(&service);
                }
                _ => {
                    return Err(Failure::new(
                        "service_not_found",
                        format!("service '{service}' is not assigned"),
                    ))
                }
            }
        }
        Operation::GenerateActivationCode => {
            if ctx.has_profile {
                return Err(Failure::new(
                    "iccid_exists",
                    format!("the iccid is exist in db, iccid:[{iccid}]"),
                ));
            }
            need_not_retired(&sim)?;
            let template = a.text("template").unwrap_or_default();
            if !(ctx.template_exists)(template) {
                return Err(Failure::new(
                    "template_not_found",
                    format!("template '{template}' does not exist"),
                ));
            }
            set(&mut sim.imsi, a.imsi.as_ref().map(|v| v.to_string()));
            set(&mut sim.msisdn, a.msisdn.as_ref().map(|v| v.to_string()));
            let matching_id = MatchingId::generate();
            let ac = ActivationCode::new(ctx.smdp_address, matching_id.clone(), a.cc.is_some());
            result =
                json!({"activation_code": ac.to_string(), "matching_id": matching_id.as_str()});
            profile = Some(NewProfile {
                matching_id: matching_id.as_str().to_owned(),
                activation_code: ac.to_string(),
                cc_hash: a.cc.as_deref().map(hash_confirmation_code),
                template: Some(template.to_owned()),
                state: "RELEASED",
                expires_at: a.expire_time,
                apn: None,
            });
        }
        Operation::ImportProfile => {
            if ctx.has_profile {
                return Err(Failure::new(
                    "iccid_exists",
                    format!("the iccid is exist in db, iccid:[{iccid}]"),
                ));
            }
            need_not_retired(&sim)?;
            set(&mut sim.eid, a.eid.as_ref().map(|v| v.to_string()));
            set(&mut sim.imei, a.imei.as_ref().map(|v| v.to_string()));
            let ac = a.text("ac").unwrap_or_default().to_owned();
            profile = Some(NewProfile {
                // Imported profiles carry the vendor's code; the matching ID is
                // always ours, so it is unique platform-wide even when two
                // imports carry the same code (a shared one would break the
                // profiles' unique index and jam the chunk).
                matching_id: MatchingId::generate().as_str().to_owned(),
                activation_code: ac,
                cc_hash: a.cc.as_deref().map(hash_confirmation_code),
                template: None,
                state: "RELEASED",
                expires_at: None,
                apn: a.text("apn").map(str::to_owned),
            });
        }
    }
    Ok(Outcome {
        sim,
        created,
        from_status,
        profile,
        result,
    })
}

/// Overwrite `slot` only when a new value was given.
fn set(slot: &mut Option<String>, value: Option<String>) {
    if value.is_some() {
        *slot = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::ValidationProfile;
    use crate::operation::parse_item;
    use proptest::prelude::*;
    use serde_json::Map;

    const ICCID: &str = "89860468152080349618";

    fn order(op: Operation, extra: Value) -> Order {
        let mut m: Map<String, Value> = extra.as_object().cloned().unwrap_or_default();
        m.insert("iccid".into(), json!(ICCID));
        parse_item(op, &m, ValidationProfile::Standard)
            .unwrap()
            .order
    }

    fn run(op: Operation, extra: Value, sim: Option<&Sim>) -> Result<Outcome, Failure> {
        let ctx = Context {
            smdp_address: "smdp.example.com",
            has_profile: false,
            template_exists: &|t| t == "tpl",
        };
        execute(&order(op, extra), sim, &ctx)
    }

    #[test]
    fn lifecycle_through_execute() {
        let s = run(
            Operation::RegisterSim,
            json!({"imsi": "460048867619618"}),
            None,
        )
        .unwrap();
        assert!(s.created);
        let a = run(Operation::Activate, json!({}), Some(&s.sim)).unwrap();
        assert_eq!(a.sim.status, SimStatus::Activated);
        assert!(a.status_changed());
        let e = run(Operation::Retire, json!({}), Some(&a.sim)).unwrap_err();
        assert_eq!(e.code, "illegal_status");
        assert!(
            e.reason.contains("ACTIVATED"),
            "names the current state: {}",
            e.reason
        );
        let e = run(Operation::Resume, json!({}), Some(&a.sim)).unwrap_err();
        assert_eq!(e.code, "illegal_status");
        assert_eq!(
            run(Operation::Activate, json!({}), None).unwrap_err().code,
            "sim_not_found"
        );
        assert_eq!(
            run(Operation::RegisterSim, json!({}), Some(&a.sim))
                .unwrap_err()
                .code,
            "iccid_exists"
        );
    }

    #[test]
    fn generate_needs_template_and_builds_ac() {
        assert_eq!(
            run(
                Operation::GenerateActivationCode,
                json!({"template": "nope"}),
                None
            )
            .unwrap_err()
            .code,
            "template_not_found"
        );
        let o = run(
            Operation::GenerateActivationCode,
            json!({"template": "tpl", "cc": "1234"}),
            None,
        )
        .unwrap();
        let p = o.profile.unwrap();
        assert!(
            p.activation_code.starts_with("1$smdp.example.com$")
                && p.activation_code.ends_with("$$1")
        );
        assert_eq!(p.cc_hash, Some(hash_confirmation_code("1234")));
        let ctx = Context {
            smdp_address: "x.y",
            has_profile: true,
            template_exists: &|_| true,
        };
        let dup = execute(
            &order(
                Operation::GenerateActivationCode,
                json!({"template": "tpl"}),
            ),
            None,
            &ctx,
        );
        assert_eq!(dup.unwrap_err().code, "iccid_exists");
    }

    #[test]
    fn imports_of_one_code_get_distinct_matching_ids() {
        let ac = "1$smdp.example.com$04386-AGYFT-A74Y8-3F815";
        let a = run(Operation::ImportProfile, json!({ "ac": ac }), None).unwrap();
        let b = run(Operation::ImportProfile, json!({ "ac": ac }), None).unwrap();
        let (a, b) = (a.profile.unwrap(), b.profile.unwrap());
        assert_eq!(
            (a.activation_code.as_str(), b.activation_code.as_str()),
            (ac, ac)
        );
        assert_ne!(a.matching_id, b.matching_id, "the unique index must hold");
    }

    #[test]
    fn subscription_rules() {
        let s = run(Operation::RegisterSim, json!({}), None).unwrap().sim;
        assert_eq!(
            run(Operation::Block, json!({}), Some(&s)).unwrap_err().code,
            "subscription_not_found"
        );
        let s = run(
            Operation::CreateSubscription,
            json!({"msisdn": "46708421488"}),
            Some(&s),
        )
        .unwrap()
        .sim;
        assert_eq!(
            s.subscription_state,
            Some(SubscriptionState::BeforeFirstUse)
        );
        let s = run(Operation::Block, json!({}), Some(&s)).unwrap().sim;
        assert_eq!(
            run(Operation::Block, json!({}), Some(&s)).unwrap_err().code,
            "illegal_status"
        );
        let s = run(Operation::ChangeState, json!({"state": "IN_USE"}), Some(&s))
            .unwrap()
            .sim;
        assert_eq!(
            run(
                Operation::ChangeState,
                json!({"state": "BEFORE_FIRST_USE"}),
                Some(&s)
            )
            .unwrap_err()
            .code,
            "illegal_status"
        );
        let s = run(
            Operation::AssignService,
            json!({"service": "data", "parameters": {"q": 1}}),
            Some(&s),
        )
        .unwrap()
        .sim;
        assert_eq!(
            run(
                Operation::AssignService,
                json!({"service": "data"}),
                Some(&s)
            )
            .unwrap_err()
            .code,
            "service_exists"
        );
        let s = run(
            Operation::ModifyService,
            json!({"service": "data", "parameters": {"q": 2}}),
            Some(&s),
        )
        .unwrap()
        .sim;
        assert_eq!(s.services["data"], json!({"q": 2}));
        let s = run(
            Operation::WithdrawService,
            json!({"service": "data"}),
            Some(&s),
        )
        .unwrap()
        .sim;
        assert_eq!(
            run(
                Operation::WithdrawService,
                json!({"service": "data"}),
                Some(&s)
            )
            .unwrap_err()
            .code,
            "service_not_found"
        );
        assert_eq!(
            run(
                Operation::ModifyService,
                json!({"service": "data"}),
                Some(&s)
            )
            .unwrap_err()
            .code,
            "service_not_found"
        );
    }

    proptest! {
        /// Random orders against a SIM never panic, and a failed order never changes the SIM.
        #[test]
        fn random_orders_keep_invariants(ops in proptest::collection::vec(1usize..13, 0..40)) {
            let mut sim = run(Operation::RegisterSim, json!({}), None).unwrap().sim;
            for i in ops {
                let op = Operation::ALL[i];
                let extra = match op {
                    Operation::ChangeRatePlan => json!({"rate_plan": "p"}),
                    Operation::AddSupplementaryPlan => json!({"plan": "s"}),
                    Operation::SetApnStatus => json!({"apn_status": "DISABLED"}),
                    Operation::ChangeState => json!({"state": "IN_USE"}),
                    _ => json!({}),
                };
                let before = sim.clone();
                match run(op, extra, Some(&sim)) {
                    Ok(o) => {
                        prop_assert!(before.status != SimStatus::Retired || o.sim.status == SimStatus::Retired);
                        sim = o.sim;
                    }
                    Err(_) => prop_assert_eq!(&sim, &before),
                }
            }
        }
    }
}
