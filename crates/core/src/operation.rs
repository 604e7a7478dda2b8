//! The operation catalogue and the item parser.
//!
//! Each [`Operation`] declares its fields once ([`Operation::fields`]); that
//! table drives parsing, CSV headers and documentation. [`parse_item`] turns a
//! loosely typed field map (JSON object or CSV row) into an [`Order`] or a
//! [`Rejection`] that names the field, a stable code and a reason.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::ids::{clip, Eid, Iccid, IdError, Imei, Imsi, Ki, Msisdn, Op, Opc, ValidationProfile};
use crate::lifecycle::SubscriptionState;

/// Every operation the engine can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Operation {
    /// Load a SIM into inventory as the SIM vendor delivered it.
    RegisterSim,
    /// INVENTORY → ACTIVATED.
    Activate,
    /// ACTIVATED → SUSPENDED.
    Suspend,
    /// SUSPENDED → ACTIVATED.
    Resume,
    /// SUSPENDED → RETIRED.
    Retire,
    /// Replace the basic rate plan.
    ChangeRatePlan,
    /// Add a supplementary plan.
    AddSupplementaryPlan,
    /// Enable or disable the APN.
    SetApnStatus,
    /// Set custom fields 1–5.
    SetCustomFields,
    /// Create the ECC subscription on a SIM.
    CreateSubscription,
    /// Set the blocked flag.
    Block,
    /// Clear the blocked flag.
    Unblock,
    /// Move the subscription state forward.
    ChangeState,
    /// Assign a service.
    AssignService,
    /// Withdraw a service.
    WithdrawService,
    /// Change a service's parameters.
    ModifyService,
    /// Create an eSIM profile with an SGP.22 activation code.
    GenerateActivationCode,
    /// Import an existing eSIM profile.
    ImportProfile,
}

/// How a field's value is parsed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldKind {
    /// An ICCID.
    Iccid,
    /// An IMSI.
    Imsi,
    /// An MSISDN.
    Msisdn,
    /// An EID.
    Eid,
    /// An IMEI.
    Imei,
    /// Ki: 32 hex, secret.
    Ki,
    /// OPc: 32 hex, secret.
    Opc,
    /// OP: 32 hex, secret (OPc is derived from it and Ki).
    Op,
    /// A PIN, PUK or ADM code: digits, secret, length in `min..=max`.
    SecretCode(usize, usize),
    /// Free text up to the given length.
    Text(usize),
    /// Free text up to the given length, secret (confirmation codes).
    SecretText(usize),
    /// `yyyy-MM-dd HH:mm:ss` (UTC) or RFC 3339.
    Time,
    /// A JSON object of at most 4 KiB.
    Object,
    /// `BEFORE_FIRST_USE` or `IN_USE`.
    SubscriptionState,
    /// `ENABLED` or `DISABLED`.
    ApnStatus,
    /// The SGP.22 state a generated profile starts in: `RELEASED` or `AVAILABLE`.
    InitialProfileState,
}

/// One field of an operation.
#[derive(Debug, Clone, Copy)]
pub struct FieldSpec {
    /// Field name in JSON, NDJSON and CSV.
    pub name: &'static str,
    /// How the value parses.
    pub kind: FieldKind,
    /// Whether the field must be present and non-empty.
    pub required: bool,
}

impl FieldSpec {
    /// Whether the value must be encrypted at rest and never shown.
    pub fn is_secret(&self) -> bool {
        matches!(
            self.kind,
            FieldKind::Ki
                | FieldKind::Opc
                | FieldKind::Op
                | FieldKind::SecretText(_)
                | FieldKind::SecretCode(..)
        )
    }
}

const fn req(name: &'static str, kind: FieldKind) -> FieldSpec {
    FieldSpec {
        name,
        kind,
        required: true,
    }
}
const fn opt(name: &'static str, kind: FieldKind) -> FieldSpec {
    FieldSpec {
        name,
        kind,
        required: false,
    }
}

const ICCID: FieldSpec = req("iccid", FieldKind::Iccid);
const REFERENCE: FieldSpec = opt("reference", FieldKind::Text(128));
const PLAN: FieldSpec = req("rate_plan", FieldKind::Text(64));

