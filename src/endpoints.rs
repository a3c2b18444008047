//! Which broker to talk to, and when to try again.
//!
//! An ordered list of broker endpoints: the venue's local broker first
//! (short connect timeout, typically 2 s), then the cloud. The rules:
//!
//! - A *round* tries the endpoints in order, starting with the preferred one
//!   (index 0). A failed attempt moves on to the next endpoint at once.
//! - When a whole round failed, wait a backoff with *full jitter* — uniform
//!   in `0..=min(cap, base · 2^n)` for the n-th failed round in a row
//!   (defaults base 500 ms, cap 30 s) — then start a new round. Jitter keeps
//!   a venue's devices from reconnecting in lockstep after a broker restart.
//! - A lost connection starts a new round after a jittered delay of the
//!   same kind. A connection that reached CONNACK resets the backoff, unless
//!   it died within `stable_after_ms` (a broker that accepts and then drops
//!   us, e.g. two tabs fighting over one client id, must not cause a tight
//!   reconnect loop).
//! - While connected to a non-preferred endpoint, every `probe_interval_ms`
//!   (default 30 s) the owner is asked to probe the preferred endpoint; when
//!   the probe succeeds, the owner switches back.
//! - [`Endpoints::wake`] (browser `online`, page visible, `pageshow`) resets
//!   the backoff, reconnects at once if waiting, and makes a probe due now.
//!
//! Sans-IO: no sockets here, only decisions; randomness is passed in.

use crate::mqtt::ConfigError;
use crate::rng::Rng;

/// One broker: a WebSocket URL and how long an attempt may take from
/// opening the socket to CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EndpointConfig {
    /// `ws://` or `wss://` URL of the broker's WebSocket listener.
    pub url: String,
    /// Longest time from opening the socket to CONNACK before the attempt
    /// counts as failed (must be > 0).
    pub connect_timeout_ms: u64,
}

impl EndpointConfig {
    /// An endpoint; [`Endpoints::new`] validates it.
    pub fn new(url: impl Into<String>, connect_timeout_ms: u64) -> Self {
        EndpointConfig { url: url.into(), connect_timeout_ms }
    }
}

/// Reconnect pacing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffConfig {
    /// Ceiling of the first jittered delay. Default 500 ms.
    pub base_ms: u64,
    /// Largest ceiling. Default 30 s.
    pub cap_ms: u64,
    /// A connection must live this long to reset the backoff. Default 10 s.
    pub stable_after_ms: u64,
    /// Probe the preferred endpoint this often while on another. Default 30 s.
    pub probe_interval_ms: u64,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        BackoffConfig { base_ms: 500, cap_ms: 30_000, stable_after_ms: 10_000, probe_interval_ms: 30_000 }
    }
}

impl BackoffConfig {
    /// The ceiling of the delay after `n` failed rounds in a row.
    pub fn ceiling(&self, n: u32) -> u64 {
        self.base_ms.saturating_mul(1u64 << n.min(40)).min(self.cap_ms)
    }

