//! `POST /api/v1/devices/{id}/readings`: JSON or concatenated frames, authorised from the
//! headers, answered after the store committed. `POST /api/v1/readings`: the readings of many
//! devices in one JSON request (a gateway's), each entry authorised by its own device token
//! and answered on its own, all of them committed together.

use super::*;

/// Decodes a body of concatenated wire frames.
pub(super) fn decode_frames(id: u32, body: &[u8]) -> Result<Vec<NewReading>, ApiError> {
    let mut decoder = beacon_protocol::Decoder::new();
    let mut out = Vec::with_capacity(body.len() / 24);
    let mut frame_start = 0u64;
    for &byte in body {
        match decoder.push(byte) {
            None => {
                // Leading delimiters (empty frames) are skipped by the decoder; track the start.
                if byte == 0 && decoder.pending() == 0 {
                    frame_start = decoder.position();
                }
            }
            Some(Ok(frame)) => {
                if frame.device_id != id {
                    return Err(ApiError {
                        offset: Some(frame_start),
                        ..ApiError::bad_request(format!(
                            "frame at byte {frame_start} is from device {}, not device {id}; post each device's frames to its own url",
                            frame.device_id
                        ))
                    });
                }
                out.push(NewReading::from_frame(&frame));
                frame_start = decoder.position();
            }
            Some(Err(e)) => {
                return Err(ApiError {
                    offset: Some(e.offset),
                    ..ApiError::bad_request(format!("{e}; nothing in this request was stored"))
                });
            }
        }
    }
    if decoder.pending() > 0 {
        return Err(ApiError {
            offset: Some(frame_start),
            ..ApiError::bad_request(format!(
                "truncated frame at byte {frame_start}: the body must end with a 0x00 delimiter"
            ))
        });
    }
    Ok(out)
}

pub(super) fn unsupported_ingest_type(media: &str) -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        format!(
            "unsupported content type {media:?}; send application/json or {FRAMES_CONTENT_TYPE}"
        ),
    )
}

/// `POST /api/v1/devices/{id}/readings`: JSON batch or concatenated frames. Answers after the
/// readings are durable.
pub(super) async fn ingest(
    State(state): State<Arc<AppState>>,
    id: Result<Path<u32>, PathRejection>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<IngestOutcome>, ApiError> {
    let Path(id) = id?;
    // The token is checked from the headers before a byte of the body is read: a tokenless
    // 4 MiB request costs the service its headers only.
    let authorized = authorize(&state, id, &headers).await?;
    let content_type = media_type(&headers);
    if content_type != "application/json" && content_type != FRAMES_CONTENT_TYPE {
        return Err(unsupported_ingest_type(&content_type));
    }
    let body = Bytes::from_request(request, &state).await?;
    let readings = match content_type.as_str() {
        "application/json" => {
            let batch: IngestBatch = parse_json(&body)?;
            for (i, r) in batch.readings.iter().enumerate() {
                if r.device_id.is_some_and(|d| d != id) {
                    return Err(ApiError::bad_request(format!(
                        "reading is for device {}, not device {id}; post each device's readings to its own url",
                        r.device_id.unwrap_or_default()
                    ))
                    .field(format!("readings[{i}].device_id")));
                }
            }
            batch.readings
        }
        FRAMES_CONTENT_TYPE => decode_frames(id, &body)?,
        other => return Err(unsupported_ingest_type(other)),
    };
    if readings.len() > state.config.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} readings in one request, the limit is {}; split the batch",
                readings.len(),
                state.config.max_batch
            ),
        ));
    }
    if let Authorized::Register(token) = authorized {
        auto_register(&state, id, token).await?;
    }
    let mut stored = Vec::with_capacity(readings.len());
    to_stored(id, readings, now_millis(), &mut stored);
    let (outcome, _) = commit(&state, stored).await?;
    Ok(Json(outcome))
}

/// Appends a device's readings to `out`, every field resolved.
fn to_stored(
    id: u32,
    readings: Vec<NewReading>,
    received_at_ms: i64,
    out: &mut Vec<StoredReading>,
) {
    out.extend(readings.into_iter().map(|r| StoredReading {
        device_id: id,
        boot: r.boot,
        seq: r.seq,
        uptime_ms: r.uptime_ms,
        sampled_at_ms: r.sampled_at_ms.unwrap_or(received_at_ms),
        received_at_ms,
        values: r.values,
    }));
}