/// Names of fields whose values are secrets.
pub const SECRET_FIELDS: [&str; 9] = [
    "ki", "opc", "cc", "op", "pin1", "pin2", "puk1", "puk2", "adm1",
];

impl Operation {
    /// Every operation, in catalogue order.
    pub const ALL: [Operation; 18] = [
        Self::RegisterSim,
        Self::Activate,
        Self::Suspend,
        Self::Resume,
        Self::Retire,
        Self::ChangeRatePlan,
        Self::AddSupplementaryPlan,
        Self::SetApnStatus,
        Self::SetCustomFields,
        Self::CreateSubscription,
        Self::Block,
        Self::Unblock,
        Self::ChangeState,
        Self::AssignService,
        Self::WithdrawService,
        Self::ModifyService,
        Self::GenerateActivationCode,
        Self::ImportProfile,
    ];

    /// Wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RegisterSim => "register_sim",
            Self::Activate => "activate",
            Self::Suspend => "suspend",
            Self::Resume => "resume",
            Self::Retire => "retire",
            Self::ChangeRatePlan => "change_rate_plan",
            Self::AddSupplementaryPlan => "add_supplementary_plan",
            Self::SetApnStatus => "set_apn_status",
            Self::SetCustomFields => "set_custom_fields",
            Self::CreateSubscription => "create_subscription",
            Self::Block => "block",
            Self::Unblock => "unblock",
            Self::ChangeState => "change_state",
            Self::AssignService => "assign_service",
            Self::WithdrawService => "withdraw_service",
            Self::ModifyService => "modify_service",
            Self::GenerateActivationCode => "generate_activation_code",
            Self::ImportProfile => "import_profile",
        }
    }

    /// Parse a wire name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|o| o.as_str() == s)
    }

    /// The operation's fields, `iccid` first; also the CSV header.
    pub fn fields(self) -> &'static [FieldSpec] {
        use FieldKind as K;
        match self {
            Self::RegisterSim => {
                const {
                    &[
                        ICCID,
                        opt("imsi", K::Imsi),
                        opt("ki", K::Ki),
                        opt("opc", K::Opc),
                        opt("msisdn", K::Msisdn),
                        opt("eid", K::Eid),
                        opt("rate_plan", K::Text(64)),
                        REFERENCE,
                    ]
                }
            }
            Self::Activate
            | Self::Suspend
            | Self::Resume
            | Self::Retire
            | Self::Block
            | Self::Unblock => const { &[ICCID, REFERENCE] },
            Self::ChangeRatePlan => const { &[ICCID, PLAN, REFERENCE] },
            Self::AddSupplementaryPlan => const { &[ICCID, req("plan", K::Text(64)), REFERENCE] },
            Self::SetApnStatus => const { &[ICCID, req("apn_status", K::ApnStatus), REFERENCE] },
            Self::SetCustomFields => {
                const {
                    &[
                        ICCID,
                        opt("custom_field_1", K::Text(255)),
                        opt("custom_field_2", K::Text(255)),
                        opt("custom_field_3", K::Text(255)),
                        opt("custom_field_4", K::Text(255)),
                        opt("custom_field_5", K::Text(255)),
                        REFERENCE,
                    ]
                }
            }
            Self::CreateSubscription => {
                const {
                    &[
                        ICCID,
                        opt("msisdn", K::Msisdn),
                        opt("imsi", K::Imsi),
                        opt("rate_plan", K::Text(64)),
                        REFERENCE,
                    ]
                }
            }
            Self::ChangeState => const { &[ICCID, req("state", K::SubscriptionState), REFERENCE] },
            Self::AssignService | Self::ModifyService => {
                const {
                    &[
                        ICCID,
                        req("service", K::Text(64)),
                        opt("parameters", K::Object),
                        REFERENCE,
                    ]
                }
            }
            Self::WithdrawService => const { &[ICCID, req("service", K::Text(64)), REFERENCE] },
            Self::GenerateActivationCode => {
                const {
                    &[
                        ICCID,
                        req("template", K::Text(128)),
                        // The profile package is personalised with these (crates/saip).
                        req("imsi", K::Imsi),
                        req("ki", K::Ki),
                        opt("opc", K::Opc),
                        opt("op", K::Op),
                        opt("msisdn", K::Msisdn),
                        opt("impi", K::Text(127)),
                        opt("impu", K::Text(127)),
                        opt("c9", K::Text(255)),
                        opt("cc", K::SecretText(64)),
                        opt("expire_time", K::Time),
                        opt("profile_state", K::InitialProfileState),
                        opt("pin1", K::SecretCode(4, 8)),
                        opt("pin2", K::SecretCode(4, 8)),
                        opt("puk1", K::SecretCode(8, 8)),
                        opt("puk2", K::SecretCode(8, 8)),
                        opt("adm1", K::SecretCode(8, 8)),
                        REFERENCE,
                    ]
                }
            }
            Self::ImportProfile => {
                const {
                    &[
                        ICCID,
                        opt("eid", K::Eid),
                        opt("imei", K::Imei),
                        opt("ac", K::Text(255)),
                        opt("cc", K::SecretText(64)),
                        opt("apn", K::Text(100)),
                        REFERENCE,
                    ]
                }
            }
        }
    }

    /// Whether the operation creates the SIM when it does not exist yet.
    pub fn creates_sim(self) -> bool {
        matches!(
            self,
            Self::RegisterSim
                | Self::GenerateActivationCode
                | Self::ImportProfile
                | Self::CreateSubscription
        )
    }

    /// Whether executing the operation reads the stored profile templates
    /// (it personalises a profile package from one).
    pub fn reads_templates(self) -> bool {
        self == Self::GenerateActivationCode
    }
}

