//! `simbatch export BATCH_ID` and `simbatch sims export`: stream the
//! server's export to a file (or stdout) chunk by chunk, so memory stays
//! bounded whatever the number of items.
//!
//! With `-o FILE` the body is written to `FILE.partial` and renamed when
//! complete, so an interrupted download never leaves a truncated `FILE`.

use std::path::{Path, PathBuf};

use clap::{Args, ValueEnum};
use futures::StreamExt;
use reqwest::Method;
use serde_json::json;
use tokio::io::AsyncWriteExt;

use super::http::{enc, print_json, seg, ClientError, Remote};
use super::Outcome;

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// CSV: the operation's columns, then the result_* columns (text cells guarded against spreadsheet formulas).
    Csv,
    /// Excel workbook.
    Xlsx,
    /// One JSON object per line.
    Ndjson,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Self::Csv => "csv",
            Self::Xlsx => "xlsx",
            Self::Ndjson => "ndjson",
        }
    }
}

/// Item selections an export can be limited to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFilter {
    /// Applied.
    Completed,
    /// Ran and failed.
    Failed,
    /// Never ran.
    Canceled,
    /// Refused at submission.
    Rejected,
    /// Same as completed.
    Succeeded,
    /// Did not run: approved, processing or canceled (rejected items are `rejected`).
    Unprocessed,
    /// Waiting to run.
    Approved,
    /// Running now.
    Processing,
}

impl StatusFilter {
    fn as_str(self) -> &'static str {
        match self {
            Self::Completed => "completed",
            Self::Failed => "failed",
            Self::Canceled => "canceled",
            Self::Rejected => "rejected",
            Self::Succeeded => "succeeded",
            Self::Unprocessed => "unprocessed",
            Self::Approved => "approved",
            Self::Processing => "processing",
        }
    }
}

/// `simbatch export` flags.
#[derive(Args, Debug)]
pub struct ExportArgs {
    /// Batch id.
    pub id: String,
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Only items in this state.
    #[arg(long, value_enum)]
    pub status: Option<StatusFilter>,
    /// Write here instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// `simbatch sims export` flags.
#[derive(Args, Debug)]
pub struct SimsExportArgs {
    /// Output format.
    #[arg(long, value_enum, default_value = "csv")]
    pub format: Format,
    /// Write here instead of stdout.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// The batch export path and query.
pub fn batch_path(a: &ExportArgs) -> String {
    let mut p = format!(
        "/v1/batches/{}/export?format={}",
        seg(&a.id),
        a.format.as_str()
    );
    if let Some(s) = a.status {
        p.push_str(&format!("&status={}", enc(s.as_str())));
    }
    p
}

/// Run `export`.
pub async fn run(r: &Remote, a: ExportArgs) -> Result<Outcome, ClientError> {
    download(r, &batch_path(&a), a.format, a.output.as_deref()).await
}

/// Run `sims export`.
pub async fn run_sims(r: &Remote, a: SimsExportArgs) -> Result<Outcome, ClientError> {
    let path = format!("/v1/sims/export?format={}", a.format.as_str());
    download(r, &path, a.format, a.output.as_deref()).await
}

async fn download(
    r: &Remote,
    path: &str,
    format: Format,
    output: Option<&Path>,
) -> Result<Outcome, ClientError> {
    if output.is_none() && r.json {
        return Err(ClientError::Usage(
            "--json needs -o FILE: the export itself would go to stdout".into(),
        ));
    }
    if output.is_none()
        && format == Format::Xlsx
        && std::io::IsTerminal::is_terminal(&std::io::stdout())
    {
        return Err(ClientError::Usage(
            "an XLSX export is binary: use -o FILE or redirect stdout".into(),
        ));
    }
    let resp = r.send(r.request(Method::GET, path)).await?;
    let io = |p: &Path, e: std::io::Error| ClientError::Io(format!("{}: {e}", p.display()));
    let mut bytes: u64 = 0;
    let mut stream = resp.bytes_stream();
    match output {
        Some(out) => {
            let partial = partial_path(out);
            let mut f = tokio::fs::File::create(&partial)
                .await
                .map_err(|e| io(&partial, e))?;
            let copied = async {
                while let Some(chunk) = stream.next().await {
                    let chunk = chunk.map_err(|e| ClientError::Connect {
                        url: r.base().to_owned(),
                        reason: format!("download broke off: {e}"),
                    })?;
                    f.write_all(&chunk).await.map_err(|e| io(&partial, e))?;
                    bytes += chunk.len() as u64;
                }
                f.flush().await.map_err(|e| io(&partial, e))?;
                f.sync_all().await.map_err(|e| io(&partial, e))
            }
            .await;
            if let Err(e) = copied {
                let _ = tokio::fs::remove_file(&partial).await;
                return Err(e);
            }
            tokio::fs::rename(&partial, out)
                .await
                .map_err(|e| io(out, e))?;
            if r.json {
                print_json(
                    &json!({"file": out.display().to_string(), "bytes": bytes, "format": format.as_str()}),
                );
            } else {
                eprintln!("wrote {bytes} bytes to {}", out.display());
            }
        }
        None => {
            let mut so = tokio::io::stdout();
            let stdout = Path::new("stdout");
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|e| ClientError::Connect {
                    url: r.base().to_owned(),
                    reason: format!("download broke off: {e}"),
                })?;
                so.write_all(&chunk).await.map_err(|e| io(stdout, e))?;
            }
            so.flush().await.map_err(|e| io(stdout, e))?;
        }
    }
    Ok(Outcome::Success)
}

/// `FILE.partial` beside `FILE`.
fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    out.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_and_partial_names() {
        let a = ExportArgs {
            id: "0193-ab".into(),
            format: Format::Xlsx,
            status: Some(StatusFilter::Failed),
            output: None,
        };
        assert_eq!(
            batch_path(&a),
            "/v1/batches/0193-ab/export?format=xlsx&status=failed"
        );
        assert_eq!(
            partial_path(Path::new("/tmp/x/failed.csv")),
            Path::new("/tmp/x/failed.csv.partial")
        );
    }
}
