// template:firmware:file
//! The firmware's automation: build both boards, check their sizes, run the firmware logic's
//! host tests and the QEMU boot tests (`cargo xtask test` calls [`test`]); flash the real
//! board through probe-rs (`cargo xtask flash`); report sizes (`cargo xtask size`).
//!
//! The firmware is its own cargo workspace (firmware/), built for thumbv7em-none-eabihf; every
//! cargo command here runs inside it, so its `.cargo/config.toml` applies.

use crate::bail;
use crate::cmd::{Result, cmd, on_path};
use crate::project::root as project_root;
use std::path::{Path, PathBuf};

/// The firmware target (firmware/.cargo/config.toml sets the same).
const TARGET: &str = "thumbv7em-none-eabihf";

/// Size budget for every shipped firmware (release build). Static RAM: 16 KiB for the
/// firmware itself plus the board's store-and-forward outbox ([`Board::outbox`]).
const FLASH_BUDGET: u64 = 32 * 1024;
const RAM_BUDGET: u64 = 16 * 1024;

/// The boards, the one place their settings live: `--board` on demo and flash takes these
/// names (`Board::name`, parsed by `FromStr`), and the chip name, package and binary come from
/// here. TODO(4): your boards (also firmware/Cargo.toml's members and firmware/boards/).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoardName {
    /// The emulated board (QEMU mps2-an386, Cortex-M4F): runs on any machine.
    Qemu,
    /// Nordic nRF52840-DK, through probe-rs (RTT).
    Nrf52840,
}

impl BoardName {
    /// Every board, in [`BOARDS`] order.
    const ALL: [BoardName; 2] = [BoardName::Qemu, BoardName::Nrf52840];

    pub fn board(self) -> &'static Board {
        match self {
            BoardName::Qemu => &BOARDS[0],
            BoardName::Nrf52840 => &BOARDS[1],
        }
    }
}

impl std::str::FromStr for BoardName {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        BoardName::ALL
            .into_iter()
            .find(|b| b.board().name == s)
            .ok_or_else(|| {
                crate::args::one_of(s, &BOARDS.iter().map(|b| b.name).collect::<Vec<_>>())
            })
    }
}

/// The shipped firmware binaries, one per [`BoardName`].
const BOARDS: &[Board] = &[
    Board {
        name: "qemu",
        package: "beacon-qemu",
        bin: "beacon-qemu",
        chip: None,
        outbox: 64 * 1024,
    },
    Board {
        name: "nrf52840",
        package: "beacon-nrf52840",
        bin: "beacon-nrf52840",
        chip: Some("nRF52840_xxAA"),
        outbox: 32 * 1024,
    },
];

#[derive(Debug)]
pub struct Board {
    /// What `--board` takes.
    pub name: &'static str,
    /// Its cargo package in the firmware workspace.
    pub package: &'static str,
    pub bin: &'static str,
    /// probe-rs chip name; None for the emulated board.
    pub chip: Option<&'static str>,
    /// Bytes of its store-and-forward outbox (`OUTBOX_BYTES` in the board's main.rs), added to
    /// [`RAM_BUDGET`]: frames kept until the gateway acks them.
    outbox: u64,
}

#[derive(Debug)]
pub struct FlashArgs {
    /// The real board to flash.
    pub board: BoardName,
}

impl FlashArgs {
    pub fn parse(a: &mut crate::args::Args) -> std::result::Result<Self, crate::args::Usage> {
        Ok(FlashArgs {
            board: a.value("--board")?.unwrap_or(BoardName::Nrf52840),
        })
    }
}

/// `cargo xtask flash --help`.
pub const FLASH_HELP: &str = "\
Build the real board's firmware and run it through probe-rs (flash, reset, defmt logs). Needs the
board on USB; without a probe, probe-rs says so.

Usage: cargo xtask flash [OPTIONS]

Options:
      --board <BOARD>  The board to flash [default: nrf52840]
  -h, --help           Print help
";

/// `cargo xtask size --help`.
pub const SIZE_HELP: &str = "\
Flash and static RAM of each board's release firmware, checked against the budget.

Usage: cargo xtask size
";

/// The firmware's cargo workspace.
pub fn firmware_dir() -> PathBuf {
    project_root().join("firmware")
}

/// Where the release ELFs are.
pub fn release_dir() -> PathBuf {
    firmware_dir().join("target").join(TARGET).join("release")
}

