//! Run-time configuration: which device this is and how often it reports.
//!
//! On QEMU the configuration comes from the command line (`-append "device-id=3
//! period-ms=100"`, read through semihosting), so several instances of one ELF can run side by
//! side as different devices. Keys: `device-id`, `boot-id`, `period-ms`, `heartbeat-ms`,
//! `samples`. On a real board the id comes from the chip (TODO(3)) and the boot id from its
//! RNG.
//!
//! `boot-id` is the protocol's per-boot identity (protocol/SPEC.md 3.1). The emulated board has
//! no RNG, so whoever launches QEMU draws it from the host's random source and passes it here,
//! a new one at every launch.

/// Default sampling period.
pub const DEFAULT_PERIOD_MS: u32 = 1_000;
/// Default heartbeat period.
pub const DEFAULT_HEARTBEAT_MS: u32 = 5_000;
/// Shortest accepted period: below this a frame does not fit the link's time budget.
pub const MIN_PERIOD_MS: u32 = 10;

/// The device's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Config {
    /// The id carried by every frame. TODO(3): your device id scheme.
    pub device_id: u32,
    /// The boot id carried by every frame of this boot (`boot-id=N`); `0` when not given,
    /// and the board then picks one itself (QEMU: the host clock).
    pub boot_id: u32,
    /// Milliseconds between samples.
    pub period_ms: u32,
    /// Milliseconds between heartbeats.
    pub heartbeat_ms: u32,
    /// Stop (QEMU: exit with code 0) after this many samples; 0 runs forever. For tests.
    pub samples: u32,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            device_id: 1,
            boot_id: 0,
            period_ms: DEFAULT_PERIOD_MS,
            heartbeat_ms: DEFAULT_HEARTBEAT_MS,
            samples: 0,
        }
    }
}

/// Why a command line was rejected. Each names the offending word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum ConfigError<'a> {
    /// A `key=value` word with a key this firmware does not know.
    UnknownKey(&'a str),
    /// A value that is not a decimal number in range.
    BadValue {
        /// The key.
        key: &'a str,
        /// The value as given.
        value: &'a str,
    },
}

impl core::fmt::Display for ConfigError<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::UnknownKey(key) => write!(
                f,
                "unknown setting `{key}`; known: device-id=N, boot-id=N, period-ms=N, heartbeat-ms=N, samples=N"
            ),
            Self::BadValue { key, value } => write!(
                f,
                "bad value `{value}` for `{key}`; expected a whole number (periods >= {MIN_PERIOD_MS})"
            ),
        }
    }
}

impl Config {
    /// Parses a command line of whitespace-separated `key=value` words over the defaults.
    /// Words without `=` (such as the kernel path QEMU puts first) are skipped.
    pub fn parse(cmdline: &str) -> Result<Self, ConfigError<'_>> {
        let mut config = Self::default();
        for word in cmdline.split_ascii_whitespace() {
            let Some((key, value)) = word.split_once('=') else {
                continue;
            };
            let bad = ConfigError::BadValue { key, value };
            let number: u32 = value.parse().map_err(|_| bad)?;
            match key {
                "device-id" => config.device_id = number,
                "boot-id" => config.boot_id = number,
                "samples" => config.samples = number,
                "period-ms" if number >= MIN_PERIOD_MS => config.period_ms = number,
                "heartbeat-ms" if number >= MIN_PERIOD_MS => config.heartbeat_ms = number,
                "period-ms" | "heartbeat-ms" => return Err(bad),
                _ => return Err(ConfigError::UnknownKey(key)),
            }
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_command_line_gives_the_defaults() {
        assert_eq!(Config::parse(""), Ok(Config::default()));
    }

    #[test]
    fn qemu_command_line_with_kernel_path_first() {
        let c = Config::parse("target/beacon-qemu device-id=3 period-ms=100").unwrap();
        assert_eq!(
            c,
            Config {
                device_id: 3,
                period_ms: 100,
                ..Config::default()
            }
        );
    }

    #[test]
    fn all_keys() {
        let c = Config::parse(
            "heartbeat-ms=2000  device-id=4294967295\tperiod-ms=10 samples=5 boot-id=3735928559",
        )
        .unwrap();
        assert_eq!(
            c,
            Config {
                device_id: u32::MAX,
                boot_id: 0xDEAD_BEEF,
                period_ms: 10,
                heartbeat_ms: 2000,
                samples: 5
            }
        );
    }

    #[test]
    fn rejects_unknown_key_and_bad_values_naming_them() {
        assert_eq!(
            Config::parse("device=3"),
            Err(ConfigError::UnknownKey("device"))
        );
        assert_eq!(
            Config::parse("device-id=three"),
            Err(ConfigError::BadValue {
                key: "device-id",
                value: "three"
            })
        );
        assert_eq!(
            Config::parse("period-ms=5"),
            Err(ConfigError::BadValue {
                key: "period-ms",
                value: "5"
            })
        );
        assert_eq!(
            Config::parse("device-id=4294967296"),
            Err(ConfigError::BadValue {
                key: "device-id",
                value: "4294967296"
            })
        );
        let msg = ConfigError::UnknownKey("x").to_string();
        assert!(msg.starts_with("unknown setting `x`"), "{msg}");
    }
}
