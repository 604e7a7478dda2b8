//! The `simbatch` binary: one process serves the API and runs the workers;
//! the admin subcommands administer a database or measure the engine; the
//! client subcommands (`submit`, `watch`, `batches`, `sims`, `export`) talk
//! to a running server.

mod admin;
mod bench;
mod client;
mod config;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// simbatch: SIM and eSIM batch provisioning.
#[derive(Parser, Debug)]
#[command(name = "simbatch", version, about)]
struct Cli {
    /// Optional TOML config file (same keys as the serve flags, in snake_case).
    #[arg(long, global = true, env = "SIMBATCH_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Log as JSON lines instead of text (same as `--log-format json`).
    #[arg(long, global = true, env = "SIMBATCH_LOG_JSON")]
    log_json: bool,
    /// Log format on stderr: text or json.
    #[arg(long, global = true, env = "SIMBATCH_LOG_FORMAT", value_enum)]
    log_format: Option<config::LogFormat>,
    #[command(flatten)]
    remote: client::RemoteArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the HTTP API and the workers.
    Serve(config::ServeArgs),
    /// Apply database migrations and exit.
    Migrate(config::DbArgs),
    /// Manage API keys.
    Keys {
        #[command(flatten)]
        db: config::DbArgs,
        #[command(subcommand)]
        action: admin::KeysAction,
    },
    /// Manage profile templates.
    Templates {
        #[command(flatten)]
        db: config::DbArgs,
        #[command(subcommand)]
        action: admin::TemplatesAction,
    },
    /// Measure the engine end to end against a fresh database.
    Bench(bench::BenchArgs),
    #[command(flatten)]
    Client(client::ClientCommand),
}

impl Command {
    /// The log filter used when `SIMBATCH_LOG` is not set. The bench starts its
    /// own server and polls it thousands of times; at `info` every poll would
    /// print a request line and bury the figures, so it logs warnings only.
    fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Bench(_) => "warn",
            _ => "info,sqlx=warn",
        }
    }
}

fn init_logging(json: bool, default_filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter =
        EnvFilter::try_from_env("SIMBATCH_LOG").unwrap_or_else(|_| EnvFilter::new(default_filter));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let file = match config::FileConfig::load(cli.config.as_deref()) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let format = cli.log_format.or(file.log_format).unwrap_or_default();
    init_logging(
        cli.log_json || format == config::LogFormat::Json,
        cli.command.default_log_filter(),
    );
    let result = match cli.command {
        Command::Serve(args) => serve::run(args.resolve(&file)).await,
        Command::Migrate(db) => admin::migrate(db.resolve(&file)).await,
        Command::Keys { db, action } => admin::keys(db.resolve(&file), action).await,
        Command::Templates { db, action } => admin::templates(db.resolve(&file), action).await,
        Command::Bench(args) => bench::run(args).await,
        Command::Client(cmd) => {
            let json = cli.remote.json;
            return match client::run(cli.remote, cmd).await {
                Ok(outcome) => outcome.into(),
                Err(e) => {
                    if json {
                        client::http::print_json(&e.to_json());
                    }
                    eprintln!("error: {e}");
                    ExitCode::from(2)
                }
            };
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn command(args: &[&str]) -> Command {
        Cli::try_parse_from(args).expect("parses").command
    }

    #[test]
    fn bench_logs_warnings_only_by_default_and_serve_logs_requests() {
        assert_eq!(command(&["simbatch", "bench"]).default_log_filter(), "warn");
        assert_eq!(
            command(&["simbatch", "serve"]).default_log_filter(),
            "info,sqlx=warn"
        );
    }

    #[test]
    fn bench_runs_between_one_and_fifty_times() {
        assert!(matches!(
            command(&["simbatch", "bench", "--runs", "3"]),
            Command::Bench(_)
        ));
        for bad in ["0", "51", "many"] {
            let err = Cli::try_parse_from(["simbatch", "bench", "--runs", bad]).unwrap_err();
            assert!(err.to_string().contains("--runs"), "{bad}: {err}");
        }
    }
}
