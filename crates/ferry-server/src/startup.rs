//! Starting a server: the data dir, the stores, the server secret, the
//! bootstrap org, and the listener.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ferry_blob::{BlobStore, LocalDisk, S3, S3Config};
use ferry_core::api_key::ApiKey;
use ferry_core::presign::{MAX_URL_TTL_SECS, MIN_URL_TTL_SECS, PartUrlSigner};
use ferry_core::secret::ServerSecret;
use ferry_core::token::PartTokenKey;
use ferry_core::upload::UploadPolicy;
use ferry_meta::{Engine, MetadataStore, Observer, Postgres, Sqlite, Store, Timed};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::http::serve::{ConnectionLimits, serve};
use crate::http::tls::Certificate;
use crate::service::{Extractor, LocalParts, RateLimiter, Service, Storage, now_secs};
use crate::settings::{Settings, StorageSettings};
use crate::telemetry::Metrics;

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid setting: {0}")]
    Setting(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("metadata store: {0}")]
    Meta(#[from] ferry_meta::MetaError),
    #[error(
        "no ferry database in {} (looked for {}): give the --data-dir (or --database-url) of a server, \
         or start `ferry serve --data-dir {}` once to make one",
        data_dir.display(), path.display(), data_dir.display()
    )]
    NoDatabase { data_dir: PathBuf, path: PathBuf },
}

pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartupError {
    let context = context.into();
    move |source| StartupError::Io { context, source }
}

/// The blob store the settings name, opened.
pub enum OpenedStore {
    Local(Arc<LocalDisk>),
    S3(Arc<S3>),
}

impl OpenedStore {
    pub fn bytes(&self) -> Arc<dyn BlobStore> {
        match self {
            Self::Local(disk) => disk.clone(),
            Self::S3(s3) => s3.clone(),
        }
    }
}

/// The blob store the settings name: the data dir by default, or a bucket
/// of an S3-compatible store for `s3://BUCKET[/PREFIX]`. Shared by `serve`
/// and the admin commands.
pub fn open_blob_store(
    data_dir: &Path,
    settings: &StorageSettings,
    url_ttl: Duration,
) -> Result<OpenedStore, StartupError> {
    let storage = settings.storage.as_deref();
    match storage.and_then(|s| s.strip_prefix("s3://")) {
        Some(location) => {
            let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
            let prefix =
                if prefix.is_empty() || prefix.ends_with('/') { prefix.to_owned() } else { format!("{prefix}/") };
            let need = |value: &Option<String>, name: &str| {
                value.clone().ok_or_else(|| StartupError::Setting(format!("storage `s3://…` needs {name}")))
            };
            let s3 = S3::new(S3Config {
                endpoint: need(&settings.s3_endpoint, "FERRY_S3_ENDPOINT")?,
                region: settings.s3_region.clone().unwrap_or_else(|| "us-east-1".into()),
                bucket: bucket.to_owned(),
                prefix,
                access_key_id: need(&settings.s3_access_key_id, "FERRY_S3_ACCESS_KEY_ID")?,
                secret_access_key: need(&settings.s3_secret_access_key, "FERRY_S3_SECRET_ACCESS_KEY")?,
                url_ttl,
                page_size: settings.s3_page_size.unwrap_or(S3Config::DEFAULT_PAGE_SIZE),
                retry_for: S3Config::DEFAULT_RETRY_FOR,
            })
            .map_err(|e| StartupError::Setting(format!("storage: {e}")))?;
            Ok(OpenedStore::S3(Arc::new(s3)))
        }
        None => {
            if let Some(storage) = storage.filter(|s| Path::new(s) != data_dir) {
                return Err(StartupError::Setting(format!(
                    "storage `{storage}` is neither s3://BUCKET nor the data dir; leave it unset for the data dir"
                )));
            }
            let disk = LocalDisk::open(&data_dir.join("blobs")).map_err(io("opening the blob store"))?;
            Ok(OpenedStore::Local(Arc::new(disk)))
        }
    }
}

/// The name of the SQLite database inside the data dir.
pub(crate) const DATABASE_FILE: &str = "ferry.db";
pub(crate) const SECRET_FILE: &str = "server-secret";

/// Whether opening the metadata store may create a SQLite database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Missing {
    /// `serve`: a first start makes the database.
    Create,
    /// The admin commands: a database that is not there is a wrong
    /// `--data-dir`, and an empty one made there would hide the mistake.
    Refuse,
}

