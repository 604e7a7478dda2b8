//! Outbox events: the row written for each, and the payloads of the events
//! a chunk completion emits.
//!
//! Payloads are serialised straight from borrowed structs, with no JSON tree
//! in between. Their fields are declared in alphabetical order, so the text
//! is the same as a `serde_json::Value` object of the same keys would give.

use serde::Serialize;
use serde_json::Value;

/// An outbox event to insert.
#[derive(Debug, Clone)]
pub struct EventWrite {
    /// Stable event id.
    pub event_id: String,
    /// Owner.
    pub tenant_id: String,
    /// Event type.
    pub kind: &'static str,
    /// JSON payload, as text.
    pub data: String,
}

impl EventWrite {
    /// A new event with a fresh id and `data` as its payload.
    pub fn new(tenant_id: &str, kind: &'static str, data: Value) -> Self {
        Self::of(tenant_id, kind, &data)
    }

    /// A new event with a fresh id, its payload serialised from `data`.
    pub fn of(tenant_id: &str, kind: &'static str, data: &impl Serialize) -> Self {
        Self {
            event_id: event_id(),
            tenant_id: tenant_id.to_owned(),
            kind,
            data: serde_json::to_string(data).unwrap_or_else(|_| "{}".into()),
        }
    }
}

/// A fresh version 4 UUID for an event.
///
/// The hot path makes two or three per item; uuid's `fast-rng` feature draws
/// them from a thread-local generator seeded from the OS, instead of one OS
/// random call per id.
pub(crate) fn event_id() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// `order.completed` and `order.failed`. Every key is present; the ones that
/// do not apply are null. `reference` is the client's correlation id (ECC's
/// requestid), `msisdn` the SIM's, if known.
#[derive(Debug, Serialize)]
pub(crate) struct OrderEvent<'a> {
    pub batch_id: &'a str,
    pub error_code: Option<&'a str>,
    pub error_reason: Option<&'a str>,
    pub iccid: &'a str,
    pub msisdn: Option<&'a str>,
    pub operation: &'static str,
    pub order_id: i64,
    pub reference: &'a Value,
    pub result: &'a Value,
    pub seq: i64,
    pub status: &'static str,
}

/// `sim.status_changed` and `sim.imei_changed`: one value of a SIM, before
/// and after an order.
#[derive(Debug, Serialize)]
pub(crate) struct ChangeEvent<'a> {
    pub batch_id: &'a str,
    pub from: Option<&'a str>,
    pub iccid: &'a str,
    pub operation: &'static str,
    pub order_id: i64,
    pub to: Option<&'a str>,
}

/// `subscription.state_changed`: the ECC subscription state, before and after.
#[derive(Debug, Serialize)]
pub(crate) struct SubscriptionEvent<'a> {
    pub batch_id: &'a str,
    pub from: Option<&'static str>,
    pub iccid: &'a str,
    pub imsi: Option<&'a str>,
    pub msisdn: Option<&'a str>,
    pub operation: &'static str,
    pub order_id: i64,
    pub to: Option<&'static str>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn payloads_serialise_as_the_json_objects_of_the_same_keys() {
        let (reference, result) = (json!("r-1"), json!({"status": "ACTIVATED"}));
        let order = OrderEvent {
            batch_id: "b",
            error_code: None,
            error_reason: None,
            iccid: "8988",
            msisdn: Some("4670"),
            operation: "activate",
            order_id: 7,
            reference: &reference,
            result: &result,
            seq: 3,
            status: "COMPLETED",
        };
        let tree = json!({"batch_id": "b", "order_id": 7, "seq": 3, "iccid": "8988",
            "operation": "activate", "error_code": null, "error_reason": null, "result": result,
            "reference": "r-1", "msisdn": "4670", "status": "COMPLETED"});
        assert_eq!(serde_json::to_string(&order).unwrap(), tree.to_string());
        let change = ChangeEvent {
            batch_id: "b",
            from: None,
            iccid: "8988",
            operation: "activate",
            order_id: 7,
            to: Some("ACTIVATED"),
        };
        let tree = json!({"iccid": "8988", "from": null, "to": "ACTIVATED",
            "operation": "activate", "batch_id": "b", "order_id": 7});
        assert_eq!(serde_json::to_string(&change).unwrap(), tree.to_string());
        let sub = SubscriptionEvent {
            batch_id: "b",
            from: None,
            iccid: "8988",
            imsi: Some("001"),
            msisdn: None,
            operation: "create_subscription",
            order_id: 1,
            to: Some("BEFORE_FIRST_USE"),
        };
        let tree = json!({"iccid": "8988", "msisdn": null, "imsi": "001", "from": null,
            "to": "BEFORE_FIRST_USE", "operation": "create_subscription", "batch_id": "b", "order_id": 1});
        assert_eq!(serde_json::to_string(&sub).unwrap(), tree.to_string());
    }

    #[test]
    fn event_ids_are_distinct_version_4_uuids() {
        let ids: std::collections::HashSet<String> = (0..10_000).map(|_| event_id()).collect();
        assert_eq!(ids.len(), 10_000);
        for id in ids.iter().take(100) {
            let u = uuid::Uuid::parse_str(id).unwrap();
            assert_eq!(u.get_version_num(), 4);
        }
        let other = std::thread::spawn(event_id).join().unwrap();
        assert!(!ids.contains(&other));
    }
}
