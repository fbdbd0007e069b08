//! `[[cgroup]]`: the memory cgroup hierarchy and its cgroup v2 interface
//! files (Documentation/admin-guide/cgroup-v2.rst, "Memory").
//!
//! Each table names a cgroup by its path (`"/"` is the root, `"/batch"`,
//! `"/batch/job1"`) and sets interface files by their kernel names, quoted
//! (`"memory.max" = "512M"`) or as TOML dotted keys (`memory.max = "512M"`,
//! which TOML reads as nested tables; both spellings mean the same file).
//! Values are what the kernel accepts when the file is written: sizes by
//! `memparse` (`"512M"`, `"1G"`, bytes) or `"max"`, rounded down to pages
//! as `page_counter_memparse` does.
//!
//! A parent must be listed before its children (the kernel's `mkdir` needs
//! the parent to exist); the root is always there and takes no limits (it
//! has no `memory.max` file).

use super::{ensure, ConfigError};
use crate::size::memparse;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::Path;

/// The interface files a `[[cgroup]]` table may set.
pub const FILES: &[&str] = &[
    "memory.max",
    "memory.high",
    "memory.low",
    "memory.min",
    "memory.swap.max",
    "memory.oom.group",
    "memory.swappiness",
    "memory.zswap.max",
    "memory.zswap.writeback",
];

/// Most cgroups a machine may have (ids must fit the kernel's 16-bit
/// `MEM_CGROUP_ID_SHIFT`; swapvm stops far below).
pub const MAX_CGROUPS: usize = 1024;

/// One `[[cgroup]]` table as written: its path and the files it sets,
/// flattened to their dotted names.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(try_from = "toml::Table", into = "toml::Table")]
pub struct CgroupConfig {
    /// `"/"`, `"/batch"`, ...
    pub path: String,
    /// Interface file → value as written.
    pub files: BTreeMap<String, toml::Value>,
}

impl TryFrom<toml::Table> for CgroupConfig {
    type Error = String;
    fn try_from(mut t: toml::Table) -> Result<Self, String> {
        let path = match t.remove("path") {
            Some(toml::Value::String(s)) => s,
            Some(v) => return Err(format!("`path` must be a string, not {}", v.type_str())),
            None => return Err("a [[cgroup]] table needs a `path` (\"/batch\")".into()),
        };
        let mut files = BTreeMap::new();
        flatten("", t, &mut files);
        Ok(CgroupConfig { path, files })
    }
}

impl From<CgroupConfig> for toml::Table {
    fn from(c: CgroupConfig) -> Self {
        let mut t = toml::Table::new();
        t.insert("path".into(), toml::Value::String(c.path));
        t.extend(c.files);
        t
    }
}

/// `memory = { max = .. }` and `"memory.max" = ..` to the same key.
fn flatten(prefix: &str, t: toml::Table, out: &mut BTreeMap<String, toml::Value>) {
    for (k, v) in t {
        let key = if prefix.is_empty() {
            k
        } else {
            format!("{prefix}.{k}")
        };
        match v {
            toml::Value::Table(sub) => flatten(&key, sub, out),
            v => {
                out.insert(key, v);
            }
        }
    }
}

/// A cgroup's settings, checked and in pages. `None` is `max`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupLimits {
    /// The path.
    pub path: String,
    /// Index of the parent in the resolved list (`None` for the root).
    pub parent: Option<usize>,
    /// `memory.max`.
    pub max: Option<u64>,
    /// `memory.high`.
    pub high: Option<u64>,
    /// `memory.low`.
    pub low: u64,
    /// `memory.min`.
    pub min: u64,
    /// `memory.swap.max`.
    pub swap_max: Option<u64>,
    /// `memory.oom.group`.
    pub oom_group: bool,
    /// `memory.swappiness` (`None`: the parent's, up to `vm.swappiness`).
    pub swappiness: Option<u32>,
    /// `memory.zswap.max`, in pages of compressed data (`None`: `max`).
    pub zswap_max: Option<u64>,
    /// `memory.zswap.writeback`: compressed pages of this memcg may be
    /// written back to the swap device (if every ancestor allows it too).
    pub zswap_writeback: bool,
}

