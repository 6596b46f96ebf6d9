//! Panic, HardFault and stray interrupts: a readable message on the host's stderr, then a
//! non-zero exit. Plain text (core::fmt) rather than defmt so it is readable without a decoder
//! in any CI log; it costs a few KiB of flash, paid only on this board.

use core::fmt::Write;
use cortex_m_rt::{ExceptionFrame, exception};
use cortex_m_semihosting::hio;

/// Prints `beacon-qemu: <message>` on the host's stderr and ends QEMU with a failure code.
pub fn fatal(message: core::fmt::Arguments<'_>) -> ! {
    cortex_m::interrupt::disable();
    if let Ok(mut stderr) = hio::hstderr() {
        let _ = writeln!(stderr, "beacon-qemu: {message}");
    }
    crate::semihost::exit_failure()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    fatal(format_args!("firmware {info}"))
}

#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    fatal(format_args!(
        "hard fault at pc={:#010x} lr={:#010x} xpsr={:#010x}; find the code with \
         `llvm-addr2line -e <elf> {:#x}`",
        frame.pc(),
        frame.lr(),
        frame.xpsr(),
        frame.pc()
    ))
}

#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    fatal(format_args!(
        "unexpected interrupt or exception {irqn}; no handler is installed for it"
    ))
}
