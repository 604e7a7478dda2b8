//! The `simlessly` push format: Simlessly's "Notify Status Change" callback
//! for profiles generated through the Simlessly dialect.
//!
//! Only `profile.status_changed` events are carried, and only for a profile
//! whose activation code came from a `generateByBatch` batch (a batch of
//! source `simlessly`). The body follows the vendor's callback fields; the
//! ones the vendor leaves open are ours (documented in
//! `docs/dialects/simlessly.md`):
//!
//! ```json
//! {"eid": null, "iccid": "8986…", "timestamp": "1679999518968",
//!  "matchingId": "794A…", "configName": "templateRegular01", "deviceName": null,
//!  "notificationType": "CANCEL_ORDER",
//!  "notificationStatus": {"status": "Success", "message": "profile RELEASED -> UNAVAILABLE"},
//!  "profileStatus": "UNAVAILABLE", "previousStatus": "RELEASED", "eventId": "<uuid>"}
//! ```
//!
//! The request is signed the way Simlessly signs: headers `Access-Key`,
//! `Timestamp` (Unix ms), `Request-ID` (new for every attempt), `Signature`
//! and `Sign-Method: SHA256`, where `Signature` is the lower-case hex
//! HMAC-SHA256 of `Timestamp + Request-ID + Access-Key + raw body`. The
//! AccessKey is the callback endpoint's id and the SecretKey its secret,
//! both returned when the tenant sets the URL.

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use simbatch_store::{Event, Store, StoreError, Webhook};

/// The push format name.
pub const FORMAT: &str = "simlessly";
/// The `source` of batches the Simlessly dialect creates.
pub const SOURCE: &str = "simlessly";
/// The feed event this format carries.
pub const PROFILE_EVENT: &str = "profile.status_changed";
/// The history operation that creates a profile with its activation code.
const GENERATE: &str = "generate_activation_code";
/// History rows read per page while looking for the generating batch.
const HISTORY_PAGE: i64 = 200;
/// Pages read at most (a SIM with more history than this is not followed).
const HISTORY_PAGES: usize = 10;

