//! Hub score: how well a device would serve as the venue's temporary hub.
//!
//! The formula is seed 000's `calculateScore()`, kept term for term so that
//! scores mean the same thing as in the original design:
//!
//! ```text
//! score = base(kind, charging)                      kiosk 1000, POS 750, iPad charging 500,
//!                                                   iPad 250, phone 0, other 0
//!       + min(uptime in whole minutes, 100)         0..=100
//!       + wifi_quality × 10                         wifi_quality in 0..=10 → 0..=100
//!       + (50 if charging else battery% / 2)        0..=50
//! ```
//!
//! Choices the seed left open (all documented in `PROTOCOL.md` (Part 2)):
//!
//! * **POS = 750.** The seed ranks kiosk > iPad charging > iPad > phone and
//!   has no POS. A POS terminal is fixed and on mains like a kiosk, but it is
//!   a staff device in a busy workflow (reloads, logouts, shutdown at close),
//!   so it ranks below a kiosk and above any iPad. With 750 the kinds never
//!   overlap: without battery information (the usual case, see below) a POS
//!   scores 800..=1000, a kiosk 1050..=1250, a charging iPad 550..=750, an
//!   unplugged iPad 250..=500; reported battery levels can only make the
//!   bands touch, never cross. An iPad
//!   running a POS app should report [`DeviceKind::Ipad`]: `Pos` means a
//!   dedicated mains-powered terminal.
//! * **Phone and other = 0**, as in the seed (an iPhone got no base points).
//!   An unknown kind is not trusted to stay up.
//! * **No battery information** (Safari and Firefox have no Battery API): a
//!   kiosk or POS is on mains, so it scores as charging (+50); an iPad, phone
//!   or unknown device scores 0 power points and an iPad gets the
//!   non-charging base. Missing data never raises a mobile device's rank.
//!   Known values always win over these assumptions.
//! * **Uptime** counts whole minutes (the seed divided seconds by 60 with
//!   fractions), so a score changes at most once a minute between heartbeats.
//! * **No Wi-Fi figure**: the browser has no Wi-Fi signal API, so the shell
//!   estimates one from the measured broker round trip and loss with
//!   [`wifi_quality_from_link`]; with nothing measured yet it contributes 0.
//! * **Bad inputs are clamped, never rejected**: NaN counts as unknown,
//!   negatives as 0, values above the range as the maximum.
//!
//! The result is an integer number of milli-points ([`Score`]), so comparing
//! and transmitting it is exact; [`HubKey`] adds the device id for a total
//! order with no ties.

use core::fmt;

/// What kind of device this is; decides the base points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum DeviceKind {
    /// Dedicated customer kiosk: mains-powered, always on, unattended.
    Kiosk,
    /// iPad (or any tablet); base depends on whether it is charging.
    Ipad,
    /// Dedicated POS terminal on mains power.
    Pos,
    /// Phone: mobile, often backgrounded.
    Phone,
    /// Anything else or not configured.
    #[default]
    Other,
}

impl DeviceKind {
    /// Lower-case name, as in the app's configuration and presence messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DeviceKind::Kiosk => "kiosk",
            DeviceKind::Ipad => "ipad",
            DeviceKind::Pos => "pos",
            DeviceKind::Phone => "phone",
            DeviceKind::Other => "other",
        }
    }

    /// Parse a configured name (case-insensitive); anything unknown is
    /// [`DeviceKind::Other`] rather than an error, so a typo costs rank, not
    /// the mesh.
    pub fn from_name(name: &str) -> DeviceKind {
        [DeviceKind::Kiosk, DeviceKind::Ipad, DeviceKind::Pos, DeviceKind::Phone]
            .into_iter()
            .find(|k| name.trim().eq_ignore_ascii_case(k.as_str()))
            .unwrap_or(DeviceKind::Other)
    }

    /// One-byte code for binary messages; `0` is `Other`.
    pub fn code(self) -> u8 {
        match self {
            DeviceKind::Other => 0,
            DeviceKind::Kiosk => 1,
            DeviceKind::Ipad => 2,
            DeviceKind::Pos => 3,
            DeviceKind::Phone => 4,
        }
    }

    /// Inverse of [`code`](Self::code); unknown codes are `Other`.
    pub fn from_code(code: u8) -> DeviceKind {
        match code {
            1 => DeviceKind::Kiosk,
            2 => DeviceKind::Ipad,
            3 => DeviceKind::Pos,
            4 => DeviceKind::Phone,
            _ => DeviceKind::Other,
        }
    }

    /// Kinds that are on mains power by nature: without battery information
    /// they are scored as charging.
    pub fn is_mains_powered(self) -> bool {
        matches!(self, DeviceKind::Kiosk | DeviceKind::Pos)
    }
}

