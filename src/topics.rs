//! The MQTT topic layout of one venue's mesh, and parsing topics back.
//!
//! Everything lives under `vm/{venue}/` (one venue = one shop, salon or
//! festival site; broker ACLs are per venue):
//!
//! | topic | QoS | retained | payload |
//! |---|---|---|---|
//! | `vm/{venue}/presence/{device}` | 1 | yes | PRESENCE envelope, `Join` body; **empty** = cleared (the device's Last Will, or its clean leave) |
//! | `vm/{venue}/presence/{device}` | 1 | no | PRESENCE envelope, `Leave` body (clean leave, just before the clear) |
//! | `vm/{venue}/hub` | 1 | yes | HUB_CLAIM envelope |
//! | `vm/{venue}/hb/{device}` | 0 | no | HEARTBEAT envelope |
//! | `vm/{venue}/dev/{device}/rep` · `/ack` | 0 | no | REPLICATE_COMMAND / SYNC_ACK for `device` (end-to-end acks, so no PUBACK) |
//! | `vm/{venue}/dev/{device}/msg` | 1 / 0 | no | APP_MESSAGE data and acks, PROBE, PROBE_REPLY for `device` (`PROTOCOL.md` Part 5) |
//! | `vm/{venue}/dev/{device}/rtc` | 1 | no | RTC_SIGNAL for `device` (WebRTC signalling) |
//! | `vm/{venue}/cloud` | 1 | no | CLOUD_ACK (from the ingest, or a hub whose upload hook succeeded) |
//! | `vm/{venue}/up` | 1 | no | UPLOAD batches from the hub to the ingest |
//! | `vm/{venue}/crl` | 1 | yes | the newest revocation list, raw (PROTOCOL.md Part 6 §4) |
//! | `vm/{venue}/state` | 1 | no | STATE envelopes for every device (`PROTOCOL.md` Part 7: write batches, checksums) |
//! | `vm/{venue}/topic/{name}` | 1 | no | APP_MESSAGE data of a room too big to mesh (Part 5) |
//!
//! Venue and device ids are envelope ids ([`crate::envelope::is_valid_id`]:
//! 1–64 bytes of `A-Z a-z 0-9 . _ -`), so they never contain `/`, `+` or `#`
//! and every id is exactly one topic level. An app topic name is one or more
//! levels, each such an id. [`parse`] accepts exactly these shapes and
//! returns a typed error for anything else; it never panics.

use crate::envelope::is_valid_id;
use core::fmt;

/// First level of every mesh topic.
pub const ROOT: &str = "vm";
/// Most levels an app topic name may have (`topic/a/b/c/d/e/f/g/h`).
pub const MAX_APP_LEVELS: usize = 8;

/// `vm/{venue}/presence/{device}`: the device's retained presence.
pub fn presence(venue: &str, device: &str) -> String {
    format!("{ROOT}/{venue}/presence/{device}")
}

/// `vm/{venue}/hub`: the retained hub claim.
pub fn hub(venue: &str) -> String {
    format!("{ROOT}/{venue}/hub")
}

/// `vm/{venue}/hb/{device}`: the device's heartbeats.
pub fn heartbeat(venue: &str, device: &str) -> String {
    format!("{ROOT}/{venue}/hb/{device}")
}

/// `vm/{venue}/crl`: the retained revocation list (raw, not an envelope).
pub fn crl(venue: &str) -> String {
    format!("{ROOT}/{venue}/crl")
}

/// `vm/{venue}/state`: shared-state broadcasts (write batches, checksums)
/// for every device of the venue.
pub fn state(venue: &str) -> String {
    format!("{ROOT}/{venue}/state")
}

/// `vm/{venue}/cloud`: cloud acknowledgements for every holder.
pub fn cloud(venue: &str) -> String {
    format!("{ROOT}/{venue}/cloud")
}

/// `vm/{venue}/up`: the hub's upload batches, read by the ingest.
pub fn upstream(venue: &str) -> String {
    format!("{ROOT}/{venue}/up")
}

/// `vm/{venue}/dev/{device}/rep`: replication batches for `device`.
pub fn replicate(venue: &str, device: &str) -> String {
    format!("{ROOT}/{venue}/dev/{device}/rep")
}

