//! The service's integration tests, as ONE test binary (the rust-analyzer layout): each file
//! here is a module. A separate `tests/<name>.rs` per file would be its own crate and its own
//! link step, all of them relinked after every edit of the service (docs/compile-times.md).
//! `cargo test -p beacon-service --test it api::` runs one module.
//!
//! `#[path]` on the modules that say `mod common;`: it makes them look for `common/` beside
//! themselves, as they did as top-level test crates, so the files read the same either way.
//! Each gets its own copy of that small module, which is what clippy's `duplicate_mod` flags.
#![allow(clippy::duplicate_mod)]

#[path = "api.rs"]
mod api;
/// The in-process router harness (one copy, shared by api and hostile).
#[path = "common/app.rs"]
mod app;
mod boot;
mod browser;
mod contract;
mod debug;
mod e2e;
mod fleet;
mod hostile;
mod multi_ingest;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
mod pg_tls;
#[path = "server.rs"]
mod server;
/// Helpers of more than one module: the all-readings query, the in-process server, HTTP calls.
#[path = "common/shared.rs"]
mod shared;
/// The real binary as a child process.
#[path = "common/spawn.rs"]
mod spawn;
mod store_contract;
