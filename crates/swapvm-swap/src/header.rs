//! The swap area header: page 0 of every swap device, in the version-1
//! format that util-linux `mkswap` writes and the kernel's
//! `read_swap_header` accepts (`union swap_header` in
//! `include/linux/swap.h`). This module encodes and decodes that page,
//! creates swap image files ([`mkswap`]) and validates existing ones
//! ([`read_header`]). It knows nothing about what is stored in the other
//! pages: slot allocation, the swap map and page I/O live elsewhere.
//!
//! Images made here are recognised by the real `blkid`, `swaplabel` and
//! `swapon`, and images made by the real `mkswap` are accepted here; the
//! integration tests in `tests/header.rs` check both directions.

use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::fs::{FileExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use uuid::Uuid;

/// Size of a page, of a swap slot and of the header, in bytes.
pub const PAGE_SIZE: usize = 4096;

/// The version-1 signature, stored in the last 10 bytes of page 0.
pub const SWAP_MAGIC: &[u8; 10] = b"SWAPSPACE2";

/// The version-0 signature ("SWAP-SPACE"), only recognised to explain a
/// rejection: neither the kernel nor this module supports that format.
const SWAP_MAGIC_V0: &[u8; 10] = b"SWAP-SPACE";

/// Smallest swap area [`SwapHeader::new`] and [`mkswap`] create, in pages
/// including the header page; util-linux `mkswap` refuses smaller ones too.
pub const MIN_SWAP_PAGES: u64 = 10;

/// Largest swap area [`SwapHeader::new`] and [`mkswap`] create, in pages
/// including the header page. `last_page` is a 32-bit field; like util-linux
/// `mkswap` we stop at `u32::MAX` pages (last_page `u32::MAX - 1`).
pub const MAX_SWAP_PAGES: u64 = u32::MAX as u64;

/// Longest label [`SwapHeader::new`] accepts, in bytes.
///
/// The on-disk field is 16 bytes, but util-linux `mkswap` and `swaplabel`
/// always keep a terminating NUL and so store at most 15; we do the same.
/// [`SwapHeader::decode`] still accepts a label filling all 16 bytes, as
/// `blkid` does.
pub const LABEL_MAX: usize = VOLUME_NAME_LEN - 1;

/// Most bad-page entries that fit between the bad-page list's start and the
/// signature (the kernel's `MAX_SWAP_BADPAGES`).
pub const MAX_BADPAGES: usize = (OFF_MAGIC - OFF_BADPAGES) / 4;

// Byte offsets of the fields inside page 0; see the table on `SwapHeader`.
const OFF_VERSION: usize = 1024;
const OFF_LAST_PAGE: usize = 1028;
const OFF_NR_BADPAGES: usize = 1032;
const OFF_UUID: usize = 1036;
const OFF_VOLUME_NAME: usize = 1052;
const VOLUME_NAME_LEN: usize = 16;
const PADDING_WORDS: usize = 117;
const OFF_BADPAGES: usize = OFF_VOLUME_NAME + VOLUME_NAME_LEN + PADDING_WORDS * 4;
const OFF_MAGIC: usize = PAGE_SIZE - SWAP_MAGIC.len();

const _: () = assert!(OFF_BADPAGES == 1536);
const _: () = assert!(OFF_MAGIC == 4086);
const _: () = assert!(MAX_BADPAGES == 637);
const _: () = assert!(OFF_BADPAGES + MAX_BADPAGES * 4 <= OFF_MAGIC);
const _: () = assert!(MIN_SWAP_PAGES >= 2 && MIN_SWAP_PAGES <= MAX_SWAP_PAGES);

/// Name used in errors from [`SwapHeader::decode`], which has no file.
const UNNAMED: &str = "swap header";

/// Errors from creating, reading and validating a swap header.
///
/// Variants about a file name it in `path` and in the message; the operating
/// system's cause of an I/O failure is the error's `source`.
#[derive(Debug, thiserror::Error)]
pub enum HeaderError {
    /// An I/O operation on the swap image failed.
    #[error("{path}: {op}")]
    Io {
        /// The swap image.
        path: PathBuf,
        /// What was being done, e.g. "cannot open swap image".
        op: &'static str,
        /// The operating system's error.
        #[source]
        source: std::io::Error,
    },
    /// The file (or buffer) is shorter than the one page a header fills.
    #[error("{path}: only {len} bytes, but a swap header fills a whole {PAGE_SIZE}-byte page")]
    Truncated {
        /// The swap image.
        path: PathBuf,
        /// Its length in bytes.
        len: u64,
    },
    /// The last 10 bytes of page 0 are not `SWAPSPACE2`.
    #[error(
        "{path}: not a swap area: no SWAPSPACE2 signature at byte {OFF_MAGIC} (found \"{found}\"){hint}",
        hint = v0_hint(found)
    )]
    BadSignature {
        /// The file.
        path: PathBuf,
        /// The bytes found instead, ASCII-escaped.
        found: String,
    },
    /// The filesystem cannot hold the image.
    #[error("{}: a {need_mib} MiB swap image does not fit: {free_mib} MiB free on its filesystem (lower size_mib or use another folder)", path.display())]
    NoSpace {
        /// The image.
        path: PathBuf,
        /// Its size.
        need_mib: u64,
        /// Space free for it.
        free_mib: u64,
    },
    /// A size asked of a block device that is smaller than that.
    #[error("{}: the block device holds {have_bytes} bytes, less than the {want_bytes} asked (omit --size-mib to use the whole device)", path.display())]
    DeviceTooSmall {
        /// The block device.
        path: PathBuf,
        /// The size asked.
        want_bytes: u64,
        /// The device's size.
        have_bytes: u64,
    },
    /// No swap signature, and a filesystem is there instead.
    #[error("{}: not a swap area: it holds {what}; refusing to use it (mkswap it only if its contents may go)", path.display())]
    Filesystem {
        /// The file or device.
        path: PathBuf,
        /// The filesystem, as found.
        what: String,
    },
    /// The signature is right but the version field is neither 1 nor a
    /// byte-swapped 1.
    #[error("{path}: unsupported swap header version {version} (only version 1 exists)")]
    UnsupportedVersion {
        /// The swap image.
        path: PathBuf,
        /// The version field, read in native byte order.
        version: u32,
    },
    /// `last_page` is 0 or every slot is listed as bad (the kernel's
    /// "Empty swap-file").
    #[error(
        "{path}: swap area has no usable slots (last_page {last_page}, {nr_badpages} bad pages)"
    )]
    NoUsableSlots {
        /// The swap image.
        path: PathBuf,
        /// The header's `last_page`.
        last_page: u32,
        /// The header's `nr_badpages`.
        nr_badpages: u32,
    },
    /// `nr_badpages` is larger than the list can be.
    #[error("{path}: header lists {count} bad pages, more than the {max} that fit in page 0", max = MAX_BADPAGES)]
    TooManyBadPages {
        /// The swap image.
        path: PathBuf,
        /// The header's `nr_badpages`.
        count: u32,
    },
    /// A bad-page entry is not a usable slot number.
    #[error("{path}: bad page {page} is outside the slots 1..={last_page}")]
    BadPageOutOfRange {
        /// The swap image.
        path: PathBuf,
        /// The offending entry.
        page: u32,
        /// The header's `last_page`.
        last_page: u32,
    },
    /// The header describes more pages than the file holds.
    #[error("{path}: header says last_page {last_page}, but the file holds only {file_pages} whole pages (0..{file_pages})")]
    LastPageBeyondFile {
        /// The swap image.
        path: PathBuf,
        /// The header's `last_page`.
        last_page: u32,
        /// Whole pages in the file.
        file_pages: u64,
    },
    /// The requested swap area is smaller than [`MIN_SWAP_PAGES`].
    #[error(
        "swap area of {pages} pages is too small: at least {min} pages ({min_kib} KiB) are needed",
        min = MIN_SWAP_PAGES,
        min_kib = MIN_SWAP_PAGES * PAGE_SIZE as u64 / 1024
    )]
    TooSmall {
        /// Requested size in whole pages, header included.
        pages: u64,
    },
    /// The requested swap area is larger than [`MAX_SWAP_PAGES`].
    #[error("swap area of {pages} pages is too large: last_page is 32 bits, so at most {max} pages", max = MAX_SWAP_PAGES)]
    TooLarge {
        /// Requested size in whole pages, header included.
        pages: u64,
    },
    /// The label is longer than [`LABEL_MAX`] bytes.
    #[error("label is {len} bytes long; a swap label holds at most {max} bytes", max = LABEL_MAX)]
    LabelTooLong {
        /// Length of the label in bytes (UTF-8).
        len: usize,
    },
    /// The label contains a NUL byte, which would end it early on disk.
    #[error("label contains a NUL byte")]
    LabelContainsNul,
    /// A UUID argument could not be parsed.
    #[error("invalid UUID {input:?}: expected the form 01234567-89ab-cdef-0123-456789abcdef")]
    BadUuid {
        /// The text given.
        input: String,
        /// The parser's complaint.
        #[source]
        source: uuid::Error,
    },
}

