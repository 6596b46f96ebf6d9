//! The firmware on the real board: Nordic nRF52840-DK (Cortex-M4F, 64 MHz).
//!
//! RTIC 2: two async tasks at different priorities share the link (frame builder + RTT
//! channel) as an RTIC resource, so the type system forces every access through a lock and a
//! frame is never built or written half-way by a preempting task.
//!
//! - `sample` (priority 1): every period, an SHT3x measurement over TWIM0 (I2C), then a frame.
//! - `heartbeat` (priority 2): a heartbeat frame on its own period.
//!
//! Boot id (protocol/SPEC.md 3.1): 32 bits from the chip's hardware RNG at every reset, so
//! the frames after a reboot are never taken for retries of the previous boot's.
//!
//! Telemetry: RTT up-channel 1 ("telemetry"), encoded frames as on the UART. defmt logs: RTT
//! up-channel 0 ("defmt"), shown by `probe-rs run` / `cargo run` from this directory.
//! Downlink: RTT down-channel 0 ("downlink"): replay requests and acks (protocol/SPEC.md
//! section 8), polled by the `downlink` task. Every frame stays in the store-and-forward outbox
//! (beacon_firmware::outbox, [`OUTBOX_BYTES`]) until an ack covers it.
//!
//! Wiring (TODO(4)/TODO(5)): SHT3x breakout on the Arduino header, SDA = P0.26, SCL = P0.27,
//! ADDR low (0x44), 3.3 V.
#![no_std]
#![no_main]

use panic_probe as _; // panics print through defmt, then the core halts (probe-rs reports it)

defmt::timestamp!("{=u64:ms}", app::uptime_ms());

#[rtic::app(device = nrf52840_hal::pac, dispatchers = [SWI0_EGU0, SWI1_EGU1])]
mod app {
    use beacon_firmware::Config;
    use beacon_firmware::outbox::Outbox;
    use beacon_firmware::sensor::sht3x::{self, Sht3x};
    use beacon_firmware::{Telemetry, boot_id_or};
    use beacon_protocol::frame::board;
    use beacon_protocol::{Downlink, DownlinkDecoder, Frame, MAX_WIRE_LEN};
    use nrf52840_hal::gpio::p0;
    use nrf52840_hal::pac::TWIM0;
    use nrf52840_hal::rng::Rng;
    use nrf52840_hal::twim::{self, Twim};
    use rtic_monotonics::systick::prelude::*;
    use rtt_target::{ChannelMode, DownChannel, UpChannel, rtt_init};

    /// Bytes of the store-and-forward outbox (an RTIC resource, so a static in .bss): 32 KiB
    /// of the chip's 256 KiB RAM hold 862 sample frames (38 bytes each), 86 s at 10 Hz.
    /// TODO(4): size it for your link's longest outage.
    pub const OUTBOX_BYTES: usize = 32 * 1024;

    systick_monotonic!(Mono, 1_000);

    /// Core clock after reset (HFINT); SysTick counts it.
    const CORE_CLOCK_HZ: u32 = 64_000_000;

    /// Milliseconds since the monotonic started.
    pub fn uptime_ms() -> u64 {
        Mono::now().duration_since_epoch().to_millis()
    }

    /// The telemetry link: frame builder and the RTT channel the frames go to.
    pub struct Link {
        telemetry: Telemetry,
        channel: UpChannel,
        outbox: Outbox<OUTBOX_BYTES>,
    }