impl std::fmt::Display for Operation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an item was refused at submission.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Rejection {
    /// The offending field, if one is to blame.
    pub field: Option<String>,
    /// Stable machine code, e.g. `iccid_luhn`, `missing_field`, `unknown_field`.
    pub code: String,
    /// Human reason.
    pub reason: String,
}

impl Rejection {
    /// A rejection blaming `field`.
    pub fn field(field: &str, code: &str, reason: impl Into<String>) -> Self {
        Self {
            field: Some(field.to_owned()),
            code: code.to_owned(),
            reason: reason.into(),
        }
    }
    fn from_id(field: &str, e: IdError) -> Self {
        Self {
            field: Some(field.to_owned()),
            code: e.code.to_owned(),
            reason: e.reason,
        }
    }
}

/// APN status values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApnStatus {
    /// Data enabled.
    Enabled,
    /// Data disabled.
    Disabled,
}

/// Parsed, typed arguments of an order. Which are present is fixed by the
/// operation's field table, so required fields are always `Some`.
#[derive(Debug, Clone, Default)]
pub struct Args {
    /// IMSI.
    pub imsi: Option<Imsi>,
    /// MSISDN.
    pub msisdn: Option<Msisdn>,
    /// EID.
    pub eid: Option<Eid>,
    /// IMEI.
    pub imei: Option<Imei>,
    /// Ki (secret).
    pub ki: Option<Ki>,
    /// OPc (secret).
    pub opc: Option<Opc>,
    /// OP (secret); OPc is derived from it (at most one of `opc` and `op`).
    pub op: Option<Op>,
    /// Confirmation code (secret).
    pub cc: Option<String>,
    /// Expiry of a generated profile.
    pub expire_time: Option<OffsetDateTime>,
    /// Subscription state target.
    pub state: Option<SubscriptionState>,
    /// APN status target.
    pub apn_status: Option<ApnStatus>,
    /// Service parameters.
    pub parameters: Option<Map<String, Value>>,
    /// Initial SGP.22 state of a generated profile (default RELEASED).
    pub profile_state: Option<crate::profile::ProfileState>,
    /// Every other text field by name (rate_plan, plan, service, template, custom_field_N, ...).
    pub text: std::collections::BTreeMap<&'static str, String>,
}

impl Args {
    /// A text field by name.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.text.get(name).map(String::as_str)
    }
}

/// A valid order: one operation on one ICCID.
#[derive(Debug, Clone)]
pub struct Order {
    /// What to do.
    pub operation: Operation,
    /// To which SIM.
    pub iccid: Iccid,
    /// With which arguments.
    pub args: Args,
}

/// A parsed item: the order, plus its accepted fields split into what may be
/// shown and what must be encrypted.
#[derive(Debug, Clone)]
pub struct ParsedItem {
    /// The order.
    pub order: Order,
    /// Accepted non-secret fields, trimmed, as given.
    pub public: Map<String, Value>,
    /// Accepted secret fields (ki, opc, cc); encrypt before storing.
    pub secret: Map<String, Value>,
}

