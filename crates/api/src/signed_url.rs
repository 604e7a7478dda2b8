//! Presigned links: a path on this server that anyone holding the link may
//! GET until it expires, without headers, the way an S3 presigned URL works.
//!
//! The link carries `expires` (Unix seconds) and `signature`, the lower-case
//! hex HMAC-SHA256 of `<path>\n<expires>` under a server key. The key is a
//! platform-wide secret kept sealed in the store ([`signer`]), so every
//! replica signs and verifies alike. Changing the path or the expiry breaks
//! the signature; the comparison is constant-time.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use simbatch_store::{Store, StoreError};

type HmacSha256 = Hmac<Sha256>;

/// Name of the server secret that signs links.
pub const KEY_NAME: &str = "url_signing";

/// Why a link is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The expiry has passed.
    #[error("the link has expired")]
    Expired,
    /// The signature is missing, not hex, or does not match.
    #[error("the link signature is not valid")]
    BadSignature,
}

/// Signs and verifies links with one key.
#[derive(Clone)]
pub struct UrlSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UrlSigner(redacted)")
    }
}

impl UrlSigner {
    /// A signer over `key` (any length; 32 random bytes in practice).
    pub fn new(key: &[u8]) -> Self {
        Self { key: key.to_vec() }
    }

    fn mac(&self, path: &str, expires: i64) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC accepts any key length");
        mac.update(path.as_bytes());
        mac.update(b"\n");
        mac.update(expires.to_string().as_bytes());
        mac
    }

    /// The signature of `path` valid until `expires` (Unix seconds).
    pub fn signature(&self, path: &str, expires: i64) -> String {
        hex::encode(self.mac(path, expires).finalize().into_bytes())
    }

    /// `path?expires=<expires>&signature=<hex>`; `path` must not carry a query.
    pub fn sign(&self, path: &str, expires: i64) -> String {
        format!(
            "{path}?expires={expires}&signature={}",
            self.signature(path, expires)
        )
    }

    /// Check a link's `expires` and `signature` for `path` at `now` (Unix seconds).
    pub fn verify(
        &self,
        path: &str,
        expires: i64,
        signature: &str,
        now: i64,
    ) -> Result<(), LinkError> {
        let sig = hex::decode(signature.trim()).map_err(|_| LinkError::BadSignature)?;
        self.mac(path, expires)
            .verify_slice(&sig)
            .map_err(|_| LinkError::BadSignature)?;
        if now > expires {
            return Err(LinkError::Expired);
        }
        Ok(())
    }
}

/// The deployment's signer, its key created on first use.
pub async fn signer(store: &dyn Store) -> Result<UrlSigner, StoreError> {
    Ok(UrlSigner::new(&store.server_secret(KEY_NAME).await?))
}

/// Unix seconds, now.
pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let s = UrlSigner::new(b"k");
        let link = s.sign("/x/y.xlsx", 1000);
        let sig = link.split("signature=").nth(1).unwrap();
        assert!(link.starts_with("/x/y.xlsx?expires=1000&signature="));
        assert_eq!(s.verify("/x/y.xlsx", 1000, sig, 999), Ok(()));
        assert_eq!(s.verify("/x/y.xlsx", 1000, sig, 1000), Ok(()));
        assert_eq!(
            s.verify("/x/y.xlsx", 1000, &sig.to_uppercase(), 1),
            Ok(()),
            "hex case does not matter"
        );
    }

    #[test]
    fn refusals() {
        let s = UrlSigner::new(b"k");
        let sig = s.signature("/a", 100);
        assert_eq!(s.verify("/a", 100, &sig, 101), Err(LinkError::Expired));
        assert_eq!(s.verify("/b", 100, &sig, 1), Err(LinkError::BadSignature));
        assert_eq!(s.verify("/a", 200, &sig, 1), Err(LinkError::BadSignature));
        assert_eq!(s.verify("/a", 100, "zz", 1), Err(LinkError::BadSignature));
        assert_eq!(s.verify("/a", 100, "", 1), Err(LinkError::BadSignature));
        assert_eq!(
            UrlSigner::new(b"other").verify("/a", 100, &sig, 1),
            Err(LinkError::BadSignature)
        );
    }
}