/// A hint for [`HeaderError::BadSignature`] when the signature found is the
/// version-0 one.
fn v0_hint(found: &str) -> &'static str {
    if found.as_bytes() == SWAP_MAGIC_V0 {
        "; that is the obsolete version-0 format, run mkswap again"
    } else {
        ""
    }
}

impl HeaderError {
    fn io<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(std::io::Error) -> Self + 'a {
        move |source| HeaderError::Io {
            path: path.to_path_buf(),
            op,
            source,
        }
    }
}

/// The decoded version-1 swap header (`union swap_header`, `info` view).
///
/// Layout of page 0, integers in the writer's byte order (native for
/// headers we write):
///
/// | bytes        | field                | meaning                                  |
/// |--------------|----------------------|------------------------------------------|
/// | 0..1024      | boot bits            | left zero                                |
/// | 1024..1028   | `version: u32`       | 1                                        |
/// | 1028..1032   | `last_page: u32`     | index of the last usable page            |
/// | 1032..1036   | `nr_badpages: u32`   | entries used in `badpages`               |
/// | 1036..1052   | `uuid: [u8; 16]`     | big-endian RFC 4122 bytes                |
/// | 1052..1068   | `volume_name: [u8; 16]` | label, NUL padded                     |
/// | 1068..1536   | `padding: [u32; 117]`| zero                                     |
/// | 1536..4084   | `badpages: [u32; 637]` | slot numbers never to use             |
/// | 4084..4086   | unused               | zero                                     |
/// | 4086..4096   | magic                | `SWAPSPACE2`                             |
///
/// Slot 0 is the header page and never a swap slot; the usable slots are
/// `1..=last_page` minus `badpages`.
///
/// # Invariants
///
/// Values from [`SwapHeader::new`] and [`SwapHeader::decode`] satisfy
/// [`SwapHeader::decode`]'s checks. The fields are public for inspection;
/// [`SwapHeader::encode`] panics only if `label` or `badpages` no longer fit
/// their on-disk fields.
#[doc(alias = "swap_header")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SwapHeader {
    /// Header format version; always 1.
    pub version: u32,
    /// Index of the last usable page: total pages - 1.
    pub last_page: u32,
    /// The swap area's UUID, in RFC 4122 byte order; all zero means none.
    pub uuid: [u8; 16],
    /// The label without its NUL padding; empty means none.
    pub label: String,
    /// Slots never to be used, as stored (order kept, duplicates allowed).
    pub badpages: Vec<u32>,
    /// Whether the integers are stored in the opposite byte order to this
    /// host's (a header written on a machine of the other endianness).
    pub foreign_endian: bool,
}

