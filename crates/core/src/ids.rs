//! Identifier newtypes that parse rather than validate.
//!
//! A value of type [`Iccid`], [`Eid`], [`Imsi`], [`Imei`], [`Msisdn`], [`Ki`] or
//! [`Opc`] can only be built by a parser, so holding one is proof that it is
//! well formed. Every parse failure is an [`IdError`] carrying a stable machine
//! code (for API clients) and a human reason.

use std::fmt;

use serde::{Deserialize, Serialize};

/// How strictly identifiers are checked; set once per deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ValidationProfile {
    /// What the vendor documents define: lengths, digits and hex.
    #[default]
    Standard,
    /// `standard` plus the ICCID Luhn digit, the `89` prefix and the IMEI Luhn digit.
    Strict,
}

impl std::str::FromStr for ValidationProfile {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "standard" => Ok(Self::Standard),
            "strict" => Ok(Self::Strict),
            other => Err(format!(
                "unknown validation profile '{other}' (expected standard or strict)"
            )),
        }
    }
}

/// Why an identifier did not parse: a stable `code` and a human `reason`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct IdError {
    /// Stable machine code, e.g. `iccid_luhn`.
    pub code: &'static str,
    /// A sentence a person can act on.
    pub reason: String,
}

impl IdError {
    fn new(code: &'static str, reason: impl Into<String>) -> Self {
        Self {
            code,
            reason: reason.into(),
        }
    }
}

fn all_digits(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit())
}

/// True when the last digit of `digits` is the Luhn check digit of the rest.
pub fn luhn_valid(digits: &str) -> bool {
    let mut sum = 0u32;
    for (i, b) in digits.bytes().rev().enumerate() {
        let mut d = u32::from(b - b'0');
        if i % 2 == 1 {
            d *= 2;
            if d > 9 {
                d -= 9;
            }
        }
        sum += d;
    }
    sum.is_multiple_of(10)
}

/// ISO 7064 mod 97-10 check over a decimal string (as used by the EID).
pub fn mod97_valid(digits: &str) -> bool {
    digits
        .bytes()
        .fold(0u32, |acc, b| (acc * 10 + u32::from(b - b'0')) % 97)
        == 1
}

macro_rules! string_newtype {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// The identifier as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// Consume into the inner string.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }
    };
}

string_newtype!(
    /// Integrated Circuit Card Identifier: 19 or 20 digits (ITU-T E.118).
    Iccid
);
string_newtype!(
    /// eUICC identifier: 32 digits with an ISO 7064 mod 97-10 check.
    Eid
);
string_newtype!(
    /// International Mobile Subscriber Identity: 6 to 15 digits.
    Imsi
);
string_newtype!(
    /// International Mobile Equipment Identity: 15 digits.
    Imei
);
string_newtype!(
    /// Subscriber number in international form: 5 to 15 digits, an optional leading `+` dropped.
    Msisdn
);

impl Iccid {
    /// Parse an ICCID under the given profile. Surrounding white space is trimmed.
    pub fn parse(input: &str, profile: ValidationProfile) -> Result<Self, IdError> {
        let s = input.trim();
        if !all_digits(s) {
            return Err(IdError::new(
                "iccid_not_digits",
                format!("ICCID must contain only digits, got '{}'", clip(s)),
            ));
        }
        if !(19..=20).contains(&s.len()) {
            return Err(IdError::new(
                "iccid_invalid_length",
                format!("ICCID must be 19 or 20 digits, got {}", s.len()),
            ));
        }
        if profile == ValidationProfile::Strict {
            if !s.starts_with("89") {
                return Err(IdError::new(
                    "iccid_prefix",
                    "ICCID must start with 89 (telecom industry identifier)",
                ));
            }
            if !luhn_valid(s) {
                return Err(IdError::new(
                    "iccid_luhn",
                    "ICCID check digit (Luhn) does not match",
                ));
            }
        }
        Ok(Self(s.to_owned()))
    }
}

