//! The client commands: upload, download, ls, info, rm, status.

use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use ferry_api::files::ListFilesQuery;
use ferry_client::download::download_file;
use ferry_client::journal::Journal;
use ferry_client::upload::{Method, UploadOptions, upload_file};
use ferry_client::{Client, ClientError, NoProgress, Progress, RetryPolicy};
use indicatif::{HumanBytes, ProgressBar, ProgressStyle};
use serde_json::json;

use crate::cli::{Connection, DownloadArgs, InfoArgs, LsArgs, Output, RmArgs, StatusArgs, UploadArgs};

/// A client that says on stderr when it retries (unless `quiet`), and
/// keeps retrying for up to `patience`: long for transfers, which should
/// ride out a server restart, short for a quick question like `ls`.
fn connect(connection: &Connection, quiet: bool, patience: Duration) -> anyhow::Result<Client> {
    let retry = RetryPolicy { give_up_after: patience, ..RetryPolicy::default() };
    let client = Client::new(&connection.url, &connection.api_key)?.with_retry(retry);
    Ok(if quiet {
        client
    } else {
        client.on_retry(|e, wait| eprintln!("note: {e}; retrying in {:.1} s", wait.as_secs_f64()))
    })
}

const TRANSFER_PATIENCE: Duration = Duration::from_secs(300);
const QUESTION_PATIENCE: Duration = Duration::from_secs(30);

/// A bar on a terminal: bytes, rate, ETA, and the parts in flight.
struct Bar {
    bar: ProgressBar,
    label: String,
}

impl Bar {
    fn new(label: &str) -> Self {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:30!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.enable_steady_tick(Duration::from_millis(200));
        bar.set_message(label.to_owned());
        Self { bar, label: label.to_owned() }
    }
}

impl Progress for Bar {
    fn start(&self, total: u64, done: u64) {
        self.bar.set_length(total);
        self.bar.set_position(done);
        self.bar.reset_eta();
    }
    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }
    fn retreat(&self, bytes: u64) {
        self.bar.set_position(self.bar.position().saturating_sub(bytes));
    }
    fn parts_in_flight(&self, count: usize) {
        self.bar.set_message(format!("{} ({count} in flight)", self.label));
    }
    fn note(&self, text: &str) {
        self.bar.println(format!("note: {text}"));
    }
    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// Notes without bars, for when stderr is not a terminal.
struct Notes;

impl Progress for Notes {
    fn note(&self, text: &str) {
        eprintln!("note: {text}");
    }
}

/// Bars on a terminal; otherwise (and with `--json`) only the notes, on
/// stderr, since they say things the user must know; nothing with `--quiet`.
fn progress_for(output: &Output, label: &str) -> Arc<dyn Progress> {
    if output.quiet {
        Arc::new(NoProgress)
    } else if std::io::stderr().is_terminal() && !output.json {
        Arc::new(Bar::new(label))
    } else {
        Arc::new(Notes)
    }
}

/// An error as a script reads it.
fn error_json(e: &ClientError) -> serde_json::Value {
    match e {
        ClientError::Api { status, errors, .. } => json!({"status": status, "errors": errors}),
        other => json!({"message": other.to_string()}),
    }
}