/// Where the settings keep the metadata.
pub enum Database<'a> {
    Postgres(&'a str),
    Sqlite(PathBuf),
}

impl<'a> Database<'a> {
    /// SQLite in the data dir by default, `sqlite://PATH`, or `postgres://…`.
    pub fn named(data_dir: &Path, database_url: Option<&'a str>) -> Result<Self, StartupError> {
        match database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => Ok(Self::Postgres(url)),
            None => Ok(Self::Sqlite(data_dir.join(DATABASE_FILE))),
            Some(url) => match url.strip_prefix("sqlite://") {
                Some(path) => Ok(Self::Sqlite(PathBuf::from(path))),
                None => Err(StartupError::Setting(format!(
                    "database URL `{url}` is neither postgres://… nor sqlite://PATH"
                ))),
            },
        }
    }
}

/// Opens the metadata store the settings name ([`Database::named`]).
/// Shared by `serve` and the admin commands, so both always see the same
/// database.
pub async fn open_metadata(
    data_dir: &Path,
    database_url: Option<&str>,
    missing: Missing,
    observer: Option<Observer>,
) -> Result<Arc<dyn MetadataStore>, StartupError> {
    let path = match Database::named(data_dir, database_url)? {
        Database::Postgres(url) => return Ok(store(Postgres::connect(url).await?, observer)),
        Database::Sqlite(path) => path,
    };
    if missing == Missing::Refuse && !path.exists() {
        return Err(StartupError::NoDatabase { data_dir: data_dir.to_owned(), path });
    }
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    Ok(store(Sqlite::open(&path)?, observer))
}

/// The store over `engine`, its calls timed if someone watches them.
fn store<E: Engine>(engine: E, observer: Option<Observer>) -> Arc<dyn MetadataStore> {
    match observer {
        Some(observer) => Arc::new(Store::new(Timed::new(engine, observer))),
        None => Arc::new(Store::new(engine)),
    }
}

/// Writes a new file (never over an old one) that only its owner can
/// read, synced before it returns.
pub(crate) fn write_private_file(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let mut file = OpenOptions::new().write(true).create_new(true).mode(0o600).open(path)?;
    file.write_all(contents)?;
    file.sync_all()
}

/// Reads the server secret, creating it (mode 0600) on first start.
fn load_or_create_secret(data_dir: &Path) -> Result<ServerSecret, StartupError> {
    let path = data_dir.join(SECRET_FILE);
    match fs::read_to_string(&path) {
        Ok(text) => {
            let mode = fs::metadata(&path).map_err(io("reading the server secret"))?.permissions().mode();
            if mode & 0o077 != 0 {
                tracing::warn!(path = %path.display(), "the server secret is readable by others; chmod 600 it");
            }
            ServerSecret::from_hex(&text).map_err(|e| StartupError::Setting(format!("{}: {e}", path.display())))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = ServerSecret::generate();
            write_private_file(&path, secret.to_hex().as_bytes()).map_err(io("writing the server secret"))?;
            Ok(secret)
        }
        Err(e) => Err(io("reading the server secret")(e)),
    }
}

/// A server ready to accept connections.
pub struct Server {
    pub listener: TcpListener,
    /// The certificate when ferry speaks HTTPS; [`Certificate::reload`]
    /// swaps it for new connections.
    pub tls: Option<Arc<Certificate>>,
    pub service: Arc<Service>,
    /// The API key generated for the `default` org on first start, to be
    /// shown once to the operator (and never logged).
    pub generated_key: Option<String>,
}

