//! Leaf module: what a built binary says about how it was built, read from its bytes (std
//! only): the linker and code generator in the ELF `.comment` section, and the shared
//! libraries it needs. doctor and bench-build use it to prove a setting took effect.

use std::path::Path;

/// The strings in an ELF file's `.comment` section (32- or 64-bit, little-endian).
pub fn elf_comment(path: &Path) -> Option<Vec<String>> {
    let data = std::fs::read(path).ok()?;
    if data.get(..4)? != b"\x7fELF" || *data.get(5)? != 1 {
        return None;
    }
    let is64 = *data.get(4)? == 2;
    let u16_at = |o: usize| Some(u16::from_le_bytes(data.get(o..o + 2)?.try_into().ok()?) as usize);
    let u32_at = |o: usize| Some(u32::from_le_bytes(data.get(o..o + 4)?.try_into().ok()?) as usize);
    let u64_at = |o: usize| Some(u64::from_le_bytes(data.get(o..o + 8)?.try_into().ok()?) as usize);
    let word = |o: usize| if is64 { u64_at(o) } else { u32_at(o) };
    let (shoff, shentsize, shnum, shstrndx) = if is64 {
        (u64_at(0x28)?, u16_at(0x3a)?, u16_at(0x3c)?, u16_at(0x3e)?)
    } else {
        (u32_at(0x20)?, u16_at(0x2e)?, u16_at(0x30)?, u16_at(0x32)?)
    };
    // (name offset, file offset, size) of section i
    let section = |i: usize| {
        let base = shoff + i * shentsize;
        let (off, size) = if is64 {
            (word(base + 0x18)?, word(base + 0x20)?)
        } else {
            (word(base + 0x10)?, word(base + 0x14)?)
        };
        Some((u32_at(base)?, off, size))
    };
    let (_, str_off, str_size) = section(shstrndx)?;
    let names = data.get(str_off..str_off + str_size)?;
    for i in 0..shnum {
        let (name, off, size) = section(i)?;
        let n = names.get(name..)?;
        let n = &n[..n.iter().position(|b| *b == 0)?];
        if n == b".comment" {
            let body = data.get(off..off + size)?;
            return Some(
                body.split(|b| *b == 0)
                    .filter(|s| !s.is_empty())
                    .map(|s| String::from_utf8_lossy(s).into_owned())
                    .collect(),
            );
        }
    }
    Some(Vec::new())
}

/// What a `.comment` says about the linker.
pub fn linker_of(comment: &[String]) -> String {
    for c in comment {
        if let Some(l) = c.strip_prefix("Linker: ") {
            return l.split(" (").next().unwrap_or(l).to_string();
        }
        if c.starts_with("mold ") {
            return c.split(" (").next().unwrap_or(c).to_string();
        }
    }
    "GNU ld or unknown (no linker line in .comment)".into()
}

/// Whether an ELF file names a shared library starting with `prefix` (its NEEDED entries live
/// in .dynstr as `<name>.so`); a statically linked binary has no such string.
pub fn elf_needs(path: &Path, prefix: &str) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return false;
    };
    let pat = prefix.as_bytes();
    (0..data.len().saturating_sub(pat.len())).any(|i| {
        data[i..].starts_with(pat) && {
            let rest = &data[i + pat.len()..];
            let end = rest.iter().take(80).position(|b| *b == 0).unwrap_or(0);
            rest[..end].ends_with(b".so")
        }
    })
}