pub async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    if args.name.is_some() && args.paths.len() > 1 {
        bail!("--name names one file; it cannot be used with {} paths", args.paths.len());
    }
    let client = connect(&args.connection, args.output.quiet, TRANSFER_PATIENCE)?;
    let journal = Journal::open(&Journal::default_dir())?;
    let options = UploadOptions {
        file_name: args.name.clone(),
        file_type: args.file_type.clone(),
        parallel: args.parallel,
        simple_threshold: args.simple_threshold,
        limit_rate: args.limit_rate,
    };
    let started = Instant::now();
    let (mut uploaded, mut bytes, mut failed) = (0, 0u64, 0);
    for path in &args.paths {
        let label = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let progress = progress_for(&args.output, &label);
        match upload_file(&client, &journal, path, &options, progress.clone()).await {
            Ok(done) => {
                progress.finish();
                uploaded += 1;
                bytes += done.num_bytes;
                if args.output.json {
                    let method = if done.method == Method::Simple { "simple" } else { "direct" };
                    println!(
                        "{}",
                        json!({"path": path, "status": "uploaded", "file_id": done.file_id, "file_uid": done.file_uid,
                               "num_bytes": done.num_bytes, "method": method, "resumed": done.resumed,
                               "parts_total": done.parts_total, "parts_sent": done.parts_sent})
                    );
                } else if !args.output.quiet {
                    let resumed = if done.resumed {
                        format!(", resumed: {} of {} parts sent now", done.parts_sent, done.parts_total)
                    } else {
                        String::new()
                    };
                    eprintln!(
                        "uploaded {} as {} ({}{resumed})",
                        path.display(),
                        done.file_id,
                        HumanBytes(done.num_bytes)
                    );
                }
            }
            Err(e) => {
                progress.finish();
                failed += 1;
                if args.output.json {
                    println!("{}", json!({"path": path, "status": "failed", "error": error_json(&e)}));
                } else {
                    eprintln!("failed to upload {}: {e}", path.display());
                }
            }
        }
    }
    if !args.output.quiet && !args.output.json && args.paths.len() > 1 {
        let elapsed = started.elapsed().as_secs_f64();
        eprintln!("{uploaded} uploaded ({}), {failed} failed, in {elapsed:.1} s", HumanBytes(bytes));
    }
    if failed > 0 {
        bail!("{failed} of {} uploads failed", args.paths.len());
    }
    Ok(())
}

pub async fn download(args: DownloadArgs) -> anyhow::Result<()> {
    let client = connect(&args.connection, args.output.quiet, TRANSFER_PATIENCE)?;
    let out = args.output_path.clone().unwrap_or_else(|| args.file_id.clone().into());
    let progress = progress_for(&args.output, &args.file_id);
    let done = download_file(&client, &args.file_id, &out, progress.clone()).await;
    progress.finish();
    let done = done.with_context(|| format!("downloading {}", args.file_id))?;
    if args.output.json {
        println!(
            "{}",
            json!({"file_id": args.file_id, "path": done.path, "num_bytes": done.num_bytes, "resumed_from": done.resumed_from})
        );
    } else if !args.output.quiet {
        eprintln!(
            "downloaded {} to {} ({}, CRC32C verified)",
            args.file_id,
            done.path.display(),
            HumanBytes(done.num_bytes)
        );
    }
    Ok(())
}

pub async fn ls(args: LsArgs) -> anyhow::Result<()> {
    let client = connect(&args.connection, false, QUESTION_PATIENCE)?;
    let wanted = if args.all { u64::MAX } else { args.limit };
    let mut query = ListFilesQuery { file_type: args.file_type.clone(), ..ListFilesQuery::default() };
    let mut listed = 0u64;
    if !args.json {
        println!("{:<40} {:>10} {:<24} {:<20} STATUS", "NAME", "SIZE", "TYPE", "CREATED");
    }
    // Printed a page at a time, so a long listing starts at once and is never held whole.
    let more = loop {
        query.limit = Some((wanted - listed).min(ListFilesQuery::MAX_ITEMS as u64) as i64);
        let page = client.list_files_page(&query).await?;
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
    let client = connect(&args.connection, false, QUESTION_PATIENCE)?;
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
    let client = connect(&args.connection, false, QUESTION_PATIENCE)?;
    let deleted = client.delete(&args.file_id).await?;
    println!("deleted {} ({})", deleted.file_id, deleted.file_uid);
    Ok(())
}

pub fn status(args: StatusArgs) -> anyhow::Result<()> {
    let journal = Journal::open(&Journal::default_dir())?;
    let entries = journal.list()?;
    if args.json {
        let list: Vec<_> = entries
            .iter()
            .map(|e| {
                json!({"path": e.header.path, "server": e.header.server, "file_id": e.header.file_name,
                       "upload_id": e.header.upload_id, "num_bytes": e.header.size,
                       "parts_done": e.parts.len(), "parts_total": e.header.num_parts})
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
        println!(
            "{}: {} of {} parts done ({}), upload {} on {}; run `ferry upload {}` to resume",
            h.path.display(),
            entry.parts.len(),
            h.num_parts,
            HumanBytes(h.size),
            h.upload_id,
            h.server,
            h.path.display()
        );
    }
    Ok(())
}