impl Server {
    pub async fn start(settings: Settings) -> Result<Self, StartupError> {
        let url_ttl = settings.url_ttl.as_secs();
        if !(MIN_URL_TTL_SECS..=MAX_URL_TTL_SECS).contains(&url_ttl) {
            return Err(StartupError::Setting(format!(
                "url-ttl must be between {MIN_URL_TTL_SECS} and {MAX_URL_TTL_SECS} seconds"
            )));
        }
        let policy =
            UploadPolicy::new(settings.max_upload_size, settings.part_size, settings.allowed_file_types.clone())
                .map_err(|e| StartupError::Setting(e.to_string()))?;

        let tls = match (&settings.tls_cert, &settings.tls_key) {
            (Some(cert), Some(key)) => Some(Certificate::load(cert, key).map_err(StartupError::Setting)?),
            (None, None) => None,
            _ => return Err(StartupError::Setting("--tls-cert and --tls-key go together".into())),
        };
        // The port first: a start that cannot bind must leave nothing
        // made (above all not the first org and a key no one was shown).
        let listener =
            TcpListener::bind(&settings.listen).await.map_err(io(format!("listening on {}", settings.listen)))?;
        let data_dir = &settings.data_dir;
        fs::create_dir_all(data_dir).map_err(io(format!("creating {}", data_dir.display())))?;
        let metrics = Arc::new(Metrics::default());
        let observer = Some(metrics.metadata_observer());
        let meta = open_metadata(data_dir, settings.database_url.as_deref(), Missing::Create, observer).await?;
        let secret = load_or_create_secret(data_dir)?;
        let opened = open_blob_store(data_dir, &settings.storage, settings.url_ttl.get())?;

        let generated_key = bootstrap(meta.as_ref(), settings.bootstrap_key.as_deref()).await?;

        let storage = match opened {
            OpenedStore::Local(disk) => Storage::Local(LocalParts {
                disk,
                signer: PartUrlSigner::new(&secret),
                token_key: PartTokenKey::new(&secret),
                public_url: settings.public_url.as_deref().map(|url| url.trim_end_matches('/').to_owned()),
            }),
            OpenedStore::S3(s3) => Storage::S3(s3),
        };
        let extractor = Extractor { meta: meta.clone(), blob: storage.bytes(), tasks: TaskTracker::new() };
        let service = Service {
            rate_limiter: RateLimiter::per_second(settings.rate_limit),
            extractor,
            metrics,
            meta,
            storage,
            policy,
            settings,
        };
        Ok(Self { listener, tls, service: Arc::new(service), generated_key })
    }

    /// Serves until `shutdown` resolves, then stops accepting and gives the
    /// requests in flight (part PUTs included) up to the shutdown timeout to
    /// finish. The janitor runs beside it from the first moment, which also
    /// picks up whatever a crash left behind.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let settings = &self.service.settings;
        let limits = ConnectionLimits {
            header_timeout: settings.header_timeout.get().max(Duration::from_secs(1)),
            idle_timeout: settings.idle_timeout.get().max(Duration::from_secs(1)),
            max_connections: settings.max_connections.max(1),
            shutdown_timeout: settings.shutdown_timeout.get(),
        };
        let janitor_interval = settings.janitor_interval.get().max(Duration::from_secs(1));
        let body_timeout = settings.body_timeout.get().max(Duration::from_secs(1));
        // Background work is owned: told to stop, and waited for (within
        // the shutdown timeout), never cut off mid-pass.
        let (tasks, stop) = (self.service.extractor.tasks.clone(), CancellationToken::new());
        tasks.spawn(self.service.clone().run_janitor(janitor_interval, stop.clone()));
        let webhooks =
            crate::service::webhooks::webhook_client(settings.webhook_allow_private).map_err(std::io::Error::other)?;
        tasks.spawn(self.service.clone().run_webhooks(webhooks, stop.clone()));
        let metrics = self.service.metrics.clone();
        let tls = self.tls.as_ref().map(|cert| cert.acceptor()).transpose().map_err(std::io::Error::other)?;
        let app = crate::http::router(self.service, body_timeout);
        serve(self.listener, tls, app, limits, metrics, shutdown).await;
        stop.cancel();
        tasks.close();
        if tokio::time::timeout(limits.shutdown_timeout, tasks.wait()).await.is_err() {
            tracing::warn!("background work still running after the shutdown timeout; stopping anyway");
        }
        Ok(())
    }
}

/// On an empty store, creates the org `default` with the bootstrap key, or
/// with a new key that is returned to be shown once.
async fn bootstrap(meta: &dyn MetadataStore, bootstrap_key: Option<&str>) -> Result<Option<String>, StartupError> {
    let (key, generated) = match bootstrap_key {
        Some(text) => {
            let key: ApiKey = text.parse().map_err(|e| StartupError::Setting(format!("FERRY_BOOTSTRAP_KEY: {e}")))?;
            (key, false)
        }
        None => (ApiKey::generate(), true),
    };
    let created = meta.bootstrap("default", &key.key_id, &key.secret_hash(), now_secs()).await?;
    Ok((created && generated).then(|| key.to_string()))
}