impl SwapHeader {
    /// A fresh version-1 header for a swap area of `total_pages` pages
    /// (header page included), with no bad pages, in native byte order.
    ///
    /// # Errors
    ///
    /// [`HeaderError::TooSmall`] below [`MIN_SWAP_PAGES`],
    /// [`HeaderError::TooLarge`] above [`MAX_SWAP_PAGES`],
    /// [`HeaderError::LabelTooLong`] for a label over [`LABEL_MAX`] bytes,
    /// [`HeaderError::LabelContainsNul`] for a label with a NUL byte.
    pub fn new(total_pages: u64, uuid: [u8; 16], label: &str) -> Result<Self, HeaderError> {
        if total_pages < MIN_SWAP_PAGES {
            return Err(HeaderError::TooSmall { pages: total_pages });
        }
        if total_pages > MAX_SWAP_PAGES {
            return Err(HeaderError::TooLarge { pages: total_pages });
        }
        let last_page = u32::try_from(total_pages - 1)
            .map_err(|_| HeaderError::TooLarge { pages: total_pages })?;
        if label.len() > LABEL_MAX {
            return Err(HeaderError::LabelTooLong { len: label.len() });
        }
        if label.contains('\0') {
            return Err(HeaderError::LabelContainsNul);
        }
        Ok(SwapHeader {
            version: 1,
            last_page,
            uuid,
            label: label.to_owned(),
            badpages: Vec::new(),
            foreign_endian: false,
        })
    }

