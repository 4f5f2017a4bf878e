//! The command line. Every `serve` setting is a flag and an environment
//! variable (spec §7); flags beat the environment, which beats the
//! `--config` file, which beats the defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ferry", version, about = "A self-hostable file service for files of any size")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server.
    ///
    /// With nothing configured it stores everything in ./ferry-data and, on
    /// first start, creates the org `default` and prints its API key once.
    ///
    /// Example: ferry serve --listen 0.0.0.0:8080 --public-url https://files.example.com
    Serve(Box<ServeArgs>),
    /// Manage orgs and API keys (works while the server runs).
    ///
    /// Example: ferry admin key create --org default
    Admin(AdminArgs),
    /// Upload files: small ones whole, others in parallel parts, resumable.
    ///
    /// Run it again after an interruption (Ctrl-C, a crash, a lost network)
    /// and it sends only what the server does not have yet.
    ///
    /// Example: ferry upload videos/*.mp4 --parallel 8
    Upload(UploadArgs),
    /// Download a file, resuming a cut-off download and checking its CRC32C.
    ///
    /// Example: ferry download train.parquet -o data/train.parquet
    Download(DownloadArgs),
    /// List files.
    ///
    /// Example: ferry ls --type text/csv
    Ls(LsArgs),
    /// Show a file's metadata, or the org's totals without a file.
    ///
    /// Example: ferry info report.csv
    Info(InfoArgs),
    /// Delete a file.
    ///
    /// Example: ferry rm old-report.csv
    Rm(RmArgs),
    /// Show the interrupted uploads this machine can resume.
    ///
    /// Example: ferry status
    Status(StatusArgs),
    /// Print the OpenAPI 3.1 document of the API.
    ///
    /// Example: ferry openapi > openapi.json
    Openapi,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// A TOML file with settings (the flags' long names, with `_` for `-`).
    #[arg(long, env = "FERRY_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "FERRY_LISTEN")]
    pub listen: Option<String>,
    /// Where the database, the server secret and the bytes live [default: ./ferry-data].
    #[arg(long, env = "FERRY_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// The base of presigned part URLs as clients reach this server [default: http://LISTEN].
    #[arg(long, env = "FERRY_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// The metadata database [default: ferry.db in the data dir].
    #[arg(long, env = "FERRY_DATABASE_URL")]
    pub database_url: Option<String>,
    #[command(flatten)]
    pub storage: StorageArgs,
    /// Lifetime of presigned part URLs, in seconds [default: 3600].
    #[arg(long, env = "FERRY_URL_TTL")]
    pub url_ttl: Option<u64>,
    /// Preferred part size in bytes, at least 5 MiB [default: 8388608].
    #[arg(long, env = "FERRY_PART_SIZE")]
    pub part_size: Option<u64>,
    /// Seconds without activity after which an upload expires [default: 604800].
    #[arg(long, env = "FERRY_UPLOAD_EXPIRY")]
    pub upload_expiry: Option<u64>,
    /// Largest simple or base64 upload, in bytes [default: 536870912].
    #[arg(long, env = "FERRY_MAX_SIMPLE_UPLOAD")]
    pub max_simple_upload: Option<u64>,
    /// Largest direct-to-cloud upload, in bytes [default: 268435456000 (250 GiB)].
    #[arg(long, env = "FERRY_MAX_UPLOAD_SIZE")]
    pub max_upload_size: Option<u64>,
    /// Accepted file types, comma-separated [default: the contract's list].
    #[arg(long, env = "FERRY_ALLOWED_FILE_TYPES", value_delimiter = ',')]
    pub allowed_file_types: Option<Vec<String>>,
    /// Seconds a replaced or deleted file's bytes stay readable [default: 600].
    #[arg(long, env = "FERRY_DELETION_GRACE")]
    pub deletion_grace: Option<u64>,
    /// Seconds between janitor passes (deletions, expiry, extraction) [default: 60].
    #[arg(long, env = "FERRY_JANITOR_INTERVAL")]
    pub janitor_interval: Option<u64>,
    /// Seconds requests in flight get to finish on shutdown [default: 30].
    #[arg(long, env = "FERRY_SHUTDOWN_TIMEOUT")]
    pub shutdown_timeout: Option<u64>,
    /// Ask for an API key (of any org) on /metrics [default: false].
    #[arg(long, env = "FERRY_METRICS_NEED_KEY")]
    pub metrics_need_key: Option<bool>,
    /// Bytes an org's files and uploads in progress may take; 0 for no limit [default: 0].
    #[arg(long, env = "FERRY_ORG_QUOTA")]
    pub org_quota: Option<u64>,
    /// API requests per second per key (part PUTs are never limited); 0 for no limit [default: 0].
    #[arg(long, env = "FERRY_RATE_LIMIT")]
    pub rate_limit: Option<u32>,
    /// Seconds a request body may stay silent before it is cut off [default: 60].
    #[arg(long, env = "FERRY_BODY_TIMEOUT")]
    pub body_timeout: Option<u64>,
    /// Seconds a request's headers may take to arrive, from their first byte [default: 30].
    #[arg(long, env = "FERRY_HEADER_TIMEOUT")]
    pub header_timeout: Option<u64>,
    /// Seconds a connection may stay open with no request and no byte moving [default: 60].
    #[arg(long, env = "FERRY_IDLE_TIMEOUT")]
    pub idle_timeout: Option<u64>,
    /// Connections at once; past it new connections are closed at once [default: 4096].
    #[arg(long, env = "FERRY_MAX_CONNECTIONS")]
    pub max_connections: Option<usize>,
    /// Seconds the rest of a refused request's body is read before the answer [default: 10].
    #[arg(long, env = "FERRY_DRAIN_TIMEOUT")]
    pub drain_timeout: Option<u64>,
    /// Seconds bytes written ahead of their metadata row (an upload's first
    /// storage, a simple upload) are kept if a crash stops the row [default: 86400].
    #[arg(long, env = "FERRY_ORPHAN_GRACE")]
    pub orphan_grace: Option<u64>,
}