/// `vm/{venue}/dev/{device}/ack`: acks for `device`.
pub fn ack(venue: &str, device: &str) -> String {
    format!("{ROOT}/{venue}/dev/{device}/ack")
}

/// `vm/{venue}/dev/{device}/msg`: routed messages for `device` (data,
/// acks, probes; `PROTOCOL.md` Part 5).
pub fn msg(venue: &str, device: &str) -> String {
    format!("{ROOT}/{venue}/dev/{device}/msg")
}

/// `vm/{venue}/dev/{device}/rtc`: WebRTC signalling for `device`.
pub fn rtc(venue: &str, device: &str) -> String {
    format!("{ROOT}/{venue}/dev/{device}/rtc")
}

/// `vm/{venue}/topic/{name}`: data of a room too big to mesh (`PROTOCOL.md`
/// Part 5 §5).
pub fn app(venue: &str, name: &str) -> String {
    format!("{ROOT}/{venue}/topic/{name}")
}

/// The filters the mesh node needs (subscribe each with QoS 1):
/// `vm/{venue}/presence/+`, `vm/{venue}/hub`, `vm/{venue}/hb/+`, for
/// replication `vm/{venue}/dev/{device}/rep`, `…/ack`, `vm/{venue}/cloud`,
/// and for routing `vm/{venue}/dev/{device}/msg`, `…/rtc` (plus
/// `topic/{room}` per joined room: [`crate::mesh::MeshNode::subscriptions`]).
pub fn subscriptions(venue: &str, device: &str) -> Vec<String> {
    vec![
        format!("{ROOT}/{venue}/presence/+"),
        hub(venue),
        format!("{ROOT}/{venue}/hb/+"),
        replicate(venue, device),
        ack(venue, device),
        cloud(venue),
        msg(venue, device),
        rtc(venue, device),
        crl(venue),
    ]
}

/// What a mesh topic is for (ids borrowed from the parsed topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TopicKind<'a> {
    /// `presence/{device}`.
    Presence {
        /// The device the presence belongs to.
        device: &'a str,
    },
    /// `hub`.
    Hub,
    /// `cloud`.
    Cloud,
    /// `up`.
    Upstream,
    /// `crl`: a revocation list.
    Crl,
    /// `state`: shared-state broadcasts (Part 7).
    State,
    /// `hb/{device}`.
    Heartbeat {
        /// The sending device.
        device: &'a str,
    },
    /// `dev/{device}/rep`: replication requests for `device`.
    Replicate {
        /// The addressed device.
        device: &'a str,
    },
    /// `dev/{device}/ack`: replication acks for `device`.
    Ack {
        /// The addressed device.
        device: &'a str,
    },
    /// `dev/{device}/msg`: routed data, acks and probes for `device`.
    Msg {
        /// The addressed device.
        device: &'a str,
    },
    /// `dev/{device}/rtc`: WebRTC signalling for `device`.
    Rtc {
        /// The addressed device.
        device: &'a str,
    },
    /// `topic/{name}`: a room's data; `name` may have several levels.
    App {
        /// The app topic name, e.g. `chat` or `chat/room-1`.
        name: &'a str,
    },
}

impl<'a> TopicKind<'a> {
    /// The device id in the topic, if it has one.
    pub fn device(&self) -> Option<&'a str> {
        match *self {
            TopicKind::Presence { device }
            | TopicKind::Heartbeat { device }
            | TopicKind::Replicate { device }
            | TopicKind::Ack { device }
            | TopicKind::Msg { device }
            | TopicKind::Rtc { device } => Some(device),
            TopicKind::Hub | TopicKind::Cloud | TopicKind::Upstream | TopicKind::Crl | TopicKind::State | TopicKind::App { .. } => None,
        }
    }

    /// The QoS messages on this topic are published with (`None`: the
    /// app's choice).
    pub fn qos(&self) -> Option<u8> {
        match self {
            TopicKind::Heartbeat { .. } => Some(0),
            TopicKind::App { .. } => None,
            _ => Some(1),
        }
    }

    /// Whether the topic holds a retained value (`None`: the app's choice).
    pub fn retained(&self) -> Option<bool> {
        match self {
            TopicKind::Presence { .. } | TopicKind::Hub | TopicKind::Crl => Some(true),
            TopicKind::App { .. } => None,
            _ => Some(false),
        }
    }
}

