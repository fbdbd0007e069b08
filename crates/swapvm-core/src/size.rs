//! Sizes with units, as configs, flags and cgroup interface files write
//! them.
//!
//! Two grammars, one owner: [`parse_size`] for swapvm's own config fields
//! and flags (`"128MiB"`, `"1G"`, `"4096"`; binary multiples, since memory
//! is counted in pages), and [`memparse`] for the cgroup interface files,
//! which take exactly what the kernel's `memparse` takes (digits and an
//! optional single `K`, `M`, `G`, `T`, `P` or `E`, any case; no fraction,
//! no space) plus `"max"` where the file allows it.

/// A size in bytes from `s`: an integer with an optional binary unit
/// (`K`/`KiB`/`KB`, `M`..., `G`..., `T`...; `MB` is read as MiB as `free`
/// and the kernel do). Decimal fractions are accepted where they come out
/// whole in bytes (`"1.5G"`).
///
/// # Errors
/// A message saying what was wrong, for the caller to name the field.
pub fn parse_size(s: &str) -> Result<u64, String> {
    parse_size::Config::new()
        .with_binary()
        .parse_size(s.trim())
        .map_err(|e| {
            format!("{s:?} is not a size ({e}); write e.g. \"512MiB\", \"2G\" or a number of bytes")
        })
}

/// A size field in a unit (`ram_mib` in MiB): a bare integer is taken in
/// that unit, a string with a unit is converted, rounding down to whole
/// units is refused.
///
/// # Errors
/// A message for the caller to name the field.
pub fn parse_size_in(s: &str, unit_bytes: u64, unit: &str) -> Result<u64, String> {
    if let Ok(n) = s.trim().parse::<u64>() {
        return Ok(n);
    }
    let bytes = parse_size(s)?;
    if bytes % unit_bytes != 0 {
        return Err(format!("{s:?} is not a whole number of {unit}"));
    }
    Ok(bytes / unit_bytes)
}

/// A cgroup size value: `None` for `"max"` (no limit), else bytes, by the
/// kernel's `memparse` grammar.
///
/// # Errors
/// A message naming what the kernel would reject (it returns `-EINVAL`).
pub fn memparse(s: &str, allow_max: bool) -> Result<Option<u64>, String> {
    if allow_max && s == "max" {
        return Ok(None);
    }
    let digits = s.trim_end_matches(|c: char| "kKmMgGtTpPeE".contains(c));
    let suffix_len = s.len() - digits.len();
    if digits.is_empty() || suffix_len > 1 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        let what = if allow_max { " or \"max\"" } else { "" };
        return Err(format!(
            "{s:?} is not a size the kernel accepts: digits with an optional K, M, G, T, P or E{what}"
        ));
    }
    parse_size::Config::new()
        .with_binary()
        .parse_size(s)
        .map(Some)
        .map_err(|e| format!("{s:?} is out of range ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_sizes_take_binary_units() {
        assert_eq!(parse_size("128MiB"), Ok(128 << 20));
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("lots").is_err());
        assert_eq!(parse_size_in("128", 1 << 20, "MiB"), Ok(128));
        assert_eq!(parse_size_in("1G", 1 << 20, "MiB"), Ok(1024));
        assert!(parse_size_in("1000KiB", 1 << 20, "MiB").is_err());
    }

    #[test]
    fn memparse_is_the_kernels_grammar() {
        assert_eq!(memparse("512M", true), Ok(Some(512 << 20)));
        assert_eq!(memparse("64k", true), Ok(Some(64 << 10)));
        assert_eq!(memparse("4096", false), Ok(Some(4096)));
        assert_eq!(memparse("max", true), Ok(None));
        for bad in ["max", "1.5G", "512MiB", "", "M", "12 M", "-1"] {
            assert!(memparse(bad, bad != "max").is_err(), "{bad:?} accepted");
        }
        assert!(memparse("max", false).is_err());
    }
}
