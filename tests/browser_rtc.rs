//! Browser tests of routing's web pieces (wasm-bindgen-test, headless
//! Chromium and WebKit): two `RTCPeerConnection`s in one page connect through
//! `web::rtc` with the signalling passed in memory and exchange messages;
//! `web::tabs` frames reach the right BroadcastChannel ends. No broker needed.
//! The WebKit this suite runs (WebKitGTK's MiniBrowser) has no WebRTC: there
//! the data channel tests check what `web::rtc` does without it instead (see
//! [`has_webrtc`]); tests/browser.rs checks the mesh's fallback.
#![cfg(target_arch = "wasm32")]

use std::cell::RefCell;
use std::rc::Rc;

use venuemesh::web::rtc::{Rtc, RtcEvent};
use venuemesh::web::tabs::Tabs;
use wasm_bindgen_test::*;

wasm_bindgen_test_configure!(run_in_browser);

/// Waits (on real time, polling every 20 ms) until `done` holds, at most
/// `limit_ms`; returns whether it did.
async fn until(limit_ms: u32, done: impl Fn() -> bool) -> bool {
    let mut waited = 0;
    while !done() {
        if waited >= limit_ms {
            return false;
        }
        gloo_timers::future::TimeoutFuture::new(20).await;
        waited += 20;
    }
    true
}

type Log = Rc<RefCell<Vec<RtcEvent>>>;

/// Whether this browser has `RTCPeerConnection`. Only a WebKit may lack it
/// (the WebKitGTK build here has no WebRTC): a Chromium without
/// it fails the test instead of taking the fallback branch.
fn has_webrtc() -> bool {
    if venuemesh::web::rtc::supported() {
        return true;
    }
    let ua = web_sys::window().and_then(|w| w.navigator().user_agent().ok()).unwrap_or_default();
    assert!(ua.contains("AppleWebKit") && !ua.contains("Chrome/"), "no RTCPeerConnection in a browser that has one: {ua}");
    false
}

/// Without `RTCPeerConnection`: `connect` is a typed error the router can
/// ignore, an offer that arrives anyway is dropped, nothing opens and no
/// event fires.
async fn check_no_webrtc() {
    let (a, log_a, b, log_b) = pair();
    assert!(a.connect("b").is_err(), "connect must fail, not panic");
    let offer = venuemesh::routing::wire::Signal::Offer { session: 7, sdp: "v=0".into() }.encode().unwrap();
    b.handle_signal("a", &offer);
    gloo_timers::future::TimeoutFuture::new(100).await;
    assert!(!a.is_open("b") && !b.is_open("a"));
    assert!(!a.send("b", b"nowhere"));
    assert!(log_a.borrow().is_empty() && log_b.borrow().is_empty(), "a saw {:?}, b saw {:?}", log_a.borrow(), log_b.borrow());
    a.close_all();
    b.close_all();
}

/// Two endpoints whose signals go straight into each other's
/// `handle_signal` (as the router would carry them over the broker).
fn pair() -> (Rtc, Log, Rtc, Log) {
    let slot_a: Rc<RefCell<Option<Rtc>>> = Rc::default();
    let slot_b: Rc<RefCell<Option<Rtc>>> = Rc::default();
    let (log_a, log_b): (Log, Log) = (Rc::default(), Rc::default());
    let (to_b, la) = (slot_b.clone(), log_a.clone());
    let a = Rtc::new(
        move |peer, body| {
            assert_eq!(peer, "b");
            let b = to_b.borrow().clone();
            if let Some(b) = b {
                b.handle_signal("a", &body);
            }
        },
        move |e| la.borrow_mut().push(e),
    );
    let (to_a, lb) = (slot_a.clone(), log_b.clone());
    let b = Rtc::new(
        move |peer, body| {
            assert_eq!(peer, "a");
            let a = to_a.borrow().clone();
            if let Some(a) = a {
                a.handle_signal("b", &body);
            }
        },
        move |e| lb.borrow_mut().push(e),
    );
    *slot_a.borrow_mut() = Some(a.clone());
    *slot_b.borrow_mut() = Some(b.clone());
    (a, log_a, b, log_b)
}

