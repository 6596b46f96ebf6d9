//! What the fault plan reports: how each device [`Healed`] after a fault, one [`FaultReport`]
//! per fault, and the printed [`Timeline`].

use std::time::{Duration, Instant};

/// How one device healed after a fault.
#[derive(Debug, Clone, PartialEq)]
pub struct Healed {
    /// The device.
    pub device: u32,
    /// From the injection until its readings flowed again with the backlog stored; `None`
    /// if it did not heal within the plan's `heal_timeout`.
    pub after: Option<Duration>,
    /// Readings sampled before the fault ended that were stored after the injection (what
    /// the fault held back and the device or the gateway delivered late).
    pub backlog: u64,
}

/// One fault of a run.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultReport {
    /// What was done, e.g. "kill -9 the gateway".
    pub what: String,
    /// When it was injected, from the start of the run.
    pub injected: Duration,
    /// How long the fault lasted (until the restart or the link restore).
    pub lasted: Duration,
    /// Per affected device.
    pub healed: Vec<Healed>,
}

impl FaultReport {
    /// The slowest device's heal time, `None` if one did not heal.
    pub fn heal(&self) -> Option<Duration> {
        self.healed
            .iter()
            .map(|h| h.after)
            .try_fold(Duration::ZERO, |m, a| a.map(|a| m.max(a)))
    }

    /// One line for the summary.
    pub fn line(&self) -> String {
        let per: Vec<String> = self
            .healed
            .iter()
            .map(|h| {
                format!(
                    "device {} {} (backlog {})",
                    h.device,
                    h.after.map_or_else(|| "NOT HEALED".to_owned(), secs),
                    h.backlog
                )
            })
            .collect();
        format!(
            "{:<34} at t+{:<6} down {:<6} healed after {}",
            self.what,
            secs(self.injected),
            secs(self.lasted),
            per.join(", ")
        )
    }
}

/// `d` as "12.3s".
pub fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// The printed timeline: "t+12.3s <what happened>".
#[derive(Debug)]
pub struct Timeline {
    start: Instant,
    /// The lines so far.
    pub lines: Vec<String>,
    /// Print each line as it is added (off when the demo redraws the screen with them).
    pub echo: bool,
}

impl Timeline {
    /// A timeline counting from `start`.
    pub fn new(start: Instant, echo: bool) -> Self {
        Self {
            start,
            lines: Vec::new(),
            echo,
        }
    }

    /// Time since the start.
    pub fn now(&self) -> Duration {
        self.start.elapsed()
    }

    /// Adds "t+N.Ns: `what`".
    pub fn note(&mut self, what: impl std::fmt::Display) {
        let line = format!("t+{:>6}: {what}", secs(self.now()));
        if self.echo {
            println!("{line}");
        }
        self.lines.push(line);
    }
}
