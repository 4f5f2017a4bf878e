//! The client commands but upload (`upload.rs`): download, ls, info, rm,
//! status, abort.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use ferry_api::ErrorCode;
use ferry_api::files::ListFilesQuery;
use ferry_client::download::{download_file, download_to};
use ferry_client::journal::{Entry, Journal};
use ferry_client::{Client, ClientError, RetryPolicy};
use indicatif::HumanBytes;
use serde_json::json;

use crate::cli::{AbortArgs, Connection, DownloadArgs, InfoArgs, LsArgs, RmArgs, StatusArgs};
use crate::terminal::Screen;

/// A client that keeps retrying what can be retried for up to `patience`
/// (long for transfers, which should ride out a server restart; short for
/// a quick question like `ls`) and tells `screen` when the server goes
/// away and comes back.
pub fn connect(connection: &Connection, screen: &Arc<Screen>, patience: Duration) -> anyhow::Result<Client> {
    let retry = RetryPolicy { give_up_after: patience, ..RetryPolicy::default() };
    Ok(Client::new(&connection.url, &connection.api_key)?.with_retry(retry).on_retry(screen.retry_reporter()))
}

pub const TRANSFER_PATIENCE: Duration = Duration::from_secs(300);
const QUESTION_PATIENCE: Duration = Duration::from_secs(30);

/// An error as a script reads it.
pub fn error_json(e: &ClientError) -> serde_json::Value {
    match e {
        ClientError::Api { status, errors, .. } => json!({"status": status, "errors": errors}),
        other => json!({"message": other.to_string()}),
    }
}

pub async fn download(args: DownloadArgs) -> anyhow::Result<()> {
    let screen = Screen::new(&args.output);
    let client = connect(&args.connection, &screen, TRANSFER_PATIENCE)?;
    let progress = screen.file(&args.file_id, 0, None);
    if args.output_path.as_deref() == Some(Path::new("-")) {
        let mut stdout = tokio::io::stdout();
        let sent = download_to(&client, &args.file_id, &mut stdout, progress.clone()).await;
        drop(progress);
        screen.clear();
        let num_bytes = sent.with_context(|| format!("downloading {}", args.file_id))?;
        screen.say(&format!(
            "downloaded {} to standard output ({}, CRC32C verified)",
            args.file_id,
            HumanBytes(num_bytes)
        ));
        return Ok(());
    }
    let out = args.output_path.clone().unwrap_or_else(|| args.file_id.clone().into());
    let done = download_file(&client, &args.file_id, &out, !args.force, progress.clone()).await;
    drop(progress);
    screen.clear();
    let done = done.with_context(|| format!("downloading {}", args.file_id))?;
    if args.output.json {
        let status = if done.unchanged { "unchanged" } else { "downloaded" };
        println!(
            "{}",
            json!({"file_id": args.file_id, "path": done.path, "status": status, "num_bytes": done.num_bytes,
                   "resumed_from": done.resumed_from})
        );
    } else if done.unchanged {
        screen.say(&format!(
            "unchanged {}: it holds the bytes of {} already ({}); nothing fetched (--force fetches it)",
            done.path.display(),
            args.file_id,
            HumanBytes(done.num_bytes)
        ));
    } else {
        screen.say(&format!(
            "downloaded {} to {} ({}, CRC32C verified)",
            args.file_id,
            done.path.display(),
            HumanBytes(done.num_bytes)
        ));
    }
    Ok(())
}

pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let client = connect(&args.connection, &Screen::plain(), QUESTION_PATIENCE)?;
    let wanted = if args.all { u64::MAX } else { args.limit };
    let mut query = ListFilesQuery { file_type: args.file_type.clone(), ..ListFilesQuery::default() };
    let mut listed = 0u64;
    // Printed a page at a time, so a long listing starts at once and is never held whole.
    let more = loop {
        query.limit = Some((wanted - listed).min(ListFilesQuery::MAX_ITEMS as u64) as i64);
        let page = client.list_files_page(&query).await?;
        if listed == 0 && !args.json {
            println!("{:<40} {:>10} {:<24} {:<20} STATUS", "NAME", "SIZE", "TYPE", "CREATED");
        }
        for file in &page.data {
            if args.json {
                println!("{}", serde_json::to_string(file)?);
                continue;
            }
            let status = format!("{:?}", file.file_status).to_lowercase();
            println!(
                "{:<40} {:>10} {:<24} {:<20} {status}",
                file.file_id,
                HumanBytes(file.num_bytes).to_string(),
                file.file_type,
                file.created_at
            );
        }
        listed += page.data.len() as u64;
        match page.next_cursor {
            Some(cursor) if listed < wanted => query.after = Some(cursor),
            next => break next.is_some(),
        }
    };
    if more {
        eprintln!("(the newest {listed} files; --limit N lists more, --all every one)");
    }
    Ok(())
}

