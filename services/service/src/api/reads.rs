//! The read side: one device's readings (paged), the latest of each device (paged), the
//! live SSE stream.

use super::*;

/// Query parameters of `GET /api/v1/devices/{id}/readings`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ReadingsParams {
    #[serde(default, deserialize_with = "query_int")]
    pub(super) from: Option<i64>,
    #[serde(default, deserialize_with = "query_int")]
    pub(super) to: Option<i64>,
    #[serde(default, deserialize_with = "query_int")]
    pub(super) limit: Option<u32>,
    #[serde(default, deserialize_with = "query_int")]
    pub(super) after_boot: Option<u32>,
    #[serde(default, deserialize_with = "query_int")]
    pub(super) after_seq: Option<u32>,
}

pub(super) const MAX_PAGE: u32 = 10_000;

/// `GET /api/v1/devices/{id}/readings?from=&to=&limit=&after_boot=&after_seq=`, in `(boot,
/// seq)` order; the next page starts after the `next_after_boot`/`next_after_seq` cursor.
pub(super) async fn query_readings(
    State(state): State<Arc<AppState>>,
    id: Result<Path<u32>, PathRejection>,
    headers: HeaderMap,
    params: Result<Query<ReadingsParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize_read(&state, &headers)?;
    let Path(id) = id?;
    let Query(p) = params?;
    if state.token_of(id).await?.is_none() {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown device {id}; list devices with GET /api/v1/devices"),
        ));
    }
    let limit = p.limit.unwrap_or(1000);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::bad_request(format!("limit must be 1..={MAX_PAGE}")).field("limit"));
    }
    let query = ReadingQuery {
        device_id: id,
        from_ms: p.from.unwrap_or(i64::MIN),
        to_ms: p.to.unwrap_or(i64::MAX),
        after_boot: p.after_boot,
        after_seq: p.after_seq,
        limit,
    };
    let started = Instant::now();
    let readings = state.store.query(query).await?;
    state.metrics.store_read_latency(started.elapsed());
    let next = if readings.len() == limit as usize {
        readings.last().map(|r| (r.boot, r.seq))
    } else {
        None
    };
    Ok(Json(crate::model::ReadingsPage {
        readings,
        next_after_boot: next.map(|(boot, _)| boot),
        next_after_seq: next.map(|(_, seq)| seq),
    })
    .into_response())
}

/// `GET /api/v1/latest`: the most recent reading of each device.
/// Query parameters of `GET /api/v1/latest`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct LatestParams {
    #[serde(default, deserialize_with = "query_int")]
    pub(super) limit: Option<u32>,
    #[serde(default, deserialize_with = "query_int")]
    pub(super) after_device: Option<u32>,
}

/// `GET /api/v1/latest?limit=&after_device=`: the newest reading of each device, in device id
/// order. Without `limit`, every device (as before); with it, one page, and
/// `next_after_device` names the cursor of the next one (absent on the last page). A fleet
/// of 10,000 devices is 10,000 readings: a dashboard should page.
pub(super) async fn latest(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<LatestParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize_read(&state, &headers)?;
    let Query(p) = params?;
    if p.limit.is_some_and(|l| l == 0 || l > MAX_PAGE) {
        return Err(ApiError::bad_request(format!("limit must be 1..={MAX_PAGE}")).field("limit"));
    }
    let started = Instant::now();
    let mut readings = state.store.latest().await?;
    state.metrics.store_read_latency(started.elapsed());
    readings.sort_unstable_by_key(|r| r.device_id);
    if let Some(after) = p.after_device {
        readings.retain(|r| r.device_id > after);
    }
    let next = match p.limit {
        Some(limit) if readings.len() > limit as usize => {
            readings.truncate(limit as usize);
            readings.last().map(|r| r.device_id)
        }
        _ => None,
    };
    let mut body = serde_json::json!({ "readings": readings });
    if let Some(next) = next {
        body["next_after_device"] = next.into();
    }
    Ok(Json(body).into_response())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StreamParams {
    #[serde(default, deserialize_with = "query_int")]
    pub(super) device_id: Option<u32>,
}

/// Decrements the SSE gauge when the stream is dropped (client gone or shutdown).
pub(super) struct SseGuard(Arc<AppState>);
impl Drop for SseGuard {
    fn drop(&mut self) {
        self.0.metrics.sse_clients(-1);
    }
}

/// `GET /api/v1/stream`: newly stored readings as server-sent events (`event: readings`, data a
/// JSON array). A client too slow to keep up gets `event: lagged` with the number of skipped
/// batches, and the stream carries on.
pub(super) async fn stream(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    params: Result<Query<StreamParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    authorize_read(&state, &headers)?;
    let Query(p) = params?;
    state.metrics.sse_clients(1);
    let guard = SseGuard(Arc::clone(&state));
    let rx = state.events.subscribe();
    // Cancellation on shutdown: the stream ends when the shutdown token fires, so graceful
    // shutdown does not wait forever on open streams.
    let events = tokio_stream::wrappers::BroadcastStream::new(rx)
        .take_until(state.shutdown.clone().cancelled_owned())
        .filter_map(move |msg| {
            let _keep = &guard;
            let event = match msg {
                Ok(batch) => {
                    let selected: Vec<&StoredReading> = batch
                        .iter()
                        .filter(|r| p.device_id.is_none_or(|d| d == r.device_id))
                        .collect();
                    if selected.is_empty() {
                        None
                    } else {
                        Event::default().event("readings").json_data(&selected).ok()
                    }
                }
                Err(tokio_stream::wrappers::errors::BroadcastStreamRecvError::Lagged(n)) => Some(
                    Event::default()
                        .event("lagged")
                        .data(format!("{{\"skipped\":{n}}}")),
                ),
            };
            std::future::ready(event.map(Ok::<_, std::convert::Infallible>))
        });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}
