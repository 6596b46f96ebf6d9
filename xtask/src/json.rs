//! Hand-written JSON output (xtask stays std + clap): just enough to print objects of strings,
//! numbers, booleans and arrays, correctly escaped.

use std::fmt::Write;

/// A JSON value to print.
#[derive(Debug, Clone)]
pub enum Json {
    Null,
    Bool(bool),
    Num(f64),
    Str(String),
    Arr(Vec<Json>),
    Obj(Vec<(String, Json)>),
}

impl Json {
    pub fn str(s: impl Into<String>) -> Self {
        Json::Str(s.into())
    }

    pub fn obj<K: Into<String>>(fields: impl IntoIterator<Item = (K, Json)>) -> Self {
        Json::Obj(fields.into_iter().map(|(k, v)| (k.into(), v)).collect())
    }

    /// Pretty-printed with two-space indents, one field per line.
    pub fn pretty(&self) -> String {
        let mut out = String::new();
        self.write(&mut out, 0);
        out.push('\n');
        out
    }

    fn write(&self, out: &mut String, indent: usize) {
        let pad = |n: usize| "  ".repeat(n);
        match self {
            Json::Null => out.push_str("null"),
            Json::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            Json::Num(n) if n.is_finite() => {
                if n.fract() == 0.0 && n.abs() < 1e15 {
                    let _ = write!(out, "{}", *n as i64);
                } else {
                    let _ = write!(out, "{n:.4}");
                }
            }
            Json::Num(_) => out.push_str("null"),
            Json::Str(s) => escape(s, out),
            Json::Arr(items) if items.is_empty() => out.push_str("[]"),
            Json::Arr(items) => {
                out.push_str("[\n");
                for (i, item) in items.iter().enumerate() {
                    out.push_str(&pad(indent + 1));
                    item.write(out, indent + 1);
                    out.push_str(if i + 1 < items.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push(']');
            }
            Json::Obj(fields) if fields.is_empty() => out.push_str("{}"),
            Json::Obj(fields) => {
                out.push_str("{\n");
                for (i, (k, v)) in fields.iter().enumerate() {
                    out.push_str(&pad(indent + 1));
                    escape(k, out);
                    out.push_str(": ");
                    v.write(out, indent + 1);
                    out.push_str(if i + 1 < fields.len() { ",\n" } else { "\n" });
                }
                out.push_str(&pad(indent));
                out.push('}');
            }
        }
    }
}

fn escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Finds `"key": "value"` or `"key": number` in JSON this module wrote (one field per line).
/// Enough to read back our own files without a parser.
pub fn find_field(text: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\": ");
    let line = text
        .lines()
        .find_map(|l| l.trim_start().strip_prefix(needle.as_str()))?;
    let v = line.trim_end_matches(',');
    Some(v.trim_matches('"').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_reads_back() {
        let j = Json::obj([
            ("name", Json::str("a \"q\"\n\u{1}")),
            ("n", Json::Num(1.5)),
            ("k", Json::Num(3.0)),
            (
                "list",
                Json::Arr(vec![Json::Bool(true), Json::Num(f64::NAN)]),
            ),
        ]);
        let s = j.pretty();
        assert!(s.contains(r#""name": "a \"q\"\n\u0001""#), "{s}");
        assert!(s.contains("null"), "NaN prints as null: {s}");
        assert_eq!(find_field(&s, "n").as_deref(), Some("1.5000"));
        assert_eq!(find_field(&s, "k").as_deref(), Some("3"));
    }
}
