use clap::Parser;
use natrix::cli::{normalize_args, Cli};
use natrix::options::Options;
use natrix::server::{start, Server};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = match Cli::try_parse_from(normalize_args(std::env::args())) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 1 } else { 0 });
        }
    };
    if let Some(spec) = &cli.signal {
        return match natrix::server::control::send_signal(spec) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("natrix: {e}");
                ExitCode::from(1)
            }
        };
    }
    if cli.version {
        println!("natrix: v{}", natrix::server::VERSION);
        return ExitCode::SUCCESS;
    }
    let mut opts = match &cli.config {
        Some(path) => match Options::load(std::path::Path::new(path)) {
            Ok(o) => o,
            Err(e) => {
                eprintln!("natrix: configuration error: {e}");
                return ExitCode::from(1);
            }
        },
        None => Options::default(),
    };
    if let Err(e) = cli.apply(&mut opts) {
        eprintln!("natrix: {e}");
        return ExitCode::from(1);
    }
    if let Err(e) = natrix::logging::init(
        opts.debug,
        opts.trace,
        opts.logtime,
        opts.log_file.as_deref(),
    ) {
        eprintln!("natrix: cannot open log: {e}");
        return ExitCode::from(1);
    }
    natrix::server::panic::abort_on_panic();
    if let Some(pid_file) = &opts.pid_file {
        let _ = std::fs::write(pid_file, std::process::id().to_string());
    }
    let shards = cli
        .shards
        .unwrap_or_else(natrix_shards::runtime::available_cores);
    if !(1..=natrix::server::SHARDS_MAX).contains(&shards) {
        eprintln!(
            "natrix: --shards must be between 1 and {}",
            natrix::server::SHARDS_MAX
        );
        return ExitCode::from(1);
    }
    let server = match Server::new(opts, shards, cli.config.clone()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("natrix: configuration error: {e}");
            return ExitCode::from(1);
        }
    };
    match start::run(server) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("natrix: {e}");
            ExitCode::from(1)
        }
    }
}
