//! Frame building: the device's side of the protocol.
//!
//! Every frame gets the boot id the board picked at reset (protocol v2: receivers identify a
//! frame by `(device_id, boot, seq)`, so the frames of a new boot are never taken for retries
//! of the last one), the next sequence number (the Boot frame is 0, then +1 per frame, so a
//! receiver sees gaps) and the uptime the board passes in.
//!
//! | frame     | readings                                                        |
//! | --------- | --------------------------------------------------------------- |
//! | boot      | `Boot { firmware, board }`                                      |
//! | sample    | `Temperature`, `Humidity`, `Counter(n)` (n = sample index from 0) |
//! | fault     | `Status(SENSOR_FAULT)`, `Counter(n)`                             |
//! | heartbeat | `Status(HEARTBEAT)`, `Counter(missed sample periods)`           |
//! | overflow  | `Status(TX_OVERFLOW)`, `Counter(frames dropped since boot)`      |

use crate::{FIRMWARE_VERSION, Measurement};
use beacon_protocol::{Frame, Reading, status};

/// Sequence numbers and sample counter of one device since boot.
#[derive(Debug, Clone)]
pub struct Telemetry {
    device_id: u32,
    boot_id: u32,
    board: u8,
    next_seq: u32,
    samples: u32,
}

impl Telemetry {
    /// A device that has sent nothing yet. `boot_id` identifies this boot (picked once at
    /// reset; see [`boot_id_or`]); `board` is a `beacon_protocol::board` code.
    pub const fn new(device_id: u32, boot_id: u32, board: u8) -> Self {
        Self {
            device_id,
            boot_id,
            board,
            next_seq: 0,
            samples: 0,
        }
    }

    /// The device id frames carry.
    pub const fn device_id(&self) -> u32 {
        self.device_id
    }

    /// The boot id frames carry.
    pub const fn boot_id(&self) -> u32 {
        self.boot_id
    }

    /// The sequence number the next frame will get.
    pub const fn next_seq(&self) -> u32 {
        self.next_seq
    }

    fn frame(&mut self, uptime_ms: u64, readings: &[Reading]) -> Frame {
        let mut frame =
            Frame::new(self.device_id, self.next_seq, uptime_ms).with_boot(self.boot_id);
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

impl Telemetry {
    /// An overflow report: the outbox was full and dropped frames; `dropped` is the total
    /// since boot ([`crate::outbox::Outbox::dropped`]), so the latest report is the whole story
    /// even when earlier reports were themselves dropped.
    pub fn overflow(&mut self, uptime_ms: u64, dropped: u32) -> Frame {
        self.frame(
            uptime_ms,
            &[
                Reading::Status(status::TX_OVERFLOW),
                Reading::Counter(dropped),
            ],
        )
    }
}

/// The boot id to use: `preferred` unless it is 0 ("not given"), else `fallback`; never 0,
/// which receivers read as "no boot identity" (protocol/SPEC.md R-BOOT-1), so 0 becomes 1.
pub const fn boot_id_or(preferred: u32, fallback: u32) -> u32 {
    beacon_protocol::frame::boot_id(if preferred != 0 { preferred } else { fallback })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::SimSensor;
    use beacon_protocol::frame::board;
    use beacon_protocol::{Decoder, MAX_WIRE_LEN, encode};

    #[test]
    fn boot_then_samples_then_heartbeat_with_consecutive_seqs() {
        let mut t = Telemetry::new(7, 0xB007, board::QEMU_MPS2_AN386);
        let mut sim = SimSensor::new(7);
        let boot = t.boot(3);
        assert_eq!(
            (boot.device_id, boot.boot, boot.seq, boot.uptime_ms),
            (7, 0xB007, 0, 3)
        );
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
        assert!([s0.boot, fault.boot, hb.boot].iter().all(|&b| b == 0xB007));
        assert_eq!(t.boot_id(), 0xB007);
        assert_eq!(
            hb.readings.as_slice(),
            [Reading::Status(status::HEARTBEAT), Reading::Counter(4)]
        );
        assert_eq!(t.next_seq(), 4);
        let overflow = t.overflow(300, 17);
        assert_eq!(overflow.seq, 4);
        assert_eq!(
            overflow.readings.as_slice(),
            [Reading::Status(status::TX_OVERFLOW), Reading::Counter(17)]
        );
    }

    #[test]
    fn frames_survive_the_wire_round_trip() {
        let mut t = Telemetry::new(1, 42, board::NRF52840_DK);
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

    #[test]
    fn a_reboot_gives_frames_with_the_same_seqs_but_another_boot() {
        let mut before = Telemetry::new(5, 111, board::QEMU_MPS2_AN386);
        let mut after = Telemetry::new(5, 222, board::QEMU_MPS2_AN386);
        let (a, b) = (before.boot(0), after.boot(0));
        assert_eq!((a.device_id, a.seq), (b.device_id, b.seq));
        assert_ne!(
            a, b,
            "the frames of a new boot are not retries of the old one"
        );
        assert_eq!((a.boot, b.boot), (111, 222));
    }

    #[test]
    fn boot_id_prefers_the_given_one_and_is_never_zero() {
        assert_eq!(boot_id_or(7, 9), 7);
        assert_eq!(boot_id_or(0, 9), 9);
        assert_eq!(boot_id_or(0, 0), 1);
        assert_eq!(boot_id_or(u32::MAX, 0), u32::MAX);
    }
}
