//! natrix-bench: a NATS load generator for natrix, nats-server or any NATS server.
//!
//! Module map:
//! - `flags`: the command line.
//! - `url`: server URLs.
//! - `admin`: a blocking client for JetStream setup outside the executors.
//! - `conn`: one connection: handshake, reading server operations, writing.
//! - `engine`: the executors the clients run on, and their shared counters.
//! - `scenario`: which clients a run has, and the clients themselves (`msgs`:
//!   publishers and subscribers, `reqrep`, `idle`, `jetstream`).
//! - `sink`: a server that discards everything, for the bench's own ceiling.
//! - `stats`, `report`: per-client measurements, summaries, the text report.
//! - `output`: CSV and JSON; `progress`: the progress bar.

mod admin;
mod conn;
mod engine;
mod flags;
mod output;
mod progress;
mod report;
mod scenario;
mod sink;
mod stats;
mod url;

use clap::Parser;
use flags::{Flags, Scenario};
use std::process::ExitCode;

fn main() -> ExitCode {
    let flags = Flags::parse();
    if let Err(e) = flags.validate() {
        eprintln!("natrix-bench: {e}");
        return ExitCode::from(2);
    }
    if flags.scenario == Scenario::Sink {
        return match sink::run(&flags) {
            Ok(n) => {
                eprintln!("natrix-bench sink: discarded {} msgs", report::thousands(n));
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("natrix-bench: {e}");
                ExitCode::from(1)
            }
        };
    }
    let report = match scenario::run(flags.clone()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("natrix-bench: {e}");
            return ExitCode::from(1);
        }
    };
    print!("{}", report.text());
    let written = [
        flags
            .json
            .as_deref()
            .map(|p| output::write_json(&report, p)),
        flags.csv.as_deref().map(|p| output::write_csv(&report, p)),
    ];
    for result in written.into_iter().flatten() {
        if let Err(e) = result {
            eprintln!("natrix-bench: {e}");
            return ExitCode::from(1);
        }
    }
    if report.ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(3)
    }
}
