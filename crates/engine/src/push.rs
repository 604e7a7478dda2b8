//! Dialect push formats: which feed events a push endpoint receives, and
//! the body it is sent. Deliveries are signed and retried like every
//! webhook (see [`crate::webhooks`]); only the selection and the body differ.
//!
//! `smarthub` (Smarthub's subscription notifications; the vendor's own
//! payloads are not published, so these are simbatch's):
//!
//! ```json
//! {"eventType": "SIM_STATUS_CHANGE", "eventId": "…", "eventTime": "2018-10-10T10:32:50+0000",
//!  "giccid": "…", "beforeStatus": "INVENTORY", "afterStatus": "ACTIVATED", "jobId": "<32 hex>"}
//! {"eventType": "IMEI_CHANGE", "eventId": "…", "eventTime": "…",
//!  "giccid": "…", "beforeImei": null, "afterImei": "490154203237518", "jobId": "<32 hex>"}
//! ```
//!
//! `simlessly` (Simlessly's Notify Status Change callback, signed with
//! Simlessly's headers): see [`simlessly`].

pub mod simlessly;

use serde_json::{json, Value};
use simbatch_store::{Event, Store, StoreError, Webhook};

/// The body `hook` is sent for `event` (its format decides), or None when
/// that format does not carry this event. Formats whose body needs more than
/// the event (Simlessly's names the profile's matching ID) read the store.
pub async fn body_for(
    store: &dyn Store,
    hook: &Webhook,
    event: &Event,
) -> Result<Option<String>, StoreError> {
    match hook.format.as_str() {
        simbatch_store::WEBHOOK_STANDARD => Ok(Some(crate::webhooks::payload(event))),
        simlessly::FORMAT => simlessly::render(store, hook, event).await,
        other => Ok(render(other, event)),
    }
}

/// The Smarthub push format name.
pub const SMARTHUB: &str = "smarthub";

/// Whether `format` names a push format this dispatcher can render.
pub fn is_known(format: &str) -> bool {
    format == SMARTHUB || format == simlessly::FORMAT
}

/// The body to push for `event` in `format`, or None when that format does
/// not carry this event.
pub fn render(format: &str, event: &Event) -> Option<String> {
    match format {
        SMARTHUB => smarthub(event).map(|v| v.to_string()),
        _ => None,
    }
}

fn smarthub_time(ms: i64) -> String {
    use time::macros::format_description;
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(format_description!(
                "[year]-[month]-[day]T[hour]:[minute]:[second]+0000"
            ))
            .ok()
        })
        .unwrap_or_default()
}

/// The Smarthub notification for a SIM status or IMEI change.
pub fn smarthub(event: &Event) -> Option<Value> {
    let d = &event.data;
    let job = d["batch_id"].as_str().map(|b| b.replace('-', ""));
    let (kind, before, after) = match event.kind.as_str() {
        "sim.status_changed" => ("SIM_STATUS_CHANGE", "beforeStatus", "afterStatus"),
        "sim.imei_changed" => ("IMEI_CHANGE", "beforeImei", "afterImei"),
        _ => return None,
    };
    let mut v = json!({"eventType": kind, "eventId": event.id, "eventTime": smarthub_time(event.created_at),
                       "giccid": d["iccid"], "jobId": job});
    v[before] = d["from"].clone();
    v[after] = d["to"].clone();
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(kind: &str, data: Value) -> Event {
        Event {
            seq: 1,
            id: "e1".into(),
            kind: kind.into(),
            created_at: 1_539_167_570_000,
            data,
        }
    }

    #[test]
    fn smarthub_bodies() {
        let b = json!({"iccid": "8986", "from": "SUSPENDED", "to": "RETIRED",
                       "batch_id": "0193a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"});
        let v = smarthub(&ev("sim.status_changed", b)).unwrap();
        assert_eq!(
            v,
            json!({"eventType": "SIM_STATUS_CHANGE", "eventId": "e1", "eventTime": "2018-10-10T10:32:50+0000",
                   "giccid": "8986", "beforeStatus": "SUSPENDED", "afterStatus": "RETIRED",
                   "jobId": "0193a1b2c3d47e5f8a9b0c1d2e3f4a5b"})
        );
        let v = smarthub(&ev(
            "sim.imei_changed",
            json!({"iccid": "8986", "from": null, "to": "490154203237518"}),
        ))
        .unwrap();
        assert_eq!(
            (v["eventType"].clone(), v["afterImei"].clone()),
            (json!("IMEI_CHANGE"), json!("490154203237518"))
        );
        assert!(smarthub(&ev("order.completed", json!({}))).is_none());
        assert!(render("other", &ev("sim.status_changed", json!({}))).is_none());
    }
}
