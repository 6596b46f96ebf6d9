//! Compile-time checks for `services/service/ASYNC.md`, "Send across .await": the tests in
//! `tests/` show the compiler error a non-`Send` guard held across an `.await` gives, and the
//! fix. This crate has no code of its own; see `Cargo.toml` for why it is separate.
