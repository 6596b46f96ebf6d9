//! The services' heavy dependencies, linked as one shared library in dev builds after
//! `cargo xtask setup` (docs/compile-times.md, "Dependencies as one shared library").
//!
//! A crate that does `#[cfg(beacon_dylib)] extern crate beacon_devdeps as _;` makes every
//! binary above it take these crates from `libbeacon_devdeps.so` instead of linking their
//! code into each executable: an edit then relinks the workspace's own code only. `--cfg
//! beacon_dylib` comes from `.cargo/local.toml` (written by setup); without it this crate is
//! not even built.
//!
//! The re-exports are `cfg(debug_assertions)`: a release build in a configured tree still
//! compiles this crate (a Cargo.toml `cfg(..)` table cannot test the profile), but then as an
//! empty library, instead of a second optimised copy of every dependency that no release binary
//! links (their `extern crate` line is `cfg(all(beacon_dylib, debug_assertions))`).

#[cfg(debug_assertions)]
pub use axum;
#[cfg(debug_assertions)]
pub use clap;
#[cfg(debug_assertions)]
pub use futures_util;
#[cfg(debug_assertions)]
pub use hyper;
#[cfg(debug_assertions)]
pub use reqwest;
#[cfg(debug_assertions)]
pub use serde;
#[cfg(debug_assertions)]
pub use serde_json;
#[cfg(debug_assertions)]
pub use tokio;
#[cfg(debug_assertions)]
pub use tokio_stream;
#[cfg(debug_assertions)]
pub use tokio_util;
#[cfg(debug_assertions)]
pub use tower;
#[cfg(debug_assertions)]
pub use tower_http;
#[cfg(debug_assertions)]
pub use tracing;
#[cfg(debug_assertions)]
pub use tracing_subscriber;
