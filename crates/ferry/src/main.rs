//! `ferry`: the server and its administration in one binary.

use std::process::ExitCode;

use clap::{CommandFactory, FromArgMatches};

mod admin;
mod cli;
mod client;
mod serve;

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
        cli::Command::Upload(args) => client::upload(args).await,
        cli::Command::Download(args) => client::download(args).await,
        cli::Command::Ls(args) => client::ls(args).await,
        cli::Command::Info(args) => client::info(args).await,
        cli::Command::Rm(args) => client::rm(args).await,
        cli::Command::Status(args) => client::status(args),
        cli::Command::Openapi => {
            print!("{}", ferry_server::http::openapi::document());
            Ok(())
        }
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("ferry: {e:#}");
            ExitCode::FAILURE
        }
    }
}
