//! `cargo xtask setup` against faithful stand-ins: the real xtask binary runs with a PATH that
//! holds only fake `rustup`, `cargo`, `apt-get`, `dnf`, `pacman`, `brew`, `sudo`,
//! `criticalup` ... scripts (plus a few real utilities: sh, tar, gzip, curl, diff, chmod,
//! cat). The fakes record their arguments and "install" by dropping a fake tool on PATH, so
//! the tests assert the exact commands per platform profile, skip-if-present on a re-run, the
//! summary, and failures. The release download runs against a local HTTP server (std
//! TcpListener) serving a tarball built in the test: GitHub is not reachable here.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

fn real_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// A pin from toolchains/manifest.toml (`[section]` then `key = "value"`).
fn pin(section: &str, key: &str) -> String {
    let text = std::fs::read_to_string(real_root().join("toolchains/manifest.toml")).unwrap();
    let mut current = String::new();
    for line in text.lines() {
        let line = line.trim();
        if let Some(s) = line.strip_prefix('[') {
            current = s.trim_end_matches(']').to_string();
        } else if current == section
            && let Some((k, v)) = line.split_once('=')
            && k.trim() == key
        {
            return v
                .split('#')
                .next()
                .unwrap()
                .trim()
                .trim_matches('"')
                .to_string();
        }
    }
    panic!("no {section}.{key} in the manifest")
}

fn stable() -> String {
    let text = std::fs::read_to_string(real_root().join("rust-toolchain.toml")).unwrap();
    let line = text.lines().find(|l| l.starts_with("channel")).unwrap();
    line.split('"').nth(1).unwrap().to_string()
}

const REAL_TOOLS: &[&str] = &[
    "sh", "tar", "gzip", "xz", "curl", "diff", "chmod", "cat", "cp", "mkdir",
];

const RUSTUP: &str = r#"#!/bin/sh
echo "rustup $*" >> "$FAKE_LOG"
S="$FAKE_STATE"
case "$1 $2" in
  "toolchain list") cat "$S/toolchains" 2>/dev/null; exit 0;;
  "component list") cat "$S/components-$5" 2>/dev/null; exit 0;;
  "target list") cat "$S/targets-$5" 2>/dev/null; exit 0;;
  "toolchain install")
    tc="$3"; echo "$tc-x86_64-unknown-linux-gnu" >> "$S/toolchains"; shift 3
    while [ $# -gt 0 ]; do
      case "$1" in
        --component) echo "$2" | tr , '\n' >> "$S/components-$tc"; shift;;
        --target) echo "$2" | tr , '\n' >> "$S/targets-$tc"; shift;;
      esac; shift
    done; exit 0;;
  "component add") tc="$4"; shift 4; for c in "$@"; do echo "$c" >> "$S/components-$tc"; done; exit 0;;
  "target add") tc="$4"; shift 4; for c in "$@"; do echo "$c" >> "$S/targets-$tc"; done; exit 0;;
esac
exit 0
"#;

const CARGO: &str = r#"#!/bin/sh
echo "cargo $* [RUSTUP_TOOLCHAIN=$RUSTUP_TOOLCHAIN]" >> "$FAKE_LOG"
if [ "$1" = install ]; then
  ver="$4"; crate="$5"
  if [ "$crate" = "$FAKE_CARGO_FAIL" ]; then echo "error: failed to compile $crate" >&2; exit 101; fi
  case "$crate" in probe-rs-tools) b=probe-rs;; *) b="$crate";; esac
  printf '#!/bin/sh\necho "%s %s"\n' "$b" "$ver" > "$FAKE_BIN/$b"; chmod +x "$FAKE_BIN/$b"
fi
exit 0
"#;

/// apt-get, dnf, pacman, zypper, brew: record, and "install" the tool the package provides.
const PKG: &str = r#"#!/bin/sh
echo "${0##*/} $*" >> "$FAKE_LOG"
case " $* " in *" -s "*) exit 0;; esac
mk() { printf '#!/bin/sh\necho "%s"\n' "$2" > "$FAKE_BIN/$1"; chmod +x "$FAKE_BIN/$1"; }
for a in "$@"; do case "$a" in
  mold) mk mold "mold 2.4.0 (compatible with GNU ld)";;
  qemu-system-arm|qemu-arm|qemu) mk qemu-system-arm "QEMU emulator version 8.2.2";;
  clang) mk clang "clang version 16.0.6";;
  gcc) mk cc "cc (fake gcc) 12.2.0";;
  postgresql|postgresql-server|postgresql@16)
    mk initdb "initdb (PostgreSQL) 15.14"; mk pg_ctl "pg_ctl (PostgreSQL) 15.14";;
esac; done
exit 0
"#;

const SUDO: &str = r#"#!/bin/sh
echo "sudo $*" >> "$FAKE_LOG"
while [ $# -gt 0 ]; do case "$1" in -*) shift;; *) break;; esac; done
exec "$@"
"#;

const CRITICALUP: &str = r#"#!/bin/sh
echo "criticalup $*" >> "$FAKE_LOG"
case "$1" in
  which) [ -f "$FAKE_STATE/ferrocene" ] && { echo /x/rustc; exit 0; }; echo "error: not installed" >&2; exit 1;;
  install) touch "$FAKE_STATE/ferrocene"; exit 0;;
esac
exit 0
"#;

static SEQ: AtomicUsize = AtomicUsize::new(0);

struct Sandbox {
    dir: PathBuf,
    bin: PathBuf,
    home: PathBuf,
    root: PathBuf,
    state: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
}

impl Sandbox {
    /// An empty machine of `os`/`distro`: only the real utilities and the given fakes.
    fn new(name: &str, os: &str, distro: &str, uid: u32) -> Self {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("xtask-setup-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (bin, home, root, state) = (
            dir.join("bin"),
            dir.join("home"),
            dir.join("root"),
            dir.join("state"),
        );
        for d in [
            &bin,
            &home,
            &root.join(".cargo"),
            &root.join("toolchains"),
            &state,
        ] {
            std::fs::create_dir_all(d).unwrap();
        }
        for f in [
            "toolchains/manifest.toml",
            "toolchains/criticalup.toml",
            "rust-toolchain.toml",
        ] {
            std::fs::copy(real_root().join(f), root.join(f)).unwrap();
        }
        // No test reaches the internet: release URLs point at a closed loopback port (the
        // connection is refused at once, like an offline machine), unless a test serves them.
        let manifest = root.join("toolchains/manifest.toml");
        let text = std::fs::read_to_string(&manifest).unwrap();
        std::fs::write(
            &manifest,
            text.replace("https://github.com", "http://127.0.0.1:1"),
        )
        .unwrap();
        for tool in REAL_TOOLS.iter().chain(&["tr", "touch"]) {
            let found = ["/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(tool))
                .find(|p| p.exists());
            if let Some(real) = found {
                std::os::unix::fs::symlink(real, bin.join(tool)).unwrap();
            }
        }
        std::fs::write(dir.join("os-release"), format!("ID={distro}\n")).unwrap();
        let log = dir.join("log");
        std::fs::write(&log, "").unwrap();
        let env = vec![
            ("PATH".into(), bin.display().to_string()),
            ("HOME".into(), home.display().to_string()),
            ("XTASK_PROJECT_ROOT".into(), root.display().to_string()),
            ("XTASK_OS".into(), os.into()),
            ("XTASK_ARCH".into(), "x86_64".into()),
            (
                "XTASK_OS_RELEASE".into(),
                dir.join("os-release").display().to_string(),
            ),
            ("XTASK_UID".into(), uid.to_string()),
            ("FAKE_LOG".into(), log.display().to_string()),
            ("FAKE_STATE".into(), state.display().to_string()),
            ("FAKE_BIN".into(), bin.display().to_string()),
            ("FAKE_CARGO_FAIL".into(), String::new()),
            // Not this machine's PostgreSQL: only what the fakes install.
            (
                "XTASK_PG_LIB".into(),
                dir.join("usr-lib-postgresql").display().to_string(),
            ),
        ];
        Sandbox {
            dir,
            bin,
            home,
            root,
            state,
            log,
            env,
        }
    }

    fn fake(&self, name: &str, script: &str) -> &Self {
        let p = self.bin.join(name);
        std::fs::write(&p, script).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    /// A tool that only answers `--version`.
    fn installed(&self, name: &str, version_line: &str) -> &Self {
        self.fake(name, &format!("#!/bin/sh\necho \"{version_line}\"\n"))
    }

    /// rustup with the pinned stable (and its components/targets) already installed.
    fn with_rustup_and_stable(&self) -> &Self {
        let st = stable();
        self.fake("rustup", RUSTUP).fake("cargo", CARGO);
        std::fs::write(
            self.state.join("toolchains"),
            format!("{st}-x86_64-unknown-linux-gnu\n"),
        )
        .unwrap();
        std::fs::write(
            self.state.join(format!("components-{st}")),
            "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrustfmt-x86_64-unknown-linux-gnu\nllvm-tools-x86_64-unknown-linux-gnu\n",
        )
        .unwrap();
        std::fs::write(
            self.state.join(format!("targets-{st}")),
            "thumbv7em-none-eabihf\nx86_64-unknown-linux-gnu\n",
        )
        .unwrap();
        self
    }

    fn set(&mut self, key: &str, value: &str) {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.into(), value.into()));
    }

