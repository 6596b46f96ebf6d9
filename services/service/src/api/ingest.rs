//! `POST /api/v1/devices/{id}/readings`: JSON or concatenated frames, authorised from the
//! headers, answered after the store committed.

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
    let received_at_ms = now_millis();
    let readings: Vec<StoredReading> = readings
        .into_iter()
        .map(|r| StoredReading {
            device_id: id,
            boot: r.boot,
            seq: r.seq,
            uptime_ms: r.uptime_ms,
            sampled_at_ms: r.sampled_at_ms.unwrap_or(received_at_ms),
            received_at_ms,
            values: r.values,
        })
        .collect();
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
    state.metrics.ingested(outcome.accepted, outcome.duplicates);
    if outcome.accepted > 0 && state.events.receiver_count() > 0 {
        // No receiver, no copy: the common case under load pays nothing for the stream.
        let _ = state.events.send(Arc::from(ingested.accepted));
    }
    Ok(Json(outcome))
}
