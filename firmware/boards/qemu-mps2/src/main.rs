//! The firmware on the emulated board (QEMU mps2-an386).
//!
//! Plain cortex-m-rt and a polling main loop: the board has no PAC crate for RTIC to build on
//! (firmware/README.md). Every period it samples the simulated sensor, builds a frame
//! (beacon-firmware), keeps it in the store-and-forward outbox and writes it to UART0; between
//! deadlines the core sleeps in WFI, woken by the 1 kHz SysTick. The gateway writes back on
//! the same UART: a replay request on connect (the device re-sends every frame it holds) and
//! acks once the service committed frames (the device then forgets them): protocol/SPEC.md
//! section 8.
//!
//! Configuration comes from the QEMU command line: `-append "device-id=3 boot-id=N
//! period-ms=100"` (keys: beacon_firmware::config). `samples=N` makes it exit(0) after N
//! samples, for tests. The board has no RNG: the boot id (protocol/SPEC.md 3.1) is the
//! `boot-id` the runner drew from the host's random source, else the host's clock.
#![no_std]
#![no_main]

use beacon_firmware::outbox::Outbox;
use beacon_firmware::{Config, Schedule, SimSensor, Telemetry, boot_id_or};
use beacon_protocol::{Downlink, DownlinkDecoder, MAX_WIRE_LEN};
use beacon_qemu::{BOARD, clock, fatal, semihost, uart::Uart};
use cortex_m_rt::entry;
use defmt_semihosting as _; // defmt logger: semihosting stdout (README: "Logs under QEMU")

/// Bytes of the store-and-forward outbox (beacon_firmware::outbox), a static in .bss: every
/// frame stays here until the gateway acks it. 64 KiB of the board's 4 MiB RAM hold 1,724
/// sample frames (38 bytes each), about 2.9 minutes at 10 Hz. TODO(4): size it for your link's
/// longest outage.
const OUTBOX_BYTES: usize = 64 * 1024;

/// Most frames written per loop pass (1 ms): a replay of a full outbox goes out in bursts
/// without starving the sampling schedule.
const SEND_BURST: usize = 16;

#[entry]
fn main() -> ! {
    let Some(core) = cortex_m::Peripherals::take() else {
        fatal(format_args!("core peripherals already taken"))
    };
    clock::start(core.SYST);
    let Some(mut uart) = Uart::take(115_200) else {
        fatal(format_args!("uart0 already taken"))
    };
    let Some(outbox) = cortex_m::singleton!(: Outbox<OUTBOX_BYTES> = Outbox::new()) else {
        fatal(format_args!("outbox already taken"))
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
    let mut downlink = DownlinkDecoder::new();
    let mut schedule = Schedule::new(config.period_ms, config.heartbeat_ms, clock::uptime_ms());
    let mut wire = [0u8; MAX_WIRE_LEN];

    // A lone delimiter first: a receiver that joined mid-stream resynchronises on it.
    uart.write_byte(0);
    outbox.push(&telemetry.boot(clock::uptime_ms()));

    let mut samples_sent: u32 = 0;
    loop {
        let now = clock::uptime_ms();
        let due = schedule.poll(now);
        if due.sample {
            let frame = telemetry.sample::<()>(now, Ok(sensor.measure()));
            defmt::debug!("sample {}", frame);
            outbox.push(&frame);
            samples_sent = samples_sent.wrapping_add(1);
        }
        if due.heartbeat {
            let frame = telemetry.heartbeat(now, schedule.missed());
            defmt::info!(
                "heartbeat seq={} uptime={}ms outbox={} frames ({} B) dropped={}",
                frame.seq,
                now,
                outbox.len(),
                outbox.bytes_used(),
                outbox.dropped()
            );
            outbox.push(&frame);
            // At most one overflow report per heartbeat: a report into a full outbox
            // displaces a frame too.
            if let Some(dropped) = outbox.take_overflow() {
                defmt::warn!("outbox full: {} frames dropped since boot", dropped);
                outbox.push(&telemetry.overflow(now, dropped));
            }
        }
        while let Some(byte) = uart.read_byte() {
            match downlink.push(byte) {
                Some(Ok(Downlink::Replay)) => {
                    defmt::info!("replay requested: re-sending {} frames", outbox.len());
                    uart.write_byte(0);
                    outbox.rewind();
                }
                Some(Ok(Downlink::Ack(ack))) => {
                    let n = outbox.ack(&ack);
                    defmt::debug!("ack {}: {} frames released", ack, n);
                }
                Some(Err(e)) => defmt::warn!("downlink: {}; skipped", e),
                None => {}
            }
        }
        let finished = config.samples != 0 && samples_sent >= config.samples;
        let burst = if finished { usize::MAX } else { SEND_BURST };
        for _ in 0..burst {
            let Some(n) = outbox.next_wire(&mut wire) else {
                break;
            };
            uart.write_all(wire.get(..n).unwrap_or(&[]));
        }
        if finished {
            defmt::info!("{} samples sent; exiting", config.samples);
            semihost::exit_success();
        }
        cortex_m::asm::wfi();
    }
}
