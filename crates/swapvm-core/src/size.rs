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

/// The name of a field unit for messages (`MiB`, `KiB`, bytes).
fn unit_name(unit_bytes: u64) -> String {
    match unit_bytes {
        1 => "bytes".into(),
        1024 => "KiB".into(),
        0x10_0000 => "MiB".into(),
        0x4000_0000 => "GiB".into(),
        n => format!("units of {n} bytes"),
    }
}

/// Serde `deserialize_with` helpers for size fields kept in a unit of
/// `UNIT` bytes (`ram_mib`: `UNIT = 1 << 20`), named `field` in errors: a field takes the integer
/// it always took, in its own unit, or a string with units (`"128MiB"`,
/// `"1G"`, `"64k"`) that [`parse_size_in`] converts; a string that is not
/// a whole number of the unit, or has a bad unit, is an error, which the
/// config loader reports with the file, line and field.
///
/// Serde's `deserialize_with` takes a function of the deserialiser alone,
/// so a config names each field in a one-line wrapper:
///
/// ```ignore
/// fn de_ram_mib<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
///     crate::size::de::size_in::<_, _, { 1 << 20 }>(d, "machine.ram_mib")
/// }
/// ```
pub mod de {
    use serde::de::{DeserializeSeed, Deserializer, Error, SeqAccess, Visitor};
    use std::fmt;
    use std::marker::PhantomData;

    /// One size in the unit `UNIT`, as an integer of type `T`, of the
    /// field named `.0`.
    struct SizeIn<T, const UNIT: u64>(&'static str, PhantomData<T>);

    impl<'de, T: TryFrom<u64>, const UNIT: u64> DeserializeSeed<'de> for SizeIn<T, UNIT> {
        type Value = T;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<T, D::Error> {
            struct V<T, const UNIT: u64>(&'static str, PhantomData<T>);
            impl<T: TryFrom<u64>, const UNIT: u64> Visitor<'_> for V<T, UNIT> {
                type Value = T;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    write!(
                        f,
                        "{}: a size, an integer in {} or a string with a unit (\"128MiB\", \"1G\")",
                        self.0,
                        super::unit_name(UNIT)
                    )
                }
                fn visit_u64<E: Error>(self, n: u64) -> Result<Self::Value, E> {
                    T::try_from(n)
                        .map_err(|_| E::custom(format!("{}: {n} is out of range", self.0)))
                }
                fn visit_i64<E: Error>(self, n: i64) -> Result<Self::Value, E> {
                    let n = u64::try_from(n).map_err(|_| {
                        E::custom(format!("{}: {n} is negative; a size is 0 or more", self.0))
                    })?;
                    self.visit_u64(n)
                }
                fn visit_str<E: Error>(self, s: &str) -> Result<Self::Value, E> {
                    let n = super::parse_size_in(s, UNIT, &super::unit_name(UNIT))
                        .map_err(|e| E::custom(format!("{}: {e}", self.0)))?;
                    self.visit_u64(n)
                }
            }
            d.deserialize_any(V::<T, UNIT>(self.0, PhantomData))
        }
    }

