//! The final check: every frame of each device's [`Ledger`] read back through the query API;
//! what is neither stored nor dropped by the device itself is lost.

use crate::Config;
use crate::device::Ledger;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// How many of `ledger`'s frames the service has stored; the ones it has not, minus
/// device-side drops, are lost.
async fn check_device(
    client: &reqwest::Client,
    config: &Config,
    id: u32,
    ledger: &Ledger,
) -> Result<(u64, u64), String> {
    let mut stored: HashSet<(u32, u32)> = HashSet::new();
    let mut after: Option<(u32, u32)> = None;
    loop {
        let mut url = format!(
            "{}/api/v1/devices/{id}/readings?limit=10000",
            config.service
        );
        if let Some((b, s)) = after {
            url.push_str(&format!("&after_boot={b}&after_seq={s}"));
        }
        let mut req = client.get(&url);
        if let Some(t) = &config.read_token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.map_err(|e| format!("GET {url}: {e}"))?;
        if resp.status() == reqwest::StatusCode::NOT_FOUND {
            break; // never registered: nothing stored
        }
        if !resp.status().is_success() {
            return Err(format!("GET {url} answered {}", resp.status()));
        }
        let page: serde_json::Value = resp
            .json()
            .await
            .map_err(|e| format!("GET {url}: bad JSON: {e}"))?;
        for r in page["readings"].as_array().into_iter().flatten() {
            let boot = r["boot"].as_u64().and_then(|b| u32::try_from(b).ok());
            let seq = r["seq"].as_u64().and_then(|s| u32::try_from(s).ok());
            if let (Some(b), Some(s)) = (boot, seq) {
                stored.insert((b, s));
            }
        }
        match (
            page["next_after_boot"].as_u64(),
            page["next_after_seq"].as_u64(),
        ) {
            (Some(b), Some(s)) => {
                after = Some((u32::try_from(b).unwrap_or(0), u32::try_from(s).unwrap_or(0)));
            }
            _ => break,
        }
    }
    let mut found = 0u64;
    let mut lost = 0u64;
    for &(boot, n) in &ledger.boots {
        for seq in 0..n {
            if stored.contains(&(boot, seq)) {
                found += 1;
            } else if !ledger.dropped.contains(&(boot, seq)) {
                lost += 1;
            }
        }
    }
    Ok((found, lost))
}

/// Reads back, 16 devices at a time, what the service stored of each device's ledger:
/// (stored, lost) over the fleet.
pub(crate) async fn check_all(
    client: &reqwest::Client,
    config: &Arc<Config>,
    ledgers: Vec<(u32, Ledger)>,
) -> Result<(u64, u64), String> {
    let mut stored = 0u64;
    let mut lost = 0u64;
    let mut checks = tokio::task::JoinSet::new();
    let ledgers = Arc::new(ledgers);
    let next = Arc::new(AtomicU64::new(0));
    for _ in 0..16 {
        let client = client.clone();
        let config = Arc::clone(config);
        let ledgers = Arc::clone(&ledgers);
        let next = Arc::clone(&next);
        checks.spawn(async move {
            let mut found = 0u64;
            let mut lost = 0u64;
            loop {
                let i = usize::try_from(next.fetch_add(1, Relaxed)).unwrap_or(usize::MAX);
                let Some((id, ledger)) = ledgers.get(i) else {
                    break;
                };
                let (f, l) = check_device(&client, &config, *id, ledger).await?;
                found += f;
                lost += l;
            }
            Ok::<_, String>((found, lost))
        });
    }
    while let Some(joined) = checks.join_next().await {
        let (f, l) = joined.map_err(|e| format!("a check task failed: {e}"))??;
        stored += f;
        lost += l;
    }
    Ok((stored, lost))
}