const MAX_OBJECT_BYTES: usize = 4096;

/// Parse one item's fields for `operation`.
///
/// Empty strings and nulls count as absent. Unknown fields are refused,
/// naming the field, so a misspelt column never silently drops data.
pub fn parse_item(
    operation: Operation,
    fields: &Map<String, Value>,
    profile: ValidationProfile,
) -> Result<ParsedItem, Rejection> {
    let specs = operation.fields();
    if let Some(unknown) = fields
        .keys()
        .find(|k| !specs.iter().any(|s| s.name == k.as_str()))
    {
        return Err(Rejection::field(
            &clip(unknown),
            "unknown_field",
            format!(
                "field '{}' is not a parameter of {}",
                clip(unknown),
                operation
            ),
        ));
    }
    let mut iccid = None;
    let mut args = Args::default();
    let mut public = Map::new();
    let mut secret = Map::new();
    for spec in specs {
        let raw = match fields.get(spec.name) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) if s.trim().is_empty() => None,
            Some(v) => Some(v),
        };
        let Some(raw) = raw else {
            if spec.required {
                return Err(Rejection::field(
                    spec.name,
                    "missing_field",
                    format!("{} is required for {}", spec.name, operation),
                ));
            }
            continue;
        };
        let stored = parse_field(spec, raw, profile, &mut iccid, &mut args)?;
        if spec.is_secret() {
            secret.insert(spec.name.to_owned(), stored);
        } else {
            public.insert(spec.name.to_owned(), stored);
        }
    }
    if args.opc.is_some() && args.op.is_some() {
        return Err(Rejection::field(
            "op",
            "conflicting_fields",
            "give either opc or op, not both",
        ));
    }
    let iccid =
        iccid.ok_or_else(|| Rejection::field("iccid", "missing_field", "iccid is required"))?;
    Ok(ParsedItem {
        order: Order {
            operation,
            iccid,
            args,
        },
        public,
        secret,
    })
}

