//! Admission by an admin device (issue #15, `PROTOCOL.md` Part 6 §5), the
//! shell side of `crate::trust::pairing`:
//!
//! * `mesh.pairing.invite()` on an admin device makes a one-time code
//!   (`ABCD-EFGH-…`, 100 bits, 10 minutes, single use) to show as text or
//!   QR, and listens on `vm/{venue}/pair/{invite_id}`;
//! * `VenueMesh.join({ venue, code, brokers, … })` on the new device makes
//!   its key, publishes the MAC'd request there, waits for the sealed
//!   bundle, stores it and opens the mesh with it.
//!
//! Pairing messages are raw MQTT payloads (no envelope: the new device has
//! no certificate yet), first byte the type (`0x42` request, `0x43`
//! response); each side ignores its own type coming back.

use std::cell::RefCell;
use std::rc::Rc;

use wasm_bindgen::prelude::*;

use super::broker::{self, LinkRef};
use super::clock::{monotonic_ms, random_seed, wall_ms};
use super::device_key;
use super::errors::{js_error, ErrorCode};
use super::idb;
use super::js::{ObjBuilder, Options};
use super::trust_api::{self, public_key};
use super::VenueMesh;
use crate::envelope::is_valid_id;
use crate::mqtt::{Client, ClientConfig, EndpointConfig, Event, QoS, SessionConfig};
use crate::rng::Rng;
use crate::trust::pairing::{self, Admission, Invite, InviteCode, PairRequest};
use crate::trust::{Credentials, CryptoRng};

/// Lifetime of device certificates an admin issues by default (ms): a year.
const DEFAULT_CERT_LIFETIME_MS: u64 = 365 * 24 * 3600 * 1000;

#[wasm_bindgen(typescript_custom_section)]
const TS_PAIRING: &'static str = r#"
/** An invitation made by `mesh.pairing.invite()` on an admin device. */
export interface PairingInvite {
  /** The one-time code to show (text or QR): 20 characters in groups of 4. */
  code: string;
  /** The topic suffix the request travels on (a hash of the code; the code itself never travels). */
  inviteId: string;
  /** Wall-clock ms after which the code is refused. */
  expiresAt: number;
  /** Resolves with the admitted device once it paired, or with null when the code expired unused. */
  admitted: Promise<{ device: string; publicKey: string } | null>;
}
/** Options of `VenueMesh.join()`: `open()`'s options plus the code. */
export interface JoinOptions extends Omit<OpenOptions, "credentials"> {
  /** The code shown on the admin device. */
  code: string;
  /** The device id to be certified; default: this database's id. */
  device?: string;
  /** How long to wait for the admin device's answer; default 60000. */
  pairingTimeoutMs?: number;
}
/** Options of `mesh.rotateContentKey()`. */
export interface RotateContentKeyOptions {
  /** Devices keep sending under the old key this long (ms) after the rotation, so those that get the
   * update a little later (a relay hop, a reconnect) still read everything; default 5000. */
  activateInMs?: number;
  /** The old key is dropped this long (ms) after the activation; default 60000. */
  graceMs?: number;
}
/** What `mesh.rotateContentKey()` resolves with. */
export interface ContentKeyRotation {
  /** The new content key epoch (key id, 0-255, wrapping). */
  epoch: number;
  /** Wall-clock ms from which every device sends under it. */
  activateAt: number;
  /** Wall-clock ms at which the previous epoch is dropped. */
  retireAt: number;
  /** The devices (and the cloud) the new key was wrapped to; a revoked device is never among them. */
  recipients: string[];
}
"#;

/// The trust side a `VenueMesh` keeps: its credentials (admins admit with
/// them) and the open invites.
#[derive(Default)]
pub struct TrustSide {
    pub creds: Option<Credentials>,
    pub venue: String,
    invites: Vec<OpenInvite>,
    rng: Option<CryptoRng>,
}

struct OpenInvite {
    invite: Invite,
    topic: String,
    resolve: js_sys::Function,
}

pub type TrustRef = Rc<RefCell<TrustSide>>;

impl TrustSide {
    pub fn new(venue: &str, creds: Option<Credentials>) -> TrustSide {
        TrustSide { creds, venue: venue.to_string(), invites: Vec::new(), rng: None }
    }
}

/// `mesh.pairing`: admitting devices from this (admin) device.
#[wasm_bindgen]
pub struct Pairing {
    trust: std::rc::Weak<RefCell<TrustSide>>,
    link: std::rc::Weak<RefCell<broker::Link>>,
}

