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
    /// Round trips of transmissions sent in the first [`RTT_WARMUP_MS`]
    /// after a CONNACK, left out of every figure above: see there.
    pub startup_samples: u64,
}

/// Round trips of packets sent this long after a CONNACK are not sampled.
/// A page that has just connected is still starting (wasm instantiation,
/// IndexedDB loads, the retained-message burst, resubscriptions), so its
/// first round trips measure the page's main thread, not the link: on the
/// demo page they were hundreds of ms on loopback, and as the first sample
/// seeds the RFC 6298 estimator, which a PINGREQ every 30 s moves by 1/8,
/// the broker RTT (and the Wi-Fi score derived from it) stayed wrong for
/// minutes. When the window ends the session takes one measurement PINGREQ,
/// so the figure appears within seconds of connecting.
pub const RTT_WARMUP_MS: u64 = 3_000;

/// The broker RTT estimate starts from the smallest of this many samples
/// ([`RttStats::sample_sent_at`]); the session takes them with measurement
/// pings [`RTT_MEASURE_GAP_MS`] apart when the start-up window ends.
pub const RTT_SEED_SAMPLES: u64 = 3;
/// Between two measurement pings after a CONNACK.
pub const RTT_MEASURE_GAP_MS: u64 = 1_000;

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

    /// The round trip of a transmission sent at `sent` and answered at
    /// `now`: a sample, unless it was sent before `from` (the end of the
    /// start-up window, [`RTT_WARMUP_MS`]), when it is only counted.
    ///
    /// The estimate is seeded with the smallest of the first
    /// [`RTT_SEED_SAMPLES`] samples rather than the first one: a busy main
    /// thread only ever adds delay to a round trip, so the minimum of a few
    /// is the link's; on the demo page the hub's first sample after the
    /// start-up window was still ~150 ms (min 10 ms) while the other pages
    /// joined, and at gain 1/8 with a ping every 30 s it would have stayed
    /// far above 10 ms for minutes.
    pub fn sample_sent_at(&mut self, sent: u64, now: u64, from: u64) {
        if sent < from {
            self.startup_samples += 1;
            return;
        }
        self.sample_seeded(now.saturating_sub(sent));
    }

    /// [`RttStats::sample`], except that the estimate starts from the
    /// smallest of the first [`RTT_SEED_SAMPLES`] samples (see
    /// [`RttStats::sample_sent_at`] for why; the mesh's route quality uses
    /// it too).
    pub fn sample_seeded(&mut self, ms: u64) {
        if self.samples < RTT_SEED_SAMPLES {
            let seed = self.min_ms.map_or(ms, |m| m.min(ms)) as f64;
            self.sample(ms);
            self.smoothed_ms = Some(seed);
            self.variation_ms = seed / 2.0;
        } else {
            self.sample(ms);
        }
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
    fn startup_samples_are_counted_apart() {
        let mut r = RttStats::default();
        r.sample_sent_at(100, 150, 1_000);
        assert_eq!((r.smoothed_ms, r.min_ms, r.samples, r.startup_samples), (None, None, 0, 1));
        r.sample_sent_at(1_000, 1_150, 1_000); // the page still busy
        assert_eq!((r.smoothed_ms, r.min_ms, r.samples, r.startup_samples), (Some(150.0), Some(150), 1, 1));
        r.sample_sent_at(2_000, 2_004, 1_000);
        r.sample_sent_at(3_000, 3_006, 1_000);
        assert_eq!((r.smoothed_ms, r.variation_ms, r.min_ms, r.samples), (Some(4.0), 2.0, Some(4), 3), "seeded with the minimum");
        r.sample_sent_at(4_000, 4_012, 1_000);
        assert_eq!(r.smoothed_ms, Some(5.0), "then RFC 6298: 4 + (12 - 4) / 8");
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
