//! The trust side of the JS API (issue #15): the device's own key, pairing
//! requests, credentials given to `open()` and kept for the next start.
//!
//! * `VenueMesh.createPairingRequest({ venue, device?, dbName? })` makes (or
//!   reuses) this device's Ed25519 key — generated here, kept wrapped in
//!   IndexedDB (`device_key`) — and returns `{ venue, device, publicKey }`
//!   (base64) for the app to send to its server, whose CA answers with a
//!   credential bundle.
//! * `open({ credentials })` checks the bundle against the stored key
//!   (`BAD_CREDENTIALS`, `REVOKED`) and stores it; a later `open()` without
//!   `credentials` reuses the stored bundle, and a device that has none (or
//!   lost its key) gets `NOT_PAIRED`: a device without a valid certificate
//!   never joins.

use wasm_bindgen::prelude::*;

use super::clock::wall_ms;
use super::device_key::{self, DeviceKey};
use super::errors::{js_error, ErrorCode};
use super::idb::{self, Db};
use super::js::{ObjBuilder, Options};
use super::meta;
use super::VenueMesh;
use crate::envelope::is_valid_id;
use crate::trust::{base64_encode, signing_key, Bundle, Credentials, TrustError, TrustState};
use wasm_bindgen::JsCast;

const CREDENTIALS_RECORD: &str = "credentials";
/// Clock drift allowed when checking validity windows at open (ms), as the core's default.
pub const DRIFT_MS: u64 = 60_000;

#[wasm_bindgen(typescript_custom_section)]
const TS_TRUST: &'static str = r#"
/** What `VenueMesh.createPairingRequest()` returns: send it to the venue's server (its CA issues a bundle). */
export interface PairingRequest {
  venue: string;
  /** The device id the certificate must name. */
  device: string;
  /** This device's Ed25519 public key, base64 (32 bytes). The private key never leaves the device. */
  publicKey: string;
}
/** Options of `VenueMesh.createPairingRequest()`. */
export interface PairingRequestOptions {
  venue: string;
  /** The device id to be certified; default: the id this database already has. */
  device?: string;
  /** IndexedDB database name; default `venuemesh-{venue}` (the same as `open()`'s). */
  dbName?: string;
}
/** A credential bundle (PROTOCOL.md Part 6 §5) as the venue's CA or an admin device issues it; binary fields base64. */
export interface CredentialBundle {
  version: 1; venue: string; device: string; rootPublicKey: string; chain: string; cloudChain: string;
  keyEpoch: number; contentKey: string; crl?: string | null;
}
"#;

fn trust_error_js(e: TrustError, what: &str) -> JsValue {
    let code = if e == TrustError::Revoked { ErrorCode::Revoked } else { ErrorCode::BadCredentials };
    js_error(code, &format!("{what}: {e}"), None)
}

/// The 32-byte public key of a stored device key.
pub fn public_key(k: &DeviceKey) -> [u8; 32] {
    signing_key(&k.seed).verifying_key().to_bytes()
}

/// The bundle from `open()`'s `credentials` (a JSON string or the parsed object).
fn bundle_of(v: &JsValue) -> Result<Bundle, JsValue> {
    let text = match v.as_string() {
        Some(s) => s,
        None if v.is_object() => js_sys::JSON::stringify(v).ok().and_then(|s| s.as_string()).unwrap_or_default(),
        None => return Err(js_error(ErrorCode::InvalidOptions, "`credentials` must be a bundle (JSON string or object)", None)),
    };
    Bundle::from_json(&text).map_err(|e| trust_error_js(e, "the credential bundle is not valid"))
}

