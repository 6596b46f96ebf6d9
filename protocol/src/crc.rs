//! CRC-32/ISO-HDLC (the CRC of zlib, Ethernet and PNG): polynomial 0x04C11DB7 reflected
//! (0xEDB88320), initial value and final XOR 0xFFFFFFFF. Check value: `crc32(b"123456789")`
//! is `0xCBF43926`.

const POLY: u32 = 0xEDB8_8320;

/// The 256-entry lookup table, computed at compile time (1 KiB of flash).
static TABLE: [u32; 256] = make_table();

// Compile-time only: bounded loops over constants; an overflow here fails the build.
#[allow(clippy::arithmetic_side_effects)]
const fn make_table() -> [u32; 256] {
    let mut table = [0u32; 256];
    let mut i = 0usize;
    while i < 256 {
        #[allow(clippy::as_conversions)] // i < 256: lossless
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { POLY ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        #[allow(clippy::indexing_slicing)] // i < 256 == table.len(), in a const fn
        {
            table[i] = c;
        }
        i += 1;
    }
    table
}

/// An incremental CRC-32: feed bytes with [`Crc32::update`], read with [`Crc32::finish`].
#[derive(Debug, Clone, Copy)]
pub struct Crc32(u32);

impl Default for Crc32 {
    fn default() -> Self {
        Self::new()
    }
}

impl Crc32 {
    /// A fresh CRC state.
    pub const fn new() -> Self {
        Self(0xFFFF_FFFF)
    }

    /// Adds `bytes` to the CRC.
    pub fn update(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let [low, ..] = (self.0 ^ u32::from(b)).to_le_bytes();
            // `low` < 256 == TABLE.len(): the fallback is never taken.
            let entry = TABLE.get(usize::from(low)).copied().unwrap_or(0);
            self.0 = entry ^ (self.0 >> 8);
        }
    }

    /// The CRC of everything added so far.
    pub const fn finish(self) -> u32 {
        self.0 ^ 0xFFFF_FFFF
    }
}

/// CRC-32/ISO-HDLC of `bytes`.
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = Crc32::new();
    c.update(bytes);
    c.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Checks: R-WIRE-2: the table is the reflected-polynomial table, checked without
    /// evaluating the code that built it: a CRC table is linear over GF(2)
    /// (`T[i ^ j] == T[i] ^ T[j]`), so its eight single-bit entries, quoted from zlib's
    /// crc32.h, determine all 256; `T[255]` is quoted too as a spot check.
    #[test]
    fn table_has_the_known_entries() {
        let basis: [u32; 8] = [
            0x7707_3096,
            0xEE0E_612C,
            0x076D_C419,
            0x0EDB_8832,
            0x1DB7_1064,
            0x3B6E_20C8,
            0x76DC_4190,
            0xEDB8_8320,
        ];
        // `make_table` at run time (the static is its compile-time result, so this is also
        // what the coverage figures see of it).
        let table = make_table();
        assert_eq!(table, TABLE);
        for (i, entry) in table.iter().enumerate() {
            let want = (0..8)
                .filter(|bit| i & (1 << bit) != 0)
                .fold(0u32, |acc, bit| acc ^ basis[bit]);
            assert_eq!(*entry, want, "TABLE[{i}]");
        }
        assert_eq!(TABLE[255], 0x2D02_EF8D);
    }

    #[test]
    fn check_value_matches_the_catalogue() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn empty_input() {
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn incremental_equals_one_shot() {
        let mut c = Crc32::new();
        c.update(b"1234");
        c.update(b"56789");
        assert_eq!(c.finish(), crc32(b"123456789"));
    }
}
