//! `--set KEY=VALUE`: one config field changed from the command line.
//!
//! An override is applied to the parsed TOML document of the config file,
//! before it is deserialised, so it is type-checked by the same serde
//! derives (and `deny_unknown_fields`) as the file and then validated by
//! the same [`MachineConfig::validate`](super::MachineConfig::validate).
//! Errors name `--set KEY`, not a line of the file.

use super::ConfigError;

/// One `--set KEY=VALUE`: a config field by its dotted path, and its value.
///
/// A path segment names a table key, or picks an entry of an array of
/// tables: by number (`swap.0.allocator` is the first `[[swap]]` entry's
/// `allocator`), or by its `path` (`cgroup./batch.memory.max` is the
/// `[[cgroup]]` whose `path = "/batch"`; `swap.disk-images/a.img.priority`
/// the `[[swap]]` whose `path` is that string). A segment in double quotes
/// is taken whole, dots and all: `cgroup."/batch"."memory.max"`, or
/// `swap."a.img".priority`. A key the table already has as one dotted
/// name (`"memory.max" = ..` in a `[[cgroup]]`) is matched whole without
/// quotes too, so `memory.max` sets that key rather than adding a second
/// spelling of it. Missing tables on the way are created
/// (`reclaim.swappiness` with no `[reclaim]` section), as a key may be new;
/// an array entry must exist.
#[derive(Debug, Clone, PartialEq)]
pub struct Override {
    /// Dotted path, e.g. `machine.ram_mib` or `swap.0.allocator`.
    pub key: String,
    /// The value as given on the command line.
    pub raw: String,
    /// The value: `raw` as a TOML value (integer, float, boolean, string in
    /// quotes, array, inline table) when it parses as one, else the string
    /// `raw` itself (so `allocator=free-clusters-only` needs no quotes).
    pub value: toml::Value,
}

impl Override {
    /// An override of `key` with `raw`, parsed as [`Override::value`] says.
    pub fn new(key: &str, raw: &str) -> Override {
        let (key, raw) = (key.trim(), raw.trim());
        Override {
            key: key.to_owned(),
            raw: raw.to_owned(),
            value: toml_value(raw).unwrap_or_else(|| toml::Value::String(raw.to_owned())),
        }
    }

    /// An error about the key itself: `--set KEY: reason`.
    fn key_error(&self, reason: String) -> ConfigError {
        ConfigError::Override {
            arg: self.key.clone(),
            reason,
        }
    }

    /// An error about the value: `--set KEY=VALUE: reason`.
    pub(super) fn value_error(&self, reason: String) -> ConfigError {
        ConfigError::Override {
            arg: format!("{}={}", self.key, self.raw),
            reason,
        }
    }

    /// Sets the field in `doc`, the config file's TOML document, and returns
    /// its name as [`ConfigError::Invalid`] spells fields (`swap[0].path`),
    /// so a validation error on it can be traced back here.
    ///
    /// # Errors
    ///
    /// [`ConfigError::Override`] naming the key when a segment is empty, an
    /// array index is not a number or out of range, or the path goes
    /// through a value that is not a table or array.
    pub(super) fn apply(&self, doc: &mut toml::Value) -> Result<String, ConfigError> {
        let segs = self.segments()?;
        let mut cur = doc;
        let mut field = String::new();
        let mut n = 0;
        while n < segs.len() {
            let seg = segs[n].as_str();
            cur = match cur {
                toml::Value::Table(t) => {
                    // A key the table spells as one dotted name, matched whole.
                    let (key, used) = (2..=segs.len() - n)
                        .rev()
                        .map(|k| (segs[n..n + k].join("."), k))
                        .find(|(joined, _)| t.contains_key(joined))
                        .unwrap_or_else(|| (seg.to_owned(), 1));
                    n += used;
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(&key);
                    if n == segs.len() {
                        t.insert(key, self.value.clone());
                        return Ok(field);
                    }
                    let next_is_index = is_index(&segs[n]);
                    t.entry(key).or_insert_with(|| {
                        if next_is_index {
                            toml::Value::Array(Vec::new())
                        } else {
                            toml::Value::Table(toml::Table::new())
                        }
                    })
                }
                toml::Value::Array(a) => {
                    let i = self.select(a, seg, &field)?;
                    n += 1;
                    field.push_str(&format!("[{i}]"));
                    if n == segs.len() {
                        a[i] = self.value.clone();
                        return Ok(field);
                    }
                    &mut a[i]
                }
                other => {
                    return Err(self.key_error(format!(
                        "`{field}` is {} {}, not a table or array",
                        article(other.type_str()),
                        other.type_str()
                    )))
                }
            };
        }
        unreachable!("the loop returns at the last segment")
    }