/// Hex HMAC-SHA256 (lower case) of `timestamp + request_id + access_key + body`
/// under `secret`: Simlessly's request signature.
pub fn signature(
    secret: &str,
    timestamp: &str,
    request_id: &str,
    access_key: &str,
    body: &[u8],
) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(timestamp.as_bytes());
    mac.update(request_id.as_bytes());
    mac.update(access_key.as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// The headers of one delivery attempt of `body` to `hook` at `now_ms`.
pub fn headers(hook: &Webhook, body: &str, now_ms: i64) -> Vec<(&'static str, String)> {
    let ts = now_ms.to_string();
    let rid = uuid::Uuid::new_v4().to_string();
    let secret = hook.secret.as_deref().unwrap_or_default();
    let sig = signature(secret, &ts, &rid, &hook.id, body.as_bytes());
    vec![
        ("Access-Key", hook.id.clone()),
        ("Sign-Method", "SHA256".to_owned()),
        ("Timestamp", ts),
        ("Request-ID", rid),
        ("Signature", sig),
    ]
}

/// Whether the tenant's profile `iccid` got its activation code from a
/// Simlessly batch. False when the generating batch is no longer stored
/// (removed by retention) or the history is longer than we follow.
async fn generated_here(store: &dyn Store, tenant: &str, iccid: &str) -> Result<bool, StoreError> {
    let mut after = 0;
    for _ in 0..HISTORY_PAGES {
        let page = store
            .sim_history(tenant, iccid, after, HISTORY_PAGE)
            .await?;
        if let Some(batch) = page
            .iter()
            .filter(|h| h.operation == GENERATE)
            .find_map(|h| h.batch_id.as_deref())
        {
            let found = store.get_batch(tenant, batch).await?;
            return Ok(found.is_some_and(|b| b.source == SOURCE));
        }
        match page.last() {
            Some(last) if page.len() as i64 == HISTORY_PAGE => after = last.id,
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// `notificationType`: the profile event that caused the change, upper case
/// (`CANCEL_ORDER`, `EXPIRED`, `DOWNLOADED`, …).
pub fn notification_type(operation: &str) -> String {
    operation
        .rsplit('.')
        .next()
        .unwrap_or(operation)
        .to_ascii_uppercase()
}

/// The callback body for `event`, or None when this format does not carry
/// it (another event type, a profile not generated through Simlessly, or a
/// profile that no longer exists).
pub async fn render(
    store: &dyn Store,
    hook: &Webhook,
    event: &Event,
) -> Result<Option<String>, StoreError> {
    if event.kind != PROFILE_EVENT {
        return Ok(None);
    }
    let d = &event.data;
    let Some(iccid) = d["iccid"].as_str() else {
        return Ok(None);
    };
    let Some(profile) = store.get_profile(&hook.tenant_id, iccid).await? else {
        return Ok(None);
    };
    if !generated_here(store, &hook.tenant_id, iccid).await? {
        return Ok(None);
    }
    let (from, to) = (
        d["from"].as_str().unwrap_or(""),
        d["to"].as_str().unwrap_or(""),
    );
    let status = if to == "ERROR" { "Failed" } else { "Success" };
    let body = json!({
        "eid": profile.eid,
        "iccid": iccid,
        "timestamp": event.created_at.to_string(),
        "matchingId": profile.matching_id,
        "configName": profile.template,
        "deviceName": Value::Null,
        "notificationType": notification_type(d["operation"].as_str().unwrap_or("")),
        "notificationStatus": {"status": status, "message": format!("profile {from} -> {to}")},
        "profileStatus": to,
        "previousStatus": from,
        "eventId": event.id,
    });
    Ok(Some(body.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_the_vendor_concatenation() {
        // printf '%s' '1679999518968fc61e3ac-cff8-4ca8-8bf6-f7a5f2331b74sk_1{}' \
        //   | openssl dgst -sha256 -hmac secret
        assert_eq!(
            signature(
                "secret",
                "1679999518968",
                "fc61e3ac-cff8-4ca8-8bf6-f7a5f2331b74",
                "sk_1",
                b"{}"
            ),
            "f8ff3b898249c78549064c55933181e080aa9ad99d1e25e4498047f75d0af482"
        );
    }

    #[test]
    fn notification_types() {
        assert_eq!(notification_type("es2plus.cancel_order"), "CANCEL_ORDER");
        assert_eq!(notification_type("profile.expired"), "EXPIRED");
        assert_eq!(notification_type("downloaded"), "DOWNLOADED");
    }

    #[test]
    fn headers_sign_each_attempt_afresh() {
        let hook = Webhook {
            id: "hook-1".into(),
            tenant_id: "t".into(),
            url: "http://127.0.0.1/".into(),
            enabled: true,
            disabled_reason: None,
            created_at: 0,
            secret: Some("whsec_abc".into()),
            cursor: 0,
            attempts: 0,
            format: FORMAT.into(),
        };
        let a = headers(&hook, "{}", 1_700_000_000_000);
        let b = headers(&hook, "{}", 1_700_000_000_000);
        let get = |h: &[(&str, String)], n: &str| {
            h.iter()
                .find(|(k, _)| *k == n)
                .map(|(_, v)| v.clone())
                .unwrap()
        };
        assert_eq!(get(&a, "Access-Key"), "hook-1");
        assert_eq!(get(&a, "Timestamp"), "1700000000000");
        assert_ne!(get(&a, "Request-ID"), get(&b, "Request-ID"));
        let rid = get(&a, "Request-ID");
        assert_eq!(
            get(&a, "Signature"),
            signature("whsec_abc", "1700000000000", &rid, "hook-1", b"{}")
        );
    }
}
