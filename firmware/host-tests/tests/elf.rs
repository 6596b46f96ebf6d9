//! Static checks of the release ELFs of both boards: what a debugger would see first after
//! flashing. The nRF52840-DK cannot be flashed here (no USB), so this is the stand-in for it:
//! the image must match the chip's memory map (memory.x), carry the vector table where the core
//! fetches it, and hold the RTT control block that probe-rs and the gateway look for.

use beacon_firmware_host_tests::build_release;
use std::path::PathBuf;
use std::sync::OnceLock;

/// Builds both boards (release) once per test binary; a no-op when already built.
fn elf(bin: &str) -> Vec<u8> {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    let dir = BUILT.get_or_init(|| build_release(&["--workspace"], "the firmware"));
    std::fs::read(dir.join(bin)).unwrap_or_else(|e| panic!("reading {bin}: {e}"))
}

/// The little an ELF32 reader needs: sections and symbols.
struct Elf<'a> {
    bytes: &'a [u8],
}

#[derive(Debug)]
struct Section {
    name: String,
    kind: u32,
    addr: u32,
    offset: usize,
    size: usize,
    link: usize,
}

impl<'a> Elf<'a> {
    fn parse(bytes: &'a [u8]) -> Self {
        assert_eq!(&bytes[..4], b"\x7fELF", "not an ELF file");
        assert_eq!(bytes[4], 1, "not a 32-bit ELF");
        assert_eq!(bytes[5], 1, "not little-endian");
        Self { bytes }
    }

    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes(self.bytes[at..at + 2].try_into().unwrap())
    }

    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.bytes[at..at + 4].try_into().unwrap())
    }

    fn machine(&self) -> u16 {
        self.u16(18)
    }

    fn flags(&self) -> u32 {
        self.u32(36)
    }

    fn cstr(&self, at: usize) -> String {
        let end = self.bytes[at..]
            .iter()
            .position(|&b| b == 0)
            .map_or(self.bytes.len(), |n| at + n);
        String::from_utf8_lossy(&self.bytes[at..end]).into_owned()
    }

    fn sections(&self) -> Vec<Section> {
        let (shoff, shentsize, shnum, shstrndx) = (
            self.u32(32) as usize,
            self.u16(46) as usize,
            self.u16(48) as usize,
            self.u16(50) as usize,
        );
        let raw = |i: usize| {
            let h = shoff + i * shentsize;
            (
                self.u32(h),
                self.u32(h + 4),
                self.u32(h + 12),
                self.u32(h + 16),
                self.u32(h + 20),
                self.u32(h + 24),
            )
        };
        let names = raw(shstrndx).3 as usize;
        (0..shnum)
            .map(|i| {
                let (name, kind, addr, offset, size, link) = raw(i);
                Section {
                    name: self.cstr(names + name as usize),
                    kind,
                    addr,
                    offset: offset as usize,
                    size: size as usize,
                    link: link as usize,
                }
            })
            .collect()
    }

    fn section(&self, name: &str) -> Section {
        self.sections()
            .into_iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("no {name} section"))
    }

    /// The address of a symbol in `.symtab`.
    fn symbol(&self, wanted: &str) -> Option<u32> {
        let sections = self.sections();
        let symtab = sections.iter().find(|s| s.kind == 2)?;
        let strtab = &sections[symtab.link];
        (0..symtab.size / 16).find_map(|i| {
            let e = symtab.offset + i * 16;
            let name = self.cstr(strtab.offset + self.u32(e) as usize);
            (name == wanted).then(|| self.u32(e + 4))
        })
    }
}

/// Checks the vector table: initial stack pointer at the top of RAM, reset handler in flash
/// with the Thumb bit set. Returns the reset address.
fn check_vectors(elf: &Elf<'_>, flash: std::ops::Range<u32>, ram_top: u32) -> u32 {
    assert_eq!(elf.machine(), 40, "EM_ARM");
    assert_ne!(
        elf.flags() & 0x400,
        0,
        "EF_ARM_ABI_FLOAT_HARD: built for the hard-float ABI (eabihf)"
    );
    let vt = elf.section(".vector_table");
    assert_eq!(
        vt.addr, flash.start,
        "the vector table must sit where the core fetches it"
    );
    let sp = elf.u32(vt.offset);
    let reset = elf.u32(vt.offset + 4);
    assert_eq!(
        sp, ram_top,
        "initial stack pointer = end of RAM in memory.x"
    );
    assert_eq!(reset & 1, 1, "reset vector has the Thumb bit");
    assert!(
        flash.contains(&(reset & !1)),
        "reset handler {reset:#x} outside flash {flash:x?}"
    );
    reset
}

#[test]
fn nrf52840_image_matches_the_chip_memory_map_and_has_the_rtt_block() {
    let bytes = elf("beacon-nrf52840");
    let elf = Elf::parse(&bytes);
    // nRF52840: 1 MiB flash at 0, 256 KiB RAM at 0x2000_0000.
    check_vectors(&elf, 0..0x10_0000, 0x2004_0000);
    let rtt = elf
        .symbol("_SEGGER_RTT")
        .expect("no _SEGGER_RTT: probe-rs would find no RTT channels");
    assert!(
        (0x2000_0000..0x2004_0000).contains(&rtt),
        "RTT control block {rtt:#x} not in RAM"
    );
    assert!(
        elf.sections().iter().any(|s| s.name == ".defmt"),
        "no .defmt section: defmt logs undecodable"
    );
}

#[test]
fn qemu_image_matches_the_mps2_an386_memory_map() {
    let bytes = elf("beacon-qemu");
    let elf = Elf::parse(&bytes);
    // mps2-an386: 4 MiB code memory at 0, 4 MiB RAM at 0x2000_0000.
    check_vectors(&elf, 0..0x40_0000, 0x2040_0000);
    assert!(
        elf.symbol("_SEGGER_RTT").is_none(),
        "the QEMU board logs by semihosting, not RTT"
    );
}
