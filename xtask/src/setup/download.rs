//! Installing a pinned release tarball into a user directory, atomically: download to a
//! temporary file, verify its SHA-256 against the manifest, unpack into a temporary directory,
//! then rename into place and point a link in the bin directory at it. Any failure on the way
//! (network, short read, checksum, bad archive) removes every temporary and leaves the previous
//! state as it was. Downloads shell out to `curl` (or `wget`): xtask stays std-only.

use std::fs;
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
/// Returns the path of the linked executable.
pub fn install(rel: &Release, opt_dir: &Path, bin_dir: &Path, progress: bool) -> Result<PathBuf> {
    let want = rel.sha256.trim().to_lowercase();
    if want.len() != 64 || !want.chars().all(|c| c.is_ascii_hexdigit()) {
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
    let archive = opt_dir.join(format!(".{}-download-{pid}.tar.gz", rel.name));
    let unpack = opt_dir.join(format!(".{}-unpack-{pid}", rel.name));
    let link_tmp = bin_dir.join(format!(".{}-link-{pid}", rel.name));
    let _cleanup = Cleanup(vec![archive.clone(), unpack.clone(), link_tmp.clone()]);

    download(&rel.url, &archive, progress)?;
    let got = sha256::hex(&fs::read(&archive)?);
    if got != want {
        crate::bail!(
            "checksum mismatch for {}: expected {want}, got {got}; nothing was installed. If the \
             release was re-published, verify it and update toolchains/manifest.toml",
            rel.url
        );
    }
    fs::create_dir_all(&unpack)?;
    let status = std::process::Command::new("tar")
        .arg("-xzf")
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
    Ok(bin_dir.join(&rel.name))
}

/// Downloads `url` to `to`; a partial file is removed by the caller's cleanup.
pub fn download(url: &str, to: &Path, progress: bool) -> Result {
    let mut c = if on_path("curl") {
        let mut c = std::process::Command::new("curl");
        c.args(["--fail", "--location", "--show-error"]);
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