    impl core::fmt::Debug for Link {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("Link")
                .field("telemetry", &self.telemetry)
                .field("held", &self.outbox.len())
                .field("dropped", &self.outbox.dropped())
                .finish()
        }
    }

    impl Link {
        /// Keeps `frame` until it is acked, then writes what is due.
        fn send(&mut self, frame: &Frame) {
            self.outbox.push(frame);
            self.flush();
        }

        /// Writes the frames not written yet, while the RTT buffer has room. NoBlockSkip: a
        /// frame that does not fit is not written at all (never half of one) and stays due.
        fn flush(&mut self) {
            let mut buf = [0u8; MAX_WIRE_LEN];
            while let Some(n) = self.outbox.next_wire(&mut buf) {
                if self.channel.write(buf.get(..n).unwrap_or(&[])) < n {
                    self.outbox.unsend_last();
                    break;
                }
            }
        }
    }

    #[shared]
    struct Shared {
        link: Link,
    }

    #[local]
    struct Local {
        sensor: Sht3x<Twim<TWIM0>>,
        downlink: DownChannel,
    }

    #[init]
    fn init(cx: init::Context) -> (Shared, Local) {
        let channels = rtt_init! {
            up: {
                0: { size: 1024, mode: ChannelMode::NoBlockSkip, name: "defmt" }
                1: { size: 2048, mode: ChannelMode::NoBlockSkip, name: "telemetry" }
            }
            down: {
                0: { size: 64, name: "downlink" }
            }
        };
        rtt_target::set_defmt_channel(channels.up.0);
        Mono::start(cx.core.SYST, CORE_CLOCK_HZ);

        // TODO(3): your device id scheme. Here: the low word of the chip's factory-programmed
        // 64-bit DEVICEID (FICR), unique per chip.
        let device_id = cx.device.FICR.deviceid[0].read().bits();
        let config = Config {
            device_id,
            ..Config::default()
        };
        // A fresh boot id from the hardware RNG (bias correction on), every reset; a second
        // draw stands in if the first is 0. Nothing else needs the RNG after this.
        let boot_id = {
            let mut rng = Rng::new(cx.device.RNG);
            let first = rng.random_u32();
            boot_id_or(first, rng.random_u32())
        };
        defmt::info!(
            "beacon-nrf52840 {} booting: {}, boot id {=u32:#010x}",
            env!("CARGO_PKG_VERSION"),
            config,
            boot_id
        );

        let port0 = p0::Parts::new(cx.device.P0);
        let pins = twim::Pins {
            scl: port0.p0_27.into_floating_input().degrade(),
            sda: port0.p0_26.into_floating_input().degrade(),
        };
        let i2c = Twim::new(cx.device.TWIM0, pins, twim::Frequency::K100);
        let sensor = Sht3x::new(i2c, sht3x::ADDRESS_LOW);

        let mut link = Link {
            telemetry: Telemetry::new(config.device_id, boot_id, board::NRF52840_DK),
            channel: channels.up.1,
            outbox: Outbox::new(),
        };
        let boot = link.telemetry.boot(uptime_ms());
        link.send(&boot);

        if sample::spawn(config.period_ms).is_err()
            || heartbeat::spawn(config.heartbeat_ms).is_err()
            || downlink::spawn().is_err()
        {
            defmt::panic!("tasks already running");
        }
        (
            Shared { link },
            Local {
                sensor,
                downlink: channels.down.0,
            },
        )
    }

    #[task(local = [sensor], shared = [link], priority = 1)]
    async fn sample(mut cx: sample::Context, period_ms: u32) {
        let mut next = Mono::now();
        loop {
            next += u64::from(period_ms).millis();
            Mono::delay_until(next).await;
            let sensor = &mut *cx.local.sensor;
            let result = match sensor.start_measurement() {
                Ok(()) => {
                    Mono::delay(u64::from(sht3x::MEASUREMENT_TIME_MS).millis()).await;
                    sensor.read_measurement()
                }
                Err(e) => Err(e),
            };
            match &result {
                Ok(m) => defmt::debug!("measured {}", m),
                Err(sht3x::Error::Crc) => defmt::warn!("sensor: crc mismatch"),
                Err(sht3x::Error::I2c(_)) => defmt::warn!("sensor: no answer on i2c"),
            }
            let now = uptime_ms();
            cx.shared.link.lock(|link| {
                let frame = link.telemetry.sample(now, result);
                link.send(&frame);
            });
        }
    }

    #[task(shared = [link], priority = 2)]
    async fn heartbeat(mut cx: heartbeat::Context, period_ms: u32) {
        let mut next = Mono::now();
        loop {
            next += u64::from(period_ms).millis();
            Mono::delay_until(next).await;
            let now = uptime_ms();
            cx.shared.link.lock(|link| {
                // delay_until never skips, so there are no missed periods to report.
                let frame = link.telemetry.heartbeat(now, 0);
                defmt::info!(
                    "heartbeat seq={} outbox={} dropped={}",
                    frame.seq,
                    link.outbox.len(),
                    link.outbox.dropped()
                );
                link.send(&frame);
                // At most one overflow report per heartbeat (a report displaces a frame too).
                if let Some(dropped) = link.outbox.take_overflow() {
                    defmt::warn!("outbox full: {} frames dropped since boot", dropped);
                    let report = link.telemetry.overflow(now, dropped);
                    link.send(&report);
                }
            });
        }
    }

    /// Polls the RTT down-channel every 2 ms: a replay request makes every held frame due
    /// again, an ack releases frames; then writes what is due.
    #[task(local = [downlink], shared = [link], priority = 1)]
    async fn downlink(mut cx: downlink::Context) {
        let mut decoder = DownlinkDecoder::new();
        let mut buf = [0u8; 64];
        loop {
            Mono::delay(2.millis()).await;
            let n = cx.local.downlink.read(&mut buf);
            cx.shared.link.lock(|link| {
                for &byte in buf.get(..n).unwrap_or(&[]) {
                    match decoder.push(byte) {
                        Some(Ok(Downlink::Replay)) => link.outbox.rewind(),
                        Some(Ok(Downlink::Ack(ack))) => {
                            link.outbox.ack(&ack);
                        }
                        Some(Err(e)) => defmt::warn!("downlink: {}; skipped", e),
                        None => {}
                    }
                }
                link.flush();
            });
        }
    }
}