/// A parsed mesh topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MeshTopic<'a> {
    /// The venue id (second level).
    pub venue: &'a str,
    /// The rest.
    pub kind: TopicKind<'a>,
}

/// Why a topic is not a mesh topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TopicParseError {
    /// The first level is not `vm`.
    NotMesh,
    /// The venue level is not a valid id.
    BadVenue,
    /// The device level is not a valid id.
    BadDevice,
    /// An app topic name level is not a valid id, or there are too many.
    BadName,
    /// The level after the venue (or after `dev/{device}`) is unknown.
    UnknownKind,
    /// Known kind, wrong number of levels.
    WrongShape,
}

impl fmt::Display for TopicParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TopicParseError::NotMesh => "not a vm/ topic",
            TopicParseError::BadVenue => "invalid venue id in topic",
            TopicParseError::BadDevice => "invalid device id in topic",
            TopicParseError::BadName => "invalid app topic name",
            TopicParseError::UnknownKind => "unknown mesh topic kind",
            TopicParseError::WrongShape => "mesh topic has the wrong number of levels",
        })
    }
}

impl std::error::Error for TopicParseError {}

fn device(id: &str) -> Result<&str, TopicParseError> {
    if is_valid_id(id) {
        Ok(id)
    } else {
        Err(TopicParseError::BadDevice)
    }
}

