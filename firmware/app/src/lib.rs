//! The firmware's application logic, shared by every board.
//!
//! Nothing here touches hardware: a board feeds in the time (milliseconds since boot) and
//! sensor results, and gets back [`beacon_protocol::Frame`]s to put on its link. That keeps
//! the logic testable on the host (`cargo test -p beacon-firmware --lib --target
//! x86_64-unknown-linux-gnu`) and keeps the boards thin.
//!
//! - [`config`]: the device's run-time configuration (device id, periods) and its parser.
//! - [`schedule`]: when to sample and when to send a heartbeat, drift-free.
//! - [`telemetry`]: frame building: sequence numbers, uptime, Boot / sample / heartbeat frames.
//! - [`sensor`]: the [`sensor::Measurement`] type, the deterministic [`sensor::SimSensor`]
//!   (QEMU) and the SHT3x I2C driver [`sensor::sht3x`] (real boards, embedded-hal 1.0).
//! - [`outbox`]: store-and-forward: every frame kept until the gateway acks it (or counted
//!   as dropped when the bounded outbox overflows).
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
pub mod outbox;
pub mod schedule;
pub mod sensor;
pub mod telemetry;

pub use config::Config;
pub use schedule::{Due, Schedule};
pub use sensor::{Measurement, SimSensor};
pub use telemetry::{Telemetry, boot_id_or};

/// This firmware's version, `[major, minor, patch]`, as reported in the Boot frame. It comes
/// from the workspace version in firmware/Cargo.toml (TODO(2)).
pub const FIRMWARE_VERSION: [u8; 3] = [
    parse_u8(env!("CARGO_PKG_VERSION_MAJOR")),
    parse_u8(env!("CARGO_PKG_VERSION_MINOR")),
    parse_u8(env!("CARGO_PKG_VERSION_PATCH")),
];

/// Compile-time decimal parse for the version parts (a part above 255 fails the build).
const fn parse_u8(s: &str) -> u8 {
    let bytes = s.as_bytes();
    let mut value: u32 = 0;
    let mut i = 0;
    while i < bytes.len() {
        let digit = bytes[i];
        assert!(digit.is_ascii_digit(), "version part is not a number");
        value = value * 10 + (digit - b'0') as u32;
        assert!(value <= 255, "version part does not fit in a byte");
        i += 1;
    }
    value as u8
}

#[cfg(test)]
mod tests {
    #[test]
    fn firmware_version_matches_the_package_version() {
        let text = super::FIRMWARE_VERSION.map(|p| p.to_string()).join(".");
        assert_eq!(text, env!("CARGO_PKG_VERSION"));
    }
}