impl Eid {
    /// Parse an EID: 32 digits whose ISO 7064 mod 97-10 check holds.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim();
        if !all_digits(s) {
            return Err(IdError::new(
                "eid_not_digits",
                format!("EID must contain only digits, got '{}'", clip(s)),
            ));
        }
        if s.len() != 32 {
            return Err(IdError::new(
                "eid_invalid_length",
                format!("EID must be 32 digits, got {}", s.len()),
            ));
        }
        if !mod97_valid(s) {
            return Err(IdError::new(
                "eid_checksum",
                "EID check digits (ISO 7064 mod 97-10) do not match",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl Imsi {
    /// Parse an IMSI: 6 to 15 digits.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim();
        if !all_digits(s) {
            return Err(IdError::new(
                "imsi_not_digits",
                format!("IMSI must contain only digits, got '{}'", clip(s)),
            ));
        }
        if !(6..=15).contains(&s.len()) {
            return Err(IdError::new(
                "imsi_invalid_length",
                format!("IMSI must be 6 to 15 digits, got {}", s.len()),
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl Imei {
    /// Parse an IMEI: 15 digits; `strict` also checks the Luhn digit.
    pub fn parse(input: &str, profile: ValidationProfile) -> Result<Self, IdError> {
        let s = input.trim();
        if !all_digits(s) {
            return Err(IdError::new(
                "imei_not_digits",
                format!("IMEI must contain only digits, got '{}'", clip(s)),
            ));
        }
        if s.len() != 15 {
            return Err(IdError::new(
                "imei_invalid_length",
                format!("IMEI must be 15 digits, got {}", s.len()),
            ));
        }
        if profile == ValidationProfile::Strict && !luhn_valid(s) {
            return Err(IdError::new(
                "imei_luhn",
                "IMEI check digit (Luhn) does not match",
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl Msisdn {
    /// Parse an MSISDN: 5 to 15 digits after an optional leading `+`.
    pub fn parse(input: &str) -> Result<Self, IdError> {
        let s = input.trim();
        let digits = s.strip_prefix('+').unwrap_or(s);
        if !all_digits(digits) {
            return Err(IdError::new(
                "msisdn_not_digits",
                format!("MSISDN must contain only digits, got '{}'", clip(s)),
            ));
        }
        if !(5..=15).contains(&digits.len()) {
            return Err(IdError::new(
                "msisdn_invalid_length",
                format!("MSISDN must be 5 to 15 digits, got {}", digits.len()),
            ));
        }
        Ok(Self(digits.to_owned()))
    }
}

/// A 128-bit key held as 32 hex characters; never printed by `Debug`.
macro_rules! secret_key {
    ($(#[$doc:meta])* $name:ident, $label:literal, $prefix:literal) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name([u8; 16]);

        impl $name {
            /// Parse 32 hex characters (either case).
            pub fn parse(input: &str) -> Result<Self, IdError> {
                let s = input.trim();
                if s.len() != 32 {
                    return Err(IdError::new(
                        concat!($prefix, "_invalid_length"),
                        format!(concat!($label, " must be 32 hex characters, got {}"), s.len()),
                    ));
                }
                let mut out = [0u8; 16];
                hex::decode_to_slice(s, &mut out).map_err(|_| {
                    IdError::new(concat!($prefix, "_not_hex"), concat!($label, " must contain only hex characters 0-9 and A-F"))
                })?;
                Ok(Self(out))
            }
            /// The raw key bytes.
            pub fn bytes(&self) -> &[u8; 16] {
                &self.0
            }
            /// Upper-case hex, for encryption at rest only.
            pub fn to_hex(&self) -> String {
                hex::encode_upper(self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(concat!($label, "(redacted)"))
            }
        }
    };
}

secret_key!(
    /// Subscriber authentication key K (secret).
    Ki, "Ki", "ki"
);
secret_key!(
    /// Operator variant key OPc (secret).
    Opc, "OPc", "opc"
);
secret_key!(
    /// Operator variant key OP (secret), from which OPc is derived per SIM.
    Op, "OP", "op"
);

/// Shorten untrusted input before echoing it in an error message.
pub fn clip(s: &str) -> String {
    const MAX: usize = 40;
    if s.chars().count() <= MAX {
        s.to_owned()
    } else {
        let head: String = s.chars().take(MAX).collect();
        format!("{head}…")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const STD: ValidationProfile = ValidationProfile::Standard;
    const STRICT: ValidationProfile = ValidationProfile::Strict;

    /// Append the Luhn check digit to `body`.
    fn with_luhn(body: &str) -> String {
        (0..10)
            .map(|d| format!("{body}{d}"))
            .find(|s| luhn_valid(s))
            .unwrap()
    }

    /// Append the two ISO 7064 check digits to a 30-digit body.
    fn with_mod97(body: &str) -> String {
        let rem = format!("{body}00")
            .bytes()
            .fold(0u32, |a, b| (a * 10 + u32::from(b - b'0')) % 97);
        format!("{body}{:02}", 98 - rem)
    }

    #[test]
    fn iccid_codes() {
        assert_eq!(
            Iccid::parse("8986", STD).unwrap_err().code,
            "iccid_invalid_length"
        );
        assert_eq!(
            Iccid::parse("89860x68152080349618", STD).unwrap_err().code,
            "iccid_not_digits"
        );
        assert_eq!(Iccid::parse("", STD).unwrap_err().code, "iccid_not_digits");
        // The Simlessly example ICCID fails Luhn: accepted by standard, refused by strict.
        assert!(Iccid::parse(" 89860468152080349618", STD).is_ok());
        assert_eq!(
            Iccid::parse("89860468152080349618", STRICT)
                .unwrap_err()
                .code,
            "iccid_luhn"
        );
        assert_eq!(
            Iccid::parse(&with_luhn("9986046815208034961"), STRICT)
                .unwrap_err()
                .code,
            "iccid_prefix"
        );
        assert!(Iccid::parse(&with_luhn("8986046815208034961"), STRICT).is_ok());
    }

    #[test]
    fn eid_known_value() {
        // A real-format EID from the GSMA test range.
        let eid = with_mod97("890490320000000000000000000123");
        assert!(Eid::parse(&eid).is_ok());
        let mut bad = eid.into_bytes();
        bad[31] = if bad[31] == b'9' { b'0' } else { bad[31] + 1 };
        assert_eq!(
            Eid::parse(std::str::from_utf8(&bad).unwrap())
                .unwrap_err()
                .code,
            "eid_checksum"
        );
        assert_eq!(Eid::parse("1234").unwrap_err().code, "eid_invalid_length");
    }

    #[test]
    fn keys_are_redacted() {
        let ki = Ki::parse("465b5ce8b199b49faa5f0a2ee238a6bc").unwrap();
        assert_eq!(format!("{ki:?}"), "Ki(redacted)");
        assert_eq!(ki.to_hex(), "465B5CE8B199B49FAA5F0A2EE238A6BC");
        assert_eq!(
            Ki::parse("zz5b5ce8b199b49faa5f0a2ee238a6bc")
                .unwrap_err()
                .code,
            "ki_not_hex"
        );
        assert_eq!(Opc::parse("12").unwrap_err().code, "opc_invalid_length");
    }

    #[test]
    fn msisdn_plus() {
        assert_eq!(
            Msisdn::parse("+46708421488").unwrap().as_str(),
            "46708421488"
        );
        assert_eq!(Msisdn::parse("+").unwrap_err().code, "msisdn_not_digits");
    }

    proptest! {
        #[test]
        fn iccid_never_panics(s in "\\PC*") {
            let _ = Iccid::parse(&s, STD);
            let _ = Iccid::parse(&s, STRICT);
            let _ = Eid::parse(&s);
            let _ = Imsi::parse(&s);
            let _ = Imei::parse(&s, STRICT);
            let _ = Msisdn::parse(&s);
            let _ = Ki::parse(&s);
        }

        #[test]
        fn iccid_digits_19_20_accepted(s in "[0-9]{19,20}") {
            let parsed = Iccid::parse(&s, STD).unwrap();
            prop_assert_eq!(parsed.as_str(), s.as_str());
        }

        #[test]
        fn iccid_wrong_length_rejected(s in "[0-9]{1,18}|[0-9]{21,40}") {
            prop_assert_eq!(Iccid::parse(&s, STD).unwrap_err().code, "iccid_invalid_length");
        }

        #[test]
        fn strict_iccid_accepts_exactly_luhn(body in "89[0-9]{17}") {
            let good = with_luhn(&body);
            prop_assert!(Iccid::parse(&good, STRICT).is_ok());
            let last = good.as_bytes()[19] - b'0';
            let bad = format!("{}{}", &good[..19], (last + 1) % 10);
            prop_assert_eq!(Iccid::parse(&bad, STRICT).unwrap_err().code, "iccid_luhn");
        }

        #[test]
        fn eid_mod97_detects_single_digit_errors(body in "[0-9]{30}", pos in 0usize..32, delta in 1u8..10) {
            let eid = with_mod97(&body);
            prop_assert!(Eid::parse(&eid).is_ok());
            let mut b = eid.into_bytes();
            b[pos] = b'0' + (b[pos] - b'0' + delta) % 10;
            prop_assert_eq!(Eid::parse(std::str::from_utf8(&b).unwrap()).unwrap_err().code, "eid_checksum");
        }

        #[test]
        fn ki_hex_roundtrip(bytes in proptest::array::uniform16(any::<u8>())) {
            let h = hex::encode(bytes);
            let ki = Ki::parse(&h).unwrap();
            let opc = Opc::parse(&h.to_uppercase()).unwrap();
            prop_assert_eq!(ki.bytes(), &bytes);
            prop_assert_eq!(opc.bytes(), &bytes);
        }

        #[test]
        fn imei_strict_luhn(body in "[0-9]{14}") {
            let good = with_luhn(&body);
            prop_assert!(Imei::parse(&good, STRICT).is_ok());
            prop_assert!(Imei::parse(&good, STD).is_ok());
        }
    }
}
