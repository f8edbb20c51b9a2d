//! Log output in nats-server's shape: `[pid] 2026/11/22 19:20:00.123456 [INF] text`,
//! to stderr or a file, with `-D` (debug) and `-V` (trace) switches. glommio logs
//! through the `log` crate; it is bridged in, so its warnings show.

pub mod syslog;

use crate::timefmt::log_stamp;
use std::fmt;
use std::time::SystemTime;
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

struct NatsFormat {
    /// Syslog lines carry the pid and time in their own header.
    pid: Option<u32>,
    logtime: bool,
}

/// Where log lines go besides their level and text.
pub enum Sink<'a> {
    Stderr,
    /// Appended to this file.
    File(&'a str),
    Syslog(syslog::Syslog),
}

impl<S, N> FormatEvent<S, N> for NatsFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        let level = match *event.metadata().level() {
            Level::ERROR => "ERR",
            Level::WARN => "WRN",
            Level::INFO => "INF",
            Level::DEBUG => "DBG",
            Level::TRACE => "TRC",
        };
        if let Some(pid) = self.pid {
            write!(w, "[{pid}] ")?;
        }
        if self.logtime {
            write!(w, "{} ", log_stamp(SystemTime::now()))?;
        }
        write!(w, "[{level}] ")?;
        ctx.field_format().format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

/// Installs the global logger, writing to `sink`.
pub fn init(debug: bool, trace: bool, logtime: bool, sink: Sink) -> std::io::Result<()> {
    let level = if trace {
        Level::TRACE
    } else if debug {
        Level::DEBUG
    } else {
        Level::INFO
    };
    let to_syslog = matches!(sink, Sink::Syslog(_));
    let format = NatsFormat {
        pid: (!to_syslog).then(std::process::id),
        logtime: logtime && !to_syslog,
    };
    let builder = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .event_format(format);
    let result = match sink {
        Sink::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)?;
            builder.with_writer(std::sync::Mutex::new(file)).try_init()
        }
        Sink::Stderr => builder.with_writer(std::io::stderr).try_init(),
        Sink::Syslog(target) => builder
            .with_writer(syslog::SyslogWriter::new(target))
            .try_init(),
    };
    result.map_err(|e| std::io::Error::other(e.to_string()))
}

/// `text` cut to at most `max` bytes (on a character boundary) with `...` after it,
/// for `max_traced_msg_len`; 0 leaves it whole.
pub fn cut_traced(mut text: String, max: usize) -> String {
    if max == 0 || text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push_str("...");
    text
}

#[cfg(test)]
mod cut_tests {
    use super::cut_traced;

    #[test]
    fn traced_text_is_cut_on_a_character() {
        assert_eq!(cut_traced("abcdef".into(), 0), "abcdef");
        assert_eq!(cut_traced("abcdef".into(), 4), "abcd...");
        assert_eq!(cut_traced("aé".into(), 2), "a...");
    }
}
