//! The HTTP contract of the telemetry service, as Rust types: what `POST
//! /api/v1/devices/{id}/readings`, `POST /api/v1/devices` and the read endpoints take and
//! answer. The service (`beacon-service`), the gateway and the demo all use these, so the JSON
//! is written once; `services/service/src/openapi.json` says the same for other languages and
//! is checked against the service's router by its tests.
//!
//! Deserialisation is strict where the contract is: objects only (never an array in place of
//! an object), integers as JSON Schema reads them (`338.0` is `338`), `null` refused for an
//! optional field (absent is the one way to leave it out), unknown fields refused.
//!
//! Layout: [`Value`] (one measured value, hand-written deserialiser), [`NewReading`] and
//! [`IngestBatch`] (ingest), [`MultiIngest`], [`DeviceBatch`] and [`MultiIngestOutcome`] (the
//! multi-device ingest of a gateway), [`StoredReading`], [`IngestOutcome`], [`Device`],
//! [`RegisterRequest`] and [`Registered`] (registration), [`ReadingQuery`], [`ErrorBody`],
//! and the service's start-up line ([`listening_line`], [`parse_listening`]).

use std::net::SocketAddr;

use beacon_protocol::{Frame, Reading as WireReading};
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

/// One measured value inside a reading. Serialised with a `kind` tag, e.g.
/// `{"kind":"temperature_c","value":21.5}`.
///
/// Deserialisation is hand-written (below): serde's derive for internally tagged enums buffers
/// every value into an intermediate tree first, which made JSON ingest several times slower.
#[derive(Debug, Clone, PartialEq, Serialize)]
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
    /// A status code (`beacon_protocol::status`: 1 heartbeat, 2 sensor fault, 3 tx overflow).
    Status {
        /// The code.
        value: u16,
    },
    /// Sent once at device start-up.
    Boot {
        /// Firmware version, `"major.minor.patch"`.
        firmware: String,
        /// Board id (`beacon_protocol::frame::board`).
        board: u8,
    },
    /// A reading of a kind this service does not know (kept so nothing is silently dropped).
    Unknown {
        /// The wire kind code.
        code: u8,
        /// Its value length in bytes.
        len: u8,
    },
}

/// The `kind` tag; an unknown one is an error at the `kind` field's path.
#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum Kind {
    TemperatureC,
    HumidityPct,
    Counter,
    Status,
    Boot,
    Unknown,
}

impl Kind {
    fn name(&self) -> &'static str {
        match self {
            Kind::TemperatureC => "temperature_c",
            Kind::HumidityPct => "humidity_pct",
            Kind::Counter => "counter",
            Kind::Status => "status",
            Kind::Boot => "boot",
            Kind::Unknown => "unknown",
        }
    }
    fn fields(&self) -> &'static [&'static str] {
        match self {
            Kind::Boot => &["firmware", "board"],
            Kind::Unknown => &["code", "len"],
            _ => &["value"],
        }
    }
}

/// Every field any kind has, read in one pass; a field of another kind is refused after.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawValue {
    kind: Kind,
    #[serde(default, deserialize_with = "not_null")]
    value: Option<serde_json::Number>,
    #[serde(default, deserialize_with = "not_null")]
    firmware: Option<String>,
    #[serde(default, deserialize_with = "opt_int")]
    board: Option<u8>,
    #[serde(default, deserialize_with = "opt_int")]
    code: Option<u8>,
    #[serde(default, deserialize_with = "opt_int")]
    len: Option<u8>,
}

/// Deserialises `T` from a JSON object only. serde's derive for structs also accepts a JSON
/// array (the fields in order), so `[[[null,5,1,null,[]]]]` would pass for a batch; the
/// contract (and every client) means objects, so arrays are refused as the wrong type.
fn map_only<'de, D, T>(d: D, expecting: &'static str) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: MapOnly<'de>,
{
    struct Visit<T>(&'static str, std::marker::PhantomData<T>);
    impl<'de, T: MapOnly<'de>> serde::de::Visitor<'de> for Visit<T> {
        type Value = T;
        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
        fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
            T::from_map(serde::de::value::MapAccessDeserializer::new(map))
        }
    }
    d.deserialize_map(Visit(expecting, std::marker::PhantomData))
}

