//! Installing a pinned release archive into a user directory, atomically: download to a
//! temporary file, verify its SHA-256 (pinned in the manifest, or the release's published
//! `.sha256` file), unpack into a temporary directory, then rename into place and point a link
//! in the bin directory at it. Any failure on the way (network, short read, checksum, bad
//! archive) removes every temporary and leaves the previous state as it was. Downloads shell
//! out to `curl` (or `wget`): xtask stays std-only.
//!
//! Also the PyPI channel ([`install_wheel`]): some tools publish their release binary as a
//! wheel (just as `rust-just`); pip fetches it over TLS and checks the index's SHA-256, and the
//! wheel's own SHA-256 is compared with the manifest's pin where one is known.

use crate::fs;
use std::path::{Path, PathBuf};

use crate::cmd::{Error, Result, on_path};
use crate::sha256;

/// One pinned release.
#[derive(Debug, Clone)]
pub struct Release {
    pub url: String,
    pub sha256: String,
    /// Path of the executable inside the archive, e.g. `mold-2.40.4-x86_64-linux/bin/mold`.
    pub binary: String,
    /// The command name to link in `bin_dir`, e.g. `mold`.
    pub name: String,
    /// Where the release publishes its checksum (`<url>.sha256`, as cargo-dist does), used
    /// when no checksum is pinned. Empty: a pin is required.
    pub sha256_url: String,
}

/// Where the checksum an install was verified against came from (said in the summary).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Checked {
    /// The SHA-256 pinned in toolchains/manifest.toml.
    Pinned,
    /// The release's published `.sha256` file, fetched over TLS.
    Published,
    /// PyPI's index hash (checked by pip over TLS), no pin for this platform.
    Index,
}

impl Checked {
    pub fn describe(self) -> &'static str {
        match self {
            Checked::Pinned => "sha256 pinned in the manifest",
            Checked::Published => "sha256 from the release's published .sha256 file",
            Checked::Index => "sha256 from PyPI's index, checked by pip",
        }
    }
}

