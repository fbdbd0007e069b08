//! Integration tests of the swap header against the real util-linux tools:
//! images made by `swapvm_swap::header::mkswap` must be recognised by
//! `blkid` and `swaplabel`, and images made by util-linux `mkswap` must be
//! accepted by `read_header`. The tools are required, not optional: a
//! missing tool fails the test with a request to install util-linux.

// Tests may unwrap; clippy's allow-unwrap-in-tests does not reach the
// helpers and proptest bodies of an integration-test crate.
#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

use proptest::prelude::*;
use swapvm_swap::header::{
    mkswap, parse_uuid, read_header, HeaderError, SwapHeader, LABEL_MAX, MAX_BADPAGES,
    MAX_SWAP_PAGES, MIN_SWAP_PAGES, PAGE_SIZE, SWAP_MAGIC,
};

const UUID: &str = "4f1c2a9e-7b3d-4e5f-9a8b-0c1d2e3f4a5b";
const MIB: u64 = 1024 * 1024;

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// The path of a util-linux tool; panics (fails the test) if it is missing.
fn util_linux(tool: &str) -> PathBuf {
    for dir in ["/usr/sbin", "/sbin", "/usr/bin", "/bin"] {
        let path = Path::new(dir).join(tool);
        if path.is_file() {
            return path;
        }
    }
    panic!(
        "{tool} not found in /usr/sbin, /sbin, /usr/bin or /bin: these tests check swapvm's \
         swap header against the real tool; install util-linux (e.g. `apt-get install util-linux`)"
    );
}

/// Run a util-linux tool, require success, return its stdout.
fn run(tool: &str, args: &[&str]) -> String {
    let path = util_linux(tool);
    let out = Command::new(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", path.display()));
    assert!(
        out.status.success(),
        "{} {args:?} failed with {}\nstdout: {}\nstderr: {}",
        path.display(),
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("tool output is UTF-8")
}

/// `blkid -p -o export FILE` as a map of its KEY=VALUE lines.
fn blkid(path: &Path) -> BTreeMap<String, String> {
    let out = run("blkid", &["-p", "-o", "export", path_str(path)]);
    out.lines()
        .filter_map(|line| line.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
}

/// `swaplabel FILE` as (label, uuid); a missing line gives "".
fn swaplabel(path: &Path) -> (String, String) {
    let out = run("swaplabel", &[path_str(path)]);
    let field = |key: &str| {
        out.lines()
            .find_map(|l| l.strip_prefix(key))
            .map(|v| v.trim().to_owned())
            .unwrap_or_default()
    };
    (field("LABEL:"), field("UUID:"))
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("temp paths are UTF-8")
}

/// A zero-filled (sparse) file of `len` bytes.
fn zero_file(path: &Path, len: u64) {
    fs::File::create(path).unwrap().set_len(len).unwrap();
}

/// Run util-linux `mkswap` on a fresh zero file of `len` bytes.
fn util_linux_mkswap(path: &Path, len: u64, extra: &[&str]) {
    zero_file(path, len);
    let mut args = extra.to_vec();
    args.push(path_str(path));
    run("mkswap", &args);
}

/// Assert that `err`'s message names `path`.
fn assert_names(err: &HeaderError, path: &Path) {
    let msg = err.to_string();
    assert!(
        msg.contains(path_str(path)),
        "error message {msg:?} does not name {}",
        path.display()
    );
}

fn patch(path: &Path, offset: u64, bytes: &[u8]) {
    let file = fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, offset).unwrap();
}

// ---------------------------------------------------------------------------
// swapvm mkswap, read by util-linux
// ---------------------------------------------------------------------------

#[test]
fn mkswap_is_recognised_by_blkid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    let header = mkswap(
        &path,
        4 * MIB,
        "swapvm-test",
        Some(parse_uuid(UUID).unwrap()),
    )
    .unwrap();
    let tags = blkid(&path);
    assert_eq!(
        tags.get("TYPE").map(String::as_str),
        Some("swap"),
        "{tags:?}"
    );
    assert_eq!(
        tags.get("LABEL").map(String::as_str),
        Some("swapvm-test"),
        "{tags:?}"
    );
    assert_eq!(tags.get("UUID").map(String::as_str), Some(UUID), "{tags:?}");
    assert_eq!(
        tags.get("VERSION").map(String::as_str),
        Some("1"),
        "{tags:?}"
    );
    assert_eq!(header.uuid_string(), UUID);
    assert_eq!(header.last_page, 1023);
}

#[test]
fn mkswap_is_recognised_by_swaplabel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    mkswap(&path, MIB, "swapvm-test", Some(parse_uuid(UUID).unwrap())).unwrap();
    assert_eq!(
        swaplabel(&path),
        ("swapvm-test".to_owned(), UUID.to_owned())
    );
}

