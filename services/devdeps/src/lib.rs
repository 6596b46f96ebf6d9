//! The services' heavy dependencies, linked as one shared library in dev builds after
//! `cargo xtask setup` (docs/compile-times.md, "Dependencies as one shared library").
//!
//! A crate that does `#[cfg(beacon_dylib)] extern crate beacon_devdeps as _;` makes every
//! binary above it take these crates from `libbeacon_devdeps.so` instead of linking their
//! code into each executable: an edit then relinks the workspace's own code only. `--cfg
//! beacon_dylib` comes from `.cargo/local.toml` (written by setup); without it this crate is
//! not even built.

pub use axum;
pub use clap;
pub use futures_util;
pub use hyper;
pub use reqwest;
pub use serde;
pub use serde_json;
pub use tokio;
pub use tokio_stream;
pub use tokio_util;
pub use tower;
pub use tower_http;
pub use tracing;
pub use tracing_subscriber;