/// The inputs of the score, as the shell reads them from the browser (or the
/// app configures them).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceInfo {
    /// Device kind.
    pub kind: DeviceKind,
    /// `BatteryManager.charging`; `None` when the browser has no Battery API.
    pub charging: Option<bool>,
    /// Battery level in percent, 0..=100; `None` when unknown.
    pub battery_percent: Option<f64>,
    /// How long this session has been running, in milliseconds.
    pub uptime_ms: u64,
    /// Network quality 0..=10; `None` when unknown (see
    /// [`wifi_quality_from_link`] for the fallback).
    pub wifi_quality: Option<f64>,
}

/// A hub score in milli-points (1 point = 1000). Integer so that comparing,
/// sending and testing it is exact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Score(u32);

impl Score {
    /// From milli-points (e.g. as received in a heartbeat).
    pub const fn from_milli(milli: u32) -> Score {
        Score(milli)
    }

    /// Milli-points.
    pub const fn milli(self) -> u32 {
        self.0
    }

    /// Points, as the seed's floating-point score.
    pub fn points(self) -> f64 {
        f64::from(self.0) / 1000.0
    }
}

impl fmt::Display for Score {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

/// The score split into its four terms (milli-points each), for stats and
/// for explaining an election to a human.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Breakdown {
    /// Device kind (and, for an iPad, charging).
    pub base: u32,
    /// Whole minutes of uptime, capped at 100.
    pub uptime: u32,
    /// Network quality × 10.
    pub wifi: u32,
    /// 50 if charging, else battery% / 2.
    pub power: u32,
}

impl Breakdown {
    /// The sum of the terms.
    pub fn total(self) -> Score {
        Score(self.base + self.uptime + self.wifi + self.power)
    }
}

/// Highest possible score: kiosk 1000 + uptime 100 + wifi 100 + power 50.
pub const MAX_SCORE: Score = Score(1_250_000);

/// The uptime term's cap, in minutes.
pub const UPTIME_CAP_MINUTES: u64 = 100;

/// `x` clamped into `0..=max`; NaN is "unknown".
fn clamp_known(x: f64, max: f64) -> Option<f64> {
    // max/min, not clamp: with a non-constant bound, clamp's panic message
    // (min > max) links all of float formatting (~10 KB gzip) into the module.
    (!x.is_nan()).then(|| x.max(0.0).min(max))
}

/// Milli-points of `x` points, `x` already in a small non-negative range.
fn milli(x: f64) -> u32 {
    (x * 1000.0).round() as u32
}

/// Each term of the score of `info`.
pub fn breakdown(info: &DeviceInfo) -> Breakdown {
    let charging = info.charging == Some(true);
    let base_points = match info.kind {
        DeviceKind::Kiosk => 1000,
        DeviceKind::Pos => 750,
        DeviceKind::Ipad if charging => 500,
        DeviceKind::Ipad => 250,
        DeviceKind::Phone | DeviceKind::Other => 0,
    };
    let minutes = (info.uptime_ms / 60_000).min(UPTIME_CAP_MINUTES) as u32;
    let wifi = info.wifi_quality.and_then(|q| clamp_known(q, 10.0)).map_or(0, |q| milli(q * 10.0));
    let battery = info.battery_percent.and_then(|b| clamp_known(b, 100.0));
    let power = match (info.charging, battery) {
        (Some(true), _) => 50_000,
        (_, Some(b)) => milli(b / 2.0),
        (Some(false), None) => 0,
        (None, None) if info.kind.is_mains_powered() => 50_000,
        (None, None) => 0,
    };
    Breakdown { base: base_points * 1000, uptime: minutes * 1000, wifi, power }
}

