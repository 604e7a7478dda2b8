//! One ECC API request (`method`, `resource`, `body`) translated into a core
//! operation and its fields.
//!
//! Supported, as in the ECC batch table:
//!
//! | request | method | resource |
//! |---|---|---|
//! | create subscription | POST | `subscriptions` |
//! | block / unblock (`{"blocked": bool}`) | PATCH | `subscriptions/{type}:{id}` |
//! | change state (`{"state": "IN_USE"}`) | PATCH | `subscriptions/{type}:{id}` |
//! | assign a service (`{"id": ..., params}`) | POST | `subscriptions/{type}:{id}/services` |
//! | withdraw a service | DELETE | `subscriptions/{type}:{id}/services[/{sid}]` |
//! | modify a service | PATCH | `subscriptions/{type}:{id}/services[/{sid}]` |
//!
//! `{type}` is `iccid`, `msisdn` or `imsi`. A refusal is the exact `info`
//! text shown for a REJECTED request (e.g. `Missing id parameter in body`).

use serde_json::{Map, Value};
use simbatch_core::Operation;

/// How a resource names its subscription.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `iccid:<iccid>`.
    Iccid(String),
    /// `msisdn:<msisdn>`.
    Msisdn(String),
    /// `imsi:<imsi>`.
    Imsi(String),
}

impl Selector {
    /// Parse `{type}:{id}`; the refusal names what is wrong.
    pub fn parse(s: &str) -> Result<Self, String> {
        let (kind, id) = s
            .split_once(':')
            .ok_or_else(|| format!("Invalid subscription reference '{}': use {{type}}:{{id}} with type iccid, msisdn or imsi", clip(s)))?;
        let id = id.trim();
        if id.is_empty()
            || id.len() > 32
            || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'+')
        {
            return Err(format!("Invalid {} '{}'", clip(kind), clip(id)));
        }
        let id = id.trim_start_matches('+').to_owned();
        match kind {
            "iccid" => Ok(Self::Iccid(id)),
            "msisdn" => Ok(Self::Msisdn(id)),
            "imsi" => Ok(Self::Imsi(id)),
            other => Err(format!(
                "Invalid subscription reference type '{}': use iccid, msisdn or imsi",
                clip(other)
            )),
        }
    }
}

/// A translated request.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    /// The core operation.
    pub operation: Operation,
    /// The subscription the resource names (None for create: its iccid is in the body).
    pub selector: Option<Selector>,
    /// Core fields (without `iccid`, except for create, where it comes from the body).
    pub fields: Map<String, Value>,
}

/// At most this many characters of client text in a message.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The path segments of a resource, without a leading `/` or `/ecc/v1/`.
fn segments(resource: &str) -> Vec<&str> {
    let r = resource.trim().trim_start_matches('/');
    let r = r.strip_prefix("ecc/v1/").unwrap_or(r);
    r.trim_end_matches('/').split('/').collect()
}

fn unsupported(method: &str, resource: &str) -> String {
    format!(
        "Unsupported API request: {} {}",
        clip(method),
        clip(resource)
    )
}

/// Refuse any body parameter other than `allowed`.
fn only(body: &Map<String, Value>, allowed: &[&str]) -> Result<(), String> {
    match body.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(format!("Unknown parameter {} in body", clip(k))),
        None => Ok(()),
    }
}

/// The service id from a path segment or the body's `id`.
fn service_id(path_sid: Option<&str>, body: &Map<String, Value>) -> Result<String, String> {
    if let Some(sid) = path_sid.filter(|s| !s.is_empty()) {
        return Ok(sid.to_owned());
    }
    match body.get("id") {
        None | Some(Value::Null) => Err("Missing id parameter in body".into()),
        Some(Value::String(s)) if s.trim().is_empty() => Err("Missing id parameter in body".into()),
        Some(Value::String(s)) => Ok(s.trim().to_owned()),
        Some(_) => Err("Invalid id parameter in body: must be a string".into()),
    }
}

