//! The external interrupt vectors (what a PAC crate provides; mps2-an386 has none).
//!
//! All 32 point at `DefaultHandler`, which ends QEMU with a readable message: an interrupt
//! nobody enabled is a bug. To handle one (e.g. UART0 RX is line 0, TIMER0 is line 8), add an
//! `extern "C"` handler here, put it in its slot and enable the line in the NVIC.

unsafe extern "C" {
    // Provided by cortex-m-rt's link.x (ours is in fault.rs).
    fn DefaultHandler();
}

/// The vector table's device part; cortex-m-rt's link.x places and keeps it.
#[unsafe(link_section = ".vector_table.interrupts")]
#[unsafe(no_mangle)]
#[used]
static __INTERRUPTS: [unsafe extern "C" fn(); 32] = [DefaultHandler; 32];
