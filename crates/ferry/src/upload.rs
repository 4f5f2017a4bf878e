//! `ferry upload`: files, folders and standard input, several files in
//! flight, each resumable, none sent twice.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::bail;
use ferry_client::journal::Journal;
use ferry_client::upload::{Method, UploadOptions, Uploaded, upload_file};
use ferry_client::{Client, ClientError};
use futures_util::StreamExt;
use indicatif::HumanBytes;
use serde_json::json;

use crate::cli::UploadArgs;
use crate::client::{TRANSFER_PATIENCE, connect, error_json};
use crate::terminal::{Screen, describe};

/// One thing to upload.
enum Source {
    File { path: PathBuf, size: u64 },
    Stdin,
}

impl Source {
    fn shown(&self) -> String {
        match self {
            Self::File { path, .. } => path.display().to_string(),
            Self::Stdin => "standard input".into(),
        }
    }
}

/// The regular files the arguments name: files as given, each folder's
/// files (and, with `recursive`, its subfolders'), in name order.
/// Symbolic links inside folders are not followed (a link can loop, or
/// lead out of the folder); a link named as an argument is.
fn collect(paths: &[PathBuf], recursive: bool, screen: &Screen) -> anyhow::Result<Vec<Source>> {
    let mut sources = Vec::new();
    for path in paths {
        if path.as_os_str() == "-" {
            sources.push(Source::Stdin);
            continue;
        }
        let metadata = std::fs::metadata(path).map_err(|e| ClientError::Io { path: path.clone(), error: e })?;
        if metadata.is_file() {
            sources.push(Source::File { path: path.clone(), size: metadata.len() });
        } else if metadata.is_dir() {
            let mut skipped_folders = 0;
            walk(path, recursive, &mut sources, &mut skipped_folders)?;
            if skipped_folders > 0 {
                screen
                    .note(&format!("{}: {skipped_folders} subfolders left out (-r uploads them too)", path.display()));
            }
        } else {
            bail!("{} is neither a file nor a folder", path.display());
        }
    }
    Ok(sources)
}

fn walk(dir: &Path, recursive: bool, sources: &mut Vec<Source>, skipped_folders: &mut usize) -> anyhow::Result<()> {
    let io = |path: &Path| {
        let path = path.to_owned();
        move |error| ClientError::Io { path, error }
    };
    let mut entries: Vec<_> = std::fs::read_dir(dir).map_err(io(dir))?.collect::<Result<_, _>>().map_err(io(dir))?;
    entries.sort_by_key(|e| e.file_name());
    for entry in entries {
        let path = entry.path();
        let kind = entry.file_type().map_err(io(&path))?;
        if kind.is_file() {
            let size = entry.metadata().map_err(io(&path))?.len();
            sources.push(Source::File { path, size });
        } else if kind.is_dir() {
            if recursive {
                walk(&path, recursive, sources, skipped_folders)?;
            } else {
                *skipped_folders += 1;
            }
        }
    }
    Ok(())
}

/// The name each source takes on the server; refuses, before anything is
/// sent, two sources that would take one name.
fn names(sources: &[Source], name: Option<&str>) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = sources
        .iter()
        .map(|source| match (name, source) {
            (Some(name), _) => Ok(name.to_owned()),
            (None, Source::File { path, .. }) => {
                Ok(path.file_name().unwrap_or_default().to_string_lossy().into_owned())
            }
            (None, Source::Stdin) => bail!("standard input has no name: give one with --name"),
        })
        .collect::<anyhow::Result<_>>()?;
    let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (name, source) in names.iter().zip(sources) {
        by_name.entry(name).or_default().push(source.shown());
    }
    let clashes: Vec<String> = by_name
        .iter()
        .filter(|(_, paths)| paths.len() > 1)
        .map(|(name, paths)| format!("  `{name}`: {}", paths.join(", ")))
        .collect();
    if !clashes.is_empty() {
        bail!(
            "files on the server take their base names, and these would take the same one (nothing was sent):\n{}\n  \
             hint: upload them in separate runs, one with --name",
            clashes.join("\n")
        );
    }
    Ok(names)
}

