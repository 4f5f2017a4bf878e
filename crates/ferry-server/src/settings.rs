//! Every setting of `ferry serve`, in one struct: its `Default` is the real
//! defaults (and what `--help` shows), each field is a flag and a `FERRY_…`
//! environment variable, and the whole struct is what the server and its
//! service read. [`Settings::resolve`] layers them: defaults, then the
//! `--config` TOML file, then the environment, then flags.

use std::collections::BTreeSet;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use clap::parser::ValueSource;
use figment::Figment;
use figment::providers::Serialized;
use figment::value::Dict;
use serde::{Deserialize, Serialize};

use ferry_core::GIB;
use ferry_core::plan::DEFAULT_PART_SIZE;
use ferry_core::upload::DEFAULT_FILE_TYPES;

#[derive(Debug, Clone, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Address to listen on.
    #[arg(long, env = "FERRY_LISTEN", default_value_t = Settings::default().listen)]
    pub listen: String,
    /// Where the database, the server secret and the bytes live.
    #[arg(long, env = "FERRY_DATA_DIR", default_value_os_t = Settings::default().data_dir)]
    pub data_dir: PathBuf,
    /// The base of presigned part URLs, always [default: the scheme and host each client used].
    #[arg(long, env = "FERRY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Reverse proxies whose X-Forwarded-Proto/-Host and Forwarded headers say how clients reach ferry (CIDRs, comma-separated).
    #[arg(long = "trusted-proxy", env = "FERRY_TRUSTED_PROXIES", value_delimiter = ',')]
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// A PEM certificate chain: ferry then speaks HTTPS (HTTP/2 and HTTP/1.1), re-reading it on SIGHUP.
    #[arg(long, env = "FERRY_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, env = "FERRY_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// The metadata database, postgres://… or sqlite://PATH [default: ferry.db in the data dir].
    #[arg(long, env = "FERRY_DATABASE_URL")]
    pub database_url: Option<String>,
    #[command(flatten)]
    #[serde(flatten)]
    pub storage: StorageSettings,
    /// Lifetime of presigned part URLs (`3600`, `90s`, `1h`; at most 7 days).
    #[arg(long, env = "FERRY_URL_TTL", default_value_t = Settings::default().url_ttl)]
    pub url_ttl: HumanDuration,
    /// Preferred part size in bytes, at least 5 MiB.
    #[arg(long, env = "FERRY_PART_SIZE", default_value_t = Settings::default().part_size)]
    pub part_size: u64,
    /// An upload without activity this long expires.
    #[arg(long, env = "FERRY_UPLOAD_EXPIRY", default_value_t = Settings::default().upload_expiry)]
    pub upload_expiry: HumanDuration,
    /// Largest simple or base64 upload, in bytes.
    #[arg(long, env = "FERRY_MAX_SIMPLE_UPLOAD", default_value_t = Settings::default().max_simple_upload)]
    pub max_simple_upload: u64,
    /// Largest direct-to-cloud upload, in bytes.
    #[arg(long, env = "FERRY_MAX_UPLOAD_SIZE", default_value_t = Settings::default().max_upload_size)]
    pub max_upload_size: u64,
    /// Accepted file types, comma-separated.
    #[arg(long, env = "FERRY_ALLOWED_FILE_TYPES", value_delimiter = ',',
          default_values_t = Settings::default().allowed_file_types)]
    pub allowed_file_types: Vec<String>,
    /// How long a replaced or deleted file's bytes stay readable.
    #[arg(long, env = "FERRY_DELETION_GRACE", default_value_t = Settings::default().deletion_grace)]
    pub deletion_grace: HumanDuration,
    /// Time between janitor passes (deletions, expiry, extraction).
    #[arg(long, env = "FERRY_JANITOR_INTERVAL", default_value_t = Settings::default().janitor_interval)]
    pub janitor_interval: HumanDuration,
    /// How long requests in flight get to finish on shutdown.
    #[arg(long, env = "FERRY_SHUTDOWN_TIMEOUT", default_value_t = Settings::default().shutdown_timeout)]
    pub shutdown_timeout: HumanDuration,
    /// Ask for an API key (of any org) on /metrics.
    #[arg(long, env = "FERRY_METRICS_NEED_KEY", action = clap::ArgAction::Set,
          default_value_t = Settings::default().metrics_need_key)]
    pub metrics_need_key: bool,
    /// Let webhooks go to loopback and private addresses (off: an org cannot
    /// make ferry reach into the network it runs in).
    #[arg(long, env = "FERRY_WEBHOOK_ALLOW_PRIVATE", num_args = 0..=1, default_missing_value = "true",
          action = clap::ArgAction::Set, default_value_t = Settings::default().webhook_allow_private)]
    pub webhook_allow_private: bool,
    /// How long a webhook delivery is retried before it is given up on.
    #[arg(long, env = "FERRY_WEBHOOK_RETRY_FOR", default_value_t = Settings::default().webhook_retry_for)]
    pub webhook_retry_for: HumanDuration,
    /// The wait before a failed delivery is tried again; it doubles with each
    /// failure, up to an hour.
    #[arg(long, env = "FERRY_WEBHOOK_FIRST_RETRY", default_value_t = Settings::default().webhook_first_retry)]
    pub webhook_first_retry: HumanDuration,
    /// Bytes an org's files and uploads in progress may take; 0 for no limit.
    #[arg(long, env = "FERRY_ORG_QUOTA", default_value_t = Settings::default().org_quota)]
    pub org_quota: u64,
    /// API requests per second per key (part PUTs are never limited); 0 for no limit.
    #[arg(long, env = "FERRY_RATE_LIMIT", default_value_t = Settings::default().rate_limit)]
    pub rate_limit: u32,
    /// How long a request body may stay silent before it is cut off.
    #[arg(long, env = "FERRY_BODY_TIMEOUT", default_value_t = Settings::default().body_timeout)]
    pub body_timeout: HumanDuration,
    /// How long a request's headers may take to arrive, from their first byte.
    #[arg(long, env = "FERRY_HEADER_TIMEOUT", default_value_t = Settings::default().header_timeout)]
    pub header_timeout: HumanDuration,
    /// How long a connection may stay open with no request and no byte moving.
    #[arg(long, env = "FERRY_IDLE_TIMEOUT", default_value_t = Settings::default().idle_timeout)]
    pub idle_timeout: HumanDuration,
    /// How long the rest of a refused request's body is read before the answer.
    #[arg(long, env = "FERRY_DRAIN_TIMEOUT", default_value_t = Settings::default().drain_timeout)]
    pub drain_timeout: HumanDuration,
    /// Connections at once; past it new connections are closed at once.
    #[arg(long, env = "FERRY_MAX_CONNECTIONS", default_value_t = Settings::default().max_connections)]
    pub max_connections: usize,
    /// How long bytes written ahead of their metadata row (an upload's first
    /// storage, a simple upload) are kept if a crash stops the row.
    #[arg(long, env = "FERRY_ORPHAN_GRACE", default_value_t = Settings::default().orphan_grace)]
    pub orphan_grace: HumanDuration,
    /// How log lines are written: `text`, or `json` (one object a line).
    #[arg(long, env = "FERRY_LOG_FORMAT", value_enum, default_value_t = Settings::default().log_format)]
    pub log_format: LogFormat,
    /// The key of the org `default` on an empty database: from
    /// `FERRY_BOOTSTRAP_KEY` only, never a flag or a file (`ps` shows flags).
    #[arg(skip)]
    #[serde(skip)]
    pub bootstrap_key: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `key=value` pairs, for a person at a terminal.
    Text,
    /// One JSON object a line, for a log collector.
    Json,
}