/// A struct whose derived (sequence-accepting) deserialiser is reached only through
/// [`map_only`].
trait MapOnly<'de>: Sized {
    fn from_map<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error>;
}

impl<'de> MapOnly<'de> for RawValue {
    fn from_map<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        <RawValue as Deserialize>::deserialize(d)
    }
}

/// The public request types derive with `#[serde(remote = "Self")]`, which makes the derived
/// code inherent functions; these trait impls route deserialisation through [`map_only`].
macro_rules! object_only {
    ($t:ident, $what:literal) => {
        impl<'de> MapOnly<'de> for $t {
            fn from_map<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                $t::deserialize(d)
            }
        }
        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                map_only(d, $what)
            }
        }
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                $t::serialize(self, s)
            }
        }
    };
}

object_only!(NewReading, "a reading object");
object_only!(IngestBatch, "an object {\"readings\": [...]}");
object_only!(
    DeviceBatch,
    "an object {\"device_id\", \"token\", \"readings\": [...]}"
);
object_only!(MultiIngest, "an object {\"batches\": [...]}");
object_only!(
    RegisterRequest,
    "an object {\"id\"?, \"token\"?, \"name\"?}"
);

/// Largest integer every f64 holds exactly: an integral float up to it is that integer.
const EXACT_F64: f64 = 9_007_199_254_740_992.0; // 2^53

/// An integer as JSON Schema reads it: `338` and `338.0` are the same integer (the contract's
/// `"type": "integer"` admits both, so the service does too), `338.5` is not one. An integral
/// float above 2^53 is refused, since f64 cannot say which integer it was.
fn integer<T: TryFrom<i128>>(n: Option<i128>, what: &str) -> Result<T, String> {
    n.and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| format!("expected {what}"))
}

fn f64_integer(f: f64) -> Option<i128> {
    // The guard makes the cast exact.
    #[allow(clippy::cast_possible_truncation)]
    (f.fract() == 0.0 && f.abs() <= EXACT_F64).then_some(f as i128)
}

/// A JSON number (or, for `from_text`, the text of a query parameter) as an integer `T`.
struct IntVisitor<T> {
    what: &'static str,
    from_text: bool,
    _t: std::marker::PhantomData<T>,
}

impl<'de, T: TryFrom<i128>> serde::de::Visitor<'de> for IntVisitor<T> {
    type Value = T;
    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.what)
    }
    fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<T, E> {
        integer(Some(i128::from(v)), self.what).map_err(E::custom)
    }
    fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<T, E> {
        integer(Some(i128::from(v)), self.what).map_err(E::custom)
    }
    fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<T, E> {
        integer(f64_integer(v), self.what).map_err(E::custom)
    }
    fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<T, E> {
        if !self.from_text {
            return Err(E::invalid_type(serde::de::Unexpected::Str(v), &self));
        }
        let n = v.parse::<i128>().ok().or_else(|| {
            v.parse::<f64>()
                .ok()
                .filter(|f| f.is_finite())
                .and_then(f64_integer)
        });
        integer(n, self.what).map_err(E::custom)
    }
}

/// The range a field's type allows, for the error message.
pub trait IntRange: TryFrom<i128> {
    /// E.g. "an integer 0..=4294967295".
    const WHAT: &'static str;
}
impl IntRange for u8 {
    const WHAT: &'static str = "an integer 0..=255";
}
impl IntRange for u16 {
    const WHAT: &'static str = "an integer 0..=65535";
}
impl IntRange for u32 {
    const WHAT: &'static str = "an integer 0..=4294967295";
}
impl IntRange for u64 {
    const WHAT: &'static str = "an integer 0..=18446744073709551615";
}
impl IntRange for i64 {
    const WHAT: &'static str = "an integer -9223372036854775808..=9223372036854775807";
}

