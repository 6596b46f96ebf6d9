//! Test-only: boots, then executes a permanently undefined instruction (UDF). With no
//! UsageFault handler enabled that escalates to HardFault; the host test asserts QEMU exits
//! non-zero with the fault's readable message.
#![no_std]
#![no_main]

use beacon_qemu::uart::Uart;
use cortex_m_rt::entry;
use defmt_semihosting as _;

#[entry]
fn main() -> ! {
    if let Some(mut uart) = Uart::take(115_200) {
        uart.write_byte(0);
    }
    defmt::error!("about to fault on purpose");
    cortex_m::asm::udf()
}