/// Translate one API request.
pub fn translate(
    method: &str,
    resource: &str,
    body: &Map<String, Value>,
) -> Result<Translated, String> {
    let method_uc = method.trim().to_ascii_uppercase();
    let segs = segments(resource);
    if segs.first() != Some(&"subscriptions") {
        return Err(unsupported(method, resource));
    }
    let mut fields = Map::new();
    let (operation, selector) = match (method_uc.as_str(), segs.as_slice()) {
        ("POST", ["subscriptions"]) => {
            only(body, &["iccid", "msisdn", "imsi", "subscription-type"])?;
            if !body.contains_key("iccid") {
                return Err("Missing iccid parameter in body".into());
            }
            for (k, v) in body {
                let name = if k == "subscription-type" {
                    "rate_plan"
                } else {
                    k.as_str()
                };
                fields.insert(name.to_owned(), v.clone());
            }
            (Operation::CreateSubscription, None)
        }
        ("PATCH", ["subscriptions", sel]) => {
            let sel = Selector::parse(sel)?;
            only(body, &["blocked", "state"])?;
            match (body.get("blocked"), body.get("state")) {
                (Some(_), Some(_)) => {
                    return Err(
                        "Only one of blocked and state can be changed in one request".into(),
                    )
                }
                (Some(Value::Bool(true)), None) => (Operation::Block, Some(sel)),
                (Some(Value::Bool(false)), None) => (Operation::Unblock, Some(sel)),
                (Some(_), None) => {
                    return Err("Invalid blocked parameter in body: must be true or false".into())
                }
                (None, Some(state)) => {
                    fields.insert("state".into(), state.clone());
                    (Operation::ChangeState, Some(sel))
                }
                (None, None) => return Err("Missing blocked or state parameter in body".into()),
            }
        }
        ("POST", ["subscriptions", sel, "services"]) => {
            let sel = Selector::parse(sel)?;
            let mut body = body.clone();
            // The single-request form wraps services in a list; a batch request carries one.
            if let Some(list) = body.remove("services") {
                match list {
                    Value::Array(mut l) if l.len() == 1 && body.is_empty() => match l.remove(0) {
                        Value::Object(o) => body = o,
                        _ => return Err(
                            "Invalid services parameter in body: each service must be an object"
                                .into(),
                        ),
                    },
                    _ => return Err(
                        "Invalid services parameter in body: a batch request assigns one service"
                            .into(),
                    ),
                }
            }
            let id = service_id(None, &body)?;
            body.remove("id");
            fields.insert("service".into(), Value::String(id));
            fields.insert("parameters".into(), Value::Object(body));
            (Operation::AssignService, Some(sel))
        }
        ("PATCH", ["subscriptions", sel, "services", rest @ ..]) if rest.len() <= 1 => {
            let sel = Selector::parse(sel)?;
            let id = service_id(rest.first().copied(), body)?;
            let mut params = body.clone();
            params.remove("id");
            if params.is_empty() {
                return Err(
                    "Missing service parameters in body: name the attributes to change".into(),
                );
            }
            fields.insert("service".into(), Value::String(id));
            fields.insert("parameters".into(), Value::Object(params));
            (Operation::ModifyService, Some(sel))
        }
        ("DELETE", ["subscriptions", sel, "services", rest @ ..]) if rest.len() <= 1 => {
            let sel = Selector::parse(sel)?;
            only(body, &["id"])?;
            let id = service_id(rest.first().copied(), body)?;
            fields.insert("service".into(), Value::String(id));
            (Operation::WithdrawService, Some(sel))
        }
        _ => return Err(unsupported(method, resource)),
    };
    Ok(Translated {
        operation,
        selector,
        fields,
    })
}

/// The ECC name of a core field, for messages.
pub fn ecc_name(core_field: &str) -> &str {
    match core_field {
        "service" => "id",
        "rate_plan" => "subscription-type",
        "parameters" => "service parameters",
        "reference" => "requestid",
        other => other,
    }
}

