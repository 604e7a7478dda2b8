//! `GET /ecc/v1/events/{event-type}`: ECC's long-polling event log, built on
//! the tenant's event feed (the same outbox that drives webhooks).
//!
//! | ECC type | feed events |
//! |---|---|
//! | `batch` | `batch.completed`, `batch.partially_completed`, `batch.cancelled` |
//! | `order` | `order.completed`, `order.failed` (except "subscription not found": no order existed) |
//! | `state-change` | `subscription.state_changed` |
//!
//! `sequence-number` is the feed's sequence number: increasing, unique, not
//! contiguous per type. Each feed type is read from its own index
//! (`outbox (tenant_id, type, id)`), so an answer costs the events of its
//! type, not a scan of the tenant's other events. `limit` (default 30, at most 100), `first-element`
//! (start at this sequence number) and `long-polling=<seconds>` (at most
//! 120) are honoured; the `ETag` names the position after the events
//! returned, and `If-None-Match` with that ETag continues from there. When
//! nothing arrives before the timeout the answer is 304 with the same ETag.

use std::collections::HashMap;
use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::header::{ETAG, IF_NONE_MATCH};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};
use simbatch_store::Event;

use super::batches::NOT_FOUND_FAILURES;
use super::{event_time, EccAuth, EccError};
use crate::AppState;

/// Default number of events per answer.
pub const DEFAULT_LIMIT: usize = 30;
/// Most events per answer.
pub const MAX_LIMIT: usize = 100;
/// Longest long-polling wait, in seconds.
pub const MAX_LONG_POLL: u64 = 120;
/// How often a long poll looks for new events.
const POLL_EVERY: Duration = Duration::from_millis(200);
/// Reads per answer when events are filtered out (bounds the work of one call).
const MAX_READS: usize = 20;

/// The ECC event types served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// A batch completed.
    Batch,
    /// An order completed.
    Order,
    /// A subscription's state changed.
    StateChange,
}

impl EventType {
    /// Parse the path segment.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "batch" => Some(Self::Batch),
            "order" => Some(Self::Order),
            "state-change" => Some(Self::StateChange),
            _ => None,
        }
    }
    /// The feed event types it is made of.
    pub fn kinds(self) -> &'static [&'static str] {
        match self {
            Self::Batch => &[
                "batch.completed",
                "batch.partially_completed",
                "batch.cancelled",
            ],
            Self::Order => &["order.completed", "order.failed"],
            Self::StateChange => &["subscription.state_changed"],
        }
    }
    fn name(self) -> &'static str {
        match self {
            Self::Batch => "batch",
            Self::Order => "order",
            Self::StateChange => "state-change",
        }
    }
}

/// The ECC rendering of a feed event, if it is of type `t`.
pub fn render(t: EventType, e: &Event) -> Option<Value> {
    let d = &e.data;
    let time = event_time(e.created_at);
    match (t, e.kind.as_str()) {
        (EventType::Batch, "batch.completed" | "batch.partially_completed" | "batch.cancelled") => {
            let status = if e.kind == "batch.completed" {
                "COMPLETED"
            } else {
                "PARTIALLY_COMPLETED"
            };
            Some(
                json!({"sequence-number": e.seq, "batchid": d["batch_id"], "status": status,
                        "time": time, "type": "BatchEventInfo"}),
            )
        }
        (EventType::Order, "order.completed" | "order.failed") => {
            let code = d["error_code"].as_str().unwrap_or("");
            if e.kind == "order.failed" && NOT_FOUND_FAILURES.contains(&code) {
                return None;
            }
            let status = if e.kind == "order.completed" {
                "COMPLETED"
            } else {
                "CANCELED"
            };
            let mut v = json!({"sequence-number": e.seq, "msisdn": d.get("msisdn").cloned().unwrap_or(Value::Null),
                "iccid": d["iccid"], "orderid": d["order_id"].as_i64().map(|i| i.to_string()),
                "batchid": d["batch_id"], "status": status, "time": time, "type": "OrderEventInfo"});
            if let Some(r) = d.get("reference").filter(|r| !r.is_null()) {
                v["requestid"] = r.clone();
            }
            Some(v)
        }
        (EventType::StateChange, "subscription.state_changed") => Some(json!({
            "sequence-number": e.seq, "msisdn": d["msisdn"], "iccid": d["iccid"], "imsi": d["imsi"],
            "previous-state": d["from"], "new-state": d["to"], "time": time,
            "type": "StateChangeEventInfo"})),
        _ => None,
    }
}

fn etag(t: EventType, cursor: i64) -> String {
    format!("\"{}-{cursor}\"", t.name())
}

/// The cursor an `If-None-Match` ETag of this type names.
fn parse_etag(t: EventType, v: &str) -> Option<i64> {
    let v = v.trim().trim_start_matches("W/").trim_matches('"');
    let (name, seq) = v.rsplit_once('-')?;
    (name == t.name())
        .then(|| seq.parse().ok())
        .flatten()
        .filter(|s: &i64| *s >= 0)
}