#[wasm_bindgen]
impl Pairing {
    /// A one-time code for a new device (`VenueMesh.join({ code, … })` on
    /// it): `{ code, inviteId, expiresAt, admitted }`. Only on a device with
    /// an admin certificate (`NOT_ADMIN` otherwise).
    #[wasm_bindgen(unchecked_return_type = "PairingInvite")]
    pub fn invite(&self) -> Result<JsValue, JsValue> {
        match (self.trust.upgrade(), self.link.upgrade()) {
            (Some(t), Some(l)) => invite(&t, &l),
            _ => Err(js_error(ErrorCode::Closed, "the mesh is closed", None)),
        }
    }
}

#[wasm_bindgen]
impl VenueMesh {
    /// `"admin"` or `"device"`: the role this device's certificate gives it
    /// (an admin may invite and revoke devices); `null` before credentials.
    #[wasm_bindgen(getter, js_name = certificateRole, unchecked_return_type = "\"admin\" | \"device\" | null")]
    pub fn certificate_role(&self) -> JsValue {
        let t = self.trust.borrow();
        match t.creds.as_ref().and_then(|c| c.bundle.chain.leaf().map(|l| l.role)) {
            Some(r) => JsValue::from_str(r.as_str()),
            None => JsValue::NULL,
        }
    }

    /// Admission of new devices by this one (the `Pairing` handle).
    #[wasm_bindgen(getter)]
    pub fn pairing(&self) -> Pairing {
        Pairing { trust: Rc::downgrade(&self.trust), link: Rc::downgrade(&self.driver.borrow().link) }
    }
}

fn crypto_rng() -> Result<CryptoRng, JsValue> {
    Ok(CryptoRng::new(device_key::random_bytes::<32>()?))
}

/// True for `vm/{venue}/pair/…` (the mesh link hands those here, not to the node).
pub fn is_pair_topic(venue: &str, topic: &str) -> bool {
    topic.strip_prefix("vm/").and_then(|t| t.strip_prefix(venue)).is_some_and(|t| t.starts_with("/pair/"))
}

/// A pairing request arrived on the admin's link: admit it if it matches an
/// open invite, publish the sealed bundle, settle that invite's promise.
pub fn on_pair_message(trust: &TrustRef, link: &LinkRef, topic: &str, payload: &[u8]) {
    if payload.first() != Some(&pairing::TYPE_PAIR_REQUEST) {
        return; // our own response coming back, or noise
    }
    let outcome = {
        let Ok(mut t) = trust.try_borrow_mut() else { return };
        let t = &mut *t;
        let (Some(creds), Some(rng)) = (t.creds.as_ref(), t.rng.as_mut()) else { return };
        let Some(i) = t.invites.iter().position(|o| o.topic == topic) else { return };
        let admission = Admission { admin_key: &creds.key, admin_bundle: &creds.bundle, cert_lifetime_ms: DEFAULT_CERT_LIFETIME_MS };
        match pairing::admit(&admission, &mut t.invites[i].invite, payload, wall_ms(), rng) {
            Ok((req, response)) => Some((t.invites.remove(i), req, response)),
            Err(_) => None, // a wrong MAC (someone guessing) or an expired code: ignored, the invite stays
        }
    };
    let Some((open, req, response)) = outcome else { return };
    let _ = link.borrow_mut().client.publish(topic, &response, QoS::AtLeastOnce, false, monotonic_ms());
    let _ = link.borrow_mut().client.unsubscribe(topic, monotonic_ms());
    broker::schedule_drain(link);
    let admitted = ObjBuilder::new().set("device", req.device.as_str()).set("publicKey", crate::trust::base64_encode(&req.public_key)).build();
    let _ = open.resolve.call1(&JsValue::NULL, &admitted);
}

