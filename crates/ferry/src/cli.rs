//! The command line. Every `serve` setting is a flag and an environment
//! variable (`ferry_server::settings`); flags beat the environment, which
//! beats the `--config` file, which beats the defaults.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};
use ferry_server::settings::{Settings, StorageSettings};

/// What `ferry`'s exit status means, shown at the end of every `--help`.
pub const EXIT_STATUS: &str = "Exit status: 0 done, 1 failed, 2 usage error, 130 interrupted (Ctrl-C; \
                               run the same command again to resume).";

#[derive(Debug, Parser)]
#[command(
    name = "ferry",
    version,
    about = "A self-hostable file service for files of any size",
    after_help = EXIT_STATUS,
    propagate_version = true
)]
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
    /// Upload files or folders: small files whole, others in parallel parts,
    /// resumable; a file the server already has (same name, size and
    /// CRC32C) is not sent again.
    ///
    /// Run it again after an interruption (Ctrl-C, a crash, a lost network)
    /// and it sends only what the server does not have yet. Files take
    /// their base names on the server.
    ///
    /// Examples: ferry upload videos/*.mp4 --parallel 8
    ///           ferry upload -r datasets/ --jobs 8
    ///           tar c logs | ferry upload - --name logs.tar
    #[command(after_help = EXIT_STATUS)]
    Upload(UploadArgs),
    /// Download a file, resuming a cut-off download and checking its CRC32C;
    /// a local file that already holds the same bytes is left as it is.
    ///
    /// Examples: ferry download train.parquet -o data/train.parquet
    ///           ferry download logs.tar -o - | tar x
    #[command(after_help = EXIT_STATUS)]
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
    /// Show the interrupted uploads this machine can resume: how much of
    /// each is done and how old it is.
    ///
    /// Example: ferry status
    Status(StatusArgs),
    /// Abandon interrupted uploads: on the server and in this machine's
    /// journal.
    ///
    /// Examples: ferry abort videos/big.mp4
    ///           ferry abort upl_01jfz8k2m4c5v6b7n8p9q0r1s2
    ///           ferry abort --all
    #[command(after_help = EXIT_STATUS)]
    Abort(AbortArgs),
    /// Print a shell completion script.
    ///
    /// Examples: ferry completions bash > /etc/bash_completion.d/ferry
    ///           ferry completions zsh > "${fpath[1]}/_ferry"
    ///           ferry completions fish > ~/.config/fish/completions/ferry.fish
    Completions { shell: clap_complete::Shell },
    /// Print ferry's man page (roff).
    ///
    /// Example: ferry man > /usr/local/share/man/man1/ferry.1
    Man,
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
    #[command(flatten)]
    pub settings: Settings,
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
    /// Manage an org's webhooks: endpoints that are sent its events, signed
    /// in the Standard Webhooks form.
    #[command(subcommand)]
    Webhook(WebhookCommand),
    /// Check that the metadata and the stored bytes agree; lists every
    /// difference and exits 1 if there is one.
    ///
    /// Example: ferry admin --data-dir /var/lib/ferry check
    Check(StorageSettings),
    /// Copy the server's data dir (database, secret, files) to a new
    /// directory, while the server runs. Uploads in progress are left out;
    /// the copy is checked. Start a server on the copy to restore it. The
    /// embedded layout only (on PostgreSQL, pg_dump).
    ///
    /// Example: ferry admin --data-dir /var/lib/ferry backup /backups/ferry-2026-12-04
    Backup {
        /// A directory that does not exist yet, or an empty one.
        path: PathBuf,
        #[command(flatten)]
        storage: StorageSettings,
    },
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

#[derive(Debug, Subcommand)]
pub enum WebhookCommand {
    /// Add an endpoint; prints its id, then its signing secret alone on the
    /// last line (shown only now).
    ///
    /// Example: ferry admin webhook add --org research https://hooks.example.com/ferry --events file.registered
    Add {
        #[arg(long)]
        org: String,
        /// Where events are POSTed: http:// or https://.
        url: String,
        /// The events to send, comma-separated [default: all]: file.registered,
        /// file.ingested, file.deleted, upload.aborted, upload.expired.
        #[arg(long, value_delimiter = ',')]
        events: Vec<String>,
        /// Allow a loopback or private address, as the server must be
        /// started to deliver there (--webhook-allow-private).
        #[arg(long, env = "FERRY_WEBHOOK_ALLOW_PRIVATE", num_args = 0..=1, default_missing_value = "true",
              action = clap::ArgAction::Set, default_value_t = false)]
        allow_private: bool,
    },
    /// List an org's endpoints (never their secrets).
    ///
    /// Example: ferry admin webhook list --org research
    List {
        #[arg(long)]
        org: String,
    },
    /// Remove an endpoint; deliveries to it not yet made are dropped.
    ///
    /// Example: ferry admin webhook remove whk_01jfz8k2m4c5v6b7n8p9q0r1s2
    Remove { endpoint_id: String },
    /// List the deliveries that were given up on.
    ///
    /// Example: ferry admin webhook failed --org research
    Failed {
        #[arg(long)]
        org: String,
    },
    /// Send an event again (with its id) to the endpoints it went to.
    ///
    /// Example: ferry admin webhook redeliver evt_01jfz8k2m4c5v6b7n8p9q0r1s2
    Redeliver { event_id: String },
}

/// Where the server is and the key to use.
#[derive(Debug, Args)]
pub struct Connection {
    /// The server, with or without the API's `/v0.5` [default: http://127.0.0.1:8080].
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
    /// Files and folders to upload; `-` reads standard input (with --name).
    #[arg(required = true)]
    pub paths: Vec<PathBuf>,
    /// The name on the server (one file only) [default: the file's name].
    #[arg(long)]
    pub name: Option<String>,
    /// Upload the files in subfolders too.
    #[arg(long, short)]
    pub recursive: bool,
    /// Files in flight at once (each with --parallel parts).
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..))]
    pub jobs: u16,
    /// Send files even when the server already has the same bytes under the name.
    #[arg(long)]
    pub force: bool,
    /// The file type [default: from the extension].
    #[arg(long = "type")]
    pub file_type: Option<String>,
    /// Parts in flight at once, per file.
    #[arg(long, default_value_t = 8, value_parser = clap::value_parser!(u16).range(1..))]
    pub parallel: u16,
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
    /// Where to write it; `-` for standard output [default: the file's name, here].
    #[arg(long, short)]
    pub output_path: Option<PathBuf>,
    /// Download even when the local file already holds the same bytes.
    #[arg(long)]
    pub force: bool,
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
    /// List the newest N files.
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u64).range(1..))]
    pub limit: u64,
    /// List every file, however many.
    #[arg(long, conflicts_with = "limit")]
    pub all: bool,
    #[command(flatten)]
    pub connection: Connection,
    /// One JSON object a line, a file's record as the API gives it, for scripts.
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

#[derive(Debug, Args)]
pub struct AbortArgs {
    /// Local paths of interrupted uploads, or their upload ids (`ferry status` lists both).
    #[arg(required_unless_present = "all", conflicts_with = "all")]
    pub targets: Vec<String>,
    /// Every interrupted upload to this server.
    #[arg(long)]
    pub all: bool,
    #[command(flatten)]
    pub connection: Connection,
}
