//! Multi-row statements from typed rows.
//!
//! The hot paths write thousands of rows per list. Each list becomes a few
//! statements of at most [`MAX_ROWS`] rows whose rows are bound straight
//! from borrowed fields: `INSERT … VALUES (…), (…)`, or, for updates, a
//! `WITH v(…) AS (VALUES …)` CTE that the statement joins.

use sqlx::query_builder::Separated;
use sqlx::{QueryBuilder, Sqlite, Transaction};

use crate::Result;

/// Most bound parameters per statement (SQLite allows 32,766).
pub(super) const MAX_PARAMS: usize = 32_000;

/// How a statement takes its rows.
#[derive(Debug, Clone, Copy)]
pub(super) enum Shape {
    /// `<head> VALUES (…), (…) <tail>`: an insert.
    Insert,
    /// `WITH v(<cols>) AS (VALUES (…), (…)) <tail>`: the statement reads `v`.
    Cte,
}

/// Most rows per statement. A list is written a few hundred rows at a time,
/// so that [`write`] builds each statement while the one before it runs on
/// the writer thread, which otherwise waits for every statement's binds.
pub(super) const MAX_ROWS: usize = 500;

/// Rows per statement for `cols` columns: at most [`MAX_ROWS`], under
/// [`MAX_PARAMS`].
fn rows_per_statement(cols: usize) -> usize {
    (MAX_PARAMS / cols.max(1)).clamp(1, MAX_ROWS)
}

/// The statement that writes `part`, `cols` bound per row by `bind`.
fn statement<'r, T>(
    shape: Shape,
    (head, cols, tail): (&str, &[&str], &str),
    part: &'r [T],
    bind: &impl Fn(&mut Separated<'_, 'r, Sqlite, &'static str>, &'r T),
) -> QueryBuilder<'r, Sqlite> {
    let mut q = match shape {
        Shape::Insert => QueryBuilder::new(format!("{head} ")),
        Shape::Cte => QueryBuilder::new(format!("WITH v({}) AS (", cols.join(", "))),
    };
    q.push_values(part, |mut b, row| bind(&mut b, row));
    match shape {
        Shape::Insert => q.push(" ").push(tail),
        Shape::Cte => q.push(") ").push(tail),
    };
    q
}

/// The statements that write `rows`, `cols` bound per row by `bind`, in row
/// order; as many as [`rows_per_statement`] needs (none for no rows).
pub(super) fn statements<'r, T>(
    shape: Shape,
    head: &str,
    cols: &[&str],
    tail: &str,
    rows: &'r [T],
    bind: impl Fn(&mut Separated<'_, 'r, Sqlite, &'static str>, &'r T),
) -> Vec<QueryBuilder<'r, Sqlite>> {
    rows.chunks(rows_per_statement(cols.len()))
        .map(|part| statement(shape, (head, cols, tail), part, &bind))
        .collect()
}

/// Run the statements of [`statements`], binding `after` once more after
/// the rows of each (the `?` in `tail`, such as the time); each is built
/// while the one before it runs. A constraint they break is a
/// [`crate::StoreError::Conflict`].
pub(super) async fn write<'r, T>(
    tx: &mut Transaction<'static, Sqlite>,
    shape: Shape,
    (head, cols, tail): (&str, &[&str], &str),
    rows: &'r [T],
    after: &[i64],
    bind: impl Fn(&mut Separated<'_, 'r, Sqlite, &'static str>, &'r T),
) -> Result<()> {
    let mut parts = rows.chunks(rows_per_statement(cols.len()));
    let build = |part| statement(shape, (head, cols, tail), part, &bind);
    let mut next = parts.next().map(build);
    while let Some(mut q) = next {
        let mut query = q.build();
        for v in after {
            query = query.bind(*v);
        }
        // `join!` polls the statement first, which hands it to the writer
        // thread; the next one is built meanwhile.
        let (done, built) =
            tokio::join!(query.execute(&mut **tx), async { parts.next().map(build) });
        done.map_err(super::conflict)?;
        next = built;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_split_into_bounded_statements_in_order() {
        let rows: Vec<i64> = (0..1_200).collect();
        let qs = statements(
            Shape::Insert,
            "INSERT INTO t (a, b)",
            &["a", "b"],
            "",
            &rows,
            |b, r| {
                b.push_bind(*r).push_bind(*r);
            },
        );
        assert_eq!(qs.len(), 3);
        assert!(qs[0]
            .sql()
            .starts_with("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"));
        assert_eq!(qs[2].sql().matches('(').count(), 1 + 200, "the rest");
        assert_eq!(rows_per_statement(100), 320, "under the parameter limit");
        let none: Vec<i64> = Vec::new();
        assert!(
            statements(Shape::Cte, "", &["a"], "SELECT 1", &none, |b, r| {
                b.push_bind(*r);
            })
            .is_empty()
        );
        let one = statements(
            Shape::Cte,
            "",
            &["a", "b"],
            "SELECT a FROM v",
            &rows[..1],
            |b, r| {
                b.push_bind(*r).push_bind(*r);
            },
        );
        assert_eq!(
            one[0].sql(),
            "WITH v(a, b) AS (VALUES (?, ?)) SELECT a FROM v"
        );
    }
}