/// The hub score of a device (seed 000 formula, see the module docs).
pub fn score(info: &DeviceInfo) -> Score {
    breakdown(info).total()
}

impl DeviceInfo {
    /// Shorthand for [`score`].
    pub fn score(&self) -> Score {
        score(self)
    }
}

/// Estimate a 0..=10 network quality from the measured round trip to the
/// broker and the loss ratio, for browsers that expose no Wi-Fi figure:
///
/// ```text
/// rtt_part  = 10 × clamp((520 − rtt_ms) / 500, 0, 1)   ≤ 20 ms → 10, 270 ms → 5, ≥ 520 ms → 0
/// loss_part = 1 − clamp(5 × loss_ratio, 0, 1)          0 % → 1, 10 % → 0.5, ≥ 20 % → 0
/// quality   = rtt_part × loss_part
/// ```
///
/// On a venue LAN a healthy link reaches the local broker in a few
/// milliseconds; a weak Wi-Fi link shows up as retransmissions (hundreds of
/// ms) and loss, and a link losing a fifth of its packets is no use to a
/// hub. Feed a smoothed RTT (e.g. the median of recent probes) and the loss
/// over the same period. An unknown (NaN) RTT gives 0, an unknown loss is
/// taken as total loss: unmeasured never beats measured.
pub fn wifi_quality_from_link(rtt_ms: f64, loss_ratio: f64) -> f64 {
    if rtt_ms.is_nan() || loss_ratio.is_nan() {
        return 0.0;
    }
    let rtt_part = 10.0 * ((520.0 - rtt_ms.max(0.0)) / 500.0).clamp(0.0, 1.0);
    let loss_part = 1.0 - (5.0 * loss_ratio).clamp(0.0, 1.0);
    rtt_part * loss_part
}

/// Total order for choosing a hub: the greater score wins, and between equal
/// scores the greater device id (byte order), so every device that sees the
/// same scores picks the same hub. Compare with `max()`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct HubKey {
    /// The device's score.
    pub score: Score,
    /// The device's id: the tie-breaker.
    pub device: String,
}

