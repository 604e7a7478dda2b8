//! Configuration: flags and environment override an optional TOML file,
//! which overrides the defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use serde::Deserialize;
use simbatch_api::ops::RateLimitConfig;
use simbatch_core::ValidationProfile;
use simbatch_engine::metrics::Metrics;
use simbatch_store::crypto::{Cipher, KeySource};
use simbatch_store::Store;

/// Default database: a file in the working directory, created on first start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://simbatch.db";

/// The TOML config file; every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    smdp_address: Option<String>,
    validation: Option<ValidationProfile>,
    retention_days: Option<u64>,
    workers: Option<usize>,
    key_file: Option<PathBuf>,
    no_workers: Option<bool>,
    lease_secs: Option<u64>,
    rate_limit_rps: Option<f64>,
    rate_limit_burst: Option<u32>,
    /// `text` or `json` (read by `main` before logging starts).
    pub log_format: Option<LogFormat>,
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line (with the request span's fields).
    Json,
}

impl FileConfig {
    /// Read the file if one was named.
    pub fn load(path: Option<&Path>) -> Result<Self, String> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// Where the database is and how to unlock its secrets.
#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB.
    #[arg(long, env = "SIMBATCH_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Master key file, used (and created, mode 0600) when SIMBATCH_MASTER_KEY is unset.
    #[arg(long, env = "SIMBATCH_KEY_FILE")]
    pub key_file: Option<PathBuf>,
}

/// Resolved database settings.
#[derive(Debug, Clone)]
pub struct Db {
    /// Database URL.
    pub url: String,
    /// Master key file.
    pub key_file: PathBuf,
}

impl DbArgs {
    /// Apply the file config and defaults.
    pub fn resolve(self, file: &FileConfig) -> Db {
        Db {
            url: self
                .database_url
                .or_else(|| file.database_url.clone())
                .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            key_file: self
                .key_file
                .or_else(|| file.key_file.clone())
                .unwrap_or_else(|| "simbatch.key".into()),
        }
    }
}

impl Db {
    /// Load the master key and open the store (applying migrations).
    pub async fn open(&self) -> Result<Arc<dyn Store>, String> {
        let env_key = std::env::var("SIMBATCH_MASTER_KEY").ok();
        let (cipher, source) = Cipher::load(env_key.as_deref(), &self.key_file)?;
        if source == KeySource::CreatedFile {
            tracing::warn!(
                key_file = %self.key_file.display(),
                "no SIMBATCH_MASTER_KEY set: created a new master key file; back it up, without it secrets cannot be read"
            );
        }
        simbatch_store::open(&self.url, cipher)
            .await
            .map_err(|e| e.to_string())
    }
}

/// `simbatch serve` flags.
#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "SIMBATCH_LISTEN")]
    pub listen: Option<SocketAddr>,
    #[command(flatten)]
    pub db: DbArgs,
    /// SM-DP+ address written into activation codes.
    #[arg(long, env = "SIMBATCH_SMDP_ADDRESS")]
    pub smdp_address: Option<String>,
    /// Identifier validation: standard or strict.
    #[arg(long, env = "SIMBATCH_VALIDATION")]
    pub validation: Option<ValidationProfile>,
    /// Days to keep finished batches.
    #[arg(long, env = "SIMBATCH_RETENTION_DAYS")]
    pub retention_days: Option<u64>,
    /// Worker loops (default: 1 on SQLite, 2 on PostgreSQL).
    #[arg(long, env = "SIMBATCH_WORKERS")]
    pub workers: Option<usize>,
    /// Serve the API only; run no workers, sweeper or webhook dispatcher.
    #[arg(long)]
    pub no_workers: bool,
    /// Seconds a claimed item stays leased; a crashed worker's items are taken over after this.
    #[arg(long, env = "SIMBATCH_LEASE_SECS")]
    pub lease_secs: Option<u64>,
    /// Per-tenant request rate limit (requests per second, per replica); unset or 0: no limit.
    #[arg(long, env = "SIMBATCH_RATE_LIMIT_RPS")]
    pub rate_limit_rps: Option<f64>,
    /// Per-tenant burst (bucket size); default: twice the rate, at least 1.
    #[arg(long, env = "SIMBATCH_RATE_LIMIT_BURST")]
    pub rate_limit_burst: Option<u32>,
}

