#!/usr/bin/env bash
# Cargo runner for the QEMU board (firmware/.cargo/config.toml): `cargo run` in firmware/ ends
# up here as `qemu-run.sh <elf>`.
#
#   BEACON_QEMU_APPEND   the firmware's command line       (default: "device-id=1 period-ms=100")
#                        a random `boot-id=N` is added unless it names one: the board has no
#                        RNG, so each launch gets its boot identity from the host (SPEC.md 3.1)
#   BEACON_QEMU_SERIAL   where UART0 (the frames) goes     (default: file:<elf>.uart0.bin)
#                        e.g. tcp:127.0.0.1:7000 to feed a listening gateway
#
# defmt logs arrive on QEMU's stdout via semihosting. With defmt-print installed
# (`cargo install defmt-print`) they are decoded live; without it they are saved to
# <elf>.defmt for later: `defmt-print -e <elf> < <elf>.defmt`. Stop with Ctrl-C.
set -euo pipefail
elf="$1"
shift
append="${BEACON_QEMU_APPEND:-device-id=1 period-ms=100}"
if [[ " $append" != *" boot-id="* ]]; then
  boot_id=$(od -An -N4 -tu4 /dev/urandom | tr -d ' ')
  append="$append boot-id=$(( boot_id == 0 ? 1 : boot_id ))"
fi
serial="${BEACON_QEMU_SERIAL:-file:${elf}.uart0.bin}"
qemu=(qemu-system-arm -machine mps2-an386 -nographic -monitor none
      -semihosting-config enable=on,target=native
      -serial "$serial" -kernel "$elf" -append "$append" "$@")
if ! command -v qemu-system-arm >/dev/null; then
  echo "error: qemu-system-arm not found; install it (Debian/Ubuntu: apt-get install qemu-system-arm)" >&2
  exit 1
fi
echo "qemu-run: UART0 -> ${serial}; firmware args: ${append}" >&2
if command -v defmt-print >/dev/null; then
  "${qemu[@]}" | defmt-print -e "$elf"
else
  echo "qemu-run: defmt-print not installed (cargo install defmt-print); defmt logs -> ${elf}.defmt" >&2
  "${qemu[@]}" > "${elf}.defmt"
fi
