# Short names for the everyday commands. Every recipe calls cargo or `cargo xtask`, which do
# the real work, so the project works without `just` too. `just --list` shows them: keep each
# recipe's doc on one comment line, or in a `[doc(...)]` attribute when it needs more.

default:
    @just --list

# Run every test in the repository (what CI runs).
test *ARGS:
    cargo xtask test {{ARGS}}

# template:service:begin
# template:firmware:begin
# `[doc]` rather than a comment: `just --list` shows only a comment's last line.
[doc("The whole stack live: service (tokio-console on), gateway, 3 QEMU devices; Ctrl-C stops it all and prints the summary. `just demo --duration 20 --check` for CI; `--board nrf52840` for the real board.")]
demo *ARGS:
    cargo xtask demo {{ARGS}}
# template:firmware:end

# Attach tokio-console to the service the demo (or `--console`) started.
console:
    tokio-console http://127.0.0.1:6669
# template:service:end

# template:firmware:begin
# Flash the real board (nRF52840-DK) through probe-rs and stream its logs.
flash *ARGS:
    cargo xtask flash {{ARGS}}

# Flash and static RAM of each board's release firmware, against the budget.
size:
    cargo xtask size
# template:firmware:end

# Install and configure the toolchain and tools for this machine (idempotent).
setup *ARGS:
    cargo xtask setup {{ARGS}}

# Check that this machine's setup really took effect.
doctor *ARGS:
    cargo xtask doctor {{ARGS}}

# Format all code.
fmt:
    cargo fmt --all
    # template:firmware:begin
    cd firmware && cargo fmt
    # template:firmware:end

# Lint as CI does: rustfmt check and clippy with warnings denied.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings
    # template:firmware:begin
    cd firmware && cargo fmt --check && cargo clippy --workspace --all-targets -- -D warnings
    # template:firmware:end
