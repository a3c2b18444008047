//! How far behind this page's receive path is (issue #16).
//!
//! The browser runs its tasks in order: under a flood (2,000 fake peers)
//! the socket's message tasks pile up and everything behind them — a
//! peer's heartbeat, the shell's inbox turns, the node's own timer — runs
//! up to 1–1.5 s late. The node cannot see that queue, but it can time a
//! message that went through it: its own heartbeat, which the broker sends
//! back (MQTT 3.1.1 has no "no local"). Sent at `t`, handled at `now`: the
//! heartbeats of its peers sent since `now − lag` are still queued behind
//! it, and the election must not take their absence for silence
//! ([`Election::handle_receive_lag`](crate::election::Election::handle_receive_lag)).
//! Nor while a heartbeat sent more than `I/2` ago has not come back yet
//! ([`Election::set_echo_pending`](crate::election::Election::set_echo_pending)):
//! a backlog that grows fast delays the echo that would measure it.

use super::MeshNode;

/// Own heartbeats remembered until their echo (a few intervals' worth).
const ECHOES: usize = 16;

/// The key of one sent envelope: the end of its signature (unique per
/// message; no parsing needed for our own echo).
fn key(payload: &[u8]) -> Option<[u8; 8]> {
    payload.get(payload.len().checked_sub(8)?..)?.try_into().ok()
}

impl MeshNode {
    /// The broker link went down: no echo is coming.
    pub(super) fn echoes_lost(&mut self) {
        self.echoes.clear();
        self.echo_seen = false;
        self.election.set_echo_pending(None);
    }

    /// Tells the election since when an echo is outstanding — once this
    /// link has shown that it sends our heartbeats back at all (a broker or
    /// a test harness that does not would otherwise look like a page
    /// forever behind).
    fn report_pending(&mut self) {
        let pending = self.echoes.front().map(|e| e.1).filter(|_| self.echo_seen);
        self.election.set_echo_pending(pending);
    }

    /// An own heartbeat left for the broker now (monotonic `now`).
    pub(super) fn heartbeat_sent(&mut self, payload: &[u8], now: u64) {
        let Some(k) = key(payload) else { return };
        if self.echoes.len() >= ECHOES {
            self.echoes.pop_front();
        }
        self.echoes.push_back((k, now));
        self.report_pending();
    }

    /// The broker sent one of our heartbeats back: how late, to the election.
    pub(super) fn heartbeat_echo(&mut self, payload: &[u8], now: u64) {
        let Some(k) = key(payload) else { return };
        let Some(pos) = self.echoes.iter().position(|(e, _)| *e == k) else { return };
        let sent = self.echoes[pos].1;
        // Older ones will not come back any more (QoS 0, in order).
        self.echoes.drain(..=pos);
        self.echo_seen = true;
        self.report_pending();
        let lag = now.saturating_sub(sent);
        self.receive_lag = lag;
        self.receive_lag_max = self.receive_lag_max.max(lag);
        self.election.handle_receive_lag(lag, now);
    }
}