fn number(q: &HashMap<String, String>, name: &str, max: u64) -> Result<Option<u64>, EccError> {
    match q.get(name) {
        None => Ok(None),
        Some(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| *n <= max)
            .map(Some)
            .ok_or_else(|| {
                EccError::bad_request(format!(
                    "Invalid {name} parameter: must be a whole number from 0 to {max}"
                ))
            }),
    }
}

/// The first `n` feed events of type `t` after `cursor`, oldest first, one
/// indexed read per feed type; and whether `n` were found (more may follow).
async fn read_after(
    st: &AppState,
    tenant_id: &str,
    t: EventType,
    cursor: i64,
    n: usize,
) -> Result<(Vec<Event>, bool), EccError> {
    let mut all = Vec::new();
    for kind in t.kinds() {
        let page = st
            .store
            .events_of_type_after(tenant_id, kind, cursor, n as i64)
            .await
            .map_err(|e| {
                tracing::error!(error = %e, "ECC event read failed");
                EccError::new(StatusCode::INTERNAL_SERVER_ERROR, "Internal error")
            })?;
        all.extend(page);
    }
    all.sort_by_key(|e| e.seq);
    let full = all.len() >= n;
    all.truncate(n);
    Ok((all, full))
}

/// `GET /ecc/v1/events/{event-type}`.
pub async fn list(
    State(st): State<AppState>,
    EccAuth(tenant): EccAuth,
    Path(kind): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, EccError> {
    let Query(q) = query.map_err(|e| EccError::bad_request(format!("Invalid query: {e}")))?;
    let t = EventType::parse(&kind).ok_or_else(|| {
        EccError::bad_request(format!(
            "Unsupported event type '{}': simbatch serves batch, order and state-change",
            kind.chars().take(64).collect::<String>()
        ))
    })?;
    let limit = match number(&q, "limit", MAX_LIMIT as u64)? {
        Some(0) => {
            return Err(EccError::bad_request(
                "Invalid limit parameter: must be from 1 to 100",
            ))
        }
        Some(n) => n as usize,
        None => DEFAULT_LIMIT,
    };
    let first = number(&q, "first-element", i64::MAX as u64)?;
    let long_poll = number(&q, "long-polling", MAX_LONG_POLL)?;
    let if_none_match = headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok());
    let known = if_none_match.and_then(|v| parse_etag(t, v));
    let start = match (first, known) {
        (Some(f), _) => (f as i64).saturating_sub(1),
        (None, Some(c)) => c,
        (None, None) => 0,
    };
    let deadline = tokio::time::Instant::now() + Duration::from_secs(long_poll.unwrap_or(0));
    let mut cursor = start;
    let mut out = Vec::new();
    let mut reads = 0;
    loop {
        let (events, full) = read_after(&st, &tenant.id, t, cursor, limit - out.len()).await?;
        reads += 1;
        for e in &events {
            cursor = e.seq;
            out.extend(render(t, e));
        }
        if out.len() >= limit {
            break;
        }
        if full && reads < MAX_READS {
            // More events of this type wait; some read were filtered out.
            continue;
        }
        let now = tokio::time::Instant::now();
        if !out.is_empty() || full || now >= deadline {
            break;
        }
        tokio::time::sleep(deadline.saturating_duration_since(now).min(POLL_EVERY)).await;
    }
    let tag = HeaderValue::from_str(&etag(t, cursor))
        .map_err(|_| EccError::bad_request("Invalid position"))?;
    if out.is_empty() && (long_poll.is_some() || if_none_match.is_some()) {
        let mut resp = StatusCode::NOT_MODIFIED.into_response();
        resp.headers_mut().insert(ETAG, tag);
        return Ok(resp);
    }
    let mut resp = Json(json!({ "events": out })).into_response();
    resp.headers_mut().insert(ETAG, tag);
    Ok(resp)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_read_renders_as_its_type() {
        for t in [EventType::Batch, EventType::Order, EventType::StateChange] {
            for kind in t.kinds() {
                let e = Event {
                    seq: 7,
                    id: "e".into(),
                    kind: (*kind).into(),
                    created_at: 0,
                    data: json!({"batch_id": "b", "iccid": "1", "order_id": 3}),
                };
                let v = render(t, &e).unwrap_or_else(|| panic!("{kind}"));
                assert_eq!(v["sequence-number"], 7);
                for other in [EventType::Batch, EventType::Order, EventType::StateChange] {
                    assert_eq!(render(other, &e).is_some(), other == t, "{kind}");
                }
            }
        }
    }

    #[test]
    fn etags_roundtrip_per_type() {
        let e = etag(EventType::StateChange, 42);
        assert_eq!(parse_etag(EventType::StateChange, &e), Some(42));
        assert_eq!(parse_etag(EventType::Order, &e), None);
        assert_eq!(
            parse_etag(EventType::Order, "\"9f3b76784171ed59bc1df0bb9964f1df\""),
            None
        );
    }
}
