//! The run's progress bar: drawn on standard error, only when it is a
//! terminal, and only once the run has taken more than a second (a quick
//! run prints its summary without a flash of bar first).

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};

/// How long a run goes before its bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);

/// A progress bar over the workload's accesses.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    /// Still hidden, and would be drawn on a terminal once due.
    pending: bool,
}

impl Progress {
    /// A hidden bar over `total` accesses.
    pub fn new(total: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} accesses ({per_sec}, eta {eta})",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            started: Instant::now(),
            pending: std::io::stderr().is_terminal(),
        }
    }

    /// Accesses done so far; called every tick, so cheap when hidden.
    pub fn set(&mut self, done: u64) {
        if self.pending && self.started.elapsed() >= SHOW_AFTER {
            self.pending = false;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.set_position(done);
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
