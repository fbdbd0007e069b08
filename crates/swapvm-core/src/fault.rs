//! Fault injection settings: the `[fault]` section of a machine config and
//! `swapvm run --fault KEY=VALUE`.
//!
//! Every fault is drawn from a generator seeded by the run seed (or by
//! `fault.seed`), in the emulation's deterministic order, so a run with
//! faults is as reproducible as one without. The I/O faults are applied by
//! swapvm-io's fault-injecting engine to real requests on the real device;
//! the others by the layer that owns the failing operation.

use crate::config::{ensure, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `[fault]`: what to inject. All off by default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct FaultConfig {
    /// Seed of the fault generator; the run seed when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// Probability that a swap-in read fails with `EIO`.
    #[serde(default)]
    pub read_error_rate: f64,
    /// Probability that a swap-out write fails with `EIO` (nothing written).
    #[serde(default)]
    pub write_error_rate: f64,
    /// Slots (device offsets, on every device) whose reads always fail.
    #[serde(default)]
    pub read_error_slots: Vec<u64>,
    /// Slots whose writes always fail.
    #[serde(default)]
    pub write_error_slots: Vec<u64>,
    /// Probability that a write is short: the device writes part of it and
    /// says so (the caller sees fewer bytes than it asked for).
    #[serde(default)]
    pub short_write_rate: f64,
    /// Probability that a write is torn: the device reports it complete but
    /// the second half of its last block holds garbage. Only the read-back
    /// checksum can catch it.
    #[serde(default)]
    pub torn_write_rate: f64,
    /// The device fills: once this many distinct slots have been written,
    /// writes to a slot never written before fail with `ENOSPC` (a
    /// thin-provisioned or memory-limited device running out).
    #[serde(default)]
    pub device_full_after_slots: Option<u64>,
    /// The next this many swap count continuation allocations fail with
    /// `-ENOMEM` (`add_swap_count_continuation`).
    #[serde(default)]
    pub continuation_enomem: u32,
    /// Probability that a process waiting on a swap-in read of its fault is
    /// killed (`SIGKILL` while the fault is in flight).
    #[serde(default)]
    pub kill_mid_fault_rate: f64,
    /// swapoff in the middle of load: at this tick the machine starts a
    /// swapoff of the `[[swap]]` entry `swapoff_device`, as an
    /// administrator's `swapoff` would, and it runs while the workload goes
    /// on (refused, and reported, when what the device holds cannot fit).
    #[serde(default)]
    pub swapoff_at_tick: Option<u64>,
    /// The `[[swap]]` entry `swapoff_at_tick` takes off (default 0).
    #[serde(default)]
    pub swapoff_device: u32,
    /// A slow disk: every swap-in read completes this many µs after its
    /// submission at the earliest (0: off). Writes are not slowed. For
    /// realtime runs, where the order of completions drives scheduling; a
    /// deterministic run only waits longer.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub read_delay_us: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The fault kinds, by the key that sets them.
pub const FAULT_KEYS: &[&str] = &[
    "seed",
    "read_error_rate",
    "write_error_rate",
    "read_error_slots",
    "write_error_slots",
    "short_write_rate",
    "torn_write_rate",
    "device_full_after_slots",
    "continuation_enomem",
    "kill_mid_fault_rate",
    "swapoff_at_tick",
    "swapoff_device",
    "read_delay_us",
];

impl FaultConfig {
    /// True if any fault is armed.
    pub fn any(&self) -> bool {
        self.any_io()
            || self.continuation_enomem > 0
            || self.kill_mid_fault_rate > 0.0
            || self.swapoff_at_tick.is_some()
    }

    /// True if any fault of the I/O engine is armed.
    pub fn any_io(&self) -> bool {
        self.read_error_rate > 0.0
            || self.write_error_rate > 0.0
            || !self.read_error_slots.is_empty()
            || !self.write_error_slots.is_empty()
            || self.short_write_rate > 0.0
            || self.torn_write_rate > 0.0
            || self.device_full_after_slots.is_some()
            || self.read_delay_us > 0
    }

    /// Sets one field from `key=value` (the command line's `--fault`).
    /// Slot lists are comma-separated (`read_error_slots=5,9,0x20`).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `fault.KEY` and `source` for an
    /// unknown key or a value that does not parse.
    pub fn set(&mut self, kv: &str, source: &Path) -> Result<(), ConfigError> {
        // Applied to a copy: a refused value leaves `self` as it was.
        let mut next = self.clone();
        next.apply(kv, source)?;
        next.validate(source)?;
        *self = next;
        Ok(())
    }

    fn apply(&mut self, kv: &str, source: &Path) -> Result<(), ConfigError> {
        let bad = |field: &str, reason: String| ConfigError::Invalid {
            path: source.to_owned(),
            field: format!("fault.{field}"),
            reason,
        };
        let Some((key, value)) = kv.split_once('=') else {
            return Err(bad(
                kv,
                format!("expected KEY=VALUE, KEY one of {}", FAULT_KEYS.join(", ")),
            ));
        };
        let (key, value) = (key.trim(), value.trim());
        let rate = |v: &str| {
            v.parse::<f64>()
                .map_err(|e| bad(key, format!("`{v}` is not a number: {e}")))
        };
        let int = |v: &str| parse_u64(v).map_err(|e| bad(key, format!("`{v}`: {e}")));
        match key {
            "seed" => self.seed = Some(int(value)?),
            "read_error_rate" => self.read_error_rate = rate(value)?,
            "write_error_rate" => self.write_error_rate = rate(value)?,
            "short_write_rate" => self.short_write_rate = rate(value)?,
            "torn_write_rate" => self.torn_write_rate = rate(value)?,
            "kill_mid_fault_rate" => self.kill_mid_fault_rate = rate(value)?,
            "device_full_after_slots" => self.device_full_after_slots = Some(int(value)?),
            "swapoff_at_tick" => self.swapoff_at_tick = Some(int(value)?),
            "read_delay_us" => self.read_delay_us = int(value)?,
            "swapoff_device" => {
                self.swapoff_device = u32::try_from(int(value)?)
                    .map_err(|_| bad(key, format!("{value} does not fit in 32 bits")))?
            }
            "continuation_enomem" => {
                self.continuation_enomem = u32::try_from(int(value)?)
                    .map_err(|_| bad(key, format!("{value} does not fit in 32 bits")))?
            }
            "read_error_slots" | "write_error_slots" => {
                let slots = value
                    .split(',')
                    .filter(|s| !s.trim().is_empty())
                    .map(|s| int(s.trim()))
                    .collect::<Result<Vec<_>, _>>()?;
                if key == "read_error_slots" {
                    self.read_error_slots = slots;
                } else {
                    self.write_error_slots = slots;
                }
            }
            _ => {
                return Err(bad(
                    key,
                    format!("unknown fault; one of {}", FAULT_KEYS.join(", ")),
                ))
            }
        }
        Ok(())
    }

    /// Checks every field's range; errors name `path` and `fault.FIELD`.
    pub fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        for (name, v) in [
            ("read_error_rate", self.read_error_rate),
            ("write_error_rate", self.write_error_rate),
            ("short_write_rate", self.short_write_rate),
            ("torn_write_rate", self.torn_write_rate),
            ("kill_mid_fault_rate", self.kill_mid_fault_rate),
        ] {
            // Written so that NaN fails too.
            ensure(
                (0.0..=1.0).contains(&v),
                path,
                &format!("fault.{name}"),
                || format!("{v} is not a probability in 0..=1"),
            )?;
        }
        for (name, slots) in [
            ("read_error_slots", &self.read_error_slots),
            ("write_error_slots", &self.write_error_slots),
        ] {
            ensure(
                slots.iter().all(|&s| s >= 1),
                path,
                &format!("fault.{name}"),
                || "slot 0 is the swap header and is never read or written as a slot".into(),
            )?;
        }
        if let Some(n) = self.device_full_after_slots {
            ensure(n >= 1, path, "fault.device_full_after_slots", || {
                "must be at least 1 (use a rate of write errors to fail every write)".into()
            })?;
        }
        ensure(
            self.read_delay_us <= READ_DELAY_US_MAX,
            path,
            "fault.read_delay_us",
            || format!("{} is above {READ_DELAY_US_MAX} (10 s)", self.read_delay_us),
        )?;
        Ok(())
    }
}

/// Longest injected read delay, µs.
pub const READ_DELAY_US_MAX: u64 = 10_000_000;

/// Parses a decimal or `0x` hexadecimal integer.
fn parse_u64(s: &str) -> Result<u64, std::num::ParseIntError> {
    match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(h) => u64::from_str_radix(h, 16),
        None => s.parse(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_parses_every_key_and_names_bad_fields() {
        let p = Path::new("--fault");
        let mut f = FaultConfig::default();
        assert!(!f.any());
        f.set("read_error_rate=0.25", p).unwrap();
        f.set("write_error_slots=5,0x10", p).unwrap();
        f.set("device_full_after_slots=100", p).unwrap();
        f.set("kill_mid_fault_rate = 1", p).unwrap();
        assert_eq!(f.read_error_rate, 0.25);
        assert_eq!(f.write_error_slots, vec![5, 16]);
        assert_eq!(f.device_full_after_slots, Some(100));
        assert!(f.any() && f.any_io());
        let e = f.set("torn_write_rate=2", p).unwrap_err().to_string();
        assert!(
            e.contains("fault.torn_write_rate") && e.contains("--fault"),
            "{e}"
        );
        let e = f.set("bogus=1", p).unwrap_err().to_string();
        assert!(
            e.contains("fault.bogus") && e.contains("read_error_rate"),
            "{e}"
        );
        let e = f.set("read_error_slots=0", p).unwrap_err().to_string();
        assert!(e.contains("fault.read_error_slots"), "{e}");
        let e = f.set("seed", p).unwrap_err().to_string();
        assert!(e.contains("KEY=VALUE"), "{e}");
        f.set("read_delay_us=2000", p).unwrap();
        assert_eq!(f.read_delay_us, 2000);
        let e = f.set("read_delay_us=20000000", p).unwrap_err().to_string();
        assert!(e.contains("fault.read_delay_us"), "{e}");
    }

    #[test]
    fn nan_rate_is_refused() {
        let f = FaultConfig {
            write_error_rate: f64::NAN,
            ..FaultConfig::default()
        };
        assert!(f.validate(Path::new("x.toml")).is_err());
    }
}

/// `[seed_bugs]`: switches that re-introduce, one at a time, the bugs the
/// review of the seed patch found, so the checks can be seen to catch them.
/// All off by default; never turn one on outside a test of the checks.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SeedBugsConfig {
    /// `free_all_swap_pages` walks each hibernation extent with an
    /// exclusive end, leaking its last slot.
    #[serde(default)]
    pub hib_free_exclusive_end: bool,
    /// `swap_alloc_hibernation_slot` lowers `nr_swap_pages` twice.
    #[serde(default)]
    pub hib_alloc_double_dec: bool,
    /// `swap_free_hibernation_slot` checks "is this slot still swapped"
    /// (`swap_entry_swapped`) after dropping the cluster lock.
    #[serde(default)]
    pub slot_check_unlocked: bool,
    /// swapoff (`unuse_pte`) puts the swap reference on the KSM copy
    /// `ksm_might_need_to_copy` made instead of on the swap-cache folio.
    #[serde(default)]
    pub swapoff_put_on_ksm_copy: bool,
    /// Freeing a swap slot keeps its zswap entry (`zswap_invalidate`
    /// missing from `swap_range_free`): the stale copy outlives the slot.
    #[serde(default)]
    pub zswap_keep_on_free: bool,
}

/// The names `--seed-bug` accepts.
pub const SEED_BUG_NAMES: &[&str] = &[
    "hib-free-exclusive-end",
    "hib-alloc-double-dec",
    "slot-check-unlocked",
    "swapoff-put-on-ksm-copy",
    "zswap-keep-on-free",
];

impl SeedBugsConfig {
    /// Turns on the switch `name` (kebab or snake case).
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `source` for an unknown name.
    pub fn set(&mut self, name: &str, source: &Path) -> Result<(), ConfigError> {
        match name.trim().replace('_', "-").as_str() {
            "hib-free-exclusive-end" => self.hib_free_exclusive_end = true,
            "hib-alloc-double-dec" => self.hib_alloc_double_dec = true,
            "slot-check-unlocked" => self.slot_check_unlocked = true,
            "swapoff-put-on-ksm-copy" => self.swapoff_put_on_ksm_copy = true,
            "zswap-keep-on-free" => self.zswap_keep_on_free = true,
            other => {
                return Err(ConfigError::Invalid {
                    path: source.to_owned(),
                    field: format!("seed_bugs.{other}"),
                    reason: format!("unknown seed bug; one of {}", SEED_BUG_NAMES.join(", ")),
                })
            }
        }
        Ok(())
    }

    /// True if any switch is on.
    pub fn any(&self) -> bool {
        self.hib_free_exclusive_end
            || self.hib_alloc_double_dec
            || self.slot_check_unlocked
            || self.swapoff_put_on_ksm_copy
            || self.zswap_keep_on_free
    }
}
