//! Quorum replication and the upstream drain (sans-IO).
//!
//! A command's copies leave its origin as soon as its commit starts, as
//! *tentative* copies, in parallel with the origin's own strict commit; the
//! [`Replicator`] copies it to the best-placed peers until
//! `factor` devices hold it (default 3, counting the origin). It is
//! `peer_ack` once the origin's own commit is done **and** a **majority** of
//! `factor` (2 of 3, counting the origin) hold it durably: a replica answers
//! `SYNC_ACK` only after its own IndexedDB commit. A tentative copy is
//! neither uploaded nor forwarded until its origin confirms it
//! ([`RepMsg::Confirm`], sent once the commit is done) — a command whose
//! `enqueue()` rejected is withdrawn instead and never reaches the cloud. The hub
//! drains everything it holds to the cloud in batches, keyed by command id
//! so that retries and new hubs never duplicate; the cloud's `CLOUD_ACK`
//! reaches every holder, which marks the command `cloud_ack` (the outbox
//! purges it after its retention).
//!
//! Placement: the acting hub first (so the hub holds what it must upload),
//! then the other peers by score, highest first. `docs/replication.md` has
//! the rules, the failure cases and what happens with fewer devices than
//! the factor; `PROTOCOL.md` Part 4 has the bytes.

mod replicator;
#[cfg(test)]
mod tests;
pub mod wire;

pub use replicator::{Output, PeerView, ReplicationStats, Replicator, View};
pub use wire::{AckState, Cmd, RepMsg};

/// The largest message, in bytes on the wire, that the replicator means to
/// hand a WebSocket client of the broker in normal operation (see
/// [`Config::batch_max_bytes`]); a single command larger than that still
/// goes, alone.
pub const WS_MESSAGE_BYTES: usize = 4 * 1024;

/// How the hub hands batches to the cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Upstream {
    /// Publish [`RepMsg::Upload`] on the venue's `up` topic; the ingest
    /// answers with a [`RepMsg::CloudAck`] on `cloud`.
    Mqtt,
    /// Give the batch to the app ([`Output::Upload`]); its answer comes back
    /// through [`Replicator::handle_upload_result`].
    Hook,
}

/// Replication and drain settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// Copies wanted, counting the origin (≥ 1). Quorum = `factor / 2 + 1`.
    pub factor: usize,
    /// A replica request unanswered this long is sent again; after
    /// [`Config::max_tries`] the next device in the placement is tried.
    pub ack_timeout_ms: u64,
    /// Sends to one target per command before it is skipped for that command.
    pub max_tries: u32,
    /// The hub uploads at least this often (seed 003: 30 s), and at once when
    /// a full batch is waiting.
    pub drain_interval_ms: u64,
    /// Commands per upload batch and per replication message.
    pub batch_max: usize,
    /// Body bytes per replication message (`REPLICATE`, tentative copies; a
    /// single larger command still goes, alone). 3 KiB, so that with the
    /// largest envelope around it ([`crate::envelope::Limits::max_envelope`]
    /// of an empty body, 751 bytes) and the MQTT header a message stays
    /// within [`WS_MESSAGE_BYTES`]: Mosquitto 2.0 (libwebsockets' default
    /// tx chunk) writes a larger packet to a WebSocket subscriber a ~4 KB
    /// piece per turn of its event loop, and every message behind it on that
    /// connection — heartbeats included — waits. Measured with MQTT.js on
    /// loopback, 1.9 MB to a WebSocket subscriber: 38 × 50 KB 13–21 s,
    /// 475 × 4 KB 0.24–0.56 s (`docs/replication.md`).
    pub batch_max_bytes: usize,
    /// Body bytes per upload batch. Uploads go to the ingest only (a
    /// server, or the app's hook), never to a WebSocket page, so they keep
    /// large batches: one batch is in flight at a time and each waits for the
    /// cloud's answer.
    pub upload_max_bytes: usize,
    /// An upload unanswered this long counts as failed.
    pub upload_timeout_ms: u64,
    /// Upper bound of the upload backoff (1 s doubling).
    pub upload_backoff_max_ms: u64,
    /// A replica that is still not cloud-acked after this long is offered to
    /// the current hub (which answers at once if it knows the cloud has it):
    /// the safety net when the origin and a hub were lost together, or a
    /// `CLOUD_ACK` was missed.
    pub reoffer_after_ms: u64,
    /// How long cloud-acked ids are remembered to answer late requests.
    pub remember_done_ms: u64,
    /// A tentative copy (sent by its origin while its own commit ran, not
    /// confirmed yet) whose origin has been out of the view this long is
    /// promoted to an ordinary replica and uploaded. Its origin may have
    /// reached `peer_ack` with it and then been lost for good: dropping it
    /// could lose an acknowledged command. The cost: if the origin's commit
    /// had failed (`enqueue()` rejected), its withdrawal did not get through
    /// (it is sent at once and answered to every re-ack, every
    /// `ack_timeout_ms`, while the origin is present) and the origin stays
    /// away this long, a rejected command reaches the cloud. An origin that
    /// comes back sooner answers from its IndexedDB (committed: confirmed;
    /// absent: withdrawn).
    pub promote_tentative_after_ms: u64,
    /// Where batches go.
    pub upstream: Upstream,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            factor: 3,
            ack_timeout_ms: 1_500,
            max_tries: 2,
            drain_interval_ms: 30_000,
            batch_max: 200,
            batch_max_bytes: 3 * 1024,
            upload_max_bytes: 192 * 1024,
            upload_timeout_ms: 10_000,
            upload_backoff_max_ms: 60_000,
            reoffer_after_ms: 60_000,
            remember_done_ms: 600_000,
            promote_tentative_after_ms: 120_000,
            upstream: Upstream::Mqtt,
        }
    }
}

impl Config {
    /// Copies that make a command `peer_ack`.
    pub fn quorum(&self) -> usize {
        self.factor.max(1) / 2 + 1
    }

    /// The same settings with every value in a workable range.
    pub fn sanitized(mut self) -> Config {
        self.factor = self.factor.clamp(1, 16);
        self.max_tries = self.max_tries.max(1);
        self.batch_max = self.batch_max.clamp(1, 65_535);
        self.batch_max_bytes = self.batch_max_bytes.clamp(1024, 240 * 1024);
        self.upload_max_bytes = self.upload_max_bytes.clamp(1024, 240 * 1024);
        self.ack_timeout_ms = self.ack_timeout_ms.max(10);
        self.upload_timeout_ms = self.upload_timeout_ms.max(10);
        self.drain_interval_ms = self.drain_interval_ms.max(10);
        self.upload_backoff_max_ms = self.upload_backoff_max_ms.max(1_000);
        self.promote_tentative_after_ms = self.promote_tentative_after_ms.max(self.ack_timeout_ms);
        self
    }
}
