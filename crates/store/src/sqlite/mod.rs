//! SQLite implementation of [`crate::Store`].

use std::sync::Arc;

use crate::{crypto::Cipher, Result, Store, StoreError};

/// Open (creating) the SQLite database and apply migrations.
pub async fn connect(_url: &str, _cipher: Cipher) -> Result<Arc<dyn Store>> {
    Err(StoreError::State(
        "the SQLite backend is not built yet".into(),
    ))
}