    /// `Option<size>`, by the seed.
    struct OptSizeIn<T, const UNIT: u64>(&'static str, PhantomData<T>);

    impl<'de, T: TryFrom<u64>, const UNIT: u64> Visitor<'de> for OptSizeIn<T, UNIT> {
        type Value = Option<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{}: a size", self.0)
        }
        fn visit_none<E: Error>(self) -> Result<Option<T>, E> {
            Ok(None)
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<T>, D::Error> {
            SizeIn::<T, UNIT>(self.0, PhantomData)
                .deserialize(d)
                .map(Some)
        }
    }

    /// A list of sizes, by the seed.
    struct VecSizeIn<T, const UNIT: u64>(&'static str, PhantomData<T>);

    impl<'de, T: TryFrom<u64>, const UNIT: u64> Visitor<'de> for VecSizeIn<T, UNIT> {
        type Value = Vec<T>;
        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            write!(f, "{}: a list of sizes", self.0)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Vec<T>, A::Error> {
            let mut v = Vec::new();
            while let Some(x) = seq.next_element_seed(SizeIn::<T, UNIT>(self.0, PhantomData))? {
                v.push(x);
            }
            Ok(v)
        }
    }

    /// A size field of type `T` (`u64`, `u32`) in units of `UNIT` bytes.
    ///
    /// # Errors
    /// The deserialiser's error for a value that is not a size, has a bad
    /// unit, is not a whole number of `UNIT`, or does not fit `T`.
    pub fn size_in<'de, D: Deserializer<'de>, T: TryFrom<u64>, const UNIT: u64>(
        d: D,
        field: &'static str,
    ) -> Result<T, D::Error> {
        SizeIn::<T, UNIT>(field, PhantomData).deserialize(d)
    }

    /// A size kept as a fraction of MiB (`f64`, a workload's `size_mib`):
    /// a number is MiB as it always was, a string with a unit is converted
    /// (`"512K"` is 0.5).
    struct MibF64(&'static str);

    impl<'de> DeserializeSeed<'de> for MibF64 {
        type Value = f64;
        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<f64, D::Error> {
            struct V(&'static str);
            impl Visitor<'_> for V {
                type Value = f64;
                fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                    write!(
                        f,
                        "{}: a size, a number of MiB or a string with a unit (\"512K\", \"1G\")",
                        self.0
                    )
                }
                fn visit_f64<E: Error>(self, x: f64) -> Result<f64, E> {
                    Ok(x)
                }
                fn visit_i64<E: Error>(self, n: i64) -> Result<f64, E> {
                    Ok(n as f64)
                }
                fn visit_u64<E: Error>(self, n: u64) -> Result<f64, E> {
                    Ok(n as f64)
                }
                fn visit_str<E: Error>(self, s: &str) -> Result<f64, E> {
                    if let Ok(x) = s.trim().parse::<f64>() {
                        return Ok(x);
                    }
                    super::parse_size(s)
                        .map(|b| b as f64 / (1u64 << 20) as f64)
                        .map_err(|e| E::custom(format!("{}: {e}", self.0)))
                }
            }
            d.deserialize_any(V(self.0))
        }
    }

    /// A size field in MiB as `f64`: a number, or a string with a unit.
    ///
    /// # Errors
    /// The deserialiser's error for a value that is not a size.
    pub fn mib_f64<'de, D: Deserializer<'de>>(d: D, field: &'static str) -> Result<f64, D::Error> {
        MibF64(field).deserialize(d)
    }

    /// [`mib_f64`] for an optional field.
    ///
    /// # Errors
    /// As [`mib_f64`].
    pub fn opt_mib_f64<'de, D: Deserializer<'de>>(
        d: D,
        field: &'static str,
    ) -> Result<Option<f64>, D::Error> {
        struct O(&'static str);
        impl<'de> Visitor<'de> for O {
            type Value = Option<f64>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "{}: a size", self.0)
            }
            fn visit_none<E: Error>(self) -> Result<Option<f64>, E> {
                Ok(None)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
                MibF64(self.0).deserialize(d).map(Some)
            }
        }
        d.deserialize_option(O(field))
    }

    /// [`size_in`] for an optional field (with `#[serde(default)]`).
    ///
    /// # Errors
    /// As [`size_in`].
    pub fn opt_size_in<'de, D: Deserializer<'de>, T: TryFrom<u64>, const UNIT: u64>(
        d: D,
        field: &'static str,
    ) -> Result<Option<T>, D::Error> {
        d.deserialize_option(OptSizeIn::<T, UNIT>(field, PhantomData))
    }

    /// [`size_in`] for a list of sizes.
    ///
    /// # Errors
    /// As [`size_in`], for the first bad element.
    pub fn vec_size_in<'de, D: Deserializer<'de>, T: TryFrom<u64>, const UNIT: u64>(
        d: D,
        field: &'static str,
    ) -> Result<Vec<T>, D::Error> {
        d.deserialize_seq(VecSizeIn::<T, UNIT>(field, PhantomData))
    }
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