    /// A full-jitter delay: uniform in `0..=ceiling(n)`.
    pub fn delay(&self, n: u32, rng: &mut Rng) -> u64 {
        rng.below(self.ceiling(n).saturating_add(1))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Next attempt on `index` at `at`.
    Waiting { index: usize, at: u64 },
    /// The owner is trying `index`.
    Connecting { index: usize },
    /// Connected to `index` since `since`.
    Connected { index: usize, since: u64 },
    Stopped,
}

/// The endpoint chooser. See the module docs for the rules.
#[derive(Debug, Clone)]
pub struct Endpoints {
    list: Vec<EndpointConfig>,
    cfg: BackoffConfig,
    state: State,
    /// Failed rounds (or unstable connections) in a row.
    failures: u32,
    /// `failures` before the current connection reset it.
    failures_before: u32,
    next_probe_at: Option<u64>,
    probing: bool,
    last_delay: Option<u64>,
}

impl Endpoints {
    /// Checks the list (non-empty, ws/wss URLs, non-zero timeouts); the
    /// first attempt, on the preferred endpoint, is due at `now`.
    pub fn new(list: Vec<EndpointConfig>, cfg: BackoffConfig, now: u64) -> Result<Self, ConfigError> {
        if list.is_empty() {
            return Err(ConfigError::NoEndpoints);
        }
        for (index, e) in list.iter().enumerate() {
            if !(e.url.starts_with("ws://") || e.url.starts_with("wss://")) {
                return Err(ConfigError::InvalidUrl { index });
            }
            if e.connect_timeout_ms == 0 {
                return Err(ConfigError::ZeroConnectTimeout { index });
            }
        }
        if cfg.base_ms == 0 || cfg.cap_ms < cfg.base_ms || cfg.probe_interval_ms == 0 {
            return Err(ConfigError::InvalidLimit("backoff needs 0 < base_ms <= cap_ms, probe_interval_ms > 0"));
        }
        Ok(Endpoints {
            list,
            cfg,
            state: State::Waiting { index: 0, at: now },
            failures: 0,
            failures_before: 0,
            next_probe_at: None,
            probing: false,
            last_delay: None,
        })
    }

    /// Every endpoint, in order of preference.
    pub fn list(&self) -> &[EndpointConfig] {
        &self.list
    }

    /// The endpoint at `index` in the list (`None` if out of range).
    pub fn get(&self, index: usize) -> Option<&EndpointConfig> {
        self.list.get(index)
    }

    /// The endpoint we are connected to.
    pub fn connected(&self) -> Option<usize> {
        match self.state {
            State::Connected { index, .. } => Some(index),
            _ => None,
        }
    }

    /// Failed rounds in a row (the backoff exponent).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The last backoff delay drawn (for stats and tests).
    pub fn last_delay(&self) -> Option<u64> {
        self.last_delay
    }

    /// If an attempt is due, the endpoint to try; the state becomes
    /// "connecting" until [`Endpoints::on_connected`] or [`Endpoints::on_failed`].
    pub fn poll_connect(&mut self, now: u64) -> Option<usize> {
        match self.state {
            State::Waiting { index, at } if now >= at => {
                self.state = State::Connecting { index };
                Some(index)
            }
            _ => None,
        }
    }

    /// The attempt reached CONNACK.
    pub fn on_connected(&mut self, now: u64) {
        if let State::Connecting { index } = self.state {
            self.state = State::Connected { index, since: now };
            self.failures_before = self.failures;
            self.failures = 0;
            self.probing = false;
            self.next_probe_at = (index != 0).then(|| now.saturating_add(self.cfg.probe_interval_ms));
        }
    }

    /// The attempt failed (timeout, refused, socket closed before CONNACK).
    pub fn on_failed(&mut self, now: u64, rng: &mut Rng) {
        if let State::Connecting { index } = self.state {
            if index + 1 < self.list.len() {
                self.state = State::Waiting { index: index + 1, at: now };
            } else {
                self.backoff(now, rng);
            }
        }
    }

    /// An established connection was lost: a new round after a jittered delay.
    pub fn on_disconnected(&mut self, now: u64, rng: &mut Rng) {
        if let State::Connected { since, .. } = self.state {
            if now.saturating_sub(since) < self.cfg.stable_after_ms {
                self.failures = self.failures_before.saturating_add(1);
            }
            self.probing = false;
            self.next_probe_at = None;
            self.backoff(now, rng);
        }
    }

    /// Leave the current endpoint for the preferred one at once (after a
    /// successful probe).
    pub fn switch_to_preferred(&mut self, now: u64) {
        if let State::Connected { .. } = self.state {
            self.state = State::Waiting { index: 0, at: now };
            self.failures = 0;
            self.probing = false;
            self.next_probe_at = None;
        }
    }

    /// The network came back or the page became visible: reset the
    /// backoff, retry at once (from the preferred endpoint) if waiting, and
    /// make a probe of the preferred endpoint due now if on another one.
    pub fn wake(&mut self, now: u64) {
        self.failures = 0;
        match self.state {
            State::Waiting { .. } => self.state = State::Waiting { index: 0, at: now },
            State::Connected { index, .. } if index != 0 && !self.probing => self.next_probe_at = Some(now),
            _ => {}
        }
    }

