//! A circuit breaker for one route to one peer.
//!
//! * **Closed**: traffic flows. Each transmission ends in a success (ack or
//!   probe reply) or a failure (its timeout). The breaker **opens** after
//!   [`BreakerConfig::failures`] consecutive failures (default 3), or when
//!   at least [`BreakerConfig::loss_min`] of the last
//!   [`BreakerConfig::loss_window`] outcomes (default 8 of 16) include more
//!   than [`BreakerConfig::loss_pct`] % failures (default 50 %).
//! * **Open** until `now + backoff`: the route carries nothing. The backoff
//!   starts at [`BreakerConfig::open_ms`] (1 s) and doubles with each
//!   reopening up to [`BreakerConfig::open_max_ms`] (30 s); it starts over
//!   after [`BreakerConfig::stable`] successes in a row while closed.
//! * **HalfOpen** after the backoff: exactly one probe may go out; its
//!   success closes the breaker (with a fresh loss window), its failure
//!   reopens it with the doubled backoff.
//!
//! Outcomes of transmissions made before the breaker opened may arrive while
//! it is open; they are ignored (the half-open probe decides). Hearing from
//! the peer on the route while open ([`Breaker::wake`]) half-opens it at
//! once: a peer that reconnected need not wait out the backoff. A route that
//! is re-created (a new data channel, a new broker connection) starts closed.

/// Thresholds; [`Default`] gives the documented values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker.
    pub failures: u32,
    /// Outcomes remembered for the loss rule (1..=32).
    pub loss_window: u32,
    /// Outcomes needed before the loss rule applies.
    pub loss_min: u32,
    /// Loss above this percentage opens the breaker.
    pub loss_pct: u32,
    /// First open period, ms.
    pub open_ms: u64,
    /// Longest open period, ms.
    pub open_max_ms: u64,
    /// Successes in a row (closed) after which the backoff starts over.
    pub stable: u32,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig { failures: 3, loss_window: 16, loss_min: 8, loss_pct: 50, open_ms: 1_000, open_max_ms: 30_000, stable: 10 }
    }
}

/// The breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BreakerState {
    /// Traffic flows.
    Closed,
    /// Nothing is sent until `until` (monotonic ms).
    Open {
        /// End of the open period.
        until: u64,
    },
    /// One probe may go out; `probing` once it has.
    HalfOpen {
        /// The probe is out.
        probing: bool,
    },
}

impl BreakerState {
    /// `closed`, `open` or `half-open` (for stats).
    pub fn name(&self) -> &'static str {
        match self {
            BreakerState::Closed => "closed",
            BreakerState::Open { .. } => "open",
            BreakerState::HalfOpen { .. } => "half-open",
        }
    }
}

/// One route's breaker.
#[derive(Debug, Clone)]
pub struct Breaker {
    cfg: BreakerConfig,
    state: BreakerState,
    consecutive: u32,
    /// Failure bits of the last `window_len` outcomes (bit 0 = newest).
    window: u32,
    window_len: u32,
    /// Openings since the backoff last started over.
    opens: u32,
    successes: u32,
    trips: u64,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(cfg: BreakerConfig) -> Breaker {
        let loss_window = cfg.loss_window.clamp(1, 32);
        Breaker {
            cfg: BreakerConfig { loss_window, ..cfg },
            state: BreakerState::Closed,
            consecutive: 0,
            window: 0,
            window_len: 0,
            opens: 0,
            successes: 0,
            trips: 0,
        }
    }

    /// Current state (an elapsed open period shows as half-open only after
    /// [`Breaker::handle_timeout`]).
    pub fn state(&self) -> BreakerState {
        self.state
    }

    /// Whether ordinary traffic may use the route.
    pub fn allows_traffic(&self) -> bool {
        self.state == BreakerState::Closed
    }

