//! Shared helpers of the text formats (lackey, CSV).

use super::{Defect, ACCESS_SIZE_MAX};

/// Parses hex digits (no prefix) into a u64.
pub(crate) fn hex(s: &str) -> Result<u64, Defect> {
    if s.is_empty() || s.len() > 16 || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Defect::BadHex(s.to_owned()));
    }
    u64::from_str_radix(s, 16).map_err(|_| Defect::BadHex(s.to_owned()))
}

/// Parses a decimal u64 for `field`.
pub(crate) fn dec(s: &str, field: &'static str) -> Result<u64, Defect> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Defect::BadNumber(s.to_owned(), field));
    }
    s.parse().map_err(|_| Defect::OutOfRange {
        field,
        value: s.to_owned(),
        allowed: "0..2^64",
    })
}

/// Checks an access size and that the access does not run past the top
/// of the address space; a size of 0 is read as 1.
pub(crate) fn check_access(addr: u64, size: u64) -> Result<u32, Defect> {
    let size = size.max(1);
    if size > u64::from(ACCESS_SIZE_MAX) {
        return Err(Defect::OutOfRange {
            field: "size",
            value: size.to_string(),
            allowed: "0..=1048576 bytes",
        });
    }
    if addr.checked_add(size - 1).is_none() {
        return Err(Defect::OutOfRange {
            field: "address",
            value: format!("{addr:#x}"),
            allowed: "address + size - 1 below 2^64",
        });
    }
    Ok(size as u32)
}
