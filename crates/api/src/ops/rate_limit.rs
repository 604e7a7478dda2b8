//! Per-tenant rate limits: one token bucket per tenant, in this process's
//! memory (so a limit applies per replica).
//!
//! A bucket holds up to `burst` tokens and refills at `rps` tokens a second;
//! each authenticated request takes one. A request that finds the bucket
//! empty answers 429 `rate_limited` (problem+json) with `Retry-After`.
//! Every authenticated answer carries the IETF draft
//! (draft-ietf-httpapi-ratelimit-headers) fields:
//!
//! - `RateLimit-Policy: "tenant";q=<burst>;w=<seconds to refill an empty bucket>`
//! - `RateLimit: "tenant";r=<tokens left>;t=<seconds until the bucket is full again>`
//!
//! The tenant is known only once its key is checked, so the limiter runs in
//! the authentication extractor ([`admit`]); [`headers`] is the middleware
//! that writes the fields onto whatever response the handler produced.
//! Dialects call [`check`] after their own authentication and render
//! [`Limited`] as HTTP 429 in their vendor's error shape; the middleware adds
//! the same headers to those answers.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::Request;
use axum::http::request::Parts;
use axum::http::{Extensions, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::Response;

use crate::error::ApiError;

/// Limit settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimitConfig {
    /// Sustained requests per second per tenant (> 0).
    pub rps: f64,
    /// Largest burst (bucket size, >= 1).
    pub burst: u32,
}

/// The outcome of taking a token.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Decision {
    /// Whether the request may proceed.
    pub allowed: bool,
    /// Whole tokens left after this request.
    pub remaining: u32,
    /// Seconds until a token is available (0 when allowed).
    pub retry_after: u64,
    /// Seconds until the bucket is full again.
    pub reset: u64,
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

/// Token buckets keyed by tenant id.
#[derive(Debug)]
pub struct RateLimiter {
    cfg: RateLimitConfig,
    buckets: Mutex<HashMap<String, Bucket>>,
}

/// Buckets idle this long are dropped when the map is pruned (they are full anyway).
const IDLE: Duration = Duration::from_secs(600);

