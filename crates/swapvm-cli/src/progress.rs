//! The run's progress bar: drawn on standard error, only when it is a
//! terminal, and only once the run has taken more than a second (a quick
//! run prints its summary without a flash of bar first).
//!
//! Its message gives the access rate, swap-ins and swap-outs per second
//! over the last interval, swap in use, and an ETA from the average rate
//! since the start (which converges, unlike a rate over the last steps
//! when a run's phases differ in speed).

use indicatif::{HumanCount, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::{Duration, Instant};
use swapvm_machine::RunStatus;

/// How long a run goes before its bar appears.
const SHOW_AFTER: Duration = Duration::from_secs(1);
/// How often the message is recomputed.
const REFRESH: Duration = Duration::from_millis(500);

/// A progress bar over the workload's accesses.
pub struct Progress {
    bar: ProgressBar,
    started: Instant,
    /// Still hidden, and would be drawn on a terminal once due.
    pending: bool,
    /// The status and time of the last message.
    last: Option<(Instant, RunStatus)>,
}

impl Progress {
    /// A hidden bar over `total` accesses.
    pub fn new(total: u64) -> Progress {
        let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::hidden());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {wide_bar} {human_pos}/{human_len} accesses {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        Progress {
            bar,
            started: Instant::now(),
            pending: std::io::stderr().is_terminal(),
            last: None,
        }
    }

    /// The run's state now; called every tick, so cheap when hidden.
    pub fn set(&mut self, st: &RunStatus) {
        if self.pending && self.started.elapsed() >= SHOW_AFTER {
            self.pending = false;
            self.bar.set_draw_target(ProgressDrawTarget::stderr());
        }
        self.bar.set_position(st.accesses);
        if self.bar.is_hidden() {
            return;
        }
        let now = Instant::now();
        match self.last {
            Some((at, _)) if now.duration_since(at) < REFRESH => {}
            Some((at, prev)) => {
                let secs = now.duration_since(at).as_secs_f64();
                let elapsed = now.duration_since(self.started).as_secs_f64();
                self.bar.set_message(message(&prev, st, secs, elapsed));
                self.last = Some((now, *st));
            }
            None => self.last = Some((now, *st)),
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// `12.3k` for 12,345: three significant figures and an SI prefix.
pub fn human_rate(v: f64) -> String {
    let (v, unit) = match v {
        v if v >= 1e9 => (v / 1e9, "G"),
        v if v >= 1e6 => (v / 1e6, "M"),
        v if v >= 1e3 => (v / 1e3, "k"),
        v => (v, ""),
    };
    if v >= 100.0 || unit.is_empty() {
        format!("{v:.0}{unit}")
    } else if v >= 10.0 {
        format!("{v:.1}{unit}")
    } else {
        format!("{v:.2}{unit}")
    }
}

/// `1h02m`, `3m05s` or `42s`.
fn human_secs(s: f64) -> String {
    let s = s.max(0.0).round() as u64;
    match s {
        s if s >= 3600 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        s if s >= 60 => format!("{}m{:02}s", s / 60, s % 60),
        s => format!("{s}s"),
    }
}

/// The bar's message: rates over the last `secs` seconds (from `prev` to
/// `st`), swap in use, and the ETA from the average rate over `elapsed`.
pub fn message(prev: &RunStatus, st: &RunStatus, secs: f64, elapsed: f64) -> String {
    let per_s = |a: u64, b: u64| b.saturating_sub(a) as f64 / secs.max(1e-9);
    let eta = if st.accesses > 0 && st.total > st.accesses {
        let left = (st.total - st.accesses) as f64 * elapsed / st.accesses as f64;
        format!(", eta {}", human_secs(left))
    } else {
        String::new()
    };
    let mib = |pages: u64| pages as f64 * 4096.0 / (1 << 20) as f64;
    format!(
        "({}/s; swap-in {}/s, swap-out {}/s; swap used {:.1}/{:.0} MiB; tick {}{eta})",
        human_rate(per_s(prev.accesses, st.accesses)),
        human_rate(per_s(prev.pswpin, st.pswpin)),
        human_rate(per_s(prev.pswpout, st.pswpout)),
        mib(st.swap_used_pages),
        mib(st.swap_total_pages),
        HumanCount(st.tick),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_read_as_a_person_would() {
        assert_eq!(human_rate(0.0), "0");
        assert_eq!(human_rate(950.4), "950");
        assert_eq!(human_rate(12_345.0), "12.3k");
        assert_eq!(human_rate(1_234_567.0), "1.23M");
        assert_eq!(human_rate(312_000_000.0), "312M");
        assert_eq!(human_secs(42.4), "42s");
        assert_eq!(human_secs(185.0), "3m05s");
        assert_eq!(human_secs(3720.0), "1h02m");
    }

    /// The ETA is the average rate since the start applied to what is
    /// left: half done in 10 s leaves 10 s, whatever the last second did.
    #[test]
    fn the_eta_is_from_the_average_rate() {
        let prev = RunStatus {
            accesses: 499_000,
            total: 1_000_000,
            ..RunStatus::default()
        };
        let st = RunStatus {
            accesses: 500_000,
            tick: 1234,
            pswpin: 300,
            pswpout: 2_500,
            swap_used_pages: 2560,
            swap_total_pages: 8192,
            ..prev
        };
        let m = message(&prev, &st, 1.0, 10.0);
        assert!(m.contains("eta 10s"), "{m}");
        assert!(m.contains("(1.00k/s;"), "{m}");
        assert!(m.contains("swap-in 300/s, swap-out 2.50k/s"), "{m}");
        assert!(m.contains("swap used 10.0/32 MiB"), "{m}");
        assert!(m.contains("tick 1,234"), "{m}");
        let done = RunStatus {
            accesses: 1_000_000,
            ..st
        };
        assert!(!message(&st, &done, 1.0, 20.0).contains("eta"));
    }
}
