"""Schemathesis hooks for `cargo xtask test`'s contract step (xtask/src/schemathesis.rs).

Two rules of the contract that JSON Schema cannot express, so the run is told here. Each is
as narrow as it can be: everything else is checked as generated, with every check on.

- `GET /api/v1/stream` answers 200 with a server-sent-event stream that stays open until the
  client leaves: a schema-valid request never gets a complete response. Only the cases meant
  to be refused (negative mode: 400) are sent; the open stream is tested in
  services/service/tests/it/api.rs.
- A reading's optional `device_id` must equal the `{id}` in the path (the contract says so
  in words). The one answer that rule explains, a 400 naming `readings[N].device_id` for a
  body whose reading N has another device_id, is not a failure of "schema-valid request
  rejected" (ST202). Any other 400 to a schema-valid request still is. Where schemathesis
  applies `map_case` (coverage and fuzzing phases), schema-valid bodies are made to obey the
  rule first, so most of them reach the store.
"""

import json

import schemathesis
from schemathesis.core.parameters import ParameterLocation

READINGS = "/api/v1/devices/{id}/readings"


@schemathesis.hook
def filter_case(context, case):
    if case.operation.path == "/api/v1/stream":
        meta = case.meta
        return meta is not None and any(
            meta.is_negative_at(loc) for loc in ParameterLocation
        )
    return True


def _other_device(case, field):
    """Whether `field` (`readings[N].device_id`) names a reading for another device."""
    prefix, suffix = "readings[", "].device_id"
    if not (field.startswith(prefix) and field.endswith(suffix)):
        return False
    try:
        index = int(field[len(prefix) : -len(suffix)])
        reading = case.body["readings"][index]
        device = int(case.path_parameters["id"])
    except (KeyError, IndexError, TypeError, ValueError):
        return False
    value = reading.get("device_id") if isinstance(reading, dict) else None
    return isinstance(value, (int, float)) and value != device


@schemathesis.hook
def filter_failure(context, failure, case, response):
    if failure.code != "ST202" or case.operation.path != READINGS or case.method != "POST":
        return True
    if response.status_code != 400:
        return True
    try:
        field = json.loads(response.content).get("field", "")
    except (ValueError, AttributeError):
        return True
    return not _other_device(case, field)


@schemathesis.hook
def map_case(context, case):
    if case.operation.path != READINGS or case.method != "POST":
        return case
    meta = case.meta
    if meta is not None and meta.is_negative_at(ParameterLocation.BODY):
        return case
    device = (case.path_parameters or {}).get("id")
    body = case.body
    if isinstance(device, int) and isinstance(body, dict):
        for reading in body.get("readings") or []:
            if isinstance(reading, dict) and "device_id" in reading:
                reading["device_id"] = device
    return case
