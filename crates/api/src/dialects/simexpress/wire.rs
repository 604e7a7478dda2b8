//! sim.express wire shapes and our failure codes.
//!
//! Input follows ARCHITECTURE §6: the list is `profileItems` (the example's
//! spelling) or `prfileItems` (the table's); item keys are matched ignoring
//! case (the vendor's own echo mixes `Iccid` and `iccid`); values are trimmed.
//! Output carries `code` and `errorCode`, `resultItems` and `resultList`.
//!
//! Like the vendor, a refused request is HTTP 200 with a non-"0" `code`;
//! only an unknown path (404) and a server fault (500) use another status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Map, Value};
use simbatch_core::{ItemStatus, Rejection};
use simbatch_engine::service::ServiceError;
use simbatch_store::ItemRecord;

/// Most items in one request (the vendor: "less than 1,000").
pub const MAX_ITEMS: usize = 999;
/// Largest body accepted.
pub const BODY_LIMIT: usize = 4 * 1024 * 1024;
/// The item fields, lower-case.
const FIELDS: [&str; 6] = ["iccid", "eid", "imei", "ac", "cc", "apn"];
/// The fields sim.express makes mandatory.
const MANDATORY: [&str; 5] = ["iccid", "eid", "imei", "ac", "apn"];

/// Our stable codes for a refused request (see `docs/dialects/simexpress.md`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Code {
    /// 40001: the body is not a JSON object.
    MalformedBody,
    /// 40002: the item list is missing, not a list, or holds a non-object.
    InvalidItems,
    /// 40003: the item list is empty.
    EmptyList,
    /// 40004: 1000 items or more.
    TooManyItems,
    /// 40005: the body exceeds the size limit.
    BodyTooLarge,
    /// 40101: no API key, or an unknown or revoked one.
    Unauthorized,
    /// 40400: no such path under `/simexpress`.
    UnknownPath,
    /// 42901: the tenant is over its rate limit (HTTP 429, `Retry-After`).
    RateLimited,
    /// 50001: a server fault (HTTP 500).
    Internal,
    /// 50401: the batch did not finish in time; its id is in `errorMsg`.
    Timeout,
}

impl Code {
    /// The wire code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MalformedBody => "40001",
            Self::InvalidItems => "40002",
            Self::EmptyList => "40003",
            Self::TooManyItems => "40004",
            Self::BodyTooLarge => "40005",
            Self::Unauthorized => "40101",
            Self::UnknownPath => "40400",
            Self::RateLimited => "42901",
            Self::Internal => "50001",
            Self::Timeout => "50401",
        }
    }
}

/// A refused request.
#[derive(Debug, Clone)]
pub struct Failure {
    /// Stable code.
    pub code: Code,
    /// Clear message.
    pub msg: String,
}

impl Failure {
    /// A refusal.
    pub fn new(code: Code, msg: impl Into<String>) -> Self {
        Self {
            code,
            msg: msg.into(),
        }
    }
    /// A server fault.
    pub fn internal() -> Self {
        Self::new(
            Code::Internal,
            "an internal error occurred; it has been logged",
        )
    }
}

impl From<ServiceError> for Failure {
    fn from(e: ServiceError) -> Self {
        match e {
            ServiceError::EmptyBatch => Self::new(Code::EmptyList, "profileItems is empty"),
            ServiceError::TooManyItems { max } => Self::new(
                Code::TooManyItems,
                format!(
                    "profileItems must hold fewer than 1000 items (this deployment: at most {max})"
                ),
            ),
            ServiceError::InvalidRequest { message, .. }
            | ServiceError::Refused { message, .. } => Self::new(Code::InvalidItems, message),
            ServiceError::NotFound(_) | ServiceError::Conflict(_) | ServiceError::Internal => {
                Self::internal()
            }
        }
    }
}

impl IntoResponse for Failure {
    fn into_response(self) -> Response {
        let status = match self.code {
            Code::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            Code::UnknownPath => StatusCode::NOT_FOUND,
            Code::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::OK,
        };
        let code = self.code.as_str();
        let body = json!({
            "code": code,
            "errorCode": code,
            "errorMsg": self.msg,
            "profileItems": [],
            "resultItems": [],
            "resultList": [],
        });
        (status, Json(body)).into_response()
    }
}

/// One item: its `import_profile` fields, or why it was refused here (with
/// the ICCID as given).
pub type ItemInput = Result<Map<String, Value>, (String, Rejection)>;

/// A read request.
#[derive(Debug)]
pub struct ImportRequest {
    /// The items as sent, echoed back.
    pub echo: Vec<Value>,
    /// The items, in request order.
    pub items: Vec<ItemInput>,
}

/// Read a request body.
pub fn parse(body: &[u8]) -> Result<ImportRequest, Failure> {
    let obj = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            return Err(Failure::new(
                Code::MalformedBody,
                "the body must be a JSON object",
            ))
        }
        Err(e) => {
            return Err(Failure::new(
                Code::MalformedBody,
                format!("the body is not valid JSON: {e}"),
            ))
        }
    };
    let list = match obj.get("profileItems").or_else(|| obj.get("prfileItems")) {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(Failure::new(
                Code::InvalidItems,
                "profileItems is mandatory",
            ))
        }
        Some(_) => {
            return Err(Failure::new(
                Code::InvalidItems,
                "profileItems must be a list",
            ))
        }
    };
    if list.is_empty() {
        return Err(Failure::new(Code::EmptyList, "profileItems is empty"));
    }
    if list.len() > MAX_ITEMS {
        return Err(Failure::new(
            Code::TooManyItems,
            format!(
                "profileItems must hold fewer than 1000 items, got {}",
                list.len()
            ),
        ));
    }
    let mut items = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(Failure::new(
                Code::InvalidItems,
                format!("profileItems[{i}] must be an object"),
            ));
        };
        items.push(item(m));
    }
    Ok(ImportRequest {
        echo: list.iter().map(redacted).collect(),
        items,
    })
}

