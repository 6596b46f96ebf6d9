//! The facts about this checkout and machine that both `cargo xtask` and the safety evidence
//! pack (`beacon-safety`, protocol/safety) read, written once so they cannot disagree:
//!
//! - [`project`]: the repository root, cargo's target directory, the pinned toolchains;
//! - [`toml_lite`]: the reader for the TOML subset the project's own files use;
//! - [`rustup`]: what rustup has installed, and the one rule for matching its names.

pub mod project;
pub mod rustup;
pub mod toml_lite;

use std::fmt;

/// A message for a person: what failed (naming the file) and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(pub String);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

pub type Result<T = ()> = std::result::Result<T, Error>;
