//! The protocol's integration tests, as ONE test binary (the rust-analyzer layout): each file
//! here is a module. Every edit of the protocol relinks every test binary that depends on it,
//! so one binary instead of one per file is the cheaper loop (docs/compile-times.md).
//! `cargo test -p beacon-protocol --test it vectors::` runs one module.

mod boundaries;
mod properties;
mod vectors;
