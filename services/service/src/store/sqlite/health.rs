//! The store's health: noticing that its files are gone (issue 14), and keeping them within
//! `--max-db-mb`.
//!
//! # Durability honesty: the store notices that its files are gone
//! SQLite keeps writing to a database file that was deleted (or replaced by a rename) while it
//! is open: every commit "succeeds" into an inode nobody can reach, and the data is gone at
//! exit. So the writer records the identity (device, inode) of the database file and of its
//! WAL, and checks them after every commit, before it answers: a changed or missing file marks
//! the store lost for good. Every later write, and the commit that found it, get 503; `ready()`
//! fails; `failed()` completes, so the server shuts down and exits non-zero.

use super::bytes_on_disk;
use crate::store::StoreError;
use rusqlite::Connection;
use std::path::PathBuf;
use std::sync::Mutex;

/// Where a file lives: equal ids mean the same file, even across renames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileId {
    dev: u64,
    ino: u64,
}

fn file_id(path: &std::path::Path) -> std::io::Result<FileId> {
    let meta = std::fs::metadata(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::MetadataExt as _;
        Ok(FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        })
    }
    #[cfg(not(unix))]
    {
        // No inode to compare: only a missing file is noticed.
        let _ = meta;
        Ok(FileId { dev: 0, ino: 0 })
    }
}

pub(super) fn wal_path(db: &std::path::Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// The identities the writer opened, and what it found since.
#[derive(Debug)]
pub(super) struct Health {
    pub(super) path: PathBuf,
    db: FileId,
    /// Recorded at the first check that finds the WAL (SQLite creates it at the first write).
    wal: Mutex<Option<FileId>>,
    /// `Some(why)` once the files are gone or replaced: permanent.
    pub(super) lost: tokio::sync::watch::Sender<Option<String>>,
    /// The last commit failed for lack of space (disk or `--max-db-mb`); the next good commit
    /// clears it.
    pub(super) full: std::sync::atomic::AtomicBool,
    /// `SqliteConfig::max_db_bytes`: the cap on the three files together.
    max_bytes: Option<u64>,
}

impl Health {
    pub(super) fn new(path: PathBuf, max_bytes: Option<u64>) -> Result<Self, StoreError> {
        let db = file_id(&path).map_err(|e| {
            StoreError::Unavailable(format!("cannot stat the database {}: {e}", path.display()))
        })?;
        Ok(Self {
            path,
            db,
            wal: Mutex::new(None),
            lost: tokio::sync::watch::channel(None).0,
            full: std::sync::atomic::AtomicBool::new(false),
            max_bytes,
        })
    }

    pub(super) fn lost(&self) -> Option<StoreError> {
        self.lost.borrow().clone().map(StoreError::Unavailable)
    }

    /// Blocking (two `stat`s): call from the writer or the blocking pool. `Err` when the
    /// store is lost (now or before).
    pub(super) fn check_files(&self) -> Result<(), StoreError> {
        if let Some(e) = self.lost() {
            return Err(e);
        }
        let problem = match file_id(&self.path) {
            Ok(id) if id == self.db => self.check_wal(),
            Ok(_) => Some("was replaced by another file"),
            Err(_) => Some("was removed"),
        };
        let Some(problem) = problem else {
            return Ok(());
        };
        let why = format!(
            "the database file {} (or its -wal) {problem} while the service ran: writes since \
             then cannot be kept, so none are accepted; restore the file (or point --db at a \
             new one) and restart the service",
            self.path.display()
        );
        tracing::error!("{why}");
        self.lost.send_replace(Some(why.clone()));
        Err(StoreError::Unavailable(why))
    }

    fn check_wal(&self) -> Option<&'static str> {
        let found = file_id(&wal_path(&self.path)).ok();
        let Ok(mut known) = self.wal.lock() else {
            return None;
        };
        match (*known, found) {
            (None, Some(id)) => {
                *known = Some(id);
                None
            }
            (None, None) => None,
            (Some(k), Some(id)) if k == id => None,
            (Some(_), Some(_)) => Some("was replaced by another file"),
            (Some(_), None) => Some("was removed"),
        }
    }

    pub(super) fn full_error() -> StoreError {
        StoreError::Unavailable(
            "the store is full (disk or --max-db-mb limit): writes are refused; free space or raise the limit, then retry".into(),
        )
    }
}

/// `--max-db-mb` counts the WAL and `-shm` too: when a commit left the three files over the
/// cap, fold the WAL back into the main file (bounded by `max_page_count`) and truncate it.
pub(super) fn fit_the_cap(conn: &Connection, health: &Health) {
    let Some(max) = health.max_bytes else {
        return;
    };
    if bytes_on_disk(&health.path) <= max {
        return;
    }
    // (busy, wal frames, checkpointed frames): busy when a reader holds an old snapshot; the
    // next commit tries again.
    let done = conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| {
        r.get::<_, i64>(0)
    });
    match done {
        Ok(0) => {}
        Ok(_) => tracing::debug!("wal checkpoint for --max-db-mb deferred: a reader is busy"),
        Err(e) => tracing::warn!("wal checkpoint for --max-db-mb failed: {e}"),
    }
}
