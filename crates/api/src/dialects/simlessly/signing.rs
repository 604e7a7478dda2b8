//! Simlessly's HMAC-SHA256 request signing.
//!
//! Headers: `Access-Key` (or `AccessKey`, or the older `AccessCode`),
//! `Timestamp` (Unix milliseconds), `Request-ID` (or `RequestID`),
//! `Signature`, and optionally `Sign-Method` (`SHA256`, `HmacSHA256` or
//! `HMAC-SHA256`). The signed data is the plain concatenation
//! `Timestamp + RequestID + AccessKey + raw body`, as the header texts were
//! sent; `Signature` is its hex HMAC-SHA256 under the SecretKey, compared in
//! constant time and ignoring hex case.
//!
//! AccessKey is the API key id and SecretKey the key secret (the part after
//! the `.` of a native token). A request is refused when its timestamp is
//! more than 10 minutes from now (either way), or when its Request-ID was
//! already used with the same AccessKey; used ids are stored durably, so a
//! replay is refused on every replica and after a restart.

use axum::http::HeaderMap;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use simbatch_store::{now_ms, Tenant};

use super::envelope::{Code, Refusal};
use crate::AppState;

type HmacSha256 = Hmac<Sha256>;

/// How far a Timestamp may be from now.
pub const MAX_SKEW_MS: i64 = 10 * 60 * 1000;
/// Longest Request-ID accepted.
pub const MAX_REQUEST_ID: usize = 128;

/// The signing headers of one request, as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedHeaders {
    /// AccessKey (the API key id).
    pub access_key: String,
    /// Timestamp text.
    pub timestamp: String,
    /// Request-ID text.
    pub request_id: String,
    /// Hex signature.
    pub signature: String,
}

/// The first present header among `names`, trimmed; a refusal naming the
/// first spelling when none is present or it is not text.
fn header(headers: &HeaderMap, names: &[&str]) -> Result<String, Refusal> {
    for name in names {
        if let Some(v) = headers.get(*name) {
            let text = v.to_str().map_err(|_| {
                Refusal::new(
                    Code::MissingHeader,
                    format!("the {name} header is not valid text"),
                )
            })?;
            let text = text.trim();
            if text.is_empty() {
                return Err(Refusal::new(
                    Code::MissingHeader,
                    format!("the {name} header is empty"),
                ));
            }
            return Ok(text.to_owned());
        }
    }
    Err(Refusal::new(
        Code::MissingHeader,
        format!("missing the {} header", names[0]),
    ))
}

/// Read the signing headers (both spellings of each).
pub fn read_headers(headers: &HeaderMap) -> Result<SignedHeaders, Refusal> {
    let access_key = header(headers, &["Access-Key", "AccessKey", "AccessCode"])?;
    let timestamp = header(headers, &["Timestamp"])?;
    let request_id = header(headers, &["Request-ID", "RequestID"])?;
    let signature = header(headers, &["Signature"])?;
    if let Some(m) = headers.get("Sign-Method") {
        let m = m.to_str().unwrap_or("").trim().to_ascii_uppercase();
        if !matches!(m.as_str(), "SHA256" | "HMACSHA256" | "HMAC-SHA256") {
            return Err(Refusal::new(
                Code::UnsupportedSignMethod,
                "Sign-Method must be SHA256 (HMAC-SHA256)",
            ));
        }
    }
    if request_id.len() > MAX_REQUEST_ID || request_id.chars().any(char::is_control) {
        return Err(Refusal::new(
            Code::MissingHeader,
            format!("Request-ID must be at most {MAX_REQUEST_ID} printable characters"),
        ));
    }
    Ok(SignedHeaders {
        access_key,
        timestamp,
        request_id,
        signature,
    })
}

fn mac(secret: &str, h: &SignedHeaders, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(h.timestamp.as_bytes());
    mac.update(h.request_id.as_bytes());
    mac.update(h.access_key.as_bytes());
    mac.update(body);
    mac
}

/// The upper-case hex signature of a request (what a client computes).
pub fn sign(
    secret: &str,
    timestamp: &str,
    request_id: &str,
    access_key: &str,
    body: &[u8],
) -> String {
    let h = SignedHeaders {
        access_key: access_key.to_owned(),
        timestamp: timestamp.to_owned(),
        request_id: request_id.to_owned(),
        signature: String::new(),
    };
    hex::encode_upper(mac(secret, &h, body).finalize().into_bytes())
}

/// Whether `h.signature` is the HMAC of the request under `secret` (any hex case).
pub fn signature_matches(secret: &str, h: &SignedHeaders, body: &[u8]) -> bool {
    match hex::decode(&h.signature) {
        Ok(sig) => mac(secret, h, body).verify_slice(&sig).is_ok(),
        Err(_) => false,
    }
}

/// Check the Timestamp: Unix milliseconds, within [`MAX_SKEW_MS`] of `now`.
pub fn check_timestamp(timestamp: &str, now: i64) -> Result<(), Refusal> {
    let ts: i64 = timestamp
        .parse()
        .ok()
        .filter(|_| timestamp.bytes().all(|b| b.is_ascii_digit()))
        .ok_or_else(|| {
            Refusal::new(
                Code::BadTimestamp,
                "Timestamp must be Unix time in milliseconds",
            )
        })?;
    if now - ts > MAX_SKEW_MS {
        return Err(Refusal::new(
            Code::BadTimestamp,
            "Timestamp is more than 10 minutes old; sign the request again",
        ));
    }
    if ts - now > MAX_SKEW_MS {
        return Err(Refusal::new(
            Code::BadTimestamp,
            "Timestamp is more than 10 minutes in the future; check the client clock",
        ));
    }
    Ok(())
}