/// Builds both boards (release), checks sizes, formatting and lints, runs the firmware logic's
/// host tests and the QEMU boot tests.
pub fn test() -> Result {
    let fw = firmware_dir();
    let target_dir = fw.join("target");
    let cargo_in = |dir: &Path, args: &[&str]| firmware_cargo(dir).args(args).run();
    // Both boards, release (what ships, and what the QEMU tests boot).
    cargo_in(&fw, &["build", "--release", "--workspace", "--bins"])?;
    size()?;
    // Lint every board (a plain `cargo clippy` in firmware/ covers only the default member).
    // Not `--all`: for cargo fmt that also means the path dependencies (the protocol crate,
    // which the host workspace formats and checks).
    cargo_in(&fw, &["fmt", "--check"])?;
    let deny = ["--quiet", "--", "-D", "warnings"];
    cargo_in(
        &fw,
        &[&["clippy", "--workspace", "--all-targets"][..], &deny].concat(),
    )?;
    // The application logic's unit tests run on the host: they need std, so the lib opts out
    // of tests on the firmware target and `--lib` selects them explicitly. `--profile test`
    // makes clippy check the lib with cfg(test), i.e. the test code too.
    let host_lib = ["-p", "beacon-firmware", "--lib", "--target", "host-tuple"];
    cargo_in(
        &fw,
        &[&["clippy", "--profile", "test"][..], &host_lib, &deny].concat(),
    )?;
    cargo_in(&fw, &[&["test"][..], &host_lib].concat())?;
    // Boot the QEMU build: frames over a TCP socket, the panicking and faulting builds.
    if !on_path("qemu-system-arm") {
        bail!(
            "qemu-system-arm is not installed; the firmware boot tests need it: \
             `cargo xtask setup --only qemu`"
        );
    }
    let root = project_root();
    let manifest = ["--manifest-path", "firmware/host-tests/Cargo.toml"];
    cargo_in(&root, &[&["fmt", "--check"][..], &manifest].concat())?;
    // The cargo subcommand, then the manifest, then the rest (which may hold `--`).
    let host_tests = |sub: &str, rest: &[&str]| {
        firmware_cargo(&root)
            .arg(sub)
            .args(manifest)
            .args(rest)
            .env("CARGO_TARGET_DIR", &target_dir)
            .dir(&root)
            .run()
    };
    host_tests("clippy", &[&["--all-targets"][..], &deny].concat())?;
    // --nocapture: the boot test prints the time from QEMU launch to the first frame.
    host_tests("test", &["--", "--nocapture"])?;
    flash_without_probe()
}

