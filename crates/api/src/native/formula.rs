//! Spreadsheet formula injection: how exported text cells are kept inert.
//!
//! A spreadsheet treats a CSV cell that starts with `=`, `+`, `-` or `@` as a
//! formula, and a leading tab or carriage return can hide such a start, so a
//! value an attacker controls (a custom field, a rate plan, an error reason
//! echoing input) could run when an operator opens an export. The policy:
//!
//! - **CSV**: a text cell that starts with one of those characters, after any
//!   leading single quotes, gets one more single quote in front (`=1+2`
//!   becomes `'=1+2`). Spreadsheets show it as text. Numbers, times and
//!   booleans are written by us, never guarded. The CSV importer removes
//!   exactly that quote again ([`unguard`]), so an export re-imports as the
//!   same items; the rule is reversible because values already starting with
//!   a quote before such a character are guarded too.
//! - **XLSX**: every value is a typed cell, text is a string cell, never a
//!   formula, so nothing runs on open; risky text cells also carry Excel's
//!   "quote prefix" style, so editing the cell keeps it text. The value
//!   itself is unchanged.
//! - **NDJSON** is not a spreadsheet format and is written unchanged.

/// Characters that make a spreadsheet read a cell as a formula.
const TRIGGERS: [char; 6] = ['=', '+', '-', '@', '\t', '\r'];

/// Whether `v`, written as a spreadsheet cell, could be read as a formula
/// (or is a guarded value, which must be guarded again to stay reversible).
pub fn is_risky(v: &str) -> bool {
    v.trim_start_matches('\'').starts_with(TRIGGERS)
}

/// The CSV form of a text cell: `v`, or `'` + `v` when [`is_risky`].
pub fn guard(v: &str) -> String {
    if is_risky(v) {
        format!("'{v}")
    } else {
        v.to_owned()
    }
}

/// Undo [`guard`] on an imported CSV cell (no change to any other value).
pub fn unguard(v: String) -> String {
    if v.starts_with('\'') && is_risky(&v) {
        v[1..].to_owned()
    } else {
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn risky_starts_are_quoted() {
        for v in ["=1+2", "+49170", "-5", "@SUM(A1)", "\t=x", "\r=x"] {
            assert_eq!(guard(v), format!("'{v}"), "{v:?}");
        }
        for v in [
            "",
            "plan-a",
            "8988247000000000001",
            "a=b",
            " =x",
            "{\"k\":\"=x\"}",
        ] {
            assert_eq!(guard(v), v, "{v:?}");
        }
    }

    #[test]
    fn guard_then_unguard_is_identity() {
        for v in [
            "=1+2", "'=1+2", "''@x", "'plain", "plain", "", "'", "-", "=", "'-3", "x'=",
        ] {
            assert_eq!(unguard(guard(v)), v, "{v:?}");
        }
    }

    #[test]
    fn unguard_leaves_ordinary_quotes_alone() {
        assert_eq!(unguard("'hello".into()), "'hello");
        assert_eq!(unguard("'=x".into()), "=x");
    }
}