/// Resolved serve settings.
#[derive(Debug, Clone)]
pub struct Serve {
    /// Listen address.
    pub listen: SocketAddr,
    /// Database.
    pub db: Db,
    /// SM-DP+ address.
    pub smdp_address: String,
    /// Validation profile.
    pub validation: ValidationProfile,
    /// Retention in days.
    pub retention_days: u64,
    /// Worker loops, if set.
    pub workers: Option<usize>,
    /// API only.
    pub no_workers: bool,
    /// Lease length in seconds.
    pub lease_secs: u64,
    /// Per-tenant rate limit, if any.
    pub rate_limit: Option<RateLimitConfig>,
    /// The process's metrics, shared by the router and the background tasks.
    pub metrics: Arc<Metrics>,
}

/// A limit when the rate is positive; the burst defaults to two seconds' worth.
pub fn rate_limit(rps: Option<f64>, burst: Option<u32>) -> Option<RateLimitConfig> {
    let rps = rps.filter(|r| r.is_finite() && *r > 0.0)?;
    let burst = burst.unwrap_or_else(|| (rps * 2.0).ceil().min(f64::from(u32::MAX)) as u32);
    Some(RateLimitConfig {
        rps,
        burst: burst.max(1),
    })
}

impl ServeArgs {
    /// Apply the file config and defaults.
    pub fn resolve(self, f: &FileConfig) -> Serve {
        Serve {
            listen: self
                .listen
                .or(f.listen)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 8080))),
            db: self.db.resolve(f),
            smdp_address: self
                .smdp_address
                .or_else(|| f.smdp_address.clone())
                .unwrap_or_else(|| "smdp.simbatch.local".into()),
            validation: self.validation.or(f.validation).unwrap_or_default(),
            retention_days: self.retention_days.or(f.retention_days).unwrap_or(60),
            workers: self.workers.or(f.workers),
            no_workers: self.no_workers || f.no_workers.unwrap_or(false),
            lease_secs: self.lease_secs.or(f.lease_secs).unwrap_or(30).max(1),
            rate_limit: rate_limit(
                self.rate_limit_rps.or(f.rate_limit_rps),
                self.rate_limit_burst.or(f.rate_limit_burst),
            ),
            metrics: Metrics::shared(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_is_off_unless_a_positive_rate_is_set() {
        assert_eq!(rate_limit(None, Some(5)), None);
        assert_eq!(rate_limit(Some(0.0), None), None);
        assert_eq!(rate_limit(Some(f64::NAN), None), None);
        assert_eq!(
            rate_limit(Some(2.5), None),
            Some(RateLimitConfig { rps: 2.5, burst: 5 })
        );
        assert_eq!(
            rate_limit(Some(0.1), Some(0)),
            Some(RateLimitConfig { rps: 0.1, burst: 1 })
        );
    }

    #[test]
    fn file_config_fills_gaps_and_flags_win() {
        let f: FileConfig = toml::from_str(
            "listen = \"0.0.0.0:9000\"\nretention_days = 7\nvalidation = \"strict\"\ndatabase_url = \"sqlite://x.db\"\nrate_limit_rps = 5.0\nlog_format = \"json\"",
        )
        .unwrap();
        let args = ServeArgs {
            listen: None,
            db: DbArgs {
                database_url: Some("sqlite://y.db".into()),
                key_file: None,
            },
            smdp_address: None,
            validation: None,
            retention_days: None,
            workers: None,
            no_workers: false,
            lease_secs: None,
            rate_limit_rps: None,
            rate_limit_burst: Some(9),
        };
        let s = args.resolve(&f);
        assert_eq!(s.listen.port(), 9000);
        assert_eq!(s.retention_days, 7);
        assert_eq!(s.validation, ValidationProfile::Strict);
        assert_eq!(s.db.url, "sqlite://y.db");
        assert_eq!(s.rate_limit, Some(RateLimitConfig { rps: 5.0, burst: 9 }));
        assert_eq!(f.log_format, Some(LogFormat::Json));
        assert!(
            toml::from_str::<FileConfig>("lisen = 1").is_err(),
            "unknown keys are refused"
        );
    }
}
