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
use ferry_meta::{MetadataStore, Postgres, Sqlite};
use tokio::net::TcpListener;

use crate::http::serve::{ConnectionLimits, serve};
use crate::service::{Extractor, RateLimiter, Service, Settings, now_secs};

/// Every setting of `ferry serve` (spec §7), resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: String,
    pub data_dir: PathBuf,
    pub public_url: Option<String>,
    pub database_url: Option<String>,
    pub storage: Option<String>,
    /// Where an `s3://` storage is, and the key to reach it.
    pub s3: S3Settings,
    pub url_ttl_secs: u64,
    pub part_size: u64,
    pub upload_expiry_secs: u64,
    pub max_simple_upload: u64,
    pub max_upload_size: u64,
    pub allowed_file_types: Vec<String>,
    pub bootstrap_key: Option<String>,
    pub deletion_grace_secs: u64,
    pub janitor_interval_secs: u64,
    pub shutdown_timeout_secs: u64,
    pub metrics_need_key: bool,
    /// Bytes an org's files and uploads in progress may take (0: no limit).
    pub org_quota: u64,
    /// API requests per second per key (0: no limit).
    pub rate_limit: u32,
    /// Seconds a request body may stay silent before it is cut off.
    pub body_timeout_secs: u64,
    /// Seconds a request head may take from its first byte.
    pub header_timeout_secs: u64,
    /// Seconds a connection may sit with no request and no byte moving.
    pub idle_timeout_secs: u64,
    /// Connections at once; past it new ones are closed at once.
    pub max_connections: usize,
    /// Seconds the rest of a refused request's body is read before the answer.
    pub drain_timeout_secs: u64,
    /// Seconds bytes written ahead of their metadata row are kept for it.
    pub orphan_grace_secs: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("invalid setting: {0}")]
    Setting(String),
    #[error("{context}: {source}")]
    Io { context: String, source: std::io::Error },
    #[error("metadata store: {0}")]
    Meta(#[from] ferry_meta::MetaError),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> StartupError {
    let context = context.into();
    move |source| StartupError::Io { context, source }
}

#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub page_size: Option<u16>,
}

/// A blob store, and the same store as the local disk when ferry takes part
/// PUTs itself.
pub type BlobStores = (Arc<dyn BlobStore>, Option<Arc<LocalDisk>>);

/// The blob store the settings name: the data dir by default, or a bucket
/// of an S3-compatible store for `s3://BUCKET[/PREFIX]`. Shared by `serve`
/// and the admin commands.
pub fn open_blob_store(
    data_dir: &Path,
    storage: Option<&str>,
    s3: &S3Settings,
    url_ttl: Duration,
) -> Result<BlobStores, StartupError> {
    match storage.and_then(|s| s.strip_prefix("s3://")) {
        Some(location) => {
            let (bucket, prefix) = location.split_once('/').unwrap_or((location, ""));
            let prefix =
                if prefix.is_empty() || prefix.ends_with('/') { prefix.to_owned() } else { format!("{prefix}/") };
            let need = |value: &Option<String>, name: &str| {
                value.clone().ok_or_else(|| StartupError::Setting(format!("storage `s3://…` needs {name}")))
            };
            let s3 = S3::new(S3Config {
                endpoint: need(&s3.endpoint, "FERRY_S3_ENDPOINT")?,
                region: s3.region.clone().unwrap_or_else(|| "us-east-1".into()),
                bucket: bucket.to_owned(),
                prefix,
                access_key_id: need(&s3.access_key_id, "FERRY_S3_ACCESS_KEY_ID")?,
                secret_access_key: need(&s3.secret_access_key, "FERRY_S3_SECRET_ACCESS_KEY")?,
                url_ttl,
                page_size: s3.page_size.unwrap_or(S3Config::DEFAULT_PAGE_SIZE),
                retry_for: S3Config::DEFAULT_RETRY_FOR,
            })
            .map_err(|e| StartupError::Setting(format!("storage: {e}")))?;
            Ok((Arc::new(s3), None))
        }
        None => {
            if let Some(storage) = storage.filter(|s| Path::new(s) != data_dir) {
                return Err(StartupError::Setting(format!(
                    "storage `{storage}` is neither s3://BUCKET nor the data dir; leave it unset for the data dir"
                )));
            }
            let disk = LocalDisk::open(&data_dir.join("blobs")).map_err(io("opening the blob store"))?;
            let disk = Arc::new(disk);
            Ok((disk.clone(), Some(disk)))
        }
    }
}

/// The name of the SQLite database inside the data dir.
const DATABASE_FILE: &str = "ferry.db";
const SECRET_FILE: &str = "server-secret";

