//! `ferry serve`.

use anyhow::Context;
use ferry_server::http::tls::Certificate;
use ferry_server::settings::{LogFormat, Settings};
use ferry_server::startup::Server;
use tracing_subscriber::filter::Targets;

use crate::cli::ServeArgs;

/// Logs go to stderr, filtered by `FERRY_LOG` (for example
/// `info,ferry::request=warn`); stdout carries only what the operator must
/// read: the address and, on first start, the generated API key.
fn init_logging(format: LogFormat) -> anyhow::Result<()> {
    let filter: Targets =
        std::env::var("FERRY_LOG").unwrap_or_else(|_| "info".into()).parse().context("parsing FERRY_LOG")?;
    use tracing_subscriber::prelude::*;
    let layer = tracing_subscriber::fmt::layer().with_writer(std::io::stderr).with_ansi(false);
    let layer = match format {
        LogFormat::Text => layer.boxed(),
        // The event's fields at the top level, beside timestamp, level and
        // target: what log collectors index without a mapping.
        LogFormat::Json => layer.json().flatten_event(true).with_current_span(false).boxed(),
    };
    tracing_subscriber::registry().with(layer).with(filter).init();
    Ok(())
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).expect("installing the SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
    tracing::info!("shutting down: finishing requests in flight");
}

/// Reads the certificate again at each SIGHUP (a renewal): new handshakes
/// get the new one, open connections keep theirs, a bad file changes nothing.
async fn reload_on_sighup(certificate: std::sync::Arc<Certificate>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("no SIGHUP handler: the certificate is read only at start");
        return;
    };
    while hangup.recv().await.is_some() {
        match certificate.reload() {
            Ok(()) => tracing::info!("SIGHUP: reloaded the TLS certificate"),
            Err(error) => tracing::error!(%error, "SIGHUP: the TLS certificate did not load; keeping the one in use"),
        }
    }
}

pub async fn run(args: ServeArgs, matches: &clap::ArgMatches) -> anyhow::Result<()> {
    let settings = Settings::resolve(&args.settings, matches, args.config.as_deref()).map_err(anyhow::Error::msg)?;
    init_logging(settings.log_format)?;
    let (data_dir, public_url, scheme) = (settings.data_dir.clone(), settings.public_url.clone(), settings.scheme());
    let server = Server::start(settings).await?;
    let address = server.listener.local_addr()?;
    if let Some(key) = &server.generated_key {
        println!("Created the org `default`. Its API key, shown only this once:");
        println!("  {key}");
    }
    match &public_url {
        Some(url) => tracing::info!(%url, "part URLs start with the public URL"),
        None if address.ip().is_unspecified() => tracing::warn!(
            %address,
            "listening on every address without --public-url: part URLs use the host each client asked for \
             (behind a proxy, set --trusted-proxy or --public-url)"
        ),
        None => tracing::info!("part URLs use the host each client asked for (no --public-url)"),
    }
    if let Some(url) = &public_url {
        println!("part URLs start with {url}");
    }
    if let Some(certificate) = server.tls.clone() {
        tokio::spawn(reload_on_sighup(certificate));
    }
    println!("ferry listening on {scheme}://{address} (data in {})", data_dir.display());
    tracing::info!(%address, data_dir = %data_dir.display(), "listening");
    server.run(shutdown_signal()).await.context("serving")
}
