//! API keys verified lately, kept for a second.
//!
//! Every authenticated request used to read its key from the store before
//! doing its own work: one more round trip to a database thread, and while
//! a batch keeps the cores busy each hand-off can wait for a time slice (on
//! SQLite it was half the reads of `GET /v1/batches/{id}`). A key verified
//! in the last [`KEY_TTL`] is taken from here instead.
//!
//! Only the SHA-256 of the secret is kept (as the store keeps it), and a request must present the
//! same secret to be let in. The price is that a key revoked from another
//! process (`simbatch keys revoke`, or another replica) keeps working for
//! up to [`KEY_TTL`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use simbatch_store::crypto::{constant_time_eq, hash_secret};
use simbatch_store::Tenant;

/// How long a verified key is trusted without asking the store again.
pub const KEY_TTL: Duration = Duration::from_secs(1);

/// Keys kept at most; when full, expired ones go, and if none has, all do.
const MAX_KEYS: usize = 10_000;

/// Tenants of API keys verified lately (see the module doc).
#[derive(Debug)]
pub struct KeyCache {
    ttl: Duration,
    keys: Mutex<HashMap<String, Verified>>,
}

#[derive(Debug)]
struct Verified {
    secret_hash: String,
    tenant: Tenant,
    until: Instant,
}

impl Default for KeyCache {
    fn default() -> Self {
        Self::new(KEY_TTL)
    }
}

impl KeyCache {
    /// A cache that trusts a verified key for `ttl`.
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            keys: Mutex::new(HashMap::new()),
        }
    }

    /// The tenant of `key_id`, if it was verified with this `secret` less
    /// than the TTL ago.
    pub fn get(&self, key_id: &str, secret: &str) -> Option<Tenant> {
        let digest = hash_secret(secret);
        let keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        let v = keys.get(key_id)?;
        (v.until > Instant::now() && constant_time_eq(v.secret_hash.as_bytes(), digest.as_bytes()))
            .then(|| v.tenant.clone())
    }

    /// Remember that the store accepted `key_id` with `secret` for `tenant`.
    pub fn put(&self, key_id: &str, secret: &str, tenant: &Tenant) {
        let verified = Verified {
            secret_hash: hash_secret(secret),
            tenant: tenant.clone(),
            until: Instant::now() + self.ttl,
        };
        let mut keys = self.keys.lock().unwrap_or_else(|p| p.into_inner());
        if keys.len() >= MAX_KEYS && !keys.contains_key(key_id) {
            let now = Instant::now();
            keys.retain(|_, v| v.until > now);
            if keys.len() >= MAX_KEYS {
                keys.clear();
            }
        }
        keys.insert(key_id.to_owned(), verified);
    }

    /// How many keys are kept.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|p| p.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn acme() -> Tenant {
        Tenant {
            id: "t-1".into(),
            name: "acme".into(),
        }
    }

    #[test]
    fn a_verified_key_is_found_with_its_own_secret_only() {
        let cache = KeyCache::default();
        assert!(cache.get("sk_1", "s3cret").is_none());
        cache.put("sk_1", "s3cret", &acme());
        assert_eq!(cache.get("sk_1", "s3cret").unwrap().name, "acme");
        assert!(cache.get("sk_1", "s3cres").is_none(), "another secret");
        assert!(cache.get("sk_2", "s3cret").is_none(), "another key");
    }

    #[test]
    fn a_verified_key_expires() {
        let cache = KeyCache::new(Duration::from_millis(20));
        cache.put("sk_1", "s3cret", &acme());
        assert!(cache.get("sk_1", "s3cret").is_some());
        std::thread::sleep(Duration::from_millis(30));
        assert!(cache.get("sk_1", "s3cret").is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = KeyCache::new(Duration::from_secs(60));
        for n in 0..MAX_KEYS + 5 {
            cache.put(&format!("sk_{n}"), "s", &acme());
        }
        assert!(cache.len() <= MAX_KEYS, "{} keys kept", cache.len());
        assert!(cache.get(&format!("sk_{}", MAX_KEYS + 4), "s").is_some());
    }

    #[test]
    fn only_a_digest_of_the_secret_is_kept() {
        let cache = KeyCache::default();
        cache.put("sk_1", "plain-secret-value", &acme());
        let kept = format!("{:?}", cache.keys.lock().unwrap());
        assert!(!kept.contains("plain-secret-value"), "{kept}");
    }
}
