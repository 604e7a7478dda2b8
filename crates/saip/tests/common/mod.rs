//! Shared helpers of the template tests: the TS.48 templates in
//! `shared/profile-templates/` and hex keys.

#![allow(dead_code)]

use std::path::PathBuf;

/// The shared directory beside the repository.
pub fn shared() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared")
}

/// Every template (file name, bytes), sorted by name.
pub fn templates() -> Vec<(String, Vec<u8>)> {
    let dir = shared().join("profile-templates");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "der"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&p).unwrap(),
            )
        })
        .collect();
    v.sort();
    v
}

/// 16 bytes from 32 hex digits.
pub fn h16(s: &str) -> [u8; 16] {
    hex::decode(s).unwrap().try_into().unwrap()
}
