//! How good one route to one peer is: smoothed round trip (RFC 6298, from
//! acks and probe replies), delivery ratio over the last outcomes, and
//! traffic counters for `getDetailedStats()`.
//!
//! Round trips are sampled only where the transmission is unambiguous: every
//! data copy carries its attempt number and the ack echoes it, and probes
//! carry a nonce, so a resend never pollutes the estimate (Karn's problem
//! does not arise).

use crate::mqtt::RttStats;

/// Outcomes remembered for the delivery ratio.
pub const DELIVERY_WINDOW: u32 = 64;

/// Messages and bytes on one route to one peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RouteCounters {
    /// Transmissions (data copies, acks, probes, replies, signals).
    pub msgs_out: u64,
    /// Their body bytes.
    pub bytes_out: u64,
    /// Bodies received.
    pub msgs_in: u64,
    /// Their bytes.
    pub bytes_in: u64,
    /// Data copies sent on this route that were acked.
    pub acked: u64,
    /// Data copies and probes sent on this route that timed out.
    pub timeouts: u64,
    /// Probes sent.
    pub probes: u64,
    /// When the last probe (ping) was sent on this route, node ms; 0: never.
    pub last_probe_at: u64,
    /// When the last probe reply (pong) came back on this route, node ms
    /// (late ones too: the peer answered); 0: never.
    pub last_reply_at: u64,
}

/// Quality of one route to one peer.
#[derive(Debug, Clone, Default)]
pub struct Quality {
    /// Round-trip estimate.
    pub rtt: RttStats,
    /// Traffic.
    pub counters: RouteCounters,
    /// Failure bits of the last outcomes (bit 0 = newest).
    window: u64,
    window_len: u32,
    /// Some transmission on this route has been delivered (since the last
    /// [`Quality::reset_estimates`]).
    delivered_once: bool,
    /// The last probe that timed out: (nonce, sent at), for its late reply.
    expired_probe: Option<(u64, u64)>,
}

/// Retransmission-timeout bounds, ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RtoConfig {
    /// Floor: never time out faster (acks are sent at once, but a busy page
    /// may take a while to run its handlers).
    pub min_ms: u64,
    /// Ceiling: a slow route still hands over within this.
    pub max_ms: u64,
    /// Before the first sample.
    pub initial_ms: u64,
}

impl Default for RtoConfig {
    fn default() -> Self {
        RtoConfig { min_ms: 250, max_ms: 1_000, initial_ms: 1_000 }
    }
}

impl Quality {
    /// One round trip, ms. The estimate starts from the smallest of the
    /// first [`RTT_SEED_SAMPLES`](crate::mqtt::timing::RTT_SEED_SAMPLES) round trips, not from the first one (as
    /// the broker link's does, `RttStats::sample_sent_at`): a busy main
    /// thread only ever adds delay, and a route that is up from the start
    /// (the broker route) takes its first samples while both pages are
    /// still starting. Seeded with such a sample at gain 1/8 and a probe
    /// every 5 s, the demo's broker routes showed 55-102 ms on loopback for
    /// minutes while the data channels, which open later, showed 3-18 ms.
    pub fn sample(&mut self, ms: u64) {
        self.rtt.sample_seeded(ms);
    }

    /// A transmission was delivered. The failures before a route's first
    /// delivery are dropped from the window: they were sent before the
    /// route could work (the peer announced itself before it had
    /// subscribed to its broker topic, a data channel not yet open), so
    /// they say nothing of the route once running; they stay in
    /// `counters.timeouts`. Until that first delivery they count (a route
    /// that never delivers shows 0 %).
    pub fn success(&mut self) {
        if !self.delivered_once {
            self.delivered_once = true;
            self.window = 0;
            self.window_len = 0;
        }
        self.push(false);
    }

    /// A probe that timed out (charged with [`Quality::failure`]),
    /// remembered so that its late reply can still be taken, see
    /// [`Quality::late_reply`].
    pub fn probe_expired(&mut self, nonce: u64, sent: u64) {
        self.expired_probe = Some((nonce, sent));
    }

    /// The reply to the last probe that timed out, arriving late: the
    /// route was slow, not lossy. Its round trip is sampled (the nonce makes
    /// it unambiguous) and its failure becomes a success. Without this the
    /// estimator saw only replies faster than the RTO: on a loaded page the
    /// broker route's replies that took longer than the 250 ms floor were
    /// charged as losses forever while the RTO, fed only the fast ones,
    /// never grew. Returns the round trip when `nonce` was that probe's.
    pub fn late_reply(&mut self, nonce: u64, now: u64) -> Option<u64> {
        let (n, sent) = self.expired_probe?;
        if n != nonce {
            return None;
        }
        self.expired_probe = None;
        let ms = now.saturating_sub(sent);
        // Not seeded (see `sample`): a reply that beat the timeout is
        // evidence of a slow route, and its weight is what grows the RTO.
        self.rtt.sample(ms);
        // The newest failure in the window is that probe's, or a later one:
        // either way one failure fewer, as many outcomes.
        if self.window != 0 {
            self.window &= self.window - 1;
        }
        if !self.delivered_once {
            self.delivered_once = true;
            self.window = 0;
            self.window_len = 0;
            self.push(false);
        }
        Some(ms)
    }

    /// A transmission timed out.
    pub fn failure(&mut self) {
        self.counters.timeouts += 1;
        self.push(true);
    }

    /// Delivered share of the last outcomes; `None` before any.
    pub fn delivery_ratio(&self) -> Option<f64> {
        (self.window_len > 0).then(|| 1.0 - f64::from(self.window.count_ones()) / f64::from(self.window_len))
    }

