// template:service:file
//! Signals by syscall. xtask stays std-only (it compiles first on a fresh machine), and a
//! minimal box has no `kill` program (procps), so this declares libc's `kill(2)` itself: std
//! links libc on every unix target already.

/// SIGTERM, for a graceful stop.
pub const SIGTERM: i32 = 15;

// SAFETY: kill(2) takes two integers and touches no memory of ours: calling it cannot break
// memory safety, so it is declared `safe`.
#[allow(
    unsafe_code,
    reason = "the one libc declaration xtask needs; see the SAFETY note"
)]
unsafe extern "C" {
    safe fn kill(pid: i32, sig: i32) -> i32;
}

/// Sends `sig` to process `pid`; the OS error (e.g. no such process) on failure.
pub fn send(pid: u32, sig: i32) -> std::io::Result<()> {
    let pid = i32::try_from(pid).map_err(|_| std::io::Error::other("pid out of range"))?;
    if kill(pid, sig) == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
