//! What is already on the device, and what diskbench may therefore do to
//! it.
//!
//! A benchmark that writes at random offsets destroys whatever it writes
//! over, so before writing diskbench looks at the first 68 KiB for the
//! signatures of the filesystems swap devices are most often confused with,
//! and of a swap area ([`swapvm_io::signature`]). The rules (`decide`):
//! - a block device with any signature is refused unless `--force`;
//! - a regular file with a filesystem signature is refused unless `--force`;
//! - a regular file with a swap header is benchmarked behind its header:
//!   nothing is written below byte 4096, unless `--force`;
//! - patterns that only read are never refused: reading destroys nothing.
//!
//! Block devices are also opened `O_EXCL`, which the kernel refuses while
//! the device is mounted or in use as swap.

use swapvm_io::signature::Signature;
use swapvm_io::BLOCK_SIZE;

/// What diskbench may do, given what is on the device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Go ahead; writes may start at this byte offset (0, or 4096 to keep a
    /// swap header).
    Proceed {
        /// First byte writes may touch.
        write_start: u64,
    },
    /// Refuse, because of this signature.
    Refuse(Signature),
}

/// The rules of the module documentation.
pub(crate) fn decide(
    signature: Option<Signature>,
    block_device: bool,
    writes: bool,
    force: bool,
) -> Verdict {
    let Some(sig) = signature else {
        return Verdict::Proceed { write_start: 0 };
    };
    if !writes || force {
        return Verdict::Proceed { write_start: 0 };
    }
    if block_device || !sig.is_swap() {
        return Verdict::Refuse(sig);
    }
    Verdict::Proceed {
        write_start: BLOCK_SIZE as u64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules() {
        use Verdict::*;
        let keep = Proceed { write_start: 4096 };
        let all = Proceed { write_start: 0 };
        let (swap, ext) = (Some(Signature::Swap), Some(Signature::Ext));
        // (signature, block device, writes, force) -> verdict
        assert_eq!(decide(None, true, true, false), all);
        assert_eq!(decide(swap.clone(), false, true, false), keep);
        assert_eq!(decide(swap.clone(), false, true, true), all);
        assert_eq!(
            decide(swap.clone(), true, true, false),
            Refuse(Signature::Swap)
        );
        assert_eq!(decide(swap, true, false, false), all);
        assert_eq!(
            decide(ext.clone(), false, true, false),
            Refuse(Signature::Ext)
        );
        assert_eq!(decide(ext.clone(), true, true, true), all);
        assert_eq!(decide(ext, false, false, false), all);
        let blkid_swap = Some(Signature::Blkid("swap".into()));
        assert_eq!(decide(blkid_swap, false, true, false), keep);
    }
}
