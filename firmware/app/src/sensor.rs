//! Sensors: what a measurement is, the simulated sensor, and real drivers.
//!
//! TODO(5): your sensor. A driver is an embedded-hal 1.0 driver returning [`Measurement`];
//! [`sht3x`] is the worked example, tested against embedded-hal-mock.

pub mod sht3x;

/// One measurement, in the units the protocol carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Measurement {
    /// Hundredths of a degree Celsius.
    pub centi_celsius: i16,
    /// Hundredths of a percent relative humidity.
    pub centi_percent: u16,
}

/// A deterministic stand-in sensor for the emulated board.
///
/// The n-th measurement (n from 0) of device `id` is, exactly:
///
/// ```text
/// centi_celsius = 2000 + 100 * (id % 8) + 25 * (n % 40)   (a 20.00..29.75 °C sawtooth)
/// centi_percent = 4000 + 50 * (n % 20)                     (a 40.00..49.50 %RH sawtooth)
/// ```
///
/// A host test that knows the device id and the frame's sample counter predicts every value.
/// Devices differ by their offset, so a dashboard tells them apart.
#[derive(Debug, Clone)]
pub struct SimSensor {
    device_id: u32,
    n: u32,
}

impl SimSensor {
    /// The simulated sensor of device `device_id`, at its first measurement.
    pub const fn new(device_id: u32) -> Self {
        Self { device_id, n: 0 }
    }

    /// The `n`-th measurement of device `device_id` (the formula above).
    pub const fn at(device_id: u32, n: u32) -> Measurement {
        // Each term is small (< 1000), so the casts and sums cannot overflow.
        let offset = (device_id % 8) as i16 * 100;
        Measurement {
            centi_celsius: 2000 + offset + 25 * (n % 40) as i16,
            centi_percent: 4000 + 50 * (n % 20) as u16,
        }
    }

    /// Takes the next measurement.
    pub fn measure(&mut self) -> Measurement {
        let m = Self::at(self.device_id, self.n);
        self.n = self.n.wrapping_add(1);
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_values_follow_the_documented_formula() {
        let mut s = SimSensor::new(3);
        let first: Vec<_> = (0..3).map(|_| s.measure()).collect();
        assert_eq!(
            first,
            [
                Measurement {
                    centi_celsius: 2300,
                    centi_percent: 4000
                },
                Measurement {
                    centi_celsius: 2325,
                    centi_percent: 4050
                },
                Measurement {
                    centi_celsius: 2350,
                    centi_percent: 4100
                },
            ]
        );
        assert_eq!(
            SimSensor::at(3, 39),
            Measurement {
                centi_celsius: 3275,
                centi_percent: 4950
            }
        );
        assert_eq!(
            SimSensor::at(3, 40),
            Measurement {
                centi_celsius: 2300,
                centi_percent: 4000
            }
        );
        assert_eq!(
            SimSensor::at(u32::MAX, u32::MAX).centi_celsius,
            2000 + 700 + 25 * 15
        );
    }
}