/// Stores the readings (one store call: one group commit), counts them, publishes them to the
/// stream. Answers the totals and how many of each device's readings were new.
async fn commit(
    state: &AppState,
    readings: Vec<StoredReading>,
) -> Result<(IngestOutcome, HashMap<u32, usize>), ApiError> {
    let started = Instant::now();
    let result = state.store.ingest(readings).await;
    state.metrics.store_ingest_latency(started.elapsed());
    let ingested = result.inspect_err(|e| {
        if matches!(e, StoreError::Unavailable(_)) {
            state.metrics.store_unavailable();
        }
    })?;
    let outcome = IngestOutcome {
        accepted: ingested.accepted.len(),
        duplicates: ingested.duplicates,
    };
    let mut per_device: HashMap<u32, usize> = HashMap::new();
    for r in &ingested.accepted {
        *per_device.entry(r.device_id).or_default() += 1;
    }
    state.metrics.ingested(outcome.accepted, outcome.duplicates);
    if outcome.accepted > 0 && state.events.receiver_count() > 0 {
        // No receiver, no copy: the common case under load pays nothing for the stream.
        let _ = state.events.send(Arc::from(ingested.accepted));
    }
    Ok((outcome, per_device))
}

/// `POST /api/v1/readings`: one entry per device, each with its own token, checked exactly as
/// the per-device endpoint checks it (same cache, same `--auto-register` rule). An entry that
/// fails (wrong token, unknown device, invalid reading) is answered with its own status and
/// stores nothing; the others are committed together, in one store call, before the answer.
/// The tokens are in the body, so the request counts as unauthenticated work while in flight
/// (`--max-unauthenticated-per-ip` per peer address, in a pool of its own: `limits.rs`).
pub(super) async fn ingest_many(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Json<MultiIngestOutcome>, ApiError> {
    let content_type = media_type(&headers);
    if content_type != "application/json" {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {content_type:?}; send application/json (frames go to /api/v1/devices/{{id}}/readings, one device per request)"
            ),
        ));
    }
    let body = Bytes::from_request(request, &state).await?;
    let many: MultiIngest = parse_json(&body)?;
    drop(body);
    if many.batches.len() > MAX_INGEST_ENTRIES {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{} device entries in one request, the limit is {MAX_INGEST_ENTRIES}; split the request",
                many.batches.len()
            ),
        )
        .field("batches"));
    }
    let total: usize = many.batches.iter().map(|b| b.readings.len()).sum();
    if total > state.config.max_batch {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "{total} readings in one request, the limit is {} (--max-batch); split the request",
                state.config.max_batch
            ),
        )
        .field("batches"));
    }
    let received_at_ms = now_millis();
    let mut seen = std::collections::HashSet::with_capacity(many.batches.len());
    let mut results = Vec::with_capacity(many.batches.len());
    let mut readings = Vec::with_capacity(total);
    for (i, entry) in many.batches.into_iter().enumerate() {
        let (id, n) = (entry.device_id, entry.readings.len());
        let outcome = match check_entry(&state, i, &entry, &mut seen).await {
            Ok(()) => {
                to_stored(id, entry.readings, received_at_ms, &mut readings);
                DeviceOutcome {
                    device_id: id,
                    status: StatusCode::OK.as_u16(),
                    accepted: 0,
                    duplicates: n,
                    error: None,
                    field: None,
                }
            }
            Err(e) => DeviceOutcome {
                device_id: id,
                status: e.status.as_u16(),
                accepted: 0,
                duplicates: 0,
                error: Some(e.message),
                field: e.field,
            },
        };
        results.push(outcome);
    }
    if !readings.is_empty() {
        let (_, per_device) = commit(&state, readings).await?;
        for r in results.iter_mut().filter(|r| r.status == 200) {
            let accepted = per_device.get(&r.device_id).copied().unwrap_or(0);
            r.accepted = accepted;
            r.duplicates = r.duplicates.saturating_sub(accepted);
        }
    }
    Ok(Json(MultiIngestOutcome { results }))
}

/// Checks one entry of a multi-device ingest; the error names the field from the body's root
/// (`batches[3].token`). Under `--auto-register` an unknown device is registered here, once
/// its entry proved valid.
async fn check_entry(
    state: &AppState,
    i: usize,
    entry: &DeviceBatch,
    seen: &mut std::collections::HashSet<u32>,
) -> Result<(), ApiError> {
    let id = entry.device_id;
    if !seen.insert(id) {
        return Err(ApiError::bad_request(format!(
            "device {id} has another entry in this request; put all its readings in one entry"
        ))
        .field(format!("batches[{i}].device_id")));
    }
    for (j, r) in entry.readings.iter().enumerate() {
        if r.device_id.is_some_and(|d| d != id) {
            return Err(ApiError::bad_request(format!(
                "reading is for device {}, not device {id}; put it in that device's entry",
                r.device_id.unwrap_or_default()
            ))
            .field(format!("batches[{i}].readings[{j}].device_id")));
        }
    }
    let authorized = authorize_token(state, id, &entry.token)
        .await
        .map_err(|e| match e.status {
            StatusCode::UNAUTHORIZED | StatusCode::BAD_REQUEST => {
                e.field(format!("batches[{i}].token"))
            }
            StatusCode::NOT_FOUND => e.field(format!("batches[{i}].device_id")),
            _ => e,
        })?;
    if let Authorized::Register(token) = authorized {
        auto_register(state, id, token)
            .await
            .map_err(|e| e.field(format!("batches[{i}].token")))?;
    }
    Ok(())
}