    /// Failures in a row (0 after any success); the router avoids a route
    /// with failures while another one is clean.
    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive
    }

    /// Times the breaker opened.
    pub fn trips(&self) -> u64 {
        self.trips
    }

    /// When the open period ends.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            BreakerState::Open { until } => Some(until),
            _ => None,
        }
    }

    /// Open → half-open once the period is over. Returns the new state when
    /// it changed.
    pub fn handle_timeout(&mut self, now: u64) -> Option<BreakerState> {
        match self.state {
            BreakerState::Open { until } if now >= until => self.set(BreakerState::HalfOpen { probing: false }),
            _ => None,
        }
    }

    /// Open → half-open now: the peer was just heard on this route, so the
    /// probe need not wait for the rest of the backoff.
    pub fn wake(&mut self) -> Option<BreakerState> {
        match self.state {
            BreakerState::Open { .. } => self.set(BreakerState::HalfOpen { probing: false }),
            _ => None,
        }
    }

    /// Half-open and its probe not yet sent.
    pub fn wants_probe(&self) -> bool {
        self.state == BreakerState::HalfOpen { probing: false }
    }

    /// The half-open probe went out.
    pub fn on_probe_sent(&mut self) {
        if self.state == (BreakerState::HalfOpen { probing: false }) {
            self.state = BreakerState::HalfOpen { probing: true };
        }
    }

    /// A transmission or probe on this route succeeded.
    pub fn on_success(&mut self) -> Option<BreakerState> {
        match self.state {
            BreakerState::Closed => {
                self.consecutive = 0;
                self.push(false);
                self.successes += 1;
                if self.successes >= self.cfg.stable {
                    self.opens = 0;
                }
                None
            }
            BreakerState::HalfOpen { .. } => {
                self.consecutive = 0;
                self.window = 0;
                self.window_len = 0;
                self.successes = 1;
                self.set(BreakerState::Closed)
            }
            BreakerState::Open { .. } => None,
        }
    }

    /// A transmission or probe on this route timed out.
    pub fn on_failure(&mut self, now: u64) -> Option<BreakerState> {
        match self.state {
            BreakerState::Closed => {
                self.consecutive += 1;
                self.successes = 0;
                self.push(true);
                let lossy = self.window_len >= self.cfg.loss_min
                    && self.window.count_ones() * 100 > self.cfg.loss_pct * self.window_len;
                if self.consecutive >= self.cfg.failures || lossy {
                    self.open(now)
                } else {
                    None
                }
            }
            BreakerState::HalfOpen { .. } => self.open(now),
            BreakerState::Open { .. } => None,
        }
    }

    /// The route was re-created: start closed with a clean history.
    pub fn reset(&mut self) -> Option<BreakerState> {
        let trips = self.trips;
        *self = Breaker { trips, ..Breaker::new(self.cfg) };
        None
    }

    fn open(&mut self, now: u64) -> Option<BreakerState> {
        let shift = self.opens.min(20);
        let period = self.cfg.open_ms.saturating_mul(1 << shift).min(self.cfg.open_max_ms);
        self.opens += 1;
        self.trips += 1;
        self.successes = 0;
        self.set(BreakerState::Open { until: now.saturating_add(period) })
    }

    fn push(&mut self, failed: bool) {
        let mask = if self.cfg.loss_window == 32 { u32::MAX } else { (1 << self.cfg.loss_window) - 1 };
        self.window = ((self.window << 1) | u32::from(failed)) & mask;
        self.window_len = (self.window_len + 1).min(self.cfg.loss_window);
    }

    fn set(&mut self, s: BreakerState) -> Option<BreakerState> {
        if self.state == s {
            return None;
        }
        self.state = s;
        Some(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b() -> Breaker {
        Breaker::new(BreakerConfig::default())
    }

    #[test]
    fn opens_after_consecutive_failures_and_half_opens_after_backoff() {
        let mut br = b();
        assert_eq!(br.on_failure(0), None);
        assert_eq!(br.on_failure(10), None);
        assert_eq!(br.on_failure(20), Some(BreakerState::Open { until: 1_020 }));
        assert!(!br.allows_traffic());
        assert_eq!(br.poll_timeout(), Some(1_020));
        assert_eq!(br.handle_timeout(1_019), None);
        assert_eq!(br.handle_timeout(1_020), Some(BreakerState::HalfOpen { probing: false }));
        assert!(br.wants_probe());
        br.on_probe_sent();
        assert!(!br.wants_probe() && !br.allows_traffic());
        assert_eq!(br.on_success(), Some(BreakerState::Closed));
        assert!(br.allows_traffic());
        assert_eq!(br.trips(), 1);
    }

    #[test]
    fn backoff_doubles_to_the_cap_and_starts_over_when_stable() {
        let mut br = b();
        let mut now = 0;
        let mut periods = vec![];
        for _ in 0..3 {
            br.on_failure(now);
            br.on_failure(now);
            br.on_failure(now);
        }
        // first opening
        let BreakerState::Open { until } = br.state() else { panic!() };
        periods.push(until - now);
        for _ in 0..7 {
            now = br.poll_timeout().unwrap();
            br.handle_timeout(now);
            br.on_probe_sent();
            br.on_failure(now); // the probe failed: reopen, doubled
            periods.push(br.poll_timeout().unwrap() - now);
        }
        assert_eq!(periods, [1_000, 2_000, 4_000, 8_000, 16_000, 30_000, 30_000, 30_000]);
        // recover, then stay healthy: the backoff starts over
        now = br.poll_timeout().unwrap();
        br.handle_timeout(now);
        br.on_success();
        for _ in 0..10 {
            br.on_success();
        }
        for _ in 0..3 {
            br.on_failure(now);
        }
        assert_eq!(br.poll_timeout(), Some(now + 1_000));
    }

    #[test]
    fn opens_on_loss_over_the_window() {
        let mut br = b();
        // alternate: never 3 in a row, but 50 % loss is not above 50 %
        for _ in 0..8 {
            br.on_success();
            br.on_failure(0);
        }
        assert!(br.allows_traffic());
        // two failures, one success: 66 % loss over the window
        let mut opened = false;
        for _ in 0..6 {
            opened |= br.on_failure(0).is_some();
            opened |= br.on_failure(0).is_some();
            br.on_success();
        }
        assert!(opened);
    }

    #[test]
    fn late_outcomes_while_open_are_ignored_and_reset_closes() {
        let mut br = b();
        for _ in 0..3 {
            br.on_failure(5);
        }
        assert_eq!(br.on_success(), None);
        assert_eq!(br.on_failure(6), None);
        assert_eq!(br.state(), BreakerState::Open { until: 1_005 });
        assert_eq!(br.wake(), Some(BreakerState::HalfOpen { probing: false }));
        assert_eq!(br.wake(), None);
        br.reset();
        assert!(br.allows_traffic());
        assert_eq!(br.consecutive_failures(), 0);
        assert_eq!(br.trips(), 1);
        assert_eq!(BreakerState::HalfOpen { probing: true }.name(), "half-open");
    }
}
