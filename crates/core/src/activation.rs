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

    /// Examples of both forms, and the reason each malformed code is refused.
    #[test]
    fn examples_of_both_forms_and_reasons() {
        type Want<'a> = (&'a str, &'a str, Option<&'a str>, bool);
        let cases: &[(&str, Option<Want>)] = &[
            (
                "1$SMDP.GSMA.COM$04386-AGYFT-A74Y8-3F815",
                Some(("SMDP.GSMA.COM", "04386-AGYFT-A74Y8-3F815", None, false)),
            ),
            (
                "1$smdp.example.com$04386-AGYFT-A74Y8-3F815$$1",
                Some(("smdp.example.com", "04386-AGYFT-A74Y8-3F815", None, true)),
            ),
            (
                "1$smdp.example.com$MID$1.3.6.1.4.1.31746",
                Some(("smdp.example.com", "MID", Some("1.3.6.1.4.1.31746"), false)),
            ),
            (
                "1$smdp.example.com$MID$1.3.6.1.4.1.31746$1",
                Some(("smdp.example.com", "MID", Some("1.3.6.1.4.1.31746"), true)),
            ),
            (
                "LPA:1$rsp-1.example.org$0123456789ABCDEF0123456789ABCDEF",
                Some((
                    "rsp-1.example.org",
                    "0123456789ABCDEF0123456789ABCDEF",
                    None,
                    false,
                )),
            ),
        ];
        for (text, want) in cases {
            let ac = ActivationCode::parse(text).unwrap();
            let (host, mid, oid, cc) = want.unwrap();
            assert_eq!(ac.smdp_address, host);
            assert_eq!(ac.matching_id.as_str(), mid);
            assert_eq!(ac.oid.as_deref(), oid);
            assert_eq!(ac.confirmation_required, cc);
            assert_eq!(
                ac.to_string(),
                text.trim_start_matches("LPA:"),
                "formats back"
            );
        }
        let refused = [
            ("1$smdp.example.com$MID$$1$x", "3 to 5"),
            ("1$smdp.example.com$mid", "0-9, A-Z and '-'"),
            ("1$smdp.example.com$MID_1", "0-9, A-Z and '-'"),
            ("1$smdp.example.com$", "matching ID must be 1 to 255"),
            ("2$smdp.example.com$MID", "format ID must be 1"),
            ("1$smdp..com$MID", "not a valid host name"),
            ("1$smdp.example.com$MID$1.3.x", "not a dotted number"),
            ("1$smdp.example.com$MID$$yes", "flag must be 1"),
            ("1$smdp.example.com$MID$$0", "flag must be 1"),
        ];
        for (text, reason) in refused {
            let e = ActivationCode::parse(text).unwrap_err();
            assert!(e.reason.contains(reason), "{text}: {}", e.reason);
        }
        let long = format!("1$a.b${}", "A".repeat(256));
        assert!(ActivationCode::parse(&long).is_err());
    }

    #[test]
    fn the_stored_hash_verifies_a_device_hash_cc() {
        // What the LPA sends: SHA-256(SHA-256(CC) ‖ TransactionID), built from
        // the code the user typed. The SM-DP+ holds only SHA-256(CC).
        let stored = hash_confirmation_code("7391");
        let tx = hex::decode("0123456789ABCDEF0123456789ABCDEF").unwrap();
        let from_device: [u8; 32] = {
            let mut h = Sha256::new();
            h.update(Sha256::digest(b"7391"));
            h.update(&tx);
            h.finalize().into()
        };
        assert_eq!(hash_cc_for_transaction(&stored, &tx), from_device);
        // A wrong code, or the right code with another transaction, fails.
        assert_ne!(
            hash_cc_for_transaction(&hash_confirmation_code("7392"), &tx),
            from_device
        );
        assert_ne!(hash_cc_for_transaction(&stored, &[0u8; 16]), from_device);
        // Known answers, computed independently.
        assert_eq!(
            hex::encode(stored),
            "e25f201f9014599e00073db598a2603a9c05766965336d9b9c68c3d4081ee9a3"
        );
        assert_eq!(
            hex::encode(from_device),
            "54d2dcd36d4f2b1ff8b718ba457213f639f119270098177d02589bd655bc1818"
        );
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
        fn full_form_roundtrip(host in "[a-z]{1,10}(\\.[a-z0-9-]{1,8}){1,3}", mid in "[0-9A-Z-]{1,64}",
                               oid in proptest::option::of("[0-9]{1,4}(\\.[0-9]{1,4}){0,6}"), cc in any::<bool>()) {
            let mut ac = ActivationCode::new(&host, MatchingId::parse(&mid).unwrap(), cc);
            ac.oid = oid;
            let text = ac.to_string();
            prop_assert_eq!(text.matches('$').count(), 2 + usize::from(ac.oid.is_some() || cc) + usize::from(cc));
            prop_assert_eq!(ActivationCode::parse(&text).unwrap(), ac.clone());
            prop_assert_eq!(ActivationCode::parse(&format!("LPA:{text}")).unwrap(), ac);
        }

        #[test]
        fn matching_ids_outside_the_charset_are_refused(prefix in "[0-9A-Z-]{0,8}", bad in "[^0-9A-Z\\-$]", suffix in "[0-9A-Z-]{0,8}") {
            let mid = format!("{prefix}{bad}{suffix}");
            prop_assume!(!mid.trim().is_empty() && mid.trim() == mid);
            prop_assert!(MatchingId::parse(&mid).is_err());
            let e = ActivationCode::parse(&format!("1$smdp.example.com${mid}")).unwrap_err();
            prop_assert_eq!(e.code, "activation_code_invalid");
        }

        #[test]
        fn display_parse_roundtrip(host in "[a-z]{1,10}(\\.[a-z0-9]{1,8}){1,3}", mid in "[0-9A-Z-]{1,40}", cc in any::<bool>()) {
            let ac = ActivationCode::new(&host, MatchingId::parse(&mid).unwrap(), cc);
            prop_assert_eq!(ActivationCode::parse(&ac.to_string()).unwrap(), ac);
        }
    }
}