#[test]
fn mkswap_longest_label_is_read_whole_by_blkid_and_swaplabel() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    let label = "L".repeat(LABEL_MAX);
    mkswap(&path, MIB, &label, Some(parse_uuid(UUID).unwrap())).unwrap();
    assert_eq!(blkid(&path).get("LABEL"), Some(&label));
    assert_eq!(swaplabel(&path).0, label);
}

#[test]
fn mkswap_without_label_or_uuid_gets_random_v4_uuid_seen_by_blkid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    let header = mkswap(&path, MIB, "", None).unwrap();
    assert_eq!(header.label, "");
    assert_eq!(uuid::Uuid::from_bytes(header.uuid).get_version_num(), 4);
    let tags = blkid(&path);
    assert_eq!(tags.get("TYPE").map(String::as_str), Some("swap"));
    assert_eq!(tags.get("LABEL"), None, "{tags:?}");
    assert_eq!(tags.get("UUID"), Some(&header.uuid_string()));
    let other = mkswap(&dir.path().join("other.img"), MIB, "", None).unwrap();
    assert_ne!(header.uuid, other.uuid, "random UUIDs repeat");
}

/// The header page is byte-for-byte what util-linux writes for the same
/// size, label and UUID.
#[test]
fn mkswap_header_page_is_identical_to_util_linux() {
    let dir = tempfile::tempdir().unwrap();
    let ours = dir.path().join("ours.img");
    let theirs = dir.path().join("theirs.img");
    mkswap(&ours, 8 * MIB, "same", Some(parse_uuid(UUID).unwrap())).unwrap();
    util_linux_mkswap(&theirs, 8 * MIB, &["-L", "same", "-U", UUID]);
    let page = |p: &Path| fs::read(p).unwrap()[..PAGE_SIZE].to_vec();
    assert_eq!(page(&ours), page(&theirs));
}

#[test]
fn swaplabel_can_relabel_a_swapvm_image() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    mkswap(&path, MIB, "before", None).unwrap();
    let new_uuid = "00112233-4455-6677-8899-aabbccddeeff";
    run(
        "swaplabel",
        &["-L", "after", "-U", new_uuid, path_str(&path)],
    );
    let header = read_header(&path).unwrap();
    assert_eq!(header.label, "after");
    assert_eq!(header.uuid_string(), new_uuid);
}

#[test]
fn foreign_endian_image_is_recognised_by_blkid_and_read_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    let mut header = SwapHeader::new(256, parse_uuid(UUID).unwrap(), "swapped").unwrap();
    header.foreign_endian = true;
    header.badpages = vec![7, 200];
    zero_file(&path, 256 * PAGE_SIZE as u64);
    patch(&path, 0, &header.encode());
    let tags = blkid(&path);
    assert_eq!(
        tags.get("TYPE").map(String::as_str),
        Some("swap"),
        "{tags:?}"
    );
    assert_eq!(tags.get("LABEL").map(String::as_str), Some("swapped"));
    assert_eq!(read_header(&path).unwrap(), header);
}