/// Where file bytes are stored; `serve` and `admin check` share these.
#[derive(Debug, Clone, Default, clap::Args, Serialize, Deserialize)]
#[serde(default)]
pub struct StorageSettings {
    /// Where file bytes are stored: the data dir, or s3://BUCKET[/PREFIX] [default: the data dir].
    #[arg(long, env = "FERRY_STORAGE")]
    pub storage: Option<String>,
    /// The S3-compatible store's endpoint, for s3:// storage (e.g. http://127.0.0.1:3900).
    #[arg(long, env = "FERRY_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The store's region [default: us-east-1].
    #[arg(long, env = "FERRY_S3_REGION")]
    pub s3_region: Option<String>,
    /// The access key id for the store.
    #[arg(long, env = "FERRY_S3_ACCESS_KEY_ID")]
    pub s3_access_key_id: Option<String>,
    /// The secret access key (prefer the environment to a flag, which `ps` shows).
    #[arg(long, env = "FERRY_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
    /// Entries asked for per page of the store's listings [default: 1000].
    #[arg(long, env = "FERRY_S3_PAGE_SIZE")]
    pub s3_page_size: Option<u16>,
}

impl Default for Settings {
    fn default() -> Self {
        let secs = |s| HumanDuration(Duration::from_secs(s));
        Self {
            listen: "127.0.0.1:8080".into(),
            data_dir: "./ferry-data".into(),
            public_url: None,
            trusted_proxies: Vec::new(),
            tls_cert: None,
            tls_key: None,
            database_url: None,
            storage: StorageSettings::default(),
            url_ttl: secs(3600),
            part_size: DEFAULT_PART_SIZE,
            upload_expiry: secs(7 * 24 * 3600),
            // 512 MB, decimal, as the Archetype service applies it: its own
            // client's tests expect a 500 MiB simple upload to be refused.
            max_simple_upload: 512_000_000,
            max_upload_size: 250 * GIB,
            allowed_file_types: DEFAULT_FILE_TYPES.iter().map(|t| t.to_string()).collect(),
            deletion_grace: secs(600),
            janitor_interval: secs(60),
            shutdown_timeout: secs(30),
            metrics_need_key: false,
            webhook_allow_private: false,
            webhook_retry_for: secs(24 * 3600),
            webhook_first_retry: secs(10),
            org_quota: 0,
            rate_limit: 0,
            body_timeout: secs(60),
            header_timeout: secs(30),
            idle_timeout: secs(60),
            drain_timeout: secs(10),
            max_connections: 4096,
            orphan_grace: secs(86_400),
            log_format: LogFormat::Text,
            bootstrap_key: None,
        }
    }
}

