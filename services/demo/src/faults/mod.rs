//! Fault injection: what `cargo xtask demo --faults` and the e2e fault test do to a running
//! stack, and how they measure the healing.
//!
//! A [`Rig`] owns the real processes (service, gateway, QEMU devices) and can break them:
//! - **device reboot**: the device's QEMU is stopped and started again on the same port with a
//!   new random boot id (the emulated board's reset; protocol/SPEC.md 3.1); whatever it had
//!   not sent yet dies with it, as on a real reset, and its new boot starts at `seq` 0.
//! - **gateway `kill -9`**, then a restart after a while: what the gateway held unposted is gone
//!   from the gateway, but every device still holds it (nothing is acked before the service's
//!   2xx) and re-sends it when the new gateway connects and asks.
//! - **service `kill -9`**, then a restart on the same database file and address: the gateway
//!   keeps its batches and retries; a batch committed just before the kill is re-posted and
//!   deduplicated by `(device, boot, seq)`.
//! - **a cut of one device's link**: that device's link runs through a [`Relay`] (a TCP relay
//!   between the gateway and the device's QEMU UART socket); a cut closes both connections and
//!   stops listening, so the gateway's reconnects are refused and QEMU sees its client gone
//!   (it drops what the UART writes; the firmware's outbox keeps every frame). At the end of
//!   the cut the relay listens again, the gateway reconnects and asks for a replay.
//!
//! Healing is measured per device on what the service returns, not on process state: a
//! device has healed when the service holds every `seq` of its current boot from 0 up to a
//! reading the device sampled after the fault ended (by the device's own `uptime_ms`, mapped
//! to the wall clock from the readings received in the steady running before the fault, so
//! an emulated clock that runs a few percent slow does not inflate the figure; see
//! `Prefix::uptime_at`). After a reboot, the first reading of the new boot. So "healed" means
//! its readings flow again *and* the backlog it built up during the fault is stored.
//!
//! The files: `rig.rs` the processes ([`Rig`]), `relay.rs` the cuttable link ([`Relay`]),
//! `heal.rs` the measurement of the healing, `report.rs` what a run reports ([`FaultReport`],
//! [`Timeline`]); this one the [`Plan`] and [`run`], the four faults one after another.

mod heal;
mod relay;
mod report;
mod rig;

pub use relay::Relay;
pub use report::{FaultReport, Healed, Timeline, secs};
pub use rig::{Device, Replica, Rig};

use heal::{Prefix, prefixes};
use std::time::{Duration, Instant};

/// What to break, and for how long.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The device to reboot.
    pub reboot: u32,
    /// The device whose link is cut (it needs a [`Relay`]: [`Rig::add_device`] with
    /// `cuttable`).
    pub cut: u32,
    /// How long the gateway and the service stay down after their `kill -9`.
    pub down: Duration,
    /// How long the link stays cut.
    pub cut_for: Duration,
    /// Steady running before each fault.
    pub settle: Duration,
    /// A fault not healed by then fails the run.
    pub heal_timeout: Duration,
}

impl Plan {
    /// The demo's plan: 3 s outages of the gateway and the service, a 30 s cut.
    pub fn demo(devices: u32) -> Self {
        Self {
            reboot: 1,
            cut: devices.max(1),
            down: Duration::from_secs(3),
            cut_for: Duration::from_secs(30),
            settle: Duration::from_secs(5),
            heal_timeout: Duration::from_secs(60),
        }
    }
}

/// Runs the four faults of `plan` one after another on `rig`, each after `plan.settle` of
/// steady running, and waits for every affected device to heal before the next. Calls
/// `tick` about every 500 ms (the demo redraws its view), and fails as soon as a process
/// ends that the plan did not stop.
pub async fn run(
    rig: &mut Rig,
    plan: &Plan,
    client: &reqwest::Client,
    timeline: &mut Timeline,
    tick: &mut dyn FnMut(&Rig, &Timeline),
) -> Result<Vec<FaultReport>, String> {
    let all: Vec<u32> = rig.devices.iter().map(|d| d.id).collect();
    for id in [plan.reboot, plan.cut] {
        if !all.contains(&id) {
            return Err(format!("the fault plan names device {id}, not in this run"));
        }
    }
    if rig
        .devices
        .iter()
        .find(|d| d.id == plan.cut)
        .is_none_or(|d| d.relay.is_none())
    {
        return Err(format!(
            "device {}'s link has no relay, it cannot be cut",
            plan.cut
        ));
    }
    let mut faults = Faults {
        rig,
        plan,
        client,
        timeline,
        tick,
        all,
        last_tick: Instant::now(),
    };
    Ok(vec![
        faults.reboot().await?,
        faults.kill_and_restart(Killed::Gateway).await?,
        faults.kill_and_restart(Killed::Service).await?,
        faults.cut_link().await?,
    ])
}

