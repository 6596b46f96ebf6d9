//! Semihosting: the debugger's (here QEMU's) side channel into the host. QEMU must run with
//! `-semihosting-config enable=on,target=native`; without it a semihosting call locks up.

use cortex_m_semihosting::{debug, nr};

/// The command line QEMU passes: the `-kernel` path, then the `-append` text. Returns `None`
/// when the host gives none (or it is not UTF-8).
pub fn cmdline(buf: &mut [u8]) -> Option<&str> {
    let mut block = [buf.as_mut_ptr() as usize, buf.len()];
    // SAFETY: SYS_GET_CMDLINE takes a [buffer, length] block; the host writes at most
    // `length` bytes into `buf` (which outlives the call) and the used length into block[1].
    let status =
        unsafe { cortex_m_semihosting::syscall1(nr::GET_CMDLINE, block.as_mut_ptr() as usize) };
    if status != 0 {
        return None;
    }
    // SAFETY: reads back the block the host updated; it is a live local.
    let len = unsafe { core::ptr::read_volatile(&block[1]) };
    core::str::from_utf8(buf.get(..len)?).ok()
}

/// The host's clock, seconds since 1970 (`SYS_TIME`): the boot id's fallback when the runner
/// passes no `boot-id` (protocol/SPEC.md 3.1; two boots in the same second collide).
pub fn host_time_s() -> u32 {
    // SAFETY: SYS_TIME takes no parameter block (the argument is ignored) and only returns
    // the time in r0; no memory is read or written.
    let secs = unsafe { cortex_m_semihosting::syscall1(nr::TIME, 0) };
    u32::try_from(secs).unwrap_or(0)
}

/// Ends QEMU with exit code 0.
pub fn exit_success() -> ! {
    debug::exit(debug::EXIT_SUCCESS);
    loop {
        cortex_m::asm::wfi();
    }
}

/// Ends QEMU with a non-zero exit code (QEMU reports 1).
pub fn exit_failure() -> ! {
    debug::exit(debug::EXIT_FAILURE);
    loop {
        cortex_m::asm::wfi();
    }
}
