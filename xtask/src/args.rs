//! Leaf module: the command line, std only. Each command reads its own flags from an
//! [`Args`] (`flag`, `value`, `values`, `positional`, `rest`, then `finish`, which refuses
//! anything left over) and keeps its help text beside them as a `HELP` constant.
//!
//! Why not clap: xtask compiles first on every fresh machine, before anything else can run
//! (Cargo.toml's invariant). clap's builder and derive (with syn) were 7 of the 12.5 s a cold
//! `cargo xtask` took to build here; this file is the whole of what xtask used of them.
//! Imports nothing of xtask.

use std::fmt;
use std::str::FromStr;

/// A command-line mistake: printed as `error: ...` with a pointer to the help, exit code 2.
#[derive(Debug, PartialEq, Eq)]
pub struct Usage(pub String);

impl fmt::Display for Usage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One command's arguments, taken out as the command asks for them.
#[derive(Debug)]
pub struct Args {
    /// `cargo xtask <cmd>`, for the messages.
    cmd: String,
    /// Before a `--`, not yet taken.
    items: Vec<String>,
    /// After the first `--` (None: there was none).
    rest: Option<Vec<String>>,
}

impl Args {
    /// `argv` is what follows the command's name.
    pub fn new(cmd: &str, argv: Vec<String>) -> Self {
        let mut items = argv;
        let rest = items
            .iter()
            .position(|a| a == "--")
            .map(|i| items.split_off(i).into_iter().skip(1).collect());
        Args {
            cmd: format!("cargo xtask {cmd}"),
            items,
            rest,
        }
    }

    /// `-h` or `--help` among the arguments (before any `--`).
    pub fn wants_help(&self) -> bool {
        self.items.iter().any(|a| a == "-h" || a == "--help")
    }

    fn usage(&self, what: String) -> Usage {
        Usage(format!("{what}; see `{} --help`", self.cmd))
    }

