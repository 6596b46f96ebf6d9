//! When to sample and when to send a heartbeat.
//!
//! Deadlines advance by whole periods from the start time, so the sampling rate does not drift
//! with the time the work takes. When the device falls behind (a long blocking operation, a
//! debugger halt) the missed periods are skipped, not bunched up, and counted.

/// What is due at a given time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Due {
    /// Take a sample now.
    pub sample: bool,
    /// Send a heartbeat now.
    pub heartbeat: bool,
}

/// Two fixed-period deadlines.
#[derive(Debug, Clone)]
pub struct Schedule {
    period_ms: u64,
    heartbeat_ms: u64,
    next_sample: u64,
    next_heartbeat: u64,
    missed: u32,
}

impl Schedule {
    /// Starts at `now_ms`: the first sample is due one period later, the first heartbeat one
    /// heartbeat period later. Periods of 0 are treated as 1 ms.
    pub fn new(period_ms: u32, heartbeat_ms: u32, now_ms: u64) -> Self {
        let period_ms = u64::from(period_ms.max(1));
        let heartbeat_ms = u64::from(heartbeat_ms.max(1));
        Self {
            period_ms,
            heartbeat_ms,
            next_sample: now_ms + period_ms,
            next_heartbeat: now_ms + heartbeat_ms,
            missed: 0,
        }
    }

    /// What is due at `now_ms`; advances the deadlines past `now_ms`.
    pub fn poll(&mut self, now_ms: u64) -> Due {
        let sample = now_ms >= self.next_sample;
        if sample {
            let late_periods = (now_ms - self.next_sample) / self.period_ms;
            self.missed = self
                .missed
                .saturating_add(u32::try_from(late_periods).unwrap_or(u32::MAX));
            self.next_sample += (late_periods + 1) * self.period_ms;
        }
        let heartbeat = now_ms >= self.next_heartbeat;
        if heartbeat {
            let late = (now_ms - self.next_heartbeat) / self.heartbeat_ms;
            self.next_heartbeat += (late + 1) * self.heartbeat_ms;
        }
        Due { sample, heartbeat }
    }

    /// The earliest time anything is due: sleep until then.
    pub fn next_deadline(&self) -> u64 {
        self.next_sample.min(self.next_heartbeat)
    }

    /// Sample periods skipped because the device was late.
    pub fn missed(&self) -> u32 {
        self.missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOTHING: Due = Due {
        sample: false,
        heartbeat: false,
    };
    const SAMPLE: Due = Due {
        sample: true,
        heartbeat: false,
    };

    #[test]
    fn samples_every_period_from_the_start_time() {
        let mut s = Schedule::new(100, 1_000, 50);
        assert_eq!(s.next_deadline(), 150);
        assert_eq!(s.poll(149), NOTHING);
        assert_eq!(s.poll(150), SAMPLE);
        assert_eq!(s.poll(150), NOTHING, "a deadline fires once");
        assert_eq!(s.poll(249), NOTHING);
        assert_eq!(s.poll(250), SAMPLE);
        assert_eq!(s.next_deadline(), 350);
    }

    #[test]
    fn lateness_does_not_drift_the_deadlines() {
        let mut s = Schedule::new(100, 10_000, 0);
        assert_eq!(s.poll(130), SAMPLE, "30 ms late");
        assert_eq!(s.next_deadline(), 200, "still on the 100 ms grid");
        assert_eq!(s.missed(), 0);
    }

    #[test]
    fn missed_periods_are_skipped_and_counted() {
        let mut s = Schedule::new(100, 10_000, 0);
        assert_eq!(s.poll(450), SAMPLE, "one sample, not four");
        assert_eq!(
            s.missed(),
            3,
            "deadlines 100, 200, 300 were missed; 400 is taken late"
        );
        assert_eq!(s.next_deadline(), 500);
    }

    #[test]
    fn heartbeat_on_its_own_period() {
        let mut s = Schedule::new(100, 250, 0);
        let beats: Vec<u64> = (1..=1000).filter(|&t| s.poll(t).heartbeat).collect();
        assert_eq!(beats, [250, 500, 750, 1000]);
        let mut s = Schedule::new(100, 250, 0);
        let samples = (1..=1000).filter(|&t| s.poll(t).sample).count();
        assert_eq!(samples, 10);
        assert_eq!(s.poll(1100), SAMPLE);
    }

    #[test]
    fn zero_periods_do_not_divide_by_zero() {
        let mut s = Schedule::new(0, 0, 0);
        assert_eq!(
            s.poll(1),
            Due {
                sample: true,
                heartbeat: true
            }
        );
    }
}
