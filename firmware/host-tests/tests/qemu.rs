//! Boots the firmware's QEMU build (mps2-an386) in a real `qemu-system-arm` and checks what it
//! sends over UART0, which QEMU connects to a TCP socket the test listens on.
//!
//! Every wait has a deadline and every QEMU process is killed when its guard drops, so a
//! misbehaving firmware fails these tests; it never hangs them.

use beacon_firmware_host_tests::{build_release, firmware_dir, random_boot_id};
use beacon_protocol::frame::board;
use beacon_protocol::{Decoder, Frame, Reading, status};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

/// Longest any single QEMU run may take in these tests.
const RUN_LIMIT: Duration = Duration::from_secs(20);

/// Builds the QEMU board's binaries (release) once per test run and returns their directory.
/// A no-op when `cargo xtask test` has built them already.
fn elf_dir() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| build_release(&["-p", "beacon-qemu"], "the QEMU firmware"))
}

/// The firmware version the Boot frame must carry: firmware/Cargo.toml's workspace version.
fn expected_firmware_version() -> [u8; 3] {
    let manifest = std::fs::read_to_string(firmware_dir().join("Cargo.toml")).unwrap();
    let line = manifest
        .lines()
        .find(|l| l.trim_start().starts_with("version = "))
        .expect("firmware/Cargo.toml has a version line");
    let version = line.split('"').nth(1).expect("quoted version");
    let parts: Vec<u8> = version
        .split('.')
        .map(|p| p.parse().expect("numeric version"))
        .collect();
    parts.try_into().expect("major.minor.patch")
}

/// The simulated sensor's n-th value for a device, restated from its documentation
/// (firmware/app/src/sensor.rs) rather than imported, so a change there must be deliberate.
fn predicted(device_id: u32, n: u32) -> (i16, u16) {
    let t = 2000 + 100 * (device_id % 8) + 25 * (n % 40);
    let h = 4000 + 50 * (n % 20);
    (t as i16, h as u16)
}

/// A running QEMU; killed (and reaped) on drop.
struct Qemu {
    child: Child,
    started: Instant,
    stdout: Option<JoinHandle<Vec<u8>>>,
    stderr: Option<JoinHandle<Vec<u8>>>,
}

impl Qemu {
    /// Starts `bin` with UART0 sent to `serial` (a QEMU chardev spec) and `append` as the
    /// firmware's command line.
    fn start(bin: &str, serial: &str, append: &str) -> Self {
        let elf = elf_dir().join(bin);
        assert!(
            elf.is_file(),
            "{} is missing after the build",
            elf.display()
        );
        let mut cmd = Command::new("qemu-system-arm");
        cmd.args(["-machine", "mps2-an386", "-nographic", "-monitor", "none"])
            .args(["-semihosting-config", "enable=on,target=native"])
            .args(["-serial", serial])
            .arg("-kernel")
            .arg(&elf)
            .args(["-append", append])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let started = Instant::now();
        let mut child = cmd.spawn().unwrap_or_else(|e| {
            panic!("could not start qemu-system-arm: {e}; install it (Debian/Ubuntu: apt-get install qemu-system-arm)")
        });
        let stdout = child.stdout.take().map(drain);
        let stderr = child.stderr.take().map(drain);
        Self {
            child,
            started,
            stdout,
            stderr,
        }
    }

    /// Waits up to `limit` for QEMU to exit on its own; kills it and fails the test otherwise.
    /// Returns the exit status, stdout (defmt bytes) and stderr (text).
    fn wait(mut self, limit: Duration) -> (ExitStatus, Vec<u8>, String) {
        let deadline = Instant::now() + limit;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for qemu") {
                break status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                let err = self
                    .stderr
                    .take()
                    .map(|h| h.join().unwrap_or_default())
                    .unwrap_or_default();
                panic!(
                    "qemu did not exit within {limit:?}; killed it. stderr:\n{}",
                    String::from_utf8_lossy(&err)
                );
            }
            thread::sleep(Duration::from_millis(10));
        };
        let out = self
            .stdout
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        let err = self
            .stderr
            .take()
            .map(|h| h.join().unwrap_or_default())
            .unwrap_or_default();
        (status, out, String::from_utf8_lossy(&err).into_owned())
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Reads a pipe to the end on its own thread, so QEMU never blocks on a full pipe.
fn drain(mut pipe: impl Read + Send + 'static) -> JoinHandle<Vec<u8>> {
    thread::spawn(move || {
        let mut all = Vec::new();
        let _ = pipe.read_to_end(&mut all);
        all
    })
}

