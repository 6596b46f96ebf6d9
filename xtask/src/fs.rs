//! Leaf module: `std::fs` with errors that name the path. A bare `std::fs::read_to_string(p)?`
//! prints "No such file or directory (os error 2)" and leaves the reader guessing which file;
//! these say `cannot read /x/y.toml: No such file or directory (os error 2)`.

use std::path::Path;

use crate::cmd::{Error, Result};

fn err(verb: &str, path: &Path, e: std::io::Error) -> Error {
    Error(format!("cannot {verb} {}: {e}", path.display()))
}

pub fn read_to_string(path: impl AsRef<Path>) -> Result<String> {
    let path = path.as_ref();
    std::fs::read_to_string(path).map_err(|e| err("read", path, e))
}

pub fn read(path: impl AsRef<Path>) -> Result<Vec<u8>> {
    let path = path.as_ref();
    std::fs::read(path).map_err(|e| err("read", path, e))
}

pub fn write(path: impl AsRef<Path>, contents: impl AsRef<[u8]>) -> Result {
    let path = path.as_ref();
    std::fs::write(path, contents).map_err(|e| err("write", path, e))
}

pub fn create_dir_all(path: impl AsRef<Path>) -> Result {
    let path = path.as_ref();
    std::fs::create_dir_all(path).map_err(|e| err("create the directory", path, e))
}

pub fn remove_file(path: impl AsRef<Path>) -> Result {
    let path = path.as_ref();
    std::fs::remove_file(path).map_err(|e| err("remove", path, e))
}

pub fn remove_dir_all(path: impl AsRef<Path>) -> Result {
    let path = path.as_ref();
    std::fs::remove_dir_all(path).map_err(|e| err("remove the directory", path, e))
}

pub fn copy(from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result<u64> {
    let (from, to) = (from.as_ref(), to.as_ref());
    std::fs::copy(from, to).map_err(|e| {
        Error(format!(
            "cannot copy {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

pub fn rename(from: impl AsRef<Path>, to: impl AsRef<Path>) -> Result {
    let (from, to) = (from.as_ref(), to.as_ref());
    std::fs::rename(from, to).map_err(|e| {
        Error(format!(
            "cannot rename {} to {}: {e}",
            from.display(),
            to.display()
        ))
    })
}

pub fn remove_dir(path: impl AsRef<Path>) -> Result {
    let path = path.as_ref();
    std::fs::remove_dir(path).map_err(|e| err("remove the directory", path, e))
}

pub fn metadata(path: impl AsRef<Path>) -> Result<std::fs::Metadata> {
    let path = path.as_ref();
    std::fs::metadata(path).map_err(|e| err("read the metadata of", path, e))
}

pub fn set_permissions(path: impl AsRef<Path>, perm: std::fs::Permissions) -> Result {
    let path = path.as_ref();
    std::fs::set_permissions(path, perm).map_err(|e| err("set the permissions of", path, e))
}

pub use std::fs::Permissions;

pub fn read_dir(path: impl AsRef<Path>) -> Result<std::fs::ReadDir> {
    let path = path.as_ref();
    std::fs::read_dir(path).map_err(|e| err("list", path, e))
}

#[cfg(test)]
mod tests {
    #[test]
    fn errors_name_the_path() {
        let e = super::read_to_string("/nonexistent/xtask-fs-test.toml").unwrap_err();
        assert!(
            e.0.starts_with("cannot read /nonexistent/xtask-fs-test.toml: "),
            "{}",
            e.0
        );
    }
}