    /// A switch: `--long` (or `-s`); true when given, any number of times.
    pub fn flag(&mut self, long: &str, short: Option<char>) -> Result<bool, Usage> {
        let short = short.map(|c| format!("-{c}"));
        let mut found = false;
        let mut i = 0;
        while i < self.items.len() {
            let a = &self.items[i];
            if a == long || short.as_ref() == Some(a) {
                self.items.remove(i);
                found = true;
            } else if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
                return Err(self.usage(format!("{long} takes no value (got `{v}`)")));
            } else {
                i += 1;
            }
        }
        Ok(found)
    }

    /// Every `--long VALUE` / `--long=VALUE`, in order, taken out.
    fn take_all(&mut self, long: &str) -> Result<Vec<String>, Usage> {
        let mut out = Vec::new();
        let mut i = 0;
        while i < self.items.len() {
            let a = &self.items[i];
            if a == long {
                // `--duration --check`: the next option is not this one's value.
                if self.items.get(i + 1).is_none_or(|v| v.starts_with("--")) {
                    return Err(self.usage(format!("{long} needs a value")));
                }
                self.items.remove(i);
                out.push(self.items.remove(i));
            } else if let Some(v) = a.strip_prefix(long).and_then(|r| r.strip_prefix('=')) {
                out.push(v.to_owned());
                self.items.remove(i);
            } else {
                i += 1;
            }
        }
        Ok(out)
    }

    /// `--long VALUE` at most once, parsed.
    pub fn value<T: FromStr>(&mut self, long: &str) -> Result<Option<T>, Usage>
    where
        T::Err: fmt::Display,
    {
        let mut all = self.take_all(long)?;
        match all.len() {
            0 => Ok(None),
            1 => {
                let v = all.remove(0);
                v.parse()
                    .map(Some)
                    .map_err(|e| self.usage(format!("invalid value `{v}` for {long}: {e}")))
            }
            _ => Err(self.usage(format!("{long} was given more than once"))),
        }
    }

    /// `--long A,B` or `--long A --long B`: every value, in order.
    pub fn values(&mut self, long: &str) -> Result<Vec<String>, Usage> {
        Ok(self
            .take_all(long)?
            .iter()
            .flat_map(|v| v.split(','))
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// The next argument that is not an option (take the options first).
    pub fn positional(&mut self) -> Option<String> {
        let i = self.items.iter().position(|a| !a.starts_with('-'))?;
        Some(self.items.remove(i))
    }

    // Only the demo takes these two: `cargo xtask new` drops them with it.
    // template:service:begin
    // template:firmware:begin
    /// What followed `--`, for a program xtask runs.
    pub fn rest(&mut self) -> Vec<String> {
        self.rest.take().unwrap_or_default()
    }

    /// `v`, the value of `long`, if it is in `lo..=hi`.
    pub fn in_range(&self, v: u32, long: &str, lo: u32, hi: u32) -> Result<u32, Usage> {
        if (lo..=hi).contains(&v) {
            Ok(v)
        } else {
            Err(self.usage(format!("{long} must be {lo} to {hi} (got {v})")))
        }
    }

    // template:firmware:end
    // template:service:end

    /// Everything, untouched (a `--` included), for a command that hands its whole command
    /// line to a program it runs.
    pub fn pass_through(&mut self) -> Vec<String> {
        let mut all = std::mem::take(&mut self.items);
        if let Some(rest) = self.rest.take() {
            all.push("--".into());
            all.extend(rest);
        }
        all
    }

    /// Refuses what no one took: an unknown option, a stray value, an unread `--` part.
    pub fn finish(self) -> Result<(), Usage> {
        if let Some(a) = self.items.first() {
            return Err(self.usage(format!("unexpected argument `{a}`")));
        }
        if self.rest.as_ref().is_some_and(|r| !r.is_empty()) {
            return Err(self.usage("`--` is not followed by anything this command takes".into()));
        }
        Ok(())
    }
}

// template:firmware:begin
/// For an enum's `FromStr` (the boards, the demo's databases): "is not one of: a, b".
pub fn one_of(got: &str, names: &[&str]) -> String {
    format!("`{got}` is not one of: {}", names.join(", "))
}
// template:firmware:end

#[cfg(test)]
mod tests {
    use super::*;

    fn a(cmd: &str, v: &[&str]) -> Args {
        Args::new(cmd, v.iter().map(|s| (*s).to_owned()).collect())
    }

    #[test]
    fn flags_values_positionals_and_the_part_after_double_dash() {
        let mut p = a(
            "demo",
            &[
                "--check",
                "-y",
                "--duration=20",
                "--devices",
                "5",
                "x",
                "--",
                "--cut-secs",
                "3",
            ],
        );
        assert!(p.flag("--check", None).unwrap());
        assert!(p.flag("--yes", Some('y')).unwrap());
        assert!(!p.flag("--faults", None).unwrap());
        assert_eq!(p.value::<u64>("--duration").unwrap(), Some(20));
        assert_eq!(p.value::<u32>("--devices").unwrap(), Some(5));
        assert_eq!(p.value::<u32>("--replicas").unwrap(), None);
        assert_eq!(p.positional().as_deref(), Some("x"));
        assert_eq!(p.pass_through(), ["--", "--cut-secs", "3"]);
        p.finish().unwrap();
    }

    // template:service:begin
    // template:firmware:begin
    #[test]
    fn the_demo_takes_the_part_after_double_dash_and_a_bounded_number() {
        let mut p = a("demo", &["--replicas", "2", "--", "--cut-secs", "3"]);
        let n = p.value::<u32>("--replicas").unwrap().unwrap();
        assert_eq!(p.in_range(n, "--replicas", 1, 16), Ok(2));
        assert_eq!(p.rest(), ["--cut-secs", "3"]);
        p.finish().unwrap();
        let e = a("demo", &[])
            .in_range(0, "--replicas", 1, 16)
            .unwrap_err()
            .0;
        assert!(e.contains("--replicas must be 1 to 16 (got 0)"), "{e}");
    }
    // template:firmware:end
    // template:service:end

    #[test]
    fn repeated_and_comma_separated_values_are_one_list() {
        let mut p = a("setup", &["--only", "rust,qemu", "--only=just"]);
        assert_eq!(p.values("--only").unwrap(), ["rust", "qemu", "just"]);
        p.finish().unwrap();
    }

    #[test]
    fn mistakes_are_usage_errors_that_name_the_argument_and_the_help() {
        let mut p = a("demo", &["--devices", "many"]);
        let e = p.value::<u32>("--devices").unwrap_err().0;
        assert!(e.contains("invalid value `many` for --devices"), "{e}");
        assert!(e.ends_with("see `cargo xtask demo --help`"), "{e}");

        let mut p = a("demo", &["--duration", "--check"]);
        assert!(
            p.value::<u64>("--duration")
                .unwrap_err()
                .0
                .contains("--duration needs a value")
        );

        let mut p = a("demo", &["--duration"]);
        assert!(
            p.value::<u64>("--duration")
                .unwrap_err()
                .0
                .contains("--duration needs a value")
        );

        let mut p = a("demo", &["--check=yes"]);
        assert!(
            p.flag("--check", None)
                .unwrap_err()
                .0
                .contains("--check takes no value")
        );

        let mut p = a("demo", &["--devices", "1", "--devices", "2"]);
        assert!(
            p.value::<u32>("--devices")
                .unwrap_err()
                .0
                .contains("more than once")
        );

        let e = a("test", &["--hostonly"]).finish().unwrap_err().0;
        assert!(e.contains("unexpected argument `--hostonly`"), "{e}");

        let e = a("test", &["--", "x"]).finish().unwrap_err().0;
        assert!(e.contains("`--` is not followed"), "{e}");

        assert!(a("x", &["-h"]).wants_help() && !a("x", &["--", "-h"]).wants_help());
    }

    #[test]
    fn pass_through_keeps_every_argument_and_the_double_dash_in_place() {
        let mut p = a("fast", &["run", "-p", "svc", "--", "--help"]);
        assert_eq!(p.pass_through(), ["run", "-p", "svc", "--", "--help"]);
        p.finish().unwrap();
    }

    #[test]
    fn a_long_flag_is_not_matched_by_a_longer_one_sharing_its_prefix() {
        let mut p = a("new", &["--no-git", "--name", "n"]);
        assert!(!p.flag("--no", None).unwrap());
        assert!(p.flag("--no-git", None).unwrap());
        assert_eq!(p.value::<String>("--name").unwrap().as_deref(), Some("n"));
        p.finish().unwrap();
    }
}
