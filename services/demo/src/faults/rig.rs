//! The processes of one run: a [`Rig`] owns the service (and its replicas), the gateway and the
//! QEMU devices, starts them, and can break them (reboot a device, kill and restart the others).

use super::Relay;
use crate::{Paths, Proc, ServiceOpts, qemu_command, read_stats, start_gateway};
use beacon_gateway::metrics::{DeviceStats, Stats};
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// One QEMU device of a [`Rig`].
#[derive(Debug)]
pub struct Device {
    /// Its device id.
    pub id: u32,
    /// Its QEMU process.
    pub proc: Proc,
    /// The boot id of its current boot.
    pub boot: u32,
    /// When its current QEMU was launched (its uptime counts from about then).
    pub launched: Instant,
    /// Its UART's TCP server port (QEMU `-serial tcp:...,server=on`).
    pub qemu_port: u16,
    /// The relay in front of it, if its link can be cut.
    pub relay: Option<Relay>,
    /// Boots so far (launches).
    pub boots: u32,
}

impl Device {
    /// Where the gateway connects for this device: its relay, or QEMU itself.
    pub fn link(&self) -> String {
        let port = self.relay.as_ref().map_or(self.qemu_port, Relay::port);
        format!("tcp:127.0.0.1:{port}")
    }
}

/// The processes of one run: the service, the gateway, the QEMU devices.
#[derive(Debug)]
pub struct Rig {
    /// The binaries.
    pub paths: Paths,
    /// Logs, stats files, the database.
    pub workdir: PathBuf,
    /// The devices' sampling period.
    pub period_ms: u32,
    /// The service, `None` while it is down.
    pub service: Option<Proc>,
    /// How it was started (its `listen` is the address it got, so a restart keeps it).
    pub service_opts: ServiceOpts,
    /// `http://` + its address.
    pub base: String,
    /// The gateway, `None` while it is down.
    pub gateway: Option<Proc>,
    /// Gateway starts so far; each run writes its own stats file.
    pub gateway_runs: u32,
    /// Links for the gateway when there are no QEMU devices (e.g. `rtt:`).
    pub other_links: Vec<String>,
    /// Extra gateway flags.
    pub gateway_extra: Vec<String>,
    /// The QEMU devices.
    pub devices: Vec<Device>,
    /// More service replicas on the same database (`--replicas`; the first is `service`):
    /// the gateway spreads batches across all of them.
    pub replicas: Vec<Replica>,
}

/// A service replica beyond the first (same database, its own address).
#[derive(Debug)]
pub struct Replica {
    /// Its process.
    pub proc: Proc,
    /// `http://` + its address.
    pub base: String,
}

impl Rig {
    /// A rig around a running service (no gateway, no devices yet).
    pub fn new(
        paths: Paths,
        workdir: PathBuf,
        period_ms: u32,
        service: Proc,
        service_opts: ServiceOpts,
    ) -> Self {
        let base = format!("http://{}", service_opts.listen);
        Self {
            paths,
            workdir,
            period_ms,
            service: Some(service),
            service_opts,
            base,
            gateway: None,
            gateway_runs: 0,
            other_links: Vec::new(),
            gateway_extra: Vec::new(),
            devices: Vec::new(),
            replicas: Vec::new(),
        }
    }

    /// Starts one more replica like the first (same database) on any free port, its log
    /// `service-N.log`; it is ready when this returns.
    pub async fn add_replica(&mut self, client: &reqwest::Client) -> Result<(), String> {
        let n = self.replicas.len() + 2;
        let opts = ServiceOpts {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            console: None,
            log: self.workdir.join(format!("service-{n}.log")),
            ..self.service_opts.clone()
        };
        let (proc, addr) = crate::start_service(&self.paths, &opts)?;
        let base = format!("http://{addr}");
        crate::wait_ready(client, &base, Duration::from_secs(10)).await?;
        self.replicas.push(Replica { proc, base });
        Ok(())
    }

    /// Every replica's base URL, the first one first.
    pub fn bases(&self) -> Vec<String> {
        std::iter::once(self.base.clone())
            .chain(self.replicas.iter().map(|r| r.base.clone()))
            .collect()
    }

    /// The stats file of gateway run `run` (from 1).
    pub fn stats_file_of(&self, run: u32) -> PathBuf {
        self.workdir.join(format!("gateway-stats-{run}.json"))
    }

    /// The stats file of the current (last) gateway run.
    pub fn stats_file(&self) -> PathBuf {
        self.stats_file_of(self.gateway_runs.max(1))
    }

    /// Adds QEMU device `id`, on a free port, with a [`Relay`] in front when `cuttable`.
    pub fn add_device(&mut self, id: u32, cuttable: bool) -> Result<(), String> {
        let qemu_port = crate::free_port()?;
        let relay = if cuttable {
            Some(Relay::start(SocketAddr::from(([127, 0, 0, 1], qemu_port)))?)
        } else {
            None
        };
        let (proc, boot) = self.launch(id, qemu_port)?;
        self.devices.push(Device {
            id,
            proc,
            boot,
            launched: Instant::now(),
            qemu_port,
            relay,
            boots: 1,
        });
        Ok(())
    }

