//! Test-only: boots like the firmware (Boot frame on UART0), then panics on purpose. The host
//! test asserts QEMU exits non-zero within seconds and prints the panic message.
#![no_std]
#![no_main]

use beacon_firmware::Telemetry;
use beacon_qemu::{BOARD, clock, send, uart::Uart};
use cortex_m_rt::entry;
use defmt_semihosting as _;

#[entry]
fn main() -> ! {
    let core = cortex_m::Peripherals::take();
    if let Some(core) = core {
        clock::start(core.SYST);
    }
    if let Some(mut uart) = Uart::take(115_200) {
        uart.write_byte(0);
        send(
            &mut uart,
            &Telemetry::new(0, 1, BOARD).boot(clock::uptime_ms()),
        );
    }
    defmt::error!("about to panic on purpose");
    panic!("deliberate panic from the qemu-panic test binary");
}