impl RateLimiter {
    /// A limiter; `rps` is clamped to at least 0.001 and `burst` to at least 1.
    pub fn new(cfg: RateLimitConfig) -> Self {
        Self {
            cfg: RateLimitConfig {
                rps: cfg.rps.max(0.001),
                burst: cfg.burst.max(1),
            },
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// The effective settings.
    pub fn config(&self) -> RateLimitConfig {
        self.cfg
    }

    /// `RateLimit-Policy` value.
    pub fn policy(&self) -> String {
        let window = (f64::from(self.cfg.burst) / self.cfg.rps).ceil().max(1.0) as u64;
        format!("\"tenant\";q={};w={window}", self.cfg.burst)
    }

    /// Take one token for `tenant` at `now`.
    pub fn take_at(&self, tenant: &str, now: Instant) -> Decision {
        let burst = f64::from(self.cfg.burst);
        let mut map = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 10_000 {
            map.retain(|_, b| now.saturating_duration_since(b.at) < IDLE);
        }
        let b = map.entry(tenant.to_owned()).or_insert(Bucket {
            tokens: burst,
            at: now,
        });
        let elapsed = now.saturating_duration_since(b.at).as_secs_f64();
        b.tokens = (b.tokens + elapsed * self.cfg.rps).min(burst);
        b.at = now;
        let allowed = b.tokens >= 1.0;
        if allowed {
            b.tokens -= 1.0;
        }
        let secs = |missing: f64| (missing.max(0.0) / self.cfg.rps).ceil() as u64;
        Decision {
            allowed,
            remaining: b.tokens.floor() as u32,
            retry_after: if allowed {
                0
            } else {
                secs(1.0 - b.tokens).max(1)
            },
            reset: secs(burst - b.tokens),
        }
    }

    /// Take one token for `tenant` now.
    pub fn take(&self, tenant: &str) -> Decision {
        self.take_at(tenant, Instant::now())
    }
}

/// Where [`admit`] leaves its decision for [`headers`].
#[derive(Clone, Default)]
struct Slot(Arc<Mutex<Option<(Decision, String)>>>);

/// A request refused by the limiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    /// Seconds until a request is admitted again (also sent as `Retry-After`).
    pub retry_after: u64,
}

impl Limited {
    /// A clear message naming when to retry.
    pub fn message(&self) -> String {
        format!(
            "this tenant's request rate is over its limit; retry in {} s",
            self.retry_after
        )
    }
}

/// Take a token for an authenticated tenant from the request's limiter
/// (`extensions` of the request). Without a configured limiter (the
/// [`headers`] middleware absent or limits off) every request passes.
pub fn check(extensions: &Extensions, tenant_id: &str) -> Result<(), Limited> {
    let limiter = extensions
        .get::<Option<Arc<RateLimiter>>>()
        .and_then(Option::as_ref);
    let Some(limiter) = limiter else {
        return Ok(());
    };
    let d = limiter.take(tenant_id);
    if let Some(slot) = extensions.get::<Slot>() {
        *slot.0.lock().unwrap_or_else(|e| e.into_inner()) = Some((d, limiter.policy()));
    }
    if d.allowed {
        Ok(())
    } else {
        Err(Limited {
            retry_after: d.retry_after,
        })
    }
}

/// [`check`] for the native API: 429 `rate_limited` (problem+json).
pub fn admit(parts: &Parts, tenant_id: &str) -> Result<(), ApiError> {
    check(&parts.extensions, tenant_id)
        .map_err(|l| ApiError::new(StatusCode::TOO_MANY_REQUESTS, "rate_limited", l.message()))
}

/// Middleware: give the request a slot for the decision, then write the
/// `RateLimit`, `RateLimit-Policy` and (on 429) `Retry-After` fields.
pub async fn headers(mut req: Request, next: Next) -> Response {
    let slot = Slot::default();
    req.extensions_mut().insert(slot.clone());
    let mut resp = next.run(req).await;
    let taken = slot.0.lock().unwrap_or_else(|e| e.into_inner()).take();
    if let Some((d, policy)) = taken {
        let h = resp.headers_mut();
        let mut put = |name: &'static str, v: String| {
            if let Ok(v) = HeaderValue::from_str(&v) {
                h.insert(name, v);
            }
        };
        put("ratelimit-policy", policy);
        put(
            "ratelimit",
            format!("\"tenant\";r={};t={}", d.remaining, d.reset),
        );
        if !d.allowed {
            put("retry-after", d.retry_after.to_string());
        }
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(rps: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(RateLimitConfig { rps, burst })
    }

    #[test]
    fn burst_then_refuse_then_refill() {
        let l = limiter(2.0, 3);
        let t0 = Instant::now();
        let got: Vec<(bool, u32)> = (0..4)
            .map(|_| l.take_at("a", t0))
            .map(|d| (d.allowed, d.remaining))
            .collect();
        assert_eq!(got, [(true, 2), (true, 1), (true, 0), (false, 0)]);
        let d = l.take_at("a", t0);
        assert_eq!((d.retry_after, d.reset), (1, 2));
        // Half a second later one token (2/s) is back.
        let d = l.take_at("a", t0 + Duration::from_millis(500));
        assert!(d.allowed, "{d:?}");
        assert!(!l.take_at("a", t0 + Duration::from_millis(500)).allowed);
        // A long pause refills to the burst, never beyond.
        let d = l.take_at("a", t0 + Duration::from_secs(60));
        assert_eq!((d.allowed, d.remaining), (true, 2));
    }

    #[test]
    fn tenants_have_their_own_buckets() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now();
        assert!(l.take_at("a", t0).allowed);
        assert!(!l.take_at("a", t0).allowed);
        assert!(l.take_at("b", t0).allowed, "another tenant is unaffected");
    }

    #[test]
    fn policy_names_quota_and_window() {
        assert_eq!(limiter(10.0, 50).policy(), "\"tenant\";q=50;w=5");
        assert_eq!(limiter(100.0, 1).policy(), "\"tenant\";q=1;w=1");
        let slow = limiter(0.5, 1);
        let t0 = Instant::now();
        slow.take_at("a", t0);
        assert_eq!(slow.take_at("a", t0).retry_after, 2);
    }
}