pub async fn upload(args: UploadArgs) -> anyhow::Result<()> {
    let screen = Screen::new(&args.output);
    if args.name.is_some() && args.paths.len() > 1 {
        bail!("--name names one file; it cannot be used with {} paths", args.paths.len());
    }
    let sources = collect(&args.paths, args.recursive, &screen)?;
    if sources.is_empty() {
        bail!(
            "no files to upload in {}",
            args.paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    if args.name.is_some() && sources.len() > 1 {
        bail!("--name names one file; {} holds {}", args.paths[0].display(), sources.len());
    }
    let names = names(&sources, args.name.as_deref())?;
    let client = connect(&args.connection, &screen, TRANSFER_PATIENCE)?;
    let journal = Arc::new(Journal::open(&Journal::default_dir())?);
    let options = UploadOptions {
        file_name: None,
        file_type: args.file_type.clone(),
        parallel: args.parallel.into(),
        simple_threshold: args.simple_threshold,
        limit_rate: args.limit_rate,
        skip_unchanged: !args.force,
    };
    let total: u64 = sources.iter().map(|s| if let Source::File { size, .. } = s { *size } else { 0 }).sum();
    let overall = (sources.len() > 1).then(|| screen.overall(total, sources.len())).flatten();
    let started = Instant::now();
    let count = sources.len();
    let outcomes: Vec<anyhow::Result<bool>> = futures_util::stream::iter(sources.into_iter().zip(names))
        .map(|(source, name)| {
            let (client, journal, screen, overall) = (&client, journal.clone(), screen.clone(), overall.clone());
            let options = UploadOptions { file_name: Some(name.clone()), ..options.clone() };
            let json = args.output.json;
            async move {
                let size = if let Source::File { size, .. } = &source { *size } else { 0 };
                let progress = screen.file(&name, size, overall);
                let shown = source.shown();
                let outcome = match &source {
                    Source::File { path, size } => {
                        let done = upload_file(client, &journal, path, &options, progress.clone()).await;
                        if let Ok(Uploaded { method: Method::Unchanged, .. }) = &done {
                            progress.skip(*size);
                        }
                        done
                    }
                    Source::Stdin => upload_stdin(client, &journal, &options, progress.clone()).await,
                };
                // One file's failure is the command's error, said once by main.
                match outcome {
                    Err(e) if count == 1 && !json => Err(anyhow::Error::new(e).context(format!("uploading {shown}"))),
                    outcome => Ok(report(&screen, json, &shown, outcome)),
                }
            }
        })
        .buffer_unordered(args.jobs.into())
        .collect()
        .await;
    if let Some(overall) = overall {
        overall.finish_and_clear();
    }
    screen.clear();
    let mut failed = 0;
    for outcome in outcomes {
        failed += usize::from(!outcome?);
    }
    if count > 1 && !args.output.json {
        let elapsed = started.elapsed().as_secs_f64();
        screen.say(&format!(
            "{} done, {failed} failed, in {elapsed:.1} s ({} in all)",
            count - failed,
            HumanBytes(total)
        ));
    }
    if failed > 0 {
        bail!("{failed} of {count} uploads failed");
    }
    Ok(())
}

/// Says how one upload went; whether it went well.
fn report(screen: &Screen, json: bool, shown: &str, outcome: Result<Uploaded, ClientError>) -> bool {
    match outcome {
        Ok(done) => {
            let method = match done.method {
                Method::Simple => "simple",
                Method::Direct => "direct",
                Method::Unchanged => "unchanged",
            };
            if json {
                let status = if done.method == Method::Unchanged { "unchanged" } else { "uploaded" };
                println!(
                    "{}",
                    json!({"path": shown, "status": status, "file_id": done.file_id, "file_uid": done.file_uid,
                           "num_bytes": done.num_bytes, "method": method, "resumed": done.resumed,
                           "parts_total": done.parts_total, "parts_sent": done.parts_sent})
                );
            } else if done.method == Method::Unchanged {
                screen.say(&format!(
                    "unchanged {shown}: the server's {} has the same bytes ({}); nothing sent (--force sends it)",
                    done.file_id,
                    HumanBytes(done.num_bytes)
                ));
            } else {
                let resumed = if done.resumed {
                    format!(", resumed: {} of {} parts sent now", done.parts_sent, done.parts_total)
                } else {
                    String::new()
                };
                screen.say(&format!("uploaded {shown} as {} ({}{resumed})", done.file_id, HumanBytes(done.num_bytes)));
            }
            true
        }
        Err(e) => {
            if json {
                println!("{}", json!({"path": shown, "status": "failed", "error": error_json(&e)}));
            }
            screen.error(&format!("failed to upload {shown}: {}", describe(&e.into())));
            false
        }
    }
}

/// Standard input, of a length no one knows until it ends, while an
/// upload must say its size first: it is copied into a spool file in the
/// state dir as it arrives (never held in memory), then uploaded from
/// there; the spool goes when the upload is done. It resumes within the
/// run (retries, fresh URLs); a run that dies leaves nothing to resume,
/// so its upload is abandoned.
async fn upload_stdin(
    client: &Client,
    journal: &Journal,
    options: &UploadOptions,
    progress: Arc<dyn ferry_client::Progress>,
) -> Result<Uploaded, ClientError> {
    let dir = Journal::default_dir().join("spool");
    tokio::fs::create_dir_all(&dir).await.map_err(ClientError::io(&dir))?;
    let spool = tempfile::NamedTempFile::new_in(&dir).map_err(ClientError::io(&dir))?;
    let mut file = tokio::fs::File::from_std(spool.reopen().map_err(ClientError::io(spool.path()))?);
    let mut stdin = tokio::io::stdin();
    tokio::io::copy(&mut stdin, &mut file).await.map_err(ClientError::io(Path::new("standard input")))?;
    drop(file);
    let outcome = upload_file(client, journal, spool.path(), options, progress).await;
    if outcome.is_err()
        && let Ok(Some(entry)) =
            journal.load(client.base_url(), &std::fs::canonicalize(spool.path()).unwrap_or_default())
    {
        let _ = client.abort(&entry.header.upload_id).await;
        let _ = journal.remove(client.base_url(), &entry.header.path);
    }
    outcome
}
