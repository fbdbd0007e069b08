//! Exclusive use of a swap device while it is swapped on, as the kernel's
//! swapon claims one: a block device is opened with `O_EXCL` (which fails
//! with `EBUSY` while it is mounted, swapped on by the kernel or claimed by
//! another program), an image file is refused if the kernel swaps on it
//! (`/proc/swaps`) and is locked with `flock(LOCK_EX)`, so a second swapvm
//! on the same image is refused instead of tearing the first one's data.
//! The claim lasts as long as the [`DeviceClaim`] value.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Why a device could not be claimed.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another process holds the image's lock.
    #[error("{}: in use by {}", path.display(), holder.map_or("another process".to_owned(), |p| format!("process {p}")))]
    Locked {
        /// The image.
        path: PathBuf,
        /// The lock holder's pid, when /proc/locks names it.
        holder: Option<u32>,
    },
    /// The kernel swaps on it.
    #[error("{}: the kernel is swapping on it (see /proc/swaps); swapoff it first", path.display())]
    KernelSwap {
        /// The device or file.
        path: PathBuf,
    },
    /// A block device held exclusively by someone else.
    #[error("{}: busy: mounted, in use as swap, or held by another program", path.display())]
    Busy {
        /// The device.
        path: PathBuf,
    },
    /// Opening or locking failed otherwise.
    #[error("{}: cannot {what}", path.display())]
    Io {
        /// The device or file.
        path: PathBuf,
        /// What was attempted.
        what: &'static str,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
}

/// An exclusive claim on a swap device or image; released on drop.
#[derive(Debug)]
pub struct DeviceClaim {
    _file: File,
}

impl DeviceClaim {
    /// Claims `path`, a block device or a regular image file.
    ///
    /// # Errors
    /// [`ClaimError`] naming the path and who holds it where that is known.
    pub fn take(path: &Path) -> Result<DeviceClaim, ClaimError> {
        let io = |what| {
            move |source| ClaimError::Io {
                path: path.to_owned(),
                what,
                source,
            }
        };
        let meta = std::fs::metadata(path).map_err(io("stat"))?;
        let block = std::os::unix::fs::FileTypeExt::is_block_device(&meta.file_type());
        let id = if block {
            (0, meta.rdev())
        } else {
            (meta.dev(), meta.ino())
        };
        let swaps = std::fs::read_to_string("/proc/swaps").unwrap_or_default();
        if listed_in_swaps(&swaps, id, block) {
            return Err(ClaimError::KernelSwap {
                path: path.to_owned(),
            });
        }
        if block {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_EXCL)
                .open(path)
                .map_err(|e| match e.raw_os_error() {
                    Some(libc::EBUSY) => ClaimError::Busy {
                        path: path.to_owned(),
                    },
                    _ => io("open")(e),
                })?;
            return Ok(DeviceClaim { _file: file });
        }
        let file = File::open(path).map_err(io("open"))?;
        // SAFETY: flock on a descriptor this function owns; no memory is
        // passed.
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if r != 0 {
            let e = std::io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EWOULDBLOCK) {
                return Err(ClaimError::Locked {
                    path: path.to_owned(),
                    holder: flock_holder(meta.dev(), meta.ino()),
                });
            }
            return Err(io("lock")(e));
        }
        Ok(DeviceClaim { _file: file })
    }
}

/// Whether `swaps` (the text of `/proc/swaps`) lists a device or file with
/// identity `id` (`(0, rdev)` for a block device, `(dev, ino)` for a file).
fn listed_in_swaps(swaps: &str, id: (u64, u64), block: bool) -> bool {
    swaps.lines().skip(1).any(|line| {
        let Some(name) = line.split_whitespace().next() else {
            return false;
        };
        // /proc/swaps escapes blanks in names as octal.
        let name = name.replace("\\040", " ").replace("\\011", "\t");
        std::fs::metadata(&name).is_ok_and(|m| {
            let other = if block {
                (0, m.rdev())
            } else {
                (m.dev(), m.ino())
            };
            other == id
        })
    })
}

/// The pid holding an flock on the file `(dev, ino)`, from /proc/locks
/// (`N: FLOCK ADVISORY WRITE PID MAJ:MIN:INODE 0 EOF`, major and minor in
/// hex).
fn flock_holder(dev: u64, ino: u64) -> Option<u32> {
    let want = format!("{:02x}:{:02x}:{ino}", libc::major(dev), libc::minor(dev));
    let text = std::fs::read_to_string("/proc/locks").ok()?;
    text.lines().find_map(|line| {
        let f: Vec<&str> = line.split_whitespace().collect();
        let flock = f.get(1) == Some(&"FLOCK");
        (flock && f.get(5) == Some(&want.as_str())).then(|| f.get(4)?.parse().ok())?
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> tempfile::NamedTempFile {
        let f = tempfile::Builder::new()
            .prefix("swapvm-claim-")
            .tempfile_in("/var/tmp")
            .unwrap();
        f.as_file().set_len(1 << 20).unwrap();
        f
    }

    #[test]
    fn a_second_claim_on_an_image_is_refused_naming_the_holder() {
        let f = image();
        let first = DeviceClaim::take(f.path()).unwrap();
        let e = DeviceClaim::take(f.path()).unwrap_err();
        // flock locks belong to the open file description: this process
        // holds the first one, and /proc/locks names it.
        let msg = e.to_string();
        assert!(
            msg.contains(&format!("in use by process {}", std::process::id())),
            "{msg}"
        );
        drop(first);
        DeviceClaim::take(f.path()).expect("released on drop");
    }

    #[test]
    fn a_file_in_proc_swaps_is_recognised_by_inode() {
        let f = image();
        let m = std::fs::metadata(f.path()).unwrap();
        let id = (m.dev(), m.ino());
        let swaps = |name: &str| {
            format!(
                "Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n\
                 {name}\tfile\t\t1024\t\t0\t\t-2\n"
            )
        };
        let name = f.path().display().to_string();
        assert!(listed_in_swaps(&swaps(&name), id, false));
        let spaced = name.replace("/var/tmp/", "/var/tmp/./");
        assert!(listed_in_swaps(&swaps(&spaced), id, false));
        assert!(!listed_in_swaps(&swaps("/var/tmp/other"), id, false));
        assert!(!listed_in_swaps(
            "Filename Type Size Used Priority\n",
            id,
            false
        ));
    }

    #[test]
    fn a_missing_image_names_the_path() {
        let e = DeviceClaim::take(Path::new("/var/tmp/swapvm-no-such-image")).unwrap_err();
        assert!(e.to_string().contains("swapvm-no-such-image"), "{e}");
    }
}