impl Settings {
    /// The settings as they apply: `parsed` (clap's, defaults included) over
    /// the `config` TOML file over the defaults. Only what clap took from a
    /// flag or the environment beats the file; `matches` say which.
    pub fn resolve(parsed: &Settings, matches: &clap::ArgMatches, config: Option<&Path>) -> Result<Settings, String> {
        let known: BTreeSet<&str> = matches.ids().map(|id| id.as_str()).collect();
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        if let Some(path) = config {
            let text = std::fs::read_to_string(path).map_err(|e| format!("reading {}: {e}", path.display()))?;
            let file: toml::Table = toml::from_str(&text).map_err(|e| format!("parsing {}: {e}", path.display()))?;
            if let Some(unknown) = file.keys().find(|key| !known.contains(key.as_str()) || key.as_str() == "config") {
                return Err(format!("{}: `{unknown}` is not a setting", path.display()));
            }
            figment = figment.merge(Serialized::defaults(file));
        }
        let given: Dict = Figment::from(Serialized::defaults(parsed))
            .extract::<Dict>()
            .map_err(|e| e.to_string())?
            .into_iter()
            .filter(|(key, _)| {
                matches!(matches.value_source(key), Some(ValueSource::CommandLine | ValueSource::EnvVariable))
            })
            .collect();
        let mut settings: Settings = figment.merge(Serialized::defaults(given)).extract().map_err(|e| e.to_string())?;
        settings.bootstrap_key = std::env::var("FERRY_BOOTSTRAP_KEY").ok().filter(|k| !k.is_empty());
        Ok(settings)
    }

