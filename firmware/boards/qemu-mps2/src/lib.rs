//! The QEMU `mps2-an386` board: the few peripherals the firmware uses, written directly
//! against the registers because no PAC crate exists for this board (see firmware/README.md).
//!
//! - [`uart`]: CMSDK UART0, the telemetry link (QEMU's serial0).
//! - [`clock`]: SysTick at 1 kHz, the uptime clock.
//! - [`semihost`]: the host side channel: command line (device id, periods) and exit codes.
//! - fault handling: panics, HardFaults and stray interrupts print a plain-text message on the
//!   host's stderr through semihosting and end QEMU with a non-zero exit code, so a CI run
//!   can never hang on a spinning fault handler.
#![no_std]

pub mod clock;
mod fault;
pub mod semihost;
pub mod uart;
mod vectors;

pub use fault::fatal;

// Every defmt log line carries the uptime in milliseconds.
defmt::timestamp!("{=u64:ms}", clock::uptime_ms());

/// The board code carried in the Boot frame.
pub const BOARD: u8 = beacon_protocol::frame::board::QEMU_MPS2_AN386;

/// Core clock of the AN386 image (and the SysTick input).
pub const CORE_CLOCK_HZ: u32 = 25_000_000;

/// Encodes `frame` and writes it to `uart`.
pub fn send(uart: &mut uart::Uart, frame: &beacon_protocol::Frame) {
    let mut buf = [0u8; beacon_protocol::MAX_WIRE_LEN];
    match beacon_protocol::encode(frame, &mut buf) {
        Ok(n) => uart.write_all(buf.get(..n).unwrap_or(&[])),
        Err(e) => defmt::error!("frame {} not encoded: {}", frame.seq, e),
    }
}