/// This device's checked credentials for `venue`: from `given` (then stored)
/// or from the bundle stored by an earlier `open()`.
pub async fn credentials(db: &Db, venue: &str, given: Option<JsValue>) -> Result<Credentials, JsValue> {
    let not_paired = |why: &str| js_error(ErrorCode::NotPaired, why, None);
    let bundle = match &given {
        Some(v) => bundle_of(v)?,
        None => {
            let stored = meta::get(db, CREDENTIALS_RECORD).await.map_err(|e| e.to_js("could not read the stored credentials"))?;
            let stored = stored.ok_or_else(|| {
                not_paired("this device has no credentials yet: createPairingRequest(), then open({ credentials }) with the bundle your server returns, or VenueMesh.join() with an invite code")
            })?;
            let text = match stored.as_string() {
                // Stored in clear by an earlier version: read, then sealed below.
                Some(text) => text,
                None => {
                    let plain = device_key::open_record(db, CREDENTIALS_RECORD, &stored)
                        .await
                        .map_err(|_| not_paired("the stored credentials do not open with this device's key (it was replaced): pair it again"))?;
                    String::from_utf8(plain).map_err(|_| js_error(ErrorCode::BadCredentials, "the stored credential bundle is not valid", None))?
                }
            };
            Bundle::from_json(&text).map_err(|e| trust_error_js(e, "the stored credential bundle is not valid"))?
        }
    };
    if bundle.venue != venue {
        return Err(js_error(ErrorCode::BadCredentials, &format!("the credentials are for venue {}, not {venue}", bundle.venue), None));
    }
    let key = device_key::load(db).await?.ok_or_else(|| {
        not_paired("this device has no key (never paired, or its storage was cleared): pair it again")
    })?;
    if key.device != bundle.device {
        return Err(js_error(
            ErrorCode::BadCredentials,
            &format!("the credentials are for device {}, but this device's key is {}'s", bundle.device, key.device),
            None,
        ));
    }
    let creds = Credentials::new(&key.seed, bundle, wall_ms(), DRIFT_MS).map_err(|e| trust_error_js(e, "the credentials do not fit this device"))?;
    // A browser device is a device or an admin: a cloud certificate would let
    // it sign receipts ("the cloud has it"), which only the cloud may do.
    if creds.bundle.chain.leaf().is_some_and(|l| l.role == crate::trust::Role::Cloud) {
        return Err(js_error(ErrorCode::BadCredentials, "a cloud certificate is not a device's: the cloud's key stays with the cloud", None));
    }
    let legacy = given.is_none() && meta::get(db, CREDENTIALS_RECORD).await.ok().flatten().is_some_and(|v| v.is_string());
    if given.is_some() || legacy {
        store_bundle(db, &creds.bundle).await?;
    }
    Ok(creds)
}

/// Keeps a bundle (from pairing or `open()`) for the next start, sealed
/// under the device key's wrapping key: the bundle holds the venue content
/// key, which must not sit in IndexedDB in clear.
pub async fn store_bundle(db: &Db, bundle: &Bundle) -> Result<(), JsValue> {
    let sealed = device_key::seal_record(db, CREDENTIALS_RECORD, bundle.to_json().as_bytes()).await?;
    meta::put(db, CREDENTIALS_RECORD, &sealed).await.map_err(|e| e.to_js("could not store the credentials"))
}

const TRUST_STATE_RECORD: &str = "trust_state";

/// Name of the sealed content keys inside the trust record (additional data of the seal).
const CONTENT_KEYS_SEALED: &str = "trust_state.contentKeys";

/// The trust state stored at the last `PersistTrust` (`None` when none or unreadable:
/// chains are learned again and CRLs come back retained from the broker).
pub async fn load_trust_state(db: &Db) -> Option<TrustState> {
    let v = meta::get(db, TRUST_STATE_RECORD).await.ok()??;
    let list = |k: &str| -> Vec<Vec<u8>> {
        js_sys::Reflect::get(&v, &k.into())
            .ok()
            .filter(|a| js_sys::Array::is_array(a))
            .map(|a| js_sys::Array::from(&a).iter().filter_map(|x| x.dyn_into::<js_sys::Uint8Array>().ok()).map(|u| u.to_vec()).collect())
            .unwrap_or_default()
    };
    // Sealed under the device key; an older record may still hold them in clear.
    let mut packed = list("contentKeys").concat();
    if let Some(sealed) = js_sys::Reflect::get(&v, &"contentKeysSealed".into()).ok().filter(|s| s.is_object()) {
        packed = device_key::open_record(db, CONTENT_KEYS_SEALED, &sealed).await.unwrap_or_default();
    }
    let keys = packed.chunks_exact(33).map(|k| (k[0], k[1..].try_into().expect("33 bytes"))).collect();
    let key_update = js_sys::Reflect::get(&v, &"keyUpdate".into()).ok().and_then(|x| x.dyn_into::<js_sys::Uint8Array>().ok()).map(|u| u.to_vec());
    Some(TrustState { crls: list("crls"), chains: list("chains"), content_keys: keys, key_update })
}

