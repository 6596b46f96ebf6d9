//! Measuring the healing (see the module docs of [`super`]): how far each device's current boot
//! is stored without a gap ([`Prefix`]), and the wait until every affected device has healed.

use super::{Faults, Healed, Rig, secs};
use crate::StoredReading;
use serde::Deserialize;
use std::time::{Duration, Instant};

#[derive(Debug, Deserialize)]
struct Page {
    readings: Vec<StoredReading>,
    #[serde(default)]
    next_after_boot: Option<u32>,
    next_after_seq: Option<u32>,
}

/// How far one device's current boot is stored without a gap.
#[derive(Debug, Clone, Default)]
pub(super) struct Prefix {
    boot: u32,
    /// The first seq not stored (all below are).
    next: u32,
    /// `uptime_ms` of the reading `next - 1`.
    uptime_ms: Option<u64>,
    /// Readings counted into the prefix so far.
    count: u64,
    /// `(uptime_ms, received_at_ms - uptime_ms)` of each reading in the prefix: how the
    /// device's clock maps to the wall clock (see [`Prefix::uptime_at`]).
    offsets: Vec<(u64, i64)>,
}

impl Prefix {
    pub(super) fn new(boot: u32) -> Self {
        Self {
            boot,
            ..Self::default()
        }
    }

    /// The device's uptime at wall-clock time `wall_ms`, from the readings the service
    /// received since `since_ms` (steady running: none of them held back by a fault).
    ///
    /// The emulated clock is not the wall clock: under load QEMU's SysTick falls behind (about
    /// 3-6 % measured on this machine, seconds after a minute), so "uptime since launch" would
    /// wait for readings sampled seconds after the fault ended. Each reading's
    /// `received_at_ms - uptime_ms` is the device's boot time on the wall clock plus its
    /// transit delay and the lag so far; the lowest in each half of the window (the fastest
    /// transits) gives two points of that line, and the line gives the uptime at `wall_ms`
    /// (early by the fastest transit, a few ms). `None` with fewer than 4 readings.
    fn uptime_at(&self, wall_ms: i64, since_ms: i64) -> Option<u64> {
        let steady: Vec<(u64, i64)> = self
            .offsets
            .iter()
            .copied()
            .filter(|&(u, o)| o.saturating_add(i64::try_from(u).unwrap_or(i64::MAX)) >= since_ms)
            .collect();
        if steady.len() < 4 {
            return None;
        }
        let (early, late) = steady.split_at(steady.len() / 2);
        // The lowest offset once the lag found so far is taken out (a few rounds: the first
        // guess, with no lag, favours the early readings of each half).
        let lowest = |s: &[(u64, i64)], lag: f64| {
            s.iter().copied().min_by(|a, b| {
                (a.1 as f64 - lag * a.0 as f64).total_cmp(&(b.1 as f64 - lag * b.0 as f64))
            })
        };
        let mut lag = 0.0;
        let (mut ub, mut ob) = lowest(late, lag)?;
        for _ in 0..4 {
            let (ua, oa) = lowest(early, lag)?;
            (ub, ob) = lowest(late, lag)?;
            if ub <= ua + 500 {
                break;
            }
            lag = ((ob - oa) as f64 / (ub - ua) as f64).clamp(-0.2, 0.2);
        }
        // wall = u + ob + lag * (u - ub), solved for u.
        let u = ((wall_ms - ob) as f64 + lag * ub as f64) / (1.0 + lag);
        Some(u.max(0.0) as u64)
    }

    /// Extends the prefix with what the service holds now. `Err` when it cannot be asked
    /// (e.g. it is down); `uptimes` gets the uptime of each reading added.
    async fn advance(
        &mut self,
        client: &reqwest::Client,
        base: &str,
        id: u32,
        uptimes: &mut Vec<u64>,
    ) -> Result<(), String> {
        loop {
            let mut url = format!(
                "{base}/api/v1/devices/{id}/readings?limit=1000&after_boot={}",
                self.boot
            );
            if let Some(prev) = self.next.checked_sub(1) {
                url.push_str(&format!("&after_seq={prev}"));
            }
            let resp = client
                .get(&url)
                .timeout(Duration::from_secs(2))
                .send()
                .await
                .map_err(|e| format!("query {url}: {e}"))?;
            if resp.status() == reqwest::StatusCode::NOT_FOUND {
                return Ok(());
            }
            if !resp.status().is_success() {
                return Err(format!("query {url}: {}", resp.status()));
            }
            let page: Page = resp.json().await.map_err(|e| format!("query {url}: {e}"))?;
            for r in &page.readings {
                if r.boot != self.boot || r.seq != self.next {
                    return Ok(());
                }
                self.next = self.next.wrapping_add(1);
                self.uptime_ms = Some(r.uptime_ms);
                self.count += 1;
                uptimes.push(r.uptime_ms);
                let uptime = i64::try_from(r.uptime_ms).unwrap_or(i64::MAX);
                self.offsets
                    .push((r.uptime_ms, r.received_at_ms.saturating_sub(uptime)));
            }
            if page.next_after_seq.is_none() || page.next_after_boot != Some(self.boot) {
                return Ok(());
            }
        }
    }
}

/// Each device's stored prefix, just before a fault.
pub(super) async fn prefixes(
    rig: &Rig,
    client: &reqwest::Client,
    ids: &[u32],
) -> Result<Vec<(u32, Prefix)>, String> {
    let mut out = Vec::new();
    for &id in ids {
        let boot = rig
            .devices
            .iter()
            .find(|d| d.id == id)
            .map(|d| d.boot)
            .ok_or_else(|| format!("no device {id}"))?;
        let mut p = Prefix::new(boot);
        p.advance(client, &rig.base, id, &mut Vec::new()).await?;
        out.push((id, p));
    }
    Ok(out)
}