    /// Number of slots the area spans, header slot 0 included:
    /// `last_page + 1`. Usable slots are `1..nr_slots()`.
    pub fn nr_slots(&self) -> u64 {
        u64::from(self.last_page) + 1
    }

    /// The header as page 0: exactly [`PAGE_SIZE`] bytes, boot bits and
    /// padding zero, integers byte-swapped if `foreign_endian`.
    ///
    /// # Panics
    ///
    /// If `label` is longer than 16 bytes or contains a NUL, or `badpages`
    /// has more than [`MAX_BADPAGES`] entries: the fields were edited into
    /// something no header can hold.
    pub fn encode(&self) -> Vec<u8> {
        assert!(
            self.label.len() <= VOLUME_NAME_LEN && !self.label.contains('\0'),
            "swap label {:?} does not fit the 16-byte volume_name field",
            self.label
        );
        assert!(
            self.badpages.len() <= MAX_BADPAGES,
            "{} bad pages do not fit in the header (max {MAX_BADPAGES})",
            self.badpages.len()
        );
        let order = ByteOrder::from_foreign(self.foreign_endian);
        let mut page = vec![0u8; PAGE_SIZE];
        // Cannot truncate: badpages.len() <= MAX_BADPAGES was asserted above.
        let nr_badpages = self.badpages.len() as u32;
        order.put(&mut page, OFF_VERSION, self.version);
        order.put(&mut page, OFF_LAST_PAGE, self.last_page);
        order.put(&mut page, OFF_NR_BADPAGES, nr_badpages);
        page[OFF_UUID..OFF_UUID + 16].copy_from_slice(&self.uuid);
        let label = self.label.as_bytes();
        page[OFF_VOLUME_NAME..OFF_VOLUME_NAME + label.len()].copy_from_slice(label);
        for (i, &bad) in self.badpages.iter().enumerate() {
            order.put(&mut page, OFF_BADPAGES + 4 * i, bad);
        }
        page[OFF_MAGIC..].copy_from_slice(SWAP_MAGIC);
        page
    }

    /// Decode and validate page 0. Only the first [`PAGE_SIZE`] bytes of
    /// `page` are examined. Errors name the source "swap header"; use
    /// [`SwapHeader::decode_named`] when the page came from a file.
    ///
    /// # Errors
    ///
    /// See [`SwapHeader::decode_named`].
    #[doc(alias = "read_swap_header")]
    pub fn decode(page: &[u8]) -> Result<Self, HeaderError> {
        Self::decode_named(page, Path::new(UNNAMED))
    }

