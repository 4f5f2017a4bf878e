//! `ferry admin`: orgs, API keys, the check and backups, on the same
//! database as the server.

use std::time::Duration;

use anyhow::{Context, bail};
use ferry_core::ids::KeyId;
use ferry_server::backup::backup;
use ferry_server::service::admin::Admin;
use ferry_server::settings::Settings;
use ferry_server::startup::{Missing, open_blob_store, open_metadata};

use crate::cli::{AdminArgs, AdminCommand, KeyCommand, OrgCommand};

fn when(unix_secs: i64) -> String {
    let time = std::time::UNIX_EPOCH + std::time::Duration::from_secs(unix_secs.max(0) as u64);
    humantime::format_rfc3339_seconds(time).to_string()
}

pub async fn run(args: AdminArgs) -> anyhow::Result<()> {
    let data_dir = args.data_dir.unwrap_or_else(|| Settings::default().data_dir);
    let database_url = args.database_url.as_deref();
    let admin =
        || async { anyhow::Ok(Admin::new(open_metadata(&data_dir, database_url, Missing::Refuse, None).await?)) };
    match args.command {
        AdminCommand::Org(OrgCommand::Create { name }) => {
            println!("{}", admin().await?.create_org(&name).await?.org_id);
        }
        AdminCommand::Key(KeyCommand::Create { org }) => {
            println!("{}", admin().await?.create_key(&org).await?);
        }
        AdminCommand::Key(KeyCommand::List { org }) => {
            let keys = admin().await?.list_keys(&org).await?;
            println!("{:<31}  {:<20}  REVOKED", "KEY_ID", "CREATED");
            for key in keys {
                let revoked = key.revoked_at.map(when).unwrap_or_else(|| "-".into());
                println!("{:<31}  {:<20}  {revoked}", key.key_id.to_string(), when(key.created_at));
            }
        }
        AdminCommand::Key(KeyCommand::Revoke { key_id }) => {
            let key_id: KeyId = key_id.parse().context("reading the key id")?;
            admin().await?.revoke_key(&key_id).await?;
            println!("revoked {key_id}");
        }
        AdminCommand::Check(storage) => {
            let blob = open_blob_store(&data_dir, &storage, Duration::from_secs(3600))?.bytes();
            let report = admin().await?.check(blob.as_ref()).await?;
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
        // Not through `admin()`: a backup reads a snapshot of the database.
        AdminCommand::Backup { path, storage } => {
            let report = backup(&data_dir, database_url, &storage, &path).await?;
            println!(
                "backed up {} files ({} bytes) to {}; {} uploads in progress left out (their clients start them again)",
                report.files,
                report.bytes,
                path.display(),
                report.uploads_left_out
            );
        }
    }
    Ok(())
}