#[wasm_bindgen_test]
async fn two_peer_connections_connect_and_exchange_messages() {
    if !has_webrtc() {
        return check_no_webrtc().await;
    }
    let (a, log_a, b, log_b) = pair();
    a.connect("b").expect("RTCPeerConnection");
    let open = until(15_000, || a.is_open("b") && b.is_open("a")).await;
    assert!(open, "not open: a saw {:?}, b saw {:?}", log_a.borrow(), log_b.borrow());
    assert!(log_a.borrow().contains(&RtcEvent::Open("b".into())));
    assert!(log_b.borrow().contains(&RtcEvent::Open("a".into())));

    assert!(a.send("b", b"hello over the data channel"));
    assert!(b.send("a", &[0, 1, 2, 255]));
    let got = until(5_000, || log_b.borrow().len() >= 2 && log_a.borrow().len() >= 2).await;
    assert!(got, "a saw {:?}, b saw {:?}", log_a.borrow(), log_b.borrow());
    assert!(log_b.borrow().contains(&RtcEvent::Message("a".into(), b"hello over the data channel".to_vec())));
    assert!(log_a.borrow().contains(&RtcEvent::Message("b".into(), vec![0, 1, 2, 255])));

    // ordered and reliable: a burst arrives complete and in order
    for k in 0..200u32 {
        assert!(a.send("b", &k.to_be_bytes()));
    }
    let burst = || log_b.borrow().iter().filter(|e| matches!(e, RtcEvent::Message(_, m) if m.len() == 4)).count();
    assert!(until(5_000, || burst() == 200).await, "got {}", burst());
    let seq: Vec<u32> = log_b
        .borrow()
        .iter()
        .filter_map(|e| match e {
            RtcEvent::Message(_, m) if m.len() == 4 => Some(u32::from_be_bytes([m[0], m[1], m[2], m[3]])),
            _ => None,
        })
        .collect();
    assert_eq!(seq, (0..200).collect::<Vec<_>>());

    // a closing side: the other one hears of it; the closer is not told
    a.close("b");
    assert!(!a.send("b", b"gone"));
    assert!(until(15_000, || log_b.borrow().contains(&RtcEvent::Closed("a".into()))).await, "b saw {:?}", log_b.borrow());
    assert!(!log_a.borrow().iter().any(|e| matches!(e, RtcEvent::Closed(_))));
    b.close_all();
}

#[wasm_bindgen_test]
async fn a_new_offer_replaces_the_connection() {
    if !has_webrtc() {
        return check_no_webrtc().await;
    }
    let (a, _log_a, b, log_b) = pair();
    a.connect("b").expect("RTCPeerConnection");
    assert!(until(15_000, || a.is_open("b") && b.is_open("a")).await);
    // a starts over (e.g. after a reload): b reports the old channel closed
    // and the new one open
    a.connect("b").expect("RTCPeerConnection");
    assert!(until(15_000, || a.is_open("b") && b.is_open("a") && log_b.borrow().contains(&RtcEvent::Closed("a".into()))).await);
    let opens = log_b.borrow().iter().filter(|e| **e == RtcEvent::Open("a".into())).count();
    assert_eq!(opens, 2);
    assert!(a.send("b", b"again"));
    assert!(until(5_000, || log_b.borrow().contains(&RtcEvent::Message("a".into(), b"again".to_vec()))).await);
    a.close_all();
    b.close_all();
}

#[wasm_bindgen_test]
async fn tab_frames_reach_their_recipient_or_everyone() {
    let venue = format!("v{}", js_sys::Math::random().to_bits());
    let logs: Vec<Rc<RefCell<Vec<Vec<u8>>>>> = (0..3).map(|_| Rc::default()).collect();
    let tabs: Vec<Tabs> = (0..3)
        .map(|i| {
            let log = logs[i].clone();
            Tabs::open(&venue, &format!("t{i}"), move |env| log.borrow_mut().push(env)).expect("BroadcastChannel")
        })
        .collect();
    tabs[0].post(Some("t1"), b"for t1").unwrap();
    tabs[0].post(None, b"for all").unwrap();
    assert!(until(5_000, || logs[1].borrow().len() == 2 && logs[2].borrow().len() == 1).await);
    assert_eq!(*logs[1].borrow(), [b"for t1".to_vec(), b"for all".to_vec()]);
    assert_eq!(*logs[2].borrow(), [b"for all".to_vec()]);
    assert!(logs[0].borrow().is_empty(), "a channel does not hear its own posts");
    // another venue's channel hears nothing
    let other_log: Rc<RefCell<Vec<Vec<u8>>>> = Rc::default();
    let l = other_log.clone();
    let _other = Tabs::open("elsewhere", "t1", move |env| l.borrow_mut().push(env)).unwrap();
    tabs[2].post(None, b"venue only").unwrap();
    assert!(until(5_000, || logs[1].borrow().len() == 3).await);
    assert!(other_log.borrow().is_empty());
}
