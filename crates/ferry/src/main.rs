//! `ferry`: the server and its administration in one binary.

use std::process::ExitCode;

use clap::Parser;

mod admin;
mod cli;
mod client;
mod config;
mod serve;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    ferry_server::failpoint::setup_from_env();
    let outcome = match cli.command {
        cli::Command::Serve(args) => serve::run(*args).await,
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