/// `deserialize_with` for an integer field of a JSON body (see [`integer`]).
pub fn int<'de, D: serde::Deserializer<'de>, T: IntRange>(d: D) -> Result<T, D::Error> {
    d.deserialize_any(IntVisitor {
        what: T::WHAT,
        from_text: false,
        _t: std::marker::PhantomData,
    })
}

/// [`int`] for an optional field (absent: `None`; `null` refused, see [`not_null`]).
pub fn opt_int<'de, D: serde::Deserializer<'de>, T: IntRange>(d: D) -> Result<Option<T>, D::Error> {
    int(d).map(Some)
}

/// `deserialize_with` for an optional integer query parameter: `?limit=5` and `?limit=5.0`.
pub fn query_int<'de, D: serde::Deserializer<'de>, T: IntRange>(
    d: D,
) -> Result<Option<T>, D::Error> {
    d.deserialize_str(IntVisitor {
        what: T::WHAT,
        from_text: true,
        _t: std::marker::PhantomData,
    })
    .map(Some)
}

/// A kind's integer `value` (a [`serde_json::Number`]) within `0..=max`, `338.0` included.
fn number_integer(n: &serde_json::Number, max: u64) -> Option<u64> {
    n.as_u64()
        .or_else(|| {
            n.as_f64()
                .and_then(f64_integer)
                .and_then(|i| u64::try_from(i).ok())
        })
        .filter(|&v| v <= max)
}

/// For optional fields: absent is `None` (with `#[serde(default)]`), but an explicit `null`
/// is refused like any other wrong type, so the contract has one way to say "absent".
fn not_null<'de, D, T>(d: D) -> Result<Option<T>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    T::deserialize(d).map(Some)
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let raw: RawValue = map_only(
            d,
            "a value object such as {\"kind\":\"counter\",\"value\":1}",
        )?;
        let present = [
            ("value", raw.value.is_some()),
            ("firmware", raw.firmware.is_some()),
            ("board", raw.board.is_some()),
            ("code", raw.code.is_some()),
            ("len", raw.len.is_some()),
        ];
        if let Some((name, _)) = present
            .iter()
            .find(|(name, here)| *here && !raw.kind.fields().contains(name))
        {
            return Err(D::Error::custom(format!(
                "`{name}` is not a field of kind `{}` (its fields: {})",
                raw.kind.name(),
                raw.kind.fields().join(", ")
            )));
        }
        let value = || {
            raw.value
                .as_ref()
                .ok_or_else(|| D::Error::missing_field("value"))
        };
        let float = || {
            value()?
                .as_f64()
                .ok_or_else(|| D::Error::custom("`value` must be a number"))
        };
        let int = |max: u64| {
            number_integer(value()?, max)
                .ok_or_else(|| D::Error::custom(format!("`value` must be an integer 0..={max}")))
        };
        Ok(match raw.kind {
            Kind::TemperatureC => Value::TemperatureC { value: float()? },
            Kind::HumidityPct => Value::HumidityPct { value: float()? },
            Kind::Counter => Value::Counter {
                value: u32::try_from(int(u64::from(u32::MAX))?).unwrap_or(u32::MAX),
            },
            Kind::Status => Value::Status {
                value: u16::try_from(int(u64::from(u16::MAX))?).unwrap_or(u16::MAX),
            },
            Kind::Boot => Value::Boot {
                firmware: raw
                    .firmware
                    .ok_or_else(|| D::Error::missing_field("firmware"))?,
                board: raw.board.ok_or_else(|| D::Error::missing_field("board"))?,
            },
            Kind::Unknown => Value::Unknown {
                code: raw.code.ok_or_else(|| D::Error::missing_field("code"))?,
                len: raw.len.ok_or_else(|| D::Error::missing_field("len"))?,
            },
        })
    }
}

