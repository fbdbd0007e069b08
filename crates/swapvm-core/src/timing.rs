//! `machine.timing`: how the emulated machine's tasks are scheduled.
//!
//! `deterministic` (the default) hands every task its turn in a fixed
//! order each tick and delivers each I/O at a logical tick: the same
//! config and seed give the same counters on any disk. `realtime` lets
//! every process, kswapd, ksmd and swapoff run as soon as it can, each
//! fault waiting for its own read, so the order of the disk's completions
//! drives scheduling; a tick is then `machine.tick_us` of wall-clock time,
//! the sampling interval. Counters then differ from run to run; what the
//! run checks (verification, the invariant checker, contracts) does not.

use crate::config::{ensure, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `machine.timing`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Timing {
    /// Fixed turn order, I/O delivered at a logical tick.
    #[default]
    Deterministic,
    /// Tasks await their own I/O completions; wall-clock time.
    Realtime,
}

impl Timing {
    /// The config spelling.
    pub fn name(self) -> &'static str {
        match self {
            Timing::Deterministic => "deterministic",
            Timing::Realtime => "realtime",
        }
    }

    /// For serde's `skip_serializing_if`: configs that do not set it keep
    /// their serialized form.
    pub fn is_deterministic(&self) -> bool {
        *self == Timing::Deterministic
    }
}

/// Default of `machine.tick_us`: 1 ms.
pub const DEFAULT_TICK_US: u64 = 1000;

/// Largest `machine.tick_us`: 10 s.
pub const TICK_US_MAX: u64 = 10_000_000;

pub(crate) fn default_tick_us() -> u64 {
    DEFAULT_TICK_US
}

pub(crate) fn is_default_tick_us(v: &u64) -> bool {
    *v == DEFAULT_TICK_US
}

/// Checks `machine.tick_us` of the config at `path`.
pub(crate) fn validate_tick_us(v: u64, path: &Path) -> Result<(), ConfigError> {
    ensure(
        (1..=TICK_US_MAX).contains(&v),
        path,
        "machine.tick_us",
        || format!("{v} is outside 1..={TICK_US_MAX} (µs of wall-clock time per tick)"),
    )
}

#[cfg(test)]
mod tests {
    use crate::config::MachineConfig;
    use crate::timing::Timing;

    fn parse(text: &str) -> Result<MachineConfig, String> {
        MachineConfig::from_toml(text, std::path::Path::new("t.toml")).map_err(|e| {
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                msg.push_str(&format!(": {c}"));
                cause = c.source();
            }
            msg
        })
    }

    #[test]
    fn timing_defaults_to_deterministic_and_parses_realtime() {
        let c = parse("[machine]\nram_mib = 64\n").unwrap();
        assert_eq!(c.machine.timing, Timing::Deterministic);
        assert_eq!(c.machine.tick_us, super::DEFAULT_TICK_US);
        let c = parse("[machine]\nram_mib = 64\ntiming = \"realtime\"\ntick_us = 250\n").unwrap();
        assert_eq!(c.machine.timing, Timing::Realtime);
        assert_eq!(c.machine.tick_us, 250);
    }

    #[test]
    fn bad_timing_fields_are_named() {
        let e = parse("[machine]\nram_mib = 64\ntiming = \"fast\"\n").unwrap_err();
        assert!(e.contains("timing"), "{e}");
        let e = parse("[machine]\nram_mib = 64\ntick_us = 0\n").unwrap_err();
        assert!(e.contains("machine.tick_us"), "{e}");
    }
}
