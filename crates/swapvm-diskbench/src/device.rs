//! The device a run measures: created and filled if missing (as fio lays
//! out its files), opened as the pattern needs it, and judged by
//! [`guard`](crate::guard) before anything is written.

use std::fs::{File, OpenOptions};
use std::io::{self, Seek, SeekFrom};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

use swapvm_core::SimRng;
use swapvm_io::signature::{blkid_type, probe_file, scrub_signatures, Signature};
use swapvm_io::{IoKind, QueueConfig, UringQueue, BLOCK_SIZE};

use crate::guard::{self, Verdict};
use crate::pattern::Region;
use crate::{BenchConfig, DeviceKind, DiskbenchError, FILL_CHUNK, FILL_DEPTH};

/// The device, opened and judged.
pub(crate) struct Device {
    pub(crate) file: File,
    pub(crate) kind: DeviceKind,
    pub(crate) size_bytes: u64,
    pub(crate) region: Region,
    pub(crate) header_preserved: bool,
}

/// Creates and fills `cfg.path` if it is missing and a size was given.
/// Returns whether it did.
pub(crate) fn create_if_missing(cfg: &BenchConfig) -> Result<bool, DiskbenchError> {
    let path = &cfg.path;
    match std::fs::metadata(path) {
        Ok(meta) => {
            if let Some(wanted) = cfg.create_bytes {
                if meta.is_file() && meta.len() != wanted {
                    return Err(DiskbenchError::SizeMismatch {
                        path: path.clone(),
                        actual: meta.len(),
                        wanted,
                    });
                }
            }
            Ok(false)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let Some(bytes) = cfg.create_bytes else {
                return Err(DiskbenchError::Missing { path: path.clone() });
            };
            create_and_fill(path, bytes, cfg.direct, cfg.seed).map_err(|source| {
                // Only remove what this run created: `create_new` above
                // guarantees the file is ours.
                let _ = std::fs::remove_file(path);
                DiskbenchError::Create {
                    path: path.clone(),
                    source,
                }
            })?;
            Ok(true)
        }
        Err(source) => Err(cfg.open_err("look up")(source)),
    }
}

/// Creates `path` (never over an existing file), sizes it and writes every
/// byte once, then syncs it.
fn create_and_fill(path: &Path, bytes: u64, direct: bool, seed: u64) -> io::Result<()> {
    let mut opts = OpenOptions::new();
    opts.read(true).write(true).create_new(true).mode(0o600);
    if direct {
        opts.custom_flags(libc::O_DIRECT);
    }
    let file = opts.open(path)?;
    file.set_len(bytes)?;
    let qcfg = QueueConfig {
        queue_depth: FILL_DEPTH as u32,
        slots: FILL_DEPTH,
        slot_len: FILL_CHUNK,
        ..QueueConfig::default()
    };
    let sync = file.try_clone()?;
    let mut q = UringQueue::with_file(path, file, bytes, &qcfg).map_err(io::Error::other)?;
    let mut rng = SimRng::new(seed ^ 0xf111);
    for slot in 0..FILL_DEPTH {
        if let Some(buf) = q.buf_mut(slot) {
            fill_random(buf, &mut rng);
        }
    }
    let mut next = 0u64;
    let mut free: Vec<usize> = (0..FILL_DEPTH).collect();
    while next < bytes || q.in_flight() > 0 {
        while next < bytes {
            let Some(slot) = free.pop() else { break };
            let len = (bytes - next).min(FILL_CHUNK as u64) as usize;
            q.push(slot, IoKind::Write, next, len)
                .map_err(io::Error::other)?;
            next += len as u64;
        }
        q.submit(1)?;
        while let Some(c) = q.complete() {
            let asked = (bytes - c.offset).min(FILL_CHUNK as u64) as usize;
            match c.result {
                Ok(n) if n == asked => free.push(c.slot),
                Ok(n) => {
                    return Err(io::Error::new(
                        io::ErrorKind::WriteZero,
                        format!("short write at byte {}: {n} of {asked}", c.offset),
                    ))
                }
                Err(e) => return Err(e),
            }
        }
    }
    drop(q);
    sync.sync_all()
}

/// Fills `buf` with pseudo-random bytes, then scrubs signature positions.
pub(crate) fn fill_random(buf: &mut [u8], rng: &mut SimRng) {
    for chunk in buf.chunks_mut(8) {
        let word = rng.next_u64().to_le_bytes();
        chunk.copy_from_slice(&word[..chunk.len()]);
    }
    scrub_signatures(buf);
}

/// Opens the device as the run needs it (read-only for patterns that only
/// read, `O_EXCL` for block devices), probes it and applies the rules of
/// [`guard`].
pub(crate) fn open_device_checked(cfg: &BenchConfig) -> Result<Device, DiskbenchError> {
    let path = &cfg.path;
    let meta = std::fs::metadata(path).map_err(cfg.open_err("look up"))?;
    let kind = if meta.file_type().is_block_device() {
        DeviceKind::BlockDevice
    } else if meta.is_file() {
        DeviceKind::File
    } else {
        return Err(DiskbenchError::NotADevice { path: path.clone() });
    };
    let writes = cfg.pattern.writes();
    let mut flags = 0;
    if cfg.direct {
        flags |= libc::O_DIRECT;
    }
    if kind == DeviceKind::BlockDevice {
        flags |= libc::O_EXCL;
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(writes)
        .custom_flags(flags)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::EBUSY) => DiskbenchError::Busy { path: path.clone() },
            _ => cfg.open_err("open")(e),
        })?;
    let size_bytes = file.seek(SeekFrom::End(0)).map_err(cfg.open_err("size"))?;
    let mut signature = probe_file(&file).map_err(cfg.open_err("read the first blocks"))?;
    if signature.is_none() && kind == DeviceKind::BlockDevice && writes {
        signature = blkid_type(path);
    }
    let header = signature.as_ref().is_some_and(Signature::is_swap);
    let block = kind == DeviceKind::BlockDevice;
    let write_start = match guard::decide(signature, block, writes, cfg.force) {
        Verdict::Proceed { write_start } => write_start,
        Verdict::Refuse(signature) => {
            return Err(DiskbenchError::Refused {
                path: path.clone(),
                signature,
            })
        }
    };
    let end = size_bytes - size_bytes % BLOCK_SIZE as u64;
    Ok(Device {
        file,
        kind,
        size_bytes,
        region: Region {
            start: write_start.min(end),
            end,
        },
        header_preserved: header && writes && write_start > 0,
    })
}
