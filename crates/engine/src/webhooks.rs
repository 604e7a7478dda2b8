//! Outbox dispatcher: delivers events to webhook endpoints, signed per the
//! Standard Webhooks specification, or in a dialect push format's own body
//! and signature scheme ([`crate::push`]).
//!
//! Each endpoint has a cursor into the outbox and receives its tenant's events
//! in order, at least once. A failed delivery is retried with exponential
//! backoff and jitter; an endpoint that answers 410 Gone, or fails
//! [`MAX_ATTEMPTS`] times in a row, is disabled. Every attempt is logged.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use hmac::{Hmac, Mac};
use rand::Rng;
use sha2::Sha256;
use simbatch_store::{now_ms, DeliveryAttempt, DeliveryNext, Event, Store, Webhook};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// Consecutive failures after which an endpoint is disabled.
pub const MAX_ATTEMPTS: i64 = 15;

/// Sign `body` as Standard Webhooks does: `v1,` + base64(HMAC-SHA256(key, "id.timestamp.body")),
/// where key is the base64 part of a `whsec_` secret.
pub fn sign(secret: &str, msg_id: &str, timestamp: i64, body: &str) -> Result<String, String> {
    let key = B64
        .decode(secret.strip_prefix("whsec_").unwrap_or(secret))
        .map_err(|_| "webhook secret is not base64".to_owned())?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).map_err(|e| e.to_string())?;
    mac.update(format!("{msg_id}.{timestamp}.{body}").as_bytes());
    Ok(format!("v1,{}", B64.encode(mac.finalize().into_bytes())))
}

/// The JSON body sent for an event: `{"type", "timestamp", "data"}` plus our ids.
pub fn payload(event: &Event) -> String {
    let ts =
        time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(event.created_at) * 1_000_000)
            .ok()
            .and_then(|t| {
                t.format(&time::format_description::well_known::Rfc3339)
                    .ok()
            })
            .unwrap_or_default();
    serde_json::json!({"id": event.id, "type": event.kind, "timestamp": ts, "data": event.data})
        .to_string()
}

/// Delay before retry number `attempt` (1-based): 2^attempt s, capped at one hour, ±20 % jitter.
pub fn backoff(attempt: i64) -> Duration {
    let base = 2f64.powi(attempt.clamp(0, 12) as i32).min(3600.0);
    let jitter = rand::thread_rng().gen_range(0.8..1.2);
    Duration::from_secs_f64(base * jitter)
}

/// A skipped delivery: the endpoint's format does not carry this event.
fn skipped(hook: &Webhook, event: &Event) -> DeliveryAttempt {
    DeliveryAttempt {
        webhook_id: hook.id.clone(),
        event: event.clone(),
        status_code: None,
        error: None,
        duration_ms: 0,
        next: DeliveryNext::Advance,
        skipped: true,
    }
}

/// The signature headers of one attempt: Standard Webhooks, or the push
/// format's own scheme (Simlessly's HMAC headers).
fn signature_headers(
    hook: &Webhook,
    event: &Event,
    body: &str,
) -> Result<Vec<(&'static str, String)>, String> {
    if hook.format == crate::push::simlessly::FORMAT {
        return Ok(crate::push::simlessly::headers(hook, body, now_ms()));
    }
    let ts = now_ms() / 1000;
    let secret = hook.secret.as_deref().unwrap_or_default();
    let signature = sign(secret, &event.id, ts, body)?;
    Ok(vec![
        ("webhook-id", event.id.clone()),
        ("webhook-timestamp", ts.to_string()),
        ("webhook-signature", signature),
    ])
}

/// Deliver one event to one endpoint and decide what follows. `body` is
/// what the endpoint's format renders ([`crate::push::body_for`]); None
/// skips the event.
pub async fn deliver(
    client: &reqwest::Client,
    hook: &Webhook,
    event: &Event,
    body: Option<String>,
) -> DeliveryAttempt {
    let Some(body) = body else {
        return skipped(hook, event);
    };
    let started = Instant::now();
    let (status_code, error) = match signature_headers(hook, event, &body) {
        Err(e) => (None, Some(e)),
        Ok(headers) => {
            let mut req = client
                .post(&hook.url)
                .header("content-type", "application/json");
            for (name, value) in headers {
                req = req.header(name, value);
            }
            match req.body(body).send().await {
                Ok(resp) => (Some(i64::from(resp.status().as_u16())), None),
                Err(e) => (None, Some(e.to_string())),
            }
        }
    };
    let next = match status_code {
        Some(s) if (200..300).contains(&s) => DeliveryNext::Advance,
        Some(410) => DeliveryNext::Disable("endpoint answered 410 Gone".into()),
        _ if hook.attempts + 1 >= MAX_ATTEMPTS => {
            DeliveryNext::Disable(format!("{MAX_ATTEMPTS} consecutive failed deliveries"))
        }
        _ => DeliveryNext::RetryAt(now_ms() + backoff(hook.attempts + 1).as_millis() as i64),
    };
    DeliveryAttempt {
        webhook_id: hook.id.clone(),
        event: event.clone(),
        status_code,
        error,
        duration_ms: started.elapsed().as_millis() as i64,
        next,
        skipped: false,
    }
}