impl CgroupLimits {
    /// The root: no limits.
    pub fn root() -> Self {
        CgroupLimits {
            path: "/".into(),
            parent: None,
            max: None,
            high: None,
            low: 0,
            min: 0,
            swap_max: None,
            oom_group: false,
            swappiness: None,
            zswap_max: None,
            zswap_writeback: true,
        }
    }
}

/// Pages in a byte size, rounded down (`page_counter_memparse`).
fn pages(bytes: u64) -> u64 {
    bytes / crate::PAGE_SIZE as u64
}

/// Parses one interface file's value (as written to the file, or as a TOML
/// value) into `lim`.
///
/// # Errors
/// The reason, for the caller to name the field.
pub fn write_file(lim: &mut CgroupLimits, file: &str, value: &toml::Value) -> Result<(), String> {
    let text = match value {
        toml::Value::String(s) => s.clone(),
        toml::Value::Integer(i) if *i >= 0 => i.to_string(),
        toml::Value::Boolean(b)
            if file == "memory.oom.group" || file == "memory.zswap.writeback" =>
        {
            u8::from(*b).to_string()
        }
        v => return Err(format!("{} is not a value this file takes", v.type_str())),
    };
    let size = |allow_max| memparse(text.trim(), allow_max).map(|o| o.map(pages));
    match file {
        "memory.max" => lim.max = size(true)?,
        "memory.high" => lim.high = size(true)?,
        "memory.swap.max" => lim.swap_max = size(true)?,
        "memory.zswap.max" => lim.zswap_max = size(true)?,
        "memory.zswap.writeback" => {
            lim.zswap_writeback = match text.trim() {
                "0" => false,
                "1" => true,
                t => return Err(format!("{t:?}: memory.zswap.writeback takes 0 or 1")),
            }
        }
        "memory.low" => lim.low = size(true)?.unwrap_or(u64::MAX),
        "memory.min" => lim.min = size(true)?.unwrap_or(u64::MAX),
        "memory.oom.group" => {
            lim.oom_group = match text.trim() {
                "0" => false,
                "1" => true,
                t => return Err(format!("{t:?}: memory.oom.group takes 0 or 1")),
            }
        }
        "memory.swappiness" => {
            let v: u32 = text
                .trim()
                .parse()
                .map_err(|_| format!("{text:?} is not a number"))?;
            if v > 200 {
                return Err(format!("{v} is outside 0..=200 (the kernel's range)"));
            }
            lim.swappiness = Some(v);
        }
        f => {
            return Err(format!(
                "no interface file {f:?}; swapvm models {}",
                FILES.join(", ")
            ))
        }
    }
    Ok(())
}

/// The parent path of `path` (`"/a/b"` → `"/a"`, `"/a"` → `"/"`).
fn parent_of(path: &str) -> &str {
    match path.rfind('/') {
        Some(0) => "/",
        Some(i) => &path[..i],
        None => "/",
    }
}

/// A well-formed cgroup path: absolute, no empty, `.` or `..` component,
/// no trailing slash.
fn check_path(path: &str) -> Result<(), String> {
    if path == "/" {
        return Ok(());
    }
    if !path.starts_with('/') || path.ends_with('/') {
        return Err(format!(
            "{path:?}: a cgroup path is absolute, as \"/batch/job1\""
        ));
    }
    if path[1..]
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == ".." || c.contains(char::is_whitespace))
    {
        return Err(format!("{path:?}: empty, \".\", \"..\" or blank component"));
    }
    Ok(())
}

