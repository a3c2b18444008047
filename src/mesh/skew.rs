//! Is this device's clock far from the venue's? (issue #16)
//!
//! A device whose wall clock is minutes off drops out silently: its
//! heartbeats look stale to everyone (`max_event_age_ms`), or everyone's look
//! stale to it. Each signed heartbeat carries its sender's HLC, which on a
//! LAN is sent a few milliseconds before it arrives, so `remote wall − our
//! wall` is that sender's clock offset from ours. The median over the
//! senders heard recently is the venue's offset from us: one device (or one
//! forger with the key) far off cannot move it, and when it is far from
//! zero it is *our* clock that is off. The node reports it (`ClockSkew`
//! event, stats) so the app can tell the user, instead of vanishing.


/// Senders whose offset is remembered (the most recently heard win).
const MAX_SAMPLES: usize = 64;

/// Per-sender clock offsets and whether their median is beyond a bound.
#[derive(Debug, Clone, Default)]
pub(super) struct SkewCheck {
    /// sender → (offset ms, when heard: monotonic ms).
    samples: crate::vecmap::VecMap<String, (i64, u64)>,
    /// The state last reported (`true`: skewed).
    reported: bool,
}

impl SkewCheck {
    /// A heartbeat from `sender` stamped `remote_wall_ms` arrived at `now_wall`.
    pub(super) fn observe(&mut self, sender: &str, remote_wall_ms: u64, now_wall: u64, now_mono: u64) {
        // Wall clocks are ms since 1970, far below i64::MAX: plain i64 maths.
        let offset = (remote_wall_ms as i64).saturating_sub(now_wall as i64);
        if self.samples.len() >= MAX_SAMPLES && !self.samples.contains_key(sender) {
            if let Some(oldest) = self.samples.iter().min_by_key(|(_, (_, at))| *at).map(|(k, _)| k.clone()) {
                self.samples.remove(&oldest);
            }
        }
        self.samples.insert(sender.to_string(), (offset, now_mono));
    }

    /// The median offset (ms, positive: the venue is ahead of us) of the
    /// senders heard within `window_ms`; `None` without any.
    pub(super) fn offset(&self, now_mono: u64, window_ms: u64) -> Option<i64> {
        let mut v: Vec<i64> =
            self.samples.values().filter(|(_, at)| now_mono.saturating_sub(*at) <= window_ms).map(|(o, _)| *o).collect();
        if v.is_empty() {
            return None;
        }
        crate::outbox::sort::sort(&mut v);
        let n = v.len();
        Some(if n % 2 == 1 { v[n / 2] } else { v[n / 2 - 1] / 2 + v[n / 2] / 2 })
    }

    /// `Some(skewed)` when the state changed since the last call: skewed
    /// when the median offset is beyond `bound_ms` either way.
    pub(super) fn check(&mut self, now_mono: u64, window_ms: u64, bound_ms: u64) -> Option<(bool, i64)> {
        let offset = self.offset(now_mono, window_ms)?;
        let skewed = offset.unsigned_abs() > bound_ms;
        (skewed != self.reported).then(|| {
            self.reported = skewed;
            (skewed, offset)
        })
    }

    /// Whether the last reported state is skewed.
    pub(super) fn skewed(&self) -> bool {
        self.reported
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_ignores_one_device_far_off() {
        let mut s = SkewCheck::default();
        s.observe("a", 1_000_010, 1_000_000, 0);
        s.observe("b", 999_995, 1_000_000, 0);
        s.observe("liar", 1_055_000, 1_000_000, 0);
        assert_eq!(s.offset(0, 60_000), Some(10));
        assert_eq!(s.check(0, 60_000, 30_000), None, "not skewed, nothing to report");
    }

    #[test]
    fn a_device_far_behind_the_venue_finds_out_and_recovers() {
        let mut s = SkewCheck::default();
        // Our clock is 200 s behind: every peer looks 200 s ahead.
        for (i, p) in ["a", "b", "c"].iter().enumerate() {
            s.observe(p, 1_200_000 + i as u64, 1_000_000, 10);
        }
        assert_eq!(s.check(10, 60_000, 30_000), Some((true, 200_001)));
        assert!(s.skewed());
        assert_eq!(s.check(20, 60_000, 30_000), None, "reported once");
        // Clock fixed: fresh samples near zero.
        for p in ["a", "b", "c"] {
            s.observe(p, 2_000_000, 2_000_000, 100);
        }
        assert_eq!(s.check(100, 60_000, 30_000), Some((false, 0)));
        // Samples older than the window do not count.
        assert_eq!(s.offset(100 + 60_001, 60_000), None);
    }

    #[test]
    fn samples_are_bounded() {
        let mut s = SkewCheck::default();
        for i in 0..1_000u64 {
            s.observe(&format!("d{i}"), 0, 0, i);
        }
        assert_eq!(s.samples.len(), MAX_SAMPLES);
        assert!(s.samples.contains_key("d999") && !s.samples.contains_key("d0"));
    }
}