impl HubKey {
    /// Bundle a score with its device id.
    pub fn new(score: Score, device: impl Into<String>) -> HubKey {
        HubKey { score, device: device.into() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn info(kind: DeviceKind) -> DeviceInfo {
        DeviceInfo { kind, ..DeviceInfo::default() }
    }

    #[test]
    fn base_points_per_kind() {
        let base = |kind, charging| breakdown(&DeviceInfo { kind, charging, ..info(kind) }).base;
        assert_eq!(base(DeviceKind::Kiosk, None), 1_000_000);
        assert_eq!(base(DeviceKind::Pos, None), 750_000);
        assert_eq!(base(DeviceKind::Ipad, Some(true)), 500_000);
        assert_eq!(base(DeviceKind::Ipad, Some(false)), 250_000);
        assert_eq!(base(DeviceKind::Ipad, None), 250_000, "unknown charging is not charging");
        assert_eq!(base(DeviceKind::Phone, Some(true)), 0);
        assert_eq!(base(DeviceKind::Other, Some(true)), 0);
    }

    #[test]
    fn uptime_counts_whole_minutes_capped_at_100() {
        let up = |ms| breakdown(&DeviceInfo { uptime_ms: ms, ..info(DeviceKind::Phone) }).uptime;
        assert_eq!(up(0), 0);
        assert_eq!(up(59_999), 0);
        assert_eq!(up(60_000), 1000);
        assert_eq!(up(99 * 60_000 + 59_999), 99_000);
        assert_eq!(up(100 * 60_000), 100_000);
        assert_eq!(up(u64::MAX), 100_000);
    }

    #[test]
    fn wifi_term_is_quality_times_ten_clamped() {
        let w = |q| breakdown(&DeviceInfo { wifi_quality: q, ..info(DeviceKind::Phone) }).wifi;
        assert_eq!(w(None), 0);
        assert_eq!(w(Some(0.0)), 0);
        assert_eq!(w(Some(10.0)), 100_000);
        assert_eq!(w(Some(7.25)), 72_500);
        assert_eq!(w(Some(11.0)), 100_000);
        assert_eq!(w(Some(-3.0)), 0);
        assert_eq!(w(Some(f64::NAN)), 0);
        assert_eq!(w(Some(f64::INFINITY)), 100_000);
    }

    #[test]
    fn power_term_charging_battery_and_unknown() {
        let p = |kind, charging, battery| breakdown(&DeviceInfo { kind, charging, battery_percent: battery, ..info(kind) }).power;
        use DeviceKind::*;
        assert_eq!(p(Ipad, Some(true), Some(10.0)), 50_000, "charging beats the level");
        assert_eq!(p(Ipad, Some(false), Some(100.0)), 50_000);
        assert_eq!(p(Ipad, Some(false), Some(0.0)), 0);
        assert_eq!(p(Ipad, Some(false), Some(37.0)), 18_500);
        assert_eq!(p(Ipad, Some(false), None), 0);
        assert_eq!(p(Ipad, None, None), 0, "mobile without Battery API: no points");
        assert_eq!(p(Phone, None, None), 0);
        assert_eq!(p(Other, None, None), 0);
        assert_eq!(p(Kiosk, None, None), 50_000, "kiosk without Battery API is on mains");
        assert_eq!(p(Pos, None, None), 50_000, "POS without Battery API is on mains");
        assert_eq!(p(Kiosk, Some(false), Some(40.0)), 20_000, "known values beat assumptions");
        assert_eq!(p(Ipad, None, Some(80.0)), 40_000);
        assert_eq!(p(Ipad, Some(false), Some(150.0)), 50_000);
        assert_eq!(p(Ipad, Some(false), Some(-1.0)), 0);
        assert_eq!(p(Ipad, Some(false), Some(f64::NAN)), 0);
        assert_eq!(p(Kiosk, None, Some(f64::NAN)), 50_000, "NaN level = no battery info");
    }

    #[test]
    fn worked_example_from_the_docs() {
        // Charging iPad, up 42.5 min, wifi 7.3, battery 64 %: 500 + 42 + 73 + 50.
        let ipad = DeviceInfo {
            kind: DeviceKind::Ipad,
            charging: Some(true),
            battery_percent: Some(64.0),
            uptime_ms: 2_550_000,
            wifi_quality: Some(7.3),
        };
        assert_eq!(score(&ipad), Score::from_milli(665_000));
        assert_eq!(ipad.score().to_string(), "665.000");
        // Same iPad unplugged: 250 + 42 + 73 + 32.
        let unplugged = DeviceInfo { charging: Some(false), ..ipad };
        assert_eq!(score(&unplugged).points(), 397.0);
        // POS, no Battery API, no wifi figure, RTT 70 ms and 2 % loss:
        // wifi = 10 × 0.9 × 0.9 = 8.1 → 750 + 100 + 81 + 50.
        let q = wifi_quality_from_link(70.0, 0.02);
        assert!((q - 8.1).abs() < 1e-9, "{q}");
        let pos = DeviceInfo { kind: DeviceKind::Pos, uptime_ms: 3 * 3_600_000, wifi_quality: Some(q), ..DeviceInfo::default() };
        assert_eq!(score(&pos), Score::from_milli(981_000));
        assert_eq!(MAX_SCORE, score(&DeviceInfo { kind: DeviceKind::Kiosk, charging: Some(true), uptime_ms: u64::MAX, wifi_quality: Some(10.0), battery_percent: None }));
    }

    #[test]
    fn wifi_from_link_formula_and_edges() {
        assert_eq!(wifi_quality_from_link(0.0, 0.0), 10.0);
        assert_eq!(wifi_quality_from_link(20.0, 0.0), 10.0);
        assert_eq!(wifi_quality_from_link(270.0, 0.0), 5.0);
        assert_eq!(wifi_quality_from_link(520.0, 0.0), 0.0);
        assert_eq!(wifi_quality_from_link(10_000.0, 0.0), 0.0);
        assert_eq!(wifi_quality_from_link(5.0, 0.1), 5.0);
        assert_eq!(wifi_quality_from_link(5.0, 0.2), 0.0);
        assert_eq!(wifi_quality_from_link(-5.0, -1.0), 10.0);
        assert_eq!(wifi_quality_from_link(f64::NAN, 0.0), 0.0);
        assert_eq!(wifi_quality_from_link(5.0, f64::NAN), 0.0);
        assert_eq!(wifi_quality_from_link(f64::INFINITY, 0.0), 0.0);
    }

    #[test]
    fn kinds_never_overlap() {
        let range = |kind, charging, battery_lo| {
            let lo = DeviceInfo { kind, charging, battery_percent: battery_lo, ..DeviceInfo::default() };
            let hi = DeviceInfo { kind, charging, battery_percent: Some(100.0), uptime_ms: u64::MAX, wifi_quality: Some(10.0) };
            (score(&lo), score(&hi))
        };
        // Without battery information (the usual case for kiosk and POS) the
        // bands are strictly apart …
        let kiosk = range(DeviceKind::Kiosk, None, None);
        let pos = range(DeviceKind::Pos, None, None);
        let ipad_charging = range(DeviceKind::Ipad, Some(true), None);
        assert_eq!((kiosk.0.milli(), pos.0.milli(), pos.1.milli(), ipad_charging.1.milli()), (1_050_000, 800_000, 1_000_000, 750_000));
        assert!(kiosk.0 > pos.1 && pos.0 > ipad_charging.1);
        // … and even a kiosk or POS reporting an empty battery only touches the band below.
        assert!(range(DeviceKind::Kiosk, Some(false), Some(0.0)).0 >= pos.1);
        assert!(range(DeviceKind::Pos, Some(false), Some(0.0)).0 >= ipad_charging.1);
        let ipad = range(DeviceKind::Ipad, Some(false), Some(0.0));
        assert!(ipad_charging.0 > ipad.1, "{ipad_charging:?} {ipad:?}");
    }

    #[test]
    fn names_and_codes_round_trip() {
        for k in [DeviceKind::Kiosk, DeviceKind::Ipad, DeviceKind::Pos, DeviceKind::Phone, DeviceKind::Other] {
            assert_eq!(DeviceKind::from_name(k.as_str()), k);
            assert_eq!(DeviceKind::from_code(k.code()), k);
        }
        assert_eq!(DeviceKind::from_name(" iPad "), DeviceKind::Ipad);
        assert_eq!(DeviceKind::from_name("toaster"), DeviceKind::Other);
        assert_eq!(DeviceKind::from_code(200), DeviceKind::Other);
    }

    #[test]
    fn hub_key_orders_by_score_then_device() {
        let a = HubKey::new(Score::from_milli(900_000), "a");
        let b = HubKey::new(Score::from_milli(900_000), "b");
        let c = HubKey::new(Score::from_milli(900_001), "0");
        assert!(b > a);
        assert!(c > b);
        assert_eq!([a.clone(), c.clone(), b.clone()].into_iter().max(), Some(c));
    }

    proptest! {
        #[test]
        fn any_input_scores_within_bounds(
            kind in 0u8..6, charging in proptest::option::of(any::<bool>()),
            battery in proptest::option::of(any::<f64>()), uptime in any::<u64>(),
            wifi in proptest::option::of(any::<f64>()),
        ) {
            let info = DeviceInfo { kind: DeviceKind::from_code(kind), charging, battery_percent: battery, uptime_ms: uptime, wifi_quality: wifi };
            let b = breakdown(&info);
            prop_assert!(b.uptime <= 100_000 && b.wifi <= 100_000 && b.power <= 50_000 && b.base <= 1_000_000);
            prop_assert!(score(&info) <= MAX_SCORE);
        }

        #[test]
        fn link_quality_is_in_range_and_monotone(rtt in any::<f64>(), loss in any::<f64>(), d in 0.0f64..1000.0) {
            let q = wifi_quality_from_link(rtt, loss);
            prop_assert!((0.0..=10.0).contains(&q));
            if !rtt.is_nan() && !loss.is_nan() {
                prop_assert!(wifi_quality_from_link(rtt + d, loss) <= q);
            }
        }
    }
}
