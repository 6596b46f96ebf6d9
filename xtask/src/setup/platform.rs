//! What machine are we on: OS, distribution, package manager, architecture, root or sudo.
//!
//! Test hooks (used by the stand-in tests, harmless otherwise): `XTASK_OS`, `XTASK_ARCH`,
//! `XTASK_OS_RELEASE` (path of an os-release file), `XTASK_UID`; `XTASK_PG_LIB` (instead of
//! /usr/lib/postgresql, where the `postgres` step looks for the server).

use std::env;
use std::fmt;

use crate::cmd::on_path;

/// A system package manager setup knows how to drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pm {
    Apt,
    Dnf,
    Pacman,
    Zypper,
    Brew,
}

impl Pm {
    /// The key used in toolchains/manifest.toml.
    pub fn key(self) -> &'static str {
        match self {
            Pm::Apt => "apt",
            Pm::Dnf => "dnf",
            Pm::Pacman => "pacman",
            Pm::Zypper => "zypper",
            Pm::Brew => "brew",
        }
    }

    pub fn bin(self) -> &'static str {
        match self {
            Pm::Apt => "apt-get",
            Pm::Dnf => "dnf",
            Pm::Pacman => "pacman",
            Pm::Zypper => "zypper",
            Pm::Brew => "brew",
        }
    }

    /// The install command line for `pkg` (one name, or several separated by spaces), without
    /// sudo.
    /// `allow_remove`: apt may remove installed packages to make room (only after the user
    /// agreed to the removals it showed); otherwise `--no-remove` makes it abort instead
    /// (seen here: qemu-system-arm from Debian would have removed a newer qemu-utils).
    pub fn install_argv(self, pkg: &str, allow_remove: bool) -> Vec<String> {
        let v: &[&str] = match self {
            Pm::Apt if allow_remove => &["apt-get", "install", "-y", "--no-install-recommends"],
            Pm::Apt => &[
                "apt-get",
                "install",
                "-y",
                "--no-remove",
                "--no-install-recommends",
            ],
            Pm::Dnf => &["dnf", "install", "-y"],
            Pm::Pacman => &["pacman", "-S", "--needed", "--noconfirm"],
            Pm::Zypper => &["zypper", "--non-interactive", "install"],
            Pm::Brew => &["brew", "install"],
        };
        v.iter()
            .map(|s| s.to_string())
            .chain(pkg.split_whitespace().map(String::from))
            .collect()
    }

    /// Whether installing needs root (brew refuses to run as root).
    pub fn needs_root(self) -> bool {
        self != Pm::Brew
    }
}

#[derive(Debug, Clone)]
pub struct Platform {
    /// `linux`, `macos`, ... (std::env::consts::OS).
    pub os: String,
    /// os-release `ID` (`debian`, `fedora`, `arch`, `opensuse-tumbleweed`), or `macos`.
    pub distro: String,
    pub pm: Option<Pm>,
    /// `x86_64`, `aarch64`, ...
    pub arch: String,
    pub root: bool,
    pub sudo: bool,
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} ({}), {}, package manager: {}, {}",
            self.os,
            self.distro,
            self.arch,
            self.pm.map(Pm::key).unwrap_or("none found"),
            if self.root {
                "root"
            } else if self.sudo {
                "sudo available"
            } else {
                "no root, no sudo"
            }
        )
    }
}

impl Platform {
    pub fn detect() -> Self {
        let os = env::var("XTASK_OS").unwrap_or_else(|_| env::consts::OS.to_string());
        let arch = env::var("XTASK_ARCH").unwrap_or_else(|_| env::consts::ARCH.to_string());
        let (id, like) = if os == "macos" {
            ("macos".to_string(), String::new())
        } else {
            let path =
                env::var("XTASK_OS_RELEASE").unwrap_or_else(|_| "/etc/os-release".to_string());
            os_release(&std::fs::read_to_string(path).unwrap_or_default())
        };
        let pm = pick_pm(&os, &id, &like);
        let root = match env::var("XTASK_UID") {
            Ok(uid) => uid.trim() == "0",
            Err(_) => is_root(),
        };
        Platform {
            os,
            distro: id,
            pm,
            arch,
            root,
            sudo: on_path("sudo"),
        }
    }

    pub fn is_linux(&self) -> bool {
        self.os == "linux"
    }

    /// Can we run the package manager at all (root, sudo, or brew)?
    pub fn can_install_packages(&self) -> bool {
        match self.pm {
            Some(pm) if pm.needs_root() => self.root || self.sudo,
            Some(_) => true,
            None => false,
        }
    }
}

/// Our effective uid is 0: the owner of `/proc/self` on Linux (no `id` program needed), else
/// `id -u`.
fn is_root() -> bool {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::MetadataExt as _;
        if let Ok(m) = std::fs::metadata("/proc/self") {
            return m.uid() == 0;
        }
    }
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

/// `ID` and `ID_LIKE` from an os-release file.
fn os_release(text: &str) -> (String, String) {
    let get = |key: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix('='))
            .map(|v| v.trim().trim_matches('"').to_lowercase())
            .unwrap_or_default()
    };
    let id = get("ID");
    (
        if id.is_empty() { "unknown".into() } else { id },
        get("ID_LIKE"),
    )
}

fn pick_pm(os: &str, id: &str, like: &str) -> Option<Pm> {
    if os == "macos" {
        return on_path("brew").then_some(Pm::Brew);
    }
    let family = format!("{id} {like}");
    let preferred = [
        (["debian", "ubuntu"], Pm::Apt),
        (["fedora", "rhel"], Pm::Dnf),
        (["arch", "manjaro"], Pm::Pacman),
        (["suse", "opensuse"], Pm::Zypper),
    ];
    for (names, pm) in preferred {
        if names.iter().any(|n| family.contains(n)) && on_path(pm.bin()) {
            return Some(pm);
        }
    }
    [Pm::Apt, Pm::Dnf, Pm::Pacman, Pm::Zypper]
        .into_iter()
        .find(|pm| on_path(pm.bin()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_os_release() {
        let (id, like) = os_release("NAME=\"Ubuntu\"\nID=ubuntu\nID_LIKE=debian\n");
        assert_eq!((id.as_str(), like.as_str()), ("ubuntu", "debian"));
        assert_eq!(os_release("").0, "unknown");
    }
}
