//! Migration 0008 on a database that already has events: each old outbox row
//! becomes a block of one with the same number, and numbers the sweeper had
//! freed are not handed out again.

use std::path::Path;

use simbatch_store::sqlite::SqliteStore;
use simbatch_store::testing::{check_outbox_upgrade, test_cipher};
use sqlx::migrate::Migrator;
use sqlx::sqlite::SqlitePoolOptions;

/// Apply the migrations before `version` from a copy of the directory.
async fn migrate_before(url: &str, version: u32, scratch: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/sqlite");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        let n: u32 = name[..4].parse().unwrap();
        if n < version {
            std::fs::copy(&path, scratch.join(&name)).unwrap();
        }
    }
    let pool = SqlitePoolOptions::new()
        .connect(&format!("{url}?mode=rwc"))
        .await
        .unwrap();
    Migrator::new(scratch)
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for (id, data) in [(1, r#"{"n":1}"#), (2, r#"{"n":2}"#), (3, r#"{"n":3}"#)] {
        sqlx::query(
            "INSERT INTO outbox (event_id, tenant_id, type, created_at, data) VALUES (?1, 'old', 'order.completed', 7, ?2)",
        )
        .bind(format!("event-{id}"))
        .bind(data)
        .execute(&pool)
        .await
        .unwrap();
    }
    sqlx::query("DELETE FROM outbox WHERE id = 3")
        .execute(&pool)
        .await
        .unwrap();
    pool.close().await;
}

#[tokio::test]
async fn old_events_keep_their_numbers_and_freed_numbers_stay_used() {
    let dir = tempfile::tempdir().unwrap();
    let scratch = dir.path().join("migrations");
    std::fs::create_dir(&scratch).unwrap();
    let url = format!("sqlite://{}", dir.path().join("old.db").display());
    migrate_before(&url, 8, &scratch).await;

    let store = SqliteStore::connect(&url, test_cipher()).await.unwrap();
    // SQLite starts a new webhook after the highest number stored (2).
    check_outbox_upgrade(&store, 2).await;
}
