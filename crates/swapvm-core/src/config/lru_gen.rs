//! The reclaim policy knobs: `reclaim.policy` and the multi-generational
//! LRU's `/sys/kernel/mm/lru_gen/` files (`enabled`, `min_ttl_ms`).

use super::{ensure, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Which LRU chooses reclaim's victims. The kernel runs one for the whole
/// machine (`lru_gen_enabled()` is global), so every memcg's lruvec uses
/// the same one.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ReclaimPolicy {
    /// The active/inactive lists (`shrink_lruvec`).
    #[default]
    Classic,
    /// The multi-generational LRU (`lru_gen_shrink_lruvec`).
    Mglru,
}

/// `/sys/kernel/mm/lru_gen/enabled` as read back with every feature on.
pub fn default_lru_gen_enabled() -> u32 {
    0x7
}

/// Checks the policy knobs of `[reclaim]`.
///
/// # Errors
/// [`ConfigError::Invalid`] naming `reclaim.lru_gen_enabled` when it has
/// bits outside 0x7, or lacks the main switch 0x1 under `policy = "mglru"`.
pub fn validate(
    p: &Path,
    policy: ReclaimPolicy,
    enabled: u32,
    min_ttl_ms: u64,
) -> Result<(), ConfigError> {
    ensure(enabled & !0x7 == 0, p, "reclaim.lru_gen_enabled", || {
        format!("{enabled:#x} has bits outside 0x7 (core 0x1, mm walk 0x2, non-leaf young 0x4)")
    })?;
    ensure(
        policy != ReclaimPolicy::Mglru || enabled & 0x1 != 0,
        p,
        "reclaim.lru_gen_enabled",
        || format!("{enabled:#x} lacks the core bit 0x1 that policy \"mglru\" needs"),
    )?;
    ensure(min_ttl_ms <= 1 << 40, p, "reclaim.min_ttl_ms", || {
        format!("{min_ttl_ms} is above 2^40 ms")
    })
}

/// A command written to `/sys/kernel/debug/lru_gen` (`run_cmd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LruGenCmd {
    /// `+ memcg_id node_id seq [swappiness [force_scan]]`: age (make a new
    /// generation) if `seq` is the youngest.
    Age {
        /// The memcg (swapvm's memcg index, as `lru_gen` prints it).
        memcg: u16,
        /// The node (0: swapvm has one).
        node: u32,
        /// The expected `max_seq`.
        seq: u64,
        /// Swappiness for this command (`None`: the memcg's).
        swappiness: Option<u32>,
        /// Age even with `MAX_NR_GENS` generations already.
        force_scan: bool,
    },
    /// `- memcg_id node_id seq [swappiness [nr_to_reclaim]]`: evict the
    /// generations up to `seq` until `nr_to_reclaim` pages are reclaimed.
    Evict {
        /// The memcg.
        memcg: u16,
        /// The node.
        node: u32,
        /// The youngest generation that may be evicted.
        seq: u64,
        /// Swappiness for this command (`None`: the memcg's).
        swappiness: Option<u32>,
        /// Pages to reclaim (`None`: no limit).
        nr_to_reclaim: Option<u64>,
    },
}

