//! Frame building: the device's side of the protocol.
//!
//! Every frame gets the next sequence number (the Boot frame is 0, then +1 per frame, so a
//! receiver sees gaps and reboots) and the uptime the board passes in.
//!
//! | frame     | readings                                                        |
//! | --------- | --------------------------------------------------------------- |
//! | boot      | `Boot { firmware, board }`                                      |
//! | sample    | `Temperature`, `Humidity`, `Counter(n)` (n = sample index from 0) |
//! | fault     | `Status(SENSOR_FAULT)`, `Counter(n)`                             |
//! | heartbeat | `Status(HEARTBEAT)`, `Counter(missed sample periods)`           |

use crate::{FIRMWARE_VERSION, Measurement};
use beacon_protocol::{Frame, Reading, status};

/// Sequence numbers and sample counter of one device since boot.
#[derive(Debug, Clone)]
pub struct Telemetry {
    device_id: u32,
    board: u8,
    next_seq: u32,
    samples: u32,
}

impl Telemetry {
    /// A device that has sent nothing yet. `board` is a `beacon_protocol::board` code.
    pub const fn new(device_id: u32, board: u8) -> Self {
        Self {
            device_id,
            board,
            next_seq: 0,
            samples: 0,
        }
    }

    /// The device id frames carry.
    pub const fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The sequence number the next frame will get.
    pub const fn next_seq(&self) -> u32 {
        self.next_seq
    }

    fn frame(&mut self, uptime_ms: u64, readings: &[Reading]) -> Frame {
        let mut frame = Frame::new(self.device_id, self.next_seq, uptime_ms);
        for &r in readings {
            // Every frame built here has at most 3 readings, far below MAX_READINGS.
            let _ = frame.push(r);
        }
        self.next_seq = self.next_seq.wrapping_add(1);
        frame
    }

    /// The start-up frame: firmware version and board.
    pub fn boot(&mut self, uptime_ms: u64) -> Frame {
        let boot = Reading::Boot {
            firmware: FIRMWARE_VERSION,
            board: self.board,
        };
        self.frame(uptime_ms, &[boot])
    }

    /// A sample frame, or a sensor-fault frame when the sensor failed. Either way the sample
    /// counter advances, so the receiver can tell skipped samples from lost frames.
    pub fn sample<E>(&mut self, uptime_ms: u64, result: Result<Measurement, E>) -> Frame {
        let n = self.samples;
        self.samples = self.samples.wrapping_add(1);
        match result {
            Ok(m) => self.frame(
                uptime_ms,
                &[
                    Reading::Temperature {
                        centi_celsius: m.centi_celsius,
                    },
                    Reading::Humidity {
                        centi_percent: m.centi_percent,
                    },
                    Reading::Counter(n),
                ],
            ),
            Err(_) => self.frame(
                uptime_ms,
                &[Reading::Status(status::SENSOR_FAULT), Reading::Counter(n)],
            ),
        }
    }

    /// A heartbeat frame; `missed` is the count of sample periods the device skipped so far.
    pub fn heartbeat(&mut self, uptime_ms: u64, missed: u32) -> Frame {
        self.frame(
            uptime_ms,
            &[Reading::Status(status::HEARTBEAT), Reading::Counter(missed)],
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimSensor;
    use beacon_protocol::frame::board;
    use beacon_protocol::{Decoder, MAX_WIRE_LEN, encode};

    #[test]
    fn boot_then_samples_then_heartbeat_with_consecutive_seqs() {
        let mut t = Telemetry::new(7, board::QEMU_MPS2_AN386);
        let mut sim = SimSensor::new(7);
        let boot = t.boot(3);
        assert_eq!((boot.device_id, boot.seq, boot.uptime_ms), (7, 0, 3));
        assert_eq!(
            boot.readings.as_slice(),
            [Reading::Boot {
                firmware: FIRMWARE_VERSION,
                board: board::QEMU_MPS2_AN386
            }]
        );
        let s0 = t.sample::<()>(100, Ok(sim.measure()));
        assert_eq!(s0.seq, 1);
        assert_eq!(
            s0.readings.as_slice(),
            [
                Reading::Temperature {
                    centi_celsius: 2700
                },
                Reading::Humidity {
                    centi_percent: 4000
                },
                Reading::Counter(0)
            ]
        );
        let fault = t.sample(200, Err("no ack"));
        assert_eq!(fault.seq, 2);
        assert_eq!(
            fault.readings.as_slice(),
            [Reading::Status(status::SENSOR_FAULT), Reading::Counter(1)]
        );
        let hb = t.heartbeat(250, 4);
        assert_eq!((hb.seq, hb.uptime_ms), (3, 250));
        assert_eq!(
            hb.readings.as_slice(),
            [Reading::Status(status::HEARTBEAT), Reading::Counter(4)]
        );
        assert_eq!(t.next_seq(), 4);
    }

    #[test]
    fn frames_survive_the_wire_round_trip() {
        let mut t = Telemetry::new(1, board::NRF52840_DK);
        let frames = [
            t.boot(0),
            t.sample::<()>(10, Ok(SimSensor::at(1, 0))),
            t.heartbeat(20, 0),
        ];
        let mut wire = Vec::new();
        for f in &frames {
            let mut buf = [0u8; MAX_WIRE_LEN];
            let n = encode(f, &mut buf).unwrap();
            wire.extend_from_slice(&buf[..n]);
        }
        let decoded: Vec<Frame> = Decoder::new().feed(&wire).map(Result::unwrap).collect();
        assert_eq!(decoded, frames);
    }
}