#[test]
fn mkswap_rounds_down_to_whole_pages_and_is_preallocated_and_private() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    let header = mkswap(&path, 64 * MIB + 4095, "", None).unwrap();
    let meta = fs::metadata(&path).unwrap();
    assert_eq!(meta.len(), 64 * MIB);
    assert_eq!(header.nr_slots(), 64 * MIB / PAGE_SIZE as u64);
    // Preallocated, so writes cannot fail for space and the kernel's swapon
    // (which refuses holes) accepts it.
    assert!(
        meta.blocks() * 512 >= 64 * MIB,
        "image has holes: {} bytes allocated",
        meta.blocks() * 512
    );
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
}

#[test]
fn mkswap_overwrites_an_existing_file_completely() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    fs::write(&path, vec![0xa5u8; 2 * MIB as usize]).unwrap();
    mkswap(&path, MIB, "fresh", None).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, MIB);
    assert!(
        bytes[PAGE_SIZE..].iter().all(|&b| b == 0),
        "old data survived"
    );
    assert_eq!(read_header(&path).unwrap().label, "fresh");
}

// ---------------------------------------------------------------------------
// util-linux mkswap, read by swapvm
// ---------------------------------------------------------------------------

#[test]
fn read_header_accepts_util_linux_mkswap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    util_linux_mkswap(&path, 8 * MIB, &["-L", "lbl", "-U", UUID]);
    let header = read_header(&path).unwrap();
    assert_eq!(header.version, 1);
    assert_eq!(header.label, "lbl");
    assert_eq!(header.uuid_string(), UUID);
    assert_eq!(u64::from(header.last_page), 8 * MIB / PAGE_SIZE as u64 - 1);
    assert!(header.badpages.is_empty());
    assert!(!header.foreign_endian);
}

#[test]
fn read_header_accepts_util_linux_mkswap_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    util_linux_mkswap(&path, MIB, &[]);
    let header = read_header(&path).unwrap();
    assert_eq!(header.label, "");
    assert_eq!(blkid(&path).get("UUID"), Some(&header.uuid_string()));
    assert_eq!(header.last_page, 255);
}

/// Both tools draw the line at the same place: 10 pages (40 KiB).
#[test]
fn minimum_size_agrees_with_util_linux() {
    let dir = tempfile::tempdir().unwrap();
    let min = MIN_SWAP_PAGES * PAGE_SIZE as u64;
    let theirs = dir.path().join("theirs.img");
    zero_file(&theirs, min - PAGE_SIZE as u64);
    let refused = Command::new(util_linux("mkswap"))
        .arg(&theirs)
        .output()
        .unwrap();
    assert!(
        !refused.status.success(),
        "util-linux mkswap accepted 9 pages"
    );
    util_linux_mkswap(&theirs, min, &[]);
    assert_eq!(read_header(&theirs).unwrap().nr_slots(), MIN_SWAP_PAGES);

    let ours = dir.path().join("ours.img");
    assert!(matches!(
        mkswap(&ours, min - 1, "", None),
        Err(HeaderError::TooSmall { pages }) if pages == MIN_SWAP_PAGES - 1
    ));
    assert_eq!(
        mkswap(&ours, min, "", None).unwrap().nr_slots(),
        MIN_SWAP_PAGES
    );
}

// ---------------------------------------------------------------------------
// Rejections
// ---------------------------------------------------------------------------

#[test]
fn read_header_rejects_zero_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("zero.img");
    zero_file(&path, MIB);
    let err = read_header(&path).unwrap_err();
    assert!(
        matches!(&err, HeaderError::BadSignature { path: p, .. } if p == &path),
        "{err:?}"
    );
    assert_names(&err, &path);
    assert!(err.to_string().contains("not a swap area"), "{err}");
}