    /// [`SwapHeader::decode`], with errors naming `path` as the page's source.
    ///
    /// Accepts what the kernel's `read_swap_header` accepts: the
    /// `SWAPSPACE2` signature, version 1 in either byte order, at least one
    /// usable slot, at most [`MAX_BADPAGES`] bad pages, each in
    /// `1..=last_page`. It does not insist on [`MIN_SWAP_PAGES`] (only
    /// `mkswap` does). A label that is not UTF-8 is decoded lossily, with a
    /// warning, so that it cannot make a usable swap area unreadable.
    ///
    /// # Errors
    ///
    /// [`HeaderError::Truncated`], [`HeaderError::BadSignature`],
    /// [`HeaderError::UnsupportedVersion`], [`HeaderError::NoUsableSlots`],
    /// [`HeaderError::TooManyBadPages`], [`HeaderError::BadPageOutOfRange`].
    pub fn decode_named(page: &[u8], path: &Path) -> Result<Self, HeaderError> {
        let Some(page) = page.get(..PAGE_SIZE) else {
            return Err(HeaderError::Truncated {
                path: path.to_path_buf(),
                len: page.len() as u64,
            });
        };
        let magic = &page[OFF_MAGIC..];
        if magic != SWAP_MAGIC {
            return Err(HeaderError::BadSignature {
                path: path.to_path_buf(),
                found: magic.escape_ascii().to_string(),
            });
        }
        let version = ByteOrder::Native.get(page, OFF_VERSION);
        let order = if version == 1 {
            ByteOrder::Native
        } else if version.swap_bytes() == 1 {
            ByteOrder::Swapped
        } else {
            return Err(HeaderError::UnsupportedVersion {
                path: path.to_path_buf(),
                version,
            });
        };
        let last_page = order.get(page, OFF_LAST_PAGE);
        let nr_badpages = order.get(page, OFF_NR_BADPAGES);
        let no_usable = || HeaderError::NoUsableSlots {
            path: path.to_path_buf(),
            last_page,
            nr_badpages,
        };
        if last_page == 0 {
            return Err(no_usable());
        }
        let count = usize::try_from(nr_badpages).unwrap_or(usize::MAX);
        if count > MAX_BADPAGES {
            return Err(HeaderError::TooManyBadPages {
                path: path.to_path_buf(),
                count: nr_badpages,
            });
        }
        let badpages: Vec<u32> = (0..count)
            .map(|i| order.get(page, OFF_BADPAGES + 4 * i))
            .collect();
        if let Some(&bad) = badpages.iter().find(|&&p| p == 0 || p > last_page) {
            return Err(HeaderError::BadPageOutOfRange {
                path: path.to_path_buf(),
                page: bad,
                last_page,
            });
        }
        // Count distinct bad slots: a list naming every slot leaves nothing
        // to swap to, even if it names some twice.
        let mut distinct = badpages.clone();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() as u64 >= u64::from(last_page) {
            return Err(no_usable());
        }
        let mut uuid = [0u8; 16];
        uuid.copy_from_slice(&page[OFF_UUID..OFF_UUID + 16]);
        let label = decode_label(
            &page[OFF_VOLUME_NAME..OFF_VOLUME_NAME + VOLUME_NAME_LEN],
            path,
        );
        Ok(SwapHeader {
            version: 1,
            last_page,
            uuid,
            label,
            badpages,
            foreign_endian: order == ByteOrder::Swapped,
        })
    }

    /// The UUID in canonical form: lowercase `8-4-4-4-12` hex, as `blkid`
    /// prints it.
    pub fn uuid_string(&self) -> String {
        Uuid::from_bytes(self.uuid).hyphenated().to_string()
    }
}

/// The label bytes up to the first NUL. Non-UTF-8 bytes become U+FFFD,
/// trimmed back to 16 bytes so the result can always be encoded again.
fn decode_label(field: &[u8], path: &Path) -> String {
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    let raw = &field[..end];
    match std::str::from_utf8(raw) {
        Ok(label) => label.to_owned(),
        Err(_) => {
            let mut label = String::from_utf8_lossy(raw).into_owned();
            while label.len() > VOLUME_NAME_LEN {
                label.pop();
            }
            tracing::warn!(path = %path.display(), raw = %raw.escape_ascii(), %label,
                "swap label is not UTF-8; decoded lossily");
            label
        }
    }
}

/// Byte order of a header's integers relative to this host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ByteOrder {
    Native,
    Swapped,
}

