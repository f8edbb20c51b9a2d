//! A progress bar on stderr for long runs (hidden when stderr is not a terminal or
//! with --no-progress).

use crate::flags::{Flags, Scenario};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(flags: &Flags) -> Progress {
        let (length, unit) = match (flags.scenario, flags.duration) {
            (Scenario::Idle, _) => (flags.conns as u64, "conns"),
            (_, Some(d)) => (d.as_millis() as u64, "ms"),
            _ => (flags.msgs, "msgs"),
        };
        let bar = ProgressBar::new(length);
        if flags.no_progress {
            bar.set_draw_target(ProgressDrawTarget::hidden());
        }
        let template =
            format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{per_sec}}");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style.progress_chars("=> "));
        }
        Progress { bar }
    }

    pub fn set(&self, position: u64) {
        self.bar
            .set_position(position.min(self.bar.length().unwrap_or(u64::MAX)));
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
