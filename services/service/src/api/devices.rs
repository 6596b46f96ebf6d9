//! `POST /api/v1/devices` (registration) and `GET /api/v1/devices`.

use super::*;

/// A JSON body as `T`, or a 400 naming the field (`readings[3].values[0]`) that is wrong.
pub(super) fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    // Plain serde_json first: tracking the path costs on every field of every reading, and
    // nearly every body is good. Only a body that fails is read again, for the path.
    if let Ok(value) = serde_json::from_slice(body) {
        return Ok(value);
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    let value: T = serde_path_to_error::deserialize(&mut *de).map_err(|e| {
        let path = e.path().to_string();
        let err = ApiError::bad_request(format!("invalid json: {}", e.inner()));
        if path == "." { err } else { err.field(path) }
    })?;
    de.end()
        .map_err(|e| ApiError::bad_request(format!("invalid json: {e}")))?;
    Ok(value)
}

/// `POST /api/v1/devices`: register a device (idempotent with an explicit id and token).
pub(super) async fn register(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    request: Request,
) -> Result<Response, ApiError> {
    if let Some(expected) = &state.config.provisioning_token
        && !bearer(&headers).is_some_and(|t| same_token(t, expected))
    {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "registration needs the provisioning token: send `Authorization: Bearer <BEACON_PROVISIONING_TOKEN>`",
        ));
    }
    // Like ingest: a body must say it is JSON. Only a request without a body (the service
    // picks the id and the token) may leave the content type out.
    let media = media_type(&headers);
    let unsupported = |media: &str| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "unsupported content type {media:?}; send `Content-Type: application/json` with a body (or no body at all)"
            ),
        )
    };
    if !media.is_empty() && media != "application/json" {
        return Err(unsupported(&media));
    }
    // Read only now, after the provisioning token was checked from the headers.
    let body = Bytes::from_request(request, &state).await?;
    let req: RegisterRequest = if body.is_empty() {
        RegisterRequest::default()
    } else if media.is_empty() {
        return Err(unsupported(""));
    } else {
        parse_json(&body)?
    };
    let (token, generated) = match req.token {
        Some(t) => {
            validate_token(&t)?;
            (t, false)
        }
        None => (new_token()?, true),
    };
    let hash = token_hash(&token);
    let mut registered = state
        .store
        .register(NewDevice {
            id: req.id,
            token: hash.clone(),
            name: req.name,
        })
        .await?;
    state.remember(registered.device.id, &hash);
    // The only time a token leaves the service: one it generated, in the answer that created
    // it (it keeps the hash only). A token the client chose is never echoed.
    if generated {
        registered.token = Some(token);
    }
    let status = if registered.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(registered)).into_response())
}

/// `GET /api/v1/devices`.
pub(super) async fn list_devices(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    authorize_read(&state, &headers)?;
    let started = Instant::now();
    let devices = state.store.devices().await?;
    state.metrics.store_read_latency(started.elapsed());
    let devices: Vec<_> = devices.into_iter().map(|d| d.device).collect();
    Ok(Json(serde_json::json!({ "devices": devices })).into_response())
}