/// `cargo xtask flash` with no probe attached must fail with probe-rs's own message, not a
/// configuration error. Checked here when probe-rs is installed and sees no probe (never with
/// a probe attached: that would flash the board and stream its logs forever).
fn flash_without_probe() -> Result {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    if !on_path("probe-rs") {
        eprintln!("skipped: flash without a probe (probe-rs is not installed)");
        return Ok(());
    }
    let list = cmd("probe-rs")
        .arg("list")
        .env("RUST_LIB_BACKTRACE", "0")
        .read()?;
    if !list.contains("No debug probes were found") {
        eprintln!(
            "skipped: flash without a probe (a probe is attached: {})",
            list.trim()
        );
        return Ok(());
    }
    let board = BoardName::Nrf52840.board();
    let chip = board.chip.unwrap_or_default();
    let elf = release_dir().join(board.bin);
    eprintln!(
        "$ probe-rs run --chip {chip} {} (no probe attached: must fail)",
        elf.display()
    );
    let mut child = Command::new("probe-rs")
        .args(["run", "--chip", chip])
        .arg(&elf)
        .env("RUST_LIB_BACKTRACE", "0")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    // Read stderr on its own thread so a chatty probe-rs cannot block on a full pipe.
    let reader = child.stderr.take().map(|mut pipe| {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = std::io::Read::read_to_string(&mut pipe, &mut text);
            text
        })
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            bail!("`probe-rs run` with no probe attached did not end within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let stderr = reader.and_then(|r| r.join().ok()).unwrap_or_default();
    let message = "No connected probes were found";
    if status.success() || !stderr.contains(message) {
        bail!(
            "`probe-rs run` with no probe attached: expected failure with \"{message}\", got {status}:\n{stderr}"
        );
    }
    eprintln!("ok: probe-rs says \"{message}.\" ({status})");
    Ok(())
}

/// Prints flash and static RAM of each board's release ELF (llvm-size from the llvm-tools
/// component) and fails when one is over budget. Build first (`test` does).
pub fn size() -> Result {
    let llvm_size = llvm_tool("llvm-size")?;
    eprintln!("firmware sizes (release; flash = text + data, static RAM = data + bss):");
    let mut over = Vec::new();
    for board in BOARDS {
        let elf = release_dir().join(board.bin);
        if !elf.is_file() {
            bail!(
                "{} is not built; build it: `cd firmware && cargo build --release --workspace`",
                elf.display()
            );
        }
        let out = cmd(&llvm_size).arg(&elf).read()?;
        let (text, data, bss) = parse_berkeley(&out)
            .ok_or_else(|| crate::cmd::Error(format!("cannot read llvm-size output: {out}")))?;
        let (flash, ram) = (text + data, data + bss);
        let ram_budget = RAM_BUDGET + board.outbox;
        eprintln!(
            "  {:<10} {:<16} flash {:>6} B ({:>4.1} KiB)   RAM {:>6} B ({:>4.1} KiB, budget {} KiB incl. a {} KiB outbox)",
            board.name,
            board.bin,
            flash,
            flash as f64 / 1024.0,
            ram,
            ram as f64 / 1024.0,
            ram_budget / 1024,
            board.outbox / 1024
        );
        if flash > FLASH_BUDGET || ram > ram_budget {
            over.push(format!("{} (RAM budget {ram_budget} B)", board.bin));
        }
    }
    if !over.is_empty() {
        bail!(
            "over the size budget (flash {FLASH_BUDGET} B, RAM {RAM_BUDGET} B + the board's outbox): {}; see firmware/README.md, \"Size\"",
            over.join(", ")
        );
    }
    Ok(())
}

/// `cargo xtask flash`: build the real board's firmware and run it through probe-rs (flash,
/// reset, stream the defmt logs). Without a probe attached, probe-rs's own error says so.
pub fn flash(args: FlashArgs) -> Result {
    let board = args.board.board();
    let Some(chip) = board.chip else {
        bail!(
            "board `{}` is emulated; run it with `cd firmware && cargo run --release`",
            board.name
        );
    };
    let build = [
        "build",
        "--release",
        "-p",
        board.package,
        "--bin",
        board.bin,
    ];
    firmware_cargo(&firmware_dir()).args(build).run()?;
    if !on_path("probe-rs") {
        bail!(
            "probe-rs is not installed; install it with `cargo xtask setup --only probe-rs` \
             (or `cargo install probe-rs-tools --locked`), then re-run `cargo xtask flash`"
        );
    }
    let elf = release_dir().join(board.bin);
    // The same command as the board's cargo runner (firmware/boards/*/.cargo/config.toml).
    cmd("probe-rs")
        // anyhow's backtraces (on when RUST_BACKTRACE is set) would bury probe-rs's one-line
        // error, e.g. "No connected probes were found.", under 40 lines of frames.
        .env("RUST_LIB_BACKTRACE", "0")
        .args(["run", "--chip", chip])
        .arg(&elf)
        .run()
        .map_err(|e| {
            crate::cmd::Error(format!(
                "{e}\nflashing needs the board connected over USB (its debug probe); \
             `probe-rs list` shows the probes it sees"
            ))
        })
}

/// `cargo` in `dir` for firmware work. The firmware always builds into firmware/target for
/// thumbv7em-none-eabihf (that is where the size check, the QEMU tests and probe-rs look), so
/// a user's exported CARGO_TARGET_DIR / CARGO_BUILD_TARGET must not move or retarget it.
fn firmware_cargo(dir: &Path) -> crate::cmd::Cmd {
    cmd("cargo")
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .dir(dir)
}

/// A binary of the llvm-tools component (`rustup component add llvm-tools`).
fn llvm_tool(name: &str) -> Result<PathBuf> {
    let sysroot = cmd("rustc")
        .args(["--print", "sysroot"])
        .dir(firmware_dir())
        .read()?;
    let host = cmd("rustc").args(["--print", "host-tuple"]).read()?;
    let bin = Path::new(sysroot.trim())
        .join("lib/rustlib")
        .join(host.trim())
        .join("bin")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    if !bin.is_file() {
        bail!(
            "{} not found; install it: `rustup component add llvm-tools`",
            bin.display()
        );
    }
    Ok(bin)
}

/// `text data bss` from llvm-size's default (Berkeley) output: a header line, then numbers.
fn parse_berkeley(out: &str) -> Option<(u64, u64, u64)> {
    let line = out.lines().nth(1)?;
    let mut n = line.split_whitespace().map(str::parse::<u64>);
    Some((n.next()?.ok()?, n.next()?.ok()?, n.next()?.ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_llvm_size_berkeley_output() {
        let out = "   text\t   data\t    bss\t    dec\t    hex\tfilename\n  11908\t      4\t     36\t  11948\t   2eac\tbeacon-qemu\n";
        assert_eq!(parse_berkeley(out), Some((11908, 4, 36)));
        assert_eq!(parse_berkeley("garbage"), None);
        assert_eq!(parse_berkeley("h\nx y z\n"), None);
    }

    /// A real board's chip is written twice: here (xtask flashes with it) and in its board
    /// folder's `.cargo/config.toml` runner (`cargo run --release` there). TODO(4) changes
    /// both; this fails, naming the file, when only one was changed.
    #[test]
    fn board_chip_names_agree_with_each_boards_cargo_runner() {
        let boards = crate::project::root().join("firmware/boards");
        for board in BOARDS {
            let Some(chip) = board.chip else { continue };
            let dir = std::fs::read_dir(&boards)
                .unwrap()
                .flatten()
                .map(|e| e.path())
                .find(|d| {
                    std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| {
                        t.lines()
                            .any(|l| l.trim() == format!("name = \"{}\"", board.package))
                    })
                })
                .unwrap_or_else(|| {
                    panic!("no firmware/boards/*/Cargo.toml names {}", board.package)
                });
            let config = dir.join(".cargo/config.toml");
            let text = std::fs::read_to_string(&config).unwrap();
            assert!(
                text.lines()
                    .any(|l| !l.trim_start().starts_with('#')
                        && l.contains(&format!("--chip {chip}"))),
                "{} does not run `probe-rs run --chip {chip}` (xtask/src/firmware.rs BOARDS \
                 says {chip}): change both to your chip",
                config.display()
            );
        }
    }
}
