//! Following a batch until it ends: a progress bar (done/total, rate, ETA)
//! on stderr when stderr is a terminal, nothing drawn otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::Value;
use simbatch_core::{BatchStatus, Counts};

use super::http::{print_json, seg, ClientError, Remote};
use super::Outcome;

/// How often the batch is polled.
pub const POLL: Duration = Duration::from_millis(500);

/// Items that reached a final state (rejected ones included).
pub fn done(c: &Counts) -> u64 {
    (c.total - c.approved - c.processing).max(0) as u64
}

/// The batch's counts and status from its JSON.
pub fn parse(b: &Value) -> Result<(BatchStatus, Counts), ClientError> {
    let bad = |what: &str| ClientError::Api {
        status: 200,
        problem: serde_json::json!({"code": "unexpected_answer", "detail": format!("the batch has no valid {what}")}),
    };
    let status: BatchStatus =
        serde_json::from_value(b["status"].clone()).map_err(|_| bad("status"))?;
    let counts: Counts = serde_json::from_value(b["counts"].clone()).map_err(|_| bad("counts"))?;
    Ok((status, counts))
}

/// Exit outcome of a finished batch: success only when every item completed.
pub fn outcome(status: BatchStatus) -> Outcome {
    if status == BatchStatus::Completed {
        Outcome::Success
    } else {
        Outcome::Failures
    }
}

fn bar() -> ProgressBar {
    let target = if std::io::stderr().is_terminal() {
        ProgressDrawTarget::stderr()
    } else {
        ProgressDrawTarget::hidden()
    };
    let bar = ProgressBar::with_draw_target(Some(0), target);
    if let Ok(style) = ProgressStyle::with_template(
        "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} items  {per_sec}  ETA {eta}  {msg}",
    ) {
        bar.set_style(style);
    }
    bar
}

/// Poll batch `id` until it is terminal; returns its last JSON.
pub async fn follow(r: &Remote, id: &str) -> Result<Value, ClientError> {
    let bar = bar();
    let path = format!("/v1/batches/{}", seg(id));
    loop {
        let b = match r.get(&path).await {
            Ok(b) => b,
            // Over the tenant's rate limit: keep following, more slowly.
            Err(ClientError::Api { status: 429, .. }) => {
                tokio::time::sleep(POLL * 4).await;
                continue;
            }
            Err(e) => return Err(e),
        };
        let (status, counts) = parse(&b)?;
        bar.set_length(counts.total.max(0) as u64);
        bar.set_position(done(&counts));
        bar.set_message(format!(
            "{} failed {} rejected {}",
            status.as_str(),
            counts.failed,
            counts.rejected
        ));
        if status.is_terminal() {
            bar.finish_and_clear();
            return Ok(b);
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One line summing up a batch.
pub fn summary_line(b: &Value) -> String {
    let c = &b["counts"];
    format!(
        "batch {} {}: total {} completed {} failed {} rejected {} canceled {}",
        b["id"].as_str().unwrap_or("?"),
        b["status"].as_str().unwrap_or("?"),
        c["total"],
        c["completed"],
        c["failed"],
        c["rejected"],
        c["canceled"],
    )
}

/// Follow a batch, then print it; the exit outcome follows its final status.
pub async fn follow_and_report(r: &Remote, id: &str) -> Result<(Value, Outcome), ClientError> {
    let b = follow(r, id).await?;
    let (status, _) = parse(&b)?;
    Ok((b, outcome(status)))
}

/// `simbatch watch ID`.
pub async fn watch_command(r: &Remote, id: &str) -> Result<Outcome, ClientError> {
    let (b, o) = follow_and_report(r, id).await?;
    if r.json {
        print_json(&b);
    } else {
        println!("{}", summary_line(&b));
    }
    Ok(o)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn done_counts_terminal_items_and_outcome_needs_completed() {
        let c = Counts {
            total: 10,
            approved: 3,
            processing: 2,
            completed: 4,
            rejected: 1,
            ..Default::default()
        };
        assert_eq!(done(&c), 5);
        assert_eq!(outcome(BatchStatus::Completed), Outcome::Success);
        assert_eq!(outcome(BatchStatus::PartiallyCompleted), Outcome::Failures);
        assert_eq!(outcome(BatchStatus::Cancelled), Outcome::Failures);
        let b = serde_json::json!({"id": "x", "status": "COMPLETED", "counts": {"total": 1, "approved": 0,
            "rejected": 0, "processing": 0, "completed": 1, "failed": 0, "canceled": 0}});
        assert_eq!(parse(&b).unwrap().0, BatchStatus::Completed);
        assert!(parse(&serde_json::json!({"status": "NOPE"})).is_err());
        assert!(summary_line(&b).contains("batch x COMPLETED: total 1 completed 1"));
    }
}
