//! The service's JSON, as the gateway sends it: the contract crate (`beacon-api`), shared with
//! the service and the demo. The gateway depends on the contract, never on the service, so
//! either side can change its internals freely.

pub use beacon_api::{
    DeviceBatchRef, DeviceOutcome, ErrorBody, IngestOutcome, MultiIngestOutcome, NewReading,
    RegisterRequest, UnixMillis, Value, now_millis,
};