    fn launch(&self, id: u32, port: u16) -> Result<(Proc, u32), String> {
        let (mut cmd, boot) = qemu_command(
            &self.paths,
            &format!("tcp:127.0.0.1:{port},server=on,wait=off"),
            &format!("device-id={id} period-ms={}", self.period_ms),
        )?;
        let log = self.workdir.join(format!("qemu-{id}.log"));
        Ok((
            Proc::spawn(&format!("qemu device {id}"), &mut cmd, &log)?,
            boot,
        ))
    }

    /// Starts the gateway on every device's link (a new stats file per run).
    pub fn start_gateway(&mut self) -> Result<(), String> {
        self.gateway_runs += 1;
        let links: Vec<String> = self
            .devices
            .iter()
            .map(Device::link)
            .chain(self.other_links.iter().cloned())
            .collect();
        let extra: Vec<&str> = self.gateway_extra.iter().map(String::as_str).collect();
        self.gateway = Some(start_gateway(
            &self.paths,
            &self.bases(),
            &links,
            &self.stats_file(),
            &self.workdir.join("gateway.log"),
            &extra,
        )?);
        Ok(())
    }

    /// Starts the service again on the same database file and address.
    pub fn start_service(&mut self) -> Result<(), String> {
        let (proc, addr) = crate::start_service(&self.paths, &self.service_opts)?;
        if addr != self.service_opts.listen {
            return Err(format!(
                "the restarted service listens on {addr}, not {}",
                self.service_opts.listen
            ));
        }
        self.service = Some(proc);
        Ok(())
    }

    pub(super) fn device(&mut self, id: u32) -> Result<&mut Device, String> {
        self.devices
            .iter_mut()
            .find(|d| d.id == id)
            .ok_or_else(|| format!("no device {id} in this run"))
    }

    /// Stops device `id`'s QEMU and boots it again on the same port with a new boot id.
    pub fn reboot(&mut self, id: u32) -> Result<(), String> {
        let port = {
            let d = self.device(id)?;
            d.proc.terminate(Duration::from_secs(2));
            d.qemu_port
        };
        let (proc, boot) = self.launch(id, port)?;
        let d = self.device(id)?;
        d.proc = proc;
        d.boot = boot;
        d.launched = Instant::now();
        d.boots += 1;
        Ok(())
    }

    /// Ends a fault in progress (a stop in the middle of the plan): the service and the
    /// gateway started again if down, cut links restored. Whether there was one.
    pub fn undo_faults(&mut self) -> Result<bool, String> {
        let mut undone = false;
        if self.service.is_none() {
            self.start_service()?;
            undone = true;
        }
        if self.gateway.is_none() {
            self.start_gateway()?;
            undone = true;
        }
        for r in self.devices.iter().filter_map(|d| d.relay.as_ref()) {
            if r.is_cut() {
                r.restore();
                undone = true;
            }
        }
        Ok(undone)
    }

    /// `Err` naming the first process that ended though nobody stopped it.
    pub fn check_alive(&mut self) -> Result<(), String> {
        let log_error = |p: &Proc| {
            let log = std::fs::read_to_string(&p.log).unwrap_or_default();
            log.lines()
                .rev()
                .find(|l| l.starts_with("error:"))
                .unwrap_or("no error line")
                .to_owned()
        };
        if let Some(g) = self.gateway.as_mut()
            && let Some(status) = g.try_wait()
        {
            return Err(format!(
                "the gateway stopped ({status}): {}; see {}",
                log_error(g),
                g.log.display()
            ));
        }
        if let Some(s) = self.service.as_mut()
            && let Some(status) = s.try_wait()
        {
            return Err(format!(
                "the service stopped ({status}); see {}",
                s.log.display()
            ));
        }
        for r in &mut self.replicas {
            if let Some(status) = r.proc.try_wait() {
                return Err(format!(
                    "the service replica at {} stopped ({status}); see {}",
                    r.base,
                    r.proc.log.display()
                ));
            }
        }
        for d in &mut self.devices {
            if let Some(status) = d.proc.try_wait() {
                return Err(format!(
                    "{} stopped ({status}); see {}",
                    d.proc.name(),
                    d.proc.log.display()
                ));
            }
        }
        Ok(())
    }

    /// What every gateway run saw, per device: each boot's highest seq over all runs (a
    /// gateway killed with `kill -9` leaves its last once-a-second stats file). With the
    /// last run's stats.
    pub fn gateway_stats(&self) -> (Stats, BTreeMap<u32, DeviceStats>) {
        let mut merged: BTreeMap<u32, DeviceStats> = BTreeMap::new();
        let mut last = Stats::default();
        for run in 1..=self.gateway_runs {
            let Some(stats) = read_stats(&self.stats_file_of(run)) else {
                continue;
            };
            for (id, d) in &stats.devices {
                let m = merged.entry(*id).or_default();
                m.frames += d.frames;
                for b in &d.boots {
                    match m.boots.iter_mut().find(|x| x.boot == b.boot) {
                        Some(x) => {
                            x.max_seq = x.max_seq.max(b.max_seq);
                            x.frames += b.frames;
                        }
                        None => m.boots.push(*b),
                    }
                }
            }
            if run == self.gateway_runs {
                last = stats;
            }
        }
        (last, merged)
    }
}