#[test]
fn read_header_rejects_version_0_signature() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v0.img");
    zero_file(&path, MIB);
    patch(&path, (PAGE_SIZE - 10) as u64, b"SWAP-SPACE");
    let err = read_header(&path).unwrap_err();
    match &err {
        HeaderError::BadSignature { found, .. } => assert_eq!(found, "SWAP-SPACE"),
        other => panic!("expected BadSignature, got {other:?}"),
    }
    assert_names(&err, &path);
    assert!(err.to_string().contains("version-0"), "{err}");
}

#[test]
fn read_header_rejects_file_shorter_than_a_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("short.img");
    mkswap(&path, MIB, "", None).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(PAGE_SIZE as u64 - 1)
        .unwrap();
    let err = read_header(&path).unwrap_err();
    assert!(
        matches!(err, HeaderError::Truncated { len, .. } if len == PAGE_SIZE as u64 - 1),
        "{err:?}"
    );
    assert_names(&err, &path);

    zero_file(&path, 0);
    let err = read_header(&path).unwrap_err();
    assert!(
        matches!(err, HeaderError::Truncated { len: 0, .. }),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn read_header_rejects_last_page_beyond_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.img");
    mkswap(&path, MIB, "", None).unwrap();
    fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(MIB / 2 + 100)
        .unwrap();
    let err = read_header(&path).unwrap_err();
    assert!(
        matches!(
            err,
            HeaderError::LastPageBeyondFile {
                last_page: 255,
                file_pages: 128,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn read_header_of_missing_file_is_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("does-not-exist.img");
    let err = read_header(&path).unwrap_err();
    match &err {
        HeaderError::Io { source, .. } => {
            assert_eq!(source.kind(), std::io::ErrorKind::NotFound)
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert_names(&err, &path);
    // The cause is chained, not repeated in the message.
    let source = std::error::Error::source(&err).expect("io error is the source");
    assert!(!err.to_string().contains(&source.to_string()), "{err}");
}

#[test]
fn mkswap_into_missing_directory_is_io_error_naming_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("no-such-dir").join("swap.img");
    let err = mkswap(&path, MIB, "", None).unwrap_err();
    assert!(matches!(err, HeaderError::Io { .. }), "{err:?}");
    assert_names(&err, &path);
}

#[test]
fn read_header_rejects_unsupported_version() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v2.img");
    mkswap(&path, MIB, "", None).unwrap();
    patch(&path, 1024, &2u32.to_ne_bytes());
    let err = read_header(&path).unwrap_err();
    assert!(
        matches!(err, HeaderError::UnsupportedVersion { version: 2, .. }),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn read_header_rejects_bad_page_lists() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.img");
    mkswap(&path, MIB, "", None).unwrap();

    // One bad page, pointing past last_page (255).
    patch(&path, 1032, &1u32.to_ne_bytes());
    patch(&path, 1536, &256u32.to_ne_bytes());
    let err = read_header(&path).unwrap_err();
    assert!(
        matches!(
            err,
            HeaderError::BadPageOutOfRange {
                page: 256,
                last_page: 255,
                ..
            }
        ),
        "{err:?}"
    );
    assert_names(&err, &path);

    // Slot 0 is the header and cannot be listed as bad.
    patch(&path, 1536, &0u32.to_ne_bytes());
    let err = read_header(&path).unwrap_err();
    assert!(
        matches!(err, HeaderError::BadPageOutOfRange { page: 0, .. }),
        "{err:?}"
    );

    // In range: accepted.
    patch(&path, 1536, &255u32.to_ne_bytes());
    assert_eq!(read_header(&path).unwrap().badpages, vec![255]);

    // More entries than fit before the signature.
    let too_many = MAX_BADPAGES as u32 + 1;
    patch(&path, 1032, &too_many.to_ne_bytes());
    let err = read_header(&path).unwrap_err();
    assert!(
        matches!(err, HeaderError::TooManyBadPages { count, .. } if count == too_many),
        "{err:?}"
    );
    assert_names(&err, &path);
}

#[test]
fn decode_rejects_areas_without_usable_slots() {
    let mut header = SwapHeader::new(MIN_SWAP_PAGES, [1; 16], "").unwrap();
    header.badpages = (1..=header.last_page).collect();
    let err = SwapHeader::decode(&header.encode()).unwrap_err();
    assert!(matches!(err, HeaderError::NoUsableSlots { .. }), "{err:?}");
    // Leaving one slot good is fine, even with duplicates in the list.
    header.badpages = vec![1, 2, 2, 3];
    assert_eq!(SwapHeader::decode(&header.encode()).unwrap(), header);

    header.badpages.clear();
    header.last_page = 0;
    let err = SwapHeader::decode(&header.encode()).unwrap_err();
    assert!(
        matches!(err, HeaderError::NoUsableSlots { last_page: 0, .. }),
        "{err:?}"
    );
}

#[test]
fn decode_rejects_short_buffer() {
    let page = SwapHeader::new(100, [0; 16], "").unwrap().encode();
    let err = SwapHeader::decode(&page[..PAGE_SIZE - 1]).unwrap_err();
    assert!(matches!(err, HeaderError::Truncated { .. }), "{err:?}");
}

// ---------------------------------------------------------------------------
// Argument checks
// ---------------------------------------------------------------------------

#[test]
fn label_longer_than_allowed_is_rejected_before_touching_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    let label = "x".repeat(LABEL_MAX + 1);
    let err = mkswap(&path, MIB, &label, None).unwrap_err();
    assert!(
        matches!(err, HeaderError::LabelTooLong { len } if len == LABEL_MAX + 1),
        "{err:?}"
    );
    assert!(!path.exists(), "mkswap created the file despite the error");
    // Length is counted in bytes, not characters.
    let err = SwapHeader::new(100, [0; 16], &"é".repeat(8)).unwrap_err();
    assert!(
        matches!(err, HeaderError::LabelTooLong { len: 16 }),
        "{err:?}"
    );
    let err = SwapHeader::new(100, [0; 16], "a\0b").unwrap_err();
    assert!(matches!(err, HeaderError::LabelContainsNul), "{err:?}");
}

#[test]
fn sizes_below_minimum_are_too_small() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("swap.img");
    for bytes in [
        0,
        1,
        PAGE_SIZE as u64,
        MIN_SWAP_PAGES * PAGE_SIZE as u64 - 1,
    ] {
        let err = mkswap(&path, bytes, "", None).unwrap_err();
        assert!(
            matches!(err, HeaderError::TooSmall { pages } if pages == bytes / PAGE_SIZE as u64),
            "{bytes} bytes: {err:?}"
        );
    }
    assert!(!path.exists());
    assert!(matches!(
        SwapHeader::new(MIN_SWAP_PAGES - 1, [0; 16], ""),
        Err(HeaderError::TooSmall { .. })
    ));
}

#[test]
fn sizes_above_u32_pages_are_too_large() {
    let header = SwapHeader::new(MAX_SWAP_PAGES, [0; 16], "").unwrap();
    assert_eq!(header.last_page, u32::MAX - 1);
    assert_eq!(header.nr_slots(), MAX_SWAP_PAGES);
    let err = SwapHeader::new(MAX_SWAP_PAGES + 1, [0; 16], "").unwrap_err();
    assert!(matches!(err, HeaderError::TooLarge { .. }), "{err:?}");
    let err = SwapHeader::new(u64::MAX, [0; 16], "").unwrap_err();
    assert!(matches!(err, HeaderError::TooLarge { .. }), "{err:?}");
}

#[test]
fn parse_uuid_accepts_canonical_and_rejects_garbage() {
    let bytes = parse_uuid(UUID).unwrap();
    assert_eq!(bytes[..4], [0x4f, 0x1c, 0x2a, 0x9e]);
    assert_eq!(parse_uuid(&UUID.to_uppercase()).unwrap(), bytes);
    let mut header = SwapHeader::new(100, bytes, "").unwrap();
    assert_eq!(header.uuid_string(), UUID);
    header.uuid = [0xAB; 16];
    assert_eq!(header.uuid_string(), "abababab-abab-abab-abab-abababababab");
    for bad in [
        "",
        "not-a-uuid",
        "4f1c2a9e-7b3d-4e5f-9a8b-0c1d2e3f4a5",
        "4f1c2a9e-7b3d-4e5f-9a8b-0c1d2e3f4a5bz",
    ] {
        let err = parse_uuid(bad).unwrap_err();
        assert!(
            matches!(&err, HeaderError::BadUuid { input, .. } if input == bad),
            "{err:?}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}

// ---------------------------------------------------------------------------
// Properties
// ---------------------------------------------------------------------------

/// Random headers that `new` could produce, plus bad pages and either byte
/// order.
fn valid_header() -> impl Strategy<Value = SwapHeader> {
    (
        MIN_SWAP_PAGES..=MAX_SWAP_PAGES,
        any::<[u8; 16]>(),
        "[^\0]{0,15}",
        any::<bool>(),
        prop::collection::vec(any::<u32>(), 0..=MAX_BADPAGES),
    )
        .prop_map(|(pages, uuid, mut label, foreign, bad)| {
            // Up to 15 characters can be more than 15 bytes; trim to fit.
            while label.len() > LABEL_MAX {
                label.pop();
            }
            let mut header = SwapHeader::new(pages, uuid, &label).unwrap();
            header.foreign_endian = foreign;
            // Map into 1..=last_page, keeping at least one slot good.
            header.badpages = bad
                .into_iter()
                .map(|b| 1 + b % header.last_page)
                .filter(|&b| b != 1)
                .collect();
            header
        })
}

/// Pages with the signature and a version-1 word in place (either order),
/// everything else random, so the checks past the signature are reached.
/// Half of them also have their bad-page words mapped into range, so that
/// decoding succeeds often enough to exercise re-encoding.
fn signed_page() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::collection::vec(any::<u8>(), PAGE_SIZE),
        any::<bool>(),
        prop_oneof![0u32..4, 0u32..=MAX_BADPAGES as u32 + 2],
        0u32..4096,
        any::<bool>(),
    )
        .prop_map(|(mut page, foreign, nr_bad, last_page, in_range)| {
            let word = |w: u32| if foreign { w.swap_bytes() } else { w }.to_ne_bytes();
            page[1024..1028].copy_from_slice(&word(1));
            page[1028..1032].copy_from_slice(&word(last_page));
            page[1032..1036].copy_from_slice(&word(nr_bad));
            if in_range && last_page > 0 {
                for off in (1536..PAGE_SIZE - 12).step_by(4) {
                    let raw = u32::from_ne_bytes(page[off..off + 4].try_into().unwrap());
                    page[off..off + 4].copy_from_slice(&word(1 + raw % last_page));
                }
            }
            page[PAGE_SIZE - 10..].copy_from_slice(SWAP_MAGIC);
            page
        })
}

proptest! {
    #[test]
    fn decode_never_panics_on_arbitrary_pages(page in prop::collection::vec(any::<u8>(), 0..=PAGE_SIZE + 8)) {
        let _ = SwapHeader::decode(&page);
    }

    #[test]
    fn decode_never_panics_on_signed_pages_and_reencodes(page in signed_page()) {
        if let Ok(header) = SwapHeader::decode(&page) {
            let again = SwapHeader::decode(&header.encode()).unwrap();
            prop_assert_eq!(again, header);
        }
    }

    #[test]
    fn encode_decode_round_trips(header in valid_header()) {
        let page = header.encode();
        prop_assert_eq!(page.len(), PAGE_SIZE);
        prop_assert_eq!(SwapHeader::decode(&page).unwrap(), header);
    }
}
