//! Shared shape of [`crate::Store::count_batches`]: every batch state once,
//! in [`BatchStatus::ALL`] order, zero when no batch is in it.

use simbatch_core::BatchStatus;

/// Turn `(status, count)` rows (absent states missing) into one count per
/// state. A row whose status is not a known state is ignored.
pub(crate) fn every_status(rows: Vec<(String, i64)>) -> Vec<(BatchStatus, i64)> {
    BatchStatus::ALL
        .iter()
        .map(|s| {
            let n = rows
                .iter()
                .filter(|(name, _)| name == s.as_str())
                .map(|(_, n)| *n)
                .sum();
            (*s, n)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_states_are_zero_and_order_is_fixed() {
        let got = every_status(vec![
            ("COMPLETED".into(), 3),
            ("PROCESSING".into(), 2),
            ("NOT_A_STATE".into(), 9),
        ]);
        let want: Vec<(BatchStatus, i64)> = BatchStatus::ALL
            .iter()
            .map(|s| {
                let n = match s {
                    BatchStatus::Completed => 3,
                    BatchStatus::Processing => 2,
                    _ => 0,
                };
                (*s, n)
            })
            .collect();
        assert_eq!(got, want);
    }
}