/// Where file bytes are stored.
#[derive(Debug, Args)]
pub struct StorageArgs {
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
    /// Entries asked for per page of the store's listings [default: 1000].
    #[arg(long, env = "FERRY_S3_PAGE_SIZE")]
    pub s3_page_size: Option<u16>,
    /// The secret access key (prefer the environment to a flag, which `ps` shows).
    #[arg(long, env = "FERRY_S3_SECRET_ACCESS_KEY", hide_env_values = true)]
    pub s3_secret_access_key: Option<String>,
}

#[derive(Debug, Args)]
pub struct AdminArgs {
    /// The data dir of the server to administer [default: ./ferry-data].
    #[arg(long, env = "FERRY_DATA_DIR", global = true)]
    pub data_dir: Option<PathBuf>,
    /// The server's metadata database, if not the one in the data dir.
    #[arg(long, env = "FERRY_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
    #[command(subcommand)]
    pub command: AdminCommand,
}

#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Manage orgs.
    #[command(subcommand)]
    Org(OrgCommand),
    /// Manage API keys.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Check that the metadata and the stored bytes agree; lists every
    /// difference and exits 1 if there is one.
    ///
    /// Example: ferry admin --data-dir /var/lib/ferry check
    Check(StorageArgs),
}

#[derive(Debug, Subcommand)]
pub enum OrgCommand {
    /// Create an org.
    ///
    /// Example: ferry admin org create research
    Create { name: String },
}

#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Create an API key for an org and print it (alone, on stdout).
    ///
    /// Example: export FERRY_API_KEY=$(ferry admin key create --org research)
    Create {
        #[arg(long)]
        org: String,
    },
    /// List an org's keys: ids and times, never the keys.
    ///
    /// Example: ferry admin key list --org research
    List {
        #[arg(long)]
        org: String,
    },
    /// Revoke a key; requests with it are refused at once.
    ///
    /// Example: ferry admin key revoke key_01jfz8k2m4c5v6b7n8p9q0r1s2
    Revoke { key_id: String },
}

/// Where the server is and the key to use.
#[derive(Debug, Args)]
pub struct Connection {
    /// The server [default: http://127.0.0.1:8080].
    #[arg(long, env = "FERRY_URL", default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The API key.
    #[arg(long, env = "FERRY_API_KEY", hide_env_values = true)]
    pub api_key: String,
}

/// How results are shown.
#[derive(Debug, Args)]
pub struct Output {
    /// No progress bars or notes.
    #[arg(long, short)]
    pub quiet: bool,
    /// One JSON object per result on stdout, for scripts; no bars (notes
    /// still go to stderr).
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct UploadArgs {
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The name on the server (one file only) [default: the file's name].
    #[arg(long)]
    pub name: Option<String>,
    /// The file type [default: from the extension].
    #[arg(long = "type")]
    pub file_type: Option<String>,
    /// Parts in flight at once.
    #[arg(long, default_value_t = 8)]
    pub parallel: usize,
    /// Files smaller than this many bytes are sent whole.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    pub simple_threshold: u64,
    /// Cap the upload rate, in bytes per second.
    #[arg(long)]
    pub limit_rate: Option<u64>,
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct DownloadArgs {
    pub file_id: String,
    /// Where to write it [default: the file's name, here].
    #[arg(long, short)]
    pub output_path: Option<PathBuf>,
    #[command(flatten)]
    pub connection: Connection,
    #[command(flatten)]
    pub output: Output,
}

#[derive(Debug, Args)]
pub struct LsArgs {
    /// Only files of this type.
    #[arg(long = "type")]
    pub file_type: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
    /// JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct InfoArgs {
    pub file_id: Option<String>,
    #[command(flatten)]
    pub connection: Connection,
    /// JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RmArgs {
    pub file_id: String,
    #[command(flatten)]
    pub connection: Connection,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// JSON, for scripts.
    #[arg(long)]
    pub json: bool,
}
