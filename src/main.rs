use natrix::cli::{self, Cli};
use natrix::options::Options;
use natrix::server::{start, Server};
use std::process::ExitCode;

/// mimalloc keeps a heap per thread: a shard's allocations and frees stay on its
/// core, and the buffers of a message that crosses shards go back to their owner's
/// heap without a lock (glibc's arenas took about a fifth of a busy server's CPU).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = match cli::parse(std::env::args()) {
        Ok(cli) => cli,
        Err(e) => {
            eprintln!("natrix: {e}\nRun natrix --help for the options.");
            return ExitCode::from(1);
        }
    };
    if let Some(code) = answer_without_serving(&cli) {
        return code;
    }
    match serve(&cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("natrix: {e}");
            ExitCode::from(1)
        }
    }
}

/// Help, version, signals and `-t`: what ends before a server starts.
fn answer_without_serving(cli: &Cli) -> Option<ExitCode> {
    if cli.help {
        print!("{}", cli::USAGE);
    } else if cli.help_tls {
        print!("{}", cli::TLS_USAGE);
    } else if let Some(spec) = &cli.signal {
        if let Err(e) = natrix::server::control::send_signal(spec) {
            eprintln!("natrix: {e}");
            return Some(ExitCode::from(1));
        }
    } else if cli.version {
        println!("natrix: v{}", natrix::server::VERSION);
    } else if cli.test_config {
        return Some(test_config(cli));
    } else {
        return None;
    }
    Some(ExitCode::SUCCESS)
}

/// `-t`: reads the configuration as a start would, says whether it is valid, exits.
fn test_config(cli: &Cli) -> ExitCode {
    let Some(path) = &cli.config else {
        eprintln!("natrix: must specify [-c, --config] option to check configuration file syntax");
        return ExitCode::from(1);
    };
    let checked = options(cli).and_then(|opts| {
        Server::new(opts, 1, cli.config.clone()).map_err(|e| format!("configuration error: {e}"))
    });
    match checked {
        Ok(_) => {
            eprintln!("natrix: configuration file {path} is valid");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("natrix: {e}");
            ExitCode::from(1)
        }
    }
}

/// The config file (if any) with the flags applied over it.
fn options(cli: &Cli) -> Result<Options, String> {
    let mut opts = match &cli.config {
        Some(path) => Options::load(std::path::Path::new(path))
            .map_err(|e| format!("configuration error: {e}"))?,
        None => Options::default(),
    };
    cli.apply(&mut opts)?;
    Ok(opts)
}

fn serve(cli: &Cli) -> Result<(), String> {
    let opts = options(cli)?;
    natrix::logging::init(opts.debug, opts.trace, opts.logtime, log_sink(&opts)?)
        .map_err(|e| format!("cannot open log: {e}"))?;
    natrix::server::panic::abort_on_panic();
    if let Some(pid_file) = &opts.pid_file {
        std::fs::write(pid_file, std::process::id().to_string())
            .map_err(|e| format!("Could not write pidfile: {e}"))?;
    }
    natrix_shards::memlock::ensure_minimum()?;
    let shards = cli
        .shards
        .unwrap_or_else(natrix_shards::runtime::available_cores);
    if !(1..=natrix::server::SHARDS_MAX).contains(&shards) {
        return Err(format!(
            "--shards must be between 1 and {}",
            natrix::server::SHARDS_MAX
        ));
    }
    let spin_us = cli.spin_us.unwrap_or(0);
    if spin_us > natrix_shards::runtime::SPIN_BEFORE_PARK_US_MAX {
        return Err(format!(
            "--spin_us must be at most {}",
            natrix_shards::runtime::SPIN_BEFORE_PARK_US_MAX
        ));
    }
    let server = Server::new(opts, shards, cli.config.clone())
        .map_err(|e| format!("configuration error: {e}"))?;
    start::run(server, spin_us).map_err(|e| {
        tracing::error!("{e}");
        e.to_string()
    })
}

/// Where the log goes: a remote syslog, the local one, a file, or stderr (nats-server's
/// order of precedence).
fn log_sink(opts: &Options) -> Result<natrix::logging::Sink<'_>, String> {
    use natrix::logging::{syslog::Syslog, Sink};
    if let Some(url) = &opts.remote_syslog {
        let target = Syslog::remote(url).map_err(|e| format!("error connecting to syslog: {e}"))?;
        return Ok(Sink::Syslog(target));
    }
    if opts.syslog {
        let target = Syslog::local().map_err(|e| format!("error connecting to syslog: {e}"))?;
        return Ok(Sink::Syslog(target));
    }
    Ok(opts.log_file.as_deref().map_or(Sink::Stderr, Sink::File))
}
