//! Driver for the Sensirion SHT3x (SHT30/31/35) temperature and humidity sensor over I2C,
//! written against embedded-hal 1.0 so it runs on any HAL (and on embedded-hal-mock in tests).
//!
//! Single-shot measurements, high repeatability, no clock stretching (command `0x2400`); the
//! sensor needs up to [`MEASUREMENT_TIME_MS`] before the result can be read. Every 16-bit word
//! the sensor sends is followed by a CRC-8, which the driver checks: a garbled reading becomes
//! [`Error::Crc`], never a wrong number.
//!
//! Use [`Sht3x::measure`] with any blocking delay, or [`Sht3x::start_measurement`], wait
//! asynchronously, then [`Sht3x::read_measurement`] (what the RTIC board does).

use super::Measurement;
use embedded_hal::delay::DelayNs;
use embedded_hal::i2c::I2c;

/// Address with the ADDR pin low (the common breakout default).
pub const ADDRESS_LOW: u8 = 0x44;
/// Address with the ADDR pin high.
pub const ADDRESS_HIGH: u8 = 0x45;
/// Longest single-shot measurement time at high repeatability (datasheet: 15.5 ms).
pub const MEASUREMENT_TIME_MS: u32 = 16;

const CMD_SINGLE_SHOT_HIGH: [u8; 2] = [0x24, 0x00];
const CMD_SOFT_RESET: [u8; 2] = [0x30, 0xA2];

/// A driver error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Error<E> {
    /// The bus failed (no acknowledge, arbitration loss...).
    I2c(E),
    /// A word's CRC did not match: the transfer was corrupted.
    Crc,
}

/// An SHT3x on an I2C bus.
#[derive(Debug)]
pub struct Sht3x<I2C> {
    i2c: I2C,
    address: u8,
}

impl<I2C: I2c> Sht3x<I2C> {
    /// A driver for the sensor at `address` ([`ADDRESS_LOW`] or [`ADDRESS_HIGH`]).
    pub const fn new(i2c: I2C, address: u8) -> Self {
        Self { i2c, address }
    }

    /// Gives the bus back.
    pub fn release(self) -> I2C {
        self.i2c
    }

    /// Resets the sensor (it needs about 1.5 ms before the next command).
    pub fn soft_reset(&mut self) -> Result<(), Error<I2C::Error>> {
        self.i2c
            .write(self.address, &CMD_SOFT_RESET)
            .map_err(Error::I2c)
    }

    /// Starts a single-shot measurement; read it [`MEASUREMENT_TIME_MS`] later.
    pub fn start_measurement(&mut self) -> Result<(), Error<I2C::Error>> {
        self.i2c
            .write(self.address, &CMD_SINGLE_SHOT_HIGH)
            .map_err(Error::I2c)
    }

    /// Reads the result of the measurement started earlier.
    pub fn read_measurement(&mut self) -> Result<Measurement, Error<I2C::Error>> {
        let mut buf = [0u8; 6];
        self.i2c.read(self.address, &mut buf).map_err(Error::I2c)?;
        let [t_hi, t_lo, t_crc, h_hi, h_lo, h_crc] = buf;
        if crc8(&[t_hi, t_lo]) != t_crc || crc8(&[h_hi, h_lo]) != h_crc {
            return Err(Error::Crc);
        }
        Ok(convert(
            u16::from_be_bytes([t_hi, t_lo]),
            u16::from_be_bytes([h_hi, h_lo]),
        ))
    }

    /// Starts a measurement, waits for it with `delay`, reads it.
    pub fn measure(&mut self, delay: &mut impl DelayNs) -> Result<Measurement, Error<I2C::Error>> {
        self.start_measurement()?;
        delay.delay_ms(MEASUREMENT_TIME_MS);
        self.read_measurement()
    }
}

/// Raw sensor words to protocol units (datasheet section 4.13):
/// T = -45 + 175 * raw / 65535 °C, RH = 100 * raw / 65535 %, rounded to the nearest hundredth.
pub fn convert(raw_temperature: u16, raw_humidity: u16) -> Measurement {
    let t = i32::from(raw_temperature);
    let h = u32::from(raw_humidity);
    // -4500..=13000 and 0..=10000 always fit the protocol's i16 / u16.
    let centi_celsius = -4500 + (17_500 * t + 32_767) / 65_535;
    let centi_percent = (10_000 * h + 32_767) / 65_535;
    Measurement {
        centi_celsius: i16::try_from(centi_celsius).unwrap_or(i16::MAX),
        centi_percent: u16::try_from(centi_percent).unwrap_or(u16::MAX),
    }
}

