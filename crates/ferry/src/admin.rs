//! `ferry admin`: orgs, API keys, the check and backups, on the same
//! database as the server.

use std::time::Duration;

use anyhow::{Context, bail};
use ferry_core::ids::{EndpointId, EventId, KeyId};
use ferry_core::webhook::EventType;
use ferry_server::backup::backup;
use ferry_server::service::admin::Admin;
use ferry_server::settings::Settings;
use ferry_server::startup::{Missing, open_blob_store, open_metadata};

use crate::cli::{AdminArgs, AdminCommand, KeyCommand, OrgCommand, WebhookCommand};

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
        AdminCommand::Webhook(command) => webhook(admin().await?, command).await?,
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

async fn webhook(admin: Admin, command: WebhookCommand) -> anyhow::Result<()> {
    match command {
        WebhookCommand::Add { org, url, events, allow_private } => {
            let events = events.iter().map(|e| e.parse::<EventType>()).collect::<Result<Vec<_>, _>>();
            let endpoint = admin.add_webhook(&org, &url, events.map_err(anyhow::Error::msg)?, allow_private).await?;
            println!("{}", endpoint.endpoint_id);
            println!("{}", endpoint.secret);
        }
        WebhookCommand::List { org } => {
            println!("{:<31}  {:<20}  {:<40}  URL", "ENDPOINT_ID", "CREATED", "EVENTS");
            for endpoint in admin.list_webhooks(&org).await? {
                let events: Vec<&str> = endpoint.event_types.iter().map(|t| t.as_str()).collect();
                let events = if events.is_empty() { "all".to_owned() } else { events.join(",") };
                let id = endpoint.endpoint_id.to_string();
                println!("{id:<31}  {:<20}  {events:<40}  {}", when(endpoint.created_at), endpoint.url);
            }
        }
        WebhookCommand::Remove { endpoint_id } => {
            let endpoint_id: EndpointId = endpoint_id.parse().context("reading the endpoint id")?;
            admin.remove_webhook(&endpoint_id).await?;
            println!("removed {endpoint_id}");
        }
        WebhookCommand::Failed { org } => {
            println!("{:<31}  {:<31}  {:<16}  {:>8}  LAST", "EVENT_ID", "ENDPOINT_ID", "TYPE", "ATTEMPTS");
            for failed in admin.failed_webhooks(&org).await? {
                let (event, endpoint) = (failed.event_id.to_string(), failed.endpoint_id.to_string());
                let last = failed.last_status.unwrap_or_default();
                println!(
                    "{event:<31}  {endpoint:<31}  {:<16}  {:>8}  {last}",
                    failed.event_type.as_str(),
                    failed.attempts
                );
            }
        }
        WebhookCommand::Redeliver { event_id } => {
            let event_id: EventId = event_id.parse().context("reading the event id")?;
            let n = admin.redeliver(&event_id).await?;
            println!("{event_id} will be sent again to {n} endpoint(s)");
        }
    }
    Ok(())
}