fn is_hex64(s: &str) -> bool {
    s.len() == 64 && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Removes the listed paths when dropped, unless disarmed.
struct Cleanup(Vec<PathBuf>);

impl Drop for Cleanup {
    fn drop(&mut self) {
        for p in &self.0 {
            if p.is_dir() {
                let _ = fs::remove_dir_all(p);
            } else {
                let _ = fs::remove_file(p);
            }
        }
    }
}

/// Installs `rel` under `opt_dir/<top dir of the archive>` with a link `bin_dir/<name>`.
/// Returns the path of the linked executable and where its checksum came from.
pub fn install(
    rel: &Release,
    opt_dir: &Path,
    bin_dir: &Path,
    progress: bool,
) -> Result<(PathBuf, Checked)> {
    let pinned = rel.sha256.trim().to_lowercase();
    if !is_hex64(&pinned) && rel.sha256_url.is_empty() {
        crate::bail!(
            "no pinned sha256 for {}: refusing to install an unverified download; verify the \
             release's checksum and pin it in toolchains/manifest.toml",
            rel.url
        );
    }
    let (top, inner) = rel
        .binary
        .split_once('/')
        .ok_or_else(|| Error(format!("bad binary path `{}` in the manifest", rel.binary)))?;
    fs::create_dir_all(opt_dir)?;
    fs::create_dir_all(bin_dir)?;
    let pid = std::process::id();
    let archive = opt_dir.join(format!(".{}-download-{pid}.archive", rel.name));
    let sum_file = opt_dir.join(format!(".{}-download-{pid}.sha256", rel.name));
    let unpack = opt_dir.join(format!(".{}-unpack-{pid}", rel.name));
    let link_tmp = bin_dir.join(format!(".{}-link-{pid}", rel.name));
    let _cleanup = Cleanup(vec![
        archive.clone(),
        sum_file.clone(),
        unpack.clone(),
        link_tmp.clone(),
    ]);

    let (want, checked) = if is_hex64(&pinned) {
        (pinned, Checked::Pinned)
    } else {
        download(&rel.sha256_url, &sum_file, false)?;
        let text = fs::read_to_string(&sum_file).unwrap_or_default();
        let published = text.split_whitespace().next().unwrap_or("").to_lowercase();
        if !is_hex64(&published) {
            crate::bail!(
                "{} holds no SHA-256 (`{}`); nothing was installed",
                rel.sha256_url,
                text.trim()
            );
        }
        (published, Checked::Published)
    };
    download(&rel.url, &archive, progress)?;
    let got = sha256::hex(&fs::read(&archive)?);
    if got != want {
        crate::bail!(
            "checksum mismatch for {}: expected {want} ({}), got {got}; nothing was installed. \
             If the release was re-published, verify it and update toolchains/manifest.toml",
            rel.url,
            checked.describe()
        );
    }
    fs::create_dir_all(&unpack)?;
    let flag = if rel.url.ends_with(".tar.xz") {
        "-xJf"
    } else {
        "-xzf"
    };
    let status = std::process::Command::new("tar")
        .arg(flag)
        .arg(&archive)
        .arg("-C")
        .arg(&unpack)
        .status()
        .map_err(|e| Error(format!("could not run tar: {e}; install tar and re-run")))?;
    if !status.success() {
        crate::bail!(
            "could not unpack {} (tar: {status}); nothing was installed",
            rel.url
        );
    }
    if !unpack.join(&rel.binary).is_file() {
        crate::bail!(
            "{} has no `{}`; check the manifest's `binary` path",
            rel.url,
            rel.binary
        );
    }
    let dest = opt_dir.join(top);
    if dest.exists() {
        fs::remove_dir_all(&dest)?;
    }
    fs::rename(unpack.join(top), &dest)?;
    let exe = dest.join(inner);
    #[cfg(unix)]
    std::os::unix::fs::symlink(&exe, &link_tmp)?;
    #[cfg(not(unix))]
    fs::copy(&exe, &link_tmp)?;
    fs::rename(&link_tmp, bin_dir.join(&rel.name))?;
    Ok((bin_dir.join(&rel.name), checked))
}

/// A tool's release binary shipped inside a PyPI wheel.
#[derive(Debug, Clone)]
pub struct Wheel {
    /// The PyPI project, e.g. `rust-just`.
    pub project: String,
    pub version: String,
    /// Path of the executable inside the wheel, e.g. `rust_just-1.59.0.data/scripts/just`.
    pub member: String,
    /// SHA-256 of this platform's wheel, when pinned (else pip's index check stands alone).
    pub sha256: String,
    pub name: String,
}

/// Installs `w`'s binary as `bin_dir/<name>` (a regular file, renamed into place). Needs
/// `python3 -m pip`; fails (so the caller falls back to building) when it is absent.
pub fn install_wheel(w: &Wheel, bin_dir: &Path) -> Result<(PathBuf, Checked)> {
    let python = ["python3", "python"]
        .into_iter()
        .find(|p| on_path(p))
        .ok_or_else(|| Error("no python3 with pip on PATH".into()))?;
    fs::create_dir_all(bin_dir)?;
    let pid = std::process::id();
    let stage = std::env::temp_dir().join(format!("xtask-wheel-{}-{pid}", w.name));
    let tmp_bin = bin_dir.join(format!(".{}-wheel-{pid}", w.name));
    let _cleanup = Cleanup(vec![stage.clone(), tmp_bin.clone()]);
    let spec = format!("{}=={}", w.project, w.version);
    let out = std::process::Command::new(python)
        .args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
        .args(["--disable-pip-version-check", "--quiet", "--dest"])
        .arg(&stage)
        .arg(&spec)
        .output()
        .map_err(|e| Error(format!("could not run {python} -m pip: {e}")))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let last = err
            .lines()
            .rev()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("");
        crate::bail!("pip download {spec} failed: {}", last.trim());
    }
    let wheel = fs::read_dir(&stage)
        .ok()
        .and_then(|r| {
            r.flatten()
                .map(|e| e.path())
                .find(|p| p.extension().is_some_and(|x| x == "whl"))
        })
        .ok_or_else(|| Error(format!("pip download {spec} left no wheel")))?;
    let got = sha256::hex(&fs::read(&wheel)?);
    let pinned = w.sha256.trim().to_lowercase();
    let checked = if is_hex64(&pinned) {
        if got != pinned {
            crate::bail!(
                "checksum mismatch for {}: expected {pinned} (pinned), got {got}; nothing was \
                 installed",
                wheel.display()
            );
        }
        Checked::Pinned
    } else {
        Checked::Index
    };
    let unpack = stage.join("unpacked");
    let status = std::process::Command::new(python)
        .args(["-m", "zipfile", "-e"])
        .arg(&wheel)
        .arg(&unpack)
        .status()
        .map_err(|e| Error(format!("could not run {python} -m zipfile: {e}")))?;
    let exe = unpack.join(&w.member);
    if !status.success() || !exe.is_file() {
        crate::bail!(
            "{} has no `{}`; check the manifest's wheel member path",
            wheel.display(),
            w.member
        );
    }
    fs::copy(&exe, &tmp_bin)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        fs::set_permissions(&tmp_bin, fs::Permissions::from_mode(0o755))?;
    }
    let dest = bin_dir.join(&w.name);
    fs::rename(&tmp_bin, &dest)?;
    Ok((dest, checked))
}

/// Downloads `url` to `to`; a partial file is removed by the caller's cleanup.
pub fn download(url: &str, to: &Path, progress: bool) -> Result {
    let mut c = if on_path("curl") {
        let mut c = std::process::Command::new("curl");
        c.args([
            "--fail",
            "--location",
            "--show-error",
            "--connect-timeout",
            "10",
        ]);
        c.arg(if progress {
            "--progress-bar"
        } else {
            "--silent"
        });
        c.arg("--output").arg(to).arg(url);
        c
    } else if on_path("wget") {
        let mut c = std::process::Command::new("wget");
        if !progress {
            c.arg("--quiet");
        }
        c.arg("--output-document").arg(to).arg(url);
        c
    } else {
        crate::bail!("neither curl nor wget is installed: install curl and re-run");
    };
    let status = c
        .status()
        .map_err(|e| Error(format!("could not start the download: {e}")))?;
    if !status.success() {
        crate::bail!("download of {url} failed ({status}); check the network and re-run");
    }
    Ok(())
}
