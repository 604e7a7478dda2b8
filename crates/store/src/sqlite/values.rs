//! Multi-row statements from typed rows.
//!
//! The hot paths write hundreds of rows per list. Each list becomes one
//! statement (or a few, under SQLite's bound-parameter limit) whose rows are
//! bound straight from borrowed fields: `INSERT … VALUES (…), (…)`, or, for
//! updates, a `WITH v(…) AS (VALUES …)` CTE that the statement joins.

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

/// The statements that write `rows`, `cols` bound per row by `bind`, in row
/// order; as many as the parameter limit needs (none for no rows).
pub(super) fn statements<'r, T>(
    shape: Shape,
    head: &str,
    cols: &[&str],
    tail: &str,
    rows: &'r [T],
    bind: impl Fn(&mut Separated<'_, 'r, Sqlite, &'static str>, &'r T),
) -> Vec<QueryBuilder<'r, Sqlite>> {
    let per = (MAX_PARAMS / cols.len().max(1)).max(1);
    rows.chunks(per)
        .map(|chunk| {
            let mut q = match shape {
                Shape::Insert => QueryBuilder::new(format!("{head} ")),
                Shape::Cte => QueryBuilder::new(format!("WITH v({}) AS (", cols.join(", "))),
            };
            q.push_values(chunk, |mut b, row| bind(&mut b, row));
            match shape {
                Shape::Insert => q.push(" ").push(tail),
                Shape::Cte => q.push(") ").push(tail),
            };
            q
        })
        .collect()
}

/// Run the statements of [`statements`], binding `after` once more after
/// the rows of each (the `?` in `tail`, such as the time); a constraint they
/// break is a [`crate::StoreError::Conflict`].
pub(super) async fn write<'r, T>(
    tx: &mut Transaction<'static, Sqlite>,
    shape: Shape,
    (head, cols, tail): (&str, &[&str], &str),
    rows: &'r [T],
    after: &[i64],
    bind: impl Fn(&mut Separated<'_, 'r, Sqlite, &'static str>, &'r T),
) -> Result<()> {
    for mut q in statements(shape, head, cols, tail, rows, bind) {
        let mut query = q.build();
        for v in after {
            query = query.bind(*v);
        }
        query.execute(&mut **tx).await.map_err(super::conflict)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_are_split_under_the_parameter_limit_in_order() {
        let rows: Vec<i64> = (0..20_000).collect();
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
        assert_eq!(qs.len(), 2);
        assert!(qs[0]
            .sql()
            .starts_with("INSERT INTO t (a, b) VALUES (?, ?), (?, ?)"));
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
