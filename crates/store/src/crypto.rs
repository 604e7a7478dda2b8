//! Encryption at rest (AES-256-GCM) and key hashing.
//!
//! Ciphertexts are stored as base64 of `nonce(12) ‖ ciphertext+tag`, with the
//! purpose (e.g. `ki`, `item`) bound as associated data so a value cannot be
//! moved to another column unnoticed.

use std::path::Path;

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use base64::Engine as _;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::StoreError;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The master-key cipher.
#[derive(Clone)]
pub struct Cipher {
    aead: Aes256Gcm,
}

impl std::fmt::Debug for Cipher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Cipher(redacted)")
    }
}

/// Where the master key came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySource {
    /// `SIMBATCH_MASTER_KEY`.
    Environment,
    /// An existing key file.
    File,
    /// A key file created now (mode 0600).
    CreatedFile,
}

impl Cipher {
    /// A cipher from 32 raw key bytes.
    pub fn new(key: &[u8; 32]) -> Self {
        Self {
            aead: Aes256Gcm::new(key.into()),
        }
    }

    /// Parse a master key given as 64 hex characters or base64 of 32 bytes.
    pub fn from_text(text: &str) -> Result<Self, String> {
        let t = text.trim();
        let bytes = hex::decode(t).ok().or_else(|| B64.decode(t).ok());
        match bytes {
            Some(b) if b.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&b);
                Ok(Self::new(&k))
            }
            _ => Err("master key must be 32 bytes, as 64 hex characters or base64".to_owned()),
        }
    }

    /// The key from `env_value` if set, else from `key_file`, creating that
    /// file (mode 0600) with a fresh random key when it does not exist.
    pub fn load(env_value: Option<&str>, key_file: &Path) -> Result<(Self, KeySource), String> {
        if let Some(v) = env_value.filter(|v| !v.trim().is_empty()) {
            return Ok((
                Self::from_text(v).map_err(|e| format!("SIMBATCH_MASTER_KEY: {e}"))?,
                KeySource::Environment,
            ));
        }
        match std::fs::read_to_string(key_file) {
            Ok(text) => Ok((
                Self::from_text(&text).map_err(|e| format!("{}: {e}", key_file.display()))?,
                KeySource::File,
            )),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                rand::rngs::OsRng.fill_bytes(&mut key);
                write_private(key_file, &hex::encode(key))
                    .map_err(|e| format!("{}: {e}", key_file.display()))?;
                Ok((Self::new(&key), KeySource::CreatedFile))
            }
            Err(e) => Err(format!("{}: {e}", key_file.display())),
        }
    }

    /// Encrypt `plain` for `purpose`.
    pub fn seal(&self, purpose: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; 12];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let ct = self
            .aead
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plain,
                    aad: purpose.as_bytes(),
                },
            )
            .expect("AES-GCM encryption of an in-memory buffer cannot fail");
        let mut out = Vec::with_capacity(12 + ct.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&ct);
        B64.encode(out)
    }

    /// Decrypt what [`Cipher::seal`] produced for the same purpose.
    pub fn open(&self, purpose: &str, sealed: &str) -> Result<Vec<u8>, StoreError> {
        let raw = B64
            .decode(sealed)
            .map_err(|_| StoreError::Corrupt(format!("{purpose}: not base64")))?;
        if raw.len() < 12 + 16 {
            return Err(StoreError::Corrupt(format!(
                "{purpose}: ciphertext too short"
            )));
        }
        let (nonce, ct) = raw.split_at(12);
        self.aead
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: purpose.as_bytes(),
                },
            )
            .map_err(|_| {
                StoreError::Corrupt(format!("{purpose}: cannot decrypt (wrong master key?)"))
            })
    }
}

/// Write a file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    opts.mode(0o600);
    let mut f = opts.open(path)?;
    f.write_all(contents.as_bytes())
}

/// SHA-256 hex of an API key secret (secrets are 256-bit random, so a plain hash suffices).
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compare two byte strings in time independent of where they differ
/// (secret hashes).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Associated data binding a sealed API key secret to its key id.
pub fn key_secret_purpose(key_id: &str) -> String {
    format!("api_key_secret:{key_id}")
}

/// Fresh random bytes as lower-case hex.
pub fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

/// A new Standard Webhooks signing secret: `whsec_` + base64 of 24 random bytes.
pub fn new_webhook_secret() -> String {
    let mut b = [0u8; 24];
    rand::rngs::OsRng.fill_bytes(&mut b);
    format!("whsec_{}", B64.encode(b))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_roundtrip_and_purpose_binding() {
        let c = Cipher::new(&[7u8; 32]);
        let s = c.seal("ki", b"465B5CE8B199B49FAA5F0A2EE238A6BC");
        assert!(!s.contains("465B5CE8"));
        assert_eq!(
            c.open("ki", &s).unwrap(),
            b"465B5CE8B199B49FAA5F0A2EE238A6BC"
        );
        assert!(c.open("opc", &s).is_err(), "purpose is bound");
        assert!(
            Cipher::new(&[8u8; 32]).open("ki", &s).is_err(),
            "wrong key fails"
        );
        assert!(c.open("ki", "!!").is_err());
    }

    #[test]
    fn key_file_created_private_then_reused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let (c1, src) = Cipher::load(None, &path).unwrap();
        assert_eq!(src, KeySource::CreatedFile);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777,
                0o600
            );
        }
        let (c2, src) = Cipher::load(None, &path).unwrap();
        assert_eq!(src, KeySource::File);
        assert_eq!(c2.open("x", &c1.seal("x", b"hi")).unwrap(), b"hi");
        let hexkey = "00".repeat(32);
        assert_eq!(
            Cipher::load(Some(&hexkey), &path).unwrap().1,
            KeySource::Environment
        );
        assert!(Cipher::from_text("short").is_err());
    }
}
