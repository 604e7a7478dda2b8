//! Migration 0009: outbox blocks on PostgreSQL are compressed with lz4
//! (the server this suite runs against is built with it), not pglz.

use simbatch_store::testing::{fresh_postgres_url, test_cipher};
use sqlx::postgres::PgPoolOptions;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outbox_blocks_use_lz4() {
    let url = fresh_postgres_url().await;
    let _store = simbatch_store::postgres::connect(&url, test_cipher())
        .await
        .expect("open PostgreSQL store (applies the migrations)");
    let pool = PgPoolOptions::new().connect(&url).await.unwrap();
    let method: String = sqlx::query_scalar(
        "SELECT attcompression::text FROM pg_attribute
         WHERE attrelid = 'outbox'::regclass AND attname = 'events'",
    )
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!(method, "l", "outbox.events compression method");
    // A block large enough to be compressed is stored with lz4.
    let text: String = (0..2000)
        .map(|n| format!("{n}\t{{\"order_id\":{n},\"status\":\"COMPLETED\"}}\n"))
        .collect();
    sqlx::query(
        "INSERT INTO outbox (id, tenant_id, type, created_at, count, events)
         VALUES (2000, 't', 'order.completed', 0, 2000, $1)",
    )
    .bind(&text)
    .execute(&pool)
    .await
    .unwrap();
    let (stored, back): (Option<String>, String) =
        sqlx::query_as("SELECT pg_column_compression(events), events FROM outbox WHERE id = 2000")
            .fetch_one(&pool)
            .await
            .unwrap();
    assert_eq!(stored.as_deref(), Some("lz4"));
    assert_eq!(back, text);
}