    /// RFC 6298 timeout: `srtt + 4·rttvar`, within the bounds.
    pub fn rto(&self, cfg: &RtoConfig) -> u64 {
        match self.rtt.smoothed_ms {
            Some(s) => ((s + 4.0 * self.rtt.variation_ms).ceil() as u64).clamp(cfg.min_ms, cfg.max_ms),
            None => cfg.initial_ms.clamp(cfg.min_ms, cfg.max_ms.max(cfg.min_ms)),
        }
    }

    /// What the router minimises: the smoothed round trip (or `prior`
    /// before any sample) × (1 + 4 × loss), so 10 % loss weighs like 40 %
    /// more latency (each loss costs a timeout and a resend).
    pub fn cost(&self, prior: u64) -> u64 {
        let rtt = self.rtt.smoothed_ms.unwrap_or(prior as f64);
        let loss = 1.0 - self.delivery_ratio().unwrap_or(1.0);
        (rtt * (1.0 + 4.0 * loss)).round() as u64
    }

    /// A fresh start (the route was re-created); counters are kept.
    pub fn reset_estimates(&mut self) {
        let counters = self.counters;
        *self = Quality { counters, ..Quality::default() };
    }

    fn push(&mut self, failed: bool) {
        let mask = if DELIVERY_WINDOW == 64 { u64::MAX } else { (1u64 << DELIVERY_WINDOW) - 1 };
        self.window = ((self.window << 1) | u64::from(failed)) & mask;
        self.window_len = (self.window_len + 1).min(DELIVERY_WINDOW);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slow start-up round trip does not seed the estimate: once the
    /// first samples are in, it is their minimum, and later samples move
    /// it by RFC 6298's gain. (Seeded with the first sample, this route
    /// read 383 ms after three samples and ~115 ms after a dozen.)
    #[test]
    fn a_slow_first_sample_does_not_seed_the_estimate() {
        let mut q = Quality::default();
        q.sample(500); // the pages were still starting
        assert_eq!(q.rtt.smoothed_ms, Some(500.0), "one sample: all there is");
        q.sample(4);
        q.sample(3);
        assert_eq!(q.rtt.smoothed_ms, Some(3.0));
        assert_eq!(q.rtt.samples, 3);
        q.sample(11);
        assert_eq!(q.rtt.smoothed_ms, Some(0.875 * 3.0 + 0.125 * 11.0));
        // A late probe reply first (start-up) does not keep the estimate up
        // either once a fast round trip follows.
        let mut late = Quality::default();
        late.probe_expired(1, 0);
        assert_eq!(late.late_reply(1, 900), Some(900));
        late.sample(5);
        assert_eq!(late.rtt.smoothed_ms, Some(5.0));
    }

    #[test]
    fn rto_follows_rfc_6298_within_bounds() {
        let cfg = RtoConfig::default();
        let mut q = Quality::default();
        assert_eq!(q.rto(&cfg), 1_000);
        q.sample(20); // srtt 20, var 10 → 60 → floor 250
        assert_eq!(q.rto(&cfg), 250);
        let mut slow = Quality::default();
        slow.sample(400); // 400 + 800 → ceiling
        assert_eq!(slow.rto(&cfg), 1_000);
        let mut mid = Quality::default();
        mid.sample(100); // 100 + 200
        assert_eq!(mid.rto(&cfg), 300);
    }

    #[test]
    fn delivery_ratio_and_cost() {
        let mut q = Quality::default();
        assert_eq!(q.delivery_ratio(), None);
        assert_eq!(q.cost(30), 30);
        q.sample(100);
        for i in 0..10 {
            if i == 1 {
                q.failure();
            } else {
                q.success();
            }
        }
        assert_eq!(q.delivery_ratio(), Some(0.9));
        assert_eq!(q.cost(30), 140);
        assert_eq!(q.counters.timeouts, 1);
        for _ in 0..DELIVERY_WINDOW {
            q.success();
        }
        assert_eq!(q.delivery_ratio(), Some(1.0), "old outcomes leave the window");
        q.reset_estimates();
        assert_eq!((q.rtt.smoothed_ms, q.counters.timeouts), (None, 1));
    }

    #[test]
    fn failures_before_the_first_delivery_leave_the_window() {
        let mut q = Quality::default();
        q.failure();
        q.failure();
        assert_eq!(q.delivery_ratio(), Some(0.0), "a route that never delivered shows 0 %");
        q.success();
        assert_eq!(q.delivery_ratio(), Some(1.0));
        assert_eq!(q.counters.timeouts, 2, "still counted as timeouts");
        // Once running, a failure is a failure.
        q.failure();
        assert_eq!(q.delivery_ratio(), Some(0.5));
        q.reset_estimates();
        q.failure();
        q.success();
        assert_eq!(q.delivery_ratio(), Some(1.0), "a re-created route starts afresh");
    }

    #[test]
    fn a_late_probe_reply_is_a_slow_success() {
        let mut q = Quality::default();
        q.success();
        q.sample(5);
        q.failure();
        q.probe_expired(7, 1_000);
        assert_eq!(q.delivery_ratio(), Some(0.5));
        assert_eq!(q.late_reply(8, 1_400), None, "another nonce");
        assert_eq!(q.late_reply(7, 1_400), Some(400));
        assert_eq!(q.delivery_ratio(), Some(1.0));
        assert_eq!(q.rtt.latest_ms, Some(400), "the slow round trip is sampled, so the RTO grows");
        assert_eq!(q.late_reply(7, 1_500), None, "only once");
        let before = q.rto(&RtoConfig::default());
        assert!(before > 250, "rto {before}");
    }
}