/// Parse one present field into `args`; returns the value to store.
fn parse_field(
    spec: &FieldSpec,
    raw: &Value,
    profile: ValidationProfile,
    iccid: &mut Option<Iccid>,
    args: &mut Args,
) -> Result<Value, Rejection> {
    let name = spec.name;
    if spec.kind == FieldKind::Object {
        let Value::Object(obj) = raw else {
            return Err(Rejection::field(
                name,
                "invalid_type",
                format!("{name} must be a JSON object"),
            ));
        };
        let size = serde_json::to_string(obj)
            .map(|s| s.len())
            .unwrap_or(usize::MAX);
        if size > MAX_OBJECT_BYTES {
            return Err(Rejection::field(
                name,
                "too_long",
                format!("{name} must be at most {MAX_OBJECT_BYTES} bytes, got {size}"),
            ));
        }
        args.parameters = Some(obj.clone());
        return Ok(raw.clone());
    }
    let Value::String(s) = raw else {
        return Err(Rejection::field(
            name,
            "invalid_type",
            format!("{name} must be a string"),
        ));
    };
    let s = s.trim();
    let id = |r: Result<(), IdError>| r.map_err(|e| Rejection::from_id(name, e));
    match spec.kind {
        FieldKind::Iccid => id(Iccid::parse(s, profile).map(|v| *iccid = Some(v)))?,
        FieldKind::Imsi => id(Imsi::parse(s).map(|v| args.imsi = Some(v)))?,
        FieldKind::Msisdn => id(Msisdn::parse(s).map(|v| args.msisdn = Some(v)))?,
        FieldKind::Eid => id(Eid::parse(s).map(|v| args.eid = Some(v)))?,
        FieldKind::Imei => id(Imei::parse(s, profile).map(|v| args.imei = Some(v)))?,
        FieldKind::Ki => id(Ki::parse(s).map(|v| args.ki = Some(v)))?,
        FieldKind::Opc => id(Opc::parse(s).map(|v| args.opc = Some(v)))?,
        FieldKind::Op => id(Op::parse(s).map(|v| args.op = Some(v)))?,
        FieldKind::SecretCode(min, max) => {
            // Never echo the value: it is a secret.
            if !s.bytes().all(|b| b.is_ascii_digit()) || s.len() < min || s.len() > max {
                let len = if min == max {
                    format!("{min}")
                } else {
                    format!("{min} to {max}")
                };
                return Err(Rejection::field(
                    name,
                    "invalid_code",
                    format!("{name} must be {len} digits"),
                ));
            }
            args.text.insert(name, s.to_owned());
        }
        FieldKind::Text(max) | FieldKind::SecretText(max) => {
            let len = s.chars().count();
            if len > max {
                return Err(Rejection::field(
                    name,
                    "too_long",
                    format!("{name} must be at most {max} characters, got {len}"),
                ));
            }
            if s.chars().any(char::is_control) {
                return Err(Rejection::field(
                    name,
                    "invalid_characters",
                    format!("{name} must not contain control characters"),
                ));
            }
            if name == "cc" {
                args.cc = Some(s.to_owned());
            } else {
                args.text.insert(name, s.to_owned());
            }
        }
        FieldKind::Time => {
            args.expire_time = Some(parse_time(s).ok_or_else(|| {
                Rejection::field(
                    name,
                    "invalid_time",
                    format!(
                        "{name} must be 'yyyy-MM-dd HH:mm:ss' (UTC) or RFC 3339, got '{}'",
                        clip(s)
                    ),
                )
            })?);
        }
        FieldKind::SubscriptionState => {
            args.state = Some(SubscriptionState::parse(s).ok_or_else(|| {
                Rejection::field(
                    name,
                    "invalid_value",
                    format!(
                        "{name} must be BEFORE_FIRST_USE or IN_USE, got '{}'",
                        clip(s)
                    ),
                )
            })?);
        }
        FieldKind::ApnStatus => {
            args.apn_status = Some(match s {
                "ENABLED" => ApnStatus::Enabled,
                "DISABLED" => ApnStatus::Disabled,
                _ => {
                    return Err(Rejection::field(
                        name,
                        "invalid_value",
                        format!("{name} must be ENABLED or DISABLED, got '{}'", clip(s)),
                    ));
                }
            });
        }
        FieldKind::InitialProfileState => {
            use crate::profile::ProfileState;
            args.profile_state = Some(match s {
                "RELEASED" => ProfileState::Released,
                "AVAILABLE" => ProfileState::Available,
                _ => {
                    return Err(Rejection::field(
                        name,
                        "invalid_value",
                        format!("{name} must be RELEASED or AVAILABLE, got '{}'", clip(s)),
                    ));
                }
            });
        }
        FieldKind::Object => unreachable!("handled above"),
    }
    Ok(Value::String(s.to_owned()))
}

