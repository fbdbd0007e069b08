//! Signatures of what is already on a device: a swap header, or the
//! filesystems swap devices are most often confused with.
//!
//! | signature | where |
//! |---|---|
//! | `SWAPSPACE2` (or the old `SWAP-SPACE`) | byte 4086, the end of page 0 (mkswap) |
//! | ext2/3/4 superblock magic `0xEF53` (little endian) | byte 1080 |
//! | XFS `XFSB` | byte 0 |
//! | btrfs `_BHRfS_M` | byte 65600 |
//!
//! and, on a block device, whatever `blkid -p` recognises if it is
//! installed. Used by `swapvm diskbench` before it writes to a device and
//! by the swap layer before it formats an image, so that neither destroys
//! a filesystem it was pointed at by mistake.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::process::{Command, Stdio};

use crate::{AlignedBuf, BLOCK_SIZE};

/// Bytes read from the start of a device to look for signatures: enough to
/// cover the btrfs magic at 65600.
pub const PROBE_BYTES: usize = 17 * BLOCK_SIZE;

/// Where each magic sits, as (offset, bytes).
const SWAP_MAGIC: (usize, &[u8]) = (4086, b"SWAPSPACE2");
const SWAP_MAGIC_V0: (usize, &[u8]) = (4086, b"SWAP-SPACE");
const EXT_MAGIC: (usize, &[u8]) = (1080, &[0x53, 0xef]);
const XFS_MAGIC: (usize, &[u8]) = (0, b"XFSB");
const BTRFS_MAGIC: (usize, &[u8]) = (65600, b"_BHRfS_M");

const _: () = assert!(BTRFS_MAGIC.0 + 8 <= PROBE_BYTES);

/// A signature found on a device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Signature {
    /// A swap area header (`mkswap`).
    Swap,
    /// An ext2, ext3 or ext4 superblock.
    Ext,
    /// An XFS superblock.
    Xfs,
    /// A btrfs superblock.
    Btrfs,
    /// Something else `blkid` recognised: its `TYPE`.
    Blkid(String),
}

impl Signature {
    /// Whether this is a swap header rather than a filesystem or volume.
    pub fn is_swap(&self) -> bool {
        matches!(self, Signature::Swap) || matches!(self, Signature::Blkid(t) if t == "swap")
    }

    /// What it is and how it was recognised, for messages.
    pub fn describe(&self) -> String {
        match self {
            Signature::Swap => "a swap signature (SWAPSPACE2 at byte 4086)".to_owned(),
            Signature::Ext => "an ext2/3/4 filesystem (magic 0xEF53 at byte 1080)".to_owned(),
            Signature::Xfs => "an XFS filesystem (XFSB at byte 0)".to_owned(),
            Signature::Btrfs => "a btrfs filesystem (_BHRfS_M at byte 65600)".to_owned(),
            Signature::Blkid(t) => format!("a {t:?} signature (found by blkid)"),
        }
    }
}

/// Looks for a signature in the first bytes of a device (fewer than
/// [`PROBE_BYTES`] if the device is smaller).
pub fn probe_bytes(head: &[u8]) -> Option<Signature> {
    let at = |(off, magic): (usize, &[u8])| head.get(off..off + magic.len()) == Some(magic);
    if at(SWAP_MAGIC) || at(SWAP_MAGIC_V0) {
        Some(Signature::Swap)
    } else if at(EXT_MAGIC) {
        Some(Signature::Ext)
    } else if at(XFS_MAGIC) {
        Some(Signature::Xfs)
    } else if at(BTRFS_MAGIC) {
        Some(Signature::Btrfs)
    } else {
        None
    }
}

/// Reads the first [`PROBE_BYTES`] of `file` (opened with or without
/// `O_DIRECT`: the read is block-aligned) and looks for a signature.
pub fn probe_file(file: &File) -> io::Result<Option<Signature>> {
    let mut head = AlignedBuf::new_zeroed(PROBE_BYTES);
    let mut got = 0;
    while got < PROBE_BYTES {
        match file.read_at(&mut head.as_mut_slice()[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        // O_DIRECT reads move whole blocks; a partial block means EOF.
        if got % BLOCK_SIZE != 0 {
            break;
        }
    }
    Ok(probe_bytes(&head.as_slice()[..got]))
}

/// Asks `blkid -p` (if installed) what is on a block device. `None` if it
/// finds nothing, is missing, or fails.
pub fn blkid_type(path: &Path) -> Option<Signature> {
    let out = Command::new("blkid")
        .args(["-p", "-o", "value", "-s", "TYPE", "--"])
        .arg(path)
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    let ty = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    (out.status.success() && !ty.is_empty()).then_some(Signature::Blkid(ty))
}

/// Zeroes, in every 4 KiB block of `buf`, the bytes where [`probe_bytes`]
/// looks for a signature, so that data a benchmark writes can never look like
/// a filesystem or swap header to a later run.
pub fn scrub_signatures(buf: &mut [u8]) {
    for block in buf.chunks_mut(BLOCK_SIZE) {
        for (off, magic) in [
            SWAP_MAGIC,
            EXT_MAGIC,
            XFS_MAGIC,
            (BTRFS_MAGIC.0 % BLOCK_SIZE, BTRFS_MAGIC.1),
        ] {
            if let Some(bytes) = block.get_mut(off..off + magic.len()) {
                bytes.fill(0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(magic: (usize, &[u8])) -> Vec<u8> {
        let mut head = vec![0xa5; PROBE_BYTES];
        head[magic.0..magic.0 + magic.1.len()].copy_from_slice(magic.1);
        head
    }

    #[test]
    fn each_magic_is_recognised() {
        assert_eq!(probe_bytes(&with(SWAP_MAGIC)), Some(Signature::Swap));
        assert_eq!(probe_bytes(&with(SWAP_MAGIC_V0)), Some(Signature::Swap));
        assert_eq!(probe_bytes(&with(EXT_MAGIC)), Some(Signature::Ext));
        assert_eq!(probe_bytes(&with(XFS_MAGIC)), Some(Signature::Xfs));
        assert_eq!(probe_bytes(&with(BTRFS_MAGIC)), Some(Signature::Btrfs));
        assert_eq!(probe_bytes(&vec![0xa5; PROBE_BYTES]), None);
        assert_eq!(probe_bytes(&[]), None);
    }

    #[test]
    fn short_heads_do_not_panic() {
        let head = with(EXT_MAGIC);
        assert_eq!(probe_bytes(&head[..1081]), None);
        assert_eq!(probe_bytes(&head[..1082]), Some(Signature::Ext));
    }

    #[test]
    fn scrubbed_data_carries_no_signature() {
        let mut buf = vec![0u8; 17 * BLOCK_SIZE];
        for (i, b) in buf.iter_mut().enumerate() {
            *b = (i % 251) as u8;
        }
        for magic in [SWAP_MAGIC, EXT_MAGIC, XFS_MAGIC, BTRFS_MAGIC] {
            buf[magic.0..magic.0 + magic.1.len()].copy_from_slice(magic.1);
        }
        scrub_signatures(&mut buf);
        assert_eq!(probe_bytes(&buf), None);
    }
}
