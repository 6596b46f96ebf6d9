//! The open-file limit: raised from its soft to its hard value at start-up, so a fleet's
//! connections fit (every client connection is a file descriptor).
//!
//! Many systems start processes with a soft limit of 1024 and a hard one far above it (systemd:
//! 1024 / 524288). A process may raise its own soft limit up to the hard one without
//! privileges; the hard limit itself is the administrator's (`LimitNOFILE=` in a systemd
//! unit, `ulimit -Hn`, `--ulimit nofile=` for Docker).

/// The soft and hard open-file limits before and after [`raise`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Raised {
    /// The soft limit at start-up (`None`: unlimited).
    pub before: Option<u64>,
    /// The soft limit now.
    pub now: Option<u64>,
    /// The hard limit (`None`: unlimited).
    pub hard: Option<u64>,
}

/// Raises the soft open-file limit to the hard one. `Err` says why it could not.
#[cfg(unix)]
pub fn raise() -> Result<Raised, String> {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let before = limit.current;
    if limit.current == limit.maximum {
        return Ok(Raised {
            before,
            now: before,
            hard: limit.maximum,
        });
    }
    let wanted = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    setrlimit(Resource::Nofile, wanted).map_err(|e| {
        format!(
            "cannot raise the open-file limit from {} to {}: {e}",
            show(before),
            show(limit.maximum)
        )
    })?;
    let now = getrlimit(Resource::Nofile).current;
    Ok(Raised {
        before,
        now,
        hard: limit.maximum,
    })
}

/// Not a unix: nothing to raise.
#[cfg(not(unix))]
pub fn raise() -> Result<Raised, String> {
    Ok(Raised {
        before: None,
        now: None,
        hard: None,
    })
}

/// A limit as text (`unlimited` for `None`).
pub fn show(limit: Option<u64>) -> String {
    limit.map_or_else(|| "unlimited".to_owned(), |n| n.to_string())
}
