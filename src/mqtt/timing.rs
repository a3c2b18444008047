//! Round-trip-time measurement and deadlines that tolerate late timers.

/// Smoothed round-trip time to the broker, from PINGREQ→PINGRESP and from
/// the first transmission of a QoS 1/2 PUBLISH to its PUBACK/PUBREC
/// (retransmissions are never sampled: Karn's rule). When a device cannot
/// report its Wi-Fi quality (Safari has no Network Information API), the hub
/// score falls back to these numbers.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct RttStats {
    /// RFC 6298 smoothed RTT (gain 1/8), `None` before the first sample.
    pub smoothed_ms: Option<f64>,
    /// RFC 6298 RTT variation (gain 1/4).
    pub variation_ms: f64,
    /// The most recent sample.
    pub latest_ms: Option<u64>,
    /// The smallest sample seen.
    pub min_ms: Option<u64>,
    /// Number of samples taken.
    pub samples: u64,
    /// Deadlines missed: PINGRESP (keepalive) and CONNACK timeouts. A
    /// rising count means a lossy or dying link.
    pub timeouts: u64,
}

impl RttStats {
    /// Adds one sample.
    pub fn sample(&mut self, ms: u64) {
        let r = ms as f64;
        match self.smoothed_ms {
            None => {
                self.smoothed_ms = Some(r);
                self.variation_ms = r / 2.0;
            }
            Some(s) => {
                self.variation_ms = 0.75 * self.variation_ms + 0.25 * (s - r).abs();
                self.smoothed_ms = Some(0.875 * s + 0.125 * r);
            }
        }
        self.latest_ms = Some(ms);
        self.min_ms = Some(self.min_ms.map_or(ms, |m| m.min(ms)));
        self.samples += 1;
    }
}

/// A timer fired this much after its deadline means the page was asleep
/// (background throttling, frozen tab), not that the peer is slow.
pub const LATE_TIMER_MS: u64 = 1_000;
/// After such a late wakeup, the grace given once for data already queued
/// in the browser (a PINGRESP, a CONNACK) to be delivered.
pub const LATE_GRACE_MS: u64 = 1_000;

/// A deadline that forgives one late wakeup. Browsers throttle timers in
/// background tabs (≥1 s, then once a minute); when our timer runs long
/// after the deadline, the reply may be sitting unprocessed in the event
/// queue, so it is extended once by [`LATE_GRACE_MS`] before it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Deadline {
    /// The instant it falls due (same clock as `now`); moved once by the grace.
    pub at: u64,
    grace_used: bool,
}

impl Deadline {
    /// A deadline at `at`, with its grace still unused.
    pub fn new(at: u64) -> Self {
        Deadline { at, grace_used: false }
    }

    /// True when the deadline has passed for good.
    pub fn expired(&mut self, now: u64) -> bool {
        if now < self.at {
            return false;
        }
        if !self.grace_used && now >= self.at.saturating_add(LATE_TIMER_MS) {
            self.grace_used = true;
            self.at = now.saturating_add(LATE_GRACE_MS);
            return false;
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rtt_smoothing() {
        let mut r = RttStats::default();
        r.sample(100);
        assert_eq!(r.smoothed_ms, Some(100.0));
        assert_eq!(r.variation_ms, 50.0);
        r.sample(20);
        assert_eq!(r.smoothed_ms, Some(90.0));
        assert_eq!(r.variation_ms, 57.5);
        assert_eq!((r.latest_ms, r.min_ms, r.samples), (Some(20), Some(20), 2));
    }

    #[test]
    fn deadline_on_time_and_late() {
        let mut d = Deadline::new(100);
        assert!(!d.expired(99));
        assert!(d.expired(100));
        let mut d = Deadline::new(100);
        assert!(!d.expired(5_000), "late wakeup gets a grace");
        assert_eq!(d.at, 5_000 + LATE_GRACE_MS);
        assert!(!d.expired(5_999));
        assert!(d.expired(6_000));
        assert!(d.expired(60_000), "only one grace");
    }
}