impl LruGenCmd {
    /// Parses one command as `lru_gen_seq_write` splits it: the command
    /// character, then three or four numbers (the kernel's
    /// `"%c %u %u %lu %n%u %n%lu %n"`).
    ///
    /// # Errors
    /// A message saying what is wrong (the caller names the field).
    pub fn parse(text: &str) -> Result<LruGenCmd, String> {
        let mut it = text.split_whitespace();
        let cmd = it.next().ok_or("empty command")?;
        let nums: Vec<&str> = it.collect();
        if !(3..=5).contains(&nums.len()) {
            return Err(format!(
                "{text:?}: expected `{cmd} memcg_id node_id seq [swappiness [opt]]`"
            ));
        }
        let num = |i: usize, what: &str| -> Result<u64, String> {
            nums[i]
                .parse::<u64>()
                .map_err(|_| format!("{text:?}: {what} {:?} is not a number", nums[i]))
        };
        let memcg = u16::try_from(num(0, "memcg_id")?)
            .map_err(|_| format!("{text:?}: memcg_id is out of range"))?;
        let node = u32::try_from(num(1, "node_id")?)
            .map_err(|_| format!("{text:?}: node_id is out of range"))?;
        let seq = num(2, "seq")?;
        let swappiness = match nums.get(3) {
            Some(_) => {
                let v = num(3, "swappiness")?;
                if v > 201 {
                    return Err(format!("{text:?}: swappiness {v} is outside 0..=201"));
                }
                Some(v as u32)
            }
            None => None,
        };
        let opt = nums.get(4).map(|_| num(4, "opt")).transpose()?;
        match cmd {
            "+" => Ok(LruGenCmd::Age {
                memcg,
                node,
                seq,
                swappiness,
                force_scan: opt.is_some_and(|v| v != 0),
            }),
            "-" => Ok(LruGenCmd::Evict {
                memcg,
                node,
                seq,
                swappiness,
                nr_to_reclaim: opt,
            }),
            c => Err(format!("{text:?}: command {c:?} is neither `+` nor `-`")),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{ConfigError, MachineConfig, ReclaimPolicy};
    use std::path::Path;

    fn parse(reclaim: &str) -> Result<MachineConfig, ConfigError> {
        let text = format!("[machine]\nram_mib = 64\n[reclaim]\n{reclaim}\n");
        MachineConfig::from_toml(&text, Path::new("/cfg/test.toml"))
    }

    #[test]
    fn policy_defaults_to_classic_and_parses_mglru() {
        let c = parse("").unwrap();
        assert_eq!(c.reclaim.policy, ReclaimPolicy::Classic);
        assert_eq!((c.reclaim.lru_gen_enabled, c.reclaim.min_ttl_ms), (0x7, 0));
        let c = parse("policy = \"mglru\"\nlru_gen_enabled = 0x3\nmin_ttl_ms = 1000").unwrap();
        assert_eq!(c.reclaim.policy, ReclaimPolicy::Mglru);
        assert_eq!(
            (c.reclaim.lru_gen_enabled, c.reclaim.min_ttl_ms),
            (0x3, 1000)
        );
    }

    #[test]
    fn lru_gen_commands_parse_as_the_kernel_splits_them() {
        use super::LruGenCmd;
        assert_eq!(
            LruGenCmd::parse("+ 1 0 7"),
            Ok(LruGenCmd::Age {
                memcg: 1,
                node: 0,
                seq: 7,
                swappiness: None,
                force_scan: false
            })
        );
        assert_eq!(
            LruGenCmd::parse(" - 0 0 5 200 1024 "),
            Ok(LruGenCmd::Evict {
                memcg: 0,
                node: 0,
                seq: 5,
                swappiness: Some(200),
                nr_to_reclaim: Some(1024)
            })
        );
        for bad in [
            "",
            "* 0 0 1",
            "+ 0 0",
            "- x 0 1",
            "- 0 0 1 300",
            "+ 0 0 1 1 1 1",
        ] {
            assert!(LruGenCmd::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bad_policy_knobs_name_the_field() {
        for (text, field) in [
            ("policy = \"lfu\"", "policy"),
            ("lru_gen_enabled = 0x8", "reclaim.lru_gen_enabled"),
            (
                "policy = \"mglru\"\nlru_gen_enabled = 0x6",
                "reclaim.lru_gen_enabled",
            ),
        ] {
            let e = parse(text).unwrap_err();
            let msg = format!("{e} {e:?}");
            assert!(msg.contains(field), "{text}: {msg}");
            assert!(msg.contains("test.toml"), "{text}: {msg}");
        }
    }
}
