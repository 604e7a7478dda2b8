//! Simlessly wire shapes: reading `generateByBatch` and `batch/info`
//! requests, and rendering batch and item state back.
//!
//! Input follows ARCHITECTURE §6: string values are trimmed, `msidn` and
//! `msisdn` are both accepted, and a `configName` repeated inside a metadata
//! item (as in the vendor's example) is ignored. Output carries both
//! spellings where the vendor's table and example disagree: `succeedNum` and
//! `succeed`, `failedNum` and `failed`, `results` and `result`,
//! `errorReason` and `errorReson`.

use serde_json::{json, Map, Value};
use simbatch_core::{BatchStatus, ItemStatus, Rejection};
use simbatch_store::{BatchRecord, ItemRecord};
use time::macros::format_description;
use time::OffsetDateTime;

use super::envelope::{Code, Refusal};

/// Most metadata items in one batch.
pub const MAX_ITEMS: usize = 200;
/// Largest body accepted by the Simlessly endpoints.
pub const BODY_LIMIT: usize = 2 * 1024 * 1024;
/// The batch task type.
pub const TASK_TYPE: &str = "GENERATE AC";

/// Metadata fields Simlessly makes mandatory.
const MANDATORY: [&str; 3] = ["iccid", "imsi", "ki"];

/// One metadata item: the core fields, or why the dialect refused it (with
/// the ICCID as given).
pub type ItemInput = Result<Map<String, Value>, (String, Rejection)>;

/// A read `generateByBatch` request.
#[derive(Debug)]
pub struct GenerateRequest {
    /// The configuration (template) name, trimmed.
    pub config_name: String,
    /// The items, in request order.
    pub items: Vec<ItemInput>,
}

/// Parse a JSON object body.
pub fn object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Refusal::new(
            Code::MalformedBody,
            "the body must be a JSON object",
        )),
        Err(e) => Err(Refusal::new(
            Code::MalformedBody,
            format!("the body is not valid JSON: {e}"),
        )),
    }
}

/// A mandatory, non-empty string parameter, trimmed.
pub fn required_string(obj: &Map<String, Value>, name: &str) -> Result<String, Refusal> {
    match obj.get(name) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.trim().to_owned()),
        Some(Value::String(_)) | None | Some(Value::Null) => Err(Refusal::new(
            Code::InvalidParameter,
            format!("{name} is mandatory"),
        )),
        Some(_) => Err(Refusal::new(
            Code::InvalidParameter,
            format!("{name} must be a string"),
        )),
    }
}

/// An optional boolean parameter (e.g. `needAcLink`); refused when present with another type.
pub fn optional_bool(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, Refusal> {
    match obj.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(Refusal::new(
            Code::InvalidParameter,
            format!("{name} must be true or false"),
        )),
    }
}

fn trimmed(v: &Value) -> Value {
    match v {
        Value::String(s) => Value::String(s.trim().to_owned()),
        other => other.clone(),
    }
}

/// Read a `generateByBatch` body.
pub fn parse_generate(body: &[u8]) -> Result<GenerateRequest, Refusal> {
    let obj = object(body)?;
    let config_name = required_string(&obj, "configName")?;
    optional_bool(&obj, "needAcLink")?;
    if config_name.chars().count() > 128 {
        return Err(Refusal::new(
            Code::InvalidParameter,
            "configName must be at most 128 characters",
        ));
    }
    match obj.get("encryptionMode") {
        None | Some(Value::Null) => {}
        Some(v) if v.as_i64() == Some(1) => {}
        Some(v) => {
            return Err(Refusal::new(
                Code::UnsupportedEncryptionMode,
                format!("encryptionMode {v} is not supported: only 1 (plaintext) is"),
            ))
        }
    }
    let list = match obj.get("metaDatas") {
        Some(Value::Array(a)) => a,
        None | Some(Value::Null) => {
            return Err(Refusal::new(
                Code::InvalidParameter,
                "metaDatas is mandatory",
            ))
        }
        Some(_) => {
            return Err(Refusal::new(
                Code::InvalidParameter,
                "metaDatas must be a list",
            ))
        }
    };
    if list.is_empty() || list.len() > MAX_ITEMS {
        return Err(Refusal::new(
            Code::BatchSize,
            format!(
                "metaDatas must hold 1 to {MAX_ITEMS} items, got {}",
                list.len()
            ),
        ));
    }
    let mut items = Vec::with_capacity(list.len());
    for (i, v) in list.iter().enumerate() {
        let Value::Object(m) = v else {
            return Err(Refusal::new(
                Code::InvalidParameter,
                format!("metaDatas[{i}] must be an object"),
            ));
        };
        items.push(metadata(m, &config_name));
    }
    Ok(GenerateRequest { config_name, items })
}