/// Parse a topic name into venue, kind and device. Total: every input gives
/// a value or an error.
pub fn parse(topic: &str) -> Result<MeshTopic<'_>, TopicParseError> {
    let mut levels = topic.splitn(3, '/');
    if levels.next() != Some(ROOT) {
        return Err(TopicParseError::NotMesh);
    }
    let venue = levels.next().ok_or(TopicParseError::WrongShape)?;
    if !is_valid_id(venue) {
        return Err(TopicParseError::BadVenue);
    }
    let rest = levels.next().ok_or(TopicParseError::WrongShape)?;
    if let Some(name) = rest.strip_prefix("topic/") {
        let count = name.split('/').count();
        if count > MAX_APP_LEVELS || !name.split('/').all(is_valid_id) {
            return Err(TopicParseError::BadName);
        }
        return Ok(MeshTopic { venue, kind: TopicKind::App { name } });
    }
    let parts: Vec<&str> = rest.split('/').take(5).collect();
    let kind = match parts.as_slice() {
        ["hub"] => TopicKind::Hub,
        ["cloud"] => TopicKind::Cloud,
        ["up"] => TopicKind::Upstream,
        ["crl"] => TopicKind::Crl,
        ["state"] => TopicKind::State,
        ["presence", d] => TopicKind::Presence { device: device(d)? },
        ["hb", d] => TopicKind::Heartbeat { device: device(d)? },
        ["dev", d, "rep"] => TopicKind::Replicate { device: device(d)? },
        ["dev", d, "ack"] => TopicKind::Ack { device: device(d)? },
        ["dev", d, "msg"] => TopicKind::Msg { device: device(d)? },
        ["dev", d, "rtc"] => TopicKind::Rtc { device: device(d)? },
        ["hub" | "cloud" | "up" | "crl" | "state" | "presence" | "hb" | "dev" | "topic", ..] => return Err(TopicParseError::WrongShape),
        _ => return Err(TopicParseError::UnknownKind),
    };
    Ok(MeshTopic { venue, kind })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mqtt::topic_matches;
    use proptest::prelude::*;

    #[test]
    fn builders_and_parse_agree() {
        let cases = [
            (presence("shop-1", "pos-1"), TopicKind::Presence { device: "pos-1" }),
            (hub("shop-1"), TopicKind::Hub),
            (heartbeat("shop-1", "pos-1"), TopicKind::Heartbeat { device: "pos-1" }),
            (replicate("shop-1", "pos-1"), TopicKind::Replicate { device: "pos-1" }),
            (ack("shop-1", "pos-1"), TopicKind::Ack { device: "pos-1" }),
            (rtc("shop-1", "pos-1"), TopicKind::Rtc { device: "pos-1" }),
            (msg("shop-1", "pos-1"), TopicKind::Msg { device: "pos-1" }),
            (app("shop-1", "chat/room-1"), TopicKind::App { name: "chat/room-1" }),
        ];
        for (topic, kind) in cases {
            assert_eq!(parse(&topic), Ok(MeshTopic { venue: "shop-1", kind }), "{topic}");
        }
        assert_eq!(presence("v", "d"), "vm/v/presence/d");
        assert_eq!(TopicKind::Presence { device: "d" }.device(), Some("d"));
        assert_eq!(TopicKind::Hub.device(), None);
        assert_eq!((TopicKind::Hub.qos(), TopicKind::Hub.retained()), (Some(1), Some(true)));
        let hb = TopicKind::Heartbeat { device: "d" };
        assert_eq!((hb.qos(), hb.retained()), (Some(0), Some(false)));
        assert_eq!(TopicKind::App { name: "x" }.qos(), None);
    }

    #[test]
    fn subscriptions_match_exactly_the_node_topics() {
        let subs = subscriptions("shop-1", "me");
        let hit = |t: &str| subs.iter().any(|f| topic_matches(f, t));
        assert!(hit(&presence("shop-1", "a")) && hit(&hub("shop-1")) && hit(&heartbeat("shop-1", "a")));
        assert!(hit(&replicate("shop-1", "me")) && hit(&ack("shop-1", "me")) && hit(&cloud("shop-1")));
        assert!(!hit(&presence("shop-2", "a")));
        assert!(!hit(&replicate("shop-1", "a")) && !hit(&ack("shop-1", "a")) && !hit(&app("shop-1", "chat")));
        assert!(!hit(&upstream("shop-1")), "devices do not read their own uploads");
        assert_eq!(parse("vm/shop-1/cloud").unwrap().kind, TopicKind::Cloud);
        assert_eq!(parse("vm/shop-1/up").unwrap().kind, TopicKind::Upstream);
        assert_eq!(parse("vm/shop-1/crl").unwrap().kind, TopicKind::Crl);
        assert!(hit(&crl("shop-1")));
        for f in &subs {
            assert!(crate::mqtt::validate_topic_filter(f).is_ok());
        }
    }

    #[test]
    fn errors() {
        use TopicParseError::*;
        let cases: &[(&str, TopicParseError)] = &[
            ("", NotMesh),
            ("vm", WrongShape),
            ("vm/", BadVenue),
            ("xx/v/hub", NotMesh),
            ("vm/v", WrongShape),
            ("vm/a+b/hub", BadVenue),
            ("vm/v/hub/x", WrongShape),
            ("vm/v/presence", WrongShape),
            ("vm/v/presence/", BadDevice),
            ("vm/v/presence/a/b", WrongShape),
            ("vm/v/presence/+", BadDevice),
            ("vm/v/hb/#", BadDevice),
            ("vm/v/dev/d", WrongShape),
            ("vm/v/dev/d/zzz", WrongShape),
            ("vm/v/dev/d:1/rep", BadDevice),
            ("vm/v/topic", WrongShape),
            ("vm/v/topic/", BadName),
            ("vm/v/topic/a//b", BadName),
            ("vm/v/topic/1/2/3/4/5/6/7/8/9", BadName),
            ("vm/v/other", UnknownKind),
            ("vm/v/", UnknownKind),
        ];
        for (topic, err) in cases {
            assert_eq!(parse(topic), Err(*err), "{topic:?}");
        }
        assert!(parse("vm/v/topic/1/2/3/4/5/6/7/8").is_ok());
    }

    proptest! {
        #[test]
        fn parse_never_panics(s in "(vm/)?[a-z/+#:.-]{0,40}") {
            let _ = parse(&s);
        }

        #[test]
        fn parse_any_string_never_panics(s in any::<String>()) {
            let _ = parse(&s);
        }

        #[test]
        fn device_topics_round_trip(v in "[A-Za-z0-9._-]{1,64}", d in "[A-Za-z0-9._-]{1,64}") {
            let (p, h) = (presence(&v, &d), heartbeat(&v, &d));
            prop_assert_eq!(parse(&p).unwrap(), MeshTopic { venue: &v, kind: TopicKind::Presence { device: &d } });
            prop_assert_eq!(parse(&h).unwrap().kind.device(), Some(d.as_str()));
        }
    }
}