thread_local! {
    /// The newest `save_trust_state` started, per database: sealing awaits, so
    /// an older save that finishes later must not overwrite a newer one.
    static SAVES: std::cell::RefCell<Vec<(String, u64)>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Writes the trust state (`Output::PersistTrust`); nothing waits for it.
/// CRLs, chains and the KEY_UPDATE are public or already wrapped to this
/// device's key and are stored as they are; the content keys are sealed
/// under the device key's wrapping key (not written at all if that fails).
pub fn save_trust_state(db: &Db, t: &TrustState) {
    let arr = |items: &mut dyn Iterator<Item = Vec<u8>>| -> js_sys::Array { items.map(|b| JsValue::from(js_sys::Uint8Array::from(&b[..]))).collect() };
    let crls = arr(&mut t.crls.iter().cloned());
    let chains = arr(&mut t.chains.iter().cloned());
    // Wrapped to this device's own key already (Part 6 §6): stored as received.
    let key_update = t.key_update.as_ref().map_or(JsValue::NULL, |k| js_sys::Uint8Array::from(&k[..]).into());
    let packed: Vec<u8> = t.content_keys.iter().flat_map(|(e, k)| [&[*e][..], &k[..]].concat()).collect();
    let name = db.name();
    let seq = SAVES.with(|s| {
        let mut s = s.borrow_mut();
        match s.iter_mut().find(|(n, _)| *n == name) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                s.push((name.clone(), 1));
                1
            }
        }
    });
    let db = db.clone();
    wasm_bindgen_futures::spawn_local(async move {
        let sealed = match device_key::seal_record(&db, CONTENT_KEYS_SEALED, &packed).await {
            Ok(s) => s,
            Err(_) => {
                web_sys::console::warn_1(&"venuemesh: could not seal the content keys; the trust state was not stored".into());
                return;
            }
        };
        if SAVES.with(|s| s.borrow().iter().find(|(n, _)| *n == name).map(|e| e.1)) != Some(seq) {
            return; // a newer save follows
        }
        let record = ObjBuilder::new().set("crls", crls).set("chains", chains).set("contentKeysSealed", sealed).set("keyUpdate", key_update).build();
        if let Err(e) = meta::put(&db, TRUST_STATE_RECORD, &record).await {
            web_sys::console::warn_1(&format!("venuemesh: could not store the trust state: {}", e.message).into());
        }
    });
}

const REQUEST_KEYS: &[&str] = &["venue", "device", "dbName"];

#[wasm_bindgen]
impl VenueMesh {
    /// Makes (or reuses) this device's own key pair — generated in the
    /// browser, stored wrapped by a non-extractable WebCrypto key — and
    /// returns what the venue's server needs to certify it:
    /// `{ venue, device, publicKey }`. A different `device` than the stored
    /// key's makes a new key (re-pairing under another id).
    #[wasm_bindgen(js_name = createPairingRequest, unchecked_return_type = "Promise<PairingRequest>")]
    pub fn create_pairing_request_js(
        #[wasm_bindgen(unchecked_param_type = "PairingRequestOptions")] options: JsValue,
    ) -> js_sys::Promise {
        super::js::promise(Box::pin(Self::create_pairing_request(options)))
    }
}