impl From<&WireReading> for Value {
    fn from(r: &WireReading) -> Self {
        match *r {
            WireReading::Temperature { centi_celsius } => Value::TemperatureC {
                value: f64::from(centi_celsius) / 100.0,
            },
            WireReading::Humidity { centi_percent } => Value::HumidityPct {
                value: f64::from(centi_percent) / 100.0,
            },
            WireReading::Counter(n) => Value::Counter { value: n },
            WireReading::Status(code) => Value::Status { value: code },
            WireReading::Boot {
                firmware: [a, b, c],
                board,
            } => Value::Boot {
                firmware: format!("{a}.{b}.{c}"),
                board,
            },
            WireReading::Unknown { kind, len } => Value::Unknown { code: kind, len },
        }
    }
}

/// A reading as a client sends it: one device frame, identified by `(device_id, boot, seq)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct NewReading {
    /// The device; optional in JSON (defaults to the device in the URL path), and when given it
    /// must match it.
    #[serde(
        default,
        deserialize_with = "opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub device_id: Option<u32>,
    /// Which boot of the device sent the frame (protocol v2 `boot`); optional in JSON, 0 when
    /// absent (what a version 1 frame decodes to, and what clients from before v2 mean).
    #[serde(default, deserialize_with = "int")]
    pub boot: u32,
    /// The device's frame sequence number, 0 at each boot. With `device_id` and `boot` it
    /// identifies the reading: a repeated triple is a retry and is stored once; the same
    /// `(device_id, seq)` with another `boot` is a new reading (the device rebooted).
    #[serde(deserialize_with = "int")]
    pub seq: u32,
    /// Milliseconds since the device booted, when it sampled.
    #[serde(deserialize_with = "int")]
    pub uptime_ms: u64,
    /// Wall-clock sample time, assigned by the gateway (devices have no clock). When absent,
    /// the service uses its receive time.
    #[serde(
        default,
        deserialize_with = "opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub sampled_at_ms: Option<UnixMillis>,
    /// The measured values.
    pub values: Vec<Value>,
}

impl NewReading {
    /// The reading a decoded wire frame carries; `sampled_at_ms` is left to the service.
    pub fn from_frame(frame: &Frame) -> Self {
        Self {
            device_id: Some(frame.device_id),
            boot: frame.boot,
            seq: frame.seq,
            uptime_ms: frame.uptime_ms,
            sampled_at_ms: None,
            values: frame.readings.iter().map(Value::from).collect(),
        }
    }
}

/// The JSON body of `POST /api/v1/devices/{id}/readings`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct IngestBatch {
    /// The readings, in any order.
    pub readings: Vec<NewReading>,
}

/// One device's entry in the JSON body of `POST /api/v1/readings` (the multi-device ingest):
/// the device, its own ingest token (what it sends as the bearer token of its own URL) and its
/// readings. The entry is authorised, validated and answered on its own.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct DeviceBatch {
    /// The device; each device appears at most once per request.
    #[serde(deserialize_with = "int")]
    pub device_id: u32,
    /// The device's ingest token.
    pub token: String,
    /// Its readings, in any order; a reading's optional `device_id` must be this one.
    pub readings: Vec<NewReading>,
}

/// The JSON body of `POST /api/v1/readings`: the readings of many devices in one request (a
/// gateway's), one entry per device.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct MultiIngest {
    /// One entry per device.
    pub batches: Vec<DeviceBatch>,
}

/// The same JSON as one [`DeviceBatch`], borrowing (the gateway keeps the readings for
/// retries until the service answers).
#[derive(Debug, Serialize)]
pub struct DeviceBatchRef<'a> {
    /// The device.
    pub device_id: u32,
    /// Its ingest token.
    pub token: &'a str,
    /// Its readings.
    pub readings: Vec<&'a NewReading>,
}

