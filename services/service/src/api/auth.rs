//! Tokens: bearer parsing, constant-time comparison, generation and rules; who may ingest
//! (checked from the headers, before the body) and who may read.

use super::*;

pub(super) fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Compares without an early exit, so response timing does not leak the token's prefix.
pub(super) fn same_token(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

pub(super) fn new_token() -> Result<String, ApiError> {
    use std::io::Read as _;
    let mut bytes = [0u8; 32]; // 256 bits: a hash of it is as good as a slow password hash
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot generate a token: {e}"),
            )
        })?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

pub(super) fn validate_token(token: &str) -> Result<(), ApiError> {
    if token.is_empty() || token.len() > 256 || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(ApiError::bad_request(
            "token must be 1..=256 printable ascii characters, no spaces",
        )
        .field("token"));
    }
    Ok(())
}

/// What [`authorize`] found: a known device with the right token, or (under
/// `--auto-register`) an unknown one to register once its request turned out valid.
pub(super) enum Authorized {
    Known,
    Register(String),
}

/// Checks the bearer token of an ingest, from the headers alone (before any body is read).
/// Under `--auto-register` an unknown device is not registered here: the caller registers it
/// only after the whole request was found valid, so a rejected request claims nothing.
pub(super) async fn authorize(
    state: &AppState,
    id: u32,
    headers: &HeaderMap,
) -> Result<Authorized, ApiError> {
    let Some(presented) = bearer(headers) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "missing token: send `Authorization: Bearer <device token>`",
        ));
    };
    authorize_token(state, id, presented).await
}

/// Checks a device's ingest token, wherever it came from (the bearer header of its own URL,
/// or its entry in a multi-device ingest): the same rules and the same token cache.
pub(super) async fn authorize_token(
    state: &AppState,
    id: u32,
    presented: &str,
) -> Result<Authorized, ApiError> {
    match state.token_of(id).await? {
        Some(expected) if same_token(&token_hash(presented), &expected) => Ok(Authorized::Known),
        Some(_) => Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("wrong token for device {id}"),
        )),
        // Never together with a provisioning token (refused at start-up by `Config::check`;
        // checked here too for states built without it): trust on first use would let anyone
        // claim an id the operator means to provision.
        None if state.config.auto_register && state.config.provisioning_token.is_none() => {
            validate_token(presented)?;
            Ok(Authorized::Register(presented.to_owned()))
        }
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("unknown device {id}; register it first with POST /api/v1/devices"),
        )),
    }
}

/// Registers a device under `--auto-register` with the token it presented.
pub(super) async fn auto_register(
    state: &AppState,
    id: u32,
    token: String,
) -> Result<(), ApiError> {
    let hash = token_hash(&token);
    let device = NewDevice {
        id: Some(id),
        token: hash.clone(),
        name: None,
    };
    state.store.register(device).await.map_err(|e| match e {
        StoreError::Conflict(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            format!("wrong token for device {id}"),
        ),
        e => e.into(),
    })?;
    state.remember(id, &hash);
    Ok(())
}

/// Reads (device list, readings, latest, stream) are open unless the service runs with
/// `--provisioning-token` or `--read-token`; then they need one of the two as a bearer token.
pub(super) fn authorize_read(state: &AppState, headers: &HeaderMap) -> Result<(), ApiError> {
    let accepted = [
        state.config.read_token.as_deref(),
        state.config.provisioning_token.as_deref(),
    ];
    if accepted.iter().all(Option::is_none) {
        return Ok(());
    }
    let presented = bearer(headers);
    // Both compared, always: timing says nothing about which one (if any) matched.
    let ok = accepted.iter().fold(false, |ok, expected| {
        let hit = matches!((presented, expected), (Some(p), Some(e)) if same_token(p, e));
        ok | hit
    });
    if ok {
        Ok(())
    } else {
        Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "reads need a token: send `Authorization: Bearer <BEACON_READ_TOKEN or BEACON_PROVISIONING_TOKEN>`",
        ))
    }
}