/// The `info` text for a core rejection of a translated request.
pub fn rejection_info(field: Option<&str>, code: &str, reason: &str) -> String {
    let Some(field) = field else {
        return reason.to_owned();
    };
    let name = ecc_name(field);
    match code {
        "missing_field" => format!("Missing {name} parameter in body"),
        "unknown_field" => format!("Unknown parameter {name} in body"),
        _ => {
            let reason = if name == field {
                reason.to_owned()
            } else {
                reason.replace(field, name)
            };
            format!("Invalid {name} parameter in body: {reason}")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn t(method: &str, resource: &str, body: Value) -> Result<Translated, String> {
        translate(method, resource, body.as_object().unwrap())
    }

    #[test]
    fn the_seed_requests() {
        let c = t(
            "POST",
            "subscriptions",
            json!({"msisdn": "46708421499", "iccid": "89461177710001700003"}),
        )
        .unwrap();
        assert_eq!(c.operation, Operation::CreateSubscription);
        assert_eq!(c.fields["iccid"], "89461177710001700003");
        let b = t(
            "PATCH",
            "subscriptions/msisdn:46708421488",
            json!({"blocked": true}),
        )
        .unwrap();
        assert_eq!(b.operation, Operation::Block);
        assert_eq!(b.selector, Some(Selector::Msisdn("46708421488".into())));
        let a = t(
            "POST",
            "subscriptions/msisdn:46708421466/services",
            json!({"id": "Data1G", "limit": "100"}),
        )
        .unwrap();
        assert_eq!(a.operation, Operation::AssignService);
        assert_eq!(a.fields["service"], "Data1G");
        assert_eq!(a.fields["parameters"], json!({"limit": "100"}));
        assert_eq!(
            t(
                "POST",
                "subscriptions/msisdn:46708421477/services",
                json!({"limit": 100})
            ),
            Err("Missing id parameter in body".into())
        );
    }

    #[test]
    fn other_requests_and_refusals() {
        assert_eq!(
            t(
                "PATCH",
                "subscriptions/iccid:89461177710001700003",
                json!({"blocked": false})
            )
            .unwrap()
            .operation,
            Operation::Unblock
        );
        let s = t(
            "patch",
            "/ecc/v1/subscriptions/imsi:244141000170000",
            json!({"state": "IN_USE"}),
        )
        .unwrap();
        assert_eq!(
            (s.operation, s.fields["state"].clone()),
            (Operation::ChangeState, json!("IN_USE"))
        );
        let w = t(
            "DELETE",
            "subscriptions/msisdn:1/services/Data5G",
            json!({}),
        )
        .unwrap();
        assert_eq!(
            (w.operation, w.fields["service"].clone()),
            (Operation::WithdrawService, json!("Data5G"))
        );
        let m = t(
            "PATCH",
            "subscriptions/msisdn:1/services/cfnr",
            json!({"forward-number": "467012312345"}),
        )
        .unwrap();
        assert_eq!(m.operation, Operation::ModifyService);
        for (method, res, body, info) in [
            (
                "GET",
                "subscriptions",
                json!({}),
                "Unsupported API request: GET subscriptions",
            ),
            (
                "POST",
                "orders",
                json!({}),
                "Unsupported API request: POST orders",
            ),
            (
                "PATCH",
                "subscriptions/msisdn:1",
                json!({}),
                "Missing blocked or state parameter in body",
            ),
            (
                "PATCH",
                "subscriptions/msisdn:1",
                json!({"blocked": "yes"}),
                "Invalid blocked parameter in body: must be true or false",
            ),
            (
                "PATCH",
                "subscriptions/msisdn:1",
                json!({"blocked": true, "state": "IN_USE"}),
                "Only one of blocked and state can be changed in one request",
            ),
            (
                "PATCH",
                "subscriptions/phone:1",
                json!({"blocked": true}),
                "Invalid subscription reference type 'phone': use iccid, msisdn or imsi",
            ),
            (
                "POST",
                "subscriptions",
                json!({"msisdn": "1"}),
                "Missing iccid parameter in body",
            ),
            (
                "POST",
                "subscriptions",
                json!({"iccid": "1", "colour": "red"}),
                "Unknown parameter colour in body",
            ),
            (
                "POST",
                "subscriptions/msisdn:1/services",
                json!({"id": 7}),
                "Invalid id parameter in body: must be a string",
            ),
        ] {
            assert_eq!(t(method, res, body), Err(info.to_owned()), "{method} {res}");
        }
    }

    #[test]
    fn infos_use_ecc_names() {
        assert_eq!(
            rejection_info(Some("service"), "missing_field", "x"),
            "Missing id parameter in body"
        );
        assert_eq!(
            rejection_info(
                Some("iccid"),
                "iccid_invalid_length",
                "iccid must have 19 or 20 digits"
            ),
            "Invalid iccid parameter in body: iccid must have 19 or 20 digits"
        );
    }
}
