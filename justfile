# Short names for the everyday commands. Every recipe calls `cargo xtask`, which does the real
# work, so the project works without `just` too. `just --list` shows them.

default:
    @just --list

# Run every test in the repository (what CI runs).
test *ARGS:
    cargo xtask test {{ARGS}}

# The whole stack live: service (tokio-console on), gateway, 3 QEMU devices. Ctrl-C stops it
# all and prints the summary. `just demo --duration 20 --check` for CI; `--board nrf52840`.
demo *ARGS:
    cargo xtask demo {{ARGS}}

# Format all code: host workspace and firmware.
fmt:
    cargo fmt --all
    cd firmware && cargo fmt --all

# Lint as CI does: rustfmt check and clippy with warnings denied, host and firmware.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    cd firmware && cargo fmt --all --check && cargo clippy --all-targets -- -D warnings