    fn run(&self, args: &[&str]) -> Output {
        self.xtask("setup", args)
    }

    /// `xtask <command> <args>` on this machine (stdin is not a terminal: no questions).
    fn xtask(&self, command: &str, args: &[&str]) -> Output {
        std::fs::write(&self.log, "").unwrap();
        let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
        c.arg(command).args(args).env_clear();
        c.stdin(std::process::Stdio::null());
        for (k, v) in &self.env {
            c.env(k, v);
        }
        c.output().unwrap()
    }

    /// The commands that change something (queries such as `list`, `--version` and apt's
    /// simulations dropped).
    fn changes(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap()
            .lines()
            .filter(|l| {
                !(l.contains(" list")
                    || l.contains("apt-get -s ")
                    || l.ends_with("--version")
                    || l.starts_with("criticalup which"))
            })
            .map(String::from)
            .collect()
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The summary row of `tool`.
fn row(o: &Output, tool: &str) -> String {
    let err = stderr(o);
    let summary = err
        .split("summary:")
        .nth(1)
        .unwrap_or_else(|| panic!("no summary in:\n{err}"));
    summary
        .lines()
        .find(|l| l.split_whitespace().next() == Some(tool))
        .unwrap_or_else(|| panic!("no row for {tool} in:\n{summary}"))
        .to_string()
}

fn cargo_installs() -> Vec<String> {
    let st = stable();
    [
        ("probe-rs", "probe-rs-tools"),
        ("tokio-console", "tokio-console"),
        ("just", "just"),
    ]
    .iter()
    .map(|(sec, krate)| {
        format!(
            "cargo install --locked --version {} {krate} [RUSTUP_TOOLCHAIN={st}]",
            pin(sec, "version")
        )
    })
    .collect()
}

fn nightly_install() -> String {
    format!(
        "rustup toolchain install nightly-{} --profile minimal --component rustc-codegen-cranelift-preview",
        pin("nightly", "date")
    )
}

#[test]
fn standin_debian_apt_with_sudo_installs_everything_then_reruns_as_a_no_op() {
    let sb = Sandbox::new("debian", "linux", "debian", 1000);
    sb.with_rustup_and_stable()
        .fake("apt-get", PKG)
        .fake("sudo", SUDO);
    let out = sb.run(&["--yes"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let apt = |args: &str| {
        [
            format!("sudo -n --preserve-env=DEBIAN_FRONTEND apt-get {args}"),
            format!("apt-get {args}"),
        ]
    };
    let mut want = vec![nightly_install()];
    want.extend(apt("update"));
    for pkg in ["clang", "mold", "qemu-system-arm"] {
        want.extend(apt(&format!(
            "install -y --no-remove --no-install-recommends {pkg}"
        )));
    }
    want.extend(cargo_installs());
    assert_eq!(sb.changes(), want, "{}", stderr(&out));
    assert!(
        row(&out, "mold").contains("installed mold with apt"),
        "{}",
        row(&out, "mold")
    );
    assert!(
        row(&out, "probe-rs").contains("cargo install"),
        "{}",
        row(&out, "probe-rs")
    );
    assert!(sb.root.join(".cargo/local.toml").is_file());
    assert!(sb.root.join(".cargo/fast.toml").is_file());

    // Everything present now: nothing runs, every row says so, and it is quick.
    let t0 = std::time::Instant::now();
    let again = sb.run(&["--yes"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(sb.changes(), Vec::<String>::new(), "{}", stderr(&again));
    for tool in [
        "rust",
        "nightly",
        "cc",
        "mold",
        "qemu",
        "probe-rs",
        "tokio-console",
        "just",
    ] {
        assert!(
            row(&again, tool).ends_with("present"),
            "{}",
            row(&again, tool)
        );
    }
    assert!(
        row(&again, "local-config").ends_with("current"),
        "{}",
        row(&again, "local-config")
    );
    assert!(
        t0.elapsed().as_secs_f64() < 3.0,
        "re-run took {:?}",
        t0.elapsed()
    );
}

#[test]
fn standin_fedora_dnf_as_root_needs_no_sudo() {
    let sb = Sandbox::new("fedora", "linux", "fedora", 0);
    sb.with_rustup_and_stable()
        .fake("dnf", PKG)
        .fake("gcc", "#!/bin/sh\necho 13.2.1\n");
    let out = sb.run(&["--yes", "--skip", "probe-rs,tokio-console,just,nightly"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        sb.changes(),
        vec!["dnf install -y mold", "dnf install -y qemu-system-arm"],
        "{}",
        stderr(&out)
    );
    assert!(
        row(&out, "cc").ends_with("present"),
        "gcc 13 can drive mold: {}",
        row(&out, "cc")
    );
}

#[test]
fn standin_arch_pacman_and_missing_rust_components() {
    let sb = Sandbox::new("arch", "linux", "arch", 0);
    sb.with_rustup_and_stable()
        .fake("pacman", PKG)
        .installed("clang", "clang version 17.0.0");
    let st = stable();
    // llvm-tools and the thumb target missing from the pinned stable.
    std::fs::write(sb.state.join(format!("components-{st}")), "cargo-x86_64-unknown-linux-gnu\nclippy-x86_64-unknown-linux-gnu\nrustfmt-x86_64-unknown-linux-gnu\n").unwrap();
    std::fs::write(
        sb.state.join(format!("targets-{st}")),
        "x86_64-unknown-linux-gnu\n",
    )
    .unwrap();
    let out = sb.run(&["--yes", "--only", "rust,mold,qemu"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        sb.changes(),
        vec![
            format!("rustup component add --toolchain {st} llvm-tools"),
            format!("rustup target add --toolchain {st} thumbv7em-none-eabihf"),
            "pacman -S --needed --noconfirm mold".to_string(),
            "pacman -S --needed --noconfirm qemu-system-arm".to_string(),
        ],
        "{}",
        stderr(&out)
    );
    assert!(
        row(&out, "rust").contains("missing llvm-tools,thumbv7em-none-eabihf"),
        "{}",
        row(&out, "rust")
    );
}

#[test]
fn standin_macos_brew_skips_mold_and_explains_why() {
    let sb = Sandbox::new("macos", "macos", "macos", 501);
    sb.with_rustup_and_stable()
        .fake("brew", PKG)
        .fake("sudo", SUDO);
    let out = sb.run(&["--yes", "--only", "cc,mold,qemu,local-config"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        sb.changes(),
        vec!["brew install qemu"],
        "brew never runs under sudo: {}",
        stderr(&out)
    );
    assert!(
        row(&out, "mold").contains("skipped on macOS"),
        "{}",
        row(&out, "mold")
    );
    let local = std::fs::read_to_string(sb.root.join(".cargo/local.toml")).unwrap();
    assert!(
        !local.contains("fuse-ld"),
        "no mold config on macOS:\n{local}"
    );
}

#[test]
fn standin_a_failed_step_does_not_stop_the_others_and_exit_is_nonzero() {
    let mut sb = Sandbox::new("fail", "linux", "debian", 0);
    sb.with_rustup_and_stable()
        .installed("mold", "mold 1.10.1")
        .installed("qemu-system-arm", "QEMU emulator version 7.2.22");
    sb.installed("clang", "clang version 14.0.6");
    sb.set("FAKE_CARGO_FAIL", "probe-rs-tools");
    let out = sb.run(&["--yes", "--skip", "nightly"]);
    assert!(!out.status.success(), "a failed install must fail the run");
    let installs = cargo_installs();
    assert_eq!(
        sb.changes(),
        installs,
        "the steps after the failure still ran: {}",
        stderr(&out)
    );
    let r = row(&out, "probe-rs");
    assert!(
        r.contains("FAILED") && r.contains("re-run `cargo install --locked"),
        "{r}"
    );
    assert!(
        row(&out, "just").contains("built just"),
        "{}",
        row(&out, "just")
    );
    assert!(
        stderr(&out).contains("1 step(s) failed: probe-rs"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn standin_dry_run_and_tool_selection_change_nothing() {
    let sb = Sandbox::new("dry", "linux", "debian", 0);
    sb.with_rustup_and_stable().fake("apt-get", PKG);
    let out = sb.run(&["--dry-run"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.changes(), Vec::<String>::new());
    assert!(
        row(&out, "mold").ends_with("planned (dry run)"),
        "{}",
        row(&out, "mold")
    );
    assert!(
        stderr(&out).contains("apt-get install -y --no-remove --no-install-recommends mold"),
        "the plan shows the command"
    );
    assert!(
        !sb.root.join(".cargo/local.toml").exists(),
        "dry run writes nothing"
    );

    let bad = sb.run(&["--only", "molt"]);
    assert!(!bad.status.success());
    assert!(
        stderr(&bad).contains("unknown tool `molt`; known: rust, nightly"),
        "{}",
        stderr(&bad)
    );

    // Without --yes (and without a terminal to ask on) setup refuses to change anything.
    let refused = sb.run(&["--only", "mold"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("re-run with --yes"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(sb.changes(), Vec::<String>::new());
}

#[test]
fn standin_ci_true_implies_yes() {
    let (_sb, out, changes) = qemu_in_ci("ci", PKG, "");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        changes,
        vec![
            "apt-get update",
            "apt-get install -y --no-remove --no-install-recommends qemu-system-arm"
        ]
    );
}

/// `setup --only qemu` with `CI=true` on a Debian root whose apt-get is `apt` (`$FAKE_REMOVES`
/// set to `removes`): the sandbox, the output and the commands it ran.
fn qemu_in_ci(name: &str, apt: &str, removes: &str) -> (Sandbox, Output, Vec<String>) {
    let mut sb = Sandbox::new(name, "linux", "debian", 0);
    sb.with_rustup_and_stable().fake("apt-get", apt);
    sb.set("FAKE_REMOVES", removes);
    sb.set("CI", "true");
    let out = sb.run(&["--only", "qemu"]);
    let changes = sb.changes();
    (sb, out, changes)
}

/// apt that, like Debian's on this machine kind, can install qemu-system-arm only by removing
/// something (`$FAKE_REMOVES`): `--no-remove` makes it refuse; `-s` shows the plan (with
/// `$FAKE_SIM_AFTER_UPDATE` set, only after an `apt-get update`, as with no package lists).
const APT_REMOVES: &str = r#"#!/bin/sh
echo "${0##*/} $*" >> "$FAKE_LOG"
case " $* " in
  *" update "*) [ -n "$FAKE_SIM_AFTER_UPDATE" ] && touch "$FAKE_LOG.updated"; exit 0;;
  *" -s "*) if [ -z "$FAKE_SIM_AFTER_UPDATE" ] || [ -e "$FAKE_LOG.updated" ]; then echo "Remv $FAKE_REMOVES [1:10.0.2]"; fi; echo "Inst qemu-system-arm (1:7.2)"; exit 0;;
  *" --no-remove "*qemu-system-arm*) echo "E: Packages need to be removed but remove is disabled." >&2; exit 100;;
  *qemu-system-arm*) printf '#!/bin/sh\necho "QEMU emulator version 7.2.22"\n' > "$FAKE_BIN/qemu-system-arm"; chmod +x "$FAKE_BIN/qemu-system-arm";;
esac
exit 0
"#;

#[test]
fn standin_apt_that_must_remove_a_same_family_package_does_so_only_with_consent() {
    // The plan asks apt first (a simulation), so the plan shown, and the one question on a
    // terminal, already say what goes; the install then runs without `--no-remove`.
    let (mut sb, out, changes) = qemu_in_ci("apt-removes", APT_REMOVES, "qemu-utils");
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        changes,
        vec![
            "apt-get update",
            "apt-get install -y --no-install-recommends qemu-system-arm",
        ]
    );
    assert!(
        stderr(&out).contains(
            "qemu          (apt removes qemu-utils, of the same family: the project does not use it)"
        ),
        "{}",
        stderr(&out)
    );

    // When the plan's simulation saw nothing (no package lists before `apt-get update`), the
    // refused install asks apt again and, with consent, removes the same-family package.
    std::fs::remove_file(sb.bin.join("qemu-system-arm")).unwrap();
    sb.set("FAKE_SIM_AFTER_UPDATE", "1");
    let late = sb.run(&["--only", "qemu"]);
    assert!(late.status.success(), "{}", stderr(&late));
    assert!(
        stderr(&late).contains("apt must remove qemu-utils to install qemu-system-arm"),
        "{}",
        stderr(&late)
    );
    assert!(
        sb.changes().ends_with(&[
            "apt-get install -y --no-remove --no-install-recommends qemu-system-arm".to_string(),
            "apt-get install -y --no-install-recommends qemu-system-arm".to_string(),
        ]),
        "{:?}",
        sb.changes()
    );
    sb.set("FAKE_SIM_AFTER_UPDATE", "");

    // An unrelated package is never removed, even with consent: the error names it.
    std::fs::remove_file(sb.bin.join("qemu-system-arm")).unwrap();
    sb.set("FAKE_REMOVES", "libc-bin");
    let refused = sb.run(&["--only", "qemu"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("apt would have to remove libc-bin: xtask never removes"),
        "{}",
        stderr(&refused)
    );
    assert!(
        !sb.changes()
            .contains(&"apt-get install -y --no-install-recommends qemu-system-arm".to_string()),
        "{:?}",
        sb.changes()
    );
}

// template:service:begin
#[test]
fn standin_postgres_is_opt_in_shown_by_dry_run_installed_once_then_present() {
    let sb = Sandbox::new("postgres", "linux", "debian", 1000);
    sb.with_rustup_and_stable()
        .fake("apt-get", PKG)
        .fake("sudo", SUDO);
    // Not in the default set.
    let all = sb.run(&["--dry-run"]);
    assert!(all.status.success(), "{}", stderr(&all));
    assert!(!stderr(&all).contains("postgres"), "{}", stderr(&all));

    let dry = sb.run(&["--dry-run", "--only", "postgres"]);
    assert!(dry.status.success(), "{}", stderr(&dry));
    assert_eq!(sb.changes(), Vec::<String>::new());
    assert!(
        stderr(&dry).contains(
            "postgres      sudo --preserve-env=DEBIAN_FRONTEND apt-get install -y --no-remove --no-install-recommends postgresql"
        ),
        "the plan shows the command: {}",
        stderr(&dry)
    );
    assert!(row(&dry, "postgres").ends_with("planned (dry run)"));

    let out = sb.run(&["--yes", "--only", "postgres"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let apt = |args: &str| {
        [
            format!("sudo -n --preserve-env=DEBIAN_FRONTEND apt-get {args}"),
            format!("apt-get {args}"),
        ]
    };
    let mut want = apt("update").to_vec();
    want.extend(apt(
        "install -y --no-remove --no-install-recommends postgresql",
    ));
    assert_eq!(sb.changes(), want, "{}", stderr(&out));
    assert!(
        row(&out, "postgres").contains("installed postgresql"),
        "{}",
        row(&out, "postgres")
    );

    // Present now (initdb and pg_ctl on PATH): nothing runs.
    let again = sb.run(&["--yes", "--only", "postgres"]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(sb.changes(), Vec::<String>::new(), "{}", stderr(&again));
    let row = row(&again, "postgres");
    assert!(
        row.contains("PostgreSQL 15.14") && row.ends_with("present"),
        "{row}"
    );
}

#[test]
fn standin_postgres_found_where_debian_keeps_it_off_path_is_not_reinstalled() {
    let sb = Sandbox::new("postgres-lib", "linux", "fedora", 0);
    sb.with_rustup_and_stable().fake("dnf", PKG);
    let lib = sb.dir.join("usr-lib-postgresql/16/bin");
    std::fs::create_dir_all(&lib).unwrap();
    for tool in ["initdb", "pg_ctl"] {
        let p = lib.join(tool);
        std::fs::write(&p, "#!/bin/sh\necho \"initdb (PostgreSQL) 16.4\"\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let out = sb.run(&["--yes", "--only", "postgres"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.changes(), Vec::<String>::new(), "{}", stderr(&out));
    assert!(row(&out, "postgres").contains("PostgreSQL 16.4"));

    // Gone: dnf installs the server package, as root without sudo.
    std::fs::remove_dir_all(sb.dir.join("usr-lib-postgresql")).unwrap();
    let out = sb.run(&["--yes", "--only", "postgres"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(sb.changes(), vec!["dnf install -y postgresql-server"]);
}
// template:service:end

#[test]
fn standin_no_root_no_sudo_says_what_to_run() {
    let sb = Sandbox::new("nosudo", "linux", "debian", 1000);
    sb.with_rustup_and_stable().fake("apt-get", PKG);
    let out = sb.run(&["--yes", "--only", "qemu"]);
    assert!(!out.status.success());
    assert_eq!(sb.changes(), Vec::<String>::new());
    assert!(
        row(&out, "qemu").contains(
            "run `sudo apt-get install -y --no-remove --no-install-recommends qemu-system-arm` yourself"
        ),
        "{}",
        row(&out, "qemu")
    );
}

#[test]
fn standin_criticalup_ferrocene_is_opt_in() {
    let sb = Sandbox::new("ferrocene", "linux", "debian", 0);
    sb.with_rustup_and_stable().fake("criticalup", CRITICALUP);
    let project = sb
        .root
        .join("toolchains/criticalup.toml")
        .display()
        .to_string();

    let without = sb.run(&["--yes", "--only", "ferrocene"]);
    assert!(without.status.success());
    assert_eq!(
        sb.changes(),
        Vec::<String>::new(),
        "nothing without --ferrocene"
    );

    let out = sb.run(&["--yes", "--only", "ferrocene", "--ferrocene"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        sb.changes(),
        vec![format!("criticalup install --project {project}")]
    );
    let again = sb.run(&["--yes", "--only", "ferrocene", "--ferrocene"]);
    assert_eq!(sb.changes(), Vec::<String>::new());
    assert!(row(&again, "ferrocene").ends_with("present"));

    std::fs::remove_file(sb.bin.join("criticalup")).unwrap();
    let missing = sb.run(&["--yes", "--only", "ferrocene", "--ferrocene"]);
    assert!(!missing.status.success());
    assert!(
        row(&missing, "ferrocene").contains("criticalup not found: install it"),
        "{}",
        row(&missing, "ferrocene")
    );
}

#[test]
fn standin_local_config_is_idempotent_keeps_edits_and_undo_restores() {
    let sb = Sandbox::new("localcfg", "linux", "debian", 0);
    sb.with_rustup_and_stable().installed("mold", "mold 1.10.1");
    let local = sb.root.join(".cargo/local.toml");
    let fast = sb.root.join(".cargo/fast.toml");
    assert!(
        sb.run(&["--yes", "--only", "local-config"])
            .status
            .success()
    );
    let first = std::fs::read_to_string(&local).unwrap();
    assert!(
        first.contains("mold is installed but not measured yet"),
        "{first}"
    );
    let fast_text = std::fs::read_to_string(&fast).unwrap();
    assert!(
        fast_text.contains("codegen-backend = \"cranelift\""),
        "{fast_text}"
    );
    assert!(
        !first.contains("codegen-backend"),
        "stable cargo reads local.toml: no Cranelift there"
    );

    let again = sb.run(&["--yes", "--only", "local-config"]);
    assert!(row(&again, "local-config").ends_with("current"));
    assert_eq!(std::fs::read_to_string(&local).unwrap(), first);

    // A person edits local.toml: setup keeps it, shows the diff, and a bench result that
    // would change the file does not clobber it.
    let edited = format!("{first}[build]\njobs = 1\n");
    std::fs::write(&local, &edited).unwrap();
    std::fs::create_dir_all(sb.root.join("target")).unwrap();
    std::fs::write(
        sb.root.join("target/bench-build.json"),
        "{\n  \"link_mold_over_lld\": 0.8,\n  \"link_winner\": \"mold\"\n}\n",
    )
    .unwrap();
    let kept = sb.run(&["--yes", "--only", "local-config"]);
    assert!(kept.status.success(), "{}", stderr(&kept));
    assert_eq!(
        std::fs::read_to_string(&local).unwrap(),
        edited,
        "an edited file is never overwritten"
    );
    assert!(
        stderr(&kept).contains("+++"),
        "a diff is shown: {}",
        stderr(&kept)
    );

    // --force replaces it (mold measured faster, so now selected) and keeps a backup ...
    assert!(
        sb.run(&["--yes", "--only", "local-config", "--force"])
            .status
            .success()
    );
    let forced = std::fs::read_to_string(&local).unwrap();
    assert!(forced.contains("link-arg=-fuse-ld=mold"), "{forced}");
    assert_eq!(
        std::fs::read_to_string(sb.root.join(".cargo/local.toml.bak")).unwrap(),
        edited
    );
    // ... and --undo removes what setup wrote and puts the person's file back.
    let undo = sb.run(&["--undo"]);
    assert!(undo.status.success(), "{}", stderr(&undo));
    assert_eq!(std::fs::read_to_string(&local).unwrap(), edited);
    assert!(!fast.exists());
    assert!(!sb.root.join(".cargo/local.toml.bak").exists());
}

/// A one-file HTTP/1.1 server on 127.0.0.1:0 serving `body`, cut after `send` bytes when
/// `send < body.len()` (the connection closes early, as on a dropped network).
fn serve(body: Vec<u8>, send: usize) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut line = String::new();
        while reader.read_line(&mut line).unwrap_or(0) > 2 {
            line.clear();
        }
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(&body[..send.min(body.len())]);
    });
    (url, h)
}

/// A mold release tarball laid out like upstream's, and its SHA-256 (by sha256sum).
fn mold_tarball(sb: &Sandbox) -> (Vec<u8>, String) {
    let version = pin("mold.release", "version");
    let top = format!("mold-{version}-x86_64-linux");
    let stage = sb.dir.join("stage");
    std::fs::create_dir_all(stage.join(&top).join("bin")).unwrap();
    let exe = stage.join(&top).join("bin/mold");
    std::fs::write(
        &exe,
        format!("#!/bin/sh\necho \"mold {version} (stand-in)\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    // Padding so a cut-off download is clearly partial.
    std::fs::write(stage.join(&top).join("padding"), vec![b'x'; 200_000]).unwrap();
    let tgz = sb.dir.join("mold.tar.gz");
    let ok = Command::new("tar")
        .arg("-czf")
        .arg(&tgz)
        .arg("-C")
        .arg(&stage)
        .arg(&top)
        .status()
        .unwrap();
    assert!(ok.success());
    let sum = Command::new("sha256sum").arg(&tgz).output().unwrap();
    let sum = String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    (std::fs::read(&tgz).unwrap(), sum)
}

/// No package manager: mold comes from the pinned tarball. The manifest points at `url`.
fn tarball_sandbox(name: &str) -> Sandbox {
    let sb = Sandbox::new(name, "linux", "unknown", 1000);
    sb.with_rustup_and_stable();
    sb
}

fn point_manifest_at(sb: &Sandbox, url: &str, sha: &str) {
    let p = sb.root.join("toolchains/manifest.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("url = ") {
                format!("url = \"{url}/mold-{{version}}-{{arch}}-linux.tar.gz\"")
            } else if l.starts_with("sha256-x86_64 = ") {
                format!("sha256-x86_64 = \"{sha}\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(p, text).unwrap();
}

/// Nothing of a failed install is left: no mold dir, no temporaries, no link.
fn assert_nothing_left(sb: &Sandbox) {
    for d in [sb.home.join(".local/opt"), sb.home.join(".local/bin")] {
        let left: Vec<_> = std::fs::read_dir(&d)
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{} still holds {left:?}", d.display());
    }
}

#[test]
fn standin_release_download_with_good_checksum_installs_atomically() {
    let sb = tarball_sandbox("dl-good");
    let (body, sum) = mold_tarball(&sb);
    let (url, server) = serve(body.clone(), body.len());
    point_manifest_at(&sb, &url, &sum);
    let out = sb.run(&["--yes", "--only", "mold"]);
    server.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    let link = sb.home.join(".local/bin/mold");
    let v = Command::new(&link).arg("--version").output().unwrap();
    assert!(
        String::from_utf8_lossy(&v.stdout).contains("stand-in"),
        "the installed mold runs"
    );
    let opt: Vec<_> = std::fs::read_dir(sb.home.join(".local/opt"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        opt,
        vec![format!(
            "mold-{}-x86_64-linux",
            pin("mold.release", "version")
        )],
        "no temporaries left"
    );
    assert!(
        row(&out, "mold").contains(".local/bin/mold"),
        "{}",
        row(&out, "mold")
    );
}

#[test]
fn standin_release_download_with_bad_checksum_refuses_and_leaves_nothing() {
    let sb = tarball_sandbox("dl-bad");
    let (body, _) = mold_tarball(&sb);
    let (url, server) = serve(body.clone(), body.len());
    point_manifest_at(&sb, &url, &"0".repeat(64));
    let out = sb.run(&["--yes", "--only", "mold"]);
    server.join().unwrap();
    assert!(!out.status.success());
    assert!(
        row(&out, "mold").contains("checksum mismatch"),
        "{}",
        row(&out, "mold")
    );
    assert_nothing_left(&sb);
}

#[test]
fn standin_interrupted_download_leaves_nothing_half_written() {
    let sb = tarball_sandbox("dl-cut");
    let (body, sum) = mold_tarball(&sb);
    let (url, server) = serve(body.clone(), body.len() / 3);
    point_manifest_at(&sb, &url, &sum);
    let out = sb.run(&["--yes", "--only", "mold"]);
    server.join().unwrap();
    assert!(!out.status.success());
    assert!(
        row(&out, "mold").contains("download of"),
        "{}",
        row(&out, "mold")
    );
    assert_nothing_left(&sb);
}

#[test]
fn standin_unpinned_checksum_refuses_the_download() {
    let sb = tarball_sandbox("dl-unpinned");
    // The committed manifest has no checksum for the tarball (none could be computed here).
    let out = sb.run(&["--yes", "--only", "mold"]);
    assert!(!out.status.success());
    assert!(
        row(&out, "mold").contains("no pinned sha256"),
        "{}",
        row(&out, "mold")
    );
    assert_nothing_left(&sb);
}

#[test]
fn standin_udev_rules_only_with_the_flag() {
    let mut sb = Sandbox::new("udev", "linux", "debian", 1000);
    sb.with_rustup_and_stable().fake("sudo", SUDO);
    sb.fake(
        "udevadm",
        "#!/bin/sh\necho \"udevadm $*\" >> \"$FAKE_LOG\"\n",
    );
    if let Some(real) = ["/usr/bin/install", "/bin/install"]
        .iter()
        .find(|p| Path::new(p).exists())
    {
        std::os::unix::fs::symlink(real, sb.bin.join("install")).unwrap();
    }
    let rules_dir = sb.dir.join("rules.d");
    std::fs::create_dir_all(&rules_dir).unwrap();
    sb.set("XTASK_UDEV_DIR", &rules_dir.display().to_string());

    let out = sb.run(&["--yes", "--only", "udev"]);
    assert!(out.status.success());
    assert_eq!(
        sb.changes(),
        Vec::<String>::new(),
        "no udev rules without --udev"
    );

    let out = sb.run(&["--yes", "--only", "udev", "--udev"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let changes = sb.changes();
    let dest = rules_dir.join("69-probe-rs.rules").display().to_string();
    // sudo's line, then the command it ran (the fake udevadm logs itself too).
    assert_eq!(changes.len(), 5, "{changes:?}");
    assert!(
        changes[0].starts_with("sudo install -m 0644 ") && changes[0].ends_with(&dest),
        "{changes:?}"
    );
    assert_eq!(
        changes[1..],
        [
            "sudo udevadm control --reload-rules",
            "udevadm control --reload-rules",
            "sudo udevadm trigger",
            "udevadm trigger"
        ]
    );
    let rules = std::fs::read_to_string(&dest).unwrap();
    assert!(
        rules.contains("ATTRS{idVendor}==\"0483\""),
        "ST-Link rules: {rules}"
    );

    let again = sb.run(&["--yes", "--only", "udev", "--udev"]);
    assert!(
        row(&again, "udev").ends_with("present"),
        "{}",
        row(&again, "udev")
    );
}

// ---- `cargo xtask demo` / `cargo xtask test` repair what they need first (setup/ensure.rs) ----

/// The position of the first log line starting with `prefix`.
fn first(log: &[String], prefix: &str) -> Option<usize> {
    log.iter().position(|l| l.starts_with(prefix))
}

#[test]
fn standin_test_adds_the_thumb_target_the_installed_toolchain_lacks_before_building() {
    // The second kind of fresh machine: the pinned toolchain installed (so rustup will not
    // add rust-toolchain.toml's targets), without thumbv7em-none-eabihf.
    let sb = Sandbox::new("ensure-target", "linux", "debian", 1000);
    sb.with_rustup_and_stable().installed("cc", "cc 12.2.0");
    let st = stable();
    std::fs::write(
        sb.state.join(format!("targets-{st}")),
        "x86_64-unknown-linux-gnu\n",
    )
    .unwrap();
    let out = sb.xtask("test", &["--host-only"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let log = sb.changes();
    let add = first(
        &log,
        &format!("rustup target add --toolchain {st} thumbv7em-none-eabihf"),
    )
    .unwrap_or_else(|| panic!("no rustup target add in {log:#?}"));
    let build = first(&log, "cargo build").unwrap_or_else(|| panic!("no build in {log:#?}"));
    assert!(
        add < build,
        "the target must be added before the first build: {log:#?}"
    );
    assert!(
        !log.iter()
            .any(|l| l.contains("sudo") || l.contains("apt-get")),
        "the user's own toolchain needs no sudo and no packages: {log:#?}"
    );
    let err = stderr(&out);
    assert!(
        err.contains("==> rust: rustup target add"),
        "says what it does:\n{err}"
    );
    assert!(
        err.contains("rust: installed in"),
        "says how long it took:\n{err}"
    );
}

// template:firmware:begin
#[test]
fn standin_test_without_a_terminal_or_yes_names_the_exact_qemu_command_and_exits_1() {
    let sb = Sandbox::new("ensure-ask", "linux", "debian", 1000);
    sb.with_rustup_and_stable()
        .installed("cc", "cc 12.2.0")
        .fake("apt-get", PKG)
        .fake("sudo", SUDO);
    let out = sb.xtask("test", &[]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains(
            "qemu-system-arm is not installed (test needs it: the firmware and end-to-end \
             tests boot the firmware in it): run 'sudo --preserve-env=DEBIAN_FRONTEND apt-get \
             install -y --no-remove --no-install-recommends qemu-system-arm', or re-run `cargo xtask test \
             --yes`"
        ),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| l.starts_with("error:")).count(),
        1,
        "{err}"
    );
    let log = sb.changes();
    assert!(
        !log.iter()
            .any(|l| l.starts_with("apt-get") || l.starts_with("cargo")),
        "nothing installed, nothing built: {log:#?}"
    );
}
// template:firmware:end

// template:service:begin
// template:firmware:begin
#[test]
fn standin_demo_with_yes_installs_qemu_and_a_c_compiler_with_apt_then_starts_the_demo() {
    let sb = Sandbox::new("ensure-demo", "linux", "debian", 1000);
    sb.with_rustup_and_stable()
        .fake("apt-get", PKG)
        .fake("sudo", SUDO);
    // The orchestrator the demo hands over to: records how it was started.
    std::fs::create_dir_all(sb.root.join("firmware")).unwrap();
    std::fs::create_dir_all(sb.root.join("target/debug")).unwrap();
    let demo = sb.root.join("target/debug/beacon-demo");
    std::fs::write(
        &demo,
        "#!/bin/sh\necho \"beacon-demo $*\" >> \"$FAKE_LOG\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&demo, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = sb.xtask("demo", &["--yes", "--duration", "1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let apt = "sudo -n --preserve-env=DEBIAN_FRONTEND apt-get";
    let log = sb.changes();
    // The C compiler before any build (cc links it); QEMU, needed only to run, beside the
    // builds (started, in the background, before its install; their order with it is theirs);
    // the demo after all of it.
    for want_order in [
        [
            format!("{apt} update"),
            format!("{apt} install -y --no-remove --no-install-recommends gcc libc6-dev"),
            "cargo build --release".to_string(),
            "beacon-demo --board qemu --devices 3 --duration 1".to_string(),
        ],
        [
            format!("{apt} update"),
            format!("{apt} install -y --no-remove --no-install-recommends gcc libc6-dev"),
            format!("{apt} install -y --no-remove --no-install-recommends qemu-system-arm"),
            "beacon-demo --board qemu --devices 3 --duration 1".to_string(),
        ],
    ] {
        let mut at = 0;
        for want in &want_order {
            let i = log[at..]
                .iter()
                .position(|l| l.starts_with(want.as_str()))
                .unwrap_or_else(|| panic!("`{want}` missing or out of order in {log:#?}"));
            at += i + 1;
        }
    }
    assert!(
        log.iter()
            .any(|l| l.starts_with("cargo build -p beacon-service")),
        "{log:#?}"
    );
    let err = stderr(&out);
    let spawned = err
        .find("(host build, beside the install)")
        .unwrap_or_else(|| panic!("the host build did not start beside the install: {err}"));
    let installing = err.find("==> qemu:").expect("the qemu step is said");
    let done = err
        .find("host build: done in")
        .expect("the host build's end is said");
    assert!(spawned < installing && installing < done, "{err}");
    assert_eq!(
        log.iter()
            .filter(|l| l == &&format!("{apt} update"))
            .count(),
        1,
        "apt-get update once: {log:#?}"
    );
}
// template:firmware:end
// template:service:end

// template:service:begin
// template:firmware:begin
#[test]
fn standin_demo_on_fedora_as_root_installs_qemu_with_dnf_without_sudo() {
    let mut sb = Sandbox::new("ensure-dnf", "linux", "fedora", 0);
    sb.with_rustup_and_stable()
        .installed("cc", "cc 13.2.1")
        .fake("dnf", PKG);
    sb.set("CI", "true");
    std::fs::create_dir_all(sb.root.join("firmware")).unwrap();
    let out = sb.xtask("demo", &["--duration", "1"]);
    // No orchestrator binary in the scratch tree: the demo stops there, after the installs.
    assert!(!out.status.success());
    assert!(stderr(&out).contains("cannot start"), "{}", stderr(&out));
    let log = sb.changes();
    // QEMU installs beside the builds (it is needed only to run), so it is not first.
    assert!(
        log.iter().any(|l| l == "dnf install -y qemu-system-arm")
            && !log.iter().any(|l| l.starts_with("sudo")),
        "CI=true implies --yes; root needs no sudo: {log:#?}"
    );
}

#[test]
fn standin_demo_on_postgres_installs_the_server_and_replicas_alone_are_refused_before_a_build() {
    let mut sb = Sandbox::new("ensure-pg", "linux", "fedora", 0);
    sb.with_rustup_and_stable()
        .installed("cc", "cc 13.2.1")
        .installed("qemu-system-arm", "QEMU emulator version 8.2.2")
        .fake("dnf", PKG);
    sb.set("CI", "true");
    std::fs::create_dir_all(sb.root.join("firmware")).unwrap();
    let refused = sb.xtask("demo", &["--replicas", "2"]);
    assert!(!refused.status.success());
    assert!(
        stderr(&refused).contains("--replicas 2 needs --db postgres"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        sb.changes(),
        Vec::<String>::new(),
        "nothing built or installed"
    );

    let out = sb.xtask("demo", &["--db", "postgres", "--replicas", "2"]);
    assert!(stderr(&out).contains("cannot start"), "{}", stderr(&out));
    let log = sb.changes();
    assert!(
        log.iter().any(|l| l == "dnf install -y postgresql-server"),
        "{log:#?}"
    );
}
// template:firmware:end
// template:service:end

// ---- prebuilt tools: release archives and PyPI wheels, with the source build as fallback ----

/// An HTTP/1.1 server on 127.0.0.1:0 answering `conns` requests: each path in `files` with its
/// body (cut after `send` bytes when shorter, as on a dropped network), anything else 404.
fn serve_files(
    files: Vec<(String, Vec<u8>, usize)>,
    conns: usize,
) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let h = std::thread::spawn(move || {
        for _ in 0..conns {
            let Ok((mut stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut request = String::new();
            reader.read_line(&mut request).unwrap_or(0);
            let mut line = String::new();
            while reader.read_line(&mut line).unwrap_or(0) > 2 {
                line.clear();
            }
            let path = request.split_whitespace().nth(1).unwrap_or("").to_string();
            match files.iter().find(|(p, ..)| *p == path) {
                Some((_, body, send)) => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                        body.len()
                    );
                    let _ = stream.write_all(head.as_bytes());
                    let _ = stream.write_all(&body[..(*send).min(body.len())]);
                }
                None => {
                    let _ = stream.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                }
            }
        }
    });
    (url, h)
}

fn sha256_of(path: &Path) -> String {
    let sum = Command::new("sha256sum").arg(path).output().unwrap();
    String::from_utf8_lossy(&sum.stdout)
        .split_whitespace()
        .next()
        .unwrap()
        .to_string()
}

/// A cargo-dist style `tokio-console-<triple>.tar.xz` holding a stand-in tokio-console.
fn console_archive(sb: &Sandbox, version: &str) -> (String, Vec<u8>, String) {
    let top = "tokio-console-x86_64-unknown-linux-gnu";
    let stage = sb.dir.join("stage-console");
    std::fs::create_dir_all(stage.join(top)).unwrap();
    let exe = stage.join(top).join("tokio-console");
    std::fs::write(
        &exe,
        format!("#!/bin/sh\necho \"tokio-console {version}\"\n"),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::write(stage.join(top).join("padding"), vec![b'x'; 200_000]).unwrap();
    let txz = sb.dir.join(format!("{top}.tar.xz"));
    let ok = Command::new("tar")
        .arg("-cJf")
        .arg(&txz)
        .arg("-C")
        .arg(&stage)
        .arg(top)
        .status()
        .unwrap();
    assert!(ok.success());
    let sum = sha256_of(&txz);
    (format!("/{top}.tar.xz"), std::fs::read(&txz).unwrap(), sum)
}

/// Points `[tokio-console.release] url` at `base` (the archive's name kept).
fn point_console_at(sb: &Sandbox, base: &str) {
    let p = sb.root.join("toolchains/manifest.toml");
    let text = std::fs::read_to_string(&p).unwrap();
    let text = text
        .lines()
        .map(|l| {
            if l.starts_with("url = ") && l.contains("tokio-console-{triple}") {
                format!("url = \"{base}/tokio-console-{{triple}}.tar.xz\"")
            } else {
                l.to_string()
            }
        })
        .collect::<Vec<_>>()
        .join("\n");
    std::fs::write(p, text).unwrap();
}

fn console_sandbox(name: &str) -> Sandbox {
    let mut sb = Sandbox::new(name, "linux", "debian", 1000);
    sb.with_rustup_and_stable();
    let cargo_home = sb.dir.join("cargo-home");
    sb.set("CARGO_HOME", &cargo_home.display().to_string());
    let path = format!("{}:{}", sb.bin.display(), cargo_home.join("bin").display());
    sb.set("PATH", &path);
    sb
}

fn console_source_build() -> String {
    format!(
        "cargo install --locked --version {} tokio-console [RUSTUP_TOOLCHAIN={}]",
        pin("tokio-console", "version"),
        stable()
    )
}

#[test]
fn standin_prebuilt_archive_checked_against_its_published_sha256_installs_without_building() {
    let sb = console_sandbox("pre-good");
    let version = pin("tokio-console", "version");
    let (path, body, sum) = console_archive(&sb, &version);
    let files = vec![
        (
            format!("{path}.sha256"),
            format!("{sum}  x.tar.xz\n").into_bytes(),
            usize::MAX,
        ),
        (path, body, usize::MAX),
    ];
    let (url, server) = serve_files(files, 2);
    point_console_at(&sb, &url);
    let out = sb.run(&["--yes", "--only", "tokio-console"]);
    server.join().unwrap();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        sb.changes(),
        Vec::<String>::new(),
        "nothing built: {}",
        stderr(&out)
    );
    let r = row(&out, "tokio-console");
    assert!(
        r.contains("installed prebuilt tokio-console")
            && r.contains("sha256 from the release's published .sha256 file"),
        "{r}"
    );
    let v = Command::new(sb.dir.join("cargo-home/bin/tokio-console"))
        .arg("--version")
        .output()
        .unwrap();
    assert!(String::from_utf8_lossy(&v.stdout).contains(&version));
    // A re-run finds it and changes nothing.
    let again = sb.run(&["--yes", "--only", "tokio-console"]);
    assert!(
        row(&again, "tokio-console").ends_with("present"),
        "{}",
        stderr(&again)
    );
}

#[test]
fn standin_prebuilt_archive_bad_checksum_404_or_cut_falls_back_to_cargo_install_leaving_nothing() {
    for case in ["bad-sum", "404", "cut"] {
        let sb = console_sandbox(&format!("pre-{case}"));
        let (path, body, sum) = console_archive(&sb, &pin("tokio-console", "version"));
        let len = body.len();
        let files = match case {
            "bad-sum" => vec![
                (
                    format!("{path}.sha256"),
                    "0".repeat(64).into_bytes(),
                    usize::MAX,
                ),
                (path, body, usize::MAX),
            ],
            "404" => vec![],
            _ => vec![
                (format!("{path}.sha256"), sum.into_bytes(), usize::MAX),
                (path, body, len / 3),
            ],
        };
        let (url, server) = serve_files(files, 2);
        point_console_at(&sb, &url);
        let out = sb.run(&["--yes", "--only", "tokio-console"]);
        drop(server);
        assert!(out.status.success(), "{case}: {}", stderr(&out));
        assert_eq!(
            sb.changes(),
            vec![console_source_build()],
            "{case}: built from source instead: {}",
            stderr(&out)
        );
        let r = row(&out, "tokio-console");
        let why = match case {
            "bad-sum" => "checksum mismatch",
            _ => "download of",
        };
        assert!(r.contains("from source") && r.contains(why), "{case}: {r}");
        let opt = sb.home.join(".local/opt");
        let left: Vec<_> = std::fs::read_dir(&opt)
            .map(|r| r.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            left.is_empty(),
            "{case}: {} still holds {left:?}",
            opt.display()
        );
    }
}

/// python3 that serves `pip download` from a prepared wheel and hands `-m zipfile` to the real
/// python (a stand-in for PyPI, which the tests do not reach).
const PYTHON: &str = r#"#!/bin/sh
echo "python3 $*" >> "$FAKE_LOG"
if [ "$1 $2 $3" = "-m pip download" ]; then
  while [ $# -gt 0 ]; do [ "$1" = --dest ] && { mkdir -p "$2"; cp "$FAKE_WHEEL" "$2/"; exit 0; }; shift; done
  exit 1
fi
exec "$REAL_PYTHON" "$@"
"#;

#[test]
fn standin_just_from_its_pypi_wheel_with_the_pinned_sha256_and_fallback_on_mismatch() {
    let real_python = ["/usr/bin/python3", "/usr/local/bin/python3"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .or_else(|| {
            let o = Command::new("sh")
                .args(["-c", "command -v python3"])
                .output()
                .ok()?;
            Some(PathBuf::from(String::from_utf8_lossy(&o.stdout).trim()))
        })
        .expect("python3 (the machine has it; the wheel path needs it)");
    let version = pin("just", "version");
    for pinned_ok in [true, false] {
        let mut sb = console_sandbox(if pinned_ok { "wheel-good" } else { "wheel-bad" });
        sb.fake("python3", PYTHON);
        // A wheel laid out like rust-just's, zipped by the real python.
        let stage = sb.dir.join("wheel-stage");
        let scripts = stage.join(format!("rust_just-{version}.data/scripts"));
        std::fs::create_dir_all(&scripts).unwrap();
        std::fs::write(
            scripts.join("just"),
            format!("#!/bin/sh\necho \"just {version}\"\n"),
        )
        .unwrap();
        let wheel = sb.dir.join(format!(
            "rust_just-{version}-py3-none-manylinux_2_17_x86_64.whl"
        ));
        let ok = Command::new(&real_python)
            .args(["-m", "zipfile", "-c"])
            .arg(&wheel)
            .arg(stage.join(format!("rust_just-{version}.data")))
            .status()
            .unwrap();
        assert!(ok.success());
        let sum = if pinned_ok {
            sha256_of(&wheel)
        } else {
            "1".repeat(64)
        };
        let p = sb.root.join("toolchains/manifest.toml");
        let text = std::fs::read_to_string(&p).unwrap();
        let text = text
            .lines()
            .map(|l| {
                if l.starts_with("sha256-linux-x86_64 = ") {
                    format!("sha256-linux-x86_64 = \"{sum}\"")
                } else {
                    l.to_string()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        std::fs::write(p, text).unwrap();
        sb.set("FAKE_WHEEL", &wheel.display().to_string());
        sb.set("REAL_PYTHON", &real_python.display().to_string());
        let out = sb.run(&["--yes", "--only", "just"]);
        assert!(out.status.success(), "{}", stderr(&out));
        let r = row(&out, "just");
        let builds: Vec<_> = sb
            .changes()
            .into_iter()
            .filter(|l| l.starts_with("cargo install"))
            .collect();
        if pinned_ok {
            assert!(
                r.contains("installed prebuilt just")
                    && r.contains("from PyPI")
                    && r.contains("sha256 pinned in the manifest"),
                "{r}"
            );
            assert!(builds.is_empty(), "no source build: {builds:?}");
            let v = Command::new(sb.dir.join("cargo-home/bin/just"))
                .arg("--version")
                .output()
                .unwrap();
            assert!(String::from_utf8_lossy(&v.stdout).contains(&version));
        } else {
            assert!(
                r.contains("from source") && r.contains("checksum mismatch"),
                "{r}"
            );
            assert_eq!(builds.len(), 1, "{builds:?}");
        }
    }
}

// template:firmware:begin
#[test]
fn standin_test_on_a_terminal_asks_once_with_the_exact_command_and_a_no_installs_nothing() {
    // A real pseudo-terminal from util-linux's `script`, the answer typed on it.
    let Some(script) = ["/usr/bin/script", "/bin/script"]
        .iter()
        .find(|p| Path::new(p).exists())
    else {
        panic!("util-linux's `script` is needed for this test (apt-get install bsdutils)");
    };
    let sb = Sandbox::new("ensure-tty", "linux", "debian", 1000);
    sb.with_rustup_and_stable()
        .installed("cc", "cc 12.2.0")
        .fake("apt-get", PKG)
        .fake("sudo", SUDO);
    std::fs::write(&sb.log, "").unwrap();
    let xtask = env!("CARGO_BIN_EXE_xtask");
    let mut c = Command::new(script);
    c.args(["-q", "-e", "-c", &format!("{xtask} test"), "/dev/null"])
        .env_clear();
    for (k, v) in &sb.env {
        c.env(k, v);
    }
    let mut child = c
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    let screen = String::from_utf8_lossy(&out.stdout).replace('\r', "");
    assert!(
        screen.contains(
            "install qemu-system-arm with 'sudo --preserve-env=DEBIAN_FRONTEND apt-get install \
             -y --no-remove --no-install-recommends qemu-system-arm'? [Y/n]"
        ),
        "{screen}"
    );
    assert!(
        screen.contains("qemu-system-arm is needed"),
        "a no is an error naming the command: {screen}"
    );
    assert!(!out.status.success(), "{screen}");
    assert!(
        !sb.changes()
            .iter()
            .any(|l| l.starts_with("apt-get") || l.starts_with("cargo")),
        "nothing installed after a no: {:#?}",
        sb.changes()
    );
}
// template:firmware:end

/// Setup switches the dev-loop dylib on (Linux, when the project has services/devdeps): the
/// flags go into the one host table, next to the linker's when mold was chosen, and `--undo`
/// removes exactly what it wrote (`.cargo/` is as before).
#[test]
fn standin_local_config_turns_the_devdeps_dylib_on_and_undo_removes_it() {
    let sb = Sandbox::new("devdeps", "linux", "debian", 0);
    sb.with_rustup_and_stable().installed("mold", "mold 1.10.1");
    std::fs::create_dir_all(sb.root.join("services/devdeps")).unwrap();
    std::fs::write(sb.root.join("services/devdeps/Cargo.toml"), "").unwrap();
    let before: Vec<_> = std::fs::read_dir(sb.root.join(".cargo")).unwrap().collect();
    let local = sb.root.join(".cargo/local.toml");
    let flags = "\"--cfg\", \"beacon_dylib\"";
    assert!(
        sb.run(&["--yes", "--only", "local-config"])
            .status
            .success()
    );
    let text = std::fs::read_to_string(&local).unwrap();
    assert!(
        text.contains(&format!(
            "[target.x86_64-unknown-linux-gnu]\nrustflags = [{flags}]"
        )),
        "{text}"
    );
    // mold measured faster: one host table, both flag sets in its one rustflags key.
    std::fs::create_dir_all(sb.root.join("target")).unwrap();
    std::fs::write(
        sb.root.join("target/bench-build.json"),
        "{\n  \"link_mold_over_lld\": 0.8,\n  \"link_winner\": \"mold\"\n}\n",
    )
    .unwrap();
    assert!(
        sb.run(&["--yes", "--only", "local-config"])
            .status
            .success()
    );
    let text = std::fs::read_to_string(&local).unwrap();
    assert_eq!(
        text.matches("[target.x86_64-unknown-linux-gnu]").count(),
        1,
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "rustflags = [{flags}, \"-C\", \"link-arg=-fuse-ld=mold\"]"
        )),
        "{text}"
    );
    let undo = sb.run(&["--undo"]);
    assert!(undo.status.success(), "{}", stderr(&undo));
    assert!(!local.exists() && !sb.root.join(".cargo/fast.toml").exists());
    let after: Vec<_> = std::fs::read_dir(sb.root.join(".cargo")).unwrap().collect();
    assert_eq!(after.len(), before.len(), "undo leaves .cargo/ as it was");
}
