//! `ferry`: the server, its administration and its client in one binary.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

mod admin;
mod cli;
mod client;
mod serve;
mod terminal;
mod upload;

/// Ctrl-C in a client command: everything done so far is kept (the
/// journal, the partial download), so the same command goes on from there.
const INTERRUPTED: u8 = 130;

#[tokio::main]
async fn main() -> ExitCode {
    // The matches, besides the parsed command: they say which settings a
    // flag or the environment gave, and which are clap's defaults.
    let matches = cli::Cli::command().get_matches();
    let cli = match cli::Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    ferry_server::failpoint::setup_from_env();
    let outcome = match cli.command {
        cli::Command::Serve(args) => {
            let serve_matches = matches.subcommand_matches("serve").expect("the command is serve");
            serve::run(*args, serve_matches).await
        }
        cli::Command::Admin(args) => admin::run(args).await,
        cli::Command::Upload(args) => interruptible(upload::upload(args)).await,
        cli::Command::Download(args) => interruptible(client::download(args)).await,
        cli::Command::Ls(args) => interruptible(client::ls(args)).await,
        cli::Command::Info(args) => interruptible(client::info(args)).await,
        cli::Command::Rm(args) => interruptible(client::rm(args)).await,
        cli::Command::Abort(args) => interruptible(client::abort(args)).await,
        cli::Command::Status(args) => client::status(args),
        cli::Command::Completions { shell } => {
            clap_complete::generate(shell, &mut cli::Cli::command(), "ferry", &mut std::io::stdout());
            Ok(())
        }
        cli::Command::Man => {
            clap_mangen::Man::new(cli::Cli::command()).render(&mut std::io::stdout()).map_err(Into::into)
        }
        cli::Command::Openapi => {
            print!("{}", ferry_server::http::openapi::document());
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.is::<Interrupted>() => {
            eprintln!("\ninterrupted: run the same command again to resume");
            ExitCode::from(INTERRUPTED)
        }
        Err(e) => {
            eprintln!("ferry: {}", terminal::describe(&e));
            ExitCode::FAILURE
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("interrupted")]
struct Interrupted;

/// Runs a client command until it ends or Ctrl-C; the command is dropped
/// where it stands then (its bars with it).
async fn interruptible(command: impl Future<Output = anyhow::Result<()>>) -> anyhow::Result<()> {
    tokio::select! {
        outcome = command => outcome,
        _ = tokio::signal::ctrl_c() => Err(Interrupted.into()),
    }
}
