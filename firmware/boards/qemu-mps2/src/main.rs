//! The firmware on the emulated board (QEMU mps2-an386).
//!
//! Plain cortex-m-rt and a polling main loop: the board has no PAC crate for RTIC to build on
//! (firmware/README.md). Every period it samples the simulated sensor, builds a frame
//! (beacon-firmware) and writes it to UART0; between deadlines the core sleeps in WFI, woken by
//! the 1 kHz SysTick.
//!
//! Configuration comes from the QEMU command line: `-append "device-id=3 boot-id=N
//! period-ms=100"` (keys: beacon_firmware::config). `samples=N` makes it exit(0) after N
//! samples, for tests. The board has no RNG: the boot id (protocol/SPEC.md 3.1) is the
//! `boot-id` the runner drew from the host's random source, else the host's clock.
#![no_std]
#![no_main]

use beacon_firmware::history::{History, REPLAY_REQUEST};
use beacon_firmware::{Config, Schedule, SimSensor, Telemetry, boot_id_or};
use beacon_qemu::{BOARD, clock, fatal, semihost, send, uart::Uart};
use cortex_m_rt::entry;
use defmt_semihosting as _; // defmt logger: semihosting stdout (README: "Logs under QEMU")

/// Frames kept for replay (96 bytes each: 1.5 KiB of stack).
const HISTORY: usize = 16;

#[entry]
fn main() -> ! {
    let Some(core) = cortex_m::Peripherals::take() else {
        fatal(format_args!("core peripherals already taken"))
    };
    clock::start(core.SYST);
    let Some(mut uart) = Uart::take(115_200) else {
        fatal(format_args!("uart0 already taken"))
    };

    let mut cmdline = [0u8; 256];
    let config = match semihost::cmdline(&mut cmdline).map(Config::parse) {
        Some(Ok(config)) => config,
        Some(Err(e)) => fatal(format_args!("bad command line: {e}")),
        None => Config::default(),
    };
    defmt::info!(
        "beacon-qemu {} booting: {}",
        env!("CARGO_PKG_VERSION"),
        config
    );

    let boot_id = boot_id_or(config.boot_id, semihost::host_time_s());
    if config.boot_id == 0 {
        defmt::warn!(
            "no boot-id on the command line: boot id {} from the host clock (two boots in one second collide)",
            boot_id
        );
    }
    let mut telemetry = Telemetry::new(config.device_id, boot_id, BOARD);
    let mut sensor = SimSensor::new(config.device_id);
    let mut history = History::<HISTORY>::new();
    let mut schedule = Schedule::new(config.period_ms, config.heartbeat_ms, clock::uptime_ms());

    // A lone delimiter first: a receiver that joined mid-stream resynchronises on it.
    uart.write_byte(0);
    let boot = telemetry.boot(clock::uptime_ms());
    send(&mut uart, &boot);
    history.push(boot);

    let mut samples_sent: u32 = 0;
    loop {
        let now = clock::uptime_ms();
        let due = schedule.poll(now);
        if due.sample {
            let frame = telemetry.sample::<()>(now, Ok(sensor.measure()));
            defmt::debug!("sample {}", frame);
            send(&mut uart, &frame);
            history.push(frame);
            samples_sent = samples_sent.wrapping_add(1);
            if samples_sent == config.samples {
                defmt::info!("{} samples sent; exiting", config.samples);
                semihost::exit_success();
            }
        }
        if due.heartbeat {
            let frame = telemetry.heartbeat(now, schedule.missed());
            defmt::info!("heartbeat seq={} uptime={}ms", frame.seq, now);
            send(&mut uart, &frame);
            history.push(frame);
        }
        if uart.read_byte() == Some(REPLAY_REQUEST) {
            defmt::info!("replaying {} frames", history.len());
            uart.write_byte(0);
            for frame in history.iter() {
                send(&mut uart, frame);
            }
        }
        cortex_m::asm::wfi();
    }
}
