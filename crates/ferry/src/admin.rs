//! `ferry admin`: orgs and API keys, on the same database as the server.

use anyhow::{Context, bail};
use ferry_core::api_key::ApiKey;
use ferry_core::ids::KeyId;
use ferry_meta::MetadataStore;
use ferry_server::service::now_secs;
use std::time::Duration;

use ferry_server::service::check::check;
use ferry_server::startup::{S3Settings, open_blob_store, open_metadata};

use crate::cli::{AdminArgs, AdminCommand, KeyCommand, OrgCommand};
use crate::config::DEFAULT_DATA_DIR;

fn when(unix_secs: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

async fn org_id(meta: &dyn MetadataStore, name: &str) -> anyhow::Result<ferry_core::ids::OrgId> {
    match meta.find_org(name).await? {
        Some(org) => Ok(org.org_id),
        None => bail!("no org is named `{name}` (create it with `ferry admin org create {name}`)"),
    }
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(|| DEFAULT_DATA_DIR.into());
    let meta = open_metadata(&data_dir, args.database_url.as_deref()).await?;
    let meta = meta.as_ref();
    match args.command {
        AdminCommand::Org(OrgCommand::Create { name }) => {
            ferry_core::names::validate_org_name(&name).with_context(|| format!("cannot create org {name:?}"))?;
            let org = meta.create_org(&name, now_secs()).await?;
            println!("{}", org.org_id);
        }
        AdminCommand::Key(KeyCommand::Create { org }) => {
            let org_id = org_id(meta, &org).await?;
            let key = ApiKey::generate();
            meta.create_api_key(&org_id, &key.key_id, &key.secret_hash(), now_secs()).await?;
            println!("{key}");
        }
        AdminCommand::Key(KeyCommand::List { org }) => {
            let org_id = org_id(meta, &org).await?;
            println!("{:<31}  {:<20}  REVOKED", "KEY_ID", "CREATED");
            for key in meta.list_api_keys(&org_id).await? {
                let revoked = key.revoked_at.map(when).unwrap_or_else(|| "-".into());
                println!("{:<31}  {:<20}  {revoked}", key.key_id.to_string(), when(key.created_at));
            }
        }
        AdminCommand::Check(storage) => {
            let s3 = S3Settings {
                endpoint: storage.s3_endpoint,
                region: storage.s3_region,
                access_key_id: storage.s3_access_key_id,
                secret_access_key: storage.s3_secret_access_key,
                page_size: storage.s3_page_size,
            };
            let (blob, _) = open_blob_store(&data_dir, storage.storage.as_deref(), &s3, Duration::from_secs(3600))?;
            let report = check(meta, blob.as_ref()).await?;
            for problem in &report.problems {
                println!("{problem}");
            }
            println!(
                "checked {} files, {} uploads in progress, {} queued deletions: {} problems",
                report.files,
                report.uploads,
                report.queued,
                report.problems.len()
            );
            if !report.problems.is_empty() {
                bail!("the metadata and the stored bytes disagree");
            }
        }
        AdminCommand::Key(KeyCommand::Revoke { key_id }) => {
            let key_id: KeyId = key_id.parse().context("reading the key id")?;
            if !meta.revoke_api_key(&key_id, now_secs()).await? {
                bail!("no key has the id {key_id}");
            }
            println!("revoked {key_id}");
        }
    }
    Ok(())
}
