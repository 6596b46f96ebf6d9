//! A reader for the small TOML subset the project's own files use (toolchains/manifest.toml,
//! rust-toolchain.toml): `[table.headers]`, `key = "string"`, bare numbers and booleans, and
//! one-line arrays of strings. Anything else is an error with a line number, so a manifest
//! edit that goes beyond the subset fails loudly instead of being misread. Std only, on
//! purpose (xtask must stay light).

use std::collections::BTreeMap;
use std::path::Path;

use crate::{Error, Result};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    Str(String),
    List(Vec<String>),
}

/// A parsed file: dotted keys (`mold.release.url`) to values.
#[derive(Debug, Default, Clone)]
pub struct Doc {
    values: BTreeMap<String, Value>,
}

impl Doc {
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error(format!("could not read {}: {e}", path.display())))?;
        parse(&text).map_err(|e| Error(format!("{}: {}", path.display(), e.0)))
    }

    pub fn str(&self, key: &str) -> Option<&str> {
        match self.values.get(key) {
            Some(Value::Str(s)) => Some(s),
            _ => None,
        }
    }

    /// A required string: the error names the key and the file's role.
    pub fn req(&self, key: &str) -> Result<&str> {
        self.str(key)
            .ok_or_else(|| Error(format!("missing key `{key}` in the manifest")))
    }

    pub fn list(&self, key: &str) -> Vec<String> {
        match self.values.get(key) {
            Some(Value::List(l)) => l.clone(),
            Some(Value::Str(s)) => vec![s.clone()],
            None => Vec::new(),
        }
    }
}

pub fn parse(text: &str) -> Result<Doc> {
    let mut doc = Doc::default();
    let mut table = String::new();
    for (n, raw) in text.lines().enumerate() {
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        let err = |what: &str| Error(format!("line {}: {what}: `{}`", n + 1, raw.trim()));
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| err("unclosed table header"))?;
            let name = name.trim();
            if name.is_empty() || name.starts_with('[') {
                return Err(err("unsupported table header"));
            }
            table = name
                .split('.')
                .map(unquote_key)
                .collect::<Vec<_>>()
                .join(".");
            continue;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| err("expected `key = value`"))?;
        let key = unquote_key(key.trim());
        if key.is_empty() {
            return Err(err("empty key"));
        }
        let value = parse_value(value.trim()).ok_or_else(|| err("unsupported value"))?;
        let full = if table.is_empty() {
            key
        } else {
            format!("{table}.{key}")
        };
        if doc.values.insert(full.clone(), value).is_some() {
            return Err(err(&format!("duplicate key `{full}`")));
        }
    }
    Ok(doc)
}

fn unquote_key(k: &str) -> String {
    let k = k.trim();
    k.strip_prefix('"')
        .and_then(|k| k.strip_suffix('"'))
        .unwrap_or(k)
        .to_string()
}

/// Drops a `#` comment that is not inside a string.
fn strip_comment(line: &str) -> &str {
    let mut in_str = false;
    for (i, c) in line.char_indices() {
        match c {
            '"' => in_str = !in_str,
            '#' if !in_str => return &line[..i],
            _ => {}
        }
    }
    line
}

fn parse_value(v: &str) -> Option<Value> {
    if let Some(s) = parse_str(v) {
        return Some(Value::Str(s));
    }
    if let Some(inner) = v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
        let mut out = Vec::new();
        for item in inner.split(',') {
            let item = item.trim();
            if item.is_empty() {
                continue;
            }
            out.push(parse_str(item)?);
        }
        return Some(Value::List(out));
    }
    let bare = v
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '+'));
    (bare && !v.is_empty()).then(|| Value::Str(v.to_string()))
}

fn parse_str(v: &str) -> Option<String> {
    let inner = v.strip_prefix('"')?.strip_suffix('"')?;
    if inner.contains('"') || inner.contains('\\') {
        return None;
    }
    Some(inner.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_subset() {
        let doc = parse(
            "schema = 1 # c\n[mold.release]\nurl = \"https://x/#y\"\n[toolchain]\ntargets = [\"a\", \"b\"]\n",
        )
        .unwrap();
        assert_eq!(doc.str("schema"), Some("1"));
        assert_eq!(doc.str("mold.release.url"), Some("https://x/#y"));
        assert_eq!(doc.list("toolchain.targets"), vec!["a", "b"]);
    }

    #[test]
    fn rejects_what_it_does_not_understand() {
        assert!(parse("a = [\n\"x\"]").is_err());
        assert!(parse("[[bin]]").is_err());
        assert!(parse("a = 1\na = 2").is_err());
        assert!(parse("a = \"esc\\\"\"").is_err());
    }

    #[test]
    fn reads_the_real_manifest_and_toolchain_file() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
        let m = Doc::read(&root.join("toolchains/manifest.toml")).unwrap();
        assert!(m.req("nightly.date").unwrap().starts_with("20"));
        assert_eq!(m.req("probe-rs.crate").unwrap(), "probe-rs-tools");
        let t = Doc::read(&root.join("rust-toolchain.toml")).unwrap();
        assert!(t.req("toolchain.channel").is_ok());
    }
}
