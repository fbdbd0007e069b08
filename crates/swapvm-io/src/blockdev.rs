//! What the host says about the block device under a swap image:
//! `/sys/dev/block/MAJ:MIN/queue/rotational` of a block device, or of the
//! block device holding an image file (a partition answers with its
//! disk's queue); and the size of a block device (`BLKGETSIZE64`), which
//! `ftruncate` cannot set and `st_size` does not report.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

/// Why the rotational flag could not be read.
#[derive(Debug, thiserror::Error)]
pub enum RotationalError {
    /// The image or device cannot be examined.
    #[error("{path}: cannot stat: {source}")]
    Stat {
        /// The path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// No block device queue answers for it (a file on tmpfs, overlayfs
    /// or a network file system).
    #[error(
        "{path}: no block device queue for {major}:{minor} under /sys/dev/block; set rotational = true or false"
    )]
    NoQueue {
        /// The path.
        path: PathBuf,
        /// Device major number.
        major: u64,
        /// Device minor number.
        minor: u64,
    },
}

/// The `(major, minor)` of a Linux `dev_t` (glibc's encoding).
pub fn dev_major_minor(dev: u64) -> (u64, u64) {
    let major = ((dev >> 8) & 0xfff) | ((dev >> 32) & !0xfff);
    let minor = (dev & 0xff) | ((dev >> 12) & !0xff);
    (major, minor)
}

/// Whether the block device `path` is, or the block device that holds the
/// file `path` sits on, rotational.
///
/// # Errors
/// [`RotationalError`]: `path` cannot be examined, or no block queue
/// answers for its device.
pub fn rotational(path: &Path) -> Result<bool, RotationalError> {
    let meta = std::fs::metadata(path).map_err(|source| RotationalError::Stat {
        path: path.to_owned(),
        source,
    })?;
    let dev = if meta.file_type().is_block_device() {
        meta.rdev()
    } else {
        meta.dev()
    };
    let (major, minor) = dev_major_minor(dev);
    let sys = PathBuf::from(format!("/sys/dev/block/{major}:{minor}"));
    let no_queue = || RotationalError::NoQueue {
        path: path.to_owned(),
        major,
        minor,
    };
    let dir = sys.canonicalize().map_err(|_| no_queue())?;
    // A partition has no queue of its own: its disk (the parent) does.
    [
        dir.join("queue/rotational"),
        dir.join("../queue/rotational"),
    ]
    .iter()
    .find_map(|f| std::fs::read_to_string(f).ok())
    .map(|v| v.trim() == "1")
    .ok_or_else(no_queue)
}

/// `_IOR(0x12, 114, size_t)` from `<linux/fs.h>`; the libc crate does not
/// export it.
const BLKGETSIZE64: u64 =
    (2 << 30) | ((std::mem::size_of::<usize>() as u64) << 16) | (0x12 << 8) | 114;

/// The size in bytes of the block device open as `file`
/// (`ioctl(BLKGETSIZE64)`, as util-linux's `blkdev_get_size` asks it).
///
/// # Errors
/// The ioctl's error: `ENOTTY` when `file` is not a block device.
#[doc(alias = "BLKGETSIZE64")]
pub fn device_size_bytes(file: &File) -> std::io::Result<u64> {
    let mut bytes: u64 = 0;
    // SAFETY: BLKGETSIZE64 writes one u64 through the pointer, which points
    // at a live local of that type; the descriptor is owned by `file`.
    let r = unsafe {
        libc::ioctl(
            file.as_raw_fd(),
            BLKGETSIZE64 as _,
            std::ptr::from_mut(&mut bytes),
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_size_request_is_the_kernels() {
        // 0x80081272 on every 64-bit Linux target.
        #[cfg(target_pointer_width = "64")]
        assert_eq!(BLKGETSIZE64, 0x8008_1272);
    }

    /// A regular file is no block device: the ioctl says so, it does not
    /// answer 0.
    #[test]
    fn a_regular_file_has_no_device_size() {
        let f = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        let e = device_size_bytes(f.as_file()).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY), "{e}");
    }

    #[test]
    fn dev_numbers_decode_as_glibc_encodes_them() {
        assert_eq!(dev_major_minor(0xfe00), (254, 0));
        assert_eq!(dev_major_minor(0x0801), (8, 1));
        // Large minors spill into the high bits.
        assert_eq!(dev_major_minor(0x10_0103), (1, 0x103));
    }

    /// A file on the disk of /var/tmp answers with the flag of the queue
    /// that sysfs lists for the file's own device numbers.
    #[test]
    fn an_image_file_answers_with_its_disks_flag() {
        let f = tempfile::NamedTempFile::new_in("/var/tmp").unwrap();
        let dev = std::fs::metadata(f.path()).unwrap().dev();
        let (ma, mi) = dev_major_minor(dev);
        let sys = format!("/sys/dev/block/{ma}:{mi}");
        match rotational(f.path()) {
            Ok(r) => {
                let dir = Path::new(&sys).canonicalize().unwrap();
                let want = std::fs::read_to_string(dir.join("queue/rotational"))
                    .or_else(|_| std::fs::read_to_string(dir.join("../queue/rotational")))
                    .unwrap();
                assert_eq!(r, want.trim() == "1");
            }
            Err(RotationalError::NoQueue { major, minor, .. }) => {
                assert_eq!((major, minor), (ma, mi));
                assert!(!Path::new(&sys).join("queue").exists());
            }
            Err(e) => panic!("{e}"),
        }
        let e = rotational(Path::new("/var/tmp/no-such-swapvm-image")).unwrap_err();
        assert!(e.to_string().contains("no-such-swapvm-image"), "{e}");
    }
}
