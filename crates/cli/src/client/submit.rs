//! `simbatch submit`: stream a CSV or NDJSON file to `POST /v1/batches`,
//! print the rejected rows, and with `--wait` follow the batch to its end.
//!
//! The file is sent as it is read (a body stream), so its size does not
//! bound memory. `.ndjson` and `.jsonl` files go as `application/x-ndjson`,
//! anything else as `text/csv`.

use std::path::{Path, PathBuf};

use clap::Args;
use reqwest::Method;
use serde_json::{json, Value};
use tokio_util::io::ReaderStream;

use super::http::{enc, print_json, ClientError, Remote};
use super::progress::{follow_and_report, summary_line};
use super::Outcome;

/// `simbatch submit` flags.
#[derive(Args, Debug)]
pub struct SubmitArgs {
    /// The operation of every row (omit for files with an `operation` column).
    #[arg(long)]
    pub operation: Option<String>,
    /// The file to upload: CSV with a header row, or NDJSON (`.ndjson`, `.jsonl`).
    #[arg(long)]
    pub file: PathBuf,
    /// `parallel` (default) or `sequential_per_iccid`.
    #[arg(long)]
    pub mode: Option<String>,
    /// Validate only: report rejected rows, store nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Follow the batch with a progress bar until it ends.
    #[arg(long)]
    pub wait: bool,
}

/// The media type for a file, by its extension.
pub fn media_type(path: &Path) -> &'static str {
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("ndjson" | "jsonl") => "application/x-ndjson",
        _ => "text/csv",
    }
}

/// The query string of the upload.
pub fn query(a: &SubmitArgs) -> String {
    let mut q = Vec::new();
    if let Some(op) = &a.operation {
        q.push(format!("operation={}", enc(op)));
    }
    if let Some(m) = &a.mode {
        q.push(format!("mode={}", enc(m)));
    }
    if a.dry_run {
        q.push("dry_run=true".to_owned());
    }
    if q.is_empty() {
        String::new()
    } else {
        format!("?{}", q.join("&"))
    }
}

/// One text line per rejected row: 1-based data row (header not counted), field, reason.
pub fn rejected_lines(answer: &Value) -> Vec<String> {
    let mut out: Vec<String> = answer["rejected"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            format!(
                "row {}: {}: {} ({})",
                r["index"].as_u64().map_or(0, |i| i + 1),
                r["field"].as_str().unwrap_or("-"),
                r["reason"].as_str().unwrap_or(""),
                r["code"].as_str().unwrap_or(""),
            )
        })
        .collect();
    if answer["rejected_truncated"].as_bool() == Some(true) {
        out.push(format!(
            "(more rejected rows not listed: {} in all)",
            answer["counts"]["rejected"]
        ));
    }
    out
}

/// Run `submit`.
pub async fn run(r: &Remote, a: SubmitArgs) -> Result<Outcome, ClientError> {
    let file = tokio::fs::File::open(&a.file)
        .await
        .map_err(|e| ClientError::Usage(format!("--file {}: {e}", a.file.display())))?;
    let body = reqwest::Body::wrap_stream(ReaderStream::with_capacity(file, 64 * 1024));
    let rb = r
        .request(Method::POST, &format!("/v1/batches{}", query(&a)))
        .header("content-type", media_type(&a.file))
        .body(body);
    let answer = r.json(rb).await?;
    let rejected = answer["rejected"].as_array().is_some_and(|v| !v.is_empty())
        || answer["counts"]["rejected"].as_i64().unwrap_or(0) > 0;
    let id = answer["id"].as_str().map(str::to_owned);
    if !r.json {
        for line in rejected_lines(&answer) {
            println!("{line}");
        }
        match &id {
            Some(id) if !a.wait => println!(
                "batch {id} {}: {} items, {} rejected",
                answer["status"].as_str().unwrap_or("?"),
                answer["counts"]["total"],
                answer["counts"]["rejected"]
            ),
            Some(_) => {}
            None => println!(
                "dry run: {} items, {} rejected; nothing stored",
                answer["counts"]["total"], answer["counts"]["rejected"]
            ),
        }
    }
    let (batch, outcome) = match (&id, a.wait) {
        (Some(id), true) => {
            let (b, o) = follow_and_report(r, id).await?;
            if !r.json {
                println!("{}", summary_line(&b));
            }
            (Some(b), o)
        }
        _ if rejected => (None, Outcome::Failures),
        _ => (None, Outcome::Success),
    };
    if r.json {
        print_json(&json!({ "submit": answer, "batch": batch }));
    }
    Ok(outcome)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args() -> SubmitArgs {
        SubmitArgs {
            operation: Some("activate".into()),
            file: "x.csv".into(),
            mode: Some("sequential_per_iccid".into()),
            dry_run: true,
            wait: false,
        }
    }

    #[test]
    fn query_and_media_type() {
        assert_eq!(
            query(&args()),
            "?operation=activate&mode=sequential_per_iccid&dry_run=true"
        );
        let none = SubmitArgs {
            operation: None,
            mode: None,
            dry_run: false,
            ..args()
        };
        assert_eq!(query(&none), "");
        assert_eq!(media_type(Path::new("a.NDJSON")), "application/x-ndjson");
        assert_eq!(media_type(Path::new("a.jsonl")), "application/x-ndjson");
        assert_eq!(media_type(Path::new("a.csv")), "text/csv");
        assert_eq!(media_type(Path::new("noext")), "text/csv");
    }

    #[test]
    fn rejected_rows_are_one_based_with_field_and_reason() {
        let a = json!({"counts": {"rejected": 5}, "rejected_truncated": true, "rejected": [
            {"index": 0, "field": "iccid", "code": "iccid_invalid_length", "reason": "ICCID must have 19 or 20 digits"},
            {"index": 4, "field": null, "code": "malformed_row", "reason": "bad quotes"}]});
        let lines = rejected_lines(&a);
        assert_eq!(
            lines[0],
            "row 1: iccid: ICCID must have 19 or 20 digits (iccid_invalid_length)"
        );
        assert_eq!(lines[1], "row 5: -: bad quotes (malformed_row)");
        assert!(lines[2].contains("5 in all"));
    }
}