    /// The scheme clients reach this listener with.
    pub fn scheme(&self) -> &'static str {
        if self.tls_cert.is_some() { "https" } else { "http" }
    }

    /// The quota, if the operator set one.
    pub fn org_quota(&self) -> Option<u64> {
        (self.org_quota > 0).then_some(self.org_quota)
    }
}

/// A duration as people write it (`90s`, `10m`, `1h 30m`, `7d`), or a bare
/// number of seconds as the earlier settings took them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn get(self) -> Duration {
        self.0
    }

    pub fn as_secs(self) -> u64 {
        self.0.as_secs()
    }
}

impl FromStr for HumanDuration {
    type Err = humantime::DurationError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().parse::<u64>() {
            Ok(seconds) => Ok(Self(Duration::from_secs(seconds))),
            Err(_) => humantime::parse_duration(text).map(Self),
        }
    }
}

impl fmt::Display for HumanDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl Serialize for HumanDuration {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    /// A string in either form, or an integer of seconds (from a file).
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Either {
            Seconds(u64),
            Text(String),
        }
        match Either::deserialize(deserializer)? {
            Either::Seconds(seconds) => Ok(Self(Duration::from_secs(seconds))),
            Either::Text(text) => text.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};
    use ferry_core::MIB;

    #[derive(Debug, Parser)]
    struct Cli {
        #[command(flatten)]
        settings: Settings,
    }

    fn resolve(argv: &[&str], file: Option<&str>) -> Result<Settings, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.toml");
        if let Some(text) = file {
            std::fs::write(&path, text).unwrap();
        }
        let matches = Cli::command().try_get_matches_from(argv).map_err(|e| e.to_string())?;
        let cli = Cli::from_arg_matches(&matches).unwrap();
        Settings::resolve(&cli.settings, &matches, file.map(|_| path.as_path()))
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let file = "listen = \"0.0.0.0:9000\"\nurl_ttl = 60\ndeletion_grace = \"2m\"\n";
        let settings = resolve(&["ferry", "--url-ttl", "30s"], Some(file)).unwrap();
        assert_eq!(settings.url_ttl.get(), Duration::from_secs(30));
        assert_eq!(settings.listen, "0.0.0.0:9000");
        assert_eq!(settings.deletion_grace.get(), Duration::from_secs(120));
        assert_eq!(settings.part_size, 8 * MIB);
        assert_eq!(settings.data_dir, PathBuf::from("./ferry-data"));
    }

    #[test]
    fn unknown_file_settings_and_bad_durations_are_refused() {
        assert!(resolve(&["ferry"], Some("listen_address = \"x\"\n")).unwrap_err().contains("listen_address"));
        assert!(resolve(&["ferry", "--url-ttl", "soon"], None).is_err());
    }

    #[test]
    fn durations_read_as_seconds_or_as_people_write_them() {
        for (text, seconds) in [("90", 90), ("90s", 90), ("10m", 600), ("1h 30m", 5400), ("7d", 604_800)] {
            assert_eq!(text.parse::<HumanDuration>().unwrap().as_secs(), seconds, "{text}");
        }
        assert_eq!(HumanDuration(Duration::from_secs(3600)).to_string(), "1h");
    }

    #[test]
    fn the_simple_upload_limit_is_512_mb_decimal() {
        // A 500 MiB simple upload is refused, as the Archetype client's tests expect.
        assert_eq!(Settings::default().max_simple_upload, 512_000_000);
        assert!(500 * MIB > Settings::default().max_simple_upload);
    }

    #[test]
    fn help_shows_the_real_defaults() {
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("[default: 1h]"), "{help}");
        assert!(help.contains("[default: 127.0.0.1:8080]"), "{help}");
        assert!(help.contains(&format!("[default: {DEFAULT_PART_SIZE}]")), "{help}");
    }
}
