//! The service's JSON, as the gateway sends it. The HTTP API is the contract (the service's
//! `openapi.json`): these are the gateway's own types, not the service crate's, so either side
//! can change its internals freely.

use beacon_protocol::{Frame, Reading};
use serde::{Deserialize, Serialize};

/// Milliseconds since the Unix epoch, UTC.
pub type UnixMillis = i64;

/// The wall clock, in [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// One value of a reading: `{"kind":"temperature_c","value":21.5}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Value {
    /// Degrees Celsius.
    TemperatureC {
        /// The temperature.
        value: f64,
    },
    /// Relative humidity, percent.
    HumidityPct {
        /// The humidity.
        value: f64,
    },
    /// A monotonic event counter.
    Counter {
        /// The count.
        value: u32,
    },
    /// A status code (`beacon_protocol::status`).
    Status {
        /// The code.
        value: u16,
    },
    /// Sent once at device start-up.
    Boot {
        /// `"major.minor.patch"`.
        firmware: String,
        /// Board id (`beacon_protocol::frame::board`).
        board: u8,
    },
    /// A kind this gateway does not know; forwarded so nothing is silently dropped.
    Unknown {
        /// The wire kind code.
        code: u8,
        /// Its value length in bytes.
        len: u8,
    },
}

impl From<&Reading> for Value {
    fn from(r: &Reading) -> Self {
        match *r {
            Reading::Temperature { centi_celsius } => Value::TemperatureC {
                value: f64::from(centi_celsius) / 100.0,
            },
            Reading::Humidity { centi_percent } => Value::HumidityPct {
                value: f64::from(centi_percent) / 100.0,
            },
            Reading::Counter(n) => Value::Counter { value: n },
            Reading::Status(code) => Value::Status { value: code },
            Reading::Boot {
                firmware: [a, b, c],
                board,
            } => Value::Boot {
                firmware: format!("{a}.{b}.{c}"),
                board,
            },
            Reading::Unknown { kind, len } => Value::Unknown { code: kind, len },
        }
    }
}

/// One reading in an ingest batch: one device frame, identified by `(device_id, boot, seq)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NewReading {
    /// The device.
    pub device_id: u32,
    /// Which boot of the device sent the frame (protocol v2; 0 for a v1 frame). The service
    /// stores a repeated `(device_id, boot, seq)` once, so a rebooted device's frames, whose
    /// `seq` starts again at 0, are new readings, not retries.
    pub boot: u32,
    /// The device's frame sequence number (0 at boot).
    pub seq: u32,
    /// Milliseconds since the device booted.
    pub uptime_ms: u64,
    /// Wall-clock time the gateway received the frame (devices have no clock).
    pub sampled_at_ms: UnixMillis,
    /// The values.
    pub values: Vec<Value>,
}

impl NewReading {
    /// The reading a decoded frame carries, stamped with `sampled_at_ms`.
    pub fn from_frame(frame: &Frame, sampled_at_ms: UnixMillis) -> Self {
        Self {
            device_id: frame.device_id,
            boot: frame.boot,
            seq: frame.seq,
            uptime_ms: frame.uptime_ms,
            sampled_at_ms,
            values: frame.readings.iter().map(Value::from).collect(),
        }
    }
}

/// The body of `POST /api/v1/devices/{id}/readings`.
#[derive(Debug, Serialize)]
pub struct IngestBatch<'a> {
    /// The readings.
    pub readings: Vec<&'a NewReading>,
}

/// The answer to an ingest.
#[derive(Debug, Clone, Copy, Default, Deserialize)]
pub struct IngestOutcome {
    /// Readings stored by this request.
    pub accepted: usize,
    /// Readings that were already stored (retries, replays).
    pub duplicates: usize,
}

/// The body of `POST /api/v1/devices`.
#[derive(Debug, Serialize)]
pub struct RegisterRequest<'a> {
    /// The device id.
    pub id: u32,
    /// Its ingest token: registering the same id with the same token again is a no-op.
    pub token: &'a str,
    /// A label.
    pub name: &'a str,
}

/// The service's error body (`{"error": "..."}`), for messages.
#[derive(Debug, Deserialize)]
pub struct ErrorBody {
    /// What went wrong.
    pub error: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reading_json_matches_the_service_contract() {
        let frame = Frame::new(3, 7, 1_500)
            .with_boot(0xB007)
            .with(Reading::Temperature {
                centi_celsius: 2_150,
            })
            .unwrap()
            .with(Reading::Boot {
                firmware: [0, 1, 2],
                board: 1,
            })
            .unwrap();
        let json = serde_json::to_value(NewReading::from_frame(&frame, 42)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "device_id": 3, "boot": 0xB007, "seq": 7, "uptime_ms": 1500, "sampled_at_ms": 42,
                "values": [
                    {"kind": "temperature_c", "value": 21.5},
                    {"kind": "boot", "firmware": "0.1.2", "board": 1}
                ]
            })
        );
    }
}
