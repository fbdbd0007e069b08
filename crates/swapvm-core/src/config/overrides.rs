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
/// A path segment names a table key, or indexes an array by number
/// (`swap.0.allocator` is the first `[[swap]]` entry's `allocator`).
/// Missing tables on the way are created (`reclaim.swappiness` with no
/// `[reclaim]` section), as a key may be new; an array index must exist.
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
        let segs: Vec<&str> = self.key.split('.').collect();
        if segs.iter().any(|s| s.is_empty()) {
            return Err(self.key_error(
                "empty part in the key (expected a dotted path such as machine.ram_mib)".into(),
            ));
        }
        let mut cur = doc;
        let mut field = String::new();
        for (n, seg) in segs.iter().enumerate() {
            let last = n + 1 == segs.len();
            cur = match cur {
                toml::Value::Table(t) => {
                    if !field.is_empty() {
                        field.push('.');
                    }
                    field.push_str(seg);
                    if last {
                        t.insert((*seg).to_owned(), self.value.clone());
                        return Ok(field);
                    }
                    let next_is_index = is_index(segs[n + 1]);
                    t.entry(*seg).or_insert_with(|| {
                        if next_is_index {
                            toml::Value::Array(Vec::new())
                        } else {
                            toml::Value::Table(toml::Table::new())
                        }
                    })
                }
                toml::Value::Array(a) => {
                    let len = a.len();
                    let i = seg
                        .parse::<usize>()
                        .ok()
                        .filter(|_| is_index(seg))
                        .ok_or_else(|| {
                            self.key_error(format!(
                                "`{field}` is an array: `{seg}` is not an index (0, 1, ...)"
                            ))
                        })?;
                    if i >= len {
                        let tables = a
                            .first()
                            .map_or(!field.contains('.'), toml::Value::is_table);
                        return Err(self.key_error(if tables {
                            format!("no [[{field}]] entry {i} (the config has {len})")
                        } else {
                            format!("no element {i} in `{field}` (it has {len})")
                        }));
                    }
                    field.push_str(&format!("[{i}]"));
                    if last {
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
}

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