/// The SHT3x CRC-8: polynomial 0x31, initial value 0xFF, no reflection, no final XOR.
pub fn crc8(data: &[u8]) -> u8 {
    let mut crc = 0xFFu8;
    for &byte in data {
        crc ^= byte;
        for _ in 0..8 {
            crc = if crc & 0x80 != 0 {
                (crc << 1) ^ 0x31
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;
    use embedded_hal::i2c::ErrorKind;
    use embedded_hal_mock::eh1::delay::{CheckedDelay, NoopDelay, Transaction as DelayTx};
    use embedded_hal_mock::eh1::i2c::{Mock as I2cMock, Transaction as I2cTx};

    /// A 6-byte read reply for the raw words, with correct CRCs.
    fn reply(t: u16, h: u16) -> Vec<u8> {
        let [a, b] = t.to_be_bytes();
        let [c, d] = h.to_be_bytes();
        vec![a, b, crc8(&[a, b]), c, d, crc8(&[c, d])]
    }

    #[test]
    fn crc_matches_the_datasheet_example() {
        // Datasheet, table "I2C CRC properties": CRC(0xBEEF) = 0x92.
        assert_eq!(crc8(&[0xBE, 0xEF]), 0x92);
    }

    #[test]
    fn conversion_at_the_range_ends_and_a_typical_point() {
        assert_eq!(
            convert(0, 0),
            Measurement {
                centi_celsius: -4500,
                centi_percent: 0
            }
        );
        assert_eq!(
            convert(u16::MAX, u16::MAX),
            Measurement {
                centi_celsius: 13000,
                centi_percent: 10000
            }
        );
        // 0x6666 = 26214: -45 + 175 * 0.4 = 25.00 °C; 40.00 %RH.
        assert_eq!(
            convert(0x6666, 0x6666),
            Measurement {
                centi_celsius: 2500,
                centi_percent: 4000
            }
        );
    }

    #[test]
    fn measure_sends_the_command_waits_and_reads() {
        let expectations = [
            I2cTx::write(ADDRESS_LOW, vec![0x24, 0x00]),
            I2cTx::read(ADDRESS_LOW, reply(0x6666, 0x8000)),
        ];
        let mut i2c = I2cMock::new(&expectations);
        let mut delay = CheckedDelay::new(&[DelayTx::delay_ms(MEASUREMENT_TIME_MS)]);
        let mut sensor = Sht3x::new(i2c.clone(), ADDRESS_LOW);
        let m = sensor.measure(&mut delay).unwrap();
        assert_eq!(
            m,
            Measurement {
                centi_celsius: 2500,
                centi_percent: 5000
            }
        );
        i2c.done();
        delay.done();
    }

    #[test]
    fn split_measurement_on_the_high_address() {
        let expectations = [
            I2cTx::write(ADDRESS_HIGH, vec![0x24, 0x00]),
            I2cTx::read(ADDRESS_HIGH, reply(0, 0xFFFF)),
            I2cTx::write(ADDRESS_HIGH, vec![0x30, 0xA2]),
        ];
        let mut i2c = I2cMock::new(&expectations);
        let mut sensor = Sht3x::new(i2c.clone(), ADDRESS_HIGH);
        sensor.start_measurement().unwrap();
        let m = sensor.read_measurement().unwrap();
        assert_eq!(
            m,
            Measurement {
                centi_celsius: -4500,
                centi_percent: 10000
            }
        );
        sensor.soft_reset().unwrap();
        let _bus = sensor.release();
        i2c.done();
    }

    #[test]
    fn corrupted_word_is_a_crc_error_not_a_value() {
        let mut bad = reply(0x6666, 0x6666);
        bad[4] ^= 0x01; // one bit flipped in the humidity word
        let expectations = [
            I2cTx::write(ADDRESS_LOW, vec![0x24, 0x00]),
            I2cTx::read(ADDRESS_LOW, bad),
        ];
        let mut i2c = I2cMock::new(&expectations);
        let mut sensor = Sht3x::new(i2c.clone(), ADDRESS_LOW);
        assert_eq!(sensor.measure(&mut NoopDelay::new()), Err(Error::Crc));
        i2c.done();
    }

    #[test]
    fn missing_sensor_is_a_bus_error() {
        let expectations =
            [I2cTx::write(ADDRESS_LOW, vec![0x24, 0x00]).with_error(ErrorKind::Other)];
        let mut i2c = I2cMock::new(&expectations);
        let mut sensor = Sht3x::new(i2c.clone(), ADDRESS_LOW);
        assert_eq!(
            sensor.measure(&mut NoopDelay::new()),
            Err(Error::I2c(ErrorKind::Other))
        );
        i2c.done();
    }
}
