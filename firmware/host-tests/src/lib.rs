//! Nothing here: the tests are in `tests/`. This crate exists to run them on the host.