/// Parse `yyyy-MM-dd HH:mm:ss` (taken as UTC) or RFC 3339.
pub fn parse_time(s: &str) -> Option<OffsetDateTime> {
    use time::format_description::well_known::Rfc3339;
    use time::macros::format_description;
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let fmt = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s, fmt)
        .ok()
        .map(|p| p.assume_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    const STD: ValidationProfile = ValidationProfile::Standard;

    fn map(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn names_roundtrip_and_iccid_first() {
        for op in Operation::ALL {
            assert_eq!(Operation::parse(op.as_str()), Some(op));
            assert_eq!(op.fields()[0].name, "iccid");
        }
        assert_eq!(Operation::parse("explode"), None);
    }

    #[test]
    fn activation_codes_take_op_or_opc_and_secret_codes() {
        let base = json!({"iccid": "89860468152080349618", "template": "t", "imsi": "001010000000001",
                          "ki": "465b5ce8b199b49faa5f0a2ee238a6bc"});
        let with = |extra: Value| {
            let mut m = map(base.clone());
            m.extend(map(extra));
            parse_item(Operation::GenerateActivationCode, &m, STD)
        };
        let ok = with(
            json!({"op": "cdc202d5123e20f62b6d676ac72cb318", "pin1": "1234", "puk1": "12345678",
                             "adm1": "87654321"}),
        )
        .unwrap();
        assert!(ok.order.args.op.is_some() && ok.order.args.opc.is_none());
        for f in ["op", "pin1", "puk1", "adm1"] {
            assert!(
                ok.secret.contains_key(f) && !ok.public.contains_key(f),
                "{f}"
            );
        }
        let both = with(json!({"op": "cdc202d5123e20f62b6d676ac72cb318",
                               "opc": "cd63cb71954a9f4e48a5994e37a02baf"}))
        .unwrap_err();
        assert_eq!(
            (both.field.as_deref(), both.code.as_str()),
            (Some("op"), "conflicting_fields")
        );
        let bad = with(json!({"pin2": "12a4"})).unwrap_err();
        assert_eq!(
            (bad.field.as_deref(), bad.code.as_str()),
            (Some("pin2"), "invalid_code")
        );
        assert!(!bad.reason.contains("12a4"), "a code is never echoed");
        let short = with(json!({"puk2": "1234"})).unwrap_err();
        assert_eq!(short.reason, "puk2 must be 8 digits");
        let mut no_ki = map(base.clone());
        no_ki.remove("ki");
        let e = parse_item(Operation::GenerateActivationCode, &no_ki, STD).unwrap_err();
        assert_eq!(
            (e.field.as_deref(), e.code.as_str()),
            (Some("ki"), "missing_field")
        );
    }

    #[test]
    fn parses_register_and_splits_secrets() {
        let item = parse_item(
            Operation::RegisterSim,
            &map(json!({"iccid": "89860468152080349618", "imsi": "460048867619618",
                        "ki": "465b5ce8b199b49faa5f0a2ee238a6bc", "opc": "", "msisdn": "+4670842148"})),
            STD,
        )
        .unwrap();
        assert!(item.secret.contains_key("ki"));
        assert!(!item.public.contains_key("ki"));
        assert!(!item.public.contains_key("opc"), "empty counts as absent");
        assert_eq!(item.order.args.msisdn.unwrap().as_str(), "4670842148");
    }

    #[test]
    fn rejections_name_field_and_code() {
        let cases = [
            (json!({}), "iccid", "missing_field"),
            (json!({"iccid": 8986}), "iccid", "invalid_type"),
            (json!({"iccid": "123"}), "iccid", "iccid_invalid_length"),
            (
                json!({"iccid": "89860468152080349618", "rate_plan": "x"}),
                "rate_plan",
                "unknown_field",
            ),
        ];
        for (input, field, code) in cases {
            let r = parse_item(Operation::Activate, &map(input), STD).unwrap_err();
            assert_eq!((r.field.as_deref(), r.code.as_str()), (Some(field), code));
        }
        let r = parse_item(
            Operation::ChangeRatePlan,
            &map(json!({"iccid": "89860468152080349618"})),
            STD,
        )
        .unwrap_err();
        assert_eq!(
            (r.field.as_deref(), r.code.as_str()),
            (Some("rate_plan"), "missing_field")
        );
        let long = "x".repeat(10 * 1024 * 1024);
        let r = parse_item(
            Operation::ChangeRatePlan,
            &map(json!({"iccid": "89860468152080349618", "rate_plan": long})),
            STD,
        )
        .unwrap_err();
        assert_eq!(r.code, "too_long");
        assert!(r.reason.len() < 200, "reason must not echo the input");
    }

    #[test]
    fn sql_metacharacters_are_plain_text() {
        let item = parse_item(
            Operation::ChangeRatePlan,
            &map(json!({"iccid": "89860468152080349618", "rate_plan": "x'); DROP TABLE sims;--"})),
            STD,
        )
        .unwrap();
        assert_eq!(
            item.order.args.text("rate_plan"),
            Some("x'); DROP TABLE sims;--")
        );
    }

    #[test]
    fn times() {
        assert!(parse_time("2025-01-02 03:04:05").is_some());
        assert!(parse_time("2025-01-02T03:04:05+02:00").is_some());
        assert!(parse_time("02/01/2025").is_none());
    }

    proptest! {
        #[test]
        fn parser_never_panics(op in 0usize..18, keys in proptest::collection::vec("[a-z_0-9]{1,12}", 0..6), vals in proptest::collection::vec("\\PC{0,30}", 0..6)) {
            let mut m = Map::new();
            for (k, v) in keys.iter().zip(vals.iter()) {
                m.insert(k.clone(), Value::String(v.clone()));
            }
            let _ = parse_item(Operation::ALL[op], &m, ValidationProfile::Strict);
        }
    }
}