/// `mesh.pairing.invite()`: see the module docs.
pub fn invite(trust: &TrustRef, link: &LinkRef) -> Result<JsValue, JsValue> {
    let mut t = trust.borrow_mut();
    let venue = t.venue.clone();
    match t.creds.as_ref() {
        Some(c) if c.bundle.chain.leaf().is_some_and(|l| l.role == crate::trust::Role::Admin) => {}
        _ => return Err(js_error(ErrorCode::NotAdmin, "only a device with an admin certificate can invite devices", None)),
    }
    if t.rng.is_none() {
        t.rng = Some(crypto_rng()?);
    }
    let now = wall_ms();
    t.invites.retain(|o| o.invite.expires_at >= now);
    let invite = Invite::new(t.rng.as_mut().expect("set above"), now);
    let invite_id = invite.code.invite_id();
    let topic = format!("vm/{venue}/pair/{invite_id}");
    let mut settle = None;
    let admitted = js_sys::Promise::new(&mut |resolve, reject| settle = Some((resolve, reject)));
    let (resolve, _reject) = settle.expect("the executor runs at once");
    let code = invite.code.display();
    let expires_at = invite.expires_at;
    // The promise resolves with null when the code expires unused.
    let weak = Rc::downgrade(trust);
    let topic2 = topic.clone();
    gloo_timers::callback::Timeout::new(pairing::INVITE_TTL_MS as u32, move || {
        let Some(trust) = weak.upgrade() else { return };
        let Ok(mut t) = trust.try_borrow_mut() else { return };
        if let Some(i) = t.invites.iter().position(|o| o.topic == topic2) {
            let o = t.invites.remove(i);
            drop(t);
            // null, not a rejection: an app that shows a code and never
            // awaits `admitted` must not get an unhandled rejection.
            let _ = o.resolve.call1(&JsValue::NULL, &JsValue::NULL);
        }
    })
    .forget();
    t.invites.push(OpenInvite { invite, topic: topic.clone(), resolve });
    drop(t);
    let _ = link.borrow_mut().client.subscribe(&topic, QoS::AtLeastOnce, monotonic_ms());
    broker::schedule_drain(link);
    Ok(ObjBuilder::new()
        .set("code", code)
        .set("inviteId", invite_id)
        .set("expiresAt", expires_at as f64)
        .set("admitted", admitted)
        .build())
}

const JOIN_ONLY: &[&str] = &["code", "device", "pairingTimeoutMs"];

#[wasm_bindgen]
impl VenueMesh {
    /// Joins a venue with a code shown on an admin device: makes this
    /// device's key, asks the admin device for a certificate over the
    /// broker, stores the bundle it answers with and opens the mesh.
    /// Rejects with `PAIRING_FAILED` when no answer comes in time (a wrong
    /// or expired code gets none).
    #[wasm_bindgen(js_name = join, unchecked_return_type = "Promise<VenueMesh>")]
    pub fn join_js(#[wasm_bindgen(unchecked_param_type = "JoinOptions")] options: JsValue) -> js_sys::Promise {
        super::js::promise(Box::pin(async move { Self::join(options).await.map(JsValue::from) }))
    }
}