impl VenueMesh {
    /// `VenueMesh.createPairingRequest` (the export above goes through `js::promise`).
    pub async fn create_pairing_request(options: JsValue) -> Result<JsValue, JsValue> {
        let o = Options::new(&options, "createPairingRequest options", REQUEST_KEYS, false)?;
        let venue = o.required_string("venue")?;
        if !is_valid_id(&venue) {
            return Err(js_error(ErrorCode::InvalidOptions, "`venue` must be 1-64 characters of A-Z a-z 0-9 . _ -", None));
        }
        let wanted = o.string("device")?;
        if wanted.as_deref().is_some_and(|d| !is_valid_id(d)) {
            return Err(js_error(ErrorCode::InvalidOptions, "`device` must be 1-64 characters of A-Z a-z 0-9 . _ -", None));
        }
        let db_name = o.string("dbName")?.unwrap_or_else(|| format!("venuemesh-{venue}"));
        let db = idb::open(&db_name).await?;
        let result = async {
            let key = match (device_key::load(&db).await?, wanted) {
                (Some(k), None) => k,
                (Some(k), Some(d)) if k.device == d => k,
                (_, Some(d)) => device_key::create(&db, &d).await?,
                (None, None) => {
                    let id = idb::device_id(&db).await?;
                    device_key::create(&db, &id).await?
                }
            };
            Ok::<_, JsValue>(
                ObjBuilder::new()
                    .set("venue", venue.as_str())
                    .set("device", key.device.as_str())
                    .set("publicKey", base64_encode(&public_key(&key)))
                    .build(),
            )
        }
        .await;
        db.close();
        result
    }
}

/// Benchmark hook (`scripts/bench`, tests/bench/trust.mjs; not part of the
/// API): runs one per-message trust operation `n` times on a 200-byte body
/// in wasm and returns a checksum (so nothing is optimised away); the caller
/// times it. `op`: `sign` / `verify` (Ed25519 over an envelope),
/// `seal` / `open` (ChaCha20-Poly1305 of the body under the sender's
/// subkey, derivation included), `hmac` (HMAC-SHA256: what envelope v1 cost).
/// Only in builds with the `test-hooks` feature (`scripts/bench` builds one
/// into pkg-hooks/): the published package does not export it (issue #20).
#[cfg(feature = "test-hooks")]
#[doc(hidden)]
#[wasm_bindgen(js_name = __benchTrust)]
pub fn bench_trust(op: &str, n: u32) -> Result<u32, JsValue> {
    use crate::trust::{content, domain, sign, verify};
    let key = signing_key(&[7u8; 32]);
    let vk = key.verifying_key();
    let msg = [0x5au8; 260]; // header + 200-byte body
    let sig = sign(&key, domain::ENVELOPE, &[&msg]);
    let ck = [9u8; 32];
    let mut acc = 0u32;
    for i in 0..n {
        acc = acc.wrapping_add(match op {
            "sign" => u32::from(sign(&key, domain::ENVELOPE, &[&msg])[(i % 64) as usize]),
            "verify" => u32::from(verify(&vk, domain::ENVELOPE, &[&msg], &sig)),
            "seal" | "open" => {
                let sub = content::subkey(&ck, "pos-1");
                let mut body = msg[60..].to_vec();
                content::seal(&sub, u64::from(i), &msg[..60], &mut body);
                if op == "open" {
                    content::open(&sub, u64::from(i), &msg[..60], &mut body).map_err(|e| JsValue::from_str(&e.to_string()))?;
                }
                u32::from(body[0])
            }
            "hmac" => {
                use hmac::{Hmac, KeyInit, Mac};
                let mut m = <Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&ck).map_err(|_| JsValue::from_str("hmac"))?;
                m.update(&msg);
                u32::from(m.finalize().into_bytes()[0])
            }
            _ => return Err(js_error(ErrorCode::InvalidArgument, "op: sign | verify | seal | open | hmac", None)),
        });
    }
    Ok(acc)
}