/// One device waited for by [`Faults::heal`].
struct Watch {
    id: u32,
    prefix: Prefix,
    /// The device uptime at `restored` (at most: QEMU takes a moment to start).
    after_uptime: u64,
    backlog: u64,
    done: Option<Duration>,
}

impl Faults<'_> {
    /// Waits until every device in `before` has healed (see the module docs): its current boot
    /// stored without a gap up to a reading sampled after `restored`.
    pub(super) async fn heal(
        &mut self,
        injected: Instant,
        restored: Instant,
        before: Vec<(u32, Prefix)>,
    ) -> Result<Vec<Healed>, String> {
        let mut watches = self.watches(injected, restored, before)?;
        let deadline = restored + self.plan.heal_timeout;
        loop {
            let mut pending = 0;
            for w in &mut watches {
                if w.done.is_some() {
                    continue;
                }
                if !self.has_healed(w, injected, restored).await {
                    pending += 1;
                }
            }
            if pending == 0 || Instant::now() >= deadline {
                break;
            }
            self.poll()?;
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        for w in watches.iter().filter(|w| w.done.is_none()) {
            self.timeline.note(format!(
                "device {} NOT healed after {}: stored without a gap up to seq {} of boot {:#010x}",
                w.id,
                secs(self.plan.heal_timeout),
                w.prefix.next.saturating_sub(1),
                w.prefix.boot
            ));
        }
        Ok(watches
            .into_iter()
            .map(|w| Healed {
                device: w.id,
                after: w.done,
                backlog: w.backlog,
            })
            .collect())
    }

    /// What to wait for per device: the reading it sampled when the fault ended.
    fn watches(
        &self,
        injected: Instant,
        restored: Instant,
        before: Vec<(u32, Prefix)>,
    ) -> Result<Vec<Watch>, String> {
        let settle_ms = i64::try_from(self.plan.settle.as_millis()).unwrap_or(0);
        let mut watches = Vec::new();
        for (id, prefix) in before {
            let d = self
                .rig
                .devices
                .iter()
                .find(|d| d.id == id)
                .ok_or_else(|| format!("no device {id}"))?;
            // A rebooted device: its new boot, from seq 0.
            let prefix = if d.boot == prefix.boot {
                prefix
            } else {
                Prefix::new(d.boot)
            };
            let since_launch =
                u64::try_from(restored.saturating_duration_since(d.launched).as_millis())
                    .unwrap_or(0);
            // A rebooted device: every reading of its new boot is after the fault.
            let after_uptime = if prefix.count == 0 {
                0
            } else {
                prefix
                    .uptime_at(wall_ms(restored), wall_ms(injected) - settle_ms)
                    .unwrap_or(since_launch)
            };
            watches.push(Watch {
                id,
                prefix,
                after_uptime,
                backlog: 0,
                done: None,
            });
        }
        Ok(watches)
    }

    /// Extends `w`'s prefix with what the service holds now; whether the device has healed
    /// (noted on the timeline when it has).
    async fn has_healed(&mut self, w: &mut Watch, injected: Instant, restored: Instant) -> bool {
        let mut uptimes = Vec::new();
        // The service may still be starting: try again on the next round.
        let _ = w
            .prefix
            .advance(self.client, &self.rig.base, w.id, &mut uptimes)
            .await;
        w.backlog += uptimes.iter().filter(|&&u| u < w.after_uptime).count() as u64;
        if !w.prefix.uptime_ms.is_some_and(|u| u >= w.after_uptime) {
            return false;
        }
        let after = injected.elapsed();
        w.done = Some(after);
        self.timeline.note(format!(
            "device {} healed: {} after the injection, {} after the restore; backlog of {} readings stored, up to (boot {:#010x}, seq {})",
            w.id,
            secs(after),
            secs(restored.elapsed()),
            w.backlog,
            w.prefix.boot,
            w.prefix.next.saturating_sub(1)
        ));
        true
    }
}

/// `at` on the wall clock, Unix ms (as the service's `received_at_ms`).
fn wall_ms(at: Instant) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(0));
    now - i64::try_from(at.elapsed().as_millis()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A device clock 5 % slow against the wall clock, transits of 10-59 ms: the uptime at a
    /// wall time is found within a few ms, not off by the lag accumulated since boot.
    #[test]
    fn uptime_at_follows_a_slow_device_clock() {
        let boot_wall = 1_000_000i64;
        let mut p = Prefix::new(7);
        for k in 0..60u64 {
            let uptime = k * 100;
            let sampled = boot_wall + (uptime as f64 * 1.05) as i64;
            let received = sampled + 10 + ((k * 37) % 50) as i64;
            p.offsets.push((uptime, received - uptime as i64));
        }
        let wall = boot_wall + 9_000;
        let expected = (9_000.0 / 1.05) as i64;
        let got = p.uptime_at(wall, 0).unwrap() as i64;
        // Early by about the fastest transit (10 ms); "uptime since launch" would say 9000,
        // 429 ms late.
        assert!((0..=15).contains(&(expected - got)), "{got} vs {expected}");
        // Only the readings received since `since_ms` count; too few: no estimate.
        assert_eq!(p.uptime_at(wall, boot_wall + 6_100), None);
        assert!(p.uptime_at(wall, boot_wall + 5_000).is_some());
    }
}