/// What the steps of [`run`] share.
struct Faults<'a> {
    rig: &'a mut Rig,
    plan: &'a Plan,
    client: &'a reqwest::Client,
    timeline: &'a mut Timeline,
    tick: &'a mut dyn FnMut(&Rig, &Timeline),
    /// Every device of the run.
    all: Vec<u32>,
    /// When `tick` was last called.
    last_tick: Instant,
}

/// The process a fault kills.
#[derive(Debug, Clone, Copy)]
enum Killed {
    Gateway,
    Service,
}

/// The start of one fault: what was stored just before, and when it was injected.
struct Injection {
    before: Vec<(u32, Prefix)>,
    /// From the start of the run (for the report).
    injected: Duration,
    at: Instant,
}

impl Faults<'_> {
    /// 1. A device reboot.
    async fn reboot(&mut self) -> Result<FaultReport, String> {
        let id = self.plan.reboot;
        let start = self.inject(&[id]).await?;
        self.timeline.note(format!(
            "reboot device {id} (QEMU stopped, started again with a new boot id)"
        ));
        self.rig.reboot(id)?;
        let lasted = start.at.elapsed();
        let boot = self.rig.device(id)?.boot;
        self.timeline
            .note(format!("device {id} booted again (boot id {boot:#010x})"));
        self.healed(format!("reboot device {id}"), start, lasted, Instant::now())
            .await
    }

    /// Faults 2 and 3: `kill -9` the gateway or the service, and `plan.down` later start it
    /// again (the service on the same database).
    async fn kill_and_restart(&mut self, which: Killed) -> Result<FaultReport, String> {
        let start = self.inject(&self.all.clone()).await?;
        let (name, proc) = match which {
            Killed::Gateway => ("gateway", &mut self.rig.gateway),
            Killed::Service => ("service", &mut self.rig.service),
        };
        if let Some(mut p) = proc.take() {
            p.kill9();
        }
        self.timeline.note(format!(
            "kill -9 the {name} (down for {})",
            secs(self.plan.down)
        ));
        self.pause(self.plan.down).await?;
        let restarted = match which {
            Killed::Gateway => {
                self.rig.start_gateway()?;
                "gateway started again".to_owned()
            }
            Killed::Service => {
                self.rig.start_service()?;
                format!(
                    "service started again on the same database ({})",
                    self.rig.service_opts.db.to_string_lossy()
                )
            }
        };
        let restored = Instant::now();
        self.timeline.note(restarted);
        let lasted = restored - start.at;
        self.healed(
            format!("kill -9 the {name}, restart"),
            start,
            lasted,
            restored,
        )
        .await
    }

    /// 4. Cut one device's link.
    async fn cut_link(&mut self) -> Result<FaultReport, String> {
        let id = self.plan.cut;
        let start = self.inject(&[id]).await?;
        if let Some(r) = &self.rig.device(id)?.relay {
            r.cut();
        }
        self.timeline.note(format!(
            "cut device {id}'s link (for {})",
            secs(self.plan.cut_for)
        ));
        self.pause(self.plan.cut_for).await?;
        if let Some(r) = &self.rig.device(id)?.relay {
            r.restore();
        }
        let restored = Instant::now();
        self.timeline.note(format!("device {id}'s link restored"));
        let lasted = restored - start.at;
        self.healed(format!("cut device {id}'s link"), start, lasted, restored)
            .await
    }

    /// Steady running for `plan.settle`, then the stored prefix of each of `ids`: the moment
    /// just before a fault.
    async fn inject(&mut self, ids: &[u32]) -> Result<Injection, String> {
        self.pause(self.plan.settle).await?;
        let before = prefixes(self.rig, self.client, ids).await?;
        Ok(Injection {
            before,
            injected: self.timeline.now(),
            at: Instant::now(),
        })
    }

    /// Waits for the devices of `start` to heal from the fault restored at `restored`; the
    /// fault's report.
    async fn healed(
        &mut self,
        what: String,
        start: Injection,
        lasted: Duration,
        restored: Instant,
    ) -> Result<FaultReport, String> {
        let healed = self.heal(start.at, restored, start.before).await?;
        Ok(FaultReport {
            what,
            injected: start.injected,
            lasted,
            healed,
        })
    }

    /// Lets `d` pass, ticking and checking that the processes still run.
    async fn pause(&mut self, d: Duration) -> Result<(), String> {
        let until = Instant::now() + d;
        loop {
            self.poll()?;
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            tokio::time::sleep((until - now).min(Duration::from_millis(100))).await;
        }
    }

    /// Checks that the processes still run; calls `tick` if 500 ms have passed since the last.
    fn poll(&mut self) -> Result<(), String> {
        self.rig.check_alive()?;
        if self.last_tick.elapsed() >= Duration::from_millis(500) {
            self.last_tick = Instant::now();
            (self.tick)(self.rig, self.timeline);
        }
        Ok(())
    }
}