/// Translate one metadata item into `generate_activation_code` fields.
fn metadata(m: &Map<String, Value>, config_name: &str) -> ItemInput {
    let iccid = m
        .get("iccid")
        .and_then(Value::as_str)
        .unwrap_or("")
        .trim()
        .to_owned();
    for name in MANDATORY {
        let present = match m.get(name) {
            Some(Value::String(s)) => !s.trim().is_empty(),
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
    let mut out = Map::new();
    out.insert("template".into(), Value::String(config_name.to_owned()));
    for (k, v) in m {
        let name = match k.as_str() {
            "configName" => continue,
            "msidn" | "msisdn" => "msisdn",
            "expireTime" => "expire_time",
            "impu" => {
                let joined = match v {
                    Value::Array(list) if list.iter().all(Value::is_string) => Value::String(
                        list.iter()
                            .filter_map(Value::as_str)
                            .map(str::trim)
                            .collect::<Vec<_>>()
                            .join(","),
                    ),
                    other => trimmed(other),
                };
                out.insert("impu".into(), joined);
                continue;
            }
            other => other,
        };
        out.insert(name.to_owned(), trimmed(v));
    }
    Ok(out)
}

/// A new batch code: `B`, the UTC time `yyyyMMddHHmmss`, and 6 random digits.
pub fn new_batch_code() -> String {
    use rand::Rng;
    let now = OffsetDateTime::now_utc();
    let stamp = now
        .format(format_description!(
            "[year][month][day][hour][minute][second]"
        ))
        .unwrap_or_default();
    let n: u32 = rand::rngs::OsRng.gen_range(0..1_000_000);
    format!("B{stamp}{n:06}")
}

/// Whether `code` looks like a batch code (`B` and digits).
pub fn is_batch_code(code: &str) -> bool {
    code.len() > 1
        && code.len() <= 64
        && code.starts_with('B')
        && code[1..].bytes().all(|b| b.is_ascii_digit())
}

/// `yyyy/MM/dd HH:mm:ss` (UTC) of Unix milliseconds.
pub fn create_time(ms: i64) -> String {
    OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]/[month]/[day] [hour]:[minute]:[second]"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// One item as Simlessly reports it.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemView {
    /// Whether an activation code was generated.
    pub success: bool,
    /// Empty on success or while running; the reason otherwise.
    pub error_reason: String,
    /// Our stable code for the failure (see the docs).
    pub error_code: Option<String>,
    /// ICCID as given.
    pub iccid: String,
    /// EID, if known.
    pub eid: Option<String>,
    /// The activation code.
    pub activation_code: Option<String>,
    /// The item's state in the engine.
    pub status: ItemStatus,
    /// Presigned link to the activation code's QR image (`acLink`).
    pub ac_link: Option<String>,
}

/// Render an item.
pub fn item_view(item: &ItemRecord) -> ItemView {
    let success = item.status == ItemStatus::Completed;
    let error_reason = match (item.error_code.as_deref(), item.error_reason.as_deref()) {
        _ if success => String::new(),
        (Some("iccid_exists"), _) => format!(
            "PROFILE EXECUTION_ERROR, generateByProfileMetadata, ICCID [{}] already existsById.",
            item.iccid
        ),
        (_, Some(reason)) => match item.error_field.as_deref() {
            Some(f) if !reason.contains(f) => format!("{f}: {reason}"),
            _ => reason.to_owned(),
        },
        (_, None) => String::new(),
    };
    let str_of = |v: Option<&Value>| v.and_then(Value::as_str).map(str::to_owned);
    ItemView {
        success,
        error_reason,
        error_code: item.error_code.clone(),
        iccid: item.iccid.clone(),
        eid: str_of(item.params.get("eid")),
        activation_code: str_of(item.result.as_ref().and_then(|r| r.get("activation_code"))),
        status: item.status,
        ac_link: None,
    }
}

impl ItemView {
    /// The JSON entry of `results`.
    pub fn to_json(&self) -> Value {
        let mut v = json!({
            "success": self.success,
            "errorReason": self.error_reason,
            "errorReson": self.error_reason,
            "errorCode": self.error_code,
            "iccid": self.iccid,
            "eid": self.eid,
            "activationCode": self.activation_code,
            "status": self.status.as_str(),
        });
        if let Some(link) = &self.ac_link {
            v["acLink"] = json!(link);
        }
        v
    }
}

/// `COMPLETE` once every item is terminal, else `PROCESSING`.
pub fn task_status(b: &BatchRecord) -> &'static str {
    if b.status.is_terminal() && b.status != BatchStatus::Initialising {
        "COMPLETE"
    } else {
        "PROCESSING"
    }
}