impl VenueMesh {
    /// `VenueMesh.join` (the export above goes through `js::promise`).
    pub async fn join(options: JsValue) -> Result<VenueMesh, JsValue> {
        if !options.is_object() {
            return Err(js_error(ErrorCode::InvalidOptions, "VenueMesh.join options must be an object", None));
        }
        // open()'s options, checked by open() later; ours taken out here.
        let rest = js_sys::Object::assign(&js_sys::Object::new(), options.unchecked_ref());
        for k in JOIN_ONLY.iter().chain(["credentials"].iter()) {
            let _ = js_sys::Reflect::delete_property(&rest, &(*k).into());
        }
        let mine = js_sys::Object::new();
        for k in JOIN_ONLY.iter().chain(["venue", "brokers", "dbName", "username", "password"].iter()) {
            if let Ok(v) = js_sys::Reflect::get(&options, &(*k).into()) {
                if !v.is_undefined() {
                    let _ = js_sys::Reflect::set(&mine, &(*k).into(), &v);
                }
            }
        }
        let o = Options::new(&mine, "VenueMesh.join options", &["code", "device", "pairingTimeoutMs", "venue", "brokers", "dbName", "username", "password"], false)?;
        let venue = o.required_string("venue")?;
        if !is_valid_id(&venue) {
            return Err(js_error(ErrorCode::InvalidOptions, "`venue` must be 1-64 characters of A-Z a-z 0-9 . _ -", None));
        }
        let code = InviteCode::parse(&o.required_string("code")?)
            .map_err(|_| js_error(ErrorCode::InvalidArgument, "`code` is not a pairing code (20 letters and digits 2-7)", None))?;
        let brokers = o.string_list("brokers")?.unwrap_or_default();
        if brokers.is_empty() {
            return Err(js_error(ErrorCode::InvalidOptions, "`brokers` must list at least one ws:// or wss:// URL", None));
        }
        let wait_ms = o.uint("pairingTimeoutMs", 3_600_000)?.unwrap_or(60_000);
        let db_name = o.string("dbName")?.unwrap_or_else(|| format!("venuemesh-{venue}"));
        let db = idb::open(&db_name).await?;
        let device = match o.string("device")? {
            Some(d) if is_valid_id(&d) => d,
            Some(_) => return Err(js_error(ErrorCode::InvalidOptions, "`device` must be 1-64 characters of A-Z a-z 0-9 . _ -", None)),
            None => idb::device_id(&db).await?,
        };
        let key = match device_key::load(&db).await? {
            Some(k) if k.device == device => k,
            _ => device_key::create(&db, &device).await?,
        };
        let request = PairRequest {
            venue: venue.clone(),
            invite_id: code.invite_id(),
            device: device.clone(),
            public_key: public_key(&key),
            created_at: wall_ms(),
        };
        let sealed = request.seal(&code).map_err(|e| js_error(ErrorCode::InvalidArgument, &e.to_string(), None))?;
        let topic = format!("vm/{venue}/pair/{}", request.invite_id);

        let seed = random_seed();
        let mut session = SessionConfig::new(format!("vm:{venue}:{device}:pair{:04x}", seed & 0xffff));
        session.username = o.string("username")?;
        session.password = o.string("password")?.map(String::into_bytes);
        let endpoints = brokers.iter().map(|u| EndpointConfig::new(u.clone(), 2_000)).collect::<Vec<_>>();
        let client = Client::new(ClientConfig::new(endpoints, session), Rng::new(seed), monotonic_ms())
            .map_err(|e| js_error(ErrorCode::InvalidOptions, &e.to_string(), None))?;
        let link = broker::new_link(client);
        let _ = link.borrow_mut().client.subscribe(&topic, QoS::AtLeastOnce, monotonic_ms());
        let result: Rc<RefCell<Option<Result<crate::trust::Bundle, crate::trust::TrustError>>>> = Rc::new(RefCell::new(None));
        {
            let (weak, result, topic) = (Rc::downgrade(&link), result.clone(), topic.clone());
            broker::set_sink(
                &link,
                Rc::new(move |events: Vec<Event>| {
                    let Some(link) = weak.upgrade() else { return };
                    for e in events {
                        match e {
                            Event::Connected { .. } => {
                                let _ = link.borrow_mut().client.publish(&topic, &sealed, QoS::AtLeastOnce, false, monotonic_ms());
                                broker::schedule_drain(&link);
                            }
                            Event::Message { topic: t, payload, .. } if t == topic && payload.first() == Some(&pairing::TYPE_PAIR_RESPONSE) => {
                                let opened = pairing::open_response(&code, &request, &payload);
                                // A response that does not open is someone else's noise: keep waiting.
                                if opened.is_ok() {
                                    *result.borrow_mut() = Some(opened);
                                }
                            }
                            _ => {}
                        }
                    }
                }),
            );
        }
        broker::drain(&link);
        let until = wall_ms() + wait_ms;
        while result.borrow().is_none() && wall_ms() < until {
            gloo_timers::future::TimeoutFuture::new(50).await;
        }
        link.borrow_mut().client.close(monotonic_ms());
        broker::drain(&link);
        broker::shutdown(&link);
        let bundle = match result.borrow_mut().take() {
            Some(Ok(b)) => b,
            _ => {
                db.close();
                return Err(js_error(ErrorCode::PairingFailed, "no admin device answered the pairing request in time (wrong or expired code?)", None));
            }
        };
        trust_api::store_bundle(&db, &bundle).await?;
        db.close();
        let _ = js_sys::Reflect::set(&rest, &"credentials".into(), &JsValue::from_str(&bundle.to_json()));
        VenueMesh::open(rest.into()).await
    }
}

#[wasm_bindgen]
impl VenueMesh {
    /// Revokes `device` (admin devices only, `NOT_ADMIN` otherwise): signs a
    /// revocation list with this device's admin key naming that device's key
    /// plus every key revoked before (devices keep the union, so a list
    /// never un-revokes), and publishes it retained on `vm/{venue}/crl`
    /// (when the broker is back, if it is unreachable now).
    /// The device must have been seen (its certificate is known here);
    /// `INVALID_ARGUMENT` otherwise.
    /// Errors reject the promise (as from an `async` method), never throw.
    #[wasm_bindgen(unchecked_return_type = "Promise<void>")]
    pub fn revoke(&self, device: &str) -> js_sys::Promise {
        settled(self.revoke_now(device).map(|()| JsValue::UNDEFINED))
    }