/// What replaces a confirmation code in the echo: secrets are never shown.
pub const REDACTED: &str = "********";

/// An item as echoed: as sent, except a non-empty `cc` (any key case).
fn redacted(item: &Value) -> Value {
    let mut item = item.clone();
    if let Value::Object(m) = &mut item {
        for (k, v) in m.iter_mut() {
            let present = !(v.is_null() || v.as_str().is_some_and(|s| s.trim().is_empty()));
            if k.eq_ignore_ascii_case("cc") && present {
                *v = Value::String(REDACTED.to_owned());
            }
        }
    }
    item
}

/// Translate one item into `import_profile` fields.
fn item(m: &Map<String, Value>) -> ItemInput {
    let mut out = Map::new();
    for (k, v) in m {
        let lower = k.to_ascii_lowercase();
        let name = if FIELDS.contains(&lower.as_str()) {
            lower
        } else {
            k.clone()
        };
        let v = match v {
            Value::String(s) => Value::String(s.trim().to_owned()),
            other => other.clone(),
        };
        out.insert(name, v);
    }
    let iccid = out
        .get("iccid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    for name in MANDATORY {
        let present = match out.get(name) {
            Some(Value::String(s)) => !s.is_empty(),
            Some(Value::Null) | None => false,
            Some(_) => true,
        };
        if !present {
            return Err((
                iccid,
                Rejection::field(name, "missing_field", format!("{name} is mandatory")),
            ));
        }
    }
    Ok(out)
}

/// One item's result.
pub fn result(item: &ItemRecord) -> Value {
    if item.status == ItemStatus::Completed {
        return json!({"result": "SUCCEED", "reason": null});
    }
    let reason = match (item.error_reason.as_deref(), item.error_field.as_deref()) {
        (Some(r), Some(f)) if !r.contains(f) => format!("{f}: {r}"),
        (Some(r), _) => r.to_owned(),
        (None, _) => format!("the item ended {}", item.status.as_str()),
    };
    json!({"result": "FAILED", "reason": reason})
}

/// The success answer: every item's result in request order.
pub fn success(echo: Vec<Value>, items: &[ItemRecord]) -> Response {
    let results: Vec<Value> = items.iter().map(result).collect();
    Json(json!({
        "code": "0",
        "errorCode": "0",
        "errorMsg": null,
        "profileItems": echo,
        "resultItems": results,
        "resultList": results,
    }))
    .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn both_list_spellings_and_any_key_case() {
        for key in ["profileItems", "prfileItems"] {
            let body = json!({ key: [{"Iccid": " 12345678912345678919 ", "EID": "e", "imei": "i", "Ac": "1", "apn": "1"}] });
            let r = parse(body.to_string().as_bytes()).unwrap();
            let m = r.items[0].as_ref().unwrap();
            assert_eq!(m["iccid"], "12345678912345678919");
            assert_eq!(m["eid"], "e");
            assert_eq!(m["ac"], "1");
            assert_eq!(r.echo[0]["Iccid"], " 12345678912345678919 ", "echo as sent");
        }
    }

    #[test]
    fn a_missing_mandatory_field_refuses_only_its_item() {
        let body = json!({"profileItems": [{"iccid": "1", "eid": "e", "imei": "i", "ac": "1"}, {"iccid": "2", "eid": "e", "imei": "i", "ac": "1", "apn": "x"}]});
        let r = parse(body.to_string().as_bytes()).unwrap();
        let (iccid, rej) = r.items[0].as_ref().unwrap_err();
        assert_eq!((iccid.as_str(), rej.field.as_deref()), ("1", Some("apn")));
        assert!(r.items[1].is_ok());
    }

    #[test]
    fn whole_request_refusals() {
        let many: Vec<Value> = (0..1000).map(|_| json!({})).collect();
        let cases = [
            (b"{".to_vec(), Code::MalformedBody),
            (b"[]".to_vec(), Code::MalformedBody),
            (br#"{}"#.to_vec(), Code::InvalidItems),
            (br#"{"profileItems":"x"}"#.to_vec(), Code::InvalidItems),
            (br#"{"profileItems":[1]}"#.to_vec(), Code::InvalidItems),
            (br#"{"profileItems":[]}"#.to_vec(), Code::EmptyList),
            (
                json!({"profileItems": many}).to_string().into_bytes(),
                Code::TooManyItems,
            ),
        ];
        for (body, code) in cases {
            assert_eq!(parse(&body).unwrap_err().code, code);
        }
    }

    #[test]
    fn the_echo_never_shows_a_confirmation_code() {
        let body =
            json!({"profileItems": [{"iccid": "1", "CC": "4711"}, {"iccid": "2", "cc": ""}]});
        let r = parse(body.to_string().as_bytes()).unwrap();
        assert_eq!(r.echo[0]["CC"], REDACTED);
        assert_eq!(r.echo[1]["cc"], "", "an empty cc is shown as sent");
        assert!(!serde_json::to_string(&r.echo).unwrap().contains("4711"));
    }

    proptest! {
        #[test]
        fn parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse(&body);
        }
    }
}