/// A listener for QEMU's `-serial tcp:` client, and the matching chardev spec.
fn listen() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let port = listener.local_addr().unwrap().port();
    (listener, format!("tcp:127.0.0.1:{port}"))
}

/// Accepts QEMU's connection, failing after `limit` (or as soon as QEMU has exited).
fn accept(listener: &TcpListener, qemu: &mut Qemu, limit: Duration) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let deadline = Instant::now() + limit;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                stream
                    .set_read_timeout(Some(Duration::from_millis(50)))
                    .unwrap();
                return stream;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) => panic!("accepting qemu's uart connection: {e}"),
        }
        if let Ok(Some(status)) = qemu.child.try_wait() {
            panic!("qemu exited ({status}) before connecting its uart");
        }
        assert!(
            Instant::now() < deadline,
            "qemu did not connect its uart within {limit:?}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}

/// Decoded frames, and when the first one arrived.
struct Received {
    frames: Vec<Frame>,
    errors: Vec<String>,
    first_frame_after: Option<Duration>,
}

/// Reads and decodes the UART stream until `done(frames)` says so, the peer closes (QEMU
/// exited), or `limit` passes.
fn read_frames(
    stream: &mut TcpStream,
    started: Instant,
    limit: Duration,
    mut done: impl FnMut(&[Frame]) -> bool,
) -> Received {
    let deadline = Instant::now() + limit;
    let mut decoder = Decoder::new();
    let mut got = Received {
        frames: Vec::new(),
        errors: Vec::new(),
        first_frame_after: None,
    };
    let mut buf = [0u8; 512];
    while Instant::now() < deadline && !done(&got.frames) {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                for item in decoder.feed(&buf[..n]) {
                    match item {
                        Ok(frame) => {
                            got.first_frame_after
                                .get_or_insert_with(|| started.elapsed());
                            got.frames.push(frame);
                        }
                        Err(e) => got.errors.push(e.to_string()),
                    }
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            Err(e) => panic!("reading qemu's uart: {e}"),
        }
    }
    got
}

/// Checks one device's frame sequence: Boot first, consecutive seqs from 0, sample values as
/// predicted, uptime never going back. Returns the number of (sample, heartbeat) frames.
fn check_stream(frames: &[Frame], device_id: u32, period_ms: u64) -> (u32, u32) {
    let first = frames.first().expect("at least one frame");
    assert_eq!(
        first.readings.as_slice(),
        [Reading::Boot {
            firmware: expected_firmware_version(),
            board: board::QEMU_MPS2_AN386
        }],
        "the first frame must be the Boot frame"
    );
    let (mut samples, mut heartbeats) = (0u32, 0u32);
    let mut last_uptime = 0;
    for (i, f) in frames.iter().enumerate() {
        assert_eq!(f.device_id, device_id, "frame {i}: device id");
        assert_eq!(
            f.seq, i as u32,
            "frame {i}: sequence numbers must be consecutive from 0"
        );
        assert!(
            f.uptime_ms >= last_uptime,
            "frame {i}: uptime went back ({} < {last_uptime})",
            f.uptime_ms
        );
        last_uptime = f.uptime_ms;
        match f.readings.as_slice() {
            [Reading::Boot { .. }] => assert_eq!(i, 0, "only the first frame is a Boot frame"),
            [
                Reading::Temperature { centi_celsius },
                Reading::Humidity { centi_percent },
                Reading::Counter(n),
            ] => {
                assert_eq!(*n, samples, "frame {i}: sample counter");
                assert_eq!(
                    (*centi_celsius, *centi_percent),
                    predicted(device_id, *n),
                    "frame {i}: sample {n}"
                );
                assert!(
                    f.uptime_ms >= period_ms * u64::from(n + 1),
                    "frame {i}: sample {n} at {} ms, before its deadline",
                    f.uptime_ms
                );
                samples += 1;
            }
            [
                Reading::Status(status::HEARTBEAT),
                Reading::Counter(_missed),
            ] => heartbeats += 1,
            other => panic!("frame {i}: unexpected readings {other:?}"),
        }
    }
    (samples, heartbeats)
}

#[test]
fn qemu_boot_frame_then_consecutive_seqs_and_predicted_samples_then_clean_exit() {
    let (listener, serial) = listen();
    let boot_id = random_boot_id();
    let mut qemu = Qemu::start(
        "beacon-qemu",
        &serial,
        &format!("device-id=3 boot-id={boot_id} period-ms=50 heartbeat-ms=200 samples=12"),
    );
    let started = qemu.started;
    let mut stream = accept(&listener, &mut qemu, Duration::from_secs(10));
    let got = read_frames(&mut stream, started, RUN_LIMIT, |_| false);
    let (status, defmt_bytes, stderr) = qemu.wait(Duration::from_secs(5));

    assert!(
        status.success(),
        "qemu should exit 0 after `samples=12` ({status}); stderr:\n{stderr}"
    );
    assert!(
        got.errors.is_empty(),
        "undecodable bytes on the uart: {:?}",
        got.errors
    );
    let (samples, heartbeats) = check_stream(&got.frames, 3, 50);
    assert_eq!(samples, 12, "frames: {:#?}", got.frames);
    assert!(
        got.frames.iter().all(|f| f.boot == boot_id),
        "every frame carries boot-id={boot_id}: {:?}",
        got.frames.iter().map(|f| f.boot).collect::<Vec<_>>()
    );
    assert!(
        heartbeats >= 2,
        "heartbeats every 200 ms over 600 ms, got {heartbeats}"
    );
    assert!(
        !defmt_bytes.is_empty(),
        "no defmt log bytes on semihosting stdout"
    );
    let first = got.first_frame_after.expect("a first frame");
    println!(
        "qemu launch -> first decoded frame: {} ms; {} frames; defmt log {} bytes",
        first.as_millis(),
        got.frames.len(),
        defmt_bytes.len()
    );
    assert!(first < Duration::from_secs(5), "first frame took {first:?}");
}

#[test]
fn qemu_three_instances_at_once_keep_their_own_device_ids() {
    let runs: Vec<_> = [1u32, 2, 7]
        .into_iter()
        .map(|id| {
            let (listener, serial) = listen();
            let qemu = Qemu::start(
                "beacon-qemu",
                &serial,
                &format!("device-id={id} period-ms=20 samples=5"),
            );
            (id, listener, qemu)
        })
        .collect();
    for (id, listener, mut qemu) in runs {
        let started = qemu.started;
        let mut stream = accept(&listener, &mut qemu, Duration::from_secs(10));
        let got = read_frames(&mut stream, started, RUN_LIMIT, |_| false);
        let (status, _, stderr) = qemu.wait(Duration::from_secs(5));
        assert!(status.success(), "device {id}: {status}; {stderr}");
        let (samples, _) = check_stream(&got.frames, id, 20);
        assert_eq!(samples, 5, "device {id}");
    }
}

/// One boot of device 4 with `append` extra words: its frames.
fn boot_device_4(extra: &str) -> Vec<Frame> {
    let (listener, serial) = listen();
    let mut qemu = Qemu::start(
        "beacon-qemu",
        &serial,
        &format!("device-id=4 period-ms=20 heartbeat-ms=60000 samples=3 {extra}"),
    );
    let started = qemu.started;
    let mut stream = accept(&listener, &mut qemu, Duration::from_secs(10));
    let got = read_frames(&mut stream, started, RUN_LIMIT, |_| false);
    let (status, _, stderr) = qemu.wait(Duration::from_secs(5));
    assert!(status.success(), "{status}; {stderr}");
    assert!(got.errors.is_empty(), "{:?}", got.errors);
    got.frames
}

/// The reboot case of protocol/SPEC.md 3.1: the same device restarted sends the same seqs
/// again, each boot with the boot id its runner passed; without one, the host clock.
#[test]
fn qemu_reboot_with_a_new_boot_id_sends_the_same_seqs_as_different_frames() {
    let (a, b) = (random_boot_id(), random_boot_id());
    assert_ne!(a, b, "two draws from /dev/urandom");
    let first = boot_device_4(&format!("boot-id={a}"));
    let second = boot_device_4(&format!("boot-id={b}"));
    let key = |f: &Frame| (f.device_id, f.seq);
    assert_eq!(
        first.iter().map(key).collect::<Vec<_>>(),
        second.iter().map(key).collect::<Vec<_>>(),
        "a reboot restarts seq at 0"
    );
    assert_eq!(first.len(), 4, "Boot frame + 3 samples");
    assert!(first.iter().all(|f| f.boot == a), "{first:?}");
    assert!(second.iter().all(|f| f.boot == b), "{second:?}");

    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let fallback = boot_device_4("");
    let boot = u64::from(fallback[0].boot);
    assert!(
        (before.saturating_sub(2)..=before + 30).contains(&boot),
        "without boot-id the boot id is the host clock in seconds ({boot}, now {before})"
    );
    assert!(fallback.iter().all(|f| u64::from(f.boot) == boot));
}

#[test]
fn qemu_replays_recent_frames_when_the_receiver_asks() {
    let (listener, serial) = listen();
    // 100 ms: the 16-frame ring still holds seq 0 unless this test stalls for over a second.
    let mut qemu = Qemu::start("beacon-qemu", &serial, "device-id=5 period-ms=100");
    let started = qemu.started;
    let mut stream = accept(&listener, &mut qemu, Duration::from_secs(10));
    let before = read_frames(&mut stream, started, Duration::from_secs(10), |f| {
        f.len() >= 4
    });
    assert_eq!(before.frames.len(), 4, "{:?}", before.errors);
    // As a restarted gateway would: ask for the recent frames.
    stream.write_all(b"R").unwrap();
    let after = read_frames(&mut stream, started, Duration::from_secs(10), |f| {
        f.iter().any(|f| f.seq == 0)
    });
    drop(qemu); // a firmware that runs forever: the guard kills it
    let replayed: Vec<u32> = after.frames.iter().map(|f| f.seq).collect();
    assert!(
        replayed.contains(&0),
        "the Boot frame (seq 0) was not replayed: {replayed:?}"
    );
    let boot = after.frames.iter().find(|f| f.seq == 0).unwrap();
    assert_eq!(
        boot, &before.frames[0],
        "a replayed frame is the same frame"
    );
}

/// Store-and-forward on the real firmware: frames the receiver acked are forgotten, the rest
/// (and nothing else) comes back on a replay request, oldest first (protocol/SPEC.md 8).
#[test]
fn qemu_forgets_acked_frames_and_replays_only_the_unacked_ones() {
    use beacon_protocol::downlink::{Ack, MAX_ACK_WIRE_LEN};
    let (listener, serial) = listen();
    let mut qemu = Qemu::start("beacon-qemu", &serial, "device-id=6 period-ms=100");
    let started = qemu.started;
    let mut stream = accept(&listener, &mut qemu, Duration::from_secs(10));
    let before = read_frames(&mut stream, started, Duration::from_secs(10), |f| {
        f.len() >= 6
    });
    assert_eq!(before.frames.len(), 6, "{:?}", before.errors);
    let boot = before.frames[0].boot;
    // Ack seq 0..=3 (as a gateway does after the service's 2xx), then ask for a replay.
    let mut buf = [0u8; MAX_ACK_WIRE_LEN];
    let n = Ack {
        boot,
        first: 0,
        last: 3,
    }
    .encode(&mut buf)
    .unwrap();
    // The UART delivers bytes in order: the ack is taken before the R.
    stream.write_all(&buf[..n]).unwrap();
    stream.write_all(b"R").unwrap();
    let after = read_frames(&mut stream, started, Duration::from_secs(10), |f| {
        f.iter().any(|f| f.seq == 4)
    });
    drop(qemu);
    let seqs: Vec<u32> = after.frames.iter().map(|f| f.seq).collect();
    assert!(
        !seqs.iter().any(|&s| s <= 3),
        "acked frames were re-sent: {seqs:?}"
    );
    let first_replayed = seqs.iter().position(|&s| s == 4).unwrap();
    let replayed = &after.frames[first_replayed..];
    assert_eq!(
        replayed[0], before.frames[4],
        "a replayed frame is the same frame"
    );
    assert_eq!(replayed[1], before.frames[5], "oldest first: {seqs:?}");
}

#[test]
fn qemu_receiver_restart_loses_no_frame_with_reconnect_and_replay() {
    // What a gateway restart looks like to the device: the socket closes, QEMU's chardev
    // reconnects (`reconnect=1`: retry every second), the new receiver asks for a replay.
    // 200 ms period: the ~1 s gap is ~5 frames, well inside the 16-frame ring.
    let (listener, serial) = listen();
    let mut qemu = Qemu::start(
        "beacon-qemu",
        &format!("{serial},reconnect=1"),
        "device-id=6 period-ms=200",
    );
    let started = qemu.started;
    let mut first = accept(&listener, &mut qemu, Duration::from_secs(10));
    let before = read_frames(&mut first, started, Duration::from_secs(10), |f| {
        f.len() >= 3
    });
    drop(first); // the receiver goes away
    let mut second = accept(&listener, &mut qemu, Duration::from_secs(10));
    second.write_all(b"R").unwrap();
    let last_before = before.frames.last().map(|f| f.seq).unwrap_or(0);
    // Enough to cover the gap and a few new frames.
    let after = read_frames(&mut second, started, Duration::from_secs(10), |f| {
        f.iter().any(|f| f.seq >= last_before + 8)
    });
    drop(qemu);
    let mut seqs: Vec<u32> = before
        .frames
        .iter()
        .chain(&after.frames)
        .map(|f| f.seq)
        .collect();
    seqs.sort_unstable();
    seqs.dedup();
    let max = *seqs.last().unwrap();
    let missing: Vec<u32> = (0..=max)
        .filter(|s| seqs.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "frames lost across the receiver restart: {missing:?}"
    );
    assert!(
        max >= last_before + 8,
        "the device kept sending after the restart (max seq {max})"
    );
}

#[test]
fn qemu_as_tcp_server_runs_without_a_receiver_and_replays_on_connect() {
    // The demo's wiring: QEMU listens (`server=on,wait=off`), the device runs whether or not
    // a gateway is connected, and a gateway that connects late sends `R` to catch up.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let serial = format!("tcp:127.0.0.1:{port},server=on,wait=off");
    let qemu = Qemu::start("beacon-qemu", &serial, "device-id=9 period-ms=100");
    let started = qemu.started;
    thread::sleep(Duration::from_millis(800)); // nobody listening: ~7 frames go nowhere
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut stream = loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => break s,
            Err(_) if Instant::now() < deadline => thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("could not connect to qemu's uart server on port {port}: {e}"),
        }
    };
    stream
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    stream.write_all(b"R").unwrap();
    let got = read_frames(&mut stream, started, Duration::from_secs(10), |f| {
        f.iter().any(|f| f.seq == 0) && f.iter().any(|f| f.seq >= 10)
    });
    drop(qemu);
    let mut seqs: Vec<u32> = got.frames.iter().map(|f| f.seq).collect();
    seqs.sort_unstable();
    seqs.dedup();
    let max = *seqs.last().expect("frames after connecting");
    assert!(max >= 10, "frames up to seq 10 expected, got {seqs:?}");
    let missing: Vec<u32> = (0..=max)
        .filter(|s| seqs.binary_search(s).is_err())
        .collect();
    assert!(
        missing.is_empty(),
        "frames sent before the receiver connected were lost: {missing:?}"
    );
}

