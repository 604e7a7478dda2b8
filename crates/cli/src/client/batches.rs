//! `simbatch batches list|counts|show|cancel|retry` and `simbatch sims show|export`.

use clap::Subcommand;
use serde_json::Value;

use super::export::{self, SimsExportArgs};
use super::http::{enc, print_json, seg, ClientError, Remote};
use super::progress::{follow_and_report, summary_line};
use super::Outcome;

/// `simbatch batches …`.
#[derive(Subcommand, Debug)]
pub enum BatchesAction {
    /// List batches, newest first.
    List {
        /// Only this status (e.g. PROCESSING, PARTIALLY_COMPLETED).
        #[arg(long)]
        status: Option<String>,
        /// Only this operation.
        #[arg(long)]
        operation: Option<String>,
        /// Page size (1–1000).
        #[arg(long)]
        limit: Option<u32>,
        /// The `next_cursor` of the previous page.
        #[arg(long)]
        cursor: Option<String>,
    },
    /// How many batches are in each state (the list's filters, no paging).
    Counts {
        /// Only this operation.
        #[arg(long)]
        operation: Option<String>,
        /// Created at or after (RFC 3339, e.g. 2026-11-01T00:00:00Z).
        #[arg(long)]
        created_after: Option<String>,
        /// Created before (RFC 3339).
        #[arg(long)]
        created_before: Option<String>,
    },
    /// Show one batch.
    Show {
        /// Batch id.
        id: String,
    },
    /// Cancel a batch: items not yet run are canceled.
    Cancel {
        /// Batch id.
        id: String,
    },
    /// Retry a batch's failed items as a new batch.
    Retry {
        /// Batch id.
        id: String,
        /// Follow the new batch until it ends.
        #[arg(long)]
        wait: bool,
    },
}

/// `simbatch sims …`.
#[derive(Subcommand, Debug)]
pub enum SimsAction {
    /// Show one SIM (secrets are never shown).
    Show {
        /// ICCID.
        iccid: String,
    },
    /// Download the SIM list (streamed to a file or stdout).
    Export(SimsExportArgs),
}

/// The list query string.
fn list_query(
    status: Option<&str>,
    operation: Option<&str>,
    limit: Option<u32>,
    cursor: Option<&str>,
) -> String {
    let mut q: Vec<String> = Vec::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v {
            q.push(format!("{k}={}", enc(&v)));
        }
    };
    put("status", status.map(str::to_owned));
    put("operation", operation.map(str::to_owned));
    put("limit", limit.map(|l| l.to_string()));
    put("cursor", cursor.map(str::to_owned));
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// One table row per batch.
fn list_lines(page: &Value) -> Vec<String> {
    let mut out = vec![format!(
        "{:<36}  {:<19}  {:<22}  {:>8}  {:>8}  {:>8}  {:>8}  created",
        "id", "status", "operation", "total", "done", "failed", "rejected"
    )];
    for b in page["data"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        let c = &b["counts"];
        out.push(format!(
            "{:<36}  {:<19}  {:<22}  {:>8}  {:>8}  {:>8}  {:>8}  {}",
            b["id"].as_str().unwrap_or("?"),
            b["status"].as_str().unwrap_or("?"),
            b["operation"].as_str().unwrap_or("(mixed)"),
            c["total"],
            c["completed"],
            c["failed"],
            c["rejected"],
            b["created_at"].as_str().unwrap_or(""),
        ));
    }
    if let Some(next) = page["next_cursor"].as_str() {
        out.push(format!("next page: --cursor {next}"));
    }
    out
}

/// The counts query string.
fn counts_query(operation: Option<&str>, after: Option<&str>, before: Option<&str>) -> String {
    let q: Vec<String> = [
        ("operation", operation),
        ("created_after", after),
        ("created_before", before),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| format!("{k}={}", enc(v))))
    .collect();
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// `STATE  N` lines in lifecycle order, then the total.
fn counts_lines(c: &Value) -> Vec<String> {
    let mut out: Vec<String> = simbatch_core::BatchStatus::ALL
        .iter()
        .map(|s| {
            let n = c["by_status"][s.as_str()].as_i64().unwrap_or(0);
            format!("{:<19}  {n:>8}", s.as_str())
        })
        .collect();
    let total = c["total"].as_i64().unwrap_or(0);
    out.push(format!("{:<19}  {total:>8}", "total"));
    out
}

