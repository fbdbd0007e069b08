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