    /// Rotates the venue's content key (admin devices only, `NOT_ADMIN`
    /// otherwise; `PROTOCOL.md` Part 6 §6): a fresh key, wrapped to this
    /// device, the cloud and every device whose valid, unrevoked certificate
    /// is known here, published retained on `vm/{venue}/keys` and sent on
    /// every data channel and tab. Every device keeps sending under the old
    /// key for `activateInMs` (no flag day) and drops it `graceMs` later.
    /// Rotate after `revoke()` to shut a stolen device out of the bodies
    /// sent from then on, not only out of the mesh. `CONNECTION` when no
    /// broker is connected (the cloud learns the key only through it).
    /// Errors reject the promise (as from an `async` method), never throw.
    #[wasm_bindgen(js_name = rotateContentKey, unchecked_return_type = "Promise<ContentKeyRotation>")]
    pub fn rotate_content_key(
        &self,
        #[wasm_bindgen(unchecked_param_type = "RotateContentKeyOptions | undefined")] options: JsValue,
    ) -> js_sys::Promise {
        settled(self.rotate_content_key_now(&options))
    }
}

/// A promise already settled with `r`: the API's promise-returning methods
/// that finish at once report misuse by rejecting, like their async siblings.
fn settled(r: Result<JsValue, JsValue>) -> js_sys::Promise {
    match r {
        Ok(v) => js_sys::Promise::resolve(&v),
        Err(e) => js_sys::Promise::reject(&e),
    }
}

impl VenueMesh {
    /// [`VenueMesh::revoke`], its errors returned.
    fn revoke_now(&self, device: &str) -> Result<(), JsValue> {
        let admin = self.trust.borrow().creds.as_ref().is_some_and(|c| c.bundle.chain.leaf().is_some_and(|l| l.role == crate::trust::Role::Admin));
        if !admin {
            return Err(js_error(ErrorCode::NotAdmin, "only a device with an admin certificate can revoke devices", None));
        }
        // The node signs the list (union of what it knows revoked + this key), applies it
        // here at once (the device stops being a peer) and publishes it retained.
        let result = self.driver.borrow_mut().node.revoke(device, monotonic_ms(), wall_ms());
        if let Err(e) = result {
            let why = match e {
                crate::trust::TrustError::WrongSubject => format!("no certificate of {device} is known here (it was never heard)"),
                other => other.to_string(),
            };
            return Err(js_error(ErrorCode::InvalidArgument, &why, None));
        }
        super::mesh_driver::drive(&self.driver);
        Ok(())
    }

    /// [`VenueMesh::rotate_content_key`], its errors returned.
    fn rotate_content_key_now(&self, options: &JsValue) -> Result<JsValue, JsValue> {
        const KEYS: &[&str] = &["activateInMs", "graceMs"];
        const DAY_MS: u64 = 24 * 3600 * 1000;
        let o = Options::new(options, "rotateContentKey options", KEYS, true)?;
        let activate_in = o.uint("activateInMs", DAY_MS)?.unwrap_or(5_000);
        let grace = o.uint("graceMs", 30 * DAY_MS)?.unwrap_or(60_000);
        let admin = self.trust.borrow().creds.as_ref().is_some_and(|c| c.bundle.chain.leaf().is_some_and(|l| l.role == crate::trust::Role::Admin));
        if !admin {
            return Err(js_error(ErrorCode::NotAdmin, "only a device with an admin certificate can rotate the content key", None));
        }
        // The cloud (and every device reached only through the broker) learns the new key
        // only from the retained `vm/{venue}/keys`, published at once and not later: rotated
        // while disconnected, the hub's uploads under the new epoch would stay unreadable
        // to the ingest (sales stuck at peer_ack).
        if !self.connected() {
            return Err(js_error(ErrorCode::Connection, "rotate the content key while connected to a broker: the cloud learns the new key from it", None));
        }
        let result = self.driver.borrow_mut().node.rotate_content_key(activate_in, grace, monotonic_ms(), wall_ms());
        let raw = result.map_err(|e| js_error(ErrorCode::InvalidArgument, &format!("could not rotate the content key: {e}"), None))?;
        super::mesh_driver::drive(&self.driver);
        let ku = crate::trust::KeyUpdate::decode(&raw).map_err(|e| js_error(ErrorCode::InvalidArgument, &e.to_string(), None))?;
        let recipients: js_sys::Array = ku.recipients.iter().map(|(d, _)| JsValue::from_str(d)).collect();
        let out = ObjBuilder::new()
            .set("epoch", f64::from(ku.epoch))
            .set("activateAt", ku.activate_at as f64)
            .set("retireAt", ku.retire_at as f64)
            .set("recipients", recipients)
            .build();
        Ok(out)
    }
}