/// `key: value` lines of a JSON object's fields.
pub fn field_lines(v: &Value) -> Vec<String> {
    v.as_object()
        .map(|o| {
            o.iter()
                .map(|(k, v)| match v {
                    Value::String(s) => format!("{k}: {s}"),
                    other => format!("{k}: {other}"),
                })
                .collect()
        })
        .unwrap_or_default()
}

fn show(r: &Remote, v: &Value, headline: Option<String>) {
    if r.json {
        print_json(v);
        return;
    }
    if let Some(h) = headline {
        println!("{h}");
    }
    for l in field_lines(v) {
        println!("{l}");
    }
}

/// Run `batches …`.
pub async fn run(r: &Remote, action: BatchesAction) -> Result<Outcome, ClientError> {
    match action {
        BatchesAction::List {
            status,
            operation,
            limit,
            cursor,
        } => {
            let q = list_query(
                status.as_deref(),
                operation.as_deref(),
                limit,
                cursor.as_deref(),
            );
            let page = r.get(&format!("/v1/batches{q}")).await?;
            if r.json {
                print_json(&page);
            } else {
                for l in list_lines(&page) {
                    println!("{l}");
                }
            }
            Ok(Outcome::Success)
        }
        BatchesAction::Show { id } => {
            let b = r.get(&format!("/v1/batches/{}", seg(&id))).await?;
            show(r, &b, None);
            Ok(Outcome::Success)
        }
        BatchesAction::Cancel { id } => {
            let b = r.post(&format!("/v1/batches/{}/cancel", seg(&id))).await?;
            show(r, &b, Some(summary_line(&b)));
            Ok(Outcome::Success)
        }
        BatchesAction::Counts {
            operation,
            created_after,
            created_before,
        } => {
            let q = counts_query(
                operation.as_deref(),
                created_after.as_deref(),
                created_before.as_deref(),
            );
            let c = r.get(&format!("/v1/batches/counts{q}")).await?;
            if r.json {
                print_json(&c);
            } else {
                for l in counts_lines(&c) {
                    println!("{l}");
                }
            }
            Ok(Outcome::Success)
        }
        BatchesAction::Retry { id, wait } => {
            let b = r.post(&format!("/v1/batches/{}/retry", seg(&id))).await?;
            let new_id = b["id"].as_str().unwrap_or_default().to_owned();
            if !wait {
                show(r, &b, Some(format!("retry batch {new_id} created")));
                return Ok(Outcome::Success);
            }
            let (done, outcome) = follow_and_report(r, &new_id).await?;
            if r.json {
                print_json(&done);
            } else {
                println!("{}", summary_line(&done));
            }
            Ok(outcome)
        }
    }
}

/// Run `sims …`.
pub async fn run_sims(r: &Remote, action: SimsAction) -> Result<Outcome, ClientError> {
    match action {
        SimsAction::Show { iccid } => {
            let s = r.get(&format!("/v1/sims/{}", seg(iccid.trim()))).await?;
            show(r, &s, None);
            Ok(Outcome::Success)
        }
        SimsAction::Export(a) => export::run_sims(r, a).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn list_query_and_table() {
        assert_eq!(list_query(None, None, None, None), "");
        assert_eq!(
            list_query(Some("PROCESSING"), Some("activate"), Some(5), Some("a b")),
            "?status=PROCESSING&operation=activate&limit=5&cursor=a+b"
        );
        let page = json!({"data": [{"id": "b1", "status": "COMPLETED", "operation": null,
            "counts": {"total": 3, "completed": 3, "failed": 0, "rejected": 0}, "created_at": "t"}],
            "next_cursor": "c1"});
        let lines = list_lines(&page);
        assert_eq!(lines.len(), 3);
        assert!(lines[1].starts_with("b1 ") && lines[1].contains("(mixed)"));
        assert_eq!(lines[2], "next page: --cursor c1");
        assert_eq!(counts_query(None, None, None), "");
        assert_eq!(
            counts_query(Some("activate"), Some("2026-01-01T00:00:00+01:00"), None),
            "?operation=activate&created_after=2026-01-01T00%3A00%3A00%2B01%3A00"
        );
        let c = json!({"total": 3, "by_status": {"PROCESSING": 1, "COMPLETED": 2}});
        assert_eq!(
            counts_lines(&c),
            [
                "INITIALISING                0",
                "PROCESSING                  1",
                "COMPLETED                   2",
                "PARTIALLY_COMPLETED         0",
                "CANCELLED                   0",
                "total                       3"
            ]
        );
        let mut fields = field_lines(&json!({"iccid": "89", "has_ki": true}));
        fields.sort();
        assert_eq!(fields, ["has_ki: true", "iccid: 89"]);
    }
}
