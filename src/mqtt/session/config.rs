//! The session's configuration and its validation.

use crate::mqtt::codec::{DEFAULT_MAX_PACKET_SIZE, MAX_REMAINING_LENGTH};
use crate::mqtt::error::ConfigError;
use crate::mqtt::packet::{Connect, Will};
use crate::mqtt::topic::{validate_topic_name, MAX_STRING_LEN};

/// How the session identifies itself and how much it buffers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Unique per broker; see `PROTOCOL.md` (Part 1) for the convention.
    pub client_id: String,
    /// `false` asks the broker to keep subscriptions and QoS 1/2 state
    /// across connections (needs a stable, non-empty client id).
    pub clean_session: bool,
    /// PINGREQ after this many seconds without sending anything, or without
    /// receiving anything (a dead link is noticed while we keep sending); 0 = off.
    pub keep_alive_secs: u16,
    /// User Name sent in CONNECT (also by endpoint probes).
    pub username: Option<String>,
    /// Sent only together with a username (MQTT 3.1.1 rule).
    pub password: Option<Vec<u8>>,
    /// Published by the broker if this client vanishes.
    pub will: Option<Will>,
    /// QoS 1/2 publishes awaiting their ack at once; the rest wait in the
    /// queue in order. Default 1000.
    pub max_inflight: u16,
    /// Publishes waiting to be sent (not counting in-flight ones); beyond it
    /// `publish` returns [`UsageError::QueueFull`](crate::mqtt::UsageError::QueueFull). Default 10,000.
    pub max_queued: usize,
    /// Bound on one packet, both directions (fixed header included).
    /// Default 1 MiB.
    pub max_packet_size: usize,
    /// PINGREQ after this long without receiving anything, when shorter than
    /// `keep_alive_secs` (`None`: the keepalive). The mesh, whose own
    /// heartbeats loop back every few seconds, sets it below its election's
    /// silence bound: a receive stall (a huge message the broker feeds slowly,
    /// which the browser holds back until it is whole) is then noticed and the
    /// link replaced before peers are wrongly declared gone. It changes
    /// nothing the broker sees (CONNECT still carries `keep_alive_secs`).
    pub recv_silence_ms: Option<u64>,
    /// How long to wait for PINGRESP after a keepalive PINGREQ. Default 5 s.
    pub ping_timeout_ms: u64,
    /// How long to wait for PINGRESP after [`Session::ping_now`](super::Session::ping_now) (page
    /// became visible, network came back). Default 3 s.
    pub wake_ping_timeout_ms: u64,
    /// One PINGREQ when the start-up window after each CONNACK ends
    /// ([`RTT_WARMUP_MS`](crate::mqtt::timing::RTT_WARMUP_MS)): the start-up
    /// round trips are not sampled, and the next keepalive ping may be 30 s
    /// away, so without it the broker RTT (and the Wi-Fi score derived from
    /// it) stays unknown that long. Default off; the browser shell turns it on.
    pub measure_rtt_after_connect: bool,
}

impl SessionConfig {
    /// A clean session with keepalive 30 s and the default limits.
    pub fn new(client_id: impl Into<String>) -> Self {
        SessionConfig {
            client_id: client_id.into(),
            clean_session: true,
            keep_alive_secs: 30,
            username: None,
            password: None,
            will: None,
            max_inflight: 1000,
            max_queued: 10_000,
            max_packet_size: DEFAULT_MAX_PACKET_SIZE,
            recv_silence_ms: None,
            ping_timeout_ms: 5_000,
            wake_ping_timeout_ms: 3_000,
            measure_rtt_after_connect: false,
        }
    }

    /// Checks everything the broker or the codec would reject later.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.client_id.len() > MAX_STRING_LEN {
            return Err(ConfigError::InvalidClientId("longer than 65535 bytes"));
        }
        if self.client_id.contains('\0') {
            return Err(ConfigError::InvalidClientId("contains U+0000"));
        }
        if self.client_id.is_empty() && !self.clean_session {
            return Err(ConfigError::InvalidClientId("empty id needs clean_session"));
        }
        match &self.username {
            Some(u) if u.len() > MAX_STRING_LEN || u.contains('\0') => {
                return Err(ConfigError::InvalidCredentials("username too long or has U+0000"))
            }
            None if self.password.is_some() => {
                return Err(ConfigError::InvalidCredentials("password without username"))
            }
            _ => {}
        }
        if self.password.as_ref().is_some_and(|p| p.len() > MAX_STRING_LEN) {
            return Err(ConfigError::InvalidCredentials("password longer than 65535 bytes"));
        }
        if let Some(w) = &self.will {
            validate_topic_name(&w.topic).map_err(ConfigError::InvalidWill)?;
            if w.payload.len() > MAX_STRING_LEN {
                return Err(ConfigError::InvalidCredentials("Will payload longer than 65535 bytes"));
            }
        }
        if self.max_inflight == 0 || self.max_inflight > 65_000 {
            return Err(ConfigError::InvalidLimit("max_inflight must be 1..=65000"));
        }
        if self.max_queued == 0 {
            return Err(ConfigError::InvalidLimit("max_queued must be > 0"));
        }
        if self.max_packet_size < 128 || self.max_packet_size > MAX_REMAINING_LENGTH + 5 {
            return Err(ConfigError::InvalidLimit("max_packet_size must be 128..=268435460"));
        }
        if self.recv_silence_ms == Some(0) {
            return Err(ConfigError::InvalidLimit("recv_silence_ms must be > 0"));
        }
        if self.ping_timeout_ms == 0 || self.wake_ping_timeout_ms == 0 {
            return Err(ConfigError::InvalidLimit("ping timeouts must be > 0"));
        }
        Ok(())
    }

    pub(super) fn connect_packet(&self) -> Connect {
        Connect {
            clean_session: self.clean_session,
            keep_alive: self.keep_alive_secs,
            client_id: self.client_id.clone(),
            will: self.will.clone(),
            username: self.username.clone(),
            password: self.password.clone(),
        }
    }
}
