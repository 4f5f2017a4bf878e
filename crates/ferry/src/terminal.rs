//! What the command line shows a person, all on stderr: progress bars on a
//! terminal, notes, errors with a hint in a terminal's terms (never an
//! HTTP recipe), and one line when the server goes away and one when it is
//! back, however many parts were waiting for it.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ferry_api::ErrorCode;
use ferry_client::{ClientError, Progress, RetryEvent, Transport};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::cli::Output;

/// Where notes and bars go, shared by everything one command runs.
pub struct Screen {
    /// Bars are drawn (stderr is a terminal, and neither --json nor --quiet).
    bars: Option<MultiProgress>,
    quiet: bool,
    /// Whether the server is unreachable right now, as far as we know.
    server_away: AtomicBool,
}

impl Screen {
    pub fn new(output: &Output) -> Arc<Self> {
        let bars = (!output.quiet && !output.json && std::io::stderr().is_terminal())
            .then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Arc::new(Self { bars, quiet: output.quiet, server_away: AtomicBool::new(false) })
    }

    /// A screen for commands without bars (`ls`, `rm`): notes only.
    pub fn plain() -> Arc<Self> {
        Arc::new(Self { bars: None, quiet: false, server_away: AtomicBool::new(false) })
    }

    /// A line for the user, above the bars if there are any.
    pub fn note(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(format!("note: {text}"));
            }
            None => eprintln!("note: {text}"),
        }
    }

    /// A result line (`uploaded …`), above the bars; not with --quiet.
    pub fn say(&self, text: &str) {
        if self.quiet {
            return;
        }
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// An error line: shown even with --quiet.
    pub fn error(&self, text: &str) {
        match &self.bars {
            Some(bars) => {
                let _ = bars.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    /// Takes every bar off the screen (at the end, or on Ctrl-C).
    pub fn clear(&self) {
        if let Some(bars) = &self.bars {
            let _ = bars.clear();
        }
    }

    /// The bar of all files together, when there are several.
    pub fn overall(&self, total_bytes: u64, files: usize) -> Option<ProgressBar> {
        let bars = self.bars.as_ref()?;
        let bar = bars.add(ProgressBar::new(total_bytes));
        bar.set_style(
            ProgressStyle::with_template(
                "{msg:30!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}",
            )
            .expect("a valid template")
            .progress_chars("=> "),
        );
        bar.set_message(format!("{files} files"));
        bar.enable_steady_tick(Duration::from_millis(200));
        Some(bar)
    }

    /// The progress of one file of `size` bytes (0 if not known yet): its
    /// own line under the overall bar.
    pub fn file(self: &Arc<Self>, label: &str, size: u64, overall: Option<ProgressBar>) -> Arc<FileProgress> {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template(
                    "  {msg:28!} [{bar:30}] {bytes:>10}/{total_bytes:<10} {bytes_per_sec:>12} ETA {eta}",
                )
                .expect("a valid template")
                .progress_chars("=> "),
            );
            bar.set_message(label.to_owned());
            bar
        });
        Arc::new(FileProgress { screen: self.clone(), bar, overall, label: label.to_owned() })
    }

    /// What a client calls on each retry and recovery: a line when the
    /// server stops answering (with why, once) and one when it is back.
    pub fn retry_reporter(self: &Arc<Self>) -> impl Fn(RetryEvent<'_>) + Send + Sync + 'static {
        let screen = self.clone();
        move |event| match event {
            RetryEvent::Waiting { error, .. } => {
                if !screen.server_away.swap(true, Ordering::Relaxed) {
                    screen.note(&format!("{error}; retrying until it answers"));
                }
            }
            RetryEvent::Recovered => {
                if screen.server_away.swap(false, Ordering::Relaxed) {
                    screen.note("the server answers again; going on");
                }
            }
        }
    }
}

/// One file's bar (on a terminal), feeding the overall bar too.
pub struct FileProgress {
    screen: Arc<Screen>,
    bar: Option<ProgressBar>,
    overall: Option<ProgressBar>,
    label: String,
}

impl FileProgress {
    /// Counts bytes that need no sending (an unchanged file) as done.
    pub fn skip(&self, bytes: u64) {
        if let Some(overall) = &self.overall {
            overall.inc(bytes);
        }
    }
}

impl Progress for FileProgress {
    fn start(&self, total: u64, done: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(total);
            bar.set_position(done);
            bar.reset_eta();
        }
        self.skip(done);
    }
    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
        self.skip(bytes);
    }
    fn retreat(&self, bytes: u64) {
        for bar in self.bar.iter().chain(&self.overall) {
            bar.set_position(bar.position().saturating_sub(bytes));
        }
    }
    fn parts_in_flight(&self, count: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(format!("{} ({count} in flight)", self.label));
        }
    }
    fn note(&self, text: &str) {
        self.screen.note(text);
    }
    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Drop for FileProgress {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What to do about an error code, in a terminal's terms. Codes not here
/// keep the server's own suggestion, which speaks of nothing but the file.
fn hint_for_code(code: ErrorCode) -> Option<&'static str> {
    use ErrorCode as C;
    Some(match code {
        C::InvalidApiKey => "check FERRY_API_KEY or --api-key (an operator makes one with `ferry admin key create`)",
        C::FileNotFound => "`ferry ls` lists the files on the server",
        C::UploadNotFound => "the upload was aborted or expired: run the same command again to start anew",
        C::RouteNotFound | C::MethodNotAllowed => {
            "check FERRY_URL or --url: it is the server's address, such as https://files.example.com"
        }
        C::FileTooLarge | C::InvalidFileSize => "the file is larger than this server accepts",
        C::IntegrityCheckFailed => "the file changed while it was sent, or bytes were damaged on the way: run it again",
        C::InternalError => "the server failed; its operator can look it up by the error id",
        C::ServiceUnavailable => "the server cannot reach its database or storage now: try again later",
        C::RateLimited => "the server limits this key's requests: try again in a moment",
        C::InvalidSignature | C::UrlExpired => "run the same command again",
        C::UploadConflict => "`ferry abort PATH` abandons the earlier upload of this name; then upload again",
        _ => return None,
    })
}

fn hint_for_transport(transport: &Transport) -> &'static str {
    match transport {
        Transport::UnknownHost(_) => "check the host name in FERRY_URL or --url",
        Transport::DnsUnavailable(_) => "check the network connection",
        Transport::Tls(_) => {
            "a server with a private CA's certificate needs SSL_CERT_FILE to name that CA; an http:// server \
             needs an http:// URL"
        }
        Transport::Connect(_) => "is the server running, and is FERRY_URL or --url its address?",
        Transport::Timeout | Transport::Broken(_) => "run the same command again to go on where it stopped",
    }
}

/// An error as a person at a terminal reads it: what went wrong, each
/// cause once, then what to do.
pub fn describe(error: &anyhow::Error) -> String {
    let mut text = format!("{error:#}");
    let hint = error.chain().find_map(|e| e.downcast_ref::<ClientError>()).and_then(|e| match e {
        ClientError::Api { errors, .. } => {
            errors.first().map(|entry| hint_for_code(entry.code).map_or_else(|| entry.suggestion.clone(), Into::into))
        }
        ClientError::Transport(e) => Some(hint_for_transport(&Transport::of(e)).into()),
        _ => None,
    });
    if let Some(hint) = hint {
        text.push_str("\n  hint: ");
        text.push_str(&hint);
    }
    text
}
