//! Empty on purpose: it exists so that `[build-dependencies]` can name the host-side `syn`
//! with the union of the features any build of this repository turns on (Cargo.toml says why).
fn main() {}