impl ByteOrder {
    fn from_foreign(foreign: bool) -> Self {
        if foreign {
            ByteOrder::Swapped
        } else {
            ByteOrder::Native
        }
    }

    /// The u32 at `off`; `off + 4 <= page.len()` is the caller's duty.
    fn get(self, page: &[u8], off: usize) -> u32 {
        let mut word = [0u8; 4];
        word.copy_from_slice(&page[off..off + 4]);
        let native = u32::from_ne_bytes(word);
        match self {
            ByteOrder::Native => native,
            ByteOrder::Swapped => native.swap_bytes(),
        }
    }

    fn put(self, page: &mut [u8], off: usize, value: u32) {
        let value = match self {
            ByteOrder::Native => value,
            ByteOrder::Swapped => value.swap_bytes(),
        };
        page[off..off + 4].copy_from_slice(&value.to_ne_bytes());
    }
}

/// Create (or overwrite) the swap image `path`: `size_bytes` rounded down to
/// whole pages, its blocks allocated (`posix_fallocate`; refused up front when
/// the filesystem cannot hold it), mode 0600 if the
/// file is new, the header fsynced and the file's directory entry too.
/// An existing file is truncated first, so no old data survives.
/// A block device keeps its size: only its first page is written, and
/// `size_bytes` may not exceed the device ([`device_bytes`] tells it).
/// `label` "" means no label; `uuid` `None` means a random version-4 UUID.
///
/// All arguments are checked before the file is touched.
///
/// # Errors
///
/// The [`SwapHeader::new`] errors, [`HeaderError::DeviceTooSmall`], and
/// [`HeaderError::Io`] naming `path`.
pub fn mkswap(
    path: &Path,
    size_bytes: u64,
    label: &str,
    uuid: Option<[u8; 16]>,
) -> Result<SwapHeader, HeaderError> {
    let total_pages = size_bytes / PAGE_SIZE as u64;
    let uuid = uuid.unwrap_or_else(|| *Uuid::new_v4().as_bytes());
    let header = SwapHeader::new(total_pages, uuid, label)?;
    if let Some(have_bytes) = device_bytes(path)? {
        // A block device has its size: the area may use less of it, as
        // mkswap's size argument allows, but it cannot be grown.
        if size_bytes > have_bytes {
            return Err(HeaderError::DeviceTooSmall {
                path: path.to_owned(),
                want_bytes: size_bytes,
                have_bytes,
            });
        }
        let mut dev = OpenOptions::new()
            .write(true)
            .open(path)
            .map_err(HeaderError::io(path, "cannot open block device"))?;
        dev.write_all(&header.encode())
            .map_err(HeaderError::io(path, "cannot write swap header"))?;
        dev.sync_all()
            .map_err(HeaderError::io(path, "cannot fsync block device"))?;
        tracing::debug!(path = %path.display(), total_pages, uuid = %header.uuid_string(),
            label = %header.label, "mkswap on a block device");
        return Ok(header);
    }
    let regular = !path.exists() || path.metadata().is_ok_and(|m| m.is_file());
    if regular {
        check_space(path, total_pages * PAGE_SIZE as u64)?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .map_err(HeaderError::io(path, "cannot create swap image"))?;
    file.set_len(total_pages * PAGE_SIZE as u64)
        .map_err(HeaderError::io(path, "cannot set the size of swap image"))?;
    if regular {
        if let Err(e) = swapvm_io::preallocate(&file, total_pages * PAGE_SIZE as u64) {
            // Nothing half-made is left behind.
            let _ = std::fs::remove_file(path);
            return Err(HeaderError::io(
                path,
                "cannot allocate the blocks of swap image",
            )(e));
        }
    }
    file.write_all(&header.encode())
        .map_err(HeaderError::io(path, "cannot write swap header"))?;
    file.sync_all()
        .map_err(HeaderError::io(path, "cannot fsync swap image"))?;
    sync_parent_dir(path)?;
    tracing::debug!(path = %path.display(), total_pages, uuid = %header.uuid_string(),
        label = %header.label, "mkswap");
    Ok(header)
}

/// The size in bytes of `path` when it is a block device, `None` for
/// anything else (a missing path included).
///
/// # Errors
/// [`HeaderError::Io`]: a block device that cannot be opened or sized.
pub fn device_bytes(path: &Path) -> Result<Option<u64>, HeaderError> {
    use std::os::unix::fs::FileTypeExt;
    let Ok(meta) = path.metadata() else {
        return Ok(None);
    };
    if !meta.file_type().is_block_device() {
        return Ok(None);
    }
    let dev = File::open(path).map_err(HeaderError::io(path, "cannot open block device"))?;
    swapvm_io::blockdev::device_size_bytes(&dev)
        .map(Some)
        .map_err(HeaderError::io(
            path,
            "cannot read the size of block device",
        ))
}

/// Refuses an image of `bytes` that the filesystem holding `path` cannot
/// hold (images are preallocated, not sparse).
fn check_space(path: &Path, bytes: u64) -> Result<(), HeaderError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let Ok(free) = swapvm_io::free_bytes(dir) else {
        return Ok(()); // Let the allocation itself say why.
    };
    // An existing image of that path is replaced: its blocks count as free.
    let old = path.metadata().map_or(0, |m| m.blocks() * 512);
    if bytes > free.saturating_add(old) {
        return Err(HeaderError::NoSpace {
            path: path.to_owned(),
            need_mib: bytes >> 20,
            free_mib: free.saturating_add(old) >> 20,
        });
    }
    Ok(())
}

