//! The API as a client sees it: each test starts the real `ferry` binary on
//! port 0 in a temp dir and drives it over HTTP. Modules follow the
//! sections of `docs/files-api.md`.

mod harness;

mod abort;
mod browser;
mod check;
mod checkpoint;
mod cli;
mod cli_habits;
mod clients;
mod complete;
mod connections;
mod crashes;
mod deployment;
mod disk_full;
mod download;
mod errors;
mod files;
mod initiate;
mod lifecycle;
mod limits;
mod load;
mod metadata;
mod operations;
mod orgs;
mod outage;
mod packaging;
mod part_put;
mod part_urls;
mod races;
mod readme;
mod restart;
mod scaleout;
mod services;
mod soak;
mod webhooks;
