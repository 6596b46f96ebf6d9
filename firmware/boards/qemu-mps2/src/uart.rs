//! The CMSDK APB UART (ARM DDI 0479), UART0 at 0x4000_4000 on mps2-an386.

use core::ptr::{read_volatile, write_volatile};
use core::sync::atomic::{AtomicBool, Ordering};

const UART0_BASE: usize = 0x4000_4000;
const DATA: usize = 0x00;
const STATE: usize = 0x04;
const CTRL: usize = 0x08;
const BAUDDIV: usize = 0x10;

const STATE_TX_FULL: u32 = 1 << 0;
const STATE_RX_FULL: u32 = 1 << 1;
const CTRL_TX_ENABLE: u32 = 1 << 0;
const CTRL_RX_ENABLE: u32 = 1 << 1;

static TAKEN: AtomicBool = AtomicBool::new(false);

/// UART0, owned: there is exactly one.
#[derive(Debug)]
pub struct Uart {
    base: usize,
}

impl Uart {
    /// Takes and enables UART0 at `baud`; `None` if it was already taken.
    pub fn take(baud: u32) -> Option<Self> {
        if TAKEN.swap(true, Ordering::AcqRel) {
            return None;
        }
        let uart = Self { base: UART0_BASE };
        // The divider must be at least 16 (the TRM); QEMU ignores the rate but checks that.
        uart.write_reg(BAUDDIV, (crate::CORE_CLOCK_HZ / baud.max(1)).max(16));
        uart.write_reg(CTRL, CTRL_TX_ENABLE | CTRL_RX_ENABLE);
        Some(uart)
    }

    fn read_reg(&self, offset: usize) -> u32 {
        // SAFETY: `base + offset` is a register of the UART this value owns (see `take`).
        unsafe { read_volatile((self.base + offset) as *const u32) }
    }

    fn write_reg(&self, offset: usize, value: u32) {
        // SAFETY: as in `read_reg`.
        unsafe { write_volatile((self.base + offset) as *mut u32, value) }
    }

    /// Writes one byte, waiting while the transmit buffer is full.
    pub fn write_byte(&mut self, byte: u8) {
        while self.read_reg(STATE) & STATE_TX_FULL != 0 {}
        self.write_reg(DATA, u32::from(byte));
    }

    /// Writes every byte.
    pub fn write_all(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_byte(b);
        }
    }

    /// A received byte, if one is waiting.
    pub fn read_byte(&mut self) -> Option<u8> {
        (self.read_reg(STATE) & STATE_RX_FULL != 0).then(|| (self.read_reg(DATA) & 0xFF) as u8)
    }
}
