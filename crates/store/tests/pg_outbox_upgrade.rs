//! Migration 0008 on a PostgreSQL database that already has events: each
//! old outbox row becomes a block of one with the same number, and numbers
//! the sweeper had freed are not handed out again.

use std::path::Path;

use simbatch_store::testing::{check_outbox_upgrade, fresh_postgres_url, test_cipher};
use sqlx::migrate::Migrator;
use sqlx::postgres::PgPoolOptions;

/// Apply the migrations before `version` from a copy of the directory, then
/// write three events and sweep the last.
async fn migrate_before(url: &str, version: u32, scratch: &Path) {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations/postgres");
    for entry in std::fs::read_dir(src).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name[..4].parse::<u32>().unwrap() < version {
            std::fs::copy(&path, scratch.join(&name)).unwrap();
        }
    }
    let pool = PgPoolOptions::new().connect(url).await.unwrap();
    Migrator::new(scratch)
        .await
        .unwrap()
        .run(&pool)
        .await
        .unwrap();
    for n in 1..=3 {
        sqlx::query(
            "INSERT INTO outbox (event_id, tenant_id, type, created_at, data) VALUES ($1, 'old', 'order.completed', 7, $2)",
        )
        .bind(format!("event-{n}"))
        .bind(format!(r#"{{"n":{n}}}"#))
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
    let url = fresh_postgres_url().await;
    migrate_before(&url, 8, dir.path()).await;

    let store = simbatch_store::postgres::connect(&url, test_cipher())
        .await
        .unwrap();
    // A webhook created now starts after every number handed out (3, swept).
    check_outbox_upgrade(store.as_ref(), 3).await;
}