/// Resolves `[[cgroup]]` tables into the hierarchy: the root first (index
/// 0), then each table in file order. Errors name `cgroup[i].<file>`.
pub fn resolve(tables: &[CgroupConfig], src: &Path) -> Result<Vec<CgroupLimits>, ConfigError> {
    ensure(tables.len() < MAX_CGROUPS, src, "cgroup", || {
        format!("{} cgroups; at most {}", tables.len(), MAX_CGROUPS - 1)
    })?;
    let mut out = vec![CgroupLimits::root()];
    for (i, t) in tables.iter().enumerate() {
        let field = |f: &str| format!("cgroup[{i}].{f}");
        check_path(&t.path).map_err(|r| invalid(src, &field("path"), r))?;
        let root = t.path == "/";
        let idx = match out.iter().position(|c| c.path == t.path) {
            Some(j) if !root => {
                return Err(invalid(
                    src,
                    &field("path"),
                    format!("{:?} is listed twice (also cgroup[{}])", t.path, j - 1),
                ))
            }
            Some(j) => j,
            None => {
                let parent = parent_of(&t.path);
                let Some(p) = out.iter().position(|c| c.path == parent) else {
                    return Err(invalid(
                        src,
                        &field("path"),
                        format!("its parent {parent:?} is not listed before it"),
                    ));
                };
                out.push(CgroupLimits {
                    path: t.path.clone(),
                    parent: Some(p),
                    ..CgroupLimits::root()
                });
                out.len() - 1
            }
        };
        for (file, v) in &t.files {
            ensure(
                !root || file == "memory.swappiness",
                src,
                &field(file),
                || "the root cgroup has no such file (it takes no limits)".into(),
            )?;
            write_file(&mut out[idx], file, v).map_err(|r| invalid(src, &field(file), r))?;
        }
    }
    Ok(out)
}

fn invalid(path: &Path, field: &str, reason: String) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        field: field.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tables(text: &str) -> Vec<CgroupConfig> {
        #[derive(Deserialize)]
        struct Doc {
            cgroup: Vec<CgroupConfig>,
        }
        toml::from_str::<Doc>(text).expect("toml").cgroup
    }

    #[test]
    fn quoted_and_dotted_keys_name_the_same_file() {
        let t = tables(
            "[[cgroup]]\npath = \"/a\"\n\"memory.max\" = \"512M\"\n\
             [[cgroup]]\npath = \"/a/b\"\nmemory.max = \"64M\"\nmemory.swap.max = 0\n\
             memory.oom.group = true\n",
        );
        let r = resolve(&t, Path::new("c.toml")).expect("valid");
        assert_eq!(r.len(), 3);
        assert_eq!(r[1].max, Some(512 * 256));
        assert_eq!(
            (r[2].parent, r[2].max, r[2].swap_max),
            (Some(1), Some(64 * 256), Some(0))
        );
        assert!(r[2].oom_group);
    }

    #[test]
    fn bad_tables_name_the_field() {
        let cases = [
            (
                "path = \"/a\"\n\"memory.maxx\" = \"1M\"",
                "cgroup[0].memory.maxx",
            ),
            (
                "path = \"/a\"\n\"memory.max\" = \"1.5G\"",
                "cgroup[0].memory.max",
            ),
            ("path = \"/a/b\"", "cgroup[0].path"),
            ("path = \"a\"", "cgroup[0].path"),
            (
                "path = \"/\"\n\"memory.max\" = \"1M\"",
                "cgroup[0].memory.max",
            ),
            (
                "path = \"/a\"\n\"memory.swappiness\" = 201",
                "cgroup[0].memory.swappiness",
            ),
            (
                "path = \"/a\"\n\"memory.oom.group\" = \"2\"",
                "cgroup[0].memory.oom.group",
            ),
        ];
        for (body, want) in cases {
            let t = tables(&format!("[[cgroup]]\n{body}\n"));
            match resolve(&t, Path::new("c.toml")) {
                Err(ConfigError::Invalid { field, .. }) => assert_eq!(field, want, "{body}"),
                r => panic!("{body}: {r:?}"),
            }
        }
        let twice = tables("[[cgroup]]\npath = \"/a\"\n[[cgroup]]\npath = \"/a\"\n");
        assert!(resolve(&twice, Path::new("c.toml")).is_err());
    }

    #[test]
    fn sizes_round_down_to_pages_and_max_is_none() {
        let mut l = CgroupLimits::root();
        write_file(&mut l, "memory.high", &toml::Value::String("8191".into())).expect("ok");
        assert_eq!(l.high, Some(1));
        write_file(&mut l, "memory.high", &toml::Value::String("max".into())).expect("ok");
        assert_eq!(l.high, None);
    }
}
