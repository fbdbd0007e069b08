//! `[zswap]`: the module parameters of zswap
//! (`/sys/module/zswap/parameters/*`, Documentation/admin-guide/mm/zswap.rst).
//!
//! zswap is off by default, as on a kernel booted without `zswap.enabled=1`:
//! a config without `[zswap]` runs exactly as before zswap existed.

use super::{ensure, Compressor, ConfigError};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// `[zswap]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ZswapConfig {
    /// `enabled`: swap-outs are offered to the compressed pool first.
    #[serde(default)]
    pub enabled: bool,
    /// `max_pool_percent`: the pool may take at most this share of RAM.
    #[serde(default = "default_max_pool_percent")]
    pub max_pool_percent: u32,
    /// `compressor`: `"lz4"` or `"zstd"` (the zram compressors; the kernel's
    /// build default is often lzo, which swapvm does not have).
    #[serde(default)]
    pub compressor: Compressor,
    /// `shrinker_enabled`: reclaim also writes the coldest compressed pages
    /// back to the swap device (`CONFIG_ZSWAP_SHRINKER_DEFAULT_ON`, off by
    /// default as in the kernel).
    #[serde(default)]
    pub shrinker_enabled: bool,
    /// `accept_threshold_percent`: once the pool was full, stores are
    /// refused until it shrinks below this share of its maximum.
    #[serde(default = "default_accept_threshold_percent")]
    pub accept_threshold_percent: u32,
}

impl Default for ZswapConfig {
    fn default() -> Self {
        ZswapConfig {
            enabled: false,
            max_pool_percent: default_max_pool_percent(),
            compressor: Compressor::default(),
            shrinker_enabled: false,
            accept_threshold_percent: default_accept_threshold_percent(),
        }
    }
}

fn default_max_pool_percent() -> u32 {
    20
}

fn default_accept_threshold_percent() -> u32 {
    90
}

impl ZswapConfig {
    /// True when every field has its default (the section is left out of
    /// a written config then).
    pub fn is_default(&self) -> bool {
        *self == ZswapConfig::default()
    }

    /// Checks the percentages; errors name the field.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] naming `zswap.<field>`.
    pub fn validate(&self, p: &Path) -> Result<(), ConfigError> {
        ensure(
            self.max_pool_percent <= 100,
            p,
            "zswap.max_pool_percent",
            || format!("{} is outside 0..=100", self.max_pool_percent),
        )?;
        ensure(
            self.accept_threshold_percent <= 100,
            p,
            "zswap.accept_threshold_percent",
            || format!("{} is outside 0..=100", self.accept_threshold_percent),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_above_100_name_the_field() {
        let p = Path::new("c.toml");
        let ok = ZswapConfig::default();
        assert!(ok.validate(p).is_ok());
        let bad = ZswapConfig {
            max_pool_percent: 101,
            ..ok
        };
        let e = bad.validate(p).unwrap_err().to_string();
        assert!(e.contains("zswap.max_pool_percent"), "{e}");
        let bad = ZswapConfig {
            accept_threshold_percent: 250,
            ..ok
        };
        let e = bad.validate(p).unwrap_err().to_string();
        assert!(e.contains("zswap.accept_threshold_percent"), "{e}");
    }
}
