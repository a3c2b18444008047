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
    /// One round trip, ms.
    pub fn sample(&mut self, ms: u64) {
        self.rtt.sample(ms);
    }

    /// A transmission was delivered.
    pub fn success(&mut self) {
        self.push(false);
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
            if i == 0 {
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
}