pub async fn info(args: InfoArgs) -> anyhow::Result<()> {
    let client = connect(&args.connection, &Screen::plain(), QUESTION_PATIENCE)?;
    let value = match &args.file_id {
        Some(file_id) => serde_json::to_value(client.file_metadata(file_id).await?)?,
        None => serde_json::to_value(client.info().await?)?,
    };
    if args.json {
        println!("{value}");
    } else {
        println!("{}", serde_json::to_string_pretty(&value)?);
    }
    Ok(())
}

pub async fn rm(args: RmArgs) -> anyhow::Result<()> {
    let client = connect(&args.connection, &Screen::plain(), QUESTION_PATIENCE)?;
    let deleted = client.delete(&args.file_id).await?;
    println!("deleted {} ({})", deleted.file_id, deleted.file_uid);
    Ok(())
}

/// "3 h ago", from a Unix time.
fn age(since: u64) -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
    if since == 0 {
        return "at an unknown time".into();
    }
    let secs = now.saturating_sub(since);
    let (n, unit) = match secs {
        0..60 => (secs, "s"),
        60..3600 => (secs / 60, "min"),
        3600..86400 => (secs / 3600, "h"),
        _ => (secs / 86400, "days"),
    };
    format!("{n} {unit} ago")
}

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let journal = Journal::open(&Journal::default_dir())?;
    let entries = journal.list()?;
    if args.json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({"path": e.header.path, "server": e.header.server, "file_id": e.header.file_name,
                       "upload_id": e.header.upload_id, "num_bytes": e.header.size, "bytes_done": e.bytes_done(),
                       "parts_done": e.parts.len(), "parts_total": e.header.num_parts,
                       "started_at": e.header.started_at})
            })
            .collect();
        println!("{}", serde_json::to_string(&list)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("no interrupted uploads");
    }
    for entry in entries {
        let h = &entry.header;
        let percent = entry.bytes_done() * 100 / h.size.max(1);
        println!("{} (upload {} to {}, started {})", h.path.display(), h.upload_id, h.server, age(h.started_at));
        println!(
            "  {} of {} parts, {} of {} ({percent}%): `ferry upload {}` resumes it, `ferry abort {}` abandons it",
            entry.parts.len(),
            h.num_parts,
            HumanBytes(entry.bytes_done()),
            HumanBytes(h.size),
            h.path.display(),
            h.path.display()
        );
    }
    Ok(())
}

/// The journal's entry for a local path or an upload id, on this server.
fn find_entry(journal: &Journal, server: &str, target: &str) -> anyhow::Result<Option<Entry>> {
    let path = Path::new(target);
    if let Ok(canonical) = std::fs::canonicalize(path)
        && let Some(entry) = journal.load(server, &canonical)?
    {
        return Ok(Some(entry));
    }
    Ok(journal.find_upload(target)?.filter(|e| e.header.server == server))
}

pub async fn abort(args: AbortArgs) -> anyhow::Result<()> {
    let screen = Screen::plain();
    let client = connect(&args.connection, &screen, QUESTION_PATIENCE)?;
    let journal = Journal::open(&Journal::default_dir())?;
    let server = client.base_url().to_owned();
    let mut targets: Vec<(String, Option<Entry>)> = Vec::new();
    if args.all {
        targets.extend(journal.list()?.into_iter().filter(|e| e.header.server == server).map(|e| {
            let upload_id = e.header.upload_id.clone();
            (upload_id, Some(e))
        }));
        if targets.is_empty() {
            println!("no interrupted uploads to {server}");
        }
    }
    for target in &args.targets {
        match find_entry(&journal, &server, target)? {
            Some(entry) => targets.push((entry.header.upload_id.clone(), Some(entry))),
            None if target.starts_with("upl_") => targets.push((target.clone(), None)),
            None => bail!(
                "no interrupted upload of {target} to {server} (`ferry status` lists them; an upload id works too)"
            ),
        }
    }
    for (upload_id, entry) in targets {
        let what = entry.as_ref().map_or_else(|| upload_id.clone(), |e| e.header.path.display().to_string());
        match client.abort(&upload_id).await {
            Ok(()) => {}
            Err(e) if e.code() == Some(ErrorCode::UploadNotFound) && entry.is_some() => {
                screen.note(&format!("the server had already let {upload_id} go"));
            }
            Err(e) if e.code() == Some(ErrorCode::UploadCompleted) => {
                bail!(
                    "{what}: the upload {upload_id} is complete; there is nothing to abort (`ferry rm` deletes the file)"
                )
            }
            Err(e) => return Err(anyhow::Error::new(e).context(format!("aborting {what}"))),
        }
        if let Some(entry) = &entry {
            journal.remove(&entry.header.server, &entry.header.path)?;
        }
        println!("abandoned the upload of {what} ({upload_id})");
    }
    Ok(())
}