/// What the multi-device ingest did with one entry: `status` is what the per-device endpoint
/// would have answered for it (200 committed, 400 invalid, 401 wrong token, 404 unknown
/// device); `error` and `field` (e.g. `batches[3].token`) say why when it is not 200.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceOutcome {
    /// The entry's device.
    pub device_id: u32,
    /// 200: its readings are durable; otherwise nothing of this entry was stored.
    pub status: u16,
    /// Readings of this entry stored by this request.
    pub accepted: usize,
    /// Readings of this entry already stored before (retries).
    pub duplicates: usize,
    /// Why the entry was refused (absent on 200).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// The field that was wrong, as a JSON path from the request body's root.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// The answer to `POST /api/v1/readings`: one outcome per entry, in the request's order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MultiIngestOutcome {
    /// `results[i]` answers `batches[i]`.
    pub results: Vec<DeviceOutcome>,
}

/// A reading ready for the store: every field resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredReading {
    /// The device.
    pub device_id: u32,
    /// Which boot of the device sent it (0: no boot identity, e.g. a version 1 frame or a
    /// reading stored before schema version 2).
    #[serde(default)]
    pub boot: u32,
    /// The device's frame sequence number (0 at each boot).
    pub seq: u32,
    /// Milliseconds since the device booted.
    pub uptime_ms: u64,
    /// Wall-clock sample time (gateway-assigned, or the receive time).
    pub sampled_at_ms: UnixMillis,
    /// When the service received the request that carried it. `received_at_ms -
    /// sampled_at_ms` is the device-to-service latency.
    pub received_at_ms: UnixMillis,
    /// The measured values.
    pub values: Vec<Value>,
}

/// One page of `GET /api/v1/devices/{id}/readings`: the readings in `(boot, seq)` order and
/// the cursor of the next page (both `null` on the last page).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReadingsPage {
    /// The readings of this page.
    pub readings: Vec<StoredReading>,
    /// `after_boot` for the next page.
    pub next_after_boot: Option<u32>,
    /// `after_seq` for the next page.
    pub next_after_seq: Option<u32>,
}

/// What an ingest did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestOutcome {
    /// Readings stored by this request.
    pub accepted: usize,
    /// Readings already stored before (retries): nothing new was written for them.
    pub duplicates: usize,
}

/// A registered device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// The device id (the `device_id` in its frames). TODO(3): your device id scheme.
    pub id: u32,
    /// Free-form label.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// When it was first registered.
    pub registered_at_ms: UnixMillis,
}

/// The JSON body of `POST /api/v1/devices`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, remote = "Self")]
pub struct RegisterRequest {
    /// The id to register; the service picks the next free one when absent.
    #[serde(
        default,
        deserialize_with = "opt_int",
        skip_serializing_if = "Option::is_none"
    )]
    pub id: Option<u32>,
    /// The device's ingest token; the service generates one when absent. Giving it makes
    /// registration idempotent: registering the same id with the same token again is a no-op.
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub token: Option<String>,
    /// Free-form label.
    #[serde(
        default,
        deserialize_with = "not_null",
        skip_serializing_if = "Option::is_none"
    )]
    pub name: Option<String>,
}

/// The answer to a registration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Registered {
    /// The device.
    #[serde(flatten)]
    pub device: Device,
    /// The ingest token the service generated for a registration without one (send it as
    /// `Authorization: Bearer <token>`): in this answer only, since the service keeps just its
    /// hash. Absent when the client chose the token.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    /// `false` when the device was already registered with this token.
    pub created: bool,
}

/// A query over one device's readings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadingQuery {
    /// The device.
    pub device_id: u32,
    /// Inclusive lower bound on `sampled_at_ms`.
    pub from_ms: UnixMillis,
    /// Exclusive upper bound on `sampled_at_ms`.
    pub to_ms: UnixMillis,
    /// The paging cursor's boot: only readings after `(after_boot, after_seq)` in `(boot,
    /// seq)` order. `None` with `after_seq` set means boot 0 (what it meant before boots).
    pub after_boot: Option<u32>,
    /// The paging cursor's seq; `None` (and no `after_boot`) starts at the first reading.
    pub after_seq: Option<u32>,
    /// At most this many readings, in `(boot, seq)` order.
    pub limit: u32,
}

