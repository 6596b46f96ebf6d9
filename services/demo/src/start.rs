//! Bringing the stack up: the service on a fresh database (and its replicas), the QEMU devices
//! or the flashed real board, and the gateway, all owned by the [`Rig`] of a [`Stack`].

use crate::Args;
use beacon_demo::faults::{Plan, Rig};
use beacon_demo::replicas::Db;
use beacon_demo::{Paths, Proc, ServiceOpts, free_port, start_service, wait_ready};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// What [`start`] brought up.
pub(crate) struct Stack {
    pub(crate) rig: Rig,
    pub(crate) plan: Plan,
    pub(crate) client: reqwest::Client,
    pub(crate) base: String,
    pub(crate) console: Option<SocketAddr>,
    pub(crate) workdir: PathBuf,
    pub(crate) qemu: bool,
    /// Last: dropped after every process that uses it.
    pub(crate) db: Db,
}

/// Starts the service (on a fresh database), the devices and the gateway.
pub(crate) async fn start(args: &Args) -> Result<Stack, String> {
    let paths = Paths::discover();
    let qemu = args.board == "qemu";
    paths.check(qemu)?;
    let workdir = prepare(args, &paths, qemu)?;

    // 1. The service, on a fresh database (device sequence numbers restart at 0 on every boot).
    let db = Db::open(&args.db, args.replicas, &workdir)?;
    let (service, service_opts) = first_service(args, &paths, &workdir, &db)?;
    let base = format!("http://{}", service_opts.listen);
    let client = reqwest::Client::new();
    wait_ready(&client, &base, Duration::from_secs(10)).await?;
    let console = service_opts.console;
    let mut rig = Rig::new(
        paths.clone(),
        workdir.clone(),
        args.period_ms,
        service,
        service_opts,
    );
    for _ in 1..args.replicas {
        rig.add_replica(&client).await?;
    }
    let plan = Plan {
        cut_for: Duration::from_secs(args.cut_secs),
        down: Duration::from_secs(args.down_secs),
        ..Plan::demo(args.devices)
    };

    // 2. The devices and 3. the gateway.
    if qemu {
        for id in 1..=args.devices {
            // With --faults one device's link runs through a relay that can cut it.
            rig.add_device(id, args.faults && id == plan.cut)?;
        }
    } else {
        rig.other_links
            .push(format!("rtt:{}", args.chip.as_deref().unwrap_or_default()));
    }
    rig.start_gateway()?;

    Ok(Stack {
        rig,
        plan,
        client,
        base,
        console,
        workdir,
        qemu,
        db,
    })
}

/// Before anything starts: the usage checks, the workdir emptied, the real board flashed. The
/// workdir.
fn prepare(args: &Args, paths: &Paths, qemu: bool) -> Result<PathBuf, String> {
    let workdir = args.workdir.clone().unwrap_or_else(|| {
        paths
            .service_bin
            .parent()
            .and_then(|p| p.parent())
            .map_or_else(|| PathBuf::from("target/demo"), |t| t.join("demo"))
    });
    if args.replicas > 1 && args.db != "postgres" {
        // Db::open says the same; here before anything is deleted or started.
        Db::open(&args.db, args.replicas, &workdir)?;
    }
    let _ = std::fs::remove_dir_all(&workdir);
    std::fs::create_dir_all(&workdir)
        .map_err(|e| format!("cannot create {}: {e}", workdir.display()))?;

    if args.faults && (!qemu || args.devices == 0) {
        return Err(
            "--faults breaks QEMU devices and their links: run it with --board qemu and --devices 1 or more".into(),
        );
    }
    if !qemu {
        // Before anything starts: without a probe there is nothing to run.
        flash_nrf(args, &workdir)?;
    }
    Ok(workdir)
}

/// The first service replica, with tokio-console unless `--no-console` (and without it, with a
/// note, when the build has no console support). Its options: `listen` the address it got,
/// `console` where tokio-console attaches if it does.
fn first_service(
    args: &Args,
    paths: &Paths,
    workdir: &std::path::Path,
    db: &Db,
) -> Result<(Proc, ServiceOpts), String> {
    let listen = usable(args.listen, "the service")?;
    let console = if args.no_console {
        None
    } else {
        Some(usable(args.console_addr, "tokio-console")?)
    };
    let service_opts = ServiceOpts {
        db: db.arg(),
        listen,
        console,
        log: workdir.join("service.log"),
    };
    let ((service, addr), console) = match start_service(paths, &service_opts) {
        Ok(s) => (s, console),
        Err(e) if console.is_some() => {
            let log = std::fs::read_to_string(&service_opts.log).unwrap_or_default();
            if !log.contains("--console needs the `console` cargo feature") {
                return Err(e);
            }
            eprintln!(
                "note: this service build has no tokio-console support (build it with --features console); running without"
            );
            let opts = ServiceOpts {
                console: None,
                ..service_opts.clone()
            };
            (start_service(paths, &opts)?, None)
        }
        Err(e) => return Err(e),
    };
    let service_opts = ServiceOpts {
        listen: addr,
        console,
        ..service_opts
    };
    Ok((service, service_opts))
}

/// A port that is free, or a free one instead (with a note).
fn usable(addr: SocketAddr, what: &str) -> Result<SocketAddr, String> {
    if std::net::TcpListener::bind(addr).is_ok() {
        return Ok(addr);
    }
    let port = free_port()?;
    let other = SocketAddr::new(addr.ip(), port);
    eprintln!("note: {addr} is taken; {what} uses {other} instead");
    Ok(other)
}

/// Flashes the real board with the probe-rs CLI (`cargo xtask setup` installs it).
fn flash_nrf(args: &Args, workdir: &std::path::Path) -> Result<(), String> {
    let elf = args.nrf_elf.clone().unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../firmware/target/thumbv7em-none-eabihf/release/beacon-nrf52840")
    });
    if !elf.is_file() {
        return Err(format!(
            "the nRF52840 firmware is not built ({}); run `cargo xtask demo --board nrf52840`, which builds it",
            elf.display()
        ));
    }
    let log = workdir.join("flash.log");
    let chip = args.chip.as_deref().unwrap_or_default();
    let out = std::process::Command::new("probe-rs")
        .args(["download", "--chip", chip])
        .arg(&elf)
        .output()
        .map_err(|e| format!("cannot run probe-rs: {e}; install it with `cargo xtask setup` (or `cargo install probe-rs-tools --locked`)"))?;
    let _ = std::fs::write(
        &log,
        [out.stdout.as_slice(), out.stderr.as_slice()].concat(),
    );
    if !out.status.success() {
        let msg = String::from_utf8_lossy(&out.stderr);
        // probe-rs prints warnings and backtraces too: keep its `Error:` line (all of it is
        // in flash.log).
        let said = msg
            .lines()
            .find(|l| l.starts_with("Error"))
            .unwrap_or_else(|| msg.lines().last().unwrap_or_default())
            .trim();
        let hint = if said.to_lowercase().contains("no connected probes")
            || said.to_lowercase().contains("no probe")
        {
            "no debug probe found: connect the nRF52840-DK's debug USB port, or run without --board to use QEMU"
        } else {
            "flashing the nRF52840-DK failed"
        };
        return Err(format!(
            "{hint} (probe-rs: {said}; full output in {})",
            log.display()
        ));
    }
    let _ = std::process::Command::new("probe-rs")
        .args(["reset", "--chip", chip])
        .output();
    Ok(())
}
