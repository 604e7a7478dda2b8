//! The CLI client: subcommands that talk to a running server over its
//! native `/v1` API (`submit`, `watch`, `batches`, `sims`, `export`).
//!
//! - The server is chosen by `--url` / `SIMBATCH_URL` and the tenant by
//!   `--token` / `SIMBATCH_TOKEN` ([`Remote`]).
//! - `--json` prints one machine-readable JSON document on stdout.
//! - Exit codes ([`Outcome`]): 0 success; 1 the batch ended with failures,
//!   rejected or canceled items; 2 usage, connection or server-refused errors.

pub mod batches;
pub mod export;
pub mod http;
pub mod progress;
pub mod submit;

use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use http::{ClientError, Remote};

/// Default server.
pub const DEFAULT_URL: &str = "http://127.0.0.1:8080";

/// Flags every client command takes.
#[derive(Args, Debug, Clone)]
pub struct RemoteArgs {
    /// Server base URL.
    #[arg(long, global = true, env = "SIMBATCH_URL", default_value = DEFAULT_URL)]
    pub url: String,
    /// API token (`<key_id>.<secret>`).
    #[arg(long, global = true, env = "SIMBATCH_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Print one JSON document on stdout instead of text.
    #[arg(long, global = true)]
    pub json: bool,
}

/// How a client command ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Everything asked for succeeded.
    Success,
    /// The batch ended with failed, rejected or canceled items.
    Failures,
}

impl From<Outcome> for ExitCode {
    fn from(o: Outcome) -> Self {
        match o {
            Outcome::Success => ExitCode::SUCCESS,
            Outcome::Failures => ExitCode::from(1),
        }
    }
}

/// The client subcommands, flattened into the binary's own.
#[derive(Subcommand, Debug)]
pub enum ClientCommand {
    /// Upload a CSV or NDJSON file as a batch (streamed), print rejected rows.
    Submit(submit::SubmitArgs),
    /// Follow a batch with a progress bar until it ends.
    Watch {
        /// Batch id.
        id: String,
    },
    /// List, show, cancel or retry batches.
    Batches {
        #[command(subcommand)]
        action: batches::BatchesAction,
    },
    /// Look up or export SIMs.
    Sims {
        #[command(subcommand)]
        action: batches::SimsAction,
    },
    /// Download a batch's items with their results (streamed to a file or stdout).
    Export(export::ExportArgs),
}

/// Run a client command; errors carry their own exit code (2).
pub async fn run(remote: RemoteArgs, cmd: ClientCommand) -> Result<Outcome, ClientError> {
    let r = Remote::new(&remote)?;
    match cmd {
        ClientCommand::Submit(a) => submit::run(&r, a).await,
        ClientCommand::Watch { id } => progress::watch_command(&r, &id).await,
        ClientCommand::Batches { action } => batches::run(&r, action).await,
        ClientCommand::Sims { action } => batches::run_sims(&r, action).await,
        ClientCommand::Export(a) => export::run(&r, a).await,
    }
}