/// One dispatch pass over due endpoints; returns attempts made.
pub async fn dispatch_once(
    store: &dyn Store,
    client: &reqwest::Client,
) -> Result<usize, simbatch_store::StoreError> {
    dispatch_once_with(store, client, None).await
}

/// The metrics label of an attempt: `success`, `disabled`, `http_error` or `network_error`.
pub fn attempt_result(a: &DeliveryAttempt) -> &'static str {
    match (&a.next, a.status_code) {
        (DeliveryNext::Advance, _) => "success",
        (DeliveryNext::Disable(_), _) => "disabled",
        (_, Some(_)) => "http_error",
        (_, None) => "network_error",
    }
}

/// [`dispatch_once`], counting each attempt in `metrics`.
pub async fn dispatch_once_with(
    store: &dyn Store,
    client: &reqwest::Client,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<usize, simbatch_store::StoreError> {
    let due = store.due_deliveries(now_ms(), 64).await?;
    let mut bodies = Vec::with_capacity(due.len());
    for (hook, event) in &due {
        bodies.push(crate::push::body_for(store, hook, event).await?);
    }
    let attempts = futures::future::join_all(
        due.iter()
            .zip(bodies)
            .map(|((hook, event), body)| deliver(client, hook, event, body)),
    )
    .await;
    for a in &attempts {
        if let DeliveryNext::Disable(reason) = &a.next {
            tracing::warn!(webhook_id = %a.webhook_id, reason = %reason, "webhook disabled");
        }
        store.record_delivery(a).await?;
        if let Some(m) = metrics {
            m.webhook_delivery(attempt_result(a));
        }
    }
    Ok(attempts.len())
}

/// Run the dispatcher until cancelled.
pub fn start(store: Arc<dyn Store>, poll: Duration, cancel: CancellationToken) -> JoinHandle<()> {
    start_with(store, poll, cancel, None)
}

/// [`start`], counting deliveries in `metrics`.
pub fn start_with(
    store: Arc<dyn Store>,
    poll: Duration,
    cancel: CancellationToken,
    metrics: Option<Arc<crate::metrics::Metrics>>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        loop {
            let busy = match dispatch_once_with(store.as_ref(), &client, metrics.as_deref()).await {
                Ok(n) => n > 0,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook dispatch failed");
                    false
                }
            };
            if cancel.is_cancelled() {
                return;
            }
            if !busy {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example from the Standard Webhooks specification.
    #[test]
    fn signature_matches_spec_example() {
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            r#"{"test": 2432232314}"#,
        )
        .unwrap();
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    /// The worked example in docs/webhooks.md, so the guide cannot drift from the code.
    #[test]
    fn signature_matches_guide_example() {
        let body = r#"{"id":"6f2c1f0e-2b1e-4c8e-9f59-0c7f1d6b9a2e","type":"sim.status_changed","timestamp":"2026-11-28T10:00:00Z","data":{"iccid":"89860468152080349618","from":"INVENTORY","to":"ACTIVATED","operation":"activate","batch_id":"01a221d9-838e-73fb-ad96-f538040d2f94","order_id":17}}"#;
        let sig = sign(
            "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
            "6f2c1f0e-2b1e-4c8e-9f59-0c7f1d6b9a2e",
            1795872000,
            body,
        );
        assert_eq!(
            sig.unwrap(),
            "v1,GcZN5fSHBbIKgw0Cr0BWYQsRtvOmLjm6xdF3wRxpC9U="
        );
        let guide = include_str!("../../../docs/webhooks.md");
        assert!(
            guide.contains(body)
                && guide.contains("v1,GcZN5fSHBbIKgw0Cr0BWYQsRtvOmLjm6xdF3wRxpC9U=")
        );
    }

    #[test]
    fn backoff_grows_and_caps() {
        assert!(backoff(1) < Duration::from_secs(3));
        assert!(backoff(5) > Duration::from_secs(25));
        assert!(backoff(40) <= Duration::from_secs(4320));
    }
}