/// Opens the metadata store the settings name: SQLite in the data dir by
/// default, `sqlite://PATH`, or `postgres://…`. Shared by `serve` and the
/// admin commands, so both always see the same database.
pub async fn open_metadata(
    data_dir: &Path,
    database_url: Option<&str>,
) -> Result<Arc<dyn MetadataStore>, StartupError> {
    let path = match database_url {
        Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
            return Ok(Arc::new(Postgres::connect(url).await?));
        }
        None => data_dir.join(DATABASE_FILE),
        Some(url) => match url.strip_prefix("sqlite://") {
            Some(path) => PathBuf::from(path),
            None => {
                return Err(StartupError::Setting(format!(
                    "database URL `{url}` is neither postgres://… nor sqlite://PATH"
                )));
            }
        },
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        fs::create_dir_all(parent).map_err(io(format!("creating {}", parent.display())))?;
    }
    Ok(Arc::new(Sqlite::open(&path)?))
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
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(io("creating the server secret"))?;
            file.write_all(secret.to_hex().as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(io("writing the server secret"))?;
            Ok(secret)
        }
        Err(e) => Err(io("reading the server secret")(e)),
    }
}

/// A server ready to accept connections.
pub struct Server {
    pub listener: TcpListener,
    pub service: Arc<Service>,
    /// The API key generated for the `default` org on first start, to be
    /// shown once to the operator (and never logged).
    pub generated_key: Option<String>,
    timing: Timing,
}

struct Timing {
    janitor_interval: Duration,
    body_timeout: Duration,
    connections: ConnectionLimits,
}

impl Server {
    pub async fn start(config: ServerConfig) -> Result<Self, StartupError> {
        if !(MIN_URL_TTL_SECS..=MAX_URL_TTL_SECS).contains(&config.url_ttl_secs) {
            return Err(StartupError::Setting(format!(
                "url-ttl must be between {MIN_URL_TTL_SECS} and {MAX_URL_TTL_SECS} seconds"
            )));
        }
        let policy = UploadPolicy::new(config.max_upload_size, config.part_size, config.allowed_file_types.clone())
            .map_err(|e| StartupError::Setting(e.to_string()))?;

        fs::create_dir_all(&config.data_dir).map_err(io(format!("creating {}", config.data_dir.display())))?;
        let meta = open_metadata(&config.data_dir, config.database_url.as_deref()).await?;
        let secret = load_or_create_secret(&config.data_dir)?;
        let (blob, local_parts) = open_blob_store(
            &config.data_dir,
            config.storage.as_deref(),
            &config.s3,
            Duration::from_secs(config.url_ttl_secs),
        )?;

        let generated_key = bootstrap(meta.as_ref(), config.bootstrap_key.as_deref()).await?;

        let listener =
            TcpListener::bind(&config.listen).await.map_err(io(format!("listening on {}", config.listen)))?;
        let address = listener.local_addr().map_err(io("reading the bound address"))?;
        let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
        let settings = Settings {
            public_url: public_url.trim_end_matches('/').to_owned(),
            url_ttl: Duration::from_secs(config.url_ttl_secs),
            upload_expiry: Duration::from_secs(config.upload_expiry_secs),
            deletion_grace: Duration::from_secs(config.deletion_grace_secs),
            max_simple_upload: config.max_simple_upload,
            metrics_need_key: config.metrics_need_key,
            org_quota: (config.org_quota > 0).then_some(config.org_quota),
            orphan_grace: Duration::from_secs(config.orphan_grace_secs.max(1)),
            drain_timeout: Duration::from_secs(config.drain_timeout_secs),
        };
        let extractor = Extractor { meta: meta.clone(), blob: blob.clone() };
        let service = Service {
            rate_limiter: RateLimiter::per_second(config.rate_limit),
            extractor,
            metrics: Arc::default(),
            meta,
            blob,
            local_parts,
            signer: PartUrlSigner::new(&secret),
            token_key: PartTokenKey::new(&secret),
            policy,
            settings,
        };
        let timing = Timing {
            janitor_interval: Duration::from_secs(config.janitor_interval_secs.max(1)),
            body_timeout: Duration::from_secs(config.body_timeout_secs.max(1)),
            connections: ConnectionLimits {
                header_timeout: Duration::from_secs(config.header_timeout_secs.max(1)),
                idle_timeout: Duration::from_secs(config.idle_timeout_secs.max(1)),
                max_connections: config.max_connections.max(1),
                shutdown_timeout: Duration::from_secs(config.shutdown_timeout_secs),
            },
        };
        Ok(Self { listener, service: Arc::new(service), generated_key, timing })
    }

    /// Serves until `shutdown` resolves, then stops accepting and gives the
    /// requests in flight (part PUTs included) up to the shutdown timeout to
    /// finish. The janitor runs beside it from the first moment, which also
    /// picks up whatever a crash left behind.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let janitor = tokio::spawn(self.service.clone().run_janitor(self.timing.janitor_interval));
        let metrics = self.service.metrics.clone();
        let app = crate::http::router(self.service, self.timing.body_timeout);
        serve(self.listener, app, self.timing.connections, metrics, shutdown).await;
        janitor.abort();
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