/// Fsync the directory holding `path`, so a newly created image's name is
/// as durable as its header.
fn sync_parent_dir(path: &Path) -> Result<(), HeaderError> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(HeaderError::io(
            path,
            "cannot fsync the directory of swap image",
        ))
}

/// What filesystem `file` holds, if its first bytes show one (ext2/3/4,
/// XFS, btrfs), for a refusal that says what would be lost.
fn filesystem_on(file: &File) -> Option<String> {
    use swapvm_io::signature::{probe_bytes, PROBE_BYTES};
    let mut head = vec![0u8; PROBE_BYTES];
    let mut got = 0;
    while got < PROBE_BYTES {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    probe_bytes(&head[..got])
        .filter(|s| !s.is_swap())
        .map(|s| s.describe())
}

/// Read and validate the header of the existing swap image `path` (a
/// regular file or a block device), and check that the area it describes
/// fits inside the file.
///
/// # Errors
///
/// [`HeaderError::Io`] if the file cannot be opened or read,
/// [`HeaderError::Truncated`] if it is shorter than a page,
/// [`HeaderError::LastPageBeyondFile`] if `last_page` is not inside it, and
/// the [`SwapHeader::decode_named`] errors; all name `path`.
pub fn read_header(path: &Path) -> Result<SwapHeader, HeaderError> {
    let mut file = File::open(path).map_err(HeaderError::io(path, "cannot open swap image"))?;
    // Seeking to the end measures block devices too, where metadata says 0.
    let len = file
        .seek(SeekFrom::End(0))
        .map_err(HeaderError::io(path, "cannot find the size of swap image"))?;
    if len < PAGE_SIZE as u64 {
        return Err(HeaderError::Truncated {
            path: path.to_path_buf(),
            len,
        });
    }
    let mut page = vec![0u8; PAGE_SIZE];
    file.read_exact_at(&mut page, 0).map_err(HeaderError::io(
        path,
        "cannot read the header page of swap image",
    ))?;
    let header = match SwapHeader::decode_named(&page, path) {
        Err(e @ HeaderError::BadSignature { .. }) => {
            return Err(match filesystem_on(&file) {
                Some(what) => HeaderError::Filesystem {
                    path: path.to_path_buf(),
                    what,
                },
                None => e,
            })
        }
        r => r?,
    };
    let file_pages = len / PAGE_SIZE as u64;
    if header.nr_slots() > file_pages {
        return Err(HeaderError::LastPageBeyondFile {
            path: path.to_path_buf(),
            last_page: header.last_page,
            file_pages,
        });
    }
    tracing::debug!(path = %path.display(), last_page = header.last_page, uuid = %header.uuid_string(),
        label = %header.label, foreign_endian = header.foreign_endian, "read swap header");
    Ok(header)
}

/// Parse a UUID given on a command line (`--uuid`). The canonical
/// `8-4-4-4-12` form is expected; either case, the 32-digit simple form,
/// braces and a `urn:uuid:` prefix are also accepted.
///
/// # Errors
///
/// [`HeaderError::BadUuid`] with the parser's complaint as its source.
pub fn parse_uuid(s: &str) -> Result<[u8; 16], HeaderError> {
    Uuid::try_parse(s)
        .map(|uuid| *uuid.as_bytes())
        .map_err(|source| HeaderError::BadUuid {
            input: s.to_owned(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mkswap_preallocates_and_refuses_an_image_the_disk_cannot_hold() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let img = dir.path().join("a.img");
        mkswap(&img, 8 << 20, "", None).unwrap();
        let m = img.metadata().unwrap();
        assert!(m.blocks() * 512 >= 8 << 20, "sparse: {} blocks", m.blocks());
        // 8 TiB: more than the test disk holds; nothing is left behind.
        let big = dir.path().join("big.img");
        let e = mkswap(&big, 1 << 43, "", None).unwrap_err();
        let msg = e.to_string();
        assert!(
            msg.contains("big.img") && msg.contains("does not fit"),
            "{msg}"
        );
        assert!(!big.exists());
    }

    /// The offsets match a header util-linux `mkswap -L abcdefghijklmno
    /// -U 0123abcd-0000-4000-8000-0123456789ab` wrote on an 8 MiB file
    /// (dumped with xxd on a little-endian host).
    #[test]
    fn encode_matches_util_linux_layout() {
        let uuid = parse_uuid("0123abcd-0000-4000-8000-0123456789ab").unwrap();
        let header = SwapHeader::new(2048, uuid, "abcdefghijklmno").unwrap();
        let page = header.encode();
        assert_eq!(page.len(), PAGE_SIZE);
        assert!(page[..OFF_VERSION].iter().all(|&b| b == 0));
        let words: Vec<u8> = [1u32, 2047, 0]
            .iter()
            .flat_map(|w| w.to_ne_bytes())
            .collect();
        assert_eq!(page[1024..1036], words[..]);
        if cfg!(target_endian = "little") {
            assert_eq!(page[1024..1036], [1, 0, 0, 0, 0xff, 7, 0, 0, 0, 0, 0, 0]);
        }
        assert_eq!(page[1036..1052], uuid);
        assert_eq!(&page[1052..1068], b"abcdefghijklmno\0");
        assert!(page[1068..OFF_MAGIC].iter().all(|&b| b == 0));
        assert_eq!(&page[4086..], b"SWAPSPACE2");
    }

    #[test]
    fn foreign_endian_swaps_every_word() {
        let mut header = SwapHeader::new(100, [7; 16], "x").unwrap();
        header.badpages = vec![3, 99];
        let native = header.encode();
        header.foreign_endian = true;
        let foreign = header.encode();
        for off in [
            OFF_VERSION,
            OFF_LAST_PAGE,
            OFF_NR_BADPAGES,
            OFF_BADPAGES,
            OFF_BADPAGES + 4,
        ] {
            let mut swapped = native[off..off + 4].to_vec();
            swapped.reverse();
            assert_eq!(foreign[off..off + 4], swapped[..], "word at {off}");
        }
        assert_eq!(SwapHeader::decode(&foreign).unwrap(), header);
    }

    #[test]
    fn non_utf8_label_decodes_lossily_and_reencodes() {
        let mut page = SwapHeader::new(100, [0; 16], "").unwrap().encode();
        page[OFF_VOLUME_NAME..OFF_VOLUME_NAME + 16].copy_from_slice(&[0xff; 16]);
        let header = SwapHeader::decode(&page).unwrap();
        assert!(header.label.len() <= VOLUME_NAME_LEN);
        assert!(header.label.starts_with('\u{fffd}'));
        assert_eq!(SwapHeader::decode(&header.encode()).unwrap(), header);
    }
}