/// Authenticate a signed request: the tenant of its AccessKey.
pub async fn authenticate(
    state: &AppState,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<Tenant, Refusal> {
    let h = read_headers(headers)?;
    let now = now_ms();
    let unknown = || Refusal::new(Code::UnknownAccessKey, "unknown or revoked AccessKey");
    if h.access_key.len() > 64 {
        return Err(unknown());
    }
    let (tenant, secret) = match state.store.key_secret(&h.access_key).await {
        Ok(Some(found)) => found,
        Ok(None) => return Err(unknown()),
        Err(e) => {
            tracing::error!(error = %e, "Simlessly key look-up failed");
            return Err(Refusal::internal());
        }
    };
    if !signature_matches(&secret, &h, body) {
        return Err(Refusal::new(
            Code::BadSignature,
            "Signature does not match: expected hex HMAC-SHA256 of Timestamp + RequestID + AccessKey + body under the SecretKey",
        ));
    }
    check_timestamp(&h.timestamp, now)?;
    match state
        .store
        .remember_request_id(&h.access_key, &h.request_id, now)
        .await
    {
        Ok(true) => Ok(tenant),
        Ok(false) => Err(Refusal::new(
            Code::ReplayedRequestId,
            format!(
                "Request-ID {} was already used; send a new one",
                h.request_id
            ),
        )),
        Err(e) => {
            tracing::error!(error = %e, "Simlessly request-id store failed");
            Err(Refusal::internal())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;
    use proptest::prelude::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn both_spellings_are_read() {
        let a = read_headers(&headers(&[
            ("Access-Key", "sk_1"),
            ("Timestamp", "1"),
            ("Request-ID", "r"),
            ("Signature", "ab"),
        ]))
        .unwrap();
        let b = read_headers(&headers(&[
            ("AccessKey", "sk_1"),
            ("Timestamp", "1"),
            ("RequestID", "r"),
            ("Signature", "ab"),
            ("Sign-Method", "sha256"),
        ]))
        .unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn missing_header_and_method_are_refused() {
        let e = read_headers(&headers(&[("Access-Key", "k")])).unwrap_err();
        assert_eq!(e.code, Code::MissingHeader);
        assert!(e.msg.contains("Timestamp"), "{}", e.msg);
        let e = read_headers(&headers(&[
            ("Access-Key", "k"),
            ("Timestamp", "1"),
            ("Request-ID", "r"),
            ("Signature", "ab"),
            ("Sign-Method", "MD5"),
        ]))
        .unwrap_err();
        assert_eq!(e.code, Code::UnsupportedSignMethod);
    }

    #[test]
    fn signature_is_hmac_of_the_concatenation_any_case() {
        // Reference value computed independently:
        // printf '1679999518968fc61e3ac-cff8-4ca8-8bf6-f7a5f2331b74sk_1{}' \
        //   | openssl dgst -sha256 -hmac secret
        let sig = sign(
            "secret",
            "1679999518968",
            "fc61e3ac-cff8-4ca8-8bf6-f7a5f2331b74",
            "sk_1",
            b"{}",
        );
        assert_eq!(
            sig,
            "F8FF3B898249C78549064C55933181E080AA9AD99D1E25E4498047F75D0AF482"
        );
        let mut h = SignedHeaders {
            access_key: "sk_1".into(),
            timestamp: "1679999518968".into(),
            request_id: "fc61e3ac-cff8-4ca8-8bf6-f7a5f2331b74".into(),
            signature: sig.to_lowercase(),
        };
        assert!(signature_matches("secret", &h, b"{}"));
        h.signature = sig.clone();
        assert!(signature_matches("secret", &h, b"{}"));
        assert!(!signature_matches("secret", &h, b"{ }"));
        assert!(!signature_matches("other", &h, b"{}"));
        h.signature = "not hex".into();
        assert!(!signature_matches("secret", &h, b"{}"));
    }

    #[test]
    fn timestamp_window() {
        let now = 1_700_000_000_000;
        assert!(check_timestamp(&now.to_string(), now).is_ok());
        assert!(check_timestamp(&(now - MAX_SKEW_MS).to_string(), now).is_ok());
        assert!(check_timestamp(&(now - MAX_SKEW_MS - 1).to_string(), now).is_err());
        assert!(check_timestamp(&(now + MAX_SKEW_MS + 1).to_string(), now).is_err());
        assert!(
            check_timestamp("1700000000", now).is_err(),
            "seconds are too old"
        );
        for bad in ["", "-5", "+5", "12a", "99999999999999999999999"] {
            assert_eq!(
                check_timestamp(bad, now).unwrap_err().code,
                Code::BadTimestamp
            );
        }
    }

    proptest! {
        #[test]
        fn timestamp_parser_never_panics(s in ".{0,40}") {
            let _ = check_timestamp(&s, 1_700_000_000_000);
        }

        #[test]
        fn only_the_exact_signature_verifies(body in proptest::collection::vec(any::<u8>(), 0..64), flip in 0usize..64) {
            let sig = sign("k", "1", "r", "a", &body);
            let mut h = SignedHeaders { access_key: "a".into(), timestamp: "1".into(), request_id: "r".into(), signature: sig.clone() };
            prop_assert!(signature_matches("k", &h, &body));
            let mut bytes = sig.into_bytes();
            bytes[flip] = if bytes[flip] == b'0' { b'1' } else { b'0' };
            h.signature = String::from_utf8(bytes).unwrap();
            prop_assert!(!signature_matches("k", &h, &body));
        }
    }
}
