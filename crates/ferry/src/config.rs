//! Resolving `serve` settings: flags and environment (already merged by
//! clap), then the TOML file, then the defaults.

use std::path::{Path, PathBuf};

use anyhow::Context;
use ferry_core::plan::DEFAULT_PART_SIZE;
use ferry_core::upload::DEFAULT_FILE_TYPES;
use ferry_core::{GIB, MIB};
use ferry_server::startup::{S3Settings, ServerConfig};
use serde::Deserialize;

use crate::cli::ServeArgs;

pub const DEFAULT_DATA_DIR: &str = "./ferry-data";

/// The settings a `--config` file may hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileSettings {
    listen: Option<String>,
    data_dir: Option<PathBuf>,
    public_url: Option<String>,
    database_url: Option<String>,
    storage: Option<String>,
    s3_endpoint: Option<String>,
    s3_region: Option<String>,
    s3_access_key_id: Option<String>,
    s3_secret_access_key: Option<String>,
    s3_page_size: Option<u16>,
    url_ttl: Option<u64>,
    part_size: Option<u64>,
    upload_expiry: Option<u64>,
    max_simple_upload: Option<u64>,
    max_upload_size: Option<u64>,
    allowed_file_types: Option<Vec<String>>,
    deletion_grace: Option<u64>,
    janitor_interval: Option<u64>,
    shutdown_timeout: Option<u64>,
    metrics_need_key: Option<bool>,
    org_quota: Option<u64>,
    rate_limit: Option<u32>,
    body_timeout: Option<u64>,
    header_timeout: Option<u64>,
    idle_timeout: Option<u64>,
    max_connections: Option<usize>,
    drain_timeout: Option<u64>,
    orphan_grace: Option<u64>,
}

fn read_file(path: &Path) -> anyhow::Result<FileSettings> {
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

pub fn resolve(args: ServeArgs) -> anyhow::Result<ServerConfig> {
    let file = match &args.config {
        Some(path) => read_file(path)?,
        None => FileSettings::default(),
    };
    Ok(ServerConfig {
        listen: args.listen.or(file.listen).unwrap_or_else(|| "127.0.0.1:8080".into()),
        data_dir: args.data_dir.or(file.data_dir).unwrap_or_else(|| DEFAULT_DATA_DIR.into()),
        public_url: args.public_url.or(file.public_url),
        database_url: args.database_url.or(file.database_url),
        storage: args.storage.storage.or(file.storage),
        s3: S3Settings {
            endpoint: args.storage.s3_endpoint.or(file.s3_endpoint),
            region: args.storage.s3_region.or(file.s3_region),
            access_key_id: args.storage.s3_access_key_id.or(file.s3_access_key_id),
            secret_access_key: args.storage.s3_secret_access_key.or(file.s3_secret_access_key),
            page_size: args.storage.s3_page_size.or(file.s3_page_size),
        },
        url_ttl_secs: args.url_ttl.or(file.url_ttl).unwrap_or(3600),
        part_size: args.part_size.or(file.part_size).unwrap_or(DEFAULT_PART_SIZE),
        upload_expiry_secs: args.upload_expiry.or(file.upload_expiry).unwrap_or(7 * 24 * 3600),
        max_simple_upload: args.max_simple_upload.or(file.max_simple_upload).unwrap_or(512 * MIB),
        max_upload_size: args.max_upload_size.or(file.max_upload_size).unwrap_or(250 * GIB),
        allowed_file_types: args
            .allowed_file_types
            .or(file.allowed_file_types)
            .unwrap_or_else(|| DEFAULT_FILE_TYPES.iter().map(|t| t.to_string()).collect()),
        bootstrap_key: std::env::var("FERRY_BOOTSTRAP_KEY").ok().filter(|k| !k.is_empty()),
        deletion_grace_secs: args.deletion_grace.or(file.deletion_grace).unwrap_or(600),
        janitor_interval_secs: args.janitor_interval.or(file.janitor_interval).unwrap_or(60),
        shutdown_timeout_secs: args.shutdown_timeout.or(file.shutdown_timeout).unwrap_or(30),
        metrics_need_key: args.metrics_need_key.or(file.metrics_need_key).unwrap_or(false),
        org_quota: args.org_quota.or(file.org_quota).unwrap_or(0),
        rate_limit: args.rate_limit.or(file.rate_limit).unwrap_or(0),
        body_timeout_secs: args.body_timeout.or(file.body_timeout).unwrap_or(60),
        header_timeout_secs: args.header_timeout.or(file.header_timeout).unwrap_or(30),
        idle_timeout_secs: args.idle_timeout.or(file.idle_timeout).unwrap_or(60),
        max_connections: args.max_connections.or(file.max_connections).unwrap_or(4096),
        drain_timeout_secs: args.drain_timeout.or(file.drain_timeout).unwrap_or(10),
        orphan_grace_secs: args.orphan_grace.or(file.orphan_grace).unwrap_or(86_400),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn serve_args(argv: &[&str]) -> ServeArgs {
        match crate::cli::Cli::parse_from(argv).command {
            crate::cli::Command::Serve(args) => *args,
            _ => unreachable!(),
        }
    }

    #[test]
    fn flags_beat_the_file_which_beats_the_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, "listen = \"0.0.0.0:9000\"\nurl_ttl = 60\n").unwrap();
        let config =
            resolve(serve_args(&["ferry", "serve", "--config", path.to_str().unwrap(), "--url-ttl", "30"])).unwrap();
        assert_eq!(config.url_ttl_secs, 30);
        assert_eq!(config.listen, "0.0.0.0:9000");
        assert_eq!(config.part_size, 8 * MIB);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
    }

    #[test]
    fn unknown_file_settings_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ferry.toml");
        std::fs::write(&path, "listen_address = \"x\"\n").unwrap();
        assert!(resolve(serve_args(&["ferry", "serve", "--config", path.to_str().unwrap()])).is_err());
    }
}