/// Runs a fault binary and returns (exit status, elapsed, stderr).
fn run_fault_binary(bin: &str) -> (ExitStatus, Duration, String) {
    let qemu = Qemu::start(bin, "null", "");
    let started = qemu.started;
    let (status, _, stderr) = qemu.wait(Duration::from_secs(10));
    (status, started.elapsed(), stderr)
}

#[test]
fn qemu_panicking_build_exits_nonzero_within_seconds_with_the_message() {
    let (status, took, stderr) = run_fault_binary("qemu-panic");
    assert!(
        !status.success(),
        "a panic must end qemu with a failure code, got {status}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        stderr.contains("beacon-qemu: firmware panicked at"),
        "stderr: {stderr}"
    );
    assert!(
        stderr.contains("deliberate panic from the qemu-panic test binary"),
        "stderr: {stderr}"
    );
    println!("qemu-panic: {status} after {} ms", took.as_millis());
}

#[test]
fn qemu_hardfault_exits_nonzero_within_seconds_with_the_fault_address() {
    let (status, took, stderr) = run_fault_binary("qemu-hardfault");
    assert!(
        !status.success(),
        "a hard fault must end qemu with a failure code, got {status}"
    );
    assert!(took < Duration::from_secs(5), "took {took:?}");
    assert!(
        stderr.contains("beacon-qemu: hard fault at pc=0x"),
        "stderr: {stderr}"
    );
}

#[test]
fn qemu_bad_command_line_exits_nonzero_naming_the_setting() {
    let qemu = Qemu::start("beacon-qemu", "null", "device-id=three");
    let (status, _, stderr) = qemu.wait(Duration::from_secs(10));
    assert!(!status.success(), "{status}");
    assert!(
        stderr.contains("bad value `three` for `device-id`"),
        "stderr: {stderr}"
    );
}