    /// If a probe of the preferred endpoint is due, its index; report the
    /// outcome with [`Endpoints::on_probe_result`].
    pub fn poll_probe(&mut self, now: u64) -> Option<usize> {
        match (self.state, self.next_probe_at) {
            (State::Connected { index, .. }, Some(at)) if index != 0 && !self.probing && now >= at => {
                self.probing = true;
                Some(0)
            }
            _ => None,
        }
    }

    /// `true` = the preferred endpoint answered: call
    /// [`Endpoints::switch_to_preferred`]. `false` = probe again later.
    pub fn on_probe_result(&mut self, ok: bool, now: u64) {
        if !self.probing {
            return;
        }
        self.probing = false;
        if !ok {
            if let State::Connected { .. } = self.state {
                self.next_probe_at = Some(now.saturating_add(self.cfg.probe_interval_ms));
            }
        }
    }

    /// No reconnects any more.
    pub fn stop(&mut self) {
        self.state = State::Stopped;
        self.probing = false;
        self.next_probe_at = None;
    }

    /// The next instant [`Endpoints::poll_connect`] or
    /// [`Endpoints::poll_probe`] may return something.
    pub fn poll_timeout(&self) -> Option<u64> {
        match self.state {
            State::Waiting { at, .. } => Some(at),
            State::Connected { index, .. } if index != 0 && !self.probing => self.next_probe_at,
            _ => None,
        }
    }