/// The same JSON as [`IngestBatch`], borrowing the readings (the gateway keeps them for
/// retries until the service answers).
#[derive(Debug, Serialize)]
pub struct IngestBatchRef<'a> {
    /// The readings, in any order.
    pub readings: Vec<&'a NewReading>,
}

impl NewReading {
    /// The same reading with a wall-clock sample time (the gateway stamps frames on arrival).
    pub fn sampled_at(mut self, ms: UnixMillis) -> Self {
        self.sampled_at_ms = Some(ms);
        self
    }
}

/// The JSON body of every error answer (4xx and 5xx): what was wrong and, where one field
/// was, which.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// A short lowercase message that says what to do next.
    pub error: String,
    /// The field (JSON path or query parameter) that was wrong, when one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// The byte offset of the offending frame, for binary (frame) bodies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
}

/// What the service prints as its first line on stdout once it accepts connections; tools
/// that start it (the demo, the tests, bench-service) read the address from it.
pub fn listening_line(addr: SocketAddr) -> String {
    format!("beacon-service listening on http://{addr}")
}

/// The `q` quantile (0.0..=1.0) of `values` by the nearest-rank rule (the smallest value with at
/// least `q` of them at or below it), sorting `values` in place; `None` when empty. The one
/// definition every latency report here uses (the demo's summary, the fleet simulator, the
/// load generator), so that their p50/p99 mean the same thing.
pub fn quantile<T: Copy + Ord>(values: &mut [T], q: f64) -> Option<T> {
    if values.is_empty() {
        return None;
    }
    values.sort_unstable();
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a rank within the slice's length"
    )]
    let rank = ((q.clamp(0.0, 1.0) * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values.get(rank - 1).copied()
}

/// The address in a [`listening_line`] (`None`: not such a line).
pub fn parse_listening(line: &str) -> Option<SocketAddr> {
    line.trim()
        .strip_prefix("beacon-service listening on http://")?
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use beacon_protocol::Reading;

    #[test]
    fn quantile_is_nearest_rank() {
        let mut v: Vec<i64> = (1..=100).rev().collect();
        assert_eq!(quantile(&mut v, 0.5), Some(50));
        assert_eq!(quantile(&mut v, 0.99), Some(99));
        assert_eq!(quantile(&mut v, 1.0), Some(100));
        assert_eq!(quantile(&mut v, 0.0), Some(1));
        let mut one = [7u32];
        assert_eq!(quantile(&mut one, 0.99), Some(7));
        assert_eq!(quantile::<u32>(&mut [], 0.5), None);
    }

    #[test]
    fn reading_json_is_the_contract() {
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
        let reading = NewReading::from_frame(&frame).sampled_at(42);
        let json = serde_json::to_value(&reading).unwrap();
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
        let back: NewReading = serde_json::from_value(json).unwrap();
        assert_eq!(back, reading);
        let batch = serde_json::to_value(IngestBatchRef {
            readings: vec![&reading],
        })
        .unwrap();
        let owned: IngestBatch = serde_json::from_value(batch).unwrap();
        assert_eq!(owned.readings, [reading]);
    }

    #[test]
    fn objects_only_and_integers_as_json_schema_reads_them() {
        assert!(serde_json::from_str::<IngestBatch>("[[[null,5,1,null,[]]]]").is_err());
        let r: NewReading =
            serde_json::from_str(r#"{"seq": 338.0, "uptime_ms": 1, "values": []}"#).unwrap();
        assert_eq!(r.seq, 338);
        assert!(
            serde_json::from_str::<NewReading>(r#"{"seq": 1.5, "uptime_ms": 1, "values": []}"#)
                .is_err()
        );
        let e = serde_json::from_str::<Value>(r#"{"kind": "counter", "value": 1, "board": 2}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("`board` is not a field of kind `counter`"),
            "{e}"
        );
    }

    #[test]
    fn the_listening_line_round_trips() {
        let addr: SocketAddr = "127.0.0.1:4242".parse().unwrap();
        assert_eq!(parse_listening(&listening_line(addr)), Some(addr));
        assert_eq!(parse_listening("listening on http://127.0.0.1:1"), None);
    }
}