    /// The key split at dots outside double quotes; a quoted segment is
    /// taken as written between its quotes.
    ///
    /// # Errors
    /// [`ConfigError::Override`] naming the key for an empty segment, an
    /// unclosed quote, or a quote inside a segment.
    fn segments(&self) -> Result<Vec<String>, ConfigError> {
        let mut segs = Vec::new();
        let mut rest = self.key.as_str();
        loop {
            let (seg, after) = if let Some(q) = rest.strip_prefix('"') {
                let end = q.find('"').ok_or_else(|| {
                    self.key_error("a quote is not closed (quote a part as \"/batch\")".into())
                })?;
                let after = &q[end + 1..];
                if !(after.is_empty() || after.starts_with('.')) {
                    return Err(self.key_error(
                        "a quoted part must be followed by `.` or the end of the key".into(),
                    ));
                }
                (&q[..end], after)
            } else {
                let end = rest.find('.').unwrap_or(rest.len());
                let seg = &rest[..end];
                if seg.contains('"') {
                    return Err(self.key_error(
                        "a quote inside a part; quote the whole part (\"memory.max\")".into(),
                    ));
                }
                (seg, &rest[end..])
            };
            if seg.is_empty() {
                return Err(self.key_error(
                    "empty part in the key (expected a dotted path such as machine.ram_mib)".into(),
                ));
            }
            segs.push(seg.to_owned());
            match after.strip_prefix('.') {
                Some(r) => rest = r,
                None => return Ok(segs),
            }
        }
    }

    /// The entry of array `a` (the field `field`) that `seg` names: an
    /// index, or in an array of tables, the entry whose `path` is `seg`.
    fn select(&self, a: &[toml::Value], seg: &str, field: &str) -> Result<usize, ConfigError> {
        let len = a.len();
        let tables = a
            .first()
            .map_or(!field.contains('.'), toml::Value::is_table);
        if is_index(seg) {
            return match seg.parse::<usize>() {
                Ok(i) if i < len => Ok(i),
                _ if tables => {
                    Err(self
                        .key_error(format!("no [[{field}]] entry {seg} (the config has {len})")))
                }
                _ => Err(self.key_error(format!("no element {seg} in `{field}` (it has {len})"))),
            };
        }
        if !tables {
            return Err(self.key_error(format!(
                "`{field}` is an array: `{seg}` is not an index (0, 1, ...)"
            )));
        }
        fn path_of(v: &toml::Value) -> Option<&str> {
            v.get(SELECT_BY).and_then(toml::Value::as_str)
        }
        if let Some(i) = a.iter().position(|v| path_of(v) == Some(seg)) {
            return Ok(i);
        }
        let paths: Vec<String> = a
            .iter()
            .filter_map(path_of)
            .map(|p| format!("{p:?}"))
            .collect();
        Err(self.key_error(if paths.is_empty() {
            format!("no [[{field}]] entry {seg:?} (the config has none)")
        } else {
            format!(
                "no [[{field}]] entry with {SELECT_BY} = {seg:?} (there are {})",
                paths.join(", ")
            )
        }))
    }
}

/// The field by which a non-numeric key part picks an entry of an array of
/// tables: a `[[cgroup]]`'s path, a `[[swap]]` device's image.
const SELECT_BY: &str = "path";

/// Whether a key segment is an array index.
fn is_index(seg: &str) -> bool {
    !seg.is_empty() && seg.bytes().all(|b| b.is_ascii_digit())
}

fn article(type_str: &str) -> &'static str {
    if type_str.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    }
}

/// `raw` as one TOML value, if it is one.
fn toml_value(raw: &str) -> Option<toml::Value> {
    let mut t: toml::Table = toml::from_str(&format!("v = {raw}")).ok()?;
    // `1\nw = 2` parses as two keys: not one value.
    if t.len() != 1 {
        return None;
    }
    t.remove("v")
}
