//! PostgreSQL implementation of [`crate::Store`] (being written on the `pg` branch).

use std::sync::Arc;

use crate::{crypto::Cipher, Result, Store, StoreError};

/// Connect to PostgreSQL and apply migrations.
pub async fn connect(_url: &str, _cipher: Cipher) -> Result<Arc<dyn Store>> {
    Err(StoreError::State(
        "the PostgreSQL backend is not built yet".into(),
    ))
}
