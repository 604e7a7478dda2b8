//! SGP.22 §4.1 activation codes, matching IDs and confirmation-code hashing.
//!
//! An activation code reads `1$<SM-DP+ address>$<MatchingID>[$<OID>][$1]`;
//! the trailing `$1` says a confirmation code is required.

use std::fmt;

use rand::RngCore;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::ids::{clip, IdError};

/// A matching ID: 1 to 255 characters of 0-9, A-Z and '-'.
#[derive(Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct MatchingId(String);

impl MatchingId {
    /// Parse a matching ID supplied by a client.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim();
        if s.is_empty() || s.len() > 255 {
            return Err(IdError {
                code: "matching_id_invalid_length",
                reason: format!("matching ID must be 1 to 255 characters, got {}", s.len()),
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase() || b == b'-')
        {
            return Err(IdError {
                code: "matching_id_charset",
                reason: format!(
                    "matching ID may contain only 0-9, A-Z and '-', got '{}'",
                    clip(s)
                ),
            });
        }
        Ok(Self(s.to_owned()))
    }

    /// A fresh matching ID: 32 upper-case hex characters from the OS CSPRNG.
    pub fn generate() -> Self {
        let mut bytes = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Self(hex::encode_upper(bytes))
    }

    /// The matching ID as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for MatchingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for MatchingId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MatchingId({})", self.0)
    }
}

/// A parsed SGP.22 activation code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActivationCode {
    /// The SM-DP+ address (an FQDN).
    pub smdp_address: String,
    /// The matching ID.
    pub matching_id: MatchingId,
    /// The SM-DP+ OID, if given.
    pub oid: Option<String>,
    /// Whether the end user must enter a confirmation code.
    pub confirmation_required: bool,
}

impl ActivationCode {
    /// Build the code for a new profile.
    pub fn new(smdp_address: &str, matching_id: MatchingId, confirmation_required: bool) -> Self {
        Self {
            smdp_address: smdp_address.to_owned(),
            matching_id,
            oid: None,
            confirmation_required,
        }
    }

    /// Parse `1$address$matchingId[$oid][$1]`, rejecting malformed codes with a reason.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let err = |reason: String| IdError {
            code: "activation_code_invalid",
            reason,
        };
        let s = input.trim();
        let s = s.strip_prefix("LPA:").unwrap_or(s);
        let parts: Vec<&str> = s.split('$').collect();
        if parts.len() < 3 || parts.len() > 5 {
            return Err(err(format!(
                "activation code must have 3 to 5 '$'-separated fields, got {}",
                parts.len()
            )));
        }
        if parts[0] != "1" {
            return Err(err(format!(
                "activation code format ID must be 1, got '{}'",
                clip(parts[0])
            )));
        }
        let address = parts[1];
        let valid_host = !address.is_empty()
            && address.len() <= 255
            && address.split('.').all(|label| {
                !label.is_empty()
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if !valid_host {
            return Err(err(format!(
                "SM-DP+ address '{}' is not a valid host name",
                clip(address)
            )));
        }
        let matching_id = MatchingId::parse(parts[2]).map_err(|e| err(e.reason))?;
        let oid = match parts.get(3) {
            None | Some(&"") => None,
            Some(oid)
                if oid
                    .split('.')
                    .all(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())) =>
            {
                Some((*oid).to_owned())
            }
            Some(oid) => {
                return Err(err(format!(
                    "SM-DP+ OID '{}' is not a dotted number",
                    clip(oid)
                )))
            }
        };
        let confirmation_required = match parts.get(4) {
            None => false,
            Some(&"1") => true,
            Some(flag) => {
                return Err(err(format!(
                    "confirmation code flag must be 1, got '{}'",
                    clip(flag)
                )));
            }
        };
        Ok(Self {
            smdp_address: address.to_owned(),
            matching_id,
            oid,
            confirmation_required,
        })
    }
}

impl fmt::Display for ActivationCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "1${}${}", self.smdp_address, self.matching_id)?;
        match (&self.oid, self.confirmation_required) {
            (Some(oid), true) => write!(f, "${oid}$1"),
            (Some(oid), false) => write!(f, "${oid}"),
            (None, true) => f.write_str("$$1"),
            (None, false) => Ok(()),
        }
    }
}

/// SHA-256 of a confirmation code: the only form in which it is kept.
pub fn hash_confirmation_code(cc: &str) -> [u8; 32] {
    Sha256::digest(cc.as_bytes()).into()
}

/// SGP.22 hashCc = SHA-256(SHA-256(CC) ‖ TransactionID), from the stored hash.
pub fn hash_cc_for_transaction(stored_hash: &[u8; 32], transaction_id: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(stored_hash);
    h.update(transaction_id);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn formats_with_and_without_confirmation() {
        let mid = MatchingId::parse("ABCD-1234").unwrap();
        assert_eq!(
            ActivationCode::new("rsp.example.com", mid.clone(), false).to_string(),
            "1$rsp.example.com$ABCD-1234"
        );
        assert_eq!(
            ActivationCode::new("rsp.example.com", mid, true).to_string(),
            "1$rsp.example.com$ABCD-1234$$1"
        );
    }

    #[test]
    fn parses_both_forms() {
        let ac = ActivationCode::parse("LPA:1$smdp.example.com$04386-AGYFT-A74Y8-3F815").unwrap();
        assert_eq!(ac.matching_id.as_str(), "04386-AGYFT-A74Y8-3F815");
        assert!(!ac.confirmation_required);
        let ac = ActivationCode::parse("1$smdp.example.com$MID$1.3.6.1.4.1.31746$1").unwrap();
        assert_eq!(ac.oid.as_deref(), Some("1.3.6.1.4.1.31746"));
        assert!(ac.confirmation_required);
        let ac = ActivationCode::parse("1$smdp.example.com$MID$$1").unwrap();
        assert!(ac.confirmation_required && ac.oid.is_none());
        assert_eq!(ac.to_string(), "1$smdp.example.com$MID$$1");
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "2$a.b$MID",
            "1$$MID",
            "1$a.b$mid-lower",
            "1$a.b$MID$x.y",
            "1$a.b$MID$$2",
            "1$a b$MID",
            "1$a.b",
        ] {
            let e = ActivationCode::parse(bad).unwrap_err();
            assert_eq!(e.code, "activation_code_invalid", "{bad}");
        }
    }

    #[test]
    fn generated_ids_are_32_upper_hex_and_distinct() {
        let a = MatchingId::generate();
        let b = MatchingId::generate();
        assert_eq!(a.as_str().len(), 32);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'A'..=b'F').contains(&c)));
        assert_ne!(a, b);
    }

    #[test]
    fn hash_cc_matches_definition() {
        let stored = hash_confirmation_code("1234");
        let tx = [0xAAu8; 16];
        let mut direct = Sha256::new();
        direct.update(Sha256::digest(b"1234"));
        direct.update(tx);
        assert_eq!(
            hash_cc_for_transaction(&stored, &tx),
            <[u8; 32]>::from(direct.finalize())
        );
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "\\PC*") {
            let _ = ActivationCode::parse(&s);
        }

        #[test]
        fn display_parse_roundtrip(host in "[a-z]{1,10}(\\.[a-z0-9]{1,8}){1,3}", mid in "[0-9A-Z-]{1,40}", cc in any::<bool>()) {
            let ac = ActivationCode::new(&host, MatchingId::parse(&mid).unwrap(), cc);
            prop_assert_eq!(ActivationCode::parse(&ac.to_string()).unwrap(), ac);
        }
    }
}
