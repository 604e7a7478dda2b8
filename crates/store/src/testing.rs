//! Test support (feature `testing`): throwaway databases and a fixed cipher,
//! for the conformance suite and for other crates' tests.

use std::path::Path;

use sqlx::{Connection, Executor, PgConnection};

use crate::crypto::Cipher;

/// Server the PostgreSQL tests use unless `SIMBATCH_TEST_PG` says otherwise.
pub const DEFAULT_TEST_PG: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// Test databases older than this are dropped by the next test process.
const STALE_AFTER_SECS: u64 = 3600;

/// Create a uniquely named, empty database (`simbatch_t_<unix secs>_<uuid>`) on
/// the server named by `SIMBATCH_TEST_PG` and return its URL. The first call in
/// a process also drops test databases older than an hour, so runs do not pile
/// up databases on a developer's server; younger ones may belong to a run in
/// progress and are left alone.
///
/// # Panics
/// When PostgreSQL is unreachable or the database cannot be created: tests
/// must fail loudly rather than pass without PostgreSQL.
pub async fn fresh_postgres_url() -> String {
    let base = std::env::var("SIMBATCH_TEST_PG").unwrap_or_else(|_| DEFAULT_TEST_PG.to_owned());
    let mut conn = PgConnection::connect(&base).await.unwrap_or_else(|e| {
        panic!(
            "PostgreSQL for the tests is unreachable at {base}: {e}. \
             Start PostgreSQL or point SIMBATCH_TEST_PG at a server where we may create databases."
        )
    });
    static SWEPT: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    SWEPT.get_or_init(|| drop_stale(&mut conn)).await;
    let name = format!(
        "simbatch_t_{}_{}",
        unix_secs(),
        uuid::Uuid::new_v4().simple()
    );
    conn.execute(format!("CREATE DATABASE {name}").as_str())
        .await
        .unwrap_or_else(|e| panic!("cannot create test database {name} on {base}: {e}"));
    let _ = conn.close().await;
    with_database(&base, &name)
}

fn unix_secs() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Best effort: drop `simbatch_t_<secs>_…` databases created over an hour ago.
async fn drop_stale(conn: &mut PgConnection) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'simbatch\\_t\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    let cutoff = unix_secs().saturating_sub(STALE_AFTER_SECS);
    for name in names {
        let created = name
            .strip_prefix("simbatch_t_")
            .and_then(|r| r.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        // Names without a timestamp come from older versions of this helper: stale too.
        if created.is_none_or(|t| t < cutoff)
            && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
        {
            let _ = conn
                .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                .await;
        }
    }
}

/// `base` with its database name replaced by `name` (query string kept).
fn with_database(base: &str, name: &str) -> String {
    let (main, query) = match base.split_once('?') {
        Some((m, q)) => (m, format!("?{q}")),
        None => (base, String::new()),
    };
    let host_start = main.find("://").map_or(0, |i| i + 3);
    let root = match main[host_start..].find('/') {
        Some(i) => &main[..host_start + i],
        None => main,
    };
    format!("{root}/{name}{query}")
}

/// The file of the SQLite database that [`fresh_sqlite_url`] names.
pub fn fresh_sqlite_path(dir: &Path) -> std::path::PathBuf {
    dir.join("simbatch-test.db")
}

/// A URL for a new SQLite database file inside `dir`.
pub fn fresh_sqlite_url(dir: &Path) -> String {
    format!("sqlite://{}", fresh_sqlite_path(dir).display())
}

/// A fixed master key, for tests only.
pub fn test_cipher() -> Cipher {
    Cipher::new(&[42u8; 32])
}

/// After the outbox-blocks migration (0008) on a database whose tenant
/// `old` had events 1 to 3 and whose event 3 was swept: events 1 and 2 read
/// back with their numbers, a new webhook starts at `hook_cursor`, and the
/// next event is numbered 4.
///
/// # Panics
/// When any of that does not hold.
pub async fn check_outbox_upgrade(store: &dyn crate::Store, hook_cursor: i64) {
    let old = store.events_after("old", 0, 10).await.unwrap();
    let got: Vec<_> = old
        .iter()
        .map(|e| {
            (
                e.seq,
                e.id.as_str(),
                e.kind.as_str(),
                e.created_at,
                e.data["n"].as_i64(),
            )
        })
        .collect();
    assert_eq!(
        got,
        [
            (1, "event-1", "order.completed", 7, Some(1)),
            (2, "event-2", "order.completed", 7, Some(2))
        ]
    );
    assert_eq!(store.events_after("old", 1, 10).await.unwrap(), old[1..]);
    store.create_key("acme").await.unwrap();
    let t = store.tenant_by_name("acme").await.unwrap().unwrap().id;
    let hook = store
        .create_webhook(&t, "https://example.com/h")
        .await
        .unwrap();
    assert_eq!(hook.cursor, hook_cursor);
    let b = store
        .create_batch(&crate::NewBatch {
            tenant_id: t.clone(),
            operation: Some(simbatch_core::Operation::Activate),
            mode: simbatch_core::BatchMode::Parallel,
            source: "native".into(),
            external_ref: None,
            parent_id: None,
        })
        .await
        .unwrap();
    store.seal_batch(&t, &b.id).await.unwrap();
    let new = store.events_after(&t, 0, 10).await.unwrap();
    assert_eq!(new.len(), 1, "an empty batch ends at once: {new:?}");
    assert_eq!(new[0].seq, 4, "3 was handed out before, and swept");
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_name_is_replaced() {
        assert_eq!(
            super::with_database("postgres://u@h:5432/postgres", "x"),
            "postgres://u@h:5432/x"
        );
        assert_eq!(
            super::with_database("postgres://u@h/db?sslmode=disable", "x"),
            "postgres://u@h/x?sslmode=disable"
        );
        assert_eq!(
            super::with_database("postgres://u@h", "x"),
            "postgres://u@h/x"
        );
    }
}