    fn backoff(&mut self, now: u64, rng: &mut Rng) {
        let delay = self.cfg.delay(self.failures, rng);
        self.failures = self.failures.saturating_add(1);
        self.last_delay = Some(delay);
        self.state = State::Waiting { index: 0, at: now.saturating_add(delay) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two() -> Endpoints {
        let list = vec![EndpointConfig::new("ws://local:9001", 2_000), EndpointConfig::new("wss://cloud/mqtt", 10_000)];
        Endpoints::new(list, BackoffConfig::default(), 0).expect("valid")
    }

    #[test]
    fn config_is_checked() {
        let cfg = BackoffConfig::default();
        assert_eq!(Endpoints::new(vec![], cfg, 0).err(), Some(ConfigError::NoEndpoints));
        let bad = vec![EndpointConfig::new("http://x", 1)];
        assert_eq!(Endpoints::new(bad, cfg, 0).err(), Some(ConfigError::InvalidUrl { index: 0 }));
        let zero = vec![EndpointConfig::new("ws://x", 0)];
        assert_eq!(Endpoints::new(zero, cfg, 0).err(), Some(ConfigError::ZeroConnectTimeout { index: 0 }));
    }

    #[test]
    fn failover_then_backoff_round() {
        let mut rng = Rng::new(1);
        let mut e = two();
        assert_eq!(e.poll_timeout(), Some(0));
        assert_eq!(e.poll_connect(0), Some(0));
        assert_eq!(e.poll_connect(0), None, "one attempt at a time");
        e.on_failed(2_000, &mut rng);
        assert_eq!(e.poll_connect(2_000), Some(1), "next endpoint at once");
        e.on_failed(3_000, &mut rng);
        let at = e.poll_timeout().expect("waiting");
        assert!((3_000..=3_500).contains(&at), "{at}");
        assert_eq!(e.poll_connect(at), Some(0), "new round starts at the preferred endpoint");
    }

    #[test]
    fn backoff_grows_within_bounds_and_is_jittered() {
        let cfg = BackoffConfig::default();
        // Bounds hold for every draw; the spread shows real jitter.
        for n in 0..12u32 {
            let ceiling = cfg.ceiling(n);
            assert_eq!(ceiling, (500u64 << n).min(30_000));
            let mut rng = Rng::new(u64::from(n) + 100);
            let draws: Vec<u64> = (0..400).map(|_| cfg.delay(n, &mut rng)).collect();
            assert!(draws.iter().all(|d| *d <= ceiling));
            let mean = draws.iter().sum::<u64>() as f64 / draws.len() as f64;
            assert!(mean > 0.35 * ceiling as f64 && mean < 0.65 * ceiling as f64, "n={n} mean={mean}");
            let (min, max) = (draws.iter().min().copied(), draws.iter().max().copied());
            assert!(min < Some(ceiling / 10) && max > Some(ceiling * 9 / 10), "spread n={n}");
        }
        // Driving rounds: the ceiling doubles per failed round up to the cap.
        let mut e = Endpoints::new(vec![EndpointConfig::new("ws://a", 100)], cfg, 0).expect("valid");
        let mut rng = Rng::new(9);
        let mut now = 0;
        for n in 0..10u32 {
            assert_eq!(e.poll_connect(now), Some(0));
            e.on_failed(now, &mut rng);
            let d = e.last_delay().expect("delay drawn");
            assert!(d <= cfg.ceiling(n), "round {n}: {d}");
            assert_eq!(e.failures(), n + 1);
            now += d;
        }
    }

    #[test]
    fn success_and_wake_reset_backoff() {
        let mut rng = Rng::new(5);
        let mut e = Endpoints::new(vec![EndpointConfig::new("ws://a", 100)], BackoffConfig::default(), 0).expect("valid");
        let mut now = 0;
        for _ in 0..6 {
            assert_eq!(e.poll_connect(now), Some(0));
            e.on_failed(now, &mut rng);
            now = e.poll_timeout().expect("waiting");
        }
        assert_eq!(e.failures(), 6);
        // Wake: retry now, backoff reset.
        e.wake(now.saturating_sub(1_000).max(1));
        assert_eq!(e.failures(), 0);
        let at = e.poll_timeout().expect("waiting");
        assert!(at <= now);
        // Success, a long-lived connection, then loss: a small delay.
        assert_eq!(e.poll_connect(at), Some(0));
        for _ in 0..3 {
            e.on_failed(at, &mut rng);
            assert_eq!(e.poll_connect(e.poll_timeout().expect("w")), Some(0));
        }
        e.on_connected(100_000);
        assert_eq!(e.failures(), 0);
        e.on_disconnected(200_000, &mut rng);
        assert!(e.last_delay().expect("delay") <= 500);
        // A connection that dies at once does not reset the backoff.
        assert_eq!(e.poll_connect(300_000), Some(0));
        e.on_failed(300_000, &mut rng);
        e.on_failed(300_000, &mut rng); // ignored: not connecting
        let f = e.failures();
        assert_eq!(e.poll_connect(e.poll_timeout().expect("w")), Some(0));
        e.on_connected(400_000);
        e.on_disconnected(401_000, &mut rng);
        assert_eq!(e.failures(), f + 2, "unstable connection keeps growing the backoff");
    }

    #[test]
    fn probe_and_switch_back() {
        let mut rng = Rng::new(2);
        let mut e = two();
        assert_eq!(e.poll_connect(0), Some(0));
        e.on_failed(2_000, &mut rng);
        assert_eq!(e.poll_connect(2_000), Some(1));
        e.on_connected(2_100);
        assert_eq!(e.poll_timeout(), Some(32_100));
        assert_eq!(e.poll_probe(32_099), None);
        assert_eq!(e.poll_probe(32_100), Some(0));
        assert_eq!(e.poll_probe(32_100), None, "one probe at a time");
        e.on_probe_result(false, 34_000);
        assert_eq!(e.poll_timeout(), Some(64_000));
        e.wake(40_000);
        assert_eq!(e.poll_probe(40_000), Some(0), "wake makes a probe due now");
        e.on_probe_result(true, 40_500);
        e.switch_to_preferred(40_500);
        assert_eq!(e.poll_connect(40_500), Some(0));
        e.on_connected(40_600);
        assert_eq!(e.connected(), Some(0));
        assert_eq!(e.poll_timeout(), None, "no probes on the preferred endpoint");
    }
}