/// The `obj` of `batch/info`.
pub fn batch_info(b: &BatchRecord, items: &[ItemView], result_url: &str) -> Value {
    let code = b.external_ref.clone().unwrap_or_default();
    let succeed = b.counts.completed;
    let failed = b.counts.failed + b.counts.rejected + b.counts.canceled;
    let results: Vec<Value> = items.iter().map(ItemView::to_json).collect();
    json!({
        "batchTaskInfo": {
            "batchCode": code,
            "taskType": TASK_TYPE,
            "status": task_status(b),
            "total": b.counts.total,
            "succeedNum": succeed,
            "succeed": succeed,
            "failedNum": failed,
            "failed": failed,
            "createTime": create_time(b.created_at),
            "resultUrl": result_url,
        },
        "results": results,
        "result": results,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_vendor_example_reads_trimmed() {
        let body = br#"{"configName":" tpl","encryptionMode":1,"metaDatas":[{"iccid":" 89860468152080349618","imsi":" 460048867619618","ki":" 6BE2053E8580B135CD43443380DB7111","msidn":" 8613912345678","impu":["sip:a","sip:b"],"expireTime":" 2023-03-07 12:00:00","configName":" tpl"}]}"#;
        let r = parse_generate(body).unwrap();
        assert_eq!(r.config_name, "tpl");
        let m = r.items[0].as_ref().unwrap();
        assert_eq!(m["iccid"], "89860468152080349618");
        assert_eq!(m["msisdn"], "8613912345678");
        assert_eq!(m["impu"], "sip:a,sip:b");
        assert_eq!(m["expire_time"], "2023-03-07 12:00:00");
        assert_eq!(m["template"], "tpl");
        assert!(!m.contains_key("configName"));
    }

    #[test]
    fn refusals_name_the_parameter() {
        let cases: [(&[u8], Code, &str); 8] = [
            (b"nope", Code::MalformedBody, "JSON"),
            (b"[]", Code::MalformedBody, "object"),
            (
                br#"{"metaDatas":[{}]}"#,
                Code::InvalidParameter,
                "configName",
            ),
            (
                br#"{"configName":"t"}"#,
                Code::InvalidParameter,
                "metaDatas",
            ),
            (
                br#"{"configName":"t","metaDatas":[]}"#,
                Code::BatchSize,
                "1 to 200",
            ),
            (
                br#"{"configName":"t","metaDatas":[1]}"#,
                Code::InvalidParameter,
                "metaDatas[0]",
            ),
            (
                br#"{"configName":"t","encryptionMode":2,"metaDatas":[{}]}"#,
                Code::UnsupportedEncryptionMode,
                "2",
            ),
            (
                br#"{"configName":5,"metaDatas":[{}]}"#,
                Code::InvalidParameter,
                "string",
            ),
        ];
        for (body, code, needle) in cases {
            let e = parse_generate(body).unwrap_err();
            assert_eq!(e.code, code, "{}", String::from_utf8_lossy(body));
            assert!(e.msg.contains(needle), "{}", e.msg);
        }
    }

    #[test]
    fn a_missing_mandatory_field_refuses_only_its_item() {
        let r = parse_generate(br#"{"configName":"t","metaDatas":[{"iccid":"1","imsi":"2"},{"iccid":"3","imsi":"4","ki":"5"}]}"#).unwrap();
        let (iccid, rej) = r.items[0].as_ref().unwrap_err();
        assert_eq!((iccid.as_str(), rej.field.as_deref()), ("1", Some("ki")));
        assert!(r.items[1].is_ok());
    }

    #[test]
    fn batch_codes() {
        let c = new_batch_code();
        assert!(is_batch_code(&c), "{c}");
        assert_eq!(c.len(), 21);
        assert!(!is_batch_code("B"));
        assert!(!is_batch_code("X123"));
        assert!(!is_batch_code("B12a"));
        assert_eq!(create_time(1_661_857_223_000), "2022/08/30 11:00:23");
    }

    proptest! {
        #[test]
        fn parser_never_panics(body in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_generate(&body);
        }

        #[test]
        fn parser_never_panics_on_json_shapes(v in proptest::arbitrary::any::<(Option<String>, Option<i64>, u8)>()) {
            let (name, mode, n) = v;
            let items: Vec<Value> = (0..n % 4).map(|i| json!({"iccid": format!(" {i}"), "imsi": 1, "ki": null})).collect();
            let body = json!({"configName": name, "encryptionMode": mode, "metaDatas": items});
            let _ = parse_generate(body.to_string().as_bytes());
        }
    }
}
